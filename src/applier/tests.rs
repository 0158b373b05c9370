//! The applier's unit tests: the four cases through the store, halts that
//! write nothing, bootstrap and rotation with their replays, a fault at
//! every step, `apply_many`, the applied index and map growth.

use std::collections::BTreeMap;

use super::*;
use crate::error::RejectReason;
use crate::kek::{Dek, FileKek, KekBackend, KekFailure, UnwrapError};
use crate::registry::{decode_registry_value, registry_key, CorruptionKind, KEY_LEN};
use crate::sidecar::SidecarKey;
use crate::test_support::{fresh_path, reg, row_of};
use crate::wire::{Bootstrap, MalformedReason, Purpose, Rotation, OP_BOOTSTRAP};

#[test]
fn lmdb_applier_runs_the_four_cases_and_persists() {
    let dir = fresh_path("cases");
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
    // head stops after n rows, in key order, and takes a DEK's rows.
    assert_eq!(view.head(0, None).expect("head 0"), vec![]);
    assert_eq!(view.head(1, None).expect("head 1"), vec![rows[0]]);
    assert_eq!(view.head(9, None).expect("head 9"), rows);
    assert_eq!(view.head(9, Some(2)).expect("head dek 2"), vec![rows[1]]);
    drop(view);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bootstrap_and_rotation_halt_without_kek_and_write_nothing() {
    let dir = fresh_path("kek");
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
    let dir = fresh_path("corrupt");
    let mut a = Applier::open(&dir).expect("open");
    let key = registry_key(4, 0x0001);
    assert_eq!(key.len(), KEY_LEN);
    a.env.put_raw(&key, &[0u8; 11]);
    match a.apply_registration(&reg(4, 0x0001, 1)) {
        Err(ApplyError::RegistryCorruption(c)) => {
            assert_eq!(c.kind, CorruptionKind::ValueLength);
            assert_eq!(c.dek_id, Some(4));
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert!(a.registry().expect("view").get(4, 1).is_err());
    assert!(a.registry().expect("view").rows(None).is_err());
    let stored = a.env.get_raw(&key).expect("still there");
    assert_eq!(stored, vec![0u8; 11]);
    assert_eq!(decode_registry_value(&stored), None);
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn second_applier_on_same_dir_is_refused() {
    let dir = fresh_path("two");
    let a = Applier::open(&dir).expect("open");
    let err = Applier::open(&dir).unwrap_err();
    assert!(err.to_string().contains("another Applier"), "{err}");
    drop(a);
    Applier::open(&dir).expect("after close");
    let _ = std::fs::remove_dir_all(&dir);
}

// ------------------------------------------------------------ with a KEK

const KEK_BYTES: [u8; 32] = [0x42; 32];

fn kek() -> FileKek {
    FileKek::from_bytes(KEK_BYTES, Path::new("test-kek"))
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
    Applier::open_with_kek(dir, Arc::new(kek()), None).expect("open with kek")
}

#[test]
fn bootstrap_installs_keys_sidecar_and_rows_and_replays_exactly() {
    let dir = fresh_path("boot");
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
    let dir = fresh_path("rules");
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
    let dir = fresh_path("rot");
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
    let reference = fresh_path("ref");
    let mut clean = open_kek(&reference);
    clean.apply_bootstrap(&b).expect("clean");
    let clean_keys = clean.sidecar().expect("read").expect("present").keys;
    let clean_rows = clean.registry().expect("view").rows(None).expect("rows");
    drop(clean);
    for step in steps {
        let dir = fresh_path(step.name());
        let mut a = open_kek(&dir);
        testing::set_fault(&mut a, Some((step, FaultAction::Fail)));
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
        let one_dir = fresh_path("one");
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
        let many_dir = fresh_path("many");
        let mut many = Applier::open(&many_dir).expect("open");
        let batch: Vec<_> = entries
            .iter()
            .map(|r| Ok(Entry::Registration(*r)))
            .collect();
        match (many.apply_many(&batch, Indexes::None), halt_at) {
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
    let dir = fresh_path("index");
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
        a.apply_many(&batch, Indexes::From(11)).expect("batch"),
        vec![Outcome::Skipped, Outcome::Advanced, Outcome::Inserted]
    );
    assert_eq!(a.applied_index(), Some(13));
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_full_map_grows_and_keeps_everything() {
    let dir = fresh_path("grow");
    let options = ApplierOptions {
        map_size: 64 * 1024,
        ..ApplierOptions::default()
    };
    let mut a = Applier::open_with(&dir, options).expect("open");
    let start = a.env.map_size();
    let batch: Vec<_> = (0..20_000u64)
        .map(|n| Ok(Entry::Registration(reg(1 + (n / 60_000) as u32, n, 1))))
        .collect();
    let outcomes = a.apply_many(&batch, Indexes::From(1)).expect("grows");
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
        .apply_many(&more, Indexes::None)
        .expect_err("cannot grow with a view open");
    assert!(
        halt.error.to_string().contains("close them"),
        "{}",
        halt.error
    );
    assert_eq!(view.len().expect("len"), 20_200);
    drop(view);
    a.apply_many(&more, Indexes::None)
        .expect("grows once the view is closed");
    assert_eq!(a.registry().expect("view").len().expect("len"), 70_200);
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resync_replays_the_gap_into_keys_json_only() {
    let dir = fresh_path("resync");
    let mut a = open_kek(&dir);
    let node = 0xabcd0001;
    let entries: Vec<Vec<u8>> = vec![
        Entry::Bootstrap(bootstrap(1, 2, vec![reg(1, node, 1), reg(2, node, 1)]))
            .encode()
            .expect("encode"),
        Entry::Rotation(rotation(3, Purpose::Storage, 2))
            .encode()
            .expect("encode"),
        Entry::Registration(reg(3, node, 4))
            .encode()
            .expect("encode"),
    ];
    let path = dir.join("keys.json");
    let mut old = Vec::new();
    for (index, entry) in (1..).zip(&entries) {
        a.apply_at(entry, Some(index)).expect("apply");
        if index == 1 {
            old = std::fs::read(&path).expect("read");
        }
    }
    std::fs::write(&path, &old).expect("restore");
    let rows_before = a.registry().expect("view").len().expect("len");
    let log = ResyncLog {
        first_index: 1,
        entries: &entries,
    };
    let plan = a.resync_sidecar(log, node, None, true).expect("dry run");
    assert_eq!(
        std::fs::read(&path).expect("read"),
        old,
        "a dry run writes nothing"
    );
    assert_eq!((plan.sidecar_applied_index, plan.through_index), (1, 3));
    assert_eq!(plan.replayed.len(), 1);
    assert_eq!(plan.replayed[0].outcome, Outcome::Rotated);
    assert_eq!(plan.passed_over, 1);
    let done = a.resync_sidecar(log, node, None, false).expect("resync");
    assert!(done.written);
    let sc = a.sidecar().expect("read").expect("present");
    assert_eq!((sc.active_storage, sc.raft_applied_index), (3, 3));
    assert_eq!(
        sc.keys[&3].local_epoch, 4,
        "this node's own row under key 3"
    );
    assert_eq!(a.registry().expect("view").len().expect("len"), rows_before);
    assert_eq!(
        std::fs::read(done.backup.expect("kept")).expect("backup"),
        old
    );
    // A reserved sub-tag in the gap halts and writes nothing.
    std::fs::write(&path, &old).expect("restore");
    let mut bad = entries.clone();
    bad[1][2] = crate::wire::REWRAP_DEKS;
    let log = ResyncLog {
        first_index: 1,
        entries: &bad,
    };
    assert!(matches!(
        a.resync_sidecar(log, node, None, false),
        Err(ResyncError::Halt { index: 2, .. })
    ));
    assert_eq!(std::fs::read(&path).expect("read"), old);
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The file KEK behind the interface, counting its unwraps; `fail` makes
/// every unwrap a backend failure.
struct CountingKek {
    inner: FileKek,
    unwraps: std::sync::atomic::AtomicUsize,
    fail: std::sync::atomic::AtomicBool,
}

impl KekBackend for CountingKek {
    fn wrap(&self, dek: &Dek) -> Result<Vec<u8>, KekFailure> {
        KekBackend::wrap(&self.inner, dek)
    }
    fn unwrap(&self, wrapped: &[u8]) -> Result<Dek, UnwrapError> {
        use std::sync::atomic::Ordering::Relaxed;
        self.unwraps.fetch_add(1, Relaxed);
        if self.fail.load(Relaxed) {
            return Err(UnwrapError::Backend(KekFailure {
                kek: self.identity(),
                message: "KMS unavailable".into(),
                interrupt: false,
                source: Arc::new(std::io::Error::other("KMS unavailable")),
            }));
        }
        self.inner.unwrap(wrapped)
    }
    fn identity(&self) -> String {
        "counting:test".into()
    }
}

#[test]
fn each_wrapped_key_is_unwrapped_once_per_applier() {
    use std::sync::atomic::Ordering::Relaxed;
    let dir = fresh_path("unwrap-once");
    let counting = Arc::new(CountingKek {
        inner: kek(),
        unwraps: 0.into(),
        fail: false.into(),
    });
    let count = || counting.unwraps.load(Relaxed);
    let mut a = Applier::open_with_kek(&dir, counting.clone(), None).expect("open");
    assert_eq!(a.kek().expect("kek").identity(), "counting:test");
    a.apply_bootstrap(&bootstrap(1, 2, vec![reg(1, 0xabcd0001, 1)]))
        .expect("bootstrap");
    assert_eq!(count(), 2);
    let mut last = None;
    for (n, id) in [3u32, 4, 5].into_iter().enumerate() {
        let r = rotation(id, Purpose::Storage, 2 + n as u16);
        a.apply_rotation(&r).expect("rotate");
        assert_eq!(count(), 3 + n, "rotation to {id} unwraps only its key");
        last = Some(r);
    }
    // A replay (the same wrapped bytes) and a cutover ask nothing; another
    // wrap of a loaded key is other bytes, asked once.
    a.apply_rotation(&last.expect("rotated")).expect("replay");
    let mut cutover = rotation(5, Purpose::Storage, 5);
    (cutover.sub_tag, cutover.wrapped) = (crate::wire::ENABLE_STORAGE_ENVELOPE, Vec::new());
    assert_eq!(
        a.apply_rotation(&cutover).expect("cutover"),
        Outcome::Enabled
    );
    assert_eq!(count(), 5);
    a.apply_rotation(&rotation(5, Purpose::Storage, 5))
        .expect("rewrapped");
    assert_eq!(count(), 6);
    a.apply_rotation(&rotation(5, Purpose::Storage, 5))
        .expect("rewrapped again");
    assert_eq!(count(), 7);
    drop(a);
    let a = Applier::open_with_kek(&dir, counting.clone(), None).expect("reopen");
    assert_eq!(count(), 12, "reopening opens the five keys once each");
    drop(a);
    // A KEK that fails halts the entry and writes nothing.
    let mut a = Applier::open_with_kek(&dir, counting.clone(), None).expect("reopen");
    let before = std::fs::read(dir.join("keys.json")).expect("read");
    let rows = a.registry().expect("view").rows(None).expect("rows");
    counting.fail.store(true, Relaxed);
    let err = a
        .apply_rotation(&rotation(6, Purpose::Raft, 1))
        .expect_err("fails");
    assert!(
        matches!(&err, ApplyError::KekUnwrap { dek_id: 6, problem: UnwrapError::Backend(f), .. }
            if f.kek == "counting:test"),
        "{err:?}"
    );
    assert!(err.to_string().contains("dek_id=6"), "{err}");
    assert_eq!(std::fs::read(dir.join("keys.json")).expect("read"), before);
    assert_eq!(a.registry().expect("view").rows(None).expect("rows"), rows);
    assert!(!a.keystore().expect("ks").contains(6));
    drop(a);
    assert!(matches!(
        Applier::open_with_kek(&dir, counting, None),
        Err(ApplierOpenError::Apply(ApplyError::KekUnwrap {
            dek_id: 1,
            ..
        }))
    ));
    assert_eq!(std::fs::read(dir.join("keys.json")).expect("read"), before);
    let _ = std::fs::remove_dir_all(&dir);
}
