//! Standard Webhooks message ids seen within the replay window, so a
//! replayed message (same `webhook-id`, re-sent inside the timestamp
//! tolerance) is acknowledged instead of stored again. Only messages that
//! verified and were durably handled are remembered: a sender's retry after
//! a 5xx keeps its id and must still be taken.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Ids remembered at most; beyond this the oldest are forgotten first (a
/// forgotten replay is then caught by the `(source, externalId)` key).
pub const MAX_REMEMBERED: usize = 100_000;

/// The ids of one endpoint.
#[derive(Debug)]
pub struct SeenIds {
    window_secs: i64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    until: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
}

impl SeenIds {
    /// Ids remembered for `window_secs` (the timestamp tolerance, either side).
    pub fn new(window_secs: u64) -> SeenIds {
        SeenIds {
            window_secs: i64::try_from(window_secs).unwrap_or(i64::MAX / 4).saturating_mul(2),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Whether `id` was handled within the window before `now`.
    pub fn contains(&self, id: &str, now: i64) -> bool {
        let inner = self.lock();
        inner.until.get(id).is_some_and(|until| *until >= now)
    }

    /// Remembers `id` as handled at `now`.
    pub fn remember(&self, id: &str, now: i64) {
        let mut inner = self.lock();
        let until = now.saturating_add(self.window_secs);
        while let Some((expires, _)) = inner.order.front() {
            if *expires >= now && inner.order.len() < MAX_REMEMBERED {
                break;
            }
            let (expires, old) = inner.order.pop_front().expect("a front entry");
            if inner.until.get(&old) == Some(&expires) {
                inner.until.remove(&old);
            }
        }
        inner.until.insert(id.to_string(), until);
        inner.order.push_back((until, id.to_string()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_remembered_for_the_window_and_the_count_is_bounded() {
        let seen = SeenIds::new(300);
        seen.remember("msg_1", 1000);
        assert!(seen.contains("msg_1", 1100));
        assert!(!seen.contains("msg_2", 1100));
        assert!(!seen.contains("msg_1", 1000 + 601), "forgotten after the window");
        for i in 0..MAX_REMEMBERED + 10 {
            seen.remember(&format!("m{i}"), 2000);
        }
        let inner = seen.lock();
        assert!(inner.until.len() <= MAX_REMEMBERED && inner.order.len() <= MAX_REMEMBERED);
    }
}
