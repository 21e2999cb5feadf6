//! The router: one [`axum::Router`] for the local server and for Lambda (through `lambda_http`).
//!
//! - `POST /v1/uploads` → `201` with a pre-signed POST (or PUT), the upload's id, key, status URL,
//!   metadata key and the derivatives that will exist;
//! - `GET /v1/images/{id}` → `pending` / `done` / `failed` (see [`crate::status`]), `404` unknown;
//! - `PUT /v1/images/{id}/focus` → `202` (a new focal point: the covers that follow it are
//!   re-made), `200` when it is already set, `401` anonymous, `409` not done (see [`crate::focus`]);
//! - `GET /v1/health` → queue depths and configuration (see [`crate::health`]).
//!
//! Every answer is JSON, errors included (see [`crate::error`]); unknown paths are `404`, wrong
//! methods `405`, bodies over 16 KiB `413`, bodies not declared JSON `415`.

use std::sync::Arc;
use std::time::SystemTime;

use aws_sdk_s3::presigning::PresigningConfig;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use imgpipe_core::pipeline::public_url;

use crate::auth::Caller;
use crate::config::ApiConfig;
use crate::credentials::CredentialCache;
use crate::error::ApiError;
use crate::post_policy::{self, PostPolicy};
use crate::upload::{self, UploadMethod};

/// Largest request body.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// S3's longest key, in UTF-8 bytes.
const MAX_KEY_BYTES: usize = 1024;

/// Configuration and clients, built once per process (one warm Lambda serves many requests).
pub struct AppState {
    /// Configuration.
    pub config: ApiConfig,
    /// S3 (status lookups, pre-signed PUT).
    pub s3: aws_sdk_s3::Client,
    /// SQS (health).
    pub sqs: aws_sdk_sqs::Client,
    /// Signing credentials for POST policies.
    pub credentials: CredentialCache,
    /// The region uploads are signed for.
    pub region: String,
}

impl AppState {
    /// Loads AWS configuration from the environment (region, credentials, `AWS_ENDPOINT_URL`).
    pub async fn from_config(config: ApiConfig) -> Result<Self, String> {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        Self::from_sdk_config(config, &shared)
    }

    /// Builds the state from a loaded SDK configuration.
    pub fn from_sdk_config(
        config: ApiConfig,
        shared: &aws_config::SdkConfig,
    ) -> Result<Self, String> {
        let region = shared
            .region()
            .map(|r| r.to_string())
            .ok_or("no AWS region: set AWS_REGION")?;
        let provider = shared
            .credentials_provider()
            .ok_or("no AWS credentials provider")?;
        Ok(Self {
            s3: imgpipe_cloud::store::client(shared, config.endpoint_url.is_some()),
            sqs: aws_sdk_sqs::Client::new(shared),
            credentials: CredentialCache::new(provider),
            region,
            config,
        })
    }
}

/// The API's router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/uploads", post(create_upload))
        .route("/v1/images/{id}", get(image_status))
        .route("/v1/images/{id}/focus", put(set_focus))
        .route("/v1/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn create_upload(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let config = &state.config;
    require_json(&headers)?;
    let body = body.map_err(|e| {
        ApiError::field(
            "too_large",
            "body",
            format!("the request body could not be read ({e}); it must be JSON under {MAX_BODY_BYTES} bytes"),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    })?;
    let request = upload::parse_request(&body, config.max_source_bytes)?;
    let id = ulid::Ulid::new().to_string();
    let key = upload::upload_key(&config.upload_prefix, &id, &request.filename);
    // Ladder rungs are named by the width actually made, known once the source is: they are in
    // metadata.json (derivatives and groups), not predicted here.
    let derivatives: Vec<serde_json::Value> = config
        .presets
        .presets()
        .iter()
        .filter(|p| p.widths.is_none())
        .map(|p| {
            let key = config
                .layout
                .derivative_key(&key, &p.name, p.format.extension());
            let mut derivative = serde_json::json!({
                "preset": p.name,
                "url": config.cdn_base_url.as_deref().map(|base| public_url(base, &key)),
                "key": key,
                "content_type": p.format.content_type(),
            });
            // Made on its first request (not at upload): the URL works, the object comes later.
            if p.on_request {
                derivative["on_request"] = serde_json::Value::Bool(true);
            }
            derivative
        })
        .collect();
    let metadata_key = config.layout.metadata_key(&key);
    let longest = derivatives
        .iter()
        .filter_map(|d| d["key"].as_str().map(str::len))
        .chain([metadata_key.len()])
        .max()
        .unwrap_or(0);
    if longest > MAX_KEY_BYTES {
        return Err(ApiError::invalid(
            "filename",
            format!(
                "filename is too long for the output keys ({longest} bytes; S3 allows {MAX_KEY_BYTES}); shorten it"
            ),
        ));
    }
    let now = SystemTime::now();
    let expires_at = now + config.upload_expiry;
    // The focal point travels with the object (the handler reads it when it processes the upload).
    let user_metadata: Vec<(&str, String)> = request
        .focus
        .iter()
        .map(|f| (imgpipe_cloud::store::FOCUS_METADATA, f.to_header()))
        .collect();
    let mut enforced = vec!["content-type", "key", "size", "expiry"];
    if request.focus.is_some() {
        enforced.push("focus");
    }
    let upload = match request.method {
        UploadMethod::Post => {
            let credentials = state
                .credentials
                .get(config.upload_expiry)
                .await
                .map_err(|e| ApiError::upstream("Reading AWS credentials", e))?;
            let policy = PostPolicy {
                bucket: &config.ingest_bucket,
                key: &key,
                content_type: request.content_type,
                max_bytes: config.max_source_bytes,
                tagging: &imgpipe_cloud::source_status::pending_xml(),
                metadata: &user_metadata,
                expires_at,
            };
            let signed = post_policy::sign(&policy, &credentials, &state.region, now);
            let fields: serde_json::Map<String, serde_json::Value> = signed
                .fields
                .into_iter()
                .map(|(k, v)| (k, v.into()))
                .collect();
            serde_json::json!({
                "method": "POST",
                "url": post_policy::form_url(&config.ingest_bucket, &state.region, config.endpoint_url.as_deref()),
                "fields": fields,
                "file_field": "file",
                "content_type": request.content_type,
                "max_bytes": config.max_source_bytes,
                "enforced": enforced,
                "note": "POST a multipart/form-data form with every field above, then the file last as 'file'; S3 refuses another type, key, an empty or too large body, or a late upload.",
            })
        }
        UploadMethod::Put => {
            let presigning = PresigningConfig::builder()
                .start_time(now)
                .expires_in(config.upload_expiry)
                .build()
                .map_err(|e| ApiError::upstream("Pre-signing the PUT", e))?;
            let presigned = state
                .s3
                .put_object()
                .bucket(&config.ingest_bucket)
                .key(&key)
                .content_type(request.content_type)
                // Signed: S3 refuses a body of another length (and another tag set).
                .content_length(request.bytes as i64)
                .tagging(imgpipe_cloud::source_status::pending_query())
                .set_metadata((!user_metadata.is_empty()).then(|| {
                    user_metadata
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.clone()))
                        .collect()
                }))
                .presigned(presigning)
                .await
                .map_err(|e| ApiError::upstream("S3 PutObject pre-signing", e))?;
            let headers: serde_json::Map<String, serde_json::Value> = presigned
                .headers()
                .map(|(k, v)| (k.to_string(), v.into()))
                .collect();
            serde_json::json!({
                "method": "PUT",
                "url": presigned.uri(),
                "headers": headers,
                "content_type": request.content_type,
                "max_bytes": config.max_source_bytes,
                "bytes": request.bytes,
                "enforced": enforced,
                "note": "PUT exactly `bytes` bytes (the size declared in the request) to url with exactly these headers; S3 refuses another length, type or key, or a late upload.",
            })
        }
    };
    let status_url = format!("{}/v1/images/{id}", base_url(config, &headers));
    let body = serde_json::json!({
        "id": id,
        "bucket": config.ingest_bucket,
        "key": key,
        "expires_at": humantime::format_rfc3339_seconds(expires_at).to_string(),
        "upload": upload,
        "status_url": status_url,
        "metadata": {
            "bucket": config.output_bucket,
            "key": metadata_key,
        },
        "derivatives": derivatives,
        "focus": request.focus,
    });
    tracing::info!(id, key, method = ?request.method, bytes = request.bytes, "upload issued");
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(&status_url) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn image_status(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = upload_id(id)?;
    crate::status::lookup(&state, &id, &caller).await.map(Json)
}

async fn set_focus(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    crate::focus::authorise(&caller, state.config.anonymous_focus)?;
    let id = upload_id(id)?;
    require_json(&headers)?;
    let body = body.map_err(|e| {
        ApiError::field(
            "too_large",
            "body",
            format!(
                "the request body could not be read ({e}); send {{\"x\": <0-1>, \"y\": <0-1>}}"
            ),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    })?;
    let focus = crate::focus::parse_body(&body)?;
    let status_url = format!("{}/v1/images/{id}", base_url(&state.config, &headers));
    let (status, body) = crate::focus::set(&state, &id, focus, status_url).await?;
    Ok((status, Json(body)).into_response())
}

/// The upload id of the path, as a canonical ULID.
fn upload_id(id: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) = id
        .map_err(|e| ApiError::invalid("id", format!("the id in the path is not readable: {e}")))?;
    let ulid = ulid::Ulid::from_string(&id).map_err(|_| {
        ApiError::invalid(
            "id",
            format!(
                "'{id}' is not an upload id (26 letters and digits, as POST /v1/uploads returns)"
            ),
        )
    })?;
    Ok(ulid.to_string())
}

async fn health(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> (StatusCode, Json<serde_json::Value>) {
    let (status, body) = crate::health::report(&state, &caller).await;
    (status, Json(body))
}

async fn not_found() -> ApiError {
    ApiError::not_found(
        "path",
        "no such endpoint; the API has POST /v1/uploads, GET /v1/images/{id}, PUT /v1/images/{id}/focus and GET /v1/health",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::field(
        "method_not_allowed",
        "method",
        "this path does not take that method: POST /v1/uploads, GET /v1/images/{id}, PUT /v1/images/{id}/focus, GET /v1/health",
    )
    .with_status(StatusCode::METHOD_NOT_ALLOWED)
}

/// A body declared anything but JSON is refused (415), so a form post or a typo in the header is
/// named instead of failing as unreadable JSON.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = declared.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(ApiError::field(
        "unsupported_media_type",
        "Content-Type",
        format!("send the body as JSON with Content-Type: application/json (got '{declared}')"),
    )
    .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE))
}

/// The API's public base URL: configured, or from the request (`X-Forwarded-Proto` + `Host`).
fn base_url(config: &ApiConfig, headers: &HeaderMap) -> String {
    if let Some(url) = &config.public_url {
        return url.clone();
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match header("host") {
        Some(host) if !host.is_empty() && !host.contains(['/', ' ', '@']) => {
            let proto = match header("x-forwarded-proto") {
                Some("https") => "https",
                _ => "http",
            };
            format!("{proto}://{host}")
        }
        _ => String::new(),
    }
}
