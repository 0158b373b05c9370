//! `registration_decision()`, `RegistrationDecision`, `RegistrationCheck`:
//! elastickv's start-up writer registration decision as Python objects
//! (SPEC §7; core in `crate::registration`). A refusal is an answer, not an
//! exception: only inputs that cannot be read raise.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::convert::{U16, U64};
use super::errors::CoreError;
use super::handle::run_detached;
use super::payloads::PyRegistration;
use super::registry::{PyRegistry, PyRegistryRow};
use crate::registration::{decide_at, Check, Decision, Verdict};
use crate::startup::RegistryLookup;
use crate::wire::{Entry, Registration};

/// `opcode ‖ payload` of a registration, in hex, from the wire codec.
fn entry_hex(r: Registration) -> String {
    // A registration always encodes (15 fixed bytes).
    Entry::Registration(r)
        .encode()
        .map(|bytes| bytes.iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_default()
}

fn registration_dict<'py>(py: Python<'py>, r: Registration) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("dek_id", r.dek_id)?;
    d.set_item("full_node_id", r.full_node_id)?;
    d.set_item("local_epoch", r.local_epoch)?;
    d.set_item("entry", entry_hex(r))?;
    Ok(d)
}

/// One of the two checks of the decision (the Raft key's, then the storage
/// key's, as Go runs them), with the ids it compared.
#[pyclass(module = "encryption_applier", name = "RegistrationCheck", frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct PyRegistrationCheck(Check);

#[pymethods]
impl PyRegistrationCheck {
    /// "storage" or "raft".
    #[getter]
    fn purpose(&self) -> &'static str {
        self.0.purpose.as_str()
    }
    /// "register", "already-registered", "skip", "refuse", or "not-reached"
    /// (an earlier check refused, so Go never made this one).
    #[getter]
    fn verdict(&self) -> &'static str {
        self.0.verdict.code()
    }
    /// Why nothing is to be registered, when `verdict` is "skip":
    /// "encryption_disabled", "no_sidecar", "storage_envelope_inactive",
    /// "not_bootstrapped", "raft_not_cut_over" or "no_active_raft_key".
    #[getter]
    fn skip_reason(&self) -> Option<&'static str> {
        match self.0.verdict {
            Verdict::Skip(why) => Some(why.code()),
            _ => None,
        }
    }
    /// The active key that was checked (0 when skipped before one).
    #[getter]
    fn dek_id(&self) -> u32 {
        self.0.dek_id
    }
    /// This node's full id.
    #[getter]
    fn full_node_id(&self) -> u64 {
        self.0.full_node_id
    }
    /// `full_node_id & 0xFFFF`, the row's key.
    #[getter]
    fn node_id16(&self) -> u16 {
        self.0.node_id16()
    }
    /// The pinned epoch compared for this purpose.
    #[getter]
    fn local_epoch(&self) -> u16 {
        self.0.local_epoch
    }
    /// What Go compared it with: the row's `last_seen_local_epoch`, 0
    /// without a row.
    #[getter]
    fn last_seen(&self) -> u16 {
        self.0.last_seen()
    }
    /// The row at `(dek_id, node_id16)`, whoever owns it, or None.
    #[getter]
    fn row(&self) -> Option<PyRegistryRow> {
        self.0.row.map(PyRegistryRow)
    }
    /// The row's full id when it is another node's (Go compares the epoch
    /// only; a registration it proposes then halts the appliers with a
    /// node-id collision).
    #[getter]
    fn foreign_owner(&self) -> Option<u64> {
        self.0.foreign_owner()
    }
    /// The registration Go proposes for this key, when `verdict` is
    /// "register".
    #[getter]
    fn entry(&self) -> Option<PyRegistration> {
        match self.0.verdict {
            Verdict::Register(r) => Some(PyRegistration(r)),
            _ => None,
        }
    }
    /// The Go error a refusal wraps: "ErrLocalEpochRollback" for the Raft
    /// key; None for the storage key (Go's error there is a plain one) and
    /// when nothing is refused.
    #[getter]
    fn sentinel(&self) -> Option<&'static str> {
        self.0.sentinel()
    }
    /// The check in words, with its ids.
    #[getter]
    fn reason(&self) -> String {
        self.0.to_string()
    }
    /// The fields as a dict of plain values (`row` a dict, `entry` the
    /// entry's hex), for JSON.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = &self.0;
        let d = PyDict::new(py);
        d.set_item("purpose", self.purpose())?;
        d.set_item("verdict", self.verdict())?;
        d.set_item("skip_reason", self.skip_reason())?;
        d.set_item("dek_id", c.dek_id)?;
        d.set_item("full_node_id", c.full_node_id)?;
        d.set_item("node_id16", c.node_id16())?;
        d.set_item("local_epoch", c.local_epoch)?;
        d.set_item("last_seen", c.last_seen())?;
        let row = match c.row {
            Some(r) => {
                let row = PyDict::new(py);
                row.set_item("dek_id", r.dek_id)?;
                row.set_item("node_id16", r.node_id16)?;
                row.set_item("full_node_id", r.full_node_id)?;
                row.set_item("first_seen_local_epoch", r.first_seen_local_epoch)?;
                row.set_item("last_seen_local_epoch", r.last_seen_local_epoch)?;
                Some(row)
            }
            None => None,
        };
        d.set_item("row", row)?;
        d.set_item("foreign_owner", c.foreign_owner())?;
        let entry = match c.verdict {
            Verdict::Register(r) => Some(entry_hex(r)),
            _ => None,
        };
        d.set_item("entry", entry)?;
        d.set_item("sentinel", c.sentinel())?;
        d.set_item("reason", c.to_string())?;
        Ok(d)
    }
    fn __str__(&self) -> String {
        self.0.to_string()
    }
    fn __repr__(&self) -> String {
        format!(
            "<RegistrationCheck {} {} dek_id={} full_node_id=0x{:016x} local_epoch={} last_seen={}>",
            self.purpose(),
            self.verdict(),
            self.0.dek_id,
            self.0.full_node_id,
            self.0.local_epoch,
            self.0.last_seen()
        )
    }
}

/// What elastickv decides at start before it proposes this node's writer
/// registrations: `action` is "register" (propose `entries`),
/// "already-registered", "skip" (no key in scope) or "refuse" (Go does not
/// start; `entries` is empty). `raft` and `storage` are the two checks.
#[pyclass(
    module = "encryption_applier",
    name = "RegistrationDecision",
    frozen,
    eq
)]
#[derive(Clone, PartialEq)]
pub struct PyRegistrationDecision(Decision);

#[pymethods]
impl PyRegistrationDecision {
    /// "register", "already-registered", "skip" or "refuse".
    #[getter]
    fn action(&self) -> &'static str {
        self.0.action().code()
    }
    /// The registrations Go proposes (0x03 payloads), storage key first;
    /// `Registration.to_entry()` gives each entry's bytes.
    #[getter]
    fn entries(&self) -> Vec<PyRegistration> {
        self.0.entries().into_iter().map(PyRegistration).collect()
    }
    /// The decision in words: the refusal with its ids, or each check.
    #[getter]
    fn reason(&self) -> String {
        self.0.to_string()
    }
    /// This node's full id.
    #[getter]
    fn full_node_id(&self) -> u64 {
        self.0.storage.full_node_id
    }
    /// The Raft key's check, made first.
    #[getter]
    fn raft(&self) -> PyRegistrationCheck {
        PyRegistrationCheck(self.0.raft)
    }
    /// The storage key's check, made second.
    #[getter]
    fn storage(&self) -> PyRegistrationCheck {
        PyRegistrationCheck(self.0.storage)
    }
    /// The check that refused, or None.
    #[getter]
    fn refusal(&self) -> Option<PyRegistrationCheck> {
        self.0.refusal().map(|c| PyRegistrationCheck(*c))
    }
    /// The decision as a dict of plain values, for JSON: `action`,
    /// `reason`, `full_node_id`, `entries` (each with its `entry` hex) and
    /// `checks` (Go's order, each `RegistrationCheck.to_dict()`).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("action", self.action())?;
        d.set_item("reason", self.reason())?;
        d.set_item("full_node_id", self.full_node_id())?;
        let entries = self
            .0
            .entries()
            .into_iter()
            .map(|r| registration_dict(py, r))
            .collect::<PyResult<Vec<_>>>()?;
        d.set_item("entries", entries)?;
        let checks = self
            .0
            .checks()
            .into_iter()
            .map(|c| PyRegistrationCheck(*c).to_dict(py))
            .collect::<PyResult<Vec<_>>>()?;
        d.set_item("checks", checks)?;
        Ok(d)
    }
    fn __str__(&self) -> String {
        self.0.to_string()
    }
    fn __repr__(&self) -> String {
        let entries: Vec<String> = self
            .0
            .entries()
            .iter()
            .map(|r| {
                format!(
                    "Registration(dek_id={}, full_node_id=0x{:016x}, local_epoch={})",
                    r.dek_id, r.full_node_id, r.local_epoch
                )
            })
            .collect();
        format!(
            "<RegistrationDecision {} full_node_id=0x{:016x} entries=[{}]>",
            self.action(),
            self.full_node_id(),
            entries.join(", ")
        )
    }
}

/// elastickv's start-up writer registration decision: from the sidecar at
/// `sidecar_path` (read, never written), the registry (None: no registry,
/// so no rows), this node's `full_node_id` and the epochs it pinned at this
/// start (`prepare_epochs()`), what Go proposes before it serves: the Raft
/// key is checked first (once the Raft layer is cut over, its epoch must be
/// above the row's `last_seen`), then the storage key (once its envelope is
/// active: above proposes, equal is already registered, below refuses).
/// A refusal is returned, not raised; an unreadable sidecar or a corrupt
/// row raises.
#[pyfunction]
#[pyo3(signature = (
    *, sidecar_path, registry, full_node_id, local_epoch, raft_local_epoch=U16::ZERO,
    encryption_enabled=true
))]
#[pyo3(
    text_signature = "(*, sidecar_path, registry, full_node_id, local_epoch, raft_local_epoch=0, encryption_enabled=True)"
)]
pub(super) fn registration_decision(
    py: Python<'_>,
    sidecar_path: PathBuf,
    registry: Option<PyRef<'_, PyRegistry>>,
    full_node_id: U64,
    local_epoch: U16,
    raft_local_epoch: U16,
    encryption_enabled: bool,
) -> PyResult<PyRegistrationDecision> {
    let (full, epochs) = (
        full_node_id.value(),
        (local_epoch.value(), raft_local_epoch.value()),
    );
    let run = move |lookup: Option<&dyn RegistryLookup>| -> Result<Decision, CoreError> {
        Ok(decide_at(
            &sidecar_path,
            encryption_enabled,
            full,
            epochs,
            lookup,
        )?)
    };
    let decision = match registry {
        Some(view) => view.with_view(py, |v| run(Some(v)))?,
        None => run_detached(py, || run(None))?,
    };
    Ok(PyRegistrationDecision(decision))
}
