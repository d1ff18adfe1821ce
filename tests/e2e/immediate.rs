//! Critical acts now, through `guardian run` and the CLI as operators use them, against a real
//! Anvil and Safe 1.4.1: `guardian module deploy` proposes enabling the pause module, the owners
//! approve with `guardian approve`, `module info` reports it; a Critical drain is then paused
//! through the module by the pauser key, no owner signing and no Safe transaction; `module
//! disable` proposes the way back. A module the Safe disabled makes the same Critical finding
//! fall back to a Safe proposal, and the incident says why.

use std::{path::Path, time::Duration};

use alloy::{
    primitives::{Address, utils::parse_ether},
    signers::local::PrivateKeySigner,
};
use guardian_chain::{
    Testbed, TestbedOptions,
    safe::{is_paused, sign_safe_tx_hash},
    sender::SendOptions,
    testbed::IVault,
};
use guardian_core::safe::Approvals;

use crate::support::{
    Daemon, eventually, guardian, key_hex, testbed, testbed_with, vault_drain_toml,
};

const DEADLINE: Duration = Duration::from_secs(60);

/// The dev account holding the pauser role.
const PAUSER: usize = 5;

/// guardian.toml in `dir`: the vault (VaultV2) with a Critical drain rule, the Safe with the
/// executor key variable, and `module` as `[safe.module]` when given.
fn write_config(bed: &Testbed, dir: &Path, module: Option<Address>) -> String {
    let module = module
        .map(|m| {
            format!("\n[safe.module]\naddress = \"{m}\"\npauser_key_env = \"TEST_PAUSER_KEY\"\n")
        })
        .unwrap_or_default();
    let text = format!(
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
{module}
{vault}"#,
        url = bed.devnet.http_url(),
        safe = bed.safe.address(),
        vault = vault_drain_toml(bed, None, "critical"),
    );
    let path = dir.join("guardian.toml");
    std::fs::write(&path, text).expect("guardian.toml");
    path.to_str().expect("utf-8").to_owned()
}

fn keys(bed: &Testbed) -> Vec<(&'static str, String)> {
    vec![
        ("TEST_EXECUTOR_KEY", key_hex(&bed.deployer)),
        ("TEST_PAUSER_KEY", key_hex(&bed.devnet.signer(PAUSER).expect("pauser key"))),
    ]
}

fn json(args: &[&str], env: &[(&str, String)]) -> serde_json::Value {
    let (ok, stdout, stderr) = guardian(args, env);
    assert!(ok, "guardian {args:?} failed:\n{stdout}\n{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}:\n{stdout}"))
}

fn try_json(args: &[&str]) -> Option<serde_json::Value> {
    let (ok, stdout, _) = guardian(args, &[]);
    serde_json::from_str(&stdout).ok().filter(|_| ok)
}

/// Owners 1 and 2 of the testbed sign `hash` with `guardian approve`.
fn approve_by_two(bed: &Testbed, cfg: &str, hash: &str) {
    for owner in &bed.owners[..2] {
        let (ok, stdout, stderr) = guardian(
            &["approve", hash, "--yes", "--private-key-env", "OWNER_KEY", "--config", cfg],
            &[("OWNER_KEY", key_hex(owner))],
        );
        assert!(ok, "approve failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains("You are about to approve"), "shows what is signed: {stdout}");
    }
}

async fn start_daemon(bed: &Testbed, dir: &Path) -> Daemon {
    let env = keys(bed);
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.clone())).collect();
    let mut daemon =
        Daemon::start_with_env(&dir.join("guardian.toml"), &dir.join("guardian.log"), &env);
    eventually("the daemon to follow the chain", DEADLINE, || {
        assert!(daemon.exited().is_none(), "guardian exited:\n{}", daemon.log());
        daemon.log().contains("guardian is following the chain").then_some(())
    })
    .await;
    daemon
}

/// A deposit, then VaultV2's buggy sponsoredWithdraw takes 2 ether.
async fn drain_vault(bed: &Testbed) -> u64 {
    let user = bed.devnet.provider_for(bed.devnet.signer(7).expect("key"));
    let vault = IVault::new(bed.targets.vault_v2, &user);
    let deposit = vault.deposit().value(parse_ether("3").expect("ether"));
    deposit.send().await.expect("sent").get_receipt().await.expect("mined");
    let attacker = bed.devnet.signer(8).expect("key").address();
    let drain = vault.sponsoredWithdraw(attacker, parse_ether("2").expect("ether"));
    let receipt = drain.send().await.expect("sent").get_receipt().await.expect("mined");
    receipt.block_number.expect("mined")
}

/// The incident once it reached `state`.
async fn incident_in(cfg: &str, state: &str, daemon: &mut Daemon) -> serde_json::Value {
    eventually(&format!("incident #1 to be {state}"), DEADLINE, || {
        assert!(daemon.exited().is_none(), "guardian exited:\n{}", daemon.log());
        try_json(&["incidents", "show", "1", "--json", "--config", cfg])
            .filter(|view| view["incident"]["state"] == state)
    })
    .await
}

fn address(value: &serde_json::Value) -> Address {
    value.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not an address: {value}"))
}

fn timeline_kinds(view: &serde_json::Value) -> Vec<String> {
    view["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_deploy_then_a_critical_drain_pauses_at_once_and_disable_is_proposed() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(&bed, dir.path(), None);
    let pauser = bed.devnet.signer(PAUSER).expect("pauser").address();

    // Deploy: the module lists the config's vault with `pause()`; enabling it is proposed.
    let deployed = json(
        &[
            "module",
            "deploy",
            "--pauser",
            &pauser.to_string(),
            "--private-key-env",
            "DEPLOYER_KEY",
            "--json",
            "--config",
            &cfg,
        ],
        &[("DEPLOYER_KEY", key_hex(&bed.deployer))],
    );
    let module: Address = deployed["module"].as_str().expect("module").parse().expect("address");
    assert_eq!(address(&deployed["targets"][0]), bed.targets.vault_v2);
    let enable = deployed["enable"]["proposal"]["safe_tx_hash"].as_str().expect("hash").to_owned();
    assert_eq!(deployed["enable"]["proposal"]["kind"], "enable_module", "{deployed:#}");
    let cfg = write_config(&bed, dir.path(), Some(module));

    // Not enabled yet, and `info` says so.
    let info = json(&["module", "info", "--json", "--config", &cfg], &keys(&bed));
    assert_eq!(info["enabled"], false);
    assert_eq!(info["pauser_listed"], true);
    let mismatches = info["mismatches"].to_string();
    assert!(mismatches.contains("it is not enabled on the Safe"), "{info:#}");
    assert_eq!(info["targets"][0][1], "0x8456cb59", "pause() calldata: {info:#}");

    // The owners approve; the daemon executes the enable at threshold.
    let mut daemon = start_daemon(&bed, dir.path()).await;
    approve_by_two(&bed, &cfg, &enable);
    let reader = bed.devnet.reader();
    eventually("the module to be enabled", DEADLINE, || {
        assert!(daemon.exited().is_none(), "guardian exited:\n{}", daemon.log());
        try_json(&["module", "info", "--json", "--config", &cfg]).filter(|i| {
            i["enabled"] == true && i["mismatches"].as_array().is_some_and(Vec::is_empty)
        })
    })
    .await;
    let nonce = bed.safe.nonce().await.expect("nonce");
    assert_eq!(nonce, alloy::primitives::U256::from(1), "one Safe transaction: the enable");

    // The daemon connected to the module before it was enabled; a Critical drain now pauses
    // through it at once: no proposal, no signature, no Safe transaction.
    drain_vault(&bed).await;
    let view = incident_in(&cfg, "contained", &mut daemon).await;
    assert!(is_paused(&reader, bed.targets.vault_v2).await.expect("paused()"));
    let kinds = timeline_kinds(&view);
    assert!(kinds.contains(&"module_pause_sent".to_owned()), "{kinds:?}");
    assert!(!kinds.iter().any(|k| k.starts_with("proposal")), "no Safe proposal: {kinds:?}");
    let execution = &view["incident"]["execution"];
    assert_eq!(address(&execution["sender"]), pauser, "sent by the pauser key: {view:#}");
    assert_eq!(bed.safe.nonce().await.expect("nonce"), nonce, "the Safe executed nothing");

    // Disable is a Safe transaction the owners approve.
    let disable = json(
        &["module", "disable", "--reason", "rotating the pauser", "--json", "--config", &cfg],
        &[],
    );
    assert_eq!(disable["proposal"]["kind"], "disable_module", "{disable:#}");
    let hash = disable["proposal"]["safe_tx_hash"].as_str().expect("hash").to_owned();
    approve_by_two(&bed, &cfg, &hash);
    eventually("the module to be disabled", DEADLINE, || {
        try_json(&["module", "info", "--json", "--config", &cfg]).filter(|i| i["enabled"] == false)
    })
    .await;
    assert!(daemon.exited().is_none(), "guardian exited:\n{}", daemon.log());
    assert!(!daemon.log().contains(&key_hex(&bed.devnet.signer(PAUSER).expect("key"))[2..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_module_falls_back_to_a_safe_proposal_and_the_incident_says_why() {
    let bed =
        testbed_with(TestbedOptions { pausers: vec![PAUSER], ..TestbedOptions::default() }).await;
    let module = bed.module.clone().expect("module");
    // The owners disable the module (as after a key compromise), outside guardian.
    let tx = module
        .disable_call()
        .await
        .expect("disable call")
        .safe_tx(bed.safe.nonce().await.expect("nonce"));
    let hash = bed.safe.tx_hash(&tx);
    let approvals: Approvals = bed.owners[..2]
        .iter()
        .map(|o: &PrivateKeySigner| (o.address(), sign_safe_tx_hash(o, hash).expect("sign")))
        .collect();
    let executed = bed
        .safe
        .execute(&bed.deployer, &tx, &approvals, &SendOptions::default())
        .await
        .expect("disableModule");
    assert!(executed.success);
    assert!(!module.is_enabled().await.expect("isModuleEnabled"));

    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(&bed, dir.path(), Some(module.address()));
    let mut daemon = start_daemon(&bed, dir.path()).await;
    drain_vault(&bed).await;

    // The same Critical finding: the module refuses, the incident says why and proposes.
    let view = eventually("the fallback proposal", DEADLINE, || {
        assert!(daemon.exited().is_none(), "guardian exited:\n{}", daemon.log());
        try_json(&["incidents", "show", "1", "--json", "--config", &cfg])
            .filter(|v| v["incident"]["proposals"].as_object().is_some_and(|p| !p.is_empty()))
    })
    .await;
    let why = view["incident"]["module_unavailable"].as_str().expect("reason").to_owned();
    assert!(why.contains("is not enabled on Safe") && why.contains("GS104"), "{why}");
    let kinds = timeline_kinds(&view);
    let unavailable = kinds.iter().position(|k| k == "module_pause_unavailable");
    let proposed = kinds.iter().position(|k| k == "proposal_made");
    assert!(unavailable.is_some() && unavailable < proposed, "{kinds:?}");
    let shown = view["timeline"].to_string();
    assert!(shown.contains("GS104"), "the timeline carries the reason: {shown}");

    // The owners approve the fallback; the daemon executes; the vault is paused.
    let list = try_json(&["proposals", "list", "--json", "--config", &cfg]).expect("list");
    let pause = list
        .as_array()
        .expect("proposals")
        .iter()
        .find(|p| p["kind"] == "pause" && p["status"] == "pending")
        .and_then(|p| p["safe_tx_hash"].as_str())
        .expect("pending pause")
        .to_owned();
    approve_by_two(&bed, &cfg, &pause);
    incident_in(&cfg, "contained", &mut daemon).await;
    assert!(is_paused(&bed.devnet.reader(), bed.targets.vault_v2).await.expect("paused()"));
}
