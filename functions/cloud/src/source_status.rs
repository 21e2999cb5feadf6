//! The ingest object's `imgpipe-status` tag, what the ingest bucket's lifecycle rules select on.
//!
//! The upload API tags every upload it signs `pending` (the tag is part of the signed POST policy
//! and of the pre-signed PUT). The handler tags a source of the ingest bucket `done` before it
//! writes the `done` document (a failed tagging retries the record: a processed original must not
//! expire), and `pending` ones `failed` after a permanent failure (best effort: the object is then
//! still `pending`, which expires all the same). A `done` or untagged object is never tagged
//! `failed` ([`should_mark`]). The lifecycle rules expire `pending` and `failed`
//! objects after `UnfinishedSourceDays` (template default 14, the dead-letter queues' retention, so
//! a redrive still finds its source); the expiry's removal event deletes the failed document.
//! Objects uploaded without the API carry no tag and never expire. Tagging emits no S3 event.

use crate::effects::ObjectStore;
use crate::failure::Failure;

/// The tag's key.
pub const TAG: &str = "imgpipe-status";
/// Signed into every upload by the API.
pub const PENDING: &str = "pending";
/// Set before the `done` document is written.
pub const DONE: &str = "done";
/// Set after a permanent failure.
pub const FAILED: &str = "failed";

/// `imgpipe-status=pending`, as the `x-amz-tagging` header and the POST form's `tagging` field
/// (XML) carry it.
pub fn pending_query() -> String {
    format!("{TAG}={PENDING}")
}

/// The POST form's `tagging` field: the S3 Tagging XML document with the `pending` tag.
pub fn pending_xml() -> String {
    format!(
        "<Tagging><TagSet><Tag><Key>{TAG}</Key><Value>{PENDING}</Value></Tag></TagSet></Tagging>"
    )
}

/// `tags` with [`TAG`] set to `status`, the others kept (an uploader's own tags survive).
pub fn with_status(tags: &[(String, String)], status: &str) -> Vec<(String, String)> {
    let mut merged: Vec<(String, String)> =
        tags.iter().filter(|(k, _)| k != TAG).cloned().collect();
    merged.push((TAG.to_string(), status.to_string()));
    merged
}

/// Whether an object with tags `current` is to be tagged `status`: `done` always (unless it is
/// already), `failed` only from `pending`. An object the API did not sign (no tag) never gets an
/// expiring tag, and a `done` original stays `done` whatever a later run (a backfill) says:
/// lifecycle counts days from the object's creation, so tagging an old original `failed` would
/// expire it, and its derivatives with it, at once.
pub fn should_mark(current: &[(String, String)], status: &str) -> bool {
    let now = current
        .iter()
        .find(|(k, _)| k == TAG)
        .map(|(_, v)| v.as_str());
    match status {
        FAILED => now == Some(PENDING),
        _ => now != Some(status),
    }
}

/// Sets `bucket/key`'s [`TAG`] to `status` (on `version_id` in a versioned bucket) as
/// [`should_mark`] allows, keeping its other tags. A missing object is not an error: it was
/// removed, and its removal event follows.
pub async fn mark(
    s3: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    status: &str,
) -> Result<(), Failure> {
    let Some(current) = s3.tags(bucket, key, version_id).await? else {
        return Ok(());
    };
    if !should_mark(&current, status) {
        return Ok(());
    }
    s3.set_tags(bucket, key, version_id, &with_status(&current, status))
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_replaces_only_its_own_tag() {
        let tags = vec![
            ("project".to_string(), "x".to_string()),
            (TAG.to_string(), PENDING.to_string()),
        ];
        assert_eq!(
            with_status(&tags, DONE),
            [
                ("project".to_string(), "x".to_string()),
                (TAG.to_string(), DONE.to_string())
            ]
        );
        assert_eq!(pending_query(), "imgpipe-status=pending");
        let tagged = |v: &str| vec![(TAG.to_string(), v.to_string())];
        assert!(should_mark(&tagged(PENDING), FAILED));
        assert!(
            !should_mark(&tagged(DONE), FAILED),
            "a processed original never expires"
        );
        assert!(
            !should_mark(&[], FAILED),
            "an object the API did not sign never expires"
        );
        assert!(should_mark(&[], DONE) && should_mark(&tagged(PENDING), DONE));
        assert!(!should_mark(&tagged(DONE), DONE));
        assert!(pending_xml().contains("<Key>imgpipe-status</Key><Value>pending</Value>"));
    }
}
