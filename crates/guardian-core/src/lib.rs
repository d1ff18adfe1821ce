//! guardian's pure decision core.
//!
//! Everything here is deterministic computation with no I/O: hashing Safe transactions the way the
//! Safe contract does, packing owner signatures, the severity matrix, the shapes the rule engine
//! consumes and produces, and config rollback decisions (backup names, which keys change, what
//! prune may delete). Adapters that talk to the chain, SQLite or files live in other
//! crates and call into this one, so every decision that matters is unit tested without a node.

pub mod audit;
pub mod backup;
pub mod finding;
pub mod incident;
pub mod postmortem;
pub mod proposal;
pub mod replication;
pub mod rules;
pub mod safe;
pub mod severity;
