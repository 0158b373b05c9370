//! elastickv's FSM snapshots, read as Go reads them, to learn the Raft
//! envelope cutover a restored snapshot carries (the input of start-up
//! guard 0, `ErrEnvelopeCutoverDivergence`,
//! main_encryption_startup_guard.go:236-281 at d9a031d0). A pure reader:
//! nothing is written, renamed or removed.
//!
//! - [`read_snapshot_header`]: one file. A name ending in `.snap` is an
//!   etcd snapshot file (`snapfile.rs`), whose data is an FSM payload or a
//!   token naming `../fsm-snap/{index:016x}.fsm`; any other file is an
//!   `.fsm` file (`fsm.rs`: payload ‖ CRC-32C footer). Every CRC Go checks
//!   on that path is checked; then the payload's header (`header.rs`).
//! - [`newest`]: the snapshot Go restores from a group's data directory
//!   (`wal/`, `snap/`, `fsm-snap/`), chosen as Go chooses it (`dir.rs`,
//!   with the WAL scan of `wal.rs`).
//! - [`restored`]: a file or a data directory, for the guard.
//!
//! Files are opened without blocking (a FIFO is refused), streamed in
//! windows of 64 KiB (a CRC over a huge file never holds it in memory),
//! and a truncated file is an error naming it ([`SnapshotError`]).

mod dir;
mod fsm;
mod header;
mod problem;
mod snapfile;
mod source;
mod wal;
mod wire;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use header::{HeaderKind, PayloadHeader};
pub use problem::{Detail, SnapshotError, SnapshotProblem};
pub use source::crc32c_update;

use source::{Missing, Source};

/// Where a snapshot's FSM payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    /// An `.fsm` file read by itself (its footer checked, no token).
    Fsm,
    /// A `.snap` whose data is a token naming an `.fsm` file.
    SnapToken,
    /// A `.snap` whose data is the payload itself.
    SnapInline,
    /// A `.snap` with no data: Go restores nothing and checks nothing.
    SnapEmpty,
}

impl PayloadFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::Fsm => "fsm",
            PayloadFormat::SnapToken => "snap-token",
            PayloadFormat::SnapInline => "snap-inline",
            PayloadFormat::SnapEmpty => "snap-empty",
        }
    }
}

/// What was read from a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// The file read: the `.snap`, or the `.fsm` given by itself.
    pub path: PathBuf,
    /// The file holding the payload: the `.fsm` a token names, or `path`.
    pub payload_path: PathBuf,
    pub format: PayloadFormat,
    /// The Raft snapshot's metadata (`None` for an `.fsm` read by itself).
    pub term: Option<u64>,
    pub index: Option<u64>,
    /// The index a token names the `.fsm` file by.
    pub token_index: Option<u64>,
    /// The payload's length in bytes (the `.fsm` file less its footer).
    pub payload_size: u64,
    /// The payload's header; `None` when there is no payload
    /// ([`PayloadFormat::SnapEmpty`]).
    pub header: Option<PayloadHeader>,
}

impl SnapshotHeader {
    /// The Raft envelope cutover the snapshot carries (0: none, as Go).
    pub fn raft_envelope_cutover_index(&self) -> u64 {
        self.header.map_or(0, |h| h.raft_envelope_cutover_index)
    }
}

/// Reads the snapshot file at `path` (see the module doc).
pub fn read_snapshot_header(path: &Path) -> Result<SnapshotHeader, SnapshotError> {
    use std::os::unix::ffi::OsStrExt;
    let is_snap = path
        .file_name()
        .is_some_and(|n| n.as_bytes().ends_with(b".snap"));
    if is_snap {
        let mut src = Source::open(path, Missing::CannotOpen)?;
        let snapshot = snapfile::decode(&mut src)?;
        return snapfile::resolve(&mut src, snapshot, &snapfile::data_dir_of(path));
    }
    let payload = fsm::read(path, None)?;
    Ok(SnapshotHeader {
        path: path.to_path_buf(),
        payload_path: path.to_path_buf(),
        format: PayloadFormat::Fsm,
        term: None,
        index: None,
        token_index: None,
        payload_size: payload.payload_size,
        header: Some(payload.header),
    })
}

/// Why a data directory has no snapshot to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSnapshot {
    /// `wal/` holds no `.wal` name (Go looks for no snapshot).
    NoWal,
    /// No `.snap` in `snap/` is readable and recorded in the WAL.
    NoneVouched,
}

impl NoSnapshot {
    pub fn as_str(self) -> &'static str {
        match self {
            NoSnapshot::NoWal => "wal/ holds no .wal file",
            NoSnapshot::NoneVouched => {
                "no .snap file in snap/ is readable and recorded in the WAL's committed snapshots"
            }
        }
    }
}

/// The `.snap` file Go restores from the data directory `data_dir`, or why
/// there is none.
pub fn newest_snapshot(data_dir: &Path) -> Result<Result<PathBuf, NoSnapshot>, SnapshotError> {
    Ok(match dir::newest(data_dir)? {
        dir::Newest::NoWal => Err(NoSnapshot::NoWal),
        dir::Newest::NoSnapshot => Err(NoSnapshot::NoneVouched),
        dir::Newest::Chosen(c) => Ok(c.src.path),
    })
}

/// What Go restores from the data directory `data_dir`: the newest
/// snapshot's header, or why there is none.
pub fn newest(data_dir: &Path) -> Result<Result<SnapshotHeader, NoSnapshot>, SnapshotError> {
    Ok(match dir::newest(data_dir)? {
        dir::Newest::NoWal => Err(NoSnapshot::NoWal),
        dir::Newest::NoSnapshot => Err(NoSnapshot::NoneVouched),
        dir::Newest::Chosen(mut c) => Ok(snapfile::resolve(&mut c.src, c.snapshot, data_dir)?),
    })
}

/// The snapshot file guard 0 read, named in its refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRef {
    pub path: PathBuf,
    /// Its Raft index (`None` for an `.fsm` file read by itself).
    pub index: Option<u64>,
}

impl std::fmt::Display for SnapshotRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.display())?;
        self.index.map_or(Ok(()), |i| write!(f, " index={i}"))
    }
}

/// Start-up guard 0's reading of `path` (see [`restored`]): the Raft
/// cutover the snapshot carries and the file read; `None` when there is
/// no snapshot to restore.
pub fn restored_cutover(path: &Path) -> Result<Option<(u64, SnapshotRef)>, SnapshotError> {
    Ok(restored(path)?.ok().map(|h| {
        let read = SnapshotRef {
            path: h.path.clone(),
            index: h.index,
        };
        (h.raft_envelope_cutover_index(), read)
    }))
}

/// The snapshot at `path` for start-up guard 0: a data directory (its
/// newest snapshot, or `Err(NoSnapshot)`) or a snapshot file.
pub fn restored(path: &Path) -> Result<Result<SnapshotHeader, NoSnapshot>, SnapshotError> {
    if path.is_dir() {
        newest(path)
    } else {
        read_snapshot_header(path).map(Ok)
    }
}
