//! `GET /v1/images/{id}`: where an upload stands.
//!
//! `pending`: the source is in the ingest bucket and no metadata.json describes it yet (or the one
//! there describes an earlier upload to the same key: another ETag). `done` / `failed`: the
//! metadata document for this very upload (same ETag). No source: 404.
//!
//! An authenticated caller (see [`crate::auth`]) gets the whole document. Anyone else gets its
//! public view (`Metadata::public_view`: no location, capture time, copyright, hashes or bucket
//! names) unless the operator set `IMGPIPE_ANONYMOUS_METADATA=full`: the id is in every
//! derivative's URL, so whoever holds one image link could otherwise read where it was taken.

use imgpipe_core::metadata::{Metadata, Status, strip_quotes};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::AppState;

/// The source object's facts from the listing.
#[derive(Debug, Clone, Default)]
pub struct SourceObject {
    /// Its key.
    pub key: String,
    /// Its ETag, without quotes.
    pub etag: Option<String>,
    /// Its size.
    pub bytes: Option<i64>,
    /// When S3 stored it (RFC 3339).
    pub uploaded_at: Option<String>,
}

/// The answer for upload `id`: `metadata` is the document stored for the key (any upload's);
/// `full` says whether the caller may see all of it.
pub fn document(
    id: &str,
    ingest_bucket: &str,
    metadata_key: &str,
    object: &SourceObject,
    metadata: Option<Metadata>,
    full: bool,
) -> serde_json::Value {
    let current =
        metadata.filter(|m| m.source.etag.as_deref().map(strip_quotes) == object.etag.as_deref());
    let status = match current.as_ref().map(|m| m.status) {
        Some(Status::Done) => "done",
        Some(Status::Failed) => "failed",
        None => "pending",
    };
    let mut source = serde_json::json!({
        "key": object.key,
        "bytes": object.bytes,
        "uploaded_at": object.uploaded_at,
    });
    if full {
        source["bucket"] = ingest_bucket.into();
        source["etag"] = object.etag.clone().into();
    }
    serde_json::json!({
        "id": id,
        "status": status,
        "view": if full { "full" } else { "public" },
        "source": source,
        "metadata_key": metadata_key,
        "metadata": current.map(|m| if full { m } else { m.public_view() }),
    })
}

/// The source object of upload `id` (a canonical ULID), from a listing of its prefix; 404 when
/// there is none.
pub async fn find_source(state: &AppState, id: &str) -> Result<SourceObject, ApiError> {
    let config = &state.config;
    let prefix = format!("{}{id}/", config.upload_prefix);
    // One key per id (the policy pins it), so no paging: max-keys 1 needs no continuation token
    // (LocalStack's paging breaks on keys with spaces; real S3's does not).
    let listed = state
        .s3
        .list_objects_v2()
        .bucket(&config.ingest_bucket)
        .prefix(&prefix)
        .max_keys(1)
        .send()
        .await
        .map_err(|e| {
            ApiError::upstream(
                "S3 ListObjectsV2 on the ingest bucket",
                imgpipe_cloud::aws_error::brief(&e),
            )
        })?;
    let Some(object) = listed.contents().first() else {
        return Err(ApiError::not_found(
            "id",
            format!("no upload with id {id}: not uploaded (yet), or deleted"),
        ));
    };
    Ok(SourceObject {
        key: object.key().unwrap_or_default().to_string(),
        etag: object.e_tag().map(|e| strip_quotes(e).to_string()),
        bytes: object.size(),
        uploaded_at: object.last_modified().map(|t| t.to_string()),
    })
}

/// The status document of upload `id` (a canonical ULID) as `caller` may see it.
pub async fn lookup(
    state: &AppState,
    id: &str,
    caller: &Caller,
) -> Result<serde_json::Value, ApiError> {
    let config = &state.config;
    let object = find_source(state, id).await?;
    let metadata_key = config.layout.metadata_key(&object.key);
    let metadata =
        imgpipe_cloud::store::get_metadata(&state.s3, &config.output_bucket, &metadata_key)
            .await
            .map_err(|f| ApiError::upstream("S3 GetObject of metadata.json", f.message))?;
    let full = caller.is_authenticated() || config.anonymous_metadata_full;
    Ok(document(
        id,
        &config.ingest_bucket,
        &metadata_key,
        &object,
        metadata,
        full,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgpipe_core::exif::GpsPosition;
    use imgpipe_core::metadata::SourceInfo;

    fn stored() -> Metadata {
        let mut m = Metadata::new(
            SourceInfo {
                bucket: "acme-ingest".into(),
                key: "uploads/01J/a.jpg".into(),
                etag: Some("e1".into()),
                ..SourceInfo::default()
            },
            "hash",
        );
        m.gps = Some(GpsPosition {
            latitude: 40.446972,
            longitude: -3.724753,
            altitude_m: None,
        });
        m
    }

    fn answer(full: bool) -> String {
        let object = SourceObject {
            key: "uploads/01J/a.jpg".into(),
            etag: Some("e1".into()),
            ..SourceObject::default()
        };
        let value = document(
            "01J",
            "acme-ingest",
            "derived/m",
            &object,
            Some(stored()),
            full,
        );
        assert_eq!(value["status"], "done");
        value.to_string()
    }

    #[test]
    fn anonymous_callers_get_the_public_view() {
        let public = answer(false);
        for hidden in ["40.44", "latitude", "acme-ingest", "\"e1\""] {
            assert!(!public.contains(hidden), "{hidden} in {public}");
        }
        assert!(public.contains(r#""view":"public""#), "{public}");
        let full = answer(true);
        for shown in ["40.44", "acme-ingest", "\"e1\"", r#""view":"full""#] {
            assert!(full.contains(shown), "{shown} not in {full}");
        }
    }
}
