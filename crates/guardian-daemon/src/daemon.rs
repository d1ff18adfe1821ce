//! `guardian run`: the daemon, wired from a loaded config.

use std::{sync::Arc, time::Duration};

use alloy::signers::local::PrivateKeySigner;
use eyre::{Result, WrapErr, bail, eyre};
use guardian_config::Config;
use guardian_store::Store;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::{
    Engine, Follower, FollowerOptions, RpcPool, heads, notifier, pauser,
    rpc::{EndpointSpec, redact},
};

/// Per-request RPC timeout: a node slower than this counts as stalled and the next endpoint is
/// tried.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// Run the daemon until `shutdown` flips.
///
/// Refuses to start when a reachable endpoint serves another chain than the configured one or
/// the database belongs to another chain; while no endpoint is reachable it waits with backoff.
pub async fn run(config: &Config, shutdown: watch::Receiver<bool>) -> Result<()> {
    run_with(config, shutdown, Executor::FromConfig).await
}

/// The endpoint pool of `config`'s `[[rpc]]` list (bearer tokens included), bound to its chain id.
pub fn rpc_pool(config: &Config) -> Result<Arc<RpcPool>> {
    let place = config.source.display();
    let endpoints = config
        .rpc
        .iter()
        .map(|e| {
            let url = e
                .url
                .expose()
                .parse()
                .map_err(|_| eyre!("{place}: RPC endpoint {} is not a valid URL", e.display))?;
            Ok(EndpointSpec { url, bearer: e.bearer.as_ref().map(|b| b.expose().to_owned()) })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(RpcPool::new(endpoints, config.chain.id, RPC_TIMEOUT)?))
}

/// Where the daemon's executor key (the account that sends `execTransaction`) comes from.
#[derive(Debug, Clone, Default)]
pub enum Executor {
    /// The variable `[safe] executor_key_env` names, as `guardian run` reads it.
    #[default]
    FromConfig,
    /// A key handed over in-process (the rehearsal's dev key), so nothing touches the process
    /// environment.
    Key(PrivateKeySigner),
}

/// [`run`], with the executor key given explicitly.
pub async fn run_with(
    config: &Config,
    mut shutdown: watch::Receiver<bool>,
    executor: Executor,
) -> Result<()> {
    let place = config.source.display().to_string();
    let rpc = rpc_pool(config)?;

    let mut backoff = Duration::from_millis(500);
    loop {
        match rpc.verify_chain().await {
            Ok(0) => {
                warn!(retry_in = ?backoff, "no RPC endpoint reachable yet");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Ok(reachable) => {
                info!(
                    chain_id = config.chain.id,
                    reachable,
                    endpoints = rpc.endpoints().len(),
                    "RPC endpoints verified"
                );
                break;
            }
            Err(error) => {
                return Err(error.wrap_err(format!(
                    "refusing to start: [chain] id = {} in {place}",
                    config.chain.id
                )));
            }
        }
    }

    let store = Store::open(&config.storage.path)?;
    store.bind_chain(config.chain.id).wrap_err_with(|| {
        format!("refusing to start: database {}", config.storage.path.display())
    })?;
    // guardian-rollback: finish or undo a config write a killed guardian left half-done (its
    // journal), before the pause flow can write configs again. Logged, not fatal: watching the
    // chain matters more, and every later config write retries the recovery and stops on it.
    if config.rollback.is_some()
        && let Err(error) = guardian_rollback::recover_at_start(&config.source)
    {
        warn!(error = %format!("{error:#}"), "interrupted config write not recovered");
    }
    let engine = Engine::new(config.rule_engine().map_err(|e| eyre!("{place}: {e}"))?);
    let options = FollowerOptions {
        confirmations: config.chain.confirmations,
        poll_interval: config.chain.poll_interval,
        max_range: config.chain.max_log_range,
        ..FollowerOptions::default()
    };
    let mut follower = Follower::new(rpc.clone(), store, engine, options);

    let notifier = match &config.webhook {
        Some(webhook) => {
            let url =
                webhook.url.expose().parse().map_err(|_| {
                    eyre!("{place}: ${} does not hold a valid URL", webhook.url_env)
                })?;
            let hook = notifier::Webhook {
                url,
                max_attempts: webhook.retries.saturating_add(1),
                timeout: webhook.timeout,
                backoff: notifier::Backoff::default(),
            };
            let db = config.storage.path.clone();
            let stop = shutdown.clone();
            Some(tokio::spawn(async move { notifier::run(db, hook, stop).await }))
        }
        None => None,
    };

    // The pause flow and the HTTP API, when a Safe is configured. Run beside the follower in
    // this task (not spawned): the rollback it may trigger holds a non-Sync ledger.
    let pauser = match &config.safe {
        Some(_) => {
            // Every request of the pause flow fails over like the follower's: a dead endpoint
            // must not leave a pause unexecuted.
            let provider = rpc.failover_provider(config.chain.poll_interval);
            Some(
                pauser::Pauser::start(config, provider, executor)
                    .await
                    .wrap_err_with(|| format!("refusing to start: the [safe] of {place}"))?,
            )
        }
        None => None,
    };
    let pause_flow = async {
        match pauser {
            Some(pauser) => pauser.run(config, shutdown.clone()).await,
            None => Ok(()),
        }
    };

    let heads = heads::spawn(rpc.clone());
    info!(
        endpoints = ?rpc.endpoints().iter().map(|e| redact(&e.url)).collect::<Vec<_>>(),
        database = %config.storage.path.display(),
        "guardian is following the chain"
    );
    let (followed, paused) = tokio::join!(follower.run(heads, shutdown.clone()), pause_flow);
    if let Err(error) = paused {
        warn!(error = %format!("{error:#}"), "pause flow stopped with an error");
    }
    if let Some(task) = notifier {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                warn!(error = %format!("{error:#}"), "notifier stopped with an error")
            }
            Err(error) => bail!("notifier task failed: {error}"),
        }
    }
    followed
}
