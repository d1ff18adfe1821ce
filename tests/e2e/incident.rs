//! The whole incident through `guardian run`: a drain of VaultV2 → Critical finding → pause
//! proposal → one off-chain approval from the CLI and one on-chain `approveHash` → the daemon
//! executes, verifies `paused()`, and rolls the deployment config back to VaultV1.

use std::{path::Path, time::Duration};

use alloy::{
    primitives::{U256, utils::parse_ether},
    providers::Provider,
};
use guardian_chain::{Testbed, safe::is_paused, testbed::IVault};
use guardian_rehearse::stage::{VAULT_ROLLBACK_TOML, write_vault_deployment};

use crate::support::{Daemon, TcpSwitch, eventually, guardian, key_hex, testbed};

const DEADLINE: Duration = Duration::from_secs(90);

/// guardian.toml, the managed deployment config and the version history, in `dir`. Without
/// `rollback` the contract is only paused (no `[rollback]` table, `on_pause` left at pause).
async fn write_files(bed: &Testbed, dir: &Path, rollback: bool) {
    let reader = bed.devnet.reader();
    write_vault_deployment(&reader, &bed.targets, 138, dir).await.expect("deployment files");
    let v2 = bed.targets.vault_v2;
    let mut toml = format!(
        r#"[chain]
poll_interval_ms = 100

[[rpc]]
url = "{url}"

[storage]
path = "guardian.sqlite"

[api]
bind = "127.0.0.1:0"

[safe]
address = "{safe}"
executor_key_env = "TEST_EXECUTOR_KEY"

[[contracts]]
name = "vault"
address = "{v2}"
events = ["Withdrawn(address indexed account, address indexed to, uint256 amount)"]
on_pause = "{on_pause}"

[[rules]]
name = "vault-drain"
kind = "event"
severity = "critical"
contracts = ["vault"]
event = "Withdrawn"
where = ["amount > 1 ether"]
"#,
        url = bed.devnet.http_url(),
        safe = bed.safe.address(),
        on_pause = if rollback { "rollback" } else { "pause" },
    );
    if rollback {
        toml.push('\n');
        toml.push_str(VAULT_ROLLBACK_TOML);
    }
    std::fs::write(dir.join("guardian.toml"), toml).expect("guardian.toml");
}

/// `guardian run` on the config in `dir`, sending with `executor`, once it follows the chain.
async fn start_daemon(dir: &Path, executor: &alloy::signers::local::PrivateKeySigner) -> Daemon {
    let mut daemon = Daemon::start_with_env(
        &dir.join("guardian.toml"),
        &dir.join("guardian.log"),
        &[("TEST_EXECUTOR_KEY", key_hex(executor))],
    );
    eventually("the daemon to follow the chain", DEADLINE, || {
        assert!(daemon.exited().is_none(), "guardian exited:\n{}", daemon.log());
        daemon.log().contains("guardian is following the chain").then_some(())
    })
    .await;
    daemon
}

/// The incident: a deposit, then VaultV2's buggy sponsoredWithdraw drains 2 ether.
async fn drain_vault(bed: &Testbed) {
    let user = bed.devnet.provider_for(bed.devnet.signer(7).expect("key"));
    let vault = IVault::new(bed.targets.vault_v2, &user);
    let deposit = vault.deposit().value(parse_ether("3").expect("ether"));
    deposit.send().await.expect("sent").get_receipt().await.expect("mined");
    let attacker = bed.devnet.signer(8).expect("key").address();
    let drain = vault.sponsoredWithdraw(attacker, parse_ether("2").expect("ether"));
    drain.send().await.expect("sent").get_receipt().await.expect("mined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_is_paused_through_the_safe_and_configs_roll_back() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(&bed, dir.path(), true).await;
    let config = dir.path().join("guardian.toml");
    let cfg = config.to_str().expect("utf-8");
    let managed = dir.path().join("smart-accounts-config.json");
    let before = std::fs::read_to_string(&managed).expect("read");

    let mut daemon = start_daemon(dir.path(), &bed.deployer).await;
    drain_vault(&bed).await;

    // A pause proposal appears for the finding.
    let hash = eventually("a pause proposal", DEADLINE, || {
        assert!(daemon.exited().is_none(), "guardian exited:\n{}", daemon.log());
        pending_pause(cfg)
    })
    .await;
    assert!(!is_paused(&bed.devnet.reader(), bed.targets.vault_v2).await.expect("paused()"));

    // One owner signs off chain through the CLI; a second approves on chain.
    approve(cfg, &hash, &bed.owners[0], false);
    approve(cfg, &hash, &bed.owners[1], true);

    // The daemon executes, verifies the pause and rolls the config back to V1.
    let reader = bed.devnet.reader();
    eventually("the rollback to VaultV1", DEADLINE, || {
        assert!(daemon.exited().is_none(), "guardian exited:\n{}", daemon.log());
        let now = std::fs::read_to_string(&managed).ok()?;
        now.contains(&bed.targets.vault_v1.to_string()).then_some(())
    })
    .await;
    assert!(is_paused(&reader, bed.targets.vault_v2).await.expect("paused()"), "VaultV2 paused");
    let after = std::fs::read_to_string(&managed).expect("read");
    assert_eq!(
        after,
        before.replace(&bed.targets.vault_v2.to_string(), &bed.targets.vault_v1.to_string()),
        "only the vault address changed"
    );
    assert_eq!(bed.safe.nonce().await.expect("nonce"), U256::from(1), "one execution");

    let (ok, stdout, stderr) =
        guardian(&["proposals", "show", &hash, "--json", "--config", cfg], &[]);
    assert!(ok, "{stderr}");
    let detail: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let text = detail.to_string();
    assert!(text.contains("\"executed\""), "{stdout}");
    let (ok, stdout, stderr) =
        guardian(&["incidents", "show", "1", "--json", "--config", cfg], &[]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("\"rollback_done\""),
        "the rollback is in the incident's timeline: {stdout}"
    );
    // A backup of the pre-rollback config exists, so the rollback can be undone.
    let backups: Vec<_> = std::fs::read_dir(dir.path().join("backups"))
        .expect("backups")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with("smart-accounts-config_") && n.ends_with(".json"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
}

/// `guardian approve` of `hash` by `owner` against the daemon behind `cfg`: an off-chain
/// signature, or `approveHash` on chain.
fn approve(cfg: &str, hash: &str, owner: &alloy::signers::local::PrivateKeySigner, onchain: bool) {
    let mut args =
        vec!["approve", hash, "--yes", "--private-key-env", "OWNER_KEY", "--config", cfg];
    if onchain {
        args.push("--onchain");
    }
    let (ok, stdout, stderr) = guardian(&args, &[("OWNER_KEY", key_hex(owner))]);
    assert!(ok, "approve (onchain: {onchain}) failed:\n{stdout}\n{stderr}");
}

/// The pending pause proposal's safeTxHash, as the daemon behind `cfg` lists it.
fn pending_pause(cfg: &str) -> Option<String> {
    let (ok, stdout, _) = guardian(&["proposals", "list", "--json", "--config", cfg], &[]);
    let list: serde_json::Value = serde_json::from_str(&stdout).ok().filter(|_| ok)?;
    list.as_array()?
        .iter()
        .find(|p| p["kind"] == "pause" && p["status"] == "pending")
        .and_then(|p| p["safe_tx_hash"].as_str().map(str::to_owned))
}

fn status(cfg: &str, hash: &str) -> Option<String> {
    let (ok, stdout, _) = guardian(&["proposals", "show", hash, "--json", "--config", cfg], &[]);
    let detail: serde_json::Value = serde_json::from_str(&stdout).ok().filter(|_| ok)?;
    detail["status"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_safe_execute_the_pause_exactly_once() {
    let bed = testbed().await;
    let (a, b) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    write_files(&bed, a.path(), false).await;
    write_files(&bed, b.path(), false).await;
    let (cfg_a, cfg_b) = (a.path().join("guardian.toml"), b.path().join("guardian.toml"));
    let (cfg_a, cfg_b) = (cfg_a.to_str().expect("utf-8"), cfg_b.to_str().expect("utf-8"));
    // Two replicas, each with its own database and its own executor key, no coordinator.
    let mut daemons = [
        start_daemon(a.path(), &bed.deployer).await,
        start_daemon(b.path(), &bed.devnet.signer(9).expect("key")).await,
    ];
    drain_vault(&bed).await;

    // Both replicas derive the same proposal on their own.
    let hash_a = eventually("replica A's proposal", DEADLINE, || pending_pause(cfg_a)).await;
    let hash_b = eventually("replica B's proposal", DEADLINE, || pending_pause(cfg_b)).await;
    assert_eq!(hash_a, hash_b, "same target, calldata and nonce: same safeTxHash");

    // Owner 0 hands its signature to both replicas; owner 1 approves on chain once.
    approve(cfg_a, &hash_a, &bed.owners[0], false);
    approve(cfg_b, &hash_a, &bed.owners[0], false);
    approve(cfg_a, &hash_a, &bed.owners[1], true);

    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let statuses = [status(cfg_a, &hash_a), status(cfg_b, &hash_a)];
        if statuses.iter().all(|s| s.as_deref() == Some("executed")) {
            break;
        }
        for daemon in &mut daemons {
            assert!(daemon.exited().is_none(), "guardian exited:\n{}", daemon.log());
        }
        if std::time::Instant::now() > deadline {
            let tail = |log: String| log.lines().rev().take(15).collect::<Vec<_>>().join("\n");
            panic!(
                "not executed on both replicas: {statuses:?}\nA:\n{}\nB:\n{}",
                tail(daemons[0].log()),
                tail(daemons[1].log())
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reader = bed.devnet.reader();
    assert!(is_paused(&reader, bed.targets.vault_v2).await.expect("paused()"));
    assert_eq!(bed.safe.nonce().await.expect("nonce"), U256::from(1), "one execution");
    let successes = reader
        .get_logs(
            &alloy::rpc::types::Filter::new()
                .address(bed.safe.address())
                .event_signature(<guardian_chain::safe::ISafe::ExecutionSuccess as alloy::sol_types::SolEvent>::SIGNATURE_HASH)
                .from_block(0u64),
        )
        .await
        .expect("logs");
    assert_eq!(successes.len(), 1, "exactly one execTransaction succeeded");
    assert_eq!(successes[0].topics()[1].to_string(), hash_a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pause_goes_through_the_second_endpoint_when_the_first_dies() {
    let bed = testbed().await;
    let switch = TcpSwitch::start(bed.devnet.http_url().port().expect("port")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(&bed, dir.path(), false).await;
    // Two endpoints: Anvil behind a switch first (the one everything starts on), then Anvil.
    let config = dir.path().join("guardian.toml");
    let anvil = format!("[[rpc]]\nurl = \"{}\"\n", bed.devnet.http_url());
    let toml = std::fs::read_to_string(&config).expect("read").replace(
        &anvil,
        &format!("[[rpc]]\nurl = \"http://127.0.0.1:{}\"\n\n{anvil}", switch.port()),
    );
    std::fs::write(&config, toml).expect("write");
    let cfg = config.to_str().expect("utf-8");

    let mut daemon = start_daemon(dir.path(), &bed.deployer).await;
    // The endpoint the daemon (and its pause flow) started on dies before the incident.
    switch.set_up(false);
    drain_vault(&bed).await;

    // Proposal, approvals through the CLI and execution all go through the second endpoint.
    let hash = eventually("a pause proposal", DEADLINE, || {
        assert!(daemon.exited().is_none(), "guardian exited:\n{}", daemon.log());
        pending_pause(cfg)
    })
    .await;
    approve(cfg, &hash, &bed.owners[0], false);
    approve(cfg, &hash, &bed.owners[1], true);
    eventually("the pause to be executed", DEADLINE, || {
        assert!(daemon.exited().is_none(), "guardian exited:\n{}", daemon.log());
        (status(cfg, &hash).as_deref() == Some("executed")).then_some(())
    })
    .await;
    assert!(is_paused(&bed.devnet.reader(), bed.targets.vault_v2).await.expect("paused()"));
    assert_eq!(bed.safe.nonce().await.expect("nonce"), U256::from(1), "one execution");
}
