//! `levers`: can the Safe pause every watched contract right now? For each contract: there is
//! code at its address, `paused()` answers, and its pause function, simulated as the Safe,
//! goes through. On a fork with `--config` these are the operators' own contracts on
//! production state, which is where a Safe that lost ownership, a role never granted or a
//! pause function under another name is found before an incident rather than during one.
//!
//! Then the immediate pause: the pause module (the operators' `[safe.module]` on a fork with a
//! config, else the rehearsal's own) is enabled on the Safe, and lists each contract as a target
//! with its exact pause calldata, so a Critical finding on it pauses without waiting for owners.

use alloy::providers::Provider;
use eyre::{Result, WrapErr, bail};
use guardian_chain::{
    PauseModule,
    pause_module::ModuleState,
    safe::{is_paused, simulate_as_safe},
};
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
    let module = if options.levers.is_empty() { Some(stage.world.module) } else { options.module };
    let Some(module) = module else {
        drill.list.record(
            "pause module configured",
            Err(eyre::eyre!(
                "the config has no [safe.module]: a Critical finding would wait for owner approvals"
            )),
        );
        return drill.report(stage, "levers");
    };
    match PauseModule::connect(stage.world.reader(), module).await {
        Err(error) => drill.list.record(&format!("pause module {module} enabled"), Err(error)),
        Ok(module) => match module.state().await {
            Err(error) => {
                drill.list.record(&format!("pause module {} enabled", module.address()), Err(error))
            }
            Ok(state) => {
                drill.list.record(
                    &format!("pause module {} enabled", state.module),
                    enabled(stage, &state),
                );
                for lever in &levers {
                    let name = format!(
                        "{} ({}) is a target of the pause module",
                        lever.name, lever.address
                    );
                    drill.list.record(&name, listed(&state, lever));
                }
            }
        },
    }
    drill.report(stage, "levers")
}

fn enabled(stage: &Stage, state: &ModuleState) -> Result<String> {
    let safe = stage.world.safe.address();
    if state.safe != safe || state.avatar != safe || state.owner != safe {
        bail!(
            "the module acts for {} (avatar {}, owner {}), not for the Safe {safe}",
            state.safe,
            state.avatar,
            state.owner
        );
    }
    if !state.enabled {
        bail!("Safe {safe} does not have the module enabled: `guardian module deploy` proposes it");
    }
    if state.pausers.is_empty() {
        bail!("the module has no pausers: nobody can pause at once");
    }
    Ok(format!(
        "enabled on Safe {safe}; {} pauser(s), {} target(s)",
        state.pausers.len(),
        state.targets.len()
    ))
}

fn listed(state: &ModuleState, lever: &Lever) -> Result<String> {
    let expected = no_arg_calldata(&lever.pause).map_err(|e| eyre::eyre!(e))?;
    match state.targets.iter().find(|t| t.address == lever.address) {
        None => bail!(
            "not listed: a Critical finding on {} falls back to a Safe proposal and waits for the owners",
            lever.name
        ),
        Some(target) if target.pause_data != expected => {
            bail!("listed with calldata {}, but {} is {expected}", target.pause_data, lever.pause)
        }
        Some(target) => Ok(format!("listed with {} ({})", lever.pause, target.pause_data)),
    }
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
