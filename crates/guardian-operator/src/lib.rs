//! The operators' side of guardian: one desk ([`desk::Desk`]) that lists and shows incidents,
//! findings and proposals, takes pause and unpause requests, signatures, resolutions and
//! cancellations, and the HTTP API ([`api`]) that serves the same desk. The CLI and the API
//! call the desk and only parse and print; the desk calls the incident machine (through the
//! store) and the Safe service, and decides nothing of its own.

pub mod api;
pub mod desk;
pub mod endpoints;
pub mod peers;
pub mod status;
pub mod status_page;

pub use desk::{
    Desk, DeskError, EffectView, FindingView, IncidentSummary, IncidentView, PauseOutcome,
    ProposalDetailView, ProposalIncident, ProposalView, TimelineEntry, connect, executor_key,
    pauser_key, store_replication, targets, utc,
};
pub use endpoints::{RPC_TIMEOUT, rpc_pool};
