//! The in-memory keystore: DEK id → 32-byte DEK (SPEC §5).
//!
//! Id 0 is reserved. Setting the same bytes under a loaded id again is a
//! no-op (a replay); different bytes under a loaded id is a conflict. The
//! keystore never hands key bytes to callers outside the crate: they get
//! ids and fingerprints.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::error::{ApplyError, RejectReason};
use crate::kek::Dek;

/// Hex characters of SHA-256 kept in a fingerprint (64 bits).
pub const FINGERPRINT_HEX_LEN: usize = 16;

/// `sha256(dek).hexdigest()[:16]`: enough to tell keys apart across
/// replicas and test runs without revealing them.
pub fn fingerprint(dek: &Dek) -> String {
    let digest = Sha256::digest(dek.expose());
    let mut out = crate::fsutil::hex(&digest);
    out.truncate(FINGERPRINT_HEX_LEN);
    out
}

#[derive(Debug, Default)]
pub struct Keystore {
    keys: BTreeMap<u32, Dek>,
}

/// What installing a key would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Install {
    New,
    AlreadyLoaded,
}

impl Keystore {
    pub fn new() -> Keystore {
        Keystore::default()
    }

    /// Checks, without changing anything, what `install(id, dek)` would do.
    pub fn check(&self, dek_id: u32, dek: &Dek) -> Result<Install, ApplyError> {
        if dek_id == 0 {
            return Err(ApplyError::PayloadRejected(RejectReason::ReservedKeyId {
                field: "dek_id",
            }));
        }
        match self.keys.get(&dek_id) {
            None => Ok(Install::New),
            Some(loaded) if loaded.ct_eq(dek) => Ok(Install::AlreadyLoaded),
            Some(_) => Err(ApplyError::KeyConflict { dek_id }),
        }
    }

    /// Opens an envelope with the key it names: a storage value (with its
    /// user key, commit timestamp and expiry, which its AAD binds) or,
    /// with `storage: None`, a Raft entry.
    pub fn decrypt(
        &self,
        env: &crate::envelope::Envelope,
        storage: Option<(&[u8], u64, u64)>,
    ) -> Result<Vec<u8>, crate::envelope::EnvelopeError> {
        let dek = self
            .keys
            .get(&env.key_id)
            .ok_or(crate::envelope::EnvelopeError::UnknownKey { key_id: env.key_id })?;
        let aad = match storage {
            Some((user_key, commit_ts, expire_at)) => {
                env.storage_aad(user_key, commit_ts, expire_at)
            }
            None => env.raft_aad(),
        };
        env.open(dek, &aad)
    }

    /// Seals `plaintext` with the key `key_id` under `nonce`: a storage
    /// value (its user key, commit timestamp and expiry bound by the AAD)
    /// or, with `storage: None`, a Raft entry. The caller owns the nonce.
    pub fn encrypt(
        &self,
        key_id: u32,
        nonce: crate::envelope::NonceParts,
        plaintext: &[u8],
        storage: Option<(&[u8], u64, u64)>,
    ) -> Result<crate::envelope::Envelope, crate::envelope::EnvelopeError> {
        let dek = self
            .keys
            .get(&key_id)
            .ok_or(crate::envelope::EnvelopeError::UnknownKey { key_id })?;
        crate::envelope::Envelope::seal(dek, key_id, nonce, plaintext, |env| match storage {
            Some((user_key, commit_ts, expire_at)) => {
                env.storage_aad(user_key, commit_ts, expire_at)
            }
            None => env.raft_aad(),
        })
    }

    /// Installs a key; returns whether it was new.
    pub fn install(&mut self, dek_id: u32, dek: Dek) -> Result<Install, ApplyError> {
        let install = self.check(dek_id, &dek)?;
        if install == Install::New {
            self.keys.insert(dek_id, dek);
        }
        Ok(install)
    }

    /// Takes back a key installed by an apply that then failed.
    pub fn remove(&mut self, dek_id: u32) {
        self.keys.remove(&dek_id);
    }

    pub fn contains(&self, dek_id: u32) -> bool {
        self.keys.contains_key(&dek_id)
    }

    pub fn ids(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn fingerprint(&self, dek_id: u32) -> Option<String> {
        self.keys.get(&dek_id).map(fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_is_a_no_op_other_bytes_conflict() {
        let mut ks = Keystore::new();
        assert_eq!(
            ks.install(5, Dek::from_bytes([1; 32])).expect("new"),
            Install::New
        );
        assert_eq!(
            ks.install(5, Dek::from_bytes([1; 32])).expect("again"),
            Install::AlreadyLoaded
        );
        assert!(matches!(
            ks.install(5, Dek::from_bytes([2; 32])),
            Err(ApplyError::KeyConflict { dek_id: 5 })
        ));
        assert!(matches!(
            ks.install(0, Dek::from_bytes([2; 32])),
            Err(ApplyError::PayloadRejected(
                RejectReason::ReservedKeyId { .. }
            ))
        ));
        assert_eq!(ks.ids(), vec![5]);
        assert_eq!(
            ks.fingerprint(5).expect("fp"),
            fingerprint(&Dek::from_bytes([1; 32]))
        );
        ks.remove(5);
        assert!(ks.is_empty());
    }

    #[test]
    fn fingerprint_is_a_sha256_prefix() {
        // sha256(32 zero bytes) = 66687aadf862bd776c8fc18b8e9f8e20...
        assert_eq!(fingerprint(&Dek::from_bytes([0; 32])), "66687aadf862bd77");
    }
}
