//! Entry points for the fuzz targets (`tests/fuzz`) and the regression tests
//! that replay their saved corpora: each takes arbitrary bytes, runs one
//! input parser of the host on them, and panics only when a property a user
//! relies on is broken. Built with the `test-support` feature only.

use std::io::Write;
use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::Secret;
use crate::sources::tail::file::{Line, Reader};
use crate::sources::webhook::Cidr;
use crate::sources::webhook::signature::{self, Encoding, Verifier};
use crate::store::{PageCursor, Store, StoreError};

/// Splits `data` at the first `sep`: (before, after).
fn split(data: &[u8], sep: u8) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == sep) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// Headers from `name: value` lines; lines that are no header are skipped.
fn headers(text: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in text.split(|b| *b == b'\n') {
        let (name, value) = split(line, b':');
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(value.trim_ascii()),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// Every verifier the webhook accepts, with fixed keys.
fn verifiers() -> Vec<Verifier> {
    let hmac = |header: &str, encoding, prefix: &str| Verifier::Hmac {
        header: header.into(),
        encoding,
        prefix: prefix.into(),
        key: Secret::new("fuzzing-secret-0123456789"),
    };
    vec![
        hmac("x-signature", Encoding::Base64, ""),
        hmac("x-hub-signature-256", Encoding::Hex, "sha256="),
        Verifier::StandardWebhooks {
            key: b"fuzzing-secret-0123456789".to_vec(),
            tolerance: std::time::Duration::from_secs(300),
        },
        Verifier::Bearer(Secret::new("fuzzing-token-0123456789")),
        Verifier::Basic {
            credentials: Secret::new("user:fuzzing-password"),
        },
    ]
}

/// Signature headers and verification, every scheme: `now` (8 bytes), then
/// header lines, a NUL, the body. Never panics; a request that verifies
/// passed its precheck; the body signed as each sender signs it verifies.
pub fn signature(data: &[u8]) {
    let Some((now, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let now = i64::from_le_bytes(*now);
    let (head, body) = split(rest, 0);
    let headers = headers(head);
    for verifier in verifiers() {
        let pre = verifier.precheck(&headers, now);
        let full = verifier.verify(&headers, body, now);
        if full.is_ok() {
            assert!(pre.is_ok(), "{verifier:?}: verified but failed its precheck: {pre:?}");
        }
    }
    let key = "fuzzing-secret-0123456789";
    let signed = [
        ("x-signature", signature::stalwart_signature(key, body)),
        (
            "x-hub-signature-256",
            format!("sha256={}", signature::hex_signature(key, body)),
        ),
    ];
    for ((name, value), verifier) in signed.into_iter().zip(verifiers()) {
        let mut sent = HeaderMap::new();
        sent.insert(
            name,
            HeaderValue::from_str(&value).expect("a signature is a header value"),
        );
        assert_eq!(verifier.verify(&sent, body, now), Ok(()), "{name}");
        assert_eq!(verifier.precheck(&sent, now), Ok(()), "{name}");
    }
    let ts = now.clamp(0, i64::MAX / 2);
    let mut sent = HeaderMap::new();
    sent.insert("webhook-id", HeaderValue::from_static("msg_fuzz"));
    sent.insert("webhook-timestamp", HeaderValue::from(ts));
    let sig = signature::standard_webhooks_signature(b"fuzzing-secret-0123456789", "msg_fuzz", ts, body);
    sent.insert(
        "webhook-signature",
        HeaderValue::from_str(&sig).expect("a header value"),
    );
    assert_eq!(verifiers()[2].verify(&sent, body, ts), Ok(()));
}

/// `X-Forwarded-For` with a trusted peer: the answer is none, the peer, or
/// an address that one of the hops names; never a panic.
pub fn forwarded_for(data: &[u8]) {
    let trusted = [
        Cidr::parse("10.0.0.0/8").expect("a range"),
        Cidr::parse("fd00::/8").expect("a range"),
    ];
    let peer: IpAddr = "10.1.2.3".parse().expect("an address");
    let mut map = HeaderMap::new();
    for value in data.split(|b| *b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            map.append("x-forwarded-for", value);
        }
    }
    let Some(sender) = crate::sources::webhook::sender(Some(peer), &map, &trusted) else {
        return;
    };
    let written: String = map
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let shown = sender.to_string();
    let named = sender == peer || written.contains(&shown) || {
        // `::ffff:1.2.3.4` written, or an address in another spelling
        written.split(',').any(|hop| {
            let hop = hop.trim().trim_start_matches('[');
            let hop = hop.split(']').next().unwrap_or(hop);
            hop.parse::<IpAddr>().ok() == Some(sender)
                || hop.rsplit_once(':').and_then(|(a, _)| a.parse::<IpAddr>().ok()) == Some(sender)
        })
    };
    assert!(named, "sender {sender} is neither the peer nor in `{written}`");
}

/// `/audit` query strings and cursors against a real store: every answer
/// is a page or a 400-kind error, never "store unavailable".
pub struct TimelineQuery {
    runtime: tokio::runtime::Runtime,
    store: Store,
    _dir: tempfile::TempDir,
}

impl Default for TimelineQuery {
    fn default() -> Self {
        Self::new()
    }
}

impl TimelineQuery {
    /// An embedded store in a temporary directory, with no records.
    pub fn new() -> TimelineQuery {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = crate::store::sqlite::SqliteStore::open(
            &dir.path().join("audit.sqlite3"),
            crate::store::sqlite::Durability::Normal,
        )
        .expect("the embedded store opens");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        TimelineQuery {
            runtime,
            store: std::sync::Arc::new(store),
            _dir: dir,
        }
    }

    /// Runs one query string (and the same bytes as a cursor).
    pub fn run(&self, data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        if let Some(cursor) = PageCursor::decode(&text) {
            assert_eq!(PageCursor::decode(&cursor.encode()), Some(cursor.clone()));
        }
        let Ok(query) = crate::api::timeline::parse_query(Some(&text)) else {
            return;
        };
        let answer = self.runtime.block_on(self.store.query(&query));
        assert!(
            matches!(answer, Ok(_) | Err(StoreError::InvalidInput(_))),
            "`{text}` → {answer:?}"
        );
    }
}

/// The tail's line reader on random bytes written in random pieces: the
/// first 4 bytes choose `max_line` and the piece sizes. The lines read are
/// the file cut at its newlines (overlong ones cut to their start), in order,
/// each ending where the next starts, and the reader holds little.
pub struct TailReader {
    dir: tempfile::TempDir,
}

impl Default for TailReader {
    fn default() -> Self {
        Self::new()
    }
}

impl TailReader {
    /// A temporary directory for the file.
    pub fn new() -> TailReader {
        TailReader {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// Writes and reads one file.
    pub fn run(&self, data: &[u8]) {
        let Some((knobs, content)) = data.split_first_chunk::<4>() else {
            return;
        };
        let max_line = 1024 + usize::from(knobs[0]) * 4;
        let path = self.dir.path().join("audit.log");
        let mut file = std::fs::File::create(&path).expect("create the file");
        let mut reader = Reader::open(&path, 0, max_line).expect("open the file");
        let mut lines: Vec<Line> = Vec::new();
        let mut at = 0;
        let mut piece = 1 + usize::from(knobs[1]) * 7;
        while at < content.len() {
            let to = (at + piece).min(content.len());
            file.write_all(&content[at..to]).expect("write");
            at = to;
            let batch = 1 + usize::from(knobs[2] % 16);
            reader.read_lines(batch, &mut lines).expect("read");
            piece = 1 + (piece * 31 + usize::from(knobs[3])) % 5000;
        }
        loop {
            let before = lines.len();
            reader.read_lines(usize::MAX, &mut lines).expect("read");
            if lines.len() == before {
                break;
            }
        }
        reader.finish(&mut lines);
        let mut expected_at = 0u64;
        for line in &lines {
            assert_eq!(line.offset, expected_at, "lines follow each other");
            let whole = &content[line.offset as usize..(line.end as usize).min(content.len())];
            let terminated = whole.last() == Some(&b'\n');
            let text = whole.strip_suffix(b"\n").unwrap_or(whole);
            assert!(!text.contains(&b'\n'), "a line holds no newline");
            match line.overlong {
                Some(length) => {
                    assert_eq!(length as usize, text.len());
                    assert!(text.len() > max_line);
                    assert_eq!(line.bytes, text[..max_line]);
                }
                None => {
                    assert!(text.len() <= max_line, "a line over max_line is cut");
                    // `\r\n` ends a line; a last line without its newline is kept as it is.
                    let kept = if terminated {
                        text.strip_suffix(b"\r").unwrap_or(text)
                    } else {
                        text
                    };
                    assert_eq!(line.bytes, kept);
                }
            }
            expected_at = line.end;
        }
        assert_eq!(expected_at as usize, content.len(), "every byte is in a line");
    }
}
