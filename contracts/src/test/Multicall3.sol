// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice The part of Multicall3 (github.com/mds1/multicall, MIT) that guardian calls, with
/// the same ABI: `aggregate3` and `getEthBalance`. The tests put its runtime code at
/// Multicall3's canonical address (0xcA11bde05977b3631167028862bE2a173976CA11) on Anvil, where a
/// real chain has the original; chain 138 may have neither, and guardian reads state without it
/// then. Never deployed outside a local chain.
contract Multicall3 {
    struct Call3 {
        address target;
        bool allowFailure;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    /// @notice Each call in order; a failing one reverts the whole batch unless allowFailure.
    function aggregate3(Call3[] calldata calls) public payable returns (Result[] memory returnData) {
        uint256 length = calls.length;
        returnData = new Result[](length);
        for (uint256 i = 0; i < length; i++) {
            Call3 calldata call = calls[i];
            (bool success, bytes memory data) = call.target.call(call.callData);
            require(success || call.allowFailure, "Multicall3: call failed");
            returnData[i] = Result(success, data);
        }
    }

    /// @notice The native balance of `addr`.
    function getEthBalance(address addr) public view returns (uint256 balance) {
        balance = addr.balance;
    }
}
