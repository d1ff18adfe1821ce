//! Retention: what the database stops keeping.
//!
//! Occurrences (each anomaly that fed a finding) are the one record that grows with the chain's
//! activity rather than with incidents: a window rule above its threshold adds one a block.
//! [`Store::prune_occurrences`] deletes those older than the configured age (`[storage]
//! keep_occurrences`), except every occurrence of a finding that is open or whose incident is
//! not closed, and the first occurrence of every finding (the evidence that opened it; the
//! finding's peak and latest stay on its own row). Findings, incidents, their event stream
//! (the audit log), the outbox and proposals are never pruned. `recent_blocks` needs no rule:
//! it only ever holds the last [`crate::RECENT_BLOCKS`] blocks, which reorg detection needs.

use eyre::Result;
use guardian_core::incident::Millis;
use rusqlite::{Connection, params};

use crate::{Store, now_ms, schema, to_i64};

/// Give `occurrences` its `seen_at` column (unix ms when recorded) on a database made before it
/// existed; its rows count as seen now, so they are kept a whole retention period.
pub(crate) fn ensure_seen_at(conn: &Connection) -> Result<()> {
    if schema::has_column(conn, "occurrences", "seen_at")? {
        return Ok(());
    }
    // Under the write lock, so two processes opening the database at once do not both add it.
    conn.execute_batch("BEGIN IMMEDIATE;")?;
    let added = (|| -> Result<()> {
        if !schema::has_column(conn, "occurrences", "seen_at")? {
            conn.execute_batch(
                "ALTER TABLE occurrences ADD COLUMN seen_at INTEGER NOT NULL DEFAULT 0;",
            )?;
            conn.execute(
                "UPDATE occurrences SET seen_at = ?1 WHERE seen_at = 0",
                [to_i64(now_ms())?],
            )?;
        }
        conn.execute_batch(
            "CREATE INDEX IF NOT EXISTS occurrences_seen ON occurrences (seen_at);",
        )?;
        Ok(())
    })();
    match added {
        Ok(()) => Ok(conn.execute_batch("COMMIT;")?),
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK;");
            Err(error)
        }
    }
}

/// Rows deleted per transaction, so the follower never waits long for the write lock.
const BATCH: i64 = 2_000;

impl Store {
    /// Delete occurrences recorded before `before` (unix ms) that no open finding or open
    /// incident needs, keeping each finding's first. Returns how many went.
    pub fn prune_occurrences(&self, before: Millis) -> Result<u64> {
        let mut total = 0;
        loop {
            let deleted = self.conn.execute(
                "DELETE FROM occurrences WHERE id IN (
                   SELECT o.id FROM occurrences o JOIN findings f ON f.id = o.finding_id
                   LEFT JOIN incidents i ON i.id = f.incident_id
                   WHERE o.seen_at < ?1 AND f.status != 'open'
                   AND (i.id IS NULL OR i.state IN ('resolved', 'withdrawn', 'cancelled'))
                   AND o.id != (SELECT MIN(first.id) FROM occurrences first
                                WHERE first.finding_id = o.finding_id)
                   LIMIT ?2)",
                params![to_i64(before)?, BATCH],
            )?;
            total += deleted as u64;
            if (deleted as i64) < BATCH {
                return Ok(total);
            }
        }
    }
}
