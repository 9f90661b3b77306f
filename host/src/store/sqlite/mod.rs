//! The embedded store: SQLite (bundled) in WAL mode.
//!
//! One writer thread owns the only write connection (`writer`). Concurrent
//! batches are group-committed: the writer takes every job waiting in its
//! queue, writes them in one transaction, and answers each caller with its
//! own counts once that transaction is committed (with `synchronous=FULL`,
//! once it is on disk); SQLite's automatic checkpoints keep the WAL short. A
//! maintenance thread keeps the planner's statistics fresh on its own
//! connection. Reads use a small
//! pool of read-only connections on the blocking pool, with plans chosen in
//! `query` (and `union` for filters that span several index ranges); `schema`
//! holds the tables, indexes and migrations, `lookup` the actor/IP/text index
//! built in the background.

pub mod chain;
mod lease;
mod lookup;
mod overview;
mod query;
mod retention;
mod schema;
mod union;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::oneshot;

pub(super) use super::unavailable;
use super::{
    AuditStore, Commit, Committed, DeadLetter, Expiry, NewRecord, Overview, Page, Query, Record, StoreError,
    TenantScope, WriteSummary,
};
use query::{from_micros, row_to_record, run_query};
use schema::{
    ADD_UNRECOGNISED_COLUMN, COLUMNS, CREATE_TIME_INDEX, DEAD_LETTER_ARRIVAL_COLUMNS, DROP_OLD_TENANT_INDEX, E_COLUMNS,
    MIGRATE_SOURCE_INDEX, REMOVED_LOOKUP_COLUMNS, SCHEMA, TIME_INDEX, writer_pragmas,
};
use writer::{Also, Job, LeaseOp, writer_loop};

/// How many jobs may wait for the writer before callers wait to enqueue.
const WRITE_QUEUE: usize = 256;
/// Read connections kept open.
const READERS: usize = 4;

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

/// The embedded store.
pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::SyncSender<Job>,
    readers: Mutex<Vec<Connection>>,
    stopped: Arc<AtomicBool>,
    /// Set by the writer thread if it ever ends (its connection failed).
    writer_stopped: Arc<AtomicBool>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
}

/// A record or letter id this store handed out (its row id); anything else
/// is the caller's mistake.
fn parse_id(id: &str, what: &str) -> Result<i64, StoreError> {
    id.parse()
        .map_err(|_| StoreError::InvalidInput(format!("`{id}` is not a {what} id")))
}

/// Runs the read `f`, interrupted once it has run for `budget`: SQLite
/// calls the progress handler every few thousand virtual-machine steps,
/// which stops a scan however large, a sort included.
fn within_budget<R>(
    conn: &Connection,
    budget: Duration,
    f: impl FnOnce(&Connection) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    let deadline = std::time::Instant::now() + budget;
    let stopped = Arc::new(AtomicBool::new(false));
    let flag = stopped.clone();
    conn.progress_handler(
        4096,
        Some(move || {
            let late = std::time::Instant::now() >= deadline;
            if late {
                flag.store(true, Ordering::Relaxed);
            }
            late
        }),
    );
    let result = f(conn);
    conn.progress_handler(0, None::<fn() -> bool>);
    match result {
        Err(_) if stopped.load(Ordering::Relaxed) => Err(StoreError::TooSlow(budget)),
        other => other,
    }
}

impl SqliteStore {
    /// Opens (or creates) the database file and starts the writer thread.
    pub fn open(path: &Path, durability: Durability) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| unavailable(format!("create {}: {e}", dir.display())))?;
        }
        // The write connection is only ever used by the writer thread.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| unavailable(format!("open {}: {e}", path.display())))?;
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.execute_batch(&writer_pragmas(sync)).map_err(unavailable)?;
        if has_index(&conn, "audit_events_tenant_at").map_err(unavailable)? {
            tracing::info!(
                file = %path.display(),
                "store: building the tenant index by (tenant, action) in place of (tenant); \
                 this reads every record once and can take minutes on a large store"
            );
        }
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        conn.execute_batch(chain::CHAIN_SCHEMA).map_err(unavailable)?;
        migrate(&conn).map_err(unavailable)?;
        let maintenance = Connection::open(path).map_err(unavailable)?;
        maintenance.busy_timeout(Duration::from_secs(10)).map_err(unavailable)?;
        let lookup_path = lookup::path_for(path);
        let newest: i64 = conn
            .query_row("SELECT coalesce(max(id), 0) FROM audit_events", [], |r| r.get(0))
            .map_err(unavailable)?;
        lookup::create(&lookup_path, newest)
            .map_err(|e| unavailable(format!("create {}: {e}", lookup_path.display())))?;
        let (tx, rx) = mpsc::sync_channel(WRITE_QUEUE);
        let activity = lookup::WriterActivity::default();
        let busy = activity.clone();
        let writer_stopped = Arc::new(AtomicBool::new(false));
        let ended = writer_stopped.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                writer_loop(conn, rx, busy);
                ended.store(true, Ordering::Relaxed);
            })
            .map_err(unavailable)?;
        let stopped = Arc::new(AtomicBool::new(false));
        let flag = stopped.clone();
        std::thread::Builder::new()
            .name("store-maintenance".into())
            .spawn(move || maintenance_loop(maintenance, flag))
            .map_err(unavailable)?;
        let (events, flag) = (path.to_path_buf(), stopped.clone());
        std::thread::Builder::new()
            .name("store-lookup".into())
            .spawn(move || lookup::builder_loop(events, flag, activity))
            .map_err(unavailable)?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer: tx,
            readers: Mutex::new(Vec::new()),
            stopped,
            writer_stopped,
        })
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
        // The error carries the job back; it is dropped here, unread.
        tokio::task::spawn_blocking(move || writer.send(job).map_err(|_| ()))
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
            let r = within_budget(&conn, super::READ_BUDGET, f);
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

    /// A read connection from the pool, or a new one.
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
        conn.execute(
            "ATTACH DATABASE ?1 AS lk",
            [lookup::path_for(&self.path).to_string_lossy()],
        )
        .map_err(unavailable)?;
        Ok(conn)
    }

    /// How many events the actor/IP/text lookup is behind (it is built in
    /// the background; queries stay complete meanwhile, only slower).
    #[cfg(any(test, feature = "test-support"))]
    pub fn lookup_lag(&self) -> Result<i64, StoreError> {
        let conn = self.reader()?;
        let newest: i64 = conn
            .query_row("SELECT coalesce(max(id), 0) FROM audit_events", [], |r| r.get(0))
            .map_err(unavailable)?;
        Ok(newest - lookup::watermark(&conn).map_err(unavailable)?)
    }

    /// Refreshes the planner statistics now (the maintenance thread does this
    /// every few minutes; call it after a bulk load).
    #[cfg(any(test, feature = "test-support"))]
    pub fn analyze(&self) -> Result<(), StoreError> {
        let conn = Connection::open(&self.path).map_err(unavailable)?;
        conn.execute_batch("PRAGMA analysis_limit=1000; ANALYZE;")
            .map_err(unavailable)
    }

    /// Sends a job to the writer and waits for its answer.
    async fn call<T>(&self, job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.enqueue(job(reply)).await?;
        answer.await.map_err(|_| unavailable("the store writer has stopped"))?
    }
}

#[async_trait::async_trait]
impl AuditStore for SqliteStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn write(&self, batch: Vec<NewRecord>, commit: Commit) -> Result<WriteSummary, StoreError> {
        let (checkpoint, also) = match commit {
            Commit::Records => (None, Also::Nothing),
            Commit::Checkpoint(c) => (Some(c), Also::Nothing),
            Commit::ResolveDeadLetter(id) => (None, Also::ResolveDeadLetter(parse_id(&id, "dead letter")?)),
            Commit::ReplaceRecord(id) => (None, Also::ReplaceRecord(parse_id(&id, "record")?)),
        };
        self.call(|reply| Job::Write {
            batch,
            checkpoint,
            also,
            reply,
        })
        .await
    }

    async fn dead_letter(&self, letter: DeadLetter) -> Result<String, StoreError> {
        self.call(|reply| Job::DeadLetter { letter, reply }).await
    }

    async fn dead_letters_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, DeadLetter)>, StoreError> {
        let after = after.map_or(Ok(0), |id| parse_id(id, "dead letter"))?;
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, source, received_at, sender, mapper, error, body, transport, headers, origin \
                     FROM dead_letters WHERE id > ?2 ORDER BY id LIMIT ?1",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map([limit as i64, after], |r| {
                    let headers: String = r.get(8)?;
                    let transport: String = r.get(7)?;
                    Ok((
                        r.get::<_, i64>(0)?.to_string(),
                        DeadLetter {
                            source: r.get(1)?,
                            received_at: from_micros(r.get(2)?)?,
                            sender: r.get(3)?,
                            transport: serde_json::from_value(Value::String(transport)).unwrap_or_default(),
                            headers: serde_json::from_str(&headers).unwrap_or_default(),
                            origin: r.get(9)?,
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

    async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        let query = query.clone();
        self.read(move |conn| run_query(conn, &query)).await
    }

    async fn get(&self, id: &str, scope: &TenantScope) -> Result<Option<Record>, StoreError> {
        let Ok(id) = id.parse::<i64>() else {
            return Ok(None);
        };
        let reach = scope.reach(None);
        self.read(move |conn| {
            // In the timeline, or kept after a re-mapping superseded it.
            for table in ["audit_events", "superseded_events"] {
                let mut sql = format!("SELECT {E_COLUMNS} FROM {table} AS e WHERE e.id = ?");
                let mut args = vec![rusqlite::types::Value::Integer(id)];
                if let Some((clause, values)) = query::tenant_clause(reach.as_deref()) {
                    sql.push_str(" AND ");
                    sql.push_str(&clause);
                    args.extend(values);
                }
                let found = conn
                    .query_row(&sql, rusqlite::params_from_iter(args), row_to_record)
                    .optional()
                    .map_err(unavailable)?
                    .transpose()?;
                if found.is_some() {
                    return Ok(found);
                }
            }
            Ok(None)
        })
        .await
    }

    async fn load_checkpoint(&self, source: &str) -> Result<Option<Value>, StoreError> {
        let source = source.to_string();
        self.read(move |conn| {
            let text: Option<String> = conn
                .query_row("SELECT cursor FROM ingest_cursors WHERE source = ?1", [&source], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(unavailable)?;
            text.map(|t| {
                serde_json::from_str(&t)
                    .map_err(|e| StoreError::corrupt_because(format!("the checkpoint of {source}"), e))
            })
            .transpose()
        })
        .await
    }

    async fn unrecognised_records(&self, after: Option<&str>, limit: usize) -> Result<Vec<Record>, StoreError> {
        let after = after.map_or(Ok(0), |id| parse_id(id, "record"))?;
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM audit_events WHERE id > ?1 \
                     AND json_extract(metadata, '$.unrecognised') = 1 ORDER BY id LIMIT ?2"
                ))
                .map_err(unavailable)?;
            let rows = stmt
                .query_map([after, limit as i64], row_to_record)
                .map_err(unavailable)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row.map_err(unavailable)??);
            }
            Ok(out)
        })
        .await
    }

    /// The embedded store keeps no tenant list: slugs come from the configuration.
    async fn tenant_slugs(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    async fn committed_after(&self, after: Option<&str>, limit: usize) -> Result<Committed, StoreError> {
        let after = after.map_or(Ok(0), |id| parse_id(id, "record"))?;
        self.read(move |conn| overview::committed_after(conn, after, limit))
            .await
    }

    async fn last_commit(&self) -> Result<Option<String>, StoreError> {
        self.read(overview::last_commit).await
    }

    async fn overview(&self, query: &Query, bucket_micros: i64) -> Result<Overview, StoreError> {
        let query = query.clone();
        self.read(move |conn| overview::overview(conn, &query, bucket_micros))
            .await
    }

    async fn expiring(&self, expiry: &Expiry, limit: usize) -> Result<Vec<Record>, StoreError> {
        let expiry = expiry.clone();
        self.read(move |conn| retention::expiring(conn, &expiry, limit)).await
    }

    async fn expire(&self, ids: Vec<String>) -> Result<u64, StoreError> {
        let records = ids
            .iter()
            .map(|id| parse_id(id, "record"))
            .collect::<Result<Vec<_>, _>>()?;
        let prune_through = self.read(retention::removals_seen).await?;
        self.call(|reply| Job::Expire {
            records,
            dead_letters: Vec::new(),
            prune_through,
            reply,
        })
        .await
    }

    async fn expire_dead_letters(&self, expiry: &Expiry, limit: usize) -> Result<u64, StoreError> {
        let expiry = expiry.clone();
        let (dead_letters, prune_through) = self
            .read(move |conn| {
                Ok((
                    retention::dead_letters_due(conn, &expiry, limit)?,
                    retention::removals_seen(conn)?,
                ))
            })
            .await?;
        let n = dead_letters.len() as u64;
        if n > 0 {
            self.call(|reply| Job::Expire {
                records: Vec::new(),
                dead_letters,
                prune_through,
                reply,
            })
            .await?;
        }
        Ok(n)
    }

    async fn cut_chain(&self) -> Result<Option<i64>, StoreError> {
        let Some(seq) = self.read(retention::cut_candidate).await? else {
            return Ok(None);
        };
        // One batch of entries per writer job, so ingest goes on between them.
        while self.call(|reply| Job::Cut { seq, reply }).await? == retention::CUT_BATCH as u64 {}
        Ok(Some(seq))
    }

    async fn take_lease(&self, name: &str, owner: &str, ttl: Duration) -> Result<crate::store::Claim, StoreError> {
        let op = LeaseOp::Take {
            name: name.to_string(),
            owner: owner.to_string(),
            ttl: ttl.min(crate::store::lease::MAX_TTL),
        };
        self.call(|reply| Job::Lease { op, reply })
            .await?
            .ok_or_else(|| unavailable("the writer answered a lease request without a claim"))
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let op = LeaseOp::Release {
            name: name.to_string(),
            owner: owner.to_string(),
        };
        self.call(|reply| Job::Lease { op, reply }).await.map(|_| ())
    }

    async fn lineage(&self, id: &str) -> Result<crate::store::Lineage, StoreError> {
        let Ok(id) = id.parse::<i64>() else {
            return Ok(Default::default());
        };
        self.read(move |conn| {
            let superseded_by: Option<i64> = conn
                .query_row("SELECT superseded_by FROM superseded_events WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(unavailable)?
                .flatten();
            let supersedes: Vec<i64> = conn
                .prepare_cached("SELECT id FROM superseded_events WHERE superseded_by = ?1 ORDER BY id")
                .and_then(|mut s| s.query_map([id], |r| r.get(0))?.collect())
                .map_err(unavailable)?;
            Ok(crate::store::Lineage {
                superseded_by: superseded_by.filter(|by| *by > 0).map(|by| by.to_string()),
                supersedes: supersedes.into_iter().map(|s| s.to_string()).collect(),
            })
        })
        .await
    }

    fn keeps_chain(&self) -> bool {
        true
    }

    async fn chain_head(&self) -> Result<Option<crate::store::ChainHead>, StoreError> {
        self.read(|conn| {
            let last = chain::last(conn).map_err(unavailable)?;
            let (cut, _) = chain::start(conn).map_err(unavailable)?;
            Ok(last.map(|(seq, chain)| crate::store::ChainHead { seq, chain, cut }))
        })
        .await
    }

    async fn last_digest(&self) -> Result<Option<(i64, String)>, StoreError> {
        self.read(|conn| {
            conn.query_row(
                "SELECT last_seq, body FROM chain_digests ORDER BY last_seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(unavailable)
        })
        .await
    }

    async fn save_digest(&self, last_seq: i64, document: String) -> Result<(), StoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = Connection::open(&path)?;
            conn.busy_timeout(Duration::from_secs(10))?;
            conn.execute(
                "INSERT OR REPLACE INTO chain_digests (last_seq, body) VALUES (?1, ?2)",
                params![last_seq, document],
            )
            .map(|_| ())
        })
        .await
        .map_err(unavailable)?
        .map_err(unavailable)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // A stopped writer is as bad as an unreachable database.
        if self.writer_stopped.load(Ordering::Relaxed) {
            return Err(unavailable("the store writer has stopped"));
        }
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(unavailable))
            .await
    }
}

fn has_index(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'index' AND name = ?1",
        [name],
        |r| r.get(0),
    )
}

/// Brings a database made by an earlier version to the current schema.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    if has_index(conn, "audit_events_source_at")? {
        tracing::info!("store: listing each source's actions and dropping the per-source index (once)");
        conn.execute_batch(MIGRATE_SOURCE_INDEX)?;
    }
    for (column, add) in DEAD_LETTER_ARRIVAL_COLUMNS {
        let present: bool = conn.query_row(
            "SELECT count(*) > 0 FROM pragma_table_info('dead_letters') WHERE name = ?1",
            [column],
            |r| r.get(0),
        )?;
        if !present {
            conn.execute_batch(add)?;
        }
    }
    let flagged: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('audit_events') WHERE name = 'unrecognised'",
        [],
        |r| r.get(0),
    )?;
    if !flagged {
        conn.execute_batch(ADD_UNRECOGNISED_COLUMN)?;
    }
    if !has_index(conn, TIME_INDEX)? {
        let records: i64 = conn.query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0))?;
        if records > 0 {
            tracing::info!(
                records,
                "store: building the time index with the overview's columns (once)"
            );
        }
        conn.execute_batch(CREATE_TIME_INDEX)?;
        conn.execute_batch("DROP INDEX IF EXISTS audit_events_at")?;
    }
    for column in REMOVED_LOOKUP_COLUMNS {
        let present: bool = conn.query_row(
            "SELECT count(*) > 0 FROM pragma_table_info('removed_events') WHERE name = ?1",
            [column],
            |r| r.get(0),
        )?;
        if !present {
            conn.execute_batch(&format!("ALTER TABLE removed_events ADD COLUMN {column} TEXT"))?;
        }
    }
    conn.execute_batch(DROP_OLD_TENANT_INDEX)
}

/// How often the maintenance thread looks whether it should stop.
const MAINTENANCE_TICK: Duration = Duration::from_millis(500);
/// How often the planner's statistics are refreshed.
const ANALYZE_EVERY: Duration = Duration::from_secs(300);

/// Refreshes the planner's statistics at start and every few minutes, until
/// the store is dropped.
fn maintenance_loop(conn: Connection, stopped: Arc<AtomicBool>) {
    let _ = conn.execute_batch("PRAGMA analysis_limit=1000; PRAGMA optimize=0x10002;");
    let mut since_analyze = Duration::ZERO;
    loop {
        std::thread::sleep(MAINTENANCE_TICK);
        if stopped.load(Ordering::Relaxed) {
            return;
        }
        since_analyze += MAINTENANCE_TICK;
        if since_analyze >= ANALYZE_EVERY {
            since_analyze = Duration::ZERO;
            let _ = conn.execute_batch("PRAGMA analysis_limit=1000; PRAGMA optimize;");
        }
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    /// A read that would run for minutes is stopped at its budget with
    /// `TooSlow`; the connection then serves the next read as usual.
    #[test]
    fn a_long_read_is_stopped_at_its_budget_and_the_connection_goes_on() {
        let conn = Connection::open_in_memory().unwrap();
        let endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n";
        let started = std::time::Instant::now();
        let answer = within_budget(&conn, Duration::from_millis(100), |c| {
            c.query_row(endless, [], |r| r.get::<_, i64>(0)).map_err(unavailable)
        });
        assert!(matches!(answer, Err(StoreError::TooSlow(_))), "{answer:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "stopped near its budget");
        let next = within_budget(&conn, Duration::from_millis(100), |c| {
            c.query_row("SELECT 41 + 1", [], |r| r.get::<_, i64>(0))
                .map_err(unavailable)
        });
        assert_eq!(next.unwrap(), 42);
    }
}
