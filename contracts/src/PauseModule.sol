// SPDX-License-Identifier: LGPL-3.0-only
pragma solidity ^0.8.24;

import {Module} from "@gnosis-guild/zodiac-core/contracts/core/Module.sol";
import {Operation} from "@gnosis-guild/zodiac-core/contracts/core/Operation.sol";
import {EnumerableSet} from "@openzeppelin/contracts/utils/structs/EnumerableSet.sol";

/// @title PauseModule: a Safe module that lets hot keys pause, and do nothing else.
/// @notice The operators' severity matrix acts on Critical findings at once, without waiting for
/// owner signatures. This module gives guardian's hot "pauser" keys exactly that power: a pauser
/// may make the Safe call the registered pause calldata on a registered target, and nothing else.
/// There is no unpause, no other selector, no value, no delegatecall, no arbitrary target:
/// unpausing (and every other change) still needs the Safe's full threshold.
///
/// Built on Zodiac's `Module` base (npm package gnosis-guild/zodiac-core, 4.1.0). The Safe is
/// the module's owner, avatar and target: only a Safe transaction adds or removes pausers and
/// pause targets, and the Safe's own `enableModule` / `disableModule` switch the module on and
/// off.
///
/// A second pause of an already paused target reverts (it is not a no-op): the Safe reports the
/// call failed and `pause` reverts with `TargetCallFailed(target, returnData)`, where
/// `returnData` is the target's own revert data, e.g. OpenZeppelin's `EnforcedPause()`. Callers
/// learn the target's state from that reason instead of a silent success, and the module never
/// has to assume the target speaks `paused()`.
///
/// What the owners register is replayed exactly, so they register pause calls only (the module
/// cannot tell a pause from, say, an upgrade on a ProxyAdmin the Safe owns). It does refuse the
/// Safe itself and this module as targets: a call from the Safe to either is an owner-only
/// action (enableModule, changeThreshold, addPauser...), which would hand the pausers the Safe.
contract PauseModule is Module {
    using EnumerableSet for EnumerableSet.AddressSet;

    /// A contract the pausers may pause, and the exact calldata that pauses it (e.g. `pause()`,
    /// selector 0x8456cb59; stored as bytes because a contract may use another function).
    struct PauseTarget {
        address target;
        bytes pauseData;
    }

    EnumerableSet.AddressSet private _pausers;
    EnumerableSet.AddressSet private _pauseTargets;
    mapping(address target => bytes pauseData) private _pauseData;

    /// A pauser made the Safe pause `target`.
    event TargetPaused(address indexed target, address indexed pauser);
    event PauserAdded(address indexed pauser);
    event PauserRemoved(address indexed pauser);
    event PauseTargetAdded(address indexed target, bytes pauseData);
    event PauseTargetRemoved(address indexed target);

    /// `account` is not one of the pausers.
    error NotPauser(address account);
    /// `target` is not a registered pause target.
    error UnknownPauseTarget(address target);
    /// The Safe reported that the pause call on `target` failed; `returnData` is the target's
    /// revert data (e.g. `EnforcedPause()` when it is already paused).
    error TargetCallFailed(address target, bytes returnData);
    error InvalidSafe(address safe);
    error InvalidPauser(address pauser);
    error PauserAlreadyAdded(address pauser);
    error UnknownPauser(address pauser);
    /// The zero address, the Safe itself or this module cannot be pause targets: a call from the
    /// Safe to either is an owner-only administrative action.
    error InvalidPauseTarget(address target);
    /// Pause calldata must hold at least a 4-byte selector.
    error InvalidPauseData(address target, bytes pauseData);
    error PauseTargetAlreadyAdded(address target);

    modifier onlyPauser() {
        if (!_pausers.contains(msg.sender)) revert NotPauser(msg.sender);
        _;
    }

    /// Deploy for `safe` (owner, avatar and target) with the initial pausers and targets, so that
    /// the deployment plus one Safe transaction `enableModule(module)` is all the owners approve.
    constructor(address safe, address[] memory initialPausers, PauseTarget[] memory initialTargets) {
        setUp(abi.encode(safe, initialPausers, initialTargets));
    }

    /// Zodiac's initialiser (also what a `ModuleProxyFactory` proxy calls, once):
    /// `abi.encode(address safe, address[] pausers, PauseTarget[] targets)`.
    function setUp(bytes memory initializeParams) public override initializer {
        (address safe, address[] memory initialPausers, PauseTarget[] memory initialTargets) =
            abi.decode(initializeParams, (address, address[], PauseTarget[]));
        if (safe == address(0)) revert InvalidSafe(safe);
        _transferOwnership(safe);
        avatar = safe;
        target = safe;
        emit AvatarSet(address(0), safe);
        emit TargetSet(address(0), safe);
        for (uint256 i = 0; i < initialPausers.length; i++) {
            _addPauser(initialPausers[i]);
        }
        for (uint256 i = 0; i < initialTargets.length; i++) {
            _addPauseTarget(initialTargets[i].target, initialTargets[i].pauseData);
        }
    }

    /// Make the Safe call the registered pause calldata on `target_` (no value, plain call).
    /// Reverts with `NotPauser`, `UnknownPauseTarget`, `TargetCallFailed` (the Safe reported
    /// failure, e.g. already paused), or the Safe's `GS104` when the module is not enabled.
    function pause(address target_) external onlyPauser {
        bytes memory data = _pauseData[target_];
        if (data.length == 0) revert UnknownPauseTarget(target_);
        // The Safe may have been repointed (setAvatar / setTarget) since registration.
        if (_isForbiddenTarget(target_)) revert InvalidPauseTarget(target_);
        // Zodiac's execAndReturnData is Safe's execTransactionFromModuleReturnData: the same
        // execTransactionFromModule(target_, 0, data, Call), plus the target's revert data.
        (bool success, bytes memory returnData) = execAndReturnData(target_, 0, data, Operation.Call);
        if (!success) revert TargetCallFailed(target_, returnData);
        emit TargetPaused(target_, msg.sender);
    }

    /// Owner (Safe) only: allow `pauser` to call `pause`.
    function addPauser(address pauser) external onlyOwner {
        _addPauser(pauser);
    }

    /// Owner (Safe) only: withdraw `pauser`'s right to pause.
    function removePauser(address pauser) external onlyOwner {
        if (!_pausers.remove(pauser)) revert UnknownPauser(pauser);
        emit PauserRemoved(pauser);
    }

    /// Owner (Safe) only: let the pausers pause `target_` by calling `pauseData` on it. To change a
    /// target's calldata, remove it first.
    function addPauseTarget(address target_, bytes calldata pauseData) external onlyOwner {
        _addPauseTarget(target_, pauseData);
    }

    /// Owner (Safe) only: stop the pausers pausing `target_`.
    function removePauseTarget(address target_) external onlyOwner {
        if (!_pauseTargets.remove(target_)) revert UnknownPauseTarget(target_);
        delete _pauseData[target_];
        emit PauseTargetRemoved(target_);
    }

    /// Whether `account` may call `pause`.
    function isPauser(address account) external view returns (bool) {
        return _pausers.contains(account);
    }

    /// Every pauser, in no particular order.
    function pausers() external view returns (address[] memory) {
        return _pausers.values();
    }

    /// Whether `target_` is a registered pause target.
    function isPauseTarget(address target_) external view returns (bool) {
        return _pauseTargets.contains(target_);
    }

    /// The calldata `pause(target_)` would execute; empty when `target_` is not registered.
    function pauseDataOf(address target_) external view returns (bytes memory) {
        return _pauseData[target_];
    }

    /// Every pause target with its calldata, in no particular order.
    function pauseTargets() external view returns (PauseTarget[] memory all) {
        uint256 count = _pauseTargets.length();
        all = new PauseTarget[](count);
        for (uint256 i = 0; i < count; i++) {
            address t = _pauseTargets.at(i);
            all[i] = PauseTarget({target: t, pauseData: _pauseData[t]});
        }
    }

    function _addPauser(address pauser) private {
        if (pauser == address(0)) revert InvalidPauser(pauser);
        if (!_pausers.add(pauser)) revert PauserAlreadyAdded(pauser);
        emit PauserAdded(pauser);
    }

    function _addPauseTarget(address target_, bytes memory pauseData) private {
        if (_isForbiddenTarget(target_)) revert InvalidPauseTarget(target_);
        if (pauseData.length < 4) revert InvalidPauseData(target_, pauseData);
        if (!_pauseTargets.add(target_)) revert PauseTargetAlreadyAdded(target_);
        _pauseData[target_] = pauseData;
        emit PauseTargetAdded(target_, pauseData);
    }

    function _isForbiddenTarget(address target_) private view returns (bool) {
        return target_ == address(0) || target_ == avatar || target_ == target || target_ == address(this);
    }
}
