//! Placing a cover crop: the window's size is fixed by the output's aspect ratio (the largest such
//! window, [`crate::plan`]'s centre crop); only where it sits changes. Faces are kept whole with room
//! for the head (a face box reaches from the brows to the chin, so it is extended upwards for the
//! forehead and hair, a little down for the chin and to the sides for the ears); a point is centred.
//! Either way the window is clamped to the picture, so an edge subject gets an edge crop.

use super::{FocalPoint, Rect, Subject};
use crate::plan::CropFraction;

/// How far a face box is extended for the head, as shares of its own size: up, down, each side.
pub const HEAD_MARGIN: (f64, f64, f64) = (0.6, 0.3, 0.3);

/// A face box grown by [`HEAD_MARGIN`], clipped to the picture.
pub fn head(face: &Rect) -> Rect {
    let (up, down, side) = HEAD_MARGIN;
    Rect {
        x: face.x - side * face.w,
        y: face.y - up * face.h,
        w: face.w * (1.0 + 2.0 * side),
        h: face.h * (1.0 + up + down),
    }
    .clamped()
}

/// Moves `centred` (a window of the right size, anywhere) so that it keeps `subject` in view.
pub fn place(centred: CropFraction, subject: &Subject) -> CropFraction {
    let (cw, ch) = (centred.width, centred.height);
    let point = match subject {
        Subject::Point(point, _) => *point,
        Subject::Faces(faces) => faces_centre(faces, cw, ch),
    };
    CropFraction {
        left: (point.x - cw / 2.0).clamp(0.0, (1.0 - cw).max(0.0)),
        top: (point.y - ch / 2.0).clamp(0.0, (1.0 - ch).max(0.0)),
        width: cw,
        height: ch,
    }
}

/// The centre for a window of `cw`×`ch` that keeps the most of `faces` (largest first) whole: all
/// heads, else all faces, else the largest head, else the largest face; else it is centred on the
/// largest face, whose box is then wider or taller than the window.
fn faces_centre(faces: &[Rect], cw: f64, ch: f64) -> FocalPoint {
    let union = |boxes: &mut dyn Iterator<Item = Rect>| {
        let first = boxes.next()?;
        Some(boxes.fold(first, |acc, b| acc.union(&b)))
    };
    let Some(largest) = faces.first() else {
        return FocalPoint::CENTRE;
    };
    let fits = |r: &Rect| r.w <= cw + 1e-9 && r.h <= ch + 1e-9;
    [
        union(&mut faces.iter().map(head)),
        union(&mut faces.iter().copied()),
        Some(head(largest)),
        Some(*largest),
    ]
    .into_iter()
    .flatten()
    .find(fits)
    .unwrap_or(*largest)
    .centre()
}

/// A window as a rectangle in upright pixels of a `width`×`height` source, what metadata records
/// as a derivative's `crop`.
pub fn in_pixels(crop: CropFraction, width: u32, height: u32) -> [u32; 4] {
    let (w, h) = (f64::from(width), f64::from(height));
    let x = ((crop.left * w).round() as u32).min(width.saturating_sub(1));
    let y = ((crop.top * h).round() as u32).min(height.saturating_sub(1));
    let cw = ((crop.width * w).round() as u32).clamp(1, width.saturating_sub(x).max(1));
    let ch = ((crop.height * h).round() as u32).clamp(1, height.saturating_sub(y).max(1));
    [x, y, cw, ch]
}
