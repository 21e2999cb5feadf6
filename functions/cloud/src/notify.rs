//! Publishing imgpipe events ([`imgpipe_core::events`]) to the events SNS topic.
//!
//! One topic carries every event; subscribers choose with an SNS filter policy on the message
//! attribute `imgpipe.event_type` (e.g. a done queue that takes only `imgpipe.image.done`). The
//! message is the event JSON itself, so a subscription with raw message delivery hands receivers
//! exactly what the webhooks carry. Publishing is at least once: a failure is transient (the SQS
//! message is retried, and the retry publishes the same event with the same id).

use std::sync::Arc;

use imgpipe_core::events::Event;

use crate::effects::Topic;
use crate::failure::Failure;

/// SNS message attribute names on every published event.
pub mod attributes {
    /// The event's `type`, e.g. `imgpipe.image.done` (for subscription filter policies).
    pub const EVENT_TYPE: &str = "imgpipe.event_type";
    /// The event's `id`.
    pub const EVENT_ID: &str = "imgpipe.event_id";
}

/// Publishes events to the topic, or nowhere when none is configured.
#[derive(Clone)]
pub struct Notifier {
    sns: Arc<dyn Topic>,
    topic_arn: Option<String>,
}

impl Notifier {
    /// A notifier for `topic_arn` (`None`: events are not published).
    pub fn new(sns: Arc<dyn Topic>, topic_arn: Option<String>) -> Self {
        Self { sns, topic_arn }
    }

    /// True when events are published.
    pub fn is_on(&self) -> bool {
        self.topic_arn.is_some()
    }

    /// Publishes `event` (nothing when no topic is configured).
    pub async fn publish<D: serde::Serialize>(&self, event: &Event<D>) -> Result<(), Failure> {
        let Some(topic_arn) = &self.topic_arn else {
            return Ok(());
        };
        let body = serde_json::to_string(event).expect("events serialise");
        let attributes = [
            (attributes::EVENT_TYPE, event.event_type.as_str()),
            (attributes::EVENT_ID, event.id.as_str()),
        ];
        self.sns
            .publish(topic_arn, &body, &attributes)
            .await
            .map_err(|e| {
                Failure::transient(
                    "sns_publish",
                    format!("{} {}: {}", event.event_type, event.id, e.message),
                )
            })?;
        tracing::info!(event_type = %event.event_type, event_id = %event.id, "event published");
        Ok(())
    }
}
