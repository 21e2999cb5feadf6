//! `GET /v1/images/{id}`: where an upload stands.
//!
//! `pending`: the source is in the ingest bucket and no metadata.json describes it yet (or the one
//! there describes an earlier upload to the same key: another ETag). `done` / `failed`: the
//! metadata document for this very upload (same ETag), returned whole. No source: 404.

use imgpipe_core::metadata::{Status, strip_quotes};

use crate::error::ApiError;
use crate::routes::AppState;

/// The status document of upload `id` (a canonical ULID).
pub async fn lookup(state: &AppState, id: &str) -> Result<serde_json::Value, ApiError> {
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
    let key = object.key().unwrap_or_default().to_string();
    let etag = object.e_tag().map(|e| strip_quotes(e).to_string());
    let metadata_key = config.layout.metadata_key(&key);
    let metadata =
        imgpipe_cloud::store::get_metadata(&state.s3, &config.output_bucket, &metadata_key)
            .await
            .map_err(|f| ApiError::upstream("S3 GetObject of metadata.json", f.message))?;
    let current =
        metadata.filter(|m| m.source.etag.as_deref().map(strip_quotes) == etag.as_deref());
    let status = match current.as_ref().map(|m| m.status) {
        Some(Status::Done) => "done",
        Some(Status::Failed) => "failed",
        None => "pending",
    };
    Ok(serde_json::json!({
        "id": id,
        "status": status,
        "source": {
            "bucket": config.ingest_bucket,
            "key": key,
            "etag": etag,
            "bytes": object.size(),
            "uploaded_at": object.last_modified().map(|t| t.to_string()),
        },
        "metadata_key": metadata_key,
        "metadata": current,
    }))
}
