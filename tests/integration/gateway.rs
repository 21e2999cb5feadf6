use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use imgpipe_core::PresetSet;
use imgpipe_delivery::gateway::{Gateway, router};
use tower::ServiceExt;

use crate::harness::{fixture, imgpipe_binary, repo_root, setup};

/// The key has a space and a comma: the gateway must decode the path to find it.
const KEY: &str = "uploads/gate way,1.jpg";
const ENCODED_DIR: &str = "/derived/uploads/gate%20way%2C1.jpg/";

fn responsive() -> PresetSet {
    let path = repo_root().join("functions/core/presets/responsive.toml");
    PresetSet::from_toml(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn get(
    app: &axum::Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> axum::response::Response {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    app.clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

async fn body(response: axum::response::Response) -> Vec<u8> {
    axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_answers_the_cloudfront_case_table_over_real_derivatives() {
    let stack = setup("gateway").await;
    let presets = repo_root().join("functions/core/presets/responsive.toml");
    let worker = stack
        .start_worker_with(&[("IMGPIPE_PRESETS_FILE", presets.to_str().unwrap())])
        .await;
    stack
        .put(KEY, fixture("camera_canon-sx60hs_orient6.jpg"))
        .await;
    let metadata = stack.wait_for_metadata(KEY).await;
    worker.stop().await;
    assert!(
        metadata.groups.contains_key("hero"),
        "{:?}",
        metadata.groups.keys()
    );

    let app = router(Arc::new(Gateway {
        s3: stack.s3.clone(),
        bucket: stack.derivatives.clone(),
        groups: responsive().edge_groups(),
        on_request: None,
    }));
    let table: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("infra/cloudfront/cases.json")).unwrap(),
    )
    .unwrap();
    let mut served = 0;
    for case in table["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let uri = case["uri"].as_str().unwrap();
        let accept = case["accept"].as_str();
        let headers: Vec<(&str, &str)> = accept.map(|a| vec![("accept", a)]).unwrap_or_default();
        if case["expect"]["status"] == 400 {
            let response = get(&app, "GET", uri, &headers).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}");
            continue;
        }
        if case["groups"] == "avif" {
            continue; // a preset set with AVIF presets; node and core::negotiate run those
        }
        // The case's own key replaced by the real upload's.
        let slash = uri.rfind('/').unwrap();
        let asked = &uri[slash + 1..];
        let path = if slash == 0 {
            uri.to_string()
        } else {
            format!("{ENCODED_DIR}{asked}")
        };
        if case["expect"]["status"] == 404 {
            // Next to a real upload, where metadata.json exists: not served all the same.
            let response = get(&app, "GET", &path, &headers).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{name}: {path}");
            continue;
        }
        let expected_uri = case["expect"]["uri"].as_str().unwrap();
        let file = &expected_uri[expected_uri.rfind('/').unwrap() + 1..];
        let key = format!("derived/{KEY}/{file}");
        let exists = slash != 0 && metadata.derivatives.iter().any(|d| d.key == key);
        let response = get(&app, "GET", &path, &headers).await;
        if !exists {
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{name}: {path}");
            continue;
        }
        assert_eq!(response.status(), StatusCode::OK, "{name}: {path}");
        let negotiated = asked != file;
        assert_eq!(
            response.headers().contains_key(header::VARY),
            negotiated,
            "{name}: Vary"
        );
        assert_eq!(
            response.headers()[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff"
        );
        if negotiated {
            assert_eq!(
                response.headers()[header::CONTENT_TYPE].to_str().unwrap(),
                case["expect"]["accept"].as_str().unwrap(),
                "{name}"
            );
        }
        let stored = stack.get(&stack.derivatives, &key).await.unwrap();
        assert_eq!(body(response).await, stored, "{name}: the bytes of {key}");
        served += 1;
    }
    assert!(served >= 10, "only {served} cases reached real objects");

    // Conditional, HEAD, other methods, listings, traversal through the raw path.
    let webp = get(
        &app,
        "GET",
        &format!("{ENCODED_DIR}preview"),
        &[("accept", "image/webp")],
    )
    .await;
    let etag = webp.headers()[header::ETAG].to_str().unwrap().to_string();
    let cached = get(
        &app,
        "GET",
        &format!("{ENCODED_DIR}preview"),
        &[("accept", "image/webp"), ("if-none-match", &etag)],
    )
    .await;
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    let head = get(&app, "HEAD", &format!("{ENCODED_DIR}thumbnail"), &[]).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()[header::CONTENT_TYPE], "image/jpeg");
    assert!(
        head.headers()[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    assert!(body(head).await.is_empty());
    assert_eq!(
        get(&app, "POST", &format!("{ENCODED_DIR}preview"), &[])
            .await
            .status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        get(&app, "GET", "/", &[]).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "GET", "/derived/", &[]).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "GET", "/derived/uploads/../uploads/x/preview", &[])
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    // Ladder rungs are files: served as they are.
    let rung = get(&app, "GET", &format!("{ENCODED_DIR}hero-640w.webp"), &[]).await;
    assert_eq!(rung.status(), StatusCode::OK);
    assert_eq!(rung.headers()[header::CONTENT_TYPE], "image/webp");

    // The `imgpipe serve` binary, asked like curl -H 'Accept: image/webp' …/preview.
    let mut child = tokio::process::Command::new(imgpipe_binary())
        .args([
            "serve",
            "--bucket",
            &stack.derivatives,
            "--listen",
            "127.0.0.1:0",
        ])
        .envs(crate::harness::aws_env())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut line)
        .await
        .unwrap();
    let base = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    let url = format!("http://{base}{ENCODED_DIR}preview");
    // The default set's `preview` has an on-request AVIF: `imgpipe serve` renders it for an
    // AVIF-accepting client; a WebP-only one gets the eager WebP; `*/*` the JPEG.
    let (avif, webp, jpeg) = tokio::task::spawn_blocking(move || {
        let ask = |accept: &str| {
            ureq::get(&url)
                .set("Accept", accept)
                .call()
                .unwrap()
                .content_type()
                .to_string()
        };
        (
            ask("image/avif,image/webp,*/*"),
            ask("image/webp,*/*"),
            ask("*/*"),
        )
    })
    .await
    .unwrap();
    assert_eq!(
        (avif.as_str(), webp.as_str(), jpeg.as_str()),
        ("image/avif", "image/webp", "image/jpeg")
    );
    child.kill().await.unwrap();
}
