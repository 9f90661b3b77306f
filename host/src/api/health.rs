//! `GET /healthz` (the process answers), `GET /readyz` (the store answers,
//! mappers are loaded, no poller or tail is wedged), with a JSON body saying
//! which part is unhealthy and warning of pushes that stopped while the
//! poller of the same source still finds events, and `GET /metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::auth::{MaybeAuthed, Need};
use super::{AppError, AppState};
use crate::access::trail::Act;

/// `GET /healthz`
pub async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /metrics`: Prometheus text format. With `protect_metrics` it needs
/// the `metrics` scope (401 without a credential, 403 without the scope).
pub async fn metrics(State(state): State<AppState>, MaybeAuthed(authed): MaybeAuthed) -> Result<Response, AppError> {
    if state.access.protect_metrics {
        let authed = authed.ok_or_else(|| AppError::Unauthorized("a bearer token is required".into()))?;
        authed.require(&state, Need::Metrics, Act::MetricsRead).await?;
    }
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.pipeline.telemetry().render(
            state.pipeline.runtime().figures(),
            crate::telemetry::StoreFigures {
                foreign_skipped: state.pipeline.store().foreign_skipped(),
            },
        ),
    )
        .into_response())
}

/// `GET /readyz`. Mapper file paths are shown only to a caller with the
/// `metrics` scope; anyone else learns names and versions, not the file
/// system. With `protect_metrics`, anyone else learns only the status.
pub async fn ready(State(state): State<AppState>, MaybeAuthed(authed): MaybeAuthed) -> (StatusCode, Json<Value>) {
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
    let details = authed.as_ref().is_some_and(|a| a.may(Need::Metrics));
    if !details {
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
    let verdict = if ok { "ready" } else { "unavailable" };
    if state.access.protect_metrics && !details {
        return (status, Json(json!({ "status": verdict })));
    }
    // Warnings leave the service ready: it still ingests everything, later.
    let silent = state.pipeline.telemetry().push_silences();
    let mut body = json!({
        "status": verdict,
        "store": store,
        "mappers": mappers,
        "wedgedSources": wedged,
    });
    if !silent.is_empty() {
        body["pushesStopped"] = json!(silent);
    }
    (status, Json(body))
}
