//! The project's compiled Solidity (`contracts/`): what it takes to deploy each contract and to
//! recognise its deployed code, as [`crate::compile`] reads them from forge's artifacts.

use std::collections::BTreeMap;

use alloy::{json_abi::JsonAbi, primitives::Bytes};
use eyre::{Result, eyre};

/// A compiled contract: what it takes to deploy it and to recognise its deployed code.
#[derive(Debug, Clone)]
pub struct CompiledContract {
    /// Contract name as written in Solidity.
    pub name: String,
    /// Its ABI.
    pub abi: JsonAbi,
    /// Creation code (constructor arguments are appended to it).
    pub bytecode: Bytes,
    /// Runtime code, as `eth_getCode` returns it after deployment (immutables aside).
    pub deployed_bytecode: Bytes,
}

/// Every deployable contract of the project, by name.
#[derive(Debug, Clone)]
pub struct Contracts {
    by_name: BTreeMap<String, CompiledContract>,
    reused_cache: bool,
}

impl Contracts {
    /// The contracts of one compilation, by name; `reused_cache` when the compiler's cache
    /// was up to date and nothing was recompiled.
    pub fn new(by_name: BTreeMap<String, CompiledContract>, reused_cache: bool) -> Self {
        Self { by_name, reused_cache }
    }

    /// The contract called `name`.
    pub fn get(&self, name: &str) -> Result<&CompiledContract> {
        self.by_name.get(name).ok_or_else(|| {
            eyre!(
                "no deployable contract named {name} in contracts/ (known: {})",
                self.by_name.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// Names of every deployable contract.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// True when nothing was recompiled because forge's cache was up to date.
    pub fn reused_cache(&self) -> bool {
        self.reused_cache
    }
}
