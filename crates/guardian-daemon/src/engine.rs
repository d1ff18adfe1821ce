//! The rule engine as the follower sees it.

use std::collections::BTreeSet;

use alloy::primitives::{Address, B256};
use guardian_core::{
    finding::{BlockInput, Finding, StateQuery},
    rules::RuleEngine,
};

use crate::Evaluator;

/// [`RuleEngine`] plus what the follower asks of it, computed once at start-up.
#[derive(Debug)]
pub struct Engine {
    rules: RuleEngine,
    addresses: BTreeSet<Address>,
    needs_receipts: bool,
}

impl Engine {
    /// Wrap a built rule engine.
    pub fn new(rules: RuleEngine) -> Self {
        let addresses = rules.watched_addresses();
        let needs_receipts = rules.rules().any(|r| r.kind == "revert_rate");
        Self { rules, addresses, needs_receipts }
    }
}

impl Evaluator for Engine {
    fn addresses(&self) -> &BTreeSet<Address> {
        &self.addresses
    }
    fn topics(&self) -> &BTreeSet<B256> {
        self.rules.topics()
    }
    fn queries(&self) -> &BTreeSet<StateQuery> {
        self.rules.queries()
    }
    fn needs_receipts(&self) -> bool {
        self.needs_receipts
    }
    fn warmup_blocks(&self) -> u64 {
        self.rules.warmup_blocks()
    }
    fn evaluate(&mut self, block: &BlockInput) -> Vec<Finding> {
        self.rules.evaluate(block)
    }
    fn rewind(&mut self, block: u64) {
        self.rules.rewind(block);
    }
}
