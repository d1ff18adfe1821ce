//! Records the git commit the `guardian` binary is built from, for `guardian --version` and the
//! daemon's `guardian_build_info{version,commit}` metric (see `src/build_info.rs`).
//!
//! Sets `GUARDIAN_GIT_COMMIT` for the compiler to `git rev-parse --short=12 HEAD`, or to `unknown`
//! outside a git checkout (a source tarball, or no `git`). A packager building from a tarball can
//! set `GUARDIAN_GIT_COMMIT` in the build's environment instead.

#![allow(clippy::print_stdout, reason = "cargo reads a build script's instructions from stdout")]

use std::process::Command;

const VAR: &str = "GUARDIAN_GIT_COMMIT";

fn main() {
    println!("cargo::rerun-if-env-changed={VAR}");
    let commit = match std::env::var(VAR) {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_owned(),
        _ => {
            watch_head();
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
        }
    };
    println!("cargo::rustc-env={VAR}={commit}");
}

/// Rebuild when HEAD moves: a checkout (HEAD itself) or a commit (the branch it points to, loose or
/// packed). In a worktree `.git` is a file and HEAD and the refs live in different folders, so git
/// is asked where each one is. Only existing files are named: cargo reruns a build script every time
/// a named file is missing.
fn watch_head() {
    let mut paths = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "--quiet", "HEAD"]) {
        paths.push(git(&["rev-parse", "--git-path", &branch]));
        paths.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    }
    for path in paths.into_iter().flatten() {
        if std::path::Path::new(&path).exists() {
            println!("cargo::rerun-if-changed={path}");
        }
    }
}

/// `git <args>` in the package folder (a build script's working directory): its trimmed output,
/// or `None` when git is missing, fails or prints nothing.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}
