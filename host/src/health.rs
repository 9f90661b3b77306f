//! Whether the service's background sources make progress, for `/readyz`.
//!
//! Each poller and tail says at start how long it may go without a success
//! before it counts as wedged, reports each success, and reports a failure it
//! cannot recover from (a checkpoint it cannot read). A registry made at
//! start and passed down: no process-wide state.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::telemetry::now_unix;

/// One background source's progress.
#[derive(Debug, Clone)]
struct Progress {
    started_unix: i64,
    last_success_unix: Option<i64>,
    stale_after_secs: i64,
    stopped: Option<String>,
    /// Standing by while this instance holds the lease.
    standby_for: Option<String>,
}

/// A background source `/readyz` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unhealthy {
    /// The source name.
    pub source: String,
    /// Seconds since its last success (or its start).
    pub seconds_without_success: i64,
    /// Why it stopped for good, if it did (it needs an operator).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

/// One background source's progress as the overview shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceHealth {
    /// The source name.
    pub source: String,
    /// Seconds since its last success (or its start).
    pub seconds_without_success: i64,
    /// Whether `/readyz` counts it as wedged.
    pub wedged: bool,
    /// Why it stopped for good, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// The instance that runs it while this one stands by (a leased poller
    /// on a store shared by several instances).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standby_for: Option<String>,
}

/// The health registry of one service. Cheap to clone.
#[derive(Clone, Default)]
pub struct Health(
    Arc<RwLock<BTreeMap<String, Progress>>>,
    Arc<tokio::sync::Mutex<Option<StorePing>>>,
);

/// The last store round trip `/readyz` made, and what it answered.
#[derive(Clone)]
struct StorePing {
    at: std::time::Instant,
    ok: bool,
}

/// How long one store round trip answers `/readyz`: anonymous callers
/// polling it cannot turn it into store load.
const STORE_PING_FOR: Duration = Duration::from_secs(1);

impl Health {
    /// Whether the store answered, asking it at most once a second however
    /// often this is called (callers at the same moment share one ask).
    pub async fn store_answers<F: std::future::Future<Output = bool>>(&self, ask: impl FnOnce() -> F) -> bool {
        let mut last = self.1.lock().await;
        if let Some(ping) = last.as_ref().filter(|p| p.at.elapsed() < STORE_PING_FOR) {
            return ping.ok;
        }
        let ok = ask().await;
        *last = Some(StorePing {
            at: std::time::Instant::now(),
            ok,
        });
        ok
    }

    /// An empty registry.
    pub fn new() -> Health {
        Health::default()
    }

    /// A background source starts: it must succeed at least every
    /// `stale_after` or `/readyz` reports it.
    pub fn expect_progress(&self, source: &str, stale_after: Duration) {
        let progress = Progress {
            started_unix: now_unix(),
            last_success_unix: None,
            stale_after_secs: i64::try_from(stale_after.as_secs()).unwrap_or(i64::MAX),
            stopped: None,
            standby_for: None,
        };
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(source.to_string(), progress);
    }

    /// A tick or step of `source` finished without error.
    pub fn progressed(&self, source: &str) {
        if let Some(p) = self.0.write().unwrap_or_else(|e| e.into_inner()).get_mut(source) {
            p.last_success_unix = Some(now_unix());
        }
    }

    /// `source` stands by: `holder` runs it (it is not wedged, whatever
    /// its last success). Ends with the next [`Health::expect_progress`].
    pub fn standby(&self, source: &str, holder: &str) {
        let mut all = self.0.write().unwrap_or_else(|e| e.into_inner());
        let progress = all.entry(source.to_string()).or_insert_with(|| Progress {
            started_unix: now_unix(),
            last_success_unix: None,
            stale_after_secs: i64::MAX,
            stopped: None,
            standby_for: None,
        });
        progress.standby_for = Some(holder.to_string());
    }

    /// `source` stopped for a reason it cannot recover from by itself.
    pub fn stopped(&self, source: &str, why: impl Into<String>) {
        if let Some(p) = self.0.write().unwrap_or_else(|e| e.into_inner()).get_mut(source) {
            p.stopped = Some(why.into());
        }
    }

    /// Background sources with no success for longer than their bound, or
    /// stopped for good.
    pub fn wedged(&self) -> Vec<Unhealthy> {
        self.report()
            .into_iter()
            .filter(|h| h.wedged)
            .map(|h| Unhealthy {
                source: h.source,
                seconds_without_success: h.seconds_without_success,
                stopped: h.stopped,
            })
            .collect()
    }

    /// Every background source's progress, wedged or not, for the overview.
    pub fn report(&self) -> Vec<SourceHealth> {
        let now = now_unix();
        let all = self.0.read().unwrap_or_else(|e| e.into_inner());
        all.iter()
            .map(|(source, p)| {
                let since = p.last_success_unix.unwrap_or(p.started_unix).max(p.started_unix);
                let quiet = now.saturating_sub(since);
                SourceHealth {
                    source: source.clone(),
                    seconds_without_success: quiet,
                    wedged: p.stopped.is_some() || (quiet > p.stale_after_secs && p.standby_for.is_none()),
                    stopped: p.stopped.clone(),
                    standby_for: p.standby_for.clone(),
                }
            })
            .collect()
    }

    #[cfg(test)]
    fn started_ago(&self, source: &str, secs: i64) {
        if let Some(p) = self.0.write().unwrap_or_else(|e| e.into_inner()).get_mut(source) {
            p.started_unix -= secs;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readiness_asks_the_store_at_most_once_a_second() {
        let health = Health::new();
        let asked = std::sync::atomic::AtomicUsize::new(0);
        for _ in 0..100 {
            let ok = health
                .store_answers(|| async {
                    asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    true
                })
                .await;
            assert!(ok);
        }
        assert_eq!(asked.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[test]
    fn a_background_source_without_success_past_its_bound_is_wedged() {
        let health = Health::new();
        health.expect_progress("unit-wedged", Duration::from_secs(2));
        health.started_ago("unit-wedged", 5);
        assert!(
            health
                .wedged()
                .iter()
                .any(|u| u.source == "unit-wedged" && u.seconds_without_success >= 5)
        );
        health.progressed("unit-wedged");
        assert!(!health.wedged().iter().any(|u| u.source == "unit-wedged"));
        assert!(
            !health.wedged().iter().any(|u| u.source == "a-webhook-source"),
            "only pollers and tails can be wedged"
        );
        health.stopped("unit-wedged", "its checkpoint cannot be read");
        assert!(health.wedged().iter().any(|u| u.stopped.is_some()));
    }
}
