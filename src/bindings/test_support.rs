//! `encryption_applier._native.test_support`: hooks for the package's own
//! tests (as cryptography ships `_rust.test_support`). Nothing here is
//! part of the public API, and no production handle has these methods.

use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::applier::PyApplier;
use super::registry::PyRegistry;
use crate::applier::testing::{self, FaultAction, FaultPoint};

/// Stops the next bootstrap/rotation of `applier` at `point` (one of
/// "after_unwrap", "after_keystore_install", "after_sidecar_write",
/// "before_registry_commit") by raising a StorageError, or with
/// action="abort" by aborting the process as a crash would. `None`
/// disarms.
#[pyfunction]
#[pyo3(signature = (applier, point, action="raise"))]
pub(super) fn set_fault(
    py: Python<'_>,
    applier: PyRef<'_, PyApplier>,
    point: Option<&str>,
    action: &str,
) -> PyResult<()> {
    let fault = match point {
        None => None,
        Some(name) => {
            let point = FaultPoint::from_name(name)
                .ok_or_else(|| PyValueError::new_err(format!("unknown fault point {name:?}")))?;
            let action = match action {
                "raise" => FaultAction::Fail,
                "abort" => FaultAction::Abort,
                other => {
                    return Err(PyValueError::new_err(format!(
                        "unknown fault action {other:?}"
                    )))
                }
            };
            Some((point, action))
        }
    };
    applier.inner.with(py, |a| {
        testing::set_fault(a, fault);
        Ok(())
    })
}

/// Holds the lock of `handle` (an `Applier` or a `Registry`) for
/// `seconds` (without the GIL), as a long call on another thread would:
/// lets tests prove that other calls wait for it without freezing the
/// interpreter.
#[pyfunction]
pub(super) fn hold_lock(py: Python<'_>, handle: &Bound<'_, PyAny>, seconds: f64) -> PyResult<()> {
    let pause = Duration::try_from_secs_f64(seconds)
        .map_err(|e| PyValueError::new_err(format!("seconds={seconds}: {e}")))?;
    if let Ok(view) = handle.cast::<PyRegistry>() {
        return view.get().with_view(py, |_| {
            std::thread::sleep(pause);
            Ok(())
        });
    }
    let applier = handle.cast::<PyApplier>()?;
    applier.get().inner.with(py, |_| {
        std::thread::sleep(pause);
        Ok(())
    })
}
