//! The writer-registry key and value codec (SPEC §3).
//!
//! These are the bytes elastickv stores, so rows can be compared with a
//! real cluster. Decoding is strict: a key or value of the wrong shape is
//! [`RegistryCorruption`], never "no row".

use std::fmt;

use crate::fsutil::hex;
use crate::wire::node_id16;

pub const REGISTRY_PREFIX: &[u8] = b"!encryption|writers|";
pub const KEY_LEN: usize = REGISTRY_PREFIX.len() + 4 + 1 + 2;
pub const DEK_PREFIX_LEN: usize = REGISTRY_PREFIX.len() + 4 + 1;
pub const VALUE_LEN: usize = 8 + 2 + 2;

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

impl CorruptionKind {
    /// A stable, machine-readable name (exposed to Python as `.problem`).
    pub fn code(&self) -> &'static str {
        match self {
            CorruptionKind::KeyLength => "key_length",
            CorruptionKind::KeyLayout => "key_layout",
            CorruptionKind::ValueLength => "value_length",
            CorruptionKind::NodeIdMismatch => "node_id_mismatch",
            CorruptionKind::EpochOrder => "epoch_order",
            CorruptionKind::AppliedIndexLength => "applied_index_length",
        }
    }
}

/// How much of a bad stored value an error keeps: enough to see what it
/// is, never a copy of whatever size a damaged file claims.
pub const MAX_VALUE_IN_ERROR: usize = 64;

/// The part of a bad value an error keeps.
pub fn value_excerpt(value: &[u8]) -> Vec<u8> {
    value[..value.len().min(MAX_VALUE_IN_ERROR)].to_vec()
}

/// A stored writer-registry row that does not decode. Never read as "no row".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryCorruption {
    pub kind: CorruptionKind,
    pub key: Vec<u8>,
    /// The stored value (its first [`MAX_VALUE_IN_ERROR`] bytes), when the
    /// problem is the value.
    pub value: Option<Vec<u8>>,
    /// The stored value's whole length (0 without a value).
    pub value_len: usize,
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
        let value_len = self.value_len;
        match self.kind {
            CorruptionKind::KeyLength => {
                write!(f, "key is {} bytes, expected {}", self.key.len(), KEY_LEN)
            }
            CorruptionKind::KeyLayout => {
                write!(
                    f,
                    "key does not have the '<prefix><dek_id>|<node_id16>' layout"
                )
            }
            CorruptionKind::ValueLength => {
                write!(f, "value is {value_len} bytes, expected {}", VALUE_LEN)
            }
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

/// The stored part of a row: what the key does not already say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegistryValue {
    pub full_node_id: u64,
    pub first_seen_local_epoch: u16,
    pub last_seen_local_epoch: u16,
}

impl RegistryValue {
    /// The row this value makes at `(dek_id, node_id16)`.
    pub fn row(&self, dek_id: u32, node_id16: u16) -> RegistryRow {
        RegistryRow {
            dek_id,
            node_id16,
            full_node_id: self.full_node_id,
            first_seen_local_epoch: self.first_seen_local_epoch,
            last_seen_local_epoch: self.last_seen_local_epoch,
        }
    }
}

/// A whole row: key fields and value fields. Ordered like the keys are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegistryRow {
    pub dek_id: u32,
    pub node_id16: u16,
    pub full_node_id: u64,
    pub first_seen_local_epoch: u16,
    pub last_seen_local_epoch: u16,
}

impl RegistryRow {
    pub fn value(&self) -> RegistryValue {
        RegistryValue {
            full_node_id: self.full_node_id,
            first_seen_local_epoch: self.first_seen_local_epoch,
            last_seen_local_epoch: self.last_seen_local_epoch,
        }
    }

    /// Its key as [`pack_key`] packs it.
    pub fn packed_key(&self) -> u64 {
        pack_key(self.dek_id, self.node_id16)
    }
}

/// `prefix ‖ dek_id ‖ "|"`: every key of one DEK starts with it.
pub fn dek_prefix(dek_id: u32) -> [u8; DEK_PREFIX_LEN] {
    let mut out = [0u8; DEK_PREFIX_LEN];
    out[..REGISTRY_PREFIX.len()].copy_from_slice(REGISTRY_PREFIX);
    out[REGISTRY_PREFIX.len()..REGISTRY_PREFIX.len() + 4].copy_from_slice(&dek_id.to_be_bytes());
    out[DEK_PREFIX_LEN - 1] = b'|';
    out
}

pub fn registry_key(dek_id: u32, node_id16: u16) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    out[..DEK_PREFIX_LEN].copy_from_slice(&dek_prefix(dek_id));
    out[DEK_PREFIX_LEN..].copy_from_slice(&node_id16.to_be_bytes());
    out
}

/// A row's `(dek_id, node_id16)` as one integer that sorts as the key
/// bytes do: what batches sort, deduplicate and search (cheaper than
/// tuples; the key bytes are built only at the cursor).
pub fn pack_key(dek_id: u32, node_id16: u16) -> u64 {
    (u64::from(dek_id) << 16) | u64::from(node_id16)
}

/// The `(dek_id, node_id16)` of a [`pack_key`] value.
pub fn unpack_key(packed: u64) -> (u32, u16) {
    ((packed >> 16) as u32, packed as u16)
}

fn key_corruption(kind: CorruptionKind, key: &[u8]) -> RegistryCorruption {
    RegistryCorruption {
        kind,
        key: key.to_vec(),
        value: None,
        value_len: 0,
        dek_id: None,
        node_id16: None,
    }
}

pub fn decode_registry_key(key: &[u8]) -> Result<(u32, u16), RegistryCorruption> {
    if key.len() != KEY_LEN {
        return Err(key_corruption(CorruptionKind::KeyLength, key));
    }
    if !key.starts_with(REGISTRY_PREFIX) || key[DEK_PREFIX_LEN - 1] != b'|' {
        return Err(key_corruption(CorruptionKind::KeyLayout, key));
    }
    let p = REGISTRY_PREFIX.len();
    let dek_id = u32::from_be_bytes([key[p], key[p + 1], key[p + 2], key[p + 3]]);
    let node_id16 = u16::from_be_bytes([key[DEK_PREFIX_LEN], key[DEK_PREFIX_LEN + 1]]);
    Ok((dek_id, node_id16))
}

pub fn encode_registry_value(value: &RegistryValue) -> [u8; VALUE_LEN] {
    let mut out = [0u8; VALUE_LEN];
    out[..8].copy_from_slice(&value.full_node_id.to_be_bytes());
    out[8..10].copy_from_slice(&value.first_seen_local_epoch.to_be_bytes());
    out[10..].copy_from_slice(&value.last_seen_local_epoch.to_be_bytes());
    out
}

/// Decodes a value on its own: only its length can be checked here.
pub fn decode_registry_value(value: &[u8]) -> Option<RegistryValue> {
    let bytes: &[u8; VALUE_LEN] = value.try_into().ok()?;
    let mut full = [0u8; 8];
    full.copy_from_slice(&bytes[..8]);
    Some(RegistryValue {
        full_node_id: u64::from_be_bytes(full),
        first_seen_local_epoch: u16::from_be_bytes([bytes[8], bytes[9]]),
        last_seen_local_epoch: u16::from_be_bytes([bytes[10], bytes[11]]),
    })
}

/// Decodes a stored row and checks it against its key: the value's length,
/// that its full_node_id ends in the key's node_id16, and that the epochs
/// are in order. The four-case rules never write a row failing these, so
/// one that does is corruption, and acting on it could hide a collision.
pub fn decode_row(key: &[u8], value: &[u8]) -> Result<RegistryRow, RegistryCorruption> {
    let (dek_id, n16) = decode_registry_key(key)?;
    let corrupt = |kind| RegistryCorruption {
        kind,
        key: key.to_vec(),
        value: Some(value_excerpt(value)),
        value_len: value.len(),
        dek_id: Some(dek_id),
        node_id16: Some(n16),
    };
    let v = decode_registry_value(value).ok_or_else(|| corrupt(CorruptionKind::ValueLength))?;
    if node_id16(v.full_node_id) != n16 {
        return Err(corrupt(CorruptionKind::NodeIdMismatch));
    }
    if v.first_seen_local_epoch > v.last_seen_local_epoch {
        return Err(corrupt(CorruptionKind::EpochOrder));
    }
    Ok(RegistryRow {
        dek_id,
        node_id16: n16,
        full_node_id: v.full_node_id,
        first_seen_local_epoch: v.first_seen_local_epoch,
        last_seen_local_epoch: v.last_seen_local_epoch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_27_pinned_bytes() {
        let key = registry_key(0x01020304, 0x0506);
        let mut expected = b"!encryption|writers|".to_vec();
        expected.extend_from_slice(&[1, 2, 3, 4, b'|', 5, 6]);
        assert_eq!(KEY_LEN, 27);
        assert_eq!(key.to_vec(), expected);
        assert_eq!(decode_registry_key(&key), Ok((0x01020304, 0x0506)));
        assert!(key.starts_with(&dek_prefix(0x01020304)));
        assert_eq!(dek_prefix(0x01020304).len(), 25);
    }

    #[test]
    fn value_is_12_pinned_bytes() {
        let v = RegistryValue {
            full_node_id: 0x0102030405060708,
            first_seen_local_epoch: 0x090a,
            last_seen_local_epoch: 0x0b0c,
        };
        let bytes = encode_registry_value(&v);
        assert_eq!(bytes, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(decode_registry_value(&bytes), Some(v));
    }

    #[test]
    fn wrong_lengths_are_corruption_not_absence() {
        let key = registry_key(7, 1);
        for len in [0usize, 11, 13, 24] {
            let err = decode_row(&key, &vec![0u8; len]).unwrap_err();
            assert_eq!(err.kind, CorruptionKind::ValueLength, "len {len}");
            assert_eq!(err.dek_id, Some(7));
            assert_eq!(err.node_id16, Some(1));
        }
        assert_eq!(
            decode_registry_key(&key[..26]).unwrap_err().kind,
            CorruptionKind::KeyLength
        );
        let mut bad_sep = key;
        bad_sep[24] = b'/';
        assert_eq!(
            decode_registry_key(&bad_sep).unwrap_err().kind,
            CorruptionKind::KeyLayout
        );
        let mut bad_prefix = key;
        bad_prefix[0] = b'?';
        assert_eq!(
            decode_registry_key(&bad_prefix).unwrap_err().kind,
            CorruptionKind::KeyLayout
        );
    }

    #[test]
    fn row_must_agree_with_its_key() {
        let key = registry_key(7, 0x0001);
        let value = |full, first, last| {
            encode_registry_value(&RegistryValue {
                full_node_id: full,
                first_seen_local_epoch: first,
                last_seen_local_epoch: last,
            })
        };
        assert!(decode_row(&key, &value(0xabcd0001, 1, 2)).is_ok());
        assert_eq!(
            decode_row(&key, &value(0xabcd0002, 1, 2)).unwrap_err().kind,
            CorruptionKind::NodeIdMismatch
        );
        assert_eq!(
            decode_row(&key, &value(0xabcd0001, 3, 2)).unwrap_err().kind,
            CorruptionKind::EpochOrder
        );
    }

    #[test]
    fn row_order_is_key_order() {
        let a = registry_key(1, 0xffff);
        let b = registry_key(2, 0x0000);
        assert!(a < b);
        let ra = RegistryRow {
            dek_id: 1,
            node_id16: 0xffff,
            full_node_id: 0xffff,
            first_seen_local_epoch: 0,
            last_seen_local_epoch: 0,
        };
        let rb = RegistryRow {
            dek_id: 2,
            node_id16: 0,
            full_node_id: 0,
            first_seen_local_epoch: 0,
            last_seen_local_epoch: 0,
        };
        assert!(ra < rb);
    }

    #[test]
    fn corruption_message_names_the_row() {
        let err = RegistryCorruption {
            kind: CorruptionKind::ValueLength,
            key: registry_key(9, 0x0102).to_vec(),
            value: Some(vec![0; 11]),
            value_len: 11,
            dek_id: Some(9),
            node_id16: Some(0x0102),
        };
        let msg = err.to_string();
        assert!(msg.contains("dek_id=9 node_id16=0x0102"), "{msg}");
        assert!(msg.contains("value is 11 bytes, expected 12"), "{msg}");
    }
}
