//! `GET /audit/stream`: the timeline live, as Server-Sent Events.
//!
//! The same filters, scopes and credential as `/audit`. A stream sends
//! each record that commits after it opened (or after the record named by
//! `Last-Event-ID`, so a reconnecting reader misses nothing), oldest commit
//! first, one `record` event per record with its id as the event id.
//!
//! The store is the buffer: a stream wakes when the pipeline commits (and
//! every [`RECHECK`] for commits made elsewhere, such as another replica),
//! reads at most [`BATCH`] newly committed records, sends those the reader
//! may see, and reads more only as the client takes them in. A slow reader
//! costs one batch of memory, never a queue that grows. Comments keep idle
//! connections open through proxies; a stream ends after [`MAX_LIFETIME`]
//! (the client resumes, and its credential is checked again) and when the
//! service shuts down.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::auth::Authed;
use super::timeline::{parse_query, record_json};
use super::{AppError, AppState};
use crate::access::trail::Act;
use crate::store::{Query, Record, Store};

/// Streams open at once at most; more are answered 503.
pub const DEFAULT_LIVE_STREAMS: usize = 64;
/// Records read from the store per wake-up at most.
pub const BATCH: usize = 500;
/// How often a stream looks for commits it was not told about.
pub const RECHECK: Duration = Duration::from_secs(2);
/// A comment is sent after this long without an event.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// The longest one stream stays open.
pub const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// The longest `Last-Event-ID` accepted.
const MAX_EVENT_ID: usize = 64;

/// The live streams of one service: how many may be open, and the signal
/// that ends them all at shutdown (so a draining server is not held open).
#[derive(Clone)]
pub struct Live {
    slots: Arc<Semaphore>,
    closing: Arc<watch::Sender<bool>>,
}

impl Live {
    /// Room for `max` streams at once.
    pub fn new(max: usize) -> Live {
        Live {
            slots: Arc::new(Semaphore::new(max)),
            closing: Arc::new(watch::channel(false).0),
        }
    }

    /// Ends every open stream and refuses new ones.
    pub fn close_all(&self) {
        let _ = self.closing.send(true);
    }
}

impl Default for Live {
    fn default() -> Live {
        Live::new(DEFAULT_LIVE_STREAMS)
    }
}

/// The stream's query: `/audit`'s filters, without paging.
fn stream_query(raw: Option<&str>) -> Result<Query, AppError> {
    let query = parse_query(raw)?;
    if query.after.is_some() || raw.is_some_and(|r| r.split('&').any(|p| p.starts_with("limit="))) {
        return Err(AppError::BadRequest(
            "`cursor` and `limit` page `/audit`; a stream resumes with the `Last-Event-ID` header".into(),
        ));
    }
    Ok(query)
}

fn resume_id(headers: &HeaderMap) -> Result<Option<String>, AppError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let id = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= MAX_EVENT_ID && v.bytes().all(|b| b.is_ascii_alphanumeric()))
        .ok_or_else(|| AppError::BadRequest("`Last-Event-ID` is not an id this stream sent".into()))?;
    Ok(Some(id.to_string()))
}

/// `GET /audit/stream`
pub async fn stream(
    State(state): State<AppState>,
    authed: Authed,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, AppError> {
    let scope = authed.read_scope(&state, Act::StreamRead).await?;
    let live = match open(&state, raw.as_deref(), &headers, scope).await {
        Ok(live) => live,
        Err(e) => {
            let refusal = e.into_response();
            let status = refusal.status().as_u16();
            authed
                .record(&state, Act::StreamRead, None, status, serde_json::Value::Null)
                .await?;
            return Ok(refusal);
        }
    };
    authed
        .record(&state, Act::StreamRead, None, 200, serde_json::Value::Null)
        .await?;
    let mut response = Body::from_stream(futures_util::stream::unfold(live, next)).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

async fn open(
    state: &AppState,
    raw: Option<&str>,
    headers: &HeaderMap,
    scope: crate::store::TenantScope,
) -> Result<Stream, AppError> {
    let mut query = stream_query(raw)?;
    query.scope = scope;
    let resume = resume_id(headers)?;
    if *state.live.closing.borrow() {
        return Err(AppError::Unavailable("the service is shutting down".into()));
    }
    let permit = state
        .live
        .slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| AppError::Unavailable("too many live streams are open; retry later".into()))?;
    let store = state.pipeline.store().clone();
    let position = match resume {
        // Checked now, so a bad id is a 400 rather than a stream that fails.
        Some(id) => {
            store.committed_after(Some(&id), 1).await?;
            Some(id)
        }
        None => store.last_commit().await?,
    };
    Ok(Stream {
        store,
        query,
        position,
        pending: VecDeque::new(),
        commits: state.pipeline.commits(),
        closing: state.live.closing.subscribe(),
        ends: tokio::time::Instant::now() + MAX_LIFETIME,
        quiet_until: tokio::time::Instant::now() + HEARTBEAT,
        greeted: false,
        _permit: permit,
    })
}

/// One open stream.
struct Stream {
    store: Store,
    query: Query,
    /// The last record id looked at; `None` while the store is empty.
    position: Option<String>,
    pending: VecDeque<Record>,
    commits: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
    ends: tokio::time::Instant,
    /// When a heartbeat is due if nothing is sent before.
    quiet_until: tokio::time::Instant,
    greeted: bool,
    _permit: OwnedSemaphorePermit,
}

type Frame = Result<Bytes, std::io::Error>;

/// Why a waiting stream woke up.
enum Wake {
    /// Something may have committed.
    Look,
    /// Nothing was sent for a while.
    Heartbeat,
    /// Shutdown, or the stream's lifetime is over.
    End,
}

/// The next frame of the stream, or its end.
async fn next(mut s: Stream) -> Option<(Frame, Stream)> {
    if !s.greeted {
        s.greeted = true;
        // How long a client waits before it reconnects, then an open comment.
        return Some((Ok(Bytes::from_static(b"retry: 1000\n: open\n\n")), s));
    }
    loop {
        if let Some(record) = s.pending.pop_front() {
            let data = record_json(&record, false).to_string();
            let frame = format!("id: {}\nevent: record\ndata: {data}\n\n", record.id);
            s.quiet_until = tokio::time::Instant::now() + HEARTBEAT;
            return Some((Ok(Bytes::from(frame)), s));
        }
        let woke = tokio::select! {
            _ = s.commits.changed() => Wake::Look,
            () = tokio::time::sleep(RECHECK) => Wake::Look,
            () = tokio::time::sleep_until(s.quiet_until) => Wake::Heartbeat,
            _ = s.closing.wait_for(|c| *c) => Wake::End,
            () = tokio::time::sleep_until(s.ends) => Wake::End,
        };
        match woke {
            Wake::End => return None,
            Wake::Heartbeat => {
                s.quiet_until = tokio::time::Instant::now() + HEARTBEAT;
                return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), s));
            }
            Wake::Look if *s.closing.borrow() => return None,
            Wake::Look => {}
        }
        // With no position (the store was empty at open), everything is new.
        match s.store.committed_after(s.position.as_deref(), BATCH).await {
            Ok(found) => {
                if found.position.is_some() {
                    s.position = found.position;
                }
                let query = &s.query;
                s.pending
                    .extend(found.records.into_iter().filter(|r| query.matches(&r.record)));
            }
            Err(e) => {
                tracing::warn!(error = %e, "live stream: cannot read new records; trying again");
                let note = json!({ "error": "the store did not answer; the stream goes on when it does" });
                return Some((Ok(Bytes::from(format!("event: unavailable\ndata: {note}\n\n"))), s));
            }
        }
    }
}
