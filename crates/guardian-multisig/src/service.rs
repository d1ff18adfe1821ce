//! The Safe side of an incident: propose the pause, count approvals, execute once, find out
//! who executed, verify `paused()`, and report each fact to the incident machine.
//!
//! Nothing here decides what happens next: every observation becomes an
//! [`Event`](guardian_core::incident::Event) applied to the incident
//! ([`guardian_store::Store::apply`]), and the machine's effects (propose, execute) come back
//! through the outbox. Exactly-once does not rest on coordination between replicas: the Safe's
//! nonce makes a second execution of the same `safeTxHash` impossible, and who executed is read
//! from the mined transaction's sender.

use std::sync::{Mutex, MutexGuard};

use alloy::{
    eips::BlockId,
    network::TransactionResponse,
    primitives::{Address, B256, Bytes, U256},
    providers::{DynProvider, Provider},
    rpc::types::Filter,
    signers::local::PrivateKeySigner,
    sol_types::SolEvent,
};
use eyre::{Result, WrapErr, eyre};
use guardian_chain::{
    safe::{ISafe, SafeClient, is_paused},
    sender::SendOptions,
};
use guardian_core::{
    incident::{Attribution, Event, ResponsePolicy, StepError},
    proposal::{
        ProposalKind, Rejection, SignedDomain, check_signature, no_arg_calldata, proposal_tx,
    },
    safe::{Approvals, OwnerApproval},
};
use guardian_store::{Applied, IncidentError, Store, StoredIncident, Trail};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::store::{Proposal, ProposalStatus};

/// A contract the Safe may pause and unpause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The configured name.
    pub name: String,
    /// Its address.
    pub address: Address,
    /// Calldata of its pause function.
    pub pause: Bytes,
    /// Calldata of its unpause function.
    pub unpause: Bytes,
    /// Roll the managed configs back after its pause (its `on_pause = "rollback"`).
    pub rollback: bool,
}

impl Target {
    /// A target whose pause function is `pause_signature` (e.g. `pause()`); the unpause function
    /// is the same name prefixed with `un` (`unpause()`), as in OpenZeppelin's `Pausable`.
    pub fn new(name: &str, address: Address, pause_signature: &str) -> Result<Self> {
        let pause = no_arg_calldata(pause_signature).map_err(|e| eyre!(e))?;
        let unpause =
            no_arg_calldata(&format!("un{}", pause_signature.trim())).map_err(|e| eyre!(e))?;
        Ok(Self { name: name.to_owned(), address, pause, unpause, rollback: false })
    }

    /// The same target, rolling its configs back after a pause when `rollback` is set.
    pub fn with_rollback(mut self, rollback: bool) -> Self {
        self.rollback = rollback;
        self
    }

    fn calldata(&self, kind: ProposalKind) -> Result<Bytes> {
        match kind {
            ProposalKind::Pause => Ok(self.pause.clone()),
            ProposalKind::Unpause => Ok(self.unpause.clone()),
            other => Err(eyre!("{} is not a call on {}", other.as_str(), self.name)),
        }
    }
}

/// What asking for a proposal did.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Proposed {
    /// A new pending proposal.
    New {
        /// It.
        proposal: Proposal,
    },
    /// A pending proposal for the same target and direction exists (possibly from another
    /// replica's identical derivation): it is returned instead of a competing one.
    Existing {
        /// It.
        proposal: Proposal,
    },
    /// The target is already in the requested state; nothing was proposed.
    AlreadyInState {
        /// The target's name.
        contract: String,
        /// `paused` or `not paused`.
        state: &'static str,
    },
}

impl Proposed {
    /// The proposal, if one stands.
    pub fn proposal(&self) -> Option<&Proposal> {
        match self {
            Self::New { proposal } | Self::Existing { proposal } => Some(proposal),
            Self::AlreadyInState { .. } => None,
        }
    }
}

/// Why a signature was not stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// No proposal with this hash.
    #[error("no proposal with safeTxHash {0}")]
    NotFound(B256),
    /// The proposal no longer collects approvals.
    #[error("proposal {hash} is {status}{}", reason_text(.reason.as_deref(), .replaced_by))]
    NotPending {
        /// The proposal.
        hash: B256,
        /// Where it stands.
        status: &'static str,
        /// Why it was withdrawn, when it was.
        reason: Option<String>,
        /// Its replacement, when stale.
        replaced_by: Option<B256>,
    },
    /// Verified and refused.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// Database or chain failure.
    #[error(transparent)]
    Internal(#[from] eyre::Report),
}

/// Why a proposal may not be approved (checked before anything is signed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApproveError {
    /// No proposal with this hash.
    #[error("no proposal with safeTxHash {0}")]
    NotFound(B256),
    /// It no longer collects approvals (withdrawn, stale, executed, skipped).
    #[error("refusing to approve: {0}")]
    NotPending(String),
    /// Its stored fields do not hash to it for this chain and Safe.
    #[error(
        "proposal {hash} does not hash to itself for chain {chain_id} and Safe {safe} (got {recomputed}): refusing to sign"
    )]
    HashMismatch {
        /// The hash asked for.
        hash: B256,
        /// The chain the node serves.
        chain_id: u64,
        /// The configured Safe.
        safe: Address,
        /// What the fields hash to.
        recomputed: B256,
    },
    /// Database failure.
    #[error(transparent)]
    Internal(#[from] eyre::Report),
}

impl ApproveError {
    /// A safety check refused (as opposed to a failure to look).
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::NotPending(_) | Self::HashMismatch { .. })
    }
}

impl SubmitError {
    /// The proposal or the signature was refused by a check (as opposed to a failure).
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::NotPending { .. } | Self::Rejected(_))
    }
}

fn reason_text(reason: Option<&str>, replaced_by: &Option<B256>) -> String {
    match (reason, replaced_by) {
        (Some(reason), _) => format!(": {reason}"),
        (None, Some(hash)) => format!("; sign its replacement {hash}"),
        (None, None) => String::new(),
    }
}

/// A stored (or already present) approval.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submitted {
    /// False when the same owner's signature was already stored (idempotent resend).
    pub added: bool,
    /// Distinct owners who approved so far (off-chain and on-chain).
    pub approvals: usize,
    /// How many the Safe needs.
    pub threshold: u64,
}

/// A proposal with its approvals and audit trail, as `proposals show` and the API present it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProposalDetail {
    /// The proposal.
    #[serde(flatten)]
    pub proposal: Proposal,
    /// Verified off-chain signatures.
    pub signatures: Vec<crate::store::StoredSignature>,
    /// Its trail, oldest first.
    pub events: Vec<crate::store::AuditEvent>,
}

/// What one look at a pending proposal found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Nothing new.
    Unchanged,
    /// Approvals counted (the incident was told if the count changed).
    Approvals {
        /// How many.
        approvals: usize,
        /// Of.
        threshold: u64,
    },
    /// Executed (here, by another replica or by an outside sender) and settled.
    Executed {
        /// The transaction.
        tx: B256,
        /// Its sender.
        sender: Address,
    },
    /// Its nonce went to another transaction.
    Stale,
    /// An unpause was executed by this replica at its threshold.
    UnpauseExecuted {
        /// The transaction.
        tx: B256,
    },
}

/// One replica's view of the operators' Safe and its proposals.
pub struct Multisig {
    safe: SafeClient,
    provider: DynProvider,
    targets: Vec<Target>,
    executor: Option<PrivateKeySigner>,
    send: SendOptions,
    replica: String,
    db: Mutex<Store>,
    /// The peers' executors by name, as configured or learned from their `/health`: ranks
    /// who sends, and names a peer that executed.
    peers: std::sync::RwLock<Vec<(String, Address)>>,
    /// Rank k waits k × this after the threshold before sending (see [`Multisig::turn_to_send`]).
    sender_delay: std::time::Duration,
    /// When this process first found each proposal ready to send.
    ready_since: Mutex<std::collections::HashMap<B256, std::time::Instant>>,
    /// Held while counting a proposal's approvals and telling its incident: two counts at
    /// once (the API's and the poll's) must not tell an older figure after a newer one.
    counting: tokio::sync::Mutex<()>,
    /// This replica's name (`[replication] name`), for `/health`.
    name: Option<String>,
}

impl std::fmt::Debug for Multisig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the executor key: only its address.
        f.debug_struct("Multisig")
            .field("safe", &self.safe.address())
            .field("chain_id", &self.safe.chain_id())
            .field("executor", &self.executor.as_ref().map(PrivateKeySigner::address))
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

impl Multisig {
    /// Connect to the Safe at `safe` and open the guardian database at `db` with `policy`.
    ///
    /// Refuses when the node serves another chain than `chain_id`: every signature is bound to
    /// the chain id of the Safe's EIP-712 domain, and that must be the configured one.
    pub async fn connect(
        provider: DynProvider,
        chain_id: u64,
        safe: Address,
        db: &std::path::Path,
        targets: Vec<Target>,
        executor: Option<PrivateKeySigner>,
        policy: ResponsePolicy,
    ) -> Result<Self> {
        let safe = SafeClient::connect(provider.clone(), safe).await?;
        eyre::ensure!(
            safe.chain_id() == chain_id,
            "the node serves chain {}, guardian is configured for chain {chain_id}: refusing to propose or sign",
            safe.chain_id()
        );
        let mut store = Store::open(db)?;
        store.bind_chain(chain_id)?;
        store.set_policy(policy);
        let replica = match &executor {
            Some(key) => format!("replica {}", key.address()),
            None => "replica (no executor key)".to_owned(),
        };
        Ok(Self {
            safe,
            provider,
            targets,
            executor,
            send: SendOptions::default(),
            replica,
            db: Mutex::new(store),
            peers: std::sync::RwLock::new(Vec::new()),
            sender_delay: std::time::Duration::from_secs(4),
            ready_since: Mutex::new(std::collections::HashMap::new()),
            counting: tokio::sync::Mutex::new(()),
            name: None,
        })
    }

    /// Name this replica `name` among its `peers` (`[replication]`, `[[replicas]]`): trails
    /// say `replica <name> (<executor>)`, and every proposal stored and signature accepted
    /// from now on is queued for each peer.
    pub fn with_replication(mut self, replication: guardian_store::Replication) -> Self {
        let name = &replication.name;
        self.replica = match self.executor() {
            Some(address) => format!("replica {name} ({address})"),
            None => format!("replica {name} (no executor key)"),
        };
        self.store().set_replication(replication);
        self
    }

    /// Call this replica `name` (`[replication] name`), as its `/health` says.
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// This replica's name, when configured.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Record peer `name`'s executor (pinned in the config or learned from its `/health`).
    pub fn set_peer_executor(&self, name: &str, executor: Address) {
        let mut peers = self.peers.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match peers.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = executor,
            None => peers.push((name.to_owned(), executor)),
        }
    }

    /// The peers' executors known so far, by name.
    pub fn peer_executors(&self) -> Vec<(String, Address)> {
        self.peers.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// This replica's rank to send `hash`'s execution among every executor known (see
    /// [`guardian_core::replication::sender_rank`]); 0 without an executor or peers.
    pub fn sender_rank(&self, hash: B256) -> usize {
        let Some(me) = self.executor() else { return 0 };
        let all: Vec<Address> = self.peer_executors().into_iter().map(|(_, a)| a).collect();
        guardian_core::replication::sender_rank(hash, me, &all)
    }

    /// Let the replica of rank k send k × `delay` after the threshold (default 4 s: two of
    /// chain 138's 2 s blocks).
    pub fn with_sender_delay(mut self, delay: std::time::Duration) -> Self {
        self.sender_delay = delay;
        self
    }

    /// Whether it is this replica's turn to send `hash`'s execution, now that its threshold
    /// is met: at once for rank 0, else rank × the sender delay after this process first found
    /// it ready (a restart waits again: the safe direction). `Err` holds the wait left. The
    /// caller still checks the Safe's nonce before sending.
    pub fn turn_to_send(&self, hash: B256) -> Result<(), std::time::Duration> {
        let rank = self.sender_rank(hash);
        if rank == 0 {
            return Ok(());
        }
        let wait = guardian_core::replication::sender_wait(rank, self.sender_delay);
        let mut ready = self.ready_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let since = *ready.entry(hash).or_insert_with(std::time::Instant::now);
        match wait.checked_sub(since.elapsed()) {
            Some(left) if !left.is_zero() => Err(left),
            _ => Ok(()),
        }
    }

    /// Who `sender` is, in words: this replica, a peer by name, or an outside address.
    pub fn sender_name(&self, sender: Address) -> String {
        if Some(sender) == self.executor() {
            return self.replica.clone();
        }
        match self.peer_executors().into_iter().find(|(_, a)| *a == sender) {
            Some((name, _)) => format!("replica {name} ({sender})"),
            None => format!("{} {sender}", Attribution::Outside.as_str()),
        }
    }

    /// Use these delivery knobs for `execTransaction`.
    pub fn with_send_options(mut self, send: SendOptions) -> Self {
        self.send = send;
        self
    }

    /// The Safe.
    pub fn safe(&self) -> &SafeClient {
        &self.safe
    }

    /// The provider every request goes through.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The configured targets.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The address this replica executes from, if it has a key.
    pub fn executor(&self) -> Option<Address> {
        self.executor.as_ref().map(PrivateKeySigner::address)
    }

    /// Who this replica is, in the audit trail.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The database, locked. A panic while holding the lock leaves SQLite consistent
    /// (transactions roll back).
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.db.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The configured target named `contract` (or at that address).
    pub fn target(&self, contract: &str) -> Result<&Target> {
        self.targets
            .iter()
            .find(|t| t.name == contract || t.address.to_string().eq_ignore_ascii_case(contract))
            .ok_or_else(|| {
                let names: Vec<&str> = self.targets.iter().map(|t| t.name.as_str()).collect();
                eyre!("unknown contract {contract:?} (configured: {})", names.join(", "))
            })
    }

    fn target_at(&self, address: Address) -> Result<&Target> {
        self.targets
            .iter()
            .find(|t| t.address == address)
            .ok_or_else(|| eyre!("contract {address} is not among the Safe's configured targets"))
    }

    /// Apply `event` to incident `id`, logging a refusal (a stale answer after the incident
    /// moved on) instead of failing the caller.
    fn tell(&self, id: i64, event: &Event) -> Result<Option<Applied>> {
        match self.store().apply(id, event) {
            Ok(applied) => Ok(Some(applied)),
            Err(IncidentError::Refused(refused)) => {
                debug!(incident = id, event = event.name(), %refused, "the incident did not take the event");
                Ok(None)
            }
            Err(e) => Err(eyre!(e)),
        }
    }

    /// Carry out an incident's `ProposePause` effect: propose `pause()` of its contract at the
    /// Safe's current nonce, simulated as the Safe first, and tell the incident what came of
    /// it. A target already paused is reported as such; a pending pause of the same target is
    /// adopted instead of a competing one. Returns an error (to be retried) when proposing
    /// failed; the incident has been told the cause.
    pub async fn propose_pause(&self, incident: &StoredIncident) -> Result<Proposed> {
        let id = incident.id;
        let target = self.target_at(incident.incident.address)?.clone();
        let existing = self.store().pending_proposal_for(
            self.safe.address(),
            target.address,
            ProposalKind::Pause,
        )?;
        if let Some(existing) = existing {
            let threshold = self.safe.threshold().await?;
            self.store()
                .record_proposal(id, &existing, threshold, &self.replica, "adopted by the incident")
                .map_err(|e| eyre!(e))?;
            return Ok(Proposed::Existing { proposal: existing });
        }
        if is_paused(&self.provider, target.address).await? {
            let block = self.provider.get_block_number().await.wrap_err("eth_blockNumber")?;
            self.tell(id, &Event::AlreadyPaused { block })?;
            info!(incident = id, contract = %target.name, "already paused; nothing to propose");
            return Ok(Proposed::AlreadyInState { contract: target.name, state: "paused" });
        }
        if let Err(error) = self.simulate_as_safe(&target, ProposalKind::Pause).await {
            let cause = format!("{error:#}");
            self.tell(id, &Event::ProposalFailed { cause: cause.clone() })?;
            return Err(error.wrap_err(format!("refusing to propose the pause of {}", target.name)));
        }
        let replaces = incident
            .incident
            .proposals
            .iter()
            .filter(|(_, p)| p.state == guardian_core::incident::ProposalState::Stale)
            .max_by_key(|(_, p)| p.nonce)
            .map(|(hash, _)| *hash);
        let nonce = self.safe.nonce().await?;
        let reason = match &incident.incident.pause_request {
            Some(request) => format!("{}: {}", request.actor, request.reason),
            None => format!("incident #{id} ({})", incident.incident.key),
        };
        let call = (target.address, target.calldata(ProposalKind::Pause)?, target.name.as_str());
        let mut proposal = self.build(call, ProposalKind::Pause, &reason, nonce, replaces).await?;
        proposal.finding_id = incident.incident.findings.keys().next().copied();
        proposal.then_rollback = incident.incident.wants_rollback();
        let threshold = self.safe.threshold().await?;
        let detail = format!("pause {} at Safe nonce {nonce}: {reason}", target.name);
        let applied = self
            .store()
            .record_proposal(id, &proposal, threshold, &self.replica, &detail)
            .map_err(|e| eyre!(e))?;
        if applied.changed() {
            info!(incident = id, hash = %proposal.safe_tx_hash, contract = %target.name, %nonce, "pause proposed");
        }
        let stored = self.store().proposal(proposal.safe_tx_hash)?.unwrap_or(proposal);
        Ok(Proposed::New { proposal: stored })
    }

    /// Carry out an outbox row of kind `propose` or `execute` for its incident. Returns what it
    /// gave, for the row's outcome; an error means "try again later" (the incident has been
    /// told the cause where it has one).
    pub async fn run_effect(&self, row: &guardian_store::OutboxEffect) -> Result<String> {
        let incident = self.store().incident(row.incident_id)?.ok_or_else(|| {
            eyre!("outbox row {} names missing incident #{}", row.id, row.incident_id)
        })?;
        match &row.effect {
            guardian_core::incident::Effect::ProposePause => {
                if !incident.incident.pause_requested || incident.incident.state.is_closed() {
                    return Ok(format!("dropped: incident #{} no longer asks for it", incident.id));
                }
                Ok(match self.propose_pause(&incident).await? {
                    Proposed::New { proposal } => format!("proposed {}", proposal.safe_tx_hash),
                    Proposed::Existing { proposal } => {
                        format!("adopted pending {}", proposal.safe_tx_hash)
                    }
                    Proposed::AlreadyInState { contract, state } => {
                        format!("{contract} is {state}")
                    }
                })
            }
            guardian_core::incident::Effect::Execute { proposal } => {
                Ok(match self.execute_attempt(*proposal, row.attempts > 0).await? {
                    Observed::Executed { tx, sender } => format!("executed in {tx} by {sender}"),
                    Observed::Stale => "nonce consumed by another transaction".to_owned(),
                    other => format!("{other:?}"),
                })
            }
            other => Err(eyre!("not an effect of the Safe: {other:?}")),
        }
    }

    /// Propose unpausing `contract` for an operator (never automatically). It needs the full
    /// threshold like any Safe transaction; a stale unpause is not proposed again by itself.
    pub async fn propose_unpause(
        &self,
        contract: &str,
        reason: &str,
        actor: &str,
    ) -> Result<Proposed> {
        let target = self.target(contract)?.clone();
        if let Some(existing) = self.store().pending_proposal_for(
            self.safe.address(),
            target.address,
            ProposalKind::Unpause,
        )? {
            return Ok(Proposed::Existing { proposal: existing });
        }
        if !is_paused(&self.provider, target.address).await? {
            return Ok(Proposed::AlreadyInState { contract: target.name, state: "not paused" });
        }
        self.simulate_as_safe(&target, ProposalKind::Unpause)
            .await
            .wrap_err_with(|| format!("refusing to propose the unpause of {}", target.name))?;
        let nonce = self.safe.nonce().await?;
        let call = (target.address, target.calldata(ProposalKind::Unpause)?, target.name.as_str());
        let proposal = self.build(call, ProposalKind::Unpause, reason, nonce, None).await?;
        let detail = format!("unpause {} at Safe nonce {nonce}: {reason}", target.name);
        let new = self.store().insert_proposal(&proposal, actor, &detail)?;
        let stored = self.store().proposal(proposal.safe_tx_hash)?.unwrap_or(proposal);
        if new {
            info!(hash = %stored.safe_tx_hash, contract = %target.name, %nonce, "unpause proposed");
            Ok(Proposed::New { proposal: stored })
        } else {
            Ok(Proposed::Existing { proposal: stored })
        }
    }

    /// The proposal of `kind` calling `call` = (to, calldata, label) at `nonce`.
    /// Propose a Safe transaction that administers the Safe itself (enabling or disabling the
    /// pause module), for an operator: simulated as the Safe first, approved and executed like
    /// any proposal at the full threshold, never automatically again once stale.
    pub async fn propose_safe_call(
        &self,
        kind: ProposalKind,
        (to, data, label): (Address, Bytes, &str),
        reason: &str,
        actor: &str,
    ) -> Result<Proposed> {
        eyre::ensure!(
            matches!(kind, ProposalKind::EnableModule | ProposalKind::DisableModule),
            "{} proposals are made for a watched contract, not as a Safe call",
            kind.as_str()
        );
        if let Some(existing) = self.store().pending_proposal_for(self.safe.address(), to, kind)? {
            return Ok(Proposed::Existing { proposal: existing });
        }
        guardian_chain::safe::simulate_as_safe(
            &self.provider,
            self.safe.address(),
            to,
            data.clone(),
        )
        .await
        .map_err(|e| eyre!("simulating {label} as the Safe reverts: {e:#}"))?;
        let nonce = self.safe.nonce().await?;
        let proposal = self.build((to, data, label), kind, reason, nonce, None).await?;
        let detail = format!("{} at Safe nonce {nonce}: {reason}", kind.as_str());
        let new = self.store().insert_proposal(&proposal, actor, &detail)?;
        let stored = self.store().proposal(proposal.safe_tx_hash)?.unwrap_or(proposal);
        Ok(if new {
            Proposed::New { proposal: stored }
        } else {
            Proposed::Existing { proposal: stored }
        })
    }

    async fn build(
        &self,
        (to, calldata, label): (Address, Bytes, &str),
        kind: ProposalKind,
        reason: &str,
        nonce: U256,
        replaces: Option<B256>,
    ) -> Result<Proposal> {
        let tx = proposal_tx(to, calldata.clone(), nonce);
        let hash = self.safe.tx_hash(&tx);
        // Bind to the deployed contract's own view of the domain: a mismatch means we would
        // collect signatures the Safe will never accept.
        let onchain = self.safe.onchain_tx_hash(&tx).await?;
        eyre::ensure!(
            onchain == hash,
            "local safeTxHash {hash} differs from the Safe's getTransactionHash {onchain}"
        );
        let created_block = self.provider.get_block_number().await.wrap_err("eth_blockNumber")?;
        let row = self.pending_row(hash, (to, calldata, label), kind, reason, nonce, created_block);
        Ok(Proposal { replaces, ..row })
    }

    /// A pending proposal of this Safe, hashed `hash`, calling `calldata` on `to` (named
    /// `label`) at `nonce`, as it is stored once simulated.
    pub(crate) fn pending_row(
        &self,
        hash: B256,
        (to, calldata, label): (Address, Bytes, &str),
        kind: ProposalKind,
        reason: &str,
        nonce: U256,
        created_block: u64,
    ) -> Proposal {
        Proposal {
            safe_tx_hash: hash,
            chain_id: self.safe.chain_id(),
            safe: self.safe.address(),
            kind,
            contract: label.to_owned(),
            target: to,
            calldata,
            nonce,
            finding_id: None,
            then_rollback: false,
            reason: reason.to_owned(),
            status: ProposalStatus::Pending,
            simulation: format!("ok: eth_call of {}() from the Safe succeeds", kind.as_str()),
            created_block,
            replaces: None,
            replaced_by: None,
            executed_tx: None,
            executed_by: None,
            created_at: String::new(),
            incident_id: None,
            withdrawn_reason: None,
        }
    }

    pub(crate) async fn simulate_as_safe(&self, target: &Target, kind: ProposalKind) -> Result<()> {
        guardian_chain::safe::simulate_as_safe(
            &self.provider,
            self.safe.address(),
            target.address,
            target.calldata(kind)?,
        )
        .await
        .map_err(|e| {
            eyre!("simulating {}() on {} as the Safe reverts: {e:#}", kind.as_str(), target.name)
        })
    }

    /// Verify an owner's signature for proposal `hash` and store it.
    ///
    /// Checked against the Safe's current owners and the configured chain's EIP-712 domain;
    /// every rejection is recorded in the proposal's trail with its own message. A withdrawn
    /// proposal is refused with the reason (a reorg retracted its finding, the incident was
    /// cancelled). Sending the same owner's signature again is accepted and changes nothing.
    pub async fn submit_signature(
        &self,
        hash: B256,
        signer: Address,
        signature: &[u8],
    ) -> Result<Submitted, SubmitError> {
        self.submit_signature_in(hash, signer, signature, None).await
    }

    /// [`submit_signature`](Self::submit_signature), with the EIP-712 domain the signer says
    /// was signed: a signature made on another network is then named as such.
    pub async fn submit_signature_in(
        &self,
        hash: B256,
        signer: Address,
        signature: &[u8],
        domain: Option<SignedDomain>,
    ) -> Result<Submitted, SubmitError> {
        self.accept_signature(hash, signer, signature, domain, false).await
    }

    /// A signature a peer replica relays: verified like an owner's, and kept also when the
    /// proposal was executed here meanwhile (so every replica lists the same signatures); only
    /// a pending proposal's count changes. A withdrawn or stale proposal refuses it.
    pub async fn submit_relayed_signature(
        &self,
        hash: B256,
        signer: Address,
        text: &str,
    ) -> Result<Submitted, SubmitError> {
        match text.trim().parse::<Bytes>() {
            Ok(bytes) => self.accept_signature(hash, signer, &bytes, None, true).await,
            Err(_) => self.submit_signature_hex(hash, signer, text, None).await,
        }
    }

    /// Verify and store a signature of `hash`; `relayed` (by a peer) also takes one of a
    /// proposal executed here, without counting it.
    async fn accept_signature(
        &self,
        hash: B256,
        signer: Address,
        signature: &[u8],
        domain: Option<SignedDomain>,
        relayed: bool,
    ) -> Result<Submitted, SubmitError> {
        let proposal = self.store().proposal(hash)?.ok_or(SubmitError::NotFound(hash))?;
        let executed = relayed && proposal.status == ProposalStatus::Executed;
        if !executed {
            not_pending(&proposal)?;
        }
        let owners = self.safe.owners().await?;
        let tx = proposal.safe_tx();
        let checked = check_signature(
            &tx,
            proposal.chain_id,
            proposal.safe,
            signer,
            signature,
            &owners,
            domain,
        );
        match checked {
            Ok(_) => {
                let added = self.store().add_signature(hash, signer, signature)?;
                let (approvals, threshold) = if executed {
                    let signed = self.store().proposal_signatures(hash)?.len();
                    (signed, self.safe.threshold().await?)
                } else {
                    self.count(&proposal).await?
                };
                info!(%hash, %signer, added, approvals, threshold, "owner signature verified");
                Ok(Submitted { added, approvals, threshold })
            }
            Err(rejection) => Err(self.rejected(hash, signer, &owners, rejection)?),
        }
    }

    /// [`submit_signature`](Self::submit_signature) of a signature as the text an owner
    /// sent: text that is not hex is refused (and recorded) as such, not as 0 bytes.
    pub async fn submit_signature_hex(
        &self,
        hash: B256,
        signer: Address,
        text: &str,
        domain: Option<SignedDomain>,
    ) -> Result<Submitted, SubmitError> {
        if let Ok(bytes) = text.trim().parse::<Bytes>() {
            return self.submit_signature_in(hash, signer, &bytes, domain).await;
        }
        let proposal = self.store().proposal(hash)?.ok_or(SubmitError::NotFound(hash))?;
        not_pending(&proposal)?;
        let owners = self.safe.owners().await?;
        Err(self.rejected(hash, signer, &owners, Rejection::not_hex(text))?)
    }

    /// Record a refused signature in the proposal's trail, aggregated: one row per source (the
    /// claimed signer when it owns the Safe, else "not an owner", so posts naming random
    /// signers share one row) and reason, counting repeats. Logged the first time and at each
    /// power of two, so a flood of junk is neither a flood of rows nor of log lines.
    fn rejected(
        &self,
        hash: B256,
        signer: Address,
        owners: &[Address],
        rejection: Rejection,
    ) -> Result<SubmitError, SubmitError> {
        let source =
            if owners.contains(&signer) { signer.to_string() } else { "not an owner".to_owned() };
        let message = rejection.to_string();
        let detail = format!("{message} (submitted as {signer}'s)");
        let count = self.store().proposal_rejection(hash, &source, rejection.kind(), &detail)?;
        if count.is_power_of_two() {
            warn!(%hash, %signer, reason = %message, count, "signature rejected");
        }
        Ok(SubmitError::Rejected(rejection))
    }

    /// Count `proposal`'s approvals and tell its incident when the count changed (which asks
    /// for the execution once the threshold is met). Returns (approvals, threshold).
    ///
    /// The head block is read first and the Safe read at it, then the stored signatures: a
    /// count that raced another process recording an approval (the CLI, a peer's relay, a
    /// second daemon) was read at an older block, or at the same block with fewer approvals,
    /// and the incident drops it instead of recording the approvals going down.
    async fn count(&self, proposal: &Proposal) -> Result<(usize, u64)> {
        let _one_at_a_time = self.counting.lock().await;
        let block = self.safe.head().await?;
        let at = BlockId::number(block);
        let approvals = self.approvals_at(proposal, at).await?.len();
        let threshold = self.safe.threshold_at(at).await?;
        if let Some(id) = proposal.incident_id {
            self.tell(
                id,
                &Event::ApprovalCounted {
                    proposal: proposal.safe_tx_hash,
                    approvals: approvals as u64,
                    threshold,
                    block,
                },
            )?;
        }
        Ok((approvals, threshold))
    }

    /// The approvals the Safe would accept right now: stored signatures of current owners, and
    /// on-chain `approveHash` calls read from the Safe (recorded in the trail when first seen).
    pub async fn approvals(&self, proposal: &Proposal) -> Result<Approvals> {
        self.approvals_at(proposal, BlockId::latest()).await
    }

    /// [`approvals`](Self::approvals) with the Safe read at `block`.
    async fn approvals_at(&self, proposal: &Proposal, block: BlockId) -> Result<Approvals> {
        let owners = self.safe.owners_at(block).await?;
        let tx = proposal.safe_tx();
        let hash = proposal.safe_tx_hash;
        let mut approvals = Approvals::new();
        let stored = self.store().proposal_signatures(hash)?;
        for stored in stored {
            // Re-checked: an owner removed since signing no longer counts.
            if let Ok(approval) = check_signature(
                &tx,
                proposal.chain_id,
                proposal.safe,
                stored.owner,
                &stored.signature,
                &owners,
                None,
            ) {
                approvals.insert(stored.owner, approval);
            }
        }
        for owner in owners {
            if approvals.owners().any(|o| *o == owner) {
                continue;
            }
            if self.safe.is_hash_approved_at(owner, hash, block).await? {
                approvals.insert(owner, OwnerApproval::ApprovedHash);
                let mut db = self.store();
                let actor = owner.to_string();
                if !db.proposal_has_event(hash, "onchain_approval", &actor)? {
                    db.proposal_trail(hash, Trail::OnchainApproval { owner })?;
                }
            }
        }
        Ok(approvals)
    }

    /// Look at every pending proposal once; each is independent, so one failing never holds
    /// up another. Writes nothing when nothing changed.
    pub async fn observe_all(&self) -> Vec<(B256, Result<Observed>)> {
        let pending = match self.store().proposals(Some(ProposalStatus::Pending)) {
            Ok(pending) => pending,
            Err(error) => return vec![(B256::ZERO, Err(error))],
        };
        let mut out = Vec::with_capacity(pending.len());
        for proposal in pending {
            let outcome = self.observe(&proposal).await;
            out.push((proposal.safe_tx_hash, outcome));
        }
        out
    }

    /// Look at one pending proposal: settle it if its nonce was consumed, else count its
    /// approvals. An unpause (which has no incident) is executed here at its threshold.
    pub async fn observe(&self, proposal: &Proposal) -> Result<Observed> {
        if self.safe.nonce().await? > proposal.nonce {
            return self.settle_consumed(proposal).await;
        }
        let (approvals, threshold) = self.count(proposal).await?;
        // An operator's proposal outside any incident (unpause, module administration) is
        // executed here at its threshold; a pause is executed when its incident asks.
        if proposal.kind != ProposalKind::Pause
            && proposal.incident_id.is_none()
            && approvals as u64 >= threshold
            && self.executor.is_some()
            && self.turn_to_send(proposal.safe_tx_hash).is_ok()
        {
            return self.execute_unpause(proposal).await;
        }
        Ok(Observed::Approvals { approvals, threshold })
    }

    /// Carry out an incident's `Execute` effect: the proposal has its approvals. Simulated
    /// first; nothing is sent for a proposal that is no longer pending (withdrawn by a reorg,
    /// or settled). A failure is told to the incident with its cause and returned (retried).
    pub async fn execute(&self, hash: B256) -> Result<Observed> {
        self.execute_attempt(hash, false).await
    }

    /// [`execute`](Self::execute); `retrying` when an earlier attempt of this replica failed,
    /// so a nonce consumed meanwhile by another sender is a race this replica lost (its
    /// attempt was refused, e.g. because the node already held the winner's transaction).
    pub async fn execute_attempt(&self, hash: B256, retrying: bool) -> Result<Observed> {
        let proposal = self
            .store()
            .proposal(hash)?
            .ok_or_else(|| eyre!("no proposal with safeTxHash {hash}"))?;
        if let Err(e) = not_pending(&proposal) {
            info!(%hash, reason = %e, "not executing");
            return Ok(Observed::Unchanged);
        }
        let Some(executor) = &self.executor else {
            return Err(eyre!(
                "this replica has no executor key ([safe] executor_key_env): another replica, or an owner, must execute {hash}"
            ));
        };
        if self.safe.nonce().await? > proposal.nonce {
            if retrying {
                self.note_attempt(
                    hash,
                    "this replica's execTransaction was not sent (its earlier attempt failed)",
                );
            }
            return self.settle_consumed(&proposal).await;
        }
        // Another execution of this nonce already waits in the node's pool: sending would
        // only revert (GS025 or GS026 in the estimate, which reads like an approval problem).
        // Wait for it to be mined; the nonce then tells who won.
        if self.safe.pending_nonce().await.is_ok_and(|pending| pending > proposal.nonce) {
            self.note_attempt(
                hash,
                "this replica's execTransaction was not sent (another execution of the nonce was already pending)",
            );
            info!(%hash, "another execution of this nonce is pending in the node's pool; waiting for it");
            return Err(eyre!(
                "another execution of Safe nonce {} is pending in the node's pool: waiting for it to be mined",
                proposal.nonce
            ));
        }
        let approvals = self.approvals(&proposal).await?;
        let tx = proposal.safe_tx();
        let outcome = self.safe.execute(executor, &tx, &approvals, &self.send).await;
        match outcome {
            Ok(execution) if execution.success => {
                let receipt = &execution.receipt;
                self.settle_executed(
                    &proposal,
                    receipt.transaction_hash,
                    executor.address(),
                    receipt.block_number.unwrap_or_default(),
                )
                .await
            }
            outcome => {
                let (cause, mine) = match outcome {
                    Ok(execution) => {
                        let tx = execution.receipt.transaction_hash;
                        (
                            format!("execTransaction {tx} mined without ExecutionSuccess"),
                            format!("this replica's execTransaction {tx} reverted"),
                        )
                    }
                    Err(error) => (
                        format!("{error:#}"),
                        "this replica's execTransaction was not sent (its simulation failed)"
                            .to_owned(),
                    ),
                };
                // Lost a race? The nonce tells: if it moved, someone executed or replaced it.
                // That is not a signature problem, whatever the Safe's revert (GS025, GS026)
                // said: record who won.
                if self.safe.nonce().await? > proposal.nonce {
                    self.note_attempt(hash, &mine);
                    return self.settle_consumed(&proposal).await;
                }
                self.note_attempt(hash, &mine);
                if let Some(id) = proposal.incident_id {
                    self.tell(
                        id,
                        &Event::ExecutionFailed { proposal: hash, cause: cause.clone() },
                    )?;
                }
                Err(eyre!(cause))
            }
        }
    }

    /// Remember that this replica's attempt to execute `hash` came to `mine` (in words).
    /// Kept in the database, so a restart before the winner's execution is seen still records
    /// the lost race.
    fn note_attempt(&self, hash: B256, mine: &str) {
        if let Err(error) = self.store().set_meta(&attempt_key(hash), mine) {
            warn!(%hash, error = %format!("{error:#}"), "could not record this replica's execution attempt");
        }
    }

    /// If this replica tried to execute `proposal` and `sender` (not this replica) executed it
    /// in `tx`, record the lost race: who won, with what, and what became of this attempt.
    fn record_lost_race(&self, proposal: &Proposal, tx: B256, sender: Address) -> Result<()> {
        let hash = proposal.safe_tx_hash;
        let mine = self.store().take_meta(&attempt_key(hash))?;
        let Some(mine) = mine.filter(|_| Some(sender) != self.executor()) else { return Ok(()) };
        let detail = format!(
            "lost the race for Safe nonce {}: {} sent it first in {tx}; {mine}",
            proposal.nonce,
            self.sender_name(sender)
        );
        info!(%hash, %detail, "execution race lost");
        self.store().proposal_trail(hash, Trail::RaceLost { detail: &detail })?;
        Ok(())
    }

    async fn execute_unpause(&self, proposal: &Proposal) -> Result<Observed> {
        let Some(executor) = &self.executor else { return Ok(Observed::Unchanged) };
        let approvals = self.approvals(proposal).await?;
        let execution =
            self.safe.execute(executor, &proposal.safe_tx(), &approvals, &self.send).await?;
        eyre::ensure!(
            execution.success,
            "execTransaction {} mined without ExecutionSuccess",
            execution.receipt.transaction_hash
        );
        let tx = execution.receipt.transaction_hash;
        self.settle_executed(
            proposal,
            tx,
            executor.address(),
            execution.receipt.block_number.unwrap_or_default(),
        )
        .await?;
        Ok(Observed::UnpauseExecuted { tx })
    }

    /// The proposal's nonce is used: by this proposal (the Safe's `ExecutionSuccess` names it,
    /// whoever sent it) or by some other transaction.
    async fn settle_consumed(&self, proposal: &Proposal) -> Result<Observed> {
        let hash = proposal.safe_tx_hash;
        let filter = Filter::new()
            .address(self.safe.address())
            .event_signature(ISafe::ExecutionSuccess::SIGNATURE_HASH)
            .topic1(hash)
            .from_block(proposal.created_block);
        let logs =
            self.provider.get_logs(&filter).await.wrap_err("looking for ExecutionSuccess")?;
        if let Some(log) = logs.first() {
            let tx_hash =
                log.transaction_hash.ok_or_else(|| eyre!("ExecutionSuccess without a tx hash"))?;
            // Attribution by the mined transaction's sender, never by what this replica
            // remembers: after a crash between send and record, the sender is still ours.
            let sent = self
                .provider
                .get_transaction_by_hash(tx_hash)
                .await
                .wrap_err_with(|| format!("reading transaction {tx_hash}"))?
                .ok_or_else(|| eyre!("the node does not know transaction {tx_hash}"))?;
            let block = log.block_number.unwrap_or_default();
            return self.settle_executed(proposal, tx_hash, sent.from(), block).await;
        }
        if !matches!(proposal.kind, ProposalKind::Pause | ProposalKind::Unpause) {
            let detail = format!(
                "Safe nonce {} was consumed by another transaction: not proposed again automatically",
                proposal.nonce
            );
            self.store().mark_proposal_stale(hash, &detail)?;
            return Ok(Observed::Stale);
        }
        let target = self.target_at(proposal.target)?.clone();
        let paused = is_paused(&self.provider, target.address).await?;
        let detail = format!(
            "Safe nonce {} was consumed by another transaction; {} is {}",
            proposal.nonce,
            target.name,
            if paused { "paused" } else { "not paused" }
        );
        match (proposal.kind, proposal.incident_id) {
            (ProposalKind::Pause, Some(id)) => {
                if paused {
                    // Paused some other way: the incident is contained; it withdraws this one.
                    let block = self.provider.get_block_number().await?;
                    self.tell(id, &Event::PauseVerified { block })?;
                } else {
                    self.store().mark_proposal_stale(hash, &detail)?;
                    self.tell(id, &Event::NonceConsumed { proposal: hash })?;
                    info!(%hash, "pause proposal stale; the incident proposes again at the new nonce");
                }
            }
            _ => {
                // An unpause (or a pause outside any incident) is not proposed again by
                // itself: the operator decides.
                let suffix = if paused == (proposal.kind == ProposalKind::Pause) {
                    ": nothing left to do"
                } else {
                    ": not proposed again automatically"
                };
                self.store().mark_proposal_stale(hash, &format!("{detail}{suffix}"))?;
            }
        }
        Ok(Observed::Stale)
    }

    /// Record a mined execution of `proposal` by `sender` and tell the incident: who executed
    /// it, then whether the target is in the requested state.
    async fn settle_executed(
        &self,
        proposal: &Proposal,
        tx: B256,
        sender: Address,
        block: u64,
    ) -> Result<Observed> {
        let by = if Some(sender) == self.executor() {
            Attribution::ThisReplica
        } else if self.peer_executors().iter().any(|(_, a)| *a == sender) {
            Attribution::Peer
        } else {
            Attribution::Outside
        };
        // The Safe's ExecutionSuccess already proves a module change; a pause or an unpause is
        // verified on the target itself.
        let (paused, verified) = match proposal.kind {
            ProposalKind::Pause | ProposalKind::Unpause => {
                let paused = is_paused(&self.provider, proposal.target).await?;
                (paused, paused == (proposal.kind == ProposalKind::Pause))
            }
            _ => (false, true),
        };
        let who = self.sender_name(sender);
        let detail = format!(
            "ExecutionSuccess in tx {tx} (block {block}) sent by {who}; {}.paused() == {paused}{}",
            proposal.contract,
            if verified { " (verified)" } else { " — NOT the requested state" }
        );
        let event =
            Event::ExecutionSeen { proposal: Some(proposal.safe_tx_hash), tx, sender, block, by };
        let linked = match (proposal.kind, proposal.incident_id) {
            (ProposalKind::Pause, Some(id)) => Some((id, &event)),
            _ => None,
        };
        self.store()
            .record_execution(proposal.safe_tx_hash, tx, sender, &who, &detail, linked)
            .or_else(|e| match e {
                IncidentError::Refused(refused) => {
                    debug!(%refused, "the incident did not take the execution");
                    Ok(None)
                }
                other => Err(eyre!(other)),
            })?;
        self.record_lost_race(proposal, tx, sender)?;
        info!(hash = %proposal.safe_tx_hash, %tx, %sender, by = by.as_str(), paused, "proposal executed");
        if !verified {
            warn!(hash = %proposal.safe_tx_hash, %detail, "executed, but the target is not in the requested state");
            return Ok(Observed::Executed { tx, sender });
        }
        match (proposal.kind, proposal.incident_id) {
            (ProposalKind::Pause, Some(id)) => {
                self.tell(id, &Event::PauseVerified { block })?;
                self.record_impact(id, block).await;
            }
            (ProposalKind::Unpause, _) => {
                let open = self.store().open_incident(proposal.target)?;
                if let Some(open) = open {
                    self.tell(open.id, &Event::Unpaused { tx, block })?;
                }
            }
            _ => {}
        }
        Ok(Observed::Executed { tx, sender })
    }

    /// Measure what incident `id` cost, once it is contained in `contained_block`, and put it
    /// in the audit log (once per incident): the contract's ether balance at the block before
    /// the anomaly, and how much left it by the pause's block. Logged, never fatal: the pause
    /// stands whatever the node answers about history.
    pub async fn record_impact(&self, id: i64, contained_block: u64) {
        if let Err(error) = self.try_record_impact(id, contained_block).await {
            warn!(incident = id, error = %format!("{error:#}"), "impact not measured");
        }
    }

    async fn try_record_impact(&self, id: i64, contained_block: u64) -> Result<()> {
        let (address, anomaly_block) = {
            let store = self.store();
            if store.has_audit_record(id, "impact")? {
                return Ok(());
            }
            let incident = store.incident(id)?.ok_or_else(|| eyre!("no incident #{id}"))?;
            let first = store
                .incident_findings(id)?
                .iter()
                .map(|f| f.finding.evidence.block_number)
                .min()
                .unwrap_or(contained_block);
            (incident.incident.address, first)
        };
        let at_risk =
            self.provider.get_balance(address).number(anomaly_block.saturating_sub(1)).await?;
        let left = self.provider.get_balance(address).number(contained_block).await?;
        self.store().audit(guardian_core::audit::Record::Impact {
            incident: id,
            at_risk_wei: at_risk,
            moved_wei: at_risk.saturating_sub(left),
            anomaly_block,
            contained_block,
        })
    }

    /// Proposals, newest first.
    pub fn list(&self, status: Option<ProposalStatus>) -> Result<Vec<Proposal>> {
        self.store().proposals(status)
    }

    /// One proposal with its signatures and trail.
    pub fn detail(&self, hash: B256) -> Result<Option<ProposalDetail>> {
        detail(&self.store(), hash)
    }

    /// The proposal `hash` as an approver must see it: looked up, refused if it no longer
    /// collects approvals, then its hash recomputed from the stored fields for this chain and
    /// Safe. Never sign a hash taken on trust from the database; `guardian approve` and the
    /// rehearsal both go through here.
    pub fn detail_to_approve(&self, hash: B256) -> Result<ProposalDetail, ApproveError> {
        let detail = self.detail(hash)?.ok_or(ApproveError::NotFound(hash))?;
        let p = &detail.proposal;
        not_pending(p).map_err(|e| ApproveError::NotPending(e.to_string()))?;
        let recomputed = self.safe.tx_hash(&p.safe_tx());
        if !(recomputed == hash
            && p.chain_id == self.safe.chain_id()
            && p.safe == self.safe.address())
        {
            return Err(ApproveError::HashMismatch {
                hash,
                chain_id: self.safe.chain_id(),
                safe: self.safe.address(),
                recomputed,
            });
        }
        Ok(detail)
    }

    /// Approve `hash` off chain as `owner`: an EIP-712 signature, verified and stored.
    pub async fn approve_with_signature(
        &self,
        hash: B256,
        owner: &PrivateKeySigner,
    ) -> Result<Submitted> {
        self.detail_to_approve(hash)?;
        let signature = guardian_chain::safe::owner_signature(owner, hash)?;
        self.submit_signature(hash, owner.address(), &signature).await.map_err(eyre::Report::new)
    }

    /// Approve `hash` on chain with the Safe's `approveHash`, sent as `owner` by `owner_wallet`
    /// (a provider signing as that owner, or impersonating it on an Anvil fork). Returns the
    /// mined receipt and the (approvals, threshold) counted afterwards, or why they could not
    /// be: the approval stands either way.
    pub async fn approve_onchain(
        &self,
        hash: B256,
        owner_wallet: &DynProvider,
        owner: Address,
    ) -> Result<(alloy::rpc::types::TransactionReceipt, Result<(usize, u64)>)> {
        let detail = self.detail_to_approve(hash)?;
        let receipt = self.safe.approve_hash_onchain(owner_wallet, owner, hash).await?;
        // Mined is done: a count that fails now (a node behind the block it just mined, a
        // timeout) is the caller's to show beside the receipt, never a failed approval.
        let counted = self.count(&detail.proposal).await;
        Ok((receipt, counted))
    }
}

/// The `meta` key of this replica's last attempt to execute `hash`, in words.
fn attempt_key(hash: B256) -> String {
    format!("execution_attempt:{hash}")
}

/// Refuse a proposal that no longer collects approvals, saying why.
fn not_pending(proposal: &Proposal) -> Result<(), SubmitError> {
    if proposal.status == ProposalStatus::Pending {
        return Ok(());
    }
    Err(SubmitError::NotPending {
        hash: proposal.safe_tx_hash,
        status: proposal.status.as_str(),
        reason: proposal.withdrawn_reason.clone(),
        replaced_by: proposal.replaced_by,
    })
}

/// One proposal with its signatures and trail, read from `store`.
pub fn detail(store: &Store, hash: B256) -> Result<Option<ProposalDetail>> {
    let Some(proposal) = store.proposal(hash)? else { return Ok(None) };
    Ok(Some(ProposalDetail {
        proposal,
        signatures: store.proposal_signatures(hash)?,
        events: store.proposal_events(hash)?,
    }))
}

/// Whether a refusal of the incident machine means "already paused".
pub fn already_contained(error: &IncidentError) -> bool {
    matches!(error, IncidentError::Refused(StepError::AlreadyContained { .. }))
}
