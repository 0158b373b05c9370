//! encryption-applier: applies the encryption entries of a Raft-replicated
//! key-value store to a durable, LMDB-backed writer registry, failing
//! closed on anything it cannot apply exactly.
//!
//! The core modules know nothing of Python; `bindings` (feature `python`)
//! is the one place that converts types and maps errors to exceptions.

pub mod applier;
pub mod error;
pub mod kek;
pub mod keystore;
pub mod registry;
pub mod sidecar;
pub mod store;
pub mod wire;

#[cfg(feature = "python")]
mod bindings;

pub use applier::{decide, Applier, ApplierOptions, BatchHalt, Decision, Outcome, Registry};
pub use error::{
    ApplierOpenError, ApplyError, CorruptionKind, KekFileError, KekFileProblem, MalformedPayload,
    MalformedReason, OpenError, PayloadKind, RegistryCorruption, RegistryError, RejectReason,
    SidecarError, StorageError, UnwrapError,
};
pub use kek::{Dek, Kek};
pub use keystore::Keystore;
pub use registry::{RegistryRow, RegistryValue};
pub use sidecar::{Sidecar, SidecarKey};
pub use wire::{Bootstrap, Entry, Purpose, Registration, Rotation};

/// Helpers shared by the unit tests of several modules.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh path under the system temp dir, unique in this test run.
    /// It does not exist yet; `create` makes it a directory.
    pub(crate) fn temp_dir(tag: &str, create: bool) -> PathBuf {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ea-test-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        if create {
            std::fs::create_dir_all(&dir).expect("mkdir");
        }
        dir
    }
}
