//! `guardian run`: the daemon, wired from a loaded config.

use std::{sync::Arc, time::Duration};

use alloy::signers::local::PrivateKeySigner;
use eyre::{Result, WrapErr, bail, eyre};
use guardian_config::Config;
use guardian_store::Store;
use tokio::sync::Notify;
use tracing::{info, warn};

use guardian_operator::Desk;

use crate::{
    Engine, Follower, FollowerOptions, heads, lifecycle, metrics::Metrics, notifier, pauser,
    server, watch,
};

/// Run the daemon until `shutdown` flips.
///
/// Refuses to start when a reachable endpoint serves another chain than the configured one or
/// the database belongs to another chain; while no endpoint is reachable it waits with backoff.
pub async fn run(config: &Config, shutdown: tokio::sync::watch::Receiver<bool>) -> Result<()> {
    run_with(config, shutdown, Keys::default()).await
}

/// Where one of the daemon's keys comes from.
#[derive(Debug, Clone, Default)]
pub enum KeySource {
    /// The variable the config names (`[safe] executor_key_env`, `[safe.module]
    /// pauser_key_env`), as `guardian run` reads it.
    #[default]
    FromConfig,
    /// A key handed over in-process (the rehearsal's dev keys), so nothing touches the process
    /// environment.
    Key(PrivateKeySigner),
}

/// The daemon's keys: the executor (sends `execTransaction` once owners approved) and the
/// module's pauser (sends `pause(target)` through the pause module at once).
#[derive(Debug, Clone, Default)]
pub struct Keys {
    /// The executor's.
    pub executor: KeySource,
    /// The pauser's.
    pub pauser: KeySource,
}

/// [`run`], with the keys given explicitly.
pub async fn run_with(
    config: &Config,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    keys: Keys,
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
    // Every request and failover of the pool is counted from the first one on.
    let metrics = Arc::new(Metrics::new(config));
    rpc.set_observer(metrics.clone());

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

    // Every audit entry this process writes from now on names the daemon on this host.
    guardian_store::audit::set_process_actor(guardian_store::audit::daemon());
    let mut store = Store::open(&config.storage.path)?;
    store.bind_chain(config.chain.id).wrap_err_with(|| {
        format!("refusing to start: database {}", config.storage.path.display())
    })?;
    store.set_policy(config.response);
    let (version, commit) = crate::metrics::build_info();
    let config_text = std::fs::read(&config.source)
        .wrap_err_with(|| format!("reading {place} for the audit log"))?;
    store.audit(guardian_core::audit::Record::DaemonStarted {
        version: format!("{version} ({commit})"),
        config: place.clone(),
        config_sha256: guardian_core::audit::hash(&String::from_utf8_lossy(&config_text)),
        chain_id: config.chain.id,
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
        start_block: config.chain.start_block.number(),
        ..FollowerOptions::default()
    };
    // Who to wake when an incident moves: the notifier (its notifications) and the responder
    // (its proposals, executions and rollbacks).
    let notify_wake = Arc::new(Notify::new());
    let respond_wake = Arc::new(Notify::new());
    store.set_replication(guardian_operator::store_replication(config));
    let mut follower = Follower::new(rpc.clone(), store, engine, options)
        .wake_on_commit(notify_wake.clone())
        .wake_on_commit(respond_wake.clone())
        .observe(metrics.clone());

    // The HTTP ports are bound now: a port that is taken stops the start, instead of owners'
    // `--api` calls or Prometheus reaching another process.
    let listeners = server::bind(config)
        .await
        .wrap_err_with(|| format!("refusing to start: [api] or [metrics] bind of {place}"))?;
    // Every request of the pause flow (and of the chain watch) fails over like the
    // follower's: a dead endpoint must not leave a pause unexecuted.
    let provider = rpc.failover_provider(config.chain.poll_interval);
    // The pause flow, when a Safe is configured.
    let pauser = match &config.safe {
        Some(_) => Some(
            pauser::Pauser::start(config, provider.clone(), keys, respond_wake.clone())
                .await
                .wrap_err_with(|| format!("refusing to start: the [safe] of {place}"))?,
        ),
        None => None,
    };
    // The other replicas: relay to them, pull from them, rank senders with them, and ask them
    // before a leader-mode notification.
    let peers =
        guardian_operator::peers::Peer::all(&config.replication.peers, crate::relay::PEER_TIMEOUT)
            .wrap_err_with(|| format!("refusing to start: the [[replicas]] of {place}"))?;
    let (pauser, relay_tasks) = match pauser {
        Some(pauser) if !peers.is_empty() => {
            crate::relay::restore_executors(pauser.multisig(), &peers)?;
            info!(
                replica = %config.replication.name,
                peers = ?peers.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
                "relaying proposals and signatures to the other replicas"
            );
            let (relays, tasks) = crate::relay::spawn(
                config.storage.path.clone(),
                pauser.multisig().clone(),
                peers.clone(),
                respond_wake.clone(),
                shutdown.clone(),
            );
            (Some(pauser.with_relays(relays)), tasks)
        }
        other => (other, Vec::new()),
    };
    let relays = pauser.as_ref().and_then(|p| p.relays());
    let executor_address = pauser.as_ref().and_then(|p| p.multisig().executor());
    // The operators' desk: over the Safe, or over the database alone.
    let desk = Arc::new(match &pauser {
        Some(pauser) => Desk::over(pauser.multisig().clone()),
        None => Desk::local(config)?,
    });
    {
        // `guardian status` on this host shows this replica's executor.
        let store = Store::open(&config.storage.path)?;
        let names: Vec<String> = config.replication.peers.iter().map(|p| p.name.clone()).collect();
        for (peer, relays) in store.close_relays_to_removed_peers(&names)? {
            warn!(
                peer,
                relays,
                "closed the relays still owed to a replica no longer in [[replicas]]; it will not get them"
            );
        }
        match executor_address {
            Some(address) => store.set_meta("executor", &address.to_string())?,
            None => store.set_meta("executor", "")?,
        }
    }
    let observe = Arc::new(server::Observe {
        metrics: metrics.clone(),
        pool: rpc.clone(),
        desk: desk.clone(),
        store: std::sync::Mutex::new(Store::open(&config.storage.path)?),
        ready: config.ready,
        policy: config.response,
        chain_id: config.chain.id,
        started_at: guardian_store::now_ms(),
        relays,
    });
    let api_state = guardian_operator::api::ApiState {
        desk,
        wake: respond_wake.clone(),
        access: guardian_operator::api::ApiAccess::from_config(&config.api),
    };
    let http = tokio::spawn(server::serve(listeners, api_state, observe, shutdown.clone()));
    let chain_watch = tokio::spawn(watch::chain_facts(
        config.clone(),
        provider.clone(),
        rpc.clone(),
        executor_address,
        metrics.clone(),
        shutdown.clone(),
    ));
    let retention = config.storage.keep_occurrences.map(|keep| {
        tokio::spawn(watch::retention(config.storage.path.clone(), keep, shutdown.clone()))
    });

    let notifier = if config.notify.is_empty() {
        warn!(
            "no [webhook] or [[notify]]: incidents are recorded and logged, but nobody is notified"
        );
        None
    } else {
        let replicas = Arc::new(notifier::Replicas::new(
            &config.replication.name,
            peers,
            config.replication.leader_timeout,
        ));
        let channels = config
            .notify
            .iter()
            .map(|c| {
                notifier::Channel::from_config(c).map(|mut channel| {
                    channel.replicas = Some(replicas.clone());
                    channel
                })
            })
            .collect::<Result<Vec<_>>>()
            .wrap_err_with(|| format!("refusing to start: the notification channels of {place}"))?;
        let db = config.storage.path.clone();
        let stop = shutdown.clone();
        let wake = notify_wake.clone();
        Some(tokio::spawn(async move { notifier::run_channels(db, channels, wake, stop).await }))
    };

    // Escalation timers run whatever else is configured: an alert-only incident escalates too.
    let timers = {
        let db = config.storage.path.clone();
        let (policy, chain_id, stop) = (config.response, config.chain.id, shutdown.clone());
        let wake = notify_wake.clone();
        tokio::spawn(async move { lifecycle::run_timers(db, chain_id, policy, wake, stop).await })
    };

    // Anchoring the audit log on chain, when configured.
    let anchoring = match &config.audit.anchor {
        Some(anchor) => {
            let raw = std::env::var(&anchor.key_env).map_err(|_| {
                eyre!(
                    "refusing to start: ${} (named by [audit] anchor_key_env of {place}) is not \
                     set: it must hold the AuditAnchor's anchorer key",
                    anchor.key_env
                )
            })?;
            guardian_config::remember_secret(&raw);
            let key: alloy::signers::local::PrivateKeySigner =
                raw.trim().parse().map_err(|_| {
                    eyre!("refusing to start: ${} is not a private key", anchor.key_env)
                })?;
            let (db, anchor, stop) =
                (config.storage.path.clone(), anchor.clone(), shutdown.clone());
            let provider = provider.clone();
            Some(tokio::spawn(
                async move { crate::anchor::run(db, provider, key, anchor, stop).await },
            ))
        }
        None => None,
    };

    // Pre-emption: pending transactions predicted to fire a `preempt` rule ask for the
    // immediate pause before any block holds them.
    let mempool = match crate::mempool::preempt_engine(config)? {
        Some(engine) => {
            let (config, stop) = (config.clone(), shutdown.clone());
            let wake = vec![respond_wake.clone(), notify_wake.clone()];
            Some(tokio::spawn(async move { crate::mempool::run(config, engine, wake, stop).await }))
        }
        None => None,
    };

    let pause_flow = async {
        if let Some(pauser) = pauser {
            pauser.respond(config, shutdown.clone(), notify_wake.clone()).await;
        }
    };

    let heads = heads::spawn(rpc.clone());
    info!(
        endpoints = ?rpc.endpoints().iter().map(|e| e.label()).collect::<Vec<_>>(),
        database = %config.storage.path.display(),
        "guardian is following the chain"
    );
    let (followed, ()) = tokio::join!(follower.run(heads, shutdown.clone()), pause_flow);
    for task in relay_tasks {
        if let Err(error) = task.await {
            warn!(%error, "a relay task failed");
        }
    }
    for task in [Some(chain_watch), retention, anchoring].into_iter().flatten() {
        if let Err(error) = task.await {
            warn!(%error, "a background task failed");
        }
    }
    match http.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            warn!(error = %format!("{error:#}"), "the HTTP server stopped with an error")
        }
        Err(error) => bail!("the HTTP server task failed: {error}"),
    }
    for (name, task) in [("notifier", notifier), ("timers", Some(timers)), ("mempool", mempool)] {
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
