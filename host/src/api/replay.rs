//! `POST /admin/replay`: re-maps stored dead letters (and, with
//! `catch_all=true`, records on a catch-all verb) with the mappers now
//! serving (see `crate::replay`). Needs the API token. `source` limits it to
//! one source, `limit` (default 1000, at most 100000) bounds one call; call
//! again while `letters` equals the limit.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;

use super::{AppError, AppState, auth};
use crate::replay::{ReplayReport, ReplayScope, replay};

/// Runs a bounded replay and answers with its report.
pub async fn run(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<ReplayReport>, AppError> {
    auth::require_token(&headers, state.api_token.as_ref())?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
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
    let report = replay(&state.pipeline, &scope, |_| {}, || false).await?;
    Ok(Json(report))
}
