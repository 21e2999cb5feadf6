//! The metadata document written next to the derivatives (`metadata.json`), schema version 1.
//! docs/presets-and-formats.md ("Metadata document") documents every field; change [`SCHEMA`] when a field changes meaning or goes away.

use std::collections::BTreeMap;

use crate::exif::{CameraInfo, GpsPosition};

/// Schema identifier written into every document.
pub const SCHEMA: &str = "imgpipe.metadata/v1";

/// Outcome of processing one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every derivative was written.
    Done,
    /// Processing stopped with `error`; the message went to the dead-letter queue.
    Failed,
}

/// Why processing failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorInfo {
    /// Stable code: `empty`, `unsupported`, `corrupt`, `over_limit`, `source_missing`, `retries_exhausted`, …
    pub kind: String,
    /// What happened and what to do about it.
    pub message: String,
    /// Whether a retry of the same input could succeed.
    pub retryable: bool,
}

/// The source object and what its header and EXIF say.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SourceInfo {
    /// Ingest bucket.
    pub bucket: String,
    /// Object key, decoded.
    pub key: String,
    /// S3 ETag (without quotes), when known.
    pub etag: Option<String>,
    /// SHA-256 of the source bytes, hex.
    pub sha256: Option<String>,
    /// Source size in bytes.
    pub bytes: Option<u64>,
    /// Format sniffed from the bytes.
    pub format: Option<String>,
    /// Width after EXIF orientation.
    pub width: Option<u32>,
    /// Height after EXIF orientation.
    pub height: Option<u32>,
    /// Orientation applied (1–8; 1 when absent): the EXIF tag, or for HEIC/AVIF/JPEG XL the
    /// container's own (`irot`/`imir` as the equivalent EXIF value), which wins over EXIF.
    pub orientation: Option<u8>,
    /// How colour is stored: `rgb`, `gray`, `indexed` or `cmyk`.
    pub color_space: Option<String>,
    /// Description of the embedded ICC profile (e.g. `Display P3`); absent when there is none.
    pub icc_profile: Option<String>,
    /// Bits per channel as stored (1–16).
    pub bit_depth: Option<u8>,
    /// The source has transparency.
    pub alpha: Option<bool>,
    /// Frames (1 for a still image).
    pub frames: Option<u32>,
    /// Progressive JPEG.
    pub progressive: Option<bool>,
    /// Colour code points (HEIC/AVIF `nclx`) when they, not an ICC profile, describe the colour.
    /// Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cicp: Option<CicpInfo>,
    /// `pq` or `hlg` for HDR sources (tone-mapped to SDR sRGB). Absent for SDR sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hdr: Option<String>,
    /// True when a JPEG carries an Ultra HDR / ISO 21496-1 gain map (the primary image is used).
    /// Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gain_map: Option<bool>,
    /// S3 `sequencer` of the event these outputs answer: a later event of the key that is older is
    /// ignored (see the cloud crate's `ordering`). Absent for jobs imgpipe sent itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequencer: Option<String>,
    /// Version of the source object in a versioned bucket. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

/// ITU-T H.273 code points of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CicpInfo {
    /// Colour primaries (1 BT.709, 9 BT.2020, 12 Display P3, …).
    pub primaries: u16,
    /// Transfer characteristics (13 sRGB, 16 PQ, 18 HLG, …).
    pub transfer: u16,
    /// Matrix coefficients (0 identity, 1 BT.709, 6 BT.601, 9 BT.2020, …).
    pub matrix: u16,
    /// Full-range samples.
    pub full_range: bool,
}

/// Placeholder facts for showing something before the image loads.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Placeholder {
    /// [ThumbHash](https://evanw.github.io/thumbhash/) of the upright image, base64 (about 25 bytes).
    pub thumbhash: String,
    /// Most common colour (4096-bin histogram of a ≤100 px copy), `#rrggbb`.
    pub dominant_color: String,
    /// Mean colour, `#rrggbb`.
    pub average_color: String,
}

/// One derivative written to the output bucket.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DerivativeInfo {
    /// Preset name.
    pub preset: String,
    /// Variant group of the preset (its `group`, or its name). Absent in documents written before
    /// groups existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Output object key.
    pub key: String,
    /// `jpeg`, `webp`, `png` or `avif`.
    pub format: String,
    /// MIME type set as Content-Type.
    pub content_type: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames (more than 1 only for a preset that keeps animation).
    pub frames: u32,
    /// Size in bytes.
    pub bytes: u64,
    /// Public URL under the configured CDN base URL; absent when none is configured.
    pub url: Option<String>,
    /// Source bytes ÷ derivative bytes (how many times smaller the derivative is).
    pub compression_ratio: f64,
    /// What the encoder chose for a perceptual quality target (`quality = "auto"`, a level or
    /// `{ target = N }`); absent for a fixed quality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<QualityInfo>,
    /// For a `fit = "cover"` derivative: the region of the upright source it shows, in upright source
    /// pixels before resizing (where its preset's `gravity` put the crop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop: Option<CropInfo>,
}

/// A cover derivative's crop: a rectangle in upright source pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CropInfo {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

/// The image's focus: the point cover crops with `gravity = "auto"` centre on, and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FocusInfo {
    /// 0 (left edge) – 1 (right edge) of the upright image.
    pub x: f64,
    /// 0 (top edge) – 1 (bottom edge).
    pub y: f64,
    /// `manual` (set by the app), `faces` (the centre of the box around all faces found), `attention` or
    /// `centre`.
    pub source: crate::focus::FocusSource,
}

/// The outcome of a perceptual quality target for one derivative.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QualityInfo {
    /// The SSIMULACRA2 score aimed at.
    pub target: f64,
    /// The encoder quality (1–100) used.
    pub setting: u8,
    /// The derivative's SSIMULACRA2 score against the resized pixels it was encoded from.
    pub score: f64,
    /// Trial encodes made.
    pub trials: u8,
    /// Whether `score` reached `target` (false: the best the quality range allowed).
    pub reached: bool,
}

/// One variant group of the derivatives, ready for HTML.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupInfo {
    /// Width of the group's widest output: with `height`, the intrinsic size for `width`/`height`
    /// attributes, so the page does not shift when the image arrives.
    pub width: u32,
    /// Height of that output.
    pub height: u32,
    /// `sizes` hint: full viewport width up to the widest output, e.g. `(max-width: 1600px) 100vw, 1600px`.
    pub sizes: String,
    /// One entry per format, best first (AVIF, WebP, JPEG, PNG): `<picture>`'s `<source>`s in order,
    /// the last one as the `<img>`.
    pub variants: Vec<GroupVariant>,
}

/// The outputs of one format in a group.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupVariant {
    /// `avif`, `webp`, `jpeg` or `png`.
    pub format: String,
    /// Its media type, for `<source type>`.
    pub content_type: String,
    /// `srcset` value: each output's URL (without a CDN base URL, its root-relative path: `/` and the
    /// percent-encoded key) and width, narrowest first, e.g. `…/hero-320w.webp 320w, …/hero-640w.webp 640w`.
    pub srcset: String,
    /// URL (or root-relative path) of the widest output, for `src`.
    pub src: String,
}

/// Wall-clock milliseconds per stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Timings {
    /// Downloading the source.
    pub fetch: f64,
    /// Probing, EXIF and decoding (including shrink-on-load, colour conversion and orientation).
    pub decode: f64,
    /// All resizes (and placeholder blur).
    pub resize: f64,
    /// Finding faces and the attention point on a small copy ([`crate::focus`]); 0 when no preset
    /// needs them (and in documents written before they existed).
    #[serde(default)]
    pub detect: f64,
    /// All encodes.
    pub encode: f64,
    /// Uploading derivatives.
    pub put: f64,
    /// Whole job.
    pub total: f64,
}

/// The metadata document.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metadata {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// imgpipe version that produced the document.
    pub pipeline_version: String,
    /// Hash of the preset set and pipeline version; equal hashes mean equal outputs.
    pub preset_set_hash: String,
    /// `done` or `failed`.
    pub status: Status,
    /// Set when `status` is `failed`.
    pub error: Option<ErrorInfo>,
    /// The source.
    pub source: SourceInfo,
    /// Camera facts from EXIF (absent when the source has none).
    pub exif: Option<CameraInfo>,
    /// GPS position in decimal degrees; absent when the source has none or the GPS policy is `omit`,
    /// rounded to 2 decimals (about 1 km) without altitude under `coarse`. Never in a derivative.
    pub gps: Option<GpsPosition>,
    /// ThumbHash and colours for placeholders (absent on failure).
    pub placeholder: Option<Placeholder>,
    /// Derivatives, in preset order (a ladder's rungs narrowest first).
    pub derivatives: Vec<DerivativeInfo>,
    /// Where cover crops look ([`crate::focus`]); absent when no preset's crop has a gravity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub focus: Option<FocusInfo>,
    /// The faces found at upload, largest first, in normalised upright coordinates (0–1); empty when
    /// none was found, absent when no preset's crop looks for faces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faces: Option<Vec<crate::focus::Face>>,
    /// Per variant group, what an `<img srcset sizes>` or `<picture>` needs (absent on failure, and
    /// in documents written before groups existed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, GroupInfo>,
    /// Per-stage timings.
    pub timings_ms: Timings,
    /// When the document was written (RFC 3339, UTC); filled by the cloud edge.
    pub processed_at: Option<String>,
}

impl Metadata {
    /// An empty document for `source`, before anything is known.
    pub fn new(source: SourceInfo, preset_set_hash: &str) -> Self {
        Self {
            schema: SCHEMA.into(),
            pipeline_version: crate::PIPELINE_VERSION.into(),
            preset_set_hash: preset_set_hash.into(),
            status: Status::Done,
            error: None,
            source,
            exif: None,
            gps: None,
            placeholder: None,
            derivatives: Vec::new(),
            focus: None,
            faces: None,
            groups: BTreeMap::new(),
            timings_ms: Timings::default(),
            processed_at: None,
        }
    }

    /// Marks the document failed with `kind`/`message`.
    pub fn fail(&mut self, kind: &str, message: &str, retryable: bool) {
        self.status = Status::Failed;
        self.error = Some(ErrorInfo {
            kind: kind.into(),
            message: message.into(),
            retryable,
        });
        self.derivatives.clear();
        self.groups.clear();
        self.placeholder = None;
    }

    /// True when this document records a finished job for `etag` made with `preset_set_hash`.
    pub fn is_done_for(&self, etag: &str, preset_set_hash: &str) -> bool {
        self.status == Status::Done && self.describes(etag, preset_set_hash)
    }

    /// True when this document records a permanent (non-retryable) failure for `etag` with `preset_set_hash`:
    /// the same input would fail the same way, and it was already dead-lettered once.
    pub fn is_failed_permanently_for(&self, etag: &str, preset_set_hash: &str) -> bool {
        self.status == Status::Failed
            && self.error.as_ref().is_some_and(|e| !e.retryable)
            && self.describes(etag, preset_set_hash)
    }

    fn describes(&self, etag: &str, preset_set_hash: &str) -> bool {
        self.preset_set_hash == preset_set_hash
            && self.source.etag.as_deref().map(strip_quotes) == Some(strip_quotes(etag))
    }
}

/// Error kinds whose message is about the file itself (the core's kinds): an anonymous reader may
/// see why their upload failed. Other kinds (S3 and retry failures) can name buckets, roles or AWS
/// text, so the public view replaces their message with [`GENERIC_FAILURE`].
const FILE_FAULT_KINDS: [&str; 4] = ["empty", "unsupported", "corrupt", "over_limit"];

impl Metadata {
    /// What the upload's analysis found, for making a cover crop later (on request, or again after
    /// a new focal point) without detecting again: `None` when no analysis was recorded. The attention
    /// point is known only when it was the focus.
    pub fn analysis(&self) -> Option<crate::focus::Analysis> {
        let faces = self.faces.clone()?;
        let point = |source| {
            self.focus
                .filter(|f| f.source == source)
                .map(|f| crate::focus::FocalPoint { x: f.x, y: f.y })
        };
        Some(crate::focus::Analysis {
            faces,
            attention: point(crate::focus::FocusSource::Attention),
            manual: point(crate::focus::FocusSource::Manual),
        })
    }
}

/// The message of a failure the public view does not explain.
pub const GENERIC_FAILURE: &str = "processing failed on the service side; the operator has the details (dead-letter queue and logs)";

impl Metadata {
    /// What an anonymous reader may see of this document: everything about the image and its
    /// derivatives, nothing about the person or the infrastructure behind it.
    ///
    /// Removed: the face boxes (`faces`: how many people, where; the focus point and each crop
    /// stay), the position (`gps`), the capture time (`exif.date_taken`, which also gives the
    /// time zone), `exif.copyright` (often the owner's name) and `exif.software` (the phone's OS
    /// build); `source.sha256` (whether a known photo was uploaded), `source.bucket`, `etag`,
    /// `sequencer`, `version_id`; the timings; and the message of a failure that is not the file's
    /// own fault. The result still conforms to the schema (removed fields are null or empty).
    ///
    /// Each struct is taken apart field by field, without `..`: a new field does not compile until
    /// someone decides here whether it is public.
    pub fn public_view(&self) -> Metadata {
        let Metadata {
            schema,
            pipeline_version,
            preset_set_hash,
            status,
            error,
            source,
            exif,
            gps: _,
            placeholder,
            derivatives,
            focus,
            faces: _,
            groups,
            timings_ms: _,
            processed_at,
        } = self.clone();
        let SourceInfo {
            bucket: _,
            key,
            etag: _,
            sha256: _,
            bytes,
            format,
            width,
            height,
            orientation,
            color_space,
            icc_profile,
            bit_depth,
            alpha,
            frames,
            progressive,
            cicp,
            hdr,
            gain_map,
            sequencer: _,
            version_id: _,
        } = source;
        let exif = exif
            .map(|camera| {
                let CameraInfo {
                    make,
                    model,
                    lens,
                    iso,
                    exposure_time,
                    exposure_seconds,
                    f_number,
                    focal_length_mm,
                    date_taken: _,
                    software: _,
                    copyright: _,
                } = camera;
                CameraInfo {
                    make,
                    model,
                    lens,
                    iso,
                    exposure_time,
                    exposure_seconds,
                    f_number,
                    focal_length_mm,
                    date_taken: None,
                    software: None,
                    copyright: None,
                }
            })
            .filter(|camera| !camera.is_empty());
        let error = error.map(
            |ErrorInfo {
                 kind,
                 message,
                 retryable,
             }| {
                let message = if FILE_FAULT_KINDS.contains(&kind.as_str()) {
                    message
                } else {
                    GENERIC_FAILURE.to_string()
                };
                ErrorInfo {
                    kind,
                    message,
                    retryable,
                }
            },
        );
        Metadata {
            schema,
            pipeline_version,
            preset_set_hash,
            status,
            error,
            source: SourceInfo {
                bucket: String::new(),
                key,
                etag: None,
                sha256: None,
                bytes,
                format,
                width,
                height,
                orientation,
                color_space,
                icc_profile,
                bit_depth,
                alpha,
                frames,
                progressive,
                cicp,
                hdr,
                gain_map,
                sequencer: None,
                version_id: None,
            },
            exif,
            gps: None,
            placeholder,
            derivatives,
            focus,
            faces: None,
            groups,
            timings_ms: Timings::default(),
            processed_at,
        }
    }
}

/// `"abc"` → `abc` (S3 returns ETags quoted, events carry them bare).
pub fn strip_quotes(etag: &str) -> &str {
    etag.trim_matches('"')
}

/// The JSON Schema (draft 2020-12) every metadata document conforms to; tests validate each produced
/// document against it. Also in the repository at `functions/core/schema/metadata.v1.schema.json`.
pub const JSON_SCHEMA: &str = include_str!("../schema/metadata.v1.schema.json");

#[cfg(test)]
mod tests;
