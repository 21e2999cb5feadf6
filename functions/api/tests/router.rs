//! The router in process, without AWS: every 4xx case names its field, uploads come back signed,
//! and no request (including a few thousand malformed ones) makes it answer 500. S3 and SQS point
//! at a closed port, so the calls that need them answer 503, never 500.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use imgpipe_api::{ApiConfig, AppState, router};
use tower::ServiceExt;

async fn app(pairs: &[(&str, &str)]) -> axum::Router {
    let mut vars: std::collections::HashMap<&str, &str> = [
        ("IMGPIPE_INGEST_BUCKET", "ingest"),
        ("IMGPIPE_OUTPUT_BUCKET", "out"),
        ("IMGPIPE_MAX_SOURCE_BYTES", "1000000"),
        ("IMGPIPE_QUEUE_URL", "http://127.0.0.1:9/queue/jobs"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
    ]
    .into();
    vars.extend(pairs.iter().copied());
    let config =
        ApiConfig::from_lookup(|k| vars.get(k).map(|v| v.to_string()).filter(|v| !v.is_empty()))
            .unwrap();
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        ))
        .endpoint_url("http://127.0.0.1:9")
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    router(Arc::new(
        AppState::from_sdk_config(config, &shared).unwrap(),
    ))
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> (StatusCode, serde_json::Value, axum::http::HeaderMap) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "api.test");
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let response = app
        .clone()
        .oneshot(request.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{method} {path}: not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, json, headers)
}

async fn post_upload(app: &axum::Router, body: &str) -> (StatusCode, serde_json::Value) {
    let (status, json, _) = call(
        app,
        "POST",
        "/v1/uploads",
        Some("application/json"),
        body.to_string(),
    )
    .await;
    (status, json)
}

#[tokio::test]
async fn a_post_upload_comes_back_signed_with_its_key_status_url_and_derivatives() {
    let app = app(&[("IMGPIPE_CDN_BASE_URL", "https://cdn.example")]).await;
    let (status, body, headers) = call(
        &app,
        "POST",
        "/v1/uploads",
        Some("application/json; charset=utf-8"),
        r#"{"filename": "my photo.jpg", "content_type": "image/jpeg", "bytes": 5000}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap();
    assert!(ulid::Ulid::from_string(id).is_ok(), "{id}");
    let key = format!("uploads/{id}/my photo.jpg");
    assert_eq!(body["key"], key.as_str());
    assert_eq!(
        body["status_url"],
        format!("http://api.test/v1/images/{id}")
    );
    assert_eq!(
        headers["location"],
        format!("http://api.test/v1/images/{id}").as_str()
    );
    assert_eq!(body["upload"]["method"], "POST");
    assert_eq!(body["upload"]["url"], "http://127.0.0.1:9/ingest");
    let fields = body["upload"]["fields"].as_object().unwrap();
    assert_eq!(fields["key"], key.as_str());
    assert_eq!(fields["Content-Type"], "image/jpeg");
    assert_eq!(fields["x-amz-algorithm"], "AWS4-HMAC-SHA256");
    assert!(
        fields["x-amz-credential"]
            .as_str()
            .unwrap()
            .starts_with("AKIDTEST/")
    );
    assert_eq!(fields["x-amz-signature"].as_str().unwrap().len(), 64);
    let policy: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(fields["policy"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let conditions = policy["conditions"].as_array().unwrap();
    for expected in [
        serde_json::json!({"key": key}),
        serde_json::json!({"Content-Type": "image/jpeg"}),
        serde_json::json!({"bucket": "ingest"}),
        serde_json::json!(["content-length-range", 1, 1_000_000]),
    ] {
        assert!(conditions.contains(&expected), "{expected} not in {policy}");
    }
    assert_eq!(
        body["metadata"]["key"],
        format!("derived/{key}/metadata.json")
    );
    let derivatives = body["derivatives"].as_array().unwrap();
    assert_eq!(derivatives.len(), 6);
    // The default set's AVIF is listed, marked as made on its first request.
    let on_request: Vec<&str> = derivatives
        .iter()
        .filter(|d| d["on_request"] == true)
        .map(|d| d["preset"].as_str().unwrap())
        .collect();
    assert_eq!(on_request, ["avif"]);
    assert_eq!(
        derivatives[0]["key"],
        format!("derived/{key}/thumbnail.jpg")
    );
    assert_eq!(
        derivatives[0]["url"],
        format!("https://cdn.example/derived/uploads/{id}/my%20photo.jpg/thumbnail.jpg")
    );
    // Two requests never share an id.
    let (_, again) = post_upload(
        &app,
        r#"{"filename": "my photo.jpg", "content_type": "image/jpeg", "bytes": 5000}"#,
    )
    .await;
    assert_ne!(again["id"], body["id"]);
}

#[tokio::test]
async fn a_put_upload_signs_the_content_type_the_exact_size_and_the_pending_tag() {
    let app = app(&[]).await;
    let (status, body) = post_upload(
        &app,
        r#"{"filename": "a.png", "content_type": "image/png", "bytes": 10, "method": "PUT"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let upload = &body["upload"];
    assert_eq!(upload["method"], "PUT");
    let url = upload["url"].as_str().unwrap();
    let signed = url
        .split('&')
        .find_map(|p| p.strip_prefix("X-Amz-SignedHeaders="))
        .unwrap_or_else(|| panic!("no signed headers in {url}"));
    for header in ["content-type", "content-length", "x-amz-tagging"] {
        assert!(signed.contains(header), "{header} is not signed: {signed}");
    }
    assert_eq!(upload["headers"]["content-type"], "image/png");
    assert_eq!(upload["headers"]["content-length"], "10");
    assert_eq!(upload["headers"]["x-amz-tagging"], "imgpipe-status=pending");
    assert!(
        upload["enforced"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("size")),
        "{upload}"
    );
}

/// method, path, Content-Type, body → status, error code, field.
type Case = (
    &'static str,
    &'static str,
    Option<&'static str>,
    String,
    u16,
    &'static str,
    &'static str,
);

/// A `POST /v1/uploads` with a JSON body that must be refused with `status`, `code`, `field`.
fn json_case(body: &str, status: u16, code: &'static str, field: &'static str) -> Case {
    (
        "POST",
        "/v1/uploads",
        Some("application/json"),
        body.to_string(),
        status,
        code,
        field,
    )
}

/// A request with no body that must be refused.
fn bare_case(
    method: &'static str,
    path: &'static str,
    status: u16,
    code: &'static str,
    field: &'static str,
) -> Case {
    (method, path, None, String::new(), status, code, field)
}

#[tokio::test]
async fn every_bad_request_is_a_4xx_naming_its_field() {
    let app = app(&[]).await;
    let ok = r#"{"filename": "a.jpg", "content_type": "image/jpeg", "bytes": 10}"#;
    let upload =
        |fields: &str| format!(r#"{{"content_type": "image/jpeg", "bytes": 1, {fields}}}"#);
    let cases: Vec<Case> = vec![
        json_case("{", 400, "invalid_json", "body"),
        json_case("", 400, "invalid_json", "body"),
        (
            "POST",
            "/v1/uploads",
            Some("text/plain"),
            ok.into(),
            415,
            "unsupported_media_type",
            "Content-Type",
        ),
        (
            "POST",
            "/v1/uploads",
            None,
            ok.into(),
            415,
            "unsupported_media_type",
            "Content-Type",
        ),
        json_case(
            r#"{"content_type": "image/jpeg", "bytes": 1}"#,
            400,
            "missing_field",
            "filename",
        ),
        json_case(
            r#"{"filename": "a.jpg", "bytes": 1}"#,
            400,
            "missing_field",
            "content_type",
        ),
        json_case(
            r#"{"filename": "a.jpg", "content_type": "image/svg+xml", "bytes": 1}"#,
            400,
            "unsupported_content_type",
            "content_type",
        ),
        json_case(
            r#"{"filename": "a.jpg", "content_type": "image/jpeg", "bytes": 0}"#,
            400,
            "invalid_field",
            "bytes",
        ),
        json_case(
            r#"{"filename": "a.jpg", "content_type": "image/jpeg", "bytes": 1000001}"#,
            400,
            "too_large",
            "bytes",
        ),
        json_case(
            &upload(r#""filename": "../a.jpg""#),
            400,
            "invalid_field",
            "filename",
        ),
        json_case(
            &upload(r#""filename": "a/b.jpg""#),
            400,
            "invalid_field",
            "filename",
        ),
        json_case(
            &upload(r#""filename": "a\\b.jpg""#),
            400,
            "invalid_field",
            "filename",
        ),
        json_case(
            &upload(r#""filename": "a\u0007.jpg""#),
            400,
            "invalid_field",
            "filename",
        ),
        // S3 would replace `${filename}` in the POST form's key field with the sent file's name.
        json_case(
            &upload(r#""filename": "${filename}.jpg""#),
            400,
            "invalid_field",
            "filename",
        ),
        json_case(
            &upload(&format!(r#""filename": "{}.jpg""#, "x".repeat(252))),
            400,
            "invalid_field",
            "filename",
        ),
        json_case(
            &upload(&format!(
                r#""filename": "a.jpg", "pad": "{}""#,
                "x".repeat(20_000)
            )),
            413,
            "too_large",
            "body",
        ),
        json_case(
            &upload(r#""filename": "a.jpg", "extra": 1"#),
            400,
            "unknown_field",
            "extra",
        ),
        bare_case("GET", "/v1/uploads", 405, "method_not_allowed", "method"),
        bare_case("DELETE", "/v1/health", 405, "method_not_allowed", "method"),
        bare_case("GET", "/v2/uploads", 404, "not_found", "path"),
        bare_case("GET", "/", 404, "not_found", "path"),
        bare_case("GET", "/v1/images/not-an-id", 400, "invalid_field", "id"),
        bare_case(
            "GET",
            "/v1/images/01ARZ3NDEKTSV4RRFFQ69G5FA%2F",
            400,
            "invalid_field",
            "id",
        ),
    ];
    for (method, path, content_type, body, status, code, field) in cases {
        let (got, json, _) = call(&app, method, path, content_type, body.clone()).await;
        let shown: String = body.chars().take(80).collect();
        assert_eq!(got.as_u16(), status, "{method} {path} {shown}: {json}");
        assert_eq!(
            json["error"]["code"], code,
            "{method} {path} {shown}: {json}"
        );
        assert_eq!(
            json["error"]["field"], field,
            "{method} {path} {shown}: {json}"
        );
        assert!(!json["error"]["message"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn aws_being_down_is_a_retryable_503_not_a_500() {
    let app = app(&[]).await;
    let (status, json, _) = call(
        &app,
        "GET",
        "/v1/images/01ARZ3NDEKTSV4RRFFQ69G5FAV",
        None,
        "",
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{json}");
    assert_eq!(json["error"]["code"], "upstream_unavailable");
    assert_eq!(json["error"]["retryable"], true);
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.contains("ListObjectsV2"), "{json}");
    let error_id = json["error"]["details"]["error_id"].as_str().unwrap();
    assert!(message.contains(error_id), "{json}");
    // Anonymous callers never read AWS's error text, bucket names or endpoints: those are in the
    // log line with the error id.
    assert_answers_name_nothing_internal(&json);
    let (status, json, _) = call(&app, "GET", "/v1/health", None, "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{json}");
    assert_eq!(json["status"], "degraded");
    assert!(
        json["error_id"].as_str().unwrap().starts_with("err_"),
        "{json}"
    );
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["error_id", "status"], "{json}");
    assert_answers_name_nothing_internal(&json);

    // The operator's opt-in: depths, their errors and the configuration.
    let app = crate::app(&[("IMGPIPE_HEALTH_DETAILS", "full")]).await;
    let (status, json, _) = call(&app, "GET", "/v1/health", None, "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{json}");
    assert!(json["queues"]["jobs"]["error"].is_string(), "{json}");
    assert_eq!(json["config"]["max_source_bytes"], 1_000_000);
}

/// What an answer to an anonymous caller must not contain: this test's bucket names, endpoint and
/// queue, or the connection error AWS's SDK reported.
fn assert_answers_name_nothing_internal(json: &serde_json::Value) {
    let text = json.to_string();
    for internal in [
        "127.0.0.1",
        "ingest\"",
        "\"out\"",
        "queue/jobs",
        "dispatch",
        "refused",
        "connect",
    ] {
        assert!(!text.contains(internal), "{internal:?} in {text}");
    }
}

#[tokio::test]
async fn no_malformed_request_gets_a_500() {
    let app = app(&[]).await;
    // A fixed-seed generator: the same few thousand bodies every run.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let fragments = [
        "{",
        "}",
        "[",
        "]",
        "\"filename\"",
        "\"content_type\"",
        "\"bytes\"",
        "\"method\"",
        ":",
        ",",
        "null",
        "true",
        "-1",
        "0",
        "1e309",
        "18446744073709551616",
        "\"image/jpeg\"",
        "\"a.jpg\"",
        "\"..\"",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "\"PUT\"",
        "\"é漢字📷\"",
        "{}",
        "[]",
        "\"",
        "\\",
        " ",
        "9999999999999",
    ];
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..3000 {
        let body: Vec<u8> = if i % 3 == 0 {
            (0..(next() % 64)).map(|_| next() as u8).collect()
        } else {
            (0..(next() % 12))
                .map(|_| fragments[(next() % fragments.len() as u64) as usize])
                .collect::<String>()
                .into_bytes()
        };
        let (status, json, _) = call(
            &app,
            "POST",
            "/v1/uploads",
            Some("application/json"),
            body.clone(),
        )
        .await;
        assert!(
            status.is_success() || status.is_client_error(),
            "{status} for {:?}: {json}",
            String::from_utf8_lossy(&body)
        );
        *statuses.entry(status.as_u16()).or_insert(0) += 1;
    }
    // The generator reaches both outcomes, so the sweep is not trivially all-400.
    assert!(statuses.contains_key(&400), "{statuses:?}");
    for path in [
        "/v1/images/%FF%FE",
        "/v1/images/",
        "/v1/images/a/b",
        "/v1//images",
        "/v1/images/%00",
    ] {
        let (status, json, _) = call(&app, "GET", path, None, "").await;
        assert!(status.is_client_error(), "{path}: {status} {json}");
    }
}
