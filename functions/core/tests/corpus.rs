//! Corpus test, table-driven from `tests/fixtures/images/MANIFEST.tsv` (adding a file is one line).
//!
//! Every row runs through the pipeline with the default presets and is checked against its `expect`,
//! `upright`, `frames` and `checks` columns; every metadata document produced (done or failed) is
//! validated against the JSON Schema; no derivative carries EXIF/GPS. The perceptual test compares
//! derivatives with an independent reference (see [`perceptual`]).

use std::path::{Path, PathBuf};

use imgpipe_core::metadata::{JSON_SCHEMA, Status};
use imgpipe_core::{Engine, ErrorKind, Limits, Options, PresetSet, SourceRef, process};

fn fixtures() -> PathBuf {
    Path::new(
        &std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for tests"),
    )
    .join("../../tests/fixtures/images")
}

/// One manifest row (only the columns the tests use).
struct Row {
    file: String,
    bytes: u64,
    sha256: String,
    has_gps: bool,
    expect: String,
    upright: Option<(u32, u32)>,
    frames: Option<u32>,
    checks: Vec<(String, String)>,
}

impl Row {
    fn check(&self, name: &str) -> Option<&str> {
        self.checks
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn manifest() -> Vec<Row> {
    let text = std::fs::read_to_string(fixtures().join("MANIFEST.tsv")).expect("MANIFEST.tsv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (file, bytes, sha, gps) = (
        column("file"),
        column("bytes"),
        column("sha256"),
        column("has_gps"),
    );
    let (expect, upright, frames, checks) = (
        column("expect"),
        column("upright"),
        column("frames"),
        column("checks"),
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), header.len(), "column count: {line}");
            Row {
                file: cols[file].into(),
                bytes: cols[bytes].parse().unwrap(),
                sha256: cols[sha].into(),
                has_gps: cols[gps] == "yes",
                expect: cols[expect].into(),
                upright: cols[upright]
                    .split_once('x')
                    .map(|(w, h)| (w.parse().unwrap(), h.parse().unwrap())),
                frames: cols[frames].parse().ok(),
                checks: cols[checks]
                    .split(';')
                    .filter(|c| !c.is_empty())
                    .map(|c| match c.split_once('=') {
                        Some((k, v)) => (k.to_string(), v.to_string()),
                        None => (c.to_string(), String::new()),
                    })
                    .collect(),
            }
        })
        .collect()
}

fn bytes_of(file: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(file)).unwrap()
}

fn run_with(
    file: &str,
    presets: &PresetSet,
    options: &Options,
) -> Result<imgpipe_core::Processed, Box<imgpipe_core::Failed>> {
    let source = SourceRef {
        bucket: "test".into(),
        key: format!("uploads/{file}"),
        etag: Some("etag".into()),
        ..Default::default()
    };
    process(
        &bytes_of(file),
        &source,
        presets,
        options,
        &mut Engine::default(),
    )
}

fn run(file: &str) -> Result<imgpipe_core::Processed, Box<imgpipe_core::Failed>> {
    run_with(file, &PresetSet::default_set(), &Options::default())
}

fn expected_kind(expect: &str) -> ErrorKind {
    match expect {
        "empty" => ErrorKind::Empty,
        "unsupported" => ErrorKind::Unsupported,
        "corrupt" => ErrorKind::Corrupt,
        "over_limit" => ErrorKind::OverLimit,
        other => panic!("unknown expect value {other}"),
    }
}

/// Validates a metadata document against the schema in the repo; returns the errors.
fn schema_errors(metadata: &imgpipe_core::Metadata) -> Vec<String> {
    let schema: serde_json::Value = serde_json::from_str(JSON_SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let document = serde_json::to_value(metadata).unwrap();
    validator
        .iter_errors(&document)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Decodes any derivative with the `image` crate (independent of imgpipe's decoders).
fn decode_rgba(bytes: &[u8]) -> image::RgbaImage {
    image::load_from_memory(bytes)
        .expect("derivative decodes")
        .into_rgba8()
}

#[test]
fn manifest_files_are_the_recorded_bytes() {
    use sha2::Digest;
    for row in manifest() {
        let bytes = bytes_of(&row.file);
        assert_eq!(bytes.len() as u64, row.bytes, "{}: size", row.file);
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&bytes)),
            row.sha256,
            "{}: sha256",
            row.file
        );
    }
}

#[test]
fn every_manifest_row_behaves_as_expected() {
    let rows = manifest();
    assert!(rows.len() >= 40, "manifest has only {} rows", rows.len());
    let mut failures = Vec::new();
    for row in &rows {
        let mut fail = |what: String| failures.push(format!("{}: {what}", row.file));
        let result = run(&row.file);
        if row.expect != "ok" {
            match result {
                Ok(_) => fail(format!("expected {}, got success", row.expect)),
                Err(failed) => {
                    let want = expected_kind(&row.expect);
                    if failed.error.kind != want {
                        fail(format!("expected {want}, got {}", failed.error));
                    }
                    if let Some(text) = row.check("message")
                        && !failed.error.message.contains(text)
                    {
                        fail(format!("message lacks '{text}': {}", failed.error.message));
                    }
                    if failed.metadata.status != Status::Failed {
                        fail("failed metadata not marked failed".into());
                    }
                    for e in schema_errors(&failed.metadata) {
                        fail(format!("schema: {e}"));
                    }
                }
            }
            continue;
        }
        let processed = match result {
            Ok(p) => p,
            Err(failed) => {
                fail(format!("expected success, got {}", failed.error));
                continue;
            }
        };
        let meta = &processed.metadata;
        for e in schema_errors(meta) {
            fail(format!("schema: {e}"));
        }
        let (uw, uh) = row.upright.expect("ok rows have an upright size");
        if (meta.source.width, meta.source.height) != (Some(uw), Some(uh)) {
            fail(format!(
                "metadata says {:?}x{:?}, expected {uw}x{uh}",
                meta.source.width, meta.source.height
            ));
        }
        if meta.source.frames != row.frames {
            fail(format!(
                "frames {:?}, expected {:?}",
                meta.source.frames, row.frames
            ));
        }
        if row.has_gps != meta.gps.is_some() {
            fail(format!(
                "has_gps={} but metadata gps={:?}",
                row.has_gps, meta.gps
            ));
        }
        check_metadata(row, meta, &mut fail);
        for d in &processed.derivatives {
            let decoded = decode_rgba(&d.bytes);
            if decoded.dimensions() != (d.width, d.height) {
                fail(format!(
                    "{}: decodes as {:?}",
                    d.preset,
                    decoded.dimensions()
                ));
            }
            if d.bytes
                .windows(4)
                .any(|w| w == b"Exif" || w == b"GPS\0" || w == b"XMP ")
            {
                fail(format!(
                    "{}: source metadata leaked into the derivative",
                    d.preset
                ));
            }
            if d.width > uw || d.height > uh {
                fail(format!(
                    "{}: {}x{} is larger than the source",
                    d.preset, d.width, d.height
                ));
            }
            if d.preset != "thumbnail" {
                let aspect_in = f64::from(uw) / f64::from(uh);
                let aspect_out = f64::from(d.width) / f64::from(d.height);
                let tolerance = 2.0 / f64::from(d.width.min(d.height)) * aspect_in + 0.01;
                if (aspect_in - aspect_out).abs() > tolerance {
                    fail(format!(
                        "{}: aspect {aspect_out:.3} vs upright {aspect_in:.3}",
                        d.preset
                    ));
                }
            }
            check_alpha(row, d, &decoded, &mut fail);
        }
    }
    assert!(
        failures.is_empty(),
        "corpus failures:\n{}",
        failures.join("\n")
    );
}

fn check_metadata(row: &Row, meta: &imgpipe_core::Metadata, fail: &mut impl FnMut(String)) {
    let camera = meta.exif.clone().unwrap_or_default();
    for (check, actual) in [("make", &camera.make), ("model", &camera.model)] {
        if let Some(want) = row.check(check)
            && actual.as_deref() != Some(want)
        {
            fail(format!("{check} {actual:?}, expected {want}"));
        }
    }
    if row.check("lens").is_some() && camera.lens.is_none() {
        fail("lens missing".into());
    }
    if let Some(gps) = row.check("gps") {
        let want: Vec<f64> = gps.split(',').map(|v| v.parse().unwrap()).collect();
        let Some(got) = meta.gps else {
            return fail("gps missing".into());
        };
        let mut have = vec![got.latitude, got.longitude];
        if want.len() == 3 {
            have.push(got.altitude_m.unwrap_or(f64::NAN));
        }
        if want.iter().zip(&have).any(|(w, h)| (w - h).abs() > 1e-3) {
            fail(format!("gps {have:?}, expected {want:?}"));
        }
    }
    if let Some(space) = row.check("colour")
        && meta.source.color_space.as_deref() != Some(space)
    {
        fail(format!(
            "colour space {:?}, expected {space}",
            meta.source.color_space
        ));
    }
    if let Some(icc) = row.check("icc")
        && !meta
            .source
            .icc_profile
            .as_deref()
            .unwrap_or("")
            .contains(icc)
    {
        fail(format!(
            "icc {:?}, expected '{icc}'",
            meta.source.icc_profile
        ));
    }
    if let Some(depth) = row.check("bit_depth")
        && meta.source.bit_depth != depth.parse().ok()
    {
        fail(format!(
            "bit depth {:?}, expected {depth}",
            meta.source.bit_depth
        ));
    }
    if let Some(orientation) = row.check("orientation")
        && meta.source.orientation != orientation.parse().ok()
    {
        fail(format!(
            "orientation {:?}, expected {orientation}",
            meta.source.orientation
        ));
    }
    if row.check("progressive").is_some() && meta.source.progressive != Some(true) {
        fail("not reported progressive".into());
    }
    if row.check("alpha").is_some() && meta.source.alpha != Some(true) {
        fail("alpha not reported".into());
    }
    if row.check("gain_map").is_some() && meta.source.gain_map != Some(true) {
        fail("gain map not reported".into());
    }
    if let Some(hdr) = row.check("hdr")
        && meta.source.hdr.as_deref() != Some(hdr)
    {
        fail(format!("hdr {:?}, expected {hdr}", meta.source.hdr));
    }
    if let Some(cicp) = row.check("cicp") {
        let got = meta
            .source
            .cicp
            .map(|c| format!("{}/{}/{}", c.primaries, c.transfer, c.matrix));
        if got.as_deref() != Some(cicp) {
            fail(format!("cicp {got:?}, expected {cicp}"));
        }
    }
    match &meta.placeholder {
        Some(p) if p.thumbhash.len() >= 8 => {}
        other => fail(format!("placeholder {other:?}")),
    }
}

/// Sources with transparency keep it in WebP/PNG and are flattened onto the (white) background in JPEG.
fn check_alpha(
    row: &Row,
    d: &imgpipe_core::Derivative,
    decoded: &image::RgbaImage,
    fail: &mut impl FnMut(String),
) {
    if row.check("alpha").is_none() {
        return;
    }
    let transparent = decoded.pixels().filter(|p| p[3] < 128).count();
    match d.format {
        imgpipe_core::OutputFormat::Jpeg if row.check("light_flatten").is_some() => {
            let mean = decoded
                .pixels()
                .map(|p| u64::from(p[0]) + u64::from(p[1]) + u64::from(p[2]))
                .sum::<u64>()
                / (3 * decoded.pixels().len() as u64);
            if mean < 128 {
                fail(format!(
                    "{}: flattened onto a dark background (mean {mean})",
                    d.preset
                ));
            }
        }
        imgpipe_core::OutputFormat::Jpeg => {}
        _ if d.preset != "thumbnail" && transparent == 0 => {
            fail(format!("{}: transparency lost", d.preset));
        }
        _ => {}
    }
}

/// Perceptual check. For every row with a `reference`, each derivative (except the blurred
/// placeholder) is compared with a reference made independently of imgpipe's pixel code: the
/// reference file decoded by the `image` crate (zune-jpeg, not libjpeg-turbo), its ICC profile applied
/// in f32 (imgpipe uses 8-bit transforms), oriented by the `image` crate from the manifest's
/// orientation (the crafted colour files' reference is the sRGB image they were converted from),
/// centre-cropped for `cover` presets and downscaled with `image`'s f32 Lanczos3; both are flattened
/// onto white. Two metrics, because structure and colour fail differently:
/// - DSSIM (0 = identical) catches orientation and cropping errors;
/// - mean CIE76 ΔE between 1/8-size averages catches colour-management errors.
///
/// Thresholds, measured on this corpus (`cargo test -p imgpipe-core --test corpus perceptual --
/// --nocapture` prints every value: file, preset, DSSIM, ΔE):
/// - correct output: DSSIM ≤ 0.0132 (q30 `low-quality` is the noisiest), ΔE ≤ 2.04 (RGB sources);
///   CMYK through its profile ΔE 2.7–4.4 (sRGB colours outside the FOGRA39 gamut); CMYK without a
///   profile (naive fallback) DSSIM ≤ 0.038, ΔE 13.6–14.2;
/// - orientation switched off (`orient(srgb, 1)`): DSSIM 0.49 and more;
/// - profiles ignored: ΔE 4.15–4.75 (Adobe RGB), 5.8–6.2 (Generic RGB), 9.1–9.9 (ProPhoto),
///   13.6–14.2 (CMYK); a CMYK negative is far beyond.
///
/// Defaults: DSSIM 0.02 and ΔE 3.0; rows can loosen them (`dssim_max`, `delta_e_max`): the CMYK
/// file with a profile 6, the one without 20 / 0.06 (the fallback is documented as approximate).
#[test]
fn perceptual() {
    const MAX_DSSIM: f64 = 0.02;
    const MAX_DELTA_E: f64 = 3.0;
    let mut failures = Vec::new();
    let mut report = Vec::new();
    for row in manifest() {
        let Some(reference_file) = row.check("reference") else {
            continue;
        };
        let (reference_file, orientation) = if reference_file == "self" {
            (
                row.file.as_str(),
                row.check("orientation").map_or(1, |o| o.parse().unwrap()),
            )
        } else {
            (reference_file, 1)
        };
        let mut reference = reference_image(reference_file);
        reference.apply_orientation(image::metadata::Orientation::from_exif(orientation).unwrap());
        let mut reference = reference.into_rgba32f();
        if reference_file != row.file {
            copy_alpha_from(&mut reference, &row.file);
        }
        let processed = run(&row.file).unwrap();
        let limit = row
            .check("dssim_max")
            .map_or(MAX_DSSIM, |v| v.parse().unwrap());
        let colour_limit = row
            .check("delta_e_max")
            .map_or(MAX_DELTA_E, |v| v.parse().unwrap());
        for d in processed.derivatives.iter().filter(|d| d.preset != "blur") {
            let crop = processed
                .metadata
                .derivatives
                .iter()
                .find(|info| info.key == d.key)
                .and_then(|info| info.crop);
            assert_eq!(crop.is_some(), d.preset == "thumbnail", "{}", d.key);
            let source_size = (
                processed.metadata.source.width.unwrap(),
                processed.metadata.source.height.unwrap(),
            );
            let expected = reference_downscale(
                &reference,
                d.width,
                d.height,
                crop.map(|c| (c, source_size)),
            );
            let actual = decode_rgba(&d.bytes);
            let dssim = dssim(&expected, &actual);
            let delta_e = mean_delta_e(&expected, &actual);
            report.push(format!(
                "{:<45} {:<12} {dssim:.4} {delta_e:.2}",
                row.file, d.preset
            ));
            if dssim > limit {
                failures.push(format!(
                    "{} {}: DSSIM {dssim:.4} > {limit}",
                    row.file, d.preset
                ));
            }
            if delta_e > colour_limit {
                failures.push(format!(
                    "{} {}: mean ΔE {delta_e:.2} > {colour_limit}",
                    row.file, d.preset
                ));
            }
        }
    }
    println!("{}", report.join("\n"));
    assert!(report.len() >= 60, "only {} comparisons", report.len());
    assert!(
        failures.is_empty(),
        "perceptual failures:\n{}",
        failures.join("\n")
    );
}

/// Decodes with the `image` crate and converts an embedded profile to sRGB in f32 (moxcms's float path;
/// imgpipe itself uses the 8-bit one).
fn reference_image(file: &str) -> image::DynamicImage {
    use image::ImageDecoder;
    let bytes = bytes_of(file);
    let mut decoder = image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .unwrap()
        .into_decoder()
        .unwrap();
    let icc = decoder.icc_profile().unwrap();
    let image = image::DynamicImage::from_decoder(decoder).unwrap();
    let Some(profile) = icc.and_then(|icc| moxcms::ColorProfile::new_from_slice(&icc).ok()) else {
        return image;
    };
    let mut rgba = image.into_rgba32f();
    let layout = match profile.color_space {
        moxcms::DataColorSpace::Rgb => moxcms::Layout::Rgba,
        moxcms::DataColorSpace::Gray => {
            let gray: Vec<f32> = rgba.pixels().map(|p| p[0]).collect();
            let mut out = vec![0f32; gray.len() * 4];
            profile
                .create_transform_f32(
                    moxcms::Layout::Gray,
                    &moxcms::ColorProfile::new_srgb(),
                    moxcms::Layout::Rgba,
                    Default::default(),
                )
                .unwrap()
                .transform(&gray, &mut out)
                .unwrap();
            for (px, converted) in rgba.pixels_mut().zip(out.chunks_exact(4)) {
                px.0[..3].copy_from_slice(&converted[..3]);
            }
            return image::DynamicImage::ImageRgba32F(rgba);
        }
        other => panic!("{file}: reference with a {other:?} profile"),
    };
    let transform = profile
        .create_transform_f32(
            layout,
            &moxcms::ColorProfile::new_srgb(),
            layout,
            Default::default(),
        )
        .unwrap();
    let mut out = vec![0f32; rgba.len()];
    transform.transform(&rgba, &mut out).unwrap();
    rgba.copy_from_slice(&out);
    image::DynamicImage::ImageRgba32F(rgba)
}

/// The crafted files with transparency were made from an opaque reference: give it their alpha.
fn copy_alpha_from(reference: &mut image::Rgba32FImage, file: &str) {
    // HEIC/AVIF sources are not decodable by the `image` crate: their alpha reference is an RGBA
    // PNG already.
    let Ok(source) = image::load_from_memory(&bytes_of(file)) else {
        return;
    };
    if !source.color().has_alpha() || source.width() != reference.width() {
        return;
    }
    for (px, src) in reference.pixels_mut().zip(source.into_rgba32f().pixels()) {
        px[3] = src[3];
    }
}

/// `crop`: a cover derivative's recorded crop and the upright source size it is in (the reference
/// may be smaller). Its size is computed here (the largest window of the output's aspect ratio) and
/// must match; only its position, which the preset's gravity chose, is taken from the metadata, so a
/// wrong recorded position fails the comparison.
fn reference_downscale(
    reference: &image::Rgba32FImage,
    width: u32,
    height: u32,
    crop: Option<(imgpipe_core::metadata::CropInfo, (u32, u32))>,
) -> image::RgbaImage {
    let (rw, rh) = reference.dimensions();
    let cropped = if let Some((crop, (sw, sh))) = crop {
        let aspect = f64::from(width) / f64::from(height);
        let (cw, ch) = if f64::from(rw) / f64::from(rh) > aspect {
            ((f64::from(rh) * aspect).round() as u32, rh)
        } else {
            (rw, (f64::from(rw) / aspect).round() as u32)
        };
        let scale = |v: u32, from: u32, to: u32| {
            (f64::from(v) * f64::from(to) / f64::from(from)).round() as u32
        };
        assert!(
            scale(crop.w, sw, rw).abs_diff(cw) <= 1 && scale(crop.h, sh, rh).abs_diff(ch) <= 1,
            "{crop:?} of {sw}x{sh} is not the {cw}x{ch} window of {rw}x{rh}"
        );
        let x = scale(crop.x, sw, rw).min(rw - cw);
        let y = scale(crop.y, sh, rh).min(rh - ch);
        image::imageops::crop_imm(reference, x, y, cw, ch).to_image()
    } else {
        reference.clone()
    };
    let resized = image::imageops::resize(
        &cropped,
        width,
        height,
        image::imageops::FilterType::Lanczos3,
    );
    image::DynamicImage::ImageRgba32F(resized).into_rgba8()
}

fn on_white(image: &image::RgbaImage) -> Vec<rgb::RGB<u8>> {
    image
        .pixels()
        .map(|p| {
            let a = u32::from(p[3]);
            let blend = |c: u8| ((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
            rgb::RGB::new(blend(p[0]), blend(p[1]), blend(p[2]))
        })
        .collect()
}

/// Mean CIE76 ΔE (L*a*b*, D65) between 1/8-size area averages of two images flattened onto white:
/// regional colour errors (an ignored profile) move it, encoder noise averages out.
fn mean_delta_e(expected: &image::RgbaImage, actual: &image::RgbaImage) -> f64 {
    let small = |image: &image::RgbaImage| {
        let (w, h) = image.dimensions();
        image::imageops::resize(
            image,
            (w / 8).max(4),
            (h / 8).max(4),
            image::imageops::FilterType::Triangle,
        )
    };
    let (expected, actual) = (&small(expected), &small(actual));
    fn lab(p: rgb::RGB<u8>) -> [f64; 3] {
        let linear = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        let (r, g, b) = (linear(p.r), linear(p.g), linear(p.b));
        let x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047;
        let y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
        let z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883;
        let f = |t: f64| {
            if t > 0.008856 {
                t.cbrt()
            } else {
                7.787 * t + 16.0 / 116.0
            }
        };
        let (fx, fy, fz) = (f(x), f(y), f(z));
        [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
    }
    let (a, b) = (on_white(expected), on_white(actual));
    let total: f64 = a
        .iter()
        .zip(&b)
        .map(|(&p, &q)| {
            let (l1, l2) = (lab(p), lab(q));
            ((l1[0] - l2[0]).powi(2) + (l1[1] - l2[1]).powi(2) + (l1[2] - l2[2]).powi(2)).sqrt()
        })
        .sum();
    total / a.len() as f64
}

fn dssim(expected: &image::RgbaImage, actual: &image::RgbaImage) -> f64 {
    assert_eq!(expected.dimensions(), actual.dimensions());
    let (w, h) = (expected.width() as usize, expected.height() as usize);
    let metric = dssim_core::Dssim::new();
    let a = metric.create_image_rgb(&on_white(expected), w, h).unwrap();
    let b = metric.create_image_rgb(&on_white(actual), w, h).unwrap();
    f64::from(metric.compare(&a, b).0)
}

#[test]
fn gps_policy_include_coarse_omit() {
    let file = "camera_iphone6_gps-altitude_8mp.jpg";
    let gps_with = |policy| {
        let options = Options {
            gps: policy,
            ..Options::default()
        };
        run_with(file, &PresetSet::default_set(), &options)
            .unwrap()
            .metadata
            .gps
    };
    let full = gps_with(imgpipe_core::GpsPolicy::Include).unwrap();
    assert!((full.latitude - 40.446972).abs() < 1e-4 && (full.longitude + 3.724753).abs() < 1e-4);
    assert!((full.altitude_m.unwrap() - 639.6).abs() < 0.2);
    let coarse = gps_with(imgpipe_core::GpsPolicy::Coarse).unwrap();
    assert_eq!(
        (coarse.latitude, coarse.longitude, coarse.altitude_m),
        (40.45, -3.72, None)
    );
    assert!(gps_with(imgpipe_core::GpsPolicy::Omit).is_none());
}

#[test]
fn cdn_urls_are_listed_when_configured() {
    let options = Options {
        cdn_base_url: Some("https://cdn.example.com".into()),
        ..Options::default()
    };
    let meta = run_with("Landscape_1.jpg", &PresetSet::default_set(), &options)
        .unwrap()
        .metadata;
    assert_eq!(
        meta.derivatives[0].url.as_deref(),
        Some("https://cdn.example.com/derived/uploads/Landscape_1.jpg/thumbnail.jpg")
    );
    assert!(schema_errors(&meta).is_empty());
    let plain = run("Landscape_1.jpg").unwrap().metadata;
    assert!(plain.derivatives.iter().all(|d| d.url.is_none()));
}

#[test]
fn animation_is_kept_for_presets_that_ask_and_first_frame_otherwise() {
    let presets = PresetSet::from_toml(
        "[[preset]]\nname='still'\nwidth=64\nformat='webp'\n\
         [[preset]]\nname='moving'\nwidth=64\nformat='webp'\nanimated=true\n",
    )
    .unwrap();
    for (file, frames) in [
        ("gif_animated_rotating-squares.gif", 30),
        ("webp_animated_loop3.webp", 10),
        ("gif_animated_rotating-earth_44frames.gif", 44),
    ] {
        let processed = run_with(file, &presets, &Options::default()).unwrap();
        let [still, moving] = &processed.derivatives[..] else {
            panic!("two derivatives")
        };
        assert_eq!(still.frames, 1, "{file}");
        assert_eq!(
            imgpipe_core::probe::webp_frame_count(&still.bytes),
            1,
            "{file}"
        );
        // libwebp merges frames that come out identical (extending the previous frame's duration), so
        // the output may have fewer frames; what must hold is the timing and that it moves.
        let in_file = imgpipe_core::probe::webp_frame_count(&moving.bytes);
        assert_eq!(moving.frames, in_file, "{file}");
        assert_eq!(processed.metadata.derivatives[1].frames, in_file);
        assert!(in_file > 1 && in_file <= frames, "{file}: {in_file} frames");
        let source = image_frames(&bytes_of(file), file.ends_with(".gif"));
        let output = image_frames(&moving.bytes, false);
        assert_eq!(
            duration_ms(&output),
            duration_ms(&source),
            "{file}: total duration"
        );
        assert_ne!(
            output[0].buffer(),
            output[output.len() / 2].buffer(),
            "{file}: frames differ"
        );
    }
    // Animation on a JPEG preset is a configuration error naming the preset and field.
    let e = PresetSet::from_toml("[[preset]]\nname='x'\nwidth=64\nanimated=true\n").unwrap_err();
    assert!(e.message.contains("'x': animated"), "{}", e.message);
}

fn image_frames(bytes: &[u8], gif: bool) -> Vec<image::Frame> {
    use image::AnimationDecoder;
    let cursor = std::io::Cursor::new(bytes);
    let frames = if gif {
        image::codecs::gif::GifDecoder::new(cursor)
            .unwrap()
            .into_frames()
    } else {
        image::codecs::webp::WebPDecoder::new(cursor)
            .unwrap()
            .into_frames()
    };
    frames.collect_frames().unwrap()
}

fn duration_ms(frames: &[image::Frame]) -> u32 {
    frames
        .iter()
        .map(|f| {
            let (n, d) = f.delay().numer_denom_ms();
            (n / d.max(1)).clamp(10, 65_535)
        })
        .sum()
}

fn gif_with_frames(frames: u8) -> Vec<u8> {
    let mut gif = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut gif);
        for i in 0..frames {
            let frame = image::RgbaImage::from_pixel(8, 8, image::Rgba([i, 0, 0, 255]));
            encoder.encode_frame(image::Frame::new(frame)).unwrap();
        }
    }
    gif
}

fn process_bytes(
    bytes: &[u8],
    limits: Limits,
) -> Result<imgpipe_core::Processed, Box<imgpipe_core::Failed>> {
    let options = Options {
        limits,
        ..Options::default()
    };
    process(
        bytes,
        &SourceRef::default(),
        &PresetSet::default_set(),
        &options,
        &mut Engine::default(),
    )
}

#[test]
fn too_many_frames_and_too_many_bytes_are_rejected_before_decoding() {
    let gif = gif_with_frames(12);
    let limits = Limits {
        max_frames: 10,
        ..Limits::default()
    };
    let failed = process_bytes(&gif, limits).unwrap_err();
    assert_eq!(failed.error.kind, ErrorKind::OverLimit);
    assert!(
        failed.error.message.contains("12 frames"),
        "{}",
        failed.error.message
    );
    assert_eq!(failed.metadata.source.frames, Some(12));
    assert!(schema_errors(&failed.metadata).is_empty());
    assert!(process_bytes(&gif, Limits::default()).is_ok());

    let small = Limits {
        max_source_bytes: 1000,
        ..Limits::default()
    };
    let failed = process_bytes(&bytes_of("Landscape_1.jpg"), small).unwrap_err();
    assert_eq!(failed.error.kind, ErrorKind::OverLimit);
    assert!(failed.error.message.contains("max_source_bytes"));
}

/// A 6000×4000 progressive JPEG needs its full-size coefficient store (72 MB at 4:2:0) even when
/// decoded at 1/4: the budget is checked from the header and a tight one refuses it before decoding.
#[test]
fn progressive_jpeg_decode_is_bounded_by_the_memory_budget() {
    let (w, h) = (6000usize, 4000usize);
    let pixels: Vec<u8> = (0..w * h * 3).map(|i| ((i * 7919) >> 5) as u8).collect();
    let mut compressor = turbojpeg::Compressor::new().unwrap();
    compressor.set_progressive(true).unwrap();
    compressor.set_quality(50).unwrap();
    let jpeg = compressor
        .compress_to_vec(turbojpeg::Image {
            pixels: pixels.as_slice(),
            width: w,
            pitch: w * 3,
            height: h,
            format: turbojpeg::PixelFormat::RGB,
        })
        .unwrap();
    let ok = process_bytes(&jpeg, Limits::default()).unwrap();
    assert_eq!(ok.metadata.source.progressive, Some(true));
    let tight = Limits {
        max_decode_bytes: 64 << 20,
        ..Limits::default()
    };
    let failed = process_bytes(&jpeg, tight).unwrap_err();
    assert_eq!(failed.error.kind, ErrorKind::OverLimit);
    assert!(
        failed.error.message.contains("max_decode_bytes"),
        "{}",
        failed.error.message
    );
    // The same picture as a baseline JPEG fits the tight budget: shrink-on-load needs only 1/4 size.
    compressor.set_progressive(false).unwrap();
    let baseline = compressor
        .compress_to_vec(turbojpeg::Image {
            pixels: pixels.as_slice(),
            width: w,
            pitch: w * 3,
            height: h,
            format: turbojpeg::PixelFormat::RGB,
        })
        .unwrap();
    assert!(process_bytes(&baseline, tight).is_ok());
}

#[test]
fn default_presets_have_the_documented_sizes_on_a_12mp_photo() {
    let processed = run("large_olympus-e-p3_12mp.jpg").unwrap();
    let sizes: Vec<(&str, u32, u32)> = processed
        .derivatives
        .iter()
        .map(|d| (d.preset.as_str(), d.width, d.height))
        .collect();
    assert_eq!(
        sizes,
        [
            ("thumbnail", 200, 200),
            ("preview", 1200, 900),
            ("webp", 1200, 900),
            ("blur", 32, 24),
            ("low-quality", 800, 600)
        ]
    );
    assert!(
        processed
            .metadata
            .derivatives
            .iter()
            .all(|d| d.compression_ratio > 1.0)
    );
}

/// Encoding derivatives on several threads changes nothing but the time: same order, same bytes.
#[test]
fn parallel_encode_gives_the_same_derivatives_in_preset_order() {
    let file = "camera_iphone6_gps-altitude_8mp.jpg";
    let one = run(file).unwrap();
    let options = Options {
        encode_threads: 3,
        ..Options::default()
    };
    let three = run_with(file, &PresetSet::default_set(), &options).unwrap();
    assert_eq!(one.derivatives.len(), 5);
    assert_eq!(one.derivatives, three.derivatives);
    assert_eq!(one.metadata.derivatives, three.metadata.derivatives);
}
