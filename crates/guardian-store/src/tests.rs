use alloy_primitives::{B256, U256, address};
use guardian_core::{
    finding::{Anomaly, Evidence, Finding},
    incident::{AuditKind, Effect, Event, State},
    severity::{Action, Severity},
};

use super::*;

fn block(n: u64, fork: u8) -> BlockRef {
    BlockRef {
        number: n,
        hash: B256::with_last_byte(n as u8 ^ fork.wrapping_mul(0x80)),
        parent_hash: B256::with_last_byte((n as u8).wrapping_sub(1) ^ fork.wrapping_mul(0x80)),
    }
}

const VAULT: Address = address!("0x0165878A594ca255338adfa4d48449f69242Eb8F");

fn finding(rule: &str, at: BlockRef, log_index: u64) -> Finding {
    Finding {
        rule: rule.into(),
        contract: "vault".into(),
        address: VAULT,
        severity: Severity::Critical,
        action: Action::ProposePause { then_rollback: true },
        summary: "drain".into(),
        evidence: Evidence {
            block_number: at.number,
            block_hash: at.hash,
            tx_hash: Some(B256::repeat_byte(0xaa)),
            log_index: Some(log_index),
            values: [("amount".to_owned(), "1".to_owned())].into(),
            threshold: "> 0".into(),
            predicted_from: None,
        },
        anomaly: Anomaly::Log { tx: B256::repeat_byte(0xaa), ordinal: log_index as u32 },
        magnitude: None,
    }
}

/// A condition finding (a window) at `at` with `total` as its magnitude.
fn window(at: BlockRef, total: u64) -> Finding {
    Finding {
        summary: format!("sum {total}"),
        anomaly: Anomaly::Block,
        magnitude: Some(U256::from(total)),
        ..finding("window", at, 0)
    }
}

fn store() -> Store {
    let mut store = Store::in_memory().expect("store");
    store.bind_chain(138).expect("chain");
    store
}

fn kinds(store: &Store, incident: i64) -> Vec<AuditKind> {
    store.incident_events(incident).expect("events").into_iter().map(|e| e.kind).collect()
}

fn pending(store: &Store, kind: EffectKind) -> Vec<OutboxEffect> {
    store.due_effects(kind, i64::MAX as u64, 100).expect("due")
}

#[test]
fn cursor_moves_with_the_blocks_findings() {
    let mut store = store();
    assert_eq!(store.cursor().expect("cursor"), None);
    let b1 = block(1, 0);
    let rec = store.commit_blocks(&[(b1, vec![finding("r", b1, 0)])]).expect("commit").recorded;
    assert!(matches!(rec[..], [Recorded::New(_)]));
    assert_eq!(store.cursor().expect("cursor"), Some(b1));
    assert_eq!(store.block_hash(1).expect("hash"), Some(b1.hash));
    let stored = store.findings(None).expect("findings");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].finding, finding("r", b1, 0));
    assert_eq!(stored[0].status, FindingStatus::Open);
}

#[test]
fn one_open_finding_per_rule_and_contract_each_occurrence_once() {
    let mut store = store();
    let (b1, b2) = (block(1, 0), block(2, 0));
    store.commit_blocks(&[(b1, vec![finding("r", b1, 0)])]).expect("commit");
    let rec = store
        .commit_blocks(&[(b2, vec![finding("r", b2, 3), finding("other", b2, 3)])])
        .expect("commit")
        .recorded;
    assert!(matches!(rec[..], [Recorded::Occurrence(_), Recorded::New(_)]));
    // Replaying block 2 (restart before/after a crash) records nothing new.
    let replay = store.commit_blocks(&[(b2, vec![finding("r", b2, 3)])]).expect("replay");
    assert!(matches!(replay.recorded[..], [Recorded::Duplicate(_)]));
    assert!(replay.transitions.is_empty(), "a replay writes no incident event");
    assert_eq!(store.findings(Some(FindingStatus::Open)).expect("open").len(), 2);
    assert_eq!(store.occurrence_count().expect("count"), 3);
    let listed = store.occurrences().expect("occurrences");
    assert_eq!(
        listed.iter().map(|o| (o.rule.as_str(), o.block_number, o.log_index)).collect::<Vec<_>>(),
        [("r", 1, Some(0)), ("r", 2, Some(3)), ("other", 2, Some(3))]
    );
}

/// Two rules fire on one contract: one incident holds both findings, one proposal is asked
/// for, one notification says it opened; the next polls write nothing.
#[test]
fn findings_on_one_contract_share_one_incident() {
    let mut store = store();
    let (b1, b2) = (block(1, 0), block(2, 0));
    let first = store.commit_blocks(&[(b1, vec![finding("drain", b1, 0)])]).expect("commit");
    assert_eq!(first.transitions.len(), 1);
    let incident = first.transitions[0].incident_id;
    assert!(first.transitions[0].opened);
    let second = store
        .commit_blocks(&[(b2, vec![finding("window", b2, 1), finding("drain", b2, 2)])])
        .expect("commit");
    assert_eq!(second.transitions.len(), 1, "only the new finding is news");
    assert_eq!(second.transitions[0].incident_id, incident);
    let findings = store.incident_findings(incident).expect("findings");
    assert_eq!(findings.len(), 2);
    assert!(findings.iter().all(|f| f.incident_id == Some(incident)));
    assert_eq!(kinds(&store, incident), [AuditKind::Opened, AuditKind::FindingAttached]);
    assert_eq!(pending(&store, EffectKind::Propose).len(), 1);
    let notes = pending(&store, EffectKind::Notify);
    assert_eq!(notes.len(), 1);
    assert!(notes[0].key.ends_with("/opened"), "{}", notes[0].key);
    assert!(store.next_timer().expect("timer").is_some(), "the deadline is scheduled");
}

#[test]
fn notifications_of_an_incident_are_due_one_at_a_time_in_order() {
    let mut store = store();
    let b1 = block(1, 0);
    let id = store.commit_blocks(&[(b1, vec![finding("drain", b1, 0)])]).expect("c").transitions[0]
        .incident_id;
    let proposal = B256::repeat_byte(7);
    let p = test_proposal(proposal);
    store.record_proposal(id, &p, 2, "replica", "proposed").expect("proposal");
    let due = pending(&store, EffectKind::Notify);
    assert_eq!(due.len(), 1, "the second waits for the first");
    assert!(due[0].key.ends_with("/opened"));
    store.effect_failed(due[0].id, "503", 0).expect("failed");
    let again = pending(&store, EffectKind::Notify);
    assert_eq!(again[0].id, due[0].id, "a failed notification holds back the later ones");
    assert_eq!(store.notification_backlog().expect("backlog").failing, 1);
    store.effect_done(due[0].id, "delivered").expect("done");
    let next = pending(&store, EffectKind::Notify);
    assert!(next[0].key.contains("/proposed:"), "{}", next[0].key);
    assert_eq!(store.notification_backlog().expect("backlog").pending, 1);
}

fn test_proposal(hash: B256) -> Proposal {
    Proposal {
        safe_tx_hash: hash,
        chain_id: 138,
        safe: address!("0x56c43ebF8e1cF3A29AAa220757750346c0A271f8"),
        kind: guardian_core::proposal::ProposalKind::Pause,
        contract: "vault".into(),
        target: VAULT,
        calldata: alloy_primitives::bytes!("8456cb59"),
        nonce: U256::from(3),
        finding_id: Some(1),
        then_rollback: true,
        reason: "drain".into(),
        status: ProposalStatus::Pending,
        simulation: "ok".into(),
        created_block: 1,
        replaces: None,
        replaced_by: None,
        executed_tx: None,
        executed_by: None,
        created_at: String::new(),
        incident_id: None,
        withdrawn_reason: None,
    }
}

#[test]
fn a_reorg_that_orphans_the_anomaly_withdraws_its_proposal() {
    let mut store = store();
    let (b1, b2) = (block(1, 0), block(2, 0));
    store.commit_blocks(&[(b1, vec![])]).expect("commit");
    let id = store.commit_blocks(&[(b2, vec![finding("drain", b2, 0)])]).expect("c").transitions[0]
        .incident_id;
    let hash = B256::repeat_byte(9);
    store.record_proposal(id, &test_proposal(hash), 2, "replica", "p").expect("proposal");
    let reorg = store.reorg(b1, &[]).expect("reorg");
    assert_eq!(reorg.retracted.len(), 1);
    let incident = store.incident(id).expect("read").expect("exists");
    assert_eq!(incident.incident.state, State::Withdrawn);
    let p = store.proposal(hash).expect("read").expect("exists");
    assert_eq!(p.status, ProposalStatus::Withdrawn);
    assert!(p.withdrawn_reason.as_deref().is_some_and(|r| r.contains("retracted")), "{p:?}");
    assert_eq!(store.cursor().expect("cursor").map(|c| c.number), Some(1));
}

/// The new branch mines the same transaction again (another block, another log index): the
/// finding keeps its id and its single occurrence, and no incident hears of the reorg.
#[test]
fn a_reorg_that_mines_the_anomaly_again_changes_nothing_for_the_incident() {
    let mut store = store();
    let (b1, b2) = (block(1, 0), block(2, 0));
    store.commit_blocks(&[(b1, vec![])]).expect("commit");
    let first = store.commit_blocks(&[(b2, vec![finding("drain", b2, 0)])]).expect("commit");
    let (finding_id, incident) = (first.recorded[0].finding_id(), first.transitions[0].incident_id);
    let events_before = kinds(&store, incident);
    let b2b = block(2, 1);
    let b3b = BlockRef { number: 3, hash: B256::repeat_byte(0x33), parent_hash: b2b.hash };
    let mut moved = finding("drain", b3b, 5);
    moved.anomaly = Anomaly::Log { tx: B256::repeat_byte(0xaa), ordinal: 0 };
    let reorg = store.reorg(b1, &[(b2b, vec![]), (b3b, vec![moved])]).expect("reorg");
    assert!(reorg.retracted.is_empty());
    assert!(matches!(reorg.recorded[..], [Recorded::Occurrence(id)] if id == finding_id));
    assert!(reorg.transitions.is_empty());
    assert_eq!(kinds(&store, incident), events_before);
    let occurrences = store.occurrences().expect("occurrences");
    assert_eq!(occurrences.len(), 1);
    assert_eq!((occurrences[0].block_number, occurrences[0].log_index), (3, Some(5)));
    assert_eq!(store.findings(None).expect("all").len(), 1);
}

#[test]
fn a_finding_re_included_after_its_retraction_reopens_its_incident() {
    let mut store = store();
    let (b1, b2) = (block(1, 0), block(2, 0));
    store.commit_blocks(&[(b1, vec![])]).expect("commit");
    let first = store.commit_blocks(&[(b2, vec![finding("drain", b2, 0)])]).expect("commit");
    let (finding_id, incident) = (first.recorded[0].finding_id(), first.transitions[0].incident_id);
    store.rewind(b1).expect("rewind");
    assert_eq!(store.incident(incident).expect("r").expect("e").incident.state, State::Withdrawn);
    let b2b = block(2, 1);
    let mut mined_again = finding("drain", b2b, 4);
    mined_again.anomaly = Anomaly::Log { tx: B256::repeat_byte(0xaa), ordinal: 0 };
    let again = store.commit_blocks(&[(b2b, vec![mined_again])]).expect("commit");
    assert!(matches!(again.recorded[..], [Recorded::Reinstated(id)] if id == finding_id));
    assert_eq!(again.transitions[0].incident_id, incident);
    assert_eq!(store.incident(incident).expect("r").expect("e").incident.state, State::Open);
    let notes: Vec<String> =
        store.incident_effects(incident).expect("effects").into_iter().map(|e| e.key).collect();
    assert_eq!(notes.iter().filter(|k| k.ends_with("/opened")).count(), 1, "{notes:?}");
}

#[test]
fn a_window_keeps_its_peak_and_latest_and_one_episode_after_resolution() {
    let mut store = store();
    let blocks: Vec<BlockRef> = (1..=6).map(|n| block(n, 0)).collect();
    for (b, total) in blocks[..3].iter().zip([12, 30, 18]) {
        store.commit_blocks(&[(*b, vec![window(*b, total)])]).expect("commit");
    }
    let f = &store.findings(None).expect("all")[0];
    assert_eq!(f.occurrences, 3);
    assert_eq!(f.peak.as_ref().map(|p| (p.block, p.summary.as_str())), Some((2, "sum 30")));
    assert_eq!(f.latest.as_ref().map(|p| (p.block, p.summary.as_str())), Some((3, "sum 18")));
    assert_eq!(f.summary(), "peak (block 2): sum 30; latest (block 3): sum 18");
    // The incident is resolved while the window still holds: block 4 continues the episode.
    let incident = f.incident_id.expect("linked");
    let verified = Event::PauseVerified { block: 3 };
    store.apply(incident, &Event::AlreadyPaused { block: 3 }).expect("contained");
    let _ = verified;
    store
        .conn
        .execute("UPDATE incidents SET body = json_set(body, '$.rollback', json('{\"status\":\"not_owed\"}'))", [])
        .expect("no rollback owed for this test");
    store
        .apply(incident, &Event::OperatorResolve { actor: "op".into(), note: "ok".into() })
        .expect("resolved");
    let next = store.commit_blocks(&[(blocks[3], vec![window(blocks[3], 15)])]).expect("commit");
    assert!(matches!(next.recorded[..], [Recorded::Occurrence(_)]));
    assert!(next.transitions.is_empty(), "no new incident for the same episode");
    // A gap (block 5 quiet), then the window fires again: a new episode, a new incident.
    store.commit_blocks(&[(blocks[4], vec![])]).expect("commit");
    let later = store.commit_blocks(&[(blocks[5], vec![window(blocks[5], 40)])]).expect("c");
    assert!(matches!(later.recorded[..], [Recorded::New(_)]));
    assert!(later.transitions[0].opened);
    assert_ne!(later.transitions[0].incident_id, incident);
}

#[test]
fn an_operators_pause_opens_an_incident_and_findings_join_it() {
    let mut store = store();
    let applied = store.request_pause("vault", VAULT, "alice (CLI)", "odd", true).expect("ok");
    assert!(applied.opened);
    assert!(applied.effects.contains(&Effect::ProposePause));
    let b1 = block(1, 0);
    let c = store.commit_blocks(&[(b1, vec![finding("drain", b1, 0)])]).expect("commit");
    assert_eq!(c.transitions[0].incident_id, applied.incident_id);
    assert_eq!(pending(&store, EffectKind::Propose).len(), 1, "still one proposal asked for");
    let again = store.request_pause("vault", VAULT, "bob", "odd", true).expect("ok");
    assert!(!again.changed(), "asking twice changes nothing");
}

#[test]
fn timers_fire_once_and_reschedule() {
    let mut store = store();
    let b1 = block(1, 0);
    let mut high = finding("drain", b1, 0);
    high.severity = Severity::High;
    let id = store.commit(None, &[(b1, vec![high])], 1_000).expect("c").transitions[0].incident_id;
    let deadline = 1_000 + store.policy().high;
    assert!(store.due_timers(deadline - 1).expect("due").is_empty());
    let due = store.due_timers(deadline).expect("due");
    assert_eq!(due, [(id, guardian_core::incident::Timer::Escalation, deadline)]);
    let fired = store.fire_timer(id, due[0].1, due[0].2, deadline).expect("fired");
    assert_eq!(fired.audit, Some(AuditKind::Escalated));
    let again = store.fire_timer(id, due[0].1, due[0].2, deadline).expect("fired");
    assert!(!again.changed(), "a timer fires once");
    assert_eq!(store.next_timer().expect("next"), Some(deadline + store.policy().escalate_every));
}

/// The schema before incidents: findings with a per-finding outbox.
const V1_SCHEMA: &str = r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cursor (id INTEGER PRIMARY KEY CHECK (id = 1), number INTEGER NOT NULL, hash TEXT NOT NULL);
CREATE TABLE recent_blocks (number INTEGER PRIMARY KEY, hash TEXT NOT NULL, parent_hash TEXT NOT NULL);
CREATE TABLE findings (
    id INTEGER PRIMARY KEY, rule TEXT NOT NULL, contract TEXT NOT NULL, address TEXT NOT NULL,
    severity TEXT NOT NULL, action TEXT NOT NULL, action_json TEXT NOT NULL, summary TEXT NOT NULL,
    block_number INTEGER NOT NULL, block_hash TEXT NOT NULL, evidence TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'resolved', 'retracted')),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
CREATE UNIQUE INDEX findings_one_open ON findings (rule, address) WHERE status = 'open';
CREATE TABLE occurrences (
    id INTEGER PRIMARY KEY, finding_id INTEGER NOT NULL REFERENCES findings (id), rule TEXT NOT NULL,
    address TEXT NOT NULL, block_number INTEGER NOT NULL, block_hash TEXT NOT NULL,
    tx_hash TEXT NOT NULL DEFAULT '', log_index INTEGER NOT NULL DEFAULT -1, evidence TEXT NOT NULL,
    retracted INTEGER NOT NULL DEFAULT 0, UNIQUE (rule, address, block_hash, tx_hash, log_index));
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY, finding_id INTEGER NOT NULL REFERENCES findings (id), kind TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_try_at INTEGER NOT NULL DEFAULT 0, last_error TEXT,
    done INTEGER NOT NULL DEFAULT 0);
CREATE TABLE proposals (
    safe_tx_hash TEXT PRIMARY KEY, chain_id INTEGER NOT NULL, safe TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('pause', 'unpause')), contract TEXT NOT NULL,
    target TEXT NOT NULL, calldata TEXT NOT NULL, nonce TEXT NOT NULL, finding_id INTEGER,
    then_rollback INTEGER NOT NULL DEFAULT 0, reason TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'executed', 'stale', 'skipped')),
    simulation TEXT NOT NULL, created_block INTEGER NOT NULL, replaces TEXT, replaced_by TEXT,
    executed_tx TEXT, executed_by TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
CREATE UNIQUE INDEX proposals_one_pending ON proposals (safe, target, kind) WHERE status = 'pending';
CREATE TABLE proposal_signatures (
    safe_tx_hash TEXT NOT NULL REFERENCES proposals (safe_tx_hash), owner TEXT NOT NULL,
    signature TEXT NOT NULL, received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (safe_tx_hash, owner));
CREATE TABLE proposal_events (
    id INTEGER PRIMARY KEY, safe_tx_hash TEXT NOT NULL, event TEXT NOT NULL, actor TEXT,
    detail TEXT NOT NULL, at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
INSERT INTO meta VALUES ('schema_version', '1'), ('chain_id', '138');
INSERT INTO findings (rule, contract, address, severity, action, action_json, summary, block_number,
    block_hash, evidence, status)
VALUES ('drain', 'vault', '0x0165878A594ca255338adfa4d48449f69242Eb8F', 'critical', 'propose_pause',
    '{"propose_pause":{"then_rollback":false}}', 'drain', 5,
    '0x0000000000000000000000000000000000000000000000000000000000000005',
    '{"block_number":5,"block_hash":"0x0000000000000000000000000000000000000000000000000000000000000005","tx_hash":null,"log_index":null,"values":{},"threshold":"> 0"}',
    'open');
INSERT INTO outbox (finding_id, kind, done) VALUES (1, 'finding', 1);
INSERT INTO proposals (safe_tx_hash, chain_id, safe, kind, contract, target, calldata, nonce,
    finding_id, reason, status, simulation, created_block)
VALUES ('0x0707070707070707070707070707070707070707070707070707070707070707', 138,
    '0x56c43ebF8e1cF3A29AAa220757750346c0A271f8', 'pause', 'vault',
    '0x0165878A594ca255338adfa4d48449f69242Eb8F', '0x8456cb59', '0', 1, 'drain', 'pending', 'ok', 5);
INSERT INTO proposal_signatures (safe_tx_hash, owner, signature)
VALUES ('0x0707070707070707070707070707070707070707070707070707070707070707', '0x0000000000000000000000000000000000000001', '0x');
"#;

#[test]
fn a_database_from_before_incidents_is_migrated_without_losing_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("guardian.sqlite");
    rusqlite::Connection::open(&path).expect("open").execute_batch(V1_SCHEMA).expect("v1");
    let mut store = Store::open(&path).expect("migrates");
    store.bind_chain(138).expect("same chain");
    let incidents = store.incidents(true).expect("incidents");
    assert_eq!(incidents.len(), 1, "the open finding has an incident");
    let id = incidents[0].id;
    assert_eq!(store.incident_findings(id).expect("findings").len(), 1);
    // Already announced before the migration: not announced again.
    assert!(pending(&store, EffectKind::Notify).is_empty());
    let p = store.proposal(B256::repeat_byte(7)).expect("read").expect("kept");
    assert_eq!(p.status, ProposalStatus::Pending);
    assert_eq!(store.proposal_signatures(p.safe_tx_hash).expect("sigs").len(), 1);
    // A withdrawn status now fits the rebuilt table.
    store
        .conn
        .execute("UPDATE proposals SET status = 'withdrawn'", [])
        .expect("the new CHECK allows withdrawn");
    drop(store);
    Store::open(&path).expect("reopens at version 2");
}

/// The daemon's components, the CLI and a second daemon may all open a fresh database at
/// the same moment: none of them may fail because another wrote the metadata first.
#[test]
fn a_fresh_database_opened_by_many_at_once_opens_for_all() {
    for round in 0..20 {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("guardian.sqlite");
        let start = std::sync::Barrier::new(8);
        std::thread::scope(|scope| {
            let openers: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        start.wait();
                        Store::open(&path)?.bind_chain(138)
                    })
                })
                .collect();
            for opener in openers {
                if let Err(e) = opener.join().expect("opener thread") {
                    panic!("round {round}: {e:#}");
                }
            }
        });
        let err = Store::open(&path).expect("reopen").bind_chain(1).expect_err("other chain");
        assert!(err.to_string().contains("chain 138"), "{err}");
    }
}

#[test]
fn database_is_bound_to_one_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("g.sqlite");
    Store::open(&path).expect("open").bind_chain(138).expect("bind");
    let mut reopened = Store::open(&path).expect("reopen");
    reopened.bind_chain(138).expect("same chain");
    let err = reopened.bind_chain(1).expect_err("other chain");
    assert!(err.to_string().contains("chain 138"), "{err}");
}

#[test]
fn proposals_roundtrip_keyed_by_hash_with_their_trail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(dir.path().join("g.sqlite")).expect("open");
    let p = Proposal { incident_id: None, ..test_proposal(B256::repeat_byte(1)) };
    assert!(store.insert_proposal(&p, "replica", "proposed").expect("insert"));
    assert!(!store.insert_proposal(&p, "replica", "again").expect("insert"), "idempotent");
    let mut got = store.proposal(p.safe_tx_hash).expect("get").expect("exists");
    got.created_at.clear();
    assert_eq!(got, p);
    let owner = address!("0x0000000000000000000000000000000000000001");
    assert!(store.add_signature(p.safe_tx_hash, owner, &[1; 65]).expect("sig"));
    assert!(!store.add_signature(p.safe_tx_hash, owner, &[1; 65]).expect("sig"));
    assert_eq!(store.proposal_signatures(p.safe_tx_hash).expect("sigs").len(), 1);
    let events: Vec<String> = store
        .proposal_events(p.safe_tx_hash)
        .expect("events")
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(events, ["proposed", "approval"]);
}

/// `finding` as predicted from its pending transaction before any block holds it.
fn predicted(rule: &str, head: u64, log_index: u64) -> Finding {
    let mut f = finding(
        rule,
        BlockRef { number: head + 1, hash: B256::ZERO, parent_hash: B256::ZERO },
        log_index,
    );
    f.action = Action::PauseNow { then_rollback: true };
    f.evidence.predicted_from = f.evidence.tx_hash;
    f
}

#[test]
fn a_prediction_opens_an_incident_that_asks_for_the_immediate_pause_without_moving_the_cursor() {
    let mut store = store();
    let b1 = block(1, 0);
    store.commit_blocks(&[(b1, vec![])]).expect("b1");
    let committed = store.commit_predicted(&[predicted("drain", 1, 0)]).expect("predict");
    assert!(matches!(committed.recorded[..], [Recorded::New(_)]));
    assert_eq!(store.cursor().expect("cursor"), Some(b1));
    let incident = committed.transitions[0].incident_id;
    assert_eq!(pending(&store, EffectKind::PauseNow).len(), 1);
    // The same pending transaction seen again (a resubscription) is the same occurrence.
    let again = store.commit_predicted(&[predicted("drain", 1, 0)]).expect("again");
    assert!(matches!(again.recorded[..], [Recorded::Duplicate(_)]));
    assert!(again.transitions.is_empty());
    assert_eq!(
        kinds(&store, incident)
            .iter()
            .filter(|k| matches!(k, AuditKind::Opened | AuditKind::FindingAttached))
            .count(),
        1
    );
    // A mined block is refused here: predictions only.
    assert!(store.commit_predicted(&[finding("drain", b1, 0)]).is_err());
}

#[test]
fn a_mined_prediction_is_confirmed_in_place_and_a_reorg_does_not_retract_it() {
    let mut store = store();
    let b1 = block(1, 0);
    store.commit_blocks(&[(b1, vec![])]).expect("b1");
    let id = store.commit_predicted(&[predicted("drain", 1, 0)]).expect("predict").recorded[0]
        .finding_id();
    // A reorg above block 1 before the transaction is mined leaves the prediction standing.
    let retracted = store.reorg(b1, &[(block(2, 1), vec![])]).expect("reorg").retracted;
    assert!(retracted.is_empty());
    assert_eq!(store.finding(id).expect("finding").expect("some").status, FindingStatus::Open);
    // The pause lost the race: the transaction is mined and the rule fires on it.
    let b3 = block(3, 1);
    let mined = store.commit_blocks(&[(b3, vec![finding("drain", b3, 0)])]).expect("mined");
    assert!(matches!(mined.recorded[..], [Recorded::Occurrence(f)] if f == id));
    assert!(mined.transitions.is_empty());
    let occurrences = store.occurrences().expect("occurrences");
    assert_eq!(occurrences.len(), 1, "{occurrences:?}");
    assert_eq!(occurrences[0].block_hash, b3.hash);
    let evidence: String = store
        .conn
        .query_row("SELECT evidence FROM occurrences", [], |r| r.get(0))
        .expect("evidence");
    let evidence: Evidence = serde_json::from_str(&evidence).expect("json");
    assert_eq!(evidence.predicted_from, Some(B256::repeat_byte(0xaa)), "the prediction is kept");
}

mod audit;
mod observe;

fn replicated(name: &str, peers: &[&str]) -> Store {
    let mut store = store();
    store.set_replication(Replication {
        name: name.into(),
        peers: peers.iter().map(|p| (*p).to_owned()).collect(),
    });
    store
}

#[test]
fn every_stored_proposal_and_accepted_signature_is_owed_to_each_peer_in_order() {
    let mut store = replicated("a", &["b", "c"]);
    let b1 = block(1, 0);
    let id = store.commit_blocks(&[(b1, vec![finding("drain", b1, 0)])]).expect("c").transitions[0]
        .incident_id;
    let hash = B256::repeat_byte(7);
    store.record_proposal(id, &test_proposal(hash), 2, "replica a", "proposed").expect("proposal");
    let owner = address!("0x00000000000000000000000000000000000000aa");
    assert!(store.add_signature(hash, owner, &[1u8; 65]).expect("signature"));
    assert!(!store.add_signature(hash, owner, &[1u8; 65]).expect("again"), "a repeat is no news");
    for peer in ["b", "c"] {
        let due = store.due_relays(peer, now_ms(), 10).expect("due");
        let items: Vec<RelayItem> = due.iter().map(|r| r.item).collect();
        assert_eq!(items, [RelayItem::Proposal, RelayItem::Signature { owner }], "{peer}");
        assert!(due.iter().all(|r| r.hash == hash));
    }
    let backlog = store.relay_backlog().expect("backlog");
    assert_eq!(
        backlog.iter().map(|b| (b.peer.as_str(), b.pending)).collect::<Vec<_>>(),
        [("b", 2), ("c", 2)]
    );

    // Delivered, failed, and asked for again (the peer lost the proposal).
    let due = store.due_relays("b", now_ms(), 10).expect("due");
    store.relay_done(due[0].id, "taken").expect("done");
    store.relay_failed(due[1].id, "connection refused", now_ms() + 60_000).expect("failed");
    assert!(store.due_relays("b", now_ms(), 10).expect("due").is_empty(), "waits for its retry");
    assert!(store.next_relay_at("b").expect("next").is_some_and(|at| at > now_ms()));
    store.relay_again("b", RelayItem::Proposal, hash).expect("again");
    let due = store.due_relays("b", now_ms(), 10).expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].item, RelayItem::Proposal, "the proposal is owed again, first");
}

#[test]
fn relays_owed_to_a_removed_peer_are_closed_and_the_others_kept() {
    let mut store = replicated("a", &["b", "c"]);
    let hash = B256::repeat_byte(6);
    store.insert_proposal(&test_proposal(hash), "operator", "unpause").expect("insert");
    let owner = address!("0x00000000000000000000000000000000000000aa");
    assert!(store.add_signature(hash, owner, &[1u8; 65]).expect("signature"));
    let done = store.due_relays("b", now_ms(), 10).expect("due")[0].id;
    store.relay_done(done, "taken").expect("done");

    // "c" left [[replicas]]: its two relays close, "b" keeps the one it is still owed.
    let closed = store.close_relays_to_removed_peers(&["b".to_owned()]).expect("close");
    assert_eq!(closed, [("c".to_owned(), 2)]);
    assert!(store.due_relays("c", now_ms(), 10).expect("due").is_empty());
    let backlog = store.relay_backlog().expect("backlog");
    assert_eq!(
        backlog.iter().map(|b| (b.peer.as_str(), b.pending)).collect::<Vec<_>>(),
        [("b", 1)]
    );
    assert!(store.close_relays_to_removed_peers(&["b".to_owned()]).expect("again").is_empty());
    // Every peer removed: nothing is owed any more.
    assert_eq!(store.close_relays_to_removed_peers(&[]).expect("all"), [("b".to_owned(), 1)]);
    assert!(store.relay_backlog().expect("backlog").is_empty());
}

#[test]
fn a_replica_alone_owes_nothing_and_stale_or_skipped_proposals_are_not_relayed() {
    let mut alone = store();
    let hash = B256::repeat_byte(8);
    alone.insert_proposal(&test_proposal(hash), "operator", "unpause").expect("insert");
    assert!(alone.relay_backlog().expect("backlog").is_empty());

    let mut store = replicated("a", &["b"]);
    let mut skipped = test_proposal(B256::repeat_byte(9));
    skipped.status = ProposalStatus::Skipped;
    store.insert_proposal(&skipped, "operator", "already paused").expect("insert");
    assert!(store.relay_backlog().expect("backlog").is_empty(), "only pending proposals travel");
}

#[test]
fn a_hosts_rollback_notices_name_the_replica_and_chain_facts_do_not() {
    let mut store = replicated("validator-2", &["validator-1"]);
    let b1 = block(1, 0);
    let id = store.commit_blocks(&[(b1, vec![finding("drain", b1, 0)])]).expect("c").transitions[0]
        .incident_id;
    let opened = pending(&store, EffectKind::Notify);
    assert!(opened[0].key.ends_with("/opened"), "a chain fact: the same key on every replica");
    let key = store.incident(id).expect("read").expect("incident").incident.key;
    store.apply(id, &Event::AlreadyPaused { block: 2 }).expect("contained");
    store
        .apply(id, &Event::RollbackFinished { undo: None, summary: "ok".into() })
        .expect("rolled back");
    let keys: Vec<String> = store
        .incident_effects(id)
        .expect("effects")
        .into_iter()
        .filter(|e| matches!(e.effect, Effect::Notify(_)))
        .map(|e| e.key)
        .collect();
    assert!(keys.contains(&format!("{key}/rollback-done@validator-2")), "{keys:?}");
    assert!(keys.contains(&format!("{key}/contained")), "{keys:?}");
}
