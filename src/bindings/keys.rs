//! Keys: `FileKek`, the live `Keystore` view, and the parsed `Sidecar`.

use std::path::PathBuf;

use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyType};
use zeroize::Zeroize;

use super::applier::PyApplier;
use super::convert::{bytes_arg, purpose_repr, purpose_to_py, U32, U64};
use super::envelope::{envelope_arg, envelope_error_to_py};
use super::errors::unwrap_to_py;
use super::handle::run_detached;
use crate::kek::{Dek, Kek, DEK_LEN};
use crate::keystore::Keystore;
use crate::sidecar::{self, Sidecar, SidecarKey};

/// A 32-byte AES-256 key-encryption key read from a file (SPEC §5).
///
/// `FileKek(path)` loads one, `FileKek.generate(path)` creates one; a bad
/// file raises `KEKFileError` (`InsecureKEKFileError` for group/other
/// permission bits or a foreign owner). Key bytes never show in a repr,
/// and it refuses to pickle.
#[pyclass(module = "encryption_applier", name = "FileKek", frozen)]
pub struct PyFileKek {
    pub(super) kek: Kek,
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

    /// The path of the KEK file, as given when loading or generating it.
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
///
/// Obtained from `Applier.keystore` (it has no constructor). `len()`,
/// `in` and iteration work on the loaded DEK ids; no method returns key
/// bytes, only what they decrypt.
#[pyclass(module = "encryption_applier", name = "Keystore", frozen)]
pub struct PyKeystore {
    pub(super) applier: Py<PyApplier>,
}

impl PyKeystore {
    /// Runs `f` on the applier's keystore, without the GIL while waiting
    /// for the applier (which may be applying on another thread).
    fn with<T: Send>(&self, py: Python<'_>, f: impl FnOnce(&Keystore) -> T + Send) -> PyResult<T> {
        let applier = self.applier.bind(py).get();
        let keystore = applier.inner.with(py, |a| Ok(a.keystore().map(f)))?;
        keystore.ok_or_else(|| PyValueError::new_err("this applier has no KEK"))
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

    /// Opens a storage value's envelope (an Envelope or its bytes) with
    /// the key it names; its AAD binds `user_key`, `commit_ts` and
    /// `expire_at`. IntegrityError when it does not verify, KeyError for a
    /// key this keystore lacks.
    #[pyo3(signature = (envelope, user_key, commit_ts, expire_at=U64::ZERO))]
    fn decrypt_storage<'py>(
        &self,
        py: Python<'py>,
        envelope: &Bound<'py, PyAny>,
        user_key: &Bound<'py, PyAny>,
        commit_ts: U64,
        expire_at: U64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let env = envelope_arg(envelope)?;
        let key = bytes_arg(user_key, "user_key")?.into_owned();
        let (ts, exp) = (commit_ts.value(), expire_at.value());
        let plain = self.with(py, |ks| ks.decrypt(&env, Some((&key, ts, exp))))?;
        plain
            .map(|p| PyBytes::new(py, &p))
            .map_err(|e| envelope_error_to_py(py, &e))
    }

    /// Opens a Raft entry's envelope with the key it names.
    fn decrypt_raft<'py>(
        &self,
        py: Python<'py>,
        envelope: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let env = envelope_arg(envelope)?;
        let plain = self.with(py, |ks| ks.decrypt(&env, None))?;
        plain
            .map(|p| PyBytes::new(py, &p))
            .map_err(|e| envelope_error_to_py(py, &e))
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

/// One key of a sidecar: a value of `Sidecar.keys` (it has no constructor).
#[pyclass(module = "encryption_applier", name = "SidecarKey", frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct PySidecarKey(SidecarKey);

#[pymethods]
impl PySidecarKey {
    /// What the key encrypts, as a `Purpose`.
    #[getter]
    fn purpose(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        purpose_to_py(py, self.0.purpose)
    }
    /// The DEK wrapped under the KEK (`nonce ‖ ciphertext ‖ tag`, as
    /// `FileKek.wrap` makes it: 60 bytes). Not secret.
    #[getter]
    fn wrapped<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.wrapped)
    }
    /// When the key was installed: an RFC 3339 UTC timestamp, as written.
    #[getter]
    fn created(&self) -> String {
        self.0.created.clone()
    }
    /// The key's local epoch (u16), the middle field of the nonces written
    /// under it: 0 for a bootstrap key, the node's pinned epoch for a
    /// rotated one, raised by one by `bump_local_epoch()` at each start.
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
///
/// Returned by `read_sidecar()` and `Applier.sidecar` (it has no
/// constructor); a snapshot of the file, not a live view.
#[pyclass(module = "encryption_applier", name = "Sidecar", frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct PySidecar(pub(super) Sidecar);

#[pymethods]
impl PySidecar {
    #[getter]
    /// The version of the file read (1 or 2); this package writes 2.
    fn version(&self) -> u64 {
        self.0.version
    }
    /// The highest Raft index of a key entry (bootstrap or rotation) applied
    /// with an index; 0 if none. It only moves up.
    #[getter]
    fn raft_applied_index(&self) -> u64 {
        self.0.raft_applied_index
    }
    /// Whether the storage layer is cut over (an `ENABLE_STORAGE_ENVELOPE`
    /// rotation applied): storage values are then written in envelopes.
    #[getter]
    fn storage_envelope_active(&self) -> bool {
        self.0.storage_envelope_active
    }
    /// The Raft index of the storage cutover (0 before it).
    #[getter]
    fn storage_envelope_cutover_index(&self) -> u64 {
        self.0.storage_envelope_cutover_index
    }
    /// The Raft index of the Raft-layer cutover (`ENABLE_RAFT_ENVELOPE`), 0
    /// before it: the entries after it are enveloped.
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
    /// The id of the active storage DEK; 0 means none.
    #[getter]
    fn active_storage(&self) -> u32 {
        self.0.active_storage
    }
    /// The id of the active Raft DEK; 0 means none.
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

/// Moves the local epoch of key `dek_id` in the sidecar at `path` up by
/// one, durably, and returns it (what a node does at start before writing
/// under the key). Call it before an Applier opens the same sidecar.
#[pyfunction]
pub(super) fn bump_local_epoch(py: Python<'_>, path: PathBuf, dek_id: U32) -> PyResult<u16> {
    let dek_id = dek_id.value();
    if dek_id == 0 {
        return Err(PyValueError::new_err(
            "dek_id 0 is reserved (0 means no key: the cluster is not bootstrapped)",
        ));
    }
    run_detached(py, || Ok(sidecar::bump_local_epoch(&path, dek_id)?))
}

/// The epochs a node pins at start, as `(storage, raft)`: `(0, 0)` without
/// a sidecar or storage key; the active storage key's epoch bumped; the
/// active Raft key's bumped once the Raft layer is cut over (else 0).
/// Pass them to `Applier(local_epoch=, raft_local_epoch=)`.
#[pyfunction]
pub(super) fn prepare_epochs(py: Python<'_>, path: PathBuf) -> PyResult<(u16, u16)> {
    run_detached(py, || Ok(sidecar::prepare_epochs(&path)?))
}

/// Reads and validates a sidecar file; None when the file does not exist.
#[pyfunction]
pub(super) fn read_sidecar(py: Python<'_>, path: PathBuf) -> PyResult<Option<PySidecar>> {
    let found = run_detached(py, || Ok(sidecar::read(&path)?))?;
    Ok(found.map(PySidecar))
}
