//! How records arrive, per source and transport: how many for the first time
//! and how many again, how late (from the event's own time to the commit
//! that made it queryable), and, for a source that is both pushed and
//! polled, whether the pushes stopped while the poller still finds new
//! events (a broken notification rule, say).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Histogram;
use crate::event::Transport;
use crate::store::WriteSummary;

/// Upper bounds of the arrival lag histograms, seconds: a push lands in
/// well under a second, a poll within its interval, a backlog in hours.
const LAG_BUCKETS: [f64; 16] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0,
];

/// Arrivals by one transport.
struct ByTransport {
    first: AtomicU64,
    again: AtomicU64,
    first_lag: Histogram,
    again_lag: Histogram,
    /// When a delivery by this transport last committed, Unix seconds (-1: never).
    last_unix: AtomicI64,
    /// The newest event time among records this transport brought first, Unix seconds (-1: none).
    newest_first_event_unix: AtomicI64,
}

impl Default for ByTransport {
    fn default() -> Self {
        ByTransport {
            first: AtomicU64::new(0),
            again: AtomicU64::new(0),
            first_lag: Histogram::with_bounds(&LAG_BUCKETS),
            again_lag: Histogram::with_bounds(&LAG_BUCKETS),
            last_unix: AtomicI64::new(-1),
            newest_first_event_unix: AtomicI64::new(-1),
        }
    }
}

/// The arrivals of one source.
pub struct Arrivals {
    by: [ByTransport; 3],
    /// Pushes expected: how long pushes may be silent while the poller
    /// finds new events, seconds (-1: no pushes expected).
    push_silence_secs: AtomicI64,
    silence_logged: AtomicBool,
}

impl Default for Arrivals {
    fn default() -> Self {
        Arrivals {
            by: Default::default(),
            push_silence_secs: AtomicI64::new(-1),
            silence_logged: AtomicBool::new(false),
        }
    }
}

const TRANSPORTS: [Transport; 3] = [Transport::Webhook, Transport::Poll, Transport::File];

fn index(t: Transport) -> usize {
    match t {
        Transport::Webhook => 0,
        Transport::Poll => 1,
        Transport::File => 2,
    }
}

fn name(t: Transport) -> &'static str {
    match t {
        Transport::Webhook => "webhook",
        Transport::Poll => "poll",
        Transport::File => "file",
    }
}

/// A pushed and polled source whose pushes stopped (see [`Arrivals::silence`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PushSilence {
    /// The source name.
    pub source: String,
    /// Seconds since the last push committed; none: no push since start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds_since_last_push: Option<i64>,
    /// The newest event the poller found that no push had brought, RFC 3339.
    pub newest_polled_event: String,
    /// What it means and what to check.
    pub warning: String,
}

impl Arrivals {
    /// Counts the records of one committed write that arrived `via`: those
    /// at positions `summary.repeated` arrived again, the others for the
    /// first time. `event_times` holds each record's own event time (none
    /// when the event had no usable time, so no lag can be told).
    pub fn record(&self, via: Transport, event_times: &[Option<DateTime<Utc>>], summary: &WriteSummary) {
        let now = Utc::now();
        let by = &self.by[index(via)];
        by.last_unix.store(now.timestamp(), Ordering::Relaxed);
        let mut newest_first = None::<DateTime<Utc>>;
        for (position, at) in event_times.iter().enumerate() {
            let first = summary.is_new(position);
            let (count, lag) = if first {
                (&by.first, &by.first_lag)
            } else {
                (&by.again, &by.again_lag)
            };
            count.fetch_add(1, Ordering::Relaxed);
            if let Some(at) = at {
                lag.observe((now - *at).to_std().unwrap_or(Duration::ZERO));
                if first {
                    newest_first = newest_first.max(Some(*at));
                }
            }
        }
        if let Some(at) = newest_first {
            by.newest_first_event_unix.fetch_max(at.timestamp(), Ordering::Relaxed);
        }
    }

    /// From now on the source is expected to be pushed as well as polled;
    /// pushes silent for longer than `bound` while the poller finds events
    /// newer than that count as stopped.
    pub fn expect_pushes(&self, bound: Duration) {
        let secs = i64::try_from(bound.as_secs()).unwrap_or(i64::MAX);
        self.push_silence_secs.store(secs, Ordering::Relaxed);
    }

    /// Whether pushes are expected and have stopped: the poller brought,
    /// first, an event that happened more than the bound after the last
    /// push committed (or after `started_unix`, when none has). While
    /// pushes work they bring every event within seconds, so the poller
    /// only ever finds repeats of the newest ones.
    pub fn silence(&self, source: &str, started_unix: i64) -> Option<PushSilence> {
        let bound = self.push_silence_secs.load(Ordering::Relaxed);
        if bound < 0 {
            return None;
        }
        let pushed = self.by[index(Transport::Webhook)].last_unix.load(Ordering::Relaxed);
        let polled = self.by[index(Transport::Poll)]
            .newest_first_event_unix
            .load(Ordering::Relaxed);
        let since = if pushed >= 0 { pushed } else { started_unix };
        if polled < 0 || polled <= since.saturating_add(bound) {
            return None;
        }
        let now = super::now_unix();
        let newest = DateTime::from_timestamp(polled, 0).unwrap_or_default();
        let last = (pushed >= 0).then(|| now - pushed);
        let when = match last {
            Some(secs) => format!("the last push arrived {secs} s ago"),
            None => "no push has arrived since the service started".to_string(),
        };
        Some(PushSilence {
            source: source.to_string(),
            seconds_since_last_push: last,
            newest_polled_event: newest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            warning: format!(
                "pushes stopped: the poller finds new events ({newest} the newest) that no push delivered and {when}; \
                 check the notification rule, its policy binding and the transport (the poller still brings every event, \
                 up to an interval late)"
            ),
        })
    }

    /// Logs when pushes stop and when they come back, once each time.
    pub fn log_changes(&self, source: &str, started_unix: i64) {
        match self.silence(source, started_unix) {
            Some(s) if !self.silence_logged.swap(true, Ordering::Relaxed) => {
                tracing::warn!(source = %source, newest_polled_event = %s.newest_polled_event, "{}", s.warning);
            }
            None if self.silence_logged.swap(false, Ordering::Relaxed) => {
                tracing::info!(source = %source, "pushes arrive again");
            }
            _ => {}
        }
    }

    /// Renders this source's arrival counters and lag histograms.
    pub(super) fn render_counts(&self, out: &mut String, source: &str) {
        use std::fmt::Write;
        for t in TRANSPORTS {
            let by = &self.by[index(t)];
            for (first, count) in [("true", &by.first), ("false", &by.again)] {
                let n = count.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "audit_ingest_arrivals_total{{source=\"{source}\",transport=\"{}\",first=\"{first}\"}} {n}",
                        name(t)
                    );
                }
            }
        }
    }

    /// Renders this source's lag histograms.
    pub(super) fn render_lags(&self, out: &mut String, source: &str) {
        for t in TRANSPORTS {
            let by = &self.by[index(t)];
            for (first, count, lag) in [("true", &by.first, &by.first_lag), ("false", &by.again, &by.again_lag)] {
                if count.load(Ordering::Relaxed) > 0 {
                    let labels = format!("source=\"{source}\",transport=\"{}\",first=\"{first}\"", name(t));
                    lag.render(out, "audit_ingest_arrival_lag_seconds", &labels);
                }
            }
        }
    }

    /// Whether pushes are expected of this source.
    pub(super) fn expects_pushes(&self) -> bool {
        self.push_silence_secs.load(Ordering::Relaxed) >= 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs_ago: i64) -> Option<DateTime<Utc>> {
        Some(Utc::now() - chrono::Duration::seconds(secs_ago))
    }

    #[test]
    fn first_and_repeated_arrivals_are_told_apart_by_position() {
        let a = Arrivals::default();
        a.record(Transport::Webhook, &[at(1), at(1), None], &WriteSummary::of(3, vec![1]));
        let mut out = String::new();
        a.render_counts(&mut out, "s");
        assert!(
            out.contains("{source=\"s\",transport=\"webhook\",first=\"true\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("{source=\"s\",transport=\"webhook\",first=\"false\"} 1\n"),
            "{out}"
        );
        let mut lags = String::new();
        a.render_lags(&mut lags, "s");
        // Two records had a time: one first, one repeat; the third had none.
        assert!(
            lags.contains(
                "audit_ingest_arrival_lag_seconds_count{source=\"s\",transport=\"webhook\",first=\"true\"} 1\n"
            ),
            "{lags}"
        );
        assert!(lags.contains("audit_ingest_arrival_lag_seconds_bucket{source=\"s\",transport=\"webhook\",first=\"false\",le=\"2.5\"} 1\n"), "{lags}");
    }

    #[test]
    fn pushes_count_as_stopped_only_when_the_poller_finds_events_newer_than_the_last_push_allows() {
        let started = super::super::now_unix() - 3600;
        let a = Arrivals::default();
        // Not expected: never silent.
        a.record(Transport::Poll, &[at(10)], &WriteSummary::of(1, vec![]));
        assert!(a.silence("s", started).is_none());
        a.expect_pushes(Duration::from_secs(300));
        // No push since a start an hour ago, and the poller brought an event of 10 s ago.
        let s = a.silence("s", started).expect("silent");
        assert_eq!(s.seconds_since_last_push, None);
        assert!(s.warning.contains("no push has arrived"), "{}", s.warning);
        // A push arrives: not silent any more, although the poller brought that event first.
        a.record(Transport::Webhook, &[at(1)], &WriteSummary::of(1, vec![]));
        assert!(a.silence("s", started).is_none());
        // The poller repeating what pushes brought changes nothing; an
        // event within the bound after the last push does not either.
        a.record(Transport::Poll, &[at(1)], &WriteSummary::of(1, vec![0]));
        a.record(
            Transport::Poll,
            &[Some(Utc::now() + chrono::Duration::seconds(200))],
            &WriteSummary::of(1, vec![]),
        );
        assert!(a.silence("s", started).is_none());
        // One past it does.
        a.record(
            Transport::Poll,
            &[Some(Utc::now() + chrono::Duration::seconds(400))],
            &WriteSummary::of(1, vec![]),
        );
        let s = a.silence("s", started).expect("silent");
        assert!(s.seconds_since_last_push.is_some_and(|secs| secs <= 1), "{s:?}");
    }
}
