//! Lambda driver: an SQS event in, `SqsBatchResponse` out. Failed (retryable) messages are reported as
//! batch item failures, so Lambda deletes only the others; requires `ReportBatchItemFailures` on the
//! event source mapping (see infra/template.yaml).

use std::sync::Arc;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};

use crate::batch::{BatchFunction, MessageResult};
use crate::deadline::Deadline;
use crate::queue;

/// Turns batch results into the Lambda response.
pub fn batch_response(results: &[MessageResult]) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = results
        .iter()
        .filter(|r| r.outcome.keeps_message())
        .map(|r| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = r.message_id.clone();
            failure
        })
        .collect();
    response
}

/// Handles one invocation; `queue_url` is where retry backoff is applied. Messages whose turn comes
/// too close to `deadline` are not started and come back as batch item failures.
pub async fn handle_event<H: BatchFunction>(
    handler: &H,
    queue_url: Option<&str>,
    event: SqsEvent,
    deadline: Option<Deadline>,
) -> SqsBatchResponse {
    let results = handler.handle_batch_before(event.records, deadline).await;
    if let Some(queue_url) = queue_url {
        queue::apply_backoff(handler.sqs(), queue_url, &results).await;
    }
    batch_response(&results)
}

/// Runs the Lambda runtime loop with one shared handler (clients reused across invocations).
pub async fn run<H: BatchFunction>(
    handler: Arc<H>,
    queue_url: Option<String>,
) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let handler = Arc::clone(&handler);
        let queue_url = queue_url.clone();
        let deadline = Deadline::from_epoch_ms(event.context.deadline);
        async move {
            Ok::<_, lambda_runtime::Error>(
                handle_event(
                    &*handler,
                    queue_url.as_deref(),
                    event.payload,
                    Some(deadline),
                )
                .await,
            )
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Outcome;
    use crate::failure::Failure;
    use std::time::Duration;

    fn result(id: &str, outcome: Outcome) -> MessageResult {
        MessageResult {
            message_id: id.into(),
            receipt_handle: Some(format!("rh-{id}")),
            outcome,
        }
    }

    #[test]
    fn only_retries_are_reported_as_failures() {
        let results = [
            result(
                "done",
                Outcome::Done {
                    processed: 1,
                    skipped: 0,
                    forwarded: 0,
                },
            ),
            result(
                "test",
                Outcome::Ignored {
                    reason: "s3:TestEvent".into(),
                },
            ),
            result(
                "dlq",
                Outcome::DeadLettered {
                    failure: Failure::permanent("corrupt", "x"),
                },
            ),
            result(
                "retry",
                Outcome::Retry {
                    failure: Failure::transient("s3_get", "x"),
                    delay: Duration::from_secs(10),
                },
            ),
        ];
        let response = batch_response(&results);
        let ids: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(ids, ["retry"]);
        let json = serde_json::to_value(&response).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": "retry"}]})
        );
    }
}
