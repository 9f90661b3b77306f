//! What a mapper instance can reach, and the bounds on what it can hold.
//!
//! A mapper is linked against the WASI interfaces a Rust guest's standard
//! library imports and nothing else: `wasi:cli` (no arguments, no
//! environment, empty stdin, discarded stdout, a bounded stderr), `wasi:io`,
//! `wasi:clocks` (frozen at the Unix epoch), `wasi:random` (deterministic)
//! and `wasi:filesystem` without a single preopened directory. `wasi:sockets`
//! is not linked: a component that imports it does not load.
//!
//! No import can block. The one interface that could wait, the monotonic
//! clock's `subscribe-*` (what `std::thread::sleep` and `poll` with a timeout
//! use), answers a zero wait with a pollable that is ready at once and
//! refuses any other wait with a [`MayNotWait`] error, which ends the call;
//! every other pollable a mapper can obtain (streams of the empty stdin and
//! of stdout/stderr) is always ready. So the epoch deadline, which only
//! fires while guest code runs, bounds every call.
//!
//! The host side is bounded too: one linear memory of the configured size,
//! few tables and table elements, a small host resource table, a store-wide
//! cap on bytes lifted out of the guest per call ("hostcall fuel", which
//! counts a string each time it is lifted, however many events point at
//! it), and a stderr buffer of a few KiB that is emptied before each call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use super::bindings::wit_digest;
use wasmtime::{Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream, WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::{clocks, sync as wasi_sync};
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::Limits;

/// Bytes of guest stderr kept per call, for error messages.
pub(crate) const STDERR_CAPTURE: usize = 4096;
/// Host resources (streams, pollables) one instance may hold at once.
const MAX_HOST_RESOURCES: usize = 256;
/// Tables one instance may create: a Rust component has its own and the
/// few of the glue modules the component model adds.
pub(crate) const MAX_TABLES: usize = 8;
/// Elements of any one table (function references of the guest program).
pub(crate) const MAX_TABLE_ELEMENTS: usize = 20_000;
/// Core instances of one component (the guest, its glue modules).
pub(crate) const MAX_CORE_INSTANCES: usize = 32;

/// The per-store state: an empty WASI context, the limits, and stderr.
pub(crate) struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: GuestLimits,
    pub(crate) stderr: StderrTail,
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The store's limits, remembering whether a memory growth was refused, so
/// a failed call is classified from what happened, not from message text.
pub(crate) struct GuestLimits {
    limits: StoreLimits,
    pub(crate) memory_refused: bool,
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

/// A mapper asked to wait (sleep, or poll with a timeout): mappers may not.
#[derive(Debug, thiserror::Error)]
#[error("the mapper asked to wait {0:?}; a mapper may not sleep or wait")]
pub(crate) struct MayNotWait(pub(crate) Duration);

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

/// A pollable that is ready at once.
struct Ready;

#[wasmtime_wasi::async_trait]
impl Pollable for Ready {
    async fn ready(&mut self) {}
}

/// `wasi:clocks/monotonic-clock` that never waits (see the module docs).
struct NoWait;

impl HasData for NoWait {
    type Data<'a> = NoWaitClock<'a>;
}

struct NoWaitClock<'a>(&'a mut ResourceTable);

impl NoWaitClock<'_> {
    fn after(&mut self, wait: Duration) -> wasmtime::Result<Resource<DynPollable>> {
        if !wait.is_zero() {
            return Err(wasmtime::Error::new(MayNotWait(wait)));
        }
        let ready = self.0.push(Ready)?;
        wasmtime_wasi::p2::subscribe(self.0, ready)
    }
}

impl clocks::monotonic_clock::Host for NoWaitClock<'_> {
    fn now(&mut self) -> wasmtime::Result<u64> {
        Ok(0)
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        Ok(1_000_000_000)
    }

    fn subscribe_instant(&mut self, when: u64) -> wasmtime::Result<Resource<DynPollable>> {
        // The clock stands at 0: an instant after it is a wait of that long.
        self.after(Duration::from_nanos(when))
    }

    fn subscribe_duration(&mut self, duration: u64) -> wasmtime::Result<Resource<DynPollable>> {
        self.after(Duration::from_nanos(duration))
    }
}

/// The linker every mapper is instantiated with (see the module docs).
pub(crate) fn linker(engine: &Engine) -> anyhow::Result<Linker<GuestState>> {
    use wasmtime_wasi::p2::bindings::{cli, filesystem, random};
    let mut linker = Linker::new(engine);
    let l = &mut linker;
    cli::exit::add_to_linker::<GuestState, WasiCli>(l, <GuestState as WasiCliView>::cli)?;
    cli::environment::add_to_linker::<GuestState, WasiCli>(l, <GuestState as WasiCliView>::cli)?;
    cli::stdin::add_to_linker::<GuestState, WasiCli>(l, <GuestState as WasiCliView>::cli)?;
    cli::stdout::add_to_linker::<GuestState, WasiCli>(l, <GuestState as WasiCliView>::cli)?;
    cli::stderr::add_to_linker::<GuestState, WasiCli>(l, <GuestState as WasiCliView>::cli)?;
    cli::terminal_input::add_to_linker::<GuestState, WasiCli>(l, <GuestState as WasiCliView>::cli)?;
    cli::terminal_output::add_to_linker::<GuestState, WasiCli>(l, <GuestState as WasiCliView>::cli)?;
    cli::terminal_stdin::add_to_linker::<GuestState, WasiCli>(l, <GuestState as WasiCliView>::cli)?;
    cli::terminal_stdout::add_to_linker::<GuestState, WasiCli>(l, <GuestState as WasiCliView>::cli)?;
    cli::terminal_stderr::add_to_linker::<GuestState, WasiCli>(l, <GuestState as WasiCliView>::cli)?;
    clocks::wall_clock::add_to_linker::<GuestState, WasiClocks>(l, <GuestState as WasiClocksView>::clocks)?;
    clocks::monotonic_clock::add_to_linker::<GuestState, NoWait>(l, |s| NoWaitClock(&mut s.table))?;
    random::random::add_to_linker::<GuestState, WasiRandom>(l, |s| s.wasi.random())?;
    random::insecure::add_to_linker::<GuestState, WasiRandom>(l, |s| s.wasi.random())?;
    random::insecure_seed::add_to_linker::<GuestState, WasiRandom>(l, |s| s.wasi.random())?;
    filesystem::preopens::add_to_linker::<GuestState, WasiFilesystem>(
        l,
        <GuestState as WasiFilesystemView>::filesystem,
    )?;
    wasi_sync::filesystem::types::add_to_linker::<GuestState, WasiFilesystem>(
        l,
        <GuestState as WasiFilesystemView>::filesystem,
    )?;
    wasmtime_wasi::p2::bindings::io::error::add_to_linker::<GuestState, HasTable>(l, |s| &mut s.table)?;
    wasi_sync::io::poll::add_to_linker::<GuestState, HasTable>(l, |s| &mut s.table)?;
    wasi_sync::io::streams::add_to_linker::<GuestState, HasTable>(l, |s| &mut s.table)?;
    wit_digest::add_to_linker::<GuestState, Hashing>(l, |_| Hashing)?;
    Ok(linker)
}

/// The `digest` import of `audit:mapper@0.4.0`: SHA-256 on the host (with
/// the CPU's SHA instructions where it has them). Stateless: every call
/// hashes what it is given and nothing else.
struct Hashing;

impl HasData for Hashing {
    type Data<'a> = Hashing;
}

impl wit_digest::Host for Hashing {
    fn sha256(&mut self, data: Vec<u8>) -> (u64, u64, u64, u64) {
        use sha2::Digest;
        let d: [u8; 32] = sha2::Sha256::digest(&data).into();
        let word = |i: usize| u64::from_be_bytes(d[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        (word(0), word(1), word(2), word(3))
    }
}

struct HasTable;

impl HasData for HasTable {
    type Data<'a> = &'a mut ResourceTable;
}

/// A new store for one instance, bounded by `limits`.
pub(crate) fn new_store(engine: &Engine, limits: &Limits) -> Store<GuestState> {
    let stderr = StderrTail::default();
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
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_HOST_RESOURCES);
    let state = GuestState {
        wasi,
        table,
        limits: GuestLimits {
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .memories(1)
                .tables(MAX_TABLES)
                .table_elements(MAX_TABLE_ELEMENTS)
                .instances(MAX_CORE_INSTANCES)
                .trap_on_grow_failure(true)
                .build(),
            memory_refused: false,
        },
        stderr,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    // What one call may hand back to the host, in bytes lifted.
    store.set_hostcall_fuel(limits.output_bytes);
    store
}

/// Guest stderr: the first [`STDERR_CAPTURE`] bytes written since the last
/// [`StderrTail::clear`]; later bytes are counted and dropped, and a write
/// never fails (a chatty mapper is not a broken one).
#[derive(Clone, Default)]
pub(crate) struct StderrTail {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Default)]
struct Captured {
    kept: Vec<u8>,
    dropped: u64,
}

impl StderrTail {
    /// Forgets what earlier calls wrote.
    pub(crate) fn clear(&self) {
        let mut c = self.lock();
        c.kept.clear();
        c.dropped = 0;
    }

    /// What this call wrote, as text (with a note of what was dropped).
    pub(crate) fn text(&self) -> String {
        let c = self.lock();
        let mut text = String::from_utf8_lossy(&c.kept).trim().to_string();
        if c.dropped > 0 {
            text.push_str(&format!(" [{} more bytes dropped]", c.dropped));
        }
        text
    }

    fn append(&self, bytes: &[u8]) {
        let mut c = self.lock();
        let room = STDERR_CAPTURE.saturating_sub(c.kept.len());
        let keep = bytes.len().min(room);
        c.kept.extend_from_slice(&bytes[..keep]);
        c.dropped += (bytes.len() - keep) as u64;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Captured> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTail {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl OutputStream for StderrTail {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Writes never fill it (the excess is dropped), so any size fits.
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for StderrTail {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for StderrTail {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_keeps_the_first_bytes_of_a_call_and_never_fills_up() {
        let mut tail = StderrTail::default();
        for _ in 0..10_000 {
            tail.write(bytes::Bytes::from_static(b"a line of guest output\n"))
                .unwrap();
            assert!(tail.check_write().unwrap() > 0);
        }
        let text = tail.text();
        assert!(text.starts_with("a line of guest output"), "{text}");
        assert!(text.ends_with("more bytes dropped]"), "{text}");
        tail.clear();
        tail.write(bytes::Bytes::from_static(b"next call")).unwrap();
        assert_eq!(tail.text(), "next call");
    }
}
