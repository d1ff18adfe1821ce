//! The pause flow inside `guardian run`: findings that call for a pause become Safe proposals,
//! approved proposals are executed and verified, and a verified pause of a contract with
//! `on_pause = "rollback"` repoints its configs to the previous version. The HTTP API runs
//! beside it.

use std::{path::Path, str::FromStr, sync::Arc, time::Duration};

use alloy::{providers::DynProvider, signers::local::PrivateKeySigner};
use eyre::{Result, WrapErr, eyre};
use guardian_config::Config;
use guardian_core::{backup::VersionSelector, proposal::ProposalKind};
use guardian_multisig::{Advanced, Multisig, Proposal, Target, api};
use guardian_rollback::{Rollback, RollbackSettings, SqliteLedger};
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

/// The Safe's targets as the config declares them.
pub fn targets(config: &Config) -> Result<Vec<Target>> {
    config.contracts.iter().map(|c| Target::new(&c.name, c.address, &c.pause)).collect()
}

/// Read the executor key from the variable `[safe] executor_key_env` names. The key is never
/// printed: errors name the variable only.
pub fn executor_key(config: &Config) -> Result<Option<PrivateKeySigner>> {
    let Some(var) = config.safe.as_ref().and_then(|s| s.executor_key_env.as_deref()) else {
        return Ok(None);
    };
    let value = std::env::var(var).map_err(|_| {
        eyre!("[safe] executor_key_env names ${var}, which is not set: this replica cannot execute")
    })?;
    PrivateKeySigner::from_str(value.trim())
        .map(Some)
        .map_err(|_| eyre!("${var} does not hold a 32-byte hex private key"))
}

/// Connect the multisig service described by `config` over `provider`.
pub async fn connect(
    config: &Config,
    provider: DynProvider,
    executor: Option<PrivateKeySigner>,
) -> Result<Multisig> {
    let safe = config.safe.as_ref().ok_or_else(|| {
        eyre!("{}: no [safe] table: guardian has no Safe to propose to", config.source.display())
    })?;
    Multisig::connect(
        provider,
        config.chain.id,
        safe.address,
        &config.storage.path,
        targets(config)?,
        executor,
    )
    .await
}

/// The pause flow of one replica, connected and ready to run.
#[derive(Debug)]
pub struct Pauser {
    multisig: Arc<Multisig>,
    provider: DynProvider,
}

impl Pauser {
    /// Read the executor key and connect to the Safe; refuses on a wrong chain, a missing key
    /// variable or a Safe that is not 1.4.1, so `guardian run` fails at start, not mid-incident.
    pub async fn start(
        config: &Config,
        provider: DynProvider,
        executor: crate::daemon::Executor,
    ) -> Result<Self> {
        let executor = match executor {
            crate::daemon::Executor::FromConfig => executor_key(config)?,
            crate::daemon::Executor::Key(key) => Some(key),
        };
        if executor.is_none() {
            warn!(
                "no [safe] executor_key_env: proposals are made and approvals collected, but this replica does not execute"
            );
        }
        let multisig = Arc::new(connect(config, provider.clone(), executor).await?);
        Ok(Self { multisig, provider })
    }

    /// Run the pause loop and the HTTP API until `shutdown` flips.
    pub async fn run(self, config: &Config, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let Self { multisig, provider } = self;
        let wake = Arc::new(Notify::new());
        let state = api::ApiState { multisig: multisig.clone(), wake: wake.clone() };
        let api_task = tokio::spawn(api::serve(config.api.bind, state, shutdown.clone(), None));
        let interval = config.chain.poll_interval.max(Duration::from_millis(500));
        info!(safe = %multisig.safe().address(), "pause flow running");
        while !*shutdown.borrow() {
            if let Err(error) = step(config, &multisig, &provider).await {
                warn!(error = %format!("{error:#}"), "pause flow step failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = wake.notified() => {}
                _ = shutdown.changed() => {}
            }
        }
        match api_task.await {
            Ok(result) => result,
            Err(error) => Err(eyre!("HTTP API task failed: {error}")),
        }
    }
}

/// One pass: propose for new findings, advance pending proposals, roll back after pauses this
/// replica executed.
pub async fn step(config: &Config, multisig: &Multisig, provider: &DynProvider) -> Result<()> {
    multisig.propose_for_findings().await?;
    for outcome in multisig.tick().await? {
        if let Advanced::Executed { proposal, by_this_replica: true } = outcome {
            // Only the replica whose transaction paused rolls back: a second rollback would move
            // the configs one more version back.
            if proposal.kind == ProposalKind::Pause && proposal.then_rollback {
                rollback_after_pause(&config.source, multisig, provider, &proposal).await;
            }
        }
    }
    Ok(())
}

async fn rollback_after_pause(
    guardian_toml: &Path,
    multisig: &Multisig,
    provider: &DynProvider,
    proposal: &Proposal,
) {
    let hash = proposal.safe_tx_hash;
    let result = async {
        let settings = RollbackSettings::load(guardian_toml)?;
        let ledger = SqliteLedger::open(&settings.ledger_path)?;
        Rollback::new(&settings, &ledger)
            .run(provider, &proposal.contract, &VersionSelector::Previous)
            .await
            .wrap_err_with(|| format!("rolling back the configs of {}", proposal.contract))
    }
    .await;
    let (event, detail) = match result {
        Ok(outcome) => (
            "rollback",
            match &outcome.backup {
                Some(backup) => format!("configs rolled back; undo with backup {}", backup.stamp),
                None => "configs already point at the previous version".to_owned(),
            },
        ),
        Err(error) => ("rollback_failed", format!("{error:#}")),
    };
    info!(%hash, event, %detail, "after pause");
    if let Err(error) = multisig.audit(hash, event, &detail) {
        warn!(%hash, error = %format!("{error:#}"), "could not record the rollback");
    }
}
