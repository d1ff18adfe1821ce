//! Safe proposals, owner signatures and each proposal's own trail, in the guardian database.
//!
//! Proposals are keyed by `safeTxHash`: every replica derives the same key for the same
//! (chain, Safe, target, calldata, nonce), so re-proposing is idempotent by construction. A
//! pause proposal belongs to an incident ([`Proposal::incident_id`]); the incident decides when
//! it stands, is withdrawn or executes ([`crate::Store::apply`]), and this table mirrors it.

use alloy_primitives::{Address, B256, Bytes, U256};
use eyre::{Result, WrapErr, bail, eyre};
use guardian_core::{
    audit::{Actor, ProposalStep, Record as AuditRecord},
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

/// One step of a proposal's trail: a row of `proposal_events` (what `proposals show` lists)
/// and, in the same transaction, a typed entry of the audit log.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Trail<'a> {
    /// Made (simulated as the Safe first).
    Proposed {
        /// Who asked.
        actor: &'a str,
        /// What, in words.
        detail: &'a str,
    },
    /// Recorded without being proposed (the target already had the state).
    Skipped {
        /// Who asked.
        actor: &'a str,
        /// Why, in words.
        detail: &'a str,
    },
    /// Its nonce was consumed by another Safe transaction.
    Stale {
        /// What consumed it.
        detail: &'a str,
    },
    /// Made again at a new nonce in place of a stale one.
    Reproposed {
        /// In words.
        detail: &'a str,
    },
    /// Withdrawn: it must never collect approvals.
    Withdrawn {
        /// Why.
        reason: &'a str,
    },
    /// Taken back after a withdrawal.
    Reinstated {
        /// Who.
        actor: &'a str,
        /// Why.
        detail: &'a str,
    },
    /// An owner's off-chain signature, verified and stored.
    Approval {
        /// The owner.
        owner: Address,
    },
    /// An owner's `approveHash`, read from the Safe.
    OnchainApproval {
        /// The owner.
        owner: Address,
    },
    /// This replica's execution lost the race for the nonce: who won, with what, and what
    /// became of this replica's transaction (reverted, or never sent).
    RaceLost {
        /// In words.
        detail: &'a str,
    },
    /// Executed, verified from the receipt.
    Executed {
        /// The transaction.
        tx: B256,
        /// The mined transaction's sender.
        sender: Address,
        /// Whose it was, in words.
        by: &'a str,
        /// In words.
        detail: &'a str,
    },
}

impl Trail<'_> {
    /// The row's event name, its actor and its detail.
    fn row(&self) -> (&'static str, Option<String>, String) {
        match *self {
            Self::Proposed { actor, detail } => {
                ("proposed", Some(actor.to_owned()), detail.to_owned())
            }
            Self::Skipped { actor, detail } => {
                ("skipped", Some(actor.to_owned()), detail.to_owned())
            }
            Self::Stale { detail } => ("stale", None, detail.to_owned()),
            Self::Reproposed { detail } => ("reproposed", None, detail.to_owned()),
            Self::Withdrawn { reason } => ("withdrawn", None, reason.to_owned()),
            Self::RaceLost { detail } => ("race_lost", None, detail.to_owned()),
            Self::Reinstated { actor, detail } => {
                ("reinstated", Some(actor.to_owned()), detail.to_owned())
            }
            Self::Approval { owner } => {
                ("approval", Some(owner.to_string()), "off-chain signature verified".to_owned())
            }
            Self::OnchainApproval { owner } => (
                "onchain_approval",
                Some(owner.to_string()),
                "approveHash read from the Safe".to_owned(),
            ),
            Self::Executed { by, detail, .. } => {
                ("executed", Some(by.to_owned()), detail.to_owned())
            }
        }
    }
}

impl Store {
    /// Record one step of `hash`'s trail in a transaction of its own.
    pub fn proposal_trail(&mut self, hash: B256, step: Trail<'_>) -> Result<()> {
        let actor = self.actor.clone();
        let tx = self.conn.transaction()?;
        audit(&tx, &actor, hash, step)?;
        tx.commit()?;
        self.mirror_audit();
        Ok(())
    }

    /// Insert `proposal` unless a row with its hash exists; returns whether it was new.
    /// Recorded with its `proposed` (or `skipped`) audit entry in one transaction.
    pub fn insert_proposal(&mut self, p: &Proposal, actor: &str, detail: &str) -> Result<bool> {
        let me = self.actor.clone();
        let tx = self.conn.transaction()?;
        let new = insert_row(&tx, p)?;
        if new && p.status == ProposalStatus::Pending {
            crate::relays::enqueue(
                &tx,
                self.replication.as_ref(),
                crate::RelayItem::Proposal,
                p.safe_tx_hash,
            )?;
        }
        if new {
            let step = if p.status == ProposalStatus::Skipped {
                Trail::Skipped { actor, detail }
            } else {
                Trail::Proposed { actor, detail }
            };
            audit(&tx, &me, p.safe_tx_hash, step)?;
        }
        tx.commit()?;
        self.mirror_audit();
        Ok(new)
    }

    /// Mark `old` stale and insert `new` in its place, atomically.
    pub fn replace_stale_proposal(
        &mut self,
        old: B256,
        new: &Proposal,
        detail: &str,
    ) -> Result<()> {
        let me = self.actor.clone();
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE proposals SET status = 'stale', replaced_by = ?2,
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE safe_tx_hash = ?1",
            params![old.to_string(), new.safe_tx_hash.to_string()],
        )?;
        audit(&tx, &me, old, Trail::Stale { detail })?;
        if insert_row(&tx, new)? {
            crate::relays::enqueue(
                &tx,
                self.replication.as_ref(),
                crate::RelayItem::Proposal,
                new.safe_tx_hash,
            )?;
            let detail = format!("re-proposed at Safe nonce {} in place of stale {old}", new.nonce);
            audit(&tx, &me, new.safe_tx_hash, Trail::Reproposed { detail: &detail })?;
        }
        tx.commit()?;
        self.mirror_audit();
        Ok(())
    }

    /// Mark a proposal stale with nothing in its place (the target already has the state).
    pub fn mark_proposal_stale(&mut self, hash: B256, detail: &str) -> Result<()> {
        let me = self.actor.clone();
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE proposals SET status = 'stale',
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE safe_tx_hash = ?1",
            [hash.to_string()],
        )?;
        audit(&tx, &me, hash, Trail::Stale { detail })?;
        tx.commit()?;
        self.mirror_audit();
        Ok(())
    }

    /// Store a verified owner signature; returns false when the same owner's signature was
    /// already stored (the first one is kept).
    pub fn add_signature(&mut self, hash: B256, owner: Address, signature: &[u8]) -> Result<bool> {
        let me = self.actor.clone();
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
            audit(&tx, &me, hash, Trail::Approval { owner })?;
            crate::relays::enqueue(
                &tx,
                self.replication.as_ref(),
                crate::RelayItem::Signature { owner },
                hash,
            )?;
        }
        tx.commit()?;
        self.mirror_audit();
        Ok(added)
    }

    /// Record that a signature for `hash` from `source` was refused for `reason` (a kind, e.g.
    /// `not_an_owner`): the first time as a `rejection` entry with `detail`, every later time by
    /// counting on that entry and keeping the latest detail. Junk posted 300 times is one row
    /// with count 300, not 300 rows. Returns the count.
    pub fn proposal_rejection(
        &mut self,
        hash: B256,
        source: &str,
        reason: &str,
        detail: &str,
    ) -> Result<u64> {
        let me = self.actor.clone();
        let tx = self.conn.transaction()?;
        let key = hash.to_string();
        let counted: Option<i64> = tx
            .query_row(
                "UPDATE proposal_events SET count = count + 1, detail = ?4,
                     last_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                 WHERE safe_tx_hash = ?1 AND event = 'rejection' AND actor = ?2 AND reason = ?3
                 RETURNING count",
                params![key, source, reason, detail],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(count) = counted {
            tx.commit()?;
            return Ok(count.max(1) as u64);
        }
        tx.execute(
            "INSERT INTO proposal_events (safe_tx_hash, event, actor, detail, reason)
             VALUES (?1, 'rejection', ?2, ?3, ?4)",
            params![key, source, detail, reason],
        )?;
        // The first refusal of each (source, reason) is audited; repeats are counted above.
        let record = AuditRecord::SignatureRejected {
            safe_tx_hash: hash,
            signer: source.to_owned(),
            reason: detail.to_owned(),
        };
        crate::audit::append(&tx, &me, record, crate::now_ms())?;
        tx.commit()?;
        self.mirror_audit();
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

/// Write `step` of `hash`'s trail, and its audit entry, in the caller's transaction.
pub(crate) fn audit(conn: &Connection, me: &Actor, hash: B256, step: Trail<'_>) -> Result<()> {
    let (event, actor, detail) = step.row();
    conn.execute(
        "INSERT INTO proposal_events (safe_tx_hash, event, actor, detail) VALUES (?1, ?2, ?3, ?4)",
        params![hash.to_string(), event, actor, detail],
    )?;
    let (kind, contract, nonce, incident): (String, String, String, Option<i64>) = conn.query_row(
        "SELECT kind, contract, nonce, incident_id FROM proposals WHERE safe_tx_hash = ?1",
        [hash.to_string()],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let proposal = |step| AuditRecord::Proposal {
        safe_tx_hash: hash,
        incident,
        step,
        kind: kind.clone(),
        contract: contract.clone(),
        nonce: nonce.parse().unwrap_or_default(),
        detail: detail.clone(),
    };
    let record = match step {
        Trail::Proposed { .. } => proposal(ProposalStep::Proposed),
        Trail::Skipped { .. } => proposal(ProposalStep::Skipped),
        Trail::Stale { .. } => proposal(ProposalStep::Stale),
        Trail::Reproposed { .. } => proposal(ProposalStep::Reproposed),
        Trail::Withdrawn { .. } => proposal(ProposalStep::Withdrawn),
        Trail::Reinstated { .. } => proposal(ProposalStep::Reinstated),
        Trail::RaceLost { .. } => proposal(ProposalStep::RaceLost),
        Trail::Approval { owner } => {
            AuditRecord::SignatureAccepted { safe_tx_hash: hash, owner, onchain: false }
        }
        Trail::OnchainApproval { owner } => {
            AuditRecord::SignatureAccepted { safe_tx_hash: hash, owner, onchain: true }
        }
        Trail::Executed { tx, sender, by, .. } => {
            AuditRecord::Executed { safe_tx_hash: hash, tx, sender, by: by.to_owned() }
        }
    };
    crate::audit::append(conn, me, record, crate::now_ms())?;
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
                "enable_module" => ProposalKind::EnableModule,
                "disable_module" => ProposalKind::DisableModule,
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
