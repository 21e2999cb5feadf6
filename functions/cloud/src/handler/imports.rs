//! URL imports from manifests: an import job fetched under the import policy, its file written into
//! the manifest's bucket (its own S3 event processes it) and its outcome recorded once (see
//! `crate::importer`, `crate::url_policy`).

use super::*;

impl Handler {
    /// Settles one URL-import job: fetches the URL under the import policy, writes the file into
    /// the manifest's bucket (its S3 event processes it like an upload) and records the outcome at
    /// [`importer::outcome_key`]. A slow, unreachable or overloaded host is retried with backoff;
    /// after the last attempt, and for every other refusal, the outcome is `rejected` with the
    /// class and reason. A redelivered job whose outcome exists is done.
    pub(super) async fn settle_import(
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
            let existing = store::get_with_etag(&*self.s3, &config.output_bucket, &outcome_key).await?;
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
                "at": self.now(),
            });
            if let (Some(outcome), Some(entry)) = (outcome.as_object_mut(), entry.as_object()) {
                outcome.extend(entry.clone());
            }
            // Conditional: when two copies of the job race, the first outcome stands.
            let written = store::put_if(
                &*self.s3,
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
    pub(super) async fn import_url(
        &self,
        job: &importer::ImportJob,
    ) -> Result<Result<serde_json::Value, url_policy::Refusal>, Failure> {
        let config = &self.config;
        let fetched = match self.web.fetch(&job.url, &config.import).await {
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
            &*self.s3,
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
}
