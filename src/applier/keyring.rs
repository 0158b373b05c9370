//! The applier's keyring: the KEK (any [`crate::kek::KekBackend`]), the
//! keys it has opened (the keystore, and the unwrap cache that asks the
//! KEK once per wrapped key), where the sidecar lives and how far it is
//! durable, the host's cutover hook and the node's pinned epochs; and the
//! one durable write of `keys.json` an entry makes (SPEC §5).

use std::path::PathBuf;

use super::cutover::RaftCutoverHook;
use crate::error::ApplyError;
use crate::kek::{Dek, SharedKek, UnwrapCache};
use crate::keystore::Keystore;
use crate::sidecar::{self, Sidecar, WriteFailure};
use crate::store::StorageError;
use crate::wire::Purpose;

/// The KEK, the keys it has opened, and where the sidecar lives.
#[derive(Debug)]
pub(super) struct Keyring {
    pub(super) kek: SharedKek,
    pub(super) keystore: Keystore,
    /// The DEKs the KEK opened, by wrapped bytes: each is asked once.
    pub(super) unwrapped: UnwrapCache,
    pub(super) sidecar_path: PathBuf,
    pub(super) on_raft_cutover: Option<RaftCutoverHook>,
    /// The epochs this node pinned at start, recorded on the keys it
    /// rotates to (storage, Raft).
    pub(super) epochs: (u16, u16),
    /// `keys.json` may be in place without being durable (a write failed
    /// after its rename): the next apply that reaches the sidecar writes
    /// it again, since a failed directory fsync may have dropped the
    /// rename for good and only a new rename is sure to reach the disk.
    pub(super) unsynced: bool,
}

impl Keyring {
    /// A KEK with every key of the sidecar at `sidecar_path` (if any)
    /// opened, so a restarted applier carries on where it stopped.
    pub(super) fn open(
        kek: SharedKek,
        sidecar_path: PathBuf,
        on_raft_cutover: Option<RaftCutoverHook>,
        epochs: (u16, u16),
    ) -> Result<Keyring, ApplyError> {
        let mut keyring = Keyring {
            kek,
            keystore: Keystore::new(),
            unwrapped: UnwrapCache::new(),
            sidecar_path,
            on_raft_cutover,
            epochs,
            unsynced: false,
        };
        keyring.sync_from_disk()?;
        keyring.make_durable()?;
        Ok(keyring)
    }

    /// Puts the sidecar's own bytes back through a durable write: an
    /// earlier process may have renamed it into place and died (or failed
    /// its directory fsync) before the rename was durable, and the registry
    /// may already count on it. The same bytes, so a version-1 file stays
    /// one until an apply changes it.
    fn make_durable(&mut self) -> Result<(), ApplyError> {
        let Some(bytes) = sidecar::read_bytes(&self.sidecar_path)? else {
            return Ok(());
        };
        crate::fsutil::replace_private_durable(&self.sidecar_path, &bytes).map_err(|e| {
            ApplyError::Storage(StorageError::new(
                "making keys.json durable at open",
                self.sidecar_path.clone(),
                format!(
                    "{e}: rewriting keys.json with its own bytes failed; its content is unchanged \
                     (nothing was applied), and opening again retries"
                ),
                e.source.raw_os_error(),
            ))
        })
    }

    /// Reads the sidecar from disk and opens every key in it that the
    /// keystore lacks. Done at open and before each bootstrap/rotation, so
    /// the keystore always mirrors the sidecar on disk, even after a
    /// failed write whose outcome is unknown. The KEK is asked only for
    /// wrapped bytes it has not opened yet; the cache keeps the sidecar's.
    pub(super) fn sync_from_disk(&mut self) -> Result<Option<Sidecar>, ApplyError> {
        let Some(sidecar) = sidecar::read(&self.sidecar_path)? else {
            self.unwrapped.retain(|_| false);
            return Ok(None);
        };
        self.unwrapped
            .retain(|w| sidecar.keys.values().any(|k| k.wrapped == w));
        for (&id, key) in &sidecar.keys {
            let dek = self.unwrap(id, key.purpose, &key.wrapped)?;
            self.keystore.install(id, dek)?;
        }
        Ok(Some(sidecar))
    }

    /// The DEK `wrapped` opens to (the KEK asked only the first time).
    /// No LMDB transaction is open when this runs: a KEK may be slow.
    pub(super) fn unwrap(
        &mut self,
        dek_id: u32,
        purpose: Purpose,
        wrapped: &[u8],
    ) -> Result<Dek, ApplyError> {
        self.unwrapped
            .unwrap(&*self.kek, wrapped)
            .map_err(|problem| ApplyError::KekUnwrap {
                dek_id,
                purpose,
                problem,
            })
    }
}

/// The storage fault of a sidecar write that failed: before its rename
/// nothing changed; after it (`e.renamed`) the new file is in place but may
/// not survive a power loss, so the entry took effect (`applied`) without
/// being recorded, and its replay completes it.
pub(super) fn sidecar_fault(path: &std::path::Path, e: &crate::fsutil::WriteError) -> ApplyError {
    let (operation, consequence) = if e.renamed {
        (
            "making keys.json durable",
            "keys.json was replaced but may not survive a power loss; the registry does not \
             record the entry as applied, and replaying it writes keys.json again",
        )
    } else {
        (
            "writing keys.json",
            "keys.json is unchanged and nothing of the entry was committed",
        )
    };
    ApplyError::Storage(StorageError {
        applied: e.renamed,
        ..StorageError::new(
            operation,
            path.to_path_buf(),
            format!("{e}: {consequence}"),
            e.source.raw_os_error(),
        )
    })
}

/// Writes `next` as the sidecar. A failure after the rename marks the
/// sidecar unsynced, so the next write is forced.
pub(super) fn write_sidecar(keyring: &mut Keyring, next: &Sidecar) -> Result<(), ApplyError> {
    match sidecar::write_durable_or_renamed(&keyring.sidecar_path, next) {
        Ok(()) => {
            keyring.unsynced = false;
            Ok(())
        }
        Err(WriteFailure::Invalid(e)) => Err(e.into()),
        Err(WriteFailure::NotWritten(e)) => Err(sidecar_fault(&keyring.sidecar_path, &e)),
        Err(WriteFailure::NotDurable(e)) => {
            keyring.unsynced = true;
            Err(sidecar_fault(&keyring.sidecar_path, &e))
        }
    }
}
