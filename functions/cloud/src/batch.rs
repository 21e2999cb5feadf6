//! What both drivers (the long-poll [`worker`](crate::worker) and the [`lambda`](crate::lambda)
//! runtime) run: a [`BatchFunction`] over SQS messages, and what it says about each message. The
//! image [`Handler`](crate::Handler) is one; the webhook sender is another.

use std::future::Future;
use std::time::Duration;

use aws_lambda_events::sqs::SqsMessage;
use futures::StreamExt;

use crate::deadline::Deadline;
use crate::failure::Failure;

/// A function from a batch of SQS messages to one result per message. Each message is settled on
/// its own: the driver deletes it unless its outcome is [`Outcome::Retry`], whose backoff it applies.
pub trait BatchFunction: Send + Sync + 'static {
    /// The SQS client (deletes, visibility).
    fn sqs(&self) -> &aws_sdk_sqs::Client;

    /// Messages handled at once within a batch.
    fn concurrency(&self) -> usize;

    /// Handles one message.
    fn handle_message(&self, message: &SqsMessage) -> impl Future<Output = Outcome> + Send;

    /// The time `message` is predicted to need, for [`BatchFunction::handle_batch_before`]; zero
    /// (always started) unless the function knows better.
    fn predicted_need(&self, _message: &SqsMessage) -> Duration {
        Duration::ZERO
    }

    /// Handles `messages`, up to [`BatchFunction::concurrency`] at once, each on its own; one result
    /// per message, in any order.
    fn handle_batch(
        &self,
        messages: Vec<SqsMessage>,
    ) -> impl Future<Output = Vec<MessageResult>> + Send {
        self.handle_batch_before(messages, None)
    }

    /// [`BatchFunction::handle_batch`] with a `deadline` (Lambda's): a message whose turn comes when
    /// less time is left than it is predicted to need is not started; it comes back as
    /// [`Outcome::Retry`] with no delay, so the driver returns it to the queue at once.
    fn handle_batch_before(
        &self,
        messages: Vec<SqsMessage>,
        deadline: Option<Deadline>,
    ) -> impl Future<Output = Vec<MessageResult>> + Send {
        futures::stream::iter(messages)
            .map(move |message| async move {
                let message_id = message.message_id.clone().unwrap_or_default();
                let outcome = match deadline.map(|d| (d.left(), self.predicted_need(&message))) {
                    Some((left, need)) if left < need => {
                        tracing::warn!(message_id, left_ms = left.as_millis() as u64, need_ms = need.as_millis() as u64, "not started: too little time left before the deadline; returned to the queue");
                        Outcome::Retry {
                            failure: Failure::transient(
                                "deadline",
                                format!(
                                    "not started with {:.1} s left of the invocation (needs about {:.1} s); another invocation takes it",
                                    left.as_secs_f64(),
                                    need.as_secs_f64()
                                ),
                            ),
                            delay: Duration::ZERO,
                        }
                    }
                    _ => crate::deadline::scope(deadline, self.handle_message(&message)).await,
                };
                MessageResult {
                    message_id,
                    receipt_handle: message.receipt_handle.clone(),
                    outcome,
                }
            })
            .buffer_unordered(self.concurrency().max(1))
            .collect()
    }
}

/// How many times SQS has handed this message out (`ApproximateReceiveCount`; 1 when absent).
pub fn receive_count(message: &SqsMessage) -> u32 {
    message
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// What happened to one message. The driver deletes every message except [`Outcome::Retry`].
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// All records processed, forwarded or already done.
    Done {
        /// Records acted on now: processed, or removed with their outputs (webhook sender: endpoints
        /// delivered to).
        processed: usize,
        /// Records skipped because a `done` document for the same ETag and presets exists.
        skipped: usize,
        /// Records forwarded to another queue (GPU queue; webhook retries per endpoint).
        forwarded: usize,
    },
    /// Nothing to do (s3:TestEvent, out-of-order events, keys under the output location).
    Ignored {
        /// Why.
        reason: String,
    },
    /// Failed permanently or ran out of attempts; sent to the DLQ with `failure`.
    DeadLettered {
        /// The reason written to the DLQ.
        failure: Failure,
    },
    /// Failed transiently; the message becomes visible again after `delay`.
    Retry {
        /// The reason.
        failure: Failure,
        /// Backoff before the next receive.
        delay: Duration,
    },
}

impl Outcome {
    /// True when the driver must leave the message on the queue.
    pub fn keeps_message(&self) -> bool {
        matches!(self, Outcome::Retry { .. })
    }
}

/// One message's result.
#[derive(Debug, Clone)]
pub struct MessageResult {
    /// SQS message id (the Lambda batch item identifier).
    pub message_id: String,
    /// Receipt handle (for delete / visibility).
    pub receipt_handle: Option<String>,
    /// What happened.
    pub outcome: Outcome,
}
