//! Presets changed → re-process what is stale. A source is stale when its metadata.json is missing,
//! was made with another preset set, or describes another version of the source. A HEAD of the
//! document is enough: every metadata.json carries its preset-set hash, status and source ETag as
//! S3 user metadata ([`store::document_tags`]); documents written before that are read instead.
//!
//! The jobs are S3-shaped (`ObjectCreated:Backfill` records), so the handler treats them like
//! uploads: it skips what became current meanwhile, keeps the key's recorded sequencer, and
//! deletes the outputs of presets the new set no longer has once the new document is written.

use std::collections::HashMap;

use imgpipe_core::{Metadata, OutputLayout};

use crate::event::ObjectEvent;
use crate::failure::Failure;
use crate::store::{self, Listed, document_tags};

/// The event name of a backfill job (any `ObjectCreated:*` is processed as an upload).
pub const EVENT_NAME: &str = "ObjectCreated:Backfill";

/// What a source's metadata document says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Done with the current preset set for this version of the source.
    Current,
    /// Failed with the current preset set for this version: the same job would fail again (look
    /// at it with `imgpipe dlq list`, fix it, redrive).
    Failed,
    /// No metadata.json: never processed (or its event was lost).
    Missing,
    /// Made with another preset set, or from another version of the source.
    Stale(String),
}

impl Verdict {
    /// True when a job should be enqueued: stale always, missing unless `stale_only`.
    pub fn wants_job(&self, stale_only: bool) -> bool {
        match self {
            Self::Stale(_) => true,
            Self::Missing => !stale_only,
            Self::Current | Self::Failed => false,
        }
    }
}

/// What the document's user metadata (`tags`, or the parsed document) says about a source with
/// ETag `source_etag`, for the preset set hashing to `preset_hash`.
pub fn judge(
    hash: &str,
    status: &str,
    described_etag: Option<&str>,
    source_etag: Option<&str>,
    preset_hash: &str,
) -> Verdict {
    let strip = |e: &str| e.trim_matches('"').to_string();
    if hash != preset_hash {
        return Verdict::Stale(format!("made with preset set {hash}"));
    }
    if let (Some(described), Some(source)) = (described_etag, source_etag)
        && strip(described) != strip(source)
    {
        return Verdict::Stale(format!(
            "describes ETag {}, the source is now {}",
            strip(described),
            strip(source)
        ));
    }
    if status == "done" {
        Verdict::Current
    } else {
        Verdict::Failed
    }
}

/// The verdict on `source`: a HEAD of its metadata.json, or a GET of documents without tags.
pub async fn inspect(
    s3: &dyn crate::effects::ObjectStore,
    output_bucket: &str,
    layout: &OutputLayout,
    source: &Listed,
    preset_hash: &str,
) -> Result<Verdict, Failure> {
    let key = layout.metadata_key(&source.key);
    let Some(tags) = store::head_tags(s3, output_bucket, &key).await? else {
        return Ok(Verdict::Missing);
    };
    if let Some(verdict) = judge_tags(&tags, source.etag.as_deref(), preset_hash) {
        return Ok(verdict);
    }
    // Written before documents carried tags: read it.
    let Some(metadata) = store::get_metadata(s3, output_bucket, &key).await? else {
        return Ok(Verdict::Stale("metadata.json is unreadable".into()));
    };
    Ok(judge_document(
        &metadata,
        source.etag.as_deref(),
        preset_hash,
    ))
}

fn judge_tags(
    tags: &HashMap<String, String>,
    source_etag: Option<&str>,
    preset_hash: &str,
) -> Option<Verdict> {
    let hash = tags.get(document_tags::PRESET_HASH)?;
    let status = tags.get(document_tags::STATUS)?;
    Some(judge(
        hash,
        status,
        tags.get(document_tags::SOURCE_ETAG).map(String::as_str),
        source_etag,
        preset_hash,
    ))
}

fn judge_document(metadata: &Metadata, source_etag: Option<&str>, preset_hash: &str) -> Verdict {
    let status = match metadata.status {
        imgpipe_core::metadata::Status::Done => "done",
        imgpipe_core::metadata::Status::Failed => "failed",
    };
    judge(
        &metadata.preset_set_hash,
        status,
        metadata.source.etag.as_deref(),
        source_etag,
        preset_hash,
    )
}

/// Which listed keys are sources: not folder markers, not under the output location (when sources
/// and outputs share a bucket), not manifests.
#[derive(Debug, Clone, Default)]
pub struct SourceFilter {
    /// The output layout, when the listed bucket is also the output bucket.
    pub outputs: Option<OutputLayout>,
    /// The manifest prefix (manifests are jobs lists, not images); empty: none.
    pub manifest_prefix: String,
}

impl SourceFilter {
    /// Why `key` is not a source, or `None` when it is one.
    pub fn excludes(&self, key: &str) -> Option<&'static str> {
        if key.ends_with('/') {
            return Some("folder marker");
        }
        if self.outputs.as_ref().is_some_and(|l| l.contains(key)) {
            return Some("under the output location");
        }
        if !self.manifest_prefix.is_empty() && key.starts_with(&self.manifest_prefix) {
            return Some("a manifest");
        }
        None
    }
}

/// The S3-shaped job that re-processes `source` of `bucket`.
pub fn job(bucket: &str, source: &Listed) -> ObjectEvent {
    ObjectEvent {
        event_name: EVENT_NAME.into(),
        bucket: bucket.to_string(),
        key: source.key.clone(),
        size: Some(source.size),
        etag: source.etag.clone(),
        batch: None,
        sequencer: None,
        version_id: None,
        event_time: None,
    }
}

/// Sends `jobs` (SendMessageBatch, 10 per call); any entry SQS refuses fails the whole call, so
/// the caller can stop and report where to resume.
pub async fn send_jobs(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    jobs: &[ObjectEvent],
) -> Result<(), Failure> {
    let bodies: Vec<String> = jobs.iter().map(ObjectEvent::to_body).collect();
    crate::queue::forward_batch(sqs, queue_url, &bodies, "backfill").await
}

/// Counts of one backfill run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    /// Keys listed.
    pub listed: u64,
    /// Keys that are not sources (folder markers, outputs, manifests).
    pub not_sources: u64,
    /// Sources already current.
    pub current: u64,
    /// Sources without metadata.json.
    pub missing: u64,
    /// Sources made with another preset set or from another version.
    pub stale: u64,
    /// Sources that failed with the current set (not re-enqueued).
    pub failed: u64,
    /// Jobs sent (or that would be, with `--dry-run`).
    pub enqueued: u64,
}

impl Tally {
    /// Counts `verdict`.
    pub fn count(&mut self, verdict: &Verdict) {
        match verdict {
            Verdict::Current => self.current += 1,
            Verdict::Failed => self.failed += 1,
            Verdict::Missing => self.missing += 1,
            Verdict::Stale(_) => self.stale += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: &str = "sha256:new";

    #[test]
    fn another_preset_set_is_stale() {
        assert_eq!(
            judge("sha256:old", "done", Some("e1"), Some("e1"), NEW),
            Verdict::Stale("made with preset set sha256:old".into())
        );
        // Failed with another set: worth another try with the new one.
        assert!(matches!(
            judge("sha256:old", "failed", Some("e1"), Some("e1"), NEW),
            Verdict::Stale(_)
        ));
    }

    #[test]
    fn another_version_of_the_source_is_stale() {
        assert!(matches!(
            judge(NEW, "done", Some("\"e1\""), Some("e2"), NEW),
            Verdict::Stale(reason) if reason.contains("e2")
        ));
    }

    #[test]
    fn same_set_and_version_is_current_or_failed() {
        assert_eq!(
            judge(NEW, "done", Some("\"e1\""), Some("e1"), NEW),
            Verdict::Current
        );
        assert_eq!(judge(NEW, "failed", None, Some("e1"), NEW), Verdict::Failed);
    }

    #[test]
    fn missing_is_enqueued_unless_stale_only() {
        assert!(Verdict::Missing.wants_job(false));
        assert!(!Verdict::Missing.wants_job(true));
        assert!(Verdict::Stale(String::new()).wants_job(true));
        assert!(!Verdict::Current.wants_job(false));
        assert!(!Verdict::Failed.wants_job(false));
    }

    #[test]
    fn tags_without_the_hash_fall_back_to_the_document() {
        let mut tags = HashMap::new();
        assert_eq!(judge_tags(&tags, Some("e1"), NEW), None);
        tags.insert(document_tags::PRESET_HASH.to_string(), NEW.to_string());
        tags.insert(document_tags::STATUS.to_string(), "done".to_string());
        tags.insert(document_tags::SOURCE_ETAG.to_string(), "e1".to_string());
        assert_eq!(judge_tags(&tags, Some("e1"), NEW), Some(Verdict::Current));
    }

    #[test]
    fn outputs_manifests_and_folders_are_not_sources() {
        let filter = SourceFilter {
            outputs: Some(OutputLayout {
                prefix: "derived/".into(),
            }),
            manifest_prefix: "manifests/".into(),
        };
        assert_eq!(filter.excludes("uploads/"), Some("folder marker"));
        assert_eq!(
            filter.excludes("derived/uploads/a.jpg/thumb.jpg"),
            Some("under the output location")
        );
        assert_eq!(filter.excludes("manifests/all.csv"), Some("a manifest"));
        assert_eq!(filter.excludes("uploads/a b.jpg"), None);
    }

    #[test]
    fn a_job_is_an_s3_creation_the_handler_parses() {
        let listed = Listed {
            key: "uploads/a b+c.jpg".into(),
            size: 10,
            etag: Some("e1".into()),
            modified: 0,
        };
        let body = job("ingest", &listed).to_body();
        let crate::event::Notification::Records(records) = crate::event::parse_body(&body).unwrap()
        else {
            panic!("not records");
        };
        assert_eq!(records[0].key, "uploads/a b+c.jpg");
        assert!(records[0].is_created());
        assert_eq!(records[0].etag.as_deref(), Some("e1"));
    }
}
