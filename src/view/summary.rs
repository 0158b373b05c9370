//! Summaries of a registry's rows for people and tools, built on a scan
//! in key order: per-DEK statistics, the digest two replicas compare, a
//! row diff, and the rows as columns for a DataFrame. Not part of the
//! SPEC §3 codec, which [`crate::registry`] is alone.

use crate::fsutil::hex;

use crate::registry::{encode_registry_value, registry_key, RegistryRow};

/// One DEK's rows summarised: how many writers, and the epoch ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DekStats {
    pub rows: u64,
    pub min_first_seen_local_epoch: u16,
    pub max_first_seen_local_epoch: u16,
    pub min_last_seen_local_epoch: u16,
    pub max_last_seen_local_epoch: u16,
}

impl DekStats {
    fn of(row: &RegistryRow) -> DekStats {
        DekStats {
            rows: 1,
            min_first_seen_local_epoch: row.first_seen_local_epoch,
            max_first_seen_local_epoch: row.first_seen_local_epoch,
            min_last_seen_local_epoch: row.last_seen_local_epoch,
            max_last_seen_local_epoch: row.last_seen_local_epoch,
        }
    }

    fn add(&mut self, row: &RegistryRow) {
        self.rows += 1;
        self.min_first_seen_local_epoch = self
            .min_first_seen_local_epoch
            .min(row.first_seen_local_epoch);
        self.max_first_seen_local_epoch = self
            .max_first_seen_local_epoch
            .max(row.first_seen_local_epoch);
        self.min_last_seen_local_epoch = self
            .min_last_seen_local_epoch
            .min(row.last_seen_local_epoch);
        self.max_last_seen_local_epoch = self
            .max_last_seen_local_epoch
            .max(row.last_seen_local_epoch);
    }
}

/// Per-DEK statistics, accumulated over rows in key order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub per_dek: Vec<(u32, DekStats)>,
}

impl Stats {
    pub fn add(&mut self, row: &RegistryRow) {
        match self.per_dek.last_mut() {
            Some((dek, stats)) if *dek == row.dek_id => stats.add(row),
            _ => self.per_dek.push((row.dek_id, DekStats::of(row))),
        }
    }
}

/// SHA-256 over `key ‖ value` of every row in key order, fed one row at a
/// time: the same bytes LMDB stores, so two replicas (or a replica and an
/// export) compare in one line.
#[derive(Default)]
pub struct Digest(sha2::Sha256);

impl Digest {
    pub fn add(&mut self, row: &RegistryRow) {
        use sha2::Digest as _;
        self.0.update(registry_key(row.dek_id, row.node_id16));
        self.0.update(encode_registry_value(&row.value()));
    }

    pub fn hex(self) -> String {
        use sha2::Digest as _;
        hex(&self.0.finalize())
    }
}

/// Where two registries disagree.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RegistryDiff {
    pub only_left: Vec<RegistryRow>,
    pub only_right: Vec<RegistryRow>,
    /// Same key, different value: (left, right).
    pub changed: Vec<(RegistryRow, RegistryRow)>,
}

impl RegistryDiff {
    pub fn is_empty(&self) -> bool {
        self.only_left.is_empty() && self.only_right.is_empty() && self.changed.is_empty()
    }
}

/// Merge-joins two row lists sorted in key order.
pub fn diff(left: &[RegistryRow], right: &[RegistryRow]) -> RegistryDiff {
    let mut out = RegistryDiff::default();
    let (mut i, mut j) = (0, 0);
    let key = |r: &RegistryRow| (r.dek_id, r.node_id16);
    while i < left.len() || j < right.len() {
        match (left.get(i), right.get(j)) {
            (Some(l), Some(r)) if key(l) == key(r) => {
                if l != r {
                    out.changed.push((*l, *r));
                }
                i += 1;
                j += 1;
            }
            (Some(l), Some(r)) if key(l) < key(r) => {
                out.only_left.push(*l);
                i += 1;
            }
            (Some(_), Some(r)) | (None, Some(r)) => {
                out.only_right.push(*r);
                j += 1;
            }
            (Some(l), None) => {
                out.only_left.push(*l);
                i += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// Rows as five columns (what a DataFrame wants), without a per-row object.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Columns {
    pub dek_id: Vec<u32>,
    pub node_id16: Vec<u16>,
    pub full_node_id: Vec<u64>,
    pub first_seen_local_epoch: Vec<u16>,
    pub last_seen_local_epoch: Vec<u16>,
}

impl Columns {
    pub fn push(&mut self, row: &RegistryRow) {
        self.dek_id.push(row.dek_id);
        self.node_id16.push(row.node_id16);
        self.full_node_id.push(row.full_node_id);
        self.first_seen_local_epoch.push(row.first_seen_local_epoch);
        self.last_seen_local_epoch.push(row.last_seen_local_epoch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(dek_id: u32, n16: u16, first: u16, last: u16) -> RegistryRow {
        RegistryRow {
            dek_id,
            node_id16: n16,
            full_node_id: u64::from(n16),
            first_seen_local_epoch: first,
            last_seen_local_epoch: last,
        }
    }

    #[test]
    fn diff_finds_one_sided_and_changed_rows() {
        let left = [row(1, 1, 1, 1), row(1, 2, 1, 2), row(2, 1, 1, 1)];
        let right = [row(1, 2, 1, 3), row(2, 1, 1, 1), row(3, 1, 1, 1)];
        let d = diff(&left, &right);
        assert_eq!(d.only_left, vec![row(1, 1, 1, 1)]);
        assert_eq!(d.only_right, vec![row(3, 1, 1, 1)]);
        assert_eq!(d.changed, vec![(row(1, 2, 1, 2), row(1, 2, 1, 3))]);
        assert!(diff(&left, &left).is_empty());
        assert_eq!(diff(&[], &right).only_right.len(), 3);
    }

    #[test]
    fn stats_per_dek() {
        let mut s = Stats::default();
        for r in [row(1, 1, 1, 5), row(1, 2, 3, 4), row(7, 1, 2, 2)] {
            s.add(&r);
        }
        assert_eq!(s.per_dek.len(), 2);
        assert_eq!(
            s.per_dek[0],
            (
                1,
                DekStats {
                    rows: 2,
                    min_first_seen_local_epoch: 1,
                    max_first_seen_local_epoch: 3,
                    min_last_seen_local_epoch: 4,
                    max_last_seen_local_epoch: 5
                }
            )
        );
    }

    #[test]
    fn digest_of_nothing_is_sha256_of_nothing() {
        assert_eq!(
            Digest::default().hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
