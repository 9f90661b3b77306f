//! The contract against MongoDB, run when `AUDIT_TEST_MONGODB_URI` names a
//! server: `AUDIT_TEST_MONGODB_URI=mongodb://localhost:27017 cargo test`
//! (cargo rebuilds the tests with them; without it they show as ignored,
//! with the reason). A test binary built without them but started with the
//! variable fails in `the_mongodb_tests_are_built_in_when_a_server_is_named`
//! instead of skipping them silently.

use super::*;
use audit_ingest::store::mongo::MongoStore;
use std::sync::Arc;

#[test]
fn the_mongodb_tests_are_built_in_when_a_server_is_named() {
    let named = std::env::var("AUDIT_TEST_MONGODB_URI").is_ok_and(|v| !v.is_empty());
    if named && !cfg!(mongodb_tests) {
        panic!(
            "AUDIT_TEST_MONGODB_URI is set, but this test binary was built without the MongoDB tests: \
             set it when cargo builds them (`AUDIT_TEST_MONGODB_URI=... cargo test` rebuilds them)"
        );
    }
    if !named {
        eprintln!("SKIPPED: the MongoDB contract tests (set AUDIT_TEST_MONGODB_URI to run them)");
    }
}

/// A test's own database, dropped when this goes out of scope (at the end
/// of the statement that opened it, or when the test fails).
struct Scratch {
    uri: String,
    database: String,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let (uri, database) = (self.uri.clone(), self.database.clone());
        // Its own thread and runtime: the test's runtime may be unwinding.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let client = ::mongodb::Client::with_uri_str(&uri).await.ok()?;
                client.database(&database).drop().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop the test database {}", self.database);
        }
    }
}

fn scratch(name: &str) -> Scratch {
    let uri = std::env::var("AUDIT_TEST_MONGODB_URI")
        .expect("set AUDIT_TEST_MONGODB_URI to run the store contract against MongoDB");
    Scratch {
        uri,
        database: format!("audit_ingest_test_{name}_{}", std::process::id()),
    }
}

/// A store on a fresh database of its own, and the guard that drops it.
async fn open(name: &str) -> (Store, Scratch) {
    let db = scratch(name);
    let store: Store = Arc::new(
        MongoStore::connect(&db.uri, &db.database, "audit_events")
            .await
            .unwrap(),
    );
    (store, db)
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn originals_and_times_come_back_exactly() {
    originals_exact(open("exact").await.0).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn dedup_on_source_and_external_id() {
    dedup(open("dedup").await.0).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn cursor_save_and_load() {
    cursors(open("cursors").await.0).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn dead_letters_resolve_and_catch_all_records_are_replaced() {
    dead_letters_and_remapping(open("remap").await.0).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn every_filter() {
    filters(open("filters").await.0).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn a_tenant_scoped_reader_sees_only_its_tenants() {
    tenant_scopes(open("scopes").await.0).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn sources_and_prefixes_page_over_many_actions() {
    unions_page_in_order(open("unions").await.0).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn pagination_skips_and_repeats_nothing_while_records_arrive() {
    pagination_while_records_arrive(open("pages").await.0).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn actor_and_ip_filters_over_old_and_new_records() {
    actor_and_ip_old_and_new(open("lookup").await.0).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn data_survives_reconnecting() {
    let (store, db) = open("reopen").await;
    store
        .insert(vec![record("s", "s.a", 1, Some("d1"))], None)
        .await
        .unwrap();
    drop(store);
    let store: Store = Arc::new(
        MongoStore::connect(&db.uri, &db.database, "audit_events")
            .await
            .unwrap(),
    );
    assert_eq!(all_pages(&store, q()).await.len(), 1);
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn commits_are_read_in_commit_order() {
    commit_order(open("commits").await.0).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn the_overview_counts_in_the_store() {
    overview_counts(open("overview").await.0).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn one_lease_holder_and_fenced_checkpoints() {
    // Records go in before the cursor (no transaction): a refused cursor
    // leaves its records, which the new holder's re-read deduplicates.
    leases::one_holder_and_fenced_checkpoints(open("leases").await.0, false).await;
    leases::one_winner_among_many(open("leases_contended").await.0).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn retention_deletes_what_is_due_and_nothing_else() {
    retention::expiry(open("retention").await.0).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn records_mongodb_cannot_hold_are_refused_alone_and_large_letters_kept_whole() {
    let (store, _db) = open("poison").await;
    let mut nul_key = record("p", "p.a", 1, Some("nul"));
    nul_key.metadata = RawJson::from_value(&json!({ "original": { "a\u{0}b": 1 } }));
    let mut huge = record("p", "p.a", 2, Some("huge"));
    huge.metadata = RawJson::from_value(&json!({ "original": { "blob": "x".repeat(17 << 20) } }));
    let mut deep = json!(1);
    for _ in 0..120 {
        deep = json!({ "x": deep });
    }
    let mut nested = record("p", "p.a", 3, Some("deep"));
    nested.metadata = RawJson::from_value(&json!({ "original": deep }));
    let batch = vec![
        record("p", "p.a", 0, Some("ok-0")),
        nul_key,
        huge,
        nested,
        record("p", "p.a", 4, Some("ok-4")),
    ];
    let summary = store.insert(batch, None).await.unwrap();
    assert_eq!(summary.inserted, 2);
    let refused: Vec<u32> = summary.refused.iter().map(|r| r.position).collect();
    assert_eq!(refused, [1, 2, 3], "{:?}", summary.refused);
    assert_eq!(all_pages(&store, q()).await.len(), 2);
    // A dead letter larger than a document is kept in pieces, whole.
    let body: Vec<u8> = (0..(20u32 << 20)).map(|i| (i % 251) as u8).collect();
    let letter = audit_ingest::store::DeadLetter {
        source: "p".into(),
        received_at: at(0),
        sender: None,
        transport: Default::default(),
        headers: Vec::new(),
        origin: None,
        mapper: None,
        error: "too big".into(),
        body: body.clone(),
    };
    let id = store.dead_letter(letter).await.unwrap();
    let kept = store.dead_letters(10).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].0, id);
    assert!(kept[0].1.body == body, "the body comes back byte for byte");
}
