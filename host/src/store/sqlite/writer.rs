//! The single writer: group commits of record batches (with their cursors)
//! and dead letters, in arrival order.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc;
use std::time::Duration;

use chrono::Utc;
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::chain::{Head, Run};
use super::schema::{INSERT, KEEP_SUPERSEDED, NOTE_REMOVED};
use super::unavailable;
use crate::store::{Checkpoint, Claim, DeadLetter, NewRecord, StoreError, WriteSummary, micros};

/// At most this many record jobs share one transaction.
const GROUP_COMMIT_JOBS: usize = 64;

/// How long a commit waits for more writes when the one before it held
/// several (writers are busy: a commit of many costs little more than a
/// commit of one); never when it held one (a single sender is not delayed).
const GROUP_COMMIT_WAIT: Duration = Duration::from_micros(300);

/// What a write removes in the same commit.
#[derive(Debug, Clone, Copy)]
pub(super) enum Also {
    /// Nothing.
    Nothing,
    /// The dead letter these records were mapped from.
    ResolveDeadLetter(i64),
    /// The record these records replace (deleted before they are inserted,
    /// so they may keep its external id).
    ReplaceRecord(i64),
}

/// Work for the writer thread.
pub(super) enum Job {
    /// Records (and optionally a checkpoint) in one commit.
    Write {
        batch: Vec<NewRecord>,
        checkpoint: Option<Checkpoint>,
        /// A row to delete in the same commit.
        also: Also,
        reply: oneshot::Sender<Result<WriteSummary, StoreError>>,
    },
    /// One dead letter; answers with its id.
    DeadLetter {
        letter: DeadLetter,
        reply: oneshot::Sender<Result<String, StoreError>>,
    },
    /// Retention: deletes these records (a chained entry) and dead letters,
    /// and prunes the removals the lookup has taken into account; answers
    /// with the records deleted.
    Expire {
        records: Vec<i64>,
        dead_letters: Vec<i64>,
        prune_through: i64,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// Retention of the chain: starts it after entry `seq` (a chained
    /// entry, once) and drops one batch of the entries up to it; answers
    /// with the entries dropped.
    Cut {
        seq: i64,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// Takes a lease (answers with the claim) or releases one (answers
    /// with none); see `lease.rs`.
    Lease {
        op: LeaseOp,
        reply: oneshot::Sender<Result<Option<Claim>, StoreError>>,
    },
}

/// What a [`Job::Lease`] does.
pub(super) enum LeaseOp {
    /// Grant or renew, or say who holds it.
    Take {
        name: String,
        owner: String,
        ttl: std::time::Duration,
    },
    /// Give it up.
    Release { name: String, owner: String },
}

type WriteReply = oneshot::Sender<Result<WriteSummary, StoreError>>;

/// One write job of a group: its records, what else it commits, its caller.
type GroupedWrite = (Vec<NewRecord>, (Option<Checkpoint>, Also), WriteReply);

/// The `(source, action)` pairs already in `source_actions`, so a row costs
/// the writer a hash lookup and only a new pair a table write.
#[derive(Default)]
struct KnownActions(HashMap<String, HashSet<String>>);

impl KnownActions {
    fn load(conn: &Connection) -> rusqlite::Result<KnownActions> {
        let mut known = KnownActions::default();
        let mut stmt = conn.prepare("SELECT source, action FROM source_actions")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            known.add(row.get(0)?, row.get(1)?);
        }
        Ok(known)
    }

    fn contains(&self, source: &str, action: &str) -> bool {
        self.0.get(source).is_some_and(|actions| actions.contains(action))
    }

    fn add(&mut self, source: String, action: String) {
        self.0.entry(source).or_default().insert(action);
    }
}

pub(super) fn writer_loop(mut conn: Connection, jobs: mpsc::Receiver<Job>, activity: super::lookup::WriterActivity) {
    // Freeing a written batch (thousands of small strings) is work the next
    // commit should not wait for: a helper thread does it.
    let (done, freed) = mpsc::channel::<Vec<NewRecord>>();
    let _ = std::thread::Builder::new()
        .name("store-free".into())
        .spawn(move || while freed.recv().is_ok() {});
    // Without the list every write would fail on a duplicate pair anyway;
    // starting empty only costs one redundant `INSERT OR IGNORE` per pair.
    let mut known = KnownActions::load(&conn).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "store: could not read source_actions; relisting pairs as they are written");
        KnownActions::default()
    });
    // Where the hash chain ends; without it no write may commit (an entry
    // would be missing from the chain), so every write fails until a restart.
    let mut head = match Head::load(&conn) {
        Ok(head) => Some(head),
        Err(e) => {
            tracing::error!(error = %e, "store: cannot read the hash chain; writes are refused");
            None
        }
    };
    let mut last_group = 0usize;
    while let Ok(first) = jobs.recv() {
        let mut writes = Vec::new();
        let mut next = Some(first);
        let mut waited = last_group < 2;
        while let Some(job) = next.take() {
            match job {
                Job::Write {
                    batch,
                    checkpoint,
                    also,
                    reply,
                } => writes.push((batch, (checkpoint, also), reply)),
                Job::DeadLetter { letter, reply } => {
                    let _ = reply.send(insert_dead_letter(&conn, &letter).map_err(unavailable));
                }
                Job::Expire {
                    records,
                    dead_letters,
                    prune_through,
                    reply,
                } => {
                    let answer = chained(&mut conn, &mut head, |tx, head| {
                        super::retention::expire(tx, head, &records, &dead_letters, prune_through)
                    });
                    activity.wrote();
                    let _ = reply.send(answer);
                }
                Job::Cut { seq, reply } => {
                    let answer = chained(&mut conn, &mut head, |tx, head| super::retention::cut(tx, head, seq));
                    let _ = reply.send(answer);
                }
                Job::Lease { op, reply } => {
                    let _ = reply.send(lease(&mut conn, op).map_err(unavailable));
                }
            }
            if writes.len() < GROUP_COMMIT_JOBS {
                next = jobs.try_recv().ok();
                if next.is_none() && !waited && !writes.is_empty() {
                    waited = true;
                    next = jobs.recv_timeout(GROUP_COMMIT_WAIT).ok();
                }
            }
        }
        if writes.is_empty() {
            continue;
        }
        last_group = writes.len();
        let outcome = match head.as_mut() {
            Some(chain) => {
                let before = *chain;
                let outcome = write_group(&mut conn, &writes, &mut known, chain);
                if outcome.is_err() {
                    // Rolled back: so is the chain.
                    *chain = before;
                }
                outcome
            }
            None => Err(rusqlite::Error::InvalidQuery),
        };
        activity.wrote();
        let mut summaries = match outcome {
            Ok(summaries) => Ok(summaries.into_iter()),
            Err(e) => Err(e.to_string()),
        };
        for (batch, _, reply) in writes {
            let answer = match &mut summaries {
                Ok(each) => each.next().unwrap_or_else(|| Ok(WriteSummary::default())),
                Err(e) => Err(unavailable(e.clone())),
            };
            let _ = reply.send(answer);
            let _ = done.send(batch);
        }
    }
}

/// Runs `f` in a transaction that may append to the chain: committed, or
/// rolled back with the chain's head as it was.
fn chained<T>(
    conn: &mut Connection,
    head: &mut Option<Head>,
    f: impl FnOnce(&rusqlite::Transaction<'_>, &mut Head) -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    let Some(chain) = head.as_mut() else {
        return Err(unavailable(
            "the hash chain could not be read at start; writes are refused",
        ));
    };
    let before = *chain;
    let outcome = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .and_then(|tx| {
            *chain = Head::current(&tx)?;
            let value = f(&tx, chain)?;
            tx.commit()?;
            Ok(value)
        });
    if outcome.is_err() {
        *chain = before;
    }
    outcome.map_err(unavailable)
}

fn insert_dead_letter(conn: &Connection, letter: &DeadLetter) -> rusqlite::Result<String> {
    conn.prepare_cached(
        "INSERT INTO dead_letters (source, received_at, sender, mapper, error, body, transport, headers, origin) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        letter.source,
        micros(&letter.received_at),
        letter.sender,
        letter.mapper,
        letter.error,
        letter.body,
        serde_json::to_value(letter.transport)
            .ok()
            .and_then(|t| t.as_str().map(str::to_string)),
        serde_json::to_string(&letter.headers).unwrap_or_else(|_| "[]".into()),
        letter.origin,
    ])?;
    Ok(conn.last_insert_rowid().to_string())
}

/// Inserts one row; returns whether it was new.
fn insert_row(stmt: &mut rusqlite::CachedStatement<'_>, r: &NewRecord) -> rusqlite::Result<bool> {
    stmt.raw_bind_parameter(1, &r.source)?;
    stmt.raw_bind_parameter(2, &r.action)?;
    stmt.raw_bind_parameter(3, micros(&r.at))?;
    stmt.raw_bind_parameter(4, micros(&r.received_at))?;
    stmt.raw_bind_parameter(5, &r.actor_id)?;
    stmt.raw_bind_parameter(6, &r.actor_name)?;
    stmt.raw_bind_parameter(7, &r.actor_email)?;
    stmt.raw_bind_parameter(8, &r.ip)?;
    stmt.raw_bind_parameter(9, &r.target_type)?;
    stmt.raw_bind_parameter(10, &r.target_id)?;
    stmt.raw_bind_parameter(11, &r.target_name)?;
    stmt.raw_bind_parameter(12, &r.tenant_slug)?;
    stmt.raw_bind_parameter(13, &r.outcome)?;
    stmt.raw_bind_parameter(14, &r.external_id)?;
    stmt.raw_bind_parameter(15, r.metadata.get())?;
    stmt.raw_bind_parameter(16, &r.mapper)?;
    stmt.raw_bind_parameter(17, r.unrecognised)?;
    Ok(stmt.raw_execute()? == 1)
}

/// Takes or releases a lease in a transaction of its own.
fn lease(conn: &mut Connection, op: LeaseOp) -> rusqlite::Result<Option<Claim>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let claim = match op {
        LeaseOp::Take { name, owner, ttl } => Some(super::lease::take(&tx, &name, &owner, ttl, Utc::now())?),
        LeaseOp::Release { name, owner } => {
            super::lease::release(&tx, &name, &owner, Utc::now())?;
            None
        }
    };
    tx.commit()?;
    Ok(claim)
}

/// Writes every job of a group in one transaction; each job's counts, or
/// why it was refused (a checkpoint whose lease moved on: none of that
/// job is written). `known` learns the group's new `(source, action)`
/// pairs once committed.
///
/// The transaction takes the write lock at its start and reads the chain's
/// end in it, so another process writing the same file (a second instance
/// on one data directory) extends the same chain instead of forking it.
fn write_group(
    conn: &mut Connection,
    group: &[GroupedWrite],
    known: &mut KnownActions,
    chain: &mut Head,
) -> rusqlite::Result<Vec<Result<WriteSummary, StoreError>>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    *chain = Head::current(&tx)?;
    let mut summaries = Vec::with_capacity(group.len());
    let mut new_pairs: Vec<(&str, &str)> = Vec::new();
    for (batch, (checkpoint, also), _) in group {
        if let Some(Checkpoint {
            source,
            fence: Some(token),
            ..
        }) = checkpoint
            && !super::lease::fence_holds(&tx, source, *token)?
        {
            summaries.push(Err(StoreError::Fenced {
                lease: source.clone(),
                token: *token,
            }));
            continue;
        }
        if let Also::ReplaceRecord(id) = also {
            // Kept as written (external id included) among the superseded.
            tx.prepare_cached(KEEP_SUPERSEDED)?.execute([id])?;
            // The old row gives up its external id (so its replacement may
            // take it) but stays until the new rows are in: deleted first,
            // the highest row's id would be handed out again, and the lookup
            // builder, already past it, would never index the new record.
            tx.prepare_cached("UPDATE audit_events SET external_id = NULL WHERE id = ?1")?
                .execute([id])?;
        }
        let mut insert = tx.prepare_cached(INSERT)?;
        let mut repeated = Vec::new();
        let mut run = Run::default();
        let mut first_new = None;
        for (position, r) in batch.iter().enumerate() {
            if insert_row(&mut insert, r)? {
                let id = tx.last_insert_rowid();
                first_new.get_or_insert(id);
                run.written(&tx, chain, id, r)?;
            } else {
                repeated.push(position as u32);
            }
            if !known.contains(&r.source, &r.action) && !new_pairs.contains(&(&r.source, &r.action)) {
                new_pairs.push((&r.source, &r.action));
            }
        }
        drop(insert);
        run.close(&tx, chain)?;
        if let Also::ReplaceRecord(id) = also {
            // Noted first: hourly counts may already hold it (see `lookup`).
            tx.prepare_cached(NOTE_REMOVED)?.execute([id])?;
            let by = first_new.unwrap_or(0);
            tx.prepare_cached("UPDATE superseded_events SET superseded_by = ?2 WHERE id = ?1")?
                .execute([*id, by])?;
            chain.superseded(&tx, *id, by)?;
            tx.prepare_cached("DELETE FROM audit_events WHERE id = ?1")?
                .execute([id])?;
        }
        if let Some(Checkpoint { source, envelope, .. }) = checkpoint {
            tx.prepare_cached(
                "INSERT INTO ingest_cursors (source, cursor, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
            )?
            .execute(params![source, envelope.to_string(), micros(&Utc::now())])?;
        }
        if let Also::ResolveDeadLetter(id) = also {
            tx.prepare_cached("DELETE FROM dead_letters WHERE id = ?1")?
                .execute([id])?;
        }
        summaries.push(Ok(WriteSummary::of(batch.len(), repeated)));
    }
    for (source, action) in &new_pairs {
        tx.prepare_cached("INSERT OR IGNORE INTO source_actions (source, action) VALUES (?1, ?2)")?
            .execute([source, action])?;
    }
    tx.commit()?;
    for (source, action) in new_pairs {
        known.add(source.to_string(), action.to_string());
    }
    Ok(summaries)
}
