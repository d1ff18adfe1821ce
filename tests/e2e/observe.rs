//! Observable and operable in production, through `guardian run` as a process against a real
//! Anvil and Safe: `/metrics` during a drain (every series, with the values the chain and the
//! database hold), `guardian status --json`, the status page in headless Chromium, a real
//! Prometheus server scraping the daemon with the alert rules loaded, `/ready` when Anvil is
//! frozen and when the database is locked, and each notification channel's native payload.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use alloy::{
    primitives::{B256, utils::parse_ether},
    providers::Provider,
};
use guardian_chain::{Testbed, TestbedOptions, devnet::DevnetOptions, testbed::IVault};
use guardian_rehearse::stage::{VAULT_ROLLBACK_TOML, write_vault_deployment};
use hmac::{Hmac, Mac};

use crate::support::{
    Daemon, Receiver, eventually, guardian, key_hex, testbed, testbed_with, vault_drain_toml,
};

const DEADLINE: Duration = Duration::from_secs(60);

/// guardian.toml, the managed config and the version history in `dir`: the vault (VaultV2)
/// with its rollback tables, a `vault-drain` rule of `severity`, the Safe when `safe`, and
/// `extra` TOML.
async fn write_config(
    bed: &Testbed,
    dir: &Path,
    safe: bool,
    severity: &str,
    extra: &str,
) -> PathBuf {
    write_vault_deployment(&bed.devnet.reader(), &bed.targets, 138, dir).await.expect("deployment");
    let safe = if safe {
        format!(
            "[safe]\naddress = \"{}\"\nexecutor_key_env = \"TEST_EXECUTOR_KEY\"\n",
            bed.safe.address()
        )
    } else {
        String::new()
    };
    let toml = format!(
        r#"[chain]
poll_interval_ms = 100

[[rpc]]
url = "{url}"

[storage]
path = "guardian.sqlite"

[api]
bind = "127.0.0.1:0"

{safe}
{vault}
{extra}
{VAULT_ROLLBACK_TOML}"#,
        url = bed.devnet.http_url(),
        vault = vault_drain_toml(bed, Some("rollback"), severity),
    );
    let path = dir.join("guardian.toml");
    std::fs::write(&path, toml).expect("guardian.toml");
    path
}

/// `guardian run` on `config`, once it follows the chain.
async fn start(config: &Path, env: &[(&str, String)]) -> Daemon {
    let mut daemon = Daemon::start_with_env(config, &config.with_file_name("guardian.log"), env);
    eventually("the daemon to follow the chain", DEADLINE, || {
        assert!(daemon.exited().is_none(), "guardian exited:\n{}", daemon.log());
        daemon.log().contains("guardian is following the chain").then_some(())
    })
    .await;
    daemon
}

/// The address the daemon logged for the listener whose log line contains `what`.
fn listening(daemon: &Daemon, what: &str) -> String {
    let log = daemon.log();
    let line =
        log.lines().find(|l| l.contains(what)).unwrap_or_else(|| panic!("no {what:?} in\n{log}"));
    let at = line.split("local=").nth(1).expect("local=").split_whitespace().next().expect("addr");
    at.to_owned()
}

/// The deposit, then VaultV2's buggy sponsoredWithdraw drains 2 ether.
async fn drain_vault(bed: &Testbed) -> B256 {
    let user = bed.devnet.provider_for(bed.devnet.signer(7).expect("key"));
    let vault = IVault::new(bed.targets.vault_v2, &user);
    let deposit = vault.deposit().value(parse_ether("3").expect("ether"));
    deposit.send().await.expect("sent").get_receipt().await.expect("mined");
    let attacker = bed.devnet.signer(8).expect("key").address();
    let drain = vault.sponsoredWithdraw(attacker, parse_ether("2").expect("ether"));
    drain.send().await.expect("sent").get_receipt().await.expect("mined").transaction_hash
}

async fn get(url: &str) -> (u16, String) {
    let client = crate::support::http().timeout(Duration::from_secs(10)).build().expect("client");
    match client.get(url).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
        Err(error) => (0, error.to_string()),
    }
}

/// `/metrics` as `series → value` (series = name with its labels, as written).
async fn scrape(addr: &str) -> std::collections::BTreeMap<String, f64> {
    let (status, text) = get(&format!("http://{addr}/metrics")).await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(series, value)| Some((series.to_owned(), value.parse().ok()?)))
        .collect()
}

/// A tool the tests need: its path, or a failure naming the script that installs it.
fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("{name} is not installed: run scripts/setup.sh (it installs the Debian package)")
    })
}

/// Where tests keep what a person may want to look at (the status page's screenshot).
fn test_output() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-output");
    std::fs::create_dir_all(&dir).expect("test output folder");
    dir
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Headless Chromium, as the machine notes say to start it, with `args` and `url`: its stdout.
fn chromium(args: &[&str], url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile");
    let out = Command::new(tool("chromium"))
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Text of an HTML document without its tags, whitespace collapsed.
fn text_of(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_shows_in_the_metrics_the_status_and_the_status_page() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;
    let hook = "[webhook]\nurl_env = \"TEST_WEBHOOK_URL\"\nmax_backoff_ms = 1000\n";
    let config = write_config(&bed, dir.path(), true, "critical", hook).await;
    let cfg = config.to_str().expect("utf-8");
    // A backup before the daemon starts, so its age is there to report.
    let (ok, _, stderr) = guardian(
        &["backup", "create", "--config-file", cfg, "--new-ledger", "--reason", "before"],
        &[],
    );
    assert!(ok, "backup create: {stderr}");
    let env = [
        ("TEST_EXECUTOR_KEY", key_hex(&bed.deployer)),
        ("TEST_WEBHOOK_URL", format!("http://127.0.0.1:{}/hook", receiver.port)),
    ];
    let mut daemon = start(&config, &env).await;
    let api = listening(&daemon, "HTTP API listening");
    drain_vault(&bed).await;

    let reader = bed.devnet.reader();
    let head = reader.get_block_number().await.expect("head") as f64;
    let mut last: std::collections::BTreeMap<String, f64>;
    let started = Instant::now();
    let metrics = loop {
        assert!(daemon.exited().is_none(), "guardian exited:\n{}", daemon.log());
        let m = scrape(&api).await;
        let caught_up = m.get("guardian_cursor_block") == Some(&head)
            && m.get("guardian_proposals{status=\"pending\"}") == Some(&1.0)
            && m.get("guardian_notifications_pending") == Some(&0.0)
            && m.contains_key("guardian_executor_balance_wei");
        if caught_up {
            break m;
        }
        last = m;
        assert!(
            started.elapsed() < DEADLINE,
            "never caught up; last scrape: {last:#?}\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let value = |series: &str| {
        *metrics.get(series).unwrap_or_else(|| panic!("{series} missing from {metrics:#?}"))
    };
    let url = bed.devnet.http_url();
    let anvil = format!("{}:{}", url.host_str().expect("host"), url.port().expect("port"));
    assert_eq!(value("guardian_chain_head_block"), head);
    assert_eq!(value("guardian_cursor_block"), head);
    assert_eq!(value("guardian_follower_lag_blocks"), 0.0);
    assert!(value("guardian_block_processing_seconds_count") >= 1.0);
    assert!(value("guardian_last_block_age_seconds") >= 0.0);
    assert_eq!(value("guardian_findings_total{rule=\"vault-drain\",severity=\"critical\"}"), 1.0);
    assert_eq!(value("guardian_incidents_open{severity=\"critical\"}"), 1.0);
    assert_eq!(value("guardian_incidents_open{severity=\"high\"}"), 0.0);
    // Critical's deadline is its first escalation, 5 minutes after the opening notice.
    assert_eq!(value("guardian_incidents_overdue{severity=\"critical\"}"), 0.0);
    assert_eq!(value("guardian_proposals{status=\"pending\"}"), 1.0);
    assert_eq!(value("guardian_proposals{status=\"executed\"}"), 0.0);
    assert!(
        value(&format!("guardian_rpc_requests_total{{endpoint=\"{anvil}\",outcome=\"ok\"}}"))
            > 10.0
    );
    assert_eq!(value("guardian_rpc_failovers_total"), 0.0);
    assert!(value("guardian_rpc_request_seconds_count") > 10.0);
    let balance = reader.get_balance(bed.deployer.address()).await.expect("balance");
    assert_eq!(
        value("guardian_executor_balance_wei"),
        balance.to_string().parse::<f64>().expect("f64")
    );
    let min = value("guardian_executor_min_balance_wei");
    assert!(
        min > 0.0 && (min / 200_000.0).fract() == 0.0,
        "one execution = 200000 gas × fee: {min}"
    );
    assert_eq!(value("guardian_notifications_pending"), 0.0);
    assert_eq!(value("guardian_notification_failures_total{channel=\"webhook\"}"), 0.0);
    assert_eq!(value("guardian_notifications_failing_seconds"), 0.0);
    assert_eq!(value("guardian_rollback_ready{contract=\"vault\"}"), 1.0, "V1 verifies on chain");
    let backup_age = value("guardian_last_backup_age_seconds");
    assert!((0.0..120.0).contains(&backup_age), "{backup_age}");
    assert_eq!(value("guardian_ready"), 1.0);
    assert!(
        metrics.iter().any(|(s, v)| s.starts_with("guardian_build_info{")
            && s.contains("version=\"0.1.0\"")
            && *v == 1.0),
        "{metrics:#?}"
    );
    let (status, body) = get(&format!("http://{api}/ready")).await;
    assert_eq!((status, body.as_str()), (200, r#"{"ready":true,"reasons":[]}"#));

    // `guardian status --json` on the host, from the database and the node.
    let (ok, stdout, stderr) = guardian(&["status", "--json", "--config", cfg], &[]);
    assert!(ok, "status failed: {stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(status["follow"]["cursor"], head as u64, "{status:#}");
    assert_eq!(status["follow"]["lag"], 0);
    assert_eq!(status["endpoints"][0]["health"], "ok");
    let incident = &status["incidents"][0];
    assert_eq!((incident["id"].as_i64(), incident["contract"].as_str()), (Some(1), Some("vault")));
    assert_eq!(incident["severity"], "critical");
    assert_eq!(incident["overdue"], false);
    assert!(incident["deadline"].is_string(), "{incident}");
    let proposal = &status["proposals"][0];
    let hash = proposal["safe_tx_hash"].as_str().expect("hash").to_owned();
    assert_eq!(
        (proposal["approvals"].as_u64(), proposal["threshold"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(proposal["approve_command"], format!("guardian approve {hash}"));
    let address = |v: &serde_json::Value| {
        v.as_str().and_then(|a| a.parse::<alloy::primitives::Address>().ok())
    };
    assert_eq!(address(&status["executor"]["address"]), Some(bed.deployer.address()));
    assert_eq!(status["executor"]["balance_wei"], format!("{balance:#x}"));
    let vault = &status["contracts"][0];
    assert_eq!(vault["paused"], false);
    assert_eq!(vault["rollback"]["current"]["label"], "v2");
    assert_eq!(vault["rollback"]["previous"]["label"], "v1");
    assert_eq!(address(&vault["rollback"]["previous"]["address"]), Some(bed.targets.vault_v1));
    assert_eq!(vault["rollback"]["verified"], true);
    assert!(
        status["last_backup"]["file"]
            .as_str()
            .is_some_and(|f| f.starts_with("smart-accounts-config_"))
    );
    assert_eq!(status["notifications"]["channels"][0]["channel"], "webhook");
    assert_eq!(status["notifications"]["pending"], 0);

    // The status page, rendered by a real browser.
    let url = format!("http://{api}/");
    let dom = chromium(&["--dump-dom"], &url);
    let text = text_of(&dom);
    for part in [
        "guardian on chain 138",
        "Ready",
        "Incident #1 on vault",
        "severity critical",
        "deadline",
        "approvals 0/2",
        &format!("guardian approve {hash}"),
        "opened",
        "proposal_made",
        "vault",
        "running",
        "v1",
        "verified",
    ] {
        assert!(text.contains(part), "{part:?} not on the page:\n{text}");
    }
    assert!(dom.contains("http-equiv=\"refresh\""), "the page refreshes itself");
    let shot = test_output().join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&["--window-size=1280,1800", &format!("--screenshot={}", shot.display())], &url);
    let png = std::fs::read(&shot).expect("a screenshot was written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{} bytes", png.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_daemon_with_the_alert_rules_loaded() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(&bed, dir.path(), false, "critical", "").await;
    let daemon = start(&config, &[]).await;
    let api = listening(&daemon, "HTTP API listening");

    // The exposition passes Prometheus's own linter.
    let (status, text) = get(&format!("http://{api}/metrics")).await;
    assert_eq!(status, 200);
    let mut lint = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    std::io::Write::write_all(lint.stdin.as_mut().expect("stdin"), text.as_bytes()).expect("write");
    let linted = lint.wait_with_output().expect("promtool");
    assert!(
        linted.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&linted.stdout),
        String::from_utf8_lossy(&linted.stderr)
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/prometheus/alerts.yml");
    let prometheus_yml = dir.path().join("prometheus.yml");
    std::fs::write(
        &prometheus_yml,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: guardian\n    static_configs:\n      - targets: ['{api}']\n",
            rules.display()
        ),
    )
    .expect("prometheus.yml");
    let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
    let _prometheus = Killed(
        Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", prometheus_yml.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts"),
    );
    let query = async |q: &str| -> Option<serde_json::Value> {
        let (status, body) = get(&format!("http://127.0.0.1:{port}/api/v1/query?query={q}")).await;
        let body: serde_json::Value = serde_json::from_str(&body).ok().filter(|_| status == 200)?;
        body["data"]["result"].as_array()?.first().cloned()
    };
    let started = Instant::now();
    let cursor = loop {
        if let Some(sample) = query("guardian_cursor_block").await {
            break sample;
        }
        let log = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
        assert!(started.elapsed() < DEADLINE, "Prometheus never had guardian_cursor_block:\n{log}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(cursor["metric"]["job"], "guardian");
    assert_eq!(cursor["metric"]["instance"], api.as_str());
    let scraped: u64 = cursor["value"][1].as_str().expect("value").parse().expect("number");
    let stored = crate::support::cursor(&dir.path().join("guardian.sqlite")).expect("cursor");
    assert!(scraped <= stored && scraped + 5 >= stored, "scraped {scraped}, stored {stored}");
    let up = query("up").await.expect("up");
    assert_eq!(up["value"][1], "1");
    // The alert rules evaluate against the live series without error.
    let started = Instant::now();
    loop {
        let (_, body) = get(&format!("http://127.0.0.1:{port}/api/v1/rules")).await;
        let rules: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let all: Vec<&serde_json::Value> = rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        if !all.is_empty() && all.iter().all(|r| r["health"] == "ok") {
            assert!(all.len() >= 10, "{} rules loaded", all.len());
            break;
        }
        assert!(started.elapsed() < DEADLINE, "rules not all healthy: {body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `SIGSTOP` or `SIGCONT` to `pid`.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill").args([signal, &pid.to_string()]).status().expect("kill runs");
    assert!(status.success(), "kill {signal} {pid}");
}

/// The reasons `/ready` gives, once its status is `expected`; and how long that took.
async fn ready_becomes(
    addr: &str,
    expected: u16,
    within: Duration,
) -> (serde_json::Value, Duration) {
    let started = Instant::now();
    loop {
        let (status, body) = get(&format!("http://{addr}/ready")).await;
        if status == expected {
            return (serde_json::from_str(&body).expect("json"), started.elapsed());
        }
        assert!(started.elapsed() < within, "/ready is still {status} after {within:?}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn checks(ready: &serde_json::Value) -> Vec<String> {
    ready["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["check"].as_str().map(str::to_owned))
        .collect()
}

/// No Safe: the readiness server runs anyway, on its own `[metrics] bind`. Freezing Anvil makes
/// `/ready` 503 within the stall time, thawing it makes it 200 again; a database that the
/// follower cannot write makes it 503 with that reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_fails_when_the_chain_node_freezes_or_the_database_is_locked() {
    let bed = testbed_with(TestbedOptions {
        devnet: DevnetOptions { block_time: Some(1), ..DevnetOptions::default() },
        ..TestbedOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ready = "[metrics]\nbind = \"127.0.0.1:0\"\n\n[ready]\nblock_time = \"1s\"\nstall_blocks = 3\ncheck_every = \"1s\"\n";
    let config = write_config(&bed, dir.path(), false, "critical", ready).await;
    let daemon = start(&config, &[]).await;
    let addr = listening(&daemon, "metrics, readiness and status page listening");
    assert!(!daemon.log().contains("HTTP API listening"), "no Safe, a [metrics] bind: no API port");
    let db = dir.path().join("guardian.sqlite");
    let from = eventually("a first cursor", DEADLINE, || crate::support::cursor(&db)).await;
    eventually("the cursor to move", DEADLINE, || {
        (crate::support::cursor(&db)? > from + 1).then_some(())
    })
    .await;
    let (body, _) = ready_becomes(&addr, 200, DEADLINE).await;
    assert_eq!(body["ready"], true);

    // Frozen: the node accepts connections and never answers.
    let stall = Duration::from_secs(3);
    signal(bed.devnet.pid(), "-STOP");
    let (body, took) = ready_becomes(&addr, 503, stall + Duration::from_secs(5)).await;
    let frozen = scrape(&addr).await;
    signal(bed.devnet.pid(), "-CONT");
    assert!(took <= stall + Duration::from_secs(2), "503 after {took:?}, stall time {stall:?}");
    assert!(checks(&body).contains(&"follower_stalled".to_owned()), "{body}");
    let detail = body["reasons"][0]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("has not moved"), "{detail}");
    assert_eq!(frozen.get("guardian_ready"), Some(&0.0), "guardian_ready mirrors /ready");
    let (body, _) = ready_becomes(&addr, 200, DEADLINE).await;
    assert_eq!(body["reasons"], serde_json::json!([]));

    // Locked: another connection holds the write lock; the follower's commits fail after
    // their busy wait.
    let lock = guardian_store::open_connection(&db).expect("open");
    lock.execute_batch("BEGIN EXCLUSIVE;").expect("lock");
    let (body, _) = {
        let started = Instant::now();
        loop {
            let (status, text) = get(&format!("http://{addr}/ready")).await;
            let body: serde_json::Value = serde_json::from_str(&text).expect("json");
            if status == 503 && checks(&body).contains(&"database_failing".to_owned()) {
                break (body, ());
            }
            assert!(started.elapsed() < DEADLINE, "no database reason: {text}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let reason = body["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .find(|r| r["check"] == "database_failing")
        .expect("reason")
        .clone();
    assert!(reason["detail"].as_str().is_some_and(|d| d.contains("locked")), "{reason}");
    lock.execute_batch("ROLLBACK;").expect("unlock");
    drop(lock);
    ready_becomes(&addr, 200, DEADLINE).await;
}

fn hmac_hex(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).expect("any key length");
    mac.update(body);
    alloy::hex::encode(mac.finalize().into_bytes())
}

/// Discord, Telegram, PagerDuty and a signed webhook each get their native payload; PagerDuty
/// sees trigger, then resolve with the same dedup_key when the incident is cancelled; a Slack
/// channel for critical incidents only is skipped for this high one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_channel_gets_its_native_payload() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;
    let base = format!("http://127.0.0.1:{}", receiver.port);
    let channels = r#"
[[notify]]
kind = "discord"
url_env = "DISCORD_URL"

[[notify]]
kind = "telegram"
url_env = "TELEGRAM_URL"
chat_id = -100123

[[notify]]
kind = "pagerduty"
url_env = "PAGERDUTY_URL"
routing_key_env = "PAGERDUTY_KEY"

[[notify]]
kind = "webhook"
name = "signed"
url_env = "HOOK_URL"
secret_env = "HOOK_SECRET"

[[notify]]
kind = "slack"
url_env = "SLACK_URL"
min_severity = "critical"
"#;
    let config = write_config(&bed, dir.path(), false, "high", channels).await;
    let cfg = config.to_str().expect("utf-8");
    let env = [
        ("DISCORD_URL", format!("{base}/discord")),
        ("TELEGRAM_URL", format!("{base}/bot123:T0KEN/sendMessage")),
        ("PAGERDUTY_URL", format!("{base}/v2/enqueue")),
        ("PAGERDUTY_KEY", "R0UTING-KEY".to_owned()),
        ("HOOK_URL", format!("{base}/signed")),
        ("HOOK_SECRET", "s3cret".to_owned()),
        ("SLACK_URL", format!("{base}/slack")),
    ];
    let daemon = start(&config, &env).await;
    drain_vault(&bed).await;
    let on = |path: &str| -> Vec<crate::support::Delivery> {
        receiver.deliveries().into_iter().filter(|d| d.path == path).collect()
    };
    eventually("the opening notice on every channel", DEADLINE, || {
        ["/discord", "/bot123:T0KEN/sendMessage", "/v2/enqueue", "/signed"]
            .iter()
            .all(|p| !on(p).is_empty())
            .then_some(())
    })
    .await;
    let key = eventually("the incident", DEADLINE, || {
        let (ok, stdout, _) = guardian(&["incidents", "show", "1", "--json", "--config", cfg], &[]);
        let view: serde_json::Value = serde_json::from_str(&stdout).ok().filter(|_| ok)?;
        view["key"].as_str().map(str::to_owned)
    })
    .await;

    let discord = &on("/discord")[0].body;
    assert!(
        discord["content"].as_str().is_some_and(|c| c.contains("incident #1 on vault")),
        "{discord}"
    );
    assert_eq!(discord["allowed_mentions"]["parse"], serde_json::json!([]));
    assert_eq!(discord["embeds"][0]["title"], "Incident #1 on vault: opened");
    assert_eq!(discord["embeds"][0]["fields"][0]["value"], "high");

    let telegram = &on("/bot123:T0KEN/sendMessage")[0].body;
    assert_eq!(telegram["chat_id"], -100_123);
    assert!(
        telegram["text"].as_str().is_some_and(|t| t.contains("[HIGH] incident #1 on vault")),
        "{telegram}"
    );

    let signed = &on("/signed")[0];
    assert_eq!(signed.body["kind"], "opened");
    assert_eq!(
        signed.header("x-guardian-signature"),
        Some(hmac_hex(b"s3cret", &signed.raw).as_str())
    );
    assert_ne!(
        signed.header("x-guardian-signature"),
        Some(hmac_hex(b"other", &signed.raw).as_str())
    );

    // Called off: PagerDuty resolves the alert it was triggered with.
    let (ok, _, stderr) =
        guardian(&["incidents", "cancel", "1", "--reason", "drill", "--config", cfg], &[]);
    assert!(ok, "cancel: {stderr}");
    let events = eventually("PagerDuty's resolve", DEADLINE, || {
        let events = on("/v2/enqueue");
        events.iter().any(|e| e.body["event_action"] == "resolve").then_some(events)
    })
    .await;
    let actions: Vec<&str> =
        events.iter().filter_map(|e| e.body["event_action"].as_str()).collect();
    assert_eq!(actions, ["trigger", "resolve"]);
    for event in &events {
        assert_eq!(event.body["dedup_key"], key.as_str());
        assert_eq!(event.body["routing_key"], "R0UTING-KEY");
    }
    assert_eq!(events[0].body["payload"]["severity"], "error", "high is PagerDuty's error");
    assert_eq!(events[0].body["payload"]["custom_details"]["incident"]["key"], key.as_str());

    // Slack takes critical incidents only: this one is skipped there, and said so.
    let view = eventually("every channel to be done with the opening notice", DEADLINE, || {
        let (ok, stdout, _) = guardian(&["incidents", "show", "1", "--json", "--config", cfg], &[]);
        let view: serde_json::Value = serde_json::from_str(&stdout).ok().filter(|_| ok)?;
        (view["notifications"][0]["status"] == "done").then_some(view)
    })
    .await;
    assert!(on("/slack").is_empty(), "nothing reaches the critical-only channel");
    let deliveries = view["notifications"][0]["deliveries"].as_array().expect("deliveries");
    let slack = deliveries.iter().find(|d| d["channel"] == "slack").expect("slack's delivery");
    assert!(slack["outcome"].as_str().is_some_and(|o| o.starts_with("skipped")), "{slack}");
    assert_eq!(deliveries.len(), 5, "{deliveries:#?}");
    drop(daemon);
}
