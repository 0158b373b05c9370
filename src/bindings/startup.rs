//! `diagnose_startup()` / `check_startup()` / `startup_diagnosis()`:
//! elastickv's startup guards (SPEC §7; core in `crate::startup`), each
//! refusal as its exception class, each guard that did not run as a
//! `SkippedGuard` with why.

use std::path::PathBuf;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use super::convert::U64;
use super::errors::{build, field, kek_exception, CoreError};
use super::handle::run_detached;
use super::kek::kek_arg;
use super::py_imports::{ExceptionClass, STARTUP_DIAGNOSIS};
use super::registry::PyRegistry;
use crate::raftlog::LogSlice;
use crate::startup::{
    diagnose_all, Diagnosis, Phase, Refusal, RollbackProblem, Skipped, StartupInput,
};

fn refusal_to_py(py: Python<'_>, r: &Refusal) -> PyErr {
    let mut fields = vec![
        ("meaning", field(py, r.meaning())),
        ("sentinel", field(py, r.sentinel())),
    ];
    let class = match r {
        Refusal::SidecarPresentWithoutFlag { path } => {
            fields.push(("path", field(py, path.to_string_lossy())));
            ExceptionClass::SidecarPresentWithoutFlagError
        }
        Refusal::KekRequiredWithFlag => ExceptionClass::KEKRequiredWithFlagError,
        Refusal::KekMismatch {
            dek_id,
            purpose,
            problem,
        } => {
            fields.push(("dek_id", field(py, *dek_id)));
            fields.push(("purpose", field(py, purpose.as_str())));
            fields.push(("problem", field(py, problem.to_string())));
            let err = build(py, ExceptionClass::KEKMismatchError, r.to_string(), fields);
            // A KEK written in Python: its exception is the cause.
            err.set_cause(py, problem.failure().and_then(|f| kek_exception(py, f)));
            return err;
        }
        Refusal::LocalEpochExhausted {
            dek_id,
            purpose,
            path,
        } => {
            fields.push(("dek_id", field(py, *dek_id)));
            fields.push(("purpose", field(py, purpose.as_str())));
            fields.push(("path", field(py, path.to_string_lossy())));
            ExceptionClass::LocalEpochExhaustedError
        }
        Refusal::UnsupportedFilesystem { dir, detail } => {
            fields.push(("path", field(py, dir.to_string_lossy())));
            fields.push(("detail", field(py, detail.as_str())));
            ExceptionClass::UnsupportedFilesystemError
        }
        Refusal::NodeIdCollision { first, second } => {
            fields.push(("first_full_node_id", field(py, *first)));
            fields.push(("second_full_node_id", field(py, *second)));
            ExceptionClass::StartupNodeIDCollisionError
        }
        Refusal::LocalEpochRollback {
            dek_id,
            full_node_id,
            phase,
            problem,
        } => {
            fields.push(("dek_id", field(py, *dek_id)));
            fields.push(("full_node_id", field(py, *full_node_id)));
            fields.push(("phase", field(py, phase_name(*phase))));
            let (code, sidecar_epoch, last_seen, owner) = match problem {
                RollbackProblem::NoRow => ("no_row", None, None, None),
                RollbackProblem::ForeignRow { owner } => ("foreign_row", None, None, Some(*owner)),
                RollbackProblem::Behind {
                    sidecar_epoch,
                    last_seen,
                } => ("behind", Some(*sidecar_epoch), Some(*last_seen), None),
            };
            fields.push(("problem", field(py, code)));
            fields.push(("sidecar_epoch", field(py, sidecar_epoch)));
            fields.push(("last_seen", field(py, last_seen)));
            fields.push(("owner_full_node_id", field(py, owner)));
            ExceptionClass::StartupLocalEpochRollbackError
        }
        Refusal::EnvelopeCutoverDivergence {
            snapshot,
            sidecar,
            read,
        } => {
            fields.push(("snapshot_cutover_index", field(py, *snapshot)));
            fields.push(("sidecar_cutover_index", field(py, *sidecar)));
            let file = read.as_ref().map(|r| r.path.to_string_lossy().into_owned());
            fields.push(("snapshot_path", field(py, file)));
            fields.push((
                "snapshot_index",
                field(py, read.as_ref().and_then(|r| r.index)),
            ));
            ExceptionClass::EnvelopeCutoverDivergenceError
        }
        Refusal::SidecarBehindRaftLog {
            sidecar_applied_index,
            engine_applied_index,
            entry,
        } => {
            fields.push(("sidecar_applied_index", field(py, *sidecar_applied_index)));
            fields.push(("engine_applied_index", field(py, *engine_applied_index)));
            fields.push(("entry_index", field(py, entry.map(|(index, _)| index))));
            fields.push(("opcode", field(py, entry.map(|(_, opcode)| opcode))));
            ExceptionClass::SidecarBehindRaftLogError
        }
        Refusal::RaftLogGapUncovered {
            sidecar_applied_index,
            engine_applied_index,
            log_range,
        } => {
            fields.push(("sidecar_applied_index", field(py, *sidecar_applied_index)));
            fields.push(("engine_applied_index", field(py, *engine_applied_index)));
            fields.push((
                "log_first_index",
                field(py, log_range.map(|(first, _)| first)),
            ));
            fields.push(("log_last_index", field(py, log_range.map(|(_, last)| last))));
            ExceptionClass::RaftLogGapUncoveredError
        }
    };
    build(py, class, r.to_string(), fields)
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::PreBump => "pre-bump",
        Phase::PostReplay => "post-replay",
    }
}

/// The log argument: a contiguous run of entries from `first_index` on,
/// each reduced to its opcode (all the guard reads).
struct Log {
    first_index: u64,
    opcodes: Vec<Option<u8>>,
}

/// `log` and `log_first_index`, checked: both or neither, indexes from 1,
/// and the run must fit below 2**64.
fn log_arg(log: Option<Vec<Bound<'_, PyAny>>>, first_index: Option<U64>) -> PyResult<Option<Log>> {
    let (log, first_index) = match (log, first_index) {
        (None, None) => return Ok(None),
        (Some(log), Some(first)) => (log, first.value()),
        (Some(_), None) => {
            return Err(PyValueError::new_err(
                "log needs log_first_index: the Raft index of its first entry (the others \
                 follow, one index each)",
            ))
        }
        (None, Some(_)) => {
            return Err(PyValueError::new_err(
                "log_first_index is given but log is not",
            ))
        }
    };
    if first_index == 0 {
        return Err(PyValueError::new_err(
            "log_first_index must be 1 or more: Raft indexes start at 1 (0 means no index)",
        ));
    }
    let mut opcodes = Vec::with_capacity(log.len());
    for (i, entry) in log.iter().enumerate() {
        if entry.is_instance_of::<PyTuple>() {
            return Err(PyTypeError::new_err(format!(
                "log[{i}] is a tuple: log is a contiguous list of entries (bytes), the first at \
                 Raft index log_first_index; (index, entry) pairs are no longer taken"
            )));
        }
        let bytes = entry.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!(
                "log[{i}] must be bytes (an entry, opcode first; b\"\" for an entry without \
                 an FSM payload), not {}",
                entry
                    .get_type()
                    .name()
                    .map_or_else(|_| "?".into(), |n| n.to_string())
            ))
        })?;
        opcodes.push(bytes.as_bytes().first().copied());
    }
    let len = u64::try_from(opcodes.len()).unwrap_or(u64::MAX);
    if len > 0 && first_index.checked_add(len - 1).is_none() {
        return Err(PyValueError::new_err(format!(
            "a log of {len} entries from index {first_index} runs past the largest Raft index \
             (2**64 - 1)"
        )));
    }
    Ok(Some(Log {
        first_index,
        opcodes,
    }))
}

/// The arguments both functions take, converted.
struct Inputs {
    encryption_enabled: bool,
    kek: Option<crate::kek::SharedKek>,
    sidecar_path: Option<PathBuf>,
    full_node_id: Option<u64>,
    members: Vec<u64>,
    log: Option<Log>,
    engine_applied_index: Option<u64>,
    snapshot_cutover_index: Option<u64>,
    snapshot_path: Option<PathBuf>,
    phase: Phase,
}

#[allow(clippy::too_many_arguments)] // Python keyword arguments
fn inputs(
    encryption_enabled: bool,
    kek: Option<Bound<'_, PyAny>>,
    sidecar_path: Option<PathBuf>,
    full_node_id: Option<U64>,
    members: Vec<U64>,
    log: Option<Log>,
    engine_applied_index: Option<U64>,
    snapshot_cutover_index: Option<U64>,
    snapshot_path: Option<PathBuf>,
    phase: &str,
) -> PyResult<Inputs> {
    if snapshot_cutover_index.is_some() && snapshot_path.is_some() {
        return Err(PyValueError::new_err(
            "give snapshot_cutover_index or snapshot_path, not both",
        ));
    }
    let phase = match phase {
        "pre-bump" => Phase::PreBump,
        "post-replay" => Phase::PostReplay,
        other => {
            return Err(PyValueError::new_err(format!(
                "phase must be \"pre-bump\" or \"post-replay\", not {other:?}"
            )))
        }
    };
    Ok(Inputs {
        encryption_enabled,
        kek: kek.as_ref().map(kek_arg).transpose()?,
        sidecar_path,
        full_node_id: full_node_id.map(|f| f.value()),
        members: members.iter().map(U64::value).collect(),
        log,
        engine_applied_index: engine_applied_index.map(|i| i.value()),
        snapshot_cutover_index: snapshot_cutover_index.map(|i| i.value()),
        snapshot_path,
        phase,
    })
}

fn run(
    py: Python<'_>,
    args: Inputs,
    registry: Option<PyRef<'_, PyRegistry>>,
    first_only: bool,
) -> PyResult<Diagnosis> {
    let diagnose_with =
        move |view: Option<&crate::view::Registry>| -> Result<Diagnosis, CoreError> {
            let input = StartupInput {
                encryption_enabled: args.encryption_enabled,
                kek: args.kek.as_deref(),
                sidecar_path: args.sidecar_path.as_deref(),
                full_node_id: args.full_node_id,
                members: &args.members,
                log: args.log.as_ref().map(|l| LogSlice {
                    first_index: l.first_index,
                    opcodes: &l.opcodes,
                }),
                engine_applied_index: args.engine_applied_index,
                snapshot_cutover_index: args.snapshot_cutover_index,
                snapshot_path: args.snapshot_path.as_deref(),
                phase: Some(args.phase),
            };
            let lookup = view.map(|v| v as &dyn crate::startup::RegistryLookup);
            Ok(diagnose_all(&input, lookup, first_only)?)
        };
    match registry {
        Some(view) => view.with_view(py, |v| diagnose_with(Some(v))),
        None => run_detached(py, || diagnose_with(None)),
    }
}

/// Every startup refusal of elastickv's guards, in Go's order (empty: the
/// node may start), as a `StartupDiagnosis` (a list, with a notebook
/// table). Each is a StartupRefusedError subclass with the Go
/// error's name (`sentinel`), what it means (`meaning`) and its fields.
///
/// Guard 0 compares the sidecar's Raft cutover with the restored
/// snapshot's: `snapshot_path=` (a `.snap` or `.fsm` file, or the Raft
/// group's data directory, its newest snapshot chosen as Go does) has it
/// read the snapshot, `snapshot_cutover_index=` gives the number (not
/// both). A snapshot Go cannot read raises `SnapshotError`.
///
/// ```pycon
/// >>> ea.diagnose_startup(encryption_enabled=False)   # nothing configured, nothing on disk
/// StartupDiagnosis([])
/// >>> [type(r).__name__ for r in ea.diagnose_startup(encryption_enabled=True)]
/// ['KEKRequiredWithFlagError']
///
/// ```
#[pyfunction]
#[pyo3(
    text_signature = "(*, encryption_enabled, kek=None, sidecar_path=None, registry=None, full_node_id=None, members=(), log=None, log_first_index=None, engine_applied_index=None, snapshot_cutover_index=None, snapshot_path=None, phase='pre-bump')"
)]
#[pyo3(signature = (
    *, encryption_enabled, kek=None, sidecar_path=None, registry=None, full_node_id=None,
    members=Vec::new(), log=None, log_first_index=None, engine_applied_index=None, snapshot_cutover_index=None,
    snapshot_path=None,
    phase="pre-bump"
))]
#[allow(clippy::too_many_arguments)] // Python keyword arguments
pub(super) fn diagnose_startup<'py>(
    py: Python<'py>,
    encryption_enabled: bool,
    kek: Option<Bound<'_, PyAny>>,
    sidecar_path: Option<PathBuf>,
    registry: Option<PyRef<'_, PyRegistry>>,
    full_node_id: Option<U64>,
    members: Vec<U64>,
    log: Option<Vec<Bound<'_, PyAny>>>,
    log_first_index: Option<U64>,
    engine_applied_index: Option<U64>,
    snapshot_cutover_index: Option<U64>,
    snapshot_path: Option<PathBuf>,
    phase: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let args = inputs(
        encryption_enabled,
        kek,
        sidecar_path,
        full_node_id,
        members,
        log_arg(log, log_first_index)?,
        engine_applied_index,
        snapshot_cutover_index,
        snapshot_path,
        phase,
    )?;
    let found = run(py, args, registry, false)?;
    let refusals: Vec<Py<PyAny>> = found
        .refusals
        .iter()
        .map(|r| refusal_to_py(py, r).into_value(py).into_any())
        .collect();
    let skipped = found
        .skipped
        .into_iter()
        .map(|s| Py::new(py, PySkippedGuard(s)))
        .collect::<PyResult<Vec<_>>>()?;
    STARTUP_DIAGNOSIS.get(py)?.call1((refusals, skipped))
}

/// diagnose_startup, raising the first refusal (Go stops at the first).
///
/// ```pycon
/// >>> ea.check_startup(encryption_enabled=True)
/// Traceback (most recent call last):
///   ...
/// encryption_applier.KEKRequiredWithFlagError: ErrKEKRequiredWithFlag: encryption is on and no KEK is set
///
/// ```
#[pyfunction]
#[pyo3(
    text_signature = "(*, encryption_enabled, kek=None, sidecar_path=None, registry=None, full_node_id=None, members=(), log=None, log_first_index=None, engine_applied_index=None, snapshot_cutover_index=None, snapshot_path=None, phase='pre-bump')"
)]
#[pyo3(signature = (
    *, encryption_enabled, kek=None, sidecar_path=None, registry=None, full_node_id=None,
    members=Vec::new(), log=None, log_first_index=None, engine_applied_index=None, snapshot_cutover_index=None,
    snapshot_path=None,
    phase="pre-bump"
))]
#[allow(clippy::too_many_arguments)] // Python keyword arguments
pub(super) fn check_startup(
    py: Python<'_>,
    encryption_enabled: bool,
    kek: Option<Bound<'_, PyAny>>,
    sidecar_path: Option<PathBuf>,
    registry: Option<PyRef<'_, PyRegistry>>,
    full_node_id: Option<U64>,
    members: Vec<U64>,
    log: Option<Vec<Bound<'_, PyAny>>>,
    log_first_index: Option<U64>,
    engine_applied_index: Option<U64>,
    snapshot_cutover_index: Option<U64>,
    snapshot_path: Option<PathBuf>,
    phase: &str,
) -> PyResult<()> {
    let args = inputs(
        encryption_enabled,
        kek,
        sidecar_path,
        full_node_id,
        members,
        log_arg(log, log_first_index)?,
        engine_applied_index,
        snapshot_cutover_index,
        snapshot_path,
        phase,
    )?;
    match run(py, args, registry, true)?.refusals.first() {
        Some(r) => Err(refusal_to_py(py, r)),
        None => Ok(()),
    }
}

/// A startup guard that did not run: an item of `StartupDiagnosis.skipped`.
#[pyclass(module = "encryption_applier", name = "SkippedGuard", frozen, eq)]
#[derive(PartialEq)]
pub struct PySkippedGuard(Skipped);

#[pymethods]
impl PySkippedGuard {
    /// The guard's number, 0 to 8, in Go's order (see the startup guide).
    #[getter]
    fn guard(&self) -> u8 {
        self.0.guard
    }
    /// The Go error the guard stands for, e.g. "ErrLocalEpochRollback".
    #[getter]
    fn sentinel(&self) -> &'static str {
        self.0.sentinel()
    }
    /// Why it did not run: the input it lacks, or the state in which Go
    /// does not check it.
    #[getter]
    fn reason(&self) -> &'static str {
        self.0.reason
    }
    fn __str__(&self) -> String {
        format!(
            "guard {} ({}) skipped: {}",
            self.0.guard,
            self.0.sentinel(),
            self.0.reason
        )
    }
    fn __repr__(&self) -> String {
        format!(
            "SkippedGuard(guard={}, sentinel={:?}, reason={:?})",
            self.0.guard,
            self.0.sentinel(),
            self.0.reason
        )
    }
}
