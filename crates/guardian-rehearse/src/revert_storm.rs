//! `revert-storm`: more than 10 % of the calls to the vault revert. The operators' matrix makes
//! that Critical, so guardian must record a Critical `revert_rate` finding and pause the vault
//! at once through the pause module.

use std::time::Instant;

use alloy::primitives::utils::parse_ether;
use eyre::{Result, bail, ensure, eyre};
use guardian_chain::testbed::IVault;
use guardian_core::severity::Severity;

use crate::{
    Options,
    drill::Drill,
    report::ScenarioReport,
    stage::{Clock, Stage},
};

/// Successful calls, then failing ones: 4 of 12 (33 %) revert.
const GOOD: usize = 8;
const BAD: usize = 4;

const STORM: &str = "revert storm mined";
const FINDING: &str = "Critical revert-rate finding recorded";

pub(crate) async fn run(stage: &Stage, options: &Options) -> ScenarioReport {
    let mut drill = Drill::new([STORM, FINDING]);
    steps(stage, options, &mut drill).await;
    drill.report(stage, "revert-storm")
}

async fn steps(stage: &Stage, options: &Options, drill: &mut Drill) {
    let Some(clock) = drill.list.step(STORM, storm(stage).await) else { return };
    drill.anomaly(&clock, "first revert mined");
    let rule = "vault-revert-rate";
    if drill.finding(stage, options, &clock, FINDING, rule, Severity::Critical).await.is_none() {
        return;
    }
    let vault = stage.world.targets.vault_v2;
    if let Some(block) = drill.pause_at_once(stage, options, &clock, vault).await {
        drill.lost(stage, vault, &clock, block).await;
    }
}

/// Deposits that succeed, then withdrawals above the balance that revert on chain.
async fn storm(stage: &Stage) -> Result<(Clock, String)> {
    let bed = &stage.world;
    let vault_address = bed.targets.vault_v2;
    let users = bed.roles.users.clone();
    let wallets: Vec<_> = users.iter().map(|u| bed.devnet.provider_for(u.clone())).collect();
    let amount = parse_ether("0.1")?;
    let mut good = Vec::new();
    for i in 0..GOOD {
        let vault = IVault::new(vault_address, &wallets[i % 2]);
        good.push(vault.deposit().value(amount).send().await?);
    }
    for tx in good {
        ensure!(tx.get_receipt().await?.status(), "a deposit reverted");
    }
    // Withdrawals of more than was deposited revert (InsufficientBalance). An explicit gas limit
    // skips estimation, so Anvil mines the failing transactions instead of refusing them.
    let attacker = bed.devnet.provider_for(bed.roles.spammer.clone());
    let vault = IVault::new(vault_address, &attacker);
    let mut bad = Vec::new();
    for _ in 0..BAD {
        bad.push(vault.withdraw(parse_ether("100")?).gas(200_000).send().await?);
    }
    let mut first = None;
    for tx in bad {
        let receipt = tx.get_receipt().await?;
        if receipt.status() {
            bail!("a withdrawal above the balance succeeded (tx {})", receipt.transaction_hash);
        }
        first.get_or_insert((Instant::now(), receipt.block_number.unwrap_or_default()));
    }
    let (t0, block) = first.ok_or_else(|| eyre!("no failing call was sent"))?;
    Ok((
        Clock { t0, block },
        format!(
            "{GOOD} deposits succeeded, {BAD} withdrawals reverted from block {block} ({}% of {} calls)",
            BAD * 100 / (GOOD + BAD),
            GOOD + BAD
        ),
    ))
}
