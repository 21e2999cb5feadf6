//! `GET /v1/health`: the depth of every configured queue (visible and in flight), and what the API
//! is configured with. `200 ok`, or `503 degraded` naming the queues that could not be read.

use axum::http::StatusCode;

use crate::routes::AppState;

/// The health document and its status.
pub async fn report(state: &AppState) -> (StatusCode, serde_json::Value) {
    let depths = futures::future::join_all(
        state
            .config
            .queues
            .iter()
            .map(|(_, url)| imgpipe_cloud::queue::depth(&state.sqs, url)),
    )
    .await;
    let mut queues = serde_json::Map::new();
    let mut degraded = false;
    for ((name, _), depth) in state.config.queues.iter().zip(depths) {
        let value = match depth {
            Ok(depth) => serde_json::to_value(depth).expect("depth serialises"),
            Err(failure) => {
                degraded = true;
                serde_json::json!({ "error": failure.message })
            }
        };
        queues.insert((*name).to_string(), value);
    }
    let body = serde_json::json!({
        "status": if degraded { "degraded" } else { "ok" },
        "version": env!("CARGO_PKG_VERSION"),
        "queues": queues,
        "config": state.config.describe(),
    });
    let status = if degraded {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, body)
}
