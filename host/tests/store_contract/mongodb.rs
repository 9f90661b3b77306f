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

async fn open(name: &str) -> Store {
    let uri = std::env::var("AUDIT_TEST_MONGODB_URI")
        .expect("set AUDIT_TEST_MONGODB_URI to run the store contract against MongoDB");
    let db = format!("audit_ingest_test_{name}_{}", std::process::id());
    Arc::new(MongoStore::connect(&uri, &db, "audit_events").await.unwrap())
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn originals_and_times_come_back_exactly() {
    originals_exact(open("exact").await).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn dedup_on_source_and_external_id() {
    dedup(open("dedup").await).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn cursor_save_and_load() {
    cursors(open("cursors").await).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn dead_letters_resolve_and_catch_all_records_are_replaced() {
    dead_letters_and_remapping(open("remap").await).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn every_filter() {
    filters(open("filters").await).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn a_tenant_scoped_reader_sees_only_its_tenants() {
    tenant_scopes(open("scopes").await).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn sources_and_prefixes_page_over_many_actions() {
    unions_page_in_order(open("unions").await).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn pagination_skips_and_repeats_nothing_while_records_arrive() {
    pagination_while_records_arrive(open("pages").await).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn actor_and_ip_filters_over_old_and_new_records() {
    actor_and_ip_old_and_new(open("lookup").await).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn data_survives_reconnecting() {
    let db = format!("reopen_{}", std::process::id());
    let uri = std::env::var("AUDIT_TEST_MONGODB_URI").unwrap();
    let store: Store = Arc::new(MongoStore::connect(&uri, &db, "audit_events").await.unwrap());
    store
        .insert(vec![record("s", "s.a", 1, Some("d1"))], None)
        .await
        .unwrap();
    drop(store);
    let store: Store = Arc::new(MongoStore::connect(&uri, &db, "audit_events").await.unwrap());
    assert_eq!(all_pages(&store, q()).await.len(), 1);
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn commits_are_read_in_commit_order() {
    commit_order(open("commits").await).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn the_overview_counts_in_the_store() {
    overview_counts(open("overview").await).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn one_lease_holder_and_fenced_checkpoints() {
    // Records go in before the cursor (no transaction): a refused cursor
    // leaves its records, which the new holder's re-read deduplicates.
    leases::one_holder_and_fenced_checkpoints(open("leases").await, false).await;
    leases::one_winner_among_many(open("leases_contended").await).await;
}

#[tokio::test]
#[cfg_attr(
    not(mongodb_tests),
    ignore = "skipped: set AUDIT_TEST_MONGODB_URI to run against MongoDB"
)]
async fn retention_deletes_what_is_due_and_nothing_else() {
    retention::expiry(open("retention").await).await;
}
