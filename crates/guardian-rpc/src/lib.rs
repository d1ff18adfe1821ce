//! guardian's JSON-RPC endpoint pool, below the daemon, the operator desk and the CLI.
//!
//! Operators configure several endpoints (their own validators' RPC, a sentry, a provider).
//! [`RpcPool`] sends every request to the current endpoint; an error or a timeout moves to the
//! next one, so one dead or hung node never stops the guardian. No endpoint serves a request
//! before it reports the configured chain id. Everything else that talks to the chain (the
//! pause flow, the rollback's checks, the operators' commands) gets an alloy provider over
//! [`PoolTransport`], which sends each JSON-RPC request through the same pool.
//!
//! - [`pool`]: the endpoints, the pool, failover and the chain-id proof.
//! - [`transport`]: the pool as an alloy transport, and the providers built on it.
//! - [`observe`]: the [`RpcObserver`] hook (every request, every failover) and the per-endpoint
//!   tower layer that times out and reports each request.
//! - [`redact`]: endpoint labels and error text without credentials.
//! - [`error`]: [`RpcError`], typed so callers branch on kinds, not on message text.
//! - [`tls`]: rustls with *ring*, the crypto provider of every HTTPS and WSS connection.
//!
//! # What comes from alloy and what is ours
//!
//! Each endpoint is an alloy [`RpcClient`](alloy::rpc::client::RpcClient) built with
//! [`ClientBuilder`](alloy::rpc::client::ClientBuilder) over alloy's HTTP or WebSocket
//! transport, with our tower layer ([`observe::EndpointLayer`]) in its stack. The failover
//! itself is ours: alloy's `FallbackLayer` ranks transports by latency and races requests on
//! several at once, which does not fit a guardian that must use its operators' order of
//! preference, prove each endpoint's chain id before its first use, stay on one endpoint (the
//! follower's stall detection compares it with the others) and never send a transaction to
//! several nodes. `RetryBackoffLayer` is not used either: on a rate limit the pool moves to the
//! next endpoint at once instead of holding a pause behind a provider's backoff, and the
//! daemon's own loop backs off when every endpoint refuses.

pub mod error;
pub mod observe;
pub mod pool;
pub mod redact;
pub mod tls;
pub mod transport;

pub use error::{EndpointFailure, FailureKind, RpcError};
pub use observe::{RpcObserver, RpcOutcome};
pub use pool::{Endpoint, EndpointSpec, RpcPool};
pub use redact::{redact, scrub};
pub use transport::PoolTransport;
