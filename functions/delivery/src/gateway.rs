//! The local edge: what the CloudFront distribution does, over the derivatives bucket, for `make demo`
//! and tests. `GET /<output key>/<group>` is negotiated by `Accept` with the CloudFront Function's own
//! rules ([`imgpipe_core::negotiate`], tested against the same case table); a derivative file
//! (`.jpg`, `.webp`, `.avif`, `.png`) is served as it is, and nothing else: no document
//! (metadata.json, summaries, import outcomes), as at the edge. Responses carry what the distribution's response headers policies add
//! (`Vary: Accept` on negotiated responses, `X-Content-Type-Options: nosniff`), `Cache-Control`,
//! `ETag` and `Content-Type` from the object, and conditional requests answer 304.
//!
//! With [`OnRequest`], a ladder rung or a signed parametric variant that is not in the bucket yet is
//! rendered, stored and answered (`x-imgpipe-render-ms` says how long it took); a malformed one is
//! refused with 400, an unsigned or unoffered one with 403, a deleted or failed source's with 404.
//!
//! Refusals: 400 for unsafe paths (dot segments, encoded slashes, control characters), 404 for a
//! path that is not a derivative file, a missing object or a directory-like path (nothing is ever listed), 405 for anything but GET/HEAD.

use std::sync::Arc;

use aws_sdk_s3::error::SdkError;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use imgpipe_core::negotiate::{EdgeGroups, Negotiation, negotiate};
use percent_encoding::percent_decode_str;

use crate::on_request::{Made, OnRequest};

/// What the gateway serves.
pub struct Gateway {
    /// S3 client (path-style on LocalStack).
    pub s3: aws_sdk_s3::Client,
    /// The derivatives bucket.
    pub bucket: String,
    /// Variant groups of the preset set ([`imgpipe_core::PresetSet::edge_groups`]).
    pub groups: EdgeGroups,
    /// Ladder rungs and signed variants rendered on a miss; `None`: only what exists is served.
    pub on_request: Option<Arc<OnRequest>>,
}

/// The router: every path goes to the one handler.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new().fallback(serve).with_state(gateway)
}

async fn serve(
    State(gateway): State<Arc<Gateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed();
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (path, negotiated) = match negotiate(uri.path(), accept, &gateway.groups) {
        Negotiation::Refused => return text(StatusCode::BAD_REQUEST, "path refused"),
        Negotiation::NotServed => return text(StatusCode::NOT_FOUND, "not an image of this CDN"),
        Negotiation::Unchanged => (uri.path().to_string(), false),
        Negotiation::Rewritten { path, .. } => (path, true),
    };
    let Ok(key) = percent_decode_str(&path[1..]).decode_utf8() else {
        return text(StatusCode::BAD_REQUEST, "path is not UTF-8");
    };
    if key.is_empty() || key.ends_with('/') {
        return text(StatusCode::NOT_FOUND, "no such object");
    }
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    let head_only = method == Method::HEAD;
    let resolved = gateway.on_request.as_ref().and_then(|o| o.resolve(&key));
    let mut response = match resolved {
        None => match fetch(&gateway, &key, head_only, if_none_match).await {
            Ok(response) => response,
            Err(response) => return response,
        },
        Some(Err((status, reason))) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            return text(status, &reason);
        }
        Some(Ok(variant)) => match fetch(&gateway, &variant.key, head_only, if_none_match).await {
            Ok(response) => response,
            Err(response) if response.status() != StatusCode::NOT_FOUND => return response,
            Err(_) => {
                let on_request = gateway.on_request.as_ref().expect("resolved by it");
                match on_request
                    .make(&gateway.s3, &gateway.bucket, &variant)
                    .await
                {
                    Made::Rendered {
                        bytes: Some(bytes),
                        content_type,
                        ms,
                    } => Response::builder()
                        .status(StatusCode::OK)
                        .header(header::CONTENT_TYPE, content_type)
                        .header(header::CACHE_CONTROL, &on_request.cache_control)
                        .header("x-imgpipe-render-ms", ms.to_string())
                        .body(if head_only {
                            Body::empty()
                        } else {
                            Body::from(bytes)
                        })
                        .expect("valid response"),
                    Made::Rendered { bytes: None, .. } => {
                        match fetch(&gateway, &variant.key, head_only, if_none_match).await {
                            Ok(response) => response,
                            Err(response) => return response,
                        }
                    }
                    Made::NotFound(why) => return text(StatusCode::NOT_FOUND, &why),
                    Made::Refused(why) => return text(StatusCode::FORBIDDEN, &why),
                    Made::Failed(why) => return text(StatusCode::UNPROCESSABLE_ENTITY, &why),
                    Made::Upstream(why) => return text(StatusCode::BAD_GATEWAY, &why),
                }
            }
        },
    };
    let out = response.headers_mut();
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if negotiated {
        out.insert(header::VARY, HeaderValue::from_static("Accept"));
    }
    response
}

/// GetObject (or HeadObject for HEAD) of `key`, as a response with the object's headers.
async fn fetch(
    gateway: &Gateway,
    key: &str,
    head_only: bool,
    if_none_match: Option<&str>,
) -> Result<Response, Response> {
    let fail = |status: Option<u16>, operation: &str, detail: String| -> Response {
        match status {
            Some(404) | Some(403) => text(StatusCode::NOT_FOUND, "no such object"),
            Some(304) => StatusCode::NOT_MODIFIED.into_response(),
            _ => {
                tracing::warn!(service = "s3", operation, bucket = %gateway.bucket, key, error = %detail, "gateway: S3 request failed");
                text(
                    StatusCode::BAD_GATEWAY,
                    &format!("S3 {operation}: {detail}"),
                )
            }
        }
    };
    if head_only {
        let object = gateway
            .s3
            .head_object()
            .bucket(&gateway.bucket)
            .key(key)
            .set_if_none_match(if_none_match.map(str::to_string))
            .send()
            .await
            .map_err(|e| {
                fail(
                    status_of(&e),
                    "HeadObject",
                    imgpipe_cloud::aws_error::brief(&e).to_string(),
                )
            })?;
        let length = object.content_length().map(|l| l.to_string());
        let builder = object_headers(&[
            (header::CONTENT_TYPE, object.content_type()),
            (header::CACHE_CONTROL, object.cache_control()),
            (header::ETAG, object.e_tag()),
            (header::CONTENT_LENGTH, length.as_deref()),
        ]);
        return Ok(builder.body(Body::empty()).expect("valid response"));
    }
    let object = gateway
        .s3
        .get_object()
        .bucket(&gateway.bucket)
        .key(key)
        .set_if_none_match(if_none_match.map(str::to_string))
        .send()
        .await
        .map_err(|e| {
            fail(
                status_of(&e),
                "GetObject",
                imgpipe_cloud::aws_error::brief(&e).to_string(),
            )
        })?;
    let builder = object_headers(&[
        (header::CONTENT_TYPE, object.content_type()),
        (header::CACHE_CONTROL, object.cache_control()),
        (header::ETAG, object.e_tag()),
    ]);
    let bytes = object
        .body
        .collect()
        .await
        .map_err(|e| fail(None, "GetObject", format!("reading the body: {e}")))?
        .into_bytes();
    Ok(builder.body(Body::from(bytes)).expect("valid response"))
}

/// A 200 response carrying the object's headers that are present.
fn object_headers(headers: &[(header::HeaderName, Option<&str>)]) -> axum::http::response::Builder {
    headers
        .iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .fold(
            Response::builder().status(StatusCode::OK),
            |b, (name, v)| b.header(name, v),
        )
}

fn status_of<E, R: HasStatus>(e: &SdkError<E, R>) -> Option<u16> {
    e.raw_response().map(HasStatus::status)
}

/// The HTTP status of a raw SDK response.
trait HasStatus {
    fn status(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

/// 405 with `Allow: GET, HEAD`: the edge serves nothing else.
pub(crate) fn method_not_allowed() -> Response {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

/// A short plain-text answer that no cache keeps.
pub(crate) fn text(status: StatusCode, message: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        format!("{message}\n"),
    )
        .into_response()
}
