//! The pipeline, top to bottom in one place:
//!
//! `check size ⇒ probe header ⇒ check limits (pixels, frames) ⇒ read EXIF ⇒ plan ⇒ check decode budget ⇒
//! decode (shrink-on-load, or the engine's device decoder; CMYK → sRGB) ⇒ ICC → sRGB ⇒ orient
//! (decode, ICC and orient fused on the device when it can) ⇒ faces + attention on a small copy (when a
//! cover preset has a gravity) ⇒ aim cover crops ⇒ resize ×N (largest first, cascading)
//! ⇒ blur placeholders ⇒ ThumbHash + colours ⇒ encode ×N (fixed quality, or searched to a perceptual
//! target) ⇒ animated WebP (presets that keep animation)
//! ⇒ metadata`
//!
//! Every step is a small function; a step with nothing to do returns its input.

use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::animation::{AnimationInput, animate};
use crate::auto_quality::{self, Encoded};
use crate::colour::Profile;
use crate::engine::Engine;
use crate::error::{PipelineError, Result};
use crate::exif::{ExifData, GpsPosition};
use crate::focus::{self, window};
use crate::focus::{Analysis, FocalPoint};
use crate::layout::OutputLayout;
use crate::limits::Limits;
use crate::metadata::{CropInfo, DerivativeInfo, Metadata, SourceInfo, Status};
use crate::pixels::Pixels;
use crate::plan::{Plan, Target, source_is_enough};
use crate::preset::{Fit, OutputFormat, PresetSet};
use crate::probe::Header;
use crate::{blur, decode, exif, placeholder, plan, probe};

/// What GPS goes into the metadata document. Derivatives never carry GPS (or any EXIF), whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpsPolicy {
    /// Latitude, longitude and altitude as recorded (default).
    #[default]
    Include,
    /// Latitude and longitude rounded to 2 decimals (about 1 km), no altitude.
    Coarse,
    /// No GPS in metadata either.
    Omit,
}

impl GpsPolicy {
    /// Applies the policy to a recorded position.
    pub fn apply(self, gps: Option<GpsPosition>) -> Option<GpsPosition> {
        let round2 = |v: f64| (v * 100.0).round() / 100.0;
        match self {
            GpsPolicy::Include => gps,
            GpsPolicy::Coarse => gps.map(|g| GpsPosition {
                latitude: round2(g.latitude),
                longitude: round2(g.longitude),
                altitude_m: None,
            }),
            GpsPolicy::Omit => None,
        }
    }
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
    /// Public base URL of the derivatives bucket (e.g. a CloudFront domain); when set, metadata lists
    /// each derivative's URL. Default: none.
    pub cdn_base_url: Option<String>,
    /// Threads that encode one image's derivatives at once. Default 1: a worker already runs one image
    /// per core; raise it where images come one at a time on several cores (a Lambda with ≥ 2 vCPU,
    /// very large images), where it cuts latency by about the WebP share.
    pub encode_threads: usize,
    /// Longer side of the copy faces and the attention point are found on ([`focus::analyse`]).
    /// SeetaFace finds faces of 40 px and more on it, so the default, 512, finds faces at least 8 %
    /// of the picture's longer side; more finds smaller faces and costs more (docs/benchmarks.md,
    /// "Faces and focus"). Default: [`focus::ANALYSIS_SIDE`].
    pub focus_side: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            gps: GpsPolicy::Include,
            background: [255, 255, 255],
            layout: OutputLayout::default(),
            cdn_base_url: None,
            encode_threads: 1,
            focus_side: focus::ANALYSIS_SIDE,
        }
    }
}

/// Identity of the source object and what its owner said about it (filled by the caller; the core
/// does no I/O).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceRef {
    /// Bucket name.
    pub bucket: String,
    /// Decoded key.
    pub key: String,
    /// ETag, when known.
    pub etag: Option<String>,
    /// The app's focal point (the object's `focus` user metadata), for `auto` and `focal` crops.
    pub focus: Option<FocalPoint>,
    /// What an earlier run found (from its metadata: [`Metadata::analysis`]): used instead of
    /// detecting again, so a variant rendered on request crops like the upload did.
    pub analysis: Option<Analysis>,
}

/// One encoded derivative, ready to upload.
#[derive(Debug, Clone, PartialEq)]
pub struct Derivative {
    /// Preset name.
    pub preset: String,
    /// Output name: the preset's, or `<preset>-<width>w` for a ladder rung.
    pub name: String,
    /// Variant group of the preset.
    pub group: String,
    /// Output key.
    pub key: String,
    /// Output format.
    pub format: OutputFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames (1 unless the preset keeps animation).
    pub frames: u32,
    /// Encoded bytes.
    pub bytes: Vec<u8>,
    /// What a perceptual quality target chose; `None` for a fixed quality.
    pub quality: Option<crate::auto_quality::Chosen>,
    /// For a cover preset: the region of the upright source shown, in upright source pixels.
    pub crop: Option<CropInfo>,
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
    engine: &mut Engine,
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
    // Whatever the accelerator keeps on the device belongs to one image: none before, none after.
    engine.release_image();
    let result = run(bytes, source, presets, options, engine, &mut metadata);
    engine.release_image();
    match result {
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
    source: &SourceRef,
    presets: &PresetSet,
    options: &Options,
    engine: &mut Engine,
    metadata: &mut Metadata,
) -> Result<Vec<Derivative>> {
    let decode_started = Instant::now();
    let limits = &options.limits;
    limits.check_bytes(bytes.len() as u64)?;
    let header = probe::probe(bytes)?;
    let profile = header.icc_profile.as_deref().and_then(Profile::parse);
    record_header(metadata, &header, profile.as_ref(), bytes);
    limits.check_dimensions(header.width, header.height)?;
    limits.check_frames(header.frames)?;
    let exif = exif::read(bytes);
    // HEIF's irot/imir (and JPEG XL's header) are the transform; an EXIF tag beside them only
    // describes the same turn and must not rotate again.
    let orientation = header.orientation.unwrap_or(exif.orientation);
    record_exif(metadata, &exif, orientation, &header, options);
    let mut plan = plan::plan(&header, orientation, presets);
    limits.check_decode_bytes(plan.decode_bytes)?;
    let max_alloc = limits.max_decode_bytes;
    let fused = engine.decode_upright(bytes, &header, profile.as_ref(), orientation, max_alloc);
    let upright = match fused {
        Some(upright) => upright,
        None => {
            let decoded = match engine.decode_jpeg(bytes, &header, max_alloc) {
                Some(pixels) => pixels,
                None => decode::decode(
                    bytes,
                    &header,
                    plan.decode_denominator,
                    profile.as_ref(),
                    max_alloc,
                )?,
            };
            let srgb = engine.to_srgb(decoded, profile.as_ref());
            engine.orient(srgb, orientation)
        }
    };
    metadata.timings_ms.decode = ms(decode_started);

    if presets.needs_focus() {
        let detect_started = Instant::now();
        let analysis = match &source.analysis {
            Some(known) => Analysis {
                manual: source.focus.or(known.manual),
                ..known.clone()
            },
            None => focus::analyse(&upright, source.focus, options.focus_side, engine)?,
        };
        aim(&mut plan, presets, &analysis);
        record_focus(metadata, analysis);
        metadata.timings_ms.detect = ms(detect_started);
    }

    let resize_started = Instant::now();
    let (resized, small) = resize_all(upright, &plan, presets, engine)?;
    metadata.placeholder = Some(placeholder::placeholder(&small));
    metadata.timings_ms.resize = ms(resize_started);

    let encode_started = Instant::now();
    let upright_size = (plan.upright_width, plan.upright_height);
    let mut derivatives = encode_all(
        resized,
        presets,
        options,
        (&metadata.source.key, upright_size),
        engine,
    )?;
    let animated: Vec<_> = plan
        .targets
        .iter()
        .filter(|t| presets.presets()[t.preset].animated && header.frames > 1)
        .collect();
    if !animated.is_empty() {
        let input = AnimationInput {
            header: &header,
            profile: profile.as_ref(),
            orientation,
            max_frames: limits.max_frames,
            max_alloc,
        };
        for animation in animate(bytes, &input, &animated, presets, engine)? {
            if let Some(derivative) = derivatives.iter_mut().find(|d| d.name == animation.name) {
                derivative.bytes = animation.bytes;
                derivative.frames = animation.frames;
            }
        }
    }
    metadata.timings_ms.encode = ms(encode_started);
    metadata.derivatives = derivatives
        .iter()
        .map(|d| describe(d, bytes.len(), options.cdn_base_url.as_deref()))
        .collect();
    // Groups list the on-request outputs too (their URLs, computed from the source size), so a
    // page's srcset and the edge's negotiation name them before anyone asked; nothing else does.
    let planned: Vec<DerivativeInfo> =
        plan::on_request_targets(plan.upright_width, plan.upright_height, presets)
            .iter()
            .map(|target| planned(target, presets, &metadata.source.key, options))
            .collect();
    let members: Vec<DerivativeInfo> = metadata
        .derivatives
        .iter()
        .cloned()
        .chain(planned)
        .collect();
    metadata.groups = crate::groups::groups(&members);
    metadata.status = Status::Done;
    Ok(derivatives)
}

/// Moves each cover crop whose preset has a gravity to where that gravity looks.
fn aim(plan: &mut Plan, presets: &PresetSet, analysis: &Analysis) {
    for target in &mut plan.targets {
        let preset = &presets.presets()[target.preset];
        if preset.fit == Fit::Cover && !preset.gravity.is_centre() {
            target.crop = window::place(target.crop, &analysis.subject(preset.gravity));
        }
    }
}

fn record_focus(metadata: &mut Metadata, analysis: Analysis) {
    metadata.focus = Some(analysis.focus_info());
    metadata.faces = Some(analysis.faces);
}

fn record_header(
    metadata: &mut Metadata,
    header: &Header,
    profile: Option<&Profile>,
    bytes: &[u8],
) {
    let source = &mut metadata.source;
    source.format = Some(header.format.as_str().into());
    source.sha256 = Some(hex::encode(Sha256::digest(bytes)));
    source.width = Some(header.width);
    source.height = Some(header.height);
    source.progressive = Some(header.progressive);
    source.color_space = Some(header.colour_space.as_str().into());
    source.icc_profile = profile.map(|p| {
        p.description
            .clone()
            .unwrap_or_else(|| "unnamed profile".into())
    });
    source.bit_depth = Some(header.bit_depth);
    source.alpha = Some(header.alpha);
    source.frames = Some(header.frames);
    source.cicp = header.cicp.map(|c| crate::metadata::CicpInfo {
        primaries: c.primaries,
        transfer: c.transfer,
        matrix: c.matrix,
        full_range: c.full_range,
    });
    source.hdr = header
        .cicp
        .filter(crate::cicp::is_hdr)
        .map(|c| if c.transfer == 16 { "pq" } else { "hlg" }.to_string());
    source.gain_map = header.gain_map.then_some(true);
}

fn record_exif(
    metadata: &mut Metadata,
    exif: &ExifData,
    orientation: u8,
    header: &Header,
    options: &Options,
) {
    metadata.source.orientation = Some(orientation);
    if orientation >= 5 {
        metadata.source.width = Some(header.height);
        metadata.source.height = Some(header.width);
    }
    metadata.exif = (!exif.camera.is_empty()).then(|| exif.camera.clone());
    metadata.gps = options.gps.apply(exif.gps);
}

/// Resizes the upright image for every target, largest first. Each target is resampled from the
/// smallest already-made full-frame intermediate that still has enough pixels, else from the decode.
/// Also returns the ≤100 px full-frame copy the placeholder is computed from.
fn resize_all(
    upright: Pixels,
    plan: &Plan,
    presets: &PresetSet,
    engine: &mut Engine,
) -> Result<(Vec<(Target, Pixels)>, Pixels)> {
    let mut intermediates: Vec<Pixels> = Vec::new();
    let mut outputs = Vec::with_capacity(plan.targets.len());
    for target in &plan.targets {
        let source = intermediates
            .iter()
            .rev()
            .find(|p| source_is_enough(p.width, p.height, target))
            .unwrap_or(&upright);
        let mut resized = if std::ptr::eq(source, &upright) {
            engine.resize_upright(source, target.crop, target.width, target.height)?
        } else {
            engine.resize(source, target.crop, target.width, target.height)?
        };
        if target.reusable {
            intermediates.push(resized.clone());
        }
        if let Some(sigma) = presets.presets()[target.preset].blur {
            resized = blur::blur(resized, sigma);
        }
        outputs.push((target.clone(), resized));
    }
    outputs.sort_by_key(|(target, _)| (target.preset, target.width));
    let (width, height) = placeholder::size_for(upright.width, upright.height);
    let source = intermediates
        .iter()
        .rev()
        .find(|p| p.width >= width * 2 && p.height >= height * 2)
        .unwrap_or(&upright);
    let small = engine.resize_box(source, width, height)?;
    Ok((outputs, small))
}

/// Encodes every resized derivative. JPEGs go to the engine's device encoder first when it has one;
/// the rest run on `options.encode_threads` threads when there is more than one: the costliest first
/// (WebP, then by pixels), so the longest job never starts last.
fn encode_all(
    resized: Vec<(Target, Pixels)>,
    presets: &PresetSet,
    options: &Options,
    (key, (upright_width, upright_height)): (&str, (u32, u32)),
    engine: &mut Engine,
) -> Result<Vec<Derivative>> {
    let derivative = |target: &Target, width: u32, height: u32, encoded: Encoded| {
        let preset = &presets.presets()[target.preset];
        let crop = (preset.fit == Fit::Cover).then(|| {
            let [x, y, w, h] = window::in_pixels(target.crop, upright_width, upright_height);
            CropInfo { x, y, w, h }
        });
        Derivative {
            preset: preset.name.clone(),
            name: target.name.clone(),
            group: preset.group_name().to_string(),
            key: options
                .layout
                .derivative_key(key, &target.name, preset.format.extension()),
            format: preset.format,
            width,
            height,
            frames: 1,
            bytes: encoded.bytes,
            quality: encoded.chosen,
            crop,
        }
    };
    let encode_one = |(target, pixels): (Target, Pixels)| -> Result<Derivative> {
        let encoded = auto_quality::encode(
            &pixels,
            &presets.presets()[target.preset],
            options.background,
        )?;
        Ok(derivative(&target, pixels.width, pixels.height, encoded))
    };
    let count = resized.len();
    let mut results: Vec<Option<Result<Derivative>>> = (0..count).map(|_| None).collect();
    let mut jobs: Vec<(usize, (Target, Pixels))> = Vec::with_capacity(count);
    for (slot, (target, pixels)) in resized.into_iter().enumerate() {
        let preset = &presets.presets()[target.preset];
        let on_device = preset
            .device_jpeg_quality()
            .and_then(|_| engine.encode_jpeg(&pixels, preset, options.background));
        match on_device {
            Some(bytes) => {
                let encoded = Encoded {
                    bytes,
                    chosen: None,
                };
                results[slot] = Some(Ok(derivative(
                    &target,
                    pixels.width,
                    pixels.height,
                    encoded,
                )))
            }
            None => jobs.push((slot, (target, pixels))),
        }
    }
    let threads = options.encode_threads.clamp(1, jobs.len().max(1));
    if threads == 1 {
        for (slot, job) in jobs {
            results[slot] = Some(encode_one(job));
        }
    } else {
        jobs.sort_by_key(|(_, (target, pixels))| {
            let weight = match presets.presets()[target.preset].format {
                OutputFormat::Webp => 8,
                _ => 1,
            };
            std::cmp::Reverse(weight * u64::from(pixels.width) * u64::from(pixels.height))
        });
        let queue = std::sync::Mutex::new(jobs.into_iter());
        let shared = std::sync::Mutex::new(&mut results);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    loop {
                        let job = queue.lock().expect("encode queue").next();
                        let Some((slot, job)) = job else { break };
                        let encoded = encode_one(job);
                        shared.lock().expect("encode results")[slot] = Some(encoded);
                    }
                });
            }
        });
    }
    results
        .into_iter()
        .map(|r| r.expect("every job encoded"))
        .collect()
}

fn ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1e5).round() / 100.0
}

mod describe;
pub use describe::public_url;
use describe::{describe, planned};

#[cfg(test)]
mod tests;
