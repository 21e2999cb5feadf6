use std::process::Stdio;
use std::time::{Duration, Instant};

use imgpipe_core::metadata::Status;
use imgpipe_core::{Engine, Options, PresetSet, SourceRef};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::harness::{Stack, fixture, gpu_worker_binary, setup};
use imgpipe_cloud::event::ObjectEvent;

/// A free local port for the worker's health endpoint.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get_health(port: u16) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut socket) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            socket
                .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut response = String::new();
            socket.read_to_string(&mut response).await.unwrap();
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            let body = response.split("\r\n\r\n").nth(1).unwrap();
            return serde_json::from_str(body).unwrap();
        }
        assert!(Instant::now() < deadline, "no health endpoint on {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the real `gpu-worker` (backend auto) on the stack's GPU queue and DLQ, health on `port`.
fn start_gpu_worker(stack: &Stack, port: u16, extra_args: &[&str]) -> tokio::process::Child {
    Command::new(gpu_worker_binary())
        .envs(crate::harness::aws_env())
        .envs(stack.worker_env(&[
            ("IMGPIPE_DLQ_URL", stack.gpu_dlq_url.as_str()),
            ("IMGPIPE_GPU_QUEUE_URL", stack.gpu_queue_url.as_str()),
        ]))
        .args(["--backend", "auto", "--wait-seconds", "1"])
        .args(["--health-addr", &format!("127.0.0.1:{port}")])
        .args(extra_args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_sources_and_manifests_go_to_the_gpu_worker_with_the_same_metadata() {
    let stack = setup("gpu_routing").await;
    // A second bucket with old photos and no notifications: the backfill's source.
    let archive = stack
        .archive_bucket(
            "archive",
            &[("2019/old photo.jpg", "camera_nokia-8-3-5g_gps_9mp.jpg")],
        )
        .await;

    // CPU side: sources of ≥ 10 MP and manifests go to the GPU queue.
    let cpu = stack
        .start_worker_with(&[
            ("IMGPIPE_GPU_QUEUE_URL", stack.gpu_queue_url.as_str()),
            ("IMGPIPE_GPU_MIN_PIXELS", "10000000"),
            ("IMGPIPE_MANIFEST_PREFIX", "manifests/"),
        ])
        .await;
    // GPU side: the real binary, on its own queue and DLQ.
    let port = free_port();
    let mut gpu = start_gpu_worker(&stack, port, &[]);

    let big = fixture("large_olympus-e-p3_12mp.jpg"); // 12.2 MP: GPU
    stack.put("uploads/big.jpg", big.clone()).await;
    stack
        .put(
            "uploads/small.jpg",
            fixture("camera_iphone6_gps-altitude_8mp.jpg"),
        ) // 8 MP: CPU
        .await;
    let manifest = serde_json::json!({
        "bucket": archive,
        "keys": ["2019/old photo.jpg", "2019/gone.jpg", "https://example.com/x.jpg"],
    });
    stack
        .put("manifests/backfill.json", manifest.to_string().into_bytes())
        .await;

    let big_meta = stack.wait_for_metadata("uploads/big.jpg").await;
    let small_meta = stack.wait_for_metadata("uploads/small.jpg").await;
    assert_eq!(big_meta.status, Status::Done);
    assert_eq!(small_meta.status, Status::Done);

    // The backfill item: processed from the archive bucket, outputs under the same layout.
    let old_key = "derived/2019/old photo.jpg/metadata.json";
    let deadline = Instant::now() + Duration::from_secs(60);
    let old_meta: imgpipe_core::Metadata = loop {
        if let Some(bytes) = stack.get(&stack.derivatives, old_key).await {
            break serde_json::from_slice(&bytes).unwrap();
        }
        assert!(Instant::now() < deadline, "backfill item never processed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(old_meta.status, Status::Done);
    assert_eq!(old_meta.source.bucket, archive);

    let summary: serde_json::Value = serde_json::from_slice(
        &stack
            .get(
                &stack.derivatives,
                "derived/manifests/backfill.json/summary.json",
            )
            .await
            .expect("summary.json"),
    )
    .unwrap();
    assert_eq!(summary["queued"], 1, "{summary}");
    assert_eq!(summary["missing"], 1, "{summary}");
    assert_eq!(summary["rejected"], 1, "{summary}");
    // Each queued item names where its outcome is: the document read above.
    let queued: Vec<_> = summary["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "queued")
        .collect();
    assert_eq!(queued[0]["metadata_key"], old_key, "{summary}");
    assert_eq!(
        summary["output_bucket"],
        stack.derivatives.as_str(),
        "{summary}"
    );

    // Routing happened as configured: the CPU worker processed one image and forwarded two jobs.
    stack.wait_until_drained().await;
    let cpu_stats = cpu.stop().await;
    assert_eq!(cpu_stats.forwarded, 2, "{cpu_stats:?}");
    assert_eq!(cpu_stats.skipped, 0, "{cpu_stats:?}");

    // Same document as the CPU path: the derivatives the core makes from the same bytes.
    let reference = imgpipe_core::process(
        &big,
        &SourceRef {
            bucket: stack.ingest.clone(),
            key: "uploads/big.jpg".into(),
            ..Default::default()
        },
        &PresetSet::default_set(),
        &Options::default(),
        &mut Engine::default(),
    )
    .unwrap();
    assert_eq!(big_meta.derivatives, reference.metadata.derivatives);
    assert_eq!(big_meta.source.sha256, reference.metadata.source.sha256);
    assert_eq!(big_meta.placeholder, reference.metadata.placeholder);

    let health = get_health(port).await;
    let expected_backend = if imgpipe_gpu::find_device().is_ok() {
        "gpu"
    } else {
        "cpu"
    };
    assert_eq!(health["backend"], expected_backend, "{health}");
    if expected_backend == "cpu" {
        assert_eq!(health["jpeg_decoder"], "cpu", "{health}");
        assert_eq!(health["jpeg_encoder"], "cpu", "{health}");
    }
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["queue_depth"], 0, "{health}");

    assert_eq!(stack.depth(&stack.gpu_queue_url).await, 0);
    assert_eq!(stack.depth(&stack.gpu_dlq_url).await, 0);
    gpu.start_kill().unwrap();
    let output = gpu.wait_with_output().await.unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    if expected_backend == "cpu" {
        assert_eq!(
            log.matches("falling back to the CPU backend").count(),
            1,
            "one clear fallback line expected:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gpu_worker_gathers_one_batch_and_settles_each_message_on_its_own() {
    let stack = setup("gpu_batch").await;
    let sources = [
        ("a/portrait 1.jpg", "Portrait_1.jpg"),
        ("a/landscape 2.jpg", "Landscape_2.jpg"),
        ("a/portrait 3.jpg", "Portrait_3.jpg"),
        ("a/landscape 4.jpg", "Landscape_4.jpg"),
        ("a/corrupt.jpg", "corrupt_olympus-u1020_entropy.jpg"),
    ];
    let archive = stack.archive_bucket("batch", &sources).await;
    let job = |key: &str| {
        ObjectEvent {
            event_name: "ObjectCreated:Put".into(),
            bucket: archive.clone(),
            key: key.into(),
            size: None,
            etag: None,
            batch: None,
            sequencer: None,
            version_id: None,
            event_time: None,
        }
        .to_body()
    };
    let send = |body: String| {
        let sqs = stack.sqs.clone();
        let url = stack.gpu_queue_url.clone();
        async move {
            sqs.send_message()
                .queue_url(url)
                .message_body(body)
                .send()
                .await
                .unwrap();
        }
    };
    // One job waits on the queue; the other four are sent once the worker has received it, while it
    // gathers its batch (window 8 s, N = 5): one batch of five.
    send(job(sources[0].0)).await;
    let port = free_port();
    let gpu = start_gpu_worker(
        &stack,
        port,
        &[
            "--batch-size",
            "5",
            "--batch-window-ms",
            "8000",
            "--concurrency",
            "5",
        ],
    );
    get_health(port).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stack.visible(&stack.gpu_queue_url).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the worker never received the first job"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (key, _) in &sources[1..] {
        send(job(key)).await;
    }

    for (key, _) in &sources {
        let meta_key = format!("derived/{key}/metadata.json");
        let deadline = Instant::now() + Duration::from_secs(90);
        let meta: imgpipe_core::Metadata = loop {
            if let Some(bytes) = stack.get(&stack.derivatives, &meta_key).await {
                break serde_json::from_slice(&bytes).unwrap();
            }
            assert!(Instant::now() < deadline, "{key} never processed");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let expected = if key.ends_with("corrupt.jpg") {
            Status::Failed
        } else {
            Status::Done
        };
        assert_eq!(meta.status, expected, "{key}: {meta:?}");
    }
    // Each message settled on its own: four deleted, the corrupt one in the GPU DLQ with its reason.
    let deadline = Instant::now() + Duration::from_secs(30);
    while stack.depth(&stack.gpu_dlq_url).await < 1 {
        assert!(Instant::now() < deadline, "corrupt job never dead-lettered");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let dead = stack
        .sqs
        .receive_message()
        .queue_url(&stack.gpu_dlq_url)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(dead.len(), 1);
    let attribute = |name: &str| {
        dead[0]
            .message_attributes()
            .and_then(|a| a.get(name))
            .and_then(|v| v.string_value())
            .map(str::to_string)
    };
    assert_eq!(
        attribute("imgpipe.source_key").as_deref(),
        Some("a/corrupt.jpg")
    );
    assert_eq!(attribute("imgpipe.error_kind").as_deref(), Some("corrupt"));
    let health = loop {
        let health = get_health(port).await;
        if health["worker"]["in_flight"] == 0 {
            break health;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health["worker"]["batches"], 1, "{health}");
    assert_eq!(health["worker"]["largest_batch"], 5, "{health}");
    assert_eq!(stack.depth(&stack.gpu_queue_url).await, 0);
    drop(gpu);
}
