//! Shared fixtures: the toolchain, the compiled contracts and a fresh stage per test.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use alloy::{
    primitives::Address,
    providers::{DynProvider, Provider},
    rpc::types::{TransactionReceipt, TransactionRequest},
    transports::http::reqwest::Url,
};
use guardian_chain::{Contracts, Testbed, TestbedOptions, Toolchain};
use guardian_config::Config;
use guardian_daemon::{Engine, Evaluator, Follower, Step};
use guardian_rpc::RpcPool;
use guardian_store::Store;

/// The toolchain and the compiled project, shared by every test in this binary.
pub(crate) fn contracts() -> &'static (Toolchain, Contracts) {
    static COMPILED: OnceLock<(Toolchain, Contracts)> = OnceLock::new();
    COMPILED.get_or_init(|| {
        // Most tests start here, before building HTTP clients of their own (the others: [`http`]).
        guardian_rpc::tls::install_crypto_provider();
        let toolchain = Toolchain::discover().expect("toolchain installed (scripts/setup.sh)");
        let contracts = guardian_chain::compile(&toolchain).expect("contracts/ compiles");
        (toolchain, contracts)
    })
}

/// A builder for the tests' own HTTP clients, with the TLS crypto provider installed as
/// `guardian` does at start: reqwest (and alloy's HTTP transport over it) panics building a
/// client without one, and a test cannot count on an earlier one in this process.
pub(crate) fn http() -> alloy::transports::http::reqwest::ClientBuilder {
    guardian_rpc::tls::install_crypto_provider();
    alloy::transports::http::reqwest::Client::builder()
}

/// A fresh Anvil with a 2-of-3 Safe and the targets it owns.
pub(crate) async fn testbed() -> Testbed {
    testbed_with(TestbedOptions::default()).await
}

/// A fresh stage laid out as `options` says.
pub(crate) async fn testbed_with(options: TestbedOptions) -> Testbed {
    let (toolchain, contracts) = contracts();
    Testbed::start(toolchain, contracts, &options).await.expect("testbed starts")
}

/// Every `Withdrawn` of the vault is a finding: each anomaly is one occurrence.
pub(crate) const EVERY_WITHDRAWAL: &str = r#"
[[rules]]
name = "withdrawn"
kind = "event"
severity = "critical"
contracts = ["vault"]
event = "Withdrawn"
"#;

/// A loopback TCP forwarder that can be switched off and on, standing in for an RPC endpoint
/// that dies and comes back with its chain intact.
pub(crate) struct TcpSwitch {
    port: u16,
    up: tokio::sync::watch::Sender<bool>,
}

impl TcpSwitch {
    /// Forward 127.0.0.1:<new port> to 127.0.0.1:`target`.
    pub(crate) async fn start(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (up, _) = tokio::sync::watch::channel(true);
        let state = up.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*state.borrow() {
                    drop(inbound); // refused while down
                    continue;
                }
                let mut down = state.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = down.wait_for(|up| !*up) => {} // cut live connections too
                    }
                });
            }
        });
        Self { port, up }
    }

    /// The port to connect to.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Switch forwarding on or off.
    pub(crate) fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

/// A guardian config file for tests: the testbed's vault (VaultV2, the buggy one) and Safe,
/// `rules` appended as written. Rendered to TOML so every test goes through the real parser.
#[derive(Debug, Clone)]
pub(crate) struct GuardianToml {
    pub(crate) chain_id: u64,
    pub(crate) rpc: Vec<String>,
    pub(crate) db: PathBuf,
    pub(crate) max_log_range: u64,
    pub(crate) vault: Address,
    pub(crate) safe: Address,
    pub(crate) rules: String,
    /// `[chain] start_block` (as written in TOML), when set.
    pub(crate) start_block: Option<String>,
}

impl GuardianToml {
    /// Chain 138 over the testbed's HTTP endpoint, the database at `db`.
    pub(crate) fn new(bed: &Testbed, db: &Path, rules: &str) -> Self {
        Self {
            chain_id: 138,
            rpc: vec![bed.devnet.http_url().to_string()],
            db: db.to_owned(),
            max_log_range: 2_000,
            vault: bed.targets.vault_v2,
            safe: bed.safe.address(),
            rules: rules.to_owned(),
            start_block: None,
        }
    }

    pub(crate) fn render(&self) -> String {
        let rpc: String =
            self.rpc.iter().map(|url| format!("[[rpc]]\nurl = \"{url}\"\n\n")).collect();
        let start_block =
            self.start_block.as_ref().map(|s| format!("start_block = {s}\n")).unwrap_or_default();
        format!(
            r#"[chain]
id = {chain_id}
poll_interval_ms = 100
max_log_range = {max_log_range}
{start_block}
{rpc}[storage]
path = "{db}"

[api]
bind = "127.0.0.1:0"

[safe]
address = "{safe}"

[[contracts]]
name = "vault"
address = "{vault}"
events = [
    "Deposited(address indexed account, uint256 amount)",
    "Withdrawn(address indexed account, address indexed to, uint256 amount)",
]

{rules}
"#,
            chain_id = self.chain_id,
            max_log_range = self.max_log_range,
            db = self.db.display(),
            safe = self.safe,
            vault = self.vault,
            rules = self.rules,
        )
    }

    /// Write the file to `path` (for the binary).
    pub(crate) fn write(&self, path: &Path) {
        std::fs::write(path, self.render()).expect("write config");
    }

    /// Parse as `guardian run` does (no secrets needed) and build the follower's engine.
    pub(crate) fn engine(&self) -> Engine {
        let config = Config::parse(&self.render(), Path::new("/tests/guardian.toml"), &|_| None)
            .unwrap_or_else(|e| panic!("test config is valid: {e}"));
        Engine::new(config.rule_engine().expect("rules compile"))
    }
}

/// The daemon config of the Safe-flow tests: the testbed's chain and Safe, the vault watched
/// for drains (`Withdrawn` over 1 ether, Critical unless `severity` says otherwise), Critical
/// proposing a pause, `on_pause` rolling back or not; `api` is the `[api]` table's body.
pub(crate) fn drain_toml(
    bed: &Testbed,
    api: &str,
    executor: bool,
    rollback: bool,
    severity: &str,
) -> String {
    format!(
        r#"[chain]
poll_interval_ms = 100

[[rpc]]
url = "{url}"

[storage]
path = "guardian.sqlite"

[api]
{api}

[safe]
address = "{safe}"
{executor}

# These tests follow the Safe flow: Critical proposes (the immediate pause through the module
# has its own tests, in immediate.rs).
[policy]
critical = "propose_pause"

{vault}"#,
        url = bed.devnet.http_url(),
        safe = bed.safe.address(),
        executor = if executor { "executor_key_env = \"TEST_EXECUTOR_KEY\"" } else { "" },
        vault = vault_drain_toml(bed, Some(if rollback { "rollback" } else { "pause" }), severity),
    )
}

/// The testbed's VaultV2 as the watched `vault` (with `on_pause` when given) and the
/// `vault-drain` rule of `severity` on it: a `Withdrawn` over 1 ether.
pub(crate) fn vault_drain_toml(bed: &Testbed, on_pause: Option<&str>, severity: &str) -> String {
    let on_pause = on_pause.map(|o| format!("on_pause = \"{o}\"\n")).unwrap_or_default();
    format!(
        r#"[[contracts]]
name = "vault"
address = "{vault}"
events = ["Withdrawn(address indexed account, address indexed to, uint256 amount)"]
{on_pause}
[[rules]]
name = "vault-drain"
kind = "event"
severity = "{severity}"
contracts = ["vault"]
event = "Withdrawn"
where = ["amount > 1 ether"]
"#,
        vault = bed.targets.vault_v2,
    )
}

/// An endpoint pool over `urls` for chain 138.
pub(crate) fn pool(urls: &[String]) -> Arc<RpcPool> {
    let urls: Vec<Url> = urls.iter().map(|u| u.parse().expect("url")).collect();
    Arc::new(RpcPool::new(urls, 138, Duration::from_secs(3)).expect("pool"))
}

/// Step until the follower reports nothing new.
pub(crate) async fn drain_until_idle<E: Evaluator>(follower: &mut Follower<E>) {
    for _ in 0..10_000 {
        if follower.step().await.expect("step") == Step::Idle {
            return;
        }
    }
    panic!("follower never caught up");
}

/// Send `tx` and wait for its receipt (reverted or not).
pub(crate) async fn mined(from: &DynProvider, tx: TransactionRequest) -> TransactionReceipt {
    from.send_transaction(tx).await.expect("sent").get_receipt().await.expect("mined")
}

/// Poll `check` every 20 ms until it returns `Some`, failing after `timeout`.
pub(crate) async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `guardian run --config FILE` as a child process, stderr (`RUST_LOG=info`) appended to a file.
/// Killed (SIGKILL) when dropped, so a failing test leaves nothing running.
pub(crate) struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    pub(crate) fn start(config: &Path, log: &Path) -> Self {
        Self::start_with_env(config, log, &[])
    }

    /// Like [`Daemon::start`], with extra environment variables (e.g. the executor key).
    pub(crate) fn start_with_env(config: &Path, log: &Path, env: &[(&str, String)]) -> Self {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the daemon log");
        let child = Command::new(env!("CARGO_BIN_EXE_guardian"))
            .args(["run", "--config"])
            .arg(config)
            .env_remove("GUARDIAN_CONFIG")
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("guardian starts");
        Self { child, log: log.to_owned() }
    }

    /// SIGKILL, as a crash or the OOM killer would.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every thread's stack, from gdb when it is installed: what a test that timed out
    /// waiting on this daemon shows, so a daemon that stopped moving says where it stopped.
    pub(crate) fn stacks(&self) -> String {
        let pid = self.pid().to_string();
        let out = Command::new("timeout")
            .args(["30", "gdb", "-p", &pid, "-batch", "-ex", "thread apply all bt 25"])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.starts_with("Thread ") || l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n"),
            Ok(out) => format!(
                "(no stacks: gdb {}: {})",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(error) => format!("(no stacks: {error})"),
        }
    }

    /// Exit status if it has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait on guardian")
    }

    /// Everything it logged so far (all runs sharing the log file).
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The store's cursor as the daemon left it (None before the daemon created the database).
pub(crate) fn cursor(db: &Path) -> Option<u64> {
    if !db.exists() {
        return None;
    }
    Store::open(db).ok()?.cursor().ok()?.map(|c| c.number)
}

/// The proposal's hash from what `guardian pause` or `unpause` printed (its `safeTxHash` line).
pub(crate) fn safe_tx_hash(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("safeTxHash "))
        .unwrap_or_else(|| panic!("no safeTxHash line in:\n{stdout}"))
        .trim()
        .to_owned()
}

/// Run the `guardian` binary with `args` and extra `env`, without the caller's GUARDIAN_CONFIG
/// or RUST_LOG: (success, stdout, stderr).
pub(crate) fn guardian(args: &[&str], env: &[(&str, String)]) -> (bool, String, String) {
    let (code, stdout, stderr) = guardian_code(args, env);
    (code == Some(0), stdout, stderr)
}

/// [`guardian`], with the exit status (`None`: killed by a signal). Standard input is empty,
/// so a question gets end of input.
pub(crate) fn guardian_code(
    args: &[&str],
    env: &[(&str, String)],
) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args(args)
        .env_remove("GUARDIAN_CONFIG")
        .env_remove("RUST_LOG")
        .env_remove("GUARDIAN_API_TOKEN")
        .env_remove("GUARDIAN_KEYSTORE_PASSWORD")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .expect("guardian runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A dev key as the 0x-hex string the `--private-key-env` variables hold.
pub(crate) fn key_hex(key: &alloy::signers::local::PrivateKeySigner) -> String {
    alloy::primitives::B256::from(key.to_bytes()).to_string()
}

/// The testbed's contracts as Safe targets: VaultV2 (`vault`, rolled back after its pause
/// when `rollback`), VaultV1 and the factory.
pub(crate) fn targets(bed: &Testbed, rollback: bool) -> Vec<guardian_multisig::Target> {
    [
        ("vault", bed.targets.vault_v2, rollback),
        ("vault_v1", bed.targets.vault_v1, false),
        ("factory", bed.targets.factory, false),
    ]
    .into_iter()
    .map(|(name, address, rollback)| {
        guardian_multisig::Target::new(name, address, "pause()")
            .expect("target")
            .with_rollback(rollback)
    })
    .collect()
}

/// One guardian replica in-process: its Safe service over its own database, the responder
/// the daemon runs (outbox effects, pending proposals), and the operators' desk.
pub(crate) struct Replica {
    pub(crate) ms: Arc<guardian_multisig::Multisig>,
    pub(crate) desk: guardian_operator::Desk,
    responder: guardian_daemon::pauser::Pauser,
}

impl Replica {
    /// A replica on `db` executing with `executor` (none: it proposes and counts only).
    pub(crate) async fn new(
        bed: &Testbed,
        db: &Path,
        executor: Option<alloy::signers::local::PrivateKeySigner>,
    ) -> Self {
        let ms = Arc::new(
            guardian_multisig::Multisig::connect(
                bed.devnet.reader(),
                138,
                bed.safe.address(),
                db,
                targets(bed, false),
                executor,
                guardian_core::incident::ResponsePolicy::default(),
            )
            .await
            .expect("multisig connects"),
        );
        let responder = guardian_daemon::pauser::Pauser::new(
            ms.clone(),
            db.with_file_name("guardian.toml"),
            Arc::new(tokio::sync::Notify::new()),
        );
        Self { desk: guardian_operator::Desk::over(ms.clone()), ms, responder }
    }

    /// Run the responder until a pass finds nothing to do (as the daemon's loop would).
    pub(crate) async fn settle(&mut self) {
        for _ in 0..20 {
            let did = self.responder.step().await;
            let now = guardian_store::now_ms();
            let due = {
                let store = self.ms.store();
                [
                    guardian_store::EffectKind::Propose,
                    guardian_store::EffectKind::Execute,
                    guardian_store::EffectKind::Rollback,
                ]
                .into_iter()
                .any(|k| store.next_effect_at(k).expect("outbox").is_some_and(|at| at <= now))
            };
            if !did && !due {
                return;
            }
        }
        panic!("the responder never settled");
    }

    /// One incident, as stored.
    pub(crate) fn incident(&self, id: i64) -> guardian_core::incident::Incident {
        self.ms.store().incident(id).expect("read").expect("incident exists").incident
    }

    /// The incident's audit kinds, in order.
    pub(crate) fn audit(&self, id: i64) -> Vec<String> {
        self.ms
            .store()
            .incident_events(id)
            .expect("events")
            .into_iter()
            .map(|e| e.kind.as_str().to_owned())
            .collect()
    }
}

/// One notification a [`Receiver`] got.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    /// The `Idempotency-Key` header.
    pub(crate) header_key: Option<String>,
    /// The JSON body.
    pub(crate) body: serde_json::Value,
    /// The request path (with its query).
    pub(crate) path: String,
    /// Every header, names in lower case.
    pub(crate) headers: Vec<(String, String)>,
    /// The body's bytes as received.
    pub(crate) raw: Vec<u8>,
}

impl Delivery {
    pub(crate) fn kind(&self) -> &str {
        self.body["kind"].as_str().unwrap_or_default()
    }

    pub(crate) fn key(&self) -> &str {
        self.body["idempotency_key"].as_str().unwrap_or_default()
    }

    pub(crate) fn text(&self) -> &str {
        self.body["text"].as_str().unwrap_or_default()
    }

    /// The header `name` (any case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

/// A local webhook receiver: answers every POST with 200 and keeps what it got.
pub(crate) struct Receiver {
    pub(crate) port: u16,
    seen: Arc<std::sync::Mutex<Vec<Delivery>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub(crate) async fn start() -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let (head_end, length) = loop {
                        let Ok(n) = socket.read(&mut chunk).await else { return };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (i + 4, length);
                        }
                    };
                    while buf.len() < head_end + length {
                        let Ok(n) = socket.read(&mut chunk).await else { return };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let header_key = head.lines().find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.trim()
                            .eq_ignore_ascii_case("idempotency-key")
                            .then(|| value.trim().to_owned())
                    });
                    let raw = buf[head_end..head_end + length].to_vec();
                    let body = serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null);
                    let path = head
                        .lines()
                        .next()
                        .and_then(|l| l.split_whitespace().nth(1))
                        .unwrap_or_default()
                        .to_owned();
                    let headers = head
                        .lines()
                        .skip(1)
                        .filter_map(|l| l.split_once(':'))
                        .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_owned()))
                        .collect();
                    log.lock().expect("lock").push(Delivery {
                        header_key,
                        body,
                        path,
                        headers,
                        raw,
                    });
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self { port, seen, task }
    }

    /// Everything received, in order of arrival (repeats included).
    pub(crate) fn deliveries(&self) -> Vec<Delivery> {
        self.seen.lock().expect("lock").clone()
    }

    /// What a receiver keeps after dropping repeats by idempotency key: each notification once,
    /// in order of first arrival.
    pub(crate) fn unique(&self) -> Vec<Delivery> {
        let mut keys = std::collections::BTreeSet::new();
        self.deliveries().into_iter().filter(|d| keys.insert(d.key().to_owned())).collect()
    }

    /// The kinds of [`Receiver::unique`].
    pub(crate) fn kinds(&self) -> Vec<String> {
        self.unique().iter().map(|d| d.kind().to_owned()).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request an [`HttpStub`] got.
#[derive(Debug, Clone)]
pub(crate) struct StubRequest {
    /// The request target: path and query.
    pub(crate) target: String,
    /// Header names (lower-case) and values.
    pub(crate) headers: Vec<(String, String)>,
    /// The body.
    pub(crate) body: Vec<u8>,
}

impl StubRequest {
    /// The value of header `name` (lower-case), if sent.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// What an [`HttpStub`] handler answers: status and JSON body.
pub(crate) type StubAnswer = std::pin::Pin<Box<dyn Future<Output = (u16, String)> + Send>>;

/// A loopback HTTP/1.1 server (keep-alive) whose answers come from a handler, standing in for
/// an RPC provider (a path with a key, rate limits) or forwarding to Anvil. Keeps every request.
pub(crate) struct HttpStub {
    pub(crate) port: u16,
    seen: Arc<std::sync::Mutex<Vec<StubRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpStub {
    pub(crate) async fn start(
        handler: impl Fn(StubRequest) -> StubAnswer + Send + Sync + 'static,
    ) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let handler = Arc::new(handler);
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (log, handler) = (log.clone(), handler.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 16384];
                    loop {
                        let head_end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            match socket.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                        let mut lines = head.lines();
                        let target = lines
                            .next()
                            .and_then(|l| l.split(' ').nth(1))
                            .unwrap_or("/")
                            .to_owned();
                        let headers: Vec<(String, String)> = lines
                            .filter_map(|l| l.split_once(':'))
                            .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_owned()))
                            .collect();
                        let length = headers
                            .iter()
                            .find(|(n, _)| n == "content-length")
                            .and_then(|(_, v)| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        while buf.len() < head_end + length {
                            match socket.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let body = buf[head_end..head_end + length].to_vec();
                        buf.drain(..head_end + length);
                        let request = StubRequest { target, headers, body };
                        log.lock().expect("lock").push(request.clone());
                        let (status, answer) = handler(request).await;
                        let response = format!(
                            "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                            if status == 200 { "OK" } else { "Refused" },
                            answer.len()
                        );
                        if socket.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { port, seen, task }
    }

    /// A stub that forwards every request's body to `upstream` (an Anvil), whatever its path.
    pub(crate) async fn forwarding_to(upstream: Url) -> Self {
        let http = http().build().expect("HTTP client");
        Self::start(move |request| {
            let (http, upstream) = (http.clone(), upstream.clone());
            Box::pin(async move {
                let answer = http
                    .post(upstream)
                    .header("content-type", "application/json")
                    .body(request.body)
                    .send()
                    .await;
                match answer {
                    Ok(answer) => {
                        (answer.status().as_u16(), answer.text().await.unwrap_or_default())
                    }
                    Err(_) => (502, String::new()),
                }
            })
        })
        .await
    }

    /// Every request so far.
    pub(crate) fn requests(&self) -> Vec<StubRequest> {
        self.seen.lock().expect("lock").clone()
    }
}

impl Drop for HttpStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}
