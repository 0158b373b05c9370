//! The store's errors: a storage fault (with the replay rule's fields),
//! why an environment could not be opened, and a failed read of a row.

use std::path::{Path, PathBuf};

use super::verify::Damage;
use crate::registry::RegistryCorruption;

/// An LMDB or file-system fault.
#[derive(Debug, Clone, thiserror::Error)]
#[error("storage fault while {operation} in {}: {detail}", path.display())]
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
}

impl StorageError {
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
