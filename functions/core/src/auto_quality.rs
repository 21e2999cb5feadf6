//! Encoding to a perceptual target (`quality = "auto"`, a level, or `{ target = N }`): the lowest
//! encoder quality whose output scores at least the target, per image.
//!
//! `quality_search` does the search; each trial is a real encode ([`crate::encode::encode_at`]) of
//! the already-resized pixels, decoded and scored with SSIMULACRA2 ([`crate::perceptual`]) against
//! those pixels, whose reference side is computed once. The first trial is the quality that reaches
//! the target on a typical photo (the `START` tables, from `make bench`'s rate–distortion run); the
//! search stops at a passing trial within [`TOLERANCE`] points of the target.

use crate::encode::encode_at;
use crate::error::Result;
use crate::perceptual::Scorer;
use crate::pixels::Pixels;
use crate::preset::{JpegEncoder, OutputFormat, Preset};
use crate::quality_search::{SearchSpec, search};

/// A passing trial this close above the target is kept (SSIMULACRA2 points).
pub const TOLERANCE: f64 = 1.5;
/// Most trial encodes per derivative.
pub const MAX_TRIALS: u8 = 6;
/// The quality range searched.
pub const MIN_QUALITY: u8 = 10;
/// See [`MIN_QUALITY`].
pub const MAX_QUALITY: u8 = 98;

/// (SSIMULACRA2, quality) reached by the median photo of `make bench`'s set at 1200 px (see docs/benchmarks.md,
/// "The rate-distortion harness"), per format: the first trial is interpolated from these, and the slope between
/// neighbours is the search's first step.
const START_JPEG: [(f64, u8); 9] = [
    (54.9, 30),
    (61.3, 40),
    (65.9, 50),
    (69.3, 60),
    (73.6, 70),
    (78.8, 80),
    (81.4, 85),
    (84.9, 90),
    (88.5, 95),
];
/// jpegli, 4:4:4 progressive (what the harness measured; its 4:2:0 curve is close below q85).
const START_JPEGLI: [(f64, u8); 9] = [
    (62.2, 30),
    (64.0, 40),
    (67.8, 50),
    (72.7, 60),
    (76.2, 70),
    (80.3, 80),
    (83.0, 85),
    (86.8, 90),
    (91.0, 95),
];
const START_WEBP: [(f64, u8); 9] = [
    (52.9, 30),
    (59.3, 40),
    (64.1, 50),
    (67.4, 60),
    (71.2, 70),
    (77.1, 80),
    (81.3, 85),
    (85.0, 90),
    (87.2, 95),
];

/// What a target search chose, recorded in the derivative's metadata.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Chosen {
    /// The target score.
    pub target: f64,
    /// The encoder quality used.
    pub quality: u8,
    /// The output's SSIMULACRA2 score.
    pub score: f64,
    /// Trial encodes made.
    pub trials: u8,
    /// Whether the score reached the target (false: the best the range allowed).
    pub reached: bool,
}

/// An encoded derivative and, for a perceptual target, what the search chose.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// The encoded file.
    pub bytes: Vec<u8>,
    /// `None` for a fixed quality.
    pub chosen: Option<Chosen>,
}

/// Encodes `pixels` with `preset`: at its fixed quality, or searched to its perceptual target.
pub fn encode(pixels: &Pixels, preset: &Preset, background: [u8; 3]) -> Result<Encoded> {
    let Some(target) = preset.quality.target() else {
        let quality = preset.quality.fixed().unwrap_or(80);
        return Ok(Encoded {
            bytes: encode_at(pixels, preset, quality, background)?,
            chosen: None,
        });
    };
    let scorer = Scorer::new(pixels, background)?;
    // A JPEG has no alpha: flatten once here rather than in every trial's `encode_at`.
    let flattened;
    let pixels = if preset.format == OutputFormat::Jpeg && pixels.has_alpha() {
        flattened = pixels.clone().flatten(background);
        &flattened
    } else {
        pixels
    };
    let (start, slope_guess) = start(start_table(preset), target);
    let spec = SearchSpec {
        target,
        start,
        min: MIN_QUALITY,
        max: MAX_QUALITY,
        max_trials: MAX_TRIALS,
        slope_guess,
        tolerance: TOLERANCE,
    };
    let searched = search(&spec, |quality| {
        let bytes = encode_at(pixels, preset, quality, background)?;
        let score = scorer.score_encoded(&bytes)?;
        let len = bytes.len();
        Ok::<_, crate::error::PipelineError>((bytes, len, score))
    })?;
    Ok(Encoded {
        chosen: Some(Chosen {
            target,
            quality: searched.chosen.quality,
            score: searched.chosen.score,
            trials: searched.trials,
            reached: searched.reached,
        }),
        bytes: searched.chosen.output,
    })
}

/// The (score, quality) table of the preset's encoder.
fn start_table(preset: &Preset) -> &'static [(f64, u8)] {
    match (preset.format, preset.encoder) {
        (OutputFormat::Webp, _) => &START_WEBP,
        (_, JpegEncoder::Jpegli) => &START_JPEGLI,
        _ => &START_JPEG,
    }
}

/// The first quality to try for `target`, and the score points per quality step around it, from
/// `table`.
fn start(table: &[(f64, u8)], target: f64) -> (u8, f64) {
    let i = table
        .windows(2)
        .position(|w| target <= w[1].0)
        .unwrap_or(table.len() - 2);
    let ((s0, q0), (s1, q1)) = (table[i], table[i + 1]);
    let slope = (s1 - s0) / (f64::from(q1) - f64::from(q0));
    let q = f64::from(q0) + (target - s0) / slope;
    (
        q.round()
            .clamp(f64::from(MIN_QUALITY), f64::from(MAX_QUALITY)) as u8,
        slope,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preset::PresetSet;
    use crate::quality::Quality;

    fn photo(width: u32) -> Pixels {
        let bytes = crate::testing::fixture("large_olympus-e-p3_12mp.jpg");
        let header = crate::probe::probe(&bytes).unwrap();
        let decoded = crate::decode::decode(&bytes, &header, 4, None, u64::MAX).unwrap();
        let height = decoded.height * width / decoded.width;
        crate::resize::CpuResizer::default()
            .resample(
                &decoded,
                crate::plan::CropFraction::FULL,
                width,
                height,
                crate::resize::Filter::Lanczos3,
            )
            .unwrap()
    }

    fn preset(format: &str, quality: &str) -> Preset {
        let toml = format!("[[preset]]\nname='p'\nwidth=600\nformat='{format}'\nquality={quality}");
        PresetSet::from_toml(&toml).unwrap().presets()[0].clone()
    }

    #[test]
    fn reaches_each_target_within_the_tolerance_in_few_encodes() {
        let pixels = photo(600);
        let scorer = Scorer::new(&pixels, [255; 3]).unwrap();
        // The last "format" also selects jpegli at 4:4:4 (the preset lines after `format=`).
        let jpegli = "jpeg'\nencoder='jpegli'\nchroma_subsampling='4:4:4";
        for format in ["jpeg", "webp", jpegli] {
            let mut last_bytes = 0;
            for target in [55.0, 65.0, 75.0, 85.0] {
                // jpegli's scores flatten below q30 (~57 on this image; docs/benchmarks.md has the harness's curves):
                // a target of 55 ends at the trial limit there, not within the tolerance.
                if format == jpegli && target < 60.0 {
                    continue;
                }
                let p = preset(format, &format!("{{ target = {target} }}"));
                let got = encode(&pixels, &p, [255; 3]).unwrap();
                let chosen = got.chosen.unwrap();
                assert!(chosen.reached, "{format} {target}: {chosen:?}");
                // The recorded score is the output's own.
                let rescored = scorer.score_encoded(&got.bytes).unwrap();
                assert!((rescored - chosen.score).abs() < 1e-9, "{format} {target}");
                assert!(chosen.score >= target, "{format} {target}: {chosen:?}");
                // Within the tolerance, unless one quality step jumps further.
                let one_lower = encode_at(&pixels, &p, chosen.quality - 1, [255; 3]).unwrap();
                let lower_score = scorer.score_encoded(&one_lower).unwrap();
                assert!(
                    chosen.score - target <= TOLERANCE || lower_score < target,
                    "{format} {target}: {chosen:?}, q-1 scores {lower_score}"
                );
                assert!(chosen.trials <= 4, "{format} {target}: {chosen:?}");
                assert!(got.bytes.len() > last_bytes, "higher target, more bytes");
                last_bytes = got.bytes.len();
            }
        }
    }

    #[test]
    fn a_fixed_quality_encodes_once_and_records_nothing() {
        let pixels = photo(300);
        let p = preset("jpeg", "72");
        let got = encode(&pixels, &p, [255; 3]).unwrap();
        assert_eq!(got.chosen, None);
        assert_eq!(got.bytes, encode_at(&pixels, &p, 72, [255; 3]).unwrap());
        assert_eq!(p.quality, Quality::Fixed(72));
    }

    #[test]
    fn the_search_is_deterministic() {
        let pixels = photo(300);
        let p = preset("webp", "'auto'");
        assert_eq!(
            encode(&pixels, &p, [255; 3]).unwrap(),
            encode(&pixels, &p, [255; 3]).unwrap()
        );
    }

    #[test]
    fn the_start_table_is_monotone_and_interpolates() {
        for table in [&START_JPEG, &START_JPEGLI, &START_WEBP] {
            assert!(table.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
        }
        assert_eq!(start(&START_JPEG, 78.8).0, 80);
        assert_eq!(start(&START_JPEG, 74.0).0, 71);
        assert_eq!(start(&START_JPEG, 71.0).0, 64);
        // Beyond the table: extrapolated, clamped to the range.
        assert_eq!(start(&START_JPEG, 95.0).0, MAX_QUALITY);
        assert_eq!(start(&START_WEBP, 30.0).0, MIN_QUALITY);
        // Each encoder starts from its own table: jpegli reaches 80.3 at q80, libjpeg-turbo at ~q83.
        let preset = |lines: &str| {
            PresetSet::from_toml(&format!("[[preset]]\nname='x'\nwidth=1\n{lines}")).unwrap()
        };
        let jpegli = preset("encoder='jpegli'");
        assert_eq!(start(start_table(&jpegli.presets()[0]), 80.3).0, 80);
        let turbo = preset("format='jpeg'");
        assert_eq!(start(start_table(&turbo.presets()[0]), 80.3).0, 83);
    }
}
