use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::CompletedPart;
use imgpipe_core::metadata::Status;

use crate::harness::{fixture, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_put_upload_is_processed() {
    let stack = setup("presigned").await;
    let worker = stack.start_worker().await;
    let presign = |key: &str| {
        let s3 = stack.s3.clone();
        let bucket = stack.ingest.clone();
        let key = key.to_string();
        async move {
            s3.put_object()
                .bucket(bucket)
                .key(key)
                .content_type("image/jpeg")
                .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
                .await
                .unwrap()
                .uri()
                .to_string()
        }
    };
    let body = fixture("Portrait_6.jpg");
    // A tampered signature is refused: LocalStack really checks pre-signed URLs here.
    let url = presign("uploads/tampered.jpg").await;
    let tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0");
    match ureq::put(&tampered)
        .set("Content-Type", "image/jpeg")
        .send_bytes(&body)
    {
        Err(ureq::Error::Status(code, _)) => assert_eq!(code, 403),
        other => panic!("tampered pre-signed URL was accepted: {other:?}"),
    }
    let url = presign("uploads/presigned.jpg").await;
    let response = ureq::put(&url)
        .set("Content-Type", "image/jpeg")
        .send_bytes(&body)
        .expect("pre-signed PUT");
    assert_eq!(response.status(), 200);
    let metadata = stack.wait_for_metadata("uploads/presigned.jpg").await;
    worker.stop().await;
    assert_eq!(metadata.status, Status::Done);
    assert_eq!(
        (metadata.source.width, metadata.source.height),
        (Some(450), Some(600))
    );
    assert!(
        stack
            .get(
                &stack.derivatives,
                &stack.metadata_key("uploads/tampered.jpg")
            )
            .await
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_is_processed() {
    let stack = setup("multipart").await;
    let worker = stack.start_worker().await;
    // 12 MP JPEG padded after its end-of-image marker to 6 MiB, so it takes two parts (min part: 5 MiB).
    let mut body = fixture("large_olympus-e-p3_12mp.jpg");
    body.resize(6 << 20, 0);
    let key = "uploads/multipart.jpg";
    let upload = stack
        .s3
        .create_multipart_upload()
        .bucket(&stack.ingest)
        .key(key)
        .content_type("image/jpeg")
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap();
    let mut parts = Vec::new();
    for (number, chunk) in [(1, &body[..5 << 20]), (2, &body[5 << 20..])] {
        let part = stack
            .s3
            .upload_part()
            .bucket(&stack.ingest)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(chunk.to_vec().into())
            .send()
            .await
            .unwrap();
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .e_tag(part.e_tag().unwrap())
                .build(),
        );
    }
    stack
        .s3
        .complete_multipart_upload()
        .bucket(&stack.ingest)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let metadata = stack.wait_for_metadata(key).await;
    worker.stop().await;
    assert_eq!(metadata.status, Status::Done, "{metadata:?}");
    assert!(
        metadata
            .source
            .etag
            .as_deref()
            .is_some_and(|e| e.ends_with("-2")),
        "multipart ETag: {:?}",
        metadata.source.etag
    );
    assert_eq!(metadata.source.bytes, Some(6 << 20));
    assert_eq!(
        (metadata.source.width, metadata.source.height),
        (Some(4032), Some(3024))
    );
    assert_eq!(metadata.derivatives.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_with_spaces_and_non_ascii_letters_is_processed() {
    let stack = setup("unicode-key").await;
    let worker = stack.start_worker().await;
    let key = "uploads/my photo é+ü 漢字 (1)&x=y.jpg";
    stack.put(key, fixture("Landscape_3.jpg")).await;
    let metadata = stack.wait_for_metadata(key).await;
    worker.stop().await;
    assert_eq!(metadata.status, Status::Done);
    assert_eq!(metadata.source.key, key);
    for d in &metadata.derivatives {
        assert!(d.key.starts_with(&format!("derived/{key}/")), "{}", d.key);
        assert!(
            stack.get(&stack.derivatives, &d.key).await.is_some(),
            "{} missing",
            d.key
        );
    }
}
