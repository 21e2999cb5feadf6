//! API errors: a status, a stable code, the field at fault, and a sentence saying what to do.
//!
//! Every error answers JSON: `{"error": {"code": "...", "field": "...", "message": "..."}}`
//! (`field` is null when no single field is at fault). Bad input is 4xx and names the field; an AWS
//! dependency that fails is `503 upstream_unavailable` with `retryable: true`. Nothing answers 500.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// One error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code: `invalid_json`, `missing_field`, `invalid_field`, `unknown_field`,
    /// `too_large`, `unsupported_media_type`, `unauthorized`, `not_found`, `not_ready`,
    /// `method_not_allowed`, `upstream_unavailable`.
    pub code: &'static str,
    /// The request field (or header, or path parameter) at fault.
    pub field: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
    /// Extra facts (the limit that was exceeded, the accepted types…).
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    /// 400 for `field` with `code`.
    pub fn field(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            field: Some(field.into()),
            message: message.into(),
            details: None,
        }
    }

    /// 400 `invalid_field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::field("invalid_field", field, message)
    }

    /// The same error with extra facts.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    /// The same error with another status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// 404 for the path parameter `field`.
    pub fn not_found(field: &str, message: impl Into<String>) -> Self {
        Self::field("not_found", field, message).with_status(StatusCode::NOT_FOUND)
    }

    /// 503: an AWS call failed; `what` (constant text of ours) names the operation, `error` says
    /// why. The caller gets `what` and an error id only: AWS's text can name buckets, queue URLs
    /// (the account id) and role ARNs. The log line with the same `error_id` has the whole error.
    pub fn upstream(what: &str, error: impl std::fmt::Display) -> Self {
        let error_id = new_error_id();
        tracing::warn!(error_id, what, %error, "upstream call failed");
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "upstream_unavailable",
            field: None,
            message: format!("{what} failed; retry shortly (error id {error_id} in the API's log)"),
            details: Some(serde_json::json!({ "error_id": error_id })),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({
            "code": self.code,
            "field": self.field,
            "message": self.message,
            "retryable": self.status == StatusCode::SERVICE_UNAVAILABLE,
        });
        if let Some(details) = self.details {
            error["details"] = details;
        }
        (self.status, Json(serde_json::json!({ "error": error }))).into_response()
    }
}

/// A fresh id that ties an answer to its log line (`err_` + a ULID: sortable by time).
pub fn new_error_id() -> String {
    format!("err_{}", ulid::Ulid::new())
}
