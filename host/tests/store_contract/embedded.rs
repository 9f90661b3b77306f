//! The contract against the embedded store, plus what only it has (migrations, the lookup).

use super::*;
use audit_ingest::store::sqlite::{Durability, SqliteStore};
use std::sync::Arc;

fn open(dir: &std::path::Path) -> Store {
    open_embedded(dir)
}

fn open_embedded(dir: &std::path::Path) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(&dir.join("a.sqlite3"), Durability::Full).unwrap())
}

/// Waits until the background lookup has indexed every record.
async fn lookup_caught_up(store: &SqliteStore) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while store.lookup_lag().unwrap() > 0 {
        assert!(std::time::Instant::now() < deadline, "the lookup never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Replacing the newest record must not hand its row id to the
/// replacement: the lookup, already past that id, would never index the
/// new record's actor and IP, and they would not be found.
#[tokio::test]
async fn a_replaced_newest_record_is_found_by_its_new_actor() {
    let d = tempfile::tempdir().unwrap();
    let sqlite = open_embedded(d.path());
    let store: Store = sqlite.clone();
    let mut newest = record("stalwart", "stalwart.quantum_event", 9, Some("k-9"));
    newest.metadata = RawJson::from_value(&json!({ "original": { "n": 9 }, "unrecognised": true }));
    store
        .insert(
            vec![record("stalwart", "stalwart.auth_failed", 1, Some("k-1")), newest],
            None,
        )
        .await
        .unwrap();
    lookup_caught_up(&sqlite).await;
    let old = store.unrecognised_records(None, 10).await.unwrap();
    let mut replacement = record("stalwart", "stalwart.quantum_entanglement", 9, Some("k-9"));
    replacement.actor_name = Some("carol".into());
    store
        .write(vec![replacement], Commit::ReplaceRecord(old[0].id.clone()))
        .await
        .unwrap();
    lookup_caught_up(&sqlite).await;
    let page = store
        .query(&Query {
            actor: Some("carol".into()),
            ..q()
        })
        .await
        .unwrap();
    assert_eq!(page.records.len(), 1, "the replacement is found by its actor");
    assert_eq!(page.records[0].record.action, "stalwart.quantum_entanglement");
    let stale = store
        .query(&Query {
            actor: Some("Alice@Example.org".into()),
            ..q()
        })
        .await
        .unwrap();
    assert!(
        stale
            .records
            .iter()
            .all(|r| r.record.external_id.as_deref() != Some("k-9")),
        "{stale:?}"
    );
}

#[tokio::test]
async fn retention_deletes_what_is_due_and_nothing_else() {
    let d = tempfile::tempdir().unwrap();
    retention::expiry(open(d.path())).await;
}

#[tokio::test]
async fn one_lease_holder_and_fenced_checkpoints() {
    let d = tempfile::tempdir().unwrap();
    leases::one_holder_and_fenced_checkpoints(open(d.path()), true).await;
    let d = tempfile::tempdir().unwrap();
    leases::one_winner_among_many(open(d.path())).await;
}

#[tokio::test]
async fn originals_and_times_come_back_exactly() {
    let d = tempfile::tempdir().unwrap();
    originals_exact(open(d.path())).await;
}

#[tokio::test]
async fn dedup_on_source_and_external_id() {
    let d = tempfile::tempdir().unwrap();
    dedup(open(d.path())).await;
}

#[tokio::test]
async fn cursor_save_and_load() {
    let d = tempfile::tempdir().unwrap();
    cursors(open(d.path())).await;
}

#[tokio::test]
async fn dead_letters_resolve_and_catch_all_records_are_replaced() {
    let d = tempfile::tempdir().unwrap();
    dead_letters_and_remapping(open(d.path())).await;
}

#[tokio::test]
async fn every_filter() {
    let d = tempfile::tempdir().unwrap();
    filters(open(d.path())).await;
}

#[tokio::test]
async fn a_tenant_scoped_reader_sees_only_its_tenants() {
    let d = tempfile::tempdir().unwrap();
    tenant_scopes(open(d.path())).await;
}

#[tokio::test]
async fn sources_and_prefixes_page_over_many_actions() {
    let d = tempfile::tempdir().unwrap();
    unions_page_in_order(open(d.path())).await;
}

/// A file written before `source_actions` existed (a per-source index,
/// no list of pairs) answers source filters after the upgrade.
#[tokio::test]
async fn a_file_from_before_source_actions_is_migrated() {
    let d = tempfile::tempdir().unwrap();
    let store = open(d.path());
    let batch: Vec<_> = (0..12)
        .map(|i| record(["a", "b", "c"][i as usize % 3], &format!("x.v{}", i % 4), i, None))
        .collect();
    store.insert(batch, None).await.unwrap();
    drop(store);
    let old = rusqlite::Connection::open(d.path().join("a.sqlite3")).unwrap();
    old.busy_timeout(Duration::from_secs(10)).unwrap();
    old.execute_batch(
        "DROP TABLE source_actions; DROP INDEX audit_events_tenant_action_at; \
         CREATE INDEX audit_events_source_at ON audit_events (source, at, id); \
         CREATE INDEX audit_events_tenant_at ON audit_events (tenant_slug, at, id) WHERE tenant_slug IS NOT NULL;",
    )
    .unwrap();
    drop(old);
    let store = open(d.path());
    assert_eq!(
        all_pages(
            &store,
            Query {
                source: Some("b".into()),
                ..q()
            }
        )
        .await
        .len(),
        4
    );
    assert_eq!(
        all_pages(
            &store,
            Query {
                tenant: Some("acme".into()),
                ..q()
            }
        )
        .await
        .len(),
        4
    );
    let again = rusqlite::Connection::open(d.path().join("a.sqlite3")).unwrap();
    let indexes_left: i64 = again
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name IN ('audit_events_source_at', 'audit_events_tenant_at')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexes_left, 0, "the old indexes are dropped");
}

#[tokio::test]
async fn pagination_skips_and_repeats_nothing_while_records_arrive() {
    let d = tempfile::tempdir().unwrap();
    pagination_while_records_arrive(open(d.path())).await;
}

#[tokio::test]
async fn actor_and_ip_filters_over_old_and_new_records() {
    let d = tempfile::tempdir().unwrap();
    actor_and_ip_old_and_new(open(d.path())).await;
}

#[tokio::test]
async fn a_lookup_left_from_other_events_is_rebuilt() {
    let d = tempfile::tempdir().unwrap();
    let sqlite = open_embedded(d.path());
    let old: Vec<_> = (0..30).map(|i| record("s", "s.a", i, Some(&format!("o{i}")))).collect();
    sqlite.write(old, Commit::Records).await.unwrap();
    lookup_caught_up(&sqlite).await;
    drop(sqlite);
    // The events file is replaced (say, restored from an older backup)
    // while the lookup file stays.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(d.path().join(format!("a.sqlite3{suffix}")));
    }
    let store = open(d.path());
    store
        .insert(vec![record("s", "s.a", 7, Some("new"))], None)
        .await
        .unwrap();
    let page = store
        .query(&Query {
            actor: Some("bob".into()),
            ..q()
        })
        .await
        .unwrap();
    assert_eq!(page.records.len(), 1, "only the one event that exists now");
}

#[tokio::test]
async fn data_survives_reopening() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().to_path_buf();
    durable_across_reopen(move || open(&path)).await;
}

#[tokio::test]
async fn commits_are_read_in_commit_order() {
    let d = tempfile::tempdir().unwrap();
    commit_order(open(d.path())).await;
}

#[tokio::test]
async fn the_overview_counts_in_the_store() {
    let d = tempfile::tempdir().unwrap();
    overview_counts(open(d.path())).await;
}

/// Whole hours are counted from the lookup's hourly counts: the answer is
/// the same before the lookup has caught up, after, and after a record in a
/// counted hour is replaced by its re-mapping.
#[tokio::test]
async fn hourly_counts_agree_with_the_records_before_and_after_the_lookup_and_a_replacement() {
    let d = tempfile::tempdir().unwrap();
    let sqlite = open_embedded(d.path());
    let store: Store = sqlite.clone();
    // 1,749,999,600 s is a whole hour; records every 90 s for four hours.
    let hour0 = -400;
    let mut batch = Vec::new();
    for i in 0..160 {
        let mut r = record(
            if i % 3 == 0 { "s" } else { "t" },
            "x.y",
            hour0 + 90 * i,
            Some(&format!("h{i}")),
        );
        r.outcome = if i % 4 == 0 { "failure" } else { "success" }.into();
        r.unrecognised = i == 50;
        if i == 50 {
            r.metadata = RawJson::from_value(&json!({ "original": { "n": i }, "unrecognised": true }));
        }
        batch.push(r);
    }
    let query = Query {
        since: Some(at(hour0 + 1800)),
        until: Some(at(hour0 + 3 * 3600 + 600)),
        ..q()
    };
    let hour = 3_600_000_000;
    let since = query.since.unwrap();
    let until = query.until.unwrap();
    let expect =
        |records: &[NewRecord]| expected_counts(records.iter().filter(|r| r.at >= since && r.at < until), hour);
    store.insert(batch.clone(), None).await.unwrap();
    let before = store.overview(&query, hour).await.unwrap();
    assert_eq!(counted(&before), expect(&batch), "before the lookup ran");
    lookup_caught_up(&sqlite).await;
    let after = store.overview(&query, hour).await.unwrap();
    assert_eq!(counted(&after), expect(&batch), "from the hourly counts");
    // Record 50 (in the second hour, a catch-all) is replaced by a recognised failure.
    let old = store.unrecognised_records(None, 10).await.unwrap();
    assert_eq!(old.len(), 1);
    let mut replacement = batch[50].clone();
    replacement.unrecognised = false;
    replacement.outcome = "failure".into();
    store
        .write(vec![replacement.clone()], Commit::ReplaceRecord(old[0].id.clone()))
        .await
        .unwrap();
    batch[50] = replacement;
    // The builder takes the removal out on its next pass.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = store.overview(&query, hour).await.unwrap();
        if counted(&now) == expect(&batch) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{:?} != {:?}",
            counted(&now),
            expect(&batch)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Days are sums of hours.
    let day = store.overview(&query, 24 * hour).await.unwrap();
    assert_eq!(
        day.buckets.iter().map(|b| b.count).sum::<u64>(),
        expect(&batch).values().map(|v| v.0).sum::<u64>()
    );
}

/// Retention deletes personal data everywhere the embedded store kept it:
/// the record, its actor and IP keys and its text in the lookup, its count,
/// and (once the lookup has taken it into account) the note of its removal.
#[tokio::test]
async fn retention_leaves_nothing_of_a_record_in_the_lookup() {
    let d = tempfile::tempdir().unwrap();
    let sqlite = open_embedded(d.path());
    let store: Store = sqlite.clone();
    let mut old = record("stalwart", "stalwart.auth_failed", 1, Some("old"));
    old.actor_name = Some("erase-me@example.org".into());
    old.actor_email = Some("erase-me@example.org".into());
    old.ip = Some("203.0.113.99".into());
    store
        .insert(
            vec![old, record("stalwart", "stalwart.auth_failed", 5000, Some("new"))],
            None,
        )
        .await
        .unwrap();
    lookup_caught_up(&sqlite).await;
    let lookup = rusqlite::Connection::open(d.path().join("a.sqlite3-lookup")).unwrap();
    let traces = |lookup: &rusqlite::Connection| -> (i64, i64, i64) {
        let keys = lookup
            .query_row(
                "SELECT count(*) FROM audit_lookup WHERE key IN ('a:erase-me@example.org', 'i:203.0.113.99')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let text = lookup
            .query_row(
                "SELECT count(*) FROM audit_text WHERE audit_text MATCH '\"erase-me\"'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let counted = lookup
            .query_row("SELECT coalesce(sum(n), 0) FROM audit_counts", [], |r| r.get(0))
            .unwrap();
        (keys, text, counted)
    };
    assert_eq!(traces(&lookup), (2, 1, 2), "indexed before");
    let expiry = audit_ingest::store::Expiry {
        otherwise: Some(at(100)),
        ..Default::default()
    };
    let due = store.expiring(&expiry, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(store.expire(vec![due[0].id.clone()]).await.unwrap(), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while traces(&lookup) != (0, 0, 1) {
        assert!(
            std::time::Instant::now() < deadline,
            "the lookup kept {:?}",
            traces(&lookup)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let found = store
        .query(&Query {
            actor: Some("erase-me@example.org".into()),
            ..q()
        })
        .await
        .unwrap();
    assert!(found.records.is_empty());
    // The next deletion prunes the note the lookup has taken in.
    assert_eq!(store.expire(Vec::new()).await.unwrap(), 0);
    let events = rusqlite::Connection::open(d.path().join("a.sqlite3")).unwrap();
    let notes: i64 = events
        .query_row("SELECT count(*) FROM removed_events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(notes, 0, "no e-mail address is left in the removal notes");
}

/// Two instances on one data directory (two store handles on one file,
/// each with its own writer and lookup builder, as two processes have):
/// written at once, the hash chain is one chain that verifies, the hourly
/// counts count every record once, and a lease one of them took fences the
/// other's checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_file_keep_one_chain_and_one_count() {
    let d = tempfile::tempdir().unwrap();
    let first = open_embedded(d.path());
    let second = open_embedded(d.path());
    let mut writers = Vec::new();
    let mut written = Vec::new();
    for (n, store) in [first.clone(), second.clone()].into_iter().enumerate() {
        let mut batches = Vec::new();
        for b in 0..40 {
            let batch: Vec<NewRecord> = (0..25)
                .map(|i| {
                    let k = (n * 1000 + b * 25 + i) as i64;
                    record(
                        if n == 0 { "s" } else { "t" },
                        "x.login",
                        k % 7200,
                        Some(&format!("{n}-{k}")),
                    )
                })
                .collect();
            written.extend(batch.clone());
            batches.push(batch);
        }
        let store: Store = store;
        writers.push(tokio::spawn(async move {
            for batch in batches {
                store.insert(batch, None).await.unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let report = audit_ingest::store::sqlite::chain::verify(&d.path().join("a.sqlite3"), &[]).unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.records, 2000);
    lookup_caught_up(&first).await;
    lookup_caught_up(&second).await;
    let query = Query {
        since: Some(at(0)),
        until: Some(at(7200)),
        ..q()
    };
    let hour = 3_600_000_000;
    for store in [&first, &second] {
        let o = store.overview(&query, hour).await.unwrap();
        assert_eq!(counted(&o), expected_counts(written.iter(), hour), "counted once");
    }
    let token = match first
        .take_lease("s", "instance-a", Duration::from_secs(30))
        .await
        .unwrap()
    {
        audit_ingest::store::Claim::Granted { token } => token,
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        second
            .take_lease("s", "instance-b", Duration::from_secs(30))
            .await
            .unwrap(),
        audit_ingest::store::Claim::Held { .. }
    ));
    let stale = Commit::Checkpoint(checkpoint("s", &json!({ "n": 1 })).fenced(Some(token + 1)));
    assert!(second.write(Vec::new(), stale).await.is_err());
    let current = Commit::Checkpoint(checkpoint("s", &json!({ "n": 2 })).fenced(Some(token)));
    second.write(Vec::new(), current).await.unwrap();
    assert_eq!(first.load_checkpoint("s").await.unwrap(), Some(json!({ "n": 2 })));
}
