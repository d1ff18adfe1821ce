//! The audit log: appended with each state change, mirrored to audit.jsonl, checked as a chain.

use std::io::Write as _;

use guardian_core::audit::{Break, Record};

use super::*;

/// A store on disk in `dir` with a drain incident, its proposal and a signature.
fn busy_store(dir: &std::path::Path) -> Store {
    let mut store = Store::open(dir.join("guardian.sqlite")).expect("open");
    store.bind_chain(138).expect("chain");
    let b1 = block(1, 0);
    let id = store.commit_blocks(&[(b1, vec![finding("drain", b1, 0)])]).expect("c").transitions[0]
        .incident_id;
    let p = test_proposal(B256::repeat_byte(7));
    store.record_proposal(id, &p, 2, "replica", "proposed").expect("proposal");
    store.add_signature(p.safe_tx_hash, VAULT, &[1; 65]).expect("signature");
    store
}

fn kinds(store: &Store) -> Vec<String> {
    store
        .audit_rows()
        .expect("rows")
        .iter()
        .map(|r| r.sealed.entry().expect("entry").record.name().to_owned())
        .collect()
}

#[test]
fn every_change_is_one_entry_in_both_copies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = busy_store(dir.path());
    assert_eq!(
        kinds(&store),
        ["incident", "finding_recorded", "proposal", "incident", "signature_accepted"],
        "opened, its finding, the proposal (trail + incident), the signature"
    );
    let file = crate::audit::jsonl_path(&dir.path().join("guardian.sqlite"));
    let check = crate::audit::verify_copies(&store, &file).expect("verify");
    assert!(check.intact(), "{check:?}");
    assert_eq!(check.database.expect("chain").entries, 5);
    let lines = std::fs::read_to_string(&file).expect("jsonl");
    assert_eq!(lines.lines().count(), 5);
    // The finding's entry carries what a post-mortem needs.
    let rows = store.audit_rows().expect("rows");
    let Record::FindingRecorded { rule, incident, tx, .. } =
        rows[1].sealed.entry().expect("e").record
    else {
        panic!("not a finding")
    };
    assert_eq!((rule.as_str(), incident, tx), ("drain", Some(1), Some(B256::repeat_byte(0xaa))));
}

/// Run sqlite3-like SQL against the database behind `store`'s back.
fn tamper(dir: &std::path::Path, sql: &str) {
    let conn = rusqlite::Connection::open(dir.join("guardian.sqlite")).expect("open");
    conn.execute_batch(sql).expect(sql);
}

fn database_break(dir: &std::path::Path) -> Break {
    let store = Store::open(dir.join("guardian.sqlite")).expect("open");
    let file = crate::audit::jsonl_path(&dir.join("guardian.sqlite"));
    let check = crate::audit::verify_copies(&store, &file).expect("verify");
    assert!(!check.intact());
    check.database.expect_err("the database chain breaks")
}

#[test]
fn an_edited_deleted_inserted_or_swapped_row_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(busy_store(dir.path()));
    tamper(dir.path(), "UPDATE audit_log SET body = replace(body, 'drain', 'drian') WHERE seq = 2");
    assert!(matches!(database_break(dir.path()), Break::Edited { seq: 2, .. }));

    let dir = tempfile::tempdir().expect("tempdir");
    drop(busy_store(dir.path()));
    tamper(dir.path(), "DELETE FROM audit_log WHERE seq = 3");
    assert_eq!(database_break(dir.path()), Break::Deleted { missing: 3, last: 2, next: 4 });

    let dir = tempfile::tempdir().expect("tempdir");
    drop(busy_store(dir.path()));
    tamper(
        dir.path(),
        "UPDATE audit_log SET seq = seq + 100 WHERE seq >= 4;
         UPDATE audit_log SET seq = seq - 99 WHERE seq >= 100;
         INSERT INTO audit_log (seq, at_ms, kind, body, hash)
             SELECT 4, at_ms, kind, body, hash FROM audit_log WHERE seq = 2;",
    );
    assert!(matches!(database_break(dir.path()), Break::Reordered { position: 4, found: 2 }));

    let dir = tempfile::tempdir().expect("tempdir");
    drop(busy_store(dir.path()));
    tamper(
        dir.path(),
        "UPDATE audit_log SET seq = -1 WHERE seq = 2;
         UPDATE audit_log SET seq = 2 WHERE seq = 3;
         UPDATE audit_log SET seq = 3 WHERE seq = -1;",
    );
    assert!(matches!(database_break(dir.path()), Break::Reordered { position: 2, found: 3 }));
}

#[test]
fn a_file_edited_or_truncated_parts_from_the_database_and_is_not_appended_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = busy_store(dir.path());
    let path = crate::audit::jsonl_path(&dir.path().join("guardian.sqlite"));
    let text = std::fs::read_to_string(&path).expect("jsonl");
    // Truncated: the file lags, and the next entry is appended after what is there (a crash
    // between commit and append looks the same, and the database still holds everything).
    let first_three: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, &first_three).expect("truncate");
    let check = crate::audit::verify_copies(&store, &path).expect("verify");
    assert!(matches!(check.file, Some(Ok(_))), "a shorter file is still a chain");
    let divergence = check.divergence.expect("parts").to_string();
    assert!(
        divergence.contains("ends at entry 3") && divergence.contains("entry 5"),
        "{divergence}"
    );
    store.audit(Record::Pruned { stamps: vec![] }).expect("append");
    assert_eq!(std::fs::read_to_string(&path).expect("jsonl").lines().count(), 6, "caught up");

    // Edited: the file's own chain breaks, and nothing more is appended to it.
    let text = std::fs::read_to_string(&path).expect("jsonl");
    let second = text.lines().nth(1).expect("line 2");
    std::fs::write(&path, text.replace(second, &second.replace("drain", "drian"))).expect("edit");
    let check = crate::audit::verify_copies(&store, &path).expect("verify");
    assert!(matches!(check.file, Some(Err(Break::Edited { seq: 2, .. }))), "{check:?}");
    assert!(matches!(
        check.divergence,
        Some(guardian_core::audit::Divergence::Differ { seq: 2, .. })
    ));
    let before = std::fs::read_to_string(&path).expect("jsonl");
    let mut last = before.lines().last().expect("line").to_owned();
    last = last.replace("pruned", "prunes");
    std::fs::write(&path, before.replace(before.lines().last().expect("l"), &last)).expect("edit");
    store.audit(Record::Pruned { stamps: vec!["x".into()] }).expect("append");
    assert_eq!(std::fs::read_to_string(&path).expect("jsonl").lines().count(), 6, "left as found");
}

#[test]
fn a_line_torn_by_a_crash_is_trimmed_and_the_file_caught_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = busy_store(dir.path());
    let path = crate::audit::jsonl_path(&dir.path().join("guardian.sqlite"));
    let mut file = std::fs::OpenOptions::new().append(true).open(&path).expect("open");
    file.write_all(b"{\"hash\":\"0x12").expect("torn");
    drop(file);
    store.audit(Record::Pruned { stamps: vec![] }).expect("append");
    let check = crate::audit::verify_copies(&store, &path).expect("verify");
    assert!(check.intact(), "{check:?}");
    assert_eq!(check.database.expect("chain").entries, 6);
}

/// Two reads in one snapshot agree while another connection (the daemon) commits between
/// them; outside a snapshot the second read sees the commit.
#[test]
fn a_snapshot_reads_one_state_while_another_process_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reader = busy_store(dir.path());
    let mut writer = Store::open(dir.path().join("guardian.sqlite")).expect("second connection");
    let (first, second) = reader
        .snapshot(|store| {
            let first = store.audit_rows()?.len();
            writer.audit(Record::Pruned { stamps: vec![] })?;
            Ok((first, store.audit_rows()?.len()))
        })
        .expect("snapshot");
    assert_eq!((first, second), (5, 5), "the commit stays outside the snapshot");
    assert_eq!(reader.audit_rows().expect("rows").len(), 6, "and is read after it");
}

/// `guardian audit verify` beside a running daemon: another connection appends entry after
/// entry (each committed, then mirrored to the file) while the copies are verified again and
/// again. They never part: not by a file read a step ahead of the table, nor by a file caught
/// between a commit and its append.
#[test]
fn verifying_beside_a_writer_never_sees_the_copies_part() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().expect("tempdir");
    let reader = busy_store(dir.path());
    let db = dir.path().join("guardian.sqlite");
    let file = crate::audit::jsonl_path(&db);
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut writer = Store::open(&db).expect("second connection");
            for _ in 0..300 {
                writer.audit(Record::Pruned { stamps: vec![] }).expect("append");
            }
            done.store(true, Ordering::SeqCst);
        });
        let mut looks = 0;
        while !done.load(Ordering::SeqCst) {
            let check = crate::audit::verify_copies(&reader, &file).expect("verify");
            assert!(check.intact(), "look {looks}: {:?}", check.divergence);
            looks += 1;
        }
        assert!(looks > 0, "verified while the writer wrote");
    });
    let check = crate::audit::verify_copies(&reader, &file).expect("verify");
    assert_eq!(check.database.expect("chain").entries, 305);
}
