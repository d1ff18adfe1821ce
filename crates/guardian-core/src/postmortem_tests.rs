use alloy_primitives::{Address, B256, U256};

use super::*;
use crate::{
    audit::Actor,
    incident::{Event, State},
    severity::Action,
};

fn entry(seq: u64, at_ms: Millis, record: Record) -> Entry {
    Entry { seq, at_ms, prev: B256::ZERO, actor: Actor::Daemon { host: "val-1".into() }, record }
}

fn step(seq: u64, at_ms: Millis, kind: AuditKind, event: Event, to: State, block: u64) -> Entry {
    entry(
        seq,
        at_ms,
        Record::Incident {
            incident: 1,
            step: seq,
            kind,
            event,
            from: State::Open,
            to,
            block: Some(block),
        },
    )
}

const T0: Millis = 1_796_000_000_000;

/// A Critical drain paused through the module 1 block later, with 2 ether moved first, one
/// failed notification, resolved 5 minutes after detection.
fn drain_log(contained_after: Millis) -> Vec<Entry> {
    let vault = Address::repeat_byte(0x11);
    let drain_tx = B256::repeat_byte(0x22);
    vec![
        entry(
            1,
            T0,
            Record::FindingRecorded {
                finding: 1,
                incident: Some(1),
                rule: "vault-drain".into(),
                contract: "vault".into(),
                address: vault,
                severity: Severity::Critical,
                block: 100,
                block_hash: B256::repeat_byte(0x33),
                tx: Some(drain_tx),
                predicted_from: None,
                summary: "vault emitted Withdrawn(amount=2 ether)".into(),
            },
        ),
        step(
            2,
            T0,
            AuditKind::Opened,
            Event::FindingRecorded {
                finding: 1,
                rule: "vault-drain".into(),
                severity: Severity::Critical,
                action: Action::Alert,
            },
            State::Open,
            100,
        ),
        step(
            3,
            T0 + 40,
            AuditKind::ModulePauseSent,
            Event::ModulePauseSent { tx: B256::repeat_byte(0x44) },
            State::Responding,
            100,
        ),
        step(
            4,
            T0 + contained_after,
            AuditKind::Contained,
            Event::PauseVerified { block: 101 },
            State::Contained,
            101,
        ),
        entry(
            5,
            T0 + contained_after,
            Record::Impact {
                incident: 1,
                at_risk_wei: U256::from(10u128 * 10u128.pow(18)),
                moved_wei: U256::from(2u128 * 10u128.pow(18)),
                anomaly_block: 100,
                contained_block: 101,
            },
        ),
        entry(
            6,
            T0 + 50,
            Record::NotificationFailed {
                incident: 1,
                key: "k/opened".into(),
                channel: "webhook".into(),
                error: "connection refused".into(),
            },
        ),
        step(
            7,
            T0 + 300_000,
            AuditKind::Resolved,
            Event::OperatorResolve { actor: "alice".into(), note: "fixed".into() },
            State::Resolved,
            400,
        ),
    ]
}

#[test]
fn a_drain_post_mortem_states_the_measured_facts_in_every_section() {
    let pm = PostMortem::build(&drain_log(900), 1, &ResponsePolicy::default()).expect("built");
    assert_eq!(pm.severity, Some(Severity::Critical));
    assert_eq!(pm.duration_ms, 300_000);
    assert!(pm.resolved);
    assert_eq!(pm.impact.moved_wei, Some(U256::from(2u128 * 10u128.pow(18))));
    assert_eq!(pm.impact.blocks_to_containment, Some(1));
    assert_eq!(pm.impact.ms_to_containment, Some(900));
    let kinds: Vec<&str> = pm.timeline.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["opened", "module_pause_sent", "contained", "resolved"]);
    assert_eq!(pm.timeline[2].after_ms, 900);
    assert!(pm.timeline[0].at.ends_with(".000 UTC"), "{}", pm.timeline[0].at);
    assert!(pm.timeline[1].at.ends_with(".040 UTC"), "{}", pm.timeline[1].at);
    assert_eq!(pm.root_cause.rules, ["vault-drain"]);
    assert_eq!(pm.root_cause.transactions, [B256::repeat_byte(0x22)]);
    assert!(pm.summary.contains("paused at once through the pause module"), "{}", pm.summary);
    assert!(pm.summary.contains("2 ETH"), "{}", pm.summary);
    assert!(
        pm.went_well.iter().any(|w| w.contains("Contained 1 block(s), 900 ms")),
        "{:?}",
        pm.went_well
    );
    assert!(
        pm.went_wrong.iter().any(|w| w.contains("1 notification(s) failed")),
        "{:?}",
        pm.went_wrong
    );
    assert!(pm.action_items.iter().any(|a| a.action.contains("notification(s) failed")));
    let md = pm.markdown();
    let headings: Vec<&str> = md.lines().filter_map(|l| l.strip_prefix("## ")).collect();
    assert_eq!(headings, PostMortem::SECTIONS);
    for fact in [
        "**Date:** 2026-",
        "**Duration:** 5 min 00 s",
        "**Severity:** critical",
        "Moved before containment: 2 ETH",
    ] {
        assert!(md.contains(fact), "{fact} in\n{md}");
    }
    let html = pm.html();
    for section in PostMortem::SECTIONS {
        assert!(html.contains(&format!("<h2>{section}</h2>")), "{section}");
    }
    assert!(!html.contains("<script"), "escaped");
}

#[test]
fn a_slow_critical_containment_goes_to_what_went_wrong() {
    let mut log = drain_log(30_000);
    if let Record::Impact { contained_block, .. } = &mut log[4].record {
        *contained_block = 115;
    }
    let pm = PostMortem::build(&log, 1, &ResponsePolicy::default()).expect("built");
    assert!(
        pm.went_wrong.iter().any(|w| w.contains("Contained 15 block(s), 30.0 s")),
        "{:?}",
        pm.went_wrong
    );
}

#[test]
fn an_unknown_incident_is_an_error() {
    assert_eq!(
        PostMortem::build(&drain_log(900), 7, &ResponsePolicy::default()),
        Err(PostMortemError::UnknownIncident(7))
    );
}

#[test]
fn durations_read_like_a_person_wrote_them() {
    for (ms, text) in
        [(850, "850 ms"), (3_200, "3.2 s"), (125_000, "2 min 05 s"), (3_720_000, "1 h 02 min")]
    {
        assert_eq!(duration(ms), text);
    }
}
