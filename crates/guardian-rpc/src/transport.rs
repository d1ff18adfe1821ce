//! The pool as an alloy transport, and the providers built on it.

use std::{
    collections::HashMap,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use alloy::{
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::{
        client::RpcClient,
        json_rpc::{Id, Request, RequestPacket, Response, ResponsePacket, SerializedRequest},
    },
    transports::{TransportError, TransportErrorKind, TransportFut},
};

use crate::pool::{Connection, RpcPool};

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
                let request = request.clone();
                async move { send_on(&connection, request).await }
            })
            .await
            .map_err(TransportErrorKind::custom)
        })
    }
}

/// Send `request` on `connection` with ids taken from the connection's own client, then give
/// the answers back the caller's ids.
///
/// A WebSocket matches answers to requests by id, so every request on one connection must
/// draw its id from one counter: the follower's provider and this transport share the
/// connection's one [`RpcClient`], never a counter each (two counters both starting at 0 made
/// a block header answer an `eth_call`).
async fn send_on(
    connection: &Connection,
    request: RequestPacket,
) -> Result<ResponsePacket, TransportError> {
    let client = connection.client.inner();
    let mut theirs: HashMap<Id, Id> = HashMap::new();
    let mut renumber = |request: SerializedRequest| -> Result<SerializedRequest, TransportError> {
        let ours = client.next_id();
        theirs.insert(ours.clone(), request.id().clone());
        let mut meta = request.meta().clone();
        meta.id = ours;
        match request.params() {
            Some(params) => Request { meta, params: params.to_owned() }.serialize(),
            None => Request { meta, params: () }.serialize(),
        }
        .map_err(TransportError::ser_err)
    };
    let request = match request {
        RequestPacket::Single(single) => RequestPacket::Single(renumber(single)?),
        RequestPacket::Batch(batch) => {
            RequestPacket::Batch(batch.into_iter().map(&mut renumber).collect::<Result<_, _>>()?)
        }
    };
    let mut transport = client.transport().clone();
    let answer = tower::Service::call(&mut transport, request).await?;
    let restore = |mut response: Response| -> Result<Response, TransportError> {
        response.id = theirs.get(&response.id).cloned().ok_or_else(|| {
            TransportErrorKind::custom_str(&format!(
                "the node answered id {}, which was not asked on this connection",
                response.id
            ))
        })?;
        Ok(response)
    };
    Ok(match answer {
        ResponsePacket::Single(single) => ResponsePacket::Single(restore(single)?),
        ResponsePacket::Batch(batch) => {
            ResponsePacket::Batch(batch.into_iter().map(restore).collect::<Result<_, _>>()?)
        }
    })
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
