//! All-or-nothing operations over several files, and recovering one a crash interrupted.
//!
//! Backup, restore, rollback, `versions add` and prune each change several files (backups,
//! sidecars, configs, the version history). Each goes through an [`Operation`]:
//!
//! 1. **Stage**: every new content is written to a temp file next to its target and fsynced. A
//!    failure here (a folder that is not writable, a full disk) removes the temp files: nothing
//!    changed, nothing to record.
//! 2. **Journal**: the intent (each target, its temp file, the sha256 before and after, where the
//!    old content is kept, and the ledger rows to add) is written to `<backup_dir>/.guardian.journal`
//!    atomically (temp, fsync, rename, fsync of the folder). The journal sits next to the lock
//!    file because the lock defines who coordinates: every process that could have been
//!    interrupted writes under that lock, whichever `--db` it was given.
//! 3. **Rename** every temp file over its target (or delete, for prune), in journal order:
//!    backups first, configs last.
//! 4. **Done**: one ledger transaction adds the rows and the `rollback_operations` row keyed by
//!    the journal id; then the journal is deleted.
//!
//! [`recover_interrupted`] runs under the write lock before every write (and at daemon start): a
//! journal still there means a process died between 2 and 4. It is decided by
//! [`guardian_core::backup::decide_recovery`] from the sha256 of each file: *finish* (rename what
//! is left — every temp file is there and intact) or *undo* (a temp file was lost: put the
//! renamed files' old content back from the undo backup the operation took, delete the files it
//! created, remove the temp files). Either way the ledger gets the operation's row, saying which;
//! a file changed by something else since is never overwritten ([`RecoveryError::Stuck`]).
//! Afterwards temp files of dead writers are removed from every managed folder.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use alloy::primitives::B256;
use eyre::{Result, WrapErr, eyre};
use guardian_core::backup::{
    BackupName, FileState, JournaledFile, RecoveryDecision, StuckReason, decide_recovery,
};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{
    atomic_file::{
        folder_of, read_no_follow, remove_durably, remove_stale_temps, rename_into_place,
        test_crash_before_rename, test_crash_between_renames, write_atomically, write_temp,
    },
    backup::sha256,
    config::RollbackSettings,
    ledger::{BackupLedger, OperationKind, OperationOutcome, OperationRecord, PendingRecords},
    lock::WriteLock,
};

/// The journal's file name in the backup folder.
pub const JOURNAL_FILE: &str = ".guardian.journal";

/// One file of a journaled operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    /// The file changed.
    path: PathBuf,
    /// The staged new content; `None` when the operation deletes the file.
    temp: Option<PathBuf>,
    /// sha256 of the new content (`None`: deleted).
    after: Option<B256>,
    /// sha256 of the content before (`None`: the file did not exist).
    before: Option<B256>,
    /// Where the old content is kept (an undo backup taken by the same operation).
    before_copy: Option<PathBuf>,
}

/// `<backup_dir>/.guardian.journal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Journal {
    id: String,
    kind: OperationKind,
    summary: String,
    started_at: Timestamp,
    pid: u32,
    files: Vec<Entry>,
    records: PendingRecords,
}

enum Content {
    Write(Vec<u8>),
    Delete,
}

struct Change {
    path: PathBuf,
    content: Content,
    before: Option<B256>,
    before_copy: Option<PathBuf>,
}

/// A set of file changes that happen all together or not at all.
pub(crate) struct Operation {
    kind: OperationKind,
    summary: String,
    changes: Vec<Change>,
}

impl Operation {
    pub(crate) fn new(kind: OperationKind, summary: impl Into<String>) -> Self {
        Self { kind, summary: summary.into(), changes: Vec::new() }
    }

    /// Replace (or create) `path` with `bytes`. `before` is the sha256 of what is there now
    /// (`None`: nothing), `before_copy` a file this operation writes earlier holding those bytes.
    pub(crate) fn write(
        &mut self,
        path: PathBuf,
        bytes: Vec<u8>,
        before: Option<B256>,
        before_copy: Option<PathBuf>,
    ) {
        self.changes.push(Change { path, content: Content::Write(bytes), before, before_copy });
    }

    /// Delete `path`.
    pub(crate) fn delete(&mut self, path: PathBuf) {
        self.changes.push(Change {
            path,
            content: Content::Delete,
            before: None,
            before_copy: None,
        });
    }

    /// Stage, journal, rename, record. On success every file is changed and the ledger holds the
    /// records; on an error before the journal nothing changed; on a rename error every file is
    /// put back (or, if that fails too, the journal stays for the next command to recover).
    pub(crate) fn commit(
        self,
        lock: &WriteLock,
        settings: &RollbackSettings,
        ledger: &dyn BackupLedger,
        records: PendingRecords,
    ) -> Result<()> {
        #[cfg(test)]
        let stop_after = test_crash::take();
        #[cfg(not(test))]
        let stop_after = None;
        self.commit_until(lock, settings, ledger, records, stop_after)
    }

    /// [`Self::commit`], stopping as a crash would after `stop_after` renames (unit tests).
    fn commit_until(
        self,
        _lock: &WriteLock,
        settings: &RollbackSettings,
        ledger: &dyn BackupLedger,
        records: PendingRecords,
        stop_after: Option<usize>,
    ) -> Result<()> {
        let mut entries = Vec::with_capacity(self.changes.len());
        for change in &self.changes {
            let staged = match &change.content {
                Content::Write(bytes) => write_temp(&change.path, bytes)
                    .map(|temp| (Some(temp), Some(sha256(bytes))))
                    .wrap_err_with(|| {
                        format!("preparing {}; nothing was changed", change.path.display())
                    }),
                // Deleting a link removes the link, never what it points at.
                Content::Delete => Ok((None, None)),
            };
            let (temp, after) = match staged {
                Ok(staged) => staged,
                Err(err) => {
                    remove_temps(&entries);
                    return Err(err);
                }
            };
            if let Some(temp) = &temp {
                test_crash_before_rename(&change.path, temp);
            }
            entries.push(Entry {
                path: change.path.clone(),
                temp,
                after,
                before: change.before,
                before_copy: change.before_copy.clone(),
            });
        }
        let journal = Journal {
            id: new_id(),
            kind: self.kind,
            summary: self.summary,
            started_at: Timestamp::now(),
            pid: std::process::id(),
            files: entries,
            records,
        };
        let path = journal_path(settings);
        let text = serde_json::to_vec_pretty(&journal)?;
        if let Err(err) = write_atomically(&path, &text) {
            remove_temps(&journal.files);
            return Err(err).wrap_err("writing the operation journal; nothing was changed");
        }

        let total = journal.files.len();
        test_crash_between_renames(0, total);
        for (done, entry) in journal.files.iter().enumerate() {
            if stop_after == Some(done) {
                return Ok(());
            }
            if let Err(err) = apply_entry(entry) {
                return Err(undo_after_error(&journal, settings, ledger, err));
            }
            test_crash_between_renames(done + 1, total);
        }
        if stop_after.is_some() {
            return Ok(());
        }
        finish(&journal, settings, ledger, OperationOutcome::Completed)
    }
}

fn new_id() -> String {
    use std::hash::{BuildHasher, RandomState};
    let now = Timestamp::now();
    let nonce = RandomState::new().hash_one((now.as_nanosecond(), std::process::id()));
    format!("{}-{nonce:016x}", now.strftime("%Y%m%dT%H%M%SZ"))
}

fn journal_path(settings: &RollbackSettings) -> PathBuf {
    settings.backup_dir.join(JOURNAL_FILE)
}

/// Rename one entry's temp file over its target (or delete the target).
fn apply_entry(entry: &Entry) -> Result<()> {
    match &entry.temp {
        Some(temp) => rename_into_place(temp, &entry.path),
        None => remove_durably(&entry.path),
    }
}

fn remove_temps(entries: &[Entry]) {
    for temp in entries.iter().filter_map(|e| e.temp.as_ref()) {
        // Best effort: what is left is removed as stale by the next write.
        let _ = std::fs::remove_file(temp);
    }
}

/// Record the operation and delete the journal.
fn finish(
    journal: &Journal,
    settings: &RollbackSettings,
    ledger: &dyn BackupLedger,
    outcome: OperationOutcome,
) -> Result<()> {
    let record = OperationRecord {
        id: journal.id.clone(),
        kind: journal.kind,
        outcome,
        summary: journal.summary.clone(),
        started_at: journal.started_at,
        files: journal.files.iter().map(|e| e.path.display().to_string()).collect(),
        records: journal.records.clone(),
    };
    ledger.record_operation(&record).wrap_err_with(|| {
        format!(
            "the files of the {} are written but the ledger could not record it; the journal {} \
             stays, and the next guardian command records it",
            journal.kind,
            journal_path(settings).display()
        )
    })?;
    remove_durably(&journal_path(settings))
}

/// A rename failed in this process: put everything back now, rather than leave it to recovery.
fn undo_after_error(
    journal: &Journal,
    settings: &RollbackSettings,
    ledger: &dyn BackupLedger,
    err: eyre::Report,
) -> eyre::Report {
    let files = inspect(journal);
    let undone = undo(journal, &files)
        .and_then(|()| finish(journal, settings, ledger, OperationOutcome::UndoneAfterError));
    match undone {
        Ok(()) => err.wrap_err(format!(
            "the {} failed part-way; every file was put back as it was",
            journal.kind
        )),
        Err(undo_err) => err.wrap_err(format!(
            "the {} failed part-way and putting the files back failed too ({undo_err:#}); the \
             journal {} stays and the next guardian command recovers it",
            journal.kind,
            journal_path(settings).display()
        )),
    }
}

/// The sha256 of a file, `None` when absent; `Err` for a link or an unreadable file.
fn current_sha(path: &Path) -> std::io::Result<Option<B256>> {
    match read_no_follow(path) {
        Ok(bytes) => Ok(Some(sha256(&bytes))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// Where each journaled file stands.
fn inspect(journal: &Journal) -> Vec<JournaledFile> {
    journal
        .files
        .iter()
        .map(|entry| {
            let state = match &entry.temp {
                // A deletion: there (as a file or a link) or not.
                None => match std::fs::symlink_metadata(&entry.path) {
                    Ok(_) => FileState::Before,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => FileState::After,
                    Err(_) => FileState::Neither,
                },
                Some(_) => match current_sha(&entry.path) {
                    Ok(now) if now == entry.after => FileState::After,
                    Ok(now) if now == entry.before => FileState::Before,
                    _ => FileState::Neither,
                },
            };
            let temp_intact = match &entry.temp {
                None => true,
                Some(temp) => current_sha(temp).ok().flatten() == entry.after,
            };
            let restorable = match (&entry.before, &entry.before_copy) {
                (None, _) => true,
                (Some(before), Some(copy)) => current_sha(copy).ok().flatten() == Some(*before),
                (Some(_), None) => false,
            };
            JournaledFile { state, temp_intact, restorable }
        })
        .collect()
}

/// Rename what is left.
fn roll_forward(journal: &Journal, files: &[JournaledFile]) -> Result<Vec<PathBuf>> {
    let mut changed = Vec::new();
    for (entry, file) in journal.files.iter().zip(files) {
        if file.state == FileState::After {
            continue;
        }
        apply_entry(entry)?;
        changed.push(entry.path.clone());
    }
    remove_temps(&journal.files);
    Ok(changed)
}

/// Put back every renamed file (newest first, so configs are restored from their undo backup
/// before the backup itself is deleted) and remove the temp files.
fn undo(journal: &Journal, files: &[JournaledFile]) -> Result<()> {
    for (entry, file) in journal.files.iter().zip(files).rev() {
        if file.state != FileState::After {
            continue;
        }
        match (&entry.before, &entry.before_copy) {
            (None, _) => remove_durably(&entry.path)?,
            (Some(before), Some(copy)) => {
                let bytes = read_no_follow(copy)
                    .wrap_err_with(|| format!("reading {} to undo", copy.display()))?;
                eyre::ensure!(
                    sha256(&bytes) == *before,
                    "{} no longer holds the content {} had; cannot undo",
                    copy.display(),
                    entry.path.display()
                );
                write_atomically(&entry.path, &bytes)?;
            }
            (Some(_), None) => {
                return Err(eyre!("no copy of the old content of {}", entry.path.display()));
            }
        }
    }
    remove_temps(&journal.files);
    Ok(())
}

/// An interrupted operation that recovery could neither finish nor undo.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// Files are in a state no step of the operation explains; nothing was touched.
    #[error(
        "an interrupted {kind} ({summary}, started {started_at}) cannot be finished or undone: \
         {} {}; nothing was touched. Check these files by hand, restore them from a backup if \
         needed (`guardian backup list`), then delete the journal {}",
        stuck_why(*.reason),
        .files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        .journal.display()
    )]
    Stuck {
        /// The journal file.
        journal: PathBuf,
        /// What the operation was.
        kind: OperationKind,
        /// Its summary.
        summary: String,
        /// When it started.
        started_at: Timestamp,
        /// The files in the way.
        files: Vec<PathBuf>,
        /// Why they are.
        reason: StuckReason,
    },
    /// The journal cannot be read.
    #[error(
        "the operation journal {journal} cannot be read ({reason}); an interrupted write may \
         need a person: compare the managed configs with the newest backup, then delete the \
         journal"
    )]
    Unreadable {
        /// The journal file.
        journal: PathBuf,
        /// Why.
        reason: String,
    },
}

fn stuck_why(reason: StuckReason) -> &'static str {
    match reason {
        StuckReason::ChangedSince => "these files were changed since it started:",
        _ => "the old content of these files is gone:",
    }
}

/// What recovery did with an interrupted operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Recovered {
    /// Rolled forward: the remaining renames were done and the operation recorded.
    Finished,
    /// Rolled back: every file is as it was before the operation.
    Undone,
    /// Every file was written and recorded; only the journal was left to delete.
    AlreadyRecorded,
}

/// An operation a crash interrupted, and what recovery did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InterruptedOperation {
    /// The journal id (`rollback_operations.id`).
    pub id: String,
    /// What it was.
    pub kind: OperationKind,
    /// Its summary.
    pub summary: String,
    /// When it started.
    pub started_at: Timestamp,
    /// The process that died.
    pub pid: u32,
    /// What recovery did.
    pub outcome: Recovered,
    /// The files recovery renamed, restored or deleted.
    pub files_changed: Vec<PathBuf>,
}

/// What [`recover_interrupted`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    /// The interrupted operation, if a journal was left.
    pub interrupted: Option<InterruptedOperation>,
    /// Temp files of dead writers that were removed.
    pub stale_temps_removed: Vec<PathBuf>,
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines = Vec::new();
        if let Some(op) = &self.interrupted {
            let what = match op.outcome {
                Recovered::Finished => "finished it (rolled forward)",
                Recovered::Undone => "undid it (rolled back: every file is as before)",
                Recovered::AlreadyRecorded => "it had completed; removed its journal",
            };
            let files = if op.files_changed.is_empty() {
                String::new()
            } else {
                let names: Vec<String> =
                    op.files_changed.iter().map(|p| p.display().to_string()).collect();
                format!("; changed {}", names.join(", "))
            };
            lines.push(format!(
                "recovered an interrupted {} ({}) started {} by process {}: {what}{files}",
                op.kind, op.summary, op.started_at, op.pid
            ));
        }
        if !self.stale_temps_removed.is_empty() {
            let names: Vec<String> =
                self.stale_temps_removed.iter().map(|p| p.display().to_string()).collect();
            lines.push(format!(
                "removed {} stale temp file(s) of dead writers: {}",
                names.len(),
                names.join(", ")
            ));
        }
        f.write_str(&lines.join("\n"))
    }
}

/// Whether an interrupted operation's journal is waiting (cheap: one `stat`). Read-only commands
/// use it to recover only when there is something to recover.
pub fn journal_pending(settings: &RollbackSettings) -> bool {
    std::fs::symlink_metadata(journal_path(settings)).is_ok()
}

/// Take the write lock and [`recover_interrupted`]: for the daemon's start and for commands that
/// do not hold the lock yet.
pub fn recover_interrupted_writes(
    settings: &RollbackSettings,
    ledger: &dyn BackupLedger,
) -> Result<Option<RecoveryReport>> {
    let lock = WriteLock::acquire(&settings.lock_path())?;
    recover_interrupted(&lock, settings, ledger)
}

/// `guardian run`'s start: read `[rollback]` from `guardian_toml`, open (or create) its ledger,
/// take the lock and recover. `Ok(None)` when there was nothing to do.
pub fn recover_at_start(guardian_toml: &Path) -> Result<Option<RecoveryReport>> {
    let settings = RollbackSettings::load(guardian_toml)?;
    let ledger = crate::SqliteLedger::open(&settings.ledger_path)?;
    recover_interrupted_writes(&settings, &ledger)
}

/// Finish or undo the operation a crashed process left half-done, then remove temp files of dead
/// writers from every managed folder. Every writing entry point calls this first, under the
/// lock; `None` when there was nothing to do. Each thing done is logged at WARN.
pub fn recover_interrupted(
    _lock: &WriteLock,
    settings: &RollbackSettings,
    ledger: &dyn BackupLedger,
) -> Result<Option<RecoveryReport>> {
    let interrupted = recover_journal(settings, ledger)?;
    let stale_temps_removed = sweep_stale_temps(settings)?;
    let report = RecoveryReport { interrupted, stale_temps_removed };
    if report == RecoveryReport::default() {
        return Ok(None);
    }
    for line in report.to_string().lines() {
        tracing::warn!("{line}");
    }
    Ok(Some(report))
}

fn recover_journal(
    settings: &RollbackSettings,
    ledger: &dyn BackupLedger,
) -> Result<Option<InterruptedOperation>> {
    let path = journal_path(settings);
    let bytes = match read_no_follow(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(RecoveryError::Unreadable { journal: path, reason: err.to_string() }.into());
        }
    };
    let journal: Journal = serde_json::from_slice(&bytes).map_err(|err| {
        RecoveryError::Unreadable { journal: path.clone(), reason: err.to_string() }
    })?;
    let report = |outcome, files_changed| InterruptedOperation {
        id: journal.id.clone(),
        kind: journal.kind,
        summary: journal.summary.clone(),
        started_at: journal.started_at,
        pid: journal.pid,
        outcome,
        files_changed,
    };
    if ledger.operation_recorded(&journal.id)? {
        remove_temps(&journal.files);
        remove_durably(&path)?;
        return Ok(Some(report(Recovered::AlreadyRecorded, Vec::new())));
    }
    let files = inspect(&journal);
    match decide_recovery(&files) {
        RecoveryDecision::Finish => {
            let changed = roll_forward(&journal, &files)?;
            finish(&journal, settings, ledger, OperationOutcome::FinishedByRecovery)?;
            Ok(Some(report(Recovered::Finished, changed)))
        }
        RecoveryDecision::Undo => {
            let changed: Vec<PathBuf> = journal
                .files
                .iter()
                .zip(&files)
                .filter(|(_, f)| f.state == FileState::After)
                .map(|(e, _)| e.path.clone())
                .collect();
            undo(&journal, &files)?;
            finish(&journal, settings, ledger, OperationOutcome::UndoneByRecovery)?;
            Ok(Some(report(Recovered::Undone, changed)))
        }
        RecoveryDecision::Stuck { files: stuck, reason } => Err(RecoveryError::Stuck {
            journal: path,
            kind: journal.kind,
            summary: journal.summary.clone(),
            started_at: journal.started_at,
            files: stuck
                .iter()
                .filter_map(|&i| journal.files.get(i))
                .map(|e| e.path.clone())
                .collect(),
            reason,
        }
        .into()),
        _ => Err(eyre!("recovery decision not understood by this version of guardian")),
    }
}

/// Remove dead writers' temp files from the backup folder and the folders of managed files.
fn sweep_stale_temps(settings: &RollbackSettings) -> Result<Vec<PathBuf>> {
    let in_backups = |name: &str| {
        name == JOURNAL_FILE
            || BackupName::parse(name).is_some()
            || name.strip_suffix(".sha256").and_then(BackupName::parse).is_some()
    };
    let mut removed = remove_stale_temps(&settings.backup_dir, &in_backups)?;
    let mut folders: Vec<(PathBuf, Vec<String>)> = Vec::new();
    for file in settings.backed_up_files() {
        let Some(name) = file.path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let dir = folder_of(&file.path).to_owned();
        match folders.iter_mut().find(|(d, _)| *d == dir) {
            Some((_, names)) => names.push(name),
            None => folders.push((dir, vec![name])),
        }
    }
    for (dir, names) in folders {
        if dir == settings.backup_dir {
            continue;
        }
        removed.extend(remove_stale_temps(&dir, &|name| names.iter().any(|n| n == name))?);
    }
    Ok(removed)
}

#[cfg(test)]
pub(crate) mod test_crash {
    //! Stopping an operation where a crash would, in-process, so recovery can be unit-tested.
    use std::cell::Cell;

    thread_local! {
        static STOP_AFTER: Cell<Option<usize>> = const { Cell::new(None) };
    }

    /// Make the next operation on this thread stop after `renames` renames, as if it crashed.
    pub(crate) fn stop_next_operation_after(renames: usize) {
        STOP_AFTER.with(|s| s.set(Some(renames)));
    }

    pub(super) fn take() -> Option<usize> {
        STOP_AFTER.with(Cell::take)
    }
}
