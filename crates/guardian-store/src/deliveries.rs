//! Delivery of notifications per channel.
//!
//! The incident machine writes one `notify` row to the outbox per notification, in the
//! transition's transaction; it knows nothing of channels. Each configured channel (Slack,
//! PagerDuty, a webhook, …) delivers it on its own: a `deliveries` row per (notification,
//! channel), created by the channel's worker when it first sees the notification, holds that
//! channel's attempts, next try, last error and outcome. So:
//! - one incident's notifications reach each channel in order (a failed one holds back the later
//!   ones of the same incident on that channel only);
//! - a channel that fails never holds up another;
//! - the outbox row is done once every configured channel is done with it (delivered, or
//!   skipped as below the channel's `min_severity`); its `attempts`, `last_error` and
//!   `failing_since` sum up the channels' failures.
//!
//! A channel added later only takes the notifications not yet done everywhere: the history is
//! not replayed to it.

use eyre::{Result, WrapErr};
use guardian_core::{audit::Record as AuditRecord, incident::Millis};
use rusqlite::params;
use serde::Serialize;

use crate::{NotificationBacklog, Store, incidents::OutboxEffect, now_ms, to_i64, to_u64};

/// The table, created when a database is opened (idempotent).
pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS deliveries (
    effect_id     INTEGER NOT NULL REFERENCES effects (id),
    channel       TEXT NOT NULL,
    incident_id   INTEGER NOT NULL REFERENCES incidents (id),
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_try_at   INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    failing_since INTEGER,
    done_at       INTEGER,
    outcome       TEXT,
    PRIMARY KEY (effect_id, channel)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (channel, done_at, next_try_at);
CREATE INDEX IF NOT EXISTS deliveries_incident ON deliveries (channel, incident_id, done_at);
"#;

/// One channel's delivery of one notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// The outbox row: the notification, with its idempotency key and incident.
    pub notification: OutboxEffect,
    /// The channel's name.
    pub channel: String,
    /// Failed attempts on this channel.
    pub attempts: u32,
    /// Not before this time (unix ms).
    pub next_try_at: Millis,
    /// The last failure on this channel.
    pub last_error: Option<String>,
    /// Since when it has been failing on this channel.
    pub failing_since: Option<Millis>,
    /// When this channel was done with it.
    pub done_at: Option<Millis>,
    /// `delivered`, or why it was skipped.
    pub outcome: Option<String>,
}

/// Where one channel's delivery of a notification stands (`guardian incidents show`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DeliveryState {
    /// The channel.
    pub channel: String,
    /// Failed attempts.
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// Since when it has been failing.
    pub failing_since: Option<Millis>,
    /// When it was done.
    pub done_at: Option<Millis>,
    /// `delivered`, or why it was skipped.
    pub outcome: Option<String>,
}

impl DeliveryState {
    /// `done`, `failing` or `pending`.
    pub fn status(&self) -> &'static str {
        match (self.done_at, self.attempts) {
            (Some(_), _) => "done",
            (None, 0) => "pending",
            (None, _) => "failing",
        }
    }
}

/// Closes each undone notification (all of them, or only `only`) that every channel named in
/// the JSON array `?1` is done with.
const SETTLE: &str = "UPDATE effects SET done_at = ?2,
     outcome = (SELECT CASE WHEN COUNT(*) = COUNT(CASE WHEN d.outcome = 'delivered' THEN 1 END)
                       THEN 'delivered'
                       ELSE group_concat(d.channel || ': ' || d.outcome, '; ') END
                FROM deliveries d WHERE d.effect_id = effects.id AND d.done_at IS NOT NULL
                AND d.channel IN (SELECT value FROM json_each(?1)))
     WHERE kind = 'notify' AND done_at IS NULL AND (?3 IS NULL OR id = ?3)
     AND json_array_length(?1) > 0
     AND NOT EXISTS (SELECT 1 FROM json_each(?1) c WHERE NOT EXISTS (
         SELECT 1 FROM deliveries d WHERE d.effect_id = effects.id AND d.channel = c.value
         AND d.done_at IS NOT NULL))";

fn channel_list(channels: &[String]) -> Result<String> {
    serde_json::to_string(channels).wrap_err("channel names")
}

impl Store {
    /// Deliveries due on `channel` at `now`, oldest first: for each incident only its oldest
    /// notification this channel is not done with, so they arrive in order. Creates the
    /// channel's rows for notifications it has not seen yet.
    pub fn due_deliveries(
        &self,
        channel: &str,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        let unseen: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM effects e WHERE kind = 'notify' AND done_at IS NULL
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.effect_id = e.id AND d.channel = ?1))",
            [channel],
            |r| r.get(0),
        )?;
        if unseen {
            self.conn.execute(
                "INSERT OR IGNORE INTO deliveries (effect_id, channel, incident_id)
                 SELECT id, ?1, incident_id FROM effects WHERE kind = 'notify' AND done_at IS NULL
                 ORDER BY id",
                [channel],
            )?;
        }
        let mut stmt = self.conn.prepare(
            "SELECT d.effect_id, d.attempts, d.next_try_at, d.last_error, d.failing_since
             FROM deliveries d
             WHERE d.channel = ?1 AND d.done_at IS NULL AND d.next_try_at <= ?2
             AND NOT EXISTS (SELECT 1 FROM deliveries p WHERE p.channel = d.channel
                 AND p.incident_id = d.incident_id AND p.done_at IS NULL AND p.effect_id < d.effect_id)
             ORDER BY d.effect_id LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![channel, to_i64(now)?, to_i64(limit as u64)?], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<i64>>(4)?,
            ))
        })?;
        let rows: Vec<_> = rows.collect::<rusqlite::Result<_>>()?;
        let mut due = Vec::with_capacity(rows.len());
        for (effect_id, attempts, next, last_error, since) in rows {
            let Some(notification) = self.effect(effect_id)? else { continue };
            due.push(Delivery {
                notification,
                channel: channel.to_owned(),
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                next_try_at: to_u64(next)?,
                last_error,
                failing_since: since.map(to_u64).transpose()?,
                done_at: None,
                outcome: None,
            });
        }
        Ok(due)
    }

    /// When the next delivery on `channel` that waits for a retry is due: the earliest
    /// `next_try_at` after `now` (`None`: nothing waits). Only the oldest undone one of each
    /// incident counts: the later ones wait for it. What is due already is the caller's to
    /// start (or in flight), so it does not count.
    pub fn next_retry_at(&self, channel: &str, now: Millis) -> Result<Option<Millis>> {
        let at: Option<i64> = self.conn.query_row(
            "SELECT MIN(next_try_at) FROM deliveries d WHERE channel = ?1 AND done_at IS NULL
             AND next_try_at > ?2
             AND NOT EXISTS (SELECT 1 FROM deliveries p WHERE p.channel = d.channel
                 AND p.incident_id = d.incident_id AND p.done_at IS NULL AND p.effect_id < d.effect_id)",
            params![channel, to_i64(now)?],
            |r| r.get(0),
        )?;
        at.map(to_u64).transpose()
    }

    /// `channel` is done with notification `effect_id` (`outcome`: `delivered`, or why it was
    /// skipped); the notification is done once every one of `channels` is.
    pub fn delivery_done(
        &self,
        effect_id: i64,
        channel: &str,
        outcome: &str,
        channels: &[String],
    ) -> Result<()> {
        self.deliveries_done(&[(effect_id, outcome)], channel, channels)
    }

    /// [`Store::delivery_done`] of several deliveries of `channel` at once, in one transaction
    /// (one write to disk for a burst of answers, rather than one each).
    pub fn deliveries_done(
        &self,
        done: &[(i64, &str)],
        channel: &str,
        channels: &[String],
    ) -> Result<()> {
        let now = to_i64(now_ms())?;
        let list = channel_list(channels)?;
        let tx = self.conn.unchecked_transaction()?;
        for (effect_id, outcome) in done {
            let changed = tx.execute(
                "UPDATE deliveries SET done_at = ?3, outcome = ?4
                 WHERE effect_id = ?1 AND channel = ?2 AND done_at IS NULL",
                params![effect_id, channel, now, outcome],
            )?;
            tx.execute(SETTLE, params![list, now, effect_id])?;
            if changed == 1 && *outcome == "delivered" {
                let (incident, key, attempts) = delivery_facts(&tx, *effect_id, channel)?;
                let record = AuditRecord::NotificationSent {
                    incident,
                    key,
                    channel: channel.to_owned(),
                    attempts: attempts + 1,
                };
                crate::audit::append(&tx, &self.actor, record, now_ms())?;
            }
        }
        tx.commit()?;
        self.mirror_audit();
        Ok(())
    }

    /// A failed attempt on `channel`, and when to try again there. Nothing is ever given up
    /// on. The notification's own row counts the failure too (its attempts, last error and
    /// since when it fails), so a view without channels still sees it.
    pub fn delivery_failed(
        &self,
        effect_id: i64,
        channel: &str,
        error: &str,
        retry_at: Millis,
    ) -> Result<()> {
        let now = to_i64(now_ms())?;
        let tx = self.conn.unchecked_transaction()?;
        let (incident, key, attempts) = delivery_facts(&tx, effect_id, channel)?;
        tx.execute(
            "UPDATE deliveries SET attempts = attempts + 1, last_error = ?3, next_try_at = ?4,
             failing_since = COALESCE(failing_since, ?5) WHERE effect_id = ?1 AND channel = ?2",
            params![effect_id, channel, error, to_i64(retry_at)?, now],
        )?;
        tx.execute(
            "UPDATE effects SET attempts = attempts + 1, last_error = ?2,
             failing_since = COALESCE(failing_since, ?3) WHERE id = ?1",
            params![effect_id, format!("{channel}: {error}"), now],
        )?;
        // The first failure is audited; the retries are counted on the rows, and the delivery
        // (with its attempts) is audited when it comes.
        if attempts == 0 {
            let record = AuditRecord::NotificationFailed {
                incident,
                key,
                channel: channel.to_owned(),
                error: error.to_owned(),
            };
            crate::audit::append(&tx, &self.actor, record, now_ms())?;
        }
        tx.commit()?;
        self.mirror_audit();
        Ok(())
    }

    /// Close every notification that each of `channels` is done with: after a channel was
    /// removed from the config, what only it still owed is done.
    pub fn settle_notifications(&self, channels: &[String]) -> Result<usize> {
        let now = to_i64(now_ms())?;
        Ok(self.conn.execute(SETTLE, params![channel_list(channels)?, now, None::<i64>])?)
    }

    /// Each channel's delivery of notification `effect_id`.
    pub fn deliveries(&self, effect_id: i64) -> Result<Vec<DeliveryState>> {
        let mut stmt = self.conn.prepare(
            "SELECT channel, attempts, last_error, failing_since, done_at, outcome
             FROM deliveries WHERE effect_id = ?1 ORDER BY channel",
        )?;
        let rows = stmt.query_map([effect_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })?;
        rows.map(|row| {
            let (channel, attempts, last_error, since, done, outcome) = row?;
            Ok(DeliveryState {
                channel,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                last_error,
                failing_since: since.map(to_u64).transpose()?,
                done_at: done.map(to_u64).transpose()?,
                outcome,
            })
        })
        .collect()
    }

    /// Per channel: the notifications it has not delivered yet, how many of them failed on it
    /// at least once, and since when the oldest failing one has been failing there.
    pub fn channel_backlog(
        &self,
        channels: &[String],
    ) -> Result<Vec<(String, NotificationBacklog)>> {
        let mut out = Vec::with_capacity(channels.len());
        for channel in channels {
            let (pending, failing, since): (i64, i64, Option<i64>) = self.conn.query_row(
                "SELECT
                   (SELECT COUNT(*) FROM effects e WHERE kind = 'notify' AND done_at IS NULL
                    AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.effect_id = e.id
                        AND d.channel = ?1 AND d.done_at IS NOT NULL)),
                   COUNT(*), MIN(d.failing_since)
                 FROM deliveries d JOIN effects e ON e.id = d.effect_id
                 WHERE d.channel = ?1 AND d.done_at IS NULL AND e.done_at IS NULL AND d.attempts > 0",
                [channel],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            out.push((
                channel.clone(),
                NotificationBacklog {
                    pending: to_u64(pending)?,
                    failing: to_u64(failing)?,
                    failing_since: since.map(to_u64).transpose()?,
                },
            ));
        }
        Ok(out)
    }

    /// Failed delivery attempts per channel, ever (`guardian_notification_failures_total`):
    /// read from the deliveries themselves, so the count is the record's.
    pub fn delivery_failures(&self) -> Result<Vec<(String, u64)>> {
        let mut stmt = self.conn.prepare(
            "SELECT channel, SUM(attempts) FROM deliveries GROUP BY channel ORDER BY channel",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        rows.map(|row| {
            let (channel, n) = row?;
            Ok((channel, to_u64(n)?))
        })
        .collect()
    }
}

/// A delivery's incident, its notification's key and the attempts made so far.
fn delivery_facts(
    tx: &rusqlite::Connection,
    effect_id: i64,
    channel: &str,
) -> Result<(i64, String, u32)> {
    Ok(tx.query_row(
        "SELECT e.incident_id, e.key, COALESCE(d.attempts, 0) FROM effects e
         LEFT JOIN deliveries d ON d.effect_id = e.id AND d.channel = ?2 WHERE e.id = ?1",
        params![effect_id, channel],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?)
}
