//! Background reads that are too slow for a scrape: the chain facts behind the executor,
//! rollback and backup metrics, readiness and the status page (read every `[ready]
//! check_every`, never per request), and the retention of old occurrences.

use std::{path::PathBuf, sync::Arc, time::Duration};

use alloy::{primitives::Address, providers::DynProvider};
use guardian_config::Config;
use guardian_store::{Store, now_ms};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::{RpcPool, metrics::Metrics};

/// Read the chain facts now and every `[ready] check_every` until `shutdown` flips.
pub async fn chain_facts(
    config: Config,
    provider: DynProvider,
    pool: Arc<RpcPool>,
    executor: Option<Address>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let endpoints = metrics.endpoint_states(&pool);
        let probe = guardian_operator::status::probe(&config, &provider, executor, endpoints);
        tokio::select! {
            facts = probe => metrics.set_facts(facts),
            _ = shutdown.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(config.ready.check_every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// How often old occurrences are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3_600);

/// Delete occurrences older than `keep` (see [`guardian_store::Store::prune_occurrences`]) at
/// start and every hour, until `shutdown` flips.
pub async fn retention(db: PathBuf, keep: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        let keep_ms = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
        let pruned = Store::open(&db)
            .and_then(|store| store.prune_occurrences(now_ms().saturating_sub(keep_ms)));
        match pruned {
            Ok(0) => {}
            Ok(pruned) => info!(pruned, keep = ?keep, "old occurrences pruned"),
            Err(error) => {
                warn!(error = %format!("{error:#}"), "pruning old occurrences failed; will retry")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}
