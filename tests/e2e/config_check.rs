//! `guardian config check`: the committed template passes, a broken file is refused with the
//! place of the problem, and neither starts anything.

use std::process::Command;

fn guardian() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_guardian"));
    cmd.env_remove("GUARDIAN_CONFIG").env_remove("RUST_LOG");
    cmd
}

#[test]
fn config_check_accepts_the_template_and_redacts_secrets() {
    let template = concat!(env!("CARGO_MANIFEST_DIR"), "/config/guardian.toml");
    let output = guardian()
        .args(["config", "check", "--config", template])
        .env("GUARDIAN_WEBHOOK_URL", "https://hooks.example/services/T0P-SECRET")
        .output()
        .expect("guardian runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("chain id 138"), "{stdout}");
    assert!(stdout.contains("rpc ws://127.0.0.1:8546"), "{stdout}");
    assert!(stdout.contains("vault-revert-rate [revert_rate, critical]"), "{stdout}");
    assert!(stdout.contains("vault → propose_pause+rollback"), "{stdout}");
    assert!(!stdout.contains("T0P-SECRET") && !stderr.contains("T0P-SECRET"), "{stdout}{stderr}");
}

#[test]
fn config_check_refuses_a_typo_naming_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("guardian.toml");
    std::fs::write(
        &path,
        "[[rpc]]\nurl = \"http://127.0.0.1:8545\"\n\n[[contracts]]\nname = \"vault\"\nadress = \"0x1000000000000000000000000000000000000001\"\n",
    )
    .expect("write");
    let output = guardian()
        .args(["config", "check", "--config"])
        .arg(&path)
        .output()
        .expect("guardian runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let expected = format!("{}:6:1: unknown field `adress`", path.display());
    assert!(stderr.contains(&expected), "expected {expected:?} in:\n{stderr}");
    assert!(output.stdout.is_empty());
}
