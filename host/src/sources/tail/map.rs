//! Lines to records: each line is one delivery to the mapper, with the line's
//! place in the file as its external id.
//!
//! A batch is split into runs of up to [`LINES_PER_CALL`] consecutive
//! lines, mapped side by side by `mapping_threads` workers (the mapper
//! runtime serves concurrent calls from its warm instances), and the runs'
//! records are joined in file order. By default there is one worker per core
//! but one: the core left over is the store's, whose writer commits the
//! previous batch meanwhile and is the slower of the two per line, so a
//! worker that took its core would only hold it up (on two cores, two
//! workers caught up ~206k lines/s, one ~231k; BENCHMARKS.md).
//!
//! A run goes to the mapper in one delivery (marked with the `audit-lines`
//! header, see `audit_guest_sdk::Delivery::lines`), which saves the call's
//! own cost per line. A mapper must answer such a delivery with exactly one
//! event per line; when it fails or answers otherwise, those lines are mapped
//! one per call instead (so a bad line is kept on its own as a dead letter),
//! and a mapper that only ever manages single lines is remembered and sent
//! single lines from then on.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use audit_guest_sdk::{Delivery, LINES_HEADER, Transport};

use super::file::Line;
use crate::ingest::{Pipeline, Received};
use crate::store::{DeadLetter, NewRecord};

/// Lines per mapper call at most (a failed call re-maps them one by one),
/// and what one worker maps at a time.
const LINES_PER_CALL: usize = 256;

/// What mapping a line needs.
pub(super) struct LineMapper<'a> {
    pub source: &'a str,
    pub mapper: &'a str,
    pub pipeline: &'a Pipeline,
    /// Mappers (`name@version`) that have shown they map one line per call.
    pub single_line: &'a Mutex<HashSet<String>>,
    /// Threads that map a batch side by side.
    pub threads: usize,
    /// Lines no mapper maps become dead letters (logged and counted);
    /// otherwise they are left out (their letters were kept before).
    pub keep_letters: bool,
}

/// What every line of one batch shares: its file and when it was read.
struct Batch<'a> {
    identity: &'a str,
    origin: &'a str,
    received: Received,
}

/// A batch's lines, mapped: records in file order, and the lines no mapper
/// could map.
#[derive(Default)]
pub(super) struct MappedLines {
    pub records: Vec<NewRecord>,
    pub letters: Vec<DeadLetter>,
}

impl MappedLines {
    fn with_capacity(lines: usize) -> MappedLines {
        MappedLines {
            records: Vec::with_capacity(lines),
            letters: Vec::new(),
        }
    }
}

impl Batch<'_> {
    /// The external id of the `n`-th record a line yields, unless the mapper
    /// gave one: the line's place in the file (`.n` after the first).
    fn set_line_id(&self, record: &mut NewRecord, line: &Line, n: usize) {
        if record.external_id.is_none() {
            let id = format!("{}:{}", self.identity, line.offset);
            record.external_id = Some(if n == 0 { id } else { format!("{id}.{n}") });
        }
    }
}

impl LineMapper<'_> {
    /// Maps `lines` of the file `origin` (whose identity is `identity`):
    /// records in file order, and the lines no mapper could map as dead
    /// letters (each logged with the file and offset).
    pub fn map(&self, lines: &[Line], identity: &str, origin: &str) -> MappedLines {
        let batch = Batch {
            identity,
            origin,
            received: Received::now(self.source, None),
        };
        let runs: Vec<&[Line]> = lines.chunks(LINES_PER_CALL).collect();
        let workers = self.threads.min(runs.len()).max(1);
        if workers == 1 {
            return self.map_run(lines, &batch);
        }
        // Runs are taken in turn by whichever worker is free, so a worker
        // that is descheduled does fewer of them instead of holding up the
        // batch.
        let next = AtomicUsize::new(0);
        let work = || {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(run) = runs.get(i) else { return done };
                done.push((i, self.map_run(run, &batch)));
            }
        };
        let mut done = std::thread::scope(|scope| {
            let others: Vec<_> = (1..workers).map(|_| scope.spawn(work)).collect();
            let mut done = work();
            for other in others {
                done.extend(other.join().expect("a mapping thread panicked"));
            }
            done
        });
        done.sort_unstable_by_key(|(i, _)| *i);
        let mut out = MappedLines::with_capacity(lines.len());
        for (_, mapped) in done {
            out.records.extend(mapped.records);
            out.letters.extend(mapped.letters);
        }
        out
    }

    fn map_run(&self, lines: &[Line], batch: &Batch<'_>) -> MappedLines {
        let mut out = MappedLines::with_capacity(lines.len());
        let lines: Vec<&Line> = lines
            .iter()
            .filter(|l| !l.bytes.iter().all(u8::is_ascii_whitespace))
            .collect();
        for call in lines.chunks(LINES_PER_CALL) {
            let several = (call.len() > 1 && !self.maps_single_lines()).then(|| self.map_several(call, batch));
            match several {
                Some(Ok(records)) => out.records.extend(records),
                Some(Err(mapper)) => {
                    if self.map_each(call, batch, &mut out) {
                        // Every line maps alone: this mapper does not read several.
                        tracing::info!(source = %self.source, mapper = %mapper, "the mapper maps one line per call; sending it single lines");
                        self.single_line.lock().expect("single-line mappers").insert(mapper);
                    }
                }
                None => {
                    self.map_each(call, batch, &mut out);
                }
            }
        }
        out
    }

    fn maps_single_lines(&self) -> bool {
        let Some(id) = self.pipeline.runtime().mapper_id(self.mapper) else {
            return true;
        };
        self.single_line
            .lock()
            .expect("single-line mappers")
            .contains(&id.to_string())
    }

    fn delivery(&self, body: Vec<u8>, batch: &Batch<'_>, lines: Option<usize>) -> Delivery {
        let headers = lines
            .map(|n| vec![(LINES_HEADER.to_string(), n.to_string())])
            .unwrap_or_default();
        batch
            .received
            .delivery(Transport::File, headers, Some(batch.origin.to_string()), body)
    }

    /// Several lines in one call: their records, or the mapper (`name@version`)
    /// that did not answer with one event per line.
    fn map_several(&self, lines: &[&Line], batch: &Batch<'_>) -> Result<Vec<NewRecord>, String> {
        let body = lines
            .iter()
            .map(|l| l.bytes.as_slice())
            .collect::<Vec<_>>()
            .join(&b'\n');
        let delivery = self.delivery(body, batch, Some(lines.len()));
        let mapped = match self.pipeline.map_blocking(self.mapper, &batch.received, &delivery) {
            Ok(mapped) => mapped,
            Err(e) => return Err(e.mapper().map(ToString::to_string).unwrap_or_default()),
        };
        if mapped.records.len() != lines.len() {
            return Err(mapped.mapper.to_string());
        }
        let mut records = mapped.records;
        for (record, line) in records.iter_mut().zip(lines) {
            batch.set_line_id(record, line, 0);
        }
        Ok(records)
    }

    /// Each line in a call of its own; whether every one of them mapped.
    fn map_each(&self, lines: &[&Line], batch: &Batch<'_>, out: &mut MappedLines) -> bool {
        let letters_before = out.letters.len();
        for line in lines {
            self.map_one(line, batch, out);
        }
        out.letters.len() == letters_before
    }

    /// One line in one call; its records, or a dead letter.
    fn map_one(&self, line: &Line, batch: &Batch<'_>, out: &mut MappedLines) {
        let delivery = self.delivery(line.bytes.clone(), batch, None);
        match self.pipeline.map_blocking(self.mapper, &batch.received, &delivery) {
            Ok(mapped) => {
                for (n, mut record) in mapped.records.into_iter().enumerate() {
                    batch.set_line_id(&mut record, line, n);
                    out.records.push(record);
                }
            }
            Err(_) if !self.keep_letters => {}
            Err(e) => {
                tracing::warn!(
                    source = %self.source, file = %batch.origin, offset = line.offset, error = %e,
                    "line kept as a dead letter for re-mapping"
                );
                out.letters.push(Pipeline::dead_letter(&batch.received, delivery, &e));
            }
        }
    }
}
