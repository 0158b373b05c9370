//! A structural check of `data.mdb`, made with positional reads of the
//! file and never through LMDB's map.
//!
//! LMDB trusts its file: a page number past the end of a truncated file is
//! a SIGBUS when touched through the map, a zeroed page trips an assertion
//! (SIGABRT), a node whose size field is huge makes a copy read far past
//! its page, and a main database opened with flags it was not written with
//! (`MDB_DUPSORT`, `MDB_REVERSEKEY`, `MDB_INTEGERKEY`) reads rows wrongly
//! or crashes. None of that can be caught once LMDB runs into it, so every
//! open checks first, on the bytes of the file:
//!
//! 1. [`read_header`], before LMDB maps the file: both meta pages (magic,
//!    version, page size), and the database flags of the meta LMDB will
//!    use;
//! 2. [`walk`], with a read transaction pinning the snapshot: every page
//!    reachable from that meta, in the main tree and the free-page tree,
//!    is inside the file, of the expected type and not reached twice; every
//!    node lies within its page, keys are in order within and across
//!    pages, all leaves are at the recorded depth, the page and entry
//!    counts match the meta, and no page listed as free is also in use.
//!
//! Damage in a *meta page* is only partly detectable: meta pages carry no
//! checksum. A meta whose transaction id is damaged downwards makes LMDB
//! use the other meta, the previous commit, whose tree is intact: the
//! registry then reads as it was one commit earlier (as after a crash
//! before that commit), and a replay from `applied_index + 1` converges.
//! A damaged root, count, flag or size field is caught here.
//!
//! An open of a file this process has walked clean, unchanged since, skips
//! step 2 (`verdicts.rs` says what "unchanged" trusts); `verify()` always
//! walks.
//!
//! `format.rs` holds LMDB's on-disk constants and the meta pages (step 1),
//! `walk/` the page walker (step 2, one page's checks in `walk/page.rs`),
//! `report.rs` the `Damage` kinds and the `VerifyReport`, `verdicts.rs`
//! the reopen cache; this file joins them to an environment (a walk pinned
//! by a read transaction).

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::error::{open_error, OpenError, StorageError};
use super::{dirs, ffi, open_lmdb, shared_env, Checked, OpenMode, RegistryEnv, OPEN_ENVS};
use super::{DATA_FILE, DEFAULT_MAP_SIZE};
use crate::fsutil::lock;

mod format;
mod report;
mod verdicts;
mod walk;

pub use format::{
    check_meta, never_committed, newest, open_data_file, read_header, read_metas, DbRecord, Meta,
};
pub(crate) use report::damage;
pub use report::{Damage, DamageKind, VerifyReport, WalkOptions};
use verdicts::FileState;
pub use walk::walk;

/// How often a meta page that looks wrong is read again before it counts
/// as damage, and the pause between reads.
pub(super) const META_ATTEMPTS: usize = 20;
pub(super) const META_RETRY_PAUSE: Duration = Duration::from_millis(5);

/// Verifies the registry at `path` without opening it for use: the
/// header, then (if LMDB can safely map the file) a walk of every page
/// and, with `options.rows`, every row. Damage is in the report; `Err`
/// only when there is no registry to look at.
pub fn verify_path(path: &Path, options: WalkOptions) -> Result<VerifyReport, OpenError> {
    let canonical = path.canonicalize().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => open_error(path, "no such directory"),
        _ => open_error(path, e.to_string()),
    })?;
    let meta = std::fs::metadata(&canonical).map_err(|e| open_error(path, e.to_string()))?;
    if !meta.is_dir() {
        return Err(open_error(path, "not a directory"));
    }
    dirs::check_directory(&canonical, &meta)?;
    let data = canonical.join(DATA_FILE);
    let file = open_data_file(&data).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => open_error(path, "no registry here (no data.mdb)"),
        _ => open_error(path, format!("cannot open data.mdb: {e}")),
    })?;
    if let Err(problem) = read_header(&file) {
        let metas = read_metas(&file).ok();
        let newest = metas.as_ref().map(newest);
        return Ok(VerifyReport {
            txnid: newest.map_or(0, |m| m.txnid),
            page_size: newest.map_or(0, |m| m.page_size),
            last_page: newest.map_or(0, |m| m.last_page),
            problems: vec![problem],
            ..VerifyReport::default()
        });
    }
    drop(file);
    let mut table = lock(&OPEN_ENVS);
    match shared_env(&mut table, &canonical) {
        Some(env) => {
            drop(table);
            env.verify(options)
                .map_err(|e| open_error(path, e.to_string()))
        }
        None => {
            // A private environment, opened and closed with the table held
            // so that no other open of this path can overlap it (one
            // Environment per path per process).
            let env = open_lmdb(
                &canonical,
                OpenMode::Existing,
                DEFAULT_MAP_SIZE,
                Checked::ByCaller,
            )?;
            let report = env
                .verify(options)
                .map_err(|e| open_error(path, e.to_string()));
            drop(env);
            drop(table);
            report
        }
    }
}

impl RegistryEnv {
    /// Walks the newest snapshot of `data.mdb` (see [`self`]) while a read
    /// transaction pins it, so a writer in another process reuses none of
    /// its pages meanwhile.
    pub fn verify(&self, options: WalkOptions) -> Result<VerifyReport, StorageError> {
        self.check(options, false)
    }

    /// The check every open makes: [`RegistryEnv::verify`] up to the first
    /// problem, without the walk when this process walked the same
    /// unchanged file and snapshot clean before.
    pub(super) fn verify_at_open(&self) -> Result<VerifyReport, StorageError> {
        self.check(
            WalkOptions {
                max_problems: 1,
                rows: false,
            },
            true,
        )
    }

    fn check(&self, options: WalkOptions, reuse: bool) -> Result<VerifyReport, StorageError> {
        let io_error = |e: io::Error| {
            StorageError::new(
                "verifying data.mdb",
                self.path.clone(),
                e.to_string(),
                e.raw_os_error(),
            )
        };
        let file = open_data_file(&self.path.join(DATA_FILE)).map_err(io_error)?;
        // A problem may be passing: a meta page read while another process
        // writes it, or the pinned snapshot's meta already overwritten two
        // commits later. Damage is what stays after a few fresh pins.
        let mut problem = None;
        for attempt in 0..META_ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(META_RETRY_PAUSE);
            }
            // The clock before the file's times (see verdicts.rs).
            let now = SystemTime::now();
            let before = FileState::of(&file).map_err(io_error)?;
            let (txn, _token) =
                self.begin_with("beginning a read transaction", || self.env.begin_ro_txn())?;
            let txnid = ffi::txn_id(&txn);
            let metas = match read_metas(&file) {
                Ok(metas) => metas,
                Err(p) => {
                    problem = Some(p);
                    continue;
                }
            };
            // A reader takes the meta by its transaction id's parity
            // (mdb_txn_renew0), not the newer of the two.
            let meta = metas[usize::from(txnid & 1 == 1)];
            let found = if meta.txnid != txnid {
                Some(damage(
                    Some(meta.slot),
                    DamageKind::Meta,
                    format!(
                        "meta page {} holds transaction {}, but LMDB reads it as transaction \
                         {txnid}",
                        meta.slot, meta.txnid
                    ),
                ))
            } else if let Err(p) = check_meta(&meta) {
                Some(p)
            } else if !same_as_lmdb(&txn, ffi::FREE_DBI, &meta.free)
                || !same_as_lmdb(&txn, self.db.dbi(), &meta.main)
            {
                Some(damage(
                    Some(meta.slot),
                    DamageKind::Meta,
                    "the meta page in the file differs from the one LMDB uses",
                ))
            } else {
                None
            };
            match found {
                Some(p) => problem = Some(p),
                None => {
                    let known = reuse.then(|| verdicts::known(&before, txnid)).flatten();
                    let mut report = match known {
                        Some(report) => report,
                        None => {
                            let report = walk(&file, &meta, options);
                            let after = FileState::of(&file).map_err(io_error)?;
                            verdicts::remember(&before, &after, now, txnid, &report);
                            report
                        }
                    };
                    drop(txn);
                    // The other meta is one LMDB never reads while this one
                    // is newer, and the next commit overwrites it: what is
                    // wrong with it is harmless (LMDB itself opens this
                    // file), so a warning, not damage.
                    let other = &metas[usize::from(meta.slot == 0)];
                    if let Err(p) = check_meta(other) {
                        report.warnings.push(p);
                    }
                    return Ok(report);
                }
            }
        }
        Ok(report_of(problem.unwrap_or_else(|| {
            damage(None, DamageKind::Meta, "no consistent meta page")
        })))
    }
}

/// Whether LMDB's own view of a database in `txn` (`mdb_stat`) is the
/// record read from the file.
fn same_as_lmdb(txn: &impl lmdb::Transaction, dbi: ffi::MDB_dbi, record: &DbRecord) -> bool {
    ffi::db_stat(txn, dbi).is_ok_and(|stat| {
        stat.depth == record.depth
            && stat.branch_pages == record.branch_pages
            && stat.leaf_pages == record.leaf_pages
            && stat.overflow_pages == record.overflow_pages
            && stat.entries == record.entries
    })
}

fn report_of(problem: Damage) -> VerifyReport {
    VerifyReport {
        problems: vec![problem],
        ..VerifyReport::default()
    }
}

#[cfg(test)]
mod tests;
