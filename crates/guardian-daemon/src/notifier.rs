//! Delivery of incident notifications to every configured channel (Slack, Discord, Telegram,
//! PagerDuty, generic webhooks), from the store's durable outbox.
//!
//! The incident machine asks for a notification with each lifecycle step (opened, pause
//! proposed, each approval, executed, rollback done or failed, withdrawn, resolved,
//! escalations); the store writes it in the transition's transaction. This task delivers them
//! on its own database connection, so a slow or dead webhook never holds up the follower and a
//! crash never loses one:
//! - one incident's notifications arrive in order (a failed one holds back the later ones of
//!   the same incident, not of others);
//! - each carries the incident id and an idempotency key (body and `Idempotency-Key` header),
//!   the same after a crash mid-POST, so a receiver can drop a repeat;
//! - a failed delivery is retried with doubling waits up to a cap, without limit: nothing is
//!   ever dropped. Pending failures show in the log and in `guardian incidents show`.

use std::{path::PathBuf, sync::Arc, time::Duration};

use alloy::{
    primitives::{U256, utils::format_ether},
    transports::http::reqwest,
};
use eyre::{Result, WrapErr, eyre};
use guardian_core::incident::{Effect, Event, NoticeKind, same_cause};
use guardian_store::{OutboxEffect, Store, now_ms};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

/// This replica among its peers, for notifications: every body names the replica that sent
/// it, and a channel in leader mode sends an incident's notifications only from the
/// incident's leader (see [`guardian_core::replication::leader_rank`]); the replica ranked k
/// sends one only when none ranked before it delivered it within k × `timeout`.
#[derive(Debug)]
pub struct Replicas {
    /// This replica's name.
    pub name: String,
    /// Every replica's name, this one's included: what the ranks are taken over.
    names: Vec<String>,
    /// The peers' APIs, asked whether they delivered.
    peers: Vec<guardian_operator::peers::Peer>,
    /// How long each replica ranked before this one is given.
    timeout: Duration,
    /// The peers that did not answer when last asked: not waited for again (a dead leader
    /// delays its incident's first notification only).
    down: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Replicas {
    /// Replica `name` among `peers`, each of them answering until asked.
    pub fn new(name: &str, peers: Vec<guardian_operator::peers::Peer>, timeout: Duration) -> Self {
        let mut names: Vec<String> = peers.iter().map(|p| p.name.clone()).collect();
        names.push(name.to_owned());
        Self { name: name.to_owned(), names, peers, timeout, down: Default::default() }
    }

    /// The peers ranked before this replica for `incident_key`, leader first.
    fn before(&self, incident_key: &str) -> Vec<guardian_operator::peers::Peer> {
        guardian_core::replication::ranked_before(incident_key, &self.name, &self.names)
            .into_iter()
            .filter_map(|name| self.peers.iter().find(|p| p.name == name).cloned())
            .collect()
    }

    fn set_down(&self, peer: &str, down: bool) {
        let mut set = self.down.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if down {
            set.insert(peer.to_owned());
        } else {
            set.remove(peer);
        }
    }

    fn is_down(&self, peer: &str) -> bool {
        self.down.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(peer)
    }
}

/// The header that carries a notification's idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Where and how to deliver.
#[derive(Clone)]
pub struct Webhook {
    /// The URL (from the environment: it usually carries a token). Never logged.
    pub url: reqwest::Url,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// When to retry after a failure.
    pub backoff: Backoff,
}

/// Retry schedule after a failed delivery: `base * 2^(attempts - 1)`, capped at `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait.
    pub base: Duration,
    /// Longest wait between two attempts.
    pub cap: Duration,
}

impl Default for Backoff {
    /// 1, 2, 4, … seconds, at most 5 minutes.
    fn default() -> Self {
        Self { base: Duration::from_secs(1), cap: Duration::from_secs(300) }
    }
}

impl Backoff {
    /// The wait after the `attempts`-th failure (1 for the first).
    pub fn delay(self, attempts: u32) -> Duration {
        let factor = 1u32.checked_shl(attempts.saturating_sub(1).min(20)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &"***")
            .field("timeout", &self.timeout)
            .field("backoff", &self.backoff)
            .finish()
    }
}

/// A delivery error for the log and the outbox, with its causes ("error sending request" alone
/// does not say the connection was refused), and without the webhook URL: `without_url` drops
/// reqwest's own copy, and any cause quoting the URL, its path or its query has them masked.
fn describe(error: reqwest::Error, url: &reqwest::Url) -> String {
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    let secrets = [Some(url.as_str()), Some(url.path()).filter(|p| p.len() > 1), url.query()];
    for secret in secrets.into_iter().flatten().filter(|s| !s.is_empty()) {
        message = message.replace(secret, "***");
    }
    message
}

/// An amount in wei, also in ether when it is large enough to be one (over a gwei).
fn amount(text: &str) -> Value {
    match text.parse::<U256>() {
        Ok(wei) if wei > U256::from(1_000_000_000u64) => {
            json!({ "wei": text, "ether": trim_ether(&format_ether(wei)) })
        }
        _ => Value::String(text.to_owned()),
    }
}

fn trim_ether(text: &str) -> String {
    match text.split_once('.') {
        Some((whole, fraction)) if fraction.trim_end_matches('0').is_empty() => whole.to_owned(),
        Some((whole, fraction)) => format!("{whole}.{}", fraction.trim_end_matches('0')),
        None => text.to_owned(),
    }
}

/// The JSON body of outbox row `row`: a Slack-compatible `text`, then the structured facts
/// (the incident, the event, and what the kind needs: the finding with its evidence, the
/// proposal with the approve command and approvals x/y, the execution, the rollback).
pub fn payload(store: &Store, row: &OutboxEffect) -> Result<Value> {
    let Effect::Notify(notice) = &row.effect else {
        return Err(eyre!("outbox row {} is not a notification", row.id));
    };
    let stored = store.incident(row.incident_id)?.ok_or_else(|| {
        eyre!("notification {} names missing incident #{}", row.key, row.incident_id)
    })?;
    let incident = &stored.incident;
    let event = store.incident_event(row.event_id)?;
    let (detail, block) = event
        .as_ref()
        .map(|e| (e.event.describe(), e.block))
        .unwrap_or_else(|| (String::new(), None));
    let mut body = json!({
        "kind": notice.kind.as_str(),
        "idempotency_key": row.key,
        "incident": {
            "id": stored.id,
            "key": incident.key,
            "contract": incident.contract,
            "address": incident.address,
            "state": incident.state,
            "severity": incident.severity,
        },
        "event": { "detail": detail, "block": block, "at": event.as_ref().map(|e| e.at) },
    });
    let head = format!(
        "[{}] incident #{} on {} ({})",
        incident.severity.as_str().to_uppercase(),
        stored.id,
        incident.contract,
        incident.address
    );
    let mut text = format!("{head}: {} — {detail}", notice.kind.as_str().replace('_', " "));
    match notice.kind {
        NoticeKind::Opened | NoticeKind::SeverityRaised | NoticeKind::Reinstated => {
            let finding = match event.as_ref().map(|e| &e.event) {
                Some(Event::FindingRecorded { finding, .. }) => store.finding(*finding)?,
                _ => store.incident_findings(stored.id)?.into_iter().next(),
            };
            if let Some(f) = finding {
                let ev = &f.finding.evidence;
                let values: serde_json::Map<String, Value> =
                    ev.values.iter().map(|(k, v)| (k.clone(), amount(v))).collect();
                text = format!(
                    "{head}: {} — rule {} — {} (block {}{})",
                    notice.kind.as_str().replace('_', " "),
                    f.finding.rule,
                    f.summary(),
                    ev.block_number,
                    ev.tx_hash.map(|t| format!(", tx {t}")).unwrap_or_default()
                );
                body["finding"] = json!({
                    "id": f.id,
                    "rule": f.finding.rule,
                    "severity": f.finding.severity,
                    "action": f.finding.action,
                    "summary": f.summary(),
                    "block": ev.block_number,
                    "block_hash": ev.block_hash,
                    "tx": ev.tx_hash,
                    "log_index": ev.log_index,
                    "threshold": ev.threshold,
                    "values": values,
                });
            }
            if notice.kind == NoticeKind::Opened && incident.wants_pause() {
                text.push_str("; a pause through the Safe is being proposed");
            }
        }
        // What the event said when it happened, not what the incident says now: a notice
        // delivered late (a receiver that was down) still tells its own step.
        NoticeKind::PauseProposed | NoticeKind::Approval | NoticeKind::ExecutionFailed => {
            let facts = match event.as_ref().map(|e| &e.event) {
                Some(Event::ProposalMade { proposal, nonce, threshold, .. }) => {
                    Some((*proposal, *nonce, 0, *threshold))
                }
                Some(Event::ApprovalCounted { proposal, approvals, threshold, .. }) => {
                    let nonce = incident.proposals.get(proposal).map(|p| p.nonce);
                    Some((*proposal, nonce.unwrap_or_default(), *approvals, *threshold))
                }
                Some(Event::ExecutionFailed { proposal, .. }) => incident
                    .proposals
                    .get(proposal)
                    .map(|p| (*proposal, p.nonce, p.approvals, p.threshold)),
                _ => None,
            };
            if let Some((hash, nonce, approvals, threshold)) = facts {
                let command = format!("guardian approve {hash}");
                body["proposal"] = json!({
                    "safe_tx_hash": hash,
                    "nonce": nonce,
                    "approvals": approvals,
                    "threshold": threshold,
                    "approve_command": command,
                });
                text = match notice.kind {
                    NoticeKind::PauseProposed => format!(
                        "{head}: pause proposed through the Safe at nonce {nonce} — approvals {approvals}/{threshold} — owners approve with: {command}"
                    ),
                    NoticeKind::Approval => format!(
                        "{head}: approval {approvals}/{threshold} for {hash}{}",
                        if approvals >= threshold { " — executing" } else { "" }
                    ),
                    _ => format!("{head}: execution failed — {detail}"),
                };
            }
        }
        NoticeKind::Executed | NoticeKind::AlreadyPaused => {
            if let Some(execution) = &incident.execution {
                body["execution"] = json!({
                    "tx": execution.tx,
                    "block": execution.block,
                    "sender": execution.sender,
                    "by": execution.by.as_str(),
                    "proposal": execution.proposal,
                });
                text = format!(
                    "{head}: pause executed in tx {} (block {}) by {} {}; paused() verified",
                    execution.tx,
                    execution.block,
                    execution.by.as_str(),
                    execution.sender
                );
            }
        }
        NoticeKind::RollbackDone | NoticeKind::RollbackFailed => {
            body["rollback"] = match event.as_ref().map(|e| &e.event) {
                Some(Event::RollbackFinished { undo, summary }) => {
                    json!({ "status": "done", "undo": undo, "summary": summary })
                }
                Some(Event::RollbackFailed { error }) => {
                    json!({ "status": "failed", "error": error })
                }
                _ => serde_json::to_value(&incident.rollback)?,
            };
        }
        NoticeKind::RecoveryVerified | NoticeKind::RecoveryFailed => {
            if let Some(Event::RecoveryChecked { passed, report }) =
                event.as_ref().map(|e| &e.event)
            {
                body["recovery"] = json!({ "passed": passed, "report": report });
            }
        }
        NoticeKind::Escalation => {
            let count = notice
                .key
                .strip_prefix("escalation:")
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(incident.escalations);
            body["escalation"] = json!({ "count": count });
            text = format!(
                "{head}: ESCALATION {count} — not contained past its response deadline (now {})",
                incident.state
            );
            if let Some((hash, link)) = incident.pending_proposal() {
                text.push_str(&format!(
                    "; approvals {}/{}: guardian approve {hash}",
                    link.approvals, link.threshold
                ));
            }
        }
        _ => {}
    }
    body["text"] = Value::String(text);
    Ok(body)
}

/// Deliver due notifications to one generic webhook until `shutdown` flips; `wake` is nudged
/// whenever a transition may have queued one. The channel is named `webhook`, as `[webhook]`.
pub async fn run(
    db: PathBuf,
    webhook: Webhook,
    wake: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    run_channels(db, vec![Channel::webhook("webhook", webhook)], wake, shutdown).await
}

/// Deliver due notifications to every channel until `shutdown` flips, each channel on its own
/// task and database connection: a slow or dead channel never holds up another. `wake` is
/// nudged whenever a transition may have queued a notification.
pub async fn run_channels(
    db: PathBuf,
    channels: Vec<Channel>,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let names: Arc<[String]> = channels.iter().map(|c| c.name.clone()).collect();
    {
        // What only a channel removed from the config still owed is done now.
        let store = Store::open(&db).wrap_err("opening the database for the notifier")?;
        let settled = store.settle_notifications(&names)?;
        if settled > 0 {
            info!(settled, "notifications owed only to channels no longer configured are done");
        }
    }
    let wakes: Vec<Arc<Notify>> = channels.iter().map(|_| Arc::new(Notify::new())).collect();
    let mut tasks = Vec::new();
    for (channel, own_wake) in channels.into_iter().zip(&wakes) {
        let (db, names, own_wake, stop) =
            (db.clone(), names.clone(), own_wake.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            let name = channel.name.clone();
            (name, deliver_channel(db, channel, names, own_wake, stop).await)
        }));
    }
    // One wake-up for the notifier is one for every channel.
    loop {
        tokio::select! {
            _ = wake.notified() => wakes.iter().for_each(|w| w.notify_one()),
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
    }
    for task in tasks {
        match task.await {
            Ok((_, Ok(()))) => {}
            Ok((name, Err(error))) => {
                warn!(channel = %name, error = %format!("{error:#}"), "notification channel stopped")
            }
            Err(error) => return Err(eyre!("a notification channel task failed: {error}")),
        }
    }
    Ok(())
}

/// When nothing is due and no retry is scheduled, look at the database this often anyway:
/// another process (the CLI, writing to the same database) may have queued a notification
/// without a way to wake this one. Off the hot path: the daemon's own transitions wake the
/// channel at once.
const FOREIGN_WRITES_EVERY: Duration = Duration::from_secs(1);

/// One delivery ready to go out: what the database said, rendered for the channel.
struct Outbound {
    effect_id: i64,
    incident_id: i64,
    key: String,
    attempts: u32,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    /// Leader mode, not the leader: the replicas ranked before this one, and how long to give
    /// them first (nothing on a retry: they had their turn).
    defer: Option<(Arc<Replicas>, Vec<guardian_operator::peers::Peer>, Duration)>,
}

/// How one delivery ended: what became of it (`delivered`, or sent by a peer), or the failure,
/// already free of the channel's URL.
type Sent = (Outbound, std::result::Result<String, String>);

/// One channel's delivery loop: up to [`Channel::in_flight`] requests at once, never two of
/// the same incident (so each incident's notifications arrive in order), each answer recorded
/// as it comes and the next due one started at once. The database is used from this task
/// only; the requests run on their own tasks.
async fn deliver_channel(
    db: PathBuf,
    channel: Channel,
    channels: Arc<[String]>,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let mut store = Store::open(&db).wrap_err("opening the database for the notifier")?;
    guardian_rpc::tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(channel.hook.timeout)
        // A redirect would turn the POST into a bodyless GET somewhere else: count it as a
        // failed delivery instead of following it.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .wrap_err("building the notification HTTP client")?;
    let name = channel.name.as_str();
    let limit = channel.in_flight.max(1);
    // Dropped on shutdown, which aborts what is in flight: an interrupted delivery stays due
    // and is sent again (same idempotency key) on the next start.
    let mut in_flight: tokio::task::JoinSet<Sent> = tokio::task::JoinSet::new();
    let mut busy = std::collections::BTreeSet::new();
    let mut last_error: Option<String> = None;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        // A busy or failing database must not end notifications for good: log, wait, retry.
        let mut wait = FOREIGN_WRITES_EVERY;
        if in_flight.len() < limit {
            match start_due(&mut store, &client, &channel, &channels, &mut in_flight, &mut busy) {
                Ok(()) => {
                    if let Ok(Some(at)) = store.next_retry_at(name, now_ms()) {
                        wait = wait.min(Duration::from_millis(at.saturating_sub(now_ms())));
                    }
                }
                Err(error) => {
                    warn!(channel = name, error = %format!("{error:#}"), "notifier could not use the database; retrying")
                }
            }
        }
        tokio::select! {
            Some(sent) = in_flight.join_next(), if !in_flight.is_empty() => {
                // Every answer already in, recorded together: a burst costs one write.
                let mut answers = vec![sent];
                while let Some(more) = in_flight.try_join_next() {
                    answers.push(more);
                }
                let answers: Vec<Sent> = answers.into_iter().flatten().collect(); // aborted or panicked: still due
                for (outbound, _) in &answers {
                    busy.remove(&outbound.incident_id);
                }
                if let Err(error) = record(&store, &channel, &channels, answers, &mut last_error) {
                    warn!(channel = name, error = %format!("{error:#}"), "notifier could not record a delivery; it stays due")
                }
            }
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {}
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

/// Start every due delivery of `channel` whose incident has none in flight, up to the
/// channel's bound. Notifications this channel skips are settled here.
fn start_due(
    store: &mut Store,
    client: &reqwest::Client,
    channel: &Channel,
    channels: &[String],
    in_flight: &mut tokio::task::JoinSet<Sent>,
    busy: &mut std::collections::BTreeSet<i64>,
) -> Result<()> {
    let name = channel.name.as_str();
    let limit = channel.in_flight.max(1);
    // Each busy incident's oldest undone notification is among the due ones: ask for enough
    // to fill the free slots past them.
    for delivery in store.due_deliveries(name, now_ms(), limit + busy.len())? {
        if in_flight.len() >= limit {
            break;
        }
        let row = &delivery.notification;
        if busy.contains(&row.incident_id) {
            continue;
        }
        let Effect::Notify(notice) = &row.effect else {
            store.delivery_done(row.id, name, "dropped: not a notification", channels)?;
            continue;
        };
        let mut body = payload(store, row)?;
        let incident = store.incident(row.incident_id)?.ok_or_else(|| {
            eyre!("notification {} names missing incident #{}", row.key, row.incident_id)
        })?;
        let mut defer = None;
        if let Some(replicas) = &channel.replicas {
            body["replica"] = Value::String(replicas.name.clone());
            if let Some(text) = body["text"].as_str().filter(|_| !replicas.peers.is_empty()) {
                body["text"] = Value::String(format!("{text} [replica {}]", replicas.name));
            }
            if channel.leader {
                let before = replicas.before(&incident.incident.key);
                if !before.is_empty() {
                    // A turn for each replica before this one that still answers.
                    let alive = before.iter().filter(|p| !replicas.is_down(&p.name)).count();
                    let wait = if delivery.attempts == 0 {
                        replicas.timeout.saturating_mul(u32::try_from(alive).unwrap_or(u32::MAX))
                    } else {
                        Duration::ZERO
                    };
                    defer = Some((replicas.clone(), before, wait));
                }
            }
        }
        let (body, headers) = match channels::render(
            channel,
            notice.kind,
            &incident.incident,
            &body,
        ) {
            channels::Outgoing::Send { body, headers } => (body, headers),
            channels::Outgoing::Skip(why) => {
                debug!(channel = name, key = %row.key, %why, "notification not sent to this channel");
                store.delivery_done(row.id, name, &why, channels)?;
                continue;
            }
        };
        busy.insert(row.incident_id);
        let outbound = Outbound {
            effect_id: row.id,
            incident_id: row.incident_id,
            key: row.key.clone(),
            attempts: delivery.attempts,
            body,
            headers,
            defer,
        };
        in_flight.spawn(post(
            client.clone(),
            channel.name.clone(),
            channel.hook.url.clone(),
            outbound,
        ));
    }
    Ok(())
}

/// POST one notification; in leader mode, after the replicas ranked before this one had
/// their turn and none of them delivered it.
async fn post(
    client: reqwest::Client,
    name: String,
    url: reqwest::Url,
    outbound: Outbound,
) -> Sent {
    if let Some((replicas, before, wait)) = &outbound.defer {
        tokio::time::sleep(*wait).await;
        for peer in before {
            match peer.notification(&outbound.key).await {
                Ok(theirs) => {
                    replicas.set_down(&peer.name, false);
                    if theirs.is_some_and(|t| t.delivered_on(&name)) {
                        let outcome = format!("delivered by replica {}", peer.name);
                        return (outbound, Ok(outcome));
                    }
                }
                // A peer that does not answer has not sent it, as far as anyone can tell.
                Err(error) => {
                    replicas.set_down(&peer.name, true);
                    debug!(channel = %name, peer = %peer.name, error = %format!("{error:#}"), "asking the replica whether it notified");
                }
            }
        }
    }
    let mut request = client
        .post(url.clone())
        .header(IDEMPOTENCY_HEADER, &outbound.key)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    for (header, value) in &outbound.headers {
        request = request.header(*header, value);
    }
    let result = match request.body(outbound.body.clone()).send().await {
        Ok(response) if !response.status().is_success() => {
            Err(format!("{name} answered {} (redirects are not followed)", response.status()))
        }
        Ok(_) => Ok("delivered".to_owned()),
        Err(error) => Err(describe(error, &url)),
    };
    (outbound, result)
}

/// Write down how deliveries went: the done ones in one transaction, each failure with its
/// next try.
fn record(
    store: &Store,
    channel: &Channel,
    channels: &[String],
    answers: Vec<Sent>,
    last_error: &mut Option<String>,
) -> Result<()> {
    let name = channel.name.as_str();
    let mut done: Vec<(i64, String)> = Vec::new();
    for (outbound, result) in answers {
        let key = &outbound.key;
        match result {
            Ok(outcome) => {
                *last_error = None;
                info!(channel = name, incident = outbound.incident_id, %key, %outcome, "notification delivered");
                done.push((outbound.effect_id, outcome));
            }
            Err(message) => {
                let attempts = outbound.attempts + 1;
                let delay = channel.hook.backoff.delay(attempts);
                let repeated = last_error.as_deref().is_some_and(|l| same_cause(l, &message));
                if repeated {
                    debug!(channel = name, %key, attempts, error = %message, "{name} delivery failed again");
                } else {
                    warn!(channel = name, %key, attempts, retry_in = ?delay, error = %message, "{name} delivery failed; it is kept and retried until delivered");
                }
                *last_error = Some(message.clone());
                let retry_at =
                    now_ms().saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
                store.delivery_failed(outbound.effect_id, name, &message, retry_at)?;
            }
        }
    }
    if !done.is_empty() {
        let done: Vec<(i64, &str)> = done.iter().map(|(id, o)| (*id, o.as_str())).collect();
        store.deliveries_done(&done, name, channels)?;
    }
    Ok(())
}

pub mod channels;
pub use channels::{Channel, SIGNATURE_HEADER};

#[cfg(test)]
mod tests;
