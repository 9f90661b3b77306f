//! Lines to records: each line is one event source for the mapper, with the
//! line's place in the file as its external id.
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
//! A run goes to the mapper in one `map-lines` call (WIT 0.3.0), which
//! saves the call's own cost per line and answers one result per line, so a
//! bad line is kept on its own as a dead letter. When the call itself fails
//! (a trap, a timeout, a wrong count), or the mapper is a 0.2.0 component
//! without `map-lines`, the lines are mapped one per call instead.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::file::Line;
use crate::event::Transport;
use crate::ingest::{Mapped, Pipeline, Received};
use crate::runtime::MapError;
use crate::store::{DeadLetter, NewRecord};

/// Lines per mapper call at most (a failed call re-maps them one by one),
/// and what one worker maps at a time.
const LINES_PER_CALL: usize = 256;

/// What mapping a line needs.
pub(super) struct LineMapper<'a> {
    pub source: &'a str,
    pub mapper: &'a str,
    pub pipeline: &'a Pipeline,
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
            // An overlong line is refused even when its start is blank.
            .filter(|l| match l.overlong {
                Some(length) => {
                    self.refuse_overlong(l, length, batch, &mut out);
                    false
                }
                None => true,
            })
            .filter(|l| !l.bytes.iter().all(u8::is_ascii_whitespace))
            .collect();
        for call in lines.chunks(LINES_PER_CALL) {
            if call.len() > 1
                && let Some(results) = self.map_together(call, batch)
            {
                for (line, result) in call.iter().zip(results) {
                    self.keep(line, result, batch, &mut out);
                }
                continue;
            }
            for line in call {
                let delivery = self.delivery(line, batch);
                let result = self.map_when_free(&delivery, batch);
                self.keep(line, result, batch, &mut out);
            }
        }
        out
    }

    /// One line's call, waiting while no mapper instance is free (a tail is
    /// a background reader: it waits its turn instead of losing the line;
    /// every call ends within its deadline, so a turn comes).
    fn map_when_free(&self, delivery: &crate::event::Delivery, batch: &Batch<'_>) -> Result<Mapped, MapError> {
        loop {
            match self.pipeline.map_blocking(self.mapper, &batch.received, delivery) {
                Err(e) if e.is_transient() => {
                    tracing::debug!(source = %self.source, error = %e, "mapper busy; the tail waits for a free instance");
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                answer => return answer,
            }
        }
    }

    /// Several lines in one `map-lines` call: one result per line, or `None`
    /// when they must go one per call (no `map-lines`, or the call failed).
    fn map_together(&self, lines: &[&Line], batch: &Batch<'_>) -> Option<Vec<Result<Mapped, MapError>>> {
        let file_lines = batch
            .received
            .file_lines(batch.origin, lines.iter().map(|l| l.bytes.clone()).collect());
        match self
            .pipeline
            .map_lines_blocking(self.mapper, &batch.received, &file_lines)?
        {
            Ok(results) => Some(results),
            Err(e) => {
                tracing::debug!(source = %self.source, error = %e, "map-lines failed; mapping those lines one per call");
                None
            }
        }
    }

    /// A line as the delivery a mapper gets for it alone.
    fn delivery(&self, line: &Line, batch: &Batch<'_>) -> crate::event::Delivery {
        batch.received.delivery(
            Transport::File,
            Vec::new(),
            Some(batch.origin.to_string()),
            line.bytes.clone(),
        )
    }

    /// A line longer than `max_line_bytes` is not mapped: its start is kept
    /// as a dead letter, logged with the file and offset.
    fn refuse_overlong(&self, line: &Line, length: u64, batch: &Batch<'_>, out: &mut MappedLines) {
        if !self.keep_letters {
            return;
        }
        let (offset, kept) = (line.offset, line.bytes.len());
        let why = format!(
            "line of {length} bytes at offset {offset} is longer than max_line_bytes ({kept}): its first {kept} bytes are kept, the rest was skipped"
        );
        tracing::warn!(source = %self.source, file = %batch.origin, offset = line.offset, length, "{why}");
        out.letters.push(Pipeline::refused_letter(
            &batch.received,
            self.delivery(line, batch),
            why,
        ));
    }

    /// A line's records (with their line ids), or its dead letter.
    fn keep(&self, line: &Line, result: Result<Mapped, MapError>, batch: &Batch<'_>, out: &mut MappedLines) {
        match result {
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
                out.letters
                    .push(Pipeline::dead_letter(&batch.received, self.delivery(line, batch), &e));
            }
        }
    }
}
