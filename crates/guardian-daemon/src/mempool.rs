//! Pre-emption: pending transactions to watched contracts, simulated on the latest state before
//! any block holds them.
//!
//! With a WebSocket endpoint, the daemon subscribes to `newPendingTransactions`, fetches each
//! transaction sent to a watched contract, simulates it (`eth_simulateV1`, else
//! `debug_traceCall` with `callTracer` and `withLog`) and evaluates the rules marked
//! `preempt = true` on the logs it would emit. A predicted finding is recorded like any other
//! (its evidence names the pending transaction) and its incident asks for the immediate pause,
//! which the responder sends through the pause module with a priority fee above the pending
//! transaction's, so a pool ordered by fees mines the pause first and the attack reverts.
//!
//! Only `preempt` rules act on predictions (the config allows it only with `pause_now`); every
//! other rule waits for the block. A prediction evaluates the pending transaction alone: a
//! window sees only its logs, and state rules are not predicted.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use alloy::{
    network::TransactionResponse,
    primitives::{Address, B256, Bytes},
    providers::{DynProvider, Provider, ProviderBuilder, WsConnect},
    rpc::types::Transaction,
    transports::Authorization,
};
use eyre::{Result, WrapErr, eyre};
use futures_util::StreamExt;
use guardian_config::Config;
use guardian_core::{
    finding::{BlockInput, Finding, ObservedLog, TxOutcome},
    rules::RuleEngine,
};
use guardian_store::{Store, now_ms};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

/// What a simulation said the pending transaction would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simulated {
    /// Whether it would succeed.
    pub success: bool,
    /// The logs it would emit, every call frame's, in order.
    pub logs: Vec<(Address, Vec<B256>, Bytes)>,
}

/// Simulate `tx` on the latest state: `eth_simulateV1` (Anvil, Besu ≥ 25.4, geth), else
/// `debug_traceCall` with `callTracer` and `withLog` (needs the node's debug API).
pub async fn simulate(provider: &DynProvider, tx: &Transaction) -> Result<Simulated> {
    let call = json!({
        "from": tx.from(),
        "to": alloy::consensus::Transaction::to(tx),
        "value": alloy::consensus::Transaction::value(tx),
        "input": alloy::consensus::Transaction::input(tx),
        "gas": alloy::consensus::Transaction::gas_limit(tx),
    });
    let payload =
        json!([{ "blockStateCalls": [{ "calls": [call] }], "validation": false }, "latest"]);
    match provider.raw_request::<_, Value>("eth_simulateV1".into(), payload).await {
        Ok(answer) => parse_simulate(&answer),
        Err(simulate_error) => {
            let options = json!({ "tracer": "callTracer", "tracerConfig": { "withLog": true } });
            let answer = provider
                .raw_request::<_, Value>("debug_traceCall".into(), json!([call, "latest", options]))
                .await
                .map_err(|trace_error| {
                    eyre!("the node simulates neither with eth_simulateV1 ({simulate_error}) nor with debug_traceCall ({trace_error})")
                })?;
            parse_trace(&answer)
        }
    }
}

fn hex_field<T: std::str::FromStr>(value: &Value, key: &str) -> Option<T> {
    value.get(key)?.as_str()?.parse().ok()
}

fn log_of(value: &Value) -> Option<(Address, Vec<B256>, Bytes)> {
    let address = hex_field(value, "address")?;
    let topics =
        value.get("topics")?.as_array()?.iter().filter_map(|t| t.as_str()?.parse().ok()).collect();
    let data = hex_field(value, "data").unwrap_or_default();
    Some((address, topics, data))
}

/// The answer of `eth_simulateV1` for one block of one call.
pub fn parse_simulate(answer: &Value) -> Result<Simulated> {
    let call = answer
        .get(0)
        .and_then(|block| block.get("calls"))
        .and_then(|calls| calls.get(0))
        .ok_or_else(|| eyre!("eth_simulateV1 answered without a call result: {answer}"))?;
    let success = call.get("status").and_then(Value::as_str) == Some("0x1");
    let logs = call
        .get("logs")
        .and_then(Value::as_array)
        .map(|logs| logs.iter().filter_map(log_of).collect())
        .unwrap_or_default();
    Ok(Simulated { success, logs })
}

/// The answer of `debug_traceCall` with `callTracer` and `withLog`: every frame's logs, depth
/// first (the order the EVM emits them); a reverted frame's logs do not count.
pub fn parse_trace(answer: &Value) -> Result<Simulated> {
    fn walk(frame: &Value, out: &mut Vec<(Address, Vec<B256>, Bytes)>) {
        if frame.get("error").is_some() {
            return;
        }
        if let Some(logs) = frame.get("logs").and_then(Value::as_array) {
            out.extend(logs.iter().filter_map(log_of));
        }
        if let Some(calls) = frame.get("calls").and_then(Value::as_array) {
            for call in calls {
                walk(call, out);
            }
        }
    }
    if !answer.is_object() {
        return Err(eyre!("debug_traceCall answered {answer}"));
    }
    let mut logs = Vec::new();
    walk(answer, &mut logs);
    Ok(Simulated { success: answer.get("error").is_none(), logs })
}

/// The rules' findings for a pending transaction as `simulated`, each marked as predicted from
/// it. `engine` holds only the `preempt` rules and is cloned per prediction, so nothing pending
/// ever enters the state the follower's rules keep.
pub fn predict(
    engine: &RuleEngine,
    head: u64,
    tx_hash: B256,
    to: Address,
    simulated: &Simulated,
) -> Vec<Finding> {
    let watched = engine.watched_addresses();
    let logs = simulated
        .logs
        .iter()
        .filter(|(address, _, _)| watched.contains(address))
        .enumerate()
        .map(|(i, (address, topics, data))| ObservedLog {
            address: *address,
            topics: topics.clone(),
            data: data.clone(),
            tx_hash,
            log_index: i as u64,
        })
        .collect();
    let input = BlockInput {
        number: head + 1,
        hash: B256::ZERO,
        parent_hash: B256::ZERO,
        timestamp: now_ms() / 1000,
        logs,
        transactions: vec![TxOutcome { hash: tx_hash, to: Some(to), success: simulated.success }],
        state: Default::default(),
    };
    let mut findings = engine.clone().evaluate(&input);
    for finding in &mut findings {
        finding.evidence.predicted_from = Some(tx_hash);
        finding.summary = format!("predicted from pending tx {tx_hash}: {}", finding.summary);
    }
    findings
}

/// The rule engine of `config`'s `preempt` rules (`None` when there are none).
pub fn preempt_engine(config: &Config) -> Result<Option<RuleEngine>> {
    if config.preempt.is_empty() {
        return Ok(None);
    }
    let rules = config.rules.iter().filter(|r| config.preempt.contains(&r.name)).cloned().collect();
    RuleEngine::new(config.watched_contracts(), rules, config.policy)
        .map(Some)
        .map_err(|e| eyre!("{}: {e}", config.source.display()))
}

/// Watch the mempool of `config`'s first WebSocket endpoint until `shutdown` flips; every
/// prediction that moved an incident wakes `wake`.
pub async fn run(
    config: Config,
    engine: RuleEngine,
    wake: Vec<Arc<Notify>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let Some(endpoint) = config.rpc.iter().find(|e| e.transport == guardian_config::Transport::Ws)
    else {
        warn!(
            "rules are marked preempt, but no [[rpc]] endpoint is ws://: pending transactions cannot be watched; they wait for the block"
        );
        return Ok(());
    };
    let mut store =
        Store::open(&config.storage.path).wrap_err("opening the database for pre-emption")?;
    store.bind_chain(config.chain.id)?;
    store.set_policy(config.response);
    let watched: BTreeSet<Address> = engine.watched_addresses();
    let mut backoff = Duration::from_millis(500);
    loop {
        let mut ws = WsConnect::new(endpoint.url.expose());
        if let Some(token) = &endpoint.bearer {
            ws = ws.with_auth(Authorization::bearer(token.expose()));
        }
        let connected = async {
            let provider = ProviderBuilder::new().connect_ws(ws).await?.erased();
            let sub = provider.subscribe_pending_transactions().await?;
            eyre::Ok((provider, sub))
        };
        let (provider, sub) = tokio::select! {
            connected = connected => match connected {
                Ok(pair) => pair,
                Err(error) => {
                    warn!(endpoint = %endpoint.display, error = %format!("{error:#}"), retry_in = ?backoff, "cannot watch pending transactions");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return Ok(()),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            },
            _ = shutdown.changed() => return Ok(()),
        };
        info!(endpoint = %endpoint.display, rules = config.preempt.len(), "watching pending transactions for pre-emption");
        backoff = Duration::from_millis(500);
        let mut stream = sub.into_stream();
        loop {
            let hash = tokio::select! {
                next = stream.next() => match next {
                    Some(hash) => hash,
                    None => break,
                },
                _ = shutdown.changed() => return Ok(()),
            };
            match consider(&provider, &engine, &watched, &mut store, hash).await {
                Ok(true) => wake.iter().for_each(|w| w.notify_one()),
                Ok(false) => {}
                Err(error) => {
                    debug!(%hash, error = %format!("{error:#}"), "pending transaction not predicted")
                }
            }
        }
        warn!(endpoint = %endpoint.display, "pending-transactions subscription ended; resubscribing");
    }
}

/// Predict one pending transaction; true when it moved an incident.
async fn consider(
    provider: &DynProvider,
    engine: &RuleEngine,
    watched: &BTreeSet<Address>,
    store: &mut Store,
    hash: B256,
) -> Result<bool> {
    let Some(tx) = provider.get_transaction_by_hash(hash).await? else { return Ok(false) };
    if tx.block_number.is_some() {
        return Ok(false); // mined already: the follower has it
    }
    let Some(to) = alloy::consensus::Transaction::to(&tx) else { return Ok(false) };
    if !watched.contains(&to) {
        return Ok(false);
    }
    let started = std::time::Instant::now();
    let simulated = simulate(provider, &tx).await?;
    let head = provider.get_block_number().await?;
    let findings = predict(engine, head, hash, to, &simulated);
    if findings.is_empty() {
        return Ok(false);
    }
    let committed = store.commit_predicted(&findings)?;
    let moved = committed.transitions.iter().any(guardian_store::Applied::changed);
    info!(%hash, findings = findings.len(), ms = started.elapsed().as_millis() as u64, "pending transaction predicted to fire preempt rules");
    Ok(moved)
}
