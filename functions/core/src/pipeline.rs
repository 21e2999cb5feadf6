//! The pipeline, top to bottom in one place:
//!
//! `check size ⇒ probe header ⇒ check limits (pixels, frames) ⇒ read EXIF ⇒ plan ⇒ check decode budget ⇒
//! decode (shrink-on-load, or the engine's device decoder; CMYK → sRGB) ⇒ ICC → sRGB ⇒ orient
//! (decode, ICC and orient fused on the device when it can) ⇒ resize ×N (largest first, cascading)
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
use crate::layout::OutputLayout;
use crate::limits::Limits;
use crate::metadata::{DerivativeInfo, Metadata, QualityInfo, SourceInfo, Status};
use crate::pixels::Pixels;
use crate::plan::{Plan, Target, source_is_enough};
use crate::preset::{OutputFormat, PresetSet};
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
    let result = run(bytes, presets, options, engine, &mut metadata);
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
    let plan = plan::plan(&header, orientation, presets);
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

    let resize_started = Instant::now();
    let (resized, small) = resize_all(upright, &plan, presets, engine)?;
    metadata.placeholder = Some(placeholder::placeholder(&small));
    metadata.timings_ms.resize = ms(resize_started);

    let encode_started = Instant::now();
    let mut derivatives = encode_all(resized, presets, options, &metadata.source.key, engine)?;
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
    key: &str,
    engine: &mut Engine,
) -> Result<Vec<Derivative>> {
    let derivative = |target: &Target, width: u32, height: u32, encoded: Encoded| {
        let preset = &presets.presets()[target.preset];
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

/// An on-request output as a group member: where it will be and its size; no bytes yet.
fn planned(
    target: &plan::Target,
    presets: &PresetSet,
    source_key: &str,
    options: &Options,
) -> DerivativeInfo {
    let preset = &presets.presets()[target.preset];
    let key = options
        .layout
        .derivative_key(source_key, &target.name, preset.format.extension());
    DerivativeInfo {
        preset: preset.name.clone(),
        group: Some(preset.group_name().to_string()),
        url: options
            .cdn_base_url
            .as_deref()
            .map(|base| public_url(base, &key)),
        key,
        format: preset.format.as_str().into(),
        content_type: preset.format.content_type().into(),
        width: target.width,
        height: target.height,
        frames: 1,
        bytes: 0,
        compression_ratio: 0.0,
        quality: None,
    }
}

fn describe(
    derivative: &Derivative,
    source_bytes: usize,
    cdn_base_url: Option<&str>,
) -> DerivativeInfo {
    let ratio = source_bytes as f64 / derivative.bytes.len().max(1) as f64;
    let url = cdn_base_url.map(|base| public_url(base, &derivative.key));
    DerivativeInfo {
        preset: derivative.preset.clone(),
        group: Some(derivative.group.clone()),
        key: derivative.key.clone(),
        format: derivative.format.as_str().into(),
        content_type: derivative.format.content_type().into(),
        width: derivative.width,
        height: derivative.height,
        frames: derivative.frames,
        bytes: derivative.bytes.len() as u64,
        url,
        compression_ratio: (ratio * 100.0).round() / 100.0,
        quality: derivative.quality.map(|c| QualityInfo {
            target: c.target,
            setting: c.quality,
            score: (c.score * 100.0).round() / 100.0,
            trials: c.trials,
            reached: c.reached,
        }),
    }
}

/// `base` + `/` + the key with each path segment percent-encoded (spaces, `+`, `%`, non-ASCII…).
pub fn public_url(base: &str, key: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    let path: Vec<String> = key
        .split('/')
        .map(|segment| utf8_percent_encode(segment, SEGMENT).to_string())
        .collect();
    format!("{}/{}", base.trim_end_matches('/'), path.join("/"))
}

fn ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1e5).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes every JPEG as the same marker bytes (or fails), and takes nothing else.
    struct JpegDevice {
        fails: bool,
    }
    impl crate::Accelerator for JpegDevice {
        fn name(&self) -> &str {
            "jpeg-device"
        }
        fn resample(&mut self, _: &Pixels, _: u32, _: u32) -> std::result::Result<Pixels, String> {
            Err("no resampler".into())
        }
        fn encode_jpeg(
            &mut self,
            pixels: &Pixels,
            _: &crate::Preset,
        ) -> Option<std::result::Result<Vec<u8>, String>> {
            assert_eq!(pixels.channels, 3, "flattened before the device");
            Some(if self.fails {
                Err("encoder lost".into())
            } else {
                Ok(b"device jpeg".to_vec())
            })
        }
    }

    /// Counts the calls of the device-resident path: fused decode (a real full-size CPU decode),
    /// resamples of the upright frame (declined, so the CPU resizes), releases.
    #[derive(Default)]
    struct Calls {
        fused: usize,
        upright_resamples: usize,
        other_resamples: usize,
        releases: usize,
    }
    struct Resident(std::sync::Arc<std::sync::Mutex<Calls>>);
    impl crate::Accelerator for Resident {
        fn name(&self) -> &str {
            "resident"
        }
        fn resample(&mut self, _: &Pixels, _: u32, _: u32) -> std::result::Result<Pixels, String> {
            self.0.lock().unwrap().other_resamples += 1;
            Err("declined".into())
        }
        fn resample_upright(
            &mut self,
            _: &Pixels,
            _: u32,
            _: u32,
        ) -> std::result::Result<Pixels, String> {
            self.0.lock().unwrap().upright_resamples += 1;
            Err("declined".into())
        }
        fn release_image(&mut self) {
            self.0.lock().unwrap().releases += 1;
        }
        fn decode_jpeg_upright(
            &mut self,
            bytes: &[u8],
            _: Option<&crate::colour::MatrixShaper>,
            orientation: u8,
        ) -> Option<std::result::Result<Pixels, String>> {
            self.0.lock().unwrap().fused += 1;
            let header = probe::probe(bytes).unwrap();
            let pixels = decode::decode(bytes, &header, 1, None, 1 << 30).unwrap();
            Some(Ok(crate::orient::orient(pixels, orientation)))
        }
    }

    #[test]
    fn the_fused_decode_feeds_whole_frame_resamples_of_the_upright_frame_and_is_released() {
        let bytes = crate::testing::fixture("camera_canon-sx60hs_orient6.jpg");
        let source = SourceRef::default();
        let presets = PresetSet::default_set();
        let calls = std::sync::Arc::new(std::sync::Mutex::new(Calls::default()));
        let mut engine = Engine::with_backend(Box::new(Resident(calls.clone())));
        let done = process(&bytes, &source, &presets, &Options::default(), &mut engine).unwrap();
        let cpu = process(
            &bytes,
            &source,
            &presets,
            &Options::default(),
            &mut Engine::default(),
        )
        .unwrap();
        let sizes = |p: &Processed| -> Vec<(u32, u32)> {
            p.derivatives.iter().map(|d| (d.width, d.height)).collect()
        };
        assert_eq!(sizes(&done), sizes(&cpu));
        let calls = calls.lock().unwrap();
        assert_eq!(calls.fused, 1);
        // Resamples from the upright frame are marked as such; those from intermediates are not.
        assert!(calls.upright_resamples >= 1);
        assert!(calls.upright_resamples + calls.other_resamples >= presets.presets().len() - 1);
        assert_eq!(calls.releases, 2, "released before and after the image");
    }

    #[test]
    fn jpeg_derivatives_go_to_the_device_encoder_and_the_rest_stay_on_the_cpu() {
        let bytes = crate::testing::fixture("Landscape_2.jpg");
        let source = SourceRef {
            bucket: "b".into(),
            key: "k.jpg".into(),
            etag: None,
        };
        let presets = PresetSet::default_set();
        let options = Options {
            encode_threads: 2,
            ..Options::default()
        };
        let cpu = process(&bytes, &source, &presets, &options, &mut Engine::default()).unwrap();
        let mut device = Engine::with_backend(Box::new(JpegDevice { fails: false }));
        let on_device = process(&bytes, &source, &presets, &options, &mut device).unwrap();
        assert!(
            presets
                .presets()
                .iter()
                .any(|p| p.format == OutputFormat::Jpeg)
        );
        for (d, c) in on_device.derivatives.iter().zip(&cpu.derivatives) {
            assert_eq!(
                (&d.preset, d.width, d.height),
                (&c.preset, c.width, c.height)
            );
            if d.format == OutputFormat::Jpeg {
                assert_eq!(d.bytes, b"device jpeg", "{}", d.preset);
            } else {
                assert_eq!(d.bytes, c.bytes, "{}", d.preset);
            }
        }
        let mut failing = Engine::with_backend(Box::new(JpegDevice { fails: true }));
        let fallback = process(&bytes, &source, &presets, &options, &mut failing).unwrap();
        assert_eq!(fallback.derivatives, cpu.derivatives);
        let jpegs = presets
            .presets()
            .iter()
            .filter(|p| p.format == OutputFormat::Jpeg)
            .count() as u64;
        // Every JPEG encode failed over to the CPU, besides every resample.
        let (failures, last) = failing.backend_failures();
        assert!(failures >= jpegs, "{failures}");
        assert!(last.unwrap().starts_with("jpeg-device: "), "{last:?}");
    }

    #[test]
    fn jpegli_presets_stay_on_the_cpu_beside_a_device() {
        let bytes = crate::testing::fixture("Landscape_2.jpg");
        let source = SourceRef {
            bucket: "b".into(),
            key: "k.jpg".into(),
            etag: None,
        };
        let presets = PresetSet::from_toml(
            "[[preset]]\nname='turbo'\nwidth=120\n\n\
             [[preset]]\nname='jpegli'\nwidth=120\nencoder='jpegli'",
        )
        .unwrap();
        let options = Options::default();
        let cpu = process(&bytes, &source, &presets, &options, &mut Engine::default()).unwrap();
        let mut device = Engine::with_backend(Box::new(JpegDevice { fails: false }));
        let on_device = process(&bytes, &source, &presets, &options, &mut device).unwrap();
        assert_eq!(on_device.derivatives[0].bytes, b"device jpeg");
        assert!(
            on_device.derivatives[1].bytes == cpu.derivatives[1].bytes,
            "the jpegli preset was not encoded on the CPU"
        );
        // jpegli's output differs from libjpeg-turbo's at the same quality and size.
        assert_ne!(cpu.derivatives[0].bytes, cpu.derivatives[1].bytes);
        assert_eq!(&cpu.derivatives[1].bytes[..2], &[0xFF, 0xD8]);
    }

    #[test]
    fn a_responsive_ladder_yields_named_rungs_and_a_srcset_per_format() {
        let bytes = crate::testing::fixture("camera_canon-sx60hs_orient6.jpg");
        let source = SourceRef {
            bucket: "b".into(),
            key: "a b.jpg".into(),
            etag: None,
        };
        let presets = PresetSet::from_toml(include_str!("../presets/responsive.toml")).unwrap();
        let done = process(
            &bytes,
            &source,
            &presets,
            &Options::default(),
            &mut Engine::default(),
        )
        .unwrap();
        let hero: Vec<(&str, u32, &str)> = done
            .derivatives
            .iter()
            .filter(|d| d.group == "hero")
            .map(|d| (d.name.as_str(), d.width, d.key.as_str()))
            .collect();
        // 1536×2048 upright (EXIF 6): the height cap of 1600 makes the 1600 rung 1200 wide.
        assert_eq!(hero.len(), 8, "{hero:?}");
        assert!(hero.contains(&("hero-640w", 640, "derived/a b.jpg/hero-640w.webp")));
        assert!(hero.contains(&(
            "hero-jpeg-1200w",
            1200,
            "derived/a b.jpg/hero-jpeg-1200w.jpg"
        )));
        let group = &done.metadata.groups["hero"];
        assert_eq!((group.width, group.height), (1200, 1600));
        assert_eq!(group.sizes, "(max-width: 1200px) 100vw, 1200px");
        let formats: Vec<&str> = group.variants.iter().map(|v| v.format.as_str()).collect();
        assert_eq!(formats, ["webp", "jpeg"]);
        assert!(
            group.variants[0].srcset.starts_with(
                "/derived/a%20b.jpg/hero-320w.webp 320w, /derived/a%20b.jpg/hero-640w.webp 640w"
            ),
            "{}",
            group.variants[0].srcset
        );
        let preview = &done.metadata.groups["preview"];
        let formats: Vec<&str> = preview.variants.iter().map(|v| v.format.as_str()).collect();
        assert_eq!(formats, ["avif", "webp", "jpeg"]);
        // The on-request AVIF is listed (where it will be, its size) but was not made.
        assert_eq!(preview.variants[0].src, "/derived/a%20b.jpg/avif.avif");
        assert!(!done.derivatives.iter().any(|d| d.preset == "avif"));
        assert!(!done.metadata.derivatives.iter().any(|d| d.preset == "avif"));
        crate::testing::assert_valid_metadata(&done.metadata);
    }

    #[test]
    fn an_on_request_ladder_is_listed_in_its_group_from_the_source_size_but_not_made() {
        let bytes = crate::testing::fixture("camera_canon-sx60hs_orient6.jpg");
        let source = SourceRef {
            bucket: "b".into(),
            key: "k.jpg".into(),
            etag: None,
        };
        let presets = PresetSet::from_toml(
            "[[preset]]\nname='thumbnail'\nwidth=200\n\
             [[preset]]\nname='hero'\nwidths=[320, 1024, 2000, 4000]\nformat='webp'\non_request=true\n",
        )
        .unwrap();
        let options = Options {
            cdn_base_url: Some("https://cdn.example".into()),
            ..Options::default()
        };
        let done = process(&bytes, &source, &presets, &options, &mut Engine::default()).unwrap();
        let made: Vec<&str> = done.derivatives.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(made, ["thumbnail"]);
        let hero = &done.metadata.groups["hero"];
        // 1536×2048 upright: the rungs past the source's width collapse into one at 1536.
        assert_eq!(
            hero.variants[0].srcset,
            "https://cdn.example/derived/k.jpg/hero-320w.webp 320w, \
             https://cdn.example/derived/k.jpg/hero-1024w.webp 1024w, \
             https://cdn.example/derived/k.jpg/hero-1536w.webp 1536w"
        );
        assert_eq!((hero.width, hero.height), (1536, 2048));
        assert_eq!(done.metadata.derivatives.len(), 1);
    }

    #[test]
    fn a_perceptual_target_is_searched_on_the_cpu_and_recorded_in_metadata() {
        let bytes = crate::testing::fixture("camera_nokia-8-3-5g_gps_9mp.jpg");
        let presets = PresetSet::from_toml(
            "[[preset]]\nname='fixed'\nwidth=400\nquality=80\n\
             [[preset]]\nname='high'\nwidth=400\nquality='high'\n\
             [[preset]]\nname='web'\nwidth=400\nformat='webp'\nquality={ target = 65 }",
        )
        .unwrap();
        // The device takes fixed-quality JPEGs only: the target preset never reaches it.
        let mut engine = Engine::with_backend(Box::new(JpegDevice { fails: false }));
        let done = process(
            &bytes,
            &SourceRef::default(),
            &presets,
            &Options::default(),
            &mut engine,
        )
        .unwrap();
        let info = |name: &str| {
            done.metadata
                .derivatives
                .iter()
                .find(|d| d.preset == name)
                .unwrap()
                .clone()
        };
        assert_eq!(info("fixed").quality, None);
        assert_eq!(
            done.derivatives[0].bytes, b"device jpeg",
            "fixed JPEG on the device"
        );
        let high = info("high").quality.expect("the search is recorded");
        assert_eq!(high.target, 80.0);
        assert!(
            high.reached && high.score >= 80.0 && high.trials >= 1,
            "{high:?}"
        );
        assert!(
            done.derivatives[1].bytes.starts_with(b"\xFF\xD8"),
            "target JPEG on the CPU"
        );
        let web = info("web").quality.unwrap();
        assert!(web.reached && web.score >= 65.0, "{web:?}");
        assert!(web.setting < high.setting, "{web:?} vs {high:?}");
        crate::testing::assert_valid_metadata(&done.metadata);
    }

    #[test]
    fn public_urls_encode_each_segment() {
        assert_eq!(
            public_url(
                "https://cdn.example.com/",
                "derived/a b/é+x.jpg/thumbnail.jpg"
            ),
            "https://cdn.example.com/derived/a%20b/%C3%A9%2Bx.jpg/thumbnail.jpg"
        );
    }

    #[test]
    fn gps_policy_rounds_or_drops() {
        let gps = Some(GpsPosition {
            latitude: 40.446972,
            longitude: -3.724753,
            altitude_m: Some(639.6),
        });
        assert_eq!(GpsPolicy::Include.apply(gps), gps);
        assert_eq!(GpsPolicy::Omit.apply(gps), None);
        let coarse = GpsPolicy::Coarse.apply(gps).unwrap();
        assert_eq!(
            (coarse.latitude, coarse.longitude, coarse.altitude_m),
            (40.45, -3.72, None)
        );
    }
}
