//! `guardian run`: the daemon, wired from a loaded config.

use std::{sync::Arc, time::Duration};

use alloy::signers::local::PrivateKeySigner;
use eyre::{Result, WrapErr, bail, eyre};
use guardian_config::Config;
use guardian_store::Store;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::{Engine, Follower, FollowerOptions, heads, lifecycle, notifier, pauser};

/// Run the daemon until `shutdown` flips.
///
/// Refuses to start when a reachable endpoint serves another chain than the configured one or
/// the database belongs to another chain; while no endpoint is reachable it waits with backoff.
pub async fn run(config: &Config, shutdown: watch::Receiver<bool>) -> Result<()> {
    run_with(config, shutdown, Executor::FromConfig).await
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
    // One daemon per database (released when this returns, or by the kernel when the process
    // dies), then what SQLite's files beside it say, before anything opens it.
    let _only_daemon = guardian_store::DaemonLock::acquire(&config.storage.path)
        .wrap_err_with(|| format!("refusing to start: [storage] path of {place}"))?;
    if let Some(warning) = guardian_store::inspect_files(&config.storage.path) {
        warn!(%warning, "the database lost its write-ahead log");
    }
    let rpc = guardian_operator::rpc_pool(config)?;

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
                return Err(eyre!(error).wrap_err(format!(
                    "refusing to start: [chain] id = {} in {place}",
                    config.chain.id
                )));
            }
        }
    }

    let mut store = Store::open(&config.storage.path)?;
    store.bind_chain(config.chain.id).wrap_err_with(|| {
        format!("refusing to start: database {}", config.storage.path.display())
    })?;
    store.set_policy(config.response);
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
    // Who to wake when an incident moves: the notifier (its notifications) and the responder
    // (its proposals, executions and rollbacks).
    let notify_wake = Arc::new(Notify::new());
    let respond_wake = Arc::new(Notify::new());
    let mut follower = Follower::new(rpc.clone(), store, engine, options)
        .wake_on_commit(notify_wake.clone())
        .wake_on_commit(respond_wake.clone());

    // The pause flow and the HTTP API, when a Safe is configured. The API's port is bound
    // now: a port that is taken stops the start, instead of owners' `--api` calls reaching
    // another process.
    let pauser = match &config.safe {
        Some(_) => {
            let listener = guardian_operator::api::bind(config.api.bind)
                .await
                .wrap_err_with(|| format!("refusing to start: [api] bind of {place}"))?;
            // Every request of the pause flow fails over like the follower's: a dead endpoint
            // must not leave a pause unexecuted.
            let provider = rpc.failover_provider(config.chain.poll_interval);
            let pauser = pauser::Pauser::start(config, provider, executor, respond_wake.clone())
                .await
                .wrap_err_with(|| format!("refusing to start: the [safe] of {place}"))?;
            Some((pauser, listener))
        }
        None => None,
    };

    let notifier = match &config.webhook {
        Some(webhook) => {
            let url =
                webhook.url.expose().parse().map_err(|_| {
                    eyre!("{place}: ${} does not hold a valid URL", webhook.url_env)
                })?;
            let hook = notifier::Webhook {
                url,
                timeout: webhook.timeout,
                backoff: notifier::Backoff {
                    cap: webhook.max_backoff,
                    ..notifier::Backoff::default()
                },
            };
            let db = config.storage.path.clone();
            let stop = shutdown.clone();
            let wake = notify_wake.clone();
            Some(tokio::spawn(async move { notifier::run(db, hook, wake, stop).await }))
        }
        None => {
            warn!("no [webhook]: incidents are recorded and logged, but nobody is notified");
            None
        }
    };

    // Escalation timers run whatever else is configured: an alert-only incident escalates too.
    let timers = {
        let db = config.storage.path.clone();
        let (policy, chain_id, stop) = (config.response, config.chain.id, shutdown.clone());
        let wake = notify_wake.clone();
        tokio::spawn(async move { lifecycle::run_timers(db, chain_id, policy, wake, stop).await })
    };

    let pause_flow = async {
        match pauser {
            Some((pauser, listener)) => {
                pauser.run(config, listener, shutdown.clone(), notify_wake.clone()).await
            }
            None => Ok(()),
        }
    };

    let heads = heads::spawn(rpc.clone());
    info!(
        endpoints = ?rpc.endpoints().iter().map(|e| e.label()).collect::<Vec<_>>(),
        database = %config.storage.path.display(),
        "guardian is following the chain"
    );
    let (followed, paused) = tokio::join!(follower.run(heads, shutdown.clone()), pause_flow);
    if let Err(error) = paused {
        warn!(error = %format!("{error:#}"), "pause flow stopped with an error");
    }
    for (name, task) in [("notifier", notifier), ("timers", Some(timers))] {
        let Some(task) = task else { continue };
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                warn!(error = %format!("{error:#}"), "{name} stopped with an error")
            }
            Err(error) => bail!("{name} task failed: {error}"),
        }
    }
    followed
}
