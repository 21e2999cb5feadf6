//! `derive`: the imgpipe handler. Under AWS Lambda (AWS_LAMBDA_RUNTIME_API is set) it serves SQS
//! events; anywhere else it long-polls `--queue-url` and drives the very same batch function.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use imgpipe_cloud::process::{init_logging, run_queue_consumer, under_lambda};
use imgpipe_cloud::{Config, Handler};

/// imgpipe derive handler: S3 upload events from SQS → derivatives + metadata JSON.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Queue to long-poll (worker mode). Ignored under Lambda, where the event source mapping polls.
    #[arg(long, env = "IMGPIPE_QUEUE_URL")]
    queue_url: Option<String>,
    /// Messages processed at once (default: IMGPIPE_CONCURRENCY, else the CPU count).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Memory budget in MiB: images wait until their predicted peaks fit it (default:
    /// IMGPIPE_MEMORY_MIB; under Lambda, the function's memory; else no memory admission).
    #[arg(long)]
    memory_mib: Option<u64>,
    /// Long-poll wait in seconds (1–20).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i32).range(1..=20))]
    wait_seconds: i32,
    /// Print log lines as JSON (default under Lambda).
    #[arg(long)]
    json_logs: bool,
    /// Worker mode: seconds a received message stays hidden, renewed by a heartbeat every third;
    /// a killed worker's messages are back after at most this long. Ignored under Lambda.
    #[arg(long, env = "IMGPIPE_WORKER_VISIBILITY_SECONDS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(3..=43_200))]
    visibility_seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    imgpipe_core::memory::keep_freed_buffers();
    let args = Args::parse();
    init_logging(args.json_logs || under_lambda());
    let mut config =
        Config::from_env().context("invalid configuration; see docs/configuration.md")?;
    if let Some(concurrency) = args.concurrency {
        config.concurrency = concurrency.max(1);
    }
    if let Some(mib) = args.memory_mib {
        anyhow::ensure!(mib >= 128, "--memory-mib {mib}: at least 128");
        config.memory_mib = Some(mib);
    }
    tracing::info!(presets = config.presets.presets().len(), memory_mib = config.memory_mib, preset_set_hash = config.presets.hash(), output_bucket = %config.output_bucket, "configuration loaded");
    let handler = Arc::new(Handler::from_config(config).await);
    run_queue_consumer(
        handler,
        args.queue_url,
        args.wait_seconds,
        Some(std::time::Duration::from_secs(args.visibility_seconds)),
    )
    .await
    .map_err(anyhow::Error::msg)
}
