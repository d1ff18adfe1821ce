//! guardian's config rollback: point every service's config back at a previous contract version,
//! with timestamped, checksummed backups that can be restored.
//!
//! The decisions (backup names, which keys change, what prune deletes) are pure functions in
//! `guardian_core::backup`; this crate does the I/O around them:
//!
//! - [`config`]: the `[rollback]` table of guardian.toml ([`RollbackConfig`], [`RollbackSettings`]).
//! - [`version`]: the guardian-managed version history file ([`VersionBook`]).
//! - [`managed_config`]: finding and surgically rewriting address keys in JSON configs.
//! - [`backup`]: backups with `sha256sum` sidecars, verify, restore, prune ([`Backups`]).
//! - [`rollback`]: plan (with on-chain verification) and apply ([`Rollback`]).
//! - [`ledger`]: the record of backups, changes and open incidents ([`BackupLedger`], SQLite).
//! - [`lock`] and [`atomic_file`]: the write lock and atomic replacement every write goes through;
//!   managed files are never read or written through a symbolic link.
//! - [`journal`]: operations over several files happen all together or not at all; a crash in
//!   the middle is finished or undone by [`recover_interrupted`], which every writing entry point
//!   runs first under the lock, and `guardian run` at start ([`recover_at_start`]).
//!
//! The daemon's entry point after a verified pause:
//!
//! ```no_run
//! # async fn after_pause(provider: alloy::providers::DynProvider) -> eyre::Result<()> {
//! use guardian_core::backup::VersionSelector;
//! use guardian_rollback::{Rollback, RollbackSettings, SqliteLedger};
//!
//! let settings = RollbackSettings::load("config/guardian.toml".as_ref())?;
//! let ledger = SqliteLedger::open(&settings.ledger_path)?;
//! let outcome = Rollback::new(&settings, &ledger)
//!     .run(&provider, "vault", &VersionSelector::Previous)
//!     .await?;
//! if let Some(backup) = &outcome.backup {
//!     tracing::info!(undo = %backup.stamp, "configs rolled back");
//! }
//! # Ok(()) }
//! ```

pub mod atomic_file;
pub mod backup;
pub mod config;
pub mod journal;
pub mod ledger;
pub mod lock;
pub mod managed_config;
pub mod recovery;
pub mod refusal;
pub mod rollback;
pub mod version;

pub use backup::{BackupEntry, Backups, RestoreOutcome, Verdict, Verification};
pub use config::{ManagedConfig, RollbackConfig, RollbackSettings};
pub use journal::{
    RecoveryError, RecoveryReport, journal_pending, recover_at_start, recover_interrupted,
    recover_interrupted_writes,
};
pub use ledger::{BackupLedger, LedgerMissing, SqliteLedger};
pub use lock::WriteLock;
pub use recovery::{RecoveryChecks, RecoveryTarget, run_recovery};
pub use refusal::{RefusalKind, Refused};
pub use rollback::{Rollback, RollbackOutcome, RollbackPlan};
pub use version::{VersionBook, VersionReport};
