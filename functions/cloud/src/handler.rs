//! The batch handler both drivers call: SQS messages in, one [`Outcome`] per message out.
//!
//! Per message: `parse body ⇒ for each record: skip test events, other event kinds and output keys ⇒
//! read metadata.json (or the tombstone) ⇒ order (an event older than the recorded one is ignored;
//! [`crate::ordering`]) ⇒ a removal deletes the outputs and writes a tombstone
//! ([`crate::deletion`]), then announces `imgpipe.image.deleted` ⇒ a creation: skip if already done
//! (same ETag, same preset hash) ⇒ route (when a GPU queue is configured:
//! forward heavy jobs, fan manifests out, importing their URLs first) ⇒ fetch ⇒ process (blocking pool) ⇒ put derivatives ⇒ put
//! metadata.json last ⇒ delete outputs the preset set no longer makes ⇒ announce (publish the image event; for a manifest item, record its end and
//! publish `imgpipe.batch.done` after the last one)`. Permanent failures write a `failed` metadata
//! document, go to the DLQ with the reason, then are announced; transient ones are retried with
//! exponential backoff until `max_attempts`, then dead-lettered with the last reason. A record found
//! already done (or already failed for good) is announced again, with the same event id: that is
//! how a worker killed between writing metadata.json and publishing still gets its event out.

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::SqsMessage;
use imgpipe_core::events::{self, ManifestRef, ObjectRef, OutputRef};
use imgpipe_core::metadata::Status;
use imgpipe_core::route::{HEADER_PROBE_BYTES, Route};
use imgpipe_core::{Engine, Metadata, SourceRef};

use crate::admission::{Admitted, MemoryBudget};
use crate::batch::{self, BatchFunction, Outcome};
use crate::config::{Config, Routing};
use crate::deadline::ServiceTime;
use crate::deletion::{self, Tombstone};
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
    },
    /// The source was removed: its outputs deleted, the tombstone written (or found, on redelivery).
    Deleted(Box<Tombstone>),
    /// Already done for this ETag and preset set: the existing document.
    Skipped(Box<Metadata>),
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
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    /// Present when `IMGPIPE_CDN_DISTRIBUTION_ID` is set: invalidates deleted outputs.
    cloudfront: Option<aws_sdk_cloudfront::Client>,
    notifier: Notifier,
    metrics: Metrics,
    /// Name resolution for URL imports (the system's; tests inject theirs).
    network: Arc<dyn importer::Network>,
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
        Self {
            s3,
            sqs,
            cloudfront: None,
            notifier: Notifier::new(sns, config.events_topic_arn.clone()),
            metrics: Metrics::new(config.metrics, &config.stack_name),
            network: Arc::new(importer::SystemNetwork),
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
        self.network = network;
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
        Self {
            cloudfront,
            ..Self::new(s3, sqs, sns, config)
        }
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
        // The record ended (metadata written) but its announcement failed: retry the message, never
        // fail the image.
        let mut unannounced: Option<Failure> = None;
        // Paths of outputs deleted in this message, invalidated on the CDN in one request.
        let mut stale: Vec<String> = Vec::new();
        for record in records {
            let result = self.handle_record(&record, redriven).await;
            self.count(&record, &result, receive_count);
            let ended = match result {
                Ok(RecordDone::Processed { metadata, replaced }) => {
                    processed += 1;
                    if !replaced.is_empty() {
                        let dir = format!("{}{}/", self.config.layout.prefix, record.key);
                        let groups = self.config.presets.edge_groups();
                        stale.extend(crate::invalidation::paths(
                            &replaced,
                            &dir,
                            groups.keys().map(String::as_str),
                        ));
                    }
                    metadata
                }
                Ok(RecordDone::Deleted(tombstone)) => {
                    processed += 1;
                    let dir = format!("{}{}/", self.config.layout.prefix, tombstone.key);
                    let groups = self.config.presets.edge_groups();
                    stale.extend(crate::invalidation::paths(
                        &tombstone.deleted_keys,
                        &dir,
                        groups.keys().map(String::as_str),
                    ));
                    if let Err(failure) = self.announce_deletion(&tombstone).await {
                        unannounced = unannounced.or(Some(failure));
                    }
                    continue;
                }
                Ok(RecordDone::Skipped(metadata)) => {
                    skipped += 1;
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
            let metadata = Box::new(self.write_failed_metadata(&record, &failure).await);
            let outcome = self
                .dead_letter(body, failure, Some(&record), receive_count, message_id)
                .await;
            return self
                .announce_failures(outcome, &[(record, metadata)], receive_count)
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
            Ok(RecordDone::Skipped(_)) => RecordEnd::Skipped,
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

    /// After a message was dead-lettered, announces each failed record; when that fails the message
    /// is retried, and the retry finds the records already failed and announces them again.
    async fn announce_failures(
        &self,
        outcome: Outcome,
        failed: &[(ObjectEvent, Box<Metadata>)],
        receive_count: u32,
    ) -> Outcome {
        if !matches!(outcome, Outcome::DeadLettered { .. }) {
            return outcome;
        }
        for (record, metadata) in failed {
            if let Err(failure) = self.announce(record, metadata).await {
                let delay = self.config.retry_delay(receive_count);
                tracing::warn!(key = %record.key, error = %failure, "failure recorded and dead-lettered, but not announced; will retry the announcement");
                return Outcome::Retry { failure, delay };
            }
        }
        outcome
    }

    /// Every record ended but an announcement failed: retry with backoff, and after `max_attempts`
    /// dead-letter the message (`announce_failed`) so a redrive announces it; metadata stays as
    /// written.
    async fn retry_announcement(
        &self,
        body: &str,
        failure: Failure,
        receive_count: u32,
        message_id: &str,
    ) -> Outcome {
        if receive_count < self.config.max_attempts {
            let delay = self.config.retry_delay(receive_count);
            tracing::warn!(message_id, receive_count, delay_s = delay.as_secs(), error = %failure, "outputs written but the event was not published; will retry");
            return Outcome::Retry { failure, delay };
        }
        let failure = Failure {
            kind: "announce_failed".into(),
            message: format!(
                "outputs and metadata.json are written, but the event could not be published after {receive_count} attempts (redrive this message to publish it); last error: {failure}"
            ),
            retryable: true,
        };
        self.dead_letter(body, failure, None, receive_count, message_id)
            .await
    }

    /// Tells the world that `record` ended as `metadata` says: publishes its image event and, for a
    /// manifest item, records the item's end and publishes `imgpipe.batch.done` after the last one.
    /// Deterministic ids make repeating this harmless.
    async fn announce(&self, record: &ObjectEvent, metadata: &Metadata) -> Result<(), Failure> {
        let config = &self.config;
        let metadata_key = config.layout.metadata_key(&record.key);
        let event = events::image_event(
            metadata,
            &OutputRef {
                bucket: &config.output_bucket,
                metadata_key: &metadata_key,
                cdn_base_url: config.cdn_base_url.as_deref(),
            },
        );
        self.notifier.publish(&event).await?;
        let Some(batch) = &record.batch else {
            return Ok(());
        };
        let end = match metadata.status {
            Status::Done => ItemEnd::Done,
            Status::Failed => ItemEnd::Failed,
        };
        let key = self.progress_key(&batch.manifest.key);
        if let Some(completion) =
            progress::record_end(&self.s3, &config.output_bucket, &key, batch, end).await?
        {
            self.publish_batch_done(&batch.manifest, &completion)
                .await?;
        }
        Ok(())
    }

    /// Publishes `imgpipe.image.deleted`, built from the tombstone alone, so a redelivered removal
    /// repeats the same event.
    async fn announce_deletion(&self, tombstone: &Tombstone) -> Result<(), Failure> {
        let config = &self.config;
        let metadata_key = config.layout.metadata_key(&tombstone.key);
        let event = events::deleted_event(
            events::DeletedSource {
                bucket: tombstone.bucket.clone(),
                key: tombstone.key.clone(),
                sequencer: tombstone.sequencer.clone(),
                version_id: tombstone.version_id.clone(),
            },
            tombstone.deleted_keys.clone(),
            &OutputRef {
                bucket: &config.output_bucket,
                metadata_key: &metadata_key,
                cdn_base_url: config.cdn_base_url.as_deref(),
            },
            &tombstone.deleted_at,
        );
        self.notifier.publish(&event).await
    }

    /// Invalidates `paths` on the configured distribution (nothing without one, or no paths).
    async fn invalidate(&self, paths: &[String]) -> Result<(), Failure> {
        let (Some(cloudfront), Some(distribution)) =
            (&self.cloudfront, &self.config.cdn_distribution_id)
        else {
            return Ok(());
        };
        if paths.is_empty() {
            return Ok(());
        }
        let ids = crate::invalidation::invalidate(cloudfront, distribution, paths).await?;
        tracing::info!(distribution = %distribution, paths = paths.len(), invalidations = ?ids, "deleted outputs invalidated on the CDN");
        Ok(())
    }

    fn tombstone_key(&self, source_key: &str) -> String {
        format!(
            "{}{source_key}/{}",
            self.config.layout.prefix,
            deletion::TOMBSTONE
        )
    }

    /// The removal `record` won (see [`ordering`]): deletes every output of the key and writes the
    /// tombstone; a redelivery of the same removal keeps the tombstone it finds.
    async fn delete_record(
        &self,
        record: &ObjectEvent,
        existing: Option<Metadata>,
        tombstone: Option<Tombstone>,
    ) -> Result<RecordDone, RecordError> {
        let config = &self.config;
        let dir = format!("{}{}/", config.layout.prefix, record.key);
        let tombstone_key = self.tombstone_key(&record.key);
        let listed = existing
            .iter()
            .flat_map(|m| m.derivatives.iter().map(|d| d.key.clone()))
            .collect::<Vec<_>>();
        let deleted = deletion::delete_outputs(
            &self.s3,
            &config.output_bucket,
            &dir,
            listed,
            &tombstone_key,
        )
        .await?;
        let same_removal = tombstone.filter(|t| {
            t.sequencer == record.sequencer
                && t.version_id == record.version_id
                && deleted.is_empty()
        });
        let tombstone = match same_removal {
            Some(found) => found,
            None => {
                let tombstone = Tombstone {
                    schema: deletion::TOMBSTONE_SCHEMA.into(),
                    bucket: record.bucket.clone(),
                    key: record.key.clone(),
                    sequencer: record.sequencer.clone(),
                    version_id: record.version_id.clone(),
                    event_name: record.event_name.clone(),
                    deleted_at: now(),
                    deleted_keys: deleted,
                };
                store::put_tagging(
                    &self.s3,
                    &config.output_bucket,
                    &tombstone_key,
                    serde_json::to_vec_pretty(&tombstone).expect("tombstone serialises"),
                    "application/json",
                    &config.metadata_cache_control,
                    deletion::TOMBSTONE_TAGGING,
                )
                .await?;
                tombstone
            }
        };
        tracing::info!(key = %record.key, event = %record.event_name, deleted = tombstone.deleted_keys.len(), "source removed; its outputs deleted");
        Ok(RecordDone::Deleted(Box::new(tombstone)))
    }

    async fn publish_batch_done(
        &self,
        manifest: &ManifestRef,
        completion: &Completion,
    ) -> Result<(), Failure> {
        let config = &self.config;
        let summary_key = config
            .layout
            .derivative_key(&manifest.key, "summary", "json");
        let summary = ObjectRef {
            url: None, // summaries are not served by the CDN (they name sources and URLs)
            bucket: config.output_bucket.clone(),
            key: summary_key,
        };
        let event = events::batch_event(manifest, summary, completion.counts, &completion.ended_at);
        if completion.first {
            tracing::info!(manifest = %manifest.key, done = completion.counts.done, failed = completion.counts.failed, "every item of the manifest ended");
        }
        self.notifier.publish(&event).await
    }

    fn progress_key(&self, manifest_key: &str) -> String {
        self.config
            .layout
            .derivative_key(manifest_key, "progress", "json")
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

    /// Settles one record; `redriven`: the message came back from the DLQ by an operator's hand, so a
    /// recorded permanent failure is tried again.
    async fn handle_record(
        &self,
        record: &ObjectEvent,
        redriven: bool,
    ) -> Result<RecordDone, RecordError> {
        let config = &self.config;
        let change = record.change();
        if change == Change::Other {
            return Ok(RecordDone::Ignored(format!(
                "{} is not an object creation or removal",
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
        let existing = store::get_metadata(&self.s3, &config.output_bucket, &metadata_key).await?;
        // A tombstone matters only without metadata, and only to an event with a sequencer or a removal.
        let tombstone =
            if existing.is_none() && (record.sequencer.is_some() || change != Change::Created) {
                deletion::read_tombstone(
                    &self.s3,
                    &config.output_bucket,
                    &self.tombstone_key(&record.key),
                )
                .await?
            } else {
                None
            };
        let recorded = match (&existing, &tombstone) {
            (Some(m), _) => Recorded::Outputs {
                sequencer: m.source.sequencer.as_deref(),
                version_id: m.source.version_id.as_deref(),
            },
            (None, Some(t)) => Recorded::Deleted {
                sequencer: t.sequencer.as_deref(),
            },
            (None, None) => Recorded::Nothing,
        };
        match ordering::decide(
            change,
            record.sequencer.as_deref(),
            record.version_id.as_deref(),
            recorded,
        ) {
            Decision::Ignore(reason) => {
                tracing::info!(key = %record.key, event = %record.event_name, reason, "event ignored");
                return Ok(RecordDone::Ignored(format!("{}: {reason}", record.key)));
            }
            Decision::Delete => return self.delete_record(record, existing, tombstone).await,
            Decision::Process => {}
        }
        if let Some(etag) = &record.etag
            && let Some(existing) = &existing
        {
            if existing.is_done_for(etag, config.presets.hash()) {
                tracing::info!(key = %record.key, "already done for this ETag and preset set; skipped");
                return Ok(RecordDone::Skipped(Box::new(existing.clone())));
            }
            if !redriven && existing.is_failed_permanently_for(etag, config.presets.hash()) {
                return Ok(RecordDone::AlreadyFailed(Box::new(existing.clone())));
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
        self.process_record(record, &metadata_key, tombstone, existing.as_ref())
            .await
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

    /// Reads a manifest and fans it out: writes (or resumes) the manifest's progress, then works
    /// through the listed objects in slices from the progress's cursor: looks each one up (size and
    /// ETag, so the GPU worker's idempotency check applies), sends one GPU job per existing object
    /// (SendMessageBatch), each carrying the manifest and the object's position so its end is
    /// counted, and moves the cursor, marking the missing ones. Progress exists before any job is
    /// sent, so no item can end before it. Before the last slice's cursor moves, `summary.json` is
    /// written (per item `queued` with the key of the metadata.json that will hold its outcome,
    /// `missing`, or `rejected` with the reason), so the batch cannot complete before it exists.
    /// Out of time (`IMGPIPE_FANOUT_SECONDS`), it sends its own event back to the jobs queue and the
    /// next invocation goes on from the cursor. A manifest with nothing listed is done at once.
    async fn fan_out(
        &self,
        record: &ObjectEvent,
        routing: &Routing,
    ) -> Result<RecordDone, RecordError> {
        let config = &self.config;
        let fan_out_started = Instant::now();
        // Under Lambda, stop starting slices well before the invocation's deadline too.
        let budget = match crate::deadline::current() {
            Some(deadline) => config
                .fanout_budget
                .min(deadline.left().saturating_sub(FANOUT_DEADLINE_MARGIN)),
            None => config.fanout_budget,
        };
        // The version this event is about, not a newer one: a late continuation of an earlier
        // version must not fan the new content out under the old ETag.
        let Some((bytes, total)) = store::get_head_if(
            &self.s3,
            &record.bucket,
            &record.key,
            manifest::MAX_MANIFEST_BYTES + 1,
            record.etag.as_deref(),
        )
        .await?
        else {
            return Ok(RecordDone::Ignored(format!(
                "{} changed since this event; its newer version's event fans it out",
                record.key
            )));
        };
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
                let metadata = self.write_failed_metadata(record, &failure).await;
                return Err(RecordError {
                    failure,
                    metadata: Some(Box::new(metadata)),
                });
            }
        };
        // What the URL alone decides (scheme, allow-list) is refused here, at once; the rest
        // becomes import jobs.
        let mut parsed = parsed;
        manifest::refuse_buckets(
            &mut parsed,
            |bucket| config.accepts_bucket(bucket),
            |bucket| config.foreign_bucket_reason(bucket),
        );
        let mut imports: Vec<importer::ImportJob> = Vec::new();
        for (index, url) in parsed.urls.iter().enumerate() {
            let checked = url
                .parse::<reqwest::Url>()
                .map_err(|e| {
                    url_policy::Refusal::new(
                        "bad_url",
                        format!("'{}': {e}", url_policy::redact(url)),
                    )
                })
                .and_then(|u| {
                    url_policy::check_url(&u, &config.import.allow, config.import.allow_http)
                });
            match checked {
                Ok(_) => imports.push(importer::ImportJob {
                    url: url.clone(),
                    bucket: record.bucket.clone(),
                    manifest_key: record.key.clone(),
                    manifest_etag: record.etag.clone(),
                    index,
                    prefix: config.import_prefix.clone(),
                }),
                // Stored in summary.json: the URL without its query (tokens) or credentials.
                Err(refusal) => parsed.rejected.push(manifest::Rejected {
                    entry: url_policy::redact(url),
                    reason: url_policy::redact_in(&refusal.to_string()),
                }),
            }
        }
        let manifest_ref = ManifestRef {
            bucket: record.bucket.clone(),
            key: record.key.clone(),
            etag: record.etag.clone(),
        };
        let listed = &parsed.items;
        let progress_key = self.progress_key(&record.key);
        let (started, progress) = progress::begin(
            &self.s3,
            &config.output_bucket,
            &progress_key,
            Progress::new(
                manifest_ref.clone(),
                (listed.len() + parsed.rejected.len()) as u64,
                listed.iter().map(|i| (i.bucket.as_str(), i.key.as_str())),
                parsed.rejected.len() as u64,
            ),
        )
        .await?;
        let mut missing: Vec<bool> = (0..listed.len() as u64)
            .map(|i| progress.is_missing(i))
            .collect();
        // Import jobs go out with the first slice's invocation (not again on each continuation);
        // each is idempotent (its outcome document ends it), so a crash before the first cursor
        // move only sends them twice.
        if progress.sent == 0 && !matches!(started, Started::Resumed(Some(_))) {
            let import_bodies: Vec<String> =
                imports.iter().map(importer::ImportJob::to_body).collect();
            let reason = format!(
                "URL listed in manifest s3://{}/{}",
                record.bucket, record.key
            );
            queue::forward_batch(&self.sqs, &routing.gpu_queue_url, &import_bodies, &reason)
                .await?;
        }
        match started {
            // A redelivered manifest whose items all ended: only its event is repeated.
            Started::Resumed(Some(completion)) => {
                tracing::info!(manifest = %record.key, "manifest already fanned out and complete; batch event repeated");
                self.publish_batch_done(&manifest_ref, &completion).await?;
                return Ok(RecordDone::Forwarded);
            }
            Started::Resumed(None) => {}
            // Nothing listed: complete at once.
            Started::Fresh(Some(completion)) => {
                self.write_summary(record, listed, &missing, &parsed.rejected, &imports)
                    .await?;
                self.publish_batch_done(&manifest_ref, &completion).await?;
                return Ok(RecordDone::Forwarded);
            }
            Started::Fresh(None) => {}
        }
        let reason = format!("listed in manifest s3://{}/{}", record.bucket, record.key);
        let from = progress.sent as usize;
        let mut cursor = from;
        let (mut slices, mut sent, mut continued) = (0, 0, false);
        while cursor < listed.len() {
            if slices > 0
                && fan_out_started.elapsed() >= budget
                && let Some(jobs_queue) = &config.jobs_queue_url
            {
                // Out of time for this invocation: the manifest's own event goes back to the jobs
                // queue and the next invocation goes on from the cursor (a retry would count
                // against maxReceiveCount).
                queue::forward(
                    &self.sqs,
                    jobs_queue,
                    &record.to_body(),
                    "manifest fan-out continues",
                )
                .await?;
                continued = true;
                break;
            }
            let end = (cursor + config.fanout_slice).min(listed.len());
            let mut jobs = Vec::new();
            let mut missing_here = Vec::new();
            for chunk_start in (cursor..end).step_by(FANOUT_HEADS) {
                let chunk_end = (chunk_start + FANOUT_HEADS).min(end);
                let heads = futures::future::join_all(
                    listed[chunk_start..chunk_end]
                        .iter()
                        .map(|item| store::head(&self.s3, &item.bucket, &item.key)),
                )
                .await;
                for (position, head) in (chunk_start..chunk_end).zip(heads) {
                    let item = &listed[position];
                    match head? {
                        Some((size, etag)) => jobs.push(
                            ObjectEvent {
                                event_name: "ObjectCreated:Manifest".into(),
                                bucket: item.bucket.clone(),
                                key: item.key.clone(),
                                size: Some(size),
                                etag,
                                batch: Some(BatchItem {
                                    manifest: manifest_ref.clone(),
                                    item: position as u64,
                                }),
                                sequencer: None,
                                version_id: None,
                                event_time: None,
                            }
                            .to_body(),
                        ),
                        None => {
                            missing[position] = true;
                            missing_here.push(position as u64);
                        }
                    }
                }
            }
            queue::forward_batch(&self.sqs, &routing.gpu_queue_url, &jobs, &reason).await?;
            sent += jobs.len();
            slices += 1;
            if end == listed.len() {
                self.write_summary(record, listed, &missing, &parsed.rejected, &imports)
                    .await?;
            }
            match progress::advance(
                &self.s3,
                &config.output_bucket,
                &progress_key,
                &manifest_ref,
                end as u64,
                &missing_here,
            )
            .await?
            {
                progress::Advanced::Stale => {
                    tracing::info!(manifest = %record.key, "a newer version of the manifest took over; this fan-out stops");
                    return Ok(RecordDone::Forwarded);
                }
                // Every item had ended before the cursor reached the end: this write completes it.
                progress::Advanced::Moved(Some(completion)) => {
                    self.publish_batch_done(&manifest_ref, &completion).await?;
                }
                progress::Advanced::Moved(None) => {}
            }
            cursor = end;
        }
        let queued = missing.iter().filter(|m| !**m).count();
        tracing::info!(
            manifest = %record.key, queued, missing = listed.len() - queued,
            rejected = parsed.rejected.len(), urls = imports.len(), heads = cursor - from, sent,
            send_calls = sent.div_ceil(10), slices, continued, ms = elapsed_ms(fan_out_started),
            "manifest fanned out to the GPU queue"
        );
        Ok(RecordDone::Forwarded)
    }

    /// Settles one URL-import job: fetches the URL under the import policy, writes the file into
    /// the manifest's bucket (its S3 event processes it like an upload) and records the outcome at
    /// [`importer::outcome_key`]. A slow, unreachable or overloaded host is retried with backoff;
    /// after the last attempt, and for every other refusal, the outcome is `rejected` with the
    /// class and reason. A redelivered job whose outcome exists is done.
    async fn settle_import(
        &self,
        job: &importer::ImportJob,
        body: &str,
        receive_count: u32,
        message_id: &str,
    ) -> Outcome {
        let config = &self.config;
        if !config.accepts_bucket(&job.bucket) {
            let failure = Failure::permanent(
                "foreign_bucket",
                format!(
                    "import into s3://{}/{}: {}",
                    job.bucket,
                    job.prefix,
                    config.foreign_bucket_reason(&job.bucket)
                ),
            );
            self.metrics.record(RecordEnd::Failed(&failure.kind), None);
            return self
                .dead_letter(body, failure, None, receive_count, message_id)
                .await;
        }
        let outcome_key = importer::outcome_key(&config.layout, &job.manifest_key, job.index);
        let result = async {
            // An outcome of this job (same manifest version, same URL) ends it; one of another
            // version of the manifest is replaced, conditionally on its ETag.
            let existing = store::get_with_etag(&self.s3, &config.output_bucket, &outcome_key).await?;
            let mut replaces = None;
            if let Some((bytes, etag)) = existing {
                let found: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                if found["url_sha256"] == url_policy::url_id(&job.url).as_str()
                    && found["manifest"]["etag"] == serde_json::json!(job.manifest_etag)
                {
                    return Ok(None);
                }
                replaces = Some(etag);
            }
            let last_attempt = receive_count >= config.max_attempts;
            let entry = match self.import_url(job).await? {
                Ok(entry) => {
                    self.metrics.record(RecordEnd::Imported, None);
                    entry
                }
                Err(refusal) if refusal.is_transient() && !last_attempt => {
                    self.metrics
                        .record(RecordEnd::Retried(refusal.class), None);
                    return Err(Failure::transient(
                        &format!("import_{}", refusal.class),
                        url_policy::redact_in(&refusal.to_string()),
                    ));
                }
                Err(refusal) => {
                    self.metrics
                        .record(RecordEnd::ImportRefused(refusal.class), None);
                    let reason = url_policy::redact_in(&refusal.reason);
                    tracing::warn!(manifest = %job.manifest_key, url = %url_policy::redact(&job.url), class = refusal.class, reason, "URL refused");
                    serde_json::json!({
                        "status": "rejected", "class": refusal.class, "reason": reason,
                    })
                }
            };
            let mut outcome = serde_json::json!({
                "schema": "imgpipe.import/v1",
                "manifest": {"bucket": job.bucket, "key": job.manifest_key, "etag": job.manifest_etag},
                "index": job.index,
                // Without query or credentials (signed URLs carry tokens); the hash matches the
                // URL the app listed.
                "url": url_policy::redact(&job.url),
                "url_sha256": url_policy::url_id(&job.url),
                "attempts": receive_count,
                "at": now(),
            });
            if let (Some(outcome), Some(entry)) = (outcome.as_object_mut(), entry.as_object()) {
                outcome.extend(entry.clone());
            }
            // Conditional: when two copies of the job race, the first outcome stands.
            let written = store::put_if(
                &self.s3,
                &config.output_bucket,
                &outcome_key,
                serde_json::to_vec_pretty(&outcome).expect("outcome serialises"),
                "application/json",
                &config.metadata_cache_control,
                replaces.as_deref(),
            )
            .await?;
            Ok(written.then_some(outcome))
        }
        .await;
        match result {
            Ok(Some(outcome)) if outcome["status"] == "imported" => Outcome::Done {
                processed: 1,
                skipped: 0,
                forwarded: 0,
            },
            Ok(Some(outcome)) => Outcome::Ignored {
                reason: format!(
                    "{} refused: {}",
                    url_policy::redact(&job.url),
                    outcome["reason"]
                ),
            },
            Ok(None) => Outcome::Done {
                processed: 0,
                skipped: 1,
                forwarded: 0,
            },
            Err(failure) if receive_count < config.max_attempts => {
                let delay = config.retry_delay(receive_count);
                tracing::warn!(message_id, url = %url_policy::redact(&job.url), receive_count, delay_s = delay.as_secs(), error = %failure, "import failed for now; will retry");
                Outcome::Retry { failure, delay }
            }
            Err(failure) => {
                self.dead_letter(body, failure, None, receive_count, message_id)
                    .await
            }
        }
    }

    /// Fetches `job`'s URL and writes it into the manifest's bucket: `Ok(Ok(entry))` with the new
    /// key, `Ok(Err(refusal))` when the policy or the host said no, `Err` when the write failed.
    async fn import_url(
        &self,
        job: &importer::ImportJob,
    ) -> Result<Result<serde_json::Value, url_policy::Refusal>, Failure> {
        let config = &self.config;
        let fetched = match importer::fetch(&job.url, &config.import, &self.network).await {
            Ok(fetched) => fetched,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let key = importer::import_key(
            &job.prefix,
            &job.manifest_key,
            job.index,
            &job.url,
            fetched.format,
        );
        let bytes = fetched.bytes.len();
        let final_url = url_policy::redact(&fetched.final_url);
        store::put_tagged(
            &self.s3,
            &job.bucket,
            &key,
            fetched.bytes,
            &format!("image/{}", fetched.format.as_str()),
            // S3 user metadata is limited to 2 KB: a longer URL stays in the outcome only.
            &[("imgpipe-source-url", final_url.as_str())][..usize::from(final_url.len() <= 1024)],
        )
        .await?;
        tracing::info!(manifest = %job.manifest_key, url = %url_policy::redact(&job.url), key, bytes, address = %fetched.address, "URL imported");
        Ok(Ok(serde_json::json!({
            "status": "imported", "key": key,
            "metadata_key": config.layout.metadata_key(&key),
            "bytes": bytes, "final_url": final_url,
        })))
    }

    /// `summary.json` of a manifest: what happened to each entry at fan-out.
    async fn write_summary(
        &self,
        record: &ObjectEvent,
        listed: &[manifest::Item],
        missing: &[bool],
        rejected: &[manifest::Rejected],
        imports: &[importer::ImportJob],
    ) -> Result<(), Failure> {
        let config = &self.config;
        let mut items: Vec<serde_json::Value> = listed
            .iter()
            .zip(missing)
            .map(|(item, missing)| {
                let mut entry = serde_json::json!({"bucket": item.bucket, "key": item.key});
                if !missing {
                    entry["status"] = "queued".into();
                    // Where the item's outcome will be: its own metadata document.
                    entry["metadata_key"] = config.layout.metadata_key(&item.key).into();
                } else {
                    entry["status"] = "missing".into();
                }
                entry
            })
            .collect();
        items.extend(rejected.iter().map(
            |r| serde_json::json!({"entry": r.entry, "status": "rejected", "reason": r.reason}),
        ));
        items.extend(imports.iter().map(|job| {
            serde_json::json!({
                "entry": url_policy::redact(&job.url), "url_sha256": url_policy::url_id(&job.url),
                "status": "importing",
                // Where the import's outcome will be: imported (with its key), or rejected and why.
                "outcome_key": importer::outcome_key(&config.layout, &job.manifest_key, job.index),
            })
        }));
        let queued = missing.iter().filter(|m| !**m).count();
        let summary = serde_json::json!({
            "schema": "imgpipe.manifest-summary/v1",
            "manifest": {"bucket": record.bucket, "key": record.key, "etag": record.etag},
            "output_bucket": config.output_bucket,
            "queued": queued,
            "missing": listed.len() - queued,
            "rejected": rejected.len(),
            "importing": imports.len(),
            "progress_key": self.progress_key(&record.key),
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
        .await
    }

    /// Waits until the image in `bytes` fits the memory budget (predicted from its header); an
    /// image predicted over the whole budget fails as `over_limit`. Without a budget, admits at once.
    async fn admit(&self, record: &ObjectEvent, bytes: &[u8]) -> Result<Option<Admitted>, Failure> {
        let Some(budget) = &self.memory else {
            return Ok(None);
        };
        // A header the probe cannot read, or over the limits, fails in the pipeline with its own
        // reason, at once.
        let predicted =
            imgpipe_core::memory::predict_peak(bytes, &self.config.presets, &self.config.limits)
                .map_or(
                    bytes.len() as u64 + imgpipe_core::memory::FIXED_BYTES,
                    |p| p.bytes,
                );
        let waiting = Instant::now();
        let admitted = budget.admit(predicted).await?;
        tracing::debug!(key = %record.key, predicted_mib = admitted.mib, alone = admitted.alone, waited_ms = elapsed_ms(waiting), budget_mib = budget.images_mib(), "admitted");
        Ok(Some(admitted))
    }

    /// Fetches, processes and writes the outputs of `record`; `previous` is the key's metadata
    /// document before this run (its sequencer is kept when the job has none, as a backfill job or
    /// a manifest item, and its outputs that the new set no longer makes are deleted after the new
    /// document is written).
    async fn process_record(
        &self,
        record: &ObjectEvent,
        metadata_key: &str,
        tombstone: Option<Tombstone>,
        previous: Option<&Metadata>,
    ) -> Result<RecordDone, RecordError> {
        let config = Arc::clone(&self.config);
        let started = Instant::now();
        // The soak test (tests/soak) counts repeated work from these lines: a key started twice.
        tracing::debug!(key = %record.key, "processing");
        let fetched =
            match store::get_source(&self.s3, &record.bucket, &record.key, &config.limits).await {
                Ok(fetched) => fetched,
                Err(failure) if failure.retryable => return Err(failure.into()),
                Err(failure) => {
                    let metadata = self.write_failed_metadata(record, &failure).await;
                    return Err(RecordError {
                        failure,
                        metadata: Some(Box::new(metadata)),
                    });
                }
            };
        let fetch_ms = elapsed_ms(started);
        let admitted = match self.admit(record, &fetched.bytes).await {
            Ok(admitted) => admitted,
            Err(failure) => {
                let metadata = self.write_failed_metadata(record, &failure).await;
                return Err(RecordError {
                    failure,
                    metadata: Some(Box::new(metadata)),
                });
            }
        };
        let version_id = fetched.version_id.clone();
        let sequencer = record
            .sequencer
            .clone()
            .or_else(|| previous.and_then(|p| p.source.sequencer.clone()));
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
        if let Some(admitted) = admitted {
            // Logged before the memory is handed back, so no later "admitted" line precedes it.
            tracing::debug!(key = %record.key, mib = admitted.mib, "released");
            drop(admitted);
        }
        let processed = match result {
            Ok(processed) => processed,
            Err(failed) => {
                let mut metadata = failed.metadata;
                metadata.source.sequencer = sequencer;
                metadata.source.version_id = version_id;
                metadata.timings_ms.fetch = fetch_ms;
                self.put_metadata(metadata_key, &mut metadata).await?;
                self.mark_failed_source(record).await;
                return Err(RecordError {
                    failure: Failure::from(&failed.error),
                    metadata: Some(Box::new(metadata)),
                });
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
        metadata.source.sequencer = sequencer;
        metadata.source.version_id = version_id;
        if self.removed_meanwhile(record, tombstone.as_ref()).await? {
            let keys: Vec<String> = metadata.derivatives.iter().map(|d| d.key.clone()).collect();
            store::delete_keys(&self.s3, &config.output_bucket, &keys).await?;
            tracing::info!(key = %record.key, "the source was removed while it was processed; its new outputs deleted");
            return Ok(RecordDone::Ignored(format!(
                "{} was removed while it was processed",
                record.key
            )));
        }
        metadata.timings_ms.fetch = fetch_ms;
        metadata.timings_ms.put = elapsed_ms(put_started);
        metadata.timings_ms.total = elapsed_ms(started);
        // Before the document: a `done` document means the original no longer expires.
        self.mark_source(
            record,
            metadata.source.version_id.as_deref(),
            source_status::DONE,
        )
        .await?;
        // Written last: its presence with status `done` is what makes a duplicate event a no-op.
        self.put_metadata(metadata_key, &mut metadata).await?;
        if tombstone.is_some() {
            // A re-upload after a deletion: the tombstone has done its job.
            store::delete_keys(
                &self.s3,
                &config.output_bucket,
                &[self.tombstone_key(&record.key)],
            )
            .await?;
        }
        let replaced = self.drop_old_outputs(record, previous, &metadata).await?;
        self.service_time
            .observe(metadata.source.bytes.unwrap_or(0), started.elapsed());
        tracing::info!(key = %record.key, ms = elapsed_ms(started), "done");
        Ok(RecordDone::Processed {
            metadata: Box::new(metadata),
            replaced,
        })
    }

    /// After the new document is written: deletes the outputs that `current` no longer lists (a
    /// preset removed or renamed, a ladder rung no longer made): those `previous` lists, and, for a
    /// backfill job or a preset-set change, any other file directly in the key's output folder (a
    /// document lost or never written still leaves its outputs there). Returns the keys whose
    /// cached copies are now wrong when the source itself changed (a re-upload: every earlier and
    /// new key). A preset change alone returns none: a backfill re-processes thousands of images,
    /// and CloudFront allows 3 000 paths in progress, so `imgpipe backfill` invalidates the output
    /// prefix once at its end instead.
    async fn drop_old_outputs(
        &self,
        record: &ObjectEvent,
        previous: Option<&Metadata>,
        current: &Metadata,
    ) -> Result<Vec<String>, Failure> {
        let config = &self.config;
        let previous_done = previous.filter(|p| p.status == Status::Done);
        let mut candidates: Vec<String> = previous_done
            .iter()
            .flat_map(|p| p.derivatives.iter().map(|d| d.key.clone()))
            .collect();
        let preset_change = record.event_name == crate::backfill::EVENT_NAME
            || previous.is_some_and(|p| p.preset_set_hash != current.preset_set_hash);
        if preset_change {
            let dir = format!("{}{}/", config.layout.prefix, record.key);
            let documents = [
                config.layout.metadata_key(&record.key),
                self.tombstone_key(&record.key),
            ];
            candidates.extend(
                store::list_children(&self.s3, &config.output_bucket, &dir)
                    .await?
                    .into_iter()
                    .filter(|k| !documents.contains(k)),
            );
        }
        let kept: std::collections::HashSet<&str> =
            current.derivatives.iter().map(|d| d.key.as_str()).collect();
        let mut gone: Vec<String> = candidates
            .into_iter()
            .filter(|k| !kept.contains(k.as_str()))
            .collect();
        gone.sort();
        gone.dedup();
        if !gone.is_empty() {
            self.delete_unlisted(record, current, gone).await?;
        }
        let Some(previous) = previous_done else {
            return Ok(Vec::new());
        };
        let strip = |e: &String| e.trim_matches('"').to_string();
        if previous.source.etag.as_ref().map(strip) == current.source.etag.as_ref().map(strip) {
            return Ok(Vec::new());
        }
        Ok(previous
            .derivatives
            .iter()
            .chain(&current.derivatives)
            .map(|d| d.key.clone())
            .collect())
    }

    /// Deletes `gone`, the outputs `current` no longer lists, unless another run wrote the key's
    /// metadata.json since this one did (a newer upload processed concurrently: its outputs may
    /// carry the same names, and its own run cleans up). Best effort: a failed delete is logged
    /// with the keys and does not fail the record (a retry would find it done and skip it).
    async fn delete_unlisted(
        &self,
        record: &ObjectEvent,
        current: &Metadata,
        gone: Vec<String>,
    ) -> Result<(), Failure> {
        let config = &self.config;
        let metadata_key = config.layout.metadata_key(&record.key);
        let stored = store::get_metadata(&self.s3, &config.output_bucket, &metadata_key).await?;
        if stored.as_ref().map(|m| &m.processed_at) != Some(&current.processed_at) {
            tracing::info!(key = %record.key, "metadata.json was rewritten by another run meanwhile; leaving the cleanup to it");
            return Ok(());
        }
        match store::delete_keys(&self.s3, &config.output_bucket, &gone).await {
            Ok(()) => {
                tracing::info!(key = %record.key, deleted = gone.len(), "outputs of presets no longer in the set deleted")
            }
            Err(e) => {
                tracing::warn!(key = %record.key, keys = ?gone, error = %e, "could not delete outputs no longer in the set; they are orphaned (delete them by hand)")
            }
        }
        Ok(())
    }

    /// True when a removal of the key was recorded while `record` was being processed (a tombstone
    /// that was not there, or not this one, when processing started) and `record` is not newer.
    async fn removed_meanwhile(
        &self,
        record: &ObjectEvent,
        seen: Option<&Tombstone>,
    ) -> Result<bool, Failure> {
        let now = deletion::read_tombstone(
            &self.s3,
            &self.config.output_bucket,
            &self.tombstone_key(&record.key),
        )
        .await?;
        Ok(match now {
            Some(tombstone) if Some(&tombstone) != seen => {
                !matches!((&record.sequencer, &tombstone.sequencer),
                    (Some(ours), Some(theirs)) if ordering::compare(ours, theirs) == std::cmp::Ordering::Greater)
            }
            _ => false,
        })
    }

    /// Writes the `failed` document of `record` (logged, not returned, when the write fails: the
    /// message goes to the DLQ with the reason either way) and returns it.
    async fn write_failed_metadata(&self, record: &ObjectEvent, failure: &Failure) -> Metadata {
        let mut metadata = self.failed_metadata(record, failure);
        let key = self.config.layout.metadata_key(&record.key);
        if let Err(e) = self.put_metadata(&key, &mut metadata).await {
            tracing::warn!(key, error = %e, "could not write the failed metadata document");
        }
        if !failure.retryable {
            self.mark_failed_source(record).await;
        }
        metadata
    }

    /// Tags a source of the ingest bucket with its `imgpipe-status` (see [`source_status`]); other
    /// buckets' objects (backfill archives) are left as they are.
    async fn mark_source(
        &self,
        record: &ObjectEvent,
        version_id: Option<&str>,
        status: &str,
    ) -> Result<(), Failure> {
        if record.bucket != self.config.ingest_bucket {
            return Ok(());
        }
        let version_id = version_id.or(record.version_id.as_deref());
        source_status::mark(&self.s3, &record.bucket, &record.key, version_id, status).await
    }

    /// Best effort: a source whose tagging fails stays `pending`, which expires all the same.
    async fn mark_failed_source(&self, record: &ObjectEvent) {
        if let Err(e) = self.mark_source(record, None, source_status::FAILED).await {
            tracing::warn!(key = %record.key, error = %e.message, "could not tag the failed source; it stays pending (it expires either way)");
        }
    }

    /// The `failed` document of `record`, from what the event says about the source.
    fn failed_metadata(&self, record: &ObjectEvent, failure: &Failure) -> Metadata {
        let source = imgpipe_core::metadata::SourceInfo {
            bucket: record.bucket.clone(),
            key: record.key.clone(),
            etag: record.etag.clone(),
            bytes: record.size,
            sequencer: record.sequencer.clone(),
            version_id: record.version_id.clone(),
            ..Default::default()
        };
        let mut metadata = Metadata::new(source, self.config.presets.hash());
        metadata.fail(&failure.kind, &failure.message, failure.retryable);
        metadata.processed_at = Some(now());
        metadata
    }

    /// Stamps `processed_at` and writes the document.
    async fn put_metadata(&self, key: &str, metadata: &mut Metadata) -> Result<(), Failure> {
        metadata.processed_at = Some(now());
        store::put_document(
            &self.s3,
            &self.config.output_bucket,
            key,
            metadata,
            &self.config.metadata_cache_control,
        )
        .await
    }
}

impl BatchFunction for Handler {
    fn sqs(&self) -> &aws_sdk_sqs::Client {
        &self.sqs
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

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

fn elapsed_ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1e5).round() / 100.0
}
