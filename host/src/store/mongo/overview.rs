//! The overview's counts on MongoDB: one aggregation per part, each under
//! the read budget. Buckets group on the millisecond `at` (whole buckets are
//! never finer than a second, so `atMicros` adds nothing here).

use std::collections::BTreeMap;

use futures_util::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};

use super::{MongoStore, read_failed, tenant_filter};
use crate::store::{BucketCount, Overview, Query, StoreError};

pub(super) async fn run(store: &MongoStore, q: &Query, bucket_micros: i64) -> Result<Overview, StoreError> {
    let (Some(since), Some(until)) = (q.since, q.until) else {
        return Err(StoreError::InvalidInput("an overview needs `since` and `until`".into()));
    };
    let mut scope = Document::new();
    match q.scope.reach(q.tenant.as_deref()) {
        Some(tenants) if tenants.is_empty() => return Ok(Overview::default()),
        Some(tenants) => {
            scope.insert("tenantSlug", tenant_filter(tenants));
        }
        None => {}
    }
    let mut range = scope.clone();
    range.insert(
        "at",
        doc! { "$gte": mongodb::bson::DateTime::from_chrono(since), "$lt": mongodb::bson::DateTime::from_chrono(until) },
    );
    if let Some(source) = &q.source {
        range.insert("source", source);
    }
    let bucket_ms = (bucket_micros / 1000).max(1);
    let ms = doc! { "$toLong": "$at" };
    let counts = aggregate(
        &store.events,
        vec![
            doc! { "$match": range },
            doc! { "$group": {
                "_id": {
                    "b": { "$subtract": [ ms.clone(), { "$mod": [ ms, bucket_ms ] } ] },
                    "s": "$source",
                    "o": "$outcome",
                },
                "n": { "$sum": 1 },
                "u": { "$sum": { "$cond": [ { "$eq": [ "$unrecognised", true ] }, 1, 0 ] } },
            } },
            doc! { "$sort": { "_id.b": 1, "_id.s": 1, "_id.o": 1 } },
        ],
    )
    .await?;
    let buckets = counts
        .iter()
        .filter_map(|d| {
            let key = d.get_document("_id").ok()?;
            Some(BucketCount {
                start: number(key.get("b")?)?.saturating_mul(1000),
                source: key.get_str("s").ok()?.to_string(),
                outcome: key.get_str("o").unwrap_or("unknown").to_string(),
                count: number(d.get("n")?)?.max(0) as u64,
                unrecognised: number(d.get("u")?)?.max(0) as u64,
            })
        })
        .collect();
    let newest = aggregate(
        &store.events,
        vec![
            doc! { "$match": { "$and": [ scope, { "at": { "$type": "date" } } ] } },
            doc! { "$sort": { "source": 1, "at": -1 } },
            doc! { "$group": { "_id": "$source", "at": { "$first": "$at" } } },
        ],
    )
    .await?;
    let latest = newest
        .iter()
        .filter_map(|d| {
            Some((
                d.get_str("_id").ok()?.to_string(),
                d.get_datetime("at").ok()?.timestamp_millis() * 1000,
            ))
        })
        .collect();
    let letters = aggregate(
        &store.dead_letters,
        vec![doc! { "$group": { "_id": "$source", "n": { "$sum": 1 } } }],
    )
    .await?;
    let dead_letters: BTreeMap<String, u64> = letters
        .iter()
        .filter_map(|d| Some((d.get_str("_id").ok()?.to_string(), number(d.get("n")?)?.max(0) as u64)))
        .collect();
    Ok(Overview {
        buckets,
        latest,
        dead_letters,
    })
}

async fn aggregate(
    collection: &mongodb::Collection<Document>,
    pipeline: Vec<Document>,
) -> Result<Vec<Document>, StoreError> {
    let mut cursor = collection
        .aggregate(pipeline)
        .max_time(crate::store::READ_BUDGET)
        .await
        .map_err(read_failed)?;
    let mut out = Vec::new();
    while let Some(d) = cursor.try_next().await.map_err(read_failed)? {
        out.push(d);
    }
    Ok(out)
}

fn number(b: &Bson) -> Option<i64> {
    match b {
        Bson::Int32(i) => Some(i64::from(*i)),
        Bson::Int64(i) => Some(*i),
        Bson::Double(f) if f.is_finite() => Some(*f as i64),
        _ => None,
    }
}
