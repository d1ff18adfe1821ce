//! Rolling a contract's config keys back to a previous, verified deployment.
//!
//! Two steps, so a human (or the daemon) sees what will happen before it happens:
//!
//! 1. [`Rollback::plan`] reads the configs and the version history, picks the target
//!    ([`VersionSelector`]), checks it on chain (code present, runtime code hash equal to the
//!    recorded one, optional health view returning true) and computes the new file contents and
//!    their diff. It writes nothing.
//! 2. [`Rollback::apply`] takes the plan under the [`WriteLock`], refuses if any config changed
//!    since it was planned, backs the configs up under one stamp, rewrites each atomically and
//!    records the change, all of it or none of it ([`crate::journal`]). It also opens an
//!    incident in the ledger, so prune keeps every backup from then on until it is closed.
//!
//! [`Rollback::run`] does both under one lock; it is what the daemon calls after a verified
//! pause when the contract's policy is rollback, and what `guardian rollback` uses.

use std::path::PathBuf;

use alloy::{
    primitives::{Address, B256, Bytes, keccak256},
    providers::Provider,
    rpc::types::{TransactionInput, TransactionRequest},
};
use eyre::{Result, WrapErr};
use guardian_core::backup::{
    ContractVersion, KeyValue, RepointPlan, VersionSelector, plan_repoint,
};
use serde::Serialize;

use crate::{
    atomic_file::test_pause_before_write,
    backup::{BackupSet, Backups, sha256, sha256_hex},
    config::{ManagedConfig, RollbackSettings},
    journal::{Operation, recover_interrupted},
    ledger::{
        BackupLedger, ChangeKind, ChangeRecord, IncidentRecord, OperationKind, PendingRecords,
    },
    lock::WriteLock,
    managed_config::{locate_string, read_config, rewrite_strings, unified_diff},
    refusal::{RefusalKind, Refused},
    version::VersionBook,
};

/// What the chain says about the rollback target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetCheck {
    /// Chain id of the node asked.
    pub chain_id: u64,
    /// The target's address.
    pub address: Address,
    /// keccak256 of its runtime code on chain (equal to the recorded hash, or planning fails).
    pub code_hash: B256,
    /// The health view called, if configured (it returned true, or planning fails).
    pub health_call: Option<String>,
}

/// One managed config a rollback rewrites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedFile {
    /// The managed config's name.
    pub config: String,
    /// Its path.
    pub path: PathBuf,
    /// sha256 of the content the plan was computed from.
    pub before_sha256: String,
    /// Unified diff of the change.
    pub diff: String,
    #[serde(skip)]
    after: String,
}

/// A checked rollback, ready to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollbackPlan {
    /// Which keys change, from which version to which.
    pub repoint: RepointPlan,
    /// The on-chain check of the target.
    pub target: TargetCheck,
    /// The files that change (none when every key already points at the target).
    pub files: Vec<PlannedFile>,
}

impl RollbackPlan {
    /// Whether applying it would change nothing.
    pub fn is_noop(&self) -> bool {
        self.files.is_empty()
    }

    /// All files' diffs.
    pub fn diff(&self) -> String {
        self.files.iter().map(|f| f.diff.as_str()).collect()
    }

    /// One line: the contract, from which version to which, how many keys and files.
    pub fn summary(&self) -> String {
        let r = &self.repoint;
        format!(
            "{}: {} ({}) -> {} ({}), {} key(s) in {} file(s)",
            r.contract,
            r.from.label,
            r.from.address,
            r.to.label,
            r.to.address,
            r.changes.len(),
            self.files.len()
        )
    }
}

/// What an applied rollback did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollbackOutcome {
    /// The plan applied.
    pub plan: RollbackPlan,
    /// The backup of the configs as they were (restore its stamp to undo); `None` when the plan
    /// changed nothing.
    pub backup: Option<BackupSet>,
}

/// Config rollbacks over the files `settings` manages, recorded in `ledger`.
pub struct Rollback<'a> {
    settings: &'a RollbackSettings,
    ledger: &'a dyn BackupLedger,
}

impl std::fmt::Debug for Rollback<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollback").field("settings", self.settings).finish_non_exhaustive()
    }
}

impl<'a> Rollback<'a> {
    /// Rollbacks of the configs `settings` manages.
    pub fn new(settings: &'a RollbackSettings, ledger: &'a dyn BackupLedger) -> Self {
        Self { settings, ledger }
    }

    /// Plan a rollback of `contract` to `to` and verify the target on chain. Writes nothing.
    pub async fn plan<P: Provider>(
        &self,
        provider: &P,
        contract: &str,
        to: &VersionSelector,
    ) -> Result<RollbackPlan> {
        let entry = self.settings.contract(contract)?;
        let book = VersionBook::load(&self.settings.versions_path)?;
        let history = book.history(contract)?;

        let mut texts: Vec<(ManagedConfig, String)> = Vec::new();
        let mut keys = Vec::with_capacity(entry.keys.len());
        for key in &entry.keys {
            let config = self.settings.config(&key.config)?;
            if !texts.iter().any(|(c, _)| c.name == config.name) {
                texts.push((config.clone(), read_config(&config.path)?));
            }
            let text = texts
                .iter()
                .find(|(c, _)| c.name == config.name)
                .map(|(_, t)| t.as_str())
                .unwrap_or_default();
            let located = locate_string(text, &key.pointer, &config.path)?;
            keys.push(KeyValue { key: key.clone(), value: located.value });
        }
        let repoint = plan_repoint(contract, history, &keys, to)?;
        let target =
            check_target(provider, contract, &repoint.to, entry.health_call.as_deref()).await?;

        let mut files = Vec::new();
        for (config, before) in &texts {
            let edits: Vec<(String, String)> = repoint
                .changes
                .iter()
                .filter(|c| c.key.config == config.name)
                .map(|c| (c.key.pointer.clone(), c.to.clone()))
                .collect();
            if edits.is_empty() {
                continue;
            }
            let after = rewrite_strings(before, &edits, &config.path)?;
            files.push(PlannedFile {
                config: config.name.clone(),
                path: config.path.clone(),
                before_sha256: sha256_hex(&sha256(before.as_bytes())),
                diff: unified_diff(&config.path.display().to_string(), before, &after),
                after,
            });
        }
        Ok(RollbackPlan { repoint, target, files })
    }

    /// Apply a plan: refuse if a config changed since planning, back the configs up, rewrite
    /// them, record the rollback and open an incident, all together or not at all.
    pub fn apply(&self, lock: &WriteLock, plan: &RollbackPlan) -> Result<RollbackOutcome> {
        recover_interrupted(lock, self.settings, self.ledger)?;
        if plan.is_noop() {
            tracing::info!(contract = %plan.repoint.contract, to = %plan.repoint.to.label,
                "every configured key already points at the target; nothing to write");
            return Ok(RollbackOutcome { plan: plan.clone(), backup: None });
        }
        for file in &plan.files {
            let now = sha256_hex(&sha256(read_config(&file.path)?.as_bytes()));
            if now != file.before_sha256 {
                return Err(Refused::new(
                    RefusalKind::ChangedSincePlanned,
                    format!(
                        "{} changed since the rollback was planned (sha256 was {}, is {now}); plan again",
                        file.path.display(),
                        file.before_sha256
                    ),
                )
                .into());
            }
        }
        let configs: Vec<ManagedConfig> = plan
            .files
            .iter()
            .map(|f| ManagedConfig { name: f.config.clone(), path: f.path.clone() })
            .collect();
        let contract = &plan.repoint.contract;
        let mut op = Operation::new(OperationKind::Rollback, plan.summary());
        let backups = Backups::new(self.settings, self.ledger);
        let undo =
            backups.stage_backup(&mut op, &configs, &format!("before rollback of {contract}"))?;
        test_pause_before_write();
        for file in &plan.files {
            let copy = undo.copy_of(&file.config);
            op.write(
                file.path.clone(),
                file.after.clone().into_bytes(),
                copy.as_ref().map(|(_, sha)| *sha),
                copy.map(|(path, _)| path),
            );
        }
        let stamp = undo.set.stamp;
        let change = ChangeRecord {
            kind: ChangeKind::Rollback,
            summary: plan.summary(),
            undo_stamp: stamp.to_string(),
            detail: serde_json::to_value(plan)?,
        };
        // Keyed on what the ledger records: the incident starts at the undo backup's stamp.
        let incident = IncidentRecord {
            reason: format!("rollback of {}", plan.summary()),
            opened_at: stamp.time(),
        };
        op.commit(
            lock,
            self.settings,
            self.ledger,
            PendingRecords {
                backups: undo.records,
                change: Some(change),
                incident: Some(incident),
            },
        )?;
        tracing::info!(summary = %plan.summary(), undo = %stamp, "rollback applied");
        Ok(RollbackOutcome { plan: plan.clone(), backup: Some(undo.set) })
    }

    /// Take the write lock, plan and apply: the daemon's entry point after a verified pause.
    pub async fn run<P: Provider>(
        &self,
        provider: &P,
        contract: &str,
        to: &VersionSelector,
    ) -> Result<RollbackOutcome> {
        let lock = WriteLock::acquire_async(&self.settings.lock_path()).await?;
        let plan = self.plan(provider, contract, to).await?;
        self.apply(&lock, &plan)
    }
}

/// Whether a health view's return data is the ABI encoding of `true`.
pub(crate) fn returns_true(returned: &[u8]) -> bool {
    returned.len() == 32 && returned[31] == 1 && returned[..31].iter().all(|b| *b == 0)
}

/// Check that `version` is deployed as recorded: code present, runtime code hash equal, and the
/// health view (if any) returning true.
pub async fn check_target<P: Provider>(
    provider: &P,
    contract: &str,
    version: &ContractVersion,
    health_call: Option<&str>,
) -> Result<TargetCheck> {
    let chain_id = provider.get_chain_id().await.wrap_err("asking the node for its chain id")?;
    let address = version.address;
    let label = &version.label;
    let code = provider
        .get_code_at(address)
        .await
        .wrap_err_with(|| format!("reading the code of {contract} {label} at {address}"))?;
    let unverified = |message: String| -> eyre::Report {
        Refused::new(RefusalKind::UnverifiedTarget, message).into()
    };
    if code.is_empty() {
        return Err(unverified(format!(
            "refusing to roll {contract} back to {label}: there is no code at {address} on chain \
             {chain_id} (wrong chain, or the version was never deployed there)"
        )));
    }
    let code_hash = keccak256(&code);
    if code_hash != version.code_hash {
        return Err(unverified(format!(
            "refusing to roll {contract} back to {label}: the code at {address} on chain {chain_id} \
             hashes to {code_hash}, but the version history records {} (a different contract, or \
             the history is wrong)",
            version.code_hash
        )));
    }
    if let Some(signature) = health_call {
        let selector = &keccak256(signature.as_bytes())[..4];
        let request = TransactionRequest::default()
            .to(address)
            .input(TransactionInput::new(Bytes::copy_from_slice(selector)));
        let returned = match provider.call(request).await {
            Ok(returned) => returned,
            // The node answered: the view reverted. Any other error is a failure to look.
            Err(error) if error.as_error_resp().is_some() => {
                return Err(unverified(format!(
                    "refusing to roll {contract} back to {label}: health check {signature} on {address} reverted: {error}"
                )));
            }
            Err(error) => {
                return Err(eyre::Report::new(error).wrap_err(format!(
                    "calling the health check {signature} of {contract} {label} at {address}"
                )));
            }
        };
        let healthy = returns_true(&returned);
        if !healthy {
            return Err(unverified(format!(
                "refusing to roll {contract} back to {label}: health check {signature} on \
                 {address} returned {returned}, not true"
            )));
        }
    }
    Ok(TargetCheck { chain_id, address, code_hash, health_call: health_call.map(str::to_owned) })
}
