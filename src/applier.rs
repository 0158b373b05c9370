//! Applying encryption entries to the writer registry (SPEC §4, §5).
//!
//! The four registration cases are decided by [`decide`], a pure function
//! of the stored row and the incoming registration, so the rules can be
//! tested without LMDB. [`Applier`] wraps each entry in one LMDB write
//! transaction: any error drops the transaction (an abort), so a halted
//! entry leaves the registry byte-for-byte as it was.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lmdb::{Cursor, Transaction, WriteFlags};

use crate::error::{
    ApplierOpenError, ApplyError, MalformedPayload, OpenError, RegistryError, RejectReason,
    SidecarError, StorageError,
};
use crate::kek::{Dek, Kek};
use crate::keystore::{Install, Keystore};
use crate::registry::{
    decode_row, dek_prefix, encode_registry_value, registry_key, Columns, Digest, RegistryRow,
    RegistryValue, Stats, REGISTRY_PREFIX,
};
use crate::sidecar::{self, Sidecar, SidecarKey};
use crate::store::{
    open_env_sized, OpenMode, RegistryEnv, Snapshot, TxnToken, WriterLock, DEFAULT_MAP_SIZE,
};
use crate::wire::{Bootstrap, Entry, Purpose, Registration, Rotation, OP_BOOTSTRAP, OP_ROTATION};

/// What applying an entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Case 1: a new row.
    Inserted,
    /// Case 2: the row's last-seen epoch moved forward.
    Advanced,
    /// Case 2-idempotent: the same epoch again (a Raft replay); no write.
    /// For bootstrap and rotation: an exact replay that changed nothing.
    Unchanged,
    /// A bootstrap installed keys, wrote the sidecar and/or rows.
    Bootstrapped,
    /// A rotation installed a key, moved an active id and/or a row.
    Rotated,
    /// The entry's Raft index is at or below the applied index: it was
    /// applied before, and is not looked at again.
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Inserted => "inserted",
            Outcome::Advanced => "advanced",
            Outcome::Unchanged => "unchanged",
            Outcome::Bootstrapped => "bootstrapped",
            Outcome::Rotated => "rotated",
            Outcome::Skipped => "skipped",
        }
    }
}

/// The write a registration calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Write(RegistryValue, Outcome),
    Unchanged,
}

/// The four-case rule of SPEC §4 for one registration against the row
/// currently stored at its `(dek_id, node_id16)`.
pub fn decide(existing: Option<&RegistryRow>, reg: &Registration) -> Result<Decision, ApplyError> {
    let Some(row) = existing else {
        return Ok(Decision::Write(
            RegistryValue {
                full_node_id: reg.full_node_id,
                first_seen_local_epoch: reg.local_epoch,
                last_seen_local_epoch: reg.local_epoch,
            },
            Outcome::Inserted,
        ));
    };
    // Case 4 before case 3: a different node behind the same nonce prefix
    // is the graver fault, and its epochs are not comparable anyway.
    if row.full_node_id != reg.full_node_id {
        return Err(ApplyError::NodeIdCollision {
            dek_id: reg.dek_id,
            node_id16: reg.node_id16(),
            existing_full_node_id: row.full_node_id,
            incoming_full_node_id: reg.full_node_id,
        });
    }
    match reg.local_epoch.cmp(&row.last_seen_local_epoch) {
        std::cmp::Ordering::Equal => Ok(Decision::Unchanged),
        std::cmp::Ordering::Less => Err(ApplyError::LocalEpochRollback {
            dek_id: reg.dek_id,
            full_node_id: reg.full_node_id,
            last_seen: row.last_seen_local_epoch,
            incoming: reg.local_epoch,
        }),
        std::cmp::Ordering::Greater => Ok(Decision::Write(
            RegistryValue {
                full_node_id: reg.full_node_id,
                first_seen_local_epoch: row.first_seen_local_epoch,
                last_seen_local_epoch: reg.local_epoch,
            },
            Outcome::Advanced,
        )),
    }
}

/// The points of a bootstrap or rotation where a test can stop it, to
/// prove that replaying the entry after a crash there converges.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    AfterUnwrap,
    AfterKeystoreInstall,
    AfterSidecarWrite,
    BeforeRegistryCommit,
}

impl FaultPoint {
    pub fn from_name(name: &str) -> Option<FaultPoint> {
        match name {
            "after_unwrap" => Some(FaultPoint::AfterUnwrap),
            "after_keystore_install" => Some(FaultPoint::AfterKeystoreInstall),
            "after_sidecar_write" => Some(FaultPoint::AfterSidecarWrite),
            "before_registry_commit" => Some(FaultPoint::BeforeRegistryCommit),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FaultPoint::AfterUnwrap => "after_unwrap",
            FaultPoint::AfterKeystoreInstall => "after_keystore_install",
            FaultPoint::AfterSidecarWrite => "after_sidecar_write",
            FaultPoint::BeforeRegistryCommit => "before_registry_commit",
        }
    }
}

/// What an armed fault does: fail the apply as a storage fault would, or
/// abort the process on the spot, as a crash would.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    Fail,
    Abort,
}

/// The KEK, the keys it has opened, and where the sidecar lives.
#[derive(Debug)]
struct Crypto {
    kek: Kek,
    keystore: Keystore,
    sidecar_path: PathBuf,
}

impl Crypto {
    /// Reads the sidecar from disk and opens every key in it that the
    /// keystore lacks. Done at open and before each bootstrap/rotation, so
    /// the keystore always mirrors the sidecar on disk, even after a
    /// failed write whose outcome is unknown.
    fn sync_from_disk(&mut self) -> Result<Option<Sidecar>, ApplyError> {
        let Some(sidecar) = sidecar::read(&self.sidecar_path)? else {
            return Ok(None);
        };
        for (&id, key) in &sidecar.keys {
            let dek = self
                .kek
                .unwrap(&key.wrapped)
                .map_err(|problem| ApplyError::KekUnwrap {
                    dek_id: id,
                    purpose: key.purpose.as_str(),
                    problem,
                })?;
            self.keystore.install(id, dek)?;
        }
        Ok(Some(sidecar))
    }

    fn unwrap(&self, dek_id: u32, purpose: Purpose, wrapped: &[u8]) -> Result<Dek, ApplyError> {
        self.kek
            .unwrap(wrapped)
            .map_err(|problem| ApplyError::KekUnwrap {
                dek_id,
                purpose: purpose.as_str(),
                problem,
            })
    }
}

/// The one writer of a registry directory.
#[derive(Debug)]
pub struct Applier {
    env: Arc<RegistryEnv>,
    _lock: WriterLock,
    crypto: Option<Crypto>,
    fault: Option<(FaultPoint, FaultAction)>,
    /// The stored Raft applied index. This applier is the only writer, so
    /// the copy in memory is the one on disk.
    applied_index: Option<u64>,
}

/// Why `apply_many` stopped: the entry at `position` halted (or, for a
/// storage fault on commit, the first entry whose transaction was lost).
/// Everything before `position` is committed; nothing from it on is.
#[derive(Debug)]
pub struct BatchHalt {
    pub position: usize,
    pub error: ApplyError,
    /// The outcomes of the entries before `position`.
    pub outcomes: Vec<Outcome>,
}

/// One registry key touched by an `apply_many` run: its row as read (or
/// the error reading it), then as the run's rules left it.
struct Slot {
    row: Result<Option<RegistryRow>, RegistryError>,
    dirty: bool,
}

/// The registry key packed as `dek_id << 16 | node_id16`: it orders like
/// the 27-byte key does.
fn packed_key(dek_id: u32, node_id16: u16) -> u64 {
    (u64::from(dek_id) << 16) | u64::from(node_id16)
}

/// Adds `dek_id` to `sidecar` as a key of `purpose`, keeping an entry that
/// is already there (its `created` and `local_epoch` belong to the first
/// install). A new key starts at local epoch 0.
fn add_key(sidecar: &mut Sidecar, dek_id: u32, purpose: Purpose, wrapped: &[u8]) {
    sidecar.keys.entry(dek_id).or_insert_with(|| SidecarKey {
        purpose,
        wrapped: wrapped.to_vec(),
        created: sidecar::rfc3339_now(),
        local_epoch: 0,
    });
}

fn check_purpose(
    sidecar: Option<&Sidecar>,
    dek_id: u32,
    incoming: Purpose,
) -> Result<(), ApplyError> {
    match sidecar.and_then(|s| s.keys.get(&dek_id)) {
        Some(key) if key.purpose != incoming => {
            Err(ApplyError::PayloadRejected(RejectReason::PurposeMismatch {
                dek_id,
                existing: key.purpose,
                incoming,
            }))
        }
        _ => Ok(()),
    }
}

/// A registry read and, when the rules call for it, a write inside `txn`.
/// Returns the outcome when it wrote.
fn stage_registration(
    env: &RegistryEnv,
    txn: &mut lmdb::RwTransaction<'_>,
    reg: &Registration,
) -> Result<Option<Outcome>, ApplyError> {
    let existing = env.get_row(txn, reg.dek_id, reg.node_id16())?;
    match decide(existing.as_ref(), reg)? {
        Decision::Unchanged => Ok(None),
        Decision::Write(value, outcome) => {
            let key = registry_key(reg.dek_id, reg.node_id16());
            txn.put(
                env.db(),
                &key,
                &encode_registry_value(&value),
                WriteFlags::empty(),
            )
            .map_err(|e| env.storage_error("writing a registry row", e))?;
            Ok(Some(outcome))
        }
    }
}

/// A write transaction and the token that counts it open (drop the token
/// after the transaction: declare it first).
fn begin(env: &RegistryEnv) -> Result<(TxnToken<'_>, lmdb::RwTransaction<'_>), ApplyError> {
    let (txn, token) = env.begin_write()?;
    Ok((token, txn))
}

/// A commit that returns has been fsynced (LMDB's default); one that fails
/// has discarded the transaction.
fn commit(env: &RegistryEnv, txn: lmdb::RwTransaction<'_>) -> Result<(), ApplyError> {
    txn.commit()
        .map_err(|e| env.storage_error("committing", e).into())
}

/// How to open an [`Applier`].
#[derive(Debug, Clone)]
pub struct ApplierOptions {
    /// Needed for bootstrap and rotation; without it they halt.
    pub kek: Option<Kek>,
    /// The sidecar path; `keys.json` in the registry directory by default.
    pub sidecar: Option<PathBuf>,
    /// `true`: every commit survives power loss. `false`: see
    /// [`RegistryEnv::set_durable`].
    pub durable: bool,
    /// The map size to start from when the environment is new to this
    /// process. The map doubles by itself whenever it fills up.
    pub map_size: usize,
}

impl Default for ApplierOptions {
    fn default() -> Self {
        ApplierOptions {
            kek: None,
            sidecar: None,
            durable: true,
            map_size: DEFAULT_MAP_SIZE,
        }
    }
}

/// The halt for a bootstrap or rotation reaching an applier with no KEK.
fn no_kek(opcode: u8) -> ApplyError {
    let entry = if opcode == OP_BOOTSTRAP {
        "bootstrap"
    } else {
        "rotation"
    };
    ApplyError::KekNotConfigured { opcode, entry }
}

/// Whether an error is LMDB's "map full": the entry can be retried after
/// the map grows, since nothing of it was committed.
fn is_map_full(error: &ApplyError) -> bool {
    matches!(error, ApplyError::Storage(s) if s.code == Some(lmdb_sys::MDB_MAP_FULL))
}

/// Enough doublings to reach any map size a 64-bit address space allows.
const MAX_GROWTHS: usize = 48;

impl Applier {
    /// Opens the registry at `path`, creating the directory and the LMDB
    /// environment when missing, and takes the directory's writer lock.
    /// Without a KEK, bootstrap and rotation entries halt.
    pub fn open(path: &Path) -> Result<Applier, ApplierOpenError> {
        Applier::open_with(path, ApplierOptions::default())
    }

    pub fn open_with(path: &Path, options: ApplierOptions) -> Result<Applier, ApplierOpenError> {
        let mut applier = Applier::open_plain(path, options.map_size)?;
        applier
            .set_durable(options.durable)
            .map_err(ApplyError::from)?;
        if let Some(kek) = options.kek {
            let sidecar_path = options
                .sidecar
                .unwrap_or_else(|| applier.env.path().join(sidecar::SIDECAR_FILE));
            let mut crypto = Crypto {
                kek,
                keystore: Keystore::new(),
                sidecar_path,
            };
            crypto.sync_from_disk()?;
            applier.crypto = Some(crypto);
        }
        Ok(applier)
    }

    fn open_plain(path: &Path, map_size: usize) -> Result<Applier, ApplierOpenError> {
        let env = open_env_sized(path, OpenMode::Create, map_size)?;
        if env.is_read_only() {
            return Err(OpenError {
                path: path.to_path_buf(),
                reason: "the registry is open read-only in this process (the directory was not \
                         writable when a Registry view opened it)"
                    .into(),
            }
            .into());
        }
        let lock = WriterLock::acquire(env.path())?;
        let applied_index = env
            .read(|txn| env.get_applied_index(txn))
            .map_err(ApplyError::from)?;
        env.set_durable(true).map_err(ApplyError::from)?;
        Ok(Applier {
            env,
            _lock: lock,
            crypto: None,
            fault: None,
            applied_index,
        })
    }

    /// Opens the registry with a KEK. The sidecar defaults to `keys.json`
    /// in the registry directory; every key an existing sidecar lists is
    /// opened now, so a restarted applier carries on where it stopped.
    pub fn open_with_kek(
        path: &Path,
        kek: Kek,
        sidecar_path: Option<&Path>,
    ) -> Result<Applier, ApplierOpenError> {
        Applier::open_with(
            path,
            ApplierOptions {
                kek: Some(kek),
                sidecar: sidecar_path.map(Path::to_path_buf),
                ..ApplierOptions::default()
            },
        )
    }

    pub fn path(&self) -> &Path {
        self.env.path()
    }

    pub fn has_kek(&self) -> bool {
        self.crypto.is_some()
    }

    pub fn kek(&self) -> Option<&Kek> {
        self.crypto.as_ref().map(|c| &c.kek)
    }

    pub fn keystore(&self) -> Option<&Keystore> {
        self.crypto.as_ref().map(|c| &c.keystore)
    }

    pub fn sidecar_path(&self) -> Option<&Path> {
        self.crypto.as_ref().map(|c| c.sidecar_path.as_path())
    }

    /// The sidecar as it is on disk now (`None` without a KEK or a file).
    pub fn sidecar(&self) -> Result<Option<Sidecar>, SidecarError> {
        match &self.crypto {
            Some(c) => sidecar::read(&c.sidecar_path),
            None => Ok(None),
        }
    }

    /// Arms (or, with `None`, disarms) a fault for tests of crash recovery.
    #[doc(hidden)]
    pub fn set_fault(&mut self, fault: Option<(FaultPoint, FaultAction)>) {
        self.fault = fault;
    }

    fn fault_at(&self, point: FaultPoint) -> Result<(), ApplyError> {
        match self.fault {
            Some((armed, action)) if armed == point => match action {
                FaultAction::Abort => std::process::abort(),
                FaultAction::Fail => Err(ApplyError::Storage(StorageError {
                    operation: "an injected test fault",
                    path: self.env.path().to_path_buf(),
                    detail: format!("stopped at {}", point.name()),
                    code: None,
                })),
            },
            _ => Ok(()),
        }
    }

    /// `sync=True` (the default) or `False`; see [`RegistryEnv::set_durable`].
    pub fn set_durable(&mut self, durable: bool) -> Result<(), StorageError> {
        self.env.set_durable(durable)
    }

    /// The highest Raft index applied through this registry, if any.
    pub fn applied_index(&self) -> Option<u64> {
        self.applied_index
    }

    /// Whether the entry at `index` was applied already (and so would be skipped).
    pub fn is_applied(&self, index: Option<u64>) -> bool {
        matches!((index, self.applied_index), (Some(i), Some(done)) if i <= done)
    }

    /// Records `index` in `txn` and commits when there is anything to
    /// commit; the applied index moves only once the commit returned.
    fn finish(
        &mut self,
        mut txn: lmdb::RwTransaction<'_>,
        wrote: bool,
        index: Option<u64>,
    ) -> Result<(), ApplyError> {
        if let Some(index) = index {
            self.env.put_applied_index(&mut txn, index)?;
        }
        if wrote || index.is_some() {
            commit(&self.env, txn)?;
            if index.is_some() {
                self.applied_index = index;
            }
        }
        Ok(())
    }

    pub fn apply_registration(&mut self, reg: &Registration) -> Result<Outcome, ApplyError> {
        self.apply_entry_at(&Entry::Registration(*reg), None)
    }

    fn apply_registration_at(
        &mut self,
        reg: &Registration,
        index: Option<u64>,
    ) -> Result<Outcome, ApplyError> {
        let env = Arc::clone(&self.env);
        let (_token, mut txn) = begin(&env)?;
        // Nothing to write leaves the transaction to be aborted on drop.
        let outcome = stage_registration(&env, &mut txn, reg)?;
        self.finish(txn, outcome.is_some(), index)?;
        Ok(outcome.unwrap_or(Outcome::Unchanged))
    }

    /// SPEC §5 bootstrap: validate everything, then install both keys,
    /// write the sidecar and insert the batch rows. Every step is
    /// idempotent, so replaying the entry after a crash converges.
    pub fn apply_bootstrap(&mut self, b: &Bootstrap) -> Result<Outcome, ApplyError> {
        self.apply_entry_at(&Entry::Bootstrap(b.clone()), None)
    }

    fn apply_bootstrap_at(
        &mut self,
        b: &Bootstrap,
        index: Option<u64>,
    ) -> Result<Outcome, ApplyError> {
        b.validate()?;
        if self.crypto.is_none() {
            return Err(no_kek(OP_BOOTSTRAP));
        }
        let reject = |r| Err(ApplyError::PayloadRejected(r));
        for (field, id) in [
            ("storage_dek_id", b.storage_dek_id),
            ("raft_dek_id", b.raft_dek_id),
        ] {
            if id == 0 {
                return reject(RejectReason::ReservedKeyId { field });
            }
        }
        if b.storage_dek_id == b.raft_dek_id {
            return reject(RejectReason::SameIds {
                dek_id: b.storage_dek_id,
            });
        }
        if let Some((index, row)) = b
            .batch_registry
            .iter()
            .enumerate()
            .find(|(_, r)| r.dek_id != b.storage_dek_id && r.dek_id != b.raft_dek_id)
        {
            return reject(RejectReason::ForeignBatchRow {
                index,
                dek_id: row.dek_id,
                storage_dek_id: b.storage_dek_id,
                raft_dek_id: b.raft_dek_id,
            });
        }
        let keys = [
            (b.storage_dek_id, Purpose::Storage, &b.wrapped_storage),
            (b.raft_dek_id, Purpose::Raft, &b.wrapped_raft),
        ];
        let crypto = self.crypto.as_mut().ok_or_else(|| no_kek(OP_BOOTSTRAP))?;
        let current = crypto.sync_from_disk()?;
        if let Some(sc) = current.as_ref().filter(|s| s.is_bootstrapped()) {
            let exact_replay = sc.active_storage == b.storage_dek_id
                && sc.active_raft == b.raft_dek_id
                && keys.iter().all(|(id, _, wrapped)| {
                    sc.keys.get(id).is_some_and(|k| &k.wrapped == *wrapped)
                });
            if !exact_replay {
                return Err(ApplyError::AlreadyBootstrapped {
                    active_storage: sc.active_storage,
                    active_raft: sc.active_raft,
                    storage_dek_id: b.storage_dek_id,
                    raft_dek_id: b.raft_dek_id,
                });
            }
        }
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
        let mut next = current.clone().unwrap_or_default();
        if let Some(index) = index {
            next.raft_applied_index = index;
        }
        next.active_storage = b.storage_dek_id;
        next.active_raft = b.raft_dek_id;
        for (id, purpose, wrapped) in keys {
            add_key(&mut next, id, purpose, wrapped);
        }
        self.fault_at(FaultPoint::AfterUnwrap)?;

        // The batch rows go through the four-case rules in one transaction
        // before anything else changes: a row that halts halts the entry.
        let env = Arc::clone(&self.env);
        let (_token, mut txn) = begin(&env)?;
        let mut rows_written = false;
        for row in &b.batch_registry {
            rows_written |= stage_registration(&env, &mut txn, row)?.is_some();
        }
        let changed =
            self.install_and_persist(deks, current.as_ref(), &next, txn, rows_written, index)?;
        Ok(if changed {
            Outcome::Bootstrapped
        } else {
            Outcome::Unchanged
        })
    }

    /// The mutating tail shared by bootstrap and rotation: keystore, then
    /// sidecar, then the registry commit. A failure takes back the keys
    /// this call installed (the sidecar on disk is re-read next time).
    fn install_and_persist(
        &mut self,
        deks: Vec<(u32, Dek)>,
        current: Option<&Sidecar>,
        next: &Sidecar,
        txn: lmdb::RwTransaction<'_>,
        rows_written: bool,
        index: Option<u64>,
    ) -> Result<bool, ApplyError> {
        let mut installed = Vec::new();
        let result = (|| {
            let crypto = self.crypto.as_mut().ok_or_else(|| no_kek(OP_BOOTSTRAP))?;
            for (id, dek) in deks {
                if crypto.keystore.install(id, dek)? == Install::New {
                    installed.push(id);
                }
            }
            let sidecar_path = crypto.sidecar_path.clone();
            self.fault_at(FaultPoint::AfterKeystoreInstall)?;
            let sidecar_changed = current != Some(next);
            if sidecar_changed {
                sidecar::write_durable(&sidecar_path, next)?;
            }
            self.fault_at(FaultPoint::AfterSidecarWrite)?;
            self.fault_at(FaultPoint::BeforeRegistryCommit)?;
            self.finish(txn, rows_written, index)?;
            Ok(sidecar_changed || rows_written || !installed.is_empty())
        })();
        if result.is_err() {
            if let Some(crypto) = self.crypto.as_mut() {
                for id in installed {
                    crypto.keystore.remove(id);
                }
            }
        }
        result
    }

    /// SPEC §5 rotation: a new DEK for one purpose becomes active (older
    /// keys stay), then the proposer's registration is applied.
    pub fn apply_rotation(&mut self, r: &Rotation) -> Result<Outcome, ApplyError> {
        self.apply_entry_at(&Entry::Rotation(r.clone()), None)
    }

    fn apply_rotation_at(
        &mut self,
        r: &Rotation,
        index: Option<u64>,
    ) -> Result<Outcome, ApplyError> {
        r.validate()?;
        if self.crypto.is_none() {
            return Err(no_kek(OP_ROTATION));
        }
        if r.dek_id == 0 {
            return Err(ApplyError::PayloadRejected(RejectReason::ReservedKeyId {
                field: "dek_id",
            }));
        }
        if r.proposer.dek_id != r.dek_id {
            return Err(ApplyError::PayloadRejected(
                RejectReason::ProposerDekMismatch {
                    dek_id: r.dek_id,
                    proposer_dek_id: r.proposer.dek_id,
                },
            ));
        }
        let crypto = self.crypto.as_mut().ok_or_else(|| no_kek(OP_ROTATION))?;
        let current = crypto.sync_from_disk()?;
        let Some(current) = current.filter(Sidecar::is_bootstrapped) else {
            return Err(ApplyError::NotBootstrapped { dek_id: r.dek_id });
        };
        check_purpose(Some(&current), r.dek_id, r.purpose)?;
        let dek = crypto.unwrap(r.dek_id, r.purpose, &r.wrapped)?;
        crypto.keystore.check(r.dek_id, &dek)?;
        let mut next = current.clone();
        if let Some(index) = index {
            next.raft_applied_index = index;
        }
        next.set_active(r.purpose, r.dek_id);
        add_key(&mut next, r.dek_id, r.purpose, &r.wrapped);
        self.fault_at(FaultPoint::AfterUnwrap)?;

        let env = Arc::clone(&self.env);
        let (_token, mut txn) = begin(&env)?;
        let rows_written = stage_registration(&env, &mut txn, &r.proposer)?.is_some();
        let changed = self.install_and_persist(
            vec![(r.dek_id, dek)],
            Some(&current),
            &next,
            txn,
            rows_written,
            index,
        )?;
        Ok(if changed {
            Outcome::Rotated
        } else {
            Outcome::Unchanged
        })
    }

    pub fn apply_entry(&mut self, entry: &Entry) -> Result<Outcome, ApplyError> {
        self.apply_entry_at(entry, None)
    }

    /// Applies `entry` as the Raft log entry at `index` (when given): an
    /// index at or below the applied index is skipped unexamined, and the
    /// index is recorded in the same transaction as the entry's rows.
    pub fn apply_entry_at(
        &mut self,
        entry: &Entry,
        index: Option<u64>,
    ) -> Result<Outcome, ApplyError> {
        if self.is_applied(index) {
            return Ok(Outcome::Skipped);
        }
        let mut growths = 0;
        loop {
            let result = match entry {
                Entry::Registration(reg) => self.apply_registration_at(reg, index),
                Entry::Bootstrap(b) => self.apply_bootstrap_at(b, index),
                Entry::Rotation(r) => self.apply_rotation_at(r, index),
            };
            // A full map aborted the transaction: nothing of the entry was
            // committed (and every step is idempotent), so grow and retry.
            match result {
                Err(e) if is_map_full(&e) && growths < MAX_GROWTHS => {
                    self.env.grow()?;
                    growths += 1;
                }
                other => return other,
            }
        }
    }

    /// Decodes `opcode ‖ payload` and applies it.
    pub fn apply(&mut self, entry: &[u8]) -> Result<Outcome, ApplyError> {
        self.apply_at(entry, None)
    }

    /// Like [`Applier::apply_entry_at`] for bytes; a skipped index is not
    /// even decoded.
    pub fn apply_at(&mut self, entry: &[u8], index: Option<u64>) -> Result<Outcome, ApplyError> {
        if self.is_applied(index) {
            return Ok(Outcome::Skipped);
        }
        self.apply_entry_at(&Entry::decode(entry)?, index)
    }

    /// Applies `entries` in order with group commit: each run of
    /// registrations is one LMDB transaction and one durable commit, with
    /// every key read and written once. Semantics equal applying the
    /// entries one by one: when entry `k` halts, entries before `k` are
    /// committed and nothing of `k` or later is written. With
    /// `first_index`, entry `i` is the Raft entry `first_index + i`.
    pub fn apply_many(
        &mut self,
        entries: &[Result<Entry, MalformedPayload>],
        first_index: Option<u64>,
    ) -> Result<Vec<Outcome>, BatchHalt> {
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut position = 0;
        let mut growths = 0;
        while position < entries.len() {
            position =
                match self.apply_registration_run(entries, position, first_index, &mut outcomes) {
                    Ok(next) => next,
                    // The run's transaction was lost to a full map: grow it and
                    // apply the run again from its start.
                    Err(halt)
                        if halt.position == position
                            && is_map_full(&halt.error)
                            && growths < MAX_GROWTHS =>
                    {
                        if let Err(e) = self.env.grow() {
                            return Err(BatchHalt {
                                position,
                                error: e.into(),
                                outcomes: halt.outcomes,
                            });
                        }
                        growths += 1;
                        outcomes = halt.outcomes;
                        continue;
                    }
                    Err(halt) => return Err(halt),
                };
            let Some(entry) = entries.get(position) else {
                break;
            };
            // A bootstrap or rotation: its own transaction and sidecar write.
            let index = first_index.map(|f| f.saturating_add(position as u64));
            let result = match entry {
                Ok(entry) => self.apply_entry_at(entry, index),
                Err(malformed) => Err(ApplyError::Malformed(malformed.clone())),
            };
            match result {
                Ok(outcome) => outcomes.push(outcome),
                Err(error) => {
                    return Err(BatchHalt {
                        position,
                        error,
                        outcomes,
                    })
                }
            }
            position += 1;
        }
        Ok(outcomes)
    }

    /// Applies registrations (and skips applied indexes) from `start` in
    /// one transaction, up to the end or the first bootstrap/rotation, whose
    /// position it returns.
    ///
    /// Each registry key the run touches is read once and written once,
    /// both in key order through one cursor (LMDB then stays on the same
    /// leaf page for neighbouring keys), and the four-case rules run in
    /// entry order over those rows in memory. The result is the same as
    /// applying the entries one by one: reads all see the state before the
    /// run plus the run's own earlier writes, and a read that failed is
    /// only reported by the first entry that needs that row.
    fn apply_registration_run(
        &mut self,
        entries: &[Result<Entry, MalformedPayload>],
        start: usize,
        first_index: Option<u64>,
        outcomes: &mut Vec<Outcome>,
    ) -> Result<usize, BatchHalt> {
        let env = Arc::clone(&self.env);
        let lost = |error: ApplyError, outcomes: &mut Vec<Outcome>| {
            outcomes.truncate(start);
            BatchHalt {
                position: start,
                error,
                outcomes: std::mem::take(outcomes),
            }
        };
        let index_of = |position: usize| first_index.map(|f| f.saturating_add(position as u64));

        // 1. The run's extent and the distinct keys it touches.
        let mut keys: Vec<u64> = Vec::new();
        let mut end = start;
        while let Some(entry) = entries.get(end) {
            if !self.is_applied(index_of(end)) {
                match entry {
                    Ok(Entry::Registration(reg)) => {
                        keys.push(packed_key(reg.dek_id, reg.node_id16()))
                    }
                    _ => break,
                }
            }
            end += 1;
        }
        keys.sort_unstable();
        keys.dedup();

        let (_token, mut txn) = match begin(&env) {
            Ok(pair) => pair,
            Err(e) => return Err(lost(e, outcomes)),
        };
        // 2. Read every key once, in key order.
        let mut slots: Vec<Slot> = Vec::with_capacity(keys.len());
        if !keys.is_empty() {
            let cursor = match txn.open_ro_cursor(env.db()) {
                Ok(cursor) => cursor,
                Err(e) => {
                    return Err(lost(
                        env.storage_error("opening a cursor", e).into(),
                        outcomes,
                    ))
                }
            };
            for &packed in &keys {
                let key = registry_key((packed >> 16) as u32, packed as u16);
                let row = match cursor.get(Some(&key), None, lmdb_sys::MDB_SET_KEY) {
                    Ok((_, value)) => decode_row(&key, value)
                        .map(Some)
                        .map_err(RegistryError::from),
                    Err(lmdb::Error::NotFound) => Ok(None),
                    Err(e) => Err(env.storage_error("reading a registry row", e).into()),
                };
                slots.push(Slot { row, dirty: false });
            }
            drop(cursor);
        }

        // 3. The rules, in entry order, over the rows in memory.
        let mut last_index = None;
        let mut halt = None;
        let mut position = start;
        while position < end {
            let index = index_of(position);
            if self.is_applied(index) {
                outcomes.push(Outcome::Skipped);
                position += 1;
                continue;
            }
            let Some(Ok(Entry::Registration(reg))) = entries.get(position) else {
                break;
            };
            let packed = packed_key(reg.dek_id, reg.node_id16());
            let Some(slot) = keys
                .binary_search(&packed)
                .ok()
                .and_then(|i| slots.get_mut(i))
            else {
                break;
            };
            let current = match &slot.row {
                Ok(row) => row.as_ref(),
                Err(e) => {
                    halt = Some((position, ApplyError::from(e.clone())));
                    break;
                }
            };
            match decide(current, reg) {
                Ok(Decision::Unchanged) => outcomes.push(Outcome::Unchanged),
                Ok(Decision::Write(value, outcome)) => {
                    slot.row = Ok(Some(RegistryRow {
                        dek_id: reg.dek_id,
                        node_id16: reg.node_id16(),
                        full_node_id: value.full_node_id,
                        first_seen_local_epoch: value.first_seen_local_epoch,
                        last_seen_local_epoch: value.last_seen_local_epoch,
                    }));
                    slot.dirty = true;
                    outcomes.push(outcome);
                }
                Err(e) => {
                    halt = Some((position, e));
                    break;
                }
            }
            if index.is_some() {
                last_index = index;
            }
            position += 1;
        }
        // A malformed entry right after the run halts the batch there.
        if halt.is_none() && position == end && !self.is_applied(index_of(end)) {
            if let Some(Err(malformed)) = entries.get(end) {
                halt = Some((end, ApplyError::Malformed(malformed.clone())));
            }
        }

        // 4. Write what changed, in key order, through one cursor.
        let mut wrote = false;
        {
            let mut cursor = match txn.open_rw_cursor(env.db()) {
                Ok(cursor) => cursor,
                Err(e) => {
                    return Err(lost(
                        env.storage_error("opening a cursor", e).into(),
                        outcomes,
                    ))
                }
            };
            for slot in slots.iter().filter(|slot| slot.dirty) {
                let Ok(Some(row)) = &slot.row else { continue };
                let key = registry_key(row.dek_id, row.node_id16);
                if let Err(e) = cursor.put(
                    &key,
                    &encode_registry_value(&row.value()),
                    WriteFlags::empty(),
                ) {
                    return Err(lost(
                        env.storage_error("writing a registry row", e).into(),
                        outcomes,
                    ));
                }
                wrote = true;
            }
        }
        if let Err(e) = self.finish(txn, wrote, last_index) {
            return Err(lost(e, outcomes));
        }
        match halt {
            Some((position, error)) => Err(BatchHalt {
                position,
                error,
                outcomes: std::mem::take(outcomes),
            }),
            None => Ok(position),
        }
    }

    /// A read-only view of the registry as committed now, sharing this
    /// applier's environment.
    pub fn registry(&self) -> Result<Registry, StorageError> {
        Ok(Registry {
            snapshot: Snapshot::begin(Arc::clone(&self.env))?,
        })
    }
}

/// A read-only view of a registry, pinned to one consistent snapshot
/// (taken when it opens, moved by [`Registry::refresh`]). Another process,
/// or this one's applier, may be writing meanwhile; the view sees none of
/// it until refreshed. A pinned snapshot keeps LMDB from reusing the pages
/// it references, so views are meant to be refreshed or dropped.
#[derive(Debug)]
pub struct Registry {
    snapshot: Snapshot,
}

impl Registry {
    pub fn open(path: &Path) -> Result<Registry, ApplierOpenError> {
        let env = open_env_sized(path, OpenMode::Existing, DEFAULT_MAP_SIZE)?;
        Ok(Registry {
            snapshot: Snapshot::begin(env).map_err(ApplyError::from)?,
        })
    }

    pub fn path(&self) -> &Path {
        self.snapshot.env().path()
    }

    /// The highest Raft index applied, as of this view's snapshot.
    pub fn applied_index(&self) -> Result<Option<u64>, RegistryError> {
        let env = self.snapshot.env();
        env.check_process("reading the applied index")?;
        env.get_applied_index(&self.snapshot)
    }

    /// Moves the view to the newest committed state.
    pub fn refresh(&mut self) -> Result<(), RegistryError> {
        Ok(self.snapshot.refresh()?)
    }

    pub fn get(&self, dek_id: u32, node_id16: u16) -> Result<Option<RegistryRow>, RegistryError> {
        let env = self.snapshot.env();
        env.check_process("reading a registry row")?;
        env.get_row(&self.snapshot, dek_id, node_id16)
    }

    /// Calls `f` on every row (or those of one DEK) in key order.
    pub fn scan(
        &self,
        dek_id: Option<u32>,
        f: impl FnMut(RegistryRow),
    ) -> Result<(), RegistryError> {
        let env = self.snapshot.env();
        env.check_process("scanning the registry")?;
        match dek_id {
            Some(id) => env.scan(&self.snapshot, &dek_prefix(id), f),
            None => env.scan(&self.snapshot, REGISTRY_PREFIX, f),
        }
    }

    /// Every row in key order, or those of one DEK.
    pub fn rows(&self, dek_id: Option<u32>) -> Result<Vec<RegistryRow>, RegistryError> {
        let mut rows = Vec::new();
        self.scan(dek_id, |row| rows.push(row))?;
        Ok(rows)
    }

    pub fn len(&self) -> Result<usize, RegistryError> {
        let mut n = 0usize;
        self.scan(None, |_| n += 1)?;
        Ok(n)
    }

    pub fn is_empty(&self) -> Result<bool, RegistryError> {
        Ok(self.len()? == 0)
    }

    /// The distinct DEK ids that have at least one row, ascending.
    pub fn dek_ids(&self) -> Result<Vec<u32>, RegistryError> {
        Ok(self
            .stats()?
            .per_dek
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    pub fn stats(&self) -> Result<Stats, RegistryError> {
        let mut stats = Stats::default();
        self.scan(None, |row| stats.add(&row))?;
        Ok(stats)
    }

    /// SHA-256 hex of `key ‖ value` over every row in key order.
    pub fn digest(&self) -> Result<String, RegistryError> {
        let mut digest = Digest::default();
        self.scan(None, |row| digest.add(&row))?;
        Ok(digest.hex())
    }

    pub fn columns(&self, dek_id: Option<u32>) -> Result<Columns, RegistryError> {
        let mut columns = Columns::default();
        self.scan(dek_id, |row| columns.push(&row))?;
        Ok(columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::UnwrapError;
    use crate::error::{CorruptionKind, MalformedReason};
    use crate::registry::{decode_registry_value, KEY_LEN};
    use std::collections::BTreeMap;

    fn reg(dek_id: u32, full_node_id: u64, local_epoch: u16) -> Registration {
        Registration {
            dek_id,
            full_node_id,
            local_epoch,
        }
    }

    fn row_of(r: &Registration, first: u16, last: u16) -> RegistryRow {
        RegistryRow {
            dek_id: r.dek_id,
            node_id16: r.node_id16(),
            full_node_id: r.full_node_id,
            first_seen_local_epoch: first,
            last_seen_local_epoch: last,
        }
    }

    #[test]
    fn case1_no_row_inserts_first_equals_last() {
        let r = reg(7, 0xabcd0001, 3);
        let Decision::Write(v, Outcome::Inserted) = decide(None, &r).expect("insert") else {
            panic!("expected an insert");
        };
        assert_eq!(
            v,
            RegistryValue {
                full_node_id: 0xabcd0001,
                first_seen_local_epoch: 3,
                last_seen_local_epoch: 3
            }
        );
    }

    #[test]
    fn case2_higher_epoch_advances_last_keeps_first() {
        let r = reg(7, 0xabcd0001, 9);
        let stored = row_of(&r, 2, 5);
        let Decision::Write(v, Outcome::Advanced) = decide(Some(&stored), &r).expect("advance")
        else {
            panic!("expected an advance");
        };
        assert_eq!(v.first_seen_local_epoch, 2);
        assert_eq!(v.last_seen_local_epoch, 9);
    }

    #[test]
    fn case2_idempotent_equal_epoch_is_unchanged() {
        let r = reg(7, 0xabcd0001, 5);
        let stored = row_of(&r, 2, 5);
        assert_eq!(
            decide(Some(&stored), &r).expect("replay"),
            Decision::Unchanged
        );
    }

    #[test]
    fn case3_lower_epoch_is_rollback_with_ids() {
        let r = reg(7, 0xabcd0001, 4);
        let stored = row_of(&r, 2, 5);
        match decide(Some(&stored), &r) {
            Err(ApplyError::LocalEpochRollback {
                dek_id: 7,
                full_node_id: 0xabcd0001,
                last_seen: 5,
                incoming: 4,
            }) => {}
            other => panic!("expected rollback, got {other:?}"),
        }
    }

    #[test]
    fn case4_collision_is_checked_before_rollback() {
        let stored = row_of(&reg(7, 0xaaaa0001, 0), 9, 9);
        // Lower epoch *and* another node: the collision is what is reported.
        match decide(Some(&stored), &reg(7, 0xbbbb0001, 1)) {
            Err(ApplyError::NodeIdCollision {
                dek_id: 7,
                node_id16: 1,
                existing_full_node_id: 0xaaaa0001,
                incoming_full_node_id: 0xbbbb0001,
            }) => {}
            other => panic!("expected collision, got {other:?}"),
        }
    }

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        crate::test_support::temp_dir(tag, false)
    }

    #[test]
    fn lmdb_applier_runs_the_four_cases_and_persists() {
        let dir = temp_dir("cases");
        {
            let mut a = Applier::open(&dir).expect("open");
            assert_eq!(
                a.apply_registration(&reg(1, 0xabcd0001, 1)).expect("1"),
                Outcome::Inserted
            );
            assert_eq!(
                a.apply_registration(&reg(1, 0xabcd0001, 3)).expect("2"),
                Outcome::Advanced
            );
            assert_eq!(
                a.apply_registration(&reg(1, 0xabcd0001, 3)).expect("2i"),
                Outcome::Unchanged
            );
            assert!(matches!(
                a.apply_registration(&reg(1, 0xabcd0001, 2)),
                Err(ApplyError::LocalEpochRollback { .. })
            ));
            assert!(matches!(
                a.apply_registration(&reg(1, 0xffff0001, 9)),
                Err(ApplyError::NodeIdCollision { .. })
            ));
            // Same node16 under another DEK is a different row.
            assert_eq!(
                a.apply_registration(&reg(2, 0xffff0001, 9))
                    .expect("other dek"),
                Outcome::Inserted
            );
        }
        let view = Registry::open(&dir).expect("reopen");
        let rows = view.rows(None).expect("rows");
        assert_eq!(
            rows,
            vec![
                row_of(&reg(1, 0xabcd0001, 0), 1, 3),
                row_of(&reg(2, 0xffff0001, 0), 9, 9)
            ]
        );
        assert_eq!(view.len().expect("len"), 2);
        assert_eq!(view.dek_ids().expect("deks"), vec![1, 2]);
        assert_eq!(view.rows(Some(2)).expect("dek 2").len(), 1);
        assert_eq!(view.get(1, 1).expect("get"), Some(rows[0]));
        assert_eq!(view.get(3, 1).expect("get"), None);
        drop(view);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bootstrap_and_rotation_halt_without_kek_and_write_nothing() {
        let dir = temp_dir("kek");
        let mut a = Applier::open(&dir).expect("open");
        let b = Bootstrap {
            storage_dek_id: 1,
            wrapped_storage: vec![],
            raft_dek_id: 2,
            wrapped_raft: vec![],
            batch_registry: vec![reg(1, 5, 1)],
        };
        let entry = Entry::Bootstrap(b).encode().expect("encode");
        assert!(matches!(
            a.apply(&entry),
            Err(ApplyError::KekNotConfigured {
                opcode: OP_BOOTSTRAP,
                ..
            })
        ));
        let rot = Rotation {
            sub_tag: 1,
            dek_id: 3,
            purpose: crate::wire::Purpose::Storage,
            wrapped: vec![],
            proposer: reg(3, 5, 1),
        };
        assert!(matches!(
            a.apply_rotation(&rot),
            Err(ApplyError::KekNotConfigured { .. })
        ));
        let reserved = Rotation { sub_tag: 2, ..rot };
        assert!(matches!(
            a.apply_rotation(&reserved),
            Err(ApplyError::Malformed(m)) if m.reason == MalformedReason::ReservedSubTag(2)
        ));
        assert!(a.registry().expect("view").is_empty().expect("empty"));
        drop(a);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_stored_value_halts_and_is_not_overwritten() {
        let dir = temp_dir("corrupt");
        let mut a = Applier::open(&dir).expect("open");
        let key = registry_key(4, 0x0001);
        assert_eq!(key.len(), KEY_LEN);
        {
            let mut txn = a.env.env().begin_rw_txn().expect("txn");
            txn.put(a.env.db(), &key, &[0u8; 11], WriteFlags::empty())
                .expect("put");
            txn.commit().expect("commit");
        }
        match a.apply_registration(&reg(4, 0x0001, 1)) {
            Err(ApplyError::RegistryCorruption(c)) => {
                assert_eq!(c.kind, CorruptionKind::ValueLength);
                assert_eq!(c.dek_id, Some(4));
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        assert!(a.registry().expect("view").get(4, 1).is_err());
        assert!(a.registry().expect("view").rows(None).is_err());
        let txn = a.env.env().begin_ro_txn().expect("ro");
        let stored = txn.get(a.env.db(), &key).expect("still there").to_vec();
        drop(txn);
        assert_eq!(stored, vec![0u8; 11]);
        assert_eq!(decode_registry_value(&stored), None);
        drop(a);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn second_applier_on_same_dir_is_refused() {
        let dir = temp_dir("two");
        let a = Applier::open(&dir).expect("open");
        let err = Applier::open(&dir).unwrap_err();
        assert!(err.to_string().contains("another Applier"), "{err}");
        drop(a);
        Applier::open(&dir).expect("after close");
        let _ = std::fs::remove_dir_all(&dir);
    }

    // ------------------------------------------------------------ with a KEK

    const KEK_BYTES: [u8; 32] = [0x42; 32];

    fn kek() -> Kek {
        Kek::from_bytes(KEK_BYTES, Path::new("test-kek"))
    }

    fn wrapped(byte: u8) -> Vec<u8> {
        kek()
            .wrap(&Dek::from_bytes([byte; 32]))
            .expect("wrap")
            .to_vec()
    }

    fn bootstrap(storage: u32, raft: u32, rows: Vec<Registration>) -> Bootstrap {
        Bootstrap {
            storage_dek_id: storage,
            wrapped_storage: wrapped(storage as u8),
            raft_dek_id: raft,
            wrapped_raft: wrapped(raft as u8),
            batch_registry: rows,
        }
    }

    fn rotation(dek_id: u32, purpose: Purpose, proposer_epoch: u16) -> Rotation {
        Rotation {
            sub_tag: crate::wire::ROTATE_DEK,
            dek_id,
            purpose,
            wrapped: wrapped(dek_id as u8),
            proposer: reg(dek_id, 0xabcd0001, proposer_epoch),
        }
    }

    fn open_kek(dir: &Path) -> Applier {
        Applier::open_with_kek(dir, kek(), None).expect("open with kek")
    }

    #[test]
    fn bootstrap_installs_keys_sidecar_and_rows_and_replays_exactly() {
        let dir = temp_dir("boot");
        let mut a = open_kek(&dir);
        let b = bootstrap(1, 2, vec![reg(1, 0xabcd0001, 1), reg(2, 0xabcd0001, 1)]);
        assert_eq!(
            a.apply_bootstrap(&b).expect("bootstrap"),
            Outcome::Bootstrapped
        );
        let sc = a.sidecar().expect("read").expect("present");
        assert_eq!((sc.active_storage, sc.active_raft), (1, 2));
        assert_eq!(sc.keys[&1].purpose, Purpose::Storage);
        assert_eq!(sc.keys[&2].wrapped, b.wrapped_raft);
        assert_eq!(a.keystore().expect("ks").ids(), vec![1, 2]);
        assert_eq!(a.registry().expect("view").len().expect("len"), 2);
        // An exact replay changes nothing.
        assert_eq!(a.apply_bootstrap(&b).expect("replay"), Outcome::Unchanged);
        assert_eq!(a.sidecar().expect("read"), Some(sc.clone()));
        // Another bootstrap (other ids, or other wrapped bytes) halts.
        let other = bootstrap(3, 4, vec![]);
        assert!(matches!(
            a.apply_bootstrap(&other),
            Err(ApplyError::AlreadyBootstrapped {
                active_storage: 1,
                active_raft: 2,
                ..
            })
        ));
        let rewrapped = Bootstrap {
            wrapped_storage: wrapped(1),
            ..b.clone()
        };
        assert!(matches!(
            a.apply_bootstrap(&rewrapped),
            Err(ApplyError::AlreadyBootstrapped { .. })
        ));
        assert_eq!(a.sidecar().expect("read"), Some(sc));
        // A restarted applier loads the keys from the sidecar.
        drop(a);
        let a = open_kek(&dir);
        assert_eq!(a.keystore().expect("ks").ids(), vec![1, 2]);
        drop(a);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bootstrap_payload_rules() {
        let dir = temp_dir("rules");
        let mut a = open_kek(&dir);
        let same = bootstrap(5, 5, vec![]);
        assert!(matches!(
            a.apply_bootstrap(&same),
            Err(ApplyError::PayloadRejected(RejectReason::SameIds {
                dek_id: 5
            }))
        ));
        let zero = bootstrap(0, 5, vec![]);
        assert!(matches!(
            a.apply_bootstrap(&zero),
            Err(ApplyError::PayloadRejected(RejectReason::ReservedKeyId {
                field: "storage_dek_id"
            }))
        ));
        let foreign = bootstrap(1, 2, vec![reg(1, 1, 1), reg(9, 1, 1)]);
        assert!(matches!(
            a.apply_bootstrap(&foreign),
            Err(ApplyError::PayloadRejected(RejectReason::ForeignBatchRow {
                index: 1,
                dek_id: 9,
                ..
            }))
        ));
        let mut garbage = bootstrap(1, 2, vec![]);
        garbage.wrapped_raft[20] ^= 1;
        assert!(matches!(
            a.apply_bootstrap(&garbage),
            Err(ApplyError::KekUnwrap {
                dek_id: 2,
                problem: UnwrapError::Tag,
                ..
            })
        ));
        // A batch whose rows collide halts before anything is written.
        let colliding = bootstrap(1, 2, vec![reg(1, 0xaaaa0001, 1), reg(1, 0xbbbb0001, 1)]);
        assert!(matches!(
            a.apply_bootstrap(&colliding),
            Err(ApplyError::NodeIdCollision { .. })
        ));
        assert_eq!(a.sidecar().expect("read"), None);
        assert!(a.keystore().expect("ks").is_empty());
        assert!(a.registry().expect("view").is_empty().expect("empty"));
        drop(a);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rotation_moves_one_active_id_and_keeps_old_keys() {
        let dir = temp_dir("rot");
        let mut a = open_kek(&dir);
        assert!(matches!(
            a.apply_rotation(&rotation(3, Purpose::Storage, 1)),
            Err(ApplyError::NotBootstrapped { dek_id: 3 })
        ));
        a.apply_bootstrap(&bootstrap(1, 2, vec![]))
            .expect("bootstrap");
        let r = rotation(3, Purpose::Storage, 1);
        assert_eq!(a.apply_rotation(&r).expect("rotate"), Outcome::Rotated);
        let sc = a.sidecar().expect("read").expect("present");
        assert_eq!((sc.active_storage, sc.active_raft), (3, 2));
        assert_eq!(sc.keys.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(
            a.registry()
                .expect("view")
                .get(3, 1)
                .expect("get")
                .map(|r| r.last_seen_local_epoch),
            Some(1)
        );
        assert_eq!(a.apply_rotation(&r).expect("replay"), Outcome::Unchanged);
        // Proposer for another DEK, reserved sub-tag, purpose switch.
        let mut mismatch = rotation(4, Purpose::Raft, 1);
        mismatch.proposer.dek_id = 2;
        assert!(matches!(
            a.apply_rotation(&mismatch),
            Err(ApplyError::PayloadRejected(
                RejectReason::ProposerDekMismatch {
                    dek_id: 4,
                    proposer_dek_id: 2
                }
            ))
        ));
        assert!(matches!(
            a.apply_rotation(&rotation(3, Purpose::Raft, 2)),
            Err(ApplyError::PayloadRejected(RejectReason::PurposeMismatch {
                dek_id: 3,
                ..
            }))
        ));
        let conflicting = Rotation {
            wrapped: wrapped(0x77),
            ..rotation(3, Purpose::Storage, 2)
        };
        assert!(matches!(
            a.apply_rotation(&conflicting),
            Err(ApplyError::KeyConflict { dek_id: 3 })
        ));
        assert_eq!(a.sidecar().expect("read"), Some(sc));
        drop(a);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_fault_at_every_step_converges_on_replay() {
        let steps = [
            FaultPoint::AfterUnwrap,
            FaultPoint::AfterKeystoreInstall,
            FaultPoint::AfterSidecarWrite,
            FaultPoint::BeforeRegistryCommit,
        ];
        let b = bootstrap(1, 2, vec![reg(1, 0xabcd0001, 1)]);
        let reference = temp_dir("ref");
        let mut clean = open_kek(&reference);
        clean.apply_bootstrap(&b).expect("clean");
        let clean_keys = clean.sidecar().expect("read").expect("present").keys;
        let clean_rows = clean.registry().expect("view").rows(None).expect("rows");
        drop(clean);
        for step in steps {
            let dir = temp_dir(step.name());
            let mut a = open_kek(&dir);
            a.set_fault(Some((step, FaultAction::Fail)));
            assert!(a.apply_bootstrap(&b).is_err(), "{step:?}");
            drop(a);
            let mut a = open_kek(&dir);
            a.apply_bootstrap(&b).expect("replay");
            let sc = a.sidecar().expect("read").expect("present");
            let strip = |k: &BTreeMap<u32, SidecarKey>| {
                k.iter()
                    .map(|(id, key)| (*id, key.purpose, key.wrapped.clone(), key.local_epoch))
                    .collect::<Vec<_>>()
            };
            assert_eq!(strip(&sc.keys), strip(&clean_keys), "{step:?}");
            assert_eq!(
                a.registry().expect("view").rows(None).expect("rows"),
                clean_rows,
                "{step:?}"
            );
            assert_eq!(a.keystore().expect("ks").ids(), vec![1, 2]);
            drop(a);
            let _ = std::fs::remove_dir_all(&dir);
        }
        let _ = std::fs::remove_dir_all(&reference);
    }

    // ------------------------------------------------------------ batches

    /// A deterministic stream with replays, advances, rollbacks and
    /// collisions (xorshift, so no dependency).
    fn stream(seed: u64, n: usize) -> Vec<Registration> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                reg(
                    (x % 3) as u32,
                    ((x >> 8) % 2) << 16 | ((x >> 16) % 4),
                    ((x >> 24) % 6) as u16,
                )
            })
            .collect()
    }

    #[test]
    fn apply_many_equals_one_by_one() {
        let mut halted = 0;
        for seed in 1..40u64 {
            let entries = stream(seed, (seed as usize * 7) % 30 + 1);
            let one_dir = temp_dir("one");
            let mut one = Applier::open(&one_dir).expect("open");
            let mut expected = Vec::new();
            let mut halt_at = None;
            for (i, r) in entries.iter().enumerate() {
                match one.apply_registration(r) {
                    Ok(o) => expected.push(o),
                    Err(_) => {
                        halt_at = Some(i);
                        break;
                    }
                }
            }
            let many_dir = temp_dir("many");
            let mut many = Applier::open(&many_dir).expect("open");
            let batch: Vec<_> = entries
                .iter()
                .map(|r| Ok(Entry::Registration(*r)))
                .collect();
            match (many.apply_many(&batch, None), halt_at) {
                (Ok(outcomes), None) => assert_eq!(outcomes, expected, "seed {seed}"),
                (Err(halt), Some(k)) => {
                    halted += 1;
                    assert_eq!(halt.position, k, "seed {seed}");
                    assert_eq!(halt.outcomes, expected, "seed {seed}");
                }
                (got, want) => panic!("seed {seed}: {got:?} vs halt at {want:?}"),
            }
            assert_eq!(
                one.registry().expect("view").rows(None).expect("rows"),
                many.registry().expect("view").rows(None).expect("rows"),
                "seed {seed}"
            );
            drop((one, many));
            let _ = std::fs::remove_dir_all(&one_dir);
            let _ = std::fs::remove_dir_all(&many_dir);
        }
        // The streams exercise both endings.
        assert!(halted > 5 && halted < 39, "{halted} of 39 streams halted");
    }

    #[test]
    fn applied_index_skips_and_persists() {
        let dir = temp_dir("index");
        let mut a = Applier::open(&dir).expect("open");
        assert_eq!(a.applied_index(), None);
        let e = Entry::Registration(reg(1, 0xabcd0001, 1))
            .encode()
            .expect("enc");
        assert_eq!(a.apply_at(&e, Some(10)).expect("10"), Outcome::Inserted);
        assert_eq!(a.applied_index(), Some(10));
        // At or below the applied index: skipped, even bytes that do not decode.
        assert_eq!(a.apply_at(&e, Some(10)).expect("10"), Outcome::Skipped);
        assert_eq!(
            a.apply_at(b"\x06garbage", Some(3)).expect("3"),
            Outcome::Skipped
        );
        // An unchanged entry still records its index.
        assert_eq!(a.apply_at(&e, Some(11)).expect("11"), Outcome::Unchanged);
        // A halt records nothing.
        let rollback = Entry::Registration(reg(1, 0xabcd0001, 0))
            .encode()
            .expect("enc");
        assert!(a.apply_at(&rollback, Some(12)).is_err());
        assert_eq!(a.applied_index(), Some(11));
        drop(a);
        let mut a = Applier::open(&dir).expect("reopen");
        assert_eq!(a.applied_index(), Some(11));
        assert_eq!(
            a.registry().expect("view").applied_index().expect("read"),
            Some(11)
        );
        // A batch that overlaps what was applied skips the overlap.
        let batch: Vec<_> = [reg(1, 0xabcd0001, 1), reg(1, 0xabcd0001, 2), reg(2, 5, 1)]
            .iter()
            .map(|r| Ok(Entry::Registration(*r)))
            .collect();
        assert_eq!(
            a.apply_many(&batch, Some(11)).expect("batch"),
            vec![Outcome::Skipped, Outcome::Advanced, Outcome::Inserted]
        );
        assert_eq!(a.applied_index(), Some(13));
        drop(a);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_map_grows_and_keeps_everything() {
        let dir = temp_dir("grow");
        let options = ApplierOptions {
            map_size: 64 * 1024,
            ..ApplierOptions::default()
        };
        let mut a = Applier::open_with(&dir, options).expect("open");
        let start = a.env.map_size();
        let batch: Vec<_> = (0..20_000u64)
            .map(|n| Ok(Entry::Registration(reg(1 + (n / 60_000) as u32, n, 1))))
            .collect();
        let outcomes = a.apply_many(&batch, Some(1)).expect("grows");
        assert_eq!(outcomes.len(), 20_000);
        for n in 0..200u32 {
            a.apply_registration(&reg(9, u64::from(n), 1))
                .expect("one by one grows too");
        }
        assert!(a.env.map_size() > start);
        // With a view open the map cannot grow: a clear halt, nothing lost.
        let view = a.registry().expect("view");
        let more: Vec<_> = (0..50_000u64)
            .map(|n| Ok(Entry::Registration(reg(7, n, 1))))
            .collect();
        let halt = a
            .apply_many(&more, None)
            .expect_err("cannot grow with a view open");
        assert!(
            halt.error.to_string().contains("close them"),
            "{}",
            halt.error
        );
        assert_eq!(view.len().expect("len"), 20_200);
        drop(view);
        a.apply_many(&more, None)
            .expect("grows once the view is closed");
        assert_eq!(a.registry().expect("view").len().expect("len"), 70_200);
        drop(a);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
