//! Long-polling driver: receive from SQS, call the same batch handler as Lambda, delete what finished,
//! keep what must be retried. Messages being processed get their visibility extended (heartbeat), and
//! shutdown stops receiving, then waits for in-flight images to finish.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::SqsMessage;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::handler::{Handler, MessageResult, Outcome};
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
pub async fn run(
    handler: Arc<Handler>,
    options: WorkerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> WorkerStats {
    let sqs = handler.sqs().clone();
    let visibility = queue_visibility_timeout(&sqs, &options.queue_url).await;
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
        let room = 1 + permits.available_permits().min(9);
        let received = sqs
            .receive_message()
            .queue_url(&options.queue_url)
            .max_number_of_messages(room as i32)
            .wait_time_seconds(options.wait_time_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await;
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %DisplayErrorContext(&e), "ReceiveMessage failed; retrying in 2 s");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        // Messages already received are in flight even when shutdown began meanwhile: they are hidden
        // from every other worker, so this one finishes them (the loop ends after this batch).
        stats.received += messages.len() as u64;
        let mut held = vec![first];
        for _ in 1..messages.len() {
            held.push(
                Arc::clone(&permits)
                    .try_acquire_owned()
                    .expect("asked for no more messages than free permits"),
            );
        }
        let handler = Arc::clone(&handler);
        let queue_url = options.queue_url.clone();
        in_flight.spawn(async move {
            let results = process_batch(&handler, &queue_url, messages, visibility).await;
            drop(held);
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

fn record(stats: &mut WorkerStats, done: Result<Vec<MessageResult>, tokio::task::JoinError>) {
    match done {
        Ok(results) => results.iter().for_each(|r| stats.count(&r.outcome)),
        Err(e) => {
            tracing::error!(error = %e, "batch task panicked; its messages will be received again")
        }
    }
}

async fn process_batch(
    handler: &Handler,
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
    handler.apply_backoff(queue_url, &results).await;
    let finished: Vec<String> = results
        .iter()
        .filter(|r| !r.outcome.keeps_message())
        .filter_map(|r| r.receipt_handle.clone())
        .collect();
    queue::delete_all(handler.sqs(), queue_url, &finished).await;
    results
}

/// Every half visibility timeout, extends the visibility of the messages being processed.
async fn heartbeat(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    handles: &[String],
    visibility: Duration,
) {
    let period = (visibility / 2).max(Duration::from_secs(1));
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
    converted
}
