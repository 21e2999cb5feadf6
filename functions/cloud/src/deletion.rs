//! The deletion cascade: when a source goes, its outputs go with it.
//!
//! `ObjectRemoved:*` and `LifecycleExpiration:*` events of a source delete every object directly under
//! its output prefix (`<prefix><key>/`: derivatives, metadata.json, a manifest's summary and progress)
//! plus any key its metadata lists elsewhere, then leave a small tombstone, `<prefix><key>/deleted.json`,
//! recording the removal's sequencer, so that a late `ObjectCreated` of the deleted upload is
//! recognised and ignored (see [`crate::ordering`]). Processing a newer upload removes the tombstone.
//! Sources with keys under `<key>/…` have their own outputs under `<prefix><key>/…/`: only direct
//! children are deleted, never those. Tombstones carry the object tag [`TOMBSTONE_TAGGING`], which
//! the template's lifecycle rule expires after `TombstoneDays` (30): long after any late event.

use serde::{Deserialize, Serialize};

use crate::failure::Failure;
use crate::store;

/// File name of the tombstone under a source's output prefix.
pub const TOMBSTONE: &str = "deleted.json";

/// Object tags of a tombstone (what the derivatives bucket's lifecycle rule selects).
pub const TOMBSTONE_TAGGING: &str = "imgpipe-kind=tombstone";

/// Schema of the tombstone document.
pub const TOMBSTONE_SCHEMA: &str = "imgpipe.tombstone/v1";

/// What is left of a deleted source: when and by which event its outputs were deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// Always [`TOMBSTONE_SCHEMA`].
    pub schema: String,
    /// Ingest bucket of the source.
    pub bucket: String,
    /// Source key.
    pub key: String,
    /// Sequencer of the removal event.
    pub sequencer: Option<String>,
    /// Version id of the removal (delete marker or deleted version).
    pub version_id: Option<String>,
    /// The S3 event name, e.g. `ObjectRemoved:Delete`.
    pub event_name: String,
    /// When the outputs were deleted (RFC 3339, UTC).
    pub deleted_at: String,
    /// The output keys deleted.
    pub deleted_keys: Vec<String>,
}

/// Reads the tombstone at `key`; `None` when there is none (or it is not a tombstone: not JSON of
/// the schema, or over [`store::MAX_DOCUMENT_BYTES`], which no tombstone of ours is).
pub async fn read_tombstone(
    s3: &dyn crate::effects::ObjectStore,
    bucket: &str,
    key: &str,
) -> Result<Option<Tombstone>, Failure> {
    let found = match store::get_with_etag(s3, bucket, key).await {
        Ok(found) => found,
        Err(failure) if failure.kind == "document_too_large" => {
            tracing::warn!(bucket, key, reason = %failure.message, "not a tombstone");
            None
        }
        Err(failure) => return Err(failure),
    };
    Ok(found
        .and_then(|(body, _)| serde_json::from_slice::<Tombstone>(&body).ok())
        .filter(|t| t.schema == TOMBSTONE_SCHEMA))
}

/// Deletes every object directly under `dir` (which ends with `/`) and each of `listed` (keys the
/// metadata names), except `keep`; returns the deleted keys, sorted.
pub async fn delete_outputs(
    s3: &dyn crate::effects::ObjectStore,
    bucket: &str,
    dir: &str,
    listed: impl IntoIterator<Item = String>,
    keep: &str,
) -> Result<Vec<String>, Failure> {
    let mut keys = store::list_children(s3, bucket, dir).await?;
    keys.extend(listed);
    keys.retain(|k| k != keep);
    keys.sort();
    keys.dedup();
    store::delete_keys(s3, bucket, &keys).await?;
    Ok(keys)
}
