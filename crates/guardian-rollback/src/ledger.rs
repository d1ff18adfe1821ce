//! Where backups, rollbacks, restores and incident windows are recorded.
//!
//! [`BackupLedger`] is the boundary; [`SqliteLedger`] keeps it in the guardian database (WAL
//! mode) in tables of its own, all prefixed `rollback_`, so it can share the file with
//! `guardian-store`. The sidecar `.sha256` files make a backup folder verifiable on its own; the
//! ledger adds a second, out-of-folder copy of each checksum, so a backup edited together with
//! its sidecar is still caught, and a backup planted with a matching sidecar has no row at all.
//!
//! Every operation over several files ends with one transaction ([`OperationRecord`]): its
//! backup rows, its change row, the incident it opens and a row in `rollback_operations` keyed
//! by the journal's id, so recovery after a crash never records an operation twice.
//!
//! **Incidents.** A rollback opens an incident (`rollback_incidents`, opened at its undo
//! backup's stamp) in that same transaction; every backup set stamped while one is open is kept
//! by prune until it is closed (`guardian backup incidents --close ID`). Nothing else opened
//! incidents before, which is why prune's protection never applied.

use std::{fmt, path::Path, sync::Mutex};

use alloy::primitives::B256;
use eyre::{Result, WrapErr, eyre};
use guardian_core::backup::{BackupName, IncidentWindow};
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// One backup file as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Which change a [`ChangeRecord`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Config keys repointed to another contract version.
    Rollback,
    /// Configs restored from a backup.
    Restore,
}

impl ChangeKind {
    /// As stored in `rollback_changes.kind`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rollback => "rollback",
            Self::Restore => "restore",
        }
    }
}

/// What a rollback or restore did, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    /// Rollback or restore.
    pub kind: ChangeKind,
    /// One line for humans.
    pub summary: String,
    /// The backup stamp taken just before the change (restore it to undo the change).
    pub undo_stamp: String,
    /// Details as JSON (plan or restored files).
    pub detail: serde_json::Value,
}

/// An incident to open when an operation is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentRecord {
    /// Why (`rollback of vault: v2 -> v1`).
    pub reason: String,
    /// When it starts protecting backups (the undo backup's stamp, so that set is inside).
    pub opened_at: Timestamp,
}

/// Which kind of multi-file operation a journal describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OperationKind {
    /// `backup create`.
    Backup,
    /// `backup restore`.
    Restore,
    /// `rollback` (CLI or daemon).
    Rollback,
    /// `versions add`.
    VersionsAdd,
    /// `backup prune`.
    Prune,
}

impl fmt::Display for OperationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Backup => "backup",
            Self::Restore => "restore",
            Self::Rollback => "rollback",
            Self::VersionsAdd => "versions add",
            Self::Prune => "prune",
        })
    }
}

/// How an operation ended, as `rollback_operations.outcome` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OperationOutcome {
    /// Every file written, in the process that started it.
    Completed,
    /// Interrupted by a crash, finished by recovery (the remaining renames were done).
    FinishedByRecovery,
    /// Interrupted, undone by recovery: every file is as it was before.
    UndoneByRecovery,
    /// A rename failed; the process put every file back as it was.
    UndoneAfterError,
}

impl OperationOutcome {
    /// As stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::FinishedByRecovery => "finished_by_recovery",
            Self::UndoneByRecovery => "undone_by_recovery",
            Self::UndoneAfterError => "undone_after_error",
        }
    }
}

/// The records an operation adds when it is done (written with the journal, so recovery can
/// add them for a process that died).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRecords {
    /// Backups the operation took.
    pub backups: Vec<BackupRecord>,
    /// The rollback or restore it made.
    pub change: Option<ChangeRecord>,
    /// The incident it opens.
    pub incident: Option<IncidentRecord>,
}

/// One finished multi-file operation, recorded in one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperationRecord {
    /// The journal's id.
    pub id: String,
    /// What it was.
    pub kind: OperationKind,
    /// How it ended.
    pub outcome: OperationOutcome,
    /// One line for humans.
    pub summary: String,
    /// When it started.
    pub started_at: Timestamp,
    /// The files it changed (or would have, when undone).
    pub files: Vec<String>,
    /// Added to the ledger unless the operation was undone.
    pub records: PendingRecords,
}

/// The records a rollback needs, whatever keeps them.
pub trait BackupLedger {
    /// Record a finished operation and, unless it was undone, its backups, change and incident,
    /// all in one transaction. Returns false (and records nothing) when an operation with this
    /// id is recorded already.
    fn record_operation(&self, operation: &OperationRecord) -> Result<bool>;
    /// Whether an operation with this journal id is recorded.
    fn operation_recorded(&self, id: &str) -> Result<bool>;
    /// The undo stamps of every recorded rollback and restore (the backup taken just before).
    fn undo_stamps(&self) -> Result<Vec<String>>;
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
CREATE TABLE IF NOT EXISTS rollback_operations (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    summary     TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    files       TEXT NOT NULL
);
"#;

/// The ledger database named by `--db` or `[rollback] ledger` does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "ledger database {path} does not exist: `guardian run` creates it (the database of \
     [storage] path / [rollback] ledger); check --db and GUARDIAN_DB for a typo, since an empty \
     ledger would not know any backup; on a fresh host, `guardian backup create --new-ledger` \
     creates it on purpose"
)]
pub struct LedgerMissing {
    /// The path asked for.
    pub path: std::path::PathBuf,
}

/// [`BackupLedger`] in the guardian SQLite database.
#[derive(Debug)]
pub struct SqliteLedger {
    conn: Mutex<Connection>,
}

impl SqliteLedger {
    /// Open a database that must exist already ([`LedgerMissing`] otherwise), creating the
    /// ledger's tables in it if needed: what the operators' commands use, so a mistyped `--db`
    /// is an error rather than an empty ledger that knows no backup.
    pub fn open_existing(path: &Path) -> Result<Self> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => Self::open(path),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                Err(LedgerMissing { path: path.to_owned() }.into())
            }
            Err(err) => Err(err).wrap_err_with(|| format!("checking {}", path.display())),
        }
    }

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
        // The ledger's commit is the "done" of a journaled operation: make it durable.
        conn.pragma_update(None, "synchronous", "FULL")
            .wrap_err_with(|| format!("setting synchronous=FULL on {}", path.display()))?;
        conn.execute_batch(SCHEMA)
            .wrap_err_with(|| format!("creating rollback tables in {}", path.display()))?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.conn.lock().map_err(|_| eyre!("ledger connection poisoned"))?;
        f(&conn).map_err(Into::into)
    }
}

fn insert_backup(conn: &Connection, backup: &BackupRecord) -> rusqlite::Result<usize> {
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
}

fn insert_change(conn: &Connection, change: &ChangeRecord) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT INTO rollback_changes (kind, summary, undo_stamp, detail) VALUES (?1, ?2, ?3, ?4)",
        params![change.kind.as_str(), change.summary, change.undo_stamp, change.detail.to_string()],
    )
}

fn insert_incident(conn: &Connection, reason: &str, at: Timestamp) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO rollback_incidents (reason, opened_at) VALUES (?1, ?2)",
        params![reason, at.as_second()],
    )?;
    Ok(conn.last_insert_rowid())
}

/// One open incident as `guardian backup incidents` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenIncident {
    /// Its id (for `--close`).
    pub id: i64,
    /// Why it was opened.
    pub reason: String,
    /// Since when it protects backups.
    pub opened_at: Timestamp,
}

/// One row of `rollback_operations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedOperation {
    /// The journal id.
    pub id: String,
    /// `backup`, `restore`, `rollback`, `versions add` or `prune`.
    pub kind: String,
    /// `completed`, `finished_by_recovery`, `undone_by_recovery` or `undone_after_error`.
    pub outcome: String,
    /// One line for humans.
    pub summary: String,
}

impl SqliteLedger {
    /// Every recorded multi-file operation, oldest first: the audit trail of what recovery did.
    pub fn recorded_operations(&self) -> Result<Vec<RecordedOperation>> {
        self.with(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, kind, outcome, summary FROM rollback_operations ORDER BY rowid",
            )?;
            stmt.query_map([], |row| {
                Ok(RecordedOperation {
                    id: row.get(0)?,
                    kind: row.get(1)?,
                    outcome: row.get(2)?,
                    summary: row.get(3)?,
                })
            })?
            .collect()
        })
    }

    /// The kinds of the recorded rollbacks and restores, oldest first.
    pub fn recorded_change_kinds(&self) -> Result<Vec<String>> {
        self.with(|conn| {
            let mut stmt = conn.prepare("SELECT kind FROM rollback_changes ORDER BY id")?;
            stmt.query_map([], |row| row.get(0))?.collect()
        })
    }

    /// The incidents not closed yet, with their ids and reasons.
    pub fn list_open_incidents(&self) -> Result<Vec<OpenIncident>> {
        let rows: Vec<(i64, String, i64)> = self.with(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, reason, opened_at FROM rollback_incidents WHERE closed_at IS NULL ORDER BY id",
            )?;
            stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?.collect()
        })?;
        rows.into_iter()
            .map(|(id, reason, s)| {
                let opened_at = Timestamp::from_second(s)
                    .wrap_err_with(|| format!("ledger holds a bad incident time {s}"))?;
                Ok(OpenIncident { id, reason, opened_at })
            })
            .collect()
    }
}

impl BackupLedger for SqliteLedger {
    fn record_operation(&self, operation: &OperationRecord) -> Result<bool> {
        let undone = matches!(
            operation.outcome,
            OperationOutcome::UndoneByRecovery | OperationOutcome::UndoneAfterError
        );
        let files = serde_json::to_string(&operation.files)?;
        let mut conn = self.conn.lock().map_err(|_| eyre!("ledger connection poisoned"))?;
        // IMMEDIATE: this transaction reads before it writes. A deferred one would fail at once
        // with "database is locked" (no busy wait) when the daemon's store committed in between,
        // which it does all the time during an incident.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let known: Option<String> = tx
            .query_row("SELECT id FROM rollback_operations WHERE id = ?1", [&operation.id], |row| {
                row.get(0)
            })
            .optional()?;
        if known.is_some() {
            return Ok(false);
        }
        if !undone {
            let records = &operation.records;
            for backup in &records.backups {
                insert_backup(&tx, backup)?;
            }
            if let Some(change) = &records.change {
                insert_change(&tx, change)?;
            }
            if let Some(incident) = &records.incident {
                insert_incident(&tx, &incident.reason, incident.opened_at)?;
            }
        }
        tx.execute(
            "INSERT INTO rollback_operations (id, kind, outcome, summary, started_at, files)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                operation.id,
                operation.kind.to_string(),
                operation.outcome.as_str(),
                operation.summary,
                operation.started_at.to_string(),
                files,
            ],
        )?;
        tx.commit().wrap_err("recording a config operation in the ledger")?;
        Ok(true)
    }

    fn operation_recorded(&self, id: &str) -> Result<bool> {
        let found: Option<String> = self.with(|conn| {
            conn.query_row("SELECT id FROM rollback_operations WHERE id = ?1", [id], |row| {
                row.get(0)
            })
            .optional()
        })?;
        Ok(found.is_some())
    }

    fn undo_stamps(&self) -> Result<Vec<String>> {
        self.with(|conn| {
            let mut stmt = conn.prepare("SELECT DISTINCT undo_stamp FROM rollback_changes")?;
            stmt.query_map([], |row| row.get(0))?.collect()
        })
    }

    fn record_backup(&self, backup: &BackupRecord) -> Result<()> {
        self.with(|conn| insert_backup(conn, backup))
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
        self.with(|conn| insert_change(conn, change))
            .wrap_err("recording a config change in the ledger")?;
        Ok(())
    }

    fn open_incident(&self, reason: &str, at: Timestamp) -> Result<i64> {
        self.with(|conn| insert_incident(conn, reason, at))
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
                kind: ChangeKind::Restore,
                summary: "restored".into(),
                undo_stamp: "20260126T101501Z".into(),
                detail: serde_json::json!({"files": 1}),
            })
            .expect("change");
        assert_eq!(ledger.undo_stamps().expect("undo"), ["20260126T101501Z"]);
    }

    #[test]
    fn an_operation_is_recorded_once_and_an_undone_one_adds_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = SqliteLedger::open(&dir.path().join("guardian.sqlite")).expect("open");
        let name =
            BackupName { config: "c".into(), stamp: "20260126T101500Z".parse().expect("stamp") };
        let mut operation = OperationRecord {
            id: "op-1".into(),
            kind: OperationKind::Rollback,
            outcome: OperationOutcome::FinishedByRecovery,
            summary: "rollback of vault".into(),
            started_at: "2026-01-26T10:15:00Z".parse().expect("ts"),
            files: vec!["c.json".into()],
            records: PendingRecords {
                backups: vec![BackupRecord {
                    name: name.clone(),
                    sha256: B256::repeat_byte(1),
                    source: "c.json".into(),
                    reason: "before rollback of vault".into(),
                }],
                change: Some(ChangeRecord {
                    kind: ChangeKind::Rollback,
                    summary: "vault: v2 -> v1".into(),
                    undo_stamp: name.stamp.to_string(),
                    detail: serde_json::json!({}),
                }),
                incident: Some(IncidentRecord {
                    reason: "rollback of vault".into(),
                    opened_at: name.stamp.time(),
                }),
            },
        };
        assert!(ledger.record_operation(&operation).expect("record"));
        assert!(!ledger.record_operation(&operation).expect("again"), "recorded once");
        assert!(ledger.operation_recorded("op-1").expect("query"));
        assert_eq!(ledger.undo_stamps().expect("undo"), ["20260126T101500Z"]);
        assert_eq!(ledger.open_incidents().expect("incidents").len(), 1);
        assert_eq!(ledger.backup_sha256(&name.file_name()).expect("q"), Some(B256::repeat_byte(1)));

        operation.id = "op-2".into();
        operation.outcome = OperationOutcome::UndoneByRecovery;
        operation.records.backups[0].name.config = "d".into();
        assert!(ledger.record_operation(&operation).expect("record"));
        assert_eq!(ledger.undo_stamps().expect("undo").len(), 1, "an undone change adds nothing");
        assert_eq!(ledger.open_incidents().expect("incidents").len(), 1);
        assert_eq!(ledger.list_open_incidents().expect("list")[0].reason, "rollback of vault");
    }

    /// The daemon's store writes to the same database all through an incident: a record that
    /// starts while another connection holds the write lock must wait for it and succeed. (A
    /// deferred transaction read first, then found its snapshot stale once the writer had
    /// committed, and failed at once with "database is locked".)
    #[test]
    fn recording_while_another_connection_writes_waits_instead_of_failing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("guardian.sqlite");
        let ledger = SqliteLedger::open(&path).expect("open");
        let (locked, ready) = std::sync::mpsc::channel();
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                let conn = Connection::open(&path).expect("writer");
                conn.execute_batch("CREATE TABLE noise (n INTEGER)").expect("table");
                conn.execute_batch("BEGIN IMMEDIATE; INSERT INTO noise (n) VALUES (1);")
                    .expect("write lock");
                locked.send(()).expect("signal");
                std::thread::sleep(std::time::Duration::from_millis(300));
                conn.execute_batch("COMMIT").expect("commit");
            })
        };
        ready.recv().expect("the writer holds the lock");
        let operation = OperationRecord {
            id: "op-1".into(),
            kind: OperationKind::Backup,
            outcome: OperationOutcome::FinishedByRecovery,
            summary: "backup".into(),
            started_at: "2026-01-26T10:15:00Z".parse().expect("ts"),
            files: vec![],
            records: PendingRecords::default(),
        };
        let recorded = ledger.record_operation(&operation);
        writer.join().expect("writer thread");
        assert!(recorded.as_ref().is_ok_and(|new| *new), "{recorded:?}");
    }

    #[test]
    fn open_existing_refuses_a_missing_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("typo.sqlite");
        let err = SqliteLedger::open_existing(&path).expect_err("missing");
        assert!(err.downcast_ref::<LedgerMissing>().is_some(), "{err:#}");
        let msg = format!("{err:#}");
        assert!(msg.contains(&path.display().to_string()) && msg.contains("guardian run"), "{msg}");
        assert!(!path.exists(), "nothing was created");
        SqliteLedger::open(&path).expect("create");
        SqliteLedger::open_existing(&path).expect("exists now");
    }
}
