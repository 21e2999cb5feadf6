//! The Rust side of the rate–distortion harness (`bench/rd.py`, run by `make bench`).
//!
//! - [`write_references`] (`--rd-refs DIR`): each photo through the real pipeline to a lossless PNG
//!   derivative at each size (oriented, sRGB, Lanczos3 — exactly the pixels the encoders get), saved
//!   as `DIR/refs/<photo>-<size>.png`. sharp's encoders read these same pixels.
//! - [`measure`] (`--rd DIR`): imgpipe's encoders over a ladder of qualities on every reference
//!   (encode milliseconds: best of three), and the files sharp wrote (listed in
//!   `DIR/sharp/index.json`); every output decoded and scored with SSIMULACRA2 against its
//!   reference. Prints one JSON array of points.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use imgpipe_core::perceptual::Scorer;
use imgpipe_core::pixels::Pixels;
use imgpipe_core::{Engine, Options, PresetSet, SourceRef, process};

/// Qualities every encoder is run at.
pub const LADDER: [u8; 10] = [30, 40, 50, 60, 70, 75, 80, 85, 90, 95];

/// imgpipe's encoder settings under test: label and the preset lines that select them.
const ENCODERS: [(&str, &str); 12] = [
    (
        "imgpipe jpeg turbo progressive",
        "format='jpeg'\nprogressive=true",
    ),
    ("imgpipe jpeg turbo baseline", "format='jpeg'"),
    (
        "imgpipe jpeg jpegli progressive",
        "format='jpeg'\nprogressive=true\nencoder='jpegli'",
    ),
    (
        "imgpipe jpeg jpegli baseline",
        "format='jpeg'\nencoder='jpegli'",
    ),
    (
        "imgpipe jpeg jpegli baseline 4:4:4",
        "format='jpeg'\nencoder='jpegli'\nchroma_subsampling='4:4:4'",
    ),
    (
        "imgpipe jpeg jpegli progressive 4:4:4",
        "format='jpeg'\nprogressive=true\nencoder='jpegli'\nchroma_subsampling='4:4:4'",
    ),
    ("imgpipe webp m4", "format='webp'\nwebp_method=4"),
    (
        "imgpipe webp m4 sharp-yuv",
        "format='webp'\nwebp_method=4\nwebp_sharp_yuv=true",
    ),
    (
        "imgpipe webp m4 -mt",
        "format='webp'\nwebp_method=4\nwebp_multithread=true",
    ),
    ("imgpipe webp m6", "format='webp'\nwebp_method=6"),
    // rav1e: speed 8 is the default set's on-request `avif` preset, 6 the AVIF default.
    ("imgpipe avif speed 8", "format='avif'\nspeed=8"),
    ("imgpipe avif speed 6", "format='avif'\nspeed=6"),
];

/// Timed encodes per point: the best of three, but one for AVIF (a second per 1200 px encode;
/// three would triple the harness's longest part for a figure that varies by a few per cent).
fn runs(settings: &str) -> usize {
    if settings.contains("avif") { 1 } else { 3 }
}

const BACKGROUND: [u8; 3] = [255, 255, 255];

/// One photo at one size: `<stem>-<width>` (e.g. `large_olympus-e-p3_12mp-1200`).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Reference {
    /// `<stem>-<size>`; the PNG is `refs/<name>.png`.
    pub name: String,
    /// Width and height of the pixels.
    pub width: u32,
    /// See `width`.
    pub height: u32,
}

/// Writes `DIR/refs/<stem>-<size>.png` for every photo and size (`size` = the longest side's box;
/// `WxH` = an exact size, stretched to fill, as sharp's own benchmark task) and adds them to
/// `DIR/refs.json`.
pub fn write_references(dir: &Path, photos: &[PathBuf], sizes: &[String]) -> anyhow::Result<()> {
    let refs_dir = dir.join("refs");
    std::fs::create_dir_all(&refs_dir)?;
    let index = dir.join("refs.json");
    // Earlier calls' references stay (one call per set of sizes); a name written again replaces.
    let mut written: Vec<Reference> = match std::fs::read(&index) {
        Ok(bytes) => serde_json::from_slice(&bytes).context("refs.json")?,
        Err(_) => Vec::new(),
    };
    for photo in photos {
        let bytes = std::fs::read(photo).with_context(|| format!("reading {}", photo.display()))?;
        let stem = photo
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        for size in sizes {
            let geometry = match size.split_once('x') {
                Some((w, h)) => format!("width={w}\nheight={h}\nfit='fill'"),
                None => format!("width={size}\nheight={size}"),
            };
            let toml = format!("[[preset]]\nname='ref'\nformat='png'\n{geometry}");
            let presets = PresetSet::from_file_text("ref.toml", &toml)
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let processed = process(
                &bytes,
                &SourceRef::default(),
                &presets,
                &Options::default(),
                &mut Engine::default(),
            )
            .map_err(|f| anyhow::anyhow!("{}: {}", photo.display(), f.error))?;
            let derivative = &processed.derivatives[0];
            let name = format!("{stem}-{size}");
            std::fs::write(refs_dir.join(format!("{name}.png")), &derivative.bytes)?;
            written.retain(|r| r.name != name);
            written.push(Reference {
                name,
                width: derivative.width,
                height: derivative.height,
            });
        }
    }
    std::fs::write(&index, serde_json::to_vec_pretty(&written)?)?;
    Ok(())
}

/// One encoded output, measured.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Point {
    /// Encoder label.
    pub encoder: String,
    /// Reference name.
    pub reference: String,
    /// Quality setting.
    pub quality: u8,
    /// Output size.
    pub bytes: usize,
    /// SSIMULACRA2 against the reference.
    pub score: f64,
    /// Encode time (best of three), milliseconds.
    pub ms: f64,
}

/// An output sharp wrote: `DIR/sharp/index.json` lists these.
#[derive(serde::Deserialize)]
struct SharpOutput {
    encoder: String,
    reference: String,
    quality: u8,
    /// Relative to `DIR`.
    file: String,
    ms: f64,
}

/// Encodes every reference with imgpipe's encoders over [`LADDER`], scores those and sharp's
/// outputs, and returns every point.
pub fn measure(dir: &Path) -> anyhow::Result<Vec<Point>> {
    let refs: Vec<Reference> = serde_json::from_slice(
        &std::fs::read(dir.join("refs.json")).context("refs.json: run --rd-refs first")?,
    )?;
    let sharp: Vec<SharpOutput> = match std::fs::read(dir.join("sharp").join("index.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes).context("sharp/index.json")?,
        Err(_) => Vec::new(),
    };
    let mut points = Vec::new();
    for reference in &refs {
        let png = std::fs::read(dir.join("refs").join(format!("{}.png", reference.name)))?;
        let pixels = imgpipe_core::perceptual::decode_output(&png)
            .map_err(|e| anyhow::anyhow!("{}: {e}", reference.name))?;
        let scorer = Scorer::new(&pixels, BACKGROUND).map_err(anyhow::Error::msg)?;
        for (label, settings) in ENCODERS {
            for quality in LADDER {
                let (bytes, ms) = encode_best_of_three(&pixels, settings, quality)?;
                let score = scorer
                    .score_encoded(&bytes)
                    .map_err(|e| anyhow::anyhow!("{label} q{quality}: {e}"))?;
                points.push(Point {
                    encoder: label.to_string(),
                    reference: reference.name.clone(),
                    quality,
                    bytes: bytes.len(),
                    score,
                    ms,
                });
            }
        }
        for output in sharp.iter().filter(|o| o.reference == reference.name) {
            let bytes = std::fs::read(dir.join(&output.file))
                .with_context(|| format!("reading {}", output.file))?;
            let score = scorer
                .score_encoded(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", output.file))?;
            points.push(Point {
                encoder: output.encoder.clone(),
                reference: reference.name.clone(),
                quality: output.quality,
                bytes: bytes.len(),
                score,
                ms: output.ms,
            });
        }
        eprintln!("rd: {} scored", reference.name);
    }
    Ok(points)
}

fn encode_best_of_three(
    pixels: &Pixels,
    settings: &str,
    quality: u8,
) -> anyhow::Result<(Vec<u8>, f64)> {
    let toml = format!(
        "[[preset]]\nname='rd'\nwidth={}\nquality={quality}\n{settings}",
        pixels.width
    );
    let presets = PresetSet::from_file_text("rd.toml", &toml)
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let preset = &presets.presets()[0];
    let mut best = f64::INFINITY;
    let mut output = Vec::new();
    for _ in 0..runs(settings) {
        let started = Instant::now();
        output = imgpipe_core::encode::encode_at(pixels, preset, quality, BACKGROUND)
            .map_err(anyhow::Error::msg)?;
        best = best.min(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok((output, best))
}

/// One reference encoded to a perceptual target.
#[derive(serde::Serialize)]
pub struct AutoPoint {
    /// Reference name.
    pub reference: String,
    /// Output size.
    pub bytes: usize,
    /// SSIMULACRA2 reached (as recorded by the search, the output's own score).
    pub score: f64,
    /// Encoder quality chosen.
    pub quality: u8,
    /// Trial encodes.
    pub trials: u8,
    /// Whole encode including the search, milliseconds (one run).
    pub ms: f64,
}

/// Encodes every reference whose name ends in `-<size>` with `settings` (preset lines, e.g.
/// `format='jpeg'`) at `quality = { target = <target> }`, as the pipeline does.
pub fn measure_auto(
    dir: &Path,
    size: &str,
    settings: &str,
    target: f64,
) -> anyhow::Result<Vec<AutoPoint>> {
    let refs: Vec<Reference> = serde_json::from_slice(&std::fs::read(dir.join("refs.json"))?)?;
    let mut points = Vec::new();
    for reference in refs
        .iter()
        .filter(|r| r.name.ends_with(&format!("-{size}")))
    {
        let png = std::fs::read(dir.join("refs").join(format!("{}.png", reference.name)))?;
        let pixels = imgpipe_core::perceptual::decode_output(&png).map_err(anyhow::Error::msg)?;
        let toml = format!(
            "[[preset]]\nname='rd'\nwidth={}\nquality={{ target = {target} }}\n{settings}",
            pixels.width
        );
        let presets = PresetSet::from_file_text("rd.toml", &toml)
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        let started = Instant::now();
        let encoded =
            imgpipe_core::auto_quality::encode(&pixels, &presets.presets()[0], BACKGROUND)
                .map_err(anyhow::Error::msg)?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let chosen = encoded
            .chosen
            .context("a target preset records its choice")?;
        points.push(AutoPoint {
            reference: reference.name.clone(),
            bytes: encoded.bytes.len(),
            score: chosen.score,
            quality: chosen.quality,
            trials: chosen.trials,
            ms,
        });
    }
    Ok(points)
}
