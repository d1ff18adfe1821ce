//! The audit log: every state-changing action as one typed [`Record`], in a hash chain.
//!
//! An [`Entry`] holds its position (`seq`, from 1), its time, who acted ([`Actor`]), the record,
//! and `prev`, the sha256 of the previous entry's canonical body (zero for the first). Its
//! canonical body is its JSON with the fields in declaration order and no whitespace
//! ([`Entry::canonical`]); its hash is the sha256 of those bytes. Editing, deleting, inserting or
//! reordering an entry breaks the chain at that entry, which [`verify`] names. The same chain is
//! kept in two places (SQLite and `audit.jsonl`); [`diverge`] names where they part. Truncating
//! both at once leaves a valid, shorter chain: that is what anchoring the head on chain catches
//! ([`Anchor`], [`check_anchors`]): every so often the head is published as an event of the
//! project's `AuditAnchor` contract, which anyone can find again with `eth_getLogs`.
//!
//! Nothing here reads a clock or a file: the store stamps the time and keeps the rows.

use alloy_primitives::{Address, B256, U256};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    incident::{AuditKind, Event, State},
    severity::Severity,
};

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// The daemon (`guardian run`) on `host`.
    Daemon {
        /// Host name.
        host: String,
    },
    /// A person at a terminal: the OS user (`$USER`) on `host`.
    Operator {
        /// OS user.
        user: String,
        /// Host name.
        host: String,
    },
    /// A request to the daemon's HTTP API.
    Api {
        /// What the request said of itself (an owner address, a token's name).
        by: String,
    },
}

/// How a proposal moved (its trail, typed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalStep {
    /// Made and stored after its simulation as the Safe passed.
    Proposed,
    /// Recorded without being proposed (the target already had the state).
    Skipped,
    /// Its nonce was used by another Safe transaction.
    Stale,
    /// Made again at a new nonce in place of a stale one.
    Reproposed,
    /// Withdrawn: it must never collect approvals.
    Withdrawn,
    /// Taken back after a withdrawal (a reorg re-included its finding).
    Reinstated,
    /// This replica's execution lost to another sender's for the same nonce.
    RaceLost,
}

/// One state-changing action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Record {
    /// `guardian run` started.
    DaemonStarted {
        /// `guardian --version`.
        version: String,
        /// The config file.
        config: String,
        /// sha256 of its bytes.
        config_sha256: B256,
        /// The chain it follows.
        chain_id: u64,
    },
    /// A finding was recorded (from a block, or predicted from a pending transaction).
    FindingRecorded {
        /// The finding.
        finding: i64,
        /// Its incident.
        incident: Option<i64>,
        /// The rule.
        rule: String,
        /// The contract's name.
        contract: String,
        /// Its address.
        address: Address,
        /// The severity.
        severity: Severity,
        /// The block the evidence is from (for a prediction: the next one).
        block: u64,
        /// That block's hash (zero for a prediction).
        block_hash: B256,
        /// The transaction, for rules that fire on one.
        tx: Option<B256>,
        /// The pending transaction it was predicted from.
        predicted_from: Option<B256>,
        /// What the rule saw, in words.
        summary: String,
    },
    /// A finding was retracted: the blocks it was seen in were orphaned by a reorg.
    FindingRetracted {
        /// The finding.
        finding: i64,
        /// Its incident.
        incident: Option<i64>,
    },
    /// An incident's transition: the event the machine took and the state it left.
    Incident {
        /// The incident.
        incident: i64,
        /// Its position in the incident's own stream.
        step: u64,
        /// The lifecycle step it was (`opened`, `executed`, `rollback_done`, ...): the timeline's
        /// word for it.
        kind: AuditKind,
        /// What happened.
        event: Event,
        /// The state before.
        from: State,
        /// The state after.
        to: State,
        /// The block it happened in or was seen at.
        block: Option<u64>,
    },
    /// A Safe proposal moved.
    Proposal {
        /// Its safeTxHash.
        safe_tx_hash: B256,
        /// Its incident.
        incident: Option<i64>,
        /// What happened to it.
        step: ProposalStep,
        /// What it does (`pause`, `unpause`, `enable_module`, …).
        kind: String,
        /// The contract's name.
        contract: String,
        /// Its Safe nonce.
        nonce: u64,
        /// Why, in words.
        detail: String,
    },
    /// An owner's approval was verified against the Safe's owners and counted.
    SignatureAccepted {
        /// The proposal.
        safe_tx_hash: B256,
        /// The owner.
        owner: Address,
        /// On chain (`approveHash`) rather than an off-chain signature.
        onchain: bool,
    },
    /// A signature was refused. Repeats of the same refusal (same signer, same reason) are
    /// counted in the proposal's trail, not written again here.
    SignatureRejected {
        /// The proposal.
        safe_tx_hash: B256,
        /// Who it claimed to be from.
        signer: String,
        /// Why it was refused.
        reason: String,
    },
    /// A Safe transaction was executed (verified from its receipt).
    Executed {
        /// The proposal.
        safe_tx_hash: B256,
        /// The transaction.
        tx: B256,
        /// Its sender (the mined transaction's `from`).
        sender: Address,
        /// Whose it was: this replica, another, an outsider.
        by: String,
    },
    /// Configs were rolled back to a previous contract version.
    Rollback {
        /// The incident it answered, if any.
        incident: Option<i64>,
        /// The plan, in words (each key's old and new address).
        plan: String,
        /// The backup that undoes it.
        undo_stamp: Option<String>,
        /// The error, when it failed.
        error: Option<String>,
    },
    /// A backup set was taken.
    BackupCreated {
        /// Its stamp.
        stamp: String,
        /// The configs in it.
        configs: Vec<String>,
    },
    /// A backup set was restored.
    Restored {
        /// The stamp restored.
        stamp: String,
        /// The configs written.
        configs: Vec<String>,
        /// The backup that undoes the restore.
        undo_stamp: Option<String>,
    },
    /// Backup sets were pruned.
    Pruned {
        /// The stamps deleted.
        stamps: Vec<String>,
    },
    /// A notification was delivered to a channel.
    NotificationSent {
        /// The incident.
        incident: i64,
        /// Its idempotency key.
        key: String,
        /// The channel.
        channel: String,
        /// Attempts it took.
        attempts: u32,
    },
    /// A notification's delivery to a channel failed for the first time (it keeps being
    /// retried; the next entry for it is its delivery).
    NotificationFailed {
        /// The incident.
        incident: i64,
        /// Its idempotency key.
        key: String,
        /// The channel.
        channel: String,
        /// The error.
        error: String,
    },
    /// An operator's command that changes something (`pause`, `resolve`, `rollback`, …).
    OperatorCommand {
        /// The command, as typed (`guardian pause vault`), without secrets.
        command: String,
        /// Its reason or note.
        reason: String,
        /// The incident it acted on, if any.
        incident: Option<i64>,
    },
    /// What an incident cost, measured on chain once it was contained.
    Impact {
        /// The incident.
        incident: i64,
        /// The contract's ether balance at the block before the anomaly.
        at_risk_wei: U256,
        /// What left it between that block and the pause's block.
        moved_wei: U256,
        /// The anomaly's block.
        anomaly_block: u64,
        /// The block the pause was mined in.
        contained_block: u64,
    },
    /// The chain head was published on chain.
    Anchored {
        /// The entry anchored (the head at the time).
        seq: u64,
        /// Its hash.
        head: B256,
        /// The anchoring transaction.
        tx: B256,
        /// Its block.
        block: u64,
    },
}

impl Record {
    /// The snake-case name of the record (`finding_recorded`, …), for listing and filtering.
    pub fn name(&self) -> &'static str {
        match self {
            Self::DaemonStarted { .. } => "daemon_started",
            Self::FindingRecorded { .. } => "finding_recorded",
            Self::FindingRetracted { .. } => "finding_retracted",
            Self::Incident { .. } => "incident",
            Self::Proposal { .. } => "proposal",
            Self::SignatureAccepted { .. } => "signature_accepted",
            Self::SignatureRejected { .. } => "signature_rejected",
            Self::Executed { .. } => "executed",
            Self::Rollback { .. } => "rollback",
            Self::BackupCreated { .. } => "backup_created",
            Self::Restored { .. } => "restored",
            Self::Pruned { .. } => "pruned",
            Self::NotificationSent { .. } => "notification_sent",
            Self::NotificationFailed { .. } => "notification_failed",
            Self::OperatorCommand { .. } => "operator_command",
            Self::Impact { .. } => "impact",
            Self::Anchored { .. } => "anchored",
        }
    }

    /// The incident the record belongs to, if any.
    pub fn incident(&self) -> Option<i64> {
        match self {
            Self::Incident { incident, .. }
            | Self::NotificationSent { incident, .. }
            | Self::NotificationFailed { incident, .. }
            | Self::Impact { incident, .. } => Some(*incident),
            Self::FindingRecorded { incident, .. }
            | Self::FindingRetracted { incident, .. }
            | Self::Proposal { incident, .. }
            | Self::Rollback { incident, .. }
            | Self::OperatorCommand { incident, .. } => *incident,
            _ => None,
        }
    }
}

/// One entry of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Its position, from 1.
    pub seq: u64,
    /// When (Unix milliseconds).
    pub at_ms: u64,
    /// The hash of the entry before (zero for the first).
    pub prev: B256,
    /// Who acted.
    pub actor: Actor,
    /// What was done.
    pub record: Record,
}

impl Entry {
    /// The canonical body: compact JSON, fields in declaration order. What is hashed and stored.
    pub fn canonical(&self) -> String {
        // Serializing plain data (strings, integers, hex) cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Seal the entry: its canonical body and that body's hash.
    pub fn seal(&self) -> Sealed {
        let body = self.canonical();
        Sealed { hash: hash(&body), body }
    }
}

/// sha256 of `body`.
pub fn hash(body: &str) -> B256 {
    B256::from_slice(&Sha256::digest(body.as_bytes()))
}

/// An entry as it is stored: its canonical body and the hash of that body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The canonical body.
    pub body: String,
    /// sha256 of `body`.
    pub hash: B256,
}

impl Sealed {
    /// The line of `audit.jsonl`: `{"hash":"0x…","entry":<body>}`.
    pub fn line(&self) -> String {
        format!("{{\"hash\":\"{}\",\"entry\":{}}}", self.hash, self.body)
    }

    /// Parse a line of `audit.jsonl` back, keeping the body's bytes exactly.
    pub fn from_line(line: &str) -> Result<Self, String> {
        let rest = line
            .strip_prefix("{\"hash\":\"")
            .ok_or_else(|| "does not start with {\"hash\":\"".to_owned())?;
        let (hash, rest) = rest.split_once('"').ok_or_else(|| "unterminated hash".to_owned())?;
        let hash = hash.parse().map_err(|e| format!("hash {hash:?}: {e}"))?;
        let body = rest
            .strip_prefix(",\"entry\":")
            .and_then(|b| b.strip_suffix('}'))
            .ok_or_else(|| "no \"entry\" object after the hash".to_owned())?;
        Ok(Self { body: body.to_owned(), hash })
    }

    /// The entry, if the body is one in canonical form.
    pub fn entry(&self) -> Result<Entry, String> {
        let entry: Entry =
            serde_json::from_str(&self.body).map_err(|e| format!("not an audit entry: {e}"))?;
        if entry.canonical() != self.body {
            return Err("not in canonical form (changed by hand)".to_owned());
        }
        Ok(entry)
    }
}

/// Where a chain breaks, naming the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Break {
    /// The entry's body no longer hashes to its stored hash, or no longer reads as a canonical
    /// entry.
    #[error("entry {seq} was edited: {why}")]
    Edited {
        /// The entry.
        seq: u64,
        /// What does not hold.
        why: String,
    },
    /// Entries are missing: `next` follows `last`.
    #[error("entry {missing} was deleted: entry {next} follows entry {last}")]
    Deleted {
        /// The first missing entry.
        missing: u64,
        /// The last entry present before the gap.
        last: u64,
        /// The entry found after it.
        next: u64,
    },
    /// The entry at a position is not the one that belongs there: swapped with another, or
    /// moved.
    #[error("entry {found} stands where entry {position} belongs: entries were reordered")]
    Reordered {
        /// The position (the next expected entry).
        position: u64,
        /// The entry found there.
        found: u64,
    },
    /// The entry is well formed but does not follow its predecessor: it was inserted (or its
    /// predecessor was replaced).
    #[error(
        "entry {seq} does not follow entry {previous} (its prev is {prev}, entry {previous} hashes to {expected}): it was inserted, or entry {previous} was replaced"
    )]
    Inserted {
        /// The entry.
        seq: u64,
        /// The one before it.
        previous: u64,
        /// What it names as its predecessor.
        prev: B256,
        /// What the predecessor hashes to.
        expected: B256,
    },
}

/// The outcome of a chain that holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// How many entries.
    pub entries: u64,
    /// The last one's hash (zero for an empty chain).
    pub head: B256,
}

/// Check a chain, oldest first, each entry as `(position, sealed)` where `position` is where
/// the store keeps it (its row, or its line's order). Names the first entry that breaks it.
pub fn verify<'a>(entries: impl IntoIterator<Item = (u64, &'a Sealed)>) -> Result<Verified, Break> {
    let mut expected_seq = 1u64;
    let mut prev = B256::ZERO;
    for (position, sealed) in entries {
        if hash(&sealed.body) != sealed.hash {
            return Err(Break::Edited {
                seq: position,
                why: format!(
                    "its body hashes to {}, its stored hash is {}",
                    hash(&sealed.body),
                    sealed.hash
                ),
            });
        }
        let entry = sealed.entry().map_err(|why| Break::Edited { seq: position, why })?;
        if entry.seq != position {
            return Err(Break::Reordered { position, found: entry.seq });
        }
        if position > expected_seq {
            return Err(Break::Deleted {
                missing: expected_seq,
                last: expected_seq - 1,
                next: position,
            });
        }
        if position < expected_seq {
            return Err(Break::Reordered { position: expected_seq, found: position });
        }
        if entry.prev != prev {
            return Err(Break::Inserted {
                seq: position,
                previous: position - 1,
                prev: entry.prev,
                expected: prev,
            });
        }
        prev = sealed.hash;
        expected_seq += 1;
    }
    Ok(Verified { entries: expected_seq - 1, head: prev })
}

/// Where two copies of one chain part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Divergence {
    /// Both hold entry `seq`, with different contents (the hashes are of each copy's body).
    #[error(
        "the copies differ at entry {seq}: {left}'s hashes to {left_hash}, {right}'s to {right_hash}"
    )]
    Differ {
        /// The entry.
        seq: u64,
        /// The first copy's name.
        left: String,
        /// Its hash of the entry.
        left_hash: B256,
        /// The second copy's name.
        right: String,
        /// Its hash of the entry.
        right_hash: B256,
    },
    /// One copy ends before the other.
    #[error("{shorter} ends at entry {ends_at}; {longer} continues to entry {continues_to}")]
    Shorter {
        /// The copy that ends first.
        shorter: String,
        /// Its last entry.
        ends_at: u64,
        /// The other copy.
        longer: String,
        /// Its last entry.
        continues_to: u64,
    },
}

/// Compare two copies of a chain (each in stored order), named `left` and `right`.
pub fn diverge(left: (&str, &[Sealed]), right: (&str, &[Sealed])) -> Option<Divergence> {
    let (left_name, left) = left;
    let (right_name, right) = right;
    for (i, (l, r)) in left.iter().zip(right).enumerate() {
        if l != r {
            return Some(Divergence::Differ {
                seq: i as u64 + 1,
                left: left_name.to_owned(),
                left_hash: hash(&l.body),
                right: right_name.to_owned(),
                right_hash: hash(&r.body),
            });
        }
    }
    let (l, r) = (left.len() as u64, right.len() as u64);
    match l.cmp(&r) {
        std::cmp::Ordering::Equal => None,
        std::cmp::Ordering::Less => Some(Divergence::Shorter {
            shorter: left_name.to_owned(),
            ends_at: l,
            longer: right_name.to_owned(),
            continues_to: r,
        }),
        std::cmp::Ordering::Greater => Some(Divergence::Shorter {
            shorter: right_name.to_owned(),
            ends_at: r,
            longer: left_name.to_owned(),
            continues_to: l,
        }),
    }
}

/// A chain head published on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// The entry anchored.
    pub seq: u64,
    /// Its hash as published.
    pub head: B256,
    /// The transaction that published it.
    pub tx: B256,
}

/// An anchor the local chain does not bear out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorBreak {
    /// The chain published entry `seq`, which the log no longer has: its tail was cut.
    #[error("anchor {tx} published entry {seq} ({head}), but the log ends at entry {ends_at}: its last {} entries were removed", seq - ends_at)]
    Truncated {
        /// The entry anchored.
        seq: u64,
        /// Its hash as published.
        head: B256,
        /// The anchoring transaction.
        tx: B256,
        /// The log's last entry.
        ends_at: u64,
    },
    /// The log's entry `seq` is not the one published.
    #[error(
        "anchor {tx} published {published} for entry {seq}; the log's entry {seq} hashes to {local}"
    )]
    Mismatch {
        /// The entry.
        seq: u64,
        /// What was published.
        published: B256,
        /// What the log holds.
        local: B256,
        /// The anchoring transaction.
        tx: B256,
    },
}

/// Check every anchor found on chain against a verified chain (`hashes[i]` is entry `i + 1`'s
/// hash). Names the first anchor it contradicts.
pub fn check_anchors(anchors: &[Anchor], hashes: &[B256]) -> Result<usize, AnchorBreak> {
    for anchor in anchors {
        let local = usize::try_from(anchor.seq)
            .ok()
            .and_then(|seq| seq.checked_sub(1))
            .and_then(|i| hashes.get(i));
        match local {
            None => {
                return Err(AnchorBreak::Truncated {
                    seq: anchor.seq,
                    head: anchor.head,
                    tx: anchor.tx,
                    ends_at: hashes.len() as u64,
                });
            }
            Some(local) if *local != anchor.head => {
                return Err(AnchorBreak::Mismatch {
                    seq: anchor.seq,
                    published: anchor.head,
                    local: *local,
                    tx: anchor.tx,
                });
            }
            Some(_) => {}
        }
    }
    Ok(anchors.len())
}

#[cfg(test)]
mod tests;
