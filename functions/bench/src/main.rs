//! `imgpipe-bench`: the in-process side of `make bench` (driven by `bench/run.py`). Runs the core
//! pipeline (`imgpipe_core::process`, exactly what the Lambda and worker call) on files already in
//! memory and prints one JSON object with per-image timings and output sizes.
//!
//! - `--threads 1`: every file `--iterations` times in turn, after one warm-up pass; reports the median
//!   milliseconds per file and overall.
//! - `--threads N`: N threads (one `Engine` each) take images from a shared counter until
//!   `files × iterations` images are done; reports images per second over the wall time, and the
//!   resident set size after every `--rss-every` images (allocator experiments: RSS growth over 1 000
//!   images with glibc malloc, `--features mimalloc` or `--features jemalloc`).
//! - `--bd-rate`: reads rate–quality curve files and prints BD-rates (`bd_rate`), for the RD harness.
//! - `--rd-refs DIR` / `--rd DIR`: the rate–distortion harness's references and measurements (`rd`).
//! - `--faces DIR`: how often the default thumbnail keeps the whole primary face with `gravity =
//!   "centre"` and `"auto"`, and the face detector's recall and precision, on a labelled set (`faces`).

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod bd_rate;
mod faces;
mod rd;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use imgpipe_core::{Engine, Options, PresetSet, SourceRef, process};

#[derive(Parser, Debug)]
#[command(about = "Run the imgpipe core on files and print JSON timings")]
struct Args {
    /// Preset file (TOML or JSON); default: the built-in set.
    #[arg(long)]
    presets: Option<PathBuf>,
    /// Passes over the files.
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// Worker threads (1 = latency mode, more = throughput mode).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// In throughput mode, sample the resident set size after every this many images.
    #[arg(long, default_value_t = 0)]
    rss_every: usize,
    /// Resize backend: cpu, gpu (CUDA kernels; fails without a device) or auto.
    #[arg(long, default_value = "cpu")]
    backend: imgpipe_gpu::BackendChoice,
    /// Threads encoding one image's derivatives at once (Options::encode_threads).
    #[arg(long, default_value_t = 1)]
    encode_threads: usize,
    /// Also report how far this backend's derivatives are from the CPU backend's (decoded, per
    /// pixel, over every file and derivative): `vs_cpu` in the JSON.
    #[arg(long)]
    compare_cpu: bool,
    /// Print each file's predicted peak memory (imgpipe_core::memory) as JSON and process nothing
    /// (`bench/memory.py` compares it with the measured peak RSS).
    #[arg(long)]
    predict_peak: bool,
    /// Read each file as rate–quality curves, `{"reference": [[bytes, score], …], "<encoder>":
    /// [[bytes, score], …], …}`, and print each encoder's BD-rate against `reference` as JSON
    /// (`bd_rate`: −0.2 = 20 % fewer bytes at equal score); process nothing.
    #[arg(long)]
    bd_rate: bool,
    /// Write the RD harness's reference PNGs of the input photos to this folder (`rd`).
    #[arg(long, value_name = "DIR")]
    rd_refs: Option<PathBuf>,
    /// With `--rd-refs`: sizes, each a box (`1200`: longest side) or an exact `WxH` (cropped to fill).
    #[arg(long, value_delimiter = ',', default_value = "1200,200")]
    rd_sizes: Vec<String>,
    /// Measure the RD points of the references in this folder (imgpipe's encoders and sharp's
    /// outputs) and print them as JSON; takes no files.
    #[arg(long, value_name = "DIR")]
    rd: Option<PathBuf>,
    /// With `--rd DIR`: instead of the ladder, encode DIR's references of this size to a perceptual
    /// target (`--rd-target`, `--rd-settings`) and print bytes, score, quality and trials as JSON.
    #[arg(long, requires = "rd")]
    rd_auto: Option<String>,
    /// See `--rd-auto`: the SSIMULACRA2 target.
    #[arg(long, default_value_t = 70.0)]
    rd_target: f64,
    /// See `--rd-auto`: preset lines selecting the encoder (newline-separated).
    #[arg(long, default_value = "format='jpeg'\nprogressive=true")]
    rd_settings: String,
    /// Evaluate cover crops and face detection on the labelled set in DIR (`boxes.tsv` and
    /// `images/`; see bench/faces.md) and print JSON; takes no files.
    #[arg(long, value_name = "DIR")]
    faces: Option<PathBuf>,
    /// Longer side of the analysis copy (Options::focus_side), for `--faces` and the timings.
    #[arg(long, default_value_t = imgpipe_core::focus::ANALYSIS_SIDE)]
    focus_side: u32,
    /// Input images (curve files with `--bd-rate`).
    #[arg(required_unless_present_any = ["rd", "faces"])]
    files: Vec<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    imgpipe_core::memory::keep_freed_buffers();
    let args = Args::parse();
    let presets = match &args.presets {
        None => PresetSet::default_set(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            PresetSet::from_file_text(&path.to_string_lossy(), &text)
                .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message))?
        }
    };
    if let (Some(dir), Some(size)) = (&args.rd, &args.rd_auto) {
        let settings = args.rd_settings.replace("\\n", "\n");
        let points = rd::measure_auto(dir, size, &settings, args.rd_target)?;
        println!("{}", serde_json::to_string(&points)?);
        return Ok(());
    }
    if let Some(dir) = &args.faces {
        println!("{}", faces::evaluate(dir, args.focus_side)?);
        return Ok(());
    }
    if let Some(dir) = &args.rd {
        println!("{}", serde_json::to_string(&rd::measure(dir)?)?);
        return Ok(());
    }
    if let Some(dir) = &args.rd_refs {
        return rd::write_references(dir, &args.files, &args.rd_sizes);
    }
    let inputs: Vec<Vec<u8>> = args
        .files
        .iter()
        .map(|f| std::fs::read(f).with_context(|| format!("reading {}", f.display())))
        .collect::<anyhow::Result<_>>()?;
    if args.bd_rate {
        let reports = inputs
            .iter()
            .zip(&args.files)
            .map(|(bytes, file)| bd_rates(bytes).with_context(|| format!("{}", file.display())))
            .collect::<anyhow::Result<Vec<_>>>()?;
        println!("{}", serde_json::Value::Array(reports));
        return Ok(());
    }
    if args.predict_peak {
        let predictions: Vec<serde_json::Value> = inputs
            .iter()
            .zip(&args.files)
            .map(|(bytes, file)| {
                let file = file.display().to_string();
                match imgpipe_core::memory::predict_peak(bytes, &presets, &imgpipe_core::Limits::default()) {
                    Ok(p) => serde_json::json!({"file": file, "bytes": p.bytes, "source": p.source, "decode": p.decode, "outputs": p.outputs}),
                    Err(e) => serde_json::json!({"file": file, "error": e.message}),
                }
            })
            .collect();
        let report =
            serde_json::json!({"predictions": predictions, "peak_rss_bytes": peak_rss_bytes()});
        println!("{report}");
        return Ok(());
    }
    let options = Options {
        encode_threads: args.encode_threads,
        focus_side: args.focus_side,
        ..Options::default()
    };
    let backend = imgpipe_gpu::select(args.backend).map_err(anyhow::Error::msg)?;
    let mut report = if args.threads <= 1 {
        latency(&inputs, &presets, &options, args.iterations, &backend)?
    } else {
        throughput(&inputs, &presets, &options, &args, &backend)?
    };
    report["backend"] = backend.kind().into();
    report["device"] = backend.device_name().into();
    report["jpeg_decoder"] = backend.jpeg_decoder().into();
    report["jpeg_encoder"] = backend.jpeg_encoder().into();
    if args.compare_cpu {
        report["vs_cpu"] = compare_with_cpu(&inputs, &presets, &options, &backend)?;
    }
    report["peak_rss_bytes"] = peak_rss_bytes().into();
    println!("{report}");
    Ok(())
}

/// BD-rates of every curve in one `--bd-rate` file against its `reference` curve.
fn bd_rates(json: &[u8]) -> anyhow::Result<serde_json::Value> {
    let curves: std::collections::BTreeMap<String, Vec<(f64, f64)>> =
        serde_json::from_slice(json).context("expected {\"reference\": [[bytes, score], …], …}")?;
    let points = |name: &str| -> anyhow::Result<Vec<bd_rate::RatePoint>> {
        let curve = curves
            .get(name)
            .with_context(|| format!("no curve named {name:?}"))?;
        Ok(curve
            .iter()
            .map(|&(bytes, score)| bd_rate::RatePoint { bytes, score })
            .collect())
    };
    let reference = points("reference")?;
    let mut out = serde_json::Map::new();
    for name in curves.keys().filter(|n| *n != "reference") {
        let rate = bd_rate::bd_rate(&reference, &points(name)?)
            .with_context(|| format!("curve {name:?} against \"reference\""))?;
        out.insert(name.clone(), serde_json::json!({ "bd_rate": rate }));
    }
    Ok(serde_json::Value::Object(out))
}

/// This process's peak resident set (Linux `VmHWM`; 0 elsewhere). Read here rather than with the
/// parent's wait4: Linux carries the spawning process's high-water mark into the child's ru_maxrss
/// across exec, so a large parent would hide the child's own peak.
fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// Runs one image; returns (milliseconds, total output bytes, [decode, resize, encode, detect] ms).
fn one(
    bytes: &[u8],
    presets: &PresetSet,
    options: &Options,
    engine: &mut Engine,
) -> anyhow::Result<(f64, u64, [f64; 4])> {
    let started = Instant::now();
    let processed = process(bytes, &SourceRef::default(), presets, options, engine)
        .map_err(|failed| anyhow::anyhow!("{}", failed.error))?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let output = processed
        .derivatives
        .iter()
        .map(|d| d.bytes.len() as u64)
        .sum();
    let t = &processed.metadata.timings_ms;
    Ok((ms, output, [t.decode, t.resize, t.encode, t.detect]))
}

/// Decodes every derivative made by `backend` and by the CPU and compares them pixel by pixel:
/// the largest difference in levels, that over 255 (the max relative error), and the mean.
fn compare_with_cpu(
    inputs: &[Vec<u8>],
    presets: &PresetSet,
    options: &Options,
    backend: &imgpipe_gpu::Backend,
) -> anyhow::Result<serde_json::Value> {
    let decode = |bytes: &[u8]| -> anyhow::Result<imgpipe_core::pixels::Pixels> {
        let header = imgpipe_core::probe::probe(bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
        imgpipe_core::decode::decode(bytes, &header, 1, None, 1 << 30)
            .map_err(|e| anyhow::anyhow!("{e}"))
    };
    let (mut max, mut sum, mut count) = (0u8, 0f64, 0usize);
    let mut engine = backend.engine();
    for input in inputs {
        let run = |engine: &mut Engine| {
            process(input, &SourceRef::default(), presets, options, engine)
                .map_err(|failed| anyhow::anyhow!("{}", failed.error))
        };
        let (device, cpu) = (run(&mut engine)?, run(&mut Engine::default())?);
        for (d, c) in device.derivatives.iter().zip(&cpu.derivatives) {
            let (d, c) = (decode(&d.bytes)?, decode(&c.bytes)?);
            anyhow::ensure!(
                (d.width, d.height, d.channels) == (c.width, c.height, c.channels),
                "derivative sizes differ"
            );
            max = max.max(imgpipe_core::kernel::max_difference(&d, &c));
            // Weighted by size, so the mean is over every channel value of every derivative.
            sum += imgpipe_core::kernel::mean_difference(&d, &c) * d.data.len() as f64;
            count += d.data.len();
        }
    }
    Ok(serde_json::json!({
        "max_levels": max,
        "max_relative_error": f64::from(max) / 255.0,
        "mean_levels": sum / count.max(1) as f64,
    }))
}

/// Median decode / resize / encode / detect (faces and attention) milliseconds over `stages`.
fn stage_medians(stages: &[[f64; 4]]) -> serde_json::Value {
    let column = |i: usize| median(&mut stages.iter().map(|s| s[i]).collect::<Vec<_>>());
    serde_json::json!({"decode": column(0), "resize": column(1), "encode": column(2), "detect": column(3)})
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn latency(
    inputs: &[Vec<u8>],
    presets: &PresetSet,
    options: &Options,
    iterations: usize,
    backend: &imgpipe_gpu::Backend,
) -> anyhow::Result<serde_json::Value> {
    let mut engine = backend.engine();
    let mut output_bytes = Vec::new();
    for input in inputs {
        output_bytes.push(one(input, presets, options, &mut engine)?.1); // warm-up
    }
    let mut times = vec![Vec::new(); inputs.len()];
    let mut stages = Vec::new();
    for _ in 0..iterations {
        for (i, input) in inputs.iter().enumerate() {
            let (ms, _, stage) = one(input, presets, options, &mut engine)?;
            times[i].push(ms);
            stages.push(stage);
        }
    }
    let per_file: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
    let mean_of_medians = per_file.iter().sum::<f64>() / per_file.len() as f64;
    Ok(serde_json::json!({
        "threads": 1,
        "median_ms_per_file": per_file,
        "median_ms": mean_of_medians,
        "images_per_s": 1000.0 / mean_of_medians,
        "output_bytes": output_bytes.iter().sum::<u64>(),
        "stage_median_ms": stage_medians(&stages),
        "device_fallbacks": engine.backend_failures().0,
    }))
}

fn throughput(
    inputs: &[Vec<u8>],
    presets: &PresetSet,
    options: &Options,
    args: &Args,
    backend: &imgpipe_gpu::Backend,
) -> anyhow::Result<serde_json::Value> {
    let total = inputs.len() * args.iterations;
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let rss_samples = std::sync::Mutex::new(Vec::new());
    let stages = std::sync::Mutex::new(Vec::new());
    let fallbacks = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..args.threads)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    let mut engine = backend.engine();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            let (failures, last) = engine.backend_failures();
                            if let Some(last) = last {
                                eprintln!(
                                    "{failures} device calls redone on the CPU; last: {last}"
                                );
                            }
                            fallbacks.fetch_add(failures as usize, Ordering::Relaxed);
                            return Ok(());
                        }
                        let (_, _, stage) =
                            one(&inputs[i % inputs.len()], presets, options, &mut engine)?;
                        stages.lock().expect("stages").push(stage);
                        let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if args.rss_every > 0 && finished.is_multiple_of(args.rss_every) {
                            let sample = (finished, resident_mib());
                            rss_samples.lock().expect("rss samples").push(sample);
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("bench thread panicked")?;
        }
        Ok(())
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let mut rss = rss_samples.into_inner().expect("rss samples");
    rss.sort_by_key(|(images, _)| *images);
    Ok(serde_json::json!({
        "threads": args.threads,
        "images": total,
        "wall_s": seconds,
        "images_per_s": total as f64 / seconds,
        "rss_mib_after_images": rss,
        "stage_median_ms": stage_medians(&stages.into_inner().expect("stages")),
        "device_fallbacks": fallbacks.into_inner(),
    }))
}

/// Current resident set size in MiB, from /proc/self/statm (0 where there is none).
fn resident_mib() -> f64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}
