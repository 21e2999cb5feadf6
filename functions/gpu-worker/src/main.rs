//! `gpu-worker`: the container worker for heavy jobs (very large images, backfills, manifest items).
//! Long-polls the GPU queue with the same batch handler as `derive` (same presets, metadata, error
//! classes and DLQ behaviour), on the backend `--backend` picks, and serves `GET /health`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use imgpipe_cloud::process::{init_logging, shutdown_signal};
use imgpipe_cloud::{Config, Handler, worker};
use imgpipe_gpu::{Backend, BackendChoice};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// imgpipe GPU worker: heavy jobs from the GPU queue → derivatives + metadata JSON.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The GPU jobs queue (IMGPIPE_GPU_QUEUE_URL).
    #[arg(long, env = "IMGPIPE_GPU_QUEUE_URL")]
    queue_url: String,
    /// auto (GPU when present, else CPU with one log line), cpu, or gpu (fail without a device).
    #[arg(long, env = "IMGPIPE_BACKEND", default_value = "auto")]
    backend: BackendChoice,
    /// Messages processed at once (default: IMGPIPE_CONCURRENCY, else the CPU count).
    #[arg(long)]
    concurrency: Option<usize>,
    /// N: messages gathered into one batch at most (capped by --concurrency).
    #[arg(long, env = "IMGPIPE_GPU_BATCH_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1000))]
    batch_size: u16,
    /// T: after a batch's first message, how long to wait for more before starting it.
    #[arg(long, env = "IMGPIPE_GPU_BATCH_WINDOW_MS", default_value_t = 250)]
    batch_window_ms: u64,
    /// Long-poll wait in seconds (1–20).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i32).range(1..=20))]
    wait_seconds: i32,
    /// Seconds a received message stays hidden, renewed by a heartbeat every third while its batch
    /// runs: a killed worker's messages are back after at most this long.
    #[arg(long, env = "IMGPIPE_WORKER_VISIBILITY_SECONDS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(3..=43_200))]
    visibility_seconds: u64,
    /// Address of the health endpoint (`GET /health`); empty to turn it off.
    #[arg(long, env = "IMGPIPE_HEALTH_ADDR", default_value = "0.0.0.0:8080")]
    health_addr: String,
    /// Print log lines as JSON.
    #[arg(long)]
    json_logs: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    imgpipe_core::memory::keep_freed_buffers();
    let args = Args::parse();
    init_logging(args.json_logs);
    let mut config =
        Config::from_env().context("invalid configuration; see docs/configuration.md")?;
    // The GPU worker is where routed jobs end: it never forwards again.
    config.routing = None;
    if let Some(concurrency) = args.concurrency {
        config.concurrency = concurrency.max(1);
    }
    let backend = imgpipe_gpu::select(args.backend).map_err(anyhow::Error::msg)?;
    tracing::info!(backend = backend.kind(), device = backend.device_name(), queue = %args.queue_url, "gpu-worker starting");
    let backend = Arc::new(backend);
    let engines = Arc::clone(&backend);
    let handler = Arc::new(
        Handler::from_config(config)
            .await
            .with_engines(Arc::new(move || engines.engine())),
    );
    let gauges = Arc::new(worker::Gauges::default());
    if !args.health_addr.is_empty() {
        let listener = tokio::net::TcpListener::bind(&args.health_addr)
            .await
            .with_context(|| format!("binding the health endpoint to {}", args.health_addr))?;
        tracing::info!(addr = %listener.local_addr()?, "health endpoint: GET /health");
        tokio::spawn(serve_health(
            listener,
            Arc::clone(&handler),
            Arc::clone(&backend),
            Arc::clone(&gauges),
            args.queue_url.clone(),
        ));
    }
    let options = worker::WorkerOptions {
        queue_url: args.queue_url,
        concurrency: handler.config().concurrency,
        wait_time_seconds: args.wait_seconds,
        gather: Some(worker::Gather {
            max_messages: args.batch_size.into(),
            window: Duration::from_millis(args.batch_window_ms),
        }),
        gauges: Arc::clone(&gauges),
        visibility: Some(Duration::from_secs(args.visibility_seconds)),
    };
    let stats = worker::run(handler, options, shutdown_signal()).await;
    tracing::info!(?stats, "gpu-worker stopped");
    Ok(())
}

/// Answers every connection with the health JSON: backend, device, queue depth and in-flight
/// messages (SQS's approximate counts, across all workers), and this worker's own gauges. One fixed route, so a few lines of
/// HTTP/1.1 instead of a web framework.
async fn serve_health(
    listener: tokio::net::TcpListener,
    handler: Arc<Handler>,
    backend: Arc<Backend>,
    gauges: Arc<worker::Gauges>,
    queue_url: String,
) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let mut request = [0u8; 1024];
        let read = socket.read(&mut request).await.unwrap_or(0);
        let first_line = String::from_utf8_lossy(&request[..read]);
        let (status, body) = if first_line.starts_with("GET /health") {
            (
                "200 OK",
                health(&handler, &backend, &gauges, &queue_url).await,
            )
        } else {
            (
                "404 Not Found",
                serde_json::json!({"error": "GET /health only"}),
            )
        };
        let body = body.to_string();
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = socket.write_all(response.as_bytes()).await;
    }
}

async fn health(
    handler: &Handler,
    backend: &Backend,
    gauges: &worker::Gauges,
    queue_url: &str,
) -> serde_json::Value {
    let (depth, in_flight, queue_error) =
        match imgpipe_cloud::queue::depth(handler.sqs(), queue_url).await {
            Ok(d) => (Some(d.visible), Some(d.in_flight), None),
            Err(e) => (None, None, Some(e.message)),
        };
    serde_json::json!({
        "status": if queue_error.is_none() { "ok" } else { "degraded" },
        "backend": backend.kind(),
        "gpu": backend.device_name(),
        "jpeg_decoder": backend.jpeg_decoder(),
        "jpeg_encoder": backend.jpeg_encoder(),
        "cpu_reason": match backend { Backend::Cpu { reason } => Some(reason.as_str()), Backend::Gpu(..) => None },
        "queue_depth": depth,
        "in_flight": in_flight,
        "queue_error": queue_error,
        "worker": gauges.to_json(),
    })
}
