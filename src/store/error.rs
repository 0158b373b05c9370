//! The store's errors: a storage fault (with the replay rule's fields),
//! why an environment could not be opened, and a failed read of a row.

use std::fmt;
use std::path::{Path, PathBuf};

use super::verify::Damage;
use crate::registry::RegistryCorruption;

/// An LMDB or file-system fault.
#[derive(Debug, Clone, thiserror::Error)]
#[error("storage fault while {operation} in {}: {detail}{}", path.display(), Aftermaths(aftermath))]
pub struct StorageError {
    pub operation: &'static str,
    pub path: PathBuf,
    pub detail: String,
    /// The LMDB or errno code, when there is one.
    pub code: Option<i32>,
    /// Set by the `Applier` on every storage fault it raises: the Raft
    /// index the host replays from (`durable_index + 1`); `None` when no
    /// index was ever made durable, i.e. from the log's first entry. The
    /// one replay rule of the durability guide.
    pub replay_from: Option<u64>,
    /// The entry's change is in place past its point of no return (a
    /// `keys.json` renamed over the old one) but not yet durable, and not
    /// recorded as applied: the replay from `replay_from` completes it.
    pub applied: bool,
    /// What else the failure left behind, learnt after the fault itself;
    /// each adds a clause to the message.
    pub aftermath: Vec<Aftermath>,
}

/// A consequence of a storage fault, known only once it was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aftermath {
    /// LMDB then marked the environment unusable (a failed meta write).
    EnvironmentUnusable,
    /// Group commit: the staged entries this commit carried are gone.
    StagedNotCommitted {
        entries: usize,
        /// The highest Raft index among them; `None` when they were
        /// applied without indexes.
        through_index: Option<u64>,
    },
    /// The registry rows an entry committed before its keys.json write
    /// failed could not be taken back (why: `undo`).
    RowsKept { rows: usize, undo: String },
    /// A resync made a backup of keys.json and then failed before
    /// replacing keys.json; the backup could not be removed (why: `undo`).
    BackupKept { path: PathBuf, undo: String },
}

impl fmt::Display for Aftermath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Aftermath::EnvironmentUnusable => write!(
                f,
                "LMDB then marked the environment unusable: {}",
                super::REOPEN_HINT
            ),
            Aftermath::StagedNotCommitted {
                entries,
                through_index,
            } => {
                let noun = if *entries == 1 { "entry" } else { "entries" };
                write!(f, "the {entries} staged {noun} (")?;
                match through_index {
                    Some(i) => write!(f, "Raft indexes up to {i}")?,
                    None => f.write_str("applied without indexes")?,
                }
                f.write_str(") were not committed")
            }
            Aftermath::RowsKept { rows, undo } => write!(
                f,
                "and the {rows} registry row(s) committed before it could not be taken back \
                 ({undo}): a replay of this entry writes the same rows"
            ),
            Aftermath::BackupKept { path, undo } => write!(
                f,
                "and the backup {} it had made could not be removed ({undo}); it holds the \
                 current keys.json's bytes",
                path.display()
            ),
        }
    }
}

/// The aftermath clauses of a message, each after "; ".
struct Aftermaths<'a>(&'a [Aftermath]);

impl fmt::Display for Aftermaths<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|a| write!(f, "; {a}"))
    }
}

impl StorageError {
    pub fn new(
        operation: &'static str,
        path: impl Into<PathBuf>,
        detail: impl Into<String>,
        code: Option<i32>,
    ) -> StorageError {
        StorageError {
            operation,
            path: path.into(),
            detail: detail.into(),
            code,
            replay_from: None,
            applied: false,
            aftermath: Vec::new(),
        }
    }

    /// LMDB's "map full": nothing of the transaction was committed, and
    /// it may be retried once the map has grown.
    pub fn is_map_full(&self) -> bool {
        self.code == Some(super::ffi::MAP_FULL)
    }
}

/// Why an `Applier` or `Registry` could not be opened. Not a halt: no entry
/// was involved.
#[derive(Debug, thiserror::Error)]
#[error("cannot open registry at {}: {reason}", path.display())]
pub struct OpenError {
    pub path: PathBuf,
    pub reason: String,
    /// Set when the reason is damage found in `data.mdb`.
    pub damage: Option<Damage>,
    /// `data.mdb` is a creation no commit ever completed
    /// ([`super::verify::never_committed`]): no entry was ever acknowledged from
    /// it, and an `Applier` re-creates it when asked to explicitly.
    pub never_committed: bool,
}

/// A read of the registry that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Corruption(#[from] RegistryCorruption),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub(crate) fn open_error(path: &Path, reason: impl Into<String>) -> OpenError {
    OpenError {
        path: path.to_path_buf(),
        reason: reason.into(),
        damage: None,
        never_committed: false,
    }
}

/// The open refused because of damage found in `data.mdb`.
pub(super) fn damaged(path: &Path, damage: Damage) -> OpenError {
    OpenError {
        path: path.to_path_buf(),
        reason: format!(
            "data.mdb is damaged ({}): {damage}; nothing was read from it. Run \
             `encryption-applier verify` for every problem, and restore the registry from a \
             replica or a backup",
            damage.kind.code()
        ),
        damage: Some(damage),
        never_committed: false,
    }
}
