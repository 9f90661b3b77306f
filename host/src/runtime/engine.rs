//! One wasmtime engine per process, its epoch ticker, and a cache of compiled
//! components keyed by content hash (so the same artifact is compiled once,
//! however many times it is loaded).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances; a call's CPU deadline is counted in these ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The largest linear memory any mapper may be granted (the per-call limit is lower).
pub(crate) const MAX_MEMORY_CEILING: usize = 1 << 30;

/// How many compiled artifacts the cache keeps; a loaded mapper holds its own
/// reference, so eviction only costs a recompile of an artifact seen again.
const CACHE_ENTRIES: usize = 32;

struct Shared {
    engine: Engine,
    compiled: Mutex<CompileCache>,
}

#[derive(Default)]
struct CompileCache {
    by_hash: HashMap<[u8; 32], Component>,
    order: Vec<[u8; 32]>,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let engine = build_engine();
        let ticker = engine.clone();
        std::thread::Builder::new()
            .name("mapper-epoch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(EPOCH_TICK);
                    ticker.increment_epoch();
                }
            })
            .expect("spawn the epoch ticker thread");
        Shared {
            engine,
            compiled: Mutex::new(CompileCache::default()),
        }
    })
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

fn build_engine() -> Engine {
    // The pooling allocator makes a fresh instance per call cheap (pre-reserved
    // slots, copy-on-write memory images). If the host refuses the virtual
    // memory reservation, fall back to on-demand allocation.
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(256)
        .total_core_instances(1024)
        .total_memories(256)
        .total_tables(1024)
        .max_memories_per_component(4)
        .max_memory_size(MAX_MEMORY_CEILING);
    let mut config = base_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&config) {
        Ok(engine) => engine,
        Err(e) => {
            tracing::warn!(error = %e, "pooling allocator unavailable; mapper instances use on-demand allocation");
            Engine::new(&base_config()).expect("a default wasmtime engine")
        }
    }
}

/// The process-wide engine.
pub(crate) fn engine() -> &'static Engine {
    &shared().engine
}

/// Compiles (or fetches from the cache) the component in `bytes`.
pub(crate) fn compile(bytes: &[u8]) -> anyhow::Result<Component> {
    let key: [u8; 32] = Sha256::digest(bytes).into();
    let shared = shared();
    if let Some(c) = shared.compiled.lock().expect("compile cache").by_hash.get(&key) {
        return Ok(c.clone());
    }
    let component = Component::new(&shared.engine, bytes)
        .map_err(|e| anyhow::anyhow!("not a valid WebAssembly component: {e:#}"))?;
    let mut cache = shared.compiled.lock().expect("compile cache");
    if cache.by_hash.insert(key, component.clone()).is_none() {
        cache.order.push(key);
    }
    if cache.order.len() > CACHE_ENTRIES {
        let oldest = cache.order.remove(0);
        cache.by_hash.remove(&oldest);
    }
    Ok(component)
}

/// Converts a wall-clock timeout to epoch ticks (at least one).
pub(crate) fn ticks(timeout: Duration) -> u64 {
    (timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
}
