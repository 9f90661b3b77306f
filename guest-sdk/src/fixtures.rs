//! Golden fixtures: `<case>.input.json` (the raw payload) beside
//! `<case>.expected.json` (what the mapper must return), optionally with
//! `<case>.delivery.json` (transport, headers, origin, ... of the delivery).
//!
//! The same files run natively under `cargo test` ([`assert_fixtures`]) and
//! through the real WebAssembly runtime (the host's `mapper check` command and
//! its validation of sidecar fixtures before a hot swap).
//!
//! The expected file holds `{"events": [...]}` (plus `"poll"` for poll
//! mappers) or `{"error": {"kind": "malformed", "message": "..."}}`.
//! Set `AUDIT_BLESS_FIXTURES=1` to (re)write expected files from the current output.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::{Delivery, Mapped, MappingError};

/// One golden case.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The case name (file name without `.input.json`).
    pub name: String,
    /// The delivery built from the input (and the optional delivery file).
    pub delivery: Delivery,
    /// Where the expected output lives.
    pub expected_path: PathBuf,
}

/// Why a fixture could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A JSON file is not valid.
    #[error("{path} is not valid: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, FixtureError> {
    fs::read(path).map_err(|source| FixtureError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl Fixture {
    /// Loads the case whose input is `input` (a `<case>.input.json` file).
    pub fn load(input: &Path, source: &str) -> Result<Fixture, FixtureError> {
        let file = input.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let name = file.strip_suffix(".input.json").unwrap_or(file).to_string();
        let dir = input.parent().unwrap_or(Path::new("."));
        let delivery_path = dir.join(format!("{name}.delivery.json"));
        let mut delivery = if delivery_path.exists() {
            serde_json::from_slice(&read(&delivery_path)?).map_err(|e| FixtureError::Invalid {
                path: delivery_path.clone(),
                message: e.to_string(),
            })?
        } else {
            Delivery::from_body(source, Vec::new())
        };
        if delivery.source.is_empty() {
            delivery.source = source.to_string();
        }
        if delivery.received_at.is_empty() {
            delivery.received_at = "1970-01-01T00:00:00.000Z".to_string();
        }
        delivery.body = read(input)?;
        Ok(Fixture {
            expected_path: dir.join(format!("{name}.expected.json")),
            name,
            delivery,
        })
    }

    /// Every case in a directory, sorted by name.
    pub fn load_dir(dir: &Path, source: &str) -> Result<Vec<Fixture>, FixtureError> {
        let entries = fs::read_dir(dir).map_err(|source| FixtureError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut inputs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(".input.json"))
            .collect();
        inputs.sort();
        inputs.iter().map(|p| Fixture::load(p, source)).collect()
    }

    /// The expected output, parsed.
    pub fn expected(&self) -> Result<Value, FixtureError> {
        let bytes = read(&self.expected_path)?;
        serde_json::from_slice(&bytes).map_err(|e| FixtureError::Invalid {
            path: self.expected_path.clone(),
            message: e.to_string(),
        })
    }

    /// Compares an actual result with the expected file; returns the differences
    /// (empty when it matches). With `AUDIT_BLESS_FIXTURES=1` it writes the
    /// expected file instead and returns no differences.
    pub fn check(&self, actual: &Result<Mapped, MappingError>) -> Result<Vec<String>, FixtureError> {
        let actual = result_json(actual);
        if std::env::var_os("AUDIT_BLESS_FIXTURES").is_some_and(|v| v == "1") {
            let text = serde_json::to_string_pretty(&actual).unwrap_or_default() + "\n";
            fs::write(&self.expected_path, text).map_err(|source| FixtureError::Read {
                path: self.expected_path.clone(),
                source,
            })?;
            return Ok(Vec::new());
        }
        Ok(differences(&self.expected()?, &actual))
    }

    /// Compares an actual result with the expected file, never writing anything.
    pub fn compare(&self, actual: &Result<Mapped, MappingError>) -> Result<Vec<String>, FixtureError> {
        Ok(differences(&self.expected()?, &result_json(actual)))
    }
}

/// A mapping result in the fixture file format.
pub fn result_json(result: &Result<Mapped, MappingError>) -> Value {
    match result {
        Ok(mapped) => serde_json::to_value(mapped).unwrap_or(Value::Null),
        Err(error) => json!({ "error": error }),
    }
}

/// The places where two JSON values differ, as `path: expected X, got Y` lines.
///
/// ```
/// use audit_guest_sdk::fixtures::differences;
/// use serde_json::json;
/// let d = differences(&json!({"a": [1, 2]}), &json!({"a": [1, 3], "b": true}));
/// assert_eq!(d, vec!["$.a[1]: expected 2, got 3", "$.b: unexpected true"]);
/// ```
pub fn differences(expected: &Value, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_into("$", expected, actual, &mut out);
    out
}

fn diff_into(at: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                match a.get(k) {
                    Some(av) => diff_into(&format!("{at}.{k}"), ev, av, out),
                    None => out.push(format!("{at}.{k}: missing, expected {ev}")),
                }
            }
            for (k, av) in a.iter().filter(|(k, _)| !e.contains_key(*k)) {
                out.push(format!("{at}.{k}: unexpected {av}"));
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                diff_into(&format!("{at}[{i}]"), ev, av, out);
            }
            if e.len() != a.len() {
                out.push(format!("{at}: expected {} items, got {}", e.len(), a.len()));
            }
        }
        (e, a) if e != a => out.push(format!("{at}: expected {e}, got {a}")),
        _ => {}
    }
}

/// Runs every fixture in `dir` through `map` and panics with a readable report
/// when any case differs. Use it from a mapper crate's native tests:
///
/// ```no_run
/// # use audit_guest_sdk::{Delivery, Mapped, MappingError};
/// # fn map(_: &Delivery) -> Result<Mapped, MappingError> { Ok(Mapped::default()) }
/// audit_guest_sdk::fixtures::assert_fixtures(
///     concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"), "stalwart", map);
/// ```
pub fn assert_fixtures(dir: &str, source: &str, map: impl Fn(&Delivery) -> Result<Mapped, MappingError>) {
    let fixtures = Fixture::load_dir(Path::new(dir), source).unwrap_or_else(|e| panic!("{e}"));
    assert!(!fixtures.is_empty(), "no *.input.json fixtures in {dir}");
    let mut report = String::new();
    for fixture in &fixtures {
        let diffs = fixture.check(&map(&fixture.delivery)).unwrap_or_else(|e| panic!("{e}"));
        for d in diffs {
            report.push_str(&format!("{}: {d}\n", fixture.name));
        }
    }
    assert!(report.is_empty(), "fixtures differ in {dir}:\n{report}");
}
