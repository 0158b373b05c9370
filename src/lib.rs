//! encryption-applier: applies the encryption entries of a Raft-replicated
//! key-value store to a durable, LMDB-backed writer registry, failing
//! closed on anything it cannot apply exactly.
//!
//! The core modules know nothing of Python; `bindings` (feature `python`)
//! is the one place that converts types and maps errors to exceptions.

pub mod applier;
pub mod error;
pub mod registry;
pub mod store;
pub mod wire;

#[cfg(feature = "python")]
mod bindings;

pub use applier::{decide, Applier, Decision, Outcome, Registry};
pub use error::{
    ApplyError, CorruptionKind, MalformedPayload, MalformedReason, OpenError, PayloadKind,
    RegistryCorruption, RegistryError, StorageError,
};
pub use registry::{RegistryRow, RegistryValue};
pub use wire::{Bootstrap, Entry, Purpose, Registration, Rotation};
