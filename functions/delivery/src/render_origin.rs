//! The render origin: what CloudFront's origin group fails over to when the derivatives bucket
//! answers 403/404 (a Lambda function URL behind OAC, the `render` binary), and what a test can
//! call without Lambda. A path is read as [`OnRequest`] reads it; a variant is rendered once,
//! stored at its canonical key, and answered.
//!
//! `GET /<prefix><key>/<segment>` ⇒ unsafe or not an image file: 400/404 ⇒ not something made on
//! request (an eager output missing: not processed yet, or deleted): 404 ⇒ malformed 400, unsigned or
//! not offered 403 (no render) ⇒ [`OnRequest::make`] ⇒ 200 with the bytes, or, past
//! [`RenderOrigin::inline_max`] (Lambda answers at most 6 MB, base64 inside), `302` to the same path
//! with `Cache-Control: no-store`: the object is in the bucket now, so the viewer's second request is
//! served by the primary origin.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::Response;
use imgpipe_cloud::effects::{Get, Got, ObjectStore};
use imgpipe_core::negotiate::{EdgeGroups, Negotiation, negotiate};
use imgpipe_core::preset::OutputFormat;
use percent_encoding::percent_decode_str;

use crate::gateway::{method_not_allowed, text};
use crate::on_request::{Made, OnRequest};

/// Largest body answered inline by default: Lambda's 6 MB response limit holds the body
/// base64-encoded (4/3 of it) with the headers, so 4 MiB of image is what fits with room to spare.
pub const DEFAULT_INLINE_MAX: usize = 4 << 20;

/// What the render origin needs.
pub struct RenderOrigin {
    /// S3 client.
    pub s3: aws_sdk_s3::Client,
    /// The derivatives bucket.
    pub bucket: String,
    /// What may be rendered, and how.
    pub on_request: Arc<OnRequest>,
    /// Bodies larger than this are stored and answered with a redirect to themselves.
    pub inline_max: usize,
}

/// The router: every path goes to the one handler.
pub fn router(origin: Arc<RenderOrigin>) -> Router {
    Router::new().fallback(answer).with_state(origin)
}

async fn answer(State(origin): State<Arc<RenderOrigin>>, method: Method, uri: Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed();
    }
    let path = uri.path();
    match negotiate(path, None, &EdgeGroups::new()) {
        Negotiation::Refused => return text(StatusCode::BAD_REQUEST, "path refused"),
        Negotiation::Unchanged => {}
        _ => return text(StatusCode::NOT_FOUND, "not an image of this CDN"),
    }
    let Ok(key) = percent_decode_str(&path[1..]).decode_utf8() else {
        return text(StatusCode::BAD_REQUEST, "path is not UTF-8");
    };
    let variant = match origin.on_request.resolve(&key) {
        None => {
            return text(
                StatusCode::NOT_FOUND,
                "no such object: it is made at upload, and this source has none (not processed yet, or deleted)",
            );
        }
        Some(Err((status, reason))) => {
            return text(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                &reason,
            );
        }
        Some(Ok(variant)) => variant,
    };
    let head_only = method == Method::HEAD;
    match origin
        .on_request
        .make(&origin.s3, &origin.bucket, &variant)
        .await
    {
        Made::Rendered {
            bytes: Some(bytes),
            content_type,
            ms,
        } => image(&origin, path, bytes, content_type, Some(ms), head_only),
        Made::Rendered { bytes: None, .. } => {
            // Stored by an earlier or concurrent render: answer it from the bucket.
            let get = Get::whole(&origin.bucket, &variant.key, origin.inline_max as u64);
            match ObjectStore::get(&origin.s3, get).await {
                Ok(Got::Found(object)) => {
                    let content_type = content_type_of(&variant.key);
                    image(&origin, path, object.bytes, content_type, None, head_only)
                }
                Ok(Got::TooLarge(_)) => redirect(path),
                Ok(_) => text(
                    StatusCode::BAD_GATEWAY,
                    "the rendered object vanished; retry",
                ),
                Err(e) => text(StatusCode::BAD_GATEWAY, &e.message),
            }
        }
        Made::NotFound(why) => text(StatusCode::NOT_FOUND, &why),
        Made::Refused(why) => text(StatusCode::FORBIDDEN, &why),
        Made::Failed(why) => text(StatusCode::UNPROCESSABLE_ENTITY, &why),
        Made::Upstream(why) => text(StatusCode::BAD_GATEWAY, &why),
    }
}

/// The image answered inline, or a redirect when it is too large for a Lambda response.
fn image(
    origin: &RenderOrigin,
    path: &str,
    bytes: Vec<u8>,
    content_type: &str,
    render_ms: Option<u64>,
    head_only: bool,
) -> Response {
    if bytes.len() > origin.inline_max {
        return redirect(path);
    }
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, &origin.on_request.cache_control)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if let Some(ms) = render_ms {
        response = response.header("x-imgpipe-render-ms", ms.to_string());
    }
    let body = if head_only {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    response.body(body).expect("valid response")
}

/// `302` to the same path: the object is stored, the viewer's next request reads it from the bucket.
fn redirect(path: &str) -> Response {
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, path)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::empty())
        .expect("valid response")
}

fn content_type_of(key: &str) -> &'static str {
    let ext = key.rsplit('.').next().unwrap_or_default();
    OutputFormat::ALL
        .into_iter()
        .find(|f| f.extension() == ext)
        .map_or("application/octet-stream", OutputFormat::content_type)
}
