//! Core errors to Python exceptions, and nothing else: [`CoreError`]
//! gathers what a call into the core can fail with, and
//! [`CoreError::into_py`] and the `*_to_py` functions turn each core error
//! into its class of `encryption_applier.exceptions` with its typed
//! fields set.
//!
//! The exception classes are declared in `encryption_applier.exceptions`
//! (Python), with their fields as keyword arguments; this module builds
//! them with those fields set. How Python calls into the core (without
//! the GIL, through a closable handle) is `handle.rs`.

use std::convert::Infallible;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use pyo3::BoundObject;

use super::convert::outcome_list;
use super::py_imports::{ExceptionClass, AFTERMATH};
use crate::applier::{BatchHalt, ResyncError};
use crate::envelope::EnvelopeError;
use crate::error::{ApplierOpenError, ApplyError};
use crate::kek::{KekFailure, KekFileError, KekFileProblem, UnwrapError};
use crate::nodeid::WriterUint16Collision;
use crate::registry::RegistryCorruption;
use crate::sidecar::{EpochError, SidecarError};
use crate::snapshot::{Detail, SnapshotError};
use crate::startup::StartupError;
use crate::status::StatusError;
use crate::store::{Aftermath, OpenError, RegistryError, StorageError};
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
/// raisable error, the class looked up once (`py_imports.rs`). Should
/// building it fail (the module cannot be imported, memory runs out), that
/// failure is raised instead: an exception either way, never a panic and
/// never silence.
pub(super) fn build<'py>(
    py: Python<'py>,
    class: ExceptionClass,
    message: String,
    fields: Fields<'py>,
) -> PyErr {
    let made = (|| {
        let kwargs = PyDict::new(py);
        for (name, value) in fields {
            kwargs.set_item(name, value)?;
        }
        let instance = class.get(py)?.call((message,), Some(&kwargs))?;
        Ok(PyErr::from_value(instance))
    })();
    made.unwrap_or_else(|e: PyErr| e)
}

pub(super) fn malformed_to_py(py: Python<'_>, m: &MalformedPayload) -> PyErr {
    build(
        py,
        ExceptionClass::MalformedPayloadError,
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
        ExceptionClass::RegistryCorruptionError,
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

/// `StorageError.aftermath`: a tuple of `encryption_applier.Aftermath`.
fn aftermath_to_py<'py>(py: Python<'py>, s: &StorageError) -> PyResult<Bound<'py, PyAny>> {
    let class = AFTERMATH.get(py)?;
    let mut items = Vec::with_capacity(s.aftermath.len());
    for a in &s.aftermath {
        let kwargs = PyDict::new(py);
        let kind = match a {
            Aftermath::EnvironmentUnusable => "environment_unusable",
            Aftermath::StagedNotCommitted {
                entries,
                through_index,
            } => {
                kwargs.set_item("entries", entries)?;
                kwargs.set_item("through_index", through_index)?;
                "staged_not_committed"
            }
            Aftermath::RowsKept { rows, undo } => {
                kwargs.set_item("rows", rows)?;
                kwargs.set_item("undo", undo)?;
                "rows_kept"
            }
            Aftermath::BackupKept { path, undo } => {
                kwargs.set_item("path", path.to_string_lossy())?;
                kwargs.set_item("undo", undo)?;
                "backup_kept"
            }
        };
        items.push(class.call((kind,), Some(&kwargs))?);
    }
    Ok(pyo3::types::PyTuple::new(py, items)?.into_any())
}

fn storage_to_py(py: Python<'_>, s: &StorageError) -> PyErr {
    let aftermath = match aftermath_to_py(py, s) {
        Ok(a) => a,
        Err(e) => return e,
    };
    build(
        py,
        ExceptionClass::StorageError,
        s.to_string(),
        vec![
            ("operation", field(py, s.operation)),
            ("path", field(py, s.path.to_string_lossy())),
            ("code", field(py, s.code)),
            ("replay_from", field(py, s.replay_from)),
            ("applied", field(py, s.applied)),
            ("aftermath", aftermath),
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
        ExceptionClass::KEKUnwrapError,
        message,
        vec![
            ("reason", field(py, problem.code())),
            ("dek_id", field(py, dek_id)),
            ("purpose", field(py, purpose)),
        ],
    )
}

/// The exception a KEK written in Python raised, when that is what
/// `failure` is (the core keeps it whole).
pub(super) fn kek_exception(py: Python<'_>, failure: &KekFailure) -> Option<PyErr> {
    let source: &(dyn std::error::Error + 'static) = &*failure.source;
    source.downcast_ref::<PyErr>().map(|e| e.clone_ref(py))
}

/// An exception of a host's code (a hook, a KEK) under one of ours: an
/// `Exception` becomes the `__cause__` of `ours`; anything else (a
/// `KeyboardInterrupt`, a `SystemExit`) is raised as it is.
fn chained(py: Python<'_>, ours: PyErr, theirs: Option<PyErr>) -> PyErr {
    match theirs {
        Some(cause) if !cause.is_instance_of::<pyo3::exceptions::PyException>(py) => cause,
        Some(cause) => {
            ours.set_cause(py, Some(cause));
            ours
        }
        None => ours,
    }
}

fn epoch_to_py(py: Python<'_>, err: &EpochError) -> PyErr {
    match err {
        EpochError::Sidecar(e) => sidecar_to_py(py, e),
        EpochError::Exhausted { dek_id, path } => build(
            py,
            ExceptionClass::LocalEpochExhaustedError,
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
        ExceptionClass::SidecarError,
        err.to_string(),
        vec![
            ("path", field(py, err.path.to_string_lossy())),
            ("code", field(py, err.code())),
            ("reason", field(py, err.reason())),
        ],
    )
}

fn snapshot_to_py(py: Python<'_>, err: &SnapshotError) -> PyErr {
    let details = PyDict::new(py);
    for (name, value) in err.problem.details() {
        let set = match value {
            Detail::Int(v) => details.set_item(name, v),
            Detail::Text(t) => details.set_item(name, t),
        };
        if let Err(e) = set {
            return e;
        }
    }
    build(
        py,
        ExceptionClass::SnapshotError,
        err.to_string(),
        vec![
            ("path", field(py, err.path.to_string_lossy())),
            ("code", field(py, err.code())),
            ("reason", field(py, err.reason())),
            ("refused", field(py, err.refused())),
            ("index", field(py, err.index)),
            ("details", details.into_any()),
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
        KekFileProblem::Insecure { .. } | KekFileProblem::ForeignOwner { .. } => build(
            py,
            ExceptionClass::InsecureKEKFileError,
            err.to_string(),
            fields,
        ),
        _ => build(py, ExceptionClass::KEKFileError, err.to_string(), fields),
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
            build(
                py,
                ExceptionClass::DamagedRegistryError,
                err.to_string(),
                fields,
            )
        }
        None if err.never_committed => build(
            py,
            ExceptionClass::UncommittedRegistryError,
            err.to_string(),
            fields,
        ),
        None => build(
            py,
            ExceptionClass::RegistryOpenError,
            err.to_string(),
            fields,
        ),
    }
}

pub(super) fn envelope_error_to_py(py: Python<'_>, err: &EnvelopeError) -> PyErr {
    let msg = err.to_string();
    match err {
        EnvelopeError::Short { len } => build(
            py,
            ExceptionClass::EnvelopeShortError,
            msg,
            vec![("length", field(py, *len))],
        ),
        EnvelopeError::Version { got } => build(
            py,
            ExceptionClass::EnvelopeVersionError,
            msg,
            vec![("version", field(py, *got))],
        ),
        EnvelopeError::Integrity { key_id } => build(
            py,
            ExceptionClass::IntegrityError,
            msg,
            vec![("key_id", field(py, *key_id))],
        ),
        EnvelopeError::UnknownKey { key_id } => pyo3::exceptions::PyKeyError::new_err(*key_id),
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
            ExceptionClass::KEKNotConfiguredError,
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
            ExceptionClass::LocalEpochRollbackError,
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
            ExceptionClass::NodeIDCollisionError,
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
        } => {
            let err = unwrap_to_py(py, msg, Some(*dek_id), Some(purpose.as_str()), problem);
            chained(
                py,
                err,
                problem.failure().and_then(|f| kek_exception(py, f)),
            )
        }
        ApplyError::KeyConflict { dek_id } => build(
            py,
            ExceptionClass::KeyConflictError,
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
            ExceptionClass::AlreadyBootstrappedError,
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
                ExceptionClass::CutoverHookError,
                msg,
                vec![
                    ("cutover_index", field(py, *cutover_index)),
                    ("dek_id", field(py, *dek_id)),
                ],
            );
            // The hook's own exception, chained, when it was a Python one;
            // KeyboardInterrupt and SystemExit go through unwrapped.
            let hook_error: &(dyn std::error::Error + 'static) = &*failure.0;
            let cause = hook_error.downcast_ref::<PyErr>().map(|e| e.clone_ref(py));
            chained(py, err, cause)
        }
        ApplyError::NotBootstrapped { dek_id } => build(
            py,
            ExceptionClass::NotBootstrappedError,
            msg,
            vec![("dek_id", field(py, *dek_id))],
        ),
        ApplyError::PayloadRejected(reason) => build(
            py,
            ExceptionClass::PayloadRejectedError,
            msg,
            vec![
                ("reason", field(py, reason.code())),
                ("dek_id", field(py, reason.dek_id())),
            ],
        ),
        ApplyError::Sidecar(err) => sidecar_to_py(py, err),
    }
}

/// A resync that did nothing: a halt is the entry's own exception (its
/// message saying where the resync stopped, `position` its place in the
/// log); a log short of the gap is the start-up guard's
/// `RaftLogGapUncoveredError`, since it is the same fact.
fn resync_error_to_py(py: Python<'_>, e: ResyncError) -> PyErr {
    let msg = e.to_string();
    match e {
        ResyncError::Halt {
            position, error, ..
        } => {
            let err = apply_error_to_py(py, &error);
            // The entry's own exception and fields, with the message that
            // says where the resync stopped (str() and pickling read args);
            // `position` is an attribute every halt declares (None). Both
            // can fail only if memory does, and the fields still name the ids.
            let value = err.value(py);
            let _ = value.setattr("args", (msg,));
            let _ = value.setattr("position", position);
            err
        }
        ResyncError::Uncovered {
            sidecar_applied_index,
            through_index,
            log_range,
        } => build(
            py,
            ExceptionClass::RaftLogGapUncoveredError,
            msg,
            vec![
                ("sidecar_applied_index", field(py, sidecar_applied_index)),
                ("engine_applied_index", field(py, through_index)),
                ("log_first_index", field(py, log_range.map(|(a, _)| a))),
                ("log_last_index", field(py, log_range.map(|(_, b)| b))),
            ],
        ),
        ResyncError::ThroughPastRegistry { .. } => PyValueError::new_err(msg),
        ResyncError::Apply(e) => apply_error_to_py(py, &e),
    }
}

fn status_error_to_py(py: Python<'_>, err: StatusError) -> PyErr {
    match err {
        StatusError::ZeroCaller => PyValueError::new_err(err.to_string()),
        StatusError::Sidecar(e) => sidecar_to_py(py, &e),
        StatusError::Open(e) => CoreError::from(e).into_py(py),
        StatusError::Registry(e) => registry_error_to_py(py, &e),
        StatusError::ForeignRow {
            dek_id,
            node_id16,
            row_full_node_id,
            caller_full_node_id,
        } => build(
            py,
            ExceptionClass::ForeignRegistryRowError,
            err.to_string(),
            vec![
                ("dek_id", field(py, dek_id)),
                ("node_id16", field(py, node_id16)),
                ("row_full_node_id", field(py, row_full_node_id)),
                ("caller_full_node_id", field(py, caller_full_node_id)),
            ],
        ),
    }
}

/// Errors raised by a call into the core, before conversion to Python.
pub(super) enum CoreError {
    Apply(ApplyError),
    Registry(RegistryError),
    Open(OpenError),
    KekFile(KekFileError),
    Sidecar(SidecarError),
    Snapshot(SnapshotError),
    Epoch(EpochError),
    Join(WriterUint16Collision),
    Startup(StartupError),
    Batch(BatchHalt),
    Resync(ResyncError),
    /// Boxed: the largest of the core errors, and rare.
    Status(Box<StatusError>),
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
    SnapshotError => Snapshot,
    EpochError => Epoch,
    WriterUint16Collision => Join,
    StartupError => Startup,
    BatchHalt => Batch,
    ResyncError => Resync,
}

impl From<StatusError> for CoreError {
    fn from(e: StatusError) -> Self {
        CoreError::Status(Box::new(e))
    }
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
            CoreError::Snapshot(e) => snapshot_to_py(py, &e),
            CoreError::Epoch(e) => epoch_to_py(py, &e),
            CoreError::Startup(StartupError::Sidecar(e)) => sidecar_to_py(py, &e),
            CoreError::Startup(StartupError::Snapshot(e)) => snapshot_to_py(py, &e),
            CoreError::Startup(StartupError::Registry(e)) => registry_error_to_py(py, &e),
            // A KEK interrupted in the start-up check: what it raised.
            CoreError::Startup(StartupError::KekInterrupted(f)) => kek_exception(py, &f)
                .unwrap_or_else(|| pyo3::exceptions::PyOSError::new_err(f.to_string())),
            CoreError::Startup(e) => pyo3::exceptions::PyOSError::new_err(e.to_string()),
            CoreError::Join(e) => build(
                py,
                ExceptionClass::WriterUint16CollisionError,
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
                if !err.is_instance_of::<pyo3::exceptions::PyException>(py) {
                    return err; // a host's KeyboardInterrupt, as it was raised
                }
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
            CoreError::Resync(e) => resync_error_to_py(py, e),
            CoreError::Status(e) => status_error_to_py(py, *e),
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
                ExceptionClass::EncryptionApplyError,
                format!(
                    "internal error in encryption-applier (a bug; nothing was committed): {msg}"
                ),
                Vec::new(),
            ),
        }
    }
}
