//! The file-tail source: follow a JSON-lines file an application appends to
//! (oCIS's audit log), every line exactly once, across restarts, rotation and
//! truncation. Configured, not coded (`[[tails]]`).
//!
//! - The position (which file, which byte) is saved in the same commit as the
//!   lines before it, so a restart resumes exactly there.
//! - A partial last line waits for its newline.
//! - The file may not exist yet; it is picked up when it appears.
//! - Rotation by rename (logrotate's default): the old file is read to its end
//!   before the new one is opened; if it was rotated while the service was
//!   down, the renamed file is found beside the path (same inode and first
//!   line) and finished first.
//! - `copytruncate` and plain truncation show as a file shorter than what was
//!   read; the copy, if one lies beside it, is finished first, then the new
//!   content is read from the start.
//! - oCIS lines carry no id. Each line's external id is `<file>:<offset>`:
//!   the file's identity (device, inode and a hash of its first line) and the
//!   byte offset of the line. Reading the same line again, after a restart or
//!   from the rotated file, gives the same id, so the store drops the repeat;
//!   two identical lines sit at different offsets and stay two events. (A
//!   hash of the line's content would merge genuinely repeated lines, which
//!   oCIS does write: the same user downloading the same file twice in one
//!   second.)
//!
//! `notify` wakes the tailer as soon as the file changes; a periodic check
//! covers filesystems where notify misses events (network mounts, some
//! container overlays). `file.rs` reads lines and knows file identities;
//! `map.rs` turns lines into records, on every core and several lines per
//! mapper call.

pub(crate) mod file;
mod map;

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::event::Transport;
use crate::ingest::{Pipeline, ResumeError, Shutdown, SourceContext};
use crate::store::{Checkpoint, Commit, DeadLetter, NewRecord, StoreError, WriteSummary};
pub use file::{FileKey, Position};
use file::{Line, Reader};
use map::LineMapper;

/// Where to start in a file seen for the first time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Read the whole file.
    #[default]
    Beginning,
    /// Only lines appended from now on.
    End,
}

/// One tailed file (`[[tails]]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The source name records and the position are stored under.
    pub source: String,
    /// The mapper to use (default: the source name).
    #[serde(default)]
    pub mapper: Option<String>,
    /// Whether the tail runs (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The file (oCIS: its `AUDIT_FILEPATH`).
    pub path: PathBuf,
    /// Where to start in a file never seen before.
    #[serde(default)]
    pub start_at: StartAt,
    /// How often the file is checked when notify reports nothing, milliseconds.
    #[serde(default = "default_check")]
    pub check_interval_ms: u64,
    /// Lines per commit at most.
    #[serde(default = "default_batch")]
    pub max_batch_lines: usize,
    /// Threads that map a batch's lines (default: one per core but one, at
    /// least one; the core left over is the store writer's, see `map.rs`).
    #[serde(default)]
    pub mapping_threads: Option<usize>,
    /// The longest line read whole, bytes (default 1 MiB). A longer line
    /// becomes a dead letter holding its first `max_line_bytes`, logged with
    /// the file and offset, and the tail goes on after it.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: usize,
}

fn yes() -> bool {
    true
}
fn default_check() -> u64 {
    1000
}
fn default_batch() -> usize {
    2000
}
fn default_max_line() -> usize {
    1 << 20
}

/// The bounds of `max_line_bytes`: 1 KiB to 16 MiB.
const MAX_LINE_BYTES: std::ops::RangeInclusive<usize> = 1024..=16 << 20;

impl Config {
    /// A tail of `path` for `source`, every other setting at its default.
    pub fn new(source: &str, path: &Path) -> Config {
        Config {
            source: source.into(),
            mapper: None,
            enabled: true,
            path: path.to_path_buf(),
            start_at: StartAt::Beginning,
            check_interval_ms: default_check(),
            max_batch_lines: default_batch(),
            mapping_threads: None,
            max_line_bytes: default_max_line(),
        }
    }

    /// Checks values; errors name the key.
    pub fn resolve(&self) -> Result<Tailer, ConfigError> {
        let key = format!("tails[{}]", self.source);
        crate::config::check_source_name(&key, &self.source)?;
        if self.path.as_os_str().is_empty() || self.path.file_name().is_none() {
            return Err(ConfigError::new(format!("{key}.path"), "must name a file"));
        }
        if !(10..=60_000).contains(&self.check_interval_ms) {
            return Err(ConfigError::new(
                format!("{key}.check_interval_ms"),
                "expected 10 to 60000",
            ));
        }
        if !(1..=100_000).contains(&self.max_batch_lines) {
            return Err(ConfigError::new(
                format!("{key}.max_batch_lines"),
                "expected 1 to 100000",
            ));
        }
        if self.mapping_threads.is_some_and(|n| !(1..=256).contains(&n)) {
            return Err(ConfigError::new(format!("{key}.mapping_threads"), "expected 1 to 256"));
        }
        if !MAX_LINE_BYTES.contains(&self.max_line_bytes) {
            return Err(ConfigError::new(
                format!("{key}.max_line_bytes"),
                "expected 1024 to 16777216",
            ));
        }
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(Tailer {
            source: self.source.clone(),
            mapper: self.mapper.clone().unwrap_or_else(|| self.source.clone()),
            path: self.path.clone(),
            start_at: self.start_at,
            check_every: Duration::from_millis(self.check_interval_ms),
            max_batch: self.max_batch_lines,
            mapping_threads: self.mapping_threads.unwrap_or(cores.saturating_sub(1).max(1)),
            max_line: self.max_line_bytes,
        })
    }
}

/// A resolved tail, ready to run.
#[derive(Debug, Clone)]
pub struct Tailer {
    /// The source name.
    pub source: String,
    mapper: String,
    /// The file.
    pub path: PathBuf,
    start_at: StartAt,
    check_every: Duration,
    max_batch: usize,
    mapping_threads: usize,
    max_line: usize,
}

/// Runs the tail until shutdown, on a thread of its own (file reads and
/// mapper calls block).
pub async fn run(tailer: Tailer, ctx: SourceContext) {
    let handle = tokio::runtime::Handle::current();
    let source = tailer.source.clone();
    let joined = tokio::task::spawn_blocking(move || Tail::new(tailer, ctx, handle).run()).await;
    if let Err(e) = joined {
        tracing::error!(source = %source, error = %e, "the file tail stopped unexpectedly");
    }
}

/// A batch being written: the write, the position it moves to, and the
/// lines themselves, mapped again if the write fails (the records went to
/// the store; keeping a copy of every batch for a rare retry would cost
/// each line an allocation and a copy).
struct Pending {
    write: tokio::task::JoinHandle<Result<Result<WriteSummary, StoreError>, Stopped>>,
    position: Position,
    lines: Vec<Line>,
    origin: String,
}

struct Tail {
    t: Tailer,
    ctx: SourceContext,
    handle: tokio::runtime::Handle,
    reader: Option<Reader>,
    /// The stored position, once loaded.
    saved: Option<Position>,
    /// A batch being written.
    pending: Option<Pending>,
    /// A failed watch was reported (once).
    watch_warned: bool,
    loaded: bool,
}

impl Tail {
    fn new(t: Tailer, ctx: SourceContext, handle: tokio::runtime::Handle) -> Tail {
        Tail {
            t,
            ctx,
            handle,
            reader: None,
            saved: None,
            pending: None,
            watch_warned: false,
            loaded: false,
        }
    }

    /// Shutdown was asked for, or whoever could ask is gone.
    fn stopping(&self) -> bool {
        self.ctx.shutdown.is_set()
    }

    fn run(mut self) {
        let (tx, rx) = std_mpsc::channel::<()>();
        let mut watcher = self.watch(tx.clone());
        tracing::info!(source = %self.t.source, path = %self.t.path.display(), "tailing");
        self.ctx
            .health
            .expect_progress(&self.t.source, self.t.check_every * 10 + Duration::from_secs(60));
        self.ctx
            .pipeline
            .telemetry()
            .source(&self.t.source)
            .is_tail
            .store(true, std::sync::atomic::Ordering::Relaxed);
        while !self.stopping() {
            // The directory may only appear with oCIS's first event.
            if watcher.is_none() {
                watcher = self.watch(tx.clone());
            }
            match self.step().and_then(|()| self.flush()) {
                Ok(()) => self.report_progress(),
                Err(e) if e.is::<crate::store::CheckpointError>() => {
                    tracing::error!(source = %self.t.source, error = %e, "the tail stops: it cannot tell where to resume");
                    self.ctx.health.stopped(&self.t.source, e.to_string());
                    break;
                }
                Err(e) => {
                    tracing::warn!(source = %self.t.source, path = %self.t.path.display(), error = %e, "tail step failed; retrying");
                    self.reader = None;
                    std::thread::sleep(self.t.check_every);
                }
            }
            // Wait for a change, the periodic check, or shutdown.
            let _ = rx.recv_timeout(self.t.check_every);
            while rx.try_recv().is_ok() {}
        }
        tracing::info!(source = %self.t.source, "tail stopped");
    }

    /// Publishes how far behind the file the committed position is.
    fn report_progress(&self) {
        self.ctx.health.progressed(&self.t.source);
        let m = self.ctx.pipeline.telemetry().source(&self.t.source);
        if let Some(reader) = &self.reader {
            let len = std::fs::metadata(&reader.path).map(|m| m.len()).unwrap_or(0);
            m.tail_behind_bytes.store(
                len.saturating_sub(reader.committed),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }

    /// Watches the file's directory (the file may not exist yet, and
    /// rotation replaces it). None while the directory does not exist.
    fn watch(&mut self, tx: std_mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
        let dir = self
            .t
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        if !dir.is_dir() {
            return None; // checked periodically until it appears
        }
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                let _ = tx.send(());
            }
        })
        .ok()?;
        match watcher.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => Some(watcher),
            Err(e) => {
                if !self.watch_warned {
                    self.watch_warned = true;
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch; checking periodically only");
                }
                None
            }
        }
    }

    /// Reads and commits whatever is available now.
    fn step(&mut self) -> anyhow::Result<()> {
        if !self.loaded {
            self.saved = self.resume()?;
            self.loaded = true;
        }
        if self.reader.is_none() && !self.open()? {
            return Ok(()); // not there yet
        }
        loop {
            if self.stopping() {
                return Ok(());
            }
            let reader = self.reader.as_mut().expect("opened above");
            if reader.truncated()? {
                self.flush()?;
                self.on_truncation()?;
                continue;
            }
            let mut lines = Vec::new();
            reader.read_lines(self.t.max_batch, &mut lines)?;
            if lines.is_empty() {
                break;
            }
            // Map the next batch while this one commits.
            self.commit(lines, true)?;
        }
        self.flush()?;
        // Read to the end; has the path moved on to a new file?
        let reader = self.reader.as_ref().expect("opened above");
        if !reader.still_at(&self.t.path) {
            tracing::info!(source = %self.t.source, path = %self.t.path.display(), "rotation detected: finishing the old file, then following the new one");
            self.drain_and_finish()?;
            self.reader = None;
            if self.open()? {
                return self.step();
            }
        }
        Ok(())
    }

    /// Opens the path, resuming the stored position when it is this file.
    fn open(&mut self) -> anyhow::Result<bool> {
        let path = self.t.path.clone();
        let probe = match Reader::open(&path, 0, self.t.max_line) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A file that appears later is all new: read it from the start.
                self.t.start_at = StartAt::Beginning;
                return Ok(false);
            }
            Err(e) => return Err(anyhow::anyhow!("open {}: {e}", path.display())),
        };
        let offset = match self.saved.clone() {
            Some(saved) if probe.is(&saved.file) => saved.offset,
            Some(saved) if probe.same_inode(&saved.file) => {
                // Same inode, another first line: truncated and rewritten
                // while we were not looking.
                tracing::info!(source = %self.t.source, path = %path.display(), "the file was truncated since the last run: reading it from the start");
                self.finish_elsewhere(&saved, true)?;
                0
            }
            Some(saved) => {
                // The stored file was rotated away while we were not looking.
                self.finish_elsewhere(&saved, false)?;
                0
            }
            None => match self.t.start_at {
                StartAt::Beginning => 0,
                StartAt::End => std::fs::metadata(&path)?.len(),
            },
        };
        let reader = Reader::open(&path, offset, self.t.max_line)?;
        if reader.truncated()? {
            // Shorter than the stored offset: truncated while we were down.
            self.reader = Some(reader);
            self.on_truncation()?;
        } else {
            self.reader = Some(reader);
        }
        Ok(true)
    }

    /// The file shrank: finish its copy if `copytruncate` left one, then read
    /// the new content from the start.
    fn on_truncation(&mut self) -> anyhow::Result<()> {
        let reader = self.reader.take().expect("a reader");
        tracing::info!(source = %self.t.source, path = %self.t.path.display(), "truncation detected (copytruncate or truncation): reading the new content from the start");
        if let Some(key) = reader.key.clone() {
            let saved = Position {
                file: key,
                offset: reader.committed,
            };
            self.finish_elsewhere(&saved, true)?;
        }
        self.reader = Some(Reader::open(&self.t.path, 0, self.t.max_line)?);
        Ok(())
    }

    /// Finishes the stored file found beside the path (renamed, or copied).
    fn finish_elsewhere(&mut self, saved: &Position, copy: bool) -> anyhow::Result<()> {
        match file::find_sibling(&self.t.path, &saved.file, copy, self.t.max_line) {
            Some(old) => {
                tracing::info!(source = %self.t.source, file = %old.display(), offset = saved.offset, "finishing the rotated file");
                let mut reader = Reader::open(&old, saved.offset, self.t.max_line)?;
                // Ids come from the file the lines were first read in.
                reader.key = Some(saved.file.clone());
                let current = self.reader.replace(reader);
                let done = self.drain_and_finish();
                self.reader = current;
                done
            }
            None => {
                if !copy {
                    tracing::warn!(
                        source = %self.t.source, path = %self.t.path.display(), offset = saved.offset,
                        "the file read before was rotated away and is no longer beside the path (compressed or deleted?); \
                         lines written to it after the stored offset cannot be read"
                    );
                }
                Ok(())
            }
        }
    }

    /// Reads the current reader to its end, including an unfinished last line.
    fn drain_and_finish(&mut self) -> anyhow::Result<()> {
        loop {
            let reader = self.reader.as_mut().expect("a reader");
            let mut lines = Vec::new();
            reader.read_lines(self.t.max_batch, &mut lines)?;
            if lines.is_empty() {
                reader.finish(&mut lines);
                if !lines.is_empty() {
                    self.commit(lines, false)?;
                }
                return Ok(());
            }
            self.commit(lines, false)?;
        }
    }

    /// Maps the lines and writes them with the position after the last one,
    /// retrying until the store commits (or shutdown). With `overlap`, the
    /// write runs while the caller maps the next batch; it is awaited before
    /// the next write is queued, so positions commit in order.
    fn commit(&mut self, lines: Vec<Line>, overlap: bool) -> anyhow::Result<()> {
        let reader = self.reader.as_ref().expect("a reader");
        let Some(position) = reader.position_after(lines.last()) else {
            return Ok(()); // no complete first line yet: nothing to commit
        };
        let origin = reader.path.display().to_string();
        let mapped = self.line_mapper(true).map(&lines, &position.file.identity(), &origin);
        self.flush()?;
        let write = write_batch(
            self.ctx.pipeline.clone(),
            mapped.records,
            mapped.letters,
            Checkpoint::new(&self.t.source, &position),
            self.ctx.shutdown.clone(),
        );
        self.pending = Some(Pending {
            write: self.handle.spawn(write),
            position,
            lines,
            origin,
        });
        if !overlap {
            self.flush()?;
        }
        Ok(())
    }

    /// What mapping lines needs; with `keep_letters`, lines no mapper maps
    /// become dead letters (logged and counted), otherwise they are dropped
    /// (a batch mapped again after a failed write: its letters were kept).
    fn line_mapper(&self, keep_letters: bool) -> LineMapper<'_> {
        LineMapper {
            source: &self.t.source,
            mapper: &self.t.mapper,
            pipeline: &self.ctx.pipeline,
            threads: self.t.mapping_threads,
            keep_letters,
        }
    }

    /// Waits for the write in flight, then moves the position to it. A write
    /// the store refused is retried with backoff, its lines mapped again.
    fn flush(&mut self) -> anyhow::Result<()> {
        let Some(Pending {
            write,
            position,
            lines,
            origin,
        }) = self.pending.take()
        else {
            return Ok(());
        };
        let written = match self.handle.block_on(write)?? {
            Ok(written) => written,
            Err(e) => {
                tracing::warn!(source = %self.t.source, error = %e, "store unavailable; the tail waits");
                let checkpoint = Checkpoint::new(&self.t.source, &position);
                self.block_on_retry(|pipeline, source| {
                    let records = self
                        .line_mapper(false)
                        .map(&lines, &position.file.identity(), &origin)
                        .records;
                    let commit = Commit::Checkpoint(checkpoint.clone());
                    async move { pipeline.write(&source, Some(Transport::File), records, commit).await }
                })?
            }
        };
        tracing::debug!(source = %self.t.source, offset = position.offset, inserted = written.inserted, duplicates = written.duplicates, "tail batch committed");
        if let Some(reader) = self.reader.as_mut().filter(|r| r.key.as_ref() == Some(&position.file)) {
            reader.committed = position.offset;
        }
        self.saved = Some(position);
        Ok(())
    }

    /// Where this tail resumes: its stored position (retried while the
    /// store is down; a position it cannot read is fatal).
    fn resume(&self) -> anyhow::Result<Option<Position>> {
        let mut backoff = Backoff::new();
        loop {
            match self
                .handle
                .block_on(self.ctx.pipeline.resume::<Position>(&self.t.source))
            {
                Ok(position) => return Ok(position),
                Err(ResumeError::Checkpoint(e)) => return Err(e.into()),
                Err(ResumeError::Store(e)) => {
                    let wait = backoff.next(&self.t.source, &e, &self.ctx.shutdown)?;
                    std::thread::sleep(wait);
                }
            }
        }
    }

    /// Runs a store call, retrying with backoff while the store is down.
    fn block_on_retry<T, F, Fut>(&self, call: F) -> anyhow::Result<T>
    where
        F: Fn(Pipeline, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut backoff = Backoff::new();
        loop {
            match self
                .handle
                .block_on(call(self.ctx.pipeline.clone(), self.t.source.clone()))
            {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let wait = backoff.next(&self.t.source, &e, &self.ctx.shutdown)?;
                    std::thread::sleep(wait);
                }
            }
        }
    }
}

/// The tail stopped waiting for the store because the service is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("shutting down while the store is unavailable: {0}")]
struct Stopped(StoreError);

/// The tail's one wait while the store is down: 200 ms, doubling up to 10 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Backoff {
        Backoff(Duration::from_millis(200))
    }

    /// How long to wait after `error`, or [`Stopped`] once shutdown is asked for.
    fn next(&mut self, source: &str, error: &StoreError, shutdown: &Shutdown) -> Result<Duration, Stopped> {
        if shutdown.is_set() {
            return Err(Stopped(StoreError::unavailable(error.to_string())));
        }
        let wait = self.0;
        tracing::warn!(source = %source, error = %error, retry_in_ms = wait.as_millis() as u64, "store unavailable; the tail waits");
        self.0 = (self.0 * 2).min(Duration::from_secs(10));
        Ok(wait)
    }
}

/// Writes one batch: its dead letters first (retrying with backoff while the
/// store is unavailable), then its records with the position, once; the
/// caller retries a refused write (see [`Tail::flush`]).
async fn write_batch(
    pipeline: Pipeline,
    records: Vec<NewRecord>,
    letters: Vec<DeadLetter>,
    checkpoint: Checkpoint,
    shutdown: Shutdown,
) -> Result<Result<WriteSummary, StoreError>, Stopped> {
    let mut backoff = Backoff::new();
    for letter in letters {
        while let Err(e) = pipeline.keep(letter.clone()).await {
            tokio::time::sleep(backoff.next(&checkpoint.source, &e, &shutdown)?).await;
        }
    }
    let source = checkpoint.source.clone();
    Ok(pipeline
        .write(&source, Some(Transport::File), records, Commit::Checkpoint(checkpoint))
        .await)
}
