//! CPU resampling with fast_image_resize (SIMD convolution, runtime CPU detection): Lanczos3 for
//! derivatives, a box filter for summaries. RGBA is resampled with premultiplied alpha, so transparent
//! pixels do not bleed colour. Accelerator dispatch lives in [`crate::engine`].

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::error::{PipelineError, Result};
use crate::pixels::Pixels;
use crate::plan::CropFraction;

/// Resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Lanczos3: every derivative.
    Lanczos3,
    /// Box average: the placeholder's ≤100 px summary, where sharpness buys nothing.
    Box,
}

/// fast_image_resize's reusable state (its buffers live between calls, one per thread).
pub struct CpuResizer {
    resizer: Resizer,
}

impl Default for CpuResizer {
    fn default() -> Self {
        Self {
            resizer: Resizer::new(),
        }
    }
}

impl CpuResizer {
    /// Resamples the `crop` region of `source` to `width`×`height` with `filter`.
    pub fn resample(
        &mut self,
        source: &Pixels,
        crop: CropFraction,
        width: u32,
        height: u32,
        filter: Filter,
    ) -> Result<Pixels> {
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
            .resize_alg(ResizeAlg::Convolution(match filter {
                Filter::Lanczos3 => FilterType::Lanczos3,
                Filter::Box => FilterType::Box,
            }))
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

/// Copies the `crop` region of `source` (rounded to whole pixels, at least 1×1).
pub(crate) fn cut(source: &Pixels, crop: CropFraction) -> Pixels {
    let (sw, sh) = (f64::from(source.width), f64::from(source.height));
    let left = ((crop.left * sw).round() as u32).min(source.width - 1);
    let top = ((crop.top * sh).round() as u32).min(source.height - 1);
    let width = ((crop.width * sw).round() as u32).clamp(1, source.width - left);
    let height = ((crop.height * sh).round() as u32).clamp(1, source.height - top);
    let c = source.channels as usize;
    let mut data = Vec::with_capacity((width * height) as usize * c);
    for y in top..top + height {
        let start = (y as usize * source.width as usize + left as usize) * c;
        data.extend_from_slice(&source.data[start..start + width as usize * c]);
    }
    Pixels::new(width, height, source.channels, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;

    #[test]
    fn resizes_a_flat_colour_to_the_same_colour() {
        let source = Pixels::new(64, 48, 3, [200u8, 100, 50].repeat(64 * 48));
        let out = Engine::default()
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
        let out = Engine::default().resize(&source, crop, 5, 5).unwrap();
        assert!(out.data.iter().all(|&v| v >= 235), "{:?}", &out.data[..15]);
    }
}
