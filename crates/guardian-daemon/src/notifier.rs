//! Webhook delivery of findings, from the store's durable outbox.
//!
//! The follower only writes outbox rows (in the block's transaction); this task delivers them
//! with retries and backoff on its own database connection, so a slow or dead webhook never
//! holds up the follower and a crash never loses an alert.

use std::{
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use alloy::transports::http::reqwest;
use eyre::{Result, WrapErr};
use guardian_store::{Store, StoredFinding};
use serde_json::json;
use tokio::sync::watch;
use tracing::{info, warn};

/// Where and how to deliver.
#[derive(Clone)]
pub struct Webhook {
    /// The URL (from the environment: it usually carries a token). Never logged.
    pub url: reqwest::Url,
    /// Give up on a notification after this many failed attempts.
    pub max_attempts: u32,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// When to retry after a failure. Production uses [`Backoff::default`]; tests shorten it.
    pub backoff: Backoff,
}

/// Retry schedule after a failed delivery: `base_secs * 2^attempts` seconds (`attempts` counting
/// the failure just recorded), capped at `cap_secs`. Whole seconds, as the outbox schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Multiplier of the doubling schedule; 0 retries at the next poll.
    pub base_secs: u64,
    /// Longest wait between two attempts.
    pub cap_secs: u64,
}

impl Default for Backoff {
    /// 2, 4, 8, ... seconds, at most 5 minutes.
    fn default() -> Self {
        Self { base_secs: 1, cap_secs: 300 }
    }
}

impl Backoff {
    /// Seconds to wait after the `attempts`-th failure.
    pub fn delay_secs(self, attempts: u32) -> u64 {
        self.base_secs.saturating_mul(2u64.saturating_pow(attempts)).min(self.cap_secs)
    }
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &"***")
            .field("max_attempts", &self.max_attempts)
            .field("timeout", &self.timeout)
            .field("backoff", &self.backoff)
            .finish()
    }
}

/// The JSON body: a Slack-compatible `text` plus the structured finding.
pub fn payload(stored: &StoredFinding) -> serde_json::Value {
    let f = &stored.finding;
    let text = format!(
        "[{}] {} on {} ({}): {} (block {}, action {})",
        f.severity.as_str().to_uppercase(),
        f.rule,
        f.contract,
        f.address,
        f.summary,
        f.evidence.block_number,
        f.action
    );
    json!({ "text": text, "finding_id": stored.id, "finding": f })
}

/// A delivery error for the log and the outbox, with its causes ("error sending request" alone
/// does not say the connection was refused), and without the webhook URL: `without_url` drops
/// reqwest's own copy, and any cause quoting the URL, its path or its query has them masked.
fn describe(error: reqwest::Error, url: &reqwest::Url) -> String {
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    let secrets = [Some(url.as_str()), Some(url.path()).filter(|p| p.len() > 1), url.query()];
    for secret in secrets.into_iter().flatten().filter(|s| !s.is_empty()) {
        message = message.replace(secret, "***");
    }
    message
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// Deliver due notifications until `shutdown` flips.
pub async fn run(db: PathBuf, webhook: Webhook, mut shutdown: watch::Receiver<bool>) -> Result<()> {
    let mut store = Store::open(&db).wrap_err("opening the database for the notifier")?;
    let client = reqwest::Client::builder()
        .timeout(webhook.timeout)
        // A redirect would turn the POST into a bodyless GET somewhere else: count it as a
        // failed delivery instead of following it.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .wrap_err("building the webhook HTTP client")?;
    loop {
        // A busy or failing database must not end notifications for good: log, wait, retry.
        if let Err(error) = deliver_due(&mut store, &client, &webhook, &mut shutdown).await {
            warn!(error = %format!("{error:#}"), "notifier could not use the database; retrying");
        }
        if *shutdown.borrow() {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

async fn deliver_due(
    // `&mut` only so the future stays `Send`: a `Store` is not `Sync`.
    store: &mut Store,
    client: &reqwest::Client,
    webhook: &Webhook,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<()> {
    for item in store.due_notifications(now(), 16)? {
        let send = client.post(webhook.url.clone()).json(&payload(&item.finding)).send();
        // A hanging webhook must not hold up shutdown for a batch of timeouts: an
        // interrupted delivery stays due and is sent again on the next start.
        let result = tokio::select! {
            result = send => result.and_then(reqwest::Response::error_for_status),
            _ = shutdown.changed() => return Ok(()),
        };
        let result = match result {
            Ok(response) if !response.status().is_success() => Err(format!(
                "the webhook answered {} (redirects are not followed)",
                response.status()
            )),
            Ok(_) => Ok(()),
            Err(error) => Err(describe(error, &webhook.url)),
        };
        match result {
            Ok(()) => {
                store.notification_sent(item.id)?;
                info!(finding = item.finding.id, "webhook delivered");
            }
            Err(message) => {
                let attempts = item.attempts + 1;
                let delay = webhook.backoff.delay_secs(attempts);
                warn!(finding = item.finding.id, attempts, retry_in_s = delay, error = %message, "webhook delivery failed");
                store.notification_failed(
                    item.id,
                    &message,
                    now() + delay,
                    webhook.max_attempts,
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{future::Future, net::SocketAddr, path::Path, time::Instant};

    use alloy::primitives::{B256, address};
    use guardian_core::{
        finding::{Evidence, Finding},
        severity::{Action, Severity},
    };
    use guardian_store::{BlockRef, NotificationState};
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
        sync::mpsc,
        task::JoinHandle,
    };

    use super::*;

    /// Upper bound for anything the tests wait for; reaching it is a failure, not a timing.
    const DEADLINE: Duration = Duration::from_secs(30);

    /// One request the test webhook received.
    #[derive(Debug)]
    struct Received {
        request_line: String,
        body: serde_json::Value,
        /// Unix seconds at arrival, on the clock the notifier schedules retries with.
        at: u64,
    }

    /// A webhook on 127.0.0.1 answering one connection per status in `statuses`, in order, then
    /// closing its listener. Each request is reported on the returned channel.
    async fn webhook_server(statuses: Vec<u16>) -> (SocketAddr, mpsc::UnboundedReceiver<Received>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the test webhook");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            for status in statuses {
                let Ok(Ok((stream, _))) = tokio::time::timeout(DEADLINE, listener.accept()).await
                else {
                    return;
                };
                match tokio::time::timeout(DEADLINE, answer(stream, status)).await {
                    Ok(Ok(received)) => {
                        let _ = tx.send(received);
                    }
                    _ => return,
                }
            }
        });
        (addr, rx)
    }

    /// Read one HTTP/1.1 request (headers, then `content-length` bytes), reply `status`, close.
    async fn answer(mut stream: TcpStream, status: u16) -> std::io::Result<Received> {
        const LIMIT: usize = 1 << 20;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let header_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 || buf.len() > LIMIT {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
        let length = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0)
            .min(LIMIT);
        while buf.len() < header_end + length {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let at = now();
        let reply =
            format!("HTTP/1.1 {status} Test\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        stream.write_all(reply.as_bytes()).await?;
        stream.shutdown().await?;
        Ok(Received {
            request_line: head.lines().next().unwrap_or_default().to_owned(),
            body: serde_json::from_slice(&buf[header_end..header_end + length])
                .unwrap_or(serde_json::Value::Null),
            at,
        })
    }

    fn alert() -> Finding {
        let block = B256::repeat_byte(0x11);
        Finding {
            rule: "big-withdrawal".into(),
            contract: "vault".into(),
            address: address!("0x0165878A594ca255338adfa4d48449f69242Eb8F"),
            severity: Severity::High,
            action: Action::Alert,
            summary: "withdrawal of 12 ether > 10 ether".into(),
            evidence: Evidence {
                block_number: 7,
                block_hash: block,
                tx_hash: Some(B256::repeat_byte(0xaa)),
                log_index: Some(0),
                values: [("amount".to_owned(), "12".to_owned())].into(),
                threshold: "> 10 ether".into(),
            },
        }
    }

    /// A database file holding one alerting finding; returns the store and its outbox item id.
    fn store_with_alert(path: &Path) -> (Store, i64) {
        let mut store = Store::open(path).expect("open the store");
        let block = BlockRef { number: 7, hash: B256::repeat_byte(0x11), parent_hash: B256::ZERO };
        store.commit_blocks(&[(block, vec![alert()])]).expect("commit the finding");
        let due = store.due_notifications(now(), 10).expect("due");
        assert_eq!(due.len(), 1, "an alert queues one notification");
        (store, due[0].id)
    }

    fn hook(url: &str, max_attempts: u32, base_secs: u64) -> Webhook {
        Webhook {
            url: url.parse().expect("url"),
            max_attempts,
            timeout: Duration::from_secs(5),
            backoff: Backoff { base_secs, cap_secs: 300 },
        }
    }

    /// The notifier on `db`, stopped by the returned sender.
    fn spawn_notifier(
        db: &Path,
        webhook: Webhook,
    ) -> (watch::Sender<bool>, JoinHandle<Result<()>>) {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(db.to_owned(), webhook, stopped));
        (stop, task)
    }

    async fn stop_notifier(stop: watch::Sender<bool>, task: JoinHandle<Result<()>>) {
        stop.send(true).expect("the notifier is listening");
        tokio::time::timeout(DEADLINE, task)
            .await
            .expect("the notifier stops on shutdown")
            .expect("the notifier task did not panic")
            .expect("the notifier ended without error");
    }

    /// Poll `check` until it yields a value; fail after [`DEADLINE`].
    async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(value) = check() {
                return value;
            }
            assert!(Instant::now() < deadline, "gave up waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn next_request(
        requests: &mut mpsc::UnboundedReceiver<Received>,
        what: &str,
    ) -> Received {
        within(requests.recv(), what)
            .await
            .unwrap_or_else(|| panic!("the webhook stopped before {what}"))
    }

    async fn within<T>(future: impl Future<Output = T>, what: &str) -> T {
        tokio::time::timeout(DEADLINE, future)
            .await
            .unwrap_or_else(|_| panic!("gave up waiting for {what}"))
    }

    fn state(store: &Store, id: i64) -> NotificationState {
        store.notification(id).expect("read the outbox").expect("the outbox item exists")
    }

    /// The outbox item once it is done (delivered or given up on), waiting for `what`.
    async fn done(store: &Store, id: i64, what: &str) -> NotificationState {
        eventually(what, || Some(state(store, id)).filter(|s| s.done)).await
    }

    #[test]
    fn default_backoff_doubles_from_two_seconds_up_to_five_minutes() {
        let backoff = Backoff::default();
        let delays: Vec<u64> = (1..=10).map(|n| backoff.delay_secs(n)).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff.delay_secs(u32::MAX), 300, "no overflow on absurd attempt counts");
        assert_eq!(Backoff { base_secs: 0, cap_secs: 300 }.delay_secs(5), 0);
    }

    #[tokio::test]
    async fn delivers_a_stored_finding_as_slack_compatible_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("guardian.sqlite");
        let (store, id) = store_with_alert(&db);
        let (addr, mut requests) = webhook_server(vec![200]).await;
        let (stop, task) = spawn_notifier(&db, hook(&format!("http://{addr}/hooks/T0KEN"), 3, 1));

        let received = next_request(&mut requests, "the delivery").await;
        assert_eq!(received.request_line, "POST /hooks/T0KEN HTTP/1.1");
        let text = received.body["text"].as_str().expect("a Slack `text` field");
        for part in ["HIGH", "big-withdrawal", "vault", "withdrawal of 12 ether > 10 ether"] {
            assert!(text.contains(part), "{part:?} missing from {text:?}");
        }
        assert_eq!(received.body["finding"], serde_json::to_value(alert()).expect("json"));
        let finding_id = store.findings(None).expect("findings")[0].id;
        assert_eq!(received.body["finding_id"], finding_id);

        let delivered = done(&store, id, "the delivery to be recorded").await;
        assert_eq!((delivered.attempts, delivered.last_error), (0, None));
        assert!(store.due_notifications(u64::MAX >> 1, 10).expect("due").is_empty());
        stop_notifier(stop, task).await;
        assert!(requests.try_recv().is_err(), "delivered exactly once");
    }

    #[tokio::test]
    async fn retries_after_a_failure_no_earlier_than_its_backoff() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("guardian.sqlite");
        let (store, id) = store_with_alert(&db);
        let (addr, mut requests) = webhook_server(vec![500, 200]).await;
        // Base 1 s: the first retry waits 2 s, the shortest real backoff the outbox can express.
        let (stop, task) = spawn_notifier(&db, hook(&format!("http://{addr}/hooks/T0KEN"), 3, 1));

        let first = next_request(&mut requests, "the first attempt").await;
        let failed = eventually("the failure to be recorded", || {
            Some(state(&store, id)).filter(|s| s.attempts == 1)
        })
        .await;
        assert!(!failed.done, "one failure out of three allowed attempts");
        assert!(failed.next_try_at >= first.at + 2, "{failed:?} retries too early");
        let error = failed.last_error.expect("the failure is kept");
        assert!(error.contains("500"), "{error}");

        let second = next_request(&mut requests, "the retry").await;
        assert!(
            second.at >= failed.next_try_at,
            "retried at {} before its next_try_at {}",
            second.at,
            failed.next_try_at
        );
        assert_eq!(second.body, first.body, "the retry sends the same notification");
        let delivered = done(&store, id, "the delivery to be recorded").await;
        assert_eq!((delivered.attempts, delivered.last_error), (1, None));
        stop_notifier(stop, task).await;
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_keeping_the_last_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("guardian.sqlite");
        let (store, id) = store_with_alert(&db);
        // Answers 503 three times, then its listener closes: a fourth attempt would be refused.
        let (addr, mut requests) = webhook_server(vec![503, 503, 503]).await;
        let (stop, task) = spawn_notifier(&db, hook(&format!("http://{addr}/hooks/T0KEN"), 3, 0));

        for n in 1..=3 {
            next_request(&mut requests, &format!("attempt {n}")).await;
        }
        let given_up = done(&store, id, "the notifier to give up").await;
        assert_eq!(given_up.attempts, 3);
        let error = store.notification_error(id).expect("read").expect("the last error is kept");
        assert!(error.contains("503"), "{error}");
        assert!(store.due_notifications(u64::MAX >> 1, 10).expect("due").is_empty());
        stop_notifier(stop, task).await;
        assert_eq!(state(&store, id).attempts, 3, "no attempt after giving up");
    }

    #[tokio::test]
    async fn a_redirect_is_a_failed_delivery_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("guardian.sqlite");
        let (store, id) = store_with_alert(&db);
        let (addr, mut requests) = webhook_server(vec![302]).await;
        let (stop, task) = spawn_notifier(&db, hook(&format!("http://{addr}/hooks/T0KEN"), 1, 0));
        next_request(&mut requests, "the POST").await;
        let failed = done(&store, id, "the redirect to count as a failure").await;
        let error = failed.last_error.expect("the error is kept");
        assert!(error.contains("302"), "{error}");
        stop_notifier(stop, task).await;
    }

    #[tokio::test]
    async fn stored_errors_never_carry_the_webhook_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("guardian.sqlite");
        let (store, id) = store_with_alert(&db);
        // A port nothing listens on: bind one, then free it.
        let refused =
            TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr");
        let url = format!("http://{refused}/hooks/SECRET123?token=SECRET456");
        let (stop, task) = spawn_notifier(&db, hook(&url, 1, 0));

        let failed = done(&store, id, "the refused delivery to be recorded").await;
        let error = failed.last_error.expect("the error is kept");
        assert!(!error.contains("SECRET"), "the webhook URL leaked into {error:?}");
        assert!(!error.contains("/hooks"), "the webhook URL leaked into {error:?}");
        assert!(error.to_lowercase().contains("refused"), "the cause is lost in {error:?}");
        stop_notifier(stop, task).await;
    }

    #[tokio::test]
    async fn shutdown_does_not_wait_for_a_hanging_webhook() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("guardian.sqlite");
        let (store, id) = store_with_alert(&db);
        // Accepts the connection and reads, but never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (accepted, mut connections) = mpsc::unbounded_channel();
        let server = tokio::spawn(async move {
            if let Ok((stream, _)) = listener.accept().await {
                let _ = accepted.send(());
                let mut stream = stream;
                let mut sink = Vec::new();
                let _ = stream.read_to_end(&mut sink).await;
            }
        });
        // A per-attempt timeout far beyond the test's deadline: only shutdown can end the wait.
        let mut webhook = hook(&format!("http://{addr}/hooks/T0KEN"), 3, 0);
        webhook.timeout = Duration::from_secs(3600);
        let (stop, task) = spawn_notifier(&db, webhook);

        within(connections.recv(), "the delivery attempt").await;
        stop_notifier(stop, task).await;
        let state = state(&store, id);
        assert!(!state.done && state.attempts == 0, "an interrupted delivery stays due: {state:?}");
        server.abort();
    }
}
