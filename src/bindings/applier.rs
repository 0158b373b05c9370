//! `Applier`: the one writer of a registry, as a Python handle (SPEC §4,
//! §5 and §6; core in `crate::applier`). Its methods apply entries and
//! expose the registry, KEK, keystore and sidecar it holds; every call
//! goes through its `Handle` (`handle.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};

use super::convert::{outcome_list, outcome_str, U16, U64};
use super::errors::CoreError;
use super::handle::{run_detached, Handle};
use super::kek::kek_arg;
use super::keystore::PyKeystore;
use super::payloads::{entries_arg, entry_arg, PyBootstrap, PyRegistration, PyRotation};
use super::py_imports::APPLIER_HTML;
use super::registry::PyRegistry;
use super::resync::PySidecarResync;
use super::sidecar::{sidecar_summary, PySidecar};
use super::write_behind::{
    mode_text, report_failed_final_commit, start_group_commit_timer, write_behind_args, TimerHold,
};
use crate::applier::{
    Applier, ApplierOptions, DropReport, Indexes, RaftCutoverHook, ResyncLog, Waited,
};
use crate::error::HookError;
use crate::rules::Outcome;
use crate::wire::{Entry, MalformedPayload};

/// The one writer of a registry directory. Each `apply*` is one durable
/// LMDB transaction: when it returns, the change is on disk; when it
/// raises, nothing of the entry was written.
///
/// `Applier(path)` opens the registry directory (creating it if missing)
/// and takes its writer lock (`RegistryOpenError` while another writer
/// holds it). Use it in a `with` block, or call `close()`. Keywords:
///
/// - `kek=` (a `FileKek`, or a KEK of your own: see `Kek`): bootstrap and
///   rotation entries apply (without one they halt with
///   `KEKNotConfiguredError`); `sidecar=` is where the keys are kept,
///   `keys.json` in the registry directory by default. Each distinct
///   wrapped key is unwrapped once per applier.
/// - `sync=False` or `group_commit=K` (with `group_commit_ms=T`, default
///   10 ms) trade durability for speed; see the durability guide. With
///   group commit (and `pipelined=True`) every registration needs its Raft
///   `index=`: one without is refused (`ValueError`, nothing applied),
///   since nothing would record which entries a lost group held, and the
///   host could not replay them exactly. Bootstrap, rotation and
///   `apply_many` commit before they return, with or without indexes.
/// - `pipelined=True` (with `group_commit=K`, default 8192): write-behind
///   for Raft hosts that the disk does not gate: a committer thread
///   commits each group while the next is staged; at most K entries staged
///   and one group in flight can be lost; `wait_durable(index)` says when
///   an index is on disk.
/// - `map_size=`: the LMDB map size to start from, in bytes (it doubles
///   by itself whenever it fills up).
/// - `on_raft_cutover=`: a callable `(cutover_index, active_raft_dek_id)`
///   told of the Raft envelope cutover before it is written; if it raises,
///   the entry halts with `CutoverHookError`.
/// - `local_epoch=`/`raft_local_epoch=`: this process's local epochs, as
///   `prepare_epochs()` returns them (0: none pinned).
/// - `recreate_uncommitted=True`: a registry whose creation no commit ever
///   completed (a power loss during it) is emptied and created afresh
///   instead of raising `UncommittedRegistryError`.
///
/// Every `apply*` returns the outcome as a string: `"inserted"`,
/// `"advanced"`, `"unchanged"` (registrations), `"bootstrapped"`,
/// `"rotated"` (keys), `"enabled"`, `"already-active"`, `"stale-dek"`
/// (envelope cutovers), or `"skipped"` (an `index=` already applied); or
/// raises an `EncryptionApplyError`, a halt.
///
/// ```pycon
/// >>> import tempfile
/// >>> with tempfile.TemporaryDirectory() as d, ea.Applier(d) as a:
/// ...     a.apply(ea.Registration(1, 0xABCD0001, 1), index=1)
/// ...     a.apply(ea.Registration(1, 0xABCD0001, 1).to_entry(), index=1)  # a replay of index 1
/// ...     a.apply(ea.Registration(1, 0xABCD0001, 2), index=2)
/// ...     a.applied_index, a.registry.rows()
/// 'inserted'
/// 'skipped'
/// 'advanced'
/// (2, [RegistryRow(dek_id=1, node_id16=0x0001, full_node_id=0xabcd0001, first_seen_local_epoch=1, last_seen_local_epoch=2)])
///
/// ```
#[pyclass(module = "encryption_applier", name = "Applier", frozen)]
pub struct PyApplier {
    pub(super) inner: Handle<Applier>,
    path: PathBuf,
    /// Pipelined write-behind: registrations try the GIL-held fast path.
    pipelined: bool,
    /// Group commit or pipelined: registrations are staged, so each needs
    /// its Raft index.
    stages: bool,
    kek: Option<Py<PyAny>>,
    /// How it commits, as the keywords that chose it (`mode`).
    mode: String,
    /// The group-commit timer's test hook (None without a timer).
    pub(super) timer: Option<Arc<TimerHold>>,
}

/// Why a registration without `index=` is refused by a write-behind mode.
const UNINDEXED_STAGED: &str = "index= is needed with group commit: the registration would be staged \
    for a later commit, and without its Raft index nothing records which entries a lost group held, \
    so they could not be replayed exactly (StorageError.replay_from); nothing was applied. Give \
    index=, or use apply_many() (one commit per call), or open the Applier without group_commit= \
    and pipelined= (sync=False for speed without durability)";

impl PyApplier {
    fn run<'py>(
        &self,
        py: Python<'py>,
        entry: Result<Entry, MalformedPayload>,
        index: Option<U64>,
    ) -> PyResult<Bound<'py, PyString>> {
        let index = index.map(|i| i.value());
        if self.stages
            && matches!(entry, Ok(Entry::Registration(_)))
            && index.is_none_or(|i| i == crate::applier::NO_RAFT_INDEX)
        {
            return Err(PyValueError::new_err(UNINDEXED_STAGED));
        }
        if self.pipelined {
            if let Ok(Entry::Registration(reg)) = &entry {
                // Staging takes no lock that anyone holds for long: tried
                // with the GIL held, so a reader thread does not cost this
                // call a GIL hand-over; anything that would wait goes below.
                let now = self.inner.try_now(|applier| {
                    applier
                        .try_apply_registration_now(reg, index)
                        .map(|r| r.map_err(CoreError::from))
                });
                if let Some(result) = now {
                    return result
                        .map(|o| outcome_str(py, o))
                        .map_err(|e| e.into_py(py));
                }
            }
        }
        let outcome: Outcome = self.inner.with(py, |applier| {
            applier.take_pipeline_failure()?;
            // An applied index is skipped before its bytes are even decoded.
            if applier.is_applied(index) {
                return Ok(Outcome::Skipped);
            }
            Ok(applier.apply_entry_at(&entry?, index)?)
        })?;
        Ok(outcome_str(py, outcome))
    }
}

#[pymethods]
impl PyApplier {
    /// Opens (creating if missing) the registry at `path` and takes its
    /// writer lock. With a `kek`, bootstrap and rotation apply for real and
    /// the keys of an existing sidecar (`sidecar`, by default `keys.json`
    /// in the registry directory) are opened now.
    #[new]
    #[pyo3(
        text_signature = "(path, *, kek=None, sidecar=None, sync=True, map_size=None, on_raft_cutover=None, \
        local_epoch=0, raft_local_epoch=0, group_commit=None, group_commit_ms=None, \
        pipelined=False, recreate_uncommitted=False)"
    )]
    #[pyo3(signature = (
        path, *, kek=None, sidecar=None, sync=true, map_size=None, on_raft_cutover=None,
        local_epoch=U16::ZERO, raft_local_epoch=U16::ZERO, group_commit=None, group_commit_ms=None,
        pipelined=false, recreate_uncommitted=false
    ))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments
    fn new(
        py: Python<'_>,
        path: PathBuf,
        kek: Option<Bound<'_, PyAny>>,
        sidecar: Option<PathBuf>,
        sync: bool,
        map_size: Option<U64>,
        on_raft_cutover: Option<Py<PyAny>>,
        local_epoch: U16,
        raft_local_epoch: U16,
        group_commit: Option<Bound<'_, PyAny>>,
        group_commit_ms: Option<f64>,
        pipelined: bool,
        recreate_uncommitted: bool,
    ) -> PyResult<Self> {
        let (pipeline, group_commit) =
            write_behind_args(group_commit.as_ref(), group_commit_ms, pipelined)?;
        if kek.is_none() && sidecar.is_some() {
            return Err(PyValueError::new_err(
                "sidecar= needs kek=: without a KEK the applier keeps no keys",
            ));
        }
        if kek.is_none() && on_raft_cutover.is_some() {
            return Err(PyValueError::new_err(
                "on_raft_cutover= needs kek=: without a KEK no cutover is applied",
            ));
        }
        if let Some(hook) = &on_raft_cutover {
            if !hook.bind(py).is_callable() {
                return Err(PyTypeError::new_err(
                    "on_raft_cutover must be callable as on_raft_cutover(cutover_index, active_raft_dek_id)",
                ));
            }
        }
        // Called from the core without the GIL; it takes the GIL only for
        // the call (the applier's lock is never awaited with it held).
        let on_raft_cutover = on_raft_cutover.map(|hook| {
            RaftCutoverHook(Arc::new(move |cutover_index: u64, dek_id: u32| {
                Python::attach(|py| {
                    hook.call1(py, (cutover_index, dek_id))
                        .map(drop)
                        .map_err(|e| HookError(Arc::new(e)))
                })
            }))
        });
        let map_size = match map_size.map(|m| m.value()) {
            None => crate::store::DEFAULT_MAP_SIZE,
            Some(size) if size >= 1 << 16 => usize::try_from(size)
                .map_err(|_| PyOverflowError::new_err("map_size does not fit in memory"))?,
            Some(size) => {
                return Err(PyValueError::new_err(format!(
                    "map_size={size} is below the 65536-byte minimum"
                )))
            }
        };
        let options = ApplierOptions {
            kek: kek.as_ref().map(kek_arg).transpose()?,
            sidecar,
            durable: sync,
            map_size,
            on_raft_cutover,
            group_commit,
            pipeline,
            local_epoch: local_epoch.value(),
            raft_local_epoch: raft_local_epoch.value(),
            recreate_uncommitted,
        };
        let mut applier = run_detached(py, || Ok(Applier::open_with(&path, options)?))?;
        let path = applier.path().to_path_buf();
        let report_path = path.clone();
        applier.set_drop_report(DropReport(Box::new(move |error| {
            report_failed_final_commit(&report_path, &error);
        })));
        let inner = Handle::new(applier, "Applier", &path);
        let timer = match group_commit {
            Some(group) => {
                let hold = Arc::new(TimerHold::default());
                start_group_commit_timer(&inner, group.max_delay, Arc::clone(&hold))?;
                Some(hold)
            }
            None => None,
        };
        let mode = mode_text(pipeline, group_commit, sync);
        Ok(PyApplier {
            inner,
            path,
            pipelined: pipeline.is_some(),
            stages: pipeline.is_some() || group_commit.is_some(),
            kek: kek.map(Bound::unbind),
            mode,
            timer,
        })
    }

    /// The KEK this applier was opened with (the object given), or None.
    #[getter]
    fn kek(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.kek.as_ref().map(|k| k.clone_ref(py))
    }

    /// A live, read-only view of the keys this applier holds (None without
    /// a KEK). It gives ids and fingerprints, never key bytes.
    #[getter]
    fn keystore(slf: &Bound<'_, Self>) -> Option<PyKeystore> {
        slf.get().kek.as_ref()?;
        Some(PyKeystore {
            applier: slf.clone().unbind(),
        })
    }

    /// Where this applier keeps its sidecar (None without a KEK).
    #[getter]
    fn sidecar_path(&self, py: Python<'_>) -> PyResult<Option<PathBuf>> {
        self.inner.with(py, |applier| {
            Ok(applier.sidecar_path().map(Path::to_path_buf))
        })
    }

    /// The sidecar as it is on disk now, or None when there is none yet.
    #[getter]
    fn sidecar(&self, py: Python<'_>) -> PyResult<Option<PySidecar>> {
        let found = self.inner.with(py, |applier| Ok(applier.sidecar()?))?;
        Ok(found.map(PySidecar))
    }

    /// The registry directory, as an absolute path (symlinks resolved).
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// True once `close()` has run; a closed applier raises `ValueError`
    /// when used.
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        self.inner.is_closed(py)
    }

    /// A read-only view of this applier's registry.
    #[getter]
    fn registry(&self, py: Python<'_>) -> PyResult<PyRegistry> {
        let registry = self.inner.with(py, |applier| Ok(applier.registry()?))?;
        Ok(PyRegistry::from_registry(registry))
    }

    /// Applies one registration by the four-case rules. With `index`, it is
    /// the Raft entry at that index: skipped if already applied, recorded
    /// in the same transaction otherwise (`index=0` is no index, as in Go).
    #[pyo3(signature = (registration, *, index=None))]
    fn apply_registration<'py>(
        &self,
        py: Python<'py>,
        registration: PyRef<'py, PyRegistration>,
        index: Option<U64>,
    ) -> PyResult<Bound<'py, PyString>> {
        let entry = Entry::Registration(registration.0);
        drop(registration);
        self.run(py, Ok(entry), index)
    }

    /// Applies a bootstrap: unwraps and installs its storage and Raft DEKs,
    /// writes the sidecar and inserts its batch rows. Returns `"bootstrapped"`,
    /// `"unchanged"` for an exact replay, or `"skipped"` at an applied `index`.
    /// Halts with `KEKNotConfiguredError` without a KEK, and with
    /// `AlreadyBootstrappedError` once bootstrapped with other keys.
    #[pyo3(signature = (bootstrap, *, index=None))]
    fn apply_bootstrap<'py>(
        &self,
        py: Python<'py>,
        bootstrap: PyRef<'py, PyBootstrap>,
        index: Option<U64>,
    ) -> PyResult<Bound<'py, PyString>> {
        let entry = Entry::Bootstrap(bootstrap.0.clone());
        drop(bootstrap);
        self.run(py, Ok(entry), index)
    }

    /// Applies a rotation. `ROTATE_DEK` installs the new DEK, makes it the
    /// active one of its purpose and registers the proposer: `"rotated"` (or
    /// `"unchanged"` for a replay). The envelope cutovers (sub-tags 0x04/0x05)
    /// return `"enabled"`, `"already-active"` or `"stale-dek"`; any rotation
    /// gives `"skipped"` at an applied `index`. Halts with
    /// `KEKNotConfiguredError` without a KEK, `NotBootstrappedError` before one.
    #[pyo3(signature = (rotation, *, index=None))]
    fn apply_rotation<'py>(
        &self,
        py: Python<'py>,
        rotation: PyRef<'py, PyRotation>,
        index: Option<U64>,
    ) -> PyResult<Bound<'py, PyString>> {
        let entry = Entry::Rotation(rotation.0.clone());
        drop(rotation);
        self.run(py, Ok(entry), index)
    }

    /// Applies `opcode ‖ payload` bytes (or a payload object), dispatching
    /// on the opcode. Reserved opcodes and non-encryption bytes halt.
    #[pyo3(signature = (entry, *, index=None))]
    fn apply<'py>(
        &self,
        py: Python<'py>,
        entry: &Bound<'py, PyAny>,
        index: Option<U64>,
    ) -> PyResult<Bound<'py, PyString>> {
        let entry = entry_arg(entry)?;
        self.run(py, entry, index)
    }

    /// Applies `entries` (bytes or payload objects) in order with group
    /// commit: one LMDB transaction and one durable commit per run of
    /// registrations. Equal to applying them one by one: if entry `k`
    /// halts, entries before it stay committed, nothing of `k` or later is
    /// written, and the exception carries `.position = k` and `.outcomes`
    /// (those of the entries before `k`). With `first_index`, entry `i` is
    /// the Raft entry `first_index + i`; with `indexes`, each entry's index
    /// is given (strictly increasing: a log whose encryption entries are
    /// scattered). Entries at or below the applied index are "skipped".
    /// Raft index 0 means "no index": `first_index=0` is no indexes, and
    /// an `indexes=` list holding 0 is a `ValueError`.
    #[pyo3(signature = (entries, first_index=None, *, indexes=None))]
    fn apply_many<'py>(
        &self,
        py: Python<'py>,
        entries: &Bound<'py, PyAny>,
        first_index: Option<U64>,
        indexes: Option<Vec<U64>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let decoded = entries_arg(py, entries)?;
        let first_index = first_index.map(|f| f.value());
        if let Some(first) = first_index {
            if first
                .checked_add(decoded.len().saturating_sub(1) as u64)
                .is_none()
            {
                return Err(PyOverflowError::new_err(format!(
                    "first_index={first} + {} entries runs past the largest Raft index",
                    decoded.len()
                )));
            }
        }
        let each: Option<Vec<u64>> = indexes.map(|v| v.iter().map(U64::value).collect());
        if let Some(each) = &each {
            if first_index.is_some() {
                return Err(PyValueError::new_err(
                    "give first_index= (consecutive indexes) or indexes= (one per entry), not both",
                ));
            }
            if each.len() != decoded.len() {
                return Err(PyValueError::new_err(format!(
                    "indexes= has {} indexes for {} entries",
                    each.len(),
                    decoded.len()
                )));
            }
            if let Some(i) = each
                .iter()
                .position(|&i| i == crate::applier::NO_RAFT_INDEX)
            {
                return Err(PyValueError::new_err(format!(
                    "indexes[{i}]=0: Raft index 0 means \"no index\", so it cannot be one entry's \
                     index among others; nothing was applied"
                )));
            }
            if let Some(i) = each.windows(2).position(|w| w[0] >= w[1]) {
                return Err(PyValueError::new_err(format!(
                    "indexes must increase strictly: indexes[{}]={} follows indexes[{i}]={}",
                    i + 1,
                    each[i + 1],
                    each[i]
                )));
            }
        }
        let indexes = match (&each, first_index) {
            (Some(each), _) => Indexes::Each(each),
            (None, Some(first)) => Indexes::From(first),
            (None, None) => Indexes::None,
        };
        let outcomes = self
            .inner
            .with(py, |applier| Ok(applier.apply_many(&decoded, indexes)?))?;
        outcome_list(py, &outcomes)
    }

    /// The highest Raft index applied through this registry (None if never).
    #[getter]
    fn applied_index(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        self.inner.with(py, |applier| Ok(applier.applied_index()))
    }

    /// Commits what group commit staged (if anything), then releases the
    /// writer lock and this applier's handle on the registry. A failed
    /// commit is raised after the applier is closed.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        // (In a forked child the applier is the parent's: nothing to commit.)
        let flushed = if self.inner.in_child() || self.inner.is_closed(py) {
            Ok(())
        } else {
            self.inner.with(py, |applier| Ok(applier.flush()?))
        };
        // Waits (without the GIL) for an apply running on another thread.
        self.inner.close(py)?;
        flushed
    }

    /// Commits the entries group commit has staged (a no-op without it).
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        self.inner.with(py, |applier| Ok(applier.flush()?))
    }

    /// Brings keys.json up to the registry's applied index (or
    /// `through_index`) by replaying the bootstrap, rotation and cutover
    /// entries of the gap after its `raft_applied_index`, with the checks
    /// `apply` makes (elastickv's planned `resync-sidecar`). `log` is every
    /// entry of a contiguous run of the Raft log (b"" for one without an FSM
    /// payload), the first at `log_first_index`; it must hold the whole
    /// gap. Only keys.json is written, never the registry; local epochs are
    /// raised to this node's (`full_node_id`) own registry rows; the old
    /// file is kept as `<name>.before-resync-<index>`. `dry_run=True`
    /// writes nothing. A halt raises the entry's `EncryptionApplyError`
    /// (its `position` in `log`) and writes nothing.
    #[pyo3(signature = (log, *, log_first_index, full_node_id, through_index=None, dry_run=false))]
    fn resync_sidecar(
        &self,
        py: Python<'_>,
        log: Vec<Vec<u8>>,
        log_first_index: U64,
        full_node_id: U64,
        through_index: Option<U64>,
        dry_run: bool,
    ) -> PyResult<PySidecarResync> {
        let first_index = log_first_index.value();
        if first_index == 0 {
            return Err(PyValueError::new_err(
                "log_first_index must be 1 or more: Raft indexes start at 1 (0 means no index)",
            ));
        }
        let len = log.len() as u64;
        if len > 0 && first_index.checked_add(len - 1).is_none() {
            return Err(PyValueError::new_err(format!(
                "a log of {len} entries from index {first_index} runs past the largest Raft index"
            )));
        }
        let full = full_node_id.value();
        if full == 0 {
            return Err(PyValueError::new_err(
                "full_node_id must be this node's non-zero id (its registry rows give the epochs)",
            ));
        }
        let through = through_index.map(|t| t.value());
        let report = self.inner.with(py, |applier| {
            let log = ResyncLog {
                first_index,
                entries: &log,
            };
            Ok(applier.resync_sidecar(log, full, through, dry_run)?)
        })?;
        Ok(PySidecarResync(report))
    }

    /// Raises each key's keys.json `local_epoch` to this node's own
    /// `last_seen_local_epoch` under it, as its elastickv node's sidecar
    /// holds them (a node bumps its sidecar before it registers an epoch).
    /// Returns `{dek_id: (before, after)}`; writes only when one moves.
    fn record_own_epochs(
        &self,
        py: Python<'_>,
        full_node_id: U64,
    ) -> PyResult<std::collections::BTreeMap<u32, (u16, u16)>> {
        let full = full_node_id.value();
        if full == 0 {
            return Err(PyValueError::new_err(
                "full_node_id must be this node's non-zero id (its registry rows give the epochs)",
            ));
        }
        let raised = self
            .inner
            .with(py, |applier| Ok(applier.record_own_epochs(full)?))?;
        Ok(raised.iter().map(|e| (e.dek_id, (e.from, e.to))).collect())
    }

    /// The highest Raft index committed together with its rows (with
    /// sync=True, on disk). Equal to applied_index unless group commit has
    /// staged entries.
    #[getter]
    fn durable_index(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        self.inner.with(py, |applier| Ok(applier.durable_index()))
    }

    /// Waits (without the GIL) until the entry at Raft `index` is durable,
    /// committed with its rows: True then, False once `timeout` seconds
    /// passed first. A Raft host may compact its log up to an index once
    /// this returned True for it. With `pipelined=True` it waits for the
    /// committer (another thread may apply `index` meanwhile); in the other
    /// modes it commits what group commit staged if `index` is among it,
    /// and answers at once. A commit that failed is raised here
    /// (`StorageError`, with `replay_from`), as by any next call.
    #[pyo3(signature = (index, timeout=None))]
    fn wait_durable(&self, py: Python<'_>, index: U64, timeout: Option<f64>) -> PyResult<bool> {
        let index = index.value();
        let timeout = match timeout {
            None => None,
            Some(t) => Some(std::time::Duration::try_from_secs_f64(t).map_err(|_| {
                PyValueError::new_err(format!(
                    "timeout={t} is not a duration of 0 or more seconds"
                ))
            })?),
        };
        let waiter = self.inner.with(py, |applier| {
            if applier.pipelined().is_none()
                && applier.applied_index().is_some_and(|a| a >= index)
                && applier.durable_index().is_none_or(|d| d < index)
            {
                applier.flush()?;
            }
            Ok(applier.durable_wait())
        })?;
        let Some(waiter) = waiter else {
            return self.inner.with(py, |applier| {
                Ok(applier.durable_index().is_some_and(|d| d >= index))
            });
        };
        // In slices, so that a signal (Ctrl-C) is seen while waiting.
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let slice = std::time::Duration::from_millis(50);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            let this = left.map_or(slice, |l| l.min(slice));
            match py.detach(|| waiter.wait(index, Some(this))) {
                Waited::Durable => return Ok(true),
                Waited::Failed => {
                    // Raised (once) the way the next call raises it.
                    self.inner.with(py, |applier| Ok(applier.flush()?))?;
                }
                Waited::NotYet if left.is_some_and(|l| l <= this) => return Ok(false),
                Waited::NotYet => {}
            }
            py.check_signals()?;
        }
    }

    /// How many applied entries group commit holds for the next commit.
    #[getter]
    fn staged(&self, py: Python<'_>) -> PyResult<usize> {
        self.inner.with(py, |applier| Ok(applier.staged()))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        // None, not False: the exception (if any) propagates, and a type
        // checker knows a `with` block never swallows one.
        self.close(py)
    }

    /// How this applier commits, as the keywords that chose it:
    /// `"sync=True"` (an fsync per apply, the default), `"sync=False"`,
    /// `"group_commit=K group_commit_ms=T"` (write-behind group commit) or
    /// `"pipelined=True group_commit=K"`. See the durability guide.
    #[getter]
    fn mode(&self) -> String {
        self.mode.clone()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let path = self.path.display().to_string();
        let state = self.inner.with(py, |applier| {
            let sidecar = applier.sidecar_path().map(|_| match applier.sidecar() {
                Ok(Some(s)) => sidecar_summary(&s),
                Ok(None) => "none yet".to_owned(),
                Err(e) => format!("unreadable ({})", e.code()),
            });
            Ok((
                applier.applied_index(),
                applier.durable_index(),
                applier.staged(),
                sidecar,
            ))
        });
        let index = |i: Option<u64>| i.map_or("None".to_owned(), |i| i.to_string());
        match state {
            Ok((applied, durable, staged, sidecar)) => {
                let mut out = format!(
                    "<Applier path={path:?} mode={:?} applied_index={} durable_index={}",
                    self.mode,
                    index(applied),
                    index(durable)
                );
                if staged > 0 {
                    out.push_str(&format!(" staged={staged}"));
                }
                match sidecar {
                    Some(summary) => out.push_str(&format!(" sidecar={summary}")),
                    None => out.push_str(" kek=None"),
                }
                out.push('>');
                out
            }
            Err(_) if self.closed(py) => format!("<Applier path={path:?} closed>"),
            Err(e) => format!("<Applier path={path:?} unreadable: {e}>"),
        }
    }

    /// The notebook view: path, mode, indexes, the sidecar's keys and the
    /// registry's size.
    fn _repr_html_<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        APPLIER_HTML.get(slf.py())?.call1((slf,))
    }
}
