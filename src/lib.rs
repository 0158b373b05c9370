//! encryption-applier: applies the encryption entries of a Raft-replicated
//! key-value store to a durable, LMDB-backed writer registry, failing
//! closed on anything it cannot apply exactly.
//!
//! The core modules know nothing of Python; `bindings` (feature `python`)
//! is the one place that converts types and maps errors to exceptions.
//! Every module, with the SPEC section it implements:
//!
//! - [`wire`]: the entry codec (§2), `MalformedPayload`;
//! - [`registry`]: the row key/value codec (§3), `RegistryCorruption`;
//! - [`rules`]: pure functions: the four-case rule (`decide`), the
//!   bootstrap, rotation and cutover checks (`check_cutover`,
//!   `cutover_branch`);
//! - [`store`]: the LMDB environment, transaction guards, the writer lock,
//!   the raw FFI (`store/ffi.rs`) and the page verifier (`store::verify`);
//! - [`applier`]: applies entries through the rules into the store; keyed
//!   entries in `applier/keys.rs`, envelope cutovers in
//!   `applier/cutover.rs`, group commit in `applier/group.rs`, pipelined write-behind in
//!   `applier/pipeline/`;
//! - [`view`]: the read-only, snapshot-pinned `Registry`, and its
//!   summaries (`view::summary`: stats, digest, diff, columns);
//! - [`kek`]: the KEK interface ([`KekBackend`]), the file KEK and
//!   AES-256-GCM wrapping (§5), the unwrap cache;
//! - [`keystore`]: DEK id → key, fingerprints;
//! - [`sidecar`]: `keys.json` (§5): strict reader, Go's exact writer,
//!   typed `SidecarProblem`s, local epochs;
//! - [`envelope`]: storage and Raft envelopes (§7), the nonce audit;
//! - [`nodeid`]: node ids, `node_id16` collisions, bootstrap batches (§7);
//! - [`snapshot`]: elastickv's FSM snapshots read as Go reads them (the
//!   header's Raft cutover, the newest snapshot of a data directory), for
//!   start-up guard 0 (§7);
//! - [`startup`]: elastickv's start-up guards, in Go's order (§7);
//! - [`raftlog`]: a contiguous run of the Raft log as a host gives it,
//!   which can prove it covers a range (the guard against a sidecar behind
//!   the log);
//! - [`registration`]: the start-up writer registration decision (§7):
//!   what Go proposes, skips or refuses before it serves;
//! - [`status`]: elastickv's `GetSidecarState` report and the leader's
//!   `ResyncSidecar` response, with their JSON (§7);
//! - [`error`]: the aggregate errors (`ApplyError`, `ApplierOpenError`)
//!   and the rules' refusals (`RejectReason`);
//! - [`fsutil`]: the one durable owner-only file write, small helpers;
//! - [`process`]: this process's id, cached (reset in a forked child) for
//!   the fork checks.

pub mod applier;
pub mod envelope;
pub mod error;
pub mod fsutil;
pub mod kek;
pub mod keystore;
pub mod nodeid;
pub mod process;
pub mod raftlog;
pub mod registration;
pub mod registry;
pub mod rules;
pub mod sidecar;
pub mod snapshot;
pub mod startup;
pub mod status;
pub mod store;
pub mod view;
pub mod wire;

#[cfg(feature = "python")]
mod bindings;

pub use applier::{Applier, ApplierOptions, BatchHalt};
pub use error::{ApplierOpenError, ApplyError, RejectReason};
pub use kek::{
    Dek, FileKek, KekBackend, KekFailure, KekFileError, KekFileProblem, SharedKek, UnwrapCache,
    UnwrapError,
};
pub use keystore::Keystore;
pub use registry::{CorruptionKind, RegistryCorruption, RegistryRow, RegistryValue};
pub use rules::{decide, Decision, Outcome};
pub use sidecar::{Sidecar, SidecarError, SidecarKey};
pub use store::{OpenError, RegistryError, StorageError};
pub use view::Registry;
pub use wire::{
    Bootstrap, Entry, MalformedPayload, MalformedReason, PayloadKind, Purpose, Registration,
    Rotation,
};

/// Helpers shared by the unit tests of several modules.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    use crate::registry::RegistryRow;
    use crate::wire::Registration;

    pub(crate) fn reg(dek_id: u32, full_node_id: u64, local_epoch: u16) -> Registration {
        Registration {
            dek_id,
            full_node_id,
            local_epoch,
        }
    }

    /// The row `r` makes with the given first/last epochs.
    pub(crate) fn row_of(r: &Registration, first: u16, last: u16) -> RegistryRow {
        RegistryRow {
            dek_id: r.dek_id,
            node_id16: r.node_id16(),
            full_node_id: r.full_node_id,
            first_seen_local_epoch: first,
            last_seen_local_epoch: last,
        }
    }

    /// A scratch path under the system temp dir, unique in this test run,
    /// removed with everything under it when dropped so that test runs leave
    /// nothing behind in /tmp.
    pub(crate) struct ScratchPath(PathBuf);

    impl std::ops::Deref for ScratchPath {
        type Target = std::path::Path;
        fn deref(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl AsRef<std::path::Path> for ScratchPath {
        fn as_ref(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for ScratchPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// A fresh [`ScratchPath`]; nothing exists there yet.
    pub(crate) fn fresh_path(tag: &str) -> ScratchPath {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ea-test-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        ScratchPath(dir)
    }

    /// [`fresh_path`], created as an empty directory.
    pub(crate) fn fresh_dir(tag: &str) -> ScratchPath {
        let dir = fresh_path(tag);
        std::fs::create_dir_all(&*dir).expect("mkdir");
        dir
    }
}
