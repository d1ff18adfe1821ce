//! Replacing a file so that readers see the old bytes or the new bytes, never a mix, and never
//! through a symbolic link.
//!
//! The new content goes to a temporary file in the same folder (same filesystem, so the rename is
//! atomic), which is fsynced, renamed over the target, and then the folder is fsynced so the
//! rename itself survives a power cut. The temporary file is `.NAME.tmp-PID-NONCE` with a random
//! NONCE, created with `O_CREAT | O_EXCL | O_NOFOLLOW`: a file or link planted under that name
//! makes the open fail (another name is tried) instead of being written through.
//!
//! **Symbolic links are refused, not followed.** A managed config, backup, sidecar, the journal
//! or the lock file that is a symbolic link is an error naming the path ([`SymlinkRefused`]):
//! guardian writes only the files it was configured with, never where a link points. (Folders
//! on the way may be links: that is the operator's layout, not a file guardian replaces.)
//!
//! A crash leaves the old file or the new one, plus at worst a stray temp file; the next write
//! under the lock removes stray temp files of processes that are gone
//! ([`remove_stale_temps`]).

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::SystemTime,
};

use eyre::{Result, WrapErr, eyre};
use guardian_core::backup::{TempFileName, temp_file_name, temp_is_stale};

/// Test-only: when set to `1`, the process aborts after a temporary file is written and synced
/// but before it is renamed over its target, as a crash there would; set to a file name (e.g.
/// `smart-accounts-config.json`), only writes to that file abort. In an operation over several
/// files this is before the journal is written, so nothing was changed. Never set it in
/// production.
pub const CRASH_BEFORE_RENAME_ENV: &str = "GUARDIAN_TEST_CRASH_BEFORE_RENAME";

/// Test-only: `N` makes an operation over several files (backup, restore, rollback, `versions
/// add`, prune) abort after its journal is written and N of its files were renamed (or deleted);
/// `0` aborts before the first rename, N at least the number of files aborts after the last
/// rename, before the ledger records the operation. Never set it in production.
pub const CRASH_BETWEEN_RENAMES_ENV: &str = "GUARDIAN_TEST_CRASH_BETWEEN_RENAMES";

/// Test-only: milliseconds to sleep, while holding the write lock, between reading managed files
/// and writing them (restore and rollback), so tests can make two processes overlap. Never set it
/// in production.
pub const PAUSE_BEFORE_WRITE_ENV: &str = "GUARDIAN_TEST_PAUSE_BEFORE_WRITE_MS";

/// Honour [`PAUSE_BEFORE_WRITE_ENV`].
pub(crate) fn test_pause_before_write() {
    if let Some(ms) = std::env::var(PAUSE_BEFORE_WRITE_ENV).ok().and_then(|v| v.parse().ok()) {
        tracing::warn!("{PAUSE_BEFORE_WRITE_ENV}={ms}: pausing before writing (test hook)");
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Honour [`CRASH_BEFORE_RENAME_ENV`] for a temp file of `target` just written.
pub(crate) fn test_crash_before_rename(target: &Path, temp: &Path) {
    let crash = std::env::var(CRASH_BEFORE_RENAME_ENV).is_ok_and(|v| {
        v == "1" || target.file_name().is_some_and(|name| name.to_string_lossy() == v)
    });
    if crash {
        tracing::error!(temp = %temp.display(), "{CRASH_BEFORE_RENAME_ENV}: aborting before rename");
        std::process::abort();
    }
}

/// Honour [`CRASH_BETWEEN_RENAMES_ENV`] once `renamed` of the `total` files of an operation
/// were renamed.
pub(crate) fn test_crash_between_renames(renamed: usize, total: usize) {
    let crash = std::env::var(CRASH_BETWEEN_RENAMES_ENV)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n.min(total) == renamed);
    if crash {
        tracing::error!(renamed, "{CRASH_BETWEEN_RENAMES_ENV}: aborting between renames");
        std::process::abort();
    }
}

/// A managed file (config, backup, sidecar, journal, lock) turned out to be a symbolic link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing to use {path}: it is a symbolic link, and guardian never reads or writes managed \
     files through links; replace the link with the file itself (or point guardian.toml at the \
     real path)"
)]
pub struct SymlinkRefused {
    /// The link.
    pub path: PathBuf,
}

/// Fail with [`SymlinkRefused`] when `path` is a symbolic link (absent is fine).
pub fn refuse_symlink(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            Err(SymlinkRefused { path: path.to_owned() }.into())
        }
        _ => Ok(()),
    }
}

/// Read a regular file without following a symbolic link: a link is an error of kind
/// `Other` wrapping [`SymlinkRefused`], a missing file `NotFound` as usual.
pub fn read_no_follow(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = OpenOptions::new()
        .read(true)
        // O_NONBLOCK: a FIFO planted here must not hang the open; regular files ignore it.
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| symlink_error(err, path))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other(format!("{} is not a regular file", path.display())));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// `O_NOFOLLOW` reports a link as `ELOOP`: say what it means.
pub(crate) fn symlink_error(err: io::Error, path: &Path) -> io::Error {
    if err.raw_os_error() == Some(libc::ELOOP) {
        io::Error::other(SymlinkRefused { path: path.to_owned() })
    } else {
        err
    }
}

/// Write `bytes` to `path` atomically (temp file, fsync, rename, fsync of the folder). An existing
/// file's permissions are kept; a symbolic link at `path` is refused.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let temp = write_temp(path, bytes)?;
    test_crash_before_rename(path, &temp);
    rename_into_place(&temp, path).inspect_err(|_| {
        // Best effort: a stray temp file is harmless, and the next write removes it anyway.
        let _ = fs::remove_file(&temp);
    })
}

/// The folder `path` is in.
pub(crate) fn folder_of(path: &Path) -> &Path {
    path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// A random number for temp file names: std's per-process random SipHash keys over a counter
/// and the clock. Unpredictable enough that a name cannot be planted in advance; `O_EXCL`, not
/// the name, is what makes the open safe.
fn nonce() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    RandomState::new().hash_one((count, nanos.as_nanos(), std::process::id()))
}

/// Write `bytes` to a new temp file next to `target` and fsync it; returns the temp file's path.
/// Nothing is renamed. Refuses a `target` that is a symbolic link.
pub(crate) fn write_temp(target: &Path, bytes: &[u8]) -> Result<PathBuf> {
    refuse_symlink(target)?;
    let dir = folder_of(target);
    let file_name = target
        .file_name()
        .ok_or_else(|| eyre!("{} names no file", target.display()))?
        .to_string_lossy();
    let existing = fs::symlink_metadata(target).ok().filter(fs::Metadata::is_file);
    let (temp, mut file) = create_temp(dir, &file_name)?;
    let written = (|| -> Result<()> {
        if let Some(meta) = &existing {
            file.set_permissions(meta.permissions())
                .wrap_err_with(|| format!("copying permissions of {}", target.display()))?;
        }
        file.write_all(bytes).wrap_err_with(|| format!("writing {}", temp.display()))?;
        file.sync_all().wrap_err_with(|| format!("syncing {}", temp.display()))?;
        Ok(())
    })();
    if let Err(err) = written {
        let _ = fs::remove_file(&temp);
        return Err(err);
    }
    Ok(temp)
}

/// Create a fresh temp file for `file_name` in `dir`, never opening an existing file or link.
fn create_temp(dir: &Path, file_name: &str) -> Result<(PathBuf, File)> {
    const ATTEMPTS: usize = 8;
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let temp = dir.join(temp_file_name(file_name, std::process::id(), nonce()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp)
        {
            Ok(file) => return Ok((temp, file)),
            // Someone planted this name: take another one rather than touch theirs.
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => last = Some(err),
            Err(err) => {
                return Err(err)
                    .wrap_err_with(|| format!("creating temporary file {}", temp.display()));
            }
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no attempt made")))
        .wrap_err_with(|| format!("creating a temporary file for {file_name} in {}", dir.display()))
}

/// Rename `temp` over `target` and fsync the folder. A `target` that became a symbolic link is
/// refused (the rename would replace the link, not write through it, but it is not ours).
pub(crate) fn rename_into_place(temp: &Path, target: &Path) -> Result<()> {
    refuse_symlink(target)?;
    fs::rename(temp, target)
        .wrap_err_with(|| format!("renaming {} over {}", temp.display(), target.display()))?;
    sync_folder(folder_of(target))
}

/// Remove `path` (absent is fine) and fsync its folder.
pub(crate) fn remove_durably(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => sync_folder(folder_of(path)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).wrap_err_with(|| format!("deleting {}", path.display())),
    }
}

/// fsync a folder, so renames and deletions in it survive a power cut.
pub(crate) fn sync_folder(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .wrap_err_with(|| format!("syncing folder {}", dir.display()))
}

/// Whether process `pid` exists (a zombie or another user's process counts as alive).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only asks whether the process exists.
    let answer = unsafe { libc::kill(pid, 0) };
    answer == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Remove the temp files in `dir` left by writers that are gone: names guardian gives temp files
/// (`.NAME.tmp-PID[-NONCE]`) whose NAME `is_ours` accepts, whose process no longer exists or
/// that are older than [`guardian_core::backup::STALE_TEMP_AGE`]. Call it only under the write
/// lock, after the journal was recovered: no live writer has temp files then. Returns the files
/// removed.
pub(crate) fn remove_stale_temps(
    dir: &Path,
    is_ours: &dyn Fn(&str) -> bool,
) -> Result<Vec<PathBuf>> {
    let read = match fs::read_dir(dir) {
        Ok(read) => read,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).wrap_err_with(|| format!("listing {}", dir.display())),
    };
    let mut removed = Vec::new();
    for item in read {
        let item = item.wrap_err_with(|| format!("listing {}", dir.display()))?;
        let name = item.file_name().to_string_lossy().into_owned();
        let Some(temp) = TempFileName::parse(&name) else { continue };
        if !is_ours(&temp.target) {
            continue;
        }
        let path = item.path();
        let age = fs::symlink_metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default();
        if !temp_is_stale(process_alive(temp.pid), age) {
            tracing::debug!(temp = %path.display(), "temp file of a live process left alone");
            continue;
        }
        // A planted link is removed as a link: remove_file never follows it.
        match fs::remove_file(&path) {
            Ok(()) => {
                tracing::warn!(temp = %path.display(), pid = temp.pid, "removed a stale temp file");
                removed.push(path);
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(err).wrap_err_with(|| format!("removing stale {}", path.display()));
            }
        }
    }
    if !removed.is_empty() {
        sync_folder(dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    #[test]
    fn replaces_content_and_keeps_permissions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        fs::write(&path, "old").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
        write_atomically(&path, b"new").expect("atomic write");
        assert_eq!(fs::read_to_string(&path).expect("read"), "new");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn creates_missing_files_and_reports_missing_folders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fresh.json");
        write_atomically(&path, b"{}").expect("create");
        assert_eq!(fs::read(&path).expect("read"), b"{}");
        let err = write_atomically(&dir.path().join("missing/x.json"), b"{}").expect_err("no dir");
        assert!(format!("{err:#}").contains("missing"), "{err:#}");
    }

    /// The adversarial run: every name the old code could pick (`.NAME.tmp-PID`) is a link to a
    /// file outside; the write must neither touch that file nor turn the config into a link.
    #[test]
    fn planted_temp_links_are_never_written_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("cfg");
        let outside = dir.path().join("outside");
        fs::create_dir_all(&cfg).expect("mkdir");
        fs::create_dir_all(&outside).expect("mkdir");
        let victim = outside.join("victim.txt");
        fs::write(&victim, "precious").expect("victim");
        let path = cfg.join("smart-accounts-config.json");
        fs::write(&path, "{\"old\": true}").expect("config");
        let pid = std::process::id();
        for planted in pid.saturating_sub(50)..pid + 50 {
            symlink(&victim, cfg.join(format!(".smart-accounts-config.json.tmp-{planted}")))
                .expect("plant");
        }
        write_atomically(&path, b"{\"new\": true}").expect("write");
        assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious");
        assert!(!fs::symlink_metadata(&path).expect("meta").file_type().is_symlink());
        assert_eq!(fs::read_to_string(&path).expect("read"), "{\"new\": true}");
    }

    #[test]
    fn a_symlinked_target_is_refused_and_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim.txt");
        fs::write(&victim, "precious").expect("victim");
        let path = dir.path().join("config.json");
        symlink(&victim, &path).expect("link");
        let err = write_atomically(&path, b"{}").expect_err("link refused");
        assert!(err.downcast_ref::<SymlinkRefused>().is_some(), "{err:#}");
        assert!(format!("{err:#}").contains(&path.display().to_string()), "{err:#}");
        assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious");
        let err = read_no_follow(&path).expect_err("no-follow read");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(read_no_follow(&victim).expect("regular file"), b"precious");
    }

    #[test]
    fn stale_temps_of_dead_writers_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        // PID 0 is never a process that can have written a file: dead.
        let dead = dir.path().join(".c.json.tmp-0-00000000000000aa");
        let legacy_dead = dir.path().join(".c.json.tmp-0");
        let live = dir.path().join(temp_file_name("c.json", std::process::id(), 1));
        let foreign = dir.path().join(".notes.txt.tmp-0");
        for path in [&dead, &legacy_dead, &live, &foreign] {
            fs::write(path, "x").expect("write");
        }
        let removed = remove_stale_temps(dir.path(), &|name| name == "c.json").expect("sweep");
        let mut removed: Vec<_> =
            removed.iter().map(|p| p.file_name().map(ToOwned::to_owned)).collect();
        removed.sort();
        assert_eq!(
            removed,
            [
                legacy_dead.file_name().map(ToOwned::to_owned),
                dead.file_name().map(ToOwned::to_owned)
            ]
        );
        assert!(live.exists(), "this process is alive: its young temp file stays");
        assert!(foreign.exists(), "a file guardian does not manage is never touched");
    }
}
