//! The embedded store: batch insert throughput with the unique index on, and
//! filtered `/audit` pages over 1,000,000 stored events (through the HTTP
//! router, as a client would ask).
//!
//! Every read is one access record written too (the trail), as in the service.
//!
//! `cargo bench -p audit-ingest-tests --bench store`

use std::time::{Duration, Instant};

use audit_ingest::access::{Access, tokens};
use audit_ingest::runtime::{InstanceMode, Limits};
use audit_ingest::store::sqlite::{Durability, SqliteStore};
use audit_ingest::store::{NewRecord, Store};
use audit_ingest_tests::bench::{percentile, stored_record as record};
use audit_ingest_tests::{TOKEN, app, app_with_access, call, runtime};
use axum::body::Body;
use axum::http::Request;

fn main() {
    if !audit_ingest_tests::bench::started_by_cargo_bench() {
        return;
    }
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        for durability in [Durability::Full, Durability::Normal] {
            let dir = tempfile::tempdir().unwrap();
            let store: Store = std::sync::Arc::new(SqliteStore::open(&dir.path().join("a.sqlite3"), durability).unwrap());
            let total = 300_000u64;
            let batches: Vec<Vec<NewRecord>> = (0..total / 1000)
                .map(|b| (b * 1000..(b + 1) * 1000).map(record).collect())
                .collect();
            let start = Instant::now();
            for batch in batches {
                store.insert(batch, None).await.unwrap();
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "insert, 1,000-event batches, one writer, durability {durability:?}: {total} events in {secs:.2} s = {:.0} events/s",
                total as f64 / secs
            );
        }

        if std::env::var_os("STORE_BENCH_INSERT_ONLY").is_some() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let sqlite = std::sync::Arc::new(
            SqliteStore::open(&dir.path().join("a.sqlite3"), Durability::Normal).unwrap(),
        );
        let store: Store = sqlite.clone();
        let waited = audit_ingest_tests::bench::load_store(&sqlite, 1_000_000, record).await;
        println!("(the background lookup caught up {:.1} s after the load)", waited.as_secs_f64());
        let router = app(store.clone(), runtime(None, InstanceMode::Fresh, Limits::default()));
        println!("\n/audit over 1,000,000 events, 50 records a page (median / p99):");
        let all_tenants = [
            "/audit",
            "/audit?source=stalwart",
            "/audit?action=stalwart.auth_",
            "/audit?action=authentik.login_failed&tenant=acme",
            "/audit?tenant=acme",
            "/audit?tenant=globex&source=stalwart",
            "/audit?source=ocis&tenant=acme&action=ocis.file_read",
            "/audit?actor=user42@example.org",
            "/audit?ip=10.3.100.5",
            "/audit?since=2025-06-16T00:00:00Z&until=2025-06-16T01:00:00Z",
            "/audit?q=user4242",
        ];
        pages(&router, TOKEN, &all_tenants).await;
        // A reader scoped to one tenant (a third of the events): the scope
        // is part of every query.
        let acme = tokens::create("acme-reader", &["read:tenant=acme".into()]).unwrap();
        let access = Access::new(None, tokens::MachineTokens::resolve(&[acme.entry]).unwrap(), None, false);
        let scoped = app_with_access(store, runtime(None, InstanceMode::Fresh, Limits::default()), Vec::new(), access);
        println!("\nThe same store, read with a machine token scoped to tenant acme:");
        pages(
            &scoped,
            &acme.token,
            &[
                "/audit",
                "/audit?source=stalwart",
                "/audit?action=stalwart.auth_",
                "/audit?action=authentik.login_failed",
                "/audit?actor=user42@example.org",
                "/audit?ip=10.3.100.5",
                "/audit?q=user4242",
            ],
        )
        .await;
    });
}

/// Times the first and second page of each `uri` read with `bearer`, and prints a table row each.
async fn pages(router: &axum::Router, bearer: &str, uris: &[&str]) {
    for uri in uris.iter().copied() {
        // Second page too: the cursor path is what a client walking the timeline hits.
        let (_, first) = call(router, read(uri, bearer)).await;
        let next = first["next"].as_str().map(str::to_string);
        let times = sample_async(router, uri, bearer).await;
        let page2 = match next {
            Some(c) => {
                let sep = if uri.contains('?') { '&' } else { '?' };
                let t = sample_async(router, &format!("{uri}{sep}cursor={c}"), bearer).await;
                format!("{:.2} / {:.2}", ms(percentile(&t, 50.0)), ms(percentile(&t, 99.0)))
            }
            None => "-".into(),
        };
        println!(
            "| `{uri}` | {} records | {:.2} / {:.2} ms | page 2: {page2} ms |",
            first["records"].as_array().map_or(0, |r| r.len()),
            ms(percentile(&times, 50.0)),
            ms(percentile(&times, 99.0)),
        );
    }
}

fn read(uri: &str, bearer: &str) -> Request<Body> {
    Request::get(uri)
        .header("authorization", format!("Bearer {bearer}"))
        .body(Body::empty())
        .unwrap()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn sample_async(router: &axum::Router, uri: &str, bearer: &str) -> Vec<Duration> {
    let mut times = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let (status, _) = call(router, read(uri, bearer)).await;
        assert!(status.is_success(), "{uri}: {status}");
        times.push(t.elapsed());
    }
    times.sort();
    times
}
