//! `FileKek`: the key-encryption key of SPEC §5 as a Python object (core
//! in `crate::kek`). Loading, generating, wrapping and unwrapping; the key
//! bytes never leave through a repr or a pickle.

use std::path::PathBuf;

use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyType};
use zeroize::Zeroize;

use super::convert::bytes_arg;
use super::errors::unwrap_to_py;
use super::handle::run_detached;
use crate::kek::{Dek, Kek, DEK_LEN};

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
