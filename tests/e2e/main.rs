//! End-to-end tests against a real Anvil (chain id 138) and a real Safe 1.4.1.
//!
//! One test binary so the workspace links once; the Solidity project compiles once per run
//! (see [`support::contracts`]) and every test starts its own Anvil, so tests stay independent.

mod audit;
mod cli;
mod config_check;
mod daemon;
mod endurance;
mod follow;
mod immediate;
mod incident;
mod multisig;
mod multisig_cli;
mod observe;
mod packaging;
mod pause_module;
mod rehearse;
mod replicas;
mod rollback;
mod rollback_files;
mod rpc;
mod rules_on_chain;
mod safe_flow;
mod secrets;
mod sender;
mod support;
