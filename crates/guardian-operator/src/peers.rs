//! A client of a peer replica's HTTP API (`[[replicas]]`): what the daemon relays and pulls,
//! and what `guardian status` and `proposals list` ask each peer.
//!
//! What a peer answers is verified before anything is stored (see
//! [`guardian_multisig::Multisig::accept_relayed`] and the signature checks); here it is only
//! carried.

use std::time::Duration;

use alloy::{
    primitives::{Address, B256, Bytes},
    transports::http::reqwest,
};
use eyre::{Result, WrapErr, eyre};
use guardian_config::PeerConfig;
use guardian_multisig::RelayedProposal;
use serde::{Deserialize, Serialize};

use crate::desk::{ProposalDetailView, ProposalView};

/// What a peer's `GET /health` says about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHealth {
    /// Its name, by its own config.
    #[serde(default)]
    pub replica: Option<String>,
    /// Its executor's address, when it has one.
    #[serde(default)]
    pub executor: Option<Address>,
    /// Its chain.
    #[serde(default)]
    pub chain_id: Option<u64>,
    /// Its Safe.
    #[serde(default)]
    pub safe: Option<Address>,
}

/// How a peer took something relayed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Stored (or already held: `added` false).
    Taken {
        /// New there.
        added: bool,
    },
    /// It does not know the proposal (404): relay the proposal first.
    Unknown,
    /// It refused, after its own checks (409 no longer pending, 422 not valid there): final.
    Refused(String),
}

/// One channel's delivery of a notification on a peer (`GET /notifications/{key}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerDelivery {
    /// The channel.
    pub channel: String,
    /// `delivered`, or why it was skipped; none while not done.
    pub outcome: Option<String>,
}

/// A peer's answer about one notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNotification {
    /// Its idempotency key.
    pub key: String,
    /// Its deliveries, per channel.
    pub deliveries: Vec<PeerDelivery>,
}

impl PeerNotification {
    /// Whether `channel` delivered it there.
    pub fn delivered_on(&self, channel: &str) -> bool {
        self.deliveries
            .iter()
            .any(|d| d.channel == channel && d.outcome.as_deref() == Some("delivered"))
    }
}

/// A peer replica's API.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its name.
    pub name: String,
    /// Its base URL.
    pub api: String,
    /// Its executor, pinned in the config.
    pub executor: Option<Address>,
    http: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    error: String,
}

#[derive(Debug, Deserialize)]
struct Added {
    #[serde(default)]
    added: bool,
}

impl Peer {
    /// A client of `peer`, each request bounded by `timeout`; its bearer token goes with
    /// every request (never logged).
    pub fn new(peer: &PeerConfig, timeout: Duration) -> Result<Self> {
        guardian_rpc::tls::install_crypto_provider();
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = &peer.token {
            let mut value =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                    .map_err(|_| {
                        eyre!("replica {}'s token is not a valid HTTP header value", peer.name)
                    })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .wrap_err("building the HTTP client for the replicas")?;
        Ok(Self { name: peer.name.clone(), api: peer.api.clone(), executor: peer.executor, http })
    }

    /// Clients of every `[[replicas]]` peer.
    pub fn all(peers: &[PeerConfig], timeout: Duration) -> Result<Vec<Self>> {
        peers.iter().map(|p| Self::new(p, timeout)).collect()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    /// A failure without the URL's query (none is used) and with the peer named.
    fn failed(&self, what: &str, error: reqwest::Error) -> eyre::Report {
        let kind = if error.is_timeout() {
            "timed out"
        } else if error.is_connect() {
            "cannot connect"
        } else {
            "failed"
        };
        eyre!("replica {} ({}): {what} {kind}: {}", self.name, self.api, error.without_url())
    }

    /// `GET path` as `T`; `None` when the peer answers 404.
    async fn fetch<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        let response =
            self.http.get(self.url(path)).send().await.map_err(|e| self.failed(path, e))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = response.bytes().await.map_err(|e| self.failed(path, e))?;
        if !status.is_success() {
            return Err(eyre!(
                "replica {}: GET {path} answered {status}: {}",
                self.name,
                message(&body)
            ));
        }
        serde_json::from_slice(&body)
            .map(Some)
            .wrap_err_with(|| format!("replica {}: GET {path}: unexpected answer", self.name))
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.fetch(path)
            .await?
            .ok_or_else(|| eyre!("replica {}: GET {path} answered 404 Not Found", self.name))
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<PeerHealth> {
        self.get("/health").await
    }

    /// `GET /proposals`.
    pub async fn proposals(&self) -> Result<Vec<ProposalView>> {
        self.get("/proposals").await
    }

    /// `GET /proposals/{hash}`.
    pub async fn proposal(&self, hash: B256) -> Result<ProposalDetailView> {
        self.get(&format!("/proposals/{hash}")).await
    }

    /// `GET /notifications/{key}`; `None` when the peer has no such notification.
    pub async fn notification(&self, key: &str) -> Result<Option<PeerNotification>> {
        self.fetch(&format!("/notifications/{key}")).await
    }

    async fn push(&self, request: reqwest::RequestBuilder, what: &str) -> Result<Pushed> {
        let response = request.send().await.map_err(|e| self.failed(what, e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.failed(what, e))?;
        match status.as_u16() {
            200..=299 => Ok(Pushed::Taken {
                added: serde_json::from_slice::<Added>(&body).map(|a| a.added).unwrap_or(false),
            }),
            404 => Ok(Pushed::Unknown),
            409 | 422 => Ok(Pushed::Refused(message(&body))),
            _ => Err(eyre!("replica {}: {what} answered {status}: {}", self.name, message(&body))),
        }
    }

    /// `PUT /proposals/{hash}`: offer a proposal.
    pub async fn push_proposal(&self, proposal: &RelayedProposal) -> Result<Pushed> {
        let path = format!("/proposals/{}", proposal.safe_tx_hash);
        let what = format!("PUT {path}");
        self.push(self.http.put(self.url(&path)).json(proposal), &what).await
    }

    /// `POST /proposals/{hash}/signatures`: offer an owner's signature (the peer verifies it
    /// against the Safe's owners).
    pub async fn push_signature(
        &self,
        hash: B256,
        owner: Address,
        signature: &Bytes,
        origin: &str,
    ) -> Result<Pushed> {
        let path = format!("/proposals/{hash}/signatures");
        let what = format!("POST {path}");
        let body = serde_json::json!({
            "signer": owner,
            "signature": signature,
            "relayed_by": origin,
        });
        self.push(self.http.post(self.url(&path)).json(&body), &what).await
    }
}

fn message(body: &[u8]) -> String {
    serde_json::from_slice::<ApiError>(body)
        .map(|e| e.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).chars().take(300).collect())
}

/// A proposal's approvals as one replica counts them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaApprovals {
    /// The replica.
    pub name: String,
    /// Whether it answered.
    pub reachable: bool,
    /// Where the proposal stands there (`unknown` when it lacks it).
    pub status: Option<String>,
    /// Its approvals there.
    pub approvals: Option<u64>,
    /// The threshold.
    pub threshold: Option<u64>,
}

/// One peer as `guardian status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaState {
    /// Its configured name.
    pub name: String,
    /// Its API.
    pub api: String,
    /// Whether it answered `/health`.
    pub reachable: bool,
    /// The name it gives itself (must be `name`).
    pub replica: Option<String>,
    /// Its executor.
    pub executor: Option<Address>,
    /// Why it did not answer.
    pub error: Option<String>,
    /// Relays this replica still owes it.
    pub relays_pending: u64,
    /// Its proposals, with their approvals there.
    #[serde(skip)]
    pub proposals: Vec<ProposalView>,
}

impl ReplicaState {
    /// How `hash` stands on this peer.
    pub fn approvals(&self, hash: B256) -> ReplicaApprovals {
        let view = self.proposals.iter().find(|v| v.proposal.safe_tx_hash == hash);
        ReplicaApprovals {
            name: self.name.clone(),
            reachable: self.reachable,
            status: if self.reachable {
                Some(view.map_or("unknown".to_owned(), |v| v.proposal.status.as_str().to_owned()))
            } else {
                None
            },
            approvals: view.and_then(|v| v.approvals),
            threshold: view.and_then(|v| v.threshold),
        }
    }
}

/// Ask every `[[replicas]]` peer, concurrently, for its health and its proposals. Never fails:
/// a peer that does not answer is shown unreachable with why.
pub async fn survey(peers: &[PeerConfig], timeout: Duration) -> Vec<ReplicaState> {
    let asks = peers.iter().cloned().map(|config| async move {
        let mut state = ReplicaState {
            name: config.name.clone(),
            api: config.api.clone(),
            reachable: false,
            replica: None,
            executor: config.executor,
            error: None,
            relays_pending: 0,
            proposals: Vec::new(),
        };
        let peer = match Peer::new(&config, timeout) {
            Ok(peer) => peer,
            Err(error) => {
                state.error = Some(format!("{error:#}"));
                return state;
            }
        };
        match peer.health().await {
            Ok(health) => {
                state.reachable = true;
                state.replica = health.replica;
                state.executor = state.executor.or(health.executor);
                match peer.proposals().await {
                    Ok(list) => state.proposals = list,
                    Err(error) => state.error = Some(format!("{error:#}")),
                }
            }
            Err(error) => state.error = Some(format!("{error:#}")),
        }
        state
    });
    // Concurrently, keeping the configured order.
    let mut set = tokio::task::JoinSet::new();
    for (i, ask) in asks.enumerate() {
        set.spawn(async move { (i, ask.await) });
    }
    let mut out: Vec<(usize, ReplicaState)> = set.join_all().await;
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, state)| state).collect()
}

/// How each proposal of `views` (this replica's) stands on every replica: this one first, then
/// each peer of `survey`.
pub fn spread(views: &mut [ProposalView], me: &str, survey: &[ReplicaState]) {
    for view in views {
        let hash = view.proposal.safe_tx_hash;
        let mut all = vec![ReplicaApprovals {
            name: me.to_owned(),
            reachable: true,
            status: Some(view.proposal.status.as_str().to_owned()),
            approvals: view.approvals,
            threshold: view.threshold,
        }];
        all.extend(survey.iter().map(|peer| peer.approvals(hash)));
        view.replicas = all;
    }
}

/// `b 2/2, c unreachable`: a proposal's standing on `peers`, for a terminal.
pub fn spread_line(peers: &[ReplicaApprovals]) -> String {
    peers
        .iter()
        .map(|r| match (r.reachable, r.status.as_deref(), r.approvals, r.threshold) {
            (false, ..) => format!("{} unreachable", r.name),
            (true, Some("pending"), Some(a), Some(t)) => format!("{} {a}/{t}", r.name),
            (true, Some("pending"), Some(a), None) => format!("{} {a} signed", r.name),
            (true, Some(status), ..) => format!("{} {status}", r.name),
            (true, None, ..) => format!("{} ?", r.name),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
