//! `restart`: the daemon runs as a `guardian run` process and is killed with SIGKILL while the
//! drain is under way; the rest of the drain is mined while nothing watches. Restarted, guardian
//! must catch the anomaly from where its cursor stopped, exactly once: one finding holding every
//! drain call once, one immediate pause through the module, no Safe proposal.

use eyre::{Result, ensure, eyre};
use guardian_core::{proposal::ProposalKind, severity::Severity};

use crate::{
    Options,
    drain::{DRAIN_RULE, deposits, ensure_empty, mined, send_drain},
    drill::Drill,
    quiet::caught_up,
    report::ScenarioReport,
    stage::Stage,
};

const PROCESS: &str = "daemon running as a guardian run process";
const KILLED: &str = "daemon killed (SIGKILL) as the drain began";
const DOWN: &str = "drain finished while no daemon ran";
const RESTARTED: &str = "daemon restarted";
const FINDING: &str = "Critical finding recorded after the restart";
const ONCE: &str = "anomaly caught exactly once";

/// Drain calls sent before the kill (the rest follow while the daemon is down).
const BEFORE_KILL: usize = 2;

pub(crate) async fn run(stage: &mut Stage, options: &Options) -> ScenarioReport {
    let mut drill = Drill::new([PROCESS, KILLED, DOWN, RESTARTED, FINDING]);
    steps(stage, options, &mut drill).await;
    drill.list.plan([ONCE]);
    drill.report(stage, "restart")
}

async fn steps(stage: &mut Stage, options: &Options, drill: &mut Drill) {
    let started = match &options.guardian_exe {
        Some(exe) => stage
            .spawn_daemon_process(exe)
            .await
            .map(|pid| ((), format!("{} run, pid {pid}", exe.display()))),
        None => Err(eyre!("no guardian executable to run the daemon as a process")),
    };
    if drill.list.step(PROCESS, started).is_none() {
        return;
    }
    if let Err(error) = deposits(stage).await {
        drill.list.fail(KILLED, format!("the deposits before the drain failed: {error:#}"));
        return;
    }

    // The drain begins; the daemon dies before its blocks are mined.
    let killed = kill_during_drain(stage).await;
    let Some(first) = drill.list.step(KILLED, killed) else { return };
    let down = async {
        let (clock, _) = mined(first).await?;
        let (rest, detail) = finish_drain(stage, BEFORE_KILL).await?;
        Ok(((clock, rest), detail))
    };
    let Some((clock, (last, calls))) = drill.list.step(DOWN, down.await) else { return };
    drill.anomaly(&clock, "drain began (daemon killed)");
    drill.mark(&clock, "drain ended", last);

    let restarted = stage.start_daemon().await.map(|()| ((), "in-process, same database".into()));
    if drill.list.step(RESTARTED, restarted).is_none() {
        return;
    }
    drill.mark(&clock, "daemon restarted", stage.head().await.unwrap_or(last));
    if drill
        .finding(stage, options, &clock, FINDING, DRAIN_RULE, Severity::Critical)
        .await
        .is_none()
    {
        return;
    }
    let vault = stage.world.targets.vault_v2;
    let Some(block) = drill.pause_at_once(stage, options, &clock, vault).await else { return };
    drill.lost(stage, vault, &clock, block).await;
    let once = async {
        caught_up(stage, options, last).await?;
        once(stage, calls)
    };
    drill.list.step(ONCE, once.await.map(|d| ((), d)));
}

/// Send the first drain calls and SIGKILL the daemon before they are mined.
async fn kill_during_drain(stage: &mut Stage) -> Result<(crate::drain::Pending, String)> {
    let (pending, _) = send_drain(stage, BEFORE_KILL).await?;
    ensure!(pending.len() == BEFORE_KILL, "the vault held too little to drain");
    stage.kill_daemon_process()?;
    let cursor = stage.cursor()?.unwrap_or_default();
    Ok((pending, format!("{BEFORE_KILL} drain calls sent; daemon killed at cursor {cursor}")))
}

/// Send the rest of the drain while the daemon is down. Returns the last block and how many
/// drain calls there were in all.
async fn finish_drain(stage: &Stage, before: usize) -> Result<((u64, usize), String)> {
    let cursor = stage.cursor()?.unwrap_or_default();
    let (pending, _) = send_drain(stage, usize::MAX).await?;
    let calls = pending.len();
    let (_, last) = mined(pending).await?;
    ensure_empty(stage).await?;
    let after = stage.cursor()?.unwrap_or_default();
    ensure!(
        after == cursor,
        "the daemon's cursor moved from {cursor} to {after} while it was down"
    );
    let total = before + calls;
    Ok((
        (last, total),
        format!(
            "{} drain calls in all, the last in block {last}; vault empty; cursor still {cursor}",
            total
        ),
    ))
}

/// Exactly one drain finding holding each of `calls` drain calls once, one pause through the
/// module, and no pause proposal.
fn once(stage: &Stage, calls: usize) -> Result<String> {
    let findings: Vec<_> =
        stage.findings()?.into_iter().filter(|f| f.finding.rule == DRAIN_RULE).collect();
    ensure!(findings.len() == 1, "{} {DRAIN_RULE} findings, expected one", findings.len());
    let finding = &findings[0];
    ensure!(
        finding.occurrences == calls as u64,
        "finding #{} counts {} occurrences for {calls} drain calls",
        finding.id,
        finding.occurrences
    );
    let proposals: Vec<_> = stage
        .multisig()?
        .list(None)?
        .into_iter()
        .filter(|p| p.kind == ProposalKind::Pause && p.contract == "vault")
        .collect();
    ensure!(
        proposals.is_empty(),
        "{} pause proposals for the vault, expected none",
        proposals.len()
    );
    let incident =
        finding.incident_id.ok_or_else(|| eyre!("finding #{} has no incident", finding.id))?;
    let sent = stage
        .incident_events(incident)?
        .iter()
        .filter(|e| e.kind == guardian_core::incident::AuditKind::ModulePauseSent)
        .count();
    ensure!(sent == 1, "incident #{incident} sent {sent} module pauses, expected one");
    Ok(format!(
        "one finding (#{}) with {calls} occurrences, one for each drain call; one pause through the module, no Safe proposal",
        finding.id
    ))
}
