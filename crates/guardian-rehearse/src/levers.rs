//! `levers`: can the Safe pause every watched contract right now? For each contract: there is
//! code at its address, `paused()` answers, and its pause function, simulated as the Safe,
//! goes through. On a fork with `--config` these are the operators' own contracts on
//! production state, which is where a Safe that lost ownership, a role never granted or a
//! pause function under another name is found before an incident rather than during one.

use alloy::providers::Provider;
use eyre::{Result, WrapErr, bail};
use guardian_chain::safe::{is_paused, simulate_as_safe};
use guardian_core::proposal::no_arg_calldata;

use crate::{Lever, Options, drill::Drill, report::ScenarioReport, stage::Stage};

pub(crate) async fn run(stage: &Stage, options: &Options) -> ScenarioReport {
    let levers: Vec<Lever> = if options.levers.is_empty() {
        stage.config.contracts.iter().map(Lever::from).collect()
    } else {
        options.levers.clone()
    };
    let mut drill = Drill::default();
    for lever in &levers {
        let name = format!("{} ({}) can be paused by the Safe", lever.name, lever.address);
        drill.list.record(&name, check(stage, lever).await);
    }
    if levers.is_empty() {
        drill.list.fail("contracts to check", "no [[contracts]] to check");
    }
    drill.report(stage, "levers")
}

async fn check(stage: &Stage, lever: &Lever) -> Result<String> {
    let reader = stage.world.reader();
    let safe = stage.world.safe.address();
    let code = reader.get_code_at(lever.address).await?;
    if code.is_empty() {
        bail!("there is no contract at {}", lever.address);
    }
    let paused = is_paused(&reader, lever.address)
        .await
        .wrap_err("paused() does not answer: guardian could not verify a pause")?;
    if paused {
        return Ok(format!("already paused ({} bytes of code)", code.len()));
    }
    let calldata = no_arg_calldata(&lever.pause).map_err(|e| eyre::eyre!(e))?;
    simulate_as_safe(&reader, safe, lever.address, calldata)
        .await
        .wrap_err_with(|| format!("{} simulated as Safe {safe}", lever.pause))?;
    Ok(format!(
        "{} simulated as Safe {safe} succeeds; paused() == false now ({} bytes of code)",
        lever.pause,
        code.len()
    ))
}
