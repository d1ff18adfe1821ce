//! guardian's fire drills.
//!
//! Each scenario starts its own stage ([`stage`]: Anvil chain 138 mining a block a second, the
//! operators' Safe and the vaults, a rehearsal config, the daemon in-process), plays an incident
//! (or ordinary traffic), drives the operators' approvals through the same `Multisig` calls
//! `guardian approve` makes, and checks every outcome. [`report`] turns what was observed into
//! `report.json`, `report.md` and an SVG timeline; [`report::write`] is the only function here
//! that writes the report files.

use std::time::Duration;

use eyre::{Result, bail};
use guardian_chain::{Contracts, Toolchain};
use tracing::info;

mod drain;
mod quiet;
pub mod report;
mod revert_storm;
pub mod stage;

use report::{Check, Report, ScenarioReport};

/// A rehearsal scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// VaultV2 drained through its buggy `sponsoredWithdraw`: finding → pause through the Safe
    /// → config rolled back to VaultV1 → backup restored.
    Drain,
    /// Ordinary deposits and withdrawals for about ten blocks: no finding, no proposal.
    Quiet,
    /// A third of the calls to the vault revert: Critical revert-rate finding, pause proposed.
    RevertStorm,
}

impl Scenario {
    /// Every implemented scenario, in the order `all` runs them.
    pub const ALL: [Self; 3] = [Self::Drain, Self::Quiet, Self::RevertStorm];

    /// The name on the command line and in the report.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Drain => "drain",
            Self::Quiet => "quiet",
            Self::RevertStorm => "revert-storm",
        }
    }

    /// `all` or one scenario's name.
    pub fn select(name: &str) -> Result<Vec<Self>> {
        if name == "all" {
            return Ok(Self::ALL.to_vec());
        }
        match Self::ALL.into_iter().find(|s| s.name() == name) {
            Some(s) => Ok(vec![s]),
            None => {
                let names: Vec<&str> = Self::ALL.iter().map(|s| s.name()).collect();
                bail!("unknown scenario {name:?} (known: all, {})", names.join(", "))
            }
        }
    }
}

/// How to lay out every scenario's stage.
#[derive(Debug, Clone)]
pub struct Options {
    /// Chain id of the local chain.
    pub chain_id: u64,
    /// Seconds between blocks (interval mining, like chain 138).
    pub block_time: u64,
    /// Safe owners (dev accounts 1..=owners).
    pub owners: usize,
    /// Approvals the Safe requires.
    pub threshold: u64,
    /// How many owners approve in the drill: owner 1 signs off chain, owner 2 calls
    /// `approveHash` on chain, any further owner signs off chain.
    pub approvers: usize,
    /// How long to wait for each step the daemon must take (finding, proposal, execution,
    /// rollback) before the check fails.
    pub step_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            chain_id: guardian_chain::devnet::CHAIN_138,
            block_time: 1,
            owners: 3,
            threshold: 2,
            approvers: 2,
            step_timeout: Duration::from_secs(20),
        }
    }
}

/// Run `scenarios` one after the other, each on its own stage, and collect the report.
pub async fn rehearse(
    toolchain: &Toolchain,
    contracts: &Contracts,
    scenarios: &[Scenario],
    options: &Options,
) -> Report {
    let mut reports = Vec::with_capacity(scenarios.len());
    for &scenario in scenarios {
        info!(scenario = scenario.name(), "rehearsing");
        let report = match stage::Stage::start(toolchain, contracts, options).await {
            Ok(stage) => {
                let report = match scenario {
                    Scenario::Drain => drain::run(&stage, options).await,
                    Scenario::Quiet => quiet::run(&stage, options).await,
                    Scenario::RevertStorm => revert_storm::run(&stage, options).await,
                };
                let stopped = stage.stop().await;
                with_clean_stop(report, stopped)
            }
            Err(error) => ScenarioReport::new(
                scenario.name(),
                vec![Check {
                    name: "stage started".into(),
                    passed: false,
                    detail: format!("{error:#}"),
                }],
                vec![],
                report::Latencies::default(),
            ),
        };
        reports.push(report);
    }
    Report::new(options.chain_id, reports)
}

/// Add "daemon stopped cleanly" to a scenario's checks.
fn with_clean_stop(mut report: ScenarioReport, stopped: Result<()>) -> ScenarioReport {
    let check = match stopped {
        Ok(()) => Check::pass("daemon stopped cleanly", "shut down on request, no error"),
        Err(error) => Check::fail("daemon stopped cleanly", format!("{error:#}")),
    };
    report.checks.push(check);
    report.passed = report.checks.iter().all(|c| c.passed);
    report
}

/// The check list of one scenario. Steps depend on each other: once one fails, the rest are
/// recorded as not reached, naming the step that did not happen.
#[derive(Debug, Default)]
pub(crate) struct Checklist {
    checks: Vec<Check>,
    blocked_by: Option<String>,
}

impl Checklist {
    pub(crate) fn pass(&mut self, name: &str, detail: impl Into<String>) {
        self.checks.push(Check::pass(name, detail));
    }

    /// Record a failed step; every later step is blocked by it.
    pub(crate) fn fail(&mut self, name: &str, detail: impl Into<String>) {
        self.checks.push(Check::fail(name, detail));
        self.blocked_by.get_or_insert_with(|| name.to_owned());
    }

    /// Record `outcome` of step `name`: its detail on success, the error on failure.
    pub(crate) fn record(&mut self, name: &str, outcome: Result<String>) -> bool {
        match outcome {
            Ok(detail) => {
                self.pass(name, detail);
                true
            }
            Err(error) => {
                self.fail(name, format!("{error:#}"));
                false
            }
        }
    }

    /// Record the steps that were never tried because an earlier one failed.
    pub(crate) fn not_reached(&mut self, names: &[&str]) {
        let cause = self.blocked_by.clone().unwrap_or_else(|| "an earlier step".into());
        for name in names {
            self.checks.push(Check::fail(name, format!("not reached: \"{cause}\" did not happen")));
        }
    }

    pub(crate) fn into_checks(self) -> Vec<Check> {
        self.checks
    }
}
