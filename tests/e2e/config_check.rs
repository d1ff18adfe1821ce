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

/// `config check --online` asks the chain what `run` will rely on: the endpoint's chain id,
/// code at every contract, a Safe 1.4.1 at [safe] address, an executor that can pay.
#[tokio::test]
async fn config_check_online_asks_the_chain() {
    let bed = crate::support::testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("guardian.toml");
    let toml = crate::support::GuardianToml::new(
        &bed,
        &dir.path().join("g.sqlite"),
        crate::support::EVERY_WITHDRAWAL,
    )
    .render()
    .replace("[safe]\n", "[safe]\nexecutor_key_env = \"TEST_EXECUTOR\"\n");
    std::fs::write(&path, &toml).expect("write");
    let check = |path: &std::path::Path, key: String| {
        guardian()
            .args(["config", "check", "--online", "--config"])
            .arg(path)
            .env("TEST_EXECUTOR", key)
            .output()
            .expect("guardian runs")
    };
    let funded = crate::support::key_hex(&bed.deployer);
    let output = check(&path, funded.clone());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    for line in
        ["ok     [[rpc]]", "ok     contract vault", "ok     [safe]: Safe 1.4.1", "ok     executor"]
    {
        assert!(stdout.contains(line), "{line:?} in:\n{stdout}");
    }

    // A contract without code and an executor with nothing: each check says so, exit 1.
    let nobody = "0x00000000000000000000000000000000000000aa";
    std::fs::write(&path, toml.replace(&bed.targets.vault_v2.to_string(), nobody)).expect("write");
    let poor = alloy::signers::local::PrivateKeySigner::random();
    let output = check(&path, crate::support::key_hex(&poor));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let nobody: alloy::primitives::Address = nobody.parse().expect("address");
    assert!(stdout.contains(&format!("FAILED contract vault: no code at {nobody}")), "{stdout}");
    assert!(stdout.contains("FAILED executor") && stdout.contains("holds 0 wei"), "{stdout}");
}

/// Bytes that are not UTF-8 are reported with their line and column.
#[test]
fn config_check_reports_bytes_that_are_not_utf8_with_their_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("guardian.toml");
    std::fs::write(&path, [TYPO.replace("adress", "address").as_bytes(), b"# \xff\n"].concat())
        .expect("write");
    let output =
        guardian().args(["config", "check", "--config"]).arg(&path).output().expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:7:3: byte 0xff is not UTF-8", path.display())),
        "{stderr}"
    );
}
