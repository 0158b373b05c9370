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
