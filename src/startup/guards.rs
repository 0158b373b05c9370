//! The guard functions, one per Go check, in the order `GUARDS` runs them
//! (see the module's documentation for each one's Go source).

use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::{Diagnosis, Guarded, Phase, Refusal, RegistryLookup, RollbackProblem, StartupError};
use crate::nodeid::find_node_id_collisions;
use crate::sidecar::{self, Sidecar, LOCAL_EPOCH_MAX};
use crate::snapshot;
use crate::wire::{node_id16, Purpose};

/// Guard 0: a restored snapshot's Raft cutover differs from the sidecar's
/// (read whatever the KEK). As main_encryption_startup_guard.go:236-281:
/// the sidecar is read first, then the snapshot (given as an index, or
/// read from `snapshot_path`); no snapshot, or a cutover of 0, passes.
pub(super) fn envelope_cutover_divergence(
    ctx: &Guarded<'_, '_>,
    out: &mut Diagnosis,
) -> Result<(), StartupError> {
    let input = ctx.input;
    let (true, Some(p)) = (input.encryption_enabled, input.sidecar_path) else {
        let reason = if input.encryption_enabled {
            "no sidecar path was given"
        } else {
            "encryption is off"
        };
        out.skip(0, reason);
        return Ok(());
    };
    if input.snapshot_cutover_index.is_none() && input.snapshot_path.is_none() {
        out.skip(0, "no restored snapshot was given");
        return Ok(());
    }
    let ours = if ctx.present {
        sidecar::read(p)?
            .and_then(|s| s.raft_cutover_index())
            .unwrap_or(0)
    } else {
        0
    };
    let (snapshot, read) = match input.snapshot_cutover_index {
        Some(index) => (index, None),
        None => match input.snapshot_path.map(snapshot::restored_cutover) {
            Some(Ok(Some((cutover, read)))) => (cutover, Some(read)),
            Some(Err(e)) => return Err(e.into()),
            _ => {
                out.skip(0, "the data directory has no snapshot to restore");
                return Ok(());
            }
        },
    };
    if snapshot != 0 && snapshot != ours {
        out.refusals.push(Refusal::EnvelopeCutoverDivergence {
            snapshot,
            sidecar: ours,
            read,
        });
    }
    Ok(())
}

/// Guard 1: a sidecar, but encryption is off.
pub(super) fn sidecar_present_without_flag(
    ctx: &Guarded<'_, '_>,
    out: &mut Diagnosis,
) -> Result<(), StartupError> {
    let input = ctx.input;
    if let Some(p) = input
        .sidecar_path
        .filter(|_| ctx.present && !input.encryption_enabled)
    {
        out.refusals.push(Refusal::SidecarPresentWithoutFlag {
            path: p.to_path_buf(),
        });
    }
    Ok(())
}

/// Guard 2: encryption on, no KEK.
pub(super) fn kek_required_with_flag(
    ctx: &Guarded<'_, '_>,
    out: &mut Diagnosis,
) -> Result<(), StartupError> {
    if ctx.input.encryption_enabled && ctx.input.kek.is_none() {
        out.refusals.push(Refusal::KekRequiredWithFlag);
    }
    Ok(())
}

/// Guard 3: in ascending ids, the first key that does not unwrap (a KEK
/// that was interrupted stops the check instead).
pub(super) fn kek_mismatch(ctx: &Guarded<'_, '_>, out: &mut Diagnosis) -> Result<(), StartupError> {
    if let Some(reason) = ctx.no_sidecar() {
        out.skip(3, reason);
    }
    if let (true, Some(sc), Some(kek)) = (ctx.input.encryption_enabled, &ctx.sidecar, ctx.input.kek)
    {
        let failed = sc
            .keys
            .iter()
            .filter(|(_, key)| !key.wrapped.is_empty())
            .find_map(|(&id, key)| kek.unwrap(&key.wrapped).err().map(|e| (id, key.purpose, e)));
        if let Some((dek_id, purpose, problem)) = failed {
            if let Some(f) = problem.failure().filter(|f| f.interrupt) {
                return Err(StartupError::KekInterrupted(f.clone()));
            }
            out.refusals.push(Refusal::KekMismatch {
                dek_id,
                purpose,
                problem,
            });
        }
    }
    Ok(())
}

/// Guard 4: an active key whose local epoch is used up.
pub(super) fn local_epoch_exhausted(
    ctx: &Guarded<'_, '_>,
    out: &mut Diagnosis,
) -> Result<(), StartupError> {
    let input = ctx.input;
    if let Some(reason) = ctx.no_sidecar() {
        out.skip(4, reason);
    }
    if let (true, Some(sc), Some(p)) = (input.encryption_enabled, &ctx.sidecar, input.sidecar_path)
    {
        for purpose in [Purpose::Storage, Purpose::Raft] {
            let id = sc.active(purpose);
            if sc
                .keys
                .get(&id)
                .is_some_and(|k| k.local_epoch == LOCAL_EPOCH_MAX)
            {
                out.refusals.push(Refusal::LocalEpochExhausted {
                    dek_id: id,
                    purpose,
                    path: p.to_path_buf(),
                });
                break;
            }
        }
    }
    Ok(())
}

/// Guard 5: the sidecar's filesystem must honour fsync.
pub(super) fn filesystem_probe(
    ctx: &Guarded<'_, '_>,
    out: &mut Diagnosis,
) -> Result<(), StartupError> {
    if !ctx.input.encryption_enabled {
        out.skip(5, "encryption is off");
    } else if ctx.input.sidecar_path.is_none() {
        out.skip(5, "no sidecar path was given");
    }
    if let (true, Some(p)) = (ctx.input.encryption_enabled, ctx.input.sidecar_path) {
        if let Some(refusal) = probe_filesystem(p)? {
            out.refusals.push(refusal);
        }
    }
    Ok(())
}

/// Guard 6: two members share a node_id16 (once a storage key is active).
pub(super) fn node_id_collision(
    ctx: &Guarded<'_, '_>,
    out: &mut Diagnosis,
) -> Result<(), StartupError> {
    if let Some(reason) = ctx.no_storage_key() {
        out.skip(6, reason);
    } else if ctx.input.members.is_empty() {
        out.skip(6, "no members were given");
    }
    if ctx.storage_active().is_some() {
        if let Some(&(first, second)) = find_node_id_collisions(ctx.input.members).first() {
            out.refusals
                .push(Refusal::NodeIdCollision { first, second });
        }
    }
    Ok(())
}

/// Guard 7: this node's epoch went back (once a storage key is active).
pub(super) fn local_epoch_rollback(
    ctx: &Guarded<'_, '_>,
    out: &mut Diagnosis,
) -> Result<(), StartupError> {
    let input = ctx.input;
    if let Some(reason) = ctx.no_storage_key() {
        out.skip(7, reason);
    } else if input.full_node_id.is_none() {
        out.skip(7, "this node's full id was not given");
    }
    if let (Some(sc), Some(full)) = (ctx.storage_active(), input.full_node_id) {
        let phase = input.phase.unwrap_or(Phase::PreBump);
        if let Some(refusal) = rollback(sc, full, phase, ctx.registry)? {
            out.refusals.push(refusal);
        }
    }
    Ok(())
}

/// Guard 8: the sidecar is behind an encryption entry the engine applied
/// (audit.go). It fails closed: no log, or a log that does not reach over
/// the gap, refuses too, as Go's guard does without a scanner or when its
/// scanner cannot read the range. Go only warns when the sidecar never
/// recorded an index (raft_applied_index 0, a sidecar of an older binary).
pub(super) fn sidecar_behind_raft_log(
    ctx: &Guarded<'_, '_>,
    out: &mut Diagnosis,
) -> Result<(), StartupError> {
    if let Some(reason) = ctx.no_sidecar() {
        out.skip(8, reason);
        return Ok(());
    }
    let Some(sc) = ctx.sidecar.as_ref().filter(|s| s.raft_applied_index != 0) else {
        // main_encryption_startup_guard.go:180-186: Go logs a warning.
        out.skip(
            8,
            "the sidecar never recorded a Raft index (raft_applied_index=0, a sidecar of an \
             older binary): Go only warns; resync-sidecar or a rotation records one",
        );
        return Ok(());
    };
    let engine = match (ctx.input.engine_applied_index, ctx.registry) {
        (Some(i), _) => i,
        (None, Some(r)) => match r.applied_index()? {
            Some(i) => i,
            None => {
                out.skip(
                    8,
                    "the registry records no applied index, so the engine's is not known",
                );
                return Ok(());
            }
        },
        (None, None) => {
            // Not a pass: nothing was compared (Go always knows its engine's).
            out.skip(8, "the engine's applied index was not given");
            return Ok(());
        }
    };
    let after = sc.raft_applied_index;
    if after >= engine {
        return Ok(());
    }
    let refusal = match ctx.input.log {
        None => Some(Refusal::SidecarBehindRaftLog {
            sidecar_applied_index: after,
            engine_applied_index: engine,
            entry: None,
        }),
        Some(log) if !log.covers(after, engine) => Some(Refusal::RaftLogGapUncovered {
            sidecar_applied_index: after,
            engine_applied_index: engine,
            log_range: log.last_index().map(|last| (log.first_index, last)),
        }),
        Some(log) => {
            log.first_sidecar_entry(after, engine)
                .map(|entry| Refusal::SidecarBehindRaftLog {
                    sidecar_applied_index: after,
                    engine_applied_index: engine,
                    entry: Some(entry),
                })
        }
    };
    out.refusals.extend(refusal);
    Ok(())
}

/// Guard 7 (main_encryption_startup_guard.go, as main.go runs it).
pub(super) fn rollback(
    sc: &Sidecar,
    full: u64,
    phase: Phase,
    registry: Option<&dyn RegistryLookup>,
) -> Result<Option<Refusal>, StartupError> {
    let dek_id = sc.active_storage;
    let Some(key) = sc.keys.get(&dek_id) else {
        return Ok(None); // the sidecar reader refuses this already
    };
    let row = match registry {
        Some(r) => r.row(dek_id, node_id16(full))?,
        None => None, // no registry on disk: no rows, as Go
    };
    let problem = match row {
        None if sc.storage_envelope_active => Some(RollbackProblem::NoRow),
        None => None,
        Some(row) if row.full_node_id != full => Some(RollbackProblem::ForeignRow {
            owner: row.full_node_id,
        }),
        Some(row) => {
            let behind = match phase {
                Phase::PreBump => key.local_epoch < row.last_seen_local_epoch,
                Phase::PostReplay => key.local_epoch <= row.last_seen_local_epoch,
            };
            behind.then_some(RollbackProblem::Behind {
                sidecar_epoch: key.local_epoch,
                last_seen: row.last_seen_local_epoch,
            })
        }
    };
    Ok(problem.map(|problem| Refusal::LocalEpochRollback {
        dek_id,
        full_node_id: full,
        phase,
        problem,
    }))
}

/// Guard 5 (startup.go, ProbeSidecarFilesystem): write, fsync and rename a
/// probe file in the sidecar's directory, fsync the directory, remove the
/// file. A failing fsync is the refusal; anything else is an error.
pub(super) fn probe_filesystem(sidecar_path: &Path) -> Result<Option<Refusal>, StartupError> {
    let dir = crate::fsutil::parent_dir(sidecar_path).to_path_buf();
    let error = |detail: String| StartupError::Probe {
        dir: dir.clone(),
        detail,
    };
    let nonce: u64 = {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).map_err(|e| error(e.to_string()))?;
        u64::from_ne_bytes(bytes)
    };
    let tmp = dir.join(format!(".encryption-probe-{nonce:016x}.tmp"));
    let fin = dir.join(format!(".encryption-probe-{nonce:016x}.tmp.final"));
    let result = (|| -> Result<Option<String>, StartupError> {
        let mut file =
            crate::fsutil::create_private_file(&tmp).map_err(|e| error(e.to_string()))?;
        file.write_all(b"encryption-probe\n")
            .map_err(|e| error(e.to_string()))?;
        if let Err(e) = file.sync_all() {
            return Ok(Some(format!("fsync of a file: {e}")));
        }
        drop(file);
        std::fs::rename(&tmp, &fin).map_err(|e| error(e.to_string()))?;
        let parent = File::open(&dir).map_err(|e| error(e.to_string()))?;
        if let Err(e) = parent.sync_all() {
            return Ok(Some(format!("fsync of the directory: {e}")));
        }
        Ok(None)
    })();
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_file(&fin);
    Ok(result?.map(|detail| Refusal::UnsupportedFilesystem {
        dir: dir.clone(),
        detail,
    }))
}
