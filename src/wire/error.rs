//! Why bytes are not a valid encryption payload (SPEC §2).

use std::fmt;

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
    #[error(
        "rotation sub_tag 0x{0:02x} ({name}) is reserved for elastickv's Stage 9 and not \
         specified yet, so it halts; the known sub-tags are {known}",
        name = crate::wire::reserved_sub_tag_name(*.0),
        known = crate::wire::KNOWN_SUB_TAGS
    )]
    ReservedSubTag(u8),
    #[error(
        "unknown rotation sub_tag 0x{0:02x}; the known sub-tags are {known} (0x02 rewrap-deks and \
         0x03 retire-dek are reserved)",
        known = crate::wire::KNOWN_SUB_TAGS
    )]
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
