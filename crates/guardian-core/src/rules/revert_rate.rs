//! `revert_rate` rules: the share of failed transactions sent to a contract over the last N
//! blocks, above a threshold, once there are enough transactions to judge.

use std::collections::{BTreeMap, VecDeque};

use alloy_primitives::{B256, U256};

use super::{Hit, Ratio, RevertRateSpec, RuleError, RuleMeta};
use crate::{
    finding::{Anomaly, BlockInput, Finding},
    severity::CRITICAL_REVERT_RATE,
};

#[derive(Debug, Clone)]
pub(crate) struct RevertRateRule {
    blocks: u64,
    threshold: Ratio,
    min_sample: u64,
    windows: Vec<Window>,
}

#[derive(Debug, Clone, Default)]
struct Window {
    buckets: VecDeque<Bucket>,
    total: u64,
    failed: u64,
}

#[derive(Debug, Clone)]
struct Bucket {
    block: u64,
    total: u64,
    failed: u64,
    /// The last failed transaction of that block.
    last_failed: Option<B256>,
}

impl RevertRateRule {
    pub(crate) fn compile(meta: &mut RuleMeta, spec: &RevertRateSpec) -> Result<Self, RuleError> {
        if spec.blocks == 0 {
            return Err(meta.error("blocks", "a window is at least 1 block long"));
        }
        let threshold =
            spec.threshold.unwrap_or_else(|| Ratio::from_fraction(CRITICAL_REVERT_RATE));
        meta.threshold = format!(
            "failed/total > {threshold} in {} blocks (at least {} txs)",
            spec.blocks, spec.min_sample
        );
        Ok(Self {
            blocks: spec.blocks,
            threshold,
            min_sample: spec.min_sample.max(1),
            windows: vec![Window::default(); meta.targets.len()],
        })
    }

    pub(crate) const fn warmup(&self) -> u64 {
        self.blocks
    }

    pub(crate) fn evaluate(&mut self, meta: &RuleMeta, block: &BlockInput, out: &mut Vec<Finding>) {
        for (index, (target, window)) in meta.targets.iter().zip(&mut self.windows).enumerate() {
            while window
                .buckets
                .front()
                .is_some_and(|b| b.block.saturating_add(self.blocks) <= block.number)
            {
                if let Some(old) = window.buckets.pop_front() {
                    window.total -= old.total;
                    window.failed -= old.failed;
                }
            }
            let mut bucket = Bucket { block: block.number, total: 0, failed: 0, last_failed: None };
            for tx in block.transactions.iter().filter(|t| t.to == Some(target.address)) {
                bucket.total += 1;
                if !tx.success {
                    bucket.failed += 1;
                    bucket.last_failed = Some(tx.hash);
                }
            }
            if bucket.total > 0 {
                window.total += bucket.total;
                window.failed += bucket.failed;
                window.buckets.push_back(bucket);
            }
            if window.total < self.min_sample
                || !self.threshold.exceeded_by(U256::from(window.failed), U256::from(window.total))
            {
                continue;
            }
            let last_failed = window.buckets.iter().rev().find_map(|b| b.last_failed);
            let rate = format_rate(window.failed, window.total);
            let values = BTreeMap::from([
                ("failed".to_owned(), window.failed.to_string()),
                ("total".to_owned(), window.total.to_string()),
                ("rate".to_owned(), rate.clone()),
                ("blocks".to_owned(), self.blocks.to_string()),
            ]);
            out.push(meta.finding(
                block,
                Hit {
                    target: index,
                    summary: format!(
                        "{}: {} of {} transactions failed ({rate}) in the last {} blocks [{}]",
                        target.contract, window.failed, window.total, self.blocks, meta.threshold
                    ),
                    tx_hash: last_failed,
                    log_index: None,
                    values,
                    anomaly: Anomaly::Block,
                    magnitude: Some(super::ppm(
                        U256::from(window.failed),
                        U256::from(window.total),
                    )),
                },
            ));
        }
    }

    pub(crate) fn rewind(&mut self, to_block: u64) {
        for window in &mut self.windows {
            while window.buckets.back().is_some_and(|b| b.block > to_block) {
                if let Some(gone) = window.buckets.pop_back() {
                    window.total -= gone.total;
                    window.failed -= gone.failed;
                }
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.windows.iter_mut().for_each(|w| *w = Window::default());
    }
}

/// `failed / total` as a percentage with two decimals, in integers.
fn format_rate(failed: u64, total: u64) -> String {
    let basis_points = u128::from(failed) * 10_000 / u128::from(total.max(1));
    format!("{}.{:02}%", basis_points / 100, basis_points % 100)
}
