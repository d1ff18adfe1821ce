//! `guardian rehearse`: run the fire-drill scenarios, write the report, print a summary. The
//! scenarios live in `guardian-rehearse`.

#![allow(clippy::print_stdout, reason = "the drill reports to the operator's terminal")]

use std::{path::PathBuf, time::Instant};

use clap::Args;
use eyre::{Result, bail};
use guardian_chain::{Contracts, Toolchain};
use guardian_rehearse::{Options, Scenario, report};

#[derive(Debug, Args)]
pub(crate) struct RehearseArgs {
    /// Which scenario: drain, quiet, revert-storm, or all.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Where to write report.json, report.md and timeline.svg.
    #[arg(long, default_value = "rehearsal-report")]
    report_dir: PathBuf,
    /// Chain id for the local chain.
    #[arg(long, default_value_t = 138)]
    chain_id: u64,
    /// Approvals the rehearsal Safe requires (to rehearse your own Safe's layout).
    #[arg(long, default_value_t = 2)]
    threshold: u64,
    /// How many owners approve in the drill (owner 1 off chain, owner 2 on chain, the rest
    /// off chain).
    #[arg(long, default_value_t = 2)]
    approvers: usize,
    /// Owners of the rehearsal Safe.
    #[arg(long, default_value_t = 3)]
    owners: usize,
    /// Seconds to wait for each step guardian must take before its check fails.
    #[arg(long, default_value_t = 20)]
    step_timeout: u64,
}

pub(crate) async fn run(args: RehearseArgs) -> Result<()> {
    let started = Instant::now();
    let scenarios = Scenario::select(&args.scenario)?;
    let options = Options {
        chain_id: args.chain_id,
        owners: args.owners,
        threshold: args.threshold,
        approvers: args.approvers.min(args.owners),
        step_timeout: std::time::Duration::from_secs(args.step_timeout),
        ..Options::default()
    };
    let toolchain = Toolchain::discover()?;
    let contracts = Contracts::compile(&toolchain)?;
    let report = guardian_rehearse::rehearse(&toolchain, &contracts, &scenarios, &options).await;
    report::write(&report, &args.report_dir)?;

    let mut failed = Vec::new();
    for s in &report.scenarios {
        let passed = s.checks.iter().filter(|c| c.passed).count();
        println!(
            "{:<12} {}  {passed}/{} checks",
            s.scenario,
            if s.passed { "passed" } else { "FAILED" },
            s.checks.len()
        );
        let l = &s.latencies;
        if let (Some(ms), Some(blocks)) = (l.detection_ms, l.detection_blocks) {
            println!("             detection {ms} ms ({blocks} blocks)");
        }
        if let (Some(ms), Some(blocks)) = (l.pause_ms, l.pause_blocks) {
            println!("             anomaly → pause {ms} ms ({blocks} blocks)");
        }
        for c in s.checks.iter().filter(|c| !c.passed) {
            println!("             FAILED {}: {}", c.name, c.detail);
            failed.push(format!("{}: {}: {}", s.scenario, c.name, c.detail));
        }
    }
    println!(
        "report: {} (report.json, report.md, timeline.svg); {:.1} s",
        args.report_dir.display(),
        started.elapsed().as_secs_f64()
    );
    if let Some(first) = failed.first() {
        bail!("rehearsal failed ({} check(s)); first: {first}", failed.len());
    }
    Ok(())
}
