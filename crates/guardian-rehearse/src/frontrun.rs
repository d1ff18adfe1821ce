//! `frontrun`: the drain is broadcast to the mempool of a chain that mines a block a second,
//! and guardian sees it before any block holds it. The daemon watches pending transactions over
//! the node's WebSocket, simulates the drain on the latest state, predicts the Critical finding
//! of the `preempt` drain rule, and sends `pause(vault)` through the pause module with a higher
//! priority fee. The pool orders by fee (Anvil's default, like Besu's), so the pause is mined
//! first in the drain's own block, the drain reverts with `EnforcedPause()`, and the vault loses
//! nothing.

use std::time::{Duration, Instant};

use alloy::{
    primitives::{B256, U256},
    providers::Provider,
    sol_types::SolError,
};
use eyre::{Result, bail, ensure, eyre};
use guardian_chain::{pause_module::EnforcedPause, testbed::IVault};
use guardian_core::severity::Severity;
use serde_json::{Value, json};

use crate::{
    Options,
    drain::{DRAIN_RULE, deposits},
    drill::{Drill, wei_lost},
    report::ScenarioReport,
    stage::{Clock, Stage, poll},
};

const FUNDED: &str = "vault funded by ordinary deposits";
const BROADCAST: &str = "drain broadcast to the mempool";
const PREDICTED: &str = "Critical finding predicted from the pending drain";
const NAMED: &str = "finding names the pending transaction";
const FIRST: &str = "pause mined first, in the drain's own block";
const REVERTED: &str = "drain reverted with EnforcedPause()";
const NOTHING_LOST: &str = "vault balance unchanged: 0 wei lost";

pub(crate) async fn run(stage: &Stage, options: &Options) -> ScenarioReport {
    let mut drill = Drill::new([FUNDED, BROADCAST, PREDICTED, NAMED]);
    steps(stage, options, &mut drill).await;
    drill.list.plan([FIRST, REVERTED, NOTHING_LOST]);
    drill.report(stage, "frontrun")
}

async fn steps(stage: &Stage, options: &Options, drill: &mut Drill) {
    let vault = stage.world.targets.vault_v2;
    let funded = async {
        deposits(stage).await?;
        let balance = stage.world.reader().get_balance(vault).await?;
        Ok((balance, format!("VaultV2 holds {balance} wei")))
    };
    let Some(balance) = drill.list.step(FUNDED, funded.await) else { return };

    let Some((clock, drain)) = drill.list.step(BROADCAST, broadcast(stage, balance).await) else {
        return;
    };
    drill.anomaly(&clock, "drain broadcast (pending)");

    let Some(finding) =
        drill.finding(stage, options, &clock, PREDICTED, DRAIN_RULE, Severity::Critical).await
    else {
        return;
    };
    let named = match finding.finding.evidence.predicted_from {
        Some(from) if from == drain => {
            Ok(((), format!("predicted from pending tx {drain}: {}", finding.finding.summary)))
        }
        Some(other) => Err(eyre!("predicted from {other}, not the drain {drain}")),
        None => Err(eyre!(
            "the finding was recorded from a block, not predicted: {}",
            finding.finding.summary
        )),
    };
    if drill.list.step(NAMED, named).is_none() {
        return;
    }

    let Some(pause_block) = drill.pause_at_once(stage, options, &clock, vault).await else {
        return;
    };
    let pause_tx = drill.incident.and_then(|(id, _)| stage.incident(id).ok()?.module_tx);
    let Some((drain_block, drain_index)) =
        drill.list.step(FIRST, first(stage, options, drain, pause_tx, pause_block).await)
    else {
        return;
    };
    drill.mark(&clock, "drain mined, reverted", drain_block);
    drill.latencies.pause_blocks = Some(0);
    drill.list.record(REVERTED, reverted_with_enforced_pause(stage, drain, drain_index).await);
    match wei_lost(stage, vault, drain_block - 1, drain_block).await {
        Ok(lost) => {
            drill.wei_lost = Some(lost);
            let now = stage.world.reader().get_balance(vault).await.unwrap_or_default();
            let outcome = if lost.is_zero() && now == balance {
                Ok(format!("VaultV2 still holds {now} wei"))
            } else {
                Err(eyre!(
                    "the vault lost {lost} wei in block {drain_block}; it holds {now} of {balance}"
                ))
            };
            drill.list.record(NOTHING_LOST, outcome);
        }
        Err(error) => drill.list.record(NOTHING_LOST, Err(error)),
    }
}

/// Right after a block is mined (the most time the pool gives guardian, as for a bundle sent
/// at the start of a slot), send the drain of the whole balance in one `sponsoredWithdraw`,
/// without waiting for it. The clock starts now, at the block the drain is due in.
async fn broadcast(stage: &Stage, balance: U256) -> Result<((Clock, B256), String)> {
    let world = &stage.world;
    let reader = world.reader();
    let head = reader.get_block_number().await?;
    let next = poll(Duration::from_secs(5), || async {
        let now = reader.get_block_number().await?;
        Ok((now > head).then_some(now))
    })
    .await?
    .ok_or_else(|| eyre!("no block mined within 5 s of block {head}"))?;
    let attacker = world.roles.attacker.clone();
    let wallet = world.devnet.provider_for(attacker.clone());
    // A fixed gas limit: the drain does not wait for an estimate.
    let pending = IVault::new(world.targets.vault_v2, &wallet)
        .sponsoredWithdraw(attacker.address(), balance)
        .gas(200_000)
        .send()
        .await?;
    let t0 = Instant::now();
    let hash = *pending.tx_hash();
    Ok((
        (Clock { t0, block: next + 1 }, hash),
        format!(
            "sponsoredWithdraw of {balance} wei sent as {hash} right after block {next}, due in block {}",
            next + 1
        ),
    ))
}

/// The drain's receipt: mined in `pause_block`, after the pause, and failed.
async fn first(
    stage: &Stage,
    options: &Options,
    drain: B256,
    pause: Option<B256>,
    pause_block: u64,
) -> Result<((u64, u64), String)> {
    let pause = pause.ok_or_else(|| eyre!("the incident records no module pause"))?;
    let reader = stage.world.reader();
    let receipt =
        poll(options.step_timeout, || async { Ok(reader.get_transaction_receipt(drain).await?) })
            .await?
            .ok_or_else(|| {
                eyre!("the drain {drain} was not mined within {:?}", options.step_timeout)
            })?;
    let block = receipt.block_number.unwrap_or_default();
    let index = receipt.transaction_index.unwrap_or_default();
    if block != pause_block {
        bail!("the pause was mined in block {pause_block}, the drain in block {block}");
    }
    let pause_index = reader
        .get_transaction_receipt(pause)
        .await?
        .and_then(|r| r.transaction_index)
        .ok_or_else(|| eyre!("the pause {pause} has no receipt"))?;
    ensure!(
        pause_index < index,
        "in block {block} the drain is transaction {index} and the pause {pause_index}: the drain came first"
    );
    ensure!(!receipt.status(), "the drain {drain} succeeded in block {block}");
    Ok((
        (block, index),
        format!(
            "block {block}: the pause is transaction {pause_index}, the drain {index} (failed)"
        ),
    ))
}

/// Replay the drain's trace: its revert data is the vault's `EnforcedPause()`.
async fn reverted_with_enforced_pause(stage: &Stage, drain: B256, index: u64) -> Result<String> {
    let trace: Value = stage
        .world
        .reader()
        .raw_request("debug_traceTransaction".into(), json!([drain, { "tracer": "callTracer" }]))
        .await?;
    let output = trace.get("output").and_then(Value::as_str).unwrap_or("0x");
    let data = alloy::primitives::hex::decode(output)?;
    ensure!(
        data.starts_with(&EnforcedPause::SELECTOR),
        "the drain (transaction {index}) reverted with {output} ({}), not EnforcedPause()",
        trace.get("error").and_then(Value::as_str).unwrap_or("no error")
    );
    Ok(format!("{drain} reverted with {output}: EnforcedPause()"))
}
