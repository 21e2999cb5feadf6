//! Presets: what derivatives to make. Parsed and validated once at start-up, so a bad preset stops the
//! deploy with a message naming the preset and the field, not the thousandth image.

use std::collections::{BTreeMap, HashMap, HashSet};

use sha2::{Digest, Sha256};

use crate::error::{PipelineError, Result};
use crate::quality::{Quality, TARGET_RANGE};

/// The preset set compiled into imgpipe, used when no preset file is configured.
pub const DEFAULT_PRESETS_TOML: &str = include_str!("../presets/default.toml");

/// Largest width or height a preset may ask for.
pub const MAX_PRESET_DIMENSION: u32 = 16_384;

/// How a source is fitted into a preset's box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Keep the aspect ratio; the result fits within the box (default).
    #[default]
    Inside,
    /// Keep the aspect ratio; crop the centre so the result fills the box exactly.
    Cover,
    /// Ignore the aspect ratio; stretch to the box.
    Fill,
}

/// Encoded output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// JPEG via libjpeg-turbo. Alpha is flattened onto the background colour.
    Jpeg,
    /// Lossy WebP via libwebp. Alpha is kept.
    Webp,
    /// PNG (lossless). Alpha is kept.
    Png,
    /// AVIF (AV1) via rav1e: 8-bit 4:2:0, sRGB signalled (`nclx` 1/13/6). Alpha is kept.
    Avif,
}

impl OutputFormat {
    /// Every format, in the order of the edge's list of served extensions.
    pub const ALL: [OutputFormat; 4] = [
        OutputFormat::Jpeg,
        OutputFormat::Webp,
        OutputFormat::Avif,
        OutputFormat::Png,
    ];

    /// File extension used in output keys.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "jpg",
            OutputFormat::Webp => "webp",
            OutputFormat::Png => "png",
            OutputFormat::Avif => "avif",
        }
    }

    /// MIME type for the `Content-Type` header.
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Webp => "image/webp",
            OutputFormat::Png => "image/png",
            OutputFormat::Avif => "image/avif",
        }
    }

    /// Lower-case name as written in metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "jpeg",
            OutputFormat::Webp => "webp",
            OutputFormat::Png => "png",
            OutputFormat::Avif => "avif",
        }
    }
}

/// JPEG chroma subsampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum ChromaSubsampling {
    /// Half resolution chroma in both directions (default; what browsers and cameras use).
    #[default]
    #[serde(rename = "4:2:0")]
    Yuv420,
    /// Full resolution chroma (sharper colour edges, larger files).
    #[serde(rename = "4:4:4")]
    Yuv444,
}

/// Which library encodes a JPEG preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JpegEncoder {
    /// libjpeg-turbo (default): the fastest, and what an nvJPEG device may stand in for.
    #[default]
    Turbo,
    /// jpegli (libjxl): adaptive quantisation, fewer bytes at the same look, slower; CPU only.
    Jpegli,
}

impl JpegEncoder {
    fn is_turbo(&self) -> bool {
        *self == JpegEncoder::Turbo
    }
}

/// One derivative recipe.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    /// Name used in output keys and metadata: lower-case letters, digits, `-` and `_`.
    pub name: String,
    /// Box width in pixels. At least one of `width` and `height` is required.
    #[serde(default)]
    pub width: Option<u32>,
    /// Box height in pixels.
    #[serde(default)]
    pub height: Option<u32>,
    /// How to fit the source into the box. Default: `inside`.
    #[serde(default)]
    pub fit: Fit,
    /// Output format. Default: `jpeg`.
    #[serde(default = "default_format")]
    pub format: OutputFormat,
    /// Encoder quality 1–100 (JPEG, WebP and AVIF; ignored for PNG), or a perceptual target
    /// (`"auto"`, `"high"`, `"good"`, `"eco"`, `{ target = <SSIMULACRA2> }`; JPEG and WebP) that the
    /// encoder reaches per image: see [`crate::quality`]. Default: 80.
    #[serde(default)]
    pub quality: Quality,
    /// Progressive JPEG. Default: false.
    #[serde(default)]
    pub progressive: bool,
    /// JPEG chroma subsampling. Default: `4:2:0`.
    #[serde(default)]
    pub chroma_subsampling: ChromaSubsampling,
    /// JPEG encoder: `"turbo"` (libjpeg-turbo) or `"jpegli"`. Default: `"turbo"` (see docs/benchmarks.md,
    /// "The rate-distortion harness", for the measured bytes and time of each).
    #[serde(default, skip_serializing_if = "JpegEncoder::is_turbo")]
    pub encoder: JpegEncoder,
    /// libwebp effort 0 (fast) – 6 (small). Default: 4.
    #[serde(default = "default_webp_method")]
    pub webp_method: u8,
    /// libwebp's sharp RGB→YUV conversion (`-sharp_yuv`): sharper colour edges, slower encode.
    /// Default: false (see docs/benchmarks.md, "The rate-distortion harness", for the measured trade).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub webp_sharp_yuv: bool,
    /// libwebp's multi-threaded encode (`cwebp -mt`): a second thread for analysis and filtering.
    /// The same bytes, lower latency when a core is idle, nothing gained when every core is already
    /// encoding an image. Default: false (see docs/benchmarks.md, "The rate-distortion harness").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub webp_multithread: bool,
    /// AVIF encoder speed 1 (slowest, smallest) – 10 (fastest). Default: 6 ([`DEFAULT_AVIF_SPEED`]).
    /// AVIF presets only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<u8>,
    /// Gaussian blur sigma in output pixels, for placeholders. Default: none.
    #[serde(default)]
    pub blur: Option<f32>,
    /// Allow output larger than the source. Default: false (never upscale).
    #[serde(default)]
    pub upscale: bool,
    /// Keep the animation of an animated GIF/WebP source (WebP output only; at most `max_frames`
    /// frames). Default: false, the derivative is the first frame.
    #[serde(default)]
    pub animated: bool,
    /// Variant group this preset belongs to: presets of one group show the same picture in different
    /// formats (e.g. `preview` = JPEG + WebP), so the edge can pick one per browser and metadata gives
    /// one `srcset` per format. Default: the preset's own name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Responsive ladder: one derivative per width (ascending, at most [`MAX_WIDTHS`]), named
    /// `<name>-<width>w` by the width actually made. Never upscaled: rungs wider than the source
    /// collapse into one at the source's width. Replaces `width`; `height` stays a cap; fit `inside`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub widths: Option<Vec<u32>>,
    /// Made on first request, never at upload ([`crate::variant`], [`crate::render`]): nothing is
    /// made for it when an image is processed, and it is not part of the set's [`PresetSet::hash`],
    /// so adding or changing one marks no image stale (no backfill). Default: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_request: bool,
}

impl Preset {
    /// The quality an nvJPEG device may encode this preset at: a JPEG at a fixed quality with the
    /// default encoder. A perceptual target is a search over CPU encodes, and jpegli's quantisation
    /// is its own, so neither goes to the device.
    pub fn device_jpeg_quality(&self) -> Option<u8> {
        if self.format == OutputFormat::Jpeg && self.encoder == JpegEncoder::Turbo {
            self.quality.fixed()
        } else {
            None
        }
    }

    /// The variant group: `group`, or the preset's name.
    pub fn group_name(&self) -> &str {
        self.group.as_deref().unwrap_or(&self.name)
    }

    /// The name of one output of this preset `width` pixels wide: the preset's name, or for a
    /// responsive ladder `<name>-<width>w`.
    pub fn output_name(&self, width: u32) -> String {
        if self.widths.is_some() {
            format!("{}-{width}w", self.name)
        } else {
            self.name.clone()
        }
    }
}

/// Most rungs a responsive ladder may have.
pub const MAX_WIDTHS: usize = 16;

/// AVIF encoder speed when a preset sets none: rav1e speed 6 (see the AVIF row in docs/benchmarks.md for ms and bytes).
pub const DEFAULT_AVIF_SPEED: u8 = 6;

fn default_format() -> OutputFormat {
    OutputFormat::Jpeg
}
fn default_webp_method() -> u8 {
    4
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetFile {
    preset: Vec<Preset>,
}

/// A validated, non-empty list of presets with a stable hash.
#[derive(Debug, Clone, PartialEq)]
pub struct PresetSet {
    presets: Vec<Preset>,
    hash: String,
}

impl PresetSet {
    /// The built-in default set (thumbnail, preview, webp, blur, low-quality).
    pub fn default_set() -> Self {
        Self::from_toml(DEFAULT_PRESETS_TOML).expect("built-in presets are valid")
    }

    /// Parses a TOML document of `[[preset]]` tables and validates it.
    pub fn from_toml(text: &str) -> Result<Self> {
        let file: PresetFile = toml::from_str(text)
            .map_err(|e| PipelineError::config(format!("preset file is not valid TOML: {e}")))?;
        Self::new(file.preset)
    }

    /// Parses a JSON document `{"preset": [...]}` (or a bare array) and validates it.
    pub fn from_json(text: &str) -> Result<Self> {
        let presets = match serde_json::from_str::<PresetFile>(text) {
            Ok(file) => file.preset,
            Err(first) => serde_json::from_str::<Vec<Preset>>(text).map_err(|_| {
                PipelineError::config(format!("preset file is not valid JSON: {first}"))
            })?,
        };
        Self::new(presets)
    }

    /// Parses by file name: `.json` as JSON, anything else as TOML.
    pub fn from_file_text(file_name: &str, text: &str) -> Result<Self> {
        if file_name.ends_with(".json") {
            Self::from_json(text)
        } else {
            Self::from_toml(text)
        }
    }

    /// Validates `presets` and computes the set hash.
    pub fn new(presets: Vec<Preset>) -> Result<Self> {
        if presets.is_empty() {
            return Err(PipelineError::config(
                "the preset set is empty; define at least one [[preset]]",
            ));
        }
        let mut names = HashSet::new();
        for preset in &presets {
            validate(preset)?;
            if !names.insert(preset.name.as_str()) {
                return Err(PipelineError::config(format!(
                    "preset '{}': name: defined twice",
                    preset.name
                )));
            }
        }
        validate_groups(&presets)?;
        // Only what upload makes counts: an on-request preset changes no stored image.
        let eager: Vec<&Preset> = presets.iter().filter(|p| !p.on_request).collect();
        let canonical = serde_json::to_vec(&eager).expect("presets serialise");
        let mut hasher = Sha256::new();
        hasher.update(crate::PIPELINE_VERSION.as_bytes());
        hasher.update(&canonical);
        let hash = hex::encode(&hasher.finalize()[..8]);
        Ok(Self { presets, hash })
    }

    /// The presets, in configuration order.
    pub fn presets(&self) -> &[Preset] {
        &self.presets
    }

    /// Hex hash of the presets and the pipeline version: equal hashes produce equal outputs.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// What the edge negotiates: group name → output format (`jpeg`, `webp`, `avif`, `png`) → file
    /// name under the source's output prefix, for the presets without a `widths` ladder, made at
    /// upload (an on-request preset joins once the CDN renders on a miss). This is the
    /// `GROUPS` table of `infra/cloudfront/negotiate.js` (a test keeps the two equal for the default
    /// set).
    pub fn edge_groups(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut groups: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for preset in self
            .presets
            .iter()
            .filter(|p| p.widths.is_none() && !p.on_request)
        {
            groups
                .entry(preset.group_name().to_string())
                .or_default()
                .insert(
                    preset.format.as_str().to_string(),
                    format!("{}.{}", preset.name, preset.format.extension()),
                );
        }
        groups
    }
}

/// One format per group (a group is one picture in several formats), group names like preset
/// names, and no preset named like another's ladder output (`<ladder>-<digits>w`).
fn validate_groups(presets: &[Preset]) -> Result<()> {
    let mut formats: HashMap<(&str, OutputFormat), &str> = HashMap::new();
    for p in presets {
        if let Some(group) = &p.group
            && !valid_name(group)
        {
            return Err(PipelineError::config(format!(
                "preset '{}': group: use 1–64 lower-case letters, digits, '-' or '_'",
                p.name
            )));
        }
        if let Some(other) = formats.insert((p.group_name(), p.format), &p.name) {
            return Err(PipelineError::config(format!(
                "preset '{}': group: '{}' already has a {} preset ('{other}'); a group holds one preset per format",
                p.name,
                p.group_name(),
                p.format.as_str()
            )));
        }
    }
    for ladder in presets.iter().filter(|p| p.widths.is_some()) {
        for p in presets {
            let clash = p
                .name
                .strip_prefix(ladder.name.as_str())
                .and_then(|rest| rest.strip_prefix('-'))
                .and_then(|rest| rest.strip_suffix('w'))
                .is_some_and(|digits| {
                    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
                });
            if clash {
                return Err(PipelineError::config(format!(
                    "preset '{}': name: clashes with the outputs of ladder '{}' (named '{}-<width>w')",
                    p.name, ladder.name, ladder.name
                )));
            }
        }
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn validate(p: &Preset) -> Result<()> {
    let fail = |field: &str, why: String| {
        Err(PipelineError::config(format!(
            "preset '{}': {field}: {why}",
            p.name
        )))
    };
    if !valid_name(&p.name) {
        return fail(
            "name",
            "use 1–64 lower-case letters, digits, '-' or '_'".into(),
        );
    }
    if p.name == "metadata" {
        return fail(
            "name",
            "'metadata' is reserved for the metadata document".into(),
        );
    }
    for (field, value) in [("width", p.width), ("height", p.height)] {
        if let Some(v) = value
            && !(1..=MAX_PRESET_DIMENSION).contains(&v)
        {
            return fail(field, format!("{v} is outside 1..={MAX_PRESET_DIMENSION}"));
        }
    }
    if let Some(widths) = &p.widths {
        if p.width.is_some() {
            return fail(
                "widths",
                "a ladder sets the width of each rung; remove `width`".into(),
            );
        }
        if p.fit != Fit::Inside {
            return fail("widths", "a ladder needs fit = \"inside\"".into());
        }
        if widths.is_empty() || widths.len() > MAX_WIDTHS {
            return fail("widths", format!("list 1 to {MAX_WIDTHS} widths"));
        }
        if let Some(v) = widths
            .iter()
            .find(|v| !(1..=MAX_PRESET_DIMENSION).contains(*v))
        {
            return fail(
                "widths",
                format!("{v} is outside 1..={MAX_PRESET_DIMENSION}"),
            );
        }
        if widths.windows(2).any(|pair| pair[0] >= pair[1]) {
            return fail(
                "widths",
                "list the widths in ascending order, each once".into(),
            );
        }
    } else if p.width.is_none() && p.height.is_none() {
        return fail("width", "set width, height or both".into());
    }
    if matches!(p.fit, Fit::Cover | Fit::Fill) && (p.width.is_none() || p.height.is_none()) {
        return fail(
            "fit",
            format!("'{:?}' needs both width and height", p.fit).to_lowercase(),
        );
    }
    match p.quality {
        Quality::Fixed(q) if !(1..=100).contains(&q) => {
            return fail("quality", format!("{q} is outside 1..=100"));
        }
        Quality::Target(score) if !(score.is_finite() && TARGET_RANGE.contains(&score)) => {
            return fail(
                "quality",
                format!(
                    "target {score} is outside {}..={}",
                    TARGET_RANGE.start(),
                    TARGET_RANGE.end()
                ),
            );
        }
        _ => {}
    }
    if p.quality.target().is_some() {
        if !matches!(p.format, OutputFormat::Jpeg | OutputFormat::Webp) {
            return fail(
                "quality",
                format!(
                    "a perceptual target needs format \"jpeg\" or \"webp\" ({} takes a quality 1-100)",
                    p.format.as_str()
                ),
            );
        }
        if p.animated {
            return fail(
                "quality",
                "an animated preset takes a quality 1-100, not a perceptual target".into(),
            );
        }
    }
    if p.animated && p.format != OutputFormat::Webp {
        return fail(
            "animated",
            "only WebP output can keep an animation; set format = \"webp\"".into(),
        );
    }
    if p.webp_sharp_yuv && p.format != OutputFormat::Webp {
        return fail(
            "webp_sharp_yuv",
            "only WebP output has it; set format = \"webp\"".into(),
        );
    }
    if !p.encoder.is_turbo() && p.format != OutputFormat::Jpeg {
        return fail(
            "encoder",
            "only JPEG output has a choice of encoder; set format = \"jpeg\"".into(),
        );
    }
    if p.webp_multithread && p.format != OutputFormat::Webp {
        return fail(
            "webp_multithread",
            "only WebP output has it; set format = \"webp\"".into(),
        );
    }
    if p.webp_method > 6 {
        return fail("webp_method", format!("{} is outside 0..=6", p.webp_method));
    }
    if let Some(sigma) = p.blur
        && !(sigma.is_finite() && sigma > 0.0 && sigma <= 100.0)
    {
        return fail("blur", format!("{sigma} is outside (0, 100]"));
    }
    if let Some(speed) = p.speed {
        if p.format != OutputFormat::Avif {
            return fail(
                "speed",
                "only AVIF output has a speed; set format = \"avif\"".into(),
            );
        }
        if !(1..=10).contains(&speed) {
            return fail("speed", format!("{speed} is outside 1..=10"));
        }
    }
    if p.progressive && p.format != OutputFormat::Jpeg {
        return fail("progressive", "only JPEG output can be progressive".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpegli_is_opt_in_per_preset_and_never_on_the_device() {
        let turbo = PresetSet::from_toml("[[preset]]\nname='x'\nwidth=1\nquality=80").unwrap();
        let said =
            PresetSet::from_toml("[[preset]]\nname='x'\nwidth=1\nquality=80\nencoder='turbo'")
                .unwrap();
        let jpegli =
            PresetSet::from_toml("[[preset]]\nname='x'\nwidth=1\nquality=80\nencoder='jpegli'")
                .unwrap();
        // Saying the default changes nothing (no reprocessing); choosing jpegli is a new preset set.
        assert_eq!(turbo.hash(), said.hash());
        assert_ne!(turbo.hash(), jpegli.hash());
        assert_eq!(jpegli.presets()[0].encoder, JpegEncoder::Jpegli);
        assert_eq!(turbo.presets()[0].device_jpeg_quality(), Some(80));
        assert_eq!(jpegli.presets()[0].device_jpeg_quality(), None);
    }

    #[test]
    fn default_set_is_valid_and_has_the_seed_outputs() {
        let set = PresetSet::default_set();
        let names: Vec<&str> = set.presets().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["thumbnail", "preview", "webp", "blur", "low-quality"]
        );
        assert_eq!(set.hash().len(), 16);
        let preview = &set.presets()[1];
        assert!(
            preview.progressive
                && preview.quality == Quality::Fixed(85)
                && preview.fit == Fit::Inside
        );
    }

    #[test]
    fn hash_changes_with_any_field() {
        let a = PresetSet::from_toml("[[preset]]\nname='a'\nwidth=10").unwrap();
        let b = PresetSet::from_toml("[[preset]]\nname='a'\nwidth=11").unwrap();
        let a2 = PresetSet::from_toml("[[preset]]\nname = 'a'\nwidth = 10\n").unwrap();
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash(), a2.hash());
    }

    #[test]
    fn on_request_presets_are_outside_the_hash_and_the_edge_groups() {
        let base = "[[preset]]\nname='a'\nwidth=10\n";
        let with = |extra: &str| PresetSet::from_toml(&format!("{base}{extra}")).unwrap();
        let eager = with("");
        let card = "[[preset]]\nname='card'\nwidth=300\nformat='webp'\non_request=true\n";
        let on_request = with(card);
        assert_eq!(
            eager.hash(),
            on_request.hash(),
            "adding an on-request preset marks nothing stale"
        );
        assert_eq!(
            on_request.hash(),
            with(&card.replace("300", "320")).hash(),
            "nor does changing one"
        );
        assert_ne!(
            eager.hash(),
            with(&card.replace("on_request=true\n", "")).hash()
        );
        assert!(!on_request.edge_groups().contains_key("card"));
        assert!(on_request.presets()[1].on_request);
    }

    #[test]
    fn errors_name_the_preset_and_field() {
        let cases = [
            ("[[preset]]\nname='x'\nwidth=0", "preset 'x': width"),
            (
                "[[preset]]\nname='x'\nwidth=10\nquality=101",
                "preset 'x': quality: 101 is outside 1..=100",
            ),
            (
                "[[preset]]\nname='x'\nwidth=10\nformat='png'\nquality='auto'",
                "preset 'x': quality: a perceptual target needs format \"jpeg\" or \"webp\" (png",
            ),
            (
                "[[preset]]\nname='x'\nwidth=10\nformat='avif'\nquality={ target = 80 }",
                "preset 'x': quality: a perceptual target needs format",
            ),
            (
                "[[preset]]\nname='x'\nwidth=10\nformat='webp'\nanimated=true\nquality='high'",
                "preset 'x': quality: an animated preset takes a quality 1-100",
            ),
            (
                "[[preset]]\nname='x'\nwidth=10\nquality={ target = 20 }",
                "preset 'x': quality: target 20 is outside 30..=95",
            ),
            (
                "[[preset]]\nname='x'\nwidth=10\nfit='cover'",
                "preset 'x': fit",
            ),
            ("[[preset]]\nname='x'", "preset 'x': width"),
            (
                "[[preset]]\nname='Bad Name'\nwidth=1",
                "preset 'Bad Name': name",
            ),
            (
                "[[preset]]\nname='x'\nwidth=1\n[[preset]]\nname='x'\nwidth=2",
                "preset 'x': name: defined twice",
            ),
            (
                "[[preset]]\nname='x'\nwidth=1\nformat='webp'\nprogressive=true",
                "preset 'x': progressive",
            ),
            (
                "[[preset]]\nname='x'\nwidth=1\nblur=-1.0",
                "preset 'x': blur",
            ),
            (
                "[[preset]]\nname='x'\nwidth=1\nwebp_method=9",
                "preset 'x': webp_method",
            ),
            (
                "[[preset]]\nname='x'\nwidth=1\nwebp_multithread=true",
                "preset 'x': webp_multithread: only WebP output",
            ),
            (
                "[[preset]]\nname='x'\nwidth=1\nformat='webp'\nencoder='jpegli'",
                "preset 'x': encoder: only JPEG output",
            ),
            (
                "[[preset]]\nname='x'\nwidth=1\nencoder='mozjpeg'",
                "unknown variant `mozjpeg`, expected `turbo` or `jpegli`",
            ),
        ];
        for (text, expected) in cases {
            let err = PresetSet::from_toml(text).unwrap_err();
            assert!(
                err.message.contains(expected),
                "{text:?} gave {}",
                err.message
            );
        }
        let unknown = PresetSet::from_toml("[[preset]]\nname='x'\nwidht=1").unwrap_err();
        assert!(unknown.message.contains("widht"), "{}", unknown.message);
    }

    #[test]
    fn avif_presets_take_a_speed_and_others_refuse_it() {
        let set =
            PresetSet::from_toml("[[preset]]\nname='a'\nwidth=10\nformat='avif'\nspeed=8").unwrap();
        assert_eq!(set.presets()[0].speed, Some(8));
        let err = PresetSet::from_toml("[[preset]]\nname='a'\nwidth=10\nformat='webp'\nspeed=8")
            .unwrap_err();
        assert!(err.message.contains("speed"), "{}", err.message);
        let err = PresetSet::from_toml("[[preset]]\nname='a'\nwidth=10\nformat='avif'\nspeed=11")
            .unwrap_err();
        assert!(err.message.contains("1..=10"), "{}", err.message);
        // Presets without a speed hash as before the field existed.
        let plain = PresetSet::from_toml("[[preset]]\nname='a'\nwidth=10").unwrap();
        assert!(
            !serde_json::to_string(plain.presets())
                .unwrap()
                .contains("speed")
        );
    }

    #[test]
    fn json_form_parses_like_toml() {
        let json = r#"{"preset":[{"name":"a","width":10,"format":"webp","quality":70}]}"#;
        let toml = "[[preset]]\nname='a'\nwidth=10\nformat='webp'\nquality=70";
        assert_eq!(
            PresetSet::from_json(json).unwrap(),
            PresetSet::from_toml(toml).unwrap()
        );
        assert!(PresetSet::from_json(r#"[{"name":"a","width":10}]"#).is_ok());
        assert!(PresetSet::from_file_text("p.json", "{").is_err());
    }

    #[test]
    fn ladders_and_groups_are_checked() {
        let cases = [
            ("[[preset]]\nname='r'\nwidths=[640, 320]", "ascending"),
            ("[[preset]]\nname='r'\nwidths=[320, 320]", "ascending"),
            ("[[preset]]\nname='r'\nwidths=[]", "list 1 to 16"),
            ("[[preset]]\nname='r'\nwidths=[0]", "outside"),
            (
                "[[preset]]\nname='r'\nwidth=100\nwidths=[320]",
                "remove `width`",
            ),
            (
                "[[preset]]\nname='r'\nwidths=[320]\nheight=100\nfit='cover'",
                "fit = \"inside\"",
            ),
            (
                "[[preset]]\nname='a'\nwidth=1\n[[preset]]\nname='b'\nwidth=2\ngroup='a'",
                "group: 'a' already has a jpeg preset ('a')",
            ),
            ("[[preset]]\nname='a'\nwidth=1\ngroup='Big'", "group: use"),
            (
                "[[preset]]\nname='r'\nwidths=[320]\n[[preset]]\nname='r-640w'\nwidth=640",
                "clashes with the outputs of ladder 'r'",
            ),
        ];
        for (text, expected) in cases {
            let err = PresetSet::from_toml(text).unwrap_err();
            assert!(
                err.message.contains(expected),
                "{text:?} gave {}",
                err.message
            );
        }
    }

    #[test]
    fn edge_groups_leave_ladders_out_and_the_responsive_set_is_valid() {
        let set = PresetSet::from_toml(include_str!("../presets/responsive.toml")).unwrap();
        let groups = set.edge_groups();
        assert_eq!(groups["preview"]["webp"], "webp.webp");
        assert_eq!(groups["preview"]["jpeg"], "preview.jpg");
        assert!(!groups.contains_key("hero"));
        // The default set's hash moves only through `group` on its webp preset.
        assert_ne!(set.hash(), PresetSet::default_set().hash());
    }
}
