use std::time::Duration;

use imgpipe_cloud::progress::{self, BatchItem, ItemEnd, Progress};
use imgpipe_core::events::ManifestRef;

use crate::harness::{event_body, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_sends_one_batch_done_after_its_last_item_and_repeats_it_with_the_same_id() {
    let stack = setup("batch-done").await;
    let archive = stack
        .archive_bucket(
            "batch-archive",
            &[
                ("2020/a.jpg", "Landscape_1.jpg"),
                ("2020/b b.jpg", "Landscape_2.jpg"),
                ("2020/broken.jpg", "truncated_canon-sx60hs_20000bytes.jpg"),
            ],
        )
        .await;
    let events = stack.subscribe_queue("batch-events", None).await;
    // One item per slice and no time: the fan-out sends one job per invocation and continues
    // through the jobs queue from its stored cursor (three invocations for three jobs).
    let cpu = stack
        .start_worker_with(&[
            ("IMGPIPE_GPU_QUEUE_URL", stack.gpu_queue_url.as_str()),
            ("IMGPIPE_MANIFEST_PREFIX", "manifests/"),
            ("IMGPIPE_FANOUT_SECONDS", "0"),
            ("IMGPIPE_FANOUT_SLICE", "1"),
        ])
        .await;
    let gpu = stack
        .start_worker_on(
            &stack.gpu_queue_url,
            &[("IMGPIPE_DLQ_URL", stack.gpu_dlq_url.as_str())],
        )
        .await;
    let manifest = format!(
        "bucket,key\n{archive},2020/a.jpg\n{archive},2020/b b.jpg\n{archive},2020/broken.jpg\n{archive},2020/gone.jpg\n,https://example.com/x.jpg\n"
    );
    let size = manifest.len();
    stack
        .put("manifests/batch.csv", manifest.into_bytes())
        .await;

    let first = stack.events(&events, 4, Duration::from_secs(4)).await;
    let batch: Vec<&serde_json::Value> = first
        .iter()
        .filter(|e| e["type"] == "imgpipe.batch.done")
        .collect();
    assert_eq!(batch.len(), 1, "one batch.done per manifest: {first:?}");
    assert_eq!(
        first.len(),
        4,
        "three image events and one batch event: {first:?}"
    );
    let batch = batch[0];
    assert_eq!(
        batch["data"]["counts"],
        serde_json::json!({"items": 5, "queued": 3, "done": 2, "failed": 1, "missing": 1, "rejected": 1}),
        "{batch}"
    );
    assert_eq!(batch["data"]["manifest"]["key"], "manifests/batch.csv");
    let summary_key = batch["data"]["summary"]["key"].as_str().unwrap();
    assert_eq!(summary_key, "derived/manifests/batch.csv/summary.json");
    assert!(
        stack.get(&stack.derivatives, summary_key).await.is_some(),
        "the summary it names exists"
    );
    let etag = stack.etag(&stack.ingest, "manifests/batch.csv").await;
    assert_eq!(batch["data"]["manifest"]["etag"], etag.as_str());
    let failed: Vec<&serde_json::Value> = first
        .iter()
        .filter(|e| e["type"] == "imgpipe.image.failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["data"]["source"]["key"], "2020/broken.jpg");

    // The manifest's notification again (at-least-once delivery): the fan-out finds its progress
    // complete, queues nothing, and repeats the very same batch event.
    stack
        .send_to_jobs(&event_body(
            &stack.ingest,
            "manifests/batch.csv",
            &etag,
            size,
        ))
        .await;
    let second = stack.events(&events, 1, Duration::from_secs(4)).await;
    // One item's job redelivered (a GPU worker killed before deleting it): announced again, the
    // manifest found complete, the batch event repeated once more.
    let item = imgpipe_cloud::event::ObjectEvent {
        event_name: "ObjectCreated:Manifest".into(),
        bucket: archive.clone(),
        key: "2020/a.jpg".into(),
        size: None,
        etag: first
            .iter()
            .find(|e| e["data"]["source"]["key"] == "2020/a.jpg")
            .map(|e| e["data"]["source"]["etag"].as_str().unwrap().to_string()),
        batch: Some(BatchItem {
            manifest: serde_json::from_value(batch["data"]["manifest"].clone()).unwrap(),
            item: 0,
        }),
        sequencer: None,
        version_id: None,
        event_time: None,
    };
    stack
        .sqs
        .send_message()
        .queue_url(&stack.gpu_queue_url)
        .message_body(item.to_body())
        .send()
        .await
        .unwrap();
    let third = stack.events(&events, 2, Duration::from_secs(4)).await;
    cpu.stop().await;
    let gpu_stats = gpu.stop().await;
    assert_eq!(second.len(), 1, "{second:?}");
    assert_eq!(
        &second[0], batch,
        "the repeated batch event is the same event"
    );
    assert_eq!(third.len(), 2, "{third:?}");
    let again = third
        .iter()
        .find(|e| e["type"] == "imgpipe.batch.done")
        .expect("batch event");
    assert_eq!(again, batch);
    let image = third
        .iter()
        .find(|e| e["type"] == "imgpipe.image.done")
        .expect("image event");
    assert_eq!(
        Some(image),
        first
            .iter()
            .find(|e| e["data"]["source"]["key"] == "2020/a.jpg")
    );
    assert_eq!(
        gpu_stats.skipped, 1,
        "the redelivered item was not processed again: {gpu_stats:?}"
    );
    assert_eq!(
        stack.depth(&stack.gpu_dlq_url).await,
        1,
        "the broken item is dead-lettered once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_item_ends_are_each_counted_once_and_exactly_one_completes_the_manifest() {
    let stack = setup("progress-race").await;
    let manifest = ManifestRef {
        bucket: stack.ingest.clone(),
        key: "manifests/race.json".into(),
        etag: Some("m1".into()),
    };
    let key = "derived/manifests/race.json/progress.json";
    let items = 24u64;
    let keys: Vec<String> = (0..items).map(|i| format!("2020/{i}.jpg")).collect();
    // Fanned out whole: every object looked up and sent.
    let mut fanned_out = Progress::new(
        manifest.clone(),
        items,
        keys.iter().map(|k| ("b", k.as_str())),
        0,
    );
    fanned_out.advance(items, &[]);
    let started = progress::start(&stack.s3, &stack.derivatives, key, fanned_out)
        .await
        .unwrap();
    assert_eq!(started, progress::Started::Fresh(None));
    // Every item ends twice (an at-least-once redelivery), all at once; a third of them failed.
    let ends = (0..items).flat_map(|item| [item, item]).map(|item| {
        let (s3, bucket, batch) = (
            stack.s3.clone(),
            stack.derivatives.clone(),
            BatchItem {
                manifest: manifest.clone(),
                item,
            },
        );
        tokio::spawn(async move {
            let end = if item % 3 == 0 {
                ItemEnd::Failed
            } else {
                ItemEnd::Done
            };
            progress::record_end(&s3, &bucket, key, &batch, end)
                .await
                .unwrap()
        })
    });
    let results: Vec<_> = futures::future::join_all(ends)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let firsts = results.iter().flatten().filter(|c| c.first).count();
    assert_eq!(
        firsts, 1,
        "exactly one update completes the manifest: {results:?}"
    );
    let last = results
        .iter()
        .flatten()
        .next()
        .expect("some update saw it complete");
    assert_eq!(
        (last.counts.done, last.counts.failed, last.counts.queued),
        (16, 8, 24)
    );
    let stored: Progress =
        serde_json::from_slice(&stack.get(&stack.derivatives, key).await.unwrap()).unwrap();
    assert!(stored.is_complete());
    assert_eq!(
        (stored.counts().done, stored.counts().failed),
        (16, 8),
        "an update was lost"
    );
    // An item of another version of the manifest is not counted.
    let stale = BatchItem {
        manifest: ManifestRef {
            etag: Some("m0".into()),
            ..manifest
        },
        item: 0,
    };
    assert_eq!(
        progress::record_end(&stack.s3, &stack.derivatives, key, &stale, ItemEnd::Done)
            .await
            .unwrap(),
        None
    );
}
