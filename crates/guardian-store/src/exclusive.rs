//! One daemon per database, and the database's own files as SQLite left them.
//!
//! Two `guardian run` on one database would each follow the chain, evaluate every block and
//! carry out the same outbox rows: double notifications, two executions attempted, a cursor
//! moved by whichever commits last. [`DaemonLock`] makes the second one refuse to start. It is
//! an advisory `flock` on `<database>.lock`, held for as long as the daemon runs: the kernel
//! drops it when the process ends, however it ends (SIGKILL, a crash, the OOM killer), so a
//! stale lock cannot outlive its holder and never needs cleaning. The operators' commands
//! (reading incidents, approving) do not take it: they share the database with the daemon.

use std::{
    fs::{File, OpenOptions, TryLockError},
    io::{Read, Seek, SeekFrom, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

/// Why a daemon may not use the database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another daemon holds it.
    #[error(
        "another guardian daemon is running on the database {database} ({holder}); two daemons \
         on one database would evaluate every block and carry out every step twice. Stop that \
         one first, or give this one its own [storage] path"
    )]
    InUse {
        /// The database.
        database: PathBuf,
        /// Who holds it, as the lock file says (pid and start time).
        holder: String,
    },
    /// The lock file could not be opened or locked (a symbolic link is refused).
    #[error("cannot take the daemon lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// This process is the only daemon on its database; released when dropped or when the process
/// ends.
#[derive(Debug)]
pub struct DaemonLock {
    _file: File,
    path: PathBuf,
}

impl DaemonLock {
    /// Take the lock of the database at `database`, or say who holds it.
    pub fn acquire(database: &Path) -> Result<Self, LockError> {
        let path = lock_path(database);
        let io = |source| LockError::Io { path: path.clone(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim().replace('\n', ", ");
                return Err(LockError::InUse {
                    database: database.to_owned(),
                    holder: if holder.is_empty() { "holder unknown".into() } else { holder },
                });
            }
            Err(TryLockError::Error(source)) => return Err(io(source)),
        }
        // Who holds it, for the next one's message. A crashed holder's line is simply
        // overwritten: the kernel released its lock.
        let stamp = format!("pid {}\nsince {}\n", std::process::id(), jiff::Timestamp::now());
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
            .and_then(|()| file.write_all(stamp.as_bytes()))
            .and_then(|()| file.sync_data())
            .map_err(io)?;
        tracing::debug!(lock = %path.display(), "daemon lock taken");
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `<database>.lock`, beside the database.
pub fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    database.with_file_name(name)
}

/// What the files beside the database say about it before it is opened: a `-shm` without its
/// `-wal` means the write-ahead log was deleted (SQLite removes both when the last connection
/// closes, and leaves both after a crash), and with it every transaction not yet checkpointed
/// into the database: the cursor and the findings of the last blocks may be gone. `None` when
/// nothing is wrong. Call it under the [`DaemonLock`], before opening.
pub fn inspect_files(database: &Path) -> Option<String> {
    let sibling = |suffix: &str| {
        let mut name = database.file_name()?.to_os_string();
        name.push(suffix);
        Some(database.with_file_name(name))
    };
    let (wal, shm) = (sibling("-wal")?, sibling("-shm")?);
    (database.exists() && shm.exists() && !wal.exists()).then(|| {
        format!(
            "{} is there but {} is not: the write-ahead log was deleted, and with it the \
             transactions not yet copied into {} (the last blocks' cursor and findings may be \
             lost; the follower re-reads from the cursor it finds). Never delete -wal files of a \
             live or crashed guardian",
            shm.display(),
            wal.display(),
            database.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_the_first_release_frees_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("guardian.sqlite");
        let first = DaemonLock::acquire(&db).expect("first");
        assert_eq!(first.path(), dir.path().join("guardian.sqlite.lock"));
        match DaemonLock::acquire(&db) {
            Err(LockError::InUse { holder, .. }) => {
                assert!(holder.contains(&format!("pid {}", std::process::id())), "{holder}")
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(first);
        DaemonLock::acquire(&db).expect("free again");
    }

    #[test]
    fn a_deleted_wal_beside_its_shm_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("g.sqlite");
        std::fs::write(&db, b"").expect("db");
        assert_eq!(inspect_files(&db), None);
        std::fs::write(dir.path().join("g.sqlite-shm"), b"").expect("shm");
        let warning = inspect_files(&db).expect("reported");
        assert!(warning.contains("g.sqlite-wal is not"), "{warning}");
        std::fs::write(dir.path().join("g.sqlite-wal"), b"").expect("wal");
        assert_eq!(inspect_files(&db), None, "both present: a crash, SQLite recovers");
    }
}
