//! EXIF orientation (all 8 values) applied to pixels, so every derivative is upright and carries no tag.

use crate::pixels::Pixels;

/// Returns the upright image for EXIF `orientation` (1 or unknown values: unchanged).
pub fn orient(pixels: Pixels, orientation: u8) -> Pixels {
    if !(2..=8).contains(&orientation) {
        return pixels;
    }
    let (w, h) = (pixels.width as usize, pixels.height as usize);
    let c = pixels.channels as usize;
    let (dw, dh) = if orientation >= 5 { (h, w) } else { (w, h) };
    let mut out = vec![0u8; pixels.data.len()];
    for y in 0..dh {
        for x in 0..dw {
            // Source coordinates of destination pixel (x, y).
            let (sx, sy) = match orientation {
                2 => (w - 1 - x, y),         // mirror horizontally
                3 => (w - 1 - x, h - 1 - y), // rotate 180°
                4 => (x, h - 1 - y),         // mirror vertically
                5 => (y, x),                 // transpose
                6 => (y, h - 1 - x),         // rotate 90° clockwise
                7 => (w - 1 - y, h - 1 - x), // transverse
                _ => (w - 1 - y, x),         // 8: rotate 90° counter-clockwise
            };
            let src = (sy * w + sx) * c;
            let dst = (y * dw + x) * c;
            out[dst..dst + c].copy_from_slice(&pixels.data[src..src + c]);
        }
    }
    Pixels::new(dw as u32, dh as u32, pixels.channels, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3×2 image whose pixel values are their index: 0 1 2 / 3 4 5.
    fn sample() -> Pixels {
        Pixels::new(3, 2, 3, (0..6u8).flat_map(|v| [v, v, v]).collect())
    }

    fn values(p: &Pixels) -> Vec<u8> {
        p.data.chunks(3).map(|px| px[0]).collect()
    }

    #[test]
    fn all_eight_orientations() {
        let expect: [(u8, (u32, u32), [u8; 6]); 8] = [
            (1, (3, 2), [0, 1, 2, 3, 4, 5]),
            (2, (3, 2), [2, 1, 0, 5, 4, 3]),
            (3, (3, 2), [5, 4, 3, 2, 1, 0]),
            (4, (3, 2), [3, 4, 5, 0, 1, 2]),
            (5, (2, 3), [0, 3, 1, 4, 2, 5]),
            (6, (2, 3), [3, 0, 4, 1, 5, 2]),
            (7, (2, 3), [5, 2, 4, 1, 3, 0]),
            (8, (2, 3), [2, 5, 1, 4, 0, 3]),
        ];
        for (orientation, dims, pixels) in expect {
            let out = orient(sample(), orientation);
            assert_eq!((out.width, out.height), dims, "orientation {orientation}");
            assert_eq!(values(&out), pixels, "orientation {orientation}");
        }
    }
}
