//! The runtime's wasmtime engine, its epoch ticker, and a cache of compiled
//! components keyed by content hash (so the same artifact is compiled once,
//! however many times it is loaded). Owned by the runtime: dropping the last
//! handle stops the ticker; two runtimes in one process share nothing.

use std::collections::HashMap;
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::sandbox;

/// How often the epoch advances; a call's CPU deadline is counted in these ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The largest linear memory any mapper may be granted (the per-call limit is lower).
pub(crate) const MAX_MEMORY_CEILING: usize = 1 << 30;

/// How many compiled artifacts the cache keeps; a loaded mapper holds its own
/// reference, so eviction only costs a recompile of an artifact seen again.
const CACHE_ENTRIES: usize = 32;

#[derive(Default)]
struct CompileCache {
    by_hash: HashMap<[u8; 32], Component>,
    order: Vec<[u8; 32]>,
}

/// How many instances the engine's pool holds, and how large each memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSize {
    /// Component instances alive at once (running calls plus warm ones).
    pub(crate) instances: u32,
    /// The per-instance memory limit.
    pub(crate) memory_bytes: usize,
}

impl PoolSize {
    /// Enough for `calls` running calls plus the warm instances of up to
    /// `mappers` mappers (each mapper keeps at most `warm_per_mapper`; while
    /// a new version replaces an old one both may hold theirs), and one
    /// spare for a `mapper check` or a validation started between calls.
    pub(crate) fn for_calls(calls: usize, mappers: usize, warm_per_mapper: usize, memory_bytes: usize) -> PoolSize {
        let instances = calls + 2 * mappers * warm_per_mapper.min(calls) + 1;
        PoolSize {
            instances: u32::try_from(instances).unwrap_or(u32::MAX),
            memory_bytes,
        }
    }
}

/// The runtime's own engine: wasmtime's engine, its epoch ticker (which
/// stops when this is dropped) and the compile cache.
pub(crate) struct MapperEngine {
    engine: Engine,
    compiled: Mutex<CompileCache>,
    /// The ticker thread ends when this sender is dropped with the engine.
    _ticker: mpsc::Sender<()>,
}

impl MapperEngine {
    /// A new engine with its ticker running.
    pub(crate) fn new(pool: PoolSize) -> anyhow::Result<MapperEngine> {
        let engine = build_engine(pool)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let ticker = engine.clone();
        std::thread::Builder::new()
            .name("mapper-epoch".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                    ticker.increment_epoch();
                }
            })
            .map_err(|e| anyhow::anyhow!("spawn the epoch ticker thread: {e}"))?;
        Ok(MapperEngine {
            engine,
            compiled: Mutex::new(CompileCache::default()),
            _ticker: stop,
        })
    }

    /// wasmtime's engine.
    pub(crate) fn wasmtime(&self) -> &Engine {
        &self.engine
    }

    /// Compiles (or fetches from the cache) the component in `bytes`.
    pub(crate) fn compile(&self, bytes: &[u8]) -> anyhow::Result<Component> {
        let key: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(c) = self.cache().by_hash.get(&key) {
            return Ok(c.clone());
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| anyhow::anyhow!("not a valid WebAssembly component: {e:#}"))?;
        let mut cache = self.cache();
        if cache.by_hash.insert(key, component.clone()).is_none() {
            cache.order.push(key);
        }
        if cache.order.len() > CACHE_ENTRIES {
            let oldest = cache.order.remove(0);
            cache.by_hash.remove(&oldest);
        }
        Ok(component)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, CompileCache> {
        self.compiled.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // For profiling: `perf` names the mappers' compiled functions through
    // /tmp/perf-<pid>.map (see BENCHMARKS.md, "Where the time goes").
    if std::env::var_os("AUDIT_WASM_PERFMAP").is_some_and(|v| v == "1") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config
}

fn build_engine(size: PoolSize) -> anyhow::Result<Engine> {
    // The pooling allocator makes a fresh instance per call cheap (pre-reserved
    // slots, copy-on-write memory images). If the host refuses the virtual
    // memory reservation, fall back to on-demand allocation: the store's
    // limiter (`sandbox::new_store`) enforces the same memory, table and
    // instance limits under either allocator, and the capacity of
    // `capacity::Calls` bounds how many instances exist at once.
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(size.instances)
        .total_core_instances(size.instances.saturating_mul(sandbox::MAX_CORE_INSTANCES as u32))
        .total_memories(size.instances)
        .total_tables(size.instances.saturating_mul(sandbox::MAX_TABLES as u32))
        .max_memories_per_component(1)
        .max_tables_per_component(sandbox::MAX_TABLES as u32)
        .max_core_instances_per_component(sandbox::MAX_CORE_INSTANCES as u32)
        .table_elements(sandbox::MAX_TABLE_ELEMENTS)
        .max_memory_size(size.memory_bytes);
    let mut config = base_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&config) {
        Ok(engine) => {
            tracing::debug!(instances = size.instances, "mapper instance pool reserved");
            Ok(engine)
        }
        Err(e) => {
            tracing::warn!(
                error = %e, instances = size.instances,
                "the pooling allocator could not reserve its slots; mapper instances are allocated on demand \
                 (same limits, slower fresh instances)"
            );
            Engine::new(&base_config()).map_err(|e| anyhow::anyhow!("start the WebAssembly engine: {e:#}"))
        }
    }
}

/// Converts a wall-clock timeout to epoch ticks (at least one).
pub(crate) fn ticks(timeout: Duration) -> u64 {
    (timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Threads of this process named like the epoch ticker.
    fn tickers() -> usize {
        std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                    .filter(|name| name.trim() == "mapper-epoch")
                    .count()
            })
            .unwrap_or(0)
    }

    /// Waits up to 5 s for `done`.
    fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn the_epoch_ticker_stops_with_its_engine() {
        let before = tickers();
        let engine = MapperEngine::new(PoolSize::for_calls(4, 1, 1, 1 << 20)).unwrap();
        // The thread names itself once it runs.
        eventually("the ticker runs", || tickers() > before);
        drop(engine);
        eventually("the ticker thread outlived its engine", || tickers() == before);
    }
}
