//! `drain`: VaultV2's buggy `sponsoredWithdraw` empties the vault. guardian must record a
//! Critical finding, propose `pause()` through the Safe, execute it once the owners approved,
//! verify `paused()`, roll the deployment config back to VaultV1 with a backup, and that backup
//! must restore the pre-rollback config byte for byte.

use std::time::Instant;

use alloy::{
    primitives::{B256, U256, utils::format_ether, utils::parse_ether},
    providers::Provider,
};
use eyre::{Result, WrapErr, bail, ensure, eyre};
use guardian_chain::{safe::is_paused, testbed::IVault};
use guardian_core::{proposal::ProposalKind, severity::Severity};
use guardian_multisig::{Proposal, ProposalStatus};
use guardian_rollback::{Backups, RollbackSettings, SqliteLedger, WriteLock};

use crate::{
    Checklist, Options,
    report::{Event, Latencies, ScenarioReport},
    stage::{Clock, MANAGED, Stage, poll},
};

const ANOMALY: &str = "anomaly mined: VaultV2 drained";
const FINDING: &str = "Critical finding recorded";
const PROPOSAL: &str = "pause proposed through the Safe";
const PAUSED: &str = "pause executed and verified";
const ROLLBACK: &str = "config rolled back to VaultV1";
const BACKUP: &str = "backup listed and intact";
const RESTORE: &str = "backup restored byte-identical";

pub(crate) async fn run(stage: &Stage, options: &Options) -> ScenarioReport {
    let mut list = Checklist::default();
    let mut timeline = Vec::new();
    let mut latencies = Latencies::default();
    steps(stage, options, &mut list, &mut timeline, &mut latencies).await;
    ScenarioReport::new("drain", list.into_checks(), timeline, latencies)
}

fn approval_name(index: usize, owner: alloy::primitives::Address) -> String {
    let how = if index == 1 { "on-chain approveHash" } else { "off-chain signature" };
    format!("approval {} of owner {owner} ({how})", index + 1)
}

async fn steps(
    stage: &Stage,
    options: &Options,
    list: &mut Checklist,
    timeline: &mut Vec<Event>,
    latencies: &mut Latencies,
) {
    let approvers: Vec<_> = stage.bed.owners.iter().take(options.approvers).collect();
    let approval_names: Vec<String> =
        approvers.iter().enumerate().map(|(i, o)| approval_name(i, o.address())).collect();
    let mut later: Vec<&str> = vec![FINDING, PROPOSAL];
    later.extend(approval_names.iter().map(String::as_str));
    later.extend([PAUSED, ROLLBACK, BACKUP, RESTORE]);
    let mut remaining = later.as_slice();
    macro_rules! step {
        ($name:expr, $outcome:expr) => {{
            let outcome = $outcome;
            remaining = &remaining[remaining.len().min(1)..];
            match outcome {
                Ok(value) => value,
                Err(error) => {
                    list.fail($name, format!("{error:#}"));
                    list.not_reached(remaining);
                    return;
                }
            }
        }};
    }

    // The managed config as the deployment left it (pointing at VaultV2).
    let before = std::fs::read_to_string(stage.managed_config()).unwrap_or_default();

    // The anomaly: ordinary deposits and a withdrawal, then the drain.
    let (clock, detail) = match anomaly(stage).await {
        Ok(done) => done,
        Err(error) => {
            list.fail(ANOMALY, format!("{error:#}"));
            list.not_reached(remaining);
            return;
        }
    };
    list.pass(ANOMALY, detail);
    timeline.push(Event { label: "anomaly mined".into(), block: clock.block, ms: 0 });

    // The daemon notices.
    let finding = step!(FINDING, wait_finding(stage, options).await);
    let head = stage.head().await.unwrap_or(clock.block);
    timeline.push(clock.event("finding recorded", head));
    latencies.detection_ms = Some(clock.ms());
    latencies.detection_blocks = Some(head.saturating_sub(clock.block));
    list.pass(FINDING, finding);

    let proposal = step!(PROPOSAL, wait_proposal(stage, options).await);
    timeline.push(clock.event("pause proposed", stage.head().await.unwrap_or(head)));
    list.pass(
        PROPOSAL,
        format!(
            "pause() on vault at Safe nonce {}, safeTxHash {}, simulation {}",
            proposal.nonce, proposal.safe_tx_hash, proposal.simulation
        ),
    );
    let hash = proposal.safe_tx_hash;

    // The operators approve, through the calls `guardian approve` makes.
    for (index, owner) in approvers.iter().enumerate() {
        let name = approval_names[index].as_str();
        let detail = step!(name, approve(stage, hash, index, owner).await);
        let block = stage.head().await.unwrap_or_default();
        let how = if index == 1 { "on chain" } else { "off chain" };
        timeline.push(clock.event(format!("approval {} ({how})", index + 1), block));
        list.pass(name, detail);
    }

    // The daemon executes and verifies.
    let (block, detail) = step!(PAUSED, wait_paused(stage, options, &proposal).await);
    timeline.push(clock.event("pause mined", block));
    latencies.pause_ms = Some(clock.ms());
    latencies.pause_blocks = Some(block.saturating_sub(clock.block));
    list.pass(PAUSED, detail);

    // The daemon rolls the deployment config back to V1.
    let (stamp, detail) = step!(ROLLBACK, wait_rollback(stage, options, hash, &before).await);
    timeline.push(clock.event("rollback done", stage.head().await.unwrap_or(block)));
    list.pass(ROLLBACK, detail);

    let detail = step!(BACKUP, backup_listed(stage, &stamp, &before));
    list.pass(BACKUP, detail);
    let detail = step!(RESTORE, restore(stage, &stamp, &before));
    list.pass(RESTORE, detail);
}

async fn anomaly(stage: &Stage) -> Result<(Clock, String)> {
    let bed = &stage.bed;
    let vault_address = bed.targets.vault_v2;
    let ether = |s: &str| parse_ether(s).expect("constant amount");
    // Two users deposit and one withdraws a little: what the vault normally sees.
    let users = [bed.devnet.signer(6)?, bed.devnet.signer(7)?];
    let mut pending = Vec::new();
    for (user, amount) in users.iter().zip(["3", "2"]) {
        let wallet = bed.devnet.provider_for(user.clone());
        let vault = IVault::new(vault_address, &wallet);
        pending.push(vault.deposit().value(ether(amount)).send().await?);
    }
    for tx in pending {
        ensure!(tx.get_receipt().await?.status(), "a deposit reverted");
    }
    let wallet = bed.devnet.provider_for(users[0].clone());
    let withdrawal = IVault::new(vault_address, &wallet).withdraw(ether("0.5")).send().await?;
    ensure!(withdrawal.get_receipt().await?.status(), "an ordinary withdrawal reverted");

    // The drain: anyone may call sponsoredWithdraw, which checks no balance.
    let reader = bed.devnet.reader();
    let attacker = bed.devnet.signer(8)?;
    let wallet = bed.devnet.provider_for(attacker.clone());
    let vault = IVault::new(vault_address, &wallet);
    let balance = reader.get_balance(vault_address).await?;
    let step = ether("1.5");
    let calls = balance.div_ceil(step).to::<u64>();
    let mut drains = Vec::new();
    let mut left = balance;
    while !left.is_zero() {
        let amount = left.min(step);
        drains.push(vault.sponsoredWithdraw(attacker.address(), amount).send().await?);
        left -= amount;
    }
    let mut first = None;
    for tx in drains {
        let receipt = tx.get_receipt().await?;
        ensure!(receipt.status(), "a drain call reverted (tx {})", receipt.transaction_hash);
        first.get_or_insert((Instant::now(), receipt.block_number.unwrap_or_default()));
    }
    let (t0, block) = first.ok_or_else(|| eyre!("the vault held nothing to drain"))?;
    let after = reader.get_balance(vault_address).await?;
    ensure!(after.is_zero(), "VaultV2 still holds {} ETH after the drain", eth(after));
    Ok((
        Clock { t0, block },
        format!(
            "{calls} sponsoredWithdraw calls took {} ETH from VaultV2 from block {block}; balance 0",
            eth(balance)
        ),
    ))
}

async fn wait_finding(stage: &Stage, options: &Options) -> Result<String> {
    let found = poll(options.step_timeout, || async {
        Ok(stage.findings()?.into_iter().find(|f| f.finding.severity == Severity::Critical))
    })
    .await?;
    match found {
        Some(f) => Ok(format!(
            "#{} {} on {}: {} (block {})",
            f.id,
            f.finding.rule,
            f.finding.contract,
            f.finding.summary,
            f.finding.evidence.block_number
        )),
        None => {
            let seen: Vec<String> = stage
                .findings()?
                .iter()
                .map(|f| format!("{} ({:?})", f.finding.rule, f.finding.severity))
                .collect();
            bail!(
                "no Critical finding within {:?} (daemon {}; findings: {})",
                options.step_timeout,
                if stage.daemon_running() { "running" } else { "stopped" },
                if seen.is_empty() { "none".into() } else { seen.join(", ") }
            )
        }
    }
}

pub(crate) async fn wait_proposal(stage: &Stage, options: &Options) -> Result<Proposal> {
    poll(options.step_timeout, || async {
        Ok(stage
            .multisig
            .list(Some(ProposalStatus::Pending))?
            .into_iter()
            .find(|p| p.kind == ProposalKind::Pause && p.contract == "vault"))
    })
    .await?
    .ok_or_else(|| {
        eyre!("the finding did not become a pause proposal within {:?}", options.step_timeout)
    })
}

async fn approve(
    stage: &Stage,
    hash: B256,
    index: usize,
    owner: &alloy::signers::local::PrivateKeySigner,
) -> Result<String> {
    let multisig = &stage.multisig;
    if index == 1 {
        let wallet = stage.bed.devnet.provider_for(owner.clone());
        let (receipt, approvals) = multisig.approve_onchain(hash, &wallet).await?;
        Ok(format!(
            "approveHash mined in block {}; approvals {approvals} of {}",
            receipt.block_number.unwrap_or_default(),
            multisig.safe().threshold().await?
        ))
    } else {
        let submitted = multisig.approve_with_signature(hash, owner).await?;
        ensure!(submitted.added, "the signature was already recorded");
        Ok(format!(
            "EIP-712 signature verified and stored; approvals {} of {}",
            submitted.approvals, submitted.threshold
        ))
    }
}

async fn wait_paused(
    stage: &Stage,
    options: &Options,
    proposal: &Proposal,
) -> Result<(u64, String)> {
    let hash = proposal.safe_tx_hash;
    let executed = poll(options.step_timeout, || async {
        Ok(stage.multisig.detail(hash)?.filter(|d| d.proposal.status == ProposalStatus::Executed))
    })
    .await?;
    let Some(detail) = executed else {
        let approvals = stage.multisig.approvals(proposal).await?.len();
        let threshold = stage.multisig.safe().threshold().await?;
        let last_failure = stage
            .multisig
            .detail(hash)?
            .and_then(|d| d.events.into_iter().rev().find(|e| e.event == "execution_failed"))
            .map(|e| format!("; last attempt: {}", e.detail))
            .unwrap_or_default();
        bail!(
            "the Safe did not execute (approvals {approvals} of {threshold}) within {:?}{last_failure}",
            options.step_timeout
        );
    };
    let tx = detail.proposal.executed_tx.ok_or_else(|| eyre!("executed without a transaction"))?;
    let reader = stage.bed.devnet.reader();
    let receipt = reader
        .get_transaction_receipt(tx)
        .await?
        .ok_or_else(|| eyre!("execTransaction {tx} has no receipt"))?;
    ensure!(receipt.status(), "execTransaction {tx} reverted");
    ensure!(
        is_paused(&reader, stage.bed.targets.vault_v2).await?,
        "execTransaction {tx} was mined but VaultV2.paused() is false"
    );
    let nonce = stage.multisig.safe().nonce().await?;
    ensure!(nonce == U256::from(1), "the Safe executed {nonce} transactions, expected exactly 1");
    let block = receipt.block_number.unwrap_or_default();
    Ok((
        block,
        format!(
            "execTransaction {tx} mined in block {block} by {}; VaultV2.paused() == true; Safe nonce 1",
            detail.proposal.executed_by.as_deref().unwrap_or("?")
        ),
    ))
}

async fn wait_rollback(
    stage: &Stage,
    options: &Options,
    hash: B256,
    before: &str,
) -> Result<(String, String)> {
    let event = poll(options.step_timeout, || async {
        Ok(stage.multisig.detail(hash)?.and_then(|d| {
            d.events.into_iter().find(|e| e.event == "rollback" || e.event == "rollback_failed")
        }))
    })
    .await?
    .ok_or_else(|| eyre!("no rollback recorded within {:?} of the pause", options.step_timeout))?;
    ensure!(event.event == "rollback", "the rollback failed: {}", event.detail);
    let stamp = event
        .detail
        .split_once("undo with backup ")
        .map(|(_, stamp)| stamp.trim().to_owned())
        .ok_or_else(|| eyre!("the rollback took no backup: {}", event.detail))?;
    let (v1, v2) = (stage.bed.targets.vault_v1.to_string(), stage.bed.targets.vault_v2.to_string());
    let now = std::fs::read_to_string(stage.managed_config()).wrap_err("reading the config")?;
    ensure!(
        now == before.replace(&v2, &v1),
        "{MANAGED}.json does not point at VaultV1 {v1} with every other byte unchanged:\n{now}"
    );
    Ok((stamp.clone(), format!("{MANAGED}.json now points at VaultV1 {v1}; undo backup {stamp}")))
}

fn backup_listed(stage: &Stage, stamp: &str, before: &str) -> Result<String> {
    let settings = RollbackSettings::load(&stage.config.source)?;
    let ledger = SqliteLedger::open(&settings.ledger_path)?;
    let backups = Backups::new(&settings, &ledger);
    let entry = backups
        .list()?
        .into_iter()
        .find(|b| b.name.config == MANAGED && b.name.stamp.to_string() == stamp)
        .ok_or_else(|| eyre!("backup {stamp} of {MANAGED} is not in `backup list`"))?;
    backups.verify(&entry)?.ensure_intact()?;
    let bytes = std::fs::read_to_string(&entry.path)?;
    ensure!(bytes == before, "backup {} does not hold the pre-rollback config", entry.file);
    Ok(format!("{} ({} bytes): checksum intact, holds the VaultV2 config", entry.file, entry.bytes))
}

fn restore(stage: &Stage, stamp: &str, before: &str) -> Result<String> {
    let settings = RollbackSettings::load(&stage.config.source)?;
    let ledger = SqliteLedger::open(&settings.ledger_path)?;
    let backups = Backups::new(&settings, &ledger);
    let lock = WriteLock::acquire(&settings.lock_path())?;
    let outcome = backups.restore(&lock, stamp, Some(MANAGED))?;
    let now = std::fs::read(stage.managed_config())?;
    ensure!(
        now == before.as_bytes(),
        "after restoring {stamp}, {MANAGED}.json differs from the pre-rollback bytes"
    );
    Ok(format!(
        "restored {stamp}: {} bytes identical to the pre-rollback config; undo with {}",
        now.len(),
        outcome.undo_stamp.map(|s| s.to_string()).unwrap_or_default()
    ))
}

/// Wei as ether without trailing zeros ("4.5").
fn eth(wei: U256) -> String {
    let text = format_ether(wei);
    match text.split_once('.') {
        Some((whole, fraction)) if fraction.trim_end_matches('0').is_empty() => whole.to_owned(),
        Some((whole, fraction)) => format!("{whole}.{}", fraction.trim_end_matches('0')),
        None => text,
    }
}
