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
            let rate = insert_rate(durability, None).await;
            println!("insert, 1,000-event batches, one writer, durability {durability:?}: {rate:.0} events/s");
        }
        if std::env::var_os("STORE_BENCH_LOOKUP").is_some() {
            for _ in 0..3 {
                lookup_rate().await;
            }
            return;
        }
        if std::env::var_os("STORE_BENCH_INDEX_COSTS").is_some() {
            index_costs().await;
            return;
        }

        if std::env::var_os("STORE_BENCH_INSERT_ONLY").is_some() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let sqlite = std::sync::Arc::new(SqliteStore::open(&dir.path().join("a.sqlite3"), Durability::Normal).unwrap());
        let store: Store = sqlite.clone();
        let waited = audit_ingest_tests::bench::load_store(&sqlite, 1_000_000, record).await;
        println!(
            "(the background lookup caught up {:.1} s after the load)",
            waited.as_secs_f64()
        );
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
        let access = Access::new(
            None,
            tokens::MachineTokens::resolve(&[acme.entry]).unwrap(),
            None,
            false,
        );
        let scoped = app_with_access(
            store,
            runtime(None, InstanceMode::Fresh, Limits::default()),
            Vec::new(),
            access,
        );
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

/// Events a second inserted in 1,000-event batches by one caller, with
/// the index `dropped` (if any) dropped after the store made it.
async fn insert_rate(durability: Durability, dropped: Option<&str>) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.sqlite3");
    let store: Store = std::sync::Arc::new(SqliteStore::open(&path, durability).unwrap());
    if let Some(index) = dropped {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(&format!("DROP INDEX {index}")).unwrap();
    }
    let total = 300_000u64;
    let batches: Vec<Vec<NewRecord>> = (0..total / 1000)
        .map(|b| (b * 1000..(b + 1) * 1000).map(record).collect())
        .collect();
    let start = Instant::now();
    for batch in batches {
        store.insert(batch, None).await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// How fast the background lookup (actor, IP, text, hourly counts) indexes
/// a backlog once the writer is idle: 300,000 events loaded first, then
/// timed until its watermark reaches the newest.
async fn lookup_rate() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = std::sync::Arc::new(SqliteStore::open(&dir.path().join("a.sqlite3"), Durability::Full).unwrap());
    let total = 300_000u64;
    let store: Store = sqlite.clone();
    for b in 0..total / 1000 {
        store
            .insert((b * 1000..(b + 1) * 1000).map(record).collect(), None)
            .await
            .unwrap();
    }
    let behind_at_end = sqlite.lookup_lag().unwrap();
    let start = Instant::now();
    while sqlite.lookup_lag().unwrap() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "lookup: {behind_at_end} events behind when the load ended, indexed in {secs:.2} s = {:.0} events/s",
        behind_at_end as f64 / secs
    );
}

/// What each index of `audit_events` costs the insert ceiling: the rate
/// with each one dropped, beside the rate with all, three times each,
/// interleaved so the machine's drift hits every variant alike.
async fn index_costs() {
    let variants = [
        None,
        Some("audit_events_source_external_id"),
        Some("audit_events_time"),
        Some("audit_events_action_at"),
        Some("audit_events_tenant_action_at"),
    ];
    let mut rates = vec![Vec::new(); variants.len()];
    for _ in 0..3 {
        for (i, dropped) in variants.iter().enumerate() {
            rates[i].push(insert_rate(Durability::Full, *dropped).await);
        }
    }
    println!("\n| indexes (durability full) | events/s, 3 runs | mean |\n|---|---|---|");
    for (dropped, runs) in variants.iter().zip(&rates) {
        let mean = runs.iter().sum::<f64>() / runs.len() as f64;
        let each: Vec<String> = runs.iter().map(|r| format!("{r:.0}")).collect();
        let name = dropped.map_or("all".to_string(), |i| format!("all but `{i}`"));
        println!("| {name} | {} | {mean:.0} |", each.join(" / "));
    }
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
