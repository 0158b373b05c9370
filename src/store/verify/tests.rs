//! The verifier against real registries damaged on purpose.

use super::*;
use crate::applier::Applier;
use crate::store::verify_path;
use crate::test_support::{fresh_path, ScratchPath};
use crate::wire::Registration;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

const FULL: WalkOptions = WalkOptions {
    max_problems: 100,
    rows: true,
};

/// A registry of `rows` rows over enough commits to have a branch
/// level and a free-page tree.
fn registry(tag: &str, rows: u32) -> ScratchPath {
    let dir = fresh_path(tag);
    let mut applier = Applier::open(&dir).expect("open");
    applier.set_durable(false).expect("nosync");
    for i in 0..rows {
        let reg = Registration {
            dek_id: 1 + i / 1000,
            full_node_id: u64::from(i % 1000) << 16 | u64::from(i % 1000),
            local_epoch: 1,
        };
        applier.apply_registration(&reg).expect("apply");
    }
    dir
}

#[test]
fn never_committed_is_a_creation_no_commit_completed_and_nothing_else() {
    // LMDB's own bytes: a created environment (two initial metas) and
    // one after a single commit.
    let fresh = registry("never-fresh", 0);
    let initial = std::fs::read(fresh.join("data.mdb")).expect("read");
    assert_eq!(initial.len(), 8192);
    let committed_dir = registry("never-committed", 1);
    let committed = std::fs::read(committed_dir.join("data.mdb")).expect("read");
    let scratch = crate::test_support::fresh_dir("never");
    let path = scratch.join("data.mdb");
    let classify = |bytes: &[u8]| {
        std::fs::write(&path, bytes).expect("write");
        never_committed(&open_data_file(&path).expect("open")).expect("classify")
    };
    let zeros = |n: usize| vec![0u8; n];
    let cases: [(&str, Vec<u8>, bool); 9] = [
        ("empty: LMDB initialises it", Vec::new(), false),
        ("both initial metas: LMDB opens it", initial.clone(), false),
        (
            "second meta blank",
            [&initial[..4096], &zeros(4096)].concat(),
            true,
        ),
        (
            "first meta blank",
            [&zeros(4096), &initial[4096..]].concat(),
            true,
        ),
        ("only the first page", initial[..4096].to_vec(), true),
        ("all zero", zeros(8192), true),
        ("a committed registry", committed.clone(), false),
        (
            "its commit's meta zeroed",
            [&committed[..4096], &zeros(4096), &committed[8192..]].concat(),
            false,
        ),
        ("truncated to its metas", committed[..8192].to_vec(), false),
    ];
    for (name, bytes, expected) in cases {
        assert_eq!(classify(&bytes), expected, "{name}");
    }
}

fn header(dir: &Path) -> Meta {
    read_header(&open_data_file(&dir.join("data.mdb")).expect("open")).expect("header")
}

fn patch(dir: &Path, offset: u64, bytes: &[u8]) {
    let file = OpenOptions::new()
        .write(true)
        .open(dir.join("data.mdb"))
        .expect("open");
    file.write_all_at(bytes, offset).expect("write");
}

#[test]
fn a_healthy_registry_verifies_with_exact_counts() {
    let dir = registry("verify-ok", 3000);
    let report = verify_path(&dir, FULL).expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.entries, 3000);
    assert!(report.depth >= 2 && report.branch_pages >= 1, "{report:?}");
    assert!(report.free_pages > 0, "{report:?}");
    Applier::open(&dir).expect("reopens");
}

#[test]
fn a_truncated_file_is_refused_at_open_and_reported() {
    let dir = registry("verify-trunc", 3000);
    let file = OpenOptions::new()
        .write(true)
        .open(dir.join("data.mdb"))
        .expect("open");
    let len = file.metadata().expect("stat").len();
    file.set_len(len / 2).expect("truncate");
    let err = Applier::open(&dir).expect_err("damaged");
    assert!(err.to_string().contains("truncated"), "{err}");
    let report = verify_path(&dir, FULL).expect("verify");
    assert_eq!(report.problems[0].kind, DamageKind::Truncated, "{report:?}");
}

#[test]
fn a_zeroed_root_page_is_refused() {
    let dir = registry("verify-zero", 3000);
    let meta = header(&dir);
    let ps = u64::from(meta.page_size);
    patch(&dir, meta.main.root * ps, &vec![0u8; ps as usize]);
    let err = Applier::open(&dir).expect_err("damaged");
    assert!(err.to_string().contains("page_header"), "{err}");
}

#[test]
fn foreign_database_flags_are_refused_by_name() {
    for (flag, name) in [
        (0x04u16, "MDB_DUPSORT"),
        (0x02, "MDB_REVERSEKEY"),
        (0x08, "MDB_INTEGERKEY"),
    ] {
        let dir = registry("verify-flags", 10);
        let ps = u64::from(header(&dir).page_size);
        for slot in 0..2 {
            // main database record: page header + meta offset 72, flags at +4
            patch(&dir, slot * ps + 16 + 72 + 4, &flag.to_ne_bytes());
        }
        let err = Applier::open(&dir).expect_err("flags");
        assert!(err.to_string().contains(name), "{err}");
        let crate::error::ApplierOpenError::Open(open) = err else {
            panic!("not an open error: {err}")
        };
        assert_eq!(open.damage.expect("damage").kind, DamageKind::DbFlags);
        assert!(crate::view::Registry::open(&dir).is_err());
    }
}
