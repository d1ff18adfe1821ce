//! guardian's chain adapter.
//!
//! Thin I/O around the pure core: where the pinned toolchain lives ([`toolchain`]), the project's
//! compiled Solidity ([`contracts`], compiled by the pinned forge: [`compile`]), a local Anvil chain
//! ([`devnet`]), deploying and driving a Safe 1.4.1 ([`safe`]) and its pause-only module
//! ([`pause_module`]).
//! Used by the tests, the rehearsal and real deployments alike, so the code path a drill
//! exercises is the one production uses.

pub mod audit_anchor;
pub mod compile;
pub mod contracts;
pub mod devnet;
pub mod multicall;
pub mod pause_module;
pub mod safe;
pub mod sender;
pub mod testbed;
pub mod toolchain;

pub use compile::compile;
pub use contracts::{CompiledContract, Contracts};
pub use devnet::{Devnet, DevnetOptions};
pub use pause_module::{PauseModule, PauseTarget};
pub use testbed::{Testbed, TestbedOptions};
pub use toolchain::Toolchain;
