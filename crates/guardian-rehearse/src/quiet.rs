//! `quiet`: ordinary deposits and withdrawals for about ten blocks. guardian must follow every
//! block and record nothing: no finding, no proposal, the vault left running.

use alloy::{primitives::utils::parse_ether, providers::Provider};
use eyre::{Result, bail, ensure};
use guardian_chain::{safe::is_paused, testbed::IVault};

use crate::{
    Checklist, Options,
    report::{Event, Latencies, ScenarioReport},
    stage::{Clock, Stage, poll},
};

/// Blocks of ordinary traffic.
const BLOCKS: u64 = 10;

const TRAFFIC: &str = "ordinary traffic mined";
const FOLLOWED: &str = "daemon followed every block";
const NO_FINDING: &str = "no finding";
const NO_PROPOSAL: &str = "no pause proposal";
const RUNNING: &str = "vault still running";

pub(crate) async fn run(stage: &Stage, options: &Options) -> ScenarioReport {
    let mut list = Checklist::default();
    let mut timeline = Vec::new();
    steps(stage, options, &mut list, &mut timeline).await;
    ScenarioReport::new("quiet", list.into_checks(), timeline, Latencies::default())
}

async fn steps(stage: &Stage, options: &Options, list: &mut Checklist, timeline: &mut Vec<Event>) {
    let (clock, last, detail) = match traffic(stage).await {
        Ok(done) => done,
        Err(error) => {
            list.fail(TRAFFIC, format!("{error:#}"));
            list.not_reached(&[FOLLOWED, NO_FINDING, NO_PROPOSAL, RUNNING]);
            return;
        }
    };
    timeline.push(Event { label: "traffic started".into(), block: clock.block, ms: 0 });
    timeline.push(clock.event("traffic ended", last));
    list.pass(TRAFFIC, detail);

    let caught_up = poll(options.step_timeout, || async {
        Ok(stage.cursor()?.filter(|&cursor| cursor >= last))
    })
    .await;
    match caught_up {
        Ok(Some(cursor)) => {
            timeline.push(clock.event("daemon caught up", cursor));
            list.pass(FOLLOWED, format!("cursor at block {cursor}, traffic ended in block {last}"));
        }
        Ok(None) => {
            let cursor = stage.cursor().ok().flatten();
            list.fail(
                FOLLOWED,
                format!(
                    "the daemon's cursor is at {cursor:?}, short of block {last}, after {:?}",
                    options.step_timeout
                ),
            );
            list.not_reached(&[NO_FINDING, NO_PROPOSAL, RUNNING]);
            return;
        }
        Err(error) => {
            list.fail(FOLLOWED, format!("{error:#}"));
            list.not_reached(&[NO_FINDING, NO_PROPOSAL, RUNNING]);
            return;
        }
    }

    list.record(
        NO_FINDING,
        stage.findings().and_then(|findings| {
            if findings.is_empty() {
                Ok(format!("blocks {}..={last}: no rule fired", clock.block))
            } else {
                let names: Vec<String> = findings
                    .iter()
                    .map(|f| {
                        format!(
                            "{} ({:?}): {}",
                            f.finding.rule, f.finding.severity, f.finding.summary
                        )
                    })
                    .collect();
                bail!("false positive: {}", names.join("; "))
            }
        }),
    );
    list.record(
        NO_PROPOSAL,
        stage.multisig.list(None).and_then(|proposals| {
            ensure!(
                proposals.is_empty(),
                "{} proposal(s) made, first: {}",
                proposals.len(),
                proposals[0].reason
            );
            Ok("the Safe was asked for nothing".into())
        }),
    );
    let paused = is_paused(&stage.bed.devnet.reader(), stage.bed.targets.vault_v2).await;
    list.record(
        RUNNING,
        paused.and_then(|paused| {
            ensure!(!paused, "VaultV2 is paused");
            Ok("VaultV2.paused() == false".into())
        }),
    );
}

/// Deposits and withdrawals, one transaction a block, for [`BLOCKS`] blocks.
async fn traffic(stage: &Stage) -> Result<(Clock, u64, String)> {
    let bed = &stage.bed;
    let users = [bed.devnet.signer(6)?, bed.devnet.signer(7)?];
    let wallets: Vec<_> = users.iter().map(|u| bed.devnet.provider_for(u.clone())).collect();
    let vaults: Vec<_> = wallets.iter().map(|w| IVault::new(bed.targets.vault_v2, w)).collect();
    let ether = |s: &str| parse_ether(s).expect("constant amount");
    let start = bed.devnet.reader().get_block_number().await?;
    let clock = Clock { t0: std::time::Instant::now(), block: start };
    let (mut deposits, mut withdrawals, mut last) = (0, 0, start);
    while last < start + BLOCKS {
        let vault = &vaults[usize::from(last % 2 == 1)];
        let pending = if (last - start) % 3 == 2 {
            withdrawals += 1;
            vault.withdraw(ether("0.1")).send().await?
        } else {
            deposits += 1;
            vault.deposit().value(ether("0.3")).send().await?
        };
        let receipt = pending.get_receipt().await?;
        ensure!(receipt.status(), "ordinary call reverted (tx {})", receipt.transaction_hash);
        last = receipt.block_number.unwrap_or(last + 1);
    }
    Ok((
        clock,
        last,
        format!(
            "{deposits} deposits of 0.3 ETH and {withdrawals} withdrawals of 0.1 ETH in blocks {}..={last}",
            start + 1
        ),
    ))
}
