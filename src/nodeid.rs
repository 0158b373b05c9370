//! Node ids before a node joins (SPEC §7, parity study N4): how elastickv
//! derives a node's 64-bit id from its Raft id, which ids collide on the
//! 16 bits a nonce carries, what a joining node must register first, and
//! the bootstrap batch the admin builds for a cluster.

use std::collections::BTreeMap;
use std::fmt;

use crate::wire::{node_id16, Bootstrap, Registration, MAX_BOOTSTRAP_BATCH};

/// elastickv's `DeriveNodeID` (internal/raftengine/etcd/peers.go): FNV-1a
/// 64 over the UTF-8 bytes of the Raft id; `""` gives 0 (no id) and a hash
/// of 0 becomes 1, so a real id is never 0.
pub fn derive_node_id(raft_id: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    if raft_id.is_empty() {
        return 0;
    }
    let hash = raft_id
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    hash.max(1)
}

/// Pairs of distinct ids that share their low 16 bits (elastickv
/// node_id_collision.go): such nodes would write nonces with one prefix
/// under one key. Zero ids and repeats of one id are ignored. Each pair is
/// `(first seen, later)`, in input order.
pub fn find_node_id_collisions(ids: &[u64]) -> Vec<(u64, u64)> {
    let mut first_by_prefix: BTreeMap<u16, u64> = BTreeMap::new();
    let mut pairs = Vec::new();
    for &id in ids.iter().filter(|&&id| id != 0) {
        match first_by_prefix.get(&node_id16(id)) {
            Some(&first) if first != id => {
                if !pairs.contains(&(first, id)) {
                    pairs.push((first, id));
                }
            }
            Some(_) => {}
            None => {
                first_by_prefix.insert(node_id16(id), id);
            }
        }
    }
    pairs
}

/// A joining node whose 16-bit prefix is already another node's under a
/// DEK (elastickv `ErrWriterUint16Collision`): it must not join.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("writer uint16 collision: dek_id={dek_id} node_id16=0x{node_id16:04x} is registered to full_node_id=0x{existing_full_node_id:016x}, so full_node_id=0x{incoming_full_node_id:016x} cannot join")]
pub struct WriterUint16Collision {
    pub dek_id: u32,
    pub node_id16: u16,
    pub existing_full_node_id: u64,
    pub incoming_full_node_id: u64,
}

/// The pre-join check of elastickv (main_encryption_confchange.go), given
/// the row (if any) at each active DEK and the joiner's prefix: for the
/// storage DEK, then the Raft DEK when it is not 0, a missing row is a
/// registration to propose (at epoch 0), the joiner's own row is nothing
/// to do, and another node's row refuses the join.
pub fn check_join(
    full_node_id: u64,
    deks: &[(u32, Option<u64>)],
) -> Result<Vec<Registration>, WriterUint16Collision> {
    let mut needed = Vec::new();
    for &(dek_id, existing) in deks {
        match existing {
            None => needed.push(Registration {
                dek_id,
                full_node_id,
                local_epoch: 0,
            }),
            Some(existing) if existing == full_node_id => {}
            Some(existing) => {
                return Err(WriterUint16Collision {
                    dek_id,
                    node_id16: node_id16(full_node_id),
                    existing_full_node_id: existing,
                    incoming_full_node_id: full_node_id,
                })
            }
        }
    }
    Ok(needed)
}

/// Why a bootstrap batch could not be built (the admin's input checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError(pub String);

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}

/// The largest wrapped DEK the admin accepts.
pub const MAX_WRAPPED_DEK: usize = 4096;

/// elastickv's admin bootstrap builder (adapter/encryption_admin.go): the
/// ids non-zero and distinct, each wrapped DEK 1..=4096 bytes, at least one
/// writer, every writer's id non-zero, no id or 16-bit prefix twice, at
/// most [`MAX_BOOTSTRAP_BATCH`] rows; then a storage row and a Raft row per
/// writer, in order.
pub fn bootstrap_for_cluster(
    storage_dek_id: u32,
    wrapped_storage: &[u8],
    raft_dek_id: u32,
    wrapped_raft: &[u8],
    writers: &[(u64, u16)],
) -> Result<Bootstrap, BuildError> {
    let fail = |msg: String| Err(BuildError(msg));
    if storage_dek_id == 0 || raft_dek_id == 0 {
        return fail("storage_dek_id and raft_dek_id must be non-zero (0 means no key)".into());
    }
    if storage_dek_id == raft_dek_id {
        return fail(format!(
            "storage_dek_id and raft_dek_id are both {storage_dek_id}; they must differ"
        ));
    }
    for (name, wrapped) in [("storage", wrapped_storage), ("raft", wrapped_raft)] {
        if wrapped.is_empty() || wrapped.len() > MAX_WRAPPED_DEK {
            return fail(format!(
                "wrapped_{name} is {} bytes; it must be 1..={MAX_WRAPPED_DEK}",
                wrapped.len()
            ));
        }
    }
    if writers.is_empty() {
        return fail("writers must name at least one member".into());
    }
    let rows = writers.len().saturating_mul(2);
    if rows > MAX_BOOTSTRAP_BATCH as usize {
        return fail(format!(
            "{} writers make {rows} rows, over the {MAX_BOOTSTRAP_BATCH}-row bound",
            writers.len()
        ));
    }
    let mut seen: BTreeMap<u16, (usize, u64)> = BTreeMap::new();
    for (i, &(full, _)) in writers.iter().enumerate() {
        if full == 0 {
            return fail(format!(
                "writers[{i}].full_node_id must be non-zero (0 is reserved)"
            ));
        }
        match seen.get(&node_id16(full)) {
            Some(&(j, other)) if other == full => {
                return fail(format!(
                    "writers[{i}] repeats full_node_id=0x{full:016x} of writers[{j}]"
                ))
            }
            Some(&(j, other)) => {
                return fail(format!(
                    "writers[{i}].full_node_id=0x{full:016x} and writers[{j}]=0x{other:016x} share \
                     node_id16=0x{:04x} (the registry key)",
                    node_id16(full)
                ))
            }
            None => {
                seen.insert(node_id16(full), (i, full));
            }
        }
    }
    let batch_registry = writers
        .iter()
        .flat_map(|&(full_node_id, local_epoch)| {
            [storage_dek_id, raft_dek_id].map(|dek_id| Registration {
                dek_id,
                full_node_id,
                local_epoch,
            })
        })
        .collect();
    Ok(Bootstrap {
        storage_dek_id,
        wrapped_storage: wrapped_storage.to_vec(),
        raft_dek_id,
        wrapped_raft: wrapped_raft.to_vec(),
        batch_registry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_node_id_pinned_values() {
        // The parity study's pins, and FNV-1a's own test vector for "a".
        assert_eq!(derive_node_id("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(derive_node_id("n1"), 0x08b3_7b07_b558_d4c0);
        assert_eq!(derive_node_id(""), 0);
    }

    #[test]
    fn collisions_ignore_zero_and_repeats() {
        let a = 0x0001_0000_0000_0007;
        let b = 0x0002_0000_0000_0007;
        assert_eq!(find_node_id_collisions(&[a, 0, a, 3, b, b]), vec![(a, b)]);
        assert!(find_node_id_collisions(&[0, 0, a, a]).is_empty());
    }

    #[test]
    fn join_check() {
        let me = 0xAAAA_0001;
        assert_eq!(
            check_join(me, &[(1, None), (2, Some(me))]),
            Ok(vec![Registration {
                dek_id: 1,
                full_node_id: me,
                local_epoch: 0
            }])
        );
        let err = check_join(me, &[(1, Some(me)), (2, Some(0xBBBB_0001))]).unwrap_err();
        assert_eq!((err.dek_id, err.existing_full_node_id), (2, 0xBBBB_0001));
    }
}
