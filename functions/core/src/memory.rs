//! Peak memory of one image, predicted from its header before anything is decoded, so a process
//! running several images at once can admit only what fits its memory (the cloud crate's admission).
//!
//! The prediction adds what [`pipeline`](crate::pipeline) holds at its peak: the compressed source,
//! the decoder's buffers at the planned shrink-on-load scale ([`Plan::decode_bytes`]), the upright
//! RGBA copy, every resized output and the encoders' buffers beside them, and a fixed part for codec
//! state, then scales the sum by [`CALIBRATION`], measured against peak RSS on the corpus
//! (`bench/memory.py`, table in docs/limits-and-reliability.md).

use crate::error::Result;
use crate::limits::Limits;
use crate::plan::{self, Plan};
use crate::preset::PresetSet;
use crate::probe::{self, Header};

/// Codec contexts, the EXIF copy, thread stacks and allocator slack per image.
pub const FIXED_BYTES: u64 = 6 * 1024 * 1024;

/// Scale on the modelled peak, set from the corpus (`bench/memory.py`, docs/limits-and-reliability.md, "Memory admission"):
/// with it every prediction is 1.1–1.8× the measured peak RSS of images over 8 MiB (closest: a
/// lossy JPEG XL, 1.12, and a 2048×1536 RGBA PNG, 1.18; a 12 MP JPEG is 1.43).
pub const CALIBRATION: f64 = 1.2;

/// The predicted peak, and the parts it is made of (bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeakEstimate {
    /// The whole prediction: (source + the largest phase + [`FIXED_BYTES`]) × [`CALIBRATION`].
    pub bytes: u64,
    /// The compressed source, held throughout.
    pub source: u64,
    /// Decoder buffers at the planned scale ([`Plan::decode_bytes`]).
    pub decode: u64,
    /// The resize and encode phase: the upright RGBA image (twice for a premultiplied alpha copy),
    /// every resized output, its reusable intermediate copy, and the encoders' buffers.
    pub outputs: u64,
}

/// Predicts the peak memory of processing `bytes` with `presets`, from the header only. Errors are
/// the header's (unsupported or corrupt input) and `limits`' (size, dimensions, frames), the same
/// the pipeline reports before it decodes anything.
pub fn predict_peak(bytes: &[u8], presets: &PresetSet, limits: &Limits) -> Result<PeakEstimate> {
    limits.check_bytes(bytes.len() as u64)?;
    let header = probe::probe(bytes)?;
    limits.check_dimensions(header.width, header.height)?;
    limits.check_frames(header.frames)?;
    let orientation = header
        .orientation
        .unwrap_or_else(|| crate::exif::read(bytes).orientation);
    let plan = plan::plan(&header, orientation, presets);
    Ok(estimate(bytes.len() as u64, &plan, &header, orientation))
}

/// The estimate for a source of `source_bytes` with `header`, planned as `plan`. The phases do not
/// overlap (the decoder's buffers are freed before resizing), so the peak is the largest of them.
pub fn estimate(source_bytes: u64, plan: &Plan, header: &Header, orientation: u8) -> PeakEstimate {
    let d = plan.decode_denominator.max(1);
    let upright = u64::from(plan.upright_width.div_ceil(d))
        .saturating_mul(u64::from(plan.upright_height.div_ceil(d)))
        .saturating_mul(4);
    let resized = plan.targets.iter().fold(0u64, |sum, t| {
        sum.saturating_add(u64::from(t.width).saturating_mul(u64::from(t.height)) * 4)
    });
    // Turning the image makes a second upright buffer; with alpha, the resizer premultiplies a copy
    // of the source and un-premultiplies each output (measured: an RGBA PNG peaks at ~3 uprights).
    let orient = if orientation > 1 {
        upright.saturating_mul(2)
    } else {
        upright
    };
    let alpha = if header.alpha { 3 } else { 1 };
    // An animation composes one frame and resizes it per animated output at a time.
    let animation = if header.frames > 1 { resized } else { 0 };
    let outputs = orient
        .max(
            upright
                .saturating_mul(alpha)
                .saturating_add(resized.saturating_mul(2)),
        )
        .saturating_add(animation);
    let parts = source_bytes
        .saturating_add(plan.decode_bytes.max(outputs))
        .saturating_add(FIXED_BYTES);
    PeakEstimate {
        bytes: (parts as f64 * CALIBRATION).ceil() as u64,
        source: source_bytes,
        decode: plan.decode_bytes,
        outputs,
    }
}

/// Largest allocation glibc may serve from its heaps (and keep for reuse) once
/// [`keep_freed_buffers`] ran; larger ones are mapped and unmapped each time.
pub const KEEP_BUFFERS_UP_TO: usize = 256 << 20;

/// Lets the allocator keep the large buffers of one image for the next (glibc: `M_MMAP_THRESHOLD`
/// and `M_TRIM_THRESHOLD` at [`KEEP_BUFFERS_UP_TO`]; nothing elsewhere). By default glibc maps every
/// block over 32 MiB afresh and unmaps it on free, so each image pays page faults and the kernel's
/// zeroing again for its decoder's buffers (a 24 MP progressive JPEG's 72 MB coefficient store,
/// which libjpeg-turbo then zeroes once more): 10 % of that image's time at one thread, measured by
/// `perf` (docs/benchmarks.md). The cost: freed memory stays resident up to the largest image's
/// peak, so peak RSS is unchanged but RSS no longer falls between images. Call once, at start-up,
/// in a process that handles many images (the binaries do); it only affects this process.
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters, under the allocator's own locks.
    unsafe {
        let keep = KEEP_BUFFERS_UP_TO as libc::c_int;
        libc::mallopt(libc::M_MMAP_THRESHOLD, keep);
        libc::mallopt(libc::M_TRIM_THRESHOLD, keep.saturating_mul(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    #[test]
    fn larger_sources_predict_more_and_shrink_on_load_bounds_the_decode() {
        let presets = PresetSet::default_set();
        let limits = Limits::default();
        let small = predict_peak(&fixture("Landscape_1.jpg"), &presets, &limits).unwrap();
        let large =
            predict_peak(&fixture("large_olympus-e-p3_12mp.jpg"), &presets, &limits).unwrap();
        assert!(large.bytes > small.bytes, "{small:?} {large:?}");
        // 12 MP (4032×3024) decodes at 1/2 scale for a 1200 px preview: 2016×1512 RGBA and its
        // stored copy, far below a full-size decode (12 MP × 8 bytes = 98 MB).
        assert!(large.decode < 4032 * 3024 * 4, "{large:?}");
        assert!(large.decode >= 2016 * 1512 * 4, "{large:?}");
        let parts = large.source + large.decode.max(large.outputs) + FIXED_BYTES;
        assert_eq!(large.bytes, (parts as f64 * CALIBRATION).ceil() as u64);
    }

    #[test]
    fn unreadable_headers_are_the_pipeline_errors() {
        let limits = Limits::default();
        let presets = PresetSet::default_set();
        let error = predict_peak(b"plain text, not an image", &presets, &limits).unwrap_err();
        assert_eq!(error.kind, crate::ErrorKind::Unsupported);
        // Over the limits: the pipeline's own refusal, before any estimate.
        let narrow = Limits {
            max_width: 1000,
            ..Limits::default()
        };
        let photo = fixture("large_olympus-e-p3_12mp.jpg");
        let error = predict_peak(&photo, &presets, &narrow).unwrap_err();
        assert_eq!(error.kind, crate::ErrorKind::OverLimit);
    }
}
