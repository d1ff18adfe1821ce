//! `upgrade`: the release key that owns the proxied vault's ProxyAdmin (stolen, or used outside
//! the change process) swaps the implementation for one with a `sweep()`. guardian must record a
//! Critical finding from the EIP-1967 implementation slot, pause the vault at once through the
//! pause module before anyone sweeps it, and the funds must still be there.

use std::time::Instant;

use alloy::{
    primitives::{Address, B256, U256, utils::parse_ether},
    providers::Provider,
};
use eyre::{Result, ensure};
use guardian_chain::{
    Contracts,
    safe::deploy,
    testbed::{IVault, IVaultLogic, upgrade_proxied_vault},
};
use guardian_core::{rules::EIP1967_IMPLEMENTATION_SLOT, severity::Severity};

use crate::{Options, drill::Drill, report::ScenarioReport, stage::Clock, stage::Stage};

const ANOMALY: &str = "anomaly mined: implementation swapped outside the Safe";
const FINDING: &str = "Critical implementation-change finding recorded";
const HELD: &str = "funds held: sweep() refused while paused";

/// The implementation rule of the rehearsal config.
const RULE: &str = "proxied-vault-implementation";

pub(crate) async fn run(stage: &Stage, options: &Options, contracts: &Contracts) -> ScenarioReport {
    let mut drill = Drill::new([ANOMALY, FINDING]);
    steps(stage, options, contracts, &mut drill).await;
    drill.list.plan([HELD]);
    drill.report(stage, "upgrade")
}

async fn steps(stage: &Stage, options: &Options, contracts: &Contracts, drill: &mut Drill) {
    let Some((clock, deposited)) = drill.list.step(ANOMALY, upgrade(stage, contracts).await) else {
        return;
    };
    drill.anomaly(&clock, "upgrade mined");
    if drill.finding(stage, options, &clock, FINDING, RULE, Severity::Critical).await.is_none() {
        return;
    }
    let proxy = stage.world.targets.proxied_vault;
    let Some(block) = drill.pause_at_once(stage, options, &clock, proxy).await else { return };
    drill.lost(stage, proxy, &clock, block).await;
    drill.list.step(HELD, held(stage, deposited).await.map(|d| ((), d)));
}

/// Users deposit into the proxied vault; then the release key deploys the rogue implementation
/// and upgrades the proxy to it. Returns the clock of the upgrade and the ether at stake.
async fn upgrade(stage: &Stage, contracts: &Contracts) -> Result<((Clock, U256), String)> {
    let world = &stage.world;
    let proxy = world.targets.proxied_vault;
    let mut pending = Vec::new();
    for (user, amount) in world.roles.users.iter().zip(["2", "1.5"]) {
        let wallet = world.devnet.provider_for(user.clone());
        pending
            .push(IVault::new(proxy, &wallet).deposit().value(parse_ether(amount)?).send().await?);
    }
    for tx in pending {
        ensure!(tx.get_receipt().await?.status(), "a deposit into the proxied vault reverted");
    }
    let deposited = world.reader().get_balance(proxy).await?;

    let release = world.devnet.provider_for(world.release_key.clone());
    let rogue = deploy(&release, contracts.get("VaultLogicRogue")?, &[]).await?;
    let receipt = upgrade_proxied_vault(&release, &world.targets, rogue).await?;
    let t0 = Instant::now();
    let block = receipt.block_number.unwrap_or_default();
    let slot = world.reader().get_storage_at(proxy, EIP1967_IMPLEMENTATION_SLOT.into()).await?;
    let implementation = Address::from_word(B256::from(slot));
    ensure!(
        implementation == rogue,
        "the proxy's implementation slot holds {implementation}, not the rogue {rogue}"
    );
    Ok((
        (Clock { t0, block }, deposited),
        format!(
            "release key {} upgraded {proxy} from {} to {rogue} in block {block}; {} wei at stake",
            world.release_key.address(),
            world.targets.vault_logic_v1,
            deposited
        ),
    ))
}

/// The rogue `sweep()` must revert now that the vault is paused, and the deposits be intact.
async fn held(stage: &Stage, deposited: U256) -> Result<String> {
    let world = &stage.world;
    let proxy = world.targets.proxied_vault;
    let thief = world.roles.attacker.clone();
    let wallet = world.devnet.provider_for(thief.clone());
    let sweep = IVaultLogic::new(proxy, &wallet).sweep(thief.address()).call().await;
    ensure!(sweep.is_err(), "sweep() would still succeed on the paused vault");
    let balance = world.reader().get_balance(proxy).await?;
    ensure!(balance == deposited, "the vault holds {balance} wei, {deposited} were deposited");
    Ok(format!("sweep() reverts (EnforcedPause); the vault still holds {balance} wei"))
}
