//! The whole incident through `guardian run` as a process, against a real Anvil and Safe: a
//! drain of VaultV2 → Critical finding → incident → pause proposal → approvals from the CLI
//! and on chain → the daemon executes, verifies `paused()`, rolls the deployment config back.
//! Then what broke after the first finding: two rules on one contract, a manual pause before
//! the findings, reorgs that orphan or re-include the drain, kill -9 after the send and during
//! the rollback, an owner executing with cast, a receiver that is down, escalations.

use std::{path::Path, time::Duration};

use alloy::{
    primitives::{Address, B256, Bytes, U256, utils::parse_ether},
    providers::{Provider, ext::AnvilApi},
    rpc::types::anvil::{ReorgOptions, TransactionData},
    signers::local::PrivateKeySigner,
};
use guardian_chain::{
    Testbed, TestbedOptions,
    devnet::DevnetOptions,
    safe::{is_paused, sign_safe_tx_hash},
    sender::SendOptions,
    testbed::IVault,
};
use guardian_core::safe::Approvals;
use guardian_rehearse::stage::{VAULT_ROLLBACK_TOML, write_vault_deployment};

use crate::support::{
    Daemon, Receiver, TcpSwitch, drain_toml, eventually, guardian, key_hex, safe_tx_hash, testbed,
    testbed_with,
};

const DEADLINE: Duration = Duration::from_secs(90);

/// How a test's guardian is laid out.
#[derive(Debug, Clone, Default)]
struct Setup {
    /// `on_pause = "rollback"` and the `[rollback]` tables for the vault.
    rollback: bool,
    /// No `executor_key_env`: this replica proposes and counts, never executes.
    no_executor: bool,
    /// More TOML (rules, `[webhook]`, `[response]`).
    extra: String,
    /// The drain rule's severity.
    severity: Option<&'static str>,
    /// More `[rollback]` TOML, after the vault's (restart hooks, health checks).
    recovery: String,
}

/// guardian.toml, the managed deployment config and the version history, in `dir`.
async fn write_files(bed: &Testbed, dir: &Path, setup: &Setup) {
    let reader = bed.devnet.reader();
    write_vault_deployment(&reader, &bed.targets, 138, dir).await.expect("deployment files");
    let mut toml = drain_toml(
        bed,
        "bind = \"127.0.0.1:0\"",
        !setup.no_executor,
        setup.rollback,
        setup.severity.unwrap_or("critical"),
    );
    toml.push('\n');
    toml.push_str(&setup.extra);
    if setup.rollback {
        toml.push('\n');
        toml.push_str(VAULT_ROLLBACK_TOML);
        toml.push('\n');
        toml.push_str(&setup.recovery);
    }
    std::fs::write(dir.join("guardian.toml"), toml).expect("guardian.toml");
}

/// `guardian run` on the config in `dir` with `env`, once it follows the chain.
async fn start_daemon_with(dir: &Path, env: &[(&str, String)]) -> Daemon {
    let mut daemon =
        Daemon::start_with_env(&dir.join("guardian.toml"), &dir.join("guardian.log"), env);
    eventually("the daemon to follow the chain", DEADLINE, || {
        assert!(daemon.exited().is_none(), "guardian exited:\n{}", daemon.log());
        daemon.log().contains("guardian is following the chain").then_some(())
    })
    .await;
    daemon
}

/// `guardian run` on the config in `dir`, executing with the deployer's key and notifying the
/// webhook `[webhook] url_env = "TEST_WEBHOOK_URL"` at `http://127.0.0.1:{port}/hook`.
async fn start_notifying(dir: &Path, bed: &Testbed, port: u16) -> Daemon {
    let url = format!("http://127.0.0.1:{port}/hook");
    start_daemon_with(
        dir,
        &[("TEST_EXECUTOR_KEY", key_hex(&bed.deployer)), ("TEST_WEBHOOK_URL", url)],
    )
    .await
}

/// `guardian run` on the config in `dir`, sending with `executor`, once it follows the chain.
async fn start_daemon(dir: &Path, executor: &PrivateKeySigner) -> Daemon {
    start_daemon_with(dir, &[("TEST_EXECUTOR_KEY", key_hex(executor))]).await
}

/// The incident: a deposit, then VaultV2's buggy sponsoredWithdraw drains 2 ether. Returns
/// the drain's transaction hash and block.
async fn drain_vault(bed: &Testbed) -> (B256, u64) {
    let user = bed.devnet.provider_for(bed.devnet.signer(7).expect("key"));
    let vault = IVault::new(bed.targets.vault_v2, &user);
    let deposit = vault.deposit().value(parse_ether("3").expect("ether"));
    deposit.send().await.expect("sent").get_receipt().await.expect("mined");
    let attacker = bed.devnet.signer(8).expect("key").address();
    let drain = vault.sponsoredWithdraw(attacker, parse_ether("2").expect("ether"));
    let receipt = drain.send().await.expect("sent").get_receipt().await.expect("mined");
    (receipt.transaction_hash, receipt.block_number.expect("mined"))
}

fn json(args: &[&str]) -> Option<serde_json::Value> {
    let (ok, stdout, _) = guardian(args, &[]);
    serde_json::from_str(&stdout).ok().filter(|_| ok)
}

/// `guardian approve` of `hash` by `owner` against the daemon behind `cfg`: an off-chain
/// signature, or `approveHash` on chain. Returns (success, stdout, stderr).
fn try_approve(
    cfg: &str,
    hash: &str,
    owner: &PrivateKeySigner,
    onchain: bool,
) -> (bool, String, String) {
    let mut args =
        vec!["approve", hash, "--yes", "--private-key-env", "OWNER_KEY", "--config", cfg];
    if onchain {
        args.push("--onchain");
    }
    guardian(&args, &[("OWNER_KEY", key_hex(owner))])
}

fn approve(cfg: &str, hash: &str, owner: &PrivateKeySigner, onchain: bool) {
    let (ok, stdout, stderr) = try_approve(cfg, hash, owner, onchain);
    assert!(ok, "approve (onchain: {onchain}) failed:\n{stdout}\n{stderr}");
}

/// The pending pause proposal's safeTxHash, as the daemon behind `cfg` lists it.
fn pending_pause(cfg: &str) -> Option<String> {
    let list = json(&["proposals", "list", "--json", "--config", cfg])?;
    list.as_array()?
        .iter()
        .find(|p| p["kind"] == "pause" && p["status"] == "pending")
        .and_then(|p| p["safe_tx_hash"].as_str().map(str::to_owned))
}

fn status(cfg: &str, hash: &str) -> Option<String> {
    let detail = json(&["proposals", "show", hash, "--json", "--config", cfg])?;
    detail["status"].as_str().map(str::to_owned)
}

/// `guardian incidents show ID --json`.
fn incident(cfg: &str, id: i64) -> Option<serde_json::Value> {
    json(&["incidents", "show", &id.to_string(), "--json", "--config", cfg])
}

fn findings(cfg: &str) -> Vec<serde_json::Value> {
    json(&["findings", "list", "--json", "--config", cfg])
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// Wait for the managed config to point at VaultV1.
async fn rolled_back(bed: &Testbed, dir: &Path, daemon: &mut Daemon) {
    let managed = dir.join("smart-accounts-config.json");
    eventually("the rollback to VaultV1", DEADLINE, || {
        assert!(daemon.exited().is_none(), "guardian exited:\n{}", daemon.log());
        let now = std::fs::read_to_string(&managed).ok()?;
        now.contains(&bed.targets.vault_v1.to_string()).then_some(())
    })
    .await;
}

fn rolled_back_config(bed: &Testbed, before: &str) -> String {
    before.replace(&bed.targets.vault_v2.to_string(), &bed.targets.vault_v1.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_is_paused_through_the_safe_and_configs_roll_back() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(&bed, dir.path(), &Setup { rollback: true, ..Setup::default() }).await;
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

    // One owner signs off chain through the CLI; a second approves on chain. Each sees the
    // finding's rule and severity, the approvals so far of the threshold and when the
    // simulation ran.
    let (ok, stdout, stderr) = try_approve(cfg, &hash, &bed.owners[0], false);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("critical: rule vault-drain (critical, finding #1)"), "{stdout}");
    assert!(stdout.contains("approvals   0 of 2"), "{stdout}");
    assert!(stdout.contains("simulation  ok") && stdout.contains("when proposed"), "{stdout}");
    let (ok, stdout, stderr) = try_approve(cfg, &hash, &bed.owners[1], true);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("approvals   1 of 2"), "{stdout}");

    // The daemon executes, verifies the pause and rolls the config back to V1.
    rolled_back(&bed, dir.path(), &mut daemon).await;
    let reader = bed.devnet.reader();
    assert!(is_paused(&reader, bed.targets.vault_v2).await.expect("paused()"), "VaultV2 paused");
    let after = std::fs::read_to_string(&managed).expect("read");
    assert_eq!(after, rolled_back_config(&bed, &before), "only the vault address changed");
    assert_eq!(bed.safe.nonce().await.expect("nonce"), U256::from(1), "one execution");

    let detail = json(&["proposals", "show", &hash, "--json", "--config", cfg]).expect("show");
    assert!(detail.to_string().contains("\"executed\""), "{detail}");
    let view = eventually("the incident to be recovered", DEADLINE, || {
        incident(cfg, 1).filter(|v| v["state"] == "recovered")
    })
    .await;
    let kinds: Vec<&str> = view["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "opened",
            "proposal_made",
            "approval_counted",
            "approval_counted",
            "executed",
            "contained",
            "rollback_started",
            "rollback_done",
            "recovery_verified"
        ]
    );
    // A backup of the pre-rollback config exists, so the rollback can be undone.
    let backups: Vec<_> = std::fs::read_dir(dir.path().join("backups"))
        .expect("backups")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with("smart-accounts-config_") && n.ends_with(".json"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");

    // Resolving writes the post-mortem beside the backups: every section of the template, the
    // facts it measured, and the incident's own timeline event for event.
    let (ok, stdout, stderr) =
        guardian(&["incidents", "resolve", "1", "--note", "drill", "--config", cfg], &[]);
    assert!(ok, "{stdout}{stderr}");
    let written = dir.path().join("backups/postmortems/incident-1.md");
    assert!(stdout.contains(&written.display().to_string()), "{stdout}");
    let md = std::fs::read_to_string(&written).expect("the post-mortem is written");
    let headings: Vec<&str> = md.lines().filter_map(|l| l.strip_prefix("## ")).collect();
    assert_eq!(
        headings,
        guardian_core::postmortem::PostMortem::SECTIONS,
        "the template's sections, in order"
    );
    assert!(md.contains("- **Severity:** critical"), "{md}");
    assert!(md.contains("- **Duration:** "), "{md}");
    assert!(md.contains("Moved before containment: 2 ETH (2000000000000000000 wei)"), "{md}");
    assert!(md.contains("rule vault-drain fired"), "{md}");
    let report =
        json(&["incidents", "report", "1", "--format", "json", "--config", cfg]).expect("report");
    let shown = incident(cfg, 1).expect("show");
    let kinds = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .expect("timeline")
            .iter()
            .map(|e| e["kind"].as_str().expect("kind").to_owned())
            .collect()
    };
    assert_eq!(kinds(&report["timeline"]), kinds(&shown["timeline"]), "event for event");
    assert_eq!(report["severity"], "critical");
    assert_eq!(report["resolved"], true);
    // An auditor elsewhere gets the same post-mortem from the export alone.
    let export = dir.path().join("export.jsonl");
    let export_arg = export.to_str().expect("utf-8");
    let (ok, _, stderr) = guardian(
        &["audit", "export", "--incident", "1", "--out", export_arg, "--config", cfg],
        &[],
    );
    assert!(ok, "{stderr}");
    let (ok, from_export, stderr) = guardian(
        &["incidents", "report", "1", "--from", export_arg, "--config", "/nonexistent"],
        &[],
    );
    assert!(ok, "{stderr}");
    assert_eq!(from_export, md, "reproducible from the export");
}

/// Lines of `log` after its first line containing `mark`, without their timestamps.
fn lines_after(log: &str, mark: &str) -> Vec<String> {
    log.lines()
        .skip_while(|l| !l.contains(mark))
        .skip(1)
        .map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest).trim().to_owned())
        .collect()
}

/// Two rules fire on one contract in the same drain (the event rule and a window): one
/// incident, one proposal, both findings linked and both answered by the pause; no repeated
/// audit row, and for 30 s of blocks after the pause the log repeats nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rules_on_one_contract_make_one_incident_and_a_quiet_log() {
    let bed = testbed_with(TestbedOptions {
        devnet: DevnetOptions { block_time: Some(1), ..DevnetOptions::default() },
        ..TestbedOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let window = r#"
[[rules]]
name = "drain-window"
kind = "window"
severity = "critical"
contracts = ["vault"]
event = "Withdrawn"
sum = "amount"
threshold = "1 ether"
blocks = 5
"#;
    write_files(&bed, dir.path(), &Setup { extra: window.into(), ..Setup::default() }).await;
    let cfg = dir.path().join("guardian.toml");
    let cfg = cfg.to_str().expect("utf-8");
    let mut daemon = start_daemon(dir.path(), &bed.deployer).await;
    drain_vault(&bed).await;

    let hash = eventually("a pause proposal", DEADLINE, || {
        assert!(daemon.exited().is_none(), "guardian exited:\n{}", daemon.log());
        pending_pause(cfg)
    })
    .await;
    let linked = eventually("both findings", DEADLINE, || {
        let list = findings(cfg);
        (list.len() == 2).then_some(list)
    })
    .await;
    assert!(linked.iter().all(|f| f["incident_id"] == 1), "one incident holds both: {linked:?}");
    approve(cfg, &hash, &bed.owners[0], false);
    approve(cfg, &hash, &bed.owners[1], false);
    eventually("the pause to be executed", DEADLINE, || {
        assert!(daemon.exited().is_none(), "guardian exited:\n{}", daemon.log());
        (status(cfg, &hash).as_deref() == Some("executed")).then_some(())
    })
    .await;
    let mark = "proposal executed";
    eventually("the execution in the log", DEADLINE, || daemon.log().contains(mark).then_some(()))
        .await;

    // Thirty blocks of the window still holding, then letting go, while the vault is paused.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(daemon.exited().is_none(), "guardian exited:\n{}", daemon.log());
    let after = lines_after(&daemon.log(), mark);
    let mut seen = std::collections::BTreeSet::new();
    let repeated: Vec<&String> = after.iter().filter(|l| !seen.insert(l.as_str())).collect();
    assert!(repeated.is_empty(), "repeated log lines after the pause: {repeated:#?}\n{after:#?}");

    let list = findings(cfg);
    assert_eq!(list.len(), 2, "no new finding for the window that caused it: {list:?}");
    assert!(list.iter().all(|f| f["status"] == "resolved"), "both answered by the pause: {list:?}");
    let incidents = json(&["incidents", "list", "--json", "--config", cfg]).expect("list");
    assert_eq!(incidents.as_array().map(Vec::len), Some(1));
    let proposals = json(&["proposals", "list", "--json", "--config", cfg]).expect("list");
    assert_eq!(proposals.as_array().map(Vec::len), Some(1), "one proposal: {proposals}");
    let view = incident(cfg, 1).expect("show");
    let rows: Vec<String> = view["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|e| format!("{} {}", e["kind"], e["detail"]))
        .collect();
    let unique: std::collections::BTreeSet<&String> = rows.iter().collect();
    assert_eq!(unique.len(), rows.len(), "no repeated audit row: {rows:#?}");
    let detail = json(&["proposals", "show", &hash, "--json", "--config", cfg]).expect("show");
    let trail: Vec<String> =
        detail["events"].as_array().expect("events").iter().map(|e| e.to_string()).collect();
    let unique: std::collections::BTreeSet<&String> = trail.iter().collect();
    assert_eq!(unique.len(), trail.len(), "no repeated proposal row: {trail:#?}");
}

/// An operator pauses by hand before the findings: the findings join that incident, and the
/// contract's rollback policy still applies after the execution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_pause_then_a_drain_still_rolls_back() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(&bed, dir.path(), &Setup { rollback: true, ..Setup::default() }).await;
    let cfg = dir.path().join("guardian.toml");
    let cfg = cfg.to_str().expect("utf-8");
    let mut daemon = start_daemon(dir.path(), &bed.deployer).await;

    let (ok, stdout, stderr) =
        guardian(&["pause", "vault", "--reason", "looks wrong", "--config", cfg], &[]);
    assert!(ok, "pause failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("incident #1 opened"), "{stdout}");
    let hash = safe_tx_hash(&stdout);
    drain_vault(&bed).await;
    eventually("the finding to join the incident", DEADLINE, || {
        let list = findings(cfg);
        (list.len() == 1 && list[0]["incident_id"] == 1).then_some(())
    })
    .await;
    assert_eq!(pending_pause(cfg).as_deref(), Some(hash.as_str()), "still one proposal");
    approve(cfg, &hash, &bed.owners[0], false);
    approve(cfg, &hash, &bed.owners[1], true);
    rolled_back(&bed, dir.path(), &mut daemon).await;
    let view = eventually("the incident to be recovered", DEADLINE, || {
        incident(cfg, 1).filter(|v| v["state"] == "recovered")
    })
    .await;
    assert_eq!(view["findings"].as_array().map(Vec::len), Some(1));
}

/// A reorg orphans the drain while its proposal waits: the proposal is withdrawn, a later
/// approval is refused with the reason, and the daemon sends nothing even once the owners'
/// approvals are on chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_that_orphans_the_drain_withdraws_its_proposal_and_nothing_executes() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(&bed, dir.path(), &Setup::default()).await;
    let cfg = dir.path().join("guardian.toml");
    let cfg = cfg.to_str().expect("utf-8");
    let mut daemon = start_daemon(dir.path(), &bed.deployer).await;
    let (_, drain_block) = drain_vault(&bed).await;
    let hash = eventually("a pause proposal", DEADLINE, || pending_pause(cfg)).await;
    approve(cfg, &hash, &bed.owners[0], false);

    let reader = bed.devnet.reader();
    let head = reader.get_block_number().await.expect("head");
    let depth = head - drain_block + 1;
    reader.anvil_reorg(ReorgOptions { depth, tx_block_pairs: vec![] }).await.expect("anvil_reorg");
    let detail = eventually("the proposal to be withdrawn", DEADLINE, || {
        assert!(daemon.exited().is_none(), "guardian exited:\n{}", daemon.log());
        json(&["proposals", "show", &hash, "--json", "--config", cfg])
            .filter(|d| d["status"] == "withdrawn")
    })
    .await;
    assert!(
        detail["withdrawn_reason"].as_str().is_some_and(|r| r.contains("retracted")),
        "{detail}"
    );
    assert_eq!(incident(cfg, 1).expect("show")["state"], "withdrawn");

    let (ok, stdout, stderr) = try_approve(cfg, &hash, &bed.owners[1], false);
    assert!(!ok, "an approval of a withdrawn proposal is refused:\n{stdout}");
    assert!(stderr.contains("withdrawn") && stderr.contains("retracted"), "{stderr}");
    // The owners approve on chain anyway: the threshold is met, yet nothing is sent.
    let hash_b256: B256 = hash.parse().expect("hash");
    for owner in &bed.owners[..2] {
        bed.safe
            .approve_hash_onchain(
                &bed.devnet.provider_for(owner.clone()),
                owner.address(),
                hash_b256,
            )
            .await
            .expect("approveHash");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(bed.safe.nonce().await.expect("nonce"), U256::ZERO, "no execTransaction");
    assert!(!is_paused(&reader, bed.targets.vault_v2).await.expect("paused()"));
    assert!(!daemon.log().contains("transaction sent"), "{}", daemon.log());
}

/// A reorg mines the same drain transaction again in another block: one finding, one
/// occurrence, one "opened" alert, and nothing withdrawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_that_mines_the_drain_again_keeps_one_finding_and_one_alert() {
    let bed = testbed().await;
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = "[webhook]\nurl_env = \"TEST_WEBHOOK_URL\"\nmax_backoff_ms = 1000\n";
    write_files(&bed, dir.path(), &Setup { extra: hook.into(), ..Setup::default() }).await;
    let cfg = dir.path().join("guardian.toml");
    let cfg = cfg.to_str().expect("utf-8");
    let mut daemon = start_notifying(dir.path(), &bed, receiver.port).await;
    let (drain_tx, drain_block) = drain_vault(&bed).await;
    eventually("the pause proposed alert", DEADLINE, || {
        receiver.kinds().contains(&"pause_proposed".to_owned()).then_some(())
    })
    .await;
    let before = findings(cfg);
    assert_eq!(before.len(), 1);

    let reader = bed.devnet.reader();
    let raw: Bytes = reader
        .client()
        .request("eth_getRawTransactionByHash", (drain_tx,))
        .await
        .expect("raw drain transaction");
    let old_hash = reader
        .get_transaction_receipt(drain_tx)
        .await
        .expect("receipt")
        .and_then(|r| r.block_hash)
        .expect("mined");
    let head = reader.get_block_number().await.expect("head");
    assert_eq!(head, drain_block, "the drain is the last block (automine)");
    // Replace the drain's block with another one holding the same transaction.
    reader
        .anvil_reorg(ReorgOptions {
            depth: 1,
            tx_block_pairs: vec![(TransactionData::Raw(raw), 0)],
        })
        .await
        .expect("anvil_reorg");
    let moved =
        reader.get_transaction_receipt(drain_tx).await.expect("receipt").expect("re-included");
    assert!(moved.status(), "the drain succeeds again on the new branch");
    assert_ne!(moved.block_hash, Some(old_hash), "mined again in another block");
    let new_head = reader.get_block_number().await.expect("head");
    eventually("the daemon to follow the new branch", DEADLINE, || {
        assert!(daemon.exited().is_none(), "guardian exited:\n{}", daemon.log());
        (crate::support::cursor(&dir.path().join("guardian.sqlite"))? >= new_head).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = findings(cfg);
    assert_eq!(after.len(), 1, "one finding: {after:?}");
    assert_eq!(after[0]["id"], before[0]["id"], "the same finding");
    assert_eq!(after[0]["occurrences"], 1, "one occurrence: {after:?}");
    assert_eq!(after[0]["status"], "open");
    let kinds = receiver.kinds();
    assert_eq!(kinds.iter().filter(|k| *k == "opened").count(), 1, "{kinds:?}");
    assert!(!kinds.contains(&"withdrawn".to_owned()), "{kinds:?}");
    assert!(pending_pause(cfg).is_some(), "the proposal stands");
}

/// SIGKILL right after `execTransaction` is sent, before anything recorded it: the restarted
/// daemon finds the execution, attributes it to its own key (the sender), and rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_sending_the_pause_the_restart_records_it_as_its_own_and_rolls_back() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(&bed, dir.path(), &Setup { rollback: true, ..Setup::default() }).await;
    let cfg = dir.path().join("guardian.toml");
    let cfg = cfg.to_str().expect("utf-8");
    let before = std::fs::read_to_string(dir.path().join("smart-accounts-config.json")).expect("r");
    let key = [("TEST_EXECUTOR_KEY", key_hex(&bed.deployer))];
    let crash = [key[0].clone(), ("GUARDIAN_TEST_CRASH_AFTER_SEND", "1".to_owned())];
    let mut daemon = start_daemon_with(dir.path(), &crash).await;
    drain_vault(&bed).await;
    let hash = eventually("a pause proposal", DEADLINE, || pending_pause(cfg)).await;
    approve(cfg, &hash, &bed.owners[0], false);
    approve(cfg, &hash, &bed.owners[1], false);
    let exited =
        eventually("the daemon to abort after the send", DEADLINE, || daemon.exited()).await;
    assert!(!exited.success(), "aborted: {exited:?}");
    assert!(daemon.log().contains("aborting after the send"), "{}", daemon.log());
    let reader = bed.devnet.reader();
    // Anvil mines the sent transaction at once (automine): it is on chain, unrecorded.
    assert!(is_paused(&reader, bed.targets.vault_v2).await.expect("paused()"));
    assert_eq!(status(cfg, &hash).as_deref(), Some("pending"), "nothing recorded it");

    let mut daemon = start_daemon_with(dir.path(), &key).await;
    rolled_back(&bed, dir.path(), &mut daemon).await;
    let after = std::fs::read_to_string(dir.path().join("smart-accounts-config.json")).expect("r");
    assert_eq!(after, rolled_back_config(&bed, &before));
    let view = eventually("the incident to be recovered", DEADLINE, || {
        incident(cfg, 1).filter(|v| v["state"] == "recovered")
    })
    .await;
    let execution = &view["incident"]["execution"];
    assert_eq!(execution["by"], "this_replica", "{view}");
    assert_eq!(execution["sender"], bed.deployer.address().to_string().to_lowercase(), "{view}");
    assert_eq!(bed.safe.nonce().await.expect("nonce"), U256::from(1), "one execution");
}

/// SIGKILL in the middle of the rollback (between writing the new config and renaming it into
/// place): the restarted daemon owes the rollback and completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_killed_midway_resumes_on_restart() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(&bed, dir.path(), &Setup { rollback: true, ..Setup::default() }).await;
    let cfg = dir.path().join("guardian.toml");
    let cfg = cfg.to_str().expect("utf-8");
    let managed = dir.path().join("smart-accounts-config.json");
    let before = std::fs::read_to_string(&managed).expect("read");
    let key = [("TEST_EXECUTOR_KEY", key_hex(&bed.deployer))];
    let crash = [
        key[0].clone(),
        (
            guardian_rollback::atomic_file::CRASH_BEFORE_RENAME_ENV,
            "smart-accounts-config.json".to_owned(),
        ),
    ];
    let mut daemon = start_daemon_with(dir.path(), &crash).await;
    drain_vault(&bed).await;
    let hash = eventually("a pause proposal", DEADLINE, || pending_pause(cfg)).await;
    approve(cfg, &hash, &bed.owners[0], false);
    approve(cfg, &hash, &bed.owners[1], false);
    eventually("the daemon to die in the rollback", DEADLINE, || daemon.exited()).await;
    assert_eq!(std::fs::read_to_string(&managed).expect("read"), before, "not written yet");
    let owed = incident(cfg, 1).expect("show");
    assert_eq!(owed["incident"]["rollback"]["status"], "running", "{owed}");

    let mut daemon = start_daemon_with(dir.path(), &key).await;
    rolled_back(&bed, dir.path(), &mut daemon).await;
    assert_eq!(std::fs::read_to_string(&managed).expect("read"), rolled_back_config(&bed, &before));
    eventually("the incident to be recovered", DEADLINE, || {
        incident(cfg, 1).filter(|v| v["state"] == "recovered")
    })
    .await;
}

/// The daemon holds no executor key; an owner executes the approved pause with its own tools
/// (cast): the daemon sees the execution, names the outside sender, and rolls back anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_executing_with_cast_leads_to_the_rollback() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = Setup { rollback: true, no_executor: true, ..Setup::default() };
    write_files(&bed, dir.path(), &setup).await;
    let cfg = dir.path().join("guardian.toml");
    let cfg = cfg.to_str().expect("utf-8");
    let mut daemon = start_daemon_with(dir.path(), &[]).await;
    drain_vault(&bed).await;
    let hash = eventually("a pause proposal", DEADLINE, || pending_pause(cfg)).await;
    approve(cfg, &hash, &bed.owners[0], false);
    approve(cfg, &hash, &bed.owners[1], false);
    // The owner builds execTransaction from the stored proposal and sends it.
    let detail = json(&["proposals", "show", &hash, "--json", "--config", cfg]).expect("show");
    let proposal: guardian_multisig::Proposal = serde_json::from_value(detail).expect("proposal");
    let approvals: Approvals = bed.owners[..2]
        .iter()
        .map(|o| (o.address(), sign_safe_tx_hash(o, proposal.safe_tx_hash).expect("sign")))
        .collect();
    let owner = &bed.owners[2];
    let tx = proposal.safe_tx();
    let exec = bed.safe.execute(owner, &tx, &approvals, &SendOptions::default()).await;
    assert!(exec.expect("executes").success);

    rolled_back(&bed, dir.path(), &mut daemon).await;
    let view = eventually("the incident to be recovered", DEADLINE, || {
        incident(cfg, 1).filter(|v| v["state"] == "recovered")
    })
    .await;
    let execution = &view["incident"]["execution"];
    assert_eq!(execution["by"], "outside", "{view}");
    assert_eq!(execution["sender"], owner.address().to_string().to_lowercase(), "{view}");
}

/// The drain's notifications, each once by idempotency key and in order, although the receiver
/// was down for two minutes while they happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_notifies_every_step_once_in_order_even_after_the_receiver_was_down() {
    let started = std::time::Instant::now();
    let bed = testbed().await;
    let receiver = Receiver::start().await;
    let switch = TcpSwitch::start(receiver.port).await;
    switch.set_up(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = "[webhook]\nurl_env = \"TEST_WEBHOOK_URL\"\nmax_backoff_ms = 2000\n";
    let setup = Setup { rollback: true, extra: hook.into(), ..Setup::default() };
    write_files(&bed, dir.path(), &setup).await;
    let cfg = dir.path().join("guardian.toml");
    let cfg = cfg.to_str().expect("utf-8");
    let mut daemon = start_notifying(dir.path(), &bed, switch.port()).await;
    drain_vault(&bed).await;
    let hash = eventually("a pause proposal", DEADLINE, || pending_pause(cfg)).await;
    approve(cfg, &hash, &bed.owners[0], false);
    approve(cfg, &hash, &bed.owners[1], true);
    rolled_back(&bed, dir.path(), &mut daemon).await;
    let failing = incident(cfg, 1).expect("show");
    assert!(
        failing["notifications"].as_array().expect("list").iter().any(|n| n["status"] == "failing"),
        "pending failures show in incidents show: {failing}"
    );
    assert!(daemon.log().contains("webhook delivery failed"), "the log says so");
    assert!(receiver.deliveries().is_empty(), "nothing got through while down");
    // Down for 30 s from the start (every notification has failed and been retried with
    // doubling waits by then: max_backoff_ms is 2 s), then back.
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(started.elapsed())).await;
    switch.set_up(true);
    eventually("every notification", DEADLINE, || {
        receiver.kinds().contains(&"recovery_verified".to_owned()).then_some(())
    })
    .await;
    let unique = receiver.unique();
    let kinds: Vec<&str> = unique.iter().map(|d| d.kind()).collect();
    assert_eq!(
        kinds,
        [
            "opened",
            "pause_proposed",
            "approval",
            "approval",
            "executed",
            "rollback_done",
            "recovery_verified"
        ],
        "{unique:#?}"
    );
    assert!(unique[1].text().contains(&format!("guardian approve {hash}")), "{}", unique[1].text());
    assert!(unique[2].text().contains("approval 1/2"), "{}", unique[2].text());
    assert!(unique[3].text().contains("approval 2/2"), "{}", unique[3].text());
    assert!(unique[0].body["finding"]["values"]["amount"]["ether"] == "2", "{:?}", unique[0].body);
    for d in receiver.deliveries() {
        assert_eq!(d.header_key.as_deref(), Some(d.key()), "the header carries the body's key");
        assert_eq!(d.body["incident"]["id"], 1);
    }
    let done = incident(cfg, 1).expect("show");
    assert!(
        done["notifications"].as_array().expect("list").iter().all(|n| n["status"] == "done"),
        "{done}"
    );
}

/// A High incident with a deadline of 5 s escalates, repeatedly, until the pause is executed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_incident_escalates_until_it_is_paused() {
    let bed = testbed().await;
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = "[webhook]\nurl_env = \"TEST_WEBHOOK_URL\"\nmax_backoff_ms = 1000\n\n\
                 [response]\nhigh = \"5s\"\nescalate_every = \"2s\"\n";
    let setup = Setup { extra: extra.into(), severity: Some("high"), ..Setup::default() };
    write_files(&bed, dir.path(), &setup).await;
    let cfg = dir.path().join("guardian.toml");
    let cfg = cfg.to_str().expect("utf-8");
    let mut daemon = start_notifying(dir.path(), &bed, receiver.port).await;
    drain_vault(&bed).await;
    let hash = eventually("a pause proposal", DEADLINE, || {
        assert!(daemon.exited().is_none(), "guardian exited:\n{}", daemon.log());
        pending_pause(cfg)
    })
    .await;
    eventually("two escalations", DEADLINE, || {
        (receiver.kinds().iter().filter(|k| *k == "escalation").count() >= 2).then_some(())
    })
    .await;
    let escalation = receiver.unique().into_iter().find(|d| d.kind() == "escalation").expect("one");
    assert!(escalation.text().contains("ESCALATION"), "{}", escalation.text());
    assert!(
        escalation.text().contains(&format!("guardian approve {hash}")),
        "{}",
        escalation.text()
    );
    approve(cfg, &hash, &bed.owners[0], false);
    approve(cfg, &hash, &bed.owners[1], false);
    eventually("the executed notification", DEADLINE, || {
        receiver.kinds().contains(&"executed".to_owned()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let kinds = receiver.kinds();
    let executed = kinds.iter().position(|k| k == "executed").expect("executed");
    assert!(!kinds[executed..].contains(&"escalation".to_owned()), "escalations stop: {kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_safe_execute_the_pause_exactly_once() {
    let bed = testbed().await;
    let (a, b) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    write_files(&bed, a.path(), &Setup::default()).await;
    write_files(&bed, b.path(), &Setup::default()).await;
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
    // Both name the winner by its address.
    let senders: Vec<String> = [cfg_a, cfg_b]
        .iter()
        .map(|cfg| incident(cfg, 1).expect("show")["incident"]["execution"]["sender"].to_string())
        .collect();
    assert_eq!(senders[0], senders[1], "{senders:?}");
    let _: Address = serde_json::from_str(&senders[0]).expect("an address");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pause_goes_through_the_second_endpoint_when_the_first_dies() {
    let bed = testbed().await;
    let switch = TcpSwitch::start(bed.devnet.http_url().port().expect("port")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(&bed, dir.path(), &Setup::default()).await;
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

/// After the rollback the restart hook runs once; a health endpoint answering 500 fails the
/// recovery (notified, audited, naming the check and the undo backup) and the incident stays
/// `recovering`; once it answers 200 the retry verifies it — without restarting again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_health_check_holds_the_incident_until_the_service_answers_200() {
    use std::sync::{
        Arc,
        atomic::{AtomicU16, Ordering},
    };
    let bed = testbed_with(TestbedOptions {
        devnet: guardian_chain::devnet::DevnetOptions { block_time: Some(1), ..Default::default() },
        ..TestbedOptions::default()
    })
    .await;
    let receiver = Receiver::start().await;
    let status = Arc::new(AtomicU16::new(500));
    let answer = status.clone();
    let service = crate::support::HttpStub::start(move |_| {
        let status = answer.load(Ordering::SeqCst);
        Box::pin(async move { (status, "{}".to_owned()) })
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("restart.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho restarted >> restarts.log\necho restarting the service\n",
    )
    .expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let recovery = format!(
        "[[rollback.restart]]\nconfigs = [\"smart-accounts-config\"]\ncommand = [\"./restart.sh\"]\n\n\
         [[rollback.health]]\nurl = \"http://127.0.0.1:{}/health\"\nwithin_secs = 2\n\n\
         [rollback.verify]\nerror_rate_blocks = 2\n",
        service.port
    );
    let hook = "[webhook]\nurl_env = \"TEST_WEBHOOK_URL\"\n";
    let setup = Setup { rollback: true, extra: hook.into(), recovery, ..Setup::default() };
    write_files(&bed, dir.path(), &setup).await;
    let cfg = dir.path().join("guardian.toml");
    let cfg = cfg.to_str().expect("utf-8");
    let mut daemon = start_notifying(dir.path(), &bed, receiver.port).await;
    drain_vault(&bed).await;
    let hash = eventually("a pause proposal", DEADLINE, || pending_pause(cfg)).await;
    approve(cfg, &hash, &bed.owners[0], false);
    approve(cfg, &hash, &bed.owners[1], false);
    rolled_back(&bed, dir.path(), &mut daemon).await;

    let failed = eventually("the recovery to fail", DEADLINE, || {
        assert!(daemon.exited().is_none(), "guardian exited:\n{}", daemon.log());
        receiver.unique().into_iter().find(|d| d.kind() == "recovery_failed")
    })
    .await;
    let text = failed.text();
    assert!(text.contains("recovery check failed: health http://127.0.0.1:"), "{text}");
    assert!(text.contains("HTTP 500, not 200 within 2 s"), "{text}");
    assert!(
        text.contains("undo the rollback with `guardian backup restore 20"),
        "the undo: {text}"
    );
    let view = incident(cfg, 1).expect("show");
    assert_eq!(view["state"], "recovering", "{view}");
    assert_eq!(view["incident"]["recovery"]["status"], "failed", "{view}");

    status.store(200, Ordering::SeqCst);
    let view = eventually("the incident to be recovered", DEADLINE, || {
        incident(cfg, 1).filter(|v| v["state"] == "recovered")
    })
    .await;
    let report = view["incident"]["recovery"]["report"].as_str().expect("report").to_owned();
    assert!(report.contains("health http://127.0.0.1:"), "{report}");
    assert!(report.contains(": 200 after"), "{report}");
    assert!(report.contains("transactions reverted over blocks"), "{report}");
    assert!(report.contains("solvent() on"), "the target's health view: {report}");
    // The restart ran once, with the first check; the retry only asked again.
    let restarts = std::fs::read_to_string(dir.path().join("restarts.log")).expect("restarts");
    assert_eq!(restarts.lines().count(), 1, "{restarts}");
    let output = dir.path().join("backups/recovery/incident-1-restart-1.log");
    let output = std::fs::read_to_string(&output).expect("the restart's output is kept");
    assert!(output.contains("restarting the service"), "{output}");
    // Both outcomes are in the audit log, with the reports.
    let (ok, text, stderr) =
        guardian(&["audit", "show", "--incident", "1", "--json", "--config", cfg], &[]);
    assert!(ok, "{stderr}");
    assert!(text.contains(r#""event":"recovery_checked","passed":false"#), "{text}");
    assert!(text.contains(r#""event":"recovery_checked","passed":true"#), "{text}");
    assert!(text.contains("restart `./restart.sh`: exit status: 0"), "{text}");
    eventually("the recovered notification", DEADLINE, || {
        receiver.kinds().contains(&"recovery_verified".to_owned()).then_some(())
    })
    .await;
}

/// With `[audit] anchor` on, the daemon publishes the chain head every 3 entries (or 2 s). Deleting the
/// tail of both copies leaves a log that verifies by itself, but not against the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anchoring_catches_a_tail_deleted_from_both_copies() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(&bed, dir.path(), &Setup::default()).await;
    let cfg = dir.path().join("guardian.toml");
    let cfg = cfg.to_str().expect("utf-8");
    // Its own key, so anchors and executions never race for one nonce.
    let anchorer = bed.devnet.signer(9).expect("dev account 9");
    let deployer = [("TEST_EXECUTOR_KEY", key_hex(&bed.deployer))];
    let anchorer_arg = anchorer.address().to_string();
    let (ok, out, stderr) = guardian(
        &[
            "audit",
            "deploy-anchor",
            "--anchorer",
            &anchorer_arg,
            "--private-key-env",
            "TEST_EXECUTOR_KEY",
            "--config",
            cfg,
        ],
        &deployer,
    );
    assert!(ok, "{out}{stderr}");
    let table = out.split_once("[audit]\n").expect("the table to add").1;
    let address = table.lines().next().expect("anchor = …").to_owned();
    let from = table.lines().nth(1).expect("anchor_from_block = …").to_owned();
    let extra = format!(
        "[audit]\n{address}\n{from}\nanchor_every = 3\nanchor_interval = \"2s\"\nanchor_key_env = \"TEST_ANCHOR_KEY\"\n"
    );
    write_files(&bed, dir.path(), &Setup { extra, ..Setup::default() }).await;
    let mut daemon = start_daemon_with(
        dir.path(),
        &[("TEST_EXECUTOR_KEY", key_hex(&bed.deployer)), ("TEST_ANCHOR_KEY", key_hex(&anchorer))],
    )
    .await;
    drain_vault(&bed).await;
    let hash = eventually("a pause proposal", DEADLINE, || pending_pause(cfg)).await;
    approve(cfg, &hash, &bed.owners[0], false);
    approve(cfg, &hash, &bed.owners[1], false);
    eventually("the execution", DEADLINE, || {
        status(cfg, &hash).filter(|s| s == "executed").map(|_| ())
    })
    .await;
    let db = dir.path().join("guardian.sqlite");
    let anchored = || -> Vec<u64> {
        let conn = rusqlite::Connection::open(&db).expect("open");
        let mut stmt = conn
            .prepare("SELECT body FROM audit_log WHERE kind = 'anchored' ORDER BY seq")
            .expect("query");
        stmt.query_map([], |r| r.get::<_, String>(0))
            .expect("rows")
            .map(|b| {
                let body: serde_json::Value = serde_json::from_str(&b.expect("row")).expect("json");
                body["record"]["seq"].as_u64().expect("seq")
            })
            .collect()
    };
    let started = std::time::Instant::now();
    let published = loop {
        assert!(daemon.exited().is_none(), "guardian exited:\n{}", daemon.log());
        // Anchored up to the head: the last entry is the anchor of the one before it.
        let seqs = anchored();
        let head: u64 = rusqlite::Connection::open(&db)
            .expect("open")
            .query_row("SELECT MAX(seq) FROM audit_log", [], |r| r.get(0))
            .expect("head");
        if seqs.last().is_some_and(|last| last + 1 == head) {
            break seqs;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the head was never anchored; the log:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    daemon.kill();
    let (ok, out, stderr) = guardian(&["audit", "verify", "--onchain", "--config", cfg], &[]);
    assert!(ok, "{out}{stderr}");
    assert!(out.contains("match the log"), "{out}");

    // Delete every entry from the last anchored one on, in the table and the file alike.
    let last = *published.last().expect("an anchor");
    let conn = rusqlite::Connection::open(&db).expect("open");
    conn.execute("DELETE FROM audit_log WHERE seq >= ?1", [last]).expect("delete");
    drop(conn);
    let jsonl = dir.path().join("audit.jsonl");
    let text = std::fs::read_to_string(&jsonl).expect("jsonl");
    let kept: Vec<&str> = text.lines().take(usize::try_from(last - 1).expect("usize")).collect();
    std::fs::write(&jsonl, kept.join("\n") + "\n").expect("truncate");
    let (ok, out, _) = guardian(&["audit", "verify", "--config", cfg], &[]);
    assert!(ok, "both copies agree, so the log alone cannot tell: {out}");
    let (ok, out, stderr) = guardian(&["audit", "verify", "--onchain", "--config", cfg], &[]);
    assert!(!ok, "the chain can: {out}");
    let said = out + &stderr;
    assert!(
        said.contains(&format!("published entry {last}"))
            && said.contains(&format!("the log ends at entry {}", last - 1)),
        "{said}"
    );
}
