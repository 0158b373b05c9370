//! Local epochs at start-up (elastickv write_path_startup.go): the bump
//! that keeps a restarted node's nonces from repeating an earlier run's.

use std::path::{Path, PathBuf};

use super::{read, write_durable, Sidecar, SidecarError, SidecarProblem};

/// Why a node's local epoch could not be moved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpochError {
    #[error(transparent)]
    Sidecar(#[from] SidecarError),
    /// Every nonce prefix of this key is used up: only a new key helps.
    #[error("local epoch exhausted: dek_id={dek_id} is already at local_epoch=0xffff in {}; rotate to a new DEK (rotate-dek) before writing again", path.display())]
    Exhausted { dek_id: u32, path: PathBuf },
}

/// The highest local epoch: after it, a key's nonces could repeat.
pub const LOCAL_EPOCH_MAX: u16 = u16::MAX;

/// Moves the local epoch of key `dek_id` up by one, durably, and returns
/// it: what a node does at each start before it writes under the key, so
/// that no nonce of an earlier run (node_id16 ‖ local_epoch ‖ count) can
/// come again (elastickv write_path_startup.go, BumpLocalEpoch). Meant for
/// start-up, before an `Applier` opens the same sidecar. `dek_id` 0 is
/// reserved and must be refused by the caller.
pub fn bump_local_epoch(path: &Path, dek_id: u32) -> Result<u16, EpochError> {
    let mut sidecar =
        read(path)?.ok_or_else(|| SidecarError::new(path, SidecarProblem::NotBootstrapped))?;
    let key = sidecar
        .keys
        .get_mut(&dek_id)
        .ok_or_else(|| SidecarError::new(path, SidecarProblem::NoSuchKey { dek_id }))?;
    if key.local_epoch == LOCAL_EPOCH_MAX {
        return Err(EpochError::Exhausted {
            dek_id,
            path: path.to_path_buf(),
        });
    }
    key.local_epoch += 1;
    let epoch = key.local_epoch;
    write_durable(path, &sidecar)?;
    Ok(epoch)
}

/// The keys a start bumps, as `(storage, raft)` (elastickv
/// main_encryption_write_wiring.go:297-364): the active storage key, if
/// any, and the active Raft key once the Raft layer is cut over. A Raft
/// cutover without a Raft key is refused.
fn keys_to_bump(path: &Path, sidecar: &Sidecar) -> Result<(Option<u32>, Option<u32>), EpochError> {
    let raft_cut_over = sidecar.raft_cutover_index().is_some();
    if raft_cut_over && sidecar.active_raft == 0 {
        return Err(SidecarError::new(path, SidecarProblem::RaftCutOverWithoutRaftKey).into());
    }
    Ok((
        Some(sidecar.active_storage).filter(|&id| id != 0),
        Some(sidecar.active_raft).filter(|_| raft_cut_over),
    ))
}

/// The epochs a node pins at start (elastickv main_encryption_write_wiring
/// .go): `(0, 0)` without a sidecar; the active storage key's epoch bumped
/// (0 without one), and the active Raft key's bumped once the Raft layer is
/// cut over (else 0).
pub fn prepare_epochs(path: &Path) -> Result<(u16, u16), EpochError> {
    let Some(sidecar) = read(path)? else {
        return Ok((0, 0));
    };
    // Checked before anything is bumped, so a refusal writes nothing.
    let (storage, raft) = keys_to_bump(path, &sidecar)?;
    let storage = match storage {
        Some(id) => bump_local_epoch(path, id)?,
        None => 0,
    };
    let raft = match raft {
        Some(id) => bump_local_epoch(path, id)?,
        None => 0,
    };
    Ok((storage, raft))
}

/// The epochs [`prepare_epochs`] pins, read without writing anything: with
/// `bumped` false the sidecar is taken as it is before a start (each epoch
/// one above its key's, [`EpochError::Exhausted`] at 0xFFFF), with `bumped`
/// true as it is after the start's bump (the keys' own epochs).
pub fn pinned_epochs(path: &Path, bumped: bool) -> Result<(u16, u16), EpochError> {
    let Some(sidecar) = read(path)? else {
        return Ok((0, 0));
    };
    let (storage, raft) = keys_to_bump(path, &sidecar)?;
    let pinned = |id: Option<u32>| -> Result<u16, EpochError> {
        let Some(dek_id) = id else {
            return Ok(0);
        };
        let key = sidecar
            .keys
            .get(&dek_id)
            .ok_or_else(|| SidecarError::new(path, SidecarProblem::NoSuchKey { dek_id }))?;
        match (bumped, key.local_epoch) {
            (true, epoch) => Ok(epoch),
            (false, LOCAL_EPOCH_MAX) => Err(EpochError::Exhausted {
                dek_id,
                path: path.to_path_buf(),
            }),
            (false, epoch) => Ok(epoch + 1),
        }
    };
    Ok((pinned(storage)?, pinned(raft)?))
}
