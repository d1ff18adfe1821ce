//! guardian's daemon: follows the chain, evaluates rules, records findings, notifies.
//!
//! - the endpoint pool (failover, chain-id proof) is `guardian-rpc`.
//! - [`source`]: what the engine needs, read from the chain.
//! - [`heads`]: WebSocket new-head wake-ups.
//! - [`follower`]: the reorg-safe follower and backfill.
//! - [`notifier`]: webhook delivery of incident notifications from the durable outbox.
//! - [`pauser`]: the incident responder (the outbox's proposals, executions and rollbacks,
//!   pending proposals watched) and the HTTP API.
//! - [`mempool`]: pre-emption, pending transactions simulated and predicted.
//! - [`lifecycle`]: the incident machine's timers (escalations).
//! - [`metrics`], [`ready`], [`server`], [`watch`]: `/metrics`, `/ready`, the status page and
//!   the background reads behind them (chain facts, retention).
//! - [`engine`]: the rule engine behind the follower's [`Evaluator`] trait.
//! - [`daemon`]: `guardian run`, all of the above wired from a config.

pub mod anchor;
pub mod daemon;
pub mod engine;
pub mod follower;
pub mod heads;
pub mod lifecycle;
pub mod mempool;
pub mod metrics;
pub mod notifier;
pub mod pauser;
pub mod ready;
pub mod relay;
pub mod server;
pub mod source;
pub mod watch;

pub use engine::Engine;
pub use follower::{Evaluator, Follower, FollowerObserver, FollowerOptions, Step};
pub use guardian_rpc::RpcPool;
