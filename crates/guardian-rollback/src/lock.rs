//! The advisory lock that serialises every write guardian makes to managed files.
//!
//! One lock file (`<backup_dir>/.guardian.lock`) covers backups, restores, rollbacks and version
//! records, whichever process (daemon or CLI) makes them. Functions that write take a
//! [`WriteLock`] by reference, so holding the lock is checked by the compiler, not by habit. The
//! lock is advisory (`flock` on Unix): it orders guardian processes, not an operator's editor.
//! The lock file is opened with `O_NOFOLLOW`: a symbolic link there is refused, naming the path.

use std::{
    fs::{self, File, OpenOptions, TryLockError},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use eyre::{Result, WrapErr};

/// Proof that this process holds guardian's write lock; released on drop.
#[derive(Debug)]
pub struct WriteLock {
    file: File,
    path: PathBuf,
}

impl WriteLock {
    /// Take the lock at `path`, waiting for another guardian process to release it.
    pub fn acquire(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).wrap_err_with(|| format!("creating {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|err| crate::atomic_file::symlink_error(err, path))
            .wrap_err_with(|| format!("opening lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                tracing::info!(
                    lock = %path.display(),
                    "another guardian process is writing managed configs; waiting for it"
                );
                file.lock().wrap_err_with(|| format!("locking {}", path.display()))?;
            }
            Err(TryLockError::Error(err)) => {
                return Err(err).wrap_err_with(|| format!("locking {}", path.display()));
            }
        }
        tracing::debug!(lock = %path.display(), "write lock taken");
        Ok(Self { file, path: path.to_owned() })
    }

    /// Take the lock without blocking the async runtime's worker thread.
    pub async fn acquire_async(path: &Path) -> Result<Self> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Self::acquire(&path))
            .await
            .wrap_err("lock task panicked")?
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        // Closing the file releases the lock as well; unlocking first makes the order explicit.
        if let Err(err) = self.file.unlock() {
            tracing::warn!(lock = %self.path.display(), %err, "releasing the write lock");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, Barrier, Mutex},
        time::Duration,
    };

    use super::*;

    #[test]
    fn a_second_holder_waits_for_the_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("backups/.guardian.lock");
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = WriteLock::acquire(&path).expect("first");
        let barrier = Arc::new(Barrier::new(2));
        let waiter = {
            let (path, order, barrier) = (path.clone(), order.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let _second = WriteLock::acquire(&path).expect("second");
                order.lock().expect("order").push("second");
            })
        };
        barrier.wait();
        std::thread::sleep(Duration::from_millis(200));
        order.lock().expect("order").push("first released");
        drop(first);
        waiter.join().expect("waiter");
        assert_eq!(*order.lock().expect("order"), ["first released", "second"]);
    }

    #[test]
    fn a_symlinked_lock_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, "precious").expect("victim");
        let path = dir.path().join(".guardian.lock");
        std::os::unix::fs::symlink(&victim, &path).expect("link");
        let err = WriteLock::acquire(&path).expect_err("refused");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("symbolic link") && msg.contains(&path.display().to_string()),
            "{msg}"
        );
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "precious");
    }
}
