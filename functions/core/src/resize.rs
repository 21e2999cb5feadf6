//! Resampling with fast_image_resize (SIMD, runtime CPU detection), Lanczos3 by default.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::error::{PipelineError, Result};
use crate::pixels::Pixels;
use crate::plan::CropFraction;

/// Keeps a `Resizer` (and its scratch buffers) for reuse across outputs and images.
pub struct ResizeEngine {
    resizer: Resizer,
}

impl Default for ResizeEngine {
    fn default() -> Self {
        Self {
            resizer: Resizer::new(),
        }
    }
}

impl ResizeEngine {
    /// Resamples the `crop` region of `source` to `width`×`height` with Lanczos3.
    /// RGBA is resized with premultiplied alpha, so transparent pixels do not bleed colour.
    pub fn resize(
        &mut self,
        source: &Pixels,
        crop: CropFraction,
        width: u32,
        height: u32,
    ) -> Result<Pixels> {
        if crop.is_full() && source.width == width && source.height == height {
            return Ok(source.clone());
        }
        let pixel_type = if source.has_alpha() {
            PixelType::U8x4
        } else {
            PixelType::U8x3
        };
        let src = ImageRef::new(source.width, source.height, &source.data, pixel_type)
            .map_err(|e| PipelineError::internal(format!("resize source buffer: {e}")))?;
        let mut dst = Image::new(width, height, pixel_type);
        let (sw, sh) = (f64::from(source.width), f64::from(source.height));
        let options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
            .crop(
                crop.left * sw,
                crop.top * sh,
                crop.width * sw,
                crop.height * sh,
            );
        self.resizer
            .resize(&src, &mut dst, &options)
            .map_err(|e| PipelineError::internal(format!("resize: {e}")))?;
        Ok(Pixels::new(width, height, source.channels, dst.into_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resizes_a_flat_colour_to_the_same_colour() {
        let source = Pixels::new(64, 48, 3, [200u8, 100, 50].repeat(64 * 48));
        let out = ResizeEngine::default()
            .resize(&source, CropFraction::FULL, 16, 12)
            .unwrap();
        assert_eq!((out.width, out.height), (16, 12));
        assert!(out.data.chunks(3).all(|px| px == [200, 100, 50]));
    }

    #[test]
    fn crop_takes_the_requested_region() {
        // Left half black, right half white; cropping the right half gives white (the Lanczos
        // kernel may reach a little past the crop edge, so allow a faint shadow).
        let mut data = Vec::new();
        for _y in 0..10 {
            for x in 0..20 {
                let v = if x < 10 { 0 } else { 255 };
                data.extend([v, v, v]);
            }
        }
        let source = Pixels::new(20, 10, 3, data);
        let crop = CropFraction {
            left: 0.5,
            top: 0.0,
            width: 0.5,
            height: 1.0,
        };
        let out = ResizeEngine::default().resize(&source, crop, 5, 5).unwrap();
        assert!(out.data.iter().all(|&v| v >= 235), "{:?}", &out.data[..15]);
    }
}
