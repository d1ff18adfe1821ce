//! The daemon's HTTP side: the operator API (`guardian_operator::api`) and the read-only
//! routes that make guardian observable, served whether or not a `[safe]` is configured:
//!
//! | route | what |
//! | --- | --- |
//! | `GET /metrics` | Prometheus metrics: OpenMetrics text when asked for (Prometheus does), else the 0.0.4 text format ([`crate::metrics`]) |
//! | `GET /ready` | 200 `{"ready": true}`, or 503 with the reasons ([`crate::ready`]) |
//! | `GET /health` | liveness: the process serves |
//! | `GET /status` | the status screen as JSON (`guardian status --json`) |
//! | `GET /` | the status page: the same, as HTML that refreshes itself |
//!
//! They are on `[api] bind` with the API, or on `[metrics] bind` when set. Both stay on
//! loopback unless configured otherwise.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use eyre::{Result, WrapErr};
use guardian_config::{Config, ReadyConfig};
use guardian_core::incident::{Millis, ResponsePolicy};
use guardian_operator::{
    Desk,
    api::{self, ApiState},
    status::{ChainFacts, Readiness},
    status_page,
};
use guardian_store::{Store, Tallies, now_ms};
use serde_json::json;
use tokio::{net::TcpListener, sync::watch};
use tracing::info;

use crate::{
    RpcPool,
    metrics::{self, Metrics},
    ready::{self, ReadyInputs},
};

/// The listeners, bound before the daemon starts following: a port that is taken stops the
/// start.
#[derive(Debug)]
pub struct Listeners {
    /// `[api] bind`: the API (and the observability routes unless `[metrics] bind` is set).
    pub api: Option<TcpListener>,
    /// `[metrics] bind`.
    pub observe: Option<TcpListener>,
}

/// Bind `[api] bind` (when a Safe is configured, or when it also carries the observability
/// routes) and `[metrics] bind` (when set).
pub async fn bind(config: &Config) -> Result<Listeners> {
    let api = if config.safe.is_some() || config.metrics.bind.is_none() {
        Some(api::bind(config.api.bind).await?)
    } else {
        None
    };
    let observe = match config.metrics.bind {
        Some(bind) => Some(bind_observe(bind).await?),
        None => None,
    };
    Ok(Listeners { api, observe })
}

async fn bind_observe(bind: SocketAddr) -> Result<TcpListener> {
    let listener = TcpListener::bind(bind).await.map_err(|e| {
        eyre::eyre!(
            "binding /metrics to {bind} ([metrics] bind): {e}; is another guardian running?"
        )
    })?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        tracing::warn!(%local, "/metrics and the status page listen beyond loopback: put access control in front of them");
    }
    info!(%local, "metrics, readiness and status page listening");
    Ok(listener)
}

/// What the observability routes read.
#[derive(Debug)]
pub struct Observe {
    /// The daemon's measurements and last chain facts.
    pub metrics: Arc<Metrics>,
    /// The RPC pool (its endpoints' states).
    pub pool: Arc<RpcPool>,
    /// The operators' desk (the status screen).
    pub desk: Arc<Desk>,
    /// A connection of its own, for the tallies.
    pub store: Mutex<Store>,
    /// Readiness thresholds.
    pub ready: ReadyConfig,
    /// Response deadlines (overdue incidents).
    pub policy: ResponsePolicy,
    /// The chain id.
    pub chain_id: u64,
    /// When the daemon started following (unix ms).
    pub started_at: Millis,
    /// The relay tasks, and through them the other replicas (`[[replicas]]`).
    pub relays: Option<crate::relay::Relays>,
}

impl Observe {
    /// The tallies (or why the store cannot be read) and the readiness judged on them.
    pub fn readiness(&self) -> (Result<Tallies, String>, Readiness) {
        let tallies = {
            let store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
            store.tallies(self.metrics.channels()).map_err(|e| format!("{e:#}"))
        };
        let inputs = ReadyInputs {
            now: now_ms(),
            started_at: self.started_at,
            follower: self.metrics.follower(),
            database_error: self.metrics.database_error(),
            cursor: tallies.as_ref().map(|t| t.cursor.map(|c| c.number)).map_err(Clone::clone),
            endpoints: self.metrics.endpoint_states(&self.pool),
            executor: self.metrics.facts().and_then(|f| f.executor),
            notifications_failing_since: tallies
                .as_ref()
                .ok()
                .and_then(|t| t.channels.iter().filter_map(|(_, b)| b.failing_since).min()),
        };
        let readiness = ready::evaluate(&inputs, &self.ready);
        (tallies, readiness)
    }

    /// The last chain facts, with the endpoints' states and the head as of now.
    pub fn facts(&self) -> ChainFacts {
        let mut facts = self.metrics.facts().unwrap_or_else(|| ChainFacts {
            read_at: 0,
            chain_id: self.chain_id,
            head: None,
            endpoints: Vec::new(),
            executor: None,
            contracts: Vec::new(),
            last_backup: None,
            problems: vec!["the chain has not been read yet".into()],
        });
        facts.endpoints = self.metrics.endpoint_states(&self.pool);
        if let Some((head, _)) = self.metrics.follower().head {
            facts.head = Some(head);
        }
        facts
    }
}

/// The observability routes; `/health` too when they have a listener of their own.
pub fn observe_router(state: Arc<Observe>, with_health: bool) -> Router {
    let mut router = Router::new()
        .route("/metrics", get(metrics_route))
        .route("/ready", get(ready_route))
        .route("/status", get(status_json))
        .route("/", get(status_page_route));
    if with_health {
        router = router.route("/health", get(|| async { Json(json!({ "status": "ok" })) }));
    }
    router.with_state(state)
}

async fn metrics_route(State(state): State<Arc<Observe>>, headers: HeaderMap) -> Response {
    let (tallies, readiness) = state.readiness();
    // A store that cannot be read still gets the process's own metrics and guardian_ready 0:
    // a failing scrape would read as "guardian is down".
    let tallies = tallies.unwrap_or_default();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = metrics::Format::from_accept(accept);
    match state.metrics.render(&tallies, &readiness, &state.policy, format) {
        Ok(text) => ([(header::CONTENT_TYPE, format.content_type())], text).into_response(),
        Err(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "encoding the metrics failed").into_response()
        }
    }
}

async fn ready_route(State(state): State<Arc<Observe>>) -> Response {
    let (_, readiness) = state.readiness();
    let code = if readiness.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(readiness)).into_response()
}

fn status(state: &Observe) -> Result<guardian_operator::status::Status> {
    let (_, readiness) = state.readiness();
    let mut status =
        state.desk.status(&state.facts(), state.metrics.channels(), Some(readiness))?;
    if let Some(relays) = &state.relays {
        let backlog = state.store.lock().unwrap_or_else(PoisonError::into_inner).relay_backlog()?;
        status.replicas = relays.states(&backlog);
    }
    Ok(status)
}

async fn status_json(State(state): State<Arc<Observe>>) -> Response {
    match status(&state) {
        Ok(status) => Json(status).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": format!("{e:#}") })))
            .into_response(),
    }
}

async fn status_page_route(State(state): State<Arc<Observe>>) -> Response {
    match status(&state) {
        Ok(status) => Html(status_page::render(&status)).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Html(format!(
                "<!DOCTYPE html><title>guardian</title><p>the status could not be read: {}</p>",
                status_page::escape(&format!("{e:#}"))
            )),
        )
            .into_response(),
    }
}

/// Serve the API (`api_state`) and the observability routes on `listeners` until `shutdown`
/// flips.
pub async fn serve(
    listeners: Listeners,
    api_state: ApiState,
    observe: Arc<Observe>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let mut tasks = Vec::new();
    let separate = listeners.observe.is_some();
    if let Some(listener) = listeners.api {
        let mut router = api::router(api_state);
        if !separate {
            router = router.merge(observe_router(observe.clone(), false));
        }
        tasks.push(tokio::spawn(serve_one(listener, router, shutdown.clone())));
    }
    if let Some(listener) = listeners.observe {
        tasks.push(tokio::spawn(serve_one(listener, observe_router(observe, true), shutdown)));
    }
    for task in tasks {
        task.await.wrap_err("an HTTP server task failed")??;
    }
    Ok(())
}

async fn serve_one(
    listener: TcpListener,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await?;
    Ok(())
}
