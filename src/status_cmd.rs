//! `guardian status`: one screen of where guardian stands, from the database and the node (or
//! from the daemon's `GET /status` with `--api`). The data is assembled by
//! `guardian_operator::status`, the same as the status page's.

#![allow(clippy::print_stdout, reason = "commands report to the operator's terminal")]

use alloy::{primitives::utils::format_ether, transports::http::reqwest::Url};
use clap::Args;
use eyre::Result;
use guardian_operator::{
    Desk,
    status::{EndpointHealth, EndpointState, Status},
};

use crate::multisig_cmd::{ApiClient, ApiTokenArg, ConfigArg};

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// Read from the daemon's HTTP API (e.g. http://127.0.0.1:8787) instead of the local
    /// database and the node; it adds the daemon's readiness.
    #[arg(long, env = "GUARDIAN_API")]
    api: Option<Url>,
    #[command(flatten)]
    token: ApiTokenArg,
    #[command(flatten)]
    config: ConfigArg,
}

pub(crate) async fn run(args: StatusArgs) -> Result<()> {
    let status = match args.api {
        Some(api) => ApiClient::new(api, &args.token)?.get::<Status>("/status").await?,
        None => local(&args.config).await?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print(&status);
    }
    Ok(())
}

/// The status from this host's database and the configured endpoints.
async fn local(config: &ConfigArg) -> Result<Status> {
    let config = config.load()?;
    let desk = Desk::local(&config)?;
    let pool = guardian_operator::rpc_pool(&config)?;
    let current = pool.current();
    let endpoints: Vec<EndpointState> = pool
        .heads()
        .await
        .into_iter()
        .zip(pool.endpoints())
        .enumerate()
        .map(|(index, (head, endpoint))| EndpointState {
            endpoint: endpoint.label().to_owned(),
            current: index == current,
            health: if head.is_some() { EndpointHealth::Ok } else { EndpointHealth::Failing },
            head,
            last_error: None,
            failing_since: None,
        })
        .collect();
    let provider = pool.failover_provider(std::time::Duration::from_secs(1));
    // This replica's executor: from its key when this shell has it, else as the daemon
    // recorded it.
    let executor = match guardian_operator::executor_key(&config) {
        Ok(Some(key)) => Some(key.address()),
        _ => desk.recorded_executor()?,
    };
    let facts = guardian_operator::status::probe(&config, &provider, executor, endpoints).await;
    let channels: Vec<String> = config.notify.iter().map(|c| c.name.clone()).collect();
    let mut status = desk.status(&facts, &channels, None)?;
    let replication = &config.replication;
    if !replication.peers.is_empty() {
        let mut survey =
            guardian_operator::peers::survey(&replication.peers, std::time::Duration::from_secs(5))
                .await;
        let backlog = desk.relay_backlog()?;
        for peer in &mut survey {
            peer.relays_pending =
                backlog.iter().find(|b| b.peer == peer.name).map_or(0, |b| b.pending);
        }
        for pending in &mut status.proposals {
            pending.replicas =
                survey.iter().map(|peer| peer.approvals(pending.safe_tx_hash)).collect();
        }
        status.replicas = survey;
    }
    Ok(status)
}

fn ether(wei: alloy::primitives::U256) -> String {
    let text = format_ether(wei);
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let fraction: String = fraction.chars().take(6).collect();
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() { format!("{whole} ether") } else { format!("{whole}.{fraction} ether") }
}

fn age(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3_600),
        s => format!("{} d", s / 86_400),
    }
}

fn dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn print(s: &Status) {
    println!("guardian on chain {} at {} (chain read {})", s.chain_id, s.at, s.chain_read);
    if let Some(ready) = &s.ready {
        if ready.ready {
            println!("ready");
        } else {
            println!("NOT READY");
            for r in &ready.reasons {
                println!("  {}: {}", r.check, r.detail);
            }
        }
    }
    let f = &s.follow;
    println!("chain       head {}  cursor {}  lag {}", dash(f.head), dash(f.cursor), dash(f.lag));
    println!("endpoints");
    for e in &s.endpoints {
        println!(
            "  {:<32} {:<8} head {}{}{}",
            e.endpoint,
            e.health.as_str(),
            dash(e.head),
            if e.current { "  (current)" } else { "" },
            e.last_error.as_deref().map(|x| format!("  last error: {x}")).unwrap_or_default()
        );
    }
    println!("incidents   {} open", s.incidents.len());
    for i in &s.incidents {
        let x = &i.summary;
        println!(
            "  #{:<4} {:<8} {:<10} {} ({})  open {}{}",
            x.id,
            x.severity.as_str(),
            x.state.as_str(),
            x.contract,
            x.address,
            age(i.age_seconds),
            match (&x.deadline, x.overdue) {
                (Some(d), true) => format!("  OVERDUE since {d}"),
                (Some(d), false) => format!("  deadline {d}"),
                (None, _) => String::new(),
            }
        );
    }
    if !s.replicas.is_empty() {
        println!("replicas");
        for r in &s.replicas {
            let state = if r.reachable { "reachable" } else { "UNREACHABLE" };
            println!(
                "  {:<16} {:<11} {}  executor {}{}{}",
                r.name,
                state,
                r.api,
                dash(r.executor),
                if r.relays_pending > 0 {
                    format!("  {} relays owed", r.relays_pending)
                } else {
                    String::new()
                },
                r.error.as_deref().map(|e| format!("  ({e})")).unwrap_or_default()
            );
        }
    }
    println!("proposals   {} waiting for owners", s.proposals.len());
    for p in &s.proposals {
        let approvals = match (p.approvals, p.threshold) {
            (Some(a), Some(t)) => format!("approvals {a}/{t}"),
            _ => "approvals ?".to_owned(),
        };
        println!("  {} {} {} nonce {}  {approvals}", p.safe_tx_hash, p.kind, p.contract, p.nonce);
        if !p.replicas.is_empty() {
            println!(
                "      on the other replicas: {}",
                guardian_operator::peers::spread_line(&p.replicas)
            );
        }
        println!("      owners approve with: {}", p.approve_command);
    }
    match &s.executor {
        Some(x) => println!(
            "executor    {} holds {}; one execution needs {}{}",
            x.address,
            ether(x.balance_wei),
            ether(x.min_balance_wei),
            if x.can_execute() { "" } else { "  INSUFFICIENT" }
        ),
        None => println!("executor    none on this replica"),
    }
    println!("contracts");
    for c in &s.contracts {
        let paused = match c.paused {
            Some(true) => "PAUSED",
            Some(false) => "running",
            None => "paused() unknown",
        };
        let rollback = match &c.rollback {
            None => String::new(),
            Some(r) => {
                let current = r.current.as_ref().map_or("unrecorded", |v| v.label.as_str());
                match (&r.previous, r.verified) {
                    (Some(v), true) => {
                        format!(
                            "  version {current}, rolls back to {} ({}), verified",
                            v.label, v.address
                        )
                    }
                    _ => format!(
                        "  version {current}, rollback NOT READY: {}",
                        r.problem.as_deref().unwrap_or("")
                    ),
                }
            }
        };
        println!("  {:<16} {} {paused}{rollback}", c.name, c.address);
    }
    match (&s.last_backup, s.last_backup_age_seconds) {
        (Some(b), Some(seconds)) => println!("last backup {} ({} ago)", b.file, age(seconds)),
        _ => println!("last backup none"),
    }
    let n = &s.notifications;
    println!(
        "notifications {} pending, {} failing{}",
        n.pending,
        n.failing,
        n.failing_since.as_deref().map(|t| format!(" since {t}")).unwrap_or_default()
    );
    for c in &n.channels {
        println!(
            "  {:<16} {} pending, {} failing",
            c.channel, c.backlog.pending, c.backlog.failing
        );
    }
    if !s.problems.is_empty() {
        println!("could not read");
        for p in &s.problems {
            println!("  {p}");
        }
    }
}
