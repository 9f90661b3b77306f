//! Tamper evidence: how fast `verify` re-computes the embedded store's
//! hash chain and checks every record against it, over 1,000,000 records
//! written through the store's writer (which chains them), with a signed
//! digest to check at the end.
//!
//! `cargo bench -p audit-ingest-tests --bench evidence`   # EVIDENCE_RECORDS=1000000
//!
//! What chaining costs the writer is measured by the store and webhook
//! benchmarks, run on the commits before and after the chain (BENCHMARKS.md).

use std::time::Instant;

use audit_ingest::event::RawJson;
use audit_ingest::evidence::verify::{Options, verify};
use audit_ingest::evidence::{Digests, SigningKey};
use audit_ingest::store::NewRecord;
use audit_ingest::store::sqlite::{Durability, SqliteStore};
use chrono::{TimeZone, Utc};
use serde_json::json;

fn record(i: u64) -> NewRecord {
    let failed = i.is_multiple_of(3);
    NewRecord {
        source: "stalwart".into(),
        action: if failed {
            "stalwart.auth_failed"
        } else {
            "stalwart.auth_success"
        }
        .into(),
        at: Utc.timestamp_opt(1_750_000_000 + (i / 10) as i64, 0).unwrap(),
        received_at: Utc.timestamp_opt(1_750_000_000 + (i / 10) as i64, 5).unwrap(),
        actor_id: Some(format!("{}", i % 5000)),
        actor_name: Some(format!("user{}@example.org", i % 5000)),
        actor_email: Some(format!("user{}@example.org", i % 5000)),
        ip: Some(format!("10.{}.{}.{}", i % 7, i % 251, i % 13)),
        target_type: Some("account".into()),
        target_id: Some(format!("{}", i % 5000)),
        target_name: Some(format!("user{}@example.org", i % 5000)),
        tenant_slug: Some(["acme", "globex", "initech"][(i % 3) as usize].into()),
        outcome: if failed { "failure" } else { "success" }.into(),
        external_id: Some(format!("{i:016x}:0")),
        metadata: RawJson::from_value(
            &json!({"original": {"id": format!("1750000000{i}"), "createdAt": "2025-06-15T15:06:40Z",
            "type": "auth.failed", "data": {"accountName": format!("user{}", i % 5000), "accountId": i % 5000,
            "spanId": 1432795268419584001u64 + i, "reason": "Authentication failed", "remoteIp": "198.51.100.7",
            "listenerId": "imaps", "localPort": 993, "remotePort": 40022}}}),
        ),
        mapper: Some("stalwart@0.3.0".into()),
        unrecognised: false,
    }
}

fn main() {
    if !audit_ingest_tests::bench::started_by_cargo_bench() {
        return;
    }
    let total: u64 = std::env::var("EVIDENCE_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.sqlite3");
        let sqlite = std::sync::Arc::new(SqliteStore::open(&file, Durability::Normal).unwrap());
        audit_ingest_tests::bench::load_store(&sqlite, total, record).await;
        let key = dir.path().join("signing.key");
        SigningKey::generate(&key).unwrap();
        let store: audit_ingest::store::Store = sqlite.clone();
        let digests = Digests::new(store, SigningKey::read(&key).unwrap(), dir.path().join("digests"));
        let signing = Instant::now();
        digests.make().await.unwrap().unwrap();
        println!(
            "one digest signed and kept: {:.1} ms",
            signing.elapsed().as_secs_f64() * 1e3
        );
        let public = SigningKey::read(&key).unwrap().public();
        for run in 1..=3 {
            let start = Instant::now();
            let verdict = verify(&Options {
                store_file: file.clone(),
                digest_dir: Some(dir.path().join("digests")),
                keys: vec![public.clone()],
                since: None,
            })
            .unwrap();
            let secs = start.elapsed().as_secs_f64();
            assert!(verdict.clean() && verdict.chain.records == total, "{verdict:?}");
            println!(
                "verify run {run}: {total} records, {} entries, {} digest: {secs:.2} s = {:.0} records/s",
                verdict.chain.entries,
                verdict.digests_checked,
                total as f64 / secs
            );
        }
    });
}
