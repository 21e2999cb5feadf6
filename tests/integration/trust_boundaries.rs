//! The bucket boundary (issue 27, finding 3): records and manifest items of a bucket that is not
//! this stack's source are refused before anything is read, written, announced or deleted.

use std::time::Duration;

use imgpipe_cloud::queue::attributes;

use crate::harness::{event_body, fixture, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_buckets_records_and_manifest_items_touch_nothing_of_this_stack() {
    let stack = setup("foreign-bucket").await;
    let events = stack.subscribe_queue("foreign-events", None).await;
    let worker = stack
        .start_worker_with(&[
            ("IMGPIPE_GPU_QUEUE_URL", stack.gpu_queue_url.as_str()),
            ("IMGPIPE_MANIFEST_PREFIX", "manifests/"),
        ])
        .await;
    let key = "uploads/a.jpg";
    stack.put(key, fixture("Landscape_1.jpg")).await;
    let done = stack.wait_for_metadata(key).await;
    let metadata_key = stack.metadata_key(key);
    let before = stack.get(&stack.derivatives, &metadata_key).await.unwrap();
    let thumbnail = done.derivatives[0].key.clone();

    // The same key in another bucket of the account: an unreadable creation, then a removal.
    let other = stack
        .other_bucket("foreign", &[(key, "not_an_image_text.jpg")])
        .await;
    let created = event_body(&other, key, "0123456789abcdef0123456789abcdef", 40);
    let removed = created.replace("ObjectCreated:Put", "ObjectRemoved:Delete");
    stack.send_to_jobs(&created).await;
    stack.send_to_jobs(&removed).await;

    let letters = stack.dlq_messages(2).await;
    assert_eq!(letters.len(), 2);
    for letter in &letters {
        let attrs = letter.message_attributes().unwrap();
        assert_eq!(
            attrs[attributes::ERROR_KIND].string_value(),
            Some("foreign_bucket"),
            "{letter:?}"
        );
        let reason = attrs[attributes::ERROR_MESSAGE].string_value().unwrap();
        assert!(
            reason.contains(&other) && reason.contains(&stack.ingest),
            "{reason}"
        );
    }
    // This stack's outputs are as they were, and nothing was announced for the other bucket.
    assert_eq!(
        stack
            .get(&stack.derivatives, &metadata_key)
            .await
            .as_deref(),
        Some(before.as_slice()),
        "metadata.json was overwritten"
    );
    assert!(
        stack.get(&stack.derivatives, &thumbnail).await.is_some(),
        "the other bucket's removal deleted this bucket's outputs"
    );

    // A manifest naming the other bucket: its items are rejected with the reason, this bucket's
    // item is queued.
    let manifest = format!("bucket,key\n{other},{key}\n{},{key}\n", stack.ingest);
    stack
        .put("manifests/mixed.csv", manifest.into_bytes())
        .await;
    let summary_key = "derived/manifests/mixed.csv/summary.json";
    let summary = loop {
        if let Some(bytes) = stack.get(&stack.derivatives, summary_key).await {
            break serde_json::from_slice::<serde_json::Value>(&bytes).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // A late event of another version of the manifest (a continuation queued before a new
    // upload) reads nothing under its ETag: the current version's progress stays as it is.
    let progress_key = "derived/manifests/mixed.csv/progress.json";
    stack.wait_until_drained().await;
    let progress = stack.get(&stack.derivatives, progress_key).await.unwrap();
    stack
        .send_to_jobs(&event_body(
            &stack.ingest,
            "manifests/mixed.csv",
            "ffffffffffffffffffffffffffffffff",
            40,
        ))
        .await;
    stack.wait_until_drained().await;
    assert_eq!(
        stack.get(&stack.derivatives, progress_key).await.unwrap(),
        progress,
        "a stale manifest event fanned the current content out again"
    );
    worker.stop().await;
    assert_eq!(
        (summary["queued"].as_u64(), summary["rejected"].as_u64()),
        (Some(1), Some(1)),
        "{summary}"
    );
    let rejected = summary["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["status"] == "rejected")
        .unwrap();
    assert_eq!(rejected["entry"], format!("{other},{key}"));
    assert!(
        rejected["reason"]
            .as_str()
            .unwrap()
            .contains("not this stack's ingest bucket"),
        "{rejected}"
    );

    let announced = stack.events(&events, 1, Duration::from_secs(2)).await;
    assert_eq!(
        announced.len(),
        1,
        "only the real upload's event: {announced:?}"
    );
    assert_eq!(
        announced[0]["data"]["source"]["bucket"],
        stack.ingest.as_str()
    );
}
