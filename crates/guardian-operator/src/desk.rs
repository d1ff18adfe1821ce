//! The operators' desk: everything an operator sees or does, whether through the CLI on the
//! validator host or through the daemon's HTTP API. One place decides what a pause request, a
//! resolution or an approval means; the CLI and the API only parse and print.

use std::{str::FromStr, sync::Arc};

use alloy::{
    primitives::{Address, B256},
    providers::DynProvider,
    signers::local::PrivateKeySigner,
};
use eyre::{Result, WrapErr, eyre};
use guardian_config::Config;
use guardian_core::{
    incident::{Event, Millis, RollbackStatus, State},
    proposal::SignedDomain,
};
use guardian_multisig::{
    Multisig, Proposal, ProposalDetail, Proposed, SubmitError, Submitted, Target,
};
use guardian_store::{
    Applied, EffectKind, FindingStatus, IncidentError, OutboxEffect, Store, StoredFinding,
    StoredIncident, now_ms,
};
use serde::{Deserialize, Serialize};

/// The Safe's targets as the config declares them, each with its rollback policy.
pub fn targets(config: &Config) -> Result<Vec<Target>> {
    config
        .contracts
        .iter()
        .map(|c| {
            Target::new(&c.name, c.address, &c.pause)
                .map(|t| t.with_rollback(c.policy.rollback_after_pause))
        })
        .collect()
}

/// Read the executor key from the variable `[safe] executor_key_env` names. The key is never
/// printed: errors name the variable only.
pub fn executor_key(config: &Config) -> Result<Option<PrivateKeySigner>> {
    let Some(var) = config.safe.as_ref().and_then(|s| s.executor_key_env.as_deref()) else {
        return Ok(None);
    };
    let value = std::env::var(var).map_err(|_| {
        eyre!("[safe] executor_key_env names ${var}, which is not set: this replica cannot execute")
    })?;
    PrivateKeySigner::from_str(value.trim())
        .map(Some)
        .map_err(|_| eyre!("${var} does not hold a 32-byte hex private key"))
}

/// Read the pause module's pauser key from the variable `[safe.module] pauser_key_env` names
/// (`None` without a module or the key). Never printed: errors name the variable only.
pub fn pauser_key(config: &Config) -> Result<Option<PrivateKeySigner>> {
    let module = config.safe.as_ref().and_then(|s| s.module.as_ref());
    let Some(var) = module.and_then(|m| m.pauser_key_env.as_deref()) else { return Ok(None) };
    let value = std::env::var(var).map_err(|_| {
        eyre!("[safe.module] pauser_key_env names ${var}, which is not set: this replica cannot pause at once")
    })?;
    PrivateKeySigner::from_str(value.trim())
        .map(Some)
        .map_err(|_| eyre!("${var} does not hold a 32-byte hex private key"))
}

/// This replica and its peers' names (`[replication]`, `[[replicas]]`), as a store relays to
/// them and names its local notifications.
pub fn store_replication(config: &Config) -> guardian_store::Replication {
    guardian_store::Replication {
        name: config.replication.name.clone(),
        peers: config.replication.peers.iter().map(|p| p.name.clone()).collect(),
    }
}

/// Connect the multisig service described by `config` over `provider`.
pub async fn connect(
    config: &Config,
    provider: DynProvider,
    executor: Option<PrivateKeySigner>,
) -> Result<Multisig> {
    let safe = config.safe.as_ref().ok_or_else(|| {
        eyre!("{}: no [safe] table: guardian has no Safe to propose to", config.source.display())
    })?;
    let multisig = Multisig::connect(
        provider,
        config.chain.id,
        safe.address,
        &config.storage.path,
        targets(config)?,
        executor,
        config.response,
    )
    .await?;
    let replication = &config.replication;
    let multisig = multisig.with_name(&replication.name);
    let multisig = if replication.peers.is_empty() {
        multisig
    } else {
        let multisig = multisig.with_replication(store_replication(config));
        for peer in &replication.peers {
            if let Some(executor) = peer.executor {
                multisig.set_peer_executor(&peer.name, executor);
            }
        }
        multisig
    };
    Ok(multisig)
}

/// Why the desk refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeskError {
    /// The incident machine refused (e.g. resolving an incident that is not contained).
    #[error("incident #{id}: {source}")]
    Refused {
        /// The incident.
        id: i64,
        /// Why.
        source: guardian_core::incident::StepError,
    },
    /// No such incident.
    #[error("no incident #{0} (see `guardian incidents list`)")]
    NoIncident(i64),
    /// This needs the chain (a configured `[safe]` and an RPC endpoint).
    #[error("{0} needs the Safe: connect with a config that has [safe] and a reachable [[rpc]]")]
    NotConnected(&'static str),
    /// Anything else.
    #[error(transparent)]
    Other(#[from] eyre::Report),
}

impl DeskError {
    fn from_apply(id: i64, error: IncidentError) -> Self {
        match error {
            IncidentError::Refused(source) => Self::Refused { id, source },
            IncidentError::NotFound(id) => Self::NoIncident(id),
            other => Self::Other(eyre!(other)),
        }
    }
}

/// A pause proposal as the desk shows it: the proposal, and its approvals as last counted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProposalView {
    /// The proposal.
    #[serde(flatten)]
    pub proposal: Proposal,
    /// Approvals last counted (off-chain signatures and `approveHash`), when known.
    pub approvals: Option<u64>,
    /// What the Safe needs, when known.
    pub threshold: Option<u64>,
    /// The exact command owners run to approve it, while it is pending.
    pub approve_command: Option<String>,
    /// How it stands on each replica (this one first), when `[[replicas]]` are configured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<crate::peers::ReplicaApprovals>,
}

/// One proposal as `proposals show`, `GET /proposals/{hash}` and `approve` show it: its
/// signatures and trail, its approvals of the threshold, the Safe's owners when read from the
/// chain, and the incident (severity, the rules that fired) it answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProposalDetailView {
    /// The proposal, its signatures and its trail.
    #[serde(flatten)]
    pub detail: ProposalDetail,
    /// Approvals (off-chain signatures and on-chain `approveHash`): counted now when the
    /// chain was read, else as last counted.
    #[serde(default)]
    pub approvals: Option<u64>,
    /// What the Safe needs.
    #[serde(default)]
    pub threshold: Option<u64>,
    /// The Safe's owners, when read from the chain.
    #[serde(default)]
    pub owners: Option<Vec<Address>>,
    /// The incident it answers.
    #[serde(default)]
    pub incident: Option<ProposalIncident>,
}

/// The incident a proposal answers, as its approvers need it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProposalIncident {
    /// Its number.
    pub id: i64,
    /// Its key, from chain facts (the same on every replica).
    #[serde(default)]
    pub key: Option<String>,
    /// Where it stands.
    pub state: String,
    /// Its severity (the highest of its standing findings).
    pub severity: String,
    /// Its findings: (id, rule, severity), retracted ones left out.
    pub findings: Vec<(i64, String, String)>,
    /// Who executed its pause, when someone did.
    pub executed_by: Option<String>,
}

/// One line of an incident list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IncidentSummary {
    /// The number operators use.
    pub id: i64,
    /// Chain-derived identity.
    pub key: String,
    /// The watched contract.
    pub contract: String,
    /// Its address.
    pub address: Address,
    /// Where it stands.
    pub state: State,
    /// Its severity.
    pub severity: guardian_core::severity::Severity,
    /// When it opened (UTC).
    pub opened: String,
    /// When it must be contained by (UTC), if it has a deadline.
    pub deadline: Option<String>,
    /// Past its deadline and not contained.
    pub overdue: bool,
    /// How many findings it holds.
    pub findings: usize,
    /// Its pending pause proposal: (safeTxHash, approvals, threshold).
    pub pending: Option<(B256, u64, u64)>,
    /// The rollback, in words.
    pub rollback: String,
}

/// One entry of an incident's timeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// Its position.
    pub seq: u64,
    /// When (UTC).
    pub at: String,
    /// Unix milliseconds.
    pub at_ms: Millis,
    /// The block it happened in or was seen at.
    pub block: Option<u64>,
    /// What happened.
    pub kind: String,
    /// The state it left the incident in.
    pub state: State,
    /// In words.
    pub detail: String,
}

/// A notification or job of an incident, with where its delivery stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EffectView {
    /// `notify`, `propose`, `execute` or `rollback`.
    pub kind: String,
    /// Its idempotency key.
    pub key: String,
    /// `done`, `pending` or `failing`.
    pub status: String,
    /// Failed attempts.
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// What it gave.
    pub outcome: Option<String>,
    /// A notification's delivery on each channel that has seen it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deliveries: Vec<guardian_store::DeliveryState>,
}

/// Everything about one incident: `guardian incidents show`, `GET /incidents/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IncidentView {
    /// The summary line.
    #[serde(flatten)]
    pub summary: IncidentSummary,
    /// The incident as the machine holds it.
    pub incident: guardian_core::incident::Incident,
    /// Its findings, with peak and latest values.
    pub findings: Vec<FindingView>,
    /// Its pause proposals.
    pub proposals: Vec<ProposalView>,
    /// Every transition, oldest first.
    pub timeline: Vec<TimelineEntry>,
    /// Its notifications.
    pub notifications: Vec<EffectView>,
    /// Its jobs (proposing, executing, rolling back).
    pub jobs: Vec<EffectView>,
}

/// A finding as the desk shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FindingView {
    /// The finding.
    #[serde(flatten)]
    pub finding: StoredFinding,
    /// Its one-line summary (peak and latest for a finding fed by several occurrences).
    pub text: String,
}

/// What asking for a pause did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PauseOutcome {
    /// The incident that carries it.
    pub incident: i64,
    /// Whether the request opened the incident.
    pub opened: bool,
    /// The pause proposal that now stands, if the Safe was asked already.
    pub proposal: Option<ProposalView>,
    /// Why no proposal stands (already paused, proposing failed and will be retried).
    pub note: Option<String>,
}

enum Backend {
    Local(Box<std::sync::Mutex<Store>>),
    Connected(Arc<Multisig>),
}

/// The operators' desk over one guardian database, with or without the chain.
pub struct Desk {
    backend: Backend,
    targets: Vec<Target>,
    response: guardian_core::incident::ResponsePolicy,
}

impl std::fmt::Debug for Desk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desk")
            .field("connected", &matches!(self.backend, Backend::Connected(_)))
            .finish_non_exhaustive()
    }
}

/// `ms` as an RFC 3339 UTC time.
pub fn utc(ms: Millis) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        // Milliseconds always three digits, so the lines of a listing align.
        .map(|t| format!("{}.{:03}Z", t.strftime("%Y-%m-%dT%H:%M:%S"), ms.rem_euclid(1000)))
        .unwrap_or_else(|| ms.to_string())
}

impl Desk {
    /// A desk on the local database only: lists, shows, resolves and cancels; no pause or
    /// approval (they need the Safe).
    pub fn local(config: &Config) -> Result<Self> {
        let mut store = Store::open(&config.storage.path)?;
        store.bind_chain(config.chain.id).wrap_err_with(|| {
            format!("the database {} belongs to another chain", config.storage.path.display())
        })?;
        store.set_policy(config.response);
        Ok(Self {
            backend: Backend::Local(Box::new(std::sync::Mutex::new(store))),
            targets: targets(config)?,
            response: config.response,
        })
    }

    /// A desk connected to the Safe through `multisig` (the daemon's, or one the CLI made):
    /// its targets (with their rollback policies) and the response
    /// deadlines of its database.
    pub fn over(multisig: Arc<Multisig>) -> Self {
        let targets = multisig.targets().to_vec();
        let response = *multisig.store().policy();
        Self { backend: Backend::Connected(multisig), targets, response }
    }

    /// The Safe service, when connected.
    pub fn multisig(&self) -> Option<&Arc<Multisig>> {
        match &self.backend {
            Backend::Connected(m) => Some(m),
            Backend::Local(_) => None,
        }
    }

    pub(crate) fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        match &self.backend {
            Backend::Local(store) => {
                store.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
            }
            Backend::Connected(multisig) => multisig.store(),
        }
    }

    fn require_safe(&self, what: &'static str) -> Result<&Arc<Multisig>, DeskError> {
        self.multisig().ok_or(DeskError::NotConnected(what))
    }

    fn summary(&self, stored: &StoredIncident, now: Millis) -> IncidentSummary {
        let incident = &stored.incident;
        let deadline = incident.deadline(&self.response);
        IncidentSummary {
            id: stored.id,
            key: incident.key.clone(),
            contract: incident.contract.clone(),
            address: incident.address,
            state: incident.state,
            severity: incident.severity,
            opened: utc(incident.opened_at),
            deadline: deadline.map(utc),
            overdue: deadline.is_some_and(|d| d <= now)
                && matches!(incident.state, State::Open | State::Responding),
            findings: incident.findings.len(),
            pending: incident.pending_proposal().map(|(hash, p)| (hash, p.approvals, p.threshold)),
            rollback: match &incident.rollback {
                RollbackStatus::Done { undo: Some(undo) } => {
                    format!("done; undo with backup {undo}")
                }
                RollbackStatus::Failed { error } => format!("failed: {error}"),
                other => other.as_str().to_owned(),
            },
        }
    }

    /// Incidents, newest first (`open_only`: those not resolved, withdrawn or cancelled).
    pub fn incidents(&self, open_only: bool) -> Result<Vec<IncidentSummary>> {
        let now = now_ms();
        let stored = self.store().incidents(open_only)?;
        Ok(stored.iter().map(|s| self.summary(s, now)).collect())
    }

    /// One incident with its findings, proposals, timeline, notifications and jobs.
    pub fn incident(&self, id: i64) -> Result<IncidentView, DeskError> {
        let store = self.store();
        let stored = store.incident(id)?.ok_or(DeskError::NoIncident(id))?;
        let findings = store
            .incident_findings(id)?
            .into_iter()
            .map(|f| FindingView { text: f.summary(), finding: f })
            .collect();
        let proposals =
            store.incident_proposals(id)?.into_iter().map(|p| view(&stored, p)).collect();
        let timeline = store
            .incident_events(id)?
            .into_iter()
            .map(|e| TimelineEntry {
                seq: e.seq,
                at: utc(e.at),
                at_ms: e.at,
                block: e.block,
                kind: e.kind.as_str().to_owned(),
                state: e.to,
                detail: e.event.describe(),
            })
            .collect();
        let (mut notifications, mut jobs) = (Vec::new(), Vec::new());
        for effect in store.incident_effects(id)? {
            let is_notice = matches!(effect.effect, guardian_core::incident::Effect::Notify(_));
            let mut view = effect_view(&effect);
            if is_notice {
                view.deliveries = store.deliveries(effect.id)?;
                if view.status == "pending"
                    && view.deliveries.iter().any(|d| d.status() == "failing")
                {
                    view.status = "failing".to_owned();
                }
            }
            if is_notice { notifications.push(view) } else { jobs.push(view) }
        }
        drop(store);
        Ok(IncidentView {
            summary: self.summary(&stored, now_ms()),
            incident: stored.incident,
            findings,
            proposals,
            timeline,
            notifications,
            jobs,
        })
    }

    /// Findings, newest first; `open_only` and `contract` (a name or an address) filter.
    pub fn findings(&self, open_only: bool, contract: Option<&str>) -> Result<Vec<FindingView>> {
        let status = open_only.then_some(FindingStatus::Open);
        let wanted = |f: &StoredFinding| {
            contract.is_none_or(|c| {
                f.finding.contract == c || f.finding.address.to_string().eq_ignore_ascii_case(c)
            })
        };
        Ok(self
            .store()
            .findings(status)?
            .into_iter()
            .filter(wanted)
            .map(|f| FindingView { text: f.summary(), finding: f })
            .collect())
    }

    /// Close a contained incident (`guardian incidents resolve`).
    pub fn resolve(&self, id: i64, actor: &str, note: &str) -> Result<Applied, DeskError> {
        let event = Event::OperatorResolve { actor: actor.to_owned(), note: note.to_owned() };
        self.store().apply(id, &event).map_err(|e| DeskError::from_apply(id, e))
    }

    /// Call an incident off, withdrawing its pending proposals (`guardian incidents cancel`).
    pub fn cancel(&self, id: i64, actor: &str, reason: &str) -> Result<Applied, DeskError> {
        let event = Event::OperatorCancel { actor: actor.to_owned(), reason: reason.to_owned() };
        self.store().apply(id, &event).map_err(|e| DeskError::from_apply(id, e))
    }

    /// Reopen a closed incident.
    pub fn reopen(&self, id: i64, actor: &str, note: &str) -> Result<Applied, DeskError> {
        let event = Event::OperatorReopen { actor: actor.to_owned(), note: note.to_owned() };
        self.store().apply(id, &event).map_err(|e| DeskError::from_apply(id, e))
    }

    /// What this replica still owes each peer (proposals and signatures not relayed yet).
    pub fn relay_backlog(&self) -> Result<Vec<guardian_store::RelayBacklog>> {
        self.store().relay_backlog()
    }

    /// Every proposal, newest first, with its approvals as last counted.
    pub fn proposals(&self) -> Result<Vec<ProposalView>> {
        let store = self.store();
        let proposals = store.proposals(None)?;
        let mut out = Vec::with_capacity(proposals.len());
        for p in proposals {
            let incident = match p.incident_id {
                Some(id) => store.incident(id)?,
                None => None,
            };
            out.push(match &incident {
                Some(incident) => view(incident, p),
                // Outside any incident: its verified signatures (on-chain approvals are counted
                // when the daemon looks at it).
                None => ProposalView {
                    approve_command: pending_command(&p),
                    approvals: (p.status == guardian_multisig::ProposalStatus::Pending)
                        .then(|| store.proposal_signatures(p.safe_tx_hash).map(|s| s.len() as u64))
                        .transpose()?,
                    proposal: p,
                    threshold: None,
                    replicas: Vec::new(),
                },
            });
        }
        Ok(out)
    }

    /// One proposal with its signatures, trail, incident and approvals as last counted (the
    /// database only).
    pub fn proposal(&self, hash: B256) -> Result<ProposalDetailView> {
        let detail = guardian_multisig::service::detail(&self.store(), hash)?
            .ok_or_else(|| eyre!("no proposal with safeTxHash {hash}"))?;
        self.detail_view(detail)
    }

    /// [`proposal`](Self::proposal), the approvals counted now (on-chain `approveHash`
    /// included), the threshold and the owners read from the chain when the desk has the Safe.
    pub async fn proposal_live(&self, hash: B256) -> Result<ProposalDetailView> {
        let mut view = self.proposal(hash)?;
        if let Some(multisig) = self.multisig() {
            let safe = multisig.safe();
            view.approvals = Some(multisig.approvals(&view.detail.proposal).await?.len() as u64);
            view.threshold = Some(safe.threshold().await?);
            view.owners = Some(safe.owners().await?);
        }
        Ok(view)
    }

    /// `detail` with its incident and its approvals as last counted.
    pub fn detail_view(&self, detail: ProposalDetail) -> Result<ProposalDetailView> {
        let stored = match detail.proposal.incident_id {
            Some(id) => self.store().incident(id)?,
            None => None,
        };
        let link =
            stored.as_ref().and_then(|s| s.incident.proposals.get(&detail.proposal.safe_tx_hash));
        let (approvals, threshold) = (link.map(|l| l.approvals), link.map(|l| l.threshold));
        let incident = stored.map(|s| ProposalIncident {
            id: s.id,
            key: Some(s.incident.key.clone()),
            state: s.incident.state.as_str().to_owned(),
            severity: s.incident.severity.as_str().to_owned(),
            findings: s
                .incident
                .findings
                .iter()
                .filter(|(_, f)| !f.retracted)
                .map(|(id, f)| (*id, f.rule.clone(), f.severity.as_str().to_owned()))
                .collect(),
            executed_by: s
                .incident
                .execution
                .as_ref()
                .map(|e| format!("{} {} in tx {}", e.by.as_str(), e.sender, e.tx)),
        });
        Ok(ProposalDetailView { detail, approvals, threshold, owners: None, incident })
    }

    /// An operator's pause of `contract` (`guardian pause`, `POST /proposals`): recorded on the
    /// contract's incident (opening one), which keeps the contract's rollback policy, then the
    /// Safe is asked at once. A target already paused is said so.
    pub async fn pause(
        &self,
        contract: &str,
        actor: &str,
        reason: &str,
    ) -> Result<PauseOutcome, DeskError> {
        let multisig = self.require_safe("pausing")?;
        let target = self.target(contract)?.clone();
        let requested = self.store().request_pause(
            &target.name,
            target.address,
            actor,
            reason,
            target.rollback,
        );
        let applied = match requested {
            Ok(applied) => applied,
            Err(IncidentError::Refused(guardian_core::incident::StepError::AlreadyContained {
                state,
            })) => {
                let open = self.store().open_incident(target.address)?;
                return Ok(PauseOutcome {
                    incident: open.map(|o| o.id).unwrap_or_default(),
                    opened: false,
                    proposal: None,
                    note: Some(format!("{} is already paused (incident {state})", target.name)),
                });
            }
            Err(e) => return Err(DeskError::Other(eyre!(e))),
        };
        let id = applied.incident_id;
        let mut note = None;
        // Carry out the incident's pending proposal request now (the daemon would do the same
        // moment; whoever is second finds the same safeTxHash and changes nothing).
        let due: Vec<OutboxEffect> = self
            .store()
            .incident_effects(id)?
            .into_iter()
            .filter(|e| e.done_at.is_none() && e.kind() == Some(EffectKind::Propose))
            .collect();
        for effect in due {
            match multisig.run_effect(&effect).await {
                Ok(outcome) => self.store().effect_done(effect.id, &outcome)?,
                Err(error) => {
                    let message = format!("{error:#}");
                    self.store().effect_failed(effect.id, &message, now_ms() + 30_000)?;
                    note = Some(format!("proposing failed (retried by the daemon): {message}"));
                }
            }
        }
        let incident = self.store().incident(id)?.ok_or(DeskError::NoIncident(id))?;
        let proposal = match incident.incident.pending_proposal() {
            Some((hash, _)) => self.store().proposal(hash)?.map(|p| view(&incident, p)),
            None => None,
        };
        if proposal.is_none() && note.is_none() && incident.incident.state.is_contained() {
            note = Some(format!("{} is already paused", target.name));
        }
        Ok(PauseOutcome { incident: id, opened: applied.opened, proposal, note })
    }

    /// An operator's unpause of `contract`: a Safe proposal at the full threshold, never
    /// automatic.
    pub async fn unpause(
        &self,
        contract: &str,
        actor: &str,
        reason: &str,
    ) -> Result<Proposed, DeskError> {
        let multisig = self.require_safe("unpausing")?;
        Ok(multisig.propose_unpause(contract, reason, actor).await?)
    }

    /// Verify and store an owner's signature.
    pub async fn submit_signature(
        &self,
        hash: B256,
        signer: Address,
        signature: &[u8],
    ) -> Result<Submitted, SubmitError> {
        let multisig = self
            .multisig()
            .ok_or_else(|| SubmitError::Internal(eyre!("approving needs the Safe")))?;
        multisig.submit_signature(hash, signer, signature).await
    }

    /// [`submit_signature`](Self::submit_signature) of the signature as an owner sent it
    /// (hex text): text that is not hex is refused as such.
    pub async fn submit_signature_hex(
        &self,
        hash: B256,
        signer: Address,
        signature: &str,
        domain: Option<SignedDomain>,
    ) -> Result<Submitted, SubmitError> {
        let multisig = self
            .multisig()
            .ok_or_else(|| SubmitError::Internal(eyre!("approving needs the Safe")))?;
        multisig.submit_signature_hex(hash, signer, signature, domain).await
    }

    fn target(&self, contract: &str) -> Result<&Target> {
        self.targets
            .iter()
            .find(|t| t.name == contract || t.address.to_string().eq_ignore_ascii_case(contract))
            .ok_or_else(|| {
                let names: Vec<&str> = self.targets.iter().map(|t| t.name.as_str()).collect();
                eyre!("unknown contract {contract:?} (configured: {})", names.join(", "))
            })
    }
}

fn pending_command(p: &Proposal) -> Option<String> {
    (p.status == guardian_multisig::ProposalStatus::Pending)
        .then(|| format!("guardian approve {}", p.safe_tx_hash))
}

fn view(incident: &StoredIncident, p: Proposal) -> ProposalView {
    let link = incident.incident.proposals.get(&p.safe_tx_hash);
    ProposalView {
        approvals: link.map(|l| l.approvals),
        threshold: link.map(|l| l.threshold),
        approve_command: pending_command(&p),
        proposal: p,
        replicas: Vec::new(),
    }
}

fn effect_view(effect: &OutboxEffect) -> EffectView {
    EffectView {
        kind: effect.kind().map_or("?", EffectKind::as_str).to_owned(),
        key: effect.key.clone(),
        status: match (effect.done_at, effect.attempts) {
            (Some(_), _) => "done",
            (None, 0) => "pending",
            (None, _) => "failing",
        }
        .to_owned(),
        attempts: effect.attempts,
        last_error: effect.last_error.clone(),
        outcome: effect.outcome.clone(),
        deliveries: Vec::new(),
    }
}
