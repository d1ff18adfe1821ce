//! Webhook delivery of findings, from the store's durable outbox.
//!
//! The follower only writes outbox rows (in the block's transaction); this task delivers them
//! with retries and backoff on its own database connection, so a slow or dead webhook never
//! holds up the follower and a crash never loses an alert.

use std::{
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use alloy::transports::http::reqwest;
use eyre::{Result, WrapErr};
use guardian_store::{Store, StoredFinding};
use serde_json::json;
use tokio::sync::watch;
use tracing::{info, warn};

/// Where and how to deliver.
#[derive(Clone)]
pub struct Webhook {
    /// The URL (from the environment: it usually carries a token). Never logged.
    pub url: reqwest::Url,
    /// Give up on a notification after this many failed attempts.
    pub max_attempts: u32,
    /// Per-attempt timeout.
    pub timeout: Duration,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &"***")
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

/// The JSON body: a Slack-compatible `text` plus the structured finding.
pub fn payload(stored: &StoredFinding) -> serde_json::Value {
    let f = &stored.finding;
    let text = format!(
        "[{}] {} on {} ({}): {} (block {}, action {})",
        f.severity.as_str().to_uppercase(),
        f.rule,
        f.contract,
        f.address,
        f.summary,
        f.evidence.block_number,
        f.action
    );
    json!({ "text": text, "finding_id": stored.id, "finding": f })
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// Deliver due notifications until `shutdown` flips.
pub async fn run(db: PathBuf, webhook: Webhook, mut shutdown: watch::Receiver<bool>) -> Result<()> {
    let store = Store::open(&db).wrap_err("opening the database for the notifier")?;
    let client = reqwest::Client::builder()
        .timeout(webhook.timeout)
        .build()
        .wrap_err("building the webhook HTTP client")?;
    loop {
        for item in store.due_notifications(now(), 16)? {
            let result = client
                .post(webhook.url.clone())
                .json(&payload(&item.finding))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status);
            match result {
                Ok(_) => {
                    store.notification_sent(item.id)?;
                    info!(finding = item.finding.id, "webhook delivered");
                }
                Err(error) => {
                    let attempts = item.attempts + 1;
                    let delay = 2u64.saturating_pow(attempts).min(300);
                    // `without_url` keeps the secret URL out of the message.
                    let message = error.without_url().to_string();
                    warn!(finding = item.finding.id, attempts, retry_in_s = delay, error = %message, "webhook delivery failed");
                    store.notification_failed(
                        item.id,
                        &message,
                        now() + delay,
                        webhook.max_attempts,
                    )?;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return Ok(()),
        }
    }
}
