//! `api`: the upload API. Under AWS Lambda (AWS_LAMBDA_RUNTIME_API is set) it answers API Gateway
//! HTTP API events through lambda_http; anywhere else it serves the same router over HTTP.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use imgpipe_api::{ApiConfig, AppState, router};
use imgpipe_cloud::process::{init_logging, shutdown_signal, under_lambda};

/// imgpipe upload API: pre-signed uploads with enforced limits, image status, health.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on outside Lambda.
    #[arg(long, env = "IMGPIPE_API_LISTEN", default_value = "127.0.0.1:8787")]
    listen: String,
    /// Print log lines as JSON (default under Lambda).
    #[arg(long)]
    json_logs: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.json_logs || under_lambda());
    let config = ApiConfig::from_env().context("invalid configuration; see docs/upload-api.md")?;
    let state = AppState::from_config(config)
        .await
        .map_err(anyhow::Error::msg)?;
    let app = router(Arc::new(state));
    if under_lambda() {
        return lambda_http::run(app).await.map_err(|e| anyhow::anyhow!(e));
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "upload API listening: POST /v1/uploads, GET /v1/images/{{id}}, PUT /v1/images/{{id}}/focus, GET /v1/health");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    Ok(())
}
