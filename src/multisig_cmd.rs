//! `guardian proposals`, `approve`, `pause`, `unpause` and `safe`: the operators' side of the
//! Safe flow. Logic lives in `guardian-multisig`; this file parses, asks, and prints.

#![allow(clippy::print_stdout, reason = "commands report to the operator's terminal")]

use std::{
    io::{BufRead, Write},
    path::PathBuf,
    str::FromStr,
};

use alloy::{
    primitives::{Address, B256, U256},
    providers::DynProvider,
    signers::local::PrivateKeySigner,
    transports::http::reqwest::Url,
};
use clap::{Args, Subcommand};
use eyre::{Result, WrapErr, bail, ensure, eyre};
use guardian_chain::{
    Contracts, Toolchain,
    devnet::wallet_provider,
    safe::{SafeClient, SafeSingletons},
};
use guardian_config::Config;
use guardian_core::proposal::ProposalKind;
use guardian_multisig::{Multisig, ProposalDetail, ProposalStore, ProposeRequest, Proposed};

/// Where the config is.
#[derive(Debug, Args)]
pub(crate) struct ConfigArg {
    /// The config file.
    #[arg(long, global = true, env = "GUARDIAN_CONFIG", default_value = "config/guardian.toml")]
    config: PathBuf,
}

impl ConfigArg {
    fn load(&self) -> Result<Config> {
        Config::load(&self.config)
    }
}

async fn connect(config: &Config) -> Result<Multisig> {
    guardian_daemon::pauser::connect(config, reader(config)?, None).await
}

/// A provider on the first configured endpoint that speaks HTTP (or the first one).
fn reader(config: &Config) -> Result<DynProvider> {
    let endpoint = config
        .rpc
        .iter()
        .find(|e| e.url.expose().starts_with("http"))
        .or_else(|| config.rpc.first())
        .ok_or_else(|| eyre!("{}: no [[rpc]] endpoint", config.source.display()))?;
    let url: Url = endpoint
        .url
        .expose()
        .parse()
        .map_err(|_| eyre!("RPC endpoint {} is not a valid URL", endpoint.display))?;
    Ok(alloy::providers::ProviderBuilder::new().connect_http(url).erased())
}

fn wallet(config: &Config, key: PrivateKeySigner) -> Result<DynProvider> {
    let endpoint = config
        .rpc
        .iter()
        .find(|e| e.url.expose().starts_with("http"))
        .ok_or_else(|| eyre!("sending needs an http(s) [[rpc]] endpoint"))?;
    let url: Url = endpoint.url.expose().parse().map_err(|_| eyre!("bad RPC URL"))?;
    Ok(wallet_provider(url, key))
}

use alloy::providers::Provider as _;

// ----------------------------------------------------------------------------------------------
// proposals

#[derive(Debug, Args)]
pub(crate) struct ProposalsArgs {
    #[command(subcommand)]
    command: ProposalsCommand,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(Debug, Subcommand)]
enum ProposalsCommand {
    /// Every proposal, newest first.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// One proposal: the Safe transaction, approvals and the full audit trail.
    Show {
        /// The safeTxHash.
        hash: B256,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn proposals(args: ProposalsArgs) -> Result<()> {
    let config = args.config.load()?;
    let store = ProposalStore::open(&config.storage.path)?;
    match args.command {
        ProposalsCommand::List { json } => {
            let list = store.list(None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            if list.is_empty() {
                println!("no proposals");
            }
            for p in list {
                println!(
                    "{}  {:<8} {:<7} {:<16} nonce {:<4} {}",
                    p.safe_tx_hash,
                    p.status.as_str(),
                    p.kind.as_str(),
                    p.contract,
                    p.nonce,
                    p.reason
                );
            }
        }
        ProposalsCommand::Show { hash, json } => {
            let detail = guardian_multisig::service::detail(&store, hash)?
                .ok_or_else(|| eyre!("no proposal with safeTxHash {hash}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&detail)?);
            } else {
                print_detail(&detail);
            }
        }
    }
    Ok(())
}

fn print_detail(d: &ProposalDetail) {
    let p = &d.proposal;
    println!("safeTxHash  {}", p.safe_tx_hash);
    println!("status      {}", p.status.as_str());
    println!("action      {}() on {} ({})", p.kind.as_str(), p.contract, p.target);
    println!("safe        {} on chain {}, nonce {}", p.safe, p.chain_id, p.nonce);
    println!("calldata    {}", p.calldata);
    println!("reason      {}", p.reason);
    if let Some(id) = p.finding_id {
        println!(
            "finding     #{id}{}",
            if p.then_rollback { " (rollback after pause)" } else { "" }
        );
    }
    println!("simulation  {}", p.simulation);
    if let Some(h) = p.replaces {
        println!("replaces    {h}");
    }
    if let Some(h) = p.replaced_by {
        println!("replaced by {h}");
    }
    if let Some(tx) = p.executed_tx {
        println!("executed    tx {tx} by {}", p.executed_by.as_deref().unwrap_or("?"));
    }
    println!("signatures  {}", d.signatures.len());
    for s in &d.signatures {
        println!("  {} at {}", s.owner, s.received_at);
    }
    println!("audit");
    for e in &d.events {
        println!(
            "  {}  {:<18} {:<44} {}",
            e.at,
            e.event,
            e.actor.as_deref().unwrap_or("-"),
            e.detail
        );
    }
}

// ----------------------------------------------------------------------------------------------
// keys

/// How the owner's key is loaded. Keys are never printed or logged.
#[derive(Debug, Args)]
pub(crate) struct KeyArgs {
    /// A Foundry-compatible encrypted keystore (`cast wallet import`, `cast wallet new`).
    #[arg(long, conflicts_with = "private_key_env")]
    keystore: Option<PathBuf>,
    /// A file whose first line is the keystore password (else $GUARDIAN_KEYSTORE_PASSWORD,
    /// else a prompt).
    #[arg(long, requires = "keystore")]
    password_file: Option<PathBuf>,
    /// The name of an environment variable holding the private key (hex).
    #[arg(long)]
    private_key_env: Option<String>,
}

impl KeyArgs {
    fn load(&self) -> Result<PrivateKeySigner> {
        match (&self.keystore, &self.private_key_env) {
            (Some(path), None) => {
                let password = match &self.password_file {
                    Some(file) => std::fs::read_to_string(file)
                        .wrap_err_with(|| format!("reading {}", file.display()))?
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                    None => match std::env::var("GUARDIAN_KEYSTORE_PASSWORD") {
                        Ok(p) => p,
                        Err(_) => rpassword::prompt_password(format!(
                            "password for {}: ",
                            path.display()
                        ))?,
                    },
                };
                PrivateKeySigner::decrypt_keystore(path, password)
                    .map_err(|e| eyre!("cannot decrypt keystore {}: {e}", path.display()))
            }
            (None, Some(var)) => {
                let value = std::env::var(var).map_err(|_| eyre!("${var} is not set"))?;
                PrivateKeySigner::from_str(value.trim())
                    .map_err(|_| eyre!("${var} does not hold a 32-byte hex private key"))
            }
            _ => bail!("give the owner's key with --keystore FILE or --private-key-env VAR"),
        }
    }
}

// ----------------------------------------------------------------------------------------------
// approve

#[derive(Debug, Args)]
pub(crate) struct ApproveArgs {
    /// The safeTxHash to approve (see `guardian proposals list`).
    hash: B256,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    /// Approve on chain with the Safe's approveHash (costs gas) instead of an off-chain
    /// signature.
    #[arg(long)]
    onchain: bool,
    #[command(flatten)]
    key: KeyArgs,
    #[command(flatten)]
    config: ConfigArg,
}

pub(crate) async fn approve(args: ApproveArgs) -> Result<()> {
    let config = args.config.load()?;
    let multisig = connect(&config).await?;
    // Recomputes the hash from the proposal's fields, bound to this chain and Safe.
    let detail = multisig.detail_to_approve(args.hash)?;
    let p = &detail.proposal;
    print_detail(&detail);
    let key = args.key.load()?;
    let how =
        if args.onchain { "approveHash on chain (a transaction)" } else { "EIP-712 signature" };
    println!();
    println!(
        "You are about to approve, as {}, with an {how}:\n  {}() on {} ({}) through Safe {} on chain {}, Safe nonce {}\n  safeTxHash {}",
        key.address(),
        p.kind.as_str(),
        p.contract,
        p.target,
        p.safe,
        p.chain_id,
        p.nonce,
        p.safe_tx_hash
    );
    if !args.yes && !confirm()? {
        bail!("not approved");
    }
    if args.onchain {
        let (receipt, approvals) =
            multisig.approve_onchain(args.hash, &wallet(&config, key.clone())?).await?;
        println!("approveHash mined in tx {}", receipt.transaction_hash);
        println!("approvals: {approvals} of {}", multisig.safe().threshold().await?);
        return Ok(());
    }
    let submitted = multisig.approve_with_signature(args.hash, &key).await?;
    println!(
        "signature {}; approvals: {} of {}",
        if submitted.added { "recorded" } else { "was already recorded" },
        submitted.approvals,
        submitted.threshold
    );
    Ok(())
}

fn confirm() -> Result<bool> {
    print!("Type 'yes' to approve: ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

// ----------------------------------------------------------------------------------------------
// pause / unpause

#[derive(Debug, Args)]
pub(crate) struct PauseArgs {
    /// The contract's configured name (or address).
    contract: String,
    /// Why: recorded with the proposal and shown to every approver.
    #[arg(long)]
    reason: String,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    config: ConfigArg,
}

pub(crate) async fn propose(args: PauseArgs, kind: ProposalKind) -> Result<()> {
    ensure!(!args.reason.trim().is_empty(), "--reason must say why");
    let config = args.config.load()?;
    let multisig = connect(&config).await?;
    let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    let proposed = multisig
        .propose(&ProposeRequest {
            contract: args.contract,
            kind,
            reason: args.reason,
            finding_id: None,
            then_rollback: false,
            actor: format!("{user} (CLI)"),
        })
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&proposed)?);
        return Ok(());
    }
    let p = proposed.proposal();
    match &proposed {
        Proposed::New { .. } => println!("proposed {}() on {}", kind.as_str(), p.contract),
        Proposed::Existing { .. } => {
            println!("already proposed {}() on {}", kind.as_str(), p.contract)
        }
        Proposed::Skipped { .. } => {
            println!(
                "nothing to do: {} is already in that state (recorded as skipped)",
                p.contract
            );
            return Ok(());
        }
    }
    println!("safeTxHash {}", p.safe_tx_hash);
    println!("owners approve with: guardian approve {}", p.safe_tx_hash);
    Ok(())
}

// ----------------------------------------------------------------------------------------------
// safe

#[derive(Debug, Args)]
pub(crate) struct SafeArgs {
    #[command(subcommand)]
    command: SafeCommand,
}

#[derive(Debug, Subcommand)]
enum SafeCommand {
    /// Deploy Safe 1.4.1 (singleton, proxy factory, fallback handler) and create a Safe.
    Deploy {
        /// Owner addresses, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        owners: Vec<Address>,
        /// Approvals required.
        #[arg(long)]
        threshold: u64,
        /// JSON-RPC endpoint.
        #[arg(long, env = "GUARDIAN_RPC_URL")]
        rpc_url: Url,
        /// Salt for the proxy address.
        #[arg(long, default_value_t = 0)]
        salt_nonce: u64,
        /// Chain id the node must report (refuses anything else).
        #[arg(long, default_value_t = 138)]
        chain_id: u64,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// The configured Safe: version, chain, owners, threshold, nonce.
    Info {
        #[command(flatten)]
        config: ConfigArg,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn safe(args: SafeArgs) -> Result<()> {
    match args.command {
        SafeCommand::Deploy { owners, threshold, rpc_url, salt_nonce, chain_id, key } => {
            let key = key.load()?;
            let provider = wallet_provider(rpc_url, key.clone());
            let node_chain = provider.get_chain_id().await.wrap_err("eth_chainId")?;
            ensure!(node_chain == chain_id, "the node serves chain {node_chain}, not {chain_id}");
            let toolchain = Toolchain::discover()?;
            let contracts = Contracts::compile(&toolchain)?;
            println!("deploying Safe 1.4.1 from {} on chain {chain_id}", key.address());
            let singletons = SafeSingletons::deploy(&provider, &contracts).await?;
            let address = singletons
                .create_safe(&provider, &owners, threshold, U256::from(salt_nonce))
                .await?;
            let safe = SafeClient::connect(provider, address).await?;
            println!("singleton        {}", singletons.singleton);
            println!("proxy factory    {}", singletons.proxy_factory);
            println!("fallback handler {}", singletons.fallback_handler);
            println!("safe             {address}");
            println!("owners           {:?}", safe.owners().await?);
            println!("threshold        {}", safe.threshold().await?);
            println!("put it in guardian.toml:\n\n[safe]\naddress = \"{address}\"");
        }
        SafeCommand::Info { config, json } => {
            let config = config.load()?;
            let multisig = connect(&config).await?;
            let safe = multisig.safe();
            let info = serde_json::json!({
                "safe": safe.address(),
                "version": guardian_chain::safe::SAFE_VERSION,
                "chain_id": safe.chain_id(),
                "owners": safe.owners().await?,
                "threshold": safe.threshold().await?,
                "nonce": safe.nonce().await?,
            });
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!(
                    "safe       {} (Safe {})",
                    safe.address(),
                    guardian_chain::safe::SAFE_VERSION
                );
                println!("chain id   {}", safe.chain_id());
                println!("threshold  {} of {}", info["threshold"], safe.owners().await?.len());
                for owner in safe.owners().await? {
                    println!("owner      {owner}");
                }
                println!("nonce      {}", info["nonce"]);
            }
        }
    }
    Ok(())
}
