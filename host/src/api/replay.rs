//! `POST /admin/replay`: re-maps stored dead letters (and, with
//! `catch_all=true`, records on a catch-all verb) with the mappers now
//! serving (see `crate::replay`). Needs the API token. `source` limits it to
//! one source, `limit` (default 1000, at most 100000) bounds one call; call
//! again while `letters` equals the limit.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};

use super::auth::{Authed, Need};
use super::{AppError, AppState};
use crate::access::trail::Act;
use crate::replay::{ReplayReport, ReplayScope, replay};

/// Runs a bounded replay and answers with its report (needs the `admin`
/// scope; recorded in the trail with what it did).
pub async fn run(State(state): State<AppState>, authed: Authed, RawQuery(raw): RawQuery) -> Result<Response, AppError> {
    authed.require(&state, Need::Admin, Act::Replay).await?;
    let result = bounded(&state, raw.as_deref()).await;
    let detail = match &result {
        Ok(report) => serde_json::to_value(report).unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    };
    let response = match result {
        Ok(report) => Json(report).into_response(),
        Err(e) => e.into_response(),
    };
    authed
        .record(&state, Act::Replay, None, response.status().as_u16(), detail)
        .await?;
    Ok(response)
}

async fn bounded(state: &AppState, raw: Option<&str>) -> Result<ReplayReport, AppError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| AppError::BadRequest(format!("the query string is not valid: {e}")))?;
    let mut scope = ReplayScope {
        source: None,
        limit: Some(1000),
        catch_all: false,
    };
    for (name, value) in pairs {
        match name.as_str() {
            "source" => scope.source = Some(value),
            "catch_all" => {
                scope.catch_all = match value.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(AppError::BadRequest(format!(
                            "`catch_all`: `{value}` is not true or false"
                        )));
                    }
                }
            }
            "limit" => {
                let n: u64 = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=100_000).contains(n))
                    .ok_or_else(|| {
                        AppError::BadRequest(format!("`limit`: `{value}` is not a number from 1 to 100000"))
                    })?;
                scope.limit = Some(n);
            }
            other => {
                return Err(AppError::BadRequest(format!(
                    "unknown parameter `{other}`; known: source, limit, catch_all"
                )));
            }
        }
    }
    Ok(replay(&state.pipeline, &scope, |_| {}, || false).await?)
}
