//! The file as written: serde shapes with spans, before any validation. Every table refuses
//! unknown keys, so a typo is an error that points at it rather than a silently ignored line.

use serde::Deserialize;
use toml::Spanned;

pub(crate) type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) chain: Option<RawChain>,
    pub(crate) rpc: S<Vec<S<RawRpc>>>,
    #[serde(default)]
    pub(crate) storage: Option<RawStorage>,
    #[serde(default)]
    pub(crate) api: Option<RawApi>,
    #[serde(default)]
    pub(crate) safe: Option<RawSafe>,
    #[serde(default)]
    pub(crate) webhook: Option<S<RawWebhook>>,
    /// `[[notify]]`: notification channels (Slack, Discord, Telegram, PagerDuty, webhooks).
    #[serde(default)]
    pub(crate) notify: Vec<S<RawNotify>>,
    /// `[metrics]`: where `/metrics`, `/ready` and the status page are served.
    #[serde(default)]
    pub(crate) metrics: Option<RawMetrics>,
    /// `[ready]`: readiness thresholds.
    #[serde(default)]
    pub(crate) ready: Option<RawReady>,
    /// `[audit]`: post-mortems and anchoring.
    #[serde(default)]
    pub(crate) audit: Option<RawAudit>,
    #[serde(default)]
    pub(crate) policy: Option<RawPolicy>,
    #[serde(default)]
    pub(crate) response: Option<RawResponse>,
    /// `[replication]`: this replica's name and the peers' timing.
    #[serde(default)]
    pub(crate) replication: Option<RawReplication>,
    /// `[[replicas]]`: the other replicas sharing the Safe.
    #[serde(default)]
    pub(crate) replicas: Vec<S<RawReplica>>,
    pub(crate) contracts: S<Vec<S<RawContract>>>,
    #[serde(default)]
    pub(crate) rules: Vec<S<RawRule>>,
    /// Defined by `guardian-rollback`; parsed here so its typos get file:line:column too.
    #[serde(default)]
    pub(crate) rollback: Option<S<guardian_rollback::RollbackConfig>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawChain {
    pub(crate) id: Option<S<u64>>,
    pub(crate) confirmations: Option<S<u64>>,
    pub(crate) poll_interval_ms: Option<S<u64>>,
    pub(crate) max_log_range: Option<S<u64>>,
    pub(crate) start_block: Option<S<RawStartBlock>>,
}

/// `start_block = 1234` or `start_block = "head"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawStartBlock {
    Number(u64),
    Word(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRpc {
    pub(crate) url: Option<S<String>>,
    pub(crate) url_env: Option<S<String>>,
    pub(crate) bearer_env: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStorage {
    pub(crate) path: Option<S<String>>,
    /// How long occurrences are kept once their incident is closed (`"30d"`, `"0"`: forever).
    pub(crate) keep_occurrences: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApi {
    pub(crate) bind: Option<S<String>>,
    pub(crate) token_env: Option<S<String>>,
    pub(crate) allow_unpause: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSafe {
    pub(crate) address: S<String>,
    pub(crate) executor_key_env: Option<S<String>>,
    pub(crate) module: Option<S<RawModule>>,
}

/// `[safe.module]`: the pause-only Safe module.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModule {
    pub(crate) address: S<String>,
    pub(crate) pauser_key_env: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    pub(crate) url_env: Option<S<String>>,
    /// Refused with a message: webhook URLs carry tokens and belong in the environment.
    pub(crate) url: Option<S<toml::Value>>,
    /// Refused with a message: deliveries are retried until they succeed.
    pub(crate) retries: Option<S<toml::Value>>,
    pub(crate) timeout_ms: Option<S<u64>>,
    pub(crate) max_backoff_ms: Option<S<u64>>,
    /// `"all"` (default) or `"leader"`.
    pub(crate) mode: Option<S<String>>,
}

/// `[replication]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReplication {
    pub(crate) name: Option<S<String>>,
    pub(crate) sender_delay_ms: Option<S<u64>>,
    pub(crate) leader_timeout_ms: Option<S<u64>>,
}

/// One `[[replicas]]` peer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReplica {
    pub(crate) name: S<String>,
    pub(crate) api: S<String>,
    pub(crate) token_env: Option<S<String>>,
    pub(crate) executor: Option<S<String>>,
}

/// `[response]`: the operators' matrix as deadlines.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawResponse {
    pub(crate) critical: Option<S<String>>,
    pub(crate) high: Option<S<String>>,
    pub(crate) medium: Option<S<String>>,
    pub(crate) low: Option<S<String>>,
    pub(crate) escalate_every: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub(crate) critical: Option<S<String>>,
    pub(crate) high: Option<S<String>>,
    pub(crate) medium: Option<S<String>>,
    pub(crate) low: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawContract {
    pub(crate) name: S<String>,
    pub(crate) address: S<String>,
    pub(crate) events: Option<Vec<S<String>>>,
    pub(crate) abi: Option<S<String>>,
    pub(crate) pause: Option<S<String>>,
    pub(crate) on_pause: Option<S<String>>,
    pub(crate) policy: Option<RawPolicy>,
}

/// One `[[rules]]` entry. All kinds share one flat table; which keys a kind takes is checked
/// after parsing so a key of the wrong kind gets a precise message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub(crate) name: S<String>,
    pub(crate) kind: S<String>,
    pub(crate) severity: Option<S<String>>,
    pub(crate) contracts: S<Vec<S<String>>>,
    /// Act on this rule's findings predicted from pending transactions.
    pub(crate) preempt: Option<S<bool>>,
    // event, window
    pub(crate) event: Option<S<String>>,
    #[serde(rename = "where")]
    pub(crate) predicates: Option<S<Vec<S<String>>>>,
    // window, revert_rate, balance_drop
    pub(crate) blocks: Option<S<u64>>,
    pub(crate) sum: Option<S<String>>,
    pub(crate) threshold: Option<S<toml::Value>>,
    pub(crate) min_sample: Option<S<u64>>,
    pub(crate) asset: Option<S<String>>,
    pub(crate) drop: Option<S<String>>,
    // code_change
    pub(crate) target: Option<S<String>>,
    pub(crate) expected: Option<S<String>>,
    // invariant
    pub(crate) call: Option<S<String>>,
    pub(crate) args: Option<S<Vec<toml::Value>>>,
    pub(crate) on: Option<S<String>>,
    pub(crate) op: Option<S<String>>,
    pub(crate) value: Option<S<toml::Value>>,
    pub(crate) other: Option<S<RawCall>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCall {
    pub(crate) call: S<String>,
    #[serde(default)]
    pub(crate) args: Vec<toml::Value>,
    pub(crate) on: Option<S<String>>,
}

/// One `[[notify]]` channel.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNotify {
    pub(crate) kind: S<String>,
    pub(crate) name: Option<S<String>>,
    pub(crate) url_env: Option<S<String>>,
    /// Refused with a message: URLs carry tokens.
    pub(crate) url: Option<S<toml::Value>>,
    pub(crate) min_severity: Option<S<String>>,
    pub(crate) secret_env: Option<S<String>>,
    pub(crate) chat_id: Option<S<toml::Value>>,
    pub(crate) routing_key_env: Option<S<String>>,
    pub(crate) timeout_ms: Option<S<u64>>,
    pub(crate) max_backoff_ms: Option<S<u64>>,
    /// `"all"` (default) or `"leader"`.
    pub(crate) mode: Option<S<String>>,
}

/// `[metrics]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub(crate) bind: Option<S<String>>,
}

/// `[audit]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    pub(crate) postmortem_dir: Option<S<String>>,
    pub(crate) anchor: Option<S<String>>,
    pub(crate) anchor_key_env: Option<S<String>>,
    pub(crate) anchor_every: Option<S<u64>>,
    pub(crate) anchor_interval: Option<S<String>>,
    pub(crate) anchor_from_block: Option<S<u64>>,
}

/// `[ready]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReady {
    pub(crate) block_time: Option<S<String>>,
    pub(crate) stall_blocks: Option<S<u64>>,
    pub(crate) notifications_failing: Option<S<String>>,
    pub(crate) execution_gas: Option<S<u64>>,
    pub(crate) check_every: Option<S<String>>,
}
