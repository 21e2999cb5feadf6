//! The effect boundary: every call the image flows make to S3, SQS, SNS and CloudFront goes
//! through the four traits here, and nothing else in `handler` touches an AWS client. The AWS
//! executor ([`aws`]) implements them on the SDK clients (with the retries, timeouts and error
//! wording of each call); the fault simulator (`functions/cloud/tests/simulate`) implements them in
//! memory, crashes the process after any one of them, fails any one of them, and checks the
//! invariants below once the system is quiet. The flows are therefore the same code under Lambda,
//! the long-poll worker, the GPU worker and the simulator.
//!
//! # The effects, and the invariant each keeps
//! Reads (no effect; may fail transiently):
//! - [`ObjectStore::get`] / [`ObjectStore::head`] / [`ObjectStore::list`] / [`ObjectStore::tags`]:
//!   metadata.json, the tombstone, the source (bounded by the limits before the body is read),
//!   manifest progress, a key's output folder, the source's status tag.
//!
//! Effects, in the order an upload makes them:
//! 1. **put derivative** ([`ObjectStore::put`]) ×N: idempotent; nothing points at them until
//!    metadata.json does.
//! 2. **tag source `done`** ([`ObjectStore::set_tags`]): before the document, so a processed
//!    original never expires.
//! 3. **put metadata.json** ([`ObjectStore::put`]): written last of the outputs; a `done` document
//!    for the ETag and preset set is what makes a redelivery a no-op (*one final document per
//!    ETag; every derivative it lists exists*).
//! 4. **delete** superseded outputs and the tombstone ([`ObjectStore::delete`]): after the
//!    document, never before.
//! 5. **publish** the event ([`Topic::publish`]): after the document; its id is derived from the
//!    document, so a redelivery publishes the byte-identical event (*every ended image is
//!    announced*).
//! 6. **invalidate** replaced paths ([`Cdn::invalidate`]): caller reference from the paths, so a
//!    repeat is the same invalidation.
//! 7. **delete the message / set its visibility** ([`Queues::delete`], [`Queues::set_visibility`]):
//!    the driver's, after the flow returned; until then a crash redelivers the message (*no
//!    message is lost*).
//!
//! A bad file: **put `failed` metadata.json** → **tag source `failed`** → **send the DLQ letter**
//! ([`Queues::send`]) → publish → delete the message. A crash between the document and the letter
//! leaves the message to be redelivered, and the redelivery (receive count over 1) sends the
//! letter again (*every bad file has a letter; letters are counted by (key, ETag)*).
//!
//! A removal: **delete every output** → **put the tombstone** → publish `image.deleted`; a late
//! creation older than the tombstone is ignored (*after a delete nothing of the source is left*).
//!
//! A webhook delivery (the sender, on the webhook queue): **POST** to every endpoint
//! ([`Endpoints::post`]) → for each endpoint that did not answer 2xx, **send its retry message**
//! (delayed) → delete the message; a retry's failure sets the message's visibility to the next
//! step of the schedule; after the last, **send to the webhook DLQ** (*every event reaches each
//! endpoint with the same `webhook-id`, or its letter is in the webhook DLQ*).
//!
//! A URL import (a manifest's URL, on the GPU queue): read its outcome document (an outcome of
//! this manifest version ends it) → **GET** the URL ([`Web::fetch`]) → **put the file** into the
//! manifest's bucket (its own S3 event processes it like an upload) → **put the outcome**
//! conditionally (If-None-Match, or If-Match on an older version's), so the first outcome stands.
//!
//! A manifest: **put progress** (before any item is queued) → **send item jobs** (in slices, the
//! cursor advanced by compare-and-swap after each) → each item's end **recorded in progress** by
//! compare-and-swap → **publish `batch.done`** once, by the write that completed it.

use std::collections::HashMap;

use async_trait::async_trait;

use crate::failure::Failure;

pub mod aws;

/// S3, as the flows use it.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Reads an object (or its first bytes); a body over `max_bytes` is never read past the limit.
    async fn get(&self, request: Get<'_>) -> Result<Got, Failure>;
    /// Size, ETag and user metadata of an object; `None` when absent.
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectHead>, Failure>;
    /// Writes an object; `Ok(false)` when its [`Condition`] did not hold (another writer first).
    async fn put(&self, request: Put<'_>) -> Result<bool, Failure>;
    /// Deletes `keys` (absent keys count as deleted).
    async fn delete(&self, bucket: &str, keys: &[String]) -> Result<(), Failure>;
    /// Every object under `prefix` in key order (up to the next `delimiter`, when given; after
    /// `start_after`, when given).
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        start_after: Option<&str>,
    ) -> Result<Vec<Listed>, Failure>;
    /// An object's tags; `None` when the object (or version) is absent.
    async fn tags(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<Vec<(String, String)>>, Failure>;
    /// Replaces an object's tags; `Ok(false)` when the object (or version) is absent.
    async fn set_tags(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        tags: &[(String, String)],
    ) -> Result<bool, Failure>;
}

/// A GetObject.
#[derive(Debug, Clone, Copy)]
pub struct Get<'a> {
    /// Bucket.
    pub bucket: &'a str,
    /// Key.
    pub key: &'a str,
    /// Only the first this many bytes (a Range read; no size limit applies).
    pub first_bytes: Option<u64>,
    /// Only the version with this ETag (no quotes; `If-Match`).
    pub if_match: Option<&'a str>,
    /// A whole-object read stops with [`Got::TooLarge`] past this many bytes.
    pub max_bytes: u64,
}

impl<'a> Get<'a> {
    /// The whole of `bucket/key`, up to `max_bytes`.
    pub fn whole(bucket: &'a str, key: &'a str, max_bytes: u64) -> Self {
        Self {
            bucket,
            key,
            first_bytes: None,
            if_match: None,
            max_bytes,
        }
    }
}

/// What a [`Get`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    /// The object.
    Found(Object),
    /// No such key (or version).
    Missing,
    /// The object has another ETag than `if_match`.
    NotMatched,
    /// The object (announced or streamed) is over `max_bytes`: at least this many bytes.
    TooLarge(u64),
}

/// An object read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// The bytes (the first ones, for a Range read).
    pub bytes: Vec<u8>,
    /// ETag, without quotes.
    pub etag: Option<String>,
    /// The version read, in a versioned bucket.
    pub version_id: Option<String>,
    /// Size of the whole object, when the store said.
    pub size: Option<u64>,
    /// S3 user metadata (names lower-case, without `x-amz-meta-`): the app's `focus`, for one.
    pub metadata: HashMap<String, String>,
}

/// What a HeadObject says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    /// Size in bytes.
    pub size: u64,
    /// ETag, without quotes.
    pub etag: Option<String>,
    /// S3 user metadata (names lower-case, without `x-amz-meta-`).
    pub metadata: HashMap<String, String>,
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

/// A PutObject.
#[derive(Debug, Clone)]
pub struct Put<'a> {
    /// Bucket.
    pub bucket: &'a str,
    /// Key.
    pub key: &'a str,
    /// The bytes.
    pub body: Vec<u8>,
    /// Content-Type.
    pub content_type: &'a str,
    /// Cache-Control, when set.
    pub cache_control: Option<&'a str>,
    /// Object tags, `k=v&k=v` (what lifecycle rules select on).
    pub tagging: Option<&'a str>,
    /// S3 user metadata (ASCII values).
    pub metadata: Vec<(&'a str, String)>,
    /// Written only if this holds.
    pub condition: Option<Condition<'a>>,
}

impl<'a> Put<'a> {
    /// A plain write of `body` to `bucket/key`.
    pub fn new(bucket: &'a str, key: &'a str, body: Vec<u8>, content_type: &'a str) -> Self {
        Self {
            bucket,
            key,
            body,
            content_type,
            cache_control: None,
            tagging: None,
            metadata: Vec::new(),
            condition: None,
        }
    }
}

/// A conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition<'a> {
    /// Only while the object's ETag (no quotes) is this one.
    IfMatch(&'a str),
    /// Only if no object exists at the key.
    IfNoneMatch,
}

/// SQS, as the flows and drivers use it (receiving is the driver's own).
#[async_trait]
pub trait Queues: Send + Sync {
    /// Sends `messages` to `queue_url` (in batches where there are several); an entry refused
    /// fails the call (callers retry; every job is idempotent).
    async fn send(&self, queue_url: &str, messages: &[Outgoing]) -> Result<(), Failure>;
    /// Hides a received message for `seconds` from now.
    async fn set_visibility(
        &self,
        queue_url: &str,
        receipt_handle: &str,
        seconds: u32,
    ) -> Result<(), Failure>;
    /// Deletes received messages; returns how many could not be deleted (they come back).
    async fn delete(&self, queue_url: &str, receipt_handles: &[String]) -> usize;
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outgoing {
    /// Body.
    pub body: String,
    /// Message attributes.
    pub attributes: Vec<Attribute>,
    /// Seconds before it can be received (SQS `DelaySeconds`, at most 900).
    pub delay_seconds: u32,
}

/// A message attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Name.
    pub name: &'static str,
    /// Value (cut to 1 024 characters by the sender).
    pub value: String,
    /// `Number` rather than `String`.
    pub number: bool,
}

impl Attribute {
    /// A `String` attribute, cut to 1 024 characters (readable in consoles; SQS allows 256 KiB).
    pub fn string(name: &'static str, value: &str) -> Self {
        Self {
            name,
            value: value.chars().take(1024).collect(),
            number: false,
        }
    }

    /// A `Number` attribute.
    pub fn number(name: &'static str, value: impl ToString) -> Self {
        Self {
            name,
            value: value.to_string(),
            number: true,
        }
    }
}

/// SNS, as the announcements use it.
#[async_trait]
pub trait Topic: Send + Sync {
    /// Publishes `message` with String `attributes` to `topic_arn`.
    async fn publish(
        &self,
        topic_arn: &str,
        message: &str,
        attributes: &[(&str, &str)],
    ) -> Result<(), Failure>;
}

/// CloudFront, as the announcements use it.
#[async_trait]
pub trait Cdn: Send + Sync {
    /// Invalidates `paths` (at most [`crate::invalidation::MAX_PATHS`]) on `distribution_id`;
    /// the same `caller_reference` makes a repeat the same invalidation. Returns its id.
    async fn invalidate(
        &self,
        distribution_id: &str,
        paths: &[String],
        caller_reference: &str,
    ) -> Result<Option<String>, Failure>;
}

/// The webhook endpoints, as the webhook sender reaches them: one signed POST, and what it got.
#[async_trait]
pub trait Endpoints: Send + Sync {
    /// POSTs `body` (JSON) with `headers` to `url`.
    async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &str,
    ) -> crate::webhook::Attempt;
}

/// The web, as URL imports reach it: one GET under the import policy (the address checks,
/// redirects, size limit and sniffing are the fetcher's).
#[async_trait]
pub trait Web: Send + Sync {
    /// Fetches `url` under `policy`; a refusal says its class and why.
    async fn fetch(
        &self,
        url: &str,
        policy: &crate::importer::ImportPolicy,
    ) -> Result<crate::importer::Fetched, crate::url_policy::Refusal>;
}

/// The wall clock the flows stamp documents with (`processed_at`, `deleted_at`); the simulator's
/// is virtual, so a schedule replays byte for byte.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> std::time::SystemTime;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> std::time::SystemTime {
        std::time::SystemTime::now()
    }
}

/// The boundaries one handler uses.
#[derive(Clone)]
pub struct Effects {
    /// S3.
    pub store: std::sync::Arc<dyn ObjectStore>,
    /// SQS.
    pub queues: std::sync::Arc<dyn Queues>,
    /// SNS.
    pub topic: std::sync::Arc<dyn Topic>,
    /// CloudFront, when a distribution is configured.
    pub cdn: Option<std::sync::Arc<dyn Cdn>>,
    /// The web (URL imports).
    pub web: std::sync::Arc<dyn Web>,
    /// The clock.
    pub clock: std::sync::Arc<dyn Clock>,
}
