// SPDX-License-Identifier: LGPL-3.0-only
pragma solidity >=0.7.0 <0.9.0;

// Pulls Safe 1.4.1 (the npm release @safe-global/safe-contracts@1.4.1) into the build, so guardian can
// deploy its own singleton, proxy factory and fallback handler: chain 138 has no official deployment.
import {Safe} from "@safe-global/safe-contracts/contracts/Safe.sol";
import {SafeL2} from "@safe-global/safe-contracts/contracts/SafeL2.sol";
import {SafeProxyFactory} from "@safe-global/safe-contracts/contracts/proxies/SafeProxyFactory.sol";
import {CompatibilityFallbackHandler} from
    "@safe-global/safe-contracts/contracts/handler/CompatibilityFallbackHandler.sol";
