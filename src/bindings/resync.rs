//! `SidecarResync`: what `Applier.resync_sidecar()` did or, in a dry run,
//! would do (core in `crate::applier::resync`).

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::sidecar::PySidecar;
use crate::applier::{Replayed, SidecarResync};
use crate::wire::{PayloadKind, ENABLE_RAFT_ENVELOPE, ENABLE_STORAGE_ENVELOPE, ROTATE_DEK};

/// What a resync of keys.json from the Raft log did (`written`), or would
/// do (`dry_run`): the gap `sidecar_applied_index + 1 ..= through_index`,
/// the entries replayed into keys.json with their outcome, the local
/// epochs raised to this node's registry rows, keys.json before and after,
/// and where the old file was kept.
#[pyclass(module = "encryption_applier", name = "SidecarResync", frozen)]
pub struct PySidecarResync(pub(super) SidecarResync);

/// The entry's name as the docs and the CLI call it.
fn entry_name(r: &Replayed) -> &'static str {
    match (r.kind, r.sub_tag) {
        (PayloadKind::Bootstrap, _) => "bootstrap",
        (_, Some(ROTATE_DEK)) => "rotate-dek",
        (_, Some(ENABLE_STORAGE_ENVELOPE)) => "enable-storage-envelope",
        (_, Some(ENABLE_RAFT_ENVELOPE)) => "enable-raft-envelope",
        _ => "entry",
    }
}

#[pymethods]
impl PySidecarResync {
    /// The keys.json resynced.
    #[getter]
    fn sidecar_path(&self) -> PathBuf {
        self.0.sidecar_path.clone()
    }
    /// keys.json's `raft_applied_index` before: the gap starts after it.
    #[getter]
    fn sidecar_applied_index(&self) -> u64 {
        self.0.sidecar_applied_index
    }
    /// The last index of the gap: the registry's applied index, unless a
    /// lower one was asked for. keys.json records it afterwards.
    #[getter]
    fn through_index(&self) -> u64 {
        self.0.through_index
    }
    /// `(index, entry, outcome)` of each entry of the gap that reaches
    /// keys.json, in log order: `entry` is "bootstrap", "rotate-dek",
    /// "enable-storage-envelope" or "enable-raft-envelope"; `outcome` as
    /// `apply` names it ("unchanged" where keys.json already had it).
    #[getter]
    fn replayed(&self) -> Vec<(u64, &'static str, &'static str)> {
        self.0
            .replayed
            .iter()
            .map(|r| (r.index, entry_name(r), r.outcome.as_str()))
            .collect()
    }
    /// How many entries of the gap do not touch keys.json (registrations,
    /// entries without a payload, other FSM entries).
    #[getter]
    fn passed_over(&self) -> usize {
        self.0.passed_over
    }
    /// `(first, last)` of the log's entries past `through_index`, which
    /// `apply` replays (rows and keys.json together); None if none.
    #[getter]
    fn left_for_apply(&self) -> Option<(u64, u64)> {
        self.0.left_for_apply
    }
    /// `{dek_id: (before, after)}` of the local epochs raised to this
    /// node's `last_seen_local_epoch` in its own registry rows.
    #[getter]
    fn epochs(&self) -> std::collections::BTreeMap<u32, (u16, u16)> {
        self.0
            .epochs
            .iter()
            .map(|e| (e.dek_id, (e.from, e.to)))
            .collect()
    }
    /// keys.json before (None: there was none).
    #[getter]
    fn before(&self) -> Option<PySidecar> {
        self.0.before.clone().map(PySidecar)
    }
    /// keys.json as the resync leaves it (or, in a dry run, would).
    #[getter]
    fn after(&self) -> PySidecar {
        PySidecar(self.0.after.clone())
    }
    /// Whether keys.json differs (or would differ) from before.
    #[getter]
    fn changed(&self) -> bool {
        self.0.changed()
    }
    /// Whether this was a dry run (nothing written).
    #[getter]
    fn dry_run(&self) -> bool {
        self.0.dry_run
    }
    /// Whether keys.json was written (never in a dry run, nor when nothing
    /// changed).
    #[getter]
    fn written(&self) -> bool {
        self.0.written
    }
    /// Where the old keys.json was kept (`<name>.before-resync-<index>`),
    /// when one was replaced.
    #[getter]
    fn backup(&self) -> Option<PathBuf> {
        self.0.backup.clone()
    }
    /// Every field as plain Python values (the sidecars as their JSON
    /// text), for `json.dumps`.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let r = &self.0;
        d.set_item("sidecar_path", r.sidecar_path.to_string_lossy())?;
        d.set_item("sidecar_applied_index", r.sidecar_applied_index)?;
        d.set_item("through_index", r.through_index)?;
        let replayed: Vec<_> = r
            .replayed
            .iter()
            .map(|e| {
                let item = PyDict::new(py);
                item.set_item("index", e.index)?;
                item.set_item("entry", entry_name(e))?;
                item.set_item("outcome", e.outcome.as_str())?;
                Ok(item)
            })
            .collect::<PyResult<_>>()?;
        d.set_item("replayed", replayed)?;
        d.set_item("passed_over", r.passed_over)?;
        d.set_item("left_for_apply", r.left_for_apply)?;
        let epochs = PyDict::new(py);
        for e in &r.epochs {
            epochs.set_item(e.dek_id.to_string(), (e.from, e.to))?;
        }
        d.set_item("epochs", epochs)?;
        let json = |s: &crate::sidecar::Sidecar| {
            s.to_json()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .map_err(|p| pyo3::exceptions::PyValueError::new_err(p.to_string()))
        };
        d.set_item("before", r.before.as_ref().map(json).transpose()?)?;
        d.set_item("after", json(&r.after)?)?;
        d.set_item("changed", r.changed())?;
        d.set_item("dry_run", r.dry_run)?;
        d.set_item("written", r.written)?;
        d.set_item("backup", r.backup.as_ref().map(|p| p.to_string_lossy()))?;
        Ok(d)
    }
    fn __repr__(&self) -> String {
        let r = &self.0;
        let state = if r.dry_run {
            "dry run"
        } else if r.written {
            "written"
        } else {
            "nothing to write"
        };
        format!(
            "<SidecarResync {}..={} {}: {} replayed, {} passed over, {} epochs raised, {}>",
            r.sidecar_applied_index.saturating_add(1),
            r.through_index,
            r.sidecar_path.display(),
            r.replayed.len(),
            r.passed_over,
            r.epochs.len(),
            state
        )
    }
}
