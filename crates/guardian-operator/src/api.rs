//! The local HTTP API: owners post signatures, operators ask for a pause or an unpause and
//! read incidents, findings and proposals. Every route goes through the [`Desk`], as the CLI
//! does.
//!
//! Bound to `[api] bind` (loopback by default). Nothing here signs or sends: a signature is
//! verified and stored, a pause request is recorded on its incident and proposed (simulated
//! first); execution happens in the daemon's loop, which [`ApiState::wake`] nudges.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /health` | chain id, Safe, status |
//! | `GET /incidents` | every incident, newest first (`?open=true`: only those not closed) |
//! | `GET /incidents/{id}` | one incident: findings, proposals with approvals, timeline, notifications |
//! | `GET /findings` | findings (`?open=true`, `?contract=NAME`) |
//! | `GET /proposals` | every proposal with its approvals, newest first |
//! | `GET /proposals/{hash}` | one proposal with its signatures and trail |
//! | `POST /proposals/{hash}/signatures` | `{signer, signature}`: verified, then stored |
//! | `POST /proposals` | `{contract, action: "pause"\|"unpause", reason}` |
//! | `PUT /proposals/{hash}` | a peer replica relays a proposal: verified here, then stored |
//! | `GET /notifications/{key}` | one notification's deliveries per channel (peers in leader mode ask) |
//!
//! Every route that is not a read (any method but GET, HEAD, OPTIONS: the write routes above
//! and any added later) requires `Authorization: Bearer <token>` when `[api] token_env` is set
//! (401 otherwise); the config refuses a bind beyond loopback without one. Bodies over
//! [`BODY_LIMIT`] are refused with 413. An unpause is proposed over the API only with
//! `[api] allow_unpause = true` (403 otherwise).

use std::{net::SocketAddr, sync::Arc};

use alloy::primitives::{Address, B256};
use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, Path, Query, Request, State, rejection::JsonRejection},
    http::{Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use guardian_config::{ApiConfig, Secret};
use guardian_core::proposal::ProposalKind;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{Notify, watch};
use tracing::info;

use crate::desk::{Desk, DeskError};
use guardian_multisig::SubmitError;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The desk, connected to the Safe.
    pub desk: Arc<Desk>,
    /// Woken after a signature or a proposal arrives, so execution does not wait for the next
    /// poll.
    pub wake: Arc<Notify>,
    /// Who may write, and what.
    pub access: ApiAccess,
}

/// Who may use the write routes, and what they may ask.
#[derive(Debug, Clone, Default)]
pub struct ApiAccess {
    /// The bearer token every write must carry (`None`: none needed, loopback only).
    pub token: Option<Secret>,
    /// Whether `POST /proposals` may propose an unpause.
    pub allow_unpause: bool,
}

impl ApiAccess {
    /// As `[api]` says.
    pub fn from_config(api: &ApiConfig) -> Self {
        Self { token: api.token.clone(), allow_unpause: api.allow_unpause }
    }
}

/// The largest request body the API reads (a signature post is about 200 bytes).
pub const BODY_LIMIT: usize = 64 * 1024;

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    let access = state.access.clone();
    Router::new()
        .route("/health", get(health))
        .route("/incidents", get(incidents))
        .route("/incidents/{id}", get(incident))
        .route("/findings", get(findings))
        .route("/proposals", get(list).post(create))
        .route("/proposals/{hash}", get(show).put(relayed))
        .route("/notifications/{*key}", get(notification))
        .route("/proposals/{hash}/signatures", post(sign))
        .with_state(state)
        // Outermost: the size and the token are checked before any handler runs.
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(access, guard))
}

/// Refuse a declared body over [`BODY_LIMIT`] (413) and a write without the token (401).
/// Writes are recognised by method, so a write route added later is covered too.
async fn guard(State(access): State<ApiAccess>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > BODY_LIMIT as u64) {
        return too_large();
    }
    let reads = [Method::GET, Method::HEAD, Method::OPTIONS];
    if let Some(token) = &access.token
        && !reads.contains(request.method())
    {
        let sent = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !sent.is_some_and(|sent| same_token(sent.trim(), token.expose())) {
            let mut refused = error(
                StatusCode::UNAUTHORIZED,
                "this route needs `Authorization: Bearer <token>` with the token of [api] token_env \
                 (the CLI sends $GUARDIAN_API_TOKEN, or the variable --api-token-env names)",
            );
            refused
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            return refused;
        }
    }
    next.run(request).await
}

/// Compare tokens in time that depends on their lengths only, never on where they differ.
fn same_token(sent: &str, expected: &str) -> bool {
    let (sent, expected) = (sent.as_bytes(), expected.as_bytes());
    let mut diff = sent.len() ^ expected.len();
    for i in 0..sent.len().max(expected.len()) {
        let a = sent.get(i).copied().unwrap_or(0);
        let b = expected.get(i).copied().unwrap_or(0);
        diff |= usize::from(a ^ b);
    }
    std::hint::black_box(diff) == 0
}

fn too_large() -> Response {
    error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {} KiB", BODY_LIMIT / 1024))
}

/// A JSON body that could not be read: 413 when too large (a chunked body without a length),
/// else 400 with what was expected.
fn bad_body(rejection: &JsonRejection, expected: &str) -> Response {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large();
    }
    error(StatusCode::BAD_REQUEST, format!("expected a JSON body {expected}"))
}

/// Bind the API's listener on `bind`: done before the daemon starts following, so a port that
/// is taken stops the start instead of leaving owners' `--api` calls to reach another process.
pub async fn bind(bind: SocketAddr) -> eyre::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| {
        eyre::eyre!(
            "binding the HTTP API to {bind} ([api] bind): {e}; is another guardian running?"
        )
    })?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        tracing::warn!(%local, "the HTTP API listens beyond loopback: put TLS and access control in front of it");
    }
    info!(%local, "HTTP API listening");
    Ok(listener)
}

/// Serve the API on `listener` until `shutdown` flips.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    mut shutdown: watch::Receiver<bool>,
) -> eyre::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await?;
    Ok(())
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, e)
}

fn parse_hash(hash: &str) -> Result<B256, Box<Response>> {
    hash.parse().map_err(|_| {
        Box::new(error(StatusCode::BAD_REQUEST, format!("{hash:?} is not a 32-byte hex hash")))
    })
}

async fn health(State(state): State<ApiState>) -> Response {
    match state.desk.multisig() {
        Some(m) => Json(json!({
            "status": "ok",
            "chain_id": m.safe().chain_id(),
            "safe": m.safe().address(),
            "replica": m.name(),
            "executor": m.executor(),
        }))
        .into_response(),
        None => Json(json!({ "status": "ok" })).into_response(),
    }
}

/// `?open=true`, `?contract=NAME`.
#[derive(Debug, Default, Deserialize)]
struct Filter {
    #[serde(default)]
    open: bool,
    contract: Option<String>,
}

async fn incidents(State(state): State<ApiState>, Query(filter): Query<Filter>) -> Response {
    match state.desk.incidents(filter.open) {
        Ok(list) => Json(list).into_response(),
        Err(e) => internal(format!("{e:#}")),
    }
}

async fn incident(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::BAD_REQUEST, format!("{id:?} is not an incident number"));
    };
    match state.desk.incident(id) {
        Ok(view) => Json(view).into_response(),
        Err(e @ DeskError::NoIncident(_)) => error(StatusCode::NOT_FOUND, e),
        Err(e) => internal(format!("{e:#}")),
    }
}

async fn findings(State(state): State<ApiState>, Query(filter): Query<Filter>) -> Response {
    match state.desk.findings(filter.open, filter.contract.as_deref()) {
        Ok(list) => Json(list).into_response(),
        Err(e) => internal(format!("{e:#}")),
    }
}

async fn list(State(state): State<ApiState>) -> Response {
    match state.desk.proposals() {
        Ok(proposals) => Json(proposals).into_response(),
        Err(e) => internal(format!("{e:#}")),
    }
}

async fn show(State(state): State<ApiState>, Path(hash): Path<String>) -> Response {
    let hash = match parse_hash(&hash) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    // Approvals counted now and the owners, when the chain answers; as last counted if not.
    match state.desk.proposal_live(hash).await {
        Ok(view) => return Json(view).into_response(),
        Err(e) => {
            tracing::debug!(%hash, error = %format!("{e:#}"), "proposal read without the chain")
        }
    }
    match state.desk.proposal(hash) {
        Ok(view) => Json(view).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, format!("{e:#}")),
    }
}

/// Body of `POST /proposals/{hash}/signatures`.
#[derive(Debug, Deserialize)]
struct SignatureBody {
    signer: String,
    signature: String,
    /// The EIP-712 domain the wallet signed under, when the client says: a signature made on
    /// another network (or for another Safe) is then refused naming it.
    #[serde(default)]
    domain: Option<guardian_core::proposal::SignedDomain>,
    /// Set by a peer replica relaying a signature it accepted (verified here all the same).
    #[serde(default)]
    relayed_by: Option<String>,
}

async fn sign(
    State(state): State<ApiState>,
    Path(hash): Path<String>,
    body: Result<Json<SignatureBody>, JsonRejection>,
) -> Response {
    let hash = match parse_hash(&hash) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let body = match body {
        Ok(Json(body)) => body,
        Err(rejection) => {
            return bad_body(&rejection, "{\"signer\": \"0x…\", \"signature\": \"0x…\"}");
        }
    };
    let Ok(signer) = body.signer.parse::<Address>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("signer {:?} is not an address", body.signer),
        );
    };
    // Text that is not hex is refused as such, and recorded like any other rejection.
    let submitted = match (&body.relayed_by, state.desk.multisig()) {
        (Some(_), Some(multisig)) => {
            multisig.submit_relayed_signature(hash, signer, &body.signature).await
        }
        _ => state.desk.submit_signature_hex(hash, signer, &body.signature, body.domain).await,
    };
    match submitted {
        Ok(submitted) => {
            state.wake.notify_one();
            Json(submitted).into_response()
        }
        Err(e @ SubmitError::NotFound(_)) => error(StatusCode::NOT_FOUND, e),
        Err(e @ SubmitError::NotPending { .. }) => error(StatusCode::CONFLICT, e),
        Err(e @ SubmitError::Rejected(_)) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(e) => error(StatusCode::BAD_GATEWAY, format!("{e:#}")),
    }
}

/// `PUT /proposals/{hash}`: a peer relays a proposal. Nothing of it is trusted: see
/// [`guardian_multisig::Multisig::accept_relayed`].
async fn relayed(
    State(state): State<ApiState>,
    Path(hash): Path<String>,
    body: Result<Json<guardian_multisig::RelayedProposal>, JsonRejection>,
) -> Response {
    let hash = match parse_hash(&hash) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let body = match body {
        Ok(Json(body)) => body,
        Err(rejection) => return bad_body(&rejection, "a relayed proposal"),
    };
    if body.safe_tx_hash != hash {
        return error(StatusCode::BAD_REQUEST, "the body's safe_tx_hash is not the path's");
    }
    let Some(multisig) = state.desk.multisig() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "not connected to the Safe");
    };
    match multisig.accept_relayed(&body).await {
        Ok(added) => {
            state.wake.notify_one();
            let status = if added { StatusCode::CREATED } else { StatusCode::OK };
            (status, Json(json!({ "added": added }))).into_response()
        }
        Err(e @ guardian_multisig::RelayError::Mismatch(_)) => {
            tracing::warn!(%hash, origin = %body.origin, error = %e, "relayed proposal refused");
            error(StatusCode::UNPROCESSABLE_ENTITY, e)
        }
        Err(e @ guardian_multisig::RelayError::Conflict(_)) => error(StatusCode::CONFLICT, e),
        Err(e) => error(StatusCode::BAD_GATEWAY, format!("{e:#}")),
    }
}

/// `GET /notifications/{key}`: where each channel stands with one notification, so a peer in
/// leader mode knows whether this replica sent it.
async fn notification(State(state): State<ApiState>, Path(key): Path<String>) -> Response {
    let store = state.desk.store();
    let found = store.effect_by_key(&key).and_then(|row| match row {
        Some(row) => store.deliveries(row.id).map(Some),
        None => Ok(None),
    });
    match found {
        Ok(Some(deliveries)) => Json(json!({
            "key": key,
            "deliveries": deliveries
                .into_iter()
                .map(|d| json!({ "channel": d.channel, "outcome": d.outcome }))
                .collect::<Vec<_>>(),
        }))
        .into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no notification {key:?} here")),
        Err(e) => internal(format!("{e:#}")),
    }
}

/// Body of `POST /proposals`.
#[derive(Debug, Deserialize)]
struct CreateBody {
    contract: String,
    action: ProposalKind,
    reason: String,
}

async fn create(
    State(state): State<ApiState>,
    body: Result<Json<CreateBody>, JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(body)) => body,
        Err(rejection) => {
            return bad_body(
                &rejection,
                "{\"contract\": NAME, \"action\": \"pause\"|\"unpause\", \"reason\": TEXT}",
            );
        }
    };
    if body.reason.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "a reason is required");
    }
    if body.action == ProposalKind::Unpause && !state.access.allow_unpause {
        return error(
            StatusCode::FORBIDDEN,
            "proposing an unpause over the HTTP API is off ([api] allow_unpause = false): run \
             `guardian unpause` on the validator host, or set allow_unpause = true",
        );
    }
    let actor = "operator (HTTP API)";
    let outcome = match body.action {
        ProposalKind::Pause => state
            .desk
            .pause(&body.contract, actor, &body.reason)
            .await
            .map(|o| serde_json::to_value(o).unwrap_or_default()),
        ProposalKind::Unpause => state
            .desk
            .unpause(&body.contract, actor, &body.reason)
            .await
            .map(|o| serde_json::to_value(o).unwrap_or_default()),
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("{} is proposed with `guardian module`, not over the API", other.as_str()),
            );
        }
    };
    match outcome {
        Ok(value) => {
            state.wake.notify_one();
            (StatusCode::CREATED, Json(value)).into_response()
        }
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}")),
    }
}
