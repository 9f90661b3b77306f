//! `GET /healthz` (the process answers) and `GET /readyz` (the store answers
//! and mappers are loaded), with a JSON body saying which part is unhealthy.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

/// `GET /healthz`
pub async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let store = match state.store.ping().await {
        Ok(()) => json!({ "ok": true, "kind": state.store.kind() }),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: store unavailable");
            json!({ "ok": false, "kind": state.store.kind(), "error": "unavailable" })
        }
    };
    let mappers = state.runtime.status();
    let ok = store["ok"] == json!(true) && !mappers.is_empty();
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        Json(json!({
            "status": if ok { "ready" } else { "unavailable" },
            "store": store,
            "mappers": mappers,
        })),
    )
}
