//! What this binary was built from: the version and the git commit, for `guardian --version` and
//! for the daemon's `guardian_build_info{version,commit}` metric (the binary hands these to the
//! daemon; library crates do not see the root crate's build script).
//!
//! The commit comes from `build.rs`: `git rev-parse --short=12 HEAD` at build time, `unknown`
//! outside a git checkout, or `GUARDIAN_GIT_COMMIT` from the build's environment.

use std::sync::LazyLock;

/// The package version, e.g. `0.1.0`.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit the binary was built from (12 hex digits), or `unknown`.
pub(crate) const GIT_COMMIT: &str = env!("GUARDIAN_GIT_COMMIT");

/// What `--version` prints after the program name: `0.1.0 (0123456789ab)`.
pub(crate) static VERSION_LINE: LazyLock<String> =
    LazyLock::new(|| format!("{VERSION} ({GIT_COMMIT})"));
