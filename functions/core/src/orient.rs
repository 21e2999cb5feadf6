//! EXIF orientation (all 8 values) applied to pixels, so every derivative is upright and carries no tag.

use crate::pixels::Pixels;

/// Returns the upright image for EXIF `orientation` (1 or unknown values: unchanged).
pub fn orient(pixels: Pixels, orientation: u8) -> Pixels {
    if !(2..=8).contains(&orientation) {
        return pixels;
    }
    let (w, h) = (pixels.width as usize, pixels.height as usize);
    let (dw, dh) = if orientation >= 5 { (h, w) } else { (w, h) };
    let map = SourceMap::new(orientation, w, h);
    let out = match pixels.channels {
        3 => remap::<3>(&pixels.data, &map, dw, dh),
        _ => remap::<4>(&pixels.data, &map, dw, dh),
    };
    Pixels::new(dw as u32, dh as u32, pixels.channels, out)
}

/// Source pixel index of destination pixel (x, y) as `origin + x * step_x + y * step_y`: every
/// orientation is an affine map of the grid, so the inner loop is one add per pixel. The GPU
/// worker's orientation kernel takes the same map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceMap {
    /// Source pixel index of destination (0, 0).
    pub origin: isize,
    /// Source index change per destination x.
    pub step_x: isize,
    /// Source index change per destination y.
    pub step_y: isize,
}

impl SourceMap {
    /// The map for EXIF `orientation` (2–8; anything else maps like 8) of a `w`×`h` stored image.
    pub fn new(orientation: u8, w: usize, h: usize) -> Self {
        let (w, h) = (w as isize, h as isize);
        // (source x, source y) of destination (0, 0), and how they move per destination x and per y.
        let ((x0, y0), (xx, yx), (xy, yy)) = match orientation {
            2 => ((w - 1, 0), (-1, 0), (0, 1)),      // mirror horizontally
            3 => ((w - 1, h - 1), (-1, 0), (0, -1)), // rotate 180°
            4 => ((0, h - 1), (1, 0), (0, -1)),      // mirror vertically
            5 => ((0, 0), (0, 1), (1, 0)),           // transpose
            6 => ((0, h - 1), (0, -1), (1, 0)),      // rotate 90° clockwise
            7 => ((w - 1, h - 1), (0, -1), (-1, 0)), // transverse
            _ => ((w - 1, 0), (0, 1), (-1, 0)),      // 8: rotate 90° counter-clockwise
        };
        Self {
            origin: y0 * w + x0,
            step_x: yx * w + xx,
            step_y: yy * w + xy,
        }
    }
}

/// Copies pixels to their upright place in 64×64 destination tiles, so the column-wise reads of a
/// rotation stay in cache (a row-by-row loop over a 12 MP image misses on every source pixel).
fn remap<const C: usize>(src: &[u8], map: &SourceMap, dw: usize, dh: usize) -> Vec<u8> {
    const TILE: usize = 64;
    let mut out = vec![0u8; src.len()];
    for tile_y in (0..dh).step_by(TILE) {
        for tile_x in (0..dw).step_by(TILE) {
            let tile_end = (tile_x + TILE).min(dw);
            for y in tile_y..(tile_y + TILE).min(dh) {
                let row = &mut out[(y * dw + tile_x) * C..(y * dw + tile_end) * C];
                let mut from = map.origin + tile_x as isize * map.step_x + y as isize * map.step_y;
                for pixel in row.chunks_exact_mut(C) {
                    let s = from as usize * C;
                    pixel.copy_from_slice(&src[s..s + C]);
                    from += map.step_x;
                }
            }
        }
    }
    out
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

    /// The tiled remap against a per-pixel reference on an image larger than a tile, odd sizes, RGBA.
    #[test]
    fn tiled_remap_matches_reference() {
        let (w, h) = (131usize, 67usize);
        let data: Vec<u8> = (0..w * h * 4).map(|i| (i * 7 % 251) as u8).collect();
        for orientation in 2..=8u8 {
            let out = orient(
                Pixels::new(w as u32, h as u32, 4, data.clone()),
                orientation,
            );
            let (dw, dh) = (out.width as usize, out.height as usize);
            for y in 0..dh {
                for x in 0..dw {
                    let (sx, sy) = match orientation {
                        2 => (w - 1 - x, y),
                        3 => (w - 1 - x, h - 1 - y),
                        4 => (x, h - 1 - y),
                        5 => (y, x),
                        6 => (y, h - 1 - x),
                        7 => (w - 1 - y, h - 1 - x),
                        _ => (w - 1 - y, x),
                    };
                    let (s, d) = ((sy * w + sx) * 4, (y * dw + x) * 4);
                    assert_eq!(
                        out.data[d..d + 4],
                        data[s..s + 4],
                        "orientation {orientation} at ({x}, {y})"
                    );
                }
            }
        }
    }
}
