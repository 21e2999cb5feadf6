use std::collections::{HashMap, HashSet};
use std::time::Duration;

use imgpipe_core::events::{OutputRef, image_event};

use crate::harness::{event_body, fixture, setup};

/// Events of `events` by source key; panics on a key seen twice.
fn by_key(events: &[serde_json::Value]) -> HashMap<String, serde_json::Value> {
    let mut map = HashMap::new();
    for e in events {
        let key = e["data"]["source"]["key"].as_str().unwrap().to_string();
        assert!(
            map.insert(key.clone(), e.clone()).is_none(),
            "two events for {key}: {events:?}"
        );
    }
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribed_queue_gets_one_event_per_outcome_and_duplicates_repeat_the_id() {
    let stack = setup("events").await;
    let done_queue = stack.subscribe_queue("events-done", None).await;
    let worker = stack.start_worker().await;
    let uploads = [
        ("uploads/a photo.jpg", "Landscape_1.jpg"),
        ("uploads/b.jpg", "Portrait_6.jpg"),
        ("uploads/not an image.jpg", "not_an_image_text.jpg"),
    ];
    for (key, file) in uploads {
        stack.put(key, fixture(file)).await;
    }
    let events = stack.events(&done_queue, 3, Duration::from_secs(3)).await;
    assert_eq!(events.len(), 3, "one event per upload: {events:?}");
    let first = by_key(&events);
    for key in ["uploads/a photo.jpg", "uploads/b.jpg"] {
        let event = &first[key];
        assert_eq!(event["type"], "imgpipe.image.done", "{event}");
        let metadata = stack.wait_for_metadata(key).await;
        assert_eq!(
            event["data"]["source"]["etag"].as_str(),
            metadata.source.etag.as_deref()
        );
        assert_eq!(event["data"]["preset_set_hash"], metadata.preset_set_hash);
        assert_eq!(event["data"]["metadata"]["key"], stack.metadata_key(key));
        assert_eq!(
            event["timestamp"].as_str(),
            metadata.processed_at.as_deref()
        );
        let keys: Vec<&str> = event["data"]["derivatives"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["key"].as_str().unwrap())
            .collect();
        let written: Vec<&str> = metadata
            .derivatives
            .iter()
            .map(|d| d.key.as_str())
            .collect();
        assert_eq!(keys, written);
        // Published after metadata.json: the document it points to says the same.
        assert_eq!(metadata.status, imgpipe_core::metadata::Status::Done);
    }
    let failed = &first["uploads/not an image.jpg"];
    assert_eq!(failed["type"], "imgpipe.image.failed");
    assert_eq!(failed["data"]["error"]["kind"], "unsupported");
    assert_eq!(failed["data"]["derivatives"].as_array().unwrap().len(), 0);
    let ids: HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "ids are distinct per image");

    // At-least-once delivery: the same S3 notifications again, for a done and a failed upload.
    for key in ["uploads/a photo.jpg", "uploads/not an image.jpg"] {
        let etag = first[key]["data"]["source"]["etag"]
            .as_str()
            .unwrap()
            .to_string();
        let size = first[key]["data"]["source"]["bytes"].as_u64().unwrap() as usize;
        stack
            .send_to_jobs(&event_body(&stack.ingest, key, &etag, size))
            .await;
    }
    let again = stack.events(&done_queue, 2, Duration::from_secs(3)).await;
    worker.stop().await;
    assert_eq!(again.len(), 2, "{again:?}");
    for (key, event) in by_key(&again) {
        assert_eq!(
            event, first[&key],
            "a duplicate notification must repeat the very same event"
        );
    }
    assert_eq!(
        stack.depth(&stack.dlq_url).await,
        1,
        "the bad file is dead-lettered once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_written_but_event_not_published_is_published_on_redelivery() {
    let stack = setup("event-redelivery").await;
    // The events topic does not exist yet, so every Publish fails after metadata.json is written:
    // the state a worker killed between the two leaves behind. The message must come back.
    let topic_name = format!("imgpipe-late-topic-{}", std::process::id());
    let topic_arn = format!("arn:aws:sns:us-east-1:000000000000:{topic_name}");
    let env = [
        ("IMGPIPE_EVENTS_TOPIC_ARN", topic_arn.as_str()),
        ("IMGPIPE_MAX_ATTEMPTS", "10"),
    ];
    let worker = stack.start_worker_with(&env).await;
    let key = "uploads/late.jpg";
    stack.put(key, fixture("Landscape_2.jpg")).await;
    let metadata = stack.wait_for_metadata(key).await;
    // Let at least one publish fail and the message be retried.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        stack.depth(&stack.queue_url).await >= 1,
        "the message was deleted without its event"
    );

    // Stop the worker while the topic and its subscription are made: a publish that succeeded
    // between the two would reach no queue, and the test would wait for an event never delivered.
    let failing = worker.stop().await;
    assert!(failing.retried >= 1, "{failing:?}");
    let created = stack
        .sns
        .create_topic()
        .name(&topic_name)
        .send()
        .await
        .unwrap();
    assert_eq!(created.topic_arn(), Some(topic_arn.as_str()));
    let queue = stack
        .subscribe_queue_to(&topic_arn, "late-events", None)
        .await;
    let worker = stack.start_worker_with(&env).await;
    let events = stack.events(&queue, 1, Duration::from_secs(3)).await;
    stack.wait_until_drained().await;
    let stats = worker.stop().await;

    assert_eq!(events.len(), 1, "{events:?}");
    let metadata_key = stack.metadata_key(key);
    let expected = image_event(
        &metadata,
        &OutputRef {
            bucket: &stack.derivatives,
            metadata_key: &metadata_key,
            cdn_base_url: None,
        },
    );
    assert_eq!(events[0], serde_json::to_value(&expected).unwrap());
    assert_eq!(
        (stats.skipped, stats.retried),
        (1, 0),
        "the redelivery found the image done and published at once: {stats:?}"
    );
    let after = stack.wait_for_metadata(key).await;
    assert_eq!(
        after.processed_at, metadata.processed_at,
        "the image was processed twice"
    );
    assert_eq!(stack.depth(&stack.dlq_url).await, 0);
}
