//! Private by default (issue 27): an anonymous client reads every path the CDN's local twin (the
//! gateway, which answers the CloudFront Function's case table) and the API answer without auth,
//! over real uploads that carry a position, and finds no location, capture time or bucket name.
//! The stored document keeps them, and a caller API Gateway vouched for reads them.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use imgpipe_core::PresetSet;
use imgpipe_delivery::gateway::{Gateway, router};
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
use lambda_http::request::RequestContext;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tower::ServiceExt;

use crate::api::{api_state, get_json, post_form, request_upload, start_api, wait_for_status};
use crate::harness::{fixture, setup};

/// What must never reach an anonymous reader: both fixtures' coordinates (iPhone 40.446972,
/// -3.724753; crafted PNG 48.8583, 2.2945), location keys with a value, a capture time.
const PERSONAL: [&str; 8] = [
    "40.446972",
    "-3.724753",
    "48.8583",
    "2.2945",
    "latitude",
    "longitude",
    "\"gps\":{",
    "\"date_taken\":\"",
];

/// A path segment as a client writes it: everything but unreserved characters percent-encoded
/// (the edge refuses encoded dots).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

async fn anonymous_get(app: &axum::Router, path: &str) -> (StatusCode, Vec<u8>) {
    let request = Request::builder()
        .uri(path)
        .header("accept", "image/avif,image/webp,*/*")
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .unwrap();
    (status, body.to_vec())
}

fn assert_private(what: &str, body: &[u8], forbidden: &[&str]) {
    let text = String::from_utf8_lossy(body);
    for secret in PERSONAL.iter().chain(forbidden) {
        assert!(
            !text.contains(secret),
            "{what} shows {secret} to an anonymous reader: {}",
            text.chars().take(600).collect::<String>()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_anonymous_returns_a_location_and_an_authenticated_caller_reads_it() {
    let stack = setup("privacy").await;
    // Defaults everywhere: the worker records the position (IMGPIPE_GPS=include), the API serves
    // the public view to anonymous callers.
    let worker = stack.start_worker().await;
    let api = start_api(&stack, &[]).await;
    let ingest = stack.ingest.clone();
    let forbidden = [ingest.as_str()];

    let photo = fixture("camera_iphone6_gps-altitude_8mp.jpg");
    let (status, issued) = request_upload(
        &api.url,
        serde_json::json!({"filename": "IMG_0001.jpg", "content_type": "image/jpeg", "bytes": photo.len()}),
    );
    assert_eq!(status, 201, "{issued}");
    assert_private(
        "the POST /v1/uploads answer",
        issued.to_string().as_bytes(),
        &[],
    );
    let (code, answer) = post_form(&issued["upload"], &photo, |_| {});
    assert_eq!(code, 204, "{answer}");
    stack
        .put(
            "uploads/crafted.png",
            fixture("crafted_png_exif_orient6_gps.png"),
        )
        .await;

    let status_url = issued["status_url"].as_str().unwrap();
    let done = wait_for_status(status_url).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["view"], "public");
    assert!(
        done["metadata"]["derivatives"].as_array().unwrap().len() >= 3,
        "{done}"
    );
    assert_private(
        "GET /v1/images/{id}",
        done.to_string().as_bytes(),
        &forbidden,
    );
    stack.wait_for_metadata("uploads/crafted.png").await;
    worker.stop().await;

    // There is something to leak: the stored documents have the positions.
    let key = issued["key"].as_str().unwrap();
    let stored = stack
        .get(&stack.derivatives, &stack.metadata_key(key))
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&stored).contains("40.446972"),
        "the private document lost the GPS"
    );

    // Every object of the derivatives bucket, and every group path next to each source, as an
    // anonymous viewer asks the CDN for it.
    // With rendering on request, as the CDN: the `preview` group's AVIF is rendered for this
    // AVIF-accepting client, and it must carry no location either.
    let gateway = router(Arc::new(Gateway {
        s3: stack.s3.clone(),
        bucket: stack.derivatives.clone(),
        groups: PresetSet::default_set().edge_groups(),
        on_request: Some(Arc::new(
            imgpipe_delivery::on_request::OnRequest::with_defaults(
                "derived/".into(),
                PresetSet::default_set(),
                None,
            ),
        )),
    }));
    let listed = stack
        .s3
        .list_objects_v2()
        .bucket(&stack.derivatives)
        .send()
        .await
        .unwrap();
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    assert!(
        keys.iter()
            .filter(|k| k.ends_with("/metadata.json"))
            .count()
            == 2,
        "{keys:?}"
    );
    let (mut served, mut rendered_avif) = (0, 0);
    let mut paths = Vec::new();
    for key in &keys {
        let encoded: Vec<String> = key
            .split('/')
            .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
            .collect();
        paths.push(format!("/{}", encoded.join("/")));
        if key.ends_with("/metadata.json") {
            let dir = &encoded[..encoded.len() - 1].join("/");
            for group in PresetSet::default_set().edge_groups().keys() {
                paths.push(format!("/{dir}/{group}"));
            }
        }
    }
    for path in &paths {
        let (status, body) = anonymous_get(&gateway, path).await;
        assert_private(path, &body, &forbidden);
        if path.ends_with(".json") {
            assert_eq!(status, StatusCode::NOT_FOUND, "{path} is served");
            continue;
        }
        assert_eq!(status, StatusCode::OK, "{path}");
        served += 1;
        rendered_avif += usize::from(body.get(4..12) == Some(b"ftypavif"));
        assert!(
            !body.windows(6).any(|w| w == b"Exif\0\0"),
            "{path}: a derivative carries EXIF"
        );
    }
    assert!(served >= 10, "{served} files served of {paths:?}");
    assert!(
        rendered_avif >= 1,
        "no group path was answered with its rendered AVIF"
    );

    // The API's other answers without auth.
    let (code, health) = get_json(&format!("{}/v1/health", api.url));
    assert_eq!(code, 200, "{health}");
    assert_private("GET /v1/health", health.to_string().as_bytes(), &forbidden);
    for path in [
        "/v1/nothing",
        "/v1/images/not-an-id",
        "/v1/images/01ARZ3NDEKTSV4RRFFQ69G5FAV",
    ] {
        let (_, body) = get_json(&format!("{}{path}", api.url));
        assert_private(path, body.to_string().as_bytes(), &forbidden);
    }

    // A caller API Gateway vouched for (a verified JWT) reads the whole document.
    let context: ApiGatewayV2httpRequestContext = serde_json::from_value(serde_json::json!({
        "accountId": "000000000000", "apiId": "local", "requestId": "r", "stage": "$default",
        "http": { "method": "GET", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1",
                  "userAgent": "test" },
        "authorizer": { "jwt": { "claims": { "sub": "app-backend" }, "scopes": null } },
    }))
    .unwrap();
    let app = imgpipe_api::router(Arc::new(api_state(&stack, &[]).await))
        .layer(axum::Extension(RequestContext::ApiGatewayV2(context)));
    let id = issued["id"].as_str().unwrap();
    let (status, body) = anonymous_get(&app, &format!("/v1/images/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let full: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(full["view"], "full");
    assert_eq!(full["metadata"]["gps"]["latitude"], 40.446972, "{full}");
    assert_eq!(full["source"]["bucket"], ingest.as_str());
}
