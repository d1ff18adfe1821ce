//! The pool as an alloy transport, and the providers built on it.

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use alloy::{
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::{
        client::RpcClient,
        json_rpc::{RequestPacket, ResponsePacket},
    },
    transports::{TransportError, TransportErrorKind, TransportFut},
};

use crate::pool::RpcPool;

/// The pool as an alloy transport, so code written against a plain provider (the Safe client,
/// the sender, the rollback's on-chain checks) gets the pool's failover: each request goes
/// through [`RpcPool::call`] (current endpoint, timeout, next endpoint on failure, chain id
/// proven before first use). A JSON-RPC error (a revert, "nonce too low") is an answer, not a
/// failure: it comes back as is from the endpoint that gave it. When every endpoint fails the
/// error is a [`TransportErrorKind::Custom`] holding the [`RpcError`](crate::RpcError).
#[derive(Debug, Clone)]
pub struct PoolTransport(Arc<RpcPool>);

impl PoolTransport {
    /// The transport over `pool`.
    pub fn new(pool: Arc<RpcPool>) -> Self {
        Self(pool)
    }
}

impl tower::Service<RequestPacket> for PoolTransport {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: RequestPacket) -> Self::Future {
        let pool = self.0.clone();
        Box::pin(async move {
            let what = request.method_names().collect::<Vec<_>>().join(", ");
            pool.call_on(&what, |connection| {
                let mut transport = connection.client.transport().clone();
                let request = request.clone();
                async move { tower::Service::call(&mut transport, request).await }
            })
            .await
            .map_err(TransportErrorKind::custom)
        })
    }
}

impl RpcPool {
    /// A provider whose every request fails over across the pool's endpoints. Transaction and
    /// receipt watchers poll every `poll_interval`.
    pub fn failover_provider(self: &Arc<Self>, poll_interval: Duration) -> DynProvider {
        ProviderBuilder::new().connect_client(self.failover_client(poll_interval)).erased()
    }

    /// The client under [`failover_provider`](Self::failover_provider), to build other
    /// providers on (one with a wallet, for instance).
    pub fn failover_client(self: &Arc<Self>, poll_interval: Duration) -> RpcClient {
        RpcClient::new(PoolTransport(self.clone()), false).with_poll_interval(poll_interval)
    }
}
