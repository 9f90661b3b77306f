//! `GET /healthz` (the process answers), `GET /readyz` (the store answers,
//! mappers are loaded, no poller or tail is wedged), with a JSON body saying
//! which part is unhealthy, and `GET /metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

/// `GET /healthz`
pub async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        crate::metrics::render(state.runtime.reload_counts()),
    )
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
    let wedged: Vec<Value> = crate::metrics::wedged()
        .into_iter()
        .map(|(source, secs)| json!({ "source": source, "secondsWithoutSuccess": secs }))
        .collect();
    let ok = store["ok"] == json!(true) && !mappers.is_empty() && wedged.is_empty();
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        Json(json!({
            "status": if ok { "ready" } else { "unavailable" },
            "store": store,
            "mappers": mappers,
            "wedgedSources": wedged,
        })),
    )
}
