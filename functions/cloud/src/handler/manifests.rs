//! Manifests: a manifest's fan-out in slices from its progress cursor, its summary, and the batch
//! event when its last item ends (see `crate::progress`).

use super::*;

impl Handler {
    pub(super) async fn publish_batch_done(
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

    pub(super) fn progress_key(&self, manifest_key: &str) -> String {
        self.config
            .layout
            .derivative_key(manifest_key, "progress", "json")
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
    pub(super) async fn fan_out(
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
            &*self.s3,
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
                return Err(self.failed_record(record, failure).await);
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
            &*self.s3,
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
        // Import jobs go out while the cursor has not moved (not again on each continuation);
        // each is idempotent (its outcome document ends it), so a crash before the first cursor
        // move, or a redelivered manifest of URLs only (complete from the start: its cursor never
        // moves), only sends them twice. (Skipping them for a resumed complete manifest lost the
        // jobs of a URL-only manifest killed after its progress was written: the simulator.)
        if progress.sent == 0 {
            let import_bodies: Vec<String> =
                imports.iter().map(importer::ImportJob::to_body).collect();
            let reason = format!(
                "URL listed in manifest s3://{}/{}",
                record.bucket, record.key
            );
            queue::forward_batch(
                &*self.queues,
                &routing.gpu_queue_url,
                &import_bodies,
                &reason,
            )
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
                    &*self.queues,
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
                        .map(|item| store::head(&*self.s3, &item.bucket, &item.key)),
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
            queue::forward_batch(&*self.queues, &routing.gpu_queue_url, &jobs, &reason).await?;
            sent += jobs.len();
            slices += 1;
            if end == listed.len() {
                self.write_summary(record, listed, &missing, &parsed.rejected, &imports)
                    .await?;
            }
            match progress::advance(
                &*self.s3,
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

    /// `summary.json` of a manifest: what happened to each entry at fan-out.
    pub(super) async fn write_summary(
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
            "written_at": self.now(),
        });
        let key = config.layout.derivative_key(&record.key, "summary", "json");
        store::put(
            &*self.s3,
            &config.output_bucket,
            &key,
            serde_json::to_vec_pretty(&summary).expect("summary serialises"),
            "application/json",
            &config.metadata_cache_control,
        )
        .await
    }
}
