//! What the metrics count, read from the records themselves: findings from `findings`,
//! incidents from `incidents`, proposals from `proposals`, delivery failures from
//! `deliveries`. Nothing is counted a second time elsewhere, so a metric can never disagree
//! with the audit log (see docs/ARCHITECTURE.md, "Metrics").

use eyre::Result;
use serde::Serialize;

use crate::{BlockRef, NotificationBacklog, Store, StoredIncident, to_u64};

/// Counts over the whole database, cheap enough for every scrape (a handful of grouped
/// counts over indexed columns).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tallies {
    /// The cursor.
    pub cursor: Option<BlockRef>,
    /// Findings ever recorded, per (rule, severity): a count that only grows.
    pub findings: Vec<(String, String, u64)>,
    /// Proposals per status.
    pub proposals: Vec<(String, u64)>,
    /// Incidents not closed, newest first (for the per-severity open and overdue gauges).
    pub open_incidents: Vec<StoredIncident>,
    /// Failed delivery attempts per channel, ever.
    pub delivery_failures: Vec<(String, u64)>,
    /// Notifications not yet delivered everywhere.
    pub pending_notifications: u64,
    /// Per configured channel: its backlog.
    pub channels: Vec<(String, NotificationBacklog)>,
}

impl Store {
    /// The counts behind the metrics; `channels` are the configured notification channels.
    pub fn tallies(&self, channels: &[String]) -> Result<Tallies> {
        let mut stmt = self.conn.prepare(
            "SELECT rule, severity, COUNT(*) FROM findings GROUP BY rule, severity ORDER BY rule, severity",
        )?;
        let findings = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
            })?
            .map(|row| {
                let (rule, severity, n) = row?;
                Ok((rule, severity, to_u64(n)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut stmt = self
            .conn
            .prepare("SELECT status, COUNT(*) FROM proposals GROUP BY status ORDER BY status")?;
        let proposals = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
            .map(|row| {
                let (status, n) = row?;
                Ok((status, to_u64(n)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let pending: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM effects WHERE kind = 'notify' AND done_at IS NULL",
            [],
            |r| r.get(0),
        )?;
        Ok(Tallies {
            cursor: self.cursor()?,
            findings,
            proposals,
            open_incidents: self.incidents(true)?,
            delivery_failures: self.delivery_failures()?,
            pending_notifications: to_u64(pending)?,
            channels: self.channel_backlog(channels)?,
        })
    }

    /// A value another component left in the database's `meta` table (e.g. `executor`, the
    /// address the daemon executes from).
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// Remove `key` from `meta`, returning what it held. The store's own keys are refused.
    pub fn take_meta(&self, key: &str) -> Result<Option<String>> {
        not_the_stores(key)?;
        use rusqlite::OptionalExtension;
        Ok(self
            .conn
            .query_row("DELETE FROM meta WHERE key = ?1 RETURNING value", [key], |r| r.get(0))
            .optional()?)
    }

    /// Record `value` under `key` in `meta`, replacing what was there. Keys that belong to
    /// the store itself (`schema_version`, `chain_id`) are refused.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        not_the_stores(key)?;
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
        Ok(())
    }
}

/// Refuse the `meta` keys that belong to the store itself (`schema_version`, `chain_id`).
fn not_the_stores(key: &str) -> Result<()> {
    eyre::ensure!(
        !matches!(key, "schema_version" | "chain_id"),
        "meta key {key:?} belongs to the store"
    );
    Ok(())
}
