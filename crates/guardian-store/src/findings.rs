//! Findings and their occurrences: one open finding per rule and contract, every anomaly
//! recorded once, a re-included anomaly recognised after a reorg, a condition that keeps
//! holding kept in one finding.

use alloy_primitives::{B256, U256};
use eyre::{Result, WrapErr, bail, eyre};
use guardian_core::{
    finding::{Anomaly, Evidence, Finding},
    severity::{Action, Severity},
};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::{Store, parse_b256, to_i64, to_u64};

/// Lifecycle of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingStatus {
    /// Its incident has not paused the contract yet and is not closed: new occurrences of
    /// the same rule and contract attach to it.
    Open,
    /// Answered: its incident paused the contract (verified), or was resolved or cancelled.
    Resolved,
    /// The blocks it was seen in were orphaned by a reorg.
    Retracted,
}

impl FindingStatus {
    /// Lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Resolved => "resolved",
            Self::Retracted => "retracted",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "open" => Self::Open,
            "resolved" => Self::Resolved,
            "retracted" => Self::Retracted,
            other => bail!("unknown finding status {other:?} in the database"),
        })
    }
}

/// What recording one finding did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A new open finding was created.
    New(i64),
    /// A new occurrence was attached to this finding (open, or still holding its condition).
    Occurrence(i64),
    /// This exact occurrence was already recorded (a replayed block): nothing changed.
    Duplicate(i64),
    /// A reorg's new branch mined a retracted anomaly again: the finding stands again.
    Reinstated(i64),
}

impl Recorded {
    /// The finding's id.
    pub fn finding_id(self) -> i64 {
        match self {
            Self::New(id) | Self::Occurrence(id) | Self::Duplicate(id) | Self::Reinstated(id) => id,
        }
    }
}

/// One occurrence's summary and block: the latest, or the strongest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sighting {
    /// What the rule said then.
    pub summary: String,
    /// Where.
    pub block: u64,
}

/// A finding as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredFinding {
    /// Row id.
    pub id: i64,
    /// The finding as the engine produced it at its first occurrence.
    pub finding: Finding,
    /// Where it stands.
    pub status: FindingStatus,
    /// How many (non-retracted) occurrences fed it.
    pub occurrences: u64,
    /// When it was recorded (UTC, RFC 3339).
    pub created_at: String,
    /// The incident it belongs to.
    pub incident_id: Option<i64>,
    /// The latest occurrence.
    pub latest: Option<Sighting>,
    /// The strongest occurrence, for rules with a magnitude (a window's total, a rate).
    pub peak: Option<Sighting>,
}

impl StoredFinding {
    /// One line for humans: the first occurrence's summary, or for a finding fed by several,
    /// its peak and its latest value.
    pub fn summary(&self) -> String {
        let first = &self.finding.summary;
        match (&self.peak, &self.latest) {
            _ if self.occurrences <= 1 => first.clone(),
            (Some(peak), Some(latest)) if peak == latest => {
                format!("peak and latest (block {}): {}", latest.block, latest.summary)
            }
            (Some(peak), Some(latest)) => format!(
                "peak (block {}): {}; latest (block {}): {}",
                peak.block, peak.summary, latest.block, latest.summary
            ),
            (_, Some(latest)) => format!(
                "{} occurrences; first: {first}; latest (block {}): {}",
                self.occurrences, latest.block, latest.summary
            ),
            _ => first.clone(),
        }
    }
}

/// One anomaly that fed a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Occurrence {
    /// The finding it fed.
    pub finding_id: i64,
    /// The rule that fired.
    pub rule: String,
    /// Where it was seen.
    pub block_number: u64,
    /// The block's hash.
    pub block_hash: B256,
    /// The transaction, for rules that fire on one (events, windows, revert rates).
    pub tx_hash: Option<B256>,
    /// The log, for rules that fire on one.
    pub log_index: Option<u64>,
}

pub(crate) const FINDING_SELECT: &str =
    "SELECT f.id, f.rule, f.contract, f.address, f.severity, f.action_json,
    f.summary, f.evidence, f.status, f.created_at,
    (SELECT COUNT(*) FROM occurrences o WHERE o.finding_id = f.id AND o.retracted = 0),
    f.incident_id, f.latest_summary, f.latest_block, f.peak_summary, f.peak_block,
    f.anomaly, f.magnitude
    FROM findings f";

pub(crate) fn finding_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<StoredFinding>> {
    let id: i64 = r.get(0)?;
    let rule: String = r.get(1)?;
    let contract: String = r.get(2)?;
    let address: String = r.get(3)?;
    let severity: String = r.get(4)?;
    let action: String = r.get(5)?;
    let summary: String = r.get(6)?;
    let evidence: String = r.get(7)?;
    let status: String = r.get(8)?;
    let created_at: String = r.get(9)?;
    let occurrences: i64 = r.get(10)?;
    let incident_id: Option<i64> = r.get(11)?;
    let sighting = |summary: Option<String>, block: Option<i64>| {
        summary.zip(block).map(|(summary, block)| Sighting {
            summary,
            block: u64::try_from(block).unwrap_or_default(),
        })
    };
    let latest = sighting(r.get(12)?, r.get(13)?);
    let peak = sighting(r.get(14)?, r.get(15)?);
    let anomaly: Option<String> = r.get(16)?;
    let magnitude: Option<String> = r.get(17)?;
    Ok((|| {
        let evidence: Evidence = serde_json::from_str(&evidence).wrap_err("stored evidence")?;
        Ok(StoredFinding {
            id,
            finding: Finding {
                rule,
                contract,
                address: address.parse().wrap_err("stored address")?,
                severity: severity.parse::<Severity>().map_err(|e| eyre!(e))?,
                action: serde_json::from_str::<Action>(&action).wrap_err("stored action")?,
                summary,
                anomaly: match anomaly {
                    Some(json) => serde_json::from_str(&json).wrap_err("stored anomaly")?,
                    None => Anomaly::Block,
                },
                magnitude: magnitude
                    .map(|m| m.parse::<U256>().wrap_err("stored magnitude"))
                    .transpose()?,
                evidence,
            },
            status: FindingStatus::parse(&status)?,
            occurrences: to_u64(occurrences)?,
            created_at,
            incident_id,
            latest,
            peak,
        })
    })())
}

/// Record `finding` in the caller's transaction.
pub(crate) fn record_finding(tx: &Connection, finding: &Finding) -> Result<Recorded> {
    let address = finding.address.to_string();
    let evidence = serde_json::to_string(&finding.evidence)?;
    let ev = &finding.evidence;
    let tx_hash = ev.tx_hash.map(|h| h.to_string()).unwrap_or_default();
    let log_index = match ev.log_index {
        Some(i) => to_i64(i)?,
        None => -1,
    };
    let anomaly_key = finding.anomaly_key();
    let block_number = to_i64(ev.block_number)?;

    let existing_occurrence: Option<i64> = tx
        .query_row(
            "SELECT finding_id FROM occurrences
             WHERE rule = ?1 AND address = ?2 AND block_hash = ?3 AND tx_hash = ?4 AND log_index = ?5",
            params![finding.rule, address, ev.block_hash.to_string(), tx_hash, log_index],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = existing_occurrence {
        return Ok(Recorded::Duplicate(id));
    }

    // An anomaly predicted from a pending transaction (recorded at the zero block hash), now
    // mined after all: the prediction is confirmed in place, one occurrence, no new event.
    if ev.block_hash != B256::ZERO {
        let predicted: Option<(i64, i64, String)> = tx
            .query_row(
                "SELECT id, finding_id, evidence FROM occurrences
                 WHERE rule = ?1 AND address = ?2 AND anomaly_key = ?3 AND block_hash = ?4
                   AND retracted = 0
                 ORDER BY id LIMIT 1",
                params![finding.rule, address, anomaly_key, B256::ZERO.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        if let Some((occurrence, finding_id, before)) = predicted {
            let mut confirmed = finding.evidence.clone();
            confirmed.predicted_from =
                serde_json::from_str::<Evidence>(&before).ok().and_then(|e| e.predicted_from);
            tx.execute(
                "UPDATE occurrences SET block_number = ?2, block_hash = ?3, tx_hash = ?4,
                 log_index = ?5, evidence = ?6 WHERE id = ?1",
                params![
                    occurrence,
                    block_number,
                    ev.block_hash.to_string(),
                    tx_hash,
                    log_index,
                    serde_json::to_string(&confirmed)?
                ],
            )?;
            note_occurrence(tx, finding_id, finding)?;
            return Ok(Recorded::Occurrence(finding_id));
        }
    }

    // The same anomaly, orphaned by a reorg and mined again on the new branch.
    let orphaned: Option<(i64, i64, String)> = tx
        .query_row(
            "SELECT o.id, o.finding_id, f.status FROM occurrences o JOIN findings f ON f.id = o.finding_id
             WHERE o.rule = ?1 AND o.address = ?2 AND o.anomaly_key = ?3 AND o.retracted = 1
             ORDER BY o.id DESC LIMIT 1",
            params![finding.rule, address, anomaly_key],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    if let Some((occurrence, mut finding_id, status)) = orphaned {
        let mut outcome = Recorded::Occurrence(finding_id);
        if status == FindingStatus::Retracted.as_str() {
            match open_finding(tx, &finding.rule, &address)? {
                // Another finding of the rule opened meanwhile: the anomaly feeds that one.
                Some(open) => {
                    finding_id = open;
                    outcome = Recorded::Occurrence(open);
                }
                None => {
                    tx.execute(
                        "UPDATE findings SET status = 'open',
                         updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
                        [finding_id],
                    )?;
                    outcome = Recorded::Reinstated(finding_id);
                }
            }
        }
        tx.execute(
            "UPDATE occurrences SET retracted = 0, finding_id = ?2, block_number = ?3,
             block_hash = ?4, tx_hash = ?5, log_index = ?6, evidence = ?7 WHERE id = ?1",
            params![
                occurrence,
                finding_id,
                block_number,
                ev.block_hash.to_string(),
                tx_hash,
                log_index,
                evidence
            ],
        )?;
        note_occurrence(tx, finding_id, finding)?;
        return Ok(outcome);
    }

    let attach_to = match open_finding(tx, &finding.rule, &address)? {
        Some(id) => Some(id),
        // A condition that held at the block before, in a finding closed since (its incident
        // resolved while the window was still above its threshold): the same episode, not a
        // new one.
        None if finding.anomaly == Anomaly::Block => tx
            .query_row(
                "SELECT o.finding_id FROM occurrences o JOIN findings f ON f.id = o.finding_id
                 WHERE o.rule = ?1 AND o.address = ?2 AND o.retracted = 0 AND o.block_number = ?3
                   AND f.status = 'resolved'
                 ORDER BY o.id DESC LIMIT 1",
                params![finding.rule, address, block_number - 1],
                |r| r.get(0),
            )
            .optional()?,
        None => None,
    };
    let outcome = match attach_to {
        Some(id) => {
            note_occurrence(tx, id, finding)?;
            Recorded::Occurrence(id)
        }
        None => {
            tx.execute(
                "INSERT INTO findings (rule, contract, address, severity, action, action_json,
                     summary, block_number, block_hash, evidence, status, latest_summary,
                     latest_block, peak_summary, peak_block, peak_magnitude, anomaly, magnitude)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'open', ?7, ?8, ?11, ?12, ?13,
                     ?14, ?13)",
                params![
                    finding.rule,
                    finding.contract,
                    address,
                    finding.severity.as_str(),
                    finding.action.as_str(),
                    serde_json::to_string(&finding.action)?,
                    finding.summary,
                    block_number,
                    ev.block_hash.to_string(),
                    evidence,
                    finding.magnitude.map(|_| finding.summary.clone()),
                    finding.magnitude.map(|_| block_number),
                    finding.magnitude.map(|m| m.to_string()),
                    serde_json::to_string(&finding.anomaly)?,
                ],
            )?;
            Recorded::New(tx.last_insert_rowid())
        }
    };
    tx.execute(
        "INSERT INTO occurrences (finding_id, rule, address, block_number, block_hash, tx_hash,
             log_index, evidence, anomaly_key, seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            outcome.finding_id(),
            finding.rule,
            address,
            block_number,
            ev.block_hash.to_string(),
            tx_hash,
            log_index,
            evidence,
            anomaly_key,
            to_i64(crate::now_ms())?,
        ],
    )?;
    Ok(outcome)
}

fn open_finding(tx: &Connection, rule: &str, address: &str) -> Result<Option<i64>> {
    Ok(tx
        .query_row(
            "SELECT id FROM findings WHERE rule = ?1 AND address = ?2 AND status = 'open'",
            params![rule, address],
            |r| r.get(0),
        )
        .optional()?)
}

/// Keep the finding's latest occurrence, and its strongest one for rules with a magnitude.
fn note_occurrence(tx: &Connection, id: i64, finding: &Finding) -> Result<()> {
    let block = to_i64(finding.evidence.block_number)?;
    tx.execute(
        "UPDATE findings SET latest_summary = ?2, latest_block = ?3,
         updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
        params![id, finding.summary, block],
    )?;
    let Some(magnitude) = finding.magnitude else { return Ok(()) };
    let peak: Option<String> =
        tx.query_row("SELECT peak_magnitude FROM findings WHERE id = ?1", [id], |r| r.get(0))?;
    let higher = match peak.as_deref().map(str::parse::<U256>) {
        Some(Ok(peak)) => magnitude > peak,
        _ => true,
    };
    if higher {
        tx.execute(
            "UPDATE findings SET peak_summary = ?2, peak_block = ?3, peak_magnitude = ?4
             WHERE id = ?1",
            params![id, finding.summary, block, magnitude.to_string()],
        )?;
    }
    Ok(())
}

impl Store {
    /// Findings, newest first; `status` filters when given.
    pub fn findings(&self, status: Option<FindingStatus>) -> Result<Vec<StoredFinding>> {
        let mut stmt = self.conn.prepare(&format!(
            "{FINDING_SELECT} WHERE (?1 IS NULL OR f.status = ?1) ORDER BY f.id DESC"
        ))?;
        let rows = stmt.query_map([status.map(FindingStatus::as_str)], finding_row)?;
        rows.map(|r| r?).collect()
    }

    /// The findings of incident `id`, oldest first.
    pub fn incident_findings(&self, id: i64) -> Result<Vec<StoredFinding>> {
        let mut stmt = self
            .conn
            .prepare(&format!("{FINDING_SELECT} WHERE f.incident_id = ?1 ORDER BY f.id"))?;
        let rows = stmt.query_map([id], finding_row)?;
        rows.map(|r| r?).collect()
    }

    /// One finding by id.
    pub fn finding(&self, id: i64) -> Result<Option<StoredFinding>> {
        self.conn
            .query_row(&format!("{FINDING_SELECT} WHERE f.id = ?1"), [id], finding_row)
            .optional()?
            .transpose()
    }

    /// Total non-retracted occurrences across all findings (for tests and status output).
    pub fn occurrence_count(&self) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM occurrences WHERE retracted = 0",
            [],
            |r| r.get(0),
        )?;
        to_u64(n)
    }

    /// Every non-retracted occurrence, oldest block first: which anomaly (transaction and log,
    /// when it has them) fed which finding. For status output and for checking exactly-once.
    pub fn occurrences(&self) -> Result<Vec<Occurrence>> {
        let mut stmt = self.conn.prepare(
            "SELECT finding_id, rule, block_number, block_hash, tx_hash, log_index FROM occurrences
             WHERE retracted = 0 ORDER BY block_number, id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?;
        rows.map(|row| {
            let (finding_id, rule, block_number, block_hash, tx_hash, log_index) = row?;
            Ok(Occurrence {
                finding_id,
                rule,
                block_number: to_u64(block_number)?,
                block_hash: parse_b256(&block_hash)?,
                tx_hash: if tx_hash.is_empty() { None } else { Some(parse_b256(&tx_hash)?) },
                log_index: u64::try_from(log_index).ok(),
            })
        })
        .collect()
    }
}
