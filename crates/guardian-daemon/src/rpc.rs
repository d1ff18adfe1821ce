//! JSON-RPC endpoints with failover.
//!
//! Operators configure several endpoints (their own validators' RPC, a sentry, a provider).
//! Every request goes to the current endpoint with a timeout; an error or a timeout moves to the
//! next one and retries there, so one dead or hung node never stops the guardian. When every
//! endpoint fails the error goes up and the caller backs off and tries again later.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use alloy::{
    providers::{DynProvider, Provider, ProviderBuilder, WsConnect},
    rpc::{
        client::RpcClient,
        json_rpc::{RequestPacket, ResponsePacket},
    },
    transports::{
        Authorization, TransportError, TransportErrorKind, TransportFut,
        http::{Http, reqwest, reqwest::Url},
    },
};
use eyre::{Result, WrapErr, eyre};
use tracing::{debug, warn};

/// How to reach one endpoint.
#[derive(Clone)]
pub struct EndpointSpec {
    /// Where it is (may embed an API key: logged only through [`redact`]).
    pub url: Url,
    /// A token sent as `Authorization: Bearer …`.
    pub bearer: Option<String>,
}

impl std::fmt::Debug for EndpointSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointSpec")
            .field("url", &redact(&self.url))
            .field("bearer", &self.bearer.as_ref().map(|_| "***"))
            .finish()
    }
}

impl From<Url> for EndpointSpec {
    fn from(url: Url) -> Self {
        Self { url, bearer: None }
    }
}

/// One configured endpoint.
#[derive(Clone)]
pub struct Endpoint {
    /// Where it is. Logged only through [`redact`], since URLs often embed API keys.
    pub url: Url,
    bearer: Option<String>,
    provider: Option<DynProvider>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("url", &self.label()).finish_non_exhaustive()
    }
}

impl Endpoint {
    /// A label safe for logs: scheme, host and port, never path, query or credentials.
    pub fn label(&self) -> String {
        redact(&self.url)
    }

    /// Whether this endpoint speaks WebSocket (and so can push new heads).
    pub fn is_ws(&self) -> bool {
        matches!(self.url.scheme(), "ws" | "wss")
    }

    /// `error`, with its causes, as text safe for logs: this endpoint's URL [`scrub`]bed out.
    pub fn describe(&self, error: &eyre::Report) -> String {
        scrub(&format!("{error:#}"), &self.url)
    }
}

/// `scheme://host:port` of a URL: enough to tell endpoints apart, nothing secret.
pub fn redact(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}", url.scheme()),
        (Some(host), None) => format!("{}://{host}", url.scheme()),
        _ => format!("{}://?", url.scheme()),
    }
}

/// `text` (an error message) with `url` replaced by its [`redact`]ed form: HTTP client errors
/// quote the full URL, and a URL often carries an API key in its path or query.
pub fn scrub(text: &str, url: &Url) -> String {
    let full = url.as_str();
    let mut text = text.replace(full, &redact(url));
    if let Some(bare) = full.strip_suffix('/') {
        text = text.replace(bare, &redact(url));
    }
    text
}

/// Told about every request the pool sends and every failover (metrics).
pub trait RpcObserver: Send + Sync + std::fmt::Debug {
    /// One JSON-RPC request to `endpoint` (scrubbed `host:port`) ended with `outcome` after
    /// `elapsed`.
    fn request(&self, endpoint: &str, outcome: RpcOutcome, elapsed: Duration);
    /// The pool moved from one endpoint to another.
    fn failover(&self, from: &str, to: &str);
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcOutcome {
    /// The endpoint answered (a JSON-RPC error such as a revert is an answer too).
    Ok,
    /// The request failed: connection refused, transport error, wrong chain.
    Error,
    /// No answer within the pool's timeout.
    Timeout,
}

impl RpcOutcome {
    /// `ok`, `error` or `timeout`: the `outcome` label of `guardian_rpc_requests_total`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Timeout => "timeout",
        }
    }
}

/// `host:port` of a URL, as [`RpcObserver`]s are told: no scheme, path, query or credentials.
pub fn host_port(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => "?".to_owned(),
    }
}

/// The endpoint pool.
#[derive(Debug)]
pub struct RpcPool {
    endpoints: Vec<Endpoint>,
    /// Per endpoint: set once the endpoint proved it serves the expected chain.
    verified: Vec<tokio::sync::OnceCell<()>>,
    /// Per endpoint: the open WebSocket provider, dropped after an error so the next use reconnects.
    ws: Vec<tokio::sync::Mutex<Option<DynProvider>>>,
    expected_chain_id: u64,
    current: AtomicUsize,
    timeout: Duration,
    observer: std::sync::RwLock<Option<Arc<dyn RpcObserver>>>,
}

impl RpcPool {
    /// A pool over `urls` (http(s) or ws(s)) serving chain `expected_chain_id`; each request
    /// times out after `timeout`.
    ///
    /// HTTP providers are built immediately; WebSocket connections are opened on first use so a
    /// node that is down at start-up does not stop the guardian from starting. Before an
    /// endpoint serves its first request it must report `expected_chain_id`; one that reports
    /// another chain is never used.
    pub fn new(
        endpoints: Vec<impl Into<EndpointSpec>>,
        expected_chain_id: u64,
        timeout: Duration,
    ) -> Result<Self> {
        if endpoints.is_empty() {
            return Err(eyre!("no RPC endpoint configured"));
        }
        guardian_chain::tls::install_crypto_provider();
        let endpoints = endpoints
            .into_iter()
            .map(|spec| {
                let EndpointSpec { url, bearer } = spec.into();
                let provider = match url.scheme() {
                    "http" | "https" => Some(http_provider(&url, bearer.as_deref())?),
                    "ws" | "wss" => None,
                    other => {
                        return Err(eyre!(
                            "RPC endpoint {} has scheme {other}; expected http, https, ws or wss",
                            redact(&url)
                        ));
                    }
                };
                Ok(Endpoint { url, bearer, provider })
            })
            .collect::<Result<Vec<_>>>()?;
        let verified = endpoints.iter().map(|_| tokio::sync::OnceCell::new()).collect();
        let ws = endpoints.iter().map(|_| tokio::sync::Mutex::new(None)).collect();
        Ok(Self {
            endpoints,
            verified,
            ws,
            expected_chain_id,
            current: AtomicUsize::new(0),
            timeout,
            observer: std::sync::RwLock::new(None),
        })
    }

    /// The endpoints, in configured order.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Index of the endpoint requests go to now.
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.endpoints.len()
    }

    /// Make `index` the current endpoint.
    pub fn switch_to(&self, index: usize) {
        let index = index % self.endpoints.len();
        let previous = self.current.swap(index, Ordering::Relaxed) % self.endpoints.len();
        if previous != index {
            warn!(endpoint = %self.endpoints[index].label(), "switched RPC endpoint");
            if let Some(observer) = self.observer() {
                observer.failover(
                    &host_port(&self.endpoints[previous].url),
                    &host_port(&self.endpoints[index].url),
                );
            }
        }
    }

    /// Tell `observer` about every request and failover from now on (replacing any other).
    pub fn set_observer(&self, observer: Arc<dyn RpcObserver>) {
        *self.observer.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(observer);
    }

    fn observer(&self) -> Option<Arc<dyn RpcObserver>> {
        self.observer.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn observe(&self, index: usize, outcome: RpcOutcome, started: Instant) {
        if let Some(observer) = self.observer() {
            observer.request(&host_port(&self.endpoints[index].url), outcome, started.elapsed());
        }
    }

    async fn provider(&self, index: usize) -> Result<DynProvider> {
        let provider = self.connect(index).await?;
        self.verified[index]
            .get_or_try_init(|| async {
                let reported = tokio::time::timeout(self.timeout, provider.get_chain_id())
                    .await
                    .map_err(|_| eyre!("eth_chainId timed out"))??;
                if reported != self.expected_chain_id {
                    tracing::error!(
                        endpoint = %self.endpoints[index].label(),
                        reported,
                        expected = self.expected_chain_id,
                        "RPC endpoint serves another chain; it will not be used"
                    );
                    return Err(eyre!(
                        "{} reports chain id {reported}, but guardian is configured for chain {}",
                        self.endpoints[index].label(),
                        self.expected_chain_id
                    ));
                }
                Ok::<_, eyre::Report>(())
            })
            .await?;
        Ok(provider)
    }

    async fn connect(&self, index: usize) -> Result<DynProvider> {
        let endpoint = &self.endpoints[index];
        if let Some(provider) = &endpoint.provider {
            return Ok(provider.clone());
        }
        let mut cached = self.ws[index].lock().await;
        if let Some(provider) = cached.as_ref() {
            return Ok(provider.clone());
        }
        let ws = WsConnect::new(endpoint.url.as_str())
            .with_auth_opt(endpoint.bearer.as_ref().map(Authorization::bearer));
        let connect = ProviderBuilder::new().connect_ws(ws);
        let provider = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| eyre!("connecting to {} timed out", endpoint.label()))?
            .wrap_err_with(|| format!("connecting to {}", endpoint.label()))?
            .erased();
        *cached = Some(provider.clone());
        Ok(provider)
    }

    /// Forget endpoint `index`'s WebSocket so the next request reconnects.
    pub async fn drop_connection(&self, index: usize) {
        if let Some(slot) = self.ws.get(index) {
            slot.lock().await.take();
        }
    }

    /// A provider on endpoint `index` (opening a WebSocket if needed).
    pub async fn provider_at(&self, index: usize) -> Result<DynProvider> {
        self.provider(index % self.endpoints.len()).await
    }

    /// Run `op` against the current endpoint; on error or timeout try each other endpoint once,
    /// in order, and stay on the first that answers.
    pub async fn call<T, F, Fut>(&self, what: &str, op: F) -> Result<T>
    where
        F: Fn(DynProvider) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let start = self.current();
        let mut errors = Vec::new();
        for step in 0..self.endpoints.len() {
            let index = (start + step) % self.endpoints.len();
            let endpoint = &self.endpoints[index];
            let started = Instant::now();
            let attempt = async {
                let provider = self.provider(index).await.map_err(|e| (RpcOutcome::Error, e))?;
                match tokio::time::timeout(self.timeout, op(provider)).await {
                    Ok(Ok(value)) => Ok(value),
                    Ok(Err(error)) => Err((RpcOutcome::Error, error)),
                    Err(_) => {
                        Err((RpcOutcome::Timeout, eyre!("timed out after {:?}", self.timeout)))
                    }
                }
            };
            match attempt.await {
                Ok(value) => {
                    self.observe(index, RpcOutcome::Ok, started);
                    if step > 0 {
                        self.switch_to(index);
                    }
                    return Ok(value);
                }
                Err((outcome, error)) => {
                    self.observe(index, outcome, started);
                    if endpoint.is_ws() {
                        self.drop_connection(index).await;
                    }
                    let error = endpoint.describe(&error);
                    debug!(endpoint = %endpoint.label(), %what, %error, "RPC request failed");
                    errors.push(format!("{}: {error}", endpoint.label()));
                }
            }
        }
        Err(eyre!("{what} failed on every RPC endpoint: {}", errors.join("; ")))
    }

    /// Check every endpoint: reachable ones must serve the configured chain. Returns how many
    /// answered; fails when any reachable endpoint serves another chain, because mixing chains
    /// would make every later decision wrong.
    pub async fn verify_chain(&self) -> Result<usize> {
        let mut reachable = 0;
        let mut unreachable = Vec::new();
        for index in 0..self.endpoints.len() {
            match self.provider(index).await {
                Ok(_) => reachable += 1,
                Err(error) if format!("{error:#}").contains("reports chain id") => {
                    return Err(error);
                }
                Err(error) => {
                    let endpoint = &self.endpoints[index];
                    unreachable.push(format!("{}: {}", endpoint.label(), endpoint.describe(&error)))
                }
            }
        }
        for failure in &unreachable {
            warn!(%failure, "RPC endpoint unreachable at start-up; will retry it when needed");
        }
        Ok(reachable)
    }

    /// Latest block number on the current endpoint.
    pub async fn head(&self) -> Result<u64> {
        self.call("eth_blockNumber", |p| async move { Ok(p.get_block_number().await?) }).await
    }

    /// Latest block number on every endpoint (None where it fails), for stall detection.
    pub async fn heads(&self) -> Vec<Option<u64>> {
        let mut heads = Vec::with_capacity(self.endpoints.len());
        for index in 0..self.endpoints.len() {
            let started = Instant::now();
            let head = async {
                let provider = self.provider(index).await.map_err(|e| (RpcOutcome::Error, e))?;
                match tokio::time::timeout(self.timeout, provider.get_block_number()).await {
                    Ok(Ok(head)) => Ok(head),
                    Ok(Err(error)) => Err((RpcOutcome::Error, eyre::Report::from(error))),
                    Err(_) => Err((RpcOutcome::Timeout, eyre!("timed out"))),
                }
            };
            let head = head.await;
            self.observe(
                index,
                head.as_ref().err().map_or(RpcOutcome::Ok, |(outcome, _)| *outcome),
                started,
            );
            heads.push(head.ok());
        }
        heads
    }
}

/// The pool as an alloy transport, so code written against a plain provider (the Safe client,
/// the sender, the rollback's on-chain checks) gets the pool's failover: each request goes
/// through [`RpcPool::call`] (current endpoint, timeout, next endpoint on failure, chain id
/// proven before first use). A JSON-RPC error (a revert, "nonce too low") is an answer, not a
/// failure: it comes back as is from the endpoint that gave it.
#[derive(Debug, Clone)]
pub struct PoolTransport(Arc<RpcPool>);

impl tower::Service<RequestPacket> for PoolTransport {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: RequestPacket) -> Self::Future {
        let pool = self.0.clone();
        Box::pin(async move {
            let what = request.method_names().collect::<Vec<_>>().join(", ");
            pool.call(&what, |provider| {
                let mut transport = provider.client().transport().clone();
                let request = request.clone();
                async move {
                    tower::Service::call(&mut transport, request).await.map_err(eyre::Report::from)
                }
            })
            .await
            .map_err(|error| TransportErrorKind::custom_str(&format!("{error:#}")))
        })
    }
}

impl RpcPool {
    /// A provider whose every request fails over across the pool's endpoints. Transaction and
    /// receipt watchers poll every `poll_interval`.
    pub fn failover_provider(self: &Arc<Self>, poll_interval: Duration) -> DynProvider {
        ProviderBuilder::new().connect_client(self.failover_client(poll_interval)).erased()
    }

    /// The client under [`failover_provider`](Self::failover_provider), to build other
    /// providers on (one with a wallet, for instance).
    pub fn failover_client(self: &Arc<Self>, poll_interval: Duration) -> RpcClient {
        RpcClient::new(PoolTransport(self.clone()), false).with_poll_interval(poll_interval)
    }
}

fn http_provider(url: &Url, bearer: Option<&str>) -> Result<DynProvider> {
    let Some(token) = bearer else {
        return Ok(ProviderBuilder::new().connect_http(url.clone()).erased());
    };
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| eyre!("the bearer token for {} is not a valid header value", redact(url)))?;
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .wrap_err("building the HTTP client")?;
    let transport = Http::with_client(client, url.clone());
    let is_local = url.host_str().is_some_and(|h| h == "localhost" || h.starts_with("127."));
    Ok(ProviderBuilder::new().connect_client(RpcClient::new(transport, is_local)).erased())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_only_scheme_host_port() {
        let url: Url =
            "https://user:pw@rpc.example.org/v1/SECRETKEY?apikey=s3cret".parse().expect("url");
        let label = redact(&url);
        assert_eq!(label, "https://rpc.example.org:443");
        assert!(!label.contains("SECRET") && !label.contains("s3cret") && !label.contains("pw"));
    }

    #[test]
    fn rejects_unknown_schemes_and_empty_lists() {
        assert!(RpcPool::new(Vec::<Url>::new(), 138, Duration::from_secs(1)).is_err());
        let err =
            RpcPool::new(vec!["ftp://x".parse::<Url>().expect("url")], 138, Duration::from_secs(1))
                .expect_err("ftp");
        assert!(err.to_string().contains("ftp"), "{err}");
    }

    #[tokio::test]
    async fn dead_endpoints_fail_with_every_endpoint_named() {
        // Port 9 (discard) on loopback is closed on our machines: connection refused at once.
        let pool = RpcPool::new(
            vec![
                "http://127.0.0.1:9".parse::<Url>().expect("url"),
                "http://127.0.0.1:7".parse::<Url>().expect("url"),
            ],
            138,
            Duration::from_secs(2),
        )
        .expect("pool");
        let err = pool.head().await.expect_err("nothing listens");
        let msg = err.to_string();
        assert!(msg.contains("127.0.0.1:9") && msg.contains("127.0.0.1:7"), "{msg}");
    }

    #[tokio::test]
    async fn errors_never_quote_the_api_key_in_an_endpoint_url() {
        let url: Url = "http://127.0.0.1:9/v1/SECRETKEY?apikey=s3cret".parse().expect("url");
        let pool = Arc::new(RpcPool::new(vec![url], 138, Duration::from_secs(2)).expect("pool"));
        let direct = format!("{:#}", pool.head().await.expect_err("nothing listens"));
        // Through the transport every other component uses, too.
        let provider = pool.failover_provider(Duration::from_secs(1));
        let through = format!("{:#}", provider.get_block_number().await.expect_err("down"));
        for msg in [direct, through] {
            assert!(msg.contains("http://127.0.0.1:9"), "names the endpoint: {msg}");
            assert!(!msg.contains("SECRETKEY") && !msg.contains("s3cret"), "{msg}");
        }
    }

    /// Records what the pool tells it, in order.
    #[derive(Debug, Default)]
    struct Recorder(std::sync::Mutex<Vec<String>>);

    impl RpcObserver for Recorder {
        fn request(&self, endpoint: &str, outcome: RpcOutcome, _: Duration) {
            self.0.lock().expect("lock").push(format!("{endpoint} {}", outcome.as_str()));
        }
        fn failover(&self, from: &str, to: &str) {
            self.0.lock().expect("lock").push(format!("{from} -> {to}"));
        }
    }

    #[tokio::test]
    async fn the_observer_hears_every_attempt_and_failover_by_host_and_port_only() {
        let pool = RpcPool::new(
            vec![
                "http://127.0.0.1:9/KEY?apikey=s3cret".parse::<Url>().expect("url"),
                "http://127.0.0.1:7".parse::<Url>().expect("url"),
            ],
            138,
            Duration::from_secs(2),
        )
        .expect("pool");
        let recorder = Arc::new(Recorder::default());
        pool.set_observer(recorder.clone());
        let _refused = pool.head().await.expect_err("nothing listens");
        pool.switch_to(1);
        pool.switch_to(1); // already there: no failover
        let seen = recorder.0.lock().expect("lock").clone();
        assert_eq!(
            seen,
            ["127.0.0.1:9 error", "127.0.0.1:7 error", "127.0.0.1:9 -> 127.0.0.1:7"],
            "one request per endpoint tried, then the switch"
        );
    }

    #[test]
    fn scrubbing_replaces_the_url_with_or_without_its_trailing_slash() {
        let url: Url = "https://rpc.example.org/KEY".parse().expect("url");
        let text = "error sending request for url (https://rpc.example.org/KEY): refused";
        assert_eq!(
            scrub(text, &url),
            "error sending request for url (https://rpc.example.org:443): refused"
        );
        let root: Url = "http://10.0.0.1:8545".parse().expect("url");
        assert_eq!(scrub("url (http://10.0.0.1:8545/)", &root), "url (http://10.0.0.1:8545)");
        assert_eq!(scrub("url (http://10.0.0.1:8545)", &root), "url (http://10.0.0.1:8545)");
    }
}
