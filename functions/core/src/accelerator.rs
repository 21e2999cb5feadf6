//! The [`Accelerator`] trait: a device (the GPU worker's CUDA backend) that takes pixel work off the
//! CPU. The [`crate::engine::Engine`] offers it each call and does on the CPU whatever it fails or
//! declines.

use crate::error::Result;
use crate::pixels::Pixels;

/// A device that takes pixel work off the CPU. An error makes the engine do that call on the CPU.
pub trait Accelerator: Send {
    /// Short name for logs (`cuda`, …).
    fn name(&self) -> &str;
    /// Resamples all of `source` to `width`×`height` (crops are cut out before): Lanczos3, premultiplied
    /// alpha for RGBA, the math of [`crate::kernel`].
    fn resample(&mut self, source: &Pixels, width: u32, height: u32) -> Result<Pixels, String>;
    /// Decodes, at full size to interleaved RGB, a JPEG that [`crate::decode::suits_device_decode`]
    /// accepted. `None`: this accelerator has no JPEG decoder.
    fn decode_jpeg(&mut self, _bytes: &[u8]) -> Option<Result<Pixels, String>> {
        None
    }
    /// Resamples the current image's upright frame (the one [`Accelerator::decode_jpeg_upright`]
    /// returned, when it did), whole: an accelerator that kept that frame on the device may resample
    /// its own copy instead of uploading `source` again. Same result as [`Accelerator::resample`].
    fn resample_upright(
        &mut self,
        source: &Pixels,
        width: u32,
        height: u32,
    ) -> Result<Pixels, String> {
        self.resample(source, width, height)
    }
    /// Drops whatever the accelerator kept on the device for the current image (called before and
    /// after each image).
    fn release_image(&mut self) {}
    /// Decodes like [`Accelerator::decode_jpeg`], then converts with `shaper` (when given) and
    /// applies `orientation` (2–8; others: none) without the pixels leaving the device in between:
    /// one download instead of one per step. `None`: not offered (the engine runs the steps one by
    /// one).
    fn decode_jpeg_upright(
        &mut self,
        _bytes: &[u8],
        _shaper: Option<&crate::colour::MatrixShaper>,
        _orientation: u8,
    ) -> Option<Result<Pixels, String>> {
        None
    }
    /// Encodes opaque RGB `pixels` as a JPEG with `preset`'s quality, progressiveness and chroma
    /// subsampling, no metadata. `None`: this accelerator has no JPEG encoder.
    fn encode_jpeg(
        &mut self,
        _pixels: &Pixels,
        _preset: &crate::preset::Preset,
    ) -> Option<Result<Vec<u8>, String>> {
        None
    }
    /// Converts RGB/RGBA `pixels` to sRGB exactly as [`crate::colour::MatrixShaper::apply`] does.
    /// `None`: not offered.
    fn to_srgb(
        &mut self,
        _pixels: &Pixels,
        _shaper: &crate::colour::MatrixShaper,
    ) -> Option<Result<Pixels, String>> {
        None
    }
    /// Applies EXIF `orientation` (2–8) exactly as [`crate::orient::orient`] does. `None`: not offered.
    fn orient(&mut self, _pixels: &Pixels, _orientation: u8) -> Option<Result<Pixels, String>> {
        None
    }
}
