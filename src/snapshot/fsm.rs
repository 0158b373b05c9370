//! `.fsm` files: an FSM payload followed by the big-endian CRC-32C of the
//! payload (elastickv internal/raftengine/etcd/fsm_snapshot_file.go at
//! d9a031d0). Checked as `verifyFSMSnapshotFileWithToken` checks them
//! (:362-400): at least the 4-byte footer (:375), the CRC of every payload
//! byte equal to the footer (:380-394), and, when a snapshot token names
//! the file, the footer equal to the token's CRC (:395-398). The payload
//! is then what `openFSMSnapshotPayloadReader` yields (:451-490): the file
//! without its footer, whose header is read.

use super::header::{self, PayloadHeader, MAX_HEADER};
use super::problem::{SnapshotError, SnapshotProblem};
use super::source::{Missing, Source};

/// fsmFooterSize (fsm_snapshot_file.go:34).
const FOOTER: u64 = 4;

/// A checked `.fsm` file: its payload's size and header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FsmPayload {
    pub(crate) payload_size: u64,
    pub(crate) header: PayloadHeader,
}

/// Reads the `.fsm` file at `path`. With `token_crc`, a snapshot token
/// names it: an absent file is `FsmNotFound` and the footer must be the
/// token's CRC.
pub(crate) fn read(
    path: &std::path::Path,
    token_crc: Option<u32>,
) -> Result<FsmPayload, SnapshotError> {
    let missing = match token_crc {
        Some(_) => Missing::FsmNotFound,
        None => Missing::CannotOpen,
    };
    let mut src = Source::open(path, missing)?;
    if src.size < FOOTER {
        return Err(src.error(SnapshotProblem::FsmTooSmall { size: src.size }));
    }
    let payload_size = src.size - FOOTER;
    let computed = src.crc32c(0, 0, payload_size)?;
    let f = src.bytes(payload_size, FOOTER)?;
    let footer = u32::from_be_bytes([f[0], f[1], f[2], f[3]]);
    if computed != footer {
        return Err(src.error(SnapshotProblem::FsmCrcMismatch { footer, computed }));
    }
    if let Some(token) = token_crc.filter(|&t| t != computed) {
        return Err(src.error(SnapshotProblem::FsmTokenCrcMismatch { footer, token }));
    }
    let prefix = src.bytes(0, payload_size.min(MAX_HEADER))?;
    let header = header::parse(&prefix, payload_size).map_err(|p| src.error(p))?;
    Ok(FsmPayload {
        payload_size,
        header,
    })
}
