//! The contract of retention: what is due, deleting exactly that, and
//! dead letters, for every backend.

use super::*;
use audit_ingest::store::{DeadLetter, Expiry};

/// Records of two sources, one with a period of its own; the due ones come
/// back (and only those), deleting them deletes exactly them, and the
/// rest stays, dead letters alike.
pub(super) async fn expiry(store: Store) {
    let mut batch = Vec::new();
    for secs in 0..40 {
        batch.push(record(
            "short",
            &format!("short.a{}", secs % 3),
            secs,
            Some(&format!("s{secs}")),
        ));
        batch.push(record("long", "long.a", secs, Some(&format!("l{secs}"))));
        batch.push(record("kept", "kept.a", secs, None));
    }
    store.insert(batch, None).await.unwrap();
    let expiry = Expiry {
        per_source: [("short".to_string(), at(30))].into(),
        otherwise: Some(at(10)),
    };
    let mut deleted = 0;
    loop {
        let due = store.expiring(&expiry, 7).await.unwrap();
        assert!(due.len() <= 7, "a batch is bounded");
        if due.is_empty() {
            break;
        }
        for r in &due {
            let cutoff = expiry.cutoff(&r.record.source).unwrap();
            assert!(r.record.at < cutoff, "{r:?} is not due");
        }
        deleted += store.expire(due.iter().map(|r| r.id.clone()).collect()).await.unwrap();
        // Deleting the same ids again deletes nothing.
        assert_eq!(store.expire(due.into_iter().map(|r| r.id).collect()).await.unwrap(), 0);
    }
    // short: 0..30 (30), long and kept: 0..10 (10 each).
    assert_eq!(deleted, 50);
    let left = |source: &str| {
        let store = store.clone();
        let source = source.to_string();
        async move {
            let mut ats: Vec<i64> = walk(
                &store,
                Query {
                    source: Some(source),
                    ..q()
                },
            )
            .await
            .into_iter()
            .map(|r| r.record.at.timestamp() - at(0).timestamp())
            .collect();
            ats.sort();
            ats
        }
    };
    assert_eq!(left("short").await, (30..40).collect::<Vec<_>>());
    assert_eq!(left("long").await, (10..40).collect::<Vec<_>>());
    assert_eq!(left("kept").await, (10..40).collect::<Vec<_>>());
    // A record deleted can be written again: retention is not a tombstone.
    let again = store
        .insert(vec![record("short", "short.a0", 0, Some("s0"))], None)
        .await
        .unwrap();
    assert_eq!(again.inserted, 1);

    let letter = |source: &str, secs: i64| DeadLetter {
        source: source.into(),
        received_at: at(secs),
        sender: None,
        transport: audit_ingest::event::Transport::Webhook,
        headers: Vec::new(),
        origin: None,
        mapper: None,
        error: "not json".into(),
        body: vec![b'x'; 10],
    };
    for secs in [1, 5, 20, 35] {
        store.dead_letter(letter("short", secs)).await.unwrap();
        store.dead_letter(letter("long", secs)).await.unwrap();
    }
    let mut gone = 0;
    loop {
        let n = store.expire_dead_letters(&expiry, 3).await.unwrap();
        assert!(n <= 3);
        if n == 0 {
            break;
        }
        gone += n;
    }
    // short: 1, 5, 20 (before 30); long: 1, 5 (before 10).
    assert_eq!(gone, 5);
    let mut kept: Vec<(String, i64)> = store
        .dead_letters(100)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, l)| (l.source, l.received_at.timestamp() - at(0).timestamp()))
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        vec![("long".into(), 20), ("long".into(), 35), ("short".into(), 35)]
    );
    // Nothing expires without a period.
    assert!(store.expiring(&Expiry::default(), 10).await.unwrap().is_empty());
}
