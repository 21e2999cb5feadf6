//! The simulated cloud: S3, SQS, SNS and CloudFront in memory, behind the same effect boundary
//! ([`imgpipe_cloud::effects`]) the AWS executor implements, with a virtual clock and faults.
//!
//! Faults are decided at the boundary, by call number (reads and effects) and effect number
//! (writes, sends, publishes, deletes): a call can fail before it acts (the request never
//! arrived), an effect can fail after it acted (the answer was lost), and the process can be
//! killed after any effect: from then on every call of that process hangs, and the driver drops
//! it, as SIGKILL does. SQS is at least once and unordered: a receive takes visible messages in
//! the scheduler's order, may hand out a second copy, and a message whose receiver died comes
//! back after its visibility timeout; after `max_receives` receives SQS moves it to the DLQ.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use imgpipe_cloud::effects::{
    Cdn, Condition, Get, Got, Listed, Object, ObjectHead, ObjectStore, Outgoing, Put, Queues, Topic,
};
use imgpipe_cloud::failure::Failure;
use sha2::{Digest, Sha256};

use crate::rng::Rng;

/// One stored object.
#[derive(Debug, Clone)]
pub struct Stored {
    pub bytes: Vec<u8>,
    /// When it was written, on the virtual clock.
    pub modified: u64,
    pub etag: String,
    pub tags: Vec<(String, String)>,
    pub metadata: HashMap<String, String>,
}

/// One queued message.
#[derive(Debug, Clone)]
pub struct Queued {
    pub id: String,
    pub body: String,
    pub attributes: Vec<(String, String, bool)>,
    pub receives: u32,
    pub visible_at: u64,
    pub receipt: Option<String>,
    pub sent_at: u64,
    /// SQS handed this message out twice already (a copy, or an original that was copied):
    /// duplicates are rare, so each message is duplicated at most once.
    pub duplicated: bool,
}

/// A queue and its settings.
#[derive(Debug, Clone, Default)]
pub struct Queue {
    pub messages: Vec<Queued>,
    pub visibility: u64,
    /// SQS's redrive policy: received this many times, the next receive moves it to `dlq`.
    pub max_receives: Option<(u32, String)>,
}

/// A published SNS message.
#[derive(Debug, Clone)]
pub struct Published {
    pub message: String,
    pub event_type: String,
    pub event_id: String,
}

/// One POST a webhook endpoint received.
#[derive(Debug, Clone)]
pub struct Received {
    pub url: String,
    pub webhook_id: String,
    pub body: String,
    /// What the endpoint answered (2xx: delivered).
    pub status: u16,
}

/// How a call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Before it acts.
    Before,
    /// After it acted (effects only): the answer was lost.
    After,
}

/// The faults of one schedule.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Kill the process right after these effects (1-based, counted over the whole schedule).
    pub crash_after: BTreeSet<u64>,
    /// Fail these calls (1-based, counted over the whole schedule).
    pub fail_calls: BTreeMap<u64, FailMode>,
    /// Fail each call with this probability (per mille), before or after at random.
    pub fail_per_mille: u32,
    /// Keys whose source reads fail, for this many reads.
    pub broken_reads: HashMap<String, u32>,
}

#[derive(Default)]
struct State {
    buckets: HashMap<String, BTreeMap<String, Stored>>,
    queues: HashMap<String, Queue>,
    published: Vec<Published>,
    /// SNS subscription of the webhook queue (raw message delivery), when set.
    subscribed: Option<String>,
    /// Webhook endpoints that answer 500 to everything.
    down: Vec<String>,
    received: Vec<Received>,
    /// What the web serves.
    web: HashMap<String, Vec<u8>>,
    /// S3 event notifications: objects written into this bucket notify this queue.
    notify: Option<(String, String)>,
    /// The last S3 sequencer handed out (they grow per event, as S3's do per key).
    sequencer: u64,
    invalidations: Vec<Vec<String>>,
    /// When each of `invalidations` was made, on the virtual clock.
    invalidated_at: Vec<u64>,
    clock: u64,
    /// Milliseconds of the last clock reading.
    ticks: u64,
    next_id: u64,
    calls: u64,
    effects: u64,
    crashed: bool,
    crashes: u64,
    trace: Vec<String>,
}

/// The simulated cloud.
pub struct World {
    state: Mutex<State>,
    faults: Mutex<(Faults, Rng)>,
    pub crash: tokio::sync::Notify,
}

/// The virtual clock's zero, in seconds since the Unix epoch (2026-12-07T00:00:00Z).
pub const EPOCH: u64 = 1_796_601_600;

/// The virtual clock as the flows read it: each reading a millisecond after the last within one
/// virtual second, so documents written in turn are stamped in order.
pub struct VirtualClock(pub Arc<World>);

impl imgpipe_cloud::effects::Clock for VirtualClock {
    fn now(&self) -> std::time::SystemTime {
        let mut s = self.0.state.lock().unwrap();
        s.ticks = if s.ticks / 1000 == s.clock {
            s.ticks + 1
        } else {
            s.clock * 1000
        };
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(EPOCH * 1000 + s.ticks)
    }
}

pub fn etag_of(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..16])
}

impl World {
    pub fn new(faults: Faults, seed: u64) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            faults: Mutex::new((faults, Rng::new(seed ^ 0x5eed_fa17))),
            crash: tokio::sync::Notify::new(),
        })
    }

    pub fn add_queue(&self, url: &str, visibility: u64, max_receives: Option<(u32, &str)>) {
        self.state.lock().unwrap().queues.insert(
            url.into(),
            Queue {
                messages: Vec::new(),
                visibility,
                max_receives: max_receives.map(|(n, dlq)| (n, dlq.to_string())),
            },
        );
    }

    pub fn add_bucket(&self, bucket: &str) {
        self.state
            .lock()
            .unwrap()
            .buckets
            .entry(bucket.into())
            .or_default();
    }

    pub fn now(&self) -> u64 {
        self.state.lock().unwrap().clock
    }

    pub fn advance(&self, seconds: u64) {
        self.state.lock().unwrap().clock += seconds;
    }

    pub fn note(&self, line: String) {
        self.state.lock().unwrap().trace.push(line);
    }

    pub fn trace(&self) -> Vec<String> {
        self.state.lock().unwrap().trace.clone()
    }

    pub fn counts(&self) -> (u64, u64, u64) {
        let s = self.state.lock().unwrap();
        (s.calls, s.effects, s.crashes)
    }

    pub fn crashed(&self) -> bool {
        self.state.lock().unwrap().crashed
    }

    /// Subscribes `queue` to the events topic (raw message delivery); `down` endpoints answer 500.
    pub fn subscribe_webhooks(&self, queue: &str, down: &[&str]) {
        let mut s = self.state.lock().unwrap();
        s.subscribed = Some(queue.to_string());
        s.down = down.iter().map(|d| d.to_string()).collect();
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// S3 notifies `queue` of every object written into `bucket` (by users and by the flows).
    pub fn notify_on(&self, bucket: &str, queue: &str) {
        self.state.lock().unwrap().notify = Some((bucket.into(), queue.into()));
    }

    /// The web serves `bytes` at `url`.
    pub fn serve(&self, url: &str, bytes: &[u8]) {
        self.state
            .lock()
            .unwrap()
            .web
            .insert(url.into(), bytes.to_vec());
    }

    /// A new S3 sequencer.
    pub fn next_sequencer(&self) -> u64 {
        let mut s = self.state.lock().unwrap();
        s.sequencer += 1;
        s.sequencer
    }

    /// The next `reads` GetObject calls of `key` fail.
    pub fn break_reads(&self, key: &str, reads: u32) {
        self.faults
            .lock()
            .unwrap()
            .0
            .broken_reads
            .insert(key.to_string(), reads);
    }

    /// No more faults from now on (the outage is over).
    pub fn calm(&self) {
        self.faults.lock().unwrap().0 = Faults::default();
        self.note("faults end; the operator redrives the DLQ".into());
    }

    /// The process was restarted: calls go through again.
    pub fn restart(&self) {
        let mut s = self.state.lock().unwrap();
        s.crashed = false;
        let line = format!("t={} restart", s.clock);
        s.trace.push(line);
    }

    // ---- what the user and S3 do (not through the boundary) ----

    /// Writes an object as a user's upload would (S3 makes its ETag).
    pub fn user_put(&self, bucket: &str, key: &str, bytes: &[u8], tags: &[(&str, &str)]) -> String {
        let etag = etag_of(bytes);
        let mut s = self.state.lock().unwrap();
        let modified = s.clock;
        s.buckets.entry(bucket.into()).or_default().insert(
            key.into(),
            Stored {
                modified,
                bytes: bytes.to_vec(),
                etag: etag.clone(),
                tags: tags
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                metadata: HashMap::new(),
            },
        );
        etag
    }

    /// Sets one S3 user metadata value of `bucket/key` as a copy onto itself does (bytes, ETag and
    /// tags kept; stored anew); returns the ETag, `None` when the object does not exist.
    pub fn user_set_metadata(
        &self,
        bucket: &str,
        key: &str,
        name: &str,
        value: &str,
    ) -> Option<String> {
        let mut s = self.state.lock().unwrap();
        let clock = s.clock;
        let object = s.buckets.get_mut(bucket)?.get_mut(key)?;
        object.metadata.insert(name.into(), value.into());
        object.modified = clock;
        Some(object.etag.clone())
    }

    pub fn user_delete(&self, bucket: &str, key: &str) {
        let mut s = self.state.lock().unwrap();
        if let Some(b) = s.buckets.get_mut(bucket) {
            b.remove(key);
        }
    }

    /// Sends a message as S3 or an operator would (not an effect of the flows).
    pub fn enqueue(&self, url: &str, body: String, attributes: Vec<(String, String, bool)>) {
        push(&mut self.state.lock().unwrap(), url, body, attributes, 0);
    }

    pub fn object(&self, bucket: &str, key: &str) -> Option<Stored> {
        self.state
            .lock()
            .unwrap()
            .buckets
            .get(bucket)?
            .get(key)
            .cloned()
    }

    pub fn keys(&self, bucket: &str) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .buckets
            .get(bucket)
            .map(|b| b.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn queue(&self, url: &str) -> Queue {
        self.state.lock().unwrap().queues[url].clone()
    }

    /// Empties a queue (an operator's redrive took every letter).
    pub fn drain(&self, url: &str) {
        self.state
            .lock()
            .unwrap()
            .queues
            .get_mut(url)
            .unwrap()
            .messages
            .clear();
    }

    /// The messages of `url` as SQS would hand them out (for reading letters).
    pub fn peek(&self, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
        let s = self.state.lock().unwrap();
        s.queues[url]
            .messages
            .iter()
            .map(|m| to_message(m, "peek".into()))
            .collect()
    }

    pub fn published(&self) -> Vec<Published> {
        self.state.lock().unwrap().published.clone()
    }

    pub fn invalidations(&self) -> Vec<Vec<String>> {
        self.state.lock().unwrap().invalidations.clone()
    }

    /// The invalidations with the virtual time each was made at.
    pub fn invalidations_at(&self) -> Vec<(u64, Vec<String>)> {
        let s = self.state.lock().unwrap();
        s.invalidated_at
            .iter()
            .copied()
            .zip(s.invalidations.iter().cloned())
            .collect()
    }

    /// Takes up to `max` visible messages of `url` in `rng`'s order, as ReceiveMessage does; with
    /// `duplicate`, SQS also hands one of them out again later (at-least-once delivery). A message
    /// received `max_receives` times goes to the DLQ instead.
    pub fn receive(
        &self,
        url: &str,
        max: usize,
        rng: &mut Rng,
        duplicate: bool,
    ) -> Vec<aws_sdk_sqs::types::Message> {
        let mut s = self.state.lock().unwrap();
        let now = s.clock;
        let queue = s.queues.get(url).unwrap();
        let mut visible: Vec<usize> = (0..queue.messages.len())
            .filter(|&i| queue.messages[i].visible_at <= now)
            .collect();
        rng.shuffle(&mut visible);
        visible.truncate(max);
        visible.sort_unstable_by(|a, b| b.cmp(a));
        let mut out = Vec::new();
        let mut moved = Vec::new();
        let mut copies = Vec::new();
        for i in visible {
            let receipt = next_id(&mut s, "r");
            let queue = s.queues.get_mut(url).unwrap();
            let visibility = queue.visibility;
            if let Some((limit, dlq)) = queue.max_receives.clone()
                && queue.messages[i].receives >= limit
            {
                let m = queue.messages.remove(i);
                moved.push((dlq, m));
                continue;
            }
            let m = &mut queue.messages[i];
            m.receives += 1;
            m.visible_at = now + visibility;
            m.receipt = Some(receipt.clone());
            if duplicate && copies.is_empty() && !m.duplicated {
                m.duplicated = true;
                let mut copy = m.clone();
                copy.receipt = None;
                copy.visible_at = now;
                copies.push(copy);
            }
            out.push(to_message(m, receipt));
        }
        s.queues.get_mut(url).unwrap().messages.extend(copies);
        for (dlq, mut m) in moved {
            s.trace.push(format!(
                "t={now} SQS moved {} to the DLQ after {} receives",
                m.id, m.receives
            ));
            m.visible_at = now;
            m.receipt = None;
            m.receives = 0;
            s.queues.get_mut(&dlq).unwrap().messages.push(m);
        }
        out
    }

    /// The earliest time a message of these queues becomes visible, if any is waiting.
    pub fn next_visible(&self, urls: &[&str]) -> Option<u64> {
        let s = self.state.lock().unwrap();
        urls.iter()
            .flat_map(|u| s.queues[*u].messages.iter().map(|m| m.visible_at))
            .min()
    }

    pub fn visible(&self, url: &str) -> usize {
        let s = self.state.lock().unwrap();
        s.queues[url]
            .messages
            .iter()
            .filter(|m| m.visible_at <= s.clock)
            .count()
    }
}

/// Puts a new message on `url`, visible after `delay` seconds.
fn push(
    s: &mut State,
    url: &str,
    body: String,
    attributes: Vec<(String, String, bool)>,
    delay: u32,
) {
    let id = next_id(s, "m");
    let now = s.clock;
    s.queues
        .get_mut(url)
        .unwrap_or_else(|| panic!("no queue {url}"))
        .messages
        .push(Queued {
            id,
            body,
            attributes,
            receives: 0,
            visible_at: now + u64::from(delay),
            receipt: None,
            sent_at: now,
            duplicated: false,
        });
}

fn next_id(s: &mut State, prefix: &str) -> String {
    s.next_id += 1;
    format!("{prefix}{}", s.next_id)
}

mod boundary;
mod gate;
mod wire;
pub use boundary::Sim;
pub use wire::s3_event;
use wire::to_message;
