// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice Emits many vault-shaped events in one transaction, for guardian's benchmarks: it
/// fills thousands of blocks with tens of thousands of logs quickly; it also answers the views
/// and takes the calls that state rules read (an invariant, a balance, reverting calls). Never
/// deployed outside a local chain.
contract LoadGenerator {
    event Withdrawn(address indexed account, address indexed to, uint256 amount);

    function emitWithdrawals(uint256 count, uint256 amount) external {
        for (uint256 i = 0; i < count; i++) {
            emit Withdrawn(msg.sender, msg.sender, amount + i);
        }
    }

    /// @notice An invariant that always holds.
    function solvent() external pure returns (bool) {
        return true;
    }

    /// @notice A call that always reverts (for revert_rate).
    function fail() external pure {
        revert("LoadGenerator: fail");
    }

    receive() external payable {}
}
