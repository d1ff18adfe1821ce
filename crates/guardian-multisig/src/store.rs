//! Proposals, owner signatures and their trail live in the guardian database
//! ([`guardian_store::proposals`]); re-exported here where the Safe flow uses them.

pub use guardian_store::proposals::{AuditEvent, Proposal, ProposalStatus, StoredSignature};
