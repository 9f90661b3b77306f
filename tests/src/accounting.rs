//! Per-event cost accounting of the service in its own process, as a user's
//! senders see it: the real `audit-ingest serve` binary started as a child,
//! its CPU time read from `/proc` per thread before and after a load window
//! (exact, including threads that ended meanwhile), and, on request, a
//! `perf` profile of the same window that splits the CPU by pipeline stage
//! (`cargo bench --bench webhook_load` with `LOAD_SERVICE`, BENCHMARKS.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Linux's `USER_HZ`: the unit of the CPU times in `/proc/<pid>/stat`
/// (100 on every architecture Linux builds for).
const TICKS_PER_SECOND: f64 = 100.0;

/// The service running in a process of its own, killed when dropped.
pub struct Service {
    child: Child,
    /// Its process id, for `/proc` and `perf`.
    pub pid: u32,
    /// `host:port` it listens on.
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Starts `binary serve` with the built-in mappers and an embedded store
    /// in a new directory (the service's defaults, `durability = "full"`),
    /// Stalwart's webhook signed with `secret`; waits until `/readyz` is 200.
    /// `profiled`: the runtime writes a perf map of the mappers' compiled
    /// code (`AUDIT_WASM_PERFMAP=1`), so a profile can tell it apart.
    pub async fn start(binary: &Path, secret: &str, profiled: bool) -> Service {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(binary)
            .arg("serve")
            .env("AUDIT_LISTEN", &addr)
            .env("AUDIT_DATA_DIR", dir.path().join("data"))
            .env("AUDIT_MAPPERS_DIR", dir.path().join("mappers.d"))
            .env("STALWART_WEBHOOK_SECRET", secret)
            .env("AUDIT_WASM_PERFMAP", if profiled { "1" } else { "0" })
            .env_remove("AUDIT_MONGODB_URI")
            .env_remove("AUTHENTIK_URL")
            .env_remove("OCIS_AUDIT_FILE")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let service = Service {
            pid: child.id(),
            child,
            addr,
            _dir: dir,
        };
        service.wait_ready().await;
        service
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if ready(&self.addr).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the service at {} did not become ready in 60 s", self.addr);
    }

    /// Its peak resident memory so far (`VmHWM`), MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        peak_rss_mib(&self.pid.to_string())
    }
}

/// The peak resident memory (`VmHWM`) of process `pid` (or `self`), MiB.
pub fn peak_rss_mib(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Whether `GET /readyz` at `addr` answers 200 within a second.
async fn ready(addr: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nhost: audit-ingest\r\nconnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(head.ends_with(b" 200"))
    };
    matches!(tokio::time::timeout(Duration::from_secs(1), ask).await, Ok(Some(true)))
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The service's CPU seconds so far: the whole process (threads that ended
/// included) and each live thread's, summed by what the thread does.
#[derive(Debug, Clone, Default)]
pub struct Cpu {
    /// User + system time of the process.
    pub process: f64,
    /// User + system time of its live threads, by [`thread_kind`].
    pub threads: BTreeMap<&'static str, f64>,
}

impl Cpu {
    /// Reads `/proc/<pid>/stat` and `/proc/<pid>/task/*/stat`.
    pub fn read(pid: u32) -> Cpu {
        let mut cpu = Cpu {
            process: stat_seconds(&format!("/proc/{pid}/stat")).map_or(0.0, |(_, s)| s),
            ..Cpu::default()
        };
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten();
        for task in tasks {
            if let Some((comm, seconds)) = stat_seconds(&task.path().join("stat").to_string_lossy()) {
                *cpu.threads.entry(thread_kind(&comm)).or_default() += seconds;
            }
        }
        cpu
    }

    /// What was spent between `before` and `self`; threads that ended in
    /// between show as `ended threads`.
    pub fn since(&self, before: &Cpu) -> Cpu {
        let mut threads = BTreeMap::new();
        for (kind, now) in &self.threads {
            threads.insert(*kind, now - before.threads.get(kind).copied().unwrap_or(0.0));
        }
        let live: f64 = threads.values().sum();
        let process = self.process - before.process;
        if process - live > 0.005 {
            threads.insert("ended threads", process - live);
        }
        Cpu { process, threads }
    }
}

/// A `stat` file's thread name and its user + system seconds.
fn stat_seconds(path: &str) -> Option<(String, f64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    // After the name: state is field 3, utime field 14, stime field 15.
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok());
    Some((comm, (ticks(14)? + ticks(15)?) / TICKS_PER_SECOND))
}

/// What a thread of the service does, from its name.
pub fn thread_kind(comm: &str) -> &'static str {
    match comm {
        "store-writer" | "store-free" => "store writer",
        "store-lookup" => "lookup builder",
        "store-maintena" | "store-maintenan" => "store maintenance",
        c if c.starts_with("tokio-") => "async workers and blocking pool",
        _ => "other",
    }
}

/// The pipeline stages a profile sample is counted under.
pub const STAGES: [&str; 6] = [
    "HTTP + signature",
    "mapping (WASM + runtime)",
    "normalise",
    "store write",
    "lookup index",
    "other",
];

/// A `perf record` of the service running while the load does.
pub struct Profiling {
    child: Child,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Profiling {
    /// Samples `pid` for `length` with DWARF call chains; `None` (with the
    /// reason printed) when `perf` cannot run here.
    pub fn start(pid: u32, length: Duration) -> Option<Profiling> {
        let dir = tempfile::tempdir().ok()?;
        let file = dir.path().join("service.perf");
        let child = Command::new("perf")
            .args([
                "record",
                "-e",
                "cpu-clock",
                "-F",
                "499",
                "--call-graph",
                "dwarf,16384",
                "-p",
            ])
            .arg(pid.to_string())
            .arg("-o")
            .arg(&file)
            .args(["--", "sleep"])
            .arg(format!("{:.1}", length.as_secs_f64()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(child) => Some(Profiling { child, file, _dir: dir }),
            Err(e) => {
                println!("profile: skipped (perf: {e})");
                None
            }
        }
    }

    /// Waits for the recording and returns each stage's share of the
    /// samples (summing to 1), or `None` when perf recorded nothing.
    pub fn finish(mut self) -> Option<BTreeMap<&'static str, f64>> {
        self.child.wait().ok()?;
        let script = Command::new("perf")
            .args(["script", "-F", "comm,ip,sym,dso", "-i"])
            .arg(&self.file)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&script.stdout);
        shares(&text)
    }
}

/// Counts `perf script -F comm,ip,sym,dso` samples (the thread's name on
/// a line, then one `address symbol (object)` line per frame, leaf first; a
/// blank line between samples) by [`stage_of`].
fn shares(script: &str) -> Option<BTreeMap<&'static str, f64>> {
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    for sample in script.split("\n\n").filter(|s| !s.trim().is_empty()) {
        let mut lines = sample.lines().skip_while(|l| l.trim().is_empty());
        let Some(head) = lines.next() else { continue };
        let frames: Vec<Frame<'_>> = lines.filter_map(Frame::parse).collect();
        *counts.entry(stage_of(head.trim(), &frames)).or_default() += 1;
    }
    let total: u64 = counts.values().sum();
    (total > 0).then(|| counts.into_iter().map(|(k, n)| (k, n as f64 / total as f64)).collect())
}

/// One frame of a sample's call chain.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// The function, as perf names it (inlined frames without their path).
    pub symbol: &'a str,
    /// The object it is in: a path, `[kernel.kallsyms]`, or `[JIT] tid N`
    /// / `/tmp/perf-N.map` for a mapper's compiled code.
    pub object: &'a str,
}

impl<'a> Frame<'a> {
    fn parse(line: &'a str) -> Option<Frame<'a>> {
        let (_address, rest) = line.trim().split_once(' ')?;
        let open = rest.rfind(" (")?;
        Some(Frame {
            symbol: rest[..open].trim(),
            object: rest[open + 2..].trim_end_matches(')'),
        })
    }

    /// Whether the function (not one of its type parameters) is under `path`.
    fn is_in(&self, path: &str) -> bool {
        self.symbol.trim_start_matches('<').starts_with(path)
    }
}

/// The stage one sample belongs to, from its thread and its call chain:
/// the store's own threads by name; on the async workers and the blocking
/// pool, the innermost frame that names a stage (a mapper's compiled code
/// and wasmtime are mapping; the rest of a request, tokio, hyper, axum, the
/// signature check and the kernel's TCP, is HTTP).
pub fn stage_of(thread: &str, frames: &[Frame<'_>]) -> &'static str {
    match thread_kind(thread) {
        "store writer" | "store maintenance" => return "store write",
        "lookup builder" => return "lookup index",
        "other" => return "other",
        _ => {}
    }
    for frame in frames {
        if frame.object.starts_with("[JIT]")
            || frame.object.contains("perf-")
            || frame.is_in("wasmtime")
            || frame.is_in("cranelift")
            || frame.is_in("audit_ingest::runtime::")
        {
            return "mapping (WASM + runtime)";
        }
        if frame.is_in("audit_ingest::ingest::normalise") || frame.is_in("audit_ingest::ingest::tenants") {
            return "normalise";
        }
        if frame.is_in("audit_ingest::store::") {
            return "store write";
        }
    }
    "HTTP + signature"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_samples_stage_is_its_innermost_named_frame() {
        let script = "tokio-rt-worker \n\t 7f wasm[0]::function[3] ([JIT] tid 1)\n\t 55 audit_ingest::runtime::Runtime::map_blocking (/x)\n\n\
                      tokio-rt-worker \n\t 55 serde_json::de::from_str (/x)\n\t 56 {closure#1}<audit_ingest::store::Job> (inlined)\n\t 57 audit_ingest::ingest::normalise::records (/x)\n\t 58 audit_ingest::runtime::Runtime::map_blocking (/x)\n\n\
                      store-writer \n\t 55 sqlite3BtreeInsert (/x)\n\n\
                      tokio-rt-worker \n\t 55 hyper::proto::h1::role::parse (/x)\n\t 56 {closure#0}<audit_ingest::store::Job> (inlined)\n";
        let shares = shares(script).unwrap();
        assert_eq!(shares["mapping (WASM + runtime)"], 0.25);
        assert_eq!(shares["normalise"], 0.25);
        assert_eq!(shares["store write"], 0.25);
        assert_eq!(shares["HTTP + signature"], 0.25);
    }

    #[test]
    fn cpu_of_this_process_grows_with_work() {
        let pid = std::process::id();
        let before = Cpu::read(pid);
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let spent = Cpu::read(pid).since(&before);
        assert!(spent.process >= 0.1, "200 ms of spinning shows as {} s", spent.process);
    }
}
