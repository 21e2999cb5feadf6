//! The batch handler both drivers call: SQS messages in, one [`Outcome`] per message out.
//!
//! Per message: `parse body ⇒ for each record: skip test events, other event kinds and output keys ⇒
//! read metadata.json (or the tombstone) ⇒ order (an event older than the recorded one is ignored;
//! [`crate::ordering`]) ⇒ a removal deletes the outputs and writes a tombstone
//! ([`crate::deletion`]), then announces `imgpipe.image.deleted` ⇒ a creation: skip if already done
//! (same ETag, same preset hash), unless a copy gave the source a new focal point (then re-make
//! only the covers that follow it) ⇒ route (when a GPU queue is configured:
//! forward heavy jobs, fan manifests out, importing their URLs first) ⇒ fetch ⇒ process (blocking pool) ⇒ put derivatives ⇒ put
//! metadata.json last ⇒ delete outputs the preset set no longer makes ⇒ announce (publish the image event; for a manifest item, record its end and
//! publish `imgpipe.batch.done` after the last one)`. Permanent failures write a `failed` metadata
//! document, go to the DLQ with the reason, then are announced; transient ones are retried with
//! exponential backoff until `max_attempts`, then dead-lettered with the last reason. A record found
//! already done (or already failed for good) is announced again, with the same event id: that is
//! how a worker killed between writing metadata.json and publishing still gets its event out.
//! A permanent failure found again on a redelivered message (the worker was killed between the
//! failed document and its letter) is dead-lettered then: letters are sent at least once.
//!
//! This file is the message loop; the per-record decision is `handler/decide.rs`, and the flows
//! live beside it: `handler/upload.rs` (processing a source), `handler/refocus.rs` (a new focal
//! point: only the covers that follow it), `handler/removal.rs` (a removal's deletions and
//! tombstone), `handler/announce.rs` (events and CDN invalidations), `handler/manifests.rs`
//! (fan-out, summary, batch event) and `handler/imports.rs` (URL import jobs).

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::SqsMessage;
use imgpipe_core::events::{self, ManifestRef, ObjectRef, OutputRef};
use imgpipe_core::metadata::Status;
use imgpipe_core::route::{HEADER_PROBE_BYTES, Route};
use imgpipe_core::{Engine, Metadata, PresetSet, SourceRef};

use crate::admission::{Admitted, MemoryBudget};
use crate::batch::{self, BatchFunction, Outcome};
use crate::config::{Config, Routing};
use crate::deadline::ServiceTime;
use crate::deletion::{self, Tombstone};
use crate::effects::{Cdn, Clock, Effects, ObjectStore, Queues, Web};
use crate::event::{Notification, ObjectEvent, parse_body};
use crate::failure::Failure;
use crate::importer;
use crate::manifest;
use crate::metrics::{Metrics, RecordEnd};
use crate::notify::Notifier;
use crate::ordering::{self, Change, Decision, Recorded};
use crate::progress::{self, BatchItem, Completion, ItemEnd, Progress, Started};
use crate::queue::{self, DeadLetter};
use crate::source_status;
use crate::store;
use crate::url_policy;

mod announce;
mod decide;
mod imports;
mod manifests;
mod refocus;
mod removal;
mod upload;

/// HeadObject calls a manifest's fan-out makes at once (50 000 items: under 800 rounds).
const FANOUT_HEADS: usize = 64;

/// Under Lambda, time a fan-out keeps before the invocation's deadline: one more slice, the
/// continuation and the response.
const FANOUT_DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_secs(10);

enum RecordDone {
    /// Processed now: the metadata document written. `replaced`: the keys of an earlier upload's
    /// outputs that were overwritten or deleted, whose cached copies the CDN must forget.
    Processed {
        metadata: Box<Metadata>,
        replaced: Vec<String>,
        /// The clean-up after the document failed: the message is retried, the image is done.
        follow_up: Option<Failure>,
    },
    /// The source was removed: its outputs deleted, the tombstone written (or found, on redelivery).
    Deleted(Box<Tombstone>),
    /// Already done for this ETag and preset set: the existing document, and the failure of
    /// finishing a killed run's clean-up, if that failed (the message is retried).
    Skipped(Box<Metadata>, Option<Failure>),
    /// Already failed for good (and dead-lettered) for this ETag: the existing document.
    AlreadyFailed(Box<Metadata>),
    Forwarded,
    Ignored(String),
}

/// A record that did not finish, with the `failed` metadata document when one was written.
struct RecordError {
    failure: Failure,
    metadata: Option<Box<Metadata>>,
}

impl From<Failure> for RecordError {
    fn from(failure: Failure) -> Self {
        Self {
            failure,
            metadata: None,
        }
    }
}

/// Makes the resize engine of one blocking-pool thread (the CPU one, or the GPU worker's).
pub type EngineFactory = Arc<dyn Fn() -> Engine + Send + Sync>;

/// Clients and configuration, built once per process and shared by every invocation.
pub struct Handler {
    /// S3, through the [effect boundary](crate::effects).
    s3: Arc<dyn ObjectStore>,
    /// SQS sends, deletes and visibility, through the effect boundary.
    queues: Arc<dyn Queues>,
    /// The SDK client the drivers receive with (never used by the flows).
    driver_sqs: aws_sdk_sqs::Client,
    /// Present when `IMGPIPE_CDN_DISTRIBUTION_ID` is set: invalidates deleted outputs.
    cdn: Option<Arc<dyn Cdn>>,
    /// Stamps `processed_at` and `deleted_at`.
    clock: Arc<dyn Clock>,
    notifier: Notifier,
    metrics: Metrics,
    /// The web, for URL imports (the system's network; tests inject theirs).
    web: Arc<dyn Web>,
    config: Arc<Config>,
    engines: EngineFactory,
    /// Learned processing time per source MiB (deadline admission under Lambda).
    service_time: ServiceTime,
    /// Memory admission; `None` without a memory budget (`IMGPIPE_MEMORY_MIB`).
    memory: Option<MemoryBudget>,
}

thread_local! {
    /// One resize engine (with its scratch buffers) per blocking-pool thread, made on first use by
    /// the handler's [`EngineFactory`] (one backend per process).
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
}

impl Handler {
    /// Builds the handler from ready clients.
    pub fn new(
        s3: aws_sdk_s3::Client,
        sqs: aws_sdk_sqs::Client,
        sns: aws_sdk_sns::Client,
        config: Config,
    ) -> Self {
        Self::with_effects(Effects::aws(s3, sqs.clone(), sns, None), sqs, config)
    }

    /// Builds the handler on `effects` (the AWS executor, or the fault simulator's); `driver_sqs`
    /// is only what [`BatchFunction::sqs`] hands the drivers for receiving.
    pub fn with_effects(effects: Effects, driver_sqs: aws_sdk_sqs::Client, config: Config) -> Self {
        Self {
            s3: effects.store,
            queues: effects.queues,
            driver_sqs,
            cdn: effects.cdn,
            clock: effects.clock,
            notifier: Notifier::new(effects.topic, config.events_topic_arn.clone()),
            metrics: Metrics::new(config.metrics, &config.stack_name),
            web: effects.web,
            memory: config.memory_mib.map(|mib| {
                let resident = crate::admission::resident_bytes();
                let budget = MemoryBudget::new(mib, resident);
                tracing::info!(
                    process_mib = mib,
                    resident_mib = resident / (1024 * 1024),
                    images_mib = budget.images_mib(),
                    "memory admission on"
                );
                budget
            }),
            config: Arc::new(config),
            service_time: ServiceTime::new(),
            engines: Arc::new(Engine::default),
        }
    }

    /// Resolves URL-import host names through `network` (tests say what a name resolves to; the
    /// address checks apply all the same).
    pub fn with_network(mut self, network: Arc<dyn importer::Network>) -> Self {
        self.web = Arc::new(importer::NetworkWeb(network));
        self
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
        let sns = aws_sdk_sns::Client::new(&shared);
        let cloudfront = config
            .cdn_distribution_id
            .is_some()
            .then(|| aws_sdk_cloudfront::Client::new(&shared));
        Self::with_effects(Effects::aws(s3, sqs.clone(), sns, cloudfront), sqs, config)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The SQS client the drivers receive with.
    pub fn sqs(&self) -> &aws_sdk_sqs::Client {
        &self.driver_sqs
    }

    async fn settle(&self, message: &SqsMessage) -> Outcome {
        let message_id = message.message_id.as_deref().unwrap_or("");
        let body = message.body.as_deref().unwrap_or("");
        let receive_count = batch::receive_count(message);
        // Back from the DLQ by an operator's hand: `imgpipe dlq redrive` marks the job; SQS's own
        // move task keeps the dead letter's attributes, so its failure kind says the same.
        let redriven = [queue::attributes::REDRIVEN, queue::attributes::ERROR_KIND]
            .iter()
            .any(|name| message.message_attributes.contains_key(*name));
        let records = match parse_body(body) {
            Ok(Notification::Test) => {
                return Outcome::Ignored {
                    reason: "s3:TestEvent".into(),
                };
            }
            Ok(Notification::Records(records)) => {
                // Output keys depend on the source key only: a record of another bucket could
                // delete or overwrite this bucket's outputs. Refused before anything is read,
                // written, announced or deleted, the whole message with it.
                if let Some(foreign) = records
                    .iter()
                    .find(|r| !self.config.accepts_bucket(&r.bucket))
                {
                    let failure = Failure::permanent(
                        "foreign_bucket",
                        format!(
                            "s3://{}/{}: {}",
                            foreign.bucket,
                            foreign.key,
                            self.config.foreign_bucket_reason(&foreign.bucket)
                        ),
                    );
                    self.metrics.record(RecordEnd::Failed(&failure.kind), None);
                    return self
                        .dead_letter(body, failure, Some(foreign), receive_count, message_id)
                        .await;
                }
                records
            }
            Ok(Notification::Import(job)) => {
                return self
                    .settle_import(&job, body, receive_count, message_id)
                    .await;
            }
            Err(e) => {
                let failure = Failure::permanent("bad_message", e.to_string());
                self.metrics.record(RecordEnd::Failed(&failure.kind), None);
                return self
                    .dead_letter(body, failure, None, receive_count, message_id)
                    .await;
            }
        };
        let (mut processed, mut skipped, mut forwarded, mut ignored) = (0, 0, 0, Vec::new());
        let mut permanent: Vec<(RecordError, ObjectEvent)> = Vec::new();
        let mut transient: Option<(Failure, ObjectEvent)> = None;
        // The record ended (metadata written) but its announcement or clean-up failed: retry the
        // message, never fail the image.
        let mut unannounced: Option<Failure> = None;
        // Paths of outputs deleted in this message, invalidated on the CDN in one request.
        let mut stale: Vec<String> = Vec::new();
        for record in records {
            let result = self.handle_record(&record, redriven).await;
            self.count(&record, &result, receive_count);
            let ended = match result {
                Ok(RecordDone::Processed {
                    metadata,
                    replaced,
                    follow_up,
                }) => {
                    processed += 1;
                    if let Some(failure) = follow_up {
                        unannounced = unannounced.or(Some(failure));
                    }
                    if !replaced.is_empty() {
                        stale.extend(self.cdn_paths(&record.key, &replaced));
                    }
                    metadata
                }
                Ok(RecordDone::Deleted(tombstone)) => {
                    processed += 1;
                    stale.extend(self.cdn_paths(&tombstone.key, &tombstone.deleted_keys));
                    if let Err(failure) = self.announce_deletion(&tombstone).await {
                        unannounced = unannounced.or(Some(failure));
                    }
                    continue;
                }
                Ok(RecordDone::Skipped(metadata, follow_up)) => {
                    skipped += 1;
                    if let Some(failure) = follow_up {
                        unannounced = unannounced.or(Some(failure));
                    }
                    metadata
                }
                // The same message again (a crash after the failed document was written, before
                // its letter went out, or a retry for another record of the message): its letter
                // is sent again, so every bad file has one. A letter may go out twice; `dlq list`
                // counts letters by (key, ETag).
                Ok(RecordDone::AlreadyFailed(metadata)) if receive_count > 1 => {
                    let (kind, message) = metadata.error.as_ref().map_or_else(
                        || {
                            (
                                "failed".to_string(),
                                "failed (recorded in metadata.json)".to_string(),
                            )
                        },
                        |e| (e.kind.clone(), e.message.clone()),
                    );
                    let failure = Failure::permanent(&kind, message);
                    permanent.push((
                        RecordError {
                            failure,
                            metadata: Some(metadata),
                        },
                        record,
                    ));
                    continue;
                }
                Ok(RecordDone::AlreadyFailed(metadata)) => {
                    ignored.push(format!(
                        "{} already failed permanently and was dead-lettered",
                        record.key
                    ));
                    metadata
                }
                Ok(RecordDone::Forwarded) => {
                    forwarded += 1;
                    continue;
                }
                Ok(RecordDone::Ignored(reason)) => {
                    ignored.push(reason);
                    continue;
                }
                Err(e) if e.failure.retryable => {
                    transient = transient.or(Some((e.failure, record)));
                    continue;
                }
                Err(e) => {
                    permanent.push((e, record));
                    continue;
                }
            };
            if let Err(failure) = self.announce(&record, &ended).await {
                unannounced = unannounced.or(Some(failure));
            }
        }
        if let Err(failure) = self.invalidate(&stale).await {
            unannounced = unannounced.or(Some(failure));
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
            let failed = match self.record_exhausted(&record, &failure).await {
                Ok(failed) => failed.map(|m| (record.clone(), Box::new(m))),
                Err(done) => {
                    // Another delivery finished it: announce it, as a skip would.
                    return match self.announce(&record, &done).await {
                        Ok(()) => Outcome::Done {
                            processed: 0,
                            skipped: 1,
                            forwarded: 0,
                        },
                        Err(failure) => {
                            self.retry_announcement(body, failure, receive_count, message_id)
                                .await
                        }
                    };
                }
            };
            let outcome = self
                .dead_letter(body, failure, Some(&record), receive_count, message_id)
                .await;
            return self
                .announce_failures(outcome, failed.as_slice(), receive_count)
                .await;
        }
        if let Some((first, record)) = permanent.first() {
            let outcome = self
                .dead_letter(
                    body,
                    first.failure.clone(),
                    Some(record),
                    receive_count,
                    message_id,
                )
                .await;
            let mut failed = Vec::with_capacity(permanent.len());
            for (e, record) in permanent {
                let metadata = match e.metadata {
                    Some(metadata) => metadata,
                    None => Box::new(self.failed_metadata(&record, &e.failure)),
                };
                failed.push((record, metadata));
            }
            return self
                .announce_failures(outcome, &failed, receive_count)
                .await;
        }
        if let Some(failure) = unannounced {
            return self
                .retry_announcement(body, failure, receive_count, message_id)
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

    /// Writes the record's metrics line.
    fn count(
        &self,
        record: &ObjectEvent,
        result: &Result<RecordDone, RecordError>,
        receive_count: u32,
    ) {
        let end = match result {
            Ok(RecordDone::Processed { metadata, .. }) => RecordEnd::Processed(metadata),
            Ok(RecordDone::Deleted(_)) => RecordEnd::Deleted,
            Ok(RecordDone::Skipped(..)) => RecordEnd::Skipped,
            Ok(RecordDone::Forwarded) => RecordEnd::Forwarded,
            Ok(RecordDone::AlreadyFailed(_) | RecordDone::Ignored(_)) => return,
            Err(e) if e.failure.retryable && receive_count < self.config.max_attempts => {
                RecordEnd::Retried(&e.failure.kind)
            }
            Err(e) if e.failure.retryable => RecordEnd::Failed("retries_exhausted"),
            Err(e) => RecordEnd::Failed(&e.failure.kind),
        };
        self.metrics.record(end, record.event_time.as_deref());
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
        match queue::send_to_dlq(&*self.queues, &self.config.dlq_url, &letter).await {
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
}

impl BatchFunction for Handler {
    fn sqs(&self) -> &aws_sdk_sqs::Client {
        &self.driver_sqs
    }

    fn concurrency(&self) -> usize {
        self.config.concurrency
    }

    fn handle_message(&self, message: &SqsMessage) -> impl Future<Output = Outcome> + Send {
        self.settle(message)
    }

    /// The sources' sizes (from the event) at the learned time per MiB; a test event or an
    /// unreadable body needs nothing (it is settled at once).
    fn predicted_need(&self, message: &SqsMessage) -> Duration {
        match parse_body(message.body.as_deref().unwrap_or("")) {
            Ok(Notification::Records(records)) => self
                .service_time
                .predict(records.iter().filter_map(|r| r.size).sum()),
            Ok(Notification::Import(_)) => ServiceTime::FIXED + self.config.import.timeout,
            Ok(Notification::Test) | Err(_) => Duration::ZERO,
        }
    }
}

impl Handler {
    /// Now, RFC 3339 with milliseconds, from the handler's clock.
    fn now(&self) -> String {
        humantime::format_rfc3339_millis(self.clock.now()).to_string()
    }
}

fn elapsed_ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1e5).round() / 100.0
}
