//! Tamper evidence of the embedded store, as an auditor checks it: the
//! service chains every record it commits and signs digests of the chain;
//! `verify` re-computes it from the file and names each record someone
//! altered, deleted or inserted with write access to the file.

use std::path::{Path, PathBuf};

use audit_ingest::event::RawJson;
use audit_ingest::evidence::verify::{Options, Verdict, verify};
use audit_ingest::evidence::{Digests, PublicKey, SigningKey};
use audit_ingest::store::sqlite::chain::{Finding, link, record_hash};
use audit_ingest::store::{Commit, NewRecord, Store};
use audit_ingest_tests::embedded_store;
use chrono::{Duration, Utc};
use rusqlite::{Connection, params};
use serde_json::json;

fn record(n: i64) -> NewRecord {
    let at = Utc::now() - Duration::minutes(100 - n);
    NewRecord {
        source: "stalwart".into(),
        action: if n % 3 == 0 {
            "stalwart.auth_failed"
        } else {
            "stalwart.auth_success"
        }
        .into(),
        at,
        received_at: at + Duration::milliseconds(40),
        actor_id: None,
        actor_name: Some(format!("user{n}@example.org")),
        actor_email: Some(format!("user{n}@example.org")),
        ip: Some(format!("198.51.100.{}", n % 250)),
        target_type: Some("account".into()),
        target_id: None,
        target_name: Some(format!("user{n}@example.org")),
        tenant_slug: (n % 2 == 0).then(|| "acme".into()),
        outcome: if n % 3 == 0 { "failure" } else { "success" }.into(),
        external_id: Some(format!("e{n}")),
        metadata: RawJson::from_value(&json!({"original": {"id": n, "spanId": 1432795264225280001u64 + n as u64}})),
        mapper: Some("stalwart@0.3.0".into()),
        unrecognised: n == 7,
    }
}

/// A store as a service leaves it: 40 records in batches (with repeats),
/// a catch-all record replaced by its re-mapping, a digest signed with a
/// fresh key, then 5 records more that no digest covers yet.
struct Evidence {
    dir: tempfile::TempDir,
    store: Store,
    key: PathBuf,
}

impl Evidence {
    async fn made() -> Evidence {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("signing.key");
        SigningKey::generate(&key).unwrap();
        let store = embedded_store(dir.path());
        for batch in 0..4 {
            let records: Vec<_> = (batch * 10 + 1..=batch * 10 + 10).map(record).collect();
            store.insert(records, None).await.unwrap();
        }
        // Sent again: repeats are not chained.
        store.insert((1..=5).map(record).collect(), None).await.unwrap();
        let catch_all = audit_ingest_tests::all_records(&store, "stalwart")
            .await
            .into_iter()
            .find(|r| r.record.unrecognised)
            .unwrap();
        let mut remapped = record(7);
        remapped.action = "stalwart.auth_success".into();
        remapped.unrecognised = false;
        store
            .write(vec![remapped], Commit::ReplaceRecord(catch_all.id.clone()))
            .await
            .unwrap();
        let digests = Digests::new(
            store.clone(),
            SigningKey::read(&key).unwrap(),
            dir.path().join("digests"),
        );
        assert!(digests.make().await.unwrap().is_some());
        assert!(digests.make().await.unwrap().is_none(), "nothing new to sign");
        // A restarted service does not sign the same head again either.
        let restarted = Digests::new(
            store.clone(),
            SigningKey::read(&key).unwrap(),
            dir.path().join("digests"),
        );
        assert!(
            restarted.make().await.unwrap().is_none(),
            "already signed before the restart"
        );
        store.insert((41..=45).map(record).collect(), None).await.unwrap();
        Evidence { dir, store, key }
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("audit.sqlite3")
    }

    fn verify_with(&self, key: &Path) -> Verdict {
        verify(&Options {
            store_file: self.file(),
            digest_dir: Some(self.dir.path().join("digests")),
            keys: vec![PublicKey::read(&audit_ingest::evidence::keys::public_path(key)).unwrap()],
            since: None,
        })
        .unwrap()
    }

    fn verify(&self) -> Verdict {
        self.verify_with(&self.key)
    }

    /// A write connection to the file, as someone with access to it has.
    fn tamper(&self) -> Connection {
        let conn = Connection::open(self.file()).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
        conn
    }

    fn id_of(&self, external_id: &str) -> i64 {
        self.tamper()
            .query_row(
                "SELECT id FROM audit_events WHERE external_id = ?1",
                [external_id],
                |r| r.get(0),
            )
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_the_service_wrote_verifies_after_repeats_and_a_re_map() {
    let e = Evidence::made().await;
    let verdict = e.verify();
    assert!(verdict.clean(), "{verdict:#?}");
    // Six writes that stored records (the five-record repeat stored none)
    // and one removal (the replaced catch-all record); 45 records compared.
    assert_eq!(verdict.chain.entries, 7);
    assert_eq!(verdict.chain.records, 45);
    assert_eq!(
        verdict.chain.superseded, 1,
        "the catch-all record the re-map superseded is kept and checked"
    );
    assert_eq!(verdict.digests_checked, 1);
    assert!(
        verdict.warnings.iter().any(|w| w.contains("after the last digest")),
        "{:?}",
        verdict.warnings
    );
    drop(e.store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_each_record_altered_deleted_or_inserted_in_the_file() {
    let e = Evidence::made().await;
    let (altered, deleted) = (e.id_of("e12"), e.id_of("e30"));
    let conn = e.tamper();
    conn.execute("UPDATE audit_events SET ip = '10.6.6.6' WHERE id = ?1", [altered])
        .unwrap();
    conn.execute("DELETE FROM audit_events WHERE id = ?1", [deleted])
        .unwrap();
    conn.execute(
        "INSERT INTO audit_events (source, action, at, received_at, outcome, metadata) \
         VALUES ('stalwart', 'stalwart.auth_success', ?1, ?1, 'success', '{}')",
        params![Utc::now().timestamp_micros()],
    )
    .unwrap();
    let inserted = conn.last_insert_rowid();
    let verdict = e.verify();
    assert!(!verdict.clean());
    assert_eq!(
        verdict.chain.findings,
        vec![
            Finding::Altered { id: altered },
            Finding::Deleted { id: deleted },
            Finding::Inserted { id: inserted },
        ],
        "{verdict:#?}"
    );
    let text = audit_ingest::evidence::verify::render(&verdict);
    assert!(text.contains(&format!("ALTERED  record {altered}")), "{text}");
    assert!(text.contains("NOT verified"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_record_edited_or_deleted_is_named() {
    let e = Evidence::made().await;
    let kept: i64 = e
        .tamper()
        .query_row("SELECT id FROM superseded_events", [], |r| r.get(0))
        .unwrap();
    e.tamper()
        .execute(
            "UPDATE superseded_events SET action = 'stalwart.nothing' WHERE id = ?1",
            [kept],
        )
        .unwrap();
    let verdict = e.verify();
    assert!(!verdict.clean());
    assert_eq!(verdict.chain.findings, vec![Finding::Altered { id: kept }]);
    e.tamper()
        .execute("DELETE FROM superseded_events WHERE id = ?1", [kept])
        .unwrap();
    assert_eq!(e.verify().chain.findings, vec![Finding::Deleted { id: kept }]);
    drop(e.store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_rewritten_to_match_an_edit_fails_against_the_signed_digest() {
    let e = Evidence::made().await;
    let victim = e.id_of("e3");
    let conn = e.tamper();
    conn.execute("UPDATE audit_events SET outcome = 'success' WHERE id = ?1", [victim])
        .unwrap();
    // The attacker knows the algorithm: re-hash the record and re-link
    // every entry from its own onwards, so the chain is consistent again.
    let content = record_hash(&conn, victim).unwrap().unwrap();
    let (seq, first, mut run): (i64, i64, Vec<u8>) = conn
        .query_row(
            "SELECT seq, event_id, content FROM audit_chain WHERE kind = 1 AND event_id <= ?1 ORDER BY seq DESC LIMIT 1",
            [victim],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let at = (victim - first) as usize * 32;
    run[at..at + 32].copy_from_slice(&content);
    conn.execute("UPDATE audit_chain SET content = ?1 WHERE seq = ?2", params![run, seq])
        .unwrap();
    // The chain value before the entry (all zeros before the first one).
    let mut previous: Vec<u8> = conn
        .query_row("SELECT chain FROM audit_chain WHERE seq = ?1", [seq - 1], |r| r.get(0))
        .unwrap_or_else(|_| vec![0; 32]);
    let rows: Vec<(i64, i64, i64, Vec<u8>)> = conn
        .prepare("SELECT seq, kind, event_id, content FROM audit_chain WHERE seq >= ?1 ORDER BY seq")
        .unwrap()
        .query_map([seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (s, kind, id, content) in rows {
        let chain = link(&previous.clone().try_into().unwrap(), s, kind, id, &content);
        conn.execute(
            "UPDATE audit_chain SET chain = ?1 WHERE seq = ?2",
            params![&chain[..], s],
        )
        .unwrap();
        previous = chain.to_vec();
    }
    let verdict = e.verify();
    assert!(
        verdict.chain.findings.is_empty(),
        "the chain is consistent again: {verdict:#?}"
    );
    assert!(!verdict.clean());
    assert!(
        verdict.problems.iter().any(|p| p.contains("were rewritten")),
        "{:?}",
        verdict.problems
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_signed_with_another_key_or_removed_from_the_store_is_refused() {
    let e = Evidence::made().await;
    // Someone with their own key signs the chain as it is now.
    let other = e.dir.path().join("other.key");
    SigningKey::generate(&other).unwrap();
    let forged = Digests::new(
        e.store.clone(),
        SigningKey::read(&other).unwrap(),
        e.dir.path().join("digests"),
    );
    forged.make().await.unwrap().unwrap();
    let verdict = e.verify();
    assert!(!verdict.clean());
    assert!(
        verdict
            .problems
            .iter()
            .any(|p| p.contains("is refused") && p.contains("does not verify")),
        "{:?}",
        verdict.problems
    );
    // Checked with the other key instead, the first digest is refused.
    assert!(!e.verify_with(&other).clean());

    // The store's copies deleted: the digest directory still says so.
    let e = Evidence::made().await;
    e.tamper().execute("DELETE FROM chain_digests", []).unwrap();
    let verdict = e.verify();
    assert!(
        verdict.problems.iter().any(|p| p.contains("missing from the store")),
        "{:?}",
        verdict.problems
    );
    // Both deleted: nothing signed is left, which fails too.
    std::fs::remove_dir_all(e.dir.path().join("digests")).unwrap();
    let verdict = e.verify();
    assert!(
        verdict.problems.iter().any(|p| p.contains("no signed digest")),
        "{:?}",
        verdict.problems
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_entries_deleted_with_their_records_fail_against_the_digest() {
    let e = Evidence::made().await;
    let (first, last) = (e.id_of("e20"), e.id_of("e25"));
    let conn = e.tamper();
    conn.execute("DELETE FROM audit_events WHERE id BETWEEN ?1 AND ?2", [first, last])
        .unwrap();
    conn.execute(
        "DELETE FROM audit_chain WHERE event_id BETWEEN ?1 AND ?2",
        [first, last],
    )
    .unwrap();
    let verdict = e.verify();
    assert!(
        verdict
            .chain
            .findings
            .iter()
            .any(|f| matches!(f, Finding::EntriesMissing { .. })),
        "{verdict:#?}"
    );
    assert!(!verdict.clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_signs_a_digest_at_shutdown_that_verify_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signing.key");
    SigningKey::generate(&key).unwrap();
    let mut config = audit_ingest::config::Config {
        data_dir: dir.path().join("data"),
        mappers_dir: dir.path().join("mappers.d"),
        ..audit_ingest::config::Config::default()
    };
    config.store.mongodb_uri = Default::default();
    config.evidence.signing_key = Some(key.clone());
    let settings = audit_ingest::config::Settings::resolve(config).unwrap();
    let app = audit_ingest::serve::build(settings).await.unwrap();
    let written = app
        .state
        .pipeline
        .write("stalwart", None, (1..=3).map(record).collect(), Commit::Records)
        .await
        .unwrap();
    assert_eq!(written.inserted, 3);
    app.stop(std::time::Duration::from_secs(5)).await;
    let digests: Vec<_> = std::fs::read_dir(dir.path().join("data/digests"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(digests.len(), 1, "{digests:?}");
    let verdict = verify(&Options {
        store_file: dir.path().join("data/audit.sqlite3"),
        digest_dir: Some(dir.path().join("data/digests")),
        keys: vec![SigningKey::read(&key).unwrap().public()],
        since: None,
    })
    .unwrap();
    assert!(verdict.clean(), "{verdict:#?}");
    assert_eq!(
        (verdict.chain.records, verdict.chain.entries, verdict.digests_checked),
        (3, 1, 1)
    );
    assert!(
        verdict.warnings.is_empty(),
        "the shutdown digest covers everything: {:?}",
        verdict.warnings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_key_rotation_both_keys_verify_their_digests() {
    let e = Evidence::made().await;
    let new = e.dir.path().join("new.key");
    SigningKey::generate(&new).unwrap();
    Digests::new(
        e.store.clone(),
        SigningKey::read(&new).unwrap(),
        e.dir.path().join("digests"),
    )
    .make()
    .await
    .unwrap()
    .unwrap();
    let public = |k: &Path| PublicKey::read(&audit_ingest::evidence::keys::public_path(k)).unwrap();
    let both = verify(&Options {
        store_file: e.file(),
        digest_dir: Some(e.dir.path().join("digests")),
        keys: vec![public(&e.key), public(&new)],
        since: None,
    })
    .unwrap();
    assert!(both.clean(), "{both:#?}");
    assert_eq!(both.digests_checked, 2);
    assert!(
        both.warnings.is_empty(),
        "the new digest covers the last entries: {:?}",
        both.warnings
    );
    // With the new key alone the old digest is refused, unless only digests
    // made since the rotation are asked for.
    assert!(!e.verify_with(&new).clean());
    let since = verify(&Options {
        store_file: e.file(),
        digest_dir: Some(e.dir.path().join("digests")),
        keys: vec![public(&new)],
        since: Some(Utc::now() - Duration::seconds(1)),
    })
    .unwrap();
    assert_eq!(since.digests_checked, 1, "{since:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_older_than_the_chain_starts_it_after_its_records_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.sqlite3");
    {
        let store = embedded_store(dir.path());
        store.insert((1..=10).map(record).collect(), None).await.unwrap();
    }
    // What a store made before the chain looks like: no chain tables.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let conn = Connection::open(&file).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    conn.execute_batch("DROP TABLE audit_chain; DROP TABLE chain_meta; DROP TABLE chain_digests;")
        .unwrap();
    drop(conn);
    let key = dir.path().join("signing.key");
    SigningKey::generate(&key).unwrap();
    let store = embedded_store(dir.path());
    store.insert((11..=15).map(record).collect(), None).await.unwrap();
    Digests::new(
        store.clone(),
        SigningKey::read(&key).unwrap(),
        dir.path().join("digests"),
    )
    .make()
    .await
    .unwrap()
    .unwrap();
    let verdict = verify(&Options {
        store_file: file,
        digest_dir: Some(dir.path().join("digests")),
        keys: vec![SigningKey::read(&key).unwrap().public()],
        since: None,
    })
    .unwrap();
    assert!(verdict.clean(), "{verdict:#?}");
    assert_eq!((verdict.chain.genesis_after, verdict.chain.records), (10, 5));
    assert!(
        verdict
            .warnings
            .iter()
            .any(|w| w.contains("records 1 to 10 were written before the chain")),
        "{:?}",
        verdict.warnings
    );
}
