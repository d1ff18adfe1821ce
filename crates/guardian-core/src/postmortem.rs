//! The runbook's post-mortem, filled from the audit log alone.
//!
//! [`PostMortem::build`] reads an incident's entries (from the database, or from an export made
//! by `guardian audit export`, so it can be reproduced on another machine) and states the facts:
//! header, summary, timeline, root cause (prefilled), impact, what went well and wrong (from
//! measured facts against the operators' matrix), action items, lessons (left to the operators).
//! Rendering is Markdown, HTML or JSON; no I/O here.

use std::{collections::BTreeMap, fmt::Write as _};

use alloy_primitives::{Address, B256, U256, utils::format_ether};
use serde::Serialize;

use crate::{
    audit::{Entry, Record},
    incident::{AuditKind, Millis, ResponsePolicy, State},
    severity::Severity,
};

/// Why no post-mortem could be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PostMortemError {
    /// The log holds nothing of that incident.
    #[error("the audit log holds no entry of incident #{0}")]
    UnknownIncident(i64),
}

/// One line of the timeline: a lifecycle event of the incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineRow {
    /// UTC, to the millisecond.
    pub at: String,
    /// Unix milliseconds.
    pub at_ms: Millis,
    /// The block it happened in or was seen at.
    pub block: Option<u64>,
    /// Milliseconds after the anomaly was detected (negative: before, a prediction).
    pub after_ms: i64,
    /// The lifecycle step (`opened`, `executed`, ...), as `guardian incidents show` names it.
    pub kind: String,
    /// The state it left the incident in.
    pub state: State,
    /// In words.
    pub detail: String,
}

/// The root cause, prefilled from the findings; the operators complete it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootCause {
    /// The rules that fired.
    pub rules: Vec<String>,
    /// Each finding's evidence, in words.
    pub evidence: Vec<String>,
    /// The transactions involved (mined, or predicted from the mempool).
    pub transactions: Vec<B256>,
}

/// What the incident cost and touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Impact {
    /// The contract's ether balance at the block before the anomaly.
    pub at_risk_wei: Option<U256>,
    /// What left it before containment.
    pub moved_wei: Option<U256>,
    /// Blocks from the anomaly to the pause.
    pub blocks_to_containment: Option<u64>,
    /// Milliseconds from detection to the verified pause.
    pub ms_to_containment: Option<u64>,
    /// The config rollbacks (plan, undo backup).
    pub configs: Vec<String>,
}

/// One row of the action items table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionItem {
    /// What to do.
    pub action: String,
    /// Who (left blank for the operators).
    pub owner: String,
    /// By when (left blank).
    pub due: String,
}

/// The post-mortem of one incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PostMortem {
    /// The incident.
    pub incident: i64,
    /// The watched contract's name.
    pub contract: String,
    /// Its address.
    pub address: Option<Address>,
    /// The highest severity of its findings.
    pub severity: Option<Severity>,
    /// When it opened (UTC).
    pub date: String,
    /// From opening to resolution (or to the last entry, when still open), in milliseconds.
    pub duration_ms: u64,
    /// Whether it is resolved.
    pub resolved: bool,
    /// The state at its last entry.
    pub state: State,
    /// Generated from the findings and actions.
    pub summary: String,
    /// Every lifecycle event.
    pub timeline: Vec<TimelineRow>,
    /// Prefilled.
    pub root_cause: RootCause,
    /// Funds, blocks, time and configs.
    pub impact: Impact,
    /// Measured facts that met their target.
    pub went_well: Vec<String>,
    /// Measured facts that did not, retries and failures.
    pub went_wrong: Vec<String>,
    /// One per fact that went wrong, plus the standing ones.
    pub action_items: Vec<ActionItem>,
    /// Left to the operators.
    pub lessons_learned: String,
}

/// What the operators write themselves.
pub const TO_COMPLETE: &str = "_To be completed by the operators._";

fn utc(ms: Millis) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| format!("{}.{:03} UTC", t.strftime("%Y-%m-%d %H:%M:%S"), ms.rem_euclid(1000)))
        .unwrap_or_else(|| ms.to_string())
}

/// `1 h 02 min 05 s`, `3.2 s`, `850 ms`.
pub fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {:02} s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{} h {:02} min", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

fn ether(wei: U256) -> String {
    let text = format_ether(wei);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} ETH ({wei} wei)")
}

impl PostMortem {
    /// The post-mortem of `incident` from `entries` (the whole log or an export), judged against
    /// `policy` (the operators' matrix).
    pub fn build(
        entries: &[Entry],
        incident: i64,
        policy: &ResponsePolicy,
    ) -> Result<Self, PostMortemError> {
        let mine: Vec<&Entry> =
            entries.iter().filter(|e| e.record.incident() == Some(incident)).collect();
        // Proposals and signatures name the proposal, not always the incident.
        let proposals: BTreeMap<B256, u64> = mine
            .iter()
            .filter_map(|e| match &e.record {
                Record::Proposal { safe_tx_hash, .. } => Some((*safe_tx_hash, e.at_ms)),
                _ => None,
            })
            .collect();
        let signatures: Vec<(&Entry, Address, bool, B256)> = entries
            .iter()
            .filter_map(|e| match &e.record {
                Record::SignatureAccepted { safe_tx_hash, owner, onchain }
                    if proposals.contains_key(safe_tx_hash) =>
                {
                    Some((e, *owner, *onchain, *safe_tx_hash))
                }
                _ => None,
            })
            .collect();
        let executions: Vec<(&Entry, B256, Address, String)> = entries
            .iter()
            .filter_map(|e| match &e.record {
                Record::Executed { safe_tx_hash, tx, sender, by }
                    if proposals.contains_key(safe_tx_hash) =>
                {
                    Some((e, *tx, *sender, by.clone()))
                }
                _ => None,
            })
            .collect();

        let steps: Vec<(&Entry, AuditKind, &crate::incident::Event, State, Option<u64>)> = mine
            .iter()
            .filter_map(|e| match &e.record {
                Record::Incident { kind, event, to, block, .. } => {
                    Some((*e, *kind, event, *to, *block))
                }
                _ => None,
            })
            .collect();
        let Some(first) = steps.first() else {
            return Err(PostMortemError::UnknownIncident(incident));
        };

        let mut contract = String::new();
        let mut address = None;
        let mut severity: Option<Severity> = None;
        let mut root =
            RootCause { rules: Vec::new(), evidence: Vec::new(), transactions: Vec::new() };
        let mut anomaly: Option<(u64, Millis)> = None;
        let mut predicted = false;
        let mut retracted = 0usize;
        for e in &mine {
            match &e.record {
                Record::FindingRecorded {
                    rule,
                    contract: c,
                    address: a,
                    severity: s,
                    block,
                    tx,
                    predicted_from,
                    summary,
                    ..
                } => {
                    contract.clone_from(c);
                    address = Some(*a);
                    severity = Some(severity.map_or(*s, |old| old.max(*s)));
                    if !root.rules.contains(rule) {
                        root.rules.push(rule.clone());
                    }
                    root.evidence.push(format!("{summary} (block {block})"));
                    for hash in tx.iter().chain(predicted_from) {
                        if !root.transactions.contains(hash) {
                            root.transactions.push(*hash);
                        }
                    }
                    predicted |= predicted_from.is_some();
                    if anomaly.is_none_or(|(b, _)| *block < b) {
                        anomaly = Some((*block, e.at_ms));
                    }
                }
                Record::FindingRetracted { .. } => retracted += 1,
                _ => {}
            }
        }
        let detected_ms = anomaly.map_or(first.0.at_ms, |(_, at)| at);
        let opened_ms = first.0.at_ms.min(detected_ms);
        let signed = |ms: Millis| -> i64 {
            i64::try_from(ms).unwrap_or(i64::MAX) - i64::try_from(detected_ms).unwrap_or(i64::MAX)
        };
        let timeline: Vec<TimelineRow> = steps
            .iter()
            .map(|(e, kind, event, to, block)| TimelineRow {
                at: utc(e.at_ms),
                at_ms: e.at_ms,
                block: *block,
                after_ms: signed(e.at_ms),
                kind: kind.as_str().to_owned(),
                state: *to,
                detail: event.describe(),
            })
            .collect();
        let at = |kind: AuditKind| steps.iter().find(|s| s.1 == kind);
        let count = |kind: AuditKind| steps.iter().filter(|s| s.1 == kind).count();
        let last = steps.last().map_or(first, |l| l);
        let resolved = at(AuditKind::Resolved);
        let end_ms = resolved.map_or(last.0.at_ms, |r| r.0.at_ms);

        // Impact.
        let impact_record = mine.iter().find_map(|e| match &e.record {
            Record::Impact { at_risk_wei, moved_wei, anomaly_block, contained_block, .. } => {
                Some((*at_risk_wei, *moved_wei, *anomaly_block, *contained_block))
            }
            _ => None,
        });
        let contained = at(AuditKind::Contained);
        let blocks_to_containment = match (impact_record, contained, anomaly) {
            (Some((_, _, from, to)), _, _) => Some(to.saturating_sub(from)),
            (None, Some(c), Some((from, _))) => c.4.map(|to| to.saturating_sub(from)),
            _ => None,
        };
        let ms_to_containment = contained.map(|c| c.0.at_ms.saturating_sub(detected_ms));
        let configs: Vec<String> = mine
            .iter()
            .filter_map(|e| match &e.record {
                Record::Rollback { plan, undo_stamp, error, .. } => {
                    Some(match (undo_stamp, error) {
                        (_, Some(error)) => format!("{plan}: FAILED: {error}"),
                        (Some(undo), None) => {
                            format!("{plan} (undo: guardian backup restore {undo})")
                        }
                        (None, None) => plan.clone(),
                    })
                }
                _ => None,
            })
            .chain(steps.iter().filter_map(|s| match s.2 {
                crate::incident::Event::RollbackFinished { undo, summary } => Some(match undo {
                    Some(undo) => format!("{summary} (undo: guardian backup restore {undo})"),
                    None => summary.clone(),
                }),
                _ => None,
            }))
            .collect();
        let impact = Impact {
            at_risk_wei: impact_record.map(|i| i.0),
            moved_wei: impact_record.map(|i| i.1),
            blocks_to_containment,
            ms_to_containment,
            configs,
        };

        // What went well and wrong, from the measured facts.
        let (mut well, mut wrong) = (Vec::new(), Vec::new());
        if let Some((block, _)) = anomaly {
            if predicted {
                well.push(format!(
                    "Detected from the mempool before the attack was mined (block {block})."
                ));
            } else {
                well.push(format!("Detected in the anomaly's own block {block}."));
            }
        }
        let severity_now = severity.unwrap_or(Severity::Low);
        let deadline = policy.deadline(severity_now);
        match (ms_to_containment, blocks_to_containment) {
            (Some(ms), blocks) if severity_now == Severity::Critical => {
                let blocks = blocks.map(|b| format!("{b} block(s), ")).unwrap_or_default();
                let fact = format!(
                    "Contained {blocks}{} after detection; the matrix says act immediately.",
                    duration(ms)
                );
                if blocks_to_containment.is_some_and(|b| b <= 1) {
                    well.push(fact)
                } else {
                    wrong.push(fact)
                }
            }
            (Some(ms), _) => {
                let fact = format!(
                    "Contained {} after detection; the matrix deadline for {} is {}.",
                    duration(ms),
                    severity_now.as_str(),
                    duration(deadline)
                );
                if ms <= deadline { well.push(fact) } else { wrong.push(fact) }
            }
            (None, _) if retracted > 0 && count(AuditKind::Withdrawn) > 0 => {
                well.push("The finding was retracted (a reorg) and its proposal withdrawn.".into());
            }
            (None, _) => wrong.push("Never contained: no verified pause in the log.".into()),
        }
        for (e, owner, onchain, hash) in &signatures {
            let after = e.at_ms.saturating_sub(proposals.get(hash).copied().unwrap_or(e.at_ms));
            let how = if *onchain { "on chain (approveHash)" } else { "off chain (EIP-712)" };
            let fact =
                format!("Owner {owner} approved {how} {} after the proposal.", duration(after));
            if severity_now != Severity::Critical && after > deadline {
                wrong.push(fact)
            } else {
                well.push(fact)
            }
        }
        for (_, tx, sender, by) in &executions {
            well.push(format!("The pause was executed in {tx} by {sender} ({by})."));
        }
        let failures = [
            (
                AuditKind::ModulePauseUnavailable,
                "the immediate pause through the module was unavailable",
            ),
            (AuditKind::ProposalFailed, "a proposal failed"),
            (AuditKind::ExecutionFailed, "an execution failed"),
            (AuditKind::RollbackFailed, "the config rollback failed"),
            (AuditKind::RecoveryFailed, "a recovery check failed"),
            (AuditKind::Escalated, "the incident escalated past its response deadline"),
        ];
        for (kind, what) in failures {
            for step in steps.iter().filter(|s| s.1 == kind) {
                wrong.push(format!("At {}, {what}: {}.", utc(step.0.at_ms), step.2.describe()));
            }
        }
        let (sent, failed): (Vec<_>, Vec<_>) = mine
            .iter()
            .filter_map(|e| match &e.record {
                Record::NotificationSent { channel, attempts, .. } => {
                    Some((true, channel, *attempts))
                }
                Record::NotificationFailed { channel, .. } => Some((false, channel, 0)),
                _ => None,
            })
            .partition(|n| n.0);
        if !sent.is_empty() {
            let retried = sent.iter().filter(|n| n.2 > 1).count();
            let fact =
                format!("{} notification(s) delivered ({retried} after retries).", sent.len());
            if retried == 0 { well.push(fact) } else { wrong.push(fact) }
        }
        if !failed.is_empty() {
            let mut channels: Vec<&str> = failed.iter().map(|n| n.1.as_str()).collect();
            channels.dedup();
            wrong.push(format!(
                "{} notification(s) failed on their first delivery ({}).",
                failed.len(),
                channels.join(", ")
            ));
        }
        if at(AuditKind::RollbackDone).is_some() {
            well.push("The deployment configs were rolled back, with an undo backup.".into());
        }
        if at(AuditKind::RecoveryVerified).is_some() {
            well.push("Recovery verified after the rollback (restarts, health checks).".into());
        }

        let mut action_items: Vec<ActionItem> = wrong
            .iter()
            .map(|w| ActionItem {
                action: format!("Follow up: {w}"),
                owner: String::new(),
                due: String::new(),
            })
            .collect();
        action_items.push(ActionItem {
            action: "Complete the root cause and fix the contract before any unpause.".into(),
            owner: String::new(),
            due: String::new(),
        });
        if at(AuditKind::Unpaused).is_none() && contained.is_some() {
            action_items.push(ActionItem {
                action: format!(
                    "Decide the unpause of {contract} (guardian unpause, full threshold)."
                ),
                owner: String::new(),
                due: String::new(),
            });
        }

        let mut summary = format!(
            "{} incident #{incident} on {contract}{}",
            severity.map_or("Unrated".to_owned(), |s| {
                let name = s.as_str();
                name[..1].to_uppercase() + &name[1..]
            }),
            address.map(|a| format!(" ({a})")).unwrap_or_default()
        );
        if !root.rules.is_empty() {
            let block = anomaly.map(|(b, _)| format!(" at block {b}")).unwrap_or_default();
            let _ = write!(summary, ": rule {} fired{block}", root.rules.join(", "));
        }
        if let Some(c) = contained {
            let how = if steps.iter().any(|s| s.1 == AuditKind::ModulePauseSent) {
                "paused at once through the pause module"
            } else {
                "paused through the Safe"
            };
            let _ = write!(
                summary,
                "; {how}, verified at block {}",
                c.4.map_or("?".into(), |b| b.to_string())
            );
            if let Some(ms) = ms_to_containment {
                let _ = write!(summary, ", {} after detection", duration(ms));
            }
        }
        if let Some(moved) = impact.moved_wei {
            let _ = write!(summary, "; {} moved before containment", ether(moved));
        }
        if at(AuditKind::RollbackDone).is_some() {
            summary.push_str("; configs rolled back");
        }
        if at(AuditKind::RecoveryVerified).is_some() {
            summary.push_str("; recovery verified");
        }
        match resolved {
            Some(r) => {
                let _ = write!(
                    summary,
                    "; resolved after {}.",
                    duration(r.0.at_ms.saturating_sub(opened_ms))
                );
            }
            None => {
                let _ = write!(summary, "; still {} at the last entry.", last.3.as_str());
            }
        }

        Ok(Self {
            incident,
            contract,
            address,
            severity,
            date: utc(opened_ms),
            duration_ms: end_ms.saturating_sub(opened_ms),
            resolved: resolved.is_some(),
            state: last.3,
            summary,
            timeline,
            root_cause: root,
            impact,
            went_well: well,
            went_wrong: wrong,
            action_items,
            lessons_learned: TO_COMPLETE.to_owned(),
        })
    }

    /// The section headings, in order (Markdown and HTML share them).
    pub const SECTIONS: [&'static str; 8] = [
        "Summary",
        "Timeline",
        "Root cause",
        "Impact",
        "What went well",
        "What went wrong",
        "Action items",
        "Lessons learned",
    ];

    fn duration_text(&self) -> String {
        let d = duration(self.duration_ms);
        if self.resolved { d } else { format!("{d} (not resolved: {})", self.state.as_str()) }
    }

    fn impact_lines(&self) -> Vec<String> {
        let i = &self.impact;
        let mut lines = vec![
            format!("Funds at risk: {}", i.at_risk_wei.map_or("not measured".into(), ether)),
            format!(
                "Moved before containment: {}",
                i.moved_wei.map_or("not measured".into(), ether)
            ),
            format!(
                "Time to containment: {}",
                match (i.blocks_to_containment, i.ms_to_containment) {
                    (Some(b), Some(ms)) => format!("{b} block(s), {}", duration(ms)),
                    (None, Some(ms)) => duration(ms),
                    _ => "not contained".into(),
                }
            ),
        ];
        if i.configs.is_empty() {
            lines.push("Affected configs: none rolled back".into());
        } else {
            lines.extend(i.configs.iter().map(|c| format!("Affected configs: {c}")));
        }
        lines
    }

    /// The post-mortem as Markdown.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Post-mortem: incident #{} on {}\n", self.incident, self.contract);
        let _ = writeln!(md, "- **Date:** {}", self.date);
        let _ = writeln!(md, "- **Duration:** {}", self.duration_text());
        let _ =
            writeln!(md, "- **Severity:** {}\n", self.severity.map_or("unrated", |s| s.as_str()));
        let _ = writeln!(md, "## Summary\n\n{}\n", self.summary);
        let _ = writeln!(
            md,
            "## Timeline\n\n| UTC | block | after detection | event | detail |\n| --- | --- | --- | --- | --- |"
        );
        for row in &self.timeline {
            let _ = writeln!(
                md,
                "| {} | {} | {} ms | {} | {} |",
                row.at,
                row.block.map_or("".into(), |b| b.to_string()),
                row.after_ms,
                row.kind,
                row.detail.replace('|', "\\|")
            );
        }
        let _ = writeln!(md, "\n## Root cause\n");
        let _ = writeln!(md, "- Rules: {}", self.root_cause.rules.join(", "));
        for e in &self.root_cause.evidence {
            let _ = writeln!(md, "- Evidence: {e}");
        }
        for tx in &self.root_cause.transactions {
            let _ = writeln!(md, "- Transaction: {tx}");
        }
        let _ = writeln!(md, "\n{TO_COMPLETE}\n\n## Impact\n");
        for line in self.impact_lines() {
            let _ = writeln!(md, "- {line}");
        }
        for (title, items) in
            [("What went well", &self.went_well), ("What went wrong", &self.went_wrong)]
        {
            let _ = writeln!(md, "\n## {title}\n");
            if items.is_empty() {
                let _ = writeln!(md, "- nothing measured");
            }
            for item in items {
                let _ = writeln!(md, "- {item}");
            }
        }
        let _ = writeln!(
            md,
            "\n## Action items\n\n| # | action | owner | due |\n| --- | --- | --- | --- |"
        );
        for (i, item) in self.action_items.iter().enumerate() {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                i + 1,
                item.action.replace('|', "\\|"),
                item.owner,
                item.due
            );
        }
        let _ = writeln!(md, "\n## Lessons learned\n\n{}", self.lessons_learned);
        md
    }

    /// The post-mortem as a self-contained HTML page.
    pub fn html(&self) -> String {
        let e = escape;
        let mut h = String::new();
        let title = format!("Post-mortem: incident #{} on {}", self.incident, e(&self.contract));
        let _ = write!(
            h,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
             <style>body{{font-family:sans-serif;max-width:60rem;margin:2rem auto}}table{{border-collapse:collapse}}\
             td,th{{border:1px solid #ccc;padding:.2rem .5rem;text-align:left}}</style></head><body>\n<h1>{title}</h1>\n<ul>\
             <li><b>Date:</b> {}</li><li><b>Duration:</b> {}</li><li><b>Severity:</b> {}</li></ul>\n",
            e(&self.date),
            e(&self.duration_text()),
            self.severity.map_or("unrated", |s| s.as_str())
        );
        let _ = write!(
            h,
            "<h2>Summary</h2>\n<p>{}</p>\n<h2>Timeline</h2>\n<table><tr><th>UTC</th><th>block</th><th>after detection</th><th>event</th><th>detail</th></tr>\n",
            e(&self.summary)
        );
        for row in &self.timeline {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{} ms</td><td>{}</td><td>{}</td></tr>",
                e(&row.at),
                row.block.map_or(String::new(), |b| b.to_string()),
                row.after_ms,
                e(&row.kind),
                e(&row.detail)
            );
        }
        let _ = write!(
            h,
            "</table>\n<h2>Root cause</h2>\n<ul><li>Rules: {}</li>",
            e(&self.root_cause.rules.join(", "))
        );
        for ev in &self.root_cause.evidence {
            let _ = write!(h, "<li>Evidence: {}</li>", e(ev));
        }
        for tx in &self.root_cause.transactions {
            let _ = write!(h, "<li>Transaction: {tx}</li>");
        }
        let _ = write!(
            h,
            "</ul>\n<p><em>To be completed by the operators.</em></p>\n<h2>Impact</h2>\n<ul>"
        );
        for line in self.impact_lines() {
            let _ = write!(h, "<li>{}</li>", e(&line));
        }
        h.push_str("</ul>\n");
        for (title, items) in
            [("What went well", &self.went_well), ("What went wrong", &self.went_wrong)]
        {
            let _ = write!(h, "<h2>{title}</h2>\n<ul>");
            for item in items {
                let _ = write!(h, "<li>{}</li>", e(item));
            }
            h.push_str("</ul>\n");
        }
        h.push_str("<h2>Action items</h2>\n<table><tr><th>#</th><th>action</th><th>owner</th><th>due</th></tr>\n");
        for (i, item) in self.action_items.iter().enumerate() {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                i + 1,
                e(&item.action),
                e(&item.owner),
                e(&item.due)
            );
        }
        h.push_str("</table>\n<h2>Lessons learned</h2>\n<p><em>To be completed by the operators.</em></p>\n</body></html>\n");
        h
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
#[path = "postmortem_tests.rs"]
mod tests;
