//! An upload processed: the source read under the limits and memory admission, the pipeline run,
//! derivatives written, the source tagged `done`, metadata.json written last, outputs no longer
//! listed deleted; and the `failed` document of a permanent failure.

use super::*;

impl Handler {
    /// Waits until the image in `bytes` fits the memory budget (predicted from its header); an
    /// image predicted over the whole budget fails as `over_limit`. Without a budget, admits at once.
    pub(super) async fn admit(
        &self,
        record: &ObjectEvent,
        bytes: &[u8],
    ) -> Result<Option<Admitted>, Failure> {
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
    pub(super) async fn process_record(
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
            match store::get_source(&*self.s3, &record.bucket, &record.key, &config.limits).await {
                Ok(fetched) => fetched,
                Err(failure) if failure.retryable => return Err(failure.into()),
                Err(failure) => return Err(self.failed_record(record, failure).await),
            };
        let fetch_ms = elapsed_ms(started);
        let admitted = match self.admit(record, &fetched.bytes).await {
            Ok(admitted) => admitted,
            Err(failure) => return Err(self.failed_record(record, failure).await),
        };
        let version_id = fetched.version_id.clone();
        let sequencer = record
            .sequencer
            .clone()
            .or_else(|| previous.and_then(|p| p.source.sequencer.clone()));
        let focus = fetched.focus().unwrap_or_else(|why| {
            tracing::warn!(key = %record.key, why, "focus metadata ignored; cover crops use the faces or the centre");
            None
        });
        let source = SourceRef {
            bucket: record.bucket.clone(),
            key: record.key.clone(),
            etag: fetched.etag.clone().or(record.etag.clone()),
            focus,
            analysis: None,
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
        self.put_derivatives(processed.derivatives).await?;
        let mut metadata = processed.metadata;
        metadata.source.sequencer = sequencer;
        metadata.source.version_id = version_id;
        if self.removed_meanwhile(record, tombstone.as_ref()).await? {
            let keys: Vec<String> = metadata.derivatives.iter().map(|d| d.key.clone()).collect();
            store::delete_keys(&*self.s3, &config.output_bucket, &keys).await?;
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
        // The record has ended. What follows is clean-up: its failure retries the message (the
        // retry finds the record done and finishes it, `finish_superseded`), never fails the image.
        let mut replaced = replaced_keys(previous, &metadata);
        let follow_up = async {
            if tombstone.is_some() {
                // A re-upload after a deletion: the tombstone has done its job.
                store::delete_keys(
                    &*self.s3,
                    &config.output_bucket,
                    &[self.tombstone_key(&record.key)],
                )
                .await?;
            }
            let gone = self.drop_old_outputs(record, previous, &metadata).await?;
            if !replaced.is_empty() {
                // The source changed: the CDN forgets the rendered variants deleted with it too.
                replaced.extend(gone);
            }
            Ok::<(), Failure>(())
        }
        .await
        .err();
        self.service_time
            .observe(metadata.source.bytes.unwrap_or(0), started.elapsed());
        tracing::info!(key = %record.key, ms = elapsed_ms(started), "done");
        Ok(RecordDone::Processed {
            metadata: Box::new(metadata),
            replaced,
            follow_up,
        })
    }

    /// Writes `derivatives` to the output bucket, at once; returns their keys.
    pub(super) async fn put_derivatives(
        &self,
        derivatives: Vec<imgpipe_core::Derivative>,
    ) -> Result<Vec<String>, Failure> {
        let config = &self.config;
        let uploads = derivatives.into_iter().map(|d| async move {
            store::put(
                &*self.s3,
                &config.output_bucket,
                &d.key,
                d.bytes,
                d.format.content_type(),
                &config.cache_control,
            )
            .await
            .map(|()| d.key)
        });
        futures::future::try_join_all(uploads).await
    }

    /// After the new document is written: deletes the outputs that `current` no longer lists (a
    /// preset removed or renamed, a ladder rung no longer made): those `previous` lists, and, for a
    /// backfill job or a preset-set change, any other file directly in the key's output folder (a
    /// document lost or never written still leaves its outputs there), and, for a re-upload, the
    /// variants rendered on request from the old bytes. Returns the keys it deleted.
    pub(super) async fn drop_old_outputs(
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
        // A re-upload also takes the variants rendered on request from the old bytes (listed in
        // no document: only the folder knows them).
        let strip = |e: &String| e.trim_matches('"').to_string();
        let source_changed = previous.is_some_and(|p| {
            p.source.etag.as_ref().map(strip) != current.source.etag.as_ref().map(strip)
        });
        if preset_change || source_changed {
            let dir = format!("{}{}/", config.layout.prefix, record.key);
            let documents = [
                config.layout.metadata_key(&record.key),
                self.tombstone_key(&record.key),
            ];
            candidates.extend(
                store::list_children(&*self.s3, &config.output_bucket, &dir)
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
            self.delete_unlisted(record, current, gone.clone()).await?;
        }
        Ok(gone)
    }

    /// A record found done: the run that wrote `current` may have been killed after the document
    /// and before deleting what it superseded (a preset change or a re-upload writes the new
    /// document first, then deletes the old files). Deletes the files of the key's output folder
    /// that `current` does not list and that S3 stored before the document (both times from S3's
    /// clock, never the worker's); a newer run's files, stored after it, are never touched (a file
    /// of the document's own second is left: an orphan, never a hole).
    pub(super) async fn finish_superseded(
        &self,
        record: &ObjectEvent,
        current: &Metadata,
    ) -> Result<(), Failure> {
        let config = &self.config;
        let dir = format!("{}{}/", config.layout.prefix, record.key);
        let metadata_key = config.layout.metadata_key(&record.key);
        let tombstone_key = self.tombstone_key(&record.key);
        let listed =
            store::list_objects(&*self.s3, &config.output_bucket, &dir, Some("/"), None).await?;
        let Some(written) = listed
            .iter()
            .find(|o| o.key == metadata_key)
            .map(|o| o.modified)
        else {
            return Ok(());
        };
        let kept: std::collections::HashSet<&str> =
            current.derivatives.iter().map(|d| d.key.as_str()).collect();
        let gone: Vec<String> = listed
            .into_iter()
            .filter(|o| o.modified < written)
            .map(|o| o.key)
            .filter(|k| *k != metadata_key && *k != tombstone_key && !kept.contains(k.as_str()))
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        tracing::info!(key = %record.key, files = gone.len(), "outputs a killed run superseded but did not delete; deleting them");
        self.delete_unlisted(record, current, gone).await
    }

    /// Deletes `gone`, the outputs `current` no longer lists, unless another run wrote the key's
    /// metadata.json since this one did (a newer upload processed concurrently: its outputs may
    /// carry the same names, and its own run cleans up). A failed delete retries the message; the
    /// retry finds the record done and deletes them then ([`Handler::finish_superseded`]).
    pub(super) async fn delete_unlisted(
        &self,
        record: &ObjectEvent,
        current: &Metadata,
        gone: Vec<String>,
    ) -> Result<(), Failure> {
        let config = &self.config;
        let metadata_key = config.layout.metadata_key(&record.key);
        let stored = store::get_metadata(&*self.s3, &config.output_bucket, &metadata_key).await?;
        if stored.as_ref().map(|m| &m.processed_at) != Some(&current.processed_at) {
            tracing::info!(key = %record.key, "metadata.json was rewritten by another run meanwhile; leaving the cleanup to it");
            return Ok(());
        }
        if let Err(e) = store::delete_keys(&*self.s3, &config.output_bucket, &gone).await {
            tracing::warn!(key = %record.key, keys = ?gone, error = %e, "could not delete outputs no longer in the set; will retry");
            return Err(e);
        }
        tracing::info!(key = %record.key, deleted = gone.len(), "outputs of presets no longer in the set deleted");
        Ok(())
    }

    /// True when a removal of the key was recorded while `record` was being processed (a tombstone
    /// that was not there, or not this one, when processing started) and `record` is not newer.
    pub(super) async fn removed_meanwhile(
        &self,
        record: &ObjectEvent,
        seen: Option<&Tombstone>,
    ) -> Result<bool, Failure> {
        let now = deletion::read_tombstone(
            &*self.s3,
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

    /// A record out of attempts: writes its `failed` document and returns it, unless the key's
    /// document says the record is done for this ETag and preset set (another delivery finished
    /// it: `Err` with that document; but returned as it is, for a letter, when a new focal point of
    /// the source was not applied) or already failed for good (returned as it is), or what is
    /// recorded overrules the event (a deletion or a newer upload: `Ok(None)`), or cannot be read
    /// (`Ok(None)`: a `failed` document must never replace a `done` one). The letter says why.
    pub(super) async fn record_exhausted(
        &self,
        record: &ObjectEvent,
        failure: &Failure,
    ) -> Result<Option<Metadata>, Box<Metadata>> {
        let config = &self.config;
        if record.change() != Change::Created {
            // A removal out of attempts: its letter says so; a `failed` document would stand for
            // an image that no longer exists.
            return Ok(None);
        }
        let (existing, tombstone) = match self.recorded(record).await {
            Ok(recorded) => recorded,
            Err(e) => {
                tracing::warn!(key = %record.key, error = %e, "out of attempts and metadata.json unreadable; no failed document written (the letter says why)");
                return Ok(None);
            }
        };
        let etag = record.etag.as_deref();
        match existing {
            Some(existing)
                if etag.is_some_and(|e| existing.is_done_for(e, config.presets.hash())) =>
            {
                // Done, but a new focal point not applied (or not known to be): the letter says
                // why, and the document, unchanged, is announced again.
                match self.new_focus(record, &existing).await {
                    Ok(None) => Err(Box::new(existing)),
                    Ok(Some(_)) | Err(_) => Ok(Some(existing)),
                }
            }
            // Already failed for good (a bad file whose later delivery met a store error): its
            // document keeps the real reason, and is announced again as it is.
            Some(existing)
                if etag.is_some_and(|e| {
                    existing.is_failed_permanently_for(e, config.presets.hash())
                }) =>
            {
                Ok(Some(existing))
            }
            // An event the recorded state overrules (older than a deletion or a newer upload)
            // leaves no document: it would bring a deleted image back.
            existing
                if !matches!(
                    super::decide::order(record, existing.as_ref(), tombstone.as_ref()),
                    Decision::Process
                ) =>
            {
                Ok(None)
            }
            _ => Ok(self.write_failed_metadata(record, failure).await.ok()),
        }
    }

    /// The permanent `failure` of `record`, with its `failed` document written. When the document
    /// cannot be written the record is retried instead (a transient failure): the retry fails the
    /// same way and writes it then, so a bad file does not end in the DLQ without its document.
    pub(super) async fn failed_record(
        &self,
        record: &ObjectEvent,
        failure: Failure,
    ) -> RecordError {
        match self.write_failed_metadata(record, &failure).await {
            Ok(metadata) => RecordError {
                failure,
                metadata: Some(Box::new(metadata)),
            },
            Err(write) => RecordError::from(Failure::transient(
                &write.kind,
                format!(
                    "{} (recording the failure: {})",
                    write.message, failure.message
                ),
            )),
        }
    }

    /// Writes the `failed` document of `record` and returns it (tagging a permanently failed
    /// source `failed`); `Err` when the document could not be written.
    pub(super) async fn write_failed_metadata(
        &self,
        record: &ObjectEvent,
        failure: &Failure,
    ) -> Result<Metadata, Failure> {
        let mut metadata = self.failed_metadata(record, failure);
        let key = self.config.layout.metadata_key(&record.key);
        if let Err(e) = self.put_metadata(&key, &mut metadata).await {
            tracing::warn!(key, error = %e, "could not write the failed metadata document");
            return Err(e);
        }
        if !failure.retryable {
            self.mark_failed_source(record).await;
        }
        Ok(metadata)
    }

    /// Tags a source of the ingest bucket with its `imgpipe-status` (see [`source_status`]); other
    /// buckets' objects (backfill archives) are left as they are.
    pub(super) async fn mark_source(
        &self,
        record: &ObjectEvent,
        version_id: Option<&str>,
        status: &str,
    ) -> Result<(), Failure> {
        if record.bucket != self.config.ingest_bucket {
            return Ok(());
        }
        let version_id = version_id.or(record.version_id.as_deref());
        source_status::mark(&*self.s3, &record.bucket, &record.key, version_id, status).await
    }

    /// Best effort: a source whose tagging fails stays `pending`, which expires all the same.
    pub(super) async fn mark_failed_source(&self, record: &ObjectEvent) {
        if let Err(e) = self.mark_source(record, None, source_status::FAILED).await {
            tracing::warn!(key = %record.key, error = %e.message, "could not tag the failed source; it stays pending (it expires either way)");
        }
    }

    /// The `failed` document of `record`, from what the event says about the source.
    pub(super) fn failed_metadata(&self, record: &ObjectEvent, failure: &Failure) -> Metadata {
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
        metadata.processed_at = Some(self.now());
        metadata
    }

    /// Stamps `processed_at` and writes the document.
    pub(super) async fn put_metadata(
        &self,
        key: &str,
        metadata: &mut Metadata,
    ) -> Result<(), Failure> {
        metadata.processed_at = Some(self.now());
        store::put_document(
            &*self.s3,
            &self.config.output_bucket,
            key,
            metadata,
            &self.config.metadata_cache_control,
        )
        .await
    }
}

/// The keys whose cached copies are wrong once `current` replaced `previous`: when the source
/// itself changed (a re-upload), every earlier and new key. A preset change alone returns none: a
/// backfill re-processes thousands of images, and CloudFront allows 3 000 paths in progress, so
/// `imgpipe backfill` invalidates the output prefix once at its end instead.
fn replaced_keys(previous: Option<&Metadata>, current: &Metadata) -> Vec<String> {
    let Some(previous) = previous.filter(|p| p.status == Status::Done) else {
        return Vec::new();
    };
    let strip = |e: &String| e.trim_matches('"').to_string();
    if previous.source.etag.as_ref().map(strip) == current.source.etag.as_ref().map(strip) {
        return Vec::new();
    }
    previous
        .derivatives
        .iter()
        .chain(&current.derivatives)
        .map(|d| d.key.clone())
        .collect()
}
