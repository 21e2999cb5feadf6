//! Build script: lets every linker find jpegli's static libraries.
//!
//! `jpegli-sys` links `-ljpegli-static -lhwy` without saying they are static, so rustc passes them
//! after `-Bdynamic`. GNU ld then falls back to the `.a` archives; zig, which cargo-lambda uses to
//! link the arm64 Lambda against an old glibc, does not ("unable to find dynamic system library
//! jpegli-static using strategy no_fallback"). A one-line linker script named like each shared
//! library (`libhwy.so` = `INPUT(libhwy.a)`) sends both linkers to the archive, which they find on
//! the search path `jpegli-sys` already gives. Checked by `make lambda` (zig) and every native build.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for lib in ["jpegli-static", "hwy"] {
        std::fs::write(
            out.join(format!("lib{lib}.so")),
            format!("INPUT(lib{lib}.a)\n"),
        )
        .expect("writing a linker script to OUT_DIR");
    }
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rerun-if-changed=build.rs");
}
