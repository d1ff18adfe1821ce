//! The pause-only Safe module (`contracts/src/PauseModule.sol`): a hot "pauser" key may make the
//! Safe call the registered pause calldata on a registered target, and nothing else.
//!
//! The operators' matrix acts on Critical findings at once, without owner signatures; unpausing
//! and every other change still need the Safe's threshold. This module gives guardian what that
//! takes:
//!
//! - [`PauseModule::deploy`] a module for a Safe with its initial pausers and targets, then have
//!   the owners execute [`PauseModule::enable_call`] (one Safe transaction);
//! - read it: [`PauseModule::state`] (owner, Safe, enabled or not, pausers, targets with their
//!   calldata);
//! - build the Safe transactions that change it ([`PauseModule::add_pauser_call`] and friends,
//!   [`PauseModule::disable_call`], which finds the Safe's previous module itself) and check them
//!   as the Safe before proposing ([`PauseModule::check_as_safe`]);
//! - [`PauseModule::simulate_pause`] and [`PauseModule::pause`] from a pauser key, with a typed
//!   [`PauseError`] for what a caller branches on (already paused, not a pauser, not enabled…).
//!
//! Keys are only ever used to sign; only their addresses are logged.

use std::fmt;

use alloy::{
    network::TransactionBuilder,
    primitives::{Address, B256, Bytes, U256, address},
    providers::{DynProvider, Provider},
    rpc::types::{TransactionReceipt, TransactionRequest},
    signers::local::PrivateKeySigner,
    sol_types::{Revert, SolCall, SolError, SolInterface, SolValue},
};
use eyre::{Result, WrapErr, bail, ensure, eyre};
use guardian_core::safe::{SafeTx, explain_error_code};
use tracing::{debug, info, warn};

use crate::{
    Contracts,
    safe::explain_contract_error,
    sender::{SendOptions, send_reliably},
};

/// Solidity bindings for the module and the module half of Safe 1.4.1.
mod bindings {
    use alloy::sol;

    sol! {
        /// `contracts/src/PauseModule.sol`, Zodiac `Module` base included.
        #[sol(rpc, all_derives)]
        interface IPauseModule {
            /// A contract the pausers may pause and the exact calldata that pauses it.
            struct PauseTarget {
                address target;
                bytes pauseData;
            }

            function pause(address target) external;
            function addPauser(address pauser) external;
            function removePauser(address pauser) external;
            function addPauseTarget(address target, bytes pauseData) external;
            function removePauseTarget(address target) external;
            function isPauser(address account) external view returns (bool);
            function pausers() external view returns (address[]);
            function isPauseTarget(address target) external view returns (bool);
            function pauseDataOf(address target) external view returns (bytes);
            function pauseTargets() external view returns (PauseTarget[]);

            // Zodiac `Module`, `Ownable`, `FactoryFriendly`.
            function owner() external view returns (address);
            function avatar() external view returns (address);
            function target() external view returns (address);
            function setAvatar(address avatar) external;
            function setTarget(address target) external;
            function transferOwnership(address newOwner) external;
            function setUp(bytes initializeParams) external;

            event TargetPaused(address indexed target, address indexed pauser);
            event PauserAdded(address indexed pauser);
            event PauserRemoved(address indexed pauser);
            event PauseTargetAdded(address indexed target, bytes pauseData);
            event PauseTargetRemoved(address indexed target);
            event AvatarSet(address indexed previousAvatar, address indexed newAvatar);
            event TargetSet(address indexed previousTarget, address indexed newTarget);
            event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

            error NotPauser(address account);
            error UnknownPauseTarget(address target);
            error TargetCallFailed(address target, bytes returnData);
            error InvalidSafe(address safe);
            error InvalidPauser(address pauser);
            error PauserAlreadyAdded(address pauser);
            error UnknownPauser(address pauser);
            error InvalidPauseTarget(address target);
            error InvalidPauseData(address target, bytes pauseData);
            error PauseTargetAlreadyAdded(address target);
            error OwnableUnauthorizedAccount(address account);
            error AlreadyInitialized();
        }

        /// Safe 1.4.1's `ModuleManager`.
        #[sol(rpc)]
        interface ISafeModules {
            function enableModule(address module) external;
            function disableModule(address prevModule, address module) external;
            function isModuleEnabled(address module) external view returns (bool);
            function getModulesPaginated(address start, uint256 pageSize) external view returns (address[] array, address next);
            function execTransactionFromModule(address to, uint256 value, bytes data, uint8 operation) external returns (bool success);
            function execTransactionFromModuleReturnData(address to, uint256 value, bytes data, uint8 operation) external returns (bool success, bytes returnData);

            event EnabledModule(address indexed module);
            event DisabledModule(address indexed module);
            event ExecutionFromModuleSuccess(address indexed module);
            event ExecutionFromModuleFailure(address indexed module);
        }

        /// OpenZeppelin 5 `Pausable`'s refusal to pause twice.
        error EnforcedPause();
    }
}
pub use bindings::{EnforcedPause, IPauseModule, ISafeModules};

use IPauseModule::IPauseModuleErrors as ModuleErrors;

/// The head (and end) of a Safe's module linked list.
pub const SENTINEL_MODULES: Address = address!("0x0000000000000000000000000000000000000001");

/// OpenZeppelin `Pausable`'s `pause()`: selector 0x8456cb59.
pub const PAUSE_SELECTOR: [u8; 4] = [0x84, 0x56, 0xcb, 0x59];

/// Modules read per `getModulesPaginated` call.
const MODULES_PAGE: u64 = 50;

/// A contract the module's pausers may pause, with the exact calldata that pauses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseTarget {
    /// The contract.
    pub address: Address,
    /// What the Safe calls on it: `pause()` (0x8456cb59) for OpenZeppelin `Pausable`, or another
    /// function's calldata for a contract that pauses differently.
    pub pause_data: Bytes,
}

impl PauseTarget {
    /// `address` paused by OpenZeppelin's `pause()`.
    pub fn pause(address: Address) -> Self {
        Self { address, pause_data: Bytes::from(PAUSE_SELECTOR) }
    }

    /// `address` paused by calling `pause_data` on it.
    pub fn with_calldata(address: Address, pause_data: Bytes) -> Self {
        Self { address, pause_data }
    }
}

impl From<IPauseModule::PauseTarget> for PauseTarget {
    fn from(t: IPauseModule::PauseTarget) -> Self {
        Self { address: t.target, pause_data: t.pauseData }
    }
}

impl From<&PauseTarget> for IPauseModule::PauseTarget {
    fn from(t: &PauseTarget) -> Self {
        Self { target: t.address, pauseData: t.pause_data.clone() }
    }
}

/// The call a Safe transaction makes (value 0, operation Call): what the owners sign and
/// guardian proposes, e.g. `enableModule(module)` on the Safe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeCall {
    /// The contract the Safe calls.
    pub to: Address,
    /// The calldata.
    pub data: Bytes,
}

impl SafeCall {
    /// The Safe transaction for this call at `nonce` (no value, no refund).
    pub fn safe_tx(&self, nonce: U256) -> SafeTx {
        SafeTx::call(self.to, U256::ZERO, self.data.clone(), nonce)
    }
}

/// What a module looks like on chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleState {
    /// The module's address.
    pub module: Address,
    /// Who may change it (Zodiac `owner`): the Safe.
    pub owner: Address,
    /// The account it acts for (Zodiac `avatar`): the Safe.
    pub avatar: Address,
    /// The Safe whose `execTransactionFromModule` it calls (Zodiac `target`).
    pub safe: Address,
    /// Whether `safe` has the module enabled (`isModuleEnabled`).
    pub enabled: bool,
    /// The keys that may pause.
    pub pausers: Vec<Address>,
    /// What they may pause, and how.
    pub targets: Vec<PauseTarget>,
}

/// Why a pause through the module was refused, for callers that act on the reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PauseError {
    /// The sending key is not one of the module's pausers.
    #[error("{account} is not a pauser of pause module {module}; the Safe must add it (addPauser)")]
    NotPauser {
        /// The module.
        module: Address,
        /// The key that tried.
        account: Address,
    },
    /// The contract is not one of the module's pause targets.
    #[error(
        "{target} is not a pause target of pause module {module}; the Safe must add it (addPauseTarget)"
    )]
    UnknownTarget {
        /// The module.
        module: Address,
        /// The contract.
        target: Address,
    },
    /// The Safe refused the module (`GS104`): it was never enabled, or it has been disabled.
    #[error(
        "pause module {module} is not enabled on Safe {safe} (GS104): the owners must execute enableModule({module})"
    )]
    NotEnabled {
        /// The module.
        module: Address,
        /// The Safe it calls.
        safe: Address,
    },
    /// The target refused to pause because it is paused already (OpenZeppelin `EnforcedPause()`
    /// or `"Pausable: paused"`). The module reverts rather than doing nothing.
    #[error("{target} is already paused ({reason})")]
    AlreadyPaused {
        /// The contract.
        target: Address,
        /// Its refusal, decoded.
        reason: String,
    },
    /// The Safe reported that the pause call on the target failed for another reason.
    #[error("the Safe's pause call on {target} failed: {reason}")]
    TargetCallFailed {
        /// The contract.
        target: Address,
        /// The target's revert data as the module reports it.
        return_data: Bytes,
        /// That data, decoded where guardian knows the error.
        reason: String,
    },
    /// Any other revert of `pause` (decoded reason and raw data).
    #[error("pause through module {module} reverted: {reason}")]
    Reverted {
        /// The module.
        module: Address,
        /// The revert, decoded where guardian knows it.
        reason: String,
        /// The raw revert data.
        data: Bytes,
    },
    /// The simulation passed but the mined transaction reverted (e.g. another pauser was first).
    #[error("the pause transaction {tx} was mined but reverted; simulate again to learn why")]
    RevertedOnChain {
        /// The transaction hash.
        tx: B256,
    },
    /// RPC or sending failure (no decision about the pause itself).
    #[error(transparent)]
    Other(#[from] eyre::Report),
}

/// A handle on one deployed pause module.
#[derive(Clone)]
pub struct PauseModule {
    address: Address,
    safe: Address,
    provider: DynProvider,
}

impl fmt::Debug for PauseModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PauseModule")
            .field("address", &self.address)
            .field("safe", &self.safe)
            .finish_non_exhaustive()
    }
}

impl PauseModule {
    /// Deploy a `PauseModule` for `safe` (its owner, avatar and target) with the initial
    /// `pausers` and `targets`, sent by `deployer` (any funded key; it gets no rights).
    ///
    /// The constructor is simulated first, so a refused layout (the Safe or a zero address as a
    /// target, a duplicate pauser, calldata shorter than a selector) is reported by name and
    /// nothing is sent. The module is not enabled yet: the owners execute [`Self::enable_call`].
    pub async fn deploy(
        provider: DynProvider,
        contracts: &Contracts,
        deployer: &PrivateKeySigner,
        safe: Address,
        pausers: &[Address],
        targets: &[PauseTarget],
        options: &SendOptions,
    ) -> Result<Self> {
        let contract = contracts.get("PauseModule")?;
        let targets_abi: Vec<IPauseModule::PauseTarget> = targets.iter().map(Into::into).collect();
        let mut code = contract.bytecode.to_vec();
        code.extend_from_slice(&(safe, pausers.to_vec(), targets_abi).abi_encode_params());
        let request = TransactionRequest::default().from(deployer.address()).with_deploy_code(code);
        if let Err(error) = provider.call(request.clone()).await {
            let refusal = error
                .as_error_resp()
                .and_then(|resp| resp.as_revert_data())
                .map(|data| describe_revert(&data, safe));
            return Err(match refusal {
                Some(why) => eyre!("the PauseModule constructor refuses this layout: {why}"),
                None => eyre::Report::new(error).wrap_err("simulating the PauseModule deployment"),
            })
            .wrap_err(format!("nothing was deployed for Safe {safe}"));
        }
        let receipt = send_reliably(&provider, deployer, request, options)
            .await
            .wrap_err("sending the PauseModule deployment")?;
        ensure!(
            receipt.status(),
            "the PauseModule deployment reverted (tx {})",
            receipt.transaction_hash
        );
        let address = receipt.contract_address.ok_or_else(|| {
            eyre!("the PauseModule deployment {} has no contract address", receipt.transaction_hash)
        })?;
        info!(
            module = %address,
            %safe,
            pausers = pausers.len(),
            targets = targets.len(),
            deployer = %deployer.address(),
            "deployed pause module"
        );
        Ok(Self { address, safe, provider })
    }

    /// Connect to the module at `address`: it must answer as a `PauseModule` (Zodiac `target()`,
    /// `pausers()`). The Safe it calls is read once, here.
    pub async fn connect(provider: DynProvider, address: Address) -> Result<Self> {
        let module = IPauseModule::new(address, &provider);
        let safe = module
            .target()
            .call()
            .await
            .map_err(|e| explain_contract_error(e, "target()"))
            .wrap_err_with(|| format!("{address} does not answer as a pause module"))?;
        module
            .pausers()
            .call()
            .await
            .map_err(|e| explain_contract_error(e, "pausers()"))
            .wrap_err_with(|| format!("{address} does not answer as a pause module"))?;
        Ok(Self { address, safe, provider })
    }

    /// The module's address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The Safe the module calls (its Zodiac `target`, read when the handle was made).
    pub fn safe(&self) -> Address {
        self.safe
    }

    fn contract(&self) -> IPauseModule::IPauseModuleInstance<&DynProvider> {
        IPauseModule::new(self.address, &self.provider)
    }

    fn safe_modules(&self) -> ISafeModules::ISafeModulesInstance<&DynProvider> {
        ISafeModules::new(self.safe, &self.provider)
    }

    /// Whether the Safe has this module enabled (`isModuleEnabled`).
    pub async fn is_enabled(&self) -> Result<bool> {
        self.safe_modules()
            .isModuleEnabled(self.address)
            .call()
            .await
            .map_err(|e| explain_contract_error(e, "isModuleEnabled()"))
            .wrap_err_with(|| format!("asking Safe {} about module {}", self.safe, self.address))
    }

    /// The keys that may pause.
    pub async fn pausers(&self) -> Result<Vec<Address>> {
        self.contract().pausers().call().await.map_err(|e| explain_contract_error(e, "pausers()"))
    }

    /// Whether `account` may pause.
    pub async fn is_pauser(&self, account: Address) -> Result<bool> {
        self.contract()
            .isPauser(account)
            .call()
            .await
            .map_err(|e| explain_contract_error(e, "isPauser()"))
    }

    /// Every pause target with its calldata.
    pub async fn targets(&self) -> Result<Vec<PauseTarget>> {
        let targets = self
            .contract()
            .pauseTargets()
            .call()
            .await
            .map_err(|e| explain_contract_error(e, "pauseTargets()"))?;
        Ok(targets.into_iter().map(Into::into).collect())
    }

    /// Everything the module and its Safe say about it.
    pub async fn state(&self) -> Result<ModuleState> {
        let module = self.contract();
        let owner =
            module.owner().call().await.map_err(|e| explain_contract_error(e, "owner()"))?;
        let avatar =
            module.avatar().call().await.map_err(|e| explain_contract_error(e, "avatar()"))?;
        let safe =
            module.target().call().await.map_err(|e| explain_contract_error(e, "target()"))?;
        if owner != safe || avatar != safe {
            warn!(module = %self.address, %owner, %avatar, %safe, "pause module's owner, avatar and Safe differ");
        }
        Ok(ModuleState {
            module: self.address,
            owner,
            avatar,
            safe,
            enabled: self.is_enabled().await?,
            pausers: self.pausers().await?,
            targets: self.targets().await?,
        })
    }

    /// The Safe transaction that enables this module: `enableModule(module)` on the Safe.
    pub fn enable_call(&self) -> SafeCall {
        SafeCall {
            to: self.safe,
            data: ISafeModules::enableModuleCall { module: self.address }.abi_encode().into(),
        }
    }

    /// The Safe transaction that disables this module: `disableModule(prev, module)` on the
    /// Safe, `prev` being the module before it in the Safe's linked list (read now, so build it
    /// just before proposing; another module enabled or disabled meanwhile changes it).
    pub async fn disable_call(&self) -> Result<SafeCall> {
        let modules = safe_modules(&self.provider, self.safe).await?;
        let Some(prev_module) = previous_module(&modules, self.address) else {
            bail!(
                "module {} is not enabled on Safe {}: nothing to disable",
                self.address,
                self.safe
            );
        };
        Ok(SafeCall {
            to: self.safe,
            data: ISafeModules::disableModuleCall { prevModule: prev_module, module: self.address }
                .abi_encode()
                .into(),
        })
    }

    /// The Safe transaction that lets `pauser` pause.
    pub fn add_pauser_call(&self, pauser: Address) -> SafeCall {
        self.module_call(IPauseModule::addPauserCall { pauser }.abi_encode())
    }

    /// The Safe transaction that withdraws `pauser`'s right to pause.
    pub fn remove_pauser_call(&self, pauser: Address) -> SafeCall {
        self.module_call(IPauseModule::removePauserCall { pauser }.abi_encode())
    }

    /// The Safe transaction that lets the pausers pause `target`.
    pub fn add_target_call(&self, target: &PauseTarget) -> SafeCall {
        self.module_call(
            IPauseModule::addPauseTargetCall {
                target: target.address,
                pauseData: target.pause_data.clone(),
            }
            .abi_encode(),
        )
    }

    /// The Safe transaction that stops the pausers pausing `target`.
    pub fn remove_target_call(&self, target: Address) -> SafeCall {
        self.module_call(IPauseModule::removePauseTargetCall { target }.abi_encode())
    }

    fn module_call(&self, data: Vec<u8>) -> SafeCall {
        SafeCall { to: self.address, data: data.into() }
    }

    /// `eth_call` of `call` from the Safe: would this change go through if the owners executed
    /// it? The module's refusal is named (e.g. "PauserAlreadyAdded(0x…)"), which the Safe's own
    /// execution would hide behind `GS013`.
    pub async fn check_as_safe(&self, call: &SafeCall) -> Result<()> {
        let request = TransactionRequest::default()
            .from(self.safe)
            .to(call.to)
            .input(call.data.clone().into());
        match self.provider.call(request).await {
            Ok(_) => Ok(()),
            Err(error) => {
                let why = error
                    .as_error_resp()
                    .and_then(|resp| resp.as_revert_data())
                    .map(|data| describe_revert(&data, self.safe));
                Err(match why {
                    Some(why) => eyre!("{why}"),
                    None => eyre::Report::new(error),
                })
                .wrap_err(format!("the call on {} as Safe {} would revert", call.to, self.safe))
            }
        }
    }

    /// `eth_call` of `pause(target)` from `pauser`: would a pause go through right now?
    pub async fn simulate_pause(&self, pauser: Address, target: Address) -> Result<(), PauseError> {
        match self.provider.call(self.pause_request(pauser, target)).await {
            Ok(_) => Ok(()),
            Err(error) => match error.as_error_resp().and_then(|resp| resp.as_revert_data()) {
                Some(data) => Err(classify_pause_revert(&data, self.address, self.safe)),
                None => Err(PauseError::Other(eyre::Report::new(error).wrap_err(format!(
                    "simulating pause({target}) through module {}",
                    self.address
                )))),
            },
        }
    }

    /// Simulate, then send `pause(target)` signed by `pauser`, and check the module's
    /// `TargetPaused` event in the receipt. Nothing is sent when the simulation reverts.
    ///
    /// The module only knows the target's calldata, not how to read its state: callers verify
    /// the outcome themselves, e.g. [`crate::safe::is_paused`] for OpenZeppelin `Pausable`.
    pub async fn pause(
        &self,
        pauser: &PrivateKeySigner,
        target: Address,
        options: &SendOptions,
    ) -> Result<TransactionReceipt, PauseError> {
        let from = pauser.address();
        self.simulate_pause(from, target).await?;
        let receipt =
            send_reliably(&self.provider, pauser, self.pause_request(from, target), options)
                .await
                .wrap_err_with(|| {
                    format!("sending pause({target}) through module {}", self.address)
                })?;
        if !receipt.status() {
            return Err(PauseError::RevertedOnChain { tx: receipt.transaction_hash });
        }
        let emitted = receipt.inner.logs().iter().any(|log| {
            log.address() == self.address
                && log.log_decode::<IPauseModule::TargetPaused>().is_ok_and(|event| {
                    event.inner.data.target == target && event.inner.data.pauser == from
                })
        });
        if !emitted {
            return Err(PauseError::Other(eyre!(
                "pause transaction {} has no TargetPaused({target}, {from}) event of module {}",
                receipt.transaction_hash,
                self.address
            )));
        }
        info!(module = %self.address, %target, pauser = %from, tx = %receipt.transaction_hash, "paused through the module");
        Ok(receipt)
    }

    fn pause_request(&self, pauser: Address, target: Address) -> TransactionRequest {
        TransactionRequest::default()
            .from(pauser)
            .to(self.address)
            .input(Bytes::from(IPauseModule::pauseCall { target }.abi_encode()).into())
    }
}

/// The calldata of the Safe's `enableModule(module)`: what an enable proposal must carry.
pub fn enable_calldata(module: Address) -> Bytes {
    ISafeModules::enableModuleCall { module }.abi_encode().into()
}

/// The module a Safe `disableModule(prev, module)` calldata disables, when it is one.
pub fn disabled_module(data: &[u8]) -> Option<Address> {
    ISafeModules::disableModuleCall::abi_decode(data).ok().map(|call| call.module)
}

/// Every module enabled on `safe`, newest first (the Safe's linked-list order), read page by
/// page with `getModulesPaginated`.
pub async fn safe_modules(provider: &DynProvider, safe: Address) -> Result<Vec<Address>> {
    let manager = ISafeModules::new(safe, provider);
    let mut modules = Vec::new();
    let mut start = SENTINEL_MODULES;
    loop {
        let page = manager
            .getModulesPaginated(start, U256::from(MODULES_PAGE))
            .call()
            .await
            .map_err(|e| explain_contract_error(e, "getModulesPaginated()"))
            .wrap_err_with(|| format!("listing the modules of Safe {safe}"))?;
        modules.extend_from_slice(&page.array);
        // Safe 1.4.1 returns the sentinel at the end, or else the page's last module to go on from.
        if page.next == SENTINEL_MODULES || page.next.is_zero() || page.array.is_empty() {
            break;
        }
        ensure!(
            page.next != start && modules.len() < 100_000,
            "Safe {safe}'s module list does not end (at {})",
            page.next
        );
        start = page.next;
    }
    debug!(%safe, count = modules.len(), "read the Safe's modules");
    Ok(modules)
}

/// The entry before `module` in a Safe's module list `modules` (as [`safe_modules`] returns it):
/// the `prevModule` that `disableModule` demands. [`SENTINEL_MODULES`] when `module` is first;
/// `None` when it is not in the list.
pub fn previous_module(modules: &[Address], module: Address) -> Option<Address> {
    let index = modules.iter().position(|m| *m == module)?;
    Some(if index == 0 { SENTINEL_MODULES } else { modules[index - 1] })
}

/// What `data` reverted from `pause` means, as a [`PauseError`] a caller can branch on.
pub fn classify_pause_revert(data: &[u8], module: Address, safe: Address) -> PauseError {
    match ModuleErrors::abi_decode(data) {
        Ok(ModuleErrors::NotPauser(e)) => PauseError::NotPauser { module, account: e.account },
        Ok(ModuleErrors::UnknownPauseTarget(e)) => {
            PauseError::UnknownTarget { module, target: e.target }
        }
        Ok(ModuleErrors::TargetCallFailed(e)) => {
            let reason = describe_target_revert(&e.returnData, safe);
            if is_already_paused(&e.returnData) {
                PauseError::AlreadyPaused { target: e.target, reason }
            } else {
                PauseError::TargetCallFailed { target: e.target, return_data: e.returnData, reason }
            }
        }
        _ if revert_string(data).as_deref() == Some("GS104") => {
            PauseError::NotEnabled { module, safe }
        }
        _ => PauseError::Reverted {
            module,
            reason: describe_revert(data, safe),
            data: Bytes::copy_from_slice(data),
        },
    }
}

fn is_already_paused(data: &[u8]) -> bool {
    EnforcedPause::abi_decode(data).is_ok()
        || revert_string(data).as_deref() == Some("Pausable: paused")
}

fn revert_string(data: &[u8]) -> Option<String> {
    Revert::abi_decode(data).ok().map(|r| r.reason)
}

/// A revert of the module or of the Safe under it, in words: the module's custom errors by name
/// with their arguments, Safe `GSxxx` codes explained, otherwise the raw data.
pub fn describe_revert(data: &[u8], safe: Address) -> String {
    if let Ok(error) = ModuleErrors::abi_decode(data) {
        return describe_module_error(error, safe);
    }
    if let Some(code) = revert_string(data) {
        return match explain_safe_code(&code) {
            Some(meaning) => format!("{code}: {meaning}"),
            None => format!("reverted: {code}"),
        };
    }
    if data.is_empty() {
        "reverted without data (no such function, or value sent to a function that takes none)"
            .to_owned()
    } else {
        format!("unrecognised revert data {}", Bytes::copy_from_slice(data))
    }
}

fn describe_module_error(error: ModuleErrors, safe: Address) -> String {
    use ModuleErrors as E;
    match error {
        E::NotPauser(e) => format!("NotPauser({}): not a pauser", e.account),
        E::UnknownPauseTarget(e) => {
            format!("UnknownPauseTarget({}): not a registered pause target", e.target)
        }
        E::TargetCallFailed(e) => format!(
            "TargetCallFailed({}): the Safe's call failed: {}",
            e.target,
            describe_target_revert(&e.returnData, safe)
        ),
        E::InvalidSafe(e) => format!("InvalidSafe({}): a module needs a Safe", e.safe),
        E::InvalidPauser(e) => format!("InvalidPauser({}): not a usable pauser", e.pauser),
        E::PauserAlreadyAdded(e) => format!("PauserAlreadyAdded({}): already a pauser", e.pauser),
        E::UnknownPauser(e) => format!("UnknownPauser({}): not a pauser", e.pauser),
        E::InvalidPauseTarget(e) => format!(
            "InvalidPauseTarget({}): the zero address, the Safe and the module cannot be pause targets",
            e.target
        ),
        E::InvalidPauseData(e) => format!(
            "InvalidPauseData({}, {}): pause calldata needs at least a 4-byte selector",
            e.target, e.pauseData
        ),
        E::PauseTargetAlreadyAdded(e) => format!(
            "PauseTargetAlreadyAdded({}): already a target (remove it first to change its calldata)",
            e.target
        ),
        E::OwnableUnauthorizedAccount(e) => format!(
            "OwnableUnauthorizedAccount({}): only the module's owner (the Safe) may do this",
            e.account
        ),
        E::AlreadyInitialized(_) => "AlreadyInitialized(): setUp has already run".to_owned(),
    }
}

fn describe_target_revert(data: &[u8], safe: Address) -> String {
    if data.is_empty() {
        return "the target reverted without data".to_owned();
    }
    guardian_core::proposal::explain_revert(data, safe)
        .unwrap_or_else(|| format!("the target reverted with {}", Bytes::copy_from_slice(data)))
}

/// Safe `GSxxx` codes, the module manager's (GS10x) included.
fn explain_safe_code(code: &str) -> Option<&'static str> {
    Some(match code {
        "GS101" => "invalid module address (zero or the sentinel)",
        "GS102" => "the module is already enabled",
        "GS103" => "invalid prevModule, module pair",
        "GS104" => "the sender is not an enabled module of this Safe",
        "GS105" => "invalid starting point for listing modules",
        "GS106" => "invalid page size for listing modules",
        _ => return explain_error_code(code),
    })
}

#[cfg(test)]
mod tests {
    use alloy::primitives::keccak256;

    use super::*;

    const MODULE: Address = address!("0x00000000000000000000000000000000000000aa");
    const SAFE: Address = address!("0x00000000000000000000000000000000000000bb");
    const TARGET: Address = address!("0x00000000000000000000000000000000000000cc");
    const KEY: Address = address!("0x00000000000000000000000000000000000000dd");

    fn target_call_failed(return_data: Vec<u8>) -> Vec<u8> {
        IPauseModule::TargetCallFailed { target: TARGET, returnData: return_data.into() }
            .abi_encode()
    }

    #[test]
    fn pause_selector_is_openzeppelins() {
        assert_eq!(PAUSE_SELECTOR, keccak256("pause()")[..4]);
        assert_eq!(PauseTarget::pause(TARGET).pause_data.as_ref(), &[0x84, 0x56, 0xcb, 0x59]);
    }

    #[test]
    fn previous_module_walks_the_safe_list() {
        let a = address!("0x000000000000000000000000000000000000000a");
        let b = address!("0x000000000000000000000000000000000000000b");
        let c = address!("0x000000000000000000000000000000000000000c");
        let list = [c, b, a]; // newest first
        assert_eq!(previous_module(&list, c), Some(SENTINEL_MODULES));
        assert_eq!(previous_module(&list, b), Some(c));
        assert_eq!(previous_module(&list, a), Some(b));
        assert_eq!(previous_module(&list, MODULE), None);
        assert_eq!(previous_module(&[], a), None);
    }

    #[test]
    fn reverts_are_classified_for_the_caller() {
        let classify = |data: Vec<u8>| classify_pause_revert(&data, MODULE, SAFE);
        assert!(matches!(
            classify(IPauseModule::NotPauser { account: KEY }.abi_encode()),
            PauseError::NotPauser { module: MODULE, account: KEY }
        ));
        assert!(matches!(
            classify(IPauseModule::UnknownPauseTarget { target: TARGET }.abi_encode()),
            PauseError::UnknownTarget { module: MODULE, target: TARGET }
        ));
        assert!(matches!(
            classify(Revert::from("GS104").abi_encode()),
            PauseError::NotEnabled { module: MODULE, safe: SAFE }
        ));
        match classify(target_call_failed(EnforcedPause {}.abi_encode())) {
            PauseError::AlreadyPaused { target, reason } => {
                assert_eq!(target, TARGET);
                assert!(reason.contains("EnforcedPause"), "{reason}");
            }
            other => panic!("expected AlreadyPaused, got {other:?}"),
        }
        assert!(matches!(
            classify(target_call_failed(Revert::from("Pausable: paused").abi_encode())),
            PauseError::AlreadyPaused { target: TARGET, .. }
        ));
        match classify(target_call_failed(
            bindings::IPauseModule::OwnableUnauthorizedAccount { account: SAFE }.abi_encode(),
        )) {
            PauseError::TargetCallFailed { target, reason, .. } => {
                assert_eq!(target, TARGET);
                assert!(reason.contains("the Safe is not the owner"), "{reason}");
            }
            other => panic!("expected TargetCallFailed, got {other:?}"),
        }
        match classify(Vec::new()) {
            PauseError::Reverted { reason, data, .. } => {
                assert!(data.is_empty());
                assert!(reason.contains("without data"), "{reason}");
            }
            other => panic!("expected Reverted, got {other:?}"),
        }
    }

    #[test]
    fn module_errors_are_named_with_their_arguments() {
        let text =
            describe_revert(&IPauseModule::InvalidPauseTarget { target: SAFE }.abi_encode(), SAFE);
        assert!(text.starts_with(&format!("InvalidPauseTarget({SAFE})")), "{text}");
        let text = describe_revert(&Revert::from("GS031").abi_encode(), SAFE);
        assert!(text.contains("only be called from the Safe itself"), "{text}");
        let text = describe_revert(&Revert::from("GS103").abi_encode(), SAFE);
        assert!(text.contains("prevModule"), "{text}");
    }

    #[test]
    fn safe_calls_become_plain_safe_transactions() {
        let call = SafeCall { to: MODULE, data: Bytes::from(vec![1, 2, 3, 4]) };
        let tx = call.safe_tx(U256::from(7));
        assert_eq!(
            (tx.to, tx.value, tx.operation, tx.nonce),
            (MODULE, U256::ZERO, 0, U256::from(7))
        );
        assert_eq!(tx.data, call.data);
    }
}
