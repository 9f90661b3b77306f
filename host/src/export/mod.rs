//! Exporting the timeline: every record a query selects, as NDJSON (the
//! record as `GET /audit/{id}` returns it, one per line) or as OCSF 1.1.0
//! events (`ocsf`), optionally gzip-compressed, in the timeline's order
//! (newest first).
//!
//! An export walks the store page by page ([`PAGE`] records at a time) and
//! writes each page before it reads the next, so its memory does not grow
//! with the number of records: the HTTP handler (`GET /audit/export`), the
//! command (`audit-ingest export`) and retention's copy of what it deletes
//! all go through [`Pages`] and [`Encoder`].

pub mod ocsf;

use std::io::Write;

use crate::store::{Query, Record, Store, StoreError};

/// Records read from the store per page.
pub const PAGE: usize = 500;

/// The shape of each exported line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The record as the API returns it, with its original verbatim.
    #[default]
    Ndjson,
    /// An OCSF 1.1.0 event of the record's class.
    Ocsf,
}

impl Format {
    /// The file name suffix.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Ndjson => "ndjson",
            Format::Ocsf => "ocsf.ndjson",
        }
    }
}

/// A record with its original as stored, spliced in byte for byte: what
/// `GET /audit/{id}` answers and each NDJSON line holds (the fields of
/// `/audit`'s records, in the same order, then `metadata`).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Shown<'a> {
    id: &'a str,
    source: &'a str,
    action: &'a str,
    at: String,
    received_at: String,
    actor: ShownActor<'a>,
    ip: Option<&'a str>,
    target: ShownTarget<'a>,
    tenant: Option<&'a str>,
    outcome: &'a str,
    external_id: Option<&'a str>,
    mapper: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    superseded_by: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    supersedes: &'a [String],
    metadata: &'a serde_json::value::RawValue,
}

#[derive(serde::Serialize)]
struct ShownActor<'a> {
    id: Option<&'a str>,
    name: Option<&'a str>,
    email: Option<&'a str>,
}

#[derive(serde::Serialize)]
struct ShownTarget<'a> {
    #[serde(rename = "type")]
    kind: Option<&'a str>,
    id: Option<&'a str>,
    name: Option<&'a str>,
}

impl<'a> Shown<'a> {
    /// `record`, and how it relates to corrections.
    pub fn new(record: &'a Record, lineage: Option<&'a crate::store::Lineage>) -> Shown<'a> {
        let r = &record.record;
        Shown {
            id: &record.id,
            source: &r.source,
            action: &r.action,
            at: r.at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            received_at: r.received_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            actor: ShownActor {
                id: r.actor_id.as_deref(),
                name: r.actor_name.as_deref(),
                email: r.actor_email.as_deref(),
            },
            ip: r.ip.as_deref(),
            target: ShownTarget {
                kind: r.target_type.as_deref(),
                id: r.target_id.as_deref(),
                name: r.target_name.as_deref(),
            },
            tenant: r.tenant_slug.as_deref(),
            outcome: &r.outcome,
            external_id: r.external_id.as_deref(),
            mapper: r.mapper.as_deref(),
            superseded_by: lineage.and_then(|l| l.superseded_by.as_deref()),
            supersedes: lineage.map_or(&[], |l| l.supersedes.as_slice()),
            metadata: r.metadata.raw(),
        }
    }

    /// Appends the JSON text to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        // Serialising into a Vec cannot fail.
        serde_json::to_writer(out, self).unwrap_or_default();
    }
}

/// One record as one NDJSON line (without the newline).
pub fn ndjson_line(record: &Record, out: &mut Vec<u8>) {
    Shown::new(record, None).write(out);
}

/// Turns records into the bytes of an export, in chunks.
pub struct Encoder {
    format: Format,
    gzip: Option<flate2::write::GzEncoder<Vec<u8>>>,
    plain: Vec<u8>,
    line: Vec<u8>,
}

impl Encoder {
    /// An encoder of `format`, gzip-compressed or not.
    pub fn new(format: Format, gzip: bool) -> Encoder {
        Encoder {
            format,
            gzip: gzip.then(|| flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast())),
            plain: Vec::new(),
            line: Vec::new(),
        }
    }

    /// Adds one record.
    pub fn push(&mut self, record: &Record) {
        self.line.clear();
        match self.format {
            Format::Ndjson => ndjson_line(record, &mut self.line),
            Format::Ocsf => ocsf::write_event(record, &mut self.line),
        }
        self.line.push(b'\n');
        match &mut self.gzip {
            // Writing into a Vec cannot fail.
            Some(gz) => gz.write_all(&self.line).unwrap_or_default(),
            None => self.plain.extend_from_slice(&self.line),
        }
    }

    /// The bytes encoded so far (taken: the next call returns what follows).
    pub fn take(&mut self) -> Vec<u8> {
        match &mut self.gzip {
            Some(gz) => std::mem::take(gz.get_mut()),
            None => std::mem::take(&mut self.plain),
        }
    }

    /// The last bytes (the gzip trailer).
    pub fn finish(self) -> Vec<u8> {
        match self.gzip {
            Some(gz) => gz.finish().unwrap_or_default(),
            None => self.plain,
        }
    }
}

/// Every record a query selects, a page at a time: while the caller
/// handles one page, the next is read (on the store's own threads), and
/// no further, so two pages are held at most.
pub struct Pages {
    store: Store,
    query: Query,
    ahead: Option<tokio::task::JoinHandle<Result<crate::store::Page, StoreError>>>,
    done: bool,
}

impl Pages {
    /// The pages of `query` (its `after` and `limit` are the walk's own).
    pub fn new(store: Store, mut query: Query) -> Pages {
        query.limit = PAGE;
        query.after = None;
        Pages {
            store,
            query,
            ahead: None,
            done: false,
        }
    }

    fn read_ahead(&mut self) {
        let (store, query) = (self.store.clone(), self.query.clone());
        self.ahead = Some(tokio::spawn(async move { store.query(&query).await }));
    }

    /// The next page; `None` after the last.
    pub async fn next(&mut self) -> Result<Option<Vec<Record>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        if self.ahead.is_none() {
            self.read_ahead();
        }
        let reading = self.ahead.take().expect("a page is being read");
        let found = reading.await.map_err(crate::store::unavailable)??;
        match found.next {
            Some(next) if !found.records.is_empty() => {
                self.query.after = Some(next);
                self.read_ahead();
            }
            _ => self.done = true,
        }
        Ok((!found.records.is_empty()).then_some(found.records))
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        if let Some(reading) = self.ahead.take() {
            reading.abort();
        }
    }
}

/// Parses `--since`/`since=`-style filters the way `GET /audit` does and
/// refuses what an export does not take (`cursor`, `limit`): an export
/// walks every record the filters select.
pub fn export_query(pairs: &[(String, String)]) -> Result<Query, String> {
    if let Some((name, _)) = pairs.iter().find(|(n, _)| n == "cursor" || n == "limit") {
        return Err(format!(
            "parameter `{name}` is not for an export: it walks every record the filters select"
        ));
    }
    let text = serde_urlencoded::to_string(pairs).map_err(|e| e.to_string())?;
    crate::api::timeline::parse_query(Some(&text)).map_err(|e| match e {
        crate::api::AppError::BadRequest(message) => message,
        other => format!("{other:?}"),
    })
}

/// Writes every record `query` selects to `out` as `format` (gzip when
/// asked), a page at a time; returns how many records were written.
pub async fn to_writer(
    store: &Store,
    query: Query,
    format: Format,
    gzip: bool,
    out: &mut (impl Write + Send),
) -> anyhow::Result<u64> {
    let mut encoder = Encoder::new(format, gzip);
    let mut pages = Pages::new(store.clone(), query);
    let mut total = 0;
    while let Some(records) = pages.next().await? {
        total += records.len() as u64;
        for r in &records {
            encoder.push(r);
        }
        out.write_all(&encoder.take())?;
    }
    out.write_all(&encoder.finish())?;
    out.flush()?;
    Ok(total)
}
