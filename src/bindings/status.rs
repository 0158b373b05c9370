//! `sidecar_state()`, `resync_sidecar_response()` and their classes
//! `SidecarStateReport`, `ResyncSidecarResponse` and `StatusExtras`:
//! elastickv's `GetSidecarState` report and the leader's `ResyncSidecar`
//! response as Python objects (core in `crate::status`), with `to_dict()`
//! and `to_json()` and their readers. The HTML repr is
//! `encryption_applier._frames.status_html`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyInt, PyMemoryView, PyString, PyType};
use serde_json::Value;

use super::convert::U64;
use super::errors::CoreError;
use super::handle::run_detached;
use super::py_imports::STATUS_HTML;
use super::registry::PyRegistry;
use super::sidecar::PySidecarKey;
use crate::sidecar::SIDECAR_FILE;
use crate::status::{
    self, Extras, MessageError, RegistrySource, ResyncSidecarResponse, SidecarStateReport,
};

fn message_error(e: MessageError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

// ---- Python values to the JSON the core reads

/// Nesting a message can have (report → extras → keys → key).
const MAX_DEPTH: usize = 6;

/// `obj` as the JSON value the core's reader takes: ints, strings, bools
/// and None as themselves, bytes as base64, dicts with str or int keys.
fn to_value(obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(n) = obj.extract::<u64>() {
            return Ok(Value::from(n));
        }
        if let Ok(n) = obj.extract::<i64>() {
            return Ok(Value::from(n));
        }
        // Too large for any field: the reader says which and why.
        return Ok(Value::String(obj.str()?.to_string()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_str()?.to_owned()));
    }
    if obj.is_instance_of::<PyBytes>()
        || obj.is_instance_of::<PyByteArray>()
        || obj.is_instance_of::<PyMemoryView>()
    {
        let bytes = super::convert::bytes_arg(obj, "a bytes field")?;
        return Ok(Value::String(STANDARD.encode(&bytes)));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        if depth >= MAX_DEPTH {
            return Err(PyValueError::new_err(
                "the dict nests deeper than a message does",
            ));
        }
        let mut map = serde_json::Map::new();
        for (k, v) in d.iter() {
            let key = if k.is_instance_of::<PyInt>() && !k.is_instance_of::<PyBool>() {
                k.str()?.to_string()
            } else if let Ok(s) = k.cast::<PyString>() {
                s.to_str()?.to_owned()
            } else {
                return Err(PyTypeError::new_err(format!(
                    "dict keys must be str or int, not {}",
                    k.get_type().name()?
                )));
            };
            map.insert(key, to_value(&v, depth + 1)?);
        }
        return Ok(Value::Object(map));
    }
    Err(PyTypeError::new_err(format!(
        "a message holds ints, bools, str, bytes, None and dicts, not {}",
        obj.get_type().name()?
    )))
}

fn dict_arg(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    if !obj.is_instance_of::<PyDict>() {
        return Err(PyTypeError::new_err(format!(
            "from_dict takes a dict, not {}",
            obj.get_type().name()?
        )));
    }
    to_value(obj, 0)
}

// ---- the core's messages to Python values

fn wrapped_dict<'py>(
    py: Python<'py>,
    map: &BTreeMap<u32, Vec<u8>>,
) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    for (id, wrapped) in map {
        out.set_item(id, PyBytes::new(py, wrapped))?;
    }
    Ok(out)
}

fn extras_dict<'py>(py: Python<'py>, x: &Extras) -> PyResult<Bound<'py, PyDict>> {
    let keys = PyDict::new(py);
    for (id, k) in &x.keys {
        let key = PyDict::new(py);
        key.set_item("purpose", k.purpose.as_str())?;
        key.set_item("created", &k.created)?;
        key.set_item("local_epoch", k.local_epoch)?;
        keys.set_item(id, key)?;
    }
    let out = PyDict::new(py);
    out.set_item("keys", keys)?;
    out.set_item(
        "storage_envelope_cutover_index",
        x.storage_envelope_cutover_index,
    )?;
    if let Some(flags) = x.envelope {
        out.set_item("storage_envelope_active", flags.storage_envelope_active)?;
        out.set_item(
            "raft_envelope_cutover_index",
            flags.raft_envelope_cutover_index,
        )?;
    }
    out.set_item("sidecar_raft_applied_index", x.sidecar_raft_applied_index)?;
    out.set_item("sidecar_version", x.sidecar_version)?;
    out.set_item("caller_full_node_id", x.caller_full_node_id)?;
    out.set_item("sidecar", &x.sidecar)?;
    out.set_item("registry", x.registry.as_deref())?;
    Ok(out)
}

/// `{1: <60 bytes>, 2: <60 bytes>}`, the first few keys.
fn wrapped_repr(map: &BTreeMap<u32, Vec<u8>>) -> String {
    const SHOWN: usize = 8;
    let mut parts: Vec<String> = map
        .iter()
        .take(SHOWN)
        .map(|(id, w)| format!("{id}: <{} bytes>", w.len()))
        .collect();
    if map.len() > SHOWN {
        parts.push(format!("... {} more", map.len() - SHOWN));
    }
    format!("{{{}}}", parts.join(", "))
}

fn projection_repr(map: &BTreeMap<u32, u32>) -> String {
    let parts: Vec<String> = map.iter().map(|(id, e)| format!("{id}: {e}")).collect();
    format!("{{{}}}", parts.join(", "))
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// What this package knows beyond Go's message (`.extras` of a
/// `SidecarStateReport` or `ResyncSidecarResponse`; None in one read from
/// a Go server's JSON). In `to_dict()` and `to_json()` it is the one key
/// `"extras"`, so that the rest is exactly Go's message.
#[pyclass(module = "encryption_applier", name = "StatusExtras", frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct PyStatusExtras(Extras);

#[pymethods]
impl PyStatusExtras {
    /// Every key of the sidecar, `{dek_id: SidecarKey}` ascending: its
    /// purpose, `created` and `local_epoch` (Go's message has the wrapped
    /// bytes only, so a key that is not active has no purpose there).
    #[getter]
    fn keys(&self) -> BTreeMap<u32, PySidecarKey> {
        self.0
            .keys
            .iter()
            .map(|(id, k)| (*id, PySidecarKey(k.clone())))
            .collect()
    }
    /// The Raft index of the storage cutover (0 before it): in neither of
    /// Go's messages.
    #[getter]
    fn storage_envelope_cutover_index(&self) -> u64 {
        self.0.storage_envelope_cutover_index
    }
    /// In a resync response's extras, the sidecar's `storage_envelope_active`
    /// (Go's response leaves it out); None in a state report's, which has
    /// it among Go's fields.
    #[getter]
    fn storage_envelope_active(&self) -> Option<bool> {
        self.0.envelope.map(|f| f.storage_envelope_active)
    }
    /// In a resync response's extras, the sidecar's
    /// `raft_envelope_cutover_index` (Go's response leaves it out); None in
    /// a state report's.
    #[getter]
    fn raft_envelope_cutover_index(&self) -> Option<u64> {
        self.0.envelope.map(|f| f.raft_envelope_cutover_index)
    }
    /// The sidecar's own `raft_applied_index`: Go's latest applied index
    /// unless the host gave the engine's.
    #[getter]
    fn sidecar_raft_applied_index(&self) -> u64 {
        self.0.sidecar_raft_applied_index
    }
    /// The version of the sidecar file read (1 or 2).
    #[getter]
    fn sidecar_version(&self) -> u64 {
        self.0.sidecar_version
    }
    /// The node whose registry rows were projected; 0 when none was given
    /// (the projection is then empty, as in Go).
    #[getter]
    fn caller_full_node_id(&self) -> u64 {
        self.0.caller_full_node_id
    }
    /// The sidecar file read.
    #[getter]
    fn sidecar(&self) -> &str {
        &self.0.sidecar
    }
    /// The registry directory the projection was read from; None when no
    /// registry was read (none given, or no caller id).
    #[getter]
    fn registry(&self) -> Option<&str> {
        self.0.registry.as_deref()
    }
    /// The extras as plain values (`"keys"`: `{dek_id: {"purpose",
    /// "created", "local_epoch"}}`), as under `"extras"` of the message's
    /// `to_dict()`.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        extras_dict(py, &self.0)
    }
    fn __repr__(&self) -> String {
        let x = &self.0;
        let envelope = x.envelope.map_or(String::new(), |f| {
            format!(
                ", storage_envelope_active={}, raft_envelope_cutover_index={}",
                py_bool(f.storage_envelope_active),
                f.raft_envelope_cutover_index
            )
        });
        format!(
            "StatusExtras(keys={:?}, storage_envelope_cutover_index={}{envelope}, \
             sidecar_raft_applied_index={}, sidecar_version={}, caller_full_node_id=0x{:x}, \
             sidecar={:?}, registry={})",
            x.keys.keys().collect::<Vec<_>>(),
            x.storage_envelope_cutover_index,
            x.sidecar_raft_applied_index,
            x.sidecar_version,
            x.caller_full_node_id,
            x.sidecar,
            x.registry
                .as_ref()
                .map_or("None".to_owned(), |r| format!("{r:?}")),
        )
    }
}

/// elastickv's `GetSidecarState` report (adapter/encryption_admin.go:
/// 422-460): Go's seven fields under their proto names, and `extras`.
///
/// Returned by `sidecar_state()`, or read back by `from_dict()` /
/// `from_json()`; immutable, compared by value.
#[pyclass(module = "encryption_applier", name = "SidecarStateReport", frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct PySidecarStateReport(SidecarStateReport);

#[pymethods]
impl PySidecarStateReport {
    /// Go: every key of the sidecar, `{dek_id: wrapped bytes}` (ascending
    /// here; a Go map has no order).
    #[getter]
    fn wrapped_deks_by_id<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        wrapped_dict(py, &self.0.wrapped_deks_by_id)
    }
    /// Go: the sidecar's `active.storage` (0: none).
    #[getter]
    fn active_storage_id(&self) -> u32 {
        self.0.active_storage_id
    }
    /// Go: the sidecar's `active.raft` (0: none).
    #[getter]
    fn active_raft_id(&self) -> u32 {
        self.0.active_raft_id
    }
    /// Go: the sidecar's `storage_envelope_active`.
    #[getter]
    fn storage_envelope_active(&self) -> bool {
        self.0.storage_envelope_active
    }
    /// Go: the sidecar's `raft_envelope_cutover_index` (0: not cut over).
    #[getter]
    fn raft_envelope_cutover_index(&self) -> u64 {
        self.0.raft_envelope_cutover_index
    }
    /// Go: the host's applied index when it gave one
    /// (`latest_applied_index=`, Go's `latestAppliedIndex` hook), else the
    /// sidecar's `raft_applied_index`.
    #[getter]
    fn latest_applied_index(&self) -> u64 {
        self.0.latest_applied_index
    }
    /// Go: `{dek_id: last_seen_local_epoch}` of the node's own rows under
    /// the sidecar's keys (a key without a row is left out); empty without
    /// a registry or a node id.
    #[getter]
    fn writer_registry_for_caller(&self) -> BTreeMap<u32, u32> {
        self.0.writer_registry_for_caller.clone()
    }
    /// What this package knows beyond Go's message; None in a report read
    /// from Go's JSON.
    #[getter]
    fn extras(&self) -> Option<PyStatusExtras> {
        self.0.extras.clone().map(PyStatusExtras)
    }

    /// Go's fields under their proto names, as Python values (bytes, int
    /// keys), and `"extras"` unless `extras=False`.
    #[pyo3(signature = (*, extras=true))]
    fn to_dict<'py>(&self, py: Python<'py>, extras: bool) -> PyResult<Bound<'py, PyDict>> {
        let r = &self.0;
        let out = PyDict::new(py);
        out.set_item(
            "wrapped_deks_by_id",
            wrapped_dict(py, &r.wrapped_deks_by_id)?,
        )?;
        out.set_item("active_storage_id", r.active_storage_id)?;
        out.set_item("active_raft_id", r.active_raft_id)?;
        out.set_item("storage_envelope_active", r.storage_envelope_active)?;
        out.set_item("raft_envelope_cutover_index", r.raft_envelope_cutover_index)?;
        out.set_item("latest_applied_index", r.latest_applied_index)?;
        out.set_item(
            "writer_registry_for_caller",
            r.writer_registry_for_caller.clone(),
        )?;
        if let Some(x) = r.extras.as_ref().filter(|_| extras) {
            out.set_item("extras", extras_dict(py, x)?)?;
        }
        Ok(out)
    }

    /// The proto3 JSON of Go's message (proto field names, every field,
    /// uint64 as strings, bytes as base64), and `"extras"` unless
    /// `extras=False`.
    #[pyo3(signature = (*, extras=true))]
    fn to_json(&self, extras: bool) -> String {
        self.0.to_json(extras)
    }

    /// Reads `to_dict()`'s dict back (`ValueError` for anything else:
    /// unknown keys, out-of-range values, ids that do not add up).
    #[classmethod]
    fn from_dict(_cls: &Bound<'_, PyType>, data: &Bound<'_, PyAny>) -> PyResult<Self> {
        let value = dict_arg(data)?;
        SidecarStateReport::from_value(&value)
            .map(PySidecarStateReport)
            .map_err(message_error)
    }

    /// Reads `to_json()`'s JSON back, or a Go server's (protojson, also
    /// with lowerCamelCase names and zero fields left out).
    #[classmethod]
    fn from_json(_cls: &Bound<'_, PyType>, text: &str) -> PyResult<Self> {
        SidecarStateReport::from_json(text)
            .map(PySidecarStateReport)
            .map_err(message_error)
    }

    fn __repr__(&self) -> String {
        let r = &self.0;
        format!(
            "SidecarStateReport(wrapped_deks_by_id={}, active_storage_id={}, active_raft_id={}, \
             storage_envelope_active={}, raft_envelope_cutover_index={}, latest_applied_index={}, \
             writer_registry_for_caller={})",
            wrapped_repr(&r.wrapped_deks_by_id),
            r.active_storage_id,
            r.active_raft_id,
            py_bool(r.storage_envelope_active),
            r.raft_envelope_cutover_index,
            r.latest_applied_index,
            projection_repr(&r.writer_registry_for_caller)
        )
    }

    fn _repr_html_<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        STATUS_HTML.get(slf.py())?.call1((slf,))
    }
}

/// The leader's elastickv `ResyncSidecar` response for one caller
/// (adapter/encryption_admin.go:486-516): Go's five fields under their
/// proto names, and `extras`. Go's response has no envelope flags; the
/// extras have them.
///
/// Returned by `resync_sidecar_response()`, or read back by `from_dict()` /
/// `from_json()` (a follower's input); immutable, compared by value.
#[pyclass(
    module = "encryption_applier",
    name = "ResyncSidecarResponse",
    frozen,
    eq
)]
#[derive(Clone, PartialEq)]
pub struct PyResyncSidecarResponse(ResyncSidecarResponse);

#[pymethods]
impl PyResyncSidecarResponse {
    /// Go: every key of the leader's sidecar, `{dek_id: wrapped bytes}`.
    #[getter]
    fn wrapped_deks_by_id<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        wrapped_dict(py, &self.0.wrapped_deks_by_id)
    }
    /// Go: the leader's `active.storage` (0: none).
    #[getter]
    fn active_storage_id(&self) -> u32 {
        self.0.active_storage_id
    }
    /// Go: the leader's `active.raft` (0: none).
    #[getter]
    fn active_raft_id(&self) -> u32 {
        self.0.active_raft_id
    }
    /// Go: the leader's applied index as the host gave it, else its
    /// sidecar's `raft_applied_index`.
    #[getter]
    fn leader_latest_applied_index(&self) -> u64 {
        self.0.leader_latest_applied_index
    }
    /// Go: `{dek_id: last_seen_local_epoch}` of the caller's rows in the
    /// leader's registry, under the sidecar's keys (a key without a row is
    /// left out).
    #[getter]
    fn writer_registry_for_caller(&self) -> BTreeMap<u32, u32> {
        self.0.writer_registry_for_caller.clone()
    }
    /// What this package knows beyond Go's message; None in a response read
    /// from a Go leader's JSON.
    #[getter]
    fn extras(&self) -> Option<PyStatusExtras> {
        self.0.extras.clone().map(PyStatusExtras)
    }

    /// Go's fields under their proto names, as Python values (bytes, int
    /// keys), and `"extras"` unless `extras=False`.
    #[pyo3(signature = (*, extras=true))]
    fn to_dict<'py>(&self, py: Python<'py>, extras: bool) -> PyResult<Bound<'py, PyDict>> {
        let r = &self.0;
        let out = PyDict::new(py);
        out.set_item(
            "wrapped_deks_by_id",
            wrapped_dict(py, &r.wrapped_deks_by_id)?,
        )?;
        out.set_item("active_storage_id", r.active_storage_id)?;
        out.set_item("active_raft_id", r.active_raft_id)?;
        out.set_item("leader_latest_applied_index", r.leader_latest_applied_index)?;
        out.set_item(
            "writer_registry_for_caller",
            r.writer_registry_for_caller.clone(),
        )?;
        if let Some(x) = r.extras.as_ref().filter(|_| extras) {
            out.set_item("extras", extras_dict(py, x)?)?;
        }
        Ok(out)
    }

    /// The proto3 JSON of Go's message (proto field names, every field,
    /// uint64 as strings, bytes as base64), and `"extras"` unless
    /// `extras=False`.
    #[pyo3(signature = (*, extras=true))]
    fn to_json(&self, extras: bool) -> String {
        self.0.to_json(extras)
    }

    /// Reads `to_dict()`'s dict back (`ValueError` for anything else:
    /// unknown keys, out-of-range values, ids that do not add up, a
    /// projected epoch above 0xFFFF).
    #[classmethod]
    fn from_dict(_cls: &Bound<'_, PyType>, data: &Bound<'_, PyAny>) -> PyResult<Self> {
        let value = dict_arg(data)?;
        ResyncSidecarResponse::from_value(&value)
            .map(PyResyncSidecarResponse)
            .map_err(message_error)
    }

    /// Reads `to_json()`'s JSON back, or a Go leader's (protojson, also
    /// with lowerCamelCase names and zero fields left out).
    #[classmethod]
    fn from_json(_cls: &Bound<'_, PyType>, text: &str) -> PyResult<Self> {
        ResyncSidecarResponse::from_json(text)
            .map(PyResyncSidecarResponse)
            .map_err(message_error)
    }

    fn __repr__(&self) -> String {
        let r = &self.0;
        format!(
            "ResyncSidecarResponse(wrapped_deks_by_id={}, active_storage_id={}, active_raft_id={}, \
             leader_latest_applied_index={}, writer_registry_for_caller={})",
            wrapped_repr(&r.wrapped_deks_by_id),
            r.active_storage_id,
            r.active_raft_id,
            r.leader_latest_applied_index,
            projection_repr(&r.writer_registry_for_caller)
        )
    }

    fn _repr_html_<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        STATUS_HTML.get(slf.py())?.call1((slf,))
    }
}

/// The registry argument: a `Registry` view, a directory, or None.
enum Source<'py> {
    None,
    View(PyRef<'py, PyRegistry>),
    Dir(PathBuf),
}

fn source<'py>(registry: Option<&Bound<'py, PyAny>>) -> PyResult<Source<'py>> {
    match registry {
        None => Ok(Source::None),
        Some(obj) if obj.is_none() => Ok(Source::None),
        Some(obj) => match obj.cast::<PyRegistry>() {
            Ok(view) => Ok(Source::View(view.borrow())),
            Err(_) => obj.extract::<PathBuf>().map(Source::Dir).map_err(|_| {
                PyTypeError::new_err(
                    "registry must be a Registry, a registry directory (str or os.PathLike) or None",
                )
            }),
        },
    }
}

/// Runs `f` on the sidecar path and the registry, the view's lock taken
/// without the GIL (or no lock at all for a directory or none).
fn with_source<T: Send>(
    py: Python<'_>,
    registry: Option<&Bound<'_, PyAny>>,
    sidecar_path: Option<PathBuf>,
    f: impl FnOnce(&std::path::Path, RegistrySource<'_>) -> Result<T, CoreError> + Send,
) -> PyResult<T> {
    match source(registry)? {
        Source::View(view) => view.with_view(py, |v| {
            let path = sidecar_path.unwrap_or_else(|| v.path().join(SIDECAR_FILE));
            f(&path, RegistrySource::View(v))
        }),
        Source::Dir(dir) => {
            let path = sidecar_path.unwrap_or_else(|| dir.join(SIDECAR_FILE));
            run_detached(py, || f(&path, RegistrySource::Dir(&dir)))
        }
        Source::None => {
            let path = sidecar_path.ok_or_else(|| {
                PyValueError::new_err(
                    "give a registry (a Registry or its directory; its keys.json is read) or \
                     sidecar_path",
                )
            })?;
            run_detached(py, || f(&path, RegistrySource::None))
        }
    }
}

/// elastickv's `GetSidecarState` for this node: the sidecar (default
/// `keys.json` in the registry directory) as Go reports it, with the
/// writer-registry projection for `full_node_id` (none when it is None or
/// 0, or without a registry), and `latest_applied_index` if the host has
/// the engine's (Go's `latestAppliedIndex` hook; else the sidecar's
/// `raft_applied_index`).
///
/// Raises `SidecarError` (code `not_bootstrapped` when there is no
/// sidecar), `ForeignRegistryRowError` when the row at the node's
/// node_id16 under a key belongs to another node, `RegistryOpenError` or
/// `RegistryCorruptionError` for a registry that cannot be read. The rows
/// are read from a snapshot taken after the sidecar (a `Registry` given
/// stays on its own).
///
/// ```pycon
/// >>> import os, tempfile
/// >>> node = ea.derive_node_id("n1")
/// >>> with tempfile.TemporaryDirectory() as d:
/// ...     kek = ea.FileKek.generate(os.path.join(d, "kek"))
/// ...     boot = ea.Bootstrap.for_cluster(1, kek.wrap(os.urandom(32)), 2, kek.wrap(os.urandom(32)), writers=[(node, 1)])
/// ...     with ea.Applier(os.path.join(d, "registry"), kek=kek) as a:
/// ...         _ = a.apply(boot, index=5)
/// ...     report = ea.sidecar_state(os.path.join(d, "registry"), full_node_id=node)
/// ...     report.active_storage_id, report.active_raft_id, report.latest_applied_index, report.writer_registry_for_caller
/// (1, 2, 5, {1: 1, 2: 1})
///
/// ```
#[pyfunction]
#[pyo3(signature = (registry=None, *, sidecar_path=None, full_node_id=None, latest_applied_index=None))]
pub(super) fn sidecar_state(
    py: Python<'_>,
    registry: Option<&Bound<'_, PyAny>>,
    sidecar_path: Option<PathBuf>,
    full_node_id: Option<U64>,
    latest_applied_index: Option<U64>,
) -> PyResult<PySidecarStateReport> {
    let full = full_node_id.map_or(0, |f| f.value());
    let latest = latest_applied_index.map(|i| i.value());
    with_source(py, registry, sidecar_path, |path, source| {
        Ok(status::sidecar_state(path, source, full, latest)?)
    })
    .map(PySidecarStateReport)
}

/// The leader's elastickv `ResyncSidecar` response for the node
/// `caller_full_node_id` (not 0: `ValueError`, as Go's InvalidArgument):
/// the sidecar's keys and active ids, `latest_applied_index` as
/// `sidecar_state()` takes it, and the caller's rows in the registry.
/// Errors as `sidecar_state()`.
#[pyfunction]
#[pyo3(signature = (registry=None, *, caller_full_node_id, sidecar_path=None, latest_applied_index=None))]
pub(super) fn resync_sidecar_response(
    py: Python<'_>,
    registry: Option<&Bound<'_, PyAny>>,
    caller_full_node_id: U64,
    sidecar_path: Option<PathBuf>,
    latest_applied_index: Option<U64>,
) -> PyResult<PyResyncSidecarResponse> {
    let caller = caller_full_node_id.value();
    let latest = latest_applied_index.map(|i| i.value());
    if caller == 0 {
        // Before anything else, as Go (even before a missing sidecar path).
        return Err(CoreError::from(status::StatusError::ZeroCaller).into_py(py));
    }
    with_source(py, registry, sidecar_path, |path, source| {
        Ok(status::resync_sidecar(path, source, caller, latest)?)
    })
    .map(PyResyncSidecarResponse)
}
