//! Several `guardian run` replicas on one Safe behave as one guardian (issue 16), against a
//! real Anvil and Safe 1.4.1: signatures posted on one replica reach the others, a replica that
//! dies before sending leaves the execution to a peer, a fresh replica pulls what is pending,
//! one notification per lifecycle event, and a replica killed again and again during a drain
//! changes nothing but its own downtime. One sender per Safe nonce over many incidents is in
//! [`crate::endurance`], on this harness.
//!
//! Each replica has its own directory (config, database, managed deployment config), its own
//! executor key and its own API port; the `[[replicas]]` of each name the others.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use alloy::{
    eips::BlockNumberOrTag,
    primitives::{Address, B256, U256, utils::parse_ether},
    providers::{Provider, ext::AnvilApi},
    rpc::types::{Filter, TransactionTrait},
    signers::local::PrivateKeySigner,
    sol_types::SolEvent,
};
use guardian_chain::{
    Testbed, TestbedOptions,
    devnet::DevnetOptions,
    safe::{ISafe, is_paused},
    testbed::IVault,
};
use guardian_core::{
    proposal::{no_arg_calldata, proposal_tx},
    replication::sender_rank,
};
use guardian_rehearse::stage::{VAULT_ROLLBACK_TOML, write_vault_deployment};

use crate::support::{Daemon, Delivery, Receiver, drain_toml, guardian, key_hex, testbed};

pub(crate) const DEADLINE: Duration = Duration::from_secs(60);
/// The bearer token of every replica's API (and so of every peer's `[[replicas]] token_env`).
const TOKEN: &str = "replicas-e2e-token";
/// `[replication] sender_delay_ms` where a test sets it.
const SENDER_DELAY: Duration = Duration::from_millis(2_000);
/// `[replication] leader_timeout_ms` in the notification tests.
const LEADER_TIMEOUT: Duration = Duration::from_millis(2_000);
/// Notifications that are facts of one host: their keys name the replica.
const PER_HOST: [&str; 4] =
    ["rollback_done", "rollback_failed", "recovery_verified", "recovery_failed"];

// ----------------------------------------------------------------------------------------------
// replicas

/// How the replicas of a test are configured (the same for each).
#[derive(Debug, Clone, Default)]
pub(crate) struct Setup {
    /// `on_pause = "rollback"` and the vault's `[rollback]` tables.
    rollback: bool,
    /// `[webhook]` at `http://127.0.0.1:{port}/hook` with this `mode`.
    webhook: Option<(&'static str, u16)>,
    /// `[replication] sender_delay_ms` (none: the default, two block times).
    sender_delay: Option<Duration>,
    /// `[replication] leader_timeout_ms`.
    leader_timeout: Option<Duration>,
}

/// One `guardian run` replica: its directory, config and (while running) its process.
pub(crate) struct Replica {
    pub(crate) name: &'static str,
    /// The names of the peers its `[[replicas]]` list.
    peers: Vec<&'static str>,
    dir: tempfile::TempDir,
    cfg: String,
    port: u16,
    executor: Option<PrivateKeySigner>,
    env: Vec<(&'static str, String)>,
    daemon: Option<Daemon>,
    /// Where the log of its current run starts.
    log_mark: usize,
}

/// `n` distinct free loopback ports (all bound at once, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind")).collect();
    listeners.iter().map(|l| l.local_addr().expect("addr").port()).collect()
}

fn render(
    bed: &Testbed,
    name: &str,
    port: u16,
    executor: bool,
    peers: &[(&str, u16)],
    setup: &Setup,
) -> String {
    let api = format!("bind = \"127.0.0.1:{port}\"\ntoken_env = \"TEST_API_TOKEN\"");
    let mut toml = drain_toml(bed, &api, executor, setup.rollback, "critical");
    if let Some((mode, _)) = setup.webhook {
        toml.push_str(&format!(
            "\n[webhook]\nurl_env = \"TEST_WEBHOOK_URL\"\nmax_backoff_ms = 1000\nmode = \"{mode}\"\n"
        ));
    }
    if setup.rollback {
        toml.push('\n');
        toml.push_str(VAULT_ROLLBACK_TOML);
    }
    toml.push_str(&format!("\n[replication]\nname = \"{name}\"\n"));
    if let Some(delay) = setup.sender_delay {
        toml.push_str(&format!("sender_delay_ms = {}\n", delay.as_millis()));
    }
    if let Some(timeout) = setup.leader_timeout {
        toml.push_str(&format!("leader_timeout_ms = {}\n", timeout.as_millis()));
    }
    for (peer, port) in peers {
        toml.push_str(&format!(
            "\n[[replicas]]\nname = \"{peer}\"\napi = \"http://127.0.0.1:{port}\"\ntoken_env = \"TEST_API_TOKEN\"\n"
        ));
    }
    toml
}

/// A replica named `name` with its API on `port`, executing with `executor` (none: it never
/// sends), its `[[replicas]]` being `peers` (name, API port).
async fn replica(
    bed: &Testbed,
    name: &'static str,
    port: u16,
    executor: Option<PrivateKeySigner>,
    peers: &[(&'static str, u16)],
    setup: &Setup,
) -> Replica {
    let dir = tempfile::tempdir().expect("tempdir");
    write_vault_deployment(&bed.devnet.reader(), &bed.targets, 138, dir.path())
        .await
        .expect("deployment files");
    let cfg = dir.path().join("guardian.toml");
    std::fs::write(&cfg, render(bed, name, port, executor.is_some(), peers, setup))
        .expect("guardian.toml");
    let mut env = vec![("TEST_API_TOKEN", TOKEN.to_owned())];
    if let Some(key) = &executor {
        env.push(("TEST_EXECUTOR_KEY", key_hex(key)));
    }
    if let Some((_, hook)) = setup.webhook {
        env.push(("TEST_WEBHOOK_URL", format!("http://127.0.0.1:{hook}/hook")));
    }
    Replica {
        name,
        peers: peers.iter().map(|(n, _)| *n).collect(),
        cfg: cfg.to_str().expect("utf-8").to_owned(),
        dir,
        port,
        executor,
        env,
        daemon: None,
        log_mark: 0,
    }
}

/// Replicas that all know each other, each executing with its key.
pub(crate) async fn mesh(
    bed: &Testbed,
    members: &[(&'static str, PrivateKeySigner)],
    setup: &Setup,
) -> Vec<Replica> {
    let ports = free_ports(members.len());
    let mut out = Vec::with_capacity(members.len());
    for (i, (name, key)) in members.iter().enumerate() {
        let peers: Vec<(&'static str, u16)> = members
            .iter()
            .zip(&ports)
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, ((peer, _), port))| (*peer, *port))
            .collect();
        out.push(replica(bed, name, ports[i], Some(key.clone()), &peers, setup).await);
    }
    out
}

impl Replica {
    pub(crate) fn exec(&self) -> Address {
        self.executor.as_ref().expect("this replica has an executor").address()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("guardian.log")).unwrap_or_default()
    }

    pub(crate) fn tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(40);
        format!(
            "--- replica {} (last {} lines) ---\n{}",
            self.name,
            lines.len() - from,
            lines[from..].join("\n")
        )
    }

    /// Its daemon (this run) has reached peer `peer` itself.
    fn reached(&self, peer: &str) -> bool {
        let log = self.log();
        let mark = format!("peer={peer} ");
        log.get(self.log_mark..)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("replica answers") && l.contains(&mark))
    }

    fn follows(&self) -> usize {
        self.log().matches("guardian is following the chain").count()
    }

    /// `guardian run` with its config and env, once it follows the chain.
    pub(crate) async fn start(&mut self) {
        self.start_with(&[]).await;
    }

    async fn start_with(&mut self, extra: &[(&'static str, String)]) {
        assert!(self.daemon.is_none(), "replica {} already runs", self.name);
        let before = self.follows();
        self.log_mark = self.log().len();
        let env: Vec<(&str, String)> = self.env.iter().chain(extra).cloned().collect();
        let mut daemon = Daemon::start_with_env(
            &self.dir.path().join("guardian.toml"),
            &self.dir.path().join("guardian.log"),
            &env,
        );
        let deadline = Instant::now() + DEADLINE;
        while self.follows() <= before {
            if let Some(status) = daemon.exited() {
                panic!("replica {} exited at start ({status}):\n{}", self.name, self.tail());
            }
            assert!(
                Instant::now() < deadline,
                "replica {} never followed:\n{}",
                self.name,
                self.tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.daemon = Some(daemon);
    }

    /// SIGKILL.
    fn kill(&mut self) {
        self.daemon.take().expect("running").kill();
    }

    /// Fail, with its log, if it should run and has exited.
    fn check(&mut self) {
        if let Some(daemon) = &mut self.daemon
            && let Some(status) = daemon.exited()
        {
            panic!("replica {} exited ({status}):\n{}", self.name, self.tail());
        }
    }

    /// The CLI with this replica's config: (success, stdout, stderr).
    pub(crate) fn cli(
        &self,
        args: &[&str],
        env: &[(&'static str, String)],
    ) -> (bool, String, String) {
        let mut full = args.to_vec();
        full.extend(["--config", self.cfg.as_str()]);
        let mut env = env.to_vec();
        env.push(("TEST_API_TOKEN", TOKEN.to_owned()));
        guardian(&full, &env)
    }

    fn json(&self, args: &[&str]) -> Option<serde_json::Value> {
        let (ok, stdout, _) = self.cli(args, &[]);
        if !ok {
            return None;
        }
        serde_json::from_str(&stdout).ok()
    }

    fn proposals(&self) -> Vec<serde_json::Value> {
        self.json(&["proposals", "list", "--json"])
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// The pending pause proposal's safeTxHash.
    pub(crate) fn pending_pause(&self) -> Option<String> {
        self.proposals()
            .into_iter()
            .find(|p| p["kind"] == "pause" && p["status"] == "pending")
            .and_then(|p| p["safe_tx_hash"].as_str().map(str::to_owned))
    }

    /// `proposals show HASH --json`.
    fn proposal(&self, hash: &str) -> Option<serde_json::Value> {
        self.json(&["proposals", "show", hash, "--json"])
    }

    pub(crate) fn proposal_status(&self, hash: &str) -> Option<String> {
        self.proposal(hash)?["status"].as_str().map(str::to_owned)
    }

    /// `incidents show ID --json`.
    fn incident(&self, id: i64) -> Option<serde_json::Value> {
        self.json(&["incidents", "show", &id.to_string(), "--json"])
    }

    pub(crate) fn incidents(&self) -> Vec<serde_json::Value> {
        self.json(&["incidents", "list", "--json"])
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// `owner` signs `hash` off chain, into this replica's database.
    fn approve(&self, hash: &str, owner: &PrivateKeySigner) {
        let args = ["approve", hash, "--yes", "--private-key-env", "OWNER_KEY"];
        let (ok, stdout, stderr) = self.cli(&args, &[("OWNER_KEY", key_hex(owner))]);
        assert!(ok, "approve by {} on {} failed:\n{stdout}\n{stderr}", owner.address(), self.name);
    }

    /// Its managed deployment config points at VaultV1.
    fn rolled_back(&self, bed: &Testbed) -> bool {
        std::fs::read_to_string(self.dir.path().join("smart-accounts-config.json"))
            .is_ok_and(|now| now.contains(&bed.targets.vault_v1.to_string()))
    }
}

/// The threads of every running replica (a rare stall of one replica in this suite is
/// otherwise silent: it logs nothing more).
fn stacks(replicas: &[Replica]) -> String {
    replicas
        .iter()
        .filter_map(|r| {
            let daemon = r.daemon.as_ref()?;
            Some(format!("--- replica {} threads ---\n{}", r.name, daemon.stacks()))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn tails(replicas: &[Replica]) -> String {
    replicas.iter().map(Replica::tail).collect::<Vec<_>>().join("\n")
}

/// Poll `check` every 50 ms until it returns `Some`; fails with every replica's log tail after
/// `timeout`, or as soon as a replica that should run has exited.
pub(crate) async fn until<T>(
    what: &str,
    timeout: Duration,
    replicas: &mut [Replica],
    mut check: impl FnMut(&[Replica]) -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check(replicas) {
            return value;
        }
        for r in replicas.iter_mut() {
            r.check();
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}\n{}",
                tails(replicas),
                stacks(replicas)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// When VaultV2's `paused()` first answered true (polled every 20 ms for `timeout`).
async fn until_paused(bed: &Testbed, replicas: &mut [Replica], timeout: Duration) -> Instant {
    let reader = bed.devnet.reader();
    let deadline = Instant::now() + timeout;
    loop {
        if is_paused(&reader, bed.targets.vault_v2).await.expect("paused()") {
            return Instant::now();
        }
        for r in replicas.iter_mut() {
            r.check();
        }
        if Instant::now() > deadline {
            panic!("VaultV2 not paused within {timeout:?}\n{}", tails(replicas));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn same_address(value: &serde_json::Value, address: Address) -> bool {
    value.as_str().is_some_and(|s| s.eq_ignore_ascii_case(&address.to_string()))
}

fn mentions(text: &serde_json::Value, address: Address) -> bool {
    text.as_str().is_some_and(|s| s.to_lowercase().contains(&address.to_string().to_lowercase()))
}

/// The owners whose signatures `proposals show` lists, lower-case.
fn signers(detail: &serde_json::Value) -> BTreeSet<String> {
    detail["signatures"]
        .as_array()
        .map(|list| {
            list.iter().filter_map(|s| s["owner"].as_str()).map(str::to_lowercase).collect()
        })
        .unwrap_or_default()
}

fn owners(list: &[&PrivateKeySigner]) -> BTreeSet<String> {
    list.iter().map(|o| o.address().to_string().to_lowercase()).collect()
}

/// `GET /health` of the API on `port`.
async fn health(port: u16) -> Option<serde_json::Value> {
    let client = crate::support::http().build().ok()?;
    let answer = client.get(format!("http://127.0.0.1:{port}/health")).send().await.ok()?;
    serde_json::from_str(&answer.text().await.ok()?).ok()
}

/// `GET /status` of the daemon whose API is on `port`.
async fn daemon_status(port: u16) -> Option<serde_json::Value> {
    let client = crate::support::http().build().ok()?;
    let answer = client.get(format!("http://127.0.0.1:{port}/status")).send().await.ok()?;
    serde_json::from_str(&answer.text().await.ok()?).ok()
}

/// Wait until every running replica's `guardian status` shows each of its peers reachable,
/// with the peer's executor, and each daemon has reached its running peers itself (a peer that
/// started after the daemon's first look is only looked at again after a back-off), which its
/// own `/status` says too.
pub(crate) async fn peers_known(replicas: &mut [Replica]) {
    let executors: BTreeMap<&str, Option<Address>> =
        replicas.iter().map(|r| (r.name, r.executor.as_ref().map(|k| k.address()))).collect();
    until("every replica to reach its peers and know their executors", DEADLINE, replicas, |rs| {
        rs.iter()
            .filter(|r| r.daemon.is_some())
            .all(|r| {
                let running =
                    |peer: &&&str| rs.iter().any(|p| p.name == **peer && p.daemon.is_some());
                if !r.peers.iter().filter(running).all(|peer| r.reached(peer)) {
                    return false;
                }
                let Some(status) = r.json(&["status", "--json"]) else { return false };
                let Some(seen) = status["replicas"].as_array() else { return false };
                r.peers.iter().all(|peer| {
                    seen.iter().any(|e| {
                        e["name"] == *peer
                            && e["reachable"] == true
                            && match executors.get(peer).copied().flatten() {
                                Some(address) => same_address(&e["executor"], address),
                                None => e["executor"].is_null(),
                            }
                    })
                })
            })
            .then_some(())
    })
    .await;
    // The daemon's own `/status` (what its status page shows) lists the peers its relay tasks
    // reached, without asking them.
    let deadline = Instant::now() + DEADLINE;
    for r in replicas.iter().filter(|r| r.daemon.is_some()) {
        let running: Vec<&str> = r
            .peers
            .iter()
            .copied()
            .filter(|peer| replicas.iter().any(|p| p.name == *peer && p.daemon.is_some()))
            .collect();
        loop {
            let status = daemon_status(r.port).await;
            let shown =
                status.as_ref().and_then(|s| s["replicas"].as_array().cloned()).unwrap_or_default();
            let all_shown = running.iter().all(|peer| {
                shown.iter().any(|e| {
                    e["name"] == *peer
                        && e["reachable"] == true
                        && e["error"].is_null()
                        && match executors.get(peer).copied().flatten() {
                            Some(address) => same_address(&e["executor"], address),
                            None => e["executor"].is_null(),
                        }
                })
            });
            if all_shown {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}'s /status does not show its peers: {status:?}",
                r.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

// ----------------------------------------------------------------------------------------------
// chain

pub(crate) fn one_second_blocks() -> TestbedOptions {
    TestbedOptions {
        devnet: DevnetOptions { block_time: Some(1), ..DevnetOptions::default() },
        ..TestbedOptions::default()
    }
}

/// The safeTxHash of VaultV2's `pause()` at Safe nonce `nonce`, as every replica derives it.
fn pause_hash(bed: &Testbed, nonce: u64) -> B256 {
    let calldata = no_arg_calldata("pause()").expect("calldata");
    proposal_tx(bed.targets.vault_v2, calldata, U256::from(nonce))
        .safe_tx_hash(138, bed.safe.address())
}

/// From `candidates`, the one that ranks first to send `hash`, and the others.
fn first_sender(
    hash: B256,
    candidates: Vec<PrivateKeySigner>,
) -> (PrivateKeySigner, Vec<PrivateKeySigner>) {
    let all: Vec<Address> = candidates.iter().map(PrivateKeySigner::address).collect();
    let (first, rest): (Vec<_>, Vec<_>) =
        candidates.into_iter().partition(|k| sender_rank(hash, k.address(), &all) == 0);
    assert_eq!(first.len(), 1, "exactly one executor ranks first");
    (first.into_iter().next().expect("first"), rest)
}

pub(crate) fn signer(bed: &Testbed, index: usize) -> PrivateKeySigner {
    bed.devnet.signer(index).expect("dev account")
}

/// A deposit, then VaultV2's buggy sponsoredWithdraw drains 2 ether (dev accounts 7 and 8).
async fn drain(bed: &Testbed) {
    deposit(bed, "3").await;
    withdraw(bed).await;
}

pub(crate) async fn deposit(bed: &Testbed, ether: &str) {
    let user = bed.devnet.provider_for(signer(bed, 7));
    let vault = IVault::new(bed.targets.vault_v2, &user);
    let deposit = vault.deposit().value(parse_ether(ether).expect("ether"));
    deposit.send().await.expect("sent").get_receipt().await.expect("mined");
}

/// The drain alone: 2 ether out through sponsoredWithdraw (no balance check).
pub(crate) async fn withdraw(bed: &Testbed) {
    let user = bed.devnet.provider_for(signer(bed, 7));
    let vault = IVault::new(bed.targets.vault_v2, &user);
    let attacker = signer(bed, 8).address();
    let drain = vault.sponsoredWithdraw(attacker, parse_ether("2").expect("ether"));
    let receipt = drain.send().await.expect("sent").get_receipt().await.expect("mined");
    assert!(receipt.status(), "the drain succeeds");
}

/// Owners 1 and 2 `approveHash` on chain, at the same time.
pub(crate) async fn approve_onchain(bed: &Testbed, hash: &str) {
    let hash: B256 = hash.parse().expect("hash");
    let approve = |owner: &PrivateKeySigner| {
        let from = bed.devnet.provider_for(owner.clone());
        let owner = owner.address();
        async move { bed.safe.approve_hash_onchain(&from, owner, hash).await.expect("approveHash") }
    };
    tokio::join!(approve(&bed.owners[0]), approve(&bed.owners[1]));
}

/// The Safe's ExecutionSuccess logs: (safeTxHash, transaction).
pub(crate) async fn executions(bed: &Testbed) -> Vec<(B256, B256)> {
    let filter = Filter::new()
        .address(bed.safe.address())
        .event_signature(ISafe::ExecutionSuccess::SIGNATURE_HASH)
        .from_block(0u64);
    bed.devnet
        .reader()
        .get_logs(&filter)
        .await
        .expect("logs")
        .iter()
        .map(|l| (l.topics()[1], l.transaction_hash.expect("mined")))
        .collect()
}

/// A transaction one of the executors sent to the Safe.
#[derive(Debug)]
pub(crate) struct Sent {
    pub(crate) from: Address,
    pub(crate) tx: B256,
    pub(crate) success: bool,
}

/// Every transaction from `executors` to the Safe, from genesis to the head.
pub(crate) async fn sent_to_safe(bed: &Testbed, executors: &[Address]) -> Vec<Sent> {
    let reader = bed.devnet.reader();
    let head = reader.get_block_number().await.expect("head");
    let mut out = Vec::new();
    for number in 0..=head {
        let block = reader
            .get_block_by_number(BlockNumberOrTag::Number(number))
            .full()
            .await
            .expect("block")
            .expect("exists");
        for tx in block.transactions.txns() {
            let from = tx.inner.signer();
            if !executors.contains(&from) || tx.to() != Some(bed.safe.address()) {
                continue;
            }
            let hash = *tx.inner.tx_hash();
            let receipt =
                reader.get_transaction_receipt(hash).await.expect("receipt").expect("mined");
            out.push(Sent { from, tx: hash, success: receipt.status() });
        }
    }
    out
}

// ----------------------------------------------------------------------------------------------
// tests

/// Owner 1 signs on A and owner 2 on B: the signatures are relayed, the pause executes once,
/// within 3 s of the second signature, and every replica lists both signatures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_signing_on_different_replicas_execute_the_pause_once_within_three_seconds() {
    let bed = testbed().await;
    let setup = Setup { sender_delay: Some(SENDER_DELAY), ..Setup::default() };
    let mut rs =
        mesh(&bed, &[("alpha", signer(&bed, 4)), ("bravo", signer(&bed, 5))], &setup).await;
    for r in &mut rs {
        r.start().await;
    }
    for r in &rs {
        let view = health(r.port).await.expect("GET /health");
        assert_eq!(view["replica"], r.name, "{view}");
        assert!(same_address(&view["executor"], r.exec()), "{view}");
    }
    peers_known(&mut rs).await;
    drain(&bed).await;
    let hash = until("the pause proposal on both replicas", DEADLINE, &mut rs, |rs| {
        let (a, b) = (rs[0].pending_pause()?, rs[1].pending_pause()?);
        assert_eq!(a, b, "both derive the same safeTxHash");
        Some(a)
    })
    .await;

    rs[0].approve(&hash, &bed.owners[0]);
    rs[1].approve(&hash, &bed.owners[1]);
    let second = Instant::now();
    let paused = until_paused(&bed, &mut rs, Duration::from_secs(3)).await;
    assert!(paused - second <= Duration::from_secs(3), "paused {:?} after", paused - second);

    let both = owners(&[&bed.owners[0], &bed.owners[1]]);
    until("both replicas: executed, with both signatures", DEADLINE, &mut rs, |rs| {
        rs.iter()
            .all(|r| {
                r.proposal(&hash).is_some_and(|d| d["status"] == "executed" && signers(&d) == both)
            })
            .then_some(())
    })
    .await;
    // Each replica sees the other's view of the proposal: reachable, executed.
    until("each replica's proposals list to show its peer's view", DEADLINE, &mut rs, |rs| {
        rs.iter()
            .all(|r| {
                let list = r.proposals();
                let Some(p) = list.iter().find(|p| p["safe_tx_hash"] == hash.as_str()) else {
                    return false;
                };
                let peers = p["replicas"].as_array().cloned().unwrap_or_default();
                r.peers.iter().all(|peer| {
                    peers.iter().any(|e| {
                        e["name"] == *peer && e["reachable"] == true && e["status"] == "executed"
                    })
                })
            })
            .then_some(())
    })
    .await;

    // A second sender would have gone by now (rank 1 waits one sender delay).
    tokio::time::sleep(
        (second + SENDER_DELAY + Duration::from_secs(1)).saturating_duration_since(Instant::now()),
    )
    .await;
    let done = executions(&bed).await;
    assert_eq!(done.len(), 1, "exactly one execTransaction succeeded: {done:?}");
    assert_eq!(done[0].0.to_string(), hash);
    let executors = [rs[0].exec(), rs[1].exec()];
    let sent = sent_to_safe(&bed, &executors).await;
    assert_eq!(
        sent.len(),
        1,
        "one execTransaction sent, none lost a race: {sent:?}\n{}",
        tails(&rs)
    );
    assert_eq!(bed.safe.nonce().await.expect("nonce"), U256::from(1));
    let senders: Vec<serde_json::Value> = rs
        .iter()
        .map(|r| r.incident(1).expect("incident 1")["incident"]["execution"]["sender"].clone())
        .collect();
    assert!(same_address(&senders[0], sent[0].from), "{senders:?} vs {sent:?}");
    assert!(same_address(&senders[1], sent[0].from), "{senders:?} vs {sent:?}");
}

/// Both owners sign on A, which aborts right before it sends (it ranks first): B executes
/// within its rank delay. A, restarted, records the execution by B, with B's address, and rolls
/// back its own configs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_dying_before_its_send_leaves_the_pause_to_its_peer_and_rolls_back_on_restart() {
    let bed = testbed().await;
    let hash = pause_hash(&bed, 0);
    let (first, rest) = first_sender(hash, vec![signer(&bed, 4), signer(&bed, 5)]);
    let setup = Setup { rollback: true, sender_delay: Some(SENDER_DELAY), ..Setup::default() };
    let mut rs = mesh(&bed, &[("alpha", first), ("bravo", rest[0].clone())], &setup).await;
    let (exec_a, exec_b) = (rs[0].exec(), rs[1].exec());
    rs[0].start_with(&[("GUARDIAN_TEST_CRASH_BEFORE_SEND", "1".to_owned())]).await;
    rs[1].start().await;
    peers_known(&mut rs).await;
    drain(&bed).await;
    until("the pause proposal on both replicas", DEADLINE, &mut rs, |rs| {
        (rs[0].pending_pause()? == hash.to_string() && rs[1].pending_pause()? == hash.to_string())
            .then_some(())
    })
    .await;
    let hash = hash.to_string();

    rs[0].approve(&hash, &bed.owners[0]);
    rs[0].approve(&hash, &bed.owners[1]);
    let second = Instant::now();
    // A reaches the threshold first, ranks first, and aborts right before its send.
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = rs[0].daemon.as_mut().expect("alpha runs").exited() {
            break status;
        }
        rs[1].check();
        assert!(Instant::now() < deadline, "alpha never tried to send:\n{}", tails(&rs));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!status.success(), "alpha aborted: {status:?}");
    assert!(rs[0].log().contains("aborting before the send"), "by the hook:\n{}", rs[0].tail());
    rs[0].daemon = None;

    // B has both signatures by relay, waits its rank delay, and sends.
    let bound = SENDER_DELAY + Duration::from_secs(4);
    let paused = {
        let reader = bed.devnet.reader();
        loop {
            if is_paused(&reader, bed.targets.vault_v2).await.expect("paused()") {
                break Instant::now();
            }
            rs[1].check();
            if second.elapsed() > bound {
                panic!(
                    "bravo did not execute within {bound:?} of the second signature; bravo holds {:?}\n{}",
                    rs[1].proposal(&hash).map(|d| signers(&d)),
                    tails(&rs)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert!(paused - second <= bound, "within the rank delay");
    let sent = sent_to_safe(&bed, &[exec_a, exec_b]).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].from, exec_b, "bravo sent it; alpha sent nothing: {sent:?}");
    assert!(sent[0].success);
    let b_view = until("bravo to record its execution", DEADLINE, &mut rs, |rs| {
        rs[1].proposal(&hash).filter(|d| d["status"] == "executed")
    })
    .await;
    assert!(mentions(&b_view["executed_by"], exec_b), "{b_view}");

    // A comes back without the hook: it records B's execution and rolls its own configs back.
    rs[0].start().await;
    let a_view = until("alpha to record bravo's execution", DEADLINE, &mut rs, |rs| {
        rs[0].proposal(&hash).filter(|d| d["status"] == "executed")
    })
    .await;
    assert!(mentions(&a_view["executed_by"], exec_b), "names bravo's address: {a_view}");
    assert!(
        a_view["executed_by"].as_str().is_some_and(|s| s.contains("bravo")),
        "names bravo: {a_view}"
    );
    assert_eq!(a_view["executed_tx"].as_str(), Some(sent[0].tx.to_string().as_str()), "{a_view}");
    until("both replicas to roll back and recover", DEADLINE, &mut rs, |rs| {
        rs.iter()
            .all(|r| {
                r.rolled_back(&bed) && r.incident(1).is_some_and(|v| v["state"] == "recovered")
            })
            .then_some(())
    })
    .await;
    let a_incident = rs[0].incident(1).expect("alpha's incident");
    let execution = &a_incident["incident"]["execution"];
    assert!(same_address(&execution["sender"], exec_b), "{a_incident}");
    assert_eq!(execution["by"], "peer", "{a_incident}");
    let b_incident = rs[1].incident(1).expect("bravo's incident");
    assert!(same_address(&b_incident["incident"]["execution"]["sender"], exec_b), "{b_incident}");
    assert_eq!(b_incident["incident"]["execution"]["by"], "this_replica", "{b_incident}");
    // The restarted A did not send either.
    let sent = sent_to_safe(&bed, &[exec_a, exec_b]).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(executions(&bed).await.len(), 1);
    assert_eq!(bed.safe.nonce().await.expect("nonce"), U256::from(1));
}

/// C starts with an empty database while A holds a pending proposal with one owner's
/// signature (A does not list C, so nothing is pushed to C): C pulls both from A, and the
/// pulled signature counts toward the threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_with_an_empty_database_pulls_the_pending_proposal_and_signatures() {
    let bed = testbed().await;
    let ports = free_ports(2);
    let setup = Setup { sender_delay: Some(SENDER_DELAY), ..Setup::default() };
    // A proposes and counts only, so C is the one sender.
    let a = replica(&bed, "alpha", ports[0], None, &[], &setup).await;
    let c =
        replica(&bed, "charlie", ports[1], Some(signer(&bed, 6)), &[("alpha", ports[0])], &setup)
            .await;
    let mut rs = vec![a, c];
    rs[0].start().await;
    drain(&bed).await;
    let hash = until("alpha's pause proposal", DEADLINE, &mut rs, |rs| rs[0].pending_pause()).await;
    rs[0].approve(&hash, &bed.owners[0]);

    // C starts at the head, after the drain: it can only learn the proposal from A.
    rs[1].start().await;
    let one = owners(&[&bed.owners[0]]);
    let pulled = until(
        "charlie to pull the proposal with its signature",
        Duration::from_secs(20),
        &mut rs,
        |rs| rs[1].proposal(&hash).filter(|d| d["status"] == "pending" && signers(d) == one),
    )
    .await;
    assert_eq!(pulled["kind"], "pause", "{pulled}");
    assert_eq!(pulled["contract"], "vault", "{pulled}");
    assert_eq!(pulled["nonce"], "0x0", "{pulled}");
    peers_known(&mut rs).await;
    until("charlie's proposals list to show alpha's count", DEADLINE, &mut rs, |rs| {
        let list = rs[1].proposals();
        let p = list.iter().find(|p| p["safe_tx_hash"] == hash.as_str())?;
        p["replicas"]
            .as_array()?
            .iter()
            .any(|e| {
                e["name"] == "alpha"
                    && e["reachable"] == true
                    && e["approvals"] == 1
                    && e["status"] == "pending"
            })
            .then_some(())
    })
    .await;

    // Nobody re-signs: owner 2's signature on C completes the threshold.
    rs[1].approve(&hash, &bed.owners[1]);
    until_paused(&bed, &mut rs, DEADLINE).await;
    until("both replicas to record the execution", DEADLINE, &mut rs, |rs| {
        rs.iter().all(|r| r.proposal_status(&hash).as_deref() == Some("executed")).then_some(())
    })
    .await;
    assert_eq!(executions(&bed).await.len(), 1);
    let sent = sent_to_safe(&bed, &[rs[1].exec()]).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
}

/// The drain with two replicas notifying one receiver in `mode`: owner 1 signs on alpha, then
/// (once both count it) owner 2 on bravo; returns once both replicas are recovered.
async fn drain_notified(mode: &'static str) -> (Testbed, Receiver, Vec<Replica>) {
    let bed = testbed().await;
    let receiver = Receiver::start().await;
    let setup = Setup {
        rollback: true,
        webhook: Some((mode, receiver.port)),
        sender_delay: Some(SENDER_DELAY),
        leader_timeout: Some(LEADER_TIMEOUT),
    };
    let mut rs =
        mesh(&bed, &[("alpha", signer(&bed, 4)), ("bravo", signer(&bed, 5))], &setup).await;
    for r in &mut rs {
        r.start().await;
    }
    peers_known(&mut rs).await;
    drain(&bed).await;
    let hash = until("the pause proposal on both replicas", DEADLINE, &mut rs, |rs| {
        let (a, b) = (rs[0].pending_pause()?, rs[1].pending_pause()?);
        (a == b).then_some(a)
    })
    .await;
    rs[0].approve(&hash, &bed.owners[0]);
    until("both replicas to count one approval", DEADLINE, &mut rs, |rs| {
        rs.iter()
            .all(|r| {
                r.proposals()
                    .iter()
                    .any(|p| p["safe_tx_hash"] == hash.as_str() && p["approvals"] == 1)
            })
            .then_some(())
    })
    .await;
    rs[1].approve(&hash, &bed.owners[1]);
    until("both replicas to roll back and recover", DEADLINE, &mut rs, |rs| {
        rs.iter()
            .all(|r| {
                r.rolled_back(&bed) && r.incident(1).is_some_and(|v| v["state"] == "recovered")
            })
            .then_some(())
    })
    .await;
    (bed, receiver, rs)
}

/// What the receiver got under one idempotency key.
#[derive(Debug, Default)]
struct Keyed {
    kinds: BTreeSet<String>,
    replicas: BTreeSet<String>,
    count: usize,
}

/// The deliveries grouped by their `Idempotency-Key` header.
fn by_key(deliveries: &[Delivery]) -> BTreeMap<String, Keyed> {
    let mut out: BTreeMap<String, Keyed> = BTreeMap::new();
    for d in deliveries {
        let entry = out.entry(d.header_key.clone().unwrap_or_default()).or_default();
        entry.kinds.insert(d.kind().to_owned());
        entry.replicas.insert(d.body["replica"].as_str().unwrap_or_default().to_owned());
        entry.count += 1;
    }
    out
}

fn kind_of(keyed: &Keyed) -> &str {
    keyed.kinds.iter().next().map_or("", String::as_str)
}

/// The kinds of the incident-wide (not per-host) keys, sorted.
fn incident_kinds(keys: &BTreeMap<String, Keyed>) -> Vec<String> {
    let mut kinds: Vec<String> =
        keys.values().map(kind_of).filter(|k| !PER_HOST.contains(k)).map(str::to_owned).collect();
    kinds.sort();
    kinds
}

/// One of each incident event of the drain, sorted.
const INCIDENT_EVENTS: [&str; 5] = ["approval", "approval", "executed", "opened", "pause_proposed"];

/// Wait until every replica has settled each notification of incident 1 (none pending).
async fn settled(replicas: &mut [Replica]) {
    until("every replica to settle every notification", DEADLINE, replicas, |rs| {
        rs.iter()
            .all(|r| {
                r.incident(1).is_some_and(|v| {
                    v["notifications"].as_array().is_some_and(|list| {
                        !list.is_empty() && list.iter().all(|n| n["status"] == "done")
                    })
                })
            })
            .then_some(())
    })
    .await;
}

/// Whether `expected` is contained in `actual`, counting repeats.
fn covers(actual: &[String], expected: &[&str]) -> bool {
    let mut rest: Vec<&str> = actual.iter().map(String::as_str).collect();
    expected.iter().all(|e| match rest.iter().position(|a| a == e) {
        Some(i) => {
            rest.remove(i);
            true
        }
        None => false,
    })
}

/// The keys as received, and the replicas' log tails, for a failure.
/// Once every replica has settled: what the receiver got by key (each delivery well formed),
/// and how to show it in a failure.
async fn settled_keys(
    replicas: &mut [Replica],
    receiver: &Receiver,
) -> (BTreeMap<String, Keyed>, String) {
    settled(replicas).await;
    let deliveries = receiver.deliveries();
    well_formed(&deliveries);
    let keys = by_key(&deliveries);
    let shown = shown(&keys, replicas);
    (keys, shown)
}

fn shown(keys: &BTreeMap<String, Keyed>, replicas: &[Replica]) -> String {
    let lines: Vec<String> = keys
        .iter()
        .map(|(key, k)| format!("{key}: {:?} from {:?} ×{}", k.kinds, k.replicas, k.count))
        .collect();
    format!("{lines:#?}\n{}", tails(replicas))
}

fn well_formed(deliveries: &[Delivery]) {
    for d in deliveries {
        assert!(!d.key().is_empty(), "an idempotency key: {:?}", d.body);
        assert_eq!(d.header_key.as_deref(), Some(d.key()), "the header carries the body's key");
        assert!(
            ["alpha", "bravo"].contains(&d.body["replica"].as_str().unwrap_or_default()),
            "names its replica: {:?}",
            d.body
        );
    }
}

/// Both replicas notify (mode "all"): every incident event arrives from both under the same
/// key and kind, so a receiver merging by key sees each once; each host's rollback and
/// recovery arrive once, under keys naming that host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_replicas_notify_each_lifecycle_event_under_one_idempotency_key() {
    let (_bed, receiver, mut rs) = drain_notified("all").await;
    let both: BTreeSet<String> = ["alpha", "bravo"].map(String::from).into();
    // Wait for what must arrive; whatever else came is reported by the assertions below.
    let complete = |keys: &BTreeMap<String, Keyed>| {
        let from_both: Vec<String> = keys
            .values()
            .filter(|k| !PER_HOST.contains(&kind_of(k)) && k.replicas == both)
            .map(|k| kind_of(k).to_owned())
            .collect();
        covers(&from_both, &INCIDENT_EVENTS)
            && ["rollback_done", "recovery_verified"].iter().all(|kind| {
                both.iter().all(|name| {
                    keys.values().any(|k| kind_of(k) == *kind && k.replicas.contains(name))
                })
            })
    };
    until("every notification from both replicas", DEADLINE, &mut rs, |_| {
        complete(&by_key(&receiver.deliveries())).then_some(())
    })
    .await;
    let (keys, shown) = settled_keys(&mut rs, &receiver).await;
    for (key, k) in &keys {
        assert_eq!(k.kinds.len(), 1, "one kind per key {key}: {shown}");
        if PER_HOST.contains(&kind_of(k)) {
            assert_eq!(k.replicas.len(), 1, "a host's own event: {shown}");
            let host = k.replicas.iter().next().expect("one");
            assert!(key.contains(host.as_str()), "its key names the host {host}: {shown}");
        } else {
            assert_eq!(k.replicas, both, "{key} from both replicas: {shown}");
        }
    }
    assert_eq!(incident_kinds(&keys), INCIDENT_EVENTS, "one per incident event: {shown}");
    for kind in ["rollback_done", "recovery_verified"] {
        let n = keys.values().filter(|k| kind_of(k) == kind).count();
        assert_eq!(n, 2, "one {kind} per host: {shown}");
    }
}

/// With `mode = "leader"` on both replicas, every notification was sent by exactly one replica
/// (the incident's leader, for the incident events), once every replica has settled each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_leader_mode_exactly_one_replica_sends_each_notification() {
    let (_bed, receiver, mut rs) = drain_notified("leader").await;
    until("every incident event", DEADLINE, &mut rs, |_| {
        covers(&incident_kinds(&by_key(&receiver.deliveries())), &INCIDENT_EVENTS).then_some(())
    })
    .await;
    // Every replica has decided on each of its notifications (sent, or left to the one ranked
    // before it that delivered it): a wrong take-over would have been sent by now.
    let (keys, shown) = settled_keys(&mut rs, &receiver).await;
    for (key, k) in &keys {
        assert_eq!(k.kinds.len(), 1, "one kind per key {key}: {shown}");
        assert_eq!(k.replicas.len(), 1, "{key} sent by exactly one replica: {shown}");
        if PER_HOST.contains(&kind_of(k)) {
            let host = k.replicas.iter().next().expect("one");
            assert!(key.contains(host.as_str()), "its key names the host {host}: {shown}");
        }
    }
    assert_eq!(incident_kinds(&keys), INCIDENT_EVENTS, "one per incident event: {shown}");
    let leaders: BTreeSet<&String> = keys
        .values()
        .filter(|k| !PER_HOST.contains(&kind_of(k)))
        .flat_map(|k| &k.replicas)
        .collect();
    assert_eq!(leaders.len(), 1, "the incident's leader sent its events: {shown}");
}

/// Three replicas; the one whose executor ranks first for the pause is SIGKILLed during the
/// drain, after the first signature and right after it gets the second one, and restarted each
/// time: one execution, and every replica ends contained with its configs rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_with_one_killed_repeatedly_during_the_drain_execute_once_and_roll_back() {
    let bed = testbed().await;
    let hash = pause_hash(&bed, 0);
    let keys = [signer(&bed, 4), signer(&bed, 5), signer(&bed, 6)];
    let (first, _) = first_sender(hash, keys.to_vec());
    let victim = keys.iter().position(|k| k.address() == first.address()).expect("one of them");
    let setup = Setup { rollback: true, sender_delay: Some(SENDER_DELAY), ..Setup::default() };
    let names = ["alpha", "bravo", "charlie"];
    let members: Vec<(&'static str, PrivateKeySigner)> =
        names.iter().copied().zip(keys.iter().cloned()).collect();
    let mut rs = mesh(&bed, &members, &setup).await;
    for r in &mut rs {
        r.start().await;
    }
    peers_known(&mut rs).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    let hash = hash.to_string();

    // Down while the drain happens.
    rs[victim].kill();
    drain(&bed).await;
    rs[victim].start().await;
    until("the pause proposal on every replica", DEADLINE, &mut rs, |rs| {
        rs.iter().all(|r| r.pending_pause().as_deref() == Some(hash.as_str())).then_some(())
    })
    .await;
    // Down while the first owner signs elsewhere.
    rs[victim].kill();
    rs[others[0]].approve(&hash, &bed.owners[0]);
    rs[victim].start().await;
    // Killed right after the second owner signs on it: it is at the threshold and first to send.
    rs[victim].approve(&hash, &bed.owners[1]);
    rs[victim].kill();
    rs[victim].start().await;

    until_paused(&bed, &mut rs, DEADLINE).await;
    until("every replica: executed, contained, rolled back", DEADLINE, &mut rs, |rs| {
        rs.iter()
            .all(|r| {
                r.proposal_status(&hash).as_deref() == Some("executed")
                    && r.rolled_back(&bed)
                    && r.incident(1).is_some_and(|v| {
                        ["contained", "recovering", "recovered"]
                            .contains(&v["state"].as_str().unwrap_or_default())
                            && v["incident"]["rollback"]["status"] == "done"
                    })
            })
            .then_some(())
    })
    .await;
    let done = executions(&bed).await;
    assert_eq!(done.len(), 1, "one execution: {done:?}\n{}", tails(&rs));
    assert_eq!(done[0].0.to_string(), hash);
    assert_eq!(bed.safe.nonce().await.expect("nonce"), U256::from(1));
    let senders: BTreeSet<String> = rs
        .iter()
        .map(|r| {
            r.incident(1).expect("incident")["incident"]["execution"]["sender"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase()
        })
        .collect();
    assert_eq!(senders.len(), 1, "every replica names the same sender: {senders:?}");
    let executors: Vec<Address> = rs.iter().map(Replica::exec).collect();
    let sent = sent_to_safe(&bed, &executors).await;
    assert!(
        sent.iter().filter(|s| s.success).count() == 1,
        "victim {}: one successful execTransaction: {sent:?}",
        names[victim]
    );
}

/// A second daemon on a taken `[api] bind` fails at start, naming the address; the API on that
/// port stays the first one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_a_taken_api_bind_fails_at_start() {
    let bed = testbed().await;
    let port = free_ports(1)[0];
    let mut first =
        replica(&bed, "alpha", port, Some(signer(&bed, 4)), &[], &Setup::default()).await;
    first.start().await;
    let second = replica(&bed, "bravo", port, Some(signer(&bed, 5)), &[], &Setup::default()).await;
    let env: Vec<(&str, String)> = second.env.clone();
    let mut daemon = Daemon::start_with_env(
        &second.dir.path().join("guardian.toml"),
        &second.dir.path().join("guardian.log"),
        &env,
    );
    let status =
        crate::support::eventually("the second daemon to exit", Duration::from_secs(30), || {
            daemon.exited()
        })
        .await;
    assert!(!status.success(), "{status:?}");
    let said = second.log();
    assert!(said.contains(&format!("127.0.0.1:{port}")), "names the bind:\n{said}");
    first.check();
    let view = health(port).await.expect("GET /health");
    assert!(same_address(&view["executor"], first.exec()), "still the first daemon: {view}");
}

/// Two guardians on one Safe that do not know each other (no `[[replicas]]`: each ranks itself
/// first) both send at the threshold, into the same block: one execution succeeds, and the
/// loser records the lost race with the winner's address and transaction, not as a signature
/// error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_race_is_recorded_with_the_winner_not_as_a_signature_error() {
    let bed = testbed().await;
    let ports = free_ports(2);
    let setup = Setup::default();
    let mut rs = vec![
        replica(&bed, "alpha", ports[0], Some(signer(&bed, 4)), &[], &setup).await,
        replica(&bed, "bravo", ports[1], Some(signer(&bed, 5)), &[], &setup).await,
    ];
    for r in &mut rs {
        r.start().await;
    }
    drain(&bed).await;
    let hash = until("the pause proposal on both", DEADLINE, &mut rs, |rs| {
        let a = rs[0].pending_pause()?;
        (rs[1].pending_pause()? == a).then_some(a)
    })
    .await;
    // Nothing is mined until the test says: both approvals go into one block, then both
    // guardians' executions into the next.
    let reader = bed.devnet.reader();
    reader.anvil_set_auto_mine(false).await.expect("automine off");
    let pending = |who: Address| {
        let reader = reader.clone();
        async move { reader.get_transaction_count(who).pending().await.expect("nonce") }
    };
    let owners = [bed.owners[0].address(), bed.owners[1].address()];
    let before = [pending(owners[0]).await, pending(owners[1]).await];
    let approval: B256 = hash.parse().expect("hash");
    let approve = |owner: &PrivateKeySigner| {
        let (from, who) = (bed.devnet.provider_for(owner.clone()), owner.address());
        let safe = &bed.safe;
        async move { safe.approve_hash_onchain(&from, who, approval).await.expect("approveHash") }
    };
    let mine_both = async {
        let deadline = Instant::now() + DEADLINE;
        while pending(owners[0]).await == before[0] || pending(owners[1]).await == before[1] {
            assert!(Instant::now() < deadline, "the approvals never reached the pool");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        reader.anvil_mine(Some(1), None).await.expect("mine the approvals");
    };
    tokio::join!(approve(&bed.owners[0]), approve(&bed.owners[1]), mine_both);
    // Both reach the threshold. Each sends, unless the node's pending state already holds the
    // other's execTransaction (then its gas estimate reverts and it retries): either way it
    // loses the race once the block is mined.
    let executors = [rs[0].exec(), rs[1].exec()];
    let deadline = Instant::now() + DEADLINE;
    let mut first_seen: Option<Instant> = None;
    loop {
        let sent = [pending(executors[0]).await, pending(executors[1]).await];
        if sent.iter().all(|n| *n > 0) {
            break;
        }
        if sent.iter().any(|n| *n > 0) {
            let since = *first_seen.get_or_insert_with(Instant::now);
            let refused = rs.iter().any(|r| r.log().contains("will retry"));
            if refused || since.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
        for r in &mut rs {
            r.check();
        }
        assert!(Instant::now() < deadline, "no guardian sent:\n{}", tails(&rs));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reader.anvil_mine(Some(1), None).await.expect("mine both executions");
    reader.anvil_set_auto_mine(true).await.expect("automine on");

    until("executed on both", DEADLINE, &mut rs, |rs| {
        rs.iter().all(|r| r.proposal_status(&hash).as_deref() == Some("executed")).then_some(())
    })
    .await;
    let done = executions(&bed).await;
    assert_eq!(done.len(), 1, "one execution: {done:?}");
    let winner_tx = done[0].1;
    let sent = sent_to_safe(&bed, &executors).await;
    assert!(!sent.is_empty() && sent.len() <= 2, "{sent:?}");
    let winner = sent.iter().find(|s| s.tx == winner_tx).expect("the winner is an executor").from;
    let trail = until("the loser to record the race", DEADLINE, &mut rs, |rs| {
        let loser = rs.iter().find(|r| r.exec() != winner)?;
        let trail = loser.proposal(&hash)?;
        trail["events"].as_array()?.iter().any(|e| e["event"] == "race_lost").then_some(trail)
    })
    .await;
    let loser = rs.iter().find(|r| r.exec() != winner).expect("a loser");
    let lost: Vec<&serde_json::Value> = trail["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event"] == "race_lost")
        .collect();
    assert_eq!(lost.len(), 1, "{} records the lost race once:\n{trail:#}", loser.name);
    let detail = lost[0]["detail"].as_str().expect("detail").to_lowercase();
    assert!(detail.contains(&winner.to_string().to_lowercase()), "names the winner: {detail}");
    assert!(detail.contains(&winner_tx.to_string()), "names its transaction: {detail}");
    let own = sent.iter().find(|s| s.from != winner);
    match own {
        Some(mine) => {
            assert!(!mine.success, "{sent:?}");
            assert!(
                detail.contains(&format!("{} reverted", mine.tx)),
                "its own reverted: {detail}"
            );
        }
        None => assert!(detail.contains("not sent"), "its own was never sent: {detail}"),
    }
    assert!(!loser.log().contains("signature rejected"), "{}", loser.tail());
    let winner_replica = rs.iter().find(|r| r.exec() == winner).expect("winner");
    let theirs = winner_replica.proposal(&hash).expect("show");
    assert!(
        !theirs["events"].as_array().expect("events").iter().any(|e| e["event"] == "race_lost"),
        "the winner lost nothing"
    );
}
