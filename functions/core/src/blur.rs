//! Gaussian blur for placeholder presets, applied to the (tiny) output, so its cost is negligible.

use crate::pixels::Pixels;

/// Blurs `pixels` with a Gaussian of `sigma` output pixels.
pub fn blur(pixels: Pixels, sigma: f32) -> Pixels {
    let (w, h, c) = (pixels.width, pixels.height, pixels.channels);
    let data = if c == 4 {
        let img =
            image::RgbaImage::from_raw(w, h, pixels.data).expect("buffer size checked by Pixels");
        image::imageops::blur(&img, sigma).into_raw()
    } else {
        let img =
            image::RgbImage::from_raw(w, h, pixels.data).expect("buffer size checked by Pixels");
        image::imageops::blur(&img, sigma).into_raw()
    };
    Pixels::new(w, h, c, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blur_spreads_a_sharp_edge() {
        let data: Vec<u8> = (0..16 * 4)
            .flat_map(|i| if i % 16 < 8 { [0u8; 3] } else { [255u8; 3] })
            .collect();
        let out = blur(Pixels::new(16, 4, 3, data), 2.0);
        let edge = out.data[7 * 3];
        assert!(edge > 40 && edge < 215, "edge pixel {edge} is not blurred");
    }
}
