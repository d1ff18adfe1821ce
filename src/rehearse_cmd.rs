//! `guardian rehearse`: run the fire-drill scenarios, write the report, print a summary. The
//! scenarios live in `guardian-rehearse`.

#![allow(clippy::print_stdout, reason = "the drill reports to the operator's terminal")]

use std::{path::PathBuf, time::Instant};

use alloy::{primitives::Address, transports::http::reqwest::Url};
use clap::Args;
use eyre::{Result, WrapErr, bail, eyre};
use guardian_chain::Toolchain;
use guardian_rehearse::{Fork, Lever, Options, Scenario, report};

#[derive(Debug, Args)]
pub(crate) struct RehearseArgs {
    /// Which scenarios: all, or any of drain, drain-multisig, frontrun, upgrade, revert-storm,
    /// quiet, restart, levers (comma-separated).
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Where to write report.json, report.md and timeline.svg.
    #[arg(long, default_value = "rehearsal-report")]
    report_dir: PathBuf,
    /// Chain id for the local chain [default: 138, or `[chain] id` of --config]. On a fork it
    /// must be the forked chain's.
    #[arg(long)]
    chain_id: Option<u64>,
    /// Approvals the rehearsal Safe requires (to rehearse your own Safe's layout) [default: 2].
    #[arg(long, conflicts_with = "fork_url")]
    threshold: Option<u64>,
    /// How many owners approve in the drill (owner 1 off chain, owner 2 on chain, the rest
    /// off chain) [default: 2; on a fork: the Safe's threshold].
    #[arg(long)]
    approvers: Option<usize>,
    /// Owners of the rehearsal Safe [default: 3].
    #[arg(long, conflicts_with = "fork_url")]
    owners: Option<usize>,
    /// Fork this RPC endpoint (e.g. a chain 138 node) and rehearse against its state with the
    /// configured Safe, whose owners are impersonated on the fork. The endpoint is only read
    /// from: no transaction ever reaches it. A URL with a key belongs in --fork-url-env: this
    /// one shows in `ps`.
    #[arg(long, value_name = "URL", conflicts_with = "fork_url_env")]
    fork_url: Option<Url>,
    /// The environment variable holding the URL to fork (for a URL with an API key: it never
    /// appears in a command line; Anvil is given a loopback forwarder's address).
    #[arg(long, value_name = "VAR")]
    fork_url_env: Option<String>,
    /// Seconds each request to the fork endpoint may take.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    fork_timeout: u64,
    /// The Safe to rehearse with on the fork [default: `[safe] address` of --config].
    #[arg(long)]
    safe: Option<Address>,
    /// guardian's config file (guardian.toml) naming the Safe (`[safe] address`) and chain id,
    /// for a fork; its `[[contracts]]` are what the `levers` scenario checks.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Keep the last scenario's chain, Safe and daemon running after the drill until Ctrl-C,
    /// to inspect them (`cast`, `guardian proposals list --config …`).
    #[arg(long)]
    keep_running: bool,
    /// Seconds to wait for each step guardian must take before its check fails.
    #[arg(long, default_value_t = 20)]
    step_timeout: u64,
    /// Print report.json on stdout instead of the summary (the files are written either way).
    #[arg(long, conflicts_with = "keep_running")]
    json: bool,
}

pub(crate) async fn run(args: RehearseArgs) -> Result<()> {
    let started = Instant::now();
    let scenarios = Scenario::select(&args.scenario)?;
    let defaults = Options::default();
    let owners = args.owners.unwrap_or(defaults.owners);
    let mut options = Options {
        chain_id: args.chain_id.unwrap_or(defaults.chain_id),
        owners,
        threshold: args.threshold.unwrap_or(defaults.threshold),
        approvers: args.approvers.unwrap_or(defaults.approvers).min(owners),
        step_timeout: std::time::Duration::from_secs(args.step_timeout),
        guardian_exe: Some(std::env::current_exe().wrap_err("locating the guardian executable")?),
        ..defaults
    };
    let fork_url = match (args.fork_url, &args.fork_url_env) {
        (Some(url), _) => Some(url),
        (None, Some(var)) => Some(url_from_env(var)?),
        (None, None) => None,
    };
    if fork_url.is_none() && (args.config.is_some() || args.safe.is_some()) {
        bail!("--config and --safe name the Safe of a fork: give --fork-url or --fork-url-env too");
    }
    if let Some(url) = fork_url {
        // The URL may carry a key: never in a log line.
        guardian_config::remember_secret(url.as_str());
        let config = args.config.as_deref().map(production_config).transpose()?;
        let safe = fork_safe(args.safe, config.as_ref())?;
        if let Some(config) = &config {
            if let Some(asked) = args.chain_id.filter(|id| *id != config.chain.id) {
                bail!(
                    "--chain-id {asked} contradicts [chain] id = {} of {}: the drill checks that \
                     config's Safe and contracts on its chain; drop --chain-id or fix the config",
                    config.chain.id,
                    config.source.display()
                );
            }
            options.chain_id = config.chain.id;
            options.levers = config.contracts.iter().map(Lever::from).collect();
            options.module =
                config.safe.as_ref().and_then(|s| s.module.as_ref()).map(|m| m.address);
        }
        // 0: as many owners as the Safe's threshold.
        options.approvers = args.approvers.unwrap_or(0);
        let timeout = std::time::Duration::from_secs(args.fork_timeout.max(1));
        options.fork = Some(Fork { url, safe, timeout });
    }
    let toolchain = Toolchain::discover()?;
    let contracts = guardian_chain::compile(&toolchain)?;
    let (report, kept) = guardian_rehearse::rehearse(
        &toolchain,
        &contracts,
        &scenarios,
        &options,
        args.keep_running,
    )
    .await;
    report::write(&report, &args.report_dir)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
        if let Some(first) = report.scenarios.iter().find(|s| !s.passed) {
            bail!("rehearsal failed; first failed scenario: {}", first.scenario);
        }
        return Ok(());
    }

    let mut failed = Vec::new();
    for s in &report.scenarios {
        let passed = s.checks.iter().filter(|c| c.passed).count();
        outln!(
            "{:<14} {}  {passed}/{} checks",
            s.scenario,
            if s.passed { "passed" } else { "FAILED" },
            s.checks.len()
        );
        let l = &s.latencies;
        if let (Some(ms), Some(blocks)) = (l.detection_ms, l.detection_blocks) {
            outln!("               detection {ms} ms ({blocks} blocks)");
        }
        if let (Some(ms), Some(blocks)) = (l.pause_ms, l.pause_blocks) {
            outln!("               anomaly → pause {ms} ms ({blocks} blocks)");
        }
        if let Some(wei) = &s.wei_lost {
            outln!("               wei lost before the pause {wei}");
        }
        for c in s.checks.iter().filter(|c| !c.passed) {
            outln!("               FAILED {}: {}", c.name, c.detail);
            failed.push(format!("{}: {}: {}", s.scenario, c.name, c.detail));
        }
    }
    outln!(
        "report: {} (report.json, report.md, timeline.svg); {:.1} s",
        args.report_dir.display(),
        started.elapsed().as_secs_f64()
    );
    if let Some(kept) = kept {
        outln!("\nkept running (Ctrl-C to stop):");
        for (name, value) in kept.describe() {
            outln!("  {name:<26} {value}");
        }
        tokio::signal::ctrl_c().await.wrap_err("waiting for Ctrl-C")?;
        outln!("stopping");
        kept.stop().await?;
    }
    if let Some(first) = failed.first() {
        bail!("rehearsal failed ({} check(s)); first: {first}", failed.len());
    }
    Ok(())
}

/// The URL in the variable `var`, which must hold one.
fn url_from_env(var: &str) -> Result<Url> {
    let value = std::env::var(var).map_err(|_| {
        eyre!("${var} (named by --fork-url-env) is not set: it must hold the URL to fork")
    })?;
    guardian_config::remember_secret(value.trim());
    value.trim().parse().map_err(|_| eyre!("${var} does not hold a URL"))
}

/// The operators' config, read for its chain id, Safe and contracts only. Its secrets (webhook
/// URL, bearer tokens, …) are never used by a drill, so one that is not set in this shell gets
/// a placeholder instead of stopping the drill.
fn production_config(path: &std::path::Path) -> Result<guardian_config::Config> {
    guardian_config::Config::load_without_secrets(path)
}

/// The Safe to rehearse with on a fork: `--safe`, else `--config`'s `[safe]`.
fn fork_safe(safe: Option<Address>, config: Option<&guardian_config::Config>) -> Result<Address> {
    if let Some(safe) = safe {
        return Ok(safe);
    }
    let config = config.ok_or_else(|| {
        eyre!("--fork-url needs the Safe whose owners to impersonate: pass --safe ADDRESS or --config guardian.toml")
    })?;
    let safe = config.safe.as_ref().ok_or_else(|| {
        eyre!("{}: no [safe] table; pass --safe ADDRESS", config.source.display())
    })?;
    Ok(safe.address)
}
