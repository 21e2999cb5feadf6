//! Announcements: the image, deletion and failure events published after the documents are written
//! (their ids are deterministic, so a repeat is the same event), retried announcements, and CDN
//! invalidations of replaced or deleted outputs.

use super::*;

impl Handler {
    /// After a message was dead-lettered, announces each failed record; when that fails the message
    /// is retried, and the retry finds the records already failed and announces them again.
    pub(super) async fn announce_failures(
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
    pub(super) async fn retry_announcement(
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
                "outputs and metadata.json are written, but the event could not be published or the outputs it replaced deleted after {receive_count} attempts (redrive this message to finish it); last error: {failure}"
            ),
            retryable: true,
        };
        self.dead_letter(body, failure, None, receive_count, message_id)
            .await
    }

    /// Tells the world that `record` ended as `metadata` says: publishes its image event and, for a
    /// manifest item, records the item's end and publishes `imgpipe.batch.done` after the last one.
    /// Deterministic ids make repeating this harmless.
    pub(super) async fn announce(
        &self,
        record: &ObjectEvent,
        metadata: &Metadata,
    ) -> Result<(), Failure> {
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
            progress::record_end(&*self.s3, &config.output_bucket, &key, batch, end).await?
        {
            self.publish_batch_done(&batch.manifest, &completion)
                .await?;
        }
        Ok(())
    }

    /// Publishes `imgpipe.image.deleted`, built from the tombstone alone, so a redelivered removal
    /// repeats the same event.
    pub(super) async fn announce_deletion(&self, tombstone: &Tombstone) -> Result<(), Failure> {
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
    /// The CloudFront paths to forget for `keys`, outputs of source `source_key`: each key and the
    /// source's negotiated group paths ([`crate::invalidation::paths`]).
    pub(super) fn cdn_paths(&self, source_key: &str, keys: &[String]) -> Vec<String> {
        let dir = format!("{}{source_key}/", self.config.layout.prefix);
        let groups = self.config.presets.edge_groups();
        crate::invalidation::paths(keys, &dir, groups.keys().map(String::as_str))
    }

    pub(super) async fn invalidate(&self, paths: &[String]) -> Result<(), Failure> {
        let (Some(cloudfront), Some(distribution)) = (&self.cdn, &self.config.cdn_distribution_id)
        else {
            return Ok(());
        };
        if paths.is_empty() {
            return Ok(());
        }
        let ids = crate::invalidation::invalidate(&**cloudfront, distribution, paths).await?;
        tracing::info!(distribution = %distribution, paths = paths.len(), invalidations = ?ids, "deleted outputs invalidated on the CDN");
        Ok(())
    }
}
