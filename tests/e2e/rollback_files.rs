//! What adversarial runs broke in the rollback's file handling, each against the real `guardian`
//! binary: planted links, crashes between renames (the binary aborts at the test hooks and the
//! next command recovers), partial multi-file writes, planted backups, a missing ledger, verify
//! and prune, the endpoint pool.

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use guardian_rollback::{
    SqliteLedger,
    atomic_file::{CRASH_BEFORE_RENAME_ENV, CRASH_BETWEEN_RENAMES_ENV},
};

use crate::rollback::{Stage, answered, run};

/// A third managed config in a folder of its own (not touched by rollbacks).
const SVC: &str = r#"
[[rollback.configs]]
name = "svc-config"
path = "svc/svc-config.json"
"#;

fn out(output: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Every temp file under `dir`, recursively.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(read) = fs::read_dir(&dir) else { continue };
        for entry in read {
            let entry = entry.expect("entry");
            let path = entry.path();
            if entry.file_type().expect("type").is_dir() {
                stack.push(path);
            } else if entry.file_name().to_string_lossy().contains(".tmp-") {
                found.push(path);
            }
        }
    }
    found
}

fn journal(stage: &Stage) -> PathBuf {
    stage.root().join("backups/.guardian.journal")
}

fn ledger(stage: &Stage) -> SqliteLedger {
    SqliteLedger::open_existing(&stage.root().join("guardian.sqlite")).expect("ledger")
}

/// `rollback_operations` rows: (kind, outcome).
fn operations(stage: &Stage) -> Vec<(String, String)> {
    let rows = ledger(stage).recorded_operations().expect("operations");
    rows.into_iter().map(|op| (op.kind, op.outcome)).collect()
}

/// `rollback_changes` kinds.
fn changes(stage: &Stage) -> Vec<String> {
    ledger(stage).recorded_change_kinds().expect("changes")
}

fn stamp_of(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("backup ").and_then(|r| r.split_whitespace().next()))
        .unwrap_or_else(|| panic!("a backup stamp in: {stdout}"))
        .to_owned()
}

/// The PIDs the next processes are likely to get, as the adversarial run planted them.
fn likely_pids(count: u32) -> std::ops::Range<u32> {
    let last = fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .unwrap_or(3306);
    last + 1..last + 1 + count
}

#[tokio::test]
async fn planted_temp_links_do_not_redirect_a_restore() {
    let stage = Stage::new().await;
    let created = run(&mut stage.guardian(&["backup", "create"]));
    let stamp = stamp_of(&out(&created).0);
    fs::write(stage.accounts(), "{\"edited\": true}").expect("edit");
    let outside = stage.root().join("outside");
    fs::create_dir_all(&outside).expect("mkdir");
    let victim = outside.join("victim.txt");
    fs::write(&victim, "precious").expect("victim");
    for pid in likely_pids(6000) {
        symlink(&victim, stage.root().join(format!(".smart-accounts-config.json.tmp-{pid}")))
            .expect("plant");
    }

    run(&mut stage.guardian(&["backup", "restore", &stamp, "--yes"]));
    assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious", "outside file intact");
    let meta = fs::symlink_metadata(stage.accounts()).expect("meta");
    assert!(!meta.file_type().is_symlink(), "the managed config is still a regular file");
    assert_eq!(stage.read(&stage.accounts()), stage.accounts_text(stage.bed.targets.vault_v2));
}

#[tokio::test]
async fn symlinked_configs_backups_and_lock_files_are_refused_by_name() {
    let stage = Stage::new().await;
    let created = run(&mut stage.guardian(&["backup", "create"]));
    let stamp = stamp_of(&out(&created).0);
    let victim = stage.root().join("victim.txt");
    fs::write(&victim, "precious").expect("victim");

    // A managed config that is a link.
    fs::remove_file(stage.monitoring()).expect("rm");
    symlink(&victim, stage.monitoring()).expect("link");
    let output = stage.guardian(&["backup", "restore", &stamp, "--yes"]).output().expect("run");
    let (_, stderr) = out(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains("symbolic link") && stderr.contains("monitoring-config.json"),
        "{stderr}"
    );
    assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious");
    fs::remove_file(stage.monitoring()).expect("rm link");
    fs::write(stage.monitoring(), "{}").expect("back");

    // A backup that is a link, with a matching sidecar: refused, and reported by verify.
    let outside = stage.root().join("outside.json");
    fs::write(&outside, "{\"evil\": true}").expect("outside");
    let backup = stage.root().join(format!("backups/monitoring-config_{stamp}.json"));
    fs::remove_file(&backup).expect("rm");
    symlink(&outside, &backup).expect("link");
    let sum = guardian_rollback::backup::sha256_hex(&guardian_rollback::backup::sha256(
        b"{\"evil\": true}",
    ));
    fs::write(
        stage.root().join(format!("backups/monitoring-config_{stamp}.json.sha256")),
        format!("{sum}  monitoring-config_{stamp}.json\n"),
    )
    .expect("sidecar");
    let output = stage
        .guardian(&["backup", "restore", &stamp, "--only", "monitoring-config", "--yes", "--force"])
        .output()
        .expect("run");
    let (_, stderr) = out(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains("symbolic link") && stderr.contains(&backup.display().to_string()),
        "{stderr}"
    );
    assert_eq!(stage.read(&stage.monitoring()), "{}", "nothing restored from outside");
    let output = stage.guardian(&["backup", "verify"]).output().expect("run");
    assert!(!output.status.success());
    assert!(out(&output).0.contains("symbolic link"), "{}", out(&output).0);

    // The lock file as a link.
    let lock = stage.root().join("backups/.guardian.lock");
    let _ = fs::remove_file(&lock);
    symlink(&victim, &lock).expect("link");
    let output = stage.guardian(&["backup", "create"]).output().expect("run");
    let (_, stderr) = out(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("symbolic link") && stderr.contains(".guardian.lock"), "{stderr}");
    assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious");
}

#[tokio::test]
async fn a_restore_with_one_target_folder_unwritable_writes_nothing() {
    let stage = Stage::with_extra(SVC).await;
    fs::create_dir_all(stage.root().join("svc")).expect("mkdir");
    fs::write(stage.root().join("svc/svc-config.json"), "{\"svc\": 1}").expect("svc");
    let created = run(&mut stage.guardian(&["backup", "create"]));
    let stamp = stamp_of(&out(&created).0);
    fs::write(stage.accounts(), "{\"edited\": 1}").expect("edit");
    fs::write(stage.monitoring(), "{\"edited\": 2}").expect("edit");
    // The third target's folder cannot be written (here: it is gone).
    fs::remove_dir_all(stage.root().join("svc")).expect("rm");
    let backups_before = stage.backup_files();

    let output = stage.guardian(&["backup", "restore", &stamp, "--yes"]).output().expect("run");
    let (_, stderr) = out(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains("svc-config.json") && stderr.contains("nothing was changed"),
        "{stderr}"
    );
    assert_eq!(stage.read(&stage.accounts()), "{\"edited\": 1}", "not 2 of 3 files");
    assert_eq!(stage.read(&stage.monitoring()), "{\"edited\": 2}");
    assert_eq!(stage.backup_files(), backups_before, "no undo backup left behind");
    assert!(temp_files(stage.root()).is_empty(), "{:?}", temp_files(stage.root()));
    assert!(changes(&stage).is_empty(), "nothing happened, nothing recorded");
}

#[tokio::test]
async fn a_rollback_killed_between_renames_is_finished_by_the_next_command() {
    let stage = Stage::new().await;
    let (v1, v2) = (stage.bed.targets.vault_v1, stage.bed.targets.vault_v2);
    // Journal order: 2 undo backups + 2 sidecars, then smart-accounts, then monitoring.
    let output = stage
        .guardian(&["rollback", "vault", "--yes"])
        .env(CRASH_BETWEEN_RENAMES_ENV, "5")
        .output()
        .expect("runs");
    assert!(!output.status.success(), "aborted");
    assert_eq!(stage.read(&stage.accounts()), stage.accounts_text(v1), "renamed before the crash");
    assert_eq!(stage.read(&stage.monitoring()), stage.monitoring_text(v2), "not yet");
    assert!(journal(&stage).exists());
    assert_eq!(temp_files(stage.root()).len(), 1, "monitoring's temp file waits");
    assert!(changes(&stage).is_empty(), "not recorded yet");

    // Any next command recovers first, and says so.
    let output = run(&mut stage.guardian(&["backup", "list"]));
    let (stdout, stderr) = out(&output);
    assert!(
        stdout.contains("recovered an interrupted rollback") && stdout.contains("rolled forward"),
        "{stdout}"
    );
    assert!(stderr.contains("WARN"), "a warning line: {stderr}");
    assert_eq!(stage.read(&stage.accounts()), stage.accounts_text(v1));
    assert_eq!(stage.read(&stage.monitoring()), stage.monitoring_text(v1), "consistently new");
    assert!(temp_files(stage.root()).is_empty(), "{:?}", temp_files(stage.root()));
    assert!(!journal(&stage).exists());
    assert_eq!(changes(&stage), ["rollback"]);
    assert_eq!(operations(&stage), [("rollback".to_owned(), "finished_by_recovery".to_owned())]);
    // The undo backup it took restores the pre-rollback state.
    let undo = stage.backups_of("smart-accounts-config");
    assert_eq!(stage.read(&undo[0]), stage.accounts_text(v2));
}

#[tokio::test]
async fn a_rollback_killed_between_renames_whose_temp_was_lost_is_undone() {
    let stage = Stage::new().await;
    let v2 = stage.bed.targets.vault_v2;
    let output = stage
        .guardian(&["rollback", "vault", "--yes"])
        .env(CRASH_BETWEEN_RENAMES_ENV, "5")
        .output()
        .expect("runs");
    assert!(!output.status.success(), "aborted");
    for temp in temp_files(stage.root()) {
        fs::remove_file(temp).expect("lose the temp file");
    }
    let output = run(&mut stage.guardian(&["rollback", "vault", "--dry-run"]));
    let (stdout, _) = out(&output);
    assert!(stdout.contains("rolled back: every file is as before"), "{stdout}");
    assert_eq!(stage.read(&stage.accounts()), stage.accounts_text(v2), "consistently old");
    assert_eq!(stage.read(&stage.monitoring()), stage.monitoring_text(v2));
    assert!(stage.backup_files().is_empty(), "the undone rollback's backups are gone");
    assert!(temp_files(stage.root()).is_empty());
    assert!(changes(&stage).is_empty(), "no change happened");
    assert_eq!(operations(&stage), [("rollback".to_owned(), "undone_by_recovery".to_owned())]);
}

#[tokio::test]
async fn a_restore_killed_after_its_last_rename_is_recorded_by_the_next_command() {
    let stage = Stage::new().await;
    let created = run(&mut stage.guardian(&["backup", "create"]));
    let stamp = stamp_of(&out(&created).0);
    fs::write(stage.accounts(), "{\"edited\": 1}").expect("edit");
    let output = stage
        .guardian(&["backup", "restore", &stamp, "--yes"])
        .env(CRASH_BETWEEN_RENAMES_ENV, "99")
        .output()
        .expect("runs");
    assert!(!output.status.success(), "aborted before the ledger recorded it");
    assert_eq!(stage.read(&stage.accounts()), stage.accounts_text(stage.bed.targets.vault_v2));
    let output = run(&mut stage.guardian(&["backup", "verify"]));
    let (stdout, _) = out(&output);
    assert!(stdout.contains("recovered an interrupted restore"), "{stdout}");
    assert!(stdout.contains("0 bad"), "the undo backup is in the ledger: {stdout}");
    assert_eq!(changes(&stage), ["restore"]);
    assert!(temp_files(stage.root()).is_empty() && !journal(&stage).exists());
}

#[tokio::test]
async fn a_restore_killed_before_a_later_file_is_renamed_changes_no_file() {
    let stage = Stage::new().await;
    let created = run(&mut stage.guardian(&["backup", "create"]));
    let stamp = stamp_of(&out(&created).0);
    let versions = stage.root().join("contract-versions.json");
    let edited = [
        (versions.clone(), "{\"contracts\": {}}\n".to_owned()),
        (stage.monitoring(), "{\"edited\": 2}".to_owned()),
        (stage.accounts(), "{\"edited\": 3}".to_owned()),
    ];
    for (path, text) in &edited {
        fs::write(path, text).expect("edit");
    }
    // The set restores in name order: contract-versions, monitoring, smart-accounts. Killed
    // while writing the second: the first must not have been replaced alone.
    let output = stage
        .guardian(&["backup", "restore", &stamp, "--yes"])
        .env(CRASH_BEFORE_RENAME_ENV, "monitoring-config.json")
        .output()
        .expect("runs");
    assert!(!output.status.success(), "aborted");
    for (path, text) in &edited {
        assert_eq!(&stage.read(path), text, "{} is consistently old", path.display());
    }
    // The next write (read-only commands leave them) removes the dead process's temp files.
    let output = run(&mut stage.guardian(&["backup", "prune", "--keep", "99"]));
    assert!(out(&output).0.contains("stale temp file(s) of dead writers"), "{}", out(&output).0);
    assert!(temp_files(stage.root()).is_empty(), "{:?}", temp_files(stage.root()));
    for (path, text) in &edited {
        assert_eq!(&stage.read(path), text, "{}", path.display());
    }
}

#[tokio::test]
async fn prune_keep_0_asks_before_deleting_every_backup() {
    let stage = Stage::new().await;
    run(&mut stage.guardian(&["backup", "create"]));
    let output = answered(&stage, &["backup", "prune", "--keep", "0"], "no\n");
    let (stdout, stderr) = out(&output);
    assert!(stdout.contains("Type 'yes'"), "{stdout}");
    assert!(!output.status.success() && stderr.contains("not pruned"), "{stderr}");
    assert_eq!(stage.backup_files().len(), 3, "nothing deleted");
    run(&mut stage.guardian(&["backup", "prune", "--keep", "0", "--yes"]));
    assert!(stage.backup_files().is_empty());
}

#[tokio::test]
async fn a_failed_or_killed_backup_create_leaves_no_partial_set() {
    let stage = Stage::new().await;
    // The second of three files cannot be read: no backup of the first may stay.
    let monitoring = stage.read(&stage.monitoring());
    fs::remove_file(stage.monitoring()).expect("rm");
    fs::create_dir(stage.monitoring()).expect("a folder where the file was");
    let output = stage.guardian(&["backup", "create"]).output().expect("run");
    assert!(!output.status.success());
    assert!(out(&output).1.contains("monitoring-config.json"), "{}", out(&output).1);
    assert!(stage.backup_files().is_empty(), "no partial set: {:?}", stage.backup_files());
    fs::remove_dir(stage.monitoring()).expect("rmdir");
    fs::write(stage.monitoring(), monitoring).expect("back");

    // Killed after 2 of its 6 renames: the next command finishes the set.
    let output = stage
        .guardian(&["backup", "create"])
        .env(CRASH_BETWEEN_RENAMES_ENV, "2")
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert_eq!(stage.backup_files().len(), 1, "one backup renamed before the crash");
    let output = run(&mut stage.guardian(&["backup", "verify"]));
    let (stdout, _) = out(&output);
    assert!(stdout.contains("recovered an interrupted backup"), "{stdout}");
    assert!(stdout.contains("3 backup(s) checked, 0 bad"), "whole set, recorded: {stdout}");
    assert!(temp_files(stage.root()).is_empty());

    // Killed before the first rename (the old hook): nothing appears, the temp files go.
    let output = stage
        .guardian(&["backup", "create"])
        .env(CRASH_BEFORE_RENAME_ENV, "1")
        .output()
        .expect("run");
    assert!(!output.status.success());
    run(&mut stage.guardian(&["backup", "create", "--only", "monitoring-config"]));
    assert_eq!(stage.backup_files().len(), 4, "{:?}", stage.backup_files());
    assert!(temp_files(stage.root()).is_empty(), "{:?}", temp_files(stage.root()));
}

#[tokio::test]
async fn a_planted_backup_without_a_ledger_row_is_reported_and_refused_unless_forced() {
    let stage = Stage::new().await;
    let planted = "{\"planted\": true}";
    let name = "smart-accounts-config_20260126T101500Z.json";
    fs::create_dir_all(stage.root().join("backups")).expect("mkdir");
    fs::write(stage.root().join("backups").join(name), planted).expect("plant");
    let sum = guardian_rollback::backup::sha256_hex(&guardian_rollback::backup::sha256(
        planted.as_bytes(),
    ));
    fs::write(stage.root().join(format!("backups/{name}.sha256")), format!("{sum}  {name}\n"))
        .expect("sidecar");
    // It passes sha256sum -c: only the ledger can tell.
    let status = Command::new("sha256sum")
        .args(["-c", &format!("{name}.sha256")])
        .current_dir(stage.root().join("backups"))
        .output()
        .expect("sha256sum");
    assert!(status.status.success());

    let output = stage.guardian(&["backup", "verify"]).output().expect("run");
    let (stdout, _) = out(&output);
    assert!(!output.status.success(), "verify exits 1");
    assert!(stdout.contains("UNRECORDED") && stdout.contains("1 bad"), "{stdout}");
    let before = stage.read(&stage.accounts());
    let output =
        stage.guardian(&["backup", "restore", "20260126T101500Z", "--yes"]).output().expect("run");
    let (_, stderr) = out(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("no record of it") && stderr.contains("--force"), "{stderr}");
    assert_eq!(stage.read(&stage.accounts()), before);
    run(&mut stage.guardian(&["backup", "restore", "20260126T101500Z", "--yes", "--force"]));
    assert_eq!(stage.read(&stage.accounts()), planted);
}

#[tokio::test]
async fn a_db_that_does_not_exist_is_an_error_not_an_empty_ledger() {
    let stage = Stage::new().await;
    run(&mut stage.guardian(&["backup", "create"]));
    let typo = stage.root().join("guardain.sqlite");
    let typo_arg = typo.display().to_string();
    for args in [
        // `backup --db X verify` is how the previous CLI took it too.
        &["backup", "--db", &typo_arg, "verify"][..],
        &["backup", "restore", "20260126T101500Z", "--yes", "--db", &typo_arg],
        &["rollback", "vault", "--dry-run", "--db", &typo_arg],
    ] {
        let output = stage.guardian(args).output().expect("run");
        let (_, stderr) = out(&output);
        assert!(!output.status.success(), "{args:?}");
        assert!(
            stderr.contains(&typo.display().to_string()) && stderr.contains("guardian run"),
            "{args:?}: {stderr}"
        );
        assert!(!typo.exists(), "{args:?} created no empty ledger");
    }
    // On a fresh host, on purpose.
    let fresh = stage.root().join("fresh.sqlite");
    run(stage.guardian(&["backup", "create", "--new-ledger"]).arg("--db").arg(&fresh));
    assert!(fresh.exists());
    SqliteLedger::open_existing(&fresh).expect("a ledger");
}

#[tokio::test]
async fn verify_reports_every_bad_backup_and_exits_1_at_the_end() {
    let stage = Stage::new().await;
    let created = run(&mut stage.guardian(&["backup", "create"]));
    let stamp = stamp_of(&out(&created).0);
    let dir = stage.root().join("backups");
    // An entry that cannot be read (listed first: oldest), then a corrupted one.
    fs::create_dir(dir.join("smart-accounts-config_20200101T000000Z.json")).expect("mkdir");
    let corrupt = dir.join(format!("monitoring-config_{stamp}.json"));
    fs::write(&corrupt, "{\"watch\": \"changed\"}").expect("corrupt");
    let output = stage.guardian(&["backup", "verify"]).output().expect("run");
    let (stdout, stderr) = out(&output);
    assert!(!output.status.success(), "{stderr}");
    assert!(stdout.contains("UNVERIFIABLE: unreadable"), "{stdout}");
    assert!(stdout.contains("CORRUPTED"), "went on past the unreadable one: {stdout}");
    assert!(stdout.contains("4 backup(s) checked, 2 bad"), "{stdout}");
}

#[tokio::test]
async fn prune_keeps_whole_sets_incidents_and_undo_backups_and_asks_before_keep_0() {
    let stage = Stage::new().await;
    let first = stamp_of(&out(&run(&mut stage.guardian(&["backup", "create"]))).0);
    let only = stamp_of(
        &out(&run(&mut stage.guardian(&["backup", "create", "--only", "smart-accounts-config"]))).0,
    );
    // --keep 1: monitoring's newest is in set `first`, so that set stays whole.
    let output = run(&mut stage.guardian(&["backup", "prune", "--keep", "1", "--dry-run"]));
    assert!(out(&output).0.contains("would delete 0 backup(s)"), "{}", out(&output).0);

    // --keep 0 asks; anything but yes deletes nothing.
    let output = answered(&stage, &["backup", "prune", "--keep", "0"], "no\n");
    assert!(!output.status.success());
    assert!(out(&output).1.contains("not pruned"), "{}", out(&output).1);
    assert_eq!(stage.backup_files().len(), 4);

    // A rollback opens an incident (in the ledger) at its undo backup: kept while it is open.
    // Incident windows have one-second resolution (a set taken earlier in the same second is
    // kept too): take the rollback in a later second than the two sets above.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    run(&mut stage.guardian(&["rollback", "vault", "--yes"]));
    let incidents = run(&mut stage.guardian(&["backup", "incidents"]));
    let (listed, _) = out(&incidents);
    assert!(
        listed.contains("1 open incident(s)") && listed.contains("rollback of vault"),
        "{listed}"
    );
    let output = run(&mut stage.guardian(&["backup", "prune", "--keep", "0", "--yes"]));
    let (stdout, _) = out(&output);
    assert!(stdout.contains("taken during an open incident"), "{stdout}");
    let left = stage.backup_files();
    assert!(left.iter().all(|f| !f.contains(&first) && !f.contains(&only)), "{left:?}");
    assert_eq!(left.len(), 2, "the rollback's undo set: {left:?}");

    // Closed: the undo backup is still younger than keep_undo_for (7d by default).
    let id = listed.split_whitespace().next().expect("id").to_owned();
    run(&mut stage.guardian(&["backup", "incidents", "--close", &id]));
    let output = run(&mut stage.guardian(&["backup", "prune", "--keep", "0", "--yes"]));
    assert!(
        out(&output).0.contains("undo backup younger than keep_undo_for"),
        "{}",
        out(&output).0
    );
    assert_eq!(stage.backup_files().len(), 2);

    // keep_undo_for = "0": nothing protects it any more; the whole set goes.
    let toml = stage.read(&stage.root().join("guardian.toml"));
    fs::write(
        stage.root().join("guardian.toml"),
        toml.replace(
            "ledger = \"guardian.sqlite\"",
            "ledger = \"guardian.sqlite\"\nkeep_undo_for = \"0\"",
        ),
    )
    .expect("toml");
    run(&mut stage.guardian(&["backup", "prune", "--keep", "0", "--yes"]));
    assert!(stage.backup_files().is_empty());
}

#[tokio::test]
async fn rollback_uses_the_endpoint_pool_failing_over_and_checking_the_chain() {
    let stage = Stage::new().await;
    let good = stage.bed.devnet.http_url().to_string();
    // First endpoint dead: the pool fails over to the second.
    stage.write_toml(&["http://127.0.0.1:9".to_owned(), good.clone()], "");
    let output = run(&mut stage.guardian(&["rollback", "vault", "--dry-run"]));
    assert!(out(&output).0.contains("verified on chain 138"), "{}", out(&output).0);

    // An endpoint of another chain is refused, whatever it would answer.
    let toml = stage.read(&stage.root().join("guardian.toml"));
    fs::write(stage.root().join("guardian.toml"), toml.replace("id = 138", "id = 1"))
        .expect("toml");
    let output = stage.guardian(&["rollback", "vault", "--dry-run"]).output().expect("run");
    let (_, stderr) = out(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("chain id"), "{stderr}");
}

#[tokio::test]
async fn config_names_guardian_toml_and_only_names_a_managed_config() {
    let stage = Stage::new().await;
    let toml = stage.root().join("guardian.toml");
    let moved = stage.root().join("elsewhere.toml");
    fs::copy(&toml, &moved).expect("copy");
    fs::remove_file(&toml).expect("rm");
    // --config after the subcommand, and the old --config-file spelling.
    let output = run(stage
        .guardian(&["backup", "create", "--only", "monitoring-config", "--config"])
        .arg(&moved)
        .env_remove("GUARDIAN_CONFIG"));
    assert!(out(&output).0.contains("(1 file(s))"), "{}", out(&output).0);
    let output = run(stage
        .guardian(&["backup", "list", "--only", "monitoring-config", "--config-file"])
        .arg(&moved)
        .env_remove("GUARDIAN_CONFIG"));
    assert_eq!(out(&output).0.lines().count(), 1, "{}", out(&output).0);

    // scripts/recover-config.sh passes the name as --only.
    let stamp = stage.backup_files()[0]
        .trim_start_matches("monitoring-config_")
        .trim_end_matches(".json")
        .to_owned();
    fs::write(stage.monitoring(), "{}").expect("edit");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/recover-config.sh");
    let output = Command::new(script)
        .args([&stamp, "monitoring-config"])
        .env("GUARDIAN_BIN", env!("CARGO_BIN_EXE_guardian"))
        .env("GUARDIAN_CONFIG", &moved)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script");
    let (stdout, stderr) = out(&output);
    assert!(stdout.contains("Type 'yes'"), "it asks: {stdout} {stderr}");
    assert!(!output.status.success() && stderr.contains("not restored"), "{stderr}");
    let output = answered_script(&stamp, &moved);
    assert!(output.status.success(), "{}", out(&output).1);
    assert_eq!(stage.read(&stage.monitoring()), stage.monitoring_text(stage.bed.targets.vault_v2));
}

fn answered_script(stamp: &str, config: &Path) -> std::process::Output {
    use std::io::Write as _;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/recover-config.sh");
    let mut child = Command::new(script)
        .args([stamp, "monitoring-config"])
        .env("GUARDIAN_BIN", env!("CARGO_BIN_EXE_guardian"))
        .env("GUARDIAN_CONFIG", config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script");
    child.stdin.take().expect("stdin").write_all(b"yes\n").expect("answer");
    child.wait_with_output().expect("wait")
}
