//! Batch manifests: an object under the manifest prefix that lists source keys to (re)process on the
//! GPU worker (backfills). Parsed and validated here, purely; the handler fans the items out.
//!
//! Accepted forms (the first non-blank byte decides JSON vs CSV):
//! - JSON: `["photos/a.jpg", "photos/b.png"]` or `{"bucket": "other-bucket", "keys": [...]}`;
//! - CSV with a header row naming a `key` or a `url` column (or both) and optionally a `bucket`
//!   column (RFC 4180 quoting, so keys may hold commas). Without `bucket`, items are in the
//!   manifest's own bucket.
//!
//! An entry that is a URL (`https://…`, or any other `scheme://`) becomes a [`Manifest::urls`]
//! item for the [`crate::importer`], which refuses what its policy does not allow, with the reason
//! in the summary; `s3://` URLs are refused here (give the bucket and key instead). Limits:
//! [`MAX_MANIFEST_BYTES`], [`MAX_ITEMS`].

use serde::Deserialize;

/// Largest manifest object read.
pub const MAX_MANIFEST_BYTES: u64 = 8 << 20;
/// Most items in one manifest; split bigger backfills into several manifests.
pub const MAX_ITEMS: usize = 50_000;

/// One listed source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Bucket of the source.
    pub bucket: String,
    /// Key of the source (as listed, not URL-encoded).
    pub key: String,
}

/// A line that cannot become a job, and why (recorded in the summary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// What the manifest said.
    pub entry: String,
    /// Why it was refused.
    pub reason: String,
}

/// A parsed manifest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// Valid items, in manifest order, duplicates removed.
    pub items: Vec<Item>,
    /// URLs to import, in manifest order, duplicates removed.
    pub urls: Vec<String>,
    /// Refused entries.
    pub rejected: Vec<Rejected>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonManifest {
    Keys(Vec<String>),
    Object {
        bucket: Option<String>,
        keys: Vec<String>,
    },
}

/// Parses `bytes`; `default_bucket` is the manifest's own bucket. Errors are permanent (the whole
/// manifest is unreadable); single bad entries are [`Rejected`] instead.
pub fn parse(bytes: &[u8], default_bucket: &str) -> Result<Manifest, String> {
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(format!(
            "manifest is {} bytes, over the {MAX_MANIFEST_BYTES}-byte limit; split it",
            bytes.len()
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "manifest is not UTF-8 text".to_string())?;
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    let entries: Vec<(String, String)> = if trimmed.starts_with('[') || trimmed.starts_with('{') {
        match serde_json::from_str::<JsonManifest>(trimmed) {
            Ok(JsonManifest::Keys(keys)) => keys
                .into_iter()
                .map(|k| (default_bucket.to_string(), k))
                .collect(),
            Ok(JsonManifest::Object { bucket, keys }) => {
                let bucket = bucket.unwrap_or_else(|| default_bucket.to_string());
                keys.into_iter().map(|k| (bucket.clone(), k)).collect()
            }
            Err(e) => {
                return Err(format!(
                    "manifest JSON must be a list of keys or {{\"bucket\", \"keys\"}}: {e}"
                ));
            }
        }
    } else {
        parse_csv(trimmed, default_bucket)?
    };
    if entries.len() > MAX_ITEMS {
        return Err(format!(
            "manifest lists {} items, over the {MAX_ITEMS}-item limit; split it",
            entries.len()
        ));
    }
    let mut manifest = Manifest::default();
    let mut seen = std::collections::HashSet::new();
    for (bucket, key) in entries {
        let key = key.trim().to_string();
        let reject = |reason: &str| Rejected {
            entry: key.clone(),
            reason: reason.into(),
        };
        if key.is_empty() {
            continue;
        }
        if key.starts_with("s3://") {
            manifest.rejected.push(reject(
                "s3:// URLs are not read; list the key, with the bucket in a bucket column",
            ));
        } else if is_url(&key) {
            if seen.insert((String::new(), key.clone())) {
                manifest.urls.push(key);
            }
        } else if key.len() > 1024 {
            manifest
                .rejected
                .push(reject("longer than S3's 1024-byte key limit"));
        } else if seen.insert((bucket.clone(), key.clone())) {
            manifest.items.push(Item { bucket, key });
        }
    }
    Ok(manifest)
}

/// Moves the items whose bucket `accepts` refuses to `rejected`, with `reason(bucket)`: a manifest
/// may name only the buckets this stack processes (its ingest bucket, `IMGPIPE_BACKFILL_BUCKETS`).
pub fn refuse_buckets(
    manifest: &mut Manifest,
    accepts: impl Fn(&str) -> bool,
    reason: impl Fn(&str) -> String,
) {
    let (kept, refused): (Vec<Item>, Vec<Item>) = std::mem::take(&mut manifest.items)
        .into_iter()
        .partition(|item| accepts(&item.bucket));
    manifest.items = kept;
    manifest
        .rejected
        .extend(refused.into_iter().map(|item| Rejected {
            reason: reason(&item.bucket),
            entry: format!("{},{}", item.bucket, item.key),
        }));
}

/// `scheme://…` with an RFC 3986 scheme.
fn is_url(entry: &str) -> bool {
    entry.split_once("://").is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

fn parse_csv(text: &str, default_bucket: &str) -> Result<Vec<(String, String)>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| format!("manifest CSV header: {e}"))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let key_column = column("key");
    let url_column = column("url");
    if key_column.is_none() && url_column.is_none() {
        return Err(format!(
            "manifest CSV needs a header row with a 'key' or a 'url' column (found: {})",
            headers.iter().collect::<Vec<_>>().join(",")
        ));
    }
    let bucket_column = column("bucket");
    let mut entries = Vec::new();
    for (line, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("manifest CSV row {}: {e}", line + 2))?;
        let cell = |column: Option<usize>| column.and_then(|c| record.get(c)).unwrap_or("");
        let key = match cell(key_column) {
            "" => cell(url_column),
            key => key,
        }
        .to_string();
        let bucket = bucket_column
            .and_then(|c| record.get(c))
            .filter(|b| !b.is_empty())
            .unwrap_or(default_bucket)
            .to_string();
        entries.push((bucket, key));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(bucket: &str, key: &str) -> Item {
        Item {
            bucket: bucket.into(),
            key: key.into(),
        }
    }

    #[test]
    fn json_lists_and_objects() {
        let m = parse(br#"["a.jpg", "b/c d.png", "a.jpg", ""]"#, "ingest").unwrap();
        assert_eq!(
            m.items,
            [item("ingest", "a.jpg"), item("ingest", "b/c d.png")]
        );
        let m = parse(br#"{"bucket": "old", "keys": ["x.jpg"]}"#, "ingest").unwrap();
        assert_eq!(m.items, [item("old", "x.jpg")]);
    }

    #[test]
    fn csv_with_header_quoting_and_bucket_column() {
        let csv = "bucket,key\n,plain.jpg\nold,\"with, comma.jpg\"\n";
        let m = parse(csv.as_bytes(), "ingest").unwrap();
        assert_eq!(
            m.items,
            [item("ingest", "plain.jpg"), item("old", "with, comma.jpg")]
        );
        let m = parse(b"\xef\xbb\xbfkey\r\na.jpg\r\n", "ingest").unwrap();
        assert_eq!(m.items, [item("ingest", "a.jpg")]);
    }

    #[test]
    fn urls_go_to_the_importer_and_s3_urls_are_refused() {
        let m = parse(
            b"key\nhttps://example.com/a.jpg\nhttp://169.254.169.254/x\nftp://x.test/y\nhttps://example.com/a.jpg\ns3://b/k.jpg\nok.jpg\n",
            "b",
        )
        .unwrap();
        assert_eq!(m.items, [item("b", "ok.jpg")]);
        assert_eq!(
            m.urls,
            [
                "https://example.com/a.jpg",
                "http://169.254.169.254/x",
                "ftp://x.test/y"
            ]
        );
        assert_eq!(m.rejected.len(), 1);
        assert!(m.rejected[0].reason.contains("s3:// URLs"));
        // A CSV of URLs (seed 004's shape): a url column.
        let m = parse(
            b"url,caption\nhttps://img.test/1.jpg,one\nhttps://img.test/2.jpg,two\n",
            "b",
        )
        .unwrap();
        assert_eq!(m.urls.len(), 2);
        assert!(m.items.is_empty());
        // A key that merely contains "://" further on is a key.
        let m = parse(br#"["photos/a://b.jpg"]"#, "b").unwrap();
        assert_eq!(m.items, [item("b", "photos/a://b.jpg")]);
    }

    #[test]
    fn unreadable_manifests_say_why() {
        assert!(
            parse(b"name\nx\n", "b")
                .unwrap_err()
                .contains("'key' or a 'url' column")
        );
        assert!(
            parse(b"{\"nope\": 1}", "b")
                .unwrap_err()
                .contains("list of keys")
        );
        assert!(
            parse(&[0xff, 0xfe, 0x00], "b")
                .unwrap_err()
                .contains("UTF-8")
        );
        let many = format!("key\n{}", "a\n".repeat(10));
        assert!(parse(many.as_bytes(), "b").is_ok());
    }

    #[test]
    fn items_of_other_buckets_are_rejected_with_the_reason() {
        let mut m = parse(
            b"bucket,key\ningest,a.jpg\narchive,b.jpg\nelsewhere,c.jpg\n,d.jpg\n",
            "ingest",
        )
        .unwrap();
        refuse_buckets(
            &mut m,
            |b| b == "ingest" || b == "archive",
            |b| format!("'{b}' is not a source"),
        );
        let kept: Vec<(&str, &str)> = m
            .items
            .iter()
            .map(|i| (i.bucket.as_str(), i.key.as_str()))
            .collect();
        assert_eq!(
            kept,
            [
                ("ingest", "a.jpg"),
                ("archive", "b.jpg"),
                ("ingest", "d.jpg")
            ]
        );
        assert_eq!(m.rejected.len(), 1);
        assert_eq!(m.rejected[0].entry, "elsewhere,c.jpg");
        assert_eq!(m.rejected[0].reason, "'elsewhere' is not a source");
    }
}
