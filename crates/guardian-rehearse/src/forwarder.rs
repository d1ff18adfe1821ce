//! The fork endpoint, behind a loopback JSON-RPC forwarder.
//!
//! Anvil takes its fork URL only as an argument, which every user of the host can read in
//! `ps`, and a production URL carries an API key. So the drill starts this forwarder on
//! `127.0.0.1` and hands Anvil `http://127.0.0.1:PORT`; the forwarder adds the real URL (key,
//! credentials), puts a timeout on every request (an endpoint that accepts TCP and never
//! answers cannot hang the drill), turns an HTTP 429 into a clear error instead of Anvil's
//! "timed out waiting for node to spawn", and counts the requests for the report.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use alloy::transports::http::reqwest::{self, Url};
use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use eyre::{Result, WrapErr};
use serde::{Deserialize, Serialize};

/// Why the fork endpoint could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForkFailure {
    /// It answered HTTP 429.
    #[error(
        "the fork endpoint {endpoint} answered HTTP 429 rate limited (after {after} request(s)): \
         it limits how fast it may be read; wait, use an endpoint without that limit (your own \
         node), or drill fewer scenarios at a time"
    )]
    RateLimited {
        /// The endpoint, redacted.
        endpoint: String,
        /// Requests sent before it refused.
        after: u64,
    },
    /// It did not answer in time.
    #[error(
        "the fork endpoint {endpoint} did not answer {method} within {after:?} (it accepts the \
         connection but sends nothing back): check the URL and the node"
    )]
    TimedOut {
        /// The endpoint, redacted.
        endpoint: String,
        /// The JSON-RPC method asked.
        method: String,
        /// The timeout.
        after: Duration,
    },
    /// It answered another HTTP error.
    #[error("the fork endpoint {endpoint} answered HTTP {status} to {method}")]
    Status {
        /// The endpoint, redacted.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The JSON-RPC method asked.
        method: String,
    },
    /// It could not be reached.
    #[error("the fork endpoint {endpoint} cannot be reached: {message}")]
    Unreachable {
        /// The endpoint, redacted.
        endpoint: String,
        /// What the HTTP client said (the URL scrubbed out).
        message: String,
    },
}

/// How many requests the drill made of the fork endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Footprint {
    /// JSON-RPC calls (each call of a batch counts).
    pub requests: u64,
    /// HTTP requests (a batch is one).
    pub http_requests: u64,
    /// The most calls in any one second.
    pub peak_per_second: u64,
}

#[derive(Debug)]
struct Shared {
    upstream: Url,
    shown: String,
    timeout: Duration,
    http: reqwest::Client,
    started: Instant,
    requests: AtomicU64,
    http_requests: AtomicU64,
    per_second: Mutex<BTreeMap<u64, u64>>,
    failure: Mutex<Option<ForkFailure>>,
}

impl Shared {
    fn count(&self, calls: u64) {
        self.requests.fetch_add(calls, Ordering::Relaxed);
        self.http_requests.fetch_add(1, Ordering::Relaxed);
        let second = self.started.elapsed().as_secs();
        *self.per_second.lock().unwrap_or_else(|p| p.into_inner()).entry(second).or_default() +=
            calls;
    }

    /// Keep the first failure: later ones are its consequences.
    fn failed(&self, failure: ForkFailure) {
        let mut slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            tracing::warn!(%failure, "fork endpoint failed");
            *slot = Some(failure);
        }
    }
}

/// The running forwarder; it stops when dropped.
#[derive(Debug)]
pub struct Forwarder {
    local: Url,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    /// Forward `127.0.0.1:<free port>` to `upstream`, each request answered within `timeout`.
    pub async fn start(upstream: Url, timeout: Duration) -> Result<Self> {
        let shown = guardian_rpc::redact(&upstream);
        guardian_rpc::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .wrap_err("building the fork forwarder's HTTP client")?;
        let shared = Arc::new(Shared {
            upstream,
            shown,
            timeout,
            http,
            started: Instant::now(),
            requests: AtomicU64::new(0),
            http_requests: AtomicU64::new(0),
            per_second: Mutex::new(BTreeMap::new()),
            failure: Mutex::new(None),
        });
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .wrap_err("binding the fork forwarder on 127.0.0.1")?;
        let port = listener.local_addr()?.port();
        let local: Url = format!("http://127.0.0.1:{port}").parse().wrap_err("loopback URL")?;
        let app = Router::new().fallback(forward).with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "the fork forwarder stopped");
            }
        });
        Ok(Self { local, shared, task })
    }

    /// What Anvil is given: `http://127.0.0.1:PORT`, nothing secret.
    pub fn url(&self) -> &Url {
        &self.local
    }

    /// The upstream endpoint, redacted.
    pub fn endpoint(&self) -> &str {
        &self.shared.shown
    }

    /// The first failure of the endpoint, if any.
    pub fn failure(&self) -> Option<ForkFailure> {
        self.shared.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The requests so far.
    pub fn footprint(&self) -> Footprint {
        let per_second = self.shared.per_second.lock().unwrap_or_else(|p| p.into_inner());
        Footprint {
            requests: self.shared.requests.load(Ordering::Relaxed),
            http_requests: self.shared.http_requests.load(Ordering::Relaxed),
            peak_per_second: per_second.values().copied().max().unwrap_or_default(),
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The JSON-RPC calls in a body: a batch's length, else one; and the first method's name.
fn calls_in(body: &[u8]) -> (u64, String) {
    #[derive(Deserialize)]
    struct Call {
        #[serde(default)]
        method: String,
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Array(batch)) => {
            let method = batch
                .first()
                .and_then(|c| serde_json::from_value::<Call>(c.clone()).ok())
                .map(|c| c.method)
                .unwrap_or_default();
            (batch.len() as u64, method)
        }
        Ok(single) => {
            (1, serde_json::from_value::<Call>(single).map(|c| c.method).unwrap_or_default())
        }
        Err(_) => (1, String::new()),
    }
}

async fn forward(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let (calls, method) = calls_in(&body);
    shared.count(calls);
    let sent = shared
        .http
        .post(shared.upstream.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(error) => {
            let (status, failure) = failure_of(&shared, error, method);
            let message = failure.to_string();
            shared.failed(failure);
            return (status, message).into_response();
        }
    };
    let status = answer.status();
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        let after = shared.requests.load(Ordering::Relaxed).saturating_sub(calls);
        shared.failed(ForkFailure::RateLimited { endpoint: shared.shown.clone(), after });
    } else if !status.is_success() {
        shared.failed(ForkFailure::Status {
            endpoint: shared.shown.clone(),
            status: status.as_u16(),
            method: method.clone(),
        });
    }
    let code = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    match answer.bytes().await {
        Ok(bytes) => (code, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(error) => {
            let (status, failure) = failure_of(&shared, error, method);
            let message = failure.to_string();
            shared.failed(failure);
            (status, message).into_response()
        }
    }
}

/// What a failed exchange with the endpoint means, and the status Anvil gets for it.
fn failure_of(shared: &Shared, error: reqwest::Error, method: String) -> (StatusCode, ForkFailure) {
    let endpoint = shared.shown.clone();
    if error.is_timeout() {
        let failure = ForkFailure::TimedOut { endpoint, method, after: shared.timeout };
        return (StatusCode::GATEWAY_TIMEOUT, failure);
    }
    let message = guardian_rpc::scrub(&error.without_url().to_string(), &shared.upstream);
    (StatusCode::BAD_GATEWAY, ForkFailure::Unreachable { endpoint, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_per_element_of_a_batch() {
        assert_eq!(calls_in(br#"{"method":"eth_chainId","id":1}"#), (1, "eth_chainId".into()));
        assert_eq!(
            calls_in(br#"[{"method":"eth_getBalance"},{"method":"eth_getCode"}]"#),
            (2, "eth_getBalance".into())
        );
        assert_eq!(calls_in(b"junk"), (1, String::new()));
    }
}
