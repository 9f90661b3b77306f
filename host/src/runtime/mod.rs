//! The mapper runtime: the only module that names wasmtime.
//!
//! Everything else calls [`Runtime::map_blocking`] with a source name and a
//! delivery. Inside: the runtime's own engine with the pooling allocator and
//! an epoch ticker that stops with it (`engine`), what an instance can reach
//! and hold (`sandbox`), how many calls run at once (`capacity`), the WIT
//! bindings (`bindings`), the caps on a mapper's answers (`caps`), bounded
//! calls into one loaded mapper (`instance`), the registry of serving mappers
//! with validation, trust checks and fallback (`registry`), and the directory
//! watcher (`watch`).

mod bindings;
mod capacity;
mod caps;
mod engine;
mod instance;
mod registry;
mod sandbox;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use audit_guest_sdk::fixtures::Fixture;

use crate::event::{Delivery, FileLines, Mapped, MapperInfo, MappingError, PageRequest, QueryParam};
use serde::{Deserialize, Serialize};

pub use capacity::{Busy, Capacity};
pub use registry::Trust;
pub use watch::WatchHandle;

/// Whether each call gets a fresh instance or reuses a warm one.
///
/// Measured (BENCHMARKS.md): a fresh instance costs about 30 µs per call, a
/// reused one about 1.4 µs. A reused instance could carry data from one call
/// into a later call's output if the mapper kept it in static memory; a
/// fresh one cannot. So the default, `auto`, reuses instances of the built-in
/// mappers (part of this binary, and keeping no state) and gives drop-in
/// mappers a fresh instance per call. `reuse` and `fresh` apply to all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InstanceMode {
    /// Built-in mappers reuse warm instances; drop-in mappers get fresh ones.
    #[default]
    Auto,
    /// A new instance per call (from the pooling allocator): nothing a call
    /// leaves in guest memory is ever seen by another call.
    Fresh,
    /// Warm instances are reused; one is discarded after a trap, a timeout or
    /// running out of memory, and after 10,000 calls.
    Reuse,
}

impl InstanceMode {
    /// The mode for one mapper: `auto` resolves by where the mapper came from.
    pub(crate) fn for_mapper(self, builtin: bool) -> InstanceMode {
        match (self, builtin) {
            (InstanceMode::Auto, true) => InstanceMode::Reuse,
            (InstanceMode::Auto, false) => InstanceMode::Fresh,
            (mode, _) => mode,
        }
    }
}

/// Bounds on every call into a mapper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock deadline of one call: real time while guest code runs
    /// (counted by the epoch ticker), not CPU time. No host import can wait,
    /// so nothing a mapper calls outlasts it.
    pub deadline: Duration,
    /// The most linear memory a mapper instance may grow to.
    pub memory_bytes: usize,
    /// Bytes one call may hand back to the host: every string and list
    /// lifted out of the guest, a string counted each time it is lifted.
    pub output_bytes: usize,
    /// Events one call may return (all lines of a `map-lines` call together).
    pub events_per_call: usize,
    /// Bytes of any one event field except `original`.
    pub field_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_millis(500),
            memory_bytes: 64 << 20,
            output_bytes: 32 << 20,
            events_per_call: 50_000,
            field_bytes: 16 << 10,
        }
    }
}

/// How the runtime is set up.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// The directory of drop-in `.wasm` mappers, if any.
    pub dir: Option<PathBuf>,
    /// Per-call limits.
    pub limits: Limits,
    /// Fresh or reused instances.
    pub mode: InstanceMode,
    /// Calls at once and the queue in front of them.
    pub capacity: Capacity,
    /// Which drop-in files may be loaded.
    pub trust: Trust,
}

/// The mapper that produced a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MapperId {
    /// Mapper name.
    pub name: String,
    /// Mapper version.
    pub version: String,
}

impl std::fmt::Display for MapperId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// Why a call did not return normally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallFailure {
    /// The mapper ran past its wall-clock deadline.
    #[error("timed out: {0}")]
    TimedOut(String),
    /// The mapper hit its memory limit.
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// The mapper trapped (panic, unreachable, exit, ...).
    #[error("trapped: {0}")]
    Trapped(String),
    /// The mapper asked for what a mapper may not have: to sleep or wait,
    /// or more host resources than an instance may hold.
    #[error("refused: {0}")]
    Forbidden(String),
    /// The mapper's answer broke a cap (events, field or output bytes,
    /// `describe`'s name and lists) or could not be read.
    #[error("answer refused: {0}")]
    BadAnswer(String),
}

/// Why a delivery could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// No mapper serves this source.
    #[error("no mapper serves source `{0}`")]
    NoMapper(String),
    /// The mapper returned a mapping error on purpose.
    #[error("{mapper} rejected the payload: {error}")]
    Rejected {
        /// Which mapper.
        mapper: MapperId,
        /// What it said.
        error: MappingError,
    },
    /// The call trapped, timed out, ran out of memory or broke a cap.
    #[error("{mapper} failed: {failure}")]
    Failed {
        /// Which mapper.
        mapper: MapperId,
        /// What happened.
        failure: CallFailure,
    },
    /// No mapper instance was free: nothing ran. Transient: the delivery
    /// is to be tried again (a webhook answers 503 with `Retry-After`),
    /// never dead-lettered.
    #[error("{mapper} is busy: {busy}")]
    Busy {
        /// Which mapper.
        mapper: MapperId,
        /// Which bound was reached.
        busy: Busy,
    },
}

impl MapError {
    /// The mapper that answered, if one did.
    pub fn mapper(&self) -> Option<&MapperId> {
        match self {
            MapError::NoMapper(_) => None,
            MapError::Rejected { mapper, .. } | MapError::Failed { mapper, .. } | MapError::Busy { mapper, .. } => {
                Some(mapper)
            }
        }
    }

    /// Whether trying again later may succeed with the same mapper (busy).
    pub fn is_transient(&self) -> bool {
        matches!(self, MapError::Busy { .. })
    }

    fn from_call(mapper: MapperId, error: instance::CallError) -> MapError {
        match error {
            instance::CallError::Busy(busy) => MapError::Busy { mapper, busy },
            instance::CallError::Failed(failure) => MapError::Failed { mapper, failure },
        }
    }
}

/// A successful mapping and the mapper version that produced it.
#[derive(Debug, Clone)]
pub struct MapOutput {
    /// What the mapper returned.
    pub mapped: Mapped,
    /// Who returned it.
    pub mapper: MapperId,
}

/// A serving mapper, as shown by status endpoints and logs.
#[derive(Debug, Clone, Serialize)]
pub struct MapperStatus {
    /// Name (= source).
    pub name: String,
    /// Version.
    pub version: String,
    /// The file it was loaded from, or none for the built-in.
    pub file: Option<PathBuf>,
    /// How many event types it maps deliberately.
    pub event_types: usize,
    /// The `audit:mapper` version it was built against (`0.3.0`, `0.2.0`).
    pub contract: &'static str,
}

/// The mapper runtime. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    registry: Arc<registry::Registry>,
}

/// The largest delivery [`Runtime::maps_inline`] allows: a few Stalwart
/// events, mapped by the built-in mapper in tens of microseconds, less than
/// the hand-over to the blocking pool and back costs.
pub const INLINE_MAX_BYTES: usize = 4096;

impl Runtime {
    /// Loads the built-in mappers (component bytes) and the directory's files.
    pub fn new(builtins: &[&[u8]], config: RuntimeConfig) -> anyhow::Result<Runtime> {
        anyhow::ensure!(
            config.limits.memory_bytes <= engine::MAX_MEMORY_CEILING,
            "mapper memory limit {} exceeds the ceiling of {} bytes",
            config.limits.memory_bytes,
            engine::MAX_MEMORY_CEILING
        );
        anyhow::ensure!(
            config.capacity.calls >= 1,
            "at least one mapper call must be allowed at once"
        );
        let mappers = builtins.len() + registry::MAX_DROP_INS;
        let pool = engine::PoolSize::for_calls(
            config.capacity.calls,
            mappers,
            instance::WARM_INSTANCES,
            config.limits.memory_bytes,
        );
        let engine = Arc::new(engine::MapperEngine::new(pool)?);
        let registry = registry::Registry::new(engine, builtins, config)?;
        Ok(Runtime {
            registry: Arc::new(registry),
        })
    }

    /// Whether a delivery of `bytes` for `source` is cheap and safe enough to
    /// map on an async worker instead of the blocking pool: the built-in
    /// mapper serves it (trusted code, microseconds per event) and it is at
    /// most [`INLINE_MAX_BYTES`]. A drop-in mapper always gets the blocking
    /// pool, so a hostile one never holds an async worker.
    pub fn maps_inline(&self, source: &str, bytes: usize) -> bool {
        bytes <= INLINE_MAX_BYTES && self.registry.serves_builtin(source)
    }

    /// Maps a delivery with the mapper serving `source`, on the calling
    /// thread (which the call may hold for up to its deadline).
    pub fn map_blocking(&self, source: &str, delivery: &Delivery) -> Result<MapOutput, MapError> {
        let active = self
            .registry
            .get(source)
            .ok_or_else(|| MapError::NoMapper(source.to_string()))?;
        let mapper = active.id();
        match active.map(delivery) {
            Ok(answer) => output(mapper, answer),
            Err(e) => Err(MapError::from_call(mapper, e)),
        }
    }

    /// Maps several lines of a file in one call with the mapper serving
    /// `source`: one result per line, in order. `None` when that mapper
    /// takes one line per call (a 0.2.0 component): map each line alone.
    /// An answer with another count than lines is a failure of the call.
    pub fn map_lines_blocking(
        &self,
        source: &str,
        lines: &FileLines,
    ) -> Option<Result<Vec<Result<MapOutput, MapError>>, MapError>> {
        let Some(active) = self.registry.get(source) else {
            return Some(Err(MapError::NoMapper(source.to_string())));
        };
        let mapper = active.id();
        let answers = match active.map_lines(lines)? {
            Ok(answers) => answers,
            Err(e) => return Some(Err(MapError::from_call(mapper, e))),
        };
        if answers.len() != lines.lines.len() {
            let failure = CallFailure::Trapped(format!(
                "map-lines answered {} results for {} lines",
                answers.len(),
                lines.lines.len()
            ));
            return Some(Err(MapError::Failed { mapper, failure }));
        }
        Some(Ok(answers.into_iter().map(|a| output(mapper.clone(), a)).collect()))
    }

    /// Whether the mapper serving `source` takes several file lines per call.
    pub fn maps_lines(&self, source: &str) -> bool {
        self.registry.get(source).is_some_and(|m| m.maps_lines())
    }

    /// The query that fetches one page of a poll source's list, asked of the
    /// mapper on the blocking pool (a guest call never runs on an async worker).
    pub async fn page_query(&self, source: &str, request: PageRequest) -> Result<Vec<QueryParam>, MapError> {
        let active = self
            .registry
            .get(source)
            .ok_or_else(|| MapError::NoMapper(source.to_string()))?;
        let asked = tokio::task::spawn_blocking(move || {
            active
                .page_query(&request)
                .map_err(|e| MapError::from_call(active.id(), e))
        });
        match asked.await {
            Ok(answer) => answer,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// What the mapper serving `source` says about itself.
    pub fn describe(&self, source: &str) -> Option<MapperInfo> {
        self.registry.get(source).map(|m| m.info.clone())
    }

    /// Which mapper version serves `source` now (without its type list).
    pub fn mapper_id(&self, source: &str) -> Option<MapperId> {
        self.registry.get(source).map(|m| m.id())
    }

    /// Every serving mapper.
    pub fn status(&self) -> Vec<MapperStatus> {
        self.registry.status()
    }

    /// Looks at the mapper directory now (the watcher calls this on changes).
    pub fn rescan(&self) -> usize {
        self.registry.rescan()
    }

    /// Reloads and calls, for `/metrics`.
    pub fn figures(&self) -> crate::telemetry::MapperFigures {
        let (calls_running, calls_waiting, calls_busy_total) = self.registry.calls.load();
        crate::telemetry::MapperFigures {
            reloads: self.reload_counts(),
            calls_running,
            calls_waiting,
            calls_busy_total,
        }
    }

    /// `(loaded, rejected)` reload counts since start.
    pub fn reload_counts(&self) -> (u64, u64) {
        let c = &self.registry.counts;
        (c.loaded.load(Ordering::Relaxed), c.rejected.load(Ordering::Relaxed))
    }

    /// Starts watching the mapper directory (needs a tokio runtime). Without a
    /// directory this watches nothing.
    pub fn watch(&self) -> anyhow::Result<WatchHandle> {
        watch::start(self.clone())
    }

    pub(crate) fn dir(&self) -> Option<&Path> {
        self.registry.dir()
    }
}

fn output(mapper: MapperId, answer: instance::MapResult) -> Result<MapOutput, MapError> {
    match answer {
        Ok(mapped) => Ok(MapOutput { mapped, mapper }),
        Err(error) => Err(MapError::Rejected { mapper, error }),
    }
}

/// The result of checking a mapper file against fixture files.
#[derive(Debug)]
pub struct FixtureReport {
    /// What the mapper says about itself.
    pub info: MapperInfo,
    /// Each fixture's name and its differences (empty when it matched).
    pub cases: Vec<(String, Vec<String>)>,
}

/// Loads a mapper file as the service would (the configured limits and
/// instance mode for a drop-in, the same sandbox) and runs fixture inputs
/// through it: the `mapper check` command.
pub fn check_mapper_file(
    wasm: &Path,
    fixture_inputs: &[PathBuf],
    config: &RuntimeConfig,
) -> anyhow::Result<FixtureReport> {
    use anyhow::Context;
    let bytes = std::fs::read(wasm).with_context(|| format!("read {}", wasm.display()))?;
    let calls = Arc::new(capacity::Calls::new(Capacity {
        calls: 1,
        ..config.capacity
    }));
    let pool = engine::PoolSize::for_calls(1, 1, instance::WARM_INSTANCES, config.limits.memory_bytes);
    let engine = engine::MapperEngine::new(pool)?;
    let component = engine.compile(&bytes)?;
    let linker = sandbox::linker(engine.wasmtime())?;
    let mode = config.mode.for_mapper(false);
    let mapper = instance::LoadedMapper::load(&component, &linker, config.limits, mode, calls)?;
    let mut cases = Vec::new();
    for input in fixture_inputs {
        let fixture = Fixture::load(input, &mapper.info.name)?;
        let diffs = mapper.differences(&fixture)?;
        cases.push((fixture.name, diffs));
    }
    Ok(FixtureReport {
        info: mapper.info.clone(),
        cases,
    })
}
