//! The audit log against an operator with write access to the database or audit.jsonl: every
//! edit, deletion, insertion, reordering or truncation makes `guardian audit verify` exit 1,
//! naming the entry. The entries come from real commands (`guardian backup create`).

use std::{path::Path, process::Command};

fn guardian(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args(args)
        .arg("--config")
        .arg(dir.join("guardian.toml"))
        .env_remove("GUARDIAN_DB")
        .output()
        .expect("guardian runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

/// A host whose log holds six entries: three `backup create`s, each a command and its backup.
fn logged() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = "[chain]\nid = 138\n\n[[rpc]]\nurl = \"http://127.0.0.1:9\"\n\n[storage]\n\
                path = \"guardian.sqlite\"\n\n[[contracts]]\nname = \"vault\"\n\
                address = \"0x1000000000000000000000000000000000000001\"\n\n[rollback]\n\
                backup_dir = \"backups\"\nledger = \"guardian.sqlite\"\n\n[[rollback.configs]]\n\
                name = \"svc\"\npath = \"svc.json\"\n";
    std::fs::write(dir.path().join("guardian.toml"), toml).expect("toml");
    std::fs::write(dir.path().join("svc.json"), "{\"vault\": \"0x01\"}\n").expect("svc");
    std::fs::write(dir.path().join("contract-versions.json"), "{\"versions\": {}}\n")
        .expect("versions");
    for first in [true, false, false] {
        let args: &[&str] =
            if first { &["backup", "create", "--new-ledger"] } else { &["backup", "create"] };
        let (code, text) = guardian(dir.path(), args);
        assert_eq!(code, Some(0), "{text}");
    }
    let (code, text) = guardian(dir.path(), &["audit", "verify"]);
    assert_eq!(code, Some(0), "untouched, it verifies: {text}");
    assert!(
        text.contains("the database: 6 entries") && text.contains("audit.jsonl: 6 entries"),
        "{text}"
    );
    dir
}

fn sqlite(dir: &Path, sql: &str) {
    let db = rusqlite::Connection::open(dir.join("guardian.sqlite")).expect("open");
    db.execute_batch(sql).expect("tamper");
}

/// `audit verify` fails (exit 1) and says `expected`.
fn caught(dir: &Path, expected: &[&str]) {
    let (code, text) = guardian(dir, &["audit", "verify"]);
    assert_eq!(code, Some(1), "{text}");
    for fact in expected {
        assert!(text.contains(fact), "{fact:?} in:\n{text}");
    }
}

#[test]
fn an_edited_row_is_named() {
    let dir = logged();
    sqlite(dir.path(), "UPDATE audit_log SET body = replace(body, 'svc', 'svd') WHERE seq = 2");
    caught(dir.path(), &["entry 2 was edited", "the copies differ at entry 2"]);
}

#[test]
fn a_deleted_row_is_named() {
    let dir = logged();
    sqlite(dir.path(), "DELETE FROM audit_log WHERE seq = 3");
    caught(dir.path(), &["entry 3 was deleted: entry 4 follows entry 2"]);
}

#[test]
fn an_inserted_row_is_named() {
    let dir = logged();
    // A forged entry 4 (entry 2's content), the rest moved up by one.
    sqlite(
        dir.path(),
        "UPDATE audit_log SET seq = seq + 100 WHERE seq >= 4;
         UPDATE audit_log SET seq = seq - 99 WHERE seq >= 100;
         INSERT INTO audit_log (seq, at_ms, kind, body, hash)
             SELECT 4, at_ms, kind, body, hash FROM audit_log WHERE seq = 2;",
    );
    caught(dir.path(), &["entry 2 stands where entry 4 belongs"]);
}

#[test]
fn swapped_rows_are_named() {
    let dir = logged();
    sqlite(
        dir.path(),
        "UPDATE audit_log SET seq = -1 WHERE seq = 2;
         UPDATE audit_log SET seq = 2 WHERE seq = 3;
         UPDATE audit_log SET seq = 3 WHERE seq = -1;",
    );
    caught(dir.path(), &["entry 3 stands where entry 2 belongs: entries were reordered"]);
}

#[test]
fn a_truncated_or_edited_jsonl_is_caught_where_the_copies_part() {
    let dir = logged();
    let file = dir.path().join("audit.jsonl");
    let text = std::fs::read_to_string(&file).expect("jsonl");
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&file, lines[..4].join("\n") + "\n").expect("truncate");
    caught(dir.path(), &["audit.jsonl ends at entry 4; the database continues to entry 6"]);

    let dir = logged();
    let file = dir.path().join("audit.jsonl");
    let text = std::fs::read_to_string(&file).expect("jsonl");
    std::fs::write(&file, text.replacen("\"svc\"", "\"svd\"", 1)).expect("edit");
    caught(dir.path(), &["was edited"]);
    // The file alone, as an auditor elsewhere checks an export.
    let (code, out) = guardian(dir.path(), &["audit", "verify", "--file", "audit.jsonl"]);
    assert_eq!(code, Some(1), "{out}");
}
