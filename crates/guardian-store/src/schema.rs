//! The database schema, and the migration from the schema before incidents.

use eyre::{Result, WrapErr, bail};
use rusqlite::{Connection, OptionalExtension};

/// The schema version this guardian writes.
pub(crate) const VERSION: i64 = 2;

/// The whole schema, version 2. Idempotent (`IF NOT EXISTS`).
pub(crate) const SCHEMA: &str = r#"
-- The audit log, a hash chain (guardian_core::audit): `body` is the entry's canonical JSON,
-- `hash` its sha256; the other columns are copies for queries. Mirrored to audit.jsonl.
CREATE TABLE IF NOT EXISTS audit_log (
    seq         INTEGER PRIMARY KEY,
    at_ms       INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    incident_id INTEGER,
    body        TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_incident ON audit_log (incident_id);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cursor (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    number INTEGER NOT NULL,
    hash   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS recent_blocks (
    number      INTEGER PRIMARY KEY,
    hash        TEXT NOT NULL,
    parent_hash TEXT NOT NULL
);
-- One row per incident; `body` is guardian_core::incident::Incident as JSON, the columns
-- beside it are copies for queries.
CREATE TABLE IF NOT EXISTS incidents (
    id         INTEGER PRIMARY KEY,
    key        TEXT NOT NULL UNIQUE,
    contract   TEXT NOT NULL,
    address    TEXT NOT NULL,
    state      TEXT NOT NULL,
    severity   TEXT NOT NULL,
    opened_at  INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    body       TEXT NOT NULL
);
-- At most one incident per contract that is not closed: every finding attaches to it.
CREATE UNIQUE INDEX IF NOT EXISTS incidents_one_open
    ON incidents (address) WHERE state NOT IN ('resolved', 'withdrawn', 'cancelled');
CREATE TABLE IF NOT EXISTS findings (
    id             INTEGER PRIMARY KEY,
    rule           TEXT NOT NULL,
    contract       TEXT NOT NULL,
    address        TEXT NOT NULL,
    severity       TEXT NOT NULL,
    action         TEXT NOT NULL,
    action_json    TEXT NOT NULL,
    summary        TEXT NOT NULL,
    block_number   INTEGER NOT NULL,
    block_hash     TEXT NOT NULL,
    evidence       TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('open', 'resolved', 'retracted')),
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    incident_id    INTEGER REFERENCES incidents (id),
    anomaly        TEXT,
    magnitude      TEXT,
    latest_summary TEXT,
    latest_block   INTEGER,
    peak_summary   TEXT,
    peak_block     INTEGER,
    peak_magnitude TEXT
);
-- Deduplication is structural: at most one open finding per rule and contract.
CREATE UNIQUE INDEX IF NOT EXISTS findings_one_open
    ON findings (rule, address) WHERE status = 'open';
CREATE INDEX IF NOT EXISTS findings_block ON findings (block_number);
CREATE INDEX IF NOT EXISTS findings_incident ON findings (incident_id);
-- Every anomaly that fed a finding, exactly once: replaying a block after a crash or a restart
-- cannot count the same log or the same block twice. `anomaly_key` recognises the anomaly on
-- another branch after a reorg (a transaction's n-th match, or a block height).
CREATE TABLE IF NOT EXISTS occurrences (
    id           INTEGER PRIMARY KEY,
    finding_id   INTEGER NOT NULL REFERENCES findings (id),
    rule         TEXT NOT NULL,
    address      TEXT NOT NULL,
    block_number INTEGER NOT NULL,
    block_hash   TEXT NOT NULL,
    tx_hash      TEXT NOT NULL DEFAULT '',
    log_index    INTEGER NOT NULL DEFAULT -1,
    evidence     TEXT NOT NULL,
    retracted    INTEGER NOT NULL DEFAULT 0,
    anomaly_key  TEXT NOT NULL DEFAULT '',
    UNIQUE (rule, address, block_hash, tx_hash, log_index)
);
CREATE INDEX IF NOT EXISTS occurrences_block ON occurrences (block_number);
CREATE INDEX IF NOT EXISTS occurrences_anomaly ON occurrences (rule, address, anomaly_key);
-- The event stream: one row per incident transition that changed anything. It is the audit
-- log; notifications and metrics are derived from it.
CREATE TABLE IF NOT EXISTS incident_events (
    id          INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    seq         INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    event       TEXT NOT NULL,
    from_state  TEXT NOT NULL,
    to_state    TEXT NOT NULL,
    block       INTEGER,
    at          INTEGER NOT NULL,
    UNIQUE (incident_id, seq)
);
-- The outbox: every effect the incident machine asked for that touches the world, written in
-- the transaction of the transition that asked for it and done from here, so a crash at any
-- point resumes. `key` is the idempotency key (the same on every replica for notifications).
CREATE TABLE IF NOT EXISTS effects (
    id            INTEGER PRIMARY KEY,
    incident_id   INTEGER NOT NULL REFERENCES incidents (id),
    event_id      INTEGER NOT NULL REFERENCES incident_events (id),
    kind          TEXT NOT NULL
        CHECK (kind IN ('notify', 'pause_now', 'propose', 'execute', 'rollback', 'recovery')),
    key           TEXT NOT NULL UNIQUE,
    body          TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_try_at   INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    failing_since INTEGER,
    done_at       INTEGER,
    outcome       TEXT
);
CREATE INDEX IF NOT EXISTS effects_due ON effects (kind, done_at, next_try_at);
CREATE INDEX IF NOT EXISTS effects_incident ON effects (incident_id);
-- Timers the machine scheduled (escalations); they come back as events.
CREATE TABLE IF NOT EXISTS timers (
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    timer       TEXT NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (incident_id, timer)
);
CREATE TABLE IF NOT EXISTS proposals (
    safe_tx_hash     TEXT PRIMARY KEY,
    chain_id         INTEGER NOT NULL,
    safe             TEXT NOT NULL,
    kind             TEXT NOT NULL
        CHECK (kind IN ('pause', 'unpause', 'enable_module', 'disable_module')),
    contract         TEXT NOT NULL,
    target           TEXT NOT NULL,
    calldata         TEXT NOT NULL,
    nonce            TEXT NOT NULL,
    finding_id       INTEGER,
    then_rollback    INTEGER NOT NULL DEFAULT 0,
    reason           TEXT NOT NULL,
    status           TEXT NOT NULL
        CHECK (status IN ('pending', 'executed', 'stale', 'skipped', 'withdrawn')),
    simulation       TEXT NOT NULL,
    created_block    INTEGER NOT NULL,
    replaces         TEXT,
    replaced_by      TEXT,
    executed_tx      TEXT,
    executed_by      TEXT,
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    incident_id      INTEGER REFERENCES incidents (id),
    withdrawn_reason TEXT
);
-- One live proposal per target and direction: a second pause of the same contract joins the
-- first instead of competing with it for the Safe nonce.
CREATE UNIQUE INDEX IF NOT EXISTS proposals_one_pending
    ON proposals (safe, target, kind) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS proposals_finding ON proposals (finding_id);
CREATE INDEX IF NOT EXISTS proposals_incident ON proposals (incident_id);
-- Verified off-chain owner signatures (65 bytes, hex), one per owner and proposal.
CREATE TABLE IF NOT EXISTS proposal_signatures (
    safe_tx_hash TEXT NOT NULL REFERENCES proposals (safe_tx_hash),
    owner        TEXT NOT NULL,
    signature    TEXT NOT NULL,
    received_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (safe_tx_hash, owner)
);
-- A proposal's own trail: signatures accepted or refused, on-chain approvals, executions.
-- `reason`, `count` and `last_at` aggregate rejections: one row per (source, reason), however
-- many times it was posted (see `Store::proposal_rejection`).
CREATE TABLE IF NOT EXISTS proposal_events (
    id           INTEGER PRIMARY KEY,
    safe_tx_hash TEXT NOT NULL,
    event        TEXT NOT NULL,
    actor        TEXT,
    detail       TEXT NOT NULL,
    at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    reason       TEXT,
    count        INTEGER NOT NULL DEFAULT 1,
    last_at      TEXT
);
CREATE INDEX IF NOT EXISTS proposal_events_hash ON proposal_events (safe_tx_hash);
"#;

/// The `CREATE TABLE` statement of `table` in [`SCHEMA`], creating it under `as_name`.
fn table_sql(table: &str, as_name: &str) -> Result<String> {
    SCHEMA
        .split_once(&format!("CREATE TABLE IF NOT EXISTS {table} ("))
        .and_then(|(_, rest)| rest.split_once(");"))
        .map(|(columns, _)| format!("CREATE TABLE IF NOT EXISTS {as_name} ({columns});"))
        .ok_or_else(|| eyre::eyre!("table {table} is missing from the schema"))
}

fn has_table(conn: &Connection, table: &str) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

pub(crate) fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = stmt.query_map([], |r| r.get::<_, String>(1))?;
    for name in names {
        if name? == column {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The schema version of the database on `conn`: 0 when it is new, else what `meta` says.
pub(crate) fn version(conn: &Connection) -> Result<i64> {
    if !has_table(conn, "meta")? {
        return Ok(0);
    }
    let stored: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0))
        .optional()?;
    match stored {
        None => Ok(0),
        Some(v) => v.parse().wrap_err_with(|| format!("schema_version {v:?} is not a number")),
    }
}

/// Bring a version 1 database (findings and a per-finding outbox, no incidents) to version 2,
/// in the caller's transaction: new columns and tables, the proposals table rebuilt for the
/// `withdrawn` status. Open findings get their incidents afterwards
/// ([`crate::Store::adopt_unlinked_findings`]), and the old outbox says which of them were
/// already announced.
pub(crate) fn migrate_v1(conn: &Connection) -> Result<Vec<(i64, bool)>> {
    for (table, column, ty) in [
        ("findings", "incident_id", "INTEGER"),
        ("findings", "anomaly", "TEXT"),
        ("findings", "magnitude", "TEXT"),
        ("findings", "latest_summary", "TEXT"),
        ("findings", "latest_block", "INTEGER"),
        ("findings", "peak_summary", "TEXT"),
        ("findings", "peak_block", "INTEGER"),
        ("findings", "peak_magnitude", "TEXT"),
        ("occurrences", "anomaly_key", "TEXT NOT NULL DEFAULT ''"),
    ] {
        if has_table(conn, table)? && !has_column(conn, table, column)? {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty};"))?;
        }
    }
    if has_table(conn, "proposals")? && !has_column(conn, "proposals", "withdrawn_reason")? {
        // SQLite cannot change a CHECK constraint in place: copy into a new table, drop the old
        // one, rename (foreign keys are off during migration, so the signatures' references to
        // `proposals` simply name the new table afterwards).
        conn.execute_batch(&table_sql("incidents", "incidents")?)?;
        let create = table_sql("proposals", "proposals_v2")?;
        conn.execute_batch(&create)?;
        conn.execute_batch(
            "INSERT INTO proposals_v2 (safe_tx_hash, chain_id, safe, kind, contract, target,
                 calldata, nonce, finding_id, then_rollback, reason, status, simulation,
                 created_block, replaces, replaced_by, executed_tx, executed_by, created_at,
                 updated_at)
             SELECT safe_tx_hash, chain_id, safe, kind, contract, target, calldata, nonce,
                 finding_id, then_rollback, reason, status, simulation, created_block, replaces,
                 replaced_by, executed_tx, executed_by, created_at, updated_at FROM proposals;
             DROP TABLE proposals;
             ALTER TABLE proposals_v2 RENAME TO proposals;",
        )?;
    }
    conn.execute_batch(SCHEMA)?;
    let mut announced = Vec::new();
    if has_table(conn, "outbox")? {
        let mut stmt = conn.prepare("SELECT finding_id, done FROM outbox ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, bool>(1)?)))?;
        for row in rows {
            announced.push(row?);
        }
        drop(stmt);
        conn.execute_batch("DROP TABLE outbox;")?;
    }
    Ok(announced)
}

/// Columns added to version 2 after it shipped, each with a default that older rows and older
/// guardians live with: added when missing, under an immediate transaction so two processes
/// opening one database do not both add them.
pub(crate) fn add_columns(conn: &mut Connection) -> Result<()> {
    const ADDED: [(&str, &str, &str); 3] = [
        ("proposal_events", "reason", "TEXT"),
        ("proposal_events", "count", "INTEGER NOT NULL DEFAULT 1"),
        ("proposal_events", "last_at", "TEXT"),
    ];
    if ADDED
        .iter()
        .try_fold(true, |all, (t, c, _)| Ok::<_, eyre::Report>(all && has_column(conn, t, c)?))?
    {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for (table, column, ty) in ADDED {
        if !has_column(&tx, table, column)? {
            tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty};"))?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Refuse a database written by a newer guardian.
pub(crate) fn check_version(found: i64) -> Result<()> {
    if found > VERSION {
        bail!(
            "database schema version {found} is newer than this guardian understands ({VERSION}): upgrade guardian"
        );
    }
    Ok(())
}
