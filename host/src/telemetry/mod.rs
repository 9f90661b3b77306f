//! Counters, gauges and histograms for `GET /metrics` (Prometheus text
//! format), held by a [`Telemetry`] handle made at start and passed down (no
//! process-wide state: two services in one process count apart). Labels
//! come only from bounded sets: configured source names and fixed outcomes,
//! never from payloads or error text.

pub mod arrivals;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Upper bounds of the duration histograms, seconds.
const BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// A duration histogram.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Box<[AtomicU64]>,
    total: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    /// Buckets from 100 µs to 1 s, for calls and writes.
    fn default() -> Self {
        Histogram::with_bounds(&BUCKETS)
    }
}

impl Histogram {
    /// A histogram with these upper bounds, seconds (ascending).
    pub fn with_bounds(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            total: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
        }
        let total = self.total.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {total}");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {}",
            self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9
        );
        let _ = writeln!(out, "{name}_count{braces} {total}");
    }
}

/// Everything counted for one source.
#[derive(Default)]
pub struct SourceMetrics {
    /// Events the mapper produced.
    pub received: AtomicU64,
    /// Records written.
    pub inserted: AtomicU64,
    /// Records already stored.
    pub duplicates: AtomicU64,
    /// Deliveries kept as dead letters.
    pub dead_lettered: AtomicU64,
    /// Requests refused for a missing or wrong signature.
    pub rejected_signature: AtomicU64,
    /// Of those, requests that carried no signature at all: the sender is
    /// not signing (Stalwart posts unsigned when its key cannot be read).
    pub rejected_unsigned: AtomicU64,
    /// When a refusal of this source was last logged, Unix seconds.
    refusal_logged_at: AtomicI64,
    /// Mapper call durations.
    pub mapper_seconds: Histogram,
    /// Poll sources: the newest stored event's time, Unix seconds (-1: none yet).
    pub poll_cursor_unix: AtomicI64,
    /// Poll sources: 1 while this instance holds the poll lease, 0 while it
    /// stands by (-1: not a poller).
    pub poll_lease_held: AtomicI64,
    /// Poll sources: times this instance took the poll lease.
    pub poll_lease_taken: AtomicU64,
    /// Tail sources: bytes in the file not yet committed.
    pub tail_behind_bytes: AtomicU64,
    /// Set for tail sources (their lag is in bytes).
    pub is_tail: AtomicBool,
    /// First and repeated arrivals by transport, and how late they were.
    pub arrivals: arrivals::Arrivals,
}

impl SourceMetrics {
    fn new() -> SourceMetrics {
        SourceMetrics {
            poll_cursor_unix: AtomicI64::new(-1),
            poll_lease_held: AtomicI64::new(-1),
            ..SourceMetrics::default()
        }
    }

    /// Counts a refused request; true when it should be logged: at most
    /// once a second per source, so a flood of refusals cannot flood the
    /// log (the counter keeps the total).
    pub fn refused(&self, unsigned: bool) -> bool {
        self.rejected_signature.fetch_add(1, Ordering::Relaxed);
        if unsigned {
            self.rejected_unsigned.fetch_add(1, Ordering::Relaxed);
        }
        let now = now_unix();
        let last = self.refusal_logged_at.load(Ordering::Relaxed);
        now > last
            && self
                .refusal_logged_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Counts a committed write of `received` records.
    pub fn wrote(&self, received: usize, summary: &crate::store::WriteSummary) {
        self.received.fetch_add(received as u64, Ordering::Relaxed);
        self.inserted.fetch_add(summary.inserted, Ordering::Relaxed);
        self.duplicates.fetch_add(summary.duplicates, Ordering::Relaxed);
    }
}

/// Every metric of one service: cheap to clone, shared by its parts.
#[derive(Clone, Default)]
pub struct Telemetry(Arc<Metrics>);

struct Metrics {
    sources: RwLock<BTreeMap<String, Arc<SourceMetrics>>>,
    store_write_seconds: Histogram,
    retention: RetentionMetrics,
    started_unix: i64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            sources: RwLock::default(),
            store_write_seconds: Histogram::default(),
            retention: RetentionMetrics::default(),
            started_unix: now_unix(),
        }
    }
}

/// What retention deleted.
#[derive(Default)]
pub struct RetentionMetrics {
    records: AtomicU64,
    dead_letters: AtomicU64,
    passes_ok: AtomicU64,
    passes_failed: AtomicU64,
    last_pass_unix: AtomicI64,
}

impl RetentionMetrics {
    /// Counts records deleted.
    pub fn records_deleted(&self, n: u64) {
        self.records.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts dead letters deleted.
    pub fn dead_letters_deleted(&self, n: u64) {
        self.dead_letters.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a finished pass (`ok`: it ran to the end).
    pub fn passed(&self, ok: bool) {
        let counter = if ok { &self.passes_ok } else { &self.passes_failed };
        counter.fetch_add(1, Ordering::Relaxed);
        self.last_pass_unix.store(now_unix(), Ordering::Relaxed);
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP audit_ingest_retention_deleted_total Records and dead letters deleted by retention.\n\
             # TYPE audit_ingest_retention_deleted_total counter\n\
             audit_ingest_retention_deleted_total{{kind=\"records\"}} {}\n\
             audit_ingest_retention_deleted_total{{kind=\"dead_letters\"}} {}\n\
             # HELP audit_ingest_retention_passes_total Retention passes, by whether they ran to the end.\n\
             # TYPE audit_ingest_retention_passes_total counter\n\
             audit_ingest_retention_passes_total{{outcome=\"ok\"}} {}\n\
             audit_ingest_retention_passes_total{{outcome=\"failed\"}} {}\n\
             # HELP audit_ingest_retention_last_pass_timestamp_seconds When the last retention pass ended (0: none yet).\n\
             # TYPE audit_ingest_retention_last_pass_timestamp_seconds gauge\n\
             audit_ingest_retention_last_pass_timestamp_seconds {}",
            self.records.load(Ordering::Relaxed),
            self.dead_letters.load(Ordering::Relaxed),
            self.passes_ok.load(Ordering::Relaxed),
            self.passes_failed.load(Ordering::Relaxed),
            self.last_pass_unix.load(Ordering::Relaxed),
        );
    }
}

impl Telemetry {
    /// A new, empty set of metrics.
    pub fn new() -> Telemetry {
        Telemetry::default()
    }

    /// The metrics of `source` (created on first use; sources that call this
    /// often keep the handle).
    pub fn source(&self, name: &str) -> Arc<SourceMetrics> {
        if let Some(m) = self.0.sources.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            return m.clone();
        }
        let mut all = self.0.sources.write().unwrap_or_else(|e| e.into_inner());
        all.entry(name.to_string())
            .or_insert_with(|| Arc::new(SourceMetrics::new()))
            .clone()
    }

    /// Counts a committed write of `source`'s records that arrived `via`
    /// (see [`arrivals::Arrivals::record`]) and logs pushes that stopped.
    pub fn arrived(
        &self,
        source: &str,
        via: crate::event::Transport,
        event_times: &[Option<chrono::DateTime<chrono::Utc>>],
        summary: &crate::store::WriteSummary,
    ) {
        let arrivals = &self.source(source).arrivals;
        arrivals.record(via, event_times, summary);
        arrivals.log_changes(source, self.0.started_unix);
    }

    /// `source` is pushed as well as polled: pushes silent for longer than
    /// `bound` while the poller finds newer events count as stopped.
    pub fn expect_pushes(&self, source: &str, bound: Duration) {
        self.source(source).arrivals.expect_pushes(bound);
    }

    /// The pushed and polled sources whose pushes stopped, for `/readyz`.
    pub fn push_silences(&self) -> Vec<arrivals::PushSilence> {
        let all = self.0.sources.read().unwrap_or_else(|e| e.into_inner());
        all.iter()
            .filter_map(|(name, m)| m.arrivals.silence(name, self.0.started_unix))
            .collect()
    }

    /// What retention deleted.
    pub fn retention(&self) -> &RetentionMetrics {
        &self.0.retention
    }

    /// Records how long one store write took to become durable.
    pub fn store_write(&self, took: Duration) {
        self.0.store_write_seconds.observe(took);
    }

    /// Each source's lag, for the overview page: poll sources in seconds
    /// behind their newest stored event, tails in bytes not yet committed.
    pub fn lags(&self) -> BTreeMap<String, SourceLag> {
        let now = now_unix();
        let all = self.0.sources.read().unwrap_or_else(|e| e.into_inner());
        all.iter()
            .map(|(name, m)| {
                let at = m.poll_cursor_unix.load(Ordering::Relaxed);
                let lag = SourceLag {
                    poll_lag_secs: (at >= 0).then(|| now - at),
                    tail_behind_bytes: m
                        .is_tail
                        .load(Ordering::Relaxed)
                        .then(|| m.tail_behind_bytes.load(Ordering::Relaxed)),
                    dead_lettered_since_start: m.dead_lettered.load(Ordering::Relaxed),
                };
                (name.clone(), lag)
            })
            .collect()
    }

    /// Renders everything in the Prometheus text format, with the mapper
    /// runtime's own figures.
    pub fn render(&self, mappers: MapperFigures, store: StoreFigures) -> String {
        render(&self.0, mappers, store)
    }
}

/// How far behind one source is (see [`Telemetry::lags`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceLag {
    /// Poll sources: seconds between now and the newest stored event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_lag_secs: Option<i64>,
    /// Tail sources: bytes of the file not yet committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tail_behind_bytes: Option<u64>,
    /// Deliveries dead-lettered since the service started.
    pub dead_lettered_since_start: u64,
}

/// What the store reports for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreFigures {
    /// Documents that are not this service's records, passed over by reads since start.
    pub foreign_skipped: u64,
}

/// What the mapper runtime reports for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MapperFigures {
    /// `(loaded, rejected)` mapper files since start.
    pub reloads: (u64, u64),
    /// Mapper calls running now.
    pub calls_running: usize,
    /// Calls waiting for a free instance now.
    pub calls_waiting: usize,
    /// Calls refused as busy since start (503 to a webhook, a retry elsewhere).
    pub calls_busy_total: u64,
}

/// Now, Unix seconds.
pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

fn render(metrics: &Metrics, mappers: MapperFigures, store: StoreFigures) -> String {
    let reloads = mappers.reloads;
    let mut out = String::new();
    let sources = metrics.sources.read().unwrap_or_else(|e| e.into_inner()).clone();
    let counter = |out: &mut String, name: &str, help: &str, get: &dyn Fn(&SourceMetrics) -> u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (source, m) in &sources {
            let _ = writeln!(out, "{name}{{source=\"{source}\"}} {}", get(m));
        }
    };
    counter(
        &mut out,
        "audit_ingest_events_received_total",
        "Events mapped from deliveries.",
        &|m| m.received.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "audit_ingest_events_inserted_total",
        "Records written.",
        &|m| m.inserted.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "audit_ingest_events_duplicate_total",
        "Records already stored (deduplicated).",
        &|m| m.duplicates.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "audit_ingest_dead_letters_total",
        "Deliveries kept as dead letters.",
        &|m| m.dead_lettered.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "audit_ingest_signature_rejected_total",
        "Webhook requests refused for a missing or wrong signature.",
        &|m| m.rejected_signature.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "audit_ingest_unsigned_rejected_total",
        "Webhook requests refused because they carried no signature at all (the sender is not signing).",
        &|m| m.rejected_unsigned.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP audit_ingest_arrivals_total Records committed per transport, the first arrival of each event apart from repeats (a pushed event the poller reads again is one of each).\n# TYPE audit_ingest_arrivals_total counter"
    );
    for (source, m) in &sources {
        m.arrivals.render_counts(&mut out, source);
    }
    let _ = writeln!(
        out,
        "# HELP audit_ingest_arrival_lag_seconds From an event's own time to the commit that made it queryable, per transport, first arrivals apart from repeats.\n# TYPE audit_ingest_arrival_lag_seconds histogram"
    );
    for (source, m) in &sources {
        m.arrivals.render_lags(&mut out, source);
    }
    let _ = writeln!(
        out,
        "# HELP audit_ingest_push_silent 1 while a pushed and polled source's pushes have stopped (the poller finds events no push brought).\n# TYPE audit_ingest_push_silent gauge"
    );
    for (source, m) in &sources {
        if m.arrivals.expects_pushes() {
            let silent = m.arrivals.silence(source, metrics.started_unix).is_some();
            let _ = writeln!(
                out,
                "audit_ingest_push_silent{{source=\"{source}\"}} {}",
                u8::from(silent)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP audit_ingest_mapper_call_duration_seconds Mapper call durations.\n# TYPE audit_ingest_mapper_call_duration_seconds histogram"
    );
    for (source, m) in &sources {
        m.mapper_seconds.render(
            &mut out,
            "audit_ingest_mapper_call_duration_seconds",
            &format!("source=\"{source}\""),
        );
    }
    let _ = writeln!(
        out,
        "# HELP audit_ingest_mapper_reloads_total Mapper files loaded or rejected by the hot reloader.\n# TYPE audit_ingest_mapper_reloads_total counter"
    );
    let _ = writeln!(
        out,
        "audit_ingest_mapper_reloads_total{{outcome=\"loaded\"}} {}",
        reloads.0
    );
    let _ = writeln!(
        out,
        "audit_ingest_mapper_reloads_total{{outcome=\"rejected\"}} {}",
        reloads.1
    );
    let _ = writeln!(
        out,
        "# HELP audit_ingest_mapper_calls Mapper calls running or waiting for a free instance.\n# TYPE audit_ingest_mapper_calls gauge\n\
         audit_ingest_mapper_calls{{state=\"running\"}} {}\naudit_ingest_mapper_calls{{state=\"waiting\"}} {}",
        mappers.calls_running, mappers.calls_waiting
    );
    let _ = writeln!(
        out,
        "# HELP audit_ingest_mapper_calls_busy_total Mapper calls refused because no instance was free.\n# TYPE audit_ingest_mapper_calls_busy_total counter\n\
         audit_ingest_mapper_calls_busy_total {}",
        mappers.calls_busy_total
    );
    let now = now_unix();
    let _ = writeln!(
        out,
        "# HELP audit_ingest_poll_lag_seconds Now minus the newest stored event's time, per poll source.\n# TYPE audit_ingest_poll_lag_seconds gauge"
    );
    for (source, m) in &sources {
        let at = m.poll_cursor_unix.load(Ordering::Relaxed);
        if at >= 0 {
            let _ = writeln!(out, "audit_ingest_poll_lag_seconds{{source=\"{source}\"}} {}", now - at);
        }
    }
    let _ = writeln!(
        out,
        "# HELP audit_ingest_poll_lease_held 1 while this instance holds the source's poll lease (it polls), 0 while another does.\n# TYPE audit_ingest_poll_lease_held gauge\n\
         # HELP audit_ingest_poll_lease_taken_total Times this instance took the source's poll lease.\n# TYPE audit_ingest_poll_lease_taken_total counter"
    );
    for (source, m) in &sources {
        let held = m.poll_lease_held.load(Ordering::Relaxed);
        if held >= 0 {
            let _ = writeln!(
                out,
                "audit_ingest_poll_lease_held{{source=\"{source}\"}} {held}\naudit_ingest_poll_lease_taken_total{{source=\"{source}\"}} {}",
                m.poll_lease_taken.load(Ordering::Relaxed)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP audit_ingest_tail_lag_bytes Bytes of the tailed file not yet committed.\n# TYPE audit_ingest_tail_lag_bytes gauge"
    );
    for (source, m) in &sources {
        if m.is_tail.load(Ordering::Relaxed) {
            let _ = writeln!(
                out,
                "audit_ingest_tail_lag_bytes{{source=\"{source}\"}} {}",
                m.tail_behind_bytes.load(Ordering::Relaxed)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP audit_ingest_store_foreign_documents_skipped_total Documents in the events collection that are not this service's records, passed over by reads.\n# TYPE audit_ingest_store_foreign_documents_skipped_total counter\n\
         audit_ingest_store_foreign_documents_skipped_total {}",
        store.foreign_skipped
    );
    let _ = writeln!(
        out,
        "# HELP audit_ingest_store_write_duration_seconds Time for one batch to become durable.\n# TYPE audit_ingest_store_write_duration_seconds histogram"
    );
    metrics
        .store_write_seconds
        .render(&mut out, "audit_ingest_store_write_duration_seconds", "");
    metrics.retention.render(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_services_count_apart() {
        let (a, b) = (Telemetry::new(), Telemetry::new());
        a.source("s").wrote(2, &crate::store::WriteSummary::of(2, Vec::new()));
        assert!(
            a.render(MapperFigures::default(), StoreFigures::default())
                .contains("audit_ingest_events_inserted_total{source=\"s\"} 2\n")
        );
        assert!(
            !b.render(MapperFigures::default(), StoreFigures::default())
                .contains("source=\"s\"")
        );
    }

    #[test]
    fn histograms_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(5));
        let mut out = String::new();
        h.render(&mut out, "x", "source=\"s\"");
        assert!(out.contains("x_bucket{source=\"s\",le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{source=\"s\",le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{source=\"s\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{source=\"s\"} 3\n"), "{out}");
    }
}
