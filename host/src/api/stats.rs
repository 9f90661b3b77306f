//! `GET /audit/stats`: the counts behind the overview, computed in the
//! store, and each source's health.
//!
//! Parameters: `source`, `tenant`, `since` (default 24 h before `until`),
//! `until` (default now) and `bucket` (seconds; by default a minute for
//! ranges up to 3 h, an hour up to 8 days, a day beyond). The reader's scope
//! applies as on `/audit`. Health (lags, dead letters, wedged sources) is
//! operational detail: it is shown to callers with the `admin` or
//! `metrics` scope only.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::auth::{Authed, Need};
use super::timeline::parse_query;
use super::{AppError, AppState};
use crate::access::trail::Act;
use crate::store::{MAX_BUCKETS, Overview, Query};

/// The smallest and largest bucket, seconds.
const BUCKETS_SECS: std::ops::RangeInclusive<i64> = 60..=86_400;

fn iso(micros: i64) -> Value {
    DateTime::from_timestamp_micros(micros).map_or(Value::Null, |t| {
        Value::String(t.to_rfc3339_opts(SecondsFormat::Secs, true))
    })
}

/// The default bucket for a range.
fn bucket_for(span: Duration) -> i64 {
    if span <= Duration::hours(3) {
        60
    } else if span <= Duration::days(8) {
        3_600
    } else {
        86_400
    }
}

/// The store query and bucket seconds of a raw query string.
pub fn parse_stats(raw: Option<&str>, now: DateTime<Utc>) -> Result<(Query, i64), AppError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| AppError::BadRequest(format!("the query string is not valid: {e}")))?;
    let mut bucket = None;
    let mut rest = Vec::new();
    for (name, value) in pairs {
        match name.as_str() {
            "bucket" if bucket.is_some() => {
                return Err(AppError::BadRequest("parameter `bucket` is given twice".into()));
            }
            "bucket" => {
                bucket = Some(
                    value
                        .trim()
                        .parse::<i64>()
                        .ok()
                        .filter(|b| BUCKETS_SECS.contains(b))
                        .ok_or_else(|| {
                            AppError::BadRequest("parameter `bucket` must be whole seconds from 60 to 86400".into())
                        })?,
                );
            }
            "source" | "tenant" | "since" | "until" => rest.push((name, value)),
            other => {
                return Err(AppError::BadRequest(format!(
                    "unknown parameter `{other}`; known: source, tenant, since, until, bucket"
                )));
            }
        }
    }
    let rest = serde_urlencoded::to_string(&rest).unwrap_or_default();
    let mut query = parse_query(Some(&rest))?;
    let until = query.until.unwrap_or(now);
    let since = query.since.unwrap_or(until - Duration::hours(24));
    if since >= until {
        return Err(AppError::BadRequest("`since` must be before `until`".into()));
    }
    let bucket = bucket.unwrap_or_else(|| bucket_for(until - since));
    if (until - since).num_seconds() / bucket > MAX_BUCKETS {
        return Err(AppError::BadRequest(format!(
            "the range holds more than {MAX_BUCKETS} buckets of {bucket} s; choose a larger `bucket` or a shorter range"
        )));
    }
    (query.since, query.until) = (Some(since), Some(until));
    Ok((query, bucket))
}

/// `GET /audit/stats`
pub async fn stats(
    State(state): State<AppState>,
    authed: Authed,
    RawQuery(raw): RawQuery,
) -> Result<Response, AppError> {
    let scope = authed.read_scope(&state, Act::StatsRead).await?;
    let operator = authed.may(Need::Admin) || authed.may(Need::Metrics);
    let result = async {
        let (mut query, bucket) = parse_stats(raw.as_deref(), Utc::now())?;
        query.scope = scope;
        let overview = state.pipeline.store().overview(&query, bucket * 1_000_000).await?;
        Ok::<_, AppError>(answer(&state, &query, bucket, overview, operator))
    }
    .await;
    // The answer's own status goes into the trail, as on `/audit`.
    let response = match result {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    };
    authed
        .record(&state, Act::StatsRead, None, response.status().as_u16(), Value::Null)
        .await?;
    Ok(response)
}

/// Per-source figures, built from the counts and (for operators) health.
#[derive(Default)]
struct SourceFigures {
    count: u64,
    failures: u64,
    unrecognised: u64,
}

fn answer(state: &AppState, query: &Query, bucket: i64, overview: Overview, operator: bool) -> Value {
    let mut figures: BTreeMap<String, SourceFigures> = BTreeMap::new();
    let mut total = 0;
    let buckets: Vec<Value> = overview
        .buckets
        .iter()
        .map(|b| {
            let f = figures.entry(b.source.clone()).or_default();
            f.count += b.count;
            f.unrecognised += b.unrecognised;
            if b.outcome == "failure" {
                f.failures += b.count;
            }
            total += b.count;
            json!({
                "start": iso(b.start),
                "source": b.source,
                "outcome": b.outcome,
                "count": b.count,
                "unrecognised": b.unrecognised,
            })
        })
        .collect();
    for source in overview.latest.keys() {
        figures.entry(source.clone()).or_default();
    }
    let (health, lags) = if operator {
        let health: BTreeMap<_, _> = state
            .health
            .report()
            .into_iter()
            .map(|h| (h.source.clone(), h))
            .collect();
        for source in health.keys().chain(overview.dead_letters.keys()) {
            figures.entry(source.clone()).or_default();
        }
        (health, state.pipeline.telemetry().lags())
    } else {
        Default::default()
    };
    let sources: Vec<Value> = figures
        .iter()
        .filter(|(source, _)| query.source.as_ref().is_none_or(|s| s == *source))
        .map(|(source, f)| {
            let mut out = json!({
                "source": source,
                "count": f.count,
                "failures": f.failures,
                "unrecognised": f.unrecognised,
                "drift": if f.count == 0 { 0.0 } else { f.unrecognised as f64 / f.count as f64 },
                "latestAt": overview.latest.get(source).map_or(Value::Null, |at| iso(*at)),
            });
            if operator {
                out["deadLetters"] = json!(overview.dead_letters.get(source).copied().unwrap_or(0));
                if let Some(h) = health.get(source) {
                    out["health"] = json!(h);
                }
                if let Some(lag) = lags.get(source) {
                    out["lag"] = json!(lag);
                }
            }
            out
        })
        .collect();
    let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true));
    json!({
        "since": time(query.since),
        "until": time(query.until),
        "bucketSecs": bucket,
        "total": total,
        "buckets": buckets,
        "sources": sources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-03T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn the_range_defaults_to_the_last_day_in_hours() {
        let (q, bucket) = parse_stats(None, now()).unwrap();
        assert_eq!(q.until, Some(now()));
        assert_eq!(q.since, Some(now() - Duration::hours(24)));
        assert_eq!(bucket, 3600);
        let (_, bucket) = parse_stats(Some("since=2026-12-03T11:00:00Z"), now()).unwrap();
        assert_eq!(bucket, 60, "an hour is counted per minute");
    }

    #[test]
    fn a_range_of_too_many_buckets_or_an_unknown_parameter_is_refused() {
        let message = |raw: &str| match parse_stats(Some(raw), now()) {
            Err(AppError::BadRequest(m)) => m,
            other => panic!("{raw}: {other:?}"),
        };
        assert!(message("since=2025-01-01T00:00:00Z&bucket=60").contains("more than 2000 buckets"));
        assert!(message("bucket=5").contains("60 to 86400"));
        assert!(message("actor=alice").contains("unknown parameter `actor`"));
        assert!(message("bucket=60&bucket=120").contains("twice"));
    }
}
