//! Tamper evidence for the embedded store: one hash chain over everything
//! the writer commits. Each run of records one write stored (consecutive
//! ids) is an entry (kind 1) holding the SHA-256 of each record's canonical
//! form, in id order; each record removed (a catch-all record replaced by
//! its re-mapping) is an entry too (kind 2). An entry's chain value is the
//! SHA-256 of the previous one and the entry, so changing, removing or
//! adding any entry changes every chain value after it. Retention's
//! deletions are entries too (kind 3, the ids deleted), and so is a cut of
//! the chain's own oldest entries (kind 4, where the chain now starts and its
//! value there). The writer appends
//! entries in the transaction that writes the records, so no source, and no
//! path around the pipeline, writes a record outside it. One entry per run,
//! not per record: a batch costs the chain one row, and every record still
//! has its own hash.
//!
//! A chain is evidence only with a signed digest of its head kept where a
//! writer to this file cannot reach (see `crate::evidence`). [`verify`]
//! re-computes it from the file and names what differs.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use sha2::{Digest as _, Sha256};

use crate::store::NewRecord;

/// The chain's tables: entries, what the chain started after, and digests.
pub(super) const CHAIN_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_chain (
    seq INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    content BLOB NOT NULL,
    chain BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS chain_meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chain_digests (
    last_seq INTEGER PRIMARY KEY,
    body TEXT NOT NULL
);
";

/// An entry: records written, consecutive ids from `event_id`.
const WRITTEN: i64 = 1;
/// An entry: a record superseded by its re-mapping (its hash, and the
/// first record that replaced it; older versions deleted it and kept the
/// hash alone).
const REMOVED: i64 = 2;
/// An entry: records deleted by retention (their ids, 8 bytes each).
const EXPIRED: i64 = 3;
/// An entry: the entries up to one were dropped by retention (that
/// entry's number, 8 bytes, and the chain value after it, 32 bytes).
const CUT: i64 = 4;

/// The chain value before the first entry.
pub const GENESIS: [u8; 32] = [0; 32];

/// The stored columns of one record, in the order they are hashed.
pub(super) struct Fields<'a> {
    pub id: i64,
    pub source: &'a str,
    pub action: &'a str,
    pub at: i64,
    pub received_at: i64,
    pub actor_id: Option<&'a str>,
    pub actor_name: Option<&'a str>,
    pub actor_email: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub target_type: Option<&'a str>,
    pub target_id: Option<&'a str>,
    pub target_name: Option<&'a str>,
    pub tenant_slug: Option<&'a str>,
    pub outcome: &'a str,
    pub external_id: Option<&'a str>,
    pub metadata: &'a str,
    pub mapper: Option<&'a str>,
    pub unrecognised: bool,
}

impl<'a> Fields<'a> {
    /// A record as the writer stores it under `id`.
    pub fn of(id: i64, r: &'a NewRecord) -> Fields<'a> {
        Fields {
            id,
            source: &r.source,
            action: &r.action,
            at: crate::store::micros(&r.at),
            received_at: crate::store::micros(&r.received_at),
            actor_id: r.actor_id.as_deref(),
            actor_name: r.actor_name.as_deref(),
            actor_email: r.actor_email.as_deref(),
            ip: r.ip.as_deref(),
            target_type: r.target_type.as_deref(),
            target_id: r.target_id.as_deref(),
            target_name: r.target_name.as_deref(),
            tenant_slug: r.tenant_slug.as_deref(),
            outcome: &r.outcome,
            external_id: r.external_id.as_deref(),
            metadata: r.metadata.get(),
            mapper: r.mapper.as_deref(),
            unrecognised: r.unrecognised,
        }
    }

    /// SHA-256 of the canonical form: every column in a fixed order, each
    /// text as absent or as its length and bytes, so no two records share one.
    pub fn content_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"audit-ingest record v1\0");
        h.update(self.id.to_be_bytes());
        let text = |h: &mut Sha256, v: Option<&str>| match v {
            None => h.update([0]),
            Some(s) => {
                h.update([1]);
                h.update((s.len() as u64).to_be_bytes());
                h.update(s.as_bytes());
            }
        };
        text(&mut h, Some(self.source));
        text(&mut h, Some(self.action));
        h.update(self.at.to_be_bytes());
        h.update(self.received_at.to_be_bytes());
        for v in [
            self.actor_id,
            self.actor_name,
            self.actor_email,
            self.ip,
            self.target_type,
            self.target_id,
            self.target_name,
            self.tenant_slug,
        ] {
            text(&mut h, v);
        }
        text(&mut h, Some(self.outcome));
        text(&mut h, self.external_id);
        text(&mut h, Some(self.metadata));
        text(&mut h, self.mapper);
        h.update([u8::from(self.unrecognised)]);
        h.finalize().into()
    }
}

/// The chain value after `previous` and one entry (`content`: the records'
/// hashes, 32 bytes each).
pub fn link(previous: &[u8; 32], seq: i64, kind: i64, event_id: i64, content: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"audit-ingest chain v1\0");
    h.update(previous);
    h.update(seq.to_be_bytes());
    h.update(kind.to_be_bytes());
    h.update(event_id.to_be_bytes());
    h.update(Sha256::digest(content));
    h.finalize().into()
}

/// The writer's end of the chain: the last entry's number and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    pub seq: i64,
    pub chain: [u8; 32],
}

impl Head {
    /// Where the chain ends in this file (its tables exist: `open` made
    /// them). A file whose records predate the chain starts it after them
    /// (`genesis_after`), and says so once.
    pub fn load(conn: &Connection) -> rusqlite::Result<Head> {
        if let Some((seq, chain)) = last(conn)? {
            return Ok(Head { seq, chain });
        }
        let newest: i64 = conn.query_row("SELECT coalesce(max(id), 0) FROM audit_events", [], |r| r.get(0))?;
        let added = conn.execute(
            "INSERT OR IGNORE INTO chain_meta (name, value) VALUES ('genesis_after', ?1)",
            [newest],
        )?;
        if added == 1 && newest > 0 {
            tracing::warn!(
                records = newest,
                "store: the hash chain starts now; the {newest} records written before it are not covered by tamper evidence"
            );
        }
        Ok(Head { seq: 0, chain: GENESIS })
    }

    /// Where the chain ends now, read in the writing transaction: the same
    /// as the writer's own head unless another process wrote the file.
    pub fn current(conn: &Connection) -> rusqlite::Result<Head> {
        Ok(last(conn)?.map_or(Head { seq: 0, chain: GENESIS }, |(seq, chain)| Head { seq, chain }))
    }

    fn append(&mut self, tx: &Transaction<'_>, kind: i64, event_id: i64, content: &[u8]) -> rusqlite::Result<()> {
        let seq = self.seq + 1;
        let chain = link(&self.chain, seq, kind, event_id, content);
        tx.prepare_cached("INSERT INTO audit_chain (seq, kind, event_id, content, chain) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![seq, kind, event_id, content, &chain[..]])?;
        *self = Head { seq, chain };
        Ok(())
    }

    /// Chains that the record with `id` was superseded by a re-mapping
    /// whose first record is `by` (0: the re-mapping stored none), before
    /// it leaves the timeline: its hash as the superseded record keeps it,
    /// and `by`.
    pub fn superseded(&mut self, tx: &Transaction<'_>, id: i64, by: i64) -> rusqlite::Result<()> {
        let mut content = superseded_hash(tx, id)?.unwrap_or(GENESIS).to_vec();
        content.extend_from_slice(&by.to_be_bytes());
        self.append(tx, REMOVED, id, &content)
    }

    /// Chains retention's deletion of the records `ids` (ascending, not empty).
    pub fn expired(&mut self, tx: &Transaction<'_>, ids: &[i64]) -> rusqlite::Result<()> {
        let content: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
        self.append(tx, EXPIRED, ids.first().copied().unwrap_or(0), &content)
    }

    /// Chains a cut: the chain now starts after entry `seq`, whose value was `chain`.
    pub fn cut(&mut self, tx: &Transaction<'_>, seq: i64, chain: &[u8; 32]) -> rusqlite::Result<()> {
        let mut content = seq.to_be_bytes().to_vec();
        content.extend_from_slice(chain);
        self.append(tx, CUT, seq, &content)
    }
}

/// Where the chain in the file starts: after the entry the newest cut
/// names, with that entry's value (`(0, GENESIS)` when never cut).
pub(super) fn start(conn: &Connection) -> rusqlite::Result<(i64, [u8; 32])> {
    Ok(newest_cut(conn)?.map_or((0, GENESIS), |c| (c.after, c.chain)))
}

/// A cut of the chain's prefix, as its entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// The entries up to this one were dropped.
    pub after: i64,
    /// The chain value after that entry.
    pub chain: [u8; 32],
    /// The cut's own entry.
    pub entry: i64,
}

/// The newest cut, if the chain was ever cut.
fn newest_cut(conn: &Connection) -> rusqlite::Result<Option<Cut>> {
    let newest: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT seq, content FROM audit_chain WHERE kind = ?1 ORDER BY seq DESC LIMIT 1",
            [CUT],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(newest.filter(|(_, c)| c.len() == 40).map(|(entry, c)| Cut {
        after: i64::from_be_bytes(c[..8].try_into().unwrap_or_default()),
        chain: hash32(c[8..].to_vec()),
        entry,
    }))
}

/// The ids an entry says are gone: a removal's one id, retention's list.
fn gone_ids(kind: i64, event_id: i64, content: &[u8]) -> Vec<i64> {
    match kind {
        REMOVED => vec![event_id],
        EXPIRED => content
            .chunks_exact(8)
            .map(|c| i64::from_be_bytes(c.try_into().unwrap_or_default()))
            .collect(),
        _ => Vec::new(),
    }
}

/// Where a cut may go: entries from the chain's start up to the first
/// that wrote a record still kept (the cut must lie before it), read in
/// order. Returns that entry's number, or the head's plus one when every
/// record written is gone.
pub(super) fn first_still_needed(conn: &Connection) -> rusqlite::Result<i64> {
    let (from, _) = start(conn)?;
    let genesis_after: i64 = conn
        .query_row("SELECT value FROM chain_meta WHERE name = 'genesis_after'", [], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(0);
    // Superseded records are kept too, and verified through their entries.
    let oldest: Option<i64> = conn.query_row(
        "SELECT min(id) FROM (SELECT min(id) AS id FROM audit_events WHERE id > ?1 \
         UNION ALL SELECT min(id) FROM superseded_events WHERE id > ?1)",
        [genesis_after],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare_cached(
        "SELECT seq, event_id + length(content) / 32 - 1 FROM audit_chain WHERE seq > ?1 AND kind = ?2 ORDER BY seq",
    )?;
    let mut rows = stmt.query(params![from, WRITTEN])?;
    while let Some(row) = rows.next()? {
        let (seq, last_id): (i64, i64) = (row.get(0)?, row.get(1)?);
        if oldest.is_some_and(|oldest| last_id >= oldest) {
            return Ok(seq);
        }
    }
    Ok(last(conn)?.map_or(1, |(seq, _)| seq + 1))
}

/// Records one write stored, gathered into one entry per run of
/// consecutive ids; [`Run::close`] appends what is left.
#[derive(Default)]
pub(super) struct Run {
    first: i64,
    hashes: Vec<u8>,
}

impl Run {
    /// The record just written under `id`.
    pub fn written(&mut self, tx: &Transaction<'_>, head: &mut Head, id: i64, r: &NewRecord) -> rusqlite::Result<()> {
        let next = self.first + (self.hashes.len() / 32) as i64;
        if !self.hashes.is_empty() && id != next {
            self.close(tx, head)?;
        }
        if self.hashes.is_empty() {
            self.first = id;
        }
        self.hashes.extend_from_slice(&Fields::of(id, r).content_hash());
        Ok(())
    }

    /// Appends the run as one entry (nothing when empty).
    pub fn close(&mut self, tx: &Transaction<'_>, head: &mut Head) -> rusqlite::Result<()> {
        if !self.hashes.is_empty() {
            head.append(tx, WRITTEN, self.first, &self.hashes)?;
            self.hashes.clear();
        }
        Ok(())
    }
}

const RECORD_COLUMNS: &str = "id, source, action, at, received_at, actor_id, actor_name, actor_email, ip, \
     target_type, target_id, target_name, tenant_slug, outcome, external_id, metadata, mapper, unrecognised";

fn hash_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, [u8; 32])> {
    let text = |i: usize| -> rusqlite::Result<Option<&str>> {
        row.get_ref(i)?
            .as_str_or_null()
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
    };
    let need = |i: usize| -> rusqlite::Result<&str> { Ok(text(i)?.unwrap_or_default()) };
    let id: i64 = row.get(0)?;
    let fields = Fields {
        id,
        source: need(1)?,
        action: need(2)?,
        at: row.get(3)?,
        received_at: row.get(4)?,
        actor_id: text(5)?,
        actor_name: text(6)?,
        actor_email: text(7)?,
        ip: text(8)?,
        target_type: text(9)?,
        target_id: text(10)?,
        target_name: text(11)?,
        tenant_slug: text(12)?,
        outcome: need(13)?,
        external_id: text(14)?,
        metadata: need(15)?,
        mapper: text(16)?,
        unrecognised: row.get::<_, i64>(17)? != 0,
    };
    Ok((id, fields.content_hash()))
}

/// The SHA-256 of the canonical form of the record stored under `id`, as
/// the chain holds it (what anyone who can read the file can compute: the
/// chain alone proves nothing without a signed digest).
pub fn record_hash(conn: &Connection, id: i64) -> rusqlite::Result<Option<[u8; 32]>> {
    conn.query_row(
        &format!("SELECT {RECORD_COLUMNS} FROM audit_events WHERE id = ?1"),
        [id],
        |row| hash_row(row).map(|(_, h)| h),
    )
    .optional()
}

/// The hash of the superseded record kept under `id`.
fn superseded_hash(conn: &Connection, id: i64) -> rusqlite::Result<Option<[u8; 32]>> {
    conn.query_row(
        &format!("SELECT {RECORD_COLUMNS} FROM superseded_events WHERE id = ?1"),
        [id],
        |row| hash_row(row).map(|(_, h)| h),
    )
    .optional()
}

/// Something [`verify`] found that the writer did not write.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "problem", rename_all = "camelCase")]
pub enum Finding {
    /// The record's columns are not what was written.
    Altered {
        /// The record's id.
        id: i64,
    },
    /// A record the chain says was written (and never removed) is gone.
    Deleted {
        /// The record's id.
        id: i64,
    },
    /// A record is in the file that the writer never wrote.
    Inserted {
        /// The record's id.
        id: i64,
    },
    /// A chain entry is missing: entries were deleted.
    EntriesMissing {
        /// The first missing entry.
        from_seq: i64,
        /// The last missing entry.
        to_seq: i64,
    },
    /// A chain entry's value does not follow from the one before: the
    /// chain itself was edited there.
    EntryAltered {
        /// The entry.
        seq: i64,
    },
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainReport {
    /// Chain entries read (one per run of records a write stored, one
    /// per removal).
    pub entries: u64,
    /// Records compared with their entries.
    pub records: u64,
    /// Superseded records (kept out of the timeline after a re-mapping)
    /// compared with their entries.
    pub superseded: u64,
    /// Records with ids up to this predate the chain and are not covered.
    pub genesis_after: i64,
    /// Where the chain in the file starts, if retention cut it.
    #[serde(skip)]
    pub cut: Option<Cut>,
    /// The re-computed chain value after each asked-for entry, in order
    /// (`None`: the chain does not reach that entry).
    pub heads: Vec<(i64, Option<[u8; 32]>)>,
    /// The last entry and its re-computed value.
    pub head: Option<(i64, [u8; 32])>,
    /// What differs, at most [`MAX_FINDINGS`] of them.
    pub findings: Vec<Finding>,
    /// How many findings there were in all.
    pub findings_total: u64,
}

/// Findings kept in a report at most (the total is counted).
pub const MAX_FINDINGS: usize = 1000;

impl ChainReport {
    fn found(&mut self, finding: Finding) {
        self.findings_total += 1;
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(finding);
        }
    }
}

/// Re-computes the chain of the store file at `path` (read only) and
/// compares every record with its entry; `checkpoints` are the entries
/// whose chain value the caller wants (a digest's `lastSeq`, ascending).
///
/// Records and entries are read in one ordered pass each, so the memory
/// used does not grow with the store (only removals are held, as ids).
pub fn verify(path: &Path, checkpoints: &[i64]) -> rusqlite::Result<ChainReport> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    let mut report = ChainReport {
        genesis_after: conn
            .query_row("SELECT value FROM chain_meta WHERE name = 'genesis_after'", [], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or(0),
        ..ChainReport::default()
    };
    let cut = newest_cut(&conn)?;
    let (cut_seq, cut_chain) = cut.map_or((0, GENESIS), |c| (c.after, c.chain));
    report.cut = cut;
    // What re-mappings and retention took out of the timeline, in the
    // chain after the cut; and the superseded records that must be kept.
    let mut removed: Vec<i64> = Vec::new();
    let mut expired: Vec<i64> = Vec::new();
    let mut superseded: Vec<(i64, [u8; 32])> = Vec::new();
    {
        let mut gone =
            conn.prepare("SELECT kind, event_id, content FROM audit_chain WHERE seq > ?1 AND kind IN (?2, ?3)")?;
        let mut rows = gone.query(params![cut_seq, REMOVED, EXPIRED])?;
        while let Some(row) = rows.next()? {
            let (kind, event_id, content): (i64, i64, Vec<u8>) = (row.get(0)?, row.get(1)?, row.get(2)?);
            let ids = gone_ids(kind, event_id, &content);
            if kind == REMOVED && content.len() == 40 {
                superseded.push((event_id, hash32(content[..32].to_vec())));
            }
            if kind == EXPIRED {
                expired.extend(&ids);
            }
            removed.extend(ids);
        }
    }
    removed.sort_unstable();
    expired.sort_unstable();
    let (removed, expired) = (Ids(removed), Ids(expired));
    let mut entries =
        conn.prepare("SELECT seq, kind, event_id, content, chain FROM audit_chain WHERE seq > ?1 ORDER BY seq")?;
    let mut entries = entries.query([cut_seq])?;
    let mut records = conn.prepare(&format!(
        "SELECT {RECORD_COLUMNS} FROM audit_events WHERE id > ?1 ORDER BY id"
    ))?;
    let mut records = records.query([report.genesis_after])?;
    let mut next_record = next_hashed(&mut records)?;
    let mut want = checkpoints.iter().copied().peekable();
    // Digests of entries the cut dropped: only the one at the cut itself
    // can still be compared (with the value the cut entry kept).
    while let Some(&at) = want.peek().filter(|at| **at <= cut_seq) {
        want.next();
        report.heads.push((at, (at == cut_seq).then_some(cut_chain)));
    }
    let (mut chain, mut expected_seq) = (cut_chain, cut_seq + 1);
    while let Some(row) = entries.next()? {
        let (seq, kind, event_id): (i64, i64, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let content: Vec<u8> = row.get(3)?;
        let stored = hash32(row.get(4)?);
        report.entries += 1;
        if seq != expected_seq {
            report.found(Finding::EntriesMissing {
                from_seq: expected_seq,
                to_seq: seq - 1,
            });
        }
        expected_seq = seq + 1;
        let recomputed = link(&chain, seq, kind, event_id, &content);
        if recomputed != stored {
            report.found(Finding::EntryAltered { seq });
        }
        // Go on from the stored value, so one edit is reported once and
        // every later entry is still checked on its own.
        chain = stored;
        while let Some(&at) = want.peek().filter(|at| **at <= seq) {
            want.next();
            report.heads.push((at, (at == seq).then_some(recomputed)));
        }
        report.head = Some((seq, recomputed));
        if kind != WRITTEN {
            continue;
        }
        for (n, written) in content.chunks(32).enumerate() {
            let event_id = event_id + n as i64;
            // Records the chain never wrote, before this one.
            while let Some((id, _)) = next_record.filter(|(id, _)| *id < event_id) {
                report.found(Finding::Inserted { id });
                next_record = next_hashed(&mut records)?;
            }
            match next_record {
                Some((id, hash)) if id == event_id => {
                    report.records += 1;
                    if removed.contains(&id) {
                        // Removed by a re-map, yet here again.
                        report.found(Finding::Inserted { id });
                    } else if hash[..] != *written {
                        report.found(Finding::Altered { id });
                    }
                    next_record = next_hashed(&mut records)?;
                }
                _ if removed.contains(&event_id) => {}
                _ => report.found(Finding::Deleted { id: event_id }),
            }
        }
    }
    while let Some((id, _)) = next_record {
        report.found(Finding::Inserted { id });
        next_record = next_hashed(&mut records)?;
    }
    check_superseded(&conn, &superseded, &expired, &mut report)?;
    for at in want {
        report.heads.push((at, None));
    }
    Ok(report)
}

/// Compares each superseded record kept with the hash its entry chained
/// (unless retention deleted it since), and finds kept ones no entry names.
fn check_superseded(
    conn: &Connection,
    chained: &[(i64, [u8; 32])],
    expired: &Ids,
    report: &mut ChainReport,
) -> rusqlite::Result<()> {
    let mut named: Vec<i64> = chained.iter().map(|(id, _)| *id).collect();
    named.sort_unstable();
    let named = Ids(named);
    for (id, hash) in chained {
        if expired.contains(id) {
            continue;
        }
        match superseded_hash(conn, *id)? {
            Some(kept) if kept == *hash => report.superseded += 1,
            Some(_) => report.found(Finding::Altered { id: *id }),
            None => report.found(Finding::Deleted { id: *id }),
        }
    }
    let mut kept = conn.prepare("SELECT id FROM superseded_events ORDER BY id")?;
    let mut rows = kept.query([])?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        if !named.contains(&id) {
            report.found(Finding::Inserted { id });
        }
    }
    Ok(())
}

/// Sorted ids, searched.
struct Ids(Vec<i64>);

impl Ids {
    fn contains(&self, id: &i64) -> bool {
        self.0.binary_search(id).is_ok()
    }
}

/// The next record of an ordered read, with its hash.
fn next_hashed(records: &mut rusqlite::Rows<'_>) -> rusqlite::Result<Option<(i64, [u8; 32])>> {
    records.next()?.map(hash_row).transpose()
}

fn hash32(bytes: Vec<u8>) -> [u8; 32] {
    <[u8; 32]>::try_from(bytes.as_slice()).unwrap_or(GENESIS)
}

/// The chain's last entry and its value, as the writer left it.
pub(super) fn last(conn: &Connection) -> rusqlite::Result<Option<(i64, [u8; 32])>> {
    conn.query_row(
        "SELECT seq, chain FROM audit_chain ORDER BY seq DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, hash32(r.get(1)?))),
    )
    .optional()
}
