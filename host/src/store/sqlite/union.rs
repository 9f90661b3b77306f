//! A page of a filter that is a union of index ranges (an action prefix is
//! several exact actions; a source is every action it has recorded).
//!
//! Each branch walks its `(column, at, id)` index newest first, reading only
//! `(at, id)` keys in small chunks; a heap merges the branch heads until the
//! page is full; then only the page's records are read whole. So a page costs
//! about `limit + branches` index steps, and no record is decoded twice or in
//! vain, however many branches there are (a source may have hundreds of
//! actions). One cached statement serves every branch and every refill.

use std::collections::{BinaryHeap, VecDeque};

use rusqlite::Connection;
use rusqlite::types::Value as Sql;

use super::query::{Branch, fetch_ids};
use super::unavailable;
use crate::store::{Record, StoreError};

/// One branch's state: keys read but not yet merged, where to read on from.
struct Cursor {
    buffered: VecDeque<(i64, i64)>,
    /// The oldest key read so far; the next chunk starts below it.
    below: (i64, i64),
    /// Whether the index range has no more keys.
    done: bool,
    /// Keys to read in the next chunk (doubles with every refill).
    chunk: usize,
}

/// The newest `want` records matching `filters` in any of `branches`
/// (which must all use the same index and columns), newest first.
pub(super) fn walk_union(
    conn: &Connection,
    branches: &[Branch],
    filters: &(String, Vec<Sql>),
    want: usize,
) -> Result<Vec<Record>, StoreError> {
    let Some(first) = branches.first() else {
        return Ok(Vec::new());
    };
    let sql = format!(
        "SELECT e.at, e.id FROM audit_events AS e INDEXED BY {} WHERE {}{} \
         AND (e.at, e.id) < (?, ?) ORDER BY e.at DESC, e.id DESC LIMIT ?",
        first.index,
        first.equalities().0,
        filters.0
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(unavailable)?;
    let mut read = |branch: &Branch, cursor: &mut Cursor| -> Result<(), StoreError> {
        let mut args = Vec::with_capacity(filters.1.len() + 4);
        args.extend(branch.equalities().1);
        args.extend(filters.1.iter().cloned());
        args.extend([Sql::Integer(cursor.below.0), Sql::Integer(cursor.below.1)]);
        args.push(Sql::Integer(cursor.chunk as i64));
        let keys = stmt
            .query_map(rusqlite::params_from_iter(args), |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(unavailable)?
            .collect::<Result<Vec<(i64, i64)>, _>>()
            .map_err(unavailable)?;
        cursor.done = keys.len() < cursor.chunk;
        if let Some(&oldest) = keys.last() {
            cursor.below = oldest;
        }
        cursor.buffered.extend(keys);
        cursor.chunk = (cursor.chunk * 2).min(want.max(1));
        Ok(())
    };
    let first_chunk = (want / branches.len() + 1).clamp(2, want.max(2));
    let mut cursors = Vec::with_capacity(branches.len());
    let mut heads = BinaryHeap::new();
    for (i, branch) in branches.iter().enumerate() {
        let mut cursor = Cursor {
            buffered: VecDeque::new(),
            below: (i64::MAX, i64::MAX),
            done: false,
            chunk: first_chunk,
        };
        read(branch, &mut cursor)?;
        if let Some(&key) = cursor.buffered.front() {
            heads.push((key, i));
        }
        cursors.push(cursor);
    }
    let mut page = Vec::with_capacity(want);
    while page.len() < want {
        let Some((key, i)) = heads.pop() else { break };
        page.push(key.1);
        let cursor = &mut cursors[i];
        cursor.buffered.pop_front();
        if cursor.buffered.is_empty() && !cursor.done {
            read(&branches[i], cursor)?;
        }
        if let Some(&next) = cursor.buffered.front() {
            heads.push((next, i));
        }
    }
    fetch_ids(conn, &page)
}
