//! The payload classes `Registration`, `Bootstrap` and `Rotation` (SPEC
//! §2, §6): frozen wrappers of the wire types, with the codec as methods,
//! and `entry_arg`/`entry_to_py`, an entry's bytes to a payload and back.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};

use super::convert::{
    bytes_arg, purpose_arg, purpose_repr, purpose_to_py, replace_fields, Unsigned, U16, U32, U64,
    U8,
};
use super::errors::malformed_to_py;
use crate::wire::{self, Bootstrap, Entry, MalformedPayload, Registration, Rotation};

/// A registration entry (opcode 0x03): one writer under one DEK.
///
/// Build one from its three fields (range-checked: `OverflowError`), or
/// parse a payload with `Registration.decode()`. Immutable, hashable,
/// picklable and pattern-matchable.
///
/// ```pycon
/// >>> reg = ea.Registration(dek_id=1, full_node_id=0xABCD0001, local_epoch=2)
/// >>> reg.node_id16 == 0x0001, reg.to_entry().hex()
/// (True, '03010000000100000000abcd00010002')
/// >>> ea.Registration.decode(reg.encode()) == reg
/// True
///
/// ```
#[pyclass(module = "encryption_applier", name = "Registration", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PyRegistration(pub(super) Registration);

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

    /// The id (u32) of the DEK the writer registers under.
    #[getter]
    fn dek_id(&self) -> u32 {
        self.0.dek_id
    }
    /// The writer's full 64-bit node id.
    #[getter]
    fn full_node_id(&self) -> u64 {
        self.0.full_node_id
    }
    /// The writer's local epoch (u16) for this DEK.
    #[getter]
    fn local_epoch(&self) -> u16 {
        self.0.local_epoch
    }
    /// `full_node_id & 0xFFFF`: the nonce prefix and the registry key's node part.
    #[getter]
    fn node_id16(&self) -> u16 {
        self.0.node_id16()
    }

    /// The 15-byte payload: `0x01 ‖ dek_id u32 ‖ full_node_id u64 ‖
    /// local_epoch u16`, big-endian.
    fn encode<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.encode())
    }

    /// The Raft entry: `OP_REGISTRATION` (0x03) followed by the payload.
    fn to_entry<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        entry_bytes(py, &Entry::Registration(self.0))
    }

    /// Parses a payload (no opcode); `MalformedPayloadError` for anything
    /// but 15 bytes starting with version 0x01.
    #[classmethod]
    fn decode(_cls: &Bound<'_, PyType>, payload: &Bound<'_, PyAny>) -> PyResult<Self> {
        decode_with(payload, Registration::decode).map(PyRegistration)
    }

    fn __repr__(&self) -> String {
        registration_repr(&self.0)
    }

    /// `copy.replace(self, **changes)` (Python 3.13; callable directly on
    /// any version): a new Registration with the given fields changed, checked
    /// as the constructor checks them. An unknown field is a `TypeError`.
    #[pyo3(signature = (**changes))]
    fn __replace__<'py>(
        slf: &Bound<'py, Self>,
        changes: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        replace_fields(slf.as_any(), changes)
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

/// Encoded bytes, or the reason they cannot be encoded.
fn payload_bytes<'py>(
    py: Python<'py>,
    encoded: Result<Vec<u8>, MalformedPayload>,
) -> PyResult<Bound<'py, PyBytes>> {
    encoded
        .map(|b| PyBytes::new(py, &b))
        .map_err(|m| malformed_to_py(py, &m))
}

fn entry_bytes<'py>(py: Python<'py>, entry: &Entry) -> PyResult<Bound<'py, PyBytes>> {
    payload_bytes(py, entry.encode())
}

/// `decode(bytes)` of a byte-like Python argument.
fn decode_with<T>(
    payload: &Bound<'_, PyAny>,
    decode: impl FnOnce(&[u8]) -> Result<T, MalformedPayload>,
) -> PyResult<T> {
    let bytes = bytes_arg(payload, "payload")?;
    decode(&bytes).map_err(|m| malformed_to_py(payload.py(), &m))
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
///
/// Build one from its fields (`for_cluster()` builds the one elastickv's
/// admin proposes), or parse a payload with `Bootstrap.decode()`.
/// Immutable, hashable, picklable and pattern-matchable.
///
/// ```pycon
/// >>> boot = ea.Bootstrap(1, b"\x00" * 60, 2, b"\x01" * 60, [ea.Registration(1, 0xABCD0001, 1)])
/// >>> boot.to_entry()[0] == ea.OP_BOOTSTRAP, ea.decode_entry(boot.to_entry()) == boot
/// (True, True)
/// >>> boot.batch_registry
/// (Registration(dek_id=1, full_node_id=0xabcd0001, local_epoch=1),)
///
/// ```
#[pyclass(module = "encryption_applier", name = "Bootstrap", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PyBootstrap(pub(super) Bootstrap);

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

    /// The id (u32) of the first storage DEK.
    #[getter]
    fn storage_dek_id(&self) -> u32 {
        self.0.storage_dek_id
    }
    /// The storage DEK wrapped under the KEK (60 bytes from `FileKek.wrap`).
    #[getter]
    fn wrapped_storage<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.wrapped_storage)
    }
    /// The id (u32) of the first Raft DEK.
    #[getter]
    fn raft_dek_id(&self) -> u32 {
        self.0.raft_dek_id
    }
    /// The Raft DEK wrapped under the KEK (60 bytes from `FileKek.wrap`).
    #[getter]
    fn wrapped_raft<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.wrapped_raft)
    }
    /// The batch rows, as an immutable tuple of `Registration`.
    #[getter]
    fn batch_registry<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.0.batch_registry.iter().map(|r| PyRegistration(*r)))
    }

    /// The payload: `0x01 ‖ storage_dek_id ‖ len ‖ wrapped_storage ‖
    /// raft_dek_id ‖ len ‖ wrapped_raft ‖ count ‖ rows` (u32 ids, lengths
    /// and count; each row `dek_id u32 ‖ full_node_id u64 ‖ local_epoch u16`).
    /// Encoded as held, even over `MAX_BOOTSTRAP_BATCH` rows.
    fn encode<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        payload_bytes(py, self.0.encode())
    }

    /// The Raft entry: `OP_BOOTSTRAP` (0x04) followed by the payload.
    fn to_entry<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        entry_bytes(py, &Entry::Bootstrap(self.0.clone()))
    }

    /// Parses a payload (no opcode); `MalformedPayloadError` for a wrong
    /// version, truncation, a length that overruns, trailing bytes or more
    /// than `MAX_BOOTSTRAP_BATCH` rows.
    #[classmethod]
    fn decode(_cls: &Bound<'_, PyType>, payload: &Bound<'_, PyAny>) -> PyResult<Self> {
        decode_with(payload, Bootstrap::decode).map(PyBootstrap)
    }

    /// The bootstrap elastickv's admin builds for a cluster: a storage row
    /// and a Raft row for each `(full_node_id, local_epoch)` writer, in
    /// order, after its checks (ids non-zero and distinct, wrapped DEKs of
    /// 1..=4096 bytes, at least one writer, no full id or node_id16 twice,
    /// at most 16 384 rows). A failed check is ValueError.
    #[classmethod]
    fn for_cluster(
        _cls: &Bound<'_, PyType>,
        storage_dek_id: U32,
        wrapped_storage: &Bound<'_, PyAny>,
        raft_dek_id: U32,
        wrapped_raft: &Bound<'_, PyAny>,
        writers: Vec<(U64, U16)>,
    ) -> PyResult<Self> {
        let writers: Vec<(u64, u16)> = writers
            .into_iter()
            .map(|(full, epoch)| (full.value(), epoch.value()))
            .collect();
        crate::nodeid::bootstrap_for_cluster(
            storage_dek_id.value(),
            &bytes_arg(wrapped_storage, "wrapped_storage")?,
            raft_dek_id.value(),
            &bytes_arg(wrapped_raft, "wrapped_raft")?,
            &writers,
        )
        .map(PyBootstrap)
        .map_err(|e| PyValueError::new_err(e.to_string()))
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

    /// `copy.replace(self, **changes)` (Python 3.13; callable directly on
    /// any version): a new Bootstrap with the given fields changed, checked
    /// as the constructor checks them. An unknown field is a `TypeError`.
    #[pyo3(signature = (**changes))]
    fn __replace__<'py>(
        slf: &Bound<'py, Self>,
        changes: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        replace_fields(slf.as_any(), changes)
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
///
/// `sub_tag` defaults to `ROTATE_DEK`; `ENABLE_STORAGE_ENVELOPE` (0x04) and
/// `ENABLE_RAFT_ENVELOPE` (0x05) make it an envelope cutover. Build one
/// from its fields or parse a payload with `Rotation.decode()`. Immutable,
/// hashable, picklable and pattern-matchable.
///
/// ```pycon
/// >>> rot = ea.Rotation(3, ea.Purpose.STORAGE, b"\x02" * 60, ea.Registration(3, 0xABCD0001, 2))
/// >>> rot.sub_tag == ea.ROTATE_DEK, ea.Rotation.decode(rot.encode()) == rot
/// (True, True)
/// >>> rot.to_entry()[0] == ea.OP_ROTATION
/// True
///
/// ```
#[pyclass(module = "encryption_applier", name = "Rotation", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PyRotation(pub(super) Rotation);

#[pymethods]
impl PyRotation {
    #[new]
    #[pyo3(signature = (dek_id, purpose, wrapped, proposer_registration, sub_tag=Unsigned(u64::from(wire::ROTATE_DEK))))]
    #[pyo3(text_signature = "(dek_id, purpose, wrapped, proposer_registration, sub_tag=1)")]
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

    /// The id (u32) of the new DEK (for a cutover, of the DEK it names).
    #[getter]
    fn dek_id(&self) -> u32 {
        self.0.dek_id
    }
    /// What the DEK encrypts, as a `Purpose`.
    #[getter]
    fn purpose(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        purpose_to_py(py, self.0.purpose)
    }
    /// The new DEK wrapped under the KEK (empty for a cutover).
    #[getter]
    fn wrapped<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.wrapped)
    }
    /// The proposing node's `Registration`, under this `dek_id`; it is
    /// applied with the entry.
    #[getter]
    fn proposer_registration(&self) -> PyRegistration {
        PyRegistration(self.0.proposer)
    }
    /// The kind of rotation: `ROTATE_DEK` (0x01), `ENABLE_STORAGE_ENVELOPE`
    /// (0x04) or `ENABLE_RAFT_ENVELOPE` (0x05). Any other byte can be built
    /// and encoded (to test refusal), but decoding or applying it halts.
    #[getter]
    fn sub_tag(&self) -> u8 {
        self.0.sub_tag
    }

    /// The payload: `0x01 ‖ sub_tag ‖ dek_id u32 ‖ purpose ‖ len u32 ‖
    /// wrapped ‖ proposer (dek_id u32 ‖ full_node_id u64 ‖ local_epoch u16)`.
    fn encode<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        payload_bytes(py, self.0.encode())
    }

    /// The Raft entry: `OP_ROTATION` (0x05) followed by the payload.
    fn to_entry<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        entry_bytes(py, &Entry::Rotation(self.0.clone()))
    }

    /// Parses a payload (no opcode); `MalformedPayloadError` for bad bytes,
    /// a reserved or unknown `sub_tag`, or a purpose other than 1 or 2.
    #[classmethod]
    fn decode(_cls: &Bound<'_, PyType>, payload: &Bound<'_, PyAny>) -> PyResult<Self> {
        decode_with(payload, Rotation::decode).map(PyRotation)
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

    /// `copy.replace(self, **changes)` (Python 3.13; callable directly on
    /// any version): a new Rotation with the given fields changed, checked
    /// as the constructor checks them. An unknown field is a `TypeError`.
    #[pyo3(signature = (**changes))]
    fn __replace__<'py>(
        slf: &Bound<'py, Self>,
        changes: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        replace_fields(slf.as_any(), changes)
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

pub(super) fn entry_to_py(py: Python<'_>, entry: Entry) -> PyResult<Py<PyAny>> {
    Ok(match entry {
        Entry::Registration(r) => Py::new(py, PyRegistration(r))?.into_any(),
        Entry::Bootstrap(b) => Py::new(py, PyBootstrap(b))?.into_any(),
        Entry::Rotation(r) => Py::new(py, PyRotation(r))?.into_any(),
    })
}

/// An entry given as bytes (`opcode ‖ payload`) or as a payload object.
pub(super) fn entry_arg(obj: &Bound<'_, PyAny>) -> PyResult<Result<Entry, MalformedPayload>> {
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

/// `apply_many`'s entries, decoded in order. A wrong type is a programming
/// error: refused before anything is applied, naming the position. A list
/// (what hosts pass) is read by index, without an iterator protocol call
/// per entry.
pub(super) fn entries_arg(
    py: Python<'_>,
    entries: &Bound<'_, PyAny>,
) -> PyResult<Vec<Result<Entry, MalformedPayload>>> {
    if entries.cast::<PyBytes>().is_ok() || entries.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "entries must be an iterable of entries (bytes or payload objects), not one entry",
        ));
    }
    let at = |position: usize, item: &Bound<'_, PyAny>| {
        entry_arg(item)
            .map_err(|e| PyTypeError::new_err(format!("entries[{position}]: {}", e.value(py))))
    };
    // Exactly a list: a subclass's own __iter__ is honoured below.
    if let Ok(list) = entries.cast_exact::<PyList>() {
        let mut decoded = Vec::with_capacity(list.len());
        for (position, item) in list.iter().enumerate() {
            decoded.push(at(position, &item)?);
        }
        return Ok(decoded);
    }
    // `__len__` is only a hint, and any object may lie in it: capped, so
    // that a huge one cannot make the reservation abort the process.
    let mut decoded = Vec::with_capacity(entries.len().unwrap_or(0).min(1 << 16));
    for (position, item) in entries.try_iter()?.enumerate() {
        decoded.push(at(position, &item?)?);
    }
    Ok(decoded)
}
