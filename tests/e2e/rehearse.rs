//! `guardian rehearse` end to end: the drain scenario passes with its report and timeline, and a
//! Safe that cannot reach its threshold fails the check of the step that did not happen.
//!
//! Run through the binary: the rehearsal sets the executor key variable in its own process,
//! which must not happen inside this multi-threaded test binary.

use std::{path::Path, process::Command};

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

fn report(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("report.json")).expect("report.json written");
    serde_json::from_str(&text).expect("report.json parses")
}

fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["scenarios"][0]["checks"]
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
        "pause executed and verified",
        "config rolled back to VaultV1",
        "backup restored byte-identical",
    ] {
        assert_eq!(check(&report, name)["passed"], true, "{name}: {report:#}");
    }
    let labels: Vec<&str> = drain["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|e| e["label"].as_str())
        .collect();
    for label in
        ["anomaly mined", "finding recorded", "pause proposed", "pause mined", "rollback done"]
    {
        assert!(labels.contains(&label), "{label} missing from {labels:?}");
    }
    assert!(drain["latencies"]["pause_blocks"].as_u64().is_some(), "{report:#}");
    let svg = std::fs::read_to_string(dir.path().join("timeline.svg")).expect("timeline.svg");
    assert!(svg.starts_with("<svg") && svg.contains("pause mined"), "{svg}");
    assert!(dir.path().join("report.md").is_file());
    assert!(stdout.lines().any(|l| l.starts_with("drain ") && l.contains(" passed ")), "{stdout}");
}

#[test]
fn rehearse_with_an_unreachable_threshold_names_the_step_that_did_not_happen() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Threshold 3, but only two owners approve: the Safe must not execute.
    let (ok, stdout, stderr) =
        rehearse(dir.path(), &["--threshold", "3", "--approvers", "2", "--step-timeout", "6"]);
    assert!(!ok, "a rehearsal without a pause must fail:\n{stdout}");
    assert!(
        stderr.contains(
            "drain: pause executed and verified: the Safe did not execute (approvals 2 of 3)"
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
fn rehearse_revert_storm_records_a_critical_finding_and_proposes_a_pause() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, stdout, stderr) = rehearse_scenario("revert-storm", dir.path(), &[]);
    assert!(ok, "rehearse failed:\n{stdout}\n{stderr}");
    let report = report(dir.path());
    assert_eq!(report["passed"], true, "{report:#}");
    let finding = check(&report, "Critical revert-rate finding recorded");
    assert!(finding["detail"].as_str().expect("detail").contains("vault-revert-rate"), "{finding}");
    assert_eq!(check(&report, "pause proposed through the Safe")["passed"], true);
}
