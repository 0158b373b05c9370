//! Core errors to Python exceptions, and the one way Python calls into the
//! core: without the GIL, with panics caught, through a closable handle.
//!
//! The exception classes are declared in `encryption_applier.exceptions`
//! (Python), with their fields as keyword arguments; this module builds
//! them with those fields set.

use std::convert::Infallible;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use pyo3::{intern, BoundObject};

use super::convert::outcome_list;
use crate::applier::BatchHalt;
use crate::error::{ApplierOpenError, ApplyError};
use crate::fsutil::lock;
use crate::kek::{KekFileError, KekFileProblem, UnwrapError};
use crate::nodeid::WriterUint16Collision;
use crate::registry::RegistryCorruption;
use crate::sidecar::{EpochError, SidecarError};
use crate::startup::StartupError;
use crate::store::{OpenError, RegistryError, StorageError};
use crate::wire::MalformedPayload;

type Fields<'py> = Vec<(&'static str, Bound<'py, PyAny>)>;

/// A field value; every type used here converts without failing.
pub(super) fn field<'py, T>(py: Python<'py>, value: T) -> Bound<'py, PyAny>
where
    T: IntoPyObject<'py, Error = Infallible>,
{
    match value.into_pyobject(py) {
        Ok(bound) => bound.into_any().into_bound(),
        Err(never) => match never {},
    }
}

/// `encryption_applier.exceptions.<class>(message, **fields)` as a
/// raisable error. Should building it fail (the module cannot be imported,
/// memory runs out), that failure is raised instead: an exception either
/// way, never a panic and never silence.
pub(super) fn build<'py>(
    py: Python<'py>,
    class: &str,
    message: String,
    fields: Fields<'py>,
) -> PyErr {
    let made = (|| {
        let kwargs = PyDict::new(py);
        for (name, value) in fields {
            kwargs.set_item(name, value)?;
        }
        let instance = py
            .import(intern!(py, "encryption_applier.exceptions"))?
            .getattr(class)?
            .call((message,), Some(&kwargs))?;
        Ok(PyErr::from_value(instance))
    })();
    made.unwrap_or_else(|e: PyErr| e)
}

pub(super) fn malformed_to_py(py: Python<'_>, m: &MalformedPayload) -> PyErr {
    build(
        py,
        "MalformedPayloadError",
        m.to_string(),
        vec![
            ("payload_kind", field(py, m.kind.as_str())),
            ("reason", field(py, m.reason.code())),
            ("offset", field(py, m.reason.offset())),
        ],
    )
}

pub(super) fn corruption_to_py(py: Python<'_>, c: &RegistryCorruption) -> PyErr {
    build(
        py,
        "RegistryCorruptionError",
        c.to_string(),
        vec![
            ("key", PyBytes::new(py, &c.key).into_any()),
            ("problem", field(py, c.kind.code())),
            (
                "value",
                field(py, c.value.as_deref().map(|v| PyBytes::new(py, v))),
            ),
            ("dek_id", field(py, c.dek_id)),
            ("node_id16", field(py, c.node_id16)),
        ],
    )
}

fn storage_to_py(py: Python<'_>, s: &StorageError) -> PyErr {
    build(
        py,
        "StorageError",
        s.to_string(),
        vec![
            ("operation", field(py, s.operation)),
            ("path", field(py, s.path.to_string_lossy())),
            ("code", field(py, s.code)),
            ("replay_from", field(py, s.replay_from)),
            ("applied", field(py, s.applied)),
        ],
    )
}

pub(super) fn unwrap_to_py(
    py: Python<'_>,
    message: String,
    dek_id: Option<u32>,
    purpose: Option<&str>,
    problem: &UnwrapError,
) -> PyErr {
    build(
        py,
        "KEKUnwrapError",
        message,
        vec![
            ("reason", field(py, problem.code())),
            ("dek_id", field(py, dek_id)),
            ("purpose", field(py, purpose)),
        ],
    )
}

fn epoch_to_py(py: Python<'_>, err: &EpochError) -> PyErr {
    match err {
        EpochError::Sidecar(e) => sidecar_to_py(py, e),
        EpochError::Exhausted { dek_id, path } => build(
            py,
            "LocalEpochExhaustedError",
            err.to_string(),
            vec![
                ("dek_id", field(py, *dek_id)),
                ("path", field(py, path.to_string_lossy())),
            ],
        ),
    }
}

fn sidecar_to_py(py: Python<'_>, err: &SidecarError) -> PyErr {
    build(
        py,
        "SidecarError",
        err.to_string(),
        vec![
            ("path", field(py, err.path.to_string_lossy())),
            ("code", field(py, err.code())),
            ("reason", field(py, err.reason())),
        ],
    )
}

fn kek_file_to_py(py: Python<'_>, err: &KekFileError) -> PyErr {
    let mode = match err.problem {
        KekFileProblem::Insecure { mode } => Some(mode),
        _ => None,
    };
    let fields = vec![
        ("path", field(py, err.path.to_string_lossy())),
        ("reason", field(py, err.problem.code())),
        ("mode", field(py, mode)),
    ];
    match err.problem {
        KekFileProblem::Insecure { .. } | KekFileProblem::ForeignOwner { .. } => {
            build(py, "InsecureKEKFileError", err.to_string(), fields)
        }
        _ => build(py, "KEKFileError", err.to_string(), fields),
    }
}

fn open_error_to_py(py: Python<'_>, err: &OpenError) -> PyErr {
    let mut fields = vec![
        ("path", field(py, err.path.to_string_lossy())),
        ("reason", field(py, err.reason.as_str())),
    ];
    match &err.damage {
        Some(damage) => {
            fields.push(("page", field(py, damage.page)));
            fields.push(("problem", field(py, damage.kind.code())));
            build(py, "DamagedRegistryError", err.to_string(), fields)
        }
        None if err.never_committed => {
            build(py, "UncommittedRegistryError", err.to_string(), fields)
        }
        None => build(py, "RegistryOpenError", err.to_string(), fields),
    }
}

pub(super) fn registry_error_to_py(py: Python<'_>, err: &RegistryError) -> PyErr {
    match err {
        RegistryError::Corruption(c) => corruption_to_py(py, c),
        RegistryError::Storage(s) => storage_to_py(py, s),
    }
}

pub(super) fn apply_error_to_py(py: Python<'_>, err: &ApplyError) -> PyErr {
    let msg = err.to_string();
    match err {
        ApplyError::KekNotConfigured { opcode, kind } => build(
            py,
            "KEKNotConfiguredError",
            msg,
            vec![
                ("opcode", field(py, *opcode)),
                ("entry_kind", field(py, kind.as_str())),
            ],
        ),
        ApplyError::LocalEpochRollback {
            dek_id,
            full_node_id,
            last_seen,
            incoming,
        } => build(
            py,
            "LocalEpochRollbackError",
            msg,
            vec![
                ("dek_id", field(py, *dek_id)),
                ("full_node_id", field(py, *full_node_id)),
                ("last_seen", field(py, *last_seen)),
                ("incoming", field(py, *incoming)),
            ],
        ),
        ApplyError::NodeIdCollision {
            dek_id,
            node_id16,
            existing_full_node_id,
            incoming_full_node_id,
        } => build(
            py,
            "NodeIDCollisionError",
            msg,
            vec![
                ("dek_id", field(py, *dek_id)),
                ("node_id16", field(py, *node_id16)),
                ("existing_full_node_id", field(py, *existing_full_node_id)),
                ("incoming_full_node_id", field(py, *incoming_full_node_id)),
            ],
        ),
        ApplyError::Malformed(m) => malformed_to_py(py, m),
        ApplyError::RegistryCorruption(c) => corruption_to_py(py, c),
        ApplyError::Storage(s) => storage_to_py(py, s),
        ApplyError::KekUnwrap {
            dek_id,
            purpose,
            problem,
        } => unwrap_to_py(py, msg, Some(*dek_id), Some(purpose.as_str()), problem),
        ApplyError::KeyConflict { dek_id } => build(
            py,
            "KeyConflictError",
            msg,
            vec![("dek_id", field(py, *dek_id))],
        ),
        ApplyError::AlreadyBootstrapped {
            active_storage,
            active_raft,
            storage_dek_id,
            raft_dek_id,
        } => build(
            py,
            "AlreadyBootstrappedError",
            msg,
            vec![
                ("active_storage", field(py, *active_storage)),
                ("active_raft", field(py, *active_raft)),
                ("storage_dek_id", field(py, *storage_dek_id)),
                ("raft_dek_id", field(py, *raft_dek_id)),
            ],
        ),
        ApplyError::CutoverHook {
            cutover_index,
            dek_id,
            failure,
        } => {
            let err = build(
                py,
                "CutoverHookError",
                msg,
                vec![
                    ("cutover_index", field(py, *cutover_index)),
                    ("dek_id", field(py, *dek_id)),
                ],
            );
            // The hook's own exception, chained, when it was a Python one;
            // KeyboardInterrupt and SystemExit go through unwrapped.
            let hook_error: &(dyn std::error::Error + 'static) = &*failure.0;
            if let Some(cause) = hook_error.downcast_ref::<PyErr>() {
                if !cause.is_instance_of::<pyo3::exceptions::PyException>(py) {
                    return cause.clone_ref(py);
                }
                err.set_cause(py, Some(cause.clone_ref(py)));
            }
            err
        }
        ApplyError::NotBootstrapped { dek_id } => build(
            py,
            "NotBootstrappedError",
            msg,
            vec![("dek_id", field(py, *dek_id))],
        ),
        ApplyError::PayloadRejected(reason) => build(
            py,
            "PayloadRejectedError",
            msg,
            vec![
                ("reason", field(py, reason.code())),
                ("dek_id", field(py, reason.dek_id())),
            ],
        ),
        ApplyError::Sidecar(err) => sidecar_to_py(py, err),
    }
}

/// Errors raised by a call into the core, before conversion to Python.
pub(super) enum CoreError {
    Apply(ApplyError),
    Registry(RegistryError),
    Open(OpenError),
    KekFile(KekFileError),
    Sidecar(SidecarError),
    Epoch(EpochError),
    Join(WriterUint16Collision),
    Startup(StartupError),
    Batch(BatchHalt),
    Closed(&'static str),
    /// A call on a handle from inside a call on the same handle.
    Reentrant(&'static str),
    /// A Rust panic, caught before it could unwind into Python.
    Internal(String),
}

macro_rules! core_error_from {
    ($($source:ty => $variant:ident),* $(,)?) => {
        $(impl From<$source> for CoreError {
            fn from(e: $source) -> Self {
                CoreError::$variant(e)
            }
        })*
    };
}

core_error_from! {
    ApplyError => Apply,
    RegistryError => Registry,
    OpenError => Open,
    KekFileError => KekFile,
    SidecarError => Sidecar,
    EpochError => Epoch,
    WriterUint16Collision => Join,
    StartupError => Startup,
    BatchHalt => Batch,
}

impl From<MalformedPayload> for CoreError {
    fn from(e: MalformedPayload) -> Self {
        CoreError::Apply(ApplyError::Malformed(e))
    }
}

impl From<StorageError> for CoreError {
    fn from(e: StorageError) -> Self {
        CoreError::Apply(ApplyError::Storage(e))
    }
}

impl From<ApplierOpenError> for CoreError {
    fn from(e: ApplierOpenError) -> Self {
        match e {
            ApplierOpenError::Open(e) => CoreError::Open(e),
            ApplierOpenError::Apply(e) => CoreError::Apply(e),
        }
    }
}

impl CoreError {
    pub(super) fn into_py(self, py: Python<'_>) -> PyErr {
        match self {
            CoreError::Apply(e) => apply_error_to_py(py, &e),
            CoreError::Registry(e) => registry_error_to_py(py, &e),
            CoreError::Open(e) => open_error_to_py(py, &e),
            CoreError::KekFile(e) => kek_file_to_py(py, &e),
            CoreError::Sidecar(e) => sidecar_to_py(py, &e),
            CoreError::Epoch(e) => epoch_to_py(py, &e),
            CoreError::Startup(StartupError::Sidecar(e)) => sidecar_to_py(py, &e),
            CoreError::Startup(StartupError::Registry(e)) => registry_error_to_py(py, &e),
            CoreError::Startup(e) => pyo3::exceptions::PyOSError::new_err(e.to_string()),
            CoreError::Join(e) => build(
                py,
                "WriterUint16CollisionError",
                e.to_string(),
                vec![
                    ("dek_id", field(py, e.dek_id)),
                    ("node_id16", field(py, e.node_id16)),
                    ("existing_full_node_id", field(py, e.existing_full_node_id)),
                    ("incoming_full_node_id", field(py, e.incoming_full_node_id)),
                ],
            ),
            CoreError::Batch(halt) => {
                let err = apply_error_to_py(py, &halt.error);
                let value = err.value(py);
                // Attributes the exception declares (as None); setting them
                // on a fresh instance fails only if memory does, and the
                // message still names every id.
                let _ = value.setattr("position", halt.position);
                if let Ok(outcomes) = outcome_list(py, &halt.outcomes) {
                    let _ = value.setattr("outcomes", outcomes);
                }
                err
            }
            CoreError::Closed(what) => {
                PyValueError::new_err(format!("operation on a closed {what}"))
            }
            CoreError::Reentrant(what) => pyo3::exceptions::PyRuntimeError::new_err(format!(
                "this {what} is busy with the call this one comes from (an on_raft_cutover hook \
                 cannot use its applier; act on its arguments after apply returns)"
            )),
            // A halt, so a host that catches EncryptionApplyError stops
            // applying instead of carrying on past an unknown state.
            CoreError::Internal(msg) => build(
                py,
                "EncryptionApplyError",
                format!(
                    "internal error in encryption-applier (a bug; nothing was committed): {msg}"
                ),
                Vec::new(),
            ),
        }
    }
}

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
            pid: std::process::id(),
            closed_in_child: AtomicBool::new(false),
        }
    }

    pub(super) fn in_child(&self) -> bool {
        self.pid != std::process::id()
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
        if self.pid != std::process::id() {
            // The parent's object: its lock may be held by a thread that
            // does not exist here, and its files are the parent's. Leaked,
            // to die with the child.
            return;
        }
        // SAFETY: dropped exactly once, here, and never used again.
        unsafe { ManuallyDrop::drop(&mut self.inner) }
    }
}
