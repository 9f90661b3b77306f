//! One HTTP GET of a poll source, and what its answer means for the poller.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::config::Secret;

/// The answer to one page request.
#[derive(Debug)]
pub enum Answer {
    /// 200: the body, the response headers and the URL that was fetched.
    Page {
        /// The raw response body.
        body: Vec<u8>,
        /// Response headers, lower-case names.
        headers: Vec<(String, String)>,
        /// The URL fetched (without credentials).
        url: String,
    },
    /// 404: no such page (authentik: `{"detail":"Invalid page."}`).
    NoSuchPage,
    /// The request failed; the tick ends and the poller waits as this says.
    Failed(Failure),
}

/// Why a request failed, and how long to wait before the next try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// 401 or 403: the token is missing, wrong, expired or lacks permissions.
    Unauthorized(u16),
    /// 429 with the server's `Retry-After`, if it gave one.
    RateLimited(Option<Duration>),
    /// 5xx, a timeout or a connection error: back off exponentially.
    Transient(String),
    /// Any other status: a configuration problem (wrong path, ...).
    Unexpected(u16),
    /// A redirect, which is not followed (the token must not travel to
    /// where a response points): the base URL is to be corrected.
    Redirected(u16, String),
    /// The answer is larger than the poller reads (`max_response_bytes`).
    TooLarge(usize),
}

/// The longest `Retry-After` obeyed: a server asking for more is waited on
/// this long, then asked again.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unauthorized(code) => write!(f, "HTTP {code}: the token was refused"),
            Failure::RateLimited(Some(d)) => write!(f, "HTTP 429: retry after {} s", d.as_secs()),
            Failure::RateLimited(None) => write!(f, "HTTP 429 without Retry-After"),
            Failure::Transient(why) => write!(f, "{why}"),
            Failure::Unexpected(code) => write!(f, "unexpected HTTP {code}"),
            Failure::Redirected(code, to) => write!(
                f,
                "HTTP {code} redirect to `{to}`, not followed (the token is not sent elsewhere): set base_url to where the API is"
            ),
            Failure::TooLarge(max) => write!(f, "the answer is larger than {max} bytes (max_response_bytes)"),
        }
    }
}

/// An HTTP client for a poll source: its timeout, no redirects followed.
pub fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("audit-ingest/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Fetches `url` with `query` and the bearer token, reading at most `max_bytes` of the answer.
pub async fn get(
    client: &reqwest::Client,
    url: &str,
    query: &[(String, String)],
    token: Option<&Secret>,
    max_bytes: usize,
) -> Answer {
    let mut request = client.get(url).query(query);
    if let Some(token) = token {
        request = request.bearer_auth(token.expose());
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Answer::Failed(Failure::Transient("request timed out".into())),
        Err(e) => return Answer::Failed(Failure::Transient(format!("request failed: {}", without_url(&e)))),
    };
    let status = response.status();
    let fetched = response.url().to_string();
    let headers = lower_case(response.headers());
    match status {
        StatusCode::OK => match read_capped(response, max_bytes).await {
            Ok(body) => Answer::Page {
                body,
                headers,
                url: fetched,
            },
            Err(failure) => Answer::Failed(failure),
        },
        s if s.is_redirection() => {
            let to = headers
                .iter()
                .find(|(k, _)| k == "location")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            Answer::Failed(Failure::Redirected(s.as_u16(), to))
        }
        StatusCode::NOT_FOUND => Answer::NoSuchPage,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Answer::Failed(Failure::Unauthorized(status.as_u16())),
        StatusCode::TOO_MANY_REQUESTS => Answer::Failed(Failure::RateLimited(retry_after(response.headers()))),
        s if s.is_server_error() => Answer::Failed(Failure::Transient(format!("HTTP {}", s.as_u16()))),
        s => Answer::Failed(Failure::Unexpected(s.as_u16())),
    }
}

/// The body, chunk by chunk, refused as soon as it passes `max` bytes
/// (a declared `Content-Length` over it is refused before reading).
async fn read_capped(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, Failure> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(Failure::TooLarge(max));
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > max {
                    return Err(Failure::TooLarge(max));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(Failure::Transient(format!(
                    "reading the body failed: {}",
                    without_url(&e)
                )));
            }
        }
    }
}

/// `Retry-After` in seconds, at most [`MAX_RETRY_AFTER`] (the HTTP-date
/// form is rare for APIs; it counts as absent).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?;
    text.trim()
        .parse::<u64>()
        .ok()
        .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

fn lower_case(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// reqwest errors print the URL; ours carry no secrets, but keep messages short.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Exponential backoff: `base` doubled per consecutive failure, at most `max`.
pub fn backoff(base: Duration, failures: u32, max: Duration) -> Duration {
    base.saturating_mul(1 << failures.min(16)).min(max)
}

/// Spreads ticks of many instances over ±10 % of the interval.
pub fn jittered(interval: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let spread = interval.as_millis() as u64 / 5;
    if spread == 0 {
        return interval;
    }
    let offset = u64::from(nanos) % spread;
    interval - Duration::from_millis(spread / 2) + Duration::from_millis(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_capped() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "99999999".parse().unwrap());
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(RETRY_AFTER, "30".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(30)));
        h.insert(RETRY_AFTER, "18446744073709551616".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = |n| backoff(Duration::from_secs(5), n, Duration::from_secs(300));
        assert_eq!([b(0), b(1), b(2)], [5, 10, 20].map(Duration::from_secs));
        assert_eq!(b(10), Duration::from_secs(300));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(60));
            assert!(d >= Duration::from_secs(54) && d <= Duration::from_secs(66), "{d:?}");
        }
    }
}
