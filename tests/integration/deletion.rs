use std::time::{Duration, Instant};

use imgpipe_core::metadata::Status;

use crate::harness::{LOCALSTACK_SEQUENCER, fixture, setup};

/// Keys with spaces, and a second source whose key lies under the first's: its outputs live under
/// the first one's output prefix and must survive the first one's deletion.
const KEY: &str = "uploads/del me/a b.jpg";
const NESTED: &str = "uploads/del me/a b.jpg/inner.jpg";

async fn keys_under(stack: &crate::harness::Stack, prefix: &str) -> Vec<String> {
    let page = stack
        .s3
        .list_objects_v2()
        .bucket(&stack.derivatives)
        .prefix(prefix)
        .send()
        .await
        .unwrap();
    let mut keys: Vec<String> = page
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_source_deletes_its_outputs_and_a_reupload_brings_them_back() {
    let stack = setup("deletion").await;
    let events = stack.subscribe_queue("deletion-events", None).await;
    let worker = stack.start_worker().await;
    let bytes = fixture("Landscape_2.jpg");
    stack.put(KEY, bytes.clone()).await;
    stack.put(NESTED, fixture("Portrait_3.jpg")).await;
    let first = stack.wait_for_metadata(KEY).await;
    stack.wait_for_metadata(NESTED).await;
    assert_eq!(
        first.source.sequencer.as_deref(),
        Some(LOCALSTACK_SEQUENCER),
        "the event's sequencer is recorded"
    );
    let dir = format!("derived/{KEY}/");
    let made = keys_under(&stack, &dir).await;
    let done = stack.events(&events, 2, Duration::from_secs(1)).await;
    assert_eq!(
        done.iter()
            .filter(|e| e["type"] == "imgpipe.image.done")
            .count(),
        2
    );

    // Delete: every output of KEY goes, the nested source's stay, a deleted event says which.
    stack.delete(&stack.ingest, KEY).await;
    let deleted = stack.events(&events, 1, Duration::from_secs(1)).await;
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    let event = &deleted[0];
    assert_eq!(event["type"], "imgpipe.image.deleted");
    assert_eq!(event["data"]["source"]["key"], KEY);
    let mut reported: Vec<String> = event["data"]["deleted_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    reported.sort();
    let own: Vec<String> = made
        .iter()
        .filter(|k| !k[dir.len()..].contains('/'))
        .cloned()
        .collect();
    assert_eq!(own.len(), first.derivatives.len() + 1, "{made:?}");
    assert_eq!(reported, own, "the event lists every output of the key");
    let left = keys_under(&stack, &dir).await;
    let tombstone = format!("{dir}deleted.json");
    assert!(left.contains(&tombstone), "{left:?}");
    // Tagged for the bucket's lifecycle rule, which expires tombstones after TombstoneDays.
    let tags = stack
        .s3
        .get_object_tagging()
        .bucket(&stack.derivatives)
        .key(&tombstone)
        .send()
        .await
        .unwrap();
    assert!(
        tags.tag_set()
            .iter()
            .any(|t| t.key() == "imgpipe-kind" && t.value() == "tombstone"),
        "{tags:?}"
    );
    assert!(
        !left.iter().any(|k| own.contains(k)),
        "outputs left after the deletion: {left:?}"
    );
    assert!(
        left.iter()
            .filter(|k| k.starts_with(&format!("{dir}inner.jpg/")))
            .count()
            > 5,
        "the nested source's outputs must stay: {left:?}"
    );

    // A late creation of the deleted upload, older than the deletion, does not resurrect it.
    let older = crate::harness::event_body(
        &stack.ingest,
        KEY,
        first.source.etag.as_deref().unwrap(),
        bytes.len(),
    )
    .replace(LOCALSTACK_SEQUENCER, "0055AED6DCD90281E4");
    stack.send_to_jobs(&older).await;
    stack.wait_until_drained().await;
    assert_eq!(
        stack
            .get(&stack.derivatives, &format!("{dir}metadata.json"))
            .await,
        None,
        "resurrected"
    );

    // Re-upload: outputs back, tombstone gone, a new done event.
    stack.put(KEY, bytes).await;
    let again = stack.wait_for_metadata(KEY).await;
    assert_eq!(again.status, Status::Done);
    let deadline = Instant::now() + Duration::from_secs(30);
    while keys_under(&stack, &dir).await.contains(&tombstone) {
        assert!(
            Instant::now() < deadline,
            "the tombstone stayed after the re-upload"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let back = keys_under(&stack, &dir).await;
    assert!(own.iter().all(|k| back.contains(k)), "{back:?}");
    let events_after = stack.events(&events, 1, Duration::from_secs(1)).await;
    assert!(
        events_after
            .iter()
            .any(|e| e["type"] == "imgpipe.image.done"),
        "{events_after:?}"
    );
    worker.stop().await;
    assert_eq!(
        stack.depth(&stack.dlq_url).await,
        0,
        "nothing dead-lettered"
    );
}
