use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use futures::future::BoxFuture;
use imgpipe_cloud::importer::Network;
use imgpipe_core::metadata::Status;
use serde_json::Value;

use crate::harness::{fixture, setup};

/// The public address the test's names resolve to; [`Names`] routes it to the local server.
const PUBLIC: &str = "93.184.215.14";

/// The test's DNS: names → addresses; the checked public address reaches the local server.
struct Names {
    names: HashMap<&'static str, IpAddr>,
    server: SocketAddr,
}

impl Network for Names {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        _port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            self.names.get(host).map(|ip| vec![*ip]).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("no such name {host}"))
            })
        })
    }

    fn socket_for(&self, checked: SocketAddr) -> SocketAddr {
        assert_eq!(checked.ip(), PUBLIC.parse::<IpAddr>().unwrap());
        self.server
    }
}

/// The image host: a photo, a redirect into a private network, a body over the limit, a server
/// that never finishes.
async fn image_host() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let port = address.port();
    let app = axum::Router::new()
        .route(
            "/photos/red%20flower.jpg",
            axum::routing::get(|| async {
                (
                    [(header::CONTENT_TYPE, "image/jpeg")],
                    fixture("Landscape_3.jpg"),
                )
            }),
        )
        .route(
            "/to-private",
            axum::routing::get(move || async move {
                (
                    StatusCode::FOUND,
                    [(
                        header::LOCATION,
                        format!("http://internal.test:{port}/admin"),
                    )],
                )
                    .into_response()
            }),
        )
        .route(
            "/huge.jpg",
            axum::routing::get(|| async { vec![0xffu8; 3_000_000] }),
        )
        .route(
            "/slow.jpg",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "too late"
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_urls_are_imported_or_refused_with_a_reason() {
    let stack = setup("imports").await;
    let server = image_host().await;
    let port = server.port();
    let public: IpAddr = PUBLIC.parse().unwrap();
    let names = Arc::new(Names {
        names: HashMap::from([
            ("images.test", public),
            ("internal.test", "10.0.0.5".parse().unwrap()),
            ("mapped.test", "::ffff:169.254.169.254".parse().unwrap()),
        ]),
        server,
    });
    let allow = format!("images.test:{port}, internal.test:{port}, mapped.test:{port}");
    // The CPU worker fans the manifest out and processes the imported file's upload event; the
    // GPU queue's worker runs the import jobs.
    let cpu = stack
        .start_worker_with(&[
            ("IMGPIPE_GPU_QUEUE_URL", stack.gpu_queue_url.as_str()),
            ("IMGPIPE_MANIFEST_PREFIX", "manifests/"),
            ("IMGPIPE_IMPORT_ALLOW_HOSTS", allow.as_str()),
            ("IMGPIPE_IMPORT_ALLOW_HTTP", "true"),
        ])
        .await;
    let importer = stack
        .start_worker_customised(
            &stack.gpu_queue_url.clone(),
            &[
                ("IMGPIPE_DLQ_URL", stack.gpu_dlq_url.as_str()),
                ("IMGPIPE_IMPORT_ALLOW_HOSTS", allow.as_str()),
                ("IMGPIPE_IMPORT_ALLOW_HTTP", "true"),
                ("IMGPIPE_IMPORT_TIMEOUT_SECONDS", "2"),
                ("IMGPIPE_MAX_SOURCE_BYTES", "2000000"),
                // A slow host is retried once, then recorded as a timeout.
                ("IMGPIPE_MAX_ATTEMPTS", "2"),
            ],
            move |handler| handler.with_network(names),
        )
        .await;
    let base = format!("http://images.test:{port}");
    let manifest = format!(
        "url\n\
         {base}/photos/red%20flower.jpg?token=SECRET123\n\
         ftp://user:SECRET789@images.test:{port}/photos/a.jpg?sig=SECRET456\n\
         http://elsewhere.test:{port}/a.jpg\n\
         http://internal.test:{port}/a.jpg\n\
         http://mapped.test:{port}/a.jpg\n\
         {base}/to-private\n\
         {base}/huge.jpg\n\
         {base}/slow.jpg\n"
    );
    stack.put("manifests/urls.csv", manifest.into_bytes()).await;

    let summary_key = "derived/manifests/urls.csv/summary.json";
    let deadline = Instant::now() + Duration::from_secs(60);
    let summary: Value = loop {
        if let Some(bytes) = stack.get(&stack.derivatives, summary_key).await {
            break serde_json::from_slice(&bytes).unwrap();
        }
        assert!(Instant::now() < deadline, "no summary.json");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // What the URL alone decides is refused at once, in the summary.
    assert_eq!(summary["importing"], 6, "{summary}");
    assert_eq!(summary["rejected"], 2, "{summary}");
    let items = summary["items"].as_array().unwrap();
    let mut outcomes: Vec<Value> = items
        .iter()
        .filter(|i| i["status"] == "rejected")
        .map(|i| {
            let (class, reason) = i["reason"].as_str().unwrap().split_once(": ").unwrap();
            serde_json::json!({"url": i["entry"], "status": "rejected", "class": class, "reason": reason})
        })
        .collect();
    // Each other URL's outcome, where the summary says it will be.
    for item in items.iter().filter(|i| i["status"] != "rejected") {
        assert_eq!(item["status"], "importing", "{item}");
        let key = item["outcome_key"].as_str().unwrap();
        let outcome: Value = loop {
            if let Some(bytes) = stack.get(&stack.derivatives, key).await {
                break serde_json::from_slice(&bytes).unwrap();
            }
            assert!(Instant::now() < deadline, "no outcome at {key} for {item}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        assert_eq!(outcome["url"], item["entry"]);
        outcomes.push(outcome);
    }
    let class_of = |needle: &str| -> (String, String) {
        let outcome = outcomes
            .iter()
            .find(|o| o["url"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in {outcomes:?}"));
        assert_eq!(outcome["status"], "rejected", "{outcome}");
        (
            outcome["class"].as_str().unwrap_or("").to_string(),
            outcome["reason"].as_str().unwrap_or("").to_string(),
        )
    };
    for (needle, class, says) in [
        ("ftp://", "scheme", "ftp"),
        ("elsewhere.test", "host_not_allowed", "allow-list"),
        ("internal.test", "private_address", "10.0.0.5"),
        ("mapped.test", "private_address", "IPv4-mapped"),
        ("/to-private", "private_address", "internal.test"),
        ("/huge.jpg", "oversize", "2000000"),
        ("/slow.jpg", "timeout", "2 s"),
    ] {
        let (got, reason) = class_of(needle);
        assert_eq!(got, class, "{needle}: {reason}");
        assert!(reason.contains(says), "{needle}: {reason}");
    }
    let slow = outcomes
        .iter()
        .find(|o| o["url"].as_str().unwrap().contains("/slow.jpg"))
        .unwrap();
    assert_eq!(
        slow["attempts"], 2,
        "a timeout is retried before it is recorded: {slow}"
    );

    // The imported photo is in the ingest bucket and processed by the normal event path.
    let imported = outcomes.iter().find(|o| o["status"] == "imported").unwrap();
    let key = imported["key"].as_str().unwrap();
    assert_eq!(key, "imports/manifests/urls.csv/00000-red_flower.jpg");
    let metadata = stack.wait_for_metadata(key).await;
    assert_eq!(metadata.status, Status::Done);
    assert_eq!(metadata.source.bucket, stack.ingest);
    assert_eq!(imported["metadata_key"], stack.metadata_key(key));
    let head = stack.head(&stack.ingest, key).await;
    assert_eq!(
        head.metadata().unwrap()["imgpipe-source-url"],
        format!("{base}/photos/red%20flower.jpg?..."),
        "stored without its query (a signed URL's token)"
    );
    assert_eq!(
        imported["url_sha256"].as_str().unwrap().len(),
        16,
        "{imported}"
    );
    // No token of a listed URL is stored: not in the summary, an outcome or any other document.
    let listed = stack
        .s3
        .list_objects_v2()
        .bucket(&stack.derivatives)
        .prefix("derived/manifests/")
        .send()
        .await
        .unwrap();
    let documents: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    assert!(documents.len() >= 8, "{documents:?}");
    for key in &documents {
        let text = String::from_utf8(stack.get(&stack.derivatives, key).await.unwrap()).unwrap();
        assert!(
            !text.contains("SECRET"),
            "{key} stores a URL's token: {text}"
        );
    }

    // A new version of the manifest: its first URL's outcome is its own, not the old one's.
    let first_outcome = "derived/manifests/urls.csv/imports/00000.json";
    let old: Value =
        serde_json::from_slice(&stack.get(&stack.derivatives, first_outcome).await.unwrap())
            .unwrap();
    stack
        .put(
            "manifests/urls.csv",
            format!("url\n{base}/to-private\n").into_bytes(),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let new: Value = loop {
        let current: Value =
            serde_json::from_slice(&stack.get(&stack.derivatives, first_outcome).await.unwrap())
                .unwrap();
        if current["manifest"]["etag"] != old["manifest"]["etag"] {
            break current;
        }
        assert!(
            Instant::now() < deadline,
            "the new manifest's outcome never replaced {old}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(old["status"], "imported", "{old}");
    assert_eq!(
        (new["status"].as_str(), new["class"].as_str()),
        (Some("rejected"), Some("private_address")),
        "{new}"
    );
    importer.stop().await;
    cpu.stop().await;
}
