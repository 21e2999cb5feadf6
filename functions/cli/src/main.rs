//! `imgpipe`: run the pipeline on local files (same core as the cloud handler), check preset files,
//! probe images; look at what a stack made (`gallery`, `serve`: [`delivery`]); operate a stack
//! (`backfill`: [`backfill`]; `status`, `dlq`: [`queues`]; what they work on: [`resources`]).

mod backfill;
mod delivery;
mod queues;
mod resources;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use imgpipe_core::{Engine, GpsPolicy, Limits, Options, OutputLayout, PresetSet, SourceRef};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "imgpipe: derivatives and metadata from images, locally"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Gps {
    Include,
    Coarse,
    Omit,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Make every preset's derivative and metadata.json for each input file.
    Derive {
        /// Input image files.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output folder; outputs go to <out>/<file name>/<preset>.<ext> and metadata.json.
        #[arg(long, short, default_value = "imgpipe-out")]
        out: PathBuf,
        /// Preset file (TOML or JSON); default: the built-in set.
        #[arg(long)]
        presets: Option<PathBuf>,
        /// GPS in metadata: include, coarse (2 decimals, no altitude) or omit. Never in derivatives.
        #[arg(long, value_enum, default_value = "include")]
        gps: Gps,
        /// Public base URL of the outputs; metadata then lists each derivative's URL.
        #[arg(long)]
        cdn_base_url: Option<String>,
        /// Maximum source pixels.
        #[arg(long, default_value_t = Limits::default().max_pixels)]
        max_pixels: u64,
        /// Maximum frames of an animation.
        #[arg(long, default_value_t = Limits::default().max_frames)]
        max_frames: u32,
        /// Memory budget of one decode, in MiB.
        #[arg(long, default_value_t = Limits::default().max_decode_bytes >> 20)]
        max_decode_mib: u64,
        /// Threads encoding one image's derivatives at once.
        #[arg(long, default_value_t = 1)]
        encode_threads: usize,
        /// The focal point of every input, `<x>,<y>` as fractions of the upright width and height
        /// (`0.5,0.2`): where `gravity = "auto"` and `"focal"` cover crops centre.
        #[arg(long, value_parser = parse_focus)]
        focus: Option<imgpipe_core::focus::FocalPoint>,
    },
    /// Print the JSON Schema of metadata.json.
    Schema,
    /// Validate a preset file and print its hash.
    Presets {
        /// Preset file (TOML or JSON); default: print the built-in set.
        file: Option<PathBuf>,
    },
    /// Print what the header says (format, dimensions) without decoding.
    Probe {
        /// Image files.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Write one static HTML page of what a stack made: derivatives, placeholders, EXIF, failures.
    Gallery(delivery::GalleryArgs),
    /// Serve the derivatives bucket locally with the CloudFront Function's format negotiation.
    Serve(delivery::ServeArgs),
    /// After a preset change: enqueue jobs for the sources whose outputs are stale.
    Backfill(backfill::BackfillArgs),
    /// Queue depths, jobs in flight, dead letters by failure kind.
    Status(queues::StatusArgs),
    /// Dead-lettered jobs: list, redrive, purge.
    #[command(subcommand)]
    Dlq(queues::DlqCommand),
    /// Print the variant groups of a preset set as the CloudFront Function's GROUPS (JSON).
    EdgeGroups {
        /// Preset file (TOML or JSON); default: the built-in set.
        #[arg(long)]
        presets: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    imgpipe_core::memory::keep_freed_buffers();
    match Cli::parse().command {
        Command::Derive {
            inputs,
            out,
            presets,
            gps,
            cdn_base_url,
            max_pixels,
            max_frames,
            max_decode_mib,
            encode_threads,
            focus,
        } => {
            let presets = load_presets(presets.as_deref())?;
            let options = Options {
                limits: Limits {
                    max_pixels,
                    max_frames,
                    max_decode_bytes: max_decode_mib.saturating_mul(1 << 20),
                    ..Limits::default()
                },
                gps: match gps {
                    Gps::Include => GpsPolicy::Include,
                    Gps::Coarse => GpsPolicy::Coarse,
                    Gps::Omit => GpsPolicy::Omit,
                },
                layout: OutputLayout {
                    prefix: String::new(),
                },
                cdn_base_url,
                encode_threads,
                ..Options::default()
            };
            derive(&inputs, &out, &presets, &options, focus)
        }
        Command::Gallery(args) => runtime()?.block_on(delivery::gallery(args)),
        Command::Serve(args) => runtime()?.block_on(delivery::serve(args)),
        Command::Backfill(args) => {
            let code = runtime()?.block_on(backfill::run(args))?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Command::Status(args) => runtime()?.block_on(queues::status(args)),
        Command::Dlq(command) => runtime()?.block_on(queues::dlq(command)),
        Command::EdgeGroups { presets } => {
            delivery::edge_groups(&load_presets(presets.as_deref())?)
        }
        Command::Schema => {
            print!("{}", imgpipe_core::metadata::JSON_SCHEMA);
            Ok(())
        }
        Command::Presets { file } => {
            let set = load_presets(file.as_deref())?;
            for p in set.presets() {
                let width = match &p.widths {
                    Some(widths) => widths
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                    None => dim(p.width),
                };
                println!(
                    "{:<16} {:>5} x {:<5} {:<7} {:<5} {}",
                    p.name,
                    width,
                    dim(p.height),
                    format!("{:?}", p.fit).to_lowercase(),
                    p.format.as_str(),
                    match p.quality {
                        imgpipe_core::quality::Quality::Fixed(q) => format!("q{q}"),
                        other => format!("SSIMULACRA2 {}", other.target().unwrap_or_default()),
                    }
                );
            }
            println!("preset set hash: {}", set.hash());
            Ok(())
        }
        Command::Probe { inputs } => {
            for input in inputs {
                let bytes = std::fs::read(&input)
                    .with_context(|| format!("reading {}", input.display()))?;
                match imgpipe_core::probe::probe(&bytes) {
                    Ok(h) => println!(
                        "{}: {} {}x{} {} {}-bit{}{}{}{}",
                        input.display(),
                        h.format.as_str(),
                        h.width,
                        h.height,
                        h.colour_space.as_str(),
                        h.bit_depth,
                        if h.alpha { " alpha" } else { "" },
                        if h.frames > 1 {
                            format!(" {} frames", h.frames)
                        } else {
                            String::new()
                        },
                        if h.progressive { " progressive" } else { "" },
                        h.icc_profile
                            .as_deref()
                            .and_then(imgpipe_core::colour::Profile::parse)
                            .map(|p| format!(" ICC '{}'", p.description.unwrap_or_default()))
                            .unwrap_or_default(),
                    ),
                    Err(e) => println!("{}: {e}", input.display()),
                }
            }
            Ok(())
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn dim(v: Option<u32>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

pub(crate) fn load_presets(path: Option<&Path>) -> anyhow::Result<PresetSet> {
    let Some(path) = path else {
        return Ok(PresetSet::default_set());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    PresetSet::from_file_text(&path.to_string_lossy(), &text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message))
}

fn parse_focus(text: &str) -> Result<imgpipe_core::focus::FocalPoint, String> {
    imgpipe_core::focus::FocalPoint::parse(text)
}

fn derive(
    inputs: &[PathBuf],
    out: &Path,
    presets: &PresetSet,
    options: &Options,
    focus: Option<imgpipe_core::focus::FocalPoint>,
) -> anyhow::Result<()> {
    let mut engine = Engine::default();
    let mut failures = 0;
    for input in inputs {
        let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
        let name = input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "input".into());
        let source = SourceRef {
            bucket: "local".into(),
            key: name.clone(),
            focus,
            ..SourceRef::default()
        };
        let dir = out.join(&name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let metadata = match imgpipe_core::process(&bytes, &source, presets, options, &mut engine) {
            Ok(processed) => {
                for d in &processed.derivatives {
                    std::fs::write(out.join(&d.key), &d.bytes)
                        .with_context(|| format!("writing {}", d.key))?;
                    println!(
                        "{:<48} {:>8} B  {}x{}",
                        out.join(&d.key).display(),
                        d.bytes.len(),
                        d.width,
                        d.height
                    );
                }
                println!(
                    "{name}: {:.1} ms (decode {:.1}, resize {:.1}, encode {:.1})",
                    processed.metadata.timings_ms.total,
                    processed.metadata.timings_ms.decode,
                    processed.metadata.timings_ms.resize,
                    processed.metadata.timings_ms.encode
                );
                processed.metadata
            }
            Err(failed) => {
                failures += 1;
                eprintln!("{name}: {}", failed.error);
                failed.metadata
            }
        };
        std::fs::write(
            dir.join("metadata.json"),
            serde_json::to_vec_pretty(&metadata)?,
        )?;
    }
    if failures > 0 {
        bail!("{failures} of {} inputs failed", inputs.len());
    }
    Ok(())
}
