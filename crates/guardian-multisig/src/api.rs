//! The local HTTP API: owners post signatures, operators ask for a pause or an unpause.
//!
//! Bound to `[api] bind` (loopback by default). Nothing here signs or sends: a signature is
//! verified and stored, a proposal is simulated and stored; execution happens in the daemon's
//! loop, which [`ApiState::wake`] nudges.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /health` | chain id, Safe, status |
//! | `GET /proposals` | every proposal, newest first |
//! | `GET /proposals/{hash}` | one proposal with its signatures and audit trail |
//! | `POST /proposals/{hash}/signatures` | `{signer, signature}`: verified, then stored |
//! | `POST /proposals` | `{contract, action: "pause"\|"unpause", reason}` |

use std::{net::SocketAddr, sync::Arc};

use alloy::primitives::{Address, B256, Bytes};
use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use guardian_core::proposal::ProposalKind;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{Notify, watch};
use tracing::info;

use crate::service::{Multisig, ProposeRequest, SubmitError};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The replica's proposal service.
    pub multisig: Arc<Multisig>,
    /// Woken after a signature or a proposal arrives, so execution does not wait for the next
    /// poll.
    pub wake: Arc<Notify>,
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/proposals", get(list).post(create))
        .route("/proposals/{hash}", get(show))
        .route("/proposals/{hash}/signatures", post(sign))
        .with_state(state)
}

/// Serve the API on `bind` until `shutdown` flips. Returns the bound address through `bound`
/// (port 0 picks a free one).
pub async fn serve(
    bind: SocketAddr,
    state: ApiState,
    mut shutdown: watch::Receiver<bool>,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> eyre::Result<()> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| eyre::eyre!("binding the HTTP API to {bind}: {e}"))?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        tracing::warn!(%local, "the HTTP API listens beyond loopback: put TLS and access control in front of it");
    }
    info!(%local, "HTTP API listening");
    if let Some(tx) = bound {
        let _ = tx.send(local);
    }
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

fn parse_hash(hash: &str) -> Result<B256, Box<Response>> {
    hash.parse().map_err(|_| {
        Box::new(error(StatusCode::BAD_REQUEST, format!("{hash:?} is not a 32-byte hex hash")))
    })
}

async fn health(State(state): State<ApiState>) -> Response {
    let safe = state.multisig.safe();
    Json(json!({ "status": "ok", "chain_id": safe.chain_id(), "safe": safe.address() }))
        .into_response()
}

async fn list(State(state): State<ApiState>) -> Response {
    match state.multisig.list(None) {
        Ok(proposals) => Json(proposals).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

async fn show(State(state): State<ApiState>, Path(hash): Path<String>) -> Response {
    let hash = match parse_hash(&hash) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    match state.multisig.detail(hash) {
        Ok(Some(detail)) => Json(detail).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no proposal with safeTxHash {hash}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

/// Body of `POST /proposals/{hash}/signatures`.
#[derive(Debug, Deserialize)]
struct SignatureBody {
    signer: String,
    signature: String,
}

async fn sign(
    State(state): State<ApiState>,
    Path(hash): Path<String>,
    body: Result<Json<SignatureBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let hash = match parse_hash(&hash) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let Ok(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected a JSON body {\"signer\": \"0x…\", \"signature\": \"0x…\"}",
        );
    };
    let Ok(signer) = body.signer.parse::<Address>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("signer {:?} is not an address", body.signer),
        );
    };
    // Bad hex is a malformed signature like any other: verified path, recorded rejection.
    let signature: Bytes = body.signature.parse().unwrap_or_default();
    match state.multisig.submit_signature(hash, signer, &signature).await {
        Ok(submitted) => {
            state.wake.notify_one();
            Json(submitted).into_response()
        }
        Err(e @ SubmitError::NotFound(_)) => error(StatusCode::NOT_FOUND, e),
        Err(e @ SubmitError::NotPending { .. }) => error(StatusCode::CONFLICT, e),
        Err(e @ SubmitError::Rejected(_)) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(SubmitError::Internal(e)) => error(StatusCode::BAD_GATEWAY, format!("{e:#}")),
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
    body: Result<Json<CreateBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected a JSON body {\"contract\": NAME, \"action\": \"pause\"|\"unpause\", \"reason\": TEXT}",
        );
    };
    if body.reason.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "a reason is required");
    }
    let request = ProposeRequest {
        contract: body.contract,
        kind: body.action,
        reason: body.reason,
        finding_id: None,
        then_rollback: false,
        actor: "operator (HTTP API)".to_owned(),
    };
    match state.multisig.propose(&request).await {
        Ok(proposed) => {
            state.wake.notify_one();
            (StatusCode::CREATED, Json(proposed)).into_response()
        }
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}")),
    }
}
