//! `POST /admin/replay`: re-maps stored dead letters (and, with
//! `catch_all=true`, records on a catch-all verb) with the mappers now
//! serving (see `crate::replay`). Needs the `admin` scope. `source` limits it
//! to one source, `letter` to one letter, `limit` (default 1000, at most
//! 100000) bounds one call; call again with `after` = the answer's
//! `lastLetter` while `letters` equals the limit.
//!
//! `GET /admin/dead-letters` lists the kept letters (oldest first, `after`
//! and `limit` to page, `source` to filter) with their error, mapper
//! version, how they arrived and their body.

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
        limit: Some(1000),
        ..ReplayScope::default()
    };
    for (name, value) in pairs {
        match name.as_str() {
            "source" => scope.source = Some(value),
            "after" => scope.after = Some(value),
            "letter" => scope.letter = Some(value),
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
                    "unknown parameter `{other}`; known: source, letter, after, limit, catch_all"
                )));
            }
        }
    }
    Ok(replay(&state.pipeline, &scope, |_| {}, || false).await?)
}

/// The most of a letter's body a listing shows.
const SHOWN_BODY_BYTES: usize = 64 * 1024;
/// The most letters one listing looks at (a source filter skips others).
const LISTING_SCAN: usize = 10_000;

/// `GET /admin/dead-letters` (needs the `admin` scope; recorded).
pub async fn list(
    State(state): State<AppState>,
    authed: Authed,
    RawQuery(raw): RawQuery,
) -> Result<Response, AppError> {
    authed.require(&state, Need::Admin, Act::DeadLettersRead).await?;
    let result = listing(&state, raw.as_deref()).await;
    let response = match result {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    };
    authed
        .record(
            &state,
            Act::DeadLettersRead,
            None,
            response.status().as_u16(),
            serde_json::Value::Null,
        )
        .await?;
    Ok(response)
}

async fn listing(state: &AppState, raw: Option<&str>) -> Result<serde_json::Value, AppError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| AppError::BadRequest(format!("the query string is not valid: {e}")))?;
    let (mut source, mut after, mut limit) = (None, None, 50usize);
    for (name, value) in pairs {
        match name.as_str() {
            "source" => source = Some(value),
            "after" => after = Some(value),
            "limit" => {
                limit =
                    value.parse().ok().filter(|n| (1..=500).contains(n)).ok_or_else(|| {
                        AppError::BadRequest(format!("`limit`: `{value}` is not a number from 1 to 500"))
                    })?;
            }
            other => {
                return Err(AppError::BadRequest(format!(
                    "unknown parameter `{other}`; known: source, after, limit"
                )));
            }
        }
    }
    let store = state.pipeline.store();
    let (mut letters, mut scanned, mut more) = (Vec::new(), 0, true);
    while letters.len() < limit && scanned < LISTING_SCAN {
        let page = store.dead_letters_after(after.as_deref(), 100).await?;
        more = page.len() == 100;
        for (id, letter) in page {
            scanned += 1;
            after = Some(id.clone());
            if source.as_deref().is_none_or(|s| s == letter.source) {
                letters.push(letter_json(&id, &letter));
                if letters.len() == limit {
                    break;
                }
            }
        }
        if !more {
            break;
        }
    }
    let next = (more || letters.len() == limit).then_some(after).flatten();
    Ok(serde_json::json!({ "letters": letters, "next": next }))
}

fn letter_json(id: &str, l: &crate::store::DeadLetter) -> serde_json::Value {
    use base64::Engine as _;
    let shown = &l.body[..l.body.len().min(SHOWN_BODY_BYTES)];
    let (body, encoding) = match std::str::from_utf8(shown) {
        Ok(text) => (text.to_string(), "utf-8"),
        // Cut inside a character: show up to the last whole one.
        Err(e) if e.error_len().is_none() => (String::from_utf8_lossy(&shown[..e.valid_up_to()]).into_owned(), "utf-8"),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(shown), "base64"),
    };
    serde_json::json!({
        "id": id,
        "source": l.source,
        "receivedAt": l.received_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "sender": l.sender,
        "transport": l.transport,
        "origin": l.origin,
        "mapper": l.mapper,
        "error": l.error,
        "size": l.body.len(),
        "body": body,
        "bodyEncoding": encoding,
        "bodyTruncated": l.body.len() > SHOWN_BODY_BYTES,
    })
}
