//! The tight limits the `pipeline` fuzz target (`fuzz/fuzz_targets/pipeline.rs`) runs under, shared
//! with the regression test `functions/core/tests/fuzz_regressions.rs`, so a finding replays under
//! the limits it was found with. It lives in this crate because the CI build cache reuses a test
//! built in another clone: a `#[path]` outside the crate would be recorded by that clone's path.
use imgpipe_core::Limits;

/// 256 KiB sources, 512 × 512 pixels, 8 frames, 16 MiB of decoded pixels.
pub fn tight_limits() -> Limits {
    Limits {
        max_source_bytes: 256 * 1024,
        max_pixels: 512 * 512,
        max_width: 2048,
        max_height: 2048,
        max_frames: 8,
        max_decode_bytes: 16 * 1024 * 1024,
    }
}
