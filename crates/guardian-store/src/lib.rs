//! guardian's SQLite store.
//!
//! One database file (WAL mode) holds what the daemon must not lose: the block cursor, the
//! recent block hashes used to detect reorgs, findings with every occurrence that triggered them,
//! the incidents they belong to with the event stream of every transition, the outbox of
//! effects (notifications, proposals, executions, rollbacks) and timers the incident machine
//! asked for, and the Safe proposals with their signatures.
//!
//! Two rules hold everywhere:
//! - a block's findings, the incident transitions they cause, the effects those ask for, the
//!   block's hash and the cursor move together in one transaction, so after a crash the daemon
//!   resumes exactly where it stopped: no block skipped, no occurrence recorded twice, no effect
//!   lost or done twice;
//! - an incident changes only through [`guardian_core::incident::Incident::step`], and each
//!   change is written with its event and its effects in one transaction ([`Store::apply`]).

use std::{
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use alloy_primitives::{Address, B256};
use eyre::{Result, WrapErr, bail, eyre};
use guardian_core::{finding::Finding, incident::ResponsePolicy};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

pub mod audit;
mod deliveries;
pub mod exclusive;
mod findings;
mod incidents;
pub mod proposals;
mod relays;
mod retention;
mod schema;
mod tallies;
#[cfg(test)]
mod tests;

pub use deliveries::{Delivery, DeliveryState};
pub use exclusive::{DaemonLock, LockError, inspect_files};
pub use findings::{FindingStatus, Occurrence, Recorded, Sighting, StoredFinding};
pub use incidents::{
    Applied, EffectKind, IncidentError, IncidentEvent, NotificationBacklog, OutboxEffect,
    StoredIncident,
};
pub use proposals::{AuditEvent, Proposal, ProposalStatus, StoredSignature, Trail};
pub use relays::{Relay, RelayBacklog, RelayItem, Replication};
pub use tallies::Tallies;

/// How many recent block hashes are kept for reorg detection.
pub const RECENT_BLOCKS: u64 = 256;

/// Unix time in milliseconds, as the incident machine counts it.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

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

/// What committing blocks did.
#[derive(Debug, Default)]
pub struct Committed {
    /// What became of each finding, in order.
    pub recorded: Vec<Recorded>,
    /// Findings a reorg left without any occurrence.
    pub retracted: Vec<i64>,
    /// The incident transitions the findings caused.
    pub transitions: Vec<Applied>,
}

/// Open a connection to the guardian database at `path` (creating it and its folder if needed)
/// the way every component does: WAL, full fsync, a 10 s busy wait.
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
    policy: ResponsePolicy,
    chain_id: u64,
    /// Who this process's audit entries name.
    actor: guardian_core::audit::Actor,
    /// The database file (none in memory): `audit.jsonl` lives beside it.
    path: Option<std::path::PathBuf>,
    /// The last audit entry this connection saw mirrored to `audit.jsonl`.
    mirrored: std::cell::Cell<u64>,
    /// This replica's name and peers (`[replication]`, `[[replicas]]`), when configured.
    replication: Option<Replication>,
}

impl Store {
    /// Open (creating if needed) the database at `path` in WAL mode, migrating an older schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let mut store = Self::init(open_connection(path)?)
            .wrap_err_with(|| format!("preparing the guardian database {}", path.display()))?;
        store.path = Some(path.to_owned());
        Ok(store)
    }

    /// Open a database that must exist already: what the operators' read-only commands use,
    /// so a mistyped path is an error rather than a new, empty database.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if !path.exists() {
            bail!(
                "no guardian database at {}: `guardian run` creates it ([storage] path)",
                path.display()
            );
        }
        Self::open(path)
    }

    /// An in-memory database (tests and benchmarks).
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    /// The schema on a connection [`open_connection`] configured (or a private in-memory one,
    /// which needs neither WAL nor a busy wait).
    fn init(conn: Connection) -> Result<Self> {
        let found = schema::version(&conn)?;
        schema::check_version(found)?;
        let mut store = Self {
            conn,
            policy: ResponsePolicy::default(),
            chain_id: 0,
            actor: audit::default_actor(),
            path: None,
            mirrored: std::cell::Cell::new(0),
            replication: None,
        };
        let mut announced = None;
        if found == 1 {
            // Foreign keys are off until the tables are rebuilt (see `migrate_v1`; the bundled
            // SQLite turns them on by default). Another process migrating at the same moment
            // waits for this transaction, then finds every step done.
            store.conn.pragma_update(None, "foreign_keys", "OFF")?;
            let tx = store.conn.transaction()?;
            announced = Some(schema::migrate_v1(&tx)?);
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
                [schema::VERSION.to_string()],
            )?;
            tx.commit()?;
        }
        store.conn.pragma_update(None, "foreign_keys", "ON")?;
        store.conn.execute_batch(schema::SCHEMA)?;
        store.conn.execute_batch(deliveries::SCHEMA)?;
        store.conn.execute_batch(relays::SCHEMA)?;
        retention::ensure_seen_at(&store.conn)?;
        schema::add_columns(&mut store.conn)?;
        let version = claim_meta(&store.conn, "schema_version", &schema::VERSION.to_string())?;
        if version != schema::VERSION.to_string() {
            bail!(
                "database schema version {version} is not the one this guardian understands ({})",
                schema::VERSION
            );
        }
        if let Some(chain) = store.stored_chain()? {
            store.chain_id = chain;
        }
        if let Some(announced) = announced {
            let adopted = store.adopt_unlinked_findings(&announced)?;
            tracing::info!(
                incidents = adopted,
                "database migrated from schema 1 to {}: open findings now belong to incidents",
                schema::VERSION
            );
        }
        Ok(store)
    }

    fn stored_chain(&self) -> Result<Option<u64>> {
        let value: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'chain_id'", [], |r| r.get(0))
            .optional()?;
        value.map(|v| v.parse().wrap_err("stored chain id")).transpose()
    }

    /// The chain id this database belongs to, recording `chain_id` on first use. Refuses a
    /// database that was written for another chain.
    pub fn bind_chain(&mut self, chain_id: u64) -> Result<()> {
        let stored = claim_meta(&self.conn, "chain_id", &chain_id.to_string())?;
        if stored != chain_id.to_string() {
            bail!("this database holds the state of chain {stored}, not chain {chain_id}");
        }
        self.chain_id = chain_id;
        Ok(())
    }

    /// Use these response deadlines for the incidents this store steps.
    pub fn set_policy(&mut self, policy: ResponsePolicy) {
        self.policy = policy;
    }

    /// The response deadlines in force.
    pub fn policy(&self) -> &ResponsePolicy {
        &self.policy
    }

    /// Run `read` in one read transaction: every query it makes sees the same state of the
    /// database, whatever a running daemon commits meanwhile (a report that compares the
    /// incident's events with the audit log must not see one of them a step further).
    pub fn snapshot<T>(&self, read: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        // Deferred, not this connection's usual IMMEDIATE: a read must not hold the write lock
        // (and block the daemon) while it lasts. WAL keeps its snapshot from the first read.
        let tx = rusqlite::Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Deferred,
        )?;
        let out = read(self)?;
        tx.commit()?;
        Ok(out)
    }

    /// The last block fully processed.
    pub fn cursor(&self) -> Result<Option<BlockRef>> {
        cursor(&self.conn)
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

    /// Record `findings` seen in `block`, the block's hash, the incident transitions they
    /// cause, and move the cursor to it: all in one transaction. Blocks processed as a range
    /// (backfill) pass every block of the range with its findings; the cursor ends at the last.
    pub fn commit_blocks(&mut self, blocks: &[(BlockRef, Vec<Finding>)]) -> Result<Committed> {
        self.commit(None, blocks, now_ms())
    }

    /// A reorg: forget everything above `ancestor`, then record the new branch's `blocks` (which
    /// may be empty), in one transaction. An anomaly the new branch mines again keeps its
    /// finding (same id, one occurrence) and no incident hears of it; a finding left without any
    /// occurrence is retracted and its incident told. Returns what was retracted.
    pub fn reorg(
        &mut self,
        ancestor: BlockRef,
        blocks: &[(BlockRef, Vec<Finding>)],
    ) -> Result<Committed> {
        self.commit(Some(ancestor), blocks, now_ms())
    }

    /// [`Store::reorg`] with no new blocks: rewind to `ancestor`.
    pub fn rewind(&mut self, ancestor: BlockRef) -> Result<Vec<i64>> {
        Ok(self.reorg(ancestor, &[])?.retracted)
    }

    /// Record findings predicted from a pending transaction (their evidence at the zero block
    /// hash, `predicted_from` set) and the incident transitions they cause, in one transaction;
    /// the cursor does not move. When the transaction is mined and the follower sees the same
    /// anomaly, the prediction is confirmed in place; a reorg never retracts a prediction.
    pub fn commit_predicted(&mut self, findings: &[Finding]) -> Result<Committed> {
        if let Some(f) = findings.iter().find(|f| f.evidence.block_hash != B256::ZERO) {
            return Err(eyre!(
                "finding of rule {} is not a prediction: it names block {}",
                f.rule,
                f.evidence.block_hash
            ));
        }
        let ctx = self.ctx();
        let chain_id = self.chain_id;
        let now = now_ms();
        let tx = self.conn.transaction()?;
        let mut recorded = Vec::new();
        let mut pairs = Vec::new();
        for finding in findings {
            let outcome = findings::record_finding(&tx, finding)?;
            recorded.push(outcome);
            pairs.push((outcome, finding));
        }
        let transitions = incidents::feed_findings(&tx, &ctx, chain_id, &pairs, &[], now)?;
        tx.commit()?;
        self.mirror_audit();
        Ok(Committed { recorded, retracted: Vec::new(), transitions })
    }

    /// [`Store::commit_blocks`] or [`Store::reorg`] at a given time (tests).
    pub fn commit(
        &mut self,
        rewind_to: Option<BlockRef>,
        blocks: &[(BlockRef, Vec<Finding>)],
        now: u64,
    ) -> Result<Committed> {
        if rewind_to.is_none() && blocks.is_empty() {
            return Ok(Committed::default());
        }
        let ctx = self.ctx();
        let chain_id = self.chain_id;
        let tx = self.conn.transaction()?;
        if let Some(ancestor) = rewind_to {
            let above = to_i64(ancestor.number)?;
            // Predictions (the zero block hash) belong to no branch: a reorg leaves them.
            tx.execute(
                "UPDATE occurrences SET retracted = 1 WHERE block_number > ?1 AND block_hash != ?2",
                params![above, B256::ZERO.to_string()],
            )?;
            tx.execute("DELETE FROM recent_blocks WHERE number > ?1", [above])?;
            put_block(&tx, &ancestor)?;
            move_cursor(&tx, &ancestor)?;
        }
        let mut recorded = Vec::new();
        let mut pairs = Vec::new();
        for (block, findings) in blocks {
            put_block(&tx, block)?;
            for finding in findings {
                let outcome = findings::record_finding(&tx, finding)?;
                recorded.push(outcome);
                pairs.push((outcome, finding));
            }
        }
        if let Some((last, _)) = blocks.last() {
            move_cursor(&tx, last)?;
            let keep_from = last.number.saturating_sub(RECENT_BLOCKS);
            tx.execute("DELETE FROM recent_blocks WHERE number < ?1", [to_i64(keep_from)?])?;
        }
        // Findings left without a live occurrence (only a reorg can do that).
        let retracted: Vec<i64> = if rewind_to.is_some() {
            let mut stmt = tx.prepare(
                "SELECT id FROM findings f WHERE status = 'open' AND NOT EXISTS (
                     SELECT 1 FROM occurrences o WHERE o.finding_id = f.id AND o.retracted = 0)",
            )?;
            let ids = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
            drop(stmt);
            for id in &ids {
                tx.execute(
                    "UPDATE findings SET status = 'retracted',
                     updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
                    [id],
                )?;
            }
            ids
        } else {
            Vec::new()
        };
        let transitions = incidents::feed_findings(&tx, &ctx, chain_id, &pairs, &retracted, now)?;
        tx.commit()?;
        self.mirror_audit();
        Ok(Committed { recorded, retracted, transitions })
    }
}

fn cursor(conn: &Connection) -> Result<Option<BlockRef>> {
    conn.query_row(
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

fn put_block(tx: &Connection, block: &BlockRef) -> Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO recent_blocks (number, hash, parent_hash) VALUES (?1, ?2, ?3)",
        params![to_i64(block.number)?, block.hash.to_string(), block.parent_hash.to_string()],
    )?;
    Ok(())
}

fn move_cursor(tx: &Connection, block: &BlockRef) -> Result<()> {
    tx.execute(
        "INSERT INTO cursor (id, number, hash) VALUES (1, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET number = excluded.number, hash = excluded.hash",
        params![to_i64(block.number)?, block.hash.to_string()],
    )?;
    Ok(())
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
