// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Initializable} from "@openzeppelin/contracts/proxy/utils/Initializable.sol";
// Imported so the proxy (and the ProxyAdmin it creates) are compiled with the project.
import {TransparentUpgradeableProxy} from "@openzeppelin/contracts/proxy/transparent/TransparentUpgradeableProxy.sol";

/// @notice The vault as chain 138 deploys most of its contracts: logic behind an OpenZeppelin
/// TransparentUpgradeableProxy whose ProxyAdmin belongs to a release key, while pausing belongs
/// to the operators' Safe. The rehearsal's `upgrade` scenario has the release key (stolen, or
/// used outside the change process) swap the implementation; guardian must notice the EIP-1967
/// slot change and pause through the Safe.
contract VaultLogicV1 is Initializable {
    address public owner;
    bool public paused;
    mapping(address account => uint256) public balanceOf;
    uint256 public totalDeposits;

    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    event Paused(address account);
    event Unpaused(address account);
    event Deposited(address indexed account, uint256 amount);
    event Withdrawn(address indexed account, address indexed to, uint256 amount);

    error NotOwner(address caller);
    error EnforcedPause();
    error InsufficientBalance(address account, uint256 requested, uint256 available);
    error TransferFailed(address to, uint256 amount);

    constructor() {
        _disableInitializers();
    }

    function initialize(address owner_) external initializer {
        owner = owner_;
        emit OwnershipTransferred(address(0), owner_);
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    modifier whenNotPaused() {
        if (paused) revert EnforcedPause();
        _;
    }

    function deposit() external payable whenNotPaused {
        balanceOf[msg.sender] += msg.value;
        totalDeposits += msg.value;
        emit Deposited(msg.sender, msg.value);
    }

    function withdraw(uint256 amount) external whenNotPaused {
        uint256 available = balanceOf[msg.sender];
        if (amount > available) revert InsufficientBalance(msg.sender, amount, available);
        balanceOf[msg.sender] = available - amount;
        totalDeposits -= amount;
        _send(msg.sender, amount);
    }

    function solvent() external view returns (bool) {
        return address(this).balance >= totalDeposits;
    }

    function pause() external onlyOwner {
        paused = true;
        emit Paused(msg.sender);
    }

    function unpause() external onlyOwner {
        paused = false;
        emit Unpaused(msg.sender);
    }

    function _send(address to, uint256 amount) internal {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert TransferFailed(to, amount);
        emit Withdrawn(msg.sender, to, amount);
    }
}

/// @notice The implementation nobody approved: same storage layout, plus a `sweep` that sends the
/// whole balance wherever its caller says. Pausing still belongs to the Safe (the owner slot is
/// untouched), which is what lets guardian stop it before anyone calls `sweep`.
contract VaultLogicRogue is VaultLogicV1 {
    function sweep(address to) external whenNotPaused {
        _send(to, address(this).balance);
    }
}
