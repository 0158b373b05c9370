//! The LMDB environment that holds the writer registry.
//!
//! LMDB's locks are per process, so one path must map to one `Environment`
//! per process: [`open_env`] keeps a process-wide table and hands out
//! shared handles. A separate advisory file lock ([`WriterLock`]) keeps a
//! registry to one writer across processes, since two replicas sharing a
//! registry would be a deployment bug that LMDB alone would not catch.
//!
//! The store is the only part of the crate that knows LMDB (SPEC §3 is
//! the byte layout it stores; the applier and the view see rows):
//!
//! - `mod.rs`: [`RegistryEnv`], the process-wide table of open
//!   environments, map growth and the durability mode;
//! - `open.rs`: opening an environment without trusting its file;
//! - `dirs.rs`: the registry directory rule of SECURITY.md;
//! - `error.rs`: [`StorageError`], [`OpenError`], [`RegistryError`];
//! - `ffi.rs`: every raw `lmdb-sys` call, each a small safe function;
//! - `txn.rs`: the [`WriteTxn`] and [`Snapshot`] guards and row I/O;
//! - `lock.rs`: the cross-process [`WriterLock`];
//! - `verify/`: the structural check of `data.mdb` that stands between a
//!   damaged page and a SIGBUS.

use std::io;
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use lmdb::{Database, Environment};

use crate::fsutil::lock;

mod dirs;
mod error;
mod ffi;
mod lock;
mod open;
mod txn;
pub mod verify;

pub(crate) use error::open_error;
pub use error::{Aftermath, OpenError, RegistryError, StorageError};
pub use lock::WriterLock;
pub use open::recreate_if_uncommitted;
use open::{open_lmdb, Checked};
use txn::TxnToken;
pub use txn::{Snapshot, WriteTxn, APPLIED_INDEX_KEY};
pub use verify::verify_path;

/// Address space reserved for the map. LMDB maps it lazily and the file
/// grows only as pages are written, so this bounds the registry size
/// (about 10 million rows), not what it costs.
pub const DEFAULT_MAP_SIZE: usize = 1 << 30;

/// Reader slots (each open `Registry` view holds one). The first process
/// to create the lock file fixes this for the environment.
pub const MAX_READERS: u32 = 1024;

const DATA_FILE: &str = "data.mdb";
const LOCK_FILE: &str = "lock.mdb";

/// One open LMDB environment with its registry database.
pub struct RegistryEnv {
    /// Closed on drop only in the process that opened it (see `Drop`).
    env: ManuallyDrop<Environment>,
    /// The process that opened the environment. LMDB handles must not be
    /// used after fork(): a child gets errors, and opens its own.
    pid: u32,
    db: Database,
    path: PathBuf,
    read_only: bool,
    /// Transactions open in this process. LMDB may only resize its map
    /// when there are none, so beginning a transaction and resizing take
    /// this lock, and a resize happens only at a count of zero.
    gate: Mutex<usize>,
    /// When stale reader slots were last cleared.
    last_reader_check: Mutex<Instant>,
    /// LMDB marked the environment unusable (`MDB_PANIC`, after a failed
    /// meta-page write): it is never handed out again, and this process
    /// can reopen the path only once every handle on it is closed.
    fatal: std::sync::atomic::AtomicBool,
    /// `sync=False` (`MDB_NOMETASYNC`) is set.
    relaxed: std::sync::atomic::AtomicBool,
    /// A commit failed while relaxed: the next one writes its meta page
    /// durably (see [`RegistryEnv::commit_flags`]).
    meta_at_risk: std::sync::atomic::AtomicBool,
}

/// What to do once LMDB has marked an environment unusable (`MDB_PANIC`).
pub(crate) const REOPEN_HINT: &str = "close this Applier and every Registry view of the path, \
     then open it again (it opens at its last good commit)";

/// How often a long-running writer clears reader slots of dead processes.
const READER_CHECK_INTERVAL: Duration = Duration::from_secs(1);

impl std::fmt::Debug for RegistryEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryEnv")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the directory and environment when missing (the applier).
    Create,
    /// The environment must already exist (a read-only view).
    Existing,
}

/// The environments open in this process, by canonical path.
type EnvTable = Vec<(PathBuf, Weak<RegistryEnv>)>;
static OPEN_ENVS: Mutex<EnvTable> = Mutex::new(Vec::new());

/// The environment this process already has open at `canonical`, if any
/// (forgetting closed ones): one opened by this process, never one
/// inherited through fork().
fn shared_env(table: &mut EnvTable, canonical: &Path) -> Option<Arc<RegistryEnv>> {
    table.retain(|(_, weak)| weak.strong_count() > 0);
    table
        .iter()
        .find(|(p, _)| p == canonical)
        .and_then(|(_, weak)| weak.upgrade())
        .filter(|env| env.pid == crate::process::id())
}

fn lmdb_code(err: &lmdb::Error) -> i32 {
    err.to_err_code()
}

/// Opens (or reuses, within this process) the environment at `path`.
pub fn open_env(path: &Path, mode: OpenMode) -> Result<Arc<RegistryEnv>, OpenError> {
    open_env_sized(path, mode, DEFAULT_MAP_SIZE)
}

/// [`open_env`] with the map size to start from when this process is the
/// first to open the environment (it grows from there when full).
pub fn open_env_sized(
    path: &Path,
    mode: OpenMode,
    map_size: usize,
) -> Result<Arc<RegistryEnv>, OpenError> {
    if mode == OpenMode::Create && !path.exists() {
        dirs::create_private_dir(path)?;
    }
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => open_error(path, "no such directory"),
        _ => open_error(path, e.to_string()),
    })?;
    if !meta.is_dir() {
        return Err(open_error(path, "not a directory"));
    }
    let canonical = path
        .canonicalize()
        .map_err(|e| open_error(path, e.to_string()))?;
    dirs::check_directory(&canonical, &meta)?;
    if mode == OpenMode::Existing && !canonical.join(DATA_FILE).is_file() {
        return Err(open_error(
            path,
            "no registry here (no data.mdb); an Applier creates one",
        ));
    }

    // Held while opening so two threads cannot open the same path twice.
    let mut table = lock(&OPEN_ENVS);
    if let Some(env) = shared_env(&mut table, &canonical) {
        if env.is_fatal() {
            let others = Arc::strong_count(&env) - 1;
            return Err(open_error(
                path,
                format!(
                    "LMDB marked this registry's environment unusable in this process after a \
                     failed write (MDB_PANIC), and {others} open Registry view(s) or Applier(s) \
                     still hold it: {REOPEN_HINT}"
                ),
            ));
        }
        return Ok(env);
    }
    // An environment inherited through fork() is unusable here; it is
    // replaced in the table (and never closed by this process, see Drop).
    table.retain(|(p, _)| *p != canonical);
    let env = Arc::new(open_lmdb(&canonical, mode, map_size, Checked::AtOpen)?);
    table.push((canonical, Arc::downgrade(&env)));
    Ok(env)
}

impl RegistryEnv {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Whether LMDB has marked this environment unusable (see `fatal`).
    pub fn is_fatal(&self) -> bool {
        self.fatal.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// After a failed commit: whether LMDB now refuses every transaction
    /// (it does once a meta-page write failed), learnt by trying one.
    pub(crate) fn note_if_fatal(&self) -> bool {
        if !self.is_fatal() && self.env.begin_ro_txn().err() == Some(lmdb::Error::Panic) {
            self.fatal.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.is_fatal()
    }

    pub(crate) fn storage_error(&self, operation: &'static str, err: lmdb::Error) -> StorageError {
        if err == lmdb::Error::Panic {
            self.fatal.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let detail = match err {
            lmdb::Error::Panic => format!(
                "{err}: LMDB marked the environment unusable after a failed write; {REOPEN_HINT}"
            ),
            lmdb::Error::MapFull => format!(
                "{err} (map size {} bytes); the applier grows the map and retries by itself",
                self.map_size()
            ),
            _ => err.to_string(),
        };
        StorageError::new(operation, self.path.clone(), detail, Some(lmdb_code(&err)))
    }

    /// Frees reader slots left behind by processes that died inside a read
    /// transaction, so they neither pin old pages (the file would grow
    /// without bound) nor exhaust the reader table. Returns how many.
    pub fn clear_stale_readers(&self) -> usize {
        let dead = ffi::reader_check(&self.env);
        *lock(&self.last_reader_check) = Instant::now();
        dead
    }

    /// Clears stale reader slots if the last check is more than a second
    /// old: cheap enough for every write, while a long-running writer still
    /// notices readers killed after it opened.
    pub fn clear_stale_readers_now_and_then(&self) {
        let due = lock(&self.last_reader_check).elapsed() >= READER_CHECK_INTERVAL;
        if due {
            self.clear_stale_readers();
        }
    }

    pub fn map_size(&self) -> usize {
        self.env.info().map_or(0, |info| info.map_size())
    }

    /// Begins a transaction through the gate. When another process has
    /// grown the map (`MDB_MAP_RESIZED`) and no transaction is open here,
    /// the new size is adopted and the begin retried.
    pub(crate) fn begin_with<T>(
        &self,
        what: &'static str,
        mut begin: impl FnMut() -> Result<T, lmdb::Error>,
    ) -> Result<(T, TxnToken<'_>), StorageError> {
        self.check_process(what)?;
        let mut open = lock(&self.gate);
        let mut result = begin();
        if matches!(result, Err(lmdb::Error::MapResized)) && *open == 0 {
            // SAFETY: no transaction of this process is open (the gate is
            // held and counts zero); size 0 adopts the size on disk.
            if unsafe { ffi::set_map_size(&self.env, 0) }.is_ok() {
                result = begin();
            }
        }
        match result {
            Ok(txn) => {
                *open += 1;
                Ok((txn, TxnToken { env: self }))
            }
            Err(lmdb::Error::MapResized) => Err(StorageError::new(
                what,
                self.path.clone(),
                format!(
                    "another process grew the registry's map, and this process can adopt the \
                     new size only when none of its {} open views or transactions is active; \
                     close open Registry views and retry",
                    *open
                ),
                Some(ffi::MAP_RESIZED),
            )),
            Err(e) => Err(self.storage_error(what, e)),
        }
    }

    /// Refuses a handle inherited through fork(): LMDB forbids it, and it
    /// would share the parent's reader slots and locks.
    pub(crate) fn check_process(&self, what: &'static str) -> Result<(), StorageError> {
        if self.pid == crate::process::id() {
            return Ok(());
        }
        Err(StorageError::new(
            what,
            self.path.clone(),
            "this registry handle was opened by the parent of a fork(); LMDB handles \
                     cannot cross fork, so open a new Applier or Registry in this process",
            None,
        ))
    }

    fn in_opening_process(&self) -> bool {
        self.pid == crate::process::id()
    }

    fn leave(&self) {
        let mut open = lock(&self.gate);
        *open = open.saturating_sub(1);
    }

    fn enter(&self) {
        *lock(&self.gate) += 1;
    }

    /// Doubles the map after `MDB_MAP_FULL`. Only possible with no
    /// transaction open in this process; otherwise says what to close.
    pub fn grow(&self) -> Result<usize, StorageError> {
        let open = lock(&self.gate);
        let current = self.map_size();
        if *open > 0 {
            return Err(StorageError::new(
                "growing the map",
                self.path.clone(),
                format!(
                    "the registry filled its map of {current} bytes and cannot grow while {} \
                     read views of it are open in this process; close them (Registry.close()) \
                     and apply the entry again",
                    *open
                ),
                Some(ffi::MAP_FULL),
            ));
        }
        let target = current.saturating_mul(2).max(1 << 20);
        // SAFETY: the gate is held and no transaction is open in this process.
        if let Err(e) = unsafe { ffi::set_map_size(&self.env, target) } {
            return Err(self.storage_error("growing the map", e));
        }
        drop(open);
        Ok(target)
    }

    /// Durable (fsync of data and meta pages on every commit) or not
    /// (`MDB_NOMETASYNC`: data pages are still flushed before the meta page
    /// is written, so a power loss can drop the newest commits but never
    /// leaves a corrupt database; a process crash loses nothing).
    pub fn set_durable(&self, durable: bool) -> Result<(), StorageError> {
        self.set_nometasync(!durable)?;
        self.relaxed
            .store(!durable, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn set_nometasync(&self, on: bool) -> Result<(), StorageError> {
        ffi::set_nometasync(&self.env, on)
            .map_err(|e| self.storage_error("setting the durability mode", e))
    }

    /// Runs `commit` with the meta-page durability the moment needs.
    ///
    /// Relaxed, a commit's meta page is made durable only by the next
    /// commit's data fsync. When a commit fails, its fsync may have failed
    /// too, and a failed fsync can drop every pending write of the file for
    /// good (the previous commit's meta page among them) while the page
    /// cache still shows it. The commit after would then free pages under a
    /// meta the disk never got, and a power loss could open a snapshot whose
    /// pages were reused. So after a failed relaxed commit, the next one
    /// writes its meta page with `O_DSYNC`, as in strict mode, before
    /// relaxing again.
    pub(crate) fn commit_flags<T>(
        &self,
        commit: impl FnOnce() -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        use std::sync::atomic::Ordering::Relaxed;
        let relaxed = self.relaxed.load(Relaxed);
        let at_risk = relaxed && self.meta_at_risk.load(Relaxed);
        if at_risk {
            self.set_nometasync(false)?;
        }
        let result = commit();
        if at_risk {
            // Should relaxing again fail, commits stay strict: safer, and
            // the commit's own result is what the caller must learn.
            let _ = self.set_nometasync(true);
        }
        match &result {
            Ok(_) => self.meta_at_risk.store(false, Relaxed),
            Err(_) if relaxed => self.meta_at_risk.store(true, Relaxed),
            Err(_) => {}
        }
        result
    }
}

impl Drop for RegistryEnv {
    fn drop(&mut self) {
        // Closing an environment inherited through fork() would close file
        // descriptors whose POSIX locks the child's own environment on the
        // same files relies on; the copy is left to die with the process.
        if self.in_opening_process() {
            // SAFETY: dropped exactly once, here, and never used again.
            unsafe { ManuallyDrop::drop(&mut self.env) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::fresh_path;

    #[test]
    fn one_environment_per_path_per_process() {
        let dir = fresh_path("share");
        let a = open_env(&dir, OpenMode::Create).expect("create");
        let b = open_env(&dir.join("."), OpenMode::Existing).expect("reuse");
        assert!(Arc::ptr_eq(&a, &b));
        drop((a, b));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn existing_mode_refuses_missing_and_empty_dirs() {
        let dir = fresh_path("missing");
        let err = open_env(&dir, OpenMode::Existing).unwrap_err();
        assert!(err.reason.contains("no such directory"), "{err}");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let err = open_env(&dir, OpenMode::Existing).unwrap_err();
        assert!(err.reason.contains("no data.mdb"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rows_put_in_key_order_land_whether_the_cursor_steps_or_searches() {
        use crate::test_support::{reg, row_of};
        use std::collections::BTreeMap;
        let dir = fresh_path("put-order");
        let env = open_env(&dir, OpenMode::Create).expect("create");
        let mut model = BTreeMap::new();
        // Dense updates (the cursor steps), inserts between stored keys, gaps
        // (a step misses, then rows are searched until stepping is retried).
        let rounds: [Vec<u64>; 4] = [
            (0..200).map(|n| n * 2).collect(),
            (0..200).map(|n| n * 2).collect(),
            (0..400).collect(),
            (0..400).filter(|n| n % 7 != 3).chain(500..520).collect(),
        ];
        for (epoch, nodes) in rounds.iter().enumerate() {
            let rows: Vec<_> = nodes
                .iter()
                .map(|&n| {
                    row_of(
                        &reg(1 + (n / 300) as u32, n, epoch as u16 + 1),
                        1,
                        epoch as u16 + 1,
                    )
                })
                .collect();
            let mut sorted = rows.clone();
            sorted.sort_by_key(crate::registry::RegistryRow::packed_key);
            let mut txn = env.begin_write().expect("write");
            assert!(txn.put_rows_in_key_order(&sorted).expect("put"));
            txn.commit().expect("commit");
            for row in sorted {
                model.insert(row.packed_key(), row);
            }
        }
        let snap = txn::Snapshot::begin(Arc::clone(&env)).expect("read");
        let mut stored = Vec::new();
        snap.scan(crate::registry::REGISTRY_PREFIX, |row| {
            stored.push(row);
            std::ops::ControlFlow::Continue(())
        })
        .expect("scan");
        assert_eq!(stored, model.into_values().collect::<Vec<_>>());
        drop(snap);
        drop(env);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn garbage_data_file_is_an_open_error() {
        let dir = fresh_path("garbage");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(DATA_FILE), vec![0x5a; 16384]).expect("write");
        let err = open_env(&dir, OpenMode::Existing).unwrap_err();
        assert!(err.reason.contains("LMDB"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
