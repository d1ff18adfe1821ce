//! `guardian audit verify|show|export`: the hash-chained audit log, checked, read and handed to
//! an auditor. The chain itself is `guardian_core::audit`; its two copies (the database and
//! `audit.jsonl`) are `guardian_store::audit`.

#![allow(clippy::print_stdout, reason = "commands report to the operator's terminal")]

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Args, Subcommand};
use eyre::{Result, WrapErr, bail, eyre};
use guardian_core::audit::{Entry, Sealed, verify};
use guardian_store::{
    Store,
    audit::{file_chain, jsonl_path, read_jsonl, verify_copies},
};
use serde::Serialize;

use crate::multisig_cmd::ConfigArg;

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Recompute the chain over the database and audit.jsonl and compare them; exits 1 naming
    /// the first entry edited, deleted, inserted or reordered, or where the copies part.
    Verify {
        /// Verify this file alone (an export, or a copy of audit.jsonl) instead of the
        /// configured database; no config needed.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Also check every anchor the `[audit] anchor` contract published: catches a log cut
        /// shorter in both copies.
        #[arg(long)]
        onchain: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The log, oldest first.
    Show {
        /// Only the entries of this incident.
        #[arg(long)]
        incident: Option<i64>,
        /// Only entries at or after this time: RFC 3339 (2026-12-01T09:00:00Z) or an age (90m,
        /// 24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Read this file (an export) instead of the configured database.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Machine-readable output (one JSON entry a line, as stored).
        #[arg(long)]
        json: bool,
    },
    /// Deploy the `AuditAnchor` contract anchoring publishes to, and print the `[audit]` lines
    /// that turn anchoring on.
    DeployAnchor {
        /// The only key that may publish (default: the deploying key's address).
        #[arg(long)]
        anchorer: Option<alloy::primitives::Address>,
        /// The key paying for the deployment.
        #[command(flatten)]
        key: crate::multisig_cmd::KeyArgs,
    },
    /// Write a self-contained file for an auditor: the chain from its first entry through the
    /// incident's last, verifiable anywhere with `guardian audit verify --file`.
    Export {
        /// The incident.
        #[arg(long)]
        incident: i64,
        /// Where to write it (default: audit-incident-<N>.jsonl).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub(crate) async fn audit(args: AuditArgs) -> Result<ExitCode> {
    match args.command {
        AuditCommand::Verify { file: Some(file), onchain, json } => {
            if onchain {
                bail!("--onchain checks the configured database's anchors; leave out --file");
            }
            verify_file(&file, json)
        }
        AuditCommand::Verify { file: None, onchain, json } => {
            let config = args.config.load_offline()?;
            let store = Store::open_existing(&config.storage.path)?;
            let path = jsonl_path(&config.storage.path);
            let check = verify_copies(&store, &path)?;
            let mut anchors = None;
            if onchain {
                anchors = Some(check_onchain(&config, &store).await.map_err(|e| format!("{e:#}")));
            }
            let report = VerifyReport::new(&check, anchors.as_ref());
            print_verify(&report, json)?;
            Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        AuditCommand::Show { incident, since, file, json } => {
            let since = since.as_deref().map(parse_since).transpose()?;
            let entries = match file {
                Some(file) => file_entries(&file)?,
                None => {
                    let config = args.config.load_offline()?;
                    let store = Store::open_existing(&config.storage.path)?;
                    store.audit_rows()?.into_iter().map(|r| r.sealed).collect()
                }
            };
            for sealed in entries {
                let entry = sealed.entry().map_err(|e| eyre!("a stored entry: {e}"))?;
                if incident.is_some_and(|id| entry.record.incident() != Some(id))
                    || since.is_some_and(|t| entry.at_ms < t)
                {
                    continue;
                }
                if json {
                    println!("{}", sealed.line());
                } else {
                    println!("{}", describe(&entry));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::DeployAnchor { anchorer, key } => {
            let config = args.config.load()?;
            let deployer = key.load()?;
            let anchorer = anchorer.unwrap_or_else(|| deployer.address());
            let provider = crate::multisig_cmd::wallet(&config, deployer.clone())?;
            let toolchain = guardian_chain::Toolchain::discover()?;
            let contracts = guardian_chain::compile(&toolchain)?;
            let (address, block) =
                guardian_chain::audit_anchor::deploy(&provider, &contracts, &deployer, anchorer)
                    .await?;
            println!(
                "AuditAnchor {address} deployed in block {block}; only {anchorer} may publish"
            );
            println!(
                "\nturn anchoring on in {}:\n\n[audit]\nanchor = \"{address}\"\nanchor_from_block = {block}\n# anchor_key_env = \"…\"  (the key of {anchorer}; default: [safe] executor_key_env)",
                config.source.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export { incident, out } => {
            let config = args.config.load_offline()?;
            let store = Store::open_existing(&config.storage.path)?;
            let rows = store.audit_rows()?;
            let last = rows
                .iter()
                .filter(|r| r.sealed.entry().is_ok_and(|e| e.record.incident() == Some(incident)))
                .map(|r| r.seq)
                .max()
                .ok_or_else(|| eyre!("the audit log holds no entry of incident #{incident}"))?;
            let chain: Vec<&Sealed> =
                rows.iter().filter(|r| r.seq <= last).map(|r| &r.sealed).collect();
            verify(chain.iter().enumerate().map(|(i, s)| (i as u64 + 1, *s)))
                .wrap_err("refusing to export a chain that does not verify")?;
            let out =
                out.unwrap_or_else(|| PathBuf::from(format!("audit-incident-{incident}.jsonl")));
            let text: String = chain.iter().map(|s| format!("{}\n", s.line())).collect();
            std::fs::write(&out, text).wrap_err_with(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {} ({} entries, through entry {last}, the last of incident #{incident}); verify with: guardian audit verify --file {}",
                out.display(),
                chain.len(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Every anchor the `[audit] anchor` contract published, checked against the log in `store`.
pub(crate) async fn check_onchain(
    config: &guardian_config::Config,
    store: &Store,
) -> Result<String> {
    use alloy::providers::Provider as _;
    let anchor = config.audit.anchor.as_ref().ok_or_else(|| {
        eyre!(
            "{}: no [audit] anchor: nothing was published to check against",
            config.source.display()
        )
    })?;
    let provider = crate::multisig_cmd::reader(config)?;
    let head = provider.get_block_number().await.wrap_err("reading the chain head")?;
    let anchors = guardian_chain::audit_anchor::anchors(
        &provider,
        anchor.contract,
        anchor.from_block,
        head,
        config.chain.max_log_range,
    )
    .await?;
    let hashes: Vec<alloy::primitives::B256> =
        store.audit_rows()?.into_iter().map(|r| r.sealed.hash).collect();
    let checked = guardian_core::audit::check_anchors(&anchors, &hashes)?;
    Ok(match anchors.last() {
        Some(last) => format!(
            "{checked} anchor(s) on {} match the log (the last: entry {}, tx {})",
            anchor.contract, last.seq, last.tx
        ),
        None => format!(
            "no anchor published on {} yet (blocks {}..={head})",
            anchor.contract, anchor.from_block
        ),
    })
}

/// The entries of a file, each line as stored; an unreadable line is an error naming it.
pub(crate) fn file_entries(path: &Path) -> Result<Vec<Sealed>> {
    read_jsonl(path)?
        .into_iter()
        .map(|line| line.map_err(|e| eyre!("{}: {e}", path.display())))
        .collect()
}

/// The entries of an exported (or copied) audit file, once its chain verifies.
pub(crate) fn verified_file_entries(path: &Path) -> Result<Vec<guardian_core::audit::Entry>> {
    let sealed = file_entries(path)?;
    verify(sealed.iter().enumerate().map(|(i, s)| (i as u64 + 1, s))).map_err(|e| {
        eyre!(
            "{} does not verify ({e}): check it with guardian audit verify --file",
            path.display()
        )
    })?;
    sealed.iter().map(|s| s.entry().map_err(|e| eyre!("{}: {e}", path.display()))).collect()
}

fn verify_file(path: &Path, json: bool) -> Result<ExitCode> {
    let (_, outcome) = file_chain(read_jsonl(path)?);
    let outcome = outcome.map_err(|e| e.to_string());
    let report = VerifyReport {
        ok: outcome.is_ok(),
        database: None,
        file: Some(Side::of(&path.display().to_string(), &outcome)),
        divergence: None,
        anchors: None,
    };
    print_verify(&report, json)?;
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// One copy's verdict.
#[derive(Debug, Serialize)]
struct Side {
    copy: String,
    ok: bool,
    entries: Option<u64>,
    head: Option<String>,
    error: Option<String>,
}

impl Side {
    fn of(copy: &str, outcome: &Result<guardian_core::audit::Verified, String>) -> Self {
        match outcome {
            Ok(v) => Self {
                copy: copy.to_owned(),
                ok: true,
                entries: Some(v.entries),
                head: Some(v.head.to_string()),
                error: None,
            },
            Err(e) => Self {
                copy: copy.to_owned(),
                ok: false,
                entries: None,
                head: None,
                error: Some(e.clone()),
            },
        }
    }
}

#[derive(Debug, Serialize)]
struct VerifyReport {
    ok: bool,
    database: Option<Side>,
    file: Option<Side>,
    divergence: Option<String>,
    anchors: Option<Result<String, String>>,
}

impl VerifyReport {
    fn new(
        check: &guardian_store::audit::Verification,
        anchors: Option<&Result<String, String>>,
    ) -> Self {
        let database = Side::of("the database", &check.database.clone().map_err(|e| e.to_string()));
        let file = match &check.file {
            Some(outcome) => Side::of(
                &check.file_path.display().to_string(),
                &outcome.clone().map_err(|e| e.to_string()),
            ),
            None => Side {
                copy: check.file_path.display().to_string(),
                ok: false,
                entries: None,
                head: None,
                error: Some("missing: the database's copy is not mirrored".to_owned()),
            },
        };
        let divergence = check.divergence.as_ref().map(ToString::to_string);
        let ok =
            database.ok && file.ok && divergence.is_none() && anchors.is_none_or(Result::is_ok);
        Self {
            ok,
            database: Some(database),
            file: Some(file),
            divergence,
            anchors: anchors.cloned(),
        }
    }
}

fn print_verify(report: &VerifyReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    for side in report.database.iter().chain(&report.file) {
        match (&side.error, side.entries, &side.head) {
            (Some(error), _, _) => println!("BROKEN   {}: {error}", side.copy),
            (None, Some(n), Some(head)) => {
                println!("intact   {}: {n} entries, head {head}", side.copy)
            }
            _ => {}
        }
    }
    if let Some(divergence) = &report.divergence {
        println!("PARTED   {divergence}");
    }
    match &report.anchors {
        Some(Ok(detail)) => println!("anchored {detail}"),
        Some(Err(error)) => println!("BROKEN   anchors: {error}"),
        None => {}
    }
    println!("{}", if report.ok { "audit log verified" } else { "audit log NOT verified" });
    Ok(())
}

/// One entry in one line: its position, UTC time, actor and what was done.
fn describe(entry: &Entry) -> String {
    let at = jiff::Timestamp::from_millisecond(i64::try_from(entry.at_ms).unwrap_or(i64::MAX))
        .map(|t| t.to_string())
        .unwrap_or_default();
    let actor = match &entry.actor {
        guardian_core::audit::Actor::Daemon { host } => format!("daemon@{host}"),
        guardian_core::audit::Actor::Operator { user, host } => format!("{user}@{host}"),
        guardian_core::audit::Actor::Api { by } => format!("api:{by}"),
    };
    let record = serde_json::to_string(&entry.record).unwrap_or_default();
    format!("{:>6}  {at}  {actor:<20}  {}  {record}", entry.seq, entry.record.name())
}

/// `--since`: RFC 3339, or an age before now (`90m`, `24h`, `7d`).
fn parse_since(text: &str) -> Result<u64> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return u64::try_from(t.as_millisecond()).map_err(|_| eyre!("--since {text}: before 1970"));
    }
    let (number, unit) =
        text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 =
        number.parse().map_err(|_| eyre!("--since {text:?}: give RFC 3339 or an age like 24h"))?;
    let ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("--since {text:?}: the age's unit is s, m, h or d"),
    };
    Ok(guardian_store::now_ms().saturating_sub(n.saturating_mul(ms)))
}
