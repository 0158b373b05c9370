//! Applying encryption entries to the writer registry (SPEC §4, §5).
//!
//! The four registration cases are decided by [`decide`], a pure function
//! of the stored row and the incoming registration, so the rules can be
//! tested without LMDB. [`Applier`] wraps each entry in one LMDB write
//! transaction: any error drops the transaction (an abort), so a halted
//! entry leaves the registry byte-for-byte as it was.

use std::path::Path;
use std::sync::Arc;

use lmdb::{Transaction, WriteFlags};

use crate::error::{ApplyError, OpenError, RegistryError};
use crate::registry::{
    dek_prefix, encode_registry_value, registry_key, RegistryRow, RegistryValue, REGISTRY_PREFIX,
};
use crate::store::{open_env, OpenMode, RegistryEnv, WriterLock};
use crate::wire::{Bootstrap, Entry, Registration, Rotation, OP_BOOTSTRAP, OP_ROTATION};

/// What applying an entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Case 1: a new row.
    Inserted,
    /// Case 2: the row's last-seen epoch moved forward.
    Advanced,
    /// Case 2-idempotent: the same epoch again (a Raft replay); no write.
    Unchanged,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Inserted => "inserted",
            Outcome::Advanced => "advanced",
            Outcome::Unchanged => "unchanged",
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

/// The one writer of a registry directory.
#[derive(Debug)]
pub struct Applier {
    env: Arc<RegistryEnv>,
    _lock: WriterLock,
}

impl Applier {
    /// Opens the registry at `path`, creating the directory and the LMDB
    /// environment when missing, and takes the directory's writer lock.
    pub fn open(path: &Path) -> Result<Applier, OpenError> {
        let env = open_env(path, OpenMode::Create)?;
        if env.is_read_only() {
            return Err(OpenError {
                path: path.to_path_buf(),
                reason: "the registry is open read-only in this process (the directory was not \
                         writable when a Registry view opened it)"
                    .into(),
            });
        }
        let lock = WriterLock::acquire(env.path())?;
        Ok(Applier { env, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        self.env.path()
    }

    /// A read-only view sharing this applier's environment.
    pub fn registry(&self) -> Registry {
        Registry {
            env: Arc::clone(&self.env),
        }
    }

    pub fn apply_registration(&self, reg: &Registration) -> Result<Outcome, ApplyError> {
        let env = &self.env;
        let mut txn = env
            .env()
            .begin_rw_txn()
            .map_err(|e| env.storage_error("beginning a write transaction", e))?;
        let existing = env.get_row(&txn, reg.dek_id, reg.node_id16())?;
        match decide(existing.as_ref(), reg)? {
            // Nothing to write: dropping the transaction aborts it, and
            // there is no commit to wait for.
            Decision::Unchanged => Ok(Outcome::Unchanged),
            Decision::Write(value, outcome) => {
                let key = registry_key(reg.dek_id, reg.node_id16());
                txn.put(
                    env.db(),
                    &key,
                    &encode_registry_value(&value),
                    WriteFlags::empty(),
                )
                .map_err(|e| env.storage_error("writing a registry row", e))?;
                // A commit that returns has been fsynced (LMDB's default);
                // one that fails has discarded the transaction.
                txn.commit()
                    .map_err(|e| env.storage_error("committing", e))?;
                Ok(outcome)
            }
        }
    }

    /// Without a KEK a bootstrap cannot be applied: it halts, writing nothing.
    /// The payload is still checked first, so a malformed one says so.
    pub fn apply_bootstrap(&self, bootstrap: &Bootstrap) -> Result<Outcome, ApplyError> {
        bootstrap.validate()?;
        Err(ApplyError::KekNotConfigured {
            opcode: OP_BOOTSTRAP,
            entry: "bootstrap",
        })
    }

    /// Without a KEK a rotation cannot be applied: it halts, writing nothing.
    pub fn apply_rotation(&self, rotation: &Rotation) -> Result<Outcome, ApplyError> {
        rotation.validate()?;
        Err(ApplyError::KekNotConfigured {
            opcode: OP_ROTATION,
            entry: "rotation",
        })
    }

    pub fn apply_entry(&self, entry: &Entry) -> Result<Outcome, ApplyError> {
        match entry {
            Entry::Registration(reg) => self.apply_registration(reg),
            Entry::Bootstrap(b) => self.apply_bootstrap(b),
            Entry::Rotation(r) => self.apply_rotation(r),
        }
    }

    /// Decodes `opcode ‖ payload` and applies it.
    pub fn apply(&self, entry: &[u8]) -> Result<Outcome, ApplyError> {
        self.apply_entry(&Entry::decode(entry)?)
    }
}

/// A read-only view of a registry. Each call reads one consistent snapshot;
/// another process (or this one's applier) may be writing meanwhile.
#[derive(Debug, Clone)]
pub struct Registry {
    env: Arc<RegistryEnv>,
}

impl Registry {
    pub fn open(path: &Path) -> Result<Registry, OpenError> {
        Ok(Registry {
            env: open_env(path, OpenMode::Existing)?,
        })
    }

    pub fn path(&self) -> &Path {
        self.env.path()
    }

    pub fn get(&self, dek_id: u32, node_id16: u16) -> Result<Option<RegistryRow>, RegistryError> {
        self.env
            .read(|txn| self.env.get_row(txn, dek_id, node_id16))
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
        let mut ids: Vec<u32> = Vec::new();
        self.scan(None, |row| {
            if ids.last() != Some(&row.dek_id) {
                ids.push(row.dek_id);
            }
        })?;
        Ok(ids)
    }

    fn scan(&self, dek_id: Option<u32>, f: impl FnMut(RegistryRow)) -> Result<(), RegistryError> {
        self.env.read(|txn| match dek_id {
            Some(id) => self.env.scan(txn, &dek_prefix(id), f),
            None => self.env.scan(txn, REGISTRY_PREFIX, f),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{CorruptionKind, MalformedReason};
    use crate::registry::{decode_registry_value, KEY_LEN};

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
        use std::sync::atomic::{AtomicU32, Ordering};
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ea-applier-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn lmdb_applier_runs_the_four_cases_and_persists() {
        let dir = temp_dir("cases");
        {
            let a = Applier::open(&dir).expect("open");
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
        let a = Applier::open(&dir).expect("open");
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
        assert!(a.registry().is_empty().expect("empty"));
        drop(a);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_stored_value_halts_and_is_not_overwritten() {
        let dir = temp_dir("corrupt");
        let a = Applier::open(&dir).expect("open");
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
        assert!(a.registry().get(4, 1).is_err());
        assert!(a.registry().rows(None).is_err());
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
        assert!(err.reason.contains("another Applier"), "{err}");
        drop(a);
        Applier::open(&dir).expect("after close");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
