//! Collects what the gallery shows: the newest `metadata.json` documents under the output prefix and,
//! for each derivative, a URL a browser can open from anywhere (under `--base-url`, e.g. the CDN or the
//! local gateway, or else a pre-signed GET that needs no public bucket).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use imgpipe_core::Metadata;
use imgpipe_core::pipeline::public_url;

/// One source as the gallery shows it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Key of its metadata document.
    pub metadata_key: String,
    /// The document, or why it could not be read.
    pub metadata: Result<Metadata, String>,
    /// Derivative key → URL to load it from.
    pub urls: BTreeMap<String, String>,
}

/// How derivative URLs are made.
#[derive(Debug, Clone)]
pub enum Links {
    /// `<base>/<percent-encoded key>`: the CDN, or the local gateway.
    Base(String),
    /// Pre-signed GetObject URLs valid this long (at most 7 days).
    Presigned(Duration),
}

/// Longest a pre-signed URL may live (SigV4's limit).
pub const MAX_PRESIGNED: Duration = Duration::from_secs(7 * 24 * 3600);

/// Reads up to `limit` metadata documents under `prefix` in `bucket`, newest first.
pub async fn collect(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    limit: usize,
    links: &Links,
) -> Result<Vec<Entry>, String> {
    let mut documents = list_metadata(s3, bucket, prefix).await?;
    documents.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    documents.truncate(limit);
    let mut entries = Vec::with_capacity(documents.len());
    for (key, _) in documents {
        let metadata = read_metadata(s3, bucket, &key).await;
        let mut urls = BTreeMap::new();
        if let Ok(metadata) = &metadata {
            for d in &metadata.derivatives {
                urls.insert(d.key.clone(), link(s3, bucket, &d.key, links).await?);
            }
        }
        entries.push(Entry {
            metadata_key: key,
            metadata,
            urls,
        });
    }
    Ok(entries)
}

/// `(key, last modified seconds)` of every `…/metadata.json` under `prefix`.
async fn list_metadata(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<(String, i64)>, String> {
    let mut found = imgpipe_cloud::store::list(s3, bucket, prefix, None)
        .await
        .map_err(|f| format!("{}: {}", f.kind, f.message))?;
    found.retain(|(key, _)| key.ends_with("/metadata.json"));
    Ok(found)
}

async fn read_metadata(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Metadata, String> {
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| format!("S3 GetObject: {}", imgpipe_cloud::aws_error::brief(&e)))?;
    let bytes = object
        .body
        .collect()
        .await
        .map_err(|e| format!("S3 GetObject body: {e}"))?
        .into_bytes();
    serde_json::from_slice(&bytes).map_err(|e| format!("not an imgpipe metadata document: {e}"))
}

async fn link(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    links: &Links,
) -> Result<String, String> {
    match links {
        Links::Base(base) => Ok(public_url(base, key)),
        Links::Presigned(expiry) => {
            let config = PresigningConfig::expires_in((*expiry).min(MAX_PRESIGNED))
                .map_err(|e| format!("pre-signing: {e}"))?;
            let request = s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .presigned(config)
                .await
                .map_err(|e| {
                    format!(
                        "pre-signing GetObject s3://{bucket}/{key}: {}",
                        imgpipe_cloud::aws_error::brief(&e)
                    )
                })?;
            Ok(request.uri().to_string())
        }
    }
}
