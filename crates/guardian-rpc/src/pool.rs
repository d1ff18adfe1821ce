//! The endpoints and the pool: failover, chain-id proof, lazily opened WebSockets.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use alloy::{
    providers::{DynProvider, Provider, ProviderBuilder, WsConnect},
    rpc::client::{ClientBuilder, RpcClient},
    transports::{
        Authorization, TransportError,
        http::{reqwest, reqwest::Url},
    },
};
use tracing::{debug, warn};

use crate::{
    error::{EndpointFailure, FailureKind, RpcError},
    observe::{EndpointLayer, ObserverSlot, RpcObserver},
    redact::{error_chain, host_port, redact, scrub},
};

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

/// One open connection to an endpoint: one alloy [`RpcClient`], so one JSON-RPC id space, and
/// the provider built on that client.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    pub(crate) client: RpcClient,
    pub(crate) provider: DynProvider,
}

impl Connection {
    fn new(client: RpcClient) -> Self {
        let provider = ProviderBuilder::new().connect_client(client.clone()).erased();
        Self { client, provider }
    }
}

/// One configured endpoint.
#[derive(Clone)]
pub struct Endpoint {
    url: Url,
    bearer: Option<String>,
    label: String,
    host_port: String,
    /// HTTP endpoints: built at start. WebSocket endpoints are opened on first use.
    http: Option<Connection>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("url", &self.label).finish_non_exhaustive()
    }
}

impl Endpoint {
    /// A label safe for logs: scheme, host and port, never path, query or credentials.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// `host:port`, the label metrics use.
    pub fn host_port(&self) -> &str {
        &self.host_port
    }

    /// Whether this endpoint speaks WebSocket (and so can push new heads).
    pub fn is_ws(&self) -> bool {
        matches!(self.url.scheme(), "ws" | "wss")
    }

    /// `error`, with its causes, as text safe for logs: this endpoint's URL [`scrub`]bed out.
    pub fn describe(&self, error: &(dyn std::error::Error + 'static)) -> String {
        scrub(&error_chain(error), &self.url)
    }
}

/// Why an endpoint cannot serve a request now.
enum NotReady {
    /// It serves another chain (a [`RpcError::WrongChain`]).
    WrongChain(RpcError),
    /// It did not answer.
    Failed(EndpointFailure),
}

impl NotReady {
    fn into_failure(self, endpoint: &Endpoint) -> EndpointFailure {
        match self {
            Self::Failed(failure) => failure,
            Self::WrongChain(error) => EndpointFailure {
                endpoint: endpoint.label.clone(),
                kind: FailureKind::WrongChain,
                message: error.to_string(),
            },
        }
    }
}

/// The endpoint pool.
#[derive(Debug)]
pub struct RpcPool {
    endpoints: Vec<Endpoint>,
    /// Per endpoint: set once the endpoint proved it serves the expected chain.
    verified: Vec<tokio::sync::OnceCell<()>>,
    /// Per endpoint: the open WebSocket connection, dropped after an error so the next use
    /// reconnects.
    ws: Vec<tokio::sync::Mutex<Option<Connection>>>,
    expected_chain_id: u64,
    current: AtomicUsize,
    timeout: Duration,
    observer: ObserverSlot,
}

impl RpcPool {
    /// A pool over `endpoints` (http(s) or ws(s)) serving chain `expected_chain_id`; each
    /// JSON-RPC request times out after `timeout`.
    ///
    /// HTTP clients are built immediately; WebSocket connections are opened on first use so a
    /// node that is down at start-up does not stop the guardian from starting. Before an
    /// endpoint serves its first request it must report `expected_chain_id`; one that reports
    /// another chain is never used.
    pub fn new(
        endpoints: Vec<impl Into<EndpointSpec>>,
        expected_chain_id: u64,
        timeout: Duration,
    ) -> Result<Self, RpcError> {
        if endpoints.is_empty() {
            return Err(RpcError::NoEndpoints);
        }
        crate::tls::install_crypto_provider();
        let observer = ObserverSlot::default();
        let endpoints = endpoints
            .into_iter()
            .map(|spec| {
                let EndpointSpec { url, bearer } = spec.into();
                let (label, host_port) = (redact(&url), host_port(&url));
                let http = match url.scheme() {
                    "http" | "https" => {
                        let layer = EndpointLayer::new(&host_port, timeout, observer.clone());
                        Some(Connection::new(http_client(&url, bearer.as_deref(), layer)?))
                    }
                    "ws" | "wss" => None,
                    other => {
                        return Err(RpcError::UnsupportedScheme {
                            endpoint: label,
                            scheme: other.to_owned(),
                        });
                    }
                };
                Ok(Endpoint { url, bearer, label, host_port, http })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let verified = endpoints.iter().map(|_| tokio::sync::OnceCell::new()).collect();
        let ws = endpoints.iter().map(|_| tokio::sync::Mutex::new(None)).collect();
        Ok(Self {
            endpoints,
            verified,
            ws,
            expected_chain_id,
            current: AtomicUsize::new(0),
            timeout,
            observer,
        })
    }

    /// Tell `observer` about every request from now on (on every connection, open or not yet)
    /// and every failover. Replaces an earlier observer.
    pub fn set_observer(&self, observer: Arc<dyn RpcObserver>) {
        self.observer.set(observer);
    }

    /// The endpoints, in configured order.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The chain id every endpoint must report.
    pub fn expected_chain_id(&self) -> u64 {
        self.expected_chain_id
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Index of the endpoint requests go to now.
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.endpoints.len()
    }

    /// Make `index` the current endpoint.
    pub fn switch_to(&self, index: usize) {
        let index = index % self.endpoints.len();
        let from = self.current.swap(index, Ordering::Relaxed) % self.endpoints.len();
        if from != index {
            warn!(
                from = %self.endpoints[from].label,
                endpoint = %self.endpoints[index].label,
                "switched RPC endpoint"
            );
            self.observer
                .failover(&self.endpoints[from].host_port, &self.endpoints[index].host_port);
        }
    }

    async fn ready_inner(&self, index: usize) -> Result<Connection, NotReady> {
        let endpoint = &self.endpoints[index];
        let failed = |error: &TransportError| {
            NotReady::Failed(EndpointFailure {
                endpoint: endpoint.label.clone(),
                kind: FailureKind::of(error),
                message: endpoint.describe(error),
            })
        };
        let connection = self.connect(index).await.map_err(|e| failed(&e))?;
        self.verified[index]
            .get_or_try_init(|| async {
                let reported = connection.provider.get_chain_id().await.map_err(|e| failed(&e))?;
                if reported != self.expected_chain_id {
                    tracing::error!(
                        endpoint = %endpoint.label,
                        reported,
                        expected = self.expected_chain_id,
                        "RPC endpoint serves another chain; it will not be used"
                    );
                    return Err(NotReady::WrongChain(RpcError::WrongChain {
                        endpoint: endpoint.label.clone(),
                        reported,
                        expected: self.expected_chain_id,
                    }));
                }
                Ok(())
            })
            .await?;
        Ok(connection)
    }

    async fn connect(&self, index: usize) -> Result<Connection, TransportError> {
        let endpoint = &self.endpoints[index];
        if let Some(connection) = &endpoint.http {
            return Ok(connection.clone());
        }
        let mut cached = self.ws[index].lock().await;
        if let Some(connection) = cached.as_ref() {
            return Ok(connection.clone());
        }
        let ws = WsConnect::new(endpoint.url.as_str())
            .with_auth_opt(endpoint.bearer.as_ref().map(Authorization::bearer));
        let layer = EndpointLayer::new(&endpoint.host_port, self.timeout, self.observer.clone());
        let client =
            tokio::time::timeout(self.timeout, ClientBuilder::default().layer(layer).ws(ws))
                .await
                .map_err(|_| {
                    alloy::transports::TransportErrorKind::custom(crate::error::RequestTimedOut {
                        after: self.timeout,
                    })
                })??;
        let connection = Connection::new(client);
        *cached = Some(connection.clone());
        Ok(connection)
    }

    /// Forget endpoint `index`'s WebSocket so the next request reconnects.
    pub async fn drop_connection(&self, index: usize) {
        if let Some(slot) = self.ws.get(index) {
            slot.lock().await.take();
        }
    }

    /// A provider on endpoint `index` (opening a WebSocket if needed), once it proved its
    /// chain id. For what only one endpoint can do (a new-heads subscription).
    pub async fn provider_at(&self, index: usize) -> Result<DynProvider, RpcError> {
        let index = index % self.endpoints.len();
        match self.ready_inner(index).await {
            Ok(connection) => Ok(connection.provider),
            Err(NotReady::WrongChain(error)) => Err(error),
            Err(NotReady::Failed(failure)) => {
                Err(RpcError::AllFailed { what: "connecting".into(), failures: vec![failure] })
            }
        }
    }

    /// Run `op` against the current endpoint; on a transport error or a timeout try each other
    /// endpoint once, in order, and stay on the first that answers. Every request `op` sends has
    /// the pool's timeout.
    pub async fn call<T, F, Fut>(&self, what: &str, op: F) -> Result<T, RpcError>
    where
        F: Fn(DynProvider) -> Fut,
        Fut: Future<Output = Result<T, TransportError>>,
    {
        self.call_on(what, |connection| op(connection.provider)).await
    }

    /// [`call`](Self::call), handing `op` the whole connection.
    pub(crate) async fn call_on<T, F, Fut>(&self, what: &str, op: F) -> Result<T, RpcError>
    where
        F: Fn(Connection) -> Fut,
        Fut: Future<Output = Result<T, TransportError>>,
    {
        let start = self.current();
        let mut failures = Vec::new();
        for step in 0..self.endpoints.len() {
            let index = (start + step) % self.endpoints.len();
            let endpoint = &self.endpoints[index];
            let failure = match self.ready_inner(index).await {
                Ok(connection) => match op(connection).await {
                    Ok(value) => {
                        if step > 0 {
                            self.switch_to(index);
                        }
                        return Ok(value);
                    }
                    Err(error) => EndpointFailure {
                        endpoint: endpoint.label.clone(),
                        kind: FailureKind::of(&error),
                        message: endpoint.describe(&error),
                    },
                },
                Err(not_ready) => not_ready.into_failure(endpoint),
            };
            if endpoint.is_ws() {
                self.drop_connection(index).await;
            }
            debug!(endpoint = %endpoint.label, %what, error = %failure.message, "RPC request failed");
            failures.push(failure);
        }
        Err(RpcError::AllFailed { what: what.to_owned(), failures })
    }

    /// Check every endpoint: reachable ones must serve the configured chain. Returns how many
    /// answered; fails with [`RpcError::WrongChain`] when any reachable endpoint serves another
    /// chain, because mixing chains would make every later decision wrong.
    pub async fn verify_chain(&self) -> Result<usize, RpcError> {
        let mut reachable = 0;
        let mut unreachable = Vec::new();
        for index in 0..self.endpoints.len() {
            match self.ready_inner(index).await {
                Ok(_) => reachable += 1,
                Err(NotReady::WrongChain(error)) => return Err(error),
                Err(NotReady::Failed(failure)) => unreachable.push(failure),
            }
        }
        for failure in &unreachable {
            warn!(%failure, "RPC endpoint unreachable at start-up; will retry it when needed");
        }
        Ok(reachable)
    }

    /// Latest block number on the current endpoint.
    pub async fn head(&self) -> Result<u64, RpcError> {
        self.call("eth_blockNumber", |p| async move { p.get_block_number().await }).await
    }

    /// Latest block number on every endpoint (None where it fails), for stall detection.
    pub async fn heads(&self) -> Vec<Option<u64>> {
        let mut heads = Vec::with_capacity(self.endpoints.len());
        for index in 0..self.endpoints.len() {
            let head = match self.ready_inner(index).await {
                Ok(connection) => connection.provider.get_block_number().await.ok(),
                Err(_) => None,
            };
            heads.push(head);
        }
        heads
    }
}

fn http_client(
    url: &Url,
    bearer: Option<&str>,
    layer: EndpointLayer,
) -> Result<RpcClient, RpcError> {
    let mut builder = reqwest::Client::builder();
    if let Some(token) = bearer {
        let mut headers = reqwest::header::HeaderMap::new();
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| RpcError::InvalidBearer { endpoint: redact(url) })?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
        builder = builder.default_headers(headers);
    }
    let client = builder.build().map_err(|e| RpcError::Client {
        endpoint: redact(url),
        message: scrub(&error_chain(&e), url),
    })?;
    Ok(ClientBuilder::default().layer(layer).http_with_client(client, url.clone()))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::observe::RpcOutcome;

    #[test]
    fn rejects_unknown_schemes_and_empty_lists() {
        assert!(matches!(
            RpcPool::new(Vec::<Url>::new(), 138, Duration::from_secs(1)),
            Err(RpcError::NoEndpoints)
        ));
        let err =
            RpcPool::new(vec!["ftp://x".parse::<Url>().expect("url")], 138, Duration::from_secs(1))
                .expect_err("ftp");
        assert!(matches!(&err, RpcError::UnsupportedScheme { scheme, .. } if scheme == "ftp"));
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
        let kinds: Vec<_> = err.failures().iter().map(|f| f.kind).collect();
        assert_eq!(kinds, [FailureKind::Transport, FailureKind::Transport]);
    }

    #[tokio::test]
    async fn errors_never_quote_the_api_key_in_an_endpoint_url() {
        let url: Url = "http://127.0.0.1:9/v1/SECRETKEY?apikey=s3cret".parse().expect("url");
        let pool = Arc::new(RpcPool::new(vec![url], 138, Duration::from_secs(2)).expect("pool"));
        let direct = pool.head().await.expect_err("nothing listens").to_string();
        // Through the transport every other component uses, too.
        let provider = pool.failover_provider(Duration::from_secs(1));
        let through = provider.get_block_number().await.expect_err("down").to_string();
        for msg in [direct, through] {
            assert!(msg.contains("http://127.0.0.1:9"), "names the endpoint: {msg}");
            assert!(!msg.contains("SECRETKEY") && !msg.contains("s3cret"), "{msg}");
        }
    }

    /// What an observer was told.
    #[derive(Debug, Default)]
    struct Recorder {
        requests: Mutex<Vec<(String, RpcOutcome)>>,
        failovers: Mutex<Vec<(String, String)>>,
    }

    impl RpcObserver for Recorder {
        fn request(&self, endpoint: &str, outcome: RpcOutcome, _: Duration) {
            self.requests.lock().expect("lock").push((endpoint.to_owned(), outcome));
        }
        fn failover(&self, from: &str, to: &str) {
            self.failovers.lock().expect("lock").push((from.to_owned(), to.to_owned()));
        }
    }

    /// A loopback server that accepts connections and never answers.
    async fn silent_server() -> (u16, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        (port, task)
    }

    /// A loopback JSON-RPC server answering `eth_chainId` with 138 and `eth_blockNumber` with 7.
    async fn tiny_node() -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    let mut have = 0;
                    loop {
                        let Ok(n) = stream.read(&mut buf[have..]).await else { return };
                        if n == 0 {
                            return;
                        }
                        have += n;
                        let text = String::from_utf8_lossy(&buf[..have]).to_string();
                        let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() < length {
                            continue;
                        }
                        let request: serde_json::Value =
                            serde_json::from_str(&body[..length]).unwrap_or_default();
                        let result = match request["method"].as_str() {
                            Some("eth_chainId") => "0x8a",
                            _ => "0x7",
                        };
                        let answer = serde_json::json!({
                            "jsonrpc": "2.0", "id": request["id"], "result": result,
                        })
                        .to_string();
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                            answer.len()
                        );
                        if stream.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                        buf[..have].fill(0);
                        have = 0;
                    }
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn the_observer_hears_every_request_and_every_failover() {
        let (silent, _server) = silent_server().await;
        let node = tiny_node().await;
        let pool = RpcPool::new(
            vec![
                format!("http://127.0.0.1:{silent}").parse::<Url>().expect("url"),
                format!("http://127.0.0.1:{node}").parse::<Url>().expect("url"),
            ],
            138,
            Duration::from_millis(300),
        )
        .expect("pool");
        let recorder = Arc::new(Recorder::default());
        pool.set_observer(recorder.clone());
        assert_eq!(pool.head().await.expect("the second endpoint answers"), 7);
        let requests = recorder.requests.lock().expect("lock").clone();
        let silent = format!("127.0.0.1:{silent}");
        let node = format!("127.0.0.1:{node}");
        assert_eq!(
            requests,
            [
                (silent.clone(), RpcOutcome::Timeout), // eth_chainId, never answered
                (node.clone(), RpcOutcome::Ok),        // eth_chainId
                (node.clone(), RpcOutcome::Ok),        // eth_blockNumber
            ]
        );
        assert_eq!(*recorder.failovers.lock().expect("lock"), [(silent, node)]);
        assert_eq!(RpcOutcome::Timeout.as_str(), "timeout");
    }
}
