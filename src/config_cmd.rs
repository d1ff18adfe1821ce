//! `guardian config …`: work on a config file without starting anything.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use alloy::{primitives::U256, providers::Provider};
use clap::{Args, Subcommand};
use guardian_config::Config;
use serde::Serialize;

#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a config file and print what guardian would watch.
    ///
    /// Parses the file, checks every key, address, signature, predicate, threshold and bound by
    /// compiling the rules exactly as the daemon does, checks the [rollback] table against the
    /// contracts, and reads the secrets it names from the environment. Opens no connection and
    /// writes nothing (unless --online). Errors name file:line:column; secrets are never printed.
    /// What is valid but probably not meant (a file without a final newline, no [safe], no
    /// [webhook]) is printed as a warning.
    Check {
        /// guardian's config file (guardian.toml; config/guardian.toml is the commented
        /// template).
        #[arg(long, short, value_name = "FILE", env = "GUARDIAN_CONFIG")]
        config: PathBuf,
        /// Also ask the chain, over the [[rpc]] endpoints: every endpoint serves [chain] id,
        /// every contract has code, the Safe answers as a Safe 1.4.1, the executor can pay for
        /// an execution. Exits 1 if any check fails.
        #[arg(long)]
        online: bool,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// What `config check --json` prints.
#[derive(Debug, Serialize)]
struct Checked {
    config: PathBuf,
    valid: bool,
    error: Option<String>,
    warnings: Vec<String>,
    /// With --online: each check and whether it passed.
    online: Vec<OnlineCheck>,
}

/// One `--online` check.
#[derive(Debug, Serialize)]
struct OnlineCheck {
    what: String,
    ok: bool,
    detail: String,
}

/// Exit status: 0 if valid (and every online check passed), 1 with the located error on stderr
/// if not.
pub(crate) fn run(args: ConfigArgs) -> ExitCode {
    let ConfigCommand::Check { config: path, online, json } = args.command;
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(error) => {
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&Checked {
                        config: path,
                        valid: false,
                        error: Some(format!("{error:#}")),
                        warnings: Vec::new(),
                        online: Vec::new(),
                    })
                    .unwrap_or_default()
                );
            }
            #[allow(clippy::print_stderr, reason = "the command reports the located error")]
            {
                eprintln!("error: {error}");
            }
            return ExitCode::FAILURE;
        }
    };
    let checks = if online { online_checks(&config) } else { Vec::new() };
    let passed = checks.iter().all(|c| c.ok);
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&Checked {
                config: path,
                valid: true,
                error: None,
                warnings: config.warnings.clone(),
                online: checks,
            })
            .unwrap_or_default()
        );
    } else {
        out!("{}", config.summary());
        for warning in &config.warnings {
            outln!("warning: {warning}");
        }
        for check in &checks {
            outln!(
                "{} {}: {}",
                if check.ok { "ok    " } else { "FAILED" },
                check.what,
                check.detail
            );
        }
    }
    if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// The `--online` checks, on a runtime of their own.
fn online_checks(config: &Config) -> Vec<OnlineCheck> {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            return vec![OnlineCheck { what: "runtime".into(), ok: false, detail: e.to_string() }];
        }
    };
    runtime.block_on(ask_the_chain(config))
}

/// Gas an execution of a pause costs at most, for the executor's balance check (a pause through
/// a 2-of-3 Safe 1.4.1 uses about 90 000).
const EXECUTION_GAS: u64 = 300_000;

async fn ask_the_chain(config: &Config) -> Vec<OnlineCheck> {
    let mut checks = Vec::new();
    let mut check = |what: String, result: Result<String, String>| {
        let (ok, detail) = match result {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        checks.push(OnlineCheck { what, ok, detail });
    };
    let pool = match guardian_operator::rpc_pool(config) {
        Ok(pool) => pool,
        Err(e) => {
            check("[[rpc]]".into(), Err(format!("{e:#}")));
            return checks;
        }
    };
    match pool.verify_chain().await {
        Ok(0) => {
            check("[[rpc]]".into(), Err("no endpoint answers".into()));
            return checks;
        }
        Ok(n) => check(
            "[[rpc]]".into(),
            Ok(format!(
                "{n} of {} endpoint(s) answer with chain id {}",
                pool.endpoints().len(),
                config.chain.id
            )),
        ),
        Err(e) => {
            check("[[rpc]]".into(), Err(e.to_string()));
            return checks;
        }
    }
    let provider = pool.failover_provider(Duration::from_secs(1));
    for contract in &config.contracts {
        let code = provider.get_code_at(contract.address).await;
        check(
            format!("contract {}", contract.name),
            match code {
                Ok(code) if code.is_empty() => Err(format!("no code at {}", contract.address)),
                Ok(code) => Ok(format!("{} bytes of code at {}", code.len(), contract.address)),
                Err(e) => Err(format!("reading the code at {}: {e}", contract.address)),
            },
        );
    }
    let Some(safe) = &config.safe else { return checks };
    match guardian_chain::safe::SafeClient::connect(provider.clone(), safe.address).await {
        Ok(client) => {
            let owners = client.owners().await.map(|o| o.len()).unwrap_or_default();
            let threshold = client.threshold().await.unwrap_or_default();
            check(
                "[safe]".into(),
                Ok(format!(
                    "Safe {} at {}: {threshold} of {owners} owners",
                    guardian_chain::safe::SAFE_VERSION,
                    safe.address
                )),
            );
        }
        Err(e) => check("[safe]".into(), Err(format!("{e:#}"))),
    }
    if safe.executor_key_env.is_some() {
        let funded = async {
            let key = guardian_operator::executor_key(config)
                .map_err(|e| format!("{e:#}"))?
                .ok_or_else(|| "no key".to_owned())?;
            let balance = provider.get_balance(key.address()).await.map_err(|e| e.to_string())?;
            let price = provider.get_gas_price().await.map_err(|e| e.to_string())?;
            let needed = U256::from(price) * U256::from(EXECUTION_GAS);
            if balance < needed {
                return Err(format!(
                    "{} holds {balance} wei; one execution may cost {needed} wei ({EXECUTION_GAS} gas at {price} wei)",
                    key.address()
                ));
            }
            Ok(format!("{} holds {balance} wei (one execution: up to {needed} wei)", key.address()))
        };
        check("executor".into(), funded.await);
    }
    checks
}
