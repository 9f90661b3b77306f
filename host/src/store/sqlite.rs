//! The embedded store: SQLite (bundled) in WAL mode.
//!
//! One writer thread owns the only write connection. Concurrent batches are
//! group-committed: the writer takes every job waiting in its queue, writes
//! them in one transaction, and answers each caller with its own counts once
//! that transaction is committed (with `synchronous=FULL`, once it is on disk).
//! Reads use a small pool of read-only connections on the blocking pool.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params, params_from_iter};
use serde_json::Value;
use tokio::sync::oneshot;

use super::{
    ActionFilter, DeadLetter, NewRecord, Page, PageCursor, Query, Record, StoreError, WriteSummary, micros,
};

/// How many jobs may wait for the writer before callers wait to enqueue.
const WRITE_QUEUE: usize = 256;
/// At most this many jobs share one transaction.
const GROUP_COMMIT_JOBS: usize = 64;
/// Read connections kept open.
const READERS: usize = 4;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_events (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    action TEXT NOT NULL,
    at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    actor_id TEXT,
    actor_name TEXT,
    actor_email TEXT,
    ip TEXT,
    target_type TEXT,
    target_id TEXT,
    target_name TEXT,
    tenant_slug TEXT,
    outcome TEXT NOT NULL,
    external_id TEXT,
    metadata TEXT NOT NULL,
    mapper TEXT
);
-- The partial unique rule: only records with an external id can collide.
CREATE UNIQUE INDEX IF NOT EXISTS audit_events_source_external_id
    ON audit_events (source, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_at ON audit_events (at, id);
CREATE INDEX IF NOT EXISTS audit_events_source_at ON audit_events (source, at, id);
CREATE INDEX IF NOT EXISTS audit_events_action_at ON audit_events (action, at, id);
CREATE INDEX IF NOT EXISTS audit_events_tenant_at ON audit_events (tenant_slug, at, id)
    WHERE tenant_slug IS NOT NULL;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    sender TEXT,
    mapper TEXT,
    error TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS ingest_cursors (
    source TEXT PRIMARY KEY,
    cursor TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
";

const COLUMNS: &str = "id, source, action, at, received_at, actor_id, actor_name, actor_email, ip, \
     target_type, target_id, target_name, tenant_slug, outcome, external_id, metadata, mapper";

const INSERT: &str = "INSERT INTO audit_events (source, action, at, received_at, actor_id, \
     actor_name, actor_email, ip, target_type, target_id, target_name, tenant_slug, outcome, \
     external_id, metadata, mapper) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, \
     ?13, ?14, ?15, ?16) ON CONFLICT DO NOTHING";

/// How hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// `synchronous=FULL`: a commit survives power loss.
    #[default]
    Full,
    /// `synchronous=NORMAL`: a commit survives a process crash, not power loss.
    Normal,
}

enum Job {
    /// Records (and optionally a cursor) in one commit.
    Write {
        batch: Vec<NewRecord>,
        cursor: Option<(String, Value)>,
        reply: oneshot::Sender<Result<WriteSummary, StoreError>>,
    },
    /// One dead letter; answers with its id.
    DeadLetter {
        letter: DeadLetter,
        reply: oneshot::Sender<Result<String, StoreError>>,
    },
}

/// The embedded store.
pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::SyncSender<Job>,
    readers: Mutex<Vec<Connection>>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl SqliteStore {
    /// Opens (or creates) the database file and starts the writer thread.
    pub fn open(path: &Path, durability: Durability) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| unavailable(format!("create {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path)
            .map_err(|e| unavailable(format!("open {}: {e}", path.display())))?;
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA busy_timeout=10000;"
        ))
        .map_err(unavailable)?;
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        let (tx, rx) = mpsc::sync_channel(WRITE_QUEUE);
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(unavailable)?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer: tx,
            readers: Mutex::new(Vec::new()),
        })
    }

    pub(super) async fn insert(
        &self,
        batch: Vec<NewRecord>,
        cursor: Option<(String, Value)>,
    ) -> Result<WriteSummary, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.enqueue(Job::Write { batch, cursor, reply }).await?;
        answer
            .await
            .map_err(|_| unavailable("the store writer has stopped"))?
    }

    pub(super) async fn dead_letter(&self, letter: DeadLetter) -> Result<String, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.enqueue(Job::DeadLetter { letter, reply }).await?;
        answer
            .await
            .map_err(|_| unavailable("the store writer has stopped"))?
    }

    /// Hands a job to the writer. The queue is bounded; a full queue makes the
    /// caller wait here, which is the backpressure the ingest paths pass on.
    async fn enqueue(&self, job: Job) -> Result<(), StoreError> {
        let job = match self.writer.try_send(job) {
            Ok(()) => return Ok(()),
            Err(mpsc::TrySendError::Full(job)) => job,
            Err(mpsc::TrySendError::Disconnected(_)) => {
                return Err(unavailable("the store writer has stopped"));
            }
        };
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || writer.send(job))
            .await
            .map_err(unavailable)?
            .map_err(|_| unavailable("the store writer has stopped"))
    }

    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let conn = self.reader()?;
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let r = f(&conn);
            (conn, r)
        })
        .await
        .map_err(unavailable)?;
        let mut pool = self.readers.lock().expect("reader pool");
        if pool.len() < READERS {
            pool.push(conn);
        }
        result
    }

    fn reader(&self) -> Result<Connection, StoreError> {
        if let Some(c) = self.readers.lock().expect("reader pool").pop() {
            return Ok(c);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(unavailable)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(unavailable)?;
        Ok(conn)
    }

    pub(super) async fn dead_letters(&self, limit: usize) -> Result<Vec<(String, DeadLetter)>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, source, received_at, sender, mapper, error, body FROM dead_letters ORDER BY id LIMIT ?1",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map([limit as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?.to_string(),
                        DeadLetter {
                            source: r.get(1)?,
                            received_at: from_micros(r.get(2)?)?,
                            sender: r.get(3)?,
                            mapper: r.get(4)?,
                            error: r.get(5)?,
                            body: r.get(6)?,
                        },
                    ))
                })
                .map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
        .await
    }

    pub(super) async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        let query = query.clone();
        self.read(move |conn| run_query(conn, &query)).await
    }

    pub(super) async fn get(&self, id: &str) -> Result<Option<Record>, StoreError> {
        let Ok(id) = id.parse::<i64>() else {
            return Ok(None);
        };
        self.read(move |conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM audit_events WHERE id = ?1"),
                [id],
                row_to_record,
            )
            .optional()
            .map_err(unavailable)?
            .transpose()
        })
        .await
    }

    pub(super) async fn load_cursor(&self, source: &str) -> Result<Option<Value>, StoreError> {
        let source = source.to_string();
        self.read(move |conn| {
            let text: Option<String> = conn
                .query_row(
                    "SELECT cursor FROM ingest_cursors WHERE source = ?1",
                    [source],
                    |r| r.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(e.to_string())))
                .transpose()
        })
        .await
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(unavailable)
        })
        .await?;
        // A stopped writer is as bad as an unreachable database.
        Ok(())
    }
}

type WriteReply = oneshot::Sender<Result<WriteSummary, StoreError>>;

fn writer_loop(mut conn: Connection, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut writes = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Write { batch, cursor, reply } => writes.push((batch, cursor, reply)),
                Job::DeadLetter { letter, reply } => {
                    let _ = reply.send(insert_dead_letter(&conn, &letter).map_err(unavailable));
                }
            }
            if writes.len() < GROUP_COMMIT_JOBS {
                next = jobs.try_recv().ok();
            }
        }
        if writes.is_empty() {
            continue;
        }
        let outcome = write_group(&mut conn, &writes);
        for (i, (_, _, reply)) in writes.into_iter().enumerate() {
            let answer = match &outcome {
                Ok(summaries) => Ok(summaries[i]),
                Err(e) => Err(unavailable(e)),
            };
            let _ = reply.send(answer);
        }
    }
}

fn insert_dead_letter(conn: &Connection, letter: &DeadLetter) -> rusqlite::Result<String> {
    conn.prepare_cached(
        "INSERT INTO dead_letters (source, received_at, sender, mapper, error, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        letter.source,
        micros(&letter.received_at),
        letter.sender,
        letter.mapper,
        letter.error,
        letter.body,
    ])?;
    Ok(conn.last_insert_rowid().to_string())
}

fn write_group(
    conn: &mut Connection,
    group: &[(Vec<NewRecord>, Option<(String, Value)>, WriteReply)],
) -> rusqlite::Result<Vec<WriteSummary>> {
    let tx = conn.transaction()?;
    let mut summaries = Vec::with_capacity(group.len());
    {
        let mut insert = tx.prepare_cached(INSERT)?;
        let mut save_cursor = tx.prepare_cached(
            "INSERT INTO ingest_cursors (source, cursor, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
        )?;
        for (batch, cursor, _) in group {
            let mut summary = WriteSummary::default();
            for r in batch {
                let metadata = r.metadata.to_string();
                let changed = insert.execute(params![
                    r.source,
                    r.action,
                    micros(&r.at),
                    micros(&r.received_at),
                    r.actor_id,
                    r.actor_name,
                    r.actor_email,
                    r.ip,
                    r.target_type,
                    r.target_id,
                    r.target_name,
                    r.tenant_slug,
                    r.outcome,
                    r.external_id,
                    metadata,
                    r.mapper,
                ])?;
                if changed == 1 {
                    summary.inserted += 1;
                } else {
                    summary.duplicates += 1;
                }
            }
            if let Some((source, cursor)) = cursor {
                save_cursor.execute(params![source, cursor.to_string(), micros(&Utc::now())])?;
            }
            summaries.push(summary);
        }
    }
    tx.commit()?;
    Ok(summaries)
}

fn from_micros(us: i64) -> Result<DateTime<Utc>, rusqlite::Error> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Integer, "bad time".into())
    })
}

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Record, StoreError>> {
    let metadata: String = row.get(15)?;
    let metadata = match serde_json::from_str(&metadata) {
        Ok(m) => m,
        Err(e) => return Ok(Err(StoreError::Corrupt(format!("metadata: {e}")))),
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

fn run_query(conn: &Connection, q: &Query) -> Result<Page, StoreError> {
    use rusqlite::types::Value as Sql;
    let mut sql = format!("SELECT {COLUMNS} FROM audit_events WHERE 1 = 1");
    let mut args: Vec<Sql> = Vec::new();
    let mut push = |clause: &str, values: Vec<Sql>, sql: &mut String| {
        sql.push_str(" AND ");
        sql.push_str(clause);
        args.extend(values);
    };
    if let Some(s) = &q.source {
        push("source = ?", vec![Sql::Text(s.clone())], &mut sql);
    }
    match &q.action {
        Some(ActionFilter::Exact(a)) => push("action = ?", vec![Sql::Text(a.clone())], &mut sql),
        Some(ActionFilter::Prefix(p)) => push(
            "action >= ? AND action < ?",
            vec![Sql::Text(p.clone()), Sql::Text(format!("{p}\u{10FFFF}"))],
            &mut sql,
        ),
        None => {}
    }
    if let Some(a) = &q.actor {
        push(
            "(actor_id = ? OR actor_name = ? OR actor_email = ?)",
            vec![Sql::Text(a.clone()), Sql::Text(a.clone()), Sql::Text(a.clone())],
            &mut sql,
        );
    }
    if let Some(ip) = &q.ip {
        push("ip = ?", vec![Sql::Text(ip.clone())], &mut sql);
    }
    if let Some(t) = &q.tenant {
        push("tenant_slug = ?", vec![Sql::Text(t.clone())], &mut sql);
    }
    if let Some(since) = &q.since {
        push("at >= ?", vec![Sql::Integer(micros(since))], &mut sql);
    }
    if let Some(until) = &q.until {
        push("at < ?", vec![Sql::Integer(micros(until))], &mut sql);
    }
    if let Some(text) = &q.text {
        let pattern = format!("%{}%", like_escape(text));
        let cols = ["actor_id", "actor_name", "actor_email", "target_id", "target_name"];
        let clause = cols
            .iter()
            .map(|c| format!("{c} LIKE ? ESCAPE '\\'"))
            .collect::<Vec<_>>()
            .join(" OR ");
        push(
            &format!("({clause})"),
            cols.iter().map(|_| Sql::Text(pattern.clone())).collect(),
            &mut sql,
        );
    }
    if let Some(after) = &q.after {
        let id: i64 = after
            .id
            .parse()
            .map_err(|_| StoreError::Corrupt("page cursor id".into()))?;
        push("(at, id) < (?, ?)", vec![Sql::Integer(after.at), Sql::Integer(id)], &mut sql);
    }
    sql.push_str(" ORDER BY at DESC, id DESC LIMIT ?");
    args.push(Sql::Integer(q.limit as i64 + 1));

    let mut stmt = conn.prepare_cached(&sql).map_err(unavailable)?;
    let rows = stmt
        .query_map(params_from_iter(args), row_to_record)
        .map_err(unavailable)?;
    let mut records = Vec::with_capacity(q.limit + 1);
    for row in rows {
        records.push(row.map_err(unavailable)??);
    }
    let next = if records.len() > q.limit {
        records.truncate(q.limit);
        records.last().map(|r| PageCursor {
            at: micros(&r.record.at),
            id: r.id.clone(),
        })
    } else {
        None
    };
    Ok(Page { records, next })
}
