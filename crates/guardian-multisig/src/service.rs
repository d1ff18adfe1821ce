//! The proposal life cycle against a live Safe: propose, collect approvals, execute once,
//! verify, and notice when another replica (or another transaction) got there first.
//!
//! Exactly-once does not rest on coordination between replicas: the Safe's nonce makes a second
//! execution of the same `safeTxHash` impossible. What this module adds is that the replica that
//! loses the race recognises the winner's `ExecutionSuccess`, records "executed by another
//! replica" and moves on, and that a proposal whose nonce went to some other transaction is
//! recognised as stale and proposed again at the new nonce.

use std::sync::{Mutex, MutexGuard};

use alloy::{
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
    proposal::{ProposalKind, Rejection, check_signature, no_arg_calldata, proposal_tx},
    safe::{Approvals, OwnerApproval},
    severity::Action,
};
use guardian_store::{FindingStatus, Store};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::store::{Proposal, ProposalStatus, ProposalStore};

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
}

impl Target {
    /// A target whose pause function is `pause_signature` (e.g. `pause()`); the unpause function
    /// is the same name prefixed with `un` (`unpause()`), as in OpenZeppelin's `Pausable`.
    pub fn new(name: &str, address: Address, pause_signature: &str) -> Result<Self> {
        let pause = no_arg_calldata(pause_signature).map_err(|e| eyre!(e))?;
        let unpause =
            no_arg_calldata(&format!("un{}", pause_signature.trim())).map_err(|e| eyre!(e))?;
        Ok(Self { name: name.to_owned(), address, pause, unpause })
    }

    fn calldata(&self, kind: ProposalKind) -> Bytes {
        match kind {
            ProposalKind::Pause => self.pause.clone(),
            ProposalKind::Unpause => self.unpause.clone(),
        }
    }
}

/// What to propose.
#[derive(Debug, Clone)]
pub struct ProposeRequest {
    /// Contract name (or address) among the targets.
    pub contract: String,
    /// Pause or unpause.
    pub kind: ProposalKind,
    /// Why, in words.
    pub reason: String,
    /// The finding it answers.
    pub finding_id: Option<i64>,
    /// Roll configs back after a verified pause.
    pub then_rollback: bool,
    /// Who asks (an operator, or this replica).
    pub actor: String,
}

/// What `propose` did.
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
    /// The target is already in the requested state; recorded as skipped.
    Skipped {
        /// The skipped proposal.
        proposal: Proposal,
    },
}

impl Proposed {
    /// The proposal, whatever happened.
    pub fn proposal(&self) -> &Proposal {
        match self {
            Self::New { proposal } | Self::Existing { proposal } | Self::Skipped { proposal } => {
                proposal
            }
        }
    }
}

/// Why a signature was not stored.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// No proposal with this hash.
    #[error("no proposal with safeTxHash {0}")]
    NotFound(B256),
    /// The proposal no longer collects approvals.
    #[error("proposal {hash} is {status}{}", .replaced_by.map(|h| format!("; sign its replacement {h}")).unwrap_or_default())]
    NotPending {
        /// The proposal.
        hash: B256,
        /// Where it stands.
        status: &'static str,
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

/// What advancing one pending proposal did.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Advanced {
    /// Still short of the threshold (or no executor key on this replica).
    Waiting {
        /// The proposal.
        hash: B256,
        /// Approvals so far.
        approvals: usize,
        /// Needed.
        threshold: u64,
    },
    /// Executed and the target's state verified.
    Executed {
        /// The proposal as now stored.
        proposal: Box<Proposal>,
        /// True when this replica's transaction did it.
        by_this_replica: bool,
    },
    /// Its nonce was consumed by another transaction.
    Stale {
        /// The stale proposal.
        hash: B256,
        /// Its replacement at the new nonce, when still needed.
        replaced_by: Option<B256>,
    },
    /// Execution was attempted and failed; it stays pending and is retried.
    Failed {
        /// The proposal.
        hash: B256,
        /// Why.
        error: String,
    },
}

/// A proposal with its approvals and audit trail, as `proposals show` and the API present it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProposalDetail {
    /// The proposal.
    #[serde(flatten)]
    pub proposal: Proposal,
    /// Verified off-chain signatures.
    pub signatures: Vec<crate::store::StoredSignature>,
    /// Audit trail, oldest first.
    pub events: Vec<crate::store::AuditEvent>,
}

struct Db {
    proposals: ProposalStore,
    findings: Store,
}

/// One replica's view of the operators' Safe and its proposals.
pub struct Multisig {
    safe: SafeClient,
    provider: DynProvider,
    targets: Vec<Target>,
    executor: Option<PrivateKeySigner>,
    send: SendOptions,
    replica: String,
    db: Mutex<Db>,
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
    /// Connect to the Safe at `safe` and open the proposal tables in the database at `db`.
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
    ) -> Result<Self> {
        let safe = SafeClient::connect(provider.clone(), safe).await?;
        eyre::ensure!(
            safe.chain_id() == chain_id,
            "the node serves chain {}, guardian is configured for chain {chain_id}: refusing to propose or sign",
            safe.chain_id()
        );
        let findings = Store::open(db)?;
        findings.bind_chain(chain_id)?;
        let proposals = ProposalStore::open(db)?;
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
            db: Mutex::new(Db { proposals, findings }),
        })
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

    /// The configured targets.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    fn db(&self) -> MutexGuard<'_, Db> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.db.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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

    /// Propose pausing or unpausing a target at the Safe's current nonce.
    ///
    /// The inner call is simulated as the Safe (`eth_call` with `from = safe`) first; a call
    /// that would revert is refused. A target already in the requested state is recorded as
    /// skipped. A pending proposal for the same target and direction is returned as is.
    pub async fn propose(&self, request: &ProposeRequest) -> Result<Proposed> {
        let target = self.target(&request.contract)?.clone();
        if let Some(existing) =
            self.db().proposals.pending_for(self.safe.address(), target.address, request.kind)?
        {
            return Ok(Proposed::Existing { proposal: existing });
        }
        let nonce = self.safe.nonce().await?;
        let mut proposal = self.build(&target, request, nonce, None).await?;
        let paused = is_paused(&self.provider, target.address).await?;
        let already = paused == (request.kind == ProposalKind::Pause);
        if already {
            proposal.status = ProposalStatus::Skipped;
            proposal.simulation =
                format!("not simulated: {} is already in that state", target.name);
            let detail = format!("{} is already {}", target.name, state_word(paused));
            self.db().proposals.insert(&proposal, &request.actor, &detail)?;
            info!(hash = %proposal.safe_tx_hash, contract = %target.name, "already in the requested state; skipped");
            return Ok(Proposed::Skipped { proposal });
        }
        self.simulate_as_safe(&target, request.kind).await.wrap_err_with(|| {
            format!("refusing to propose {} of {}", request.kind.as_str(), target.name)
        })?;
        let detail = format!(
            "{} {} at Safe nonce {nonce}: {}",
            request.kind.as_str(),
            target.name,
            request.reason
        );
        let new = self.db().proposals.insert(&proposal, &request.actor, &detail)?;
        if !new {
            // Another process sharing this database (the daemon, a CLI) got there first, with
            // this hash or, at another nonce, the same target and direction.
            let db = self.db();
            let existing = match db.proposals.get(proposal.safe_tx_hash)? {
                Some(p) => Some(p),
                None => {
                    db.proposals.pending_for(self.safe.address(), target.address, request.kind)?
                }
            };
            let existing = existing
                .ok_or_else(|| eyre!("proposal {} was not stored", proposal.safe_tx_hash))?;
            return Ok(Proposed::Existing { proposal: existing });
        }
        info!(hash = %proposal.safe_tx_hash, contract = %target.name, kind = request.kind.as_str(), %nonce, "proposed");
        let stored = self.db().proposals.get(proposal.safe_tx_hash)?.unwrap_or(proposal);
        Ok(Proposed::New { proposal: stored })
    }

    async fn build(
        &self,
        target: &Target,
        request: &ProposeRequest,
        nonce: U256,
        replaces: Option<B256>,
    ) -> Result<Proposal> {
        let calldata = target.calldata(request.kind);
        let tx = proposal_tx(target.address, calldata.clone(), nonce);
        let hash = self.safe.tx_hash(&tx);
        // Bind to the deployed contract's own view of the domain: a mismatch means we would
        // collect signatures the Safe will never accept.
        let onchain = self.safe.onchain_tx_hash(&tx).await?;
        eyre::ensure!(
            onchain == hash,
            "local safeTxHash {hash} differs from the Safe's getTransactionHash {onchain}"
        );
        let created_block = self.provider.get_block_number().await.wrap_err("eth_blockNumber")?;
        Ok(Proposal {
            safe_tx_hash: hash,
            chain_id: self.safe.chain_id(),
            safe: self.safe.address(),
            kind: request.kind,
            contract: target.name.clone(),
            target: target.address,
            calldata,
            nonce,
            finding_id: request.finding_id,
            then_rollback: request.then_rollback,
            reason: request.reason.clone(),
            status: ProposalStatus::Pending,
            simulation: format!(
                "ok: eth_call of {}() from the Safe succeeds",
                request.kind.as_str()
            ),
            created_block,
            replaces,
            replaced_by: None,
            executed_tx: None,
            executed_by: None,
            created_at: String::new(),
        })
    }

    async fn simulate_as_safe(&self, target: &Target, kind: ProposalKind) -> Result<()> {
        guardian_chain::safe::simulate_as_safe(
            &self.provider,
            self.safe.address(),
            target.address,
            target.calldata(kind),
        )
        .await
        .map_err(|e| {
            eyre!("simulating {}() on {} as the Safe reverts: {e:#}", kind.as_str(), target.name)
        })
    }

    /// Propose a pause for every open finding whose action is `propose_pause` and that has no
    /// proposal yet. Returns what was proposed.
    pub async fn propose_for_findings(&self) -> Result<Vec<Proposed>> {
        let findings = self.db().findings.findings(Some(FindingStatus::Open))?;
        let mut out = Vec::new();
        for stored in findings {
            let Action::ProposePause { then_rollback } = stored.finding.action else { continue };
            if self.db().proposals.has_proposal_for_finding(stored.id)? {
                continue;
            }
            let contract = if self.target(&stored.finding.contract).is_ok() {
                stored.finding.contract.clone()
            } else {
                stored.finding.address.to_string()
            };
            let request = ProposeRequest {
                contract,
                kind: ProposalKind::Pause,
                reason: format!("finding #{}: {}", stored.id, stored.finding.summary),
                finding_id: Some(stored.id),
                then_rollback,
                actor: self.replica.clone(),
            };
            match self.propose(&request).await {
                Ok(Proposed::Existing { proposal }) => {
                    // Another finding's proposal pauses the same target: this finding joins it.
                    self.db().proposals.audit(
                        proposal.safe_tx_hash,
                        "joined",
                        Some(&self.replica),
                        &format!("finding #{} is answered by this proposal too", stored.id),
                    )?;
                    out.push(Proposed::Existing { proposal });
                }
                Ok(proposed) => out.push(proposed),
                Err(error) => {
                    warn!(finding = stored.id, error = %format!("{error:#}"), "could not propose a pause")
                }
            }
        }
        Ok(out)
    }

    /// Verify an owner's signature for proposal `hash` and store it.
    ///
    /// Checked against the Safe's current owners and the configured chain's EIP-712 domain;
    /// every rejection is recorded in the audit trail with its own message. Sending the same
    /// owner's signature again is accepted and changes nothing.
    pub async fn submit_signature(
        &self,
        hash: B256,
        signer: Address,
        signature: &[u8],
    ) -> Result<Submitted, SubmitError> {
        let proposal = self.db().proposals.get(hash)?.ok_or(SubmitError::NotFound(hash))?;
        if proposal.status != ProposalStatus::Pending {
            return Err(SubmitError::NotPending {
                hash,
                status: proposal.status.as_str(),
                replaced_by: proposal.replaced_by,
            });
        }
        let owners = self.safe.owners().await?;
        let tx = proposal.safe_tx();
        match check_signature(&tx, proposal.chain_id, proposal.safe, signer, signature, &owners) {
            Ok(_) => {
                let added = self.db().proposals.add_signature(hash, signer, signature)?;
                let approvals = self.approvals(&proposal).await?.len();
                let threshold = self.safe.threshold().await?;
                info!(%hash, %signer, added, approvals, threshold, "owner signature verified");
                Ok(Submitted { added, approvals, threshold })
            }
            Err(rejection) => {
                let message = rejection.to_string();
                self.db().proposals.audit(
                    hash,
                    "rejection",
                    Some(&signer.to_string()),
                    &message,
                )?;
                warn!(%hash, %signer, reason = %message, "signature rejected");
                Err(SubmitError::Rejected(rejection))
            }
        }
    }

    /// The approvals the Safe would accept right now: stored signatures of current owners, and
    /// on-chain `approveHash` calls read from the Safe (recorded in the audit trail when first
    /// seen).
    pub async fn approvals(&self, proposal: &Proposal) -> Result<Approvals> {
        let owners = self.safe.owners().await?;
        let tx = proposal.safe_tx();
        let hash = proposal.safe_tx_hash;
        let mut approvals = Approvals::new();
        for stored in self.db().proposals.signatures(hash)? {
            // Re-checked: an owner removed since signing no longer counts.
            if let Ok(approval) = check_signature(
                &tx,
                proposal.chain_id,
                proposal.safe,
                stored.owner,
                &stored.signature,
                &owners,
            ) {
                approvals.insert(stored.owner, approval);
            }
        }
        for owner in owners {
            if approvals.owners().any(|o| *o == owner) {
                continue;
            }
            if self.safe.is_hash_approved(owner, hash).await? {
                approvals.insert(owner, OwnerApproval::ApprovedHash);
                let db = self.db();
                let actor = owner.to_string();
                if !db.proposals.has_event(hash, "onchain_approval", &actor)? {
                    db.proposals.audit(
                        hash,
                        "onchain_approval",
                        Some(&actor),
                        "approveHash read from the Safe",
                    )?;
                }
            }
        }
        Ok(approvals)
    }

    /// Advance every pending proposal once (see [`Multisig::advance`]).
    pub async fn tick(&self) -> Result<Vec<Advanced>> {
        let pending = self.db().proposals.list(Some(ProposalStatus::Pending))?;
        let mut out = Vec::new();
        for proposal in pending {
            out.push(self.advance(&proposal).await?);
        }
        Ok(out)
    }

    /// Advance one pending proposal: settle it if its nonce was consumed, otherwise execute it
    /// when the threshold is met and this replica holds an executor key.
    pub async fn advance(&self, proposal: &Proposal) -> Result<Advanced> {
        let hash = proposal.safe_tx_hash;
        if self.safe.nonce().await? > proposal.nonce {
            return self.settle_consumed(proposal).await;
        }
        let approvals = self.approvals(proposal).await?;
        let threshold = self.safe.threshold().await?;
        let waiting = Advanced::Waiting { hash, approvals: approvals.len(), threshold };
        if (approvals.len() as u64) < threshold {
            return Ok(waiting);
        }
        let Some(executor) = &self.executor else { return Ok(waiting) };
        let tx = proposal.safe_tx();
        match self.safe.execute(executor, &tx, &approvals, &self.send).await {
            Ok(execution) if execution.success => {
                let tx_hash = execution.receipt.transaction_hash;
                self.finish(proposal, tx_hash, true).await
            }
            outcome => {
                let error = match outcome {
                    Ok(execution) => format!(
                        "execTransaction {} mined without ExecutionSuccess",
                        execution.receipt.transaction_hash
                    ),
                    Err(error) => format!("{error:#}"),
                };
                // Lost a race? The nonce tells: if it moved, someone executed or replaced it.
                if self.safe.nonce().await? > proposal.nonce {
                    return self.settle_consumed(proposal).await;
                }
                // The same failure on every poll is one audit entry (and one warning), not one
                // per second: the trail must stay readable during a long incident. "The same"
                // ignores the figures (fees, gas, balances), which move from block to block.
                let shape = |s: &str| s.replace(|c: char| c.is_ascii_digit(), "");
                let db = self.db();
                let repeated = db.proposals.last_event(hash)?.is_some_and(|e| {
                    e.event == "execution_failed"
                        && e.actor.as_deref() == Some(self.replica.as_str())
                        && shape(&e.detail) == shape(&error)
                });
                if repeated {
                    debug!(%hash, %error, "execution failed again; will retry");
                } else {
                    db.proposals.audit(hash, "execution_failed", Some(&self.replica), &error)?;
                    warn!(%hash, %error, "execution failed; will retry");
                }
                Ok(Advanced::Failed { hash, error })
            }
        }
    }

    /// The proposal's nonce is used: find out whether by this proposal (another replica
    /// executed it) or by some other transaction (stale: propose again at the new nonce).
    async fn settle_consumed(&self, proposal: &Proposal) -> Result<Advanced> {
        let hash = proposal.safe_tx_hash;
        let filter = Filter::new()
            .address(self.safe.address())
            .event_signature(ISafe::ExecutionSuccess::SIGNATURE_HASH)
            .topic1(hash)
            .from_block(proposal.created_block);
        let logs =
            self.provider.get_logs(&filter).await.wrap_err("looking for ExecutionSuccess")?;
        if let Some(log) = logs.first() {
            let tx_hash = log.transaction_hash.unwrap_or_default();
            return self.finish(proposal, tx_hash, false).await;
        }
        let target = self.target(&proposal.contract)?.clone();
        let paused = is_paused(&self.provider, target.address).await?;
        let done = paused == (proposal.kind == ProposalKind::Pause);
        let detail = format!(
            "Safe nonce {} was consumed by another transaction; {} is {}",
            proposal.nonce,
            target.name,
            state_word(paused)
        );
        if done {
            self.db().proposals.mark_stale(hash, &format!("{detail}: nothing left to do"))?;
            if let Some(id) = proposal.finding_id {
                self.resolve(id);
            }
            return Ok(Advanced::Stale { hash, replaced_by: None });
        }
        let request = ProposeRequest {
            contract: target.name.clone(),
            kind: proposal.kind,
            reason: proposal.reason.clone(),
            finding_id: proposal.finding_id,
            then_rollback: proposal.then_rollback,
            actor: self.replica.clone(),
        };
        self.simulate_as_safe(&target, proposal.kind).await?;
        let nonce = self.safe.nonce().await?;
        let new = self.build(&target, &request, nonce, Some(hash)).await?;
        self.db().proposals.replace_stale(hash, &new, &detail)?;
        info!(stale = %hash, new = %new.safe_tx_hash, %nonce, "stale proposal re-proposed");
        Ok(Advanced::Stale { hash, replaced_by: Some(new.safe_tx_hash) })
    }

    async fn finish(&self, proposal: &Proposal, tx_hash: B256, ours: bool) -> Result<Advanced> {
        let hash = proposal.safe_tx_hash;
        let paused = is_paused(&self.provider, proposal.target).await?;
        let verified = paused == (proposal.kind == ProposalKind::Pause);
        let (by, event) = if ours {
            (self.replica.clone(), "executed")
        } else {
            ("another replica".to_owned(), "executed_elsewhere")
        };
        let detail = format!(
            "ExecutionSuccess in tx {tx_hash}; {}.paused() == {paused}{}",
            proposal.contract,
            if verified { " (verified)" } else { " — NOT the requested state" }
        );
        self.db().proposals.mark_executed(hash, tx_hash, &by, event, &detail)?;
        if !verified {
            self.db().proposals.audit(hash, "verification_failed", Some(&by), &detail)?;
            return Err(eyre!("proposal {hash} executed but {detail}"));
        }
        if let Some(id) = proposal.finding_id {
            self.resolve(id);
        }
        info!(%hash, tx = %tx_hash, by_this_replica = ours, "proposal executed and verified");
        let proposal = self.db().proposals.get(hash)?.ok_or_else(|| eyre!("proposal vanished"))?;
        Ok(Advanced::Executed { proposal: Box::new(proposal), by_this_replica: ours })
    }

    fn resolve(&self, finding: i64) {
        // Already resolved (by another proposal or an operator) is fine.
        if let Err(error) = self.db().findings.resolve_finding(finding) {
            tracing::debug!(finding, %error, "finding not resolved");
        }
    }

    /// Record an audit entry (e.g. the rollback that followed a pause).
    pub fn audit(&self, hash: B256, event: &str, detail: &str) -> Result<()> {
        self.db().proposals.audit(hash, event, Some(&self.replica), detail)
    }

    /// Proposals, newest first.
    pub fn list(&self, status: Option<ProposalStatus>) -> Result<Vec<Proposal>> {
        self.db().proposals.list(status)
    }

    /// One proposal with its signatures and audit trail.
    pub fn detail(&self, hash: B256) -> Result<Option<ProposalDetail>> {
        detail(&self.db().proposals, hash)
    }

    /// The proposal `hash` as an approver must see it: looked up, then its hash recomputed from
    /// the stored fields for this chain and Safe. Never sign a hash taken on trust from the
    /// database; `guardian approve` and the rehearsal both go through here.
    pub fn detail_to_approve(&self, hash: B256) -> Result<ProposalDetail> {
        let detail =
            self.detail(hash)?.ok_or_else(|| eyre!("no proposal with safeTxHash {hash}"))?;
        let p = &detail.proposal;
        let recomputed = self.safe.tx_hash(&p.safe_tx());
        eyre::ensure!(
            recomputed == hash
                && p.chain_id == self.safe.chain_id()
                && p.safe == self.safe.address(),
            "proposal {hash} does not hash to itself for chain {} and Safe {} (got {recomputed}): refusing to sign",
            self.safe.chain_id(),
            self.safe.address()
        );
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
        self.submit_signature(hash, owner.address(), &signature).await.map_err(|e| eyre!("{e}"))
    }

    /// Approve `hash` on chain with the Safe's `approveHash`, sent as `owner` by `owner_wallet`
    /// (a provider signing as that owner, or impersonating it on an Anvil fork). Returns the
    /// mined receipt and the approvals counted afterwards.
    pub async fn approve_onchain(
        &self,
        hash: B256,
        owner_wallet: &DynProvider,
        owner: Address,
    ) -> Result<(alloy::rpc::types::TransactionReceipt, usize)> {
        let detail = self.detail_to_approve(hash)?;
        let receipt = self.safe.approve_hash_onchain(owner_wallet, owner, hash).await?;
        let approvals = self.approvals(&detail.proposal).await?.len();
        Ok((receipt, approvals))
    }
}

/// One proposal with its signatures and audit trail, read from `store`.
pub fn detail(store: &ProposalStore, hash: B256) -> Result<Option<ProposalDetail>> {
    let Some(proposal) = store.get(hash)? else { return Ok(None) };
    Ok(Some(ProposalDetail {
        proposal,
        signatures: store.signatures(hash)?,
        events: store.events(hash)?,
    }))
}

fn state_word(paused: bool) -> &'static str {
    if paused { "paused" } else { "not paused" }
}
