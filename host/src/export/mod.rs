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

/// One record as one NDJSON line (without the newline): the API's record
/// with the stored original spliced in as it is, byte for byte.
pub fn ndjson_line(record: &Record, out: &mut Vec<u8>) {
    let mut text = crate::api::timeline::record_json(record, false).to_string();
    text.pop();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b",\"metadata\":");
    out.extend_from_slice(record.record.metadata.get().as_bytes());
    out.push(b'}');
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

/// Every record a query selects, a page at a time: each page is read
/// only when the one before has been handed out.
pub struct Pages {
    store: Store,
    query: Query,
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
            done: false,
        }
    }

    /// The next page; `None` after the last.
    pub async fn next(&mut self) -> Result<Option<Vec<Record>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let found = self.store.query(&self.query).await?;
        match found.next {
            Some(next) if !found.records.is_empty() => self.query.after = Some(next),
            _ => self.done = true,
        }
        Ok((!found.records.is_empty()).then_some(found.records))
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
