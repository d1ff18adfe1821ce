//! Telling someone (the metrics) about every request and every failover, and the per-endpoint
//! tower layer that times each request out and reports it.

use std::{
    fmt,
    sync::{Arc, RwLock},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use alloy::{
    rpc::json_rpc::{RequestPacket, ResponsePacket},
    transports::{TransportError, TransportErrorKind, TransportFut},
};
use tower::{Layer, Service};

use crate::error::RequestTimedOut;

/// Told about every request the pool sends and every failover (metrics).
pub trait RpcObserver: Send + Sync + std::fmt::Debug {
    /// One JSON-RPC request to `endpoint` (scrubbed `host:port`) ended with `outcome` after `elapsed`.
    fn request(&self, endpoint: &str, outcome: RpcOutcome, elapsed: std::time::Duration);
    /// The pool moved from one endpoint to another.
    fn failover(&self, from: &str, to: &str);
}

/// How one request ended.
///
/// A JSON-RPC error answer (a revert, "nonce too low") is [`RpcOutcome::Ok`]: the endpoint
/// answered. [`RpcOutcome::Error`] is a transport failure (refused connection, HTTP error
/// status, a closed WebSocket, an answer that is not JSON-RPC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcOutcome {
    /// The endpoint answered.
    Ok,
    /// The request failed before an answer came.
    Error,
    /// No answer within the pool's timeout.
    Timeout,
}

impl RpcOutcome {
    /// `"ok"`, `"error"` or `"timeout"`: the label metrics use.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Timeout => "timeout",
        }
    }
}

/// Where the pool's observer is kept: shared by the pool and every endpoint's layer, so one
/// [`RpcPool::set_observer`](crate::RpcPool::set_observer) reaches connections opened before
/// and after it.
#[derive(Clone, Default)]
pub(crate) struct ObserverSlot(Arc<RwLock<Option<Arc<dyn RpcObserver>>>>);

impl fmt::Debug for ObserverSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ObserverSlot").field(&self.get()).finish()
    }
}

impl ObserverSlot {
    pub(crate) fn set(&self, observer: Arc<dyn RpcObserver>) {
        *self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(observer);
    }

    fn get(&self) -> Option<Arc<dyn RpcObserver>> {
        self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub(crate) fn request(&self, endpoint: &str, outcome: RpcOutcome, elapsed: Duration) {
        if let Some(observer) = self.get() {
            observer.request(endpoint, outcome, elapsed);
        }
    }

    pub(crate) fn failover(&self, from: &str, to: &str) {
        if let Some(observer) = self.get() {
            observer.failover(from, to);
        }
    }
}

/// The layer in every endpoint's client stack: each JSON-RPC request (or batch) gets the pool's
/// timeout, and its outcome and duration go to the observer.
#[derive(Debug, Clone)]
pub struct EndpointLayer {
    endpoint: Arc<str>,
    timeout: Duration,
    observer: ObserverSlot,
}

impl EndpointLayer {
    pub(crate) fn new(endpoint: &str, timeout: Duration, observer: ObserverSlot) -> Self {
        Self { endpoint: endpoint.into(), timeout, observer }
    }
}

impl<S> Layer<S> for EndpointLayer {
    type Service = EndpointService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EndpointService { inner, layer: self.clone() }
    }
}

/// [`EndpointLayer`] over a transport.
#[derive(Debug, Clone)]
pub struct EndpointService<S> {
    inner: S,
    layer: EndpointLayer,
}

impl<S> Service<RequestPacket> for EndpointService<S>
where
    S: Service<
            RequestPacket,
            Response = ResponsePacket,
            Error = TransportError,
            Future = TransportFut<'static>,
        > + Send
        + Sync
        + Clone
        + 'static,
{
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: RequestPacket) -> Self::Future {
        let sent = self.inner.call(request);
        let layer = self.layer.clone();
        Box::pin(async move {
            let start = Instant::now();
            let (outcome, result) = match tokio::time::timeout(layer.timeout, sent).await {
                Ok(Ok(response)) => (RpcOutcome::Ok, Ok(response)),
                Ok(Err(error)) => (RpcOutcome::Error, Err(error)),
                Err(_) => (
                    RpcOutcome::Timeout,
                    Err(TransportErrorKind::custom(RequestTimedOut { after: layer.timeout })),
                ),
            };
            layer.observer.request(&layer.endpoint, outcome, start.elapsed());
            result
        })
    }
}
