//! Prometheus metrics, served as OpenMetrics text at `GET /metrics`.
//!
//! Where each value comes from (docs/ARCHITECTURE.md, "Metrics", says the same):
//! - **the records, at scrape time**: `guardian_findings_total{rule,severity}` (the findings
//!   table), `guardian_incidents_open{severity}` and `guardian_incidents_overdue{severity}`
//!   (open incidents and their deadlines), `guardian_proposals{status}`,
//!   `guardian_notifications_pending`, `guardian_notification_failures_total{channel}` (the
//!   deliveries' attempts), `guardian_notifications_failing_seconds`, `guardian_cursor_block`:
//!   read from the store in a handful of grouped counts ([`guardian_store::Store::tallies`]).
//!   Nothing that counts findings or incident transitions is incremented anywhere else, so a
//!   metric cannot disagree with the audit log.
//! - **what the process saw**: the RPC pool's requests, failovers and latencies (this type is
//!   its [`RpcObserver`]), the follower's head, block processing time and last block's age
//!   (it is the follower's [`FollowerObserver`]).
//! - **the chain facts**, read every `[ready] check_every` by [`crate::watch`]: the executor's
//!   balance and one execution's cost, `guardian_rollback_ready{contract}`,
//!   `guardian_last_backup_age_seconds`.
//! - `guardian_ready` is [`crate::ready::evaluate`] over the above, as `/ready` answers.

use std::{
    collections::BTreeMap,
    sync::{Mutex, OnceLock, PoisonError, RwLock},
    time::{Duration, Instant},
};

use guardian_config::Config;
use guardian_core::{incident::Millis, severity::Severity};
use guardian_operator::status::{ChainFacts, EndpointHealth, EndpointState, Readiness};
use guardian_store::{Tallies, now_ms};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, text::encode_registry},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
        histogram::Histogram,
    },
    registry::Registry,
};

use guardian_rpc::{RpcObserver, RpcOutcome, RpcPool};

use crate::follower::FollowerObserver;

/// The OpenMetrics text content type `/metrics` answers with when the scraper accepts it (as
/// Prometheus does).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The exposition formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics text 1.0.0 (what Prometheus asks for).
    OpenMetrics,
    /// The Prometheus text format 0.0.4 (for any other client: curl, `promtool check metrics`).
    Text,
}

impl Format {
    /// The format an `Accept` header asks for.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::Text,
        }
    }

    /// Its `Content-Type`.
    pub const fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => CONTENT_TYPE,
            Self::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

static BUILD_INFO: OnceLock<(String, String)> = OnceLock::new();

/// The version and git commit `guardian_build_info` reports (the binary knows them; library
/// crates do not see its build script). Set once, before the daemon starts; later calls are
/// ignored.
pub fn set_build_info(version: &str, commit: &str) {
    let _first_wins = BUILD_INFO.set((version.to_owned(), commit.to_owned()));
}

pub(crate) fn build_info() -> (String, String) {
    BUILD_INFO
        .get()
        .cloned()
        .unwrap_or_else(|| (env!("CARGO_PKG_VERSION").to_owned(), "unknown".to_owned()))
}

/// What the follower last told.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FollowerView {
    /// The head it last read, and when (unix ms).
    pub head: Option<(u64, Millis)>,
    /// The cursor it last saw, and since when it has been there (unix ms).
    pub cursor: Option<(u64, Millis)>,
    /// The cursor block's timestamp (unix s).
    pub cursor_timestamp: Option<u64>,
    /// Since when its commits fail (unix ms), if they do.
    pub database_failing_since: Option<Millis>,
}

/// One endpoint's recent outcomes.
#[derive(Debug, Clone, Default)]
struct EndpointRecord {
    last_ok: bool,
    seen: bool,
    failing_since: Option<Millis>,
}

/// Everything the daemon measures, shared by the follower, the RPC pool, the chain watch and
/// the HTTP server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    rpc_requests: Family<[(&'static str, String); 2], Counter>,
    rpc_failovers: Counter,
    rpc_seconds: Histogram,
    block_seconds: Histogram,
    started: Instant,
    follower: Mutex<FollowerView>,
    database_error: Mutex<Option<String>>,
    endpoints: Mutex<BTreeMap<String, EndpointRecord>>,
    facts: RwLock<Option<ChainFacts>>,
    channels: Vec<String>,
}

/// Latency buckets (seconds) for RPC requests and block processing.
const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

impl Metrics {
    /// The daemon's metrics for `config` (its notification channels name the `channel` label).
    pub fn new(config: &Config) -> Self {
        let mut registry = Registry::default();
        let rpc_requests = Family::<[(&'static str, String); 2], Counter>::default();
        registry.register(
            "guardian_rpc_requests",
            "JSON-RPC requests sent, by endpoint (host:port) and outcome (ok, error, timeout)",
            rpc_requests.clone(),
        );
        let rpc_failovers = Counter::default();
        registry.register(
            "guardian_rpc_failovers",
            "Times the RPC pool moved from one endpoint to another",
            rpc_failovers.clone(),
        );
        let rpc_seconds = Histogram::new(BUCKETS);
        registry.register(
            "guardian_rpc_request_seconds",
            "Time one JSON-RPC request took, answered or not",
            rpc_seconds.clone(),
        );
        let block_seconds = Histogram::new(BUCKETS);
        registry.register(
            "guardian_block_processing_seconds",
            "Time to read, evaluate and commit one block near the head (catch-up ranges are not sampled)",
            block_seconds.clone(),
        );
        Self {
            registry,
            rpc_requests,
            rpc_failovers,
            rpc_seconds,
            block_seconds,
            started: Instant::now(),
            follower: Mutex::new(FollowerView::default()),
            database_error: Mutex::new(None),
            endpoints: Mutex::new(BTreeMap::new()),
            facts: RwLock::new(None),
            channels: config.notify.iter().map(|c| c.name.clone()).collect(),
        }
    }

    /// The configured notification channels.
    pub fn channels(&self) -> &[String] {
        &self.channels
    }

    /// What the follower last told.
    pub fn follower(&self) -> FollowerView {
        *self.follower.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last database error of the follower, while its commits fail.
    pub fn database_error(&self) -> Option<String> {
        self.database_error.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The last chain facts the watch read.
    pub fn facts(&self) -> Option<ChainFacts> {
        self.facts.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Keep `facts` as the latest.
    pub fn set_facts(&self, facts: ChainFacts) {
        *self.facts.write().unwrap_or_else(PoisonError::into_inner) = Some(facts);
    }

    /// Each endpoint of `pool` as its requests went: ok, failing (since when) or not asked yet.
    pub fn endpoint_states(&self, pool: &RpcPool) -> Vec<EndpointState> {
        let records = self.endpoints.lock().unwrap_or_else(PoisonError::into_inner);
        let current = pool.current();
        pool.endpoints()
            .iter()
            .enumerate()
            .map(|(index, endpoint)| {
                let record = records.get(endpoint.host_port());
                let health = match record {
                    Some(r) if r.seen && r.last_ok => EndpointHealth::Ok,
                    Some(r) if r.seen => EndpointHealth::Failing,
                    _ => EndpointHealth::Unknown,
                };
                EndpointState {
                    endpoint: endpoint.label().to_owned(),
                    current: index == current,
                    health,
                    head: None,
                    last_error: None,
                    failing_since: record.and_then(|r| r.failing_since),
                }
            })
            .collect()
    }

    /// The whole exposition: what the process measured, then what the records and the chain
    /// facts say now (`tallies`, read by the caller from the store), and `ready`.
    pub fn render(
        &self,
        tallies: &Tallies,
        ready: &Readiness,
        policy: &guardian_core::incident::ResponsePolicy,
        format: Format,
    ) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(8 * 1024);
        let encode = |out: &mut String, registry: &Registry| match format {
            Format::OpenMetrics => encode_registry(out, registry),
            Format::Text => prometheus_client::encoding::prometheus_text::encode(out, registry),
        };
        encode(&mut out, &self.registry)?;
        let mut scrape = Registry::default();
        scrape.register_collector(Box::new(Scrape {
            now: now_ms(),
            tallies: tallies.clone(),
            follower: self.follower(),
            facts: self.facts(),
            ready: ready.ready,
            policy: *policy,
            channels: self.channels.clone(),
        }));
        encode(&mut out, &scrape)?;
        if format == Format::OpenMetrics {
            prometheus_client::encoding::text::encode_eof(&mut out)?;
        }
        Ok(out)
    }

    /// Seconds since this process started measuring.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

impl RpcObserver for Metrics {
    fn request(&self, endpoint: &str, outcome: RpcOutcome, elapsed: Duration) {
        self.rpc_requests
            .get_or_create(&[
                ("endpoint", endpoint.to_owned()),
                ("outcome", outcome.as_str().to_owned()),
            ])
            .inc();
        self.rpc_seconds.observe(elapsed.as_secs_f64());
        let mut records = self.endpoints.lock().unwrap_or_else(PoisonError::into_inner);
        let record = records.entry(endpoint.to_owned()).or_default();
        record.seen = true;
        record.last_ok = outcome == RpcOutcome::Ok;
        if record.last_ok {
            record.failing_since = None;
        } else if record.failing_since.is_none() {
            record.failing_since = Some(now_ms());
        }
    }

    fn failover(&self, _from: &str, _to: &str) {
        self.rpc_failovers.inc();
    }
}

impl FollowerObserver for Metrics {
    fn head(&self, head: u64) {
        self.follower.lock().unwrap_or_else(PoisonError::into_inner).head = Some((head, now_ms()));
    }

    fn cursor(&self, number: u64, timestamp: Option<u64>) {
        let mut view = self.follower.lock().unwrap_or_else(PoisonError::into_inner);
        if view.cursor.is_none_or(|(at, _)| at != number) {
            view.cursor = Some((number, now_ms()));
        }
        // A commit that does not know its block's time keeps the previous one until the next
        // step reads the cursor's header: the age is then over-stated for one poll at most.
        if timestamp.is_some() {
            view.cursor_timestamp = timestamp;
        }
    }

    fn block_processed(&self, elapsed: Duration) {
        self.block_seconds.observe(elapsed.as_secs_f64());
    }

    fn database(&self, result: Result<(), &str>) {
        let mut view = self.follower.lock().unwrap_or_else(PoisonError::into_inner);
        let mut error = self.database_error.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(()) => {
                view.database_failing_since = None;
                *error = None;
            }
            Err(message) => {
                view.database_failing_since.get_or_insert_with(now_ms);
                *error = Some(message.to_owned());
            }
        }
    }
}

/// The values read at scrape time, encoded by [`Collector::encode`].
#[derive(Debug)]
struct Scrape {
    now: Millis,
    tallies: Tallies,
    follower: FollowerView,
    facts: Option<ChainFacts>,
    ready: bool,
    policy: guardian_core::incident::ResponsePolicy,
    channels: Vec<String>,
}

/// Every proposal status, so each has a series even at zero.
const PROPOSAL_STATUSES: [&str; 5] = ["pending", "executed", "stale", "skipped", "withdrawn"];

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

fn gauges<'a>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &'static str,
    values: impl IntoIterator<Item = (&'a str, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (value_label, value) in values {
        let labels = [(label, value_label)];
        ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A U256 amount as the float Prometheus stores (exact to its 53-bit mantissa).
fn wei(amount: alloy::primitives::U256) -> f64 {
    amount.to_string().parse().unwrap_or(f64::NAN)
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let now = self.now;
        let (version, commit) = build_info();
        let info = e.encode_descriptor(
            "guardian_build",
            "The version and git commit this guardian was built from",
            None,
            MetricType::Info,
        )?;
        prometheus_client::metrics::info::Info::new([("version", version), ("commit", commit)])
            .encode(info)?;
        gauge(
            e,
            "guardian_ready",
            "1 when /ready answers 200, 0 when it answers 503",
            f64::from(u8::from(self.ready)),
        )?;

        // The chain against the cursor.
        let cursor = self.tallies.cursor.map(|c| c.number);
        let head = self.follower.head.map(|(h, _)| h);
        if let Some(head) = head {
            gauge(
                e,
                "guardian_chain_head_block",
                "The chain head as the follower last read it",
                head as f64,
            )?;
        }
        if let Some(cursor) = cursor {
            gauge(
                e,
                "guardian_cursor_block",
                "The last block guardian processed and committed",
                cursor as f64,
            )?;
        }
        if let (Some(head), Some(cursor)) = (head, cursor) {
            gauge(
                e,
                "guardian_follower_lag_blocks",
                "Blocks between the chain head and the cursor",
                head.saturating_sub(cursor) as f64,
            )?;
        }
        if let Some(ts) = self.follower.cursor_timestamp {
            let age = (now / 1000).saturating_sub(ts);
            gauge(
                e,
                "guardian_last_block_age_seconds",
                "Seconds since the newest processed block was mined",
                age as f64,
            )?;
        }

        // Findings and incidents, from the records.
        let mut findings = e.encode_descriptor(
            "guardian_findings",
            "Findings recorded, by rule and severity (read from the findings table)",
            None,
            MetricType::Counter,
        )?;
        for (rule, severity, n) in &self.tallies.findings {
            let labels = [("rule", rule.as_str()), ("severity", severity.as_str())];
            ConstCounter::new(*n).encode(findings.encode_family(&labels)?)?;
        }
        let open = |severity: Severity| {
            self.tallies.open_incidents.iter().filter(move |i| i.incident.severity == severity)
        };
        gauges(
            e,
            "guardian_incidents_open",
            "Incidents not resolved, withdrawn or cancelled, by severity",
            "severity",
            Severity::ALL.map(|s| (s.as_str(), open(s).count() as f64)),
        )?;
        gauges(
            e,
            "guardian_incidents_overdue",
            "Open incidents past their response deadline and not contained, by severity",
            "severity",
            Severity::ALL.map(|s| {
                let overdue = open(s)
                    .filter(|i| {
                        !i.incident.state.is_contained()
                            && i.incident.deadline(&self.policy).is_some_and(|d| d <= now)
                    })
                    .count();
                (s.as_str(), overdue as f64)
            }),
        )?;
        gauges(
            e,
            "guardian_proposals",
            "Safe proposals by status",
            "status",
            PROPOSAL_STATUSES.map(|status| {
                let n =
                    self.tallies.proposals.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
                (status, n as f64)
            }),
        )?;

        // Notifications.
        gauge(
            e,
            "guardian_notifications_pending",
            "Notifications not yet delivered on every channel",
            self.tallies.pending_notifications as f64,
        )?;
        let since = self.tallies.channels.iter().filter_map(|(_, b)| b.failing_since).min();
        gauge(
            e,
            "guardian_notifications_failing_seconds",
            "Seconds the oldest undelivered notification has been failing on some channel (0: none fails)",
            since.map_or(0.0, |s| now.saturating_sub(s) as f64 / 1000.0),
        )?;
        let mut failures = e.encode_descriptor(
            "guardian_notification_failures",
            "Failed delivery attempts, by channel (read from the deliveries table)",
            None,
            MetricType::Counter,
        )?;
        for channel in &self.channels {
            let n = self
                .tallies
                .delivery_failures
                .iter()
                .find(|(c, _)| c == channel)
                .map_or(0, |(_, n)| *n);
            let labels = [("channel", channel.as_str())];
            ConstCounter::new(n).encode(failures.encode_family(&labels)?)?;
        }

        // The chain facts.
        let Some(facts) = &self.facts else { return Ok(()) };
        if let Some(executor) = &facts.executor {
            gauge(
                e,
                "guardian_executor_balance_wei",
                "What the executor account holds",
                wei(executor.balance_wei),
            )?;
            gauge(
                e,
                "guardian_executor_min_balance_wei",
                "What one execution costs at today's fees ([ready] execution_gas times the fee per gas)",
                wei(executor.min_balance_wei),
            )?;
        }
        let rollback: Vec<(&str, f64)> = facts
            .contracts
            .iter()
            .filter_map(|c| {
                c.rollback.as_ref().map(|r| (c.name.as_str(), f64::from(u8::from(r.verified))))
            })
            .collect();
        if !rollback.is_empty() {
            gauges(
                e,
                "guardian_rollback_ready",
                "1 when a previous version of the contract is recorded and its code verifies on chain",
                "contract",
                rollback,
            )?;
        }
        if let Some(backup) = &facts.last_backup {
            gauge(
                e,
                "guardian_last_backup_age_seconds",
                "Seconds since the newest backup of the managed configs was taken",
                now.saturating_sub(backup.taken_at) as f64 / 1000.0,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use guardian_operator::status::{ContractState, ExecutorState, RollbackReadiness};

    use super::*;

    const CONFIG: &str = r#"
[[rpc]]
url = "http://127.0.0.1:8545"

[webhook]
url_env = "HOOK"

[[contracts]]
name = "vault"
address = "0x1000000000000000000000000000000000000001"
"#;

    fn metrics() -> Metrics {
        let env = |name: &str| (name == "HOOK").then(|| "http://127.0.0.1:9/hook".to_owned());
        Metrics::new(&Config::parse(CONFIG, Path::new("/t/guardian.toml"), &env).expect("config"))
    }

    /// The sample lines of `text` (no comments), as `name{labels} value`.
    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn every_series_is_named_as_the_alerts_and_dashboard_expect() {
        let m = metrics();
        m.request("127.0.0.1:8545", RpcOutcome::Ok, Duration::from_millis(3));
        m.request("127.0.0.1:8545", RpcOutcome::Timeout, Duration::from_secs(10));
        m.failover("127.0.0.1:8545", "127.0.0.1:8546");
        m.head(12);
        m.cursor(10, Some(now_ms() / 1000 - 4));
        m.block_processed(Duration::from_millis(20));
        m.set_facts(ChainFacts {
            read_at: now_ms(),
            chain_id: 138,
            head: Some(12),
            endpoints: Vec::new(),
            executor: Some(ExecutorState {
                address: alloy::primitives::Address::ZERO,
                balance_wei: alloy::primitives::U256::from(5u64)
                    * alloy::primitives::U256::from(10u64)
                        .pow(alloy::primitives::U256::from(18u64)),
                min_balance_wei: alloy::primitives::U256::from(4_000_000_000_000_000u64),
            }),
            contracts: vec![ContractState {
                name: "vault".into(),
                address: alloy::primitives::Address::ZERO,
                paused: Some(false),
                rollback: Some(RollbackReadiness {
                    current: None,
                    previous: None,
                    verified: true,
                    problem: None,
                }),
            }],
            last_backup: Some(guardian_operator::status::BackupState {
                file: "x_20260101T000000Z.json".into(),
                taken: String::new(),
                taken_at: now_ms() - 90_000,
            }),
            problems: Vec::new(),
        });
        let tallies = Tallies {
            cursor: Some(guardian_store::BlockRef {
                number: 10,
                hash: alloy::primitives::B256::ZERO,
                parent_hash: alloy::primitives::B256::ZERO,
            }),
            findings: vec![("drain".into(), "critical".into(), 1)],
            proposals: vec![("pending".into(), 1)],
            delivery_failures: vec![("webhook".into(), 3)],
            pending_notifications: 2,
            ..Tallies::default()
        };
        let ready = Readiness { ready: true, reasons: Vec::new() };
        let text =
            m.render(&tallies, &ready, &Default::default(), Format::OpenMetrics).expect("renders");
        let plain = m.render(&tallies, &ready, &Default::default(), Format::Text).expect("renders");
        assert!(!plain.contains("# EOF") && plain.contains("guardian_findings_total{"), "{plain}");
        let lines = samples(&text);
        let value = |series: &str| -> Option<f64> {
            lines.iter().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        };
        for (series, expected) in [
            ("guardian_chain_head_block", 12.0),
            ("guardian_cursor_block", 10.0),
            ("guardian_follower_lag_blocks", 2.0),
            ("guardian_findings_total{rule=\"drain\",severity=\"critical\"}", 1.0),
            ("guardian_incidents_open{severity=\"critical\"}", 0.0),
            ("guardian_incidents_overdue{severity=\"high\"}", 0.0),
            ("guardian_proposals{status=\"pending\"}", 1.0),
            ("guardian_proposals{status=\"executed\"}", 0.0),
            ("guardian_rpc_requests_total{endpoint=\"127.0.0.1:8545\",outcome=\"ok\"}", 1.0),
            ("guardian_rpc_requests_total{endpoint=\"127.0.0.1:8545\",outcome=\"timeout\"}", 1.0),
            ("guardian_rpc_failovers_total", 1.0),
            ("guardian_rpc_request_seconds_count", 2.0),
            ("guardian_block_processing_seconds_count", 1.0),
            ("guardian_executor_balance_wei", 5e18),
            ("guardian_executor_min_balance_wei", 4e15),
            ("guardian_notifications_pending", 2.0),
            ("guardian_notification_failures_total{channel=\"webhook\"}", 3.0),
            ("guardian_notifications_failing_seconds", 0.0),
            ("guardian_ready", 1.0),
            ("guardian_rollback_ready{contract=\"vault\"}", 1.0),
            ("guardian_last_block_age_seconds", 4.0),
        ] {
            assert_eq!(value(series), Some(expected), "{series} in\n{text}");
        }
        assert!(
            value("guardian_last_backup_age_seconds")
                .is_some_and(|age| (90.0..95.0).contains(&age))
        );
        let prefixed = |p: &str| lines.iter().any(|l| l.starts_with(p));
        assert!(prefixed("guardian_build_info{version=\""), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
        assert!(text.ends_with("# EOF\n"));
    }
}
