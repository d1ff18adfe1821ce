//! `guardian incidents` and `guardian findings`: the operators' view of what happened and what
//! guardian did about it. Everything goes through `guardian_operator::Desk`; this file parses
//! and prints.

#![allow(clippy::print_stdout, reason = "commands report to the operator's terminal")]

use alloy::transports::http::reqwest::Url;
use clap::{Args, Subcommand};
use eyre::{Result, bail, ensure};
use guardian_operator::{Desk, FindingView, IncidentSummary, IncidentView};

use crate::multisig_cmd::{ApiClient, ApiTokenArg, ConfigArg};

/// Who is acting, for the audit trail: the OS user, and that it was the CLI.
pub(crate) fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "operator".into());
    format!("{user} (CLI)")
}

#[derive(Debug, Args)]
pub(crate) struct IncidentsArgs {
    #[command(subcommand)]
    command: IncidentsCommand,
    /// Read from the daemon's HTTP API (e.g. http://127.0.0.1:8787) instead of the local
    /// database (list and show only).
    #[arg(long, global = true, env = "GUARDIAN_API")]
    api: Option<Url>,
    #[command(flatten)]
    token: ApiTokenArg,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(Debug, Subcommand)]
enum IncidentsCommand {
    /// Incidents, newest first: state, severity, deadline, pending approvals.
    List {
        /// Only those not resolved, withdrawn or cancelled.
        #[arg(long)]
        open: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// One incident: timeline, findings, proposals with approvals x/y, rollback,
    /// notifications.
    Show {
        /// The incident number.
        id: i64,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The runbook's post-mortem of an incident, filled from the audit log alone (the
    /// database's, or an export from `guardian audit export`).
    Report {
        /// The incident number.
        id: i64,
        /// md, json or html.
        #[arg(long, default_value = "md", value_parser = ["md", "json", "html"])]
        format: String,
        /// Build it from this exported audit file instead of the database (it must verify).
        #[arg(long, value_name = "FILE")]
        from: Option<std::path::PathBuf>,
        /// Write it to this file instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
    },
    /// Close a contained incident; its post-mortem is written to the post-mortem folder.
    Resolve {
        /// The incident number.
        id: i64,
        /// What was done, for the audit trail.
        #[arg(long)]
        note: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Call an incident off: its pending pause proposals are withdrawn (approvals refused,
    /// never executed).
    Cancel {
        /// The incident number.
        id: i64,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Reopen a resolved, withdrawn or cancelled incident.
    Reopen {
        /// The incident number.
        id: i64,
        /// Why, for the audit trail.
        #[arg(long)]
        note: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn incidents(args: IncidentsArgs) -> Result<()> {
    if let Some(api) = args.api {
        let client = ApiClient::new(api, &args.token)?;
        return match args.command {
            IncidentsCommand::List { open, json } => {
                let path = if open { "/incidents?open=true" } else { "/incidents" };
                let list: Vec<IncidentSummary> = client.get(path).await?;
                print_list(&list, json)
            }
            IncidentsCommand::Show { id, json } => {
                let view: IncidentView = client.get(&format!("/incidents/{id}")).await?;
                print_view(&view, json)
            }
            _ => bail!("resolve, cancel and reopen run on the validator host, without --api"),
        };
    }
    if let IncidentsCommand::Report { id, format, from: Some(file), out } = &args.command {
        // An exported file: no config or database needed.
        let entries = crate::audit_cmd::verified_file_entries(file)?;
        let policy = match args.config.load_offline() {
            Ok(config) => config.response,
            Err(_) => guardian_core::incident::ResponsePolicy::default(),
        };
        let pm = guardian_core::postmortem::PostMortem::build(&entries, *id, &policy)?;
        return write_report(&pm, format, out.as_deref());
    }
    // The database alone: no secret of the config is needed.
    let config = args.config.load_offline()?;
    let desk = Desk::local(&config)?;
    match args.command {
        IncidentsCommand::List { open, json } => print_list(&desk.incidents(open)?, json),
        IncidentsCommand::Show { id, json } => print_view(&desk.incident(id)?, json),
        IncidentsCommand::Report { id, format, out, .. } => {
            let pm = postmortem(&config, id)?;
            write_report(&pm, &format, out.as_deref())
        }
        IncidentsCommand::Resolve { id, note, json } => {
            ensure!(!note.trim().is_empty(), "--note must say what was done");
            let applied = desk.resolve(id, &actor(), &note)?;
            if !applied.changed() {
                return report(&desk, id, json, "already resolved");
            }
            // The post-mortem, written for the operators to complete; the resolution stands
            // even if writing it fails (they can run `incidents report` again).
            let written = postmortem(&config, id).and_then(|pm| {
                let dir = config.postmortem_dir();
                std::fs::create_dir_all(&dir)
                    .map_err(|e| eyre::eyre!("creating {}: {e}", dir.display()))?;
                let path = dir.join(format!("incident-{id}.md"));
                guardian_rollback::atomic_file::write_atomically(&path, pm.markdown().as_bytes())?;
                Ok(path)
            });
            let what = match written {
                Ok(path) => format!("resolved; post-mortem written to {}", path.display()),
                Err(error) => format!(
                    "resolved; the post-mortem could not be written ({error:#}): run guardian \
                     incidents report {id} --out FILE"
                ),
            };
            report(&desk, id, json, &what)
        }
        IncidentsCommand::Cancel { id, reason, json } => {
            ensure!(!reason.trim().is_empty(), "--reason must say why");
            let applied = desk.cancel(id, &actor(), &reason)?;
            let withdrawn = applied
                .effects
                .iter()
                .filter(|e| matches!(e, guardian_core::incident::Effect::Withdraw { .. }))
                .count();
            let what = if applied.changed() {
                format!("cancelled; {withdrawn} pending proposal(s) withdrawn")
            } else {
                "already cancelled".to_owned()
            };
            report(&desk, id, json, &what)
        }
        IncidentsCommand::Reopen { id, note, json } => {
            ensure!(!note.trim().is_empty(), "--note must say why");
            desk.reopen(id, &actor(), &note)?;
            report(&desk, id, json, "reopened")
        }
    }
}

fn report(desk: &Desk, id: i64, json: bool, what: &str) -> Result<()> {
    let view = desk.incident(id)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        outln!("incident #{id} {what}: now {}", view.summary.state);
    }
    Ok(())
}

fn print_list(list: &[IncidentSummary], json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(list)?);
        return Ok(());
    }
    if list.is_empty() {
        outln!("no incidents");
    }
    for i in list {
        let pending = match i.pending {
            Some((hash, approvals, threshold)) => {
                format!("  approvals {approvals}/{threshold}: guardian approve {hash}")
            }
            None => String::new(),
        };
        outln!(
            "#{:<4} {:<10} {:<8} {:<16} opened {}{}  findings {}{}",
            i.id,
            i.state.as_str(),
            i.severity.as_str(),
            i.contract,
            i.opened,
            if i.overdue { "  OVERDUE" } else { "" },
            i.findings,
            pending
        );
    }
    Ok(())
}

fn print_view(view: &IncidentView, json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(view)?);
        return Ok(());
    }
    let s = &view.summary;
    outln!("incident    #{} ({})", s.id, s.key);
    outln!("contract    {} ({})", s.contract, s.address);
    outln!("state       {}", s.state);
    outln!("severity    {}", s.severity);
    outln!("opened      {}", s.opened);
    if let Some(deadline) = &s.deadline {
        outln!("deadline    {deadline}{}", if s.overdue { "  (OVERDUE)" } else { "" });
    }
    outln!("rollback    {}", s.rollback);
    if let Some(execution) = &view.incident.execution {
        outln!(
            "executed    tx {} (block {}) by {} {}",
            execution.tx,
            execution.block,
            execution.by.as_str(),
            execution.sender
        );
    }
    if let Some(note) = &view.incident.note {
        outln!("note        {note}");
    }
    outln!("findings");
    for f in &view.findings {
        outln!(
            "  #{:<4} {:<8} {:<10} {} occurrence(s): {}",
            f.finding.id,
            f.finding.finding.severity.as_str(),
            f.finding.status.as_str(),
            f.finding.occurrences,
            f.text
        );
    }
    outln!("proposals");
    if view.proposals.is_empty() {
        outln!("  none");
    }
    for p in &view.proposals {
        let approvals = match (p.approvals, p.threshold) {
            (Some(a), Some(t)) => format!("approvals {a}/{t}"),
            _ => String::new(),
        };
        outln!(
            "  {} {:<9} nonce {} {approvals}{}",
            p.proposal.safe_tx_hash,
            p.proposal.status.as_str(),
            p.proposal.nonce,
            p.proposal.withdrawn_reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
        );
        if let Some(command) = &p.approve_command {
            outln!("      owners approve with: {command}");
        }
    }
    outln!("timeline");
    for e in &view.timeline {
        let block = e.block.map(|b| format!("block {b}")).unwrap_or_default();
        outln!("  {} {:<11} {:<18} {:<11} {}", e.at, block, e.kind, e.state.as_str(), e.detail);
    }
    outln!("notifications");
    if view.notifications.is_empty() {
        outln!("  none");
    }
    for n in &view.notifications {
        outln!(
            "  {:<8} {}{}",
            n.status,
            n.key,
            n.last_error
                .as_deref()
                .map(|e| format!("  ({} failed attempts; last: {e})", n.attempts))
                .unwrap_or_default()
        );
        for d in &n.deliveries {
            let detail = match (d.status(), &d.last_error, &d.outcome) {
                ("done", _, Some(outcome)) => outcome.clone(),
                (_, Some(error), _) => format!("{} failed attempts; last: {error}", d.attempts),
                _ => String::new(),
            };
            println!("      {:<12} {:<8} {detail}", d.channel, d.status());
        }
    }
    if !view.jobs.is_empty() {
        outln!("jobs");
        for j in &view.jobs {
            outln!(
                "  {:<8} {:<8} {}{}",
                j.status,
                j.kind,
                j.outcome.as_deref().or(j.last_error.as_deref()).unwrap_or_default(),
                if j.attempts > 0 {
                    format!(" ({} failed attempts)", j.attempts)
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub(crate) struct FindingsArgs {
    #[command(subcommand)]
    command: FindingsCommand,
    /// Read from the daemon's HTTP API instead of the local database.
    #[arg(long, global = true, env = "GUARDIAN_API")]
    api: Option<Url>,
    #[command(flatten)]
    token: ApiTokenArg,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(Debug, Subcommand)]
enum FindingsCommand {
    /// Findings, newest first, with their incident and occurrences.
    List {
        /// Only open ones (their incident is not closed).
        #[arg(long)]
        open: bool,
        /// Only this contract's (a configured name or an address).
        #[arg(long)]
        contract: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn findings(args: FindingsArgs) -> Result<()> {
    let FindingsCommand::List { open, contract, json } = args.command;
    let list: Vec<FindingView> = match args.api {
        Some(api) => {
            let mut path = format!("/findings?open={open}");
            if let Some(contract) = &contract {
                path.push_str(&format!("&contract={contract}"));
            }
            ApiClient::new(api, &args.token)?.get(&path).await?
        }
        None => Desk::local(&args.config.load_offline()?)?.findings(open, contract.as_deref())?,
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if list.is_empty() {
        outln!("no findings");
    }
    for f in list {
        let s = &f.finding;
        outln!(
            "#{:<4} {:<9} {:<8} {:<16} {:<20} incident {:<5} {} occurrence(s): {}",
            s.id,
            s.status.as_str(),
            s.finding.severity.as_str(),
            s.finding.contract,
            s.finding.rule,
            s.incident_id.map(|i| format!("#{i}")).unwrap_or_else(|| "-".into()),
            s.occurrences,
            f.text
        );
    }
    Ok(())
}

/// The post-mortem of incident `id` from this host's audit log.
fn postmortem(
    config: &guardian_config::Config,
    id: i64,
) -> Result<guardian_core::postmortem::PostMortem> {
    let store = guardian_store::Store::open_existing(&config.storage.path)?;
    let entries = store.audit_entries()?;
    Ok(guardian_core::postmortem::PostMortem::build(&entries, id, &config.response)?)
}

fn write_report(
    pm: &guardian_core::postmortem::PostMortem,
    format: &str,
    out: Option<&std::path::Path>,
) -> Result<()> {
    let text = match format {
        "json" => serde_json::to_string_pretty(pm)? + "\n",
        "html" => pm.html(),
        _ => pm.markdown(),
    };
    match out {
        Some(path) => {
            guardian_rollback::atomic_file::write_atomically(path, text.as_bytes())?;
            outln!("post-mortem of incident #{} written to {}", pm.incident, path.display());
        }
        None => out!("{text}"),
    }
    Ok(())
}
