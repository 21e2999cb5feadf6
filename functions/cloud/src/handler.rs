//! The batch handler both drivers call: SQS messages in, one [`Outcome`] per message out.
//!
//! Per message: `parse body ⇒ for each record: skip test events, non-creations and output keys ⇒
//! skip if already done (same ETag, same preset hash) ⇒ route (when a GPU queue is configured:
//! forward heavy jobs, fan manifests out) ⇒ fetch ⇒ process (blocking pool) ⇒ put derivatives ⇒ put
//! metadata.json last`. Permanent failures write a `failed` metadata document and
//! go to the DLQ with the reason; transient ones are retried with exponential backoff until
//! `max_attempts`, then dead-lettered with the last reason.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::SqsMessage;
use futures::StreamExt;
use imgpipe_core::route::{HEADER_PROBE_BYTES, Route};
use imgpipe_core::{Metadata, ResizeEngine, SourceRef};

use crate::config::{Config, Routing};
use crate::event::{Notification, ObjectEvent, parse_body};
use crate::failure::Failure;
use crate::manifest;
use crate::queue::{self, DeadLetter};
use crate::store;

/// What happened to one message. The driver deletes every message except [`Outcome::Retry`].
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// All records processed, forwarded or already done.
    Done {
        /// Records processed now.
        processed: usize,
        /// Records skipped because a `done` document for the same ETag and presets exists.
        skipped: usize,
        /// Records forwarded to the GPU queue (heavy sources, manifests fanned out).
        forwarded: usize,
    },
    /// Nothing to do (s3:TestEvent, deletions, keys under the output location).
    Ignored {
        /// Why.
        reason: String,
    },
    /// Failed permanently or ran out of attempts; sent to the DLQ with `failure`.
    DeadLettered {
        /// The reason written to the DLQ.
        failure: Failure,
    },
    /// Failed transiently; the message becomes visible again after `delay`.
    Retry {
        /// The reason.
        failure: Failure,
        /// Backoff before the next receive.
        delay: Duration,
    },
}

impl Outcome {
    /// True when the driver must leave the message on the queue.
    pub fn keeps_message(&self) -> bool {
        matches!(self, Outcome::Retry { .. })
    }
}

/// One message's result.
#[derive(Debug, Clone)]
pub struct MessageResult {
    /// SQS message id (the Lambda batch item identifier).
    pub message_id: String,
    /// Receipt handle (for delete / visibility).
    pub receipt_handle: Option<String>,
    /// What happened.
    pub outcome: Outcome,
}

enum RecordDone {
    Processed,
    Skipped,
    Forwarded,
    Ignored(String),
}

/// Makes the resize engine of one blocking-pool thread (the CPU one, or the GPU worker's).
pub type EngineFactory = Arc<dyn Fn() -> ResizeEngine + Send + Sync>;

/// Clients and configuration, built once per process and shared by every invocation.
pub struct Handler {
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    config: Arc<Config>,
    engines: EngineFactory,
}

thread_local! {
    /// One resize engine (with its scratch buffers) per blocking-pool thread, made on first use by
    /// the handler's [`EngineFactory`] (one backend per process).
    static ENGINE: RefCell<Option<ResizeEngine>> = const { RefCell::new(None) };
}

impl Handler {
    /// Builds the handler from ready clients.
    pub fn new(s3: aws_sdk_s3::Client, sqs: aws_sdk_sqs::Client, config: Config) -> Self {
        Self {
            s3,
            sqs,
            config: Arc::new(config),
            engines: Arc::new(ResizeEngine::default),
        }
    }

    /// Uses `engines` to make each thread's resize engine (the GPU worker passes its backend's).
    pub fn with_engines(mut self, engines: EngineFactory) -> Self {
        self.engines = engines;
        self
    }

    /// Loads AWS configuration from the environment (region, credentials, `AWS_ENDPOINT_URL`) and
    /// builds the clients.
    pub async fn from_config(config: Config) -> Self {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let s3 = store::client(&shared, config.endpoint_url.is_some());
        let sqs = aws_sdk_sqs::Client::new(&shared);
        Self::new(s3, sqs, config)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The SQS client.
    pub fn sqs(&self) -> &aws_sdk_sqs::Client {
        &self.sqs
    }

    /// The S3 client.
    pub fn s3(&self) -> &aws_sdk_s3::Client {
        &self.s3
    }

    /// Handles a batch: messages run concurrently (up to `concurrency`), each independently.
    pub async fn handle_batch(&self, messages: Vec<SqsMessage>) -> Vec<MessageResult> {
        futures::stream::iter(messages)
            .map(|message| async move {
                let outcome = self.handle_message(&message).await;
                MessageResult {
                    message_id: message.message_id.clone().unwrap_or_default(),
                    receipt_handle: message.receipt_handle.clone(),
                    outcome,
                }
            })
            .buffer_unordered(self.config.concurrency)
            .collect()
            .await
    }

    /// Applies retry backoff to the messages that stay on `queue_url` (both drivers call this).
    pub async fn apply_backoff(&self, queue_url: &str, results: &[MessageResult]) {
        for result in results {
            if let (Outcome::Retry { delay, .. }, Some(handle)) =
                (&result.outcome, &result.receipt_handle)
                && let Err(e) = queue::set_visibility(&self.sqs, queue_url, handle, *delay).await
            {
                tracing::warn!(message_id = %result.message_id, error = %e, "could not set retry backoff; the queue's visibility timeout applies");
            }
        }
    }

    async fn handle_message(&self, message: &SqsMessage) -> Outcome {
        let message_id = message.message_id.as_deref().unwrap_or("");
        let body = message.body.as_deref().unwrap_or("");
        let receive_count: u32 = message
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let records = match parse_body(body) {
            Ok(Notification::Test) => {
                return Outcome::Ignored {
                    reason: "s3:TestEvent".into(),
                };
            }
            Ok(Notification::Records(records)) => records,
            Err(e) => {
                let failure = Failure::permanent("bad_message", e.to_string());
                return self
                    .dead_letter(body, failure, None, receive_count, message_id)
                    .await;
            }
        };
        let (mut processed, mut skipped, mut forwarded, mut ignored) = (0, 0, 0, Vec::new());
        let mut permanent: Option<(Failure, ObjectEvent)> = None;
        let mut transient: Option<(Failure, ObjectEvent)> = None;
        for record in records {
            match self.handle_record(&record).await {
                Ok(RecordDone::Processed) => processed += 1,
                Ok(RecordDone::Skipped) => skipped += 1,
                Ok(RecordDone::Forwarded) => forwarded += 1,
                Ok(RecordDone::Ignored(reason)) => ignored.push(reason),
                Err(f) if f.retryable => transient = transient.or(Some((f, record))),
                Err(f) => permanent = permanent.or(Some((f, record))),
            }
        }
        if let Some((failure, record)) = transient {
            if receive_count < self.config.max_attempts {
                let delay = self.config.retry_delay(receive_count);
                tracing::warn!(message_id, key = %record.key, receive_count, delay_s = delay.as_secs(), error = %failure, "transient failure; will retry");
                return Outcome::Retry { failure, delay };
            }
            let failure = Failure {
                kind: "retries_exhausted".into(),
                message: format!("gave up after {receive_count} attempts; last error: {failure}"),
                retryable: true,
            };
            self.write_failed_metadata(&record, &failure).await;
            return self
                .dead_letter(body, failure, Some(&record), receive_count, message_id)
                .await;
        }
        if let Some((failure, record)) = permanent {
            return self
                .dead_letter(body, failure, Some(&record), receive_count, message_id)
                .await;
        }
        if processed + skipped + forwarded == 0 {
            return Outcome::Ignored {
                reason: ignored.join("; "),
            };
        }
        Outcome::Done {
            processed,
            skipped,
            forwarded,
        }
    }

    async fn dead_letter(
        &self,
        body: &str,
        failure: Failure,
        record: Option<&ObjectEvent>,
        receive_count: u32,
        message_id: &str,
    ) -> Outcome {
        let letter = DeadLetter {
            body,
            failure: &failure,
            source: record.map(|r| (r.bucket.as_str(), r.key.as_str())),
            receive_count,
            message_id,
        };
        match queue::send_to_dlq(&self.sqs, &self.config.dlq_url, &letter).await {
            Ok(()) => {
                tracing::error!(message_id, key = record.map(|r| r.key.as_str()), kind = %failure.kind, error = %failure.message, "dead-lettered");
                Outcome::DeadLettered { failure }
            }
            // The DLQ is unreachable: keep the message (nothing is lost) and retry later.
            Err(send_error) => Outcome::Retry {
                delay: self.config.retry_delay(receive_count),
                failure: send_error,
            },
        }
    }

    async fn handle_record(&self, record: &ObjectEvent) -> Result<RecordDone, Failure> {
        let config = &self.config;
        if !record.is_created() {
            return Ok(RecordDone::Ignored(format!(
                "{} is not an object creation",
                record.event_name
            )));
        }
        if record.bucket == config.output_bucket && config.layout.contains(&record.key) {
            tracing::warn!(key = %record.key, "event for a key under the output location ignored; check the bucket notification's prefix");
            return Ok(RecordDone::Ignored(format!(
                "{} is under the output location",
                record.key
            )));
        }
        let metadata_key = config.layout.metadata_key(&record.key);
        if let Some(etag) = &record.etag
            && let Some(existing) =
                store::get_metadata(&self.s3, &config.output_bucket, &metadata_key).await?
        {
            if existing.is_done_for(etag, config.presets.hash()) {
                tracing::info!(key = %record.key, "already done for this ETag and preset set; skipped");
                return Ok(RecordDone::Skipped);
            }
            if existing.is_failed_permanently_for(etag, config.presets.hash()) {
                return Ok(RecordDone::Ignored(format!(
                    "{} already failed permanently and was dead-lettered",
                    record.key
                )));
            }
        }
        if let Some(routing) = &config.routing {
            match self.route(record, routing).await? {
                Route::Cpu => {}
                Route::Gpu(reason) => {
                    let reason = reason.to_string();
                    queue::forward(
                        &self.sqs,
                        &routing.gpu_queue_url,
                        &record.to_body(),
                        &reason,
                    )
                    .await?;
                    tracing::info!(key = %record.key, reason, "forwarded to the GPU queue");
                    return Ok(RecordDone::Forwarded);
                }
                Route::Manifest => return self.fan_out(record, routing).await,
            }
        }
        self.process_record(record, &metadata_key).await
    }

    /// Decides CPU or GPU for `record`; reads the first bytes of the object only when the pixel rule
    /// needs them (or the event carried no size).
    async fn route(&self, record: &ObjectEvent, routing: &Routing) -> Result<Route, Failure> {
        use imgpipe_core::route::KeyDecision;
        if let Some(size) = record.size
            && let KeyDecision::Decided(route) = routing.rule.route_by_key(&record.key, size)
        {
            return Ok(route);
        }
        let (head, total) =
            store::get_head(&self.s3, &record.bucket, &record.key, HEADER_PROBE_BYTES).await?;
        let size = total.or(record.size).unwrap_or(head.len() as u64);
        Ok(routing.rule.route(&record.key, size, Some(&head)))
    }

    /// Sends one manifest item to the GPU queue; `missing` when the object does not exist.
    async fn queue_item(
        &self,
        item: &manifest::Item,
        queue_url: &str,
        reason: &str,
    ) -> Result<&'static str, Failure> {
        let Some((size, etag)) = store::head(&self.s3, &item.bucket, &item.key).await? else {
            return Ok("missing");
        };
        let job = ObjectEvent {
            event_name: "ObjectCreated:Manifest".into(),
            bucket: item.bucket.clone(),
            key: item.key.clone(),
            size: Some(size),
            etag,
        };
        queue::forward(&self.sqs, queue_url, &job.to_body(), reason).await?;
        Ok("queued")
    }

    /// Reads a manifest, sends one GPU job per listed object that exists (with its size and ETag, so
    /// the GPU worker's idempotency check applies), and writes `summary.json` beside the outputs:
    /// per item `queued` (with the key of the metadata.json that will hold its outcome), `missing` or
    /// `rejected` with the reason.
    async fn fan_out(
        &self,
        record: &ObjectEvent,
        routing: &Routing,
    ) -> Result<RecordDone, Failure> {
        let config = &self.config;
        let (bytes, total) = store::get_head(
            &self.s3,
            &record.bucket,
            &record.key,
            manifest::MAX_MANIFEST_BYTES + 1,
        )
        .await?;
        let parsed = if total.is_some_and(|t| t > manifest::MAX_MANIFEST_BYTES) {
            Err(format!(
                "manifest is over the {}-byte limit; split it",
                manifest::MAX_MANIFEST_BYTES
            ))
        } else {
            manifest::parse(&bytes, &record.bucket)
        };
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(message) => {
                let failure = Failure::permanent("bad_manifest", message);
                self.write_failed_metadata(record, &failure).await;
                return Err(failure);
            }
        };
        let reason = format!("listed in manifest s3://{}/{}", record.bucket, record.key);
        let mut statuses = Vec::with_capacity(parsed.items.len());
        for chunk in parsed.items.chunks(16) {
            let sent = futures::future::join_all(
                chunk
                    .iter()
                    .map(|item| self.queue_item(item, &routing.gpu_queue_url, &reason)),
            )
            .await;
            for (item, status) in chunk.iter().zip(sent) {
                statuses.push((item, status?));
            }
        }
        let mut items: Vec<serde_json::Value> = statuses
            .iter()
            .map(|(item, status)| {
                let mut entry =
                    serde_json::json!({"bucket": item.bucket, "key": item.key, "status": status});
                if *status == "queued" {
                    // Where the item's outcome will be: its own metadata document.
                    entry["metadata_key"] = config.layout.metadata_key(&item.key).into();
                }
                entry
            })
            .collect();
        items.extend(parsed.rejected.iter().map(
            |r| serde_json::json!({"entry": r.entry, "status": "rejected", "reason": r.reason}),
        ));
        let queued = statuses.iter().filter(|(_, s)| *s == "queued").count();
        let summary = serde_json::json!({
            "schema": "imgpipe.manifest-summary/v1",
            "manifest": {"bucket": record.bucket, "key": record.key, "etag": record.etag},
            "output_bucket": config.output_bucket,
            "queued": queued,
            "missing": statuses.len() - queued,
            "rejected": parsed.rejected.len(),
            "items": items,
            "written_at": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        });
        let key = config.layout.derivative_key(&record.key, "summary", "json");
        store::put(
            &self.s3,
            &config.output_bucket,
            &key,
            serde_json::to_vec_pretty(&summary).expect("summary serialises"),
            "application/json",
            &config.metadata_cache_control,
        )
        .await?;
        tracing::info!(manifest = %record.key, queued, rejected = parsed.rejected.len(), "manifest fanned out to the GPU queue");
        Ok(RecordDone::Forwarded)
    }

    async fn process_record(
        &self,
        record: &ObjectEvent,
        metadata_key: &str,
    ) -> Result<RecordDone, Failure> {
        let config = Arc::clone(&self.config);
        let started = Instant::now();
        let fetched =
            match store::get_source(&self.s3, &record.bucket, &record.key, &config.limits).await {
                Ok(fetched) => fetched,
                Err(failure) => {
                    if !failure.retryable {
                        self.write_failed_metadata(record, &failure).await;
                    }
                    return Err(failure);
                }
            };
        let fetch_ms = elapsed_ms(started);
        let source = SourceRef {
            bucket: record.bucket.clone(),
            key: record.key.clone(),
            etag: fetched.etag.clone().or(record.etag.clone()),
        };
        let job_config = Arc::clone(&config);
        let engines = Arc::clone(&self.engines);
        let result = tokio::task::spawn_blocking(move || {
            ENGINE.with_borrow_mut(|slot| {
                let engine = slot.get_or_insert_with(|| engines());
                let failures_before = engine.backend_failures().0;
                let result = imgpipe_core::process(
                    &fetched.bytes,
                    &source,
                    &job_config.presets,
                    &job_config.pipeline_options(),
                    engine,
                );
                if let (failures, Some(error)) = engine.backend_failures()
                    && failures > failures_before
                {
                    tracing::warn!(key = %source.key, backend = engine.backend_name(), failures = failures - failures_before, error, "resize backend failed; those resizes ran on the CPU");
                }
                result
            })
        })
        .await
        .map_err(|e| Failure::transient("internal", format!("processing task failed: {e}")))?;
        let processed = match result {
            Ok(processed) => processed,
            Err(failed) => {
                let mut metadata = failed.metadata;
                metadata.timings_ms.fetch = fetch_ms;
                self.put_metadata(metadata_key, metadata).await?;
                return Err(Failure::from(&failed.error));
            }
        };
        let put_started = Instant::now();
        let uploads = processed.derivatives.into_iter().map(|d| {
            let s3 = &self.s3;
            let bucket = &config.output_bucket;
            let cache_control = &config.cache_control;
            async move {
                store::put(
                    s3,
                    bucket,
                    &d.key,
                    d.bytes,
                    d.format.content_type(),
                    cache_control,
                )
                .await
            }
        });
        futures::future::try_join_all(uploads).await?;
        let mut metadata = processed.metadata;
        metadata.timings_ms.fetch = fetch_ms;
        metadata.timings_ms.put = elapsed_ms(put_started);
        metadata.timings_ms.total = elapsed_ms(started);
        // Written last: its presence with status `done` is what makes a duplicate event a no-op.
        self.put_metadata(metadata_key, metadata).await?;
        tracing::info!(key = %record.key, ms = elapsed_ms(started), "done");
        Ok(RecordDone::Processed)
    }

    async fn write_failed_metadata(&self, record: &ObjectEvent, failure: &Failure) {
        let source = imgpipe_core::metadata::SourceInfo {
            bucket: record.bucket.clone(),
            key: record.key.clone(),
            etag: record.etag.clone(),
            bytes: record.size,
            ..Default::default()
        };
        let mut metadata = Metadata::new(source, self.config.presets.hash());
        metadata.fail(&failure.kind, &failure.message, failure.retryable);
        let key = self.config.layout.metadata_key(&record.key);
        if let Err(e) = self.put_metadata(&key, metadata).await {
            tracing::warn!(key, error = %e, "could not write the failed metadata document");
        }
    }

    async fn put_metadata(&self, key: &str, mut metadata: Metadata) -> Result<(), Failure> {
        metadata.processed_at =
            Some(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string());
        let json = serde_json::to_vec_pretty(&metadata).expect("metadata serialises");
        store::put(
            &self.s3,
            &self.config.output_bucket,
            key,
            json,
            "application/json",
            &self.config.metadata_cache_control,
        )
        .await
    }
}

fn elapsed_ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1e5).round() / 100.0
}
