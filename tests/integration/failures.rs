use std::collections::HashMap;

use imgpipe_cloud::queue::attributes;
use imgpipe_core::metadata::Status;

use crate::harness::{assert_valid_metadata, fixture, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_end_in_the_dlq_with_their_reason_and_are_never_retried() {
    let stack = setup("bad-files").await;
    let worker = stack.start_worker().await;
    stack
        .put(
            "uploads/truncated.jpg",
            fixture("truncated_canon-sx60hs_20000bytes.jpg"),
        )
        .await;
    stack
        .put("uploads/text.jpg", fixture("not_an_image_text.jpg"))
        .await;

    let letters = stack.dlq_messages(2).await;
    stack.wait_until_drained().await;
    let stats = worker.stop().await;

    let by_key: HashMap<String, &aws_sdk_sqs::types::Message> = letters
        .iter()
        .map(|m| {
            (
                m.message_attributes().unwrap()[attributes::SOURCE_KEY]
                    .string_value()
                    .unwrap()
                    .to_string(),
                m,
            )
        })
        .collect();
    assert_eq!(by_key.len(), 2, "DLQ: {letters:?}");
    for (key, kind, words) in [
        ("uploads/truncated.jpg", "corrupt", "truncated"),
        ("uploads/text.jpg", "unsupported", "plain text"),
    ] {
        let attrs = by_key[key].message_attributes().unwrap();
        assert_eq!(
            attrs[attributes::ERROR_KIND].string_value(),
            Some(kind),
            "{key}"
        );
        let message = attrs[attributes::ERROR_MESSAGE].string_value().unwrap();
        assert!(message.contains(words), "{key}: {message}");
        assert_eq!(
            attrs[attributes::RECEIVE_COUNT].string_value(),
            Some("1"),
            "{key} was retried"
        );
        assert_eq!(attrs[attributes::RETRYABLE].string_value(), Some("false"));
        // The original notification body is kept, so the message can be redriven as is.
        assert!(
            by_key[key].body().unwrap().contains("ObjectCreated"),
            "{key}"
        );

        let bytes = stack
            .get(&stack.derivatives, &stack.metadata_key(key))
            .await
            .expect("failed metadata.json");
        assert_valid_metadata(key, &bytes);
        let metadata: imgpipe_core::Metadata = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(metadata.status, Status::Failed);
        let error = metadata.error.unwrap();
        assert_eq!(error.kind, kind);
        assert!(!error.retryable);
        assert!(metadata.derivatives.is_empty());
    }
    assert_eq!(stats.dead_lettered, 2, "{stats:?}");
    assert_eq!(stats.retried, 0, "{stats:?}");
    assert_eq!(stack.depth(&stack.queue_url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_with_backoff_then_dead_lettered_with_the_last_reason() {
    let stack = setup("transient").await;
    // An output bucket that does not exist: every S3 call on it fails, which is transient (it could be
    // created, or a permission fixed), so the message is retried, then dead-lettered with the reason.
    let worker = stack
        .start_worker_with(&[
            ("IMGPIPE_OUTPUT_BUCKET", "imgpipe-missing-output-bucket"),
            ("IMGPIPE_MAX_ATTEMPTS", "3"),
        ])
        .await;
    stack
        .put("uploads/transient.jpg", fixture("Landscape_1.jpg"))
        .await;
    let letters = stack.dlq_messages(1).await;
    stack.wait_until_drained().await;
    let stats = worker.stop().await;

    assert_eq!(letters.len(), 1, "{letters:?}");
    let attrs = letters[0].message_attributes().unwrap();
    assert_eq!(
        attrs[attributes::ERROR_KIND].string_value(),
        Some("retries_exhausted")
    );
    assert_eq!(attrs[attributes::RECEIVE_COUNT].string_value(), Some("3"));
    assert_eq!(attrs[attributes::RETRYABLE].string_value(), Some("true"));
    let message = attrs[attributes::ERROR_MESSAGE].string_value().unwrap();
    assert!(
        message.contains("gave up after 3 attempts")
            && message.contains("imgpipe-missing-output-bucket"),
        "{message}"
    );
    assert_eq!((stats.retried, stats.dead_lettered), (2, 1), "{stats:?}");
}

/// The crash window of issue 28: a worker killed after a bad file's `failed` document was written and
/// before its letter went out. The redelivered message (receive count 2) finds the file already
/// failed for its ETag and sends the letter then, so no bad file ends without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_whose_letter_was_lost_in_a_crash_is_lettered_on_redelivery() {
    let stack = setup("letter-window").await;
    let text = fixture("not_an_image_text.jpg");
    // What the killed worker left: the failed document of this very upload (made by processing the
    // same bytes under another key, so it is the handler's own), and the message, received once.
    let worker = stack.start_worker().await;
    let etag = stack.put("uploads/first.jpg", text.clone()).await;
    stack.wait_for_metadata("uploads/first.jpg").await;
    assert_eq!(stack.dlq_messages(1).await.len(), 1);
    stack.wait_until_drained().await;
    worker.stop().await;
    let failed = stack
        .get(&stack.derivatives, &stack.metadata_key("uploads/first.jpg"))
        .await
        .unwrap();
    assert_eq!(stack.put("uploads/crashed.jpg", text).await, etag);
    stack
        .s3
        .put_object()
        .bucket(&stack.derivatives)
        .key(stack.metadata_key("uploads/crashed.jpg"))
        .body(failed.into())
        .send()
        .await
        .unwrap();
    let received = stack
        .sqs
        .receive_message()
        .queue_url(&stack.queue_url)
        .wait_time_seconds(5)
        .visibility_timeout(1)
        .send()
        .await
        .unwrap();
    assert_eq!(received.messages().len(), 1, "the upload's notification");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;

    let worker = stack.start_worker().await;
    let letters = stack.dlq_messages(1).await;
    stack.wait_until_drained().await;
    worker.stop().await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let attrs = letters[0].message_attributes().unwrap();
    assert_eq!(
        attrs[attributes::SOURCE_KEY].string_value(),
        Some("uploads/crashed.jpg")
    );
    assert_eq!(
        attrs[attributes::ERROR_KIND].string_value(),
        Some("unsupported")
    );
}
