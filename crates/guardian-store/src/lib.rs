//! guardian's SQLite store.
//!
//! One database file (WAL mode) holds what the daemon must not lose: the block cursor, the
//! recent block hashes used to detect reorgs, findings with every occurrence that triggered them,
//! and the notification outbox. A block's findings, its hash and the cursor move together in one
//! transaction, so after a crash the daemon resumes exactly where it stopped: no block skipped,
//! no occurrence recorded twice.

use std::path::Path;

use alloy_primitives::{Address, B256};
use eyre::{Result, WrapErr, bail, eyre};
use guardian_core::{
    finding::{Evidence, Finding},
    severity::{Action, Severity},
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

/// How many recent block hashes are kept for reorg detection.
pub const RECENT_BLOCKS: u64 = 256;

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = r#"
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
CREATE TABLE IF NOT EXISTS findings (
    id           INTEGER PRIMARY KEY,
    rule         TEXT NOT NULL,
    contract     TEXT NOT NULL,
    address      TEXT NOT NULL,
    severity     TEXT NOT NULL,
    action       TEXT NOT NULL,
    action_json  TEXT NOT NULL,
    summary      TEXT NOT NULL,
    block_number INTEGER NOT NULL,
    block_hash   TEXT NOT NULL,
    evidence     TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('open', 'resolved', 'retracted')),
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
-- Deduplication is structural: at most one open finding per rule and contract.
CREATE UNIQUE INDEX IF NOT EXISTS findings_one_open
    ON findings (rule, address) WHERE status = 'open';
CREATE INDEX IF NOT EXISTS findings_block ON findings (block_number);
-- Every anomaly that fed a finding, exactly once: replaying a block after a crash or a restart
-- cannot count the same log or the same block twice.
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
    UNIQUE (rule, address, block_hash, tx_hash, log_index)
);
CREATE INDEX IF NOT EXISTS occurrences_block ON occurrences (block_number);
-- Durable notification outbox, written in the block's transaction, drained by the notifier.
CREATE TABLE IF NOT EXISTS outbox (
    id          INTEGER PRIMARY KEY,
    finding_id  INTEGER NOT NULL REFERENCES findings (id),
    kind        TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_try_at INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    done        INTEGER NOT NULL DEFAULT 0
);
"#;

/// A block as the cursor and reorg detection know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BlockRef {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// Parent hash.
    pub parent_hash: B256,
}

/// Lifecycle of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingStatus {
    /// Still relevant: new occurrences of the same rule and contract attach to it.
    Open,
    /// An operator (or the pause flow) closed it.
    Resolved,
    /// The block it was seen in was orphaned by a reorg.
    Retracted,
}

impl FindingStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Resolved => "resolved",
            Self::Retracted => "retracted",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "open" => Self::Open,
            "resolved" => Self::Resolved,
            "retracted" => Self::Retracted,
            other => bail!("unknown finding status {other:?} in the database"),
        })
    }
}

/// What recording one finding did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A new open finding was created (notify humans if its action says so).
    New(i64),
    /// A new occurrence was attached to the already-open finding with this id.
    Occurrence(i64),
    /// This exact occurrence was already recorded (a replayed block): nothing changed.
    Duplicate(i64),
}

impl Recorded {
    /// The finding's id.
    pub fn finding_id(self) -> i64 {
        match self {
            Self::New(id) | Self::Occurrence(id) | Self::Duplicate(id) => id,
        }
    }
}

/// A finding as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredFinding {
    /// Row id.
    pub id: i64,
    /// The finding as the engine produced it (first occurrence's evidence).
    pub finding: Finding,
    /// Where it stands.
    pub status: FindingStatus,
    /// How many (non-retracted) occurrences fed it.
    pub occurrences: u64,
    /// When it was recorded (UTC, RFC 3339).
    pub created_at: String,
}

/// One anomaly that fed a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Occurrence {
    /// The finding it fed.
    pub finding_id: i64,
    /// The rule that fired.
    pub rule: String,
    /// Where it was seen.
    pub block_number: u64,
    /// The block's hash.
    pub block_hash: B256,
    /// The transaction, for rules that fire on one (events, windows, revert rates).
    pub tx_hash: Option<B256>,
    /// The log, for rules that fire on one.
    pub log_index: Option<u64>,
}

/// A pending notification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxItem {
    /// Outbox row id.
    pub id: i64,
    /// How many deliveries were tried.
    pub attempts: u32,
    /// The finding to announce.
    pub finding: StoredFinding,
}

/// Where one outbox row stands: for status output and tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotificationState {
    /// How many deliveries failed so far.
    pub attempts: u32,
    /// Unix seconds before which it is not retried.
    pub next_try_at: u64,
    /// The last delivery error (kept when the notifier gave up; cleared once delivered).
    pub last_error: Option<String>,
    /// Delivered, or given up on.
    pub done: bool,
}

/// Open a connection to the guardian database at `path` (creating it and its folder if needed)
/// the way every component does: WAL, full fsync, a 10 s busy wait. The daemon's follower, its
/// notifier and the proposal tables each hold one, so they must agree on these settings.
pub fn open_connection(path: &Path) -> Result<Connection> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .wrap_err_with(|| format!("creating the database folder {}", parent.display()))?;
    }
    let mut conn = Connection::open(path)
        .wrap_err_with(|| format!("opening the guardian database {}", path.display()))?;
    // Every transaction here writes. Taking the write lock at BEGIN lets a transaction wait
    // for another writer; a deferred one that reads first would instead fail at its first
    // write ("database is locked", no busy wait) when another connection committed meanwhile.
    conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
    configure(&conn).wrap_err_with(|| format!("configuring the database {}", path.display()))?;
    Ok(conn)
}

/// How long a connection waits for another one holding the database.
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(BUSY_WAIT)?;
    // Switching a fresh file to WAL takes an exclusive lock, and SQLite answers "database is
    // locked" at once, without its busy handler, while another connection is doing the same
    // (several components, or a second daemon, opening a new database together). Wait as
    // the busy handler would.
    retry_while_busy(|| conn.pragma_update(None, "journal_mode", "WAL"))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

fn retry_while_busy<T>(mut op: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = std::time::Instant::now() + BUSY_WAIT;
    loop {
        match op() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Record `value` under `key` in `meta` unless a value is there already, and return the value
/// that is there now. One statement, so two connections claiming at once agree on the first.
fn claim_meta(conn: &Connection, key: &str, value: &str) -> Result<String> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
        [key, value],
    )?;
    Ok(conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))?)
}

/// The guardian database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Open (creating if needed) the database at `path` in WAL mode.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::init(open_connection(path)?)
            .wrap_err_with(|| format!("preparing the guardian database {}", path.display()))
    }

    /// An in-memory database (tests and benchmarks).
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    /// The schema on a connection [`open_connection`] configured (or a private in-memory one,
    /// which needs neither WAL nor a busy wait).
    fn init(conn: Connection) -> Result<Self> {
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        let version = claim_meta(&conn, "schema_version", &SCHEMA_VERSION.to_string())?;
        if version != SCHEMA_VERSION.to_string() {
            bail!(
                "database schema version {version} is not the one this guardian understands ({SCHEMA_VERSION})"
            );
        }
        Ok(Self { conn })
    }

    /// The chain id this database belongs to, recording `chain_id` on first use. Refuses a
    /// database that was written for another chain.
    pub fn bind_chain(&self, chain_id: u64) -> Result<()> {
        let stored = claim_meta(&self.conn, "chain_id", &chain_id.to_string())?;
        if stored != chain_id.to_string() {
            bail!("this database holds the state of chain {stored}, not chain {chain_id}");
        }
        Ok(())
    }

    /// The last block fully processed.
    pub fn cursor(&self) -> Result<Option<BlockRef>> {
        self.conn
            .query_row(
                "SELECT c.number, c.hash, COALESCE(b.parent_hash, '') FROM cursor c
                 LEFT JOIN recent_blocks b ON b.number = c.number WHERE c.id = 1",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)),
            )
            .optional()?
            .map(|(number, hash, parent)| {
                Ok(BlockRef {
                    number: to_u64(number)?,
                    hash: parse_b256(&hash)?,
                    parent_hash: if parent.is_empty() { B256::ZERO } else { parse_b256(&parent)? },
                })
            })
            .transpose()
    }

    /// The hash recorded for block `number`, if it is among the recent blocks.
    pub fn block_hash(&self, number: u64) -> Result<Option<B256>> {
        self.conn
            .query_row("SELECT hash FROM recent_blocks WHERE number = ?1", [to_i64(number)?], |r| {
                r.get::<_, String>(0)
            })
            .optional()?
            .map(|h| parse_b256(&h))
            .transpose()
    }

    /// Record `findings` seen in `block`, the block's hash, and move the cursor to it: all in one
    /// transaction. Blocks processed as a range (backfill) pass every block of the range with its
    /// findings; the cursor ends at the last.
    pub fn commit_blocks(&mut self, blocks: &[(BlockRef, Vec<Finding>)]) -> Result<Vec<Recorded>> {
        let Some((last, _)) = blocks.last() else { return Ok(Vec::new()) };
        let last = *last;
        let tx = self.conn.transaction()?;
        let mut recorded = Vec::new();
        for (block, findings) in blocks {
            tx.execute(
                "INSERT OR REPLACE INTO recent_blocks (number, hash, parent_hash) VALUES (?1, ?2, ?3)",
                params![to_i64(block.number)?, block.hash.to_string(), block.parent_hash.to_string()],
            )?;
            for finding in findings {
                recorded.push(record_finding(&tx, finding)?);
            }
        }
        tx.execute(
            "INSERT INTO cursor (id, number, hash) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET number = excluded.number, hash = excluded.hash",
            params![to_i64(last.number)?, last.hash.to_string()],
        )?;
        let keep_from = last.number.saturating_sub(RECENT_BLOCKS);
        tx.execute("DELETE FROM recent_blocks WHERE number < ?1", [to_i64(keep_from)?])?;
        tx.commit()?;
        Ok(recorded)
    }

    /// Rewind to `ancestor` after a reorg: forget block hashes above it, retract occurrences from
    /// orphaned blocks, retract findings left with no occurrence, and move the cursor back.
    /// Returns the ids of the findings retracted.
    pub fn rewind(&mut self, ancestor: BlockRef) -> Result<Vec<i64>> {
        let tx = self.conn.transaction()?;
        let above = to_i64(ancestor.number)?;
        tx.execute("UPDATE occurrences SET retracted = 1 WHERE block_number > ?1", [above])?;
        let retracted: Vec<i64> = {
            let mut stmt = tx.prepare(
                "SELECT id FROM findings f WHERE status = 'open' AND NOT EXISTS (
                     SELECT 1 FROM occurrences o WHERE o.finding_id = f.id AND o.retracted = 0)",
            )?;
            stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        for id in &retracted {
            tx.execute(
                "UPDATE findings SET status = 'retracted',
                 updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
                [id],
            )?;
        }
        tx.execute("DELETE FROM recent_blocks WHERE number > ?1", [above])?;
        tx.execute(
            "INSERT OR REPLACE INTO recent_blocks (number, hash, parent_hash) VALUES (?1, ?2, ?3)",
            params![above, ancestor.hash.to_string(), ancestor.parent_hash.to_string()],
        )?;
        tx.execute(
            "INSERT INTO cursor (id, number, hash) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET number = excluded.number, hash = excluded.hash",
            params![above, ancestor.hash.to_string()],
        )?;
        tx.commit()?;
        Ok(retracted)
    }

    /// Close an open finding (the anomaly was handled).
    pub fn resolve_finding(&self, id: i64) -> Result<()> {
        let changed = self.conn.execute(
            "UPDATE findings SET status = 'resolved',
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1 AND status = 'open'",
            [id],
        )?;
        if changed == 0 {
            bail!("finding {id} is not open");
        }
        Ok(())
    }

    /// Findings, newest first; `status` filters when given.
    pub fn findings(&self, status: Option<FindingStatus>) -> Result<Vec<StoredFinding>> {
        let mut stmt = self.conn.prepare(&format!(
            "{FINDING_SELECT} WHERE (?1 IS NULL OR f.status = ?1) ORDER BY f.id DESC"
        ))?;
        let rows = stmt.query_map([status.map(FindingStatus::as_str)], finding_row)?;
        rows.map(|r| r?).collect()
    }

    /// One finding by id.
    pub fn finding(&self, id: i64) -> Result<Option<StoredFinding>> {
        self.conn
            .query_row(&format!("{FINDING_SELECT} WHERE f.id = ?1"), [id], finding_row)
            .optional()?
            .transpose()
    }

    /// Total non-retracted occurrences across all findings (for tests and status output).
    pub fn occurrence_count(&self) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM occurrences WHERE retracted = 0",
            [],
            |r| r.get(0),
        )?;
        to_u64(n)
    }

    /// Every non-retracted occurrence, oldest block first: which anomaly (transaction and log,
    /// when it has them) fed which finding. For status output and for checking exactly-once.
    pub fn occurrences(&self) -> Result<Vec<Occurrence>> {
        let mut stmt = self.conn.prepare(
            "SELECT finding_id, rule, block_number, block_hash, tx_hash, log_index FROM occurrences
             WHERE retracted = 0 ORDER BY block_number, id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?;
        rows.map(|row| {
            let (finding_id, rule, block_number, block_hash, tx_hash, log_index) = row?;
            Ok(Occurrence {
                finding_id,
                rule,
                block_number: to_u64(block_number)?,
                block_hash: parse_b256(&block_hash)?,
                tx_hash: if tx_hash.is_empty() { None } else { Some(parse_b256(&tx_hash)?) },
                log_index: u64::try_from(log_index).ok(),
            })
        })
        .collect()
    }

    /// Notifications due at `now` (unix seconds), oldest first.
    pub fn due_notifications(&self, now: u64, limit: usize) -> Result<Vec<OutboxItem>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, finding_id, attempts FROM outbox
             WHERE done = 0 AND next_try_at <= ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows: Vec<(i64, i64, i64)> = stmt
            .query_map(params![to_i64(now)?, to_i64(limit as u64)?], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(id, finding_id, attempts)| {
                let finding = self
                    .finding(finding_id)?
                    .ok_or_else(|| eyre!("outbox item {id} names missing finding {finding_id}"))?;
                Ok(OutboxItem {
                    id,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    finding,
                })
            })
            .collect()
    }

    /// Where outbox item `id` stands, if it exists. Read-only: the notifier alone updates it.
    pub fn notification(&self, id: i64) -> Result<Option<NotificationState>> {
        self.conn
            .query_row(
                "SELECT attempts, next_try_at, last_error, done FROM outbox WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, bool>(3)?,
                    ))
                },
            )
            .optional()?
            .map(|(attempts, next_try_at, last_error, done)| {
                Ok(NotificationState {
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    next_try_at: to_u64(next_try_at)?,
                    last_error,
                    done,
                })
            })
            .transpose()
    }

    /// The last delivery error of outbox item `id`: `None` when it never failed, was delivered
    /// since, or does not exist.
    pub fn notification_error(&self, id: i64) -> Result<Option<String>> {
        Ok(self.notification(id)?.and_then(|n| n.last_error))
    }

    /// Mark a notification delivered.
    pub fn notification_sent(&self, id: i64) -> Result<()> {
        self.conn.execute("UPDATE outbox SET done = 1, last_error = NULL WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Record a failed delivery and when to try again; after `give_up_after` attempts the item is
    /// closed with its last error kept.
    pub fn notification_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: u64,
        give_up_after: u32,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_try_at = ?3,
             done = CASE WHEN attempts + 1 >= ?4 THEN 1 ELSE 0 END WHERE id = ?1",
            params![id, error, to_i64(retry_at)?, i64::from(give_up_after)],
        )?;
        Ok(())
    }
}

const FINDING_SELECT: &str =
    "SELECT f.id, f.rule, f.contract, f.address, f.severity, f.action_json,
    f.summary, f.evidence, f.status, f.created_at,
    (SELECT COUNT(*) FROM occurrences o WHERE o.finding_id = f.id AND o.retracted = 0)
    FROM findings f";

fn finding_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<StoredFinding>> {
    let id: i64 = r.get(0)?;
    let rule: String = r.get(1)?;
    let contract: String = r.get(2)?;
    let address: String = r.get(3)?;
    let severity: String = r.get(4)?;
    let action: String = r.get(5)?;
    let summary: String = r.get(6)?;
    let evidence: String = r.get(7)?;
    let status: String = r.get(8)?;
    let created_at: String = r.get(9)?;
    let occurrences: i64 = r.get(10)?;
    Ok((|| {
        Ok(StoredFinding {
            id,
            finding: Finding {
                rule,
                contract,
                address: address.parse().wrap_err("stored address")?,
                severity: severity.parse::<Severity>().map_err(|e| eyre!(e))?,
                action: serde_json::from_str::<Action>(&action).wrap_err("stored action")?,
                summary,
                evidence: serde_json::from_str::<Evidence>(&evidence)
                    .wrap_err("stored evidence")?,
            },
            status: FindingStatus::parse(&status)?,
            occurrences: to_u64(occurrences)?,
            created_at,
        })
    })())
}

fn record_finding(tx: &Transaction<'_>, finding: &Finding) -> Result<Recorded> {
    let address = finding.address.to_string();
    let evidence = serde_json::to_string(&finding.evidence)?;
    let ev = &finding.evidence;
    let tx_hash = ev.tx_hash.map(|h| h.to_string()).unwrap_or_default();
    let log_index = match ev.log_index {
        Some(i) => to_i64(i)?,
        None => -1,
    };

    let existing_occurrence: Option<i64> = tx
        .query_row(
            "SELECT finding_id FROM occurrences
             WHERE rule = ?1 AND address = ?2 AND block_hash = ?3 AND tx_hash = ?4 AND log_index = ?5",
            params![finding.rule, address, ev.block_hash.to_string(), tx_hash, log_index],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = existing_occurrence {
        return Ok(Recorded::Duplicate(id));
    }

    let open: Option<i64> = tx
        .query_row(
            "SELECT id FROM findings WHERE rule = ?1 AND address = ?2 AND status = 'open'",
            params![finding.rule, address],
            |r| r.get(0),
        )
        .optional()?;
    let outcome = match open {
        Some(id) => Recorded::Occurrence(id),
        None => {
            tx.execute(
                "INSERT INTO findings (rule, contract, address, severity, action, action_json,
                     summary, block_number, block_hash, evidence, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'open')",
                params![
                    finding.rule,
                    finding.contract,
                    address,
                    finding.severity.as_str(),
                    finding.action.as_str(),
                    serde_json::to_string(&finding.action)?,
                    finding.summary,
                    to_i64(ev.block_number)?,
                    ev.block_hash.to_string(),
                    evidence,
                ],
            )?;
            let id = tx.last_insert_rowid();
            if finding.action.notifies() {
                tx.execute("INSERT INTO outbox (finding_id, kind) VALUES (?1, 'finding')", [id])?;
            }
            Recorded::New(id)
        }
    };
    tx.execute(
        "INSERT INTO occurrences (finding_id, rule, address, block_number, block_hash, tx_hash,
             log_index, evidence)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            outcome.finding_id(),
            finding.rule,
            address,
            to_i64(ev.block_number)?,
            ev.block_hash.to_string(),
            tx_hash,
            log_index,
            evidence,
        ],
    )?;
    Ok(outcome)
}

fn parse_b256(s: &str) -> Result<B256> {
    s.parse().wrap_err_with(|| format!("stored hash {s:?} is not 32 bytes of hex"))
}

fn to_i64(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| eyre!("{n} does not fit SQLite's INTEGER"))
}

fn to_u64(n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| eyre!("negative value {n} in the database"))
}

/// Parse an address stored as text.
pub fn parse_address(s: &str) -> Result<Address> {
    s.parse().wrap_err_with(|| format!("stored address {s:?} is not an address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::address;

    fn block(n: u64, fork: u8) -> BlockRef {
        BlockRef {
            number: n,
            hash: B256::with_last_byte(n as u8 ^ fork.wrapping_mul(0x80)),
            parent_hash: B256::with_last_byte((n as u8).wrapping_sub(1) ^ fork.wrapping_mul(0x80)),
        }
    }

    fn finding(rule: &str, at: BlockRef, log_index: u64) -> Finding {
        Finding {
            rule: rule.into(),
            contract: "vault".into(),
            address: address!("0x0165878A594ca255338adfa4d48449f69242Eb8F"),
            severity: Severity::Critical,
            action: Action::ProposePause { then_rollback: true },
            summary: "drain".into(),
            evidence: Evidence {
                block_number: at.number,
                block_hash: at.hash,
                tx_hash: Some(B256::repeat_byte(0xaa)),
                log_index: Some(log_index),
                values: [("amount".to_owned(), "1".to_owned())].into(),
                threshold: "> 0".into(),
            },
        }
    }

    #[test]
    fn cursor_moves_with_the_blocks_findings() {
        let mut store = Store::in_memory().expect("store");
        assert_eq!(store.cursor().expect("cursor"), None);
        let b1 = block(1, 0);
        let rec = store.commit_blocks(&[(b1, vec![finding("r", b1, 0)])]).expect("commit");
        assert!(matches!(rec[..], [Recorded::New(_)]));
        assert_eq!(store.cursor().expect("cursor"), Some(b1));
        assert_eq!(store.block_hash(1).expect("hash"), Some(b1.hash));
        let stored = store.findings(None).expect("findings");
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].finding, finding("r", b1, 0));
        assert_eq!(stored[0].status, FindingStatus::Open);
    }

    #[test]
    fn one_open_finding_per_rule_and_contract_each_occurrence_once() {
        let mut store = Store::in_memory().expect("store");
        let (b1, b2) = (block(1, 0), block(2, 0));
        store.commit_blocks(&[(b1, vec![finding("r", b1, 0)])]).expect("commit");
        let rec = store
            .commit_blocks(&[(b2, vec![finding("r", b2, 3), finding("other", b2, 3)])])
            .expect("commit");
        assert!(matches!(rec[..], [Recorded::Occurrence(_), Recorded::New(_)]));
        // Replaying block 2 (restart before/after a crash) records nothing new.
        let rec = store.commit_blocks(&[(b2, vec![finding("r", b2, 3)])]).expect("replay");
        assert!(matches!(rec[..], [Recorded::Duplicate(_)]));
        assert_eq!(store.findings(Some(FindingStatus::Open)).expect("open").len(), 2);
        assert_eq!(store.occurrence_count().expect("count"), 3);
        let listed = store.occurrences().expect("occurrences");
        assert_eq!(listed.len(), 3);
        assert_eq!(
            listed
                .iter()
                .map(|o| (o.rule.as_str(), o.block_number, o.log_index))
                .collect::<Vec<_>>(),
            [("r", 1, Some(0)), ("r", 2, Some(3)), ("other", 2, Some(3))]
        );
        assert!(listed.iter().all(|o| o.tx_hash == Some(B256::repeat_byte(0xaa))));

        // Once resolved, the same rule may open a new finding.
        let first = store.findings(None).expect("all").into_iter().find(|f| f.finding.rule == "r");
        store.resolve_finding(first.expect("r").id).expect("resolve");
        let b3 = block(3, 0);
        let rec = store.commit_blocks(&[(b3, vec![finding("r", b3, 0)])]).expect("commit");
        assert!(matches!(rec[..], [Recorded::New(_)]));
    }

    #[test]
    fn rewind_retracts_findings_from_orphaned_blocks_only() {
        let mut store = Store::in_memory().expect("store");
        let (b1, b2, b3) = (block(1, 0), block(2, 0), block(3, 0));
        store.commit_blocks(&[(b1, vec![finding("early", b1, 0)])]).expect("commit");
        store
            .commit_blocks(&[
                (b2, vec![finding("late", b2, 0)]),
                (b3, vec![finding("early", b3, 1)]),
            ])
            .expect("commit");
        let retracted = store.rewind(b1).expect("rewind");
        assert_eq!(retracted.len(), 1, "only 'late' had all its occurrences orphaned");
        let late =
            store.findings(None).expect("all").into_iter().find(|f| f.finding.rule == "late");
        assert_eq!(late.expect("late").status, FindingStatus::Retracted);
        let early =
            store.findings(None).expect("all").into_iter().find(|f| f.finding.rule == "early");
        let early = early.expect("early");
        assert_eq!((early.status, early.occurrences), (FindingStatus::Open, 1));
        assert_eq!(store.cursor().expect("cursor").map(|c| c.number), Some(1));
        assert_eq!(store.block_hash(2).expect("hash"), None);
        // The new branch's block 2 can be committed and a recurrence recorded afresh.
        let b2b = block(2, 1);
        let rec = store.commit_blocks(&[(b2b, vec![finding("late", b2b, 0)])]).expect("commit");
        assert!(matches!(rec[..], [Recorded::New(_)]));
    }

    #[test]
    fn outbox_holds_notifying_findings_until_sent() {
        let mut store = Store::in_memory().expect("store");
        let b1 = block(1, 0);
        let mut quiet = finding("quiet", b1, 1);
        quiet.action = Action::Log;
        store.commit_blocks(&[(b1, vec![finding("loud", b1, 0), quiet])]).expect("commit");
        let due = store.due_notifications(0, 10).expect("due");
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].finding.finding.rule, "loud");
        store.notification_failed(due[0].id, "503", 100, 5).expect("failed");
        assert_eq!(
            store.notification(due[0].id).expect("state"),
            Some(NotificationState {
                attempts: 1,
                next_try_at: 100,
                last_error: Some("503".into()),
                done: false
            })
        );
        assert_eq!(store.notification_error(due[0].id).expect("error").as_deref(), Some("503"));
        assert_eq!(store.notification(due[0].id + 100).expect("state"), None);
        assert!(store.due_notifications(99, 10).expect("due").is_empty());
        assert_eq!(store.due_notifications(100, 10).expect("due")[0].attempts, 1);
        store.notification_sent(due[0].id).expect("sent");
        assert!(store.due_notifications(1000, 10).expect("due").is_empty());
        assert_eq!(store.notification_error(due[0].id).expect("error"), None);
    }

    /// The daemon's components, the CLI and a second daemon may all open a fresh database at
    /// the same moment: none of them may fail because another wrote the metadata first.
    #[test]
    fn a_fresh_database_opened_by_many_at_once_opens_for_all() {
        for round in 0..20 {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("guardian.sqlite");
            let start = std::sync::Barrier::new(8);
            std::thread::scope(|scope| {
                let openers: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            start.wait();
                            Store::open(&path)?.bind_chain(138)
                        })
                    })
                    .collect();
                for opener in openers {
                    if let Err(e) = opener.join().expect("opener thread") {
                        panic!("round {round}: {e:#}");
                    }
                }
            });
            let err = Store::open(&path).expect("reopen").bind_chain(1).expect_err("other chain");
            assert!(err.to_string().contains("chain 138"), "{err}");
        }
    }

    #[test]
    fn database_is_bound_to_one_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("g.sqlite");
        Store::open(&path).expect("open").bind_chain(138).expect("bind");
        let reopened = Store::open(&path).expect("reopen");
        reopened.bind_chain(138).expect("same chain");
        let err = reopened.bind_chain(1).expect_err("other chain");
        assert!(err.to_string().contains("chain 138"), "{err}");
    }
}
