//! The contract of what the web page reads: commits in commit order (the
//! live stream) and counts per time bucket (the overview), for every backend.

use super::*;

/// The live stream's reads: commit order, a position to resume from, and
/// the same filters as pages (checked by `Query::matches`).
pub(super) async fn commit_order(store: Store) {
    assert_eq!(
        store.last_commit().await.unwrap(),
        None,
        "an empty store has no position"
    );
    assert!(store.committed_after(None, 10).await.unwrap().records.is_empty());
    // Committed newest event first: commit order is not time order.
    store
        .insert(
            vec![
                record("s", "s.late", 50, Some("c1")),
                record("s", "s.early", 5, Some("c2")),
            ],
            None,
        )
        .await
        .unwrap();
    let start = store.last_commit().await.unwrap().expect("a position");
    store
        .insert(
            vec![
                record("s", "s.old", 1, Some("c3")),
                record("t", "t.new", 60, Some("c4")),
            ],
            None,
        )
        .await
        .unwrap();
    let after = store.committed_after(Some(&start), 10).await.unwrap();
    let actions: Vec<&str> = after.records.iter().map(|r| r.record.action.as_str()).collect();
    assert_eq!(
        actions,
        ["s.old", "t.new"],
        "what committed after the position, in commit order"
    );
    assert_eq!(after.position.as_deref(), Some(after.records[1].id.as_str()));
    let none = store.committed_after(after.position.as_deref(), 10).await.unwrap();
    assert!(
        none.records.is_empty() && none.position.is_none(),
        "nothing after the end"
    );
    let all = store.committed_after(None, 3).await.unwrap();
    assert_eq!(all.records.len(), 3, "from the first commit, bounded by the limit");
    let mut only_t = q();
    only_t.source = Some("t".into());
    assert_eq!(after.records.iter().filter(|r| only_t.matches(&r.record)).count(), 1);
    assert!(matches!(
        store.committed_after(Some("not an id"), 1).await,
        Err(audit_ingest::store::StoreError::InvalidInput(_))
    ));
}

/// Counts per (bucket start, source, outcome) → (records, catch-all
/// records): what an overview must say, worked out from the records written.
pub(super) type BucketCounts = std::collections::BTreeMap<(i64, String, String), (u64, u64)>;

pub(super) fn expected_counts<'a>(records: impl Iterator<Item = &'a NewRecord>, bucket: i64) -> BucketCounts {
    let mut out = BucketCounts::new();
    for r in records {
        let us = audit_ingest::store::micros(&r.at);
        let e = out
            .entry((us - us.rem_euclid(bucket), r.source.clone(), r.outcome.clone()))
            .or_default();
        e.0 += 1;
        e.1 += u64::from(r.unrecognised);
    }
    out
}

/// What an overview says, in the same shape.
pub(super) fn counted(o: &audit_ingest::store::Overview) -> BucketCounts {
    o.buckets
        .iter()
        .map(|b| {
            (
                (b.start, b.source.clone(), b.outcome.clone()),
                (b.count, b.unrecognised),
            )
        })
        .collect()
}

/// The overview's counts: per bucket, source and outcome, within the range
/// and the reader's scope; each source's newest event; dead letters.
pub(super) async fn overview_counts(store: Store) {
    // 1,750,000,020 s is a whole minute, so the 120 records fill two minute buckets.
    let base = 20;
    let mut batch = Vec::new();
    for i in 0..120 {
        let mut r = record(
            if i % 2 == 0 { "s" } else { "t" },
            "x.login",
            base + i,
            Some(&format!("o{i}")),
        );
        r.outcome = if i % 3 == 0 { "failure" } else { "success" }.into();
        r.unrecognised = i % 10 == 0;
        batch.push(r);
    }
    store.insert(batch.clone(), None).await.unwrap();
    store
        .dead_letter(audit_ingest::store::DeadLetter {
            source: "s".into(),
            received_at: at(0),
            sender: None,
            transport: Default::default(),
            headers: Vec::new(),
            origin: None,
            mapper: None,
            error: "rejected".into(),
            body: b"x".to_vec(),
        })
        .await
        .unwrap();
    let range = |since: i64, until: i64, scope: TenantScope| Query {
        since: Some(at(since)),
        until: Some(at(until)),
        scope,
        ..q()
    };
    let minute = 60_000_000;
    let all: Vec<&NewRecord> = batch.iter().collect();
    let o = store
        .overview(&range(base, base + 120, TenantScope::All), minute)
        .await
        .unwrap();
    assert_eq!(counted(&o), expected_counts(all.iter().copied(), minute));
    assert_eq!(o.buckets.len(), 8, "2 buckets x 2 sources x 2 outcomes");
    assert_eq!(o.buckets.iter().map(|b| b.count).sum::<u64>(), 120);
    assert_eq!(o.buckets.iter().map(|b| b.unrecognised).sum::<u64>(), 12);
    assert_eq!(o.latest.get("t"), Some(&audit_ingest::store::micros(&at(base + 119))));
    assert_eq!(o.dead_letters.get("s"), Some(&1));
    // The range cuts, the source filter and the scope narrow.
    let o = store
        .overview(&range(base + 30, base + 90, TenantScope::All), minute)
        .await
        .unwrap();
    let inside: Vec<&NewRecord> = all
        .iter()
        .copied()
        .filter(|r| r.at >= at(base + 30) && r.at < at(base + 90))
        .collect();
    assert_eq!(counted(&o), expected_counts(inside.iter().copied(), minute));
    let mut only_s = range(base, base + 120, TenantScope::All);
    only_s.source = Some("s".into());
    let o = store.overview(&only_s, 3_600 * 1_000_000).await.unwrap();
    let of_s: Vec<&NewRecord> = all.iter().copied().filter(|r| r.source == "s").collect();
    assert_eq!(counted(&o), expected_counts(of_s.iter().copied(), 3_600 * 1_000_000));
    let o = store
        .overview(&range(base, base + 120, TenantScope::tenant("acme")), minute)
        .await
        .unwrap();
    let of_acme: Vec<&NewRecord> = all
        .iter()
        .copied()
        .filter(|r| r.tenant_slug.as_deref() == Some("acme"))
        .collect();
    assert_eq!(of_acme.len(), 40);
    assert_eq!(counted(&o), expected_counts(of_acme.iter().copied(), minute));
    let o = store
        .overview(&range(base, base + 120, TenantScope::tenant("nobody")), minute)
        .await
        .unwrap();
    assert!(o.buckets.is_empty() && o.latest.is_empty());
    // The outcome filter of pages.
    let mut failures = q();
    failures.outcome = Some("failure".into());
    failures.limit = 500;
    let page = store.query(&failures).await.unwrap();
    assert_eq!(page.records.len(), 40);
    assert!(page.records.iter().all(|r| r.record.outcome == "failure"));
}
