//! CloudFront invalidations for deleted outputs: when `IMGPIPE_CDN_DISTRIBUTION_ID` is set (the
//! template sets it to its distribution), the paths of a message's deletions are invalidated in one
//! request, so the CDN stops serving them before their `Cache-Control` runs out.
//!
//! Paths are exact (no wildcards: CloudFront allows 3 000 exact paths in progress but only 15
//! wildcard ones): every deleted key, plus the source's negotiated group paths (`…/<key>/preview`),
//! whose cached variants (one per normalised `Accept`) all go with the path. The caller reference is a
//! hash of the sorted paths, so a redelivered deletion repeats the same request, which CloudFront
//! answers with the existing invalidation instead of making a second one.

use imgpipe_core::pipeline::public_url;
use sha2::{Digest, Sha256};

use crate::failure::Failure;

/// Most paths in one invalidation request (CloudFront's limit on exact paths in progress).
pub const MAX_PATHS: usize = 3000;

/// The CloudFront paths to invalidate for `deleted_keys`, and for the group paths `groups` under
/// the source's output directory `dir` (ending with `/`): `/` + each key, percent-encoded per
/// segment, sorted and without repeats.
pub fn paths<'a>(
    deleted_keys: &[String],
    dir: &str,
    groups: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let mut paths: Vec<String> = deleted_keys
        .iter()
        .map(|k| public_url("", k))
        .chain(
            groups
                .into_iter()
                .map(|g| public_url("", &format!("{dir}{g}"))),
        )
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// A caller reference that is the same for the same set of paths.
pub fn caller_reference(paths: &[String]) -> String {
    let mut hasher = Sha256::new();
    for path in paths {
        hasher.update((path.len() as u64).to_be_bytes());
        hasher.update(path.as_bytes());
    }
    format!("imgpipe-{}", hex::encode(&hasher.finalize()[..16]))
}

/// Invalidates `paths` on `distribution_id` (in requests of at most [`MAX_PATHS`]); returns the
/// invalidation ids. Failures are transient: the message is retried, and the repeated request has
/// the same caller reference.
pub async fn invalidate(
    cloudfront: &dyn crate::effects::Cdn,
    distribution_id: &str,
    paths: &[String],
) -> Result<Vec<String>, Failure> {
    let mut ids = Vec::new();
    for chunk in paths.chunks(MAX_PATHS) {
        if let Some(id) = cloudfront
            .invalidate(distribution_id, chunk, &caller_reference(chunk))
            .await?
        {
            ids.push(id);
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_exact_sorted_and_include_the_group_paths() {
        let dir = "derived/uploads/a b,1.jpg/";
        let keys = vec![
            format!("{dir}thumbnail.jpg"),
            format!("{dir}metadata.json"),
            format!("{dir}thumbnail.jpg"),
        ];
        let got = paths(&keys, dir, ["preview", "thumbnail"]);
        assert_eq!(
            got,
            [
                "/derived/uploads/a%20b%2C1.jpg/metadata.json",
                "/derived/uploads/a%20b%2C1.jpg/preview",
                "/derived/uploads/a%20b%2C1.jpg/thumbnail",
                "/derived/uploads/a%20b%2C1.jpg/thumbnail.jpg",
            ]
        );
        assert!(got.iter().all(|p| !p.contains('*')), "no wildcards");
    }

    #[test]
    fn the_caller_reference_is_stable_for_the_same_paths() {
        let a = paths(&["derived/x/a.jpg".into()], "derived/x/", ["preview"]);
        let b = paths(&["derived/x/a.jpg".into()], "derived/x/", ["preview"]);
        let c = paths(&["derived/y/a.jpg".into()], "derived/y/", ["preview"]);
        assert_eq!(caller_reference(&a), caller_reference(&b));
        assert_ne!(caller_reference(&a), caller_reference(&c));
        assert!(caller_reference(&a).len() <= 128, "CloudFront's limit");
    }
}
