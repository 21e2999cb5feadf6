use crate::harness::{dimensions, fixture, setup};
use imgpipe_core::metadata::Status;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jpeg_upload_produces_every_default_derivative() {
    let stack = setup("default-presets").await;
    let worker = stack.start_worker().await;
    // Canon SX60 HS, stored 2048x1536 with EXIF orientation 6: upright it is 1536x2048.
    stack
        .put(
            "uploads/canon.jpg",
            fixture("camera_canon-sx60hs_orient6.jpg"),
        )
        .await;
    let metadata = stack.wait_for_metadata("uploads/canon.jpg").await;
    worker.stop().await;

    assert_eq!(metadata.status, Status::Done, "{metadata:?}");
    assert_eq!(
        (metadata.source.width, metadata.source.height),
        (Some(1536), Some(2048))
    );
    assert_eq!(metadata.source.orientation, Some(6));
    assert_eq!(metadata.source.format.as_deref(), Some("jpeg"));
    assert_eq!(metadata.source.bucket, stack.ingest);
    assert!(
        metadata
            .source
            .sha256
            .as_ref()
            .is_some_and(|h| h.len() == 64)
    );
    assert!(metadata.source.etag.is_some());
    assert_eq!(
        metadata.exif.as_ref().and_then(|e| e.make.as_deref()),
        Some("Canon")
    );
    let expected = [
        ("thumbnail", "image/jpeg", (200, 200)),
        ("preview", "image/jpeg", (900, 1200)),
        ("webp", "image/webp", (900, 1200)),
        ("blur", "image/webp", (32, 43)), // 32 px wide, whatever the aspect
        ("low-quality", "image/jpeg", (600, 800)),
    ];
    assert_eq!(metadata.derivatives.len(), expected.len());
    for ((preset, content_type, dims), info) in expected.iter().zip(&metadata.derivatives) {
        assert_eq!(info.preset, *preset);
        assert_eq!((info.width, info.height), *dims, "{preset} in metadata");
        let head = stack.head(&stack.derivatives, &info.key).await;
        assert_eq!(head.content_type(), Some(*content_type), "{preset}");
        assert!(
            head.cache_control().is_some_and(|c| c.contains("max-age")),
            "{preset} cache-control"
        );
        assert_eq!(
            head.content_length(),
            Some(info.bytes as i64),
            "{preset} size"
        );
        let bytes = stack.get(&stack.derivatives, &info.key).await.unwrap();
        assert_eq!(dimensions(&bytes), *dims, "{preset} pixels");
        assert!(
            !bytes.windows(4).any(|w| w == b"Exif"),
            "{preset} carries EXIF"
        );
    }
    let meta_head = stack
        .head(&stack.derivatives, &stack.metadata_key("uploads/canon.jpg"))
        .await;
    assert_eq!(meta_head.content_type(), Some("application/json"));
}
