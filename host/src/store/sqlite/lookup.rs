//! The actor and IP lookup: `audit_lookup (key, at, id)` in a database file
//! of its own, built in bulk by a thread of its own.
//!
//! Actor and IP values are close to random, so indexing them row by row in
//! the events table dirties one B-tree page per new row and costs the writer
//! most of its insert rate. Instead a builder thread reads the events above
//! the *watermark* (the last event id already in the lookup), adds their keys
//! in one sorted pass and moves the watermark in the same transaction. Being
//! a separate file, this never takes the events table's write lock, so it
//! runs on the other core while the writer keeps committing. A query reads
//! the lookup up to the watermark and scans the few events above it directly,
//! so its answer is complete whatever the lag; after a crash the builder
//! simply resumes from the stored watermark. The same pass feeds the
//! trigram text index behind `q`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};

use super::schema::LOOKUP_SCHEMA;

/// How many events one pass adds at most. A pass holds its keys in memory
/// and FTS5 its pending trigrams, so this bounds the builder's memory: at
/// 10,000 events a pass the service's peak RSS at 10,000 events/s rose from
/// ~50 to 79–89 MiB once the builder ran; at 5,000 (with 2 MiB of page cache)
/// to 60 MiB, and a 1,000,000-event backlog still indexes in ~25 s.
const PASS: i64 = 5_000;
/// Above this many events behind, the builder stops yielding to ingest.
const MAX_LAG: i64 = 500_000;
/// How long the builder rests when it has caught up.
const REST: Duration = Duration::from_millis(100);

/// The lookup file beside the events database.
pub(super) fn path_for(events: &Path) -> PathBuf {
    let mut name = events.file_name().unwrap_or_default().to_os_string();
    name.push("-lookup");
    events.with_file_name(name)
}

/// Creates the lookup file and its tables. A lookup that is ahead of the
/// events (the events file was replaced or restored from an older backup)
/// describes other events: it is emptied and rebuilt.
pub(super) fn create(path: &Path, newest_event: i64) -> rusqlite::Result<()> {
    let conn = Connection::open(path)?;
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")?;
    let had_counts: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'audit_counts'",
        [],
        |r| r.get(0),
    )?;
    conn.execute_batch(LOOKUP_SCHEMA)?;
    let watermark = watermark_of(&conn)?;
    let ahead = watermark > newest_event;
    // A lookup made before the hourly counts holds keys but no counts.
    let without_counts = !had_counts && watermark > 0;
    if ahead || without_counts {
        if ahead {
            tracing::warn!(file = %path.display(), "the actor/IP lookup is ahead of the events; rebuilding it");
        } else {
            tracing::info!(file = %path.display(), "rebuilding the lookup in the background to add hourly counts (once)");
        }
        conn.execute_batch(
            "DELETE FROM audit_lookup; INSERT INTO audit_text (audit_text) VALUES ('delete-all'); \
             DELETE FROM audit_counts; UPDATE lookup_meta SET value = 0 WHERE name IN ('watermark', 'removed_seen');",
        )?;
    }
    Ok(())
}

/// Microseconds in an hour.
pub(super) const HOUR: i64 = 3_600_000_000;

/// The start of the hour `at` (microseconds) falls in.
pub(super) fn hour_of(at: i64) -> i64 {
    at - at.rem_euclid(HOUR)
}

/// The lookup key of an actor value (id, name or e-mail).
pub(super) fn actor_key(value: &str) -> String {
    format!("a:{value}")
}

/// The lookup key of an IP address.
pub(super) fn ip_key(value: &str) -> String {
    format!("i:{value}")
}

/// The last event id whose keys are in the lookup, read through a
/// connection that has it attached as `lk`.
pub(super) fn watermark(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT value FROM lk.lookup_meta WHERE name = 'watermark'")?
        .query_row([], |r| r.get(0))
}

/// At most this many text matches are fetched and sorted; a term that
/// matches more is common enough that walking the timeline finds a page fast.
pub(super) const TEXT_MATCHES: i64 = 5_000;

/// The ids (up to the watermark) whose actor or target text contains `term`
/// (case-insensitive), or `None` when the term is too short for the trigram
/// index (under 3 characters) or matches more than [`TEXT_MATCHES`].
pub(super) fn text_matches(conn: &Connection, term: &str, watermark: i64) -> rusqlite::Result<Option<Vec<i64>>> {
    if term.chars().count() < 3 {
        return Ok(None);
    }
    let phrase = format!("\"{}\"", term.replace('"', "\"\""));
    let mut stmt =
        conn.prepare_cached("SELECT rowid FROM lk.audit_text WHERE audit_text MATCH ?1 AND rowid <= ?2 LIMIT ?3")?;
    let ids: Vec<i64> = stmt
        .query_map(params![phrase, watermark, TEXT_MATCHES + 1], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok((ids.len() as i64 <= TEXT_MATCHES).then_some(ids))
}

/// When the writer last committed, so the builder can stay out of its way.
#[derive(Clone, Default)]
pub(super) struct WriterActivity(Arc<std::sync::atomic::AtomicU64>);

impl WriterActivity {
    fn now_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    /// The writer calls this after every commit.
    pub(super) fn wrote(&self) {
        self.0.store(Self::now_ms(), Ordering::Relaxed);
    }

    /// Whether the writer committed within `window`.
    fn busy_within(&self, window: Duration) -> bool {
        Self::now_ms().saturating_sub(self.0.load(Ordering::Relaxed)) < window.as_millis() as u64
    }
}

/// The builder waits while the writer committed this recently.
const WRITER_QUIET: Duration = Duration::from_millis(50);

/// Runs the builder until `stopped` is set.
pub(super) fn builder_loop(events: PathBuf, stopped: Arc<AtomicBool>, writer: WriterActivity) {
    let open = || -> rusqlite::Result<(Connection, Connection)> {
        let read = Connection::open_with_flags(
            &events,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let write = Connection::open(path_for(&events))?;
        write.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA cache_size=-2048;")?;
        read.execute_batch("PRAGMA cache_size=-1024;")?;
        Ok((read, write))
    };
    let (read, mut write) = match open() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the actor/IP lookup; actor and IP filters scan instead");
            return;
        }
    };
    // Indexing is background work: it runs when the cores are otherwise idle,
    // so a burst of ingest is not slowed by it. The lookup then falls behind
    // (queries scan the part above the watermark) and catches up after the
    // burst; if it falls too far behind it competes normally again.
    let mut background = true;
    crate::scheduling::set_idle(background);
    while !stopped.load(Ordering::Relaxed) {
        // While the writer is busy, wait: its throughput comes first, and
        // queries stay complete without the lookup. Only a large lag makes
        // the builder work beside it.
        if background && writer.busy_within(WRITER_QUIET) {
            let newest = read
                .query_row("SELECT max(id) FROM audit_events", [], |r| r.get::<_, Option<i64>>(0))
                .ok()
                .flatten()
                .unwrap_or(0);
            if newest - watermark_of(&write).unwrap_or(0) < MAX_LAG {
                std::thread::sleep(WRITER_QUIET);
                continue;
            }
            background = false;
            crate::scheduling::set_idle(false);
        }
        match pass(&read, &mut write) {
            Ok(n) if n >= PASS => {
                let newest = read
                    .query_row("SELECT max(id) FROM audit_events", [], |r| r.get::<_, Option<i64>>(0))
                    .ok()
                    .flatten()
                    .unwrap_or(0);
                let lagging = newest - watermark_of(&write).unwrap_or(0) > MAX_LAG;
                if lagging == background {
                    background = !lagging;
                    crate::scheduling::set_idle(background);
                }
            }
            Ok(_) => std::thread::sleep(REST),
            Err(e) => {
                tracing::warn!(error = %e, "updating the actor/IP lookup failed; will retry");
                std::thread::sleep(REST * 10);
            }
        }
    }
}

fn watermark_of(write: &Connection) -> rusqlite::Result<i64> {
    write
        .prepare_cached("SELECT value FROM lookup_meta WHERE name = 'watermark'")?
        .query_row([], |r| r.get(0))
}

/// Adds the keys of up to `PASS` events above the watermark, sorted, and
/// moves the watermark, in one transaction. Returns how many events it read.
fn pass(read: &Connection, write: &mut Connection) -> rusqlite::Result<i64> {
    let progress = progress_of(write)?;
    // The events and the removals are read in one snapshot: a record removed
    // after it is either in this pass's events (counted now, taken out by a
    // later pass) or in neither.
    read.execute_batch("BEGIN")?;
    let result = read_pass(read, progress);
    read.execute_batch("COMMIT")?;
    let (keys, texts, counts, removed, last, count) = result?;
    if count == 0 && removed.is_empty() {
        return Ok(0);
    }
    let work = count.max(removed.len() as i64);
    write_pass(write, progress, keys, texts, counts, removed, last)?;
    Ok(work)
}

/// How far the lookup is: its watermark and the last removal taken into
/// account.
fn progress_of(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    let seen: i64 = conn
        .prepare_cached("SELECT value FROM lookup_meta WHERE name = 'removed_seen'")?
        .query_row([], |r| r.get(0))?;
    Ok((watermark_of(conn)?, seen))
}

/// Hourly count keys: (hour, source, outcome, tenant) → (records, catch-all records).
type Counts = std::collections::HashMap<(i64, String, String, String), (i64, i64)>;

/// A removal not taken into account yet.
struct Removal {
    seq: i64,
    id: i64,
    /// The key of its hourly count.
    count: (i64, String, String, String),
    unrecognised: i64,
    /// Its lookup keys and text, as a pass added them.
    indexed: Indexed,
}

type Removals = Vec<Removal>;

/// What the lookup holds for one event: its keys and its text.
struct Indexed {
    keys: Vec<(String, i64, i64)>,
    text: Option<String>,
}

/// The lookup keys and text of the event `id` at `at`, from its actor
/// id, name and e-mail, IP, and target id and name (at `first`.. of `row`).
fn indexed(row: &rusqlite::Row<'_>, first: usize, id: i64, at: i64) -> rusqlite::Result<Indexed> {
    let mut actors: Vec<String> = Vec::with_capacity(3);
    for col in first..first + 3 {
        if let Some(v) = row.get::<_, Option<String>>(col)?
            && !actors.contains(&v)
        {
            actors.push(v);
        }
    }
    let mut keys: Vec<(String, i64, i64)> = actors.iter().map(|a| (actor_key(a), at, id)).collect();
    if let Some(ip) = row.get::<_, Option<String>>(first + 3)? {
        keys.push((ip_key(&ip), at, id));
    }
    let mut text = actors.join("\n");
    for col in first + 4..first + 6 {
        if let Some(v) = row.get::<_, Option<String>>(col)? {
            text.push('\n');
            text.push_str(&v);
        }
    }
    Ok(Indexed {
        keys,
        text: (!text.is_empty()).then_some(text),
    })
}

type PassRead = (Vec<(String, i64, i64)>, Vec<(i64, String)>, Counts, Removals, i64, i64);

fn read_pass(read: &Connection, (from, seen): (i64, i64)) -> rusqlite::Result<PassRead> {
    let removed: Removals = read
        .prepare_cached(
            "SELECT seq, id, at, source, outcome, tenant, unrecognised, \
             actor_id, actor_name, actor_email, ip, target_id, target_name \
             FROM removed_events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?
        .query_map([seen, PASS], |r| {
            let (id, at) = (r.get(1)?, r.get(2)?);
            Ok(Removal {
                seq: r.get(0)?,
                id,
                count: (hour_of(at), r.get(3)?, r.get(4)?, r.get(5)?),
                unrecognised: r.get(6)?,
                indexed: indexed(r, 7, id, at)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut keys: Vec<(String, i64, i64)> = Vec::new();
    let mut texts: Vec<(i64, String)> = Vec::new();
    let mut counts = Counts::default();
    let mut last = from;
    let mut count = 0;
    // Removals are taken in the snapshot that moves the watermark: a
    // removal of an id at or below it was counted and indexed, one above
    // it never will be. While more removals wait than one pass takes, the
    // watermark stays put, so that stays true for the ones left.
    if removed.len() as i64 >= PASS {
        return Ok((keys, texts, counts, removed, last, count));
    }
    {
        let mut rows = read.prepare_cached(
            "SELECT id, at, actor_id, actor_name, actor_email, ip, target_id, target_name, \
             source, outcome, coalesce(tenant_slug, ''), unrecognised \
             FROM audit_events WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let mut it = rows.query(params![from, PASS])?;
        while let Some(row) = it.next()? {
            let (id, at): (i64, i64) = (row.get(0)?, row.get(1)?);
            let Indexed { keys: mine, text } = indexed(row, 2, id, at)?;
            keys.extend(mine);
            if let Some(text) = text {
                texts.push((id, text));
            }
            let slot = counts
                .entry((hour_of(at), row.get(8)?, row.get(9)?, row.get(10)?))
                .or_insert((0, 0));
            slot.0 += 1;
            slot.1 += row.get::<_, i64>(11)?;
            last = id;
            count += 1;
        }
    }
    Ok((keys, texts, counts, removed, last, count))
}

/// Adds what one pass read and moves the watermark, in one transaction.
/// Writes what [`read_pass`] read from `progress` on, unless the lookup
/// moved meanwhile: a second process on the same data directory has a
/// builder too, and whichever commits first wins; the other's pass is
/// dropped (it would count every event twice).
fn write_pass(
    write: &mut Connection,
    progress: (i64, i64),
    mut keys: Vec<(String, i64, i64)>,
    texts: Vec<(i64, String)>,
    counts: Counts,
    removed: Removals,
    last: i64,
) -> rusqlite::Result<()> {
    let from = progress.0;
    keys.sort_unstable();
    let tx = write.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if progress_of(&tx)? != progress {
        return Ok(());
    }
    {
        let mut insert = tx.prepare_cached("INSERT OR IGNORE INTO audit_lookup (key, at, id) VALUES (?1, ?2, ?3)")?;
        for (key, at, id) in &keys {
            insert.execute(params![key, at, id])?;
        }
        let mut text = tx.prepare_cached("INSERT INTO audit_text (rowid, body) VALUES (?1, ?2)")?;
        for (id, body) in &texts {
            text.execute(params![id, body])?;
        }
        let mut add_count = tx.prepare_cached(
            "INSERT INTO audit_counts (hour, source, outcome, tenant, n, unrecognised) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO UPDATE \
             SET n = n + excluded.n, unrecognised = unrecognised + excluded.unrecognised",
        )?;
        for ((hour, source, outcome, tenant), (n, unrecognised)) in &counts {
            add_count.execute(params![hour, source, outcome, tenant, n, unrecognised])?;
        }
        // A removed record was counted when an earlier pass covered its id.
        let mut take = tx.prepare_cached(
            "UPDATE audit_counts SET n = n - 1, unrecognised = unrecognised - ?6 \
             WHERE hour = ?1 AND source = ?2 AND outcome = ?3 AND tenant = ?4 AND ?5 <= ?7",
        )?;
        // So were its keys and text: taken out too (retention deletes
        // personal data; the lookup keeps none of it longer than the records).
        let mut untie = tx.prepare_cached("DELETE FROM audit_lookup WHERE key = ?1 AND at = ?2 AND id = ?3")?;
        let mut unindex =
            tx.prepare_cached("INSERT INTO audit_text (audit_text, rowid, body) VALUES ('delete', ?1, ?2)")?;
        for r in removed.iter().filter(|r| r.id <= from) {
            let (hour, source, outcome, tenant) = &r.count;
            take.execute(params![hour, source, outcome, tenant, r.id, r.unrecognised, from])?;
            for (key, at, id) in &r.indexed.keys {
                untie.execute(params![key, at, id])?;
            }
            if let Some(text) = &r.indexed.text {
                unindex.execute(params![r.id, text])?;
            }
        }
        if let Some(last) = removed.last() {
            tx.prepare_cached("DELETE FROM audit_counts WHERE n <= 0")?
                .execute([])?;
            tx.prepare_cached("UPDATE lookup_meta SET value = ?1 WHERE name = 'removed_seen'")?
                .execute([last.seq])?;
        }
        tx.prepare_cached("UPDATE lookup_meta SET value = ?1 WHERE name = 'watermark'")?
            .execute([last])?;
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two builders (two processes on one data directory) that read the
    /// same stretch: the second to commit drops its pass, so each event is
    /// counted and indexed once.
    #[test]
    fn two_builders_reading_the_same_events_count_them_once() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("a.sqlite3");
        let conn = Connection::open(&events).unwrap();
        conn.execute_batch(super::super::schema::SCHEMA).unwrap();
        for i in 0..100 {
            conn.execute(
                "INSERT INTO audit_events (source, action, at, received_at, actor_id, outcome, metadata) \
                 VALUES ('s', 's.login', ?1, ?1, ?2, 'success', '{}')",
                params![1_750_000_000_000_000_i64 + i, format!("user-{i}")],
            )
            .unwrap();
        }
        create(&path_for(&events), 100).unwrap();
        let builder = || {
            let read = Connection::open_with_flags(&events, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
            let write = Connection::open(path_for(&events)).unwrap();
            (read, write)
        };
        let ((read_a, mut write_a), (read_b, mut write_b)) = (builder(), builder());
        let (from_a, from_b) = (progress_of(&write_a).unwrap(), progress_of(&write_b).unwrap());
        let (keys, texts, counts, removed, last, n) = read_pass(&read_a, from_a).unwrap();
        let b = read_pass(&read_b, from_b).unwrap();
        assert_eq!((n, b.5), (100, 100), "both read the same 100 events");
        write_pass(&mut write_a, from_a, keys, texts, counts, removed, last).unwrap();
        write_pass(&mut write_b, from_b, b.0, b.1, b.2, b.3, b.4).unwrap();
        let counted: i64 = write_a
            .query_row("SELECT sum(n) FROM audit_counts", [], |r| r.get(0))
            .unwrap();
        let keys: i64 = write_a
            .query_row("SELECT count(*) FROM audit_lookup", [], |r| r.get(0))
            .unwrap();
        assert_eq!((counted, keys), (100, 100));
        assert_eq!(watermark_of(&write_b).unwrap(), 100);
    }
}
