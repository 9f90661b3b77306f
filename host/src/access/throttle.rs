//! Failed authentication, counted per client address (`[api.failed_auth]`).
//!
//! A client with `max_failures` refused credentials inside one window is
//! answered 429 with `Retry-After` for the rest of that window, whatever it
//! sends, so guessing tokens costs the window per `max_failures` guesses.
//! IPv6 clients are counted per /64 (one host usually holds a whole /64).
//! The table is bounded: when it is full, expired windows are dropped
//! first, then the oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// `[api.failed_auth]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Refused credentials one client may send per window.
    pub max_failures: u32,
    /// The window, seconds.
    pub window_secs: u64,
    /// Client addresses tracked at once.
    pub max_clients: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_failures: 20,
            window_secs: 60,
            max_clients: 100_000,
        }
    }
}

impl Config {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1_000_000).contains(&self.max_failures) {
            return Err(ConfigError::new("api.failed_auth.max_failures", "use 1 to 1000000"));
        }
        if !(1..=86_400).contains(&self.window_secs) {
            return Err(ConfigError::new("api.failed_auth.window_secs", "use 1 to 86400"));
        }
        if !(1..=10_000_000).contains(&self.max_clients) {
            return Err(ConfigError::new("api.failed_auth.max_clients", "use 1 to 10000000"));
        }
        Ok(())
    }
}

/// A client as counted: an IPv4 address, an IPv6 /64, or "unknown".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    V4(u32),
    V6Net(u64),
    Unknown,
}

fn client(ip: Option<IpAddr>) -> Client {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(v4)) => Client::V4(v4.into()),
        Some(IpAddr::V6(v6)) => Client::V6Net((u128::from(v6) >> 64) as u64),
        None => Client::Unknown,
    }
}

struct Window {
    started: Instant,
    failures: u32,
}

/// The failure counts.
pub struct Throttle {
    config: Config,
    windows: Mutex<HashMap<Client, Window>>,
}

impl Throttle {
    /// An empty table.
    pub fn new(config: Config) -> Throttle {
        Throttle {
            config,
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.config.window_secs)
    }

    /// `Err(seconds to wait)` when `ip` has used up its failures.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), u64> {
        self.check_at(ip, Instant::now())
    }

    fn check_at(&self, ip: Option<IpAddr>, now: Instant) -> Result<(), u64> {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        match windows.get(&client(ip)) {
            Some(w) if w.failures >= self.config.max_failures => {
                let left = self.window().saturating_sub(now.duration_since(w.started));
                if left.is_zero() {
                    Ok(())
                } else {
                    Err(left.as_secs().max(1))
                }
            }
            _ => Ok(()),
        }
    }

    /// Counts one refused credential from `ip`.
    pub fn failed(&self, ip: Option<IpAddr>) {
        self.failed_at(ip, Instant::now())
    }

    fn failed_at(&self, ip: Option<IpAddr>, now: Instant) {
        let window = self.window();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let key = client(ip);
        if !windows.contains_key(&key) && windows.len() >= self.config.max_clients {
            windows.retain(|_, w| now.duration_since(w.started) < window);
            if windows.len() >= self.config.max_clients
                && let Some(oldest) = windows.iter().min_by_key(|(_, w)| w.started).map(|(k, _)| *k)
            {
                windows.remove(&oldest);
            }
        }
        let w = windows.entry(key).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now.duration_since(w.started) >= window {
            *w = Window {
                started: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }

    /// Client addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.windows.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn a_client_is_held_for_the_rest_of_its_window_and_others_are_not() {
        let t = Throttle::new(Config {
            max_failures: 3,
            window_secs: 60,
            max_clients: 10,
        });
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.check_at(ip("192.0.2.1"), start), Ok(()));
            t.failed_at(ip("192.0.2.1"), start);
        }
        let later = start + Duration::from_secs(20);
        assert_eq!(t.check_at(ip("192.0.2.1"), later), Err(40));
        assert_eq!(t.check_at(ip("192.0.2.2"), later), Ok(()));
        assert_eq!(
            t.check_at(ip("::ffff:192.0.2.1"), later),
            Err(40),
            "the mapped form is the same client"
        );
        assert_eq!(t.check_at(ip("192.0.2.1"), start + Duration::from_secs(60)), Ok(()));
    }

    #[test]
    fn an_ipv6_client_counts_per_64_and_the_table_stays_bounded() {
        let t = Throttle::new(Config {
            max_failures: 2,
            window_secs: 60,
            max_clients: 100,
        });
        let now = Instant::now();
        t.failed_at(ip("2001:db8:1:2::1"), now);
        t.failed_at(ip("2001:db8:1:2:ffff::9"), now);
        assert!(t.check_at(ip("2001:db8:1:2::77"), now).is_err());
        assert!(t.check_at(ip("2001:db8:1:3::1"), now).is_ok());
        for i in 0..10_000u32 {
            t.failed_at(Some(IpAddr::V4(i.into())), now + Duration::from_millis(u64::from(i)));
        }
        assert!(t.tracked() <= 100, "{} tracked", t.tracked());
    }
}
