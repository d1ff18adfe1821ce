//! Deliveries per channel, retention, and the tallies behind the metrics.

use super::*;

fn channels(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// An incident with two notifications (opened, then pause proposed).
fn incident_with_two_notices(store: &mut Store) -> i64 {
    let b1 = block(1, 0);
    let id = store.commit_blocks(&[(b1, vec![finding("drain", b1, 0)])]).expect("c").transitions[0]
        .incident_id;
    store
        .record_proposal(id, &test_proposal(B256::repeat_byte(7)), 2, "replica", "proposed")
        .expect("proposal");
    id
}

fn due(store: &Store, channel: &str) -> Vec<String> {
    store
        .due_deliveries(channel, u64::MAX >> 2, 10)
        .expect("due")
        .into_iter()
        .map(|d| d.notification.key.rsplit('/').next().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn each_channel_delivers_in_order_and_a_failing_one_holds_up_no_other() {
    let mut store = store();
    incident_with_two_notices(&mut store);
    let all = channels(&["slack", "pagerduty"]);
    let slack = store.due_deliveries("slack", u64::MAX >> 2, 10).expect("due");
    assert_eq!(slack.len(), 1, "the second notice waits for the first on the same channel");
    let opened = slack[0].notification.id;
    // PagerDuty fails on the first notice; Slack delivers both meanwhile.
    assert_eq!(due(&store, "pagerduty"), ["opened"]);
    store.delivery_failed(opened, "pagerduty", "503", 0).expect("failed");
    store.delivery_done(opened, "slack", "delivered", &all).expect("done");
    assert!(due(&store, "slack")[0].starts_with("proposed:"), "slack moves on");
    assert_eq!(due(&store, "pagerduty"), ["opened"], "pagerduty retries its first");
    let backlog = store.channel_backlog(&all).expect("backlog");
    assert_eq!(backlog[0].1.pending, 1, "slack owes the proposal notice");
    assert_eq!((backlog[1].1.pending, backlog[1].1.failing), (2, 1), "{backlog:?}");
    assert!(backlog[1].1.failing_since.is_some());
    let row = store.effect(opened).expect("read").expect("row");
    assert!(row.done_at.is_none(), "not done while pagerduty owes it");
    assert_eq!(row.attempts, 1);
    assert_eq!(row.last_error.as_deref(), Some("pagerduty: 503"));
    assert_eq!(store.notification_backlog().expect("backlog").failing, 1);

    store.delivery_done(opened, "pagerduty", "skipped: below critical", &all).expect("done");
    let row = store.effect(opened).expect("read").expect("row");
    assert!(row.done_at.is_some(), "done once every channel is");
    assert_eq!(
        row.outcome.as_deref(),
        Some("pagerduty: skipped: below critical; slack: delivered")
    );
    assert_eq!(store.notification_backlog().expect("backlog").failing, 0);
    assert_eq!(
        store.delivery_failures().expect("failures"),
        [("pagerduty".into(), 1), ("slack".into(), 0)]
    );
    let states = store.deliveries(opened).expect("deliveries");
    assert_eq!(states.iter().map(DeliveryState::status).collect::<Vec<_>>(), ["done", "done"]);
}

#[test]
fn a_channel_added_later_gets_only_what_is_not_done_and_a_removed_one_is_settled() {
    let mut store = store();
    incident_with_two_notices(&mut store);
    let one = channels(&["slack"]);
    let opened = store.due_deliveries("slack", u64::MAX >> 2, 10).expect("due")[0].notification.id;
    store.delivery_done(opened, "slack", "delivered", &one).expect("done");
    // Discord is configured now: it never sees the delivered notice, only the pending one.
    assert_eq!(due(&store, "discord").len(), 1);
    assert!(due(&store, "discord")[0].starts_with("proposed:"));
    // The proposal notice: discord delivers, slack is then removed from the config.
    let proposed =
        store.due_deliveries("discord", u64::MAX >> 2, 10).expect("due")[0].notification.id;
    let both = channels(&["slack", "discord"]);
    store.delivery_done(proposed, "discord", "delivered", &both).expect("done");
    assert!(store.effect(proposed).expect("read").expect("row").done_at.is_none());
    assert_eq!(store.settle_notifications(&channels(&["discord"])).expect("settle"), 1);
    assert!(store.effect(proposed).expect("read").expect("row").done_at.is_some());
    assert_eq!(store.notification_backlog().expect("backlog").pending, 0);
}

#[test]
fn pruning_keeps_open_incidents_and_each_findings_first_occurrence() {
    let mut store = store();
    let blocks: Vec<BlockRef> = (1..=4).map(|n| block(n, 0)).collect();
    for (i, b) in blocks.iter().enumerate() {
        store.commit_blocks(&[(*b, vec![window(*b, 10 + i as u64)])]).expect("commit");
    }
    assert_eq!(store.occurrence_count().expect("count"), 4);
    let later = now_ms() + 1_000;
    assert_eq!(store.prune_occurrences(later).expect("prune"), 0, "the incident is open");
    let id = store.incidents(true).expect("open")[0].id;
    store
        .apply(id, &Event::OperatorCancel { actor: "op".into(), reason: "drill".into() })
        .expect("cancel");
    assert_eq!(store.prune_occurrences(now_ms() - 60_000).expect("prune"), 0, "not old yet");
    assert_eq!(store.prune_occurrences(later).expect("prune"), 3);
    assert_eq!(store.occurrence_count().expect("count"), 1, "the first is kept");
    let finding = &store.findings(None).expect("findings")[0];
    assert_eq!(finding.occurrences, 1);
}

#[test]
fn tallies_count_the_records() {
    let mut store = store();
    incident_with_two_notices(&mut store);
    let b2 = block(2, 0);
    store.commit_blocks(&[(b2, vec![finding("other", b2, 1)])]).expect("commit");
    let tallies = store.tallies(&channels(&["slack"])).expect("tallies");
    assert_eq!(
        tallies.findings,
        [("drain".into(), "critical".into(), 1), ("other".into(), "critical".into(), 1)]
    );
    assert_eq!(tallies.proposals, [("pending".into(), 1)]);
    assert_eq!(tallies.open_incidents.len(), 1);
    assert_eq!(tallies.cursor.map(|c| c.number), Some(2));
    assert_eq!(tallies.pending_notifications, 2);
    assert_eq!(tallies.channels[0].1.pending, 2);
    store.set_meta("executor", "0xabc").expect("meta");
    assert_eq!(store.meta("executor").expect("meta").as_deref(), Some("0xabc"));
    assert!(store.set_meta("chain_id", "1").is_err(), "the store's own keys are refused");
    assert_eq!(store.take_meta("executor").expect("take").as_deref(), Some("0xabc"));
    assert_eq!(store.meta("executor").expect("meta"), None, "taken: gone");
    assert_eq!(store.take_meta("executor").expect("again"), None);
    assert!(store.take_meta("schema_version").is_err(), "the store's own keys are refused");
    assert!(store.meta("schema_version").expect("meta").is_some(), "and kept");
}
