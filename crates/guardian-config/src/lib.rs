//! guardian's configuration: one TOML file, validated in full before anything starts.
//!
//! [`Config::load`] parses the file, checks every value (addresses, signatures, predicates,
//! thresholds, contract names) by compiling the rules exactly as the daemon will, and resolves
//! secrets from the environment. Every problem is reported as `file:line:column: what was
//! expected` ([`ConfigError`]); secrets are [`Secret`]s and never print.
//!
//! `config/guardian.toml` in the repository is the commented reference.

mod audit;
mod error;
pub mod limits;
mod observe;
mod raw;
mod replication;
mod secret;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    ops::Range,
    path::{Path, PathBuf},
    time::Duration,
};

use alloy_json_abi::{Event, Function, JsonAbi};
use alloy_primitives::{Address, Bytes};
use guardian_core::{
    incident::ResponsePolicy,
    rules::{
        BalanceAsset, BalanceDropSpec, CallSpec, CmpOp, CodeChangeSpec, CodeTarget, ContractPolicy,
        EngineError, EventSpec, InvariantSpec, Operand, Ratio, RevertRateSpec, RuleEngine,
        RuleKind, RuleSpec, WatchedContract, WindowMeasure, WindowSpec,
    },
    severity::{Action, Severity, SeverityPolicy},
};

pub use audit::{AnchorConfig, AuditConfig};
pub use error::ConfigError;
use error::Locator;
pub use observe::{
    ChannelKind, DEFAULT_KEEP_OCCURRENCES, MetricsConfig, NotifyConfig, PAGERDUTY_EVENTS_URL,
    ReadyConfig,
};
use raw::{RawCall, RawConfig, RawContract, RawPolicy, RawRule, S};
pub use replication::{DEFAULT_LEADER_TIMEOUT, PeerConfig, ReplicationConfig};
pub use secret::{Secret, remember as remember_secret, scrub_known as scrub_secrets};

/// Chain 138: Defi Oracle Meta mainnet.
pub const DEFAULT_CHAIN_ID: u64 = 138;
/// Where the HTTP API listens unless configured: loopback only.
pub const DEFAULT_API_BIND: &str = "127.0.0.1:8787";
/// How often the follower polls an HTTP endpoint for new blocks unless configured: a few
/// times per block at chain 138's 1–2 s block period, so a block is seen within a quarter
/// second over HTTP (WebSocket endpoints push heads and need no polling).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Default upper bound on one `eth_getLogs` range (blocks).
pub const DEFAULT_MAX_LOG_RANGE: u64 = 2_000;

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub source: PathBuf,
    /// The chain to follow.
    pub chain: ChainConfig,
    /// RPC endpoints, in order of preference (the follower fails over down the list).
    pub rpc: Vec<RpcEndpoint>,
    /// The SQLite database.
    pub storage: StorageConfig,
    /// The local HTTP API (used by the multisig approval flow).
    pub api: ApiConfig,
    /// The operators' Safe, when configured.
    pub safe: Option<SafeConfig>,
    /// Where findings are pushed, when configured.
    pub webhook: Option<WebhookConfig>,
    /// Every notification channel: `[webhook]` (named `webhook`) first, then each
    /// `[[notify]]`.
    pub notify: Vec<NotifyConfig>,
    /// `[metrics]`: where `/metrics`, `/ready` and the status page are served.
    pub metrics: MetricsConfig,
    /// `[ready]`: readiness thresholds.
    pub ready: ReadyConfig,
    /// `[audit]`: post-mortems and anchoring the audit log on chain.
    pub audit: AuditConfig,
    /// Severity → action.
    pub policy: SeverityPolicy,
    /// Severity → how long an incident may stay uncontained before it is escalated.
    pub response: ResponsePolicy,
    /// `[replication]` and `[[replicas]]`: this replica's name and its peers.
    pub replication: ReplicationConfig,
    /// Watched contracts.
    pub contracts: Vec<ContractConfig>,
    /// Rules, in evaluation order.
    pub rules: Vec<RuleSpec>,
    /// Names of the rules marked `preempt = true`: their findings predicted from a pending
    /// transaction act before it is mined (only with `pause_now`).
    pub preempt: std::collections::BTreeSet<String>,
    /// The `[rollback]` table: managed deployment configs, backups, address keys per contract.
    pub rollback: Option<guardian_rollback::RollbackConfig>,
    /// What is valid but probably not meant (no `[safe]`: nothing is paused; a file without a
    /// final newline, perhaps cut short), for `config check` to say.
    pub warnings: Vec<String>,
}

/// `[chain]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainConfig {
    /// Expected chain id; the daemon refuses an RPC that reports another.
    pub id: u64,
    /// Blocks to wait before evaluating a block (0 on QBFT: blocks are final when sealed).
    pub confirmations: u64,
    /// Polling period for HTTP endpoints.
    pub poll_interval: Duration,
    /// Upper bound on the blocks of one `eth_getLogs` request while catching up; guardian
    /// halves it on its own when the node refuses a range.
    pub max_log_range: u64,
    /// Where a fresh database starts following the chain. Ignored once the database holds a
    /// cursor: guardian always resumes from it.
    pub start_block: StartBlock,
}

/// `[chain] start_block`: the first block a fresh database evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartBlock {
    /// The head when guardian first starts (the default): nothing before it is scanned.
    #[default]
    Head,
    /// This block: everything from it to the head is backfilled first.
    Number(u64),
}

impl StartBlock {
    /// The block number, or `None` for the head.
    pub const fn number(self) -> Option<u64> {
        match self {
            Self::Head => None,
            Self::Number(n) => Some(n),
        }
    }
}

/// How an endpoint is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `http://` or `https://`.
    Http,
    /// `ws://` or `wss://` (subscriptions).
    Ws,
}

/// One `[[rpc]]` endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcEndpoint {
    /// The full URL (may embed an API key).
    pub url: Secret,
    /// HTTP or WebSocket, from the scheme.
    pub transport: Transport,
    /// A bearer token to send as `Authorization: Bearer …`.
    pub bearer: Option<Secret>,
    /// Safe to print: scheme, host and port, the path hidden, and the variable it came from.
    pub display: String,
}

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// SQLite file (relative paths are resolved against the config file's folder).
    pub path: PathBuf,
    /// Occurrences whose incident is closed (or that have none) are deleted once older than
    /// this; `None` keeps them forever.
    pub keep_occurrences: Option<Duration>,
}

/// `[api]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Listen address.
    pub bind: SocketAddr,
    /// The token write routes require as `Authorization: Bearer …`, from the variable
    /// `token_env` names (`None`: writes need no token, allowed on loopback only).
    pub token: Option<Secret>,
    /// The variable `token` comes from.
    pub token_env: Option<String>,
    /// Whether `POST /proposals` may propose an unpause (default: no; `guardian unpause` on the
    /// host always may).
    pub allow_unpause: bool,
}

/// `[safe]`: the operators' Safe 1.4.1 that owns the watched contracts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeConfig {
    /// The Safe's address.
    pub address: Address,
    /// Name of the environment variable holding the executor's private key. Read only by the
    /// component that executes, so `config check` does not need the key.
    pub executor_key_env: Option<String>,
    /// The pause-only Safe module, when one is configured (`[safe.module]`).
    pub module: Option<ModuleConfig>,
}

/// `[safe.module]`: the pause-only Safe module that lets Critical findings pause at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleConfig {
    /// The module's address (deployed by `guardian module deploy`).
    pub address: Address,
    /// Name of the environment variable holding the pauser's private key (a hot key the module
    /// lists; it can pause the targets and nothing else). Without it this replica cannot pause
    /// at once and falls back to Safe proposals.
    pub pauser_key_env: Option<String>,
}

/// `[webhook]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// The URL, from the environment.
    pub url: Secret,
    /// The variable it came from, for messages.
    pub url_env: String,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// The longest wait between two attempts: a failed delivery is retried with doubling
    /// waits up to this, and never dropped.
    pub max_backoff: Duration,
    /// `mode = "leader"`: with several replicas, only the incident's leader sends.
    pub leader: bool,
}

/// One `[[contracts]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractConfig {
    /// Name rules refer to.
    pub name: String,
    /// Address.
    pub address: Address,
    /// Events it declares (from `events` and the `abi` file), as full human-readable signatures.
    pub events: Vec<String>,
    /// The pause function's signature, as in `pause()`.
    pub pause: String,
    /// Calldata of the pause call (its selector).
    pub pause_calldata: Bytes,
    /// Its departures from the global policy (per-severity actions, rollback after pause).
    pub policy: ContractPolicy,
}

impl Config {
    /// Where resolved incidents' post-mortems are written: `[audit] postmortem_dir`, else a
    /// `postmortems` folder beside the backups (`[rollback] backup_dir`), else beside the
    /// database.
    pub fn postmortem_dir(&self) -> PathBuf {
        if let Some(dir) = &self.audit.postmortem_dir {
            return dir.clone();
        }
        let base = self.source.parent().unwrap_or(Path::new("."));
        match &self.rollback {
            Some(rollback) => base.join(&rollback.backup_dir).join("postmortems"),
            None => self.storage.path.parent().unwrap_or(Path::new(".")).join("postmortems"),
        }
    }

    /// Read, parse and validate `path`, resolving secrets from the process environment.
    pub fn load(path: impl AsRef<Path>) -> eyre::Result<Self> {
        let path = path.as_ref();
        let text = read_text(path)?;
        Ok(Self::parse(&text, path, &|name| std::env::var(name).ok())?)
    }

    /// Read `path` for a command that needs only some of its secrets: every value is checked
    /// as [`Config::load`] checks it, but a secret the command does not use that is not set in
    /// this shell gets a placeholder URL under the reserved `.invalid` domain instead of
    /// refusing. The daemon needs all of them ([`Config::load`]); an operator's command that
    /// talks to the chain needs the RPC ones ([`Secrets::Rpc`]); a view of the local database
    /// or a drill needs none ([`Secrets::None`]).
    pub fn load_needing(path: impl AsRef<Path>, needs: Secrets) -> eyre::Result<Self> {
        let path = path.as_ref();
        let text = read_text(path)?;
        let at = Locator { path, text: &text };
        let raw: RawConfig =
            toml::from_str(&text).map_err(|e| at.error(e.span(), e.message().trim()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let env = |name: &str| std::env::var(name).ok();
        Ok(Loader { at, env: &env, base, needs }.load(raw)?)
    }

    /// [`Config::load_needing`] with [`Secrets::None`].
    pub fn load_without_secrets(path: impl AsRef<Path>) -> eyre::Result<Self> {
        Self::load_needing(path, Secrets::None)
    }

    /// Parse and validate `text` (read from `path`, used in messages and to resolve relative
    /// paths), resolving secrets with `env`.
    pub fn parse(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let at = Locator { path, text };
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| at.error(e.span(), e.message().trim()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Loader { at, env, base, needs: Secrets::All }.load(raw)
    }

    /// The watched contracts as the rule engine sees them.
    pub fn watched_contracts(&self) -> Vec<WatchedContract> {
        self.contracts
            .iter()
            .map(|c| WatchedContract {
                name: c.name.clone(),
                address: c.address,
                policy: c.policy.clone(),
            })
            .collect()
    }

    /// Build the rule engine. Cannot fail for a config that [`Config::load`] accepted (it was
    /// validated by building the same engine), but returns the error rather than panicking.
    pub fn rule_engine(&self) -> Result<RuleEngine, EngineError> {
        RuleEngine::new(self.watched_contracts(), self.rules.clone(), self.policy)
    }

    /// A short human summary, secrets redacted, for `guardian config check`.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "config {} is valid", self.source.display());
        let _ = writeln!(
            out,
            "chain id {} (confirmations {}, poll every {} ms, a fresh database starts at {})",
            self.chain.id,
            self.chain.confirmations,
            self.chain.poll_interval.as_millis(),
            self.chain.start_block.number().map_or("the head".to_owned(), |n| format!("block {n}"))
        );
        for rpc in &self.rpc {
            let auth = if rpc.bearer.is_some() { " + bearer token" } else { "" };
            let _ = writeln!(out, "rpc {}{auth}", rpc.display);
        }
        let _ = writeln!(out, "storage {}", self.storage.path.display());
        let _ = writeln!(
            out,
            "api {}{}{}",
            self.api.bind,
            match &self.api.token_env {
                Some(var) => format!(" (write routes need the bearer token in ${var})"),
                None => " (no token: loopback only)".to_owned(),
            },
            if self.api.allow_unpause { ", unpause allowed" } else { "" }
        );
        if let Some(safe) = &self.safe {
            let _ = writeln!(out, "safe {}", safe.address);
            if let Some(module) = &safe.module {
                let pauser = module
                    .pauser_key_env
                    .as_deref()
                    .map_or("no pauser key: proposals only".to_owned(), |v| {
                        format!("pauser key from ${v}")
                    });
                let _ = writeln!(out, "pause module {} ({pauser})", module.address);
            }
        }
        if let Some(w) = &self.webhook {
            let _ = writeln!(
                out,
                "webhook *** (from ${}), retried until delivered, at most {} s apart",
                w.url_env,
                w.max_backoff.as_secs()
            );
        }
        for c in self.notify.iter().filter(|c| c.name != "webhook" || self.webhook.is_none()) {
            let _ = writeln!(
                out,
                "notify {} ({}, from {}), incidents of {} and above{}",
                c.name,
                c.kind.as_str(),
                c.url_env
                    .as_deref()
                    .map_or_else(|| "PagerDuty's endpoint".to_owned(), |v| format!("${v}")),
                c.min_severity,
                if c.leader { ", leader mode" } else { "" }
            );
        }
        if self.notify.is_empty() {
            let _ = writeln!(out, "notify none (incidents are only logged and stored)");
        }
        let replication = &self.replication;
        let _ = writeln!(
            out,
            "replica {:?}{}",
            replication.name,
            if replication.peers.is_empty() {
                " (no [[replicas]]: alone)".to_owned()
            } else {
                format!(
                    ", sender delay {}, leader timeout {} ms",
                    replication
                        .sender_delay
                        .map_or("two block times".to_owned(), |d| format!("{} ms", d.as_millis())),
                    replication.leader_timeout.as_millis()
                )
            }
        );
        for peer in &replication.peers {
            let _ = writeln!(
                out,
                "  peer {:?} at {}{}{}",
                peer.name,
                peer.api,
                peer.token_env.as_deref().map_or(String::new(), |v| format!(" (token from ${v})")),
                peer.executor.map_or(String::new(), |a| format!(", executor {a}"))
            );
        }
        let _ = writeln!(
            out,
            "metrics, readiness and status page on {}",
            self.metrics.bind.unwrap_or(self.api.bind)
        );
        let _ = writeln!(out, "contracts:");
        for c in &self.contracts {
            let rollback = if c.policy.rollback_after_pause { ", then rollback" } else { "" };
            let _ = writeln!(out, "  {} {} (pause: {}{rollback})", c.name, c.address, c.pause);
        }
        let _ = writeln!(out, "rules:");
        match self.rule_engine() {
            Ok(engine) => {
                for rule in engine.rules() {
                    let targets: Vec<_> =
                        rule.targets.iter().map(|(c, a)| format!("{c} → {a}")).collect();
                    let _ = writeln!(
                        out,
                        "  {} [{}, {}{}] {}; {}",
                        rule.name,
                        rule.kind,
                        rule.severity,
                        if self.preempt.contains(rule.name) { ", preempt" } else { "" },
                        rule.threshold,
                        targets.join(", ")
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(out, "  (cannot compile: {e})");
            }
        }
        out
    }
}

/// Which secrets a command needs set (see [`Config::load_needing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// Every one (`guardian run`, `config check`).
    All,
    /// The RPC endpoints' URLs and bearer tokens, not the webhook's URL.
    Rpc,
    /// None.
    None,
}

impl Secrets {
    fn covers(self, place: &str) -> bool {
        match self {
            Self::All => true,
            Self::Rpc => place.starts_with("rpc."),
            Self::None => false,
        }
    }
}

struct Loader<'a> {
    at: Locator<'a>,
    env: &'a dyn Fn(&str) -> Option<String>,
    base: &'a Path,
    needs: Secrets,
}

fn span<T>(s: &S<T>) -> Option<Range<usize>> {
    Some(s.span())
}

impl Loader<'_> {
    fn err(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        self.at.error(span, message)
    }

    fn load(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let chain = match &raw.chain {
            None => ChainConfig {
                id: DEFAULT_CHAIN_ID,
                confirmations: 0,
                poll_interval: DEFAULT_POLL_INTERVAL,
                max_log_range: DEFAULT_MAX_LOG_RANGE,
                start_block: StartBlock::Head,
            },
            Some(c) => {
                use limits::*;
                if let Some(id) = c.id.as_ref().filter(|id| *id.get_ref() == 0) {
                    return Err(self.err(span(id), "[chain] id must be above 0 (chain 138 is 138)"));
                }
                for (key, value, min, max) in [
                    ("confirmations", &c.confirmations, 0, MAX_CONFIRMATIONS),
                    (
                        "poll_interval_ms",
                        &c.poll_interval_ms,
                        MIN_POLL_INTERVAL_MS,
                        MAX_POLL_INTERVAL_MS,
                    ),
                    ("max_log_range", &c.max_log_range, 1, MAX_LOG_RANGE),
                ] {
                    if let Some(v) = value {
                        within(key, *v.get_ref(), min, max).map_err(|e| self.err(span(v), e))?;
                    }
                }
                ChainConfig {
                    id: c.id.as_ref().map_or(DEFAULT_CHAIN_ID, |i| *i.get_ref()),
                    confirmations: c.confirmations.as_ref().map_or(0, |c| *c.get_ref()),
                    poll_interval: c
                        .poll_interval_ms
                        .as_ref()
                        .map_or(DEFAULT_POLL_INTERVAL, |ms| Duration::from_millis(*ms.get_ref())),
                    max_log_range: c
                        .max_log_range
                        .as_ref()
                        .map_or(DEFAULT_MAX_LOG_RANGE, |r| *r.get_ref()),
                    start_block: match &c.start_block {
                        None => StartBlock::Head,
                        Some(s) => match s.get_ref() {
                            raw::RawStartBlock::Number(n) => StartBlock::Number(*n),
                            raw::RawStartBlock::Word(w) if w == "head" => StartBlock::Head,
                            raw::RawStartBlock::Word(w) => {
                                return Err(self.err(
                                    span(s),
                                    format!(
                                        "start_block must be a block number or \"head\", not {w:?}"
                                    ),
                                ));
                            }
                        },
                    },
                }
            }
        };
        if raw.rpc.get_ref().is_empty() {
            return Err(self.err(span(&raw.rpc), "at least one [[rpc]] endpoint is needed"));
        }
        let rpc = raw.rpc.get_ref().iter().map(|r| self.rpc(r)).collect::<Result<Vec<_>, _>>()?;
        let storage = StorageConfig {
            path: raw
                .storage
                .as_ref()
                .and_then(|s| s.path.as_ref())
                .map_or_else(|| self.base.join("guardian.sqlite"), |p| self.base.join(p.get_ref())),
            keep_occurrences: self.keep_occurrences(raw.storage.as_ref())?,
        };
        let api = self.api(raw.api.as_ref())?;
        let safe = match &raw.safe {
            None => None,
            Some(s) => Some(SafeConfig {
                address: match self.address(&s.address)? {
                    Address::ZERO => {
                        return Err(self.err(
                            span(&s.address),
                            "[safe] address is the zero address: no Safe lives there",
                        ));
                    }
                    address => address,
                },
                executor_key_env: match &s.executor_key_env {
                    None => None,
                    Some(name) => Some(self.env_name(name)?.to_owned()),
                },
                module: match &s.module {
                    None => None,
                    Some(m) => Some(self.module(m)?),
                },
            }),
        };
        let webhook = match &raw.webhook {
            None => None,
            Some(w) => Some(self.webhook(w)?),
        };
        let notify = self.notify(&raw.notify, webhook.as_ref())?;
        let metrics = self.metrics(raw.metrics.as_ref())?;
        let ready = self.ready(raw.ready.as_ref())?;
        let audit = self.audit(raw.audit.as_ref(), safe.as_ref())?;
        let policy = self.policy(raw.policy.as_ref(), SeverityPolicy::default())?;
        let response = self.response(raw.response.as_ref())?;
        let replication = self.replication(raw.replication.as_ref(), &raw.replicas)?;
        let contracts = self.contracts(&raw.contracts)?;
        let mut rules = Vec::with_capacity(raw.rules.len());
        let mut rule_spans = Vec::with_capacity(raw.rules.len());
        let mut preempt = std::collections::BTreeSet::new();
        for r in &raw.rules {
            let (spec, spans) = self.rule(r, &contracts)?;
            if r.get_ref().preempt.as_ref().is_some_and(|p| *p.get_ref()) {
                preempt.insert(spec.name.clone());
            }
            rules.push(spec);
            rule_spans.push(spans);
        }
        let rollback = self.rollback(raw.rollback.as_ref(), &contracts, &raw.contracts)?;
        let mut config = Config {
            source: self.at.path.to_owned(),
            chain,
            rpc,
            storage,
            api,
            safe,
            webhook,
            notify,
            metrics,
            ready,
            audit,
            policy,
            response,
            replication,
            contracts,
            rules,
            preempt,
            rollback,
            warnings: Vec::new(),
        };
        // Pre-emption acts only through the module: a rule marked `preempt` must pause now.
        if let Ok(engine) = config.rule_engine() {
            for rule in engine.rules().filter(|r| config.preempt.contains(r.name)) {
                if let Some((contract, action)) =
                    rule.targets.iter().find(|(_, action)| !action.pauses_now())
                {
                    let place = raw.rules.iter().find_map(|r| {
                        (r.get_ref().name.get_ref() == rule.name)
                            .then(|| r.get_ref().preempt.as_ref().map(S::span))
                            .flatten()
                    });
                    return Err(self.err(
                        place,
                        format!(
                            "rule {:?} has `preempt = true`, but its findings on {contract} ask for {action}: a predicted finding can only act with pause_now (set the severity's policy to pause_now, or drop preempt)",
                            rule.name
                        ),
                    ));
                }
            }
        }
        config.warnings = self.warnings(&config);
        // Compile the rules exactly as the daemon will, and point at the key at fault.
        if let Err(e) = config.rule_engine() {
            return Err(match e {
                EngineError::Rule(e) => {
                    let index = if e.key == "name" {
                        config.rules.iter().rposition(|r| r.name == e.rule)
                    } else {
                        config.rules.iter().position(|r| r.name == e.rule)
                    };
                    let place = index.and_then(|i| rule_spans[i].find(e.key, e.index));
                    self.err(place, e.to_string())
                }
                EngineError::Contract { ref name, .. } => {
                    let place = raw
                        .contracts
                        .get_ref()
                        .iter()
                        .rfind(|c| c.get_ref().name.get_ref() == name)
                        .map(|c| c.get_ref().name.span());
                    self.err(place, e.to_string())
                }
            });
        }
        Ok(config)
    }

    fn env_name<'s>(&self, name: &'s S<String>) -> Result<&'s str, ConfigError> {
        let n = name.get_ref();
        if n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(self.err(
                span(name),
                format!(
                    "expected the name of an environment variable (letters, digits, _), got {n:?}"
                ),
            ));
        }
        Ok(n)
    }

    /// The value of the variable named at `name`; `place` says which setting wanted it.
    fn secret(&self, name: &S<String>, place: &str) -> Result<Secret, ConfigError> {
        let var = self.env_name(name)?;
        match (self.env)(var) {
            Some(value) if !value.trim().is_empty() => Ok(Secret::new(value.trim())),
            // Not used by this command: a placeholder that can reach nothing.
            _ if !self.needs.covers(place) => {
                Ok(Secret::new(format!("http://{}.unset.invalid/", var.to_lowercase())))
            }
            _ => Err(self.err(
                span(name),
                format!("environment variable {var} (named by {place}) is not set or empty"),
            )),
        }
    }

    /// `[api]`: a bind beyond loopback needs a token (anyone who reaches the port could
    /// otherwise propose pauses and post signatures).
    fn api(&self, raw: Option<&raw::RawApi>) -> Result<ApiConfig, ConfigError> {
        let bind_key = raw.and_then(|a| a.bind.as_ref());
        let bind: SocketAddr = match bind_key {
            None => DEFAULT_API_BIND.parse().map_err(|_| self.err(None, "bad default bind"))?,
            Some(bind) => bind.get_ref().parse().map_err(|_| {
                self.err(
                    span(bind),
                    format!(
                        "expected ip:port such as {DEFAULT_API_BIND:?}, got {:?}",
                        bind.get_ref()
                    ),
                )
            })?,
        };
        let token_env = raw.and_then(|a| a.token_env.as_ref());
        let token = match token_env {
            None => None,
            Some(var) => Some(self.secret(var, "api.token_env")?),
        };
        if token_env.is_none() && !bind.ip().is_loopback() {
            return Err(self.err(
                bind_key.and_then(span),
                format!(
                    "the HTTP API would listen on {bind}, beyond loopback, without a token: set \
                     `token_env` (the variable holding the token its write routes require) or \
                     bind to 127.0.0.1"
                ),
            ));
        }
        Ok(ApiConfig {
            bind,
            token,
            token_env: token_env.map(|v| v.get_ref().clone()),
            allow_unpause: raw.and_then(|a| a.allow_unpause.as_ref()).is_some_and(|a| *a.get_ref()),
        })
    }

    fn rpc(&self, raw: &S<raw::RawRpc>) -> Result<RpcEndpoint, ConfigError> {
        let r = raw.get_ref();
        let (url, origin, url_span) = match (&r.url, &r.url_env) {
            (Some(url), None) => (Secret::new(url.get_ref().trim()), String::new(), span(url)),
            (None, Some(var)) => {
                (self.secret(var, "rpc.url_env")?, format!(" (from ${})", var.get_ref()), span(var))
            }
            _ => {
                return Err(self.err(
                    span(raw),
                    "an [[rpc]] endpoint needs exactly one of `url` (http://, https://, ws://, wss://) or `url_env` (the variable holding it)",
                ));
            }
        };
        let (transport, shown) = parse_endpoint(url.expose()).map_err(|e| self.err(url_span, e))?;
        let bearer = match &r.bearer_env {
            None => None,
            Some(var) => Some(self.secret(var, "rpc.bearer_env")?),
        };
        Ok(RpcEndpoint { url, transport, bearer, display: format!("{shown}{origin}") })
    }

    fn webhook(&self, raw: &S<raw::RawWebhook>) -> Result<WebhookConfig, ConfigError> {
        let w = raw.get_ref();
        if let Some(url) = &w.url {
            return Err(self.err(
                span(url),
                "webhook URLs carry tokens: put the URL in an environment variable and name it with `url_env`",
            ));
        }
        let var = w.url_env.as_ref().ok_or_else(|| {
            self.err(
                span(raw),
                "[webhook] needs `url_env`, the environment variable holding its URL",
            )
        })?;
        let url = self.secret(var, "webhook.url_env")?;
        if !(url.expose().starts_with("https://") || url.expose().starts_with("http://")) {
            return Err(self.err(
                span(var),
                format!("the URL in ${} must start with https:// or http://", var.get_ref()),
            ));
        }
        if let Some(retries) = &w.retries {
            return Err(self.err(
                span(retries),
                "`retries` is gone: a failed notification is retried until it is delivered; \
                 `max_backoff_ms` sets the longest wait between attempts (default 300000)",
            ));
        }
        let positive = |key: &Option<S<u64>>, name: &str, default: u64, max: u64| match key {
            Some(v) => limits::within(name, *v.get_ref(), 1, max)
                .map(Duration::from_millis)
                .map_err(|e| self.err(span(v), e)),
            None => Ok(Duration::from_millis(default)),
        };
        Ok(WebhookConfig {
            url,
            url_env: var.get_ref().clone(),
            timeout: positive(&w.timeout_ms, "timeout_ms", 5_000, limits::MAX_TIMEOUT_MS)?,
            max_backoff: positive(
                &w.max_backoff_ms,
                "max_backoff_ms",
                300_000,
                limits::MAX_BACKOFF_MS,
            )?,
            leader: self.leader_mode(w.mode.as_ref())?,
        })
    }

    fn response(&self, raw: Option<&raw::RawResponse>) -> Result<ResponsePolicy, ConfigError> {
        let mut policy = ResponsePolicy::default();
        let Some(raw) = raw else { return Ok(policy) };
        let duration = |key: &S<String>, name: &str| -> Result<u64, ConfigError> {
            let parsed = key.get_ref().trim().parse::<jiff::SignedDuration>().map_err(|_| {
                self.err(
                    span(key),
                    format!("{name}: expected a duration such as \"0s\", \"15m\", \"1h\" or \"24h\", got {:?}", key.get_ref()),
                )
            })?;
            if parsed.is_negative() {
                return Err(self.err(span(key), format!("{name} cannot be negative")));
            }
            u64::try_from(parsed.as_millis())
                .map_err(|_| self.err(span(key), format!("{name} is too long")))
        };
        for (key, slot, name) in [
            (&raw.critical, &mut policy.critical, "critical"),
            (&raw.high, &mut policy.high, "high"),
            (&raw.medium, &mut policy.medium, "medium"),
            (&raw.low, &mut policy.low, "low"),
            (&raw.escalate_every, &mut policy.escalate_every, "escalate_every"),
        ] {
            if let Some(key) = key {
                *slot = duration(key, name)?;
            }
        }
        if let Some(key) = raw.escalate_every.as_ref().filter(|_| policy.escalate_every == 0) {
            return Err(self.err(span(key), "escalate_every must be above 0"));
        }
        Ok(policy)
    }

    fn module(&self, raw: &S<raw::RawModule>) -> Result<ModuleConfig, ConfigError> {
        let m = raw.get_ref();
        let address = self.address(&m.address)?;
        if address == Address::ZERO {
            return Err(self.err(span(&m.address), "the pause module's address cannot be zero"));
        }
        Ok(ModuleConfig {
            address,
            pauser_key_env: match &m.pauser_key_env {
                None => None,
                Some(name) => Some(self.env_name(name)?.to_owned()),
            },
        })
    }

    fn address(&self, text: &S<String>) -> Result<Address, ConfigError> {
        parse_address(text.get_ref()).map_err(|e| self.err(span(text), e))
    }

    fn action(&self, text: &S<String>) -> Result<Action, ConfigError> {
        text.get_ref().parse().map_err(|e: String| self.err(span(text), e))
    }

    fn policy(
        &self,
        raw: Option<&RawPolicy>,
        base: SeverityPolicy,
    ) -> Result<SeverityPolicy, ConfigError> {
        let mut policy = base;
        if let Some(raw) = raw {
            for (slot, value) in [
                (&mut policy.critical, &raw.critical),
                (&mut policy.high, &raw.high),
                (&mut policy.medium, &raw.medium),
                (&mut policy.low, &raw.low),
            ] {
                if let Some(value) = value {
                    *slot = self.action(value)?;
                }
            }
        }
        Ok(policy)
    }

    fn contracts(&self, raw: &S<Vec<S<RawContract>>>) -> Result<Vec<ContractConfig>, ConfigError> {
        if raw.get_ref().is_empty() {
            return Err(self.err(span(raw), "at least one [[contracts]] entry is needed"));
        }
        let mut out: Vec<ContractConfig> = Vec::new();
        for entry in raw.get_ref() {
            let c = self.contract(entry.get_ref())?;
            if let Some(other) = out.iter().find(|o| o.name == c.name || o.address == c.address) {
                let (what, place) = if other.name == c.name {
                    ("name", span(&entry.get_ref().name))
                } else {
                    ("address", span(&entry.get_ref().address))
                };
                return Err(self.err(
                    place,
                    format!("contract {:?} has the same {what} as {:?}", c.name, other.name),
                ));
            }
            out.push(c);
        }
        Ok(out)
    }

    fn contract(&self, c: &RawContract) -> Result<ContractConfig, ConfigError> {
        let name = c.name.get_ref();
        if name.is_empty()
            || !name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
        {
            return Err(self.err(
                span(&c.name),
                format!("a contract name is letters, digits, - and _ (rules and predicates refer to it), got {name:?}"),
            ));
        }
        let address = self.address(&c.address)?;
        let mut events = Vec::new();
        for sig in c.events.iter().flatten() {
            let event = Event::parse(sig.get_ref().trim()).map_err(|e| {
                self.err(
                    span(sig),
                    format!("cannot parse event signature {:?}: {e} (expected e.g. \"Paused(address account)\")", sig.get_ref()),
                )
            })?;
            limits::check_indexed(sig.get_ref()).map_err(|e| self.err(span(sig), e))?;
            events.push(event.full_signature());
        }
        if let Some(abi) = &c.abi {
            let file = self.base.join(abi.get_ref());
            events.extend(read_abi_events(&file).map_err(|e| self.err(span(abi), e))?);
        }
        let pause_text = c.pause.as_ref().map_or("pause()", |p| p.get_ref().as_str());
        let pause = Function::parse(pause_text.trim()).map_err(|e| {
            self.err(
                c.pause.as_ref().and_then(span),
                format!("cannot parse pause function {pause_text:?}: {e}"),
            )
        })?;
        if !pause.inputs.is_empty() {
            return Err(self.err(
                c.pause.as_ref().and_then(span),
                format!("the pause function takes no arguments, {pause_text:?} does"),
            ));
        }
        let rollback_after_pause = match c.on_pause.as_ref() {
            None => false,
            Some(v) => match v.get_ref().as_str() {
                "pause" => false,
                "rollback" => true,
                other => {
                    return Err(self.err(
                        span(v),
                        format!("expected \"pause\" or \"rollback\" (pause, then roll configs back), got {other:?}"),
                    ));
                }
            },
        };
        let mut overrides = BTreeMap::new();
        if let Some(p) = &c.policy {
            for (severity, value) in [
                (Severity::Critical, &p.critical),
                (Severity::High, &p.high),
                (Severity::Medium, &p.medium),
                (Severity::Low, &p.low),
            ] {
                if let Some(value) = value {
                    overrides.insert(severity, self.action(value)?);
                }
            }
        }
        Ok(ContractConfig {
            name: name.clone(),
            address,
            events,
            pause: pause.signature(),
            pause_calldata: Bytes::copy_from_slice(pause.selector().as_slice()),
            policy: ContractPolicy { overrides, rollback_after_pause },
        })
    }

    fn rule(
        &self,
        raw: &S<RawRule>,
        contracts: &[ContractConfig],
    ) -> Result<(RuleSpec, RuleSpans), ConfigError> {
        let r = raw.get_ref();
        self.rule_bounds(r)?;
        let mut spans =
            RuleSpans { table: raw.span(), keys: BTreeMap::new(), elements: BTreeMap::new() };
        let optional: [(&'static str, Option<Range<usize>>); 17] = [
            ("event", r.event.as_ref().and_then(span)),
            ("where", r.predicates.as_ref().and_then(span)),
            ("blocks", r.blocks.as_ref().and_then(span)),
            ("sum", r.sum.as_ref().and_then(span)),
            ("threshold", r.threshold.as_ref().and_then(span)),
            ("min_sample", r.min_sample.as_ref().and_then(span)),
            ("asset", r.asset.as_ref().and_then(span)),
            ("drop", r.drop.as_ref().and_then(span)),
            ("target", r.target.as_ref().and_then(span)),
            ("expected", r.expected.as_ref().and_then(span)),
            ("call", r.call.as_ref().and_then(span)),
            ("args", r.args.as_ref().and_then(span)),
            ("on", r.on.as_ref().and_then(span)),
            ("op", r.op.as_ref().and_then(span)),
            ("value", r.value.as_ref().and_then(span)),
            ("other", r.other.as_ref().and_then(span)),
            ("severity", r.severity.as_ref().and_then(span)),
        ];
        spans.keys.insert("name", r.name.span());
        spans.keys.insert("kind", r.kind.span());
        spans.keys.insert("contracts", r.contracts.span());
        spans.elements.insert("contracts", r.contracts.get_ref().iter().map(S::span).collect());
        if let Some(p) = &r.predicates {
            spans.elements.insert("where", p.get_ref().iter().map(S::span).collect());
        }
        for (key, place) in &optional {
            if let Some(place) = place {
                spans.keys.insert(key, place.clone());
            }
        }
        let kind = r.kind.get_ref().as_str();
        let allowed: &[&str] = match kind {
            "event" => &["event", "where"],
            "window" => &["event", "where", "blocks", "sum", "threshold"],
            "revert_rate" => &["blocks", "threshold", "min_sample"],
            "balance_drop" => &["asset", "drop", "blocks"],
            "code_change" => &["target", "expected"],
            "invariant" => &["call", "args", "on", "op", "value", "other"],
            other => {
                return Err(self.err(
                    span(&r.kind),
                    format!(
                        "unknown rule kind {other:?} (expected event, window, revert_rate, balance_drop, code_change or invariant)"
                    ),
                ));
            }
        };
        for (key, place) in &optional {
            if let Some(place) = place
                && *key != "severity"
                && !allowed.contains(key)
            {
                return Err(self.err(
                    Some(place.clone()),
                    format!(
                        "`{key}` does not apply to {kind} rules (they take: {})",
                        allowed.join(", ")
                    ),
                ));
            }
        }
        let need = |key: &str, what: &str| {
            self.err(Some(raw.span()), format!("a {kind} rule needs `{key}`: {what}"))
        };
        let severity = match &r.severity {
            None => None,
            Some(s) => Some(s.get_ref().parse::<Severity>().map_err(|e| self.err(span(s), e))?),
        };
        let rule_contracts: Vec<String> =
            r.contracts.get_ref().iter().map(|c| c.get_ref().clone()).collect();
        let event_spec = || -> Result<EventSpec, ConfigError> {
            let event = r.event.as_ref().ok_or_else(|| {
                need(
                    "event",
                    "a signature such as \"Withdrawn(address indexed account, address indexed to, uint256 amount)\" or the name of an event its contracts declare",
                )
            })?;
            Ok(EventSpec {
                signature: self.resolve_event(event, &rule_contracts, contracts)?,
                predicates: r
                    .predicates
                    .as_ref()
                    .map(|p| p.get_ref().iter().map(|s| s.get_ref().clone()).collect())
                    .unwrap_or_default(),
            })
        };
        let blocks = || {
            r.blocks
                .as_ref()
                .map(|b| *b.get_ref())
                .ok_or_else(|| need("blocks", "the window length in blocks"))
        };
        let kind = match kind {
            "event" => RuleKind::Event(event_spec()?),
            "window" => {
                let threshold = r
                    .threshold
                    .as_ref()
                    .ok_or_else(|| need("threshold", "a count (e.g. 10) or, with `sum`, an amount (e.g. \"10 ether\")"))?;
                RuleKind::Window(WindowSpec {
                    event: event_spec()?,
                    blocks: blocks()?,
                    measure: match &r.sum {
                        None => WindowMeasure::Count,
                        Some(field) => WindowMeasure::Sum(field.get_ref().clone()),
                    },
                    threshold: self.scalar(threshold)?,
                })
            }
            "revert_rate" => RuleKind::RevertRate(RevertRateSpec {
                blocks: blocks()?,
                threshold: match &r.threshold {
                    None => None,
                    Some(t) => Some(self.scalar(t)?.parse::<Ratio>().map_err(|e| self.err(span(t), e))?),
                },
                min_sample: r
                    .min_sample
                    .as_ref()
                    .map(|m| *m.get_ref())
                    .ok_or_else(|| need("min_sample", "the fewest transactions in the window worth judging"))?,
            }),
            "balance_drop" => RuleKind::BalanceDrop(BalanceDropSpec {
                asset: match &r.asset {
                    None => BalanceAsset::Native,
                    Some(a) if a.get_ref() == "native" => BalanceAsset::Native,
                    Some(a) => BalanceAsset::Erc20(
                        contracts
                            .iter()
                            .find(|c| &c.name == a.get_ref())
                            .map(|c| c.address)
                            .map_or_else(|| parse_address(a.get_ref()), Ok)
                            .map_err(|_| {
                                self.err(
                                    span(a),
                                    format!(
                                        "expected \"native\", an ERC-20 token address or a watched contract's name, got {:?}",
                                        a.get_ref()
                                    ),
                                )
                            })?,
                    ),
                },
                drop: {
                    let d = r.drop.as_ref().ok_or_else(|| need("drop", "the share such as \"30%\""))?;
                    d.get_ref().parse().map_err(|e| self.err(span(d), e))?
                },
                blocks: blocks()?,
            }),
            "code_change" => RuleKind::CodeChange(CodeChangeSpec {
                target: match r.target.as_ref() {
                    None => CodeTarget::CodeHash,
                    Some(t) => match t.get_ref().as_str() {
                        "code_hash" => CodeTarget::CodeHash,
                        "implementation" => CodeTarget::Implementation,
                        other => {
                            return Err(self.err(
                                span(t),
                                format!("expected \"code_hash\" or \"implementation\" (the EIP-1967 slot), got {other:?}"),
                            ));
                        }
                    },
                },
                expected: r.expected.as_ref().map(|e| e.get_ref().clone()),
            }),
            _invariant => {
                let call = r
                    .call
                    .as_ref()
                    .ok_or_else(|| need("call", "a view function such as \"solvent() returns (bool)\""))?;
                let op = r.op.as_ref().ok_or_else(|| need("op", "one of ==, !=, <, <=, >, >="))?;
                let other = match (&r.value, &r.other) {
                    (Some(v), None) => Operand::Value(self.scalar(v)?),
                    (None, Some(o)) => Operand::Call(self.call(o.get_ref())?),
                    _ => {
                        return Err(self.err(
                            Some(raw.span()),
                            "an invariant rule needs exactly one of `value` (a constant) or `other` (another call: { call = \"…\", args = [], on = \"contract\" })",
                        ));
                    }
                };
                RuleKind::Invariant(InvariantSpec {
                    call: CallSpec {
                        signature: call.get_ref().clone(),
                        args: match &r.args {
                            None => Vec::new(),
                            Some(a) => self.args(a.get_ref(), span(a))?,
                        },
                        contract: r.on.as_ref().map(|o| o.get_ref().clone()),
                    },
                    op: op.get_ref().parse::<CmpOp>().map_err(|e| self.err(span(op), e))?,
                    other,
                })
            }
        };
        Ok((
            RuleSpec { name: r.name.get_ref().clone(), severity, contracts: rule_contracts, kind },
            spans,
        ))
    }

    /// What a valid file may still get wrong: a file cut short (no final newline, often in the
    /// middle of a comment, with the tables after the cut gone) and the tables whose absence
    /// turns a part of guardian off.
    fn warnings(&self, config: &Config) -> Vec<String> {
        let mut out = Vec::new();
        let text = self.at.text;
        if !text.is_empty() && !text.ends_with('\n') {
            let last = text.lines().last().unwrap_or_default().trim_start();
            let place = if last.starts_with('#') { " in the middle of a comment" } else { "" };
            out.push(format!(
                "the file ends without a final newline{place}: if it was cut short (a partial copy \
                 or an editor crash), the tables after the cut are missing; compare it with its \
                 source"
            ));
        }
        if config.rules.is_empty() {
            out.push("no [[rules]]: the chain is followed but nothing is evaluated".to_owned());
        }
        if config.safe.is_none() {
            out.push("no [safe]: findings are recorded and notified, but nothing is paused".into());
        }
        if config.webhook.is_none() {
            out.push(
                "no [webhook]: incidents are recorded and logged, but nobody is notified".into(),
            );
        }
        out
    }

    /// A rule's name and numbers, each within its documented bound ([`limits`]).
    fn rule_bounds(&self, r: &RawRule) -> Result<(), ConfigError> {
        if r.name.get_ref().trim().is_empty() {
            return Err(self
                .err(span(&r.name), "a rule needs a name (findings and notifications carry it)"));
        }
        if let Some(blocks) = &r.blocks {
            limits::within("blocks", *blocks.get_ref(), 1, limits::MAX_WINDOW_BLOCKS).map_err(
                |e| self.err(span(blocks), format!("{e} (a restart replays the longest window)")),
            )?;
        }
        if let Some(min) = &r.min_sample {
            limits::within("min_sample", *min.get_ref(), 1, u64::MAX)
                .map_err(|e| self.err(span(min), e))?;
        }
        if let Some(event) = &r.event {
            limits::check_indexed(event.get_ref()).map_err(|e| self.err(span(event), e))?;
        }
        Ok(())
    }

    /// `[rollback]`: its own checks (names, pointers, paths, health calls), then against the
    /// watched contracts: every `[rollback.contracts.NAME]` is one of them, and every contract
    /// with `on_pause = "rollback"` says which keys to repoint.
    fn rollback(
        &self,
        raw: Option<&S<guardian_rollback::RollbackConfig>>,
        contracts: &[ContractConfig],
        raw_contracts: &S<Vec<S<RawContract>>>,
    ) -> Result<Option<guardian_rollback::RollbackConfig>, ConfigError> {
        if let Some(table) = raw {
            table
                .get_ref()
                .clone()
                .resolve(self.base)
                .map_err(|e| self.err(span(table), format!("{e:#}")))?;
            for name in table.get_ref().contracts.keys() {
                if !contracts.iter().any(|c| &c.name == name) {
                    let known: Vec<&str> = contracts.iter().map(|c| c.name.as_str()).collect();
                    return Err(self.err(
                        span(table),
                        format!(
                            "[rollback.contracts.{name}] is not a watched contract (the [[contracts]] are: {})",
                            known.join(", ")
                        ),
                    ));
                }
            }
        }
        for (contract, entry) in contracts.iter().zip(raw_contracts.get_ref()) {
            let has_keys = raw.is_some_and(|t| t.get_ref().contracts.contains_key(&contract.name));
            if contract.policy.rollback_after_pause && !has_keys {
                return Err(self.err(
                    entry.get_ref().on_pause.as_ref().and_then(span),
                    format!(
                        "contract {:?} rolls back after its pause, but [rollback.contracts.{}] does \
                         not say which config keys hold its address",
                        contract.name, contract.name
                    ),
                ));
            }
        }
        Ok(raw.map(|t| t.get_ref().clone()))
    }

    fn call(&self, raw: &RawCall) -> Result<CallSpec, ConfigError> {
        Ok(CallSpec {
            signature: raw.call.get_ref().clone(),
            args: self.args(&raw.args, span(&raw.call))?,
            contract: raw.on.as_ref().map(|o| o.get_ref().clone()),
        })
    }

    fn args(
        &self,
        values: &[toml::Value],
        place: Option<Range<usize>>,
    ) -> Result<Vec<String>, ConfigError> {
        values
            .iter()
            .map(|v| {
                scalar_text(v).ok_or_else(|| {
                    self.err(
                        place.clone(),
                        format!("expected a string, integer or boolean argument, got {v}"),
                    )
                })
            })
            .collect()
    }

    /// A number, string or boolean as text; floats are refused (amounts lose precision).
    fn scalar(&self, value: &S<toml::Value>) -> Result<String, ConfigError> {
        scalar_text(value.get_ref()).ok_or_else(|| {
            self.err(
                span(value),
                format!(
                    "expected a string or an integer, got {} (write amounts and shares as strings: \"1.5 ether\", \"10%\")",
                    value.get_ref()
                ),
            )
        })
    }

    /// `Withdrawn` → the signature declared by the rule's contracts; a full signature stays.
    fn resolve_event(
        &self,
        event: &S<String>,
        rule_contracts: &[String],
        contracts: &[ContractConfig],
    ) -> Result<String, ConfigError> {
        let text = event.get_ref().trim();
        if text.contains('(') {
            return Ok(text.to_owned());
        }
        let mut found: Option<String> = None;
        for name in rule_contracts {
            // Unknown contract names are reported by the engine, at the name.
            let Some(contract) = contracts.iter().find(|c| &c.name == name) else {
                continue;
            };
            let declared =
                contract.events.iter().find(|sig| Event::parse(sig).is_ok_and(|e| e.name == text));
            let Some(declared) = declared else {
                let names: Vec<_> = contract
                    .events
                    .iter()
                    .filter_map(|s| Event::parse(s).ok().map(|e| e.name))
                    .collect();
                return Err(self.err(
                    span(event),
                    format!(
                        "contract {name:?} declares no event {text:?} (it declares: {}); give the full signature or add it to the contract's `events`",
                        if names.is_empty() { "none".to_owned() } else { names.join(", ") }
                    ),
                ));
            };
            match &found {
                Some(sig) if sig != declared => {
                    return Err(self.err(
                        span(event),
                        format!("the rule's contracts declare {text} differently ({sig} vs {declared}); give the full signature"),
                    ));
                }
                _ => found = Some(declared.clone()),
            }
        }
        Ok(found.unwrap_or_else(|| text.to_owned()))
    }
}

/// Spans of one rule's keys, to point engine errors at the exact place.
#[derive(Debug)]
struct RuleSpans {
    table: Range<usize>,
    keys: BTreeMap<&'static str, Range<usize>>,
    elements: BTreeMap<&'static str, Vec<Range<usize>>>,
}

impl RuleSpans {
    fn find(&self, key: &str, index: Option<usize>) -> Option<Range<usize>> {
        let element = index.and_then(|i| self.elements.get(key)?.get(i).cloned());
        element.or_else(|| self.keys.get(key).cloned()).or_else(|| Some(self.table.clone()))
    }
}

fn scalar_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The file as text; bytes that are not UTF-8 are reported with their line and column.
fn read_text(path: &Path) -> eyre::Result<String> {
    let bytes = std::fs::read(path)
        .map_err(|e| eyre::eyre!("cannot read config file {}: {e}", path.display()))?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            // Valid up to here, so this prefix is text.
            let before = String::from_utf8_lossy(good);
            let at = Locator { path, text: &before };
            let bad = e.as_bytes().get(good.len()).copied().unwrap_or_default();
            Err(at
                .error(
                    Some(before.len()..before.len()),
                    format!(
                        "byte 0x{bad:02x} is not UTF-8: guardian reads config files as UTF-8 (re-save it as UTF-8, without a BOM in another encoding)"
                    ),
                )
                .into())
        }
    }
}

/// An address: `0x` and 40 hex digits; mixed case must be a valid EIP-55 checksum.
pub fn parse_address(text: &str) -> Result<Address, String> {
    let text = text.trim();
    let hex = text.strip_prefix("0x").unwrap_or("");
    if hex.len() != 40 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("expected an address (0x followed by 40 hex digits), got {text:?}"));
    }
    let mixed =
        hex.chars().any(|c| c.is_ascii_lowercase()) && hex.chars().any(|c| c.is_ascii_uppercase());
    if mixed {
        Address::parse_checksummed(text, None)
            .map_err(|_| format!("address {text:?} has a bad EIP-55 checksum (a typo?); write it in lower case to skip the check"))
    } else {
        text.parse().map_err(|e| format!("bad address {text:?}: {e}"))
    }
}

/// Check an endpoint URL and return its transport and a printable form (scheme, host and port;
/// path and query hidden as they often hold API keys; user info dropped).
fn parse_endpoint(url: &str) -> Result<(Transport, String), String> {
    let expected =
        || format!("expected an http://, https://, ws:// or wss:// URL, got {:?}", redact_all(url));
    let (scheme, rest) = url.split_once("://").ok_or_else(expected)?;
    let transport = match scheme {
        "http" | "https" => Transport::Http,
        "ws" | "wss" => Transport::Ws,
        _ => return Err(expected()),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit('@').next().unwrap_or(authority);
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(expected());
    }
    let hidden = if rest[end..].trim_start_matches('/').is_empty() { "" } else { "/***" };
    Ok((transport, format!("{scheme}://{host}{hidden}")))
}

fn redact_all(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, _)) => format!("{scheme}://***"),
        None => "***".to_owned(),
    }
}

/// Events of a JSON ABI file (a bare ABI array, or a compiler artifact with an `abi` key).
fn read_abi_events(file: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read ABI file {}: {e}", file.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("ABI file {} is not JSON: {e}", file.display()))?;
    let abi = match value {
        serde_json::Value::Object(mut artifact) if artifact.contains_key("abi") => {
            artifact.remove("abi").unwrap_or_default()
        }
        other => other,
    };
    let abi: JsonAbi = serde_json::from_value(abi)
        .map_err(|e| format!("ABI file {} is not a JSON ABI: {e}", file.display()))?;
    Ok(abi.events().map(Event::full_signature).collect())
}

#[cfg(test)]
mod tests;
