//! Why a snapshot could not be read: [`SnapshotProblem`], each variant with
//! its stable `code()`, the Go error it stands for, and whether Go
//! *refuses* the bytes (a node would not start on them) or the file could
//! not be looked at at all.

use std::fmt;
use std::path::{Path, PathBuf};

/// A snapshot, WAL or `.fsm` file that cannot be read as Go reads it.
/// `path` is the file the problem is in; `index` the Raft index of the
/// snapshot involved, when it is known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SnapshotError {
    pub path: PathBuf,
    pub index: Option<u64>,
    pub problem: SnapshotProblem,
}

impl SnapshotError {
    pub fn new(path: &Path, problem: SnapshotProblem) -> SnapshotError {
        SnapshotError {
            path: path.to_path_buf(),
            index: None,
            problem,
        }
    }

    /// The same error, naming the snapshot's Raft index.
    pub fn at_index(mut self, index: u64) -> SnapshotError {
        self.index.get_or_insert(index);
        self
    }

    /// The stable code of the problem (`SnapshotError.code` in Python).
    pub fn code(&self) -> &'static str {
        self.problem.code()
    }

    /// The message without the path (`SnapshotError.reason`).
    pub fn reason(&self) -> String {
        self.problem.to_string()
    }

    /// True when Go refuses these bytes (the node does not start); false
    /// when the file could not be read at all.
    pub fn refused(&self) -> bool {
        self.problem.refused()
    }
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)?;
        if let Some(index) = self.index {
            write!(f, " (snapshot index={index})")?;
        }
        Ok(())
    }
}

/// What is wrong. The Go file:line is that of elastickv d9a031d0, etcd
/// v3.7.0 or protobuf-go v1.36.11, the versions elastickv builds with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotProblem {
    // The file cannot be looked at (Go would fail too, or hang on a FIFO).
    /// It cannot be opened (missing, permissions).
    CannotOpen { detail: String },
    /// Not a regular file (a FIFO, a device, a directory where a file is due).
    NotRegularFile,
    /// Reading failed, or the file shrank while it was read.
    CannotRead { detail: String },
    /// A directory given where a snapshot file is due.
    IsDirectory,
    /// A directory could not be listed (`snap/` missing under a WAL).
    CannotList { detail: String },

    // The .fsm file (internal/raftengine/etcd/fsm_snapshot_file.go).
    /// The `.fsm` file a token names is absent (ErrFSMSnapshotNotFound, :70).
    FsmNotFound,
    /// Shorter than its 4-byte CRC footer (ErrFSMSnapshotTooSmall, :75, :375).
    FsmTooSmall { size: u64 },
    /// The CRC32C of the payload is not the footer (ErrFSMSnapshotFileCRC, :391).
    FsmCrcMismatch { footer: u32, computed: u32 },
    /// The footer is not the CRC the snapshot's token names
    /// (ErrFSMSnapshotTokenCRC, :395).
    FsmTokenCrcMismatch { footer: u32, token: u32 },

    // The FSM payload's header (kv/snapshot.go).
    /// `EKVTHLC` and a version byte other than `1` or `2`
    /// (ErrSnapshotHeaderUnknownMagic, :213).
    UnknownMagic { version_byte: u8 },
    /// A v2 length prefix outside 16..=1024 (ErrSnapshotHeaderInvalidLength, :268).
    InvalidLength { length: u16 },
    /// The payload ends inside a v1 or v2 header (:250, :264, :278).
    TruncatedHeader {
        version: u8,
        needed: u64,
        available: u64,
    },

    // The etcd snapshot file (etcd server/etcdserver/api/snap/snapshotter.go).
    /// An empty file, or one without data or CRC (ErrEmptySnapshot, :166-168, :177-179).
    SnapEmpty,
    /// Not decodable as protobuf (`proto.Unmarshal` of snappb or raftpb
    /// failed, :172, :193).
    SnapUndecodable {
        message: &'static str,
        offset: u64,
        detail: &'static str,
    },
    /// The data's CRC32C is not the stored one (ErrCRCMismatch, :183-189).
    SnapCrcMismatch { stored: u32, computed: u32 },
    /// A 17-byte `EKVT` token of another version (ErrFSMSnapshotTokenInvalid,
    /// fsm_snapshot_file.go:127).
    TokenInvalid { version: u8 },

    // The WAL (etcd server/storage/wal).
    /// `.wal` names, none of them a WAL file's (ErrFileNotFound, util.go:78-80).
    WalNoFiles,
    /// A record (or a snapshot/state record's data) that does not decode
    /// (decoder.go:125; wal.go:628, :631 panic in Go).
    WalUndecodable { offset: u64, detail: &'static str },
    /// A record whose CRC breaks the chain (decoder.go:133-151, wal.go:636).
    WalCrcMismatch {
        offset: u64,
        stored: u32,
        computed: u32,
    },
}

/// One structured detail of a problem (`SnapshotError.details`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    Int(u64),
    Text(&'static str),
}

impl SnapshotProblem {
    /// The problem's numbers (and the message a decoding failed in), by name.
    pub fn details(&self) -> Vec<(&'static str, Detail)> {
        use Detail::{Int, Text};
        let int = |v: u32| Int(u64::from(v));
        match *self {
            SnapshotProblem::FsmTooSmall { size } => vec![("size", Int(size))],
            SnapshotProblem::FsmCrcMismatch { footer, computed } => {
                vec![("footer", int(footer)), ("computed", int(computed))]
            }
            SnapshotProblem::FsmTokenCrcMismatch { footer, token } => {
                vec![("footer", int(footer)), ("token", int(token))]
            }
            SnapshotProblem::UnknownMagic { version_byte } => {
                vec![("version_byte", Int(u64::from(version_byte)))]
            }
            SnapshotProblem::InvalidLength { length } => vec![("length", Int(u64::from(length)))],
            SnapshotProblem::TruncatedHeader {
                version,
                needed,
                available,
            } => vec![
                ("version", Int(u64::from(version))),
                ("needed", Int(needed)),
                ("available", Int(available)),
            ],
            SnapshotProblem::SnapUndecodable {
                message, offset, ..
            } => vec![("message", Text(message)), ("offset", Int(offset))],
            SnapshotProblem::SnapCrcMismatch { stored, computed } => {
                vec![("stored", int(stored)), ("computed", int(computed))]
            }
            SnapshotProblem::TokenInvalid { version } => vec![("version", Int(u64::from(version)))],
            SnapshotProblem::WalUndecodable { offset, .. } => vec![("offset", Int(offset))],
            SnapshotProblem::WalCrcMismatch {
                offset,
                stored,
                computed,
            } => vec![
                ("offset", Int(offset)),
                ("stored", int(stored)),
                ("computed", int(computed)),
            ],
            _ => Vec::new(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            SnapshotProblem::CannotOpen { .. } => "cannot_open",
            SnapshotProblem::NotRegularFile => "not_regular_file",
            SnapshotProblem::CannotRead { .. } => "cannot_read",
            SnapshotProblem::IsDirectory => "is_directory",
            SnapshotProblem::CannotList { .. } => "cannot_list",
            SnapshotProblem::FsmNotFound => "fsm_not_found",
            SnapshotProblem::FsmTooSmall { .. } => "fsm_too_small",
            SnapshotProblem::FsmCrcMismatch { .. } => "fsm_crc_mismatch",
            SnapshotProblem::FsmTokenCrcMismatch { .. } => "fsm_token_crc_mismatch",
            SnapshotProblem::UnknownMagic { .. } => "unknown_magic",
            SnapshotProblem::InvalidLength { .. } => "invalid_length",
            SnapshotProblem::TruncatedHeader { .. } => "truncated_header",
            SnapshotProblem::SnapEmpty => "snap_empty",
            SnapshotProblem::SnapUndecodable { .. } => "snap_undecodable",
            SnapshotProblem::SnapCrcMismatch { .. } => "snap_crc_mismatch",
            SnapshotProblem::TokenInvalid { .. } => "token_invalid",
            SnapshotProblem::WalNoFiles => "wal_no_files",
            SnapshotProblem::WalUndecodable { .. } => "wal_undecodable",
            SnapshotProblem::WalCrcMismatch { .. } => "wal_crc_mismatch",
        }
    }

    pub fn refused(&self) -> bool {
        !matches!(
            self,
            SnapshotProblem::CannotOpen { .. }
                | SnapshotProblem::NotRegularFile
                | SnapshotProblem::CannotRead { .. }
                | SnapshotProblem::IsDirectory
                | SnapshotProblem::CannotList { .. }
        )
    }
}

impl fmt::Display for SnapshotProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotProblem::CannotOpen { detail } => write!(f, "cannot open: {detail}"),
            SnapshotProblem::NotRegularFile => f.write_str("not a regular file"),
            SnapshotProblem::CannotRead { detail } => write!(f, "cannot read: {detail}"),
            SnapshotProblem::IsDirectory => f.write_str(
                "a directory, not a snapshot file (newest_snapshot() chooses in a data directory)",
            ),
            SnapshotProblem::CannotList { detail } => write!(f, "cannot list: {detail}"),
            SnapshotProblem::FsmNotFound => {
                f.write_str("the .fsm file the snapshot token names does not exist")
            }
            SnapshotProblem::FsmTooSmall { size } => write!(
                f,
                "{size} bytes, too small to hold the 4-byte CRC32C footer of an .fsm file"
            ),
            SnapshotProblem::FsmCrcMismatch { footer, computed } => write!(
                f,
                "CRC32C mismatch: footer={footer:08x} computed={computed:08x} (file corrupt)"
            ),
            SnapshotProblem::FsmTokenCrcMismatch { footer, token } => write!(
                f,
                "token CRC32C mismatch: footer={footer:08x} token={token:08x} (metadata corrupt)"
            ),
            SnapshotProblem::UnknownMagic { version_byte } => write!(
                f,
                "unknown snapshot header magic EKVTHLC{} (byte 0x{version_byte:02x}): a newer \
                 elastickv wrote it",
                char::from(*version_byte).escape_default()
            ),
            SnapshotProblem::InvalidLength { length } => write!(
                f,
                "invalid v2 header length prefix {length} (must be 16 to 1024)"
            ),
            SnapshotProblem::TruncatedHeader {
                version,
                needed,
                available,
            } => write!(
                f,
                "truncated v{version} snapshot header: needs {needed} bytes, the payload has \
                 {available}"
            ),
            SnapshotProblem::SnapEmpty => f.write_str("empty snapshot (no data, or a zero CRC)"),
            SnapshotProblem::SnapUndecodable {
                message,
                offset,
                detail,
            } => write!(f, "cannot decode {message} at byte {offset}: {detail}"),
            SnapshotProblem::SnapCrcMismatch { stored, computed } => write!(
                f,
                "snapshot CRC32C mismatch: stored={stored:08x} computed={computed:08x}"
            ),
            SnapshotProblem::TokenInvalid { version } => {
                write!(f, "snapshot token of unknown version {version}")
            }
            SnapshotProblem::WalNoFiles => f.write_str("no WAL file named SEQ-INDEX.wal"),
            SnapshotProblem::WalUndecodable { offset, detail } => {
                write!(f, "WAL record at byte {offset} does not decode: {detail}")
            }
            SnapshotProblem::WalCrcMismatch {
                offset,
                stored,
                computed,
            } => write!(
                f,
                "WAL record at byte {offset}: CRC mismatch: stored={stored:08x} \
                 computed={computed:08x}"
            ),
        }
    }
}
