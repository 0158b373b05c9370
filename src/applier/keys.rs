//! Bootstrap and rotation (SPEC §5): validate everything first, then
//! install keys, write the sidecar and commit the registry rows. Every
//! step is idempotent, so replaying an entry after a crash at any point
//! converges to the same state.

use std::sync::Arc;

use super::fault::FaultPoint;
use super::keyring::{write_sidecar, Keyring};
use super::{stage_registration, Applier};
use crate::error::ApplyError;
use crate::kek::Dek;
use crate::keystore::Install;
use crate::registry::RegistryRow;
use crate::rules::{
    check_bootstrap, check_bootstrap_replay, check_purpose, check_rotation, no_kek, Outcome,
};
use crate::sidecar::{self, Sidecar, SidecarKey};
use crate::store::{Aftermath, StorageError, WriteTxn};
use crate::wire::{Bootstrap, PayloadKind, Purpose, Registration, Rotation, ROTATE_DEK};

/// Records a rotated key as Go does (applier.go, writeRotationSidecar): at
/// the node's pinned epoch for its purpose, and, for a key id already
/// there, with the new wrap and a new `created` when the wrap differs (the
/// same DEK wrapped again; the keystore has checked the bytes). An exact
/// replay keeps `created`, so replaying changes nothing else.
pub(super) fn put_rotated_key(
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
pub(super) fn add_key(sidecar: &mut Sidecar, dek_id: u32, purpose: Purpose, wrapped: &[u8]) {
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
pub(super) struct StagedRows(Vec<(Registration, Option<RegistryRow>)>);

impl StagedRows {
    /// Stages `reg` by the four cases in `txn`, remembering the old row.
    pub(super) fn stage(
        &mut self,
        txn: &mut WriteTxn<'_>,
        reg: &Registration,
    ) -> Result<(), ApplyError> {
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
    /// The keyring, or the "no KEK" halt of an entry of `kind`. The entry
    /// points ask for it twice: first, before the payload's own checks, so
    /// that an applier without a KEK halts for that reason whatever the
    /// payload holds; then again to use it, once the checks that borrow
    /// `self` are done.
    pub(super) fn keyring_for(&mut self, kind: PayloadKind) -> Result<&mut Keyring, ApplyError> {
        self.keyring.as_mut().ok_or_else(|| no_kek(kind))
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
        self.keyring_for(PayloadKind::Bootstrap)?;
        check_bootstrap(b)?;
        let keys = [
            (b.storage_dek_id, Purpose::Storage, &b.wrapped_storage),
            (b.raft_dek_id, Purpose::Raft, &b.wrapped_raft),
        ];
        let keyring = self.keyring_for(PayloadKind::Bootstrap)?;
        let current = keyring.sync_from_disk()?;
        check_bootstrap_replay(current.as_ref(), b)?;
        for (id, purpose, _) in keys {
            check_purpose(current.as_ref(), id, purpose)?;
        }
        let mut deks = Vec::with_capacity(2);
        for (id, purpose, wrapped) in keys {
            deks.push((id, keyring.unwrap(id, purpose, wrapped)?));
        }
        for (id, dek) in &deks {
            keyring.keystore.check(*id, dek)?;
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
        self.keyring_for(PayloadKind::Rotation)?;
        if r.sub_tag != ROTATE_DEK {
            return self.apply_cutover_at(r, index);
        }
        check_rotation(r)?;
        let keyring = self.keyring_for(PayloadKind::Rotation)?;
        let current = keyring.sync_from_disk()?;
        let Some(current) = current.filter(Sidecar::is_bootstrapped) else {
            return Err(ApplyError::NotBootstrapped { dek_id: r.dek_id });
        };
        check_purpose(Some(&current), r.dek_id, r.purpose)?;
        let dek = keyring.unwrap(r.dek_id, r.purpose, &r.wrapped)?;
        keyring.keystore.check(r.dek_id, &dek)?;
        let mut next = sidecar::next_version(Some(&current));
        next.advance_raft_applied_index(index);
        next.set_active(r.purpose, r.dek_id);
        let epoch = match r.purpose {
            Purpose::Storage => keyring.epochs.0,
            Purpose::Raft => keyring.epochs.1,
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
        if let Some(cutover) = next
            .raft_cutover_index()
            .filter(|_| r.purpose == Purpose::Raft)
        {
            self.tell_raft_cutover(cutover, r.dek_id)?;
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
    pub(super) fn rows_then_sidecar_then_index(
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
        let keyring = self.keyring_for(kind)?;
        if write || keyring.unsynced {
            if let Err(mut e) = write_sidecar(keyring, next) {
                let renamed = matches!(&e, ApplyError::Storage(s) if s.applied);
                if staged.wrote() && !renamed {
                    if let Err(undo) = self.restore_rows(staged) {
                        // The rows stay (a replay writes the same rows); say so.
                        if let ApplyError::Storage(s) = &mut e {
                            s.aftermath.push(Aftermath::RowsKept {
                                rows: staged.0.len(),
                                undo: undo.to_string(),
                            });
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
            let keyring = self.keyring_for(change.kind)?;
            for (id, dek) in change.deks {
                if keyring.keystore.install(id, dek)? == Install::New {
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
            if let Some(keyring) = self.keyring.as_mut() {
                for id in installed {
                    keyring.keystore.remove(id);
                }
            }
        }
        result
    }
}
