//! The rules, as pure functions: the four registration cases of SPEC §4
//! and the payload checks of bootstrap and rotation (SPEC §5). Nothing
//! here touches storage, so every rule can be read and tested alone; the
//! applier feeds them the stored state and writes what they decide.

use crate::error::{ApplyError, RejectReason};
use crate::registry::{RegistryRow, RegistryValue};
use crate::sidecar::Sidecar;
use crate::wire::{Bootstrap, PayloadKind, Purpose, Registration, Rotation, ENABLE_RAFT_ENVELOPE};

/// What applying an entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Case 1: a new row.
    Inserted,
    /// Case 2: the row's last-seen epoch moved forward.
    Advanced,
    /// Case 2-idempotent: the same epoch again (a Raft replay); no write.
    /// For bootstrap and rotation: an exact replay that changed nothing.
    Unchanged,
    /// A bootstrap installed keys, wrote the sidecar and/or rows.
    Bootstrapped,
    /// A rotation installed a key, moved an active id and/or a row.
    Rotated,
    /// The entry's Raft index is at or below the applied index: it was
    /// applied before, and is not looked at again.
    Skipped,
    /// An envelope cutover took effect (its proposer row applied, the
    /// sidecar flipped).
    Enabled,
    /// An envelope cutover for a layer already cut over: only the index
    /// moved (its proposer row is not looked at, as in Go).
    AlreadyActive,
    /// An envelope cutover naming a DEK that is no longer the active one
    /// of its purpose: only the index moved.
    StaleDek,
}

impl Outcome {
    /// Every outcome, in declaration order: `ALL[o as usize] == o`.
    pub const ALL: [Outcome; 9] = [
        Outcome::Inserted,
        Outcome::Advanced,
        Outcome::Unchanged,
        Outcome::Bootstrapped,
        Outcome::Rotated,
        Outcome::Skipped,
        Outcome::Enabled,
        Outcome::AlreadyActive,
        Outcome::StaleDek,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Inserted => "inserted",
            Outcome::Advanced => "advanced",
            Outcome::Unchanged => "unchanged",
            Outcome::Bootstrapped => "bootstrapped",
            Outcome::Rotated => "rotated",
            Outcome::Skipped => "skipped",
            Outcome::Enabled => "enabled",
            Outcome::AlreadyActive => "already-active",
            Outcome::StaleDek => "stale-dek",
        }
    }
}

/// The write a registration calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Write(RegistryValue, Outcome),
    Unchanged,
}

/// The four-case rule of SPEC §4 for one registration against the row
/// currently stored at its `(dek_id, node_id16)`.
pub fn decide(existing: Option<&RegistryRow>, reg: &Registration) -> Result<Decision, ApplyError> {
    let Some(row) = existing else {
        return Ok(Decision::Write(
            RegistryValue {
                full_node_id: reg.full_node_id,
                first_seen_local_epoch: reg.local_epoch,
                last_seen_local_epoch: reg.local_epoch,
            },
            Outcome::Inserted,
        ));
    };
    // Case 4 before case 3: a different node behind the same nonce prefix
    // is the graver fault, and its epochs are not comparable anyway.
    if row.full_node_id != reg.full_node_id {
        return Err(ApplyError::NodeIdCollision {
            dek_id: reg.dek_id,
            node_id16: reg.node_id16(),
            existing_full_node_id: row.full_node_id,
            incoming_full_node_id: reg.full_node_id,
        });
    }
    match reg.local_epoch.cmp(&row.last_seen_local_epoch) {
        std::cmp::Ordering::Equal => Ok(Decision::Unchanged),
        std::cmp::Ordering::Less => Err(ApplyError::LocalEpochRollback {
            dek_id: reg.dek_id,
            full_node_id: reg.full_node_id,
            last_seen: row.last_seen_local_epoch,
            incoming: reg.local_epoch,
        }),
        std::cmp::Ordering::Greater => Ok(Decision::Write(
            RegistryValue {
                full_node_id: reg.full_node_id,
                first_seen_local_epoch: row.first_seen_local_epoch,
                last_seen_local_epoch: reg.local_epoch,
            },
            Outcome::Advanced,
        )),
    }
}

/// The halt for a bootstrap or rotation reaching an applier with no KEK.
pub fn no_kek(kind: PayloadKind) -> ApplyError {
    let opcode = match kind {
        PayloadKind::Bootstrap => crate::wire::OP_BOOTSTRAP,
        PayloadKind::Rotation => crate::wire::OP_ROTATION,
        PayloadKind::Registration | PayloadKind::Entry => crate::wire::OP_REGISTRATION,
    };
    ApplyError::KekNotConfigured { opcode, kind }
}

/// A bootstrap's ids and batch rows: neither id is 0, they differ, and
/// every batch row registers under one of them.
pub fn check_bootstrap(b: &Bootstrap) -> Result<(), ApplyError> {
    let reject = |r| Err(ApplyError::PayloadRejected(r));
    for (field, id) in [
        ("storage_dek_id", b.storage_dek_id),
        ("raft_dek_id", b.raft_dek_id),
    ] {
        if id == 0 {
            return reject(RejectReason::ReservedKeyId { field });
        }
    }
    if b.storage_dek_id == b.raft_dek_id {
        return reject(RejectReason::SameIds {
            dek_id: b.storage_dek_id,
        });
    }
    if let Some((index, row)) = b
        .batch_registry
        .iter()
        .enumerate()
        .find(|(_, r)| r.dek_id != b.storage_dek_id && r.dek_id != b.raft_dek_id)
    {
        return reject(RejectReason::ForeignBatchRow {
            index,
            dek_id: row.dek_id,
            storage_dek_id: b.storage_dek_id,
            raft_dek_id: b.raft_dek_id,
        });
    }
    Ok(())
}

/// A bootstrap against the sidecar already on disk: once bootstrapped,
/// only an exact replay (same ids, same wrapped bytes) is accepted.
pub fn check_bootstrap_replay(current: Option<&Sidecar>, b: &Bootstrap) -> Result<(), ApplyError> {
    let Some(sc) = current.filter(|s| s.is_bootstrapped()) else {
        return Ok(());
    };
    let exact_replay = sc.active_storage == b.storage_dek_id
        && sc.active_raft == b.raft_dek_id
        && [
            (b.storage_dek_id, &b.wrapped_storage),
            (b.raft_dek_id, &b.wrapped_raft),
        ]
        .iter()
        .all(|(id, wrapped)| sc.keys.get(id).is_some_and(|k| &k.wrapped == *wrapped));
    if exact_replay {
        return Ok(());
    }
    Err(ApplyError::AlreadyBootstrapped {
        active_storage: sc.active_storage,
        active_raft: sc.active_raft,
        storage_dek_id: b.storage_dek_id,
        raft_dek_id: b.raft_dek_id,
    })
}

/// A rotation's ids: not 0, and the proposer registers under the very DEK
/// it rotates to.
pub fn check_rotation(r: &Rotation) -> Result<(), ApplyError> {
    if r.dek_id == 0 {
        return Err(ApplyError::PayloadRejected(RejectReason::ReservedKeyId {
            field: "dek_id",
        }));
    }
    if r.proposer.dek_id != r.dek_id {
        return Err(ApplyError::PayloadRejected(
            RejectReason::ProposerDekMismatch {
                dek_id: r.dek_id,
                proposer_dek_id: r.proposer.dek_id,
            },
        ));
    }
    Ok(())
}

/// The checks of an envelope cutover (sub-tags 0x04/0x05) that need no
/// state, in Go's order: a Raft index for the Raft cutover, the purpose
/// its sub-tag implies, no wrapped key, the proposer under the same DEK.
pub fn check_cutover(r: &Rotation, index: Option<u64>) -> Result<(), ApplyError> {
    let reject = |reason| Err(ApplyError::PayloadRejected(reason));
    let layer = if r.sub_tag == ENABLE_RAFT_ENVELOPE {
        Purpose::Raft
    } else {
        Purpose::Storage
    };
    if layer == Purpose::Raft && index.unwrap_or(0) == 0 {
        return reject(RejectReason::CutoverWithoutIndex { dek_id: r.dek_id });
    }
    if r.purpose != layer {
        return reject(RejectReason::CutoverPurpose {
            dek_id: r.dek_id,
            sub_tag: r.sub_tag,
            purpose: r.purpose,
        });
    }
    if !r.wrapped.is_empty() {
        return reject(RejectReason::CutoverWrapped {
            dek_id: r.dek_id,
            len: r.wrapped.len(),
        });
    }
    // Unlike rotate-dek, id 0 is not refused: Go takes the stale (or, for
    // Raft, already-active) branch for it.
    if r.proposer.dek_id != r.dek_id {
        return reject(RejectReason::ProposerDekMismatch {
            dek_id: r.dek_id,
            proposer_dek_id: r.proposer.dek_id,
        });
    }
    Ok(())
}

/// Which of Go's three branches a cutover takes against the sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutoverBranch {
    /// The DEK is no longer the active one of its purpose.
    Stale,
    /// The layer was cut over before.
    AlreadyActive,
    /// The cutover takes effect now.
    Fresh,
}

/// Go's order differs by layer: storage tests staleness first, Raft tests
/// "already cut over" first (elastickv applier.go).
pub fn cutover_branch(sidecar: &Sidecar, r: &Rotation) -> CutoverBranch {
    if r.sub_tag == ENABLE_RAFT_ENVELOPE {
        if sidecar.raft_cutover_index().is_some() {
            CutoverBranch::AlreadyActive
        } else if r.dek_id != sidecar.active_raft {
            CutoverBranch::Stale
        } else {
            CutoverBranch::Fresh
        }
    } else if r.dek_id != sidecar.active_storage {
        CutoverBranch::Stale
    } else if sidecar.storage_envelope_active {
        CutoverBranch::AlreadyActive
    } else {
        CutoverBranch::Fresh
    }
}

/// A key id keeps its purpose for good: installing it as the other one
/// is refused.
pub fn check_purpose(
    sidecar: Option<&Sidecar>,
    dek_id: u32,
    incoming: Purpose,
) -> Result<(), ApplyError> {
    match sidecar.and_then(|s| s.keys.get(&dek_id)) {
        Some(key) if key.purpose != incoming => {
            Err(ApplyError::PayloadRejected(RejectReason::PurposeMismatch {
                dek_id,
                existing: key.purpose,
                incoming,
            }))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn all_outcomes_are_listed_at_their_discriminant() {
        for (at, outcome) in super::Outcome::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, at, "{outcome:?}");
        }
    }

    use super::*;
    use crate::test_support::{reg, row_of};

    #[test]
    fn case1_no_row_inserts_first_equals_last() {
        let r = reg(7, 0xabcd0001, 3);
        let Decision::Write(v, Outcome::Inserted) = decide(None, &r).expect("insert") else {
            panic!("expected an insert");
        };
        assert_eq!(
            v,
            RegistryValue {
                full_node_id: 0xabcd0001,
                first_seen_local_epoch: 3,
                last_seen_local_epoch: 3
            }
        );
    }

    #[test]
    fn case2_higher_epoch_advances_last_keeps_first() {
        let r = reg(7, 0xabcd0001, 9);
        let stored = row_of(&r, 2, 5);
        let Decision::Write(v, Outcome::Advanced) = decide(Some(&stored), &r).expect("advance")
        else {
            panic!("expected an advance");
        };
        assert_eq!(v.first_seen_local_epoch, 2);
        assert_eq!(v.last_seen_local_epoch, 9);
    }

    #[test]
    fn case2_idempotent_equal_epoch_is_unchanged() {
        let r = reg(7, 0xabcd0001, 5);
        let stored = row_of(&r, 2, 5);
        assert_eq!(
            decide(Some(&stored), &r).expect("replay"),
            Decision::Unchanged
        );
    }

    #[test]
    fn case3_lower_epoch_is_rollback_with_ids() {
        let r = reg(7, 0xabcd0001, 4);
        let stored = row_of(&r, 2, 5);
        match decide(Some(&stored), &r) {
            Err(ApplyError::LocalEpochRollback {
                dek_id: 7,
                full_node_id: 0xabcd0001,
                last_seen: 5,
                incoming: 4,
            }) => {}
            other => panic!("expected rollback, got {other:?}"),
        }
    }

    #[test]
    fn case4_collision_is_checked_before_rollback() {
        let stored = row_of(&reg(7, 0xaaaa0001, 0), 9, 9);
        // Lower epoch *and* another node: the collision is what is reported.
        match decide(Some(&stored), &reg(7, 0xbbbb0001, 1)) {
            Err(ApplyError::NodeIdCollision {
                dek_id: 7,
                node_id16: 1,
                existing_full_node_id: 0xaaaa0001,
                incoming_full_node_id: 0xbbbb0001,
            }) => {}
            other => panic!("expected collision, got {other:?}"),
        }
    }
}
