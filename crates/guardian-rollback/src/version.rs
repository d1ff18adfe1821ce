//! The contract version history: for each watched contract, its deployments newest first.
//!
//! It lives in a guardian-managed JSON file (`[rollback] versions`, default
//! `config/contract-versions.json`) rather than in guardian.toml, because `guardian versions add`
//! writes it: operators keep guardian.toml by hand, guardian keeps this file. It is backed up
//! (as `contract-versions`) before every change and rewritten atomically under the write lock.
//!
//! ```json
//! { "contracts": { "vault": [
//!     { "label": "v2", "address": "0x…", "deployed": { "block": 4 }, "code_hash": "0x…" },
//!     { "label": "v1", "address": "0x…", "deployed": { "date": "2026-01-20" }, "code_hash": "0x…" }
//! ] } }
//! ```

use std::{collections::BTreeMap, path::Path};

use eyre::{Result, WrapErr, eyre};
use guardian_core::backup::{AddressKey, ContractVersion, record_version, validate_history};
use serde::{Deserialize, Serialize};

use crate::{
    atomic_file::read_no_follow,
    backup::{BackupSet, Backups},
    config::{ManagedConfig, RollbackSettings, VERSIONS_CONFIG_NAME},
    journal::{Operation, recover_interrupted},
    ledger::{BackupLedger, OperationKind, PendingRecords},
    lock::WriteLock,
    managed_config::{locate_string, read_config},
};

/// Every watched contract's version history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionBook {
    /// Contract name → versions, newest first.
    #[serde(default)]
    pub contracts: BTreeMap<String, Vec<ContractVersion>>,
}

impl VersionBook {
    /// Read and check the file; a missing file is an empty book.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = match read_no_follow(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(err) => return Err(err).wrap_err_with(|| format!("reading {}", path.display())),
        };
        let book: Self = serde_json::from_slice(&bytes)
            .wrap_err_with(|| format!("{} is not a valid version history", path.display()))?;
        for (contract, history) in &book.contracts {
            validate_history(contract, history)
                .wrap_err_with(|| format!("in {}", path.display()))?;
        }
        Ok(book)
    }

    /// The history of `contract`, newest first.
    pub fn history(&self, contract: &str) -> Result<&[ContractVersion]> {
        self.contracts.get(contract).map(Vec::as_slice).ok_or_else(|| {
            eyre!(
                "no versions recorded for {contract:?}: record its deployments with \
                 `guardian versions add {contract} ...`"
            )
        })
    }

    /// Pretty JSON with a trailing newline, as written to disk.
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(self)? + "\n")
    }
}

/// Record `version` as the newest deployment of `contract`: back up the history file (when it
/// exists) and rewrite it, both or neither. Returns the backup taken.
pub fn record_deployment(
    settings: &RollbackSettings,
    ledger: &dyn BackupLedger,
    lock: &WriteLock,
    contract: &str,
    version: ContractVersion,
) -> Result<Option<BackupSet>> {
    recover_interrupted(lock, settings, ledger)?;
    settings.contract(contract)?;
    let path = &settings.versions_path;
    let mut book = VersionBook::load(path)?;
    let history = book.contracts.get(contract).map(Vec::as_slice).unwrap_or_default();
    let updated = record_version(contract, history, version)?;
    let label = updated.first().map(|v| v.label.clone()).unwrap_or_default();
    let mut op =
        Operation::new(OperationKind::VersionsAdd, format!("versions add {contract} {label}"));
    let backup = if std::fs::symlink_metadata(path).is_ok() {
        let file = ManagedConfig { name: VERSIONS_CONFIG_NAME.to_owned(), path: path.clone() };
        Some(Backups::new(settings, ledger).stage_backup(
            &mut op,
            &[file],
            &format!("before versions add {contract}"),
        )?)
    } else {
        None
    };
    book.contracts.insert(contract.to_owned(), updated);
    let copy = backup.as_ref().and_then(|b| b.copy_of(VERSIONS_CONFIG_NAME));
    op.write(
        path.clone(),
        book.to_json()?.into_bytes(),
        copy.as_ref().map(|(_, sha)| *sha),
        copy.map(|(path, _)| path),
    );
    let (set, records) = match backup {
        Some(staged) => (Some(staged.set), staged.records),
        None => (None, Vec::new()),
    };
    op.commit(
        lock,
        settings,
        ledger,
        PendingRecords { backups: records, ..PendingRecords::default() },
    )?;
    tracing::info!(%contract, file = %path.display(), "version recorded");
    Ok(set)
}

/// One version and the configured keys that point at it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionRow {
    /// The version.
    #[serde(flatten)]
    pub version: ContractVersion,
    /// Keys holding its address.
    pub pointed_at_by: Vec<AddressKey>,
}

/// `guardian versions <contract>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionReport {
    /// The contract.
    pub contract: String,
    /// Newest first.
    pub versions: Vec<VersionRow>,
    /// Keys holding something that is not a recorded version (or unreadable), with what.
    pub unrecorded: Vec<(AddressKey, String)>,
}

/// The history of `contract` with where each configured key points now.
pub fn describe(settings: &RollbackSettings, contract: &str) -> Result<VersionReport> {
    let entry = settings.contract(contract)?;
    let book = VersionBook::load(&settings.versions_path)?;
    let history = book.contracts.get(contract).cloned().unwrap_or_default();
    let mut versions: Vec<VersionRow> = history
        .into_iter()
        .map(|version| VersionRow { version, pointed_at_by: Vec::new() })
        .collect();
    let mut unrecorded = Vec::new();
    for key in &entry.keys {
        let config = settings.config(&key.config)?;
        let value = read_config(&config.path)
            .and_then(|text| locate_string(&text, &key.pointer, &config.path))
            .map(|located| located.value);
        match value {
            Ok(value) => {
                let row = value.parse::<alloy::primitives::Address>().ok().and_then(|address| {
                    versions.iter_mut().find(|row| row.version.address == address)
                });
                match row {
                    Some(row) => row.pointed_at_by.push(key.clone()),
                    None => unrecorded.push((key.clone(), value)),
                }
            }
            Err(err) => unrecorded.push((key.clone(), format!("unreadable: {err:#}"))),
        }
    }
    Ok(VersionReport { contract: contract.to_owned(), versions, unrecorded })
}
