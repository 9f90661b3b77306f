//! authentik backlog catch-up: a stand-in holding BACKLOG events (default
//! 50,000), polled with the page cap lifted into the embedded store.
//!
//! `cargo bench -p audit-ingest-tests --bench poll_catchup`

use std::time::Instant;

use audit_ingest::ingest::Shutdown;
use audit_ingest::ingest::Tenants;
use audit_ingest::runtime::{InstanceMode, Limits};
use audit_ingest::store::sqlite::Durability;
use audit_ingest_tests::authentik::{AK_TOKEN, StandIn};
use audit_ingest_tests::{embedded_store_with, pipeline, runtime, secret_file, source_context};

fn main() {
    if !audit_ingest_tests::bench::started_by_cargo_bench() {
        return;
    }
    let backlog: usize = std::env::var("BACKLOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let tokio = audit_ingest_tests::bench::two_workers();
    tokio.block_on(async {
        let ak = StandIn::start().await;
        ak.add_events(backlog);
        let dir = tempfile::tempdir().unwrap();
        // The service's default durability.
        let store = embedded_store_with(dir.path(), Durability::Full);
        let rt = runtime(None, InstanceMode::Auto, Limits::default());
        let ctx = source_context(pipeline(store, rt, Tenants::default()), Shutdown::never());
        let mut config = audit_ingest::presets::authentik_poller(&ak.base_url);
        config.token = secret_file(AK_TOKEN);
        config.max_pages_per_tick = 0;
        let mut poller = config.resolve().unwrap();
        let start = Instant::now();
        let s = poller.tick(&ctx).await.expect("a tick");
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(s.inserted as usize, backlog);
        println!(
            "authentik backlog catch-up, {backlog} events, {} pages of 100, cap lifted: {:.2} s, {:.0} events/s",
            s.pages,
            secs,
            backlog as f64 / secs
        );
    });
}
