//! Face detection: SeetaFace's frontal detector (the `rustface` crate, BSD-2) on the grey levels of
//! the small upright copy. The model is compiled in (`functions/core/models/`, the crate's own model
//! file, BSD-2; provenance in its README), so nothing is downloaded at run time. One detector per
//! thread, built on first use: the model parses in a few milliseconds and the detector keeps its
//! buffers between images.
//!
//! SeetaFace slides a 40 px window over an image pyramid that is never enlarged, so on the
//! [`super::ANALYSIS_SIDE`] copy the smallest face found is 40 px: 8 % of the longer side.

use std::cell::RefCell;

use super::Face;
use crate::pixels::Pixels;

/// The detector model: SeetaFace Detection's `seeta_fd_frontal_v1.0.bin`, as shipped in the
/// `rustface` 0.1.7 crate (sha256 `c4619d06…3ff5d`).
const MODEL: &[u8] = include_bytes!("../../models/seeta_fd_frontal_v1.0.bin");

/// Detections scoring below this are dropped (SeetaFace's cascade score): the value rustface's demo
/// uses. Not tuned: on the labelled set (docs/benchmarks.md, "Faces and focus") precision was already
/// about 90 %, and what the detector misses there are faces too small for its window.
pub const MIN_SCORE: f64 = 2.0;

/// Faces narrower than this share of the largest face's width are background (a crowd behind the
/// subject) and do not steer the crop.
pub const MIN_SHARE_OF_LARGEST: f64 = 0.4;

/// Each pyramid level is this much smaller than the last, and the window moves this many pixels:
/// SeetaFace's defaults are 0.8 and 4. At 576 px these coarser ones found 134 of the 160 labelled
/// faces the defaults found, in half the time (docs/benchmarks.md, "Faces and focus").
const PYRAMID_STEP: f32 = 0.65;
const WINDOW_STEP: u32 = 6;

/// The detector's smallest window: an image smaller than this on either side holds no face it finds.
const WINDOW: u32 = 40;

thread_local! {
    static DETECTOR: RefCell<Option<Box<dyn rustface::Detector>>> = const { RefCell::new(None) };
}

/// The confident faces in `small` (an upright sRGB copy), largest first, in normalised coordinates.
pub fn detect(small: &Pixels) -> Vec<Face> {
    if small.width < WINDOW || small.height < WINDOW {
        return Vec::new();
    }
    let grey = luma(small);
    let found = DETECTOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let detector = slot.get_or_insert_with(new_detector);
        detector.detect(&rustface::ImageData::new(&grey, small.width, small.height))
    });
    let (w, h) = (f64::from(small.width), f64::from(small.height));
    let mut faces: Vec<Face> = found
        .iter()
        .filter(|f| f.score() >= MIN_SCORE)
        .map(|f| {
            let b = f.bbox();
            let rect = super::Rect {
                x: f64::from(b.x()) / w,
                y: f64::from(b.y()) / h,
                w: f64::from(b.width()) / w,
                h: f64::from(b.height()) / h,
            }
            .clamped();
            Face {
                x: super::round4(rect.x),
                y: super::round4(rect.y),
                w: super::round4(rect.w),
                h: super::round4(rect.h),
                score: (f.score() * 100.0).round() / 100.0,
            }
        })
        .filter(|f| f.w > 0.0 && f.h > 0.0)
        .collect();
    faces.sort_by(|a, b| (b.w * b.h).total_cmp(&(a.w * a.h)));
    if let Some(largest) = faces.first().map(|f| f.w) {
        faces.retain(|f| f.w >= MIN_SHARE_OF_LARGEST * largest);
    }
    faces
}

fn new_detector() -> Box<dyn rustface::Detector> {
    let model = rustface::read_model(MODEL).expect("the compiled-in SeetaFace model parses");
    let mut detector = rustface::create_detector_with_model(model);
    detector.set_score_thresh(MIN_SCORE);
    detector.set_pyramid_scale_factor(PYRAMID_STEP);
    detector.set_slide_window_step(WINDOW_STEP, WINDOW_STEP);
    detector
}

/// BT.601 luma of 8-bit sRGB, as SeetaFace was trained on (alpha ignored).
fn luma(pixels: &Pixels) -> Vec<u8> {
    let channels = usize::from(pixels.channels);
    pixels
        .data
        .chunks_exact(channels)
        .map(|p| {
            let y = 299 * u32::from(p[0]) + 587 * u32::from(p[1]) + 114 * u32::from(p[2]);
            ((y + 500) / 1000) as u8
        })
        .collect()
}
