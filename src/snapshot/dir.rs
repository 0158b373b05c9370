//! The newest snapshot of a Raft group's data directory, chosen as
//! elastickv's `OpenNewestFSMSnapshotPayload(dataDir)` chooses it
//! (internal/raftengine/etcd/fsm_snapshot_file.go:406-435 at d9a031d0):
//!
//! 1. no `wal/` holding a `.wal` name: no snapshot (:407-410);
//! 2. the WAL's committed snapshot records (`loadPersistedSnapshot`,
//!    wal_store.go:331-345; see [`super::wal`]);
//! 3. etcd's `Snapshotter.LoadNewestAvailable` over `snap/` (etcd v3.7.0
//!    snapshotter.go:114-155, 200-255): every name ending in `.snap`
//!    (`db.tmp*` names excepted, which etcd deletes), newest first by byte
//!    order of the names; the first that `snap.Read` accepts *and* whose
//!    metadata `(term, index)` is one of the WAL's records wins; none: no
//!    snapshot. A `.snap` that cannot be read is passed over (etcd renames
//!    it `*.snap.broken`; nothing is renamed here);
//! 4. `snap/` missing or unlistable is an error (snapshotter.go:203-206).
//!
//! Names like `*.snap.tmp` and `*.snap.broken` do not end in `.snap` and
//! are never candidates. Nothing here writes or renames anything.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::problem::SnapshotError;
use super::snapfile::{self, RaftSnapshot};
use super::source::{Missing, Source};
use super::wal;

/// walDirName and snapDirName (wal_store.go:23-24).
pub(crate) const WAL_DIR: &str = "wal";
pub(crate) const SNAP_DIR: &str = "snap";

/// The chosen `.snap` file, open and decoded.
pub(crate) struct Chosen {
    pub(crate) src: Source,
    pub(crate) snapshot: RaftSnapshot,
}

/// Why a directory has no snapshot, or which one Go loads.
pub(crate) enum Newest {
    /// `wal/` has no `.wal` name: Go does not look for a snapshot.
    NoWal,
    /// No `.snap` is both readable and vouched for by the WAL.
    NoSnapshot,
    Chosen(Chosen),
}

/// The snapshot Go loads from `data_dir`.
pub(crate) fn newest(data_dir: &Path) -> Result<Newest, SnapshotError> {
    let wal_dir = data_dir.join(WAL_DIR);
    if !wal::exists(&wal_dir) {
        return Ok(Newest::NoWal);
    }
    let vouched = wal::valid_snapshot_entries(&wal_dir)?;
    let snap_dir = data_dir.join(SNAP_DIR);
    let mut names: Vec<PathBuf> = wal::sorted_names(&snap_dir)?
        .into_iter()
        .filter(|n| {
            let b = n.as_bytes();
            !b.starts_with(b"db.tmp") && b.ends_with(b".snap")
        })
        .map(|n| snap_dir.join(n))
        .collect();
    names.reverse();
    for path in names {
        let Ok(mut src) = Source::open(&path, Missing::CannotOpen) else {
            continue;
        };
        let Ok(snapshot) = snapfile::decode(&mut src) else {
            continue;
        };
        if vouched.iter().rev().any(|v| *v == snapshot.meta) {
            return Ok(Newest::Chosen(Chosen { src, snapshot }));
        }
    }
    Ok(Newest::NoSnapshot)
}
