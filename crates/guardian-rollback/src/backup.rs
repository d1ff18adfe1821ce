//! Timestamped, checksummed backups of the managed files, and restoring them.
//!
//! A backup is a byte-for-byte copy, `<backup_dir>/<config>_<stamp>.json`, next to a sidecar
//! `<config>_<stamp>.json.sha256` in `sha256sum` format (so `sha256sum -c *.sha256` works in a
//! copied folder), and a row in the ledger. Every config backed up in one operation shares the
//! stamp, so one `restore <stamp>` undoes a whole rollback. Restore checks the checksum before
//! anything else, backs up the current state first (so the restore itself can be undone), and
//! writes atomically.
//!
//! Every operation here changes its files all together or not at all (see [`crate::journal`]),
//! and first recovers whatever a crashed process left half-done. Backups and sidecars are read
//! without following symbolic links: a linked backup is reported by verify and refused by
//! restore. A backup the ledger has no row for (planted, even with a matching sidecar) is
//! [`Verdict::Unrecorded`]: verify reports it, restore refuses it unless forced.

use std::{
    fs,
    path::{Path, PathBuf},
};

use alloy::{hex, primitives::B256};
use eyre::{Result, WrapErr, bail, eyre};
use guardian_core::backup::{
    BackupName, BackupStamp, PruneGuards, PrunePlan, nearest_stamps, parse_sidecar,
    select_prune_sets, sidecar_line,
};
use jiff::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{
    atomic_file::{read_no_follow, refuse_symlink, test_pause_before_write},
    config::{ManagedConfig, RollbackSettings},
    journal::{Operation, recover_interrupted},
    ledger::{BackupLedger, BackupRecord, ChangeKind, ChangeRecord, OperationKind, PendingRecords},
    lock::WriteLock,
    managed_config::unified_diff,
};

/// sha256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> B256 {
    B256::from_slice(&Sha256::digest(bytes))
}

/// A digest as `sha256sum` prints it.
pub fn sha256_hex(digest: &B256) -> String {
    hex::encode(digest)
}

/// One backup file in the backup folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupEntry {
    /// Which config, when.
    #[serde(flatten)]
    pub name: BackupName,
    /// The file's name.
    pub file: String,
    /// Its path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
}

/// The outcome of checking one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Verdict {
    /// The bytes hash to what the sidecar and the ledger recorded.
    Intact {
        /// The sha256.
        sha256: String,
    },
    /// The bytes hash to something else.
    Corrupted {
        /// What was recorded.
        expected: String,
        /// What the file hashes to now.
        actual: String,
        /// Where the expected hash came from (`sidecar` or `ledger`).
        recorded_in: &'static str,
    },
    /// No usable sidecar, a symbolic link, or unreadable: the backup cannot be trusted.
    Unverifiable {
        /// Why.
        reason: String,
    },
    /// The sidecar matches, but the ledger has no row for this backup: guardian did not take it
    /// (or it was taken with another ledger). Restored only with `--force`.
    Unrecorded {
        /// The sha256 (as the sidecar says).
        sha256: String,
    },
}

/// One backup and its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// The backup.
    pub backup: BackupEntry,
    /// Whether it can be trusted.
    pub verdict: Verdict,
}

impl Verification {
    /// Whether the backup may be restored.
    pub fn is_intact(&self) -> bool {
        matches!(self.verdict, Verdict::Intact { .. })
    }

    /// Fail with a message naming the file and both hashes unless intact.
    pub fn ensure_intact(&self) -> Result<()> {
        self.ensure_restorable(false)
    }

    /// [`Self::ensure_intact`], except that with `force` a backup the ledger does not know is
    /// accepted (its sidecar still has to match).
    pub fn ensure_restorable(&self, force: bool) -> Result<()> {
        let path = self.backup.path.display();
        match &self.verdict {
            Verdict::Intact { .. } => Ok(()),
            Verdict::Unrecorded { .. } if force => {
                tracing::warn!(backup = %path, "restoring a backup the ledger has no row for (--force)");
                Ok(())
            }
            Verdict::Unrecorded { .. } => Err(not_restorable(format!(
                "backup {path} matches its sidecar but the ledger has no record of it: guardian \
                 did not take it, or it was taken with another ledger (check --db); refusing to \
                 restore it. If you trust the file, add --force"
            ))),
            Verdict::Corrupted { expected, actual, recorded_in } => Err(not_restorable(format!(
                "backup {path} is corrupted or was edited: the {recorded_in} records sha256 \
                 {expected} but the file hashes to {actual}; refusing to restore it"
            ))),
            Verdict::Unverifiable { reason } => Err(not_restorable(format!(
                "backup {path} cannot be verified ({reason}); refusing to restore it"
            ))),
        }
    }
}

fn not_restorable(message: String) -> eyre::Report {
    crate::Refused::new(crate::RefusalKind::BackupNotRestorable, message).into()
}

/// Backups taken together in one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupSet {
    /// Their shared stamp.
    pub stamp: BackupStamp,
    /// The files written.
    pub files: Vec<BackupEntry>,
}

/// What restore did (or, in a dry run, would do) to one managed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoredFile {
    /// The managed config's name.
    pub config: String,
    /// The file overwritten.
    pub path: PathBuf,
    /// The backup it was restored from.
    pub from: PathBuf,
    /// Unified diff from the current content to the backup's.
    pub diff: String,
}

/// The result of `backup restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreOutcome {
    /// The stamp restored.
    pub stamp: BackupStamp,
    /// Per file.
    pub files: Vec<RestoredFile>,
    /// The backup of the state before the restore: restore it to undo. `None` in a dry run.
    pub undo_stamp: Option<BackupStamp>,
}

/// One file of a restore, checked and ready to write.
struct RestoreStep {
    file: RestoredFile,
    target: ManagedConfig,
    bytes: Vec<u8>,
    /// The target's content now (`None`: it does not exist).
    current: Option<Vec<u8>>,
}

/// A backup set added to an operation, not written yet.
pub(crate) struct StagedBackup {
    pub(crate) set: BackupSet,
    pub(crate) records: Vec<BackupRecord>,
    /// Per config: the backup's path and sha256, for undoing the operation.
    copies: Vec<(String, PathBuf, B256)>,
}

impl StagedBackup {
    /// Where the backup of `config` goes and its sha256: the copy an undo restores from.
    pub(crate) fn copy_of(&self, config: &str) -> Option<(PathBuf, B256)> {
        self.copies.iter().find(|(name, _, _)| name == config).map(|(_, p, sha)| (p.clone(), *sha))
    }
}

/// Backup operations over one backup folder.
pub struct Backups<'a> {
    settings: &'a RollbackSettings,
    ledger: &'a dyn BackupLedger,
}

impl std::fmt::Debug for Backups<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backups").field("dir", &self.settings.backup_dir).finish_non_exhaustive()
    }
}

impl<'a> Backups<'a> {
    /// Backups of the files `settings` manages, recorded in `ledger`.
    pub fn new(settings: &'a RollbackSettings, ledger: &'a dyn BackupLedger) -> Self {
        Self { settings, ledger }
    }

    /// Every backup in the folder, oldest first (an absent folder has none).
    pub fn list(&self) -> Result<Vec<BackupEntry>> {
        let dir = &self.settings.backup_dir;
        let read = match fs::read_dir(dir) {
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err).wrap_err_with(|| format!("listing {}", dir.display())),
        };
        let mut entries = Vec::new();
        for item in read {
            let item = item.wrap_err_with(|| format!("listing {}", dir.display()))?;
            let file = item.file_name().to_string_lossy().into_owned();
            let Some(name) = BackupName::parse(&file) else { continue };
            let bytes = item.metadata().map(|m| m.len()).unwrap_or_default();
            entries.push(BackupEntry { name, path: item.path(), file, bytes });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Copy `files` into the backup folder under one fresh stamp, all of them or none. Every
    /// file must exist.
    pub fn create(
        &self,
        lock: &WriteLock,
        files: &[ManagedConfig],
        reason: &str,
    ) -> Result<BackupSet> {
        recover_interrupted(lock, self.settings, self.ledger)?;
        let mut op = Operation::new(
            OperationKind::Backup,
            format!("backup of {} file(s) ({reason})", files.len()),
        );
        let staged = self.stage_backup(&mut op, files, reason)?;
        op.commit(
            lock,
            self.settings,
            self.ledger,
            PendingRecords { backups: staged.records, ..PendingRecords::default() },
        )?;
        for file in &staged.set.files {
            tracing::info!(backup = %file.path.display(), %reason, "backup taken");
        }
        Ok(staged.set)
    }

    /// Add a backup of `files` under one fresh stamp to `op`: the backups and their sidecars,
    /// with the ledger rows to add when the operation is done.
    pub(crate) fn stage_backup(
        &self,
        op: &mut Operation,
        files: &[ManagedConfig],
        reason: &str,
    ) -> Result<StagedBackup> {
        let dir = &self.settings.backup_dir;
        fs::create_dir_all(dir)
            .wrap_err_with(|| format!("creating backup folder {}", dir.display()))?;
        let taken: Vec<BackupStamp> = self.list()?.into_iter().map(|e| e.name.stamp).collect();
        let stamp = BackupStamp::next_unique(Timestamp::now(), &taken);
        let mut staged = StagedBackup {
            set: BackupSet { stamp, files: Vec::with_capacity(files.len()) },
            records: Vec::with_capacity(files.len()),
            copies: Vec::with_capacity(files.len()),
        };
        for config in files {
            let bytes = read_no_follow(&config.path)
                .wrap_err_with(|| format!("reading {} to back it up", config.path.display()))?;
            let name = BackupName { config: config.name.clone(), stamp };
            let path = dir.join(name.file_name());
            let sidecar = dir.join(name.sidecar_name());
            for file in [&path, &sidecar] {
                if fs::symlink_metadata(file).is_ok() {
                    bail!("backup {} already exists; refusing to overwrite it", file.display());
                }
            }
            let digest = sha256(&bytes);
            let line = sidecar_line(&digest, &name.file_name());
            staged.records.push(BackupRecord {
                name: name.clone(),
                sha256: digest,
                source: config.path.display().to_string(),
                reason: reason.to_owned(),
            });
            staged.copies.push((config.name.clone(), path.clone(), digest));
            staged.set.files.push(BackupEntry {
                file: name.file_name(),
                name,
                path: path.clone(),
                bytes: bytes.len() as u64,
            });
            op.write(path, bytes, None, None);
            op.write(sidecar, line.into_bytes(), None, None);
        }
        Ok(staged)
    }

    /// Check one backup against its sidecar and the ledger. A backup that cannot be read (or is
    /// a symbolic link) is [`Verdict::Unverifiable`], not an error, so a caller checking many
    /// goes on to the next; only a ledger failure is an error.
    pub fn verify(&self, backup: &BackupEntry) -> Result<Verification> {
        match read_no_follow(&backup.path) {
            Ok(bytes) => self.check(backup, &bytes),
            Err(err) => Ok(Verification {
                backup: backup.clone(),
                verdict: Verdict::Unverifiable { reason: format!("unreadable: {err}") },
            }),
        }
    }

    /// Check `bytes`, read from `backup`, against its sidecar and the ledger.
    fn check(&self, backup: &BackupEntry, bytes: &[u8]) -> Result<Verification> {
        let actual = sha256(bytes);
        let sidecar_path = self.settings.backup_dir.join(backup.name.sidecar_name());
        let sidecar = read_no_follow(&sidecar_path).and_then(|bytes| {
            String::from_utf8(bytes).map_err(|_| std::io::Error::other("not UTF-8 text"))
        });
        let verdict = match sidecar {
            Err(err) => Verdict::Unverifiable {
                reason: format!("checksum file {} unreadable: {err}", sidecar_path.display()),
            },
            Ok(text) => match parse_sidecar(&text) {
                None => Verdict::Unverifiable {
                    reason: format!("{} is not a sha256sum line", sidecar_path.display()),
                },
                Some((_, named)) if named != backup.file => Verdict::Unverifiable {
                    reason: format!(
                        "{} checks {named}, not {}",
                        sidecar_path.display(),
                        backup.file
                    ),
                },
                Some((expected, _)) if expected != actual => Verdict::Corrupted {
                    expected: sha256_hex(&expected),
                    actual: sha256_hex(&actual),
                    recorded_in: "sidecar",
                },
                Some(_) => match self.ledger.backup_sha256(&backup.file)? {
                    Some(recorded) if recorded != actual => Verdict::Corrupted {
                        expected: sha256_hex(&recorded),
                        actual: sha256_hex(&actual),
                        recorded_in: "ledger",
                    },
                    Some(_) => Verdict::Intact { sha256: sha256_hex(&actual) },
                    None => Verdict::Unrecorded { sha256: sha256_hex(&actual) },
                },
            },
        };
        Ok(Verification { backup: backup.clone(), verdict })
    }

    /// The backups taken at exactly `stamp` (optionally of one config), or an error that lists
    /// the nearest stamps that do exist.
    pub fn at_stamp(&self, stamp: &str, config: Option<&str>) -> Result<Vec<BackupEntry>> {
        let all = self.list()?;
        let wanted: Option<BackupStamp> = stamp.parse().ok();
        let matching: Vec<BackupEntry> = all
            .iter()
            .filter(|e| Some(e.name.stamp) == wanted)
            .filter(|e| config.is_none_or(|c| e.name.config == c))
            .cloned()
            .collect();
        if !matching.is_empty() {
            return Ok(matching);
        }
        let dir = self.settings.backup_dir.display();
        let candidates: Vec<BackupStamp> = all
            .iter()
            .filter(|e| config.is_none_or(|c| e.name.config == c))
            .map(|e| e.name.stamp)
            .collect();
        let of = config.map(|c| format!(" of {c}")).unwrap_or_default();
        if candidates.is_empty() {
            bail!("no backup{of} taken at {stamp:?}: {dir} holds no backups{of} at all");
        }
        let nearest: Vec<String> =
            nearest_stamps(&candidates, stamp, 5).iter().map(ToString::to_string).collect();
        bail!("no backup{of} taken at {stamp:?} in {dir}; nearest: {}", nearest.join(", "))
    }

    /// Where the managed file a backup copies lives.
    fn target_of(&self, backup: &BackupEntry) -> Result<ManagedConfig> {
        self.settings
            .backed_up_files()
            .into_iter()
            .find(|c| c.name == backup.name.config)
            .ok_or_else(|| {
                eyre!(
                    "backup {} is of {:?}, which guardian.toml does not manage (any more)",
                    backup.path.display(),
                    backup.name.config
                )
            })
    }

    /// What restoring `stamp` would change, after the same checks a restore makes. Writes
    /// nothing and needs no lock.
    pub fn preview_restore(&self, stamp: &str, config: Option<&str>) -> Result<RestoreOutcome> {
        self.preview_restore_with(stamp, config, false)
    }

    /// [`Self::preview_restore`]; `force` accepts a backup the ledger does not know.
    pub fn preview_restore_with(
        &self,
        stamp: &str,
        config: Option<&str>,
        force: bool,
    ) -> Result<RestoreOutcome> {
        let (stamp, plan) = self.prepare_restore(stamp, config, force)?;
        Ok(RestoreOutcome {
            stamp,
            files: plan.into_iter().map(|p| p.file).collect(),
            undo_stamp: None,
        })
    }

    /// Restore the backups taken at `stamp` (all configs in that set, or just `config`).
    pub fn restore(
        &self,
        lock: &WriteLock,
        stamp: &str,
        config: Option<&str>,
    ) -> Result<RestoreOutcome> {
        self.restore_with(lock, stamp, config, false)
    }

    /// [`Self::restore`]; `force` accepts a backup the ledger does not know (`--force`).
    ///
    /// Order: recover → find → verify every checksum (refuse on any mismatch, nothing written)
    /// → stage the backup of the current files under a new stamp and every restored file →
    /// journal → rename all → record. All of it happens or none of it.
    pub fn restore_with(
        &self,
        lock: &WriteLock,
        stamp: &str,
        config: Option<&str>,
        force: bool,
    ) -> Result<RestoreOutcome> {
        recover_interrupted(lock, self.settings, self.ledger)?;
        let (stamp, plan) = self.prepare_restore(stamp, config, force)?;
        let mut op = Operation::new(
            OperationKind::Restore,
            format!("restore of backup {stamp} ({} file(s))", plan.len()),
        );
        let existing: Vec<ManagedConfig> =
            plan.iter().filter(|p| p.current.is_some()).map(|p| p.target.clone()).collect();
        let undo = self.stage_backup(&mut op, &existing, &format!("before restore of {stamp}"))?;
        test_pause_before_write();
        for step in &plan {
            let copy = undo.copy_of(&step.target.name);
            op.write(
                step.target.path.clone(),
                step.bytes.clone(),
                copy.as_ref().map(|(_, sha)| *sha),
                copy.map(|(path, _)| path),
            );
        }
        let count = plan.len();
        let outcome = RestoreOutcome {
            stamp,
            files: plan.into_iter().map(|p| p.file).collect(),
            undo_stamp: Some(undo.set.stamp),
        };
        let change = ChangeRecord {
            kind: ChangeKind::Restore,
            summary: format!("restored backup {stamp} ({count} file(s))"),
            undo_stamp: undo.set.stamp.to_string(),
            detail: serde_json::to_value(&outcome)?,
        };
        op.commit(
            lock,
            self.settings,
            self.ledger,
            PendingRecords { backups: undo.records, change: Some(change), incident: None },
        )?;
        for file in &outcome.files {
            tracing::info!(config = %file.config, path = %file.path.display(),
                from = %file.from.display(), "restored");
        }
        Ok(outcome)
    }

    /// Find the backups, verify the very bytes that will be written, compute the diffs.
    fn prepare_restore(
        &self,
        stamp: &str,
        config: Option<&str>,
        force: bool,
    ) -> Result<(BackupStamp, Vec<RestoreStep>)> {
        let backups = self.at_stamp(stamp, config)?;
        let mut plan = Vec::with_capacity(backups.len());
        for backup in &backups {
            let bytes = read_no_follow(&backup.path)
                .wrap_err_with(|| format!("reading backup {}", backup.path.display()))?;
            self.check(backup, &bytes)?.ensure_restorable(force)?;
            let target = self.target_of(backup)?;
            refuse_symlink(&target.path)?;
            let current = match read_no_follow(&target.path) {
                Ok(current) => Some(current),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
                Err(err) => {
                    return Err(err).wrap_err_with(|| format!("reading {}", target.path.display()));
                }
            };
            let diff = unified_diff(
                &target.path.display().to_string(),
                &String::from_utf8_lossy(current.as_deref().unwrap_or_default()),
                &String::from_utf8_lossy(&bytes),
            );
            plan.push(RestoreStep {
                file: RestoredFile {
                    config: target.name.clone(),
                    path: target.path.clone(),
                    from: backup.path.clone(),
                    diff,
                },
                target,
                bytes,
                current,
            });
        }
        let stamp = backups.first().map(|b| b.name.stamp).ok_or_else(|| eyre!("no backups"))?;
        Ok((stamp, plan))
    }

    /// Delete whole backup sets (every file sharing a stamp) beyond the newest `keep` of each
    /// config, never a set taken during an open incident or an undo backup younger than
    /// `[rollback] keep_undo_for` (see [`select_prune_sets`]). With `dry_run`, only decide.
    pub fn prune(&self, lock: &WriteLock, keep: usize, dry_run: bool) -> Result<PrunePlan> {
        recover_interrupted(lock, self.settings, self.ledger)?;
        let names: Vec<BackupName> = self.list()?.into_iter().map(|e| e.name).collect();
        let incidents = self.ledger.open_incidents()?;
        let undo_stamps: Vec<BackupStamp> =
            self.ledger.undo_stamps()?.iter().filter_map(|s| s.parse().ok()).collect();
        let guards = PruneGuards {
            incidents: &incidents,
            undo_stamps: &undo_stamps,
            keep_undo_for: self.settings.keep_undo_for,
            now: Timestamp::now(),
        };
        let plan = select_prune_sets(&names, keep, &guards);
        if dry_run || plan.delete.is_empty() {
            return Ok(plan);
        }
        let mut op = Operation::new(
            OperationKind::Prune,
            format!("prune --keep {keep}: {} backup(s)", plan.delete.len()),
        );
        for name in &plan.delete {
            for file in [name.file_name(), name.sidecar_name()] {
                op.delete(self.settings.backup_dir.join(file));
            }
        }
        op.commit(lock, self.settings, self.ledger, PendingRecords::default())?;
        for name in &plan.delete {
            tracing::info!(backup = %name.file_name(), "pruned");
        }
        Ok(plan)
    }
}

/// The files `backup create` copies when no config is named: every managed config, and the
/// version history when it exists.
pub fn default_backup_files(settings: &RollbackSettings) -> Vec<ManagedConfig> {
    settings
        .backed_up_files()
        .into_iter()
        .filter(|c| c.path != settings.versions_path || Path::new(&c.path).exists())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use jiff::Timestamp;

    use super::*;
    use crate::{config::RollbackConfig, ledger::SqliteLedger};

    const ORIGINAL: &str = "{\n    \"contracts\": { \"vault\": {\"address\": \"0x1111111111111111111111111111111111111111\"} },\n\t\"gas\": 1.50\n}";

    struct Stage {
        _dir: tempfile::TempDir,
        settings: RollbackSettings,
        ledger: SqliteLedger,
    }

    impl Stage {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let config: RollbackConfig = toml::from_str(
                r#"
                backup_dir = "backups"
                [[configs]]
                name = "smart-accounts-config"
                path = "smart-accounts-config.json"
                [[configs]]
                name = "monitoring-config"
                path = "monitoring-config.json"
                "#,
            )
            .expect("config");
            let settings = config.resolve(dir.path()).expect("resolve");
            fs::write(&settings.configs[0].path, ORIGINAL).expect("write");
            fs::write(&settings.configs[1].path, "{\"watch\": []}\n").expect("write");
            let ledger = SqliteLedger::open(&settings.ledger_path).expect("ledger");
            Self { _dir: dir, settings, ledger }
        }

        fn backups(&self) -> Backups<'_> {
            Backups::new(&self.settings, &self.ledger)
        }

        fn lock(&self) -> WriteLock {
            WriteLock::acquire(&self.settings.lock_path()).expect("lock")
        }

        fn accounts(&self) -> &Path {
            &self.settings.configs[0].path
        }

        fn backup_all(&self) -> BackupSet {
            self.backups()
                .create(&self.lock(), &default_backup_files(&self.settings), "test")
                .expect("backup")
        }
    }

    #[test]
    fn backup_change_restore_is_byte_identical_and_undoable() {
        let stage = Stage::new();
        let taken = stage.backup_all();
        assert_eq!(taken.files.len(), 2, "no version history file yet: only the two configs");
        let edited = ORIGINAL.replace("1.50", "2");
        fs::write(stage.accounts(), &edited).expect("edit");

        let lock = stage.lock();
        let restored = stage
            .backups()
            .restore(&lock, &taken.stamp.to_string(), Some("smart-accounts-config"))
            .expect("restore");
        assert_eq!(fs::read_to_string(stage.accounts()).expect("read"), ORIGINAL);
        assert_eq!(restored.files.len(), 1);
        assert!(restored.files[0].diff.contains("-\t\"gas\": 2"), "{}", restored.files[0].diff);
        let undo = restored.undo_stamp.expect("an undo backup was taken");
        assert_ne!(undo, taken.stamp);

        stage.backups().restore(&lock, &undo.to_string(), None).expect("undo");
        assert_eq!(fs::read_to_string(stage.accounts()).expect("read"), edited);
    }

    #[test]
    fn dry_run_restore_changes_nothing() {
        let stage = Stage::new();
        let taken = stage.backup_all();
        fs::write(stage.accounts(), "{}").expect("edit");
        let before = stage.backups().list().expect("list").len();
        let outcome =
            stage.backups().preview_restore(&taken.stamp.to_string(), None).expect("dry run");
        assert_eq!(outcome.undo_stamp, None);
        assert_eq!(fs::read_to_string(stage.accounts()).expect("read"), "{}");
        assert_eq!(stage.backups().list().expect("list").len(), before);
    }

    #[test]
    fn stamps_stay_unique_when_backups_come_fast() {
        let stage = Stage::new();
        let stamps: Vec<BackupStamp> = (0..4).map(|_| stage.backup_all().stamp).collect();
        let mut unique = stamps.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 4, "{stamps:?}");
        assert_eq!(unique, stamps, "stamps increase in creation order");
        assert_eq!(stage.backups().list().expect("list").len(), 8);
        for stamp in &stamps {
            let files = stage.backups().at_stamp(&stamp.to_string(), None).expect("exact stem");
            assert_eq!(files.len(), 2);
        }
    }

    #[test]
    fn a_flipped_byte_is_refused_on_restore_and_reported_by_verify() {
        let stage = Stage::new();
        let taken = stage.backup_all();
        let entry = &taken.files[0];
        let mut bytes = fs::read(&entry.path).expect("read");
        bytes[10] ^= 0x01;
        fs::write(&entry.path, &bytes).expect("corrupt");
        fs::write(stage.accounts(), "{\"changed\": true}").expect("edit");

        let report = stage.backups().verify(entry).expect("verify runs");
        assert!(!report.is_intact());
        let Verdict::Corrupted { expected, actual, recorded_in } = &report.verdict else {
            panic!("expected corruption, got {:?}", report.verdict);
        };
        assert_eq!(*recorded_in, "sidecar");
        assert_ne!(expected, actual);

        let err = stage
            .backups()
            .restore(&stage.lock(), &taken.stamp.to_string(), None)
            .expect_err("corrupted backup refused");
        let msg = format!("{err:#}");
        assert!(msg.contains(&entry.path.display().to_string()), "{msg}");
        assert!(msg.contains(expected) && msg.contains(actual), "{msg}");
        assert_eq!(
            fs::read_to_string(stage.accounts()).expect("read"),
            "{\"changed\": true}",
            "nothing was written"
        );
        // The other backup of the set is fine on its own.
        assert!(stage.backups().verify(&taken.files[1]).expect("verify").is_intact());
    }

    #[test]
    fn a_backup_edited_with_its_sidecar_is_caught_by_the_ledger() {
        let stage = Stage::new();
        let taken = stage.backup_all();
        let entry = &taken.files[0];
        fs::write(&entry.path, "{}").expect("edit");
        let sidecar = stage.settings.backup_dir.join(entry.name.sidecar_name());
        fs::write(&sidecar, sidecar_line(&sha256(b"{}"), &entry.file)).expect("forge sidecar");
        let report = stage.backups().verify(entry).expect("verify");
        assert!(
            matches!(report.verdict, Verdict::Corrupted { recorded_in: "ledger", .. }),
            "{report:?}"
        );
        fs::remove_file(&sidecar).expect("rm");
        let report = stage.backups().verify(entry).expect("verify");
        assert!(matches!(report.verdict, Verdict::Unverifiable { .. }), "{report:?}");
    }

    #[test]
    fn sidecars_pass_sha256sum_check() {
        let stage = Stage::new();
        let taken = stage.backup_all();
        let sidecars: Vec<String> = taken.files.iter().map(|f| f.name.sidecar_name()).collect();
        let status = Command::new("sha256sum")
            .arg("--check")
            .arg("--strict")
            .args(&sidecars)
            .current_dir(&stage.settings.backup_dir)
            .status()
            .expect("sha256sum (coreutils) runs");
        assert!(status.success());
    }

    #[test]
    fn an_unknown_stamp_lists_the_nearest_ones() {
        let stage = Stage::new();
        let err = stage.backups().at_stamp("20260126T101500Z", None).expect_err("empty");
        assert!(err.to_string().contains("holds no backups"), "{err}");

        let first = stage.backup_all().stamp;
        let second = stage.backup_all().stamp;
        let err = stage.backups().at_stamp("20200101T000000Z", None).expect_err("missing");
        let msg = err.to_string();
        assert!(msg.contains("nearest"), "{msg}");
        assert!(msg.contains(&first.to_string()) && msg.contains(&second.to_string()), "{msg}");
        let err =
            stage.backups().at_stamp("last tuesday", Some("monitoring-config")).expect_err("x");
        assert!(err.to_string().contains(&second.to_string()), "{err}");
    }

    #[test]
    fn prune_keeps_the_newest_and_open_incident_backups() {
        let stage = Stage::new();
        let oldest = stage.backup_all().stamp;
        // Incident windows have one-second resolution: open it in a later second than `oldest`.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let incident = stage.ledger.open_incident("vault drained", Timestamp::now()).expect("open");
        let during = stage.backup_all().stamp;
        let newest = stage.backup_all().stamp;

        let lock = stage.lock();
        let dry = stage.backups().prune(&lock, 1, true).expect("dry run");
        assert_eq!(dry.delete.len(), 2, "{dry:?}");
        assert_eq!(stage.backups().list().expect("list").len(), 6, "dry run deletes nothing");

        let plan = stage.backups().prune(&lock, 1, false).expect("prune");
        assert!(plan.delete.iter().all(|n| n.stamp == oldest), "{plan:?}");
        let left: Vec<BackupStamp> =
            stage.backups().list().expect("list").into_iter().map(|e| e.name.stamp).collect();
        assert_eq!(left, [during, during, newest, newest]);

        stage.ledger.close_incident(incident, Timestamp::now()).expect("close");
        stage.backups().prune(&lock, 1, false).expect("prune");
        let left: Vec<BackupStamp> =
            stage.backups().list().expect("list").into_iter().map(|e| e.name.stamp).collect();
        assert_eq!(left, [newest, newest]);
        let remaining: Vec<_> = fs::read_dir(&stage.settings.backup_dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sha256"))
            .collect();
        assert_eq!(remaining.len(), 2, "sidecars go with their backups");
    }

    // ------------------------------------------------------------------------------------------
    // Links, unrecorded backups, all-or-nothing and recovery.

    use std::os::unix::fs::symlink;

    use crate::journal::{Recovered, recover_interrupted, test_crash::stop_next_operation_after};

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn temp_files(dir: &Path) -> Vec<String> {
        names_in(dir).into_iter().filter(|n| n.contains(".tmp-")).collect()
    }

    #[test]
    fn a_symlinked_backup_with_a_matching_sidecar_is_never_restored() {
        let stage = Stage::new();
        let outside = stage._dir.path().join("outside.json");
        fs::write(&outside, "{\"evil\": true}").expect("outside");
        let name = BackupName {
            config: "smart-accounts-config".into(),
            stamp: "20260126T101500Z".parse().expect("stamp"),
        };
        fs::create_dir_all(&stage.settings.backup_dir).expect("mkdir");
        let link = stage.settings.backup_dir.join(name.file_name());
        symlink(&outside, &link).expect("link");
        fs::write(
            stage.settings.backup_dir.join(name.sidecar_name()),
            sidecar_line(&sha256(b"{\"evil\": true}"), &name.file_name()),
        )
        .expect("sidecar");

        let entry = stage.backups().list().expect("list").remove(0);
        let report = stage.backups().verify(&entry).expect("verify");
        assert!(
            matches!(&report.verdict, Verdict::Unverifiable { reason } if reason.contains("symbolic link")),
            "{report:?}"
        );
        for force in [false, true] {
            let err = stage
                .backups()
                .restore_with(&stage.lock(), "20260126T101500Z", None, force)
                .expect_err("a link is refused");
            let msg = format!("{err:#}");
            assert!(
                msg.contains("symbolic link") && msg.contains(&link.display().to_string()),
                "{msg}"
            );
        }
        assert_eq!(fs::read_to_string(stage.accounts()).expect("read"), ORIGINAL);
    }

    #[test]
    fn a_symlinked_managed_config_is_refused_by_backup_and_restore() {
        let stage = Stage::new();
        let taken = stage.backup_all();
        let victim = stage._dir.path().join("victim.txt");
        fs::write(&victim, "precious").expect("victim");
        fs::remove_file(stage.accounts()).expect("rm");
        symlink(&victim, stage.accounts()).expect("link");
        let err = stage
            .backups()
            .restore(&stage.lock(), &taken.stamp.to_string(), None)
            .expect_err("refused");
        assert!(format!("{err:#}").contains(&stage.accounts().display().to_string()), "{err:#}");
        let err = stage
            .backups()
            .create(&stage.lock(), &default_backup_files(&stage.settings), "t")
            .expect_err("refused");
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
        assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious");
        assert!(fs::symlink_metadata(stage.accounts()).expect("meta").file_type().is_symlink());
    }

    #[test]
    fn a_planted_backup_with_a_matching_sidecar_but_no_ledger_row() {
        let stage = Stage::new();
        let name = BackupName {
            config: "smart-accounts-config".into(),
            stamp: "20260126T101500Z".parse().expect("stamp"),
        };
        fs::create_dir_all(&stage.settings.backup_dir).expect("mkdir");
        let planted = "{\"planted\": true}";
        fs::write(stage.settings.backup_dir.join(name.file_name()), planted).expect("plant");
        fs::write(
            stage.settings.backup_dir.join(name.sidecar_name()),
            sidecar_line(&sha256(planted.as_bytes()), &name.file_name()),
        )
        .expect("sidecar");
        let entry = stage.backups().list().expect("list").remove(0);
        let report = stage.backups().verify(&entry).expect("verify");
        assert!(matches!(report.verdict, Verdict::Unrecorded { .. }), "{report:?}");
        assert!(!report.is_intact());

        let err = stage
            .backups()
            .restore(&stage.lock(), "20260126T101500Z", None)
            .expect_err("unrecorded refused");
        let msg = format!("{err:#}");
        assert!(msg.contains("no record") && msg.contains("--force"), "{msg}");
        assert_eq!(fs::read_to_string(stage.accounts()).expect("read"), ORIGINAL);
        stage
            .backups()
            .restore_with(&stage.lock(), "20260126T101500Z", None, true)
            .expect("forced");
        assert_eq!(fs::read_to_string(stage.accounts()).expect("read"), planted);
    }

    #[test]
    fn verify_goes_on_past_an_unreadable_backup() {
        let stage = Stage::new();
        let taken = stage.backup_all();
        // A folder where a backup file should be: listed, but cannot be read as one.
        let bad = stage.settings.backup_dir.join("smart-accounts-config_20200101T000000Z.json");
        fs::create_dir(&bad).expect("mkdir");
        let reports: Vec<Verification> = stage
            .backups()
            .list()
            .expect("list")
            .iter()
            .map(|e| stage.backups().verify(e).expect("verify never fails on a file"))
            .collect();
        assert_eq!(reports.len(), 3);
        assert!(
            matches!(&reports[0].verdict, Verdict::Unverifiable { reason } if reason.contains("unreadable"))
        );
        assert!(reports[1..].iter().all(Verification::is_intact), "{reports:?}");
        assert_eq!(taken.files.len(), 2);
    }

    /// A stage whose third config lives in a folder of its own.
    fn stage_with_third_folder() -> (Stage, PathBuf) {
        let mut stage = Stage::new();
        let svc = stage._dir.path().join("svc");
        fs::create_dir_all(&svc).expect("mkdir");
        let path = svc.join("svc-config.json");
        fs::write(&path, "{\"svc\": 1}").expect("write");
        stage
            .settings
            .configs
            .push(ManagedConfig { name: "svc-config".into(), path: path.clone() });
        (stage, path)
    }

    #[test]
    fn a_restore_into_an_unwritable_folder_changes_nothing() {
        let (stage, svc) = stage_with_third_folder();
        let taken = stage.backup_all();
        fs::write(stage.accounts(), "{\"edited\": 1}").expect("edit");
        fs::write(&stage.settings.configs[1].path, "{\"edited\": 2}").expect("edit");
        // The third folder disappears (or cannot be written): its temp file cannot be created.
        fs::remove_dir_all(svc.parent().expect("dir")).expect("rm");
        let before = names_in(&stage.settings.backup_dir);
        let err = stage
            .backups()
            .restore(&stage.lock(), &taken.stamp.to_string(), None)
            .expect_err("third folder missing");
        assert!(format!("{err:#}").contains("nothing was changed"), "{err:#}");
        assert_eq!(fs::read_to_string(stage.accounts()).expect("read"), "{\"edited\": 1}");
        assert_eq!(
            fs::read_to_string(&stage.settings.configs[1].path).expect("read"),
            "{\"edited\": 2}"
        );
        assert_eq!(names_in(&stage.settings.backup_dir), before, "no undo backup left behind");
        assert!(temp_files(stage._dir.path()).is_empty());
        assert!(stage.ledger.undo_stamps().expect("undo").is_empty(), "no change recorded");
    }

    #[test]
    fn a_backup_that_fails_part_way_leaves_no_partial_set() {
        let (stage, svc) = stage_with_third_folder();
        fs::remove_file(&svc).expect("rm: the third config cannot be read");
        let files: Vec<ManagedConfig> = stage.settings.configs.clone();
        let err = stage.backups().create(&stage.lock(), &files, "t").expect_err("fails");
        assert!(format!("{err:#}").contains("svc-config.json"), "{err:#}");
        assert!(stage.backups().list().expect("list").is_empty(), "no partial set");
        assert!(temp_files(&stage.settings.backup_dir).is_empty());
    }

    #[test]
    fn an_interrupted_restore_is_finished_by_the_next_write() {
        let (stage, svc) = stage_with_third_folder();
        let taken = stage.backup_all();
        let edited = ["{\"e\": 1}", "{\"e\": 2}", "{\"e\": 3}"];
        let paths: Vec<PathBuf> = stage.settings.configs.iter().map(|c| c.path.clone()).collect();
        for (path, text) in paths.iter().zip(edited) {
            fs::write(path, text).expect("edit");
        }
        // 3 undo backups + 3 sidecars, then the configs in name order (monitoring,
        // smart-accounts, svc): stop after the first config, like a crash between renames.
        stop_next_operation_after(7);
        stage.backups().restore(&stage.lock(), &taken.stamp.to_string(), None).expect("stops");
        assert_eq!(fs::read_to_string(&paths[1]).expect("read"), "{\"watch\": []}\n", "renamed");
        assert_eq!(fs::read_to_string(stage.accounts()).expect("read"), edited[0], "not yet");
        assert_eq!(fs::read_to_string(&svc).expect("read"), edited[2], "not yet");
        assert_eq!(
            temp_files(stage._dir.path()).len() + temp_files(svc.parent().expect("d")).len(),
            2
        );

        let report = recover_interrupted(&stage.lock(), &stage.settings, &stage.ledger)
            .expect("recovers")
            .expect("something recovered");
        let op = report.interrupted.clone().expect("the restore");
        assert_eq!(op.outcome, Recovered::Finished);
        assert_eq!(op.files_changed.len(), 2);
        assert!(report.to_string().contains("finished it"), "{report}");
        assert_eq!(fs::read_to_string(&svc).expect("read"), "{\"svc\": 1}");
        assert_eq!(fs::read_to_string(stage.accounts()).expect("read"), ORIGINAL);
        assert!(temp_files(stage._dir.path()).is_empty());
        assert!(temp_files(svc.parent().expect("d")).is_empty());
        assert_eq!(stage.ledger.undo_stamps().expect("undo").len(), 1, "the restore is recorded");
        assert!(!crate::journal_pending(&stage.settings));
        assert_eq!(
            recover_interrupted(&stage.lock(), &stage.settings, &stage.ledger).expect("again"),
            None,
            "nothing left to do"
        );
    }

    #[test]
    fn an_interrupted_restore_whose_temp_file_vanished_is_undone() {
        let (stage, svc) = stage_with_third_folder();
        let taken = stage.backup_all();
        let paths: Vec<PathBuf> = stage.settings.configs.iter().map(|c| c.path.clone()).collect();
        for (i, path) in paths.iter().enumerate() {
            fs::write(path, format!("{{\"e\": {i}}}")).expect("edit");
        }
        stop_next_operation_after(7);
        stage.backups().restore(&stage.lock(), &taken.stamp.to_string(), None).expect("stops");
        for temp in temp_files(svc.parent().expect("d")) {
            fs::remove_file(svc.parent().expect("d").join(temp)).expect("lose the temp");
        }
        let backups_before = stage.backups().list().expect("list").len();
        let report = recover_interrupted(&stage.lock(), &stage.settings, &stage.ledger)
            .expect("recovers")
            .expect("recovered");
        assert_eq!(report.interrupted.expect("op").outcome, Recovered::Undone);
        for (i, path) in paths.iter().enumerate() {
            assert_eq!(fs::read_to_string(path).expect("read"), format!("{{\"e\": {i}}}"));
        }
        assert_eq!(
            stage.backups().list().expect("list").len(),
            backups_before - 3,
            "undo set gone"
        );
        assert!(
            temp_files(stage._dir.path()).is_empty()
                && temp_files(&stage.settings.backup_dir).is_empty()
        );
        assert!(
            stage.ledger.undo_stamps().expect("undo").is_empty(),
            "an undone restore is no change"
        );
    }

    #[test]
    fn an_interrupted_operation_over_a_hand_edited_file_is_left_for_a_person() {
        let stage = Stage::new();
        let taken = stage.backup_all();
        fs::write(stage.accounts(), "{\"e\": 1}").expect("edit");
        stop_next_operation_after(0);
        stage.backups().restore(&stage.lock(), &taken.stamp.to_string(), None).expect("stops");
        fs::write(stage.accounts(), "{\"by hand\": true}").expect("edit again");
        let err =
            recover_interrupted(&stage.lock(), &stage.settings, &stage.ledger).expect_err("stuck");
        assert!(
            matches!(
                err.downcast_ref::<crate::RecoveryError>(),
                Some(crate::RecoveryError::Stuck { .. })
            ),
            "{err:#}"
        );
        assert!(format!("{err:#}").contains(&stage.accounts().display().to_string()), "{err:#}");
        assert_eq!(fs::read_to_string(stage.accounts()).expect("read"), "{\"by hand\": true}");
        assert!(crate::journal_pending(&stage.settings), "the journal stays");
        let err = stage.backups().create(&stage.lock(), &[], "t").expect_err("writes wait for it");
        assert!(format!("{err:#}").contains("cannot be finished or undone"), "{err:#}");
    }

    #[test]
    fn prune_deletes_whole_sets_and_keeps_young_undo_backups() {
        let stage = Stage::new();
        let first = stage.backup_all().stamp;
        fs::write(stage.accounts(), "{\"e\": 1}").expect("edit");
        let undo = stage
            .backups()
            .restore(&stage.lock(), &first.to_string(), Some("smart-accounts-config"))
            .expect("restore")
            .undo_stamp
            .expect("undo");
        let only_accounts = stage
            .backups()
            .create(&stage.lock(), &stage.settings.configs[..1], "one config")
            .expect("backup")
            .stamp;
        let plan = stage.backups().prune(&stage.lock(), 1, false).expect("prune");
        // monitoring's newest is `first`, so set `first` stays whole; the undo backup is young.
        assert!(plan.delete.is_empty(), "{plan:?}");
        assert!(plan.keep.contains(&(
            BackupName { config: "smart-accounts-config".into(), stamp: first },
            guardian_core::backup::KeepReason::SameSet
        )));
        assert!(plan.keep.iter().any(
            |(n, why)| n.stamp == undo && *why == guardian_core::backup::KeepReason::UndoBackup
        ));
        let _ = only_accounts;
    }

    #[test]
    fn planted_temp_links_in_the_backup_folder_are_removed_not_followed() {
        let stage = Stage::new();
        let victim = stage._dir.path().join("victim.txt");
        fs::write(&victim, "precious").expect("victim");
        fs::create_dir_all(&stage.settings.backup_dir).expect("mkdir");
        let planted = [
            stage.settings.backup_dir.join("..guardian.journal.tmp-0"),
            stage.settings.backup_dir.join(".monitoring-config_20260126T101500Z.json.sha256.tmp-0"),
            stage._dir.path().join(".smart-accounts-config.json.tmp-0"),
        ];
        for path in &planted {
            symlink(&victim, path).expect("plant");
        }
        stage.backup_all();
        assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious");
        for path in &planted {
            assert!(fs::symlink_metadata(path).is_err(), "{} is swept", path.display());
        }
    }
}
