use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use imgpipe_core::PresetSet;
use imgpipe_core::preset::{Fit, OutputFormat};
use imgpipe_core::variant::{Params, SigningKeys, signed_segment};
use imgpipe_delivery::gateway::{Gateway, router};
use imgpipe_delivery::on_request::OnRequest;
use tower::ServiceExt;

use crate::harness::{dimensions, fixture, repo_root, setup};

/// A key with a space and a comma: the gateway decodes the path to find the source's folder.
const KEY: &str = "uploads/on request,1.jpg";
const DIR: &str = "derived/uploads/on request,1.jpg/";
const URL_DIR: &str = "/derived/uploads/on%20request%2C1.jpg/";
const BAD: &str = "uploads/text.jpg";

/// The default set made at upload, plus two presets made only on request: a `hero` ladder and a
/// `card`.
fn presets_text() -> String {
    let mut text =
        std::fs::read_to_string(repo_root().join("functions/core/presets/default.toml")).unwrap();
    text.push_str("\n[[preset]]\nname = \"hero\"\nwidths = [320, 640]\nformat = \"webp\"\non_request = true\n");
    text.push_str(
        "\n[[preset]]\nname = \"card\"\nwidth = 300\nformat = \"webp\"\non_request = true\n",
    );
    text
}

fn presets() -> PresetSet {
    PresetSet::from_file_text("on-request.toml", &presets_text()).unwrap()
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Option<String>, Vec<u8>) {
    let (status, headers, body) = get_accepting(app, uri, "*/*").await;
    let rendered = headers
        .get("x-imgpipe-render-ms")
        .map(|v| v.to_str().unwrap().to_string());
    (status, rendered, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rungs_and_signed_variants_are_rendered_once_on_first_request_and_go_with_their_source() {
    let stack = setup("on-request").await;
    let file = std::env::temp_dir().join(format!("imgpipe-on-request-{}.toml", std::process::id()));
    std::fs::write(&file, presets_text()).unwrap();
    let worker = stack
        .start_worker_with(&[("IMGPIPE_PRESETS_FILE", file.to_str().unwrap())])
        .await;
    stack.put(KEY, fixture("Landscape_1.jpg")).await;
    stack.put(BAD, fixture("not_an_image_text.jpg")).await;
    let metadata = stack.wait_for_metadata(KEY).await;
    stack.wait_for_metadata(BAD).await;
    // The on-request presets made nothing at upload, and do not change the set's hash.
    assert!(
        metadata
            .derivatives
            .iter()
            .all(|d| d.preset != "hero" && d.preset != "card")
    );
    assert_eq!(metadata.preset_set_hash, PresetSet::default_set().hash());
    let keys = SigningKeys::parse(&"s".repeat(32)).unwrap();
    let on_request = Arc::new(OnRequest::with_defaults(
        "derived/".into(),
        presets(),
        Some(keys.clone()),
    ));
    let app = router(Arc::new(Gateway {
        s3: stack.s3.clone(),
        bucket: stack.derivatives.clone(),
        groups: presets().edge_groups(),
        on_request: Some(Arc::clone(&on_request)),
    }));

    // A rung nothing made at upload: absent, rendered on its first request, then served from S3.
    let rung = format!("{DIR}hero-320w.webp");
    assert!(stack.get(&stack.derivatives, &rung).await.is_none());
    let (status, rendered, first) = get(&app, &format!("{URL_DIR}hero-320w.webp")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(rendered.is_some(), "the first request renders");
    assert_eq!(dimensions(&first), (320, 240));
    assert_eq!(
        stack.get(&stack.derivatives, &rung).await.as_deref(),
        Some(&first[..])
    );
    let (status, rendered, second) = get(&app, &format!("{URL_DIR}hero-320w.webp")).await;
    assert_eq!((status, rendered, second), (StatusCode::OK, None, first));
    assert_eq!(on_request.renders(), 1);

    // An on-request preset's output, likewise.
    assert!(
        stack
            .get(&stack.derivatives, &format!("{DIR}card.webp"))
            .await
            .is_none()
    );
    let (status, rendered, card) = get(&app, &format!("{URL_DIR}card.webp")).await;
    assert_eq!((status, rendered.is_some()), (StatusCode::OK, true));
    assert_eq!(dimensions(&card), (300, 225));
    let (_, rendered, _) = get(&app, &format!("{URL_DIR}card.webp")).await;
    assert_eq!(rendered, None, "served from S3 the second time");
    assert_eq!(on_request.renders(), 2);

    // 20 concurrent first requests for one signed variant: one render, the same bytes for all.
    let params = Params {
        width: Some(200),
        height: Some(200),
        fit: Fit::Cover,
        quality: Some(60),
        format: OutputFormat::Webp,
    };
    let signed = signed_segment(&keys, DIR, &params);
    let asks = (0..20).map(|_| {
        let (app, uri) = (app.clone(), format!("{URL_DIR}{signed}"));
        async move { get(&app, &uri).await }
    });
    let answers = futures::future::join_all(asks).await;
    assert!(
        answers
            .iter()
            .all(|(s, _, b)| *s == StatusCode::OK && *b == answers[0].2)
    );
    assert_eq!(dimensions(&answers[0].2), (200, 200));
    assert_eq!(
        on_request.renders(),
        3,
        "20 concurrent first requests, one render"
    );
    let stored = format!("{DIR}{}", params.canonical());
    assert!(
        stack.get(&stack.derivatives, &stored).await.is_some(),
        "stored without its signature"
    );

    // Over 1 000 distinct unsigned, tampered, malformed and unoffered variants: refused, never
    // rendered.
    let signature = signed.split('.').nth(1).unwrap().to_string();
    let mut refused = std::collections::BTreeSet::new();
    for width in (8..=800).step_by(8) {
        for segment in [
            format!("_w{width}.webp"),
            format!("_h{width}-cover.jpg"),
            signed.replace("_w200", &format!("_w{width}")),
            format!("_w{width}-h200-cover-q60.{signature}.avif"),
            format!("_w{width}-h200-fill-q60.{signature}.webp"),
            format!("_w{width}-q60.{}.webp", signature.to_uppercase()),
            format!("_w{width}-inside.webp"),
            format!("_h200-w{width}.webp"),
            format!("_w0{width}.webp"),
            format!("_w{width}.{signature}.png"),
            format!("_w{width}-fill.gif"),
            format!("hero-{width}w.webp"),
        ] {
            let offered = ["hero-320w.webp", "hero-600w.webp", "hero-640w.webp"];
            if segment == signed || offered.contains(&segment.as_str()) {
                continue;
            }
            let (status, _, _) = get(&app, &format!("{URL_DIR}{segment}")).await;
            assert!(matches!(status.as_u16(), 400 | 403), "{segment}: {status}");
            refused.insert(segment);
        }
    }
    assert!(refused.len() >= 1_000, "{} refused", refused.len());
    assert_eq!(on_request.renders(), 3);

    // The 600 px source collapses the 640 rung to 600: metadata lists hero-600w.webp, and that
    // width (which the ladder does not list) is rendered; hero-640w is not this source's.
    let hero = &metadata.groups["hero"].variants[0].srcset;
    assert!(hero.ends_with("/hero-600w.webp 600w"), "{hero}");
    let (status, rendered, top) = get(&app, &format!("{URL_DIR}hero-600w.webp")).await;
    assert_eq!((status, rendered.is_some()), (StatusCode::OK, true));
    assert_eq!(dimensions(&top), (600, 450));
    let (status, _, _) = get(&app, &format!("{URL_DIR}hero-640w.webp")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(on_request.renders(), 4);

    // A failed source renders nothing.
    let (status, _, body) = get(&app, "/derived/uploads/text.jpg/hero-320w.webp").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&body).contains("the source failed"));

    // A re-upload takes the variants rendered from the old bytes with it; the next request renders
    // from the new ones.
    let etag = stack.put(KEY, fixture("Portrait_2.jpg")).await;
    let metadata_key = stack.metadata_key(KEY);
    let mut gone = false;
    for _ in 0..120 {
        let current = stack.get(&stack.derivatives, &metadata_key).await;
        let renewed = current.is_some_and(|m| String::from_utf8_lossy(&m).contains(&etag));
        let rendered_left = stack.get(&stack.derivatives, &rung).await.is_some()
            || stack.get(&stack.derivatives, &stored).await.is_some();
        if renewed && !rendered_left {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        gone,
        "the re-upload left variants rendered from the old bytes"
    );
    let (status, rendered, portrait) = get(&app, &format!("{URL_DIR}hero-320w.webp")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(rendered.is_some(), "rendered again, from the new bytes");
    assert_ne!(dimensions(&portrait), (320, 240));
    assert_eq!(on_request.renders(), 5);

    // Deleting the source takes its rendered variants with it; nothing renders afterwards.
    stack.delete(&stack.ingest, KEY).await;
    let mut left = vec![rung.clone()];
    for _ in 0..120 {
        let mut still = Vec::new();
        for key in &left {
            if stack.get(&stack.derivatives, key).await.is_some() {
                still.push(key.clone());
            }
        }
        left = still;
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(left.is_empty(), "left after the deletion: {left:?}");
    let (status, _, body) = get(&app, &format!("{URL_DIR}hero-320w.webp")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        String::from_utf8_lossy(&body).contains("no such image"),
        "{body:?}"
    );
    assert_eq!(on_request.renders(), 5);
    worker.stop().await;
}

/// Chrome's `Accept` for an `<img>`.
const CHROME: &str = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";

async fn get_accepting(
    app: &axum::Router,
    uri: &str,
    accept: &str,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let response = app
        .clone()
        .oneshot(
            Request::builder()
                .uri(uri)
                .header("accept", accept)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let body = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .unwrap()
        .to_vec();
    (status, headers, body)
}

/// The default set's `preview` group has an on-request AVIF member: nothing made at upload, listed
/// in the group, and an AVIF-accepting browser asking for `/<key>/preview` gets it rendered once
/// (20 concurrent first requests), then served from S3; a WebP-only browser gets the eager WebP.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_avif_browser_gets_the_preview_group_rendered_as_avif_once_then_from_s3() {
    const KEY: &str = "uploads/avif group.jpg";
    const DIR: &str = "derived/uploads/avif group.jpg/";
    const GROUP: &str = "/derived/uploads/avif%20group.jpg/preview";
    let stack = setup("on-request-avif").await;
    let worker = stack.start_worker().await;
    stack.put(KEY, fixture("Landscape_1.jpg")).await;
    let metadata = stack.wait_for_metadata(KEY).await;
    assert!(metadata.derivatives.iter().all(|d| d.format != "avif"));
    let preview = &metadata.groups["preview"];
    assert_eq!(preview.variants[0].format, "avif", "{preview:?}");
    assert!(preview.variants[0].src.ends_with("/avif.avif"));
    let avif_key = format!("{DIR}avif.avif");
    assert!(stack.get(&stack.derivatives, &avif_key).await.is_none());

    let presets = PresetSet::default_set();
    let on_request = Arc::new(OnRequest::with_defaults(
        "derived/".into(),
        presets.clone(),
        None,
    ));
    let app = router(Arc::new(Gateway {
        s3: stack.s3.clone(),
        bucket: stack.derivatives.clone(),
        groups: presets.edge_groups(),
        on_request: Some(Arc::clone(&on_request)),
    }));
    let asks = (0..20).map(|_| {
        let app = app.clone();
        async move { get_accepting(&app, GROUP, CHROME).await }
    });
    let answers = futures::future::join_all(asks).await;
    for (status, headers, body) in &answers {
        assert_eq!(*status, StatusCode::OK);
        assert_eq!(headers["content-type"], "image/avif");
        assert_eq!(headers["vary"], "Accept");
        assert_eq!(*body, answers[0].2);
    }
    assert_eq!(&answers[0].2[4..12], b"ftypavif");
    assert_eq!(dimensions(&answers[0].2), (600, 450));
    assert_eq!(
        on_request.renders(),
        1,
        "20 concurrent first requests, one render"
    );
    assert_eq!(
        stack.get(&stack.derivatives, &avif_key).await.as_deref(),
        Some(&answers[0].2[..])
    );
    let (status, headers, body) = get_accepting(&app, GROUP, CHROME).await;
    assert_eq!((status, &body), (StatusCode::OK, &answers[0].2));
    assert!(
        !headers.contains_key("x-imgpipe-render-ms"),
        "served from S3"
    );
    let (status, headers, _) = get_accepting(&app, GROUP, "image/webp,*/*").await;
    assert_eq!(
        (status, &headers["content-type"]),
        (
            StatusCode::OK,
            &"image/webp".parse::<axum::http::HeaderValue>().unwrap()
        )
    );
    assert_eq!(on_request.renders(), 1);
    worker.stop().await;
}
