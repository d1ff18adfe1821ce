//! guardian's daemon: follows the chain, evaluates rules, records findings, notifies.
//!
//! - [`rpc`]: endpoints with failover and chain-id verification.
//! - [`source`]: what the engine needs, read from the chain.
//! - [`heads`]: WebSocket new-head wake-ups.
//! - [`follower`]: the reorg-safe follower and backfill.
//! - [`notifier`]: webhook delivery from the durable outbox.

pub mod follower;
pub mod heads;
pub mod notifier;
pub mod rpc;
pub mod source;

pub use follower::{Evaluator, Follower, FollowerOptions, Step};
pub use rpc::RpcPool;
