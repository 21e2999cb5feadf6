//! Perceptual scores: SSIMULACRA2 of an encoded derivative against the pixels it was encoded from.
//!
//! SSIMULACRA2 (Cloudinary/JPEG XL's metric; ~90 visually lossless, ~80 very high, ~70 high, ~50
//! medium) is what `quality = "auto"` aims at and what `make bench`'s rate–distortion table reports.
//! Crate: `fast-ssim2` (imazen, BSD-2/BSD-3/MIT): SIMD kernels and a precomputed reference, so a
//! quality search pays for the reference side once and each trial only for the distorted side; its
//! scores track libjxl's `ssimulacra2` tool. `ssimulacra2` (rust-av) computes the same metric in
//! scalar code and recomputes the reference on every call.
//!
//! Pixels with alpha are composited onto the background first, on both sides: the score is about
//! what a viewer sees on that background.

use fast_ssim2::{PixelDescriptor, PixelSlice, Ssimulacra2Reference};

use crate::error::{PipelineError, Result};
use crate::pixels::Pixels;

/// The reference side of SSIMULACRA2 for one image, computed once; [`Scorer::score`] compares
/// candidates against it.
pub struct Scorer {
    reference: Ssimulacra2Reference,
    background: [u8; 3],
    width: u32,
    height: u32,
}

impl Scorer {
    /// Precomputes the reference for `pixels` (composited onto `background` when they have alpha).
    pub fn new(pixels: &Pixels, background: [u8; 3]) -> Result<Self> {
        let flat = flattened(pixels, background);
        let reference = Ssimulacra2Reference::new(&slice(&flat)?).map_err(metric_error)?;
        Ok(Self {
            reference,
            background,
            width: pixels.width,
            height: pixels.height,
        })
    }

    /// The SSIMULACRA2 score of `candidate` (same size as the reference): 100 for identical
    /// pixels, lower as visible differences grow (can go negative).
    pub fn score(&self, candidate: &Pixels) -> Result<f64> {
        if (candidate.width, candidate.height) != (self.width, self.height) {
            return Err(PipelineError::internal(format!(
                "SSIMULACRA2: candidate is {}x{}, reference {}x{}",
                candidate.width, candidate.height, self.width, self.height
            )));
        }
        let flat = flattened(candidate, self.background);
        self.reference.compare(&slice(&flat)?).map_err(metric_error)
    }

    /// Decodes `encoded` (any format the pipeline reads; what an encoder just wrote) and scores it.
    pub fn score_encoded(&self, encoded: &[u8]) -> Result<f64> {
        self.score(&decode_output(encoded)?)
    }
}

/// Decodes an encoded derivative to pixels as a browser would show them: no colour management
/// (derivatives carry no profile and are sRGB), no orientation (they carry no EXIF).
pub fn decode_output(encoded: &[u8]) -> Result<Pixels> {
    let header = crate::probe::probe(encoded)?;
    crate::decode::decode(encoded, &header, 1, None, u64::MAX)
}

fn flattened(pixels: &Pixels, background: [u8; 3]) -> std::borrow::Cow<'_, Pixels> {
    if pixels.has_alpha() {
        std::borrow::Cow::Owned(pixels.clone().flatten(background))
    } else {
        std::borrow::Cow::Borrowed(pixels)
    }
}

fn slice(pixels: &Pixels) -> Result<PixelSlice<'_>> {
    PixelSlice::new(
        &pixels.data,
        pixels.width,
        pixels.height,
        pixels.stride(),
        PixelDescriptor::RGB8_SRGB,
    )
    .map_err(|e| PipelineError::internal(format!("SSIMULACRA2 input: {e}")))
}

fn metric_error(e: fast_ssim2::Ssimulacra2Error) -> PipelineError {
    PipelineError::internal(format!("SSIMULACRA2: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preset::PresetSet;

    fn photo_1200() -> Pixels {
        let bytes = crate::testing::fixture("camera_nokia-8-3-5g_gps_9mp.jpg");
        let header = crate::probe::probe(&bytes).unwrap();
        let decoded = crate::decode::decode(&bytes, &header, 4, None, u64::MAX).unwrap();
        let height = decoded.height * 600 / decoded.width;
        resize(&decoded, 600, height)
    }

    fn resize(pixels: &Pixels, width: u32, height: u32) -> Pixels {
        use crate::resize::{CpuResizer, Filter};
        CpuResizer::default()
            .resample(
                pixels,
                crate::plan::CropFraction::FULL,
                width,
                height,
                Filter::Lanczos3,
            )
            .unwrap()
    }

    fn jpeg_at(pixels: &Pixels, quality: u8) -> Vec<u8> {
        let set = PresetSet::from_file_text(
            "t.toml",
            &format!("[[preset]]\nname='t'\nwidth=600\nquality={quality}"),
        )
        .unwrap();
        crate::encode::encode(pixels.clone(), &set.presets()[0], [255; 3]).unwrap()
    }

    #[test]
    fn identical_pixels_score_100_and_scores_fall_with_quality() {
        let pixels = photo_1200();
        let scorer = Scorer::new(&pixels, [255; 3]).unwrap();
        assert!((scorer.score(&pixels).unwrap() - 100.0).abs() < 1e-6);
        let scores: Vec<f64> = [95, 80, 50, 20]
            .iter()
            .map(|&q| scorer.score_encoded(&jpeg_at(&pixels, q)).unwrap())
            .collect();
        assert!(
            scores.windows(2).all(|w| w[0] > w[1] + 2.0),
            "scores should fall clearly from q95 to q20: {scores:?}"
        );
        // Known ranges for a JPEG of a camera photo (libjpeg-turbo, 4:2:0): q95 near visually
        // lossless, q20 clearly degraded.
        assert!(scores[0] > 80.0 && scores[3] < 60.0, "{scores:?}");
    }

    #[test]
    fn a_candidate_of_another_size_is_an_error() {
        let pixels = photo_1200();
        let scorer = Scorer::new(&pixels, [255; 3]).unwrap();
        let smaller = resize(&pixels, 300, 200);
        let err = scorer.score(&smaller).unwrap_err();
        assert!(err.message.contains("reference"), "{}", err.message);
    }

    #[test]
    fn alpha_is_scored_as_seen_on_the_background() {
        // A checkerboard; the same checkerboard opaque scores 100, fully transparent it shows
        // the background (flat white) and scores far lower.
        let (w, h) = (64u32, 64u32);
        let checker: Vec<[u8; 3]> = (0..w * h)
            .map(|i| {
                if (i % w / 8 + i / w / 8) % 2 == 0 {
                    [30, 60, 90]
                } else {
                    [220, 200, 180]
                }
            })
            .collect();
        let rgb = Pixels::new(w, h, 3, checker.concat());
        let with_alpha = |alpha: u8| {
            let data = checker
                .iter()
                .flat_map(|p| [p[0], p[1], p[2], alpha])
                .collect();
            Pixels::new(w, h, 4, data)
        };
        let scorer = Scorer::new(&rgb, [255; 3]).unwrap();
        assert!((scorer.score(&with_alpha(255)).unwrap() - 100.0).abs() < 1e-6);
        let transparent = scorer.score(&with_alpha(0)).unwrap();
        assert!(transparent < 50.0, "{transparent}");
        // Transparent over white is exactly a white image.
        let white = Scorer::new(
            &Pixels::new(w, h, 3, vec![255; (w * h * 3) as usize]),
            [255; 3],
        )
        .unwrap();
        assert!((white.score(&with_alpha(0)).unwrap() - 100.0).abs() < 1e-6);
    }
}
