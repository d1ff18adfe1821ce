//! One scenario's world: Anvil chain 138 mining a block a second, the operators' Safe (deployed
//! fresh, or the configured one on a fork with its owners impersonated), the drill targets owned
//! by that Safe, a rehearsal config in a temporary folder, and the daemon.
//!
//! The daemon normally runs in-process, exactly as `guardian run` runs it. The `restart`
//! scenario also runs it as a `guardian run` child process, so it can be killed with SIGKILL.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use alloy::{
    primitives::{Address, B256, U256, keccak256, utils::parse_ether},
    providers::{DynProvider, Provider, ext::AnvilApi},
    signers::local::PrivateKeySigner,
};
use eyre::{Result, WrapErr, bail, ensure, eyre};
use guardian_chain::{
    Contracts, Devnet, DevnetOptions, Testbed, TestbedOptions, Toolchain,
    safe::SafeClient,
    testbed::{ModuleEnabler, Targets, deploy_targets, install_pause_module},
};
use guardian_config::Config;
use guardian_core::postmortem::PostMortem;
use guardian_daemon::daemon::{KeySource, Keys};
use guardian_multisig::Multisig;
use guardian_store::{IncidentEvent, Store, StoredFinding};
use tokio::sync::watch;

use crate::{ForkSession, Options, report::Event};

/// The variable the rehearsal config names as `[safe] executor_key_env`. The in-process daemon
/// gets its key directly; a `guardian run` child process (or an operator poking at a kept
/// stage) reads it from this variable.
pub const EXECUTOR_ENV: &str = "GUARDIAN_REHEARSAL_EXECUTOR_KEY";

/// The variable the rehearsal config names as `[safe.module] pauser_key_env`, like
/// [`EXECUTOR_ENV`].
pub const PAUSER_ENV: &str = "GUARDIAN_REHEARSAL_PAUSER_KEY";

/// The dev account that holds the pause module's pauser role.
pub(crate) const PAUSER_INDEX: usize = 5;

/// How one scenario's rehearsal config differs from the others'.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Layout {
    /// The drain rule is High (a Safe proposal the owners approve) instead of Critical (the
    /// immediate pause through the module).
    pub(crate) drain_high: bool,
    /// The drain rule acts on pending transactions (`preempt = true`), watched over the
    /// node's WebSocket.
    pub(crate) preempt: bool,
}

/// The managed deployment config's name in `[rollback]`.
pub(crate) const MANAGED: &str = "smart-accounts-config";

/// An operator who approves in the drill: with a key (a fresh stage's dev accounts) or
/// impersonated by the forked node (the configured Safe's real owners).
#[derive(Debug, Clone)]
pub(crate) struct Operator {
    pub(crate) address: Address,
    pub(crate) key: Option<PrivateKeySigner>,
}

/// The drill's own actors: dev accounts that are none of the Safe's owners, nor the executor
/// (account 0) or the release key. A drill must never deposit, drain or spam as an operator,
/// which fixed account numbers would do on a fork of a chain whose Safe is owned by Anvil's
/// well-known dev keys, or with `--owners 9`.
#[derive(Debug, Clone)]
pub(crate) struct Roles {
    /// Two users who deposit and withdraw.
    pub(crate) users: [PrivateKeySigner; 2],
    /// Drains the vault (drain) and steals through the rogue implementation (upgrade).
    pub(crate) attacker: PrivateKeySigner,
    /// Sends the reverting withdrawals (revert-storm).
    pub(crate) spammer: PrivateKeySigner,
}

/// The first `n` of `accounts` (dev account 1 onwards; 0 is the executor) whose address is not
/// in `taken`, by index; `None` if there are not that many.
pub(crate) fn free_accounts(
    accounts: &[Address],
    taken: &[Address],
    n: usize,
) -> Option<Vec<usize>> {
    let free: Vec<usize> =
        (1..accounts.len()).filter(|i| !taken.contains(&accounts[*i])).take(n).collect();
    (free.len() == n).then_some(free)
}

/// `n` dev accounts of `devnet` that are not `taken`.
fn free_signers(devnet: &Devnet, taken: &[Address], n: usize) -> Result<Vec<PrivateKeySigner>> {
    let accounts = (0..devnet.accounts())
        .map(|i| devnet.signer(i).map(|s| s.address()))
        .collect::<Result<Vec<_>>>()?;
    let free = free_accounts(&accounts, taken, n).ok_or_else(|| {
        eyre!(
            "Anvil has {} dev accounts and {} of them are taken by the Safe's owners and the \
             drill: {n} more are needed for the drill's own actors",
            accounts.len(),
            taken.len()
        )
    })?;
    free.into_iter().map(|i| devnet.signer(i)).collect()
}

impl Roles {
    fn pick(devnet: &Devnet, taken: &[Address]) -> Result<Self> {
        let mut picked = free_signers(devnet, taken, 4)?.into_iter();
        let mut next = || picked.next().ok_or_else(|| eyre!("four accounts were picked"));
        Ok(Self { users: [next()?, next()?], attacker: next()?, spammer: next()? })
    }

    /// The drill's accounts, for the report.
    pub(crate) fn report(&self, world: &World) -> crate::report::Actors {
        crate::report::Actors {
            executor: world.executor.address(),
            release_key: world.release_key.address(),
            users: self.users.iter().map(PrivateKeySigner::address).collect(),
            attacker: self.attacker.address(),
            spammer: self.spammer.address(),
        }
    }
}

/// The chain, the Safe and the drill targets.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) devnet: Devnet,
    /// Sends `execTransaction` for the daemon (dev account 0).
    pub(crate) executor: PrivateKeySigner,
    /// The pause module's pauser: sends `pause(target)` at once for Critical findings.
    pub(crate) pauser: PrivateKeySigner,
    /// The Safe's pause module (enabled; VaultV2 and the proxied vault are its targets).
    pub(crate) module: Address,
    /// The Safe's owners, in the Safe's order.
    pub(crate) operators: Vec<Operator>,
    /// Owns the proxied vault's ProxyAdmin.
    pub(crate) release_key: PrivateKeySigner,
    pub(crate) safe: SafeClient,
    pub(crate) targets: Targets,
    /// The Safe's nonce when the stage was ready: the drill's pause must be exactly the next.
    pub(crate) safe_nonce: U256,
    /// The RPC the chain was forked from (without credentials), if any.
    pub(crate) forked_from: Option<String>,
    /// The drill's own actors, none of them an owner.
    pub(crate) roles: Roles,
}

impl World {
    /// A provider that only reads.
    pub(crate) fn reader(&self) -> DynProvider {
        self.devnet.reader()
    }

    /// A provider sending as `operator`: signing with its key, or relying on the fork's
    /// impersonation of its address.
    pub(crate) fn wallet(&self, operator: &Operator) -> DynProvider {
        match &operator.key {
            Some(key) => self.devnet.provider_for(key.clone()),
            None => self.devnet.reader(),
        }
    }

    /// A fresh chain 138 with a new Safe (dev accounts 1..=owners) and the targets.
    async fn fresh(
        toolchain: &Toolchain,
        contracts: &Contracts,
        options: &Options,
    ) -> Result<Self> {
        let bed = Testbed::start(
            toolchain,
            contracts,
            &TestbedOptions {
                devnet: DevnetOptions {
                    chain_id: options.chain_id,
                    block_time: Some(options.block_time),
                    // The owners, the release key past them, and the drill's four actors.
                    accounts: u32::try_from(options.owners + 6).unwrap_or(u32::MAX).max(10),
                    ..DevnetOptions::default()
                },
                owners: options.owners,
                threshold: options.threshold,
                pausers: vec![PAUSER_INDEX],
                // The drill reads state as on a chain that has Multicall3; the end-to-end
                // tests cover one without it.
                multicall3: true,
            },
        )
        .await
        .wrap_err("starting Anvil and deploying the Safe and the vaults")?;
        let Testbed { devnet, deployer, owners, release_key, safe, targets, module, .. } = bed;
        let module = module.ok_or_else(|| eyre!("the testbed deployed no pause module"))?;
        let pauser = devnet.signer(PAUSER_INDEX)?;
        let mut taken: Vec<Address> = owners.iter().map(PrivateKeySigner::address).collect();
        taken.push(release_key.address());
        taken.push(pauser.address());
        let roles = Roles::pick(&devnet, &taken)?;
        let operators = owners
            .into_iter()
            .map(|key| Operator { address: key.address(), key: Some(key) })
            .collect();
        let safe_nonce = safe.nonce().await?;
        Ok(Self {
            devnet,
            executor: deployer,
            pauser,
            module: module.address(),
            operators,
            release_key,
            safe,
            targets,
            safe_nonce,
            forked_from: None,
            roles,
        })
    }

    /// A fork, at the drill's block, of the endpoint behind `fork`'s forwarder, in which the
    /// Safe already lives: its owners are impersonated (and funded for gas) instead of a Safe
    /// being deployed; the drill targets are deployed on the fork, owned by that Safe. Nothing
    /// is ever sent to the endpoint; Anvil only reads through the forwarder.
    async fn fork(
        toolchain: &Toolchain,
        contracts: &Contracts,
        options: &Options,
        fork: &ForkSession,
    ) -> Result<Self> {
        let shown = fork.forwarder.endpoint().to_owned();
        let devnet = Devnet::spawn(
            toolchain,
            &DevnetOptions {
                chain_id: options.chain_id,
                block_time: None,
                fork_url: Some(fork.forwarder.url().to_string()),
                fork_block: Some(fork.block),
                // The owners may be dev accounts too: room for the drill's own actors.
                accounts: 20,
                history_in_memory: None,
            },
        )
        // Anvil only says it did not start; the forwarder knows why (a 429, a timeout).
        .map_err(|error| match fork.forwarder.failure() {
            Some(failure) => eyre!(failure),
            None => error,
        })
        .wrap_err_with(|| format!("forking {shown} at block {}", fork.block))?;
        let executor = devnet.signer(0)?;
        let owners = fork.owners.clone();
        if owners.contains(&executor.address()) {
            bail!(
                "the Safe's owner {} is Anvil's dev account 0, the drill's executor: rehearse \
                 with a Safe whose owners are not Anvil's well-known keys",
                executor.address()
            );
        }
        let release_key = free_signers(&devnet, &owners, 1)?.remove(0);
        let mut taken = owners.clone();
        taken.push(release_key.address());
        let pauser = free_signers(&devnet, &taken, 1)?.remove(0);
        taken.push(pauser.address());
        let roles = Roles::pick(&devnet, &taken)?;
        let provider = devnet.provider_for(executor.clone());
        let safe = SafeClient::connect(provider.clone(), fork.safe)
            .await
            .wrap_err_with(|| format!("the Safe {} on the fork of {shown}", fork.safe))?;
        let reader = devnet.reader();
        let mut operators = Vec::new();
        for owner in owners {
            reader
                .anvil_impersonate_account(owner)
                .await
                .wrap_err_with(|| format!("impersonating owner {owner} on the fork"))?;
            reader.anvil_set_balance(owner, parse_ether("10")?).await?;
            operators.push(Operator { address: owner, key: None });
        }
        let targets =
            deploy_targets(&provider, contracts, safe.address(), release_key.address()).await?;
        // The Safe's own owners cannot sign here: the fork's Safe enables the module itself.
        let module = install_pause_module(
            &provider,
            contracts,
            &executor,
            &safe,
            &[pauser.address()],
            &targets,
            ModuleEnabler::Impersonated(&reader),
        )
        .await
        .wrap_err("deploying and enabling the pause module on the fork")?;
        reader
            .anvil_set_interval_mining(options.block_time)
            .await
            .wrap_err("switching the fork to interval mining")?;
        let safe_nonce = safe.nonce().await?;
        Ok(Self {
            devnet,
            executor,
            pauser,
            module: module.address(),
            operators,
            release_key,
            safe,
            targets,
            safe_nonce,
            forked_from: Some(shown),
            roles,
        })
    }
}

/// The running daemon.
enum Daemon {
    /// In-process, on its own thread and runtime, as `guardian run` runs it.
    Thread { handle: JoinHandle<Result<()>>, shutdown: watch::Sender<bool> },
    /// A `guardian run` child process.
    Process(Child),
}

impl Daemon {
    fn is_finished(&mut self) -> bool {
        match self {
            Self::Thread { handle, .. } => handle.is_finished(),
            Self::Process(child) => !matches!(child.try_wait(), Ok(None)),
        }
    }
}

/// A scenario world. The daemon stops and Anvil dies when it is dropped.
pub(crate) struct Stage {
    pub(crate) world: World,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) config: Config,
    daemon: Option<Daemon>,
    /// Opened once the daemon has created the database.
    findings: Option<Store>,
    multisig: Option<Multisig>,
    /// How many daemons this stage has started (names the child processes' logs).
    starts: usize,
}

impl Stage {
    /// The world and the rehearsal config, without a daemon.
    pub(crate) async fn prepare(
        toolchain: &Toolchain,
        contracts: &Contracts,
        options: &Options,
        fork: Option<&ForkSession>,
        layout: Layout,
    ) -> Result<Self> {
        let world = match fork {
            None => World::fresh(toolchain, contracts, options).await?,
            Some(fork) => World::fork(toolchain, contracts, options, fork).await?,
        };
        let dir = tempfile::Builder::new().prefix("guardian-rehearsal-").tempdir()?;
        write_files(&world, dir.path(), layout).await?;
        let config = Config::load(dir.path().join("guardian.toml"))?;
        Ok(Self { world, dir, config, daemon: None, findings: None, multisig: None, starts: 0 })
    }

    /// [`prepare`](Self::prepare), then start the daemon in-process and wait for its first
    /// committed block.
    pub(crate) async fn start(
        toolchain: &Toolchain,
        contracts: &Contracts,
        options: &Options,
        fork: Option<&ForkSession>,
        layout: Layout,
    ) -> Result<Self> {
        let mut stage = Self::prepare(toolchain, contracts, options, fork, layout).await?;
        stage.start_daemon().await?;
        Ok(stage)
    }

    /// Start the daemon in-process and wait until it has committed a block.
    pub(crate) async fn start_daemon(&mut self) -> Result<()> {
        ensure!(self.daemon.is_none(), "a daemon is already running on this stage");
        let (shutdown, stop) = watch::channel(false);
        let config = self.config.clone();
        let executor = Keys {
            executor: KeySource::Key(self.world.executor.clone()),
            pauser: KeySource::Key(self.world.pauser.clone()),
        };
        // The daemon's future is not Send (the rollback after a pause holds a non-Sync
        // ledger; `guardian run` blocks on it), so it gets its own thread and runtime, exactly
        // as the binary runs it.
        let handle =
            std::thread::Builder::new().name("guardian-daemon".into()).spawn(move || {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()?
                    .block_on(guardian_daemon::daemon::run_with(&config, stop, executor))
            })?;
        self.daemon = Some(Daemon::Thread { handle, shutdown });
        self.starts += 1;
        self.await_daemon().await
    }

    /// Start `guardian run --config <stage>/guardian.toml` as a child process (its output goes
    /// to `daemon-N.log` in the stage folder) and wait until it has committed a block.
    pub(crate) async fn spawn_daemon_process(&mut self, exe: &Path) -> Result<u32> {
        ensure!(self.daemon.is_none(), "a daemon is already running on this stage");
        self.starts += 1;
        let log_path = self.dir().join(format!("daemon-{}.log", self.starts));
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(exe)
            .arg("run")
            .arg("--config")
            .arg(&self.config.source)
            .env(EXECUTOR_ENV, B256::from(self.world.executor.to_bytes()).to_string())
            .env(PAUSER_ENV, B256::from(self.world.pauser.to_bytes()).to_string())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .wrap_err_with(|| format!("starting {} run", exe.display()))?;
        let pid = child.id();
        self.daemon = Some(Daemon::Process(child));
        self.await_daemon().await.wrap_err_with(|| {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            format!("guardian run (pid {pid}); last log lines: {}", tail.join(" | "))
        })?;
        Ok(pid)
    }

    /// SIGKILL the daemon child process: no shutdown, no last write.
    pub(crate) fn kill_daemon_process(&mut self) -> Result<()> {
        match self.daemon.take() {
            Some(Daemon::Process(mut child)) => {
                child.kill().wrap_err("killing guardian run")?;
                child.wait().wrap_err("reaping guardian run")?;
                Ok(())
            }
            Some(other) => {
                self.daemon = Some(other);
                bail!("the daemon runs in-process; only a child process can be killed")
            }
            None => bail!("no daemon is running"),
        }
    }

    /// Wait until the daemon has committed a block past the current cursor (so its pause flow
    /// has started too), then open the rehearsal's views of the database.
    async fn await_daemon(&mut self) -> Result<()> {
        // One connection for the whole wait: opening the database creates it when the daemon
        // has not yet, and a connection outside a transaction sees each commit as it lands.
        let store = Store::open(&self.config.storage.path)?;
        let before = store.cursor()?.map(|b| b.number);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.daemon.as_mut().is_none_or(Daemon::is_finished) {
                let error = match self.daemon.take() {
                    Some(Daemon::Thread { handle, .. }) => {
                        match tokio::task::spawn_blocking(move || handle.join()).await {
                            Ok(Ok(Err(error))) => error,
                            _ => eyre!("the daemon thread ended"),
                        }
                    }
                    Some(Daemon::Process(mut child)) => {
                        eyre!("guardian run exited with {:?}", child.wait().ok())
                    }
                    None => eyre!("no daemon"),
                };
                return Err(error.wrap_err("the daemon stopped while starting"));
            }
            if let Some(cursor) = store.cursor()?
                && before.is_none_or(|b| cursor.number > b)
            {
                if self.multisig.is_none() {
                    self.multisig = Some(
                        guardian_operator::connect(&self.config, self.world.reader(), None).await?,
                    );
                }
                self.findings = Some(store);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.shutdown_daemon().await;
                bail!("the daemon did not commit a block within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether a daemon was ever started on this stage.
    pub(crate) fn ever_ran_daemon(&self) -> bool {
        self.starts > 0
    }

    /// The operators' view of the Safe, as `guardian approve` connects it (no executor key).
    pub(crate) fn multisig(&self) -> Result<&Multisig> {
        self.multisig.as_ref().ok_or_else(|| eyre!("the daemon never started on this stage"))
    }

    /// The rehearsal config folder.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The managed deployment config file.
    pub(crate) fn managed_config(&self) -> PathBuf {
        self.dir().join(format!("{MANAGED}.json"))
    }

    /// The chain head.
    pub(crate) async fn head(&self) -> Result<u64> {
        Ok(self.world.reader().get_block_number().await?)
    }

    fn store(&self) -> Result<&Store> {
        self.findings.as_ref().ok_or_else(|| eyre!("the daemon never started on this stage"))
    }

    /// The block the daemon has committed up to.
    pub(crate) fn cursor(&self) -> Result<Option<u64>> {
        Ok(self.store()?.cursor()?.map(|b| b.number))
    }

    /// Findings recorded so far.
    pub(crate) fn findings(&self) -> Result<Vec<StoredFinding>> {
        self.store()?.findings(None)
    }

    /// One incident as the daemon stored it.
    pub(crate) fn incident(&self, id: i64) -> Result<guardian_core::incident::Incident> {
        Ok(self
            .store()?
            .incident(id)?
            .ok_or_else(|| eyre!("the daemon has no incident #{id}"))?
            .incident)
    }

    /// `guardian audit verify` over the daemon's database and audit.jsonl: what it says, or
    /// the first break.
    pub(crate) fn verify_audit(&self) -> Result<String> {
        let store = self.store()?;
        let file = guardian_store::audit::jsonl_path(&self.config.storage.path);
        let check = guardian_store::audit::verify_copies(store, &file)?;
        match (&check.database, &check.file, &check.divergence) {
            (Ok(db), Some(Ok(_)), None) => {
                Ok(format!("audit log verified: {} entries, head {}", db.entries, db.head))
            }
            (Err(e), _, _) | (_, Some(Err(e)), _) => Err(eyre!("audit log broken: {e}")),
            (_, None, _) => Err(eyre!("no {} beside the database", file.display())),
            (_, _, Some(d)) => Err(eyre!("the database and audit.jsonl part: {d}")),
        }
    }

    /// Incident `id`'s lifecycle events, oldest first, and its post-mortem built from the
    /// daemon's audit log alone, both read in one snapshot of the database: the daemon may
    /// still be carrying the incident on (a rollback finishing) while the report is made.
    pub(crate) fn incident_record(
        &self,
        id: i64,
    ) -> Result<(Vec<IncidentEvent>, Result<PostMortem>)> {
        self.store()?.snapshot(|store| {
            let events = store.incident_events(id)?;
            let postmortem = store
                .audit_entries()
                .and_then(|entries| Ok(PostMortem::build(&entries, id, &self.config.response)?));
            Ok((events, postmortem))
        })
    }

    /// An incident's lifecycle events, oldest first.
    pub(crate) fn incident_events(&self, id: i64) -> Result<Vec<guardian_store::IncidentEvent>> {
        self.store()?.incident_events(id)
    }

    /// Stop the daemon (on request in-process, SIGKILL for a child process) and wait for it.
    async fn shutdown_daemon(&mut self) -> Result<()> {
        match self.daemon.take() {
            None => Ok(()),
            Some(Daemon::Process(mut child)) => {
                child.kill()?;
                child.wait()?;
                Ok(())
            }
            Some(Daemon::Thread { handle, shutdown }) => {
                let _ = shutdown.send(true);
                let joined = tokio::task::spawn_blocking(move || handle.join());
                match tokio::time::timeout(Duration::from_secs(15), joined).await {
                    Ok(Ok(Ok(result))) => result.wrap_err("the daemon stopped with an error"),
                    Ok(Ok(Err(_))) => bail!("the daemon thread panicked"),
                    Ok(Err(error)) => bail!("joining the daemon thread failed: {error}"),
                    Err(_) => bail!("the daemon did not stop within 15 s"),
                }
            }
        }
    }

    /// Stop the daemon and wait for it; Anvil dies with the stage.
    pub(crate) async fn stop(mut self) -> Result<()> {
        self.shutdown_daemon().await
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        match &mut self.daemon {
            Some(Daemon::Thread { shutdown, .. }) => {
                let _ = shutdown.send(true);
            }
            Some(Daemon::Process(child)) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            None => {}
        }
    }
}

/// Poll `probe` every 100 ms until it yields or `timeout` passes.
pub(crate) async fn poll<T, F>(timeout: Duration, mut probe: impl FnMut() -> F) -> Result<Option<T>>
where
    F: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await? {
            return Ok(Some(value));
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Milliseconds and blocks measured from the anomaly.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub(crate) t0: Instant,
    pub(crate) block: u64,
}

impl Clock {
    pub(crate) fn ms(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn event(&self, label: impl Into<String>, block: u64) -> Event {
        Event { label: label.into(), block, ms: self.ms() }
    }
}

/// The `[rollback]` tables of a config that manages [`MANAGED`]: the vault's address key, with
/// `solvent()` as its health check. Shared with the end-to-end tests.
pub const VAULT_ROLLBACK_TOML: &str = r#"[rollback]
backup_dir = "backups"
versions = "contract-versions.json"
ledger = "guardian.sqlite"

[[rollback.configs]]
name = "smart-accounts-config"
path = "smart-accounts-config.json"

[rollback.contracts.vault]
health_call = "solvent()"
keys = [{ config = "smart-accounts-config", pointer = "/contracts/vault/address" }]
"#;

/// Write the vault's deployment into `dir`: the managed config `smart-accounts-config.json`
/// pointing at VaultV2, and `contract-versions.json` with V2 and, before it, V1, each with the
/// runtime code hash read through `reader`. Shared with the end-to-end tests.
pub async fn write_vault_deployment(
    reader: &DynProvider,
    targets: &Targets,
    chain_id: u64,
    dir: &Path,
) -> Result<()> {
    let (v1, v2) = (targets.vault_v1, targets.vault_v2);
    let code_hash =
        async |address| Ok::<_, eyre::Report>(keccak256(reader.get_code_at(address).await?));
    let write = |name: &str, body: String| {
        std::fs::write(dir.join(name), body).wrap_err_with(|| format!("writing {name}"))
    };
    write(
        &format!("{MANAGED}.json"),
        format!(
            "{{\n  \"network\": {{ \"chainId\": {chain_id} }},\n  \"contracts\": {{\n    \"vault\": {{ \"address\": \"{v2}\", \"startBlock\": 2 }}\n  }}\n}}\n"
        ),
    )?;
    write(
        "contract-versions.json",
        format!(
            r#"{{
  "contracts": {{
    "vault": [
      {{ "label": "v2", "address": "{v2}", "deployed": {{ "block": 2 }}, "code_hash": "{h2}" }},
      {{ "label": "v1", "address": "{v1}", "deployed": {{ "block": 1 }}, "code_hash": "{h1}" }}
    ]
  }}
}}
"#,
            h2 = code_hash(v2).await?,
            h1 = code_hash(v1).await?,
        ),
    )
}

/// guardian.toml, the managed deployment config and the version history with real code hashes.
async fn write_files(world: &World, dir: &Path, layout: Layout) -> Result<()> {
    let chain_id = world.devnet.chain_id();
    write_vault_deployment(&world.reader(), &world.targets, chain_id, dir).await?;
    let v2 = world.targets.vault_v2;
    // Pre-emption watches pending transactions over the node's WebSocket; the follower keeps
    // HTTP first.
    let ws = if layout.preempt {
        format!("\n[[rpc]]\nurl = \"{}\"\n", world.devnet.ws_url())
    } else {
        String::new()
    };
    let drain_severity = if layout.drain_high { "high" } else { "critical" };
    let preempt = if layout.preempt { "\npreempt = true" } else { "" };
    std::fs::write(
        dir.join("guardian.toml"),
        format!(
            r#"# Written by guardian rehearse for one scenario; deleted with it.
[chain]
id = {chain_id}
poll_interval_ms = 200

[[rpc]]
url = "{url}"
{ws}
[storage]
path = "guardian.sqlite"

[api]
bind = "127.0.0.1:0"

[safe]
address = "{safe}"
executor_key_env = "{EXECUTOR_ENV}"

[safe.module]
address = "{module}"
pauser_key_env = "{PAUSER_ENV}"

[[contracts]]
name = "vault"
address = "{v2}"
events = ["Withdrawn(address indexed account, address indexed to, uint256 amount)"]
on_pause = "rollback"

[[contracts]]
name = "proxied-vault"
address = "{proxy}"

[[rules]]
name = "vault-drain"
kind = "event"
severity = "{drain_severity}"
contracts = ["vault"]
event = "Withdrawn"
where = ["amount > 1 ether"]{preempt}

[[rules]]
name = "vault-revert-rate"
kind = "revert_rate"
contracts = ["vault"]
blocks = 20
threshold = "10%"
min_sample = 10

[[rules]]
name = "proxied-vault-implementation"
kind = "code_change"
severity = "critical"
contracts = ["proxied-vault"]
target = "implementation"
expected = "{logic}"

{VAULT_ROLLBACK_TOML}"#,
            url = world.devnet.http_url(),
            safe = world.safe.address(),
            proxy = world.targets.proxied_vault,
            logic = world.targets.vault_logic_v1,
            module = world.module,
        ),
    )
    .wrap_err("writing guardian.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drills_actors_skip_every_owner() {
        let accounts: Vec<Address> = (0..12u8).map(Address::with_last_byte).collect();
        // Owners that sit where fixed indices would put the drill's actors (6, 7, 8, 9).
        let owners: Vec<Address> = [6u8, 7, 8, 9].map(Address::with_last_byte).to_vec();
        let free = free_accounts(&accounts, &owners, 5).expect("enough accounts");
        assert_eq!(free, [1, 2, 3, 4, 5]);
        let owners: Vec<Address> = (1..=8u8).map(Address::with_last_byte).collect();
        assert_eq!(free_accounts(&accounts, &owners, 3), Some(vec![9, 10, 11]));
        assert_eq!(free_accounts(&accounts, &owners, 4), None, "not enough: said, not reused");
        assert!(!free_accounts(&accounts, &[], 11).expect("all").contains(&0), "0 is the executor");
    }
}
