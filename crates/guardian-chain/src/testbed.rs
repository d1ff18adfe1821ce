//! A complete incident stage on a local chain: Anvil, a Safe 1.4.1 owned by operator keys, and
//! the project's pausable contracts owned by that Safe, including an older and a newer version of
//! the vault so "roll back to the previous contract" has somewhere to go.
//!
//! The integration tests and `guardian rehearse` both build their world with this, so a drill
//! exercises exactly what the tests check.

use alloy::{
    primitives::{Address, B256, Bytes, U256, b256},
    providers::{DynProvider, Provider, ext::AnvilApi},
    rpc::types::TransactionReceipt,
    signers::local::PrivateKeySigner,
    sol_types::{SolCall, SolValue},
};
use eyre::{Result, WrapErr, ensure};

use guardian_core::safe::Approvals;

use crate::{
    Contracts, Devnet, DevnetOptions, PauseModule, PauseTarget, Toolchain,
    safe::{SafeClient, SafeSingletons, deploy, encode_address, sign_safe_tx_hash},
    sender::SendOptions,
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
    /// Dev accounts that are pausers of a [`PauseModule`] deployed and enabled for the Safe,
    /// with VaultV2 and the proxied vault as its targets (`pause()`); empty: no module.
    pub pausers: Vec<usize>,
    /// Put Multicall3 at its canonical address (chain 138 may lack it: `false` stages that).
    pub multicall3: bool,
}

impl Default for TestbedOptions {
    fn default() -> Self {
        Self {
            devnet: DevnetOptions::default(),
            owners: 3,
            threshold: 2,
            pausers: Vec::new(),
            multicall3: true,
        }
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
    /// The upgradeable vault: an OpenZeppelin `TransparentUpgradeableProxy` in front of
    /// `VaultLogicV1`, paused by the Safe, upgraded through a ProxyAdmin owned by the release key.
    pub proxied_vault: Address,
    /// `VaultLogicV1`: the implementation the proxied vault was deployed with.
    pub vault_logic_v1: Address,
    /// The ProxyAdmin the proxy created (ERC-1967 admin slot), owned by the release key.
    pub proxy_admin: Address,
}

/// The dev account that owns the proxied vault's ProxyAdmin: the "release key" a team keeps for
/// upgrades, separate from the Safe that pauses (the first account past the owners when there
/// are more than 8 of them).
pub const RELEASE_KEY_INDEX: usize = 9;

/// ERC-1967 admin slot: `bytes32(uint256(keccak256("eip1967.proxy.admin")) - 1)`.
pub const EIP1967_ADMIN_SLOT: B256 =
    b256!("0xb53127684a568b3173ae13b9f8a6016e243e63b6e8ee1178d6a717850b5d6103");

/// A running chain with a Safe and the targets it owns. Anvil dies when this is dropped.
#[derive(Debug)]
pub struct Testbed {
    /// The chain.
    pub devnet: Devnet,
    /// Dev account 0: deploys everything and sends `execTransaction`.
    pub deployer: PrivateKeySigner,
    /// The Safe's owners, in dev-account order.
    pub owners: Vec<PrivateKeySigner>,
    /// Dev account [`RELEASE_KEY_INDEX`]: owns the proxied vault's ProxyAdmin.
    pub release_key: PrivateKeySigner,
    /// The Safe infrastructure contracts.
    pub singletons: SafeSingletons,
    /// The operators' Safe.
    pub safe: SafeClient,
    /// The pausable contracts owned by the Safe.
    pub targets: Targets,
    /// The Safe's pause module, enabled, when [`TestbedOptions::pausers`] named any.
    pub module: Option<PauseModule>,
}

impl Testbed {
    /// Start Anvil, deploy Safe 1.4.1 and the targets, and hand the targets to the Safe.
    ///
    /// Everything is deployed with a block per transaction; interval mining (if asked for)
    /// starts afterwards, so a stage with one-second blocks is ready in well under a second.
    pub async fn start(
        toolchain: &Toolchain,
        contracts: &Contracts,
        options: &TestbedOptions,
    ) -> Result<Self> {
        ensure!(options.owners >= 1, "a Safe needs at least one owner");
        let devnet = Devnet::spawn(
            toolchain,
            &DevnetOptions { block_time: None, ..options.devnet.clone() },
        )?;
        let deployer = devnet.signer(0)?;
        // Past the owners (dev accounts 1..=owners): the release key is never an operator.
        let release_key = devnet.signer(RELEASE_KEY_INDEX.max(options.owners + 1))?;
        let owners = (1..=options.owners).map(|i| devnet.signer(i)).collect::<Result<Vec<_>>>()?;
        let provider = devnet.provider_for(deployer.clone());

        let singletons = SafeSingletons::deploy(&provider, contracts).await?;
        let owner_addresses: Vec<Address> = owners.iter().map(PrivateKeySigner::address).collect();
        let safe_address = singletons
            .create_safe(&provider, &owner_addresses, options.threshold, U256::ZERO)
            .await?;
        let safe = SafeClient::connect(provider.clone(), safe_address).await?;
        let targets =
            deploy_targets(&provider, contracts, safe_address, release_key.address()).await?;
        let module = match options.pausers.as_slice() {
            [] => None,
            indices => {
                let pausers = indices
                    .iter()
                    .map(|&i| Ok(devnet.signer(i)?.address()))
                    .collect::<Result<Vec<_>>>()?;
                let threshold = usize::try_from(options.threshold)?;
                let module = install_pause_module(
                    &provider,
                    contracts,
                    &deployer,
                    &safe,
                    &pausers,
                    &targets,
                    ModuleEnabler::Owners(&owners[..threshold.min(owners.len())]),
                )
                .await?;
                Some(module)
            }
        };
        if options.multicall3 {
            let code = contracts.get("Multicall3")?.deployed_bytecode.clone();
            provider
                .anvil_set_code(crate::multicall::MULTICALL3, code)
                .await
                .wrap_err("putting Multicall3 at its canonical address")?;
        }
        if let Some(seconds) = options.devnet.block_time {
            provider
                .anvil_set_interval_mining(seconds)
                .await
                .wrap_err("switching Anvil to interval mining")?;
        }
        Ok(Self { devnet, deployer, owners, release_key, singletons, safe, targets, module })
    }

    /// A provider that signs as the deployer / executor.
    pub fn executor(&self) -> DynProvider {
        self.devnet.provider_for(self.deployer.clone())
    }
}

/// How the Safe enables a pause module on a stage.
#[derive(Debug, Clone, Copy)]
pub enum ModuleEnabler<'a> {
    /// A Safe transaction signed by these owners (at least the threshold), sent by the
    /// deployer: what the owners do on a real chain.
    Owners(&'a [PrivateKeySigner]),
    /// The Safe itself, impersonated by Anvil (a fork, whose owners' keys are unknown), sent
    /// over this provider, which must not sign (the node signs for an impersonated account).
    Impersonated(&'a DynProvider),
}

/// Deploy a [`PauseModule`] for `safe` with `pausers`, VaultV2 and the proxied vault as its
/// targets (`pause()`), and have the Safe enable it.
pub async fn install_pause_module(
    provider: &DynProvider,
    contracts: &Contracts,
    deployer: &PrivateKeySigner,
    safe: &SafeClient,
    pausers: &[Address],
    targets: &Targets,
    enabler: ModuleEnabler<'_>,
) -> Result<PauseModule> {
    let listed = [PauseTarget::pause(targets.vault_v2), PauseTarget::pause(targets.proxied_vault)];
    let options = SendOptions::default();
    let module = PauseModule::deploy(
        provider.clone(),
        contracts,
        deployer,
        safe.address(),
        pausers,
        &listed,
        &options,
    )
    .await?;
    let call = module.enable_call();
    match enabler {
        ModuleEnabler::Owners(owners) => {
            let tx = call.safe_tx(safe.nonce().await?);
            let hash = safe.tx_hash(&tx);
            let approvals: Approvals = owners
                .iter()
                .map(|owner| Ok((owner.address(), sign_safe_tx_hash(owner, hash)?)))
                .collect::<Result<_>>()?;
            let execution = safe.execute(deployer, &tx, &approvals, &options).await?;
            ensure!(execution.success, "the Safe did not execute enableModule ({hash})");
        }
        ModuleEnabler::Impersonated(provider) => {
            let address = safe.address();
            provider.anvil_impersonate_account(address).await?;
            provider.anvil_set_balance(address, U256::from(10u128.pow(18))).await?;
            let request = alloy::rpc::types::TransactionRequest::default()
                .from(address)
                .to(call.to)
                .input(call.data.clone().into());
            let receipt = provider.send_transaction(request).await?.get_receipt().await?;
            provider.anvil_stop_impersonating_account(address).await?;
            ensure!(receipt.status(), "enableModule sent as the impersonated Safe reverted");
        }
    }
    ensure!(
        module.is_enabled().await?,
        "Safe {} does not list the module as enabled",
        safe.address()
    );
    Ok(module)
}

/// Deploy the project's pausable contracts with `owner` (the Safe) as their owner, and the
/// proxied vault with its ProxyAdmin owned by `release_key`.
pub async fn deploy_targets(
    provider: &DynProvider,
    contracts: &Contracts,
    owner: Address,
    release_key: Address,
) -> Result<Targets> {
    let args = encode_address(owner);
    let factory = deploy(provider, contracts.get("SmartAccountFactory")?, &args).await?;
    let vault_v1 = deploy(provider, contracts.get("VaultV1")?, &args).await?;
    let vault_v2 = deploy(provider, contracts.get("VaultV2")?, &args).await?;
    let vault_logic_v1 = deploy(provider, contracts.get("VaultLogicV1")?, &[]).await?;
    let init = IVaultLogic::initializeCall { owner_: owner }.abi_encode();
    let proxy_args = (vault_logic_v1, release_key, Bytes::from(init)).abi_encode_params();
    let proxied_vault =
        deploy(provider, contracts.get("TransparentUpgradeableProxy")?, &proxy_args).await?;
    let admin = provider.get_storage_at(proxied_vault, EIP1967_ADMIN_SLOT.into()).await?;
    let proxy_admin = Address::from_word(admin.into());
    ensure!(
        !proxy_admin.is_zero(),
        "the proxied vault {proxied_vault} has no ProxyAdmin in its ERC-1967 admin slot"
    );
    Ok(Targets { factory, vault_v1, vault_v2, proxied_vault, vault_logic_v1, proxy_admin })
}

/// Upgrade the proxied vault to `implementation` through its ProxyAdmin, sent by `release` (a
/// provider signing as the release key). Returns the mined receipt; a revert is an error.
pub async fn upgrade_proxied_vault(
    release: &DynProvider,
    targets: &Targets,
    implementation: Address,
) -> Result<TransactionReceipt> {
    let admin = IProxyAdmin::new(targets.proxy_admin, release);
    let receipt = admin
        .upgradeAndCall(targets.proxied_vault, implementation, Bytes::new())
        .send()
        .await
        .wrap_err("sending upgradeAndCall")?
        .get_receipt()
        .await
        .wrap_err("waiting for upgradeAndCall")?;
    ensure!(receipt.status(), "upgradeAndCall reverted (tx {})", receipt.transaction_hash);
    Ok(receipt)
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

    /// The proxied vault's logic (`contracts/src/ProxiedVault.sol`).
    #[sol(rpc)]
    interface IVaultLogic {
        function initialize(address owner_) external;
        function sweep(address to) external;
    }

    /// OpenZeppelin 5 `ProxyAdmin`: the only way to upgrade a transparent proxy.
    #[sol(rpc)]
    interface IProxyAdmin {
        function upgradeAndCall(address proxy, address implementation, bytes data) external payable;
    }
}
