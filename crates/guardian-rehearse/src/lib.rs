//! guardian's fire drills.
//!
//! Each scenario starts its own stage ([`stage`]: Anvil chain 138 mining a block a second, the
//! operators' Safe and the vaults, a rehearsal config, the daemon in-process), plays an incident
//! (or ordinary traffic), drives the operators' approvals through the same `Multisig` calls
//! `guardian approve` makes, and checks every outcome. [`report`] turns what was observed into
//! `report.json`, `report.md` and an SVG timeline; [`report::write`] is the only function here
//! that writes the report files.

use std::{path::PathBuf, sync::Arc, time::Duration};

use alloy::{
    eips::BlockNumberOrTag,
    primitives::{Address, B256},
    providers::{Provider, ProviderBuilder},
    transports::http::reqwest::Url,
};
use eyre::{Result, WrapErr, bail, eyre};
use guardian_chain::{Contracts, Toolchain};
use tracing::info;

mod drain;
mod drill;
pub mod forwarder;
mod frontrun;
mod levers;
mod quiet;
pub mod report;
mod restart;
mod revert_storm;
pub mod stage;
mod upgrade;

use report::{Check, Report, ScenarioReport};

/// A rehearsal scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// VaultV2 drained through its buggy `sponsoredWithdraw`: Critical finding → pause at once
    /// through the pause module, in the next block → config rolled back to VaultV1 → backup
    /// restored.
    Drain,
    /// The same drain at High: finding → pause proposed through the Safe → owners approve →
    /// executed → config rolled back → backup restored.
    DrainMultisig,
    /// The drain broadcast to the mempool of an interval-mining chain: predicted from the
    /// pending transaction, paused first in the same block; the drain reverts, nothing lost.
    Frontrun,
    /// The release key swaps the proxied vault's implementation: finding → pause at once → the
    /// rogue `sweep()` refused.
    Upgrade,
    /// A third of the calls to the vault revert: Critical revert-rate finding, paused at once.
    RevertStorm,
    /// Ordinary deposits and withdrawals for about ten blocks: no finding, no proposal.
    Quiet,
    /// The daemon (a `guardian run` process) is killed as the drain begins and restarted: the
    /// drain is caught once and paused once.
    Restart,
    /// Every watched contract (the operators' own, on a fork with a config) can be paused by
    /// the Safe: code present, `paused()` answers, the pause simulated as the Safe succeeds;
    /// and the pause module is enabled and lists each of them.
    Levers,
}

impl Scenario {
    /// Every scenario, in the order `all` runs them.
    pub const ALL: [Self; 8] = [
        Self::Drain,
        Self::DrainMultisig,
        Self::Frontrun,
        Self::Upgrade,
        Self::RevertStorm,
        Self::Quiet,
        Self::Restart,
        Self::Levers,
    ];

    /// The name on the command line and in the report.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Drain => "drain",
            Self::DrainMultisig => "drain-multisig",
            Self::Frontrun => "frontrun",
            Self::Upgrade => "upgrade",
            Self::RevertStorm => "revert-storm",
            Self::Quiet => "quiet",
            Self::Restart => "restart",
            Self::Levers => "levers",
        }
    }

    /// How its rehearsal config differs from the others'.
    const fn layout(self) -> stage::Layout {
        match self {
            Self::DrainMultisig => stage::Layout { drain_high: true, preempt: false },
            Self::Frontrun => stage::Layout { drain_high: false, preempt: true },
            _ => stage::Layout { drain_high: false, preempt: false },
        }
    }

    /// `all`, one scenario's name, or several separated by commas.
    pub fn select(names: &str) -> Result<Vec<Self>> {
        if names == "all" {
            return Ok(Self::ALL.to_vec());
        }
        names
            .split(',')
            .map(|name| match Self::ALL.into_iter().find(|s| s.name() == name.trim()) {
                Some(s) => Ok(s),
                None => {
                    let known: Vec<&str> = Self::ALL.iter().map(|s| s.name()).collect();
                    bail!("unknown scenario {name:?} (known: all, {})", known.join(", "))
                }
            })
            .collect()
    }
}

/// Rehearse against a fork of a live chain instead of a fresh one.
#[derive(Debug, Clone)]
pub struct Fork {
    /// The RPC endpoint to fork (it may carry a key: Anvil only ever sees the loopback
    /// forwarder's URL). Only read, never written to.
    pub url: Url,
    /// The operators' Safe on that chain: its owners are impersonated on the fork.
    pub safe: Address,
    /// How long each request to the endpoint may take.
    pub timeout: Duration,
}

/// A drill's fork, set up once for all its scenarios: the endpoint behind its forwarder, the
/// block every scenario forks at, and the Safe as it stands there.
#[derive(Debug)]
pub(crate) struct ForkSession {
    pub(crate) forwarder: forwarder::Forwarder,
    pub(crate) block: u64,
    pub(crate) block_hash: B256,
    pub(crate) safe: Address,
    pub(crate) owners: Vec<Address>,
    pub(crate) threshold: u64,
    pub(crate) nonce: alloy::primitives::U256,
}

impl ForkSession {
    /// The preconditions of a fork drill, asked once, through the forwarder: the endpoint
    /// answers (in time, without a rate limit) with the configured chain id, its latest block
    /// (which every scenario then forks), and a Safe 1.4.1 at the configured address.
    async fn open(fork: &Fork, chain_id: u64) -> Result<Self> {
        let forwarder = forwarder::Forwarder::start(fork.url.clone(), fork.timeout).await?;
        let shown = forwarder.endpoint().to_owned();
        let provider = ProviderBuilder::new().connect_http(forwarder.url().clone()).erased();
        // The forwarder times each request out; this bounds the whole question anyway.
        let bound = fork.timeout + Duration::from_secs(5);
        let asked = async {
            let reported = provider.get_chain_id().await.wrap_err("eth_chainId")?;
            if reported != chain_id {
                bail!(
                    "{shown} serves chain {reported}, not {chain_id}: pass --chain-id {reported} \
                     (and a config for that chain)"
                );
            }
            let block = provider
                .get_block_by_number(BlockNumberOrTag::Latest)
                .await
                .wrap_err("eth_getBlockByNumber(latest)")?
                .ok_or_else(|| eyre!("{shown} has no latest block"))?;
            let safe = guardian_chain::safe::SafeClient::connect(provider.clone(), fork.safe)
                .await
                .wrap_err_with(|| format!("the Safe {} on {shown}", fork.safe))?;
            Ok((block.header.number, block.header.hash, safe))
        };
        let outcome = match tokio::time::timeout(bound, asked).await {
            Ok(outcome) => outcome,
            Err(_) => Err(eyre!("{shown} did not answer within {bound:?}")),
        };
        // The forwarder knows why better than the JSON-RPC client (a 429, a timeout).
        let (block, block_hash, safe) = match (outcome, forwarder.failure()) {
            (Ok(found), None) => found,
            (_, Some(failure)) => return Err(eyre!(failure)),
            (Err(error), None) => return Err(error),
        };
        Ok(Self {
            owners: safe.owners().await?,
            threshold: safe.threshold().await?,
            nonce: safe.nonce().await?,
            safe: safe.address(),
            forwarder,
            block,
            block_hash,
        })
    }

    fn report(&self) -> report::ForkReport {
        report::ForkReport {
            endpoint: self.forwarder.endpoint().to_owned(),
            block: self.block,
            block_hash: self.block_hash,
            safe: self.safe,
            owners: self.owners.clone(),
            threshold: self.threshold,
            nonce: self.nonce,
            footprint: self.forwarder.footprint(),
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
    /// Safe owners (dev accounts 1..=owners). Ignored on a fork (the Safe's own owners).
    pub owners: usize,
    /// Approvals the Safe requires. Ignored on a fork (the Safe's own threshold).
    pub threshold: u64,
    /// How many owners approve in the drill (`0`: as many as the Safe's threshold): owner 1
    /// signs off chain, owner 2 calls `approveHash` on chain, any further owner signs off
    /// chain. On a fork every owner approves on chain, impersonated.
    pub approvers: usize,
    /// How long to wait for each step the daemon must take (finding, proposal, execution,
    /// rollback) before the check fails.
    pub step_timeout: Duration,
    /// Fork this chain and use its Safe instead of deploying one.
    pub fork: Option<Fork>,
    /// The `guardian` executable, for scenarios that run the daemon as a process (`restart`).
    pub guardian_exe: Option<PathBuf>,
    /// The contracts `levers` checks; empty: the rehearsal's own.
    pub levers: Vec<Lever>,
    /// The pause module `levers` checks them against (the operators' `[safe.module]`, with
    /// [`Options::levers`]); `None`: the rehearsal's own.
    pub module: Option<Address>,
}

/// A contract whose pause the `levers` scenario checks.
#[derive(Debug, Clone)]
pub struct Lever {
    /// The name operators know it by (`[[contracts]] name`).
    pub name: String,
    /// Where it is.
    pub address: Address,
    /// Its pause function, as in `pause()`.
    pub pause: String,
}

impl From<&guardian_config::ContractConfig> for Lever {
    fn from(contract: &guardian_config::ContractConfig) -> Self {
        Self {
            name: contract.name.clone(),
            address: contract.address,
            pause: contract.pause.clone(),
        }
    }
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
            fork: None,
            guardian_exe: None,
            levers: Vec::new(),
            module: None,
        }
    }
}

/// The last scenario's stage, kept running after the drill (`--keep-running`): its Anvil, Safe,
/// contracts, config and daemon, for the operator to inspect.
pub struct Kept {
    stage: stage::Stage,
    /// Anvil reads the fork lazily, through the forwarder: it lives as long as the stage.
    _fork: Option<Arc<ForkSession>>,
}

impl Kept {
    /// What to connect to, one `name: value` per line.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let world = &self.stage.world;
        let targets = &world.targets;
        let mut lines = vec![
            ("rpc", world.devnet.http_url().to_string()),
            ("chain id", world.devnet.chain_id().to_string()),
            ("safe", world.safe.address().to_string()),
            ("vault (VaultV2)", targets.vault_v2.to_string()),
            ("previous vault (VaultV1)", targets.vault_v1.to_string()),
            ("proxied vault", targets.proxied_vault.to_string()),
            ("factory", targets.factory.to_string()),
            ("pause module", world.module.to_string()),
            ("pauser", world.pauser.address().to_string()),
            ("config", self.stage.config.source.display().to_string()),
        ];
        match &world.forked_from {
            Some(url) => lines.push(("forked from", format!("{url} (owners impersonated)"))),
            None => lines.push(("owner keys", "Anvil dev accounts 1 and up".into())),
        }
        lines
    }

    /// Stop the daemon; Anvil and the stage folder go with it.
    pub async fn stop(self) -> Result<()> {
        self.stage.stop().await
    }
}

/// Run `scenarios` one after the other, each on its own stage, and collect the report. With
/// `keep_running`, the last scenario's stage is handed back instead of stopped.
pub async fn rehearse(
    toolchain: &Toolchain,
    contracts: &Contracts,
    scenarios: &[Scenario],
    options: &Options,
    keep_running: bool,
) -> (Report, Option<Kept>) {
    let mut reports = Vec::with_capacity(scenarios.len());
    let mut kept = None;
    let mut actors = None;
    // A fork's preconditions are asked once: when they fail, no scenario can pass, so the
    // drill stops there with one failure instead of one per scenario.
    let session = match &options.fork {
        None => None,
        Some(fork) => match ForkSession::open(fork, options.chain_id).await {
            Ok(session) => Some(Arc::new(session)),
            Err(error) => {
                let check = Check::fail("fork endpoint ready", format!("{error:#}"));
                let preflight = ScenarioReport::new(
                    "preflight",
                    vec![check],
                    vec![],
                    report::Latencies::default(),
                );
                let mut report = Report::new(options.chain_id, vec![preflight]);
                report.forked_from = Some(redact(&fork.url));
                return (report, None);
            }
        },
    };
    for (index, &scenario) in scenarios.iter().enumerate() {
        info!(scenario = scenario.name(), "rehearsing");
        // `restart` starts its own daemon, as a process; `levers` needs none; the others get
        // one in-process.
        let fork = session.as_deref();
        let layout = scenario.layout();
        let stage = if matches!(scenario, Scenario::Restart | Scenario::Levers) {
            stage::Stage::prepare(toolchain, contracts, options, fork, layout).await
        } else {
            stage::Stage::start(toolchain, contracts, options, fork, layout).await
        };
        let report = match stage {
            Ok(mut stage) => {
                if actors.is_none() {
                    actors = Some(stage.world.roles.report(&stage.world));
                }
                let report = match scenario {
                    Scenario::Drain => drain::run(&stage, options, drain::Response::AtOnce).await,
                    Scenario::DrainMultisig => {
                        drain::run(&stage, options, drain::Response::Multisig).await
                    }
                    Scenario::Frontrun => frontrun::run(&stage, options).await,
                    Scenario::Upgrade => upgrade::run(&stage, options, contracts).await,
                    Scenario::RevertStorm => revert_storm::run(&stage, options).await,
                    Scenario::Quiet => quiet::run(&stage, options).await,
                    Scenario::Restart => restart::run(&mut stage, options).await,
                    Scenario::Levers => levers::run(&stage, options).await,
                };
                if keep_running && index + 1 == scenarios.len() {
                    kept = Some(Kept { stage, _fork: session.clone() });
                    report
                } else if !stage.ever_ran_daemon() {
                    report // nothing to stop: Anvil dies with the stage
                } else {
                    let stopped = stage.stop().await;
                    with_clean_stop(report, stopped)
                }
            }
            Err(error) => ScenarioReport::new(
                scenario.name(),
                vec![Check::fail("stage started", format!("{error:#}"))],
                vec![],
                report::Latencies::default(),
            ),
        };
        reports.push(report);
    }
    let mut report = Report::new(options.chain_id, reports);
    report.forked_from = options.fork.as_ref().map(|f| redact(&f.url));
    report.fork = session.as_deref().map(ForkSession::report);
    report.actors = actors;
    (report, kept)
}

/// An RPC URL without credentials, path or query (they may hold API keys).
fn redact(url: &Url) -> String {
    guardian_rpc::redact(url)
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

#[cfg(test)]
mod tests {
    use super::Scenario;

    #[test]
    fn scenarios_are_selected_by_name_list_or_all() {
        assert_eq!(Scenario::select("all").expect("all"), Scenario::ALL.to_vec());
        assert_eq!(
            Scenario::select("upgrade, restart").expect("two"),
            vec![Scenario::Upgrade, Scenario::Restart]
        );
        for s in Scenario::ALL {
            assert_eq!(Scenario::select(s.name()).expect("one"), vec![s]);
        }
        let error = Scenario::select("drain,reboot").expect_err("unknown").to_string();
        assert!(error.contains("unknown scenario \"reboot\""), "{error}");
        assert!(
            error.contains(
                "drain, drain-multisig, frontrun, upgrade, revert-storm, quiet, restart, levers"
            ),
            "{error}"
        );
    }
}
