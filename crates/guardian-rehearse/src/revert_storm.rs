//! `revert-storm`: more than 10 % of the calls to the vault revert. The operators' matrix makes
//! that Critical, so guardian must record a Critical `revert_rate` finding and propose a pause
//! through the Safe (approving and executing it is what `drain` rehearses).

use std::time::Instant;

use alloy::primitives::utils::parse_ether;
use eyre::{Result, bail, ensure, eyre};
use guardian_chain::testbed::IVault;
use guardian_core::severity::Severity;

use crate::{
    Checklist, Options,
    drain::wait_proposal,
    report::{Event, Latencies, ScenarioReport},
    stage::{Clock, Stage, poll},
};

/// Successful calls, then failing ones: 4 of 12 (33 %) revert.
const GOOD: usize = 8;
const BAD: usize = 4;

const STORM: &str = "revert storm mined";
const FINDING: &str = "Critical revert-rate finding recorded";
const PROPOSAL: &str = "pause proposed through the Safe";

pub(crate) async fn run(stage: &Stage, options: &Options) -> ScenarioReport {
    let mut list = Checklist::default();
    let mut timeline = Vec::new();
    let mut latencies = Latencies::default();
    steps(stage, options, &mut list, &mut timeline, &mut latencies).await;
    ScenarioReport::new("revert-storm", list.into_checks(), timeline, latencies)
}

async fn steps(
    stage: &Stage,
    options: &Options,
    list: &mut Checklist,
    timeline: &mut Vec<Event>,
    latencies: &mut Latencies,
) {
    let (clock, detail) = match storm(stage).await {
        Ok(done) => done,
        Err(error) => {
            list.fail(STORM, format!("{error:#}"));
            list.not_reached(&[FINDING, PROPOSAL]);
            return;
        }
    };
    list.pass(STORM, detail);
    timeline.push(Event { label: "first revert mined".into(), block: clock.block, ms: 0 });

    let found = poll(options.step_timeout, || async {
        Ok(stage.findings()?.into_iter().find(|f| f.finding.rule == "vault-revert-rate"))
    })
    .await;
    let finding = match found {
        Ok(Some(f)) if f.finding.severity == Severity::Critical => f,
        Ok(Some(f)) => {
            list.fail(FINDING, format!("recorded as {:?}, not Critical", f.finding.severity));
            list.not_reached(&[PROPOSAL]);
            return;
        }
        Ok(None) => {
            list.fail(FINDING, format!("no revert-rate finding within {:?}", options.step_timeout));
            list.not_reached(&[PROPOSAL]);
            return;
        }
        Err(error) => {
            list.fail(FINDING, format!("{error:#}"));
            list.not_reached(&[PROPOSAL]);
            return;
        }
    };
    let head = stage.head().await.unwrap_or(clock.block);
    timeline.push(clock.event("finding recorded", head));
    latencies.detection_ms = Some(clock.ms());
    latencies.detection_blocks = Some(head.saturating_sub(clock.block));
    let values = &finding.finding.evidence.values;
    list.pass(
        FINDING,
        format!(
            "#{} {}: {} failed of {} ({})",
            finding.id,
            finding.finding.rule,
            values.get("failed").map_or("?", String::as_str),
            values.get("total").map_or("?", String::as_str),
            finding.finding.summary
        ),
    );

    match wait_proposal(stage, options).await {
        Ok(p) => {
            timeline.push(clock.event("pause proposed", stage.head().await.unwrap_or(head)));
            list.pass(
                PROPOSAL,
                format!(
                    "pause() on vault at Safe nonce {}, safeTxHash {}",
                    p.nonce, p.safe_tx_hash
                ),
            );
        }
        Err(error) => list.fail(PROPOSAL, format!("{error:#}")),
    }
}

/// Deposits that succeed, then withdrawals above the balance that revert on chain.
async fn storm(stage: &Stage) -> Result<(Clock, String)> {
    let bed = &stage.bed;
    let vault_address = bed.targets.vault_v2;
    let users = [bed.devnet.signer(6)?, bed.devnet.signer(7)?];
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
    let attacker = bed.devnet.provider_for(bed.devnet.signer(5)?);
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
