//! The embedded store's tables, indexes and connection settings.

/// Tables and indexes, created idempotently at start-up.
///
/// Every index a timeline filter drives is `(column, at, id)`, so "records
/// with this value, newest first" is one ordered index range with no sort;
/// actor and IP go through `audit_lookup`, which is ordered the same way.
///
/// There is no `(source, at, id)` index: each index costs every insert a
/// B-tree update (dropping this one took inserts from ~183k to ~210k
/// events/s), and a source has few distinct actions, so `source_actions`
/// lists them and a source filter walks the action index once per action
/// (see `query.rs`). Databases made before this are migrated at open.
pub(super) const SCHEMA: &str = "
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
    mapper TEXT,
    unrecognised INTEGER NOT NULL DEFAULT 0
);
-- The partial unique rule: only records with an external id can collide.
CREATE UNIQUE INDEX IF NOT EXISTS audit_events_source_external_id
    ON audit_events (source, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_action_at ON audit_events (action, at, id);
-- By tenant, then action: a tenant's actions are one range each, so
-- one action for one tenant never walks the records of other tenants.
CREATE INDEX IF NOT EXISTS audit_events_tenant_action_at ON audit_events (tenant_slug, action, at, id)
    WHERE tenant_slug IS NOT NULL;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    sender TEXT,
    mapper TEXT,
    error TEXT NOT NULL,
    body BLOB NOT NULL,
    transport TEXT NOT NULL DEFAULT 'webhook',
    headers TEXT NOT NULL DEFAULT '[]',
    origin TEXT
);
-- Every (source, action) pair that has a record; kept by the writer.
CREATE TABLE IF NOT EXISTS source_actions (
    source TEXT NOT NULL,
    action TEXT NOT NULL,
    PRIMARY KEY (source, action)
) WITHOUT ROWID;
-- Records removed after they were written (a catch-all record replaced by
-- its re-mapping, or deleted by retention), in the order removed, so the
-- lookup builder can take them out of the hourly counts, the actor/IP keys
-- and the text index it already made; pruned once it has.
CREATE TABLE IF NOT EXISTS removed_events (
    seq INTEGER PRIMARY KEY,
    id INTEGER NOT NULL,
    at INTEGER NOT NULL,
    source TEXT NOT NULL,
    outcome TEXT NOT NULL,
    tenant TEXT NOT NULL,
    unrecognised INTEGER NOT NULL,
    actor_id TEXT,
    actor_name TEXT,
    actor_email TEXT,
    ip TEXT,
    target_id TEXT,
    target_name TEXT
);
-- Records a re-mapping superseded (a catch-all record and the records its
-- original now maps to): kept as they were written, out of the timeline,
-- with the first record that replaced them.
CREATE TABLE IF NOT EXISTS superseded_events (
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
    mapper TEXT,
    unrecognised INTEGER NOT NULL DEFAULT 0,
    superseded_by INTEGER
);
CREATE INDEX IF NOT EXISTS superseded_events_by ON superseded_events (superseded_by);
CREATE TABLE IF NOT EXISTS ingest_cursors (
    source TEXT PRIMARY KEY,
    cursor TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    token INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
";

/// The actor and IP lookup, in its own database file beside the main one
/// (see `lookup.rs`), attached to read connections as `lk`.
///
/// `a:<actor id, name or e-mail>` and `i:<ip>` keys of each event, newest
/// first per key; the actor and target text for `q`; hourly counts for the
/// overview; and the watermark: the last event id whose keys are in.
pub(super) const LOOKUP_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_lookup (
    key TEXT NOT NULL,
    at INTEGER NOT NULL,
    id INTEGER NOT NULL,
    PRIMARY KEY (key, at, id)
) WITHOUT ROWID;
-- Text of the actor and target fields, trigram-indexed for `q` (substring,
-- case-insensitive). Contentless: the text itself stays in the events table.
CREATE VIRTUAL TABLE IF NOT EXISTS audit_text USING fts5(
    body, tokenize = 'trigram', content = ''
);
-- Records per hour, source, outcome and tenant ('' for none), of the
-- events up to the watermark: the overview's counts for whole hours.
CREATE TABLE IF NOT EXISTS audit_counts (
    hour INTEGER NOT NULL,
    source TEXT NOT NULL,
    outcome TEXT NOT NULL,
    tenant TEXT NOT NULL,
    n INTEGER NOT NULL,
    unrecognised INTEGER NOT NULL,
    PRIMARY KEY (hour, source, outcome, tenant)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lookup_meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO lookup_meta (name, value) VALUES ('watermark', 0);
-- The last removed_events row taken into account.
INSERT OR IGNORE INTO lookup_meta (name, value) VALUES ('removed_seen', 0);
";

/// The time index (created by `migrate`, after the columns it covers
/// exist). It orders the unfiltered timeline by `(at, id)` and carries the
/// columns the overview counts, so counting a range reads this index alone,
/// never the rows; a timeline walk on it also checks source, outcome and
/// tenant filters before it fetches a row. It replaced `(at, id)`
/// (`audit_events_at`), at the cost of a wider entry per insert.
pub(super) const TIME_INDEX: &str = "audit_events_time";

/// Creates [`TIME_INDEX`].
pub(super) const CREATE_TIME_INDEX: &str = "CREATE INDEX IF NOT EXISTS audit_events_time \
     ON audit_events (at, id, source, outcome, tenant_slug, unrecognised)";

/// Databases made before records kept their catch-all flag in a column:
/// their records count as recognised in the overview (the flag stays in
/// each record's metadata, where re-mapping reads it).
pub(super) const ADD_UNRECOGNISED_COLUMN: &str =
    "ALTER TABLE audit_events ADD COLUMN unrecognised INTEGER NOT NULL DEFAULT 0";

/// Every column of `audit_events`, in the order `row_to_record` reads them.
pub(super) const COLUMNS: &str = "id, source, action, at, received_at, actor_id, actor_name, \
     actor_email, ip, target_type, target_id, target_name, tenant_slug, outcome, external_id, \
     metadata, mapper, unrecognised";

/// The same columns of the table aliased `e`.
pub(super) const E_COLUMNS: &str = "e.id, e.source, e.action, e.at, e.received_at, e.actor_id, \
     e.actor_name, e.actor_email, e.ip, e.target_type, e.target_id, e.target_name, \
     e.tenant_slug, e.outcome, e.external_id, e.metadata, e.mapper, e.unrecognised";

/// Databases made before `source_actions` existed: list the pairs they hold
/// and drop the per-source index, in one transaction (run once; the index's
/// presence says it has not run yet).
pub(super) const MIGRATE_SOURCE_INDEX: &str = "
BEGIN IMMEDIATE;
INSERT OR IGNORE INTO source_actions (source, action) SELECT DISTINCT source, action FROM audit_events;
DROP INDEX audit_events_source_at;
COMMIT;
";

/// Databases made before dead letters kept how they arrived: those letters
/// replay as the webhook deliveries they mostly were (added one at a time,
/// each only where it is missing; see `migrate`).
pub(super) const DEAD_LETTER_ARRIVAL_COLUMNS: [(&str, &str); 3] = [
    (
        "transport",
        "ALTER TABLE dead_letters ADD COLUMN transport TEXT NOT NULL DEFAULT 'webhook'",
    ),
    (
        "headers",
        "ALTER TABLE dead_letters ADD COLUMN headers TEXT NOT NULL DEFAULT '[]'",
    ),
    ("origin", "ALTER TABLE dead_letters ADD COLUMN origin TEXT"),
];

/// Databases made before removals kept what the lookup indexed: those
/// removals leave their keys in the lookup (pointing at no record).
pub(super) const REMOVED_LOOKUP_COLUMNS: [&str; 6] = [
    "actor_id",
    "actor_name",
    "actor_email",
    "ip",
    "target_id",
    "target_name",
];

/// Notes the removal of the record with id `?1` (before it is deleted).
pub(super) const NOTE_REMOVED: &str = "INSERT INTO removed_events \
     (id, at, source, outcome, tenant, unrecognised, actor_id, actor_name, actor_email, ip, target_id, target_name) \
     SELECT id, at, source, outcome, coalesce(tenant_slug, ''), unrecognised, \
     actor_id, actor_name, actor_email, ip, target_id, target_name FROM audit_events WHERE id = ?1";

/// Keeps the record with id `?1` as it is now among the superseded ones.
pub(super) const KEEP_SUPERSEDED: &str = "INSERT INTO superseded_events (id, source, action, at, received_at, \
     actor_id, actor_name, actor_email, ip, target_type, target_id, target_name, tenant_slug, outcome, \
     external_id, metadata, mapper, unrecognised) SELECT id, source, action, at, received_at, actor_id, \
     actor_name, actor_email, ip, target_type, target_id, target_name, tenant_slug, outcome, external_id, \
     metadata, mapper, unrecognised FROM audit_events WHERE id = ?1";

/// Databases made before the tenant index led with the action too.
pub(super) const DROP_OLD_TENANT_INDEX: &str = "DROP INDEX IF EXISTS audit_events_tenant_at;";

/// One record; a conflict on the partial unique index inserts nothing.
pub(super) const INSERT: &str = "INSERT INTO audit_events (source, action, at, received_at, \
     actor_id, actor_name, actor_email, ip, target_type, target_id, target_name, tenant_slug, \
     outcome, external_id, metadata, mapper, unrecognised) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, \
     ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) ON CONFLICT DO NOTHING";

/// Settings of the write connection: 16 KiB pages (for a new file; they
/// took inserts from ~210k to ~245k events/s against the default 4 KiB:
/// fewer page splits and B-tree levels for rows of ~700 bytes), WAL, the
/// chosen durability, an 8 MiB page cache. (Checkpointing from another
/// thread instead was tried: the WAL kept growing under load and inserts got
/// slower, so SQLite's automatic checkpoints stay.)
pub(super) fn writer_pragmas(synchronous: &str) -> String {
    format!(
        "PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous={synchronous}; PRAGMA busy_timeout=10000; \
         PRAGMA cache_size=-8192; PRAGMA temp_store=MEMORY;"
    )
}
