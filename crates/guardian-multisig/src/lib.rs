//! guardian's pause proposals through the operators' Safe 1.4.1.
//!
//! - [`store`]: proposals keyed by `safeTxHash`, verified owner signatures and the audit trail
//!   (SQLite tables `proposals`, `proposal_signatures`, `proposal_events`).
//! - [`service`]: [`Multisig`], the life cycle against the live Safe: propose (simulated as the
//!   Safe), verify approvals, execute exactly once, verify `paused()`, settle stale proposals.
//! - [`api`]: the local HTTP API owners and operators use.
//!
//! The decisions (hashing, signature checks, calldata) are pure functions in
//! `guardian_core::{safe, proposal}`; this crate does the I/O around them.

pub mod api;
pub mod service;
pub mod store;

pub use service::{
    Advanced, Multisig, ProposalDetail, ProposeRequest, Proposed, SubmitError, Submitted, Target,
};
pub use store::{AuditEvent, Proposal, ProposalStatus, ProposalStore, StoredSignature};
