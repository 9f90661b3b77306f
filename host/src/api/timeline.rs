//! `GET /audit` (the timeline) and `GET /audit/{id}` (one record).

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{AppError, AppState, auth};
use crate::store::{ActionFilter, PageCursor, Query, Record};

/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 50;
/// The largest page.
pub const MAX_LIMIT: usize = 500;

const PARAMETERS: [&str; 11] = [
    "source", "action", "actor", "ip", "tenant", "since", "until", "q", "cursor", "limit", "",
];

/// The longest value of one parameter.
const MAX_VALUE_BYTES: usize = 1024;

/// Parses the query string into a store query, naming the parameter at fault.
pub fn parse_query(raw: Option<&str>) -> Result<Query, AppError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| AppError::BadRequest(format!("the query string is not valid: {e}")))?;
    let mut query = Query {
        limit: DEFAULT_LIMIT,
        ..Query::default()
    };
    let mut seen = Vec::new();
    for (name, value) in pairs {
        if !PARAMETERS.contains(&name.as_str()) || name.is_empty() {
            return Err(AppError::BadRequest(format!(
                "unknown parameter `{name}`; known: source, action, actor, ip, tenant, since, until, q, cursor, limit"
            )));
        }
        if seen.contains(&name) {
            return Err(AppError::BadRequest(format!("parameter `{name}` is given twice")));
        }
        seen.push(name.clone());
        let value = value.trim().to_string();
        if value.is_empty() {
            return Err(AppError::BadRequest(format!("parameter `{name}` is empty")));
        }
        // No stored text holds a control character a filter could match,
        // and a NUL cannot even reach a store: a 400, not a store error.
        if value.chars().any(char::is_control) {
            return Err(AppError::BadRequest(format!(
                "parameter `{name}` holds a control character"
            )));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(AppError::BadRequest(format!(
                "parameter `{name}` is longer than {MAX_VALUE_BYTES} bytes"
            )));
        }
        match name.as_str() {
            "source" => query.source = Some(value),
            "action" => query.action = Some(action_filter(value)),
            "actor" => query.actor = Some(value),
            "ip" => query.ip = Some(value),
            "tenant" => query.tenant = Some(value),
            "since" => query.since = Some(time(&name, &value)?),
            "until" => query.until = Some(time(&name, &value)?),
            "q" => query.text = Some(value),
            "cursor" => {
                query.after = Some(PageCursor::decode(&value).ok_or_else(|| {
                    AppError::BadRequest("parameter `cursor` is not a cursor this API returned".into())
                })?)
            }
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        AppError::BadRequest(format!(
                            "parameter `limit` must be a whole number from 1 to {MAX_LIMIT}"
                        ))
                    })?
            }
            _ => unreachable!("checked against PARAMETERS"),
        }
    }
    if let (Some(since), Some(until)) = (query.since, query.until)
        && since >= until
    {
        return Err(AppError::BadRequest("`since` must be before `until`".into()));
    }
    Ok(query)
}

/// `stalwart.auth_failed` is exact; a value ending in `*`, `.` or `_` is a
/// prefix (`stalwart.auth_`, `stalwart.`, `authentik.login*`).
fn action_filter(value: String) -> ActionFilter {
    if let Some(prefix) = value.strip_suffix('*') {
        ActionFilter::Prefix(prefix.to_string())
    } else if value.ends_with('.') || value.ends_with('_') {
        ActionFilter::Prefix(value)
    } else {
        ActionFilter::Exact(value)
    }
}

fn time(name: &str, value: &str) -> Result<DateTime<Utc>, AppError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            AppError::BadRequest(format!(
                "parameter `{name}` must be an RFC 3339 time such as 2026-01-31T09:00:00Z"
            ))
        })
}

/// A record as the API shows it; `with_metadata` adds the original event.
pub fn record_json(record: &Record, with_metadata: bool) -> Value {
    let r = &record.record;
    let mut out = json!({
        "id": record.id,
        "source": r.source,
        "action": r.action,
        "at": r.at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        "receivedAt": r.received_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "actor": { "id": r.actor_id, "name": r.actor_name, "email": r.actor_email },
        "ip": r.ip,
        "target": { "type": r.target_type, "id": r.target_id, "name": r.target_name },
        "tenant": r.tenant_slug,
        "outcome": r.outcome,
        "externalId": r.external_id,
        "mapper": r.mapper,
    });
    if with_metadata {
        out["metadata"] = r.metadata.parse();
    }
    out
}

/// `GET /audit`
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, AppError> {
    auth::require_token(&headers, state.api_token.as_ref())?;
    let query = parse_query(raw.as_deref())?;
    let page = state.pipeline.store().query(&query).await?;
    let records: Vec<Value> = page.records.iter().map(|r| record_json(r, false)).collect();
    Ok(Json(json!({
        "records": records,
        "next": page.next.map(|c| c.encode()),
    })))
}

/// `GET /audit/{id}`
pub async fn one(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    auth::require_token(&headers, state.api_token.as_ref())?;
    match state.pipeline.store().get(&id).await? {
        Some(record) => Ok(Json(record_json(&record, true))),
        None => Err(AppError::NotFound(format!("no audit record with id `{id}`"))),
    }
}
