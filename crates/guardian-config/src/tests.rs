use std::path::Path;

use guardian_core::{
    finding::{BlockInput, StateQuery, StateValue},
    severity::Action,
};

use super::*;

const WEBHOOK: &str = "https://hooks.example/services/T0KEN";

fn env(name: &str) -> Option<String> {
    match name {
        "GUARDIAN_WEBHOOK_URL" => Some(WEBHOOK.to_owned()),
        "RPC_URL" => Some("https://rpc.example/v1/S3CRET?key=S3CRET".to_owned()),
        "RPC_TOKEN" => Some("T0KEN2".to_owned()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("conf/test.toml"), &env)
}

/// The error's `file:line:column: message`, and where in `text` it points.
fn error(text: &str) -> (String, String) {
    let e = parse(text).expect_err("config must be refused");
    let line = text.lines().nth(e.line - 1).unwrap_or_default();
    let pointed: String = line.chars().skip(e.column - 1).collect();
    (e.to_string(), pointed)
}

const BASE: &str = r#"
[[rpc]]
url = "http://127.0.0.1:8545"

[[contracts]]
name = "vault"
address = "0x1000000000000000000000000000000000000001"
events = ["Withdrawn(address indexed account, address indexed to, uint256 amount)"]
"#;

fn with_rule(rule: &str) -> String {
    format!("{BASE}\n[[rules]]\n{rule}\n")
}

#[test]
fn committed_templates_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("config/ exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).expect("readable");
            let config = Config::parse(&text, &path, &env).unwrap_or_else(|e| panic!("{e}"));
            let engine = config.rule_engine().expect("engine builds");
            assert!(engine.rules().count() > 0, "{} has rules", path.display());
            assert_eq!(config.chain.id, 138);
            seen += 1;
        }
    }
    assert!(seen >= 2, "guardian.toml and minimal.toml at least");
}

#[test]
fn the_template_says_what_the_operators_matrix_says() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/guardian.toml");
    let config =
        Config::parse(&std::fs::read_to_string(&path).expect("read"), &path, &env).expect("valid");
    assert_eq!(config.policy, SeverityPolicy::default());
    assert_eq!(config.response, guardian_core::incident::ResponsePolicy::default());
    assert_eq!(config.chain.confirmations, 0);
    assert_eq!(config.rpc[0].transport, Transport::Ws);
    assert_eq!(config.api.bind.to_string(), "127.0.0.1:8787");
    assert_eq!(config.webhook.as_ref().map(|w| w.url.expose()), Some(WEBHOOK));
    assert_eq!(
        config.safe.as_ref().and_then(|s| s.executor_key_env.as_deref()),
        Some("GUARDIAN_EXECUTOR_KEY")
    );
    let vault = &config.contracts[0];
    assert_eq!(vault.pause_calldata.as_ref(), [0x84, 0x56, 0xcb, 0x59]);
    let engine = config.rule_engine().expect("engine");
    let revert = engine.rules().find(|r| r.kind == "revert_rate").expect("revert rule");
    assert_eq!(revert.severity, Severity::Critical);
    // Critical pauses the vault at once then rolls back; the factory's high findings only alert.
    assert_eq!(revert.targets, [("vault", Action::PauseNow { then_rollback: true })]);
    let stranger = engine.rules().find(|r| r.name == "paused-by-stranger").expect("rule");
    assert_eq!(
        stranger.targets,
        [("vault", Action::ProposePause { then_rollback: true }), ("factory", Action::Alert)]
    );
    let summary = config.summary();
    assert!(summary.contains("vault-revert-rate [revert_rate, critical]"), "{summary}");
    assert!(!summary.contains("T0KEN"), "{summary}");
}

#[test]
fn a_typo_in_a_key_names_the_place() {
    let text = BASE.replace("address = ", "adress = ");
    let (message, at) = error(&text);
    assert!(message.starts_with("conf/test.toml:7:1: unknown field `adress`"), "{message}");
    assert!(message.contains("expected one of"), "{message}");
    assert!(at.starts_with("adress"), "{at}");

    let (message, at) = error(&format!("{BASE}\n[chian]\nid = 138\n"));
    assert!(message.contains("unknown field `chian`"), "{message}");
    assert!(at.starts_with("chian"), "{at}");
}

#[test]
fn a_bad_address_names_the_place() {
    let (message, at) = error(
        &BASE.replace("0x1000000000000000000000000000000000000001", "0x10000000000000000001"),
    );
    assert!(message.starts_with("conf/test.toml:7:11: expected an address"), "{message}");
    assert!(at.starts_with("\"0x1000"), "{at}");
    // Mixed case is an EIP-55 checksum: a valid one passes, a typo in one is refused.
    let checksummed = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
    let at = |address: &str| BASE.replace("0x1000000000000000000000000000000000000001", address);
    assert!(parse(&at(checksummed)).is_ok());
    assert!(parse(&at(&checksummed.to_lowercase())).is_ok());
    let (message, _) = error(&at(&checksummed.replace("aA", "aa")));
    assert!(message.contains("bad EIP-55 checksum"), "{message}");
}

#[test]
fn a_wrong_type_names_the_place() {
    let text = format!("{BASE}\n[chain]\nid = \"138\"\n");
    let (message, at) = error(&text);
    assert!(
        message.starts_with("conf/test.toml:11:6: invalid type: string \"138\", expected u64"),
        "{message}"
    );
    assert!(at.starts_with("\"138\""), "{at}");

    let (message, at) = error(&with_rule(
        "name = \"w\"\nkind = \"window\"\nseverity = \"high\"\ncontracts = [\"vault\"]\nevent = \"Withdrawn\"\nblocks = \"20\"\nthreshold = 3",
    ));
    assert!(message.contains("invalid type: string \"20\", expected u64"), "{message}");
    assert!(at.starts_with("\"20\""), "{at}");
}

#[test]
fn a_missing_field_names_the_table() {
    let text = BASE.replace("address = \"0x1000000000000000000000000000000000000001\"\n", "");
    let (message, _) = error(&text);
    assert!(message.contains("missing field `address`"), "{message}");
    assert!(
        message.starts_with("conf/test.toml:5:") || message.starts_with("conf/test.toml:6:"),
        "{message}"
    );

    let (message, _) = error(
        "[[contracts]]\nname = \"v\"\naddress = \"0x1000000000000000000000000000000000000001\"\n",
    );
    assert!(message.contains("missing field `rpc`"), "{message}");

    let (message, at) = error(&with_rule(
        "name = \"w\"\nkind = \"window\"\nseverity = \"high\"\ncontracts = [\"vault\"]\nevent = \"Withdrawn\"\nthreshold = 3",
    ));
    assert!(message.contains("a window rule needs `blocks`"), "{message}");
    assert!(at.is_empty() || at.starts_with("name") || at.starts_with("[[rules]]"), "{at:?}");
}

#[test]
fn an_unknown_contract_in_a_rule_names_the_element() {
    let (message, at) = error(&with_rule(
        "name = \"r\"\nkind = \"event\"\nseverity = \"high\"\ncontracts = [\"vault\", \"treasury\"]\nevent = \"Withdrawn(address indexed account, address indexed to, uint256 amount)\"",
    ));
    assert!(
        message.contains("rule \"r\": unknown contract \"treasury\" (watched: vault)"),
        "{message}"
    );
    assert!(message.starts_with("conf/test.toml:14:23:"), "{message}");
    assert!(at.starts_with("\"treasury\""), "{at}");
}

#[test]
fn semantic_errors_point_at_their_key() {
    let rule = |extra: &str| {
        with_rule(&format!(
            "name = \"r\"\nkind = \"event\"\nseverity = \"high\"\ncontracts = [\"vault\"]\n{extra}"
        ))
    };
    let cases = [
        (
            "event = \"Withdrawn\"\nwhere = [\"amount > 1 ether\", \"amout > 2\"]",
            "\"amout > 2\"",
            "no field \"amout\"",
        ),
        (
            "event = \"Withdrawal\"",
            "\"Withdrawal\"",
            "declares no event \"Withdrawal\" (it declares: Withdrawn)",
        ),
        ("event = \"Withdrawn(address indexed\"", "\"Withdrawn(", "cannot parse event signature"),
        ("event = \"Withdrawn\"\ndrop = \"5%\"", "\"5%\"", "`drop` does not apply to event rules"),
        (
            "event = \"Withdrawn\"\nwhere = [\"to > vault\"]",
            "\"to > vault\"",
            "only == and != apply",
        ),
    ];
    for (extra, pointed, expected) in cases {
        let (message, at) = error(&rule(extra));
        assert!(message.contains(expected), "{extra}: {message}");
        assert!(at.starts_with(pointed), "{extra}: points at {at:?}");
    }
    let (message, at) = error(
        &rule("event = \"Withdrawn\"").replace("severity = \"high\"", "severity = \"severe\""),
    );
    assert!(message.contains("unknown severity"), "{message}");
    assert!(at.starts_with("\"severe\""), "{at}");
    let (message, at) =
        error(&rule("event = \"Withdrawn\"").replace("kind = \"event\"", "kind = \"events\""));
    assert!(message.contains("unknown rule kind \"events\""), "{message}");
    assert!(at.starts_with("\"events\""), "{at}");
    let dup = format!(
        "{}\n[[rules]]\nname = \"r\"\nkind = \"event\"\nseverity = \"low\"\ncontracts = [\"vault\"]\nevent = \"Withdrawn\"\n",
        rule("event = \"Withdrawn\"")
    );
    let (message, at) = error(&dup);
    assert!(message.contains("two rules have this name"), "{message}");
    assert!(message.starts_with("conf/test.toml:18:"), "the second one: {message}");
    assert!(at.starts_with("\"r\""), "{at}");
}

#[test]
fn secrets_come_from_the_environment_and_never_print() {
    let text = format!(
        "{BASE}\n[[rpc]]\nurl_env = \"RPC_URL\"\nbearer_env = \"RPC_TOKEN\"\n\n[webhook]\nurl_env = \"GUARDIAN_WEBHOOK_URL\"\n"
    );
    let config = parse(&text).expect("valid");
    assert_eq!(config.rpc[1].display, "https://rpc.example/*** (from $RPC_URL)");
    assert_eq!(config.rpc[1].bearer.as_ref().map(Secret::expose), Some("T0KEN2"));
    let dump = format!("{config:?}\n{}", config.summary());
    for secret in ["S3CRET", "T0KEN"] {
        assert!(!dump.contains(secret), "{secret} leaked:\n{dump}");
    }

    let (message, at) =
        error(&text.replace("url_env = \"RPC_URL\"", "url_env = \"RPC_URL_UNSET\""));
    assert!(
        message.contains("environment variable RPC_URL_UNSET (named by rpc.url_env) is not set"),
        "{message}"
    );
    assert!(at.starts_with("\"RPC_URL_UNSET\""), "{at}");

    let (message, at) = error(&format!("{BASE}\n[webhook]\nurl = \"{WEBHOOK}\"\n"));
    assert!(message.contains("put the URL in an environment variable"), "{message}");
    assert!(!message.contains("T0KEN"), "{message}");
    assert!(at.starts_with('"'), "{at}");

    let (message, _) = error(&BASE.replace("http://127.0.0.1:8545", "ftp://example"));
    assert!(message.contains("expected an http://, https://, ws:// or wss:// URL"), "{message}");
}

#[test]
fn the_config_builds_the_engine_the_daemon_runs() {
    let text = format!(
        "{}\n[[rules]]\nname = \"balance\"\nkind = \"balance_drop\"\nseverity = \"medium\"\ncontracts = [\"vault\"]\ndrop = \"50%\"\nblocks = 2\n",
        with_rule("name = \"big\"\nkind = \"event\"\nseverity = \"critical\"\ncontracts = [\"vault\"]\nevent = \"Withdrawn\"\nwhere = [\"amount >= 1 gwei\"]")
    )
    .replace("events = [", "on_pause = \"rollback\"\nevents = [")
        + "\n[rollback]\n[[rollback.configs]]\nname = \"accounts\"\npath = \"accounts.json\"\n\n[rollback.contracts.vault]\nkeys = [{ config = \"accounts\", pointer = \"/vault\" }]\n";
    let config = parse(&text).expect("valid");
    assert_eq!(config.storage.path, Path::new("conf/guardian.sqlite"));
    let mut engine = config.rule_engine().expect("engine");
    let vault = config.contracts[0].address;
    let query = StateQuery::NativeBalance(vault);
    assert!(engine.queries().contains(&query));
    let mut block = BlockInput { number: 1, ..BlockInput::default() };
    block.state.insert(query.clone(), StateValue::Uint(alloy_primitives::U256::from(100)));
    assert!(engine.evaluate(&block).is_empty());
    block.number = 2;
    block.state.insert(query, StateValue::Uint(alloy_primitives::U256::from(49)));
    let findings = engine.evaluate(&block);
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].action, Action::Alert, "medium alerts, rollback only changes pauses");
}

#[test]
fn the_rollback_table_is_checked_with_the_rest() {
    let config = parse(&format!(
        "{BASE}\n[rollback]\nbackup_dir = \"b\"\n[[rollback.configs]]\nname = \"c\"\npath = \"c.json\"\n"
    ))
    .expect("valid");
    assert_eq!(config.rollback.expect("rollback").configs.len(), 1);

    let err = parse(&format!("{BASE}\n[rollback]\nbackup_dri = \"b\"\n")).expect_err("typo");
    let msg = err.to_string();
    assert!(msg.contains("backup_dri"), "{msg}");
    assert!(msg.contains(&format!(":{}:", BASE.lines().count() + 3)), "names the line: {msg}");
}

#[test]
fn abi_files_declare_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let abi = r#"{"abi": [{"type": "event", "name": "Paused", "anonymous": false,
        "inputs": [{"name": "account", "type": "address", "indexed": false}]}]}"#;
    std::fs::write(dir.path().join("Vault.json"), abi).expect("write");
    let text = with_rule("name = \"p\"\nkind = \"event\"\nseverity = \"high\"\ncontracts = [\"vault\"]\nevent = \"Paused\"")
        .replace("events = [", "abi = \"Vault.json\"\nevents = [");
    let path = dir.path().join("guardian.toml");
    let config = Config::parse(&text, &path, &env).expect("valid");
    assert!(
        config.contracts[0].events.iter().any(|e| e.starts_with("event Paused(address account)"))
    );
    let (message, at) = {
        let e = Config::parse(&text.replace("Vault.json", "Missing.json"), &path, &env)
            .expect_err("missing file");
        (e.to_string(), e.line)
    };
    assert!(message.contains("cannot read ABI file"), "{message}");
    assert_eq!(at, 8, "the abi key");
}

#[test]
fn response_deadlines_are_durations_with_the_matrix_as_default() {
    let config = parse(&format!("{BASE}\n[response]\nhigh = \"5s\"\nescalate_every = \"2s\"\n"))
        .expect("valid");
    let default = guardian_core::incident::ResponsePolicy::default();
    assert_eq!((config.response.high, config.response.escalate_every), (5_000, 2_000));
    assert_eq!((config.response.critical, config.response.low), (default.critical, default.low));
    assert_eq!(parse(BASE).expect("valid").response, default);

    let (message, pointed) = error(&format!("{BASE}\n[response]\nmedium = \"soon\"\n"));
    assert!(message.contains("medium: expected a duration"), "{message}");
    assert!(pointed.starts_with("\"soon\""), "{pointed}");
    let (message, _) = error(&format!("{BASE}\n[response]\nescalate_every = \"0s\"\n"));
    assert!(message.contains("escalate_every must be above 0"), "{message}");
    let (message, _) = error(&format!("{BASE}\n[response]\nhigh = \"-5m\"\n"));
    assert!(message.contains("cannot be negative"), "{message}");
}

#[test]
fn webhook_retries_are_unlimited_and_the_old_key_says_so() {
    let hook = "\n[webhook]\nurl_env = \"GUARDIAN_WEBHOOK_URL\"\n";
    let config = parse(&format!("{BASE}{hook}max_backoff_ms = 5000\n")).expect("valid");
    let webhook = config.webhook.expect("webhook");
    assert_eq!(webhook.max_backoff, std::time::Duration::from_secs(5));
    let (message, pointed) = error(&format!("{BASE}{hook}retries = 5\n"));
    assert!(message.contains("retried until it is delivered"), "{message}");
    assert!(pointed.starts_with('5'), "{pointed}");
    let (message, _) = error(&format!("{BASE}{hook}max_backoff_ms = 0\n"));
    assert!(message.contains("max_backoff_ms must be above 0"), "{message}");
}

#[test]
fn commands_need_only_the_secrets_they_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("guardian.toml");
    let text = "[[rpc]]\nurl_env = \"GUARDIAN_TEST_UNSET_RPC\"\n\n[[contracts]]\nname = \"vault\"\n\
                address = \"0x1000000000000000000000000000000000000001\"\n\n\
                [webhook]\nurl_env = \"GUARDIAN_TEST_UNSET_HOOK\"\n";
    std::fs::write(&path, text).expect("write");
    let err = Config::load(&path).expect_err("the daemon needs every secret");
    assert!(err.to_string().contains("GUARDIAN_TEST_UNSET_RPC"), "{err}");
    let err = Config::load_needing(&path, Secrets::Rpc).expect_err("the chain needs its URL");
    assert!(err.to_string().contains("GUARDIAN_TEST_UNSET_RPC"), "{err}");
    let offline = Config::load_needing(&path, Secrets::None).expect("a database view needs none");
    let placeholder = offline.webhook.expect("webhook").url.expose().to_owned();
    assert!(placeholder.ends_with(".unset.invalid/"), "{placeholder}");
}

fn notify_env(name: &str) -> Option<String> {
    match name {
        "SLACK_URL" => Some("https://hooks.slack.example/services/T0KEN".to_owned()),
        "TG_URL" => Some("https://api.telegram.example/bot123:S3CRET/sendMessage".to_owned()),
        "PD_KEY" => Some("R0UTING".to_owned()),
        "HOOK_SECRET" => Some("s3cret".to_owned()),
        other => env(other),
    }
}

#[test]
fn notification_channels_load_with_their_secrets_from_the_environment() {
    let text = format!(
        r#"{BASE}
[webhook]
url_env = "GUARDIAN_WEBHOOK_URL"

[[notify]]
kind = "slack"
url_env = "SLACK_URL"
min_severity = "high"

[[notify]]
kind = "telegram"
url_env = "TG_URL"
chat_id = -100123

[[notify]]
kind = "pagerduty"
routing_key_env = "PD_KEY"
min_severity = "critical"

[[notify]]
kind = "webhook"
name = "signed"
url_env = "SLACK_URL"
secret_env = "HOOK_SECRET"
"#
    );
    let config = Config::parse(&text, Path::new("conf/test.toml"), &notify_env).expect("valid");
    let names: Vec<&str> = config.notify.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["webhook", "slack", "telegram", "pagerduty", "signed"]);
    assert_eq!(config.notify[1].min_severity, Severity::High);
    assert_eq!(config.notify[2].kind, ChannelKind::Telegram { chat_id: "-100123".into() });
    assert_eq!(config.notify[3].url.expose(), PAGERDUTY_EVENTS_URL, "PagerDuty's own endpoint");
    assert!(
        matches!(&config.notify[3].kind, ChannelKind::PagerDuty { routing_key } if routing_key.expose() == "R0UTING")
    );
    assert!(
        matches!(&config.notify[4].kind, ChannelKind::Webhook { secret: Some(s) } if s.expose() == "s3cret")
    );
    let summary = config.summary();
    assert!(!summary.contains("S3CRET") && !summary.contains("R0UTING"), "{summary}");
}

#[test]
fn notification_channels_refuse_what_does_not_fit_them() {
    let cases = [
        ("kind = \"sms\"\nurl_env = \"SLACK_URL\"", "unknown notification kind"),
        ("kind = \"slack\"\nurl = \"https://x\"", "carry tokens"),
        ("kind = \"telegram\"\nurl_env = \"TG_URL\"", "needs `chat_id`"),
        ("kind = \"pagerduty\"", "needs `routing_key_env`"),
        (
            "kind = \"slack\"\nurl_env = \"SLACK_URL\"\nsecret_env = \"HOOK_SECRET\"",
            "`secret_env` does not apply",
        ),
        ("kind = \"slack\"\nurl_env = \"SLACK_URL\"\nmin_severity = \"urgent\"", "urgent"),
        ("kind = \"slack\"\nurl_env = \"NOT_SET\"", "NOT_SET"),
    ];
    for (channel, expected) in cases {
        let text = format!("{BASE}\n[[notify]]\n{channel}\n");
        let e = Config::parse(&text, Path::new("conf/test.toml"), &notify_env)
            .expect_err(channel)
            .to_string();
        assert!(e.contains(expected), "{channel}: {e}");
    }
    let twice = format!(
        "{BASE}\n[[notify]]\nkind = \"slack\"\nurl_env = \"SLACK_URL\"\n\n[[notify]]\nkind = \"slack\"\nurl_env = \"SLACK_URL\"\n"
    );
    let e = Config::parse(&twice, Path::new("conf/test.toml"), &notify_env).expect_err("twice");
    assert!(e.to_string().contains("distinct `name`"), "{e}");
}

#[test]
fn ready_metrics_and_retention_have_defaults_and_take_overrides() {
    let config = parse(BASE).expect("valid");
    assert_eq!(config.ready, ReadyConfig::default());
    assert_eq!(config.ready.stall_after(), Duration::from_secs(30));
    assert_eq!(config.metrics.bind, None);
    assert_eq!(config.storage.keep_occurrences, Some(Duration::from_secs(30 * 86_400)));
    let text = format!(
        r#"{BASE}
[storage]
keep_occurrences = "0"

[metrics]
bind = "127.0.0.1:9187"

[ready]
block_time = "1s"
stall_blocks = 5
notifications_failing = "90s"
execution_gas = 150000
check_every = "500ms"
"#
    );
    let config = parse(&text).expect("valid");
    assert_eq!(config.storage.keep_occurrences, None, "0 keeps them forever");
    assert_eq!(config.storage.path, Path::new("conf/guardian.sqlite"));
    assert_eq!(config.metrics.bind, Some("127.0.0.1:9187".parse().expect("addr")));
    assert_eq!(config.ready.stall_after(), Duration::from_secs(5));
    assert_eq!(config.ready.notifications_failing, Duration::from_secs(90));
    assert_eq!(config.ready.execution_gas, 150_000);
    assert_eq!(config.ready.check_every, Duration::from_millis(500));
    for (table, expected) in [
        ("[ready]\nblock_time = \"soon\"", "block_time"),
        ("[ready]\nstall_blocks = 0", "stall_blocks must be above 0"),
        ("[storage]\nkeep_occurrences = \"a month\"", "keep_occurrences"),
        ("[metrics]\nbind = \"everywhere\"", "ip:port"),
    ] {
        let e = parse(&format!("{BASE}\n{table}\n")).expect_err(table).to_string();
        assert!(e.contains(expected), "{table}: {e}");
    }
}

#[test]
fn start_block_is_a_number_or_the_head() {
    let default = parse(BASE).expect("valid");
    assert_eq!(default.chain.start_block, StartBlock::Head);
    assert_eq!(default.chain.poll_interval, std::time::Duration::from_millis(250));
    for (value, expected) in [
        ("0", StartBlock::Number(0)),
        ("1234", StartBlock::Number(1234)),
        ("\"head\"", StartBlock::Head),
    ] {
        let config = parse(&format!("[chain]\nstart_block = {value}\n{BASE}")).expect("valid");
        assert_eq!(config.chain.start_block, expected, "start_block = {value}");
    }
    let (message, pointed) = error(&format!("[chain]\nstart_block = \"genesis\"\n{BASE}"));
    assert!(message.contains("start_block must be a block number or \"head\""), "{message}");
    assert!(pointed.starts_with("\"genesis\""), "{pointed}");
    let (message, _) = error(&format!("[chain]\nstart_block = -1\n{BASE}"));
    assert!(message.starts_with("conf/test.toml:2:"), "points at the key's line: {message}");
}

#[test]
fn an_api_beyond_loopback_needs_a_token() {
    let open = format!("{BASE}\n[api]\nbind = \"0.0.0.0:8787\"\n");
    let (message, pointed) = error(&open);
    assert!(message.contains("beyond loopback, without a token"), "{message}");
    assert!(pointed.starts_with("\"0.0.0.0:8787\""), "{pointed}");
    let with_token = format!("{BASE}\n[api]\nbind = \"0.0.0.0:8787\"\ntoken_env = \"RPC_TOKEN\"\n");
    let config = parse(&with_token).expect("a token makes it acceptable");
    assert_eq!(config.api.token.as_ref().map(Secret::expose), Some("T0KEN2"));
    assert!(!config.api.allow_unpause, "unpause over the API is off unless allowed");
    let unset = format!("{BASE}\n[api]\ntoken_env = \"UNSET_TOKEN\"\nallow_unpause = true\n");
    let (message, _) = error(&unset);
    assert!(message.contains("UNSET_TOKEN (named by api.token_env) is not set"), "{message}");
    let loopback = parse(&format!("{BASE}\n[api]\nallow_unpause = true\n")).expect("loopback");
    assert!(loopback.api.allow_unpause && loopback.api.token.is_none());
}

/// Every number `run` uses has a documented bound, each refused where it is written.
#[test]
fn numbers_are_held_to_their_documented_bounds() {
    let window = |blocks: &str| {
        with_rule(&format!(
            "name = \"w\"\nkind = \"window\"\nseverity = \"high\"\ncontracts = [\"vault\"]\nevent = \"Withdrawn\"\nblocks = {blocks}\nthreshold = 3"
        ))
    };
    parse(&window(&limits::MAX_WINDOW_BLOCKS.to_string())).expect("the limit itself is fine");
    let (message, pointed) = error(&window(&u64::MAX.to_string()));
    assert!(message.contains("blocks must be at most 100000"), "{message}");
    assert!(message.contains("a restart replays the longest window"), "{message}");
    assert!(pointed.starts_with("18446744073709551615"), "{pointed}");
    let (message, _) = error(&window("0"));
    assert!(message.contains("blocks must be above 0"), "{message}");

    let cases: [(String, &str); 9] = [
        (format!("[chain]\nid = 0\n{BASE}"), "[chain] id must be above 0"),
        (format!("[chain]\nconfirmations = 5000\n{BASE}"), "confirmations must be at most 1000"),
        (format!("[chain]\npoll_interval_ms = 5\n{BASE}"), "poll_interval_ms must be at least 10"),
        (
            format!("[chain]\npoll_interval_ms = 86400000\n{BASE}"),
            "poll_interval_ms must be at most 600000",
        ),
        (
            format!("[chain]\nmax_log_range = 10000000\n{BASE}"),
            "max_log_range must be at most 100000",
        ),
        (
            format!("{BASE}\n[safe]\naddress = \"0x0000000000000000000000000000000000000000\"\n"),
            "[safe] address is the zero address",
        ),
        (
            format!("{BASE}\n[webhook]\nurl_env = \"GUARDIAN_WEBHOOK_URL\"\ntimeout_ms = 0\n"),
            "timeout_ms must be above 0",
        ),
        (
            BASE.replace(
                "Withdrawn(address indexed account, address indexed to, uint256 amount)",
                "Moved(address indexed a, address indexed b, address indexed c, uint256 indexed d)",
            ),
            "has 4 indexed arguments; an event has at most 3",
        ),
        (
            with_rule(
                "name = \"\"\nkind = \"event\"\nseverity = \"high\"\ncontracts = [\"vault\"]\nevent = \"Withdrawn\"",
            ),
            "a rule needs a name",
        ),
    ];
    for (text, expected) in cases {
        let (message, _) = error(&text);
        assert!(message.contains(expected), "expected {expected:?}, got {message}");
    }
    let revert = |min: u64| {
        with_rule(&format!(
            "name = \"r\"\nkind = \"revert_rate\"\nseverity = \"high\"\ncontracts = [\"vault\"]\nblocks = 10\nmin_sample = {min}"
        ))
    };
    assert!(error(&revert(0)).0.contains("min_sample must be above 0"));
    parse(&revert(1)).expect("one transaction is a sample");
}

/// The `[rollback]` table is checked as `run` would use it, against the watched contracts.
#[test]
fn the_rollback_table_is_checked_against_the_contracts() {
    let table = |configs: &str, keys: &str| {
        format!(
            "{}\n[rollback]\n{configs}\n[rollback.contracts.vault]\nkeys = [{keys}]\n",
            BASE.replace("events = [", "on_pause = \"rollback\"\nevents = [")
        )
    };
    let accounts = "[[rollback.configs]]\nname = \"accounts\"\npath = \"accounts.json\"\n";
    let key = "{ config = \"accounts\", pointer = \"/vault\" }";
    parse(&table(accounts, key)).expect("valid");
    let cases = [
        (
            table(accounts, "{ config = \"acounts\", pointer = \"/vault\" }"),
            "names config \"acounts\"",
        ),
        (table(accounts, "{ config = \"accounts\", pointer = \"vault\" }"), "JSON pointer"),
        (table(&format!("{accounts}{accounts}"), key), "used twice"),
        (
            table(&accounts.replace("accounts.json", "../../etc/accounts.json"), key),
            "goes up with `..`",
        ),
        (table(&accounts.replace("name = \"accounts\"", "name = \"../accounts\""), key), "name"),
        (
            table(accounts, key).replace("keys = [", "health_call = \"solvent\"\nkeys = ["),
            "health_call \"solvent\" must be the signature",
        ),
        (
            table(accounts, key)
                .replace("[rollback.contracts.vault]", "[rollback.contracts.vualt]"),
            "[rollback.contracts.vualt] is not a watched contract",
        ),
        (
            BASE.replace("events = [", "on_pause = \"rollback\"\nevents = ["),
            "rolls back after its pause, but [rollback.contracts.vault] does not say",
        ),
    ];
    for (text, expected) in cases {
        let (message, _) = error(&text);
        assert!(message.contains(expected), "expected {expected:?}, got {message}");
    }
    let (_, pointed) = error(&BASE.replace("events = [", "on_pause = \"rollback\"\nevents = ["));
    assert!(pointed.starts_with("\"rollback\""), "points at on_pause: {pointed}");
}

/// Bytes that are not UTF-8 are reported with their line; a file that ends without a newline
/// (cut short, in a comment) and the tables whose absence turns guardian off are warned about.
#[test]
fn bad_bytes_have_a_line_and_truncated_files_are_flagged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("guardian.toml");
    let mut bytes = BASE.as_bytes().to_vec();
    bytes.extend_from_slice(b"# caf\xe9 in Latin-1\n");
    std::fs::write(&path, &bytes).expect("write");
    let message = format!("{:#}", Config::load(&path).expect_err("not UTF-8"));
    let line = BASE.lines().count() + 1;
    assert!(
        message.contains(&format!("guardian.toml:{line}:6: byte 0xe9 is not UTF-8")),
        "{message}"
    );

    let cut = format!(
        "{BASE}\n[safe]\naddress = \"0x5afe000000000000000000000000000000000001\"\n# the webhook te"
    );
    let config = parse(&cut).expect("valid, if cut short");
    let warnings = config.warnings.join("\n");
    assert!(
        warnings.contains("ends without a final newline in the middle of a comment"),
        "{warnings}"
    );
    assert!(warnings.contains("no [[rules]]"), "{warnings}");
    assert!(warnings.contains("no [webhook]"), "{warnings}");
    assert!(!warnings.contains("no [safe]"), "{warnings}");
}

#[test]
fn replicas_are_named_peers_with_their_api_and_token() {
    let alone = parse(BASE).expect("valid");
    assert!(alone.replication.peers.is_empty());
    assert!(!alone.replication.name.is_empty(), "defaults to the host name");
    assert_eq!(alone.replication.leader_timeout, DEFAULT_LEADER_TIMEOUT);

    let text = format!(
        r#"[replication]
name = "validator-1"
sender_delay_ms = 3000
leader_timeout_ms = 4000

[[replicas]]
name = "validator-2"
api = "https://10.0.0.2:8787/"
token_env = "RPC_TOKEN"

[[replicas]]
name = "validator-3"
api = "http://10.0.0.3:8787"
executor = "0x1000000000000000000000000000000000000003"

[webhook]
url_env = "GUARDIAN_WEBHOOK_URL"
mode = "leader"
{BASE}"#
    );
    let config = parse(&text).expect("valid");
    let r = &config.replication;
    assert_eq!(r.name, "validator-1");
    assert_eq!(r.sender_delay, Some(std::time::Duration::from_secs(3)));
    assert_eq!(r.leader_timeout, std::time::Duration::from_secs(4));
    assert_eq!(r.peers[0].api, "https://10.0.0.2:8787", "a trailing slash is dropped");
    assert_eq!(r.peers[0].token.as_ref().map(Secret::expose), Some("T0KEN2"));
    assert_eq!(r.peers[1].token, None);
    assert!(r.peers[1].executor.is_some());
    assert_eq!(r.names(), ["validator-1", "validator-2", "validator-3"]);
    assert!(config.notify[0].leader, "the webhook sends only from the incident's leader");
    let summary = config.summary();
    assert!(
        summary.contains("peer \"validator-2\" at https://10.0.0.2:8787 (token from $RPC_TOKEN)"),
        "{summary}"
    );
    assert!(!summary.contains("T0KEN2"), "the token never prints");
}

#[test]
fn replica_mistakes_name_the_place() {
    let peer =
        |name: &str, api: &str| format!("[[replicas]]\nname = \"{name}\"\napi = \"{api}\"\n");
    for (text, expected, at) in [
        (
            format!("[replication]\nname = \"a\"\n{}{BASE}", peer("a", "http://10.0.0.2:8787")),
            "two replicas are named \"a\"",
            "\"a\"",
        ),
        (
            format!("{}{}{BASE}", peer("b", "http://x:1"), peer("b", "http://y:1")),
            "two replicas are named \"b\"",
            "\"b\"",
        ),
        (format!("{}{BASE}", peer("b", "10.0.0.2:8787")), "http:// or https://", "\"10.0.0.2"),
        (format!("{}{BASE}", peer("b c", "http://x:1")), "a replica's name is letters", "\"b c\""),
        (
            format!("{}{}{BASE}", peer("b", "http://x:1"), peer("c", "http://x:1/")),
            "two replicas have the api http://x:1",
            "\"http://x:1/\"",
        ),
        (
            format!(
                "[[replicas]]\nname = \"b\"\napi = \"http://x:1\"\ntoken_env = \"UNSET_TOKEN\"\n{BASE}"
            ),
            "UNSET_TOKEN",
            "\"UNSET_TOKEN\"",
        ),
        (
            format!(
                "[[notify]]\nkind = \"webhook\"\nurl_env = \"GUARDIAN_WEBHOOK_URL\"\nmode = \"first\"\n{BASE}"
            ),
            "mode is \"all\"",
            "\"first\"",
        ),
        (
            format!("[replication]\nsender_delay_ms = 0\n{BASE}"),
            "sender_delay_ms must be above 0",
            "0",
        ),
    ] {
        let (message, pointed) = error(&text);
        assert!(message.contains(expected), "{message}");
        assert!(pointed.starts_with(at), "{message} points at {pointed:?}");
    }
}
