//! Presets: what derivatives to make. Parsed and validated once at start-up, so a bad preset stops the
//! deploy with a message naming the preset and the field, not the thousandth image.

use std::collections::{BTreeMap, HashMap, HashSet};

use sha2::{Digest, Sha256};

use crate::error::{PipelineError, Result};
pub use crate::focus::Gravity;
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
    /// Keep the aspect ratio; crop so the result fills the box exactly. Where the crop sits is the
    /// preset's `gravity` (default: the centre).
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
    /// Where a `cover` crop sits: `"centre"` (default), `"auto"` (the app's focal point, else the
    /// faces, else the attention point, else the centre), `"faces"`, `"attention"` or `"focal"`
    /// ([`crate::focus`]). Cover presets only. Left out of the set's hash when `"centre"`, so sets
    /// written before it existed keep their hash.
    #[serde(default, skip_serializing_if = "Gravity::is_centre")]
    pub gravity: Gravity,
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
    /// The built-in default set (thumbnail, preview, webp, blur, low-quality, and `avif`, made on request).
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

    /// True when some cover preset (eager or on request) places its crop by something other than
    /// the centre: then each image is analysed once at upload ([`crate::focus`]).
    pub fn needs_focus(&self) -> bool {
        self.presets
            .iter()
            .any(|p| p.fit == Fit::Cover && !p.gravity.is_centre())
    }

    /// Hex hash of the presets and the pipeline version: equal hashes produce equal outputs.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// What the edge negotiates: group name → output format (`jpeg`, `webp`, `avif`, `png`) → file
    /// name under the source's output prefix, for the presets without a `widths` ladder, eager or
    /// `on_request` (the edge renders those on a miss, so negotiation may pick a format nobody made
    /// yet: an AVIF-accepting browser gets the group's AVIF member from its first request on). This
    /// is the `GROUPS` table of `infra/cloudfront/negotiate.js` (a test keeps the two equal for the
    /// default set).
    pub fn edge_groups(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut groups: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for preset in self.presets.iter().filter(|p| p.widths.is_none()) {
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
    if !p.gravity.is_centre() && p.fit != Fit::Cover {
        return fail(
            "gravity",
            "only a fit = \"cover\" crop has a gravity; remove it or set fit = \"cover\"".into(),
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
mod tests;
