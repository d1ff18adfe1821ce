use alloy_primitives::{Address, B256, U256};

use super::*;
use crate::incident::{Event, State};

fn operator() -> Actor {
    Actor::Operator { user: "alice".into(), host: "val-1".into() }
}

/// A chain of `n` entries, sealed, as the store would write them.
fn chain(n: u64) -> Vec<Sealed> {
    let mut prev = B256::ZERO;
    (1..=n)
        .map(|seq| {
            let record = match seq % 3 {
                0 => Record::OperatorCommand {
                    command: "guardian pause vault".into(),
                    reason: format!("drill {seq}"),
                    incident: Some(1),
                },
                1 => Record::Incident {
                    incident: 1,
                    step: seq,
                    kind: crate::incident::AuditKind::Contained,
                    event: Event::PauseVerified { block: 10 + seq },
                    from: State::Responding,
                    to: State::Contained,
                    block: Some(10 + seq),
                },
                _ => Record::Impact {
                    incident: 1,
                    at_risk_wei: U256::from(45u64) * U256::from(10u64).pow(U256::from(17u64)),
                    moved_wei: U256::ZERO,
                    anomaly_block: 9,
                    contained_block: 10,
                },
            };
            let sealed =
                Entry { seq, at_ms: 1_700_000_000_000 + seq, prev, actor: operator(), record }
                    .seal();
            prev = sealed.hash;
            sealed
        })
        .collect()
}

fn positions(entries: &[Sealed]) -> Vec<(u64, &Sealed)> {
    entries.iter().enumerate().map(|(i, s)| (i as u64 + 1, s)).collect()
}

#[test]
fn an_untouched_chain_verifies_and_reports_its_head() {
    let entries = chain(6);
    let verified = verify(positions(&entries)).expect("intact");
    assert_eq!(verified, Verified { entries: 6, head: entries[5].hash });
    assert_eq!(verify([]).expect("empty"), Verified { entries: 0, head: B256::ZERO });
    // The body is compact JSON in declaration order: stable across runs.
    assert!(
        entries[0].body.starts_with(r#"{"seq":1,"at_ms":1700000000001,"prev":"0x0000"#),
        "{}",
        entries[0].body
    );
    assert!(!entries[0].body.contains(' ') || entries[0].body.contains("guardian pause"));
}

#[test]
fn an_edited_entry_is_named() {
    let mut entries = chain(6);
    entries[3].body = entries[3].body.replace("alice", "mallory");
    assert!(matches!(verify(positions(&entries)), Err(Break::Edited { seq: 4, .. })));
    // Edited with its hash recomputed: the next entry no longer follows it.
    entries[3].hash = hash(&entries[3].body);
    let err = verify(positions(&entries)).expect_err("broken link");
    assert!(matches!(err, Break::Inserted { seq: 5, previous: 4, .. }), "{err}");
}

#[test]
fn whitespace_or_an_added_field_counts_as_an_edit() {
    let mut entries = chain(3);
    entries[1].body = entries[1].body.replacen(",", ", ", 1);
    entries[1].hash = hash(&entries[1].body);
    let err = verify(positions(&entries)).expect_err("not canonical");
    assert!(matches!(&err, Break::Edited { seq: 2, why } if why.contains("canonical")), "{err}");

    let mut entries = chain(3);
    entries[1].body = entries[1].body.replacen("{\"seq\"", "{\"note\":\"ok\",\"seq\"", 1);
    entries[1].hash = hash(&entries[1].body);
    assert!(matches!(verify(positions(&entries)), Err(Break::Edited { seq: 2, .. })));
}

#[test]
fn a_deleted_entry_is_named_by_the_gap() {
    let mut entries = chain(6);
    entries.remove(2);
    // The store keeps positions: entry 4 now stands at row 4 after row 2.
    let rows: Vec<(u64, &Sealed)> =
        entries.iter().map(|s| (s.entry().expect("entry").seq, s)).collect();
    let err = verify(rows).expect_err("gap");
    assert_eq!(err, Break::Deleted { missing: 3, last: 2, next: 4 });
    assert_eq!(err.to_string(), "entry 3 was deleted: entry 4 follows entry 2");
}

#[test]
fn swapped_entries_are_named_as_reordered() {
    let mut entries = chain(6);
    entries.swap(2, 3);
    let err = verify(positions(&entries)).expect_err("swapped");
    assert_eq!(err, Break::Reordered { position: 3, found: 4 });
}

#[test]
fn an_inserted_entry_is_named() {
    let mut entries = chain(6);
    // A forged entry that claims position 4 and a made-up predecessor, with the rest shifted.
    let forged = Entry {
        seq: 4,
        at_ms: 1,
        prev: B256::repeat_byte(7),
        actor: operator(),
        record: Record::Pruned { stamps: vec!["20260101T000000Z".into()] },
    }
    .seal();
    entries.insert(3, forged);
    let err = verify(positions(&entries)).expect_err("inserted");
    assert!(matches!(err, Break::Inserted { seq: 4, previous: 3, .. }), "{err}");
}

#[test]
fn lines_round_trip_byte_for_byte_and_copies_are_compared() {
    let entries = chain(4);
    for sealed in &entries {
        assert_eq!(&Sealed::from_line(&sealed.line()).expect("line"), sealed);
    }
    assert!(Sealed::from_line("{\"hash\":\"0x12\"").is_err());
    assert_eq!(diverge(("database", &entries), ("audit.jsonl", &entries)), None);
    let mut file = entries.clone();
    file[2].body = file[2].body.replace("alice", "bob");
    file[2].hash = hash(&file[2].body);
    let d = diverge(("database", &entries), ("audit.jsonl", &file)).expect("differ");
    assert!(matches!(d, Divergence::Differ { seq: 3, .. }), "{d}");
    let d = diverge(("database", &entries), ("audit.jsonl", &entries[..2])).expect("shorter");
    assert_eq!(d.to_string(), "audit.jsonl ends at entry 2; database continues to entry 4");
}

#[test]
fn anchors_catch_a_truncated_tail_and_a_rewritten_entry() {
    let entries = chain(6);
    let hashes: Vec<B256> = entries.iter().map(|s| s.hash).collect();
    let tx = B256::repeat_byte(0xaa);
    let anchors = [Anchor { seq: 3, head: hashes[2], tx }, Anchor { seq: 6, head: hashes[5], tx }];
    assert_eq!(check_anchors(&anchors, &hashes), Ok(2));
    let err = check_anchors(&anchors, &hashes[..4]).expect_err("truncated");
    assert!(matches!(err, AnchorBreak::Truncated { seq: 6, ends_at: 4, .. }), "{err}");
    assert!(err.to_string().contains("its last 2 entries were removed"), "{err}");
    let mut rewritten = hashes.clone();
    rewritten[2] = B256::repeat_byte(1);
    assert!(matches!(
        check_anchors(&anchors, &rewritten),
        Err(AnchorBreak::Mismatch { seq: 3, .. })
    ));
}

#[test]
fn records_name_their_incident() {
    let r = Record::FindingRetracted { finding: 3, incident: Some(2) };
    assert_eq!((r.name(), r.incident()), ("finding_retracted", Some(2)));
    let r = Record::DaemonStarted {
        version: "0.1.0".into(),
        config: "guardian.toml".into(),
        config_sha256: B256::ZERO,
        chain_id: 138,
    };
    assert_eq!((r.name(), r.incident()), ("daemon_started", None));
    let _ = Address::ZERO;
}
