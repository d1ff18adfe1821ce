// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

/// @notice Pausable vault (paymaster-style deposit pool), version 1: the known-good deployment.
/// Users deposit native currency and withdraw up to what they deposited. Owned by the Safe.
contract VaultV1 is Ownable, Pausable {
    string public constant VERSION = "1";

    mapping(address account => uint256) public balanceOf;
    uint256 public totalDeposits;

    event Deposited(address indexed account, uint256 amount);
    event Withdrawn(address indexed account, address indexed to, uint256 amount);

    error InsufficientBalance(address account, uint256 requested, uint256 available);
    error TransferFailed(address to, uint256 amount);

    constructor(address initialOwner) Ownable(initialOwner) {}

    receive() external payable {
        deposit();
    }

    function deposit() public payable whenNotPaused {
        balanceOf[msg.sender] += msg.value;
        totalDeposits += msg.value;
        emit Deposited(msg.sender, msg.value);
    }

    function withdraw(uint256 amount) external virtual whenNotPaused {
        uint256 available = balanceOf[msg.sender];
        if (amount > available) revert InsufficientBalance(msg.sender, amount, available);
        balanceOf[msg.sender] = available - amount;
        totalDeposits -= amount;
        _send(msg.sender, amount);
    }

    /// Invariant the guardian watches: the vault holds at least what it owes its depositors.
    function solvent() external view returns (bool) {
        return address(this).balance >= totalDeposits;
    }

    function pause() external onlyOwner {
        _pause();
    }

    function unpause() external onlyOwner {
        _unpause();
    }

    function _send(address to, uint256 amount) internal {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert TransferFailed(to, amount);
        emit Withdrawn(msg.sender, to, amount);
    }
}

/// @notice Version 2 of the vault, the "bad deployment" of the rehearsals: it adds sponsored
/// withdrawals for paymaster refunds, but forgets to check the sponsor's balance, so anyone can
/// drain the vault in small steps. Guardian must notice, pause it, and roll configs back to V1.
contract VaultV2 is VaultV1 {
    string public constant VERSION_2 = "2";

    constructor(address initialOwner) VaultV1(initialOwner) {}

    /// BUG (intentional, for rehearsals): no balance check and no accounting.
    function sponsoredWithdraw(address to, uint256 amount) external whenNotPaused {
        _send(to, amount);
    }
}
