//! `guardian rehearse` end to end, through the binary as operators run it: every scenario
//! passes with its report and timeline; a Safe that cannot reach its threshold fails the check
//! of the step that did not happen; `--fork-url` drills against another chain's Safe without
//! touching that chain; `--keep-running` leaves the stage up until Ctrl-C.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use alloy::providers::Provider;
use guardian_chain::safe::is_paused;

use guardian_chain::safe::{deploy, encode_address};

use guardian_chain::TestbedOptions;

use crate::support::{GuardianToml, contracts, testbed_with};

fn rehearse(report_dir: &Path, extra: &[&str]) -> (bool, String, String) {
    rehearse_scenario("drain", report_dir, extra)
}

fn rehearse_scenario(scenario: &str, report_dir: &Path, extra: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args(["rehearse", "--scenario", scenario, "--report-dir"])
        .arg(report_dir)
        .args(extra)
        .env_remove("RUST_LOG")
        .output()
        .expect("guardian runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Rehearse `scenario` into `dir`, which must succeed with `passed: true`; returns the report.
fn passing_report(scenario: &str, dir: &Path) -> serde_json::Value {
    let (ok, stdout, stderr) = rehearse_scenario(scenario, dir, &[]);
    assert!(ok, "rehearse failed:\n{stdout}\n{stderr}");
    let report = report(dir);
    assert_eq!(report["passed"], true, "{report:#}");
    report
}

fn report(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("report.json")).expect("report.json written");
    serde_json::from_str(&text).expect("report.json parses")
}

fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    scenario_check(report, 0, name)
}

fn scenario_check<'a>(
    report: &'a serde_json::Value,
    scenario: usize,
    name: &str,
) -> &'a serde_json::Value {
    report["scenarios"][scenario]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {report:#}"))
}

#[test]
fn rehearse_drain_passes_and_writes_the_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, stdout, stderr) = rehearse(dir.path(), &[]);
    assert!(ok, "rehearse failed:\n{stdout}\n{stderr}");
    let report = report(dir.path());
    assert_eq!(report["passed"], true, "{report:#}");
    assert_eq!(report["chain_id"], 138);
    let drain = &report["scenarios"][0];
    assert_eq!(drain["scenario"], "drain");
    for name in [
        "Critical finding recorded",
        "paused at once through the pause module",
        "pause mined in the block after the anomaly",
        "config rolled back to VaultV1",
        "backup restored byte-identical",
    ] {
        assert_eq!(check(&report, name)["passed"], true, "{name}: {report:#}");
    }
    let at_once = check(&report, "paused at once through the pause module");
    assert!(
        at_once["detail"].as_str().expect("detail").contains("Safe nonce still 1, no owner signed"),
        "{at_once}"
    );
    // The burst drained the vault within its block: the pause in the next one saved nothing.
    assert_eq!(drain["wei_lost"], "4500000000000000000", "{report:#}");
    let labels: Vec<&str> = drain["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|e| e["label"].as_str())
        .collect();
    for label in ["anomaly mined", "finding recorded", "pause mined (module)", "rollback done"] {
        assert!(labels.contains(&label), "{label} missing from {labels:?}");
    }
    assert!(
        labels.iter().all(|l| !l.contains("proposal")),
        "no Safe proposal for a Critical: {labels:?}"
    );
    assert_eq!(drain["latencies"]["pause_blocks"], 1, "{report:#}");
    let svg = std::fs::read_to_string(dir.path().join("timeline.svg")).expect("timeline.svg");
    assert!(svg.starts_with("<svg") && svg.contains("pause mined"), "{svg}");
    let md = std::fs::read_to_string(dir.path().join("report.md")).expect("report.md");
    assert!(md.contains("Wei lost before the pause: 4500000000000000000 (4.5 ETH)."), "{md}");
    assert!(stdout.lines().any(|l| l.starts_with("drain ") && l.contains(" passed ")), "{stdout}");
}

#[test]
fn rehearse_with_an_unreachable_threshold_names_the_step_that_did_not_happen() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Threshold 3, but only two owners approve: the Safe must not execute.
    let (ok, stdout, stderr) = rehearse_scenario(
        "drain-multisig",
        dir.path(),
        &["--threshold", "3", "--approvers", "2", "--step-timeout", "6"],
    );
    assert!(!ok, "a rehearsal without a pause must fail:\n{stdout}");
    assert!(
        stderr.contains(
            "drain-multisig: pause executed and verified: the Safe did not execute (approvals 2 of 3)"
        ),
        "the failure names the step:\n{stderr}"
    );
    let report = report(dir.path());
    assert_eq!(report["passed"], false);
    assert_eq!(
        check(
            &report,
            "approval 2 of owner 0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC (on-chain approveHash)"
        )["passed"],
        true
    );
    let paused = check(&report, "pause executed and verified");
    assert_eq!(paused["passed"], false);
    let rollback = check(&report, "config rolled back to VaultV1");
    assert_eq!(rollback["passed"], false);
    assert!(
        rollback["detail"]
            .as_str()
            .expect("detail")
            .contains("\"pause executed and verified\" did not happen"),
        "{rollback}"
    );
    assert!(dir.path().join("timeline.svg").is_file());
}

#[test]
fn rehearse_revert_storm_records_a_critical_finding_and_pauses_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = passing_report("revert-storm", dir.path());
    let finding = check(&report, "Critical revert-rate finding recorded");
    assert!(finding["detail"].as_str().expect("detail").contains("vault-revert-rate"), "{finding}");
    assert_eq!(check(&report, "paused at once through the pause module")["passed"], true);
    assert_eq!(report["scenarios"][0]["wei_lost"], "0", "reverts move no value");
}

/// The High drain goes through the owners; the drain broadcast to the mempool is paused first
/// in its own block and loses nothing.
#[test]
fn rehearse_drain_multisig_approves_and_frontrun_preempts_the_pending_drain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = passing_report("drain-multisig,frontrun", dir.path());
    assert_eq!(report["scenarios"][0]["scenario"], "drain-multisig");
    for name in
        ["High finding recorded", "pause executed and verified", "config rolled back to VaultV1"]
    {
        assert_eq!(scenario_check(&report, 0, name)["passed"], true, "{name}: {report:#}");
    }
    assert!(report["scenarios"][0]["latencies"]["pause_blocks"].as_u64().expect("blocks") >= 1);

    assert_eq!(report["scenarios"][1]["scenario"], "frontrun");
    let first = scenario_check(&report, 1, "pause mined first, in the drain's own block");
    assert!(
        first["detail"].as_str().expect("detail").contains("the pause is transaction 0"),
        "{first}"
    );
    let reverted = scenario_check(&report, 1, "drain reverted with EnforcedPause()");
    assert!(reverted["detail"].as_str().expect("detail").contains("0xd93c0665"), "{reverted}");
    let finding = scenario_check(&report, 1, "Critical finding predicted from the pending drain");
    assert!(
        finding["detail"].as_str().expect("detail").contains("predicted from pending tx 0x"),
        "{finding}"
    );
    assert_eq!(report["scenarios"][1]["wei_lost"], "0", "{report:#}");
    assert_eq!(report["scenarios"][1]["latencies"]["pause_blocks"], 0);
}

#[test]
fn rehearse_upgrade_and_restart_pause_once_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = passing_report("upgrade,restart", dir.path());
    assert_eq!(report["scenarios"][0]["scenario"], "upgrade");
    let finding = scenario_check(&report, 0, "Critical implementation-change finding recorded");
    assert!(
        finding["detail"].as_str().expect("detail").contains("EIP-1967 implementation"),
        "{finding}"
    );
    assert_eq!(
        scenario_check(&report, 0, "funds held: sweep() refused while paused")["passed"],
        true
    );

    assert_eq!(report["scenarios"][1]["scenario"], "restart");
    let killed = scenario_check(&report, 1, "daemon killed (SIGKILL) as the drain began");
    assert_eq!(killed["passed"], true, "{killed}");
    let once = scenario_check(&report, 1, "anomaly caught exactly once");
    let once = once["detail"].as_str().expect("detail");
    assert!(once.contains("3 occurrences, one for each drain call"), "{once}");
    assert!(once.contains("one pause through the module, no Safe proposal"), "{once}");
    assert!(report["scenarios"][1]["latencies"]["pause_blocks"].as_u64().is_some());
}

/// A `[webhook]` whose secret is not set where the drill runs: a drill never needs it.
const UNSET_WEBHOOK: &str = "\n[webhook]\nurl_env = \"GUARDIAN_TEST_UNSET_WEBHOOK\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn rehearse_on_a_fork_impersonates_the_configured_safe_and_leaves_the_chain_untouched() {
    // The "production" chain: a 2-of-3 Safe and the targets it owns, mining only on demand, and
    // one contract whose owner is not the Safe (a lever that would fail during an incident).
    // The Safe has its pause module (pauser: dev account 4) listing VaultV2.
    let bed = testbed_with(TestbedOptions { pausers: vec![4], ..TestbedOptions::default() }).await;
    let module = bed.module.as_ref().expect("module").address();
    let stray_owner = bed.devnet.signer(5).expect("key").address();
    let (_, compiled) = contracts();
    let stray = deploy(
        &bed.executor(),
        compiled.get("VaultV1").expect("VaultV1"),
        &encode_address(stray_owner),
    )
    .await
    .expect("stray vault");
    let origin = bed.devnet.reader();
    let head = origin.get_block_number().await.expect("head");
    let nonce = bed.safe.nonce().await.expect("nonce");
    let vault_balance = origin.get_balance(bed.targets.vault_v2).await.expect("balance");

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("production.toml");
    // The operators' production config: the Safe and the contracts they watch on that chain.
    let toml = GuardianToml::new(&bed, &dir.path().join("production.sqlite"), "");
    let toml = format!(
        "{}\n[[contracts]]\nname = \"stray\"\naddress = \"{stray}\"\n{UNSET_WEBHOOK}\n[safe.module]\naddress = \"{module}\"\n",
        toml.render()
    );
    std::fs::write(&config, toml).expect("config");
    let reports = dir.path().join("report");
    let url = bed.devnet.http_url().to_string();
    let args = ["--fork-url", url.as_str(), "--config", config.to_str().expect("utf-8")];
    let (ok, stdout, stderr) = tokio::task::spawn_blocking({
        let reports = reports.clone();
        let args = args.map(str::to_owned);
        move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            rehearse_scenario("drain-multisig,levers", &reports, &args)
        }
    })
    .await
    .expect("rehearse ran");
    assert!(!ok, "the stray contract's lever fails the drill:\n{stdout}\n{stderr}");

    let report = report(&reports);
    assert!(report["forked_from"].as_str().expect("forked_from").starts_with("http://"));
    assert_eq!(report["scenarios"][0]["scenario"], "drain-multisig");
    assert_eq!(report["scenarios"][0]["passed"], true, "{report:#}");
    // The configured Safe's own owners approved, impersonated on the fork.
    let owner = bed.owners[0].address();
    let approval = check(
        &report,
        &format!("approval 1 of owner {owner} (on-chain approveHash, impersonated)"),
    );
    assert_eq!(approval["passed"], true, "{approval}");
    let paused = check(&report, "pause executed and verified");
    // Nonce 0 enabled the module on "production"; the drill's pause is the next one.
    assert!(paused["detail"].as_str().expect("detail").contains("Safe nonce 2"), "{paused}");

    // `levers` checked the operators' own contracts on production state: the vault the Safe
    // owns can be paused; the stray one cannot, and the check says why.
    assert_eq!(report["scenarios"][1]["scenario"], "levers");
    let vault = bed.targets.vault_v2;
    let good = scenario_check(&report, 1, &format!("vault ({vault}) can be paused by the Safe"));
    assert_eq!(good["passed"], true, "{good}");
    let bad = scenario_check(&report, 1, &format!("stray ({stray}) can be paused by the Safe"));
    assert_eq!(bad["passed"], false, "{bad}");
    assert!(bad["detail"].as_str().expect("detail").contains("the Safe is not the owner"), "{bad}");
    assert!(stderr.contains("levers: stray"), "the failure is named on exit:\n{stderr}");
    // The operators' pause module (not the rehearsal's own) is enabled and lists the vault, not
    // the stray contract.
    let enabled = scenario_check(&report, 1, &format!("pause module {module} enabled"));
    assert_eq!(enabled["passed"], true, "{enabled}");
    let listed = format!("vault ({vault}) is a target of the pause module");
    assert_eq!(scenario_check(&report, 1, &listed)["passed"], true);
    let unlisted =
        scenario_check(&report, 1, &format!("stray ({stray}) is a target of the pause module"));
    assert!(unlisted["detail"].as_str().expect("detail").starts_with("not listed"), "{unlisted}");

    // The forked chain saw nothing: no block, no Safe transaction, the vault untouched.
    assert_eq!(origin.get_block_number().await.expect("head"), head);
    assert_eq!(bed.safe.nonce().await.expect("nonce"), nonce);
    assert!(!is_paused(&origin, bed.targets.vault_v2).await.expect("paused()"));
    assert_eq!(origin.get_balance(bed.targets.vault_v2).await.expect("balance"), vault_balance);
}

#[test]
fn rehearse_on_a_fork_without_a_safe_says_what_to_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, _, stderr) = rehearse(dir.path(), &["--fork-url", "http://127.0.0.1:9"]);
    assert!(!ok);
    assert!(stderr.contains("pass --safe ADDRESS or --config guardian.toml"), "{stderr}");
    assert!(!dir.path().join("report.json").exists(), "nothing was rehearsed");
}

#[test]
fn rehearse_keep_running_keeps_the_stage_until_interrupted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args(["rehearse", "--scenario", "quiet", "--keep-running", "--report-dir"])
        .arg(dir.path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("guardian runs");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let rpc = loop {
        let line = lines.next().expect("guardian printed the kept stage").expect("utf-8");
        seen.push(line.clone());
        if let Some(url) = line.trim().strip_prefix("rpc") {
            break url.trim().to_owned();
        }
    };
    assert!(seen.iter().any(|l| l.starts_with("quiet ") && l.contains(" passed ")), "{seen:?}");
    assert!(dir.path().join("report.json").is_file(), "the report is written before waiting");

    // The chain is still there, mining chain 138, and the daemon still follows it.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let provider = alloy::providers::ProviderBuilder::new().connect_http(rpc.parse().expect("url"));
    let chain = runtime.block_on(provider.get_chain_id()).expect("the kept Anvil answers");
    assert_eq!(chain, 138);

    let interrupted =
        Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill runs");
    assert!(interrupted.success());
    let status = child.wait().expect("guardian exits");
    assert!(status.success(), "a passing drill exits 0 after Ctrl-C: {status:?}");
    let gone = runtime.block_on(provider.get_chain_id());
    assert!(gone.is_err(), "Anvil stops with the rehearsal");
}
