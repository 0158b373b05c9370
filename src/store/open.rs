//! Opening an LMDB environment without trusting its file: the header is
//! checked before LMDB maps `data.mdb` (see [`super::verify`]), a creation
//! no commit completed is named as such, a directory we may not write
//! opens read-only for a view, the files LMDB creates are made owner-only
//! and their names durable, and every open walks the snapshot it will use
//! (unless this process walked the same unchanged file clean before).

use std::io;
use std::mem::ManuallyDrop;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use lmdb::{Environment, EnvironmentFlags};

use super::error::{damaged, open_error, OpenError};
use super::verify::{self, META_ATTEMPTS, META_RETRY_PAUSE};
use super::{dirs, OpenMode, RegistryEnv, DATA_FILE, MAX_READERS};

/// Whether [`open_lmdb`] walks the file before handing the environment out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Checked {
    /// Every open: the first problem refuses the open.
    AtOpen,
    /// For [`verify_path`], which walks it itself and reports everything.
    ByCaller,
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

pub(super) fn open_lmdb(
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
        dirs::tighten_lmdb_files(path)?;
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
        pid: crate::process::id(),
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
            .verify_at_open()
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
