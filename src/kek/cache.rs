//! [`UnwrapCache`]: the DEKs a KEK has opened, by their wrapped bytes, so
//! that each distinct wrapped DEK is unwrapped once per applier. With a
//! KMS-backed KEK each unwrap is a remote call: without the cache, every
//! bootstrap, rotation and cutover would open every key of `keys.json`
//! again (the applier re-reads the sidecar from disk before each).
//!
//! An unwrap is a function of the wrapped bytes under one KEK, so a hit
//! is what the KEK would answer. What is no longer in the sidecar is
//! dropped ([`UnwrapCache::retain`]), so the cache holds no DEK the
//! keystore would not (their bytes are wiped when dropped).

use std::collections::BTreeMap;

use super::{Dek, KekBackend, UnwrapError};

/// Wrapped bytes → the DEK they open to. Failures are not kept: a KEK that
/// failed (a KMS that was down) is asked again next time.
#[derive(Debug, Default)]
pub struct UnwrapCache {
    keys: BTreeMap<Vec<u8>, Dek>,
}

impl UnwrapCache {
    pub fn new() -> UnwrapCache {
        UnwrapCache::default()
    }

    /// The DEK `wrapped` opens to: from the cache, or from `kek` (and then
    /// kept).
    pub fn unwrap(&mut self, kek: &dyn KekBackend, wrapped: &[u8]) -> Result<Dek, UnwrapError> {
        if let Some(dek) = self.keys.get(wrapped) {
            return Ok(dek.clone());
        }
        let dek = kek.unwrap(wrapped)?;
        self.keys.insert(wrapped.to_vec(), dek.clone());
        Ok(dek)
    }

    /// Keeps only the DEKs whose wrapped bytes `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8]) -> bool) {
        self.keys.retain(|wrapped, _| keep(wrapped));
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::kek::{KekFailure, DEK_LEN};

    /// A toy KEK for tests only (XOR with 0x5a, not a cipher): counts its
    /// unwraps and refuses anything that starts with 0xff.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl KekBackend for Counting {
        fn wrap(&self, dek: &Dek) -> Result<Vec<u8>, KekFailure> {
            Ok(dek.expose().iter().map(|b| b ^ 0x5a).collect())
        }
        fn unwrap(&self, wrapped: &[u8]) -> Result<Dek, UnwrapError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            if wrapped.first() == Some(&0xff) {
                return Err(UnwrapError::Tag);
            }
            let key: Vec<u8> = wrapped.iter().map(|b| b ^ 0x5a).collect();
            Dek::from_slice(&key).map_err(|len| UnwrapError::DekLength {
                kek: self.identity(),
                len,
            })
        }
        fn identity(&self) -> String {
            "toy:xor".into()
        }
    }

    #[test]
    fn each_distinct_wrapped_key_is_unwrapped_once() {
        let kek = Counting::default();
        let mut cache = UnwrapCache::new();
        let a = kek.wrap(&Dek::from_bytes([1; DEK_LEN])).expect("wrap");
        let b = kek.wrap(&Dek::from_bytes([2; DEK_LEN])).expect("wrap");
        for _ in 0..3 {
            assert_eq!(cache.unwrap(&kek, &a).expect("a").expose(), &[1; DEK_LEN]);
        }
        assert_eq!(kek.0.load(Ordering::Relaxed), 1);
        assert_eq!(cache.unwrap(&kek, &b).expect("b").expose(), &[2; DEK_LEN]);
        assert_eq!((kek.0.load(Ordering::Relaxed), cache.len()), (2, 2));
        cache.retain(|w| w == a.as_slice());
        assert_eq!(cache.len(), 1);
        cache.unwrap(&kek, &b).expect("b again");
        assert_eq!(
            kek.0.load(Ordering::Relaxed),
            3,
            "a dropped key is asked for again"
        );
    }

    #[test]
    fn failures_are_not_kept() {
        let kek = Counting::default();
        let mut cache = UnwrapCache::new();
        let bad = [0xffu8; DEK_LEN];
        for _ in 0..2 {
            assert_eq!(cache.unwrap(&kek, &bad).unwrap_err(), UnwrapError::Tag);
        }
        assert_eq!(
            cache.unwrap(&kek, &[0x5a; 3]).unwrap_err(),
            UnwrapError::DekLength {
                kek: "toy:xor".into(),
                len: 3
            }
        );
        assert_eq!(kek.0.load(Ordering::Relaxed), 3);
        assert!(cache.is_empty());
    }
}
