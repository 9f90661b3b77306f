//! The poll source: fetch a list an HTTP API serves newest first, page by
//! page, on an interval, and resume from a stored cursor. Configured, not
//! coded (`[[pollers]]`); authentik's events list is the built-in instance.
//!
//! Each tick walks from page 1 down to the stored cursor (see [`walk`] for why
//! this is the only order that works on authentik, which has no time filter),
//! at most `max_pages_per_tick` pages; a walk cut short by that cap is
//! finished on the next ticks before anything newer. Every page's events are
//! written oldest first, and the cursor that covers them is saved in the same
//! commit, so a crash at any point resumes without loss; re-read events are
//! deduplicated on their external id (authentik's event `pk`).
//!
//! One task per poller runs the ticks one after another, so ticks never
//! overlap, and only while this instance holds the source's lease (see
//! [`crate::lease`]): of several instances on one store, one polls and the
//! others stand by, taking over within a lease time or two when the holder
//! dies. Every cursor the poller saves is fenced with the lease's token,
//! so a holder that lost the lease without noticing cannot move it. Between ticks it waits the interval (±10 % jitter), or backs off
//! exponentially after 5xx answers, timeouts and store failures, or waits
//! what a 429's `Retry-After` asks. A refused token (401/403) is logged once
//! with what the token needs, and retried every interval.

pub mod fetch;
pub mod tenants;
pub mod walk;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::event::{PageRequest, Transport};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Secret, SecretSource};
use crate::ingest::{Pipeline, Received, ResumeError, SourceContext};
use crate::lease::{Held, HeldElsewhere, Lease};
use crate::runtime::MapError;
use crate::store::{Checkpoint, CheckpointError, Commit, StoreError};
use fetch::{Answer, Failure};
use tenants::{LookupConfig, TenantLookup};
use walk::{Cursor, Key, Plan};

/// One poll source (`[[pollers]]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The source name records and the cursor are stored under.
    pub source: String,
    /// The mapper to use (default: the source name).
    #[serde(default)]
    pub mapper: Option<String>,
    /// Whether the poller runs (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The API's base URL, e.g. `https://auth.example.com`.
    pub base_url: String,
    /// The list's path, e.g. `/api/v3/events/events/`.
    pub path: String,
    /// Bearer token.
    #[serde(default)]
    pub token: SecretSource,
    /// The largest page answer read, bytes (default 32 MiB).
    #[serde(default = "default_max_response")]
    pub max_response_bytes: usize,
    /// Seconds between ticks.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Items per page asked for (authentik serves at most 100).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Pages fetched per tick at most; 0 lifts the cap.
    #[serde(default = "default_cap")]
    pub max_pages_per_tick: u32,
    /// What the very first tick ingests: `everything`, `now` (nothing older
    /// than the first tick) or `<N>d` (the last N days).
    #[serde(default)]
    pub first_run: FirstRun,
    /// Seconds before the cursor that every walk re-reads, for events that
    /// commit late (re-read events are deduplicated).
    #[serde(default = "default_overlap")]
    pub overlap_secs: u64,
    /// Timeout of one request, seconds.
    #[serde(default = "default_timeout")]
    pub request_timeout_secs: u64,
    /// Seconds the poll lease lasts unless renewed (renewed every third):
    /// when several instances share a store, how soon another takes over
    /// from one that died (default 30).
    #[serde(default = "default_lease")]
    pub lease_secs: u64,
    /// Tenant inference from the acting user's groups (none: hints only).
    #[serde(default)]
    pub tenant_lookup: Option<LookupConfig>,
    /// What a refused token needs, in the API's own terms (set by a preset).
    #[serde(skip)]
    pub refused_token_help: Option<String>,
}

fn yes() -> bool {
    true
}
fn default_interval() -> u64 {
    60
}
fn default_page_size() -> u32 {
    100
}
fn default_cap() -> u32 {
    10
}
fn default_overlap() -> u64 {
    300
}
fn default_max_response() -> usize {
    32 << 20
}

fn default_timeout() -> u64 {
    30
}

fn default_lease() -> u64 {
    30
}

/// What the very first tick of a source ingests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FirstRun {
    /// The whole list.
    #[default]
    Everything,
    /// Nothing older than the first tick.
    Now,
    /// The last N days.
    LastDays(u32),
}

impl FirstRun {
    fn floor(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            FirstRun::Everything => None,
            FirstRun::Now => Some(now),
            FirstRun::LastDays(n) => Some(now - chrono::Duration::days(i64::from(n))),
        }
    }
}

impl Serialize for FirstRun {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FirstRun::Everything => s.serialize_str("everything"),
            FirstRun::Now => s.serialize_str("now"),
            FirstRun::LastDays(n) => s.serialize_str(&format!("{n}d")),
        }
    }
}

impl<'de> Deserialize<'de> for FirstRun {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "everything" => Ok(FirstRun::Everything),
            "now" => Ok(FirstRun::Now),
            days => days
                .strip_suffix('d')
                .and_then(|n| n.parse().ok())
                .filter(|n| *n > 0)
                .map(FirstRun::LastDays)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!("`{text}`: expected everything, now or <N>d such as 7d"))
                }),
        }
    }
}

impl Config {
    /// A poller of `base_url` + `path` for `source`, every other setting at
    /// its default (no token, no tenant lookup).
    pub fn new(source: &str, base_url: &str, path: &str) -> Config {
        Config {
            source: source.into(),
            mapper: None,
            enabled: true,
            base_url: base_url.to_string(),
            path: path.into(),
            token: SecretSource::default(),
            max_response_bytes: default_max_response(),
            interval_secs: default_interval(),
            page_size: default_page_size(),
            max_pages_per_tick: default_cap(),
            first_run: FirstRun::Everything,
            overlap_secs: default_overlap(),
            request_timeout_secs: default_timeout(),
            lease_secs: default_lease(),
            tenant_lookup: None,
            refused_token_help: None,
        }
    }

    /// Resolves the token and checks values; errors name the key.
    pub fn resolve(&self) -> Result<Poller, ConfigError> {
        let key = format!("pollers[{}]", self.source);
        crate::config::check_source_name(&key, &self.source)?;
        let base = self.base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ConfigError::new(
                format!("{key}.base_url"),
                format!("`{}` is not an http(s) URL", self.base_url),
            ));
        }
        if !self.path.starts_with('/') {
            return Err(ConfigError::new(format!("{key}.path"), "must start with /"));
        }
        if self.interval_secs == 0 || self.request_timeout_secs == 0 {
            return Err(ConfigError::new(
                key.clone(),
                "interval_secs and request_timeout_secs must be above 0",
            ));
        }
        if !(1..=3600).contains(&self.lease_secs) {
            return Err(ConfigError::new(format!("{key}.lease_secs"), "expected 1 to 3600"));
        }
        if !(1..=1000).contains(&self.page_size) {
            return Err(ConfigError::new(format!("{key}.page_size"), "expected 1 to 1000"));
        }
        let token = self.token.resolve(&format!("{key}.token"))?;
        if !(1024..=1 << 30).contains(&self.max_response_bytes) {
            return Err(ConfigError::new(
                format!("{key}.max_response_bytes"),
                "expected 1024 to 1073741824",
            ));
        }
        let client = fetch::client(Duration::from_secs(self.request_timeout_secs))
            .map_err(|e| ConfigError::new(key.clone(), format!("cannot build an HTTP client: {e}")))?;
        let lookup = self
            .tenant_lookup
            .clone()
            .map(|c| Arc::new(TenantLookup::new(c, base, client.clone(), token.clone())));
        Ok(Poller {
            source: self.source.clone(),
            mapper: self.mapper.clone().unwrap_or_else(|| self.source.clone()),
            url: format!("{base}{}", self.path),
            token,
            token_hint: match (&self.token.env, &self.token.file) {
                (_, Some(f)) => format!("the token in {}", f.display()),
                (Some(e), None) => format!("the token in {e}"),
                (None, None) => "no token is configured".into(),
            },
            interval: Duration::from_secs(self.interval_secs),
            page_size: self.page_size,
            max_pages: self.max_pages_per_tick,
            first_run: self.first_run,
            overlap: chrono::Duration::seconds(self.overlap_secs as i64),
            lookup,
            refused_token_help: self.refused_token_help.clone(),
            client,
            max_response_bytes: self.max_response_bytes,
            last_dead_letter: None,
            plain_http: base.starts_with("http://"),
            lease_time: Duration::from_secs(self.lease_secs),
            fence: None,
        })
    }
}

/// A resolved poller, ready to run.
pub struct Poller {
    /// The source name.
    pub source: String,
    mapper: String,
    url: String,
    token: Option<Secret>,
    token_hint: String,
    /// Time between ticks.
    pub interval: Duration,
    page_size: u32,
    max_pages: u32,
    first_run: FirstRun,
    overlap: chrono::Duration,
    lookup: Option<Arc<TenantLookup>>,
    refused_token_help: Option<String>,
    client: reqwest::Client,
    max_response_bytes: usize,
    /// The SHA-256 of the last page kept as a dead letter: the same page
    /// failing again at the next tick is not kept twice.
    last_dead_letter: Option<[u8; 32]>,
    plain_http: bool,
    lease_time: Duration,
    /// The token of the lease the ticks run under, fencing every cursor
    /// they save (none: ticks called directly, unleased).
    fence: Option<u64>,
}

impl Poller {
    /// A token sent over plain `http://`: readable by anyone on the path.
    pub fn sends_token_in_clear(&self) -> bool {
        self.plain_http && self.token.is_some()
    }
}

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickSummary {
    /// Pages fetched (including re-fetches after the list shifted).
    pub pages: u32,
    /// New records.
    pub inserted: u64,
    /// Re-read records already stored.
    pub duplicates: u64,
    /// The page cap ended the tick before the walk reached the cursor.
    pub capped: bool,
}

/// Why a tick stopped early. The cursor still covers every committed page.
#[derive(Debug, thiserror::Error)]
pub enum TickError {
    /// The API refused or failed.
    #[error("{0}")]
    Fetch(Failure),
    /// The store could not commit.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The mapper could not read a page (kept as a dead letter).
    #[error("{0}")]
    Map(MapError),
    /// The stored cursor is not one this version reads: the poller stops.
    #[error("{0}")]
    Checkpoint(#[from] CheckpointError),
}

impl From<ResumeError> for TickError {
    fn from(e: ResumeError) -> Self {
        match e {
            ResumeError::Store(e) => TickError::Store(e),
            ResumeError::Checkpoint(e) => TickError::Checkpoint(e),
        }
    }
}

/// A list that shifts under this many page requests in a row ends the tick
/// (to be retried) rather than looping.
const MAX_REALIGN: u32 = 50;

impl Poller {
    /// Runs one tick: walk pages until the cursor, the list's end or the cap.
    pub async fn tick(&mut self, ctx: &SourceContext) -> Result<TickSummary, TickError> {
        let pipeline = &ctx.pipeline;
        let mut cursor = self.load_cursor(pipeline).await?;
        let mut walk = cursor.begin(self.overlap);
        // A walk carried over from a capped tick; once it ends, a fresh walk
        // for what arrived meanwhile starts in the same tick.
        let mut resumed = cursor.walk.is_some();
        let mut summary = TickSummary::default();
        let mut served_size = walk.page_size.unwrap_or(self.page_size);
        let mut page = walk.next_page(served_size);
        let mut realigned = 0;
        loop {
            if ctx.shutdown.is_set() {
                break;
            }
            if self.max_pages > 0 && summary.pages >= self.max_pages {
                if walk.past_known {
                    // Only the overlap window is left: the walk is done.
                    cursor = cursor.after_page(&walk, true);
                    self.save_cursor(pipeline, &cursor).await?;
                    break;
                }
                summary.capped = true;
                tracing::info!(source = %self.source, next_page = walk.next_page(served_size), "page cap reached before the cursor: the gap is walked first on the next tick");
                break;
            }
            summary.pages += 1;
            let query = self.page_query(pipeline, page).await?;
            let (body, headers, url) = match fetch::get(
                &self.client,
                &self.url,
                &query,
                self.token.as_ref(),
                self.max_response_bytes,
            )
            .await
            {
                Answer::Page { body, headers, url } => (body, headers, url),
                Answer::NoSuchPage => match walk::past_the_end(&walk, page) {
                    Some(back) if realigned < MAX_REALIGN => {
                        realigned += 1;
                        page = back;
                        continue;
                    }
                    _ => {
                        cursor = cursor.after_page(&walk, true);
                        self.save_cursor(pipeline, &cursor).await?;
                        break;
                    }
                },
                Answer::Failed(f) => return Err(TickError::Fetch(f)),
            };
            let received = Received::now(&self.source, None);
            let delivery = received.delivery(Transport::Poll, headers, Some(url), body);
            let mapped = match pipeline.map(&self.mapper, &received, delivery).await {
                (_, Ok(mapped)) => mapped,
                // No instance free: nothing to keep; the tick is retried.
                (_, Err(e)) if e.is_transient() => return Err(TickError::Map(e)),
                (delivery, Err(e)) => {
                    // The walk cannot move past a page it cannot read: keep
                    // the page for re-mapping (once: the next ticks meet the
                    // same page) and retry after a fixed mapper is dropped in.
                    let digest: [u8; 32] =
                        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&delivery.body)).into();
                    if self.last_dead_letter != Some(digest) {
                        pipeline.keep(Pipeline::dead_letter(&received, delivery, &e)).await?;
                        self.last_dead_letter = Some(digest);
                    }
                    return Err(TickError::Map(e));
                }
            };
            let info = mapped.poll.unwrap_or_default();
            if let Plan::Fetch(wanted) = walk::plan(&walk, page, info.total, served_size) {
                realigned += 1;
                if realigned > MAX_REALIGN {
                    return Err(TickError::Fetch(Failure::Transient(format!(
                        "the list moved under each of {MAX_REALIGN} page requests in a row; trying again later"
                    ))));
                }
                page = wanted;
                continue;
            }
            realigned = 0;
            if !info.last && !mapped.records.is_empty() {
                served_size = mapped.records.len() as u32;
            }
            let keys: Vec<Option<Key>> = mapped.records.iter().zip(&mapped.event_times).map(key_of).collect();
            let (keep, ended) = walk::select(&mut walk, &keys, info.last);
            walk.advance(page, info.total, served_size);
            page = walk.next_page(served_size);
            let records: Vec<_> = mapped
                .records
                .into_iter()
                .zip(keep)
                .filter_map(|(r, keep)| keep.then_some(r))
                .collect();
            cursor = cursor.after_page(&walk, ended);
            let checkpoint = Commit::Checkpoint(Checkpoint::new(&self.source, &cursor).fenced(self.fence));
            let written = pipeline
                .write(&self.source, Some(Transport::Poll), records, checkpoint)
                .await?;
            summary.inserted += written.inserted;
            summary.duplicates += written.duplicates;
            if ended && resumed {
                resumed = false;
                walk = cursor.begin(self.overlap);
                page = 1;
            } else if ended {
                break;
            }
        }
        ctx.health.progressed(&self.source);
        if let Some(high) = &cursor.high {
            let m = pipeline.telemetry().source(&self.source);
            m.poll_cursor_unix.store(high.at.timestamp(), Ordering::Relaxed);
        }
        Ok(summary)
    }

    async fn page_query(&self, pipeline: &Pipeline, page: u32) -> Result<Vec<(String, String)>, TickError> {
        let request = PageRequest {
            page,
            page_size: self.page_size,
        };
        let params = pipeline
            .runtime()
            .page_query(&self.mapper, request)
            .await
            .map_err(TickError::Map)?;
        Ok(params.into_iter().map(|p| (p.name, p.value)).collect())
    }

    async fn load_cursor(&self, pipeline: &Pipeline) -> Result<Cursor, TickError> {
        match pipeline.resume::<Cursor>(&self.source).await? {
            Some(cursor) => Ok(cursor),
            // The very first tick: fix the first-run policy now, so it does
            // not move with every tick until events arrive.
            None => Ok(Cursor {
                floor: self.first_run.floor(Utc::now()),
                ..Cursor::default()
            }),
        }
    }

    async fn save_cursor(&self, pipeline: &Pipeline, cursor: &Cursor) -> Result<(), TickError> {
        Ok(pipeline
            .save_checkpoint(Checkpoint::new(&self.source, cursor).fenced(self.fence))
            .await?)
    }

    /// Whether a token is configured.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Where the token is expected, for messages.
    pub fn token_hint(&self) -> &str {
        &self.token_hint
    }

    /// Where the tenants of this source's actors are looked up, if it
    /// infers them: the pipeline uses it for every record of the source,
    /// however it arrived (see [`crate::ingest::Pipeline::with_actor_tenants`]).
    pub fn tenant_lookup(&self) -> Option<Arc<TenantLookup>> {
        self.lookup.clone()
    }
}

/// Where a record sits in the list: its event time and id (none without
/// both; such a record never moves the walk).
fn key_of((record, event_time): (&crate::store::NewRecord, &bool)) -> Option<Key> {
    event_time.then_some(())?;
    Some(Key {
        at: record.at,
        id: record.external_id.clone()?,
    })
}

/// What the log says when the API refuses the token: after it had been
/// accepted, that it expired or was revoked; either way what it needs.
fn refusal_message(accepted_once: bool, token: &str, help: Option<&str>) -> String {
    let help = help.unwrap_or("check that it is valid and allowed to read the list");
    if accepted_once {
        format!(
            "the API refused {token}, which it had accepted: token expired or revoked; a new one is needed ({help}); retrying every interval"
        )
    } else {
        format!("the API refused {token}: {help}; retrying every interval")
    }
}

/// Runs the poller until shutdown: waits for the source's lease, then
/// ticks while it holds it, and stands by again if it is lost.
pub async fn run(mut poller: Poller, ctx: SourceContext) {
    let lease = Lease::new(
        ctx.pipeline.store().clone(),
        &poller.source,
        &ctx.instance,
        poller.lease_time,
    );
    tracing::info!(source = %poller.source, url = %poller.url, interval_secs = poller.interval.as_secs(), "poller started");
    let metrics = ctx.pipeline.telemetry().source(&poller.source);
    loop {
        let waiting = |elsewhere: &HeldElsewhere| {
            tracing::info!(source = %poller.source, holder = %elsewhere.owner, until = %elsewhere.until, "another instance polls this source; standing by");
            ctx.health.standby(&poller.source, &elsewhere.owner);
        };
        metrics.poll_lease_held.store(0, Ordering::Relaxed);
        let Some(held) = lease.wait(&ctx.shutdown, waiting).await else {
            break;
        };
        metrics.poll_lease_held.store(1, Ordering::Relaxed);
        metrics.poll_lease_taken.fetch_add(1, Ordering::Relaxed);
        tracing::info!(source = %poller.source, instance = %ctx.instance, token = held.token(), "this instance polls the source (lease taken)");
        match ticks(&mut poller, &ctx, held).await {
            Ended::Shutdown(held) => {
                held.release().await;
                break;
            }
            Ended::Lost(why) => {
                tracing::warn!(source = %poller.source, reason = %why, "lost the poll lease; standing by");
            }
            Ended::Stopped => break,
        }
    }
    metrics.poll_lease_held.store(0, Ordering::Relaxed);
    tracing::info!(source = %poller.source, "poller stopped");
}

/// Why ticking under one lease ended.
enum Ended {
    /// Shutdown: the lease is to be released.
    Shutdown(Held),
    /// The lease was lost.
    Lost(String),
    /// The poller cannot go on (a checkpoint it cannot read).
    Stopped,
}

/// Runs ticks while `held` lasts, waiting between them as the last tick's
/// outcome says.
async fn ticks(poller: &mut Poller, ctx: &SourceContext, mut held: Held) -> Ended {
    let mut shutdown = ctx.shutdown.clone();
    let mut failures = 0u32;
    let mut refused_logged = false;
    // Whether the token was ever accepted: a refusal after that means it
    // expired or was revoked, not that it was set up wrong.
    let mut accepted_once = false;
    poller.fence = Some(held.token());
    // Wedged: no successful tick for three intervals plus the longest backoff.
    ctx.health
        .expect_progress(&poller.source, poller.interval * 3 + MAX_BACKOFF);
    loop {
        let started = std::time::Instant::now();
        let wait = match poller.tick(ctx).await {
            Ok(s) => {
                failures = 0;
                refused_logged = false;
                accepted_once = true;
                tracing::info!(
                    source = %poller.source, pages = s.pages, inserted = s.inserted, duplicates = s.duplicates,
                    capped = s.capped, elapsed_ms = started.elapsed().as_millis() as u64, "poll tick"
                );
                fetch::jittered(poller.interval)
            }
            Err(TickError::Store(e @ StoreError::Fenced { .. })) => return Ended::Lost(e.to_string()),
            Err(TickError::Fetch(Failure::Unauthorized(code))) => {
                if !refused_logged {
                    refused_logged = true;
                    tracing::error!(
                        source = %poller.source, status = code,
                        "{}", refusal_message(accepted_once, &poller.token_hint, poller.refused_token_help.as_deref())
                    );
                }
                fetch::jittered(poller.interval)
            }
            Err(TickError::Fetch(Failure::RateLimited(after))) => {
                failures += 1;
                let wait = after.unwrap_or_else(|| fetch::backoff(Duration::from_secs(5), failures - 1, MAX_BACKOFF));
                tracing::warn!(source = %poller.source, wait_secs = wait.as_secs(), "rate limited (HTTP 429)");
                wait
            }
            Err(TickError::Checkpoint(e)) => {
                tracing::error!(source = %poller.source, error = %e, "the poller stops: it cannot tell where to resume");
                ctx.health.stopped(&poller.source, e.to_string());
                held.release().await;
                return Ended::Stopped;
            }
            Err(e) => {
                failures += 1;
                let wait = fetch::backoff(Duration::from_secs(5), failures - 1, MAX_BACKOFF);
                tracing::warn!(source = %poller.source, error = %e, retry_in_secs = wait.as_secs(), "poll tick failed");
                wait
            }
        };
        // A lease lost during the tick ends the wait at once.
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait() => return Ended::Shutdown(held),
            why = held.lost() => return Ended::Lost(why),
        }
    }
}

/// The longest wait after repeated failures.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[cfg(test)]
mod tests {
    use super::refusal_message;

    #[test]
    fn a_refusal_after_success_says_the_token_expired_or_was_revoked() {
        let first = refusal_message(false, "AUTHENTIK_TOKEN", Some("it needs view_event"));
        assert!(first.contains("it needs view_event"), "{first}");
        assert!(!first.contains("expired or revoked"), "{first}");
        let later = refusal_message(true, "AUTHENTIK_TOKEN", Some("it needs view_event"));
        assert!(later.contains("token expired or revoked"), "{later}");
        assert!(
            later.contains("AUTHENTIK_TOKEN") && later.contains("it needs view_event"),
            "{later}"
        );
    }
}
