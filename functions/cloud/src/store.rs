//! S3 access, as imgpipe means it: fetch a source (size-checked before the body is read), read and
//! write outputs and documents. Every call goes through the [`ObjectStore`] boundary
//! ([`crate::effects`]); the AWS executor reads every body bounded while it streams: a source by
//! `max_source_bytes`, a header read by its range, a document by [`MAX_DOCUMENT_BYTES`].

use aws_sdk_s3::Client;
use imgpipe_core::{Limits, Metadata};

use crate::body::document_too_large;
pub use crate::effects::Listed;
use crate::effects::{Condition, Get, Got, ObjectStore, Put};
use crate::failure::Failure;

pub use crate::body::MAX_DOCUMENT_BYTES;

/// A downloaded source object.
#[derive(Debug)]
pub struct SourceObject {
    /// The object bytes.
    pub bytes: Vec<u8>,
    /// The object's current ETag (no quotes).
    pub etag: Option<String>,
    /// The version read, in a versioned bucket.
    pub version_id: Option<String>,
    /// S3 user metadata (names lower-case, without `x-amz-meta-`).
    pub metadata: std::collections::HashMap<String, String>,
}

impl SourceObject {
    /// The app's focal point, from the `focus` user metadata (`x-amz-meta-focus: 0.25,0.4`, set by
    /// the upload API): `Ok(None)` when there is none; `Err` says why a value is unusable (the image
    /// is processed without it, and the caller logs the reason).
    pub fn focus(&self) -> Result<Option<imgpipe_core::focus::FocalPoint>, String> {
        focus_in(&self.metadata)
    }
}

/// The app's focal point in an object's S3 user metadata (from GetObject or HeadObject); `Err`
/// says why a value is unreadable.
pub fn focus_in(
    metadata: &std::collections::HashMap<String, String>,
) -> Result<Option<imgpipe_core::focus::FocalPoint>, String> {
    metadata
        .get(FOCUS_METADATA)
        .map(|text| imgpipe_core::focus::FocalPoint::parse(text))
        .transpose()
}

/// The S3 user-metadata name of the app's focal point (`x-amz-meta-focus`).
pub const FOCUS_METADATA: &str = "focus";

/// Builds the S3 client; path-style addressing when an endpoint override (LocalStack) is set.
pub fn client(shared: &aws_config::SdkConfig, endpoint_override: bool) -> Client {
    let mut builder = aws_sdk_s3::config::Builder::from(shared)
        .force_path_style(endpoint_override)
        .timeout_config(stall_timeouts());
    if endpoint_override {
        builder = builder
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            );
    }
    Client::from_conf(builder.build())
}

/// S3 calls give up on a silent connection after [`READ_TIMEOUT`] (and the SDK's standard retry
/// tries twice more), so a stalled endpoint fails the image as a transient `s3_*` error, retried
/// with backoff, instead of holding it (and its Lambda) until the invocation's timeout. The SDK sets
/// no read timeout by default. Not for SQS: a long poll is silent for up to 20 s by design.
pub const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn stall_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_millis(3100))
        .read_timeout(READ_TIMEOUT)
        .build()
}

/// Downloads `bucket/key`, refusing objects over `limits.max_source_bytes` before reading the body.
pub async fn get_source(
    s3: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    limits: &Limits,
) -> Result<SourceObject, Failure> {
    match s3
        .get(Get::whole(bucket, key, limits.max_source_bytes))
        .await?
    {
        Got::Found(object) => Ok(SourceObject {
            bytes: object.bytes,
            etag: object.etag,
            version_id: object.version_id,
            metadata: object.metadata,
        }),
        Got::Missing | Got::NotMatched => Err(source_missing(bucket, key)),
        Got::TooLarge(n) => Err(match limits.check_bytes(n) {
            Err(e) => Failure::from(&e),
            Ok(()) => unreachable!("the store reports only sizes over the limit"),
        }),
    }
}

/// A source gone before it was read: permanent, nothing to process.
fn source_missing(bucket: &str, key: &str) -> Failure {
    Failure::permanent(
        "source_missing",
        format!("s3://{bucket}/{key} no longer exists (deleted after upload?); nothing to process"),
    )
}

/// The first `length` bytes of `bucket/key` (all of it when shorter) and the object's full size:
/// enough to read an image header without downloading the image.
pub async fn get_head(
    s3: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    length: u64,
) -> Result<(Vec<u8>, Option<u64>), Failure> {
    Ok(get_head_if(s3, bucket, key, length, None)
        .await?
        .expect("no condition, no precondition failure"))
}

/// [`get_head`] of the version whose ETag is `etag` (`If-Match`); `None` when the object now has
/// another ETag.
pub async fn get_head_if(
    s3: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    length: u64,
    etag: Option<&str>,
) -> Result<Option<(Vec<u8>, Option<u64>)>, Failure> {
    let request = Get {
        bucket,
        key,
        first_bytes: Some(length),
        if_match: etag,
        max_bytes: length,
    };
    match s3.get(request).await? {
        Got::Found(object) => Ok(Some((object.bytes, object.size))),
        Got::NotMatched => Ok(None),
        Got::Missing => Err(source_missing(bucket, key)),
        Got::TooLarge(_) => unreachable!("a range read has no size limit"),
    }
}

/// An object's size and ETag (no quotes), from HeadObject.
pub type Head = (u64, Option<String>);

/// Size and ETag of `bucket/key`, `None` when it does not exist.
pub async fn head(s3: &dyn ObjectStore, bucket: &str, key: &str) -> Result<Option<Head>, Failure> {
    Ok(s3.head(bucket, key).await?.map(|h| (h.size, h.etag)))
}

/// Reads an existing metadata document; `None` when absent or unreadable as metadata (not JSON of
/// the schema, or over [`MAX_DOCUMENT_BYTES`]), so processing writes a good one over it.
pub async fn get_metadata(
    s3: &dyn ObjectStore,
    bucket: &str,
    key: &str,
) -> Result<Option<Metadata>, Failure> {
    match get_with_etag(s3, bucket, key).await {
        Ok(found) => Ok(found.and_then(|(body, _)| serde_json::from_slice(&body).ok())),
        Err(failure) if failure.kind == "document_too_large" => {
            tracing::warn!(bucket, key, reason = %failure.message, "metadata.json unreadable; it will be replaced");
            Ok(None)
        }
        Err(failure) => Err(failure),
    }
}

/// S3 user metadata (`x-amz-meta-*`) on every metadata.json: enough for a HEAD to tell whether
/// the document is current (`imgpipe backfill`), without downloading and parsing it.
pub mod document_tags {
    /// Hash of the preset set the document was made with.
    pub const PRESET_HASH: &str = "imgpipe-preset-hash";
    /// `done` or `failed`.
    pub const STATUS: &str = "imgpipe-status";
    /// ETag of the source the document describes (no quotes).
    pub const SOURCE_ETAG: &str = "imgpipe-source-etag";
}

/// The [`document_tags`] of `metadata`.
pub fn document_tags_of(metadata: &Metadata) -> Vec<(&'static str, String)> {
    let mut tags = vec![
        (document_tags::PRESET_HASH, metadata.preset_set_hash.clone()),
        (
            document_tags::STATUS,
            match metadata.status {
                imgpipe_core::metadata::Status::Done => "done".into(),
                imgpipe_core::metadata::Status::Failed => "failed".into(),
            },
        ),
    ];
    if let Some(etag) = &metadata.source.etag {
        // User metadata must be US-ASCII; an ETag is hex (and a dash), but never trust it blindly.
        let etag = etag.trim_matches('"');
        if etag.is_ascii() {
            tags.push((document_tags::SOURCE_ETAG, etag.to_string()));
        }
    }
    tags
}

/// Writes one object with its Content-Type, Cache-Control and object tags `tagging`
/// (`key=value&…`, what lifecycle rules select on).
pub async fn put_tagging(
    s3: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
    content_type: &str,
    cache_control: &str,
    tagging: &str,
) -> Result<(), Failure> {
    let mut put = Put::new(bucket, key, bytes, content_type);
    put.cache_control = Some(cache_control);
    put.tagging = Some(tagging);
    s3.put(put).await.map(drop)
}

/// Writes one object with S3 user metadata `tags` (ASCII values).
pub async fn put_tagged(
    s3: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
    content_type: &str,
    tags: &[(&str, &str)],
) -> Result<(), Failure> {
    let mut put = Put::new(bucket, key, bytes, content_type);
    put.metadata = tags.iter().map(|(n, v)| (*n, v.to_string())).collect();
    s3.put(put).await.map(drop)
}

/// Writes a metadata document with its [`document_tags`] as S3 user metadata.
pub async fn put_document(
    s3: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    metadata: &Metadata,
    cache_control: &str,
) -> Result<(), Failure> {
    s3.put(document_put(bucket, key, metadata, cache_control))
        .await
        .map(drop)
}

/// The PutObject of a metadata document: pretty JSON, its Cache-Control and [`document_tags`].
fn document_put<'a>(
    bucket: &'a str,
    key: &'a str,
    metadata: &Metadata,
    cache_control: &'a str,
) -> Put<'a> {
    let json = serde_json::to_vec_pretty(metadata).expect("metadata serialises");
    let mut put = Put::new(bucket, key, json, "application/json");
    put.cache_control = Some(cache_control);
    put.metadata = document_tags_of(metadata);
    put
}

/// [`put_document`] only while the stored document's ETag is still `etag` (If-Match); `Ok(false)`
/// when another run rewrote it first.
pub async fn put_document_if(
    s3: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    metadata: &Metadata,
    cache_control: &str,
    etag: &str,
) -> Result<bool, Failure> {
    let mut put = document_put(bucket, key, metadata, cache_control);
    put.condition = Some(Condition::IfMatch(etag));
    s3.put(put).await
}

/// The S3 user metadata of `bucket/key` (names lower-case, without `x-amz-meta-`); `None` when
/// the object does not exist.
pub async fn head_tags(
    s3: &dyn ObjectStore,
    bucket: &str,
    key: &str,
) -> Result<Option<std::collections::HashMap<String, String>>, Failure> {
    Ok(s3.head(bucket, key).await?.map(|h| h.metadata))
}

/// Writes one output object with its Content-Type and Cache-Control.
pub async fn put(
    s3: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
    content_type: &str,
    cache_control: &str,
) -> Result<(), Failure> {
    let mut put = Put::new(bucket, key, bytes, content_type);
    put.cache_control = Some(cache_control);
    s3.put(put).await.map(drop)
}

/// Reads `bucket/key` with its ETag (no quotes); `None` when absent. A document is never read past
/// [`MAX_DOCUMENT_BYTES`] (a permanent `document_too_large`).
pub async fn get_with_etag(
    s3: &dyn ObjectStore,
    bucket: &str,
    key: &str,
) -> Result<Option<(Vec<u8>, String)>, Failure> {
    match s3.get(Get::whole(bucket, key, MAX_DOCUMENT_BYTES)).await? {
        Got::Found(object) => Ok(Some((object.bytes, object.etag.unwrap_or_default()))),
        Got::Missing | Got::NotMatched => Ok(None),
        Got::TooLarge(n) => Err(document_too_large(bucket, key, n)),
    }
}

/// Writes `bucket/key` only if its ETag is still `etag` (an S3 conditional write); `Ok(false)` when
/// another writer changed it first (412 Precondition Failed, or 409 for a concurrent conditional
/// write), so the caller re-reads and tries again.
pub async fn put_if_match(
    s3: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
    content_type: &str,
    cache_control: &str,
    etag: &str,
) -> Result<bool, Failure> {
    put_if(
        s3,
        bucket,
        key,
        bytes,
        content_type,
        cache_control,
        Some(etag),
    )
    .await
}

/// Writes `bucket/key` only if it is still at `etag` (If-Match), or, with `None`, only if it does
/// not exist (If-None-Match: *); `Ok(false)` when another writer got there first.
pub async fn put_if(
    s3: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
    content_type: &str,
    cache_control: &str,
    etag: Option<&str>,
) -> Result<bool, Failure> {
    let mut put = Put::new(bucket, key, bytes, content_type);
    put.cache_control = Some(cache_control);
    put.condition = Some(match etag {
        Some(etag) => Condition::IfMatch(etag),
        None => Condition::IfNoneMatch,
    });
    s3.put(put).await
}

/// Keys of the objects directly under `dir` (ending with `/`; deeper keys are not listed).
pub async fn list_children(
    s3: &dyn ObjectStore,
    bucket: &str,
    dir: &str,
) -> Result<Vec<String>, Failure> {
    Ok(list(s3, bucket, dir, Some("/"))
        .await?
        .into_iter()
        .map(|(key, _)| key)
        .collect())
}

/// `(key, last modified, seconds since the epoch)` of every object under `prefix` (only those
/// before the next `delimiter`, when given).
pub async fn list(
    s3: &dyn ObjectStore,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
) -> Result<Vec<(String, i64)>, Failure> {
    Ok(list_objects(s3, bucket, prefix, delimiter, None)
        .await?
        .into_iter()
        .map(|o| (o.key, o.modified))
        .collect())
}

/// Every object under `prefix` in key order (only those before the next `delimiter`, when given;
/// only keys after `start_after`, when given).
pub async fn list_objects(
    s3: &dyn ObjectStore,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    start_after: Option<&str>,
) -> Result<Vec<Listed>, Failure> {
    s3.list(bucket, prefix, delimiter, start_after).await
}

/// Deletes `keys` (DeleteObjects, 1 000 per request); a key that is already gone counts as deleted.
pub async fn delete_keys(
    s3: &dyn ObjectStore,
    bucket: &str,
    keys: &[String],
) -> Result<(), Failure> {
    if keys.is_empty() {
        return Ok(());
    }
    s3.delete(bucket, keys).await
}
