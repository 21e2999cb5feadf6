//! The events imgpipe emits when work ends, schema `imgpipe.event/v1`:
//!
//! - `imgpipe.image.done` / `imgpipe.image.failed`: one source finished, after its `metadata.json` was
//!   written ([`image_event`]);
//! - `imgpipe.image.deleted`: a source was deleted and its outputs with it ([`deleted_event`]);
//! - `imgpipe.batch.done`: every item of a manifest ended ([`batch_event`]).
//!
//! Events are built from what was written (the metadata document, the manifest's progress), never
//! from the clock or a random number: the event id is a hash of what the event is about, and the
//! timestamp is when that outcome was recorded. Delivering the same outcome twice (a duplicate S3
//! notification, a worker killed after writing metadata but before publishing) therefore yields the
//! very same event, byte for byte, and receivers dedupe on `id` (the `webhook-id` of a webhook).
//! The JSON Schema is [`JSON_SCHEMA`] (`functions/core/schema/event.v1.schema.json`).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::metadata::{ErrorInfo, Metadata, Status};
use crate::pipeline::public_url;

/// Schema identifier written into every event.
pub const SCHEMA: &str = "imgpipe.event/v1";

/// The JSON Schema (draft 2020-12) of every event; tests validate each event they see against it.
pub const JSON_SCHEMA: &str = include_str!("../schema/event.v1.schema.json");

/// Event type names.
pub mod types {
    /// A source was processed; every derivative and its metadata.json exist.
    pub const IMAGE_DONE: &str = "imgpipe.image.done";
    /// A source failed for good (bad input, or retries exhausted); its metadata.json says why.
    pub const IMAGE_FAILED: &str = "imgpipe.image.failed";
    /// A source was deleted (or expired, or hidden by a delete marker); its outputs are gone.
    pub const IMAGE_DELETED: &str = "imgpipe.image.deleted";
    /// Every item of a manifest ended, done or failed.
    pub const BATCH_DONE: &str = "imgpipe.batch.done";
}

/// One event: an envelope in the Standard Webhooks payload shape (`type`, `timestamp`, `data`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event<D> {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// `evt_` + 32 hex digits, derived from what the event is about (see [`image_event`]).
    pub id: String,
    /// One of [`types`].
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the outcome was recorded (RFC 3339, UTC): the metadata's `processed_at`, or when the
    /// manifest's last item ended.
    pub timestamp: String,
    /// What happened.
    pub data: D,
}

/// An `imgpipe.image.*` event.
pub type ImageEvent = Event<ImageData>;
/// An `imgpipe.batch.done` event.
pub type BatchEvent = Event<BatchData>;
/// An `imgpipe.image.deleted` event.
pub type DeletedEvent = Event<DeletedData>;

/// What an `imgpipe.image.deleted` event says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeletedData {
    /// Always `deleted`.
    pub status: String,
    /// The removed source.
    pub source: DeletedSource,
    /// Where metadata.json was.
    pub metadata: ObjectRef,
    /// Output keys deleted.
    pub deleted_keys: Vec<String>,
}

/// The source of an `imgpipe.image.deleted` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeletedSource {
    /// Ingest bucket.
    pub bucket: String,
    /// Object key, decoded.
    pub key: String,
    /// S3 sequencer of the removal event.
    pub sequencer: Option<String>,
    /// Version deleted (or the delete marker's), in a versioned bucket.
    pub version_id: Option<String>,
}

/// The event for a deletion recorded at `deleted_at` (the tombstone's time, so a redelivered removal
/// repeats the same event). The id hashes the type, source bucket, key, sequencer, version and
/// `deleted_at` (a second removal run that found outputs to delete writes a new tombstone, and so
/// makes a new event rather than a different body under the same id).
pub fn deleted_event(
    source: DeletedSource,
    deleted_keys: Vec<String>,
    output: &OutputRef<'_>,
    deleted_at: &str,
) -> DeletedEvent {
    let id = event_id(&[
        types::IMAGE_DELETED,
        &source.bucket,
        &source.key,
        source.sequencer.as_deref().unwrap_or(""),
        source.version_id.as_deref().unwrap_or(""),
        deleted_at,
    ]);
    Event {
        schema: SCHEMA.into(),
        id,
        event_type: types::IMAGE_DELETED.into(),
        timestamp: deleted_at.into(),
        data: DeletedData {
            status: "deleted".into(),
            source,
            metadata: ObjectRef {
                bucket: output.bucket.into(),
                key: output.metadata_key.into(),
                url: None, // documents are not served by the CDN (they hold personal fields)
            },
            deleted_keys,
        },
    }
}

/// What an image event says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageData {
    /// `done` or `failed`.
    pub status: Status,
    /// The source object.
    pub source: EventSource,
    /// Hash of the preset set that made (or would have made) the derivatives.
    pub preset_set_hash: String,
    /// Where the metadata document is.
    pub metadata: ObjectRef,
    /// The derivatives, in preset order (empty when failed).
    pub derivatives: Vec<EventDerivative>,
    /// Why it failed (null when done).
    pub error: Option<ErrorInfo>,
}

/// The source object of an image event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventSource {
    /// Ingest bucket.
    pub bucket: String,
    /// Object key, decoded (for API uploads, the key `POST /v1/uploads` returned).
    pub key: String,
    /// S3 ETag without quotes.
    pub etag: Option<String>,
    /// Size in bytes, when known.
    pub bytes: Option<u64>,
    /// Sniffed format, when the header could be read.
    pub format: Option<String>,
    /// Width after orientation, when known.
    pub width: Option<u32>,
    /// Height after orientation, when known.
    pub height: Option<u32>,
}

/// An object in the output bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Output bucket.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Always null for documents (metadata.json, summary.json): the CDN serves images only,
    /// because the documents hold the uploader's location and capture time. Read them with an
    /// authenticated `GET /v1/images/{id}` or from the bucket with IAM.
    pub url: Option<String>,
}

/// One derivative of an image event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDerivative {
    /// Preset name.
    pub preset: String,
    /// Key in the output bucket.
    pub key: String,
    /// Public URL under the CDN base URL; null when none is configured.
    pub url: Option<String>,
    /// MIME type.
    pub content_type: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Size in bytes.
    pub bytes: u64,
}

/// Where an image event says its outputs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRef<'a> {
    /// Output bucket.
    pub bucket: &'a str,
    /// Key of the metadata document.
    pub metadata_key: &'a str,
    /// CDN base URL, when configured.
    pub cdn_base_url: Option<&'a str>,
}

/// The event for a written metadata document: `imgpipe.image.done` or `imgpipe.image.failed`.
///
/// The id is `evt_` + the first 16 bytes (hex) of SHA-256 over the status, source bucket, key,
/// ETag and preset-set hash: the same outcome for the same upload always has the same id, a
/// re-upload (new ETag) or a preset change (new hash) gets a new one. Bucket and key are part of
/// it because two uploads of the same bytes have the same ETag but are two images.
pub fn image_event(metadata: &Metadata, output: &OutputRef<'_>) -> ImageEvent {
    let status = metadata.status;
    let (event_type, status_word) = match status {
        Status::Done => (types::IMAGE_DONE, "done"),
        Status::Failed => (types::IMAGE_FAILED, "failed"),
    };
    let source = &metadata.source;
    let etag = source
        .etag
        .as_deref()
        .map(crate::metadata::strip_quotes)
        .map(String::from);
    // `processed_at` makes each recorded outcome its own event: repeating the announcement of one
    // document repeats the event byte for byte, while processing the source again (a redrive, a
    // lost document) is a new event, never a different body under an id already delivered.
    let id = event_id(&[
        event_type,
        status_word,
        &source.bucket,
        &source.key,
        etag.as_deref().unwrap_or(""),
        &metadata.preset_set_hash,
        metadata.processed_at.as_deref().unwrap_or(""),
    ]);
    let url = |key: &str| output.cdn_base_url.map(|base| public_url(base, key));
    Event {
        schema: SCHEMA.into(),
        id,
        event_type: event_type.into(),
        timestamp: metadata.processed_at.clone().unwrap_or_default(),
        data: ImageData {
            status,
            source: EventSource {
                bucket: source.bucket.clone(),
                key: source.key.clone(),
                etag,
                bytes: source.bytes,
                format: source.format.clone(),
                width: source.width,
                height: source.height,
            },
            preset_set_hash: metadata.preset_set_hash.clone(),
            metadata: ObjectRef {
                bucket: output.bucket.into(),
                key: output.metadata_key.into(),
                url: None, // documents are not served by the CDN (they hold personal fields)
            },
            derivatives: metadata
                .derivatives
                .iter()
                .map(|d| EventDerivative {
                    preset: d.preset.clone(),
                    key: d.key.clone(),
                    url: d.url.clone().or_else(|| url(&d.key)),
                    content_type: d.content_type.clone(),
                    width: d.width,
                    height: d.height,
                    bytes: d.bytes,
                })
                .collect(),
            error: metadata.error.clone(),
        },
    }
}

/// What a batch event says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchData {
    /// The manifest object.
    pub manifest: ManifestRef,
    /// The manifest's `summary.json` (per-item statuses and the metadata key of each queued item).
    pub summary: ObjectRef,
    /// How the items ended.
    pub counts: BatchCounts,
}

/// A manifest object, as the fan-out read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRef {
    /// Bucket of the manifest.
    pub bucket: String,
    /// Key of the manifest.
    pub key: String,
    /// ETag of the manifest version that was fanned out.
    pub etag: Option<String>,
}

/// How a manifest's items ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCounts {
    /// Entries in the manifest.
    pub items: u64,
    /// Items sent to the GPU queue (`done + failed` of them ended).
    pub queued: u64,
    /// Queued items whose metadata says `done`.
    pub done: u64,
    /// Queued items that failed for good (dead-lettered).
    pub failed: u64,
    /// Listed objects that did not exist when the manifest was read.
    pub missing: u64,
    /// Entries refused when the manifest was read (URLs, empty keys…).
    pub rejected: u64,
}

/// The `imgpipe.batch.done` event of a manifest whose items all ended at `ended_at`.
///
/// The id hashes the manifest (bucket, key, ETag) and the done/failed counts, so repeating it for
/// the same outcome gives the same id, and a later different outcome (a failed item redriven and
/// done) a new one.
pub fn batch_event(
    manifest: &ManifestRef,
    summary: ObjectRef,
    counts: BatchCounts,
    ended_at: &str,
) -> BatchEvent {
    let (done, failed) = (counts.done.to_string(), counts.failed.to_string());
    let id = event_id(&[
        types::BATCH_DONE,
        &manifest.bucket,
        &manifest.key,
        manifest.etag.as_deref().unwrap_or(""),
        &done,
        &failed,
    ]);
    Event {
        schema: SCHEMA.into(),
        id,
        event_type: types::BATCH_DONE.into(),
        timestamp: ended_at.into(),
        data: BatchData {
            manifest: manifest.clone(),
            summary,
            counts,
        },
    }
}

/// `evt_` + 32 hex digits of SHA-256 over `parts`, each length-prefixed (so no two lists of parts
/// hash alike however their text is split).
fn event_id(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    format!("evt_{}", hex::encode(&hasher.finalize()[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{DerivativeInfo, SourceInfo};

    fn done_metadata(etag: &str) -> Metadata {
        let source = SourceInfo {
            bucket: "ingest".into(),
            key: "uploads/01J/a b.jpg".into(),
            etag: Some(format!("\"{etag}\"")),
            bytes: Some(1234),
            format: Some("jpeg".into()),
            width: Some(640),
            height: Some(480),
            ..Default::default()
        };
        let mut m = Metadata::new(source, "0123456789abcdef");
        m.derivatives.push(DerivativeInfo {
            preset: "thumbnail".into(),
            group: Some("thumbnail".into()),
            key: "derived/uploads/01J/a b.jpg/thumbnail.jpg".into(),
            format: "jpeg".into(),
            content_type: "image/jpeg".into(),
            width: 200,
            height: 200,
            frames: 1,
            bytes: 999,
            url: None,
            compression_ratio: 1.2,
            quality: None,
            crop: None,
        });
        m.processed_at = Some("2026-11-30T12:00:00.000Z".into());
        m
    }

    fn output(cdn: Option<&str>) -> OutputRef<'_> {
        OutputRef {
            bucket: "out",
            metadata_key: "derived/uploads/01J/a b.jpg/metadata.json",
            cdn_base_url: cdn,
        }
    }

    fn validate(value: &serde_json::Value) {
        let schema: serde_json::Value = serde_json::from_str(JSON_SCHEMA).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(value)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{value}\n{}", errors.join("\n"));
    }

    #[test]
    fn the_same_outcome_is_the_same_event_byte_for_byte() {
        let a = serde_json::to_string(&image_event(&done_metadata("e1"), &output(None))).unwrap();
        let b = serde_json::to_string(&image_event(&done_metadata("e1"), &output(None))).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn ids_differ_by_etag_presets_status_and_key() {
        let id = |m: &Metadata| image_event(m, &output(None)).id;
        let base = done_metadata("e1");
        assert!(id(&base).starts_with("evt_") && id(&base).len() == 36);
        // ETag quoting does not matter (S3 returns it quoted, events carry it bare).
        let mut bare = base.clone();
        bare.source.etag = Some("e1".into());
        assert_eq!(id(&bare), id(&base));
        assert_ne!(id(&done_metadata("e2")), id(&base));
        let mut presets = base.clone();
        presets.preset_set_hash = "fedcba9876543210".into();
        assert_ne!(id(&presets), id(&base));
        let mut failed = base.clone();
        failed.fail("corrupt", "truncated", false);
        assert_ne!(id(&failed), id(&base));
        let mut other_key = base.clone();
        other_key.source.key = "uploads/01J/other.jpg".into();
        assert_ne!(id(&other_key), id(&base));
        // Length-prefixed parts: moving text between bucket and key changes the id.
        let mut shifted = base.clone();
        shifted.source.bucket = "ingestu".into();
        shifted.source.key = "ploads/01J/a b.jpg".into();
        assert_ne!(id(&shifted), id(&base));
    }

    #[test]
    fn done_event_lists_derivatives_with_cdn_urls_and_validates() {
        let event = image_event(&done_metadata("e1"), &output(Some("https://cdn.example/")));
        assert_eq!(event.event_type, types::IMAGE_DONE);
        assert_eq!(event.timestamp, "2026-11-30T12:00:00.000Z");
        assert_eq!(event.data.source.etag.as_deref(), Some("e1"));
        assert_eq!(
            event.data.derivatives[0].url.as_deref(),
            Some("https://cdn.example/derived/uploads/01J/a%20b.jpg/thumbnail.jpg")
        );
        assert_eq!(
            event.data.metadata.url, None,
            "metadata.json is not on the CDN: no URL to it"
        );
        validate(&serde_json::to_value(&event).unwrap());
        let without_cdn = image_event(&done_metadata("e1"), &output(None));
        assert_eq!(without_cdn.data.derivatives[0].url, None);
        validate(&serde_json::to_value(&without_cdn).unwrap());
    }

    #[test]
    fn failed_event_carries_the_error_and_validates() {
        let mut m = done_metadata("e1");
        m.fail("corrupt", "JPEG data is truncated", false);
        let event = image_event(&m, &output(None));
        assert_eq!(event.event_type, types::IMAGE_FAILED);
        assert!(event.data.derivatives.is_empty());
        assert_eq!(event.data.error.as_ref().unwrap().kind, "corrupt");
        let value = serde_json::to_value(&event).unwrap();
        validate(&value);
        // The schema ties status to type: a failed event without its error is refused.
        let mut broken = value.clone();
        broken["data"]["error"] = serde_json::Value::Null;
        let schema: serde_json::Value = serde_json::from_str(JSON_SCHEMA).unwrap();
        assert!(!jsonschema::is_valid(&schema, &broken));
        let mut mislabelled = value;
        mislabelled["type"] = types::IMAGE_DONE.into();
        assert!(!jsonschema::is_valid(&schema, &mislabelled));
    }

    #[test]
    fn batch_event_id_follows_the_outcome_and_validates() {
        let manifest = ManifestRef {
            bucket: "ingest".into(),
            key: "manifests/a.json".into(),
            etag: Some("m1".into()),
        };
        let summary = || ObjectRef {
            bucket: "out".into(),
            key: "derived/manifests/a.json/summary.json".into(),
            url: None,
        };
        let counts = BatchCounts {
            items: 4,
            queued: 3,
            done: 2,
            failed: 1,
            missing: 1,
            rejected: 0,
        };
        let a = batch_event(&manifest, summary(), counts, "2026-11-30T12:00:00.000Z");
        let b = batch_event(&manifest, summary(), counts, "2026-11-30T12:00:00.000Z");
        assert_eq!(a, b);
        validate(&serde_json::to_value(&a).unwrap());
        let redriven = BatchCounts {
            done: 3,
            failed: 0,
            ..counts
        };
        assert_ne!(
            batch_event(&manifest, summary(), redriven, "2026-11-30T13:00:00.000Z").id,
            a.id
        );
    }

    #[test]
    fn a_deletion_event_is_stable_and_validates() {
        let source = || DeletedSource {
            bucket: "in".into(),
            key: "uploads/a b.jpg".into(),
            sequencer: Some("0055AED6DCD90281E5".into()),
            version_id: None,
        };
        let keys = vec!["derived/uploads/a b.jpg/preview.jpg".to_string()];
        let a = deleted_event(
            source(),
            keys.clone(),
            &output(Some("https://cdn/")),
            "2026-11-30T12:00:00.000Z",
        );
        let b = deleted_event(
            source(),
            keys,
            &output(Some("https://cdn/")),
            "2026-11-30T12:00:00.000Z",
        );
        assert_eq!(a, b);
        assert_eq!(a.event_type, types::IMAGE_DELETED);
        validate(&serde_json::to_value(&a).unwrap());
        let later = deleted_event(
            DeletedSource {
                sequencer: Some("0055AED6DCD90281E6".into()),
                ..source()
            },
            vec![],
            &output(None),
            "2026-11-30T12:00:01.000Z",
        );
        assert_ne!(a.id, later.id, "a new deletion of the key is a new event");
        validate(&serde_json::to_value(&later).unwrap());
    }
}
