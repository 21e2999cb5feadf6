use std::time::Duration;

use crate::harness::{event_body, fixture, repo_root, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_test_event_fails_nothing() {
    let stack = setup("test-event").await;
    // Whatever TestEvent the deploy produced, plus the recorded one from AWS, explicitly.
    let recorded =
        std::fs::read_to_string(repo_root().join("tests/fixtures/events/s3-test-event.json"))
            .unwrap();
    stack.send_to_jobs(&recorded).await;
    let worker = stack.start_worker().await;
    stack.wait_until_drained().await;
    let stats = worker.stop().await;
    assert!(stats.ignored >= 1, "{stats:?}");
    assert_eq!(
        (stats.dead_lettered, stats.retried, stats.done),
        (0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(stack.depth(&stack.dlq_url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_notification_does_not_redo_work() {
    let stack = setup("duplicate").await;
    let worker = stack.start_worker().await;
    let key = "uploads/dup.jpg";
    let bytes = fixture("Landscape_2.jpg");
    let size = bytes.len();
    stack.put(key, bytes).await;
    let first = stack.wait_for_metadata(key).await;
    stack.wait_until_drained().await;

    // Remove one derivative, then deliver the same notification again (at-least-once delivery).
    let thumbnail = &first
        .derivatives
        .iter()
        .find(|d| d.preset == "thumbnail")
        .unwrap()
        .key;
    stack.delete(&stack.derivatives, thumbnail).await;
    let etag = first.source.etag.clone().unwrap();
    stack
        .send_to_jobs(&event_body(&stack.ingest, key, &etag, size))
        .await;
    stack.wait_until_drained().await;
    let stats = worker.stop().await;

    assert_eq!(stats.skipped, 1, "{stats:?}");
    assert!(
        stack.get(&stack.derivatives, thumbnail).await.is_none(),
        "work was redone: the thumbnail came back"
    );
    let second = stack.wait_for_metadata(key).await;
    assert_eq!(
        second.processed_at, first.processed_at,
        "metadata was rewritten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_to_the_derivatives_location_triggers_nothing() {
    let stack = setup("no-loop").await;
    // 1. The derivatives bucket has no notification: writing there enqueues nothing.
    stack
        .s3
        .put_object()
        .bucket(&stack.derivatives)
        .key("derived/x.jpg/thumbnail.jpg")
        .body(fixture("Landscape_1.jpg").into())
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let worker = stack.start_worker().await;
    stack.wait_until_drained().await;
    let quiet = worker.stop().await;
    assert_eq!((quiet.done, quiet.dead_lettered), (0, 0), "{quiet:?}");

    // 2. Misconfiguration: outputs written into the ingest bucket, whose notification covers every key.
    //    The output events arrive, and are recognised and ignored: no derived/derived/… loop.
    let worker = stack.start_worker_with_output(&stack.ingest).await;
    stack
        .put("uploads/loop.jpg", fixture("Landscape_1.jpg"))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while stack
        .get(&stack.ingest, "derived/uploads/loop.jpg/metadata.json")
        .await
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no outputs in the ingest bucket"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stack.wait_until_drained().await;
    let stats = worker.stop().await;
    let listed = stack
        .s3
        .list_objects_v2()
        .bucket(&stack.ingest)
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert!(
        !keys.iter().any(|k| k.starts_with("derived/derived/")),
        "processing loop: {keys:?}"
    );
    assert_eq!(keys.len(), 1 + 6, "{keys:?}"); // the upload + 5 derivatives + metadata.json
    assert_eq!(stats.done, 1, "{stats:?}");
    assert!(
        stats.ignored >= 6,
        "output events were not ignored: {stats:?}"
    );
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
}
