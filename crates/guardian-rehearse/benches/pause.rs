//! Pause benchmark on Anvil chain 138 with 1 s blocks, a real Safe 1.4.1 and the pause module:
//! 20 runs of the `drain` scenario (the immediate path) and 20 of `frontrun` (pre-emption from
//! the mempool), each on a fresh stage, exactly as `guardian rehearse` plays them. Prints
//! min/median/max. Run with `cargo bench -p guardian-rehearse --bench pause` (`RUNS=5` for
//! fewer).
//!
//! - Immediate: the drain is mined (its receipt seen) → the module's pause is mined (its
//!   receipt seen by the daemon), in blocks and milliseconds.
//! - Pre-emptive: the drain is broadcast right after a block → the daemon records the predicted
//!   finding → sends the pause (the node accepted it), in milliseconds; and the share of runs in
//!   which the pause was mined before the drain, in the drain's own block.

#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use eyre::{Result, ensure};
use guardian_chain::{Contracts, Toolchain};
use guardian_rehearse::{
    Options, Scenario,
    report::{Report, ScenarioReport},
};

/// The ms of the first timeline event whose label contains `needle`.
fn at(report: &ScenarioReport, needle: &str) -> Option<u64> {
    report.timeline.iter().find(|e| e.label.contains(needle)).map(|e| e.ms)
}

fn check(report: &ScenarioReport, name: &str) -> bool {
    report.checks.iter().any(|c| c.name == name && c.passed)
}

fn line(what: &str, unit: &str, mut values: Vec<u64>) {
    if values.is_empty() {
        println!("{what:<44} no samples");
        return;
    }
    values.sort_unstable();
    let median = values[values.len() / 2];
    println!(
        "{what:<44} min {:>5} {unit}  median {:>5} {unit}  max {:>5} {unit}  ({} runs)",
        values[0],
        median,
        values[values.len() - 1],
        values.len()
    );
}

fn run(toolchain: &Toolchain, contracts: &Contracts, scenario: Scenario, runs: usize) -> Report {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let plan = vec![scenario; runs];
    runtime
        .block_on(guardian_rehearse::rehearse(
            toolchain,
            contracts,
            &plan,
            &Options::default(),
            false,
        ))
        .0
}

fn main() -> Result<()> {
    let runs: usize = std::env::var("RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(20);
    let toolchain = Toolchain::discover()?;
    let contracts = guardian_chain::compile(&toolchain)?;
    println!(
        "pause benchmark: Anvil chain 138, 1 s blocks, {runs} runs per path, a fresh stage each"
    );

    let immediate = run(&toolchain, &contracts, Scenario::Drain, runs);
    let failed = immediate.scenarios.iter().filter(|s| !s.passed).count();
    let blocks: Vec<u64> =
        immediate.scenarios.iter().filter_map(|s| s.latencies.pause_blocks).collect();
    let ms: Vec<u64> = immediate.scenarios.iter().filter_map(|s| at(s, ": executed")).collect();
    println!("\nimmediate (Critical drain, pause through the module)");
    line("anomaly mined → pause mined", "blocks", blocks.clone());
    line("anomaly mined → pause mined", "ms", ms);
    println!(
        "{:<44} {} of {runs} (failed runs: {failed})",
        "pause within 1 block",
        blocks.iter().filter(|b| **b <= 1).count()
    );

    let preemptive = run(&toolchain, &contracts, Scenario::Frontrun, runs);
    let sent: Vec<u64> =
        preemptive.scenarios.iter().filter_map(|s| at(s, "module_pause_sent")).collect();
    let predicted_to_sent: Vec<u64> = preemptive
        .scenarios
        .iter()
        .filter_map(|s| Some(at(s, "module_pause_sent")?.saturating_sub(at(s, ": opened")?)))
        .collect();
    let first = preemptive
        .scenarios
        .iter()
        .filter(|s| check(s, "pause mined first, in the drain's own block"))
        .count();
    println!("\npre-emptive (drain broadcast to the mempool right after a block)");
    line("pending drain broadcast → pause sent", "ms", sent);
    line("prediction recorded → pause sent", "ms", predicted_to_sent);
    println!("{:<44} {first} of {runs}", "pause mined before the drain, same block");
    let lost: Vec<String> =
        preemptive.scenarios.iter().filter_map(|s| s.wei_lost.clone()).collect();
    println!("{:<44} {}", "wei lost per run", lost.join(", "));
    ensure!(!immediate.scenarios.is_empty() && !preemptive.scenarios.is_empty(), "nothing ran");
    Ok(())
}
