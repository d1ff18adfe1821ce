//! Incidents in the database: each transition of the pure machine
//! ([`guardian_core::incident`]) is written with its event and its effects in one
//! transaction. Effects that touch the world (notifications, proposals, executions,
//! rollbacks) go to the `effects` outbox; the rest (withdrawing a proposal, timers, closing
//! findings) are done in the same transaction.

use alloy_primitives::{Address, B256};
use eyre::{Result, WrapErr, eyre};
use guardian_core::{
    audit::{Actor, Record as AuditRecord},
    finding::Finding,
    incident::{
        AuditKind, Effect, Event, Incident, Millis, ProposalState, ResponsePolicy, State,
        StepError, Timer, Transition, incident_key,
    },
};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::{
    Store, cursor,
    findings::Recorded,
    now_ms,
    proposals::{self, Proposal, Trail},
    to_i64, to_u64,
};

/// An incident as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredIncident {
    /// Row id: the incident number operators use (`guardian incidents show 3`).
    pub id: i64,
    /// The incident.
    #[serde(flatten)]
    pub incident: Incident,
    /// When it last changed (unix ms).
    pub updated_at: Millis,
}

/// One entry of an incident's event stream: a transition that changed something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentEvent {
    /// Row id.
    pub id: i64,
    /// The incident.
    pub incident_id: i64,
    /// Its position in the incident's stream (1, 2, …).
    pub seq: u64,
    /// What happened.
    pub kind: AuditKind,
    /// The event that caused it.
    pub event: Event,
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
    /// The block it happened in or was observed at.
    pub block: Option<u64>,
    /// When (unix ms).
    pub at: Millis,
}

/// What applying one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The incident.
    pub incident_id: i64,
    /// Whether this event opened it.
    pub opened: bool,
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
    /// The audit entry written, if anything changed.
    pub audit: Option<AuditKind>,
    /// The effects asked for (already stored: outbox rows, timers, withdrawals).
    pub effects: Vec<Effect>,
}

impl Applied {
    /// Whether the event changed anything.
    pub fn changed(&self) -> bool {
        self.audit.is_some()
    }
}

/// Why an event was not applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IncidentError {
    /// The machine refused it (see [`StepError`]).
    #[error(transparent)]
    Refused(#[from] StepError),
    /// No incident has this id.
    #[error("no incident #{0}")]
    NotFound(i64),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] eyre::Report),
}

impl From<rusqlite::Error> for IncidentError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Storage(e.into())
    }
}

/// The kinds of outbox rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectKind {
    /// A notification.
    Notify,
    /// Pause at once through the pause module.
    PauseNow,
    /// Propose the pause through the Safe.
    Propose,
    /// Execute a proposal that has its approvals.
    Execute,
    /// Roll the configs back.
    Rollback,
    /// Restart and verify the services after the rollback.
    Recovery,
}

impl EffectKind {
    /// Lower-case name, as stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Notify => "notify",
            Self::PauseNow => "pause_now",
            Self::Propose => "propose",
            Self::Execute => "execute",
            Self::Rollback => "rollback",
            Self::Recovery => "recovery",
        }
    }

    fn of(effect: &Effect) -> Option<Self> {
        match effect {
            Effect::Notify(_) => Some(Self::Notify),
            Effect::PauseNow => Some(Self::PauseNow),
            Effect::ProposePause => Some(Self::Propose),
            Effect::Execute { .. } => Some(Self::Execute),
            Effect::RunRollback { .. } => Some(Self::Rollback),
            Effect::RunRecovery { .. } => Some(Self::Recovery),
            _ => None,
        }
    }
}

/// An outbox row: an effect to carry out, with its delivery state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxEffect {
    /// Row id.
    pub id: i64,
    /// The incident that asked for it.
    pub incident_id: i64,
    /// The event-stream entry that asked for it.
    pub event_id: i64,
    /// Its idempotency key (the same on every replica for a notification).
    pub key: String,
    /// What to do.
    pub effect: Effect,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not before this time (unix ms).
    pub next_try_at: Millis,
    /// The last failure.
    pub last_error: Option<String>,
    /// Since when it has been failing.
    pub failing_since: Option<Millis>,
    /// When it was done.
    pub done_at: Option<Millis>,
    /// What doing it gave (or why it was dropped).
    pub outcome: Option<String>,
}

impl OutboxEffect {
    /// What kind of row it is.
    pub fn kind(&self) -> Option<EffectKind> {
        EffectKind::of(&self.effect)
    }
}

/// Notifications not yet delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
pub struct NotificationBacklog {
    /// How many wait.
    pub pending: u64,
    /// How many of them failed at least once.
    pub failing: u64,
    /// Since when the oldest failing one has been failing (unix ms).
    pub failing_since: Option<Millis>,
}

fn load(tx: &Connection, id: i64) -> Result<Option<Incident>> {
    let body: Option<String> =
        tx.query_row("SELECT body FROM incidents WHERE id = ?1", [id], |r| r.get(0)).optional()?;
    body.map(|b| serde_json::from_str(&b).wrap_err_with(|| format!("stored incident #{id}")))
        .transpose()
}

/// The incident of `address` that is not closed, if any.
fn open_for(tx: &Connection, address: Address) -> Result<Option<i64>> {
    Ok(tx
        .query_row(
            "SELECT id FROM incidents WHERE address = ?1
             AND state NOT IN ('resolved', 'withdrawn', 'cancelled')",
            [address.to_string()],
            |r| r.get(0),
        )
        .optional()?)
}

/// The block an event happened in, for the timeline: the event's own, the finding's, or the
/// cursor's.
fn event_block(tx: &Connection, event: &Event) -> Result<Option<u64>> {
    let own = match event {
        Event::ExecutionSeen { block, .. }
        | Event::PauseVerified { block }
        | Event::AlreadyPaused { block }
        | Event::Unpaused { block, .. } => Some(*block),
        Event::FindingRecorded { finding, .. } => tx
            .query_row("SELECT block_number FROM findings WHERE id = ?1", [finding], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .map(to_u64)
            .transpose()?,
        _ => None,
    };
    Ok(match own {
        Some(block) => Some(block),
        None => cursor(tx)?.map(|c| c.number),
    })
}

#[expect(
    clippy::too_many_arguments,
    reason = "one transition's parts, written together in one place"
)]
fn persist(
    tx: &Connection,
    ctx: &Ctx,
    id: i64,
    before: &Incident,
    event: &Event,
    transition: Transition,
    opened: bool,
    now: Millis,
) -> Result<Applied> {
    let after = &transition.incident;
    let applied = Applied {
        incident_id: id,
        opened,
        from: before.state,
        to: after.state,
        audit: transition.audit(),
        effects: transition.effects.clone(),
    };
    let Some(kind) = applied.audit else { return Ok(applied) };
    let seq: i64 = tx.query_row(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM incident_events WHERE incident_id = ?1",
        [id],
        |r| r.get(0),
    )?;
    let block = event_block(tx, event)?;
    tx.execute(
        "INSERT INTO incident_events (incident_id, seq, kind, event, from_state, to_state, block, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            id,
            seq,
            kind.as_str(),
            serde_json::to_string(event)?,
            before.state.as_str(),
            after.state.as_str(),
            block.map(to_i64).transpose()?,
            to_i64(now)?,
        ],
    )?;
    let event_id = tx.last_insert_rowid();
    // The same event, in the hash-chained audit log, in the same transaction.
    crate::audit::append(
        tx,
        &ctx.actor,
        AuditRecord::Incident {
            incident: id,
            step: to_u64(seq)?,
            kind,
            event: event.clone(),
            from: before.state,
            to: after.state,
            block,
        },
        now,
    )?;
    tx.execute(
        "UPDATE incidents SET state = ?2, severity = ?3, updated_at = ?4, body = ?5 WHERE id = ?1",
        params![
            id,
            after.state.as_str(),
            after.severity.as_str(),
            to_i64(now)?,
            serde_json::to_string(after)?
        ],
    )?;
    for effect in &transition.effects {
        if let Some(kind) = EffectKind::of(effect) {
            let key = match effect {
                Effect::Notify(notice) => match &ctx.replica {
                    Some(replica) if notice.kind.is_local() => {
                        format!("{}/{}@{replica}", after.key, notice.key)
                    }
                    _ => format!("{}/{}", after.key, notice.key),
                },
                Effect::Execute { proposal } => format!("{}/execute/{proposal}", after.key),
                other => format!("{}/{}/{seq}", after.key, effect_name(other)),
            };
            tx.execute(
                "INSERT INTO effects (incident_id, event_id, kind, key, body)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (key) DO NOTHING",
                params![id, event_id, kind.as_str(), key, serde_json::to_string(effect)?],
            )?;
            continue;
        }
        match effect {
            Effect::Withdraw { proposal, reason } => {
                tx.execute(
                    "UPDATE proposals SET status = 'withdrawn', withdrawn_reason = ?2,
                     updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                     WHERE safe_tx_hash = ?1 AND status = 'pending'",
                    params![proposal.to_string(), reason],
                )?;
                proposals::audit(tx, &ctx.actor, *proposal, Trail::Withdrawn { reason })?;
                // An execution asked for earlier must not be sent now.
                tx.execute(
                    "UPDATE effects SET done_at = ?2, outcome = 'dropped: proposal withdrawn'
                     WHERE kind = 'execute' AND done_at IS NULL AND key = ?1",
                    params![format!("{}/execute/{proposal}", after.key), to_i64(now)?],
                )?;
            }
            Effect::ScheduleTimer { timer, at } => {
                tx.execute(
                    "INSERT INTO timers (incident_id, timer, at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (incident_id, timer) DO UPDATE SET at = excluded.at",
                    params![id, timer.as_str(), to_i64(*at)?],
                )?;
            }
            Effect::CancelTimer { timer } => {
                tx.execute(
                    "DELETE FROM timers WHERE incident_id = ?1 AND timer = ?2",
                    params![id, timer.as_str()],
                )?;
            }
            _ => {}
        }
    }
    // The proposals table mirrors the machine's view of its proposals.
    for (hash, link) in &after.proposals {
        let was = before.proposals.get(hash).map(|p| p.state);
        if was == Some(link.state) || link.state == ProposalState::Withdrawn {
            continue; // withdrawals were written above, with their reason
        }
        tx.execute(
            "UPDATE proposals SET status = ?2, incident_id = ?3,
             withdrawn_reason = CASE WHEN ?2 = 'pending' THEN NULL ELSE withdrawn_reason END,
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
             WHERE safe_tx_hash = ?1 AND status != 'executed'",
            params![hash.to_string(), link.state.as_str(), id],
        )?;
    }
    if !before.state.is_contained() && after.state.is_contained() {
        // Paused and verified: the anomalies are answered. Their findings close; a condition
        // still holding keeps feeding them (see `record_finding`), anything new attaches to
        // this incident until it is closed.
        tx.execute(
            "UPDATE findings SET status = 'resolved',
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
             WHERE incident_id = ?1 AND status = 'open'",
            [id],
        )?;
    }
    if !before.state.is_closed() && after.state.is_closed() {
        tx.execute(
            "UPDATE findings SET status = 'resolved',
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
             WHERE incident_id = ?1 AND status = 'open'",
            [id],
        )?;
    } else if before.state.is_closed() && after.state == State::Open {
        // Reopened before any pause: its findings take new occurrences again, unless the rule
        // opened another finding meanwhile.
        tx.execute(
            "UPDATE OR IGNORE findings SET status = 'open',
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
             WHERE incident_id = ?1 AND status = 'resolved'",
            [id],
        )?;
    }
    Ok(applied)
}

fn effect_name(effect: &Effect) -> &'static str {
    match effect {
        Effect::Audit { .. } => "audit",
        Effect::Notify(_) => "notify",
        Effect::ProposePause => "propose",
        Effect::PauseNow => "pause_now",
        Effect::Execute { .. } => "execute",
        Effect::Withdraw { .. } => "withdraw",
        Effect::RunRollback { .. } => "rollback",
        Effect::RunRecovery { .. } => "recovery",
        Effect::ScheduleTimer { .. } => "schedule",
        Effect::CancelTimer { .. } => "cancel",
    }
}

/// What a transition needs besides the transaction: the response policy and who is acting.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) policy: ResponsePolicy,
    pub(crate) actor: Actor,
    /// This replica's name, in the keys of its local notifications.
    pub(crate) replica: Option<String>,
}

impl Store {
    pub(crate) fn ctx(&self) -> Ctx {
        Ctx {
            policy: self.policy,
            actor: self.actor.clone(),
            replica: self.replication.as_ref().map(|r| r.name.clone()),
        }
    }
}

/// Apply `event` to incident `id` in the caller's transaction.
fn apply_in(
    tx: &Connection,
    ctx: &Ctx,
    id: i64,
    event: &Event,
    now: Millis,
) -> Result<Applied, IncidentError> {
    let before = load(tx, id)?.ok_or(IncidentError::NotFound(id))?;
    let transition = before.step(event, now, &ctx.policy)?;
    Ok(persist(tx, ctx, id, &before, event, transition, false, now)?)
}

/// Open a new incident with `event` in the caller's transaction.
fn open_in(
    tx: &Connection,
    ctx: &Ctx,
    key: String,
    contract: &str,
    address: Address,
    event: &Event,
    now: Millis,
) -> Result<Applied, IncidentError> {
    // Keys come from chain facts; a second incident from the same facts (reopened by an
    // operator, then a new one) gets a suffix.
    let mut unique = key.clone();
    let mut n = 1;
    while tx
        .query_row("SELECT 1 FROM incidents WHERE key = ?1", [&unique], |_| Ok(()))
        .optional()?
        .is_some()
    {
        n += 1;
        unique = format!("{key}-{n}");
    }
    let transition =
        Incident::open(unique.clone(), contract.to_owned(), address, event, now, &ctx.policy)?;
    let opened = &transition.incident;
    tx.execute(
        "INSERT INTO incidents (key, contract, address, state, severity, opened_at, updated_at, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
        params![
            unique,
            contract,
            address.to_string(),
            opened.state.as_str(),
            opened.severity.as_str(),
            to_i64(now)?,
            serde_json::to_string(opened).map_err(eyre::Report::from)?,
        ],
    )?;
    let id = tx.last_insert_rowid();
    // The row holds the opened incident already; persist writes its event and effects against
    // a blank "before" in the open state.
    let mut before = transition.incident.clone();
    before.findings.clear();
    Ok(persist(tx, ctx, id, &before, event, transition, true, now)?)
}

/// Give a new (or re-included) finding to its contract's incident, opening one if none is
/// open.
fn attach_finding(
    tx: &Connection,
    ctx: &Ctx,
    chain_id: u64,
    finding_id: i64,
    finding: &Finding,
    now: Millis,
) -> Result<Applied> {
    let event = Event::FindingRecorded {
        finding: finding_id,
        rule: finding.rule.clone(),
        severity: finding.severity,
        action: finding.action,
    };
    let applied = match open_for(tx, finding.address)? {
        Some(id) => match apply_in(tx, ctx, id, &event, now) {
            Ok(applied) => Some(applied),
            Err(IncidentError::Refused(StepError::Closed { .. })) => None,
            Err(e) => return Err(eyre!(e)),
        },
        None => None,
    };
    let applied = match applied {
        Some(applied) => applied,
        None => {
            let key =
                incident_key(chain_id, finding.address, &finding.rule, &finding.anomaly_key());
            open_in(tx, ctx, key, &finding.contract, finding.address, &event, now)
                .map_err(|e| eyre!(e))?
        }
    };
    tx.execute(
        "UPDATE findings SET incident_id = ?2 WHERE id = ?1",
        params![finding_id, applied.incident_id],
    )?;
    audit_finding(tx, ctx, finding_id, finding, Some(applied.incident_id), now)?;
    Ok(applied)
}

/// Audit `finding` (stored as `id`) as recorded.
fn audit_finding(
    tx: &Connection,
    ctx: &Ctx,
    id: i64,
    finding: &Finding,
    incident: Option<i64>,
    now: Millis,
) -> Result<()> {
    let ev = &finding.evidence;
    let record = AuditRecord::FindingRecorded {
        finding: id,
        incident,
        rule: finding.rule.clone(),
        contract: finding.contract.clone(),
        address: finding.address,
        severity: finding.severity,
        block: ev.block_number,
        block_hash: ev.block_hash,
        tx: ev.tx_hash,
        predicted_from: ev.predicted_from,
        summary: finding.summary.clone(),
    };
    crate::audit::append(tx, &ctx.actor, record, now)?;
    Ok(())
}

/// The incident transitions a commit's findings cause, in the commit's transaction.
pub(crate) fn feed_findings(
    tx: &Connection,
    ctx: &Ctx,
    chain_id: u64,
    recorded: &[(Recorded, &Finding)],
    retracted: &[i64],
    now: Millis,
) -> Result<Vec<Applied>> {
    let mut out = Vec::new();
    for (outcome, finding) in recorded {
        match *outcome {
            Recorded::New(id) => out.push(attach_finding(tx, ctx, chain_id, id, finding, now)?),
            Recorded::Reinstated(id) => {
                let incident: Option<i64> =
                    tx.query_row("SELECT incident_id FROM findings WHERE id = ?1", [id], |r| {
                        r.get(0)
                    })?;
                let other_open = open_for(tx, finding.address)?;
                let event = Event::FindingRecorded {
                    finding: id,
                    rule: finding.rule.clone(),
                    severity: finding.severity,
                    action: finding.action,
                };
                match incident {
                    // Its own incident takes it back (reopening it if it was withdrawn), unless
                    // another incident of the contract opened meanwhile.
                    Some(incident) if other_open.is_none() || other_open == Some(incident) => {
                        match apply_in(tx, ctx, incident, &event, now) {
                            Ok(applied) => {
                                audit_finding(tx, ctx, id, finding, Some(incident), now)?;
                                out.push(applied)
                            }
                            Err(IncidentError::Refused(StepError::Closed { .. })) => {
                                out.push(attach_finding(tx, ctx, chain_id, id, finding, now)?)
                            }
                            Err(e) => return Err(eyre!(e)),
                        }
                    }
                    _ => out.push(attach_finding(tx, ctx, chain_id, id, finding, now)?),
                }
            }
            Recorded::Occurrence(_) | Recorded::Duplicate(_) => {}
        }
    }
    for id in retracted {
        let incident: Option<i64> =
            tx.query_row("SELECT incident_id FROM findings WHERE id = ?1", [id], |r| r.get(0))?;
        crate::audit::append(
            tx,
            &ctx.actor,
            AuditRecord::FindingRetracted { finding: *id, incident },
            now,
        )?;
        if let Some(incident) = incident {
            match apply_in(tx, ctx, incident, &Event::FindingRetracted { finding: *id }, now) {
                Ok(applied) => out.push(applied),
                Err(IncidentError::Refused(e)) => {
                    tracing::warn!(finding = id, incident, error = %e, "retraction not applied");
                }
                Err(e) => return Err(eyre!(e)),
            }
        }
    }
    Ok(out)
}

const EFFECT_SELECT: &str = "SELECT id, incident_id, event_id, key, body, attempts, next_try_at,
    last_error, failing_since, done_at, outcome FROM effects";

fn effect_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<OutboxEffect>> {
    let body: String = r.get(4)?;
    let ms = |v: Option<i64>| v.map(|v| u64::try_from(v).unwrap_or_default());
    let row = (
        r.get::<_, i64>(0)?,
        r.get::<_, i64>(1)?,
        r.get::<_, i64>(2)?,
        r.get::<_, String>(3)?,
        r.get::<_, i64>(5)?,
        r.get::<_, i64>(6)?,
        r.get::<_, Option<String>>(7)?,
        ms(r.get(8)?),
        ms(r.get(9)?),
        r.get::<_, Option<String>>(10)?,
    );
    Ok((|| {
        let (
            id,
            incident_id,
            event_id,
            key,
            attempts,
            next_try_at,
            last_error,
            failing_since,
            done_at,
            outcome,
        ) = row;
        Ok(OutboxEffect {
            id,
            incident_id,
            event_id,
            key,
            effect: serde_json::from_str(&body).wrap_err("stored effect")?,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            next_try_at: to_u64(next_try_at)?,
            last_error,
            failing_since,
            done_at,
            outcome,
        })
    })())
}

const INCIDENT_SELECT: &str = "SELECT id, body, updated_at FROM incidents";

fn incident_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<StoredIncident>> {
    let (id, body, updated_at) = (r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?);
    Ok((|| {
        Ok(StoredIncident {
            id,
            incident: serde_json::from_str(&body)
                .wrap_err_with(|| format!("stored incident #{id}"))?,
            updated_at: to_u64(updated_at)?,
        })
    })())
}

impl Store {
    /// Apply `event` to incident `id` now: step the machine and write the transition, its
    /// event and its effects in one transaction. Nothing is written when nothing changed.
    pub fn apply(&mut self, id: i64, event: &Event) -> Result<Applied, IncidentError> {
        self.apply_at(id, event, now_ms())
    }

    /// [`Store::apply`] at a given time.
    pub fn apply_at(
        &mut self,
        id: i64,
        event: &Event,
        now: Millis,
    ) -> Result<Applied, IncidentError> {
        let ctx = self.ctx();
        let tx = self.conn.transaction()?;
        let applied = apply_in(&tx, &ctx, id, event, now)?;
        if applied.changed() {
            tx.commit()?;
            self.mirror_audit();
        }
        Ok(applied)
    }

    /// An operator's request to pause `contract`: applied to its open incident, or opening
    /// one.
    pub fn request_pause(
        &mut self,
        contract: &str,
        address: Address,
        actor: &str,
        reason: &str,
        rollback: bool,
    ) -> Result<Applied, IncidentError> {
        self.request_pause_keyed(contract, address, actor, reason, rollback, None)
    }

    /// [`Store::request_pause`], opening the incident (when none is open) under `key`: the
    /// key of the incident a peer replica relayed the pause from, so both name it alike.
    pub fn request_pause_keyed(
        &mut self,
        contract: &str,
        address: Address,
        actor: &str,
        reason: &str,
        rollback: bool,
        key: Option<&str>,
    ) -> Result<Applied, IncidentError> {
        let (ctx, chain_id, now) = (self.ctx(), self.chain_id, now_ms());
        let event =
            Event::PauseRequested { actor: actor.to_owned(), reason: reason.to_owned(), rollback };
        let tx = self.conn.transaction()?;
        let applied = match open_for(&tx, address)? {
            Some(id) => apply_in(&tx, &ctx, id, &event, now)?,
            None => {
                // A key already taken (by an incident closed here) is not reused.
                let taken = |key: &str| -> rusqlite::Result<bool> {
                    tx.query_row(
                        "SELECT EXISTS (SELECT 1 FROM incidents WHERE key = ?1)",
                        [key],
                        |r| r.get(0),
                    )
                };
                let key = match key {
                    Some(key) if !taken(key)? => key.to_owned(),
                    _ => incident_key(chain_id, address, "operator", &format!("pause:{now}")),
                };
                open_in(&tx, &ctx, key, contract, address, &event, now)?
            }
        };
        tx.commit()?;
        self.mirror_audit();
        Ok(applied)
    }

    /// Store a new pause proposal of incident `incident_id` (or revive the same hash, withdrawn
    /// before) and tell the incident, in one transaction. `threshold` is the Safe's.
    pub fn record_proposal(
        &mut self,
        incident_id: i64,
        proposal: &Proposal,
        threshold: u64,
        actor: &str,
        detail: &str,
    ) -> Result<Applied, IncidentError> {
        let (ctx, now) = (self.ctx(), now_ms());
        let tx = self.conn.transaction()?;
        let mut row = proposal.clone();
        row.incident_id = Some(incident_id);
        if proposals::insert_row(&tx, &row)? {
            crate::relays::enqueue(
                &tx,
                self.replication.as_ref(),
                crate::RelayItem::Proposal,
                row.safe_tx_hash,
            )?;
            proposals::audit(&tx, &ctx.actor, row.safe_tx_hash, Trail::Proposed { actor, detail })?;
        } else {
            let revived = tx.execute(
                "UPDATE proposals SET status = 'pending', withdrawn_reason = NULL, incident_id = ?2,
                 updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                 WHERE safe_tx_hash = ?1 AND status = 'withdrawn'",
                params![row.safe_tx_hash.to_string(), incident_id],
            )?;
            if revived == 1 {
                proposals::audit(
                    &tx,
                    &ctx.actor,
                    row.safe_tx_hash,
                    Trail::Reinstated { actor, detail },
                )?;
            }
            // A pending proposal made before the incident (by an older guardian, or adopted
            // from another incident's race) now answers this one.
            tx.execute(
                "UPDATE proposals SET incident_id = ?2 WHERE safe_tx_hash = ?1 AND incident_id IS NULL",
                params![row.safe_tx_hash.to_string(), incident_id],
            )?;
        }
        if let Some(old) = row.replaces {
            tx.execute(
                "UPDATE proposals SET replaced_by = ?2 WHERE safe_tx_hash = ?1",
                params![old.to_string(), row.safe_tx_hash.to_string()],
            )?;
        }
        let event = Event::ProposalMade {
            proposal: row.safe_tx_hash,
            nonce: row.nonce,
            threshold,
            replaces: row.replaces,
        };
        let applied = apply_in(&tx, &ctx, incident_id, &event, now)?;
        tx.commit()?;
        self.mirror_audit();
        Ok(applied)
    }

    /// Record that `proposal` was executed in `executed_tx` by `by` (an address, or "this
    /// replica …"), with `event` (an [`Event::ExecutionSeen`]) for its incident, in one
    /// transaction.
    pub fn record_execution(
        &mut self,
        proposal: B256,
        executed_tx: B256,
        sender: Address,
        by: &str,
        detail: &str,
        event: Option<(i64, &Event)>,
    ) -> Result<Option<Applied>, IncidentError> {
        let (ctx, now) = (self.ctx(), now_ms());
        let tx = self.conn.transaction()?;
        let changed = tx.execute(
            "UPDATE proposals SET status = 'executed', executed_tx = ?2, executed_by = ?3,
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
             WHERE safe_tx_hash = ?1 AND status != 'executed'",
            params![proposal.to_string(), executed_tx.to_string(), by],
        )?;
        if changed == 1 {
            let step = Trail::Executed { tx: executed_tx, sender, by, detail };
            proposals::audit(&tx, &ctx.actor, proposal, step)?;
        }
        let applied = match event {
            Some((id, event)) => Some(apply_in(&tx, &ctx, id, event, now)?),
            None => None,
        };
        tx.commit()?;
        self.mirror_audit();
        Ok(applied)
    }

    /// One incident.
    pub fn incident(&self, id: i64) -> Result<Option<StoredIncident>> {
        self.conn
            .query_row(&format!("{INCIDENT_SELECT} WHERE id = ?1"), [id], incident_row)
            .optional()?
            .transpose()
    }

    /// Incidents, newest first; only those not closed with `open_only`.
    pub fn incidents(&self, open_only: bool) -> Result<Vec<StoredIncident>> {
        let mut stmt = self.conn.prepare(&format!(
            "{INCIDENT_SELECT} WHERE (?1 = 0 OR state NOT IN ('resolved', 'withdrawn', 'cancelled'))
             ORDER BY id DESC"
        ))?;
        let rows = stmt.query_map([open_only], incident_row)?;
        rows.map(|r| r?).collect()
    }

    /// The incident of `address` that is not closed.
    pub fn open_incident(&self, address: Address) -> Result<Option<StoredIncident>> {
        match open_for(&self.conn, address)? {
            Some(id) => self.incident(id),
            None => Ok(None),
        }
    }

    /// An incident's event stream, oldest first.
    pub fn incident_events(&self, id: i64) -> Result<Vec<IncidentEvent>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, incident_id, seq, kind, event, from_state, to_state, block, at
             FROM incident_events WHERE incident_id = ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map([id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, Option<i64>>(7)?,
                r.get::<_, i64>(8)?,
            ))
        })?;
        rows.map(|row| {
            let (id, incident_id, seq, kind, event, from, to, block, at) = row?;
            let state = |s: &str| State::parse(s).ok_or_else(|| eyre!("stored state {s:?}"));
            Ok(IncidentEvent {
                id,
                incident_id,
                seq: to_u64(seq)?,
                kind: serde_json::from_value(serde_json::Value::String(kind))
                    .wrap_err("stored audit kind")?,
                event: serde_json::from_str(&event).wrap_err("stored event")?,
                from: state(&from)?,
                to: state(&to)?,
                block: block.map(to_u64).transpose()?,
                at: to_u64(at)?,
            })
        })
        .collect()
    }

    /// One event-stream entry by row id.
    pub fn incident_event(&self, id: i64) -> Result<Option<IncidentEvent>> {
        let incident: Option<i64> = self
            .conn
            .query_row("SELECT incident_id FROM incident_events WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        let Some(incident) = incident else { return Ok(None) };
        Ok(self.incident_events(incident)?.into_iter().find(|e| e.id == id))
    }

    /// The proposals of incident `id`, oldest first.
    pub fn incident_proposals(&self, id: i64) -> Result<Vec<Proposal>> {
        let mut stmt = self
            .conn
            .prepare(&format!("{} WHERE incident_id = ?1 ORDER BY rowid", proposals::SELECT))?;
        let rows = stmt.query_map([id], proposals::row)?;
        rows.map(|r| r?).collect()
    }

    /// Timers due at `now`: (incident, timer, scheduled time).
    pub fn due_timers(&self, now: Millis) -> Result<Vec<(i64, Timer, Millis)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT incident_id, timer, at FROM timers WHERE at <= ?1 ORDER BY at")?;
        let rows = stmt.query_map([to_i64(now)?], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
        })?;
        rows.map(|row| {
            let (id, timer, at) = row?;
            let timer = match timer.as_str() {
                "escalation" => Timer::Escalation,
                other => return Err(eyre!("unknown timer {other:?} in the database")),
            };
            Ok((id, timer, to_u64(at)?))
        })
        .collect()
    }

    /// When the next timer is due.
    pub fn next_timer(&self) -> Result<Option<Millis>> {
        let at: Option<i64> =
            self.conn.query_row("SELECT MIN(at) FROM timers", [], |r| r.get(0))?;
        at.map(to_u64).transpose()
    }

    /// Fire a due timer: remove it and apply [`Event::TimerFired`], in one transaction.
    pub fn fire_timer(
        &mut self,
        id: i64,
        timer: Timer,
        at: Millis,
        now: Millis,
    ) -> Result<Applied, IncidentError> {
        let ctx = self.ctx();
        let tx = self.conn.transaction()?;
        tx.execute(
            "DELETE FROM timers WHERE incident_id = ?1 AND timer = ?2 AND at = ?3",
            params![id, timer.as_str(), to_i64(at)?],
        )?;
        let applied = apply_in(&tx, &ctx, id, &Event::TimerFired { timer, at }, now)?;
        tx.commit()?;
        self.mirror_audit();
        Ok(applied)
    }

    /// Outbox rows of `kind` due at `now`, oldest first. For notifications, only the oldest
    /// undelivered one of each incident: they reach a receiver in order.
    pub fn due_effects(
        &self,
        kind: EffectKind,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<OutboxEffect>> {
        let ordered = kind == EffectKind::Notify;
        let mut stmt = self.conn.prepare(&format!(
            "{EFFECT_SELECT} e WHERE kind = ?1 AND done_at IS NULL AND next_try_at <= ?2
             AND (?3 = 0 OR NOT EXISTS (SELECT 1 FROM effects p WHERE p.incident_id = e.incident_id
                  AND p.kind = e.kind AND p.done_at IS NULL AND p.id < e.id))
             ORDER BY id LIMIT ?4"
        ))?;
        let rows = stmt.query_map(
            params![kind.as_str(), to_i64(now)?, ordered, to_i64(limit as u64)?],
            effect_row,
        )?;
        rows.map(|r| r?).collect()
    }

    /// When the next outbox row of `kind` is due (`None`: nothing waits).
    /// For notifications only the oldest undelivered one of each incident counts: the later
    /// ones wait for it.
    pub fn next_effect_at(&self, kind: EffectKind) -> Result<Option<Millis>> {
        let at: Option<i64> = self.conn.query_row(
            "SELECT MIN(next_try_at) FROM effects e WHERE kind = ?1 AND done_at IS NULL
             AND (?2 = 0 OR NOT EXISTS (SELECT 1 FROM effects p WHERE p.incident_id = e.incident_id
                  AND p.kind = e.kind AND p.done_at IS NULL AND p.id < e.id))",
            params![kind.as_str(), kind == EffectKind::Notify],
            |r| r.get(0),
        )?;
        at.map(to_u64).transpose()
    }

    /// One outbox row.
    pub fn effect(&self, id: i64) -> Result<Option<OutboxEffect>> {
        self.conn
            .query_row(&format!("{EFFECT_SELECT} WHERE id = ?1"), [id], effect_row)
            .optional()?
            .transpose()
    }

    /// The outbox rows of incident `id`, oldest first.
    pub fn incident_effects(&self, id: i64) -> Result<Vec<OutboxEffect>> {
        let mut stmt =
            self.conn.prepare(&format!("{EFFECT_SELECT} WHERE incident_id = ?1 ORDER BY id"))?;
        let rows = stmt.query_map([id], effect_row)?;
        rows.map(|r| r?).collect()
    }

    /// Mark an outbox row done, with what doing it gave.
    pub fn effect_done(&self, id: i64, outcome: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE effects SET done_at = ?2, outcome = ?3 WHERE id = ?1 AND done_at IS NULL",
            params![id, to_i64(now_ms())?, outcome],
        )?;
        Ok(())
    }

    /// Record a failed attempt and when to try again. Nothing is ever given up on.
    pub fn effect_failed(&self, id: i64, error: &str, retry_at: Millis) -> Result<()> {
        self.conn.execute(
            "UPDATE effects SET attempts = attempts + 1, last_error = ?2, next_try_at = ?3,
             failing_since = COALESCE(failing_since, ?4) WHERE id = ?1",
            params![id, error, to_i64(retry_at)?, to_i64(now_ms())?],
        )?;
        Ok(())
    }

    /// Hold outbox row `id` until `at` without counting a failure (a replica of rank k waits
    /// its turn to send), noting why.
    pub fn effect_wait(&self, id: i64, note: &str, at: Millis) -> Result<()> {
        self.conn.execute(
            "UPDATE effects SET next_try_at = ?3, last_error = ?2 WHERE id = ?1 AND done_at IS NULL",
            params![id, note, to_i64(at)?],
        )?;
        Ok(())
    }

    /// The outbox row with idempotency key `key`, if any.
    pub fn effect_by_key(&self, key: &str) -> Result<Option<OutboxEffect>> {
        let id: Option<i64> = self
            .conn
            .query_row("SELECT id FROM effects WHERE key = ?1", [key], |r| r.get(0))
            .optional()?;
        match id {
            Some(id) => self.effect(id),
            None => Ok(None),
        }
    }

    /// Notifications not delivered yet. One fails while a channel's delivery of it is failing
    /// (see [`Store::channel_backlog`] for each channel's own).
    pub fn notification_backlog(&self) -> Result<NotificationBacklog> {
        // Per notification, since when it fails: its undone channels' failures, or (written
        // before deliveries per channel) its own.
        let (pending, failing, since): (i64, i64, Option<i64>) = self.conn.query_row(
            "SELECT COUNT(*), COUNT(since), MIN(since) FROM (
               SELECT CASE WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.effect_id = e.id)
                      THEN (SELECT MIN(d.failing_since) FROM deliveries d
                            WHERE d.effect_id = e.id AND d.done_at IS NULL)
                      ELSE e.failing_since END AS since
               FROM effects e WHERE kind = 'notify' AND done_at IS NULL)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok(NotificationBacklog {
            pending: to_u64(pending)?,
            failing: to_u64(failing)?,
            failing_since: since.map(to_u64).transpose()?,
        })
    }

    /// Give every open finding without an incident one (a database migrated from before
    /// incidents). `announced` lists (finding, delivered) from the old outbox: a finding
    /// already announced is not announced again. Returns how many incidents were opened.
    pub(crate) fn adopt_unlinked_findings(&mut self, announced: &[(i64, bool)]) -> Result<usize> {
        let (ctx, chain_id, now) = (self.ctx(), self.chain_id, now_ms());
        let tx = self.conn.transaction()?;
        let mut stmt = tx.prepare(&format!(
            "{} WHERE f.status = 'open' AND f.incident_id IS NULL ORDER BY f.id",
            crate::findings::FINDING_SELECT
        ))?;
        let unlinked: Vec<_> = stmt
            .query_map([], crate::findings::finding_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        drop(stmt);
        let mut opened = 0;
        for stored in unlinked {
            let applied = attach_finding(&tx, &ctx, chain_id, stored.id, &stored.finding, now)?;
            if applied.opened {
                opened += 1;
                if announced.iter().any(|(id, delivered)| *id == stored.id && *delivered) {
                    tx.execute(
                        "UPDATE effects SET done_at = ?2, outcome = 'delivered before the migration'
                         WHERE incident_id = ?1 AND kind = 'notify' AND key LIKE '%/opened'",
                        params![applied.incident_id, to_i64(now)?],
                    )?;
                }
            }
        }
        tx.commit()?;
        self.mirror_audit();
        Ok(opened)
    }
}
