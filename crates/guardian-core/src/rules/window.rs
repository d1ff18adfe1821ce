//! `window` rules: a count or sum of matching events over the last N blocks, above a threshold.
//! Catches a drain made of many withdrawals each too small to fire an `event` rule.

use std::collections::{BTreeMap, VecDeque};

use alloy_dyn_abi::{DynSolType, DynSolValue};
use alloy_primitives::{B256, U256};

use super::{
    Hit, Names, RuleError, RuleMeta, WindowMeasure, WindowSpec,
    event::{EventMatcher, compile_matcher},
    value,
};
use crate::finding::{Anomaly, BlockInput, Finding};

#[derive(Debug, Clone)]
pub(crate) struct WindowRule {
    matcher: EventMatcher,
    blocks: u64,
    /// Index of the summed field; `None` counts events.
    sum_field: Option<usize>,
    threshold: U256,
    /// One window per target.
    windows: Vec<Window>,
}

/// Per-block totals of the blocks in the window that had a match, oldest first.
#[derive(Debug, Clone, Default)]
struct Window {
    buckets: VecDeque<Bucket>,
    total: U256,
}

#[derive(Debug, Clone)]
struct Bucket {
    block: u64,
    amount: U256,
    /// The last matching log in that block.
    last_tx: B256,
    last_log_index: u64,
}

impl WindowRule {
    pub(crate) fn compile(
        meta: &mut RuleMeta,
        spec: &WindowSpec,
        names: &Names,
    ) -> Result<Self, RuleError> {
        let matcher = compile_matcher(meta, &spec.event, names)?;
        if spec.blocks == 0 {
            return Err(meta.error("blocks", "a window is at least 1 block long"));
        }
        let (sum_field, threshold, what) = match &spec.measure {
            WindowMeasure::Count => {
                let threshold = spec.threshold.trim().parse::<u64>().map_err(|_| {
                    meta.error(
                        "threshold",
                        format!("a count threshold is a whole number, got {:?}", spec.threshold),
                    )
                })?;
                (None, U256::from(threshold), "count".to_owned())
            }
            WindowMeasure::Sum(field) => {
                let (index, ty) = matcher.event.field(field).ok_or_else(|| {
                    meta.error("sum", format!("{} has no field {field:?}", matcher.event.name))
                })?;
                if !matches!(ty, DynSolType::Uint(_)) {
                    return Err(meta.error(
                        "sum",
                        format!("only unsigned integer fields can be summed; {field} is {ty}"),
                    ));
                }
                let threshold = value::parse_uint_amount(&spec.threshold)
                    .map_err(|e| meta.error("threshold", e))?;
                (Some(index), threshold, format!("sum({field})"))
            }
        };
        meta.threshold = format!(
            "{what} of {} > {} in {} blocks",
            matcher.describe(),
            spec.threshold.trim(),
            spec.blocks
        );
        Ok(Self {
            matcher,
            blocks: spec.blocks,
            sum_field,
            threshold,
            windows: vec![Window::default(); meta.targets.len()],
        })
    }

    pub(crate) fn topic(&self) -> B256 {
        self.matcher.event.selector
    }

    pub(crate) const fn warmup(&self) -> u64 {
        self.blocks
    }

    pub(crate) fn evaluate(&mut self, meta: &RuleMeta, block: &BlockInput, out: &mut Vec<Finding>) {
        for (index, (target, window)) in meta.targets.iter().zip(&mut self.windows).enumerate() {
            // Drop blocks that left the window [number - blocks + 1, number].
            while window
                .buckets
                .front()
                .is_some_and(|b| b.block.saturating_add(self.blocks) <= block.number)
            {
                if let Some(old) = window.buckets.pop_front() {
                    window.total = window.total.saturating_sub(old.amount);
                }
            }
            let mut bucket: Option<Bucket> = None;
            for log in block.logs.iter().filter(|l| l.address == target.address) {
                let Some(decoded) = self.matcher.matches(log) else {
                    continue;
                };
                let amount = match self.sum_field {
                    None => U256::from(1),
                    Some(field) => match self.matcher.event.value(&decoded, field) {
                        Some(DynSolValue::Uint(v, _)) => *v,
                        _ => continue,
                    },
                };
                let b = bucket.get_or_insert(Bucket {
                    block: block.number,
                    amount: U256::ZERO,
                    last_tx: log.tx_hash,
                    last_log_index: log.log_index,
                });
                b.amount = b.amount.saturating_add(amount);
                b.last_tx = log.tx_hash;
                b.last_log_index = log.log_index;
            }
            if let Some(bucket) = bucket {
                // Saturating: a sum past 2^256 is above any threshold anyway, and removing a
                // bucket later subtracts at most what was added.
                window.total = window.total.saturating_add(bucket.amount);
                window.buckets.push_back(bucket);
            }
            if window.total > self.threshold {
                let Some(last) = window.buckets.back() else {
                    continue;
                };
                let first_block = window.buckets.front().map_or(block.number, |b| b.block);
                let measure = if self.sum_field.is_some() { "sum" } else { "count" };
                let values = BTreeMap::from([
                    (measure.to_owned(), window.total.to_string()),
                    ("threshold".to_owned(), self.threshold.to_string()),
                    ("blocks".to_owned(), self.blocks.to_string()),
                    ("first_block".to_owned(), first_block.to_string()),
                    ("matching_blocks".to_owned(), window.buckets.len().to_string()),
                ]);
                out.push(meta.finding(
                    block,
                    Hit {
                        target: index,
                        summary: format!(
                            "{}: {measure} {} over blocks {first_block}..={} [{}]",
                            target.contract, window.total, block.number, meta.threshold
                        ),
                        tx_hash: Some(last.last_tx),
                        log_index: Some(last.last_log_index),
                        values,
                        anomaly: Anomaly::Block,
                        magnitude: Some(window.total),
                    },
                ));
            }
        }
    }

    pub(crate) fn rewind(&mut self, to_block: u64) {
        for window in &mut self.windows {
            while window.buckets.back().is_some_and(|b| b.block > to_block) {
                if let Some(gone) = window.buckets.pop_back() {
                    window.total = window.total.saturating_sub(gone.amount);
                }
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.windows.iter_mut().for_each(|w| *w = Window::default());
    }
}
