//! The overview's counts and the live stream's reads on the embedded store.
//!
//! Whole hours are counted from the hourly counts the lookup builder keeps
//! (`lk.audit_counts`, see `lookup.rs`) plus what it has not counted yet (a
//! record removed by a re-map stays in them until its next pass, at most a
//! fraction of a second); the parts of hours at the edges
//! of a range, and buckets under an hour, from the time index, which
//! carries source, outcome, tenant and the catch-all flag (no row is read).
//! Each source's newest event is one index seek per recorded action.

use std::collections::BTreeMap;

use rusqlite::types::Value as Sql;
use rusqlite::{Connection, params_from_iter};

use super::lookup::{self, HOUR, hour_of};
use super::query::row_to_record;
use super::schema::{COLUMNS, TIME_INDEX};
use super::unavailable;
use crate::store::{BucketCount, Committed, Overview, Query, StoreError, micros};

/// Counts per bucket, newest event per source, dead letters per source.
pub(super) fn overview(conn: &Connection, q: &Query, bucket: i64) -> Result<Overview, StoreError> {
    let (Some(since), Some(until)) = (q.since, q.until) else {
        return Err(StoreError::InvalidInput("an overview needs `since` and `until`".into()));
    };
    let reach = q.scope.reach(q.tenant.as_deref());
    if reach.as_ref().is_some_and(Vec::is_empty) {
        return Ok(Overview::default());
    }
    let filter = Filter {
        source: q.source.clone(),
        tenants: reach,
    };
    let (since, until) = (micros(&since), micros(&until));
    let mut sums = Sums::new(bucket);
    // Whole hours come from the hourly counts, the rest from the time index.
    let (first_hour, end_hour) = (hour_of(since + HOUR - 1), hour_of(until));
    if bucket % HOUR == 0 && first_hour < end_hour {
        scan(conn, &filter, since, first_hour, &mut sums)?;
        hours(conn, &filter, first_hour, end_hour, &mut sums)?;
        scan(conn, &filter, end_hour, until, &mut sums)?;
    } else {
        scan(conn, &filter, since, until, &mut sums)?;
    }
    Ok(Overview {
        buckets: sums.into_buckets(),
        latest: latest(conn, filter.tenants.as_deref())?,
        dead_letters: dead_letters(conn)?,
    })
}

/// What the counts are narrowed to.
struct Filter {
    source: Option<String>,
    /// `None`: every record, with or without a tenant.
    tenants: Option<Vec<String>>,
}

impl Filter {
    /// ` AND source = ? AND tenant IN (...)` over `source` and `tenant` (a
    /// column holding '' for none, or `tenant_slug`), and its values.
    fn clause(&self, tenant: &str, args: &mut Vec<Sql>) -> String {
        let mut sql = String::new();
        if let Some(source) = &self.source {
            sql.push_str(" AND source = ?");
            args.push(Sql::Text(source.clone()));
        }
        if let Some(tenants) = &self.tenants {
            sql.push_str(&format!(" AND {tenant} IN ({})", vec!["?"; tenants.len()].join(", ")));
            args.extend(tenants.iter().map(|t| Sql::Text(t.clone())));
        }
        sql
    }
}

/// Counts by (bucket start, source, outcome).
struct Sums {
    bucket: i64,
    by: BTreeMap<(i64, String, String), (i64, i64)>,
}

impl Sums {
    fn new(bucket: i64) -> Sums {
        Sums {
            bucket,
            by: BTreeMap::new(),
        }
    }

    /// Adds rows of (time, source, outcome, count, catch-all count).
    fn add(&mut self, stmt: &mut rusqlite::CachedStatement<'_>, args: Vec<Sql>) -> Result<(), StoreError> {
        let mut rows = stmt.query(params_from_iter(args)).map_err(unavailable)?;
        while let Some(r) = rows.next().map_err(unavailable)? {
            let at: i64 = r.get(0).map_err(unavailable)?;
            let key = (
                at - at.rem_euclid(self.bucket),
                r.get(1).map_err(unavailable)?,
                r.get(2).map_err(unavailable)?,
            );
            let slot = self.by.entry(key).or_default();
            slot.0 += r.get::<_, i64>(3).map_err(unavailable)?;
            slot.1 += r.get::<_, i64>(4).map_err(unavailable)?;
        }
        Ok(())
    }

    fn into_buckets(self) -> Vec<BucketCount> {
        self.by
            .into_iter()
            .filter(|(_, (n, _))| *n > 0)
            .map(|((start, source, outcome), (n, unrecognised))| BucketCount {
                start,
                source,
                outcome,
                count: n as u64,
                unrecognised: unrecognised.max(0) as u64,
            })
            .collect()
    }
}

/// Counts `[from, to)` from the time index, which carries every column
/// counted (no row is read).
fn scan(conn: &Connection, f: &Filter, from: i64, to: i64, sums: &mut Sums) -> Result<(), StoreError> {
    if from >= to {
        return Ok(());
    }
    let mut args = vec![Sql::Integer(from), Sql::Integer(to), Sql::Integer(sums.bucket)];
    let narrow = f.clause("tenant_slug", &mut args);
    let sql = format!(
        "SELECT at - (((at % ?3) + ?3) % ?3) AS b, source, outcome, count(*), sum(unrecognised) \
         FROM audit_events INDEXED BY {TIME_INDEX} WHERE at >= ?1 AND at < ?2{narrow} GROUP BY b, source, outcome"
    );
    sums.add(&mut conn.prepare_cached(&sql).map_err(unavailable)?, args)
}

/// Counts the whole hours `[from, to)`: the hourly counts (events up to the
/// lookup's watermark, removals taken out by the builder's next pass), plus
/// the events above the watermark, not counted yet (a rowid range).
fn hours(conn: &Connection, f: &Filter, from: i64, to: i64, sums: &mut Sums) -> Result<(), StoreError> {
    let watermark = lookup::watermark(conn).map_err(unavailable)?;
    let mut args = vec![Sql::Integer(from), Sql::Integer(to)];
    let narrow = f.clause("tenant", &mut args);
    let sql = format!(
        "SELECT hour, source, outcome, sum(n), sum(unrecognised) FROM lk.audit_counts \
         WHERE hour >= ?1 AND hour < ?2{narrow} GROUP BY hour, source, outcome"
    );
    sums.add(&mut conn.prepare_cached(&sql).map_err(unavailable)?, args)?;
    let mut args = vec![Sql::Integer(from), Sql::Integer(to), Sql::Integer(watermark)];
    let narrow = f.clause("coalesce(tenant_slug, '')", &mut args);
    let sql = format!(
        "SELECT at, source, outcome, 1, unrecognised FROM audit_events NOT INDEXED \
         WHERE id > ?3 AND at >= ?1 AND at < ?2{narrow}"
    );
    sums.add(&mut conn.prepare_cached(&sql).map_err(unavailable)?, args)
}

/// Each source's newest event time, within the tenants `reach` names.
fn latest(conn: &Connection, reach: Option<&[String]>) -> Result<BTreeMap<String, i64>, StoreError> {
    let pairs: Vec<(String, String)> = conn
        .prepare_cached("SELECT source, action FROM source_actions")
        .map_err(unavailable)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(unavailable)?
        .collect::<Result<_, _>>()
        .map_err(unavailable)?;
    let mut out = BTreeMap::new();
    let mut newest = |source: &str, at: Option<i64>| {
        if let Some(at) = at {
            let slot = out.entry(source.to_string()).or_insert(at);
            *slot = (*slot).max(at);
        }
    };
    for (source, action) in &pairs {
        match reach {
            None => {
                let at = conn
                    .prepare_cached(
                        "SELECT max(at) FROM audit_events INDEXED BY audit_events_action_at WHERE action = ?1",
                    )
                    .map_err(unavailable)?
                    .query_row([action], |r| r.get::<_, Option<i64>>(0))
                    .map_err(unavailable)?;
                newest(source, at);
            }
            Some(tenants) => {
                for tenant in tenants {
                    let at = conn
                        .prepare_cached(
                            "SELECT max(at) FROM audit_events INDEXED BY audit_events_tenant_action_at \
                             WHERE tenant_slug = ?1 AND action = ?2",
                        )
                        .map_err(unavailable)?
                        .query_row([tenant, action], |r| r.get::<_, Option<i64>>(0))
                        .map_err(unavailable)?;
                    newest(source, at);
                }
            }
        }
    }
    Ok(out)
}

fn dead_letters(conn: &Connection) -> Result<BTreeMap<String, u64>, StoreError> {
    conn.prepare_cached("SELECT source, count(*) FROM dead_letters GROUP BY source")
        .map_err(unavailable)?
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64)))
        .map_err(unavailable)?
        .collect::<Result<_, _>>()
        .map_err(unavailable)
}

/// The newest record's id.
pub(super) fn last_commit(conn: &Connection) -> Result<Option<String>, StoreError> {
    let newest: Option<i64> = conn
        .query_row("SELECT max(id) FROM audit_events", [], |r| r.get(0))
        .map_err(unavailable)?;
    Ok(newest.map(|id| id.to_string()))
}

/// Records after id `after` in commit order (the writer hands out ids in
/// commit order and never reuses the highest).
pub(super) fn committed_after(conn: &Connection, after: i64, limit: usize) -> Result<Committed, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM audit_events WHERE id > ?1 ORDER BY id LIMIT ?2"
        ))
        .map_err(unavailable)?;
    let rows = stmt
        .query_map([after, limit as i64], row_to_record)
        .map_err(unavailable)?;
    let mut records = Vec::new();
    for row in rows {
        records.push(row.map_err(unavailable)??);
    }
    Ok(Committed {
        position: records.last().map(|r| r.id.clone()),
        records,
    })
}
