//! `guardian module deploy|info|disable`: the pause-only Safe module that lets Critical findings
//! pause at once. Deploying is free of risk (the module can do nothing until the Safe enables
//! it); enabling and disabling are Safe transactions the owners approve with `guardian approve`.

#![allow(clippy::print_stdout, reason = "commands report to the operator's terminal")]

use std::sync::Arc;

use alloy::primitives::Address;
use clap::{Args, Subcommand};
use eyre::{Result, WrapErr, bail, eyre};
use guardian_chain::{
    Toolchain,
    pause_module::{PauseModule, PauseTarget, enable_calldata},
    sender::SendOptions,
};
use guardian_config::Config;
use guardian_core::proposal::ProposalKind;
use guardian_multisig::{Multisig, Proposed};
use serde::Serialize;

use crate::multisig_cmd::{ConfigArg, KeyArgs};

#[derive(Debug, Args)]
pub(crate) struct ModuleArgs {
    #[command(subcommand)]
    command: ModuleCommand,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(Debug, Subcommand)]
enum ModuleCommand {
    /// Deploy the pause module for the configured Safe, listing every `[[contracts]]` entry
    /// with its pause calldata and the pausers given, then propose enabling it (owners approve
    /// with `guardian approve`).
    Deploy {
        /// A key that may pause (repeat for several). Default: the key in the variable
        /// `[safe.module] pauser_key_env` names.
        #[arg(long = "pauser")]
        pausers: Vec<Address>,
        /// The key paying for the deployment (it gets no rights over the module).
        #[command(flatten)]
        key: KeyArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The module of `[safe.module]`: enabled or not, pausers, targets with calldata, and
    /// whether that matches the config.
    Info {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Propose disabling the module (owners approve with `guardian approve`).
    Disable {
        /// Why, for the owners and the audit trail.
        #[arg(long)]
        reason: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// The module's targets as the config declares them: each contract's pause calldata.
pub(crate) fn config_targets(config: &Config) -> Vec<PauseTarget> {
    config
        .contracts
        .iter()
        .map(|c| PauseTarget::with_calldata(c.address, c.pause_calldata.clone()))
        .collect()
}

fn module_address(config: &Config) -> Result<Address> {
    config.safe.as_ref().and_then(|s| s.module.as_ref()).map(|m| m.address).ok_or_else(|| {
        eyre!(
            "{}: no [safe.module] address: deploy one with `guardian module deploy`, then add it",
            config.source.display()
        )
    })
}

/// How the module compares with the config.
#[derive(Debug, Serialize)]
struct Info {
    module: Address,
    safe: Address,
    enabled: bool,
    pausers: Vec<Address>,
    targets: Vec<(Address, String)>,
    /// The pauser key of this host is listed.
    pauser_listed: Option<bool>,
    /// Differences from the config, in words (empty: it matches).
    mismatches: Vec<String>,
}

pub(crate) async fn module(args: ModuleArgs) -> Result<()> {
    let config = args.config.load()?;
    let safe = config.safe.as_ref().ok_or_else(|| {
        eyre!("{}: no [safe] table: the module belongs to a Safe", config.source.display())
    })?;
    let multisig = Arc::new(crate::multisig_cmd::connect(&config).await?);
    let actor = crate::incidents_cmd::actor();
    match args.command {
        ModuleCommand::Deploy { pausers, key, json } => {
            let mut pausers = pausers;
            if pausers.is_empty() {
                let pauser = guardian_operator::pauser_key(&config)?.ok_or_else(|| {
                    eyre!("give --pauser ADDRESS, or set [safe.module] pauser_key_env and its variable")
                })?;
                pausers.push(pauser.address());
            }
            let deployer = key.load()?;
            let toolchain = Toolchain::discover()?;
            let contracts = guardian_chain::compile(&toolchain)?;
            let targets = config_targets(&config);
            let provider = crate::multisig_cmd::wallet(&config, deployer.clone())?;
            let module = PauseModule::deploy(
                provider,
                &contracts,
                &deployer,
                safe.address,
                &pausers,
                &targets,
                &SendOptions::default(),
            )
            .await?;
            let proposed = propose(
                &multisig,
                ProposalKind::EnableModule,
                module.address(),
                "enable the pause module",
                &actor,
            )
            .await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "module": module.address(),
                        "pausers": pausers,
                        "targets": targets.iter().map(|t| t.address).collect::<Vec<_>>(),
                        "enable": proposed,
                    }))?
                );
                return Ok(());
            }
            println!("pause module {} deployed for Safe {}", module.address(), safe.address);
            println!("pausers: {pausers:?}");
            for t in &targets {
                println!("target   {} with calldata {}", t.address, t.pause_data);
            }
            print_proposed(&proposed);
            println!(
                "\nput it in {}:\n\n[safe.module]\naddress = \"{}\"\npauser_key_env = \"GUARDIAN_PAUSER_KEY\"",
                config.source.display(),
                module.address()
            );
        }
        ModuleCommand::Info { json } => {
            let address = module_address(&config)?;
            let module = PauseModule::connect(multisig.provider().clone(), address).await?;
            let state = module.state().await?;
            let mut mismatches = Vec::new();
            if state.safe != safe.address {
                mismatches.push(format!(
                    "it acts for Safe {}, the config's is {}",
                    state.safe, safe.address
                ));
            }
            if !state.enabled {
                mismatches.push("it is not enabled on the Safe".to_owned());
            }
            for wanted in config_targets(&config) {
                match state.targets.iter().find(|t| t.address == wanted.address) {
                    None => mismatches.push(format!("{} is not a target", wanted.address)),
                    Some(t) if t.pause_data != wanted.pause_data => mismatches.push(format!(
                        "{} pauses with {}, the config says {}",
                        wanted.address, t.pause_data, wanted.pause_data
                    )),
                    Some(_) => {}
                }
            }
            let pauser_listed = match guardian_operator::pauser_key(&config) {
                Ok(Some(key)) => {
                    let listed = state.pausers.contains(&key.address());
                    if !listed {
                        mismatches
                            .push(format!("this host's pauser {} is not listed", key.address()));
                    }
                    Some(listed)
                }
                _ => None,
            };
            let info = Info {
                module: address,
                safe: state.safe,
                enabled: state.enabled,
                pausers: state.pausers,
                targets: state
                    .targets
                    .iter()
                    .map(|t| (t.address, t.pause_data.to_string()))
                    .collect(),
                pauser_listed,
                mismatches,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
                return Ok(());
            }
            println!("module   {} for Safe {}", info.module, info.safe);
            println!("enabled  {}", info.enabled);
            for p in &info.pausers {
                println!("pauser   {p}");
            }
            for (t, data) in &info.targets {
                println!("target   {t} with calldata {data}");
            }
            if info.mismatches.is_empty() {
                println!("matches the config");
            } else {
                for m in &info.mismatches {
                    println!("MISMATCH {m}");
                }
            }
        }
        ModuleCommand::Disable { reason, json } => {
            if reason.trim().is_empty() {
                bail!("--reason must say why");
            }
            let address = module_address(&config)?;
            let proposed =
                propose(&multisig, ProposalKind::DisableModule, address, &reason, &actor).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&proposed)?);
                return Ok(());
            }
            print_proposed(&proposed);
        }
    }
    Ok(())
}

async fn propose(
    multisig: &Multisig,
    kind: ProposalKind,
    module: Address,
    reason: &str,
    actor: &str,
) -> Result<Proposed> {
    let (data, label) = match kind {
        ProposalKind::EnableModule => (enable_calldata(module), "pause module: enable"),
        _ => {
            let handle = PauseModule::connect(multisig.provider().clone(), module).await?;
            (handle.disable_call().await?.data, "pause module: disable")
        }
    };
    multisig
        .propose_safe_call(kind, (multisig.safe().address(), data, label), reason, actor)
        .await
        .wrap_err_with(|| format!("proposing {} of module {module}", kind.as_str()))
}

fn print_proposed(proposed: &Proposed) {
    if let Some(p) = proposed.proposal() {
        println!("{} proposed at Safe nonce {}", p.kind.as_str(), p.nonce);
        println!("safeTxHash {}", p.safe_tx_hash);
        println!("owners approve with: guardian approve {}", p.safe_tx_hash);
    }
}
