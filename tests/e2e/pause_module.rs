//! The pause-only Safe module (`contracts/src/PauseModule.sol`) on a real Safe 1.4.1: a pauser
//! key pauses a registered target without owner signatures, and can do nothing else; only the
//! Safe changes the module; a disabled module pauses nothing; a second pause reverts with the
//! target's `EnforcedPause()`.

use std::collections::BTreeSet;

use alloy::{
    json_abi::StateMutability,
    network::TransactionBuilder,
    primitives::{Address, Bytes, U256},
    providers::{DynProvider, Provider},
    rpc::types::{TransactionReceipt, TransactionRequest},
    signers::local::PrivateKeySigner,
    sol_types::{Revert, SolCall, SolError, SolEvent, SolInterface, SolValue},
};
use guardian_chain::{
    PauseModule, PauseTarget, Testbed,
    pause_module::{
        EnforcedPause, IPauseModule, ISafeModules, ModuleState, PauseError, SENTINEL_MODULES,
        SafeCall, safe_modules,
    },
    safe::{Execution, IPausable, is_paused, sign_safe_tx_hash},
    sender::SendOptions,
};
use guardian_core::safe::Approvals;

use crate::support::{contracts, mined, testbed};

use IPauseModule::IPauseModuleErrors as ModuleErrors;

alloy::sol! {
    /// Safe 1.4.1 owner management and guards: what a pauser must never reach.
    interface ISafeAdmin {
        function changeThreshold(uint256 threshold) external;
        function addOwnerWithThreshold(address owner, uint256 threshold) external;
        function swapOwner(address prevOwner, address oldOwner, address newOwner) external;
        function setGuard(address guard) external;
        function setFallbackHandler(address handler) external;
    }

    /// ERC-20 `transfer`, a selector the module does not have.
    interface IToken {
        function transfer(address to, uint256 amount) external returns (bool);
    }
}

/// A Safe with the module deployed and enabled: `pauser` may pause VaultV2 and the factory
/// (`pause()`); VaultV1 is not a target; `outsider` is nobody.
struct Stage {
    bed: Testbed,
    module: PauseModule,
    pauser: PrivateKeySigner,
    outsider: PrivateKeySigner,
}

async fn stage() -> Stage {
    let bed = testbed().await;
    let pauser = bed.devnet.signer(5).expect("dev key 5");
    let outsider = bed.devnet.signer(6).expect("dev key 6");
    let targets =
        [PauseTarget::pause(bed.targets.vault_v2), PauseTarget::pause(bed.targets.factory)];
    let module = deploy(&bed, &[pauser.address()], &targets).await;
    let execution = execute_as_safe(&bed, &module.enable_call()).await;
    let enabled = decoded::<ISafeModules::EnabledModule>(&execution.receipt, bed.safe.address());
    assert_eq!(enabled.len(), 1, "one EnabledModule event");
    assert_eq!(enabled[0].module, module.address());
    assert!(module.is_enabled().await.expect("isModuleEnabled"));
    Stage { bed, module, pauser, outsider }
}

async fn deploy(bed: &Testbed, pausers: &[Address], targets: &[PauseTarget]) -> PauseModule {
    PauseModule::deploy(
        bed.executor(),
        &contracts().1,
        &bed.deployer,
        bed.safe.address(),
        pausers,
        targets,
        &SendOptions::default(),
    )
    .await
    .expect("the module deploys")
}

/// Execute `call` as a Safe transaction with two of the three owners' signatures.
async fn execute_as_safe(bed: &Testbed, call: &SafeCall) -> Execution {
    let tx = call.safe_tx(bed.safe.nonce().await.expect("nonce"));
    let hash = bed.safe.tx_hash(&tx);
    let approvals: Approvals = bed.owners[..2]
        .iter()
        .map(|owner| (owner.address(), sign_safe_tx_hash(owner, hash).expect("sign")))
        .collect();
    let execution = bed
        .safe
        .execute(&bed.deployer, &tx, &approvals, &SendOptions::default())
        .await
        .expect("the Safe executes");
    assert!(execution.success, "ExecutionSuccess for {hash}");
    execution
}

/// Every `E` that `emitter` logged in `receipt`.
fn decoded<E: SolEvent>(receipt: &TransactionReceipt, emitter: Address) -> Vec<E> {
    receipt
        .inner
        .logs()
        .iter()
        .filter(|log| log.address() == emitter)
        .filter_map(|log| log.log_decode::<E>().ok())
        .map(|log| log.inner.data)
        .collect()
}

/// `from` calls `to` with `data` and `value`: the `eth_call` must revert, and the same
/// transaction, sent with a fixed gas limit so that no estimate stops it, must be mined as
/// failed. Returns the revert data of the `eth_call`.
async fn refused(
    bed: &Testbed,
    from: &PrivateKeySigner,
    to: Address,
    data: Bytes,
    value: U256,
) -> Bytes {
    let provider = bed.devnet.provider_for(from.clone());
    let request = TransactionRequest::default()
        .from(from.address())
        .to(to)
        .with_input(data.clone())
        .with_value(value);
    let error = provider
        .call(request.clone())
        .await
        .expect_err(&format!("{data} from {} to {to} must revert", from.address()));
    let revert = error.as_error_resp().and_then(|resp| resp.as_revert_data()).unwrap_or_default();
    let receipt = mined(&provider, request.with_gas_limit(1_000_000)).await;
    assert!(!receipt.status(), "{data} from {} to {to} was mined as a success", from.address());
    revert
}

fn module_error(data: &[u8]) -> ModuleErrors {
    ModuleErrors::abi_decode(data).unwrap_or_else(|e| {
        panic!("revert data {} is no module error: {e}", Bytes::from(data.to_vec()))
    })
}

fn revert_string(data: &[u8]) -> String {
    Revert::abi_decode(data)
        .unwrap_or_else(|e| {
            panic!("revert data {} is no revert string: {e}", Bytes::from(data.to_vec()))
        })
        .reason
}

fn pause_calldata(target: Address) -> Bytes {
    IPauseModule::pauseCall { target }.abi_encode().into()
}

/// The Safe's view of itself: what a pauser must not be able to change.
#[derive(Debug, PartialEq, Eq)]
struct SafeSnapshot {
    owners: Vec<Address>,
    threshold: u64,
    nonce: U256,
    balance: U256,
    modules: Vec<Address>,
}

async fn snapshot(bed: &Testbed) -> SafeSnapshot {
    let safe = bed.safe.address();
    let reader = bed.devnet.reader();
    SafeSnapshot {
        owners: bed.safe.owners().await.expect("owners"),
        threshold: bed.safe.threshold().await.expect("threshold"),
        nonce: bed.safe.nonce().await.expect("nonce"),
        balance: reader.get_balance(safe).await.expect("balance"),
        modules: safe_modules(&reader, safe).await.expect("modules"),
    }
}

async fn module_state(s: &Stage) -> ModuleState {
    s.module.state().await.expect("module state")
}

#[tokio::test]
async fn pauser_pauses_a_registered_target_without_owner_signatures() {
    let s = stage().await;
    let (bed, safe) = (&s.bed, s.bed.safe.address());
    let reader = bed.devnet.reader();
    let vault = bed.targets.vault_v2;

    let state = module_state(&s).await;
    assert_eq!((state.owner, state.avatar, state.safe), (safe, safe, safe));
    assert!(state.enabled);
    assert_eq!(state.pausers, vec![s.pauser.address()]);
    let mut targets = state.targets.clone();
    targets.sort_by_key(|t| t.address);
    let mut expected = vec![PauseTarget::pause(vault), PauseTarget::pause(bed.targets.factory)];
    expected.sort_by_key(|t| t.address);
    assert_eq!(targets, expected);
    assert!(targets.iter().all(|t| t.pause_data.as_ref() == [0x84, 0x56, 0xcb, 0x59]));

    let nonce = bed.safe.nonce().await.expect("nonce");
    assert!(!is_paused(&reader, vault).await.expect("paused()"));
    s.module.simulate_pause(s.pauser.address(), vault).await.expect("the simulation passes");
    let receipt = s.module.pause(&s.pauser, vault, &SendOptions::default()).await.expect("pauses");

    assert!(is_paused(&reader, vault).await.expect("paused()"));
    let paused = decoded::<IPauseModule::TargetPaused>(&receipt, s.module.address());
    assert_eq!(paused.len(), 1);
    assert_eq!((paused[0].target, paused[0].pauser), (vault, s.pauser.address()));
    let by_vault = decoded::<IPausable::Paused>(&receipt, vault);
    assert_eq!(by_vault.len(), 1);
    assert_eq!(by_vault[0].account, safe, "the vault was paused by its owner, the Safe");
    let success = decoded::<ISafeModules::ExecutionFromModuleSuccess>(&receipt, safe);
    assert_eq!(success.len(), 1);
    assert_eq!(success[0].module, s.module.address());
    assert_eq!(bed.safe.nonce().await.expect("nonce"), nonce, "no Safe transaction was used");

    // The second target, with its own calldata, and nothing else was touched.
    assert!(!is_paused(&reader, bed.targets.factory).await.expect("paused()"));
    s.module.pause(&s.pauser, bed.targets.factory, &SendOptions::default()).await.expect("pauses");
    assert!(is_paused(&reader, bed.targets.factory).await.expect("paused()"));
    assert!(!is_paused(&reader, bed.targets.vault_v1).await.expect("paused()"));
    assert_eq!(module_state(&s).await, state, "pausing changes nothing in the module");
}

#[tokio::test]
async fn a_key_that_is_not_a_pauser_is_refused() {
    let s = stage().await;
    let bed = &s.bed;
    let vault = bed.targets.vault_v2;
    // An owner of the Safe is no pauser either: the module's list is the only thing that counts.
    for key in [&s.outsider, &bed.owners[0], &bed.deployer] {
        match s.module.simulate_pause(key.address(), vault).await {
            Err(PauseError::NotPauser { module, account }) => {
                assert_eq!((module, account), (s.module.address(), key.address()));
            }
            other => panic!("expected NotPauser for {}, got {other:?}", key.address()),
        }
        let sent_before =
            bed.devnet.reader().get_transaction_count(key.address()).await.expect("nonce");
        let error = s
            .module
            .pause(key, vault, &SendOptions::default())
            .await
            .expect_err("a non-pauser cannot pause");
        assert!(matches!(error, PauseError::NotPauser { .. }), "{error:?}");
        assert!(error.to_string().contains("is not a pauser"), "{error}");
        assert_eq!(
            bed.devnet.reader().get_transaction_count(key.address()).await.expect("nonce"),
            sent_before,
            "a refused pause sends nothing"
        );

        let revert = refused(bed, key, s.module.address(), pause_calldata(vault), U256::ZERO).await;
        match module_error(&revert) {
            ModuleErrors::NotPauser(e) => assert_eq!(e.account, key.address()),
            other => panic!("expected NotPauser, got {other:?}"),
        }
    }
    assert!(!is_paused(&bed.devnet.reader(), vault).await.expect("paused()"));
}

#[tokio::test]
async fn a_target_that_is_not_registered_is_refused() {
    let s = stage().await;
    let bed = &s.bed;
    let reader = bed.devnet.reader();
    let unlisted = [
        bed.targets.vault_v1,
        bed.targets.proxied_vault,
        bed.safe.address(),
        s.module.address(),
        Address::ZERO,
    ];
    for target in unlisted {
        match s.module.simulate_pause(s.pauser.address(), target).await {
            Err(PauseError::UnknownTarget { module, target: t }) => {
                assert_eq!((module, t), (s.module.address(), target));
            }
            other => panic!("expected UnknownTarget for {target}, got {other:?}"),
        }
        let revert =
            refused(bed, &s.pauser, s.module.address(), pause_calldata(target), U256::ZERO).await;
        match module_error(&revert) {
            ModuleErrors::UnknownPauseTarget(e) => assert_eq!(e.target, target),
            other => panic!("expected UnknownPauseTarget, got {other:?}"),
        }
    }
    assert!(!is_paused(&reader, bed.targets.vault_v1).await.expect("paused()"));
    assert!(!is_paused(&reader, bed.targets.proxied_vault).await.expect("paused()"));
}

#[tokio::test]
async fn the_pauser_cannot_unpause_move_value_or_administer_the_safe() {
    let s = stage().await;
    let bed = &s.bed;
    let (safe, module, vault) = (bed.safe.address(), s.module.address(), bed.targets.vault_v2);
    let reader = bed.devnet.reader();
    s.module.pause(&s.pauser, vault, &SendOptions::default()).await.expect("pauses");
    // The Safe holds value a rogue pauser would like to move.
    let funding = TransactionRequest::default().to(safe).with_value(U256::from(10u64.pow(18)));
    assert!(mined(&bed.executor(), funding).await.status());

    let safe_before = snapshot(bed).await;
    let module_before = module_state(&s).await;
    let unpause: Bytes = IPausable::unpauseCall {}.abi_encode().into();
    let one_ether = U256::from(10u64.pow(18));

    // Through the module: it has no function for any of these, and no fallback.
    let through_module: Vec<(&str, Bytes, U256)> = vec![
        ("unpause()", unpause.clone(), U256::ZERO),
        (
            "execTransactionFromModule(vault, unpause)",
            ISafeModules::execTransactionFromModuleCall {
                to: vault,
                value: U256::ZERO,
                data: unpause.clone(),
                operation: 0,
            }
            .abi_encode()
            .into(),
            U256::ZERO,
        ),
        (
            "enableModule(pauser)",
            ISafeModules::enableModuleCall { module: s.pauser.address() }.abi_encode().into(),
            U256::ZERO,
        ),
        (
            "changeThreshold(1)",
            ISafeAdmin::changeThresholdCall { threshold: U256::from(1) }.abi_encode().into(),
            U256::ZERO,
        ),
        (
            "transfer(pauser, 1 ether)",
            IToken::transferCall { to: s.pauser.address(), amount: one_ether }.abi_encode().into(),
            U256::ZERO,
        ),
        ("plain value transfer", Bytes::new(), U256::from(1)),
        ("pause(vault) with value", pause_calldata(vault), U256::from(1)),
    ];
    for (what, data, value) in through_module {
        let revert = refused(bed, &s.pauser, module, data, value).await;
        assert!(revert.is_empty(), "{what}: expected a bare revert, got {revert}");
    }

    // Straight to the Safe: the pauser key is neither an owner nor a module.
    let on_safe: Vec<(&str, Bytes, U256, &str)> = vec![
        (
            "execTransactionFromModule(vault, unpause)",
            ISafeModules::execTransactionFromModuleCall {
                to: vault,
                value: U256::ZERO,
                data: unpause.clone(),
                operation: 0,
            }
            .abi_encode()
            .into(),
            U256::ZERO,
            "GS104",
        ),
        (
            "execTransactionFromModule(pauser, 1 ether)",
            ISafeModules::execTransactionFromModuleCall {
                to: s.pauser.address(),
                value: one_ether,
                data: Bytes::new(),
                operation: 0,
            }
            .abi_encode()
            .into(),
            U256::ZERO,
            "GS104",
        ),
        (
            "enableModule(pauser)",
            ISafeModules::enableModuleCall { module: s.pauser.address() }.abi_encode().into(),
            U256::ZERO,
            "GS031",
        ),
        (
            "changeThreshold(1)",
            ISafeAdmin::changeThresholdCall { threshold: U256::from(1) }.abi_encode().into(),
            U256::ZERO,
            "GS031",
        ),
    ];
    for (what, data, value, code) in on_safe {
        let revert = refused(bed, &s.pauser, safe, data, value).await;
        assert_eq!(revert_string(&revert), code, "{what}");
    }

    // Nor can it unpause the vault itself: the vault's owner is the Safe.
    let revert = refused(bed, &s.pauser, vault, unpause, U256::ZERO).await;
    assert!(!revert.is_empty(), "the vault names why it refuses");

    assert!(is_paused(&reader, vault).await.expect("paused()"), "still paused");
    assert_eq!(snapshot(bed).await, safe_before, "the Safe is unchanged");
    assert_eq!(module_state(&s).await, module_before, "the module is unchanged");
}

/// Every non-view function of the compiled module other than `pause`, with arguments that would
/// help an attacker, and the error it must answer a non-owner with. Kept in step with the
/// compiled ABI by [`every_other_call_through_the_module_reverts_for_the_pauser`].
fn owner_only_calls(s: &Stage, caller: Address) -> Vec<(&'static str, Bytes, ModuleErrors)> {
    let unauthorized = || {
        ModuleErrors::OwnableUnauthorizedAccount(IPauseModule::OwnableUnauthorizedAccount {
            account: caller,
        })
    };
    let attacker = s.pauser.address();
    let unpause: Bytes = IPausable::unpauseCall {}.abi_encode().into();
    let set_up_params =
        (attacker, vec![attacker], Vec::<IPauseModule::PauseTarget>::new()).abi_encode_params();
    vec![
        (
            "addPauser",
            IPauseModule::addPauserCall { pauser: attacker }.abi_encode().into(),
            unauthorized(),
        ),
        (
            "removePauser",
            IPauseModule::removePauserCall { pauser: s.pauser.address() }.abi_encode().into(),
            unauthorized(),
        ),
        (
            "addPauseTarget",
            IPauseModule::addPauseTargetCall { target: s.bed.targets.vault_v1, pauseData: unpause }
                .abi_encode()
                .into(),
            unauthorized(),
        ),
        (
            "removePauseTarget",
            IPauseModule::removePauseTargetCall { target: s.bed.targets.vault_v2 }
                .abi_encode()
                .into(),
            unauthorized(),
        ),
        (
            "setAvatar",
            IPauseModule::setAvatarCall { avatar: attacker }.abi_encode().into(),
            unauthorized(),
        ),
        (
            "setTarget",
            IPauseModule::setTargetCall { target: attacker }.abi_encode().into(),
            unauthorized(),
        ),
        (
            "transferOwnership",
            IPauseModule::transferOwnershipCall { newOwner: attacker }.abi_encode().into(),
            unauthorized(),
        ),
        (
            "setUp",
            IPauseModule::setUpCall { initializeParams: set_up_params.into() }.abi_encode().into(),
            ModuleErrors::AlreadyInitialized(IPauseModule::AlreadyInitialized {}),
        ),
    ]
}

#[tokio::test]
async fn every_other_call_through_the_module_reverts_for_the_pauser() {
    let s = stage().await;
    let bed = &s.bed;
    let (module, vault) = (s.module.address(), bed.targets.vault_v2);
    let abi = &contracts().1.get("PauseModule").expect("PauseModule compiled").abi;

    // What the pauser could even try: no fallback, no receive, nothing payable, and every
    // state-changing function other than pause() is in the table below.
    assert!(abi.fallback.is_none() && abi.receive.is_none(), "no fallback, no receive");
    assert!(
        abi.functions().all(|f| f.state_mutability != StateMutability::Payable),
        "no payable function"
    );
    let writable: BTreeSet<String> = abi
        .functions()
        .filter(|f| !matches!(f.state_mutability, StateMutability::View | StateMutability::Pure))
        .map(|f| f.name.clone())
        .collect();
    let table = owner_only_calls(&s, s.pauser.address());
    let covered: BTreeSet<String> =
        table.iter().map(|(name, ..)| (*name).to_owned()).chain(["pause".to_owned()]).collect();
    assert_eq!(writable, covered, "a new state-changing function needs its refusal test here");

    let safe_before = snapshot(bed).await;
    let module_before = module_state(&s).await;
    for caller in [&s.pauser, &s.outsider] {
        for (name, data, expected) in owner_only_calls(&s, caller.address()) {
            let revert = refused(bed, caller, module, data, U256::ZERO).await;
            assert_eq!(
                revert,
                Bytes::from(expected.abi_encode()),
                "{name} from {}",
                caller.address()
            );
        }
    }

    // Selectors the module does not have (Safe, Pausable, ERC-20 and made-up ones, delegatecall
    // included), with and without value: each is a bare revert.
    let unpause: Bytes = IPausable::unpauseCall {}.abi_encode().into();
    let module_exec = |operation: u8| -> Bytes {
        ISafeModules::execTransactionFromModuleCall {
            to: vault,
            value: U256::ZERO,
            data: unpause.clone(),
            operation,
        }
        .abi_encode()
        .into()
    };
    let foreign: Vec<Bytes> = vec![
        IPausable::pauseCall {}.abi_encode().into(),
        unpause.clone(),
        module_exec(0),
        module_exec(1),
        ISafeModules::execTransactionFromModuleReturnDataCall {
            to: vault,
            value: U256::ZERO,
            data: unpause.clone(),
            operation: 1,
        }
        .abi_encode()
        .into(),
        ISafeModules::enableModuleCall { module: s.pauser.address() }.abi_encode().into(),
        ISafeModules::disableModuleCall { prevModule: SENTINEL_MODULES, module }
            .abi_encode()
            .into(),
        ISafeAdmin::changeThresholdCall { threshold: U256::from(1) }.abi_encode().into(),
        ISafeAdmin::addOwnerWithThresholdCall {
            owner: s.pauser.address(),
            threshold: U256::from(1),
        }
        .abi_encode()
        .into(),
        ISafeAdmin::swapOwnerCall {
            prevOwner: SENTINEL_MODULES,
            oldOwner: bed.owners[0].address(),
            newOwner: s.pauser.address(),
        }
        .abi_encode()
        .into(),
        ISafeAdmin::setGuardCall { guard: s.pauser.address() }.abi_encode().into(),
        ISafeAdmin::setFallbackHandlerCall { handler: s.pauser.address() }.abi_encode().into(),
        IToken::transferCall { to: s.pauser.address(), amount: U256::from(1) }.abi_encode().into(),
        Bytes::from_static(&[0, 0, 0, 0]),
        Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]),
        Bytes::from_static(&[0x84, 0x56]),
        Bytes::new(),
    ];
    for data in foreign {
        for value in [U256::ZERO, U256::from(1)] {
            let revert = refused(bed, &s.pauser, module, data.clone(), value).await;
            assert!(
                revert.is_empty(),
                "{data} (value {value}): expected a bare revert, got {revert}"
            );
        }
    }

    // pause() itself cannot carry value, and bytes appended to its argument never reach the
    // target: the module executes only the registered calldata (here: pause() on a paused vault).
    s.module.pause(&s.pauser, vault, &SendOptions::default()).await.expect("pauses");
    let revert = refused(bed, &s.pauser, module, pause_calldata(vault), U256::from(1)).await;
    assert!(revert.is_empty(), "pause with value: {revert}");
    let mut smuggled = pause_calldata(vault).to_vec();
    smuggled.extend_from_slice(&unpause);
    let revert = refused(bed, &s.pauser, module, smuggled.into(), U256::ZERO).await;
    match module_error(&revert) {
        ModuleErrors::TargetCallFailed(e) => {
            assert_eq!(e.target, vault);
            assert_eq!(e.returnData, Bytes::from(EnforcedPause {}.abi_encode()));
        }
        other => panic!("expected TargetCallFailed(EnforcedPause), got {other:?}"),
    }

    assert!(is_paused(&bed.devnet.reader(), vault).await.expect("paused()"));
    assert_eq!(snapshot(bed).await, safe_before, "the Safe is unchanged");
    assert_eq!(safe_before.modules, vec![module]);
    assert_eq!(module_state(&s).await, module_before, "the module is unchanged");
}

#[tokio::test]
async fn only_the_safe_changes_pausers_and_targets() {
    let s = stage().await;
    let bed = &s.bed;
    let (safe, module) = (bed.safe.address(), s.module.address());
    let reader = bed.devnet.reader();
    let new_target = PauseTarget::pause(bed.targets.vault_v1);
    let changes = [
        s.module.add_pauser_call(s.outsider.address()),
        s.module.remove_pauser_call(s.pauser.address()),
        s.module.add_target_call(&new_target),
        s.module.remove_target_call(bed.targets.factory),
    ];

    // Nobody but the Safe: not the pauser, not an outsider, not an owner acting alone.
    for caller in [&s.pauser, &s.outsider, &bed.owners[0]] {
        for change in &changes {
            let revert = refused(bed, caller, change.to, change.data.clone(), U256::ZERO).await;
            match module_error(&revert) {
                ModuleErrors::OwnableUnauthorizedAccount(e) => {
                    assert_eq!(e.account, caller.address());
                }
                other => panic!("expected OwnableUnauthorizedAccount, got {other:?}"),
            }
        }
    }
    let before = module_state(&s).await;
    assert_eq!(before.pausers, vec![s.pauser.address()]);

    // The Safe, with its threshold: each change emits its event.
    for change in &changes {
        assert_eq!(change.to, module);
        s.module.check_as_safe(change).await.expect("the change would go through");
    }
    let receipt = execute_as_safe(bed, &changes[0]).await.receipt;
    let added = decoded::<IPauseModule::PauserAdded>(&receipt, module);
    assert_eq!(added.iter().map(|e| e.pauser).collect::<Vec<_>>(), vec![s.outsider.address()]);
    let receipt = execute_as_safe(bed, &changes[1]).await.receipt;
    let removed = decoded::<IPauseModule::PauserRemoved>(&receipt, module);
    assert_eq!(removed.iter().map(|e| e.pauser).collect::<Vec<_>>(), vec![s.pauser.address()]);
    let receipt = execute_as_safe(bed, &changes[2]).await.receipt;
    let added = decoded::<IPauseModule::PauseTargetAdded>(&receipt, module);
    assert_eq!(added.len(), 1);
    assert_eq!(
        (added[0].target, &added[0].pauseData),
        (new_target.address, &new_target.pause_data)
    );
    let receipt = execute_as_safe(bed, &changes[3]).await.receipt;
    let removed = decoded::<IPauseModule::PauseTargetRemoved>(&receipt, module);
    assert_eq!(removed.iter().map(|e| e.target).collect::<Vec<_>>(), vec![bed.targets.factory]);

    let after = module_state(&s).await;
    assert_eq!(after.pausers, vec![s.outsider.address()]);
    let mut targets = after.targets.iter().map(|t| t.address).collect::<Vec<_>>();
    targets.sort();
    let mut expected = vec![bed.targets.vault_v2, bed.targets.vault_v1];
    expected.sort();
    assert_eq!(targets, expected);
    assert!(s.module.is_pauser(s.outsider.address()).await.expect("isPauser"));
    assert!(!s.module.is_pauser(s.pauser.address()).await.expect("isPauser"));

    // The changes hold: the new pauser pauses the new target; the old one and the removed
    // target are refused.
    assert!(matches!(
        s.module.simulate_pause(s.pauser.address(), bed.targets.vault_v1).await,
        Err(PauseError::NotPauser { .. })
    ));
    assert!(matches!(
        s.module.simulate_pause(s.outsider.address(), bed.targets.factory).await,
        Err(PauseError::UnknownTarget { .. })
    ));
    s.module
        .pause(&s.outsider, bed.targets.vault_v1, &SendOptions::default())
        .await
        .expect("the new pauser pauses the new target");
    assert!(is_paused(&reader, bed.targets.vault_v1).await.expect("paused()"));

    // Even the Safe cannot make itself or the module a pause target (a call from the Safe to
    // either is administration), nor add a pauser twice; the check names the module's error,
    // the Safe's own execution refuses before anything is sent.
    let enable_rogue: Bytes =
        ISafeModules::enableModuleCall { module: s.outsider.address() }.abi_encode().into();
    for (call, error) in [
        (
            s.module.add_target_call(&PauseTarget::with_calldata(safe, enable_rogue.clone())),
            "InvalidPauseTarget",
        ),
        (
            s.module.add_target_call(&PauseTarget::with_calldata(module, enable_rogue)),
            "InvalidPauseTarget",
        ),
        (
            s.module.add_target_call(&PauseTarget::with_calldata(
                bed.targets.factory,
                Bytes::from_static(&[0x84]),
            )),
            "InvalidPauseData",
        ),
        (s.module.add_pauser_call(s.outsider.address()), "PauserAlreadyAdded"),
        (s.module.add_target_call(&new_target), "PauseTargetAlreadyAdded"),
        (s.module.remove_pauser_call(s.pauser.address()), "UnknownPauser"),
        (s.module.remove_target_call(bed.targets.factory), "UnknownPauseTarget"),
    ] {
        let why = format!("{:#}", s.module.check_as_safe(&call).await.expect_err(error));
        assert!(why.contains(error), "{why}");
        let tx = call.safe_tx(bed.safe.nonce().await.expect("nonce"));
        let hash = bed.safe.tx_hash(&tx);
        let approvals: Approvals = bed.owners[..2]
            .iter()
            .map(|owner| (owner.address(), sign_safe_tx_hash(owner, hash).expect("sign")))
            .collect();
        let refusal = bed
            .safe
            .execute(&bed.deployer, &tx, &approvals, &SendOptions::default())
            .await
            .expect_err("the Safe refuses");
        assert!(format!("{refusal:#}").contains("GS013"), "{refusal:#}");
    }
    assert_eq!(module_state(&s).await, after, "refused changes changed nothing");
}

#[tokio::test]
async fn after_disable_module_the_module_pauses_nothing() {
    let s = stage().await;
    let bed = &s.bed;
    let (safe, vault) = (bed.safe.address(), bed.targets.vault_v2);
    let reader = bed.devnet.reader();
    // A second module, enabled later, so that the first is not at the head of the Safe's list.
    let second =
        deploy(bed, &[s.outsider.address()], &[PauseTarget::pause(bed.targets.vault_v1)]).await;
    execute_as_safe(bed, &second.enable_call()).await;
    assert_eq!(
        safe_modules(&reader, safe).await.expect("modules"),
        vec![second.address(), s.module.address()]
    );

    let disable = s.module.disable_call().await.expect("disable call");
    assert_eq!(disable.to, safe);
    let decoded_call =
        ISafeModules::disableModuleCall::abi_decode(&disable.data).expect("disableModule");
    assert_eq!(
        (decoded_call.prevModule, decoded_call.module),
        (second.address(), s.module.address())
    );
    let receipt = execute_as_safe(bed, &disable).await.receipt;
    let disabled = decoded::<ISafeModules::DisabledModule>(&receipt, safe);
    assert_eq!(disabled.iter().map(|e| e.module).collect::<Vec<_>>(), vec![s.module.address()]);
    assert!(!s.module.is_enabled().await.expect("isModuleEnabled"));
    assert!(!module_state(&s).await.enabled);

    match s.module.simulate_pause(s.pauser.address(), vault).await {
        Err(PauseError::NotEnabled { module, safe: on }) => {
            assert_eq!((module, on), (s.module.address(), safe));
        }
        other => panic!("expected NotEnabled, got {other:?}"),
    }
    let error =
        s.module.pause(&s.pauser, vault, &SendOptions::default()).await.expect_err("disabled");
    assert!(error.to_string().contains("GS104"), "{error}");
    let revert =
        refused(bed, &s.pauser, s.module.address(), pause_calldata(vault), U256::ZERO).await;
    assert_eq!(revert_string(&revert), "GS104");
    assert!(!is_paused(&reader, vault).await.expect("paused()"));

    // The other module still works, and disabling it (now first in the list) needs the sentinel.
    second.pause(&s.outsider, bed.targets.vault_v1, &SendOptions::default()).await.expect("pauses");
    let disable = second.disable_call().await.expect("disable call");
    let decoded_call =
        ISafeModules::disableModuleCall::abi_decode(&disable.data).expect("disableModule");
    assert_eq!(decoded_call.prevModule, SENTINEL_MODULES);
    execute_as_safe(bed, &disable).await;
    assert!(safe_modules(&reader, safe).await.expect("modules").is_empty());
    let why = s.module.disable_call().await.expect_err("nothing to disable").to_string();
    assert!(why.contains("not enabled"), "{why}");
}

#[tokio::test]
async fn a_second_pause_reverts_with_the_targets_enforced_pause() {
    let s = stage().await;
    let bed = &s.bed;
    let vault = bed.targets.vault_v2;
    let reader = bed.devnet.reader();
    s.module.pause(&s.pauser, vault, &SendOptions::default()).await.expect("first pause");
    assert!(is_paused(&reader, vault).await.expect("paused()"));

    match s.module.simulate_pause(s.pauser.address(), vault).await {
        Err(PauseError::AlreadyPaused { target, reason }) => {
            assert_eq!(target, vault);
            assert!(reason.contains("EnforcedPause"), "{reason}");
        }
        other => panic!("expected AlreadyPaused, got {other:?}"),
    }
    let sent_before = reader.get_transaction_count(s.pauser.address()).await.expect("nonce");
    let error =
        s.module.pause(&s.pauser, vault, &SendOptions::default()).await.expect_err("second pause");
    assert!(matches!(error, PauseError::AlreadyPaused { .. }), "{error:?}");
    assert_eq!(reader.get_transaction_count(s.pauser.address()).await.expect("nonce"), sent_before);

    // On chain: the module reverts with the target's own reason; the Safe logs the failure only
    // in the reverted transaction, so nothing of it remains.
    let revert =
        refused(bed, &s.pauser, s.module.address(), pause_calldata(vault), U256::ZERO).await;
    match module_error(&revert) {
        ModuleErrors::TargetCallFailed(e) => {
            assert_eq!(e.target, vault);
            assert_eq!(e.returnData, Bytes::from(EnforcedPause {}.abi_encode()));
            assert_eq!(e.returnData.as_ref(), [0xd9, 0x3c, 0x06, 0x65], "EnforcedPause() selector");
        }
        other => panic!("expected TargetCallFailed, got {other:?}"),
    }
    assert!(is_paused(&reader, vault).await.expect("paused()"), "still paused");
}

#[tokio::test]
async fn deployment_refuses_a_layout_that_would_hand_out_more_than_pausing() {
    let bed = testbed().await;
    let safe = bed.safe.address();
    let deployer = bed.deployer.address();
    let reader: DynProvider = bed.devnet.reader();
    let sent_before = reader.get_transaction_count(deployer).await.expect("nonce");
    let pauser = bed.devnet.signer(5).expect("dev key 5").address();
    let enable_rogue: Bytes = ISafeModules::enableModuleCall { module: pauser }.abi_encode().into();
    let cases: Vec<(Address, Vec<Address>, Vec<PauseTarget>, &str)> = vec![
        (
            safe,
            vec![pauser],
            vec![PauseTarget::with_calldata(safe, enable_rogue)],
            "InvalidPauseTarget",
        ),
        (safe, vec![pauser], vec![PauseTarget::pause(Address::ZERO)], "InvalidPauseTarget"),
        (
            safe,
            vec![pauser],
            vec![PauseTarget::with_calldata(bed.targets.vault_v2, Bytes::new())],
            "InvalidPauseData",
        ),
        (
            safe,
            vec![pauser],
            vec![
                PauseTarget::pause(bed.targets.vault_v2),
                PauseTarget::pause(bed.targets.vault_v2),
            ],
            "PauseTargetAlreadyAdded",
        ),
        (safe, vec![pauser, pauser], vec![], "PauserAlreadyAdded"),
        (safe, vec![Address::ZERO], vec![], "InvalidPauser"),
        (Address::ZERO, vec![pauser], vec![], "InvalidSafe"),
    ];
    for (owner, pausers, targets, error) in cases {
        let refusal = PauseModule::deploy(
            bed.executor(),
            &contracts().1,
            &bed.deployer,
            owner,
            &pausers,
            &targets,
            &SendOptions::default(),
        )
        .await
        .expect_err(error);
        let why = format!("{refusal:#}");
        assert!(why.contains(error) && why.contains("nothing was deployed"), "{why}");
    }
    assert_eq!(
        reader.get_transaction_count(deployer).await.expect("nonce"),
        sent_before,
        "no deployment was sent"
    );
}

#[test]
fn the_binding_matches_the_compiled_module() {
    let abi = &contracts().1.get("PauseModule").expect("PauseModule compiled").abi;
    let compiled: BTreeSet<[u8; 4]> = abi.functions().map(|f| f.selector().0).collect();
    let bound: BTreeSet<[u8; 4]> =
        IPauseModule::IPauseModuleCalls::SELECTORS.iter().copied().collect();
    assert_eq!(compiled, bound, "functions");
    let compiled: BTreeSet<[u8; 32]> = abi.events().map(|e| e.selector().0).collect();
    let bound: BTreeSet<[u8; 32]> =
        IPauseModule::IPauseModuleEvents::SELECTORS.iter().copied().collect();
    assert_eq!(compiled, bound, "events");
    let compiled: BTreeSet<[u8; 4]> = abi.errors().map(|e| e.selector().0).collect();
    let bound: BTreeSet<[u8; 4]> =
        IPauseModule::IPauseModuleErrors::SELECTORS.iter().copied().collect();
    assert_eq!(compiled, bound, "errors");
}
