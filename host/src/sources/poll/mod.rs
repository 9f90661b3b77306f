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
//! overlap. Between ticks it waits the interval (±10 % jitter), or backs off
//! exponentially after 5xx answers, timeouts and store failures, or waits
//! what a 429's `Retry-After` asks. A refused token (401/403) is logged once
//! with what the token needs, and retried every interval.

pub mod fetch;
pub mod tenants;
pub mod walk;

use std::sync::atomic::Ordering;
use std::time::Duration;

use audit_guest_sdk::{Delivery, PageRequest, Transport};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::{ConfigError, Secret, SecretSource};
use crate::ingest::{self, Received, Tenants};
use crate::runtime::{MapError, Runtime};
use crate::store::{Store, StoreError};
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
    /// Tenant inference from the acting user's groups (none: hints only).
    #[serde(default)]
    pub tenant_lookup: Option<LookupConfig>,
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
fn default_timeout() -> u64 {
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
                .ok_or_else(|| serde::de::Error::custom(format!("`{text}`: expected everything, now or <N>d such as 7d"))),
        }
    }
}

impl Config {
    /// authentik's events list at `base_url`, token from `AUTHENTIK_TOKEN`,
    /// tenants from the acting user's groups.
    pub fn authentik(base_url: &str) -> Config {
        Config {
            source: "authentik".into(),
            mapper: None,
            enabled: true,
            base_url: base_url.to_string(),
            path: "/api/v3/events/events/".into(),
            token: SecretSource {
                env: Some("AUTHENTIK_TOKEN".into()),
                file: None,
            },
            interval_secs: default_interval(),
            page_size: default_page_size(),
            max_pages_per_tick: default_cap(),
            first_run: FirstRun::Everything,
            overlap_secs: default_overlap(),
            request_timeout_secs: default_timeout(),
            tenant_lookup: Some(LookupConfig::default()),
        }
    }

    /// Resolves the token and checks values; errors name the key.
    pub fn resolve(&self) -> Result<Poller, ConfigError> {
        let key = format!("pollers[{}]", self.source);
        crate::config::check_source_name(&key, &self.source)?;
        let base = self.base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ConfigError(format!("{key}.base_url: `{}` is not an http(s) URL", self.base_url)));
        }
        if !self.path.starts_with('/') {
            return Err(ConfigError(format!("{key}.path: must start with /")));
        }
        if self.interval_secs == 0 || self.request_timeout_secs == 0 {
            return Err(ConfigError(format!("{key}: interval_secs and request_timeout_secs must be above 0")));
        }
        if !(1..=1000).contains(&self.page_size) {
            return Err(ConfigError(format!("{key}.page_size: expected 1 to 1000")));
        }
        let token = self.token.resolve(&format!("{key}.token"))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(self.request_timeout_secs))
            .user_agent(concat!("audit-ingest/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError(format!("{key}: cannot build an HTTP client: {e}")))?;
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
            lookup: self.tenant_lookup.clone().map(|c| TenantLookup::new(c, base)),
            client,
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
    lookup: Option<TenantLookup>,
    client: reqwest::Client,
}

/// What a poller needs from the rest of the service.
#[derive(Clone)]
pub struct Context {
    /// Where records and cursors go.
    pub store: Store,
    /// The mappers.
    pub runtime: Runtime,
    /// Known tenant slugs.
    pub tenants: Tenants,
    /// Becomes true when the service shuts down.
    pub shutdown: watch::Receiver<bool>,
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
}

/// A list that shifts under this many page requests in a row ends the tick
/// (to be retried) rather than looping.
const MAX_REALIGN: u32 = 50;

impl Poller {
    /// Runs one tick: walk pages until the cursor, the list's end or the cap.
    pub async fn tick(&mut self, ctx: &Context) -> Result<TickSummary, TickError> {
        let mut cursor = self.load_cursor(ctx).await?;
        let mut walk = cursor.begin(self.overlap);
        // A walk carried over from a capped tick; once it ends, a fresh walk
        // for what arrived meanwhile starts in the same tick.
        let mut resumed = cursor.walk.is_some();
        let mut summary = TickSummary::default();
        let mut served_size = walk.page_size.unwrap_or(self.page_size);
        let mut page = walk.next_page(served_size);
        let mut realigned = 0;
        loop {
            if *ctx.shutdown.borrow() {
                break;
            }
            if self.max_pages > 0 && summary.pages >= self.max_pages {
                if walk.past_known {
                    // Only the overlap window is left: the walk is done.
                    cursor = cursor.after_page(&walk, true);
                    self.save_cursor(ctx, &cursor).await?;
                    break;
                }
                summary.capped = true;
                tracing::info!(source = %self.source, next_page = walk.next_page(served_size), "page cap reached before the cursor: the gap is walked first on the next tick");
                break;
            }
            summary.pages += 1;
            let query = self.page_query(ctx, page)?;
            let (body, headers, url) = match fetch::get(&self.client, &self.url, &query, self.token.as_ref()).await {
                Answer::Page { body, headers, url } => (body, headers, url),
                Answer::NoSuchPage => match walk::past_the_end(&walk, page) {
                    Some(back) if realigned < MAX_REALIGN => {
                        realigned += 1;
                        page = back;
                        continue;
                    }
                    _ => {
                        cursor = cursor.after_page(&walk, true);
                        self.save_cursor(ctx, &cursor).await?;
                        break;
                    }
                },
                Answer::Failed(f) => return Err(TickError::Fetch(f)),
            };
            let received = Received {
                source: self.source.clone(),
                at: Utc::now(),
                sender: None,
            };
            let delivery = Delivery {
                source: self.source.clone(),
                transport: Transport::Poll,
                received_at: received.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                headers,
                origin: Some(url),
                body,
            };
            let output = match ctx.runtime.map(&self.mapper, delivery.clone()).await {
                Ok(o) => o,
                Err(e) => {
                    // The walk cannot move past a page it cannot read: keep
                    // the page for re-mapping and retry after a fixed mapper
                    // is dropped in.
                    ctx.store.dead_letter(ingest::dead_letter(&received, delivery.body, &e)).await?;
                    crate::metrics::source(&self.source).dead_lettered.fetch_add(1, Ordering::Relaxed);
                    return Err(TickError::Map(e));
                }
            };
            let info = output.mapped.poll.unwrap_or_default();
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
            if !info.last && !output.mapped.events.is_empty() {
                served_size = output.mapped.events.len() as u32;
            }
            let keys: Vec<Option<Key>> = output.mapped.events.iter().map(key_of).collect();
            let (keep, ended) = walk::select(&mut walk, &keys, info.last);
            walk.advance(page, info.total, served_size);
            page = walk.next_page(served_size);
            let mut records: Vec<_> = ingest::records(&received, output, &ctx.tenants)
                .into_iter()
                .zip(keep)
                .filter_map(|(r, keep)| keep.then_some(r))
                .collect();
            self.infer_tenants(ctx, &mut records).await;
            cursor = cursor.after_page(&walk, ended);
            let count = records.len();
            let written = ctx.store.insert(records, Some((self.source.clone(), cursor_json(&cursor)))).await?;
            crate::metrics::wrote(&self.source, count, &written);
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
        let m = crate::metrics::source(&self.source);
        m.last_success_unix.store(crate::metrics::now_unix(), Ordering::Relaxed);
        if let Some(high) = &cursor.high {
            m.poll_cursor_unix.store(high.at.timestamp(), Ordering::Relaxed);
        }
        Ok(summary)
    }

    fn page_query(&self, ctx: &Context, page: u32) -> Result<Vec<(String, String)>, TickError> {
        let request = PageRequest {
            page,
            page_size: self.page_size,
        };
        let params = ctx.runtime.page_query(&self.mapper, &request).map_err(TickError::Map)?;
        Ok(params.into_iter().map(|p| (p.name, p.value)).collect())
    }

    async fn load_cursor(&self, ctx: &Context) -> Result<Cursor, TickError> {
        let stored = ctx.store.load_cursor(&self.source).await?;
        let Some(value) = stored else {
            // The very first tick: fix the first-run policy now, so it does
            // not move with every tick until events arrive.
            return Ok(Cursor {
                floor: self.first_run.floor(Utc::now()),
                ..Cursor::default()
            });
        };
        serde_json::from_value(value.clone()).map_err(|e| {
            TickError::Store(StoreError::Unavailable(format!(
                "the stored cursor of {} is not one this version understands ({e}): {value}; \
                 delete it from ingest_cursors to start over",
                self.source
            )))
        })
    }

    async fn save_cursor(&self, ctx: &Context, cursor: &Cursor) -> Result<(), TickError> {
        Ok(ctx.store.save_cursor(&self.source, &cursor_json(cursor)).await?)
    }

    /// Sets the tenant of records the mapper's hint did not place, from the
    /// acting user's groups (cached).
    async fn infer_tenants(&mut self, ctx: &Context, records: &mut [crate::store::NewRecord]) {
        let Some(lookup) = self.lookup.as_mut() else { return };
        if ctx.tenants.is_empty() {
            return;
        }
        for record in records.iter_mut().filter(|r| r.tenant_slug.is_none()) {
            if let Some(id) = record.actor_id.clone() {
                record.tenant_slug = lookup.tenant_of(&self.client, self.token.as_ref(), &id, &ctx.tenants).await;
            }
        }
    }

    /// Whether a token is configured.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Where the token is expected, for messages.
    pub fn token_hint(&self) -> &str {
        &self.token_hint
    }

    /// User lookups that went to the API since start (the cache absorbs the rest).
    pub fn tenant_lookups(&self) -> u64 {
        self.lookup.as_ref().map_or(0, |l| l.lookups)
    }
}

fn key_of(event: &audit_guest_sdk::AuditEvent) -> Option<Key> {
    let at = DateTime::parse_from_rfc3339(event.occurred_at.as_deref()?).ok()?;
    Some(Key {
        at: at.with_timezone(&Utc),
        id: event.external_id.clone()?,
    })
}

fn cursor_json(cursor: &Cursor) -> serde_json::Value {
    serde_json::to_value(cursor).expect("a cursor serialises")
}

/// Runs ticks until shutdown, waiting between them as the last tick's
/// outcome says.
pub async fn run(mut poller: Poller, ctx: Context) {
    let mut shutdown = ctx.shutdown.clone();
    let mut failures = 0u32;
    let mut refused_logged = false;
    tracing::info!(source = %poller.source, url = %poller.url, interval_secs = poller.interval.as_secs(), "poller started");
    // Wedged: no successful tick for three intervals plus the longest backoff.
    crate::metrics::expect_progress(&poller.source, poller.interval * 3 + MAX_BACKOFF, false);
    loop {
        let started = std::time::Instant::now();
        let wait = match poller.tick(&ctx).await {
            Ok(s) => {
                failures = 0;
                refused_logged = false;
                tracing::info!(
                    source = %poller.source, pages = s.pages, inserted = s.inserted, duplicates = s.duplicates,
                    capped = s.capped, elapsed_ms = started.elapsed().as_millis() as u64, "poll tick"
                );
                fetch::jittered(poller.interval)
            }
            Err(TickError::Fetch(Failure::Unauthorized(code))) => {
                if !refused_logged {
                    refused_logged = true;
                    tracing::error!(
                        source = %poller.source, status = code,
                        "the API refused {}: it must be an API-intent, non-expiring token whose user has \
                         view_event (and view_user, view_group for tenants); retrying every interval",
                        poller.token_hint
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
            Err(e) => {
                failures += 1;
                let wait = fetch::backoff(Duration::from_secs(5), failures - 1, MAX_BACKOFF);
                tracing::warn!(source = %poller.source, error = %e, retry_in_secs = wait.as_secs(), "poll tick failed");
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    tracing::info!(source = %poller.source, "poller stopped");
}

/// The longest wait after repeated failures.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
