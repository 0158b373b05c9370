//! The one way Python calls into the core: [`run_detached`] runs core
//! work without the GIL and turns a panic into an exception, and
//! [`Handle`] is the closable object behind every handle class
//! (`Applier`, `Registry`).
//!
//! A [`Handle`]'s properties, which every class built on it inherits:
//! - the GIL is released *before* its lock is taken, so a thread waiting
//!   for another thread's fsync never stalls the interpreter;
//! - a handle inherited through fork() is refused (`StorageError`) before
//!   its lock is touched, and never dropped in the child;
//! - a call on a handle from inside a call on the same handle (an
//!   `on_raft_cutover` hook using its applier) is refused (`RuntimeError`)
//!   instead of waiting forever on its own thread's lock;
//! - no panic reaches Python: it becomes `EncryptionApplyError`.

use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use pyo3::prelude::*;

use super::errors::CoreError;
use crate::fsutil::lock;
use crate::store::{RegistryError, StorageError};

/// Runs core work without the GIL, turning any panic into an error.
pub(super) fn run_detached<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> Result<T, CoreError> + Send,
) -> PyResult<T> {
    let result = py.detach(|| match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_owned());
            Err(CoreError::Internal(msg))
        }
    });
    result.map_err(|e| e.into_py(py))
}

thread_local! {
    /// The handles whose lock this thread holds (their addresses).
    static HELD: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Takes a handle off [`HELD`] when its call ends, even by a panic.
struct Release(usize);

impl Drop for Release {
    fn drop(&mut self) {
        HELD.with(|held| held.borrow_mut().retain(|&h| h != self.0));
    }
}

/// A core object behind a Python handle that can be closed. Every access
/// goes through [`Handle::with`]: the GIL is released *before* the lock is
/// taken, so a thread waiting for another thread's fsync never stalls the
/// rest of the interpreter.
///
/// A handle inherited through fork() is refused before its lock is
/// touched: a thread of the parent may have held the lock at the fork,
/// and that thread does not exist in the child, so waiting would hang.
pub(super) struct Handle<T> {
    /// Shared only with helper threads of the object (the group-commit
    /// timer), which hold it weakly. Never dropped in a forked child.
    inner: ManuallyDrop<Arc<Mutex<Option<T>>>>,
    /// The Python class name, for "operation on a closed …".
    what: &'static str,
    /// The registry directory, for errors.
    path: PathBuf,
    /// The process that opened the handle.
    pid: u32,
    /// Set when the handle is closed in a forked child, which may not take
    /// the lock (see above).
    closed_in_child: AtomicBool,
}

impl<T: Send> Handle<T> {
    pub(super) fn new(value: T, what: &'static str, path: &Path) -> Handle<T> {
        Handle {
            inner: ManuallyDrop::new(Arc::new(Mutex::new(Some(value)))),
            what,
            path: path.to_path_buf(),
            pid: crate::process::id(),
            closed_in_child: AtomicBool::new(false),
        }
    }

    pub(super) fn in_child(&self) -> bool {
        self.pid != crate::process::id()
    }

    fn forked(&self) -> CoreError {
        CoreError::Registry(RegistryError::Storage(StorageError::new(
            "using a handle inherited through fork()",
            self.path.clone(),
            format!(
                "this {} was opened by the parent of a fork(); LMDB handles cannot cross \
                 fork, so open a new {} in this process",
                self.what, self.what
            ),
            None,
        )))
    }

    /// Runs `f` on the open object, without the GIL; a closed handle is
    /// `ValueError`, an inherited one `StorageError`.
    pub(super) fn with<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut T) -> Result<R, CoreError> + Send,
    ) -> PyResult<R> {
        run_detached(py, || {
            if self.in_child() {
                return Err(if self.closed_in_child.load(Ordering::Relaxed) {
                    CoreError::Closed(self.what)
                } else {
                    self.forked()
                });
            }
            // A call from inside a call on this handle (an on_raft_cutover
            // hook using its applier) would wait for a lock its own thread
            // holds: refused instead of hanging.
            if self.held_here() {
                return Err(CoreError::Reentrant(self.what));
            }
            let me = self as *const Self as usize;
            let mut guard = lock(&self.inner);
            HELD.with(|held| held.borrow_mut().push(me));
            let _release = Release(me);
            let value = guard.as_mut().ok_or(CoreError::Closed(self.what))?;
            f(value)
        })
    }

    /// Runs `f` on the open object *with* the GIL held, if its lock is free
    /// right now: `None` when it is not (or the handle is closed or
    /// inherited, or `f` itself would have to wait), and the caller then
    /// goes through [`Handle::with`]. `f` must never wait for anything.
    pub(super) fn try_now<R>(
        &self,
        f: impl FnOnce(&mut T) -> Option<Result<R, CoreError>>,
    ) -> Option<Result<R, CoreError>> {
        if self.in_child() || self.held_here() {
            return None;
        }
        let mut guard = match self.inner.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        let value = guard.as_mut()?;
        match catch_unwind(AssertUnwindSafe(|| f(value))) {
            Ok(r) => r,
            Err(_) => Some(Err(CoreError::Internal(
                "panic in a call made with the GIL held".to_owned(),
            ))),
        }
    }

    /// In a forked child, whether `close()` was called there (the parent's
    /// state is not readable without its lock).
    pub(super) fn is_closed(&self, py: Python<'_>) -> bool {
        if self.in_child() {
            return self.closed_in_child.load(Ordering::Relaxed);
        }
        if self.held_here() {
            return false; // a call on it is in progress on this thread
        }
        py.detach(|| lock(&self.inner).is_none())
    }

    /// Whether this thread is inside a call on this handle.
    fn held_here(&self) -> bool {
        let me = self as *const Self as usize;
        HELD.with(|held| held.borrow().contains(&me))
    }

    /// Closes the handle (waiting, without the GIL, for a call in flight)
    /// and drops the object there too: closing LMDB may block. In a forked
    /// child it only marks the handle closed: the object is the parent's.
    pub(super) fn close(&self, py: Python<'_>) -> PyResult<()> {
        if self.in_child() {
            self.closed_in_child.store(true, Ordering::Relaxed);
            return Ok(());
        }
        if self.held_here() {
            return Err(CoreError::Reentrant(self.what).into_py(py));
        }
        py.detach(|| drop(lock(&self.inner).take()));
        Ok(())
    }
}

impl<T> Handle<T> {
    /// The object, for a helper thread that must not keep it alive.
    pub(super) fn weak(&self) -> Weak<Mutex<Option<T>>> {
        Arc::downgrade(&self.inner)
    }
}

impl<T> Drop for Handle<T> {
    fn drop(&mut self) {
        if self.pid != crate::process::id() {
            // The parent's object: its lock may be held by a thread that
            // does not exist here, and its files are the parent's. Leaked,
            // to die with the child.
            return;
        }
        // SAFETY: dropped exactly once, here, and never used again.
        unsafe { ManuallyDrop::drop(&mut self.inner) }
    }
}
