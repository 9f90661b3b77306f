//! Timeline queries on the embedded store.
//!
//! A page is "the newest `limit` records matching every filter, after the
//! cursor". SQLite's planner, left alone, often picks an index that matches
//! many rows and then sorts them all. Here the plan is chosen explicitly:
//! one *driving* filter walks its `(column, at, id)` index newest first and
//! every other filter is checked on the way, so a page costs about as many
//! index steps as it has matches to skip, never a sort of the whole match.
//!
//! Filters that are a union (the actor is an id, a name *or* an e-mail; an
//! action prefix is several exact actions; a source is every action it has
//! recorded) run one ordered walk per branch and merge the newest (see
//! `union.rs`).

use rusqlite::types::Value as Sql;
use rusqlite::{Connection, params_from_iter};

use super::schema::{E_COLUMNS, TIME_INDEX};
use super::union::walk_union;
use super::{lookup, unavailable};
use crate::store::{ActionFilter, NewRecord, Page, PageCursor, Query, Record, StoreError, micros};

/// `e.tenant_slug IN (?, …)` for the tenants a query may reach, and their
/// values; `None` when it may reach every record.
pub(super) fn tenant_clause(reach: Option<&[String]>) -> Option<(String, Vec<Sql>)> {
    let tenants = reach?;
    let marks = vec!["?"; tenants.len()].join(", ");
    Some((
        format!("e.tenant_slug IN ({marks})"),
        tenants.iter().map(|t| Sql::Text(t.clone())).collect(),
    ))
}

/// One ordered index walk: `column = value` for each of `eq` (the index's
/// leading columns), forced onto `index`.
pub(super) struct Branch {
    pub(super) index: &'static str,
    pub(super) eq: Vec<(&'static str, String)>,
}

impl Branch {
    /// `e.<column> = ? AND …` for the SQL, and the values in order.
    pub(super) fn equalities(&self) -> (String, impl Iterator<Item = Sql> + '_) {
        let sql = self.eq.iter().map(|(c, _)| format!("e.{c} = ? AND ")).collect();
        (sql, self.eq.iter().map(|(_, v)| Sql::Text(v.clone())))
    }
}

pub(super) fn from_micros(us: i64) -> Result<chrono::DateTime<chrono::Utc>, rusqlite::Error> {
    chrono::DateTime::from_timestamp_micros(us)
        .ok_or_else(|| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Integer, "bad time".into()))
}

pub(super) fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Record, StoreError>> {
    let metadata: String = row.get(15)?;
    let metadata = match crate::event::RawJson::from_text(metadata) {
        Ok(m) => m,
        Err(e) => return Ok(Err(StoreError::corrupt_because("a record's metadata", e))),
    };
    Ok(Ok(Record {
        id: row.get::<_, i64>(0)?.to_string(),
        record: NewRecord {
            source: row.get(1)?,
            action: row.get(2)?,
            at: from_micros(row.get(3)?)?,
            received_at: from_micros(row.get(4)?)?,
            actor_id: row.get(5)?,
            actor_name: row.get(6)?,
            actor_email: row.get(7)?,
            ip: row.get(8)?,
            target_type: row.get(9)?,
            target_id: row.get(10)?,
            target_name: row.get(11)?,
            tenant_slug: row.get(12)?,
            outcome: row.get(13)?,
            external_id: row.get(14)?,
            metadata,
            mapper: row.get(16)?,
            unrecognised: row.get(17)?,
        },
    }))
}

/// Escapes `%`, `_` and `\` for a LIKE pattern with `ESCAPE '\'`.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The WHERE clause every branch shares: all filters, and the cursor.
fn conditions(q: &Query, reach: Option<&[String]>) -> Result<(String, Vec<Sql>), StoreError> {
    let mut sql = String::from("1 = 1");
    let mut args = Vec::new();
    let mut add = |clause: &str, values: Vec<Sql>| {
        sql.push_str(" AND ");
        sql.push_str(clause);
        args.extend(values);
    };
    if let Some(s) = &q.source {
        add("e.source = ?", vec![Sql::Text(s.clone())]);
    }
    match &q.action {
        Some(ActionFilter::Exact(a)) => add("e.action = ?", vec![Sql::Text(a.clone())]),
        Some(ActionFilter::Prefix(p)) => add(
            "e.action >= ? AND e.action < ?",
            vec![Sql::Text(p.clone()), Sql::Text(format!("{p}\u{10FFFF}"))],
        ),
        None => {}
    }
    if let Some(a) = &q.actor {
        let v = Sql::Text(a.clone());
        add(
            "(e.actor_id = ? OR e.actor_name = ? OR e.actor_email = ?)",
            vec![v.clone(), v.clone(), v],
        );
    }
    if let Some(ip) = &q.ip {
        add("e.ip = ?", vec![Sql::Text(ip.clone())]);
    }
    if let Some(outcome) = &q.outcome {
        add("e.outcome = ?", vec![Sql::Text(outcome.clone())]);
    }
    if let Some((clause, values)) = tenant_clause(reach) {
        add(&clause, values);
    }
    if let Some(since) = &q.since {
        add("e.at >= ?", vec![Sql::Integer(micros(since))]);
    }
    if let Some(until) = &q.until {
        add("e.at < ?", vec![Sql::Integer(micros(until))]);
    }
    if let Some(text) = &q.text {
        let pattern = Sql::Text(format!("%{}%", like_escape(text)));
        let cols = [
            "e.actor_id",
            "e.actor_name",
            "e.actor_email",
            "e.target_id",
            "e.target_name",
        ];
        let clause = cols
            .iter()
            .map(|c| format!("{c} LIKE ? ESCAPE '\\'"))
            .collect::<Vec<_>>()
            .join(" OR ");
        add(&format!("({clause})"), cols.iter().map(|_| pattern.clone()).collect());
    }
    if let Some(after) = &q.after {
        let id: i64 = after
            .id
            .parse()
            .map_err(|_| StoreError::InvalidInput("parameter `cursor` is not a cursor this API returned".into()))?;
        add("(e.at, e.id) < (?, ?)", vec![Sql::Integer(after.at), Sql::Integer(id)]);
    }
    Ok((sql, args))
}

/// The action index and the tenant index (by tenant, then action).
const ACTION_INDEX: &str = "audit_events_action_at";
const TENANT_INDEX: &str = "audit_events_tenant_action_at";

/// The distinct actions starting with `prefix` (of one tenant, when given):
/// one index seek per action, each starting right after the last one.
fn distinct_actions(conn: &Connection, tenant: Option<&str>, prefix: &str) -> Result<Vec<String>, StoreError> {
    let upper = format!("{prefix}\u{10FFFF}");
    let (index, tenant_clause) = match tenant {
        Some(_) => (TENANT_INDEX, "tenant_slug = ?3 AND"),
        None => (ACTION_INDEX, "?3 IS NULL AND"),
    };
    let seek = |op: &str| {
        format!(
            "SELECT action FROM audit_events INDEXED BY {index} WHERE {tenant_clause} \
             action {op} ?1 AND action < ?2 ORDER BY action LIMIT 1"
        )
    };
    // The first seek includes the prefix itself; each next one starts right after the last action.
    let (from_prefix, after_last) = (seek(">="), seek(">"));
    let mut out: Vec<String> = Vec::new();
    loop {
        let (sql, lower) = match out.last() {
            None => (&from_prefix, prefix),
            Some(last) => (&after_last, last.as_str()),
        };
        let next = conn
            .prepare_cached(sql)
            .map_err(unavailable)?
            .query_row(rusqlite::params![lower, upper, tenant], |r| r.get::<_, String>(0));
        match next {
            Ok(action) => out.push(action),
            Err(rusqlite::Error::QueryReturnedNoRows) => return Ok(out),
            Err(e) => return Err(unavailable(e)),
        }
    }
}

/// Every action a source has recorded.
fn source_actions(conn: &Connection, source: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT action FROM source_actions WHERE source = ?1")
        .map_err(unavailable)?;
    let actions = stmt
        .query_map([source], |r| r.get::<_, String>(0))
        .map_err(unavailable)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(unavailable)?;
    Ok(actions)
}

/// Chooses the driving index ranges: one per candidate action (the exact
/// action, those of a prefix, or those the source has recorded), and per
/// tenant on the tenant index when the query reaches only some tenants (a
/// `tenant` filter or the reader's scope), so "this action for this tenant"
/// is one range however rare the pair is among all records. `None` when no
/// indexed filter is set (the time index drives).
fn branches(conn: &Connection, q: &Query, reach: Option<&[String]>) -> Result<Option<Vec<Branch>>, StoreError> {
    let actions_of = |tenant: Option<&str>| -> Result<Vec<String>, StoreError> {
        match (&q.action, &q.source) {
            (Some(ActionFilter::Exact(a)), _) => Ok(vec![a.clone()]),
            (Some(ActionFilter::Prefix(p)), _) => distinct_actions(conn, tenant, p),
            (None, Some(s)) => source_actions(conn, s),
            (None, None) => distinct_actions(conn, tenant, ""),
        }
    };
    let Some(tenants) = reach else {
        if q.action.is_none() && q.source.is_none() {
            return Ok(None);
        }
        let actions = actions_of(None)?;
        return Ok(Some(
            actions
                .into_iter()
                .map(|action| Branch {
                    index: ACTION_INDEX,
                    eq: vec![("action", action)],
                })
                .collect(),
        ));
    };
    let mut out = Vec::new();
    for tenant in tenants {
        for action in actions_of(Some(tenant))? {
            out.push(Branch {
                index: TENANT_INDEX,
                eq: vec![("tenant_slug", tenant.clone()), ("action", action)],
            });
        }
    }
    Ok(Some(out))
}

/// The records with these ids, newest first.
pub(super) fn fetch_ids(conn: &Connection, ids: &[i64]) -> Result<Vec<Record>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; ids.len()].join(", ");
    let sql = format!("SELECT {E_COLUMNS} FROM audit_events AS e WHERE e.id IN ({marks})");
    let mut found = fetch(conn, &sql, ids.iter().map(|id| Sql::Integer(*id)).collect(), ids.len())?;
    newest_first(&mut found);
    Ok(found)
}

/// Runs one SELECT of whole records and collects them.
fn fetch(conn: &Connection, sql: &str, args: Vec<Sql>, limit: usize) -> Result<Vec<Record>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(unavailable)?;
    let rows = stmt
        .query_map(params_from_iter(args), row_to_record)
        .map_err(unavailable)?;
    let mut out = Vec::with_capacity(limit);
    for row in rows {
        out.push(row.map_err(unavailable)??);
    }
    Ok(out)
}

/// The newest `limit` records matching `filters` along one index range
/// (`driver`), or along the time index when there is none.
fn walk(
    conn: &Connection,
    driver: Option<&Branch>,
    filters: &(String, Vec<Sql>),
    limit: usize,
) -> Result<Vec<Record>, StoreError> {
    let mut args = Vec::new();
    let index = driver.map_or(TIME_INDEX, |b| b.index);
    let mut sql = format!("SELECT {E_COLUMNS} FROM audit_events AS e INDEXED BY {index} WHERE ");
    if let Some(branch) = driver {
        let (clause, values) = branch.equalities();
        sql.push_str(&clause);
        args.extend(values);
    }
    sql.push_str(&filters.0);
    args.extend(filters.1.iter().cloned());
    sql.push_str(" ORDER BY e.at DESC, e.id DESC LIMIT ?");
    args.push(Sql::Integer(limit as i64));
    fetch(conn, &sql, args, limit)
}

/// Records with a lookup key, newest first: the lookup up to its watermark,
/// plus a direct scan of the events above it.
fn walk_lookup(
    conn: &Connection,
    key: &str,
    q: &Query,
    filters: &(String, Vec<Sql>),
    limit: usize,
) -> Result<Vec<Record>, StoreError> {
    let watermark = lookup::watermark(conn).map_err(unavailable)?;
    let mut sql = format!(
        "SELECT {E_COLUMNS} FROM lk.audit_lookup AS l CROSS JOIN main.audit_events AS e ON e.id = l.id \
         WHERE l.key = ? AND l.id <= ? AND "
    );
    let mut args = vec![Sql::Text(key.to_string()), Sql::Integer(watermark)];
    if let Some(after) = &q.after {
        let id: i64 = after
            .id
            .parse()
            .map_err(|_| StoreError::InvalidInput("parameter `cursor` is not a cursor this API returned".into()))?;
        sql.push_str("(l.at, l.id) < (?, ?) AND ");
        args.extend([Sql::Integer(after.at), Sql::Integer(id)]);
    }
    sql.push_str(&filters.0);
    args.extend(filters.1.iter().cloned());
    sql.push_str(" ORDER BY l.at DESC, l.id DESC LIMIT ?");
    args.push(Sql::Integer(limit as i64));
    let mut found = fetch(conn, &sql, args, limit)?;
    found.extend(walk_recent(conn, watermark, filters, limit)?);
    Ok(found)
}

/// The events above the lookup's watermark that match every filter: a
/// rowid range scan of the part the lookup has not covered yet.
fn walk_recent(
    conn: &Connection,
    watermark: i64,
    filters: &(String, Vec<Sql>),
    limit: usize,
) -> Result<Vec<Record>, StoreError> {
    let sql = format!(
        "SELECT {E_COLUMNS} FROM audit_events AS e NOT INDEXED WHERE e.id > ? AND {} \
         ORDER BY e.at DESC, e.id DESC LIMIT ?",
        filters.0
    );
    let mut args = vec![Sql::Integer(watermark)];
    args.extend(filters.1.iter().cloned());
    args.push(Sql::Integer(limit as i64));
    fetch(conn, &sql, args, limit)
}

/// Sorts newest first and drops repeats.
fn newest_first(records: &mut Vec<Record>) {
    records.sort_by(|a, b| {
        let key = |r: &Record| (r.record.at, r.id.parse::<i64>().unwrap_or(0));
        key(b).cmp(&key(a))
    });
    records.dedup_by(|a, b| a.id == b.id);
}

/// Records whose actor or target text contains the search term, through the
/// trigram index (up to the watermark) plus a scan above it; `None` when the
/// index cannot narrow the search (see [`lookup::text_matches`]).
fn walk_text(
    conn: &Connection,
    term: &str,
    filters: &(String, Vec<Sql>),
    limit: usize,
) -> Result<Option<Vec<Record>>, StoreError> {
    let watermark = lookup::watermark(conn).map_err(unavailable)?;
    let Some(ids) = lookup::text_matches(conn, term, watermark).map_err(unavailable)? else {
        return Ok(None);
    };
    let mut found = Vec::new();
    for chunk in ids.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!(
            "SELECT {E_COLUMNS} FROM audit_events AS e WHERE e.id IN ({marks}) AND {} \
             ORDER BY e.at DESC, e.id DESC LIMIT ?",
            filters.0
        );
        let mut args: Vec<Sql> = chunk.iter().map(|id| Sql::Integer(*id)).collect();
        args.extend(filters.1.iter().cloned());
        args.push(Sql::Integer(limit as i64));
        found.extend(fetch(conn, &sql, args, limit)?);
    }
    found.extend(walk_recent(conn, watermark, filters, limit)?);
    Ok(Some(found))
}

pub(super) fn run_query(conn: &Connection, q: &Query) -> Result<Page, StoreError> {
    let reach = q.scope.reach(q.tenant.as_deref());
    if reach.as_ref().is_some_and(Vec::is_empty) {
        return Ok(page(Vec::new(), q.limit));
    }
    let reach = reach.as_deref();
    let filters = conditions(q, reach)?;
    let want = q.limit + 1;
    if q.actor.is_none()
        && q.ip.is_none()
        && let Some(term) = &q.text
        && let Some(mut found) = walk_text(conn, term, &filters, want)?
    {
        newest_first(&mut found);
        found.truncate(want);
        return Ok(page(found, q.limit));
    }
    let lookup_key = match (&q.actor, &q.ip) {
        (Some(a), _) => Some(lookup::actor_key(a)),
        (None, Some(ip)) => Some(lookup::ip_key(ip)),
        _ => None,
    };
    let records = if let Some(key) = lookup_key.as_deref() {
        let mut found = walk_lookup(conn, key, q, &filters, want)?;
        newest_first(&mut found);
        found.truncate(want);
        found
    } else {
        match branches(conn, q, reach)? {
            None => walk(conn, None, &filters, want)?,
            Some(branches) if branches.len() == 1 => walk(conn, Some(&branches[0]), &filters, want)?,
            Some(branches) => walk_union(conn, &branches, &filters, want)?,
        }
    };
    Ok(page(records, q.limit))
}

/// Cuts `limit + 1` records to a page and its cursor.
fn page(mut records: Vec<Record>, limit: usize) -> Page {
    let next = if records.len() > limit {
        records.truncate(limit);
        records.last().map(|r| PageCursor {
            at: micros(&r.record.at),
            id: r.id.clone(),
            scope: String::new(),
        })
    } else {
        None
    };
    Page { records, next }
}
