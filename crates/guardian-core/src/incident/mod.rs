//! The incident lifecycle: one pure state machine from the first finding to resolution.
//!
//! An [`Incident`] is what guardian does about one watched contract: it is opened by the
//! contract's first finding (or an operator's pause), every later finding on that contract
//! attaches to it, and it moves through explicit [`State`]s as the pause is proposed, approved,
//! executed and verified, and the configs are rolled back:
//!
//! ```text
//! open ──proposal made──► responding ──pause verified──► contained ──rollback started──► recovering
//!  │  └──────────── pause verified (already paused, or paused by someone else) ──►│          │
//!  │                        │                                 │                     rollback done
//!  │ every finding retracted│ (before containment)            │                          ▼
//!  ▼                        ▼                                 └──operator resolve──► resolved ◄── recovered
//! withdrawn             withdrawn                                                 (or unpaused)
//! any state before resolved ──operator cancel──► cancelled;  resolved/cancelled/withdrawn ──reopen──► open/contained
//! ```
//!
//! [`Incident::step`] takes an [`Event`] and the current time (the machine has no clock, no
//! I/O and no async) and returns a [`Transition`]: the next incident and the [`Effect`]s to
//! carry out. Every transition that changes anything carries exactly one [`Effect::Audit`]
//! naming what happened; the notification and the metric are derived from that same entry.
//! A transition that changes nothing returns no effects, so the caller writes nothing and logs
//! nothing. Replaying an event already applied is such a transition: the machine is
//! idempotent. An event that cannot happen in a state is a [`StepError`], never a panic.

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, U256, keccak256};
use serde::{Deserialize, Serialize};

use crate::severity::{Action, Severity};

#[cfg(test)]
mod tests;

/// A finding's row id in the guardian database.
pub type FindingId = i64;

/// Unix time in milliseconds, always passed in by the caller.
pub type Millis = u64;

/// Where an incident stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Findings recorded; a pause is being asked for if the policy says so.
    Open,
    /// A pause proposal stands in the Safe (approvals being collected, or the execution sent).
    Responding,
    /// The target is paused and that was verified on chain.
    Contained,
    /// The configs are being rolled back (owed, or in progress, or it failed and waits for an
    /// operator).
    Recovering,
    /// The configs point at the previous version again.
    Recovered,
    /// Closed by an operator (or by the unpause that followed recovery).
    Resolved,
    /// Every finding was retracted by a reorg before containment: nothing happened.
    Withdrawn,
    /// Closed by an operator before it ran its course.
    Cancelled,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [Self; 8] = [
        Self::Open,
        Self::Responding,
        Self::Contained,
        Self::Recovering,
        Self::Recovered,
        Self::Resolved,
        Self::Withdrawn,
        Self::Cancelled,
    ];

    /// Lower-case name, as stored and printed.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Responding => "responding",
            Self::Contained => "contained",
            Self::Recovering => "recovering",
            Self::Recovered => "recovered",
            Self::Resolved => "resolved",
            Self::Withdrawn => "withdrawn",
            Self::Cancelled => "cancelled",
        }
    }

    /// The state named `s`, as [`State::as_str`] prints it.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// Closed: new findings on the contract open a new incident.
    pub const fn is_closed(self) -> bool {
        matches!(self, Self::Resolved | Self::Withdrawn | Self::Cancelled)
    }

    /// The target is paused (verified) and the incident is not closed.
    pub const fn is_contained(self) -> bool {
        matches!(self, Self::Contained | Self::Recovering | Self::Recovered)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operators' matrix as response deadlines: how long an incident of each severity may
/// stay uncontained before it is escalated, and how often the escalation repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponsePolicy {
    /// Critical: act now (0).
    pub critical: Millis,
    /// High: on-call approval within 15 minutes.
    pub high: Millis,
    /// Medium: within an hour.
    pub medium: Millis,
    /// Low: monitor, 24 hours.
    pub low: Millis,
    /// How often an escalation repeats until the incident is contained or cancelled.
    pub escalate_every: Millis,
}

const MINUTE: Millis = 60_000;

impl Default for ResponsePolicy {
    /// Critical 0, High 15 min, Medium 1 h, Low 24 h; escalations every 5 minutes.
    fn default() -> Self {
        Self {
            critical: 0,
            high: 15 * MINUTE,
            medium: 60 * MINUTE,
            low: 24 * 60 * MINUTE,
            escalate_every: 5 * MINUTE,
        }
    }
}

impl ResponsePolicy {
    /// The response time for `severity`.
    pub const fn deadline(&self, severity: Severity) -> Millis {
        match severity {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
        }
    }

    /// When the first escalation of an incident of `severity` opened at `opened_at` is due. A
    /// zero deadline (Critical: act now) makes the opening notice itself the urgent one, so the
    /// first separate escalation comes one escalation interval later.
    pub fn first_escalation(&self, severity: Severity, opened_at: Millis) -> Millis {
        match self.deadline(severity) {
            0 => opened_at.saturating_add(self.escalate_every.max(1)),
            d => opened_at.saturating_add(d),
        }
    }
}

/// A finding the incident holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedFinding {
    /// The rule that fired.
    pub rule: String,
    /// Its severity.
    pub severity: Severity,
    /// What the policy asks for it.
    pub action: Action,
    /// The reorg that orphaned its every occurrence retracted it.
    pub retracted: bool,
}

/// Where a pause proposal of the incident stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalState {
    /// Collecting approvals.
    Pending,
    /// Its Safe nonce went to another transaction.
    Stale,
    /// Withdrawn: refused for approval and never executed.
    Withdrawn,
    /// Executed by the Safe.
    Executed,
}

impl ProposalState {
    /// Lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Stale => "stale",
            Self::Withdrawn => "withdrawn",
            Self::Executed => "executed",
        }
    }
}

impl std::fmt::Display for ProposalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pause proposal of the incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedProposal {
    /// The Safe nonce it was proposed at.
    pub nonce: U256,
    /// Where it stands.
    pub state: ProposalState,
    /// Distinct owners' approvals last counted.
    pub approvals: u64,
    /// What the Safe needs.
    pub threshold: u64,
    /// The block that count was read at.
    #[serde(default)]
    pub counted_at: u64,
    /// The threshold was met and the execution asked for.
    pub execute_requested: bool,
    /// The last execution failure's cause.
    pub last_failure: Option<String>,
    /// Distinct execution failures so far.
    pub failures: u32,
}

/// Who sent the transaction that executed a pause, decided by the mined transaction's sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attribution {
    /// This replica's executor (or pauser) key.
    ThisReplica,
    /// Another guardian replica's executor key.
    Peer,
    /// Anyone else (an owner with cast, another tool).
    Outside,
}

impl Attribution {
    /// Words for the operator.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ThisReplica => "this replica",
            Self::Peer => "another replica",
            Self::Outside => "an outside sender",
        }
    }
}

/// The transaction that paused the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    /// The proposal it executed (none for a pause that was not a proposal of this incident).
    pub proposal: Option<B256>,
    /// The transaction.
    pub tx: B256,
    /// Its sender.
    pub sender: Address,
    /// The block it was mined in.
    pub block: u64,
    /// Whose it was.
    pub by: Attribution,
}

/// Where the config rollback stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum RollbackStatus {
    /// Not owed (the policy does not ask for one, or not yet contained).
    NotOwed,
    /// Owed: asked for, not started.
    Owed,
    /// Started, not finished.
    Running,
    /// Finished.
    Done {
        /// The backup that undoes it; `None` when the configs already pointed there.
        undo: Option<String>,
    },
    /// Failed; waits for an operator.
    Failed {
        /// Why.
        error: String,
    },
}

/// Where the verification after the config rollback stands: the restart hooks of the
/// services that read the repointed configs, then the health checks.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum RecoveryStatus {
    /// Not owed (no rollback finished yet).
    #[default]
    NotOwed,
    /// Owed: the rollback finished; restart (when it changed files) and check.
    Owed,
    /// Every check passed.
    Passed {
        /// What was run and checked, in words.
        report: String,
    },
    /// A check failed: nothing is undone by itself; the operator decides.
    Failed {
        /// Which check failed, with what, in words.
        report: String,
    },
}

impl RecoveryStatus {
    /// Lower-case name.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::NotOwed => "not_owed",
            Self::Owed => "owed",
            Self::Passed { .. } => "passed",
            Self::Failed { .. } => "failed",
        }
    }
}

/// An operator's request to pause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseRequest {
    /// Who asked.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// The contract's policy rolls the configs back after its pause.
    pub rollback: bool,
}

/// A timer the machine schedules; it comes back as [`Event::TimerFired`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Timer {
    /// The response deadline (then each escalation interval) of an uncontained incident.
    Escalation,
}

impl Timer {
    /// Lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Escalation => "escalation",
        }
    }
}

/// One incident: a watched contract's anomaly, from the first finding to resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// Identity derived from chain facts (chain id, contract, the opening anomaly), so every
    /// replica computes the same one: see [`incident_key`].
    pub key: String,
    /// The watched contract's configured name.
    pub contract: String,
    /// Its address.
    pub address: Address,
    /// Where it stands.
    pub state: State,
    /// The highest severity among its findings still standing.
    pub severity: Severity,
    /// When it was opened.
    pub opened_at: Millis,
    /// When the pause was verified.
    pub contained_at: Option<Millis>,
    /// When it was resolved, withdrawn or cancelled.
    pub closed_at: Option<Millis>,
    /// Its findings, by id.
    pub findings: BTreeMap<FindingId, LinkedFinding>,
    /// An operator's request to pause, if one was made.
    pub pause_request: Option<PauseRequest>,
    /// A pause proposal was asked for and none has been made yet.
    pub pause_requested: bool,
    /// An immediate pause through the module was asked for and not answered yet.
    #[serde(default)]
    pub pause_now_requested: bool,
    /// Why the module could not pause (the incident fell back to a Safe proposal).
    #[serde(default)]
    pub module_unavailable: Option<String>,
    /// The module pause transaction sent.
    #[serde(default)]
    pub module_tx: Option<B256>,
    /// Its pause proposals, by safeTxHash.
    pub proposals: BTreeMap<B256, LinkedProposal>,
    /// The last failure to propose.
    pub proposal_failure: Option<String>,
    /// Distinct failures to propose so far.
    pub proposal_failures: u32,
    /// The transaction that paused the target.
    pub execution: Option<Execution>,
    /// The unpause transaction seen after containment.
    pub unpaused: Option<B256>,
    /// The config rollback.
    pub rollback: RollbackStatus,
    /// The restart and checks after the rollback.
    #[serde(default)]
    pub recovery: RecoveryStatus,
    /// How many recovery checks failed so far.
    #[serde(default)]
    pub recovery_failures: u32,
    /// When the escalation timer fires next.
    pub escalation_at: Option<Millis>,
    /// Escalations sent so far.
    pub escalations: u32,
    /// The operator's note on resolution or cancellation.
    pub note: Option<String>,
    /// Times an operator reopened it.
    pub reopened: u32,
    /// Times a reorg withdrew it (numbering its reinstatements the same on every replica).
    #[serde(default)]
    pub withdrawals: u32,
}

/// What happened, as the caller observed it. The only input of the machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    /// A new finding on the incident's contract, or a retracted one re-included by a reorg
    /// (same id).
    FindingRecorded {
        /// Its id.
        finding: FindingId,
        /// The rule that fired.
        rule: String,
        /// Its severity.
        severity: Severity,
        /// What the policy asks for it.
        action: Action,
    },
    /// A reorg orphaned every occurrence of a finding.
    FindingRetracted {
        /// Its id.
        finding: FindingId,
    },
    /// An operator asked for a pause (`guardian pause`, `POST /proposals`).
    PauseRequested {
        /// Who.
        actor: String,
        /// Why.
        reason: String,
        /// The contract's policy rolls the configs back after its pause.
        rollback: bool,
    },
    /// A pause proposal now stands in the Safe.
    ProposalMade {
        /// Its safeTxHash.
        proposal: B256,
        /// The Safe nonce.
        nonce: U256,
        /// Approvals the Safe needs.
        threshold: u64,
        /// The stale proposal it replaces.
        replaces: Option<B256>,
    },
    /// The immediate pause was sent through the module from the pauser key.
    ModulePauseSent {
        /// The transaction.
        tx: B256,
    },
    /// The module cannot pause (absent, disabled, the target not listed, the simulation
    /// reverts): the incident falls back to a Safe proposal.
    ModulePauseUnavailable {
        /// Why, in words.
        reason: String,
    },
    /// Proposing the pause failed (the simulation as the Safe reverted, the node failed).
    ProposalFailed {
        /// Why, in words.
        cause: String,
    },
    /// Approvals counted for a pending proposal (off-chain signatures and `approveHash`).
    ApprovalCounted {
        /// The proposal.
        proposal: B256,
        /// Distinct owners' approvals.
        approvals: u64,
        /// What the Safe needs.
        threshold: u64,
        /// The block the Safe was read at (owners, threshold, `approvedHashes`), taken before
        /// the stored signatures were read. A count read at an older block than the one
        /// recorded, or at the same block with fewer approvals, is a replica (or the CLI)
        /// that read before an approval landed: it is dropped, not recorded as a regression.
        #[serde(default)]
        block: u64,
    },
    /// The proposal's Safe nonce was consumed by another transaction and the target is not
    /// paused.
    NonceConsumed {
        /// The proposal.
        proposal: B256,
    },
    /// A transaction that executed the pause was mined.
    ExecutionSeen {
        /// The proposal it executed, if it was one of the incident's.
        proposal: Option<B256>,
        /// The transaction.
        tx: B256,
        /// Its sender.
        sender: Address,
        /// Its block.
        block: u64,
        /// Whose it was.
        by: Attribution,
    },
    /// Executing a proposal failed; it is retried.
    ExecutionFailed {
        /// The proposal.
        proposal: B256,
        /// Why, with the figures (e.g. the executor's balance against what one execution
        /// needs).
        cause: String,
    },
    /// `paused()` on the target is true, read from the chain.
    PauseVerified {
        /// The block it was read at.
        block: u64,
    },
    /// The target was found paused already when the pause was to be proposed.
    AlreadyPaused {
        /// The block it was read at.
        block: u64,
    },
    /// The config rollback began.
    RollbackStarted,
    /// The config rollback finished.
    RollbackFinished {
        /// The backup that undoes it (`None`: the configs already pointed there).
        undo: Option<String>,
        /// What changed, in words.
        summary: String,
    },
    /// The config rollback failed.
    RollbackFailed {
        /// Why.
        error: String,
    },
    /// The restart hooks ran and the recovery checks were made.
    RecoveryChecked {
        /// Every check passed.
        passed: bool,
        /// Each hook and check with its outcome, in words (the failed ones named).
        report: String,
    },
    /// An unpause of the target was executed.
    Unpaused {
        /// The transaction.
        tx: B256,
        /// Its block.
        block: u64,
    },
    /// An operator closed the incident.
    OperatorResolve {
        /// Who.
        actor: String,
        /// Their note.
        note: String,
    },
    /// An operator called the incident off; pending proposals are withdrawn.
    OperatorCancel {
        /// Who.
        actor: String,
        /// Why.
        reason: String,
    },
    /// An operator reopened a closed incident.
    OperatorReopen {
        /// Who.
        actor: String,
        /// Why.
        note: String,
    },
    /// A timer the machine scheduled came due.
    TimerFired {
        /// Which.
        timer: Timer,
        /// The time it was scheduled for (a timer rescheduled since is stale).
        at: Millis,
    },
}

impl Event {
    /// What happened, in words, for timelines, the audit log and notifications.
    pub fn describe(&self) -> String {
        match self {
            Self::FindingRecorded { finding, rule, severity, action } => {
                format!("finding #{finding} of rule {rule} ({severity}, {action})")
            }
            Self::FindingRetracted { finding } => {
                format!("finding #{finding} retracted: its block was orphaned by a reorg")
            }
            Self::PauseRequested { actor, reason, rollback } => format!(
                "{actor} asked for a pause: {reason}{}",
                if *rollback { " (configs roll back after it)" } else { "" }
            ),
            Self::ProposalMade { proposal, nonce, threshold, replaces } => format!(
                "pause proposed through the Safe at nonce {nonce}: safeTxHash {proposal}, needs {threshold} approvals{}",
                replaces.map(|h| format!(", replacing stale {h}")).unwrap_or_default()
            ),
            Self::ModulePauseSent { tx } => {
                format!("pause sent at once through the pause module in transaction {tx}")
            }
            Self::ModulePauseUnavailable { reason } => {
                format!(
                    "the pause module cannot pause: {reason}; proposing through the Safe instead"
                )
            }
            Self::ProposalFailed { cause } => format!("proposing the pause failed: {cause}"),
            Self::ApprovalCounted { proposal, approvals, threshold, .. } => {
                format!("approvals {approvals} of {threshold} for {proposal}")
            }
            Self::NonceConsumed { proposal } => format!(
                "the Safe nonce of {proposal} went to another transaction: the proposal is stale"
            ),
            Self::ExecutionSeen { tx, sender, block, by, .. } => {
                format!("executed in transaction {tx} (block {block}) by {} {sender}", by.as_str())
            }
            Self::ExecutionFailed { proposal, cause } => {
                format!("executing {proposal} failed: {cause}")
            }
            Self::PauseVerified { block } => format!("paused() is true at block {block}"),
            Self::AlreadyPaused { block } => {
                format!("the contract was already paused at block {block}")
            }
            Self::RollbackStarted => "config rollback started".to_owned(),
            Self::RollbackFinished { undo, summary } => match undo {
                Some(undo) => format!("configs rolled back ({summary}); undo with backup {undo}"),
                None => format!("configs already pointed at the previous version ({summary})"),
            },
            Self::RollbackFailed { error } => format!("config rollback failed: {error}"),
            Self::RecoveryChecked { passed: true, report } => {
                format!("recovery verified: {report}")
            }
            Self::RecoveryChecked { passed: false, report } => {
                format!("recovery check failed: {report}")
            }
            Self::Unpaused { tx, block } => {
                format!("unpaused in transaction {tx} (block {block})")
            }
            Self::OperatorResolve { actor, note } => format!("resolved by {actor}: {note}"),
            Self::OperatorCancel { actor, reason } => format!("cancelled by {actor}: {reason}"),
            Self::OperatorReopen { actor, note } => format!("reopened by {actor}: {note}"),
            Self::TimerFired { timer, .. } => format!("{} timer fired", timer.as_str()),
        }
    }

    /// The event's name, as stored.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::FindingRecorded { .. } => "finding_recorded",
            Self::FindingRetracted { .. } => "finding_retracted",
            Self::PauseRequested { .. } => "pause_requested",
            Self::ProposalMade { .. } => "proposal_made",
            Self::ModulePauseSent { .. } => "module_pause_sent",
            Self::ModulePauseUnavailable { .. } => "module_pause_unavailable",
            Self::ProposalFailed { .. } => "proposal_failed",
            Self::ApprovalCounted { .. } => "approval_counted",
            Self::NonceConsumed { .. } => "nonce_consumed",
            Self::ExecutionSeen { .. } => "execution_seen",
            Self::ExecutionFailed { .. } => "execution_failed",
            Self::PauseVerified { .. } => "pause_verified",
            Self::AlreadyPaused { .. } => "already_paused",
            Self::RollbackStarted => "rollback_started",
            Self::RollbackFinished { .. } => "rollback_finished",
            Self::RollbackFailed { .. } => "rollback_failed",
            Self::RecoveryChecked { .. } => "recovery_checked",
            Self::Unpaused { .. } => "unpaused",
            Self::OperatorResolve { .. } => "operator_resolve",
            Self::OperatorCancel { .. } => "operator_cancel",
            Self::OperatorReopen { .. } => "operator_reopen",
            Self::TimerFired { .. } => "timer_fired",
        }
    }
}

/// What a transition did, for the audit log: exactly one per transition that changed
/// anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// The incident was opened.
    Opened,
    /// Another finding attached.
    FindingAttached,
    /// A finding was retracted (others still stand).
    FindingRetracted,
    /// A retracted finding was re-included by a reorg.
    FindingReinstated,
    /// An operator asked for the pause of an incident already open.
    PauseRequested,
    /// A pause proposal was made.
    ProposalMade,
    /// A pause proposal was made again at a new Safe nonce.
    Reproposed,
    /// A proposal made for an incident that no longer needs it was withdrawn at once.
    ProposalWithdrawn,
    /// The immediate pause went out through the module.
    ModulePauseSent,
    /// The module could not pause; a Safe proposal follows.
    ModulePauseUnavailable,
    /// Proposing failed.
    ProposalFailed,
    /// Approvals changed.
    ApprovalCounted,
    /// A proposal's nonce went to another transaction.
    ProposalStale,
    /// The pause transaction was mined.
    Executed,
    /// Executing failed.
    ExecutionFailed,
    /// The pause was verified on chain.
    Contained,
    /// The rollback began.
    RollbackStarted,
    /// The rollback finished.
    RollbackDone,
    /// The rollback failed.
    RollbackFailed,
    /// The restart hooks ran and every recovery check passed.
    RecoveryVerified,
    /// A recovery check failed.
    RecoveryFailed,
    /// Every finding was retracted before containment.
    Withdrawn,
    /// Closed by an operator.
    Resolved,
    /// Cancelled by an operator.
    Cancelled,
    /// Reopened by an operator (or by a re-included finding).
    Reopened,
    /// Past its deadline and still not contained.
    Escalated,
    /// The target was unpaused.
    Unpaused,
}

impl AuditKind {
    /// Lower-case name, as stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::FindingAttached => "finding_attached",
            Self::FindingRetracted => "finding_retracted",
            Self::FindingReinstated => "finding_reinstated",
            Self::PauseRequested => "pause_requested",
            Self::ProposalMade => "proposal_made",
            Self::Reproposed => "reproposed",
            Self::ProposalWithdrawn => "proposal_withdrawn",
            Self::ModulePauseSent => "module_pause_sent",
            Self::ModulePauseUnavailable => "module_pause_unavailable",
            Self::ProposalFailed => "proposal_failed",
            Self::ApprovalCounted => "approval_counted",
            Self::ProposalStale => "proposal_stale",
            Self::Executed => "executed",
            Self::ExecutionFailed => "execution_failed",
            Self::Contained => "contained",
            Self::RollbackStarted => "rollback_started",
            Self::RollbackDone => "rollback_done",
            Self::RollbackFailed => "rollback_failed",
            Self::RecoveryVerified => "recovery_verified",
            Self::RecoveryFailed => "recovery_failed",
            Self::Withdrawn => "withdrawn",
            Self::Resolved => "resolved",
            Self::Cancelled => "cancelled",
            Self::Reopened => "reopened",
            Self::Escalated => "escalated",
            Self::Unpaused => "unpaused",
        }
    }
}

/// What the operators are told. Each kind reaches every channel once per incident and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// A new incident (severity, rule, contract, evidence).
    Opened,
    /// A finding raised the incident's severity.
    SeverityRaised,
    /// A pause proposal waits for approvals (with the `guardian approve` command).
    PauseProposed,
    /// Approvals counted (x of y).
    Approval,
    /// The pause went out at once through the module (no approval needed).
    PauseSent,
    /// The module could not pause: why, and that a Safe proposal follows.
    ImmediatePauseUnavailable,
    /// Proposing the pause failed.
    ProposalFailed,
    /// Executing the pause failed (cause and figures).
    ExecutionFailed,
    /// The pause was executed and verified (tx, block, sender).
    Executed,
    /// The target was found already paused.
    AlreadyPaused,
    /// The rollback is done (the undo backup).
    RollbackDone,
    /// The rollback failed.
    RollbackFailed,
    /// The services were restarted and verified after the rollback.
    RecoveryVerified,
    /// A recovery check failed: the operator decides (the undo backup is named).
    RecoveryFailed,
    /// Every finding was retracted by a reorg; pending proposals withdrawn.
    Withdrawn,
    /// A retracted finding was re-included by a reorg.
    Reinstated,
    /// The incident was resolved.
    Resolved,
    /// The incident was cancelled.
    Cancelled,
    /// The incident was reopened.
    Reopened,
    /// Past its deadline and not contained.
    Escalation,
}

impl NoticeKind {
    /// Lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::SeverityRaised => "severity_raised",
            Self::PauseProposed => "pause_proposed",
            Self::Approval => "approval",
            Self::PauseSent => "pause_sent",
            Self::ImmediatePauseUnavailable => "immediate_pause_unavailable",
            Self::ProposalFailed => "proposal_failed",
            Self::ExecutionFailed => "execution_failed",
            Self::Executed => "executed",
            Self::AlreadyPaused => "already_paused",
            Self::RollbackDone => "rollback_done",
            Self::RollbackFailed => "rollback_failed",
            Self::RecoveryVerified => "recovery_verified",
            Self::RecoveryFailed => "recovery_failed",
            Self::Withdrawn => "withdrawn",
            Self::Reinstated => "reinstated",
            Self::Resolved => "resolved",
            Self::Cancelled => "cancelled",
            Self::Reopened => "reopened",
            Self::Escalation => "escalation",
        }
    }

    /// A fact of one replica, not of the chain: its own attempt to propose, execute or pause
    /// failing, and its host's rollback and recovery. Their idempotency keys name the replica,
    /// so a receiver merging replicas' copies by key still hears each host.
    pub const fn is_local(self) -> bool {
        matches!(
            self,
            Self::ProposalFailed
                | Self::ExecutionFailed
                | Self::ImmediatePauseUnavailable
                | Self::RollbackDone
                | Self::RollbackFailed
                | Self::RecoveryVerified
                | Self::RecoveryFailed
        )
    }
}

/// A notification to send: its kind and a key unique within the incident, the same on every
/// replica and after every crash, so a receiver can drop a repeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// What it says.
    pub kind: NoticeKind,
    /// Unique within the incident (`opened`, `approval:<hash>:2`, `escalation:3`, …).
    pub key: String,
}

/// What the machine asks the caller to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "effect")]
pub enum Effect {
    /// Record this transition in the audit log (exactly one per changing transition).
    Audit {
        /// What happened.
        kind: AuditKind,
    },
    /// Tell the operators.
    Notify(Notice),
    /// Propose the pause of the incident's contract through the Safe, at its current nonce
    /// (simulated as the Safe first). Answered by `ProposalMade`, `ProposalFailed` or
    /// `AlreadyPaused`.
    ProposePause,
    /// Pause at once through the pause-only Safe module from the pauser key (simulated
    /// first). Answered by `ModulePauseSent` then `ExecutionSeen` and `PauseVerified`, or
    /// `ModulePauseUnavailable` (then a proposal is asked for), or `AlreadyPaused`.
    PauseNow,
    /// The proposal has its approvals: execute it. Answered by `ExecutionSeen` then
    /// `PauseVerified`, or `ExecutionFailed`.
    Execute {
        /// The proposal.
        proposal: B256,
    },
    /// Withdraw a proposal: approvals are refused with `reason` and it is never executed.
    Withdraw {
        /// The proposal.
        proposal: B256,
        /// Why, for the operator who tries to approve it.
        reason: String,
    },
    /// Repoint the managed configs to the version before the one at `from` (idempotent).
    /// Answered by `RollbackStarted`, then `RollbackFinished` or `RollbackFailed`.
    RunRollback {
        /// The paused contract's address.
        from: Address,
    },
    /// After the rollback: run the restart hooks (when `restart`: the configs changed) and the
    /// recovery checks. Answered by `RecoveryChecked`.
    RunRecovery {
        /// Restart the services that read the repointed configs first.
        restart: bool,
    },
    /// Fire `timer` at `at` (replaces any earlier schedule of the same timer).
    ScheduleTimer {
        /// Which.
        timer: Timer,
        /// When.
        at: Millis,
    },
    /// Forget `timer`.
    CancelTimer {
        /// Which.
        timer: Timer,
    },
}

/// The result of one step: the next incident and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The incident after the event.
    pub incident: Incident,
    /// What to do, in order. Empty when nothing changed.
    pub effects: Vec<Effect>,
}

impl Transition {
    /// Whether the event changed anything (and must be stored).
    pub fn changed(&self) -> bool {
        !self.effects.is_empty()
    }

    /// The audit entry of this transition, if it changed anything.
    pub fn audit(&self) -> Option<AuditKind> {
        self.effects.iter().find_map(|e| match e {
            Effect::Audit { kind } => Some(*kind),
            _ => None,
        })
    }

    /// The notifications it asks for.
    pub fn notices(&self) -> impl Iterator<Item = &Notice> {
        self.effects.iter().filter_map(|e| match e {
            Effect::Notify(notice) => Some(notice),
            _ => None,
        })
    }
}

/// Why an event cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StepError {
    /// The incident is closed; a new finding opens a new incident.
    #[error("incident is {state}: it takes no {event}")]
    Closed {
        /// Its state.
        state: State,
        /// The event refused.
        event: &'static str,
    },
    /// Only a finding or an operator's pause opens an incident.
    #[error("an incident is opened by a finding or an operator's pause, not by {event}")]
    NotAnOpening {
        /// The event refused.
        event: &'static str,
    },
    /// The event names a finding the incident does not hold.
    #[error("finding #{finding} is not part of this incident")]
    UnknownFinding {
        /// The finding.
        finding: FindingId,
    },
    /// The event names a proposal the incident does not hold.
    #[error("proposal {proposal} is not a pause proposal of this incident")]
    UnknownProposal {
        /// The proposal.
        proposal: B256,
    },
    /// The proposal no longer collects approvals.
    #[error("proposal {proposal} is {state}, not pending")]
    NotPending {
        /// The proposal.
        proposal: B256,
        /// Where it stands.
        state: ProposalState,
    },
    /// The target is already paused and verified.
    #[error("the target is already paused (incident {state})")]
    AlreadyContained {
        /// Its state.
        state: State,
    },
    /// Resolving needs a verified pause first.
    #[error("incident is {state}, not contained: cancel it instead (`guardian incidents cancel`)")]
    NotContained {
        /// Its state.
        state: State,
    },
    /// The rollback is owed or running.
    #[error("the config rollback is still {status}: wait for it, or cancel the incident")]
    RollbackPending {
        /// `owed` or `running`.
        status: &'static str,
    },
    /// Nothing asked for this answer.
    #[error(
        "{event} answers nothing this incident asked for (rollback {rollback}, pause requested {pause_requested})"
    )]
    Unrequested {
        /// The event refused.
        event: &'static str,
        /// The rollback's status.
        rollback: &'static str,
        /// Whether a proposal was asked for.
        pause_requested: bool,
    },
    /// Only a closed incident can be reopened.
    #[error("incident is {state}: only a resolved, withdrawn or cancelled incident is reopened")]
    NotClosed {
        /// Its state.
        state: State,
    },
}

/// The identity of an incident, from chain facts only: the chain, the contract and the anomaly
/// that opened it (see [`Finding::anomaly_key`](crate::finding::Finding::anomaly_key)). Every
/// replica that sees the same anomaly derives the same key.
pub fn incident_key(chain_id: u64, address: Address, rule: &str, anomaly: &str) -> String {
    let mut preimage = Vec::new();
    preimage.extend_from_slice(&chain_id.to_be_bytes());
    preimage.extend_from_slice(address.as_slice());
    for part in [rule, anomaly] {
        preimage.extend_from_slice(&(part.len() as u64).to_be_bytes());
        preimage.extend_from_slice(part.as_bytes());
    }
    let digest = keccak256(&preimage);
    format!("inc-{}", &alloy_primitives::hex::encode(digest)[..16])
}

/// Whether two failure messages are the same failure: equal once the figures (fees, gas,
/// balances, block numbers) that move from attempt to attempt are left out.
pub fn same_cause(a: &str, b: &str) -> bool {
    let shape = |s: &str| s.replace(|c: char| c.is_ascii_digit(), "");
    shape(a) == shape(b)
}

/// A transition under construction.
struct Step {
    next: Incident,
    effects: Vec<Effect>,
}

impl Step {
    fn audit(&mut self, kind: AuditKind) {
        self.effects.insert(0, Effect::Audit { kind });
    }

    fn notify(&mut self, kind: NoticeKind, key: impl Into<String>) {
        if self.next.notifies() {
            self.effects.push(Effect::Notify(Notice { kind, key: key.into() }));
        }
    }

    fn effect(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    fn done(self) -> Result<Transition, StepError> {
        Ok(Transition { incident: self.next, effects: self.effects })
    }

    /// Ask for the pause unless one is asked for, in flight or pending already: at once
    /// through the module when a standing finding's policy says `pause_now` and the module has
    /// not failed this incident, else as a Safe proposal.
    fn propose_if_needed(&mut self) {
        let next = &self.next;
        let pending = next.proposals.values().any(|p| p.state == ProposalState::Pending);
        let in_flight =
            next.pause_requested || next.pause_now_requested || next.module_tx.is_some();
        if !next.wants_pause() || in_flight || pending {
            return;
        }
        if next.wants_pause_now() && next.module_unavailable.is_none() {
            self.next.pause_now_requested = true;
            self.effect(Effect::PauseNow);
        } else {
            self.next.pause_requested = true;
            self.effect(Effect::ProposePause);
        }
    }

    /// Withdraw every pending proposal, telling approvers `reason`.
    fn withdraw_pending(&mut self, reason: &str) {
        self.next.pause_requested = false;
        self.next.pause_now_requested = false;
        let pending: Vec<B256> = self
            .next
            .proposals
            .iter()
            .filter(|(_, p)| p.state == ProposalState::Pending)
            .map(|(hash, _)| *hash)
            .collect();
        for proposal in pending {
            if let Some(p) = self.next.proposals.get_mut(&proposal) {
                p.state = ProposalState::Withdrawn;
            }
            self.effect(Effect::Withdraw { proposal, reason: reason.to_owned() });
        }
    }

    /// (Re)schedule the escalation for an uncontained incident, or cancel it.
    fn schedule_escalation(&mut self, at: Option<Millis>) {
        if self.next.escalation_at == at {
            return;
        }
        self.next.escalation_at = at;
        match at {
            Some(at) => self.effect(Effect::ScheduleTimer { timer: Timer::Escalation, at }),
            None => self.effect(Effect::CancelTimer { timer: Timer::Escalation }),
        }
    }

    fn close(&mut self, state: State, now: Millis) {
        self.next.state = state;
        self.next.closed_at = Some(now);
        self.schedule_escalation(None);
    }
}

impl Incident {
    /// Open an incident for `contract` at `address` with its first event: a finding, or an
    /// operator's pause request.
    pub fn open(
        key: String,
        contract: String,
        address: Address,
        event: &Event,
        now: Millis,
        policy: &ResponsePolicy,
    ) -> Result<Transition, StepError> {
        let blank = Self {
            key,
            contract,
            address,
            state: State::Open,
            severity: Severity::Low,
            opened_at: now,
            contained_at: None,
            closed_at: None,
            findings: BTreeMap::new(),
            pause_request: None,
            pause_requested: false,
            pause_now_requested: false,
            module_unavailable: None,
            module_tx: None,
            proposals: BTreeMap::new(),
            proposal_failure: None,
            proposal_failures: 0,
            execution: None,
            unpaused: None,
            rollback: RollbackStatus::NotOwed,
            recovery: RecoveryStatus::NotOwed,
            recovery_failures: 0,
            escalation_at: None,
            escalations: 0,
            note: None,
            reopened: 0,
            withdrawals: 0,
        };
        let mut step = Step { next: blank, effects: Vec::new() };
        match event {
            Event::FindingRecorded { finding, rule, severity, action } => {
                step.next.findings.insert(
                    *finding,
                    LinkedFinding {
                        rule: rule.clone(),
                        severity: *severity,
                        action: *action,
                        retracted: false,
                    },
                );
            }
            Event::PauseRequested { actor, reason, rollback } => {
                step.next.pause_request = Some(PauseRequest {
                    actor: actor.clone(),
                    reason: reason.clone(),
                    rollback: *rollback,
                });
            }
            other => return Err(StepError::NotAnOpening { event: other.name() }),
        }
        step.next.severity = step.next.standing_severity().unwrap_or(Severity::Low);
        step.audit(AuditKind::Opened);
        step.notify(NoticeKind::Opened, "opened");
        step.propose_if_needed();
        let escalation = step.next.due_escalation(policy);
        step.schedule_escalation(escalation);
        step.done()
    }

    /// Apply `event` at `now` under `policy`.
    pub fn step(
        &self,
        event: &Event,
        now: Millis,
        policy: &ResponsePolicy,
    ) -> Result<Transition, StepError> {
        let mut step = Step { next: self.clone(), effects: Vec::new() };
        let state = self.state;
        let closed = |event: &Event| Err(StepError::Closed { state, event: event.name() });
        match event {
            Event::FindingRecorded { finding, rule, severity, action } => {
                if let Some(link) = self.findings.get(finding) {
                    if !link.retracted {
                        return step.done(); // replayed
                    }
                    if matches!(state, State::Resolved | State::Cancelled) {
                        return closed(event);
                    }
                    if let Some(link) = step.next.findings.get_mut(finding) {
                        link.retracted = false;
                    }
                    step.next.severity = step.next.standing_severity().unwrap_or(self.severity);
                    if state == State::Withdrawn {
                        // The reorg's new branch mined the anomaly again: the incident is back.
                        step.next.state = State::Open;
                        step.next.closed_at = None;
                        step.audit(AuditKind::FindingReinstated);
                        // Numbered by chain facts (the reorgs seen), not by this database's finding
                        // id: every replica derives the same key.
                        step.notify(
                            NoticeKind::Reinstated,
                            format!("reinstated:{}", step.next.withdrawals),
                        );
                        step.propose_if_needed();
                        let escalation = step.next.due_escalation(policy);
                        step.schedule_escalation(escalation);
                    } else {
                        step.audit(AuditKind::FindingReinstated);
                    }
                    return step.done();
                }
                if state.is_closed() {
                    return closed(event);
                }
                let before = self.standing_severity();
                step.next.findings.insert(
                    *finding,
                    LinkedFinding {
                        rule: rule.clone(),
                        severity: *severity,
                        action: *action,
                        retracted: false,
                    },
                );
                step.next.severity = step.next.standing_severity().unwrap_or(*severity);
                step.audit(AuditKind::FindingAttached);
                if before.is_some_and(|b| *severity > b) && action.notifies() {
                    step.notify(NoticeKind::SeverityRaised, format!("severity:{severity}"));
                }
                if state.is_contained() {
                    // Already paused: a finding of the same episode is evidence, not a new
                    // response. A rollback may be newly owed by the finding's policy.
                    if step.next.wants_rollback() && self.rollback == RollbackStatus::NotOwed {
                        step.next.rollback = RollbackStatus::Owed;
                        step.effect(Effect::RunRollback { from: self.address });
                    }
                } else {
                    step.propose_if_needed();
                    let escalation = step.next.due_escalation(policy);
                    let earlier = match (self.escalation_at, escalation) {
                        (Some(now_at), Some(new_at)) => Some(now_at.min(new_at)),
                        (current, new) => current.or(new),
                    };
                    step.schedule_escalation(earlier);
                }
                step.done()
            }

            Event::FindingRetracted { finding } => {
                let link = self
                    .findings
                    .get(finding)
                    .ok_or(StepError::UnknownFinding { finding: *finding })?;
                if link.retracted {
                    return step.done();
                }
                if let Some(link) = step.next.findings.get_mut(finding) {
                    link.retracted = true;
                }
                let nothing_stands = step.next.findings.values().all(|f| f.retracted)
                    && step.next.pause_request.is_none();
                if nothing_stands && matches!(state, State::Open | State::Responding) {
                    step.withdraw_pending(&format!(
                        "withdrawn: finding #{finding} ({}) was retracted, its block orphaned by a reorg",
                        link.rule
                    ));
                    step.close(State::Withdrawn, now);
                    step.next.withdrawals += 1;
                    step.audit(AuditKind::Withdrawn);
                    step.notify(NoticeKind::Withdrawn, "withdrawn");
                } else {
                    step.next.severity = step.next.standing_severity().unwrap_or(self.severity);
                    step.audit(AuditKind::FindingRetracted);
                }
                step.done()
            }

            Event::PauseRequested { actor, reason, rollback } => {
                if state.is_closed() {
                    return closed(event);
                }
                if state.is_contained() {
                    return Err(StepError::AlreadyContained { state });
                }
                if self.pause_request.is_some() {
                    return step.done();
                }
                step.next.pause_request = Some(PauseRequest {
                    actor: actor.clone(),
                    reason: reason.clone(),
                    rollback: *rollback,
                });
                step.next.severity = step.next.standing_severity().unwrap_or(self.severity);
                step.audit(AuditKind::PauseRequested);
                step.propose_if_needed();
                let escalation = step.next.due_escalation(policy);
                let earlier = match (self.escalation_at, escalation) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                step.schedule_escalation(earlier);
                step.done()
            }

            Event::ProposalMade { proposal, nonce, threshold, replaces } => {
                if let Some(link) = self.proposals.get(proposal) {
                    let revived = link.state == ProposalState::Withdrawn
                        && matches!(state, State::Open | State::Responding)
                        && self.pause_requested;
                    if !revived {
                        return step.done(); // replayed
                    }
                }
                if state.is_closed() || state.is_contained() {
                    // Made while the incident moved on (a race with a reorg, an operator or
                    // another sender): it must never collect approvals.
                    let reason = if state.is_contained() {
                        format!("withdrawn: {} is already paused", self.contract)
                    } else {
                        format!("withdrawn: the incident is {state}")
                    };
                    step.next
                        .proposals
                        .insert(*proposal, link(*nonce, *threshold, ProposalState::Withdrawn));
                    step.effect(Effect::Withdraw { proposal: *proposal, reason });
                    step.audit(AuditKind::ProposalWithdrawn);
                    return step.done();
                }
                if let Some(old) = replaces.and_then(|h| step.next.proposals.get_mut(&h))
                    && old.state == ProposalState::Pending
                {
                    old.state = ProposalState::Stale;
                }
                step.next
                    .proposals
                    .insert(*proposal, link(*nonce, *threshold, ProposalState::Pending));
                step.next.pause_requested = false;
                step.next.proposal_failure = None;
                step.next.state = State::Responding;
                step.audit(if replaces.is_some() {
                    AuditKind::Reproposed
                } else {
                    AuditKind::ProposalMade
                });
                step.notify(NoticeKind::PauseProposed, format!("proposed:{proposal}"));
                step.done()
            }

            Event::ModulePauseSent { tx } => {
                if self.module_tx == Some(*tx) {
                    return step.done();
                }
                // A replacement (higher fees) or a resend after a restart of a pause sent but
                // not yet seen mined: recorded, announced once.
                let resend = self.module_pause_in_flight();
                if !self.pause_now_requested && !resend {
                    return Err(self.unrequested(event));
                }
                step.next.pause_now_requested = false;
                step.next.module_tx = Some(*tx);
                if state == State::Open {
                    step.next.state = State::Responding;
                }
                step.audit(AuditKind::ModulePauseSent);
                if !resend {
                    step.notify(NoticeKind::PauseSent, format!("pause-sent:{tx}"));
                }
                step.done()
            }

            Event::ModulePauseUnavailable { reason } => {
                // Also for a pause sent before a restart, never mined, that cannot be sent
                // again.
                if !self.pause_now_requested && !self.module_pause_in_flight() {
                    return Err(self.unrequested(event));
                }
                step.next.pause_now_requested = false;
                // The lost pause is given up (its send stays in the audit trail).
                step.next.module_tx = None;
                step.next.module_unavailable = Some(reason.clone());
                step.audit(AuditKind::ModulePauseUnavailable);
                step.notify(NoticeKind::ImmediatePauseUnavailable, "module-unavailable");
                if matches!(state, State::Open | State::Responding) {
                    step.propose_if_needed();
                }
                step.done()
            }

            Event::ProposalFailed { cause } => {
                if !self.pause_requested {
                    return Err(self.unrequested(event));
                }
                if self.proposal_failure.as_deref().is_some_and(|last| same_cause(last, cause)) {
                    return step.done();
                }
                step.next.proposal_failure = Some(cause.clone());
                step.next.proposal_failures = self.proposal_failures + 1;
                step.audit(AuditKind::ProposalFailed);
                let n = step.next.proposal_failures;
                step.notify(NoticeKind::ProposalFailed, format!("proposal-failed:{n}"));
                step.done()
            }

            Event::ApprovalCounted { proposal, approvals, threshold, block } => {
                let link = self
                    .proposals
                    .get(proposal)
                    .ok_or(StepError::UnknownProposal { proposal: *proposal })?;
                if link.state != ProposalState::Pending {
                    return Err(StepError::NotPending { proposal: *proposal, state: link.state });
                }
                if state.is_closed() {
                    return closed(event);
                }
                let stale = *block < link.counted_at
                    || (*block == link.counted_at && *approvals < link.approvals);
                if stale || (link.approvals == *approvals && link.threshold == *threshold) {
                    return step.done();
                }
                let ready = approvals >= threshold && !link.execute_requested;
                if let Some(link) = step.next.proposals.get_mut(proposal) {
                    link.approvals = *approvals;
                    link.threshold = *threshold;
                    link.counted_at = *block;
                    link.execute_requested |= ready;
                }
                step.audit(AuditKind::ApprovalCounted);
                step.notify(NoticeKind::Approval, format!("approval:{proposal}:{approvals}"));
                if ready {
                    step.effect(Effect::Execute { proposal: *proposal });
                }
                step.done()
            }

            Event::NonceConsumed { proposal } => {
                let link = self
                    .proposals
                    .get(proposal)
                    .ok_or(StepError::UnknownProposal { proposal: *proposal })?;
                match link.state {
                    ProposalState::Stale => return step.done(),
                    ProposalState::Pending => {}
                    other => {
                        return Err(StepError::NotPending { proposal: *proposal, state: other });
                    }
                }
                if let Some(link) = step.next.proposals.get_mut(proposal) {
                    link.state = ProposalState::Stale;
                }
                step.audit(AuditKind::ProposalStale);
                if matches!(state, State::Open | State::Responding) {
                    // A pause is still owed: propose again at the new nonce.
                    step.propose_if_needed();
                }
                step.done()
            }

            Event::ExecutionSeen { proposal, tx, sender, block, by } => {
                if self.execution.as_ref().is_some_and(|e| e.tx == *tx) {
                    return step.done();
                }
                if let Some(hash) = proposal {
                    let link = step
                        .next
                        .proposals
                        .get_mut(hash)
                        .ok_or(StepError::UnknownProposal { proposal: *hash })?;
                    link.state = ProposalState::Executed;
                }
                step.next.execution = Some(Execution {
                    proposal: *proposal,
                    tx: *tx,
                    sender: *sender,
                    block: *block,
                    by: *by,
                });
                step.audit(AuditKind::Executed);
                step.done()
            }

            Event::ExecutionFailed { proposal, cause } => {
                let link = self
                    .proposals
                    .get(proposal)
                    .ok_or(StepError::UnknownProposal { proposal: *proposal })?;
                if link.state != ProposalState::Pending {
                    return Err(StepError::NotPending { proposal: *proposal, state: link.state });
                }
                if link.last_failure.as_deref().is_some_and(|last| same_cause(last, cause)) {
                    return step.done();
                }
                let n = link.failures + 1;
                if let Some(link) = step.next.proposals.get_mut(proposal) {
                    link.last_failure = Some(cause.clone());
                    link.failures = n;
                }
                step.audit(AuditKind::ExecutionFailed);
                step.notify(
                    NoticeKind::ExecutionFailed,
                    format!("execution-failed:{proposal}:{n}"),
                );
                step.done()
            }

            Event::PauseVerified { .. } | Event::AlreadyPaused { .. } => {
                match state {
                    State::Open | State::Responding | State::Withdrawn => {}
                    State::Contained | State::Recovering | State::Recovered => return step.done(),
                    State::Resolved | State::Cancelled => return closed(event),
                }
                let already = matches!(event, Event::AlreadyPaused { .. });
                if already && !self.pause_requested && !self.pause_now_requested {
                    return Err(self.unrequested(event));
                }
                step.withdraw_pending(&format!("withdrawn: {} is already paused", self.contract));
                step.next.state = State::Contained;
                step.next.contained_at = Some(now);
                step.next.closed_at = None;
                step.schedule_escalation(None);
                step.audit(AuditKind::Contained);
                if already {
                    step.notify(NoticeKind::AlreadyPaused, "contained");
                } else {
                    step.notify(NoticeKind::Executed, "contained");
                }
                // A withdrawn incident paused anyway (a race with the reorg) is contained, but
                // its retracted findings no longer justify moving the configs.
                if state != State::Withdrawn
                    && step.next.wants_rollback()
                    && self.rollback == RollbackStatus::NotOwed
                {
                    step.next.rollback = RollbackStatus::Owed;
                    step.effect(Effect::RunRollback { from: self.address });
                }
                step.done()
            }

            Event::RollbackStarted => match &self.rollback {
                RollbackStatus::Running => step.done(),
                RollbackStatus::Owed => {
                    step.next.rollback = RollbackStatus::Running;
                    if state == State::Contained {
                        step.next.state = State::Recovering;
                    }
                    step.audit(AuditKind::RollbackStarted);
                    step.done()
                }
                _ => Err(self.unrequested(event)),
            },

            Event::RollbackFinished { undo, .. } => match &self.rollback {
                RollbackStatus::Done { .. } => step.done(),
                // A failed rollback is retried; its success finishes it like a first run.
                RollbackStatus::Owed | RollbackStatus::Running | RollbackStatus::Failed { .. } => {
                    step.next.rollback = RollbackStatus::Done { undo: undo.clone() };
                    if matches!(state, State::Contained | State::Recovering) {
                        // Recovered once the services reading the configs are verified.
                        step.next.state = State::Recovering;
                        step.next.recovery = RecoveryStatus::Owed;
                        step.effect(Effect::RunRecovery { restart: undo.is_some() });
                    }
                    step.audit(AuditKind::RollbackDone);
                    step.notify(NoticeKind::RollbackDone, "rollback-done");
                    step.done()
                }
                _ => Err(self.unrequested(event)),
            },

            Event::RollbackFailed { error } => match &self.rollback {
                RollbackStatus::Failed { error: last } if same_cause(last, error) => step.done(),
                RollbackStatus::Owed | RollbackStatus::Running | RollbackStatus::Failed { .. } => {
                    step.next.rollback = RollbackStatus::Failed { error: error.clone() };
                    if state == State::Contained {
                        step.next.state = State::Recovering;
                    }
                    step.audit(AuditKind::RollbackFailed);
                    step.notify(NoticeKind::RollbackFailed, "rollback-failed");
                    step.done()
                }
                _ => Err(self.unrequested(event)),
            },

            Event::RecoveryChecked { passed, report } => {
                if state.is_closed() {
                    return closed(event);
                }
                match (&self.recovery, passed) {
                    (RecoveryStatus::Passed { report: last }, true) if last == report => {
                        step.done()
                    }
                    (RecoveryStatus::Owed | RecoveryStatus::Failed { .. }, true) => {
                        step.next.recovery = RecoveryStatus::Passed { report: report.clone() };
                        step.next.state = State::Recovered;
                        step.audit(AuditKind::RecoveryVerified);
                        step.notify(NoticeKind::RecoveryVerified, "recovery-verified");
                        step.done()
                    }
                    (RecoveryStatus::Owed | RecoveryStatus::Failed { .. }, false) => {
                        step.next.recovery = RecoveryStatus::Failed { report: report.clone() };
                        step.next.recovery_failures = self.recovery_failures + 1;
                        step.audit(AuditKind::RecoveryFailed);
                        let n = step.next.recovery_failures;
                        step.notify(NoticeKind::RecoveryFailed, format!("recovery-failed:{n}"));
                        step.done()
                    }
                    _ => Err(self.unrequested(event)),
                }
            }

            Event::Unpaused { tx, .. } => {
                if self.unpaused == Some(*tx) || state.is_closed() {
                    return step.done();
                }
                step.next.unpaused = Some(*tx);
                step.audit(AuditKind::Unpaused);
                if state.is_contained() {
                    // The operators lifted the pause: the incident is over, and a finding from
                    // now on is a new episode that must be paused again.
                    step.next.note = Some(format!("unpaused in transaction {tx}"));
                    step.close(State::Resolved, now);
                    step.notify(NoticeKind::Resolved, "resolved");
                }
                step.done()
            }

            Event::OperatorResolve { note, .. } => match state {
                State::Resolved => step.done(),
                State::Withdrawn | State::Cancelled => closed(event),
                State::Open | State::Responding => Err(StepError::NotContained { state }),
                State::Contained | State::Recovering | State::Recovered => {
                    match self.rollback {
                        RollbackStatus::Owed => {
                            return Err(StepError::RollbackPending { status: "owed" });
                        }
                        RollbackStatus::Running => {
                            return Err(StepError::RollbackPending { status: "running" });
                        }
                        _ => {}
                    }
                    if self.recovery == RecoveryStatus::Owed {
                        return Err(StepError::RollbackPending {
                            status: "verifying the services",
                        });
                    }
                    step.next.note = Some(note.clone());
                    step.close(State::Resolved, now);
                    step.audit(AuditKind::Resolved);
                    step.notify(NoticeKind::Resolved, "resolved");
                    step.done()
                }
            },

            Event::OperatorCancel { reason, .. } => match state {
                State::Cancelled => step.done(),
                State::Resolved | State::Withdrawn => closed(event),
                _ => {
                    step.withdraw_pending(&format!(
                        "withdrawn: the incident was cancelled: {reason}"
                    ));
                    if step.next.rollback == RollbackStatus::Owed {
                        step.next.rollback = RollbackStatus::NotOwed;
                    }
                    step.next.note = Some(reason.clone());
                    step.close(State::Cancelled, now);
                    step.audit(AuditKind::Cancelled);
                    step.notify(NoticeKind::Cancelled, "cancelled");
                    step.done()
                }
            },

            Event::OperatorReopen { note, .. } => {
                if !state.is_closed() {
                    return Err(StepError::NotClosed { state });
                }
                step.next.closed_at = None;
                step.next.note = Some(note.clone());
                step.next.reopened = self.reopened + 1;
                if self.contained_at.is_some() && self.unpaused.is_none() {
                    step.next.state = match self.rollback {
                        RollbackStatus::Done { .. } => State::Recovered,
                        RollbackStatus::NotOwed => State::Contained,
                        _ => State::Recovering,
                    };
                } else {
                    step.next.state = State::Open;
                    step.next.contained_at = None;
                    step.next.execution = None;
                    step.next.unpaused = None;
                    step.propose_if_needed();
                    let escalation = step.next.due_escalation_from(policy, now);
                    step.schedule_escalation(escalation);
                }
                step.audit(AuditKind::Reopened);
                step.notify(NoticeKind::Reopened, format!("reopened:{}", step.next.reopened));
                step.done()
            }

            Event::TimerFired { timer: Timer::Escalation, at } => {
                if self.escalation_at != Some(*at) {
                    return step.done(); // rescheduled or cancelled since: stale
                }
                if !matches!(state, State::Open | State::Responding) {
                    return step.done(); // containment cancelled it; a late firing changes nothing
                }
                step.next.escalations = self.escalations + 1;
                step.next.escalation_at = None;
                step.schedule_escalation(Some(now.saturating_add(policy.escalate_every.max(1))));
                step.audit(AuditKind::Escalated);
                step.notify(
                    NoticeKind::Escalation,
                    format!("escalation:{}", step.next.escalations),
                );
                step.done()
            }
        }
    }

    /// The highest severity among the findings still standing (and High for an operator's
    /// pause request); `None` when nothing stands.
    pub fn standing_severity(&self) -> Option<Severity> {
        let findings = self.findings.values().filter(|f| !f.retracted).map(|f| f.severity);
        let manual = self.pause_request.as_ref().map(|_| Severity::High);
        findings.chain(manual).max()
    }

    /// Whether the response includes a pause: a standing finding asks for one, or an
    /// operator did.
    pub fn wants_pause(&self) -> bool {
        self.pause_request.is_some()
            || self.findings.values().any(|f| !f.retracted && f.action.proposes_pause())
    }

    /// Whether the configs are rolled back after the pause.
    pub fn wants_rollback(&self) -> bool {
        self.pause_request.as_ref().is_some_and(|r| r.rollback)
            || self.findings.values().any(|f| !f.retracted && f.action.rolls_back())
    }

    /// A module pause was sent and not yet seen mined, and the incident still wants it.
    fn module_pause_in_flight(&self) -> bool {
        self.module_tx.is_some()
            && self.execution.is_none()
            && matches!(self.state, State::Open | State::Responding)
    }

    /// Whether a standing finding asks for the pause at once, through the module (an
    /// operator's request goes through the Safe: the owners are there to approve it).
    pub fn wants_pause_now(&self) -> bool {
        self.findings.values().any(|f| !f.retracted && f.action.pauses_now())
    }

    /// Whether humans are told about it (every action but `log`).
    pub fn notifies(&self) -> bool {
        self.pause_request.is_some() || self.findings.values().any(|f| f.action.notifies())
    }

    /// The pending pause proposal, if any.
    pub fn pending_proposal(&self) -> Option<(B256, &LinkedProposal)> {
        self.proposals
            .iter()
            .find(|(_, p)| p.state == ProposalState::Pending)
            .map(|(hash, p)| (*hash, p))
    }

    /// The response deadline: when an uncontained incident is first escalated.
    pub fn deadline(&self, policy: &ResponsePolicy) -> Option<Millis> {
        self.notifies().then(|| policy.first_escalation(self.severity, self.opened_at))
    }

    fn due_escalation(&self, policy: &ResponsePolicy) -> Option<Millis> {
        self.deadline(policy)
    }

    fn due_escalation_from(&self, policy: &ResponsePolicy, from: Millis) -> Option<Millis> {
        self.notifies().then(|| policy.first_escalation(self.severity, from))
    }

    fn unrequested(&self, event: &Event) -> StepError {
        StepError::Unrequested {
            event: event.name(),
            rollback: self.rollback.as_str(),
            pause_requested: self.pause_requested,
        }
    }
}

impl RollbackStatus {
    /// Lower-case name.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::NotOwed => "not owed",
            Self::Owed => "owed",
            Self::Running => "running",
            Self::Done { .. } => "done",
            Self::Failed { .. } => "failed",
        }
    }
}

fn link(nonce: U256, threshold: u64, state: ProposalState) -> LinkedProposal {
    LinkedProposal {
        nonce,
        state,
        approvals: 0,
        threshold,
        counted_at: 0,
        execute_requested: false,
        last_failure: None,
        failures: 0,
    }
}
