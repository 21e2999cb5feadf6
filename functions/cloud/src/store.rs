//! S3 access: fetch a source (size-checked before the body is read), read and write outputs.
//! Every body is read through [`crate::body`], bounded while it streams: a source by
//! `max_source_bytes`, a header read by its range, a document by [`MAX_DOCUMENT_BYTES`].

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use imgpipe_core::{Limits, Metadata};

use crate::body::{document_too_large, read_body, read_prefix};
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
}

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
    s3: &Client,
    bucket: &str,
    key: &str,
    limits: &Limits,
) -> Result<SourceObject, Failure> {
    let response = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| get_error(bucket, key, e))?;
    if let Some(length) = response.content_length() {
        limits
            .check_bytes(length.max(0) as u64)
            .map_err(|e| Failure::from(&e))?;
    }
    let etag = response.e_tag().map(|e| e.trim_matches('"').to_string());
    let version_id = response
        .version_id()
        .filter(|v| !v.is_empty() && *v != "null")
        .map(str::to_string);
    let over_limit = |n: u64| match limits.check_bytes(n) {
        Err(e) => Failure::from(&e),
        Ok(()) => unreachable!("read_body reports only sizes over the limit"),
    };
    Ok(SourceObject {
        bytes: read_body(
            bucket,
            key,
            response.body,
            limits.max_source_bytes,
            over_limit,
        )
        .await?,
        etag,
        version_id,
    })
}

/// A failed GetObject: a missing key is permanent (nothing to process), anything else transient.
fn get_error(
    bucket: &str,
    key: &str,
    e: aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::get_object::GetObjectError>,
) -> Failure {
    if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
        Failure::permanent(
            "source_missing",
            format!(
                "s3://{bucket}/{key} no longer exists (deleted after upload?); nothing to process"
            ),
        )
    } else {
        Failure::transient(
            "s3_get",
            format!(
                "GetObject s3://{bucket}/{key}: {}",
                crate::aws_error::brief(&e)
            ),
        )
    }
}

/// The first `length` bytes of `bucket/key` (all of it when shorter) and the object's full size:
/// enough to read an image header without downloading the image.
pub async fn get_head(
    s3: &Client,
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
    s3: &Client,
    bucket: &str,
    key: &str,
    length: u64,
    etag: Option<&str>,
) -> Result<Option<(Vec<u8>, Option<u64>)>, Failure> {
    let response = match s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .range(format!("bytes=0-{}", length.saturating_sub(1)))
        .set_if_match(etag.map(|e| format!("\"{}\"", e.trim_matches('"'))))
        .send()
        .await
    {
        Ok(response) => response,
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => return Ok(None),
        Err(e) => return Err(get_error(bucket, key, e)),
    };
    // Content-Range: bytes 0-262143/31457280
    let total = response
        .content_range()
        .and_then(|r| r.rsplit('/').next())
        .and_then(|t| t.parse().ok())
        .or(response.content_length().map(|l| l.max(0) as u64));
    // A store that ignores Range sends the whole object: read_prefix stops at `length` bytes.
    Ok(Some((
        read_prefix(bucket, key, response.body, length).await?,
        total,
    )))
}

/// An object's size and ETag (no quotes), from HeadObject.
pub type Head = (u64, Option<String>);

/// Size and ETag of `bucket/key`, `None` when it does not exist.
pub async fn head(s3: &Client, bucket: &str, key: &str) -> Result<Option<Head>, Failure> {
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(r) => Ok(Some((
            r.content_length().unwrap_or(0).max(0) as u64,
            r.e_tag().map(|e| e.trim_matches('"').to_string()),
        ))),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
        Err(e) => Err(Failure::transient(
            "s3_head",
            format!(
                "HeadObject s3://{bucket}/{key}: {}",
                crate::aws_error::brief(&e)
            ),
        )),
    }
}

/// Reads an existing metadata document; `None` when absent or unreadable as metadata (not JSON of
/// the schema, or over [`MAX_DOCUMENT_BYTES`]), so processing writes a good one over it.
pub async fn get_metadata(
    s3: &Client,
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
    s3: &Client,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
    content_type: &str,
    cache_control: &str,
    tagging: &str,
) -> Result<(), Failure> {
    let request = put_request(s3, bucket, key, bytes, content_type, cache_control).tagging(tagging);
    send_put(request, bucket, key).await
}

/// Writes one object with S3 user metadata `tags` (ASCII values).
pub async fn put_tagged(
    s3: &Client,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
    content_type: &str,
    tags: &[(&str, &str)],
) -> Result<(), Failure> {
    let mut request = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(bytes))
        .content_type(content_type);
    for (name, value) in tags {
        request = request.metadata(*name, *value);
    }
    send_put(request, bucket, key).await
}

/// Writes a metadata document with its [`document_tags`] as S3 user metadata.
pub async fn put_document(
    s3: &Client,
    bucket: &str,
    key: &str,
    metadata: &Metadata,
    cache_control: &str,
) -> Result<(), Failure> {
    let json = serde_json::to_vec_pretty(metadata).expect("metadata serialises");
    let mut request = put_request(s3, bucket, key, json, "application/json", cache_control);
    for (name, value) in document_tags_of(metadata) {
        request = request.metadata(name, value);
    }
    send_put(request, bucket, key).await
}

/// The S3 user metadata of `bucket/key` (names lower-case, without `x-amz-meta-`); `None` when
/// the object does not exist.
pub async fn head_tags(
    s3: &Client,
    bucket: &str,
    key: &str,
) -> Result<Option<std::collections::HashMap<String, String>>, Failure> {
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(r) => Ok(Some(r.metadata().cloned().unwrap_or_default())),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
        Err(e) => Err(Failure::transient(
            "s3_head",
            format!(
                "HeadObject s3://{bucket}/{key}: {}",
                crate::aws_error::brief(&e)
            ),
        )),
    }
}

/// Writes one output object with its Content-Type and Cache-Control.
pub async fn put(
    s3: &Client,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
    content_type: &str,
    cache_control: &str,
) -> Result<(), Failure> {
    let request = put_request(s3, bucket, key, bytes, content_type, cache_control);
    send_put(request, bucket, key).await
}

fn put_request(
    s3: &Client,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
    content_type: &str,
    cache_control: &str,
) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(bytes))
        .content_type(content_type)
        .cache_control(cache_control)
}

/// Sends a PutObject; a failure is a transient `s3_put` naming the object.
async fn send_put(
    request: aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder,
    bucket: &str,
    key: &str,
) -> Result<(), Failure> {
    request
        .send()
        .await
        .map_err(|e| put_error(bucket, key, &e))?;
    Ok(())
}

fn put_error(
    bucket: &str,
    key: &str,
    e: &aws_sdk_s3::error::SdkError<
        aws_sdk_s3::operation::put_object::PutObjectError,
        aws_sdk_s3::config::http::HttpResponse,
    >,
) -> Failure {
    Failure::transient(
        "s3_put",
        format!(
            "PutObject s3://{bucket}/{key}: {}",
            crate::aws_error::brief(e)
        ),
    )
}

/// Reads `bucket/key` with its ETag (quoted, as S3 returns it); `None` when absent. A document is
/// never read past [`MAX_DOCUMENT_BYTES`] (a permanent `document_too_large`).
pub async fn get_with_etag(
    s3: &Client,
    bucket: &str,
    key: &str,
) -> Result<Option<(Vec<u8>, String)>, Failure> {
    match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(response) => {
            let etag = response.e_tag().unwrap_or_default().to_string();
            let too_large = |n: u64| document_too_large(bucket, key, n);
            if let Some(length) = response.content_length()
                && length.max(0) as u64 > MAX_DOCUMENT_BYTES
            {
                return Err(too_large(length as u64));
            }
            let body = read_body(bucket, key, response.body, MAX_DOCUMENT_BYTES, too_large).await?;
            Ok(Some((body, etag)))
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
        Err(e) => Err(Failure::transient(
            "s3_get",
            format!(
                "GetObject s3://{bucket}/{key}: {}",
                crate::aws_error::brief(&e)
            ),
        )),
    }
}

/// Writes `bucket/key` only if its ETag is still `etag` (an S3 conditional write); `Ok(false)` when
/// another writer changed it first (412 Precondition Failed, or 409 for a concurrent conditional
/// write), so the caller re-reads and tries again.
pub async fn put_if_match(
    s3: &Client,
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
    s3: &Client,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
    content_type: &str,
    cache_control: &str,
    etag: Option<&str>,
) -> Result<bool, Failure> {
    let request = put_request(s3, bucket, key, bytes, content_type, cache_control);
    let request = match etag {
        Some(etag) => request.if_match(etag),
        None => request.if_none_match("*"),
    };
    match request.send().await {
        Ok(_) => Ok(true),
        Err(e)
            if matches!(
                e.raw_response().map(|r| r.status().as_u16()),
                Some(412 | 409)
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(put_error(bucket, key, &e)),
    }
}

/// Keys of the objects directly under `dir` (ending with `/`; deeper keys are not listed).
pub async fn list_children(s3: &Client, bucket: &str, dir: &str) -> Result<Vec<String>, Failure> {
    Ok(list(s3, bucket, dir, Some("/"))
        .await?
        .into_iter()
        .map(|(key, _)| key)
        .collect())
}

/// `(key, last modified, seconds since the epoch)` of every object under `prefix` (only those
/// before the next `delimiter`, when given).
pub async fn list(
    s3: &Client,
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

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag, without quotes.
    pub etag: Option<String>,
    /// Last modified, seconds since the epoch.
    pub modified: i64,
}

/// Every object under `prefix` in key order (only those before the next `delimiter`, when given;
/// only keys after `start_after`, when given). Pages with continuation tokens and fails, instead
/// of looping, when one comes back twice (LocalStack 4.13 does that on keys with spaces).
/// `start_after` is also applied here, since LocalStack decodes it twice.
pub async fn list_objects(
    s3: &Client,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    start_after: Option<&str>,
) -> Result<Vec<Listed>, Failure> {
    let mut found = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_string))
            .set_start_after(start_after.map(str::to_string))
            .set_continuation_token(token.clone())
            .send()
            .await
            .map_err(|e| {
                Failure::transient(
                    "s3_list",
                    format!(
                        "ListObjectsV2 s3://{bucket}/{prefix}: {}",
                        crate::aws_error::brief(&e)
                    ),
                )
            })?;
        found.extend(page.contents().iter().filter_map(|o| {
            let key = o.key()?;
            if start_after.is_some_and(|after| key <= after) {
                return None;
            }
            Some(Listed {
                key: key.to_string(),
                size: o.size().unwrap_or(0).max(0) as u64,
                etag: o.e_tag().map(|e| e.trim_matches('"').to_string()),
                modified: o.last_modified().map_or(0, |t| t.secs()),
            })
        }));
        match page.next_continuation_token() {
            None => return Ok(found),
            Some(next) if token.as_deref() == Some(next) => {
                return Err(Failure::transient(
                    "s3_list",
                    format!(
                        "ListObjectsV2 s3://{bucket}/{prefix} returned the same continuation token twice after {} keys (LocalStack does this for keys with spaces)",
                        found.len()
                    ),
                ));
            }
            Some(next) => token = Some(next.to_string()),
        }
    }
}

/// Deletes `keys` (DeleteObjects, 1 000 per request); a key that is already gone counts as deleted.
pub async fn delete_keys(s3: &Client, bucket: &str, keys: &[String]) -> Result<(), Failure> {
    use aws_sdk_s3::types::{Delete, ObjectIdentifier};
    for chunk in keys.chunks(1000) {
        let objects = chunk
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Failure::permanent("internal", format!("DeleteObjects request: {e}")))?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| Failure::permanent("internal", format!("DeleteObjects request: {e}")))?;
        let response = s3
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| {
                Failure::transient(
                    "s3_delete",
                    format!(
                        "DeleteObjects s3://{bucket} ({} keys): {}",
                        chunk.len(),
                        crate::aws_error::brief(&e)
                    ),
                )
            })?;
        if let Some(error) = response.errors().first() {
            return Err(Failure::transient(
                "s3_delete",
                format!(
                    "DeleteObjects s3://{bucket}/{}: {} {} ({} of {} keys not deleted)",
                    error.key().unwrap_or_default(),
                    error.code().unwrap_or_default(),
                    error.message().unwrap_or_default(),
                    response.errors().len(),
                    chunk.len()
                ),
            ));
        }
    }
    Ok(())
}
