//! `GET /healthz` (the process answers), `GET /readyz` (the store answers,
//! mappers are loaded, no poller or tail is wedged), with a JSON body saying
//! which part is unhealthy, and `GET /metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::AppState;

/// `GET /healthz`
pub async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.pipeline.telemetry().render(state.pipeline.runtime().figures()),
    )
}

/// `GET /readyz`. Mapper file paths are shown only to a caller with the
/// API token; anyone else learns names and versions, not the file system.
pub async fn ready(State(state): State<AppState>, headers: HeaderMap) -> (StatusCode, Json<Value>) {
    let store = state.pipeline.store();
    let answered = state
        .health
        .store_answers(|| async {
            match store.ping().await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "readiness: store unavailable");
                    false
                }
            }
        })
        .await;
    let store = if answered {
        json!({ "ok": true, "kind": store.kind() })
    } else {
        json!({ "ok": false, "kind": store.kind(), "error": "unavailable" })
    };
    let mut mappers = state.pipeline.runtime().status();
    if super::auth::require_token(&headers, state.api_token.as_ref()).is_err() {
        for m in &mut mappers {
            m.file = None;
        }
    }
    let wedged = state.health.wedged();
    let ok = store["ok"] == json!(true) && !mappers.is_empty() && wedged.is_empty();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
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
