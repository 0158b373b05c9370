//! The LMDB environment that holds the writer registry.
//!
//! LMDB's locks are per process, so one path must map to one `Environment`
//! per process: [`open_env`] keeps a process-wide table and hands out
//! shared handles. A separate advisory file lock ([`WriterLock`]) keeps a
//! registry to one writer across processes, since two replicas sharing a
//! registry would be a deployment bug that LMDB alone would not catch.

use std::io;
use std::mem::ManuallyDrop;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use lmdb::{Database, Environment, EnvironmentFlags};

use crate::fsutil::lock;
use crate::registry::RegistryCorruption;

mod lock;
mod txn;
pub mod verify;

pub use lock::WriterLock;
use txn::TxnToken;
pub use txn::{Snapshot, WriteTxn, APPLIED_INDEX_KEY};
use verify::{Damage, VerifyReport, WalkOptions};

/// Address space reserved for the map. LMDB maps it lazily and the file
/// grows only as pages are written, so this bounds the registry size
/// (about 10 million rows), not what it costs.
pub const DEFAULT_MAP_SIZE: usize = 1 << 30;

/// Reader slots (each open `Registry` view holds one). The first process
/// to create the lock file fixes this for the environment.
pub const MAX_READERS: u32 = 1024;

const DATA_FILE: &str = "data.mdb";
const LOCK_FILE: &str = "lock.mdb";

/// An LMDB or file-system fault.
#[derive(Debug, Clone, thiserror::Error)]
#[error("storage fault while {operation} in {}: {detail}", path.display())]
pub struct StorageError {
    pub operation: &'static str,
    pub path: PathBuf,
    pub detail: String,
    /// The LMDB or errno code, when there is one.
    pub code: Option<i32>,
    /// Set by the `Applier` on every storage fault it raises: the Raft
    /// index the host replays from (`durable_index + 1`); `None` when no
    /// index was ever made durable, i.e. from the log's first entry. The
    /// one replay rule of the durability guide.
    pub replay_from: Option<u64>,
    /// The entry's change is in place past its point of no return (a
    /// `keys.json` renamed over the old one) but not yet durable, and not
    /// recorded as applied: the replay from `replay_from` completes it.
    pub applied: bool,
}

impl StorageError {
    /// LMDB's "map full": nothing of the transaction was committed, and
    /// it may be retried once the map has grown.
    pub fn is_map_full(&self) -> bool {
        self.code == Some(lmdb_sys::MDB_MAP_FULL)
    }
}

/// Why an `Applier` or `Registry` could not be opened. Not a halt: no entry
/// was involved.
#[derive(Debug, thiserror::Error)]
#[error("cannot open registry at {}: {reason}", path.display())]
pub struct OpenError {
    pub path: PathBuf,
    pub reason: String,
    /// Set when the reason is damage found in `data.mdb`.
    pub damage: Option<Damage>,
    /// `data.mdb` is a creation no commit ever completed
    /// ([`verify::never_committed`]): no entry was ever acknowledged from
    /// it, and an `Applier` re-creates it when asked to explicitly.
    pub never_committed: bool,
}

/// A read of the registry that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Corruption(#[from] RegistryCorruption),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

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

static OPEN_ENVS: Mutex<Vec<(PathBuf, Weak<RegistryEnv>)>> = Mutex::new(Vec::new());

pub(crate) fn open_error(path: &Path, reason: impl Into<String>) -> OpenError {
    OpenError {
        path: path.to_path_buf(),
        reason: reason.into(),
        damage: None,
        never_committed: false,
    }
}

fn damaged(path: &Path, damage: Damage) -> OpenError {
    OpenError {
        path: path.to_path_buf(),
        reason: format!(
            "data.mdb is damaged ({}): {damage}; nothing was read from it. Run \
             `encryption-applier verify` for every problem, and restore the registry from a \
             replica or a backup",
            damage.kind.code()
        ),
        damage: Some(damage),
        never_committed: false,
    }
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
        create_private_dir(path)?;
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
    check_directory(&canonical, &meta)?;
    if mode == OpenMode::Existing && !canonical.join(DATA_FILE).is_file() {
        return Err(open_error(
            path,
            "no registry here (no data.mdb); an Applier creates one",
        ));
    }

    // Held while opening so two threads cannot open the same path twice.
    let mut table = lock(&OPEN_ENVS);
    table.retain(|(_, weak)| weak.strong_count() > 0);
    if let Some(env) = table
        .iter()
        .find(|(p, _)| *p == canonical)
        .and_then(|(_, weak)| weak.upgrade())
        .filter(|env| env.pid == std::process::id())
    {
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

/// Whether [`open_lmdb`] walks the file before handing the environment out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checked {
    /// Every open: the first problem refuses the open.
    AtOpen,
    /// For [`verify_path`], which walks it itself and reports everything.
    ByCaller,
}

/// The problems at open: the first is enough to refuse.
const AT_OPEN: WalkOptions = WalkOptions {
    max_problems: 1,
    rows: false,
};

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
    check_directory(&canonical, &meta)?;
    let data = canonical.join(DATA_FILE);
    let file = verify::open_data_file(&data).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => open_error(path, "no registry here (no data.mdb)"),
        _ => open_error(path, format!("cannot open data.mdb: {e}")),
    })?;
    if let Err(problem) = verify::read_header(&file) {
        let metas = verify::read_metas(&file).ok();
        let newest = metas.as_ref().map(verify::newest);
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
    table.retain(|(_, weak)| weak.strong_count() > 0);
    let shared = table
        .iter()
        .find(|(p, _)| *p == canonical)
        .and_then(|(_, weak)| weak.upgrade())
        .filter(|env| env.pid == std::process::id());
    match shared {
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

/// Empties `data.mdb` at `dir` when it is a creation no commit completed
/// ([`verify::never_committed`]), so that LMDB initialises it afresh; the
/// caller holds the writer lock. Returns whether it did. Anything else
/// (a committed registry, damage, no file) is left alone.
pub fn recreate_if_uncommitted(dir: &Path) -> Result<bool, OpenError> {
    let data = dir.join(DATA_FILE);
    let file = match verify::open_data_file(&data) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(open_error(dir, format!("cannot open data.mdb: {e}"))),
    };
    let uncommitted = verify::never_committed(&file)
        .map_err(|e| open_error(dir, format!("cannot read data.mdb: {e}")))?;
    drop(file);
    if !uncommitted {
        return Ok(false);
    }
    let emptied = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&data)
        .and_then(|f| f.set_len(0).and_then(|()| f.sync_all()));
    emptied.map_err(|e| open_error(dir, format!("cannot empty the uncommitted data.mdb: {e}")))?;
    Ok(true)
}

/// Creates the registry directory (and missing parents) owner-only,
/// whatever the umask: a directory others can write is one where they can
/// swap `lock.mdb` for a symlink that the next opener writes through.
fn create_private_dir(path: &Path) -> Result<(), OpenError> {
    let missing: Vec<&Path> = path
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
        .collect();
    for dir in missing.into_iter().rev() {
        // The registry itself is owner-only; parents it needs are only
        // kept from being writable by others (others may need to reach
        // siblings), whatever the umask.
        let mode = if dir == path { 0o700 } else { 0o755 };
        match std::fs::DirBuilder::new().mode(mode).create(dir) {
            Ok(()) => {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(
                    |e| {
                        open_error(
                            path,
                            format!("cannot chmod {mode:o} {}: {e}", dir.display()),
                        )
                    },
                )?;
                // A new directory is durable only once its parent is
                // fsynced: otherwise a power loss can take the registry
                // away with every entry acknowledged in it.
                crate::fsutil::sync_parent_dir(dir).map_err(|e| {
                    open_error(
                        path,
                        format!(
                            "cannot fsync {}, the directory holding the new {}: {e}",
                            crate::fsutil::parent_dir(dir).display(),
                            dir.display()
                        ),
                    )
                })?;
            }
            // Another process created it meanwhile: it is not ours to chmod.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(open_error(
                    path,
                    format!("cannot create the directory: {e}"),
                ))
            }
        }
    }
    Ok(())
}

/// What an open does about a registry directory's owner and mode.
#[derive(Debug, PartialEq, Eq)]
enum DirVerdict {
    Fine,
    /// Ours, but group/other may write it: take those bits away.
    Tighten(u32),
    Refuse(String),
}

/// The rule of SECURITY.md ("Registry directory"). LMDB writes `lock.mdb`
/// even to read, following symlinks, so whoever can write the directory
/// could redirect that write: only this user or root may own it, and
/// nobody else may write it.
fn directory_verdict(owner: u32, euid: u32, mode: u32) -> DirVerdict {
    let bits = mode & 0o7777;
    if owner != euid && owner != 0 {
        return DirVerdict::Refuse(format!(
            "the directory belongs to uid {owner}, not to this process's uid {euid} (or root); \
             its owner could redirect LMDB's writes to lock.mdb. Run as uid {owner} (e.g. sudo \
             -u), or copy the registry"
        ));
    }
    if bits & 0o022 == 0 {
        DirVerdict::Fine
    } else if owner == euid {
        DirVerdict::Tighten(bits & !0o022)
    } else {
        DirVerdict::Refuse(format!(
            "the directory is writable by group or others (mode 0o{bits:03o}); another user \
             could replace its lock or data files. Its owner (root) should chmod go-w it"
        ))
    }
}

/// Applies [`directory_verdict`], and refuses a `data.mdb`, `lock.mdb` or
/// `writer.lock` that is a symlink or not a regular file, since LMDB would
/// follow it.
fn check_directory(dir: &Path, meta: &std::fs::Metadata) -> Result<(), OpenError> {
    match directory_verdict(meta.uid(), crate::fsutil::euid(), meta.permissions().mode()) {
        DirVerdict::Fine => {}
        DirVerdict::Tighten(bits) => {
            // A registry made by an older version under umask 002 or 000.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(bits)).map_err(|e| {
                open_error(
                    dir,
                    format!(
                        "the directory is writable by group or others and chmod go-w failed: {e}"
                    ),
                )
            })?;
        }
        DirVerdict::Refuse(reason) => return Err(open_error(dir, reason)),
    }
    for name in [DATA_FILE, LOCK_FILE, lock::WRITER_LOCK_FILE] {
        let file = dir.join(name);
        match std::fs::symlink_metadata(&file) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(open_error(
                    dir,
                    format!("{name} is a symbolic link; refusing to follow it"),
                ))
            }
            Ok(m) if !m.file_type().is_file() => {
                return Err(open_error(dir, format!("{name} is not a regular file")))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(open_error(dir, format!("cannot stat {name}: {e}"))),
        }
    }
    Ok(())
}

/// Sets the files LMDB created to 0600 when the umask left them otherwise
/// (LMDB creates them `0600 & ~umask`, and a umask of 0o277 would leave a
/// data file its owner cannot write on the next open).
fn tighten_lmdb_files(dir: &Path) -> Result<(), OpenError> {
    for name in [DATA_FILE, LOCK_FILE] {
        let file = dir.join(name);
        let meta = std::fs::symlink_metadata(&file)
            .map_err(|e| open_error(dir, format!("cannot stat {name}: {e}")))?;
        if meta.permissions().mode() & 0o7777 != 0o600 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| open_error(dir, format!("cannot chmod 600 {name}: {e}")))?;
        }
    }
    Ok(())
}

fn open_lmdb(
    path: &Path,
    mode: OpenMode,
    map_size: usize,
    checked: Checked,
) -> Result<RegistryEnv, OpenError> {
    // Before LMDB maps the file: meta pages, flags and root it will use.
    let data = path.join(DATA_FILE);
    match verify::open_data_file(&data) {
        Ok(file) => {
            let empty = file.metadata().map(|m| m.len() == 0).unwrap_or(false);
            if verify::never_committed(&file)
                .map_err(|e| open_error(path, format!("cannot read data.mdb: {e}")))?
            {
                return Err(OpenError {
                    never_committed: true,
                    ..open_error(
                        path,
                        "data.mdb holds no committed transaction: its creation was cut short \
                         (a power loss before the first commit completed), so no entry was ever \
                         acknowledged from it. Re-create it explicitly: Applier(path, \
                         recreate_uncommitted=True), or `encryption-applier apply \
                         --recreate-uncommitted`",
                    )
                });
            }
            if !empty {
                // Retried like a walk's meta (see RegistryEnv::verify): a
                // meta page can be read mid-write by another process.
                let mut header = verify::read_header(&file);
                for _ in 1..META_ATTEMPTS {
                    if header.is_ok() {
                        break;
                    }
                    std::thread::sleep(META_RETRY_PAUSE);
                    header = verify::read_header(&file);
                }
                header.map_err(|d| damaged(path, d))?;
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(open_error(path, format!("cannot open data.mdb: {e}"))),
    }
    let open = |flags: EnvironmentFlags| {
        Environment::new()
            // NO_TLS: read transactions are not tied to OS threads, so the
            // Python layer may run them on whatever thread holds no GIL.
            .set_flags(flags | EnvironmentFlags::NO_TLS)
            .set_map_size(map_size)
            .set_max_readers(MAX_READERS)
            .open_with_permissions(path, 0o600)
    };
    let (env, read_only) = match open(EnvironmentFlags::empty()) {
        Ok(env) => (env, false),
        // A view of a registry in a directory we may not write (a copy
        // under inspection) still opens, read-only.
        Err(lmdb::Error::Other(code)) if mode == OpenMode::Existing && is_permission(code) => {
            let env = open(EnvironmentFlags::READ_ONLY).map_err(|e| {
                open_error(
                    path,
                    format!(
                        "LMDB refused to open it read-only: {e} (a reader needs write access \
                         to lock.mdb unless the filesystem itself is read-only)"
                    ),
                )
            })?;
            (env, true)
        }
        Err(e) => {
            let hint = match e {
                lmdb::Error::Invalid | lmdb::Error::VersionMismatch => {
                    " (the directory holds something that is not an LMDB environment)"
                }
                _ => "",
            };
            return Err(open_error(path, format!("LMDB: {e}{hint}")));
        }
    };
    if mode == OpenMode::Create {
        tighten_lmdb_files(path)?;
        // LMDB fsyncs data.mdb at each commit but never its directory: the
        // file's name, and the directory's in its parent, are made durable
        // here, before any commit can be acknowledged. On every writer's
        // open, not only a creating one: an open whose fsync failed, or a
        // process killed before it, leaves names a later open must finish.
        for dir in [path, crate::fsutil::parent_dir(path)] {
            crate::fsutil::sync_dir(dir).map_err(|e| {
                open_error(
                    path,
                    format!(
                        "cannot fsync {} (making the registry's names durable): {e}",
                        dir.display()
                    ),
                )
            })?;
        }
    }
    let db = env
        .open_db(None)
        .map_err(|e| open_error(path, format!("LMDB: cannot open the main database: {e}")))?;
    let registry_env = RegistryEnv {
        env: ManuallyDrop::new(env),
        pid: std::process::id(),
        db,
        path: path.to_path_buf(),
        read_only,
        gate: Mutex::new(0),
        last_reader_check: Mutex::new(Instant::now()),
        fatal: std::sync::atomic::AtomicBool::new(false),
        relaxed: std::sync::atomic::AtomicBool::new(false),
        meta_at_risk: std::sync::atomic::AtomicBool::new(false),
    };
    registry_env.clear_stale_readers();
    if checked == Checked::AtOpen {
        let report = registry_env
            .verify(AT_OPEN)
            .map_err(|e| open_error(path, e.to_string()))?;
        if let Some(problem) = report.problems.into_iter().next() {
            return Err(damaged(path, problem));
        }
    }
    Ok(registry_env)
}

/// Whether an errno passed through by LMDB means "not allowed to write here".
fn is_permission(code: i32) -> bool {
    matches!(
        io::Error::from_raw_os_error(code).kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
    )
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
        StorageError {
            operation,
            path: self.path.clone(),
            detail,
            code: Some(lmdb_code(&err)),
            replay_from: None,
            applied: false,
        }
    }

    /// Frees reader slots left behind by processes that died inside a read
    /// transaction, so they neither pin old pages (the file would grow
    /// without bound) nor exhaust the reader table. Returns how many.
    pub fn clear_stale_readers(&self) -> usize {
        let mut dead: std::os::raw::c_int = 0;
        // SAFETY: the environment pointer is valid for the life of `self.env`.
        // A failure here only means stale slots stay until the next check.
        unsafe {
            lmdb_sys::mdb_reader_check(self.env.env(), &mut dead);
        }
        *lock(&self.last_reader_check) = Instant::now();
        usize::try_from(dead).unwrap_or(0)
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
            let rc = unsafe { lmdb_sys::mdb_env_set_mapsize(self.env.env(), 0) };
            if rc == 0 {
                result = begin();
            }
        }
        match result {
            Ok(txn) => {
                *open += 1;
                Ok((txn, TxnToken { env: self }))
            }
            Err(lmdb::Error::MapResized) => Err(StorageError {
                operation: what,
                path: self.path.clone(),
                detail: format!(
                    "another process grew the registry's map, and this process can adopt the \
                     new size only when none of its {} open views or transactions is active; \
                     close open Registry views and retry",
                    *open
                ),
                code: Some(lmdb_sys::MDB_MAP_RESIZED),
                replay_from: None,
                applied: false,
            }),
            Err(e) => Err(self.storage_error(what, e)),
        }
    }

    /// Walks the newest snapshot of `data.mdb` (see [`verify`]) while a read
    /// transaction pins it, so a writer in another process reuses none of
    /// its pages meanwhile.
    pub fn verify(&self, options: WalkOptions) -> Result<VerifyReport, StorageError> {
        let io_error = |e: io::Error| StorageError {
            operation: "verifying data.mdb",
            path: self.path.clone(),
            detail: e.to_string(),
            code: e.raw_os_error(),
            replay_from: None,
            applied: false,
        };
        let file = verify::open_data_file(&self.path.join(DATA_FILE)).map_err(io_error)?;
        // A problem may be passing: a meta page read while another process
        // writes it, or the pinned snapshot's meta already overwritten two
        // commits later. Damage is what stays after a few fresh pins.
        let mut problem = None;
        for attempt in 0..META_ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(META_RETRY_PAUSE);
            }
            let (txn, _token) =
                self.begin_with("beginning a read transaction", || self.env.begin_ro_txn())?;
            let raw = lmdb::Transaction::txn(&txn);
            // SAFETY: `raw` is a live read transaction of this environment.
            let txnid = unsafe { lmdb_sys::mdb_txn_id(raw) } as u64;
            let metas = match verify::read_metas(&file) {
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
                Some(verify::damage(
                    Some(meta.slot),
                    verify::DamageKind::Meta,
                    format!(
                        "meta page {} holds transaction {}, but LMDB reads it as transaction \
                         {txnid}",
                        meta.slot, meta.txnid
                    ),
                ))
            } else if let Err(p) = verify::check_meta(&meta) {
                Some(p)
            } else if !same_as_lmdb(raw, 0, &meta.free)
                || !same_as_lmdb(raw, self.db.dbi(), &meta.main)
            {
                Some(verify::damage(
                    Some(meta.slot),
                    verify::DamageKind::Meta,
                    "the meta page in the file differs from the one LMDB uses",
                ))
            } else {
                None
            };
            match found {
                Some(p) => problem = Some(p),
                None => {
                    let mut report = verify::walk(&file, &meta, options);
                    drop(txn);
                    // The other meta is one LMDB never reads while this one
                    // is newer, and the next commit overwrites it: what is
                    // wrong with it is harmless (LMDB itself opens this
                    // file), so a warning, not damage.
                    let other = &metas[usize::from(meta.slot == 0)];
                    if let Err(p) = verify::check_meta(other) {
                        report.warnings.push(p);
                    }
                    return Ok(report);
                }
            }
        }
        Ok(report_of(problem.unwrap_or_else(|| {
            verify::damage(None, verify::DamageKind::Meta, "no consistent meta page")
        })))
    }

    /// Refuses a handle inherited through fork(): LMDB forbids it, and it
    /// would share the parent's reader slots and locks.
    pub(crate) fn check_process(&self, what: &'static str) -> Result<(), StorageError> {
        if self.pid == std::process::id() {
            return Ok(());
        }
        Err(StorageError {
            operation: what,
            path: self.path.clone(),
            detail: "this registry handle was opened by the parent of a fork(); LMDB handles \
                     cannot cross fork, so open a new Applier or Registry in this process"
                .into(),
            code: None,
            replay_from: None,
            applied: false,
        })
    }

    fn in_opening_process(&self) -> bool {
        self.pid == std::process::id()
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
            return Err(StorageError {
                operation: "growing the map",
                path: self.path.clone(),
                detail: format!(
                    "the registry filled its map of {current} bytes and cannot grow while {} \
                     read views of it are open in this process; close them (Registry.close()) \
                     and apply the entry again",
                    *open
                ),
                code: Some(lmdb_sys::MDB_MAP_FULL),
                replay_from: None,
                applied: false,
            });
        }
        let target = current.saturating_mul(2).max(1 << 20);
        // SAFETY: the gate is held and no transaction is open in this process.
        let rc = unsafe { lmdb_sys::mdb_env_set_mapsize(self.env.env(), target) };
        if rc != 0 {
            return Err(self.storage_error("growing the map", lmdb::Error::from_err_code(rc)));
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
        // SAFETY: valid environment; NOMETASYNC may be toggled at any time
        // (LMDB reads it when it writes a meta page).
        let rc = unsafe {
            lmdb_sys::mdb_env_set_flags(
                self.env.env(),
                lmdb_sys::MDB_NOMETASYNC,
                std::os::raw::c_int::from(on),
            )
        };
        if rc != 0 {
            return Err(self.storage_error(
                "setting the durability mode",
                lmdb::Error::from_err_code(rc),
            ));
        }
        Ok(())
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

/// How often a meta page that looks wrong is read again before it counts
/// as damage, and the pause between reads.
const META_ATTEMPTS: usize = 20;
const META_RETRY_PAUSE: Duration = Duration::from_millis(5);

/// Whether LMDB's own view of a database in `txn` (`mdb_stat`) is the
/// record read from the file.
fn same_as_lmdb(
    txn: *mut lmdb_sys::MDB_txn,
    dbi: lmdb_sys::MDB_dbi,
    record: &verify::DbRecord,
) -> bool {
    let mut stat = std::mem::MaybeUninit::<lmdb_sys::MDB_stat>::uninit();
    // SAFETY: `txn` is live and `dbi` is a handle of its environment (0 is
    // LMDB's free-page database, always valid); mdb_stat fills `stat` on
    // success.
    let rc = unsafe { lmdb_sys::mdb_stat(txn, dbi, stat.as_mut_ptr()) };
    if rc != 0 {
        return false;
    }
    // SAFETY: initialised by the successful call above.
    let stat = unsafe { stat.assume_init() };
    u64::from(stat.ms_depth) == u64::from(record.depth)
        && stat.ms_branch_pages as u64 == record.branch_pages
        && stat.ms_leaf_pages as u64 == record.leaf_pages
        && stat.ms_overflow_pages as u64 == record.overflow_pages
        && stat.ms_entries as u64 == record.entries
}

fn report_of(problem: Damage) -> VerifyReport {
    VerifyReport {
        problems: vec![problem],
        ..VerifyReport::default()
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

    #[test]
    fn directory_verdicts() {
        use DirVerdict::{Fine, Refuse, Tighten};
        let refused = |v: DirVerdict, words: &str| matches!(v, Refuse(r) if r.contains(words));
        // (owner, euid, mode)
        assert_eq!(directory_verdict(1000, 1000, 0o40700), Fine);
        assert_eq!(directory_verdict(1000, 1000, 0o40755), Fine);
        assert_eq!(directory_verdict(0, 1000, 0o40755), Fine); // root's, read by a user
        assert_eq!(directory_verdict(0, 0, 0o40700), Fine);
        assert_eq!(directory_verdict(1000, 1000, 0o40775), Tighten(0o755));
        assert_eq!(directory_verdict(1000, 1000, 0o40777), Tighten(0o755));
        assert_eq!(directory_verdict(0, 0, 0o41777), Tighten(0o1755));
        assert!(refused(
            directory_verdict(0, 1000, 0o40777),
            "writable by group or others (mode 0o777)"
        ));
        assert!(refused(directory_verdict(0, 1000, 0o40770), "mode 0o770"));
        assert!(refused(
            directory_verdict(1000, 0, 0o40700),
            "belongs to uid 1000"
        ));
        assert!(refused(
            directory_verdict(1000, 2000, 0o40755),
            "Run as uid 1000"
        ));
    }

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
    fn garbage_data_file_is_an_open_error() {
        let dir = fresh_path("garbage");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(DATA_FILE), vec![0x5a; 16384]).expect("write");
        let err = open_env(&dir, OpenMode::Existing).unwrap_err();
        assert!(err.reason.contains("LMDB"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
