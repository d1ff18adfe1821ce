//! The follower against a real Anvil: recording, exactly-once across restarts, reorgs and
//! endpoint failover.

use std::time::Duration;

use alloy::{
    primitives::{Address, U256, utils::parse_ether},
    providers::{Provider, ext::AnvilApi},
    rpc::types::anvil::ReorgOptions,
};
use guardian_chain::{Testbed, testbed::IVault};
use guardian_core::severity::{Action, Severity};
use guardian_daemon::{Engine, Follower, FollowerOptions, Step};
use guardian_store::{FindingStatus, Store};

use crate::support::{EVERY_WITHDRAWAL, GuardianToml, TcpSwitch, drain_until_idle, pool, testbed};

/// The rule engine built from a config file, as `guardian run` builds it: every `Withdrawn` of
/// the vault is a critical finding. Chain, RPC, rules and store are all real.
fn every_withdrawal(bed: &Testbed) -> Engine {
    GuardianToml::new(bed, std::path::Path::new("/unused.sqlite"), EVERY_WITHDRAWAL).engine()
}

/// Deposit once, then `n` withdrawals, each in its own block (Anvil automines).
async fn withdrawals(bed: &Testbed, vault: Address, n: usize) {
    let user = bed.devnet.provider_for(bed.devnet.signer(7).expect("dev key"));
    let v = IVault::new(vault, &user);
    v.deposit()
        .value(parse_ether("10").expect("ether"))
        .send()
        .await
        .expect("deposit")
        .get_receipt()
        .await
        .expect("mined");
    for _ in 0..n {
        v.withdraw(U256::from(1_000u64))
            .send()
            .await
            .expect("withdraw")
            .get_receipt()
            .await
            .expect("mined");
    }
}

#[tokio::test]
async fn records_each_anomaly_once_across_a_restart_mid_backfill() {
    let bed = testbed().await;
    let vault = bed.targets.vault_v2;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("guardian.sqlite");
    let rpc = pool(&[bed.devnet.http_url().to_string()]);
    let start = bed.devnet.reader().get_block_number().await.expect("head") + 1;

    withdrawals(&bed, vault, 12).await;
    bed.devnet.reader().anvil_mine(Some(200), None).await.expect("mine");
    withdrawals(&bed, vault, 8).await;

    let options = FollowerOptions {
        start_block: Some(start),
        max_range: 16,
        backfill_threshold: 4,
        ..Default::default()
    };
    // First run: stop part-way through the backfill (as a crash between commits would).
    let mut first = Follower::new(
        rpc.clone(),
        Store::open(&db).expect("db"),
        every_withdrawal(&bed),
        options.clone(),
    );
    for _ in 0..6 {
        first.step().await.expect("step");
    }
    let cursor = first.store().cursor().expect("cursor").expect("some").number;
    let head = bed.devnet.reader().get_block_number().await.expect("head");
    assert!(cursor < head, "stopped mid-backfill (cursor {cursor}, head {head})");
    drop(first);

    let mut second =
        Follower::new(rpc, Store::open(&db).expect("db"), every_withdrawal(&bed), options);
    drain_until_idle(&mut second).await;
    let store = second.store();
    assert_eq!(store.occurrence_count().expect("count"), 20, "every withdrawal exactly once");
    let open = store.findings(Some(FindingStatus::Open)).expect("findings");
    assert_eq!(open.len(), 1, "one open finding per rule and contract");
    assert_eq!(open[0].occurrences, 20);
    assert_eq!(open[0].finding.rule, "withdrawn");
    assert_eq!(open[0].finding.address, vault);
    assert_eq!(open[0].finding.severity, Severity::Critical);
    assert_eq!(open[0].finding.action, Action::PauseNow { then_rollback: false });
}

#[tokio::test]
async fn reorg_orphaning_the_anomaly_retracts_its_finding() {
    let bed = testbed().await;
    let vault = bed.targets.vault_v2;
    let reader = bed.devnet.reader();
    let rpc = pool(&[bed.devnet.http_url().to_string()]);
    let start = reader.get_block_number().await.expect("head") + 1;
    let options = FollowerOptions { start_block: Some(start), ..Default::default() };
    let mut follower =
        Follower::new(rpc, Store::in_memory().expect("db"), every_withdrawal(&bed), options);

    withdrawals(&bed, vault, 1).await;
    drain_until_idle(&mut follower).await;
    let found = follower.store().findings(Some(FindingStatus::Open)).expect("findings");
    assert_eq!(found.len(), 1);
    let anomaly_block = found[0].finding.evidence.block_number;

    // Replace the block holding the withdrawal (and everything after it) with empty blocks.
    let head = reader.get_block_number().await.expect("head");
    let depth = head - anomaly_block + 1;
    reader.anvil_reorg(ReorgOptions { depth, tx_block_pairs: vec![] }).await.expect("anvil_reorg");

    let mut saw_reorg = false;
    for _ in 0..100 {
        match follower.step().await.expect("step") {
            Step::Reorg { ancestor, retracted, .. } => {
                assert!(ancestor < anomaly_block);
                assert_eq!(retracted, vec![found[0].id]);
                saw_reorg = true;
            }
            Step::Idle => break,
            Step::Processed { .. } => {}
        }
    }
    assert!(saw_reorg, "the reorg was detected");
    let finding = follower.store().finding(found[0].id).expect("finding").expect("exists");
    assert_eq!(finding.status, FindingStatus::Retracted);
    assert!(follower.store().findings(Some(FindingStatus::Open)).expect("open").is_empty());
}

#[tokio::test]
async fn fails_over_from_a_dead_endpoint_and_survives_a_full_outage() {
    let bed = testbed().await;
    let vault = bed.targets.vault_v2;
    let switch = TcpSwitch::start(bed.devnet.http_url().port().expect("port")).await;
    // First endpoint: a closed port. Second: Anvil behind a switch we can cut.
    let dead = "http://127.0.0.1:9".to_owned();
    let rpc = pool(&[dead, format!("http://127.0.0.1:{}", switch.port())]);
    let start = bed.devnet.reader().get_block_number().await.expect("head") + 1;
    let options = FollowerOptions {
        start_block: Some(start),
        poll_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let mut follower = Follower::new(
        rpc.clone(),
        Store::in_memory().expect("db"),
        every_withdrawal(&bed),
        options,
    );

    withdrawals(&bed, vault, 2).await;
    drain_until_idle(&mut follower).await;
    assert_eq!(rpc.current(), 1, "moved to the live endpoint");
    assert_eq!(follower.store().occurrence_count().expect("count"), 2);

    // Both endpoints dead: steps fail (the run loop backs off), nothing crashes.
    switch.set_up(false);
    withdrawals(&bed, vault, 1).await;
    let err = follower.step().await.expect_err("no endpoint answers");
    assert!(format!("{err:#}").contains("every RPC endpoint"), "{err:#}");

    // The endpoint returns: the run loop catches up on its own.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (_heads_tx, heads_rx) = tokio::sync::watch::channel(None);
    let handle = tokio::spawn(async move {
        follower.run(heads_rx, stop_rx).await.expect("run");
        follower
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    switch.set_up(true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_tx.send(true).expect("stop");
    let follower = handle.await.expect("joined");
    assert_eq!(follower.store().occurrence_count().expect("count"), 3, "resumed after the outage");
}

#[tokio::test]
async fn window_findings_on_blocks_without_logs_carry_the_real_block_hash() {
    // During backfill only blocks with logs come with a hash; a window still above its
    // threshold fires on the empty blocks after them too, and those findings must point at
    // real blocks (evidence, reorg detection), not at a zero hash.
    let bed = testbed().await;
    let rules = r#"
[[rules]]
name = "many-withdrawals"
kind = "window"
severity = "critical"
contracts = ["vault"]
event = "Withdrawn"
blocks = 20
threshold = 3
"#;
    let engine = GuardianToml::new(&bed, std::path::Path::new("/unused.sqlite"), rules).engine();
    let reader = bed.devnet.reader();
    let start = reader.get_block_number().await.expect("head") + 1;
    withdrawals(&bed, bed.targets.vault_v2, 4).await;
    reader.anvil_mine(Some(5), None).await.expect("mine");
    reader.anvil_mine(Some(40), None).await.expect("mine past the window");

    let rpc = pool(&[bed.devnet.http_url().to_string()]);
    let options = FollowerOptions {
        start_block: Some(start),
        max_range: 8,
        backfill_threshold: 2,
        ..Default::default()
    };
    let mut follower = Follower::new(rpc, Store::in_memory().expect("db"), engine, options);
    drain_until_idle(&mut follower).await;

    let occurrences = follower.store().occurrences().expect("occurrences");
    assert!(occurrences.len() > 1, "the window fired on the empty blocks after the drain too");
    for o in occurrences {
        let block = reader
            .get_block_by_number(o.block_number.into())
            .await
            .expect("rpc")
            .expect("block exists");
        assert_eq!(o.block_hash, block.header.hash, "block {} has its real hash", o.block_number);
    }
}

#[tokio::test]
async fn switches_away_from_an_endpoint_that_stopped_following_the_chain() {
    // The first endpoint answers every request but its head never moves: an Anvil forked from
    // the real chain at its current block, which sees none of the later blocks.
    let bed = testbed().await;
    let (toolchain, _) = crate::support::contracts();
    let stalled = guardian_chain::Devnet::spawn(
        toolchain,
        &guardian_chain::DevnetOptions {
            fork_url: Some(bed.devnet.http_url().to_string()),
            ..Default::default()
        },
    )
    .expect("forked anvil");
    let rpc = pool(&[stalled.http_url().to_string(), bed.devnet.http_url().to_string()]);
    let options = FollowerOptions { stall_after: Duration::from_millis(300), ..Default::default() };
    let mut follower = Follower::new(
        rpc.clone(),
        Store::in_memory().expect("db"),
        every_withdrawal(&bed),
        options,
    );
    drain_until_idle(&mut follower).await;
    assert_eq!(rpc.current(), 0, "starts on the first endpoint");

    withdrawals(&bed, bed.targets.vault_v2, 2).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while follower.store().occurrence_count().expect("count") < 2 {
        assert!(std::time::Instant::now() < deadline, "never left the stalled endpoint");
        if follower.step().await.expect("step") == Step::Idle {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(rpc.current(), 1, "switched to the endpoint that follows the chain");
}

#[tokio::test]
async fn new_heads_resume_after_the_websocket_connection_drops() {
    let bed = testbed().await;
    let switch = TcpSwitch::start(bed.devnet.http_url().port().expect("port")).await;
    let rpc = pool(&[format!("ws://127.0.0.1:{}", switch.port())]);
    let mut heads = guardian_daemon::heads::spawn(rpc);
    let reader = bed.devnet.reader();
    // Wait until subscribed: mine until a head is pushed.
    let first = loop {
        reader.anvil_mine(Some(1), None).await.expect("mine");
        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_millis(500), heads.changed()).await
        {
            break heads.borrow_and_update().map_or(0, |h| h.header.block.number);
        }
    };

    // Cut the connection (as a restarting node or a proxy would), then restore it.
    switch.set_up(false);
    reader.anvil_mine(Some(1), None).await.expect("mine while down");
    tokio::time::sleep(Duration::from_millis(300)).await;
    switch.set_up(true);
    let mut after = 0;
    for _ in 0..20 {
        reader.anvil_mine(Some(1), None).await.expect("mine");
        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_millis(1500), heads.changed()).await
        {
            after = heads.borrow_and_update().map_or(0, |h| h.header.block.number);
            if after > first + 1 {
                break;
            }
        }
    }
    assert!(after > first + 1, "heads resumed after the drop (first {first}, after {after})");
}

/// `[chain] start_block = 0` on a fresh database: `guardian run` backfills the whole history
/// and records every matching event of it, each once.
#[tokio::test]
async fn a_fresh_database_from_start_block_0_records_every_event_in_history() {
    let bed = testbed().await;
    let (_, contracts) = crate::support::contracts();
    let wallet = bed.devnet.provider_for(bed.devnet.signer(9).expect("dev key"));
    let generator = guardian_chain::safe::deploy(
        &wallet,
        contracts.get("LoadGenerator").expect("compiled"),
        &[],
    )
    .await
    .expect("deploy LoadGenerator");
    // 300 matching events in three transactions, with quiet blocks between them.
    let reader = bed.devnet.reader();
    for _ in 0..3 {
        let call = ILoad::emitWithdrawalsCall { count: U256::from(100), amount: U256::from(1) };
        let tx = alloy::rpc::types::TransactionRequest::default()
            .to(generator)
            .input(alloy::sol_types::SolCall::abi_encode(&call).into())
            .gas_limit(5_000_000);
        let receipt = crate::support::mined(&wallet, tx).await;
        assert!(receipt.status(), "load transaction mined");
        reader.anvil_mine(Some(100), None).await.expect("mine");
    }
    let head = reader.get_block_number().await.expect("head");

    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("guardian.sqlite");
    let rule = r#"
[[rules]]
name = "withdrawn"
kind = "event"
severity = "low"
contracts = ["vault"]
event = "Withdrawn"
"#;
    let mut toml = crate::support::GuardianToml::new(&bed, &db, rule);
    toml.vault = generator;
    toml.start_block = Some("0".into());
    let config = dir.path().join("guardian.toml");
    toml.write(&config);
    let daemon = crate::support::Daemon::start(&config, &dir.path().join("guardian.log"));
    crate::support::eventually("the daemon to reach the head", Duration::from_secs(60), || {
        crate::support::cursor(&db).filter(|c| *c >= head)
    })
    .await;
    let store = Store::open(&db).expect("db");
    assert_eq!(store.occurrence_count().expect("count"), 300, "every event of the history, once");
    let log = daemon.log();
    assert!(log.contains("starting to follow the chain") && log.contains("block=0"), "{log}");
}

alloy::sol! {
    interface ILoad {
        function emitWithdrawals(uint256 count, uint256 amount) external;
    }
}

/// Anvil writes the states it moves out of memory into the Devnet's own folder rather than
/// `~/.foundry/anvil/tmp`, which it clears only on a clean shutdown (an Anvil killed on drop
/// left gigabytes there), and the folder goes with the Devnet.
#[tokio::test]
async fn a_devnets_history_on_disk_goes_with_it() {
    let (toolchain, _) = crate::support::contracts();
    let devnet =
        guardian_chain::Devnet::spawn(toolchain, &guardian_chain::DevnetOptions::default())
            .expect("anvil");
    let dir = devnet.history_dir().to_path_buf();
    // Past the few hundred states Anvil keeps in memory.
    devnet.reader().anvil_mine(Some(1_200), None).await.expect("mine");
    let states = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| std::fs::read_dir(entry.path()).ok())
            .map(|files| files.count())
            .sum::<usize>()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while states(&dir) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(states(&dir) > 0, "Anvil wrote no state into {}", dir.display());
    drop(devnet);
    assert!(!dir.exists(), "{} outlived its Devnet", dir.display());
}
