//! `webhooks`: the webhook sender. Under AWS Lambda (AWS_LAMBDA_RUNTIME_API is set) it serves SQS
//! events from the webhook queue; anywhere else it long-polls that queue and drives the very same
//! batch function (`imgpipe_cloud::webhook_sender`).

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use imgpipe_cloud::process::{init_logging, shutdown_signal};
use imgpipe_cloud::webhook_sender::{Sender, WebhookConfig};
use imgpipe_cloud::{lambda, worker};

/// imgpipe webhook sender: events → signed POSTs (Standard Webhooks), retried, DLQ at the end.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Long-poll wait in seconds (1–20), worker mode.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i32).range(1..=20))]
    wait_seconds: i32,
    /// Print log lines as JSON (default under Lambda).
    #[arg(long)]
    json_logs: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let under_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    init_logging(args.json_logs || under_lambda);
    let config =
        WebhookConfig::from_env().context("invalid configuration; see README.md 'Webhooks'")?;
    tracing::info!(
        endpoints = config.endpoints.len(),
        attempts = config.max_attempts(),
        "webhook sender configured"
    );
    let sender = Arc::new(
        Sender::from_config(config)
            .await
            .map_err(anyhow::Error::msg)?,
    );
    let queue_url = sender.config().queue_url.clone();
    if under_lambda {
        return lambda::run(sender, Some(queue_url))
            .await
            .map_err(|e| anyhow::anyhow!(e));
    }
    let options = worker::WorkerOptions {
        queue_url,
        concurrency: sender.config().concurrency,
        wait_time_seconds: args.wait_seconds,
        gather: None,
        gauges: Default::default(),
    };
    worker::run(sender, options, shutdown_signal()).await;
    Ok(())
}
