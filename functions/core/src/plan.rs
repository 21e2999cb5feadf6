//! Planning: from the header, the orientation and the presets, decide each output's geometry, the
//! shrink-on-load factor for JPEG, and the order outputs are made in (largest first, so smaller
//! ones can be derived from a larger intermediate).

use crate::format::SourceFormat;
use crate::preset::{Fit, Preset, PresetSet};
use crate::probe::Header;

/// A resampling source must have at least this many pixels per output pixel, along each axis, before
/// the final Lanczos3 pass. libvips keeps a similar margin after shrink-on-load: DCT scaling and
/// re-resizing an intermediate are both good pre-filters, but less than ~1.5× visibly softens detail.
pub const MIN_PRESHRINK_MARGIN: f64 = 1.5;

/// A crop rectangle as fractions (0–1) of the upright image, so it applies at any decode scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropFraction {
    /// Left edge.
    pub left: f64,
    /// Top edge.
    pub top: f64,
    /// Width.
    pub width: f64,
    /// Height.
    pub height: f64,
}

impl CropFraction {
    /// The whole image.
    pub const FULL: CropFraction = CropFraction {
        left: 0.0,
        top: 0.0,
        width: 1.0,
        height: 1.0,
    };

    /// True when this is the whole image.
    pub fn is_full(&self) -> bool {
        *self == Self::FULL
    }
}

/// The geometry of one output.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Index of the preset in the preset set.
    pub preset: usize,
    /// Output name in keys and metadata: the preset's name, or `<name>-<width>w` for a ladder rung.
    pub name: String,
    /// Output width in pixels.
    pub width: u32,
    /// Output height in pixels.
    pub height: u32,
    /// Region of the upright source to resample.
    pub crop: CropFraction,
    /// The output can serve as the source of a smaller output (whole frame, aspect kept, no blur).
    pub reusable: bool,
}

/// The whole plan for one source.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Upright width (after EXIF orientation) at full scale.
    pub upright_width: u32,
    /// Upright height at full scale.
    pub upright_height: u32,
    /// JPEG DCT scale denominator: decode at 1/`decode_denominator` (1, 2, 4 or 8).
    pub decode_denominator: u32,
    /// Estimated peak memory of the decode in bytes: the decoded buffer at the chosen scale, the
    /// RGB(A) copy colour conversion makes, and the full-size coefficient store of a progressive JPEG.
    pub decode_bytes: u64,
    /// Outputs, largest first.
    pub targets: Vec<Target>,
}

/// Plans the outputs for a source with `header` and EXIF `orientation`.
pub fn plan(header: &Header, orientation: u8, presets: &PresetSet) -> Plan {
    let (w, h) = if orientation >= 5 {
        (header.height, header.width)
    } else {
        (header.width, header.height)
    };
    let mut targets: Vec<Target> = presets
        .presets()
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.on_request)
        .flat_map(|(i, p)| targets_for(i, p, w, h))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(u64::from(t.width) * u64::from(t.height)));
    let decode_denominator = if header.format == SourceFormat::Jpeg && !header.lossless {
        [8u32, 4, 2]
            .into_iter()
            .find(|&d| {
                targets
                    .iter()
                    .all(|t| source_is_enough(w.div_ceil(d), h.div_ceil(d), t))
            })
            .unwrap_or(1)
    } else {
        1
    };
    Plan {
        upright_width: w,
        upright_height: h,
        decode_denominator,
        decode_bytes: decode_bytes(header, decode_denominator),
        targets,
    }
}

/// The outputs the `on_request` presets would have for an upright source of `width`×`height`: what
/// metadata lists in its groups (a `srcset` names every rung, computed from the source size) though
/// nothing is made until the first request. Same geometry as [`plan`]'s targets.
pub fn on_request_targets(width: u32, height: u32, presets: &PresetSet) -> Vec<Target> {
    presets
        .presets()
        .iter()
        .enumerate()
        .filter(|(_, p)| p.on_request)
        .flat_map(|(i, p)| targets_for(i, p, width, height))
        .collect()
}

/// Saturating throughout: a hostile header's dimensions (a JPEG XL codestream can claim 2^30 × 2^30)
/// must give a huge estimate the limits refuse, not an overflow (found by `fuzz/`, target `probe`).
fn decode_bytes(header: &Header, denominator: u32) -> u64 {
    let full = u64::from(header.width).saturating_mul(u64::from(header.height));
    let scaled = u64::from(header.width.div_ceil(denominator))
        .saturating_mul(u64::from(header.height.div_ceil(denominator)));
    let working = (full as f64 * header.working_bytes_per_pixel) as u64;
    // Decoder working memory, stored samples (CMYK 4, 16-bit doubles them), then the 8-bit RGBA copy.
    let stored = if matches!(
        header.format,
        SourceFormat::Jpeg | SourceFormat::Heic | SourceFormat::Avif | SourceFormat::Jxl
    ) {
        4
    } else {
        4 * u64::from(header.bit_depth.div_ceil(8))
    };
    working.saturating_add(scaled.saturating_mul(stored + 4))
}

/// `width`×`height` scaled down, aspect kept, so the longer side is at most `longest` (never
/// enlarged; each side at least 1): the size of a summary copy (placeholder, face analysis).
pub fn within(width: u32, height: u32, longest: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= longest {
        return (width, height);
    }
    let scale = f64::from(longest) / f64::from(long);
    let side = |v: u32| ((f64::from(v) * scale).round() as u32).max(1);
    (side(width), side(height))
}

/// True when an upright source of `width`×`height` has enough pixels to make `target` well.
pub fn source_is_enough(width: u32, height: u32, target: &Target) -> bool {
    f64::from(width) * target.crop.width >= MIN_PRESHRINK_MARGIN * f64::from(target.width)
        && f64::from(height) * target.crop.height >= MIN_PRESHRINK_MARGIN * f64::from(target.height)
}

/// The targets of one preset: one, or one per distinct rung of a `widths` ladder (rungs the source is
/// too small for come out the same size as the last one that fits, and are dropped).
fn targets_for(index: usize, preset: &Preset, w: u32, h: u32) -> Vec<Target> {
    let Some(widths) = &preset.widths else {
        return vec![target_for(index, preset, preset.width, w, h)];
    };
    let mut targets: Vec<Target> = Vec::with_capacity(widths.len());
    for &rung in widths {
        let target = target_for(index, preset, Some(rung), w, h);
        let repeat = targets
            .last()
            .is_some_and(|last| (last.width, last.height) == (target.width, target.height));
        if !repeat {
            targets.push(target);
        }
    }
    targets
}

fn target_for(index: usize, preset: &Preset, box_width: Option<u32>, w: u32, h: u32) -> Target {
    let (wf, hf) = (f64::from(w), f64::from(h));
    let bw = box_width.map(f64::from);
    let bh = preset.height.map(f64::from);
    let px = |v: f64| (v.round() as u32).max(1);
    let (width, height, crop) = match preset.fit {
        Fit::Inside => {
            let mut scale = f64::min(
                bw.map_or(f64::INFINITY, |b| b / wf),
                bh.map_or(f64::INFINITY, |b| b / hf),
            );
            if !preset.upscale {
                scale = scale.min(1.0);
            }
            (px(wf * scale), px(hf * scale), CropFraction::FULL)
        }
        Fit::Cover => {
            let (bw, bh) = (bw.unwrap_or(wf), bh.unwrap_or(hf));
            let aspect = bw / bh;
            let (cw, ch) = if wf / hf > aspect {
                (hf * aspect, hf)
            } else {
                (wf, wf / aspect)
            };
            let crop = CropFraction {
                left: (wf - cw) / 2.0 / wf,
                top: (hf - ch) / 2.0 / hf,
                width: cw / wf,
                height: ch / hf,
            };
            let (ow, oh) = if !preset.upscale && bw > cw {
                (px(cw), px(ch))
            } else {
                (px(bw), px(bh))
            };
            (ow, oh, crop)
        }
        Fit::Fill => {
            let (mut ow, mut oh) = (bw.unwrap_or(wf), bh.unwrap_or(hf));
            if !preset.upscale {
                ow = ow.min(wf);
                oh = oh.min(hf);
            }
            (px(ow), px(oh), CropFraction::FULL)
        }
    };
    let reusable = preset.fit == Fit::Inside && preset.blur.is_none() && width < w;
    Target {
        preset: index,
        name: preset.output_name(width),
        width,
        height,
        crop,
        reusable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(format: SourceFormat, width: u32, height: u32) -> Header {
        Header {
            format,
            width,
            height,
            progressive: false,
            lossless: false,
            colour_space: crate::colour::ColourSpace::Rgb,
            bit_depth: 8,
            alpha: false,
            frames: 1,
            working_bytes_per_pixel: 0.0,
            cicp: None,
            orientation: None,
            gain_map: false,
            icc_profile: None,
        }
    }

    #[test]
    fn progressive_jpeg_budget_counts_full_size_coefficients() {
        let set = PresetSet::default_set();
        let mut h = header(SourceFormat::Jpeg, 6000, 4000);
        let baseline = plan(&h, 1, &set);
        assert_eq!(baseline.decode_denominator, 2);
        h.progressive = true;
        h.working_bytes_per_pixel = 3.0; // 4:2:0
        let progressive = plan(&h, 1, &set);
        // 24 MP × 3 bytes of coefficients = 72 MB on top of the 1/2-scale buffers.
        assert_eq!(progressive.decode_bytes - baseline.decode_bytes, 72_000_000);
        assert!(
            baseline.decode_bytes < 50_000_000,
            "{}",
            baseline.decode_bytes
        );
    }

    fn one(toml: &str, width: u32, height: u32, orientation: u8) -> Target {
        let set = PresetSet::from_toml(toml).unwrap();
        plan(&header(SourceFormat::Png, width, height), orientation, &set)
            .targets
            .remove(0)
    }

    #[test]
    fn inside_keeps_aspect_and_never_upscales() {
        let t = one(
            "[[preset]]\nname='a'\nwidth=1200\nheight=1200",
            4032,
            3024,
            1,
        );
        assert_eq!((t.width, t.height), (1200, 900));
        let t = one("[[preset]]\nname='a'\nwidth=1200\nheight=1200", 100, 78, 1);
        assert_eq!((t.width, t.height), (100, 78));
        let t = one("[[preset]]\nname='a'\nwidth=1200\nupscale=true", 100, 50, 1);
        assert_eq!((t.width, t.height), (1200, 600));
    }

    #[test]
    fn orientation_swaps_the_box() {
        let t = one(
            "[[preset]]\nname='a'\nwidth=1200\nheight=1200",
            4032,
            3024,
            6,
        );
        assert_eq!((t.width, t.height), (900, 1200));
    }

    #[test]
    fn cover_crops_the_centre() {
        let t = one(
            "[[preset]]\nname='a'\nwidth=200\nheight=200\nfit='cover'",
            400,
            200,
            1,
        );
        assert_eq!((t.width, t.height), (200, 200));
        assert_eq!(
            t.crop,
            CropFraction {
                left: 0.25,
                top: 0.0,
                width: 0.5,
                height: 1.0
            }
        );
        let small = one(
            "[[preset]]\nname='a'\nwidth=200\nheight=200\nfit='cover'",
            100,
            78,
            1,
        );
        assert_eq!((small.width, small.height), (78, 78));
    }

    #[test]
    fn fill_stretches() {
        let t = one(
            "[[preset]]\nname='a'\nwidth=300\nheight=100\nfit='fill'",
            1000,
            1000,
            1,
        );
        assert_eq!((t.width, t.height, t.crop), (300, 100, CropFraction::FULL));
    }

    #[test]
    fn jpeg_shrink_on_load_keeps_a_margin() {
        let set = PresetSet::default_set();
        // 12 MP: the 1200 px preview needs 1800 px, so 1/2 (2016) and not 1/4 (1008).
        assert_eq!(
            plan(&header(SourceFormat::Jpeg, 4032, 3024), 1, &set).decode_denominator,
            2
        );
        // 24 MP portrait 4000x6000: 1/2 gives 2000x3000 ≥ 1.5 × 800x1200.
        assert_eq!(
            plan(&header(SourceFormat::Jpeg, 4000, 6000), 1, &set).decode_denominator,
            2
        );
        // A small image is decoded at full scale, and PNG always is.
        assert_eq!(
            plan(&header(SourceFormat::Jpeg, 640, 480), 1, &set).decode_denominator,
            1
        );
        assert_eq!(
            plan(&header(SourceFormat::Png, 8000, 6000), 1, &set).decode_denominator,
            1
        );
        let thumbs =
            PresetSet::from_toml("[[preset]]\nname='t'\nwidth=200\nheight=200\nfit='cover'")
                .unwrap();
        assert_eq!(
            plan(&header(SourceFormat::Jpeg, 4032, 3024), 1, &thumbs).decode_denominator,
            8
        );
    }

    #[test]
    fn targets_are_largest_first() {
        let p = plan(
            &header(SourceFormat::Jpeg, 4032, 3024),
            1,
            &PresetSet::default_set(),
        );
        let areas: Vec<u64> = p
            .targets
            .iter()
            .map(|t| u64::from(t.width) * u64::from(t.height))
            .collect();
        assert!(areas.windows(2).all(|w| w[0] >= w[1]), "{areas:?}");
    }

    fn names(toml: &str, width: u32, height: u32) -> Vec<(String, u32, u32)> {
        let set = PresetSet::from_toml(toml).unwrap();
        let mut targets = plan(&header(SourceFormat::Png, width, height), 1, &set).targets;
        targets.sort_by_key(|t| t.width);
        targets
            .into_iter()
            .map(|t| (t.name, t.width, t.height))
            .collect()
    }

    #[test]
    fn a_ladder_makes_one_output_per_rung_named_by_its_width() {
        let ladder = "[[preset]]\nname='r'\nwidths=[320, 640, 1024, 1600]\nformat='webp'";
        let got = names(ladder, 4032, 3024);
        assert_eq!(
            got,
            [
                ("r-320w".into(), 320, 240),
                ("r-640w".into(), 640, 480),
                ("r-1024w".into(), 1024, 768),
                ("r-1600w".into(), 1600, 1200)
            ]
        );
    }

    #[test]
    fn a_ladder_never_upscales_and_drops_rungs_the_source_cannot_fill() {
        let ladder = "[[preset]]\nname='r'\nwidths=[320, 640, 1024, 1600]";
        let got = names(ladder, 800, 600);
        assert_eq!(
            got,
            [
                ("r-320w".into(), 320, 240),
                ("r-640w".into(), 640, 480),
                ("r-800w".into(), 800, 600)
            ]
        );
        // A source narrower than the first rung: one output at its own size.
        assert_eq!(names(ladder, 200, 100), [("r-200w".into(), 200, 100)]);
        // `height` caps every rung: portrait rungs past the cap collapse too.
        let capped = "[[preset]]\nname='r'\nwidths=[320, 640, 1024]\nheight=600";
        assert_eq!(
            names(capped, 3000, 4000),
            [("r-320w".into(), 320, 427), ("r-450w".into(), 450, 600)]
        );
    }
}
