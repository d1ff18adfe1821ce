//! No secret reaches a log line, at any verbosity.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use alloy::primitives::utils::parse_ether;
use guardian_chain::testbed::IVault;

use crate::support::{HttpStub, Receiver, eventually, key_hex, testbed, vault_drain_toml};

/// `guardian run -vv` (its trace, its libraries' debug lines) with every kind of secret an
/// endpoint can carry: `user:password@`, an API key in the path, one in the query, bearer
/// tokens (HTTP and WebSocket), a dead endpoint whose errors quote its URL, and the webhook's
/// URL. A drain makes the follower, the pause flow and the notifier all talk. Then the whole
/// log is searched for each secret. At `-v` the HTTP URL with its password and key used to be
/// on most lines (alloy's `ReqwestTransport{url=…}` span).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_even_at_vv() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = HttpStub::forwarding_to(bed.devnet.http_url()).await;
    let receiver = Receiver::start().await;
    let anvil_port = bed.devnet.http_url().port().expect("port");

    let secrets = [
        "PaSSw0rd-s3cret",
        "PATHKEY-s3cret-123",
        "QUERYKEY-s3cret-456",
        "BEARER-s3cret-789",
        "BEARERPATH-s3cret",
        "WSKEY-s3cret-abc",
        "WSBEARER-s3cret-def",
        "DEADPASS-s3cret",
        "DEADPATH-s3cret",
        "DEADQUERY-s3cret",
        "HOOK-s3cret-ghi",
    ];
    let env = [
        (
            "TEST_RPC_DEAD",
            "http://bob:DEADPASS-s3cret@127.0.0.1:9/DEADPATH-s3cret?key=DEADQUERY-s3cret"
                .to_owned(),
        ),
        (
            "TEST_RPC_HTTP",
            format!(
                "http://alice:PaSSw0rd-s3cret@127.0.0.1:{}/v3/PATHKEY-s3cret-123?apikey=QUERYKEY-s3cret-456",
                proxy.port
            ),
        ),
        ("TEST_RPC_TOKEN", format!("http://127.0.0.1:{}/rpc/BEARERPATH-s3cret", proxy.port)),
        ("TEST_RPC_TOKEN_TOKEN", "BEARER-s3cret-789".to_owned()),
        ("TEST_RPC_WS", format!("ws://127.0.0.1:{anvil_port}/?key=WSKEY-s3cret-abc")),
        ("TEST_RPC_WS_TOKEN", "WSBEARER-s3cret-def".to_owned()),
        ("TEST_WEBHOOK", format!("http://127.0.0.1:{}/hooks/HOOK-s3cret-ghi", receiver.port)),
        ("TEST_EXECUTOR_KEY", key_hex(&bed.devnet.signer(9).expect("key"))),
    ];
    let toml = format!(
        r#"[chain]
poll_interval_ms = 100

[[rpc]]
url_env = "TEST_RPC_DEAD"

[[rpc]]
url_env = "TEST_RPC_HTTP"

[[rpc]]
url_env = "TEST_RPC_TOKEN"
bearer_env = "TEST_RPC_TOKEN_TOKEN"

[[rpc]]
url_env = "TEST_RPC_WS"
bearer_env = "TEST_RPC_WS_TOKEN"

[storage]
path = "guardian.sqlite"

[api]
bind = "127.0.0.1:0"

[safe]
address = "{safe}"
executor_key_env = "TEST_EXECUTOR_KEY"

[webhook]
url_env = "TEST_WEBHOOK"

{vault}"#,
        safe = bed.safe.address(),
        vault = vault_drain_toml(&bed, None, "critical"),
    );
    let config = dir.path().join("guardian.toml");
    std::fs::write(&config, toml).expect("guardian.toml");
    let log_path = dir.path().join("guardian.log");
    let log_file = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args(["run", "-vv", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .env_remove("GUARDIAN_CONFIG")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("guardian starts");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    eventually("the daemon to follow the chain", Duration::from_secs(60), || {
        log().contains("guardian is following the chain").then_some(())
    })
    .await;

    // The drain: a finding, an incident, a pause proposal (the pause flow), notifications.
    let user = bed.devnet.provider_for(bed.devnet.signer(7).expect("key"));
    let vault = IVault::new(bed.targets.vault_v2, &user);
    let deposit = vault.deposit().value(parse_ether("3").expect("ether"));
    deposit.send().await.expect("sent").get_receipt().await.expect("mined");
    let attacker = bed.devnet.signer(8).expect("key").address();
    let drain = vault.sponsoredWithdraw(attacker, parse_ether("2").expect("ether"));
    drain.send().await.expect("sent").get_receipt().await.expect("mined");
    eventually("the pause proposal to be notified", Duration::from_secs(60), || {
        receiver.kinds().iter().any(|k| k.contains("proposed")).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = child.kill();
    let _ = child.wait();

    // The secrets were used: the provider got the keys, the password (as basic auth) and the
    // token.
    let requests = proxy.requests();
    assert!(
        requests.iter().any(|r| r.target.contains("PATHKEY-s3cret-123")
            && r.header("authorization").is_some_and(|a| a.starts_with("Basic "))),
        "the HTTP endpoint was reached with its key and password"
    );
    assert!(
        requests.iter().any(|r| r.target.contains("BEARERPATH-s3cret")
            && r.header("authorization") == Some("Bearer BEARER-s3cret-789")),
        "the bearer endpoint was reached with its token"
    );
    let log = log();
    let lines = log.lines().count();
    assert!(lines > 200, "a -vv run logs a lot (got {lines} lines): the test must see them");
    assert!(log.contains("127.0.0.1:9"), "the dead endpoint is named by host and port");
    for secret in secrets {
        let hits: Vec<&str> = log.lines().filter(|l| l.contains(secret)).take(3).collect();
        assert!(hits.is_empty(), "{secret} is in the log: {hits:#?}");
    }
}
