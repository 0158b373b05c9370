//! Follower-side resync of `keys.json` from the Raft log: elastickv's
//! planned `resync-sidecar` (design §5.5 "manual on a stuck follower, log
//! replay path", §6.6; Go HEAD has only the leader's `ResyncSidecar` RPC).
//!
//! A node whose sidecar fell behind its registry (a failed write, a
//! restored backup, a sidecar written by a Go node that crashed between
//! its steps) replays the bootstrap, rotation and cutover entries of the
//! gap into keys.json with the checks `apply` makes, and nothing else:
//!
//! - the gap is `(raft_applied_index, through]`, `through` being the
//!   registry's applied index; the log given must hold every entry of it
//!   ([`LogSlice::covers`]), or nothing is done;
//! - it writes keys.json only, never the registry: the entries of the gap
//!   are at or below the registry's applied index, so their rows are
//!   there already, and applying them again would run the four cases on
//!   rows that later registrations moved on (a halt, or an epoch taken
//!   back). Entries past `through` are left to `apply`, which writes rows
//!   and keys.json together;
//! - every key's `local_epoch` becomes at least this node's own
//!   `last_seen_local_epoch` under it, read from its own registry row (as
//!   Go's `WriterRegistryForCaller` projects it); nothing of another
//!   node's comes in. The next start's bump then puts it strictly above
//!   every epoch this node used;
//! - it is all or nothing: the whole new file is computed first, the old
//!   one is kept beside it (`<name>.before-resync-<index>`, durable before
//!   the new one is renamed into place), and a dry run stops before
//!   writing.

use std::path::{Path, PathBuf};

use super::keyring::write_sidecar;
use super::keys::{add_key, put_rotated_key};
use super::Applier;
use crate::error::ApplyError;
use crate::kek::Dek;
use crate::raftlog::LogSlice;
use crate::rules::{
    check_bootstrap, check_bootstrap_replay, check_cutover, check_purpose, check_rotation,
    cutover_branch, CutoverBranch, Outcome,
};
use crate::sidecar::{self, Sidecar};
use crate::store::{Aftermath, StorageError};
use crate::wire::{
    node_id16, Entry, PayloadKind, Purpose, Rotation, ENABLE_RAFT_ENVELOPE, ENCRYPTION_OPCODES,
    ROTATE_DEK,
};

/// A run of the Raft log with its entries (opcode first; empty for an
/// entry without an FSM payload), the first at `first_index`.
#[derive(Debug, Clone, Copy)]
pub struct ResyncLog<'a> {
    pub first_index: u64,
    pub entries: &'a [Vec<u8>],
}

/// One entry of the gap that reached keys.json, and what it did there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    pub index: u64,
    pub kind: PayloadKind,
    pub sub_tag: Option<u8>,
    pub outcome: Outcome,
}

/// A key whose `local_epoch` was raised to this node's own registry row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochRaise {
    pub dek_id: u32,
    pub from: u16,
    pub to: u16,
}

/// What a resync did (or, in a dry run, would do).
#[derive(Debug, Clone)]
pub struct SidecarResync {
    pub sidecar_path: PathBuf,
    /// The sidecar's index before: the gap starts after it.
    pub sidecar_applied_index: u64,
    /// The last index replayed: the registry's applied index.
    pub through_index: u64,
    pub replayed: Vec<Replayed>,
    /// Entries of the gap that do not touch keys.json (registrations,
    /// entries without a payload, other FSM entries).
    pub passed_over: usize,
    /// Entries of the log past `through_index`, left to `apply`.
    pub left_for_apply: Option<(u64, u64)>,
    pub epochs: Vec<EpochRaise>,
    pub before: Option<Sidecar>,
    pub after: Sidecar,
    pub dry_run: bool,
    /// Whether keys.json was written (never in a dry run).
    pub written: bool,
    /// Where the old keys.json was kept, when it was written.
    pub backup: Option<PathBuf>,
}

impl SidecarResync {
    /// Whether keys.json differs (or would differ) from what it was. With
    /// no file before, only a bootstrap makes one.
    pub fn changed(&self) -> bool {
        match &self.before {
            Some(before) => *before != self.after,
            None => self.after.is_bootstrapped(),
        }
    }
}

/// Why a resync did nothing.
#[derive(Debug, thiserror::Error)]
pub enum ResyncError {
    #[error(
        "the log given {} does not hold every entry of the gap {}..={through_index} after the \
         sidecar's raft_applied_index={sidecar_applied_index}; nothing was written",
        log_range.map_or("is empty".to_string(), |(a, b)| format!("holds entries {a}..={b} only, so it")),
        sidecar_applied_index.saturating_add(1)
    )]
    Uncovered {
        sidecar_applied_index: u64,
        through_index: u64,
        log_range: Option<(u64, u64)>,
    },
    #[error("resync halted at the entry at Raft index {index} (log position {position}): {error}; nothing was written")]
    Halt {
        index: u64,
        position: usize,
        error: Box<ApplyError>,
    },
    #[error(
        "through_index={through} is past the registry's applied index ({}): entries the \
         registry has not applied are apply's to replay (rows and keys.json together)",
        registry.map_or("none".to_string(), |i| i.to_string())
    )]
    ThroughPastRegistry { through: u64, registry: Option<u64> },
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

impl Applier {
    /// Replays the sidecar entries of `log` that keys.json is behind on
    /// (see the module's documentation); `through` defaults to the
    /// registry's applied index. `full_node_id` is this node's: its own
    /// registry rows raise the keys' local epochs. With `dry_run`, nothing
    /// is written.
    pub fn resync_sidecar(
        &mut self,
        log: ResyncLog<'_>,
        full_node_id: u64,
        through: Option<u64>,
        dry_run: bool,
    ) -> Result<SidecarResync, ResyncError> {
        self.keyring_for(PayloadKind::Rotation)?;
        // Staged entries count as applied: commit them first, so the
        // registry's index is the one on disk.
        self.flush()?;
        let registry = self.applied_index();
        let through = through.unwrap_or(registry.unwrap_or(0));
        if through > registry.unwrap_or(0) {
            return Err(ResyncError::ThroughPastRegistry { through, registry });
        }
        let keyring = self.keyring_for(PayloadKind::Rotation)?;
        let path = keyring.sidecar_path.clone();
        let before = keyring.sync_from_disk()?;
        let after_index = before.as_ref().map_or(0, |s| s.raft_applied_index);
        let opcodes: Vec<Option<u8>> = log.entries.iter().map(|e| e.first().copied()).collect();
        let slice = LogSlice {
            first_index: log.first_index,
            opcodes: &opcodes,
        };
        if !slice.covers(after_index, through) {
            return Err(ResyncError::Uncovered {
                sidecar_applied_index: after_index,
                through_index: through,
                log_range: slice.last_index().map(|last| (log.first_index, last)),
            });
        }
        let mut replay = Replay {
            next: sidecar::next_version(before.as_ref()),
            current: before.clone(),
            deks: Vec::new(),
            replayed: Vec::new(),
            passed_over: 0,
        };
        for (position, (index, entry)) in (log.first_index..).zip(log.entries).enumerate() {
            if index <= after_index || index > through {
                continue;
            }
            replay
                .entry(self, index, entry)
                .map_err(|error| ResyncError::Halt {
                    index,
                    position,
                    error: Box::new(error),
                })?;
        }
        let mut next = replay.next;
        next.advance_raft_applied_index(Some(through));
        let epochs = self.raise_epochs(&mut next, full_node_id)?;
        let left_for_apply = slice
            .last_index()
            .filter(|&last| last > through)
            .map(|last| (through.max(log.first_index.saturating_sub(1)) + 1, last));
        let mut report = SidecarResync {
            sidecar_path: path.clone(),
            sidecar_applied_index: after_index,
            through_index: through,
            replayed: replay.replayed,
            passed_over: replay.passed_over,
            left_for_apply,
            epochs,
            before,
            after: next,
            dry_run,
            written: false,
            backup: None,
        };
        let keyring = self.keyring_for(PayloadKind::Rotation)?;
        if dry_run || !(report.changed() || keyring.unsynced) {
            return Ok(report);
        }
        let mut made = None;
        if report.before.is_some() {
            let (backup, fresh) = keep_backup(&path, after_index)?;
            report.backup = Some(backup.clone());
            made = fresh.then_some(backup);
        }
        if let Err(mut e) = write_sidecar(keyring, &report.after) {
            // keys.json was not replaced: a backup made by this call goes
            // too, so a failed resync writes nothing.
            if let (ApplyError::Storage(s), Some(backup)) = (&mut e, made) {
                if !s.applied {
                    if let Err(undo) = crate::fsutil::remove_durable(&backup) {
                        s.aftermath.push(Aftermath::BackupKept {
                            path: backup,
                            undo: undo.to_string(),
                        });
                    }
                }
            }
            return Err(e.into());
        }
        report.written = true;
        // The keystore mirrors keys.json: the replayed keys are in it now.
        for (id, dek) in replay.deks {
            keyring.keystore.install(id, dek)?;
        }
        Ok(report)
    }

    /// Records in keys.json what this node's own sidecar holds: each key's
    /// `local_epoch` at least this node's `last_seen` under it, read from
    /// its own registry row. An elastickv node bumps its sidecar before it
    /// proposes a registration at the new epoch, so a node's keys.json is
    /// never behind its own rows; an applier replaying the log as that node
    /// (which does not see its starts) records the same. Staged entries are
    /// committed first; keys.json is written (durably) only when an epoch
    /// moves, and nothing else of it changes. Without a sidecar, nothing.
    pub fn record_own_epochs(&mut self, full_node_id: u64) -> Result<Vec<EpochRaise>, ApplyError> {
        self.keyring_for(PayloadKind::Rotation)?;
        self.flush()?;
        let keyring = self.keyring_for(PayloadKind::Rotation)?;
        let Some(current) = keyring.sync_from_disk()? else {
            return Ok(Vec::new());
        };
        let mut next = current.clone();
        let raised = self.raise_epochs(&mut next, full_node_id)?;
        if !raised.is_empty() {
            let keyring = self.keyring_for(PayloadKind::Rotation)?;
            write_sidecar(keyring, &sidecar::next_version(Some(&next)))?;
        }
        Ok(raised)
    }

    /// Raises each key's local epoch to this node's `last_seen` under it;
    /// a row at this node's prefix that belongs to another node is the
    /// collision Go's projection refuses.
    fn raise_epochs(
        &self,
        next: &mut Sidecar,
        full_node_id: u64,
    ) -> Result<Vec<EpochRaise>, ApplyError> {
        let view = self.registry()?;
        let mut raised = Vec::new();
        for (&dek_id, key) in next.keys.iter_mut() {
            let Some(row) = view.get(dek_id, node_id16(full_node_id))? else {
                continue;
            };
            if row.full_node_id != full_node_id {
                return Err(ApplyError::NodeIdCollision {
                    dek_id,
                    node_id16: node_id16(full_node_id),
                    existing_full_node_id: row.full_node_id,
                    incoming_full_node_id: full_node_id,
                });
            }
            if row.last_seen_local_epoch > key.local_epoch {
                raised.push(EpochRaise {
                    dek_id,
                    from: key.local_epoch,
                    to: row.last_seen_local_epoch,
                });
                key.local_epoch = row.last_seen_local_epoch;
            }
        }
        Ok(raised)
    }
}

/// The sidecar as the replay builds it, entry by entry.
struct Replay {
    /// The sidecar before the entry being replayed (`None`: no file yet).
    current: Option<Sidecar>,
    next: Sidecar,
    /// The keys the replay opened, installed once keys.json is written.
    deks: Vec<(u32, Dek)>,
    replayed: Vec<Replayed>,
    passed_over: usize,
}

impl Replay {
    /// One entry of the gap: decoded and checked as `apply` checks it;
    /// only its keys.json part is carried out.
    fn entry(&mut self, applier: &mut Applier, index: u64, bytes: &[u8]) -> Result<(), ApplyError> {
        let Some(&opcode) = bytes.first() else {
            self.passed_over += 1;
            return Ok(());
        };
        if !ENCRYPTION_OPCODES.contains(&opcode) {
            self.passed_over += 1; // another FSM entry: keys.json is not its
            return Ok(());
        }
        // 0x06/0x07, reserved sub-tags and every malformed payload halt here.
        let (kind, sub_tag, outcome) = match Entry::decode(bytes)? {
            Entry::Registration(_) => {
                // Its row is the registry's, which is past this index.
                self.passed_over += 1;
                return Ok(());
            }
            Entry::Bootstrap(b) => {
                b.validate()?;
                check_bootstrap(&b)?;
                check_bootstrap_replay(self.current.as_ref(), &b)?;
                let keys = [
                    (b.storage_dek_id, Purpose::Storage, &b.wrapped_storage),
                    (b.raft_dek_id, Purpose::Raft, &b.wrapped_raft),
                ];
                for (id, purpose, _) in keys {
                    check_purpose(self.current.as_ref(), id, purpose)?;
                }
                for (id, purpose, wrapped) in keys {
                    self.open_key(applier, id, purpose, wrapped)?;
                }
                self.next.active_storage = b.storage_dek_id;
                self.next.active_raft = b.raft_dek_id;
                for (id, purpose, wrapped) in keys {
                    add_key(&mut self.next, id, purpose, wrapped);
                }
                (PayloadKind::Bootstrap, None, Outcome::Bootstrapped)
            }
            Entry::Rotation(r) => {
                r.validate()?;
                let outcome = if r.sub_tag == ROTATE_DEK {
                    self.rotate(applier, &r)?
                } else {
                    self.cutover(&r, index)?
                };
                (PayloadKind::Rotation, Some(r.sub_tag), outcome)
            }
        };
        // An entry keys.json already reflects changes nothing but the index.
        let unchanged = self.current.as_ref().is_some_and(|c| {
            let mut c = sidecar::next_version(Some(c));
            c.raft_applied_index = self.next.raft_applied_index;
            c == self.next
        });
        let outcome = if unchanged {
            Outcome::Unchanged
        } else {
            outcome
        };
        self.next.advance_raft_applied_index(Some(index));
        self.replayed.push(Replayed {
            index,
            kind,
            sub_tag,
            outcome,
        });
        self.current = Some(self.next.clone());
        Ok(())
    }

    fn bootstrapped(&self, dek_id: u32) -> Result<&Sidecar, ApplyError> {
        self.current
            .as_ref()
            .filter(|s| s.is_bootstrapped())
            .ok_or(ApplyError::NotBootstrapped { dek_id })
    }

    /// A rotate-dek: the new key becomes active; its local epoch is the one
    /// the sidecar had for it (0 for a new key) until this node's rows
    /// raise it.
    fn rotate(&mut self, applier: &mut Applier, r: &Rotation) -> Result<Outcome, ApplyError> {
        check_rotation(r)?;
        let current = self.bootstrapped(r.dek_id)?;
        check_purpose(Some(current), r.dek_id, r.purpose)?;
        let epoch = current.keys.get(&r.dek_id).map_or(0, |k| k.local_epoch);
        self.open_key(applier, r.dek_id, r.purpose, &r.wrapped)?;
        self.next.set_active(r.purpose, r.dek_id);
        put_rotated_key(&mut self.next, r.dek_id, r.purpose, &r.wrapped, epoch);
        Ok(Outcome::Rotated)
    }

    /// An envelope cutover: Go's three branches, as `apply` takes them.
    fn cutover(&mut self, r: &Rotation, index: u64) -> Result<Outcome, ApplyError> {
        check_cutover(r, Some(index))?;
        let branch = cutover_branch(self.bootstrapped(r.dek_id)?, r);
        if branch == CutoverBranch::Fresh {
            if r.sub_tag == ENABLE_RAFT_ENVELOPE {
                self.next.raft_envelope_cutover_index = index;
            } else {
                self.next.storage_envelope_active = true;
                self.next.storage_envelope_cutover_index = index;
            }
        }
        Ok(match branch {
            CutoverBranch::Fresh => Outcome::Enabled,
            CutoverBranch::AlreadyActive => Outcome::AlreadyActive,
            CutoverBranch::Stale => Outcome::StaleDek,
        })
    }

    /// Unwraps a key of an entry with the applier's KEK and checks it
    /// against the keys already open (the keystore, and this replay's).
    fn open_key(
        &mut self,
        applier: &mut Applier,
        dek_id: u32,
        purpose: Purpose,
        wrapped: &[u8],
    ) -> Result<(), ApplyError> {
        let keyring = applier.keyring_for(PayloadKind::Rotation)?;
        let dek = keyring.unwrap(dek_id, purpose, wrapped)?;
        keyring.keystore.check(dek_id, &dek)?;
        if let Some((_, earlier)) = self.deks.iter().find(|(id, _)| *id == dek_id) {
            if !earlier.ct_eq(&dek) {
                return Err(ApplyError::KeyConflict { dek_id });
            }
            return Ok(());
        }
        self.deks.push((dek_id, dek));
        Ok(())
    }
}

/// Keeps the current keys.json as `<name>.before-resync-<index>`, durably
/// and owner-only, before the new one replaces it; says whether the
/// backup is new (a failed resync removes a new one). A backup already there
/// with other bytes is never overwritten: the next free numbered sibling
/// is used. One with the same bytes (a resync that stopped after it) is
/// written again, through a new rename: the directory fsync that failed
/// then may have lost its name for good, though the file still shows.
fn keep_backup(path: &Path, index: u64) -> Result<(PathBuf, bool), ApplyError> {
    let bytes = sidecar::read_bytes(path)?.unwrap_or_default();
    let name = path
        .file_name()
        .map_or_else(|| "keys.json".into(), |n| n.to_string_lossy().into_owned());
    let base = path.with_file_name(format!("{name}.before-resync-{index}"));
    let mut candidate = base.clone();
    let mut fresh = true;
    for n in 1.. {
        match std::fs::symlink_metadata(&candidate) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Ok(meta) if meta.is_file() && meta.len() == bytes.len() as u64 => {
                if std::fs::read(&candidate).is_ok_and(|old| old == bytes) {
                    fresh = false;
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => return Err(backup_fault(&candidate, &e.to_string(), e.raw_os_error())),
        }
        candidate = PathBuf::from(format!("{}.{n}", base.display()));
    }
    crate::fsutil::replace_private_durable(&candidate, &bytes)
        .map_err(|e| backup_fault(&candidate, &e.to_string(), e.source.raw_os_error()))?;
    Ok((candidate, fresh))
}

fn backup_fault(path: &Path, detail: &str, errno: Option<i32>) -> ApplyError {
    ApplyError::Storage(StorageError::new(
        "keeping the old keys.json before a resync",
        path.to_path_buf(),
        format!("{detail}: keys.json is unchanged and nothing was written"),
        errno,
    ))
}
