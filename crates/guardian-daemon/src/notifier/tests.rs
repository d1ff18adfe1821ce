//! The notifier against a local HTTP receiver that records every request.

use std::{future::Future, net::SocketAddr, path::Path, time::Instant};

use alloy::primitives::{B256, address};
use guardian_core::{
    finding::{Anomaly, Evidence, Finding},
    severity::{Action, Severity},
};
use guardian_store::{BlockRef, EffectKind, OutboxEffect};
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
    headers: Vec<(String, String)>,
    body: serde_json::Value,
    /// Unix milliseconds at arrival.
    at: u64,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
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
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(LIMIT);
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let at = now_ms();
    let reply = format!("HTTP/1.1 {status} Test\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(Received {
        request_line: head.lines().next().unwrap_or_default().to_owned(),
        headers,
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
            values: [("amount".to_owned(), "12000000000000000000".to_owned())].into(),
            threshold: "> 10 ether".into(),
            predicted_from: None,
        },
        anomaly: Anomaly::Log { tx: B256::repeat_byte(0xaa), ordinal: 0 },
        magnitude: None,
    }
}

/// A database file holding one alerting finding, hence an incident with one notification.
fn store_with_alert(path: &Path) -> (Store, i64) {
    let mut store = Store::open(path).expect("open the store");
    store.bind_chain(138).expect("chain");
    let block = BlockRef { number: 7, hash: B256::repeat_byte(0x11), parent_hash: B256::ZERO };
    store.commit_blocks(&[(block, vec![alert()])]).expect("commit the finding");
    let due = store.due_effects(EffectKind::Notify, now_ms(), 10).expect("due");
    assert_eq!(due.len(), 1, "an alert queues one notification");
    (store, due[0].id)
}

fn hook(url: &str, base_ms: u64) -> Webhook {
    Webhook {
        url: url.parse().expect("url"),
        timeout: Duration::from_secs(5),
        backoff: Backoff {
            base: Duration::from_millis(base_ms),
            cap: Duration::from_millis(base_ms.max(1) * 4),
        },
    }
}

/// The notifier on `db`, stopped by the returned sender.
fn spawn_notifier(db: &Path, webhook: Webhook) -> (watch::Sender<bool>, JoinHandle<Result<()>>) {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run(db.to_owned(), webhook, Arc::new(Notify::new()), stopped));
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
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn next_request(requests: &mut mpsc::UnboundedReceiver<Received>, what: &str) -> Received {
    within(requests.recv(), what)
        .await
        .unwrap_or_else(|| panic!("the webhook stopped before {what}"))
}

async fn within<T>(future: impl Future<Output = T>, what: &str) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("gave up waiting for {what}"))
}

fn row(store: &Store, id: i64) -> OutboxEffect {
    store.effect(id).expect("read the outbox").expect("the outbox row exists")
}

async fn done(store: &Store, id: i64, what: &str) -> OutboxEffect {
    eventually(what, || Some(row(store, id)).filter(|r| r.done_at.is_some())).await
}

#[test]
fn backoff_doubles_from_its_base_up_to_its_cap() {
    let backoff = Backoff::default();
    let delays: Vec<u64> = (1..=11).map(|n| backoff.delay(n).as_secs()).collect();
    assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    assert_eq!(backoff.delay(u32::MAX).as_secs(), 300, "no overflow on absurd attempt counts");
}

#[test]
fn amounts_come_in_wei_and_ether() {
    assert_eq!(
        amount("2500000000000000000"),
        json!({ "wei": "2500000000000000000", "ether": "2.5" })
    );
    assert_eq!(amount("3"), json!("3"), "small numbers (counts) stay as they are");
    assert_eq!(amount("0xabc"), json!("0xabc"));
}

#[tokio::test]
async fn delivers_an_incident_as_slack_compatible_json_with_its_idempotency_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("guardian.sqlite");
    let (store, id) = store_with_alert(&db);
    let (addr, mut requests) = webhook_server(vec![200]).await;
    let (stop, task) = spawn_notifier(&db, hook(&format!("http://{addr}/hooks/T0KEN"), 1000));

    let received = next_request(&mut requests, "the delivery").await;
    assert_eq!(received.request_line, "POST /hooks/T0KEN HTTP/1.1");
    let text = received.body["text"].as_str().expect("a Slack `text` field");
    for part in ["HIGH", "big-withdrawal", "vault", "withdrawal of 12 ether > 10 ether", "opened"] {
        assert!(text.contains(part), "{part:?} missing from {text:?}");
    }
    let key = row(&store, id).key;
    assert!(key.ends_with("/opened"), "{key}");
    assert_eq!(received.header(IDEMPOTENCY_HEADER), Some(key.as_str()));
    assert_eq!(received.body["idempotency_key"], key.as_str());
    assert_eq!(received.body["kind"], "opened");
    let incident = store.incidents(false).expect("incidents")[0].id;
    assert_eq!(received.body["incident"]["id"], incident);
    assert_eq!(received.body["finding"]["values"]["amount"]["ether"], "12");
    assert_eq!(received.body["finding"]["tx"], B256::repeat_byte(0xaa).to_string());

    let delivered = done(&store, id, "the delivery to be recorded").await;
    assert_eq!((delivered.attempts, delivered.last_error), (0, None));
    stop_notifier(stop, task).await;
    assert!(requests.try_recv().is_err(), "delivered exactly once");
}

#[tokio::test]
async fn a_failing_receiver_is_retried_without_limit_and_never_loses_the_notification() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("guardian.sqlite");
    let (store, id) = store_with_alert(&db);
    // Eight failures (more than the old six-attempt limit), then a success.
    let mut statuses = vec![503; 8];
    statuses.push(200);
    let (addr, mut requests) = webhook_server(statuses).await;
    let (stop, task) = spawn_notifier(&db, hook(&format!("http://{addr}/hooks/T0KEN"), 20));

    let first = next_request(&mut requests, "the first attempt").await;
    let mut previous = first.at;
    for n in 2..=9 {
        let retry = next_request(&mut requests, &format!("attempt {n}")).await;
        assert!(
            retry.at >= previous + 15,
            "attempt {n} came {} ms after the last",
            retry.at - previous
        );
        assert_eq!(retry.body, first.body, "the retry sends the same notification");
        previous = retry.at;
    }
    let delivered = done(&store, id, "the delivery after eight failures").await;
    assert_eq!(delivered.attempts, 8);
    assert!(delivered.failing_since.is_some());
    stop_notifier(stop, task).await;
}

/// A later notification of the same incident waits for the earlier one, so a receiver sees
/// them in order even across failures.
#[tokio::test]
async fn one_incidents_notifications_arrive_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("guardian.sqlite");
    let (mut store, _) = store_with_alert(&db);
    let incident = store.incidents(false).expect("incidents")[0].id;
    // A second notification of the same incident: an escalation past its deadline.
    let at = store.due_timers(u64::MAX >> 2).expect("timers")[0].2;
    store
        .fire_timer(incident, guardian_core::incident::Timer::Escalation, at, at)
        .expect("escalation");
    let (addr, mut requests) = webhook_server(vec![500, 200, 200]).await;
    let (stop, task) = spawn_notifier(&db, hook(&format!("http://{addr}/hooks/T0KEN"), 20));
    let kinds: Vec<String> = [
        next_request(&mut requests, "the first attempt").await,
        next_request(&mut requests, "the retry").await,
        next_request(&mut requests, "the escalation").await,
    ]
    .iter()
    .map(|r| r.body["kind"].as_str().unwrap_or_default().to_owned())
    .collect();
    assert_eq!(kinds, ["opened", "opened", "escalation"]);
    stop_notifier(stop, task).await;
}

#[tokio::test]
async fn a_redirect_is_a_failed_delivery_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("guardian.sqlite");
    let (store, id) = store_with_alert(&db);
    let (addr, mut requests) = webhook_server(vec![302]).await;
    let (stop, task) = spawn_notifier(&db, hook(&format!("http://{addr}/hooks/T0KEN"), 60_000));
    next_request(&mut requests, "the POST").await;
    let failed = eventually("the redirect to count as a failure", || {
        Some(row(&store, id)).filter(|r| r.attempts == 1)
    })
    .await;
    assert!(failed.done_at.is_none(), "kept for another attempt");
    assert!(failed.last_error.expect("the error is kept").contains("302"));
    stop_notifier(stop, task).await;
}

#[tokio::test]
async fn stored_errors_never_carry_the_webhook_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("guardian.sqlite");
    let (store, id) = store_with_alert(&db);
    // A port nothing listens on: bind one, then free it.
    let refused = TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr");
    let url = format!("http://{refused}/hooks/SECRET123?token=SECRET456");
    let (stop, task) = spawn_notifier(&db, hook(&url, 60_000));

    let failed = eventually("the refused delivery to be recorded", || {
        Some(row(&store, id)).filter(|r| r.attempts >= 1)
    })
    .await;
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
    let mut webhook = hook(&format!("http://{addr}/hooks/T0KEN"), 1000);
    webhook.timeout = Duration::from_secs(3600);
    let (stop, task) = spawn_notifier(&db, webhook);

    within(connections.recv(), "the delivery attempt").await;
    stop_notifier(stop, task).await;
    let state = row(&store, id);
    assert!(
        state.done_at.is_none() && state.attempts == 0,
        "an interrupted delivery stays due: {state:?}"
    );
    server.abort();
}

/// Two channels: one keeps failing, the other gets the notification at once, and the outbox
/// row stays pending (owed to the failing one) with the failure counted per channel.
#[tokio::test]
async fn a_failing_channel_never_holds_up_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("guardian.sqlite");
    let (store, id) = store_with_alert(&db);
    let (down, mut down_requests) = webhook_server(vec![503; 50]).await;
    let (up, mut up_requests) = webhook_server(vec![200]).await;
    let channels = vec![
        Channel::webhook("down", hook(&format!("http://{down}/hooks/A"), 20)),
        Channel::webhook("up", hook(&format!("http://{up}/hooks/B"), 20)),
    ];
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run_channels(db.clone(), channels, Arc::new(Notify::new()), stopped));
    next_request(&mut down_requests, "the failing channel's first attempt").await;
    let delivered = next_request(&mut up_requests, "the other channel's delivery").await;
    assert_eq!(delivered.body["kind"], "opened");
    let up_done = eventually("the delivery on `up`", || {
        store
            .deliveries(id)
            .expect("deliveries")
            .into_iter()
            .find(|d| d.channel == "up" && d.done_at.is_some())
    })
    .await;
    assert_eq!(up_done.outcome.as_deref(), Some("delivered"));
    let failing = eventually("a few failures on `down`", || {
        store
            .deliveries(id)
            .expect("deliveries")
            .into_iter()
            .find(|d| d.channel == "down" && d.attempts >= 2)
    })
    .await;
    assert!(failing.done_at.is_none() && failing.failing_since.is_some());
    assert!(row(&store, id).done_at.is_none(), "still owed to `down`");
    let backlog = store.channel_backlog(&["down".into(), "up".into()]).expect("backlog");
    assert_eq!((backlog[0].1.pending, backlog[0].1.failing), (1, 1));
    assert_eq!(backlog[1].1.pending, 0);
    stop.send(true).expect("listening");
    within(task, "the notifier to stop").await.expect("no panic").expect("no error");
}

/// A webhook that holds every request open until `together` of them are open at once, then
/// answers them all with 200. A notifier that sends one at a time never gets an answer.
async fn webhook_answering_in_groups(
    together: usize,
) -> (SocketAddr, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the test webhook");
    let addr = listener.local_addr().expect("local addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let mut open = Vec::new();
            while open.len() < together {
                let Ok(Ok((stream, _))) = tokio::time::timeout(DEADLINE, listener.accept()).await
                else {
                    return;
                };
                open.push(stream);
            }
            for stream in open {
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Ok(received) = answer(stream, 200).await {
                        let _ = tx.send(received);
                    }
                });
            }
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn deliveries_of_different_incidents_are_in_flight_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("guardian.sqlite");
    let mut store = Store::open(&db).expect("open the store");
    store.bind_chain(138).expect("chain");
    // Three contracts, three incidents, one notification each.
    let findings: Vec<Finding> = (1..=3u8)
        .map(|n| Finding {
            contract: format!("vault-{n}"),
            address: alloy::primitives::Address::repeat_byte(n),
            ..alert()
        })
        .collect();
    let block = BlockRef { number: 7, hash: B256::repeat_byte(0x11), parent_hash: B256::ZERO };
    store.commit_blocks(&[(block, findings)]).expect("commit the findings");
    let ids: Vec<i64> = store
        .due_effects(EffectKind::Notify, now_ms(), 10)
        .expect("due")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids.len(), 3, "one notification per incident");
    let (addr, mut requests) = webhook_answering_in_groups(3).await;
    let (stop, task) = spawn_notifier(&db, hook(&format!("http://{addr}/hooks/T0KEN"), 20));
    let mut incidents = std::collections::BTreeSet::new();
    for _ in 0..3 {
        let received = next_request(&mut requests, "three requests open at once").await;
        incidents.insert(received.body["incident"]["id"].as_i64().expect("incident id"));
    }
    assert_eq!(incidents.len(), 3, "one request per incident");
    for id in ids {
        done(&store, id, "each notification recorded as delivered").await;
    }
    stop_notifier(stop, task).await;
}
