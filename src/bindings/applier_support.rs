//! What the `Applier` handle (`applier.rs`) needs around it: parsing
//! `group_commit=`, the group-commit timer thread, and the report of an
//! unclosed applier whose final commit failed.

use std::path::Path;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use super::errors::apply_error_to_py;
use super::handle::Handle;
use super::py_imports::WARN;
use crate::applier::Applier;
use crate::error::ApplyError;

/// What an `Applier` dropped without `close()` does when its final commit
/// fails, on whatever thread drops it (the group-commit timer may hold the
/// last reference, without the GIL): what an unclosed file does, a
/// `ResourceWarning`, and the error itself (with its `replay_from`) to
/// `sys.unraisablehook`. With the interpreter gone, stderr.
pub(super) fn report_failed_final_commit(path: &Path, error: &ApplyError) {
    let reported = Python::try_attach(|py| {
        let message = format!(
            "unclosed Applier of {}: its final commit failed, so entries it had acknowledged \
             were lost: {error}",
            path.display()
        );
        let warned = WARN.get(py).and_then(|warn| {
            warn.call1((
                message,
                py.get_type::<pyo3::exceptions::PyResourceWarning>(),
                1,
            ))
        });
        if let Err(raised) = warned {
            // A filter made the warning an error: it is reported too.
            raised.write_unraisable(py, None);
        }
        apply_error_to_py(py, error).write_unraisable(py, None);
    });
    if reported.is_none() {
        eprintln!(
            "encryption-applier: an Applier of {} was dropped and its final commit failed: {error}",
            path.display()
        );
    }
}

/// `group_commit=`: an entry count. A bool is refused: `True` is 1 to
/// Python, and reading "turn group commit on" as one entry per commit
/// would silently give the slowest mode; the new mode is named instead.
pub(super) fn group_commit_arg(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<usize>> {
    let Some(value) = value else { return Ok(None) };
    if value.is_instance_of::<pyo3::types::PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "group_commit={} is not an entry count: give the number of entries per commit \
             (group_commit=64), or pipelined=True for write-behind group commit that the disk \
             does not gate (with group_commit=K, the most entries per group; default {})",
            if value.is_truthy()? { "True" } else { "False" },
            crate::applier::DEFAULT_PIPELINE_ENTRIES
        )));
    }
    value.extract::<usize>().map(Some).map_err(|_| {
        PyTypeError::new_err("group_commit must be a positive int (the entries per commit)")
    })
}

/// The delay group commit waits at most when only `group_commit=` is given.
pub(super) const DEFAULT_GROUP_COMMIT_MS: f64 = 10.0;

/// A thread that commits staged entries once the oldest is `delay` old, so
/// a quiet host is durable within about `delay`. It holds the applier
/// weakly (it ends when the applier is dropped or closed) and runs without
/// the GIL.
pub(super) fn start_group_commit_timer(
    handle: &Handle<Applier>,
    delay: std::time::Duration,
) -> PyResult<()> {
    let weak = handle.weak();
    let tick = (delay / 2).max(std::time::Duration::from_millis(1));
    std::thread::Builder::new()
        .name("ea-group-commit".into())
        .spawn(move || loop {
            std::thread::sleep(tick);
            let Some(inner) = weak.upgrade() else { return };
            let mut guard = crate::fsutil::lock(&inner);
            match guard.as_mut() {
                Some(applier) => applier.flush_if_due(),
                None => return,
            }
        })
        .map(drop)
        .map_err(|e| {
            pyo3::exceptions::PyOSError::new_err(format!(
                "cannot start the group-commit timer: {e}"
            ))
        })
}
