//! Transactions as guards, and the row I/O inside them.
//!
//! Every transaction is counted open in its environment's gate until it is
//! gone (LMDB may only resize the map with none open). The guards own both
//! the LMDB transaction and the count, with the transaction declared first
//! so that it is always ended before the count drops: callers cannot get
//! the order wrong, and nothing outside this module touches `lmdb`.

use std::ops::ControlFlow;
use std::sync::Arc;

use lmdb::{Cursor, Transaction, WriteFlags};

use super::ffi::{self, ReadTxn, MDB_FIRST, MDB_NEXT, MDB_SET_KEY, MDB_SET_RANGE};
use super::{RegistryEnv, RegistryError, StorageError};
use crate::registry::{
    decode_row, encode_registry_value, registry_key, unpack_key, value_excerpt, CorruptionKind,
    RegistryCorruption, RegistryRow, REGISTRY_PREFIX,
};

/// After a cursor step that missed the next row's key, the rows written
/// by search before a step is tried again.
const STEP_RETRY: usize = 8;

/// Where the Raft applied index lives: outside the registry prefix, so
/// scans and digests of the registry never see it.
pub const APPLIED_INDEX_KEY: &[u8] = b"!encryption|applied_index";

/// Marks one transaction as open in this process until dropped.
pub(crate) struct TxnToken<'a> {
    pub(super) env: &'a RegistryEnv,
}

impl Drop for TxnToken<'_> {
    fn drop(&mut self) {
        self.env.leave();
    }
}

/// The row at `(dek_id, node_id16)` in `txn`, or `None`. A stored value
/// that does not decode is an error, never `None`.
fn get_row<T: Transaction>(
    env: &RegistryEnv,
    txn: &T,
    dek_id: u32,
    node_id16: u16,
) -> Result<Option<RegistryRow>, RegistryError> {
    let key = registry_key(dek_id, node_id16);
    match txn.get(env.db, &key) {
        Ok(value) => Ok(Some(decode_row(&key, value)?)),
        Err(lmdb::Error::NotFound) => Ok(None),
        Err(e) => Err(env.storage_error("reading a registry row", e).into()),
    }
}

fn get_applied_index<T: Transaction>(
    env: &RegistryEnv,
    txn: &T,
) -> Result<Option<u64>, RegistryError> {
    match txn.get(env.db, &APPLIED_INDEX_KEY) {
        Ok(value) => match <[u8; 8]>::try_from(value) {
            Ok(bytes) => Ok(Some(u64::from_be_bytes(bytes))),
            Err(_) => Err(RegistryCorruption {
                kind: CorruptionKind::AppliedIndexLength,
                key: APPLIED_INDEX_KEY.to_vec(),
                value: Some(value_excerpt(value)),
                value_len: value.len(),
                dek_id: None,
                node_id16: None,
            }
            .into()),
        },
        Err(lmdb::Error::NotFound) => Ok(None),
        Err(e) => Err(env.storage_error("reading the applied index", e).into()),
    }
}

/// Calls `f` on every row whose key starts with `prefix` (which must
/// itself start with the registry prefix), in key order.
fn scan<T: Transaction>(
    env: &RegistryEnv,
    txn: &T,
    prefix: &[u8],
    mut f: impl FnMut(RegistryRow) -> ControlFlow<()>,
) -> Result<(), RegistryError> {
    debug_assert!(prefix.starts_with(REGISTRY_PREFIX));
    // The cursor lives in this named binding for the whole walk.
    let cursor = txn
        .open_ro_cursor(env.db)
        .map_err(|e| env.storage_error("opening a cursor", e))?;
    let mut step = cursor.get(Some(prefix), None, MDB_SET_RANGE);
    loop {
        match step {
            Ok((Some(key), value)) => {
                if !key.starts_with(prefix) {
                    break;
                }
                if f(decode_row(key, value)?).is_break() {
                    break;
                }
            }
            Ok((None, _)) => {
                return Err(StorageError::new(
                    "scanning the registry",
                    env.path.clone(),
                    "LMDB cursor returned a value without a key",
                    None,
                )
                .into())
            }
            Err(lmdb::Error::NotFound) => break,
            Err(e) => return Err(env.storage_error("scanning the registry", e).into()),
        }
        step = cursor.get(None, None, MDB_NEXT);
    }
    drop(cursor);
    Ok(())
}

/// One write transaction. Dropping it aborts: nothing it wrote is kept.
pub struct WriteTxn<'env> {
    // Field order is drop order: the transaction ends before the token
    // counts it closed.
    txn: lmdb::RwTransaction<'env>,
    _token: TxnToken<'env>,
    env: &'env RegistryEnv,
}

impl<'env> WriteTxn<'env> {
    pub(super) fn new(env: &'env RegistryEnv) -> Result<WriteTxn<'env>, StorageError> {
        env.clear_stale_readers_now_and_then();
        let (txn, token) =
            env.begin_with("beginning a write transaction", || env.env.begin_rw_txn())?;
        Ok(WriteTxn {
            txn,
            _token: token,
            env,
        })
    }

    pub fn get_row(
        &self,
        dek_id: u32,
        node_id16: u16,
    ) -> Result<Option<RegistryRow>, RegistryError> {
        get_row(self.env, &self.txn, dek_id, node_id16)
    }

    pub fn put_row(&mut self, row: &RegistryRow) -> Result<(), StorageError> {
        let key = registry_key(row.dek_id, row.node_id16);
        self.txn
            .put(
                self.env.db,
                &key,
                &encode_registry_value(&row.value()),
                WriteFlags::empty(),
            )
            .map_err(|e| self.env.storage_error("writing a registry row", e))
    }

    /// Removes the row at `(dek_id, node_id16)`; a missing row is fine.
    pub fn delete_row(&mut self, dek_id: u32, node_id16: u16) -> Result<(), StorageError> {
        let key = registry_key(dek_id, node_id16);
        match self.txn.del(self.env.db, &key, None) {
            Ok(()) | Err(lmdb::Error::NotFound) => Ok(()),
            Err(e) => Err(self.env.storage_error("deleting a registry row", e)),
        }
    }

    /// The rows at `keys` (ascending [`crate::registry::pack_key`]s) into
    /// `rows` (cleared first, so a caller reuses its buffer), read through
    /// one cursor so neighbouring keys stay on the same leaf page. A row
    /// that fails to read is an error in its own slot, for whoever needs
    /// that row to report.
    #[allow(clippy::type_complexity)]
    pub fn get_rows_in_key_order(
        &self,
        keys: &[u64],
        rows: &mut Vec<Result<Option<RegistryRow>, RegistryError>>,
    ) -> Result<(), StorageError> {
        rows.clear();
        if keys.is_empty() {
            return Ok(());
        }
        let cursor = self
            .txn
            .open_ro_cursor(self.env.db)
            .map_err(|e| self.env.storage_error("opening a cursor", e))?;
        rows.extend(keys.iter().map(|&packed| {
            let (dek_id, node_id16) = unpack_key(packed);
            let key = registry_key(dek_id, node_id16);
            match cursor.get(Some(&key), None, MDB_SET_KEY) {
                Ok((_, value)) => decode_row(&key, value)
                    .map(Some)
                    .map_err(RegistryError::from),
                Err(lmdb::Error::NotFound) => Ok(None),
                Err(e) => Err(self.env.storage_error("reading a registry row", e).into()),
            }
        }));
        drop(cursor);
        Ok(())
    }

    /// Writes `rows` (ascending key order) through one cursor. Returns
    /// whether anything was written.
    ///
    /// Rows often update keys that follow each other in the tree (a stream
    /// that advances every node): the cursor then steps to the next key
    /// and overwrites it in place (`MDB_CURRENT`), where a put would search
    /// the page for it. After a step that misses, stepping is tried again
    /// only every [`STEP_RETRY`] rows, so a sparse batch pays little.
    pub fn put_rows_in_key_order<'r>(
        &mut self,
        rows: impl IntoIterator<Item = &'r RegistryRow>,
    ) -> Result<bool, StorageError> {
        let env = self.env;
        let mut cursor = self
            .txn
            .open_rw_cursor(env.db)
            .map_err(|e| env.storage_error("opening a cursor", e))?;
        let mut wrote = false;
        // Rows until the next step is tried (0: try it on this row).
        let mut wait = 0usize;
        for row in rows {
            let key = registry_key(row.dek_id, row.node_id16);
            let value = encode_registry_value(&row.value());
            let mut flags = WriteFlags::empty();
            if wrote && wait == 0 {
                match cursor.get(None, None, MDB_NEXT) {
                    Ok((Some(next), _)) if next == key.as_slice() => flags = WriteFlags::CURRENT,
                    // Past the end, or another key: searched for instead.
                    Ok(_) | Err(lmdb::Error::NotFound) => wait = STEP_RETRY,
                    // A damaged page is not a miss.
                    Err(e) => return Err(env.storage_error("stepping the cursor", e)),
                }
            } else {
                wait = wait.saturating_sub(1);
            }
            cursor
                .put(&key, &value, flags)
                .map_err(|e| env.storage_error("writing a registry row", e))?;
            wrote = true;
        }
        drop(cursor);
        Ok(wrote)
    }

    pub fn put_applied_index(&mut self, index: u64) -> Result<(), StorageError> {
        self.txn
            .put(
                self.env.db,
                &APPLIED_INDEX_KEY,
                &index.to_be_bytes(),
                WriteFlags::empty(),
            )
            .map_err(|e| self.env.storage_error("writing the applied index", e))
    }

    /// A commit that returns has been fsynced (unless the environment was
    /// set non-durable); one that fails has discarded the transaction.
    pub fn commit(self) -> Result<(), StorageError> {
        let WriteTxn { txn, _token, env } = self;
        env.commit_flags(|| {
            txn.commit().map_err(|e| {
                let mut error = env.storage_error("committing", e);
                if e != lmdb::Error::Panic && env.note_if_fatal() {
                    error.aftermath.push(super::Aftermath::EnvironmentUnusable);
                }
                error
            })
        })
    }
}

/// A read transaction pinned for as long as a view wants one consistent
/// snapshot. With `MDB_NOTLS` it may move between threads, but LMDB
/// forbids using it from two at once: `Snapshot` is `Send`, not `Sync`.
pub struct Snapshot {
    /// Ended in `Drop`, while the `Arc` still keeps its environment open.
    txn: ReadTxn,
    env: Arc<RegistryEnv>,
}

// SAFETY: the environment is opened with MDB_NOTLS, so a read transaction
// is not tied to the thread that began it; `!Sync` keeps it to one thread
// at a time, and the `Arc` keeps the environment open until it is gone.
unsafe impl Send for Snapshot {}

impl Snapshot {
    pub fn begin(env: Arc<RegistryEnv>) -> Result<Snapshot, StorageError> {
        let (txn, token) = env.begin_with("beginning a read snapshot", || {
            // SAFETY: the snapshot holds the `Arc` of this environment for
            // as long as the transaction exists.
            unsafe { ReadTxn::begin(&env.env) }
        })?;
        // The snapshot itself now stands for the open transaction.
        std::mem::forget(token);
        Ok(Snapshot { txn, env })
    }

    /// Moves the snapshot to the newest committed state.
    pub fn refresh(&mut self) -> Result<(), StorageError> {
        self.env.check_process("renewing a read snapshot")?;
        // Once reset the transaction holds no pages, so the gate may count
        // it closed while the renew waits its turn.
        self.txn.reset();
        self.env.leave();
        let Snapshot { txn, env } = self;
        match env.begin_with("renewing a read snapshot", || txn.renew()) {
            Ok(((), token)) => {
                std::mem::forget(token);
                Ok(())
            }
            Err(e) => {
                // Counted open again so Drop's `leave` stays balanced.
                env.enter();
                Err(e)
            }
        }
    }

    pub fn env(&self) -> &Arc<RegistryEnv> {
        &self.env
    }

    pub fn get_row(
        &self,
        dek_id: u32,
        node_id16: u16,
    ) -> Result<Option<RegistryRow>, RegistryError> {
        self.env.check_process("reading a registry row")?;
        get_row(&self.env, &self.txn, dek_id, node_id16)
    }

    /// The highest Raft index applied, as of this snapshot.
    pub fn applied_index(&self) -> Result<Option<u64>, RegistryError> {
        self.env.check_process("reading the applied index")?;
        get_applied_index(&self.env, &self.txn)
    }

    /// How many keys lie under the registry prefix, without reading them:
    /// LMDB's entry count less the keys outside the prefix (normally only
    /// the applied index), which are counted by walking from each end of
    /// the database to the prefix. Rows are not decoded, so a corrupt one
    /// counts (reading it raises).
    pub fn count_rows(&self) -> Result<usize, RegistryError> {
        self.env.check_process("counting the registry")?;
        let failed = |e| self.env.storage_error("counting the registry", e);
        let entries = ffi::db_stat(&self.txn, self.env.db.dbi()).map_err(failed)?;
        let entries = usize::try_from(entries.entries).unwrap_or(usize::MAX);
        let mut end = REGISTRY_PREFIX.to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1; // '|' -> '}': the first key past every prefixed one
        }
        // The cursor lives in this named binding for both walks.
        let cursor = self.txn.open_ro_cursor(self.env.db).map_err(failed)?;
        let mut outside = 0usize;
        let mut step = cursor.get(None, None, MDB_FIRST);
        loop {
            match step {
                Ok((Some(key), _)) if key < REGISTRY_PREFIX => outside += 1,
                Ok(_) | Err(lmdb::Error::NotFound) => break,
                Err(e) => return Err(failed(e).into()),
            }
            step = cursor.get(None, None, MDB_NEXT);
        }
        let mut step = cursor.get(Some(&end), None, MDB_SET_RANGE);
        loop {
            match step {
                Ok(_) => outside += 1,
                Err(lmdb::Error::NotFound) => break,
                Err(e) => return Err(failed(e).into()),
            }
            step = cursor.get(None, None, MDB_NEXT);
        }
        drop(cursor);
        Ok(entries.saturating_sub(outside))
    }

    /// Calls `f` on every row whose key starts with `prefix`, in key order,
    /// until it returns `Break`.
    pub fn scan(
        &self,
        prefix: &[u8],
        f: impl FnMut(RegistryRow) -> ControlFlow<()>,
    ) -> Result<(), RegistryError> {
        self.env.check_process("scanning the registry")?;
        scan(&self.env, &self.txn, prefix, f)
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // After fork() the transaction's reader slot belongs to the parent:
        // aborting it here would release the parent's snapshot, so the
        // child leaves it alone.
        if self.env.in_opening_process() {
            self.txn.end();
        } else {
            self.txn.abandon();
        }
        self.env.leave();
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("env", &self.env).finish()
    }
}

impl RegistryEnv {
    /// A write transaction through the gate.
    pub fn begin_write(&self) -> Result<WriteTxn<'_>, StorageError> {
        WriteTxn::new(self)
    }

    /// The stored applied index, read in a short read transaction.
    pub fn read_applied_index(&self) -> Result<Option<u64>, RegistryError> {
        let (txn, token) =
            self.begin_with("beginning a read transaction", || self.env.begin_ro_txn())?;
        let out = get_applied_index(self, &txn);
        txn.abort();
        drop(token);
        out
    }

    /// Writes raw bytes behind the rules (tests that plant corruption).
    #[cfg(test)]
    pub(crate) fn put_raw(&self, key: &[u8], value: &[u8]) {
        let mut txn = self.env.begin_rw_txn().expect("txn");
        txn.put(self.db, &key, &value, WriteFlags::empty())
            .expect("put");
        txn.commit().expect("commit");
    }

    /// Reads raw bytes behind the rules (tests).
    #[cfg(test)]
    pub(crate) fn get_raw(&self, key: &[u8]) -> Option<Vec<u8>> {
        let txn = self.env.begin_ro_txn().expect("ro");
        let value = txn.get(self.db, &key).ok().map(<[u8]>::to_vec);
        txn.abort();
        value
    }
}
