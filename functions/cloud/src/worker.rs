//! Long-polling driver: receive from SQS, call the same batch handler as Lambda, delete what finished,
//! keep what must be retried. Messages being processed get their visibility extended (heartbeat), and
//! shutdown stops receiving, then waits for in-flight images to finish. With [`Gather`] (the GPU
//! worker) one batch collects up to N messages or whatever arrived within T ms of the first one.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::SqsMessage;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::batch::{BatchFunction, MessageResult, Outcome};
use crate::queue;

/// Worker settings (flags of `derive` in worker mode).
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Queue to consume.
    pub queue_url: String,
    /// Messages processed at once.
    pub concurrency: usize,
    /// Long-poll wait, 1–20 s. Default 20.
    pub wait_time_seconds: i32,
    /// Batch gathering; `None`: each receive (≤ 10 messages) is one batch.
    pub gather: Option<Gather>,
    /// Live counts for a health endpoint.
    pub gauges: Arc<Gauges>,
    /// How long a received message stays hidden while this worker holds it, kept up by the
    /// heartbeat every third of it; `None`: the queue's visibility timeout. Short (the binaries'
    /// default is [`DEFAULT_VISIBILITY`]) so that a killed worker's messages are back in seconds,
    /// not after the queue's timeout (6× the Lambda's, for the Lambda's sake).
    pub visibility: Option<Duration>,
}

/// The workers' visibility by default (`--visibility-seconds`, `IMGPIPE_WORKER_VISIBILITY_SECONDS`).
pub const DEFAULT_VISIBILITY: Duration = Duration::from_secs(20);

/// How the GPU worker gathers a batch: after the first message arrives it keeps receiving until it
/// holds `max_messages` (capped by `concurrency`) or `window` has passed, so the device gets work in
/// batches without an idle queue delaying a lone message by more than `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gather {
    /// N: messages per batch at most.
    pub max_messages: usize,
    /// T: how long to wait for more after the first message.
    pub window: Duration,
}

/// What a worker is doing now, readable while it runs (the GPU worker's `/health`).
#[derive(Debug, Default)]
pub struct Gauges {
    /// Messages received and not yet finished by this worker.
    pub in_flight: AtomicU64,
    /// Batches started.
    pub batches: AtomicU64,
    /// Messages in the largest batch so far.
    pub largest_batch: AtomicU64,
}

impl Gauges {
    /// The counts as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "in_flight": self.in_flight.load(Ordering::Relaxed),
            "batches": self.batches.load(Ordering::Relaxed),
            "largest_batch": self.largest_batch.load(Ordering::Relaxed),
        })
    }
}

/// Counts of what the worker did, returned at shutdown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Messages received.
    pub received: u64,
    /// Messages fully processed (records processed or skipped).
    pub done: u64,
    /// Records skipped as already done.
    pub skipped: u64,
    /// Messages acknowledged with nothing to do.
    pub ignored: u64,
    /// Records forwarded to the GPU queue.
    pub forwarded: u64,
    /// Messages sent to the DLQ.
    pub dead_lettered: u64,
    /// Messages left for a retry.
    pub retried: u64,
}

impl WorkerStats {
    fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Done {
                skipped, forwarded, ..
            } => {
                self.done += 1;
                self.skipped += *skipped as u64;
                self.forwarded += *forwarded as u64;
            }
            Outcome::Ignored { .. } => self.ignored += 1,
            Outcome::DeadLettered { .. } => self.dead_lettered += 1,
            Outcome::Retry { .. } => self.retried += 1,
        }
    }
}

/// Runs until `shutdown` resolves, then finishes in-flight messages and returns the counts.
pub async fn run<H: BatchFunction>(
    handler: Arc<H>,
    options: WorkerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> WorkerStats {
    let sqs = handler.sqs().clone();
    let visibility = match options.visibility {
        Some(visibility) => visibility.max(Duration::from_secs(3)),
        None => queue_visibility_timeout(&sqs, &options.queue_url).await,
    };
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut in_flight: JoinSet<Vec<MessageResult>> = JoinSet::new();
    let mut stats = WorkerStats::default();
    // Shutdown is observed between receives, never in the middle of one: a ReceiveMessage abandoned
    // mid-poll would still hide the messages it picks up for a whole visibility timeout.
    let stopping = Arc::new(tokio::sync::Notify::new());
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let (stopping, stopped) = (Arc::clone(&stopping), Arc::clone(&stopped));
        tokio::spawn(async move {
            shutdown.await;
            stopped.store(true, std::sync::atomic::Ordering::SeqCst);
            stopping.notify_waiters();
        });
    }
    let is_stopping = || stopped.load(std::sync::atomic::Ordering::SeqCst);
    tracing::info!(queue_url = %options.queue_url, concurrency = options.concurrency, visibility_s = visibility.as_secs(), "worker started");
    loop {
        while let Some(done) = in_flight.try_join_next() {
            record(&mut stats, done);
        }
        if is_stopping() {
            break;
        }
        let first = tokio::select! {
            _ = stopping.notified() => break,
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("semaphore open"),
        };
        if is_stopping() {
            break;
        }
        let most = options.gather.map_or(10, |g| g.max_messages.clamp(1, 10));
        let room = (1 + permits.available_permits().min(9)).min(most);
        let mut messages = match receive(
            &sqs,
            &options.queue_url,
            room,
            options.wait_time_seconds,
            visibility,
        )
        .await
        {
            Some(messages) if !messages.is_empty() => messages,
            _ => continue,
        };
        // Messages already received are in flight even when shutdown began meanwhile: they are hidden
        // from every other worker, so this one finishes them (the loop ends after this batch).
        let mut held = vec![first];
        take_permits(&permits, &mut held, messages.len());
        if let Some(gather) = options.gather {
            // Capped at half the visibility timeout: the heartbeat only starts with the batch.
            let deadline = Instant::now() + gather.window.min(visibility / 2);
            let wanted = gather.max_messages.min(options.concurrency.max(1));
            while messages.len() < wanted && !is_stopping() {
                let left = deadline.saturating_duration_since(Instant::now());
                let room = (wanted - messages.len())
                    .min(permits.available_permits())
                    .min(10);
                if left.is_zero() || room == 0 {
                    break;
                }
                // Whole seconds only: long-poll while at least one is left, else short polls.
                let wait = left.as_secs().min(20) as i32;
                match receive(&sqs, &options.queue_url, room, wait, visibility).await {
                    Some(more) if !more.is_empty() => {
                        take_permits(&permits, &mut held, more.len());
                        messages.extend(more);
                    }
                    _ => tokio::time::sleep(left.min(Duration::from_millis(50))).await,
                }
            }
        }
        let size = messages.len() as u64;
        stats.received += size;
        let gauges = Arc::clone(&options.gauges);
        gauges.batches.fetch_add(1, Ordering::Relaxed);
        gauges.largest_batch.fetch_max(size, Ordering::Relaxed);
        gauges.in_flight.fetch_add(size, Ordering::Relaxed);
        tracing::debug!(messages = size, "batch gathered");
        let handler = Arc::clone(&handler);
        let queue_url = options.queue_url.clone();
        in_flight.spawn(async move {
            let results = process_batch(&*handler, &queue_url, messages, visibility).await;
            drop(held);
            gauges.in_flight.fetch_sub(size, Ordering::Relaxed);
            results
        });
    }
    tracing::info!(
        in_flight = in_flight.len(),
        "shutting down: finishing in-flight messages"
    );
    while let Some(done) = in_flight.join_next().await {
        record(&mut stats, done);
    }
    tracing::info!(?stats, "worker stopped");
    stats
}

/// One ReceiveMessage of up to `room` messages; `None` (after a 2 s pause) when SQS failed.
async fn receive(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    room: usize,
    wait_time_seconds: i32,
    visibility: Duration,
) -> Option<Vec<Message>> {
    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(room as i32)
        .wait_time_seconds(wait_time_seconds)
        .visibility_timeout(visibility.as_secs().min(43_200) as i32)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .message_attribute_names(crate::queue::attributes::REDRIVEN)
        .message_attribute_names(crate::queue::attributes::ERROR_KIND)
        .send()
        .await;
    match received {
        Ok(out) => Some(out.messages.unwrap_or_default()),
        Err(e) => {
            tracing::warn!(error = %crate::aws_error::brief(&e), "ReceiveMessage failed; retrying in 2 s");
            tokio::time::sleep(Duration::from_secs(2)).await;
            None
        }
    }
}

/// Takes one permit per received message beyond those `held` already has.
fn take_permits(
    permits: &Arc<Semaphore>,
    held: &mut Vec<tokio::sync::OwnedSemaphorePermit>,
    messages: usize,
) {
    while held.len() < messages {
        held.push(
            Arc::clone(permits)
                .try_acquire_owned()
                .expect("asked for no more messages than free permits"),
        );
    }
}

fn record(stats: &mut WorkerStats, done: Result<Vec<MessageResult>, tokio::task::JoinError>) {
    match done {
        Ok(results) => results.iter().for_each(|r| stats.count(&r.outcome)),
        Err(e) => {
            tracing::error!(error = %e, "batch task panicked; its messages will be received again")
        }
    }
}

async fn process_batch<H: BatchFunction>(
    handler: &H,
    queue_url: &str,
    messages: Vec<Message>,
    visibility: Duration,
) -> Vec<MessageResult> {
    let handles: Vec<String> = messages
        .iter()
        .filter_map(|m| m.receipt_handle.clone())
        .collect();
    let batch: Vec<SqsMessage> = messages.into_iter().map(to_lambda_message).collect();
    let results = {
        let work = handler.handle_batch(batch);
        let heartbeat = heartbeat(handler.sqs(), queue_url, &handles, visibility);
        tokio::pin!(work);
        tokio::select! {
            results = &mut work => results,
            _ = heartbeat => unreachable!("heartbeat never ends"),
        }
    };
    queue::settle(handler.sqs(), queue_url, &results).await;
    results
}

/// Every third of the visibility timeout, extends the visibility of the messages being processed
/// (two chances before it runs out).
async fn heartbeat(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    handles: &[String],
    visibility: Duration,
) {
    let period = (visibility / 3).max(Duration::from_secs(1));
    loop {
        tokio::time::sleep(period).await;
        for handle in handles {
            if let Err(e) = queue::set_visibility(sqs, queue_url, handle, visibility).await {
                tracing::warn!(error = %e, "visibility heartbeat failed");
            }
        }
    }
}

async fn queue_visibility_timeout(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Duration {
    let seconds = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .ok()
        .and_then(|out| out.attributes)
        .and_then(|a| {
            a.get(&QueueAttributeName::VisibilityTimeout)
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(30u64);
    Duration::from_secs(seconds.max(2))
}

/// Converts an SQS API message into the Lambda event message the batch handler takes.
pub fn to_lambda_message(message: Message) -> SqsMessage {
    let mut attributes = HashMap::new();
    if let Some(system) = &message.attributes {
        for (name, value) in system {
            attributes.insert(name.as_str().to_string(), value.clone());
        }
    }
    let mut converted = SqsMessage::default();
    converted.message_id = message.message_id;
    converted.receipt_handle = message.receipt_handle;
    converted.body = message.body;
    converted.attributes = attributes;
    for (name, value) in message.message_attributes.unwrap_or_default() {
        let mut attribute = aws_lambda_events::sqs::SqsMessageAttribute::default();
        attribute.data_type = Some(value.data_type);
        attribute.string_value = value.string_value;
        converted.message_attributes.insert(name, attribute);
    }
    converted
}
