//! The header at the start of an FSM snapshot payload, as elastickv's
//! `kv.ReadSnapshotHeader` reads it (kv/snapshot.go:187-284 at d9a031d0):
//!
//! - fewer than 8 bytes, or 8 bytes that are no `EKVTHLC*` magic: a
//!   headerless legacy payload, nothing consumed (:197-219);
//! - `EKVTHLC1` then an 8-byte ceiling: v1, cutover 0 (:248-255);
//! - `EKVTHLC2`, a big-endian u16 length 16..=1024, then that many bytes:
//!   the ceiling, the cutover, and trailing bytes Go skips (:257-284);
//! - `EKVTHLC` and another version byte: refused (:213);
//! - a v1 or v2 header cut short by the end of the payload: refused.
//!
//! All integers are big-endian. Only the first [`MAX_HEADER`] bytes of a
//! payload are ever read.

use super::problem::SnapshotProblem;

const MAGIC_V1: &[u8; 8] = b"EKVTHLC1";
const MAGIC_V2: &[u8; 8] = b"EKVTHLC2";
const MAGIC_PREFIX: &[u8; 7] = b"EKVTHLC";
/// hlcSnapshotV2MinPayload (kv/snapshot.go:30).
const V2_MIN_PAYLOAD: u16 = 16;
/// maxSnapshotHeaderPayload (kv/snapshot.go:39).
const V2_MAX_PAYLOAD: u16 = 1024;
/// The longest header: magic, length prefix, the largest payload.
pub const MAX_HEADER: u64 = 8 + 2 + V2_MAX_PAYLOAD as u64;

/// Which header a payload starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind {
    /// No header: a payload from before the HLC header (or shorter than 8 bytes).
    Legacy,
    /// `EKVTHLC1`: the HLC ceiling only.
    V1,
    /// `EKVTHLC2`: ceiling and Raft envelope cutover; `payload_len` is the
    /// length prefix (16, or more with trailing bytes Go skips).
    V2 { payload_len: u16 },
}

/// What `kv.ReadSnapshotHeader` returns for a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadHeader {
    pub kind: HeaderKind,
    /// The HLC ceiling in Unix milliseconds (0 for legacy).
    pub ceiling_ms: u64,
    /// `raft_envelope_cutover_index` (0 for legacy and v1).
    pub raft_envelope_cutover_index: u64,
}

impl PayloadHeader {
    /// 1 or 2; `None` for a legacy payload.
    pub fn version(&self) -> Option<u8> {
        match self.kind {
            HeaderKind::Legacy => None,
            HeaderKind::V1 => Some(1),
            HeaderKind::V2 { .. } => Some(2),
        }
    }

    /// The bytes the header takes at the start of the payload.
    pub fn length(&self) -> u64 {
        match self.kind {
            HeaderKind::Legacy => 0,
            HeaderKind::V1 => 16,
            HeaderKind::V2 { payload_len } => 10 + u64::from(payload_len),
        }
    }
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Parses the header from `prefix`, the first `min(payload_len,
/// MAX_HEADER)` bytes of a payload of `payload_len` bytes.
pub fn parse(prefix: &[u8], payload_len: u64) -> Result<PayloadHeader, SnapshotProblem> {
    let legacy = PayloadHeader {
        kind: HeaderKind::Legacy,
        ceiling_ms: 0,
        raft_envelope_cutover_index: 0,
    };
    if prefix.len() < 8 {
        return Ok(legacy);
    }
    let truncated = |version: u8, needed: u64| SnapshotProblem::TruncatedHeader {
        version,
        needed,
        available: payload_len,
    };
    if &prefix[..8] == MAGIC_V2 {
        if prefix.len() < 10 {
            return Err(truncated(2, 10));
        }
        let length = u16::from_be_bytes([prefix[8], prefix[9]]);
        if !(V2_MIN_PAYLOAD..=V2_MAX_PAYLOAD).contains(&length) {
            return Err(SnapshotProblem::InvalidLength { length });
        }
        let needed = 10 + usize::from(length);
        if prefix.len() < needed {
            return Err(truncated(2, needed as u64));
        }
        return Ok(PayloadHeader {
            kind: HeaderKind::V2 {
                payload_len: length,
            },
            ceiling_ms: be64(&prefix[10..18]),
            raft_envelope_cutover_index: be64(&prefix[18..26]),
        });
    }
    if &prefix[..8] == MAGIC_V1 {
        if prefix.len() < 16 {
            return Err(truncated(1, 16));
        }
        return Ok(PayloadHeader {
            kind: HeaderKind::V1,
            ceiling_ms: be64(&prefix[8..16]),
            raft_envelope_cutover_index: 0,
        });
    }
    if &prefix[..7] == MAGIC_PREFIX {
        return Err(SnapshotProblem::UnknownMagic {
            version_byte: prefix[7],
        });
    }
    Ok(legacy)
}
