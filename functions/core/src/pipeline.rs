//! The pipeline, top to bottom in one place:
//!
//! `check size ⇒ probe header ⇒ check limits ⇒ read EXIF ⇒ plan ⇒ decode (shrink-on-load) ⇒ orient ⇒
//! resize ×N (largest first, cascading) ⇒ blur placeholders ⇒ encode ×N ⇒ metadata`
//!
//! Every step is a small function; a step with nothing to do returns its input.

use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::error::{PipelineError, Result};
use crate::exif::ExifData;
use crate::layout::OutputLayout;
use crate::limits::Limits;
use crate::metadata::{DerivativeInfo, Metadata, SourceInfo, Status};
use crate::pixels::Pixels;
use crate::plan::{Plan, source_is_enough};
use crate::preset::{OutputFormat, PresetSet};
use crate::probe::Header;
use crate::resize::ResizeEngine;
use crate::{blur, decode, encode, exif, orient, plan, probe};

/// Whether GPS coordinates go into the metadata document (they never go into derivatives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpsPolicy {
    /// Write latitude/longitude/altitude into metadata (default).
    #[default]
    Include,
    /// Leave GPS out of metadata too.
    Omit,
}

/// Per-deployment options of the pipeline (presets aside). All have documented defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Source limits.
    pub limits: Limits,
    /// GPS in metadata.
    pub gps: GpsPolicy,
    /// Background RGB for flattening transparency into JPEG. Default: white.
    pub background: [u8; 3],
    /// Output key layout.
    pub layout: OutputLayout,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            gps: GpsPolicy::Include,
            background: [255, 255, 255],
            layout: OutputLayout::default(),
        }
    }
}

/// Identity of the source object (filled by the caller; the core does no I/O).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceRef {
    /// Bucket name.
    pub bucket: String,
    /// Decoded key.
    pub key: String,
    /// ETag, when known.
    pub etag: Option<String>,
}

/// One encoded derivative, ready to upload.
#[derive(Debug, Clone, PartialEq)]
pub struct Derivative {
    /// Preset name.
    pub preset: String,
    /// Output key.
    pub key: String,
    /// Output format.
    pub format: OutputFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Encoded bytes.
    pub bytes: Vec<u8>,
}

/// A successful run: the derivatives and a `done` metadata document describing them.
#[derive(Debug, Clone)]
pub struct Processed {
    /// Derivatives in preset order.
    pub derivatives: Vec<Derivative>,
    /// Metadata with status `done`.
    pub metadata: Metadata,
}

/// A failed run: the error and a `failed` metadata document with everything learnt before it.
#[derive(Debug, Clone)]
pub struct Failed {
    /// What went wrong (always permanent: the core does no I/O).
    pub error: PipelineError,
    /// Metadata with status `failed`.
    pub metadata: Metadata,
}

/// Runs the whole pipeline on `bytes`. `engine` keeps resize buffers between calls.
pub fn process(
    bytes: &[u8],
    source: &SourceRef,
    presets: &PresetSet,
    options: &Options,
    engine: &mut ResizeEngine,
) -> Result<Processed, Box<Failed>> {
    let started = Instant::now();
    let mut metadata = Metadata::new(
        SourceInfo {
            bucket: source.bucket.clone(),
            key: source.key.clone(),
            etag: source
                .etag
                .as_deref()
                .map(|e| crate::metadata::strip_quotes(e).to_string()),
            bytes: Some(bytes.len() as u64),
            ..Default::default()
        },
        presets.hash(),
    );
    match run(bytes, presets, options, engine, &mut metadata) {
        Ok(derivatives) => {
            metadata.timings_ms.total = ms(started);
            Ok(Processed {
                derivatives,
                metadata,
            })
        }
        Err(error) => {
            metadata.fail(
                error.kind.as_str(),
                &error.message,
                !error.kind.is_permanent(),
            );
            metadata.timings_ms.total = ms(started);
            Err(Box::new(Failed { error, metadata }))
        }
    }
}

fn run(
    bytes: &[u8],
    presets: &PresetSet,
    options: &Options,
    engine: &mut ResizeEngine,
    metadata: &mut Metadata,
) -> Result<Vec<Derivative>> {
    let decode_started = Instant::now();
    options.limits.check_bytes(bytes.len() as u64)?;
    let header = probe::probe(bytes)?;
    record_header(metadata, &header, bytes);
    options
        .limits
        .check_dimensions(header.width, header.height)?;
    let exif = exif::read(bytes);
    record_exif(metadata, &exif, &header, options);
    let plan = plan::plan(&header, exif.orientation, presets);
    let decoded = decode::decode(bytes, &header, plan.decode_denominator)?;
    let upright = orient::orient(decoded, exif.orientation);
    metadata.timings_ms.decode = ms(decode_started);

    let resize_started = Instant::now();
    let resized = resize_all(upright, &plan, presets, engine)?;
    metadata.timings_ms.resize = ms(resize_started);

    let encode_started = Instant::now();
    let derivatives = encode_all(resized, presets, options, &metadata.source.key)?;
    metadata.timings_ms.encode = ms(encode_started);
    metadata.derivatives = derivatives
        .iter()
        .map(|d| describe(d, bytes.len()))
        .collect();
    metadata.status = Status::Done;
    Ok(derivatives)
}

fn record_header(metadata: &mut Metadata, header: &Header, bytes: &[u8]) {
    metadata.source.format = Some(header.format.as_str().into());
    metadata.source.sha256 = Some(hex::encode(Sha256::digest(bytes)));
    metadata.source.width = Some(header.width);
    metadata.source.height = Some(header.height);
    metadata.source.progressive = Some(header.progressive);
}

fn record_exif(metadata: &mut Metadata, exif: &ExifData, header: &Header, options: &Options) {
    metadata.source.orientation = Some(exif.orientation);
    if exif.orientation >= 5 {
        metadata.source.width = Some(header.height);
        metadata.source.height = Some(header.width);
    }
    metadata.exif = (!exif.camera.is_empty()).then(|| exif.camera.clone());
    metadata.gps = match options.gps {
        GpsPolicy::Include => exif.gps,
        GpsPolicy::Omit => None,
    };
}

/// Resizes the upright image for every target, largest first. Each target is resampled from the
/// smallest already-made full-frame intermediate that still has enough pixels, else from the decode.
fn resize_all(
    upright: Pixels,
    plan: &Plan,
    presets: &PresetSet,
    engine: &mut ResizeEngine,
) -> Result<Vec<(usize, Pixels)>> {
    let mut intermediates: Vec<Pixels> = Vec::new();
    let mut outputs = Vec::with_capacity(plan.targets.len());
    for target in &plan.targets {
        let source = intermediates
            .iter()
            .rev()
            .find(|p| source_is_enough(p.width, p.height, target))
            .unwrap_or(&upright);
        let mut resized = engine.resize(source, target.crop, target.width, target.height)?;
        if target.reusable {
            intermediates.push(resized.clone());
        }
        if let Some(sigma) = presets.presets()[target.preset].blur {
            resized = blur::blur(resized, sigma);
        }
        outputs.push((target.preset, resized));
    }
    outputs.sort_by_key(|(preset, _)| *preset);
    Ok(outputs)
}

fn encode_all(
    resized: Vec<(usize, Pixels)>,
    presets: &PresetSet,
    options: &Options,
    key: &str,
) -> Result<Vec<Derivative>> {
    resized
        .into_iter()
        .map(|(index, pixels)| {
            let preset = &presets.presets()[index];
            let (width, height) = (pixels.width, pixels.height);
            let bytes = encode::encode(pixels, preset, options.background)?;
            Ok(Derivative {
                preset: preset.name.clone(),
                key: options
                    .layout
                    .derivative_key(key, &preset.name, preset.format.extension()),
                format: preset.format,
                width,
                height,
                bytes,
            })
        })
        .collect()
}

fn describe(derivative: &Derivative, source_bytes: usize) -> DerivativeInfo {
    let ratio = source_bytes as f64 / derivative.bytes.len().max(1) as f64;
    DerivativeInfo {
        preset: derivative.preset.clone(),
        key: derivative.key.clone(),
        format: derivative.format.as_str().into(),
        content_type: derivative.format.content_type().into(),
        width: derivative.width,
        height: derivative.height,
        bytes: derivative.bytes.len() as u64,
        compression_ratio: (ratio * 100.0).round() / 100.0,
    }
}

fn ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1e5).round() / 100.0
}
