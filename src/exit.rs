//! Exit statuses: 0 done, 1 failed, 2 usage (clap), 3 refused by a safety check.
//!
//! A refusal is a check guardian makes on purpose before it signs, sends or writes: approving
//! a withdrawn proposal or one whose hash does not recompute, a signature the Safe would not
//! accept, a rollback to a target that does not verify, a restore of a backup that is corrupted
//! or that the ledger does not know, an `--yes`-less write a person declined. Scripts can tell
//! "guardian said no" (3) from "guardian could not" (1).

use std::{fmt, process::ExitCode};

/// Something failed (I/O, the chain, the database, a bad config).
pub(crate) const FAILURE: u8 = 1;
/// Refused by a safety check.
pub(crate) const REFUSED: u8 = 3;

/// A refusal by a check of the binary itself (the library crates have their own typed ones).
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// `eyre!`, as a refusal.
macro_rules! refused {
    ($($arg:tt)*) => { eyre::Report::new($crate::exit::Refused(format!($($arg)*))) };
}

/// The status for `error`: [`REFUSED`] when a safety check said no anywhere in its chain.
pub(crate) fn status(error: &eyre::Report) -> ExitCode {
    ExitCode::from(if is_refusal(error) { REFUSED } else { FAILURE })
}

fn is_refusal(error: &eyre::Report) -> bool {
    error.chain().any(|cause| {
        cause.is::<Refused>()
            || cause
                .downcast_ref::<guardian_multisig::ApproveError>()
                .is_some_and(guardian_multisig::ApproveError::is_refusal)
            || cause
                .downcast_ref::<guardian_multisig::SubmitError>()
                .is_some_and(guardian_multisig::SubmitError::is_refusal)
            || cause.is::<guardian_core::proposal::Rejection>()
            || cause.is::<guardian_rollback::Refused>()
            || cause.is::<guardian_rollback::atomic_file::SymlinkRefused>()
    })
}
