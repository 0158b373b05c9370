//! Every error the core can return, as data.
//!
//! Each variant carries the ids a person needs to act on it, so the Python
//! layer can expose them as exception attributes instead of parsing
//! messages. Messages follow the SPEC style `dek_id=7 full_node_id=0x…`.

use std::fmt;
use std::path::PathBuf;

/// Which structure a decoder was reading when it gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadKind {
    /// The `opcode ‖ payload` envelope itself.
    Entry,
    Registration,
    Bootstrap,
    Rotation,
}

impl PayloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadKind::Entry => "entry",
            PayloadKind::Registration => "registration",
            PayloadKind::Bootstrap => "bootstrap",
            PayloadKind::Rotation => "rotation",
        }
    }
}

impl fmt::Display for PayloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why bytes (or a payload object) are not a valid encryption payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedReason {
    #[error("empty entry: no opcode byte")]
    EmptyEntry,
    #[error("opcode 0x{0:02x} is reserved for encryption and must not be applied")]
    ReservedOpcode(u8),
    #[error("opcode 0x{0:02x} is not an encryption opcode (0x03..=0x07)")]
    NotEncryptionOpcode(u8),
    #[error("wire version 0x{0:02x}, expected 0x01")]
    WrongVersion(u8),
    #[error("truncated at offset {offset}: {field} needs {needed} bytes, {available} left")]
    Truncated {
        field: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error(
        "length prefix of {field} at offset {offset} claims {claimed} bytes, {available} left"
    )]
    LengthOverrun {
        field: &'static str,
        offset: usize,
        claimed: u32,
        available: usize,
    },
    #[error("{count} trailing bytes after the payload at offset {offset}")]
    TrailingBytes { offset: usize, count: usize },
    #[error("batch count {count} exceeds the cap of {cap}", cap = crate::wire::MAX_BOOTSTRAP_BATCH)]
    BatchTooLarge { count: u64 },
    #[error("rotation sub_tag 0x{0:02x} is reserved; only 0x01 (rotate-dek) is known")]
    ReservedSubTag(u8),
    #[error("unknown rotation sub_tag 0x{0:02x}; only 0x01 (rotate-dek) is known")]
    UnknownSubTag(u8),
    #[error("unknown purpose {0} (1 = storage, 2 = raft)")]
    UnknownPurpose(u8),
    #[error("{field} is {len} bytes, more than a u32 length prefix can describe")]
    FieldTooLong { field: &'static str, len: usize },
}

impl MalformedReason {
    /// A stable, machine-readable name for the reason (exposed to Python).
    pub fn code(&self) -> &'static str {
        match self {
            MalformedReason::EmptyEntry => "empty_entry",
            MalformedReason::ReservedOpcode(_) => "reserved_opcode",
            MalformedReason::NotEncryptionOpcode(_) => "not_encryption_opcode",
            MalformedReason::WrongVersion(_) => "wrong_version",
            MalformedReason::Truncated { .. } => "truncated",
            MalformedReason::LengthOverrun { .. } => "length_overrun",
            MalformedReason::TrailingBytes { .. } => "trailing_bytes",
            MalformedReason::BatchTooLarge { .. } => "batch_too_large",
            MalformedReason::ReservedSubTag(_) => "reserved_sub_tag",
            MalformedReason::UnknownSubTag(_) => "unknown_sub_tag",
            MalformedReason::UnknownPurpose(_) => "unknown_purpose",
            MalformedReason::FieldTooLong { .. } => "field_too_long",
        }
    }

    /// The byte offset inside the payload where decoding stopped, when known.
    pub fn offset(&self) -> Option<usize> {
        match self {
            MalformedReason::Truncated { offset, .. }
            | MalformedReason::LengthOverrun { offset, .. }
            | MalformedReason::TrailingBytes { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}

/// Bytes that are not a valid payload of `kind`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {kind} payload: {reason}")]
pub struct MalformedPayload {
    pub kind: PayloadKind,
    pub reason: MalformedReason,
}

impl MalformedPayload {
    pub fn new(kind: PayloadKind, reason: MalformedReason) -> Self {
        MalformedPayload { kind, reason }
    }
}

/// What is wrong with a stored registry row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorruptionKind {
    KeyLength,
    KeyLayout,
    ValueLength,
    /// The row's full_node_id does not end in the node_id16 of its key.
    NodeIdMismatch,
    /// first_seen_local_epoch > last_seen_local_epoch: the rules never write that.
    EpochOrder,
    /// The stored Raft applied index is not 8 bytes.
    AppliedIndexLength,
}

/// A stored writer-registry row that does not decode. Never read as "no row".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryCorruption {
    pub kind: CorruptionKind,
    pub key: Vec<u8>,
    /// The stored value, when the problem is the value.
    pub value: Option<Vec<u8>>,
    /// Decoded from the key when the key itself is well formed.
    pub dek_id: Option<u32>,
    pub node_id16: Option<u16>,
}

impl fmt::Display for RegistryCorruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.dek_id, self.node_id16) {
            _ if self.kind == CorruptionKind::AppliedIndexLength => {
                f.write_str("corrupt registry metadata: ")?
            }
            (Some(dek), Some(n16)) => write!(
                f,
                "corrupt writer-registry row at dek_id={dek} node_id16=0x{n16:04x}: "
            )?,
            _ => write!(f, "corrupt writer-registry key {}: ", hex(&self.key))?,
        }
        let value_len = self.value.as_ref().map_or(0, Vec::len);
        match self.kind {
            CorruptionKind::KeyLength => write!(
                f,
                "key is {} bytes, expected {}",
                self.key.len(),
                crate::registry::KEY_LEN
            ),
            CorruptionKind::KeyLayout => {
                write!(
                    f,
                    "key does not have the '<prefix><dek_id>|<node_id16>' layout"
                )
            }
            CorruptionKind::ValueLength => write!(
                f,
                "value is {value_len} bytes, expected {}",
                crate::registry::VALUE_LEN
            ),
            CorruptionKind::NodeIdMismatch => {
                write!(f, "stored full_node_id does not end in the key's node_id16")
            }
            CorruptionKind::EpochOrder => write!(
                f,
                "first_seen_local_epoch is greater than last_seen_local_epoch"
            ),
            CorruptionKind::AppliedIndexLength => {
                write!(f, "the applied index is {value_len} bytes, expected 8")
            }
        }
    }
}

impl std::error::Error for RegistryCorruption {}

/// An LMDB or file-system fault.
#[derive(Debug, Clone, thiserror::Error)]
#[error("storage fault while {operation} in {}: {detail}", path.display())]
pub struct StorageError {
    pub operation: &'static str,
    pub path: PathBuf,
    pub detail: String,
    /// The LMDB or errno code, when there is one.
    pub code: Option<i32>,
}

/// Why an `Applier` or `Registry` could not be opened. Not a halt: no entry
/// was involved.
#[derive(Debug, thiserror::Error)]
#[error("cannot open registry at {}: {reason}", path.display())]
pub struct OpenError {
    pub path: PathBuf,
    pub reason: String,
}

/// What is wrong with a KEK file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KekFileProblem {
    Io(String),
    NotRegular,
    WrongSize(u64),
    /// Group or other permission bits are set (the full mode is kept).
    Insecure {
        mode: u32,
    },
    Exists,
    Random(String),
}

/// A KEK file that cannot be used. Not a halt: it is configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KekFileError {
    pub path: PathBuf,
    pub problem: KekFileProblem,
}

impl fmt::Display for KekFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KEK file {}: ", self.path.display())?;
        match &self.problem {
            KekFileProblem::Io(e) => write!(f, "{e}"),
            KekFileProblem::NotRegular => f.write_str("not a regular file"),
            KekFileProblem::WrongSize(n) => {
                write!(f, "is {n} bytes; an AES-256 KEK is exactly 32 bytes")
            }
            KekFileProblem::Insecure { mode } => write!(
                f,
                "mode 0o{mode:03o} gives group/other access; it must be owner-only (chmod 600)"
            ),
            KekFileProblem::Exists => f.write_str("already exists; refusing to overwrite a KEK"),
            KekFileProblem::Random(e) => write!(f, "no randomness for a new key: {e}"),
        }
    }
}

impl std::error::Error for KekFileError {}

impl KekFileProblem {
    pub fn code(&self) -> &'static str {
        match self {
            KekFileProblem::Io(_) => "io",
            KekFileProblem::NotRegular => "not_regular",
            KekFileProblem::WrongSize(_) => "wrong_size",
            KekFileProblem::Insecure { .. } => "insecure_mode",
            KekFileProblem::Exists => "exists",
            KekFileProblem::Random(_) => "random",
        }
    }
}

/// Why a wrapped DEK did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnwrapError {
    #[error("wrapped key is {0} bytes, expected 60 (nonce 12 + ciphertext 32 + tag 16)")]
    Length(usize),
    #[error("authentication tag does not verify (wrong KEK or tampered bytes)")]
    Tag,
}

impl UnwrapError {
    pub fn code(&self) -> &'static str {
        match self {
            UnwrapError::Length(_) => "length",
            UnwrapError::Tag => "tag",
        }
    }
}

/// A `keys.json` sidecar that cannot be read, is invalid, or could not be
/// written durably.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sidecar {}: {reason}", path.display())]
pub struct SidecarError {
    pub path: PathBuf,
    pub reason: String,
}

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
        existing: crate::wire::Purpose,
        incoming: crate::wire::Purpose,
    },
}

impl RejectReason {
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::SameIds { .. } => "same_ids",
            RejectReason::ReservedKeyId { .. } => "reserved_key_id",
            RejectReason::ForeignBatchRow { .. } => "foreign_batch_row",
            RejectReason::ProposerDekMismatch { .. } => "proposer_dek_mismatch",
            RejectReason::PurposeMismatch { .. } => "purpose_mismatch",
        }
    }

    /// The DEK id the refusal is about.
    pub fn dek_id(&self) -> Option<u32> {
        match self {
            RejectReason::SameIds { dek_id }
            | RejectReason::ForeignBatchRow { dek_id, .. }
            | RejectReason::ProposerDekMismatch { dek_id, .. }
            | RejectReason::PurposeMismatch { dek_id, .. } => Some(*dek_id),
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
        }
    }
}

/// A read of the registry that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Corruption(#[from] RegistryCorruption),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why an entry was not applied. Every variant is a halt: the replica must
/// stop applying, and nothing of the entry was written.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{entry} entry (opcode 0x{opcode:02x}) needs a KEK and none is configured; nothing was written")]
    KekNotConfigured { opcode: u8, entry: &'static str },
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
    #[error("cannot unwrap the {purpose} key dek_id={dek_id}: {problem}")]
    KekUnwrap {
        dek_id: u32,
        purpose: &'static str,
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

pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
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

    #[test]
    fn corruption_message_names_the_row() {
        let err = RegistryCorruption {
            kind: CorruptionKind::ValueLength,
            key: crate::registry::registry_key(9, 0x0102).to_vec(),
            value: Some(vec![0; 11]),
            dek_id: Some(9),
            node_id16: Some(0x0102),
        };
        let msg = err.to_string();
        assert!(msg.contains("dek_id=9 node_id16=0x0102"), "{msg}");
        assert!(msg.contains("value is 11 bytes, expected 12"), "{msg}");
    }

    #[test]
    fn malformed_reason_codes_are_distinct() {
        let reasons = [
            MalformedReason::EmptyEntry,
            MalformedReason::ReservedOpcode(6),
            MalformedReason::NotEncryptionOpcode(1),
            MalformedReason::WrongVersion(2),
            MalformedReason::Truncated {
                field: "x",
                offset: 0,
                needed: 1,
                available: 0,
            },
            MalformedReason::LengthOverrun {
                field: "x",
                offset: 0,
                claimed: 1,
                available: 0,
            },
            MalformedReason::TrailingBytes {
                offset: 0,
                count: 1,
            },
            MalformedReason::BatchTooLarge { count: 1 },
            MalformedReason::ReservedSubTag(2),
            MalformedReason::UnknownSubTag(9),
            MalformedReason::UnknownPurpose(3),
            MalformedReason::FieldTooLong { field: "x", len: 1 },
        ];
        let mut codes: Vec<_> = reasons.iter().map(MalformedReason::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), reasons.len());
    }
}
