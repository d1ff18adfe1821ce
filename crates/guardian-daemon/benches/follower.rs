//! Follower benchmark on a real Anvil (chain id 138): prints detection latency and backfill
//! throughput. Run with `cargo bench -p guardian-daemon --bench follower`.
//!
//! - Detection latency: a transaction emitting one anomalous log is mined; the clock runs from
//!   the moment its receipt is available (the block exists) until the finding is committed in
//!   SQLite, read through a second database connection. The daemon is woken by WebSocket new
//!   heads, as in production. p50/p99 over 200 blocks.
//! - Backfill throughput: 10 000 blocks holding 50 000 logs are mined before the follower
//!   starts; the clock runs until it has caught up. The rule matches every log and fires on
//!   on one in a thousand, so the figure measures fetching, decoding and evaluating, not SQLite
//!   inserts of 50 000 findings. The rule engine is guardian's own, built from config text.

#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::{
    primitives::{Address, U256},
    providers::{DynProvider, Provider, ext::AnvilApi},
    sol,
};
use eyre::{Result, WrapErr, ensure};
use guardian_chain::{Contracts, Testbed, TestbedOptions, Toolchain, safe::deploy};
use guardian_daemon::{Engine, Follower, FollowerOptions, Step, heads};
use guardian_rpc::RpcPool;
use guardian_store::Store;

sol! {
    #[sol(rpc)]
    interface ILoadGenerator {
        function emitWithdrawals(uint256 count, uint256 amount) external;
        event Withdrawn(address indexed account, address indexed to, uint256 amount);
    }
}

const LATENCY_BLOCKS: usize = 200;
const BACKFILL_TXS: u64 = 500;
const LOGS_PER_TX: u64 = 100;
const BLOCKS_PER_TX: u64 = 20;
/// Amounts at or above this fire the rule.
const FIRE_AT: u64 = 1_000_000;

/// guardian's own rule engine, built from config text like the daemon's: an event rule on the
/// load generator's `Withdrawn` with an amount threshold.
fn engine(target: Address) -> Result<Engine> {
    let toml = format!(
        r#"
[[rpc]]
url = "http://127.0.0.1:1"

[[contracts]]
name = "load"
address = "{target}"
events = ["Withdrawn(address indexed account, address indexed to, uint256 amount)"]

[[rules]]
name = "large-withdrawal"
kind = "event"
severity = "low"
contracts = ["load"]
event = "Withdrawn"
where = ["amount >= {FIRE_AT}"]
"#
    );
    let config =
        guardian_config::Config::parse(&toml, std::path::Path::new("bench.toml"), &|_| None)
            .map_err(|e| eyre::eyre!("{e}"))?;
    Ok(Engine::new(config.rule_engine().map_err(|e| eyre::eyre!("{e}"))?))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn send(
    generator: &ILoadGenerator::ILoadGeneratorInstance<&DynProvider>,
    count: u64,
    amount: u64,
) -> Result<()> {
    let receipt = generator
        .emitWithdrawals(U256::from(count), U256::from(amount))
        .gas(5_000_000)
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "load transaction reverted");
    Ok(())
}

async fn backfill(bed: &Testbed, generator: Address, wallet: &DynProvider) -> Result<()> {
    let reader = bed.devnet.reader();
    let start = reader.get_block_number().await? + 1;
    let g = ILoadGenerator::new(generator, wallet);
    for i in 0..BACKFILL_TXS {
        // One log in a thousand fires the rule: the last log of every tenth transaction.
        let amount = if i % 10 == 0 { FIRE_AT - (LOGS_PER_TX - 1) } else { 1 };
        send(&g, LOGS_PER_TX, amount).await?;
        reader.anvil_mine(Some(BLOCKS_PER_TX - 1), None).await?;
    }
    let end = reader.get_block_number().await?;
    let blocks = end - start + 1;
    let logs = BACKFILL_TXS * LOGS_PER_TX;

    let dir = tempfile::tempdir()?;
    let rpc = Arc::new(RpcPool::new(vec![bed.devnet.http_url()], 138, Duration::from_secs(30))?);
    let options =
        FollowerOptions { start_block: Some(start), backfill_threshold: 8, ..Default::default() };
    let mut follower = Follower::new(
        rpc,
        Store::open(dir.path().join("bench.sqlite"))?,
        engine(generator)?,
        options,
    );
    let started = Instant::now();
    while follower.step().await? != Step::Idle {}
    let elapsed = started.elapsed();
    let fired = follower.store().occurrence_count()?;
    ensure!(fired == BACKFILL_TXS / 10, "expected {} occurrences, got {fired}", BACKFILL_TXS / 10);
    println!(
        "backfill: {blocks} blocks, {logs} logs in {:.2} s = {:.0} blocks/s, {:.0} logs/s ({fired} occurrences recorded)",
        elapsed.as_secs_f64(),
        blocks as f64 / elapsed.as_secs_f64(),
        logs as f64 / elapsed.as_secs_f64(),
    );
    Ok(())
}

async fn latency(bed: &Testbed, generator: Address, wallet: &DynProvider) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("latency.sqlite");
    let rpc = Arc::new(RpcPool::new(vec![bed.devnet.ws_url()], 138, Duration::from_secs(10))?);
    let start = bed.devnet.reader().get_block_number().await? + 1;
    let options = FollowerOptions { start_block: Some(start), ..Default::default() };
    let mut follower = Follower::new(rpc.clone(), Store::open(&db)?, engine(generator)?, options);
    let heads = heads::spawn(rpc);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let daemon = tokio::spawn(async move { follower.run(heads, stop_rx).await });
    let observer = Store::open(&db)?;
    tokio::time::sleep(Duration::from_millis(500)).await; // let it subscribe and initialise

    let g = ILoadGenerator::new(generator, wallet);
    let mut samples = Vec::with_capacity(LATENCY_BLOCKS);
    for i in 0..LATENCY_BLOCKS {
        let before = observer.occurrence_count()?;
        send(&g, 1, FIRE_AT + i as u64).await?;
        let available = Instant::now();
        loop {
            if observer.occurrence_count()? > before {
                break;
            }
            ensure!(available.elapsed() < Duration::from_secs(10), "finding never committed");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        samples.push(available.elapsed());
    }
    stop.send_replace(true);
    daemon.await??;
    samples.sort();
    println!(
        "detection latency over {LATENCY_BLOCKS} blocks (receipt available -> finding committed): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&samples, 0.50).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let toolchain = Toolchain::discover()?;
    let contracts = Contracts::compile(&toolchain)?;
    let bed = Testbed::start(&toolchain, &contracts, &TestbedOptions::default()).await?;
    let wallet = bed.devnet.provider_for(bed.devnet.signer(9)?);
    let generator = deploy(&wallet, contracts.get("LoadGenerator")?, &[])
        .await
        .wrap_err("deploying LoadGenerator")?;
    latency(&bed, generator, &wallet).await?;
    backfill(&bed, generator, &wallet).await?;
    Ok(())
}
