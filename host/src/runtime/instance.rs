//! One loaded mapper: its pre-linked component and the bounded calls into it.
//!
//! Every call runs under a CPU deadline (epoch interruption) and a memory
//! limit (`StoreLimits`), inside a WASI context that grants nothing: no
//! preopened directories, no environment, no network, a clock frozen at the
//! Unix epoch and deterministic randomness. A guest's stderr is captured (up
//! to a few KiB) so a panic message can be reported with the failure.

use std::sync::Mutex;
use std::time::Duration;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{self, Bound, Pre};
use super::engine;
use super::{CallFailure, InstanceMode, Limits};
use crate::event;

/// Bytes of guest stderr kept for error messages.
const STDERR_CAPTURE: usize = 4096;
/// A reused instance is replaced after this many calls, so a slow leak in a
/// guest cannot accumulate forever.
const RECYCLE_AFTER_CALLS: u32 = 10_000;
/// Warm instances kept per mapper in reuse mode.
const WARM_INSTANCES: usize = 8;

/// The per-store state: an empty WASI context and the limits.
pub(crate) struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: GuestLimits,
    stderr: MemoryOutputPipe,
}

/// The store's limits, remembering whether a memory growth was refused, so
/// a failed call is classified from what happened, not from message text.
struct GuestLimits {
    limits: StoreLimits,
    memory_refused: bool,
}

impl ResourceLimiter for GuestLimits {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum);
        if !matches!(allowed, Ok(true)) {
            self.memory_refused = true;
        }
        allowed
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_refused = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

fn new_store(engine: &Engine, limits: &Limits) -> Store<GuestState> {
    let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
    let wasi = WasiCtx::builder()
        .stderr(stderr.clone())
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .secure_random(wasmtime_wasi::Deterministic::new(vec![7; 32]))
        .insecure_random(wasmtime_wasi::Deterministic::new(vec![7; 32]))
        .insecure_random_seed(7)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build();
    let state = GuestState {
        wasi,
        table: ResourceTable::new(),
        limits: GuestLimits {
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .trap_on_grow_failure(true)
                .build(),
            memory_refused: false,
        },
        stderr,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store
}

/// The linker every mapper is instantiated with: WASI only, capability-free.
pub(crate) fn linker(engine: &Engine) -> anyhow::Result<Linker<GuestState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    Ok(linker)
}

/// What a mapper answered for one delivery or line.
pub(crate) type MapResult = Result<event::Mapped, event::MappingError>;

struct Warm {
    store: Store<GuestState>,
    bindings: Bound,
    calls: u32,
}

/// A compiled, linked and described mapper.
pub(crate) struct LoadedMapper {
    pub(crate) info: event::MapperInfo,
    pre: Pre<GuestState>,
    engine: Engine,
    limits: Limits,
    mode: InstanceMode,
    warm: Mutex<Vec<Warm>>,
}

impl LoadedMapper {
    /// Links `component`, instantiates it once and asks it to describe itself.
    pub(crate) fn load(
        component: &Component,
        linker: &Linker<GuestState>,
        limits: Limits,
        mode: InstanceMode,
    ) -> anyhow::Result<LoadedMapper> {
        let instance_pre = linker
            .instantiate_pre(component)
            .map_err(|e| anyhow::anyhow!("does not fit the audit:mapper world: {e:#}"))?;
        let pre = Pre::new(instance_pre)?;
        let mut mapper = LoadedMapper {
            info: event::MapperInfo {
                name: String::new(),
                version: String::new(),
                event_types: Vec::new(),
            },
            pre,
            engine: linker.engine().clone(),
            limits,
            mode,
            warm: Mutex::new(Vec::new()),
        };
        mapper.info = mapper
            .call(|store, m| m.describe(store).map(bindings::info_from_wit))
            .map_err(|f| anyhow::anyhow!("describe failed: {f}"))?;
        if mapper.info.name.trim().is_empty() {
            anyhow::bail!("describe returned an empty mapper name");
        }
        Ok(mapper)
    }

    /// Which mapper this is.
    pub(crate) fn id(&self) -> super::MapperId {
        super::MapperId {
            name: self.info.name.clone(),
            version: self.info.version.clone(),
        }
    }

    /// Maps one delivery.
    pub(crate) fn map(&self, delivery: &event::Delivery) -> Result<MapResult, CallFailure> {
        let input = bindings::delivery_to_wit(delivery);
        self.call(|store, m| m.map_delivery(store, &input).map(bindings::result_from_wit))
    }

    /// Maps several lines of a file in one call: one result per line, or
    /// `None` when the mapper (a 0.2.0 component) cannot take lines.
    pub(crate) fn map_lines(&self, lines: &event::FileLines) -> Option<Result<Vec<MapResult>, CallFailure>> {
        if !self.maps_lines() {
            return None;
        }
        let input = bindings::file_lines_to_wit(lines);
        let answer = self.call(|store, m| match m.map_lines(store, &input) {
            Some(results) => results.map(|r| r.into_iter().map(bindings::result_from_wit).collect()),
            None => Ok(Vec::new()),
        });
        Some(answer)
    }

    /// Whether the mapper takes several file lines per call (0.3.0 and later).
    pub(crate) fn maps_lines(&self) -> bool {
        matches!(self.pre, Pre::V3(_))
    }

    /// Where its output for a fixture's input differs from the expected
    /// output (a failed call is one difference).
    pub(crate) fn differences(&self, fixture: &audit_guest_sdk::fixtures::Fixture) -> anyhow::Result<Vec<String>> {
        match self.map(&bindings::delivery_from_sdk(&fixture.delivery)) {
            Ok(result) => Ok(fixture.compare(&bindings::result_to_sdk(result))?),
            Err(failure) => Ok(vec![format!("the call failed: {failure}")]),
        }
    }

    /// The contract version the component was built against.
    pub(crate) fn contract(&self) -> &'static str {
        self.pre.version()
    }

    /// The query for one page of a poll source's list.
    pub(crate) fn page_query(&self, request: &event::PageRequest) -> Result<Vec<event::QueryParam>, CallFailure> {
        let input = bindings::page_request_to_wit(request);
        self.call(|store, m| m.page_query(store, input).map(bindings::params_from_wit))
    }

    fn instantiate(&self) -> Result<Warm, CallFailure> {
        let mut store = new_store(&self.engine, &self.limits);
        store.set_epoch_deadline(engine::ticks(self.limits.timeout));
        let bindings = self.pre.instantiate(&mut store).map_err(|e| classify(&store, e))?;
        Ok(Warm {
            store,
            bindings,
            calls: 0,
        })
    }

    fn call<R>(&self, f: impl FnOnce(&mut Store<GuestState>, &Bound) -> wasmtime::Result<R>) -> Result<R, CallFailure> {
        let reused = match self.mode {
            InstanceMode::Reuse => self.warm.lock().expect("warm instances").pop(),
            InstanceMode::Fresh | InstanceMode::Auto => None,
        };
        let mut warm = match reused {
            Some(w) => w,
            None => self.instantiate()?,
        };
        warm.store.set_epoch_deadline(engine::ticks(self.limits.timeout));
        let result = f(&mut warm.store, &warm.bindings);
        match result {
            Ok(value) => {
                warm.calls += 1;
                if self.mode == InstanceMode::Reuse && warm.calls < RECYCLE_AFTER_CALLS {
                    let mut pool = self.warm.lock().expect("warm instances");
                    if pool.len() < WARM_INSTANCES {
                        pool.push(warm);
                    }
                }
                Ok(value)
            }
            // A trapped instance is never reused: its state is unknown.
            Err(e) => Err(classify(&warm.store, e)),
        }
    }
}

/// Turns a wasmtime error into the reason a call failed. The message is the
/// root cause (not the wasm backtrace) plus what the guest wrote to stderr,
/// which is where a Rust guest's panic message goes.
fn classify(store: &Store<GuestState>, error: wasmtime::Error) -> CallFailure {
    let stderr = String::from_utf8_lossy(&store.data().stderr.contents())
        .trim()
        .to_string();
    let cause = error.root_cause().to_string();
    let detail = if stderr.is_empty() {
        cause.clone()
    } else {
        format!("{cause}; guest stderr: {stderr}")
    };
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallFailure::TimedOut(detail),
        Some(Trap::AllocationTooLarge) => CallFailure::OutOfMemory(detail),
        _ if store.data().limits.memory_refused => CallFailure::OutOfMemory(detail),
        _ => CallFailure::Trapped(detail),
    }
}
