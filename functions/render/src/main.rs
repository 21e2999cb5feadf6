//! `render`: variants made on first request. Under AWS Lambda (AWS_LAMBDA_RUNTIME_API is set) it
//! answers function-URL events (CloudFront's origin group fails over to it, OAC-signed, when the
//! derivatives bucket has no such object) through lambda_http; anywhere else it serves the same
//! router over HTTP. The work is [`imgpipe_delivery::render_origin`]'s; configuration is
//! [`imgpipe_delivery::render_config`]'s (read at start; the signing keys from SSM when
//! `IMGPIPE_VARIANT_KEYS_PARAMETER` names them).

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use imgpipe_cloud::process::{init_logging, shutdown_signal, under_lambda};
use imgpipe_core::variant::SigningKeys;
use imgpipe_delivery::on_request::OnRequest;
use imgpipe_delivery::render_config::RenderConfig;
use imgpipe_delivery::render_origin::{RenderOrigin, router};

/// imgpipe render origin: ladder rungs, on-request presets and signed variants, rendered once.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on outside Lambda.
    #[arg(long, env = "IMGPIPE_RENDER_LISTEN", default_value = "127.0.0.1:8791")]
    listen: String,
    /// Print log lines as JSON (default under Lambda).
    #[arg(long)]
    json_logs: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    imgpipe_core::memory::keep_freed_buffers();
    let args = Args::parse();
    init_logging(args.json_logs || under_lambda());
    let config = RenderConfig::from_env().context("invalid configuration; see docs/delivery.md")?;
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let keys = match &config.keys {
        Some(source) => Some(source.read(&shared).await.map_err(anyhow::Error::msg)?),
        None => None,
    }
    .map(|text| SigningKeys::parse(&text))
    .transpose()
    .map_err(|e| anyhow::anyhow!("variant signing keys: {e}"))?;
    let endpoint_override = std::env::var_os("AWS_ENDPOINT_URL").is_some();
    let s3 = imgpipe_cloud::store::client(&shared, endpoint_override);
    let mut on_request = OnRequest::new(
        config.layout.prefix.clone(),
        config.presets.clone(),
        keys,
        config.limits,
        config.pipeline_options(),
        config.cache_control.clone(),
    );
    on_request.limits = config.variant_limits.clone();
    let app = router(Arc::new(RenderOrigin {
        s3,
        bucket: config.output_bucket.clone(),
        on_request: Arc::new(on_request),
        inline_max: config.inline_max,
    }));
    if under_lambda() {
        return lambda_http::run(app).await.map_err(|e| anyhow::anyhow!(e));
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, bucket = %config.output_bucket, "render origin listening: GET /<prefix><key>/<variant>");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    Ok(())
}
