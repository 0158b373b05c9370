//! Small file-system and concurrency helpers shared by the core modules.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, taking over a poisoned one: every critical section in
/// this crate leaves its data consistent, and a panic must not turn into
/// more panics.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The effective user id of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether a read-only open follows a final symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    Symlinks,
    NoSymlinks,
}

/// Opens `path` for reading so that nothing about it can block or hang
/// the caller: `O_NONBLOCK` (a FIFO opens at once, and reads from it fail
/// instead of waiting), no controlling terminal, close-on-exec. Every
/// check is then made on the returned descriptor's metadata, never on the
/// path again.
pub fn open_for_reading(path: &Path, follow: Follow) -> io::Result<(File, std::fs::Metadata)> {
    let nofollow = match follow {
        Follow::Symlinks => 0,
        Follow::NoSymlinks => libc::O_NOFOLLOW,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY | nofollow)
        .open(path)?;
    let meta = file.metadata()?;
    Ok((file, meta))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The temporary file a durable write of `path` goes through.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// A durable write that failed, and at which step.
#[derive(Debug)]
pub struct WriteError {
    pub step: &'static str,
    pub source: io::Error,
    /// The new content was renamed into place before the failure: readers
    /// see it, but a power loss may take it back. The rename is the point
    /// of no return, so the caller completes forward instead of undoing.
    pub renamed: bool,
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.source)
    }
}

/// Creates `path` for writing, which must not exist (not even as a
/// symlink), owner-only (0600 whatever the umask).
pub fn create_private_file(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Creates `path` (which must not exist, not even as a symlink) owner-only
/// (0600 whatever the umask), writes `bytes` and fsyncs it. On failure the
/// file is removed, so no half-written file is left under `path`.
pub fn create_private(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let mut file = create_private_file(path).map_err(|source| WriteError {
        step: "creating the file",
        source,
        renamed: false,
    })?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    written.map_err(|source| {
        let _ = std::fs::remove_file(path);
        WriteError {
            step: "writing the file",
            source,
            renamed: false,
        }
    })
}

/// fsyncs the directory holding `path`, so a create or rename in it
/// survives power loss.
pub fn sync_parent_dir(path: &Path) -> io::Result<()> {
    sync_dir(parent_dir(path))
}

/// Removes the file at `path` and fsyncs its directory, so the removal
/// survives a power loss like the creation it undoes.
pub fn remove_durable(path: &Path) -> io::Result<()> {
    std::fs::remove_file(path)?;
    sync_parent_dir(path)
}

/// fsyncs the directory `dir`, so the names created in it survive power loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `bytes`, owner-only and crash-durably: a fresh
/// temporary file beside it ([`create_private`]), rename over `path`,
/// fsync of the directory. The rename is the commit point, so a crash
/// leaves the old content or the new one, never a torn file.
pub fn replace_private_durable(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let fail = |step: &'static str| {
        move |source: io::Error| WriteError {
            step,
            source,
            renamed: false,
        }
    };
    let tmp = tmp_path(path);
    // A temporary file left by a crash is garbage (its rename never
    // happened); remove it rather than write through whatever it is.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail("removing a stale temporary file")(e)),
    }
    create_private(&tmp, bytes).map_err(|e| WriteError {
        step: match e.step {
            "creating the file" => "creating the temporary file",
            _ => "writing the temporary file",
        },
        source: e.source,
        renamed: false,
    })?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("renaming into place")(e));
    }
    sync_parent_dir(path).map_err(|source| WriteError {
        step: "syncing the directory",
        source,
        renamed: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_owner_only_refuses_existing_and_replaces() {
        let dir = crate::test_support::fresh_dir("fsutil");
        let path = dir.join("f");
        create_private(&path, b"one").expect("new");
        assert_eq!(std::fs::read(&path).expect("read"), b"one");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let err = create_private(&path, b"two").unwrap_err();
        assert_eq!(err.source.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert_eq!(err.step, "creating the file");
        assert_eq!(std::fs::read(&path).expect("read"), b"one");
        replace_private_durable(&path, b"three").expect("replace");
        assert_eq!(std::fs::read(&path).expect("read"), b"three");
        assert!(!tmp_path(&path).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn hex_is_lower_case_pairs() {
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
    }
}
