//! Where backups, rollbacks, restores and incident windows are recorded.
//!
//! [`BackupLedger`] is the boundary; [`SqliteLedger`] keeps it in the guardian database (WAL
//! mode) in tables of its own, all prefixed `rollback_`, so it can share the file with
//! `guardian-store`. The sidecar `.sha256` files make a backup folder verifiable on its own; the
//! ledger adds a second, out-of-folder copy of each checksum, so a backup edited together with
//! its sidecar is still caught.

use std::{path::Path, sync::Mutex};

use alloy::primitives::B256;
use eyre::{Result, WrapErr, eyre};
use guardian_core::backup::{BackupName, IncidentWindow};
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// One backup file as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupRecord {
    /// Which config, when.
    pub name: BackupName,
    /// sha256 of the backup's bytes.
    pub sha256: B256,
    /// The config file it copies.
    pub source: String,
    /// Why it was taken (`manual`, `before rollback of vault`, ...).
    pub reason: String,
}

/// What a rollback or restore did, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeRecord {
    /// `rollback` or `restore`.
    pub kind: &'static str,
    /// One line for humans.
    pub summary: String,
    /// The backup stamp taken just before the change (restore it to undo the change).
    pub undo_stamp: String,
    /// Details as JSON (plan or restored files).
    pub detail: serde_json::Value,
}

/// The records a rollback needs, whatever keeps them.
pub trait BackupLedger {
    /// Remember a backup and its checksum.
    fn record_backup(&self, backup: &BackupRecord) -> Result<()>;
    /// The checksum recorded for a backup file name, if any.
    fn backup_sha256(&self, file_name: &str) -> Result<Option<B256>>;
    /// Remember a rollback or restore.
    fn record_change(&self, change: &ChangeRecord) -> Result<()>;
    /// Open an incident: backups taken from now until it is closed are protected from prune.
    fn open_incident(&self, reason: &str, at: Timestamp) -> Result<i64>;
    /// Close an incident.
    fn close_incident(&self, id: i64, at: Timestamp) -> Result<()>;
    /// The incidents not closed yet.
    fn open_incidents(&self) -> Result<Vec<IncidentWindow>>;
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS rollback_backups (
    file_name TEXT PRIMARY KEY,
    config    TEXT NOT NULL,
    stamp     TEXT NOT NULL,
    sha256    TEXT NOT NULL,
    source    TEXT NOT NULL,
    reason    TEXT NOT NULL,
    taken_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS rollback_changes (
    id         INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('rollback', 'restore')),
    summary    TEXT NOT NULL,
    undo_stamp TEXT NOT NULL,
    detail     TEXT NOT NULL,
    at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS rollback_incidents (
    id        INTEGER PRIMARY KEY,
    reason    TEXT NOT NULL,
    opened_at INTEGER NOT NULL,
    closed_at INTEGER
);
"#;

/// [`BackupLedger`] in the guardian SQLite database.
#[derive(Debug)]
pub struct SqliteLedger {
    conn: Mutex<Connection>,
}

impl SqliteLedger {
    /// Open (or create) the database at `path` in WAL mode and create the ledger's tables.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).wrap_err_with(|| format!("creating {}", dir.display()))?;
        }
        let conn = Connection::open(path)
            .wrap_err_with(|| format!("opening ledger database {}", path.display()))?;
        // Another guardian process may be writing: wait for it rather than fail.
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .wrap_err_with(|| format!("enabling WAL on {}", path.display()))?;
        conn.execute_batch(SCHEMA)
            .wrap_err_with(|| format!("creating rollback tables in {}", path.display()))?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.conn.lock().map_err(|_| eyre!("ledger connection poisoned"))?;
        f(&conn).map_err(Into::into)
    }
}

impl BackupLedger for SqliteLedger {
    fn record_backup(&self, backup: &BackupRecord) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "INSERT OR REPLACE INTO rollback_backups (file_name, config, stamp, sha256, source, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    backup.name.file_name(),
                    backup.name.config,
                    backup.name.stamp.to_string(),
                    backup.sha256.to_string(),
                    backup.source,
                    backup.reason,
                ],
            )
        })
        .wrap_err("recording a backup in the ledger")?;
        Ok(())
    }

    fn backup_sha256(&self, file_name: &str) -> Result<Option<B256>> {
        let text: Option<String> = self.with(|conn| {
            conn.query_row(
                "SELECT sha256 FROM rollback_backups WHERE file_name = ?1",
                [file_name],
                |row| row.get(0),
            )
            .optional()
        })?;
        text.map(|t| {
            t.parse().wrap_err_with(|| format!("ledger holds a bad sha256 for {file_name}"))
        })
        .transpose()
    }

    fn record_change(&self, change: &ChangeRecord) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO rollback_changes (kind, summary, undo_stamp, detail) VALUES (?1, ?2, ?3, ?4)",
                params![change.kind, change.summary, change.undo_stamp, change.detail.to_string()],
            )
        })
        .wrap_err("recording a config change in the ledger")?;
        Ok(())
    }

    fn open_incident(&self, reason: &str, at: Timestamp) -> Result<i64> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO rollback_incidents (reason, opened_at) VALUES (?1, ?2)",
                params![reason, at.as_second()],
            )?;
            Ok(conn.last_insert_rowid())
        })
    }

    fn close_incident(&self, id: i64, at: Timestamp) -> Result<()> {
        let changed = self.with(|conn| {
            conn.execute(
                "UPDATE rollback_incidents SET closed_at = ?2 WHERE id = ?1 AND closed_at IS NULL",
                params![id, at.as_second()],
            )
        })?;
        eyre::ensure!(changed == 1, "no open incident with id {id}");
        Ok(())
    }

    fn open_incidents(&self) -> Result<Vec<IncidentWindow>> {
        let seconds: Vec<i64> = self.with(|conn| {
            let mut stmt =
                conn.prepare("SELECT opened_at FROM rollback_incidents WHERE closed_at IS NULL")?;
            stmt.query_map([], |row| row.get(0))?.collect()
        })?;
        seconds
            .into_iter()
            .map(|s| {
                Ok(IncidentWindow {
                    opened: Timestamp::from_second(s)
                        .wrap_err_with(|| format!("ledger holds a bad incident time {s}"))?,
                    closed: None,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_backups_and_incidents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = SqliteLedger::open(&dir.path().join("db/guardian.sqlite")).expect("open");
        let name =
            BackupName { config: "c".into(), stamp: "20260126T101500Z".parse().expect("stamp") };
        assert_eq!(ledger.backup_sha256(&name.file_name()).expect("query"), None);
        ledger
            .record_backup(&BackupRecord {
                name: name.clone(),
                sha256: B256::repeat_byte(7),
                source: "config/c.json".into(),
                reason: "manual".into(),
            })
            .expect("record");
        assert_eq!(
            ledger.backup_sha256(&name.file_name()).expect("query"),
            Some(B256::repeat_byte(7))
        );

        let opened: Timestamp = "2026-01-26T10:00:00Z".parse().expect("ts");
        let first = ledger.open_incident("vault drained", opened).expect("open");
        let second = ledger.open_incident("factory", opened).expect("open");
        assert_eq!(ledger.open_incidents().expect("list").len(), 2);
        ledger.close_incident(first, opened).expect("close");
        assert!(ledger.close_incident(first, opened).is_err(), "closing twice is refused");
        let open = ledger.open_incidents().expect("list");
        assert_eq!(open, [IncidentWindow { opened, closed: None }]);
        ledger.close_incident(second, opened).expect("close");
        assert!(ledger.open_incidents().expect("list").is_empty());

        ledger
            .record_change(&ChangeRecord {
                kind: "restore",
                summary: "restored".into(),
                undo_stamp: "20260126T101501Z".into(),
                detail: serde_json::json!({"files": 1}),
            })
            .expect("change");
    }
}
