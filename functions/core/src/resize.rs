//! Resampling: Lanczos3 with fast_image_resize (SIMD, runtime CPU detection) by default, or another
//! [`Resample`] backend (the GPU worker's CUDA kernels) behind the same [`ResizeEngine`].

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::error::{PipelineError, Result};
use crate::pixels::Pixels;
use crate::plan::CropFraction;

/// A resampling backend: the whole of `source` to `width`×`height` (crops are cut out before), Lanczos3,
/// premultiplied alpha for RGBA. An error makes the engine fall back to the CPU for that call.
pub trait Resample: Send {
    /// Short name for logs (`cuda`, …).
    fn name(&self) -> &str;
    /// Resamples all of `source`.
    fn resample(&mut self, source: &Pixels, width: u32, height: u32) -> Result<Pixels, String>;
}

/// Keeps a `Resizer` (and its scratch buffers) for reuse across outputs and images, and optionally
/// another [`Resample`] backend that takes every call it can.
pub struct ResizeEngine {
    resizer: Resizer,
    backend: Option<Box<dyn Resample>>,
    backend_failures: u64,
    last_backend_error: Option<String>,
}

impl Default for ResizeEngine {
    fn default() -> Self {
        Self {
            resizer: Resizer::new(),
            backend: None,
            backend_failures: 0,
            last_backend_error: None,
        }
    }
}

impl ResizeEngine {
    /// An engine that resamples with `backend`, and with fast_image_resize when it fails.
    pub fn with_backend(backend: Box<dyn Resample>) -> Self {
        Self {
            resizer: Resizer::new(),
            backend: Some(backend),
            backend_failures: 0,
            last_backend_error: None,
        }
    }

    /// The backend in use (`cpu` without one).
    pub fn backend_name(&self) -> &str {
        self.backend.as_ref().map_or("cpu", |b| b.name())
    }

    /// Calls the backend failed (and the CPU did instead), with the last error, for the caller to log.
    pub fn backend_failures(&self) -> (u64, Option<&str>) {
        (self.backend_failures, self.last_backend_error.as_deref())
    }

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
        if let Some(backend) = self.backend.as_mut() {
            let cropped;
            let whole = if crop.is_full() {
                source
            } else {
                cropped = cut(source, crop);
                &cropped
            };
            match backend.resample(whole, width, height) {
                Ok(pixels) => return Ok(pixels),
                Err(e) => {
                    self.backend_failures += 1;
                    self.last_backend_error = Some(format!("{}: {e}", backend.name()));
                }
            }
        }
        self.resize_on_cpu(source, crop, width, height, FilterType::Lanczos3)
    }

    /// Averages `source` down to `width`×`height` with a box filter, on the CPU: for summaries of
    /// the picture (the ThumbHash placeholder and its colours), where Lanczos3's sharpness buys nothing
    /// and its 6× wider support costs milliseconds on a large source. Never for derivatives.
    pub fn resize_box(&mut self, source: &Pixels, width: u32, height: u32) -> Result<Pixels> {
        if source.width == width && source.height == height {
            return Ok(source.clone());
        }
        self.resize_on_cpu(source, CropFraction::FULL, width, height, FilterType::Box)
    }

    fn resize_on_cpu(
        &mut self,
        source: &Pixels,
        crop: CropFraction,
        width: u32,
        height: u32,
        filter: FilterType,
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
            .resize_alg(ResizeAlg::Convolution(filter))
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
fn cut(source: &Pixels, crop: CropFraction) -> Pixels {
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

    struct Failing;
    impl Resample for Failing {
        fn name(&self) -> &str {
            "failing"
        }
        fn resample(&mut self, _: &Pixels, _: u32, _: u32) -> Result<Pixels, String> {
            Err("no device".into())
        }
    }

    /// Records the crops it is given and answers with a flat image.
    struct Recording(std::sync::Arc<std::sync::Mutex<Vec<(u32, u32, u8)>>>);
    impl Resample for Recording {
        fn name(&self) -> &str {
            "recording"
        }
        fn resample(&mut self, source: &Pixels, width: u32, height: u32) -> Result<Pixels, String> {
            self.0
                .lock()
                .unwrap()
                .push((source.width, source.height, source.data[0]));
            Ok(Pixels::new(
                width,
                height,
                3,
                vec![7; (width * height * 3) as usize],
            ))
        }
    }

    #[test]
    fn a_backend_gets_the_cut_out_crop_and_a_failing_one_falls_back_to_the_cpu() {
        let mut data = Vec::new();
        for _y in 0..10 {
            for x in 0..20u8 {
                data.extend([x, x, x]);
            }
        }
        let source = Pixels::new(20, 10, 3, data);
        let crop = CropFraction {
            left: 0.5,
            top: 0.0,
            width: 0.5,
            height: 1.0,
        };
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut engine = ResizeEngine::with_backend(Box::new(Recording(seen.clone())));
        let out = engine.resize(&source, crop, 5, 5).unwrap();
        assert_eq!(out.data[0], 7);
        assert_eq!(*seen.lock().unwrap(), [(10, 10, 10)]);

        let mut fallback = ResizeEngine::with_backend(Box::new(Failing));
        let cpu = ResizeEngine::default().resize(&source, crop, 5, 5).unwrap();
        assert_eq!(fallback.resize(&source, crop, 5, 5).unwrap(), cpu);
        assert_eq!(fallback.backend_failures(), (1, Some("failing: no device")));
    }
}
