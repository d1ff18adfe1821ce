//! The command line as scripts use it: secrets only where used, JSON everywhere a result is
//! printed, a closed pipe is not a crash, exit statuses that tell "refused" from "failed".

use std::{
    fs,
    io::Read,
    process::{Command, Stdio},
};

use alloy::primitives::B256;

use crate::rollback::{Stage, chain_toml};

/// guardian.toml of `stage` with every secret named and none set: the RPC URL and its bearer
/// token (`rpc_set` sets them to the testbed's endpoint), and the webhook's URL.
fn with_unset_secrets(stage: &Stage, rpc_set: bool) -> Vec<(&'static str, String)> {
    let toml = fs::read_to_string(stage.root().join("guardian.toml")).expect("read");
    let rollback = toml.split_once("[rollback]").expect("a [rollback] table").1;
    let chain = chain_toml(&[]).replace(
        "[storage]",
        "[[rpc]]\nurl_env = \"TEST_RPC\"\nbearer_env = \"TEST_RPC_TOKEN\"\n\n[storage]",
    );
    let text = format!("{chain}\n[webhook]\nurl_env = \"TEST_WEBHOOK\"\n\n[rollback]{rollback}");
    fs::write(stage.root().join("guardian.toml"), text).expect("write");
    if rpc_set {
        vec![
            ("TEST_RPC", stage.bed.devnet.http_url().to_string()),
            ("TEST_RPC_TOKEN", "t0ken".to_owned()),
        ]
    } else {
        Vec::new()
    }
}

fn guardian(stage: &Stage, args: &[&str], env: &[(&str, String)]) -> (Option<i32>, String, String) {
    let output = stage
        .guardian(args)
        .env_remove("TEST_RPC")
        .env_remove("TEST_RPC_TOKEN")
        .env_remove("TEST_WEBHOOK")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .expect("guardian runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Read-only commands read no secret: with the RPC URL, its token and the webhook URL all unset
/// they work. A command that talks to the chain needs the RPC's, and only those.
#[tokio::test]
async fn read_only_commands_need_no_secret_and_chain_commands_only_the_rpcs() {
    let stage = Stage::new().await;
    let none = with_unset_secrets(&stage, false);
    for args in [
        &["proposals", "list"][..],
        &["incidents", "list"],
        &["findings", "list"],
        &["versions", "vault"],
        &["backup", "list"],
        &["backup", "verify"],
    ] {
        let (code, stdout, stderr) = guardian(&stage, args, &none);
        assert_eq!(code, Some(0), "{args:?} needs no secret:\n{stdout}\n{stderr}");
    }
    // The rollback's on-chain check needs the RPC's secrets, not the webhook's.
    let (code, _, stderr) = guardian(&stage, &["rollback", "vault", "--dry-run"], &none);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("TEST_RPC"), "names what it needs: {stderr}");
    let rpc = with_unset_secrets(&stage, true);
    let (code, stdout, stderr) = guardian(&stage, &["rollback", "vault", "--dry-run"], &rpc);
    assert_eq!(code, Some(0), "no webhook URL needed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("dry run: nothing written"), "{stdout}");
}

/// `… --json | head`: the reader goes away before guardian writes; guardian ends quietly with
/// status 0 instead of panicking on the broken pipe.
#[tokio::test]
async fn a_closed_pipe_ends_a_command_quietly() {
    let stage = Stage::new().await;
    let (code, _, stderr) = guardian(&stage, &["backup", "create"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    for args in [
        &["backup", "list", "--json"][..],
        &["backup", "verify", "--json"],
        &["versions", "vault", "--json"],
        &["proposals", "list", "--json"],
        &["incidents", "list", "--json"],
    ] {
        let mut child = stage
            .guardian(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("guardian starts");
        drop(child.stdout.take()); // `head` is gone before the first line
        let mut stderr = String::new();
        child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read");
        let status = child.wait().expect("wait");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(status.code(), Some(0), "{args:?}: {stderr}");
    }
}

/// `backup create`, `show` and `restore` print JSON with `--json` (one document on stdout),
/// and the exit status says whether a safety check refused (3) or something failed (1).
#[tokio::test]
async fn backup_results_come_as_json_and_refusals_exit_3() {
    let stage = Stage::new().await;
    let json = |args: &[&str]| {
        let (code, stdout, stderr) = guardian(&stage, args, &[]);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        serde_json::from_str::<serde_json::Value>(&stdout)
            .unwrap_or_else(|e| panic!("{args:?} prints one JSON document ({e}): {stdout}"))
    };
    let created = json(&["backup", "create", "--json"]);
    let stamp = created["stamp"].as_str().expect("stamp").to_owned();
    assert_eq!(created["files"].as_array().expect("files").len(), 3, "{created}");
    fs::write(stage.monitoring(), "{}").expect("edit");
    let shown = json(&["backup", "show", &stamp, "--json"]);
    assert_eq!(shown["backups"].as_array().expect("checks").len(), 3, "{shown}");
    let preview = shown["restore"]["files"].as_array().expect("restore preview");
    assert!(preview.iter().any(|f| !f["diff"].as_str().unwrap_or_default().is_empty()), "{shown}");
    let restored =
        json(&["backup", "restore", &stamp, "--only", "monitoring-config", "--yes", "--json"]);
    assert!(restored["undo_stamp"].is_string(), "{restored}");
    assert_eq!(stage.read(&stage.monitoring()), stage.monitoring_text(stage.bed.targets.vault_v2));
    let (code, _, stderr) = guardian(&stage, &["backup", "restore", &stamp, "--json"], &[]);
    assert_eq!(code, Some(1), "--json cannot ask: {stderr}");

    // A corrupted backup is refused: 3. A ledger that does not exist is a failure: 1.
    let backup = stage.root().join("backups").join(format!("monitoring-config_{stamp}.json"));
    fs::write(&backup, "{\"edited\": true}").expect("tamper");
    let (code, _, stderr) = guardian(
        &stage,
        &["backup", "restore", &stamp, "--only", "monitoring-config", "--yes"],
        &[],
    );
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("refusing to restore"), "{stderr}");
    let (code, _, stderr) =
        guardian(&stage, &["backup", "list", "--db", "/nonexistent.sqlite"], &[]);
    assert_eq!(code, Some(1), "{stderr}");

    // A rollback target whose code does not hash as recorded is refused: 3.
    stage.record_v1(stage.bed.targets.vault_v1, B256::repeat_byte(7)).await;
    let (code, _, stderr) = guardian(&stage, &["rollback", "vault", "--yes"], &[]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("refusing to roll vault back"), "{stderr}");
}

/// The exit statuses are documented where operators look: `--help` and the README.
#[test]
fn exit_statuses_are_documented() {
    let help = Command::new(env!("CARGO_BIN_EXE_guardian")).arg("--help").output().expect("runs");
    let help = String::from_utf8_lossy(&help.stdout);
    let readme =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    for text in [help.as_ref(), readme.as_str()] {
        for status in ["0 ", "1 ", "2 ", "3 "] {
            assert!(
                text.contains(&format!("  {status}")) || text.contains(&format!("| {status}")),
                "exit status {status}in:\n{text}"
            );
        }
        assert!(text.contains("refused by a safety check"), "{text}");
    }
}
