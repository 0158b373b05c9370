//! `Sidecar`, `SidecarKey`, `read_sidecar()`, `bump_local_epoch()` and
//! `prepare_epochs()`: the `keys.json` sidecar of SPEC §5 and the local
//! epochs of §7 as Python objects (core in `crate::sidecar`). A `Sidecar`
//! is a snapshot of the file, never a live view.

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{IntoPyDict, PyBytes};

use super::convert::{purpose_repr, purpose_to_py, U32};
use super::handle::run_detached;
use super::py_imports::{DATETIME, TIMEDELTA, TIMEZONE};
use crate::sidecar::{self, Sidecar, SidecarKey};

/// One key of a sidecar: a value of `Sidecar.keys` (it has no constructor).
#[pyclass(module = "encryption_applier", name = "SidecarKey", frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct PySidecarKey(pub(super) SidecarKey);

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
    /// When the key was installed: an RFC 3339 UTC timestamp, as written
    /// (the text is kept: a rewrite of the file writes it back byte for
    /// byte; `created_at` is the parsed instant).
    #[getter]
    fn created(&self) -> String {
        self.0.created.clone()
    }
    /// `created` as a timezone-aware `datetime.datetime`, in the offset
    /// the text gives (elastickv writes UTC, `time.RFC3339`: `Z` and whole
    /// seconds); a fraction past microseconds is cut off. None when the
    /// text names no instant although it has RFC 3339's shape (February
    /// 31st, a leap second `:60`, year 0): elastickv never parses the
    /// field, so reading the file does not refuse it.
    #[getter]
    fn created_at<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(t) = sidecar::parse_rfc3339(&self.0.created) else {
            return Ok(None);
        };
        let offset = TIMEDELTA.get(py)?.call(
            (),
            Some(&[("minutes", i32::from(t.offset_minutes))].into_py_dict(py)?),
        )?;
        let tz = TIMEZONE.get(py)?.call1((offset,))?;
        let kwargs = [("tzinfo", tz)].into_py_dict(py)?;
        let args = (
            t.year,
            t.month,
            t.day,
            t.hour,
            t.minute,
            t.second,
            t.nanosecond / 1000,
        );
        DATETIME.get(py)?.call(args, Some(&kwargs)).map(Some)
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

/// A sidecar in one line, for the `Applier` and `Registry` reprs:
/// `<keys.json version=2 active_storage=3 active_raft=2 keys=[1, 2, 3]
/// raft_applied_index=9 storage_envelope_active=False
/// storage_envelope_cutover_index=0 raft_envelope_cutover_index=0>`
/// (keys.json's own field names).
pub(super) fn sidecar_summary(s: &Sidecar) -> String {
    let keys: Vec<String> = s.keys.keys().map(u32::to_string).collect();
    format!(
        "<keys.json version={} active_storage={} active_raft={} keys=[{}] raft_applied_index={} \
         storage_envelope_active={} storage_envelope_cutover_index={} \
         raft_envelope_cutover_index={}>",
        s.version,
        s.active_storage,
        s.active_raft,
        keys.join(", "),
        s.raft_applied_index,
        if s.storage_envelope_active {
            "True"
        } else {
            "False"
        },
        s.storage_envelope_cutover_index,
        s.raft_cutover_index().unwrap_or(0)
    )
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
        let json = self
            .0
            .to_json()
            .map_err(|problem| PyValueError::new_err(problem.to_string()))?;
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

/// The epochs `prepare_epochs()` pins, as `(storage, raft)`, read without
/// writing anything: with `bumped=False` the sidecar is taken as it is
/// before a start (each epoch one above its key's;
/// `LocalEpochExhaustedError` at 0xFFFF), with `bumped=True` as it is after
/// the start's bump (the keys' own epochs). For a dry run such as
/// `registration_decision()` in `doctor`.
#[pyfunction]
#[pyo3(signature = (path, *, bumped=false))]
pub(super) fn pinned_epochs(py: Python<'_>, path: PathBuf, bumped: bool) -> PyResult<(u16, u16)> {
    run_detached(py, || Ok(sidecar::pinned_epochs(&path, bumped)?))
}

/// Reads and validates a sidecar file; None when the file does not exist.
///
/// ```pycon
/// >>> import os, tempfile
/// >>> with tempfile.TemporaryDirectory() as d:
/// ...     kek = ea.FileKek.generate(os.path.join(d, "kek"))
/// ...     with ea.Applier(os.path.join(d, "registry"), kek=kek) as a:
/// ...         _ = a.apply(ea.Bootstrap(1, kek.wrap(os.urandom(32)), 2, kek.wrap(os.urandom(32))))
/// ...     sidecar = ea.read_sidecar(os.path.join(d, "registry", "keys.json"))
/// ...     sidecar.active, sorted(sidecar.keys)
/// ({'raft': 2, 'storage': 1}, [1, 2])
///
/// ```
#[pyfunction]
pub(super) fn read_sidecar(py: Python<'_>, path: PathBuf) -> PyResult<Option<PySidecar>> {
    let found = run_detached(py, || Ok(sidecar::read(&path)?))?;
    Ok(found.map(PySidecar))
}
