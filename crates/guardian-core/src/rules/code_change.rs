//! `code_change` rules: the runtime code hash, or the EIP-1967 implementation slot, differs from
//! the expected value (configured, or else the first value seen).

use std::collections::{BTreeMap, BTreeSet};

use alloy_primitives::{Address, B256};

use super::{
    CodeChangeSpec, CodeTarget, EIP1967_IMPLEMENTATION_SLOT, Hit, RuleError, RuleMeta, state_word,
};
use crate::finding::{Anomaly, BlockInput, Finding, StateQuery};

#[derive(Debug, Clone)]
pub(crate) struct CodeChangeRule {
    target: CodeTarget,
    queries: Vec<StateQuery>,
    /// The configured value, for the rule's single contract.
    expected: Option<B256>,
    /// Learned baselines (first value seen and its block), per target, when none is configured.
    learned: Vec<Option<(B256, u64)>>,
}

impl CodeChangeRule {
    pub(crate) fn compile(meta: &mut RuleMeta, spec: &CodeChangeSpec) -> Result<Self, RuleError> {
        let expected = match &spec.expected {
            None => None,
            Some(_) if meta.targets.len() > 1 => {
                return Err(meta.error(
                    "expected",
                    "an expected value fits one contract: write one rule per contract",
                ));
            }
            Some(text) => {
                Some(parse_expected(spec.target, text).map_err(|e| meta.error("expected", e))?)
            }
        };
        let queries = meta
            .targets
            .iter()
            .map(|t| match spec.target {
                CodeTarget::CodeHash => StateQuery::CodeHash(t.address),
                CodeTarget::Implementation => {
                    StateQuery::Storage { address: t.address, slot: EIP1967_IMPLEMENTATION_SLOT }
                }
            })
            .collect();
        let what = describe(spec.target);
        meta.threshold = match expected {
            Some(value) => format!("{what} != {}", render(spec.target, value)),
            None => format!("{what} != first value seen"),
        };
        Ok(Self { target: spec.target, queries, expected, learned: vec![None; meta.targets.len()] })
    }

    /// Blocks to replay after a restart: one when the baseline is learned, so it is learned
    /// again from the last block guardian saw before it stopped, and a change made while it was
    /// down is caught at the first block after, instead of becoming the new baseline.
    pub(crate) fn warmup(&self) -> u64 {
        u64::from(self.expected.is_none())
    }

    pub(crate) fn queries(&self, out: &mut BTreeSet<StateQuery>) {
        out.extend(self.queries.iter().cloned());
    }

    pub(crate) fn evaluate(&mut self, meta: &RuleMeta, block: &BlockInput, out: &mut Vec<Finding>) {
        for (index, (query, learned)) in self.queries.iter().zip(&mut self.learned).enumerate() {
            let Some(actual) = state_word(block, query) else {
                continue;
            };
            let (expected, since) = match (self.expected, *learned) {
                (Some(expected), _) => (expected, None),
                (None, Some((baseline, block))) => (baseline, Some(block)),
                (None, None) => {
                    *learned = Some((actual, block.number));
                    continue;
                }
            };
            if actual == expected {
                continue;
            }
            let what = describe(self.target);
            let mut values = BTreeMap::from([
                ("expected".to_owned(), render(self.target, expected)),
                ("actual".to_owned(), render(self.target, actual)),
            ]);
            if let Some(since) = since {
                values.insert("baseline_block".to_owned(), since.to_string());
            }
            out.push(meta.finding(
                block,
                Hit {
                    target: index,
                    summary: format!(
                        "{}: {what} is {}, expected {}",
                        meta.targets[index].contract,
                        render(self.target, actual),
                        render(self.target, expected)
                    ),
                    tx_hash: None,
                    log_index: None,
                    values,
                    anomaly: Anomaly::Block,
                    magnitude: None,
                },
            ));
        }
    }

    pub(crate) fn rewind(&mut self, to_block: u64) {
        for learned in &mut self.learned {
            if learned.is_some_and(|(_, block)| block > to_block) {
                *learned = None;
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.learned.iter_mut().for_each(|l| *l = None);
    }
}

const fn describe(target: CodeTarget) -> &'static str {
    match target {
        CodeTarget::CodeHash => "runtime code hash",
        CodeTarget::Implementation => "EIP-1967 implementation",
    }
}

/// Implementations are shown as addresses, code hashes as hashes.
fn render(target: CodeTarget, word: B256) -> String {
    match target {
        CodeTarget::CodeHash => word.to_string(),
        CodeTarget::Implementation if word[..12].iter().all(|b| *b == 0) => {
            Address::from_word(word).to_checksum(None)
        }
        CodeTarget::Implementation => word.to_string(),
    }
}

fn parse_expected(target: CodeTarget, text: &str) -> Result<B256, String> {
    let text = text.trim();
    match target {
        CodeTarget::CodeHash => text
            .parse::<B256>()
            .map_err(|_| format!("expected a code hash (0x followed by 64 hex digits), got {text:?}")),
        CodeTarget::Implementation => text
            .parse::<Address>()
            .map(|a| a.into_word())
            .map_err(|_| format!("expected an implementation address (0x followed by 40 hex digits), got {text:?}")),
    }
}
