//! The fuzz targets, by name: what `tests/fuzz` runs under libFuzzer and
//! what `tests/tests/fuzz_corpora.rs` replays from the saved corpora
//! (`tests/fuzz/corpus/<name>/`). Each takes arbitrary bytes and panics
//! only when a property a user relies on is broken.

use audit_guest_sdk::json;
use audit_guest_sdk::serde_json::{self, Value};
use audit_guest_sdk::{Delivery, FileLines, Mapper, Transport};
use audit_ingest::fuzzing::{TailReader, TimelineQuery};

/// One fuzz target: its state (a store, a directory) and its entry point.
pub enum Target {
    /// Needs nothing but the bytes.
    Plain(fn(&[u8])),
    /// `/audit` against a real embedded store.
    Timeline(TimelineQuery),
    /// The tail's reader on a real file.
    Tail(TailReader),
}

impl Target {
    /// Runs one input.
    pub fn run(&mut self, data: &[u8]) {
        match self {
            Target::Plain(f) => f(data),
            Target::Timeline(t) => t.run(data),
            Target::Tail(t) => t.run(data),
        }
    }
}

/// Every target's name.
pub const NAMES: [&str; 8] = [
    "signature",
    "forwarded_for",
    "timeline_query",
    "tail_reader",
    "sdk_json",
    "map_stalwart",
    "map_authentik",
    "map_ocis",
];

/// The target called `name`, ready to run.
pub fn target(name: &str) -> Option<Target> {
    Some(match name {
        "signature" => Target::Plain(audit_ingest::fuzzing::signature),
        "forwarded_for" => Target::Plain(audit_ingest::fuzzing::forwarded_for),
        "timeline_query" => Target::Timeline(TimelineQuery::new()),
        "tail_reader" => Target::Tail(TailReader::new()),
        "sdk_json" => Target::Plain(sdk_json),
        "map_stalwart" => Target::Plain(map::<mapper_stalwart::Stalwart>),
        "map_authentik" => Target::Plain(map::<mapper_authentik::Authentik>),
        "map_ocis" => Target::Plain(map::<mapper_ocis::Ocis>),
        _ => return None,
    })
}

/// The guest SDK's JSON helpers on any bytes: no panic, and the events
/// `event_slices` finds are the ones `find_events` finds.
pub fn sdk_json(data: &[u8]) {
    let slices = json::event_slices(data);
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let (Some(slices), Some(found)) = (&slices, json::find_events(&value)) {
        assert_eq!(slices.len(), found.len(), "event_slices and find_events disagree");
        for (raw, parsed) in slices.iter().zip(found) {
            let again: Value = serde_json::from_str(raw.get()).expect("a slice is JSON");
            assert_eq!(&again, parsed);
        }
    }
    let names = ["type", "Type", "event_type", "data", "user", "createdAt"];
    let _ = json::first_text(&value, &names);
    let _ = json::path(&value, &names);
    let _ = json::texts(&value);
    let _ = json::u64_exact(&value);
    for v in json::find_events(&value).unwrap_or_default() {
        let _ = json::text(v);
        for name in names {
            let _ = json::field(v, name);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let snake = json::snake_case(text);
        assert_eq!(json::snake_case(&snake), snake, "snake_case is idempotent on `{text}`");
        let _ = json::same_name(text, &snake);
    }
}

/// A built-in mapper's `map` on any bytes, natively, as each transport:
/// no panic, the same answer twice (ids must not change between retries),
/// and `map-lines` one answer per line.
pub fn map<M: Mapper>(data: &[u8]) {
    for transport in [Transport::Webhook, Transport::Poll, Transport::File] {
        let delivery = Delivery {
            transport,
            ..Delivery::from_body("fuzz", data.to_vec())
        };
        let first = format!("{:?}", M::map(&delivery));
        assert_eq!(first, format!("{:?}", M::map(&delivery)), "mapping is deterministic");
    }
    let lines: Vec<Vec<u8>> = data.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    let file = FileLines {
        source: "fuzz".into(),
        received_at: "2026-01-01T00:00:00Z".into(),
        origin: Some("/var/log/audit.log".into()),
        lines,
    };
    assert_eq!(M::map_lines(&file).len(), file.lines.len(), "one answer per line");
}
