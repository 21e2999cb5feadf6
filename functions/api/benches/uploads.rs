//! `cargo bench -p imgpipe-api --bench uploads`: latency of `POST /v1/uploads` in process (the
//! router, request parsing, key planning and the POST policy signature, or the SDK's PUT
//! pre-signing), with static credentials and no network. A benchmark, never a pass/fail test.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use imgpipe_api::{ApiConfig, AppState, router};
use tower::ServiceExt;

fn app(runtime: &tokio::runtime::Runtime) -> axum::Router {
    let config = ApiConfig::from_lookup(|k| match k {
        "IMGPIPE_INGEST_BUCKET" => Some("ingest".into()),
        "IMGPIPE_OUTPUT_BUCKET" => Some("out".into()),
        "IMGPIPE_CDN_BASE_URL" => Some("https://cdn.example".into()),
        _ => None,
    })
    .unwrap();
    let shared = runtime.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_credential_types::Credentials::new(
                "AKIDBENCH",
                "secret",
                Some("token".into()),
                None,
                "bench",
            ))
            .load(),
    );
    router(Arc::new(
        AppState::from_sdk_config(config, &shared).unwrap(),
    ))
}

fn request(method: &str) -> Request<Body> {
    let body = format!(
        r#"{{"filename": "holiday photo 1.jpg", "content_type": "image/jpeg", "bytes": 2500000, "method": "{method}"}}"#
    );
    Request::builder()
        .method("POST")
        .uri("/v1/uploads")
        .header("host", "api.example")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

fn uploads(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = app(&runtime);
    for method in ["POST", "PUT"] {
        c.bench_function(&format!("post_v1_uploads/{method}"), |b| {
            b.iter(|| {
                let response = runtime
                    .block_on(app.clone().oneshot(request(method)))
                    .unwrap();
                assert_eq!(response.status(), 201);
            })
        });
    }
}

criterion_group!(benches, uploads);
criterion_main!(benches);
