//! Lines to records: each line is one delivery to the mapper, with the line's
//! place in the file as its external id.
//!
//! A batch is split into runs of consecutive lines mapped side by side, one
//! per core (the mapper runtime serves concurrent calls from its warm
//! instances), and the runs' records are joined in file order. Mapping is the
//! tail's own cost per line (the store's is on its writer thread), so a
//! backlog catches up about as many times faster as there are idle cores.
//!
//! Within a run, up to [`LINES_PER_CALL`] lines go to the mapper in one
//! delivery (marked with the `audit-lines` header, see
//! `audit_guest_sdk::Delivery::lines`), which saves the call's own cost per
//! line. A mapper must answer such a delivery with exactly one event per
//! line; when it fails or answers otherwise, those lines are mapped one per
//! call instead (so a bad line is kept on its own as a dead letter), and a
//! mapper that only ever manages single lines is remembered and sent single
//! lines from then on.

use std::collections::HashSet;
use std::sync::Mutex;

use audit_guest_sdk::{Delivery, LINES_HEADER, Transport};
use chrono::Utc;

use super::file::Line;
use crate::ingest::{self, Received, Tenants};
use crate::runtime::Runtime;
use crate::store::{DeadLetter, NewRecord};

/// Fewer lines than this are mapped on the calling thread alone.
const LINES_PER_RUN: usize = 128;
/// Lines per mapper call at most (a failed call re-maps them one by one).
const LINES_PER_CALL: usize = 256;

/// What mapping a line needs.
pub(super) struct LineMapper<'a> {
    pub source: &'a str,
    pub mapper: &'a str,
    pub runtime: &'a Runtime,
    pub tenants: &'a Tenants,
    /// Mappers (`name@version`) that have shown they map one line per call.
    pub single_line: &'a Mutex<HashSet<String>>,
}

impl LineMapper<'_> {
    /// Maps `lines` of the file `origin` (whose identity is `identity`):
    /// records in file order, and the lines no mapper could map as dead
    /// letters (each logged with the file and offset).
    pub fn map(&self, lines: &[Line], identity: &str, origin: &str) -> (Vec<NewRecord>, Vec<DeadLetter>) {
        let received = Received {
            source: self.source.to_string(),
            at: Utc::now(),
            sender: None,
        };
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let runs = cores.min(lines.len().div_ceil(LINES_PER_RUN)).max(1);
        if runs == 1 {
            return self.map_run(lines, identity, origin, &received);
        }
        let per_run = lines.len().div_ceil(runs);
        let mut chunks = lines.chunks(per_run);
        let first = chunks.next().unwrap_or_default();
        std::thread::scope(|scope| {
            let others: Vec<_> = chunks
                .map(|run| scope.spawn(|| self.map_run(run, identity, origin, &received)))
                .collect();
            let (mut records, mut letters) = self.map_run(first, identity, origin, &received);
            for other in others {
                let (r, l) = other.join().expect("a mapping thread panicked");
                records.extend(r);
                letters.extend(l);
            }
            (records, letters)
        })
    }

    fn map_run(&self, lines: &[Line], identity: &str, origin: &str, received: &Received) -> (Vec<NewRecord>, Vec<DeadLetter>) {
        let mut out = (Vec::with_capacity(lines.len()), Vec::new());
        let lines: Vec<&Line> = lines.iter().filter(|l| !l.bytes.iter().all(u8::is_ascii_whitespace)).collect();
        for call in lines.chunks(LINES_PER_CALL) {
            if call.len() > 1 && !self.maps_single_lines() {
                match self.map_several(call, identity, origin, received) {
                    Ok(records) => {
                        out.0.extend(records);
                        continue;
                    }
                    Err(mapper) => {
                        let letters_before = out.1.len();
                        for line in call {
                            self.map_one(line, identity, origin, received, &mut out);
                        }
                        if out.1.len() == letters_before {
                            // Every line maps alone: this mapper does not read several.
                            tracing::info!(source = %self.source, mapper = %mapper, "the mapper maps one line per call; sending it single lines");
                            self.single_line.lock().expect("single-line mappers").insert(mapper);
                        }
                        continue;
                    }
                }
            }
            for line in call {
                self.map_one(line, identity, origin, received, &mut out);
            }
        }
        out
    }

    fn maps_single_lines(&self) -> bool {
        let Some(info) = self.runtime.describe(self.mapper) else { return true };
        let id = format!("{}@{}", info.name, info.version);
        self.single_line.lock().expect("single-line mappers").contains(&id)
    }

    fn delivery(&self, body: Vec<u8>, origin: &str, received: &Received, lines: Option<usize>) -> Delivery {
        Delivery {
            source: self.source.to_string(),
            transport: Transport::File,
            received_at: received.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            headers: lines.map(|n| vec![(LINES_HEADER.to_string(), n.to_string())]).unwrap_or_default(),
            origin: Some(origin.to_string()),
            body,
        }
    }

    /// Several lines in one call: their records, or the mapper (`name@version`)
    /// that did not answer with one event per line.
    fn map_several(&self, lines: &[&Line], identity: &str, origin: &str, received: &Received) -> Result<Vec<NewRecord>, String> {
        let mut body = Vec::with_capacity(lines.iter().map(|l| l.bytes.len() + 1).sum());
        for (i, line) in lines.iter().enumerate() {
            if i > 0 {
                body.push(b'\n');
            }
            body.extend_from_slice(&line.bytes);
        }
        let delivery = self.delivery(body, origin, received, Some(lines.len()));
        let output = match self.runtime.map_blocking(self.mapper, &delivery) {
            Ok(output) => output,
            Err(e) => return Err(e.mapper().map(ToString::to_string).unwrap_or_default()),
        };
        if output.mapped.events.len() != lines.len() {
            return Err(output.mapper.to_string());
        }
        let records = ingest::records(received, &output, self.tenants);
        Ok(records
            .into_iter()
            .zip(lines)
            .map(|(mut record, line)| {
                if record.external_id.is_none() {
                    record.external_id = Some(format!("{identity}:{}", line.offset));
                }
                record
            })
            .collect())
    }

    /// One line in one call; its records, or a dead letter.
    fn map_one(&self, line: &Line, identity: &str, origin: &str, received: &Received, out: &mut (Vec<NewRecord>, Vec<DeadLetter>)) {
        let delivery = self.delivery(line.bytes.clone(), origin, received, None);
        match self.runtime.map_blocking(self.mapper, &delivery) {
            Ok(output) => {
                let id = format!("{identity}:{}", line.offset);
                for (n, mut record) in ingest::records(received, &output, self.tenants).into_iter().enumerate() {
                    // A mapper that finds its own id keeps it; otherwise the
                    // line's place in the file is its id.
                    if record.external_id.is_none() {
                        record.external_id = Some(if n == 0 { id.clone() } else { format!("{id}.{n}") });
                    }
                    out.0.push(record);
                }
            }
            Err(e) => {
                tracing::warn!(
                    source = %self.source, file = %origin, offset = line.offset, error = %e,
                    "line kept as a dead letter for re-mapping"
                );
                out.1.push(ingest::dead_letter(received, line.bytes.clone(), &e));
                crate::metrics::source(self.source).dead_lettered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}
