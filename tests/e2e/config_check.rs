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
    let (_dir, path, output) = check(TYPO);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let expected = format!("{}:6:1: unknown field `adress`", path.display());
    assert!(stderr.contains(&expected), "expected {expected:?} in:\n{stderr}");
    assert!(output.stdout.is_empty());
}

/// `guardian config check` of a file holding `text`: its folder, its path and the output.
fn check(text: &str) -> (tempfile::TempDir, std::path::PathBuf, std::process::Output) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("guardian.toml");
    std::fs::write(&path, text).expect("write");
    let output = guardian()
        .args(["config", "check", "--config"])
        .arg(&path)
        .output()
        .expect("guardian runs");
    (dir, path, output)
}

/// A file with a bad address at line 6, column 11 (the opening quote of the value).
const BAD_ADDRESS: &str = "[[rpc]]\nurl = \"http://127.0.0.1:9\"\n\n[[contracts]]\nname = \"vault\"\naddress = \"0x10000000000000000000000000000000000001\"\n";

/// A file with a typo in a key at line 6, column 1.
const TYPO: &str = "[[rpc]]\nurl = \"http://127.0.0.1:9\"\n\n[[contracts]]\nname = \"vault\"\nadress = \"0x1000000000000000000000000000000000000001\"\n";

#[test]
fn config_check_refuses_a_bad_address_naming_file_line_and_column() {
    let (_dir, path, output) = check(BAD_ADDRESS);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let expected = format!("{}:6:11:", path.display());
    assert!(stderr.contains(&expected), "expected {expected:?} in:\n{stderr}");
    assert!(stderr.contains("0x10000000000000000000000000000000000001"), "{stderr}");
    assert!(output.stdout.is_empty());
}

/// `guardian run` validates the whole file before it connects, opens or writes anything: a typo
/// or a bad address is refused at once, with the place, and no database appears. (The RPC is a
/// closed port: a daemon that did start would wait for it with backoff instead of exiting.)
#[test]
fn run_refuses_a_broken_config_before_starting() {
    for (what, text, place) in
        [("typo", TYPO, ":6:1: unknown field `adress`"), ("address", BAD_ADDRESS, ":6:11:")]
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("guardian.toml");
        std::fs::write(&path, text).expect("write");
        let mut child = guardian()
            .args(["run", "--config"])
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("guardian runs");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{what}: guardian run started with a broken config");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
            .expect("read stderr");
        assert_eq!(status.code(), Some(1), "{what}: {stderr}");
        let expected = format!("{}{place}", path.display());
        assert!(stderr.contains(&expected), "{what}: expected {expected:?} in:\n{stderr}");
        assert!(!dir.path().join("guardian.sqlite").exists(), "{what}: nothing written");
    }
}
