//! The pipelined applier's row cache: the newest row of each key that it
//! has read from the store or decided itself, so that staging an entry
//! looks its key up with one hash probe instead of searching the staged
//! rows, the group in flight and LMDB's B-tree.
//!
//! Why it is never stale: the applier is the registry's one writer (it
//! holds the writer lock), and in pipelined mode every registration is
//! decided on the caller's thread, which updates the cache with what it
//! decided. Anything else that writes rows (a keyed entry, a batch, a
//! resync) first drains the pipeline, and a drain clears the cache; a
//! failed commit, which loses rows the cache holds, clears it too.
//!
//! Bounded: at most `capacity` rows (about 40 bytes each). When it is full
//! and a key it lacks comes, it is emptied and refilled with the rows
//! staged and in flight (at most twice the group size), which keeps every
//! row not yet committed in it: a key the cache lacks is in the store.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::registry::RegistryRow;

/// The least capacity, whatever the group size.
const MIN_CAPACITY: usize = 1 << 16;

/// A hasher for packed keys (`crate::registry::pack_key`): one multiply
/// and a fold, enough to spread keys that differ in their low bits.
#[derive(Default)]
pub(super) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, key: u64) {
        let h = (key ^ (key >> 31)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }
}

#[derive(Debug)]
pub(super) struct RowCache {
    rows: HashMap<u64, RegistryRow, BuildHasherDefault<KeyHasher>>,
    capacity: usize,
}

impl RowCache {
    /// A cache that holds at least four groups of `group` entries.
    pub(super) fn for_group(group: usize) -> RowCache {
        RowCache {
            rows: HashMap::default(),
            capacity: group.saturating_mul(4).max(MIN_CAPACITY),
        }
    }

    pub(super) fn get(&self, key: u64) -> Option<RegistryRow> {
        self.rows.get(&key).copied()
    }

    /// Whether a key it lacks must first empty it.
    pub(super) fn is_full(&self) -> bool {
        self.rows.len() >= self.capacity
    }

    pub(super) fn insert(&mut self, key: u64, row: RegistryRow) {
        self.rows.insert(key, row);
    }

    /// Empties it, then puts back `uncommitted` in order (the group in
    /// flight, then the staged rows: the later row of a key wins).
    pub(super) fn refill<'r>(&mut self, uncommitted: impl IntoIterator<Item = &'r RegistryRow>) {
        self.rows.clear();
        for row in uncommitted {
            self.rows.insert(row.packed_key(), *row);
        }
    }

    pub(super) fn clear(&mut self) {
        self.rows.clear();
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }

    /// A cache of `capacity` rows, below the least one, for tests.
    #[cfg(test)]
    pub(super) fn with_capacity(capacity: usize) -> RowCache {
        RowCache {
            rows: HashMap::default(),
            capacity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{reg, row_of};

    #[test]
    fn full_it_keeps_only_what_is_given_back_and_later_rows_win() {
        let mut cache = RowCache::for_group(1);
        assert_eq!(cache.capacity, MIN_CAPACITY);
        for n in 0..MIN_CAPACITY as u64 {
            let row = row_of(&reg(1, n, 1), 1, 1);
            cache.insert(row.packed_key(), row);
        }
        assert!(cache.is_full());
        let old = row_of(&reg(1, 7, 1), 1, 1);
        let new = row_of(&reg(1, 7, 2), 1, 2);
        cache.refill([&old, &new]);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(old.packed_key()), Some(new));
        assert_eq!(cache.get(row_of(&reg(1, 8, 1), 1, 1).packed_key()), None);
        assert_eq!(RowCache::for_group(1 << 20).capacity, 1 << 22);
    }
}
