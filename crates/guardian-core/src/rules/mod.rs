//! The rule engine: blocks in, findings out, no I/O.
//!
//! Rules are described by plain specs ([`RuleSpec`], usually built from the TOML config) and
//! compiled once by [`RuleEngine::new`]: signatures are parsed, predicates and thresholds are
//! parsed against the ABI types they compare with, contract names are resolved, and the state
//! reads every rule needs are collected ([`RuleEngine::queries`]). Per block, [`RuleEngine::evaluate`]
//! only decodes matching logs, updates fixed-size windows and compares.
//!
//! # Determinism and restarts
//!
//! The engine's state is a pure function of the blocks it was fed: windows hold only the last
//! N blocks, and the code-change baseline (when none is configured) is the first value seen. After
//! a restart, feed the last [`RuleEngine::warmup_blocks`] blocks again to rebuild the windows.
//! Feeding a block whose number is not above the last one fed is taken as a reorg: the engine
//! first rewinds to just below it. Findings come out in rule order, then contract order, then log
//! order, so the same blocks always give the same findings.
//!
//! # Missing and failed reads
//!
//! A state read that is absent from [`BlockInput::state`] or came back
//! [`StateValue::Failed`](crate::finding::StateValue::Failed) (a reverted call, an RPC error) is
//! skipped: the rule neither fires nor records a sample for that block. The follower logs
//! failed reads; a rule never fires on data it does not have.

mod balance_drop;
mod code_change;
mod event;
mod invariant;
mod revert_rate;
pub mod value;
mod window;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use alloy_primitives::{Address, B256, Bytes, U256, b256};
use serde::{Deserialize, Serialize};

pub use value::{CmpOp, Ratio};

use crate::{
    finding::{BlockInput, Evidence, Finding, StateQuery, StateValue},
    severity::{Action, Severity, SeverityPolicy},
};

/// `bytes32(uint256(keccak256("eip1967.proxy.implementation")) - 1)`: where EIP-1967 proxies
/// keep their implementation address.
pub const EIP1967_IMPLEMENTATION_SLOT: B256 =
    b256!("0x360894a13ba1a3210667c828492db98dca3e2076cc3735a920a3ca505d382bbc");

/// A contract guardian watches, under the name rules and operators use for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchedContract {
    /// Configured name (unique).
    pub name: String,
    /// Address on chain.
    pub address: Address,
    /// How this contract departs from the global severity policy.
    #[serde(default)]
    pub policy: ContractPolicy,
}

/// A watched contract's departures from the global [`SeverityPolicy`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractPolicy {
    /// Actions that replace the global policy's for some severities.
    pub overrides: BTreeMap<Severity, Action>,
    /// Roll the managed configs back once a pause of this contract is verified: every
    /// `ProposePause` for it becomes `ProposePause { then_rollback: true }`.
    pub rollback_after_pause: bool,
}

impl ContractPolicy {
    /// The action for a finding of `severity` on this contract.
    pub fn action(&self, global: &SeverityPolicy, severity: Severity) -> Action {
        let action =
            self.overrides.get(&severity).copied().unwrap_or_else(|| global.action(severity));
        action.with_rollback(self.rollback_after_pause)
    }
}

/// One rule as configured: a name, a severity, the contracts it watches and what it looks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSpec {
    /// Unique name; findings are deduplicated per rule name and contract.
    pub name: String,
    /// Severity of its findings; `None` takes the kind's default (only `revert_rate` has one:
    /// Critical, per the operators' matrix).
    pub severity: Option<Severity>,
    /// Names of the watched contracts it applies to.
    pub contracts: Vec<String>,
    /// What it looks for.
    pub kind: RuleKind,
}

/// What a rule looks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// An event, optionally with conditions on its fields. Fires once per matching log.
    Event(EventSpec),
    /// A count or sum of matching events over the last N blocks above a threshold.
    Window(WindowSpec),
    /// Share of failed transactions sent to the contract over the last N blocks.
    RevertRate(RevertRateSpec),
    /// A balance falls by more than a share of its maximum over the last N blocks.
    BalanceDrop(BalanceDropSpec),
    /// Runtime code or EIP-1967 implementation differs from the expected one.
    CodeChange(CodeChangeSpec),
    /// A view call compared with a constant or another view call no longer holds.
    Invariant(InvariantSpec),
}

impl RuleKind {
    /// The kind's name as written in config files.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Event(_) => "event",
            Self::Window(_) => "window",
            Self::RevertRate(_) => "revert_rate",
            Self::BalanceDrop(_) => "balance_drop",
            Self::CodeChange(_) => "code_change",
            Self::Invariant(_) => "invariant",
        }
    }

    /// The severity used when a rule of this kind names none.
    pub const fn default_severity(&self) -> Option<Severity> {
        match self {
            // The operators' matrix: an error rate above 10 % is Critical.
            Self::RevertRate(_) => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// An event and conditions on its decoded fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSpec {
    /// Human-readable signature: `Withdrawn(address indexed account, address indexed to, uint256 amount)`.
    pub signature: String,
    /// Conditions that must all hold, each `field op literal`: `amount > 5 ether`,
    /// `to != 0x…`, `account in [0x…, safe]`, `account not in [...]`. Literals are parsed as the
    /// field's type; amounts take units (`wei`, `gwei`, `ether`); addresses may be written as a
    /// watched contract's name.
    pub predicates: Vec<String>,
}

/// A window over matching events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    /// The events counted or summed.
    pub event: EventSpec,
    /// Window length in blocks, the current block included.
    pub blocks: u64,
    /// Count the events or sum one of their fields.
    pub measure: WindowMeasure,
    /// Fires when the measure is strictly above this: a count, or an amount (`10 ether`).
    pub threshold: String,
}

/// What a window adds up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowMeasure {
    /// Number of matching events.
    Count,
    /// Sum of this unsigned integer field.
    Sum(String),
}

/// Failed transactions over all transactions sent to the contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevertRateSpec {
    /// Window length in blocks, the current block included.
    pub blocks: u64,
    /// Fires when the share of failures is strictly above this; default
    /// [`CRITICAL_REVERT_RATE`](crate::severity::CRITICAL_REVERT_RATE) (10 %).
    pub threshold: Option<Ratio>,
    /// No finding below this many transactions in the window (one failure out of two is noise).
    pub min_sample: u64,
}

/// A balance falling within a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceDropSpec {
    /// Which balance of the contract.
    pub asset: BalanceAsset,
    /// Fires when the balance is more than this share below the window's maximum.
    pub drop: Ratio,
    /// The window: the current block and the `blocks` before it.
    pub blocks: u64,
}

/// Which balance a [`BalanceDropSpec`] watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalanceAsset {
    /// The contract's native balance.
    Native,
    /// The contract's balance of this ERC-20 token.
    Erc20(Address),
}

/// What a code-change rule compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeChangeSpec {
    /// Runtime code hash or EIP-1967 implementation.
    pub target: CodeTarget,
    /// The expected value (a code hash, or an implementation address); without it the first
    /// value seen becomes the baseline. Only for rules on a single contract.
    pub expected: Option<String>,
}

/// The piece of code a [`CodeChangeSpec`] watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeTarget {
    /// keccak256 of the runtime code.
    CodeHash,
    /// The address in the EIP-1967 implementation slot.
    Implementation,
}

/// `call op other`, which must hold; the rule fires when it does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvariantSpec {
    /// The left-hand view call.
    pub call: CallSpec,
    /// The comparison.
    pub op: CmpOp,
    /// The right-hand side.
    pub other: Operand,
}

/// A view call: `totalDeposits() returns (uint256)`, `balanceOf(address) returns (uint256)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallSpec {
    /// Human-readable signature with exactly one return value.
    pub signature: String,
    /// Arguments, parsed as the parameters' types; `self` is the watched contract's address and
    /// other watched contracts may be named.
    pub args: Vec<String>,
    /// Call this watched contract instead of the rule's own (e.g. a token's `balanceOf(self)`).
    pub contract: Option<String>,
}

/// Right-hand side of an invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operand {
    /// A constant, parsed as the call's return type (`true`, `0`, `100 ether`).
    Value(String),
    /// Another view call.
    Call(CallSpec),
}

/// Why a rule could not be compiled. `key` names the config key at fault (as in the TOML:
/// `contracts`, `event`, `where`, `threshold`, ...) and `index` the element of an array key, so
/// the config loader can point at the exact place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {rule:?}: {message}")]
pub struct RuleError {
    /// The rule's name.
    pub rule: String,
    /// The config key at fault.
    pub key: &'static str,
    /// Which element of that key, for arrays.
    pub index: Option<usize>,
    /// What is wrong and what was expected.
    pub message: String,
}

/// Why the engine could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// Two watched contracts share a name or an address.
    #[error("contract {name:?}: {message}")]
    Contract {
        /// The contract's name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A rule is invalid.
    #[error(transparent)]
    Rule(#[from] RuleError),
}

/// Where a rule's findings go: one watched contract and the action its policy sets.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) contract: String,
    pub(crate) address: Address,
    pub(crate) action: Action,
}

/// What every compiled rule has: identity, severity, targets and its threshold as text.
#[derive(Debug, Clone)]
pub(crate) struct RuleMeta {
    pub(crate) name: String,
    pub(crate) severity: Severity,
    pub(crate) targets: Vec<Target>,
    pub(crate) threshold: String,
}

/// The parts of a finding that vary per rule kind.
pub(crate) struct Hit {
    pub(crate) target: usize,
    pub(crate) summary: String,
    pub(crate) tx_hash: Option<B256>,
    pub(crate) log_index: Option<u64>,
    pub(crate) values: BTreeMap<String, String>,
    pub(crate) anomaly: crate::finding::Anomaly,
    pub(crate) magnitude: Option<U256>,
}

impl RuleMeta {
    pub(crate) fn finding(&self, block: &BlockInput, hit: Hit) -> Finding {
        let target = &self.targets[hit.target];
        Finding {
            rule: self.name.clone(),
            contract: target.contract.clone(),
            address: target.address,
            severity: self.severity,
            action: target.action,
            summary: hit.summary,
            evidence: Evidence {
                block_number: block.number,
                block_hash: block.hash,
                tx_hash: hit.tx_hash,
                log_index: hit.log_index,
                values: hit.values,
                threshold: self.threshold.clone(),
                predicted_from: None,
            },
            anomaly: hit.anomaly,
            magnitude: hit.magnitude,
        }
    }

    pub(crate) fn error(&self, key: &'static str, message: impl Into<String>) -> RuleError {
        RuleError { rule: self.name.clone(), key, index: None, message: message.into() }
    }
}

/// A rule compiled for evaluation.
#[derive(Debug, Clone)]
enum CompiledKind {
    Event(event::EventRule),
    Window(window::WindowRule),
    RevertRate(revert_rate::RevertRateRule),
    BalanceDrop(balance_drop::BalanceDropRule),
    CodeChange(code_change::CodeChangeRule),
    Invariant(invariant::InvariantRule),
}

#[derive(Debug, Clone)]
struct CompiledRule {
    meta: RuleMeta,
    kind: CompiledKind,
}

/// Names → addresses, what literals and call arguments may refer to.
pub(crate) type Names = BTreeMap<String, Address>;

/// The compiled rules and their per-contract state.
#[derive(Debug, Clone)]
pub struct RuleEngine {
    contracts: Vec<WatchedContract>,
    rules: Vec<CompiledRule>,
    queries: BTreeSet<StateQuery>,
    topics: BTreeSet<B256>,
    warmup: u64,
    last_block: Option<u64>,
}

impl RuleEngine {
    /// Compile `rules` over `contracts` with the global severity `policy`.
    ///
    /// Refuses duplicate contract names or addresses, duplicate rule names, rules naming unknown
    /// contracts, unparsable signatures, predicates, thresholds and arguments, zero-length
    /// windows and rules without a severity (unless their kind has a default).
    pub fn new(
        contracts: Vec<WatchedContract>,
        rules: Vec<RuleSpec>,
        policy: SeverityPolicy,
    ) -> Result<Self, EngineError> {
        let mut names = Names::new();
        let mut addresses = BTreeSet::new();
        for contract in &contracts {
            if names.insert(contract.name.clone(), contract.address).is_some() {
                return Err(EngineError::Contract {
                    name: contract.name.clone(),
                    message: "two watched contracts have this name".into(),
                });
            }
            if !addresses.insert(contract.address) {
                return Err(EngineError::Contract {
                    name: contract.name.clone(),
                    message: format!("address {} is watched twice", contract.address),
                });
            }
        }
        let mut compiled = Vec::with_capacity(rules.len());
        let mut rule_names = BTreeSet::new();
        for spec in rules {
            if !rule_names.insert(spec.name.clone()) {
                return Err(RuleError {
                    rule: spec.name.clone(),
                    key: "name",
                    index: None,
                    message: "two rules have this name (findings are deduplicated by it)".into(),
                }
                .into());
            }
            compiled.push(compile(spec, &contracts, &names, &policy)?);
        }
        let mut queries = BTreeSet::new();
        let mut topics = BTreeSet::new();
        let mut warmup = 0;
        for rule in &compiled {
            match &rule.kind {
                CompiledKind::Event(r) => {
                    topics.insert(r.topic());
                }
                CompiledKind::Window(r) => {
                    topics.insert(r.topic());
                    warmup = warmup.max(r.warmup());
                }
                CompiledKind::RevertRate(r) => warmup = warmup.max(r.warmup()),
                CompiledKind::BalanceDrop(r) => {
                    r.queries(&mut queries);
                    warmup = warmup.max(r.warmup());
                }
                CompiledKind::CodeChange(r) => {
                    r.queries(&mut queries);
                    warmup = warmup.max(r.warmup());
                }
                CompiledKind::Invariant(r) => r.queries(&mut queries),
            }
        }
        Ok(Self { contracts, rules: compiled, queries, topics, warmup, last_block: None })
    }

    /// The watched contracts, as configured.
    pub fn contracts(&self) -> &[WatchedContract] {
        &self.contracts
    }

    /// State the follower must read at every block and put in [`BlockInput::state`].
    pub fn queries(&self) -> &BTreeSet<StateQuery> {
        &self.queries
    }

    /// Addresses whose logs and incoming transactions the follower must collect.
    pub fn watched_addresses(&self) -> BTreeSet<Address> {
        self.contracts.iter().map(|c| c.address).collect()
    }

    /// topic0 of every event a rule looks for (to filter `eth_getLogs`).
    pub fn topics(&self) -> &BTreeSet<B256> {
        &self.topics
    }

    /// How many blocks to feed again after a restart so every window is full: the longest
    /// window (0 when no rule keeps a window).
    pub fn warmup_blocks(&self) -> u64 {
        self.warmup
    }

    /// The last block fed, if any.
    pub fn last_block(&self) -> Option<u64> {
        self.last_block
    }

    /// Evaluate every rule on one block. Blocks are expected in ascending order; a block at or
    /// below the last one fed rewinds first (a reorg).
    pub fn evaluate(&mut self, block: &BlockInput) -> Vec<Finding> {
        if self.last_block.is_some_and(|last| block.number <= last) {
            match block.number.checked_sub(1) {
                Some(below) => self.rewind(below),
                None => self.reset(),
            }
        }
        self.last_block = Some(block.number);
        let mut findings = Vec::new();
        for rule in &mut self.rules {
            let meta = &rule.meta;
            match &mut rule.kind {
                CompiledKind::Event(r) => r.evaluate(meta, block, &mut findings),
                CompiledKind::Window(r) => r.evaluate(meta, block, &mut findings),
                CompiledKind::RevertRate(r) => r.evaluate(meta, block, &mut findings),
                CompiledKind::BalanceDrop(r) => r.evaluate(meta, block, &mut findings),
                CompiledKind::CodeChange(r) => r.evaluate(meta, block, &mut findings),
                CompiledKind::Invariant(r) => r.evaluate(meta, block, &mut findings),
            }
        }
        findings
    }

    /// Forget everything learned from blocks above `to_block` (a reorg replaced them).
    pub fn rewind(&mut self, to_block: u64) {
        for rule in &mut self.rules {
            match &mut rule.kind {
                CompiledKind::Event(_) | CompiledKind::Invariant(_) => {}
                CompiledKind::Window(r) => r.rewind(to_block),
                CompiledKind::RevertRate(r) => r.rewind(to_block),
                CompiledKind::BalanceDrop(r) => r.rewind(to_block),
                CompiledKind::CodeChange(r) => r.rewind(to_block),
            }
        }
        self.last_block = self.last_block.map(|last| last.min(to_block));
    }

    /// Forget every block fed (as if just built).
    pub fn reset(&mut self) {
        for rule in &mut self.rules {
            match &mut rule.kind {
                CompiledKind::Window(r) => r.clear(),
                CompiledKind::RevertRate(r) => r.clear(),
                CompiledKind::BalanceDrop(r) => r.clear(),
                CompiledKind::CodeChange(r) => r.clear(),
                CompiledKind::Event(_) | CompiledKind::Invariant(_) => {}
            }
        }
        self.last_block = None;
    }

    /// The compiled rules' names, severities and targets, in evaluation order (for summaries).
    pub fn rules(&self) -> impl Iterator<Item = RuleSummary<'_>> {
        self.rules.iter().map(|r| RuleSummary {
            name: &r.meta.name,
            kind: match &r.kind {
                CompiledKind::Event(_) => "event",
                CompiledKind::Window(_) => "window",
                CompiledKind::RevertRate(_) => "revert_rate",
                CompiledKind::BalanceDrop(_) => "balance_drop",
                CompiledKind::CodeChange(_) => "code_change",
                CompiledKind::Invariant(_) => "invariant",
            },
            severity: r.meta.severity,
            threshold: &r.meta.threshold,
            targets: r.meta.targets.iter().map(|t| (t.contract.as_str(), t.action)).collect(),
        })
    }
}

/// A compiled rule as operators see it in `guardian config check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSummary<'a> {
    /// Name.
    pub name: &'a str,
    /// Kind, as in the config.
    pub kind: &'static str,
    /// Severity (the kind's default applied).
    pub severity: Severity,
    /// The condition, as text.
    pub threshold: &'a str,
    /// Each watched contract with the action a finding on it asks for.
    pub targets: Vec<(&'a str, Action)>,
}

fn compile(
    spec: RuleSpec,
    contracts: &[WatchedContract],
    names: &Names,
    policy: &SeverityPolicy,
) -> Result<CompiledRule, RuleError> {
    let severity = spec.severity.or(spec.kind.default_severity()).ok_or_else(|| RuleError {
        rule: spec.name.clone(),
        key: "severity",
        index: None,
        message: format!(
            "a {} rule needs a severity (critical, high, medium or low)",
            spec.kind.name()
        ),
    })?;
    if spec.contracts.is_empty() {
        return Err(RuleError {
            rule: spec.name.clone(),
            key: "contracts",
            index: None,
            message: "applies to no contract: name at least one watched contract".into(),
        });
    }
    let mut targets = Vec::with_capacity(spec.contracts.len());
    for (i, name) in spec.contracts.iter().enumerate() {
        let contract = contracts.iter().find(|c| &c.name == name).ok_or_else(|| RuleError {
            rule: spec.name.clone(),
            key: "contracts",
            index: Some(i),
            message: format!(
                "unknown contract {name:?} (watched: {})",
                contracts.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        })?;
        if targets.iter().any(|t: &Target| t.address == contract.address) {
            return Err(RuleError {
                rule: spec.name.clone(),
                key: "contracts",
                index: Some(i),
                message: format!("contract {name:?} is listed twice"),
            });
        }
        targets.push(Target {
            contract: contract.name.clone(),
            address: contract.address,
            action: contract.policy.action(policy, severity),
        });
    }
    let mut meta = RuleMeta { name: spec.name, severity, targets, threshold: String::new() };
    let kind = match spec.kind {
        RuleKind::Event(s) => CompiledKind::Event(event::EventRule::compile(&mut meta, &s, names)?),
        RuleKind::Window(s) => {
            CompiledKind::Window(window::WindowRule::compile(&mut meta, &s, names)?)
        }
        RuleKind::RevertRate(s) => {
            CompiledKind::RevertRate(revert_rate::RevertRateRule::compile(&mut meta, &s)?)
        }
        RuleKind::BalanceDrop(s) => {
            CompiledKind::BalanceDrop(balance_drop::BalanceDropRule::compile(&mut meta, &s)?)
        }
        RuleKind::CodeChange(s) => {
            CompiledKind::CodeChange(code_change::CodeChangeRule::compile(&mut meta, &s)?)
        }
        RuleKind::Invariant(s) => {
            CompiledKind::Invariant(invariant::InvariantRule::compile(&mut meta, &s, names)?)
        }
    };
    Ok(CompiledRule { meta, kind })
}

/// A state read as a number (balances, words).
pub(crate) fn state_uint(block: &BlockInput, query: &StateQuery) -> Option<U256> {
    match block.state.get(query)? {
        StateValue::Uint(v) => Some(*v),
        StateValue::Word(w) => Some(U256::from_be_bytes(w.0)),
        StateValue::Bytes(b) if b.len() == 32 => Some(U256::from_be_slice(b)),
        StateValue::Bytes(_) | StateValue::Failed(_) => None,
    }
}

/// A state read as a 32-byte word (hashes, storage slots).
pub(crate) fn state_word(block: &BlockInput, query: &StateQuery) -> Option<B256> {
    state_uint(block, query).map(|v| B256::from(v.to_be_bytes::<32>()))
}

/// A state read as raw return data (calls).
pub(crate) fn state_bytes(block: &BlockInput, query: &StateQuery) -> Option<Bytes> {
    match block.state.get(query)? {
        StateValue::Bytes(b) => Some(b.clone()),
        StateValue::Word(w) => Some(Bytes::copy_from_slice(w.as_slice())),
        StateValue::Uint(v) => Some(Bytes::copy_from_slice(&v.to_be_bytes::<32>())),
        StateValue::Failed(_) => None,
    }
}

/// `part / whole` in parts per million (a magnitude comparable across a rule's occurrences).
pub(crate) fn ppm(part: U256, whole: U256) -> U256 {
    part.saturating_mul(U256::from(1_000_000u64)) / whole.max(U256::from(1u64))
}
