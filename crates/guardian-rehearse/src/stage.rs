//! One scenario's world: Anvil chain 138 mining a block a second, the Safe and the vaults from
//! [`Testbed`], a rehearsal config in a temporary folder, and the daemon running in-process.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use alloy::{
    primitives::{Address, B256, keccak256},
    providers::Provider,
};
use eyre::{Result, WrapErr, bail};
use guardian_chain::{Contracts, DevnetOptions, Testbed, TestbedOptions, Toolchain};
use guardian_config::Config;
use guardian_multisig::Multisig;
use guardian_store::{Store, StoredFinding};
use std::thread::JoinHandle;

use tokio::sync::watch;

use crate::{Options, report::Event};

/// The variable the rehearsal config names as `[safe] executor_key_env`. It holds an Anvil dev
/// key (public knowledge); see [`set_executor_key`].
pub const EXECUTOR_ENV: &str = "GUARDIAN_REHEARSAL_EXECUTOR_KEY";

/// The managed deployment config's name in `[rollback]`.
pub(crate) const MANAGED: &str = "smart-accounts-config";

/// A running scenario world. The daemon stops and Anvil dies when it is dropped.
pub(crate) struct Stage {
    pub(crate) bed: Testbed,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) config: Config,
    /// The operators' view of the Safe, as `guardian approve` connects it (no executor key).
    pub(crate) multisig: Multisig,
    findings: Store,
    shutdown: watch::Sender<bool>,
    daemon: Option<JoinHandle<Result<()>>>,
}

impl Stage {
    pub(crate) async fn start(
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
                    ..DevnetOptions::default()
                },
                owners: options.owners,
                threshold: options.threshold,
            },
        )
        .await
        .wrap_err("starting Anvil and deploying the Safe and the vaults")?;
        let dir = tempfile::Builder::new().prefix("guardian-rehearsal-").tempdir()?;
        write_files(&bed, dir.path()).await?;
        let path = dir.path().join("guardian.toml");

        set_executor_key(&bed.deployer);
        let config = Config::load(&path)?;
        let (shutdown, stop) = watch::channel(false);
        let daemon_config = config.clone();
        // The daemon's future is not Send (the rollback after a pause holds a non-Sync
        // ledger; `guardian run` blocks on it), so it gets its own thread and runtime, exactly
        // as the binary runs it.
        let daemon =
            std::thread::Builder::new().name("guardian-daemon".into()).spawn(move || {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()?
                    .block_on(guardian_daemon::daemon::run(&daemon_config, stop))
            })?;
        let findings = match wait_for_cursor(&config.storage.path, &daemon).await {
            Ok(store) => store,
            Err(error) => {
                let _ = shutdown.send(true);
                return Err(match tokio::task::spawn_blocking(move || daemon.join()).await {
                    Ok(Ok(Err(daemon_error))) => daemon_error.wrap_err("the daemon did not start"),
                    _ => error,
                });
            }
        };
        let multisig = guardian_daemon::pauser::connect(&config, bed.devnet.reader(), None).await?;
        Ok(Self { bed, dir, config, multisig, findings, shutdown, daemon: Some(daemon) })
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
        Ok(self.bed.devnet.reader().get_block_number().await?)
    }

    /// The block the daemon has committed up to.
    pub(crate) fn cursor(&self) -> Result<Option<u64>> {
        Ok(self.findings.cursor()?.map(|b| b.number))
    }

    /// Findings recorded so far.
    pub(crate) fn findings(&self) -> Result<Vec<StoredFinding>> {
        self.findings.findings(None)
    }

    /// True while the daemon task runs.
    pub(crate) fn daemon_running(&self) -> bool {
        self.daemon.as_ref().is_some_and(|d| !d.is_finished())
    }

    /// Stop the daemon and wait for it.
    pub(crate) async fn stop(mut self) -> Result<()> {
        let _ = self.shutdown.send(true);
        if let Some(daemon) = self.daemon.take() {
            let joined = tokio::task::spawn_blocking(move || daemon.join());
            match tokio::time::timeout(Duration::from_secs(15), joined).await {
                Ok(Ok(Ok(result))) => result.wrap_err("the daemon stopped with an error")?,
                Ok(Ok(Err(_))) => bail!("the daemon thread panicked"),
                Ok(Err(error)) => bail!("joining the daemon thread failed: {error}"),
                Err(_) => bail!("the daemon did not stop within 15 s"),
            }
        }
        Ok(())
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Put the executor key where the rehearsal config's `executor_key_env` points.
///
/// The daemon reads its key from the environment, as `guardian run` does. The variable is set
/// only here, before the scenario's daemon thread exists and while no request is in flight, and
/// never removed: removing it later would race with that thread's own reads of the environment
/// (libc `getenv` in DNS resolution is not covered by std's lock). The key is Anvil's dev
/// account 0, the same for every scenario and public knowledge, and the variable dies with the
/// `guardian rehearse` process.
fn set_executor_key(key: &alloy::signers::local::PrivateKeySigner) {
    let value = B256::from(key.to_bytes()).to_string();
    if std::env::var(EXECUTOR_ENV).ok().as_deref() != Some(value.as_str()) {
        // SAFETY: see above; no other thread of this process reads the environment now.
        unsafe { std::env::set_var(EXECUTOR_ENV, value) };
    }
}

/// Wait until the daemon has committed its first block (so its pause flow has started too).
async fn wait_for_cursor(db: &Path, daemon: &JoinHandle<Result<()>>) -> Result<Store> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if daemon.is_finished() {
            bail!("the daemon stopped while starting");
        }
        if db.exists()
            && let Ok(store) = Store::open(db)
            && store.cursor().ok().flatten().is_some()
        {
            return Ok(store);
        }
        if Instant::now() > deadline {
            bail!("the daemon did not commit a block within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
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

/// Runtime code hash at `address`.
async fn code_hash(bed: &Testbed, address: Address) -> Result<B256> {
    Ok(keccak256(bed.devnet.reader().get_code_at(address).await?))
}

/// guardian.toml, the managed deployment config and the version history with real code hashes.
async fn write_files(bed: &Testbed, dir: &Path) -> Result<()> {
    let (v1, v2) = (bed.targets.vault_v1, bed.targets.vault_v2);
    let chain_id = bed.devnet.chain_id();
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
            h2 = code_hash(bed, v2).await?,
            h1 = code_hash(bed, v1).await?,
        ),
    )?;
    write(
        "guardian.toml",
        format!(
            r#"# Written by guardian rehearse for one scenario; deleted with it.
[chain]
id = {chain_id}
poll_interval_ms = 200

[[rpc]]
url = "{url}"

[storage]
path = "guardian.sqlite"

[api]
bind = "127.0.0.1:0"

[safe]
address = "{safe}"
executor_key_env = "{EXECUTOR_ENV}"

[[contracts]]
name = "vault"
address = "{v2}"
events = ["Withdrawn(address indexed account, address indexed to, uint256 amount)"]
on_pause = "rollback"

[[rules]]
name = "vault-drain"
kind = "event"
severity = "critical"
contracts = ["vault"]
event = "Withdrawn"
where = ["amount > 1 ether"]

[[rules]]
name = "vault-revert-rate"
kind = "revert_rate"
contracts = ["vault"]
blocks = 20
threshold = "10%"
min_sample = 10

[rollback]
backup_dir = "backups"
versions = "contract-versions.json"
ledger = "guardian.sqlite"

[[rollback.configs]]
name = "{MANAGED}"
path = "{MANAGED}.json"

[rollback.contracts.vault]
health_call = "solvent()"
keys = [{{ config = "{MANAGED}", pointer = "/contracts/vault/address" }}]
"#,
            url = bed.devnet.http_url(),
            safe = bed.safe.address(),
        ),
    )?;
    Ok(())
}
