//! The cross-process writer lock of a registry directory.

use std::fs::{File, OpenOptions};
use std::path::Path;

use super::{open_error, OpenError};

const WRITER_LOCK_FILE: &str = "writer.lock";

/// An exclusive advisory lock on `<dir>/writer.lock`, held by the one
/// applier of a registry. Released when dropped (or when the process dies).
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
}

impl WriterLock {
    pub fn acquire(dir: &Path) -> Result<WriterLock, OpenError> {
        let lock_path = dir.join(WRITER_LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| open_error(dir, format!("cannot open {}: {e}", lock_path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(WriterLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(open_error(
                dir,
                "another Applier (in this or another process) is writing this registry; \
                 close it first (a registry has exactly one writer)",
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(open_error(
                dir,
                format!("cannot lock {}: {e}", lock_path.display()),
            )),
        }
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
}
