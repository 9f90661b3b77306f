//! The overview's counts and the live stream's reads on the embedded store.
//!
//! Counting a time range reads the time index alone (it carries source,
//! outcome, tenant and the catch-all flag), never the rows; each source's
//! newest event is one index seek per recorded action.

use rusqlite::types::Value as Sql;
use rusqlite::{Connection, params_from_iter};

use super::query::{row_to_record, tenant_clause};
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
    let mut sql = format!(
        "SELECT e.at - (((e.at % ?1) + ?1) % ?1) AS b, e.source, e.outcome, count(*), sum(e.unrecognised) \
         FROM audit_events AS e INDEXED BY {TIME_INDEX} WHERE e.at >= ?2 AND e.at < ?3"
    );
    let mut args = vec![
        Sql::Integer(bucket),
        Sql::Integer(micros(&since)),
        Sql::Integer(micros(&until)),
    ];
    if let Some(source) = &q.source {
        sql.push_str(" AND e.source = ?");
        args.push(Sql::Text(source.clone()));
    }
    if let Some((clause, values)) = tenant_clause(reach.as_deref()) {
        sql.push_str(" AND ");
        sql.push_str(&clause);
        args.extend(values);
    }
    sql.push_str(" GROUP BY b, e.source, e.outcome ORDER BY b, e.source, e.outcome");
    let mut stmt = conn.prepare_cached(&sql).map_err(unavailable)?;
    let buckets = stmt
        .query_map(params_from_iter(args), |r| {
            Ok(BucketCount {
                start: r.get(0)?,
                source: r.get(1)?,
                outcome: r.get(2)?,
                count: r.get::<_, i64>(3)?.max(0) as u64,
                unrecognised: r.get::<_, i64>(4)?.max(0) as u64,
            })
        })
        .map_err(unavailable)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(unavailable)?;
    Ok(Overview {
        buckets,
        latest: latest(conn, reach.as_deref())?,
        dead_letters: dead_letters(conn)?,
    })
}

/// Each source's newest event time, within the tenants `reach` names.
fn latest(conn: &Connection, reach: Option<&[String]>) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
    let pairs: Vec<(String, String)> = conn
        .prepare_cached("SELECT source, action FROM source_actions")
        .map_err(unavailable)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(unavailable)?
        .collect::<Result<_, _>>()
        .map_err(unavailable)?;
    let mut out = std::collections::BTreeMap::new();
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

fn dead_letters(conn: &Connection) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
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
