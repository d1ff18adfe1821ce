//! `guardian proposals`, `approve`, `pause`, `unpause` and `safe`: the operators' side of the
//! Safe flow. Logic lives in `guardian-multisig`; this file parses, asks, and prints.

#![allow(clippy::print_stdout, reason = "commands report to the operator's terminal")]

use std::{path::PathBuf, str::FromStr};

use alloy::{
    primitives::{Address, B256, U256},
    providers::DynProvider,
    signers::local::PrivateKeySigner,
    transports::http::reqwest::{self, Url},
};
use clap::{Args, Subcommand};
use eyre::{Result, WrapErr, bail, ensure, eyre};
use guardian_chain::{
    Toolchain,
    devnet::wallet_provider,
    safe::{SafeClient, SafeSingletons, owner_signature},
};
use guardian_config::Config;
use guardian_core::proposal::{ProposalKind, SignedDomain};
use guardian_multisig::{Multisig, Proposal, Proposed, Submitted};
use guardian_operator::{Desk, ProposalDetailView, ProposalView};

/// Where the config is.
#[derive(Debug, Args)]
pub(crate) struct ConfigArg {
    /// guardian's config file (guardian.toml; config/guardian.toml is the commented template).
    #[arg(long, global = true, env = "GUARDIAN_CONFIG", default_value = "config/guardian.toml")]
    config: PathBuf,
}

impl ConfigArg {
    /// For commands that talk to the chain: the RPC secrets must be set, the webhook's need
    /// not be (only the daemon notifies).
    pub(crate) fn load(&self) -> Result<Config> {
        Config::load_needing(&self.config, guardian_config::Secrets::Rpc)
    }

    /// For commands that read the local database only and send nothing: secrets they never
    /// use need not be set (see [`Config::load_without_secrets`]).
    pub(crate) fn load_offline(&self) -> Result<Config> {
        Config::load_without_secrets(&self.config)
    }
}

pub(crate) async fn connect(config: &Config) -> Result<Multisig> {
    guardian_operator::connect(config, reader(config)?, None).await
}

/// How often the CLI polls for a transaction it sent.
const POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// A provider over every configured `[[rpc]]` endpoint (bearer tokens included), failing over
/// like the daemon and refusing an endpoint that serves another chain.
pub(crate) fn reader(config: &Config) -> Result<DynProvider> {
    Ok(guardian_operator::rpc_pool(config)?.failover_provider(POLL))
}

/// [`reader`], signing with `key`.
pub(crate) fn wallet(config: &Config, key: PrivateKeySigner) -> Result<DynProvider> {
    let client = guardian_operator::rpc_pool(config)?.failover_client(POLL);
    Ok(alloy::providers::ProviderBuilder::new()
        .wallet(alloy::network::EthereumWallet::from(key))
        .connect_client(client)
        .erased())
}

use alloy::providers::Provider as _;

// ----------------------------------------------------------------------------------------------
// proposals

#[derive(Debug, Args)]
pub(crate) struct ProposalsArgs {
    #[command(subcommand)]
    command: ProposalsCommand,
    /// Read the proposals from the daemon's HTTP API (e.g. http://127.0.0.1:8787) instead of
    /// the local database; no config file is needed then.
    #[arg(long, global = true, env = "GUARDIAN_API")]
    api: Option<Url>,
    #[command(flatten)]
    token: ApiTokenArg,
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

/// Where `proposals` and `approve --api` read proposals from.
enum Source {
    /// The daemon's HTTP API.
    Api(ApiClient),
    /// The local database (on the validator host).
    Local(Box<Desk>),
}

impl Source {
    fn open(api: Option<Url>, token: &ApiTokenArg, config: &ConfigArg) -> Result<Self> {
        match api {
            Some(url) => Ok(Self::Api(ApiClient::new(url, token)?)),
            None => Ok(Self::Local(Box::new(Desk::local(&config.load_offline()?)?))),
        }
    }

    async fn list(&self) -> Result<Vec<ProposalView>> {
        match self {
            Self::Api(api) => api.list().await,
            Self::Local(desk) => desk.proposals(),
        }
    }

    async fn detail(&self, hash: B256) -> Result<ProposalDetailView> {
        match self {
            Self::Api(api) => api.detail(hash).await,
            Self::Local(desk) => desk.proposal(hash),
        }
    }
}

pub(crate) async fn proposals(args: ProposalsArgs) -> Result<()> {
    let source = Source::open(args.api, &args.token, &args.config)?;
    match args.command {
        ProposalsCommand::List { json } => {
            let mut list = source.list().await?;
            // On the host: how each stands on the other replicas too.
            if let Source::Local(_) = &source {
                let config = args.config.load_offline()?;
                let replication = &config.replication;
                if !replication.peers.is_empty() {
                    let survey = guardian_operator::peers::survey(
                        &replication.peers,
                        std::time::Duration::from_secs(5),
                    )
                    .await;
                    guardian_operator::peers::spread(&mut list, &replication.name, &survey);
                }
            }
            if json {
                outln!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            if list.is_empty() {
                outln!("no proposals");
            }
            for view in list {
                let p = &view.proposal;
                let approvals = match (view.approvals, view.threshold) {
                    (Some(a), Some(t)) => format!("{a}/{t}"),
                    _ => "-".to_owned(),
                };
                outln!(
                    "{}  {:<9} {:<7} {:<16} nonce {:<4} approvals {:<5} {}",
                    p.safe_tx_hash,
                    p.status.as_str(),
                    p.kind.as_str(),
                    p.contract,
                    p.nonce,
                    approvals,
                    p.withdrawn_reason.as_deref().unwrap_or(&p.reason)
                );
                if view.replicas.len() > 1 {
                    outln!(
                        "      on the other replicas: {}",
                        guardian_operator::peers::spread_line(&view.replicas[1..])
                    );
                }
            }
        }
        ProposalsCommand::Show { hash, json } => {
            let detail = source.detail(hash).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&detail)?);
            } else {
                print_detail(&detail);
            }
        }
    }
    Ok(())
}

// ----------------------------------------------------------------------------------------------
// the daemon's HTTP API

/// The token the daemon's HTTP API wants for writes (`[api] token_env` on its side).
#[derive(Debug, Clone, Args)]
pub(crate) struct ApiTokenArg {
    /// With --api: the environment variable holding the API token, sent as `Authorization:
    /// Bearer …` (default: $GUARDIAN_API_TOKEN when set). Needed when the daemon's [api]
    /// token_env is set, for approve; reads need none.
    #[arg(long, global = true, value_name = "VAR")]
    api_token_env: Option<String>,
}

impl ApiTokenArg {
    /// The token, when one is given: the variable --api-token-env names (which must be set), or
    /// $GUARDIAN_API_TOKEN.
    fn token(&self) -> Result<Option<String>> {
        let value = match &self.api_token_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                eyre!("${var} (named by --api-token-env) is not set: it must hold the API token")
            })?),
            None => std::env::var("GUARDIAN_API_TOKEN").ok(),
        };
        let value = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        if let Some(token) = &value {
            guardian_config::remember_secret(token);
        }
        Ok(value)
    }
}

/// A client of the daemon's HTTP API (`guardian_operator::api`). What it returns is only ever
/// displayed or checked: `approve` recomputes the hash it signs from the proposal's fields.
pub(crate) struct ApiClient {
    base: String,
    http: reqwest::Client,
}

/// The daemon's answer when it refuses a request.
#[derive(Debug, serde::Deserialize)]
struct ApiError {
    error: String,
}

impl ApiClient {
    pub(crate) fn new(base: Url, token: &ApiTokenArg) -> Result<Self> {
        ensure!(
            matches!(base.scheme(), "http" | "https"),
            "--api {base}: expected an http:// or https:// URL"
        );
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token.token()? {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| eyre!("the API token is not a valid HTTP header value"))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .default_headers(headers)
            .build()
            .wrap_err("building the HTTP client")?;
        Ok(Self { base: base.as_str().trim_end_matches('/').to_owned(), http })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The body as `T` on 2xx; otherwise the daemon's `{error}` message with the HTTP status.
    async fn answer<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        response: reqwest::Response,
    ) -> Result<T> {
        let status = response.status();
        let body =
            response.bytes().await.wrap_err_with(|| format!("{what}: reading the answer"))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ApiError>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_owned());
            // 409 (no longer pending), 422 (signature refused), 403 (not allowed): the daemon's
            // checks said no.
            if matches!(status.as_u16(), 403 | 409 | 422) {
                return Err(refused!("{what}: the daemon answered HTTP {status}: {message}"));
            }
            bail!("{what}: the daemon answered HTTP {status}: {message}");
        }
        serde_json::from_slice(&body)
            .wrap_err_with(|| format!("{what}: the daemon's answer is not what guardian expects"))
    }

    pub(crate) async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let url = self.url(path);
        let what = format!("GET {url}");
        let response =
            self.http.get(&url).send().await.wrap_err_with(|| format!("{what}: no answer"))?;
        self.answer(&what, response).await
    }

    async fn list(&self) -> Result<Vec<ProposalView>> {
        self.get("/proposals").await
    }

    async fn detail(&self, hash: B256) -> Result<ProposalDetailView> {
        self.get(&format!("/proposals/{hash}")).await
    }

    async fn post_signature(
        &self,
        hash: B256,
        signer: Address,
        signature: &[u8],
        domain: SignedDomain,
    ) -> Result<Submitted> {
        let url = self.url(&format!("/proposals/{hash}/signatures"));
        let what = format!("POST {url}");
        // The domain signed goes along: a daemon on another chain names the mismatch.
        let body = serde_json::json!({
            "signer": signer,
            "signature": alloy::hex::encode_prefixed(signature),
            "domain": domain,
        });
        let response = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .wrap_err_with(|| format!("{what}: no answer"))?;
        self.answer(&what, response).await
    }
}

fn print_detail(view: &ProposalDetailView) {
    let d = &view.detail;
    let p = &d.proposal;
    outln!("safeTxHash  {}", p.safe_tx_hash);
    outln!("status      {}", p.status.as_str());
    outln!("action      {}() on {} ({})", p.kind.as_str(), p.contract, p.target);
    outln!("safe        {} on chain {}, nonce {}", p.safe, p.chain_id, p.nonce);
    outln!("calldata    {}", p.calldata);
    outln!("reason      {}", p.reason);
    match &view.incident {
        Some(incident) => {
            let findings: Vec<String> = incident
                .findings
                .iter()
                .map(|(id, rule, severity)| format!("rule {rule} ({severity}, finding #{id})"))
                .collect();
            outln!(
                "incident    #{} {}, {}{}{}",
                incident.id,
                incident.state,
                incident.severity,
                if findings.is_empty() {
                    ": an operator's pause, no finding".to_owned()
                } else {
                    format!(": {}", findings.join(", "))
                },
                if p.then_rollback { " (configs roll back after the pause)" } else { "" }
            );
        }
        None => {
            if let Some(id) = p.incident_id {
                outln!("incident    #{id}");
            }
        }
    }
    if let Some(reason) = &p.withdrawn_reason {
        outln!("WITHDRAWN   {reason}");
    }
    // The simulation runs when the proposal is made: it is stored only if it succeeded.
    outln!(
        "simulation  {} (when proposed, {} UTC, at block {})",
        p.simulation,
        p.created_at,
        p.created_block
    );
    if let Some(h) = p.replaces {
        outln!("replaces    {h}");
    }
    if let Some(h) = p.replaced_by {
        outln!("replaced by {h}");
    }
    if let Some(tx) = p.executed_tx {
        outln!("executed    tx {tx} by {}", p.executed_by.as_deref().unwrap_or("?"));
    }
    match (view.approvals, view.threshold) {
        (Some(approvals), Some(threshold)) => outln!(
            "approvals   {approvals} of {threshold} (off-chain signatures and on-chain approveHash)"
        ),
        _ => outln!("approvals   not counted yet"),
    }
    outln!("signatures  {}", d.signatures.len());
    for s in &d.signatures {
        outln!("  {} at {}", s.owner, s.received_at);
    }
    outln!("audit");
    for e in &d.events {
        let times = if e.count > 1 {
            format!(" (x{}, last {})", e.count, e.last_at.as_deref().unwrap_or("?"))
        } else {
            String::new()
        };
        outln!(
            "  {}  {:<18} {:<44} {}{times}",
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
    /// else a prompt, after the proposal is shown).
    #[arg(long, requires = "keystore")]
    password_file: Option<PathBuf>,
    /// The name of an environment variable holding the private key (hex).
    #[arg(long)]
    private_key_env: Option<String>,
}

impl KeyArgs {
    /// The key's address without asking for anything: a keystore names it in its `address`
    /// field (`cast wallet new` and geth write it), an environment key is read. `None` when a
    /// keystore does not say.
    fn address(&self) -> Result<Option<Address>> {
        match (&self.keystore, &self.private_key_env) {
            (Some(path), None) => {
                let text = std::fs::read_to_string(path)
                    .wrap_err_with(|| format!("reading keystore {}", path.display()))?;
                let json: serde_json::Value = serde_json::from_str(&text)
                    .wrap_err_with(|| format!("keystore {} is not JSON", path.display()))?;
                Ok(json["address"].as_str().and_then(|a| {
                    let a = a.trim_start_matches("0x");
                    format!("0x{a}").parse::<Address>().ok()
                }))
            }
            (None, Some(_)) => Ok(Some(self.load()?.address())),
            _ => bail!("give the owner's key with --keystore FILE or --private-key-env VAR"),
        }
    }

    pub(crate) fn load(&self) -> Result<PrivateKeySigner> {
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
    /// Print the outcome as JSON (needs --yes: nothing is asked, nothing else is printed).
    #[arg(long, requires = "yes")]
    json: bool,
    /// Fetch the proposal from the daemon's HTTP API (e.g. http://127.0.0.1:8787) and post the
    /// signature there, for owners who are not on the validator host. The hash is still
    /// recomputed here for the chain id and Safe of your own config (or --chain-id and --safe),
    /// never for what the daemon says.
    #[arg(long, env = "GUARDIAN_API")]
    api: Option<Url>,
    /// With --api: sign for this chain id instead of the config's `[chain] id`.
    #[arg(long, requires = "api")]
    chain_id: Option<u64>,
    /// With --api: sign for this Safe instead of the config's `[safe] address`.
    #[arg(long, requires = "api")]
    safe: Option<Address>,
    #[command(flatten)]
    token: ApiTokenArg,
    #[command(flatten)]
    key: KeyArgs,
    #[command(flatten)]
    config: ConfigArg,
}

/// What `approve --json` prints.
#[derive(Debug, serde::Serialize)]
struct Approved {
    safe_tx_hash: B256,
    signer: Address,
    /// `signature` or `approve_hash`.
    how: &'static str,
    /// False when the same signature was already recorded.
    added: bool,
    /// The approveHash transaction (on chain).
    tx: Option<B256>,
    /// Approvals counted afterwards, when known.
    approvals: Option<u64>,
    threshold: Option<u64>,
    /// Why they could not be counted after an approveHash that was mined.
    #[serde(skip_serializing_if = "Option::is_none")]
    count_error: Option<String>,
}

/// `approve`: every refusal comes before a question (the confirmation, or a keystore's
/// password): a proposal that is not pending or does not hash to itself, a key that does not
/// own the Safe. The password is asked after the proposal was shown.
pub(crate) async fn approve(args: ApproveArgs) -> Result<()> {
    if let Some(api) = args.api.clone() {
        return approve_via_api(args, api).await;
    }
    let config = args.config.load()?;
    let multisig = std::sync::Arc::new(connect(&config).await?);
    // Recomputes the hash from the proposal's fields, bound to this chain and Safe: never sign a
    // hash taken on trust from the database. Refuses what no longer collects approvals.
    let detail = multisig.detail_to_approve(args.hash)?;
    let view = Desk::over(multisig.clone()).detail_view(detail)?;
    let view = ProposalDetailView {
        approvals: Some(multisig.approvals(&view.detail.proposal).await?.len() as u64),
        threshold: Some(multisig.safe().threshold().await?),
        owners: Some(multisig.safe().owners().await?),
        ..view
    };
    let key = key_after_showing(&args, &view)?;
    if !confirm(&view, &key, &args)? {
        return Err(refused!("not approved: nothing signed or sent"));
    }
    if args.onchain {
        let (receipt, counted) = multisig
            .approve_onchain(args.hash, &wallet(&config, key.clone())?, key.address())
            .await?;
        // The approval is mined: a count that failed is reported beside it (exit 0), so
        // nobody sends it again believing it failed.
        let (counted, count_error) = match counted {
            Ok((approvals, threshold)) => (Some((approvals as u64, threshold)), None),
            Err(error) => (None, Some(format!("{error:#}"))),
        };
        return report(
            args.json,
            &Approved {
                safe_tx_hash: args.hash,
                signer: key.address(),
                how: "approve_hash",
                added: true,
                tx: Some(receipt.transaction_hash),
                approvals: counted.map(|(a, _)| a),
                threshold: counted.map(|(_, t)| t),
                count_error,
            },
        );
    }
    let submitted = multisig.approve_with_signature(args.hash, &key).await?;
    report(args.json, &signed(args.hash, key.address(), &submitted))
}

/// Show the proposal, refuse a key that is not an owner (before its password is asked when
/// the keystore names its address), then load the key.
fn key_after_showing(args: &ApproveArgs, view: &ProposalDetailView) -> Result<PrivateKeySigner> {
    let named = args.key.address()?;
    if let Some(address) = named {
        refuse_unless_owner(address, view)?;
    }
    if !args.json {
        print_detail(view);
    }
    let key = args.key.load()?;
    if let Some(address) = named {
        ensure!(
            key.address() == address,
            "keystore {} says it holds {address} but decrypts to {}",
            args.key.keystore.as_deref().unwrap_or(std::path::Path::new("?")).display(),
            key.address()
        );
    }
    refuse_unless_owner(key.address(), view)?;
    Ok(key)
}

/// Refuse `signer` unless it owns the Safe (when the owners are known).
fn refuse_unless_owner(signer: Address, view: &ProposalDetailView) -> Result<()> {
    match &view.owners {
        Some(owners) if !owners.contains(&signer) => Err(refused!(
            "{signer} is not an owner of Safe {} (owners: {}): its approval would not count; \
             refusing to sign",
            view.detail.proposal.safe,
            owners.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        )),
        _ => Ok(()),
    }
}

/// What an off-chain approval did.
fn signed(hash: B256, signer: Address, submitted: &Submitted) -> Approved {
    Approved {
        safe_tx_hash: hash,
        signer,
        how: "signature",
        added: submitted.added,
        tx: None,
        approvals: Some(submitted.approvals as u64),
        threshold: Some(submitted.threshold),
        count_error: None,
    }
}

fn report(json: bool, approved: &Approved) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(approved)?);
        return Ok(());
    }
    let counted = match (approved.approvals, approved.threshold) {
        (Some(a), Some(t)) => format!("approvals: {a} of {t}"),
        _ => format!(
            "{}the daemon counts it at its next check (guardian proposals show {} --api …)",
            match &approved.count_error {
                Some(error) => format!("the approvals could not be counted ({error}); "),
                None => String::new(),
            },
            approved.safe_tx_hash
        ),
    };
    match approved.tx {
        Some(tx) => {
            outln!("approveHash mined in tx {tx}");
            outln!("{counted}");
        }
        None => outln!(
            "signature {}; {counted}",
            if approved.added { "recorded" } else { "was already recorded" }
        ),
    }
    Ok(())
}

/// `approve --api`: the proposal comes from the daemon, which is trusted for nothing. The chain
/// id and Safe come from the operator's own config (or `--chain-id`/`--safe`), the hash is
/// recomputed from the proposal's `to`, calldata and nonce, and with a config the contract name
/// and action shown must match the configured contract's address and pause/unpause calldata.
/// The owners the daemon lists only serve to refuse early: the daemon verifies the signature
/// against the chain's owners before it stores it.
async fn approve_via_api(args: ApproveArgs, api: Url) -> Result<()> {
    // The operator's config, when the file exists; flags override its chain id and Safe.
    let config = if args.config.config.exists() { Some(args.config.load()?) } else { None };
    let chain_id = args
        .chain_id
        .or(config.as_ref().map(|c| c.chain.id))
        .ok_or_else(|| eyre!("give --chain-id (or a config file with [chain] id): the chain id to sign for is never taken from the daemon"))?;
    let safe = args
        .safe
        .or(config.as_ref().and_then(|c| c.safe.as_ref()).map(|s| s.address))
        .ok_or_else(|| eyre!("give --safe (or a config file with [safe] address): the Safe to sign for is never taken from the daemon"))?;

    let client = ApiClient::new(api, &args.token)?;
    let view = client.detail(args.hash).await?;
    let p = &view.detail.proposal;
    check_hash(p, args.hash, chain_id, safe)?;
    if p.status != guardian_multisig::ProposalStatus::Pending {
        return Err(refused!(
            "refusing to approve: proposal {} is {}{}",
            args.hash,
            p.status.as_str(),
            p.withdrawn_reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
        ));
    }
    match &config {
        Some(config) => check_labels(config, p)?,
        None if !args.json => outln!(
            "note: no config file, so the contract name and action below are the daemon's labels: check the target address and calldata yourself"
        ),
        None => {}
    }
    let key = key_after_showing(&args, &view)?;
    if !confirm(&view, &key, &args)? {
        return Err(refused!("not approved: nothing signed or sent"));
    }
    if args.onchain {
        let config = config.ok_or_else(|| {
            eyre!("--onchain sends a transaction: it needs the [[rpc]] endpoint of a config file")
        })?;
        let provider = wallet(&config, key.clone())?;
        let onchain = SafeClient::connect(provider.clone(), safe).await?;
        if onchain.chain_id() != chain_id || onchain.tx_hash(&p.safe_tx()) != args.hash {
            return Err(refused!(
                "the RPC serves chain {}, not {chain_id}: refusing to send approveHash",
                onchain.chain_id()
            ));
        }
        let receipt = onchain.approve_hash_onchain(&provider, key.address(), args.hash).await?;
        return report(
            args.json,
            &Approved {
                safe_tx_hash: args.hash,
                signer: key.address(),
                how: "approve_hash",
                added: true,
                tx: Some(receipt.transaction_hash),
                approvals: None,
                threshold: None,
                count_error: None,
            },
        );
    }
    let signature = owner_signature(&key, args.hash)?;
    let domain = SignedDomain { chain_id, safe };
    let submitted = client.post_signature(args.hash, key.address(), &signature, domain).await?;
    report(args.json, &signed(args.hash, key.address(), &submitted))
}

/// Refuse unless `p` hashes to `hash` for `chain_id` and `safe`, and says so itself.
fn check_hash(p: &Proposal, hash: B256, chain_id: u64, safe: Address) -> Result<()> {
    let recomputed = p.safe_tx().safe_tx_hash(chain_id, safe);
    if !(recomputed == hash && p.safe_tx_hash == hash && p.chain_id == chain_id && p.safe == safe) {
        return Err(refused!(
            "proposal {hash} does not hash to itself for chain {chain_id} and Safe {safe} (got {recomputed}): refusing to sign"
        ));
    }
    Ok(())
}

/// Refuse unless the proposal's contract name and action (labels the hash does not cover) match
/// the operator's config: the name belongs to the target address and the calldata is that
/// contract's configured pause or unpause call.
fn check_labels(config: &Config, p: &Proposal) -> Result<()> {
    if matches!(p.kind, ProposalKind::EnableModule | ProposalKind::DisableModule) {
        return check_module_labels(config, p);
    }
    let targets = guardian_operator::targets(config)?;
    let target = targets.iter().find(|t| t.address == p.target).ok_or_else(|| {
        refused!(
            "proposal {} calls {}, which {} does not declare under [[contracts]]: refusing to sign",
            p.safe_tx_hash,
            p.target,
            config.source.display()
        )
    })?;
    let expected = match p.kind {
        ProposalKind::Pause => &target.pause,
        _ => &target.unpause,
    };
    if !(target.name == p.contract && &p.calldata == expected) {
        return Err(refused!(
            "proposal {} is labelled {}() on {:?} but calls {} with {}; your config has {:?} there with {}() = {expected}: refusing to sign",
            p.safe_tx_hash,
            p.kind.as_str(),
            p.contract,
            p.target,
            p.calldata,
            target.name,
            p.kind.as_str()
        ));
    }
    Ok(())
}

/// A module proposal must administer the operator's own Safe and name the module of their
/// `[safe.module]`: enabling a module is handing out a power over the Safe.
fn check_module_labels(config: &Config, p: &Proposal) -> Result<()> {
    let safe = config.safe.as_ref().map(|s| s.address);
    let module = config.safe.as_ref().and_then(|s| s.module.as_ref()).map(|m| m.address);
    let Some(module) = module else {
        bail!(
            "proposal {} {}s a Safe module, but {} has no [safe.module]: refusing to sign",
            p.safe_tx_hash,
            p.kind.as_str().replace("_module", ""),
            config.source.display()
        );
    };
    let names = match p.kind {
        ProposalKind::EnableModule => {
            p.calldata == guardian_chain::pause_module::enable_calldata(module)
        }
        _ => guardian_chain::pause_module::disabled_module(&p.calldata) == Some(module),
    };
    ensure!(
        Some(p.target) == safe && names,
        "proposal {} calls {} with {}, which is not {}({module}) on your Safe: refusing to sign",
        p.safe_tx_hash,
        p.target,
        p.calldata,
        p.kind.as_str()
    );
    Ok(())
}

/// Say what the owner is about to do and ask (unless `--yes`); true when they confirm.
fn confirm(view: &ProposalDetailView, key: &PrivateKeySigner, args: &ApproveArgs) -> Result<bool> {
    if args.json {
        return Ok(true); // --json requires --yes
    }
    let p = &view.detail.proposal;
    let how =
        if args.onchain { "approveHash on chain (a transaction)" } else { "EIP-712 signature" };
    let count = match (view.approvals, view.threshold) {
        (Some(a), Some(t)) => format!("\n  approvals so far: {a} of {t}; yours makes {}", a + 1),
        _ => String::new(),
    };
    outln!();
    outln!(
        "You are about to approve, as {}, with an {how}:\n  {}() on {} ({}) through Safe {} on chain {}, Safe nonce {}\n  safeTxHash {}{count}",
        key.address(),
        p.kind.as_str(),
        p.contract,
        p.target,
        p.safe,
        p.chain_id,
        p.nonce,
        p.safe_tx_hash
    );
    Ok(args.yes || crate::prompt::confirm("Approve?")?)
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
    let desk = Desk::over(std::sync::Arc::new(connect(&config).await?));
    let actor = crate::incidents_cmd::actor();
    let proposal = match kind {
        ProposalKind::Pause => {
            let outcome = desk.pause(&args.contract, &actor, &args.reason).await?;
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&outcome)?);
                return Ok(());
            }
            outln!(
                "incident #{}{}",
                outcome.incident,
                if outcome.opened {
                    " opened"
                } else {
                    " (already open): the pause request joins it"
                }
            );
            if let Some(note) = &outcome.note {
                outln!("{note}");
            }
            outcome.proposal.map(|v| v.proposal)
        }
        ProposalKind::Unpause => {
            let proposed = desk.unpause(&args.contract, &actor, &args.reason).await?;
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&proposed)?);
                return Ok(());
            }
            match &proposed {
                Proposed::New { .. } => outln!("proposed unpause() on {}", args.contract),
                Proposed::Existing { .. } => {
                    outln!("already proposed unpause() on {}", args.contract)
                }
                Proposed::AlreadyInState { contract, state } => {
                    outln!("nothing to do: {contract} is {state}");
                }
            }
            proposed.proposal().cloned()
        }
        other => bail!("{} is proposed with `guardian module`", other.as_str()),
    };
    if let Some(p) = proposal {
        outln!("{}() on {} at Safe nonce {}", p.kind.as_str(), p.contract, p.nonce);
        outln!("safeTxHash {}", p.safe_tx_hash);
        outln!("owners approve with: guardian approve {}", p.safe_tx_hash);
    }
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
        /// Print the deployed addresses as JSON.
        #[arg(long)]
        json: bool,
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
        SafeCommand::Deploy { owners, threshold, rpc_url, salt_nonce, chain_id, json, key } => {
            // The URL may carry a key: never in a log line.
            guardian_config::remember_secret(rpc_url.as_str());
            let key = key.load()?;
            let provider = wallet_provider(rpc_url, key.clone());
            let node_chain = provider.get_chain_id().await.wrap_err("eth_chainId")?;
            ensure!(node_chain == chain_id, "the node serves chain {node_chain}, not {chain_id}");
            let toolchain = Toolchain::discover()?;
            let contracts = guardian_chain::compile(&toolchain)?;
            if !json {
                outln!("deploying Safe 1.4.1 from {} on chain {chain_id}", key.address());
            }
            let singletons = SafeSingletons::deploy(&provider, &contracts).await?;
            let address = singletons
                .create_safe(&provider, &owners, threshold, U256::from(salt_nonce))
                .await?;
            let safe = SafeClient::connect(provider, address).await?;
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "safe": address,
                        "chain_id": chain_id,
                        "singleton": singletons.singleton,
                        "proxy_factory": singletons.proxy_factory,
                        "fallback_handler": singletons.fallback_handler,
                        "owners": safe.owners().await?,
                        "threshold": safe.threshold().await?,
                    }))?
                );
                return Ok(());
            }
            outln!("singleton        {}", singletons.singleton);
            outln!("proxy factory    {}", singletons.proxy_factory);
            outln!("fallback handler {}", singletons.fallback_handler);
            outln!("safe             {address}");
            outln!("owners           {:?}", safe.owners().await?);
            outln!("threshold        {}", safe.threshold().await?);
            outln!("put it in guardian.toml:\n\n[safe]\naddress = \"{address}\"");
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
                outln!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                outln!(
                    "safe       {} (Safe {})",
                    safe.address(),
                    guardian_chain::safe::SAFE_VERSION
                );
                outln!("chain id   {}", safe.chain_id());
                outln!("threshold  {} of {}", info["threshold"], safe.owners().await?.len());
                for owner in safe.owners().await? {
                    outln!("owner      {owner}");
                }
                outln!("nonce      {}", info["nonce"]);
            }
        }
    }
    Ok(())
}
