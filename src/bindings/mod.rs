//! The Python module `encryption_applier._native`: type conversion and the
//! mapping of core errors to exceptions. No rules live here. The exception
//! classes themselves are declared in Python
//! (`encryption_applier/exceptions.py`).
//!
//! One job per file:
//! - `mod.rs`: the declarative `#[pymodule] _native`, its constants and
//!   the `Purpose` enum.
//! - `applier`: `Applier`, the one writer of a registry.
//! - `codec`: the module-level codec and node-id functions.
//! - `convert`: Python values to core types and back.
//! - `envelope`: `Envelope`, `Nonce`, `NonceFinding`, `audit_nonces()`.
//! - `errors`: core errors to exceptions (`CoreError`, the `*_to_py`).
//! - `handle`: `Handle` and `run_detached`, how every call enters the core.
//! - `kek`: `FileKek`, and a KEK written in Python behind the core's
//!   interface (`kek_arg` takes either).
//! - `keystore`: `Keystore`, an applier's DEKs (imports `applier`, and
//!   `applier` imports it: the one cycle, the Python object graph's).
//! - `payloads`: `Registration`, `Bootstrap`, `Rotation`.
//! - `py_imports`: every Python object Rust uses, looked up once.
//! - `registration`: `registration_decision()`, `RegistrationDecision`,
//!   `RegistrationCheck`.
//! - `registry`: `RegistryRow`, `Registry`, `RegistryDiff`.
//! - `resync`: `SidecarResync`, what `Applier.resync_sidecar()` did.
//! - `sidecar`: `Sidecar`, `SidecarKey`, `read_sidecar()`,
//!   `bump_local_epoch()`, `prepare_epochs()`, `pinned_epochs()`.
//! - `snapshot`: `SnapshotHeader`, `read_snapshot_header()`,
//!   `newest_snapshot()`.
//! - `startup`: `diagnose_startup()` (its `StartupDiagnosis` is built in
//!   Python, with `SkippedGuard`s), `check_startup()`.
//! - `status`: `sidecar_state()`, `resync_sidecar_response()`,
//!   `SidecarStateReport`, `ResyncSidecarResponse`, `StatusExtras`.
//! - `test_support`: `_native.test_support`, hooks for the package's tests.
//! - `verify`: `verify()`, `PageDamage`, `VerifyReport`.
//! - `write_behind`: the `Applier`'s group-commit argument and timer
//!   thread, and the report of a dropped applier's failed final commit.

mod applier;
mod codec;
mod convert;
mod envelope;
mod errors;
mod handle;
mod kek;
mod keystore;
mod payloads;
mod py_imports;
mod registration;
mod registry;
mod resync;
mod sidecar;
mod snapshot;
mod startup;
mod status;
mod test_support;
mod verify;
mod write_behind;

use pyo3::prelude::*;

/// The native core of `encryption_applier`: the classes and functions the
/// package re-exports. Import them from `encryption_applier`.
#[pymodule]
mod _native {
    use pyo3::prelude::*;
    use pyo3::types::{IntoPyDict, PyBytes};

    use super::py_imports::{INT_ENUM, PURPOSE_ENUM};
    use crate::registry as codec;
    use crate::wire::{self, Purpose};

    #[pymodule_export]
    use super::applier::PyApplier;
    #[pymodule_export]
    use super::codec::{
        decode_entry, decode_registry_key, decode_registry_value, derive_node_id,
        encode_registry_value, find_node_id_collisions, hex_ids, is_encryption_opcode, node_id16,
        registry_key,
    };
    #[pymodule_export]
    use super::envelope::{audit_nonces, PyEnvelope, PyNonce, PyNonceFinding};
    #[pymodule_export]
    use super::kek::PyFileKek;
    #[pymodule_export]
    use super::keystore::PyKeystore;
    #[pymodule_export]
    use super::payloads::{PyBootstrap, PyRegistration, PyRotation};
    #[pymodule_export]
    use super::registration::{registration_decision, PyRegistrationCheck, PyRegistrationDecision};
    #[pymodule_export]
    use super::registry::{PyRegistry, PyRegistryDiff, PyRegistryRow};
    #[pymodule_export]
    use super::resync::PySidecarResync;
    #[pymodule_export]
    use super::sidecar::{
        bump_local_epoch, pinned_epochs, prepare_epochs, read_sidecar, PySidecar, PySidecarKey,
    };
    #[pymodule_export]
    use super::snapshot::{newest_snapshot, read_snapshot_header, PySnapshotHeader};
    #[pymodule_export]
    use super::startup::{check_startup, diagnose_startup, PySkippedGuard};
    #[pymodule_export]
    use super::status::{
        resync_sidecar_response, sidecar_state, PyResyncSidecarResponse, PySidecarStateReport,
        PyStatusExtras,
    };
    #[pymodule_export]
    use super::test_support_module;
    #[pymodule_export]
    use super::verify::{verify, PyPageDamage, PyVerifyReport};

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        let py = m.py();
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;

        let purpose = INT_ENUM.get(py)?.call(
            (
                "Purpose",
                [
                    ("STORAGE", Purpose::Storage as u8),
                    ("RAFT", Purpose::Raft as u8),
                ],
            ),
            Some(&[("module", "encryption_applier")].into_py_dict(py)?),
        )?;
        purpose.setattr(
            "__doc__",
            "What a DEK encrypts: `STORAGE` (1), values in the storage engine; `RAFT` (2), Raft log entries.",
        )?;
        m.add("Purpose", &purpose)?;
        let _ = PURPOSE_ENUM.set(py, purpose.unbind());

        m.add("OP_REGISTRATION", wire::OP_REGISTRATION)?;
        m.add("OP_BOOTSTRAP", wire::OP_BOOTSTRAP)?;
        m.add("OP_ROTATION", wire::OP_ROTATION)?;
        m.add("WIRE_VERSION", wire::WIRE_VERSION)?;
        m.add("ROTATE_DEK", wire::ROTATE_DEK)?;
        m.add("ENABLE_STORAGE_ENVELOPE", wire::ENABLE_STORAGE_ENVELOPE)?;
        m.add("ENABLE_RAFT_ENVELOPE", wire::ENABLE_RAFT_ENVELOPE)?;
        m.add("MAX_BOOTSTRAP_BATCH", wire::MAX_BOOTSTRAP_BATCH)?;
        m.add("MAX_SIDECAR_BYTES", crate::sidecar::MAX_SIDECAR_BYTES)?;
        m.add("REGISTRY_PREFIX", PyBytes::new(py, codec::REGISTRY_PREFIX))?;
        m.add(
            "SIDECAR_PROBLEM_CODES",
            pyo3::types::PyTuple::new(py, crate::sidecar::SidecarProblem::CODES)?,
        )?;
        Ok(())
    }
}

/// Hooks for the package's own tests (`_native.test_support`); not part
/// of the public API.
#[pymodule]
#[pyo3(name = "test_support")]
fn test_support_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(test_support::set_fault, m)?)?;
    m.add_function(wrap_pyfunction!(test_support::hold_lock, m)?)?;
    m.add_function(wrap_pyfunction!(test_support::kek_wrap, m)?)?;
    m.add_function(wrap_pyfunction!(test_support::kek_unwrap, m)?)?;
    m.add_function(wrap_pyfunction!(test_support::pipeline_counters, m)?)?;
    m.add_function(wrap_pyfunction!(test_support::hold_timer, m)?)?;
    m.add_function(wrap_pyfunction!(test_support::crash, m)?)?;
    m.add_function(wrap_pyfunction!(test_support::wrap_with_nonce, m)?)?;
    m.add_function(wrap_pyfunction!(test_support::seal_storage, m)?)?;
    m.add_function(wrap_pyfunction!(test_support::seal_raft, m)?)?;
    Ok(())
}
