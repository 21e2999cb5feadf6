//! Per-test environment: a fresh CloudFormation stack on LocalStack, SDK clients, and an in-process
//! worker (the same `worker::run` the `derive` binary calls) that can be stopped to read its counts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use imgpipe_cloud::webhook_sender::{Sender, WebhookConfig};
use imgpipe_cloud::worker::{self, WorkerOptions, WorkerStats};
use imgpipe_cloud::{Config, Handler};
use imgpipe_core::Metadata;
use tokio::sync::oneshot;

pub fn repo_root() -> PathBuf {
    Path::new(
        &std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for tests"),
    )
    .parent()
    .unwrap()
    .to_path_buf()
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("tests/fixtures/images").join(name)).unwrap()
}

pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

/// Credentials, region and endpoint for LocalStack.
pub fn aws_env() -> [(&'static str, String); 5] {
    [
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT_URL", endpoint()),
    ]
}

pub struct Stack {
    /// The CloudFormation stack's name (for `imgpipe … --stack`).
    pub name: String,
    pub ingest: String,
    pub derivatives: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub gpu_queue_url: String,
    pub gpu_dlq_url: String,
    pub events_topic: String,
    pub webhook_queue_url: String,
    pub webhook_dlq_url: String,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub ssm: aws_sdk_ssm::Client,
    /// Buckets made by [`Stack::archive_bucket`]: workers started afterwards accept them as
    /// sources (`IMGPIPE_BACKFILL_BUCKETS`), as an operator lists an archive for a backfill.
    pub archives: std::sync::Mutex<Vec<String>>,
}

/// Deploys `infra/template.yaml` (LocalMode) as a stack named after the test.
pub async fn setup(test_name: &str) -> Stack {
    // Worker logs on stderr (shown for failing tests); RUST_LOG=debug for more.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
    static AWS_ENV: std::sync::Once = std::sync::Once::new();
    AWS_ENV.call_once(|| {
        for (name, value) in aws_env() {
            // SAFETY: runs once, before any test of this binary reads the environment (the other
            // tests wait on the Once), and every later reader sees these constant values.
            unsafe { std::env::set_var(name, value) };
        }
    });
    let health = format!("{}/_localstack/health", endpoint());
    if ureq::get(&health).call().is_err() {
        panic!(
            "LocalStack does not answer at {health}; run the integration tests with `make test` (it starts LocalStack)"
        );
    }
    let stack = format!("it-{}-{}", test_name.replace('_', "-"), std::process::id());
    let python = std::env::var("IMGPIPE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".venv/bin/python"));
    // One deploy at a time: LocalStack 4.13's SAM transform pops AWS_DEFAULT_REGION from its own
    // process environment after each run, so concurrent transforms fail with "AWS Region cannot be found".
    static DEPLOY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let deploying = DEPLOY.lock().await;
    let output = tokio::process::Command::new(&python)
        .arg(repo_root().join("localstack/deploy.py"))
        .arg(&stack)
        .arg("LocalMode=true")
        .envs(aws_env())
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    drop(deploying);
    assert!(
        output.status.success(),
        "deploy failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let outputs: HashMap<String, String> =
        serde_json::from_slice(&output.stdout).expect("deploy prints outputs as JSON");
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    Stack {
        name: stack,
        ingest: outputs["IngestBucketName"].clone(),
        derivatives: outputs["DerivativesBucketName"].clone(),
        queue_url: outputs["JobsQueueUrl"].clone(),
        dlq_url: outputs["DlqUrl"].clone(),
        gpu_queue_url: outputs["GpuJobsQueueUrl"].clone(),
        gpu_dlq_url: outputs["GpuDlqUrl"].clone(),
        events_topic: outputs["EventsTopicArn"].clone(),
        webhook_queue_url: outputs["WebhookQueueUrl"].clone(),
        webhook_dlq_url: outputs["WebhookDlqUrl"].clone(),
        archives: std::sync::Mutex::new(Vec::new()),
        s3: imgpipe_cloud::store::client(&shared, true),
        sqs: aws_sdk_sqs::Client::new(&shared),
        sns: aws_sdk_sns::Client::new(&shared),
        ssm: aws_sdk_ssm::Client::new(&shared),
    }
}

pub struct RunningWorker {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<WorkerStats>,
}

impl RunningWorker {
    pub async fn stop(self) -> WorkerStats {
        let _ = self.stop.send(());
        self.task.await.expect("worker task")
    }
}

impl Stack {
    /// The worker's environment for this stack, with `overrides` applied.
    pub fn worker_env(&self, overrides: &[(&str, &str)]) -> HashMap<String, String> {
        let mut vars: HashMap<String, String> = [
            ("IMGPIPE_INGEST_BUCKET", self.ingest.clone()),
            (
                "IMGPIPE_BACKFILL_BUCKETS",
                self.archives.lock().unwrap().join(","),
            ),
            ("IMGPIPE_OUTPUT_BUCKET", self.derivatives.clone()),
            ("IMGPIPE_DLQ_URL", self.dlq_url.clone()),
            ("IMGPIPE_QUEUE_URL", self.queue_url.clone()),
            ("IMGPIPE_RETRY_BASE_SECONDS", "1".into()),
            ("IMGPIPE_CONCURRENCY", "2".into()),
            // The in-process workers would print EMF lines into the test output.
            ("IMGPIPE_METRICS", "off".into()),
            ("IMGPIPE_EVENTS_TOPIC_ARN", self.events_topic.clone()),
            ("AWS_ENDPOINT_URL", endpoint()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in overrides {
            vars.insert(k.to_string(), v.to_string());
        }
        vars
    }

    /// Starts the in-process worker with this stack's resources and `overrides` of its environment.
    pub async fn start_worker_with(&self, overrides: &[(&str, &str)]) -> RunningWorker {
        self.start_worker_on(&self.queue_url, overrides).await
    }

    /// Starts the in-process worker on `queue_url` (the jobs queue, or the GPU queue).
    pub async fn start_worker_on(
        &self,
        queue_url: &str,
        overrides: &[(&str, &str)],
    ) -> RunningWorker {
        self.start_worker_customised(queue_url, overrides, |h| h)
            .await
    }

    /// Starts the in-process worker on `queue_url` with its handler changed by `customise` (e.g.
    /// the URL importer's name resolution).
    pub async fn start_worker_customised(
        &self,
        queue_url: &str,
        overrides: &[(&str, &str)],
        customise: impl FnOnce(Handler) -> Handler,
    ) -> RunningWorker {
        let vars = self.worker_env(overrides);
        let config = Config::from_lookup(|k| vars.get(k).filter(|v| !v.is_empty()).cloned())
            .expect("config");
        let handler = Arc::new(customise(Handler::from_config(config).await));
        let options = WorkerOptions {
            queue_url: queue_url.to_string(),
            concurrency: 2,
            wait_time_seconds: 1,
            gather: None,
            gauges: Default::default(),
            visibility: Some(imgpipe_cloud::worker::DEFAULT_VISIBILITY),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(worker::run(handler, options, async move {
            let _ = stopped.await;
        }));
        RunningWorker { stop, task }
    }

    /// Starts the webhook sender in process (the same `worker::run` the `webhooks` binary calls) on
    /// this stack's webhook queue, delivering to `urls`.
    pub async fn start_webhook_sender(
        &self,
        urls: &str,
        overrides: &[(&str, &str)],
    ) -> RunningWorker {
        let mut vars: HashMap<String, String> = [
            ("IMGPIPE_WEBHOOK_URLS", urls.to_string()),
            ("IMGPIPE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_string()),
            ("IMGPIPE_WEBHOOK_QUEUE_URL", self.webhook_queue_url.clone()),
            ("IMGPIPE_WEBHOOK_DLQ_URL", self.webhook_dlq_url.clone()),
            ("IMGPIPE_WEBHOOK_RETRY_SCHEDULE", "1s,1s,1s,1s".into()),
            ("IMGPIPE_WEBHOOK_TIMEOUT_SECONDS", "5".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in overrides {
            vars.insert(k.to_string(), v.to_string());
        }
        let config = WebhookConfig::from_lookup(|k| vars.get(k).filter(|v| !v.is_empty()).cloned())
            .expect("webhook config");
        let sender = Arc::new(Sender::from_config(config).await.expect("webhook sender"));
        let options = WorkerOptions {
            queue_url: self.webhook_queue_url.clone(),
            concurrency: 4,
            wait_time_seconds: 1,
            gather: None,
            gauges: Default::default(),
            visibility: Some(imgpipe_cloud::worker::DEFAULT_VISIBILITY),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(worker::run(sender, options, async move {
            let _ = stopped.await;
        }));
        RunningWorker { stop, task }
    }

    /// A new SQS queue subscribed to the events topic with raw delivery (a "done queue"); with
    /// `event_type`, an SNS filter policy keeps only that type.
    pub async fn subscribe_queue(&self, name: &str, event_type: Option<&str>) -> String {
        self.subscribe_queue_to(&self.events_topic, name, event_type)
            .await
    }

    /// Like [`Stack::subscribe_queue`], on the topic `topic_arn`.
    pub async fn subscribe_queue_to(
        &self,
        topic_arn: &str,
        name: &str,
        event_type: Option<&str>,
    ) -> String {
        let url = self
            .sqs
            .create_queue()
            .queue_name(format!("{name}-{}", std::process::id()))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let arn = self
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
            .clone();
        let mut subscribe = self
            .sns
            .subscribe()
            .topic_arn(topic_arn)
            .protocol("sqs")
            .endpoint(arn)
            .attributes("RawMessageDelivery", "true");
        if let Some(event_type) = event_type {
            subscribe = subscribe.attributes(
                "FilterPolicy",
                serde_json::json!({ "imgpipe.event_type": [event_type] }).to_string(),
            );
        }
        subscribe.send().await.unwrap();
        url
    }

    /// Receives (and deletes) messages from `queue_url` until `expected` arrived, or `quiet` passed
    /// with nothing new after that; every body must be an event valid under the event schema.
    pub async fn events(
        &self,
        queue_url: &str,
        expected: usize,
        quiet: Duration,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut events = Vec::new();
        let mut last_new = Instant::now();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            for message in out.messages.unwrap_or_default() {
                let body = message.body().unwrap();
                assert_valid_event(body);
                events.push(serde_json::from_str(body).unwrap());
                last_new = Instant::now();
                self.sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
            if events.len() >= expected && last_new.elapsed() >= quiet {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {expected} events within 90 s: {events:?}",
                events.len()
            );
        }
    }

    /// Starts the worker writing its outputs to `output_bucket` (for misconfiguration tests).
    pub async fn start_worker_with_output(&self, output_bucket: &str) -> RunningWorker {
        self.start_worker_with(&[("IMGPIPE_OUTPUT_BUCKET", output_bucket)])
            .await
    }

    pub async fn start_worker(&self) -> RunningWorker {
        self.start_worker_with_output(&self.derivatives.clone())
            .await
    }

    /// A new bucket with no notification (a backfill's source, accepted by workers started
    /// afterwards), holding `files` (key, fixture name).
    pub async fn archive_bucket(&self, name: &str, files: &[(&str, &str)]) -> String {
        let bucket = self.other_bucket(name, files).await;
        self.archives.lock().unwrap().push(bucket.clone());
        bucket
    }

    /// A new bucket of the same account that is not this stack's source, holding `files`.
    pub async fn other_bucket(&self, name: &str, files: &[(&str, &str)]) -> String {
        let bucket = format!("it-{name}-{}", std::process::id());
        self.s3
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        for (key, file) in files {
            self.s3
                .put_object()
                .bucket(&bucket)
                .key(*key)
                .body(ByteStream::from(fixture(file)))
                .send()
                .await
                .unwrap();
        }
        bucket
    }

    /// Uploads `bytes` as `key` (image/jpeg) to the ingest bucket and returns the new object's ETag, unquoted.
    /// Deletes `bucket/key` (a user deleting a source, or an object lost by hand).
    pub async fn delete(&self, bucket: &str, key: &str) {
        self.s3
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
    }

    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> String {
        let out = self
            .s3
            .put_object()
            .bucket(&self.ingest)
            .key(key)
            .body(ByteStream::from(bytes))
            .content_type("image/jpeg")
            .send()
            .await
            .unwrap();
        out.e_tag().unwrap().trim_matches('"').to_string()
    }

    /// HeadObject on `bucket`/`key`; panics if it is missing.
    pub async fn head(
        &self,
        bucket: &str,
        key: &str,
    ) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
        self.s3
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("HeadObject {bucket}/{key}: {e}"))
    }

    /// The object tags of `bucket`/`key`, sorted.
    pub async fn tags(&self, bucket: &str, key: &str) -> Vec<(String, String)> {
        let out = self
            .s3
            .get_object_tagging()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetObjectTagging {bucket}/{key}: {e}"));
        let mut tags: Vec<(String, String)> = out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect();
        tags.sort();
        tags
    }

    /// The current ETag of `bucket`/`key`, unquoted, as S3 events carry it.
    pub async fn etag(&self, bucket: &str, key: &str) -> String {
        let head = self.head(bucket, key).await;
        head.e_tag().unwrap().trim_matches('"').to_string()
    }

    pub fn metadata_key(&self, source_key: &str) -> String {
        format!("derived/{source_key}/metadata.json")
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        match self.s3.get_object().bucket(bucket).key(key).send().await {
            Ok(out) => Some(out.body.collect().await.unwrap().into_bytes().to_vec()),
            Err(_) => None,
        }
    }

    /// Waits (up to 60 s) for the metadata document of `source_key` and returns it.
    pub async fn wait_for_metadata(&self, source_key: &str) -> Metadata {
        let key = self.metadata_key(source_key);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(bytes) = self.get(&self.derivatives, &key).await {
                assert_valid_metadata(&key, &bytes);
                return serde_json::from_slice(&bytes)
                    .unwrap_or_else(|e| panic!("{key} is not metadata: {e}"));
            }
            assert!(Instant::now() < deadline, "no {key} within 60 s");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Visible + in-flight messages of a queue.
    pub async fn depth(&self, queue_url: &str) -> u64 {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        self.count(
            queue_url,
            &[
                A::ApproximateNumberOfMessages,
                A::ApproximateNumberOfMessagesNotVisible,
            ],
        )
        .await
    }

    /// Messages waiting to be received (not those in flight).
    pub async fn visible(&self, queue_url: &str) -> u64 {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        self.count(queue_url, &[A::ApproximateNumberOfMessages])
            .await
    }

    /// The sum of the queue attributes `names` (counts, or a single value such as its visibility).
    pub async fn count(
        &self,
        queue_url: &str,
        names: &[aws_sdk_sqs::types::QueueAttributeName],
    ) -> u64 {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .set_attribute_names(Some(names.to_vec()))
            .send()
            .await
            .unwrap();
        out.attributes()
            .unwrap()
            .values()
            .map(|v| v.parse::<u64>().unwrap())
            .sum()
    }

    /// Waits until the jobs queue is empty (all messages deleted), then a moment more for stragglers.
    pub async fn wait_until_drained(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.depth(&self.queue_url).await > 0 {
            assert!(
                Instant::now() < deadline,
                "jobs queue not drained within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }

    /// Receives every message currently in the DLQ, with message attributes.
    pub async fn dlq_messages(&self, expected: usize) -> Vec<aws_sdk_sqs::types::Message> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut all = Vec::new();
        while all.len() < expected && Instant::now() < deadline {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.dlq_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .visibility_timeout(600)
                .message_attribute_names("All")
                .send()
                .await
                .unwrap();
            all.extend(out.messages.unwrap_or_default());
        }
        all
    }

    /// Sends a raw body to the jobs queue (to replay or fake a notification).
    pub async fn send_to_jobs(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
}

/// The `derive` binary built next to this test binary (`make test` builds it).
pub fn derive_binary() -> PathBuf {
    binary("derive", "imgpipe-derive")
}

/// The `api` binary built next to this test binary (`make test` builds it).
pub fn api_binary() -> PathBuf {
    binary("api", "imgpipe-api")
}

/// The `render` binary built next to this test binary (`make test` builds it).
pub fn render_binary() -> PathBuf {
    binary("render", "imgpipe-render")
}

/// The `gpu-worker` binary built next to this test binary (`make test` builds it).
pub fn gpu_worker_binary() -> PathBuf {
    binary("gpu-worker", "imgpipe-gpu-worker")
}

/// The `imgpipe` command built next to this test binary (`make test` builds it).
pub fn imgpipe_binary() -> PathBuf {
    binary("imgpipe", "imgpipe-cli")
}

fn binary(name: &str, package: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(Path::parent).unwrap().join(name);
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p {package}` (make test does)",
        path.display()
    );
    path
}

/// Decodes an output and returns (width, height).
pub fn dimensions(bytes: &[u8]) -> (u32, u32) {
    let header = imgpipe_core::probe::probe(bytes).expect("output is a readable image");
    (header.width, header.height)
}

/// The `sequencer` LocalStack 4.13 puts in every S3 event (a constant): a replayed duplicate carries
/// the same one as the original.
pub const LOCALSTACK_SEQUENCER: &str = "0055AED6DCD90281E5";

/// An `ObjectCreated:Put` body for `bucket/key` with `etag`, as S3 would send it (key form-encoded,
/// LocalStack's sequencer).
pub fn event_body(bucket: &str, key: &str, etag: &str, size: usize) -> String {
    let encoded: String = key
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-22T00:00:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "test"}, "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {}, "s3": {"s3SchemaVersion": "1.0", "configurationId": "replay",
        "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
        "object": {"key": encoded, "size": size, "eTag": etag, "sequencer": LOCALSTACK_SEQUENCER}}}]})
    .to_string()
}

/// The webhook signing secret the tests configure (Standard Webhooks' `whsec_` + base64).
pub const WEBHOOK_SECRET: &str = "whsec_C2FtcGxlLXNlY3JldC1mb3ItaW1ncGlwZS10ZXN0cw==";

/// Panics unless `body` is an event valid under the repository's event JSON Schema.
pub fn assert_valid_event(body: &str) {
    let schema: serde_json::Value =
        serde_json::from_str(imgpipe_core::events::JSON_SCHEMA).expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let event: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("event is not JSON: {e}: {body}"));
    let errors: Vec<String> = validator
        .iter_errors(&event)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "event violates the event schema:\n{}\n{body}",
        errors.join("\n")
    );
}

/// Panics unless `bytes` is a metadata document valid under the repository's JSON Schema.
pub fn assert_valid_metadata(key: &str, bytes: &[u8]) {
    let schema: serde_json::Value =
        serde_json::from_str(imgpipe_core::metadata::JSON_SCHEMA).expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let document: serde_json::Value =
        serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{key} is not JSON: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(&document)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{key} violates the metadata schema:\n{}",
        errors.join("\n")
    );
}
