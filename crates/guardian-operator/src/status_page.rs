//! The status page (`GET /`): the [`Status`] screen as one server-rendered HTML page that
//! refreshes itself (`<meta http-equiv="refresh">`), with each open incident's timeline. No
//! script, no build step, no external resource; every value is HTML-escaped (contract names,
//! details and errors come from configs, the chain and other services).

use std::fmt::Write as _;

use alloy::primitives::{U256, utils::format_ether};

use crate::status::{EndpointHealth, Status};

/// Seconds between two refreshes of the page.
pub const REFRESH_SECONDS: u32 = 10;

/// `text` with `& < > " '` escaped, safe in element content and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `wei` in ether with at most six decimals; an amount too small for that in wei.
fn ether(wei: U256) -> String {
    let text = format_ether(wei);
    let Some((whole, fraction)) = text.split_once('.') else { return format!("{text} ether") };
    let fraction: String = fraction.chars().take(6).collect();
    let fraction = fraction.trim_end_matches('0');
    match (whole, fraction.is_empty()) {
        ("0", true) if !wei.is_zero() => format!("{wei} wei"),
        (_, true) => format!("{whole} ether"),
        _ => format!("{whole}.{fraction} ether"),
    }
}

fn age(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3_600),
        s => format!("{} d", s / 86_400),
    }
}

fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| v.to_string())
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1b1b1b;background:#fafafa}\
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.6rem;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.4rem 0}td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}\
th{background:#eee}code{font-size:.85rem;word-break:break-all}.bad{color:#b00020;font-weight:600}.ok{color:#1b7f2a;font-weight:600}\
.muted{color:#666}.incident{border:1px solid #ccc;background:#fff;padding:.5rem 1rem;margin:.6rem 0}";

/// The page for `status`.
pub fn render(status: &Status) -> String {
    let mut html = String::with_capacity(16 * 1024);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>guardian: chain {}</title><style>{STYLE}</style></head><body>\n",
        status.chain_id
    );
    let _ = writeln!(
        html,
        "<h1>guardian on chain {}</h1><p class=\"muted\">as of {} (chain read {}); refreshes every {REFRESH_SECONDS} s</p>",
        status.chain_id,
        escape(&status.at),
        escape(&status.chain_read)
    );
    readiness(&mut html, status);
    follow(&mut html, status);
    incidents(&mut html, status);
    proposals(&mut html, status);
    executor(&mut html, status);
    replicas(&mut html, status);
    contracts(&mut html, status);
    notifications(&mut html, status);
    if !status.problems.is_empty() {
        html.push_str("<h2>Could not read</h2><ul>");
        for problem in &status.problems {
            let _ = write!(html, "<li>{}</li>", escape(problem));
        }
        html.push_str("</ul>\n");
    }
    html.push_str("</body></html>\n");
    html
}

fn readiness(html: &mut String, status: &Status) {
    match &status.ready {
        Some(ready) if ready.ready => html.push_str("<p id=\"ready\" class=\"ok\">Ready</p>\n"),
        Some(ready) => {
            html.push_str("<div id=\"ready\"><p class=\"bad\">Not ready</p><ul>");
            for reason in &ready.reasons {
                let _ = write!(
                    html,
                    "<li><b>{}</b>: {}</li>",
                    escape(&reason.check),
                    escape(&reason.detail)
                );
            }
            html.push_str("</ul></div>\n");
        }
        None => {}
    }
}

fn follow(html: &mut String, status: &Status) {
    let f = &status.follow;
    let _ = writeln!(
        html,
        "<h2>Chain</h2><table><tr><th>head</th><th>cursor</th><th>lag</th></tr>\
         <tr><td id=\"head\">{}</td><td id=\"cursor\">{}</td><td id=\"lag\">{}</td></tr></table>",
        or_dash(f.head),
        or_dash(f.cursor),
        or_dash(f.lag.map(|l| format!("{l} blocks")))
    );
    html.push_str(
        "<table><tr><th>endpoint</th><th>state</th><th>head</th><th>last error</th></tr>",
    );
    for e in &status.endpoints {
        let class = match e.health {
            EndpointHealth::Ok => "ok",
            EndpointHealth::Failing => "bad",
            EndpointHealth::Unknown => "muted",
        };
        let _ = write!(
            html,
            "<tr><td><code>{}</code>{}</td><td class=\"{class}\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(&e.endpoint),
            if e.current { " (current)" } else { "" },
            e.health.as_str(),
            or_dash(e.head),
            escape(e.last_error.as_deref().unwrap_or(""))
        );
    }
    html.push_str("</table>\n");
}

fn incidents(html: &mut String, status: &Status) {
    let _ = writeln!(html, "<h2>Open incidents ({})</h2>", status.incidents.len());
    if status.incidents.is_empty() {
        html.push_str("<p class=\"muted\">none</p>\n");
    }
    for open in &status.incidents {
        let s = &open.summary;
        let _ = write!(
            html,
            "<div class=\"incident\" id=\"incident-{}\"><p><b>Incident #{}</b> on <b>{}</b> \
             (<code>{}</code>): {}, severity {}, open for {}{}</p>",
            s.id,
            s.id,
            escape(&s.contract),
            s.address,
            s.state,
            s.severity,
            age(open.age_seconds),
            match &s.deadline {
                Some(d) if s.overdue => {
                    format!(", <span class=\"bad\">OVERDUE</span> since {}", escape(d))
                }
                Some(d) => format!(", deadline {}", escape(d)),
                None => String::new(),
            }
        );
        if let Some((hash, approvals, threshold)) = s.pending {
            let _ = write!(
                html,
                "<p>Pause proposal: approvals <b>{approvals}/{threshold}</b>; owners approve with \
                 <code>guardian approve {hash}</code></p>"
            );
        }
        let _ = write!(html, "<p>Rollback: {}</p>", escape(&s.rollback));
        html.push_str(
            "<table><tr><th>#</th><th>at</th><th>block</th><th>what</th><th>state</th><th>detail</th></tr>",
        );
        for e in &open.timeline {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                e.seq,
                escape(&e.at),
                or_dash(e.block),
                escape(&e.kind),
                e.state,
                escape(&e.detail)
            );
        }
        html.push_str("</table></div>\n");
    }
}

fn proposals(html: &mut String, status: &Status) {
    let _ = writeln!(html, "<h2>Proposals waiting for owners ({})</h2>", status.proposals.len());
    if status.proposals.is_empty() {
        html.push_str("<p class=\"muted\">none</p>\n");
        return;
    }
    html.push_str(
        "<table><tr><th>safeTxHash</th><th>what</th><th>nonce</th><th>approvals</th><th>approve with</th></tr>",
    );
    for p in &status.proposals {
        let approvals = match (p.approvals, p.threshold) {
            (Some(a), Some(t)) => format!("{a}/{t}"),
            _ => "–".to_owned(),
        };
        let _ = write!(
            html,
            "<tr><td><code>{}</code></td><td>{} {}</td><td>{}</td><td>{approvals}</td><td><code>{}</code></td></tr>",
            p.safe_tx_hash,
            escape(&p.kind),
            escape(&p.contract),
            escape(&p.nonce),
            escape(&p.approve_command)
        );
    }
    html.push_str("</table>\n");
}

fn executor(html: &mut String, status: &Status) {
    html.push_str("<h2>Executor</h2>\n");
    match &status.executor {
        Some(x) => {
            let class = if x.can_execute() { "ok" } else { "bad" };
            let _ = writeln!(
                html,
                "<p><code>{}</code> holds <span class=\"{class}\">{}</span>; one execution \
                 needs {}</p>",
                x.address,
                ether(x.balance_wei),
                ether(x.min_balance_wei)
            );
        }
        None => html.push_str("<p class=\"muted\">none on this replica</p>\n"),
    }
}

fn replicas(html: &mut String, status: &Status) {
    if status.replicas.is_empty() {
        return;
    }
    html.push_str(
        "<h2>Replicas</h2><table><tr><th>replica</th><th>reachable</th><th>executor</th><th>relays owed</th><th>last error</th></tr>",
    );
    for r in &status.replicas {
        let reachable = if r.reachable {
            "<span class=\"ok\">yes</span>"
        } else {
            "<span class=\"bad\">no</span>"
        };
        let executor = r.executor.map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        let owed = if r.relays_pending == 0 {
            "0".to_owned()
        } else {
            format!("<span class=\"bad\">{}</span>", r.relays_pending)
        };
        let _ = write!(
            html,
            "<tr><td>{}<br><span class=\"muted\">{}</span></td><td>{reachable}</td><td><code>{}</code></td><td>{owed}</td><td>{}</td></tr>",
            escape(&r.name),
            escape(&r.api),
            escape(&executor),
            escape(r.error.as_deref().unwrap_or("–"))
        );
    }
    html.push_str("</table>\n");
}

fn contracts(html: &mut String, status: &Status) {
    html.push_str(
        "<h2>Contracts</h2><table><tr><th>contract</th><th>paused</th><th>version</th><th>rolls back to</th></tr>",
    );
    for c in &status.contracts {
        let paused = match c.paused {
            Some(true) => "<span class=\"bad\">paused</span>",
            Some(false) => "running",
            None => "unknown",
        };
        let (current, target) = match &c.rollback {
            None => ("–".to_owned(), "no rollback configured".to_owned()),
            Some(r) => (
                r.current.as_ref().map_or_else(|| "unrecorded".to_owned(), |v| escape(&v.label)),
                match (&r.previous, r.verified) {
                    (Some(v), true) => {
                        format!(
                            "{} (<code>{}</code>), <span class=\"ok\">verified</span>",
                            escape(&v.label),
                            v.address
                        )
                    }
                    (previous, _) => format!(
                        "{}<span class=\"bad\">not ready</span>: {}",
                        previous
                            .as_ref()
                            .map_or_else(String::new, |v| format!("{} ", escape(&v.label))),
                        escape(r.problem.as_deref().unwrap_or(""))
                    ),
                },
            ),
        };
        let _ = write!(
            html,
            "<tr><td>{} <code>{}</code></td><td>{paused}</td><td>{current}</td><td>{target}</td></tr>",
            escape(&c.name),
            c.address
        );
    }
    html.push_str("</table>\n");
    match (&status.last_backup, status.last_backup_age_seconds) {
        (Some(b), Some(seconds)) => {
            let _ = writeln!(
                html,
                "<p>Last backup: <code>{}</code>, {} ago</p>",
                escape(&b.file),
                age(seconds)
            );
        }
        _ => html.push_str("<p class=\"muted\">No backup of the managed configs yet</p>\n"),
    }
}

fn notifications(html: &mut String, status: &Status) {
    let n = &status.notifications;
    let _ = write!(
        html,
        "<h2>Notifications</h2><p>{} pending, {} failing{}</p>",
        n.pending,
        n.failing,
        n.failing_since.as_deref().map(|s| format!(" since {}", escape(s))).unwrap_or_default()
    );
    if !n.channels.is_empty() {
        html.push_str("<table><tr><th>channel</th><th>pending</th><th>failing</th></tr>");
        for c in &n.channels {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td{}>{}</td></tr>",
                escape(&c.channel),
                c.backlog.pending,
                if c.backlog.failing > 0 { " class=\"bad\"" } else { "" },
                c.backlog.failing
            );
        }
        html.push_str("</table>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{ContractState, EndpointState, FollowStatus, NotificationsStatus};

    fn status() -> Status {
        Status {
            at: "2026-01-01T00:00:00.000Z".into(),
            chain_id: 138,
            chain_read: "2026-01-01T00:00:00.000Z".into(),
            follow: FollowStatus { head: Some(12), cursor: Some(10), lag: Some(2) },
            ready: None,
            endpoints: vec![EndpointState {
                endpoint: "http://127.0.0.1:8545".into(),
                current: true,
                health: EndpointHealth::Failing,
                head: None,
                last_error: Some("<script>alert(1)</script>".into()),
                failing_since: Some(1),
            }],
            incidents: Vec::new(),
            proposals: Vec::new(),
            executor: None,
            contracts: vec![ContractState {
                name: "vault\"><img src=x>".into(),
                address: alloy::primitives::Address::ZERO,
                paused: Some(true),
                rollback: None,
            }],
            last_backup: None,
            last_backup_age_seconds: None,
            notifications: NotificationsStatus {
                pending: 0,
                failing: 0,
                failing_since: None,
                channels: Vec::new(),
            },
            problems: vec!["a & b".into()],
            replicas: Vec::new(),
        }
    }

    #[test]
    fn everything_from_outside_is_escaped_and_nothing_runs() {
        let page = render(&status());
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!page.contains("<img src=x>"));
        assert!(page.contains("vault&quot;&gt;&lt;img src=x&gt;"));
        assert!(page.contains("a &amp; b"));
        assert!(page.contains("http-equiv=\"refresh\""));
        assert!(!page.to_lowercase().contains("<script"), "no script of its own either");
    }

    #[test]
    fn replicas_show_reachability_executor_and_what_is_owed() {
        let mut status = status();
        assert!(!render(&status).contains("<h2>Replicas</h2>"), "no section without replicas");
        let replica =
            |name: &str, reachable, owed, error: Option<&str>| crate::peers::ReplicaState {
                name: name.into(),
                api: format!("http://{name}:8787"),
                reachable,
                replica: None,
                executor: reachable.then_some(alloy::primitives::Address::repeat_byte(0xb)),
                error: error.map(Into::into),
                relays_pending: owed,
                proposals: Vec::new(),
            };
        status.replicas = vec![
            replica("b", true, 0, None),
            replica("c<i>", false, 3, Some("connection refused <b>")),
        ];
        let page = render(&status);
        assert!(page.contains("<h2>Replicas</h2>"), "{page}");
        assert!(page.contains("<td>b<br>"));
        assert!(page.contains(&alloy::primitives::Address::repeat_byte(0xb).to_string()));
        assert!(page.contains("<span class=\"bad\">no</span>"));
        assert!(page.contains("<span class=\"bad\">3</span>"));
        assert!(page.contains("c&lt;i&gt;") && page.contains("connection refused &lt;b&gt;"));
        assert!(!page.contains("<i>") && !page.contains("refused <b>"));
    }

    #[test]
    fn amounts_read_as_ether() {
        assert_eq!(ether(U256::from(1_500_000_000_000_000_000u128)), "1.5 ether");
        assert_eq!(ether(U256::from(10u128.pow(22))), "10000 ether");
        assert_eq!(ether(U256::from(1_234_567_890_123u64)), "0.000001 ether");
        assert_eq!(ether(U256::from(7u64)), "7 wei");
        assert_eq!(ether(U256::ZERO), "0 ether");
    }
}
