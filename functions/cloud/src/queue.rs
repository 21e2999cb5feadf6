//! SQS operations shared by both drivers: dead-lettering with a reason, retry backoff, deletes.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::MessageAttributeValue;

use crate::batch::{MessageResult, Outcome};
use crate::effects::{Attribute, Outgoing, Queues};
use crate::failure::Failure;

/// Message attribute names written on dead-lettered messages.
pub mod attributes {
    /// Error code, e.g. `corrupt`.
    pub const ERROR_KIND: &str = "imgpipe.error_kind";
    /// Error sentence.
    pub const ERROR_MESSAGE: &str = "imgpipe.error_message";
    /// Whether a retry could help (`true` only for retries exhausted on a transient error).
    pub const RETRYABLE: &str = "imgpipe.retryable";
    /// Source bucket (first failing record).
    pub const SOURCE_BUCKET: &str = "imgpipe.source_bucket";
    /// Source key, decoded (first failing record).
    pub const SOURCE_KEY: &str = "imgpipe.source_key";
    /// How many times the original message had been received.
    pub const RECEIVE_COUNT: &str = "imgpipe.receive_count";
    /// Message id of the original message.
    pub const ORIGINAL_MESSAGE_ID: &str = "imgpipe.original_message_id";
    /// On a job forwarded to the GPU queue: why it was routed there.
    pub const ROUTE_REASON: &str = "imgpipe.route_reason";
    /// On a job sent back by `imgpipe dlq redrive`: the failure kind it had. Such a job is processed
    /// again even when its metadata records a permanent failure for the same source and presets
    /// (the operator fixed the cause: a limit, a decoder).
    pub const REDRIVEN: &str = "imgpipe.redriven";
}

/// What the DLQ message says about the failure.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// Original body, unchanged, so the message can be redriven as is.
    pub body: &'a str,
    /// The failure.
    pub failure: &'a Failure,
    /// Bucket and key of the failing object, when known.
    pub source: Option<(&'a str, &'a str)>,
    /// Receives of the original message.
    pub receive_count: u32,
    /// Original message id.
    pub message_id: &'a str,
}

/// A String message attribute, cut to 1 024 characters (readable in consoles; SQS allows 256 KiB).
pub fn string_attribute(value: &str) -> MessageAttributeValue {
    // SQS attribute values are limited to 256 KiB; keep messages readable in consoles too.
    let value: String = value.chars().take(1024).collect();
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("data type set")
}

/// Sends `letter` to the dead-letter queue at `dlq_url`.
pub async fn send_to_dlq(
    sqs: &dyn Queues,
    dlq_url: &str,
    letter: &DeadLetter<'_>,
) -> Result<(), Failure> {
    let mut attributes = vec![
        Attribute::string(attributes::ERROR_KIND, &letter.failure.kind),
        Attribute::string(attributes::ERROR_MESSAGE, &letter.failure.message),
        Attribute::string(attributes::RETRYABLE, &letter.failure.retryable.to_string()),
        Attribute::number(attributes::RECEIVE_COUNT, letter.receive_count),
        Attribute::string(attributes::ORIGINAL_MESSAGE_ID, letter.message_id),
    ];
    if let Some((bucket, key)) = letter.source {
        attributes.push(Attribute::string(attributes::SOURCE_BUCKET, bucket));
        attributes.push(Attribute::string(attributes::SOURCE_KEY, key));
    }
    let message = Outgoing {
        body: letter.body.to_string(),
        attributes,
        delay_seconds: 0,
    };
    sqs.send(dlq_url, &[message]).await
}

/// Sends a job body to another queue (the GPU queue), saying why.
pub async fn forward(
    sqs: &dyn Queues,
    queue_url: &str,
    body: &str,
    reason: &str,
) -> Result<(), Failure> {
    forward_batch(sqs, queue_url, &[body.to_string()], reason).await
}

/// Sends job `bodies` to `queue_url` (SendMessageBatch, 10 per call, 8 calls at once), each
/// saying why; an entry SQS refuses fails the call (the caller retries; jobs are idempotent).
pub async fn forward_batch(
    sqs: &dyn Queues,
    queue_url: &str,
    bodies: &[String],
    reason: &str,
) -> Result<(), Failure> {
    let messages: Vec<Outgoing> = bodies
        .iter()
        .map(|body| Outgoing {
            body: body.clone(),
            attributes: vec![Attribute::string(attributes::ROUTE_REASON, reason)],
            delay_seconds: 0,
        })
        .collect();
    if messages.is_empty() {
        return Ok(());
    }
    sqs.send(queue_url, &messages).await
}

/// Hides a message for `delay` (retry backoff, or a visibility heartbeat).
pub async fn set_visibility(
    sqs: &dyn Queues,
    queue_url: &str,
    receipt_handle: &str,
    delay: Duration,
) -> Result<(), Failure> {
    let seconds = delay.as_secs().min(43_200) as u32; // SQS maximum: 12 hours
    sqs.set_visibility(queue_url, receipt_handle, seconds).await
}

/// Deletes messages by receipt handle, in batches of 10; returns how many could not be deleted.
pub async fn delete_all(sqs: &dyn Queues, queue_url: &str, receipt_handles: &[String]) -> usize {
    if receipt_handles.is_empty() {
        return 0;
    }
    sqs.delete(queue_url, receipt_handles).await
}

/// Hides each message whose outcome is a retry for its backoff delay (both drivers call this; under
/// Lambda the message is also reported as a batch item failure, so it stays on the queue).
pub async fn apply_backoff(sqs: &dyn Queues, queue_url: &str, results: &[MessageResult]) {
    for result in results {
        if let (Outcome::Retry { delay, .. }, Some(handle)) =
            (&result.outcome, &result.receipt_handle)
            && let Err(e) = set_visibility(sqs, queue_url, handle, *delay).await
        {
            tracing::warn!(message_id = %result.message_id, error = %e, "could not set retry backoff; the queue's visibility timeout applies");
        }
    }
}

/// What the long-poll worker does with a batch's results: applies the retries' backoff, then
/// deletes every other message (the simulator settles its batches with this too).
pub async fn settle(sqs: &dyn Queues, queue_url: &str, results: &[MessageResult]) {
    apply_backoff(sqs, queue_url, results).await;
    let finished: Vec<String> = results
        .iter()
        .filter(|r| !r.outcome.keeps_message())
        .filter_map(|r| r.receipt_handle.clone())
        .collect();
    delete_all(sqs, queue_url, &finished).await;
}

/// How many messages of a queue wait (`visible`) and are being worked on (`in_flight`), as SQS's
/// approximate counts say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Depth {
    /// `ApproximateNumberOfMessages`.
    pub visible: u64,
    /// `ApproximateNumberOfMessagesNotVisible`.
    pub in_flight: u64,
}

/// The depth of `queue_url`.
pub async fn depth(sqs: &Client, queue_url: &str) -> Result<Depth, Failure> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| {
            Failure::transient(
                "sqs_attributes",
                format!(
                    "GetQueueAttributes {queue_url}: {}",
                    crate::aws_error::brief(&e)
                ),
            )
        })?;
    let get = |name: A| {
        out.attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(Depth {
        visible: get(A::ApproximateNumberOfMessages),
        in_flight: get(A::ApproximateNumberOfMessagesNotVisible),
    })
}
