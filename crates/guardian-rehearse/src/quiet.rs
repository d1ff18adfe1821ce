//! `quiet`: ordinary deposits and withdrawals for about ten blocks. guardian must follow every
//! block and record nothing: no finding, no proposal, the vault left running.

use alloy::{primitives::utils::parse_ether, providers::Provider};
use eyre::{Result, bail, ensure};
use guardian_chain::{safe::is_paused, testbed::IVault};

use crate::{
    Options,
    drill::Drill,
    report::ScenarioReport,
    stage::{Clock, Stage, poll},
};

/// Blocks of ordinary traffic.
const BLOCKS: u64 = 10;

const TRAFFIC: &str = "ordinary traffic mined";
const FOLLOWED: &str = "daemon followed every block";
const NO_FINDING: &str = "no finding";
const NO_PROPOSAL: &str = "no pause proposal";
const RUNNING: &str = "vaults still running";

pub(crate) async fn run(stage: &Stage, options: &Options) -> ScenarioReport {
    let mut drill = Drill::new([TRAFFIC, FOLLOWED, NO_FINDING, NO_PROPOSAL, RUNNING]);
    steps(stage, options, &mut drill).await;
    drill.report(stage, "quiet")
}

async fn steps(stage: &Stage, options: &Options, drill: &mut Drill) {
    let Some((clock, last)) = drill.list.step(TRAFFIC, traffic(stage).await) else { return };
    drill.anomaly(&clock, "traffic started");
    drill.mark(&clock, "traffic ended", last);

    let caught_up = caught_up(stage, options, last).await;
    let Some(cursor) = drill.list.step(FOLLOWED, caught_up) else { return };
    drill.mark(&clock, "daemon caught up", cursor);

    drill.list.record(
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
    drill.list.record(
        NO_PROPOSAL,
        stage.multisig().and_then(|m| m.list(None)).and_then(|proposals| {
            ensure!(
                proposals.is_empty(),
                "{} proposal(s) made, first: {}",
                proposals.len(),
                proposals[0].reason
            );
            Ok("the Safe was asked for nothing".into())
        }),
    );
    let reader = stage.world.reader();
    let mut running = Vec::new();
    for address in [stage.world.targets.vault_v2, stage.world.targets.proxied_vault] {
        running.push(is_paused(&reader, address).await.and_then(|paused| {
            ensure!(!paused, "{address} is paused");
            Ok(format!("{address}.paused() == false"))
        }));
    }
    drill
        .list
        .record(RUNNING, running.into_iter().collect::<Result<Vec<_>>>().map(|d| d.join("; ")));
}

/// Wait until the daemon's cursor reaches `last`.
pub(crate) async fn caught_up(
    stage: &Stage,
    options: &Options,
    last: u64,
) -> Result<(u64, String)> {
    let cursor = poll(options.step_timeout, || async {
        Ok(stage.cursor()?.filter(|&cursor| cursor >= last))
    })
    .await?;
    match cursor {
        Some(cursor) => Ok((cursor, format!("cursor at block {cursor}, past block {last}"))),
        None => bail!(
            "the daemon's cursor is at {:?}, short of block {last}, after {:?}",
            stage.cursor()?,
            options.step_timeout
        ),
    }
}

/// Deposits and withdrawals, one transaction a block, for [`BLOCKS`] blocks.
async fn traffic(stage: &Stage) -> Result<((Clock, u64), String)> {
    let bed = &stage.world;
    let users = bed.roles.users.clone();
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
        (clock, last),
        format!(
            "{deposits} deposits of 0.3 ETH and {withdrawals} withdrawals of 0.1 ETH in blocks {}..={last}",
            start + 1
        ),
    ))
}
