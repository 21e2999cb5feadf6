//! Hostile inputs are refused with bounded memory. Each reject fixture runs through the real `imgpipe`
//! binary in its own process; the kernel's peak-RSS figure for that child (`wait4`) must stay small,
//! so a header that declares 65 500 × 65 500 pixels (or a text-chunk bomb) never gets its buffer.
//! This is a resource bound, not a timing.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(
        &std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for tests"),
    )
    .join("../../tests/fixtures/images")
    .join(name)
}

/// Runs `imgpipe derive <file>`; returns (exit success, peak RSS in MiB). The child is reaped with
/// `wait4` (not `Child::wait`) because only `wait4` reports that one child's resource usage.
#[allow(clippy::zombie_processes)]
fn derive_peak_rss(file: &str, out: &Path) -> (bool, f64) {
    let child = Command::new(env!("CARGO_BIN_EXE_imgpipe"))
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .args(["derive", "--out"])
        .arg(out)
        .arg(fixture(file))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn imgpipe");
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: waits for our own child; `usage` is written by the kernel.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, usage.as_mut_ptr()) };
    assert_eq!(pid, child.id() as i32, "wait4");
    let usage = unsafe { usage.assume_init() };
    let success = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (success, usage.ru_maxrss as f64 / 1024.0) // ru_maxrss is in KiB on Linux
}

#[test]
fn rejected_files_fail_cleanly_within_a_small_memory_bound() {
    let out = std::env::temp_dir().join(format!("imgpipe-bounded-{}", std::process::id()));
    // Measured peak RSS of the whole process (debug build, `-- --nocapture` prints it): 6.4–8.7 MiB
    // for the bombs and bad headers, 16.3 MiB for the corrupt 10 MP camera file (decoded at 1/4 until
    // the error), versus 200 MiB+ for a 1/8-scale buffer of the 65 500² bomb and ~30 GB at full size.
    // 48 MiB leaves room for allocator and build differences and still fails on any such allocation.
    // Backtrace variables are removed: symbolising a debug binary alone takes ~130 MiB.
    const BOUND_MIB: f64 = 48.0;
    let mut report = Vec::new();
    for (file, should_succeed) in [
        ("bomb_jpeg_sof0_65500x65500.jpg", false),
        ("bomb_png_ihdr_100000x100000.png", false),
        ("crafted_png_ztxt_bomb.png", true),
        ("truncated_canon-sx60hs_20000bytes.jpg", false),
        ("corrupt_olympus-u1020_entropy.jpg", false),
        ("bomb_avif_ispe_17000x17000.avif", false),
        ("bomb_jxl_header_100000x100000.jxl", false),
        ("truncated_heic_grid_60pct.heic", false),
        ("truncated_avif_70pct.avif", false),
        ("crafted_svg_document_named.png", false),
        ("zero_bytes.jpg", false),
    ] {
        let (success, peak) = derive_peak_rss(file, &out);
        report.push(format!("{file:<40} {peak:6.1} MiB"));
        assert_eq!(success, should_succeed, "{file}: exit status");
        assert!(
            peak < BOUND_MIB,
            "{file}: peak RSS {peak:.1} MiB ≥ {BOUND_MIB} MiB"
        );
        let metadata = std::fs::read_to_string(out.join(file).join("metadata.json"))
            .unwrap_or_else(|e| panic!("{file}: no metadata.json: {e}"));
        let status = if should_succeed {
            "\"done\""
        } else {
            "\"failed\""
        };
        assert!(metadata.contains(status), "{file}: {metadata}");
    }
    println!("{}", report.join("\n"));
    let _ = std::fs::remove_dir_all(&out);
}
