//! Safe proposals, owner signatures and each proposal's own trail, in the guardian database.
//!
//! Proposals are keyed by `safeTxHash`: every replica derives the same key for the same
//! (chain, Safe, target, calldata, nonce), so re-proposing is idempotent by construction. A
//! pause proposal belongs to an incident ([`Proposal::incident_id`]); the incident decides when
//! it stands, is withdrawn or executes ([`crate::Store::apply`]), and this table mirrors it.

use alloy_primitives::{Address, B256, Bytes, U256};
use eyre::{Result, WrapErr, bail, eyre};
use guardian_core::{
    proposal::{ProposalKind, proposal_tx},
    safe::SafeTx,
};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::Store;

/// Where a proposal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProposalStatus {
    /// Collecting approvals; executes once the threshold is met.
    Pending,
    /// The Safe executed it (here or on another replica) and the target state was verified.
    Executed,
    /// Its Safe nonce was consumed by another transaction; see `replaced_by`.
    Stale,
    /// Nothing to do: the target was already in the requested state.
    Skipped,
    /// Withdrawn: its incident was withdrawn or cancelled, or the target was paused otherwise.
    /// Approvals are refused with the reason and it is never executed.
    Withdrawn,
}

impl ProposalStatus {
    /// Lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Executed => "executed",
            Self::Stale => "stale",
            Self::Skipped => "skipped",
            Self::Withdrawn => "withdrawn",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "pending" => Self::Pending,
            "executed" => Self::Executed,
            "stale" => Self::Stale,
            "skipped" => Self::Skipped,
            "withdrawn" => Self::Withdrawn,
            other => bail!("unknown proposal status {other:?} in the database"),
        })
    }
}

/// A proposal as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The hash owners sign; the key.
    pub safe_tx_hash: B256,
    /// Chain id of the EIP-712 domain.
    pub chain_id: u64,
    /// The Safe.
    pub safe: Address,
    /// Pause or unpause.
    pub kind: ProposalKind,
    /// The configured contract name.
    pub contract: String,
    /// The contract's address (the Safe transaction's `to`).
    pub target: Address,
    /// The Safe transaction's `data`.
    pub calldata: Bytes,
    /// The Safe nonce it was proposed at.
    pub nonce: U256,
    /// The finding that opened its incident, if any (operator proposals have none).
    pub finding_id: Option<i64>,
    /// Roll configs back once the pause is verified.
    pub then_rollback: bool,
    /// Why (the finding's summary or the operator's `--reason`).
    pub reason: String,
    /// Where it stands.
    pub status: ProposalStatus,
    /// Outcome of simulating the inner call as the Safe (`ok` or the revert).
    pub simulation: String,
    /// Block number when proposed (where to start looking for its execution).
    pub created_block: u64,
    /// The stale proposal this one re-proposes.
    pub replaces: Option<B256>,
    /// The proposal that re-proposed this stale one.
    pub replaced_by: Option<B256>,
    /// The `execTransaction` transaction.
    pub executed_tx: Option<B256>,
    /// Who sent the execution: this replica, or another sender named by address.
    pub executed_by: Option<String>,
    /// When it was proposed (UTC).
    pub created_at: String,
    /// The incident it answers (pause proposals).
    #[serde(default)]
    pub incident_id: Option<i64>,
    /// Why it was withdrawn.
    #[serde(default)]
    pub withdrawn_reason: Option<String>,
}

impl Proposal {
    /// The Safe transaction it stands for.
    pub fn safe_tx(&self) -> SafeTx {
        proposal_tx(self.target, self.calldata.clone(), self.nonce)
    }
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// proposed, skipped, approval, onchain_approval, rejection, execution_failed, executed,
    /// executed_elsewhere, stale, reproposed, rollback.
    pub event: String,
    /// Who (owner, replica, operator), when known.
    pub actor: Option<String>,
    /// What happened, in words.
    pub detail: String,
    /// When (UTC); for an aggregated rejection, the first time.
    pub at: String,
    /// How many times this happened: rejections of one source for one reason share a row.
    #[serde(default = "one")]
    pub count: u64,
    /// The last time, when it happened more than once.
    #[serde(default)]
    pub last_at: Option<String>,
}

fn one() -> u64 {
    1
}

/// A stored owner signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSignature {
    /// The owner who signed.
    pub owner: Address,
    /// The 65 bytes.
    pub signature: Bytes,
    /// When it arrived (UTC).
    pub received_at: String,
}

impl Store {
    /// Insert `proposal` unless a row with its hash exists; returns whether it was new.
    /// Recorded with its `proposed` (or `skipped`) audit entry in one transaction.
    pub fn insert_proposal(&mut self, p: &Proposal, actor: &str, detail: &str) -> Result<bool> {
        let tx = self.conn.transaction()?;
        let new = insert_row(&tx, p)?;
        if new {
            let event = if p.status == ProposalStatus::Skipped { "skipped" } else { "proposed" };
            audit(&tx, p.safe_tx_hash, event, Some(actor), detail)?;
        }
        tx.commit()?;
        Ok(new)
    }

    /// Mark `old` stale and insert `new` in its place, atomically.
    pub fn replace_stale_proposal(
        &mut self,
        old: B256,
        new: &Proposal,
        detail: &str,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE proposals SET status = 'stale', replaced_by = ?2,
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE safe_tx_hash = ?1",
            params![old.to_string(), new.safe_tx_hash.to_string()],
        )?;
        audit(&tx, old, "stale", None, detail)?;
        if insert_row(&tx, new)? {
            audit(
                &tx,
                new.safe_tx_hash,
                "reproposed",
                None,
                &format!("re-proposed at Safe nonce {} in place of stale {old}", new.nonce),
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Mark a proposal stale with nothing in its place (the target already has the state).
    pub fn mark_proposal_stale(&mut self, hash: B256, detail: &str) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE proposals SET status = 'stale',
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE safe_tx_hash = ?1",
            [hash.to_string()],
        )?;
        audit(&tx, hash, "stale", None, detail)?;
        tx.commit()?;
        Ok(())
    }

    /// Record the verified execution of a proposal.
    pub fn mark_proposal_executed(
        &mut self,
        hash: B256,
        executed_tx: B256,
        by: &str,
        event: &str,
        detail: &str,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE proposals SET status = 'executed', executed_tx = ?2, executed_by = ?3,
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE safe_tx_hash = ?1",
            params![hash.to_string(), executed_tx.to_string(), by],
        )?;
        audit(&tx, hash, event, Some(by), detail)?;
        tx.commit()?;
        Ok(())
    }

    /// Store a verified owner signature; returns false when the same owner's signature was
    /// already stored (the first one is kept).
    pub fn add_signature(&mut self, hash: B256, owner: Address, signature: &[u8]) -> Result<bool> {
        let tx = self.conn.transaction()?;
        let added = tx.execute(
            "INSERT OR IGNORE INTO proposal_signatures (safe_tx_hash, owner, signature)
             VALUES (?1, ?2, ?3)",
            params![
                hash.to_string(),
                owner.to_string(),
                Bytes::copy_from_slice(signature).to_string()
            ],
        )? == 1;
        if added {
            audit(&tx, hash, "approval", Some(&owner.to_string()), "off-chain signature verified")?;
        }
        tx.commit()?;
        Ok(added)
    }

    /// Append an audit entry.
    pub fn proposal_audit(
        &self,
        hash: B256,
        event: &str,
        actor: Option<&str>,
        detail: &str,
    ) -> Result<()> {
        audit(&self.conn, hash, event, actor, detail)
    }

    /// Record that a signature for `hash` from `source` was refused for `reason` (a kind, e.g.
    /// `not_an_owner`): the first time as a `rejection` entry with `detail`, every later time by
    /// counting on that entry and keeping the latest detail. Junk posted 300 times is one row
    /// with count 300, not 300 rows. Returns the count.
    pub fn proposal_rejection(
        &self,
        hash: B256,
        source: &str,
        reason: &str,
        detail: &str,
    ) -> Result<u64> {
        let hash = hash.to_string();
        let counted: Option<i64> = self
            .conn
            .query_row(
                "UPDATE proposal_events SET count = count + 1, detail = ?4,
                     last_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                 WHERE safe_tx_hash = ?1 AND event = 'rejection' AND actor = ?2 AND reason = ?3
                 RETURNING count",
                params![hash, source, reason, detail],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(count) = counted {
            return Ok(count.max(1) as u64);
        }
        self.conn.execute(
            "INSERT INTO proposal_events (safe_tx_hash, event, actor, detail, reason)
             VALUES (?1, 'rejection', ?2, ?3, ?4)",
            params![hash, source, detail, reason],
        )?;
        Ok(1)
    }

    /// Whether an audit entry of `event` by `actor` exists for `hash`.
    pub fn proposal_has_event(&self, hash: B256, event: &str, actor: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM proposal_events WHERE safe_tx_hash = ?1 AND event = ?2 AND actor = ?3",
                params![hash.to_string(), event, actor],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// One proposal.
    pub fn proposal(&self, hash: B256) -> Result<Option<Proposal>> {
        self.conn
            .query_row(&format!("{SELECT} WHERE safe_tx_hash = ?1"), [hash.to_string()], row)
            .optional()?
            .transpose()
    }

    /// Proposals, newest first; `status` filters when given.
    pub fn proposals(&self, status: Option<ProposalStatus>) -> Result<Vec<Proposal>> {
        let mut stmt = self
            .conn
            .prepare(&format!("{SELECT} WHERE (?1 IS NULL OR status = ?1) ORDER BY rowid DESC"))?;
        let rows = stmt.query_map([status.map(ProposalStatus::as_str)], row)?;
        rows.map(|r| r?).collect()
    }

    /// The live (pending) proposal for `target` and `kind` on `safe`.
    pub fn pending_proposal_for(
        &self,
        safe: Address,
        target: Address,
        kind: ProposalKind,
    ) -> Result<Option<Proposal>> {
        self.conn
            .query_row(
                &format!(
                    "{SELECT} WHERE safe = ?1 AND target = ?2 AND kind = ?3 AND status = 'pending'"
                ),
                params![safe.to_string(), target.to_string(), kind.as_str()],
                row,
            )
            .optional()?
            .transpose()
    }

    /// Whether any proposal answers finding `id`.
    pub fn has_proposal_for_finding(&self, id: i64) -> Result<bool> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM proposals WHERE finding_id = ?1", [id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Verified signatures of a proposal, by owner ascending.
    pub fn proposal_signatures(&self, hash: B256) -> Result<Vec<StoredSignature>> {
        let mut stmt = self.conn.prepare(
            "SELECT owner, signature, received_at FROM proposal_signatures
             WHERE safe_tx_hash = ?1 ORDER BY owner",
        )?;
        let rows = stmt.query_map([hash.to_string()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
        })?;
        rows.map(|r| {
            let (owner, signature, received_at) = r?;
            Ok(StoredSignature {
                owner: owner.parse().wrap_err("stored owner")?,
                signature: signature.parse().wrap_err("stored signature")?,
                received_at,
            })
        })
        .collect()
    }

    /// A proposal's latest audit entry.
    pub fn proposal_last_event(&self, hash: B256) -> Result<Option<AuditEvent>> {
        Ok(self
            .conn
            .query_row(
                &format!("{SELECT_EVENTS} ORDER BY id DESC LIMIT 1"),
                [hash.to_string()],
                audit_row,
            )
            .optional()?)
    }

    /// A proposal's audit trail, oldest first.
    pub fn proposal_events(&self, hash: B256) -> Result<Vec<AuditEvent>> {
        let mut stmt = self.conn.prepare(&format!("{SELECT_EVENTS} ORDER BY id"))?;
        let rows = stmt.query_map([hash.to_string()], audit_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// A proposal's audit entries, read by [`audit_row`].
const SELECT_EVENTS: &str =
    "SELECT event, actor, detail, at, count, last_at FROM proposal_events WHERE safe_tx_hash = ?1";

fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEvent> {
    Ok(AuditEvent {
        event: r.get(0)?,
        actor: r.get(1)?,
        detail: r.get(2)?,
        at: r.get(3)?,
        count: r.get::<_, i64>(4)?.max(1) as u64,
        last_at: r.get(5)?,
    })
}

pub(crate) fn audit(
    conn: &Connection,
    hash: B256,
    event: &str,
    actor: Option<&str>,
    detail: &str,
) -> Result<()> {
    conn.execute(
        "INSERT INTO proposal_events (safe_tx_hash, event, actor, detail) VALUES (?1, ?2, ?3, ?4)",
        params![hash.to_string(), event, actor, detail],
    )?;
    Ok(())
}

pub(crate) fn insert_row(conn: &Connection, p: &Proposal) -> Result<bool> {
    Ok(conn.execute(
        "INSERT OR IGNORE INTO proposals (safe_tx_hash, chain_id, safe, kind, contract, target,
             calldata, nonce, finding_id, then_rollback, reason, status, simulation,
             created_block, replaces, incident_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        params![
            p.safe_tx_hash.to_string(),
            i64::try_from(p.chain_id)?,
            p.safe.to_string(),
            p.kind.as_str(),
            p.contract,
            p.target.to_string(),
            p.calldata.to_string(),
            p.nonce.to_string(),
            p.finding_id,
            p.then_rollback,
            p.reason,
            p.status.as_str(),
            p.simulation,
            i64::try_from(p.created_block)?,
            p.replaces.map(|h| h.to_string()),
            p.incident_id,
        ],
    )? == 1)
}

pub(crate) const SELECT: &str = "SELECT safe_tx_hash, chain_id, safe, kind, contract, target,
    calldata, nonce, finding_id, then_rollback, reason, status, simulation, created_block,
    replaces, replaced_by, executed_tx, executed_by, created_at, incident_id, withdrawn_reason
    FROM proposals";

pub(crate) fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Proposal>> {
    let text = |i: usize| r.get::<_, String>(i);
    let opt = |i: usize| r.get::<_, Option<String>>(i);
    let (hash, chain_id, safe, kind, contract, target, calldata, nonce) =
        (text(0)?, r.get::<_, i64>(1)?, text(2)?, text(3)?, text(4)?, text(5)?, text(6)?, text(7)?);
    let (finding_id, then_rollback, reason, status, simulation, created_block) = (
        r.get::<_, Option<i64>>(8)?,
        r.get::<_, bool>(9)?,
        text(10)?,
        text(11)?,
        text(12)?,
        r.get::<_, i64>(13)?,
    );
    let (replaces, replaced_by, executed_tx, executed_by, created_at) =
        (opt(14)?, opt(15)?, opt(16)?, opt(17)?, text(18)?);
    let (incident_id, withdrawn_reason) = (r.get::<_, Option<i64>>(19)?, opt(20)?);
    let b256 = |s: Option<String>| -> Result<Option<B256>> {
        s.map(|s| s.parse().wrap_err("stored hash")).transpose()
    };
    Ok((|| {
        Ok(Proposal {
            safe_tx_hash: hash.parse().wrap_err("stored safeTxHash")?,
            chain_id: u64::try_from(chain_id)?,
            safe: safe.parse().wrap_err("stored Safe")?,
            kind: match kind.as_str() {
                "pause" => ProposalKind::Pause,
                "unpause" => ProposalKind::Unpause,
                other => return Err(eyre!("unknown proposal kind {other:?}")),
            },
            contract,
            target: target.parse().wrap_err("stored target")?,
            calldata: calldata.parse().wrap_err("stored calldata")?,
            nonce: nonce.parse().wrap_err("stored nonce")?,
            finding_id,
            then_rollback,
            reason,
            status: ProposalStatus::parse(&status)?,
            simulation,
            created_block: u64::try_from(created_block)?,
            replaces: b256(replaces)?,
            replaced_by: b256(replaced_by)?,
            executed_tx: b256(executed_tx)?,
            executed_by,
            created_at,
            incident_id,
            withdrawn_reason,
        })
    })())
}
