//! The key-encryption key (SPEC §5) as an interface: whatever wraps and
//! unwraps DEKs for the applier, the start-up guards and the sidecar code.
//!
//! - `mod.rs`: the interface ([`KekBackend`], shared as [`SharedKek`]),
//!   the DEK it hands out ([`Dek`]) and how an unwrap fails
//!   ([`UnwrapError`], with a backend's own error as [`KekFailure`]);
//! - `file.rs`: the file KEK, AES-256-GCM under a 32-byte key in an
//!   owner-only file ([`FileKek`]), elastickv's `FileWrapper`;
//! - `cache.rs`: [`UnwrapCache`], so each distinct wrapped DEK is opened
//!   once per applier (with a KMS-backed KEK, an unwrap is a remote call).
//!
//! elastickv's counterpart is `kek.Wrapper` (internal/encryption/kek/kek.go:22-30:
//! `Wrap`, `Unwrap`, `Name`), of which the applier needs only `Unwrap`
//! (`KEKUnwrapper`, internal/encryption/applier.go:341-343). Key bytes live
//! in `Zeroizing` buffers and are wiped when dropped; no `Debug`, `Display`
//! or error message shows them.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

mod cache;
mod file;

pub use cache::UnwrapCache;
pub use file::{FileKek, KekFileError, KekFileProblem};

pub const KEK_LEN: usize = 32;
pub const DEK_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
pub const WRAPPED_LEN: usize = NONCE_LEN + DEK_LEN + TAG_LEN;

/// A key-encryption key: wraps and unwraps 32-byte DEKs under a key held
/// elsewhere (a file, a KMS, a host's own code). Shared between threads
/// (an applier may run on any), so it is `Send + Sync`; a call may block
/// (a remote call), and is made with no LMDB transaction open.
///
/// Unwrapping must be a function of the wrapped bytes: the applier caches
/// each DEK by its wrapped bytes ([`UnwrapCache`]) and does not ask again.
pub trait KekBackend: Send + Sync {
    /// The DEK wrapped, in whatever layout this KEK reads back.
    fn wrap(&self, dek: &Dek) -> Result<Vec<u8>, KekFailure>;

    /// The DEK inside `wrapped`.
    fn unwrap(&self, wrapped: &[u8]) -> Result<Dek, UnwrapError>;

    /// A short name of the KEK for messages and reprs (Go's `Name()`):
    /// `file:<path>` for a file KEK, a KMS key's URI for a KMS. Not secret.
    fn identity(&self) -> String;
}

/// The KEK an applier holds, shared with its owner.
pub type SharedKek = Arc<dyn KekBackend>;

impl fmt::Debug for dyn KekBackend + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kek({})", self.identity())
    }
}

/// A KEK backend's own failure (a KMS call refused, a host's exception),
/// kept whole so that a binding can hand the original error back.
#[derive(Clone)]
pub struct KekFailure {
    /// The KEK's [`KekBackend::identity`].
    pub kek: String,
    /// What failed, in words, made when the failure was (no key bytes).
    pub message: String,
    /// The failure is the host stopping (an interrupt, an exit), not an
    /// answer about the key: a start-up check raises it instead of
    /// reporting a mismatch.
    pub interrupt: bool,
    /// The error itself.
    pub source: Arc<dyn std::error::Error + Send + Sync>,
}

impl fmt::Debug for KekFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KekFailure")
            .field("kek", &self.kek)
            .field("message", &self.message)
            .field("interrupt", &self.interrupt)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for KekFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Two failures are equal when the same KEK said the same thing.
impl PartialEq for KekFailure {
    fn eq(&self, other: &Self) -> bool {
        (&self.kek, &self.message, self.interrupt) == (&other.kek, &other.message, other.interrupt)
    }
}

impl Eq for KekFailure {}

/// Why a wrapped DEK did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnwrapError {
    #[error("wrapped key is {0} bytes, expected 60 (nonce 12 + ciphertext 32 + tag 16)")]
    Length(usize),
    #[error("authentication tag does not verify (wrong KEK or tampered bytes)")]
    Tag,
    /// A backend answered with a key that is not 32 bytes.
    #[error("the KEK {kek} returned a {len}-byte key; a DEK is 32 bytes")]
    DekLength { kek: String, len: usize },
    /// A backend failed to answer.
    #[error("the KEK {} failed: {}", .0.kek, .0.message)]
    Backend(KekFailure),
}

impl UnwrapError {
    pub fn code(&self) -> &'static str {
        match self {
            UnwrapError::Length(_) => "length",
            UnwrapError::Tag => "tag",
            UnwrapError::DekLength { .. } => "dek_length",
            UnwrapError::Backend(_) => "kek_failed",
        }
    }

    /// The backend's own failure, when it is one.
    pub fn failure(&self) -> Option<&KekFailure> {
        match self {
            UnwrapError::Backend(f) => Some(f),
            _ => None,
        }
    }
}

/// A 32-byte data-encryption key, wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Dek(Zeroizing<[u8; DEK_LEN]>);

impl Dek {
    pub fn from_bytes(bytes: [u8; DEK_LEN]) -> Dek {
        Dek(Zeroizing::new(bytes))
    }

    /// A DEK from a backend's answer, which must be exactly 32 bytes
    /// (`Err(len)` otherwise). The caller wipes its own copy.
    pub fn from_slice(bytes: &[u8]) -> Result<Dek, usize> {
        let mut key = Zeroizing::new([0u8; DEK_LEN]);
        if bytes.len() != DEK_LEN {
            return Err(bytes.len());
        }
        key.copy_from_slice(bytes);
        Ok(Dek(key))
    }

    pub fn expose(&self) -> &[u8; DEK_LEN] {
        &self.0
    }

    /// Constant-time equality, so comparing a replayed key with a loaded
    /// one does not leak where they differ.
    pub fn ct_eq(&self, other: &Dek) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl fmt::Debug for Dek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Dek(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dek_from_slice_takes_exactly_32_bytes() {
        assert!(Dek::from_slice(&[4u8; 32])
            .expect("32")
            .ct_eq(&Dek::from_bytes([4u8; 32])));
        assert_eq!(Dek::from_slice(&[4u8; 31]).unwrap_err(), 31);
        assert_eq!(Dek::from_slice(&[]).unwrap_err(), 0);
    }

    #[test]
    fn backend_failures_name_the_kek_and_compare_by_what_they_say() {
        let failure = |message: &str| KekFailure {
            kek: "kms:test".into(),
            message: message.into(),
            interrupt: false,
            source: Arc::new(std::io::Error::other(message.to_owned())),
        };
        let err = UnwrapError::Backend(failure("RuntimeError: down"));
        assert_eq!(
            err.to_string(),
            "the KEK kms:test failed: RuntimeError: down"
        );
        assert_eq!(err.code(), "kek_failed");
        assert_eq!(err, UnwrapError::Backend(failure("RuntimeError: down")));
        assert_ne!(err, UnwrapError::Backend(failure("other")));
        let short = UnwrapError::DekLength {
            kek: "kms:test".into(),
            len: 16,
        };
        assert_eq!(
            short.to_string(),
            "the KEK kms:test returned a 16-byte key; a DEK is 32 bytes"
        );
        assert!(short.failure().is_none() && err.failure().is_some());
    }
}
