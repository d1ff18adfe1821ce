//! What every scenario shares: the check list (steps depend on each other, so a failed step
//! names itself in every later one), the timeline and latencies, and the steps incidents have in
//! common: wait for the finding, then pause through the Safe with the operators' approvals.

use alloy::{
    primitives::{Address, B256, U256},
    providers::Provider,
    signers::local::PrivateKeySigner,
};
use eyre::{Result, bail, ensure, eyre};
use guardian_chain::safe::is_paused;
use guardian_core::{proposal::ProposalKind, severity::Severity};
use guardian_multisig::{Proposal, ProposalStatus};
use guardian_store::StoredFinding;

use crate::{
    Options,
    report::{Check, Event, Latencies, ScenarioReport},
    stage::{Clock, Operator, Stage, poll},
};

/// The check list of one scenario. Every step is planned up front; steps depend on each other,
/// so once one fails, the planned steps never recorded are reported as not reached, naming the
/// step that did not happen.
#[derive(Debug, Default)]
pub(crate) struct Checklist {
    plan: Vec<String>,
    checks: Vec<Check>,
    blocked_by: Option<String>,
}

impl Checklist {
    /// A check list that expects `plan`, in order.
    pub(crate) fn new<S: Into<String>>(plan: impl IntoIterator<Item = S>) -> Self {
        Self { plan: plan.into_iter().map(Into::into).collect(), ..Self::default() }
    }

    /// Plan more steps (known only once the run has started, such as each approval).
    pub(crate) fn plan<S: Into<String>>(&mut self, steps: impl IntoIterator<Item = S>) {
        self.plan.extend(steps.into_iter().map(Into::into));
    }

    pub(crate) fn pass(&mut self, name: &str, detail: impl Into<String>) {
        self.checks.push(Check::pass(name, detail));
    }

    /// Record a failed step; every later step is blocked by it.
    pub(crate) fn fail(&mut self, name: &str, detail: impl Into<String>) {
        self.checks.push(Check::fail(name, detail));
        self.blocked_by.get_or_insert_with(|| name.to_owned());
    }

    /// Record step `name`: on success its detail, handing back the value; on failure the error.
    pub(crate) fn step<T>(&mut self, name: &str, outcome: Result<(T, String)>) -> Option<T> {
        match outcome {
            Ok((value, detail)) => {
                self.pass(name, detail);
                Some(value)
            }
            Err(error) => {
                self.fail(name, format!("{error:#}"));
                None
            }
        }
    }

    /// Record an independent check (one whose failure blocks nothing after it).
    pub(crate) fn record(&mut self, name: &str, outcome: Result<String>) {
        match outcome {
            Ok(detail) => self.pass(name, detail),
            Err(error) => self.checks.push(Check::fail(name, format!("{error:#}"))),
        }
    }

    /// The checks, with every planned step that was never recorded marked as not reached.
    pub(crate) fn into_checks(mut self) -> Vec<Check> {
        let cause = self.blocked_by.clone().unwrap_or_else(|| "an earlier step".into());
        for name in std::mem::take(&mut self.plan) {
            if !self.checks.iter().any(|c| c.name == name) {
                self.checks
                    .push(Check::fail(&name, format!("not reached: \"{cause}\" did not happen")));
            }
        }
        self.checks
    }
}

/// A scenario in progress: its check list, timeline and latencies.
#[derive(Debug, Default)]
pub(crate) struct Drill {
    pub(crate) list: Checklist,
    pub(crate) timeline: Vec<Event>,
    pub(crate) latencies: Latencies,
    /// The incident the daemon opened for the anomaly, and the scenario's clock.
    pub(crate) incident: Option<(i64, Clock)>,
    /// The value the anomaly moved out before the pause.
    pub(crate) wei_lost: Option<U256>,
}

impl Drill {
    pub(crate) fn new<S: Into<String>>(plan: impl IntoIterator<Item = S>) -> Self {
        Self { list: Checklist::new(plan), ..Self::default() }
    }

    /// Put `label` on the timeline at `block`, `clock.ms()` after the anomaly.
    pub(crate) fn mark(&mut self, clock: &Clock, label: impl Into<String>, block: u64) {
        self.timeline.push(clock.event(label, block));
    }

    /// Mark the anomaly itself (block and ms zero of the timeline).
    pub(crate) fn anomaly(&mut self, clock: &Clock, label: impl Into<String>) {
        self.timeline.push(Event { label: label.into(), block: clock.block, ms: 0 });
    }

    /// The report: the check list, the drill's timeline and, when the daemon opened an
    /// incident, every event of that incident's lifecycle placed on the same clock.
    pub(crate) fn report(mut self, stage: &Stage, scenario: &str) -> ScenarioReport {
        let (mut incident_id, mut postmortem, mut audit) = (None, None, None);
        if let Some((id, clock)) = self.incident {
            incident_id = Some(id);
            // The incident's events carry wall-clock times; the anomaly happened clock.ms() ago.
            let t0 = guardian_store::now_ms().saturating_sub(clock.ms());
            let (kinds, built) = match stage.incident_record(id) {
                Ok((events, postmortem)) => {
                    let kinds: Vec<String> =
                        events.iter().map(|e| e.kind.as_str().to_owned()).collect();
                    self.timeline.extend(events.into_iter().map(|e| Event {
                        label: format!("incident #{id}: {} ({})", e.kind.as_str(), e.to.as_str()),
                        block: e.block.unwrap_or(clock.block),
                        ms: e.at.saturating_sub(t0),
                    }));
                    (Some(kinds), postmortem)
                }
                Err(error) => {
                    let unread = eyre::eyre!("{error:#}");
                    self.list.record("incident timeline read", Err(error));
                    (None, Err(unread))
                }
            };
            // The runbook's post-mortem, from the audit log alone: its timeline must be the
            // incident's, event for event (both read in one snapshot).
            let built = built.and_then(|pm| {
                let theirs: Vec<&str> = pm.timeline.iter().map(|r| r.kind.as_str()).collect();
                match &kinds {
                    Some(kinds) if kinds.iter().map(String::as_str).eq(theirs.iter().copied()) => {
                        Ok(pm)
                    }
                    Some(kinds) => {
                        Err(eyre::eyre!("its timeline {theirs:?} is not the incident's {kinds:?}"))
                    }
                    None => Ok(pm),
                }
            });
            match built {
                Ok(pm) => {
                    self.list.record(
                        POSTMORTEM,
                        Ok(format!("{} timeline events; {}", pm.timeline.len(), pm.summary)),
                    );
                    postmortem = Some(pm.markdown());
                }
                Err(error) => self.list.record(POSTMORTEM, Err(error)),
            }
            let verified = stage.verify_audit();
            audit = Some(match &verified {
                Ok(text) => text.clone(),
                Err(error) => format!("{error:#}"),
            });
            self.list.record(AUDIT, verified);
        }
        let mut report =
            ScenarioReport::new(scenario, self.list.into_checks(), self.timeline, self.latencies);
        report.incident = incident_id;
        report.postmortem = postmortem;
        report.audit = audit;
        report.wei_lost = self.wei_lost.map(|w| w.to_string());
        report
    }

    /// Wait for a finding of `rule` with `severity`; marks "finding recorded" and the detection
    /// latency. The step fails naming what was recorded instead, if anything.
    pub(crate) async fn finding(
        &mut self,
        stage: &Stage,
        options: &Options,
        clock: &Clock,
        step: &str,
        rule: &str,
        severity: Severity,
    ) -> Option<StoredFinding> {
        let outcome = wait_finding(stage, options, rule, severity).await;
        let finding = self.list.step(step, outcome)?;
        if let Some(id) = finding.incident_id {
            self.incident = Some((id, *clock));
        }
        let head = stage.head().await.unwrap_or(clock.block);
        self.mark(clock, "finding recorded", head);
        self.latencies.detection_ms = Some(clock.ms());
        self.latencies.detection_blocks = Some(head.saturating_sub(clock.block));
        Some(finding)
    }

    /// The pause of `contract` (at `address`) through the Safe: the daemon's proposal, the
    /// operators' approvals through the calls `guardian approve` makes, and the daemon's
    /// execution, verified on chain. Marks each on the timeline and the pause latency.
    pub(crate) async fn pause_through_safe(
        &mut self,
        stage: &Stage,
        options: &Options,
        clock: &Clock,
        contract: &str,
        address: Address,
    ) -> Option<Proposal> {
        let approvers = match approvers(stage, options).await {
            Ok(approvers) => approvers,
            Err(error) => {
                self.list.fail("owners to approve chosen", format!("{error:#}"));
                return None;
            }
        };
        let names: Vec<String> = approvers.iter().enumerate().map(|(i, a)| a.name(i)).collect();
        self.list.plan([PROPOSAL.to_owned()]);
        self.list.plan(names.iter().cloned());
        self.list.plan([PAUSED.to_owned()]);

        let proposal = self.list.step(PROPOSAL, wait_proposal(stage, options, contract).await)?;
        self.mark(clock, "pause proposed", stage.head().await.unwrap_or(clock.block));

        for (index, (approval, name)) in approvers.iter().zip(&names).enumerate() {
            let outcome = approval.give(stage, proposal.safe_tx_hash).await;
            self.list.step(name, outcome.map(|detail| ((), detail)))?;
            let block = stage.head().await.unwrap_or_default();
            self.mark(clock, format!("approval {} ({})", index + 1, approval.short()), block);
        }

        let outcome = wait_paused(stage, options, &proposal, address).await;
        let block = self.list.step(PAUSED, outcome)?;
        self.mark(clock, "pause mined", block);
        self.latencies.pause_ms = Some(clock.ms());
        self.latencies.pause_blocks = Some(block.saturating_sub(clock.block));
        Some(proposal)
    }

    /// The immediate pause of `contract` (at `address`) through the pause module: the daemon
    /// sends `pause(target)` from its pauser key, no owner signs. Checks the receipt (sent by
    /// the pauser to the module), `paused()`, and that the Safe executed nothing (its nonce is
    /// unchanged). Marks it on the timeline and the pause latency; returns the block.
    pub(crate) async fn pause_at_once(
        &mut self,
        stage: &Stage,
        options: &Options,
        clock: &Clock,
        address: Address,
    ) -> Option<u64> {
        self.list.plan([AT_ONCE.to_owned()]);
        let Some((incident, _)) = self.incident else {
            self.list.fail(AT_ONCE, "the finding belongs to no incident");
            return None;
        };
        let block =
            self.list.step(AT_ONCE, wait_module_pause(stage, options, incident, address).await)?;
        self.mark(clock, "pause mined (module)", block);
        self.latencies.pause_ms = Some(clock.ms());
        self.latencies.pause_blocks = Some(block.saturating_sub(clock.block));
        Some(block)
    }

    /// Record what `address` lost between the block before the anomaly and `after` (the pause's
    /// block): its ether balance then minus now, zero if it grew.
    pub(crate) async fn lost(
        &mut self,
        stage: &Stage,
        address: Address,
        clock: &Clock,
        after: u64,
    ) {
        match wei_lost(stage, address, clock.block.saturating_sub(1), after).await {
            Ok(lost) => self.wei_lost = Some(lost),
            Err(error) => self.list.record("wei lost measured", Err(error)),
        }
    }
}

/// `address`'s ether balance at block `before` minus at block `after`, zero if it grew.
pub(crate) async fn wei_lost(
    stage: &Stage,
    address: Address,
    before: u64,
    after: u64,
) -> Result<U256> {
    let reader = stage.world.reader();
    let then = reader.get_balance(address).number(before).await?;
    let now = reader.get_balance(address).number(after).await?;
    Ok(then.saturating_sub(now))
}

/// The post-mortem generated from the audit log, its timeline the incident's.
pub(crate) const POSTMORTEM: &str = "post-mortem generated from the audit log";
/// `guardian audit verify` after the scenario.
pub(crate) const AUDIT: &str = "audit log verifies";
pub(crate) const AT_ONCE: &str = "paused at once through the pause module";

/// Wait for the incident's immediate pause, then check it on chain. Fails at once, with the
/// incident's reason, when the daemon fell back to a Safe proposal.
async fn wait_module_pause(
    stage: &Stage,
    options: &Options,
    incident: i64,
    target: Address,
) -> Result<(u64, String)> {
    let outcome = poll(options.step_timeout, || async {
        let incident = stage.incident(incident)?;
        if let Some(reason) = incident.module_unavailable {
            bail!("the daemon fell back to a Safe proposal: {reason}");
        }
        Ok(incident.module_tx.zip(incident.execution))
    })
    .await?;
    let Some((tx, execution)) = outcome else {
        bail!("no pause through the module within {:?}", options.step_timeout);
    };
    let world = &stage.world;
    let reader = world.reader();
    let receipt = reader
        .get_transaction_receipt(tx)
        .await?
        .ok_or_else(|| eyre!("the module pause {tx} has no receipt"))?;
    ensure!(receipt.status(), "the module pause {tx} reverted");
    ensure!(
        receipt.from == world.pauser.address() && receipt.to == Some(world.module),
        "{tx} was sent by {} to {:?}, not by the pauser {} to the module {}",
        receipt.from,
        receipt.to,
        world.pauser.address(),
        world.module
    );
    ensure!(execution.tx == tx, "the incident records execution {}, not {tx}", execution.tx);
    ensure!(is_paused(&reader, target).await?, "{tx} was mined but paused() on {target} is false");
    let nonce = world.safe.nonce().await?;
    ensure!(
        nonce == world.safe_nonce,
        "the Safe's nonce moved from {} to {nonce}: a Critical pause needs no Safe transaction",
        world.safe_nonce
    );
    let block = receipt.block_number.unwrap_or_default();
    Ok((
        block,
        format!(
            "pause({target}) through module {} mined in block {block} (tx {tx}, from pauser {}); paused() == true; Safe nonce still {nonce}, no owner signed",
            world.module,
            world.pauser.address()
        ),
    ))
}

pub(crate) const PROPOSAL: &str = "pause proposed through the Safe";
pub(crate) const PAUSED: &str = "pause executed and verified";

/// One owner's approval in the drill, and how it is given.
#[derive(Debug, Clone)]
enum Approval {
    /// An EIP-712 signature with the owner's key, verified and stored by the service (what
    /// `guardian approve` does).
    Signature(PrivateKeySigner),
    /// The Safe's `approveHash` sent as the owner and mined (`guardian approve --onchain`); the
    /// only way for an owner the fork impersonates.
    OnChain(Operator),
}

impl Approval {
    fn owner(&self) -> Address {
        match self {
            Self::Signature(key) => key.address(),
            Self::OnChain(operator) => operator.address,
        }
    }

    fn short(&self) -> &'static str {
        match self {
            Self::Signature(_) => "off chain",
            Self::OnChain(_) => "on chain",
        }
    }

    fn name(&self, index: usize) -> String {
        let how = match self {
            Self::Signature(_) => "off-chain signature",
            Self::OnChain(Operator { key: Some(_), .. }) => "on-chain approveHash",
            Self::OnChain(Operator { key: None, .. }) => "on-chain approveHash, impersonated",
        };
        format!("approval {} of owner {} ({how})", index + 1, self.owner())
    }

    async fn give(&self, stage: &Stage, hash: B256) -> Result<String> {
        let multisig = stage.multisig()?;
        match self {
            Self::Signature(key) => {
                let submitted = multisig.approve_with_signature(hash, key).await?;
                ensure!(submitted.added, "the signature was already recorded");
                Ok(format!(
                    "EIP-712 signature verified and stored; approvals {} of {}",
                    submitted.approvals, submitted.threshold
                ))
            }
            Self::OnChain(operator) => {
                let wallet = stage.world.wallet(operator);
                let (receipt, counted) =
                    multisig.approve_onchain(hash, &wallet, operator.address).await?;
                let (approvals, threshold) = counted.map_err(|e| {
                    e.wrap_err(format!(
                        "approveHash mined in {}, but the approvals could not be counted",
                        receipt.transaction_hash
                    ))
                })?;
                Ok(format!(
                    "approveHash mined in block {}; approvals {approvals} of {threshold}",
                    receipt.block_number.unwrap_or_default(),
                ))
            }
        }
    }
}

/// The first `options.approvers` owners (`0`: as many as the Safe's threshold) and how each
/// approves: the second on chain, the others with a signature, except impersonated owners (a
/// fork), who can only send `approveHash`.
async fn approvers(stage: &Stage, options: &Options) -> Result<Vec<Approval>> {
    let count = match options.approvers {
        0 => usize::try_from(stage.world.safe.threshold().await?)?,
        n => n,
    };
    Ok(stage
        .world
        .operators
        .iter()
        .take(count)
        .enumerate()
        .map(|(i, op)| match &op.key {
            Some(key) if i != 1 => Approval::Signature(key.clone()),
            _ => Approval::OnChain(op.clone()),
        })
        .collect())
}

async fn wait_finding(
    stage: &Stage,
    options: &Options,
    rule: &str,
    severity: Severity,
) -> Result<(StoredFinding, String)> {
    let found = poll(options.step_timeout, || async {
        Ok(stage.findings()?.into_iter().find(|f| f.finding.rule == rule))
    })
    .await?;
    match found {
        Some(f) if f.finding.severity == severity => {
            let detail = format!(
                "#{} {} on {}: {} (block {}, {:?})",
                f.id,
                f.finding.rule,
                f.finding.contract,
                f.finding.summary,
                f.finding.evidence.block_number,
                f.finding.severity,
            );
            Ok((f, detail))
        }
        Some(f) => bail!("{rule} was recorded as {:?}, not {severity:?}", f.finding.severity),
        None => {
            let seen: Vec<String> = stage
                .findings()?
                .iter()
                .map(|f| format!("{} ({:?})", f.finding.rule, f.finding.severity))
                .collect();
            bail!(
                "no {rule} finding within {:?} (findings: {})",
                options.step_timeout,
                if seen.is_empty() { "none".into() } else { seen.join(", ") }
            )
        }
    }
}

/// The daemon's pending pause proposal for `contract`.
pub(crate) async fn wait_proposal(
    stage: &Stage,
    options: &Options,
    contract: &str,
) -> Result<(Proposal, String)> {
    let multisig = stage.multisig()?;
    let proposal = poll(options.step_timeout, || async {
        Ok(multisig
            .list(Some(ProposalStatus::Pending))?
            .into_iter()
            .find(|p| p.kind == ProposalKind::Pause && p.contract == contract))
    })
    .await?
    .ok_or_else(|| {
        eyre!("the finding did not become a pause proposal within {:?}", options.step_timeout)
    })?;
    let detail = format!(
        "pause() on {contract} at Safe nonce {}, safeTxHash {}, simulation {}",
        proposal.nonce, proposal.safe_tx_hash, proposal.simulation
    );
    Ok((proposal, detail))
}

/// Wait for the daemon to execute `proposal`, then check the receipt, `paused()` on `target`
/// and that the Safe executed exactly this one transaction. Returns the block it was mined in.
async fn wait_paused(
    stage: &Stage,
    options: &Options,
    proposal: &Proposal,
    target: Address,
) -> Result<(u64, String)> {
    let multisig = stage.multisig()?;
    let hash = proposal.safe_tx_hash;
    let executed = poll(options.step_timeout, || async {
        Ok(multisig.detail(hash)?.filter(|d| d.proposal.status == ProposalStatus::Executed))
    })
    .await?;
    let Some(detail) = executed else {
        let approvals = multisig.approvals(proposal).await?.len();
        let threshold = multisig.safe().threshold().await?;
        let last_failure = match proposal.incident_id {
            Some(id) => stage
                .incident_events(id)?
                .into_iter()
                .rev()
                .find(|e| e.kind.as_str() == "execution_failed")
                .map(|e| format!("; last attempt: {}", e.event.describe()))
                .unwrap_or_default(),
            None => String::new(),
        };
        bail!(
            "the Safe did not execute (approvals {approvals} of {threshold}) within {:?}{last_failure}",
            options.step_timeout
        );
    };
    let tx = detail.proposal.executed_tx.ok_or_else(|| eyre!("executed without a transaction"))?;
    let reader = stage.world.reader();
    let receipt = reader
        .get_transaction_receipt(tx)
        .await?
        .ok_or_else(|| eyre!("execTransaction {tx} has no receipt"))?;
    ensure!(receipt.status(), "execTransaction {tx} reverted");
    ensure!(
        is_paused(&reader, target).await?,
        "execTransaction {tx} was mined but paused() on {target} is false"
    );
    let nonce = multisig.safe().nonce().await?;
    let expected = stage.world.safe_nonce + U256::ONE;
    ensure!(
        nonce == expected,
        "the Safe's nonce is {nonce}, expected {expected}: exactly one execution since the drill began"
    );
    let block = receipt.block_number.unwrap_or_default();
    Ok((
        block,
        format!(
            "execTransaction {tx} mined in block {block} by {}; paused() == true; Safe nonce {nonce}",
            detail.proposal.executed_by.as_deref().unwrap_or("?")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use eyre::eyre;

    use super::Checklist;

    #[test]
    fn a_failed_step_names_itself_in_every_planned_step_after_it() {
        let mut list = Checklist::new(["anomaly", "finding", "proposal"]);
        assert_eq!(list.step("anomaly", Ok((1, "mined".to_owned()))), Some(1));
        assert_eq!(list.step::<()>("finding", Err(eyre!("nothing within 20 s"))), None);
        list.plan(["rollback"]);
        let checks = list.into_checks();
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["anomaly", "finding", "proposal", "rollback"]);
        assert!(checks[0].passed && !checks[1].passed);
        assert_eq!(checks[1].detail, "nothing within 20 s");
        for check in &checks[2..] {
            assert!(!check.passed);
            assert_eq!(check.detail, "not reached: \"finding\" did not happen");
        }
    }

    #[test]
    fn independent_checks_block_nothing_and_a_complete_list_adds_nothing() {
        let mut list = Checklist::new(["traffic", "no finding", "no proposal"]);
        list.pass("traffic", "10 blocks");
        list.record("no finding", Err(eyre!("false positive: vault-drain")));
        list.record("no proposal", Ok("none".to_owned()));
        let checks = list.into_checks();
        assert_eq!(checks.len(), 3);
        assert_eq!(checks.iter().filter(|c| c.passed).count(), 2);
        assert_eq!(checks[1].detail, "false positive: vault-drain");
    }

    #[test]
    fn unrecorded_steps_without_a_failure_say_so() {
        let checks = Checklist::new(["anomaly"]).into_checks();
        assert_eq!(checks.len(), 1);
        assert!(!checks[0].passed);
        assert_eq!(checks[0].detail, "not reached: \"an earlier step\" did not happen");
    }
}
