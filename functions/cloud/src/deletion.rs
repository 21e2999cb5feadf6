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
///
/// The folder is listed twice: a variant rendered on request may be stored between the first
/// listing and the deletion of metadata.json. The second listing, after metadata.json is gone,
/// catches it; a render that stores later finds no metadata.json and removes its own variant
/// (`imgpipe_delivery::on_request`). So no variant outlives its source.
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
    if keys.is_empty() {
        return Ok(keys);
    }
    let mut late = store::list_children(s3, bucket, dir).await?;
    late.retain(|k| k != keep);
    if !late.is_empty() {
        store::delete_keys(s3, bucket, &late).await?;
        keys.extend(late);
        keys.sort();
        keys.dedup();
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::effects::{Get, Got, Listed, ObjectHead, ObjectStore, Put};

    /// A folder in memory; the first delete lets a render's PUT land first (it was stored after
    /// the first listing).
    struct Folder {
        keys: Mutex<BTreeSet<String>>,
        late: Mutex<Option<String>>,
    }

    #[async_trait]
    impl ObjectStore for Folder {
        async fn get(&self, _: Get<'_>) -> Result<Got, Failure> {
            unreachable!()
        }
        async fn head(&self, _: &str, _: &str) -> Result<Option<ObjectHead>, Failure> {
            unreachable!()
        }
        async fn put(&self, _: Put<'_>) -> Result<bool, Failure> {
            unreachable!()
        }
        async fn delete(&self, _: &str, keys: &[String]) -> Result<(), Failure> {
            let mut folder = self.keys.lock().unwrap();
            if let Some(late) = self.late.lock().unwrap().take() {
                folder.insert(late);
            }
            for key in keys {
                folder.remove(key);
            }
            Ok(())
        }
        async fn list(
            &self,
            _: &str,
            prefix: &str,
            _: Option<&str>,
            _: Option<&str>,
        ) -> Result<Vec<Listed>, Failure> {
            let folder = self.keys.lock().unwrap();
            Ok(folder
                .iter()
                .filter(|k| k.starts_with(prefix))
                .map(|k| Listed {
                    key: k.clone(),
                    size: 1,
                    etag: None,
                    modified: 0,
                })
                .collect())
        }
        async fn tags(
            &self,
            _: &str,
            _: &str,
            _: Option<&str>,
        ) -> Result<Option<Vec<(String, String)>>, Failure> {
            unreachable!()
        }
        async fn set_tags(
            &self,
            _: &str,
            _: &str,
            _: Option<&str>,
            _: &[(String, String)],
        ) -> Result<bool, Failure> {
            unreachable!()
        }
    }

    #[tokio::test]
    async fn a_variant_stored_during_the_cascade_goes_with_it() {
        let dir = "derived/a.jpg/";
        let folder = Folder {
            keys: Mutex::new(
                ["metadata.json", "thumbnail.jpg", "deleted.json"]
                    .iter()
                    .map(|f| format!("{dir}{f}"))
                    .collect(),
            ),
            late: Mutex::new(Some(format!("{dir}avif.avif"))),
        };
        let keep = format!("{dir}deleted.json");
        let deleted = delete_outputs(&folder, "b", dir, Vec::new(), &keep)
            .await
            .unwrap();
        assert_eq!(
            deleted,
            ["avif.avif", "metadata.json", "thumbnail.jpg"]
                .iter()
                .map(|f| format!("{dir}{f}"))
                .collect::<Vec<_>>(),
            "the late variant is deleted and reported (so the CDN invalidates it)"
        );
        assert_eq!(*folder.keys.lock().unwrap(), BTreeSet::from([keep]));
    }
}
