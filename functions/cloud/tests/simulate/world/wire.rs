//! What the simulated S3 and SQS hand the flows, in AWS's own shapes: an S3 event notification's
//! body, and a received SQS message.

use super::Queued;

/// The S3 notification body of one event, as S3 sends it (key URL-encoded).
pub fn s3_event(
    bucket: &str,
    name: &str,
    key: &str,
    size: Option<u64>,
    etag: Option<&str>,
    sequencer: u64,
) -> String {
    let mut object = serde_json::json!({
        "key": key.replace(' ', "+"),
        "sequencer": format!("{sequencer:016X}"),
    });
    if let Some(size) = size {
        object["size"] = size.into();
    }
    if let Some(etag) = etag {
        object["eTag"] = etag.into();
    }
    serde_json::json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-12-07T00:00:00.000Z",
        "eventName": name,
        "s3": {"bucket": {"name": bucket}, "object": object},
    }]})
    .to_string()
}

pub(super) fn to_message(m: &Queued, receipt: String) -> aws_sdk_sqs::types::Message {
    use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName as N};
    let mut message = Message::builder()
        .message_id(&m.id)
        .receipt_handle(receipt)
        .body(&m.body)
        .attributes(N::ApproximateReceiveCount, m.receives.to_string())
        .attributes(N::SentTimestamp, (m.sent_at * 1000).to_string());
    for (name, value, number) in &m.attributes {
        message = message.message_attributes(
            name,
            MessageAttributeValue::builder()
                .data_type(if *number { "Number" } else { "String" })
                .string_value(value)
                .build()
                .unwrap(),
        );
    }
    message.build()
}
