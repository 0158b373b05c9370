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
        }
    }
}

impl std::error::Error for RegistryCorruption {}

/// An LMDB or file-system fault.
#[derive(Debug, thiserror::Error)]
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

/// A read of the registry that failed.
#[derive(Debug, thiserror::Error)]
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
