//! The rehearsal report: what was checked, what happened when, and how fast.

use std::{fmt::Write as _, path::Path};

use eyre::{Result, WrapErr};
use serde::{Deserialize, Serialize};

/// One check of a scenario's check list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What must be true, in words ("vault paused and verified").
    pub name: String,
    /// Whether it was.
    pub passed: bool,
    /// What was observed (or why it failed: which step did not happen).
    pub detail: String,
}

impl Check {
    /// A passed check.
    pub fn pass(name: &str, detail: impl Into<String>) -> Self {
        Self { name: name.to_owned(), passed: true, detail: detail.into() }
    }

    /// A failed check; `detail` says which step did not happen.
    pub fn fail(name: &str, detail: impl Into<String>) -> Self {
        Self { name: name.to_owned(), passed: false, detail: detail.into() }
    }
}

/// A moment in the incident's life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What happened ("anomaly mined", "finding recorded", "proposal made", …).
    pub label: String,
    /// Block number it happened in or was observed at.
    pub block: u64,
    /// Milliseconds since the anomaly was mined.
    pub ms: u64,
}

/// Detection and response speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Latencies {
    /// Anomaly mined → finding committed, in milliseconds.
    pub detection_ms: Option<u64>,
    /// … in blocks.
    pub detection_blocks: Option<u64>,
    /// Anomaly mined → pause mined, in milliseconds.
    pub pause_ms: Option<u64>,
    /// … in blocks.
    pub pause_blocks: Option<u64>,
}

/// One scenario's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioReport {
    /// Scenario name (`drain`, `upgrade`, …).
    pub scenario: String,
    /// True when every check passed.
    pub passed: bool,
    /// The check list, in order.
    pub checks: Vec<Check>,
    /// The timeline, in order of time.
    pub timeline: Vec<Event>,
    /// Speed figures.
    pub latencies: Latencies,
    /// The incident the daemon opened (its lifecycle events are in the timeline).
    #[serde(default)]
    pub incident: Option<i64>,
    /// The value the anomaly moved out of the contract before the pause, in wei (decimal):
    /// its balance at the block before the anomaly minus at the pause's block. `None` where
    /// nothing was attacked (`quiet`, `levers`).
    #[serde(default)]
    pub wei_lost: Option<String>,
    /// The incident's post-mortem (Markdown), generated from the audit log; also written as
    /// `postmortem-<scenario>.md`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postmortem: Option<String>,
    /// What `guardian audit verify` said of the daemon's log after the scenario.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<String>,
}

impl ScenarioReport {
    /// A report for `scenario` from its checks, timeline and latencies; `passed` is derived.
    pub fn new(
        scenario: &str,
        checks: Vec<Check>,
        mut timeline: Vec<Event>,
        latencies: Latencies,
    ) -> Self {
        timeline.sort_by_key(|e| (e.ms, e.block));
        let passed = !checks.is_empty() && checks.iter().all(|c| c.passed);
        Self {
            scenario: scenario.to_owned(),
            passed,
            checks,
            timeline,
            latencies,
            postmortem: None,
            audit: None,
            incident: None,
            wei_lost: None,
        }
    }
}

/// What a drill on a fork ran against: the block every scenario forked at, the Safe as it
/// stood there, and what the drill asked of the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkReport {
    /// The endpoint, without credentials, path or query.
    pub endpoint: String,
    /// The block every scenario forked at.
    pub block: u64,
    /// Its hash.
    pub block_hash: alloy::primitives::B256,
    /// The Safe.
    pub safe: alloy::primitives::Address,
    /// Its owners at that block.
    pub owners: Vec<alloy::primitives::Address>,
    /// Its threshold.
    pub threshold: u64,
    /// Its nonce.
    pub nonce: alloy::primitives::U256,
    /// Requests the whole drill made of the endpoint (through the forwarder).
    pub footprint: crate::forwarder::Footprint,
}

/// The accounts the drill itself acts as: never one of the Safe's owners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actors {
    /// Sends `execTransaction` for the daemon.
    pub executor: alloy::primitives::Address,
    /// Owns the proxied vault's ProxyAdmin (upgrade).
    pub release_key: alloy::primitives::Address,
    /// Deposit and withdraw.
    pub users: Vec<alloy::primitives::Address>,
    /// Drains (drain) and steals (upgrade).
    pub attacker: alloy::primitives::Address,
    /// Sends the reverting calls (revert-storm).
    pub spammer: alloy::primitives::Address,
}

/// The whole rehearsal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Chain id the drill ran on.
    pub chain_id: u64,
    /// The RPC endpoint the drill's chain was forked from (`--fork-url`), if any. The URL is
    /// shown without credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<String>,
    /// On a fork: the forked block, the Safe there, the requests made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork: Option<ForkReport>,
    /// The accounts the drill acted as (none is an owner of the Safe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actors: Option<Actors>,
    /// True when every scenario passed.
    pub passed: bool,
    /// Each scenario.
    pub scenarios: Vec<ScenarioReport>,
}

impl Report {
    /// A report over `scenarios`; `passed` is derived.
    pub fn new(chain_id: u64, scenarios: Vec<ScenarioReport>) -> Self {
        let passed = !scenarios.is_empty() && scenarios.iter().all(|s| s.passed);
        Self { chain_id, forked_from: None, fork: None, actors: None, passed, scenarios }
    }

    /// `report.md`.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let verdict = if self.passed { "PASSED" } else { "FAILED" };
        let _ = writeln!(md, "# guardian rehearsal: {verdict}\n");
        let _ = write!(md, "Chain id {}", self.chain_id);
        if let Some(url) = &self.forked_from {
            let _ = write!(md, ", forked from {url} (the forked chain itself is never written to)");
        }
        let _ = writeln!(md, ". Timeline picture: `timeline.svg`.\n");
        if let Some(fork) = &self.fork {
            let owners: Vec<String> = fork.owners.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                md,
                "Forked at block {} ({}). Safe {}: {} of {} owners ({}), nonce {}. The drill made \
                 {} request(s) of the endpoint ({} HTTP), at most {} in one second.\n",
                fork.block,
                fork.block_hash,
                fork.safe,
                fork.threshold,
                fork.owners.len(),
                owners.join(", "),
                fork.nonce,
                fork.footprint.requests,
                fork.footprint.http_requests,
                fork.footprint.peak_per_second
            );
        }
        for s in &self.scenarios {
            let _ = writeln!(
                md,
                "## {} — {}\n",
                s.scenario,
                if s.passed { "passed" } else { "FAILED" }
            );
            if let Some(id) = s.incident {
                let _ = writeln!(
                    md,
                    "Incident #{id} (`guardian incidents show {id}`); its lifecycle events are on the timeline.\n"
                );
            }
            let _ = writeln!(md, "| check | result | detail |\n| --- | --- | --- |");
            for c in &s.checks {
                let mark = if c.passed { "ok" } else { "**FAILED**" };
                let _ =
                    writeln!(md, "| {} | {mark} | {} |", escape_md(&c.name), escape_md(&c.detail));
            }
            if !s.timeline.is_empty() {
                let _ =
                    writeln!(md, "\n| event | block | ms after anomaly |\n| --- | ---: | ---: |");
                for e in &s.timeline {
                    let _ = writeln!(md, "| {} | {} | {} |", escape_md(&e.label), e.block, e.ms);
                }
            }
            let l = &s.latencies;
            let show = |v: Option<u64>| v.map_or_else(|| "—".to_owned(), |v| v.to_string());
            let _ = writeln!(
                md,
                "\nDetection: {} ms, {} blocks. Anomaly → pause: {} ms, {} blocks.\n",
                show(l.detection_ms),
                show(l.detection_blocks),
                show(l.pause_ms),
                show(l.pause_blocks)
            );
            if let Some(wei) = &s.wei_lost {
                let ether = wei.parse().map(eth).unwrap_or_default();
                let _ = writeln!(md, "Wei lost before the pause: {wei} ({ether} ETH).\n");
            }
            if let Some(audit) = &s.audit {
                let _ = writeln!(md, "Audit: {audit}.\n");
            }
            if s.postmortem.is_some() {
                let _ = writeln!(
                    md,
                    "Post-mortem (from the audit log): [postmortem-{0}.md](postmortem-{0}.md).\n",
                    s.scenario
                );
            }
        }
        md
    }

    /// `timeline.svg`: one lane per scenario, events placed by milliseconds after the anomaly,
    /// each label on its own row under the axis with a leader to its dot, so none overlap.
    pub fn svg(&self) -> String {
        const WIDTH: f64 = 960.0;
        const LEFT: f64 = 140.0;
        const RIGHT: f64 = 40.0;
        const ROW: f64 = 16.0;
        let max_ms = self
            .scenarios
            .iter()
            .flat_map(|s| s.timeline.iter().map(|e| e.ms))
            .max()
            .unwrap_or(0)
            .max(1) as f64;
        let lane = |s: &ScenarioReport| 40.0 + ROW * s.timeline.len().max(1) as f64;
        let height = 50.0 + self.scenarios.iter().map(lane).sum::<f64>();
        let x = |ms: u64| LEFT + (WIDTH - LEFT - RIGHT) * (ms as f64 / max_ms);
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="10" y="20" font-size="14">guardian rehearsal on chain {}: {} (0 … {} ms after the anomaly)</text>"#,
            self.chain_id,
            if self.passed { "passed" } else { "FAILED" },
            max_ms as u64
        );
        let mut y = 50.0;
        for s in &self.scenarios {
            let colour = if s.passed { "#1a7f37" } else { "#cf222e" };
            let _ = writeln!(
                svg,
                r#"<text x="10" y="{}" fill="{colour}" font-weight="bold">{}</text>"#,
                y + 4.0,
                escape_xml(&s.scenario)
            );
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="#888"/>"##,
                WIDTH - RIGHT
            );
            if s.timeline.is_empty() {
                let passed = s.checks.iter().filter(|c| c.passed).count();
                let _ = writeln!(
                    svg,
                    r#"<text x="{}" y="{}">no incident timeline: {passed} of {} checks passed</text>"#,
                    LEFT + 4.0,
                    y + 18.0,
                    s.checks.len()
                );
            }
            for (row, e) in s.timeline.iter().enumerate() {
                let ex = x(e.ms);
                let ly = y + 18.0 + ROW * row as f64;
                // Labels right of the middle end at their leader so they stay on the page.
                let (anchor, tx) = if ex > LEFT + 0.5 * (WIDTH - LEFT - RIGHT) {
                    ("end", ex - 4.0)
                } else {
                    ("start", ex + 4.0)
                };
                let _ = writeln!(
                    svg,
                    r##"<line x1="{ex:.1}" y1="{y}" x2="{ex:.1}" y2="{:.1}" stroke="#ccc"/>"##,
                    ly - 4.0
                );
                let _ = writeln!(svg, r#"<circle cx="{ex:.1}" cy="{y}" r="4" fill="{colour}"/>"#);
                let _ = writeln!(
                    svg,
                    r#"<text x="{tx:.1}" y="{ly}" text-anchor="{anchor}">{} (#{}, {} ms)</text>"#,
                    escape_xml(&e.label),
                    e.block,
                    e.ms
                );
            }
            y += lane(s);
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// Write `report.json`, `report.md` and `timeline.svg` into `dir` (created if needed).
pub fn write(report: &Report, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).wrap_err_with(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(report)?;
    for (name, body) in
        [("report.json", json), ("report.md", report.markdown()), ("timeline.svg", report.svg())]
    {
        let path = dir.join(name);
        std::fs::write(&path, body).wrap_err_with(|| format!("writing {}", path.display()))?;
    }
    for scenario in &report.scenarios {
        if let Some(postmortem) = &scenario.postmortem {
            let path = dir.join(format!("postmortem-{}.md", scenario.scenario));
            std::fs::write(&path, postmortem)
                .wrap_err_with(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Wei as ether without trailing zeros ("4.5").
pub(crate) fn eth(wei: alloy::primitives::U256) -> String {
    let text = alloy::primitives::utils::format_ether(wei);
    match text.split_once('.') {
        Some((whole, fraction)) if fraction.trim_end_matches('0').is_empty() => whole.to_owned(),
        Some((whole, fraction)) => format!("{whole}.{}", fraction.trim_end_matches('0')),
        None => text,
    }
}

fn escape_md(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn escape_xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, passed: bool) -> Check {
        Check { name: name.into(), passed, detail: format!("{name} detail") }
    }

    fn event(label: &str, block: u64, ms: u64) -> Event {
        Event { label: label.into(), block, ms }
    }

    fn drain(passed: bool) -> ScenarioReport {
        ScenarioReport::new(
            "drain",
            vec![check("finding recorded", true), check("vault paused", passed)],
            vec![
                event("pause mined", 14, 2100),
                event("anomaly mined", 10, 0),
                event("finding <recorded>", 10, 40),
            ],
            Latencies {
                detection_ms: Some(40),
                detection_blocks: Some(0),
                pause_ms: Some(2100),
                pause_blocks: Some(4),
            },
        )
    }

    #[test]
    fn passed_is_derived_from_every_check_and_scenario() {
        assert!(drain(true).passed);
        assert!(!drain(false).passed);
        assert!(Report::new(138, vec![drain(true)]).passed);
        assert!(!Report::new(138, vec![drain(true), drain(false)]).passed);
        assert!(!Report::new(138, vec![]).passed, "nothing rehearsed is not a pass");
        assert!(!ScenarioReport::new("empty", vec![], vec![], Latencies::default()).passed);
    }

    #[test]
    fn timeline_is_ordered_by_time() {
        let labels: Vec<_> = drain(true).timeline.iter().map(|e| e.label.clone()).collect();
        assert_eq!(labels, ["anomaly mined", "finding <recorded>", "pause mined"]);
    }

    #[test]
    fn markdown_names_the_failed_check() {
        let md = Report::new(138, vec![drain(false)]).markdown();
        assert!(md.starts_with("# guardian rehearsal: FAILED"));
        assert!(md.contains("| vault paused | **FAILED** | vault paused detail |"), "{md}");
        assert!(md.contains("Detection: 40 ms, 0 blocks. Anomaly → pause: 2100 ms, 4 blocks."));
    }

    #[test]
    fn svg_is_well_formed_and_escaped() {
        let svg = Report::new(138, vec![drain(true), drain(false)]).svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("finding &lt;recorded&gt;"));
        assert!(!svg.contains("<recorded>"));
        assert_eq!(svg.matches("<circle").count(), 6);
        // The last event sits at the right edge, the anomaly at the left one.
        assert!(svg.contains(r#"cx="140.0""#) && svg.contains(r#"cx="920.0""#), "{svg}");

        // A scenario of checks only says so instead of drawing an empty lane.
        let levers = ScenarioReport::new(
            "levers",
            vec![Check::pass("vault can be paused", "ok"), Check::fail("stray", "not the owner")],
            vec![],
            Latencies::default(),
        );
        let svg = Report::new(138, vec![levers]).svg();
        assert!(svg.contains("no incident timeline: 1 of 2 checks passed"), "{svg}");
    }

    #[test]
    fn writes_the_three_files_and_json_roundtrips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let report = Report::new(138, vec![drain(true)]);
        write(&report, dir.path()).expect("write");
        let json = std::fs::read_to_string(dir.path().join("report.json")).expect("json");
        assert_eq!(serde_json::from_str::<Report>(&json).expect("parse"), report);
        assert!(dir.path().join("report.md").is_file());
        assert!(dir.path().join("timeline.svg").is_file());
    }
}
