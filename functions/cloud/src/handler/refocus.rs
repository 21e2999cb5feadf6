//! A done image whose source got a new focal point: `PUT /v1/images/{id}/focus` copies the source
//! onto itself with a new `focus` user metadata, and S3 notifies `ObjectCreated:Copy` with the
//! same ETag. Only the cover derivatives that follow the point are re-made
//! ([`imgpipe_core::focus::refocus`]), from the stored analysis (no detection); the document is
//! rewritten only if no other run rewrote it meanwhile (If-Match); then the cover variants rendered
//! on request from the old point are deleted. The message loop invalidates all of them on the CDN
//! and announces the new document. Every other derivative keeps its bytes, key and ETag.
//!
//! `event of a done image ⇒ HEAD the source: same ETag, another focus? ⇒ (GPU route? forward) ⇒
//! metadata.json with its ETag ⇒ source (same ETag) ⇒ process the presets that follow the point ⇒
//! HEAD: unchanged? ⇒ put them ⇒ put metadata.json If-Match (version and sequencer of the copy) ⇒
//! list and delete the stale on-request covers`

use imgpipe_core::focus::refocus;
use imgpipe_core::focus::{Analysis, FocalPoint};
use imgpipe_core::metadata::strip_quotes;

use super::*;

impl Handler {
    /// The focal point `record`'s source has now, when `existing` (done for its ETag) was made with
    /// another one; `None`: nothing to re-make. Any event of a done image whose preset set crops by
    /// a focus costs a HeadObject: the API's copy notifies `ObjectCreated:Copy`, but the same bytes
    /// put again with another `x-amz-meta-focus`, or a backfill job after a lost copy event, carry
    /// the change too.
    pub(super) async fn new_focus(
        &self,
        record: &ObjectEvent,
        existing: &Metadata,
    ) -> Result<Option<Option<FocalPoint>>, Failure> {
        if existing.focus.is_none() {
            return Ok(None);
        }
        let Some(head) = self.s3.head(&record.bucket, &record.key).await? else {
            // Removed since: the removal's own event settles it.
            return Ok(None);
        };
        if head.etag.as_deref().map(strip_quotes) != record.etag.as_deref().map(strip_quotes) {
            // Replaced since: the new upload's own event processes it, with its focus.
            return Ok(None);
        }
        let focus = store::focus_in(&head.metadata).unwrap_or_else(|why| {
            tracing::warn!(key = %record.key, why, "focus metadata ignored; cover crops use the faces or the centre");
            None
        });
        Ok(refocus::needed(existing, focus).then_some(focus))
    }

    /// Applies `focus` to the done image of `record` (see the module documentation).
    pub(super) async fn refocus(
        &self,
        record: &ObjectEvent,
        focus: Option<FocalPoint>,
    ) -> Result<RecordDone, RecordError> {
        let config = Arc::clone(&self.config);
        let started = Instant::now();
        let etag = record.etag.as_deref().map(strip_quotes).unwrap_or_default();
        let metadata_key = config.layout.metadata_key(&record.key);
        let Some((body, document_etag)) =
            store::get_with_etag(&*self.s3, &config.output_bucket, &metadata_key).await?
        else {
            return Err(changed_meanwhile(record).into());
        };
        let previous: Metadata = match serde_json::from_slice(&body) {
            Ok(previous) => previous,
            Err(_) => return Err(changed_meanwhile(record).into()),
        };
        if !previous.is_done_for(etag, config.presets.hash()) || !refocus::needed(&previous, focus)
        {
            // Another run finished it (or the source changed): nothing left to do here.
            return Ok(RecordDone::Skipped(Box::new(previous), None));
        }
        tracing::info!(key = %record.key, focus = ?focus, "new focal point: re-making the cover derivatives that follow it");
        let analysis = refocus::analysis(&previous, focus);
        let remade = match refocus::presets(&config.presets) {
            Some(presets) => {
                match self
                    .remake(record, etag, presets, focus, analysis.clone())
                    .await
                {
                    Ok(Some(processed)) => Some(processed),
                    Ok(None) => {
                        return Ok(RecordDone::Ignored(format!(
                            "{} was replaced or removed while its focus was applied",
                            record.key
                        )));
                    }
                    Err(failure) if failure.retryable => return Err(failure.into()),
                    // The image stays as it was (its document says so, and is announced again);
                    // the letter says why the point could not be applied.
                    Err(failure) => {
                        return Err(RecordError {
                            failure,
                            metadata: Some(Box::new(previous)),
                        });
                    }
                }
            }
            None => None,
        };
        let mut replaced = Vec::new();
        let mut remade_metadata = None;
        if let Some(processed) = remade {
            // The source again, just before its covers are overwritten: a re-upload (or another
            // focal point) that landed while these were made has its own event, and its own covers.
            let current = self.s3.head(&record.bucket, &record.key).await?;
            let still = current.as_ref().is_some_and(|h| {
                h.etag.as_deref().map(strip_quotes) == Some(etag)
                    && store::focus_in(&h.metadata).ok().flatten() == focus
            });
            if !still {
                return Ok(RecordDone::Ignored(format!(
                    "{} changed while its focal point was applied; its own event applies the change",
                    record.key
                )));
            }
            replaced = self.put_derivatives(processed.derivatives).await?;
            remade_metadata = Some(processed.metadata);
        }
        let known = analysis.unwrap_or(Analysis {
            manual: focus,
            ..Analysis::default()
        });
        let copy = refocus::Version {
            version_id: record.version_id.clone(),
            sequencer: record.sequencer.clone(),
        };
        let mut metadata = refocus::merge(&previous, remade_metadata.as_ref(), &known, &copy);
        metadata.processed_at = Some(self.now());
        let written = store::put_document_if(
            &*self.s3,
            &config.output_bucket,
            &metadata_key,
            &metadata,
            &config.metadata_cache_control,
            &document_etag,
        )
        .await?;
        if !written {
            // Another run rewrote the document: the retry decides again from what it says.
            return Err(changed_meanwhile(record).into());
        }
        // The cover variants rendered on request from the old point, listed once the document
        // is written (a render stored meanwhile is caught). A failed listing or delete retries the
        // message; the retry finds the image done and deletes what the document does not list.
        let dir = format!("{}{}/", config.layout.prefix, record.key);
        let cleaned = async {
            let listed: std::collections::HashSet<&str> = metadata
                .derivatives
                .iter()
                .map(|d| d.key.as_str())
                .collect();
            let stale: Vec<String> = store::list_children(&*self.s3, &config.output_bucket, &dir)
                .await?
                .into_iter()
                .filter(|k| !listed.contains(k.as_str()) && k != &metadata_key)
                .filter(|k| {
                    k.strip_prefix(&dir)
                        .is_some_and(|file| refocus::stale_on_request(file, &config.presets))
                })
                .collect();
            if !stale.is_empty() {
                store::delete_keys(&*self.s3, &config.output_bucket, &stale).await?;
            }
            Ok::<Vec<String>, Failure>(stale)
        }
        .await;
        let remade = replaced.len();
        let follow_up = match cleaned {
            Ok(stale) => {
                replaced.extend(stale);
                None
            }
            Err(failure) => Some(failure),
        };
        tracing::info!(key = %record.key, remade, stale = replaced.len() - remade, ms = elapsed_ms(started), "focal point applied");
        Ok(RecordDone::Processed {
            metadata: Box::new(metadata),
            replaced,
            follow_up,
        })
    }

    /// Runs `presets` on the source of `record` with `focus` and the stored `analysis`; `Ok(None)`
    /// when the source is no longer the version with `etag`.
    async fn remake(
        &self,
        record: &ObjectEvent,
        etag: &str,
        presets: PresetSet,
        focus: Option<FocalPoint>,
        analysis: Option<Analysis>,
    ) -> Result<Option<imgpipe_core::Processed>, Failure> {
        let config = Arc::clone(&self.config);
        let fetched =
            match store::get_source(&*self.s3, &record.bucket, &record.key, &config.limits).await {
                Ok(fetched) => fetched,
                Err(failure) if failure.kind == "source_missing" => return Ok(None),
                Err(failure) => return Err(failure),
            };
        if fetched.etag.as_deref().map(strip_quotes) != Some(etag) {
            return Ok(None);
        }
        let admitted = self.admit(record, &fetched.bytes).await?;
        let source = SourceRef {
            bucket: record.bucket.clone(),
            key: record.key.clone(),
            etag: fetched.etag.clone(),
            focus,
            analysis,
        };
        let engines = Arc::clone(&self.engines);
        let result = tokio::task::spawn_blocking(move || {
            ENGINE.with_borrow_mut(|slot| {
                let engine = slot.get_or_insert_with(|| engines());
                imgpipe_core::process(
                    &fetched.bytes,
                    &source,
                    &presets,
                    &config.pipeline_options(),
                    engine,
                )
            })
        })
        .await
        .map_err(|e| Failure::transient("internal", format!("processing task failed: {e}")))?;
        drop(admitted);
        result
            .map(Some)
            .map_err(|failed| Failure::from(&failed.error))
    }
}

impl Handler {
    /// A copy event of a done image whose document already has the source's manual focal point:
    /// the run that applied it may have been killed after the document and before the CDN forgot
    /// the old crops. Asks again for the covers that follow the point (and the group paths).
    pub(super) async fn reinvalidate_focus(
        &self,
        record: &ObjectEvent,
        existing: &Metadata,
    ) -> Result<(), Failure> {
        if !record.event_name.ends_with(":Copy") || refocus::recorded(existing).is_none() {
            return Ok(());
        }
        let presets = self.config.presets.presets();
        let follows: Vec<String> = existing
            .derivatives
            .iter()
            .filter(|d| {
                presets
                    .iter()
                    .any(|p| p.name == d.preset && refocus::follows_manual(p))
            })
            .map(|d| d.key.clone())
            .collect();
        if follows.is_empty() {
            return Ok(());
        }
        let paths = self.cdn_paths(&record.key, &follows);
        self.invalidate(&paths).await
    }
}

fn changed_meanwhile(record: &ObjectEvent) -> Failure {
    Failure::transient(
        "metadata_changed",
        format!(
            "metadata.json of {} changed while its new focal point was applied; trying again",
            record.key
        ),
    )
}
