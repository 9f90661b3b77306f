//! Lines to records: each line is one delivery to the mapper, with the line's
//! place in the file as its external id.
//!
//! A batch is split into runs of consecutive lines mapped side by side, one
//! per core (the mapper runtime serves concurrent calls from its warm
//! instances), and the runs' records are joined in file order. Mapping is the
//! tail's own cost per line (the store's is on its writer thread), so a
//! backlog catches up about as many times faster as there are idle cores.

use audit_guest_sdk::{Delivery, Transport};
use chrono::Utc;

use super::file::Line;
use crate::ingest::{self, Received, Tenants};
use crate::runtime::Runtime;
use crate::store::{DeadLetter, NewRecord};

/// Fewer lines than this are mapped on the calling thread alone.
const LINES_PER_RUN: usize = 128;

/// What mapping a line needs.
pub(super) struct LineMapper<'a> {
    pub source: &'a str,
    pub mapper: &'a str,
    pub runtime: &'a Runtime,
    pub tenants: &'a Tenants,
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
        let received_at = received.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut records = Vec::with_capacity(lines.len());
        let mut letters = Vec::new();
        for line in lines.iter().filter(|l| !l.bytes.iter().all(u8::is_ascii_whitespace)) {
            let delivery = Delivery {
                source: self.source.to_string(),
                transport: Transport::File,
                received_at: received_at.clone(),
                headers: Vec::new(),
                origin: Some(origin.to_string()),
                body: line.bytes.clone(),
            };
            match self.runtime.map_blocking(self.mapper, &delivery) {
                Ok(output) => {
                    let id = format!("{identity}:{}", line.offset);
                    for (n, mut record) in ingest::records(received, &output, self.tenants).into_iter().enumerate() {
                        // A mapper that finds its own id keeps it; otherwise the
                        // line's place in the file is its id.
                        if record.external_id.is_none() {
                            record.external_id = Some(if n == 0 { id.clone() } else { format!("{id}.{n}") });
                        }
                        records.push(record);
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        source = %self.source, file = %origin, offset = line.offset, error = %e,
                        "line kept as a dead letter for re-mapping"
                    );
                    letters.push(ingest::dead_letter(received, line.bytes.clone(), &e));
                    crate::metrics::source(self.source).dead_lettered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        (records, letters)
    }
}
