//! Bootstrap and rotation (SPEC §5): validate everything first, then
//! install keys, write the sidecar and commit the registry rows. Every
//! step is idempotent, so replaying an entry after a crash at any point
//! converges to the same state.

use std::path::PathBuf;
use std::sync::Arc;

use super::fault::FaultPoint;
use super::{stage_registration, Applier};
use crate::error::{ApplyError, HookError};
use crate::kek::{Dek, Kek};
use crate::keystore::{Install, Keystore};
use crate::registry::RegistryRow;
use crate::rules::{
    check_bootstrap, check_bootstrap_replay, check_cutover, check_purpose, check_rotation,
    cutover_branch, no_kek, CutoverBranch, Outcome,
};
use crate::sidecar::{self, Sidecar, SidecarKey, WriteFailure};
use crate::store::{StorageError, WriteTxn};
use crate::wire::{
    Bootstrap, PayloadKind, Purpose, Registration, Rotation, ENABLE_RAFT_ENVELOPE, ROTATE_DEK,
};

/// The host's `on_raft_cutover(cutover_index, active_raft_dek_id)`: told
/// when the Raft layer is cut over (and again on each replay, and after a
/// Raft rotation past the cutover), so it can start reading enveloped
/// entries after `cutover_index`. Its error halts the entry.
#[derive(Clone)]
pub struct RaftCutoverHook(pub Arc<dyn Fn(u64, u32) -> Result<(), HookError> + Send + Sync>);

impl std::fmt::Debug for RaftCutoverHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RaftCutoverHook")
    }
}

/// The KEK, the keys it has opened, and where the sidecar lives.
#[derive(Debug)]
pub(super) struct Crypto {
    pub(super) kek: Kek,
    pub(super) keystore: Keystore,
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

impl Crypto {
    /// A KEK with every key of the sidecar at `sidecar_path` (if any)
    /// opened, so a restarted applier carries on where it stopped.
    pub(super) fn open(
        kek: Kek,
        sidecar_path: PathBuf,
        on_raft_cutover: Option<RaftCutoverHook>,
        epochs: (u16, u16),
    ) -> Result<Crypto, ApplyError> {
        let mut crypto = Crypto {
            kek,
            keystore: Keystore::new(),
            sidecar_path,
            on_raft_cutover,
            epochs,
            unsynced: false,
        };
        crypto.sync_from_disk()?;
        crypto.make_durable()?;
        Ok(crypto)
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
            ApplyError::Storage(StorageError {
                operation: "making keys.json durable at open",
                path: self.sidecar_path.clone(),
                detail: format!(
                    "{e}: rewriting keys.json with its own bytes failed; its content is unchanged \
                     (nothing was applied), and opening again retries"
                ),
                code: e.source.raw_os_error(),
                replay_from: None,
                applied: false,
            })
        })
    }

    /// Reads the sidecar from disk and opens every key in it that the
    /// keystore lacks. Done at open and before each bootstrap/rotation, so
    /// the keystore always mirrors the sidecar on disk, even after a
    /// failed write whose outcome is unknown.
    fn sync_from_disk(&mut self) -> Result<Option<Sidecar>, ApplyError> {
        let Some(sidecar) = sidecar::read(&self.sidecar_path)? else {
            return Ok(None);
        };
        for (&id, key) in &sidecar.keys {
            let dek = self.unwrap(id, key.purpose, &key.wrapped)?;
            self.keystore.install(id, dek)?;
        }
        Ok(Some(sidecar))
    }

    fn unwrap(&self, dek_id: u32, purpose: Purpose, wrapped: &[u8]) -> Result<Dek, ApplyError> {
        self.kek
            .unwrap(wrapped)
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
fn sidecar_fault(path: &std::path::Path, e: &crate::fsutil::WriteError) -> ApplyError {
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
        operation,
        path: path.to_path_buf(),
        detail: format!("{e}: {consequence}"),
        code: e.source.raw_os_error(),
        replay_from: None,
        applied: e.renamed,
    })
}

/// Writes `next` as the sidecar. A failure after the rename marks the
/// sidecar unsynced, so the next write is forced.
fn write_sidecar(crypto: &mut Crypto, next: &Sidecar) -> Result<(), ApplyError> {
    match sidecar::write_durable_or_renamed(&crypto.sidecar_path, next) {
        Ok(()) => {
            crypto.unsynced = false;
            Ok(())
        }
        Err(WriteFailure::Invalid(e)) => Err(e.into()),
        Err(WriteFailure::NotWritten(e)) => Err(sidecar_fault(&crypto.sidecar_path, &e)),
        Err(WriteFailure::NotDurable(e)) => {
            crypto.unsynced = true;
            Err(sidecar_fault(&crypto.sidecar_path, &e))
        }
    }
}

/// Records a rotated key as Go does (applier.go, writeRotationSidecar): at
/// the node's pinned epoch for its purpose, and, for a key id already
/// there, with the new wrap and a new `created` when the wrap differs (the
/// same DEK wrapped again; the keystore has checked the bytes). An exact
/// replay keeps `created`, so replaying changes nothing else.
fn put_rotated_key(
    sidecar: &mut Sidecar,
    dek_id: u32,
    purpose: Purpose,
    wrapped: &[u8],
    epoch: u16,
) {
    match sidecar.keys.get_mut(&dek_id) {
        Some(key) => {
            if key.wrapped != wrapped {
                key.wrapped = wrapped.to_vec();
                key.created = sidecar::rfc3339_now();
            }
            key.local_epoch = epoch;
        }
        None => {
            sidecar.keys.insert(
                dek_id,
                SidecarKey {
                    purpose,
                    wrapped: wrapped.to_vec(),
                    created: sidecar::rfc3339_now(),
                    local_epoch: epoch,
                },
            );
        }
    }
}

/// Adds a bootstrap key to `sidecar`, keeping an entry that is already
/// there (a bootstrap is only ever replayed exactly). Bootstrap keys start
/// at local epoch 0, as in Go.
fn add_key(sidecar: &mut Sidecar, dek_id: u32, purpose: Purpose, wrapped: &[u8]) {
    sidecar.keys.entry(dek_id).or_insert_with(|| SidecarKey {
        purpose,
        wrapped: wrapped.to_vec(),
        created: sidecar::rfc3339_now(),
        local_epoch: 0,
    });
}

/// The registry rows an entry staged, each with what its key held before,
/// so that a failure before the sidecar's point of no return can take
/// them back.
#[derive(Default)]
struct StagedRows(Vec<(Registration, Option<RegistryRow>)>);

impl StagedRows {
    /// Stages `reg` by the four cases in `txn`, remembering the old row.
    fn stage(&mut self, txn: &mut WriteTxn<'_>, reg: &Registration) -> Result<(), ApplyError> {
        let previous = txn.get_row(reg.dek_id, reg.node_id16())?;
        if stage_registration(txn, reg)?.is_some() {
            self.0.push((*reg, previous));
        }
        Ok(())
    }

    fn wrote(&self) -> bool {
        !self.0.is_empty()
    }
}

/// What a validated bootstrap or rotation will change, computed before
/// anything is changed.
struct KeyChange {
    kind: PayloadKind,
    deks: Vec<(u32, Dek)>,
    current: Option<Sidecar>,
    next: Sidecar,
}

impl Applier {
    fn crypto_for(&mut self, kind: PayloadKind) -> Result<&mut Crypto, ApplyError> {
        self.crypto.as_mut().ok_or_else(|| no_kek(kind))
    }

    pub fn apply_bootstrap(&mut self, b: &Bootstrap) -> Result<Outcome, ApplyError> {
        self.apply_entry_at(&crate::wire::Entry::Bootstrap(b.clone()), None)
    }

    /// SPEC §5 bootstrap: validate everything, then install both keys,
    /// write the sidecar and insert the batch rows.
    pub(super) fn apply_bootstrap_at(
        &mut self,
        b: &Bootstrap,
        index: Option<u64>,
    ) -> Result<Outcome, ApplyError> {
        b.validate()?;
        self.crypto_for(PayloadKind::Bootstrap)?;
        check_bootstrap(b)?;
        let keys = [
            (b.storage_dek_id, Purpose::Storage, &b.wrapped_storage),
            (b.raft_dek_id, Purpose::Raft, &b.wrapped_raft),
        ];
        let crypto = self.crypto_for(PayloadKind::Bootstrap)?;
        let current = crypto.sync_from_disk()?;
        check_bootstrap_replay(current.as_ref(), b)?;
        for (id, purpose, _) in keys {
            check_purpose(current.as_ref(), id, purpose)?;
        }
        let mut deks = Vec::with_capacity(2);
        for (id, purpose, wrapped) in keys {
            deks.push((id, crypto.unwrap(id, purpose, wrapped)?));
        }
        for (id, dek) in &deks {
            crypto.keystore.check(*id, dek)?;
        }
        let mut next = sidecar::next_version(current.as_ref());
        next.advance_raft_applied_index(index);
        next.active_storage = b.storage_dek_id;
        next.active_raft = b.raft_dek_id;
        for (id, purpose, wrapped) in keys {
            add_key(&mut next, id, purpose, wrapped);
        }
        self.fault_at(FaultPoint::AfterUnwrap)?;

        // The batch rows go through the four-case rules in one transaction
        // before anything else changes: a row that halts halts the entry.
        let env = Arc::clone(&self.env);
        let mut txn = env.begin_write()?;
        let mut staged = StagedRows::default();
        for row in &b.batch_registry {
            staged.stage(&mut txn, row)?;
        }
        let change = KeyChange {
            kind: PayloadKind::Bootstrap,
            deks,
            current,
            next,
        };
        let changed = self.install_and_persist(change, txn, staged, index)?;
        Ok(if changed {
            Outcome::Bootstrapped
        } else {
            Outcome::Unchanged
        })
    }

    pub fn apply_rotation(&mut self, r: &Rotation) -> Result<Outcome, ApplyError> {
        self.apply_entry_at(&crate::wire::Entry::Rotation(r.clone()), None)
    }

    /// SPEC §5 rotation: a new DEK for one purpose becomes active (older
    /// keys stay), then the proposer's registration is applied.
    pub(super) fn apply_rotation_at(
        &mut self,
        r: &Rotation,
        index: Option<u64>,
    ) -> Result<Outcome, ApplyError> {
        r.validate()?;
        self.crypto_for(PayloadKind::Rotation)?;
        if r.sub_tag != ROTATE_DEK {
            return self.apply_cutover_at(r, index);
        }
        check_rotation(r)?;
        let crypto = self.crypto_for(PayloadKind::Rotation)?;
        let current = crypto.sync_from_disk()?;
        let Some(current) = current.filter(Sidecar::is_bootstrapped) else {
            return Err(ApplyError::NotBootstrapped { dek_id: r.dek_id });
        };
        check_purpose(Some(&current), r.dek_id, r.purpose)?;
        let dek = crypto.unwrap(r.dek_id, r.purpose, &r.wrapped)?;
        crypto.keystore.check(r.dek_id, &dek)?;
        let mut next = sidecar::next_version(Some(&current));
        next.advance_raft_applied_index(index);
        next.set_active(r.purpose, r.dek_id);
        let epoch = match r.purpose {
            Purpose::Storage => crypto.epochs.0,
            Purpose::Raft => crypto.epochs.1,
        };
        put_rotated_key(&mut next, r.dek_id, r.purpose, &r.wrapped, epoch);
        self.fault_at(FaultPoint::AfterUnwrap)?;

        let env = Arc::clone(&self.env);
        let mut txn = env.begin_write()?;
        let mut staged = StagedRows::default();
        staged.stage(&mut txn, &r.proposer)?;
        // Past the Raft cutover, a new Raft key must reach the host before
        // anything is written (Go tells it after; we keep "a halt writes
        // nothing", and a replay tells it again).
        if r.purpose == Purpose::Raft && next.raft_envelope_cutover_index != 0 {
            self.tell_raft_cutover(next.raft_envelope_cutover_index, r.dek_id)?;
        }
        let change = KeyChange {
            kind: PayloadKind::Rotation,
            deks: vec![(r.dek_id, dek)],
            current: Some(current),
            next,
        };
        let changed = self.install_and_persist(change, txn, staged, index)?;
        Ok(if changed {
            Outcome::Rotated
        } else {
            Outcome::Unchanged
        })
    }

    /// An envelope cutover (sub-tags 0x04/0x05, SPEC §7): Go's stale /
    /// already-active / fresh branches, in Go's order per layer. Only the
    /// fresh branch applies the proposer row (by the four cases) and flips
    /// the sidecar; every branch advances the Raft applied index. The Raft
    /// hook runs before anything is written.
    fn apply_cutover_at(
        &mut self,
        r: &Rotation,
        index: Option<u64>,
    ) -> Result<Outcome, ApplyError> {
        check_cutover(r, index)?;
        let crypto = self.crypto_for(PayloadKind::Rotation)?;
        let Some(current) = crypto.sync_from_disk()?.filter(Sidecar::is_bootstrapped) else {
            return Err(ApplyError::NotBootstrapped { dek_id: r.dek_id });
        };
        let branch = cutover_branch(&current, r);
        let raft = r.sub_tag == ENABLE_RAFT_ENVELOPE;
        let mut next = sidecar::next_version(Some(&current));
        next.advance_raft_applied_index(index);
        let env = Arc::clone(&self.env);
        let mut txn = env.begin_write()?;
        let mut staged = StagedRows::default();
        if branch == CutoverBranch::Fresh {
            staged.stage(&mut txn, &r.proposer)?;
            if raft {
                next.raft_envelope_cutover_index = index.unwrap_or(0);
            } else {
                next.storage_envelope_active = true;
                next.storage_envelope_cutover_index = index.unwrap_or(0);
            }
        }
        if raft && branch != CutoverBranch::Stale {
            self.tell_raft_cutover(next.raft_envelope_cutover_index, next.active_raft)?;
        }
        let write = current != next;
        self.rows_then_sidecar_then_index(
            PayloadKind::Rotation,
            txn,
            &staged,
            write,
            &next,
            index,
        )?;
        Ok(match branch {
            CutoverBranch::Fresh => Outcome::Enabled,
            CutoverBranch::AlreadyActive => Outcome::AlreadyActive,
            CutoverBranch::Stale => Outcome::StaleDek,
        })
    }

    /// Takes back the rows `staged` committed (in reverse, so a key staged
    /// twice gets its first value back).
    fn restore_rows(&self, staged: &StagedRows) -> Result<(), ApplyError> {
        let mut txn = self.env.begin_write()?;
        for (reg, previous) in staged.0.iter().rev() {
            match previous {
                Some(row) => txn.put_row(row)?,
                None => txn.delete_row(reg.dek_id, reg.node_id16())?,
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The order of every entry that changes keys.json (Go's for the
    /// cutovers): its registry rows first, committed without the index;
    /// then keys.json; then the applied index. A power loss or crash
    /// between them leaves rows the sidecar does not need yet (harmless:
    /// the replay finds them unchanged), never a keys.json that names a key
    /// or an active envelope whose proposer has no row, a state in which
    /// the node could write under a key the registry does not reserve its
    /// nonce prefix for. A keys.json write that fails before its rename
    /// takes the rows back (a failed apply writes nothing); past the rename
    /// the rows stay with the live sidecar, and the replay completes it.
    fn rows_then_sidecar_then_index(
        &mut self,
        kind: PayloadKind,
        txn: WriteTxn<'_>,
        staged: &StagedRows,
        write: bool,
        next: &Sidecar,
        index: Option<u64>,
    ) -> Result<(), ApplyError> {
        self.fault_at(FaultPoint::BeforeRegistryCommit)?;
        if staged.wrote() {
            txn.commit()?;
        } else {
            drop(txn);
        }
        self.fault_at(FaultPoint::AfterRegistryRows)?;
        let crypto = self.crypto_for(kind)?;
        if write || crypto.unsynced {
            if let Err(mut e) = write_sidecar(crypto, next) {
                let renamed = matches!(&e, ApplyError::Storage(s) if s.applied);
                if staged.wrote() && !renamed {
                    if let Err(undo) = self.restore_rows(staged) {
                        // The rows stay (a replay writes the same rows); say so.
                        if let ApplyError::Storage(s) = &mut e {
                            s.detail = format!(
                                "{}; and the {} registry row(s) committed before it could not be \
                                 taken back ({undo}): a replay of this entry writes the same rows",
                                s.detail,
                                staged.0.len()
                            );
                        }
                    }
                }
                return Err(e);
            }
        }
        // From here keys.json holds the entry: a failure to record the
        // index is past the point of no return too, completed by the replay.
        let past_no_return = |e: ApplyError| match e {
            ApplyError::Storage(s) if write => {
                ApplyError::Storage(StorageError { applied: true, ..s })
            }
            other => other,
        };
        self.fault_at(FaultPoint::AfterSidecarWrite)
            .map_err(past_no_return)?;
        let env = Arc::clone(&self.env);
        let txn = env.begin_write().map_err(|e| past_no_return(e.into()))?;
        self.finish(txn, false, index).map_err(past_no_return)
    }

    fn tell_raft_cutover(&self, cutover_index: u64, dek_id: u32) -> Result<(), ApplyError> {
        let Some(hook) = self.crypto.as_ref().and_then(|c| c.on_raft_cutover.clone()) else {
            return Ok(());
        };
        (hook.0)(cutover_index, dek_id).map_err(|failure| ApplyError::CutoverHook {
            cutover_index,
            dek_id,
            failure,
        })
    }

    /// The mutating tail shared by bootstrap and rotation: keystore, then
    /// registry rows, keys.json and the index (see
    /// [`Applier::rows_then_sidecar_then_index`]). Returns whether anything
    /// changed. A failure takes back the keys this call installed, unless
    /// the sidecar holding them is in place.
    fn install_and_persist(
        &mut self,
        change: KeyChange,
        txn: WriteTxn<'_>,
        staged: StagedRows,
        index: Option<u64>,
    ) -> Result<bool, ApplyError> {
        let mut installed = Vec::new();
        let result = (|| {
            let crypto = self.crypto_for(change.kind)?;
            for (id, dek) in change.deks {
                if crypto.keystore.install(id, dek)? == Install::New {
                    installed.push(id);
                }
            }
            self.fault_at(FaultPoint::AfterKeystoreInstall)?;
            // A version-1 file is written again as version 2, but that alone
            // is no change the outcome reports.
            let sidecar_changed = change
                .current
                .as_ref()
                .map(|c| sidecar::next_version(Some(c)))
                != Some(change.next.clone());
            let write = change.current.as_ref() != Some(&change.next);
            self.rows_then_sidecar_then_index(
                change.kind,
                txn,
                &staged,
                write,
                &change.next,
                index,
            )?;
            Ok(sidecar_changed || staged.wrote() || !installed.is_empty())
        })();
        if let Err(ApplyError::Storage(s)) = &result {
            if s.applied {
                return result;
            }
        }
        if result.is_err() {
            if let Some(crypto) = self.crypto.as_mut() {
                for id in installed {
                    crypto.keystore.remove(id);
                }
            }
        }
        result
    }
}
