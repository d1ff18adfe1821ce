//! Where the pinned chain toolchain lives.
//!
//! `scripts/setup.sh` installs Anvil, forge, solc (solcjs behind `toolchain/solc`, a shim that
//! speaks the native CLI), the Safe 1.4.1, OpenZeppelin and Zodiac sources into
//! `toolchain/node_modules`. Each binary
//! is looked up in this order: an environment variable, the project's toolchain folder, `PATH`.
//! Nothing is ever downloaded at run time.

use std::{
    env,
    path::{Path, PathBuf},
};

use eyre::{Result, WrapErr, eyre};

/// Environment variable naming the project root (the folder holding `contracts/` and `toolchain/`).
pub const ROOT_ENV: &str = "GUARDIAN_ROOT";
/// Environment variable naming the `anvil` binary to use.
pub const ANVIL_ENV: &str = "GUARDIAN_ANVIL";
/// Environment variable naming the `solc` binary (or shim) to use.
pub const SOLC_ENV: &str = "GUARDIAN_SOLC";
/// Environment variable naming the `forge` binary that compiles `contracts/`.
pub const FORGE_ENV: &str = "GUARDIAN_FORGE";

const SETUP_HINT: &str =
    "run scripts/setup.sh from the guardian repository to install the pinned toolchain";

/// Resolved locations of everything guardian needs to compile contracts and run a local chain.
#[derive(Debug, Clone)]
pub struct Toolchain {
    root: PathBuf,
    anvil: PathBuf,
    forge: PathBuf,
    solc: PathBuf,
}

impl Toolchain {
    /// Resolve the toolchain for the project root named by `GUARDIAN_ROOT`, or else the repository
    /// this binary was built from.
    pub fn discover() -> Result<Self> {
        Self::at(default_root())
    }

    /// Resolve the toolchain for the project rooted at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        // Canonical paths keep foundry's cache keys stable: the same file reached through
        // `crates/x/../../` and through the real path would otherwise count as two files.
        let root = root
            .canonicalize()
            .wrap_err_with(|| format!("project root {} is not accessible", root.display()))?;
        let tools = root.join("toolchain");
        let anvil = locate(
            "anvil",
            ANVIL_ENV,
            &[
                tools.join("bin/anvil"),
                tools.join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"),
            ],
        )?;
        let forge = locate(
            "forge",
            FORGE_ENV,
            &[
                tools.join("bin/forge"),
                tools.join("node_modules/@foundry-rs/forge-linux-amd64/bin/forge"),
            ],
        )?;
        let solc_shim_ready = tools.join("node_modules/solc/package.json").is_file();
        let shim_candidates = if solc_shim_ready { vec![tools.join("solc")] } else { Vec::new() };
        let solc = locate("solc", SOLC_ENV, &shim_candidates)?;
        Ok(Self { root, anvil, forge, solc })
    }

    /// The project root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `anvil` binary.
    pub fn anvil(&self) -> &Path {
        &self.anvil
    }

    /// The `forge` binary.
    pub fn forge(&self) -> &Path {
        &self.forge
    }

    /// The `solc` binary or shim.
    pub fn solc(&self) -> &Path {
        &self.solc
    }

    /// The installed npm packages (Safe and OpenZeppelin sources live here).
    pub fn node_modules(&self) -> PathBuf {
        self.root.join("toolchain/node_modules")
    }

    /// The project's Solidity project folder.
    pub fn contracts_dir(&self) -> PathBuf {
        self.root.join("contracts")
    }
}

/// The project root: `$GUARDIAN_ROOT`, else the repository this crate was compiled in.
pub fn default_root() -> PathBuf {
    match env::var_os(ROOT_ENV) {
        Some(root) if !root.is_empty() => PathBuf::from(root),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
    }
}

fn locate(name: &str, env_var: &str, project_candidates: &[PathBuf]) -> Result<PathBuf> {
    if let Some(value) = env::var_os(env_var).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(eyre!("{env_var}={} is not an executable file", path.display()))
        };
    }
    if let Some(found) = project_candidates.iter().find(|p| is_executable(p)) {
        return Ok(found.clone());
    }
    if let Some(found) = search_path(name) {
        return Ok(found);
    }
    let looked: Vec<String> = project_candidates.iter().map(|p| p.display().to_string()).collect();
    Err(eyre!(
        "{name} not found: ${env_var} is unset, {} and no `{name}` on PATH; {SETUP_HINT}",
        if looked.is_empty() {
            "the project toolchain is not installed".to_owned()
        } else {
            format!("nothing executable at {}", looked.join(" or "))
        }
    ))
    .wrap_err(format!("locating {name}"))
}

fn search_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tool_error_names_setup_script() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err =
            locate("guardian-no-such-tool", "GUARDIAN_TEST_UNSET_VAR", &[dir.path().join("x")])
                .expect_err("nothing to find");
        let msg = format!("{err:#}");
        assert!(msg.contains("scripts/setup.sh"), "{msg}");
        assert!(msg.contains("GUARDIAN_TEST_UNSET_VAR"), "{msg}");
    }

    #[test]
    fn project_candidate_must_be_executable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let tool = dir.path().join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").expect("write");
        assert!(
            locate("guardian-no-such-tool", "GUARDIAN_TEST_UNSET_VAR", std::slice::from_ref(&tool))
                .is_err()
        );
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(
            locate("guardian-no-such-tool", "GUARDIAN_TEST_UNSET_VAR", std::slice::from_ref(&tool))
                .expect("found"),
            tool
        );
    }
}
