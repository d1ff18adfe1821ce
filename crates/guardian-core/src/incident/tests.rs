//! The incident machine, table-tested: every event in every state, then the situations that
//! broke in adversarial runs, each as a sequence of events.

use alloy_primitives::{Address, B256, U256, address};

use super::*;

const VAULT: Address = address!("0x0165878A594ca255338adfa4d48449f69242Eb8F");
const EXECUTOR: Address = address!("0x1111111111111111111111111111111111111111");
const OWNER: Address = address!("0x2222222222222222222222222222222222222222");
const T0: Millis = 1_700_000_000_000;

fn h(n: u8) -> B256 {
    B256::repeat_byte(n)
}

fn policy() -> ResponsePolicy {
    ResponsePolicy::default()
}

fn pause_rollback() -> Action {
    Action::ProposePause { then_rollback: true }
}

fn finding(id: FindingId, severity: Severity, action: Action) -> Event {
    Event::FindingRecorded { finding: id, rule: format!("rule-{id}"), severity, action }
}

fn made(proposal: B256, replaces: Option<B256>) -> Event {
    Event::ProposalMade { proposal, nonce: U256::from(7), threshold: 2, replaces }
}

/// `n` approvals of `proposal` counted at block 10.
fn approvals(proposal: B256, n: u64) -> Event {
    approvals_at(proposal, n, 10)
}

fn approvals_at(proposal: B256, approvals: u64, block: u64) -> Event {
    Event::ApprovalCounted { proposal, approvals, threshold: 2, block }
}

fn seen(proposal: B256, by: Attribution) -> Event {
    let sender = if by == Attribution::ThisReplica { EXECUTOR } else { OWNER };
    Event::ExecutionSeen { proposal: Some(proposal), tx: h(0xee), sender, block: 12, by }
}

fn open_with(event: &Event) -> Transition {
    Incident::open("inc-test".into(), "vault".into(), VAULT, event, T0, &policy()).expect("opens")
}

/// Apply `events` in order from `incident`, each at `T0 + 1 s · i`, failing on a refusal.
fn run(mut incident: Incident, events: &[Event]) -> (Incident, Vec<Vec<Effect>>) {
    let mut all = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let t = incident
            .step(event, T0 + 1_000 * (i as u64 + 1), &policy())
            .unwrap_or_else(|e| panic!("event {i} ({}) refused: {e}", event.name()));
        all.push(t.effects);
        incident = t.incident;
    }
    (incident, all)
}

fn notices(effects: &[Vec<Effect>]) -> Vec<String> {
    effects
        .iter()
        .flatten()
        .filter_map(|e| match e {
            Effect::Notify(n) => Some(format!("{}@{}", n.kind.as_str(), n.key)),
            _ => None,
        })
        .collect()
}

/// A representative incident in `state`: a Critical drain finding (#1, pause then rollback);
/// from `responding` on, pause proposal h(1) at threshold 2.
fn incident_in(state: State) -> Incident {
    let opened = open_with(&finding(1, Severity::Critical, pause_rollback())).incident;
    let path: Vec<Event> = match state {
        State::Open => vec![],
        State::Responding => vec![made(h(1), None)],
        State::Contained => vec![
            made(h(1), None),
            approvals(h(1), 2),
            seen(h(1), Attribution::ThisReplica),
            Event::PauseVerified { block: 12 },
        ],
        State::Recovering => vec![
            made(h(1), None),
            approvals(h(1), 2),
            seen(h(1), Attribution::ThisReplica),
            Event::PauseVerified { block: 12 },
            Event::RollbackStarted,
        ],
        State::Recovered | State::Resolved => {
            let mut path = vec![
                made(h(1), None),
                approvals(h(1), 2),
                seen(h(1), Attribution::ThisReplica),
                Event::PauseVerified { block: 12 },
                Event::RollbackStarted,
                Event::RollbackFinished {
                    undo: Some("20261201T000000Z".into()),
                    summary: "".into(),
                },
                Event::RecoveryChecked { passed: true, report: "health 200".into() },
            ];
            if state == State::Resolved {
                path.push(Event::OperatorResolve { actor: "op".into(), note: "done".into() });
            }
            path
        }
        State::Withdrawn => vec![made(h(1), None), Event::FindingRetracted { finding: 1 }],
        State::Cancelled => vec![
            made(h(1), None),
            Event::OperatorCancel { actor: "op".into(), reason: "drill".into() },
        ],
    };
    let (incident, _) = run(opened, &path);
    assert_eq!(incident.state, state, "the builder reaches {state}");
    incident
}

/// One event of every kind, named for the table. Each refers to the representative
/// incident's finding #1 and proposal h(1) where it needs one.
fn every_event(incident: &Incident) -> Vec<(&'static str, Event)> {
    vec![
        ("finding 2", finding(2, Severity::High, pause_rollback())),
        ("finding 1 again", finding(1, Severity::Critical, pause_rollback())),
        ("retract 1", Event::FindingRetracted { finding: 1 }),
        ("retract 9", Event::FindingRetracted { finding: 9 }),
        (
            "pause request",
            Event::PauseRequested { actor: "op".into(), reason: "manual".into(), rollback: false },
        ),
        ("proposal h2", made(h(2), None)),
        ("proposal failed", Event::ProposalFailed { cause: "simulation reverts".into() }),
        ("module sent", Event::ModulePauseSent { tx: h(0xcc) }),
        ("module unavailable", Event::ModulePauseUnavailable { reason: "not enabled".into() }),
        ("approval 1", approvals(h(1), 1)),
        ("approval 2", approvals(h(1), 2)),
        ("approval of h9", approvals(h(9), 1)),
        ("nonce consumed", Event::NonceConsumed { proposal: h(1) }),
        ("seen here", seen(h(1), Attribution::ThisReplica)),
        ("seen outside", seen(h(1), Attribution::Outside)),
        ("exec failed", Event::ExecutionFailed { proposal: h(1), cause: "no funds".into() }),
        ("verified", Event::PauseVerified { block: 13 }),
        ("already paused", Event::AlreadyPaused { block: 13 }),
        ("rollback started", Event::RollbackStarted),
        ("rollback done", Event::RollbackFinished { undo: None, summary: "".into() }),
        ("rollback failed", Event::RollbackFailed { error: "code hash differs".into() }),
        ("recovery passed", Event::RecoveryChecked { passed: true, report: "health 200".into() }),
        ("recovery failed", Event::RecoveryChecked { passed: false, report: "health 500".into() }),
        ("unpaused", Event::Unpaused { tx: h(0xdd), block: 20 }),
        ("resolve", Event::OperatorResolve { actor: "op".into(), note: "fixed".into() }),
        ("cancel", Event::OperatorCancel { actor: "op".into(), reason: "false alarm".into() }),
        ("reopen", Event::OperatorReopen { actor: "op".into(), note: "not over".into() }),
        (
            "escalation due",
            Event::TimerFired {
                timer: Timer::Escalation,
                at: incident.escalation_at.unwrap_or(T0 + 1),
            },
        ),
        ("escalation stale", Event::TimerFired { timer: Timer::Escalation, at: 1 }),
    ]
}

/// What each event does in each state: `state/audit` (the next state and the audit entry),
/// `-` (nothing changes), or `!error` (refused, naming the error).
///
/// Columns: open, responding, contained, recovering, recovered, resolved, withdrawn, cancelled.
#[rustfmt::skip]
const TABLE: &[(&str, [&str; 8])] = &[
    //                       open                        responding                     contained                       recovering                       recovered                       resolved                       withdrawn                       cancelled
    ("finding 2",          ["open/finding_attached",    "responding/finding_attached", "contained/finding_attached",   "recovering/finding_attached",   "recovered/finding_attached",   "!closed",                     "!closed",                      "!closed"]),
    ("finding 1 again",    ["-",                        "-",                           "-",                            "-",                             "-",                            "-",                           "open/finding_reinstated",      "-"]),
    ("retract 1",          ["withdrawn/withdrawn",      "withdrawn/withdrawn",         "contained/finding_retracted",  "recovering/finding_retracted",  "recovered/finding_retracted",  "resolved/finding_retracted",  "-",                            "cancelled/finding_retracted"]),
    ("retract 9",          ["!unknown_finding",         "!unknown_finding",            "!unknown_finding",             "!unknown_finding",              "!unknown_finding",             "!unknown_finding",            "!unknown_finding",             "!unknown_finding"]),
    ("pause request",      ["open/pause_requested",     "responding/pause_requested",  "!already_contained",           "!already_contained",            "!already_contained",           "!closed",                     "!closed",                      "!closed"]),
    ("proposal h2",        ["responding/proposal_made", "responding/proposal_made",    "contained/proposal_withdrawn", "recovering/proposal_withdrawn", "recovered/proposal_withdrawn", "resolved/proposal_withdrawn", "withdrawn/proposal_withdrawn", "cancelled/proposal_withdrawn"]),
    ("proposal failed",    ["open/proposal_failed",     "!unrequested",                "!unrequested",                 "!unrequested",                  "!unrequested",                 "!unrequested",                "!unrequested",                 "!unrequested"]),
    ("module sent",        ["!unrequested",             "!unrequested",                "!unrequested",                 "!unrequested",                  "!unrequested",                 "!unrequested",                "!unrequested",                 "!unrequested"]),
    ("module unavailable", ["!unrequested",             "!unrequested",                "!unrequested",                 "!unrequested",                  "!unrequested",                 "!unrequested",                "!unrequested",                 "!unrequested"]),
    ("approval 1",         ["!unknown_proposal",        "responding/approval_counted", "!not_pending",                 "!not_pending",                  "!not_pending",                 "!not_pending",                "!not_pending",                 "!not_pending"]),
    ("approval 2",         ["!unknown_proposal",        "responding/approval_counted", "!not_pending",                 "!not_pending",                  "!not_pending",                 "!not_pending",                "!not_pending",                 "!not_pending"]),
    ("approval of h9",     ["!unknown_proposal",        "!unknown_proposal",           "!unknown_proposal",            "!unknown_proposal",             "!unknown_proposal",            "!unknown_proposal",           "!unknown_proposal",            "!unknown_proposal"]),
    ("nonce consumed",     ["!unknown_proposal",        "responding/proposal_stale",   "!not_pending",                 "!not_pending",                  "!not_pending",                 "!not_pending",                "!not_pending",                 "!not_pending"]),
    ("seen here",          ["!unknown_proposal",        "responding/executed",         "-",                            "-",                             "-",                            "-",                           "withdrawn/executed",           "cancelled/executed"]),
    ("seen outside",       ["!unknown_proposal",        "responding/executed",         "-",                            "-",                             "-",                            "-",                           "withdrawn/executed",           "cancelled/executed"]),
    ("exec failed",        ["!unknown_proposal",        "responding/execution_failed", "!not_pending",                 "!not_pending",                  "!not_pending",                 "!not_pending",                "!not_pending",                 "!not_pending"]),
    ("verified",           ["contained/contained",      "contained/contained",         "-",                            "-",                             "-",                            "!closed",                     "contained/contained",          "!closed"]),
    ("already paused",     ["contained/contained",      "!unrequested",                "-",                            "-",                             "-",                            "!closed",                     "!unrequested",                 "!closed"]),
    ("rollback started",   ["!unrequested",             "!unrequested",                "recovering/rollback_started",  "-",                             "!unrequested",                 "!unrequested",                "!unrequested",                 "!unrequested"]),
    ("rollback done",      ["!unrequested",             "!unrequested",                "recovering/rollback_done",     "recovering/rollback_done",      "-",                            "-",                           "!unrequested",                 "!unrequested"]),
    ("rollback failed",    ["!unrequested",             "!unrequested",                "recovering/rollback_failed",   "recovering/rollback_failed",    "!unrequested",                 "!unrequested",                "!unrequested",                 "!unrequested"]),
    ("recovery passed",    ["!unrequested",             "!unrequested",                "!unrequested",                 "!unrequested",                  "-",                            "!closed",                     "!closed",                      "!closed"]),
    ("recovery failed",    ["!unrequested",             "!unrequested",                "!unrequested",                 "!unrequested",                  "!unrequested",                 "!closed",                     "!closed",                      "!closed"]),
    ("unpaused",           ["open/unpaused",            "responding/unpaused",         "resolved/unpaused",            "resolved/unpaused",             "resolved/unpaused",            "-",                           "-",                            "-"]),
    ("resolve",            ["!not_contained",           "!not_contained",              "!rollback_pending",            "!rollback_pending",             "resolved/resolved",            "-",                           "!closed",                      "!closed"]),
    ("cancel",             ["cancelled/cancelled",      "cancelled/cancelled",         "cancelled/cancelled",          "cancelled/cancelled",           "cancelled/cancelled",          "!closed",                     "!closed",                      "-"]),
    ("reopen",             ["!not_closed",              "!not_closed",                 "!not_closed",                  "!not_closed",                   "!not_closed",                  "recovered/reopened",          "open/reopened",                "open/reopened"]),
    ("escalation due",     ["open/escalated",           "responding/escalated",        "-",                            "-",                             "-",                            "-",                           "-",                            "-"]),
    ("escalation stale",   ["-",                        "-",                           "-",                            "-",                             "-",                            "-",                           "-",                            "-"]),
];

fn error_name(error: &StepError) -> &'static str {
    match error {
        StepError::Closed { .. } => "closed",
        StepError::NotAnOpening { .. } => "not_an_opening",
        StepError::UnknownFinding { .. } => "unknown_finding",
        StepError::UnknownProposal { .. } => "unknown_proposal",
        StepError::NotPending { .. } => "not_pending",
        StepError::AlreadyContained { .. } => "already_contained",
        StepError::NotContained { .. } => "not_contained",
        StepError::RollbackPending { .. } => "rollback_pending",
        StepError::Unrequested { .. } => "unrequested",
        StepError::NotClosed { .. } => "not_closed",
    }
}

fn outcome(from: &Incident, result: &Result<Transition, StepError>) -> String {
    match result {
        Err(e) => format!("!{}", error_name(e)),
        Ok(t) if !t.changed() => {
            assert_eq!(&t.incident, from, "a transition without effects changes nothing");
            "-".to_owned()
        }
        Ok(t) => {
            let audits = t.effects.iter().filter(|e| matches!(e, Effect::Audit { .. })).count();
            assert_eq!(audits, 1, "one audit entry per changing transition: {:?}", t.effects);
            format!("{}/{}", t.incident.state, t.audit().map_or("?", AuditKind::as_str))
        }
    }
}

#[test]
fn every_event_in_every_state_does_what_the_table_says() {
    let mut mismatches = Vec::new();
    let mut cells = 0;
    for (column, state) in State::ALL.into_iter().enumerate() {
        let incident = incident_in(state);
        let events = every_event(&incident);
        assert_eq!(events.len(), TABLE.len(), "the table has a row for every event");
        for ((name, event), (row, expected)) in events.iter().zip(TABLE) {
            assert_eq!(name, row, "table rows follow every_event's order");
            let now = T0 + 3_600_000;
            let result = incident.step(event, now, &policy());
            let got = outcome(&incident, &result);
            cells += 1;
            if got != expected[column] {
                mismatches
                    .push(format!("{state} + {name}: expected {}, got {got}", expected[column]));
            }
            // Replaying an applied event changes nothing.
            if let Ok(t) = &result {
                let again = t.incident.step(event, now, &policy());
                if let Ok(again) = &again {
                    assert!(
                        !again.changed(),
                        "{state} + {name} twice changed again: {:?}",
                        again.effects
                    );
                }
            }
        }
    }
    assert_eq!(cells, State::ALL.len() * TABLE.len());
    assert!(mismatches.is_empty(), "{} cells differ:\n{}", mismatches.len(), mismatches.join("\n"));
}

#[test]
fn only_a_finding_or_a_pause_request_opens_an_incident() {
    let opened = open_with(&finding(1, Severity::Critical, pause_rollback()));
    assert_eq!(opened.incident.state, State::Open);
    assert_eq!(opened.audit(), Some(AuditKind::Opened));
    assert!(opened.effects.contains(&Effect::ProposePause));
    assert!(opened.incident.pause_requested);
    let err =
        Incident::open("k".into(), "vault".into(), VAULT, &Event::RollbackStarted, T0, &policy())
            .expect_err("refused");
    assert_eq!(err, StepError::NotAnOpening { event: "rollback_started" });
    // An alert-only finding opens an incident that notifies but proposes nothing.
    let alert = open_with(&finding(1, Severity::Medium, Action::Alert));
    assert!(!alert.effects.contains(&Effect::ProposePause));
    assert_eq!(alert.notices().map(|n| n.kind).collect::<Vec<_>>(), [NoticeKind::Opened]);
    // A log-only finding neither notifies nor escalates.
    let log = open_with(&finding(1, Severity::Low, Action::Log));
    assert_eq!(log.notices().count(), 0);
    assert_eq!(log.incident.escalation_at, None);
}

/// Two rules fire on one contract in the same drain: one incident, one proposal, both
/// findings linked; the pause contains both.
#[test]
fn a_second_finding_attaches_once_and_asks_for_no_second_proposal() {
    let open = open_with(&finding(1, Severity::Critical, pause_rollback())).incident;
    let (incident, effects) = run(
        open,
        &[
            finding(2, Severity::Critical, pause_rollback()),
            finding(2, Severity::Critical, pause_rollback()), // the next poll: replayed
            made(h(1), None),
            finding(3, Severity::High, pause_rollback()),
        ],
    );
    assert_eq!(incident.findings.len(), 3);
    let proposes = effects.iter().flatten().filter(|e| **e == Effect::ProposePause).count();
    assert_eq!(proposes, 0, "the opening asked for the only proposal");
    assert!(effects[1].is_empty(), "the replay wrote nothing");
    assert_eq!(notices(&effects), ["pause_proposed@proposed:".to_owned() + &h(1).to_string()]);
    let (incident, _) = run(
        incident,
        &[
            approvals(h(1), 2),
            seen(h(1), Attribution::ThisReplica),
            Event::PauseVerified { block: 3 },
        ],
    );
    assert_eq!(incident.state, State::Contained);
}

/// An operator's pause, then automated findings: the contract's rollback policy still
/// applies after the pause.
#[test]
fn a_manual_pause_then_findings_still_rolls_back() {
    let manual =
        Event::PauseRequested { actor: "alice".into(), reason: "odd".into(), rollback: true };
    let opened = open_with(&manual);
    assert!(opened.effects.contains(&Effect::ProposePause));
    assert_eq!(opened.incident.severity, Severity::High);
    let (incident, effects) = run(
        opened.incident,
        &[
            made(h(1), None),
            finding(1, Severity::Critical, Action::ProposePause { then_rollback: false }),
            approvals(h(1), 1),
            approvals(h(1), 2),
            seen(h(1), Attribution::ThisReplica),
            Event::PauseVerified { block: 9 },
        ],
    );
    assert_eq!(incident.severity, Severity::Critical);
    assert_eq!(incident.findings.len(), 1);
    let last = effects.last().expect("effects");
    assert!(last.contains(&Effect::RunRollback { from: VAULT }), "{last:?}");
    assert_eq!(incident.rollback, RollbackStatus::Owed);
}

#[test]
fn retraction_before_approvals_withdraws_the_proposal() {
    let open = open_with(&finding(1, Severity::Critical, pause_rollback())).incident;
    let (incident, effects) =
        run(open, &[made(h(1), None), approvals(h(1), 1), Event::FindingRetracted { finding: 1 }]);
    assert_eq!(incident.state, State::Withdrawn);
    let last = effects.last().expect("effects");
    assert!(last.iter().any(|e| matches!(e,
        Effect::Withdraw { proposal, reason } if *proposal == h(1) && reason.contains("retracted"))));
    assert!(last.contains(&Effect::CancelTimer { timer: Timer::Escalation }));
    assert_eq!(incident.proposals[&h(1)].state, ProposalState::Withdrawn);
    // An approval after the withdrawal is refused, and nothing asks for an execution.
    let err = incident.step(&approvals(h(1), 2), T0, &policy()).expect_err("refused");
    assert!(matches!(err, StepError::NotPending { state: ProposalState::Withdrawn, .. }));
}

#[test]
fn retraction_after_the_threshold_withdraws_before_the_execution() {
    let open = open_with(&finding(1, Severity::Critical, pause_rollback())).incident;
    let (incident, effects) = run(open, &[made(h(1), None), approvals(h(1), 2)]);
    assert!(effects[1].contains(&Effect::Execute { proposal: h(1) }));
    let (incident, effects) = run(incident, &[Event::FindingRetracted { finding: 1 }]);
    assert_eq!(incident.state, State::Withdrawn);
    assert!(effects[0].iter().any(|e| matches!(e, Effect::Withdraw { .. })));
    // The execution raced the withdrawal and was mined anyway: contained, but the retracted
    // findings do not move the configs.
    let (incident, effects) =
        run(incident, &[seen(h(1), Attribution::ThisReplica), Event::PauseVerified { block: 5 }]);
    assert_eq!(incident.state, State::Contained);
    assert!(!effects.iter().flatten().any(|e| matches!(e, Effect::RunRollback { .. })));
}

#[test]
fn a_reorg_that_mines_the_anomaly_again_reinstates_the_incident() {
    let open = open_with(&finding(1, Severity::Critical, pause_rollback())).incident;
    let (incident, effects) = run(
        open,
        &[
            made(h(1), None),
            Event::FindingRetracted { finding: 1 },
            finding(1, Severity::Critical, pause_rollback()),
            made(h(1), None), // same nonce, same hash: the withdrawn proposal stands again
        ],
    );
    assert_eq!(incident.state, State::Responding);
    assert_eq!(incident.proposals[&h(1)].state, ProposalState::Pending);
    let kinds: Vec<String> = notices(&effects);
    assert_eq!(
        kinds,
        [
            format!("pause_proposed@proposed:{}", h(1)),
            "withdrawn@withdrawn".into(),
            "reinstated@reinstated:1".into(),
            format!("pause_proposed@proposed:{}", h(1)),
        ],
        "no second 'opened'; the repeated proposal notice has the same key, so receivers drop it"
    );
}

/// After a kill -9 between send and record, the restarted daemon sees its own transaction:
/// attribution says so, and the rollback follows the verified pause either way.
#[test]
fn own_and_outside_executions_both_lead_to_the_rollback() {
    for by in [Attribution::ThisReplica, Attribution::Outside, Attribution::Peer] {
        let open = open_with(&finding(1, Severity::Critical, pause_rollback())).incident;
        let (incident, effects) = run(
            open,
            &[
                made(h(1), None),
                approvals(h(1), 2),
                seen(h(1), by),
                Event::PauseVerified { block: 4 },
            ],
        );
        let execution = incident.execution.as_ref().expect("recorded");
        assert_eq!(execution.by, by);
        assert_eq!(execution.sender, if by == Attribution::ThisReplica { EXECUTOR } else { OWNER });
        assert!(effects[3].contains(&Effect::RunRollback { from: VAULT }), "{by:?}");
        let (incident, effects) = run(
            incident,
            &[
                Event::RollbackStarted,
                Event::RollbackStarted, // the restart after a kill during the rollback
                Event::RollbackFinished { undo: Some("s".into()), summary: "v2 → v1".into() },
            ],
        );
        assert!(effects[1].is_empty());
        assert_eq!(incident.state, State::Recovering, "recovered once the services are verified");
        assert!(effects[2].contains(&Effect::RunRecovery { restart: true }), "{:?}", effects[2]);
        let (incident, _) =
            run(incident, &[Event::RecoveryChecked { passed: true, report: "api 200".into() }]);
        assert_eq!(incident.state, State::Recovered);
    }
}

/// After the rollback the services are restarted and checked: a failed check keeps the
/// incident recovering, says which check and which backup undoes the rollback, and blocks
/// nothing an operator may decide (resolve, or a check that passes later).
#[test]
fn a_failed_recovery_check_is_recorded_and_notified_and_a_passing_one_recovers() {
    let open = open_with(&finding(1, Severity::Critical, pause_rollback())).incident;
    let (incident, _) = run(
        open,
        &[
            made(h(1), None),
            approvals(h(1), 2),
            seen(h(1), Attribution::ThisReplica),
            Event::PauseVerified { block: 4 },
            Event::RollbackStarted,
            Event::RollbackFinished { undo: None, summary: "already at v1".into() },
        ],
    );
    assert_eq!(incident.recovery, RecoveryStatus::Owed);
    let early = incident.step(
        &Event::OperatorResolve { actor: "op".into(), note: "done".into() },
        T0,
        &policy(),
    );
    assert!(matches!(early, Err(StepError::RollbackPending { .. })), "{early:?}");
    let report = "health http://127.0.0.1:9/health answered 500; undo with backup 1".to_owned();
    let (incident, effects) = run(
        incident,
        &[
            Event::RecoveryChecked { passed: false, report: report.clone() },
            Event::RecoveryChecked { passed: false, report: report.clone() },
            Event::RecoveryChecked { passed: true, report: "health 200".into() },
        ],
    );
    assert_eq!(incident.state, State::Recovered);
    assert_eq!(
        notices(&effects),
        [
            "recovery_failed@recovery-failed:1",
            "recovery_failed@recovery-failed:2",
            "recovery_verified@recovery-verified"
        ]
    );
    assert!(
        effects[0].iter().any(|e| matches!(e, Effect::Audit { kind: AuditKind::RecoveryFailed }))
    );
}

#[test]
fn a_stale_pause_is_proposed_again_at_the_new_nonce() {
    let open = open_with(&finding(1, Severity::Critical, pause_rollback())).incident;
    let (incident, effects) =
        run(open, &[made(h(1), None), approvals(h(1), 1), Event::NonceConsumed { proposal: h(1) }]);
    assert_eq!(incident.proposals[&h(1)].state, ProposalState::Stale);
    assert!(effects[2].contains(&Effect::ProposePause));
    let (incident, effects) = run(incident, &[made(h(2), Some(h(1)))]);
    assert_eq!(effects[0][0], Effect::Audit { kind: AuditKind::Reproposed });
    assert_eq!(incident.pending_proposal().map(|(hash, _)| hash), Some(h(2)));
}

#[test]
fn an_already_paused_target_is_contained_and_rolled_back() {
    let open = open_with(&finding(1, Severity::Critical, pause_rollback())).incident;
    let (incident, effects) = run(open, &[Event::AlreadyPaused { block: 3 }]);
    assert_eq!(incident.state, State::Contained);
    assert!(effects[0].contains(&Effect::RunRollback { from: VAULT }));
    assert_eq!(notices(&effects), ["already_paused@contained"]);
}

/// While the contract is paused, the window that caused the incident keeps firing: those
/// findings attach to the contained incident; they neither reopen it nor propose again.
#[test]
fn a_window_still_above_threshold_does_not_reopen_a_contained_incident() {
    let contained = incident_in(State::Recovered);
    let t = contained
        .step(&finding(5, Severity::Critical, pause_rollback()), T0, &policy())
        .expect("ok");
    assert_eq!(t.incident.state, State::Recovered);
    assert!(!t.effects.contains(&Effect::ProposePause));
    assert_eq!(t.notices().count(), 0);
}

#[test]
fn the_unpause_after_recovery_resolves_and_a_new_episode_opens_a_new_incident() {
    let recovered = incident_in(State::Recovered);
    let t = recovered.step(&Event::Unpaused { tx: h(9), block: 30 }, T0, &policy()).expect("ok");
    assert_eq!(t.incident.state, State::Resolved);
    // The next finding is refused by the resolved incident: the caller opens a new one.
    let err = t
        .incident
        .step(&finding(6, Severity::Critical, pause_rollback()), T0, &policy())
        .expect_err("closed");
    assert!(matches!(err, StepError::Closed { state: State::Resolved, .. }));
}

#[test]
fn escalations_repeat_until_contained_then_stop() {
    let policy = ResponsePolicy { high: 5_000, escalate_every: 2_000, ..ResponsePolicy::default() };
    let opened = Incident::open(
        "k".into(),
        "vault".into(),
        VAULT,
        &finding(1, Severity::High, pause_rollback()),
        T0,
        &policy,
    )
    .expect("opens");
    assert!(
        opened
            .effects
            .contains(&Effect::ScheduleTimer { timer: Timer::Escalation, at: T0 + 5_000 })
    );
    let mut incident = opened.incident;
    let mut sent = Vec::new();
    for round in 0..3 {
        let at = incident.escalation_at.expect("scheduled");
        let t = incident
            .step(&Event::TimerFired { timer: Timer::Escalation, at }, at, &policy)
            .expect("ok");
        assert!(
            t.effects.contains(&Effect::ScheduleTimer { timer: Timer::Escalation, at: at + 2_000 })
        );
        sent.extend(t.notices().map(|n| n.key.clone()));
        incident = t.incident;
        if round == 0 {
            incident =
                incident.step(&made(h(1), None), at + 1, &policy).expect("proposal").incident;
        }
    }
    assert_eq!(sent, ["escalation:1", "escalation:2", "escalation:3"]);
    let t = incident.step(&Event::PauseVerified { block: 9 }, T0 + 20_000, &policy).expect("ok");
    assert!(t.effects.contains(&Effect::CancelTimer { timer: Timer::Escalation }));
    let fired = Event::TimerFired { timer: Timer::Escalation, at: T0 + 11_000 };
    assert!(!t.incident.step(&fired, T0 + 30_000, &policy).expect("ok").changed());
}

#[test]
fn critical_escalates_one_interval_after_opening_and_a_rising_severity_moves_the_deadline() {
    let policy = ResponsePolicy::default();
    let critical = open_with(&finding(1, Severity::Critical, pause_rollback()));
    assert_eq!(critical.incident.escalation_at, Some(T0 + policy.escalate_every));
    let low_alert = open_with(&finding(1, Severity::Medium, Action::Alert)).incident;
    assert_eq!(low_alert.escalation_at, Some(T0 + policy.medium));
    let t =
        low_alert.step(&finding(2, Severity::High, Action::Alert), T0 + 1, &policy).expect("ok");
    assert_eq!(t.incident.escalation_at, Some(T0 + policy.high));
    assert_eq!(t.notices().map(|n| n.kind).collect::<Vec<_>>(), [NoticeKind::SeverityRaised]);
}

/// The drain's notifications, in order, each with a key of its own.
#[test]
fn a_drain_notifies_each_lifecycle_step_once() {
    let opened = open_with(&finding(1, Severity::Critical, pause_rollback()));
    let mut all = vec![opened.effects.clone()];
    let (_, effects) = run(
        opened.incident,
        &[
            made(h(1), None),
            approvals(h(1), 1),
            approvals(h(1), 1), // counted again on the next poll: nothing new
            approvals(h(1), 2),
            seen(h(1), Attribution::ThisReplica),
            Event::PauseVerified { block: 4 },
            Event::RollbackStarted,
            Event::RollbackFinished { undo: Some("20261201T101500Z".into()), summary: "".into() },
        ],
    );
    all.extend(effects);
    let kinds: Vec<String> = notices(&all)
        .into_iter()
        .map(|n| n.split('@').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        kinds,
        ["opened", "pause_proposed", "approval", "approval", "executed", "rollback_done"]
    );
    let keys = notices(&all);
    let unique: std::collections::BTreeSet<_> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "{keys:?}");
}

/// Counts that raced an approval (read before it landed, told after it was recorded) are
/// dropped; a count at a newer block is taken even when it is lower (an owner removed).
#[test]
fn a_count_read_before_the_last_one_never_lowers_the_approvals() {
    let open = open_with(&finding(1, Severity::High, pause_rollback())).incident;
    let (pending, _) = run(open, &[made(h(1), None), approvals_at(h(1), 1, 20)]);
    // (count, block, approvals recorded after it, counted_at after it, recorded as an event)
    let cases: &[(u64, u64, u64, u64, bool)] = &[
        (0, 19, 1, 20, false), // read at an older block
        (1, 19, 1, 20, false), // older and equal
        (0, 20, 1, 20, false), // same block, fewer: read the signatures before one was stored
        (1, 20, 1, 20, false), // the same count again
        (2, 20, 2, 20, true),  // same block, more: a signature stored since
        (0, 21, 0, 21, true),  // a newer block says fewer: taken
        (2, 21, 2, 21, true),
    ];
    for &(count, block, approvals, counted_at, recorded) in cases {
        let t = pending
            .step(&approvals_at(h(1), count, block), T0 + 60_000, &policy())
            .unwrap_or_else(|e| panic!("{count} at block {block}: {e}"));
        let link = &t.incident.proposals[&h(1)];
        let case = format!("{count} approvals at block {block}");
        assert_eq!((link.approvals, link.counted_at), (approvals, counted_at), "{case}");
        assert_eq!(t.changed(), recorded, "{case}");
        assert_eq!(t.notices().count(), usize::from(recorded), "{case}");
    }

    // The race seen in the drain test: the CLI counted 2 (threshold met, execution asked),
    // then the daemon's count read one block earlier arrived: one approval event per change.
    let (raced, effects) = run(
        pending,
        &[approvals_at(h(1), 2, 22), approvals_at(h(1), 1, 21), approvals_at(h(1), 2, 22)],
    );
    assert_eq!(raced.proposals[&h(1)].approvals, 2);
    assert_eq!(notices(&effects), [format!("approval@approval:{}:2", h(1))]);
    let executes = effects.iter().flatten().filter(|e| matches!(e, Effect::Execute { .. }));
    assert_eq!(executes.count(), 1);
}

#[test]
fn failures_notify_once_per_cause() {
    let open = open_with(&finding(1, Severity::Critical, pause_rollback())).incident;
    let (incident, effects) = run(
        open,
        &[
            Event::ProposalFailed { cause: "reverts: OwnableUnauthorizedAccount".into() },
            Event::ProposalFailed { cause: "reverts: OwnableUnauthorizedAccount".into() },
            made(h(1), None),
            approvals(h(1), 2),
            Event::ExecutionFailed { proposal: h(1), cause: "balance 1 wei < 300 wei".into() },
            Event::ExecutionFailed { proposal: h(1), cause: "balance 2 wei < 310 wei".into() },
            Event::ExecutionFailed { proposal: h(1), cause: "nonce too low".into() },
        ],
    );
    assert_eq!(
        notices(&effects),
        [
            "proposal_failed@proposal-failed:1".to_owned(),
            format!("pause_proposed@proposed:{}", h(1)),
            format!("approval@approval:{}:2", h(1)),
            format!("execution_failed@execution-failed:{}:1", h(1)),
            format!("execution_failed@execution-failed:{}:2", h(1)),
        ]
    );
    assert_eq!(incident.proposals[&h(1)].failures, 2);
}

#[test]
fn cancelling_withdraws_and_a_late_proposal_is_withdrawn_at_once() {
    let responding = incident_in(State::Responding);
    let t = responding
        .step(&Event::OperatorCancel { actor: "op".into(), reason: "test".into() }, T0, &policy())
        .expect("ok");
    assert!(
        t.effects
            .iter()
            .any(|e| matches!(e, Effect::Withdraw { proposal, .. } if *proposal == h(1)))
    );
    let late = t.incident.step(&made(h(3), None), T0, &policy()).expect("ok");
    assert!(
        late.effects
            .iter()
            .any(|e| matches!(e, Effect::Withdraw { proposal, .. } if *proposal == h(3)))
    );
}

#[test]
fn keys_come_from_chain_facts_only() {
    let a = incident_key(138, VAULT, "drain", "log:0xaa:0");
    assert_eq!(a, incident_key(138, VAULT, "drain", "log:0xaa:0"));
    assert!(a.starts_with("inc-") && a.len() == 20, "{a}");
    assert_ne!(a, incident_key(1, VAULT, "drain", "log:0xaa:0"));
    assert_ne!(a, incident_key(138, VAULT, "drai", "nlog:0xaa:0"), "parts are length-prefixed");
    assert!(same_cause("balance 1 wei < 300", "balance 22 wei < 310"));
    assert!(!same_cause("balance low", "nonce too low"));
}

fn pause_now() -> Action {
    Action::PauseNow { then_rollback: true }
}

/// Critical acts now: the pause goes out through the module, no proposal, and the rollback
/// follows the verified pause.
#[test]
fn a_pause_now_finding_pauses_through_the_module_without_a_proposal() {
    let opened = open_with(&finding(1, Severity::Critical, pause_now()));
    assert!(opened.effects.contains(&Effect::PauseNow), "{:?}", opened.effects);
    assert!(!opened.effects.contains(&Effect::ProposePause));
    let module = Event::ExecutionSeen {
        proposal: None,
        tx: h(0xcc),
        sender: EXECUTOR,
        block: 3,
        by: Attribution::ThisReplica,
    };
    let (incident, effects) = run(
        opened.incident,
        &[
            finding(2, Severity::Critical, pause_now()), // a second rule: nothing more to send
            Event::ModulePauseSent { tx: h(0xcc) },
            module,
            Event::PauseVerified { block: 3 },
        ],
    );
    assert!(!effects[0].contains(&Effect::PauseNow), "one pause in flight is enough");
    assert_eq!(incident.state, State::Contained);
    assert!(effects[3].contains(&Effect::RunRollback { from: VAULT }));
    assert_eq!(
        notices(&effects),
        [format!("pause_sent@pause-sent:{}", h(0xcc)), "executed@contained".to_owned()]
    );
    assert!(incident.proposals.is_empty(), "no Safe proposal was needed");
}

#[test]
fn when_the_module_cannot_pause_the_incident_falls_back_to_a_proposal_and_says_why() {
    let opened = open_with(&finding(1, Severity::Critical, pause_now())).incident;
    let (incident, effects) = run(
        opened,
        &[
            Event::ModulePauseUnavailable { reason: "GS104: the module is not enabled".into() },
            made(h(1), None),
        ],
    );
    assert!(effects[0].contains(&Effect::ProposePause), "{:?}", effects[0]);
    assert_eq!(incident.module_unavailable.as_deref(), Some("GS104: the module is not enabled"));
    assert_eq!(incident.state, State::Responding);
    assert_eq!(notices(&effects)[0], "immediate_pause_unavailable@module-unavailable");
    // A later finding does not try the module again for this incident.
    let t = incident.step(&finding(3, Severity::Critical, pause_now()), T0, &policy()).expect("ok");
    assert!(!t.effects.iter().any(|e| matches!(e, Effect::PauseNow | Effect::ProposePause)));
}

#[test]
fn an_immediate_pause_in_flight_is_dropped_by_a_retraction_and_an_already_paused_target_counts() {
    let opened = open_with(&finding(1, Severity::Critical, pause_now())).incident;
    let retracted =
        opened.step(&Event::FindingRetracted { finding: 1 }, T0, &policy()).expect("withdrawn");
    assert_eq!(retracted.incident.state, State::Withdrawn);
    assert!(!retracted.incident.pause_now_requested);
    let err = retracted
        .incident
        .step(&Event::ModulePauseSent { tx: h(1) }, T0, &policy())
        .expect_err("nothing asked for it any more");
    assert!(matches!(err, StepError::Unrequested { .. }));
    let paused = opened.step(&Event::AlreadyPaused { block: 2 }, T0, &policy()).expect("ok");
    assert_eq!(paused.incident.state, State::Contained);
}

/// A pause sent but not seen mined (a replacement at higher fees, or a resend after a restart)
/// is recorded as sent again, announced once; once an execution is seen, no more.
#[test]
fn a_resent_immediate_pause_is_recorded_and_announced_once() {
    let opened = open_with(&finding(1, Severity::Critical, pause_now())).incident;
    let mined = Event::ExecutionSeen {
        proposal: None,
        tx: h(0xc2),
        sender: EXECUTOR,
        block: 4,
        by: Attribution::ThisReplica,
    };
    let (incident, effects) = run(
        opened,
        &[
            Event::ModulePauseSent { tx: h(0xc1) },
            Event::ModulePauseSent { tx: h(0xc2) },
            Event::ModulePauseSent { tx: h(0xc2) }, // replayed
            mined,
        ],
    );
    assert_eq!(incident.module_tx, Some(h(0xc2)));
    assert!(
        effects[1].iter().any(|e| matches!(e, Effect::Audit { kind: AuditKind::ModulePauseSent }))
    );
    assert!(effects[2].is_empty(), "a replay changes nothing: {:?}", effects[2]);
    assert_eq!(notices(&effects), [format!("pause_sent@pause-sent:{}", h(0xc1))]);
    let late = incident.step(&Event::ModulePauseSent { tx: h(0xc3) }, T0, &policy());
    assert!(matches!(late, Err(StepError::Unrequested { .. })), "{late:?}");
}

/// A pause sent before a restart that was never mined, and cannot be sent again: the incident
/// falls back to a Safe proposal.
#[test]
fn a_lost_immediate_pause_that_cannot_be_resent_falls_back_to_a_proposal() {
    let opened = open_with(&finding(1, Severity::Critical, pause_now())).incident;
    let (incident, effects) = run(
        opened,
        &[
            Event::ModulePauseSent { tx: h(0xc1) },
            Event::ModulePauseUnavailable { reason: "the module was disabled".into() },
        ],
    );
    assert!(effects[1].contains(&Effect::ProposePause), "{:?}", effects[1]);
    assert_eq!(incident.module_unavailable.as_deref(), Some("the module was disabled"));
}
