//! Every call into LMDB's C API (`lmdb-sys`) that the `lmdb` crate does not
//! wrap, as small functions with their `SAFETY:` notes, and the C constants
//! the store uses (as heed keeps its FFI in `mdb/lmdb_ffi.rs`). Nothing
//! else in the crate names `lmdb_sys`: the lint stage of `scripts/test.sh`
//! checks it.
//!
//! The `lmdb` crate covers transactions, cursors and puts; what is here is
//! what it leaves out: the reader-table check, map resizing, the
//! `MDB_NOMETASYNC` toggle, transaction ids, `mdb_stat`, and a read
//! transaction that can be reset and renewed (a `Registry` view's pinned
//! snapshot).

use std::mem::MaybeUninit;
use std::os::raw::c_int;
use std::ptr::{self, NonNull};

use lmdb::{Environment, Transaction};

pub(super) use lmdb_sys::{MDB_dbi, MDB_txn, MDB_FIRST, MDB_NEXT, MDB_SET_KEY, MDB_SET_RANGE};

/// `MDB_MAP_FULL`: the map is full; the write may be retried once grown.
pub(super) const MAP_FULL: c_int = lmdb_sys::MDB_MAP_FULL;
/// `MDB_MAP_RESIZED`: another process grew the map.
pub(super) const MAP_RESIZED: c_int = lmdb_sys::MDB_MAP_RESIZED;
/// LMDB's free-page database, present in every environment.
pub(super) const FREE_DBI: MDB_dbi = 0;

fn check(rc: c_int) -> Result<(), lmdb::Error> {
    match rc {
        0 => Ok(()),
        rc => Err(lmdb::Error::from_err_code(rc)),
    }
}

/// Frees the reader slots of dead processes (`mdb_reader_check`); returns
/// how many. A failure only means stale slots stay until the next check.
pub(super) fn reader_check(env: &Environment) -> usize {
    let mut dead: c_int = 0;
    // SAFETY: `env.env()` is valid for the life of `env`, and `dead` is a
    // live out-parameter.
    unsafe { lmdb_sys::mdb_reader_check(env.env(), &mut dead) };
    usize::try_from(dead).unwrap_or(0)
}

/// Sets the map size (`mdb_env_set_mapsize`); 0 adopts the size another
/// process gave the file.
///
/// # Safety
/// No transaction of this process may be open on `env`: LMDB remaps the
/// file, and a live transaction would keep pointers into the old map.
pub(super) unsafe fn set_map_size(env: &Environment, size: usize) -> Result<(), lmdb::Error> {
    // SAFETY: a valid environment; the caller guarantees no open
    // transaction (this function's contract).
    check(unsafe { lmdb_sys::mdb_env_set_mapsize(env.env(), size) })
}

/// Turns `MDB_NOMETASYNC` on or off.
pub(super) fn set_nometasync(env: &Environment, on: bool) -> Result<(), lmdb::Error> {
    // SAFETY: a valid environment; LMDB reads this flag only when it
    // writes a meta page, so it may be toggled at any time.
    check(unsafe {
        lmdb_sys::mdb_env_set_flags(env.env(), lmdb_sys::MDB_NOMETASYNC, c_int::from(on))
    })
}

/// The id of the snapshot `txn` reads (`mdb_txn_id`).
pub(super) fn txn_id(txn: &impl Transaction) -> u64 {
    // SAFETY: `txn.txn()` is a live transaction for as long as `txn` is
    // borrowed.
    unsafe { lmdb_sys::mdb_txn_id(txn.txn()) as u64 }
}

/// LMDB's own figures for one database, as `mdb_stat` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DbStat {
    pub depth: u16,
    pub branch_pages: u64,
    pub leaf_pages: u64,
    pub overflow_pages: u64,
    pub entries: u64,
}

/// `mdb_stat` of database `dbi` in `txn` (an unknown `dbi` is an error,
/// never undefined: LMDB checks it).
pub(super) fn db_stat(txn: &impl Transaction, dbi: MDB_dbi) -> Result<DbStat, lmdb::Error> {
    let mut stat = MaybeUninit::<lmdb_sys::MDB_stat>::uninit();
    // SAFETY: a live transaction and a live out-parameter; mdb_stat checks
    // `dbi` against the transaction's databases and fills `stat` on success.
    check(unsafe { lmdb_sys::mdb_stat(txn.txn(), dbi, stat.as_mut_ptr()) })?;
    // SAFETY: initialised by the successful call above.
    let stat = unsafe { stat.assume_init() };
    Ok(DbStat {
        depth: u16::try_from(stat.ms_depth).unwrap_or(u16::MAX),
        branch_pages: stat.ms_branch_pages as u64,
        leaf_pages: stat.ms_leaf_pages as u64,
        overflow_pages: stat.ms_overflow_pages as u64,
        entries: stat.ms_entries as u64,
    })
}

/// A read-only transaction owned outright, which can be reset (its pages
/// released) and renewed at the newest commit without a new reader slot;
/// the `lmdb` crate has no renewable transaction that owns its
/// environment. It is ended explicitly, by [`ReadTxn::end`] or, after
/// fork (where the reader slot is the parent's), [`ReadTxn::abandon`], and
/// must not be read from afterwards; its owner (`store::Snapshot`) ends it
/// only in its own `Drop`.
pub(super) struct ReadTxn {
    txn: NonNull<MDB_txn>,
    state: TxnState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxnState {
    Live,
    /// Between a reset and a successful renew: holds no pages.
    Reset,
    Ended,
}

impl ReadTxn {
    /// Begins a read-only transaction on `env`.
    ///
    /// # Safety
    /// `env` must stay open for as long as the transaction exists.
    pub(super) unsafe fn begin(env: &Environment) -> Result<ReadTxn, lmdb::Error> {
        let mut txn: *mut MDB_txn = ptr::null_mut();
        // SAFETY: a valid environment, no parent, the read-only flag and a
        // live out-parameter.
        check(unsafe {
            lmdb_sys::mdb_txn_begin(env.env(), ptr::null_mut(), lmdb_sys::MDB_RDONLY, &mut txn)
        })?;
        let txn = NonNull::new(txn).ok_or(lmdb::Error::Invalid)?;
        Ok(ReadTxn {
            txn,
            state: TxnState::Live,
        })
    }

    /// Releases the snapshot (`mdb_txn_reset`); a no-op unless live.
    pub(super) fn reset(&mut self) {
        if self.state == TxnState::Live {
            // SAFETY: a live read-only transaction owned by `self`.
            unsafe { lmdb_sys::mdb_txn_reset(self.txn.as_ptr()) };
            self.state = TxnState::Reset;
        }
    }

    /// Moves the transaction to the newest commit (`mdb_txn_renew`).
    pub(super) fn renew(&mut self) -> Result<(), lmdb::Error> {
        if self.state == TxnState::Ended {
            return Err(lmdb::Error::BadTxn);
        }
        self.reset();
        // SAFETY: a reset read-only transaction owned by `self`.
        check(unsafe { lmdb_sys::mdb_txn_renew(self.txn.as_ptr()) })?;
        self.state = TxnState::Live;
        Ok(())
    }

    /// Ends the transaction (`mdb_txn_abort`, valid on a reset one too;
    /// `Transaction::abort` would take the snapshot by value).
    pub(super) fn end(&mut self) {
        if self.state != TxnState::Ended {
            // SAFETY: owned by `self` and not yet ended; marked ended so it
            // is never passed to LMDB again.
            unsafe { lmdb_sys::mdb_txn_abort(self.txn.as_ptr()) };
            self.state = TxnState::Ended;
        }
    }

    /// Gives the transaction up without telling LMDB (after fork: aborting
    /// would release the parent's reader slot).
    pub(super) fn abandon(&mut self) {
        self.state = TxnState::Ended;
    }
}

// The `lmdb` crate's readers (get, cursors) take any `Transaction`.
impl Transaction for ReadTxn {
    fn txn(&self) -> *mut MDB_txn {
        debug_assert!(
            self.state != TxnState::Ended,
            "a read of an ended transaction"
        );
        self.txn.as_ptr()
    }
}
