//! Compiles the CUDA kernel source as C (kernels/host_shim.c) so tests can run the very kernels on
//! the CPU and compare them with the Rust reference. The GPU compiles the same file with NVRTC at run
//! time.
fn main() {
    println!("cargo:rerun-if-changed=kernels/resize.cu");
    println!("cargo:rerun-if-changed=kernels/host_shim.c");
    cc::Build::new()
        .file("kernels/host_shim.c")
        .flag_if_supported("-ffp-contract=off")
        .flag_if_supported("-fno-fast-math")
        .opt_level(2)
        .compile("imgpipe_kernels_host");
}
