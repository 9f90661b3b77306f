//! Export: how fast a store of 1,000,000 records streams out as NDJSON,
//! OCSF and gzip, and how much memory the `audit-ingest export` command
//! holds while it does.
//!
//! ```sh
//! cargo build --release -p audit-ingest          # the command measured for RSS
//! cargo bench -p audit-ingest-tests --bench export   # EXPORT_RECORDS=1000000
//! ```
//!
//! Throughput is the library's export (`export::to_writer`, what the HTTP
//! handler and the command both run) into a sink, three runs per format.
//! RSS is the release command's peak resident set (GNU time's `%M`),
//! exporting everything to /dev/null.

use std::time::Instant;

use audit_ingest::export::{Format, to_writer};
use audit_ingest::store::sqlite::{Durability, SqliteStore};
use audit_ingest::store::{Query, Store};

struct Counting(u64);

impl std::io::Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn main() {
    if !audit_ingest_tests::bench::started_by_cargo_bench() {
        return;
    }
    let total: u64 = std::env::var("EXPORT_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        let sqlite = std::sync::Arc::new(SqliteStore::open(&data.join("audit.sqlite3"), Durability::Normal).unwrap());
        audit_ingest_tests::bench::load_store(&sqlite, total, audit_ingest_tests::bench::stored_record).await;
        let store: Store = sqlite;
        for run in 1..=3 {
            let start = Instant::now();
            let mut pages = audit_ingest::export::Pages::new(store.clone(), Query::default());
            let mut n = 0;
            while let Some(page) = pages.next().await.unwrap() {
                n += page.len();
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "store pages alone run {run}: {n} records, {secs:.2} s = {:.0} records/s",
                n as f64 / secs
            );
        }
        for (name, format, gzip) in [
            ("ndjson", Format::Ndjson, false),
            ("ocsf", Format::Ocsf, false),
            ("ndjson+gzip", Format::Ndjson, true),
        ] {
            for run in 1..=3 {
                let mut out = Counting(0);
                let start = Instant::now();
                let n = to_writer(&store, Query::default(), format, gzip, &mut out)
                    .await
                    .unwrap();
                let secs = start.elapsed().as_secs_f64();
                assert_eq!(n, total);
                println!(
                    "{name} run {run}: {n} records, {:.0} MiB, {secs:.2} s = {:.0} records/s",
                    out.0 as f64 / 1048576.0,
                    n as f64 / secs
                );
            }
        }
    });
    drop(tokio);
    let binary = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/audit-ingest");
    if !binary.exists() || !std::path::Path::new("/usr/bin/time").exists() {
        println!("RSS: skipped (needs target/release/audit-ingest and GNU time at /usr/bin/time)");
        return;
    }
    for (name, args) in [
        ("ndjson", vec![]),
        ("ocsf", vec!["--format", "ocsf"]),
        ("ndjson --gzip", vec!["--gzip"]),
    ] {
        let out = std::process::Command::new("/usr/bin/time")
            .args(["-f", "%M %e"])
            .arg(&binary)
            .arg("export")
            .args(&args)
            .stdout(std::process::Stdio::null())
            .env("AUDIT_DATA_DIR", &data)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        let mut parts = last.split_whitespace();
        let kib: f64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
        let secs: f64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
        println!(
            "audit-ingest export {name}: peak RSS {:.1} MiB, {secs:.2} s = {:.0} records/s ({})",
            kib / 1024.0,
            total as f64 / secs,
            stderr.lines().rev().nth(1).unwrap_or_default()
        );
    }
}
