//! A local Anvil chain standing in for chain 138.
//!
//! Spawned on a free port with the chain id guardian is configured for, killed when dropped.
//! Used by the tests and the rehearsal; never by the daemon against a real chain.

use alloy::{
    network::EthereumWallet,
    node_bindings::{Anvil, AnvilInstance},
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
    transports::http::reqwest::Url,
};
use eyre::{Result, WrapErr, eyre};

use crate::Toolchain;

/// Chain 138 (Defi Oracle Meta): the id guardian rehearses with unless told otherwise.
pub const CHAIN_138: u64 = 138;

/// How to start Anvil.
#[derive(Debug, Clone)]
pub struct DevnetOptions {
    /// Chain id Anvil reports (`eth_chainId`) and signs with.
    pub chain_id: u64,
    /// Seconds between blocks (interval mining); `None` mines a block per transaction.
    pub block_time: Option<u64>,
    /// Fork this RPC endpoint instead of starting from genesis.
    pub fork_url: Option<String>,
    /// Fork at this block (every scenario of a drill forks the same state) instead of the
    /// latest.
    pub fork_block: Option<u64>,
    /// How many funded dev accounts to create.
    pub accounts: u32,
    /// Keep up to this many historical states in memory (Anvil's `--prune-history N`).
    /// `None`: Anvil's default, which keeps a few hundred and writes older ones to JSON files
    /// that each historical read then parses (about 630 `eth_getBalance` per second at
    /// 3 000 blocks back, against 40 000 from memory): a cost of Anvil, not of the node
    /// operators run, so the benchmarks of historical reads keep them in memory.
    pub history_in_memory: Option<u64>,
}

impl Default for DevnetOptions {
    fn default() -> Self {
        Self {
            chain_id: CHAIN_138,
            block_time: None,
            fork_url: None,
            fork_block: None,
            accounts: 10,
            history_in_memory: None,
        }
    }
}

/// A running Anvil process with its funded dev keys. Killed on drop.
#[derive(Debug)]
pub struct Devnet {
    anvil: AnvilInstance,
    signers: Vec<PrivateKeySigner>,
    /// Where Anvil writes the historical states it moves out of memory. Its own default,
    /// `~/.foundry/anvil/tmp/anvil-state-*`, is removed only when Anvil shuts down cleanly,
    /// and an Anvil killed on drop does not: a long chain left 5 GB there per run. Declared
    /// after `anvil`, so the folder goes once the process is killed.
    states: tempfile::TempDir,
}

impl Devnet {
    /// Start Anvil from the toolchain on a port the OS picks.
    pub fn spawn(toolchain: &Toolchain, options: &DevnetOptions) -> Result<Self> {
        let states = tempfile::Builder::new()
            .prefix("guardian-anvil-")
            .tempdir()
            .wrap_err("creating a folder for Anvil's historical states")?;
        let mut anvil = Anvil::at(toolchain.anvil())
            .chain_id(options.chain_id)
            .arg("--cache-path")
            .arg(states.path())
            .arg("--accounts")
            .arg(options.accounts.to_string());
        if let Some(seconds) = options.block_time {
            anvil = anvil.block_time(seconds);
        }
        if let Some(url) = &options.fork_url {
            anvil = anvil.fork(url.clone());
        }
        if let Some(block) = options.fork_block {
            anvil = anvil.fork_block_number(block);
        }
        if let Some(states) = options.history_in_memory {
            anvil = anvil.arg("--prune-history").arg(states.to_string());
        }
        let anvil = anvil
            .try_spawn()
            .wrap_err_with(|| format!("starting {}", toolchain.anvil().display()))?;
        let signers = anvil.keys().iter().cloned().map(PrivateKeySigner::from).collect();
        Ok(Self { anvil, signers, states })
    }

    /// The folder where Anvil writes the historical states it moves out of memory (removed
    /// when the Devnet is dropped).
    pub fn history_dir(&self) -> &std::path::Path {
        self.states.path()
    }

    /// HTTP JSON-RPC endpoint.
    pub fn http_url(&self) -> Url {
        self.anvil.endpoint_url()
    }

    /// WebSocket JSON-RPC endpoint.
    pub fn ws_url(&self) -> Url {
        self.anvil.ws_endpoint_url()
    }

    /// The chain id Anvil runs with.
    pub fn chain_id(&self) -> u64 {
        self.anvil.chain_id()
    }

    /// The OS process id of Anvil (for tests that kill it).
    pub fn pid(&self) -> u32 {
        self.anvil.child().id()
    }

    /// How many funded dev accounts there are.
    pub fn accounts(&self) -> usize {
        self.signers.len()
    }

    /// The `index`-th funded dev account.
    pub fn signer(&self, index: usize) -> Result<PrivateKeySigner> {
        self.signers.get(index).cloned().ok_or_else(|| {
            eyre!("Anvil has {} dev accounts, asked for #{index}", self.signers.len())
        })
    }

    /// A provider that signs with `signer` and fills gas, nonce and chain id itself.
    pub fn provider_for(&self, signer: PrivateKeySigner) -> DynProvider {
        wallet_provider(self.http_url(), signer)
    }

    /// A provider that only reads.
    pub fn reader(&self) -> DynProvider {
        guardian_rpc::tls::install_crypto_provider();
        ProviderBuilder::new().connect_http(self.http_url()).erased()
    }
}

/// A provider on `url` that signs with `signer` and fills gas, nonce and chain id.
pub fn wallet_provider(url: Url, signer: PrivateKeySigner) -> DynProvider {
    guardian_rpc::tls::install_crypto_provider();
    ProviderBuilder::new().wallet(EthereumWallet::from(signer)).connect_http(url).erased()
}
