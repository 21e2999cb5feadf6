//! `imgpipe gallery`, `imgpipe serve` and `imgpipe edge-groups`: looking at what a stack made.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use imgpipe_core::PresetSet;
use imgpipe_delivery::gallery::{self, Links};
use imgpipe_delivery::gallery_html::{self, Page};
use imgpipe_delivery::gateway::{self, Gateway};
use imgpipe_delivery::stack::{self, Outputs};

/// Which derivatives bucket: a deployed stack's, or one named directly.
#[derive(clap::Args, Debug)]
pub struct Where {
    /// CloudFormation stack whose outputs name the derivatives bucket, prefix and CDN.
    #[arg(long, required_unless_present = "bucket", conflicts_with = "bucket")]
    stack: Option<String>,
    /// Derivatives bucket (instead of --stack).
    #[arg(long)]
    bucket: Option<String>,
    /// Key prefix of the outputs (default: the stack's OutputPrefix, else none).
    #[arg(long)]
    prefix: Option<String>,
}

/// `imgpipe gallery`'s options.
#[derive(clap::Args, Debug)]
pub struct GalleryArgs {
    #[command(flatten)]
    place: Where,
    /// Where to write the page.
    #[arg(long, short, default_value = "imgpipe-gallery.html")]
    out: PathBuf,
    /// Load images from <base-url>/<key> (the CDN, or `imgpipe serve`); default: the stack's
    /// CdnBaseUrl, else pre-signed S3 URLs (valid --expires-hours).
    #[arg(long)]
    base_url: Option<String>,
    /// Life of pre-signed image URLs, in hours (at most 168).
    #[arg(long, default_value_t = 168)]
    expires_hours: u64,
    /// Most sources on the page (newest first).
    #[arg(long, default_value_t = 200)]
    limit: usize,
    /// Show GPS positions where metadata has them. Off by default: the page is a file meant to be
    /// shared, with week-long links, and a photo's position is personal.
    #[arg(long)]
    show_gps: bool,
}

/// `imgpipe serve`'s options.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    place: Where,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8790")]
    listen: String,
    /// Preset file whose variant groups are negotiated (default: the built-in set, like the
    /// CloudFront Function).
    #[arg(long)]
    presets: Option<PathBuf>,
    /// Keys that sign parametric variants (`_w640-cover-q70.<signature>.webp`), separated by
    /// spaces while rotating (the first signs; each at least 32 bytes). Without, parametric
    /// variants answer 403; ladder rungs are rendered on a miss either way.
    #[arg(long, env = "IMGPIPE_VARIANT_KEYS", hide_env_values = true)]
    variant_keys: Option<String>,
}

async fn resolve(shared: &aws_config::SdkConfig, place: &Where) -> anyhow::Result<Outputs> {
    let mut outputs = match (&place.stack, &place.bucket) {
        (Some(name), _) => stack::outputs(shared, name)
            .await
            .map_err(anyhow::Error::msg)?,
        (None, Some(bucket)) => Outputs {
            bucket: bucket.clone(),
            prefix: String::new(),
            cdn_base_url: None,
        },
        (None, None) => anyhow::bail!("give --stack NAME or --bucket BUCKET"),
    };
    if let Some(prefix) = &place.prefix {
        outputs.prefix = prefix.clone();
    }
    Ok(outputs)
}

async fn clients() -> (aws_config::SdkConfig, aws_sdk_s3::Client) {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let endpoint_override = std::env::var_os("AWS_ENDPOINT_URL").is_some();
    let s3 = imgpipe_cloud::store::client(&shared, endpoint_override);
    (shared, s3)
}

/// Writes the gallery page and prints its path.
pub async fn gallery(args: GalleryArgs) -> anyhow::Result<()> {
    let (shared, s3) = clients().await;
    let outputs = resolve(&shared, &args.place).await?;
    let links = match args.base_url.clone().or(outputs.cdn_base_url.clone()) {
        Some(base) => Links::Base(base),
        None => Links::Presigned(Duration::from_secs(args.expires_hours.saturating_mul(3600))),
    };
    let entries = gallery::collect(&s3, &outputs.bucket, &outputs.prefix, args.limit, &links)
        .await
        .map_err(anyhow::Error::msg)?;
    let page = Page {
        origin: format!("s3://{}/{}", outputs.bucket, outputs.prefix),
        generated_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        show_gps: args.show_gps,
    };
    let html = gallery_html::render(&entries, &page);
    std::fs::write(&args.out, html).with_context(|| format!("writing {}", args.out.display()))?;
    let path = std::fs::canonicalize(&args.out).unwrap_or(args.out.clone());
    println!(
        "gallery of {} sources: {} (open file://{})",
        entries.len(),
        path.display(),
        path.display()
    );
    Ok(())
}

/// Serves the derivatives bucket with edge negotiation until Ctrl-C.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (shared, s3) = clients().await;
    let outputs = resolve(&shared, &args.place).await?;
    let presets = crate::load_presets(args.presets.as_deref())?;
    let keys = args
        .variant_keys
        .as_deref()
        .map(imgpipe_core::variant::SigningKeys::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("IMGPIPE_VARIANT_KEYS: {e}"))?;
    let on_request = imgpipe_delivery::on_request::OnRequest::with_defaults(
        outputs.prefix.clone(),
        presets.clone(),
        keys,
    );
    let state = Arc::new(Gateway {
        s3,
        bucket: outputs.bucket.clone(),
        groups: presets.edge_groups(),
        on_request: Some(Arc::new(on_request)),
    });
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let address = listener.local_addr()?;
    println!(
        "edge gateway for s3://{}: http://{address}/{}<key>/<group> (groups: {})",
        outputs.bucket,
        outputs.prefix,
        presets
            .edge_groups()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );
    axum::serve(listener, gateway::router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving HTTP")
}

/// The CloudFront Function's GROUPS line for a preset set.
pub fn edge_groups(presets: &PresetSet) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(&presets.edge_groups())?);
    Ok(())
}
