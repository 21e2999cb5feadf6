//! Process plumbing shared by the binaries (`derive`, `webhooks`, `gpu-worker`, `api`): logging
//! set-up, the shutdown signal, and running a batch function under Lambda or as a worker.

use std::sync::Arc;

use crate::batch::BatchFunction;
use crate::worker::{self, WorkerOptions};

/// True when running under AWS Lambda (the Runtime API address is set).
pub fn under_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}

/// Runs `function` as Lambda's SQS handler when under Lambda, else as a long-polling worker on
/// `queue_url` until SIGTERM/Ctrl-C. `queue_url` is where retry backoff is applied under Lambda,
/// and is required outside it.
pub async fn run_queue_consumer<F: BatchFunction>(
    function: Arc<F>,
    queue_url: Option<String>,
    wait_time_seconds: i32,
    visibility: Option<std::time::Duration>,
) -> Result<(), String> {
    if under_lambda() {
        return crate::lambda::run(function, queue_url)
            .await
            .map_err(|e| e.to_string());
    }
    let queue_url =
        queue_url.ok_or("--queue-url (or IMGPIPE_QUEUE_URL) is required outside Lambda")?;
    let options = WorkerOptions {
        queue_url,
        concurrency: function.concurrency(),
        wait_time_seconds,
        gather: None,
        gauges: Default::default(),
        visibility,
    };
    worker::run(function, options, shutdown_signal()).await;
    Ok(())
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); JSON lines when `json` (CloudWatch).
pub fn init_logging(json: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init()
    } else {
        builder.init()
    }
}

/// Resolves on SIGTERM (ECS, Kubernetes, systemd) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received");
}
