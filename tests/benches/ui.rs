//! The web page on 1,000,000 stored records: first rows, a filter change,
//! the overview (in the browser, and the store's counts alone), a live
//! event after its webhook, and the size of the page's assets.
//!
//! `cargo bench -p audit-ingest-tests --bench ui`
//! (needs `node`, Debian's `chromium` and `npm ci --prefix tests/ui`)

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use audit_ingest::access::Access;
use audit_ingest::config::Secret;
use audit_ingest::event::RawJson;
use audit_ingest::ingest::Tenants;
use audit_ingest::runtime::{InstanceMode, Limits};
use audit_ingest::store::sqlite::{Durability, SqliteStore};
use audit_ingest::store::{NewRecord, Query, Store, TenantScope};
use audit_ingest_tests::bench::percentile;
use audit_ingest_tests::browser::{Served, find_tools};
use audit_ingest_tests::{STALWART_SECRET, TOKEN, runtime, stalwart_endpoint, state_with_access};
use chrono::{Duration as Span, Utc};
use serde_json::json;

const RECORDS: u64 = 1_000_000;
const ACTIONS: [(&str, &str); 6] = [
    ("stalwart.auth_success", "success"),
    ("stalwart.auth_failed", "failure"),
    ("stalwart.mail_delivered", "success"),
    ("authentik.login", "success"),
    ("authentik.login_failed", "failure"),
    ("ocis.file_read", "success"),
];

/// The `i`-th record: half a second apart, the newest now (so 24 h hold 172,800).
fn record(i: u64, now: chrono::DateTime<Utc>) -> NewRecord {
    let (action, outcome) = ACTIONS[(i % 6) as usize];
    let at = now - Span::milliseconds(((RECORDS - i) * 500) as i64);
    NewRecord {
        source: action.split('.').next().unwrap().into(),
        action: action.into(),
        at,
        received_at: at,
        actor_id: Some(format!("{}", i % 5000)),
        actor_name: Some(format!("user{}@acme", i % 5000)),
        actor_email: Some(format!("user{}@acme", i % 5000)),
        ip: Some(format!("10.{}.{}.{}", i % 7, i % 251, i % 13)),
        target_type: Some("account".into()),
        target_id: None,
        target_name: Some(format!("user{}@acme", i % 5000)),
        tenant_slug: Some(["acme", "beta"][(i % 2) as usize].into()),
        outcome: outcome.into(),
        external_id: Some(format!("{i:016x}")),
        metadata: RawJson::from_value(&json!({"original": {"id": format!("{i}"), "type": action,
            "data": {"accountName": format!("user{}@acme", i % 5000), "spanId": 1432795268419584001u64 + i}}})),
        mapper: Some("bench@1".into()),
        unrecognised: i.is_multiple_of(97),
    }
}

fn main() {
    if !audit_ingest_tests::bench::started_by_cargo_bench() {
        return;
    }
    let tools = match find_tools() {
        Ok(t) => t,
        Err(missing) => {
            eprintln!("the page benchmark needs a browser: {missing}");
            std::process::exit(1);
        }
    };
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Arc::new(SqliteStore::open(&dir.path().join("a.sqlite3"), Durability::Normal).unwrap());
        let store: Store = sqlite.clone();
        let now = Utc::now();
        let loading = Instant::now();
        audit_ingest_tests::bench::load_store(&sqlite, RECORDS, |i| record(i, now)).await;
        println!("{RECORDS} records loaded in {:.1} s", loading.elapsed().as_secs_f64());

        // The store's counts alone, as /audit/stats asks for them.
        for (label, span, bucket) in [
            ("1 h per minute", Span::hours(1), 60),
            ("24 h per hour", Span::hours(24), 3600),
            ("7 d per hour (every record)", Span::days(7), 3600),
        ] {
            for (scope_label, scope) in [
                ("all tenants", TenantScope::All),
                ("tenant acme", TenantScope::tenant("acme")),
            ] {
                let query = Query {
                    since: Some(now - span),
                    until: Some(now + Span::seconds(1)),
                    scope: scope.clone(),
                    ..Query::default()
                };
                let mut times = Vec::new();
                let mut counted = 0;
                for _ in 0..15 {
                    let t = Instant::now();
                    let o = store.overview(&query, bucket * 1_000_000).await.unwrap();
                    times.push(t.elapsed());
                    counted = o.buckets.iter().map(|b| b.count).sum::<u64>();
                }
                times.sort();
                println!(
                    "store overview, {label}, {scope_label}: {counted} records counted, median {:.1} ms, p90 {:.1} ms",
                    percentile(&times, 50.0).as_secs_f64() * 1000.0,
                    percentile(&times, 90.0).as_secs_f64() * 1000.0
                );
            }
        }

        let access = Access::service_token(Some(Secret::new(TOKEN)));
        let mut state = state_with_access(
            store.clone(),
            runtime(None, InstanceMode::Auto, Limits::default()),
            vec![stalwart_endpoint()],
            access,
        );
        state.pipeline = audit_ingest_tests::pipeline(
            store.clone(),
            runtime(None, InstanceMode::Auto, Limits::default()),
            Tenants::new(["acme".to_string(), "beta".to_string()]),
        );
        let served = Served::start(state.clone()).await;
        let base = served.base.clone();
        let output = tokio::task::spawn_blocking(move || {
            Command::new(&tools.node)
                .arg(tools.dir.join("bench.mjs"))
                .env("BASE_URL", &base)
                .env("TOKEN", TOKEN)
                .env("STALWART_SECRET", STALWART_SECRET)
                .env("CHROMIUM", &tools.chromium)
                .output()
                .expect("run node")
        })
        .await
        .unwrap();
        print!("{}", String::from_utf8_lossy(&output.stdout));
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "the browser run failed");
        state.live.close_all();
        served.stop().await;
    });
}
