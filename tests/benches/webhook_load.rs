//! Load generator for the Stalwart webhook: correctly signed, realistic
//! batches over HTTP/1.1 keep-alive from N connections, flat out, into the
//! real service (embedded store, built-in mapper) started in this process on
//! 127.0.0.1. Generator and service share this machine's cores.
//!
//! Flat out, each batch size also gets its ceilings from the same run: the
//! same generator against a bare handler (HTTP), and each stage alone on the
//! same bodies (`audit_ingest_tests::ceilings`: signature, native and WASM
//! mapping, store); a last table gives every figure as a share of each.
//!
//! `cargo bench -p audit-ingest-tests --bench webhook_load`
//! Environment: `LOAD_SECS` (default 10), `LOAD_CONNECTIONS` (default 32),
//! `LOAD_BATCHES` (default `1,10,50,500`), `LOAD_DURABILITY` (`full` or `normal`),
//! `LOAD_RATE` (requests/s in total, spread over the connections; default
//! flat out), `LOAD_HOT_SWAPS` (install a new build of the Stalwart mapper
//! this many times, evenly over the run; default 0), `LOAD_TARGET`
//! (`host:port` of a service in its own process, started with
//! `STALWART_WEBHOOK_SECRET=stalwart-test-secret`). With a rate, hot swaps or
//! a target, the bare-handler ceiling run is skipped. `LOAD_SERVICE`
//! (the path of an `audit-ingest` binary, e.g. `target/release/audit-ingest`):
//! start that binary for each run in its own process instead of the service
//! in this one, and report its CPU per event (`audit_ingest_tests::accounting`);
//! with `LOAD_PROFILE=1` also a `perf` profile of it split by stage.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit_ingest::config::Config;
use audit_ingest::sources::webhook::signature::stalwart_signature;
use audit_ingest::store::sqlite::Durability;
use audit_ingest_tests::STALWART_SECRET;
use audit_ingest_tests::accounting::{self, Cpu, Profiling, Service};
use audit_ingest_tests::bench::{percentile, stalwart_batch};
use audit_ingest_tests::ceilings::{self, Ceilings};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    if !audit_ingest_tests::bench::started_by_cargo_bench() {
        return;
    }
    let secs: u64 = env_or("LOAD_SECS", 10);
    let connections: usize = env_or("LOAD_CONNECTIONS", 32);
    let batches: String = env_or("LOAD_BATCHES", "1,10,50,500".to_string());
    let durability = match std::env::var("LOAD_DURABILITY").as_deref() {
        Ok("normal") => Durability::Normal,
        _ => Durability::Full,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        println!("| server | events/request | connections | requests/s | events/s | p50 ms | p90 ms | p99 ms | max ms | non-2xx |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
        let rate: Option<f64> = std::env::var("LOAD_RATE").ok().and_then(|v| v.parse().ok());
        let swaps: u32 = env_or("LOAD_HOT_SWAPS", 0);
        let stalled: usize = env_or("LOAD_STALLED", 0);
        let flat_out = rate.is_none() && swaps == 0 && stalled == 0 && std::env::var("LOAD_TARGET").is_err();
        let mut measured = Vec::new();
        for batch in batches.split(',').filter_map(|b| b.trim().parse::<usize>().ok()) {
            let plan = Plan { batch, connections, length: Duration::from_secs(secs), durability, rate, swaps, stalled };
            let service = run(&plan, false).await;
            if flat_out {
                let http = run(&plan, true).await.events_per_second;
                measured.push((batch, service, http));
            }
        }
        println!("\npeak RSS of this process (service + generator): {:.1} MiB", accounting::peak_rss_mib("self"));
        if flat_out {
            ratios(&measured, connections, durability).await;
        }
    });
}

/// Each batch size's stage ceilings, then the service's figure as a share
/// of each ceiling (all from this run).
async fn ratios(measured: &[(usize, Outcome, f64)], connections: usize, durability: Durability) {
    let budget = Duration::from_secs(env_or("LOAD_CEILING_SECS", 3));
    println!("\nCeilings, events/s (each stage alone on the same bodies, every core):\n");
    println!(
        "| events/request | HTTP (bare handler) | signature check | mapping, native | mapping, WASM | WASM/native time | store insert |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut all: Vec<(usize, f64, f64, Ceilings)> = Vec::new();
    let mut costs = Vec::new();
    for (batch, outcome, http) in measured {
        let (batch, service, http) = (*batch, outcome.events_per_second, *http);
        let c = ceilings::measure(batch, connections, durability, budget).await;
        println!(
            "| {batch} | {http:.0} | {:.0} | {:.0} | {:.0} | {:.2}× | {:.0} |",
            c.signature,
            c.native_mapping,
            c.wasm_mapping,
            c.native_mapping / c.wasm_mapping,
            c.store
        );
        all.push((batch, service, http, c));
        if let Some(cost) = &outcome.cost {
            costs.push((batch, cost, c, http));
        }
    }
    println!("\naudit-ingest end to end as a share of each ceiling:\n");
    println!("| events/request | events/s | of HTTP | of signature | of WASM mapping | of store |");
    println!("|---|---|---|---|---|---|");
    for (batch, service, http, c) in all {
        let pct = |ceiling: f64| 100.0 * service / ceiling;
        println!(
            "| {batch} | {service:.0} | {:.1} % | {:.1} % | {:.1} % | {:.1} % |",
            pct(http),
            pct(c.signature),
            pct(c.wasm_mapping),
            pct(c.store)
        );
    }
    if !costs.is_empty() {
        stage_costs(&costs);
    }
}

/// µs of one core per event, at a rate of events/s using every core.
fn core_us_per_event(rate: f64) -> f64 {
    let cores = std::thread::available_parallelism().map_or(2, usize::from) as f64;
    cores * 1e6 / rate
}

/// The service's CPU per event by stage (from its profile) beside what the
/// same stage costs alone (its ceiling from this run, on every core).
fn stage_costs(costs: &[(usize, &Cost, Ceilings, f64)]) {
    println!("\nThe service's CPU per event by stage (µs of one core; the stage alone from its ceiling):\n");
    println!("| events/request | stage | in the service | share | stage alone | ceiling events/s |");
    println!("|---|---|---|---|---|---|");
    for (batch, cost, c, http) in costs {
        let Some(stages) = &cost.stages else { continue };
        for stage in accounting::STAGES {
            let share = stages.get(stage).copied().unwrap_or(0.0);
            let alone = match stage {
                "HTTP + signature" => Some(core_us_per_event(*http) + core_us_per_event(c.signature)),
                "mapping (WASM + runtime)" => Some(core_us_per_event(c.wasm_mapping)),
                // One writer thread does the store's work: one core.
                "store write" => Some(1e6 / c.store),
                _ => None,
            };
            let rate = match stage {
                "HTTP + signature" => Some(1.0 / (1.0 / http + 1.0 / c.signature)),
                "mapping (WASM + runtime)" => Some(c.wasm_mapping),
                "store write" => Some(c.store),
                _ => None,
            };
            println!(
                "| {batch} | {stage} | {:.2} | {:.1} % | {} | {} |",
                share * cost.per_event_us,
                share * 100.0,
                alone.map_or("—".into(), |a| format!("{a:.2}")),
                rate.map_or("—".into(), |r| format!("{r:.0}")),
            );
        }
        println!("| {batch} | **all** | **{:.2}** | 100 % | | |", cost.per_event_us);
    }
}

/// The HTTP ceiling: the same generator against a bare handler that reads
/// the body and answers 200, on this machine, in this process.
fn bare_router() -> axum::Router {
    axum::Router::new().route(
        "/ingest/stalwart/webhook",
        axum::routing::post(|body: axum::body::Bytes| async move {
            std::hint::black_box(body.len());
            "{}"
        }),
    )
}

/// One load run.
struct Plan {
    batch: usize,
    connections: usize,
    length: Duration,
    durability: Durability,
    /// Requests per second in total; none: flat out.
    rate: Option<f64>,
    /// New builds of the Stalwart mapper installed during the run.
    swaps: u32,
    /// Attacking connections kept open beside the load.
    stalled: usize,
}

/// What one load run measured.
struct Outcome {
    events_per_second: f64,
    /// With `LOAD_SERVICE`: the service process's CPU.
    cost: Option<Cost>,
}

/// The CPU the service process spent on a run.
struct Cost {
    /// µs of one core per event answered 2xx.
    per_event_us: f64,
    /// Each stage's share of the profile's samples (`LOAD_PROFILE=1`).
    stages: Option<BTreeMap<&'static str, f64>>,
}

/// One load run; prints its row and returns what it measured.
async fn run(plan: &Plan, bare: bool) -> Outcome {
    let Plan {
        batch,
        connections,
        length,
        durability,
        rate,
        swaps,
        stalled,
    } = *plan;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, STALWART_SECRET).unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        mappers_dir: dir.path().join("mappers.d"),
        ..Config::default()
    };
    config.store.durability = durability;
    config.store.mongodb_uri = Default::default();
    let mut hook = audit_ingest::presets::stalwart_webhook();
    if let audit_ingest::sources::webhook::AuthConfig::Hmac { secret: s, .. } = &mut hook.auth {
        *s = audit_ingest::config::SecretSource {
            env: None,
            file: Some(secret),
        };
    }
    config.webhooks = vec![hook];
    let mappers_dir = config.mappers_dir.clone();
    let settings = audit_ingest::config::Settings::resolve(config).unwrap();
    // LOAD_SERVICE=<binary>: the service in a process of its own.
    let profiled = std::env::var("LOAD_PROFILE").is_ok_and(|v| v == "1");
    let child = match std::env::var_os("LOAD_SERVICE") {
        // A relative path is taken from the workspace root (cargo runs
        // benchmarks in the package's directory).
        Some(binary) if !bare => {
            let binary = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(binary);
            Some(Service::start(&binary, STALWART_SECRET, profiled).await)
        }
        _ => None,
    };
    // LOAD_TARGET=host:port: load a service running in its own process instead
    // (started with STALWART_WEBHOOK_SECRET=stalwart-test-secret), so its
    // memory can be measured alone.
    let elsewhere = match &child {
        Some(child) => Some(child.addr.clone()),
        None if !bare => std::env::var("LOAD_TARGET").ok(),
        None => None,
    };
    // The service in this process only when the load goes to it.
    let app = match elsewhere {
        None if !bare => Some(audit_ingest::serve::build(settings).await.unwrap()),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = elsewhere.unwrap_or_else(|| listener.local_addr().unwrap().to_string());
    // The service's own listener (its connection limits); the ceiling's
    // bare handler is served as axum serves it.
    let server = match &app {
        Some(app) => {
            audit_ingest_tests::bench::serve_like_the_service(listener, audit_ingest::api::router(app.state.clone()))
        }
        None if bare => tokio::spawn(async move {
            axum::serve(
                listener,
                bare_router().into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
            .unwrap()
        }),
        None => tokio::spawn(async {}),
    };
    let cpu_before = child.as_ref().map(|c| Cpu::read(c.pid));
    let profiling = child
        .as_ref()
        .filter(|_| profiled)
        .and_then(|c| Profiling::start(c.pid, length));

    // Hot swaps reach only the service in this process.
    let swapper = app.as_ref().filter(|_| swaps > 0).map(|app| {
        let runtime = app.state.pipeline.runtime().clone();
        tokio::spawn(async move {
            let every = length / (swaps + 1);
            for tag in 0..swaps {
                tokio::time::sleep(every).await;
                let file = mappers_dir.join("stalwart.wasm");
                let bytes = audit_ingest_tests::bench::tagged(audit_ingest::builtin::STALWART, tag);
                let loaded_before = runtime.reload_counts().0;
                audit_ingest_tests::install(&file, &bytes);
                let start = Instant::now();
                while runtime.reload_counts().0 == loaded_before && start.elapsed() < Duration::from_secs(10) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            runtime.reload_counts().0
        })
    });
    let all_forged = std::env::var("LOAD_STALLED_FORGED").is_ok_and(|v| v == "all");
    let attack = (stalled > 0 && !bare).then(|| {
        let addr = addr.clone();
        let stop = Instant::now() + length;
        (0..stalled)
            .map(|i| tokio::spawn(stall(addr.clone(), all_forged || i % 2 == 1, stop)))
            .collect::<Vec<_>>()
    });
    let url = format!("http://{addr}/ingest/stalwart/webhook");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    let seed = Arc::new(AtomicU64::new(1));
    // Failed requests by answer: a status code, or the transport error.
    let errors: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let deadline = Instant::now() + length;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let (client, url, seed, errors) = (client.clone(), url.clone(), seed.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            // A fixed rate means evenly spaced requests: each connection's
            // ticks are offset by its share of the period, so the connections
            // do not all send at the same instant.
            let mut pace = rate.map(|r| {
                let period = Duration::from_secs_f64(connections as f64 / r);
                let offset = period.mul_f64(connection as f64 / connections as f64);
                let mut i = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                i
            });
            while Instant::now() < deadline {
                if let Some(pace) = pace.as_mut() {
                    pace.tick().await;
                }
                let n = seed.fetch_add(1, Ordering::Relaxed);
                // One request in ten is a resend of an earlier batch, as Stalwart does after a failure.
                let body = stalwart_batch(batch, if n % 10 == 0 && n > 10 { n - 5 } else { n });
                let signature = stalwart_signature(STALWART_SECRET, &body);
                let t = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-signature", signature)
                    .body(body)
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        latencies.push(t.elapsed());
                    }
                    Ok(r) => {
                        *errors
                            .lock()
                            .unwrap()
                            .entry(r.status().as_u16().to_string())
                            .or_default() += 1
                    }
                    Err(e) => {
                        let kind = if e.is_timeout() { "timeout" } else { "connection error" };
                        *errors.lock().unwrap().entry(kind.into()).or_default() += 1;
                    }
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let took = start.elapsed().as_secs_f64();
    let spent = child
        .as_ref()
        .zip(cpu_before)
        .map(|(c, before)| Cpu::read(c.pid).since(&before));
    let mut reopened = 0;
    for a in attack.into_iter().flatten() {
        reopened += a.await.unwrap();
    }
    let attacked = if stalled > 0 {
        format!(" beside {stalled} stalled connections (reopened {reopened} times)")
    } else {
        String::new()
    };
    let swapped = match swapper {
        Some(task) => format!(" + {} hot swaps", task.await.unwrap()),
        None => String::new(),
    };
    let paced = rate.map(|r| format!(" at {r:.0} req/s")).unwrap_or_default();
    all.sort();
    let requests = all.len() as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "| {}{paced}{swapped}{attacked} | {batch} | {connections} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
        if bare {
            "bare axum handler (HTTP ceiling)"
        } else {
            "audit-ingest"
        },
        requests / took,
        requests * batch as f64 / took,
        ms(percentile(&all, 50.0)),
        ms(percentile(&all, 90.0)),
        ms(percentile(&all, 99.0)),
        ms(percentile(&all, 100.0)),
        non_2xx(&errors.lock().unwrap())
    );
    server.abort();
    let answered = requests * batch as f64;
    let cost = spent.map(|spent| {
        let per_event_us = spent.process * 1e6 / answered;
        let threads: Vec<String> = spent
            .threads
            .iter()
            .map(|(kind, s)| format!("{kind} {:.2}", s * 1e6 / answered))
            .collect();
        println!(
            "  service process: {:.2} CPU-s over {took:.1} s = {per_event_us:.2} µs·core per event ({}); peak RSS {:.1} MiB",
            spent.process,
            threads.join(", "),
            child.as_ref().map_or(0.0, Service::peak_rss_mib)
        );
        Cost {
            per_event_us,
            stages: profiling.and_then(Profiling::finish),
        }
    });
    Outcome {
        events_per_second: answered / took,
        cost,
    }
}

/// `0`, or each failure kind with its count (`503: 4, timeout: 1`).
fn non_2xx(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "0".into();
    }
    errors
        .iter()
        .map(|(kind, n)| format!("{kind}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One attacking connection until `stop`: the head of a 1 MB upload (with
/// a forged signature, or none), then nothing; opened again a second after
/// the server closes it (a persistent attacker, not a connect flood).
/// Returns how many times it was opened again.
async fn stall(addr: String, forged: bool, stop: Instant) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = "POST /ingest/stalwart/webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n".to_string();
    if forged {
        head.push_str(&format!("x-signature: {}\r\n", stalwart_signature("forged", b"forged")));
    }
    head.push_str("\r\n");
    let mut opened = 0u64;
    while Instant::now() < stop {
        let Ok(mut stream) = tokio::net::TcpStream::connect(&addr).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        opened += 1;
        if stream.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        let mut sink = [0u8; 1024];
        let left = stop.saturating_duration_since(Instant::now());
        // Held until the server closes it (or the run ends).
        let _ = tokio::time::timeout(left, async {
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        let left = stop.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
    }
    opened.saturating_sub(1)
}
