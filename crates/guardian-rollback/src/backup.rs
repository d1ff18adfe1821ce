//! Timestamped, checksummed backups of the managed files, and restoring them.
//!
//! A backup is a byte-for-byte copy, `<backup_dir>/<config>_<stamp>.json`, next to a sidecar
//! `<config>_<stamp>.json.sha256` in `sha256sum` format (so `sha256sum -c *.sha256` works in a
//! copied folder), and a row in the ledger. Every config backed up in one operation shares the
//! stamp, so one `restore <stamp>` undoes a whole rollback. Restore checks the checksum before
//! anything else, backs up the current state first (so the restore itself can be undone), and
//! writes atomically.

use std::{
    fs,
    path::{Path, PathBuf},
};

use alloy::{hex, primitives::B256};
use eyre::{Result, WrapErr, bail, eyre};
use guardian_core::backup::{
    BackupName, BackupStamp, PrunePlan, nearest_stamps, parse_sidecar, select_prune, sidecar_line,
};
use jiff::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{
    atomic_file::{test_pause_before_write, write_atomically},
    config::{ManagedConfig, RollbackSettings},
    ledger::{BackupLedger, BackupRecord, ChangeRecord},
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
pub enum Verdict {
    /// The bytes hash to what the sidecar (and the ledger, when it knows the file) recorded.
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
    /// No usable sidecar: the backup cannot be trusted.
    Unverifiable {
        /// Why.
        reason: String,
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
        let path = self.backup.path.display();
        match &self.verdict {
            Verdict::Intact { .. } => Ok(()),
            Verdict::Corrupted { expected, actual, recorded_in } => bail!(
                "backup {path} is corrupted or was edited: the {recorded_in} records sha256 \
                 {expected} but the file hashes to {actual}; refusing to restore it"
            ),
            Verdict::Unverifiable { reason } => {
                bail!("backup {path} cannot be verified ({reason}); refusing to restore it")
            }
        }
    }
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

    /// Copy `files` into the backup folder under one fresh stamp. Every file must exist.
    pub fn create(
        &self,
        _lock: &WriteLock,
        files: &[ManagedConfig],
        reason: &str,
    ) -> Result<BackupSet> {
        let dir = &self.settings.backup_dir;
        fs::create_dir_all(dir)
            .wrap_err_with(|| format!("creating backup folder {}", dir.display()))?;
        let taken: Vec<BackupStamp> = self.list()?.into_iter().map(|e| e.name.stamp).collect();
        let stamp = BackupStamp::next_unique(Timestamp::now(), &taken);
        let mut written = Vec::with_capacity(files.len());
        for config in files {
            let bytes = fs::read(&config.path)
                .wrap_err_with(|| format!("reading {} to back it up", config.path.display()))?;
            let name = BackupName { config: config.name.clone(), stamp };
            let path = dir.join(name.file_name());
            if path.exists() {
                bail!("backup {} already exists; refusing to overwrite it", path.display());
            }
            let digest = sha256(&bytes);
            write_atomically(&path, &bytes)?;
            write_atomically(
                &dir.join(name.sidecar_name()),
                sidecar_line(&digest, &name.file_name()).as_bytes(),
            )?;
            self.ledger.record_backup(&BackupRecord {
                name: name.clone(),
                sha256: digest,
                source: config.path.display().to_string(),
                reason: reason.to_owned(),
            })?;
            tracing::info!(backup = %path.display(), sha256 = %sha256_hex(&digest), %reason, "backup taken");
            written.push(BackupEntry {
                file: name.file_name(),
                name,
                path,
                bytes: bytes.len() as u64,
            });
        }
        Ok(BackupSet { stamp, files: written })
    }

    /// Check one backup against its sidecar and, when it has a record, the ledger.
    pub fn verify(&self, backup: &BackupEntry) -> Result<Verification> {
        let bytes = fs::read(&backup.path)
            .wrap_err_with(|| format!("reading backup {}", backup.path.display()))?;
        self.check(backup, &bytes)
    }

    /// Check `bytes`, read from `backup`, against its sidecar and the ledger.
    fn check(&self, backup: &BackupEntry, bytes: &[u8]) -> Result<Verification> {
        let actual = sha256(bytes);
        let sidecar_path = self.settings.backup_dir.join(backup.name.sidecar_name());
        let verdict = match fs::read_to_string(&sidecar_path) {
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
                    _ => Verdict::Intact { sha256: sha256_hex(&actual) },
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
        let (stamp, plan) = self.prepare_restore(stamp, config)?;
        Ok(RestoreOutcome {
            stamp,
            files: plan.into_iter().map(|p| p.file).collect(),
            undo_stamp: None,
        })
    }

    /// Restore the backups taken at `stamp` (all configs in that set, or just `config`).
    ///
    /// Order: find → verify every checksum (refuse on any mismatch, nothing written) → back up
    /// the current files under a new stamp → write each atomically → record.
    pub fn restore(
        &self,
        lock: &WriteLock,
        stamp: &str,
        config: Option<&str>,
    ) -> Result<RestoreOutcome> {
        let (stamp, plan) = self.prepare_restore(stamp, config)?;
        let existing: Vec<ManagedConfig> =
            plan.iter().filter(|p| p.target.path.exists()).map(|p| p.target.clone()).collect();
        let undo = self.create(lock, &existing, &format!("before restore of {stamp}"))?;
        test_pause_before_write();
        for step in &plan {
            write_atomically(&step.target.path, &step.bytes)?;
            tracing::info!(
                config = %step.target.name,
                path = %step.target.path.display(),
                from = %step.file.from.display(),
                "restored"
            );
        }
        let count = plan.len();
        let outcome = RestoreOutcome {
            stamp,
            files: plan.into_iter().map(|p| p.file).collect(),
            undo_stamp: Some(undo.stamp),
        };
        self.ledger.record_change(&ChangeRecord {
            kind: "restore",
            summary: format!("restored backup {stamp} ({count} file(s))"),
            undo_stamp: undo.stamp.to_string(),
            detail: serde_json::to_value(&outcome)?,
        })?;
        Ok(outcome)
    }

    /// Find the backups, verify the very bytes that will be written, compute the diffs.
    fn prepare_restore(
        &self,
        stamp: &str,
        config: Option<&str>,
    ) -> Result<(BackupStamp, Vec<RestoreStep>)> {
        let backups = self.at_stamp(stamp, config)?;
        let mut plan = Vec::with_capacity(backups.len());
        for backup in &backups {
            let bytes = fs::read(&backup.path)
                .wrap_err_with(|| format!("reading backup {}", backup.path.display()))?;
            self.check(backup, &bytes)?.ensure_intact()?;
            let target = self.target_of(backup)?;
            let current = fs::read(&target.path).unwrap_or_default();
            let diff = unified_diff(
                &target.path.display().to_string(),
                &String::from_utf8_lossy(&current),
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
            });
        }
        let stamp = backups.first().map(|b| b.name.stamp).ok_or_else(|| eyre!("no backups"))?;
        Ok((stamp, plan))
    }

    /// Delete all but the newest `keep` backups of each config, never one taken during an open
    /// incident. With `dry_run`, only decide.
    pub fn prune(&self, _lock: &WriteLock, keep: usize, dry_run: bool) -> Result<PrunePlan> {
        let names: Vec<BackupName> = self.list()?.into_iter().map(|e| e.name).collect();
        let plan = select_prune(&names, keep, &self.ledger.open_incidents()?);
        if !dry_run {
            for name in &plan.delete {
                for file in [name.file_name(), name.sidecar_name()] {
                    let path = self.settings.backup_dir.join(file);
                    match fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                        Err(err) => {
                            return Err(err)
                                .wrap_err_with(|| format!("deleting {}", path.display()));
                        }
                    }
                }
                tracing::info!(backup = %name.file_name(), "pruned");
            }
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
}
