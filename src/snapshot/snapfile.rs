//! etcd's `.snap` files and what elastickv keeps in them.
//!
//! A `.snap` file is a `snappb.Snapshot` {crc uint32 = 1, data bytes = 2}
//! whose `data` is a `raftpb.Snapshot` {data bytes = 1, metadata = 2}, read
//! by etcd's `snap.Read` (etcd v3.7.0 server/etcdserver/api/snap/
//! snapshotter.go:158-197): an empty file, or no data, or a zero CRC, is
//! `ErrEmptySnapshot`; the CRC-32C of `data` must be `crc`.
//!
//! The Raft snapshot's own `data` is what elastickv's
//! `OpenNewestFSMSnapshotPayload` opens (fsm_snapshot_file.go:416-434):
//! empty, there is no payload; a 17-byte token `EKVT ‖ version 1 ‖ index
//! u64 ‖ crc32c u32` (:92-135) names `fsm-snap/{index:016x}.fsm` beside
//! `snap/`, checked against the token's CRC; anything else is the payload
//! itself (a snapshot from before `.fsm` files).

use std::path::{Path, PathBuf};

use super::fsm;
use super::header::{self, MAX_HEADER};
use super::problem::{SnapshotError, SnapshotProblem};
use super::source::Source;
use super::wire::{self, Fault, Msg, TermIndex, BYTES, VARINT};
use super::{PayloadFormat, SnapshotHeader};

/// A decoded `.snap` file: the Raft snapshot's metadata and where its data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RaftSnapshot {
    pub(crate) meta: TermIndex,
    /// `[start, start + len)` of the snapshot's data in the file.
    pub(crate) data: (u64, u64),
}

/// snapshotTokenSize and its magic (fsm_snapshot_file.go:29, :57).
const TOKEN_SIZE: u64 = 17;
const TOKEN_MAGIC: &[u8; 4] = b"EKVT";
/// fsmSnapDirName (fsm_snapshot_file.go:25).
pub(crate) const FSM_SNAP_DIR: &str = "fsm-snap";

fn undecodable(src: &Source, message: &'static str, fault: Fault) -> SnapshotError {
    match fault {
        Fault::Io(e) => e,
        Fault::Wire { offset, detail } => src.error(SnapshotProblem::SnapUndecodable {
            message,
            offset,
            detail,
        }),
    }
}

/// `snap.Read` of the open file.
pub(crate) fn decode(src: &mut Source) -> Result<RaftSnapshot, SnapshotError> {
    if src.size == 0 {
        return Err(src.error(SnapshotProblem::SnapEmpty));
    }
    let (crc, data) = outer(src).map_err(|f| undecodable(src, "snappb.Snapshot", f))?;
    let (start, len) = data.unwrap_or((0, 0));
    let crc = crc.unwrap_or(0);
    if len == 0 || crc == 0 {
        return Err(src.error(SnapshotProblem::SnapEmpty));
    }
    let computed = src.crc32c(0, start, len)?;
    if computed != crc {
        return Err(src.error(SnapshotProblem::SnapCrcMismatch {
            stored: crc,
            computed,
        }));
    }
    raft_snapshot(src, start, len).map_err(|f| undecodable(src, "raftpb.Snapshot", f))
}

/// `snappb.Snapshot`: the last crc and the last data.
#[allow(clippy::type_complexity)]
fn outer(src: &mut Source) -> Result<(Option<u32>, Option<(u64, u64)>), Fault> {
    let size = src.size;
    let mut m = Msg::new(src, 0, size);
    let (mut crc, mut data) = (None, None);
    while let Some(tag) = m.tag()? {
        match (tag.num, tag.wire) {
            (1, VARINT) => crc = Some(m.varint()? as u32),
            (2, BYTES) => data = Some(m.bytes()?),
            _ => m.skip(tag)?,
        }
    }
    Ok((crc, data))
}

/// `raftpb.Snapshot` in `[start, start + len)`.
fn raft_snapshot(src: &mut Source, start: u64, len: u64) -> Result<RaftSnapshot, Fault> {
    let mut m = Msg::new(src, start, start + len);
    let mut out = RaftSnapshot {
        meta: TermIndex::default(),
        data: (start, 0),
    };
    while let Some(tag) = m.tag()? {
        match (tag.num, tag.wire) {
            (1, BYTES) => out.data = m.bytes()?,
            (2, BYTES) => {
                let (s, l) = m.bytes()?;
                wire::snapshot_metadata(m.src(), s, l, &mut out.meta)?;
            }
            _ => m.skip(tag)?,
        }
    }
    Ok(out)
}

/// The data directory of a `.snap` file: the parent of its `snap/`.
pub(crate) fn data_dir_of(snap_path: &Path) -> PathBuf {
    let snap_dir = crate::fsutil::parent_dir(snap_path);
    match snap_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() && snap_dir.file_name().is_some() => p.to_path_buf(),
        _ => snap_dir.join(".."),
    }
}

/// What the decoded snapshot `snap` of `src` holds, with `fsm-snap/`
/// looked up under `data_dir`.
pub(crate) fn resolve(
    src: &mut Source,
    snap: RaftSnapshot,
    data_dir: &Path,
) -> Result<SnapshotHeader, SnapshotError> {
    let (start, len) = snap.data;
    let at_index = |e: SnapshotError| e.at_index(snap.meta.index);
    let mut out = SnapshotHeader {
        path: src.path.clone(),
        payload_path: src.path.clone(),
        format: PayloadFormat::SnapEmpty,
        term: Some(snap.meta.term),
        index: Some(snap.meta.index),
        token_index: None,
        payload_size: len,
        header: None,
    };
    if len == 0 {
        return Ok(out);
    }
    let head = src.bytes(start, len.min(MAX_HEADER))?;
    if len == TOKEN_SIZE && &head[..4] == TOKEN_MAGIC {
        if head[4] != 1 {
            return Err(at_index(
                src.error(SnapshotProblem::TokenInvalid { version: head[4] }),
            ));
        }
        let mut idx = [0u8; 8];
        idx.copy_from_slice(&head[5..13]);
        let token_index = u64::from_be_bytes(idx);
        let crc = u32::from_be_bytes([head[13], head[14], head[15], head[16]]);
        let path = data_dir
            .join(FSM_SNAP_DIR)
            .join(format!("{token_index:016x}.fsm"));
        let payload = fsm::read(&path, Some(crc)).map_err(at_index)?;
        out.format = PayloadFormat::SnapToken;
        out.payload_path = path;
        out.token_index = Some(token_index);
        out.payload_size = payload.payload_size;
        out.header = Some(payload.header);
        return Ok(out);
    }
    let parsed = header::parse(&head, len).map_err(|p| at_index(src.error(p)))?;
    out.format = PayloadFormat::SnapInline;
    out.header = Some(parsed);
    Ok(out)
}
