//! `drain`: VaultV2's buggy `sponsoredWithdraw` empties the vault in one burst. guardian must
//! record a Critical finding and pause the vault at once through the pause module, in the block
//! after the anomaly, without a Safe transaction; then roll the deployment config back to
//! VaultV1 with a backup, and that backup must restore the pre-rollback config byte for byte.
//!
//! `drain-multisig`: the same drain with the rule at High, the operators' matrix for "the
//! on-call owners approve": the pause is proposed through the Safe, the owners approve
//! (`guardian approve`'s calls), the daemon executes and verifies; the rollback as above.

use std::time::Instant;

use alloy::{
    network::Ethereum,
    primitives::{U256, utils::parse_ether},
    providers::{PendingTransactionBuilder, Provider},
};
use eyre::{Result, WrapErr, ensure, eyre};
use guardian_chain::testbed::IVault;
use guardian_core::{incident::RollbackStatus, severity::Severity};
use guardian_rollback::{Backups, RollbackSettings, SqliteLedger, WriteLock};

use crate::{
    Options,
    drill::Drill,
    report::ScenarioReport,
    report::eth,
    stage::{Clock, MANAGED, Stage, poll},
};

const ANOMALY: &str = "anomaly mined: VaultV2 drained";
const FINDING: &str = "Critical finding recorded";
const HIGH_FINDING: &str = "High finding recorded";
const NEXT_BLOCK: &str = "pause mined in the block after the anomaly";
const ROLLBACK: &str = "config rolled back to VaultV1";
const BACKUP: &str = "backup listed and intact";
const RESTORE: &str = "backup restored byte-identical";

/// The drain rule of the rehearsal config.
pub(crate) const DRAIN_RULE: &str = "vault-drain";

/// How the drain is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Response {
    /// Critical: the pause module, at once.
    AtOnce,
    /// High: a Safe proposal the owners approve.
    Multisig,
}

pub(crate) async fn run(stage: &Stage, options: &Options, response: Response) -> ScenarioReport {
    let finding = match response {
        Response::AtOnce => FINDING,
        Response::Multisig => HIGH_FINDING,
    };
    let mut drill = Drill::new([ANOMALY, finding]);
    steps(stage, options, response, &mut drill).await;
    drill.list.plan([ROLLBACK, BACKUP, RESTORE]);
    let name = match response {
        Response::AtOnce => "drain",
        Response::Multisig => "drain-multisig",
    };
    drill.report(stage, name)
}

async fn steps(stage: &Stage, options: &Options, response: Response, drill: &mut Drill) {
    // The managed config as the deployment left it (pointing at VaultV2).
    let before = std::fs::read_to_string(stage.managed_config()).unwrap_or_default();

    // The anomaly: ordinary deposits and a withdrawal, then the drain.
    let Some(clock) = drill.list.step(ANOMALY, anomaly(stage).await) else { return };
    drill.anomaly(&clock, "anomaly mined");

    let vault = stage.world.targets.vault_v2;
    let (step, severity) = match response {
        Response::AtOnce => (FINDING, Severity::Critical),
        Response::Multisig => (HIGH_FINDING, Severity::High),
    };
    if drill.finding(stage, options, &clock, step, DRAIN_RULE, severity).await.is_none() {
        return;
    }
    let paused_in = match response {
        // Critical: the daemon pauses through the module, no owner involved.
        Response::AtOnce => {
            drill.list.plan([NEXT_BLOCK]);
            let Some(block) = drill.pause_at_once(stage, options, &clock, vault).await else {
                return;
            };
            let next = clock.block + 1;
            let outcome = if block <= next {
                Ok(((), format!("anomaly in block {}, pause in block {block}", clock.block)))
            } else {
                Err(eyre!(
                    "anomaly in block {}, pause in block {block}: {} blocks late",
                    clock.block,
                    block - next
                ))
            };
            drill.list.step(NEXT_BLOCK, outcome);
            block
        }
        // High: the daemon proposes, the operators approve, the daemon executes.
        Response::Multisig => {
            if drill.pause_through_safe(stage, options, &clock, "vault", vault).await.is_none() {
                return;
            }
            clock.block + drill.latencies.pause_blocks.unwrap_or_default()
        }
    };
    drill.lost(stage, vault, &clock, paused_in).await;

    // The daemon rolls the deployment config back to V1.
    let Some((incident, _)) = drill.incident else {
        drill.list.fail(ROLLBACK, "the finding belongs to no incident");
        return;
    };
    let outcome = wait_rollback(stage, options, incident, &before).await;
    let Some(stamp) = drill.list.step(ROLLBACK, outcome) else { return };
    drill.mark(&clock, "rollback done", stage.head().await.unwrap_or(clock.block));

    if drill.list.step(BACKUP, backup_listed(stage, &stamp, &before).map(|d| ((), d))).is_some() {
        drill.list.step(RESTORE, restore(stage, &stamp, &before).map(|d| ((), d)));
    }
}

async fn anomaly(stage: &Stage) -> Result<(Clock, String)> {
    deposits(stage).await?;
    let (pending, drained) = send_drain(stage, usize::MAX).await?;
    let calls = pending.len();
    let (clock, _) = mined(pending).await?;
    ensure_empty(stage).await?;
    Ok((
        clock,
        format!(
            "{calls} sponsoredWithdraw calls took {} ETH from VaultV2 from block {}; balance 0",
            eth(drained),
            clock.block
        ),
    ))
}

/// What the vault normally sees: two users deposit, one withdraws a little (4.5 ETH stay).
pub(crate) async fn deposits(stage: &Stage) -> Result<()> {
    let world = &stage.world;
    let vault_address = world.targets.vault_v2;
    let users = world.roles.users.clone();
    let mut pending = Vec::new();
    for (user, amount) in users.iter().zip(["3", "2"]) {
        let wallet = world.devnet.provider_for(user.clone());
        let vault = IVault::new(vault_address, &wallet);
        pending.push(vault.deposit().value(parse_ether(amount)?).send().await?);
    }
    for tx in pending {
        ensure!(tx.get_receipt().await?.status(), "a deposit reverted");
    }
    let wallet = world.devnet.provider_for(users[0].clone());
    let withdrawal =
        IVault::new(vault_address, &wallet).withdraw(parse_ether("0.5")?).send().await?;
    ensure!(withdrawal.get_receipt().await?.status(), "an ordinary withdrawal reverted");
    Ok(())
}

/// Drain calls sent and not yet waited for.
pub(crate) type Pending = Vec<PendingTransactionBuilder<Ethereum>>;

/// The drain: anyone may call `sponsoredWithdraw`, which checks no balance. Sends up to
/// `max_calls` calls of 1.5 ETH (the last takes the rest) back to back, without waiting for
/// them; returns them and the ether they take.
pub(crate) async fn send_drain(stage: &Stage, max_calls: usize) -> Result<(Pending, U256)> {
    let world = &stage.world;
    let vault_address = world.targets.vault_v2;
    let attacker = world.roles.attacker.clone();
    let wallet = world.devnet.provider_for(attacker.clone());
    let vault = IVault::new(vault_address, &wallet);
    let step = parse_ether("1.5")?;
    let mut left = world.reader().get_balance(vault_address).await?;
    let (mut pending, mut taken) = (Vec::new(), U256::ZERO);
    while !left.is_zero() && pending.len() < max_calls {
        let amount = left.min(step);
        pending.push(vault.sponsoredWithdraw(attacker.address(), amount).send().await?);
        left -= amount;
        taken += amount;
    }
    Ok((pending, taken))
}

/// Wait for sent drain calls; the clock starts at the first one mined. Every call must
/// succeed.
pub(crate) async fn mined(pending: Pending) -> Result<(Clock, u64)> {
    let mut first = None;
    let mut last = 0;
    for tx in pending {
        let receipt = tx.get_receipt().await?;
        ensure!(receipt.status(), "a drain call reverted (tx {})", receipt.transaction_hash);
        last = receipt.block_number.unwrap_or_default();
        first.get_or_insert((Instant::now(), last));
    }
    let (t0, block) = first.ok_or_else(|| eyre!("the vault held nothing to drain"))?;
    Ok((Clock { t0, block }, last))
}

/// The vault is empty.
pub(crate) async fn ensure_empty(stage: &Stage) -> Result<()> {
    let after = stage.world.reader().get_balance(stage.world.targets.vault_v2).await?;
    ensure!(after.is_zero(), "VaultV2 still holds {} ETH after the drain", eth(after));
    Ok(())
}

async fn wait_rollback(
    stage: &Stage,
    options: &Options,
    incident: i64,
    before: &str,
) -> Result<(String, String)> {
    // The rollback follows the verified pause as a job of the incident: wait for its outcome.
    let outcome = poll(options.step_timeout, || async {
        let rollback = stage.incident(incident)?.rollback;
        Ok(match rollback {
            RollbackStatus::Done { .. } | RollbackStatus::Failed { .. } => Some(rollback),
            _ => None,
        })
    })
    .await?
    .ok_or_else(|| eyre!("no rollback recorded within {:?} of the pause", options.step_timeout))?;
    let stamp = match outcome {
        RollbackStatus::Done { undo: Some(stamp) } => stamp,
        RollbackStatus::Done { undo: None } => {
            return Err(eyre!("the rollback took no backup: the configs already pointed at V1"));
        }
        RollbackStatus::Failed { error } => return Err(eyre!("the rollback failed: {error}")),
        other => return Err(eyre!("unexpected rollback state {}", other.as_str())),
    };
    let (v1, v2) =
        (stage.world.targets.vault_v1.to_string(), stage.world.targets.vault_v2.to_string());
    let now = std::fs::read_to_string(stage.managed_config()).wrap_err("reading the config")?;
    ensure!(
        now == before.replace(&v2, &v1),
        "{MANAGED}.json does not point at VaultV1 {v1} with every other byte unchanged:\n{now}"
    );
    let state = stage.incident(incident)?.state;
    Ok((
        stamp.clone(),
        format!(
            "{MANAGED}.json now points at VaultV1 {v1}; undo backup {stamp}; incident #{incident} {state}"
        ),
    ))
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
