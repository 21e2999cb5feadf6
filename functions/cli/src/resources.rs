//! The buckets and queues the operations commands (`backfill`, `status`, `dlq`) work on: read from
//! a deployed stack's outputs (`--stack NAME`), or named one by one. AWS access follows the usual
//! conventions (`AWS_PROFILE`, `AWS_REGION`, `AWS_ENDPOINT_URL` for LocalStack).

use std::collections::HashMap;

use anyhow::bail;

/// `--stack NAME`, or the resources by name.
#[derive(clap::Args, Debug, Clone)]
pub struct ResourceArgs {
    /// CloudFormation stack whose outputs name the buckets and queues.
    #[arg(long)]
    pub stack: Option<String>,
    /// Ingest bucket (the sources), instead of the stack's.
    #[arg(long)]
    pub bucket: Option<String>,
    /// Derivatives bucket, instead of the stack's (default: --bucket).
    #[arg(long)]
    pub output_bucket: Option<String>,
    /// Key prefix of the outputs (default: the stack's OutputPrefix, else `derived/`).
    #[arg(long)]
    pub output_prefix: Option<String>,
    /// Jobs queue URL, instead of the stack's.
    #[arg(long)]
    pub queue_url: Option<String>,
    /// Dead-letter queue URL of the jobs queue, instead of the stack's.
    #[arg(long)]
    pub dlq_url: Option<String>,
    /// GPU jobs queue URL, instead of the stack's.
    #[arg(long)]
    pub gpu_queue_url: Option<String>,
    /// GPU dead-letter queue URL, instead of the stack's.
    #[arg(long)]
    pub gpu_dlq_url: Option<String>,
}

/// What the commands need, resolved.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    /// Where sources are uploaded.
    pub ingest_bucket: Option<String>,
    /// Only keys under this prefix are processed (empty: all).
    pub ingest_prefix: String,
    /// Batch manifests live under this prefix (empty: none).
    pub manifest_prefix: String,
    /// Derivatives and metadata.json.
    pub output_bucket: Option<String>,
    /// Key prefix of every output.
    pub output_prefix: String,
    /// Queues, by role.
    pub jobs_queue: Option<String>,
    /// The jobs queue's dead-letter queue.
    pub jobs_dlq: Option<String>,
    /// The GPU worker's queue.
    pub gpu_queue: Option<String>,
    /// The GPU queue's dead-letter queue.
    pub gpu_dlq: Option<String>,
    /// Webhook deliveries.
    pub webhook_queue: Option<String>,
    /// Undeliverable webhooks.
    pub webhook_dlq: Option<String>,
    /// The CloudFront distribution in front of the outputs.
    pub cdn_distribution_id: Option<String>,
}

impl Resources {
    /// Reads the stack's outputs (when `--stack` is given), then applies the explicit options.
    pub async fn resolve(
        shared: &aws_config::SdkConfig,
        args: &ResourceArgs,
    ) -> anyhow::Result<Self> {
        let outputs = match &args.stack {
            Some(name) => imgpipe_delivery::stack::all_outputs(shared, name)
                .await
                .map_err(anyhow::Error::msg)?,
            None => HashMap::new(),
        };
        if args.stack.is_none()
            && args.bucket.is_none()
            && args.queue_url.is_none()
            && args.dlq_url.is_none()
        {
            bail!(
                "give --stack NAME, or the buckets and queues (--bucket, --queue-url, --dlq-url, ...)"
            );
        }
        let get = |key: &str| outputs.get(key).cloned();
        let pick = |given: &Option<String>, key: &str| given.clone().or_else(|| get(key));
        let ingest_bucket = pick(&args.bucket, "IngestBucketName");
        Ok(Self {
            output_bucket: pick(&args.output_bucket, "DerivativesBucketName")
                .or(ingest_bucket.clone()),
            ingest_bucket,
            ingest_prefix: get("IngestPrefix").unwrap_or_default(),
            manifest_prefix: get("ManifestPrefix").unwrap_or_default(),
            output_prefix: args
                .output_prefix
                .clone()
                .or_else(|| get("OutputPrefix"))
                .unwrap_or_else(|| "derived/".into()),
            jobs_queue: pick(&args.queue_url, "JobsQueueUrl"),
            jobs_dlq: pick(&args.dlq_url, "DlqUrl"),
            gpu_queue: pick(&args.gpu_queue_url, "GpuJobsQueueUrl"),
            gpu_dlq: pick(&args.gpu_dlq_url, "GpuDlqUrl"),
            webhook_queue: get("WebhookQueueUrl"),
            webhook_dlq: get("WebhookDlqUrl"),
            cdn_distribution_id: get("CdnDistributionId"),
        })
    }
}

/// `value`, or an error naming the option and the stack output that would give it.
pub fn required<'a>(
    value: &'a Option<String>,
    option: &str,
    output: &str,
) -> anyhow::Result<&'a str> {
    match value {
        Some(v) => Ok(v),
        None => bail!("no {option}: give it, or --stack NAME of a stack with the {output} output"),
    }
}

/// The AWS configuration and clients, as the SDK finds them in the environment.
pub struct Clients {
    /// Shared configuration (region, credentials, endpoint).
    pub shared: aws_config::SdkConfig,
    /// S3 (path-style with an endpoint override, as LocalStack needs).
    pub s3: aws_sdk_s3::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
}

impl Clients {
    /// Loads the AWS configuration from the environment and profile.
    pub async fn load() -> Self {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let endpoint_override = std::env::var_os("AWS_ENDPOINT_URL").is_some();
        Self {
            s3: imgpipe_cloud::store::client(&shared, endpoint_override),
            sqs: aws_sdk_sqs::Client::new(&shared),
            shared,
        }
    }
}
