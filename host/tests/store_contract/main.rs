//! The store contract: the same suite against every backend. The embedded
//! store runs every time; MongoDB runs when `AUDIT_TEST_MONGODB_URI` was set
//! at build time and is listed as ignored, with the reason, otherwise.

use std::collections::HashSet;
use std::time::Duration;

use audit_ingest::event::RawJson;
use audit_ingest::store::{ActionFilter, AuditStore, Checkpoint, Commit, NewRecord, Query, Store, TenantScope};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_750_000_000 + secs, 0).unwrap()
}

/// A checkpoint envelope stored as given (the store keeps it opaque).
fn checkpoint(source: &str, envelope: &serde_json::Value) -> Checkpoint {
    Checkpoint {
        source: source.into(),
        envelope: envelope.clone(),
        fence: None,
    }
}

fn record(source: &str, action: &str, secs: i64, external_id: Option<&str>) -> NewRecord {
    NewRecord {
        source: source.into(),
        action: action.into(),
        at: at(secs),
        received_at: at(secs + 1),
        actor_id: Some(format!("id-{secs}")),
        actor_name: Some(if secs % 2 == 0 {
            "Alice@Example.org".into()
        } else {
            "bob".into()
        }),
        actor_email: None,
        ip: Some(format!("192.0.2.{}", secs.rem_euclid(4))),
        target_type: Some("account".into()),
        target_id: None,
        target_name: Some(format!("mailbox-{secs}")),
        tenant_slug: (secs % 3 == 0).then(|| "acme".into()),
        outcome: "success".into(),
        external_id: external_id.map(str::to_string),
        metadata: RawJson::from_value(&json!({ "original": { "n": secs, "spanId": 1432795264225280001u64 } })),
        mapper: Some("test@1.0.0".into()),
        unrecognised: false,
    }
}

fn q() -> Query {
    Query {
        limit: 50,
        ..Query::default()
    }
}

async fn all_pages(store: &Store, mut query: Query) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let page = store.query(&query).await.unwrap();
        ids.extend(page.records.iter().map(|r| r.id.clone()));
        match page.next {
            Some(next) => query.after = Some(next),
            None => return ids,
        }
    }
}

async fn dedup(store: Store) {
    let s = store
        .insert(
            vec![record("s", "s.a", 1, Some("x")), record("s", "s.a", 1, Some("x"))],
            None,
        )
        .await
        .unwrap();
    assert_eq!((s.inserted, s.duplicates), (1, 1), "a duplicate inside one batch");
    assert_eq!(s.repeated, vec![1], "the second of the pair was the repeat");
    let s = store
        .insert(vec![record("s", "s.a", 1, Some("x"))], None)
        .await
        .unwrap();
    assert_eq!((s.inserted, s.duplicates), (0, 1), "the same externalId again");
    let s = store
        .insert(vec![record("other", "o.a", 1, Some("x"))], None)
        .await
        .unwrap();
    assert_eq!(s.inserted, 1, "the same externalId in another source is distinct");
    // Which records of a mixed batch were new, by position.
    let mixed = vec![
        record("s", "s.a", 3, Some("fresh-1")),
        record("s", "s.a", 1, Some("x")),
        record("s", "s.a", 4, Some("fresh-2")),
        record("other", "o.a", 1, Some("x")),
    ];
    let s = store.insert(mixed, None).await.unwrap();
    assert_eq!((s.inserted, s.duplicates, s.repeated.clone()), (2, 2, vec![1, 3]));
    assert!(s.is_new(0) && !s.is_new(1) && s.is_new(2) && !s.is_new(3));
    let nulls: Vec<_> = (0..3).map(|_| record("s", "s.a", 2, None)).collect();
    let s = store.insert(nulls, None).await.unwrap();
    assert_eq!(
        (s.inserted, s.duplicates),
        (3, 0),
        "records without externalId never collide"
    );
    assert_eq!(all_pages(&store, q()).await.len(), 7);
}

/// The original comes back byte for byte (key order, integers past 2^64,
/// a number's spelling) and times to the microsecond, by page and by id.
async fn originals_exact(store: Store) {
    let original =
        r#"{"z":1,"spanId":18446744073709551615,"big":123456789012345678901234567890,"f":1.50,"a":"\u00e9"}"#;
    let mut r = record("s", "s.a", 7, Some("exact"));
    r.metadata = RawJson::from_text(original.to_string()).unwrap();
    r.at = chrono::DateTime::from_timestamp_micros(1_750_000_000_123_456).unwrap();
    store.insert(vec![r.clone()], None).await.unwrap();
    let page = store.query(&q()).await.unwrap();
    let found = &page.records[0];
    assert_eq!(found.record.metadata.get(), original);
    assert_eq!(found.record.at, r.at);
    let by_id = store
        .get(&found.id, &audit_ingest::store::TenantScope::All)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_id.record.metadata.get(), original);
    assert_eq!(by_id.record.at, r.at);
}

async fn cursors(store: Store) {
    assert_eq!(store.load_checkpoint("authentik").await.unwrap(), None);
    let c1 = json!({ "created": "2026-01-01T00:00:00.123456Z", "pk": "a", "big": 18446744073709551615u64 });
    store.save_checkpoint(checkpoint("authentik", &c1)).await.unwrap();
    assert_eq!(store.load_checkpoint("authentik").await.unwrap(), Some(c1));
    let c2 = json!({ "offset": 42 });
    let s = store
        .insert(
            vec![record("ocis", "ocis.file_read", 3, Some("f:1"))],
            Some(checkpoint("ocis", &c2)),
        )
        .await
        .unwrap();
    assert_eq!(s.inserted, 1);
    assert_eq!(
        store.load_checkpoint("ocis").await.unwrap(),
        Some(c2),
        "saved with the batch"
    );
    assert!(
        store.load_checkpoint("authentik").await.unwrap().is_some(),
        "cursors are per source"
    );
}

async fn filters(store: Store) {
    let mut batch = Vec::new();
    for i in 0..30 {
        let (source, action) = match i % 3 {
            0 => ("stalwart", "stalwart.auth_failed"),
            1 => ("stalwart", "stalwart.auth_success"),
            _ => ("authentik", "authentik.login"),
        };
        batch.push(record(source, action, i, Some(&format!("e{i}"))));
    }
    store.insert(batch, None).await.unwrap();
    let count = |query: Query| {
        let store = store.clone();
        async move { all_pages(&store, query).await.len() }
    };
    assert_eq!(
        count(Query {
            source: Some("authentik".into()),
            ..q()
        })
        .await,
        10
    );
    let exact = ActionFilter::Exact("stalwart.auth_failed".into());
    assert_eq!(
        count(Query {
            action: Some(exact),
            ..q()
        })
        .await,
        10
    );
    let prefix = ActionFilter::Prefix("stalwart.auth_".into());
    assert_eq!(
        count(Query {
            action: Some(prefix),
            ..q()
        })
        .await,
        20
    );
    assert_eq!(
        count(Query {
            actor: Some("bob".into()),
            ..q()
        })
        .await,
        15
    );
    assert_eq!(
        count(Query {
            actor: Some("id-7".into()),
            ..q()
        })
        .await,
        1
    );
    assert_eq!(
        count(Query {
            ip: Some("192.0.2.1".into()),
            ..q()
        })
        .await,
        8
    );
    assert_eq!(
        count(Query {
            tenant: Some("acme".into()),
            ..q()
        })
        .await,
        10
    );
    assert_eq!(
        count(Query {
            since: Some(at(10)),
            until: Some(at(20)),
            ..q()
        })
        .await,
        10
    );
    assert_eq!(
        count(Query {
            text: Some("alice@example".into()),
            ..q()
        })
        .await,
        15,
        "case-insensitive"
    );
    assert_eq!(
        count(Query {
            text: Some("mailbox-2".into()),
            ..q()
        })
        .await,
        11,
        "over the target too"
    );
    assert_eq!(
        count(Query {
            text: Some("%".into()),
            ..q()
        })
        .await,
        0,
        "no wildcard injection"
    );
    let both = Query {
        source: Some("stalwart".into()),
        ip: Some("192.0.2.0".into()),
        ..q()
    };
    assert_eq!(count(both).await, 6, "filters combine");
    let newest = store.query(&Query { limit: 1, ..q() }).await.unwrap();
    assert_eq!(newest.records[0].record.at, at(29), "newest first");
    let one = store
        .get(&newest.records[0].id, &TenantScope::All)
        .await
        .unwrap()
        .expect("get by id");
    assert_eq!(
        one.record.metadata.parse()["original"]["spanId"],
        json!(1432795264225280001u64),
        "64-bit ids survive"
    );
    assert_eq!(store.get("no-such-id", &TenantScope::All).await.unwrap(), None);
}

/// Every record of a page walk, newest first.
async fn walk(store: &Store, mut query: Query) -> Vec<audit_ingest::store::Record> {
    let mut out = Vec::new();
    loop {
        let page = store.query(&query).await.unwrap();
        out.extend(page.records);
        match page.next {
            Some(next) => query.after = Some(next),
            None => return out,
        }
    }
}

/// A reader scoped to some tenants walks every filter page by page and sees
/// exactly the records of its tenants that the same filter finds in the
/// whole store: never another tenant's, never one without a tenant, and
/// `get` of a record outside the scope finds nothing.
async fn tenant_scopes(store: Store) {
    let tenants = [Some("acme"), Some("beta"), None, Some("gamma")];
    let mut batch = Vec::new();
    for i in 0..120 {
        let (source, action) = match i % 5 {
            0 | 3 => ("stalwart", "stalwart.auth_failed"),
            1 => ("stalwart", "stalwart.auth_success"),
            _ => ("authentik", "authentik.login"),
        };
        let mut r = record(source, action, i, Some(&format!("t{i}")));
        r.tenant_slug = tenants[(i % 4) as usize].map(str::to_string);
        batch.push(r);
    }
    store.insert(batch, None).await.unwrap();
    let filters: Vec<Query> = vec![
        q(),
        Query {
            source: Some("stalwart".into()),
            ..q()
        },
        Query {
            action: Some(ActionFilter::Exact("authentik.login".into())),
            ..q()
        },
        Query {
            action: Some(ActionFilter::Prefix("stalwart.auth_".into())),
            ..q()
        },
        Query {
            actor: Some("bob".into()),
            ..q()
        },
        Query {
            ip: Some("192.0.2.1".into()),
            ..q()
        },
        Query {
            tenant: Some("acme".into()),
            ..q()
        },
        Query {
            tenant: Some("beta".into()),
            source: Some("stalwart".into()),
            ..q()
        },
        Query {
            since: Some(at(30)),
            until: Some(at(90)),
            ..q()
        },
        Query {
            text: Some("mailbox-1".into()),
            ..q()
        },
        Query {
            text: Some("mailbox-1".into()),
            tenant: Some("gamma".into()),
            ..q()
        },
    ];
    let scopes = [
        TenantScope::tenant("acme"),
        TenantScope::tenant("beta"),
        TenantScope::Tenants(["acme".to_string(), "gamma".to_string()].into()),
        TenantScope::tenant("nobody"),
    ];
    for filter in &filters {
        let everything = walk(&store, filter.clone()).await;
        for scope in &scopes {
            for limit in [1, 7, 50] {
                let query = Query {
                    scope: scope.clone(),
                    limit,
                    ..filter.clone()
                };
                let seen: Vec<String> = walk(&store, query).await.into_iter().map(|r| r.id).collect();
                let expected: Vec<String> = everything
                    .iter()
                    .filter(|r| scope.admits(r.record.tenant_slug.as_deref()))
                    .map(|r| r.id.clone())
                    .collect();
                assert_eq!(seen, expected, "{scope:?}, limit {limit}, filter {filter:?}");
            }
        }
    }
    let everything = walk(&store, q()).await;
    let acme = TenantScope::tenant("acme");
    for r in &everything {
        let found = store.get(&r.id, &acme).await.unwrap();
        assert_eq!(
            found.is_some(),
            r.record.tenant_slug.as_deref() == Some("acme"),
            "get {} (tenant {:?}) within acme",
            r.id,
            r.record.tenant_slug
        );
    }
}

/// A source with many actions (each its own index range in the embedded
/// store) and an action prefix, paged in small pages: exactly the matching
/// records, newest first, each once, none of another source sharing the
/// same action names.
async fn unions_page_in_order(store: Store) {
    let mut batch = Vec::new();
    for i in 0..200 {
        // The newest 50 share one action, so one branch must be read on.
        let verb = if i >= 150 { 0 } else { (i * 7) % 40 };
        batch.push(record(
            "mail",
            &format!("mail.verb_{verb:02}"),
            i,
            Some(&format!("m{i}")),
        ));
        if i % 4 == 0 {
            batch.push(record(
                "mail-eu",
                &format!("mail.verb_{:02}", i % 40),
                i,
                Some(&format!("eu{i}")),
            ));
        }
    }
    store.insert(batch, None).await.unwrap();
    let times = |query: Query| {
        let store = store.clone();
        async move {
            let mut query = Query { limit: 7, ..query };
            let mut seen = Vec::new();
            loop {
                let page = store.query(&query).await.unwrap();
                seen.extend(page.records.iter().map(|r| (r.record.source.clone(), r.record.at)));
                match page.next {
                    Some(next) => query.after = Some(next),
                    None => return seen,
                }
            }
        }
    };
    let mail = times(Query {
        source: Some("mail".into()),
        ..q()
    })
    .await;
    let expected: Vec<_> = (0..200).rev().map(|i| ("mail".to_string(), at(i))).collect();
    assert_eq!(
        mail, expected,
        "a source over its 40 actions: all 200, newest first, once each"
    );
    let prefix = Query {
        action: Some(ActionFilter::Prefix("mail.verb_1".into())),
        ..q()
    };
    let found = times(prefix).await;
    let expected: Vec<_> = (0..200i64)
        .rev()
        .flat_map(|i| {
            let mut both = Vec::new();
            if i < 150 && (10..20).contains(&((i * 7) % 40)) {
                both.push(("mail".to_string(), at(i)));
            }
            if i % 4 == 0 && (10..20).contains(&(i % 40)) {
                both.push(("mail-eu".to_string(), at(i)));
            }
            both
        })
        .collect();
    let mut found_sorted = found.clone();
    found_sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    assert_eq!(found.len(), expected.len(), "a prefix over ten actions and two sources");
    assert!(found.windows(2).all(|w| w[0].1 >= w[1].1), "newest first");
    let mut expected_sorted = expected;
    expected_sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    assert_eq!(found_sorted, expected_sorted);
    let none = times(Query {
        source: Some("no-such-source".into()),
        ..q()
    })
    .await;
    assert!(none.is_empty());
    // With a tenant (every third second is `acme`): the tenant alone, with a
    // source, with an exact action and with a prefix.
    let acme = |i: &i64| i % 3 == 0;
    let tenant = times(Query {
        tenant: Some("acme".into()),
        ..q()
    })
    .await;
    let expected = (0..200).filter(acme).count() + (0..200).filter(|i| i % 4 == 0 && acme(i)).count();
    assert_eq!(tenant.len(), expected);
    assert!(tenant.windows(2).all(|w| w[0].1 >= w[1].1), "newest first");
    let mail_acme = times(Query {
        tenant: Some("acme".into()),
        source: Some("mail".into()),
        ..q()
    })
    .await;
    let expected: Vec<_> = (0..200)
        .rev()
        .filter(acme)
        .map(|i| ("mail".to_string(), at(i)))
        .collect();
    assert_eq!(mail_acme, expected);
    let exact = ActionFilter::Exact("mail.verb_00".into());
    let one = times(Query {
        tenant: Some("acme".into()),
        action: Some(exact),
        ..q()
    })
    .await;
    let expected = (0..200i64)
        .filter(acme)
        .map(|i| usize::from(i >= 150 || (i * 7) % 40 == 0) + usize::from(i % 4 == 0 && i % 40 == 0))
        .sum::<usize>();
    assert_eq!(one.len(), expected);
    let prefix = ActionFilter::Prefix("mail.verb_1".into());
    let some = times(Query {
        tenant: Some("acme".into()),
        action: Some(prefix),
        ..q()
    })
    .await;
    let expected = (0..200i64)
        .filter(acme)
        .map(|i| {
            usize::from(i < 150 && (10..20).contains(&((i * 7) % 40)))
                + usize::from(i % 4 == 0 && (10..20).contains(&(i % 40)))
        })
        .sum::<usize>();
    assert_eq!(some.len(), expected);
}

async fn pagination_while_records_arrive(store: Store) {
    let first: Vec<_> = (0..95)
        .map(|i| record("s", "s.a", i / 3, Some(&format!("p{i}"))))
        .collect();
    store.insert(first, None).await.unwrap();
    let existing: HashSet<String> = all_pages(&store, q()).await.into_iter().collect();
    assert_eq!(existing.len(), 95);

    let mut query = Query { limit: 10, ..q() };
    let mut seen = Vec::new();
    let mut round = 0;
    loop {
        let page = store.query(&query).await.unwrap();
        seen.extend(page.records.iter().map(|r| r.id.clone()));
        // New records arrive between pages: newer ones, and late ones with old times.
        round += 1;
        let arriving = vec![
            record("s", "s.a", 1000 + round, Some(&format!("new{round}"))),
            record("s", "s.a", -100 - round, Some(&format!("late{round}"))),
        ];
        store.insert(arriving, None).await.unwrap();
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no record repeated");
    assert!(
        existing.is_subset(&unique),
        "no record that existed before the walk was skipped"
    );
}

/// Actor and IP filters give the same answers whether the records are old
/// (in the embedded store's bulk-built lookup) or just written.
async fn actor_and_ip_old_and_new(store: Store) {
    let batch = |from: i64| {
        (from..from + 20)
            .map(|i| record("s", "s.a", i, Some(&format!("k{i}"))))
            .collect()
    };
    store.insert(batch(0), None).await.unwrap();
    // Long enough for an idle writer to add the lookup keys of the first batch.
    tokio::time::sleep(Duration::from_millis(600)).await;
    store.insert(batch(20), None).await.unwrap();
    let count = |query: Query| {
        let store = store.clone();
        async move { all_pages(&store, query).await }
    };
    let bob = count(Query {
        actor: Some("bob".into()),
        limit: 3,
        ..q()
    })
    .await;
    assert_eq!(bob.len(), 20, "odd seconds are bob, in both halves");
    assert_eq!(
        bob.iter().collect::<HashSet<_>>().len(),
        20,
        "no repeats across the two halves"
    );
    let by_id = count(Query {
        actor: Some("id-25".into()),
        ..q()
    })
    .await;
    assert_eq!(by_id.len(), 1);
    let ip = count(Query {
        ip: Some("192.0.2.3".into()),
        limit: 4,
        ..q()
    })
    .await;
    assert_eq!(ip.len(), 10);
    let both = count(Query {
        ip: Some("192.0.2.3".into()),
        actor: Some("bob".into()),
        ..q()
    })
    .await;
    assert_eq!(both.len(), 10, "192.0.2.3 is always an odd second");
    let newest = store
        .query(&Query {
            actor: Some("bob".into()),
            limit: 1,
            ..q()
        })
        .await
        .unwrap();
    assert_eq!(newest.records[0].record.at, at(39));
    let text = count(Query {
        text: Some("MAILBOX-3".into()),
        limit: 4,
        ..q()
    })
    .await;
    assert_eq!(text.len(), 11, "mailbox-3 and mailbox-30..39, old and new, any case");
    let short = count(Query {
        text: Some("ob".into()),
        ..q()
    })
    .await;
    assert_eq!(short.len(), 20, "a two-letter term still finds every bob");
}

/// Dead letters resolve into records in one step; catch-all records are
/// found and replaced in place, keeping their external id.
async fn dead_letters_and_remapping(store: Store) {
    use audit_ingest::store::DeadLetter;
    let letter = |n: u8| DeadLetter {
        source: "stalwart".into(),
        received_at: at(1),
        sender: None,
        transport: audit_ingest::event::Transport::Poll,
        headers: vec![("content-type".into(), "application/json".into())],
        origin: Some(format!("https://auth.example.com/api/v3/events/events/?page={n}")),
        mapper: Some("stalwart@1".into()),
        error: "rejected".into(),
        body: vec![n],
    };
    let first = store.dead_letter(letter(1)).await.unwrap();
    let second = store.dead_letter(letter(2)).await.unwrap();
    let page = store.dead_letters_after(Some(&first), 10).await.unwrap();
    assert_eq!(
        page.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
        vec![second.clone()]
    );
    assert_eq!(
        page[0].1,
        letter(2),
        "a letter keeps how it arrived: transport, headers, origin"
    );
    let resolved = vec![record("stalwart", "stalwart.auth_success", 1, Some("dl-1"))];
    let written = store.write(resolved, Commit::ResolveDeadLetter(first)).await.unwrap();
    assert_eq!(written.inserted, 1);
    let left: Vec<String> = store
        .dead_letters(10)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(left, vec![second]);

    let mut catch_all = record("stalwart", "stalwart.quantum_event", 2, Some("k-2"));
    catch_all.metadata = RawJson::from_value(&json!({ "original": { "n": 2 }, "unrecognised": true }));
    store
        .insert(
            vec![catch_all, record("stalwart", "stalwart.auth_failed", 3, Some("k-3"))],
            None,
        )
        .await
        .unwrap();
    let found = store.unrecognised_records(None, 10).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].record.external_id.as_deref(), Some("k-2"));
    let replacement = record("stalwart", "stalwart.quantum_entanglement", 2, Some("k-2"));
    store
        .write(vec![replacement], Commit::ReplaceRecord(found[0].id.clone()))
        .await
        .unwrap();
    assert!(store.unrecognised_records(None, 10).await.unwrap().is_empty());
    let all = all_pages(
        &store,
        Query {
            source: Some("stalwart".into()),
            ..q()
        },
    )
    .await;
    assert_eq!(all.len(), 3, "replaced, not added: {all:?}");
    let page = store
        .query(&Query {
            action: Some(ActionFilter::Exact("stalwart.quantum_entanglement".into())),
            ..q()
        })
        .await
        .unwrap();
    assert_eq!(page.records.len(), 1);
    assert_eq!(page.records[0].record.external_id.as_deref(), Some("k-2"));
    // Superseded, not erased: the correction names the record it replaced,
    // which is still found (out of the timeline) as it was, and names it back.
    let correction = &page.records[0].id;
    let lineage = store.lineage(correction).await.unwrap();
    assert_eq!(lineage.superseded_by, None);
    assert_eq!(lineage.supersedes.len(), 1, "{lineage:?}");
    let kept = store
        .get(&lineage.supersedes[0], &TenantScope::All)
        .await
        .unwrap()
        .expect("the superseded record is kept");
    assert_eq!(kept.record.action, "stalwart.quantum_event");
    assert_eq!(kept.record.external_id.as_deref(), Some("k-2"));
    assert_eq!(
        store.lineage(&kept.id).await.unwrap().superseded_by.as_deref(),
        Some(correction.as_str())
    );
}

async fn durable_across_reopen(make: impl Fn() -> Store) {
    let store = make();
    store
        .insert(vec![record("s", "s.a", 1, Some("d1"))], None)
        .await
        .unwrap();
    store.save_checkpoint(checkpoint("s", &json!({"n": 1}))).await.unwrap();
    drop(store);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let store = make();
    assert_eq!(all_pages(&store, q()).await.len(), 1);
    assert_eq!(store.load_checkpoint("s").await.unwrap(), Some(json!({"n": 1})));
}

mod embedded;
mod leases;
mod mongodb;
mod reads;
mod retention;

use reads::{commit_order, counted, expected_counts, overview_counts};
