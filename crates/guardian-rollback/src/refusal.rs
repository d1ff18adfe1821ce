//! Refusals: checks that stop a write on purpose, typed so a caller (the CLI's exit status)
//! can tell them from failures to read or write.

/// A write refused by a safety check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    /// Which check.
    pub kind: RefusalKind,
    /// What it found, for a person.
    pub message: String,
}

impl Refused {
    pub(crate) fn new(kind: RefusalKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
}

/// The checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusalKind {
    /// A rollback target without code, with another code hash, or failing its health view.
    UnverifiedTarget,
    /// A backup that is corrupted, unverifiable, or unknown to the ledger (without `--force`).
    BackupNotRestorable,
    /// A config changed between the plan and the write.
    ChangedSincePlanned,
}
