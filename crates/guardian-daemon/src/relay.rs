//! Replicas acting as one: relay what this replica stored to its `[[replicas]]` peers, pull
//! what they hold, and watch whether they answer.
//!
//! One task per peer, each on its own database connection, so a dead or slow peer holds up
//! nothing else:
//! - every proposal stored here and every signature accepted here (the `relays` rows the store
//!   wrote in the same transaction) goes to the peer, in order, retried with doubling waits
//!   without limit; a signature the peer answers 404 for is preceded by its proposal again;
//! - at start, and whenever the peer answers again after being unreachable, its pending
//!   proposals and their signatures are pulled and verified here like a relay;
//! - its `/health` says its name (checked against the config) and its executor (for the
//!   sender rank and to name it when it executes).
//!
//! Nothing a peer says is trusted: proposals are checked against this replica's config and
//! chain ([`Multisig::accept_relayed`]), signatures against the Safe's owners.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};

use alloy::primitives::B256;
use eyre::{Result, eyre};
use guardian_core::proposal::ProposalKind;
use guardian_multisig::{Multisig, ProposalStatus, RelayedProposal};
use guardian_operator::peers::{Peer, Pushed, ReplicaState};
use guardian_store::{Relay, RelayBacklog, RelayItem, Store, now_ms};
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

/// How often a peer's `/health` is asked while it answers.
const HEALTH_EVERY: Duration = Duration::from_secs(5);
/// The longest wait between two attempts of a relay (or of a health check of a dead peer).
const RETRY_CAP: Duration = Duration::from_secs(30);
/// Each request to a peer.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// When nothing woke the task, look at the database this often: `guardian approve` on this
/// host writes relays from another process.
const FOREIGN_WRITES_EVERY: Duration = Duration::from_millis(250);
/// Before sending an execution, wait at most this for its signatures to reach the peers that
/// answer, so a replica dying mid-send leaves them able to finish.
const FLUSH_BEFORE_SEND: Duration = Duration::from_secs(2);

/// Whether each peer answered its last request.
#[derive(Debug, Default)]
pub struct Reachability(RwLock<BTreeMap<String, bool>>);

impl Reachability {
    fn set(&self, peer: &str, up: bool) -> Option<bool> {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(peer.to_owned(), up)
    }

    /// How `peer`'s last request went: `None` before the first.
    fn last(&self, peer: &str) -> Option<bool> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(peer).copied()
    }

    /// Whether `peer` failed its last request.
    fn down(&self, peer: &str) -> bool {
        self.last(peer) == Some(false)
    }
}

/// The relay tasks' handle: wake them, and wait for a proposal's relays before a send.
#[derive(Debug, Clone)]
pub struct Relays {
    multisig: Arc<Multisig>,
    peers: Vec<Peer>,
    wakes: Vec<Arc<Notify>>,
    reachability: Arc<Reachability>,
}

impl Relays {
    /// The peers as this daemon sees them (its `/status` and status page), without asking
    /// them: whether the relay task's last request reached each, the executor it pinned or
    /// learned, and the relays still owed (`backlog`, from the store).
    pub fn states(&self, backlog: &[RelayBacklog]) -> Vec<ReplicaState> {
        let learned = self.multisig.peer_executors();
        self.peers
            .iter()
            .map(|peer| {
                let owed = backlog.iter().find(|b| b.peer == peer.name);
                let last = self.reachability.last(&peer.name);
                let error = match (last, owed.and_then(|b| b.last_error.clone())) {
                    (Some(true), _) => None,
                    (_, Some(error)) => Some(error),
                    (Some(false), None) => Some("its last request failed".to_owned()),
                    (None, None) => Some("not reached yet".to_owned()),
                };
                ReplicaState {
                    name: peer.name.clone(),
                    api: peer.api.clone(),
                    reachable: last == Some(true),
                    replica: None,
                    executor: peer
                        .executor
                        .or_else(|| learned.iter().find(|(n, _)| *n == peer.name).map(|(_, a)| *a)),
                    error,
                    relays_pending: owed.map_or(0, |b| b.pending),
                    proposals: Vec::new(),
                }
            })
            .collect()
    }

    /// Wake every peer's task (a proposal or a signature was stored).
    pub fn wake(&self) {
        self.wakes.iter().for_each(|w| w.notify_one());
    }

    /// Wait (at most [`FLUSH_BEFORE_SEND`]) until every peer that answers has taken what is
    /// owed it for proposal `hash`. Never fails: a peer that is slow only delays the send by
    /// the bound, and one that is down is not waited for.
    pub async fn flush(&self, hash: B256) {
        self.wake();
        let deadline = tokio::time::Instant::now() + FLUSH_BEFORE_SEND;
        loop {
            // Every peer not known to be down (one not asked yet included).
            let owed = {
                let store = self.multisig.store();
                self.peers
                    .iter()
                    .filter(|p| !self.reachability.down(&p.name))
                    .any(|peer| store.relay_owed(&peer.name, hash).unwrap_or(false))
            };
            if !owed || tokio::time::Instant::now() >= deadline {
                if owed {
                    debug!(%hash, "sending before every peer took the signatures");
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Start one task per peer; they stop when `shutdown` flips.
pub fn spawn(
    db: PathBuf,
    multisig: Arc<Multisig>,
    peers: Vec<Peer>,
    wake_responder: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
) -> (Relays, Vec<tokio::task::JoinHandle<()>>) {
    let reachability = Arc::new(Reachability::default());
    let all = peers.clone();
    let mut wakes = Vec::new();
    let mut tasks = Vec::new();
    for peer in peers {
        let wake = Arc::new(Notify::new());
        wakes.push(wake.clone());
        let task = PeerTask {
            db: db.clone(),
            multisig: multisig.clone(),
            peer,
            wake,
            wake_responder: wake_responder.clone(),
            reachability: reachability.clone(),
        };
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move { task.run(stop).await }));
    }
    (Relays { multisig, peers: all, wakes, reachability }, tasks)
}

struct PeerTask {
    db: PathBuf,
    multisig: Arc<Multisig>,
    peer: Peer,
    wake: Arc<Notify>,
    wake_responder: Arc<Notify>,
    reachability: Arc<Reachability>,
}

fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(5)).min(RETRY_CAP)
}

fn later(wait: Duration) -> u64 {
    now_ms().saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
}

impl PeerTask {
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut store = match Store::open(&self.db) {
            Ok(store) => store,
            Err(error) => {
                warn!(peer = %self.peer.name, error = %format!("{error:#}"), "relays to this replica stopped: no database");
                return;
            }
        };
        let name = self.peer.name.clone();
        // Pulled since the peer last came up: it is pulled again whenever it answers after
        // being unreachable (or for the first time).
        let mut pulled = false;
        let mut health_at = tokio::time::Instant::now();
        let mut health_failures = 0u32;
        while !*shutdown.borrow() {
            if tokio::time::Instant::now() >= health_at {
                match self.check_health(&mut store).await {
                    Ok(()) => {
                        self.reachability.set(&name, true);
                        health_failures = 0;
                        health_at = tokio::time::Instant::now() + HEALTH_EVERY;
                        if !pulled {
                            info!(peer = %name, api = %self.peer.api, "replica answers: pulling its pending proposals");
                            pulled = match self.pull().await {
                                Ok(()) => true,
                                Err(error) => {
                                    warn!(peer = %name, error = %format!("{error:#}"), "pulling from the replica failed; retried when it answers again");
                                    false
                                }
                            };
                        }
                    }
                    Err(error) => {
                        self.unreachable(&error);
                        pulled = false;
                        health_failures += 1;
                        health_at = tokio::time::Instant::now() + backoff(health_failures);
                    }
                }
            }
            // What is due goes out whatever the last health check said: a peer that came back
            // takes it at once, and one still down only reschedules the rows.
            let mut wait = FOREIGN_WRITES_EVERY;
            match self.deliver_due(&mut store).await {
                Ok(0) => {}
                Ok(_) => {
                    self.reachability.set(&name, true);
                    if !pulled {
                        // It answers again: the health check, and the pull, now.
                        health_at = tokio::time::Instant::now();
                    }
                }
                Err(error) => {
                    debug!(peer = %name, error = %format!("{error:#}"), "relay failed");
                    self.unreachable(&error);
                    pulled = false;
                }
            }
            if let Ok(Some(at)) = store.next_relay_at(&name) {
                wait = wait.min(Duration::from_millis(at.saturating_sub(now_ms())));
            }
            let wait = wait.min(health_at.saturating_duration_since(tokio::time::Instant::now()));
            tokio::select! {
                _ = tokio::time::sleep(wait.max(Duration::from_millis(10))) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// The peer did not answer: said once when it goes down, not on every retry.
    fn unreachable(&self, error: &eyre::Report) {
        if self.reachability.set(&self.peer.name, false) != Some(false) {
            warn!(peer = %self.peer.name, error = %format!("{error:#}"), "replica unreachable; relays to it wait");
        }
    }

    /// Ask the peer's `/health`: its name must be the configured one, its chain and Safe
    /// ours; its executor is learned (unless pinned in the config, which it must match) and
    /// kept in `store`, so the sender rank holds while the peer is down after a restart.
    async fn check_health(&self, store: &mut Store) -> Result<()> {
        let health = self.peer.health().await?;
        let name = &self.peer.name;
        if let Some(reported) = &health.replica
            && reported != name
        {
            warn!(peer = %name, %reported, "the replica at this api calls itself another name: every replica's config must use the same names");
        }
        let safe = self.multisig.safe();
        if health.chain_id.is_some_and(|c| c != safe.chain_id())
            || health.safe.is_some_and(|s| s != safe.address())
        {
            return Err(eyre!(
                "replica {name} serves chain {:?} and Safe {:?}, not chain {} and Safe {}",
                health.chain_id,
                health.safe,
                safe.chain_id(),
                safe.address()
            ));
        }
        match (self.peer.executor, health.executor) {
            (Some(pinned), Some(reported)) if pinned != reported => warn!(
                peer = %name, %pinned, %reported,
                "the replica reports another executor than [[replicas]] executor: ranking with the configured one"
            ),
            (None, Some(reported))
                if !self
                    .multisig
                    .peer_executors()
                    .iter()
                    .any(|(n, a)| n == name && *a == reported) =>
            {
                info!(peer = %name, executor = %reported, "replica's executor learned");
                self.multisig.set_peer_executor(name, reported);
                store.set_meta(&format!("peer_executor:{name}"), &reported.to_string())?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Deliver what is due to the peer, in order; returns how many it answered. An error means
    /// the peer did not answer (the row is rescheduled); every answer is final for its row.
    async fn deliver_due(&self, store: &mut Store) -> Result<usize> {
        let name = &self.peer.name;
        let mut answered = 0;
        for relay in store.due_relays(name, now_ms(), 32)? {
            match self.deliver(&mut *store, &relay).await {
                Ok(outcome) => {
                    debug!(peer = %name, hash = %relay.hash, item = ?relay.item, %outcome, "relayed");
                    store.relay_done(relay.id, &outcome)?;
                    answered += 1;
                }
                Err(error) => {
                    let message = format!("{error:#}");
                    store.relay_failed(relay.id, &message, later(backoff(relay.attempts + 1)))?;
                    return Err(error);
                }
            }
        }
        Ok(answered)
    }

    async fn deliver(&self, store: &mut Store, relay: &Relay) -> Result<String> {
        let Some(proposal) = store.proposal(relay.hash)? else {
            return Ok("dropped: the proposal is gone here".to_owned());
        };
        if !matches!(proposal.kind, ProposalKind::Pause | ProposalKind::Unpause) {
            return Ok(format!(
                "not relayed: {} proposals are made on each host",
                proposal.kind.as_str()
            ));
        }
        let origin = self.multisig.name().unwrap_or_default().to_owned();
        let pushed = match relay.item {
            RelayItem::Proposal => {
                if proposal.status != ProposalStatus::Pending {
                    return Ok(format!("not relayed: {} here", proposal.status.as_str()));
                }
                let key = match proposal.incident_id {
                    Some(id) => store.incident(id)?.map(|i| i.incident.key),
                    None => None,
                };
                self.peer.push_proposal(&RelayedProposal::of(&proposal, key, &origin)).await?
            }
            RelayItem::Signature { owner } => {
                let signatures = store.proposal_signatures(relay.hash)?;
                let Some(signature) = signatures.into_iter().find(|s| s.owner == owner) else {
                    return Ok("dropped: the signature is gone here".to_owned());
                };
                let pushed = self
                    .peer
                    .push_signature(relay.hash, owner, &signature.signature, &origin)
                    .await?;
                if pushed == Pushed::Unknown {
                    // The peer lacks the proposal (it was down, or lost its disk): the proposal
                    // first, then this signature again.
                    store.relay_again(&self.peer.name, RelayItem::Proposal, relay.hash)?;
                    store.relay_again(&self.peer.name, relay.item, relay.hash)?;
                    return Ok("the replica lacks the proposal: relaying it first".to_owned());
                }
                pushed
            }
        };
        Ok(match pushed {
            Pushed::Taken { added: true } => "taken".to_owned(),
            Pushed::Taken { added: false } => "held already".to_owned(),
            Pushed::Unknown => "unknown route".to_owned(),
            Pushed::Refused(message) => {
                // A peer refusing after its checks is normal when the proposal moved on there
                // (executed, withdrawn); anything else is worth a look.
                info!(peer = %self.peer.name, hash = %relay.hash, %message, "the replica refused a relay");
                format!("refused: {message}")
            }
        })
    }

    /// Take the peer's pending proposals and their signatures, verified here.
    async fn pull(&self) -> Result<()> {
        let views = self.peer.proposals().await?;
        let mut pulled = 0usize;
        for view in views.into_iter().filter(|v| v.proposal.status == ProposalStatus::Pending) {
            let hash = view.proposal.safe_tx_hash;
            let detail = self.peer.proposal(hash).await?;
            let local = self.multisig.store().proposal(hash)?;
            if local.is_none() {
                let key = detail.incident.as_ref().and_then(|i| i.key.clone());
                let relayed = RelayedProposal::of(&detail.detail.proposal, key, &self.peer.name);
                match self.multisig.accept_relayed(&relayed).await {
                    Ok(_) => pulled += 1,
                    Err(guardian_multisig::RelayError::Other(error)) => return Err(error),
                    Err(refused) => {
                        info!(peer = %self.peer.name, %hash, reason = %refused, "not taking the replica's proposal");
                        continue;
                    }
                }
            } else if local.is_some_and(|p| p.status != ProposalStatus::Pending) {
                continue;
            }
            let have: Vec<_> = self
                .multisig
                .store()
                .proposal_signatures(hash)?
                .into_iter()
                .map(|s| s.owner)
                .collect();
            for signature in detail.detail.signatures.iter().filter(|s| !have.contains(&s.owner)) {
                match self
                    .multisig
                    .submit_signature(hash, signature.owner, &signature.signature)
                    .await
                {
                    Ok(_) => pulled += 1,
                    Err(error) => {
                        info!(peer = %self.peer.name, %hash, owner = %signature.owner, error = %error, "not taking the replica's signature")
                    }
                }
            }
        }
        if pulled > 0 {
            info!(peer = %self.peer.name, pulled, "pulled from the replica");
            self.wake_responder.notify_one();
        }
        Ok(())
    }
}

/// The peers' executors remembered from earlier runs, for `multisig` before any answers.
pub fn restore_executors(multisig: &Multisig, peers: &[Peer]) -> Result<()> {
    for peer in peers.iter().filter(|p| p.executor.is_none()) {
        let remembered = multisig.store().meta(&format!("peer_executor:{}", peer.name))?;
        if let Some(address) = remembered.and_then(|text| text.parse().ok()) {
            multisig.set_peer_executor(&peer.name, address);
        }
    }
    Ok(())
}
