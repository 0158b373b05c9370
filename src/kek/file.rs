//! The file KEK (SPEC §5): a 32-byte AES-256 key in an owner-only file,
//! elastickv's `FileWrapper` (internal/encryption/kek/file.go).
//!
//! A wrapped DEK is `nonce(12) ‖ AES-256-GCM ciphertext(32) ‖ tag(16)`
//! with no associated data, so any standard AES-GCM implementation can
//! produce or open one. Key bytes live in `Zeroizing` buffers and are
//! wiped when dropped; no `Debug`, `Display` or error message shows them.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use zeroize::Zeroizing;

use super::{
    Dek, KekBackend, KekFailure, UnwrapError, DEK_LEN, KEK_LEN, NONCE_LEN, TAG_LEN, WRAPPED_LEN,
};
use crate::fsutil::{create_private, euid, open_for_reading, sync_parent_dir, Follow};

/// What is wrong with a KEK file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KekFileProblem {
    Io(String),
    NotRegular,
    WrongSize(u64),
    /// Group or other permission bits are set (the full mode is kept).
    Insecure {
        mode: u32,
    },
    /// Owned by another user than the effective one, who could swap its
    /// contents at any time (root's own files are fine for root).
    ForeignOwner {
        owner: u32,
        euid: u32,
    },
    Exists,
    Random(String),
}

/// A KEK file that cannot be used. Not a halt: it is configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KekFileError {
    pub path: PathBuf,
    pub problem: KekFileProblem,
}

impl fmt::Display for KekFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KEK file {}: ", self.path.display())?;
        match &self.problem {
            KekFileProblem::Io(e) => write!(f, "{e}"),
            KekFileProblem::NotRegular => f.write_str("not a regular file"),
            KekFileProblem::WrongSize(n) => {
                write!(f, "is {n} bytes; an AES-256 KEK is exactly 32 bytes")
            }
            KekFileProblem::Insecure { mode } => write!(
                f,
                "mode 0o{mode:03o} gives group/other access; it must be owner-only (chmod 600)"
            ),
            KekFileProblem::ForeignOwner { owner, euid } => write!(
                f,
                "owned by uid {owner}, not by this process's effective uid {euid}; a KEK must \
                 belong to the user that runs the replica (chown it)"
            ),
            KekFileProblem::Exists => f.write_str("already exists; refusing to overwrite a KEK"),
            KekFileProblem::Random(e) => write!(f, "no randomness for a new key: {e}"),
        }
    }
}

impl std::error::Error for KekFileError {}

impl KekFileProblem {
    pub fn code(&self) -> &'static str {
        match self {
            KekFileProblem::Io(_) => "io",
            KekFileProblem::NotRegular => "not_regular",
            KekFileProblem::WrongSize(_) => "wrong_size",
            KekFileProblem::Insecure { .. } => "insecure_mode",
            KekFileProblem::ForeignOwner { .. } => "foreign_owner",
            KekFileProblem::Exists => "exists",
            KekFileProblem::Random(_) => "random",
        }
    }
}

/// A KEK loaded from (or generated into) a file. Clones are independent
/// copies, each wiped when dropped.
#[derive(Clone)]
pub struct FileKek {
    key: Zeroizing<[u8; KEK_LEN]>,
    path: PathBuf,
}

impl std::fmt::Debug for FileKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileKek")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn file_error(path: &Path, problem: KekFileProblem) -> KekFileError {
    KekFileError {
        path: path.to_path_buf(),
        problem,
    }
}

impl FileKek {
    /// Loads a KEK. The file is opened once and every check (regular file,
    /// owned by the effective user, exactly 32 bytes, no group/other
    /// permission bits) is made on that
    /// open descriptor, so a path swapped between check and read cannot
    /// slip another file in. `O_NONBLOCK` keeps a FIFO from blocking the
    /// open, and at most 33 bytes are ever read.
    pub fn load(path: &Path) -> Result<FileKek, KekFileError> {
        let (file, meta) = open_for_reading(path, Follow::Symlinks)
            .map_err(|e| file_error(path, KekFileProblem::Io(e.to_string())))?;
        if !meta.file_type().is_file() {
            return Err(file_error(path, KekFileProblem::NotRegular));
        }
        let euid = euid();
        if meta.uid() != euid {
            return Err(file_error(
                path,
                KekFileProblem::ForeignOwner {
                    owner: meta.uid(),
                    euid,
                },
            ));
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(file_error(path, KekFileProblem::Insecure { mode }));
        }
        if meta.len() != KEK_LEN as u64 {
            return Err(file_error(path, KekFileProblem::WrongSize(meta.len())));
        }
        let mut buf = Zeroizing::new(Vec::with_capacity(KEK_LEN + 1));
        (&file)
            .take(KEK_LEN as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| file_error(path, KekFileProblem::Io(e.to_string())))?;
        let mut key = Zeroizing::new([0u8; KEK_LEN]);
        if buf.len() != KEK_LEN {
            // The file changed size between fstat and read.
            return Err(file_error(
                path,
                KekFileProblem::WrongSize(buf.len() as u64),
            ));
        }
        key.copy_from_slice(&buf);
        Ok(FileKek {
            key,
            path: path.to_path_buf(),
        })
    }

    /// Writes a new random KEK to `path` with mode 0600, durably, and
    /// refuses to replace anything already there (including a symlink).
    pub fn generate(path: &Path) -> Result<FileKek, KekFileError> {
        let mut key = Zeroizing::new([0u8; KEK_LEN]);
        getrandom::fill(key.as_mut())
            .map_err(|e| file_error(path, KekFileProblem::Random(e.to_string())))?;
        create_private(path, key.as_ref()).map_err(|e| {
            let problem = if e.source.kind() == std::io::ErrorKind::AlreadyExists {
                KekFileProblem::Exists
            } else {
                KekFileProblem::Io(e.source.to_string())
            };
            file_error(path, problem)
        })?;
        if let Err(e) = sync_parent_dir(path) {
            // Leave no KEK behind whose creation may not survive a crash.
            let _ = std::fs::remove_file(path);
            return Err(file_error(path, KekFileProblem::Io(e.to_string())));
        }
        Ok(FileKek {
            key,
            path: path.to_path_buf(),
        })
    }

    /// A KEK from bytes already in memory (tests and embedding hosts).
    pub fn from_bytes(key: [u8; KEK_LEN], label: &Path) -> FileKek {
        FileKek {
            key: Zeroizing::new(key),
            path: label.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new((&*self.key).into())
    }

    /// `nonce ‖ ciphertext ‖ tag` under a fresh random nonce.
    pub fn wrap(&self, dek: &Dek) -> Result<[u8; WRAPPED_LEN], String> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| format!("no randomness for a nonce: {e}"))?;
        self.wrap_with_nonce(dek, nonce)
    }

    /// [`FileKek::wrap`] under a nonce the caller chose: reproducible
    /// wraps for tests. A nonce must never repeat under one KEK with
    /// another DEK (AES-GCM would leak both).
    pub fn wrap_with_nonce(
        &self,
        dek: &Dek,
        nonce: [u8; NONCE_LEN],
    ) -> Result<[u8; WRAPPED_LEN], String> {
        let mut out = [0u8; WRAPPED_LEN];
        out[..NONCE_LEN].copy_from_slice(&nonce);
        out[NONCE_LEN..NONCE_LEN + DEK_LEN].copy_from_slice(dek.expose());
        let tag = self
            .cipher()
            .encrypt_inout_detached(
                &Nonce::from(nonce),
                b"",
                (&mut out[NONCE_LEN..NONCE_LEN + DEK_LEN]).into(),
            )
            .map_err(|_| "AES-GCM refused to encrypt".to_owned())?;
        out[NONCE_LEN + DEK_LEN..].copy_from_slice(&tag);
        Ok(out)
    }

    /// Opens a wrapped DEK. Anything but 60 bytes, or a tag that does not
    /// verify (wrong KEK, tampered bytes), is an error.
    pub fn unwrap(&self, wrapped: &[u8]) -> Result<Dek, UnwrapError> {
        if wrapped.len() != WRAPPED_LEN {
            return Err(UnwrapError::Length(wrapped.len()));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&wrapped[..NONCE_LEN]);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&wrapped[NONCE_LEN + DEK_LEN..]);
        let mut dek = Zeroizing::new([0u8; DEK_LEN]);
        dek.copy_from_slice(&wrapped[NONCE_LEN..NONCE_LEN + DEK_LEN]);
        self.cipher()
            .decrypt_inout_detached(
                &Nonce::from(nonce),
                b"",
                (&mut dek[..]).into(),
                &Tag::from(tag),
            )
            .map_err(|_| UnwrapError::Tag)?;
        Ok(Dek(dek))
    }
}

/// The file KEK through the interface: the same bytes and errors as its
/// own methods.
impl KekBackend for FileKek {
    fn wrap(&self, dek: &Dek) -> Result<Vec<u8>, KekFailure> {
        FileKek::wrap(self, dek)
            .map(|w| w.to_vec())
            .map_err(|message| KekFailure {
                kek: self.identity(),
                source: std::sync::Arc::new(std::io::Error::other(message.clone())),
                message,
                interrupt: false,
            })
    }

    fn unwrap(&self, wrapped: &[u8]) -> Result<Dek, UnwrapError> {
        FileKek::unwrap(self, wrapped)
    }

    /// `file:<path>`, as Go's `FileWrapper.Name()` (kek/file.go:204).
    fn identity(&self) -> String {
        format!("file:{}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::fresh_dir;

    #[test]
    fn wrap_unwrap_round_trip_and_layout() {
        let kek = FileKek::from_bytes([7u8; 32], Path::new("mem"));
        let dek = Dek::from_bytes([9u8; 32]);
        let wrapped = kek.wrap(&dek).expect("wrap");
        assert_eq!(wrapped.len(), 60);
        assert_ne!(&wrapped[12..44], dek.expose(), "ciphertext is not the key");
        assert!(kek.unwrap(&wrapped).expect("unwrap").ct_eq(&dek));
        // Fresh nonce each time.
        assert_ne!(kek.wrap(&dek).expect("wrap")[..12], wrapped[..12]);
    }

    #[test]
    fn known_answer_vector() {
        // key = 00..1f, nonce = 00..0b, DEK = 40..5f, no AAD; the expected
        // bytes were computed with an independent implementation
        // (pyca/cryptography's AESGCM).
        let kek = FileKek::from_bytes(core::array::from_fn(|i| i as u8), Path::new("kat"));
        let wrapped = hex("000102030405060708090a0b\
             0743945881a0845cc508ddc0fda43622d387d567a42e092b603ebfde41345eed\
             0a4e18a4d13b3b9b90cff61d0f90a097");
        let dek = kek.unwrap(&wrapped).expect("the vector opens");
        let expected: [u8; 32] = core::array::from_fn(|i| 0x40 + i as u8);
        assert_eq!(dek.expose(), &expected);
        // Wrapping under the vector's nonce gives the vector's bytes.
        let nonce: [u8; 12] = core::array::from_fn(|i| i as u8);
        let again = kek.wrap_with_nonce(&dek, nonce).expect("wrap");
        assert_eq!(&again[..], &wrapped[..]);
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn unwrap_refuses_wrong_length_tampering_and_wrong_kek() {
        let kek = FileKek::from_bytes([1u8; 32], Path::new("a"));
        let other = FileKek::from_bytes([2u8; 32], Path::new("b"));
        let wrapped = kek.wrap(&Dek::from_bytes([3u8; 32])).expect("wrap");
        for len in [0usize, 59, 61] {
            let mut v = wrapped.to_vec();
            v.resize(len, 0);
            assert!(matches!(kek.unwrap(&v), Err(UnwrapError::Length(l)) if l == len));
        }
        for i in [0usize, 12, 43, 44, 59] {
            let mut v = wrapped;
            v[i] ^= 1;
            assert!(matches!(kek.unwrap(&v), Err(UnwrapError::Tag)), "byte {i}");
        }
        assert!(matches!(other.unwrap(&wrapped), Err(UnwrapError::Tag)));
    }

    #[test]
    fn generate_then_load_and_refuse_overwrite() {
        let dir = fresh_dir("gen");
        let path = dir.join("kek");
        let made = FileKek::generate(&path).expect("generate");
        let meta = std::fs::metadata(&path).expect("stat");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 32);
        let loaded = FileKek::load(&path).expect("load");
        let dek = Dek::from_bytes([5u8; 32]);
        assert!(loaded
            .unwrap(&made.wrap(&dek).expect("wrap"))
            .expect("unwrap")
            .ct_eq(&dek));
        let err = FileKek::generate(&path).unwrap_err();
        assert!(matches!(err.problem, KekFileProblem::Exists));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn load_refuses_bad_files() {
        let dir = fresh_dir("bad");
        let write = |name: &str, bytes: &[u8], mode: u32| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
            p
        };
        let short = write("short", &[0u8; 31], 0o600);
        assert!(matches!(
            FileKek::load(&short).unwrap_err().problem,
            KekFileProblem::WrongSize(31)
        ));
        let long = write("long", &[0u8; 33], 0o600);
        assert!(matches!(
            FileKek::load(&long).unwrap_err().problem,
            KekFileProblem::WrongSize(33)
        ));
        for mode in [0o640, 0o604, 0o660, 0o700 | 0o001] {
            let p = write("open", &[0u8; 32], mode);
            assert!(
                matches!(FileKek::load(&p).unwrap_err().problem, KekFileProblem::Insecure { mode: m } if m == mode),
                "mode {mode:o}"
            );
        }
        assert!(matches!(
            FileKek::load(&dir).unwrap_err().problem,
            KekFileProblem::NotRegular
        ));
        // A file of another user: as root, chown one away; as anyone else,
        // a root-owned file is already foreign.
        let euid = crate::fsutil::euid();
        let foreign = if euid == 0 {
            let p = write("foreign", &[0u8; 32], 0o600);
            std::os::unix::fs::chown(&p, Some(65534), None).expect("chown");
            p
        } else {
            PathBuf::from("/etc/passwd")
        };
        let owner = std::fs::metadata(&foreign).expect("stat").uid();
        assert_eq!(
            FileKek::load(&foreign).unwrap_err().problem,
            KekFileProblem::ForeignOwner { owner, euid }
        );
        assert!(matches!(
            FileKek::load(Path::new("/dev/zero")).unwrap_err().problem,
            KekFileProblem::NotRegular
        ));
        assert!(matches!(
            FileKek::load(&dir.join("missing")).unwrap_err().problem,
            KekFileProblem::Io(_)
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_interface_gives_the_same_bytes_and_errors() {
        let kek = FileKek::from_bytes([7u8; 32], Path::new("/k/kek"));
        let shared: std::sync::Arc<dyn KekBackend> = std::sync::Arc::new(kek.clone());
        assert_eq!(shared.identity(), "file:/k/kek");
        let dek = Dek::from_bytes([9u8; 32]);
        let wrapped = shared.wrap(&dek).expect("wrap");
        assert_eq!(wrapped.len(), WRAPPED_LEN);
        assert!(kek.unwrap(&wrapped).expect("own unwrap").ct_eq(&dek));
        assert!(shared.unwrap(&wrapped).expect("unwrap").ct_eq(&dek));
        assert_eq!(
            shared.unwrap(&wrapped[1..]).unwrap_err(),
            UnwrapError::Length(59)
        );
        assert_eq!(format!("{:?}", &*shared), "Kek(file:/k/kek)");
    }

    #[test]
    fn debug_output_hides_key_bytes() {
        let kek = FileKek::from_bytes([0xAB; 32], Path::new("k"));
        let dek = Dek::from_bytes([0xCD; 32]);
        let text = format!("{kek:?} {dek:?}");
        assert!(!text.contains("171") && !text.to_lowercase().contains("ab, "));
        assert!(!text.contains("205"));
        assert!(text.contains("redacted"));
    }
}
