//! What the rule engine reports, and what it is fed.
//!
//! The engine is pure: the follower hands it a [`BlockInput`] (the block, the watched contracts'
//! logs, the outcomes of transactions sent to them, and the state reads the rules asked for) and
//! gets [`Finding`]s back. Storage, notification and the pause flow happen elsewhere.

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, Bytes, U256};
use serde::{Deserialize, Serialize};

use crate::severity::{Action, Severity};

/// One anomaly, with everything an operator needs to judge it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The rule's configured name.
    pub rule: String,
    /// The watched contract's configured name.
    pub contract: String,
    /// The watched contract's address.
    pub address: Address,
    /// How bad it is.
    pub severity: Severity,
    /// What the severity policy asks for.
    pub action: Action,
    /// One line for humans: what happened, against what threshold.
    pub summary: String,
    /// Where and why.
    pub evidence: Evidence,
    /// What makes this anomaly itself, across reorgs.
    #[serde(default)]
    pub anomaly: Anomaly,
    /// How strong this occurrence is, comparable between occurrences of one rule: a window's
    /// total, a rate or a drop in parts per million. `None` for rules without a magnitude (a
    /// log, a code change, an invariant).
    #[serde(default)]
    pub magnitude: Option<U256>,
}

impl Finding {
    /// Findings are deduplicated on this key: one open finding per rule and contract.
    pub fn dedup_key(&self) -> (&str, Address) {
        (&self.rule, self.address)
    }

    /// The anomaly's identity as text, stable across reorgs: `log:<tx>:<n>` for the n-th match
    /// of the rule in a transaction (the same transaction mined again in another block is the
    /// same anomaly), `block:<number>` for a condition that held at a height.
    pub fn anomaly_key(&self) -> String {
        match self.anomaly {
            Anomaly::Log { tx, ordinal } => format!("log:{tx}:{ordinal}"),
            Anomaly::Block => format!("block:{}", self.evidence.block_number),
        }
    }
}

/// What one occurrence of a finding is, for recognising it again when a reorg re-includes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anomaly {
    /// One log: the `ordinal`-th log of transaction `tx` that matched the rule. A reorg that
    /// mines the transaction again, in whatever block, re-includes the same anomaly.
    Log {
        /// The transaction.
        tx: B256,
        /// Its matches of the rule before this one.
        ordinal: u32,
    },
    /// A condition that held at the block height of the evidence (a window above its
    /// threshold, a balance drop, a code change, a broken invariant).
    #[default]
    Block,
}

/// Where a finding was seen and the values that made it fire.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Evidence {
    /// Block the condition was met in.
    pub block_number: u64,
    /// That block's hash (a reorg that orphans it retracts the finding).
    pub block_hash: B256,
    /// The transaction that triggered it, when one did.
    pub tx_hash: Option<B256>,
    /// The log that triggered it, when one did.
    pub log_index: Option<u64>,
    /// Decoded values (event fields, sums, rates, balances), by name, rendered as text.
    pub values: BTreeMap<String, String>,
    /// The rule's threshold, rendered as text (e.g. "> 10%" or "> 5 ether in 20 blocks").
    pub threshold: String,
    /// Predicted, not seen: the finding comes from simulating this pending transaction on the
    /// latest state (pre-emption), before any block holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_from: Option<B256>,
}

/// A log emitted by a watched contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedLog {
    /// Emitting contract.
    pub address: Address,
    /// Topics (topic0 is the event signature hash).
    pub topics: Vec<B256>,
    /// Non-indexed data.
    pub data: Bytes,
    /// Transaction that emitted it.
    pub tx_hash: B256,
    /// Index of the log in the block.
    pub log_index: u64,
}

/// Outcome of a transaction sent to a watched contract (for revert-rate rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxOutcome {
    /// Transaction hash.
    pub hash: B256,
    /// Recipient (`None` for contract creation).
    pub to: Option<Address>,
    /// Receipt status.
    pub success: bool,
}

/// A piece of state a rule needs at each block; the follower reads it, the engine compares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum StateQuery {
    /// Native balance of an account.
    NativeBalance(Address),
    /// ERC-20 `balanceOf(holder)` on `token`.
    Erc20Balance {
        /// The token contract.
        token: Address,
        /// The account whose balance is read.
        holder: Address,
    },
    /// keccak256 of the account's runtime code.
    CodeHash(Address),
    /// One storage slot (e.g. the EIP-1967 implementation slot).
    Storage {
        /// The contract.
        address: Address,
        /// The slot.
        slot: B256,
    },
    /// An `eth_call` of a view function.
    Call {
        /// The contract called.
        to: Address,
        /// ABI-encoded calldata.
        data: Bytes,
    },
}

/// The answer to a [`StateQuery`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateValue {
    /// A balance or other number.
    Uint(U256),
    /// A hash or storage word.
    Word(B256),
    /// Raw return data of a call.
    Bytes(Bytes),
    /// The read failed (the reason is kept: a rule may treat it as a finding or skip it).
    Failed(String),
}

/// Everything the engine sees of one block.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BlockInput {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// Parent hash (the follower uses it to detect reorgs).
    pub parent_hash: B256,
    /// Block timestamp (seconds).
    pub timestamp: u64,
    /// Logs emitted by watched contracts, in block order.
    pub logs: Vec<ObservedLog>,
    /// Outcomes of transactions whose recipient is a watched contract.
    pub transactions: Vec<TxOutcome>,
    /// Answers to the state queries the rules asked for, read at this block.
    pub state: BTreeMap<StateQuery, StateValue>,
}
