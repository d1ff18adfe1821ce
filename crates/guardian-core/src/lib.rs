//! guardian's pure decision core.
//!
//! Everything here is deterministic computation with no I/O: hashing Safe transactions the way the
//! Safe contract does, packing owner signatures, and (in later modules) rules and severity policy.
//! Adapters that talk to the chain, SQLite or files live in other crates and call into this one,
//! so every decision that matters can be unit tested exhaustively without a node.

pub mod safe;
