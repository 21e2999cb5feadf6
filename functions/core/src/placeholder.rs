//! Placeholders for the metadata document: a ThumbHash and the dominant and average colours, all from
//! one ≤100 px copy of the upright sRGB image.
//!
//! ThumbHash (the `thumbhash` crate, Evan Wallace's reference implementation) rather than BlurHash:
//! it keeps the aspect ratio and alpha, and encodes more detail in fewer bytes.

use crate::metadata::Placeholder;
use crate::pixels::Pixels;

/// Longest side of the image the placeholder is computed from (ThumbHash's maximum).
pub const PLACEHOLDER_SIZE: u32 = 100;

/// Width and height of the copy to compute the placeholder from, for an image of `width`×`height`.
pub fn size_for(width: u32, height: u32) -> (u32, u32) {
    crate::plan::within(width, height, PLACEHOLDER_SIZE)
}

/// Computes the placeholder from `small` (at most [`PLACEHOLDER_SIZE`] on its longest side).
pub fn placeholder(small: &Pixels) -> Placeholder {
    let rgba = to_rgba(small);
    let hash = thumbhash::rgba_to_thumb_hash(small.width as usize, small.height as usize, &rgba);
    Placeholder {
        thumbhash: base64(&hash),
        dominant_color: hex(dominant(&rgba)),
        average_color: hex(average(&rgba)),
    }
}

fn to_rgba(pixels: &Pixels) -> Vec<u8> {
    if pixels.has_alpha() {
        return pixels.data.clone();
    }
    pixels
        .data
        .chunks_exact(3)
        .flat_map(|px| [px[0], px[1], px[2], 255])
        .collect()
}

/// Mean colour of the most populated of 16×16×16 colour bins (mostly transparent pixels ignored);
/// the mean of its members, not the bin centre, so the colour is one that occurs in the image.
fn dominant(rgba: &[u8]) -> [u8; 3] {
    let mut bins = vec![[0u64; 4]; 4096];
    for px in rgba.chunks_exact(4).filter(|px| px[3] >= 128) {
        let bin =
            usize::from(px[0] >> 4) << 8 | usize::from(px[1] >> 4) << 4 | usize::from(px[2] >> 4);
        let entry = &mut bins[bin];
        entry[0] += u64::from(px[0]);
        entry[1] += u64::from(px[1]);
        entry[2] += u64::from(px[2]);
        entry[3] += 1;
    }
    let best = bins
        .iter()
        .max_by_key(|b| b[3])
        .copied()
        .unwrap_or_default();
    if best[3] == 0 {
        return average(rgba);
    }
    [0, 1, 2].map(|c| ((best[c] + best[3] / 2) / best[3]) as u8)
}

/// Alpha-weighted mean colour (a fully transparent image averages to black).
fn average(rgba: &[u8]) -> [u8; 3] {
    let mut sum = [0u64; 3];
    let mut weight = 0u64;
    for px in rgba.chunks_exact(4) {
        let a = u64::from(px[3]);
        for c in 0..3 {
            sum[c] += u64::from(px[c]) * a;
        }
        weight += a;
    }
    if weight == 0 {
        return [0, 0, 0];
    }
    sum.map(|s| ((s + weight / 2) / weight) as u8)
}

fn hex([r, g, b]: [u8; 3]) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dominant_is_the_biggest_area_not_the_average() {
        // 3 red pixels, 1 blue: dominant red, average purple-ish.
        let px = Pixels::new(4, 1, 3, vec![250, 0, 0, 250, 0, 0, 250, 0, 0, 0, 0, 250]);
        let p = placeholder(&px);
        assert_eq!(p.dominant_color, "#fa0000");
        assert_eq!(p.average_color, "#bc003f");
        let decoded = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            p.thumbhash.as_bytes(),
        )
        .unwrap();
        let (r, g, b, _) = thumbhash::thumb_hash_to_average_rgba(&decoded).unwrap();
        assert!(r > b && r > g, "{r} {g} {b}");
    }

    #[test]
    fn transparent_pixels_do_not_vote() {
        let px = Pixels::new(2, 1, 4, vec![0, 0, 0, 0, 10, 200, 10, 255]);
        let p = placeholder(&px);
        assert_eq!(p.dominant_color, "#0ac80a");
        assert_eq!(p.average_color, "#0ac80a");
    }

    #[test]
    fn sizes_fit_in_100_pixels() {
        assert_eq!(size_for(4032, 3024), (100, 75));
        assert_eq!(size_for(3024, 4032), (75, 100));
        assert_eq!(size_for(80, 60), (80, 60));
        assert_eq!(size_for(10000, 10), (100, 1));
    }
}
