//! Replacing a file so that readers see the old bytes or the new bytes, never a mix.
//!
//! The new content goes to a temporary file in the same folder (same filesystem, so the rename is
//! atomic), which is fsynced, renamed over the target, and then the folder is fsynced so the
//! rename itself survives a power cut. A crash at any point leaves either the old file or the new
//! one, plus at worst a stray `.NAME.tmp-PID` file that later writes ignore.

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    path::Path,
};

use eyre::{Result, WrapErr, eyre};

/// Test-only: when set to `1`, the process aborts after a temporary file is written and synced
/// but before it is renamed over its target, as a crash there would; set to a file name (e.g.
/// `smart-accounts-config.json`), only writes to that file abort. Never set it in production.
pub const CRASH_BEFORE_RENAME_ENV: &str = "GUARDIAN_TEST_CRASH_BEFORE_RENAME";

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

/// Write `bytes` to `path` atomically (temp file, fsync, rename, fsync of the folder). An existing
/// file's permissions are kept.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .ok_or_else(|| eyre!("{} names no file", path.display()))?
        .to_string_lossy();
    let temp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = write_temp_and_rename(path, &temp, dir, bytes);
    if result.is_err() {
        // Best effort: a stray temp file is harmless but untidy.
        let _ = fs::remove_file(&temp);
    }
    result
}

fn write_temp_and_rename(path: &Path, temp: &Path, dir: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(temp)
        .wrap_err_with(|| format!("creating temporary file {}", temp.display()))?;
    if let Ok(meta) = fs::metadata(path) {
        file.set_permissions(meta.permissions())
            .wrap_err_with(|| format!("copying permissions of {}", path.display()))?;
    }
    file.write_all(bytes).wrap_err_with(|| format!("writing {}", temp.display()))?;
    file.sync_all().wrap_err_with(|| format!("syncing {}", temp.display()))?;
    drop(file);

    let crash = std::env::var(CRASH_BEFORE_RENAME_ENV).is_ok_and(|v| {
        v == "1" || path.file_name().is_some_and(|name| name.to_string_lossy() == v)
    });
    if crash {
        tracing::error!(temp = %temp.display(), "{CRASH_BEFORE_RENAME_ENV}=1: aborting before rename");
        std::process::abort();
    }

    fs::rename(temp, path)
        .wrap_err_with(|| format!("renaming {} over {}", temp.display(), path.display()))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .wrap_err_with(|| format!("syncing folder {}", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

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
}
