//! `[replication]` and `[[replicas]]`: the other guardian replicas sharing the Safe.
//!
//! There is no coordinator: every replica verifies what a peer relays to it, and the Safe's
//! nonce stays the only arbiter. The names are what ranks replicas (the leader of an incident's
//! notifications), so every replica's config must call each replica by the same name.

use std::time::Duration;

use alloy_primitives::Address;

use crate::{
    ConfigError, Loader, Secret,
    raw::{self, S},
    span,
};

/// A leader-mode notification is sent by the next replica when the leader has not sent it
/// within this (unless `[replication] leader_timeout_ms`).
pub const DEFAULT_LEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// `[replication]` and the `[[replicas]]` peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// This replica's name: in notifications, trails and ranks (default: the host name).
    pub name: String,
    /// The replica of rank k sends an execution only when the Safe's nonce has not moved
    /// k × this after the threshold was met. `None`: two block times, measured at start.
    pub sender_delay: Option<Duration>,
    /// A leader-mode notification not sent by the replicas ranked before this one within
    /// rank × this is sent by this one.
    pub leader_timeout: Duration,
    /// The peers.
    pub peers: Vec<PeerConfig>,
}

impl ReplicationConfig {
    /// Every replica's name, this one's included, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.peers.iter().map(|p| p.name.clone()).collect();
        names.push(self.name.clone());
        names.sort();
        names
    }
}

/// One `[[replicas]]` peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// Its name, as its own config says `[replication] name`.
    pub name: String,
    /// Its HTTP API's base URL (`http://` or `https://`).
    pub api: String,
    /// The bearer token its write routes need (its `[api] token_env`), from `token_env`.
    pub token: Option<Secret>,
    /// The variable holding it.
    pub token_env: Option<String>,
    /// Its executor's address, when pinned here (otherwise learned from its `/health`).
    pub executor: Option<Address>,
}

/// The host's name, for a replica without `[replication] name`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "guardian".to_owned())
}

fn valid_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Loader<'_> {
    pub(crate) fn replication(
        &self,
        raw: Option<&raw::RawReplication>,
        peers: &[S<raw::RawReplica>],
    ) -> Result<ReplicationConfig, ConfigError> {
        let name = match raw.and_then(|r| r.name.as_ref()) {
            None => host_name(),
            Some(name) if valid_name(name.get_ref()) => name.get_ref().clone(),
            Some(name) => {
                return Err(self.err(
                    span(name),
                    format!(
                        "[replication] name is letters, digits, '-', '_' and '.', at most 64, got {:?}",
                        name.get_ref()
                    ),
                ));
            }
        };
        let millis = |key: Option<&S<u64>>, what: &str| match key {
            Some(v) => crate::limits::within(what, *v.get_ref(), 1, 600_000)
                .map(|ms| Some(Duration::from_millis(ms)))
                .map_err(|e| self.err(span(v), e)),
            None => Ok(None),
        };
        let sender_delay = millis(raw.and_then(|r| r.sender_delay_ms.as_ref()), "sender_delay_ms")?;
        let leader_timeout =
            millis(raw.and_then(|r| r.leader_timeout_ms.as_ref()), "leader_timeout_ms")?
                .unwrap_or(DEFAULT_LEADER_TIMEOUT);
        let mut out: Vec<PeerConfig> = Vec::with_capacity(peers.len());
        for entry in peers {
            let p = entry.get_ref();
            let peer_name = p.name.get_ref();
            if !valid_name(peer_name) {
                return Err(self.err(
                    span(&p.name),
                    format!(
                        "a replica's name is letters, digits, '-', '_' and '.', got {peer_name:?}"
                    ),
                ));
            }
            if *peer_name == name || out.iter().any(|o| o.name == *peer_name) {
                return Err(self.err(
                    span(&p.name),
                    format!(
                        "two replicas are named {peer_name:?} (this one is {name:?}, from [replication] name): every replica needs its own name"
                    ),
                ));
            }
            let api = p.api.get_ref().trim().trim_end_matches('/').to_owned();
            if !(api.starts_with("http://") || api.starts_with("https://")) {
                return Err(self.err(
                    span(&p.api),
                    format!(
                        "a replica's api is its HTTP API's URL (http:// or https://), got {api:?}"
                    ),
                ));
            }
            if out.iter().any(|o| o.api == api) {
                return Err(self.err(span(&p.api), format!("two replicas have the api {api}")));
            }
            let token = match &p.token_env {
                Some(var) => Some(self.secret(var, "replicas.token_env")?),
                None => None,
            };
            let executor = match &p.executor {
                Some(text) => Some(self.address(text)?),
                None => None,
            };
            out.push(PeerConfig {
                name: peer_name.clone(),
                api,
                token,
                token_env: p.token_env.as_ref().map(|v| v.get_ref().clone()),
                executor,
            });
        }
        Ok(ReplicationConfig { name, sender_delay, leader_timeout, peers: out })
    }

    /// A channel's `mode`: `false` for `"all"` (the default), `true` for `"leader"`.
    pub(crate) fn leader_mode(&self, mode: Option<&S<String>>) -> Result<bool, ConfigError> {
        match mode.map(|m| (m.get_ref().as_str(), m)) {
            None | Some(("all", _)) => Ok(false),
            Some(("leader", _)) => Ok(true),
            Some((other, m)) => Err(self.err(
                span(m),
                format!(
                    "mode is \"all\" (every replica sends; receivers merge by idempotency key) or \"leader\" (one replica per incident sends), got {other:?}"
                ),
            )),
        }
    }
}
