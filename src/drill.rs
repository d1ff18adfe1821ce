//! The smoke drill behind `guardian rehearse`: the whole chain path in one go, narrated.

#![allow(clippy::print_stdout, reason = "the drill narrates to the operator's terminal")]

use std::time::Instant;

use alloy::{primitives::U256, sol_types::SolCall};
use clap::Args;
use eyre::{Result, ensure};
use guardian_chain::{
    Contracts, Testbed, TestbedOptions, Toolchain,
    devnet::DevnetOptions,
    safe::{IPausable, is_paused, sign_safe_tx_hash},
    sender::SendOptions,
};
use guardian_core::safe::{Approvals, SafeTx};

#[derive(Debug, Args)]
pub(crate) struct DrillArgs {
    /// Chain id for the local chain.
    #[arg(long, default_value_t = 138)]
    chain_id: u64,
}

pub(crate) async fn run(args: DrillArgs) -> Result<()> {
    let started = Instant::now();
    let toolchain = Toolchain::discover()?;
    println!(
        "toolchain: anvil {}, solc {}",
        toolchain.anvil().display(),
        toolchain.solc().display()
    );

    let contracts = Contracts::compile(&toolchain)?;
    println!(
        "contracts: compiled ({})",
        if contracts.reused_cache() { "cache reused" } else { "fresh build" }
    );

    let options = TestbedOptions {
        devnet: DevnetOptions { chain_id: args.chain_id, ..DevnetOptions::default() },
        ..TestbedOptions::default()
    };
    let bed = Testbed::start(&toolchain, &contracts, &options).await?;
    let threshold = bed.safe.threshold().await?;
    println!("chain:     anvil at {} (chain id {})", bed.devnet.http_url(), bed.devnet.chain_id());
    println!(
        "safe:      {} (Safe 1.4.1, {} owners, threshold {threshold})",
        bed.safe.address(),
        bed.owners.len()
    );
    println!("targets:   SmartAccountFactory {}", bed.targets.factory);
    println!("           VaultV1 {} (previous)", bed.targets.vault_v1);
    println!("           VaultV2 {} (current)", bed.targets.vault_v2);

    let reader = bed.devnet.reader();
    let target = bed.targets.vault_v2;
    let nonce = bed.safe.nonce().await?;
    let tx = SafeTx::call(target, U256::ZERO, IPausable::pauseCall {}.abi_encode().into(), nonce);
    let hash = bed.safe.tx_hash(&tx);
    let onchain = bed.safe.onchain_tx_hash(&tx).await?;
    ensure!(hash == onchain, "local safeTxHash {hash} differs from the Safe's {onchain}");
    println!(
        "proposal:  pause() on VaultV2 at Safe nonce {nonce}, safeTxHash {hash} (matches the Safe)"
    );

    let mut approvals = Approvals::new();
    for owner in bed.owners.iter().take(threshold as usize) {
        approvals.insert(owner.address(), sign_safe_tx_hash(owner, hash)?);
        println!("approval:  {} signed", owner.address());
    }
    let execution =
        bed.safe.execute(&bed.deployer, &tx, &approvals, &SendOptions::default()).await?;
    ensure!(execution.success, "execTransaction did not emit ExecutionSuccess");
    println!(
        "executed:  tx {} in block {}",
        execution.receipt.transaction_hash,
        execution.receipt.block_number.unwrap_or_default()
    );
    ensure!(is_paused(&reader, target).await?, "VaultV2 is not paused after execution");
    println!("verified:  VaultV2.paused() == true");
    println!("drill passed in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
