//! Corpus test: every row of `tests/fixtures/images/MANIFEST.tsv` is run through the pipeline with the
//! default presets and checked against its `expected_behaviour` (upright size, GPS, or the error kind).

use std::path::{Path, PathBuf};

use imgpipe_core::pixels::Pixels;
use imgpipe_core::{ErrorKind, Options, PresetSet, ResizeEngine, SourceRef, process};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/images")
}

struct Row {
    file: String,
    category: String,
    has_gps: bool,
    expected: String,
}

fn manifest() -> Vec<Row> {
    let text = std::fs::read_to_string(fixtures().join("MANIFEST.tsv")).expect("MANIFEST.tsv");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            Row {
                file: cols[0].into(),
                category: cols[1].into(),
                has_gps: cols[7] == "yes",
                expected: cols[9].into(),
            }
        })
        .collect()
}

/// The first `WxH` after `word ` in `text`.
fn dims_after(text: &str, word: &str) -> Option<(u32, u32)> {
    let rest = &text[text.find(word)? + word.len()..];
    let token: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == 'x')
        .collect();
    let (w, h) = token.split_once('x')?;
    Some((w.parse().ok()?, h.parse().ok()?))
}

fn expected_kind(category: &str) -> ErrorKind {
    match category.split(';').next().unwrap() {
        "adversarial_truncated" | "adversarial_corrupt" => ErrorKind::Corrupt,
        "adversarial_zero_byte" => ErrorKind::Empty,
        "adversarial_wrong_type" | "adversarial_unsupported" => ErrorKind::Unsupported,
        "adversarial_pixel_bomb" => ErrorKind::OverLimit,
        other => panic!("no expected error kind for category {other}"),
    }
}

fn run(file: &str) -> Result<imgpipe_core::Processed, Box<imgpipe_core::Failed>> {
    let bytes = std::fs::read(fixtures().join(file)).unwrap();
    let source = SourceRef {
        bucket: "test".into(),
        key: file.into(),
        etag: Some("etag".into()),
    };
    process(
        &bytes,
        &source,
        &PresetSet::default_set(),
        &Options::default(),
        &mut ResizeEngine::default(),
    )
}

fn decode(bytes: &[u8]) -> Pixels {
    let header = imgpipe_core::probe::probe(bytes).unwrap();
    imgpipe_core::decode::decode(bytes, &header, 1).unwrap()
}

#[test]
fn every_manifest_row_behaves_as_expected() {
    let rows = manifest();
    assert!(rows.len() >= 20, "manifest has only {} rows", rows.len());
    let mut failures = Vec::new();
    for row in &rows {
        let result = run(&row.file);
        if row.expected.starts_with("reject") {
            match result {
                Ok(_) => failures.push(format!("{}: expected a rejection, got success", row.file)),
                Err(failed) => {
                    let want = expected_kind(&row.category);
                    if failed.error.kind != want {
                        failures.push(format!(
                            "{}: expected {want}, got {}",
                            row.file, failed.error
                        ));
                    }
                    assert_eq!(
                        failed.metadata.status,
                        imgpipe_core::metadata::Status::Failed
                    );
                    assert!(failed.metadata.derivatives.is_empty());
                }
            }
            continue;
        }
        let processed = match result {
            Ok(p) => p,
            Err(failed) => {
                failures.push(format!(
                    "{}: expected success, got {}",
                    row.file, failed.error
                ));
                continue;
            }
        };
        let meta = &processed.metadata;
        let upright = dims_after(&row.expected, "upright")
            .or_else(|| dims_after(&row.expected, "output"))
            .unwrap();
        if (meta.source.width.unwrap(), meta.source.height.unwrap()) != upright {
            failures.push(format!(
                "{}: metadata says {:?}x{:?}, expected {upright:?}",
                row.file, meta.source.width, meta.source.height
            ));
        }
        if row.has_gps != meta.gps.is_some() {
            failures.push(format!(
                "{}: has_gps={} but metadata gps={:?}",
                row.file, row.has_gps, meta.gps
            ));
        }
        let (uw, uh) = upright;
        for d in &processed.derivatives {
            let px = decode(&d.bytes);
            assert_eq!(
                (px.width, px.height),
                (d.width, d.height),
                "{} {}",
                row.file,
                d.preset
            );
            assert!(
                !d.bytes.windows(4).any(|w| w == b"Exif"),
                "{} {}: EXIF leaked",
                row.file,
                d.preset
            );
            // Orientation and aspect survive: every non-cropped output keeps the upright aspect.
            if d.preset != "thumbnail" {
                let aspect_in = f64::from(uw) / f64::from(uh);
                let aspect_out = f64::from(d.width) / f64::from(d.height);
                let tolerance = 2.0 / f64::from(d.width.min(d.height)) * aspect_in + 0.01;
                if (aspect_in - aspect_out).abs() > tolerance {
                    failures.push(format!(
                        "{} {}: aspect {aspect_out:.3} vs upright {aspect_in:.3}",
                        row.file, d.preset
                    ));
                }
            }
            // Never upscaled.
            if d.width > uw || d.height > uh {
                failures.push(format!(
                    "{} {}: {}x{} is larger than the source",
                    row.file, d.preset, d.width, d.height
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "corpus failures:\n{}",
        failures.join("\n")
    );
}

/// Mean absolute difference of two same-sized RGB images, 0–255.
fn mean_abs_diff(a: &Pixels, b: &Pixels) -> f64 {
    assert_eq!((a.width, a.height), (b.width, b.height));
    let sum: u64 = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.data.len() as f64
}

#[test]
fn all_eight_orientations_come_out_like_the_upright_original() {
    for family in ["Landscape", "Portrait"] {
        let reference = decode(&run(&format!("{family}_1.jpg")).unwrap().derivatives[1].bytes);
        let ids: &[u8] = if family == "Landscape" {
            &[2, 3, 4, 5, 6, 7, 8]
        } else {
            &[6]
        };
        for n in ids {
            let preview = &run(&format!("{family}_{n}.jpg")).unwrap().derivatives[1];
            assert_eq!(preview.preset, "preview");
            let diff = mean_abs_diff(&reference, &decode(&preview.bytes));
            // Measured (mean absolute difference, 0–255): 14.3–16.4 between correctly oriented copies
            // (each test image shows its own digit, and 2–8 carry a Generic RGB profile that 1 lacks);
            // 51–77 with orientation handling switched off. 30 separates the two.
            assert!(
                diff < 30.0,
                "{family}_{n}: differs from {family}_1 by {diff:.1}"
            );
        }
    }
}

#[test]
fn gps_keeps_its_sign_and_can_be_omitted() {
    let meta = run("camera_iphone6_gps-altitude_8mp.jpg").unwrap().metadata;
    let gps = meta.gps.unwrap();
    assert!(
        (gps.latitude - 40.446972).abs() < 1e-4 && (gps.longitude + 3.724753).abs() < 1e-4,
        "{gps:?}"
    );
    assert!((gps.altitude_m.unwrap() - 639.6).abs() < 0.2);
    let camera = meta.exif.unwrap();
    assert_eq!(camera.make.as_deref(), Some("Apple"));
    let bytes = std::fs::read(fixtures().join("camera_iphone6_gps-altitude_8mp.jpg")).unwrap();
    let options = Options {
        gps: imgpipe_core::GpsPolicy::Omit,
        ..Options::default()
    };
    let source = SourceRef {
        bucket: "b".into(),
        key: "k".into(),
        etag: None,
    };
    let omitted = process(
        &bytes,
        &source,
        &PresetSet::default_set(),
        &options,
        &mut ResizeEngine::default(),
    )
    .unwrap();
    assert!(omitted.metadata.gps.is_none());
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
    assert_eq!(processed.metadata.derivatives.len(), 5);
    assert!(
        processed
            .metadata
            .derivatives
            .iter()
            .all(|d| d.compression_ratio > 1.0)
    );
}
