//! Poll lease failover: three instances on one store (three embedded store
//! handles on one data directory) run the same authentik poller; the
//! holder is killed without a word (its task aborted: no release), and the
//! time until another instance holds the lease is measured, ROUNDS times
//! (default 5), with a lease of LEASE_SECS (default 5). The target is at
//! most twice the lease time.
//!
//! `cargo bench -p audit-ingest-tests --bench lease_failover`

use std::time::{Duration, Instant};

use audit_ingest::ingest::{ShutdownSignal, SourceContext, Tenants};
use audit_ingest::runtime::{InstanceMode, Limits};
use audit_ingest_tests::authentik::{AK_TOKEN, StandIn};
use audit_ingest_tests::{embedded_store, pipeline, runtime, secret_file, source_context};

struct Instance {
    ctx: SourceContext,
    task: tokio::task::JoinHandle<()>,
}

fn start(ak: &StandIn, dir: &std::path::Path, stop: &ShutdownSignal, lease_secs: u64) -> Instance {
    let rt = runtime(None, InstanceMode::Reuse, Limits::default());
    let ctx = source_context(pipeline(embedded_store(dir), rt, Tenants::default()), stop.subscribe());
    let mut config = audit_ingest::presets::authentik_poller(&ak.base_url);
    config.token = secret_file(AK_TOKEN);
    config.interval_secs = 1;
    config.lease_secs = lease_secs;
    let task = tokio::spawn(audit_ingest::sources::poll::run(config.resolve().unwrap(), ctx.clone()));
    Instance { ctx, task }
}

/// Whether this instance polls (it took the lease and is not standing by).
fn holds(instance: &Instance) -> bool {
    instance
        .ctx
        .health
        .report()
        .iter()
        .any(|h| h.source == "authentik" && h.standby_for.is_none())
}

async fn holder(instances: &[Instance]) -> usize {
    loop {
        if let Some(i) = instances.iter().position(holds) {
            return i;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn main() {
    if !audit_ingest_tests::bench::started_by_cargo_bench() {
        return;
    }
    let env = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (lease_secs, rounds) = (env("LEASE_SECS", 5), env("ROUNDS", 5));
    let tokio = audit_ingest_tests::bench::two_workers();
    tokio.block_on(async {
        let ak = StandIn::start().await;
        ak.add_events(100);
        let dir = tempfile::tempdir().unwrap();
        let stop = ShutdownSignal::new();
        let mut instances: Vec<Instance> = (0..3).map(|_| start(&ak, dir.path(), &stop, lease_secs)).collect();
        let mut took = Vec::new();
        for round in 1..=rounds {
            let dead = holder(&instances).await;
            // Let the standbys settle into their rhythm of asking.
            tokio::time::sleep(Duration::from_secs(lease_secs)).await;
            let killed = instances.remove(dead);
            killed.task.abort();
            let _ = killed.task.await;
            let started = Instant::now();
            holder(&instances).await;
            let elapsed = started.elapsed();
            println!(
                "round {round}: another instance polls {:.2} s after the holder died",
                elapsed.as_secs_f64()
            );
            took.push(elapsed);
            instances.push(start(&ak, dir.path(), &stop, lease_secs));
        }
        let worst = took.iter().max().copied().unwrap_or_default();
        let target = Duration::from_secs(2 * lease_secs);
        println!(
            "lease {lease_secs} s, {rounds} handovers: worst {:.2} s, target <= {:.0} s (2 x lease): {}",
            worst.as_secs_f64(),
            target.as_secs_f64(),
            if worst <= target { "met" } else { "missed" }
        );
        stop.trigger();
    });
}
