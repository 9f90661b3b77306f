//! One loaded mapper: its pre-linked component and the bounded calls into it.
//!
//! Every call holds a slot of the mapper's own share and one of the
//! runtime's [`Calls`], runs under a wall-clock deadline (epoch
//! interruption) inside the sandbox of `sandbox.rs`, and has its answer
//! checked against the caps of `caps.rs` before anything of it leaves the
//! runtime.
//!
//! One mapper cannot take every slot: it holds at most half of them (at
//! least one), so other sources' calls always find room. A mapper whose last
//! call failed (timed out, trapped, ran out of memory, was refused) runs its
//! next calls at idle priority until one succeeds: a mapper that fails on
//! every delivery then spends only CPU no one else wants, and the deadline,
//! which counts wall-clock time, ends its calls sooner under load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use wasmtime::component::{Component, Linker, ResourceTableError};
use wasmtime::{Engine, PoolConcurrencyLimitError, Store, Trap};

use super::bindings::{self, Bound, Pre};
use super::capacity::{Busy, Calls};
use super::sandbox::{GuestState, MayNotWait, new_store};
use super::{CallFailure, InstanceMode, Limits, caps, engine};
use crate::event;

/// A reused instance is replaced after this many calls, so a slow leak in a
/// guest cannot accumulate forever.
const RECYCLE_AFTER_CALLS: u32 = 10_000;
/// Warm instances kept per mapper in reuse mode (fewer when fewer calls may
/// run at once); `engine::PoolSize` counts them.
pub(crate) const WARM_INSTANCES: usize = 8;

/// Why a call did not answer.
#[derive(Debug)]
pub(crate) enum CallError {
    /// No slot was free: nothing ran.
    Busy(Busy),
    /// It ran and failed.
    Failed(CallFailure),
}

impl From<CallFailure> for CallError {
    fn from(f: CallFailure) -> Self {
        CallError::Failed(f)
    }
}

/// Why a mapper could not be loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    /// No slot was free to ask it to describe itself: try again later.
    #[error("not checked yet: {0}")]
    Busy(Busy),
    /// It is not a mapper this host can serve.
    #[error("{0:#}")]
    Invalid(anyhow::Error),
}

/// An answer that broke one of `caps`' limits.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct OverCap(String);

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
    calls: Arc<Calls>,
    /// This mapper's share of the calls.
    own: Calls,
    /// Whether the last call failed: the next ones run at idle priority.
    failing: AtomicBool,
    warm_cap: usize,
    warm: Mutex<Vec<Warm>>,
}

impl LoadedMapper {
    /// Links `component`, instantiates it once and asks it to describe itself.
    pub(crate) fn load(
        component: &Component,
        linker: &Linker<GuestState>,
        limits: Limits,
        mode: InstanceMode,
        calls: Arc<Calls>,
    ) -> Result<LoadedMapper, LoadError> {
        let instance_pre = linker.instantiate_pre(component).map_err(|e| {
            LoadError::Invalid(anyhow::anyhow!(
                "does not fit the audit:mapper world (a mapper may import wasi:cli, io, clocks, random and \
                 filesystem, nothing else): {e:#}"
            ))
        })?;
        let pre = Pre::new(instance_pre).map_err(LoadError::Invalid)?;
        let shared = calls.limits();
        let warm_cap = WARM_INSTANCES.min(shared.calls);
        let own = Calls::new(super::Capacity {
            calls: shared.calls.div_ceil(2),
            ..shared
        });
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
            calls,
            own,
            failing: AtomicBool::new(false),
            warm_cap,
            warm: Mutex::new(Vec::new()),
        };
        let described = mapper.call(|store, m| {
            let info = m.describe(store)?;
            caps::info(&info).map_err(|e| wasmtime::Error::new(OverCap(e)))?;
            Ok(bindings::info_from_wit(info))
        });
        mapper.info = match described {
            Ok(info) => info,
            Err(CallError::Busy(busy)) => return Err(LoadError::Busy(busy)),
            Err(CallError::Failed(f)) => return Err(LoadError::Invalid(anyhow::anyhow!("describe failed: {f}"))),
        };
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
    pub(crate) fn map(&self, delivery: &event::Delivery) -> Result<MapResult, CallError> {
        let input = bindings::delivery_to_wit(delivery);
        let limits = self.limits;
        self.call(|store, m| {
            let answer = m.map_delivery(store, &input)?;
            caps::mapped([&answer], &limits).map_err(|e| wasmtime::Error::new(OverCap(e)))?;
            Ok(bindings::result_from_wit(answer))
        })
    }

    /// Maps several lines of a file in one call: one result per line, or
    /// `None` when the mapper (a 0.2.0 component) cannot take lines.
    pub(crate) fn map_lines(&self, lines: &event::FileLines) -> Option<Result<Vec<MapResult>, CallError>> {
        if !self.maps_lines() {
            return None;
        }
        let input = bindings::file_lines_to_wit(lines);
        let limits = self.limits;
        let answer = self.call(|store, m| match m.map_lines(store, &input) {
            Some(results) => {
                let results = results?;
                caps::mapped(&results, &limits).map_err(|e| wasmtime::Error::new(OverCap(e)))?;
                Ok(results.into_iter().map(bindings::result_from_wit).collect())
            }
            None => Ok(Vec::new()),
        });
        Some(answer)
    }

    /// Whether the mapper takes several file lines per call (0.3.0 and later).
    pub(crate) fn maps_lines(&self) -> bool {
        matches!(self.pre, Pre::V3(_) | Pre::V4(_))
    }

    /// Where its output for a fixture's input differs from the expected
    /// output (a failed call is one difference).
    pub(crate) fn differences(&self, fixture: &audit_guest_sdk::fixtures::Fixture) -> Result<Vec<String>, LoadError> {
        match self.map(&bindings::delivery_from_sdk(&fixture.delivery)) {
            Ok(result) => fixture
                .compare(&bindings::result_to_sdk(result))
                .map_err(|e| LoadError::Invalid(e.into())),
            Err(CallError::Busy(busy)) => Err(LoadError::Busy(busy)),
            Err(CallError::Failed(failure)) => Ok(vec![format!("the call failed: {failure}")]),
        }
    }

    /// The contract version the component was built against.
    pub(crate) fn contract(&self) -> &'static str {
        self.pre.version()
    }

    /// The query for one page of a poll source's list.
    pub(crate) fn page_query(&self, request: &event::PageRequest) -> Result<Vec<event::QueryParam>, CallError> {
        let input = bindings::page_request_to_wit(request);
        self.call(|store, m| {
            let params = m.page_query(store, input)?;
            caps::params(&params).map_err(|e| wasmtime::Error::new(OverCap(e)))?;
            Ok(bindings::params_from_wit(params))
        })
    }

    fn instantiate(&self) -> Result<Warm, CallError> {
        let mut store = new_store(&self.engine, &self.limits);
        store.set_epoch_deadline(engine::ticks(self.limits.deadline));
        match self.pre.instantiate(&mut store) {
            Ok(bindings) => Ok(Warm {
                store,
                bindings,
                calls: 0,
            }),
            Err(e) if e.downcast_ref::<PoolConcurrencyLimitError>().is_some() => Err(CallError::Busy(Busy::Pool)),
            Err(e) => Err(self.classify(&store, e).into()),
        }
    }

    fn call<R>(&self, f: impl FnOnce(&mut Store<GuestState>, &Bound) -> wasmtime::Result<R>) -> Result<R, CallError> {
        let _own = self.own.acquire().map_err(CallError::Busy)?;
        let _slot = self.calls.acquire().map_err(CallError::Busy)?;
        let result = if self.failing.load(Ordering::Relaxed) {
            crate::scheduling::at_idle_priority(|| self.run(f))
        } else {
            self.run(f)
        };
        match &result {
            Ok(_) => self.failing.store(false, Ordering::Relaxed),
            Err(CallError::Failed(_)) => self.failing.store(true, Ordering::Relaxed),
            Err(CallError::Busy(_)) => {}
        }
        result
    }

    /// One call on a warm or new instance (the slots are held).
    fn run<R>(&self, f: impl FnOnce(&mut Store<GuestState>, &Bound) -> wasmtime::Result<R>) -> Result<R, CallError> {
        let reused = match self.mode {
            InstanceMode::Reuse => self.warm.lock().unwrap_or_else(|e| e.into_inner()).pop(),
            InstanceMode::Fresh | InstanceMode::Auto => None,
        };
        let mut warm = match reused {
            Some(w) => w,
            None => self.instantiate()?,
        };
        warm.store.data().stderr.clear();
        warm.store.set_epoch_deadline(engine::ticks(self.limits.deadline));
        match f(&mut warm.store, &warm.bindings) {
            Ok(value) => {
                warm.calls += 1;
                if self.mode == InstanceMode::Reuse && warm.calls < RECYCLE_AFTER_CALLS {
                    let mut pool = self.warm.lock().unwrap_or_else(|e| e.into_inner());
                    if pool.len() < self.warm_cap {
                        pool.push(warm);
                    }
                }
                Ok(value)
            }
            // A failed instance is never reused: its state is unknown.
            Err(e) => Err(self.classify(&warm.store, e).into()),
        }
    }

    /// Turns a wasmtime error into the reason a call failed, from its type
    /// (never its text). The message is the root cause (not the wasm
    /// backtrace) plus what the guest wrote to stderr in this call, which is
    /// where a Rust guest's panic message goes.
    fn classify(&self, store: &Store<GuestState>, error: wasmtime::Error) -> CallFailure {
        let stderr = store.data().stderr.text();
        let cause = error.root_cause().to_string();
        let detail = if stderr.is_empty() {
            cause
        } else {
            format!("{cause}; guest stderr: {stderr}")
        };
        if error.downcast_ref::<MayNotWait>().is_some() {
            return CallFailure::Forbidden(detail);
        }
        if error.downcast_ref::<ResourceTableError>().is_some() {
            return CallFailure::Forbidden(format!("it holds too many host resources: {detail}"));
        }
        if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return CallFailure::Trapped(format!("the mapper called exit({}); {detail}", exit.0));
        }
        if error.downcast_ref::<OverCap>().is_some() {
            return CallFailure::BadAnswer(detail);
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => CallFailure::TimedOut(format!(
                "ran past its {:?} wall-clock deadline: {detail}",
                self.limits.deadline
            )),
            Some(Trap::AllocationTooLarge) => CallFailure::OutOfMemory(detail),
            _ if store.data().limits.memory_refused => CallFailure::OutOfMemory(detail),
            Some(_) => CallFailure::Trapped(detail),
            // Not a trap of guest code: the host could not read what the
            // guest handed back (over the bytes a call may return, or not
            // valid under the canonical ABI).
            None => CallFailure::BadAnswer(format!(
                "{detail} (a call may return {} bytes, mapper.max_output_bytes)",
                self.limits.output_bytes
            )),
        }
    }
}
