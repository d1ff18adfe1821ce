//! New-head notifications over WebSocket.
//!
//! A wake-up signal that carries the head's own header: when it is the block right after the
//! cursor (its parent is the cursor's hash) the follower reads that block without asking for
//! the head or the header again. Otherwise the follower pulls from its cursor, so a missed or
//! duplicated head changes nothing. A dropped subscription is re-established with backoff.

use std::{sync::Arc, time::Duration};

use alloy::providers::Provider;
use futures_util::StreamExt;
use tokio::sync::watch;
use tracing::{debug, warn};

use guardian_rpc::RpcPool;

use crate::source::Header;

/// A head pushed by an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Its header, as the subscription delivered it.
    pub header: Header,
    /// The endpoint (index in the pool) that pushed it.
    pub endpoint: usize,
}

/// The latest pushed head (`None` before the first).
pub type Heads = watch::Receiver<Option<Head>>;

/// Watch new heads on the first WebSocket endpoint, if any. The receiver changes with every
/// head; without a WebSocket endpoint it never changes and the follower polls.
pub fn spawn(rpc: Arc<RpcPool>) -> Heads {
    let (tx, rx) = watch::channel(None);
    let Some(index) = rpc.endpoints().iter().position(|e| e.is_ws()) else {
        // Keep the sender alive so the receiver simply never fires.
        tokio::spawn(async move { tx.closed().await });
        return rx;
    };
    tokio::spawn(async move {
        let label = rpc.endpoints()[index].label().to_owned();
        let mut backoff = Duration::from_millis(500);
        loop {
            let subscribed = async {
                let provider = rpc.provider_at(index).await?;
                let sub = provider.subscribe_blocks().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(sub)
            };
            match subscribed.await {
                Ok(sub) => {
                    debug!(endpoint = %label, "subscribed to new heads");
                    backoff = Duration::from_millis(500);
                    let mut stream = sub.into_stream();
                    while let Some(header) = stream.next().await {
                        let head = Head { header: Header::from(&header), endpoint: index };
                        if tx.send(Some(head)).is_err() {
                            return; // the follower is gone
                        }
                    }
                    warn!(endpoint = %label, "new-heads subscription ended; resubscribing");
                    rpc.drop_connection(index).await;
                }
                Err(error) => {
                    let error = rpc.endpoints()[index].describe(&*error);
                    warn!(endpoint = %label, %error, retry_in = ?backoff, "cannot subscribe to new heads");
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    });
    rx
}
