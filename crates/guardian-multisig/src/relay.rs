//! Proposals relayed by a peer replica: verified here as if proposed here.
//!
//! A peer is trusted for nothing. Its proposal is stored only if it is for this replica's
//! chain and Safe, targets a configured contract with exactly that contract's pause or unpause
//! calldata, recomputes to the hash it claims, is at a nonce the Safe has not consumed, and
//! simulates as the Safe. Its signatures arrive separately and are checked against the Safe's
//! owners like an owner's own post.

use alloy::primitives::{Address, B256, Bytes, U256};
use guardian_core::proposal::{ProposalKind, proposal_tx};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::{
    Multisig,
    store::{Proposal, ProposalStatus},
};

/// A proposal as one replica relays it to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayedProposal {
    /// The hash the peer claims (recomputed here).
    pub safe_tx_hash: B256,
    /// Its chain.
    pub chain_id: u64,
    /// Its Safe.
    pub safe: Address,
    /// Pause or unpause.
    pub kind: ProposalKind,
    /// The target.
    pub target: Address,
    /// The Safe transaction's data.
    pub calldata: Bytes,
    /// The Safe nonce.
    pub nonce: U256,
    /// Why, as the peer recorded it.
    pub reason: String,
    /// The block it was proposed at (where its execution is looked for from).
    pub created_block: u64,
    /// The key of the incident it answers on the peer (derived from chain facts).
    #[serde(default)]
    pub incident_key: Option<String>,
    /// The peer's name.
    pub origin: String,
}

impl RelayedProposal {
    /// `proposal` as relayed by `origin`.
    pub fn of(proposal: &Proposal, incident_key: Option<String>, origin: &str) -> Self {
        Self {
            safe_tx_hash: proposal.safe_tx_hash,
            chain_id: proposal.chain_id,
            safe: proposal.safe,
            kind: proposal.kind,
            target: proposal.target,
            calldata: proposal.calldata.clone(),
            nonce: proposal.nonce,
            reason: proposal.reason.clone(),
            created_block: proposal.created_block,
            incident_key,
            origin: origin.to_owned(),
        }
    }
}

/// Why a relayed proposal was not stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// It does not match this replica's chain, Safe or config (the peer's answer: 422).
    #[error("{0}")]
    Mismatch(String),
    /// Its nonce is consumed, or another pending proposal holds the target (409).
    #[error("{0}")]
    Conflict(String),
    /// The chain or the database failed (retry later: 502).
    #[error(transparent)]
    Other(#[from] eyre::Report),
}

impl Multisig {
    /// Verify a proposal relayed by a peer and store it. A pause with no open incident here
    /// opens one (under the peer's incident key), so this replica rolls its own configs back
    /// once the pause is verified, whoever sends it. Returns whether it was new here.
    pub async fn accept_relayed(&self, relayed: &RelayedProposal) -> Result<bool, RelayError> {
        let mismatch = |m: String| Err(RelayError::Mismatch(m));
        if relayed.chain_id != self.safe().chain_id() || relayed.safe != self.safe().address() {
            return mismatch(format!(
                "the proposal is for chain {} and Safe {}; this replica serves chain {} and Safe {}",
                relayed.chain_id,
                relayed.safe,
                self.safe().chain_id(),
                self.safe().address()
            ));
        }
        let Some(target) = self.targets().iter().find(|t| t.address == relayed.target).cloned()
        else {
            return mismatch(format!(
                "{} is not among this replica's [[contracts]]",
                relayed.target
            ));
        };
        let expected = match relayed.kind {
            ProposalKind::Pause => &target.pause,
            ProposalKind::Unpause => &target.unpause,
            other => {
                return mismatch(format!(
                    "{} proposals are made on each host with `guardian module`, not relayed",
                    other.as_str()
                ));
            }
        };
        if *expected != relayed.calldata {
            return mismatch(format!(
                "the calldata {} is not {}'s {} calldata here ({expected})",
                relayed.calldata,
                target.name,
                relayed.kind.as_str()
            ));
        }
        let tx = proposal_tx(relayed.target, relayed.calldata.clone(), relayed.nonce);
        let hash = self.safe().tx_hash(&tx);
        if hash != relayed.safe_tx_hash {
            return mismatch(format!(
                "the proposal recomputes to safeTxHash {hash} here, not {}",
                relayed.safe_tx_hash
            ));
        }
        if let Some(known) = self.store().proposal(hash)? {
            return match known.status {
                ProposalStatus::Pending => Ok(false),
                status => Err(RelayError::Conflict(format!(
                    "{hash} is {} on this replica",
                    status.as_str()
                ))),
            };
        }
        let nonce = self.safe().nonce().await?;
        if relayed.nonce < nonce {
            return Err(RelayError::Conflict(format!(
                "Safe nonce {} is consumed (the Safe is at {nonce})",
                relayed.nonce
            )));
        }
        self.simulate_as_safe(&target, relayed.kind)
            .await
            .map_err(|e| RelayError::Mismatch(format!("{e:#} (here)")))?;
        let call = (target.address, relayed.calldata.clone(), target.name.as_str());
        let row = self.pending_row(
            hash,
            call,
            relayed.kind,
            &relayed.reason,
            relayed.nonce,
            relayed.created_block,
        );
        let proposal = Proposal {
            then_rollback: relayed.kind == ProposalKind::Pause && target.rollback,
            simulation: format!(
                "ok: eth_call of {}() from the Safe succeeds (checked on receipt)",
                relayed.kind.as_str()
            ),
            ..row
        };
        let actor = format!("replica {}", relayed.origin);
        let detail = format!(
            "relayed by replica {} ({} {} at Safe nonce {}): {}",
            relayed.origin,
            relayed.kind.as_str(),
            target.name,
            relayed.nonce,
            relayed.reason
        );
        let added = self.store().insert_proposal(&proposal, &actor, &detail)?;
        if self.store().proposal(hash)?.is_none() {
            let other = self
                .store()
                .pending_proposal_for(self.safe().address(), target.address, relayed.kind)?
                .map(|p| p.safe_tx_hash.to_string())
                .unwrap_or_default();
            return Err(RelayError::Conflict(format!(
                "another pending {} of {} is held here: {other}",
                relayed.kind.as_str(),
                target.name
            )));
        }
        if added && relayed.kind == ProposalKind::Pause {
            // The incident adopts the pending proposal when it proposes; one is opened under
            // the peer's key if none is open, so the rollback follows the pause here too.
            let reason = format!("relayed by replica {}: {}", relayed.origin, relayed.reason);
            self.store()
                .request_pause_keyed(
                    &target.name,
                    target.address,
                    &actor,
                    &reason,
                    target.rollback,
                    relayed.incident_key.as_deref(),
                )
                .map_err(|e| eyre::eyre!(e))?;
        }
        info!(%hash, origin = %relayed.origin, kind = relayed.kind.as_str(), contract = %target.name, added, "relayed proposal verified");
        Ok(added)
    }
}
