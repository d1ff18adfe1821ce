//! The `[rollback]` table of guardian.toml: which JSON configs guardian manages, where backups go,
//! and for each watched contract the keys that hold its address.
//!
//! Deserialising does no I/O, so the main config can embed
//! `rollback: Option<guardian_rollback::RollbackConfig>`. [`RollbackConfig::resolve`] then checks
//! it and makes its paths absolute against the folder of the file it came from.
//!
//! ```toml
//! [rollback]
//! backup_dir = "/var/lib/guardian/backups"  # default "backups"
//! versions = "contract-versions.json"  # default; guardian-managed version history
//! ledger = "guardian.sqlite"          # default "guardian.sqlite"
//! keep_undo_for = "7d"                 # default; prune keeps undo backups this long
//!
//! [[rollback.configs]]
//! name = "smart-accounts-config"
//! path = "smart-accounts-config.json"
//!
//! [rollback.contracts.vault]
//! health_call = "solvent()"            # optional: a view returning bool that must be true
//! keys = [{ config = "smart-accounts-config", pointer = "/contracts/vault/address" }]
//! ```

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use eyre::{Result, WrapErr, bail, ensure};
use guardian_core::backup::{AddressKey, RetentionPeriod, validate_config_name};
use serde::Deserialize;

use crate::recovery::{ErrorRateCheck, HealthCheck, RecoverySettings, RestartHook};

/// The backup name under which the version history file is backed up.
pub const VERSIONS_CONFIG_NAME: &str = "contract-versions";

/// The `[rollback]` table as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackConfig {
    /// Folder for backups, relative to guardian.toml's folder.
    #[serde(default = "default_backup_dir")]
    pub backup_dir: PathBuf,
    /// The version history file guardian maintains (`guardian versions add` writes it).
    #[serde(default = "default_versions")]
    pub versions: PathBuf,
    /// The SQLite database holding the backup and rollback ledger.
    #[serde(default = "default_ledger")]
    pub ledger: PathBuf,
    /// How long `backup prune` keeps the backup taken before each rollback or restore, whatever
    /// `--keep` says (`7d`, `12h`, ...; `0` turns it off).
    #[serde(default = "default_keep_undo_for")]
    pub keep_undo_for: RetentionPeriod,
    /// The JSON configs guardian manages.
    #[serde(default)]
    pub configs: Vec<ManagedConfigEntry>,
    /// Per watched contract: where its address lives.
    #[serde(default)]
    pub contracts: BTreeMap<String, ContractRollback>,
    /// `[[rollback.restart]]`: what to restart after a rollback rewrote configs.
    #[serde(default)]
    pub restart: Vec<RestartHook>,
    /// `[[rollback.health]]`: the endpoints that must answer after it.
    #[serde(default)]
    pub health: Vec<HealthCheck>,
    /// `[rollback.verify]`: the error rate that must be back under its baseline.
    #[serde(default)]
    pub verify: Option<ErrorRateCheck>,
}

fn default_backup_dir() -> PathBuf {
    "backups".into()
}

fn default_versions() -> PathBuf {
    "contract-versions.json".into()
}

fn default_ledger() -> PathBuf {
    "guardian.sqlite".into()
}

/// A week: long enough to notice a bad rollback or restore after a weekend.
pub const DEFAULT_KEEP_UNDO_FOR: RetentionPeriod = RetentionPeriod::from_seconds(7 * 86_400);

fn default_keep_undo_for() -> RetentionPeriod {
    DEFAULT_KEEP_UNDO_FOR
}

/// One `[[rollback.configs]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedConfigEntry {
    /// Name used in backup file names and in `--only NAME`.
    pub name: String,
    /// The JSON file, relative to guardian.toml's folder.
    pub path: PathBuf,
}

/// One `[rollback.contracts.NAME]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractRollback {
    /// The JSON keys holding the contract's address.
    pub keys: Vec<AddressKey>,
    /// Optional health check on the rollback target: the signature of a view function without
    /// arguments that returns `bool` (e.g. `solvent()`); the rollback is refused unless it
    /// returns true.
    #[serde(default)]
    pub health_call: Option<String>,
}

/// A JSON config guardian manages, with its path resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedConfig {
    /// Its name.
    pub name: String,
    /// Absolute (or as given, when guardian.toml's folder was relative) path.
    pub path: PathBuf,
}

/// The checked `[rollback]` table with paths resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackSettings {
    /// Where backups go.
    pub backup_dir: PathBuf,
    /// The version history file (also backed up, as `contract-versions`).
    pub versions_path: PathBuf,
    /// The ledger database.
    pub ledger_path: PathBuf,
    /// How long prune keeps undo backups.
    pub keep_undo_for: RetentionPeriod,
    /// The managed JSON configs.
    pub configs: Vec<ManagedConfig>,
    /// Per watched contract: where its address lives.
    pub contracts: BTreeMap<String, ContractRollback>,
    /// What to restart and verify after a rollback.
    pub recovery: RecoverySettings,
}

impl RollbackConfig {
    /// Check names and references, and resolve paths against `base_dir` (guardian.toml's folder).
    pub fn resolve(self, base_dir: &Path) -> Result<RollbackSettings> {
        let mut names = BTreeSet::new();
        for entry in &self.configs {
            validate_config_name(&entry.name)?;
            ensure!(
                entry.name != VERSIONS_CONFIG_NAME,
                "[[rollback.configs]] name {VERSIONS_CONFIG_NAME:?} is reserved for the version \
                 history file"
            );
            ensure!(
                names.insert(entry.name.as_str()),
                "[[rollback.configs]] name {:?} is used twice",
                entry.name
            );
        }
        for (contract, entry) in &self.contracts {
            ensure!(!entry.keys.is_empty(), "[rollback.contracts.{contract}] lists no keys");
            for key in &entry.keys {
                if !names.contains(key.config.as_str()) {
                    bail!(
                        "[rollback.contracts.{contract}] names config {:?}, which is not a \
                         [[rollback.configs]] entry (known: {})",
                        key.config,
                        names.iter().copied().collect::<Vec<_>>().join(", ")
                    );
                }
                ensure!(
                    key.pointer.starts_with('/'),
                    "[rollback.contracts.{contract}] pointer {:?} must be a JSON pointer \
                     starting with '/' (e.g. /contracts/vault/address)",
                    key.pointer
                );
            }
            if let Some(call) = &entry.health_call {
                ensure!(
                    guardian_core::proposal::no_arg_calldata(call).is_ok(),
                    "[rollback.contracts.{contract}] health_call {call:?} must be the signature of \
                     a view function without arguments, written like solvent()"
                );
            }
        }
        let paths = [
            ("backup_dir", &self.backup_dir),
            ("versions", &self.versions),
            ("ledger", &self.ledger),
        ]
        .into_iter()
        .map(|(key, path)| (format!("[rollback] {key}"), path))
        .chain(
            self.configs
                .iter()
                .map(|c| (format!("[[rollback.configs]] {:?} path", c.name), &c.path)),
        );
        for (key, path) in paths {
            ensure!(
                !path.components().any(|c| c == std::path::Component::ParentDir),
                "{key} {} goes up with `..`: write it as an absolute path, or one below the \
                 config's folder, so what guardian writes does not depend on where guardian.toml \
                 is copied",
                path.display()
            );
        }
        let recovery = RecoverySettings {
            restart: self.restart,
            health: self.health,
            verify: self.verify,
            base_dir: base_dir.to_path_buf(),
        };
        recovery.check(&names)?;
        Ok(RollbackSettings {
            backup_dir: base_dir.join(self.backup_dir),
            versions_path: base_dir.join(self.versions),
            ledger_path: base_dir.join(self.ledger),
            keep_undo_for: self.keep_undo_for,
            configs: self
                .configs
                .into_iter()
                .map(|entry| ManagedConfig { name: entry.name, path: base_dir.join(entry.path) })
                .collect(),
            contracts: self.contracts,
            recovery,
        })
    }
}

impl RollbackSettings {
    /// Read `[rollback]` from a guardian.toml, ignoring every other table.
    pub fn load(guardian_toml: &Path) -> Result<Self> {
        #[derive(Deserialize)]
        struct Root {
            rollback: Option<RollbackConfig>,
        }
        let text = std::fs::read_to_string(guardian_toml)
            .wrap_err_with(|| format!("reading {}", guardian_toml.display()))?;
        // toml's error names the line and column and quotes the offending line.
        let root: Root = toml::from_str(&text).wrap_err_with(|| {
            format!("{} is not a valid guardian config", guardian_toml.display())
        })?;
        let Some(rollback) = root.rollback else {
            bail!(
                "{} has no [rollback] table: add one naming the configs guardian manages \
                 (see config/guardian.toml in the repository)",
                guardian_toml.display()
            );
        };
        let base = guardian_toml.parent().unwrap_or(Path::new("."));
        rollback.resolve(base).wrap_err_with(|| format!("in {}", guardian_toml.display()))
    }

    /// The managed config called `name`.
    pub fn config(&self, name: &str) -> Result<&ManagedConfig> {
        self.configs.iter().find(|c| c.name == name).ok_or_else(|| {
            eyre::eyre!(
                "no managed config named {name:?} (known: {})",
                self.configs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// The rollback entry of `contract`.
    pub fn contract(&self, contract: &str) -> Result<&ContractRollback> {
        self.contracts.get(contract).ok_or_else(|| {
            eyre::eyre!(
                "contract {contract:?} has no [rollback.contracts.{contract}] entry (known: {})",
                self.contracts.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// Every file `backup create` copies: the managed configs and the version history.
    pub fn backed_up_files(&self) -> Vec<ManagedConfig> {
        let mut files = self.configs.clone();
        files.push(ManagedConfig {
            name: VERSIONS_CONFIG_NAME.to_owned(),
            path: self.versions_path.clone(),
        });
        files
    }

    /// The advisory lock file serialising every write guardian makes to managed files.
    pub fn lock_path(&self) -> PathBuf {
        self.backup_dir.join(".guardian.lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[chain]
rpc_url = "http://127.0.0.1:8545"

[rollback]
backup_dir = "old-backups"

[[rollback.configs]]
name = "smart-accounts-config"
path = "smart-accounts-config.json"

[[rollback.configs]]
name = "monitoring-config"
path = "monitoring-config.json"

[rollback.contracts.vault]
health_call = "solvent()"
keys = [
  { config = "smart-accounts-config", pointer = "/contracts/vault/address" },
  { config = "monitoring-config", pointer = "/watch/0/address" },
]
"#;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("guardian.toml");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    #[test]
    fn loads_the_rollback_table_and_ignores_the_rest() {
        let (dir, path) = write(EXAMPLE);
        let settings = RollbackSettings::load(&path).expect("loads");
        assert_eq!(settings.backup_dir, dir.path().join("old-backups"));
        assert_eq!(settings.versions_path, dir.path().join("contract-versions.json"));
        assert_eq!(settings.ledger_path, dir.path().join("guardian.sqlite"));
        assert_eq!(settings.keep_undo_for, DEFAULT_KEEP_UNDO_FOR);
        assert_eq!(
            settings.config("monitoring-config").expect("known").path,
            dir.path().join("monitoring-config.json")
        );
        let vault = settings.contract("vault").expect("vault");
        assert_eq!(vault.keys.len(), 2);
        assert_eq!(vault.health_call.as_deref(), Some("solvent()"));
        let names: Vec<_> = settings.backed_up_files().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["smart-accounts-config", "monitoring-config", "contract-versions"]);
        assert!(settings.config("nope").is_err());
    }

    #[test]
    fn unknown_keys_are_refused_with_file_and_line() {
        let (_dir, path) = write(&EXAMPLE.replace("backup_dir", "backup_folder"));
        let err = format!("{:#}", RollbackSettings::load(&path).expect_err("unknown field"));
        assert!(err.contains("guardian.toml"), "{err}");
        assert!(err.contains("backup_folder"), "{err}");
        assert!(err.contains("line 6"), "{err}");
    }

    #[test]
    fn keep_undo_for_is_a_period_checked_with_file_and_line() {
        let (_dir, path) =
            write(&EXAMPLE.replace("backup_dir = \"old-backups\"", "keep_undo_for = \"36h\""));
        let settings = RollbackSettings::load(&path).expect("loads");
        assert_eq!(settings.keep_undo_for.as_seconds(), 36 * 3_600);
        let (_dir, path) =
            write(&EXAMPLE.replace("backup_dir = \"old-backups\"", "keep_undo_for = \"a week\""));
        let err = format!("{:#}", RollbackSettings::load(&path).expect_err("bad period"));
        assert!(err.contains("line 6") && err.contains("e.g. \"7d\""), "{err}");
    }

    #[test]
    fn dangling_references_are_refused() {
        let (_dir, path) = write(
            &EXAMPLE.replace("{ config = \"monitoring-config\"", "{ config = \"monitoring\""),
        );
        let err = format!("{:#}", RollbackSettings::load(&path).expect_err("dangling"));
        assert!(err.contains("\"monitoring\""), "{err}");
        assert!(err.contains("monitoring-config"), "{err}");

        let (_dir, path) = write(&EXAMPLE.replace("/watch/0/address", "watch.0.address"));
        let err = format!("{:#}", RollbackSettings::load(&path).expect_err("pointer"));
        assert!(err.contains("JSON pointer"), "{err}");

        let (_dir, path) =
            write(&EXAMPLE.replace("monitoring-config\"\npath", "smart-accounts-config\"\npath"));
        assert!(RollbackSettings::load(&path).is_err());

        let (_dir, path) = write("[chain]\nrpc_url = \"x\"\n");
        let err = format!("{:#}", RollbackSettings::load(&path).expect_err("no table"));
        assert!(err.contains("no [rollback] table"), "{err}");

        for (from, to, says) in [
            ("health_call = \"solvent()\"", "health_call = \"is solvent()\"", "signature"),
            ("health_call = \"solvent()\"", "health_call = \"()\"", "signature"),
            (
                "path = \"monitoring-config.json\"",
                "path = \"../../etc/monitoring.json\"",
                "goes up",
            ),
            ("backup_dir = \"old-backups\"", "backup_dir = \"a/../../b\"", "goes up"),
        ] {
            let (_dir, path) = write(&EXAMPLE.replace(from, to));
            let err = format!("{:#}", RollbackSettings::load(&path).expect_err(to));
            assert!(err.contains(says), "{to}: {err}");
        }
    }
}
