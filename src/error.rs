//! The aggregate errors of the applier, and the refusals of the rules.
//! Each single-purpose error lives beside the module that raises it
//! (`wire`, `registry`, `store`, `kek`, `sidecar`); this module only
//! gathers them, and none of those modules depends on it.
//!
//! Every variant carries the ids a person needs to act on it, so the Python
//! layer can expose them as exception attributes instead of parsing
//! messages. Messages follow the SPEC style `dek_id=7 full_node_id=0x…`.

use std::fmt;

use crate::kek::UnwrapError;
use crate::registry::RegistryCorruption;
use crate::sidecar::SidecarError;
use crate::store::{OpenError, RegistryError, StorageError};
use crate::wire::{MalformedPayload, PayloadKind, Purpose};

/// Why a well-formed bootstrap or rotation is refused on its meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    /// Bootstrap names one id for both purposes.
    SameIds { dek_id: u32 },
    /// Id 0 is reserved ("no key").
    ReservedKeyId { field: &'static str },
    /// A bootstrap batch row names a DEK that is neither of the two.
    ForeignBatchRow {
        index: usize,
        dek_id: u32,
        storage_dek_id: u32,
        raft_dek_id: u32,
    },
    /// A rotation's proposer registers under another DEK than it rotates to.
    ProposerDekMismatch { dek_id: u32, proposer_dek_id: u32 },
    /// The id is already a key of the other purpose.
    PurposeMismatch {
        dek_id: u32,
        existing: Purpose,
        incoming: Purpose,
    },
    /// A Raft envelope cutover with no Raft index (or index 0): its index
    /// is the cutover point, so it cannot be applied without one.
    CutoverWithoutIndex { dek_id: u32 },
    /// A cutover whose purpose is not its sub-tag's layer.
    CutoverPurpose {
        dek_id: u32,
        sub_tag: u8,
        purpose: Purpose,
    },
    /// A cutover carrying a wrapped key (it installs none).
    CutoverWrapped { dek_id: u32, len: usize },
}

impl RejectReason {
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::SameIds { .. } => "same_ids",
            RejectReason::ReservedKeyId { .. } => "reserved_key_id",
            RejectReason::ForeignBatchRow { .. } => "foreign_batch_row",
            RejectReason::ProposerDekMismatch { .. } => "proposer_dek_mismatch",
            RejectReason::PurposeMismatch { .. } => "purpose_mismatch",
            RejectReason::CutoverWithoutIndex { .. } => "cutover_without_index",
            RejectReason::CutoverPurpose { .. } => "cutover_purpose",
            RejectReason::CutoverWrapped { .. } => "cutover_wrapped",
        }
    }

    /// The DEK id the refusal is about.
    pub fn dek_id(&self) -> Option<u32> {
        match self {
            RejectReason::SameIds { dek_id }
            | RejectReason::ForeignBatchRow { dek_id, .. }
            | RejectReason::ProposerDekMismatch { dek_id, .. }
            | RejectReason::PurposeMismatch { dek_id, .. }
            | RejectReason::CutoverWithoutIndex { dek_id }
            | RejectReason::CutoverPurpose { dek_id, .. }
            | RejectReason::CutoverWrapped { dek_id, .. } => Some(*dek_id),
            RejectReason::ReservedKeyId { .. } => Some(0),
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::SameIds { dek_id } => write!(
                f,
                "storage_dek_id and raft_dek_id are both {dek_id}; they must differ"
            ),
            RejectReason::ReservedKeyId { field } => {
                write!(f, "{field}=0 is reserved (0 means no key)")
            }
            RejectReason::ForeignBatchRow {
                index,
                dek_id,
                storage_dek_id,
                raft_dek_id,
            } => write!(
                f,
                "batch_registry[{index}] names dek_id={dek_id}, which is neither \
                 storage_dek_id={storage_dek_id} nor raft_dek_id={raft_dek_id}"
            ),
            RejectReason::ProposerDekMismatch {
                dek_id,
                proposer_dek_id,
            } => write!(
                f,
                "rotation to dek_id={dek_id} carries a proposer registration for dek_id={proposer_dek_id}"
            ),
            RejectReason::PurposeMismatch {
                dek_id,
                existing,
                incoming,
            } => write!(
                f,
                "dek_id={dek_id} is already a {} key; it cannot become a {} key",
                existing.as_str(),
                incoming.as_str()
            ),
            RejectReason::CutoverWithoutIndex { dek_id } => write!(
                f,
                "enable-raft-envelope for dek_id={dek_id} needs its Raft index (the cutover point); \
                 apply it with index="
            ),
            RejectReason::CutoverPurpose {
                dek_id,
                sub_tag,
                purpose,
            } => write!(
                f,
                "sub_tag=0x{sub_tag:02x} for dek_id={dek_id} carries purpose {}; enable-storage-envelope \
                 must carry storage and enable-raft-envelope raft",
                purpose.as_str()
            ),
            RejectReason::CutoverWrapped { dek_id, len } => write!(
                f,
                "an envelope cutover for dek_id={dek_id} carries a {len}-byte wrapped key; it must carry none"
            ),
        }
    }
}

/// Why an entry was not applied. Every variant is a halt: the replica must
/// stop applying, and nothing of the entry was written.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{kind} entry (opcode 0x{opcode:02x}) needs a KEK and none is configured; nothing was written")]
    KekNotConfigured { opcode: u8, kind: PayloadKind },
    #[error("local epoch rollback: dek_id={dek_id} full_node_id=0x{full_node_id:x} last_seen={last_seen} incoming={incoming}")]
    LocalEpochRollback {
        dek_id: u32,
        full_node_id: u64,
        last_seen: u16,
        incoming: u16,
    },
    #[error("node id collision: dek_id={dek_id} node_id16=0x{node_id16:04x} existing_full_node_id=0x{existing_full_node_id:x} incoming_full_node_id=0x{incoming_full_node_id:x}")]
    NodeIdCollision {
        dek_id: u32,
        node_id16: u16,
        existing_full_node_id: u64,
        incoming_full_node_id: u64,
    },
    #[error(transparent)]
    Malformed(#[from] MalformedPayload),
    #[error(transparent)]
    RegistryCorruption(#[from] RegistryCorruption),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot unwrap the {} key dek_id={dek_id}: {problem}", .purpose.as_str())]
    KekUnwrap {
        dek_id: u32,
        purpose: Purpose,
        problem: UnwrapError,
    },
    #[error("key conflict: dek_id={dek_id} is already loaded with different key bytes")]
    KeyConflict { dek_id: u32 },
    #[error("already bootstrapped — use rotation: active storage_dek_id={active_storage} raft_dek_id={active_raft}, incoming storage_dek_id={storage_dek_id} raft_dek_id={raft_dek_id} (only an exact replay is accepted)")]
    AlreadyBootstrapped {
        active_storage: u32,
        active_raft: u32,
        storage_dek_id: u32,
        raft_dek_id: u32,
    },
    #[error("not bootstrapped: rotation to dek_id={dek_id} before any bootstrap (no sidecar with active keys)")]
    NotBootstrapped { dek_id: u32 },
    #[error("payload rejected: {0}")]
    PayloadRejected(RejectReason),
    #[error(transparent)]
    Sidecar(#[from] SidecarError),
    /// The host's `on_raft_cutover` hook failed; nothing was written.
    #[error("the on_raft_cutover hook failed for cutover_index={cutover_index} dek_id={dek_id}: {failure}; nothing was written")]
    CutoverHook {
        cutover_index: u64,
        dek_id: u32,
        failure: HookError,
    },
}

/// What a host hook returned instead of success: its own error, kept
/// whole so the bindings can chain it (a Python exception stays one).
#[derive(Debug, Clone)]
pub struct HookError(pub std::sync::Arc<dyn std::error::Error + Send + Sync>);

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Why an applier could not be constructed.
#[derive(Debug, thiserror::Error)]
pub enum ApplierOpenError {
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Loading an existing sidecar failed: an invalid sidecar, or a key
    /// that does not unwrap with this KEK.
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

impl From<SidecarError> for ApplierOpenError {
    fn from(e: SidecarError) -> Self {
        ApplierOpenError::Apply(ApplyError::Sidecar(e))
    }
}

impl From<RegistryError> for ApplyError {
    fn from(err: RegistryError) -> Self {
        match err {
            RegistryError::Corruption(c) => ApplyError::RegistryCorruption(c),
            RegistryError::Storage(s) => ApplyError::Storage(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_message_names_every_id_in_spec_style() {
        let err = ApplyError::LocalEpochRollback {
            dek_id: 7,
            full_node_id: 0xabcd0001,
            last_seen: 5,
            incoming: 4,
        };
        assert!(err
            .to_string()
            .contains("dek_id=7 full_node_id=0xabcd0001 last_seen=5 incoming=4"));
    }

    #[test]
    fn collision_message_names_both_full_ids() {
        let err = ApplyError::NodeIdCollision {
            dek_id: 1,
            node_id16: 1,
            existing_full_node_id: 0xaaaa0001,
            incoming_full_node_id: 0xbbbb0001,
        };
        let msg = err.to_string();
        assert!(msg.contains("node_id16=0x0001"), "{msg}");
        assert!(msg.contains("existing_full_node_id=0xaaaa0001"), "{msg}");
        assert!(msg.contains("incoming_full_node_id=0xbbbb0001"), "{msg}");
    }
}
