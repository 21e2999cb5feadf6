//! The per-record decision: skip what is not imgpipe's (other event kinds, output keys), read
//! what is recorded for the key (metadata.json, the tombstone), order the event against it
//! ([`crate::ordering`]), then remove, re-make the covers of a done image whose source got a new
//! focal point, skip (already done: finishing a killed run's clean-up),
//! report an earlier permanent failure, forward to the GPU queue, fan a manifest out, or process.

use super::*;

impl Handler {
    /// Settles one record; `redriven`: the message came back from the DLQ by an operator's hand, so a
    /// recorded permanent failure is tried again.
    pub(super) async fn handle_record(
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
        let (existing, tombstone) = self.recorded(record).await?;
        match order(record, existing.as_ref(), tombstone.as_ref()) {
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
                if let Some(focus) = self.new_focus(record, existing).await? {
                    // A large image is re-made on the GPU worker, as its upload was.
                    if let Some(routing) = &config.routing
                        && let Route::Gpu(reason) = self.route(record, routing).await?
                    {
                        return self.forward_to_gpu(record, routing, reason).await;
                    }
                    return self.refocus(record, focus).await;
                }
                tracing::info!(key = %record.key, "already done for this ETag and preset set; skipped");
                let follow_up = match self.finish_superseded(record, existing).await {
                    Ok(()) => self.reinvalidate_focus(record, existing).await.err(),
                    Err(failure) => Some(failure),
                };
                return Ok(RecordDone::Skipped(Box::new(existing.clone()), follow_up));
            }
            if !redriven && existing.is_failed_permanently_for(etag, config.presets.hash()) {
                return Ok(RecordDone::AlreadyFailed(Box::new(existing.clone())));
            }
        }
        if let Some(routing) = &config.routing {
            match self.route(record, routing).await? {
                Route::Cpu => {}
                Route::Gpu(reason) => return self.forward_to_gpu(record, routing, reason).await,
                Route::Manifest => return self.fan_out(record, routing).await,
            }
        }
        let metadata_key = config.layout.metadata_key(&record.key);
        self.process_record(record, &metadata_key, tombstone, existing.as_ref())
            .await
    }

    /// Sends `record` on to the GPU queue, saying why.
    async fn forward_to_gpu(
        &self,
        record: &ObjectEvent,
        routing: &Routing,
        reason: impl std::fmt::Display,
    ) -> Result<RecordDone, RecordError> {
        let reason = reason.to_string();
        queue::forward(
            &*self.queues,
            &routing.gpu_queue_url,
            &record.to_body(),
            &reason,
        )
        .await?;
        tracing::info!(key = %record.key, reason, "forwarded to the GPU queue");
        Ok(RecordDone::Forwarded)
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
            store::get_head(&*self.s3, &record.bucket, &record.key, HEADER_PROBE_BYTES).await?;
        let size = total.or(record.size).unwrap_or(head.len() as u64);
        Ok(routing.rule.route(&record.key, size, Some(&head)))
    }

    /// What is recorded for `record`'s key: its metadata.json, and (only without one, and only
    /// for an event with a sequencer or a removal, which it can matter to) its tombstone.
    pub(super) async fn recorded(
        &self,
        record: &ObjectEvent,
    ) -> Result<(Option<Metadata>, Option<Tombstone>), Failure> {
        let config = &self.config;
        let metadata_key = config.layout.metadata_key(&record.key);
        let existing = store::get_metadata(&*self.s3, &config.output_bucket, &metadata_key).await?;
        let tombstone = if existing.is_none()
            && (record.sequencer.is_some() || record.change() != Change::Created)
        {
            deletion::read_tombstone(
                &*self.s3,
                &config.output_bucket,
                &self.tombstone_key(&record.key),
            )
            .await?
        } else {
            None
        };
        Ok((existing, tombstone))
    }
}

/// Whether `record` acts, given what is recorded for its key ([`ordering::decide`]).
pub(super) fn order(
    record: &ObjectEvent,
    existing: Option<&Metadata>,
    tombstone: Option<&Tombstone>,
) -> Decision {
    let recorded = match (existing, tombstone) {
        (Some(m), _) => Recorded::Outputs {
            sequencer: m.source.sequencer.as_deref(),
            version_id: m.source.version_id.as_deref(),
        },
        (None, Some(t)) => Recorded::Deleted {
            sequencer: t.sequencer.as_deref(),
        },
        (None, None) => Recorded::Nothing,
    };
    ordering::decide(
        record.change(),
        record.sequencer.as_deref(),
        record.version_id.as_deref(),
        recorded,
    )
}
