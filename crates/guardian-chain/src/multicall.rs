//! Multicall3: many view calls in one `eth_call`, where the chain has it.

use alloy::primitives::{Address, address};

/// Where Multicall3 lives on every chain that has it (deployed by its keyless transaction,
/// hence the same address everywhere). The testbed puts an ABI-compatible copy there.
pub const MULTICALL3: Address = address!("0xcA11bde05977b3631167028862bE2a173976CA11");
