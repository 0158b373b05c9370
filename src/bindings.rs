//! The Python module `encryption_applier._native`: type conversion and the
//! mapping of core errors to exceptions. No rules live here.

use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pyo3::exceptions::{PyException, PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    IntoPyDict, PyBool, PyByteArray, PyBytes, PyDict, PyInt, PyList, PyMemoryView, PyString,
    PyTuple, PyType,
};
use pyo3::BoundObject;
use zeroize::Zeroize;

use crate::applier::testing::{self, FaultAction, FaultPoint};
use crate::applier::{Applier, ApplierOptions, BatchHalt};
use crate::error::{ApplierOpenError, ApplyError};
use crate::fsutil::lock;
use crate::kek::{Dek, Kek, KekFileError, KekFileProblem, UnwrapError, DEK_LEN};
use crate::registry::{
    self as codec, CorruptionKind, RegistryCorruption, RegistryRow, RegistryValue,
};
use crate::rules::Outcome;
use crate::sidecar::{self, Sidecar, SidecarError, SidecarKey};
use crate::store::{OpenError, RegistryError, StorageError};
use crate::view::Registry;
use crate::wire::{self, Bootstrap, Entry, MalformedPayload, Purpose, Registration, Rotation};

/// The exception classes, in their own module so `StorageError` does not
/// clash with the core's struct of that name.
mod exceptions {
    use pyo3::create_exception;
    use pyo3::exceptions::PyException;

    create_exception!(
        encryption_applier,
        EncryptionError,
        PyException,
        "Every error this package raises on purpose."
    );
    create_exception!(
        encryption_applier,
        EncryptionApplyError,
        EncryptionError,
        "Halt: the entry was not applied and nothing was written. The host must stop applying."
    );
    create_exception!(
        encryption_applier,
        KEKNotConfiguredError,
        EncryptionApplyError,
        "A bootstrap or rotation reached an applier that has no KEK."
    );
    create_exception!(
        encryption_applier,
        LocalEpochRollbackError,
        EncryptionApplyError,
        "Case 3: a registration's local epoch is below the row's last-seen epoch."
    );
    create_exception!(
        encryption_applier,
        NodeIDCollisionError,
        EncryptionApplyError,
        "Case 4: another full node id already writes under this DEK with the same node_id16."
    );
    create_exception!(
        encryption_applier,
        MalformedPayloadError,
        EncryptionApplyError,
        "Bytes or a payload object that are not a valid encryption payload."
    );
    create_exception!(
        encryption_applier,
        RegistryCorruptionError,
        EncryptionApplyError,
        "A stored registry row that does not decode (never read as 'no row')."
    );
    create_exception!(
        encryption_applier,
        StorageError,
        EncryptionApplyError,
        "An LMDB or file-system fault while applying or reading."
    );
    create_exception!(
        encryption_applier,
        KEKUnwrapError,
        EncryptionApplyError,
        "A wrapped DEK that does not open: wrong length, wrong KEK or tampered bytes."
    );
    create_exception!(
        encryption_applier,
        KeyConflictError,
        EncryptionApplyError,
        "A DEK id already loaded with different key bytes."
    );
    create_exception!(
        encryption_applier,
        AlreadyBootstrappedError,
        EncryptionApplyError,
        "A bootstrap that is not an exact replay of the one applied (use rotation)."
    );
    create_exception!(
        encryption_applier,
        NotBootstrappedError,
        EncryptionApplyError,
        "A rotation before any bootstrap."
    );
    create_exception!(
        encryption_applier,
        PayloadRejectedError,
        EncryptionApplyError,
        "A well-formed bootstrap or rotation refused on its meaning (ids, batch rows, proposer)."
    );
    create_exception!(
        encryption_applier,
        SidecarError,
        EncryptionApplyError,
        "A keys.json sidecar that is unreadable or invalid, or a durable write that failed."
    );
    create_exception!(
        encryption_applier,
        KEKFileError,
        EncryptionError,
        "A KEK file that cannot be used (missing, not a regular file, wrong size)."
    );
    create_exception!(
        encryption_applier,
        InsecureKEKFileError,
        KEKFileError,
        "A KEK file readable or writable by group or others."
    );
    create_exception!(
        encryption_applier,
        RegistryOpenError,
        EncryptionError,
        "A registry directory that cannot be opened (not a halt: no entry was involved)."
    );
}
use exceptions::{
    AlreadyBootstrappedError, EncryptionApplyError, EncryptionError, InsecureKEKFileError,
    KEKFileError, KEKNotConfiguredError, KEKUnwrapError, KeyConflictError, LocalEpochRollbackError,
    MalformedPayloadError, NodeIDCollisionError, NotBootstrappedError, PayloadRejectedError,
    RegistryCorruptionError, RegistryOpenError, SidecarError as PySidecarError,
    StorageError as PyStorageError,
};

/// `encryption_applier.Purpose`, an `IntEnum` built once at import.
static PURPOSE_ENUM: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

// ---------------------------------------------------------------------------
// Errors

fn set_attrs(py: Python<'_>, err: &PyErr, attrs: Vec<(&str, Py<PyAny>)>) {
    let value = err.value(py);
    for (name, v) in attrs {
        // Setting an attribute on a fresh exception instance cannot fail
        // short of memory exhaustion; the message still names every id.
        let _ = value.setattr(name, v);
    }
}

fn obj<'py, T>(py: Python<'py>, v: T) -> Py<PyAny>
where
    T: IntoPyObject<'py>,
{
    match v.into_pyobject(py) {
        Ok(b) => b.into_any().unbind(),
        Err(_) => py.None(),
    }
}

fn malformed_to_py(py: Python<'_>, m: &MalformedPayload) -> PyErr {
    let err = MalformedPayloadError::new_err(m.to_string());
    set_attrs(
        py,
        &err,
        vec![
            ("payload_kind", obj(py, m.kind.as_str())),
            ("reason", obj(py, m.reason.code())),
            ("offset", obj(py, m.reason.offset())),
        ],
    );
    err
}

fn corruption_to_py(py: Python<'_>, c: &RegistryCorruption) -> PyErr {
    let err = RegistryCorruptionError::new_err(c.to_string());
    set_attrs(
        py,
        &err,
        vec![
            ("key", obj(py, PyBytes::new(py, &c.key))),
            (
                "value",
                match &c.value {
                    Some(v) => obj(py, PyBytes::new(py, v)),
                    None => py.None(),
                },
            ),
            ("dek_id", obj(py, c.dek_id)),
            ("node_id16", obj(py, c.node_id16)),
            ("problem", obj(py, c.kind.code())),
        ],
    );
    err
}

fn storage_to_py(py: Python<'_>, s: &StorageError) -> PyErr {
    let err = PyStorageError::new_err(s.to_string());
    set_attrs(
        py,
        &err,
        vec![
            ("operation", obj(py, s.operation)),
            ("path", obj(py, s.path.to_string_lossy().into_owned())),
            ("code", obj(py, s.code)),
        ],
    );
    err
}

fn apply_error_to_py(py: Python<'_>, err: &ApplyError) -> PyErr {
    let msg = err.to_string();
    match err {
        ApplyError::KekNotConfigured { opcode, kind } => {
            let e = KEKNotConfiguredError::new_err(msg);
            set_attrs(
                py,
                &e,
                vec![
                    ("opcode", obj(py, *opcode)),
                    ("entry_kind", obj(py, kind.as_str())),
                ],
            );
            e
        }
        ApplyError::LocalEpochRollback {
            dek_id,
            full_node_id,
            last_seen,
            incoming,
        } => {
            let e = LocalEpochRollbackError::new_err(msg);
            set_attrs(
                py,
                &e,
                vec![
                    ("dek_id", obj(py, *dek_id)),
                    ("full_node_id", obj(py, *full_node_id)),
                    ("last_seen", obj(py, *last_seen)),
                    ("incoming", obj(py, *incoming)),
                ],
            );
            e
        }
        ApplyError::NodeIdCollision {
            dek_id,
            node_id16,
            existing_full_node_id,
            incoming_full_node_id,
        } => {
            let e = NodeIDCollisionError::new_err(msg);
            set_attrs(
                py,
                &e,
                vec![
                    ("dek_id", obj(py, *dek_id)),
                    ("node_id16", obj(py, *node_id16)),
                    ("existing_full_node_id", obj(py, *existing_full_node_id)),
                    ("incoming_full_node_id", obj(py, *incoming_full_node_id)),
                ],
            );
            e
        }
        ApplyError::Malformed(m) => malformed_to_py(py, m),
        ApplyError::RegistryCorruption(c) => corruption_to_py(py, c),
        ApplyError::Storage(s) => storage_to_py(py, s),
        ApplyError::KekUnwrap {
            dek_id,
            purpose,
            problem,
        } => unwrap_to_py(py, msg, Some(*dek_id), Some(purpose.as_str()), problem),
        ApplyError::KeyConflict { dek_id } => {
            let e = KeyConflictError::new_err(msg);
            set_attrs(py, &e, vec![("dek_id", obj(py, *dek_id))]);
            e
        }
        ApplyError::AlreadyBootstrapped {
            active_storage,
            active_raft,
            storage_dek_id,
            raft_dek_id,
        } => {
            let e = AlreadyBootstrappedError::new_err(msg);
            set_attrs(
                py,
                &e,
                vec![
                    ("active_storage", obj(py, *active_storage)),
                    ("active_raft", obj(py, *active_raft)),
                    ("storage_dek_id", obj(py, *storage_dek_id)),
                    ("raft_dek_id", obj(py, *raft_dek_id)),
                ],
            );
            e
        }
        ApplyError::NotBootstrapped { dek_id } => {
            let e = NotBootstrappedError::new_err(msg);
            set_attrs(py, &e, vec![("dek_id", obj(py, *dek_id))]);
            e
        }
        ApplyError::PayloadRejected(reason) => {
            let e = PayloadRejectedError::new_err(msg);
            set_attrs(
                py,
                &e,
                vec![
                    ("reason", obj(py, reason.code())),
                    ("dek_id", obj(py, reason.dek_id())),
                ],
            );
            e
        }
        ApplyError::Sidecar(err) => sidecar_to_py(py, err),
    }
}

fn unwrap_to_py(
    py: Python<'_>,
    msg: String,
    dek_id: Option<u32>,
    purpose: Option<&str>,
    problem: &UnwrapError,
) -> PyErr {
    let e = KEKUnwrapError::new_err(msg);
    set_attrs(
        py,
        &e,
        vec![
            ("dek_id", obj(py, dek_id)),
            ("purpose", obj(py, purpose)),
            ("reason", obj(py, problem.code())),
        ],
    );
    e
}

fn sidecar_to_py(py: Python<'_>, err: &SidecarError) -> PyErr {
    let e = PySidecarError::new_err(err.to_string());
    set_attrs(
        py,
        &e,
        vec![
            ("path", obj(py, err.path.to_string_lossy().into_owned())),
            ("reason", obj(py, err.reason.clone())),
        ],
    );
    e
}

fn kek_file_to_py(py: Python<'_>, err: &KekFileError) -> PyErr {
    let msg = err.to_string();
    let e = match err.problem {
        KekFileProblem::Insecure { .. } => InsecureKEKFileError::new_err(msg),
        _ => KEKFileError::new_err(msg),
    };
    let mode = match err.problem {
        KekFileProblem::Insecure { mode } => Some(mode),
        _ => None,
    };
    set_attrs(
        py,
        &e,
        vec![
            ("path", obj(py, err.path.to_string_lossy().into_owned())),
            ("reason", obj(py, err.problem.code())),
            ("mode", obj(py, mode)),
        ],
    );
    e
}

fn registry_error_to_py(py: Python<'_>, err: &RegistryError) -> PyErr {
    match err {
        RegistryError::Corruption(c) => corruption_to_py(py, c),
        RegistryError::Storage(s) => storage_to_py(py, s),
    }
}

fn open_error_to_py(py: Python<'_>, err: &OpenError) -> PyErr {
    let e = RegistryOpenError::new_err(err.to_string());
    set_attrs(
        py,
        &e,
        vec![
            ("path", obj(py, err.path.to_string_lossy().into_owned())),
            ("reason", obj(py, err.reason.clone())),
        ],
    );
    e
}

/// Errors raised by a call into the core, before conversion to Python.
enum CoreError {
    Apply(ApplyError),
    Registry(RegistryError),
    Open(OpenError),
    KekFile(KekFileError),
    Sidecar(SidecarError),
    Batch(BatchHalt),
    Closed(&'static str),
    /// A Rust panic, caught before it could unwind into Python.
    Internal(String),
}

impl From<ApplyError> for CoreError {
    fn from(e: ApplyError) -> Self {
        CoreError::Apply(e)
    }
}
impl From<RegistryError> for CoreError {
    fn from(e: RegistryError) -> Self {
        CoreError::Registry(e)
    }
}
impl From<MalformedPayload> for CoreError {
    fn from(e: MalformedPayload) -> Self {
        CoreError::Apply(ApplyError::Malformed(e))
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
impl From<KekFileError> for CoreError {
    fn from(e: KekFileError) -> Self {
        CoreError::KekFile(e)
    }
}
impl From<SidecarError> for CoreError {
    fn from(e: SidecarError) -> Self {
        CoreError::Sidecar(e)
    }
}
impl From<OpenError> for CoreError {
    fn from(e: OpenError) -> Self {
        CoreError::Open(e)
    }
}

impl CoreError {
    fn into_py(self, py: Python<'_>) -> PyErr {
        match self {
            CoreError::Apply(e) => apply_error_to_py(py, &e),
            CoreError::Registry(e) => registry_error_to_py(py, &e),
            CoreError::Open(e) => open_error_to_py(py, &e),
            CoreError::KekFile(e) => kek_file_to_py(py, &e),
            CoreError::Batch(halt) => {
                let err = apply_error_to_py(py, &halt.error);
                let outcomes = match outcome_list(py, &halt.outcomes) {
                    Ok(list) => list.into_any().unbind(),
                    Err(_) => py.None(),
                };
                set_attrs(
                    py,
                    &err,
                    vec![("position", obj(py, halt.position)), ("outcomes", outcomes)],
                );
                err
            }
            CoreError::Sidecar(e) => sidecar_to_py(py, &e),
            CoreError::Closed(what) => {
                PyValueError::new_err(format!("operation on a closed {what}"))
            }
            // A halt, so a host that catches EncryptionApplyError stops
            // applying instead of carrying on past an unknown state.
            CoreError::Internal(msg) => EncryptionApplyError::new_err(format!(
                "internal error in encryption-applier (a bug; nothing was committed): {msg}"
            )),
        }
    }
}

/// Runs core work without the GIL, turning any panic into an error.
fn run_detached<T: Send>(
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

// ---------------------------------------------------------------------------
// Argument conversion

/// Accepts `bytes`, `bytearray` or `memoryview`; refuses `str`, ints and
/// sequences, which `bytes(x)` would silently accept.
fn bytes_arg<'a>(obj: &'a Bound<'_, PyAny>, what: &str) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(b.as_bytes()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Cow::Owned(b.to_vec()));
    }
    if obj.cast::<PyMemoryView>().is_ok() {
        let b: Vec<u8> = obj.call_method0("tobytes")?.extract()?;
        return Ok(Cow::Owned(b));
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be bytes, bytearray or memoryview, not {}",
        obj.get_type().name()?
    )))
}

/// An int argument for an unsigned wire field of `BITS` bits. Out-of-range
/// values raise `OverflowError` saying the range (never wrap), bools and
/// non-ints raise `TypeError`; pyo3 adds the argument's name as a note.
struct Unsigned<const BITS: u32>(u64);

impl<const BITS: u32> Unsigned<BITS> {
    const MAX: u64 = if BITS >= 64 {
        u64::MAX
    } else {
        (1u64 << BITS) - 1
    };
}

impl<'a, 'py, const BITS: u32> FromPyObject<'a, 'py> for Unsigned<BITS> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let range = || format!("0..={} (unsigned {BITS}-bit)", Self::MAX);
        // Objects with __index__ (e.g. numpy integers) count as ints; bools
        // do not, since passing one is almost surely a mistake.
        let int_like = obj.is_instance_of::<PyInt>() || obj.hasattr("__index__")?;
        if obj.is_instance_of::<PyBool>() || !int_like {
            return Err(PyTypeError::new_err(format!(
                "expected an int in {}, got {}",
                range(),
                obj.get_type().name()?
            )));
        }
        match obj.extract::<u64>() {
            Ok(v) if v <= Self::MAX => Ok(Unsigned(v)),
            Ok(v) => Err(PyOverflowError::new_err(format!(
                "{v} is out of range {}",
                range()
            ))),
            Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => {
                let what = if obj.lt(0)? {
                    "a negative int"
                } else {
                    "too large an int"
                };
                Err(PyOverflowError::new_err(format!(
                    "{what} is out of range {}",
                    range()
                )))
            }
            Err(e) => Err(e),
        }
    }
}

type U8 = Unsigned<8>;
type U16 = Unsigned<16>;
type U32 = Unsigned<32>;
type U64 = Unsigned<64>;

// The extractor bounded each value by its width, so these narrowings are
// exact; each width only narrows to its own type.
impl Unsigned<8> {
    fn value(&self) -> u8 {
        self.0 as u8
    }
}
impl Unsigned<16> {
    fn value(&self) -> u16 {
        self.0 as u16
    }
}
impl Unsigned<32> {
    fn value(&self) -> u32 {
        self.0 as u32
    }
}
impl Unsigned<64> {
    fn value(&self) -> u64 {
        self.0
    }
}

fn purpose_arg(value: &Bound<'_, PyAny>) -> PyResult<Purpose> {
    let raw: i64 = value.extract().map_err(|_| {
        PyTypeError::new_err("purpose must be Purpose.STORAGE, Purpose.RAFT, 1 or 2")
    })?;
    u8::try_from(raw)
        .ok()
        .and_then(Purpose::from_byte)
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "purpose must be 1 (Purpose.STORAGE) or 2 (Purpose.RAFT), got {raw}"
            ))
        })
}

/// How a purpose reads in a repr: the Python enum member.
fn purpose_repr(purpose: Purpose) -> &'static str {
    match purpose {
        Purpose::Storage => "Purpose.STORAGE",
        Purpose::Raft => "Purpose.RAFT",
    }
}

fn purpose_to_py(py: Python<'_>, purpose: Purpose) -> PyResult<Py<PyAny>> {
    let cls = PURPOSE_ENUM
        .get(py)
        .ok_or_else(|| PyException::new_err("encryption_applier.Purpose is not initialised"))?;
    cls.call1(py, (purpose as u8,))
}

// ---------------------------------------------------------------------------
// Payload classes

/// A registration entry (opcode 0x03): one writer under one DEK.
#[pyclass(module = "encryption_applier", name = "Registration", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PyRegistration(Registration);

#[pymethods]
impl PyRegistration {
    #[new]
    #[pyo3(signature = (dek_id, full_node_id, local_epoch))]
    fn new(dek_id: U32, full_node_id: U64, local_epoch: U16) -> Self {
        PyRegistration(Registration {
            dek_id: dek_id.value(),
            full_node_id: full_node_id.value(),
            local_epoch: local_epoch.value(),
        })
    }

    #[classattr]
    fn __match_args__() -> (&'static str, &'static str, &'static str) {
        ("dek_id", "full_node_id", "local_epoch")
    }

    #[getter]
    fn dek_id(&self) -> u32 {
        self.0.dek_id
    }
    #[getter]
    fn full_node_id(&self) -> u64 {
        self.0.full_node_id
    }
    #[getter]
    fn local_epoch(&self) -> u16 {
        self.0.local_epoch
    }
    /// `full_node_id & 0xFFFF`: the nonce prefix and the registry key's node part.
    #[getter]
    fn node_id16(&self) -> u16 {
        self.0.node_id16()
    }

    fn encode<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.encode())
    }

    fn to_entry<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        entry_bytes(py, &Entry::Registration(self.0))
    }

    #[classmethod]
    fn decode(_cls: &Bound<'_, PyType>, payload: &Bound<'_, PyAny>) -> PyResult<Self> {
        let bytes = bytes_arg(payload, "payload")?;
        Registration::decode(&bytes)
            .map(PyRegistration)
            .map_err(|m| malformed_to_py(payload.py(), &m))
    }

    fn __repr__(&self) -> String {
        registration_repr(&self.0)
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let r = &slf.get().0;
        (slf.get_type(), (r.dek_id, r.full_node_id, r.local_epoch)).into_pyobject(slf.py())
    }
}

fn registration_repr(r: &Registration) -> String {
    format!(
        "Registration(dek_id={}, full_node_id=0x{:x}, local_epoch={})",
        r.dek_id, r.full_node_id, r.local_epoch
    )
}

fn entry_bytes<'py>(py: Python<'py>, entry: &Entry) -> PyResult<Bound<'py, PyBytes>> {
    entry
        .encode()
        .map(|b| PyBytes::new(py, &b))
        .map_err(|m| malformed_to_py(py, &m))
}

fn registrations_arg(batch: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<Registration>> {
    let Some(batch) = batch else {
        return Ok(Vec::new());
    };
    if batch.cast::<PyBytes>().is_ok() || batch.is_instance_of::<pyo3::types::PyString>() {
        return Err(PyTypeError::new_err(
            "batch_registry must be an iterable of Registration",
        ));
    }
    let mut out = Vec::new();
    for (i, item) in batch.try_iter()?.enumerate() {
        let item = item?;
        let reg = item.cast::<PyRegistration>().map_err(|_| {
            PyTypeError::new_err(format!(
                "batch_registry[{i}] must be a Registration, not {}",
                item.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        out.push(reg.get().0);
    }
    Ok(out)
}

/// A bootstrap entry (opcode 0x04): the first storage and raft DEKs, wrapped,
/// and a batch of registry rows.
#[pyclass(module = "encryption_applier", name = "Bootstrap", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PyBootstrap(Bootstrap);

#[pymethods]
impl PyBootstrap {
    #[new]
    #[pyo3(signature = (storage_dek_id, wrapped_storage, raft_dek_id, wrapped_raft, batch_registry=None))]
    fn new(
        storage_dek_id: U32,
        wrapped_storage: &Bound<'_, PyAny>,
        raft_dek_id: U32,
        wrapped_raft: &Bound<'_, PyAny>,
        batch_registry: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        Ok(PyBootstrap(Bootstrap {
            storage_dek_id: storage_dek_id.value(),
            wrapped_storage: bytes_arg(wrapped_storage, "wrapped_storage")?.into_owned(),
            raft_dek_id: raft_dek_id.value(),
            wrapped_raft: bytes_arg(wrapped_raft, "wrapped_raft")?.into_owned(),
            batch_registry: registrations_arg(batch_registry)?,
        }))
    }

    #[classattr]
    fn __match_args__() -> (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ) {
        (
            "storage_dek_id",
            "wrapped_storage",
            "raft_dek_id",
            "wrapped_raft",
            "batch_registry",
        )
    }

    #[getter]
    fn storage_dek_id(&self) -> u32 {
        self.0.storage_dek_id
    }
    #[getter]
    fn wrapped_storage<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.wrapped_storage)
    }
    #[getter]
    fn raft_dek_id(&self) -> u32 {
        self.0.raft_dek_id
    }
    #[getter]
    fn wrapped_raft<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.wrapped_raft)
    }
    /// The batch rows, as an immutable tuple of `Registration`.
    #[getter]
    fn batch_registry<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.0.batch_registry.iter().map(|r| PyRegistration(*r)))
    }

    fn encode<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.0
            .encode()
            .map(|b| PyBytes::new(py, &b))
            .map_err(|m| malformed_to_py(py, &m))
    }

    fn to_entry<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        entry_bytes(py, &Entry::Bootstrap(self.0.clone()))
    }

    #[classmethod]
    fn decode(_cls: &Bound<'_, PyType>, payload: &Bound<'_, PyAny>) -> PyResult<Self> {
        let bytes = bytes_arg(payload, "payload")?;
        Bootstrap::decode(&bytes)
            .map(PyBootstrap)
            .map_err(|m| malformed_to_py(payload.py(), &m))
    }

    fn __repr__(&self) -> String {
        let b = &self.0;
        let rows: Vec<String> = b.batch_registry.iter().map(registration_repr).collect();
        format!(
            "Bootstrap(storage_dek_id={}, wrapped_storage=<{} bytes>, raft_dek_id={}, \
             wrapped_raft=<{} bytes>, batch_registry=[{}])",
            b.storage_dek_id,
            b.wrapped_storage.len(),
            b.raft_dek_id,
            b.wrapped_raft.len(),
            rows.join(", ")
        )
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let b = &slf.get().0;
        let rows = PyTuple::new(py, b.batch_registry.iter().map(|r| PyRegistration(*r)))?;
        (
            slf.get_type(),
            (
                b.storage_dek_id,
                PyBytes::new(py, &b.wrapped_storage),
                b.raft_dek_id,
                PyBytes::new(py, &b.wrapped_raft),
                rows,
            ),
        )
            .into_pyobject(py)
    }
}

/// A rotation entry (opcode 0x05): a new DEK for one purpose, and the
/// proposer's registration under it.
#[pyclass(module = "encryption_applier", name = "Rotation", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PyRotation(Rotation);

#[pymethods]
impl PyRotation {
    #[new]
    #[pyo3(signature = (dek_id, purpose, wrapped, proposer_registration, sub_tag=Unsigned(u64::from(wire::ROTATE_DEK))))]
    fn new(
        dek_id: U32,
        purpose: &Bound<'_, PyAny>,
        wrapped: &Bound<'_, PyAny>,
        proposer_registration: PyRef<'_, PyRegistration>,
        sub_tag: U8,
    ) -> PyResult<Self> {
        Ok(PyRotation(Rotation {
            sub_tag: sub_tag.value(),
            dek_id: dek_id.value(),
            purpose: purpose_arg(purpose)?,
            wrapped: bytes_arg(wrapped, "wrapped")?.into_owned(),
            proposer: proposer_registration.0,
        }))
    }

    #[classattr]
    fn __match_args__() -> (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ) {
        (
            "dek_id",
            "purpose",
            "wrapped",
            "proposer_registration",
            "sub_tag",
        )
    }

    #[getter]
    fn dek_id(&self) -> u32 {
        self.0.dek_id
    }
    #[getter]
    fn purpose(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        purpose_to_py(py, self.0.purpose)
    }
    #[getter]
    fn wrapped<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.wrapped)
    }
    #[getter]
    fn proposer_registration(&self) -> PyRegistration {
        PyRegistration(self.0.proposer)
    }
    #[getter]
    fn sub_tag(&self) -> u8 {
        self.0.sub_tag
    }

    fn encode<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.0
            .encode()
            .map(|b| PyBytes::new(py, &b))
            .map_err(|m| malformed_to_py(py, &m))
    }

    fn to_entry<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        entry_bytes(py, &Entry::Rotation(self.0.clone()))
    }

    #[classmethod]
    fn decode(_cls: &Bound<'_, PyType>, payload: &Bound<'_, PyAny>) -> PyResult<Self> {
        let bytes = bytes_arg(payload, "payload")?;
        Rotation::decode(&bytes)
            .map(PyRotation)
            .map_err(|m| malformed_to_py(payload.py(), &m))
    }

    fn __repr__(&self) -> String {
        let r = &self.0;
        let purpose = purpose_repr(r.purpose);
        format!(
            "Rotation(dek_id={}, purpose={purpose}, wrapped=<{} bytes>, proposer_registration={}, sub_tag=0x{:02x})",
            r.dek_id,
            r.wrapped.len(),
            registration_repr(&r.proposer),
            r.sub_tag
        )
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let r = &slf.get().0;
        (
            slf.get_type(),
            (
                r.dek_id,
                r.purpose as u8,
                PyBytes::new(py, &r.wrapped),
                PyRegistration(r.proposer),
                r.sub_tag,
            ),
        )
            .into_pyobject(py)
    }
}

fn entry_to_py(py: Python<'_>, entry: Entry) -> PyResult<Py<PyAny>> {
    Ok(match entry {
        Entry::Registration(r) => Py::new(py, PyRegistration(r))?.into_any(),
        Entry::Bootstrap(b) => Py::new(py, PyBootstrap(b))?.into_any(),
        Entry::Rotation(r) => Py::new(py, PyRotation(r))?.into_any(),
    })
}

/// An entry given as bytes (`opcode ‖ payload`) or as a payload object.
fn entry_arg(obj: &Bound<'_, PyAny>) -> PyResult<Result<Entry, MalformedPayload>> {
    // Bytes first: what a Raft log hands over.
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Entry::decode(b.as_bytes()));
    }
    if let Ok(r) = obj.cast::<PyRegistration>() {
        return Ok(Ok(Entry::Registration(r.get().0)));
    }
    if let Ok(b) = obj.cast::<PyBootstrap>() {
        return Ok(Ok(Entry::Bootstrap(b.get().0.clone())));
    }
    if let Ok(r) = obj.cast::<PyRotation>() {
        return Ok(Ok(Entry::Rotation(r.get().0.clone())));
    }
    let bytes = bytes_arg(obj, "entry").map_err(|_| {
        PyTypeError::new_err(format!(
            "entry must be bytes (opcode ‖ payload) or a Registration, Bootstrap or Rotation, not {}",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    Ok(Entry::decode(&bytes))
}

// ---------------------------------------------------------------------------
// Registry rows and views

/// One writer-registry row: key fields and stored value.
#[pyclass(
    module = "encryption_applier",
    name = "RegistryRow",
    frozen,
    eq,
    hash,
    ord
)]
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd)]
pub struct PyRegistryRow(RegistryRow);

#[pymethods]
impl PyRegistryRow {
    /// Builds a row (e.g. to compare with `Registry.rows()`). Refuses a row
    /// the registry could never hold: a full_node_id that does not end in
    /// node_id16, or first > last.
    #[new]
    #[pyo3(signature = (dek_id, node_id16, full_node_id, first_seen_local_epoch, last_seen_local_epoch))]
    fn new(
        dek_id: U32,
        node_id16: U16,
        full_node_id: U64,
        first_seen_local_epoch: U16,
        last_seen_local_epoch: U16,
    ) -> PyResult<Self> {
        let (dek_id, node_id16) = (dek_id.value(), node_id16.value());
        let row = RegistryRow {
            dek_id,
            node_id16,
            full_node_id: full_node_id.value(),
            first_seen_local_epoch: first_seen_local_epoch.value(),
            last_seen_local_epoch: last_seen_local_epoch.value(),
        };
        codec::decode_row(
            &codec::registry_key(dek_id, node_id16),
            &codec::encode_registry_value(&row.value()),
        )
        .map(PyRegistryRow)
        .map_err(|c| PyValueError::new_err(format!("not a valid registry row: {c}")))
    }

    #[classattr]
    fn __match_args__() -> (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ) {
        (
            "dek_id",
            "node_id16",
            "full_node_id",
            "first_seen_local_epoch",
            "last_seen_local_epoch",
        )
    }

    #[getter]
    fn dek_id(&self) -> u32 {
        self.0.dek_id
    }
    #[getter]
    fn node_id16(&self) -> u16 {
        self.0.node_id16
    }
    #[getter]
    fn full_node_id(&self) -> u64 {
        self.0.full_node_id
    }
    #[getter]
    fn first_seen_local_epoch(&self) -> u16 {
        self.0.first_seen_local_epoch
    }
    #[getter]
    fn last_seen_local_epoch(&self) -> u16 {
        self.0.last_seen_local_epoch
    }
    /// The 27-byte registry key of this row.
    #[getter]
    fn key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &codec::registry_key(self.0.dek_id, self.0.node_id16))
    }
    /// The 12-byte stored value of this row.
    #[getter]
    fn value<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &codec::encode_registry_value(&self.0.value()))
    }

    fn __repr__(&self) -> String {
        let r = &self.0;
        format!(
            "RegistryRow(dek_id={}, node_id16=0x{:04x}, full_node_id=0x{:x}, \
             first_seen_local_epoch={}, last_seen_local_epoch={})",
            r.dek_id,
            r.node_id16,
            r.full_node_id,
            r.first_seen_local_epoch,
            r.last_seen_local_epoch
        )
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let r = &slf.get().0;
        (
            slf.get_type(),
            (
                r.dek_id,
                r.node_id16,
                r.full_node_id,
                r.first_seen_local_epoch,
                r.last_seen_local_epoch,
            ),
        )
            .into_pyobject(slf.py())
    }
}

/// A read-only view of a registry directory, pinned to one consistent
/// snapshot: the state when it was opened or last `refresh()`ed. Another
/// process may be applying meanwhile.
#[pyclass(module = "encryption_applier", name = "Registry", frozen)]
pub struct PyRegistry {
    inner: Mutex<Option<Registry>>,
    path: PathBuf,
}

impl PyRegistry {
    fn from_registry(registry: Registry) -> Self {
        let path = registry.path().to_path_buf();
        PyRegistry {
            inner: Mutex::new(Some(registry)),
            path,
        }
    }

    /// Runs `f` on the view without the GIL, holding the view's lock (a
    /// pinned LMDB snapshot serves one thread at a time).
    fn read<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Registry) -> Result<T, RegistryError> + Send,
    ) -> PyResult<T> {
        run_detached(py, || {
            let mut guard = lock(&self.inner);
            let registry = guard.as_mut().ok_or(CoreError::Closed("Registry"))?;
            Ok(f(registry)?)
        })
    }

    fn rows_vec(&self, py: Python<'_>, dek_id: Option<u32>) -> PyResult<Vec<PyRegistryRow>> {
        let rows = self.read(py, |r| r.rows(dek_id))?;
        Ok(rows.into_iter().map(PyRegistryRow).collect())
    }
}

/// Integer types whose in-memory bytes are exactly their value in native
/// byte order, with no padding: what `array.array` stores.
trait PlainInt: Copy {}
impl PlainInt for u16 {}
impl PlainInt for u32 {}
impl PlainInt for u64 {}

/// An `array.array(typecode)` holding `values`, copied once as bytes.
fn array_of<'py, T: PlainInt>(
    py: Python<'py>,
    typecode: &str,
    values: &[T],
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: `T` is a primitive unsigned integer (PlainInt is implemented
    // for u16/u32/u64 only): no padding, every byte initialised, and u8 has
    // alignment 1, so viewing the slice as bytes is sound.
    let bytes = unsafe {
        std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
    };
    py.import("array")?
        .getattr("array")?
        .call1((typecode, PyBytes::new(py, bytes)))
}

#[pymethods]
impl PyRegistry {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let registry = run_detached(py, || Ok(Registry::open(&path)?))?;
        Ok(PyRegistry::from_registry(registry))
    }

    /// The registry directory (resolved to an absolute path).
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    #[getter]
    fn closed(&self) -> bool {
        lock(&self.inner).is_none()
    }

    /// The highest Raft index applied, as of this view's snapshot (None if never).
    #[getter]
    fn applied_index(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        self.read(py, |r| r.applied_index())
    }

    /// Moves the view to the newest committed state.
    fn refresh(&self, py: Python<'_>) -> PyResult<()> {
        self.read(py, Registry::refresh)
    }

    fn get(&self, py: Python<'_>, dek_id: U32, node_id16: U16) -> PyResult<Option<PyRegistryRow>> {
        let (dek_id, node_id16) = (dek_id.value(), node_id16.value());
        let row = self.read(py, |r| r.get(dek_id, node_id16))?;
        Ok(row.map(PyRegistryRow))
    }

    #[pyo3(signature = (dek_id=None))]
    fn rows(&self, py: Python<'_>, dek_id: Option<U32>) -> PyResult<Vec<PyRegistryRow>> {
        self.rows_vec(py, dek_id.map(|d| d.value()))
    }

    fn dek_ids(&self, py: Python<'_>) -> PyResult<Vec<u32>> {
        self.read(py, |r| r.dek_ids())
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.read(py, |r| r.len())
    }

    /// Iterates over every row of the snapshot, in key order.
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let rows = self.rows_vec(py, None)?;
        Ok(rows.into_pyobject(py)?.try_iter()?.into_any())
    }

    /// `(dek_id, node_id16) in registry`.
    fn __contains__(&self, py: Python<'_>, key: (U32, U16)) -> PyResult<bool> {
        Ok(self.get(py, key.0, key.1)?.is_some())
    }

    /// Per-DEK row counts and epoch ranges:
    /// `{dek_id: {"rows", "min_first_seen", "max_first_seen", "min_last_seen", "max_last_seen"}}`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.read(py, |r| r.stats())?;
        let out = PyDict::new(py);
        for (dek_id, s) in stats.per_dek {
            let entry = PyDict::new(py);
            entry.set_item("rows", s.rows)?;
            entry.set_item("min_first_seen", s.min_first_seen)?;
            entry.set_item("max_first_seen", s.max_first_seen)?;
            entry.set_item("min_last_seen", s.min_last_seen)?;
            entry.set_item("max_last_seen", s.max_last_seen)?;
            out.set_item(dek_id, entry)?;
        }
        Ok(out)
    }

    /// SHA-256 hex of `key ‖ value` over every row in key order: equal
    /// digests mean byte-identical registries.
    fn digest(&self, py: Python<'_>) -> PyResult<String> {
        self.read(py, |r| r.digest())
    }

    /// Where this registry and `other` disagree, row by row.
    fn diff(&self, py: Python<'_>, other: PyRef<'_, PyRegistry>) -> PyResult<PyRegistryDiff> {
        // One view at a time: `other` may be this very view.
        let left = self.read(py, |r| r.rows(None))?;
        let right = other.read(py, |r| r.rows(None))?;
        Ok(PyRegistryDiff(codec::diff(&left, &right)))
    }

    /// The rows as five `array.array` columns (no object per row):
    /// `dek_id` ('I'), `node_id16` ('H'), `full_node_id` ('Q'),
    /// `first_seen_local_epoch` ('H'), `last_seen_local_epoch` ('H').
    #[pyo3(signature = (dek_id=None))]
    fn columns<'py>(&self, py: Python<'py>, dek_id: Option<U32>) -> PyResult<Bound<'py, PyDict>> {
        let dek_id = dek_id.map(|d| d.value());
        let c = self.read(py, |r| r.columns(dek_id))?;
        let out = PyDict::new(py);
        out.set_item("dek_id", array_of(py, "I", &c.dek_id)?)?;
        out.set_item("node_id16", array_of(py, "H", &c.node_id16)?)?;
        out.set_item("full_node_id", array_of(py, "Q", &c.full_node_id)?)?;
        out.set_item(
            "first_seen_local_epoch",
            array_of(py, "H", &c.first_seen_local_epoch)?,
        )?;
        out.set_item(
            "last_seen_local_epoch",
            array_of(py, "H", &c.last_seen_local_epoch)?,
        )?;
        Ok(out)
    }

    /// A pandas DataFrame, one row per registry row, typed columns
    /// (needs the `notebook` extra: `pip install encryption-applier[notebook]`).
    #[pyo3(signature = (dek_id=None))]
    fn to_pandas<'py>(
        slf: &Bound<'py, Self>,
        dek_id: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        slf.py()
            .import("encryption_applier._frames")?
            .getattr("registry_to_pandas")?
            .call1((slf, dek_id))
    }

    /// Releases this view's snapshot and its handle on the environment.
    fn close(&self) {
        lock(&self.inner).take();
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> bool {
        self.close();
        false
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let path = self.path.display().to_string();
        if self.closed() {
            return format!("<Registry path={path:?} closed>");
        }
        match self.read(py, |r| r.stats()) {
            Ok(stats) => {
                let rows: u64 = stats.per_dek.iter().map(|(_, s)| s.rows).sum();
                let deks: Vec<u32> = stats.per_dek.iter().map(|(d, _)| *d).collect();
                format!("<Registry path={path:?} rows={rows} dek_ids={deks:?}>")
            }
            Err(e) => format!("<Registry path={path:?} unreadable: {e}>"),
        }
    }

    fn _repr_html_<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.py()
            .import("encryption_applier._frames")?
            .getattr("registry_html")?
            .call1((slf,))
    }
}

/// Where two registries disagree (`Registry.diff`).
#[pyclass(module = "encryption_applier", name = "RegistryDiff", frozen)]
pub struct PyRegistryDiff(codec::RegistryDiff);

#[pymethods]
impl PyRegistryDiff {
    /// Rows whose key is only in the registry `diff` was called on.
    #[getter]
    fn only_in_self(&self) -> Vec<PyRegistryRow> {
        self.0
            .only_left
            .iter()
            .copied()
            .map(PyRegistryRow)
            .collect()
    }
    /// Rows whose key is only in the other registry.
    #[getter]
    fn only_in_other(&self) -> Vec<PyRegistryRow> {
        self.0
            .only_right
            .iter()
            .copied()
            .map(PyRegistryRow)
            .collect()
    }
    /// `(self_row, other_row)` pairs with the same key and different values.
    #[getter]
    fn changed(&self) -> Vec<(PyRegistryRow, PyRegistryRow)> {
        self.0
            .changed
            .iter()
            .map(|(l, r)| (PyRegistryRow(*l), PyRegistryRow(*r)))
            .collect()
    }
    fn __bool__(&self) -> bool {
        !self.0.is_empty()
    }
    fn __len__(&self) -> usize {
        self.0.only_left.len() + self.0.only_right.len() + self.0.changed.len()
    }
    fn __repr__(&self) -> String {
        format!(
            "<RegistryDiff only_in_self={} only_in_other={} changed={}>",
            self.0.only_left.len(),
            self.0.only_right.len(),
            self.0.changed.len()
        )
    }
}

/// The one writer of a registry directory. Each `apply*` is one durable
/// LMDB transaction: when it returns, the change is on disk; when it
/// raises, nothing of the entry was written.
#[pyclass(module = "encryption_applier", name = "Applier", frozen)]
pub struct PyApplier {
    inner: Mutex<Option<Applier>>,
    path: PathBuf,
    kek: Option<Py<PyFileKek>>,
}

impl PyApplier {
    fn run<'py>(
        &self,
        py: Python<'py>,
        entry: Result<Entry, MalformedPayload>,
        index: Option<U64>,
    ) -> PyResult<Bound<'py, PyString>> {
        let index = index.map(|i| i.value());
        let outcome: Outcome = run_detached(py, || {
            let mut guard = lock(&self.inner);
            let applier = guard.as_mut().ok_or(CoreError::Closed("Applier"))?;
            // An applied index is skipped before its bytes are even decoded.
            if applier.is_applied(index) {
                return Ok(Outcome::Skipped);
            }
            Ok(applier.apply_entry_at(&entry?, index)?)
        })?;
        Ok(outcome_str(py, outcome))
    }
}

/// Outcomes as interned strings: a batch of 10 000 costs 10 000 reference
/// increments, not 10 000 new strings.
fn outcome_str(py: Python<'_>, outcome: Outcome) -> Bound<'_, PyString> {
    let s = match outcome {
        Outcome::Inserted => pyo3::intern!(py, "inserted"),
        Outcome::Advanced => pyo3::intern!(py, "advanced"),
        Outcome::Unchanged => pyo3::intern!(py, "unchanged"),
        Outcome::Bootstrapped => pyo3::intern!(py, "bootstrapped"),
        Outcome::Rotated => pyo3::intern!(py, "rotated"),
        Outcome::Skipped => pyo3::intern!(py, "skipped"),
    };
    s.clone()
}

fn outcome_list<'py>(py: Python<'py>, outcomes: &[Outcome]) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, outcomes.iter().map(|o| outcome_str(py, *o)))
}

#[pymethods]
impl PyApplier {
    /// Opens (creating if missing) the registry at `path` and takes its
    /// writer lock. With a `kek`, bootstrap and rotation apply for real and
    /// the keys of an existing sidecar (`sidecar`, by default `keys.json`
    /// in the registry directory) are opened now.
    #[new]
    #[pyo3(signature = (path, *, kek=None, sidecar=None, sync=true, map_size=None))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        kek: Option<Py<PyFileKek>>,
        sidecar: Option<PathBuf>,
        sync: bool,
        map_size: Option<U64>,
    ) -> PyResult<Self> {
        if kek.is_none() && sidecar.is_some() {
            return Err(PyValueError::new_err(
                "sidecar= needs kek=: without a KEK the applier keeps no keys",
            ));
        }
        let map_size = match map_size.map(|m| m.value()) {
            None => crate::store::DEFAULT_MAP_SIZE,
            Some(size) if size >= 1 << 16 => usize::try_from(size)
                .map_err(|_| PyOverflowError::new_err("map_size does not fit in memory"))?,
            Some(size) => {
                return Err(PyValueError::new_err(format!(
                    "map_size={size} is below the 65536-byte minimum"
                )))
            }
        };
        let options = ApplierOptions {
            kek: kek.as_ref().map(|k| k.get().kek.clone()),
            sidecar,
            durable: sync,
            map_size,
        };
        let applier = run_detached(py, || Ok(Applier::open_with(&path, options)?))?;
        let path = applier.path().to_path_buf();
        Ok(PyApplier {
            inner: Mutex::new(Some(applier)),
            path,
            kek,
        })
    }

    /// The KEK this applier was opened with, or None.
    #[getter]
    fn kek(&self, py: Python<'_>) -> Option<Py<PyFileKek>> {
        self.kek.as_ref().map(|k| k.clone_ref(py))
    }

    /// A live, read-only view of the keys this applier holds (None without
    /// a KEK). It gives ids and fingerprints, never key bytes.
    #[getter]
    fn keystore(slf: &Bound<'_, Self>) -> Option<PyKeystore> {
        slf.get().kek.as_ref()?;
        Some(PyKeystore {
            applier: slf.clone().unbind(),
        })
    }

    /// Where this applier keeps its sidecar (None without a KEK).
    #[getter]
    fn sidecar_path(&self) -> PyResult<Option<PathBuf>> {
        let guard = lock(&self.inner);
        let applier = guard
            .as_ref()
            .ok_or_else(|| PyValueError::new_err("operation on a closed Applier"))?;
        Ok(applier.sidecar_path().map(Path::to_path_buf))
    }

    /// The sidecar as it is on disk now, or None when there is none yet.
    #[getter]
    fn sidecar(&self, py: Python<'_>) -> PyResult<Option<PySidecar>> {
        let found = run_detached(py, || {
            let guard = lock(&self.inner);
            let applier = guard.as_ref().ok_or(CoreError::Closed("Applier"))?;
            Ok(applier.sidecar()?)
        })?;
        Ok(found.map(PySidecar))
    }

    /// Test hook: stop the next bootstrap/rotation at `point` (one of
    /// "after_unwrap", "after_keystore_install", "after_sidecar_write",
    /// "before_registry_commit") by raising a StorageError, or with
    /// action="abort" by aborting the process as a crash would. Not part
    /// of the public API.
    #[pyo3(signature = (point, action="raise"))]
    fn _set_fault(&self, point: Option<&str>, action: &str) -> PyResult<()> {
        let fault = match point {
            None => None,
            Some(name) => {
                let point = FaultPoint::from_name(name).ok_or_else(|| {
                    PyValueError::new_err(format!("unknown fault point {name:?}"))
                })?;
                let action = match action {
                    "raise" => FaultAction::Fail,
                    "abort" => FaultAction::Abort,
                    other => {
                        return Err(PyValueError::new_err(format!(
                            "unknown fault action {other:?}"
                        )))
                    }
                };
                Some((point, action))
            }
        };
        let mut guard = lock(&self.inner);
        let applier = guard
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("operation on a closed Applier"))?;
        testing::set_fault(applier, fault);
        Ok(())
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    #[getter]
    fn closed(&self) -> bool {
        lock(&self.inner).is_none()
    }

    /// A read-only view of this applier's registry.
    #[getter]
    fn registry(&self, py: Python<'_>) -> PyResult<PyRegistry> {
        let registry = run_detached(py, || {
            let guard = lock(&self.inner);
            let applier = guard.as_ref().ok_or(CoreError::Closed("Applier"))?;
            Ok(applier.registry().map_err(ApplyError::from)?)
        })?;
        Ok(PyRegistry::from_registry(registry))
    }

    /// Applies one registration by the four-case rules. With `index`, it is
    /// the Raft entry at that index: skipped if already applied, recorded
    /// in the same transaction otherwise.
    #[pyo3(signature = (registration, *, index=None))]
    fn apply_registration<'py>(
        &self,
        py: Python<'py>,
        registration: PyRef<'py, PyRegistration>,
        index: Option<U64>,
    ) -> PyResult<Bound<'py, PyString>> {
        let entry = Entry::Registration(registration.0);
        drop(registration);
        self.run(py, Ok(entry), index)
    }

    #[pyo3(signature = (bootstrap, *, index=None))]
    fn apply_bootstrap<'py>(
        &self,
        py: Python<'py>,
        bootstrap: PyRef<'py, PyBootstrap>,
        index: Option<U64>,
    ) -> PyResult<Bound<'py, PyString>> {
        let entry = Entry::Bootstrap(bootstrap.0.clone());
        drop(bootstrap);
        self.run(py, Ok(entry), index)
    }

    #[pyo3(signature = (rotation, *, index=None))]
    fn apply_rotation<'py>(
        &self,
        py: Python<'py>,
        rotation: PyRef<'py, PyRotation>,
        index: Option<U64>,
    ) -> PyResult<Bound<'py, PyString>> {
        let entry = Entry::Rotation(rotation.0.clone());
        drop(rotation);
        self.run(py, Ok(entry), index)
    }

    /// Applies `opcode ‖ payload` bytes (or a payload object), dispatching
    /// on the opcode. Reserved opcodes and non-encryption bytes halt.
    #[pyo3(signature = (entry, *, index=None))]
    fn apply<'py>(
        &self,
        py: Python<'py>,
        entry: &Bound<'py, PyAny>,
        index: Option<U64>,
    ) -> PyResult<Bound<'py, PyString>> {
        let entry = entry_arg(entry)?;
        self.run(py, entry, index)
    }

    /// Applies `entries` (bytes or payload objects) in order with group
    /// commit: one LMDB transaction and one durable commit per run of
    /// registrations. Equal to applying them one by one: if entry `k`
    /// halts, entries before it stay committed, nothing of `k` or later is
    /// written, and the exception carries `.position = k` and `.outcomes`
    /// (those of the entries before `k`). With `first_index`, entry `i` is
    /// the Raft entry `first_index + i`.
    #[pyo3(signature = (entries, first_index=None))]
    fn apply_many<'py>(
        &self,
        py: Python<'py>,
        entries: &Bound<'py, PyAny>,
        first_index: Option<U64>,
    ) -> PyResult<Bound<'py, PyList>> {
        if entries.cast::<PyBytes>().is_ok() || entries.is_instance_of::<PyString>() {
            return Err(PyTypeError::new_err(
                "entries must be an iterable of entries (bytes or payload objects), not one entry",
            ));
        }
        let mut decoded = Vec::with_capacity(entries.len().unwrap_or(0));
        for (position, item) in entries.try_iter()?.enumerate() {
            let item = item?;
            // A wrong type is a programming error: refused before anything
            // is applied, naming the position.
            let entry = entry_arg(&item).map_err(|e| {
                PyTypeError::new_err(format!("entries[{position}]: {}", e.value(py)))
            })?;
            decoded.push(entry);
        }
        let first_index = first_index.map(|f| f.value());
        if let Some(first) = first_index {
            if first
                .checked_add(decoded.len().saturating_sub(1) as u64)
                .is_none()
            {
                return Err(PyOverflowError::new_err(format!(
                    "first_index={first} + {} entries runs past the largest Raft index",
                    decoded.len()
                )));
            }
        }
        let result = run_detached(py, || {
            let mut guard = lock(&self.inner);
            let applier = guard.as_mut().ok_or(CoreError::Closed("Applier"))?;
            applier
                .apply_many(&decoded, first_index)
                .map_err(CoreError::Batch)
        });
        match result {
            Ok(outcomes) => outcome_list(py, &outcomes),
            Err(err) => Err(err),
        }
    }

    /// The highest Raft index applied through this registry (None if never).
    #[getter]
    fn applied_index(&self) -> PyResult<Option<u64>> {
        let guard = lock(&self.inner);
        let applier = guard
            .as_ref()
            .ok_or_else(|| PyValueError::new_err("operation on a closed Applier"))?;
        Ok(applier.applied_index())
    }

    /// Releases the writer lock and this applier's handle on the registry.
    fn close(&self, py: Python<'_>) {
        // Waits (without the GIL) for an apply running on another thread.
        let taken = py.detach(|| lock(&self.inner).take());
        drop(taken);
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() { " closed" } else { "" };
        format!(
            "<Applier path={:?}{state}>",
            self.path.display().to_string()
        )
    }
}

/// A 32-byte AES-256 key-encryption key read from a file (SPEC §5).
#[pyclass(module = "encryption_applier", name = "FileKek", frozen)]
pub struct PyFileKek {
    kek: Kek,
}

#[pymethods]
impl PyFileKek {
    /// Loads the KEK at `path`: a regular file of exactly 32 bytes with
    /// owner-only permissions, checked and read through one descriptor.
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let kek = run_detached(py, || Ok(Kek::load(&path)?))?;
        Ok(PyFileKek { kek })
    }

    /// Writes a new random KEK to `path` (mode 0600, durably) and returns
    /// it. Refuses to overwrite an existing file.
    #[classmethod]
    fn generate(_cls: &Bound<'_, PyType>, py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let kek = run_detached(py, || Ok(Kek::generate(&path)?))?;
        Ok(PyFileKek { kek })
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.kek.path().to_path_buf()
    }

    /// `nonce(12) ‖ AES-256-GCM ciphertext(32) ‖ tag(16)` of a 32-byte DEK.
    fn wrap<'py>(&self, py: Python<'py>, dek: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = bytes_arg(dek, "dek")?;
        let mut key: [u8; DEK_LEN] = bytes.as_ref().try_into().map_err(|_| {
            PyValueError::new_err(format!("a DEK is 32 bytes, got {}", bytes.len()))
        })?;
        let dek = Dek::from_bytes(key);
        key.zeroize();
        let wrapped = self.kek.wrap(&dek).map_err(PyException::new_err)?;
        Ok(PyBytes::new(py, &wrapped))
    }

    /// The DEK inside `wrapped`; raises KEKUnwrapError for anything but
    /// 60 bytes that verify under this KEK.
    fn unwrap<'py>(
        &self,
        py: Python<'py>,
        wrapped: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = bytes_arg(wrapped, "wrapped")?;
        match self.kek.unwrap(&bytes) {
            Ok(dek) => Ok(PyBytes::new(py, dek.expose())),
            Err(problem) => Err(unwrap_to_py(
                py,
                format!("cannot unwrap: {problem}"),
                None,
                None,
                &problem,
            )),
        }
    }

    fn __repr__(&self) -> String {
        format!("FileKek({:?})", self.kek.path().display().to_string())
    }

    /// Refuses pickling: key bytes never leave through a pickle.
    fn __reduce__(&self) -> PyResult<()> {
        Err(PyTypeError::new_err(
            "FileKek cannot be pickled; load it from its file in the other process",
        ))
    }
}

/// A live, read-only view of an applier's keystore: ids and fingerprints.
#[pyclass(module = "encryption_applier", name = "Keystore", frozen)]
pub struct PyKeystore {
    applier: Py<PyApplier>,
}

impl PyKeystore {
    fn with<T>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&crate::keystore::Keystore) -> T,
    ) -> PyResult<T> {
        let applier = self.applier.bind(py).get();
        let guard = lock(&applier.inner);
        let applier = guard
            .as_ref()
            .ok_or_else(|| PyValueError::new_err("operation on a closed Applier"))?;
        let keystore = applier
            .keystore()
            .ok_or_else(|| PyValueError::new_err("this applier has no KEK"))?;
        Ok(f(keystore))
    }
}

#[pymethods]
impl PyKeystore {
    /// The loaded DEK ids, ascending.
    fn ids(&self, py: Python<'_>) -> PyResult<Vec<u32>> {
        self.with(py, |ks| ks.ids())
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |ks| ks.len())
    }

    fn __contains__(&self, py: Python<'_>, dek_id: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(id) = dek_id.extract::<U32>() else {
            return Ok(false);
        };
        let id = id.value();
        self.with(py, |ks| ks.contains(id))
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let ids = self.ids(py)?;
        Ok(ids.into_pyobject(py)?.try_iter()?.into_any())
    }

    /// `sha256(dek).hexdigest()[:16]` of a loaded key; KeyError if absent.
    fn fingerprint(&self, py: Python<'_>, dek_id: U32) -> PyResult<String> {
        let id = dek_id.value();
        self.with(py, |ks| ks.fingerprint(id))?
            .ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(id))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        match self.ids(py) {
            Ok(ids) => format!("<Keystore ids={ids:?}>"),
            Err(_) => "<Keystore closed>".to_owned(),
        }
    }
}

/// One key of a sidecar.
#[pyclass(module = "encryption_applier", name = "SidecarKey", frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct PySidecarKey(SidecarKey);

#[pymethods]
impl PySidecarKey {
    #[getter]
    fn purpose(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        purpose_to_py(py, self.0.purpose)
    }
    #[getter]
    fn wrapped<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.wrapped)
    }
    #[getter]
    fn created(&self) -> String {
        self.0.created.clone()
    }
    #[getter]
    fn local_epoch(&self) -> u16 {
        self.0.local_epoch
    }

    fn __repr__(&self) -> String {
        format!(
            "SidecarKey(purpose={}, wrapped=<{} bytes>, created={:?}, local_epoch={})",
            purpose_repr(self.0.purpose),
            self.0.wrapped.len(),
            self.0.created,
            self.0.local_epoch
        )
    }
}

/// A parsed, validated `keys.json` sidecar.
#[pyclass(module = "encryption_applier", name = "Sidecar", frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct PySidecar(Sidecar);

#[pymethods]
impl PySidecar {
    #[getter]
    fn version(&self) -> u64 {
        sidecar::SIDECAR_VERSION
    }
    #[getter]
    fn raft_applied_index(&self) -> u64 {
        self.0.raft_applied_index
    }
    #[getter]
    fn storage_envelope_active(&self) -> bool {
        self.0.storage_envelope_active
    }
    #[getter]
    fn raft_envelope_cutover_index(&self) -> u64 {
        self.0.raft_envelope_cutover_index
    }
    /// `{"storage": id, "raft": id}`; 0 means none.
    #[getter]
    fn active(&self) -> std::collections::BTreeMap<&'static str, u32> {
        [
            ("storage", self.0.active_storage),
            ("raft", self.0.active_raft),
        ]
        .into_iter()
        .collect()
    }
    #[getter]
    fn active_storage(&self) -> u32 {
        self.0.active_storage
    }
    #[getter]
    fn active_raft(&self) -> u32 {
        self.0.active_raft
    }
    /// `{dek_id: SidecarKey}`, ascending ids.
    #[getter]
    fn keys(&self) -> std::collections::BTreeMap<u32, PySidecarKey> {
        self.0
            .keys
            .iter()
            .map(|(id, k)| (*id, PySidecarKey(k.clone())))
            .collect()
    }

    /// The sidecar as the JSON this package writes.
    fn to_json(&self) -> PyResult<String> {
        let json = self.0.to_json().map_err(PyValueError::new_err)?;
        Ok(String::from_utf8_lossy(&json).into_owned())
    }

    fn __repr__(&self) -> String {
        format!(
            "Sidecar(active={{'storage': {}, 'raft': {}}}, keys={:?}, raft_applied_index={})",
            self.0.active_storage,
            self.0.active_raft,
            self.0.keys.keys().collect::<Vec<_>>(),
            self.0.raft_applied_index
        )
    }
}

/// Reads and validates a sidecar file; None when the file does not exist.
#[pyfunction]
fn read_sidecar(py: Python<'_>, path: PathBuf) -> PyResult<Option<PySidecar>> {
    let found = run_detached(py, || Ok(sidecar::read(&path)?))?;
    Ok(found.map(PySidecar))
}

// ---------------------------------------------------------------------------
// Codec helpers

#[pyfunction]
fn registry_key<'py>(py: Python<'py>, dek_id: U32, node_id16: U16) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &codec::registry_key(dek_id.value(), node_id16.value()))
}

#[pyfunction]
fn decode_registry_key(py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<(u32, u16)> {
    let bytes = bytes_arg(key, "key")?;
    codec::decode_registry_key(&bytes).map_err(|c| corruption_to_py(py, &c))
}

#[pyfunction]
#[pyo3(signature = (full_node_id, first, last))]
fn encode_registry_value(
    py: Python<'_>,
    full_node_id: U64,
    first: U16,
    last: U16,
) -> Bound<'_, PyBytes> {
    PyBytes::new(
        py,
        &codec::encode_registry_value(&RegistryValue {
            full_node_id: full_node_id.value(),
            first_seen_local_epoch: first.value(),
            last_seen_local_epoch: last.value(),
        }),
    )
}

#[pyfunction]
fn decode_registry_value(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<(u64, u16, u16)> {
    let bytes = bytes_arg(value, "value")?;
    match codec::decode_registry_value(&bytes) {
        Some(v) => Ok((
            v.full_node_id,
            v.first_seen_local_epoch,
            v.last_seen_local_epoch,
        )),
        None => Err(corruption_to_py(
            py,
            &RegistryCorruption {
                kind: CorruptionKind::ValueLength,
                key: Vec::new(),
                value: Some(bytes.into_owned()),
                dek_id: None,
                node_id16: None,
            },
        )),
    }
}

/// Decodes `opcode ‖ payload` into a Registration, Bootstrap or Rotation.
#[pyfunction]
fn decode_entry(py: Python<'_>, entry: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let bytes = bytes_arg(entry, "entry")?;
    let decoded = Entry::decode(&bytes).map_err(|m| malformed_to_py(py, &m))?;
    entry_to_py(py, decoded)
}

#[pyfunction]
fn is_encryption_opcode(opcode: U8) -> bool {
    wire::is_encryption_opcode(opcode.value())
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;

    m.add_class::<PyRegistration>()?;
    m.add_class::<PyBootstrap>()?;
    m.add_class::<PyRotation>()?;
    m.add_class::<PyRegistryRow>()?;
    m.add_class::<PyRegistry>()?;
    m.add_class::<PyRegistryDiff>()?;
    m.add_class::<PyApplier>()?;
    m.add_class::<PyFileKek>()?;
    m.add_class::<PyKeystore>()?;
    m.add_class::<PySidecar>()?;
    m.add_class::<PySidecarKey>()?;

    let purpose = py.import("enum")?.getattr("IntEnum")?.call(
        (
            "Purpose",
            [
                ("STORAGE", Purpose::Storage as u8),
                ("RAFT", Purpose::Raft as u8),
            ],
        ),
        Some(&[("module", "encryption_applier")].into_py_dict(py)?),
    )?;
    purpose.setattr(
        "__doc__",
        "What a DEK encrypts: storage data or the Raft log.",
    )?;
    m.add("Purpose", &purpose)?;
    let _ = PURPOSE_ENUM.set(py, purpose.unbind());

    // The exception tree, each under its own class name (SPEC §6).
    for class in [
        py.get_type::<EncryptionError>(),
        py.get_type::<EncryptionApplyError>(),
        py.get_type::<KEKNotConfiguredError>(),
        py.get_type::<LocalEpochRollbackError>(),
        py.get_type::<NodeIDCollisionError>(),
        py.get_type::<MalformedPayloadError>(),
        py.get_type::<RegistryCorruptionError>(),
        py.get_type::<PyStorageError>(),
        py.get_type::<RegistryOpenError>(),
        py.get_type::<KEKUnwrapError>(),
        py.get_type::<KeyConflictError>(),
        py.get_type::<AlreadyBootstrappedError>(),
        py.get_type::<NotBootstrappedError>(),
        py.get_type::<PayloadRejectedError>(),
        py.get_type::<PySidecarError>(),
        py.get_type::<KEKFileError>(),
        py.get_type::<InsecureKEKFileError>(),
    ] {
        m.add(class.name()?, class)?;
    }

    m.add("OP_REGISTRATION", wire::OP_REGISTRATION)?;
    m.add("OP_BOOTSTRAP", wire::OP_BOOTSTRAP)?;
    m.add("OP_ROTATION", wire::OP_ROTATION)?;
    m.add("WIRE_VERSION", wire::WIRE_VERSION)?;
    m.add("ROTATE_DEK", wire::ROTATE_DEK)?;
    m.add("MAX_BOOTSTRAP_BATCH", wire::MAX_BOOTSTRAP_BATCH)?;
    m.add("REGISTRY_PREFIX", PyBytes::new(py, codec::REGISTRY_PREFIX))?;

    m.add_function(wrap_pyfunction!(registry_key, m)?)?;
    m.add_function(wrap_pyfunction!(decode_registry_key, m)?)?;
    m.add_function(wrap_pyfunction!(encode_registry_value, m)?)?;
    m.add_function(wrap_pyfunction!(decode_registry_value, m)?)?;
    m.add_function(wrap_pyfunction!(decode_entry, m)?)?;
    m.add_function(wrap_pyfunction!(is_encryption_opcode, m)?)?;
    m.add_function(wrap_pyfunction!(read_sidecar, m)?)?;
    Ok(())
}
