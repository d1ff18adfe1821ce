//! Config rollback against a real Anvil: the target is verified on chain, only the configured
//! keys change, backups restore byte for byte, and two processes never interleave their writes.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use alloy::{
    primitives::{Address, B256, keccak256},
    providers::Provider,
};
use guardian_chain::Testbed;
use guardian_core::backup::{BackupName, VersionSelector};
use guardian_rollback::{
    Backups, Rollback, RollbackSettings, SqliteLedger,
    atomic_file::{CRASH_BEFORE_RENAME_ENV, CRASH_BETWEEN_RENAMES_ENV, PAUSE_BEFORE_WRITE_ENV},
};

use crate::support::testbed;

/// The accounts config, with `{VAULT}` at the two configured keys and `{OTHER}` at a key that
/// also holds the vault's address but is not configured (it must not change).
const ACCOUNTS: &str = r#"{
    "contracts": {
        "vault":   { "address": "{VAULT}", "startBlock": 2 },
        "factory": { "address": "{FACTORY}" }
    },
  "paymaster": {"vault":"{VAULT}",  "maxSponsoredGas": 5e5, "note": "caf\u00e9 ✓"},
    "legacyVault": "{OTHER}"
}
"#;

const MONITORING: &str = "{\"watch\": [{\"name\": \"vault\", \"address\": \"{VAULT_LC}\"}]}";

/// A guardian config folder wired to a testbed.
pub(crate) struct Stage {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) bed: Testbed,
}

/// The parts of guardian.toml besides `[rollback]`: chain 138 over the testbed's endpoint (the
/// rollback's on-chain checks go through the same endpoint pool as every command).
pub(crate) fn chain_toml(rpc: &[String]) -> String {
    let rpc: String = rpc.iter().map(|url| format!("[[rpc]]\nurl = \"{url}\"\n\n")).collect();
    format!(
        "[chain]\nid = 138\n\n{rpc}[storage]\npath = \"guardian.sqlite\"\n\n[[contracts]]\n\
         name = \"vault\"\naddress = \"0x1000000000000000000000000000000000000001\"\n"
    )
}

impl Stage {
    pub(crate) async fn new() -> Self {
        Self::with_extra("").await
    }

    /// A stage whose guardian.toml has `extra` appended (more `[[rollback.configs]]`).
    pub(crate) async fn with_extra(extra: &str) -> Self {
        let bed = testbed().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let stage = Self { dir, bed };
        stage.write_toml(&[stage.bed.devnet.http_url().to_string()], extra);
        // The ledger exists, as `guardian run` leaves it: the commands refuse a missing one.
        SqliteLedger::open(&stage.root().join("guardian.sqlite")).expect("ledger");
        let v1 = stage.bed.targets.vault_v1;
        stage.record_v1(v1, stage.code_hash(v1).await).await;
        fs::write(stage.accounts(), stage.accounts_text(stage.bed.targets.vault_v2)).expect("w");
        fs::write(stage.monitoring(), stage.monitoring_text(stage.bed.targets.vault_v2))
            .expect("w");
        stage
    }

    /// (Re)write guardian.toml with these `[[rpc]]` endpoints.
    pub(crate) fn write_toml(&self, rpc: &[String], extra: &str) {
        fs::write(
            self.root().join("guardian.toml"),
            chain_toml(rpc)
                + r#"
[rollback]
backup_dir = "backups"
ledger = "guardian.sqlite"

[[rollback.configs]]
name = "smart-accounts-config"
path = "smart-accounts-config.json"

[[rollback.configs]]
name = "monitoring-config"
path = "monitoring-config.json"

[rollback.contracts.vault]
health_call = "solvent()"
keys = [
  { config = "smart-accounts-config", pointer = "/contracts/vault/address" },
  { config = "smart-accounts-config", pointer = "/paymaster/vault" },
  { config = "monitoring-config", pointer = "/watch/0/address" },
]
"# + extra,
        )
        .expect("guardian.toml");
    }

    pub(crate) async fn code_hash(&self, address: Address) -> B256 {
        keccak256(self.bed.devnet.reader().get_code_at(address).await.expect("code"))
    }

    /// Write the version history: V2 as recorded on chain, and `v1` as the previous version.
    pub(crate) async fn record_v1(&self, v1: Address, v1_code_hash: B256) {
        let v2 = self.bed.targets.vault_v2;
        let v2_hash = self.code_hash(v2).await;
        let versions = serde_json::json!({
            "contracts": { "vault": [
                { "label": "v2", "address": v2, "deployed": { "block": 3 }, "code_hash": v2_hash },
                { "label": "v1", "address": v1, "deployed": { "date": "2026-01-20" },
                  "code_hash": v1_code_hash },
            ]}
        });
        fs::write(self.root().join("contract-versions.json"), versions.to_string())
            .expect("versions");
    }

    pub(crate) fn accounts_text(&self, vault: Address) -> String {
        ACCOUNTS
            .replace("{VAULT}", &vault.to_checksum(None))
            .replace("{FACTORY}", &self.bed.targets.factory.to_checksum(None))
            .replace("{OTHER}", &self.bed.targets.vault_v2.to_checksum(None))
    }

    pub(crate) fn monitoring_text(&self, vault: Address) -> String {
        MONITORING.replace("{VAULT_LC}", &vault.to_checksum(None).to_lowercase())
    }

    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn accounts(&self) -> PathBuf {
        self.root().join("smart-accounts-config.json")
    }

    pub(crate) fn monitoring(&self) -> PathBuf {
        self.root().join("monitoring-config.json")
    }

    pub(crate) fn settings(&self) -> RollbackSettings {
        RollbackSettings::load(&self.root().join("guardian.toml")).expect("settings")
    }

    pub(crate) fn read(&self, path: &Path) -> String {
        fs::read_to_string(path).expect("read")
    }

    pub(crate) fn backup_files(&self) -> Vec<String> {
        match fs::read_dir(self.root().join("backups")) {
            Err(_) => Vec::new(),
            Ok(dir) => {
                let mut names: Vec<String> = dir
                    .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".json"))
                    .collect();
                names.sort();
                names
            }
        }
    }

    /// Backups of one config, oldest first.
    pub(crate) fn backups_of(&self, config: &str) -> Vec<PathBuf> {
        let mut names: Vec<BackupName> = self
            .backup_files()
            .iter()
            .filter_map(|n| BackupName::parse(n))
            .filter(|n| n.config == config)
            .collect();
        names.sort();
        names.iter().map(|n| self.root().join("backups").join(n.file_name())).collect()
    }

    /// The `guardian` binary with this stage's config and chain.
    pub(crate) fn guardian(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_guardian"));
        cmd.args(args)
            .env("GUARDIAN_CONFIG", self.root().join("guardian.toml"))
            .env_remove("GUARDIAN_DB")
            .env_remove("GUARDIAN_RPC_URL")
            .env_remove(CRASH_BEFORE_RENAME_ENV)
            .env_remove(CRASH_BETWEEN_RENAMES_ENV)
            .env_remove(PAUSE_BEFORE_WRITE_ENV);
        cmd
    }
}

pub(crate) fn run(cmd: &mut Command) -> Output {
    let output = cmd.output().expect("guardian runs");
    assert!(
        output.status.success(),
        "guardian failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[tokio::test]
async fn rollback_repoints_exactly_the_configured_keys() {
    let stage = Stage::new().await;
    let (v1, v2) = (stage.bed.targets.vault_v1, stage.bed.targets.vault_v2);
    let settings = stage.settings();
    let ledger = SqliteLedger::open(&settings.ledger_path).expect("ledger");
    let reader = stage.bed.devnet.reader();

    let outcome = Rollback::new(&settings, &ledger)
        .run(&reader, "vault", &VersionSelector::Previous)
        .await
        .expect("rollback");
    assert_eq!(outcome.plan.repoint.from.address, v2);
    assert_eq!(outcome.plan.repoint.to.address, v1);
    assert_eq!(outcome.plan.repoint.changes.len(), 3);
    assert_eq!(outcome.plan.target.chain_id, 138);

    // Byte for byte: only the configured tokens changed, in the case style they had; the
    // unconfigured `legacyVault`, the odd spacing, `5e5` and the escapes are untouched.
    let expected_accounts = stage.accounts_text(v1);
    assert!(expected_accounts.contains(&format!("\"legacyVault\": \"{}\"", v2.to_checksum(None))));
    assert_eq!(stage.read(&stage.accounts()), expected_accounts);
    assert_eq!(stage.read(&stage.monitoring()), stage.monitoring_text(v1));

    // The configs were backed up first, under one stamp; restoring it undoes the rollback.
    let undo = outcome.backup.expect("backup taken").stamp.to_string();
    assert_eq!(
        stage.backup_files(),
        [format!("monitoring-config_{undo}.json"), format!("smart-accounts-config_{undo}.json")]
    );
    let lock = guardian_rollback::WriteLock::acquire(&settings.lock_path()).expect("lock");
    Backups::new(&settings, &ledger).restore(&lock, &undo, None).expect("restore");
    assert_eq!(stage.read(&stage.accounts()), stage.accounts_text(v2));
    assert_eq!(stage.read(&stage.monitoring()), stage.monitoring_text(v2));
    drop(lock);

    // Already at the oldest version: nothing older to go to.
    Rollback::new(&settings, &ledger)
        .run(&reader, "vault", &VersionSelector::Previous)
        .await
        .expect("second rollback");
    let err = Rollback::new(&settings, &ledger)
        .run(&reader, "vault", &VersionSelector::Previous)
        .await
        .expect_err("nothing older");
    assert!(format!("{err:#}").contains("oldest recorded version"), "{err:#}");
}

#[tokio::test]
async fn rollback_is_refused_when_the_target_has_no_code() {
    let stage = Stage::new().await;
    let empty = Address::repeat_byte(0x42);
    stage.record_v1(empty, B256::repeat_byte(1)).await;
    let before = stage.read(&stage.accounts());
    let output = stage.guardian(&["rollback", "vault", "--yes"]).output().expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no code at") && stderr.contains(&empty.to_string()), "{stderr}");
    assert_eq!(stage.read(&stage.accounts()), before, "config untouched");
    assert!(stage.backup_files().is_empty(), "nothing backed up for a refused rollback");
}

#[tokio::test]
async fn rollback_is_refused_when_the_code_hash_differs() {
    let stage = Stage::new().await;
    // V1's address recorded with the factory's code hash: not the contract the history claims.
    let v1 = stage.bed.targets.vault_v1;
    let recorded = stage.code_hash(stage.bed.targets.factory).await;
    let actual = stage.code_hash(v1).await;
    stage.record_v1(v1, recorded).await;
    let before = stage.read(&stage.accounts());
    let output =
        stage.guardian(&["rollback", "vault", "--to", "v1", "--yes"]).output().expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&recorded.to_string()), "names the recorded hash: {stderr}");
    assert!(stderr.contains(&actual.to_string()), "names the on-chain hash: {stderr}");
    assert!(stderr.contains(&v1.to_string()), "names the address: {stderr}");
    assert_eq!(stage.read(&stage.accounts()), before);
    assert!(stage.backup_files().is_empty());
}

#[tokio::test]
async fn dry_run_prints_the_diff_and_changes_nothing() {
    let stage = Stage::new().await;
    let before = stage.read(&stage.accounts());
    let output = run(&mut stage.guardian(&["rollback", "vault", "--dry-run"]));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let v1 = stage.bed.targets.vault_v1.to_checksum(None);
    assert!(
        stdout.contains(&format!("+        \"vault\":   {{ \"address\": \"{v1}\"")),
        "{stdout}"
    );
    assert!(stdout.contains("dry run: nothing written"), "{stdout}");
    assert!(stdout.contains("solvent() == true"), "{stdout}");
    assert_eq!(stage.read(&stage.accounts()), before);
    assert!(stage.backup_files().is_empty());
}

#[tokio::test]
async fn a_crash_before_the_rename_leaves_the_old_config() {
    let stage = Stage::new().await;
    let before = stage.read(&stage.accounts());
    let output = stage
        .guardian(&["rollback", "vault", "--yes"])
        .env(CRASH_BEFORE_RENAME_ENV, "smart-accounts-config.json")
        .output()
        .expect("runs");
    assert!(!output.status.success(), "the process aborted");
    assert_eq!(stage.read(&stage.accounts()), before, "old config intact after the crash");
    let stray: Vec<_> = fs::read_dir(stage.root())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert_eq!(stray.len(), 1, "the crash left its fully written temp file: {stray:?}");

    // The stray temp file does not get in the way of the next attempt, which removes it (its
    // process is gone) and says so, with the undo backup's temp files staged before it.
    let output = run(&mut stage.guardian(&["rollback", "vault", "--yes"]));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("stale temp file(s) of dead writers"), "{stdout}");
    assert!(stdout.contains(&stray[0]), "{stdout}");
    assert_eq!(stage.read(&stage.accounts()), stage.accounts_text(stage.bed.targets.vault_v1));
    let left: Vec<_> = fs::read_dir(stage.root())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "no temp file left: {left:?}");
}

#[tokio::test]
async fn concurrent_rollback_and_restore_run_one_after_the_other() {
    let stage = Stage::new().await;
    let (v1, v2) = (stage.bed.targets.vault_v1, stage.bed.targets.vault_v2);
    // A backup of a different, still-valid state R (an extra field), then back to C.
    let restored_text = stage.accounts_text(v2).replacen('{', "{\n  \"restored\": true,", 1);
    fs::write(stage.accounts(), &restored_text).expect("R");
    run(&mut stage.guardian(&["backup", "create", "--only", "smart-accounts-config"]));
    let stamp = stage.backup_files()[0]
        .trim_start_matches("smart-accounts-config_")
        .trim_end_matches(".json")
        .to_owned();
    fs::write(stage.accounts(), stage.accounts_text(v2)).expect("C");

    // Each process pauses between reading and writing while holding the lock. Without the lock
    // the rollback (started second, on a stale read) would write last and the restore be lost.
    let pause = "1500";
    let quiet = |mut cmd: Command| {
        cmd.env(PAUSE_BEFORE_WRITE_ENV, pause).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().expect("spawn")
    };
    let restore = quiet(stage.guardian(&[
        "backup",
        "restore",
        &stamp,
        "--only",
        "smart-accounts-config",
        "--yes",
    ]));
    std::thread::sleep(Duration::from_millis(300));
    let rollback = quiet(stage.guardian(&["rollback", "vault", "--yes"]));
    for (what, child) in [("restore", restore), ("rollback", rollback)] {
        let output = child.wait_with_output().expect("wait");
        assert!(
            output.status.success(),
            "{what} completed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // Restore then rollback gives R with V1; rollback then restore gives R. Nothing else.
    let rolled = |text: &str| {
        let (v1, v2) = (v1.to_checksum(None), v2.to_checksum(None));
        text.replacen(&format!("\"address\": \"{v2}\""), &format!("\"address\": \"{v1}\""), 1)
            .replacen(&format!("{{\"vault\":\"{v2}\""), &format!("{{\"vault\":\"{v1}\""), 1)
    };
    let final_text = stage.read(&stage.accounts());
    assert!(
        final_text == rolled(&restored_text) || final_text == restored_text,
        "final config is neither intended state:\n{final_text}"
    );
    // Each wrote after the other finished: the second one's pre-write backup holds the first
    // one's result, not the state both started from.
    let sets = stage.backups_of("smart-accounts-config");
    assert_eq!(sets.len(), 3, "the manual backup and one before each write: {sets:?}");
    let first_before = stage.read(&sets[1]);
    let second_before = stage.read(&sets[2]);
    assert_eq!(first_before, stage.accounts_text(v2), "the first saw the initial state");
    assert!(
        second_before == restored_text || second_before == stage.accounts_text(v1),
        "the second saw the first one's result, not:\n{second_before}"
    );
}

#[tokio::test]
async fn backup_cli_verifies_restores_and_suggests() {
    let stage = Stage::new().await;
    let created = run(&mut stage.guardian(&["backup", "create"]));
    let stdout = String::from_utf8_lossy(&created.stdout);
    assert!(stdout.contains("3 file(s)"), "both configs and the version history: {stdout}");
    let listed = run(&mut stage.guardian(&["backup", "list", "--json"]));
    let list: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 3);
    let stamp = list[0]["stamp"].as_str().expect("stamp").to_owned();
    run(&mut stage.guardian(&["backup", "verify"]));

    // A wrong timestamp lists the nearest ones.
    let output =
        stage.guardian(&["backup", "restore", "20200101T000000Z", "--yes"]).output().expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nearest") && stderr.contains(&stamp), "{stderr}");

    // Flip one byte: verify reports it, restore refuses it.
    let backup = stage.root().join("backups").join(format!("smart-accounts-config_{stamp}.json"));
    let mut bytes = fs::read(&backup).expect("read");
    bytes[5] ^= 0x20;
    fs::write(&backup, bytes).expect("flip");
    let output = stage.guardian(&["backup", "verify"]).output().expect("run");
    assert!(!output.status.success(), "verify fails on a corrupted backup");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("CORRUPTED") && stdout.contains("1 bad"), "{stdout}");
    fs::write(stage.accounts(), "{}").expect("edit");
    let output = stage.guardian(&["backup", "restore", &stamp, "--yes"]).output().expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("corrupted") && stderr.contains(&backup.display().to_string()),
        "{stderr}"
    );
    assert_eq!(stage.read(&stage.accounts()), "{}", "nothing restored");

    // The intact config of the same set restores alone.
    run(&mut stage.guardian(&[
        "backup",
        "restore",
        &stamp,
        "--only",
        "monitoring-config",
        "--yes",
    ]));
}

#[tokio::test]
async fn versions_add_records_a_deployment_after_a_backup() {
    let stage = Stage::new().await;
    let factory = stage.bed.targets.factory;
    run(&mut stage.guardian(&[
        "versions",
        "add",
        "vault",
        "--label",
        "v3",
        "--address",
        &factory.to_string(),
        "--block",
        "9",
    ]));
    let report = run(&mut stage.guardian(&["versions", "vault", "--json"]));
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).expect("json");
    let versions = report["versions"].as_array().expect("versions");
    let labels: Vec<&str> = versions.iter().map(|v| v["label"].as_str().expect("label")).collect();
    assert_eq!(labels, ["v3", "v2", "v1"]);
    let code = stage.bed.devnet.reader().get_code_at(factory).await.expect("code");
    assert_eq!(versions[0]["code_hash"], keccak256(&code).to_string());
    assert_eq!(versions[1]["pointed_at_by"].as_array().expect("keys").len(), 3);
    assert!(
        stage.backup_files().iter().any(|n| n.starts_with("contract-versions_")),
        "{:?}",
        stage.backup_files()
    );
    // A label or address already recorded is refused.
    let output = stage
        .guardian(&[
            "versions",
            "add",
            "vault",
            "--label",
            "v2",
            "--address",
            &Address::ZERO.to_string(),
            "--date",
            "2026-02-01",
            "--code-hash",
            &B256::ZERO.to_string(),
        ])
        .output()
        .expect("run");
    assert!(!output.status.success());
}

/// `guardian <args>` with `answer` typed at its prompt.
pub(crate) fn answered(stage: &Stage, args: &[&str], answer: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut child = stage
        .guardian(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().expect("stdin").write_all(answer.as_bytes()).expect("answer");
    child.wait_with_output().expect("wait")
}

#[tokio::test]
async fn rollback_and_restore_ask_before_writing() {
    let stage = Stage::new().await;
    let before = stage.read(&stage.accounts());
    let v1 = stage.bed.targets.vault_v1.to_checksum(None);

    // Anything but "yes" (or no terminal at all) writes nothing, after showing the diff.
    for answer in ["no\n", ""] {
        let output = answered(&stage, &["rollback", "vault"], answer);
        assert!(!output.status.success());
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains(&v1) && stdout.contains("Type 'yes'"), "{stdout}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("not rolled back: nothing written"), "{stderr}");
        assert_eq!(stage.read(&stage.accounts()), before);
        assert!(stage.backup_files().is_empty());
    }
    let output = answered(&stage, &["rollback", "vault", "--json"], "");
    assert!(!output.status.success(), "--json cannot prompt");
    assert!(String::from_utf8_lossy(&output.stderr).contains("add --yes"));

    let output = answered(&stage, &["rollback", "vault"], "yes\n");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stage.read(&stage.accounts()), stage.accounts_text(stage.bed.targets.vault_v1));
    let files = stage.backup_files();
    let stamp = files
        .iter()
        .find_map(|f| f.strip_prefix("smart-accounts-config_"))
        .and_then(|f| f.strip_suffix(".json"))
        .unwrap_or_else(|| panic!("a backup of the accounts config: {files:?}"))
        .to_owned();

    // Restoring the undo backup asks the same way.
    let only = ["backup", "restore", &stamp, "--only", "smart-accounts-config"];
    let output = answered(&stage, &only, "no\n");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not restored: nothing written"), "{stderr}");
    assert_eq!(stage.read(&stage.accounts()), stage.accounts_text(stage.bed.targets.vault_v1));
    let output = answered(&stage, &only, "yes\n");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stage.read(&stage.accounts()), before, "the restore brought V2 back byte for byte");
}

/// `guardian rollback` runs the restart hooks of the configs it rewrote, once, and the recovery
/// checks, as the daemon does: a hook that fails makes the command fail, naming it and the undo.
#[tokio::test]
async fn a_cli_rollback_restarts_the_services_and_reports_a_failed_hook() {
    let hooks = "[[rollback.restart]]\nconfigs = [\"monitoring-config\"]\ncommand = [\"./restart.sh\", \"monitor\"]\n\n\
                 [[rollback.restart]]\nconfigs = [\"smart-accounts-config\"]\ncommand = [\"sh\", \"-c\", \"echo broken >&2; exit 3\"]\n";
    let stage = Stage::with_extra(hooks).await;
    let script = stage.root().join("restart.sh");
    fs::write(&script, "#!/bin/sh\necho \"$1\" >> restarts.log\n").expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let output = stage.guardian(&["rollback", "vault", "--yes"]).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a failed restart fails the command: {stdout}");
    assert_eq!(stage.read(&stage.accounts()), stage.accounts_text(stage.bed.targets.vault_v1));
    assert_eq!(fs::read_to_string(stage.root().join("restarts.log")).expect("ran"), "monitor\n");
    assert!(
        stdout.contains("recovery ok     restart `./restart.sh monitor`: exit status: 0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("recovery FAILED restart `sh -c echo broken >&2; exit 3`: exit status: 3"),
        "{stdout}"
    );
    assert!(stderr.contains("undo the rollback with `guardian backup restore 20"), "{stderr}");
    let logs: Vec<_> = fs::read_dir(stage.root().join("backups/recovery"))
        .expect("the outputs are kept")
        .map(|e| fs::read_to_string(e.expect("entry").path()).expect("read"))
        .collect();
    assert!(logs.iter().any(|l| l.contains("broken")), "{logs:?}");

    // Restoring the undo backup rewrites both configs back: both hooks run again.
    let undo = stderr
        .split("guardian backup restore ")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .expect("the undo stamp")
        .to_owned();
    let output = stage.guardian(&["backup", "restore", &undo, "--yes"]).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "the broken hook fails the restore too: {stdout}");
    assert_eq!(stage.read(&stage.accounts()), stage.accounts_text(stage.bed.targets.vault_v2));
    let restarts = fs::read_to_string(stage.root().join("restarts.log")).expect("ran");
    assert_eq!(restarts, "monitor\nmonitor\n", "once per rollback, once per restore");
}

#[test]
fn a_restart_hook_is_a_command_or_a_unit_never_both() {
    let base = "[rollback]\n[[rollback.configs]]\nname = \"svc\"\npath = \"svc.json\"\n";
    for (hook, expected) in [
        ("[[rollback.restart]]\nunit = \"svc.service\"\ncommand = [\"true\"]\n", "keep one"),
        ("[[rollback.restart]]\n", "needs `unit"),
        (
            "[[rollback.restart]]\nconfigs = [\"nope\"]\nunit = \"svc\"\n",
            "not a [[rollback.configs]]",
        ),
        ("[[rollback.health]]\nurl = \"ftp://x\"\n", "http:// or https://"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("guardian.toml");
        fs::write(&path, format!("{base}{hook}")).expect("write");
        let error = RollbackSettings::load(&path).expect_err(hook);
        assert!(format!("{error:#}").contains(expected), "{hook}: {error:#}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("guardian.toml");
    fs::write(&path, format!("{base}[[rollback.restart]]\nunit = \"svc.service\"\n")).expect("w");
    let settings = RollbackSettings::load(&path).expect("a unit alone is fine");
    assert_eq!(settings.recovery.restart[0].argv(), ["systemctl", "restart", "svc.service"]);
}
