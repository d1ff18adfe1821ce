//! `balance_drop` rules: a native or ERC-20 balance more than P % below its maximum over the
//! current block and the N blocks before it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use alloy_primitives::U256;

use super::{BalanceAsset, BalanceDropSpec, Hit, Ratio, RuleError, RuleMeta, state_uint};
use crate::finding::{Anomaly, BlockInput, Finding, StateQuery};

#[derive(Debug, Clone)]
pub(crate) struct BalanceDropRule {
    blocks: u64,
    drop: Ratio,
    /// The read for each target.
    queries: Vec<StateQuery>,
    windows: Vec<Window>,
}

/// Samples of the window, oldest first, and a monotonic queue over them for the maximum: each
/// entry of `maxima` is larger than every later one, so the front is the window's maximum.
/// `samples` is kept so a rewind can rebuild `maxima` exactly.
#[derive(Debug, Clone, Default)]
struct Window {
    samples: VecDeque<(u64, U256)>,
    maxima: VecDeque<(u64, U256)>,
}

impl Window {
    fn push(&mut self, block: u64, balance: U256) {
        while self.maxima.back().is_some_and(|(_, b)| *b <= balance) {
            self.maxima.pop_back();
        }
        self.maxima.push_back((block, balance));
        self.samples.push_back((block, balance));
    }

    fn expire_before(&mut self, first: u64) {
        while self.samples.front().is_some_and(|(b, _)| *b < first) {
            self.samples.pop_front();
        }
        while self.maxima.front().is_some_and(|(b, _)| *b < first) {
            self.maxima.pop_front();
        }
    }

    fn rewind(&mut self, to_block: u64) {
        while self.samples.back().is_some_and(|(b, _)| *b > to_block) {
            self.samples.pop_back();
        }
        let samples = std::mem::take(&mut self.samples);
        self.maxima.clear();
        for (block, balance) in samples {
            self.push(block, balance);
        }
    }
}

impl BalanceDropRule {
    pub(crate) fn compile(meta: &mut RuleMeta, spec: &BalanceDropSpec) -> Result<Self, RuleError> {
        if spec.blocks == 0 {
            return Err(
                meta.error("blocks", "compare with at least 1 block before the current one")
            );
        }
        if spec.drop.ppm() == 0 {
            return Err(
                meta.error("drop", "a drop of 0% fires on any outflow; give a share above 0%")
            );
        }
        let queries = meta
            .targets
            .iter()
            .map(|t| match spec.asset {
                BalanceAsset::Native => StateQuery::NativeBalance(t.address),
                BalanceAsset::Erc20(token) => StateQuery::Erc20Balance { token, holder: t.address },
            })
            .collect();
        let asset = match spec.asset {
            BalanceAsset::Native => "native balance".to_owned(),
            BalanceAsset::Erc20(token) => format!("balance of token {token}"),
        };
        meta.threshold =
            format!("{asset} drops > {} below its max over {} blocks", spec.drop, spec.blocks);
        Ok(Self {
            blocks: spec.blocks,
            drop: spec.drop,
            queries,
            windows: vec![Window::default(); meta.targets.len()],
        })
    }

    pub(crate) fn queries(&self, out: &mut BTreeSet<StateQuery>) {
        out.extend(self.queries.iter().cloned());
    }

    pub(crate) const fn warmup(&self) -> u64 {
        self.blocks + 1
    }

    pub(crate) fn evaluate(&mut self, meta: &RuleMeta, block: &BlockInput, out: &mut Vec<Finding>) {
        for (index, (query, window)) in self.queries.iter().zip(&mut self.windows).enumerate() {
            window.expire_before(block.number.saturating_sub(self.blocks));
            let Some(balance) = state_uint(block, query) else {
                continue;
            };
            window.push(block.number, balance);
            let Some(&(max_block, max)) = window.maxima.front() else {
                continue;
            };
            if balance >= max || !self.drop.exceeded_by(max - balance, max) {
                continue;
            }
            let lost = max - balance;
            let values = BTreeMap::from([
                ("balance".to_owned(), balance.to_string()),
                ("max".to_owned(), max.to_string()),
                ("max_block".to_owned(), max_block.to_string()),
                ("drop".to_owned(), lost.to_string()),
                ("drop_percent".to_owned(), percent(lost, max)),
            ]);
            out.push(meta.finding(
                block,
                Hit {
                    target: index,
                    summary: format!(
                        "{}: balance {balance} is {} below {max} at block {max_block} [{}]",
                        meta.targets[index].contract,
                        percent(lost, max),
                        meta.threshold
                    ),
                    tx_hash: None,
                    log_index: None,
                    values,
                    anomaly: Anomaly::Block,
                    magnitude: Some(super::ppm(lost, max)),
                },
            ));
        }
    }

    pub(crate) fn rewind(&mut self, to_block: u64) {
        self.windows.iter_mut().for_each(|w| w.rewind(to_block));
    }

    pub(crate) fn clear(&mut self) {
        self.windows.iter_mut().for_each(|w| *w = Window::default());
    }
}

/// `part / whole` as a percentage with two decimals.
fn percent(part: U256, whole: U256) -> String {
    if whole.is_zero() {
        return "0%".into();
    }
    let basis_points = alloy_primitives::U512::from(part) * alloy_primitives::U512::from(10_000u64)
        / alloy_primitives::U512::from(whole);
    let bp: u64 = basis_points.try_into().unwrap_or(u64::MAX);
    format!("{}.{:02}%", bp / 100, bp % 100)
}
