//! Publishing the audit chain's head on chain (`[audit] anchor`): every `every` new entries, or
//! after `interval` with any, the head is sent to the `AuditAnchor` contract from the anchor
//! key, and the anchor itself is an audit entry. So deleting the tail of both copies of the log
//! is caught by `guardian audit verify --onchain`.

use std::{path::PathBuf, time::Duration};

use alloy::{providers::DynProvider, signers::local::PrivateKeySigner};
use eyre::{Result, WrapErr};
use guardian_config::AnchorConfig;
use guardian_core::audit::Record;
use guardian_store::{Store, now_ms};
use tokio::sync::watch;
use tracing::{info, warn};

/// How often the log is looked at (a cheap query).
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Anchor until `shutdown`; failures are logged and retried at the next look.
pub async fn run(
    db: PathBuf,
    provider: DynProvider,
    key: PrivateKeySigner,
    anchor: AnchorConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let started = now_ms();
    // One connection for the task's life: opening one prepares the schema each time.
    let mut store = match Store::open(&db) {
        Ok(store) => store,
        Err(error) => {
            warn!(error = %format!("{error:#}"), database = %db.display(), "anchoring the audit log is off: the database did not open");
            return;
        }
    };
    let mut last_error: Option<String> = None;
    while !*shutdown.borrow() {
        match once(&mut store, &provider, &key, &anchor, started).await {
            Ok(_) => last_error = None,
            Err(error) => {
                let message = format!("{error:#}");
                if last_error.as_ref() != Some(&message) {
                    warn!(error = %message, contract = %anchor.contract, "anchoring the audit log failed; will retry");
                }
                last_error = Some(message);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(LOOK_EVERY) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Anchor the head if it is due; returns whether it did.
async fn once(
    store: &mut Store,
    provider: &DynProvider,
    key: &PrivateKeySigner,
    anchor: &AnchorConfig,
    started: u64,
) -> Result<bool> {
    let (last, pending) = store.anchoring()?;
    let since = last.map_or(started, |(_, at)| at);
    let interval = u64::try_from(anchor.interval.as_millis()).unwrap_or(u64::MAX);
    let due =
        pending > 0 && (pending >= anchor.every || now_ms().saturating_sub(since) >= interval);
    if !due {
        return Ok(false);
    }
    let Some((seq, head)) = store.audit_head()? else { return Ok(false) };
    let receipt = guardian_chain::audit_anchor::publish(provider, key, anchor.contract, seq, head)
        .await
        .wrap_err_with(|| format!("anchoring entry {seq} on {}", anchor.contract))?;
    let block = receipt.block_number.unwrap_or_default();
    store.audit(Record::Anchored { seq, head, tx: receipt.transaction_hash, block })?;
    info!(seq, %head, tx = %receipt.transaction_hash, block, "audit log anchored");
    Ok(true)
}
