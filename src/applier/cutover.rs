//! Envelope cutovers (rotation sub-tags 0x04/0x05, SPEC §7): the one-shot
//! switch of the storage or the Raft layer to envelopes. The stateless
//! checks (a Raft cutover needs an index, the purpose must match the
//! layer) are [`crate::rules::check_cutover`], and the branch a cutover
//! takes against the sidecar is [`crate::rules::cutover_branch`]; this
//! file applies them, records the cutover index in `keys.json` (read back
//! through [`Sidecar::raft_cutover_index`]) and tells the host.

use std::sync::Arc;

use super::keys::StagedRows;
use super::Applier;
use crate::error::{ApplyError, HookError};
use crate::rules::{check_cutover, cutover_branch, CutoverBranch, Outcome};
use crate::sidecar::{self, Sidecar};
use crate::wire::{PayloadKind, Rotation, ENABLE_RAFT_ENVELOPE};

/// The host's `on_raft_cutover(cutover_index, active_raft_dek_id)`: told
/// when the Raft layer is cut over (and again on each replay, and after a
/// Raft rotation past the cutover), so it can start reading enveloped
/// entries after `cutover_index`. Its error halts the entry.
#[derive(Clone)]
pub struct RaftCutoverHook(pub Arc<dyn Fn(u64, u32) -> Result<(), HookError> + Send + Sync>);

impl std::fmt::Debug for RaftCutoverHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RaftCutoverHook")
    }
}

impl Applier {
    /// An envelope cutover (sub-tags 0x04/0x05, SPEC §7): Go's stale /
    /// already-active / fresh branches, in Go's order per layer. Only the
    /// fresh branch applies the proposer row (by the four cases) and flips
    /// the sidecar; every branch advances the Raft applied index. The Raft
    /// hook runs before anything is written.
    pub(super) fn apply_cutover_at(
        &mut self,
        r: &Rotation,
        index: Option<u64>,
    ) -> Result<Outcome, ApplyError> {
        check_cutover(r, index)?;
        let keyring = self.keyring_for(PayloadKind::Rotation)?;
        let Some(current) = keyring.sync_from_disk()?.filter(Sidecar::is_bootstrapped) else {
            return Err(ApplyError::NotBootstrapped { dek_id: r.dek_id });
        };
        let branch = cutover_branch(&current, r);
        let raft = r.sub_tag == ENABLE_RAFT_ENVELOPE;
        let mut next = sidecar::next_version(Some(&current));
        next.advance_raft_applied_index(index);
        let env = Arc::clone(&self.env);
        let mut txn = env.begin_write()?;
        let mut staged = StagedRows::default();
        if branch == CutoverBranch::Fresh {
            staged.stage(&mut txn, &r.proposer)?;
            if raft {
                // check_cutover refused a Raft cutover without an index, so
                // this is never the "not cut over" 0.
                next.raft_envelope_cutover_index = index.unwrap_or(0);
            } else {
                // The storage layer's flag is `storage_envelope_active`; its
                // index is informational, and a cutover applied without one
                // (a host that passes no indexes) records 0, as Go's
                // zero-valued field does.
                next.storage_envelope_active = true;
                next.storage_envelope_cutover_index = index.unwrap_or(0);
            }
        }
        if raft && branch != CutoverBranch::Stale {
            self.tell_raft_cutover(next.raft_envelope_cutover_index, next.active_raft)?;
        }
        let write = current != next;
        self.rows_then_sidecar_then_index(
            PayloadKind::Rotation,
            txn,
            &staged,
            write,
            &next,
            index,
        )?;
        Ok(match branch {
            CutoverBranch::Fresh => Outcome::Enabled,
            CutoverBranch::AlreadyActive => Outcome::AlreadyActive,
            CutoverBranch::Stale => Outcome::StaleDek,
        })
    }

    /// Tells the host's hook, when there is one, that the Raft layer is
    /// cut over at `cutover_index` with `dek_id` active.
    pub(super) fn tell_raft_cutover(
        &self,
        cutover_index: u64,
        dek_id: u32,
    ) -> Result<(), ApplyError> {
        let Some(hook) = self
            .keyring
            .as_ref()
            .and_then(|c| c.on_raft_cutover.clone())
        else {
            return Ok(());
        };
        (hook.0)(cutover_index, dek_id).map_err(|failure| ApplyError::CutoverHook {
            cutover_index,
            dek_id,
            failure,
        })
    }
}
