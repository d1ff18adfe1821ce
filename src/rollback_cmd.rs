//! `guardian versions`, `guardian rollback` and `guardian backup`: argument parsing and printing.
//! The work happens in `guardian-rollback`.

#![allow(clippy::print_stdout, reason = "these commands report to the operator's terminal")]

use std::{path::PathBuf, time::Duration};

use alloy::{
    primitives::{Address, B256, keccak256},
    providers::{DynProvider, Provider},
};
use clap::{ArgGroup, Args, Subcommand};
use eyre::{Result, WrapErr, bail, ensure};
use guardian_core::backup::{ContractVersion, Deployed, KeepReason, VersionSelector};
use guardian_rollback::{
    Backups, RecoveryReport, Rollback, RollbackSettings, SqliteLedger, WriteLock,
    backup::default_backup_files,
    journal_pending, recover_interrupted,
    version::{describe, record_deployment},
};
use serde::Serialize;

/// Where guardian's config and database are. Global, so they may follow the subcommand
/// (`guardian backup restore STAMP --config FILE`).
#[derive(Debug, Args)]
pub(crate) struct Files {
    /// guardian's config file (guardian.toml); its [rollback] table names the managed configs
    /// (and, for rollback and versions add, its [[rpc]] endpoints are used).
    #[arg(
        long,
        global = true,
        alias = "config-file",
        env = "GUARDIAN_CONFIG",
        default_value = "config/guardian.toml"
    )]
    config: PathBuf,
    /// The guardian database holding the backup ledger (default: [rollback] ledger). It must
    /// exist: `guardian run` creates it.
    #[arg(long, global = true, env = "GUARDIAN_DB")]
    db: Option<PathBuf>,
}

impl Files {
    /// The settings and the ledger, which must exist (a mistyped --db would otherwise be an
    /// empty ledger that knows no backup).
    fn open(&self) -> Result<(RollbackSettings, SqliteLedger)> {
        self.open_with(false)
    }

    fn open_with(&self, create_ledger: bool) -> Result<(RollbackSettings, SqliteLedger)> {
        let mut settings = RollbackSettings::load(&self.config)?;
        let from = match &self.db {
            Some(db) => {
                settings.ledger_path.clone_from(db);
                "--db / GUARDIAN_DB".to_owned()
            }
            None => format!("[rollback] ledger in {}", self.config.display()),
        };
        let ledger = if create_ledger {
            SqliteLedger::open(&settings.ledger_path)?
        } else {
            SqliteLedger::open_existing(&settings.ledger_path)
                .wrap_err_with(|| format!("the ledger named by {from}"))?
        };
        Ok((settings, ledger))
    }
}

/// How often providers over the endpoint pool poll.
const POLL: Duration = Duration::from_secs(1);

/// A provider over every configured `[[rpc]]` endpoint (bearer tokens included), failing over
/// like the daemon and refusing an endpoint whose chain id is not `[chain] id`.
fn chain(files: &Files) -> Result<DynProvider> {
    // The chain's secrets only: the webhook's URL is the daemon's business.
    let config =
        guardian_config::Config::load_needing(&files.config, guardian_config::Secrets::Rpc)?;
    Ok(guardian_operator::rpc_pool(&config)?.failover_provider(POLL))
}

/// Finish or undo what a killed guardian left half-done, and say so. Commands that write take
/// the lock for it; read-only ones only when a journal is waiting.
fn recover_first(
    settings: &RollbackSettings,
    ledger: &SqliteLedger,
    writes: bool,
    json: bool,
) -> Result<()> {
    if !writes && !journal_pending(settings) {
        return Ok(());
    }
    let lock = WriteLock::acquire(&settings.lock_path())?;
    print_recovery(recover_interrupted(&lock, settings, ledger)?.as_ref(), json);
    Ok(())
}

/// Under a lock the caller holds: recover and say so.
fn recover_locked(
    lock: &WriteLock,
    settings: &RollbackSettings,
    ledger: &SqliteLedger,
    json: bool,
) -> Result<()> {
    print_recovery(recover_interrupted(lock, settings, ledger)?.as_ref(), json);
    Ok(())
}

/// What recovery did, on stdout; with `--json` on stderr, so stdout stays one JSON document.
fn print_recovery(report: Option<&RecoveryReport>, json: bool) {
    if let Some(report) = report {
        for line in report.to_string().lines() {
            if json {
                #[allow(clippy::print_stderr, reason = "stdout holds the JSON answer")]
                {
                    eprintln!("{line}");
                }
            } else {
                outln!("{line}");
            }
        }
    }
}

/// `guardian versions`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct VersionsArgs {
    #[command(subcommand)]
    command: Option<VersionsCommand>,
    /// The watched contract (as named in [rollback.contracts]).
    contract: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    files: Files,
}

#[derive(Debug, Subcommand)]
enum VersionsCommand {
    /// Record a new deployment as the contract's newest version.
    ///
    /// Backs up the version history file first, then rewrites it atomically. Without
    /// --code-hash, the runtime code hash is read from the chain through the config's [[rpc]]
    /// endpoints (chain id checked), which also proves there is code at the address.
    #[command(group(ArgGroup::new("deployed").required(true).args(["block", "date"])))]
    Add(AddArgs),
}

#[derive(Debug, Args)]
struct AddArgs {
    /// The watched contract.
    contract: String,
    /// The operators' name for this version (v3, 2026-02-release, ...).
    #[arg(long)]
    label: String,
    /// Where it is deployed.
    #[arg(long)]
    address: Address,
    /// The block it was deployed in.
    #[arg(long)]
    block: Option<u64>,
    /// The day it was deployed (YYYY-MM-DD, UTC).
    #[arg(long)]
    date: Option<jiff::civil::Date>,
    /// keccak256 of its runtime code (default: read from the chain, over [[rpc]]).
    #[arg(long)]
    code_hash: Option<B256>,
    /// Print what was recorded as JSON.
    #[arg(long)]
    json: bool,
}

/// `guardian rollback`.
#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    /// The watched contract whose config keys to repoint.
    contract: String,
    /// The version to go to: a label or an address from its history (default: the version just
    /// before the one the configs point at now).
    #[arg(long)]
    to: Option<String>,
    /// Verify and show the diff, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the plan (and outcome) as JSON.
    #[arg(long)]
    json: bool,
    /// Write without asking (scripts). Without it the diff is shown and `yes` is asked for.
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    files: Files,
}

/// `guardian backup`.
#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    #[command(subcommand)]
    command: BackupCommand,
    #[command(flatten)]
    files: Files,
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Back up the managed configs (and the version history) under one new timestamp.
    Create {
        /// Only this managed config (repeatable).
        #[arg(long = "only", value_name = "NAME")]
        only: Vec<String>,
        /// Why, for the ledger.
        #[arg(long, default_value = "manual")]
        reason: String,
        /// Create the ledger database if it does not exist yet (a fresh host, before `guardian
        /// run` has created it).
        #[arg(long)]
        new_ledger: bool,
        /// Print the backup set as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List backups, oldest first.
    List {
        /// Only backups of this managed config.
        #[arg(long, value_name = "NAME")]
        only: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the backups taken at a timestamp: checksum status and what restoring would change.
    Show {
        /// The timestamp, exactly as in the file name (20260126T101500Z or 20260126T101500Z-1).
        timestamp: String,
        /// Only this managed config.
        #[arg(long, value_name = "NAME")]
        only: Option<String>,
        /// Print the checks and the restore preview as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check every backup (or those of one timestamp) against its sha256 sidecar and the ledger.
    ///
    /// Reports every bad one (corrupted, unverifiable, unreadable, a symbolic link, or without
    /// a ledger row) and exits non-zero at the end if there was any.
    Verify {
        /// Only this timestamp.
        timestamp: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete whole backup sets beyond the newest N of each config.
    ///
    /// A set (every file sharing a timestamp) is deleted entirely or not at all. Never deleted:
    /// a set any of whose files is among the newest N of its config, a set taken during an open
    /// incident (`backup incidents`), an undo backup younger than [rollback] keep_undo_for.
    Prune {
        /// How many of each config's newest backups to keep.
        #[arg(long)]
        keep: usize,
        /// Only say what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// With --keep 0, delete without asking.
        #[arg(long)]
        yes: bool,
        /// Print what was (or would be) deleted and kept as JSON (--keep 0 needs --yes then).
        #[arg(long)]
        json: bool,
    },
    /// Restore the configs backed up at a timestamp.
    ///
    /// Verifies the checksums first (a corrupted or edited backup, a symbolic link, or one the
    /// ledger has no record of is refused), backs up the current files under a new timestamp
    /// (printed: restore it to undo), then replaces every file, all of them or none. A timestamp
    /// that does not exist lists the nearest ones.
    Restore {
        /// The timestamp, exactly as in the file name (20260126T101500Z or 20260126T101500Z-1).
        timestamp: String,
        /// Only this managed config (default: every config backed up at that timestamp).
        #[arg(long, value_name = "NAME")]
        only: Option<String>,
        /// Show what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Write without asking (scripts). Without it the diff is shown and `yes` is asked for.
        #[arg(long)]
        yes: bool,
        /// Restore a backup the ledger has no record of (its sidecar must still match).
        #[arg(long)]
        force: bool,
        /// Print the outcome as JSON (needs --yes or --dry-run: nothing is asked).
        #[arg(long)]
        json: bool,
    },
    /// List the open incidents (opened by each rollback) whose backups prune keeps, or close
    /// one.
    Incidents {
        /// Close the incident with this id: prune may delete its backups again.
        #[arg(long, value_name = "ID")]
        close: Option<i64>,
        /// Print the open incidents as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn print_json(value: &impl Serialize) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub(crate) async fn versions(args: VersionsArgs) -> Result<()> {
    if let Some(VersionsCommand::Add(add)) = args.command {
        return versions_add(add, &args.files).await;
    }
    let Some(contract) = args.contract else {
        bail!(
            "name a contract: guardian versions <CONTRACT>, or record one with guardian versions add"
        );
    };
    let (settings, ledger) = args.files.open()?;
    recover_first(&settings, &ledger, false, args.json)?;
    let report = describe(&settings, &contract)?;
    if args.json {
        return print_json(&report);
    }
    outln!("{contract}: {} recorded version(s), newest first", report.versions.len());
    for row in &report.versions {
        let v = &row.version;
        let current = if row.pointed_at_by.is_empty() {
            String::new()
        } else {
            let keys: Vec<String> = row.pointed_at_by.iter().map(ToString::to_string).collect();
            format!("  <- {}", keys.join(", "))
        };
        outln!("  {:<12} {}  {:<16} code {}{current}", v.label, v.address, v.deployed, v.code_hash);
    }
    for (key, value) in &report.unrecorded {
        outln!("  warning: {key} holds {value}, not a recorded version");
    }
    Ok(())
}

async fn versions_add(args: AddArgs, files: &Files) -> Result<()> {
    let (settings, ledger) = files.open()?;
    let deployed = match (args.block, args.date) {
        (Some(block), _) => Deployed::Block(block),
        (None, Some(date)) => Deployed::Date(date),
        (None, None) => bail!("give --block or --date"),
    };
    let code_hash = match args.code_hash {
        Some(hash) => hash,
        None => {
            let provider = chain(files)?;
            let code = provider.get_code_at(args.address).await.wrap_err_with(|| {
                format!("reading the code at {} over the [[rpc]] endpoints", args.address)
            })?;
            ensure!(
                !code.is_empty(),
                "there is no code at {} on the configured chain",
                args.address
            );
            keccak256(&code)
        }
    };
    let version = ContractVersion { label: args.label, address: args.address, deployed, code_hash };
    let lock = WriteLock::acquire(&settings.lock_path())?;
    recover_locked(&lock, &settings, &ledger, args.json)?;
    let backup = record_deployment(&settings, &ledger, &lock, &args.contract, version.clone())?;
    if args.json {
        return print_json(&Recorded {
            contract: &args.contract,
            version: &version,
            backup: backup.as_ref(),
        });
    }
    outln!(
        "recorded {} {} at {} (code {})",
        args.contract,
        version.label,
        version.address,
        version.code_hash
    );
    if let Some(backup) = backup {
        outln!("previous history backed up as {}", backup.stamp);
    }
    Ok(())
}

/// What `versions add --json` prints.
#[derive(Debug, Serialize)]
struct Recorded<'a> {
    contract: &'a str,
    version: &'a ContractVersion,
    /// The backup of the history taken first, when there was one.
    backup: Option<&'a guardian_rollback::backup::BackupSet>,
}

pub(crate) async fn rollback(args: RollbackArgs) -> Result<()> {
    let (settings, ledger) = args.files.open()?;
    let provider = chain(&args.files)?;
    recover_first(&settings, &ledger, !args.dry_run, args.json)?;
    let to = VersionSelector::from_arg(args.to.as_deref());
    let rollback = Rollback::new(&settings, &ledger);
    if args.json && !args.dry_run && !args.yes {
        bail!("--json cannot ask before writing: add --yes, or --dry-run to see the plan");
    }
    // With --yes nobody reads the plan first: plan under the lock, so nothing changes between
    // the check and the write. Interactively the lock is not held while the operator reads;
    // the plan is made again under the lock and must be the one they approved.
    let lock = if args.yes && !args.dry_run {
        Some(WriteLock::acquire(&settings.lock_path())?)
    } else {
        None
    };
    let plan = rollback.plan(&provider, &args.contract, &to).await?;
    if args.json {
        let Some(lock) = lock else { return print_json(&plan) };
        let outcome = rollback.apply(&lock, &plan)?;
        audit_rollback(&settings, &args.contract, &outcome)?;
        drop(lock);
        print_json(&outcome)?;
        return recover(&settings, &provider, &outcome, true).await;
    }
    // The operator sees what will change before anything is written.
    let r = &plan.repoint;
    outln!(
        "{}: {} ({}) -> {} ({})",
        r.contract,
        r.from.label,
        r.from.address,
        r.to.label,
        r.to.address
    );
    outln!(
        "verified on chain {}: code hash {}{}",
        plan.target.chain_id,
        plan.target.code_hash,
        plan.target.health_call.as_deref().map(|c| format!(", {c} == true")).unwrap_or_default()
    );
    for change in &r.changes {
        outln!("  {}: {} -> {}", change.key, change.from, change.to);
    }
    for key in &r.unchanged {
        outln!("  {key}: already at {}", r.to.label);
    }
    out!("{}", plan.diff());
    if args.dry_run {
        outln!("dry run: nothing written");
        return Ok(());
    }
    let (lock, plan) = match lock {
        Some(lock) => (lock, plan),
        None if plan.is_noop() => {
            outln!("nothing to change");
            return Ok(());
        }
        None => {
            if !crate::prompt::confirm("Write this rollback (a backup is taken first)?")? {
                return Err(refused!("not rolled back: nothing written"));
            }
            let lock = WriteLock::acquire(&settings.lock_path())?;
            let again = rollback.plan(&provider, &args.contract, &to).await?;
            ensure!(
                again == plan,
                "the configs or the version history changed while the plan was shown; nothing \
                 written: run guardian rollback again to see the new plan"
            );
            (lock, again)
        }
    };
    let outcome = rollback.apply(&lock, &plan)?;
    audit_rollback(&settings, &args.contract, &outcome)?;
    drop(lock);
    match &outcome.backup {
        None => outln!("nothing to change"),
        Some(backup) => outln!(
            "rolled back; previous configs saved as {} (undo: guardian backup restore {}); \
             an incident is open, so prune keeps every backup from now on (guardian backup \
             incidents)",
            backup.stamp,
            backup.stamp
        ),
    }
    recover(&settings, &provider, &outcome, false).await
}

/// The audit record of a rollback that wrote files.
fn audit_rollback(
    settings: &guardian_rollback::RollbackSettings,
    contract: &str,
    outcome: &guardian_rollback::RollbackOutcome,
) -> Result<()> {
    if outcome.backup.is_none() {
        return Ok(());
    }
    audit_change(
        settings,
        &format!("guardian rollback {contract}"),
        guardian_core::audit::Record::Rollback {
            incident: None,
            plan: outcome.plan.summary(),
            undo_stamp: outcome.backup.as_ref().map(|b| b.stamp.to_string()),
            error: None,
        },
    )
}

/// After a rollback that wrote files: the `[rollback]` restart hooks and recovery checks, as
/// the daemon runs them (nothing when nothing was written or nothing is configured); printed
/// unless `quiet`, and an error when one fails.
async fn recover(
    settings: &guardian_rollback::RollbackSettings,
    provider: &DynProvider,
    outcome: &guardian_rollback::RollbackOutcome,
    quiet: bool,
) -> Result<()> {
    let Some(backup) = &outcome.backup else { return Ok(()) };
    if settings.recovery.is_empty() {
        return Ok(());
    }
    let label = format!("rollback-{}", backup.stamp);
    let target = guardian_rollback::RecoveryTarget {
        configs: outcome.plan.files.iter().map(|f| f.config.clone()).collect(),
        address: Some(outcome.plan.target.address),
        health_call: outcome.plan.target.health_call.as_deref(),
        restart: true,
        from_block: provider.get_block_number().await?,
        label: &label,
        undo: Some(backup.stamp.to_string()),
    };
    print_checks(&guardian_rollback::run_recovery(settings, provider, &target).await, quiet)
}

pub(crate) async fn backup(args: BackupArgs) -> Result<()> {
    let new_ledger = matches!(args.command, BackupCommand::Create { new_ledger: true, .. });
    let (settings, ledger) = args.files.open_with(new_ledger)?;
    let writes = matches!(
        args.command,
        BackupCommand::Create { .. }
            | BackupCommand::Restore { dry_run: false, .. }
            | BackupCommand::Prune { dry_run: false, .. }
    );
    let json = match &args.command {
        BackupCommand::Create { json, .. }
        | BackupCommand::List { json, .. }
        | BackupCommand::Show { json, .. }
        | BackupCommand::Verify { json, .. }
        | BackupCommand::Prune { json, .. }
        | BackupCommand::Restore { json, .. }
        | BackupCommand::Incidents { json, .. } => *json,
    };
    recover_first(&settings, &ledger, writes, json)?;
    let backups = Backups::new(&settings, &ledger);
    match args.command {
        BackupCommand::Create { only, reason, json, .. } => {
            let files = if only.is_empty() {
                default_backup_files(&settings)
            } else {
                only.iter().map(|name| managed_file(&settings, name)).collect::<Result<_>>()?
            };
            let lock = WriteLock::acquire(&settings.lock_path())?;
            let set = backups.create(&lock, &files, &reason)?;
            audit_change(
                &settings,
                &format!("guardian backup create ({reason})"),
                guardian_core::audit::Record::BackupCreated {
                    stamp: set.stamp.to_string(),
                    configs: set.files.iter().map(|f| f.name.config.clone()).collect(),
                },
            )?;
            if json {
                return print_json(&set);
            }
            for file in &set.files {
                outln!("{}", file.path.display());
            }
            outln!("backup {} taken ({} file(s))", set.stamp, set.files.len());
        }
        BackupCommand::List { only, json } => {
            let list: Vec<_> = backups
                .list()?
                .into_iter()
                .filter(|e| only.as_ref().is_none_or(|c| &e.name.config == c))
                .collect();
            if json {
                return print_json(&list);
            }
            for entry in &list {
                outln!(
                    "{:<22} {:<28} {:>8} B  {}",
                    entry.name.stamp,
                    entry.name.config,
                    entry.bytes,
                    entry.file
                );
            }
            if list.is_empty() {
                outln!("no backups in {}", settings.backup_dir.display());
            }
        }
        BackupCommand::Show { timestamp, only, json } => {
            let checks = backups
                .at_stamp(&timestamp, only.as_deref())?
                .iter()
                .map(|entry| backups.verify(entry))
                .collect::<Result<Vec<_>>>()?;
            let preview = backups.preview_restore(&timestamp, only.as_deref());
            if json {
                return print_json(&serde_json::json!({
                    "backups": checks,
                    "restore": preview.as_ref().ok(),
                    "restore_refused": preview.as_ref().err().map(|e| format!("{e:#}")),
                }));
            }
            for check in &checks {
                outln!("{}  ({} B)", check.backup.path.display(), check.backup.bytes);
                outln!("  checksum: {}", verdict_line(&check.verdict));
            }
            match preview {
                Ok(outcome) => {
                    for file in outcome.files {
                        if file.diff.is_empty() {
                            outln!("{}: identical to the backup", file.path.display());
                        } else {
                            outln!("restoring would change {}:", file.path.display());
                            out!("{}", file.diff);
                        }
                    }
                }
                Err(err) => outln!("restore would be refused: {err:#}"),
            }
        }
        BackupCommand::Verify { timestamp, json } => {
            let entries = match &timestamp {
                Some(stamp) => backups.at_stamp(stamp, None)?,
                None => backups.list()?,
            };
            // Every entry is checked, a bad one does not stop the rest; exit 1 at the end.
            let reports = entries.iter().map(|e| backups.verify(e)).collect::<Result<Vec<_>>>()?;
            let bad = reports.iter().filter(|r| !r.is_intact()).count();
            if json {
                print_json(&reports)?;
            } else {
                for report in &reports {
                    outln!("{}: {}", report.backup.path.display(), verdict_line(&report.verdict));
                }
                outln!("{} backup(s) checked, {bad} bad", reports.len());
            }
            ensure!(bad == 0, "{bad} backup(s) failed verification");
        }
        BackupCommand::Prune { keep, dry_run, yes, json } => {
            if keep == 0 && !dry_run && !yes {
                if json {
                    bail!("--json cannot ask before deleting every backup: add --yes");
                }
                outln!(
                    "--keep 0 deletes every backup set not protected by an open incident or \
                     keep_undo_for ({}).",
                    settings.keep_undo_for
                );
                if !crate::prompt::confirm("Delete them?")? {
                    return Err(refused!("not pruned: nothing deleted"));
                }
            }
            let lock = WriteLock::acquire(&settings.lock_path())?;
            let plan = backups.prune(&lock, keep, dry_run)?;
            if !dry_run && !plan.delete.is_empty() {
                audit_change(
                    &settings,
                    &format!("guardian backup prune --keep {keep}"),
                    guardian_core::audit::Record::Pruned {
                        stamps: plan.delete.iter().map(|n| n.file_name()).collect(),
                    },
                )?;
            }
            if json {
                return print_json(&serde_json::json!({ "dry_run": dry_run, "plan": plan }));
            }
            let verb = if dry_run { "would delete" } else { "deleted" };
            for name in &plan.delete {
                outln!("{verb} {}", name.file_name());
            }
            for (name, why) in &plan.keep {
                let why = match why {
                    KeepReason::OpenIncident => "taken during an open incident",
                    KeepReason::UndoBackup => "undo backup younger than keep_undo_for",
                    _ => continue,
                };
                outln!("kept {} ({why})", name.file_name());
            }
            outln!("{verb} {} backup(s), kept {}", plan.delete.len(), plan.keep.len());
        }
        BackupCommand::Restore { timestamp, only, dry_run, yes, force, json } => {
            if json && !dry_run && !yes {
                bail!("--json cannot ask before writing: add --yes, or --dry-run to see the diff");
            }
            let show = |outcome: &guardian_rollback::RestoreOutcome| {
                for file in &outcome.files {
                    outln!("{} <- {}", file.path.display(), file.from.display());
                    out!("{}", file.diff);
                }
            };
            if dry_run {
                let preview = backups.preview_restore_with(&timestamp, only.as_deref(), force)?;
                if json {
                    return print_json(&preview);
                }
                show(&preview);
                outln!("dry run: nothing written");
            } else if !yes {
                let preview = backups.preview_restore_with(&timestamp, only.as_deref(), force)?;
                show(&preview);
                if !crate::prompt::confirm(
                    "Restore these files (the current ones are backed up first)?",
                )? {
                    return Err(refused!("not restored: nothing written"));
                }
                let lock = WriteLock::acquire(&settings.lock_path())?;
                recover_locked(&lock, &settings, &ledger, json)?;
                let again = backups.preview_restore_with(&timestamp, only.as_deref(), force)?;
                ensure!(
                    again.files.iter().map(|f| &f.diff).eq(preview.files.iter().map(|f| &f.diff)),
                    "the configs changed while the diff was shown; nothing written: run the \
                     restore again to see the new diff"
                );
                let outcome = backups.restore_with(&lock, &timestamp, only.as_deref(), force)?;
                audit_restore(&settings, &outcome)?;
                drop(lock);
                print_restored(&outcome);
                recover_restore(&settings, &args.files, &outcome, false).await?;
            } else {
                let lock = WriteLock::acquire(&settings.lock_path())?;
                let outcome = backups.restore_with(&lock, &timestamp, only.as_deref(), force)?;
                audit_restore(&settings, &outcome)?;
                drop(lock);
                if json {
                    print_json(&outcome)?;
                } else {
                    show(&outcome);
                    print_restored(&outcome);
                }
                recover_restore(&settings, &args.files, &outcome, json).await?;
            }
        }
        BackupCommand::Incidents { close, json } => {
            if let Some(id) = close {
                use guardian_rollback::BackupLedger as _;
                ledger.close_incident(id, jiff::Timestamp::now())?;
                if !json {
                    outln!("closed incident {id}: prune may delete its backups again");
                }
            }
            let open = ledger.list_open_incidents()?;
            if json {
                return print_json(&serde_json::json!({ "closed": close, "open": open }));
            }
            for incident in &open {
                outln!("{:>4}  since {}  {}", incident.id, incident.opened_at, incident.reason);
            }
            outln!("{} open incident(s)", open.len());
        }
    }
    Ok(())
}

/// Record an operator's change in the audit log of the guardian database holding the ledger:
/// the command as typed, then what it did. The change is made already; a failure here says so.
fn audit_change(
    settings: &RollbackSettings,
    command: &str,
    record: guardian_core::audit::Record,
) -> Result<()> {
    let mut store = guardian_store::Store::open(&settings.ledger_path).wrap_err_with(|| {
        format!(
            "the change is made, but the audit log in {} cannot record it",
            settings.ledger_path.display()
        )
    })?;
    store.audit(guardian_core::audit::Record::OperatorCommand {
        command: command.to_owned(),
        reason: String::new(),
        incident: None,
    })?;
    store.audit(record)
}

fn audit_restore(
    settings: &RollbackSettings,
    outcome: &guardian_rollback::RestoreOutcome,
) -> Result<()> {
    audit_change(
        settings,
        &format!("guardian backup restore {}", outcome.stamp),
        guardian_core::audit::Record::Restored {
            stamp: outcome.stamp.to_string(),
            configs: outcome.files.iter().map(|f| f.config.clone()).collect(),
            undo_stamp: outcome.undo_stamp.as_ref().map(ToString::to_string),
        },
    )
}

/// The managed config (or the version history) called `name`.
fn managed_file(
    settings: &RollbackSettings,
    name: &str,
) -> Result<guardian_rollback::ManagedConfig> {
    settings.backed_up_files().into_iter().find(|c| c.name == name).ok_or_else(|| {
        let known: Vec<String> = settings.backed_up_files().into_iter().map(|c| c.name).collect();
        eyre::eyre!("no managed config named {name:?} (known: {})", known.join(", "))
    })
}

/// After a restore: the restart hooks of the restored configs and the health endpoints, as
/// after a rollback.
async fn recover_restore(
    settings: &guardian_rollback::RollbackSettings,
    files: &Files,
    outcome: &guardian_rollback::RestoreOutcome,
    quiet: bool,
) -> Result<()> {
    if settings.recovery.is_empty() || outcome.files.is_empty() {
        return Ok(());
    }
    let provider = chain(files)?;
    let label = format!("restore-{}", outcome.stamp);
    let target = guardian_rollback::RecoveryTarget {
        configs: outcome.files.iter().map(|f| f.config.clone()).collect(),
        address: None,
        health_call: None,
        restart: true,
        from_block: 0,
        label: &label,
        undo: outcome.undo_stamp.as_ref().map(ToString::to_string),
    };
    let checks = guardian_rollback::run_recovery(settings, &provider, &target).await;
    print_checks(&checks, quiet)
}

/// Each recovery check, then the verdict (an error naming the failed checks).
fn print_checks(checks: &guardian_rollback::RecoveryChecks, quiet: bool) -> Result<()> {
    if !quiet {
        for check in &checks.checks {
            let mark = if check.passed { "ok    " } else { "FAILED" };
            outln!("recovery {mark} {}: {}", check.name, check.detail);
        }
    }
    if checks.passed() {
        if !quiet {
            outln!("recovery verified");
        }
        Ok(())
    } else {
        Err(eyre::eyre!("recovery check failed: {checks}"))
    }
}

fn print_restored(outcome: &guardian_rollback::RestoreOutcome) {
    if let Some(undo) = &outcome.undo_stamp {
        outln!(
            "restored {}; the previous state is backup {undo} (undo: guardian backup restore {undo})",
            outcome.stamp
        );
    }
}

fn verdict_line(verdict: &guardian_rollback::Verdict) -> String {
    match verdict {
        guardian_rollback::Verdict::Intact { sha256 } => format!("ok (sha256 {sha256})"),
        guardian_rollback::Verdict::Corrupted { expected, actual, recorded_in } => {
            format!("CORRUPTED: {recorded_in} records {expected}, file hashes to {actual}")
        }
        guardian_rollback::Verdict::Unverifiable { reason } => format!("UNVERIFIABLE: {reason}"),
        guardian_rollback::Verdict::Unrecorded { sha256 } => format!(
            "UNRECORDED: the sidecar matches (sha256 {sha256}) but the ledger has no row for \
             it: not taken by guardian with this ledger (restore needs --force)"
        ),
        other => format!("{other:?}"),
    }
}
