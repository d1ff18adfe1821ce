//! What an operator installs next to the binary, checked with the real tools: the systemd unit
//! (systemd-analyze), the alert rules (promtool), the Grafana dashboard (its queries against the
//! daemon's metric names, and promtool's PromQL parser), shell completions (bash), the man page,
//! `--version`, and the log formats.
//!
//! A missing tool fails the test with the name of `scripts/setup.sh`, which installs it.

use std::{
    collections::BTreeSet,
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

/// The metric names the daemon exposes (docs: README "Running in production"). Histograms are
/// queried through their `_bucket`, `_sum` and `_count` series.
const METRICS: &[&str] = &[
    "guardian_build_info",
    "guardian_ready",
    "guardian_chain_head_block",
    "guardian_cursor_block",
    "guardian_follower_lag_blocks",
    "guardian_block_processing_seconds",
    "guardian_last_block_age_seconds",
    "guardian_findings_total",
    "guardian_incidents_open",
    "guardian_incidents_overdue",
    "guardian_proposals",
    "guardian_rpc_requests_total",
    "guardian_rpc_failovers_total",
    "guardian_rpc_request_seconds",
    "guardian_executor_balance_wei",
    "guardian_executor_min_balance_wei",
    "guardian_notifications_pending",
    "guardian_notification_failures_total",
    "guardian_notifications_failing_seconds",
    "guardian_rollback_ready",
    "guardian_last_backup_age_seconds",
];
const HISTOGRAMS: &[&str] = &["guardian_block_processing_seconds", "guardian_rpc_request_seconds"];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `name` from PATH, or a failure that says how to install it.
fn tool(name: &str, debian_package: &str) -> Command {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()));
    assert!(
        found,
        "`{name}` is not on PATH: run scripts/setup.sh (it installs the Debian package \
         {debian_package})"
    );
    Command::new(name)
}

/// The binary under test, without the caller's settings that change what it prints.
fn guardian() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_guardian"));
    for var in ["GUARDIAN_CONFIG", "GUARDIAN_LOG_FORMAT", "RUST_LOG", "NO_COLOR"] {
        cmd.env_remove(var);
    }
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{cmd:?} runs: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Run and require success, returning stdout.
fn succeeds(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

// --- systemd ------------------------------------------------------------------------------------

const UNIT: &str = "contrib/systemd/guardian.service";
const EXEC_START: &str =
    "ExecStart=/usr/local/bin/guardian run --config /etc/guardian/guardian.toml --log-format json";

/// A copy of the unit whose ExecStart runs the binary under test: systemd-analyze checks that the
/// program exists and is executable.
fn unit_for_this_build(dir: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(repo(UNIT)).expect("read the unit");
    assert_eq!(unit.lines().filter(|l| *l == EXEC_START).count(), 1, "{UNIT} runs:\n{EXEC_START}");
    let built = EXEC_START.replace("/usr/local/bin/guardian", env!("CARGO_BIN_EXE_guardian"));
    let path = dir.join("guardian.service");
    std::fs::write(&path, unit.replace(EXEC_START, &built)).expect("write the unit copy");
    path
}

#[test]
fn systemd_unit_verifies_without_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_for_this_build(dir.path());
    // --man=no: the Documentation= pages are checked by man_page_is_roff_for_every_command; they
    // are not installed on a build machine.
    let out = run(tool("systemd-analyze", "systemd").args(["verify", "--man=no"]).arg(&unit));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify failed:\n{stderr}");
    // verify exits 0 on an unknown key or a value it cannot parse ("…, ignoring"): any word
    // about our unit is a failure. Lines about the host's own units are not ours to fix.
    let ours: Vec<&str> = stderr.lines().filter(|line| line.contains("guardian")).collect();
    assert!(ours.is_empty(), "systemd-analyze verify warns about the unit:\n{}", ours.join("\n"));

    let unit_text = std::fs::read_to_string(repo(UNIT)).expect("read the unit");
    for line in [
        "User=guardian",
        "EnvironmentFile=/etc/guardian/guardian.env",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/guardian /etc/guardian/managed",
        "NoNewPrivileges=yes",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
    ] {
        assert!(unit_text.lines().any(|l| l == line), "{UNIT} lacks {line}");
    }
    assert!(unit_text.lines().any(|l| l.starts_with("TimeoutStopSec=")), "{UNIT}: TimeoutStopSec");
}

#[test]
fn systemd_unit_exposure_stays_low() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_for_this_build(dir.path());
    // systemd scores a unit's exposure from 0 (locked down) to 10 (unprotected); --threshold is
    // that score times ten. The unit scores about 1.2: dropping a hardening line shows up here.
    let out = run(tool("systemd-analyze", "systemd")
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&unit));
    assert!(
        out.status.success(),
        "guardian.service is exposed above 2.0:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn env_example_names_every_secret_the_config_template_reads() {
    let example =
        std::fs::read_to_string(repo("contrib/systemd/guardian.env.example")).expect("read");
    let set: BTreeSet<&str> = example
        .lines()
        .map(|l| l.trim_start_matches("# "))
        .filter_map(|l| l.split_once('=').map(|(name, _)| name))
        .filter(|name| name.starts_with("GUARDIAN_"))
        .collect();
    let template = std::fs::read_to_string(repo("config/guardian.toml")).expect("read");
    let named: Vec<&str> = template
        .lines()
        .map(|l| l.trim_start_matches(['#', ' ']))
        .filter(|l| {
            l.starts_with("url_env") || l.starts_with("bearer_env") || l.contains("key_env")
        })
        .filter_map(|l| l.split('"').nth(1))
        .collect();
    assert!(named.len() >= 3, "the template names its secrets: {named:?}");
    for var in named {
        assert!(set.contains(var), "guardian.env.example lacks {var} (has {set:?})");
    }
}

// --- Prometheus ---------------------------------------------------------------------------------

#[test]
fn alert_rules_pass_promtool_check() {
    succeeds(
        tool("promtool", "prometheus")
            .args(["check", "rules"])
            .arg(repo("contrib/prometheus/alerts.yml")),
    );
}

#[test]
fn alert_rules_pass_their_unit_tests_with_a_firing_and_a_quiet_case_each() {
    succeeds(
        tool("promtool", "prometheus")
            .args(["test", "rules"])
            .arg(repo("contrib/prometheus/alerts_test.yml")),
    );

    let rules = std::fs::read_to_string(repo("contrib/prometheus/alerts.yml")).expect("read");
    let alerts: BTreeSet<&str> =
        rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    for required in [
        "GuardianDown",
        "GuardianNotReady",
        "FollowerStalled",
        "ExecutorBalanceLow",
        "IncidentNotContained",
        "NotificationsFailing",
        "RollbackNotReady",
        "BackupStale",
    ] {
        assert!(alerts.contains(required), "alerts.yml has no {required}");
    }
    assert!(
        rules.contains(r#"up{job="guardian"} == 0"#),
        "GuardianDown watches up{{job=guardian}}"
    );
    assert!(rules.contains("guardian_ready == 0"), "GuardianNotReady watches guardian_ready");

    // In the test file each `alertname:` is followed by its `exp_alerts:`; `[]` means quiet.
    let tests = std::fs::read_to_string(repo("contrib/prometheus/alerts_test.yml")).expect("read");
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for pair in lines.windows(2) {
        if let Some(name) = pair[0].strip_prefix("alertname: ") {
            match pair[1] {
                "exp_alerts: []" => quiet.insert(name),
                "exp_alerts:" => firing.insert(name),
                other => panic!("alertname: {name} is followed by {other:?}, not exp_alerts"),
            };
        }
    }
    for alert in &alerts {
        assert!(firing.contains(alert), "alerts_test.yml has no case where {alert} fires");
        assert!(quiet.contains(alert), "alerts_test.yml has no case where {alert} stays quiet");
    }
    assert_eq!(metrics_in(&rules).difference(&known()).count(), 0, "alerts.yml: unknown metric");
}

// --- Grafana ------------------------------------------------------------------------------------

fn known() -> BTreeSet<String> {
    METRICS.iter().map(|m| (*m).to_owned()).collect()
}

/// The guardian metric names a PromQL text mentions, histogram series folded into their metric.
fn metrics_in(promql: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = promql;
    while let Some(start) = rest.find("guardian_") {
        let tail = &rest[start..];
        let end =
            tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|b| HISTOGRAMS.contains(b)))
            .unwrap_or(name);
        found.insert(base.to_owned());
        rest = &tail[end..];
    }
    found
}

/// Every `expr` and variable `query` in the dashboard, wherever it is nested.
fn queries(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", serde_json::Value::String(q)) => out.push(q.clone()),
                    ("query", serde_json::Value::Object(q)) => {
                        if let Some(serde_json::Value::String(q)) = q.get("query") {
                            out.push(q.clone());
                        }
                    }
                    _ => queries(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

/// Every `datasource` object in the dashboard.
fn datasources<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                if key == "datasource" {
                    out.push(value);
                } else {
                    datasources(value, out);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| datasources(v, out)),
        _ => {}
    }
}

#[test]
fn grafana_dashboard_queries_only_the_daemons_metrics_in_valid_promql() {
    let text = std::fs::read_to_string(repo("contrib/grafana/guardian.json")).expect("read");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(dashboard["schemaVersion"], 39);
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS", "a ${{DS_PROMETHEUS}} input");

    let mut sources = Vec::new();
    datasources(&dashboard, &mut sources);
    let prometheus = serde_json::json!({"type": "prometheus", "uid": "${DS_PROMETHEUS}"});
    let others: Vec<_> = sources
        .iter()
        .filter(|s| **s != &prometheus && s["type"] != "grafana") // built-in annotations
        .collect();
    assert!(others.is_empty(), "datasources other than ${{DS_PROMETHEUS}}: {others:?}");

    let mut exprs = Vec::new();
    queries(&dashboard, &mut exprs);
    assert!(exprs.len() > 20, "{exprs:?}");
    let used: BTreeSet<String> = exprs.iter().flat_map(|q| metrics_in(q)).collect();
    let known = known();
    let unknown: Vec<_> = used.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics the daemon does not expose: {unknown:?}"
    );
    let unused: Vec<_> = known.difference(&used).collect();
    assert!(unused.is_empty(), "the dashboard shows nothing of {unused:?}");

    // promtool parses each query as a recording rule, with Grafana's variables filled in.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().filter(|q| !q.starts_with("label_values(")).enumerate() {
        let promql = expr.replace("$__rate_interval", "5m").replace("$instance", ".*");
        let quoted = serde_json::to_string(&promql).expect("quote"); // a JSON string is YAML
        rules.push_str(&format!("      - record: dashboard:query_{i}\n        expr: {quoted}\n"));
    }
    let file = dir.path().join("dashboard_queries.yml");
    std::fs::write(&file, rules).expect("write");
    succeeds(tool("promtool", "prometheus").args(["check", "rules"]).arg(&file));
}

// --- Command line: completions, man page, version -------------------------------------------

#[test]
fn bash_completion_loads_and_completes_subcommands_and_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("guardian.bash");
    std::fs::write(&script, succeeds(guardian().args(["completions", "bash"]))).expect("write");
    let check = r#"
        set -e
        source "$1"
        complete -p guardian
        COMP_WORDS=(guardian ru); COMP_CWORD=1; _guardian guardian ru guardian
        echo "subcommands: ${COMPREPLY[*]}"
        COMP_WORDS=(guardian run --log-format ''); COMP_CWORD=3; _guardian guardian '' --log-format
        echo "log formats: ${COMPREPLY[*]}"
    "#;
    let out = run(tool("bash", "bash").args(["-c", check, "bash"]).arg(&script));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success() && stderr.is_empty(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("-F _guardian guardian"), "{stdout}");
    assert!(stdout.contains("subcommands: run\n"), "{stdout}");
    assert!(stdout.contains("log formats: text json\n"), "{stdout}");
}

#[test]
fn zsh_and_fish_completions_are_generated() {
    let zsh = succeeds(guardian().args(["completions", "zsh"]));
    assert!(zsh.starts_with("#compdef guardian"), "{zsh}");
    let fish = succeeds(guardian().args(["completions", "fish"]));
    assert!(fish.contains("complete -c guardian"), "{fish}");
    assert!(!run(guardian().args(["completions", "tcsh"])).status.success());
}

#[test]
fn man_page_is_roff_for_every_command() {
    let page = succeeds(guardian().arg("man"));
    for needle in [
        "\n.TH guardian 1 ",
        "\n.SH NAME\nguardian \\- Rollback\\-and\\-pause guardian",
        "\n.SH SYNOPSIS\n",
        "\n.SH SUBCOMMANDS\n",
        "guardian\\-run(1)",
        "\\-\\-log\\-format",
    ] {
        assert!(page.contains(needle), "guardian man lacks {needle:?}:\n{page}");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("man1");
    succeeds(guardian().args(["man", "--out"]).arg(&out));
    let pages: BTreeSet<String> = std::fs::read_dir(&out)
        .expect("--out holds the pages")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    for expected in ["guardian.1", "guardian-run.1", "guardian-backup-restore.1", "guardian-man.1"]
    {
        assert!(pages.contains(expected), "no {expected} in {pages:?}");
    }
    // The unit's Documentation= names pages that `guardian man --out` writes.
    let unit = std::fs::read_to_string(repo(UNIT)).expect("read the unit");
    for doc in unit.lines().filter_map(|l| l.strip_prefix("Documentation=")) {
        for page in doc.split_whitespace().filter_map(|d| d.strip_prefix("man:")) {
            let file = page.replace("(1)", ".1");
            assert!(pages.contains(&file), "{UNIT} names {page}, which is not generated");
        }
    }
    for page in &pages {
        let roff = std::fs::read_to_string(out.join(page)).expect("read page");
        assert!(roff.contains("\n.TH ") && roff.contains("\n.SH NAME\n"), "{page}:\n{roff}");
    }
}

#[test]
fn version_names_the_git_commit() {
    let head = run(Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR")));
    assert!(
        head.status.success(),
        "this test needs the git checkout the binary is built from: {}",
        text(&head.stderr)
    );
    let commit = text(&head.stdout).trim().to_owned();
    let version = succeeds(guardian().arg("--version"));
    assert_eq!(version, format!("guardian {} ({commit})\n", env!("CARGO_PKG_VERSION")));
    assert_eq!(commit.len(), 12);
    // Subcommands report the same.
    assert_eq!(
        succeeds(guardian().args(["run", "--version"])),
        format!("guardian-run {}", &version["guardian ".len()..])
    );
}

// --- Log formats --------------------------------------------------------------------------------

/// A config whose only RPC endpoint is a closed local port: `guardian run` logs "no RPC endpoint
/// reachable yet" with backoff and never touches a chain.
fn unreachable_config(dir: &Path) -> PathBuf {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port(); // closed again when the listener drops
    let config = dir.join("guardian.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[rpc]]
url = "http://127.0.0.1:{port}"

[storage]
path = "guardian.sqlite"

[[contracts]]
name = "vault"
address = "0x1000000000000000000000000000000000000001"

[[rules]]
name = "vault-insolvent"
kind = "invariant"
severity = "critical"
contracts = ["vault"]
call = "solvent() returns (bool)"
op = "=="
value = true
"#
        ),
    )
    .expect("write the config");
    config
}

const WAITING: &str = "no RPC endpoint reachable yet";

/// `guardian run` on `config` with stderr to a file until it has logged WAITING twice (a retry
/// after backoff), then SIGTERM; everything it wrote to stderr.
fn daemon_stderr(mut cmd: Command, config: &Path) -> Vec<u8> {
    let log = config.with_file_name("stderr.log");
    let stderr = std::fs::File::create(&log).expect("create the log");
    let mut child = cmd
        .args(["run", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("guardian starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    let read = || std::fs::read(&log).expect("read the log");
    while text(&read()).matches(WAITING).count() < 2 {
        if Instant::now() > deadline || child.try_wait().expect("wait").is_some() {
            let _ = child.kill();
            panic!("guardian did not log {WAITING:?} twice:\n{}", text(&read()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    succeeds(Command::new("kill").args(["-TERM", &child.id().to_string()]));
    let status = child.wait().expect("guardian exits");
    assert!(status.success(), "guardian run after SIGTERM: {status}\n{}", text(&read()));
    read()
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = unreachable_config(dir.path());
    let mut by_flag = guardian();
    by_flag.args(["--log-format", "json"]);
    let mut by_env = guardian();
    by_env.env("GUARDIAN_LOG_FORMAT", "json");
    for (how, cmd) in [("--log-format json", by_flag), ("GUARDIAN_LOG_FORMAT=json", by_env)] {
        let logs = text(&daemon_stderr(cmd, &config));
        let lines: Vec<&str> = logs.lines().collect();
        assert!(lines.len() >= 3, "{how}: {logs}");
        for line in &lines {
            let object: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{how}: not a JSON line ({e}): {line}"));
            for field in ["timestamp", "level", "target", "message"] {
                assert!(object[field].is_string(), "{how}: no {field} in {line}");
            }
        }
        let waiting: Vec<serde_json::Value> = lines
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|o| o["message"] == WAITING)
            .collect();
        assert_eq!(waiting[0]["level"], "WARN", "{how}: {logs}");
        assert!(waiting[0]["retry_in"].is_string(), "{how}: the event's fields are fields: {logs}");
    }
}

#[test]
fn text_logs_to_a_file_hold_no_colour_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = unreachable_config(dir.path());
    let logs = daemon_stderr(guardian(), &config);
    assert!(
        text(&logs).contains(&format!("WARN guardian_daemon::daemon: {WAITING}")),
        "{}",
        text(&logs)
    );
    assert!(!logs.contains(&0x1b), "ESC in a log file:\n{}", text(&logs).escape_debug());
}

/// What guardian writes to a pseudo-terminal (util-linux `script`) for 2 seconds.
fn on_a_terminal(config: &Path, no_color: Option<&str>) -> String {
    let line = format!(
        "timeout -s TERM 2 {} run --config {}",
        env!("CARGO_BIN_EXE_guardian"),
        config.display()
    );
    let mut cmd = tool("script", "bsdutils");
    cmd.args(["--quiet", "--return", "--command", &line, "/dev/null"]);
    for var in ["GUARDIAN_CONFIG", "GUARDIAN_LOG_FORMAT", "RUST_LOG", "NO_COLOR"] {
        cmd.env_remove(var);
    }
    if let Some(value) = no_color {
        cmd.env("NO_COLOR", value);
    }
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).spawn().expect("script runs");
    let mut out = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut out).expect("read");
    child.wait().expect("script exits");
    assert!(out.contains(WAITING), "{out}");
    out
}

#[test]
fn text_logs_on_a_terminal_are_coloured_unless_no_color() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = unreachable_config(dir.path());
    assert!(on_a_terminal(&config, None).contains('\x1b'), "a terminal gets colour");
    let plain = on_a_terminal(&config, Some("1"));
    assert!(!plain.contains('\x1b'), "NO_COLOR=1:\n{}", plain.escape_debug());
}
