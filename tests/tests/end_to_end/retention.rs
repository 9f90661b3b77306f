//! Retention as an operator runs it: records past their period are deleted
//! in batches while ingest goes on, a copy can be kept, and the store still
//! verifies afterwards, chain cut included; a cut no digest records does not.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use audit_ingest::event::RawJson;
use audit_ingest::evidence::verify::{Options, Verdict, verify};
use audit_ingest::evidence::{Digests, PublicKey, SigningKey};
use audit_ingest::retention::{Config, Retention, SourceRetention};
use audit_ingest::store::sqlite::chain::Finding;
use audit_ingest::store::{NewRecord, Store};
use audit_ingest::telemetry::Telemetry;
use audit_ingest_tests::{all_records, embedded_store};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;

fn record(source: &str, n: i64, at: DateTime<Utc>) -> NewRecord {
    NewRecord {
        source: source.into(),
        action: format!("{source}.auth_failed"),
        at,
        received_at: Utc::now(),
        actor_id: None,
        actor_name: Some(format!("user{n}@example.org")),
        actor_email: Some(format!("user{n}@example.org")),
        ip: Some(format!("198.51.100.{}", n % 250)),
        target_type: None,
        target_id: None,
        target_name: None,
        tenant_slug: None,
        outcome: "failure".into(),
        external_id: Some(format!("{source}-{n}")),
        metadata: RawJson::from_value(&json!({ "original": { "n": n } })),
        mapper: Some("test@1.0.0".into()),
        unrecognised: false,
    }
}

fn days_ago(days: i64, n: i64) -> DateTime<Utc> {
    Utc::now() - Duration::days(days) - Duration::seconds(n)
}

/// 30 days for `stalwart`, 90 for every other source.
fn periods(export_dir: Option<PathBuf>) -> Config {
    Config {
        retention_days: Some(90),
        sources: [("stalwart".to_string(), SourceRetention { retention_days: 30 })].into(),
        batch_size: 64,
        pause_ms: 0,
        export_dir,
        ..Config::default()
    }
}

fn verify_store(dir: &Path, key: &Path) -> Verdict {
    verify(&Options {
        store_file: dir.join("audit.sqlite3"),
        digest_dir: Some(dir.join("digests")),
        keys: vec![PublicKey::read(&audit_ingest::evidence::keys::public_path(key)).unwrap()],
        since: None,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_exactly_what_is_past_its_period_while_ingest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = embedded_store(dir.path());
    // Per source: 300 past the period, 300 within it (just inside: a day less).
    let mut old = Vec::new();
    for n in 0..300 {
        old.push(record("stalwart", n, days_ago(31, n)));
        old.push(record("ocis", n, days_ago(91, n)));
    }
    let mut young = Vec::new();
    for n in 300..600 {
        young.push(record("stalwart", n, days_ago(29, n)));
        young.push(record("ocis", n, days_ago(89, n)));
    }
    store.insert(old, None).await.unwrap();
    store.insert(young, None).await.unwrap();
    let telemetry = Telemetry::new();
    let retention = Retention::new(
        periods(Some(dir.path().join("expired"))),
        store.clone(),
        telemetry.clone(),
        None,
    );
    // Ingest of new events goes on through the whole pass.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for batch in 0..40 {
                let records = (0..25)
                    .map(|i| record("stalwart", 10_000 + batch * 25 + i, Utc::now()))
                    .collect();
                store.insert(records, None).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        })
    };
    let report = retention.pass(Utc::now()).await.unwrap();
    writer.await.unwrap();
    assert_eq!(report.records, 600, "{report:?}");
    let keep = |source: &str, days: i64| {
        let store = store.clone();
        let source = source.to_string();
        async move {
            let all = all_records(&store, &source).await;
            assert!(
                all.iter().all(|r| r.record.at > Utc::now() - Duration::days(days)),
                "a {source} record past its period was left"
            );
            all.len()
        }
    };
    assert_eq!(
        keep("stalwart", 30).await,
        300 + 1000,
        "young and concurrent records stay"
    );
    assert_eq!(keep("ocis", 90).await, 300);
    let metrics = telemetry.render(Default::default(), Default::default());
    assert!(
        metrics.contains("audit_ingest_retention_deleted_total{kind=\"records\"} 600"),
        "{metrics}"
    );
    // The copy holds every deleted record, as the export writes it.
    let file = report.export_file.expect("a copy was asked for");
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(&file).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let copied: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(copied.len(), 600);
    assert!(
        copied
            .iter()
            .all(|r| r["metadata"]["original"]["n"].as_i64().unwrap() < 300)
    );
    // A second pass finds nothing more.
    assert_eq!(retention.pass(Utc::now()).await.unwrap().records, 0);
}

/// What a service with a signing key leaves after retention: digests, the
/// deletions chained, the chain's prefix cut at a digest and a digest of
/// the cut.
struct Retained {
    dir: tempfile::TempDir,
    store: Store,
    key: PathBuf,
}

async fn retained(sign_after_cut: bool) -> Retained {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signing.key");
    SigningKey::generate(&key).unwrap();
    let store = embedded_store(dir.path());
    let digests = Arc::new(Digests::new(
        store.clone(),
        SigningKey::read(&key).unwrap(),
        dir.path().join("digests"),
    ));
    for batch in 0..5 {
        let records = (batch * 20..batch * 20 + 20)
            .map(|n| record("stalwart", n, days_ago(40, n)))
            .collect();
        store.insert(records, None).await.unwrap();
        digests.make().await.unwrap();
    }
    store
        .insert((100..120).map(|n| record("stalwart", n, Utc::now())).collect(), None)
        .await
        .unwrap();
    // Two records re-mapped (superseded, kept out of the timeline): one
    // past the period, which retention deletes with its correction, one within.
    for n in [5, 110] {
        let old = all_records(&store, "stalwart")
            .await
            .into_iter()
            .find(|r| r.record.external_id.as_deref() == Some(&format!("stalwart-{n}")))
            .unwrap();
        let mut correction = old.record.clone();
        correction.action = "stalwart.auth_success".into();
        store
            .write(vec![correction], audit_ingest::store::Commit::ReplaceRecord(old.id))
            .await
            .unwrap();
    }
    digests.make().await.unwrap();
    let retention = Retention::new(
        periods(None),
        store.clone(),
        Telemetry::new(),
        sign_after_cut.then(|| digests.clone()),
    );
    let report = retention.pass(Utc::now()).await.unwrap();
    // 100 past the period (the correction of record 5 among them) and the
    // superseded record 5.
    assert_eq!(report.records, 101);
    // The newest digest before the first write of a kept record: the fifth.
    assert_eq!(report.chain_cut, Some(5), "{report:?}");
    Retained { dir, store, key }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_verifies_after_retention_cut_its_chain_and_names_a_record_put_back() {
    let r = retained(true).await;
    let verdict = verify_store(r.dir.path(), &r.key);
    assert!(verdict.clean(), "{verdict:#?}");
    assert_eq!(verdict.chain.records, 20, "the kept records are compared");
    assert_eq!(
        verdict.chain.superseded, 1,
        "the superseded record within the period is kept"
    );
    assert!(
        verdict.warnings.iter().any(|w| w.contains("retention cut the chain")),
        "{:?}",
        verdict.warnings
    );
    // The digest signed after the cut says where the chain starts.
    let newest = std::fs::read_dir(r.dir.path().join("digests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let digest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(newest).unwrap()).unwrap();
    assert_eq!(digest["digest"]["chainStartsAfter"], 5);
    // Someone puts a deleted record back into the file.
    let conn = rusqlite::Connection::open(r.dir.path().join("audit.sqlite3")).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    conn.execute(
        "INSERT INTO audit_events (id, source, action, at, received_at, outcome, metadata) \
         VALUES (3, 'stalwart', 'stalwart.auth_success', 0, 0, 'success', '{}')",
        [],
    )
    .unwrap();
    let verdict = verify_store(r.dir.path(), &r.key);
    assert!(!verdict.clean());
    assert!(
        verdict.chain.findings.contains(&Finding::Inserted { id: 3 }),
        "{:?}",
        verdict.chain.findings
    );
    drop(r.store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_that_no_signed_digest_records_fails_verification() {
    let r = retained(false).await;
    let verdict = verify_store(r.dir.path(), &r.key);
    assert!(!verdict.clean(), "{verdict:#?}");
    assert!(
        verdict.problems.iter().any(|p| p.contains("no digest records the cut")),
        "{:?}",
        verdict.problems
    );
    drop(r.store);
}
