//! `GET /audit` (the timeline) and `GET /audit/{id}` (one record).

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::auth::Authed;
use super::{AppError, AppState};
use crate::access::trail::Act;
use crate::store::{ActionFilter, PageCursor, Query, Record, TenantScope};

/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 50;
/// The largest page.
pub const MAX_LIMIT: usize = 500;

const PARAMETERS: [&str; 12] = [
    "source", "action", "actor", "ip", "tenant", "outcome", "since", "until", "q", "cursor", "limit", "",
];

/// The outcomes a record can have.
pub const OUTCOMES: [&str; 3] = ["success", "failure", "unknown"];

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
                "unknown parameter `{name}`; known: source, action, actor, ip, tenant, outcome, since, until, q, cursor, limit"
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
            "outcome" if OUTCOMES.contains(&value.as_str()) => query.outcome = Some(value),
            "outcome" => {
                return Err(AppError::BadRequest(
                    "parameter `outcome` must be success, failure or unknown".into(),
                ));
            }
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

/// One record with its original exactly as stored: the metadata text is
/// spliced in as it is, so integers of any size, key order and number
/// spelling come back byte for byte (a parse and print would sort keys and
/// round integers beyond 64 bits).
fn with_original(record: &Record, lineage: &crate::store::Lineage) -> Response {
    let mut text = Vec::new();
    crate::export::Shown::new(record, Some(lineage)).write(&mut text);
    ([(axum::http::header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// A short mark of a read scope, carried in cursors: empty for all tenants.
fn scope_mark(scope: &TenantScope) -> String {
    use sha2::Digest as _;
    match scope {
        TenantScope::All => String::new(),
        TenantScope::Tenants(slugs) => {
            let mut hash = sha2::Sha256::new();
            for slug in slugs {
                hash.update(slug.as_bytes());
                hash.update([0]);
            }
            hash.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect()
        }
    }
}

/// The query of `raw` within `scope`, refusing a cursor of another scope.
fn scoped_query(raw: Option<&str>, scope: TenantScope) -> Result<Query, AppError> {
    let mut query = parse_query(raw)?;
    if let Some(after) = &query.after
        && after.scope != scope_mark(&scope)
    {
        return Err(AppError::BadRequest(
            "parameter `cursor` belongs to a page walk of another reader; start again without it".into(),
        ));
    }
    query.scope = scope;
    Ok(query)
}

/// `GET /audit`
pub async fn list(
    State(state): State<AppState>,
    authed: Authed,
    RawQuery(raw): RawQuery,
) -> Result<Response, AppError> {
    let scope = authed.read_scope(&state, Act::TimelineRead).await?;
    let mark = scope_mark(&scope);
    let result = async {
        let query = scoped_query(raw.as_deref(), scope)?;
        let page = state.pipeline.store().query(&query).await?;
        let records: Vec<Value> = page.records.iter().map(|r| record_json(r, false)).collect();
        let next = page.next.map(|mut c| {
            c.scope = mark;
            c.encode()
        });
        Ok::<_, AppError>((records.len(), Json(json!({ "records": records, "next": next }))))
    }
    .await;
    let (count, response) = match result {
        Ok((count, body)) => (Some(count), body.into_response()),
        Err(e) => (None, e.into_response()),
    };
    let detail = json!({ "records": count });
    authed
        .record(&state, Act::TimelineRead, None, response.status().as_u16(), detail)
        .await?;
    Ok(response)
}

/// `GET /audit/{id}`: a record outside the caller's scope is not found,
/// exactly like one that does not exist. A record a re-mapping superseded
/// is still found (it is out of the timeline), with `supersededBy`; its
/// correction names it in `supersedes`.
pub async fn one(State(state): State<AppState>, authed: Authed, Path(id): Path<String>) -> Result<Response, AppError> {
    let scope = authed.read_scope(&state, Act::RecordRead).await?;
    let store = state.pipeline.store();
    let found = match store.get(&id, &scope).await {
        Ok(Some(record)) => store.lineage(&id).await.map(|l| Some((record, l))),
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    let response = match found {
        Ok(Some((record, lineage))) => with_original(&record, &lineage).into_response(),
        Ok(None) => AppError::NotFound(format!("no audit record with id `{id}`")).into_response(),
        Err(e) => AppError::from(e).into_response(),
    };
    let target = id.get(..id.len().min(128));
    authed
        .record(&state, Act::RecordRead, target, response.status().as_u16(), Value::Null)
        .await?;
    Ok(response)
}
