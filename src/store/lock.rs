//! The cross-process writer lock of a registry directory.
//!
//! An `flock` on `<dir>/writer.lock`. flock locks belong to the open file
//! description, which a fork() child shares: left alone, a child would
//! keep the parent's lock alive after the parent closed its Applier, and a
//! reopen would fail until the child exited. So every lock descriptor is
//! listed in [`LOCK_FDS`], and a `pthread_atfork` child handler closes
//! them all in the child, which then holds no writer lock at all.

use std::fs::{File, OpenOptions};
use std::mem::ManuallyDrop;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Once;

use super::{open_error, OpenError};

pub(crate) const WRITER_LOCK_FILE: &str = "writer.lock";

/// Writer locks one process can hold at once (one per open Applier).
const MAX_WRITER_LOCKS: usize = 256;

/// The descriptors of the writer locks this process holds; -1 is free.
/// Atomics only: the fork handler runs in a child where any mutex may be
/// held forever by a thread that was not copied.
static LOCK_FDS: [AtomicI32; MAX_WRITER_LOCKS] = [const { AtomicI32::new(-1) }; MAX_WRITER_LOCKS];

static INSTALL_FORK_HANDLER: Once = Once::new();

/// Runs in the child of fork(): closes every inherited writer-lock
/// descriptor, so the lock lives only as long as the parent keeps it.
/// Async-signal-safe: atomics and close(2) only.
extern "C" fn close_lock_fds_in_child() {
    for slot in &LOCK_FDS {
        let fd = slot.swap(-1, Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: `fd` was a writer-lock descriptor of the parent, now
            // the child's copy; the child's WriterLock never closes it
            // again (its Drop checks the process id).
            unsafe {
                libc::close(fd);
            }
        }
    }
}

/// An exclusive advisory lock on `<dir>/writer.lock`, held by the one
/// applier of a registry. Released when dropped, when the process dies,
/// and never held by a forked child.
#[derive(Debug)]
pub struct WriterLock {
    /// Closed in `Drop` only by the process that opened it.
    file: ManuallyDrop<File>,
    slot: usize,
    pid: u32,
}

impl WriterLock {
    /// Opens `writer.lock` (mode 0600, never through a symlink, owned by
    /// this user) and takes the lock without waiting.
    pub fn acquire(dir: &Path) -> Result<WriterLock, OpenError> {
        INSTALL_FORK_HANDLER.call_once(|| {
            // SAFETY: registers a handler that only touches atomics and
            // close(2). A failure (ENOMEM) leaves forked children able to
            // keep the lock, as before; nothing unsafe follows from it.
            unsafe {
                libc::pthread_atfork(None, None, Some(close_lock_fds_in_child));
            }
        });
        let lock_path = dir.join(WRITER_LOCK_FILE);
        let cannot = |what: &str, e: std::io::Error| {
            open_error(dir, format!("cannot {what} {}: {e}", lock_path.display()))
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&lock_path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    open_error(
                        dir,
                        format!(
                            "{} is a symbolic link; refusing to follow it",
                            lock_path.display()
                        ),
                    )
                } else {
                    cannot("open", e)
                }
            })?;
        let meta = file.metadata().map_err(|e| cannot("stat", e))?;
        if !meta.file_type().is_file() {
            return Err(open_error(
                dir,
                format!("{} is not a regular file", lock_path.display()),
            ));
        }
        let euid = crate::fsutil::euid();
        if meta.uid() != euid {
            return Err(open_error(
                dir,
                format!(
                    "{} belongs to uid {}, not to this process's uid {euid}; another user could \
                     hold the lock",
                    lock_path.display(),
                    meta.uid()
                ),
            ));
        }
        if meta.permissions().mode() & 0o7777 != 0o600 {
            // Whatever the umask was when it was created: a lock file that
            // others can open is a lock that others can take.
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| cannot("chmod 600", e))?;
        }
        let slot = register(file.as_raw_fd()).ok_or_else(|| {
            open_error(
                dir,
                format!("this process already holds {MAX_WRITER_LOCKS} writer locks"),
            )
        })?;
        let lock = WriterLock {
            file: ManuallyDrop::new(file),
            slot,
            pid: crate::process::id(),
        };
        // Locked only once listed, so a fork from another thread cannot
        // copy a locked descriptor that its child handler does not know.
        match lock.file.try_lock() {
            Ok(()) => Ok(lock),
            Err(std::fs::TryLockError::WouldBlock) => Err(open_error(
                dir,
                "another Applier (in this or another process) is writing this registry; \
                 close it first (a registry has exactly one writer)",
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(cannot("lock", e)),
        }
    }
}

fn register(fd: i32) -> Option<usize> {
    LOCK_FDS.iter().position(|slot| {
        slot.compare_exchange(-1, fd, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    })
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        if self.pid != crate::process::id() {
            // The fork handler already closed this descriptor here; its
            // number may since belong to another file of the child.
            return;
        }
        // Unlocked first: the lock belongs to the open file description,
        // and a child forked between our open and our listing of the
        // descriptor (or between the listing's removal and the close)
        // would keep it alive. LOCK_UN releases it for every copy.
        let _ = self.file.unlock();
        // Unlisted before the close, so a concurrent fork never closes a
        // number that is about to be reused.
        let _ = LOCK_FDS[self.slot].compare_exchange(
            self.file.as_raw_fd(),
            -1,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        // SAFETY: dropped exactly once, here, and never used again.
        unsafe { ManuallyDrop::drop(&mut self.file) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_lock_is_exclusive() {
        let dir = crate::test_support::fresh_dir("lock");
        let first = WriterLock::acquire(&dir).expect("first");
        let err = WriterLock::acquire(&dir).unwrap_err();
        assert!(err.reason.contains("another Applier"), "{err}");
        drop(first);
        WriterLock::acquire(&dir).expect("after release");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn writer_lock_is_owner_only_and_not_followed_through_a_symlink() {
        let dir = crate::test_support::fresh_dir("lockmode");
        let path = dir.join(WRITER_LOCK_FILE);
        std::fs::write(&path, b"").expect("create");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        drop(WriterLock::acquire(&dir).expect("lock"));
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        std::fs::remove_file(&path).expect("rm");
        let target = dir.join("target");
        std::fs::write(&target, b"keep").expect("target");
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        let err = WriterLock::acquire(&dir).unwrap_err();
        assert!(err.reason.contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read(&target).expect("read"), b"keep");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_released_lock_frees_its_slot() {
        let dir = crate::test_support::fresh_dir("lockslot");
        for _ in 0..(MAX_WRITER_LOCKS + 8) {
            drop(WriterLock::acquire(&dir).expect("lock"));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
