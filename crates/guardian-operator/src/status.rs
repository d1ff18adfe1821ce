//! One screen of where guardian stands: `guardian status`, `GET /status` and the status page
//! (`GET /`) all show this [`Status`].
//!
//! Two halves: [`ChainFacts`], what the node says (head, each endpoint, the executor's balance
//! against one execution's cost, `paused()` of each contract, the version each would roll back
//! to and whether its code verifies, the newest backup), read by [`probe`]; and what the
//! database says (cursor, open incidents with their deadlines and timelines, pending
//! proposals with approvals x/y, notifications per channel), which [`Desk::status`] adds.
//! The daemon probes periodically and keeps the last facts (its metrics and readiness use the
//! same ones); the CLI probes once.

use std::path::Path;

use alloy::{
    primitives::{Address, U256},
    providers::{DynProvider, Provider},
};
use eyre::Result;
use guardian_config::Config;
use guardian_core::{backup::BackupName, incident::Millis};
use guardian_store::{NotificationBacklog, now_ms};
use serde::{Deserialize, Serialize};

use crate::desk::{Desk, IncidentSummary, TimelineEntry, utc};

/// How an endpoint is doing, as its last requests went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointHealth {
    /// Its last request was answered.
    Ok,
    /// Its last request failed or timed out.
    Failing,
    /// Nothing was asked of it yet.
    Unknown,
}

impl EndpointHealth {
    /// `ok`, `failing` or `unknown`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failing => "failing",
            Self::Unknown => "unknown",
        }
    }
}

/// One RPC endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointState {
    /// `scheme://host:port`: never the path or query, which may hold a key.
    pub endpoint: String,
    /// Whether requests go to it now.
    pub current: bool,
    /// How it is doing.
    pub health: EndpointHealth,
    /// Its head, when it was asked.
    pub head: Option<u64>,
    /// Its last failure (scrubbed).
    pub last_error: Option<String>,
    /// Since when it has been failing.
    pub failing_since: Option<Millis>,
}

/// The account that sends `execTransaction`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorState {
    /// Its address.
    pub address: Address,
    /// What it holds (wei).
    pub balance_wei: U256,
    /// What one execution costs at today's fees: `[ready] execution_gas` × the fee per gas a
    /// first attempt would offer (wei).
    pub min_balance_wei: U256,
}

impl ExecutorState {
    /// Whether it can pay for one execution.
    pub fn can_execute(&self) -> bool {
        self.balance_wei >= self.min_balance_wei
    }
}

/// A recorded version of a contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRef {
    /// Its label (`v1`, `2026-01-release`).
    pub label: String,
    /// Its address.
    pub address: Address,
}

/// Whether a contract can be rolled back after its pause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackReadiness {
    /// The recorded version at the watched address.
    pub current: Option<VersionRef>,
    /// The version a rollback after the pause would repoint the configs to.
    pub previous: Option<VersionRef>,
    /// `previous` is deployed as recorded: code present, runtime code hash equal, health view
    /// (if configured) true.
    pub verified: bool,
    /// Why not, when not.
    pub problem: Option<String>,
}

/// One watched contract on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractState {
    /// Its configured name.
    pub name: String,
    /// Its address.
    pub address: Address,
    /// `paused()`, when it answers.
    pub paused: Option<bool>,
    /// When it is rolled back after a pause (`on_pause = "rollback"`) or has
    /// `[rollback.contracts.NAME]`: whether that can be done.
    pub rollback: Option<RollbackReadiness>,
}

/// The newest backup of the managed configs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupState {
    /// Its file name.
    pub file: String,
    /// When it was taken (UTC).
    pub taken: String,
    /// Unix ms.
    pub taken_at: Millis,
}

/// What the node says, read at `read_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainFacts {
    /// When (unix ms).
    pub read_at: Millis,
    /// The chain id guardian is configured for.
    pub chain_id: u64,
    /// The chain head.
    pub head: Option<u64>,
    /// Each endpoint, in configured order.
    pub endpoints: Vec<EndpointState>,
    /// The executor, when this replica has one.
    pub executor: Option<ExecutorState>,
    /// Each watched contract.
    pub contracts: Vec<ContractState>,
    /// The newest backup, when `[rollback]` is configured and one exists.
    pub last_backup: Option<BackupState>,
    /// What could not be read, in words.
    pub problems: Vec<String>,
}

/// Why guardian is not ready (one of `/ready`'s reasons).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotReady {
    /// Which check: `follower_stalled`, `rpc_failing`, `database_failing`,
    /// `executor_balance_low`, `notifications_failing`.
    pub check: String,
    /// In words, with the figures.
    pub detail: String,
}

/// `/ready`: ready, or the reasons it is not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// Ready.
    pub ready: bool,
    /// Why not.
    pub reasons: Vec<NotReady>,
}

/// One open incident on the status screen.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenIncident {
    /// Its summary line (state, severity, deadline, pending approvals).
    #[serde(flatten)]
    pub summary: IncidentSummary,
    /// Seconds since it opened.
    pub age_seconds: u64,
    /// Every transition, oldest first.
    pub timeline: Vec<TimelineEntry>,
}

/// A pause (or unpause) proposal waiting for owners.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingProposal {
    /// Its safeTxHash.
    pub safe_tx_hash: alloy::primitives::B256,
    /// `pause` or `unpause`.
    pub kind: String,
    /// The contract.
    pub contract: String,
    /// The Safe nonce.
    pub nonce: String,
    /// Its incident.
    pub incident: Option<i64>,
    /// Approvals last counted.
    pub approvals: Option<u64>,
    /// What the Safe needs.
    pub threshold: Option<u64>,
    /// The exact command owners run.
    pub approve_command: String,
    /// Its approvals on each other replica (`[[replicas]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<crate::peers::ReplicaApprovals>,
}

/// Notifications on one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelBacklog {
    /// The channel.
    pub channel: String,
    /// Its backlog.
    #[serde(flatten)]
    pub backlog: NotificationBacklog,
}

/// Notifications not delivered yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationsStatus {
    /// Not delivered everywhere yet.
    pub pending: u64,
    /// Failing on some channel.
    pub failing: u64,
    /// Since when the oldest failing one has been failing (UTC).
    pub failing_since: Option<String>,
    /// Per configured channel.
    pub channels: Vec<ChannelBacklog>,
}

/// The chain against the cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowStatus {
    /// The chain head.
    pub head: Option<u64>,
    /// The last block guardian processed.
    pub cursor: Option<u64>,
    /// How far behind.
    pub lag: Option<u64>,
}

/// Everything on one screen.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// When it was assembled (UTC).
    pub at: String,
    /// The chain id.
    pub chain_id: u64,
    /// When the chain facts were read (UTC).
    pub chain_read: String,
    /// Head, cursor, lag.
    pub follow: FollowStatus,
    /// Readiness, when the daemon tells it.
    pub ready: Option<Readiness>,
    /// Each endpoint.
    pub endpoints: Vec<EndpointState>,
    /// Open incidents, newest first.
    pub incidents: Vec<OpenIncident>,
    /// Proposals waiting for owners.
    pub proposals: Vec<PendingProposal>,
    /// The executor.
    pub executor: Option<ExecutorState>,
    /// Each watched contract.
    pub contracts: Vec<ContractState>,
    /// The newest backup.
    pub last_backup: Option<BackupState>,
    /// Seconds since the newest backup was taken.
    pub last_backup_age_seconds: Option<u64>,
    /// Notifications.
    pub notifications: NotificationsStatus,
    /// What could not be read.
    pub problems: Vec<String>,
    /// The other replicas (`[[replicas]]`): reachable or not, and what this one owes them.
    #[serde(default)]
    pub replicas: Vec<crate::peers::ReplicaState>,
}

impl Desk {
    /// The executor address the daemon on this host recorded at its start, if it has one.
    pub fn recorded_executor(&self) -> Result<Option<Address>> {
        let recorded = self.store().meta("executor")?;
        Ok(recorded.filter(|a| !a.is_empty()).and_then(|a| a.parse().ok()))
    }

    /// The status screen: `facts` from the node, the rest from the database. `channels` are
    /// the configured notification channels; `ready` is the daemon's readiness, if known.
    pub fn status(
        &self,
        facts: &ChainFacts,
        channels: &[String],
        ready: Option<Readiness>,
    ) -> Result<Status> {
        let now = now_ms();
        let store = self.store();
        let cursor = store.cursor()?.map(|c| c.number);
        let backlog = store.notification_backlog()?;
        let per_channel = store.channel_backlog(channels)?;
        drop(store);
        let mut incidents = Vec::new();
        for summary in self.incidents(true)? {
            let view = self.incident(summary.id).map_err(|e| eyre::eyre!(e))?;
            let opened_at = view.incident.opened_at;
            incidents.push(OpenIncident {
                summary,
                age_seconds: now.saturating_sub(opened_at) / 1000,
                timeline: view.timeline,
            });
        }
        let proposals = self
            .proposals()?
            .into_iter()
            .filter(|p| p.proposal.status == guardian_multisig::ProposalStatus::Pending)
            .map(|p| PendingProposal {
                safe_tx_hash: p.proposal.safe_tx_hash,
                kind: p.proposal.kind.as_str().to_owned(),
                contract: p.proposal.contract.clone(),
                nonce: p.proposal.nonce.to_string(),
                incident: p.proposal.incident_id,
                approvals: p.approvals,
                threshold: p.threshold,
                approve_command: p
                    .approve_command
                    .clone()
                    .unwrap_or_else(|| format!("guardian approve {}", p.proposal.safe_tx_hash)),
                replicas: Vec::new(),
            })
            .collect();
        let head = facts.head;
        Ok(Status {
            at: utc(now),
            chain_id: facts.chain_id,
            chain_read: utc(facts.read_at),
            follow: FollowStatus {
                head,
                cursor,
                lag: head.zip(cursor).map(|(h, c)| h.saturating_sub(c)),
            },
            ready,
            endpoints: facts.endpoints.clone(),
            incidents,
            proposals,
            executor: facts.executor.clone(),
            contracts: facts.contracts.clone(),
            last_backup_age_seconds: facts
                .last_backup
                .as_ref()
                .map(|b| now.saturating_sub(b.taken_at) / 1000),
            last_backup: facts.last_backup.clone(),
            notifications: NotificationsStatus {
                pending: backlog.pending,
                failing: backlog.failing,
                failing_since: backlog.failing_since.map(utc),
                channels: per_channel
                    .into_iter()
                    .map(|(channel, backlog)| ChannelBacklog { channel, backlog })
                    .collect(),
            },
            problems: facts.problems.clone(),
            replicas: Vec::new(),
        })
    }
}

/// Read the chain facts: the head, the executor's balance against one execution's cost,
/// `paused()` of each watched contract, each one's rollback target (checked on chain), the
/// newest backup. `endpoints` are the endpoints' states as the caller knows them (the daemon's
/// request outcomes, or the CLI's probe of each). Never fails: what cannot be read is left
/// out and said in `problems`.
pub async fn probe(
    config: &Config,
    provider: &DynProvider,
    executor: Option<Address>,
    endpoints: Vec<EndpointState>,
) -> ChainFacts {
    let mut problems = Vec::new();
    let head = match provider.get_block_number().await {
        Ok(head) => Some(head),
        Err(e) => {
            problems.push(format!("chain head: {e}"));
            None
        }
    };
    let executor = match executor {
        Some(address) => {
            match executor_state(provider, address, config.ready.execution_gas).await {
                Ok(state) => Some(state),
                Err(e) => {
                    problems.push(format!("executor {address}: {e:#}"));
                    None
                }
            }
        }
        None => None,
    };
    let settings = match &config.rollback {
        Some(rollback) => {
            let base = config.source.parent().unwrap_or(Path::new("."));
            match rollback.clone().resolve(base) {
                Ok(settings) => Some(settings),
                Err(e) => {
                    problems.push(format!("[rollback]: {e:#}"));
                    None
                }
            }
        }
        None => None,
    };
    let mut contracts = Vec::with_capacity(config.contracts.len());
    for contract in &config.contracts {
        let paused = match guardian_chain::safe::is_paused(provider, contract.address).await {
            Ok(paused) => Some(paused),
            Err(e) => {
                problems.push(format!("{}: {e:#}", contract.name));
                None
            }
        };
        let rollback = match &settings {
            Some(settings)
                if contract.policy.rollback_after_pause
                    || settings.contracts.contains_key(&contract.name) =>
            {
                Some(rollback_readiness(provider, settings, &contract.name, contract.address).await)
            }
            None if contract.policy.rollback_after_pause => Some(RollbackReadiness {
                current: None,
                previous: None,
                verified: false,
                problem: Some("on_pause = \"rollback\" but there is no [rollback] table".into()),
            }),
            _ => None,
        };
        contracts.push(ContractState {
            name: contract.name.clone(),
            address: contract.address,
            paused,
            rollback,
        });
    }
    let last_backup = match &settings {
        Some(settings) => match newest_backup(&settings.backup_dir) {
            Ok(backup) => backup,
            Err(e) => {
                problems.push(format!("backups: {e:#}"));
                None
            }
        },
        None => None,
    };
    ChainFacts {
        read_at: now_ms(),
        chain_id: config.chain.id,
        head,
        endpoints,
        executor,
        contracts,
        last_backup,
        problems,
    }
}

async fn executor_state(
    provider: &DynProvider,
    address: Address,
    execution_gas: u64,
) -> Result<ExecutorState> {
    let balance_wei = provider.get_balance(address).await?;
    let per_gas = guardian_chain::sender::max_fee_per_gas(provider).await?;
    let min_balance_wei = U256::from(per_gas).saturating_mul(U256::from(execution_gas));
    Ok(ExecutorState { address, balance_wei, min_balance_wei })
}

/// The rollback that follows a pause of `address` (the version just older than the one
/// there), and whether its target verifies on chain.
async fn rollback_readiness(
    provider: &DynProvider,
    settings: &guardian_rollback::RollbackSettings,
    contract: &str,
    address: Address,
) -> RollbackReadiness {
    let not = |current, problem: String| RollbackReadiness {
        current,
        previous: None,
        verified: false,
        problem: Some(problem),
    };
    let book = match guardian_rollback::VersionBook::load(&settings.versions_path) {
        Ok(book) => book,
        Err(e) => return not(None, format!("{e:#}")),
    };
    let history = book.contracts.get(contract).map(Vec::as_slice).unwrap_or_default();
    let Some(position) = history.iter().position(|v| v.address == address) else {
        return not(
            None,
            format!(
                "the watched address {address} is not a recorded version of {contract} \
                 (`guardian versions add {contract} ...`)"
            ),
        );
    };
    let at = |i: usize| {
        history.get(i).map(|v| VersionRef { label: v.label.clone(), address: v.address })
    };
    let current = at(position);
    let Some(previous) = history.get(position + 1) else {
        return not(
            current,
            format!("no version of {contract} older than the watched one is recorded"),
        );
    };
    let health = settings.contracts.get(contract).and_then(|c| c.health_call.as_deref());
    let checked =
        guardian_rollback::rollback::check_target(provider, contract, previous, health).await;
    RollbackReadiness {
        current,
        previous: at(position + 1),
        verified: checked.is_ok(),
        problem: checked.err().map(|e| format!("{e:#}")),
    }
}

/// The newest file in `dir` named like a backup (`<config>_<stamp>.json`).
fn newest_backup(dir: &Path) -> Result<Option<BackupState>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(eyre::eyre!("listing {}: {e}", dir.display())),
    };
    let newest = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            BackupName::parse(&file).map(|name| (name, file))
        })
        .max_by(|a, b| a.0.cmp(&b.0));
    Ok(newest.map(|(name, file)| {
        let taken_at = u64::try_from(name.stamp.time().as_millisecond()).unwrap_or_default();
        BackupState { file, taken: utc(taken_at), taken_at }
    }))
}
