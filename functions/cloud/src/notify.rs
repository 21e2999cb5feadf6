//! Publishing imgpipe events ([`imgpipe_core::events`]) to the events SNS topic.
//!
//! One topic carries every event; subscribers choose with an SNS filter policy on the message
//! attribute `imgpipe.event_type` (e.g. a done queue that takes only `imgpipe.image.done`). The
//! message is the event JSON itself, so a subscription with raw message delivery hands receivers
//! exactly what the webhooks carry. Publishing is at least once: a failure is transient (the SQS
//! message is retried, and the retry publishes the same event with the same id).

use aws_sdk_sns::types::MessageAttributeValue;
use imgpipe_core::events::Event;

use crate::failure::Failure;

/// SNS message attribute names on every published event.
pub mod attributes {
    /// The event's `type`, e.g. `imgpipe.image.done` (for subscription filter policies).
    pub const EVENT_TYPE: &str = "imgpipe.event_type";
    /// The event's `id`.
    pub const EVENT_ID: &str = "imgpipe.event_id";
}

/// Publishes events to the topic, or nowhere when none is configured.
#[derive(Debug, Clone)]
pub struct Notifier {
    sns: aws_sdk_sns::Client,
    topic_arn: Option<String>,
}

impl Notifier {
    /// A notifier for `topic_arn` (`None`: events are not published).
    pub fn new(sns: aws_sdk_sns::Client, topic_arn: Option<String>) -> Self {
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
        let attribute = |value: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .expect("data type set")
        };
        self.sns
            .publish()
            .topic_arn(topic_arn)
            .message(body)
            .message_attributes(attributes::EVENT_TYPE, attribute(&event.event_type))
            .message_attributes(attributes::EVENT_ID, attribute(&event.id))
            .send()
            .await
            .map_err(|e| {
                Failure::transient(
                    "sns_publish",
                    format!(
                        "SNS Publish of {} {} to {topic_arn}: {}",
                        event.event_type,
                        event.id,
                        crate::aws_error::brief(&e)
                    ),
                )
            })?;
        tracing::info!(event_type = %event.event_type, event_id = %event.id, "event published");
        Ok(())
    }
}
