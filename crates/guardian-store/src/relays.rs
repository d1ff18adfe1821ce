//! What this replica owes its peers: every proposal it stores and every signature it accepts,
//! relayed to each `[[replicas]]` peer.
//!
//! A `relays` row is written in the transaction that stored the proposal or the signature
//! (whoever stored it: the daemon's API, or `guardian approve` on this host), so nothing is
//! lost to a crash. The daemon's relay task delivers them per peer, in order, retrying with
//! doubling waits without limit, like notifications; a peer that is down never blocks
//! anything here. What a peer receives it verifies itself (the Safe's owners, its own config).

use alloy_primitives::{Address, B256};
use eyre::Result;
use guardian_core::incident::Millis;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::{Store, now_ms, to_i64, to_u64};

/// The table, created when a database is opened (idempotent).
pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS relays (
    id          INTEGER PRIMARY KEY,
    peer        TEXT NOT NULL,
    item        TEXT NOT NULL CHECK (item IN ('proposal', 'signature')),
    hash        TEXT NOT NULL,
    owner       TEXT NOT NULL DEFAULT '',
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_try_at INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    done_at     INTEGER,
    outcome     TEXT,
    UNIQUE (peer, item, hash, owner)
);
CREATE INDEX IF NOT EXISTS relays_due ON relays (peer, done_at, next_try_at);
"#;

/// This replica among its peers, as the store needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Replication {
    /// This replica's name.
    pub name: String,
    /// The peers' names: each stored proposal and signature is relayed to every one.
    pub peers: Vec<String>,
}

/// What a relay carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayItem {
    /// A proposal (the peer recomputes its hash and checks it against its config).
    Proposal,
    /// An owner's verified signature of a proposal.
    Signature {
        /// The owner.
        owner: Address,
    },
}

/// One relay owed to a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Relay {
    /// Row id.
    pub id: i64,
    /// The peer's name.
    pub peer: String,
    /// What.
    pub item: RelayItem,
    /// The proposal's safeTxHash.
    pub hash: B256,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
}

/// Relays owed per peer (`guardian status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelayBacklog {
    /// The peer.
    pub peer: String,
    /// Not delivered yet.
    pub pending: u64,
    /// The last failure, when the oldest pending one failed.
    pub last_error: Option<String>,
}

impl RelayItem {
    /// Its `item` and `owner` columns.
    fn columns(self) -> (&'static str, String) {
        match self {
            Self::Proposal => ("proposal", String::new()),
            Self::Signature { owner } => ("signature", owner.to_string()),
        }
    }
}

/// Queue `item` of `hash` for every peer, in the caller's transaction.
pub(crate) fn enqueue(
    tx: &Connection,
    replication: Option<&Replication>,
    item: RelayItem,
    hash: B256,
) -> Result<()> {
    let Some(replication) = replication else { return Ok(()) };
    let (kind, owner) = item.columns();
    for peer in &replication.peers {
        tx.execute(
            "INSERT OR IGNORE INTO relays (peer, item, hash, owner) VALUES (?1, ?2, ?3, ?4)",
            params![peer, kind, hash.to_string(), owner],
        )?;
    }
    Ok(())
}

/// A `relays` row as read: id, peer, item, hash, owner, attempts, last error.
type RelayRow = (i64, String, String, String, String, i64, Option<String>);

fn relay_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RelayRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
}

impl Store {
    /// Relay every stored proposal and accepted signature to these peers from now on.
    pub fn set_replication(&mut self, replication: Replication) {
        self.replication = (!replication.name.is_empty()).then_some(replication);
    }

    /// This replica's name and peers, when configured.
    pub fn replication(&self) -> Option<&Replication> {
        self.replication.as_ref()
    }

    /// Close the relays still owed to peers that are no longer in `peers` (removed from
    /// `[[replicas]]`): nobody will deliver them, and they would stay in the backlog forever.
    /// Returns how many were closed per removed peer, for the daemon to say so.
    pub fn close_relays_to_removed_peers(&self, peers: &[String]) -> Result<Vec<(String, u64)>> {
        let mut stmt = self.conn.prepare(
            "SELECT peer, COUNT(*) FROM relays WHERE done_at IS NULL GROUP BY peer ORDER BY peer",
        )?;
        let owed = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut closed = Vec::new();
        for (peer, count) in owed.into_iter().filter(|(p, _)| !peers.contains(p)) {
            self.conn.execute(
                "UPDATE relays SET done_at = ?2, outcome = 'peer removed from [[replicas]]'
                 WHERE peer = ?1 AND done_at IS NULL",
                params![peer, to_i64(now_ms())?],
            )?;
            closed.push((peer, u64::try_from(count).unwrap_or_default()));
        }
        Ok(closed)
    }

    /// Relays due to `peer` at `now`, oldest first; a proposal's relay comes before its
    /// signatures' (they were queued after it).
    pub fn due_relays(&self, peer: &str, now: Millis, limit: usize) -> Result<Vec<Relay>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, peer, item, hash, owner, attempts, last_error FROM relays
             WHERE peer = ?1 AND done_at IS NULL AND next_try_at <= ?2 ORDER BY id LIMIT ?3",
        )?;
        let rows = stmt
            .query_map(params![peer, to_i64(now)?, to_i64(limit as u64)?], relay_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(id, peer, item, hash, owner, attempts, last_error)| {
                let item = match item.as_str() {
                    "proposal" => RelayItem::Proposal,
                    _ => RelayItem::Signature { owner: owner.parse()? },
                };
                Ok(Relay {
                    id,
                    peer,
                    item,
                    hash: hash.parse()?,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    last_error,
                })
            })
            .collect()
    }

    /// Whether anything of proposal `hash` is still owed to `peer`.
    pub fn relay_owed(&self, peer: &str, hash: B256) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM relays WHERE peer = ?1 AND hash = ?2 AND done_at IS NULL)",
            params![peer, hash.to_string()],
            |r| r.get(0),
        )?)
    }

    /// When the next relay to `peer` that failed is due, if one is waiting.
    pub fn next_relay_at(&self, peer: &str) -> Result<Option<Millis>> {
        let at: Option<i64> = self
            .conn
            .query_row(
                "SELECT MIN(next_try_at) FROM relays WHERE peer = ?1 AND done_at IS NULL",
                [peer],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        at.map(to_u64).transpose()
    }

    /// The peer took relay `id` (or answered that it needs it no more): done.
    pub fn relay_done(&self, id: i64, outcome: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE relays SET done_at = ?2, outcome = ?3 WHERE id = ?1",
            params![id, to_i64(now_ms())?, outcome],
        )?;
        Ok(())
    }

    /// Relay `id` failed with `error`: try again at `retry_at`.
    pub fn relay_failed(&self, id: i64, error: &str, retry_at: Millis) -> Result<()> {
        self.conn.execute(
            "UPDATE relays SET attempts = attempts + 1, last_error = ?2, next_try_at = ?3
             WHERE id = ?1",
            params![id, error, to_i64(retry_at)?],
        )?;
        Ok(())
    }

    /// Queue `item` of `hash` for `peer` again (it answered that it lacks the proposal).
    pub fn relay_again(&self, peer: &str, item: RelayItem, hash: B256) -> Result<()> {
        let (kind, owner) = item.columns();
        self.conn.execute(
            "INSERT INTO relays (peer, item, hash, owner) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (peer, item, hash, owner) DO UPDATE SET done_at = NULL, outcome = NULL,
             next_try_at = 0",
            params![peer, kind, hash.to_string(), owner],
        )?;
        Ok(())
    }

    /// Every peer's undelivered relays.
    pub fn relay_backlog(&self) -> Result<Vec<RelayBacklog>> {
        let mut stmt = self.conn.prepare(
            "SELECT peer, COUNT(*), (SELECT last_error FROM relays o WHERE o.peer = r.peer
                 AND o.done_at IS NULL ORDER BY o.id LIMIT 1)
             FROM relays r WHERE done_at IS NULL GROUP BY peer ORDER BY peer",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(RelayBacklog {
                    peer: r.get(0)?,
                    pending: u64::try_from(r.get::<_, i64>(1)?).unwrap_or_default(),
                    last_error: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}
