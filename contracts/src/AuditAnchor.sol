// SPDX-License-Identifier: LGPL-3.0-only
pragma solidity ^0.8.24;

/// @title AuditAnchor
/// @notice Publishes the head of guardian's hash-chained audit log. A log cut shorter in every
/// copy still verifies as a chain; its published heads do not match it any more, and
/// `guardian audit verify --onchain` finds every one of them with eth_getLogs.
/// @dev Only the anchorer fixed at deployment can publish, so every event of this contract is
/// guardian's. It holds no funds and calls nothing.
contract AuditAnchor {
    /// The key that publishes (guardian's executor, or a key of its own).
    address public immutable anchorer;

    /// The audit log's entry `seq` hashed to `head`.
    event Anchored(uint64 indexed seq, bytes32 head);

    /// Someone other than the anchorer tried to publish.
    error NotAnchorer(address caller);

    constructor(address anchorer_) {
        anchorer = anchorer_;
    }

    /// Publish entry `seq`'s hash.
    function anchor(uint64 seq, bytes32 head) external {
        if (msg.sender != anchorer) revert NotAnchorer(msg.sender);
        emit Anchored(seq, head);
    }
}
