//! The operators' commands against a real Anvil and Safe: `safe deploy` on a bare chain,
//! `pause` → `approve` (keystore, then on chain) → executed → `proposals show`, and the HTTP API.

use std::{path::Path, sync::Arc};

use alloy::{
    primitives::{Address, B256},
    signers::{SignerSync, local::PrivateKeySigner},
};
use guardian_chain::{
    Devnet, DevnetOptions, Testbed,
    safe::{SafeClient, is_paused, sign_safe_tx_hash},
    sender::SendOptions,
    testbed::deploy_targets,
};
use guardian_core::{incident::ResponsePolicy, proposal::proposal_tx, safe::Approvals};
use guardian_multisig::Multisig;
use guardian_operator::{Desk, api};

use crate::support::{Replica, contracts, guardian, guardian_code, key_hex, safe_tx_hash, testbed};

#[tokio::test]
async fn safe_deploy_on_bare_anvil_makes_a_working_safe() {
    let (toolchain, compiled) = contracts();
    let devnet = Devnet::spawn(toolchain, &DevnetOptions::default()).expect("anvil");
    let deployer = devnet.signer(0).expect("key");
    let owners: Vec<PrivateKeySigner> = (1..=3).map(|i| devnet.signer(i).expect("key")).collect();
    let list = owners.iter().map(|o| o.address().to_string()).collect::<Vec<_>>().join(",");
    let url = devnet.http_url().to_string();
    let (ok, stdout, stderr) = guardian(
        &[
            "safe",
            "deploy",
            "--owners",
            &list,
            "--threshold",
            "2",
            "--rpc-url",
            &url,
            "--private-key-env",
            "TEST_DEPLOYER_KEY",
        ],
        &[("TEST_DEPLOYER_KEY", key_hex(&deployer))],
    );
    assert!(ok, "safe deploy failed:\n{stdout}\n{stderr}");
    assert!(
        !stdout.contains(&key_hex(&deployer)[2..]) && !stderr.contains(&key_hex(&deployer)[2..]),
        "key never printed"
    );
    let address: Address = stdout
        .lines()
        .find_map(|l| l.strip_prefix("safe "))
        .expect("safe line")
        .trim()
        .parse()
        .expect("address");
    let provider = devnet.provider_for(deployer.clone());
    let safe = SafeClient::connect(provider.clone(), address).await.expect("a Safe 1.4.1");
    let mut expected: Vec<Address> = owners.iter().map(PrivateKeySigner::address).collect();
    let mut got = safe.owners().await.expect("owners");
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(safe.threshold().await.expect("threshold"), 2);

    // It works: the new Safe pauses a contract it owns with two owner signatures.
    let targets =
        deploy_targets(&provider, compiled, address, deployer.address()).await.expect("targets");
    let tx = proposal_tx(
        targets.vault_v2,
        guardian_core::proposal::no_arg_calldata("pause()").expect("cd"),
        safe.nonce().await.expect("nonce"),
    );
    let hash = safe.tx_hash(&tx);
    let approvals: Approvals = owners[..2]
        .iter()
        .map(|o| (o.address(), sign_safe_tx_hash(o, hash).expect("sign")))
        .collect();
    let exec =
        safe.execute(&deployer, &tx, &approvals, &SendOptions::default()).await.expect("executes");
    assert!(exec.success);
    assert!(is_paused(&devnet.reader(), targets.vault_v2).await.expect("paused()"));
}

fn write_config(bed: &Testbed, dir: &Path) -> std::path::PathBuf {
    write_config_at(bed, dir, bed.devnet.http_url().as_str())
}

/// [`write_config`] with `url` as its one `[[rpc]]` endpoint.
fn write_config_at(bed: &Testbed, dir: &Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("guardian.toml");
    let text = format!(
        r#"[[rpc]]
url = "{url}"

[storage]
path = "guardian.sqlite"

[safe]
address = "{safe}"

[[contracts]]
name = "vault"
address = "{vault}"

[[rules]]
name = "vault-insolvent"
kind = "invariant"
severity = "critical"
contracts = ["vault"]
call = "solvent() returns (bool)"
op = "=="
value = true
"#,
        url = url,
        safe = bed.safe.address(),
        vault = bed.targets.vault_v2,
    );
    std::fs::write(&path, text).expect("config");
    path
}

#[tokio::test]
async fn cli_pause_approve_with_keystore_and_onchain_then_executed() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(&bed, dir.path());
    let cfg = config.to_str().expect("utf-8");

    let (ok, stdout, stderr) =
        guardian(&["pause", "vault", "--reason", "drill", "--config", cfg], &[]);
    assert!(ok, "pause failed:\n{stdout}\n{stderr}");
    let hash = safe_tx_hash(&stdout);

    // Owner 0 signs from a Foundry-style encrypted keystore.
    let owner = &bed.owners[0];
    let mut rng = rand::thread_rng();
    PrivateKeySigner::encrypt_keystore(
        dir.path(),
        &mut rng,
        owner.to_bytes(),
        "s3cret",
        Some("owner0"),
    )
    .expect("keystore");
    std::fs::write(dir.path().join("pw"), "s3cret\n").expect("password file");
    let keystore = dir.path().join("owner0");
    let approve_with_password_file = |password_file: &std::path::Path| {
        let keystore = keystore.to_str().expect("utf-8");
        let password_file = password_file.to_str().expect("utf-8");
        let args = ["approve", &hash, "--yes", "--keystore", keystore, "--password-file"];
        guardian(&[&args[..], &[password_file, "--config", cfg]].concat(), &[])
    };
    let (ok, stdout, stderr) = approve_with_password_file(&dir.path().join("pw"));
    assert!(ok, "approve failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("You are about to approve"), "shows what is signed: {stdout}");
    assert!(stdout.contains("approvals: 1 of 2"), "{stdout}");
    // A wrong password is refused.
    std::fs::write(dir.path().join("bad"), "nope\n").expect("password file");
    let (ok, _, stderr) = approve_with_password_file(&dir.path().join("bad"));
    assert!(!ok && stderr.contains("cannot decrypt keystore"), "{stderr}");

    // Owner 1 approves on chain.
    let (ok, stdout, stderr) = guardian(
        &[
            "approve",
            &hash,
            "--yes",
            "--onchain",
            "--private-key-env",
            "OWNER_KEY",
            "--config",
            cfg,
        ],
        &[("OWNER_KEY", key_hex(&bed.owners[1]))],
    );
    assert!(ok, "approve --onchain failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("approvals: 2 of 2"), "{stdout}");

    // The daemon's responder executes it.
    let db = dir.path().join("guardian.sqlite");
    let mut replica = Replica::new(&bed, &db, Some(bed.deployer.clone())).await;
    replica.settle().await;
    assert!(is_paused(&bed.devnet.reader(), bed.targets.vault_v2).await.expect("paused()"));

    let (ok, stdout, stderr) =
        guardian(&["proposals", "show", &hash, "--json", "--config", cfg], &[]);
    assert!(ok, "{stderr}");
    let detail: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(detail["status"], "executed");
    let events: Vec<&str> = detail["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["event"].as_str().expect("s"))
        .collect();
    assert_eq!(events, ["proposed", "approval", "onchain_approval", "executed"]);
    let (ok, stdout, _) = guardian(&["proposals", "list", "--config", cfg], &[]);
    assert!(ok && stdout.contains(&hash) && stdout.contains("executed"), "{stdout}");
}

#[tokio::test]
async fn http_api_verifies_signatures_before_storing_them() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (ms, base, _stop) = served_api(&bed, dir.path()).await;
    let http = crate::support::http().build().expect("HTTP client");

    let health: serde_json::Value =
        http.get(format!("{base}/health")).send().await.expect("get").json().await.expect("json");
    assert_eq!(health["chain_id"], 138);

    let created = http
        .post(format!("{base}/proposals"))
        .json(&serde_json::json!({"contract": "vault", "action": "pause", "reason": "api drill"}))
        .send()
        .await
        .expect("post");
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = created.json().await.expect("json");
    let hash: B256 =
        created["proposal"]["safe_tx_hash"].as_str().expect("hash").parse().expect("b256");

    let post_sig = |signer: Address, signature: String| {
        let http = http.clone();
        let url = format!("{base}/proposals/{hash}/signatures");
        async move {
            let resp = http
                .post(url)
                .json(&serde_json::json!({"signer": signer, "signature": signature}))
                .send()
                .await
                .expect("post");
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.expect("json"))
        }
    };
    let stranger = bed.devnet.signer(8).expect("key");
    let (status, body) = post_sig(
        stranger.address(),
        alloy::hex::encode_prefixed(stranger.sign_hash_sync(&hash).expect("sign").as_bytes()),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().expect("msg").contains("not an owner"));
    let (status, body) = post_sig(bed.owners[0].address(), "0x1234".into()).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().expect("msg").starts_with("malformed"));
    // A wallet on another network (any chain id): named from the domain the client says it
    // signed, recovered under that domain.
    let elsewhere = Desk::over(ms.clone()).proposal(hash).expect("view").detail.proposal.safe_tx();
    let on_2018 = elsewhere.safe_tx_hash(2018, bed.safe.address());
    let signature = alloy::hex::encode_prefixed(
        bed.owners[0].sign_hash_sync(&on_2018).expect("sign").as_bytes(),
    );
    let answer = http
        .post(format!("{base}/proposals/{hash}/signatures"))
        .json(&serde_json::json!({
            "signer": bed.owners[0].address(),
            "signature": signature,
            "domain": {"chainId": 2018, "verifyingContract": bed.safe.address()},
        }))
        .send()
        .await
        .expect("post");
    assert_eq!(answer.status(), 422);
    let body: serde_json::Value = answer.json().await.expect("json");
    let message = body["error"].as_str().expect("msg");
    assert!(
        message.contains("for chain id 2018, not 138: the wallet is on the wrong network"),
        "{message}"
    );

    let good =
        alloy::hex::encode_prefixed(bed.owners[0].sign_hash_sync(&hash).expect("sign").as_bytes());
    let (status, body) = post_sig(bed.owners[0].address(), good.clone()).await;
    assert_eq!(
        (status, body["added"].as_bool(), body["approvals"].as_u64()),
        (200, Some(true), Some(1))
    );
    let (status, body) = post_sig(bed.owners[0].address(), good).await;
    assert_eq!((status, body["added"].as_bool()), (200, Some(false)), "idempotent");

    let detail: serde_json::Value = http
        .get(format!("{base}/proposals/{hash}"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(detail["signatures"].as_array().expect("sigs").len(), 1);
    let rejections = detail["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event"] == "rejection")
        .count();
    assert_eq!(rejections, 3);
    let missing = http.get(format!("{base}/proposals/{}", B256::ZERO)).send().await.expect("get");
    assert_eq!(missing.status(), 404);
    let list: serde_json::Value = http
        .get(format!("{base}/proposals"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(list.as_array().expect("list").len(), 1);
    assert_eq!((list[0]["approvals"].as_u64(), list[0]["threshold"].as_u64()), (Some(1), Some(2)));

    // The pause opened an incident; the API shows it with its proposal and approvals.
    let id = created["incident"].as_i64().expect("incident id");
    let get = |path: String| {
        let http = http.clone();
        async move {
            http.get(path)
                .send()
                .await
                .expect("get")
                .json::<serde_json::Value>()
                .await
                .expect("json")
        }
    };
    let incidents = get(format!("{base}/incidents?open=true")).await;
    assert_eq!(incidents[0]["id"], id);
    assert_eq!(incidents[0]["state"], "responding");
    assert_eq!(incidents[0]["pending"][0], hash.to_string());
    let view = get(format!("{base}/incidents/{id}")).await;
    assert_eq!(view["proposals"][0]["approvals"], 1);
    assert_eq!(view["proposals"][0]["approve_command"], format!("guardian approve {hash}"));
    let kinds: Vec<&str> = view["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["opened", "proposal_made", "approval_counted"]);
    assert_eq!(
        ms.store().incident(id).expect("read").expect("exists").incident.state.as_str(),
        "responding"
    );
    let missing = http.get(format!("{base}/incidents/999")).send().await.expect("get");
    assert_eq!(missing.status(), 404);
}

/// A `Multisig` for `bed` on a fresh database, with its HTTP API served on 127.0.0.1:0 until
/// the returned sender is dropped.
async fn served_api(
    bed: &Testbed,
    dir: &Path,
) -> (Arc<Multisig>, String, tokio::sync::watch::Sender<bool>) {
    served_api_with(bed, dir, api::ApiAccess::default()).await
}

/// [`served_api`] with `access` (a token, unpause allowed).
async fn served_api_with(
    bed: &Testbed,
    dir: &Path,
    access: api::ApiAccess,
) -> (Arc<Multisig>, String, tokio::sync::watch::Sender<bool>) {
    let ms = Arc::new(
        Multisig::connect(
            bed.devnet.reader(),
            138,
            bed.safe.address(),
            &dir.join("daemon.sqlite"),
            crate::support::targets(bed, false),
            None,
            ResponsePolicy::default(),
        )
        .await
        .expect("connect"),
    );
    let state = api::ApiState {
        desk: Arc::new(Desk::over(ms.clone())),
        wake: Arc::new(tokio::sync::Notify::new()),
        access,
    };
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let listener = api::bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("bound"));
    tokio::spawn(api::serve(listener, state, shutdown));
    (ms, url, stop)
}

async fn propose_pause(ms: &Arc<Multisig>) -> B256 {
    let outcome = Desk::over(ms.clone()).pause("vault", "test", "api drill").await.expect("pause");
    outcome.proposal.expect("proposed").proposal.safe_tx_hash
}

/// The CLI runs as a child process while this runtime serves the API: run it off the runtime.
async fn guardian_async(
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        guardian(&args, &env)
    })
    .await
    .expect("join")
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// `guardian approve HASH --api URL --yes` with `owner`'s key and the operator's `config`.
fn approve_over_api(
    hash: B256,
    url: &str,
    config: &str,
    owner: &PrivateKeySigner,
    extra: &[&str],
) -> impl Future<Output = (bool, String, String)> + use<> {
    let mut args = strings(&[
        "approve",
        &hash.to_string(),
        "--api",
        url,
        "--yes",
        "--private-key-env",
        "OWNER_KEY",
        "--config",
        config,
    ]);
    args.extend(strings(extra));
    guardian_async(args, vec![("OWNER_KEY", key_hex(owner))])
}

#[tokio::test]
async fn cli_lists_and_approves_over_the_http_api() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The operator's own config: it names the chain (138 by default) and the Safe, and its
    // database path does not exist on the operator's machine: --api never opens it.
    let config = write_config(&bed, dir.path());
    let cfg = config.to_str().expect("utf-8").to_owned();
    let (ms, url, _stop) = served_api(&bed, dir.path()).await;
    let hash = propose_pause(&ms).await;

    let (ok, stdout, stderr) =
        guardian_async(strings(&["proposals", "list", "--api", &url, "--json"]), vec![]).await;
    assert!(ok, "{stderr}");
    let list: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(list.as_array().expect("list").len(), 1);
    assert_eq!(list[0]["safe_tx_hash"], hash.to_string());
    assert_eq!(list[0]["status"], "pending");
    // GUARDIAN_API works like --api.
    let (ok, stdout, stderr) = guardian_async(
        strings(&["proposals", "show", &hash.to_string()]),
        vec![("GUARDIAN_API", url.clone())],
    )
    .await;
    assert!(ok && stdout.contains(&format!("safeTxHash  {hash}")), "{stdout}\n{stderr}");
    assert!(!dir.path().join("guardian.sqlite").exists(), "--api reads no local database");

    // Owner 0 approves over HTTP with the operator's config.
    let (ok, stdout, stderr) = approve_over_api(hash, &url, &cfg, &bed.owners[0], &[]).await;
    assert!(ok, "approve --api failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("You are about to approve"), "shows what is signed: {stdout}");
    assert!(stdout.contains("signature recorded; approvals: 1 of 2"), "{stdout}");
    assert!(!stdout.contains(&key_hex(&bed.owners[0])[2..]), "key never printed");
    let detail = ms.detail(hash).expect("detail").expect("proposal");
    assert_eq!(detail.signatures.len(), 1);
    assert_eq!(detail.signatures[0].owner, bed.owners[0].address());

    // A non-owner is refused before anything is signed (the daemon lists the Safe's owners);
    // the daemon would refuse it too, with its own check.
    let stranger = bed.devnet.signer(8).expect("key");
    let (ok, stdout, stderr) = approve_over_api(hash, &url, &cfg, &stranger, &[]).await;
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("is not an owner of Safe"), "{stderr}");
    assert_eq!(ms.detail(hash).expect("detail").expect("proposal").signatures.len(), 1);

    // Owner 1 has no config file: --chain-id and --safe name what to sign for.
    let (ok, stdout, stderr) = guardian_async(
        strings(&[
            "approve",
            &hash.to_string(),
            "--api",
            &url,
            "--chain-id",
            "138",
            "--safe",
            &bed.safe.address().to_string(),
            "--yes",
            "--private-key-env",
            "OWNER_KEY",
            "--config",
            dir.path().join("absent.toml").to_str().expect("utf-8"),
        ]),
        vec![("OWNER_KEY", key_hex(&bed.owners[1]))],
    )
    .await;
    assert!(ok, "approve --api --safe failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("note: no config file"), "{stdout}");
    assert!(stdout.contains("approvals: 2 of 2"), "{stdout}");
    assert_eq!(ms.approvals(&detail.proposal).await.expect("approvals").len(), 2);
}

/// A JSON-RPC forwarder to `upstream` that, once it has forwarded an `eth_sendRawTransaction`,
/// answers every `eth_call` with the error of a node behind the block it is asked about.
async fn node_failing_calls_after_a_send(upstream: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let sent = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = crate::support::http().build().expect("client");
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |body: String| {
            let (sent, client, upstream) = (sent.clone(), client.clone(), upstream.clone());
            async move {
                let request: serde_json::Value = serde_json::from_str(&body).expect("JSON-RPC");
                let calls = match &request {
                    serde_json::Value::Array(calls) => calls.clone(),
                    one => vec![one.clone()],
                };
                let method = |call: &serde_json::Value| call["method"].as_str().map(str::to_owned);
                let failing = sent.load(std::sync::atomic::Ordering::SeqCst)
                    && calls.iter().any(|c| method(c).as_deref() == Some("eth_call"));
                let answer = if failing {
                    let errors: Vec<serde_json::Value> = calls
                        .iter()
                        .map(|c| {
                            serde_json::json!({
                                "jsonrpc": "2.0",
                                "id": c["id"],
                                "error": {"code": -32000, "message": "header not found"}
                            })
                        })
                        .collect();
                    match request {
                        serde_json::Value::Array(_) => serde_json::Value::Array(errors),
                        _ => errors.into_iter().next().expect("one"),
                    }
                    .to_string()
                } else {
                    let answer = client
                        .post(&upstream)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .expect("upstream answers");
                    answer.text().await.expect("upstream body")
                };
                if calls.iter().any(|c| method(c).as_deref() == Some("eth_sendRawTransaction")) {
                    sent.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                ([("content-type", "application/json")], answer)
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Owner 1's approveHash is mined, then the node fails the reads that count the approvals:
/// `approve --onchain` says the approval was mined (with its transaction) and why it could not
/// count, and exits 0, so nobody sends it again believing it failed. (Multi-threaded: the
/// forwarder answers while the test waits on the CLI.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_onchain_approval_that_cannot_be_counted_afterwards_is_still_reported_mined() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(&bed, dir.path());
    let cfg = config.to_str().expect("utf-8").to_owned();
    let (ok, stdout, stderr) =
        guardian(&["pause", "vault", "--reason", "drill", "--config", &cfg], &[]);
    assert!(ok, "pause failed:\n{stdout}\n{stderr}");
    let hash: B256 = safe_tx_hash(&stdout).parse().expect("hash");

    let flaky = node_failing_calls_after_a_send(bed.devnet.http_url().to_string()).await;
    write_config_at(&bed, dir.path(), &flaky);
    let owner = &bed.owners[1];
    let approve = |json: &[&'static str]| {
        let mut args = vec!["approve", "--yes", "--onchain", "--private-key-env", "OWNER_KEY"];
        args.extend_from_slice(json);
        guardian(
            &[&args[..], &[hash.to_string().as_str(), "--config", &cfg]].concat(),
            &[("OWNER_KEY", key_hex(owner))],
        )
    };
    let (ok, stdout, stderr) = approve(&[]);
    assert!(ok, "the approval was mined: exit 0\n{stdout}\n{stderr}");
    let tx = stdout
        .lines()
        .find_map(|l| l.strip_prefix("approveHash mined in tx "))
        .unwrap_or_else(|| panic!("names the transaction:\n{stdout}"));
    assert!(
        stdout.contains("the approvals could not be counted")
            && stdout.contains("header not found"),
        "says why it did not count:\n{stdout}"
    );
    let safe = SafeClient::connect(bed.devnet.reader(), bed.safe.address()).await.expect("safe");
    assert!(
        safe.is_hash_approved(owner.address(), hash).await.expect("approvedHashes"),
        "approveHash is on chain ({tx})"
    );

    // The same with --json (a fresh forwarder: the last one fails every read now): the
    // count's error beside the transaction.
    let flaky = node_failing_calls_after_a_send(bed.devnet.http_url().to_string()).await;
    write_config_at(&bed, dir.path(), &flaky);
    let (ok, stdout, stderr) = approve(&["--json"]);
    assert!(ok, "{stdout}\n{stderr}");
    let approved: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert!(approved["tx"].is_string() && approved["approvals"].is_null(), "{approved}");
    assert!(
        approved["count_error"].as_str().is_some_and(|e| e.contains("header not found")),
        "{approved}"
    );
}

/// A stand-in daemon answering every request with `body`; returns its URL and the request
/// lines it received.
async fn lying_daemon(body: String) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = vec![0; 64 * 1024];
            let n = socket.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            log.lock().expect("lock").push(request.lines().next().unwrap_or("").to_owned());
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    (url, seen)
}

#[tokio::test]
async fn approve_over_the_api_refuses_what_does_not_hash_locally() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(&bed, dir.path());
    let cfg = config.to_str().expect("utf-8").to_owned();
    let (ms, url, _stop) = served_api(&bed, dir.path()).await;
    let hash = propose_pause(&ms).await;
    let approve =
        |url: &str, extra: &[&str]| approve_over_api(hash, url, &cfg, &bed.owners[0], extra);

    // The real daemon, but the operator signs for another Safe: the hash differs, nothing is sent.
    let other_safe = bed.targets.vault_v1.to_string();
    let (ok, stdout, stderr) = approve(&url, &["--safe", &other_safe]).await;
    assert!(!ok && stderr.contains("refusing to sign"), "{stdout}\n{stderr}");
    assert!(!stdout.contains("You are about to approve"), "{stdout}");
    let detail = ms.detail(hash).expect("detail").expect("proposal");
    assert!(detail.signatures.is_empty());
    let events: Vec<&str> = detail.events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(events, ["proposed"], "nothing was posted");

    // A lying daemon: the requested hash, but the calldata is unpause(). It does not hash to
    // the requested hash, so nothing is signed or posted.
    let honest = serde_json::to_value(&detail).expect("json");
    let mut tampered = honest.clone();
    tampered["calldata"] = serde_json::json!(
        guardian_core::proposal::no_arg_calldata("unpause()").expect("calldata").to_string()
    );
    let (liar, seen) = lying_daemon(tampered.to_string()).await;
    let (ok, stdout, stderr) = approve(&liar, &[]).await;
    assert!(!ok && stderr.contains("does not hash to itself"), "{stdout}\n{stderr}");
    let requests = seen.lock().expect("lock").clone();
    assert_eq!(requests, [format!("GET /proposals/{hash} HTTP/1.1")], "no POST");

    // The label the hash does not cover: pause() calldata shown as "unpause". Refused against
    // the operator's config.
    let mut relabelled = honest.clone();
    relabelled["kind"] = serde_json::json!("unpause");
    let (liar, seen) = lying_daemon(relabelled.to_string()).await;
    let (ok, stdout, stderr) = approve(&liar, &[]).await;
    assert!(!ok && stderr.contains("refusing to sign"), "{stdout}\n{stderr}");
    assert!(stderr.contains("labelled unpause()"), "{stderr}");
    assert!(seen.lock().expect("lock").iter().all(|r| r.starts_with("GET ")), "no POST");

    // The honest answer from the same stand-in is signed: the refusals above were the checks.
    let (liar, seen) = lying_daemon(honest.to_string()).await;
    let (_, stdout, _) = approve(&liar, &[]).await;
    assert!(stdout.contains("You are about to approve"), "{stdout}");
    assert!(seen.lock().expect("lock").iter().any(|r| r.starts_with("POST ")));
}

/// `[api] token_env`: every write needs the token (compared in constant time), reads do not;
/// an unpause needs `allow_unpause`; a body over 64 KiB is 413, declared or chunked; text that
/// is not hex is refused as such; 150 junk posts are one or two counted rows in the trail, not
/// 150; and the CLI's `--api` commands send the token.
#[tokio::test]
async fn api_writes_need_the_token_bodies_are_bounded_and_junk_is_counted_not_stored() {
    const TOKEN: &str = "api-T0KEN-for-the-test";
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(&bed, dir.path());
    let cfg = config.to_str().expect("utf-8").to_owned();
    let access =
        api::ApiAccess { token: Some(guardian_config::Secret::new(TOKEN)), allow_unpause: false };
    let (ms, base, _stop) = served_api_with(&bed, dir.path(), access).await;
    let http = crate::support::http().build().expect("HTTP client");
    let pause = serde_json::json!({"contract": "vault", "action": "pause", "reason": "api drill"});
    let post = |path: &str, token: Option<&str>, body: serde_json::Value| {
        let mut request = http.post(format!("{base}{path}")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let answer = request.send().await.expect("post");
            let status = answer.status().as_u16();
            let www = answer.headers().get("www-authenticate").is_some();
            (status, www, answer.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };

    // Without the token, or with one that differs in its last character: 401, nothing done.
    let (status, www, body) = post("/proposals", None, pause.clone()).await;
    assert_eq!((status, www), (401, true), "{body}");
    assert!(body["error"].as_str().expect("msg").contains("Bearer"), "{body}");
    let near = format!("{}X", &TOKEN[..TOKEN.len() - 1]);
    assert_eq!(post("/proposals", Some(&near), pause.clone()).await.0, 401);
    assert!(ms.store().proposals(None).expect("list").is_empty(), "nothing was proposed");
    // Reads need no token.
    let list = http.get(format!("{base}/proposals")).send().await.expect("get");
    assert_eq!(list.status(), 200);

    let (status, _, created) = post("/proposals", Some(TOKEN), pause.clone()).await;
    assert_eq!(status, 201, "{created}");
    let hash: B256 =
        created["proposal"]["safe_tx_hash"].as_str().expect("hash").parse().expect("b256");
    let unpause =
        serde_json::json!({"contract": "vault", "action": "unpause", "reason": "api drill"});
    let (status, _, body) = post("/proposals", Some(TOKEN), unpause).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().expect("msg").contains("allow_unpause"), "{body}");

    // Over 64 KiB: 413 whether the length is declared or the body is chunked.
    let big =
        serde_json::json!({"contract": "vault", "action": "pause", "reason": "x".repeat(70_000)});
    assert_eq!(post("/proposals", Some(TOKEN), big.clone()).await.0, 413);
    let chunked = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket =
            tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.expect("tcp");
        let body = big.to_string();
        let request = format!(
            "POST /proposals HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        );
        let _ = socket.write_all(request.as_bytes()).await;
        let mut answer = Vec::new();
        let _ = socket.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned()
    };
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");

    // Not hex is said so.
    let sigs = format!("/proposals/{hash}/signatures");
    let owner = bed.owners[0].address();
    let (status, _, body) = post(
        &sigs,
        Some(TOKEN),
        serde_json::json!({"signer": owner, "signature": "this is not hex"}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().expect("msg").contains("is not hex"), "{body}");

    // 150 junk posts, 10 at a time (the issue saw 300 make 301 rows; each post costs a
    // database commit, so fewer keep the test short and prove the same): signatures of nobody, under made-up signers.
    let mut posts = tokio::task::JoinSet::new();
    for i in 0..150u32 {
        let seed = alloy::primitives::keccak256(i.to_be_bytes());
        let mut junk = [seed.0, alloy::primitives::keccak256(seed).0].concat();
        junk.push(27);
        let signer = Address::from_slice(&seed[..20]);
        let body =
            serde_json::json!({"signer": signer, "signature": alloy::hex::encode_prefixed(&junk)});
        let request = http.post(format!("{base}{sigs}")).bearer_auth(TOKEN).json(&body);
        posts.spawn(async move { request.send().await.expect("post").status().as_u16() });
        if posts.len() >= 10 {
            assert_eq!(posts.join_next().await.expect("a post").expect("task"), 422);
        }
    }
    while let Some(status) = posts.join_next().await {
        assert_eq!(status.expect("task"), 422);
    }
    let events = ms.store().proposal_events(hash).expect("events");
    let rejections: Vec<_> = events.iter().filter(|e| e.event == "rejection").collect();
    assert!(
        (1..=3).contains(&rejections.len()),
        "151 rejections are aggregated per source and reason: {rejections:#?}"
    );
    assert_eq!(rejections.iter().map(|e| e.count).sum::<u64>(), 151);
    let not_hex = rejections
        .iter()
        .find(|e| e.actor.as_deref() == Some(&owner.to_string()))
        .expect("the not-hex post, by an owner");
    assert_eq!(not_hex.count, 1);
    let junk: u64 = rejections
        .iter()
        .filter(|e| e.actor.as_deref() == Some("not an owner"))
        .map(|e| e.count)
        .sum();
    assert_eq!(junk, 150, "made-up signers share a source: {rejections:#?}");

    // The CLI sends the token: without one the daemon refuses the approval, with
    // $GUARDIAN_API_TOKEN or --api-token-env it takes it. Reads work without.
    let (ok, stdout, stderr) =
        guardian_async(strings(&["proposals", "list", "--api", &base, "--json"]), vec![]).await;
    assert!(ok && stdout.contains(&hash.to_string()), "{stderr}");
    let (ok, _, stderr) = approve_over_api(hash, &base, &cfg, &bed.owners[0], &[]).await;
    assert!(!ok && stderr.contains("HTTP 401"), "{stderr}");
    let (ok, stdout, stderr) = guardian_async(
        strings(&[
            "approve",
            &hash.to_string(),
            "--api",
            &base,
            "--yes",
            "--private-key-env",
            "OWNER_KEY",
            "--config",
            &cfg,
        ]),
        vec![("OWNER_KEY", key_hex(&bed.owners[0])), ("GUARDIAN_API_TOKEN", TOKEN.to_owned())],
    )
    .await;
    assert!(ok && stdout.contains("approvals: 1 of 2"), "{stdout}\n{stderr}");
    let (ok, stdout, stderr) = guardian_async(
        strings(&[
            "approve",
            &hash.to_string(),
            "--api",
            &base,
            "--yes",
            "--private-key-env",
            "OWNER_KEY",
            "--api-token-env",
            "MY_API_TOKEN",
            "--config",
            &cfg,
        ]),
        vec![("OWNER_KEY", key_hex(&bed.owners[1])), ("MY_API_TOKEN", TOKEN.to_owned())],
    )
    .await;
    assert!(ok && stdout.contains("approvals: 2 of 2"), "{stdout}\n{stderr}");
}

/// `approve` says no before it asks anything: a key that does not own the Safe is refused
/// before the keystore's password is asked (the keystore names its address) or, when it does
/// not, before the confirmation; a proposal that is not pending is refused before the key is
/// even read. The proposal (approvals of the threshold, simulation time) is shown before the
/// password is asked. Refusals exit 3, failures 1.
#[tokio::test]
async fn approve_refuses_before_asking_and_shows_the_proposal_before_the_password() {
    let bed = testbed().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(&bed, dir.path());
    let cfg = config.to_str().expect("utf-8").to_owned();
    let (ok, stdout, stderr) =
        guardian(&["pause", "vault", "--reason", "drill", "--config", &cfg], &[]);
    assert!(ok, "{stdout}\n{stderr}");
    let hash = safe_tx_hash(&stdout);
    let stranger = bed.devnet.signer(8).expect("key");
    let keystore = |key: &PrivateKeySigner, name: &str, with_address: bool| {
        let mut rng = rand::thread_rng();
        PrivateKeySigner::encrypt_keystore(dir.path(), &mut rng, key.to_bytes(), "pw", Some(name))
            .expect("keystore");
        let path = dir.path().join(name);
        if with_address {
            // As `cast wallet new` and geth write it.
            let mut json: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
            json["address"] = format!("{:x}", key.address()).trim_start_matches("0x").into();
            std::fs::write(&path, json.to_string()).expect("write");
        }
        path.to_str().expect("utf-8").to_owned()
    };

    // A stranger's keystore naming its address: refused before any password is asked (there is
    // no terminal here, so asking would fail with another error), exit 3.
    let named = keystore(&stranger, "stranger", true);
    let (code, stdout, stderr) =
        guardian_code(&["approve", &hash, "--keystore", &named, "--config", &cfg], &[]);
    assert_eq!(code, Some(3), "{stdout}\n{stderr}");
    assert!(stderr.contains("is not an owner"), "{stderr}");
    assert!(!stdout.contains("Approve?"), "{stdout}");

    // A keystore without its address: the proposal is shown, then the password asked (here it
    // cannot be: no terminal), never the other way round.
    let unnamed = keystore(&bed.owners[0], "owner0", false);
    let (code, stdout, stderr) =
        guardian_code(&["approve", &hash, "--keystore", &unnamed, "--config", &cfg], &[]);
    assert_eq!(code, Some(1), "no terminal for the password: {stdout}\n{stderr}");
    assert!(stdout.contains(&format!("safeTxHash  {hash}")), "shown first: {stdout}");
    assert!(stdout.contains("approvals   0 of 2"), "{stdout}");
    assert!(stdout.contains("simulation  ok") && stdout.contains("when proposed"), "{stdout}");
    assert!(stdout.contains("an operator's pause, no finding"), "{stdout}");
    // With the password, a stranger's address-less keystore is refused after decrypting and
    // before the question.
    let stranger_unnamed = keystore(&stranger, "stranger2", false);
    let (code, stdout, stderr) = guardian_code(
        &["approve", &hash, "--keystore", &stranger_unnamed, "--config", &cfg],
        &[("GUARDIAN_KEYSTORE_PASSWORD", "pw".to_owned())],
    );
    assert_eq!(code, Some(3), "{stdout}\n{stderr}");
    assert!(stderr.contains("is not an owner") && !stdout.contains("Approve?"), "{stdout}");

    // Declining the question (end of input) is a refusal too; nothing is recorded.
    let (code, stdout, stderr) = guardian_code(
        &["approve", &hash, "--private-key-env", "OWNER_KEY", "--config", &cfg],
        &[("OWNER_KEY", key_hex(&bed.owners[0]))],
    );
    assert_eq!(code, Some(3), "{stdout}\n{stderr}");
    assert!(stdout.contains("Approve?") && stdout.contains("yours makes 1"), "{stdout}");

    // --json: the outcome only.
    let (code, stdout, stderr) = guardian_code(
        &["approve", &hash, "--yes", "--json", "--private-key-env", "OWNER_KEY", "--config", &cfg],
        &[("OWNER_KEY", key_hex(&bed.owners[0]))],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let outcome: serde_json::Value = serde_json::from_str(&stdout).expect("only JSON on stdout");
    assert_eq!((outcome["added"].as_bool(), outcome["approvals"].as_u64()), (Some(true), Some(1)));
    assert_eq!(outcome["threshold"], 2);

    // `proposals show` carries approvals and threshold, in text and JSON.
    let (ok, stdout, _) = guardian(&["proposals", "show", &hash, "--json", "--config", &cfg], &[]);
    let shown: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert!(ok && shown["approvals"] == 1 && shown["threshold"] == 2, "{shown}");

    // Withdrawn by cancelling the incident: refused before the key is read (the variable is
    // not even set), exit 3, naming why.
    let incident = shown["incident"]["id"].as_i64().expect("the pause's incident");
    let (ok, _, stderr) = guardian(
        &[
            "incidents",
            "cancel",
            &incident.to_string(),
            "--reason",
            "false alarm",
            "--config",
            &cfg,
        ],
        &[],
    );
    assert!(ok, "{stderr}");
    let (code, stdout, stderr) = guardian_code(
        &["approve", &hash, "--yes", "--private-key-env", "UNSET_KEY", "--config", &cfg],
        &[],
    );
    assert_eq!(code, Some(3), "{stdout}\n{stderr}");
    assert!(stderr.contains("refusing to approve") && stderr.contains("withdrawn"), "{stderr}");
}
