//! The incident responder inside `guardian run`: it carries out the effects the incident
//! machine wrote to the outbox (propose the pause, execute it, roll the configs back), looks at
//! pending proposals (approvals, nonce consumed, executed by whom), and serves the HTTP API.
//!
//! Each outbox row is done on its own: one failing (an unfunded executor, a revert, a dead
//! endpoint) is retried with backoff and never holds up another. A row is marked done only
//! after its result was told to the incident, so a crash anywhere resumes it; every effect is
//! idempotent (the same safeTxHash, a rollback to the version before the paused one).

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use alloy::providers::DynProvider;
use alloy::{providers::Provider, signers::local::PrivateKeySigner};
use eyre::{Result, eyre};
use guardian_chain::{
    pause_module::{PauseError, PauseModule},
    safe::is_paused,
    sender::SendOptions,
};
use guardian_config::Config;
use guardian_core::{
    backup::VersionSelector,
    incident::{Attribution, Effect, Event, RecoveryStatus, RollbackStatus, same_cause},
};
use guardian_multisig::Multisig;
use guardian_operator::{Desk, api};
use guardian_rollback::{Rollback, RollbackSettings, SqliteLedger};
use guardian_store::{EffectKind, IncidentError, OutboxEffect, now_ms};
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

/// Longest wait before retrying a failed proposal or execution: the pause is urgent.
const SAFE_RETRY_CAP: Duration = Duration::from_secs(30);
/// Longest wait before retrying an immediate pause that failed for want of the node.
const PAUSE_NOW_RETRY_CAP: Duration = Duration::from_secs(2);
/// After this many attempts an immediate pause that keeps failing falls back to a proposal.
const PAUSE_NOW_ATTEMPTS: u32 = 3;
/// Longest wait before retrying a failed rollback.
const ROLLBACK_RETRY_CAP: Duration = Duration::from_secs(60);
/// A failed recovery check is asked again (health only: the restarts ran once) at most this often;
/// each failure is notified.
const RECOVERY_RETRY_CAP: Duration = Duration::from_secs(300);

/// The outbox rows the responder carries out, the immediate pause first.
const RESPONDER_EFFECTS: [EffectKind; 5] = [
    EffectKind::PauseNow,
    EffectKind::Propose,
    EffectKind::Execute,
    EffectKind::Rollback,
    EffectKind::Recovery,
];

/// When to retry after `attempts` failures: 1, 2, 4, … seconds up to `cap`.
pub fn retry_delay(attempts: u32, cap: Duration) -> Duration {
    Duration::from_secs(1u64.checked_shl(attempts.min(16)).unwrap_or(u64::MAX)).min(cap)
}

/// The pause module of `[safe.module]` and this replica's pauser key, or why there is none.
#[derive(Debug)]
pub struct ImmediatePause {
    module: Result<PauseModule, String>,
    pauser: Option<PrivateKeySigner>,
}

impl ImmediatePause {
    /// No module: every `pause_now` falls back to a Safe proposal, saying so.
    pub fn none() -> Self {
        Self {
            module: Err("no pause module is configured ([safe.module])".to_owned()),
            pauser: None,
        }
    }

    /// The module at `address`, pausing with `pauser`.
    pub async fn connect(
        provider: DynProvider,
        address: alloy::primitives::Address,
        pauser: Option<PrivateKeySigner>,
    ) -> Self {
        let module = PauseModule::connect(provider, address)
            .await
            .map_err(|e| format!("pause module {address} does not answer as one: {e:#}"));
        if let Err(why) = &module {
            warn!(%why, "Critical findings will fall back to Safe proposals");
        }
        Self { module, pauser }
    }
}

/// The responder of one replica, connected and ready to run.
#[derive(Debug)]
pub struct Pauser {
    multisig: Arc<Multisig>,
    provider: DynProvider,
    guardian_toml: PathBuf,
    wake: Arc<Notify>,
    immediate: ImmediatePause,
    /// The peers' relay tasks: an execution waits (briefly) for its signatures to reach them.
    relays: Option<crate::relay::Relays>,
    /// The last failure logged per outbox row or proposal, so a failure repeated on every
    /// poll is logged once.
    logged: BTreeMap<String, String>,
}

impl Pauser {
    /// A responder over `multisig`, rolling back the configs `guardian_toml`'s `[rollback]`
    /// manages; `wake` nudges it (a signature or a proposal arrived).
    pub fn new(multisig: Arc<Multisig>, guardian_toml: PathBuf, wake: Arc<Notify>) -> Self {
        let provider = multisig.provider().clone();
        let immediate = ImmediatePause::none();
        Self {
            multisig,
            provider,
            guardian_toml,
            wake,
            immediate,
            relays: None,
            logged: BTreeMap::new(),
        }
    }

    /// Offer each execution's signatures to the peers before sending it.
    pub fn with_relays(mut self, relays: crate::relay::Relays) -> Self {
        self.relays = Some(relays);
        self
    }

    /// The relay tasks' handle, when there are other replicas.
    pub fn relays(&self) -> Option<crate::relay::Relays> {
        self.relays.clone()
    }

    /// Pause `pause_now` incidents through this module.
    pub fn with_immediate_pause(mut self, immediate: ImmediatePause) -> Self {
        self.immediate = immediate;
        self
    }

    /// Connect to the Safe; refuses on a wrong chain, a missing key variable or a Safe that is
    /// not 1.4.1, so `guardian run` fails at start, not mid-incident.
    pub async fn start(
        config: &Config,
        provider: DynProvider,
        keys: crate::daemon::Keys,
        wake: Arc<Notify>,
    ) -> Result<Self> {
        use crate::daemon::KeySource;
        let executor = match keys.executor {
            KeySource::FromConfig => guardian_operator::executor_key(config)?,
            KeySource::Key(key) => Some(key),
        };
        let module = config.safe.as_ref().and_then(|s| s.module.as_ref());
        let immediate = match module {
            None => ImmediatePause::none(),
            Some(module) => {
                let pauser = match keys.pauser {
                    KeySource::FromConfig => guardian_operator::pauser_key(config)?,
                    KeySource::Key(key) => Some(key),
                };
                if pauser.is_none() {
                    warn!(
                        "no [safe.module] pauser_key_env: Critical findings fall back to Safe proposals on this replica"
                    );
                }
                ImmediatePause::connect(provider.clone(), module.address, pauser).await
            }
        };
        if executor.is_none() {
            warn!(
                "no [safe] executor_key_env: proposals are made and approvals collected, but this replica does not execute"
            );
        }
        // Rank k sends k × this after the threshold if the nonce has not moved: two block
        // times unless configured.
        let delay = config
            .replication
            .sender_delay
            .unwrap_or_else(|| config.ready.block_time.saturating_mul(2));
        let multisig = Arc::new(
            guardian_operator::connect(config, provider, executor).await?.with_sender_delay(delay),
        );
        Ok(Self::new(multisig, config.source.clone(), wake).with_immediate_pause(immediate))
    }

    /// The Safe service.
    pub fn multisig(&self) -> &Arc<Multisig> {
        &self.multisig
    }

    /// Run the responder and the HTTP API (on `listener`) until `shutdown` flips.
    pub async fn run(
        self,
        config: &Config,
        listener: tokio::net::TcpListener,
        shutdown: watch::Receiver<bool>,
        notify_wake: Arc<Notify>,
    ) -> Result<()> {
        let desk = Arc::new(Desk::over(self.multisig.clone()));
        let state = api::ApiState {
            desk,
            wake: self.wake.clone(),
            access: api::ApiAccess::from_config(&config.api),
        };
        let api_task = tokio::spawn(api::serve(listener, state, shutdown.clone()));
        self.respond(config, shutdown, notify_wake).await;
        match api_task.await {
            Ok(result) => result,
            Err(error) => Err(eyre!("HTTP API task failed: {error}")),
        }
    }

    /// Run the responder alone (the daemon serves the API with its other routes) until
    /// `shutdown` flips.
    pub async fn respond(
        mut self,
        config: &Config,
        mut shutdown: watch::Receiver<bool>,
        notify_wake: Arc<Notify>,
    ) {
        let interval = config.chain.poll_interval.max(Duration::from_millis(250));
        info!(safe = %self.multisig.safe().address(), "pause flow running");
        while !*shutdown.borrow() {
            if self.step().await {
                notify_wake.notify_one();
            }
            // A pass may have queued work (the approvals reached the threshold: execute now).
            if self.due_now() {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                // A signature or a proposal arrived: the peers are owed it too.
                _ = self.wake.notified() => {
                    if let Some(relays) = &self.relays {
                        relays.wake();
                    }
                }
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Whether an outbox row of the responder is due right now.
    fn due_now(&self) -> bool {
        let store = self.multisig.store();
        let now = now_ms();
        RESPONDER_EFFECTS
            .into_iter()
            .any(|kind| store.next_effect_at(kind).ok().flatten().is_some_and(|at| at <= now))
    }

    /// One pass: the due outbox rows, then a look at every pending proposal. Returns whether
    /// anything was done (so the notifier is woken).
    pub async fn step(&mut self) -> bool {
        let mut did = false;
        // The immediate pause first: nothing else matters while a Critical finding waits.
        for kind in RESPONDER_EFFECTS {
            let due = self.multisig.store().due_effects(kind, now_ms(), 32);
            let due = match due {
                Ok(due) => due,
                Err(error) => {
                    self.log_once("outbox".into(), format!("{error:#}"), "reading the outbox");
                    continue;
                }
            };
            for row in due {
                did = true;
                self.carry_out(&row).await;
            }
        }
        for (hash, outcome) in self.multisig.observe_all().await {
            match outcome {
                Ok(guardian_multisig::Observed::Executed { .. })
                | Ok(guardian_multisig::Observed::Stale)
                | Ok(guardian_multisig::Observed::UnpauseExecuted { .. }) => {
                    did = true;
                    self.logged.remove(&hash.to_string());
                }
                Ok(_) => {
                    self.logged.remove(&hash.to_string());
                }
                Err(error) => self.log_once(
                    hash.to_string(),
                    format!("{error:#}"),
                    "checking a pending proposal failed; will retry",
                ),
            }
        }
        did
    }

    async fn carry_out(&mut self, row: &OutboxEffect) {
        if let Effect::Execute { proposal } = &row.effect {
            // One sender at a time: rank k waits its turn, then sends only if the nonce has
            // not moved (checked by the execution itself).
            if let Err(left) = self.multisig.turn_to_send(*proposal) {
                let rank = self.multisig.sender_rank(*proposal);
                let note = format!(
                    "sender rank {rank}: waiting for the replicas ranked before this one (sends in {} ms if the Safe nonce has not moved)",
                    left.as_millis()
                );
                if !row.last_error.as_deref().is_some_and(|e| e.starts_with("sender rank")) {
                    info!(incident = row.incident_id, %proposal, rank, wait_ms = left.as_millis() as u64, "threshold met: waiting for this replica's turn to send");
                }
                let at =
                    now_ms().saturating_add(u64::try_from(left.as_millis()).unwrap_or(u64::MAX));
                if let Err(error) = self.multisig.store().effect_wait(row.id, &note, at) {
                    warn!(effect = %row.key, error = %format!("{error:#}"), "could not hold the execution");
                }
                return;
            }
            if let Some(relays) = &self.relays {
                relays.flush(*proposal).await;
            }
        }
        let (outcome, cap) = match &row.effect {
            Effect::PauseNow => (self.pause_now(row).await, PAUSE_NOW_RETRY_CAP),
            Effect::ProposePause | Effect::Execute { .. } => {
                (self.multisig.run_effect(row).await, SAFE_RETRY_CAP)
            }
            Effect::RunRollback { from } => (self.rollback(row, *from).await, ROLLBACK_RETRY_CAP),
            Effect::RunRecovery { restart } => {
                (self.recovery(row, *restart).await, RECOVERY_RETRY_CAP)
            }
            other => (Err(eyre!("not a responder effect: {other:?}")), SAFE_RETRY_CAP),
        };
        let key = format!("effect {}", row.id);
        let store = self.multisig.store();
        let recorded = match outcome {
            Ok(outcome) => {
                info!(incident = row.incident_id, effect = %row.key, %outcome, "done");
                drop(store);
                self.logged.remove(&key);
                self.multisig.store().effect_done(row.id, &outcome)
            }
            Err(error) => {
                let message = format!("{error:#}");
                let retry = retry_delay(row.attempts, cap);
                let result = store.effect_failed(
                    row.id,
                    &message,
                    now_ms().saturating_add(u64::try_from(retry.as_millis()).unwrap_or(u64::MAX)),
                );
                drop(store);
                self.log_once(key, message, "will retry");
                result
            }
        };
        if let Err(error) = recorded {
            warn!(effect = %row.key, error = %format!("{error:#}"), "could not record the outcome");
        }
    }

    /// Log `message` under `key` at WARN unless it is the same failure as last time (figures
    /// aside): a failure repeated on every poll is one line, not one a second.
    fn log_once(&mut self, key: String, message: String, what: &str) {
        let repeated = self.logged.get(&key).is_some_and(|last| same_cause(last, &message));
        if repeated {
            debug!(%key, error = %message, "{what}");
        } else {
            warn!(%key, error = %message, "{what}");
            self.logged.insert(key, message);
        }
    }

    /// Carry out a `RunRollback`: repoint the configs to the version before the paused one, on
    /// this host, whoever sent the pause. Idempotent under the write lock, so a rollback
    /// interrupted by a crash simply runs again.
    async fn rollback(
        &self,
        row: &OutboxEffect,
        from: alloy::primitives::Address,
    ) -> Result<String> {
        let id = row.incident_id;
        let incident = self
            .multisig
            .store()
            .incident(id)?
            .ok_or_else(|| eyre!("outbox row {} names missing incident #{id}", row.id))?;
        match incident.incident.rollback {
            RollbackStatus::Owed => self.tell(id, &Event::RollbackStarted)?,
            RollbackStatus::Running | RollbackStatus::Failed { .. } => {}
            RollbackStatus::NotOwed | RollbackStatus::Done { .. } => {
                return Ok(format!(
                    "dropped: incident #{id} owes no rollback ({})",
                    incident.incident.rollback.as_str()
                ));
            }
        }
        let contract = incident.incident.contract.clone();
        let result = async {
            let settings = RollbackSettings::load(&self.guardian_toml)?;
            let ledger = SqliteLedger::open(&settings.ledger_path)?;
            Rollback::new(&settings, &ledger)
                .run(&self.provider, &contract, &VersionSelector::Before(from))
                .await
                .map_err(|e| e.wrap_err(format!("rolling back the configs of {contract}")))
        }
        .await;
        match result {
            Ok(outcome) => {
                let undo = outcome.backup.as_ref().map(|b| b.stamp.to_string());
                let summary = outcome.plan.summary();
                self.tell(
                    id,
                    &Event::RollbackFinished { undo: undo.clone(), summary: summary.clone() },
                )?;
                Ok(match undo {
                    Some(undo) => format!("{summary}; undo with backup {undo}"),
                    None => format!("{summary}; nothing to write"),
                })
            }
            Err(error) => {
                self.tell(id, &Event::RollbackFailed { error: format!("{error:#}") })?;
                Err(error)
            }
        }
    }

    /// Carry out a `RunRecovery`: restart the services that read the repointed configs (once:
    /// a retry only checks again), then the health endpoints, the target's health view and the
    /// error rate. A failed check is told to the incident (which notifies) and retried.
    async fn recovery(&self, row: &OutboxEffect, restart: bool) -> Result<String> {
        let id = row.incident_id;
        let incident = self
            .multisig
            .store()
            .incident(id)?
            .ok_or_else(|| eyre!("outbox row {} names missing incident #{id}", row.id))?;
        if !matches!(
            incident.incident.recovery,
            RecoveryStatus::Owed | RecoveryStatus::Failed { .. }
        ) {
            return Ok(format!(
                "dropped: incident #{id} owes no recovery check ({})",
                incident.incident.recovery.as_str()
            ));
        }
        let contract = incident.incident.contract.clone();
        let undo = match &incident.incident.rollback {
            RollbackStatus::Done { undo } => undo.clone(),
            _ => None,
        };
        let settings = RollbackSettings::load(&self.guardian_toml)?;
        let ledger = SqliteLedger::open(&settings.ledger_path)?;
        let plan = match Rollback::new(&settings, &ledger)
            .plan(&self.provider, &contract, &VersionSelector::Before(incident.incident.address))
            .await
        {
            Ok(plan) => plan,
            Err(error) => {
                // The target no longer checks out (no code, its health view false): a failed
                // recovery the operators hear about, not a silent retry.
                let report = format!("the rollback target of {contract} failed: {error:#}");
                self.tell(id, &Event::RecoveryChecked { passed: false, report: report.clone() })?;
                return Err(eyre!(report));
            }
        };
        let health_call = settings.contracts.get(&contract).and_then(|c| c.health_call.clone());
        let label = format!("incident-{id}");
        let configs = settings
            .contracts
            .get(&contract)
            .map(|c| c.keys.iter().map(|k| k.config.clone()).collect())
            .unwrap_or_default();
        let target = guardian_rollback::RecoveryTarget {
            configs,
            address: Some(plan.target.address),
            health_call: health_call.as_deref(),
            restart: restart && row.attempts == 0,
            from_block: self.provider.get_block_number().await?,
            label: &label,
            undo,
        };
        let checks = guardian_rollback::run_recovery(&settings, &self.provider, &target).await;
        let report = checks.to_string();
        let passed = checks.passed();
        self.tell(id, &Event::RecoveryChecked { passed, report: report.clone() })?;
        if passed {
            info!(incident = id, %report, "recovery verified");
            Ok(report)
        } else {
            Err(eyre!("recovery check failed: {report}"))
        }
    }

    /// Carry out a `PauseNow`: `pause(target)` through the module from the pauser key,
    /// simulated first, then tell the incident what was sent and that `paused()` holds. When
    /// the module cannot (absent, disabled, the target not listed, the simulation reverts), the
    /// incident is told why and falls back at once to a Safe proposal.
    async fn pause_now(&self, row: &OutboxEffect) -> Result<String> {
        let id = row.incident_id;
        let incident = self
            .multisig
            .store()
            .incident(id)?
            .ok_or_else(|| eyre!("outbox row {} names missing incident #{id}", row.id))?;
        let target = incident.incident.address;
        // Sent before a restart, never seen mined: mined since, or to be sent again.
        let resumed = match (incident.incident.module_tx, &incident.incident.execution) {
            (Some(tx), None) if !incident.incident.pause_now_requested => Some(tx),
            _ => None,
        };
        if !incident.incident.pause_now_requested && resumed.is_none() {
            return Ok(format!("dropped: incident #{id} no longer asks for it"));
        }
        if let Some(tx) = resumed
            && let Some(receipt) = self.provider.get_transaction_receipt(tx).await?
            && receipt.status()
        {
            let done = self.module_pause_mined(id, target, &receipt).await?;
            info!(incident = id, %tx, "the pause sent before the restart was mined");
            return Ok(format!("{done}, sent before a restart"));
        }
        let unavailable = |reason: String| -> Result<String> {
            warn!(incident = id, %reason, "immediate pause unavailable; proposing through the Safe");
            self.tell(id, &Event::ModulePauseUnavailable { reason: reason.clone() })?;
            Ok(format!("fell back to a Safe proposal: {reason}"))
        };
        let module = match &self.immediate.module {
            Ok(module) => module,
            Err(why) => return unavailable(why.clone()),
        };
        let Some(pauser) = &self.immediate.pauser else {
            return unavailable(
                "this replica has no pauser key ([safe.module] pauser_key_env)".to_owned(),
            );
        };
        // Each hash the node accepts is recorded as sent at once, before it is mined.
        let (on_sent, mut sent) = tokio::sync::mpsc::unbounded_channel();
        let options = SendOptions {
            poll: Duration::from_millis(50),
            replace_after: Duration::from_secs(6),
            min_tip: self.outbid(&incident.incident).await,
            on_sent: Some(on_sent),
            ..SendOptions::default()
        };
        let pausing = async move {
            let outcome = module.pause(pauser, target, &options).await;
            drop(options);
            outcome
        };
        let recording = async {
            while let Some(tx) = sent.recv().await {
                if let Err(error) = self.tell(id, &Event::ModulePauseSent { tx }) {
                    warn!(incident = id, %tx, error = %format!("{error:#}"), "recording the sent pause failed");
                }
            }
        };
        let (outcome, ()) = tokio::join!(pausing, recording);
        match outcome {
            Ok(receipt) => {
                let done = self.module_pause_mined(id, target, &receipt).await?;
                info!(incident = id, tx = %receipt.transaction_hash, "paused at once through the module");
                Ok(done)
            }
            Err(PauseError::AlreadyPaused { .. }) => {
                let block = self.provider.get_block_number().await?;
                self.tell(id, &Event::AlreadyPaused { block })?;
                Ok("already paused".to_owned())
            }
            // The node failed, not the module: try again shortly, then give up on it.
            Err(PauseError::Other(error)) if row.attempts + 1 < PAUSE_NOW_ATTEMPTS => Err(error),
            Err(error) => unavailable(error.to_string()),
        }
    }

    /// Tell incident `id` that its module pause was mined in `receipt` (attributed by the mined
    /// transaction's sender), then that `paused()` holds on `target`.
    async fn module_pause_mined(
        &self,
        id: i64,
        target: alloy::primitives::Address,
        receipt: &alloy::rpc::types::TransactionReceipt,
    ) -> Result<String> {
        let (tx, block) = (receipt.transaction_hash, receipt.block_number.unwrap_or_default());
        let execution = Event::ExecutionSeen {
            proposal: None,
            tx,
            sender: receipt.from,
            block,
            by: Attribution::ThisReplica,
        };
        self.tell(id, &execution)?;
        if is_paused(&self.provider, target).await? {
            self.tell(id, &Event::PauseVerified { block })?;
            self.multisig.record_impact(id, block).await;
        }
        Ok(format!("paused through the module in {tx} (block {block})"))
    }

    /// The priority fee that orders this incident's pause before the pending transaction its
    /// predicted finding came from (`None`: nothing to outbid).
    async fn outbid(&self, incident: &guardian_core::incident::Incident) -> Option<u128> {
        let ids: Vec<i64> = incident.findings.keys().copied().collect();
        let pending = {
            let store = self.multisig.store();
            ids.iter()
                .filter_map(|id| store.finding(*id).ok().flatten())
                .find_map(|f| f.finding.evidence.predicted_from)
        }?;
        let tx = self.provider.get_transaction_by_hash(pending).await.ok().flatten()?;
        let theirs = alloy::consensus::Transaction::max_priority_fee_per_gas(&tx)
            .unwrap_or_else(|| alloy::consensus::Transaction::max_fee_per_gas(&tx));
        // Above theirs by a tenth and a gwei: ordered first in a pool sorted by fees.
        Some(theirs.saturating_add(theirs / 10).saturating_add(1_000_000_000))
    }

    fn tell(&self, id: i64, event: &Event) -> Result<()> {
        match self.multisig.store().apply(id, event) {
            Ok(_) => Ok(()),
            Err(IncidentError::Refused(refused)) => {
                debug!(incident = id, event = event.name(), %refused, "the incident did not take the event");
                Ok(())
            }
            Err(e) => Err(eyre!(e)),
        }
    }
}
