//! Manifest progress: how far a manifest's fan-out got, and which of its listed objects have ended,
//! so that when the last one ends, `imgpipe.batch.done` goes out.
//!
//! One JSON object beside the manifest's summary (`<prefix><manifest key>/progress.json`) holds,
//! per listed object (bit `i` is the manifest's `i`-th listed object), a bitmap of done items, one of
//! failed items and one of objects that did not exist at fan-out, plus the fan-out's cursor `sent`
//! (objects `0..sent` were looked up and, when they exist, sent). A manifest is complete when the
//! cursor is at the end and every listed object is done, failed or missing. Every item end updates it by compare-and-swap: read
//! it with its ETag, set the item's bit, write it back `If-Match` that ETag; S3 refuses the write
//! (412) when another worker changed the object in between, and the update is re-read and retried.
//! Why this design:
//! - race-free: a conditional write is atomic per object, so of two workers ending the last two
//!   items exactly one makes the write that completes the bitmap, and neither update is lost;
//! - idempotent: setting a bit twice changes nothing, so an at-least-once redelivery of an item is
//!   never counted twice (an atomic `ADD 1` counter needs a dedupe record and a transaction beside it);
//! - no new service: DynamoDB would do it with a transaction, but it is one more table to deploy,
//!   and LocalStack's DynamoDB does not run on the Python 3.11 hosts this project builds on.
//!
//! The write that completes the bitmap reports `first`; any later end of an already-ended item (a
//! redelivery) reports the completion again, so a worker killed between the write and the publish
//! still gets `imgpipe.batch.done` out, with the same event id. A redelivered manifest (same ETag,
//! same queued objects) resumes its progress instead of starting over, so a repeated batch event is
//! the very same event, timestamp included. Cost: one GET and one PUT per item
//! end on an object of about 2 × 6 KiB per 50 000 items; under heavy contention a few re-reads.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use imgpipe_core::events::{BatchCounts, ManifestRef};
use serde::{Deserialize, Serialize};

use crate::failure::Failure;
use crate::store;

/// Schema identifier of the progress document.
pub const SCHEMA: &str = "imgpipe.manifest-progress/v2";

/// Compare-and-swap attempts before the update is given up as transient (the message is retried).
const MAX_SWAPS: u32 = 40;

/// One queued manifest item, as its GPU job carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchItem {
    /// The manifest (with the ETag of the version that was fanned out).
    pub manifest: ManifestRef,
    /// Position of the object among the manifest's listed objects (0-based).
    pub item: u64,
}

/// How an item ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemEnd {
    /// Its metadata says `done`.
    Done,
    /// It failed for good (dead-lettered).
    Failed,
}

/// The progress document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The manifest version this progress belongs to.
    pub manifest: ManifestRef,
    /// Entries in the manifest.
    pub items: u64,
    /// Entries refused at fan-out.
    pub rejected: u64,
    /// Objects the manifest lists (bit `i` of the bitmaps is listed object `i`).
    pub listed: u64,
    /// Hash of the listed objects in order ([`listed_hash`]): which object bit `i` stands for.
    pub listed_hash: String,
    /// The fan-out's cursor: listed objects `0..sent` were looked up and, when they exist, sent to
    /// the GPU queue. A redelivered or continued manifest goes on from here.
    pub sent: u64,
    /// Bitmap of done items, base64.
    #[serde(with = "bitmap")]
    pub done: Vec<u8>,
    /// Bitmap of failed items, base64.
    #[serde(with = "bitmap")]
    pub failed: Vec<u8>,
    /// Bitmap of listed objects that did not exist at fan-out, base64.
    #[serde(with = "bitmap")]
    pub missing: Vec<u8>,
    /// When the last item ended (RFC 3339); set by the write that completed the bitmaps.
    pub completed_at: Option<String>,
}

/// The state of a manifest whose items all ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// How the items ended.
    pub counts: BatchCounts,
    /// When the last one did.
    pub ended_at: String,
    /// True for the one update that ended the last item; false when a repeated end found the
    /// manifest already complete.
    pub first: bool,
}

impl Progress {
    /// Progress of a manifest about to be fanned out: nothing sent, nothing ended; `listed` are the
    /// objects it lists, in order.
    pub fn new<'a>(
        manifest: ManifestRef,
        items: u64,
        listed: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
        rejected: u64,
    ) -> Self {
        let count = listed.len() as u64;
        let bytes = count.div_ceil(8) as usize;
        Self {
            schema: SCHEMA.into(),
            manifest,
            items,
            rejected,
            listed: count,
            listed_hash: listed_hash(listed),
            sent: 0,
            done: vec![0; bytes],
            failed: vec![0; bytes],
            missing: vec![0; bytes],
            completed_at: None,
        }
    }

    /// True when listed object `item` did not exist at fan-out.
    pub fn is_missing(&self, item: u64) -> bool {
        item < self.listed && self.missing[(item / 8) as usize] & (1 << (item % 8)) != 0
    }

    /// Moves the cursor to `sent` (never back) and marks `missing` objects; returns whether
    /// anything changed.
    pub fn advance(&mut self, sent: u64, missing: &[u64]) -> bool {
        let before = (self.sent, self.missing.clone());
        self.sent = self.sent.max(sent.min(self.listed));
        for &item in missing.iter().filter(|&&i| i < self.listed) {
            let (byte, bit) = ((item / 8) as usize, 1u8 << (item % 8));
            // An object deleted after its job ended (a slice looked up again after a crash) stays
            // as it ended: counted once.
            if (self.done[byte] | self.failed[byte]) & bit == 0 {
                self.missing[byte] |= bit;
            }
        }
        before != (self.sent, self.missing.clone())
    }

    /// Records that `item` ended; returns whether anything changed. `Done` wins over `Failed`: a
    /// failed item that was redriven and then processed counts as done, never the other way round.
    pub fn mark(&mut self, item: u64, end: ItemEnd) -> Result<bool, String> {
        if item >= self.listed {
            return Err(format!(
                "item {item} is out of range: the manifest lists {} objects",
                self.listed
            ));
        }
        let (byte, bit) = ((item / 8) as usize, 1u8 << (item % 8));
        // A job that ends counts as ended, even where a later look-up found its object gone.
        let was_missing = self.missing[byte] & bit != 0;
        self.missing[byte] &= !bit;
        let before = (self.done[byte] & bit, self.failed[byte] & bit);
        match end {
            ItemEnd::Done => {
                self.done[byte] |= bit;
                self.failed[byte] &= !bit;
            }
            ItemEnd::Failed if self.done[byte] & bit == 0 => self.failed[byte] |= bit,
            ItemEnd::Failed => {}
        }
        Ok(was_missing || before != (self.done[byte] & bit, self.failed[byte] & bit))
    }

    /// Counts so far.
    pub fn counts(&self) -> BatchCounts {
        let ones = |bits: &[u8]| bits.iter().map(|b| u64::from(b.count_ones())).sum::<u64>();
        let missing = ones(&self.missing);
        BatchCounts {
            items: self.items,
            queued: self.listed - missing,
            done: ones(&self.done),
            failed: ones(&self.failed),
            missing,
            rejected: self.rejected,
        }
    }

    /// True when the fan-out reached the end and every queued item ended.
    pub fn is_complete(&self) -> bool {
        let c = self.counts();
        self.sent == self.listed && c.done + c.failed == c.queued
    }

    fn completion(&self, first: bool) -> Option<Completion> {
        self.is_complete().then(|| Completion {
            counts: self.counts(),
            ended_at: self.completed_at.clone().unwrap_or_default(),
            first,
        })
    }
}

/// SHA-256 of the listed objects' buckets and keys, each length-prefixed (keys may hold any
/// character, newlines included), first 16 bytes in hex.
pub fn listed_hash<'a>(queued: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for (bucket, key) in queued {
        for part in [bucket, key] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
    }
    hex::encode(&hasher.finalize()[..16])
}

/// How a fan-out's progress began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// A new progress document (a first fan-out, or a new version of the manifest).
    Fresh(Option<Completion>),
    /// The same manifest version with the same queued objects was fanned out before (a
    /// redelivery, or a continuation): its progress is kept; `Some` when every item had already
    /// ended.
    Resumed(Option<Completion>),
}

/// Begins the progress of a fan-out, before any item is queued (so no item can end before its
/// progress exists): resumes the stored one when it is for the same manifest ETag and the same
/// listed objects, else writes `progress` (replacing an earlier version's, or one of schema v1).
pub async fn start(
    s3: &dyn crate::effects::ObjectStore,
    bucket: &str,
    key: &str,
    progress: Progress,
) -> Result<Started, Failure> {
    Ok(begin(s3, bucket, key, progress).await?.0)
}

/// [`start`], also returning the progress the fan-out goes on from: the stored one when
/// resumed (its cursor and missing objects), else `progress` as written.
pub async fn begin(
    s3: &dyn crate::effects::ObjectStore,
    bucket: &str,
    key: &str,
    mut progress: Progress,
) -> Result<(Started, Progress), Failure> {
    if let Some((bytes, _)) = store::get_with_etag(s3, bucket, key).await?
        && let Ok(stored) = serde_json::from_slice::<Progress>(&bytes)
        && stored.schema == SCHEMA
        && stored.manifest == progress.manifest
        && stored.listed_hash == progress.listed_hash
    {
        return Ok((Started::Resumed(stored.completion(false)), stored));
    }
    if progress.is_complete() {
        progress.completed_at = Some(now());
    }
    store::put(
        s3,
        bucket,
        key,
        serde_json::to_vec(&progress).expect("progress serialises"),
        "application/json",
        "no-store",
    )
    .await?;
    Ok((Started::Fresh(progress.completion(true)), progress))
}

/// What [`advance`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advanced {
    /// The cursor moved (or was already there); `Some` when the manifest is now complete (`first`
    /// when this write completed it: the fan-out publishes the batch event).
    Moved(Option<Completion>),
    /// The document belongs to another version of the manifest (a newer upload replaced it, or it
    /// is gone): this fan-out stops.
    Stale,
}

/// Moves the fan-out's cursor of `bucket/key` to `sent` and marks `missing` objects, by
/// compare-and-swap (never backwards).
pub async fn advance(
    s3: &dyn crate::effects::ObjectStore,
    bucket: &str,
    key: &str,
    manifest: &ManifestRef,
    sent: u64,
    missing: &[u64],
) -> Result<Advanced, Failure> {
    for attempt in 0..MAX_SWAPS {
        let Some((bytes, etag)) = store::get_with_etag(s3, bucket, key).await? else {
            return Ok(Advanced::Stale);
        };
        let Ok(mut progress) = serde_json::from_slice::<Progress>(&bytes) else {
            return Ok(Advanced::Stale);
        };
        if progress.manifest != *manifest {
            return Ok(Advanced::Stale);
        }
        let was_complete = progress.is_complete();
        if !progress.advance(sent, missing) {
            return Ok(Advanced::Moved(progress.completion(false)));
        }
        if progress.is_complete() {
            progress.completed_at = Some(now());
        }
        let body = serde_json::to_vec(&progress).expect("progress serialises");
        if store::put_if_match(s3, bucket, key, body, "application/json", "no-store", &etag).await?
        {
            return Ok(Advanced::Moved(progress.completion(!was_complete)));
        }
        // Item ends are writing the same document: re-read and try again.
        tokio::time::sleep(Duration::from_millis(5 + 10 * u64::from(attempt.min(5)))).await;
    }
    Err(Failure::transient(
        "progress_conflict",
        format!("s3://{bucket}/{key}: still changing after {MAX_SWAPS} compare-and-swap attempts"),
    ))
}

/// Records the end of `batch.item` in `bucket/key` by compare-and-swap; returns the completion when
/// every item has now ended (see the module doc for `first`). An item of an older version of the
/// manifest (its ETag differs from the progress document's) is not counted.
pub async fn record_end(
    s3: &dyn crate::effects::ObjectStore,
    bucket: &str,
    key: &str,
    batch: &BatchItem,
    end: ItemEnd,
) -> Result<Option<Completion>, Failure> {
    for attempt in 0..MAX_SWAPS {
        let Some((bytes, etag)) = store::get_with_etag(s3, bucket, key).await? else {
            tracing::warn!(
                key,
                item = batch.item,
                "no manifest progress; item end not counted (was the manifest's output deleted?)"
            );
            return Ok(None);
        };
        let mut progress: Progress = match serde_json::from_slice(&bytes) {
            Ok(progress) => progress,
            Err(_) if String::from_utf8_lossy(&bytes).contains("imgpipe.manifest-progress/v1") => {
                tracing::info!(
                    key,
                    item = batch.item,
                    "item of a fan-out made before progress v2; not counted"
                );
                return Ok(None);
            }
            Err(e) => {
                return Err(Failure::permanent(
                    "bad_progress",
                    format!("s3://{bucket}/{key} is not manifest progress: {e}"),
                ));
            }
        };
        if progress.manifest.etag != batch.manifest.etag {
            tracing::info!(
                key,
                item = batch.item,
                "item of an older version of the manifest; not counted"
            );
            return Ok(None);
        }
        let was_complete = progress.is_complete();
        let changed = progress
            .mark(batch.item, end)
            .map_err(|e| Failure::permanent("bad_progress", format!("s3://{bucket}/{key}: {e}")))?;
        if !changed {
            return Ok(progress.completion(false));
        }
        if progress.is_complete() {
            progress.completed_at = Some(now());
        }
        let body = serde_json::to_vec(&progress).expect("progress serialises");
        if store::put_if_match(s3, bucket, key, body, "application/json", "no-store", &etag).await?
        {
            return Ok(progress.completion(!was_complete));
        }
        // Another worker wrote in between: back off a little (spread by item and attempt) and re-read.
        let spread = (batch.item.wrapping_mul(7919) + u64::from(attempt) * 104_729) % 40;
        tokio::time::sleep(Duration::from_millis(
            5 + spread * u64::from(attempt.min(5) + 1),
        ))
        .await;
    }
    Err(Failure::transient(
        "progress_conflict",
        format!("s3://{bucket}/{key}: still changing after {MAX_SWAPS} compare-and-swap attempts"),
    ))
}

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

mod bitmap {
    use super::{Engine, STANDARD};

    pub fn serialize<S: serde::Serializer>(bits: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bits))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text: String = serde::Deserialize::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `listed` objects, all sent, none missing.
    fn progress(listed: u64) -> Progress {
        let manifest = ManifestRef {
            bucket: "b".into(),
            key: "manifests/m.json".into(),
            etag: Some("e".into()),
        };
        let keys: Vec<String> = (0..listed).map(|i| format!("k{i}")).collect();
        let mut p = Progress::new(
            manifest,
            listed + 2,
            keys.iter().map(|k| ("b", k.as_str())),
            1,
        );
        p.advance(listed, &[]);
        p
    }

    #[test]
    fn complete_only_when_the_cursor_reached_the_end_and_every_object_ended_or_was_missing() {
        let mut p = progress(4);
        p.sent = 0;
        assert!(p.advance(2, &[1]));
        assert!(!p.advance(2, &[1]), "a repeated slice changes nothing");
        assert_eq!(p.mark(0, ItemEnd::Done), Ok(true));
        assert!(!p.is_complete(), "objects 2 and 3 were not looked up yet");
        assert!(p.advance(4, &[3]));
        assert!(!p.advance(3, &[]), "the cursor never goes back");
        assert!(!p.is_complete());
        assert_eq!(p.mark(2, ItemEnd::Failed), Ok(true));
        assert!(p.is_complete());
        let c = p.counts();
        assert_eq!(
            (c.items, c.queued, c.done, c.failed, c.missing, c.rejected),
            (6, 2, 1, 1, 2, 1)
        );
        assert!(p.is_missing(1) && p.is_missing(3) && !p.is_missing(0));
    }

    #[test]
    fn an_object_is_counted_once_whether_it_ended_or_went_missing_first() {
        let mut p = progress(2);
        p.mark(0, ItemEnd::Done).unwrap();
        p.advance(2, &[0]); // looked up again after a crash: gone by now
        assert!(!p.is_missing(0));
        p.sent = 1;
        p.advance(2, &[1]);
        assert_eq!(p.mark(1, ItemEnd::Failed), Ok(true)); // its job ended after all
        assert!(!p.is_missing(1));
        let c = p.counts();
        assert_eq!((c.queued, c.done, c.failed, c.missing), (2, 1, 1, 0));
        assert!(p.is_complete());
    }

    #[test]
    fn completes_when_every_queued_item_ended_once() {
        let mut p = progress(10);
        for i in 0..9 {
            assert_eq!(
                p.mark(
                    i,
                    if i % 3 == 0 {
                        ItemEnd::Failed
                    } else {
                        ItemEnd::Done
                    }
                ),
                Ok(true)
            );
            assert!(!p.is_complete());
        }
        // A redelivered end changes nothing.
        assert_eq!(p.mark(4, ItemEnd::Done), Ok(false));
        assert!(!p.is_complete());
        assert_eq!(p.mark(9, ItemEnd::Done), Ok(true));
        assert!(p.is_complete());
        let c = p.counts();
        assert_eq!(
            (c.items, c.queued, c.done, c.failed, c.missing, c.rejected),
            (12, 10, 7, 3, 0, 1)
        );
    }

    #[test]
    fn done_wins_over_failed_and_out_of_range_is_refused() {
        let mut p = progress(3);
        assert_eq!(p.mark(1, ItemEnd::Failed), Ok(true));
        assert_eq!(p.mark(1, ItemEnd::Done), Ok(true)); // redriven, then processed
        assert_eq!(p.mark(1, ItemEnd::Failed), Ok(false));
        assert_eq!((p.counts().done, p.counts().failed), (1, 0));
        assert!(
            p.mark(3, ItemEnd::Done)
                .unwrap_err()
                .contains("out of range")
        );
    }

    #[test]
    fn round_trips_through_json_with_base64_bitmaps() {
        let mut p = progress(20);
        p.mark(17, ItemEnd::Done).unwrap();
        p.mark(2, ItemEnd::Failed).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert!(
            json.contains(r#""schema":"imgpipe.manifest-progress/v2""#),
            "{json}"
        );
        let back: Progress = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        assert_eq!((back.counts().done, back.counts().failed), (1, 1));
    }

    #[test]
    fn nothing_queued_is_complete_at_once() {
        assert!(progress(0).is_complete());
    }

    #[test]
    fn the_listed_hash_tells_which_objects_the_bits_stand_for() {
        let hash = |keys: &[(&str, &str)]| listed_hash(keys.iter().copied());
        let ab = hash(&[("b", "x"), ("b", "y")]);
        assert_eq!(ab, hash(&[("b", "x"), ("b", "y")]));
        assert_ne!(ab, hash(&[("b", "y"), ("b", "x")]), "order is meaning");
        assert_ne!(ab, hash(&[("b", "x")]));
        assert_ne!(
            hash(&[("b", "x\nb"), ("b", "y")]),
            hash(&[("b", "x"), ("b", "b\ny")])
        );
    }
}
