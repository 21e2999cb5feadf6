//! `webhooks`: the webhook sender. Under AWS Lambda (AWS_LAMBDA_RUNTIME_API is set) it serves SQS
//! events from the webhook queue; anywhere else it long-polls that queue and drives the very same
//! batch function (`imgpipe_cloud::webhook_sender`).

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use imgpipe_cloud::process::{init_logging, run_queue_consumer, under_lambda};
use imgpipe_cloud::webhook_sender::{Sender, WebhookConfig};

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
    init_logging(args.json_logs || under_lambda());
    let config = WebhookConfig::from_env()
        .context("invalid configuration; see docs/events-and-webhooks.md")?;
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
    // The queue's own visibility: a webhook attempt's timeout and backoff are set against it.
    run_queue_consumer(sender, Some(queue_url), args.wait_seconds, None)
        .await
        .map_err(anyhow::Error::msg)
}
