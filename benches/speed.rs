//! guardian's speed on a real Anvil (chain id 138), printed as min / median / max:
//!
//! ```sh
//! cargo bench --bench speed            # SAMPLES=10 for a quicker, rougher run
//! ONLY=backfill,idle cargo bench --bench speed   # some groups: detection, webhook, backlog,
//!                                                # live, backfill, idle
//! ```
//!
//! - block visible → finding committed, with heads pushed over WebSocket and with HTTP polling
//!   at the default `poll_interval_ms`. "Visible" is the moment a client polling the node every
//!   millisecond first gets the anomaly's receipt; "committed" the moment the finding is in
//!   SQLite, read through a second connection polled every 200 µs.
//! - block visible → webhook received: the same, through the notifier to a local HTTP receiver
//!   that answers at once (each sample opens a new incident, so each sends an `opened`).
//! - a backlog of 300 alerts (300 incidents) → all received by that receiver.
//! - backfill blocks/s: log rules (event, window) over 10 000 blocks holding 50 000 logs; state
//!   rules (one rule of each kind: event, window, revert_rate, balance_drop, code_change,
//!   invariant) over 3 000 blocks, through Multicall3 and through batched JSON-RPC, on an Anvil
//!   keeping its history in memory, and through Multicall3 on Anvil's default history (states
//!   older than a few hundred blocks parsed from JSON files at each read).
//! - 1 000 watched contracts, each with an invariant and a balance_drop rule: block mined →
//!   block committed, live over WebSocket.
//! - the `guardian run` binary idle on a chain with 1 s blocks: RSS and CPU over 60 s.
//!
//! The follower, the rule engine (built from config text), the store and the notifier are
//! guardian's own; only the clocks are the benchmark's. Nothing here is asserted as a timing.

#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::{
    primitives::{Address, B256, Bytes, U256},
    providers::{DynProvider, Provider, ext::AnvilApi},
    rpc::types::TransactionRequest,
    sol,
    sol_types::SolCall,
    transports::http::reqwest,
};
use eyre::{Result, WrapErr, ensure, eyre};
use guardian_chain::{
    Contracts, Testbed, TestbedOptions, Toolchain, devnet::DevnetOptions, safe::deploy,
};
use guardian_core::{
    finding::{Anomaly, Evidence, Finding},
    severity::{Action, Severity},
};
use guardian_daemon::{
    Engine, Follower, FollowerOptions, RpcPool, Step, heads,
    notifier::{self, Backoff, Channel, Webhook},
};
use guardian_store::{BlockRef, Store};
use tokio::sync::{Notify, mpsc, watch};

sol! {
    interface ILoadGenerator {
        function emitWithdrawals(uint256 count, uint256 amount) external;
        function fail() external;
    }
}

/// Historical states Anvil keeps in memory for the state backfills (more than their blocks).
const STATE_HISTORY: u64 = 10_000;

/// Amounts at or above this fire the event rule.
const FIRE_AT: u64 = 1_000_000;

fn samples() -> usize {
    std::env::var("SAMPLES").ok().and_then(|s| s.parse().ok()).unwrap_or(50)
}

/// Whether the group of figures `group` runs: `ONLY=backfill,idle` runs those two groups
/// (detection, webhook, backlog, live, backfill, idle); unset runs them all.
fn wanted(group: &str) -> bool {
    std::env::var("ONLY").map_or(true, |only| only.split(',').any(|g| g.trim() == group))
}

/// A testbed with LoadGenerator deployed, for one backfill figure.
async fn state_bed(
    toolchain: &Toolchain,
    contracts: &Contracts,
    multicall3: bool,
    history_in_memory: Option<u64>,
) -> Result<(Testbed, DynProvider, Address)> {
    let bed = Testbed::start(
        toolchain,
        contracts,
        &TestbedOptions {
            multicall3,
            devnet: DevnetOptions { history_in_memory, ..DevnetOptions::default() },
            ..TestbedOptions::default()
        },
    )
    .await?;
    let wallet = bed.devnet.provider_for(bed.devnet.signer(9)?);
    let generator = deploy(&wallet, contracts.get("LoadGenerator")?, &[]).await?;
    Ok((bed, wallet, generator))
}

/// One printed line: a figure's samples.
struct Figure {
    name: String,
    unit: &'static str,
    values: Vec<f64>,
}

impl Figure {
    fn new(name: impl Into<String>, unit: &'static str, mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        Self { name: name.into(), unit, values }
    }

    fn print(&self) {
        let v = &self.values;
        let median = if v.is_empty() { f64::NAN } else { v[v.len() / 2] };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            self.name,
            self.unit,
            v.len(),
            show(v.first().copied().unwrap_or(f64::NAN)),
            show(median),
            show(v.last().copied().unwrap_or(f64::NAN)),
        );
    }
}

fn show(x: f64) -> String {
    if x.abs() >= 100.0 { format!("{x:.0}") } else { format!("{x:.1}") }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// guardian's engine from config text, as `guardian run` builds it.
fn engine(toml: &str) -> Result<Engine> {
    let config = guardian_config::Config::parse(toml, Path::new("bench.toml"), &|_| None)
        .map_err(|e| eyre!("{e}"))?;
    Ok(Engine::new(config.rule_engine().map_err(|e| eyre!("{e}"))?))
}

const WITHDRAWN: &str = "Withdrawn(address indexed account, address indexed to, uint256 amount)";

/// `[[contracts]]` for each of `addresses`, named `c0`, `c1`, …
fn contracts_toml(addresses: &[Address]) -> String {
    addresses
        .iter()
        .enumerate()
        .map(|(i, a)| {
            format!(
                "[[contracts]]\nname = \"c{i}\"\naddress = \"{a}\"\nevents = [\"{WITHDRAWN}\"]\n\n"
            )
        })
        .collect()
}

fn names(n: usize) -> String {
    (0..n).map(|i| format!("\"c{i}\"")).collect::<Vec<_>>().join(", ")
}

fn event_rule(n: usize, severity: &str) -> String {
    format!(
        "[[rules]]\nname = \"large-withdrawal\"\nkind = \"event\"\nseverity = \"{severity}\"\ncontracts = [{}]\nevent = \"Withdrawn\"\nwhere = [\"amount >= {FIRE_AT}\"]\n",
        names(n)
    )
}

fn config(addresses: &[Address], rules: &str) -> String {
    format!("[[rpc]]\nurl = \"http://127.0.0.1:1\"\n\n{}{rules}", contracts_toml(addresses))
}

/// Send `tx` and return once a client polling every millisecond sees its receipt.
async fn send_visible(
    wallet: &DynProvider,
    reader: &DynProvider,
    tx: TransactionRequest,
) -> Result<Instant> {
    let hash = *wallet.send_transaction(tx).await?.tx_hash();
    loop {
        if let Some(receipt) = reader.get_transaction_receipt(hash).await? {
            ensure!(receipt.status(), "load transaction reverted");
            return Ok(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn emit(generator: Address, count: u64, amount: u64) -> TransactionRequest {
    let call = ILoadGenerator::emitWithdrawalsCall {
        count: U256::from(count),
        amount: U256::from(amount),
    };
    TransactionRequest::default()
        .to(generator)
        .input(Bytes::from(call.abi_encode()).into())
        .gas_limit(5_000_000)
}

/// A pseudo-random phase in `0..max` (the sends must not line up with the poll).
fn phase(i: usize, max: Duration) -> Duration {
    let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    max.mul_f64((x % 1000) as f64 / 1000.0)
}

/// Block visible → finding committed, over `url` (ws: pushed heads; http: polling).
async fn detection(
    bed: &Testbed,
    generator: Address,
    wallet: &DynProvider,
    url: String,
    poll: Duration,
    n: usize,
) -> Result<Vec<f64>> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("latency.sqlite");
    let rpc =
        Arc::new(RpcPool::new(vec![url.parse::<reqwest::Url>()?], 138, Duration::from_secs(10))?);
    let start = bed.devnet.reader().get_block_number().await? + 1;
    let options =
        FollowerOptions { start_block: Some(start), poll_interval: poll, ..Default::default() };
    let mut follower = Follower::new(
        rpc.clone(),
        Store::open(&db)?,
        engine(&config(&[generator], &event_rule(1, "low")))?,
        options,
    );
    let heads = heads::spawn(rpc);
    let (stop, stop_rx) = watch::channel(false);
    let daemon = tokio::spawn(async move { follower.run(heads, stop_rx).await });
    let observer = Store::open(&db)?;
    let reader = bed.devnet.reader();
    tokio::time::sleep(Duration::from_millis(500)).await; // subscribe and initialise
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        tokio::time::sleep(phase(i, poll)).await;
        let before = observer.occurrence_count()?;
        let visible = send_visible(wallet, &reader, emit(generator, 1, FIRE_AT + i as u64)).await?;
        loop {
            if observer.occurrence_count()? > before {
                break;
            }
            ensure!(visible.elapsed() < Duration::from_secs(10), "finding never committed");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        // Negative when the finding was committed before the polling client saw the block.
        let committed = Instant::now();
        samples.push(ms(committed.saturating_duration_since(visible)));
    }
    stop.send_replace(true);
    daemon.await??;
    Ok(samples)
}

/// A local webhook answering 200 at once; each request's arrival and body on the channel.
async fn receiver() -> Result<(reqwest::Url, mpsc::UnboundedReceiver<(Instant, serde_json::Value)>)>
{
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let at = Instant::now();
                let value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                let _ = tx.send((at, value));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?).parse()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, rx))
}

fn channel(url: reqwest::Url) -> Channel {
    Channel::webhook(
        "bench",
        Webhook { url, timeout: Duration::from_secs(5), backoff: Backoff::default() },
    )
}

/// Block visible → webhook received, over ws: follower and notifier wired as `guardian run`.
async fn webhook(
    bed: &Testbed,
    contracts: &Contracts,
    wallet: &DynProvider,
    n: usize,
) -> Result<Vec<f64>> {
    let mut generators = Vec::with_capacity(n);
    for _ in 0..n {
        generators.push(deploy(wallet, contracts.get("LoadGenerator")?, &[]).await?);
    }
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("webhook.sqlite");
    let rpc = Arc::new(RpcPool::new(vec![bed.devnet.ws_url()], 138, Duration::from_secs(10))?);
    let start = bed.devnet.reader().get_block_number().await? + 1;
    let wake = Arc::new(Notify::new());
    let options = FollowerOptions { start_block: Some(start), ..Default::default() };
    let mut follower = Follower::new(
        rpc.clone(),
        Store::open(&db)?,
        engine(&config(&generators, &event_rule(n, "medium")))?,
        options,
    )
    .wake_on_commit(wake.clone());
    let heads = heads::spawn(rpc);
    let (stop, stop_rx) = watch::channel(false);
    let (url, mut received) = receiver().await?;
    let following = tokio::spawn(async move { follower.run(heads, stop_rx).await });
    let notifying = tokio::spawn(notifier::run_channels(
        db.clone(),
        vec![channel(url)],
        wake,
        stop.subscribe(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reader = bed.devnet.reader();
    let mut samples = Vec::with_capacity(n);
    for (i, generator) in generators.iter().enumerate() {
        let visible =
            send_visible(wallet, &reader, emit(*generator, 1, FIRE_AT + i as u64)).await?;
        let (at, body) = tokio::time::timeout(Duration::from_secs(10), received.recv())
            .await
            .wrap_err("no webhook within 10 s")?
            .ok_or_else(|| eyre!("receiver gone"))?;
        ensure!(body["kind"] == "opened", "unexpected notification {body}");
        samples.push(ms(at.saturating_duration_since(visible)));
    }
    stop.send_replace(true);
    following.await??;
    notifying.await??;
    Ok(samples)
}

fn alert(n: usize) -> Finding {
    let bytes = (n as u32 + 1).to_be_bytes();
    let mut address = [0u8; 20];
    address[16..].copy_from_slice(&bytes);
    Finding {
        rule: "big-withdrawal".into(),
        contract: format!("vault-{n}"),
        address: Address::from(address),
        severity: Severity::High,
        action: Action::Alert,
        summary: "withdrawal of 12 ether > 10 ether".into(),
        evidence: Evidence {
            block_number: 7,
            block_hash: B256::repeat_byte(0x11),
            tx_hash: Some(B256::repeat_byte(0xaa)),
            log_index: Some(n as u64),
            values: [("amount".to_owned(), "12000000000000000000".to_owned())].into(),
            threshold: "> 10 ether".into(),
            predicted_from: None,
        },
        anomaly: Anomaly::Log { tx: B256::repeat_byte(0xaa), ordinal: n as u32 },
        magnitude: None,
    }
}

/// 300 queued alerts (300 incidents) → all received; seconds.
async fn backlog(alerts: usize) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("backlog.sqlite");
    let mut store = Store::open(&db)?;
    store.bind_chain(138)?;
    let block = BlockRef { number: 7, hash: B256::repeat_byte(0x11), parent_hash: B256::ZERO };
    store.commit_blocks(&[(block, (0..alerts).map(alert).collect())])?;
    let (url, mut received) = receiver().await?;
    let (stop, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let notifying = tokio::spawn(notifier::run_channels(
        db,
        vec![channel(url)],
        Arc::new(Notify::new()),
        stop_rx,
    ));
    for _ in 0..alerts {
        tokio::time::timeout(Duration::from_secs(60), received.recv())
            .await
            .wrap_err("backlog stalled")?;
    }
    let elapsed = started.elapsed();
    stop.send_replace(true);
    notifying.await??;
    Ok(elapsed.as_secs_f64())
}

/// Blocks/s of a fresh follower catching up from `start` to the head, `runs` times.
async fn backfill(
    bed: &Testbed,
    toml: &str,
    start: u64,
    runs: usize,
) -> Result<(Vec<f64>, u64, u64)> {
    let end = bed.devnet.reader().get_block_number().await?;
    let blocks = end - start + 1;
    let mut rates = Vec::with_capacity(runs);
    let mut occurrences = 0;
    for _ in 0..runs {
        let dir = tempfile::tempdir()?;
        let rpc =
            Arc::new(RpcPool::new(vec![bed.devnet.http_url()], 138, Duration::from_secs(30))?);
        let options = FollowerOptions {
            start_block: Some(start),
            backfill_threshold: 8,
            ..Default::default()
        };
        let mut follower = Follower::new(
            rpc,
            Store::open(dir.path().join("bench.sqlite"))?,
            engine(toml)?,
            options,
        );
        let started = Instant::now();
        while follower.step().await? != Step::Idle {}
        rates.push(blocks as f64 / started.elapsed().as_secs_f64());
        occurrences = follower.store().occurrence_count()?;
    }
    Ok((rates, blocks, occurrences))
}

async fn backfill_logs(
    bed: &Testbed,
    generator: Address,
    wallet: &DynProvider,
) -> Result<(Vec<f64>, String)> {
    const TXS: u64 = 500;
    const LOGS_PER_TX: u64 = 100;
    const BLOCKS_PER_TX: u64 = 20;
    let reader = bed.devnet.reader();
    let start = reader.get_block_number().await? + 1;
    for i in 0..TXS {
        // One log in a thousand fires the rule: the last log of every tenth transaction.
        let amount = if i % 10 == 0 { FIRE_AT - (LOGS_PER_TX - 1) } else { 1 };
        wallet.send_transaction(emit(generator, LOGS_PER_TX, amount)).await?.get_receipt().await?;
        reader.anvil_mine(Some(BLOCKS_PER_TX - 1), None).await?;
    }
    let rules = format!(
        "{}\n[[rules]]\nname = \"burst\"\nkind = \"window\"\nseverity = \"low\"\ncontracts = [\"c0\"]\nevent = \"Withdrawn\"\nblocks = 10\nthreshold = 1000\n",
        event_rule(1, "low")
    );
    let (rates, blocks, fired) = backfill(bed, &config(&[generator], &rules), start, 3).await?;
    ensure!(fired == TXS / 10, "expected {} occurrences, got {fired}", TXS / 10);
    Ok((rates, format!("{blocks} blocks, {} logs", TXS * LOGS_PER_TX)))
}

async fn backfill_state(
    bed: &Testbed,
    generator: Address,
    wallet: &DynProvider,
) -> Result<(Vec<f64>, String)> {
    const BLOCKS: u64 = 3_000;
    let reader = bed.devnet.reader();
    wallet
        .send_transaction(
            TransactionRequest::default().to(generator).value(U256::from(10u64.pow(18))),
        )
        .await?
        .get_receipt()
        .await?;
    let start = reader.get_block_number().await? + 1;
    for i in 0..BLOCKS / 100 {
        wallet
            .send_transaction(emit(generator, 10, if i % 10 == 0 { FIRE_AT } else { 1 }))
            .await?
            .get_receipt()
            .await?;
        let fail = ILoadGenerator::failCall {}.abi_encode();
        let tx = TransactionRequest::default()
            .to(generator)
            .input(Bytes::from(fail).into())
            .gas_limit(100_000);
        wallet.send_transaction(tx).await?.get_receipt().await?;
        reader.anvil_mine(Some(98), None).await?;
    }
    let rules = format!(
        r#"{event}
[[rules]]
name = "burst"
kind = "window"
severity = "low"
contracts = ["c0"]
event = "Withdrawn"
blocks = 10
threshold = 1000

[[rules]]
name = "reverts"
kind = "revert_rate"
severity = "low"
contracts = ["c0"]
blocks = 50
threshold = "60%"
min_sample = 2

[[rules]]
name = "balance"
kind = "balance_drop"
severity = "low"
contracts = ["c0"]
asset = "native"
drop = "30%"
blocks = 10

[[rules]]
name = "code"
kind = "code_change"
severity = "low"
contracts = ["c0"]
target = "code_hash"

[[rules]]
name = "solvent"
kind = "invariant"
severity = "low"
contracts = ["c0"]
call = "solvent() returns (bool)"
op = "=="
value = true
"#,
        event = event_rule(1, "low")
    );
    let (rates, blocks, _) = backfill(bed, &config(&[generator], &rules), start, 3).await?;
    Ok((rates, format!("{blocks} blocks, 6 rules (one of each kind)")))
}

/// 1 000 contracts (LoadGenerator's code at 1 000 addresses), each with an invariant and a
/// balance_drop rule: block mined → committed, over ws.
async fn live_state(bed: &Testbed, contracts: &Contracts, n: usize) -> Result<Vec<f64>> {
    const WATCHED: usize = 1_000;
    let reader = bed.devnet.reader();
    let code = contracts.get("LoadGenerator")?.deployed_bytecode.clone();
    let mut addresses = Vec::with_capacity(WATCHED);
    for i in 0..WATCHED {
        let mut bytes = [0u8; 20];
        bytes[0] = 0x77;
        bytes[16..].copy_from_slice(&(i as u32).to_be_bytes());
        let address = Address::from(bytes);
        reader.anvil_set_code(address, code.clone()).await?;
        reader.anvil_set_balance(address, U256::from(10u64.pow(18))).await?;
        addresses.push(address);
    }
    let rules = format!(
        "[[rules]]\nname = \"solvent\"\nkind = \"invariant\"\nseverity = \"low\"\ncontracts = [{all}]\ncall = \"solvent() returns (bool)\"\nop = \"==\"\nvalue = true\n\n[[rules]]\nname = \"balance\"\nkind = \"balance_drop\"\nseverity = \"low\"\ncontracts = [{all}]\nasset = \"native\"\ndrop = \"30%\"\nblocks = 10\n",
        all = names(WATCHED)
    );
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("live.sqlite");
    let rpc = Arc::new(RpcPool::new(vec![bed.devnet.ws_url()], 138, Duration::from_secs(10))?);
    let start = reader.get_block_number().await? + 1;
    let options = FollowerOptions { start_block: Some(start), ..Default::default() };
    let mut follower = Follower::new(
        rpc.clone(),
        Store::open(&db)?,
        engine(&config(&addresses, &rules))?,
        options,
    );
    let heads = heads::spawn(rpc);
    let (stop, stop_rx) = watch::channel(false);
    let following = tokio::spawn(async move { follower.run(heads, stop_rx).await });
    let observer = Store::open(&db)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        reader.anvil_mine(Some(1), None).await?;
        let mined = Instant::now();
        let number = reader.get_block_number().await?;
        loop {
            if observer.cursor()?.is_some_and(|c| c.number >= number) {
                break;
            }
            ensure!(mined.elapsed() < Duration::from_secs(20), "block {number} never committed");
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        samples.push(ms(mined.elapsed()));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.send_replace(true);
    following.await??;
    Ok(samples)
}

/// `guardian run` on a chain with 1 s blocks, idle: RSS (MB) at each second and CPU (%) over
/// `seconds`.
async fn idle(
    toolchain: &Toolchain,
    contracts: &Contracts,
    seconds: u64,
) -> Result<(Vec<f64>, f64, u64)> {
    let bed = Testbed::start(
        toolchain,
        contracts,
        &TestbedOptions {
            devnet: DevnetOptions { block_time: Some(1), ..DevnetOptions::default() },
            ..TestbedOptions::default()
        },
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let vault = bed.targets.vault_v2;
    let toml = format!(
        r#"[[rpc]]
url = "{ws}"

[storage]
path = "{db}"

[api]
bind = "127.0.0.1:0"

[[contracts]]
name = "vault"
address = "{vault}"
events = ["{WITHDRAWN}"]

[[rules]]
name = "withdrawn"
kind = "event"
severity = "low"
contracts = ["vault"]
event = "Withdrawn"

[[rules]]
name = "balance"
kind = "balance_drop"
severity = "low"
contracts = ["vault"]
asset = "native"
drop = "30%"
blocks = 10

[[rules]]
name = "solvent"
kind = "invariant"
severity = "low"
contracts = ["vault"]
call = "solvent() returns (bool)"
op = "=="
value = true
"#,
        ws = bed.devnet.ws_url(),
        db = dir.path().join("idle.sqlite").display(),
    );
    let config = dir.path().join("guardian.toml");
    std::fs::write(&config, toml)?;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args(["run", "--config"])
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("guardian.log"))?)
        .spawn()?;
    let pid = child.id();
    tokio::time::sleep(Duration::from_secs(5)).await; // start and settle
    let cpu_start = cpu_ticks(pid)?;
    let head_start = bed.devnet.reader().get_block_number().await?;
    let started = Instant::now();
    let mut rss = Vec::new();
    for _ in 0..seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss.push(rss_mb(pid)?);
    }
    let cpu =
        (cpu_ticks(pid)? - cpu_start) as f64 / ticks_per_second() / started.elapsed().as_secs_f64()
            * 100.0;
    let blocks = bed.devnet.reader().get_block_number().await? - head_start;
    let _ = child.kill();
    let _ = child.wait();
    Ok((rss, cpu, blocks))
}

fn proc_file(pid: u32, name: &str) -> Result<String> {
    std::fs::read_to_string(PathBuf::from(format!("/proc/{pid}/{name}"))).wrap_err("reading /proc")
}

fn rss_mb(pid: u32) -> Result<f64> {
    let status = proc_file(pid, "status")?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| eyre!("no VmRSS"))?;
    Ok(kb / 1024.0)
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = proc_file(pid, "stat")?;
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).ok_or_else(|| eyre!("bad stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of proc(5), counted after the command name (field 2).
    let utime: u64 = fields.get(11).and_then(|f| f.parse().ok()).ok_or_else(|| eyre!("utime"))?;
    let stime: u64 = fields.get(12).and_then(|f| f.parse().ok()).ok_or_else(|| eyre!("stime"))?;
    Ok(utime + stime)
}

fn ticks_per_second() -> f64 {
    // Linux's USER_HZ is 100 on every architecture guardian runs on.
    100.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let n = samples();
    let toolchain = Toolchain::discover()?;
    let contracts = guardian_chain::compile(&toolchain)?;
    let bed = Testbed::start(&toolchain, &contracts, &TestbedOptions::default()).await?;
    let wallet = bed.devnet.provider_for(bed.devnet.signer(9)?);
    let generator = deploy(&wallet, contracts.get("LoadGenerator")?, &[])
        .await
        .wrap_err("deploying LoadGenerator")?;
    let poll = guardian_config::DEFAULT_POLL_INTERVAL;
    let mut figures = Vec::new();

    if wanted("detection") {
        let ws =
            detection(&bed, generator, &wallet, bed.devnet.ws_url().to_string(), poll, n).await?;
        figures.push(Figure::new("block visible → finding committed, ws heads", "ms", ws));
        let http =
            detection(&bed, generator, &wallet, bed.devnet.http_url().to_string(), poll, n.min(30))
                .await?;
        figures.push(Figure::new(
            format!(
                "block visible → finding committed, HTTP polling every {} ms",
                poll.as_millis()
            ),
            "ms",
            http,
        ));
    }
    if wanted("webhook") {
        let hook = webhook(&bed, &contracts, &wallet, n.min(30)).await?;
        figures.push(Figure::new("block visible → webhook received, ws heads", "ms", hook));
    }
    if wanted("backlog") {
        let mut backlogs = Vec::new();
        for _ in 0..5 {
            backlogs.push(backlog(300).await? * 1e3);
        }
        figures.push(Figure::new(
            "300 queued alerts (300 incidents) → all received",
            "ms",
            backlogs,
        ));
    }
    if wanted("live") {
        let live = live_state(&bed, &contracts, n.min(20)).await?;
        figures.push(Figure::new(
            "1 000 contracts × (invariant + balance_drop): block mined → committed, ws",
            "ms",
            live,
        ));
    }
    if wanted("backfill") {
        let (logs, what) = backfill_logs(&bed, generator, &wallet).await?;
        figures.push(Figure::new(
            format!("backfill, log rules (event, window): {what}"),
            "blocks/s",
            logs,
        ));
        let variants = [
            ("through Multicall3", true, Some(STATE_HISTORY)),
            ("batched JSON-RPC (no Multicall3)", false, Some(STATE_HISTORY)),
            (
                "through Multicall3, Anvil's default history (older states in JSON files)",
                true,
                None,
            ),
        ];
        for (how, multicall3, history) in variants {
            let (state_bed, state_wallet, state_generator) =
                state_bed(&toolchain, &contracts, multicall3, history).await?;
            let (state, what) = backfill_state(&state_bed, state_generator, &state_wallet).await?;
            figures.push(Figure::new(
                format!("backfill, state rules {how}: {what}"),
                "blocks/s",
                state,
            ));
        }
    }
    if wanted("idle") {
        let (rss, cpu, blocks) = idle(&toolchain, &contracts, 60).await?;
        figures.push(Figure::new(
            format!(
                "`guardian run` idle, 3 rules, ws, 1 s blocks: RSS each second over 60 s ({blocks} blocks)"
            ),
            "MB",
            rss,
        ));
        figures.push(Figure::new("`guardian run` idle: CPU over those 60 s", "%", vec![cpu]));
    }

    println!();
    println!("| figure | unit | n | min | median | max |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    for figure in &figures {
        figure.print();
    }
    Ok(())
}
