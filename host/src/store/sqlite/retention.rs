//! Retention in the embedded store: finding what is due (read
//! connections), deleting it in small chained batches and cutting the
//! chain's own oldest entries (the writer).
//!
//! A deletion is noted in `removed_events` (so the lookup builder takes
//! the records out of its hourly counts, keys and text index) and chained
//! as one entry listing the ids, in the transaction that deletes them.

use rusqlite::{Connection, Transaction, params};

use super::chain::{self, Head};
use super::query::row_to_record;
use super::schema::{COLUMNS, NOTE_REMOVED};
use crate::store::{Expiry, Record, StoreError, micros};

/// Entries of the chain one cut job drops at most (a few milliseconds of
/// the writer's time).
pub(super) const CUT_BATCH: i64 = 10_000;

/// Up to `limit` records due under `expiry`: for each source that has a
/// cutoff, each of its actions' index range before the cutoff.
pub(super) fn expiring(conn: &Connection, expiry: &Expiry, limit: usize) -> Result<Vec<Record>, StoreError> {
    let pairs: Vec<(String, String)> = conn
        .prepare_cached("SELECT source, action FROM source_actions ORDER BY source, action")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(super::unavailable)?;
    let mut due = Vec::new();
    for (source, action) in pairs {
        let Some(cutoff) = expiry.cutoff(&source) else {
            continue;
        };
        let room = limit.saturating_sub(due.len());
        if room == 0 {
            break;
        }
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM audit_events WHERE action = ?1 AND at < ?2 AND source = ?3 \
                 ORDER BY at, id LIMIT ?4"
            ))
            .map_err(super::unavailable)?;
        let rows = stmt
            .query_map(params![action, micros(&cutoff), source, room as i64], row_to_record)
            .map_err(super::unavailable)?;
        for row in rows {
            due.push(row.map_err(super::unavailable)??);
        }
    }
    // Superseded records (out of the timeline, kept after a re-mapping)
    // expire by the same periods.
    let sources: Vec<String> = conn
        .prepare_cached("SELECT DISTINCT source FROM superseded_events")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(super::unavailable)?;
    for source in sources {
        let (Some(cutoff), room) = (expiry.cutoff(&source), limit.saturating_sub(due.len())) else {
            continue;
        };
        if room == 0 {
            break;
        }
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM superseded_events WHERE source = ?1 AND at < ?2 ORDER BY id LIMIT ?3"
            ))
            .map_err(super::unavailable)?;
        let rows = stmt
            .query_map(params![source, micros(&cutoff), room as i64], row_to_record)
            .map_err(super::unavailable)?;
        for row in rows {
            due.push(row.map_err(super::unavailable)??);
        }
    }
    Ok(due)
}

/// Up to `limit` dead letters that arrived before their source's cutoff.
pub(super) fn dead_letters_due(conn: &Connection, expiry: &Expiry, limit: usize) -> Result<Vec<i64>, StoreError> {
    let sources: Vec<String> = conn
        .prepare_cached("SELECT DISTINCT source FROM dead_letters")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(super::unavailable)?;
    let mut due = Vec::new();
    for source in sources {
        let Some(cutoff) = expiry.cutoff(&source) else {
            continue;
        };
        let room = limit.saturating_sub(due.len()) as i64;
        if room == 0 {
            break;
        }
        let ids: Vec<i64> = conn
            .prepare_cached("SELECT id FROM dead_letters WHERE source = ?1 AND received_at < ?2 ORDER BY id LIMIT ?3")
            .and_then(|mut s| {
                s.query_map(params![source, micros(&cutoff), room], |r| r.get(0))?
                    .collect()
            })
            .map_err(super::unavailable)?;
        due.extend(ids);
    }
    Ok(due)
}

/// The last removal the lookup builder has taken into account: those up
/// to it may be pruned.
pub(super) fn removals_seen(conn: &Connection) -> Result<i64, StoreError> {
    conn.query_row(
        "SELECT value FROM lk.lookup_meta WHERE name = 'removed_seen'",
        [],
        |r| r.get(0),
    )
    .map_err(super::unavailable)
}

/// Where the chain may be cut: the newest signed digest before the first
/// entry that wrote a record still kept, if it is past the current cut.
pub(super) fn cut_candidate(conn: &Connection) -> Result<Option<i64>, StoreError> {
    let (current, _) = chain::start(conn).map_err(super::unavailable)?;
    let needed = chain::first_still_needed(conn).map_err(super::unavailable)?;
    let signed: Option<i64> = conn
        .query_row(
            "SELECT max(last_seq) FROM chain_digests WHERE last_seq < ?1 AND last_seq > ?2",
            params![needed, current],
            |r| r.get(0),
        )
        .map_err(super::unavailable)?;
    Ok(signed)
}

/// Writer: deletes `records` and `dead_letters` and prunes removals up to
/// `prune_through`, in the caller's transaction. Returns the records deleted.
pub(super) fn expire(
    tx: &Transaction<'_>,
    head: &mut Head,
    records: &[i64],
    dead_letters: &[i64],
    prune_through: i64,
) -> rusqlite::Result<u64> {
    let mut ids = records.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut gone = Vec::with_capacity(ids.len());
    let mut timeline = Vec::with_capacity(ids.len());
    for id in ids {
        // Noted only if it is still there (a re-map may have replaced it).
        if tx.prepare_cached(NOTE_REMOVED)?.execute([id])? == 1 {
            timeline.push(id);
            gone.push(id);
        } else if tx
            .prepare_cached("DELETE FROM superseded_events WHERE id = ?1")?
            .execute([id])?
            == 1
        {
            // A superseded record: out of the lookup and counts already.
            gone.push(id);
        }
    }
    if !gone.is_empty() {
        head.expired(tx, &gone)?;
        let mut delete = tx.prepare_cached("DELETE FROM audit_events WHERE id = ?1")?;
        for id in &timeline {
            delete.execute([id])?;
        }
    }
    let mut delete = tx.prepare_cached("DELETE FROM dead_letters WHERE id = ?1")?;
    for id in dead_letters {
        delete.execute([id])?;
    }
    tx.prepare_cached("DELETE FROM removed_events WHERE seq <= ?1")?
        .execute([prune_through])?;
    Ok(gone.len() as u64)
}

/// Writer: starts the chain after entry `seq` (chaining the cut the first
/// time) and drops up to [`CUT_BATCH`] of the entries up to it. Returns
/// how many it dropped.
pub(super) fn cut(tx: &Transaction<'_>, head: &mut Head, seq: i64) -> rusqlite::Result<u64> {
    let (current, _) = chain::start(tx)?;
    if current < seq {
        let value: Vec<u8> = tx.query_row("SELECT chain FROM audit_chain WHERE seq = ?1", [seq], |r| r.get(0))?;
        let value = <[u8; 32]>::try_from(value.as_slice()).map_err(|_| rusqlite::Error::InvalidQuery)?;
        head.cut(tx, seq, &value)?;
    }
    let dropped = tx
        .prepare_cached(
            "DELETE FROM audit_chain WHERE seq IN (SELECT seq FROM audit_chain WHERE seq <= ?1 ORDER BY seq LIMIT ?2)",
        )?
        .execute(params![seq, CUT_BATCH])?;
    Ok(dropped as u64)
}
