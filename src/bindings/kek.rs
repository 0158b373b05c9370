//! The KEK of SPEC §5 from Python (core in `crate::kek`): `FileKek`, the
//! file KEK as a Python object (loading, generating, wrapping and
//! unwrapping; the key bytes never leave through a repr or a pickle), and
//! [`PythonKek`], a KEK written in Python behind the core's interface.
//! [`kek_arg`] takes either wherever a `kek=` is accepted.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyType};
use zeroize::{Zeroize, Zeroizing};

use super::convert::bytes_arg;
use super::errors::unwrap_to_py;
use super::handle::run_detached;
use crate::kek::{Dek, FileKek, KekBackend, KekFailure, SharedKek, UnwrapError, DEK_LEN};

/// A 32-byte AES-256 key-encryption key read from a file (SPEC §5).
///
/// `FileKek(path)` loads one, `FileKek.generate(path)` creates one; a bad
/// file raises `KEKFileError` (`InsecureKEKFileError` for group/other
/// permission bits or a foreign owner). Key bytes never show in a repr,
/// and it refuses to pickle.
///
/// ```pycon
/// >>> import os, tempfile
/// >>> with tempfile.TemporaryDirectory() as d:
/// ...     kek = ea.FileKek.generate(os.path.join(d, "kek"))
/// ...     wrapped = kek.wrap(b"k" * 32)
/// ...     len(wrapped), kek.unwrap(wrapped) == b"k" * 32
/// (60, True)
///
/// ```
#[pyclass(module = "encryption_applier", name = "FileKek", frozen)]
pub struct PyFileKek {
    pub(super) kek: Arc<FileKek>,
}

#[pymethods]
impl PyFileKek {
    /// Loads the KEK at `path`: a regular file of exactly 32 bytes with
    /// owner-only permissions, checked and read through one descriptor.
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let kek = run_detached(py, || Ok(FileKek::load(&path)?))?;
        Ok(PyFileKek { kek: Arc::new(kek) })
    }

    /// Writes a new random KEK to `path` (mode 0600, durably) and returns
    /// it. Refuses to overwrite an existing file.
    #[classmethod]
    fn generate(_cls: &Bound<'_, PyType>, py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let kek = run_detached(py, || Ok(FileKek::generate(&path)?))?;
        Ok(PyFileKek { kek: Arc::new(kek) })
    }

    /// The path of the KEK file, as given when loading or generating it.
    #[getter]
    fn path(&self) -> PathBuf {
        self.kek.path().to_path_buf()
    }

    /// `"file:<path>"`: the name messages give this KEK (elastickv's
    /// `FileWrapper.Name()`).
    #[getter]
    fn identity(&self) -> String {
        KekBackend::identity(&*self.kek)
    }

    /// `nonce(12) ‖ AES-256-GCM ciphertext(32) ‖ tag(16)` of a 32-byte DEK,
    /// under a fresh random nonce.
    fn wrap<'py>(&self, py: Python<'py>, dek: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        let wrapped = self
            .kek
            .wrap(&dek_arg(dek)?)
            .map_err(PyException::new_err)?;
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

impl PyFileKek {
    /// `wrap` under the 12-byte `nonce` given, for reproducible tests (a
    /// hypothesis example that replays; `encryption_applier.testing`).
    /// Not a method of the Python class (only `_native.test_support`
    /// reaches it): a nonce repeated under one KEK with another DEK breaks
    /// AES-GCM, so no public call takes one.
    pub(super) fn wrap_with_nonce<'py>(
        &self,
        py: Python<'py>,
        dek: &Bound<'py, PyAny>,
        nonce: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let given = bytes_arg(nonce, "nonce")?;
        let nonce: [u8; 12] = given.as_ref().try_into().map_err(|_| {
            PyValueError::new_err(format!("a nonce is 12 bytes, got {}", given.len()))
        })?;
        let wrapped = self
            .kek
            .wrap_with_nonce(&dek_arg(dek)?, nonce)
            .map_err(PyException::new_err)?;
        Ok(PyBytes::new(py, &wrapped))
    }
}

/// A KEK written in Python (`encryption_applier.Kek`): any object with
/// `wrap(dek) -> bytes`, `unwrap(wrapped) -> bytes` and a str `identity`,
/// read once when it is taken.
///
/// The core calls a KEK without the GIL (an apply runs detached, holding
/// its applier's lock), so each call takes the GIL for the call alone.
/// That cannot deadlock: no thread of this package waits for a lock while
/// it holds the GIL (`Handle::with` releases it first), so the thread that
/// holds the applier's lock always gets the GIL in the end. A KEK that
/// uses its own applier is refused (`RuntimeError`, the handle's
/// re-entrancy check) instead of waiting on its own thread's lock.
pub(super) struct PythonKek {
    obj: Py<PyAny>,
    identity: String,
}

impl PythonKek {
    fn failure(
        &self,
        message: String,
        interrupt: bool,
        source: Arc<dyn std::error::Error + Send + Sync>,
    ) -> KekFailure {
        KekFailure {
            kek: self.identity.clone(),
            message,
            interrupt,
            source,
        }
    }

    /// `obj.<method>(arg)` with the GIL, its answer as bytes (wiped when
    /// dropped). An exception is the failure, kept whole; an
    /// `Exception` is an answer ("it failed"), anything else (a
    /// `KeyboardInterrupt`, a `SystemExit`) the host stopping.
    fn call(&self, method: &str, arg: &[u8]) -> Result<Zeroizing<Vec<u8>>, KekFailure> {
        let called = Python::try_attach(|py| {
            let answer = self
                .obj
                .bind(py)
                .call_method1(method, (PyBytes::new(py, arg),))
                .and_then(|out| {
                    let what = format!("its {method}() answer");
                    Ok(Zeroizing::new(bytes_arg(&out, &what)?.into_owned()))
                });
            answer.map_err(|e| {
                let interrupt = !e.is_instance_of::<PyException>(py);
                self.failure(e.to_string(), interrupt, Arc::new(e))
            })
        });
        called.unwrap_or_else(|| {
            let message = "the Python interpreter is shutting down".to_owned();
            let source = Arc::new(std::io::Error::other(message.clone()));
            Err(self.failure(message, true, source))
        })
    }
}

impl KekBackend for PythonKek {
    fn wrap(&self, dek: &Dek) -> Result<Vec<u8>, KekFailure> {
        self.call("wrap", dek.expose()).map(|w| w.to_vec())
    }

    fn unwrap(&self, wrapped: &[u8]) -> Result<Dek, UnwrapError> {
        let key = self.call("unwrap", wrapped).map_err(UnwrapError::Backend)?;
        Dek::from_slice(&key).map_err(|len| UnwrapError::DekLength {
            kek: self.identity.clone(),
            len,
        })
    }

    fn identity(&self) -> String {
        self.identity.clone()
    }
}

/// A `kek=` argument: a `FileKek` (used natively, no GIL needed) or a KEK
/// written in Python, checked now: callable `wrap` and `unwrap`, and a
/// non-empty str `identity`.
pub(super) fn kek_arg(obj: &Bound<'_, PyAny>) -> PyResult<SharedKek> {
    if let Ok(file) = obj.cast::<PyFileKek>() {
        return Ok(file.get().kek.clone());
    }
    let kind = obj.get_type().name()?;
    let wanted = "a FileKek or a KEK object (encryption_applier.Kek: wrap(dek) -> bytes, \
                  unwrap(wrapped) -> bytes and an identity str)";
    for method in ["wrap", "unwrap"] {
        let callable = match obj.getattr(method) {
            Ok(m) => m.is_callable(),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyAttributeError>(obj.py()) => false,
            Err(e) => return Err(e),
        };
        if !callable {
            return Err(PyTypeError::new_err(format!(
                "kek must be {wanted}; {kind} has no callable {method}()"
            )));
        }
    }
    let identity = match obj.getattr("identity") {
        Ok(value) => value,
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyAttributeError>(obj.py()) => {
            return Err(PyTypeError::new_err(format!(
                "kek must be {wanted}; {kind} has no identity"
            )))
        }
        Err(e) => return Err(e),
    };
    let identity = identity.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!(
            "kek.identity must be a str (the name messages give the KEK), not {}",
            identity
                .get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string())
        ))
    })?;
    let identity = identity.to_str()?.to_owned();
    if identity.is_empty() {
        return Err(PyValueError::new_err(
            "kek.identity is empty; it names the KEK in messages (e.g. \"kms:<key uri>\")",
        ));
    }
    Ok(Arc::new(PythonKek {
        obj: obj.clone().unbind(),
        identity,
    }))
}

/// A 32-byte DEK argument, the copy of its bytes wiped.
fn dek_arg(dek: &Bound<'_, PyAny>) -> PyResult<Dek> {
    let bytes = bytes_arg(dek, "dek")?;
    let mut key: [u8; DEK_LEN] = bytes
        .as_ref()
        .try_into()
        .map_err(|_| PyValueError::new_err(format!("a DEK is 32 bytes, got {}", bytes.len())))?;
    let dek = Dek::from_bytes(key);
    key.zeroize();
    Ok(dek)
}
