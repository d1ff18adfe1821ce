//! A complete incident stage on a local chain: Anvil, a Safe 1.4.1 owned by operator keys, and
//! the project's pausable contracts owned by that Safe, including an older and a newer version of
//! the vault so "roll back to the previous contract" has somewhere to go.
//!
//! The integration tests and `guardian rehearse` both build their world with this, so a drill
//! exercises exactly what the tests check.

use alloy::{
    primitives::{Address, U256},
    providers::DynProvider,
    signers::local::PrivateKeySigner,
};
use eyre::{Result, ensure};

use crate::{
    Contracts, Devnet, DevnetOptions, Toolchain,
    safe::{SafeClient, SafeSingletons, deploy, encode_address},
};

/// How to lay out the stage.
#[derive(Debug, Clone)]
pub struct TestbedOptions {
    /// The chain to start.
    pub devnet: DevnetOptions,
    /// How many operator keys own the Safe (dev accounts 1..=owners).
    pub owners: usize,
    /// Approvals the Safe requires.
    pub threshold: u64,
}

impl Default for TestbedOptions {
    fn default() -> Self {
        Self { devnet: DevnetOptions::default(), owners: 3, threshold: 2 }
    }
}

/// Addresses of the project's contracts on the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Targets {
    /// `SmartAccountFactory`.
    pub factory: Address,
    /// `VaultV1`: the previous, known-good vault.
    pub vault_v1: Address,
    /// `VaultV2`: the current vault, which has the bug the rehearsal exploits.
    pub vault_v2: Address,
}

/// A running chain with a Safe and the targets it owns. Anvil dies when this is dropped.
#[derive(Debug)]
pub struct Testbed {
    /// The chain.
    pub devnet: Devnet,
    /// Dev account 0: deploys everything and sends `execTransaction`.
    pub deployer: PrivateKeySigner,
    /// The Safe's owners, in dev-account order.
    pub owners: Vec<PrivateKeySigner>,
    /// The Safe infrastructure contracts.
    pub singletons: SafeSingletons,
    /// The operators' Safe.
    pub safe: SafeClient,
    /// The pausable contracts owned by the Safe.
    pub targets: Targets,
}

impl Testbed {
    /// Start Anvil, deploy Safe 1.4.1 and the targets, and hand the targets to the Safe.
    pub async fn start(
        toolchain: &Toolchain,
        contracts: &Contracts,
        options: &TestbedOptions,
    ) -> Result<Self> {
        ensure!(options.owners >= 1, "a Safe needs at least one owner");
        let devnet = Devnet::spawn(toolchain, &options.devnet)?;
        let deployer = devnet.signer(0)?;
        let owners = (1..=options.owners).map(|i| devnet.signer(i)).collect::<Result<Vec<_>>>()?;
        let provider = devnet.provider_for(deployer.clone());

        let singletons = SafeSingletons::deploy(&provider, contracts).await?;
        let owner_addresses: Vec<Address> = owners.iter().map(PrivateKeySigner::address).collect();
        let safe_address = singletons
            .create_safe(&provider, &owner_addresses, options.threshold, U256::ZERO)
            .await?;
        let safe = SafeClient::connect(provider.clone(), safe_address).await?;
        let targets = deploy_targets(&provider, contracts, safe_address).await?;
        Ok(Self { devnet, deployer, owners, singletons, safe, targets })
    }

    /// A provider that signs as the deployer / executor.
    pub fn executor(&self) -> DynProvider {
        self.devnet.provider_for(self.deployer.clone())
    }
}

/// Deploy the project's pausable contracts with `owner` (the Safe) as their owner.
pub async fn deploy_targets(
    provider: &DynProvider,
    contracts: &Contracts,
    owner: Address,
) -> Result<Targets> {
    let args = encode_address(owner);
    Ok(Targets {
        factory: deploy(provider, contracts.get("SmartAccountFactory")?, &args).await?,
        vault_v1: deploy(provider, contracts.get("VaultV1")?, &args).await?,
        vault_v2: deploy(provider, contracts.get("VaultV2")?, &args).await?,
    })
}

alloy::sol! {
    /// The rehearsal vault (`contracts/src/Vault.sol`, V1 and V2).
    #[sol(rpc)]
    interface IVault {
        function deposit() external payable;
        function withdraw(uint256 amount) external;
        function sponsoredWithdraw(address to, uint256 amount) external;
        function balanceOf(address account) external view returns (uint256);
        function totalDeposits() external view returns (uint256);
        function solvent() external view returns (bool);
        event Deposited(address indexed account, uint256 amount);
        event Withdrawn(address indexed account, address indexed to, uint256 amount);
    }
}
