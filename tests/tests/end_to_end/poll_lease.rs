//! Two instances on one store (two store handles on one data directory, as
//! two processes have), both configured with the same authentik poller:
//! one polls, the other stands by; when the holder dies without a word the
//! other takes over within the lease time, and every event lands once.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use audit_ingest::health::Health;
use audit_ingest::ingest::{ShutdownSignal, SourceContext, Tenants};
use audit_ingest::runtime::{InstanceMode, Limits};
use audit_ingest::sources::poll;
use audit_ingest::store::{Claim, Store};
use audit_ingest_tests::authentik::{AK_TOKEN, StandIn};
use audit_ingest_tests::{all_records, embedded_store, pipeline, runtime, secret_file, source_context};

const LEASE_SECS: u64 = 1;

fn instance(store: Store, stop: &ShutdownSignal) -> SourceContext {
    let rt = runtime(None, InstanceMode::Reuse, Limits::default());
    source_context(pipeline(store, rt, Tenants::default()), stop.subscribe())
}

fn start(ak: &StandIn, ctx: &SourceContext) -> tokio::task::JoinHandle<()> {
    let mut config = audit_ingest::presets::authentik_poller(&ak.base_url);
    config.token = secret_file(AK_TOKEN);
    config.interval_secs = 1;
    config.lease_secs = LEASE_SECS;
    tokio::spawn(poll::run(config.resolve().unwrap(), ctx.clone()))
}

/// Whom this instance's authentik poller stands by for, if it does.
fn standing_by_for(health: &Health) -> Option<String> {
    health
        .report()
        .into_iter()
        .find(|h| h.source == "authentik")
        .and_then(|h| h.standby_for)
}

async fn stored_once(store: &Store) -> HashSet<String> {
    let ids: Vec<String> = all_records(store, "authentik")
        .await
        .into_iter()
        .map(|r| r.record.external_id.expect("an id"))
        .collect();
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "an event was stored twice");
    unique
}

async fn until(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_instances_polls_and_the_other_takes_over_when_it_dies() {
    let ak = StandIn::start().await;
    ak.add_events(250);
    let dir = tempfile::tempdir().unwrap();
    let (stop_a, stop_b) = (ShutdownSignal::new(), ShutdownSignal::new());
    let a = instance(embedded_store(dir.path()), &stop_a);
    let task_a = start(&ak, &a);
    let store = a.pipeline.store().clone();
    until(Duration::from_secs(20), "the first instance catches up", async || {
        stored_once(&store).await.len() == 250
    })
    .await;
    let b = instance(embedded_store(dir.path()), &stop_b);
    let task_b = start(&ak, &b);
    until(Duration::from_secs(5), "the second instance stands by", async || {
        standing_by_for(&b.health) == Some(a.instance.clone())
    })
    .await;
    assert_eq!(standing_by_for(&a.health), None, "the holder polls");
    let held = |ctx: &SourceContext| {
        let m = ctx.pipeline.telemetry().source("authentik");
        (
            m.poll_lease_held.load(Ordering::Relaxed),
            m.poll_lease_taken.load(Ordering::Relaxed),
        )
    };
    assert_eq!(
        (held(&a), held(&b)),
        ((1, 1), (0, 0)),
        "audit_ingest_poll_lease_held and _taken_total"
    );
    assert!(b.health.wedged().is_empty(), "standing by is not wedged");
    // Only the holder asks authentik: about one walk per interval.
    let before = ak.state.lock().unwrap().event_requests;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let asked = ak.state.lock().unwrap().event_requests - before;
    assert!((1..=12).contains(&asked), "{asked} requests in 3 s from one poller");

    // The holder dies: no release, its lease runs out.
    task_a.abort();
    let _ = task_a.await;
    ak.add_events(40);
    let took = until(
        Duration::from_secs(4 * LEASE_SECS + 5),
        "the second instance takes over",
        async || standing_by_for(&b.health).is_none() && stored_once(&store).await.len() == 290,
    )
    .await;
    let present: HashSet<String> = ak.pks().into_iter().collect();
    assert_eq!(stored_once(&store).await, present, "every event once");
    assert!(took < Duration::from_secs(2 * LEASE_SECS + 3), "took over in {took:?}");
    assert_eq!(held(&b), (1, 1));

    // A clean stop hands the lease over at once.
    stop_b.trigger();
    task_b.await.unwrap();
    let claim = store
        .take_lease("authentik", "a-third-instance", Duration::from_secs(5))
        .await;
    assert!(matches!(claim, Ok(Claim::Granted { .. })), "{claim:?}");
    drop(stop_a);
}
