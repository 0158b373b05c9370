//! `Keystore`: the live, read-only view of an applier's DEKs (SPEC §5, and
//! the envelope decryption of §7; core in `crate::keystore`).
//!
//! This file and `applier.rs` import each other, on purpose: a `Keystore`
//! holds its `Applier` (`Py<PyApplier>`) and reads the keys through the
//! applier's handle, and `Applier.keystore` makes one. That is the Python
//! object graph (a keystore keeps its applier alive), so the cycle stays;
//! it is the only one among the binding files.

use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::applier::PyApplier;
use super::convert::{bytes_arg, U32, U64};
use super::envelope::{envelope_arg, PyEnvelope};
use super::errors::envelope_error_to_py;
use crate::envelope::NonceParts;
use crate::keystore::Keystore;

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
    #[pyo3(text_signature = "($self, envelope, user_key, commit_ts, expire_at=0)")]
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
            .ok_or_else(|| PyKeyError::new_err(id))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        match self.ids(py) {
            Ok(ids) => format!("<Keystore ids={ids:?}>"),
            Err(_) => "<Keystore closed>".to_owned(),
        }
    }
}

impl PyKeystore {
    /// Seals `plaintext` with the key `key_id` under `nonce`: with
    /// `storage` (user key, commit_ts, expire_at), the storage `Envelope`
    /// elastickv writes, its AAD binding them; without, a Raft entry's. The
    /// caller owns the nonce, which must never repeat under one key. Not a
    /// method of the Python class: only `_native.test_support` (for
    /// `encryption_applier.testing`'s envelope writers, which form nonces as
    /// elastickv's nonce factory does) reaches it, because a caller-chosen
    /// nonce is how AES-GCM nonces get reused. KeyError-like failures are
    /// the envelope errors.
    pub(super) fn seal(
        &self,
        py: Python<'_>,
        key_id: u32,
        nonce: NonceParts,
        plaintext: &[u8],
        storage: Option<(&[u8], u64, u64)>,
    ) -> PyResult<PyEnvelope> {
        self.with(py, |ks| ks.encrypt(key_id, nonce, plaintext, storage))?
            .map(PyEnvelope)
            .map_err(|e| envelope_error_to_py(py, &e))
    }
}
