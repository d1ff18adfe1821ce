//! guardian's pause proposals through the operators' Safe 1.4.1.
//!
//! - [`service`]: [`Multisig`], the Safe side of an incident: propose (simulated as the Safe),
//!   verify and count approvals, execute exactly once, find out who executed, verify
//!   `paused()`, settle stale proposals; every fact goes to the incident machine as an event.
//! - [`store`]: the proposal types (stored in the guardian database by `guardian-store`).
//!
//! The decisions (hashing, signature checks, calldata, the incident lifecycle) are pure
//! functions in `guardian_core`; this crate does the I/O around them.

pub mod relay;
pub mod service;
pub mod store;

pub use relay::{RelayError, RelayedProposal};
pub use service::{
    ApproveError, Multisig, Observed, ProposalDetail, Proposed, SubmitError, Submitted, Target,
    already_contained,
};
pub use store::{AuditEvent, Proposal, ProposalStatus, StoredSignature};
