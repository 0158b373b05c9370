//! `Envelope`, `Nonce`, `NonceFinding` and `audit_nonces()`: elastickv's
//! envelopes as Python objects (SPEC §7; core in `crate::envelope`), and
//! `envelope_arg`, the "an `Envelope` or its bytes" argument that
//! `Keystore.decrypt_*` take (the decryption itself is `keystore.rs`).

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple, PyType};
use pyo3::IntoPyObjectExt;

use super::convert::{bytes_arg, U16, U64};
use super::errors::{envelope_error_to_py, CoreError};
use super::handle::run_detached;
use super::registry::PyRegistry;
use super::sidecar::PySidecar;
use crate::envelope::{
    audit_nonces as audit, Envelope, Finding, NonceParts, FLAG_COMPRESSED, NONCE_LEN,
};

/// An AES-GCM nonce: `node_id16 ‖ local_epoch ‖ write_count` (12 bytes,
/// big-endian).
///
/// Build one from its three parts (each range-checked: `OverflowError`),
/// or from bytes with `Nonce.from_bytes()`. Nonces compare, hash and
/// pickle by value.
#[pyclass(module = "encryption_applier", name = "Nonce", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PyNonce(pub(super) NonceParts);

#[pymethods]
impl PyNonce {
    #[new]
    fn new(node_id16: U16, local_epoch: U16, write_count: U64) -> Self {
        PyNonce(NonceParts {
            node_id16: node_id16.value(),
            local_epoch: local_epoch.value(),
            write_count: write_count.value(),
        })
    }
    #[classattr]
    fn __match_args__() -> (&'static str, &'static str, &'static str) {
        ("node_id16", "local_epoch", "write_count")
    }
    /// Bytes 0–1: the writer's `full_node_id & 0xFFFF`.
    #[getter]
    fn node_id16(&self) -> u16 {
        self.0.node_id16
    }
    /// Bytes 2–3: the writer's local epoch for the key (u16).
    #[getter]
    fn local_epoch(&self) -> u16 {
        self.0.local_epoch
    }
    /// Bytes 4–11: the write counter (u64); the nonce factory starts at 1.
    #[getter]
    fn write_count(&self) -> u64 {
        self.0.write_count
    }
    /// The 12 nonce bytes.
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.to_bytes())
    }
    /// Decodes 12 nonce bytes; `ValueError` for any other length.
    #[classmethod]
    fn from_bytes(_cls: &Bound<'_, PyType>, nonce: &Bound<'_, PyAny>) -> PyResult<Self> {
        let bytes = bytes_arg(nonce, "nonce")?;
        let array: [u8; NONCE_LEN] = bytes.as_ref().try_into().map_err(|_| {
            PyValueError::new_err(format!("a nonce is {NONCE_LEN} bytes, not {}", bytes.len()))
        })?;
        Ok(PyNonce(NonceParts::from_bytes(&array)))
    }
    fn __repr__(&self) -> String {
        format!(
            "Nonce(node_id16=0x{:04x}, local_epoch={}, write_count={})",
            self.0.node_id16, self.0.local_epoch, self.0.write_count
        )
    }
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let n = slf.get().0;
        (slf.get_type(), (n.node_id16, n.local_epoch, n.write_count)).into_pyobject(slf.py())
    }
}

/// An elastickv envelope: `version ‖ flag ‖ key_id ‖ nonce ‖ ciphertext ‖ tag`.
///
/// `Envelope.decode(data)` builds one (there is no constructor);
/// `Keystore.decrypt_storage`/`decrypt_raft` open it. Envelopes compare,
/// hash and pickle by value.
#[pyclass(module = "encryption_applier", name = "Envelope", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PyEnvelope(pub(super) Envelope);

/// An `Envelope` or the bytes of one.
pub(super) fn envelope_arg(obj: &Bound<'_, PyAny>) -> PyResult<Envelope> {
    if let Ok(env) = obj.cast::<PyEnvelope>() {
        return Ok(env.get().0.clone());
    }
    let bytes = bytes_arg(obj, "envelope")
        .map_err(|_| PyTypeError::new_err("expected an Envelope or its bytes"))?;
    Envelope::decode(&bytes).map_err(|e| envelope_error_to_py(obj.py(), &e))
}

#[pymethods]
impl PyEnvelope {
    /// Decodes an envelope; EnvelopeShortError under 34 bytes,
    /// EnvelopeVersionError for a version other than 1.
    #[classmethod]
    fn decode(_cls: &Bound<'_, PyType>, data: &Bound<'_, PyAny>) -> PyResult<Self> {
        let bytes = bytes_arg(data, "data")?;
        Envelope::decode(&bytes)
            .map(PyEnvelope)
            .map_err(|e| envelope_error_to_py(data.py(), &e))
    }
    /// The envelope's bytes, exactly as `decode` read them.
    fn encode<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.encode())
    }
    /// The format version byte (always 1: `decode` refuses others).
    #[getter]
    fn version(&self) -> u8 {
        self.0.version
    }
    /// The flag byte; bit 0 means compressed (see `compressed`).
    #[getter]
    fn flag(&self) -> u8 {
        self.0.flag
    }
    /// Flag bit 0 (elastickv writes 0).
    #[getter]
    fn compressed(&self) -> bool {
        self.0.flag & FLAG_COMPRESSED != 0
    }
    /// The id (u32, big-endian on the wire) of the DEK that sealed it.
    #[getter]
    fn key_id(&self) -> u32 {
        self.0.key_id
    }
    /// The 12 nonce bytes; `nonce_parts` decodes them.
    #[getter]
    fn nonce<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.nonce)
    }
    /// The nonce decoded into a `Nonce`.
    #[getter]
    fn nonce_parts(&self) -> PyNonce {
        PyNonce(self.0.nonce_parts())
    }
    /// `ciphertext ‖ tag`.
    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.body)
    }
    /// The AAD a storage value is sealed with.
    #[pyo3(signature = (user_key, commit_ts, expire_at=U64::ZERO))]
    #[pyo3(text_signature = "($self, user_key, commit_ts, expire_at=0)")]
    fn storage_aad<'py>(
        &self,
        py: Python<'py>,
        user_key: &Bound<'py, PyAny>,
        commit_ts: U64,
        expire_at: U64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let key = bytes_arg(user_key, "user_key")?;
        Ok(PyBytes::new(
            py,
            &self
                .0
                .storage_aad(&key, commit_ts.value(), expire_at.value()),
        ))
    }
    /// The AAD a Raft entry is sealed with.
    fn raft_aad<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.raft_aad())
    }
    fn __repr__(&self) -> String {
        let n = self.0.nonce_parts();
        format!(
            "Envelope(key_id={}, flag=0x{:02x}, nonce=(0x{:04x}, {}, {}), body=<{} bytes>)",
            self.0.key_id,
            self.0.flag,
            n.node_id16,
            n.local_epoch,
            n.write_count,
            self.0.body.len()
        )
    }
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let decode = slf.get_type().getattr("decode")?;
        (decode, (PyBytes::new(py, &slf.get().0.encode()),)).into_bound_py_any(py)
    }
}

/// One finding of `audit_nonces()` (it has no constructor).
#[pyclass(module = "encryption_applier", name = "NonceFinding", frozen)]
pub struct PyNonceFinding(Finding);

#[pymethods]
impl PyNonceFinding {
    /// "reuse", "foreign_prefix", "epoch_ahead", "zero_count" or "unregistered".
    #[getter]
    fn problem(&self) -> &'static str {
        self.0.kind.code()
    }
    /// "error", or "warning" for "unregistered" (apply-path writes may come
    /// before their registration).
    #[getter]
    fn severity(&self) -> &'static str {
        if self.0.kind.is_warning() {
            "warning"
        } else {
            "error"
        }
    }
    /// The key id of the envelopes concerned.
    #[getter]
    fn key_id(&self) -> u32 {
        self.0.key_id
    }
    /// The nonce concerned, as a `Nonce`.
    #[getter]
    fn nonce(&self) -> PyNonce {
        PyNonce(self.0.nonce)
    }
    /// Positions of the envelopes concerned in the audited sequence.
    #[getter]
    fn positions(&self) -> Vec<usize> {
        self.0.positions.clone()
    }
    /// What is wrong, in words.
    #[getter]
    fn detail(&self) -> &str {
        &self.0.detail
    }
    fn __str__(&self) -> String {
        self.0.to_string()
    }
    fn __repr__(&self) -> String {
        format!("<NonceFinding {}>", self.0)
    }
}

/// Audits envelopes one node (`full_node_id`) wrote: nonce reuse, a
/// foreign prefix, an epoch ahead of the sidecar's, a zero count (errors),
/// and nonces no registry row covers (warnings). Findings come in the
/// order of the envelopes they name.
#[pyfunction]
#[pyo3(signature = (envelopes, *, full_node_id, sidecar=None, registry=None))]
pub(super) fn audit_nonces(
    py: Python<'_>,
    envelopes: &Bound<'_, PyAny>,
    full_node_id: U64,
    sidecar: Option<PyRef<'_, PySidecar>>,
    registry: Option<PyRef<'_, PyRegistry>>,
) -> PyResult<Vec<PyNonceFinding>> {
    let envelopes: Vec<Envelope> = envelopes
        .try_iter()?
        .map(|item| envelope_arg(&item?))
        .collect::<PyResult<_>>()?;
    let sidecar = sidecar.map(|s| s.0.clone());
    let full = full_node_id.value();
    let run = move |view: Option<&crate::view::Registry>| -> Result<Vec<Finding>, CoreError> {
        Ok(audit(
            &envelopes,
            sidecar.as_ref(),
            full,
            |dek_id, n16| match view {
                Some(v) => v.get(dek_id, n16),
                None => Ok(None),
            },
        )?)
    };
    let findings = match registry {
        Some(view) => view.with_view(py, |v| run(Some(v)))?,
        None => run_detached(py, || run(None))?,
    };
    Ok(findings.into_iter().map(PyNonceFinding).collect())
}
