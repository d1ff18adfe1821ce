//! After a rollback: restart the services that read the repointed configs, then verify that they
//! recovered — health endpoints answer as expected, the rollback target's health view still holds,
//! and the error rate of the transactions to it is back under its baseline.
//!
//! ```toml
//! [[rollback.restart]]
//! configs = ["smart-accounts-config"]         # restart when one of these was rewritten (default: any)
//! command = ["systemctl", "restart", "smart-accounts"]   # or: unit = "smart-accounts.service"
//! timeout_secs = 60                           # default; killed after it
//!
//! [[rollback.health]]
//! url = "http://127.0.0.1:9000/health"
//! expect_status = 200                         # default
//! within_secs = 30                            # default; asked every second until then
//!
//! [rollback.verify]
//! error_rate_blocks = 10                      # the blocks after the rollback to count over
//! max_error_rate_percent = 10                 # default: the operators' revert-rate trigger
//! ```
//!
//! Each restart's output goes to a file under `<backup_dir>/recovery/`, named in the report.

use std::{
    collections::BTreeSet,
    fmt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use alloy::{
    eips::BlockNumberOrTag,
    primitives::Address,
    providers::Provider,
    rpc::types::{TransactionRequest, TransactionTrait},
};
use eyre::{Result, WrapErr, bail, ensure};
use serde::Deserialize;

use crate::config::RollbackSettings;

/// One `[[rollback.restart]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartHook {
    /// The managed configs whose rewrite calls for this restart; empty: any.
    #[serde(default)]
    pub configs: Vec<String>,
    /// The program and its arguments, run without a shell, from guardian.toml's folder.
    #[serde(default)]
    pub command: Vec<String>,
    /// Or a systemd unit: `systemctl restart UNIT`.
    #[serde(default)]
    pub unit: Option<String>,
    /// Seconds before the command is killed and counted as failed.
    #[serde(default = "default_restart_timeout")]
    pub timeout_secs: u64,
}

/// One `[[rollback.health]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// The endpoint, `http://` or `https://`.
    pub url: String,
    /// The status it must answer.
    #[serde(default = "default_expect_status")]
    pub expect_status: u16,
    /// Seconds after the restarts within which it must answer so.
    #[serde(default = "default_within")]
    pub within_secs: u64,
}

/// `[rollback.verify]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRateCheck {
    /// How many blocks after the rollback to count the transactions to the target over.
    pub error_rate_blocks: u64,
    /// The share of them that may revert, in percent.
    #[serde(default = "default_max_error_rate")]
    pub max_error_rate_percent: u8,
}

fn default_restart_timeout() -> u64 {
    60
}
fn default_expect_status() -> u16 {
    200
}
fn default_within() -> u64 {
    30
}
fn default_max_error_rate() -> u8 {
    10
}

/// The checked recovery settings of `[rollback]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoverySettings {
    /// Restart hooks, in order.
    pub restart: Vec<RestartHook>,
    /// Health endpoints.
    pub health: Vec<HealthCheck>,
    /// The error-rate check, when configured.
    pub verify: Option<ErrorRateCheck>,
    /// Where the commands run and relative programs are found (guardian.toml's folder).
    pub base_dir: PathBuf,
}

impl RecoverySettings {
    /// Check the entries against the managed config `names`.
    pub fn check(&self, names: &BTreeSet<&str>) -> Result<()> {
        for (i, hook) in self.restart.iter().enumerate() {
            match (&hook.unit, hook.command.is_empty()) {
                (Some(_), false) => {
                    bail!("[[rollback.restart]] #{} has both `unit` and `command`: keep one", i + 1)
                }
                (Some(unit), true) => ensure!(
                    !unit.is_empty() && !unit.starts_with('-'),
                    "[[rollback.restart]] #{} unit {unit:?} is not a unit name",
                    i + 1
                ),
                (None, _) => ensure!(
                    hook.command.first().is_some_and(|p| !p.is_empty()),
                    "[[rollback.restart]] #{} needs `unit = \"svc.service\"` or a `command` \
                     array, e.g. [\"systemctl\", \"restart\", \"svc\"]",
                    i + 1
                ),
            }
            ensure!(
                hook.timeout_secs > 0,
                "[[rollback.restart]] #{} timeout_secs must be above 0",
                i + 1
            );
            for config in &hook.configs {
                ensure!(
                    names.contains(config.as_str()),
                    "[[rollback.restart]] #{} names config {config:?}, which is not a \
                     [[rollback.configs]] entry",
                    i + 1
                );
            }
        }
        for check in &self.health {
            let url: alloy::transports::http::reqwest::Url =
                check.url.parse().wrap_err_with(|| {
                    format!("[[rollback.health]] url {:?} is not a URL", check.url)
                })?;
            ensure!(
                matches!(url.scheme(), "http" | "https"),
                "[[rollback.health]] url {:?} must be http:// or https://",
                check.url
            );
            ensure!(
                (100..600).contains(&check.expect_status),
                "[[rollback.health]] expect_status {} is not an HTTP status",
                check.expect_status
            );
        }
        if let Some(verify) = &self.verify {
            ensure!(
                verify.error_rate_blocks > 0,
                "[rollback.verify] error_rate_blocks must be above 0"
            );
            ensure!(
                verify.max_error_rate_percent <= 100,
                "[rollback.verify] max_error_rate_percent must be at most 100"
            );
        }
        Ok(())
    }

    /// Whether nothing is configured (recovery is then verified at once, saying so).
    pub fn is_empty(&self) -> bool {
        self.restart.is_empty() && self.health.is_empty() && self.verify.is_none()
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// What was checked (`restart systemctl restart svc`, `health http://…`).
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was seen.
    pub detail: String,
}

/// Every check of one recovery, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryChecks {
    /// The checks.
    pub checks: Vec<CheckResult>,
    /// The backup that undoes the rollback, named when a check failed.
    pub undo: Option<String>,
}

impl RecoveryChecks {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

impl fmt::Display for RecoveryChecks {
    /// One line: each check with what was seen; on failure, the failed ones first and the undo.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.checks.is_empty() {
            return f
                .write_str("no restart hooks, health endpoints or error-rate check configured");
        }
        let failed: Vec<_> = self.checks.iter().filter(|c| !c.passed).collect();
        if !failed.is_empty() {
            let names: Vec<_> = failed.iter().map(|c| c.name.as_str()).collect();
            write!(f, "{} failed; ", names.join(", "))?;
        }
        let all: Vec<String> =
            self.checks.iter().map(|c| format!("{}: {}", c.name, c.detail)).collect();
        f.write_str(&all.join("; "))?;
        if let (false, Some(undo)) = (failed.is_empty(), &self.undo) {
            write!(f, "; undo the rollback with `guardian backup restore {undo}`")?;
        }
        Ok(())
    }
}

/// What one recovery is about.
#[derive(Debug, Clone)]
pub struct RecoveryTarget<'a> {
    /// The managed configs that were rewritten (the restart hooks of these run).
    pub configs: Vec<String>,
    /// The address the configs now point to (a rollback; a restore has none): its health view
    /// and error rate are checked.
    pub address: Option<Address>,
    /// Its health view, when the contract has one.
    pub health_call: Option<&'a str>,
    /// Whether the rollback wrote files (the restarts run only then).
    pub restart: bool,
    /// The block the rollback finished at (the error rate counts the blocks after it).
    pub from_block: u64,
    /// Names the restart logs (`incident-7`, `rollback-<stamp>`).
    pub label: &'a str,
    /// The undo backup's stamp, named in a failed report.
    pub undo: Option<String>,
}

/// Run the restarts (when the rollback wrote files) and every check, and report each.
pub async fn run_recovery<P: Provider>(
    settings: &RollbackSettings,
    provider: &P,
    target: &RecoveryTarget<'_>,
) -> RecoveryChecks {
    let recovery = &settings.recovery;
    let mut checks = Vec::new();
    if target.restart {
        let written: BTreeSet<&str> = target.configs.iter().map(String::as_str).collect();
        let log_dir = settings.backup_dir.join("recovery");
        for (i, hook) in recovery.restart.iter().enumerate() {
            if !hook.configs.is_empty()
                && !hook.configs.iter().any(|c| written.contains(c.as_str()))
            {
                continue;
            }
            let log = log_dir.join(format!("{}-restart-{}.log", target.label, i + 1));
            checks.push(restart(hook, &recovery.base_dir, &log).await);
        }
    }
    for check in &recovery.health {
        checks.push(health(check).await);
    }
    if let Some(address) = target.address {
        if let Some(call) = target.health_call {
            checks.push(health_view(provider, address, call).await);
        }
        if let Some(verify) = &recovery.verify {
            checks.push(error_rate(provider, verify, address, target.from_block).await);
        }
    }
    RecoveryChecks { checks, undo: target.undo.clone() }
}

impl RestartHook {
    /// The command line it runs.
    pub fn argv(&self) -> Vec<String> {
        match &self.unit {
            Some(unit) => vec!["systemctl".into(), "restart".into(), unit.clone()],
            None => self.command.clone(),
        }
    }
}

async fn restart(hook: &RestartHook, base_dir: &Path, log: &Path) -> CheckResult {
    let argv = hook.argv();
    let name = format!("restart `{}`", argv.join(" "));
    let outcome = async {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).wrap_err_with(|| format!("creating {}", dir.display()))?;
        }
        let file = open_log(log)?;
        let program = &argv[0];
        let program = if program.contains('/') { base_dir.join(program) } else { program.into() };
        let mut child = tokio::process::Command::new(&program)
            .args(&argv[1..])
            .current_dir(base_dir)
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .wrap_err_with(|| format!("starting {}", program.display()))?;
        let started = Instant::now();
        match tokio::time::timeout(Duration::from_secs(hook.timeout_secs), child.wait()).await {
            Ok(status) => {
                let status = status?;
                eyre::Ok((
                    status.success(),
                    format!("{status} after {} ms", started.elapsed().as_millis()),
                ))
            }
            Err(_) => {
                let _ = child.kill().await;
                Ok((false, format!("killed after {} s without finishing", hook.timeout_secs)))
            }
        }
    }
    .await;
    let log_note = format!(" (output in {})", log.display());
    match outcome {
        Ok((passed, detail)) => CheckResult { name, passed, detail: detail + &log_note },
        Err(error) => CheckResult { name, passed: false, detail: format!("{error:#}") },
    }
}

/// The log file, never through a symlink planted in its place.
fn open_log(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .wrap_err_with(|| format!("opening {}", path.display()))
}

async fn health(check: &HealthCheck) -> CheckResult {
    let name = format!("health {}", check.url);
    let client = match alloy::transports::http::reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    {
        Ok(client) => client,
        Err(error) => return CheckResult { name, passed: false, detail: error.to_string() },
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(check.within_secs);
    loop {
        let seen = match client.get(&check.url).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                if status == check.expect_status {
                    let ms = started.elapsed().as_millis();
                    return CheckResult {
                        name,
                        passed: true,
                        detail: format!("{status} after {ms} ms"),
                    };
                }
                format!("HTTP {status}")
            }
            Err(error) => format!("no answer: {}", guardian_without_url(&error)),
        };
        if Instant::now() + Duration::from_secs(1) > deadline {
            let detail =
                format!("{seen}, not {} within {} s", check.expect_status, check.within_secs);
            return CheckResult { name, passed: false, detail };
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// reqwest's error without the URL (already in the check's name).
fn guardian_without_url(error: &alloy::transports::http::reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(&format!(" ({url})"), "").replace(url.as_str(), "the endpoint");
    }
    text
}

async fn health_view<P: Provider>(provider: &P, address: Address, call: &str) -> CheckResult {
    let name = format!("{call} on {address}");
    let request = match guardian_core::proposal::no_arg_calldata(call) {
        Ok(data) => TransactionRequest::default().to(address).input(data.into()),
        Err(error) => return CheckResult { name, passed: false, detail: error.to_string() },
    };
    match provider.call(request).await {
        Ok(returned) => {
            let healthy = crate::rollback::returns_true(&returned);
            let detail = if healthy { "true".to_owned() } else { format!("returned {returned}") };
            CheckResult { name, passed: healthy, detail }
        }
        Err(error) => {
            CheckResult { name, passed: false, detail: format!("reverted or unreachable: {error}") }
        }
    }
}

async fn error_rate<P: Provider>(
    provider: &P,
    verify: &ErrorRateCheck,
    address: Address,
    from_block: u64,
) -> CheckResult {
    let name = format!("error rate to {address}");
    let first = from_block + 1;
    let last = from_block + verify.error_rate_blocks;
    let outcome = async {
        // Wait for the blocks to exist: at most a minute a block, so a stalled chain fails the
        // check rather than holding the incident forever.
        let deadline = Instant::now() + Duration::from_secs(60 * verify.error_rate_blocks);
        while provider.get_block_number().await? < last {
            ensure!(Instant::now() < deadline, "the chain did not reach block {last}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let (mut total, mut failed) = (0u64, 0u64);
        for number in first..=last {
            let block = provider
                .get_block_by_number(BlockNumberOrTag::Number(number))
                .full()
                .await?
                .ok_or_else(|| eyre::eyre!("block {number} is missing"))?;
            for tx in block.transactions.txns() {
                if tx.to() != Some(address) {
                    continue;
                }
                total += 1;
                let receipt = provider
                    .get_transaction_receipt(*tx.inner.tx_hash())
                    .await?
                    .ok_or_else(|| eyre::eyre!("no receipt for {}", tx.inner.tx_hash()))?;
                if !receipt.status() {
                    failed += 1;
                }
            }
        }
        eyre::Ok((total, failed))
    }
    .await;
    match outcome {
        Ok((total, failed)) => {
            let max = u64::from(verify.max_error_rate_percent);
            let passed = failed * 100 <= max * total;
            let detail = format!(
                "{failed} of {total} transactions reverted over blocks {first}–{last} (at most {max} %)"
            );
            CheckResult { name, passed, detail }
        }
        Err(error) => CheckResult { name, passed: false, detail: format!("{error:#}") },
    }
}
