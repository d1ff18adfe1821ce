//! `guardian run` as operators run it: the real binary, a config file, SIGKILL, dead endpoints
//! and a wrong chain.

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use alloy::{
    primitives::{B256, U256, utils::parse_ether},
    providers::{Provider, ext::AnvilApi},
};
use guardian_chain::{
    Devnet, DevnetOptions, Testbed,
    safe::deploy,
    testbed::{IVault, upgrade_proxied_vault},
};
use guardian_store::Store;

use crate::support::{
    Daemon, EVERY_WITHDRAWAL, GuardianToml, TcpSwitch, contracts, cursor, eventually, mined,
    testbed,
};

const DEADLINE: Duration = Duration::from_secs(60);

/// Deposit once, then `n` withdrawals of 1 wei, mining `gap` empty blocks after each. Returns
/// each withdrawal's (transaction hash, log index).
async fn withdrawals(bed: &Testbed, n: usize, gap: u64) -> BTreeSet<(B256, u64)> {
    let user = bed.devnet.provider_for(bed.devnet.signer(7).expect("dev key"));
    let vault = IVault::new(bed.targets.vault_v2, &user);
    let deposit = vault.deposit().value(parse_ether("1").expect("ether"));
    mined(&user, deposit.into_transaction_request()).await;
    let mut anomalies = BTreeSet::new();
    for _ in 0..n {
        let receipt = mined(&user, vault.withdraw(U256::from(1)).into_transaction_request()).await;
        let log = receipt.inner.logs().last().expect("Withdrawn log");
        anomalies.insert((receipt.transaction_hash, log.log_index.expect("index")));
        if gap > 0 {
            bed.devnet.reader().anvil_mine(Some(gap), None).await.expect("mine");
        }
    }
    anomalies
}

/// guardian.toml, guardian.sqlite and guardian.log in `dir`.
fn files(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    (dir.join("guardian.toml"), dir.join("guardian.sqlite"), dir.join("guardian.log"))
}

fn recorded(db: &std::path::Path) -> Vec<(B256, u64)> {
    let store = Store::open(db).expect("db");
    store
        .occurrences()
        .expect("occurrences")
        .into_iter()
        .map(|o| (o.tx_hash.expect("tx"), o.log_index.expect("log index")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_backfill_then_restart_records_every_anomaly_once() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, db, log) = files(dir.path());
    let mut toml = GuardianToml::new(&bed, &db, EVERY_WITHDRAWAL);
    toml.max_log_range = 20; // a hundred eth_getLogs steps over the gap
    toml.write(&config);

    // First run: the cursor starts at the head (and the start is logged: the line the last
    // assertion counts follows the cursor's commit); then guardian is down.
    let mut daemon = Daemon::start(&config, &log);
    let initial = eventually("the cursor to be initialised", DEADLINE, || {
        let started = std::fs::read_to_string(&log).ok()?.contains("starting to follow the chain");
        cursor(&db).filter(|_| started)
    })
    .await;
    daemon.kill();

    // While it is down: 40 anomalies spread over 2000 blocks (Anvil mines empty blocks at a few
    // milliseconds each, so more would only slow the suite down).
    let anomalies = withdrawals(&bed, 40, 50).await;
    let head = bed.devnet.reader().get_block_number().await.expect("head");

    // Second run: SIGKILL it once the backfill has committed some ranges but not all.
    let mut daemon = Daemon::start(&config, &log);
    let store = loop {
        // Opened once the daemon has the file; each read sees the latest commit (WAL).
        if let Ok(store) = Store::open(&db) {
            break store;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let deadline = std::time::Instant::now() + DEADLINE;
    let killed_at = loop {
        let at = store.cursor().expect("cursor").expect("initialised").number;
        if at > initial && at < head {
            daemon.kill();
            break at;
        }
        assert!(at < head, "the backfill finished before it could be interrupted");
        assert!(std::time::Instant::now() < deadline, "the backfill never started");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let after_kill = store.cursor().expect("cursor").expect("initialised").number;
    assert!(after_kill >= killed_at && after_kill < head, "killed mid-backfill: {after_kill}");
    assert!(recorded(&db).len() < anomalies.len(), "some anomalies were still ahead");
    drop(store);

    // Third run: resumes from the cursor and catches up.
    let _daemon = Daemon::start(&config, &log);
    eventually("the daemon to catch up", DEADLINE, || cursor(&db).filter(|c| *c >= head)).await;
    let seen = recorded(&db);
    let unique: BTreeSet<_> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "an anomaly was recorded twice: {seen:?}");
    assert_eq!(unique, anomalies, "every anomaly in the range, exactly once");
    let store = Store::open(&db).expect("db");
    assert_eq!(store.occurrence_count().expect("count"), anomalies.len() as u64);
    let log = std::fs::read_to_string(&log).expect("log");
    assert_eq!(
        log.matches("starting to follow the chain").count(),
        1,
        "restarts resume from the cursor, they do not start over:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_past_a_dead_endpoint_and_outlives_a_full_outage() {
    let bed = testbed().await;
    let switch = TcpSwitch::start(bed.devnet.http_url().port().expect("port")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, db, log) = files(dir.path());
    let mut toml = GuardianToml::new(&bed, &db, EVERY_WITHDRAWAL);
    // First endpoint: a closed port. Second: Anvil behind a switch the test can cut.
    toml.rpc = vec!["http://127.0.0.1:9".into(), format!("http://127.0.0.1:{}", switch.port())];
    toml.write(&config);
    let count = || Store::open(&db).ok().and_then(|s| s.occurrence_count().ok());

    let mut daemon = Daemon::start(&config, &log);
    eventually("the cursor to be initialised", DEADLINE, || {
        cursor(&db).or_else(|| {
            if daemon.exited().is_some() {
                panic!("guardian exited:\n{}", daemon.log())
            }
            None
        })
    })
    .await;
    withdrawals(&bed, 2, 0).await;
    eventually("two findings through the second endpoint", DEADLINE, || {
        count().filter(|n| *n == 2)
    })
    .await;

    // Both endpoints dead: the process stays up, logs failed steps and backs off.
    switch.set_up(false);
    let failures = |log: &str| log.matches("follower step failed").count();
    let before = failures(&daemon.log());
    withdrawals(&bed, 1, 0).await;
    let retries = eventually("retries to be logged", DEADLINE, || {
        let log = daemon.log();
        (failures(&log) >= before + 3).then_some(log)
    })
    .await;
    assert!(retries.contains("every RPC endpoint"), "{retries}");
    assert!(retries.contains("retry_in"), "{retries}");
    assert!(daemon.exited().is_none(), "guardian exited during the outage:\n{retries}");
    assert_eq!(count(), Some(2));

    // One endpoint returns: it resumes and records what happened meanwhile.
    switch.set_up(true);
    eventually("the withdrawal made during the outage", DEADLINE, || count().filter(|n| *n == 3))
        .await;
    assert!(daemon.exited().is_none(), "still running:\n{}", daemon.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_run_against_another_chain_naming_file_and_ids() {
    let (toolchain, _) = contracts();
    let devnet = Devnet::spawn(toolchain, &DevnetOptions::default()).expect("anvil");
    assert_eq!(devnet.chain_id(), 138);
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, db, log) = files(dir.path());
    std::fs::write(
        &config,
        format!(
            "[chain]\nid = 1\n\n[[rpc]]\nurl = \"{}\"\n\n[storage]\npath = \"{}\"\n\n[[contracts]]\nname = \"vault\"\naddress = \"0x1000000000000000000000000000000000000001\"\n",
            devnet.http_url(),
            db.display()
        ),
    )
    .expect("write");

    let mut daemon = Daemon::start(&config, &log);
    let status = eventually("guardian to exit", DEADLINE, || daemon.exited()).await;
    let stderr = daemon.log();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&config.display().to_string()), "names the file:\n{stderr}");
    assert!(stderr.contains("[chain] id = 1"), "names the setting:\n{stderr}");
    assert!(stderr.contains("chain id 138"), "names the node's chain:\n{stderr}");
    assert!(!db.exists(), "nothing written for the wrong chain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_implementation_swapped_while_the_daemon_was_down_is_caught_after_the_restart() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, db, log) = files(dir.path());
    // No `expected`: the rule learns the implementation it first sees.
    let rule = r#"
[[rules]]
name = "implementation"
kind = "code_change"
severity = "critical"
contracts = ["vault"]
target = "implementation"
"#;
    let mut toml = GuardianToml::new(&bed, &db, rule);
    toml.vault = bed.targets.proxied_vault;
    toml.write(&config);

    // The rogue implementation is already deployed; only the upgrade happens during the outage,
    // in the very first block after the daemon's cursor.
    let release = bed.devnet.provider_for(bed.release_key.clone());
    let (_, compiled) = contracts();
    let rogue = deploy(&release, compiled.get("VaultLogicRogue").expect("rogue"), &[])
        .await
        .expect("deploy rogue");

    let mut daemon = Daemon::start(&config, &log);
    let reader = bed.devnet.reader();
    reader.anvil_mine(Some(2), None).await.expect("mine");
    let head = reader.get_block_number().await.expect("head");
    eventually("the daemon to see the original implementation", DEADLINE, || {
        cursor(&db).filter(|&c| c >= head)
    })
    .await;
    daemon.kill();

    // While nothing watches, the release key swaps the implementation.
    let receipt =
        upgrade_proxied_vault(&release, &bed.targets, rogue).await.expect("upgradeAndCall");
    assert_eq!(receipt.block_number, Some(head + 1), "the first block the restart evaluates");
    reader.anvil_mine(Some(3), None).await.expect("mine");

    let _daemon = Daemon::start(&config, &log);
    let finding = eventually("the swap to be caught after the restart", DEADLINE, || {
        let store = Store::open(&db).ok()?;
        store.findings(None).ok()?.into_iter().find(|f| f.finding.rule == "implementation")
    })
    .await;
    assert_eq!(finding.finding.evidence.values["actual"], rogue.to_checksum(None));
    assert_eq!(
        finding.finding.evidence.values["expected"],
        bed.targets.vault_logic_v1.to_checksum(None)
    );
}

/// A port already in use for `[api] bind` stops `guardian run` at start, naming the address:
/// owners' `--api` calls must not reach whatever holds the port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_api_port_stops_the_start() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, db, log) = files(dir.path());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let text = GuardianToml::new(&bed, &db, EVERY_WITHDRAWAL)
        .render()
        .replace("bind = \"127.0.0.1:0\"", &format!("bind = \"127.0.0.1:{port}\""));
    std::fs::write(&config, text).expect("config");
    let mut daemon = Daemon::start(&config, &log);
    let status = eventually("guardian to exit", DEADLINE, || daemon.exited()).await;
    assert!(!status.success());
    let log = daemon.log();
    assert!(
        log.contains(&format!("binding the HTTP API to 127.0.0.1:{port} ([api] bind)")),
        "{log}"
    );
    assert!(!log.contains("guardian is following the chain"), "{log}");
    drop(taken);
}

/// A second `guardian run` on the same database refuses to start, naming the first one's pid;
/// after the first is killed with SIGKILL (no clean-up at all) a new one starts at once: the
/// lock died with its holder. A `-shm` left without its `-wal` is warned about at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_daemon_per_database_and_a_lost_wal_is_reported() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, db, log) = files(dir.path());
    GuardianToml::new(&bed, &db, EVERY_WITHDRAWAL).write(&config);
    let follows = |daemon: &mut Daemon| {
        assert!(daemon.exited().is_none(), "guardian exited:\n{}", daemon.log());
        daemon.log().contains("guardian is following the chain").then_some(())
    };
    let mut first = Daemon::start(&config, &log);
    eventually("the first daemon to follow", DEADLINE, || follows(&mut first)).await;

    let second_log = dir.path().join("second.log");
    let mut second = Daemon::start(&config, &second_log);
    let status = eventually("the second daemon to exit", DEADLINE, || second.exited()).await;
    assert!(!status.success());
    let said = second.log();
    assert!(said.contains("another guardian daemon is running on the database"), "{said}");
    assert!(said.contains(&format!("pid {}", first.pid())), "names the holder: {said}");
    assert!(first.exited().is_none(), "the first one runs on");

    // SIGKILL: nothing is released by guardian itself. A -shm without its -wal is left too.
    first.kill();
    let wal = dir.path().join("guardian.sqlite-wal");
    let _ = std::fs::remove_file(&wal);
    std::fs::write(dir.path().join("guardian.sqlite-shm"), b"").expect("shm");
    let third_log = dir.path().join("third.log");
    let mut third = Daemon::start(&config, &third_log);
    eventually("a new daemon to follow", DEADLINE, || follows(&mut third)).await;
    let said = third.log();
    assert!(said.contains("the database lost its write-ahead log"), "{said}");
    assert!(said.contains("guardian.sqlite-wal is not"), "{said}");
}
