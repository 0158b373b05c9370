//! `encryption_applier._native.test_support`: hooks for the package's own
//! tests (as cryptography ships `_rust.test_support`). Nothing here is
//! part of the public API, and no production handle has these methods.

use std::time::Duration;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::applier::PyApplier;
use super::convert::{bytes_arg, U32, U64};
use super::envelope::{PyEnvelope, PyNonce};
use super::errors::{apply_error_to_py, kek_exception};
use super::handle::run_detached;
use super::kek::kek_arg;
use super::kek::PyFileKek;
use super::keystore::PyKeystore;
use super::registry::PyRegistry;
use crate::applier::testing::{self, FaultAction, FaultPoint};
use crate::error::ApplyError;
use crate::kek::Dek;
use crate::wire::Purpose;

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

/// Closes `applier` as the death of its process would: the entries group
/// commit staged and did not commit are dropped, not flushed (committed
/// ones stay, as a kill leaves them). Returns how many were dropped.
/// RuntimeError for a pipelined applier.
#[pyfunction]
pub(super) fn crash(py: Python<'_>, applier: PyRef<'_, PyApplier>) -> PyResult<usize> {
    let dropped = applier
        .inner
        .with(py, |a| Ok(testing::discard_staged(a)))?
        .map_err(PyRuntimeError::new_err)?;
    applier.inner.close(py)?;
    Ok(dropped)
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

/// `kek.wrap(dek)` as the core calls a KEK (without the GIL, through its
/// interface): what a Stage 9 rewrap would get. A failure is a
/// `RuntimeError` naming the KEK, with the KEK's exception as its cause.
#[pyfunction]
pub(super) fn kek_wrap<'py>(
    py: Python<'py>,
    kek: &Bound<'py, PyAny>,
    dek: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let kek = kek_arg(kek)?;
    let dek = Dek::from_slice(&bytes_arg(dek, "dek")?)
        .map_err(|len| PyValueError::new_err(format!("a DEK is 32 bytes, got {len}")))?;
    match run_detached(py, || Ok(kek.wrap(&dek)))? {
        Ok(wrapped) => Ok(PyBytes::new(py, &wrapped)),
        Err(failure) => {
            let err = PyRuntimeError::new_err(format!(
                "the KEK {} failed to wrap a DEK: {failure}",
                failure.kek
            ));
            match kek_exception(py, &failure) {
                Some(cause) if !cause.is_instance_of::<pyo3::exceptions::PyException>(py) => {
                    Err(cause)
                }
                cause => {
                    err.set_cause(py, cause);
                    Err(err)
                }
            }
        }
    }
}

/// `kek.unwrap(wrapped)` as the core calls a KEK, failing as an apply
/// would for key `dek_id` (a storage key).
#[pyfunction]
pub(super) fn kek_unwrap<'py>(
    py: Python<'py>,
    kek: &Bound<'py, PyAny>,
    wrapped: &Bound<'py, PyAny>,
    dek_id: u32,
) -> PyResult<Bound<'py, PyBytes>> {
    let kek = kek_arg(kek)?;
    let wrapped = bytes_arg(wrapped, "wrapped")?.into_owned();
    match run_detached(py, || Ok(kek.unwrap(&wrapped)))? {
        Ok(dek) => Ok(PyBytes::new(py, dek.expose())),
        Err(problem) => Err(apply_error_to_py(
            py,
            &ApplyError::KekUnwrap {
                dek_id,
                purpose: Purpose::Storage,
                problem,
            },
        )),
    }
}

/// The debug counts of a pipelined applier's caller side, as a dict
/// (`lookups`, `store_lookups`, `cache_hits`, `snapshots`, `commits`,
/// `committed_entries`, `commit_micros`, `failure_pending`, `lock_busy`);
/// None in the other
/// modes. Lets tests prove that staged lookups do not begin a read
/// transaction per entry.
#[pyfunction]
pub(super) fn pipeline_counters(
    py: Python<'_>,
    applier: PyRef<'_, PyApplier>,
) -> PyResult<Option<std::collections::BTreeMap<&'static str, u64>>> {
    let counters = applier.inner.with(py, |a| Ok(a.pipeline_counters()))?;
    Ok(counters.map(|c| {
        std::collections::BTreeMap::from([
            ("lookups", c.lookups),
            ("store_lookups", c.store_lookups),
            ("cache_hits", c.cache_hits),
            ("committed_entries", c.committed_entries),
            ("commit_micros", c.commit_micros),
            ("snapshots", c.snapshots),
            ("commits", c.commits),
            ("failure_pending", c.failure_pending),
            ("lock_busy", c.lock_busy),
        ])
    }))
}

/// Makes the group-commit timer of `applier` hold it (a strong reference,
/// not its lock) for `seconds` on its next tick, and waits until it does:
/// True then (False after 5 s, or for an applier without a timer). Lets a
/// test drop the Python object while the timer holds the last reference,
/// so that the applier is dropped on the timer's thread.
#[pyfunction]
pub(super) fn hold_timer(
    py: Python<'_>,
    applier: PyRef<'_, PyApplier>,
    seconds: f64,
) -> PyResult<bool> {
    let pause = Duration::try_from_secs_f64(seconds)
        .map_err(|e| PyValueError::new_err(format!("seconds={seconds}: {e}")))?;
    let Some(hold) = applier.timer.clone() else {
        return Ok(false);
    };
    drop(applier);
    Ok(py.detach(|| hold.ask(pause, Duration::from_secs(5))))
}

/// `kek.wrap(dek)` under the 12-byte `nonce` given, so a hypothesis
/// example replays byte for byte (`encryption_applier.testing`'s keyed
/// streams). Here and not on `FileKek`: no public call takes a nonce.
#[pyfunction]
pub(super) fn wrap_with_nonce<'py>(
    py: Python<'py>,
    kek: PyRef<'py, PyFileKek>,
    dek: &Bound<'py, PyAny>,
    nonce: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    kek.wrap_with_nonce(py, dek, nonce)
}

/// `keystore`'s key `key_id` seals a storage value under `nonce` (a
/// `Nonce`), as elastickv writes one: for the testing package's envelope
/// writers, which form nonces as Go's nonce factory does.
#[pyfunction]
#[pyo3(signature = (keystore, key_id, nonce, plaintext, user_key, commit_ts, expire_at=U64::ZERO))]
#[allow(clippy::too_many_arguments)]
pub(super) fn seal_storage(
    py: Python<'_>,
    keystore: PyRef<'_, PyKeystore>,
    key_id: U32,
    nonce: PyRef<'_, PyNonce>,
    plaintext: &Bound<'_, PyAny>,
    user_key: &Bound<'_, PyAny>,
    commit_ts: U64,
    expire_at: U64,
) -> PyResult<PyEnvelope> {
    let plain = bytes_arg(plaintext, "plaintext")?.into_owned();
    let key = bytes_arg(user_key, "user_key")?.into_owned();
    let aad = (key.as_slice(), commit_ts.value(), expire_at.value());
    keystore.seal(py, key_id.value(), nonce.0, &plain, Some(aad))
}

/// `keystore`'s key `key_id` seals a Raft entry under `nonce` (as
/// `seal_storage`).
#[pyfunction]
pub(super) fn seal_raft(
    py: Python<'_>,
    keystore: PyRef<'_, PyKeystore>,
    key_id: U32,
    nonce: PyRef<'_, PyNonce>,
    plaintext: &Bound<'_, PyAny>,
) -> PyResult<PyEnvelope> {
    let plain = bytes_arg(plaintext, "plaintext")?.into_owned();
    keystore.seal(py, key_id.value(), nonce.0, &plain, None)
}
