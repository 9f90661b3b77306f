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

use audit_ingest::evidence::verify::{Options, verify};
use audit_ingest::evidence::{Digests, SigningKey};
use audit_ingest::store::sqlite::{Durability, SqliteStore};

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
        audit_ingest_tests::bench::load_store(&sqlite, total, audit_ingest_tests::bench::stored_record).await;
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
