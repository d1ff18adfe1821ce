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

use crate::support::{GuardianToml, HttpStub, StubRequest, contracts, testbed, testbed_with};

/// Every process's command line, as `ps` shows them.
fn command_lines() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()))
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " ").trim().to_owned())
        .filter(|line| !line.is_empty())
        .collect()
}

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
    // The audit log verifies after the drill, and the post-mortem written from it alone has
    // the template's sections and the incident's timeline, event for event.
    assert_eq!(check(&report, "audit log verifies")["passed"], true, "{report:#}");
    assert!(drain["audit"].as_str().expect("audit").starts_with("audit log verified"), "{drain}");
    assert_eq!(check(&report, "post-mortem generated from the audit log")["passed"], true);
    let pm = std::fs::read_to_string(dir.path().join("postmortem-drain.md")).expect("written");
    let headings: Vec<&str> = pm.lines().filter_map(|l| l.strip_prefix("## ")).collect();
    assert_eq!(headings, guardian_core::postmortem::PostMortem::SECTIONS);
    assert!(pm.contains("- **Severity:** critical"), "{pm}");
    assert!(pm.contains("Moved before containment: 4.5 ETH (4500000000000000000 wei)"), "{pm}");
    assert!(pm.contains("paused at once through the pause module"), "{pm}");
    let incident_events: Vec<&str> = labels
        .iter()
        .filter_map(|l| l.strip_prefix("incident #"))
        .filter_map(|l| l.split_once(": ").map(|(_, rest)| rest.split(' ').next().unwrap_or("")))
        .collect();
    let pm_events: Vec<&str> = pm
        .lines()
        .skip_while(|l| !l.starts_with("## Timeline"))
        .skip(4)
        .take_while(|l| l.starts_with("| "))
        .filter_map(|l| l.split(" | ").nth(3))
        .collect();
    assert!(pm_events.len() >= 3, "the lifecycle is in it: {pm}");
    assert_eq!(pm_events, incident_events, "{pm}");
    assert!(md.contains("[postmortem-drain.md](postmortem-drain.md)"), "{md}");
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
    // A provider URL with a key in its path: given through an environment variable, it never
    // appears in a command line (the drill hands Anvil its loopback forwarder).
    let provider = HttpStub::forwarding_to(bed.devnet.http_url()).await;
    let secret_url = format!("http://127.0.0.1:{}/v1/FORK-KEY-s3cret", provider.port);
    let args = ["--fork-url-env", "TEST_FORK_URL", "--config", config.to_str().expect("utf-8")];
    let mut child = Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args(["rehearse", "--scenario", "drain-multisig,levers", "--report-dir"])
        .arg(&reports)
        .args(args)
        .env_remove("RUST_LOG")
        .env("TEST_FORK_URL", &secret_url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("guardian starts");
    // Every command line on the host while the drill runs: none holds the key.
    let mut anvils = Vec::new();
    while child.try_wait().expect("wait").is_none() {
        for line in command_lines() {
            assert!(!line.contains("FORK-KEY-s3cret"), "the key is in a command line: {line}");
            if line.contains("anvil") && line.contains(" -f ") && !anvils.contains(&line) {
                anvils.push(line);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let output = child.wait_with_output().expect("output");
    let (ok, stdout, stderr) = (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert!(!ok, "the stray contract's lever fails the drill:\n{stdout}\n{stderr}");
    assert!(!anvils.is_empty(), "the scan saw the forked Anvil");
    assert!(anvils.iter().all(|l| l.contains(" -f http://127.0.0.1:")), "{anvils:?}");
    assert!(
        provider.requests().iter().all(|r| r.target == "/v1/FORK-KEY-s3cret"),
        "the forwarder adds the key"
    );

    let report = report(&reports);
    assert!(report["forked_from"].as_str().expect("forked_from").starts_with("http://"));
    assert!(!report.to_string().contains("FORK-KEY"), "the report never shows the key");
    // The forked block and the Safe as it stood there, and what the drill asked of the endpoint.
    let fork = &report["fork"];
    let forked = origin.get_block_by_number(head.into()).await.expect("block").expect("exists");
    assert_eq!(fork["block"], head, "{fork}");
    assert_eq!(fork["block_hash"], forked.header.hash.to_string(), "{fork}");
    let owners: Vec<String> =
        bed.owners.iter().map(|o| o.address().to_string().to_lowercase()).collect();
    let reported: Vec<String> = fork["owners"]
        .as_array()
        .expect("owners")
        .iter()
        .map(|o| o.as_str().expect("address").to_lowercase())
        .collect();
    assert_eq!(reported, owners, "{fork}");
    assert_eq!((fork["threshold"].as_u64(), fork["nonce"].as_str()), (Some(2), Some("0x1")));
    let requests = fork["footprint"]["requests"].as_u64().expect("counted");
    assert!(requests > 0 && fork["footprint"]["peak_per_second"].as_u64() > Some(0), "{fork}");
    assert_eq!(requests as usize, provider.requests().len().max(requests as usize), "{fork}");
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
    guardian_rpc::tls::install_crypto_provider();
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

/// The drill's own actors (users, drainer, release key) are never the Safe's owners, even when
/// the owners are the Anvil dev accounts the drill used to take by number (6, 7, 8).
#[tokio::test(flavor = "multi_thread")]
async fn the_drills_actors_are_never_the_safes_owners() {
    let bed = testbed().await;
    let owners: Vec<alloy::primitives::Address> =
        [6, 7, 8].map(|i| bed.devnet.signer(i).expect("key").address()).to_vec();
    let safe = bed
        .singletons
        .create_safe(&bed.executor(), &owners, 2, alloy::primitives::U256::from(7))
        .await
        .expect("a Safe of accounts 6, 7, 8");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = bed.devnet.http_url().to_string();
    let (ok, stdout, stderr) = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        let safe = safe.to_string();
        move || rehearse_scenario("drain", &dir, &["--fork-url", &url, "--safe", &safe])
    })
    .await
    .expect("rehearse ran");
    assert!(ok, "the drill passes with such a Safe:\n{stdout}\n{stderr}");
    let report = report(dir.path());
    let actors = &report["actors"];
    let address = |v: &serde_json::Value| v.as_str().expect("an address").to_lowercase();
    let mut acting: Vec<String> =
        actors["users"].as_array().expect("users").iter().map(address).collect();
    for role in ["executor", "release_key", "attacker", "spammer"] {
        acting.push(address(&actors[role]));
    }
    assert_eq!(acting.len(), 6, "{actors}");
    for owner in &owners {
        let owner = owner.to_string().to_lowercase();
        assert!(!acting.contains(&owner), "{owner} acts in the drill: {actors}");
    }
}

/// A fork endpoint that accepts connections and never answers stops the drill within its
/// timeout, once for the whole drill (not once per scenario), naming what did not answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_fork_endpoint_that_never_answers_stops_the_drill_once_and_soon() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket); // accepted, never answered
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let started = std::time::Instant::now();
    let (ok, stdout, stderr) = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || {
            let url = format!("http://127.0.0.1:{port}");
            rehearse_scenario(
                "drain,upgrade,levers",
                &dir,
                &[
                    "--fork-url",
                    &url,
                    "--safe",
                    "0x5afe000000000000000000000000000000000001",
                    "--fork-timeout",
                    "2",
                ],
            )
        }
    })
    .await
    .expect("rehearse ran");
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("did not answer eth_chainId"), "named on exit: {stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "it hung: {:?}",
        started.elapsed()
    );
    let report = report(dir.path());
    let scenarios = report["scenarios"].as_array().expect("scenarios");
    assert_eq!(scenarios.len(), 1, "one failure for the whole drill: {report:#}");
    assert_eq!(scenarios[0]["scenario"], "preflight");
    let detail = scenarios[0]["checks"][0]["detail"].as_str().expect("detail");
    assert!(detail.contains("did not answer eth_chainId within 2s"), "{detail}");
    assert_eq!(stdout.matches("FAILED").count(), 2, "one scenario line and its check: {stdout}");
}

/// An endpoint that answers eth_chainId and then rate-limits is named as such, not as Anvil
/// failing to start.
#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limiting_fork_endpoint_is_named_http_429() {
    let stub = HttpStub::start(|request: StubRequest| {
        Box::pin(async move {
            let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
            if body["method"] == "eth_chainId" {
                (
                    200,
                    serde_json::json!({"jsonrpc": "2.0", "id": body["id"], "result": "0x8a"})
                        .to_string(),
                )
            } else {
                (429, "{\"error\":\"too many requests\"}".to_owned())
            }
        })
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, stdout, stderr) = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        let url = format!("http://127.0.0.1:{}", stub.port);
        move || {
            rehearse_scenario(
                "drain",
                &dir,
                &["--fork-url", &url, "--safe", "0x5afe000000000000000000000000000000000001"],
            )
        }
    })
    .await
    .expect("rehearse ran");
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("HTTP 429 rate limited"), "{stderr}");
    assert!(!stderr.contains("timed out waiting for node to spawn"), "{stderr}");
}

/// `--chain-id` may not contradict the config's `[chain] id`; nothing is asked of the network.
#[test]
fn rehearse_refuses_a_chain_id_that_contradicts_the_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("guardian.toml");
    std::fs::write(
        &config,
        "[chain]\nid = 138\n\n[[rpc]]\nurl = \"http://127.0.0.1:9\"\n\n[safe]\naddress = \"0x5afe000000000000000000000000000000000001\"\n\n[[contracts]]\nname = \"vault\"\naddress = \"0x1000000000000000000000000000000000000001\"\n",
    )
    .expect("config");
    let (ok, _, stderr) = rehearse(
        dir.path(),
        &[
            "--fork-url",
            "http://127.0.0.1:9",
            "--config",
            config.to_str().expect("utf-8"),
            "--chain-id",
            "1",
        ],
    );
    assert!(!ok);
    assert!(stderr.contains("--chain-id 1 contradicts [chain] id = 138"), "{stderr}");
    assert!(!dir.path().join("report.json").exists(), "nothing was rehearsed");
}
