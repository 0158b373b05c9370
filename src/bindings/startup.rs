//! `diagnose_startup()` / `check_startup()`: elastickv's startup guards
//! (SPEC §7; core in `crate::startup`), each refusal as its exception
//! class.

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::convert::U64;
use super::errors::{build, field, CoreError};
use super::handle::run_detached;
use super::kek::PyFileKek;
use super::py_imports::ExceptionClass;
use super::registry::PyRegistry;
use crate::startup::{diagnose, Phase, Refusal, RollbackProblem, StartupInput};

fn refusal_to_py(py: Python<'_>, r: &Refusal) -> PyErr {
    let mut fields = vec![("meaning", field(py, r.meaning()))];
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
            fields.push(("problem", field(py, problem.as_str())));
            ExceptionClass::KEKMismatchError
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
            entry_index,
            opcode,
        } => {
            fields.push(("sidecar_applied_index", field(py, *sidecar_applied_index)));
            fields.push(("engine_applied_index", field(py, *engine_applied_index)));
            fields.push(("entry_index", field(py, *entry_index)));
            fields.push(("opcode", field(py, *opcode)));
            ExceptionClass::SidecarBehindRaftLogError
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

/// The arguments both functions take, converted.
struct Inputs {
    encryption_enabled: bool,
    kek: Option<crate::kek::Kek>,
    sidecar_path: Option<PathBuf>,
    full_node_id: Option<u64>,
    members: Vec<u64>,
    log: Vec<(u64, u8)>,
    engine_applied_index: Option<u64>,
    snapshot_cutover_index: Option<u64>,
    snapshot_path: Option<PathBuf>,
    phase: Phase,
}

#[allow(clippy::too_many_arguments)] // Python keyword arguments
fn inputs(
    encryption_enabled: bool,
    kek: Option<PyRef<'_, PyFileKek>>,
    sidecar_path: Option<PathBuf>,
    full_node_id: Option<U64>,
    members: Vec<U64>,
    log: Vec<(U64, Bound<'_, PyBytes>)>,
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
        kek: kek.map(|k| k.kek.clone()),
        sidecar_path,
        full_node_id: full_node_id.map(|f| f.value()),
        members: members.iter().map(U64::value).collect(),
        // Only the opcode of each entry matters; an empty entry has none.
        log: log
            .iter()
            .filter_map(|(index, entry)| entry.as_bytes().first().map(|op| (index.value(), *op)))
            .collect(),
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
) -> PyResult<Vec<Refusal>> {
    let diagnose_with =
        move |view: Option<&crate::view::Registry>| -> Result<Vec<Refusal>, CoreError> {
            let input = StartupInput {
                encryption_enabled: args.encryption_enabled,
                kek: args.kek.as_ref(),
                sidecar_path: args.sidecar_path.as_deref(),
                full_node_id: args.full_node_id,
                members: &args.members,
                log: &args.log,
                engine_applied_index: args.engine_applied_index,
                snapshot_cutover_index: args.snapshot_cutover_index,
                snapshot_path: args.snapshot_path.as_deref(),
                phase: Some(args.phase),
            };
            let lookup = view.map(|v| v as &dyn crate::startup::RegistryLookup);
            Ok(diagnose(&input, lookup, first_only)?)
        };
    match registry {
        Some(view) => view.with_view(py, |v| diagnose_with(Some(v))),
        None => run_detached(py, || diagnose_with(None)),
    }
}

/// Every startup refusal of elastickv's guards, in Go's order (empty: the
/// node may start). Each is a StartupRefusedError subclass with the Go
/// error's name (`sentinel`), what it means (`meaning`) and its fields.
///
/// Guard 0 compares the sidecar's Raft cutover with the restored
/// snapshot's: `snapshot_path=` (a `.snap` or `.fsm` file, or the Raft
/// group's data directory, its newest snapshot chosen as Go does) has it
/// read the snapshot, `snapshot_cutover_index=` gives the number (not
/// both). A snapshot Go cannot read raises `SnapshotError`.
#[pyfunction]
#[pyo3(signature = (
    *, encryption_enabled, kek=None, sidecar_path=None, registry=None, full_node_id=None,
    members=Vec::new(), log=Vec::new(), engine_applied_index=None, snapshot_cutover_index=None,
    snapshot_path=None,
    phase="pre-bump"
))]
#[allow(clippy::too_many_arguments)] // Python keyword arguments
pub(super) fn diagnose_startup(
    py: Python<'_>,
    encryption_enabled: bool,
    kek: Option<PyRef<'_, PyFileKek>>,
    sidecar_path: Option<PathBuf>,
    registry: Option<PyRef<'_, PyRegistry>>,
    full_node_id: Option<U64>,
    members: Vec<U64>,
    log: Vec<(U64, Bound<'_, PyBytes>)>,
    engine_applied_index: Option<U64>,
    snapshot_cutover_index: Option<U64>,
    snapshot_path: Option<PathBuf>,
    phase: &str,
) -> PyResult<Vec<Py<PyAny>>> {
    let args = inputs(
        encryption_enabled,
        kek,
        sidecar_path,
        full_node_id,
        members,
        log,
        engine_applied_index,
        snapshot_cutover_index,
        snapshot_path,
        phase,
    )?;
    let refusals = run(py, args, registry, false)?;
    Ok(refusals
        .iter()
        .map(|r| refusal_to_py(py, r).into_value(py).into_any())
        .collect())
}

/// diagnose_startup, raising the first refusal (Go stops at the first).
#[pyfunction]
#[pyo3(signature = (
    *, encryption_enabled, kek=None, sidecar_path=None, registry=None, full_node_id=None,
    members=Vec::new(), log=Vec::new(), engine_applied_index=None, snapshot_cutover_index=None,
    snapshot_path=None,
    phase="pre-bump"
))]
#[allow(clippy::too_many_arguments)] // Python keyword arguments
pub(super) fn check_startup(
    py: Python<'_>,
    encryption_enabled: bool,
    kek: Option<PyRef<'_, PyFileKek>>,
    sidecar_path: Option<PathBuf>,
    registry: Option<PyRef<'_, PyRegistry>>,
    full_node_id: Option<U64>,
    members: Vec<U64>,
    log: Vec<(U64, Bound<'_, PyBytes>)>,
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
        log,
        engine_applied_index,
        snapshot_cutover_index,
        snapshot_path,
        phase,
    )?;
    match run(py, args, registry, true)?.first() {
        Some(r) => Err(refusal_to_py(py, r)),
        None => Ok(()),
    }
}
