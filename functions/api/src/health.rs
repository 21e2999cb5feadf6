//! `GET /v1/health`: `200 ok`, or `503 degraded` when a configured queue could not be read. The
//! answer is the status only (and, when degraded, an error id for the log lines that name each
//! queue and its error): the route is open to anyone where no authorizer is set, and bucket names,
//! queue URLs (the account id) and AWS error text are not theirs to read. With
//! `IMGPIPE_HEALTH_DETAILS=full` (an operator's choice, e.g. on LocalStack), or for a caller an
//! authorizer vouched for (see [`crate::auth`]), it also has the depth of
//! every queue (visible and in flight) and what the API is configured with. `imgpipe status`
//! reads the same depths with the operator's own credentials.

use axum::http::StatusCode;

use crate::auth::Caller;
use crate::routes::AppState;

/// The health document and its status.
pub async fn report(state: &AppState, caller: &Caller) -> (StatusCode, serde_json::Value) {
    let depths = futures::future::join_all(
        state
            .config
            .queues
            .iter()
            .map(|(_, url)| imgpipe_cloud::queue::depth(&state.sqs, url)),
    )
    .await;
    // Made only when a queue fails: it ties the answer to that queue's log line.
    let mut error_id = None;
    let mut queues = serde_json::Map::new();
    let mut degraded = false;
    for ((name, _), depth) in state.config.queues.iter().zip(depths) {
        let value = match depth {
            Ok(depth) => serde_json::to_value(depth).expect("depth serialises"),
            Err(failure) => {
                degraded = true;
                let id = error_id.get_or_insert_with(crate::error::new_error_id);
                tracing::warn!(error_id = id.as_str(), queue = name, error = %failure.message, "health: queue unreadable");
                serde_json::json!({ "error": failure.message })
            }
        };
        queues.insert((*name).to_string(), value);
    }
    let status = if degraded { "degraded" } else { "ok" };
    let body = if state.config.health_details || caller.is_authenticated() {
        serde_json::json!({
            "status": status,
            "version": env!("CARGO_PKG_VERSION"),
            "queues": queues,
            "config": state.config.describe(),
        })
    } else if let Some(error_id) = error_id {
        serde_json::json!({ "status": status, "error_id": error_id })
    } else {
        serde_json::json!({ "status": status })
    };
    let status = if degraded {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, body)
}
