//! The registry directory rule of SECURITY.md ("Registry directory"): a
//! registry is created owner-only whatever the umask, and an open refuses
//! a directory someone else could write, or data, lock and writer-lock
//! files that are symlinks or not regular files, since LMDB would follow
//! them.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use super::error::{open_error, OpenError};
use super::{lock, DATA_FILE, LOCK_FILE};

/// Creates the registry directory (and missing parents) owner-only,
/// whatever the umask: a directory others can write is one where they can
/// swap `lock.mdb` for a symlink that the next opener writes through.
pub(super) fn create_private_dir(path: &Path) -> Result<(), OpenError> {
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
pub(super) fn check_directory(dir: &Path, meta: &std::fs::Metadata) -> Result<(), OpenError> {
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
pub(super) fn tighten_lmdb_files(dir: &Path) -> Result<(), OpenError> {
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
}
