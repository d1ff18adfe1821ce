// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {Create2} from "@openzeppelin/contracts/utils/Create2.sol";

/// @notice Minimal smart account created by the factory: forwards calls from its owner.
/// Stands in for chain 138's smart accounts in rehearsals; it holds no logic guardian watches.
contract SmartAccount {
    address public immutable owner;

    error NotOwner(address caller);
    error CallFailed(bytes reason);

    constructor(address owner_) {
        owner = owner_;
    }

    receive() external payable {}

    function execute(address to, uint256 value, bytes calldata data) external returns (bytes memory) {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        (bool ok, bytes memory result) = to.call{value: value}(data);
        if (!ok) revert CallFailed(result);
        return result;
    }
}

/// @notice Pausable smart-account factory, owned by the operators' Safe.
/// While paused no new account can be created: the guardian's lever when the factory misbehaves.
contract SmartAccountFactory is Ownable, Pausable {
    /// Bumped in every deployed version so operators (and guardian's version history) can tell them apart.
    string public constant VERSION = "1";

    event AccountCreated(address indexed account, address indexed owner, bytes32 salt);

    constructor(address initialOwner) Ownable(initialOwner) {}

    function createAccount(address accountOwner, bytes32 salt) external whenNotPaused returns (address account) {
        account = Create2.deploy(0, salt, abi.encodePacked(type(SmartAccount).creationCode, abi.encode(accountOwner)));
        emit AccountCreated(account, accountOwner, salt);
    }

    function accountAddress(address accountOwner, bytes32 salt) external view returns (address) {
        return Create2.computeAddress(
            salt, keccak256(abi.encodePacked(type(SmartAccount).creationCode, abi.encode(accountOwner)))
        );
    }

    function pause() external onlyOwner {
        _pause();
    }

    function unpause() external onlyOwner {
        _unpause();
    }
}
