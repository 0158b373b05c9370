//! elastickv's startup guards (SPEC §7, parity study N3): the conditions
//! under which a node must refuse to start, checked in Go's order, each
//! reported with the name of the Go error it stands for. [`diagnose`]
//! returns every refusal; a host raises the first.
//!
//! The guards, in order (Go file in parentheses):
//! 0. a restored snapshot whose Raft cutover differs from the sidecar's
//!    (main.go runs it first, before the KEK is loaded);
//! 1. a sidecar on disk while encryption is off (startup.go);
//! 2. encryption on without a KEK;
//! 3. a KEK that does not unwrap every key of the sidecar;
//! 4. the active storage, then Raft, key at local epoch 0xFFFF;
//! 5. a sidecar directory whose fsync does not work;
//! 6. two members sharing a 16-bit node id (only once a storage key is
//!    active; main_encryption_startup_guard.go);
//! 7. this node's registry row against the sidecar's epoch (ditto);
//! 8. a sidecar behind the Raft log over an encryption entry (audit.go).

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::kek::Kek;
use crate::nodeid::find_node_id_collisions;
use crate::registry::RegistryRow;
use crate::sidecar::{self, Sidecar, LOCAL_EPOCH_MAX};
use crate::snapshot;
use crate::store::RegistryError;
use crate::wire::{node_id16, Purpose, SIDECAR_OPCODES};

/// When the check runs: before the node bumps its epoch at start, or after
/// it replayed its Raft log (then the epoch must be strictly ahead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    PreBump,
    PostReplay,
}

/// What a host knows at start.
#[derive(Debug, Default)]
pub struct StartupInput<'a> {
    pub encryption_enabled: bool,
    pub kek: Option<&'a Kek>,
    pub sidecar_path: Option<&'a Path>,
    /// This node's full id (guard 7 needs it).
    pub full_node_id: Option<u64>,
    /// The full ids of the group's members (guard 6).
    pub members: &'a [u64],
    /// `(index, opcode)` of the Raft log entries the host can scan (guard 9).
    pub log: &'a [(u64, u8)],
    /// The engine's applied index (guard 9); the registry's by default.
    pub engine_applied_index: Option<u64>,
    /// The Raft cutover index in the newest restored snapshot (guard 0).
    pub snapshot_cutover_index: Option<u64>,
    /// Or the snapshot to read it from (guard 0): a snapshot file, or a
    /// group's data directory whose newest snapshot is read as Go chooses
    /// it (`crate::snapshot::restored`).
    pub snapshot_path: Option<&'a Path>,
    pub phase: Option<Phase>,
}

/// The registry as the guards see it: this node's row under a DEK, and the
/// applied index.
pub trait RegistryLookup {
    fn row(&self, dek_id: u32, node_id16: u16) -> Result<Option<RegistryRow>, RegistryError>;
    fn applied_index(&self) -> Result<Option<u64>, RegistryError>;
}

/// Why guard 7 refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackProblem {
    /// The storage layer is cut over but the registry has no row for this
    /// node: nonce monotonicity cannot be proven.
    NoRow,
    /// The row at this node's prefix belongs to another node.
    ForeignRow { owner: u64 },
    /// The sidecar's epoch is below (pre-bump) or not above (post-replay)
    /// the registry's last seen.
    Behind { sidecar_epoch: u16, last_seen: u16 },
}

/// One refusal, named after its Go sentinel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    SidecarPresentWithoutFlag {
        path: PathBuf,
    },
    KekRequiredWithFlag,
    KekMismatch {
        dek_id: u32,
        purpose: Purpose,
        problem: String,
    },
    LocalEpochExhausted {
        dek_id: u32,
        purpose: Purpose,
        path: PathBuf,
    },
    UnsupportedFilesystem {
        dir: PathBuf,
        detail: String,
    },
    NodeIdCollision {
        first: u64,
        second: u64,
    },
    LocalEpochRollback {
        dek_id: u32,
        full_node_id: u64,
        phase: Phase,
        problem: RollbackProblem,
    },
    EnvelopeCutoverDivergence {
        snapshot: u64,
        sidecar: u64,
        /// The snapshot file guard 0 read, when it read one.
        read: Option<snapshot::SnapshotRef>,
    },
    SidecarBehindRaftLog {
        sidecar_applied_index: u64,
        engine_applied_index: u64,
        entry_index: u64,
        opcode: u8,
    },
}

impl Refusal {
    /// The name of the Go error this refusal stands for.
    pub fn sentinel(&self) -> &'static str {
        match self {
            Refusal::SidecarPresentWithoutFlag { .. } => "ErrSidecarPresentWithoutFlag",
            Refusal::KekRequiredWithFlag => "ErrKEKRequiredWithFlag",
            Refusal::KekMismatch { .. } => "ErrKEKMismatch",
            Refusal::LocalEpochExhausted { .. } => "ErrLocalEpochExhausted",
            Refusal::UnsupportedFilesystem { .. } => "ErrUnsupportedFilesystem",
            Refusal::NodeIdCollision { .. } => "ErrNodeIDCollision",
            Refusal::LocalEpochRollback { .. } => "ErrLocalEpochRollback",
            Refusal::EnvelopeCutoverDivergence { .. } => "ErrEnvelopeCutoverDivergence",
            Refusal::SidecarBehindRaftLog { .. } => "ErrSidecarBehindRaftLog",
        }
    }

    /// What it means and what to do, in a sentence (after Go's texts).
    pub fn meaning(&self) -> &'static str {
        match self {
            Refusal::SidecarPresentWithoutFlag { .. } => {
                "a sidecar is on disk but encryption is off: starting would silently downgrade to \
                 cleartext (enable encryption, or remove the sidecar per the runbook)"
            }
            Refusal::KekRequiredWithFlag => {
                "encryption is on but no KEK is configured (configure the KEK file, or turn \
                 encryption off)"
            }
            Refusal::KekMismatch { .. } => {
                "the configured KEK cannot unwrap a key of the sidecar (use the KEK that \
                 bootstrapped this data directory)"
            }
            Refusal::LocalEpochExhausted { .. } => {
                "an active key is at local epoch 0xFFFF: another start could reuse a nonce \
                 (rotate the key first)"
            }
            Refusal::UnsupportedFilesystem { .. } => {
                "the sidecar's filesystem does not make writes durable (fsync failed; NFS and \
                 some FUSE mounts are unsupported)"
            }
            Refusal::NodeIdCollision { .. } => {
                "two members share a 16-bit node id, so they would reuse nonces under the active \
                 key (re-roll one id; check with probe-node-id before joining)"
            }
            Refusal::LocalEpochRollback { .. } => {
                "the sidecar's local epoch for the active storage key is not ahead of the \
                 registry's last seen: the nonce prefix could repeat (was the sidecar restored \
                 from an old backup? resync it, or rotate the key)"
            }
            Refusal::EnvelopeCutoverDivergence { .. } => {
                "the restored snapshot and the sidecar disagree on the Raft envelope cutover \
                 (check that they belong to the same data directory)"
            }
            Refusal::SidecarBehindRaftLog { .. } => {
                "the sidecar is behind the Raft log over an encryption entry (resync the sidecar \
                 past it before starting)"
            }
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.sentinel())?;
        match self {
            Refusal::SidecarPresentWithoutFlag { path } => {
                write!(f, "sidecar {} exists and encryption is off", path.display())
            }
            Refusal::KekRequiredWithFlag => f.write_str("encryption is on and no KEK is set"),
            Refusal::KekMismatch {
                dek_id,
                purpose,
                problem,
            } => write!(
                f,
                "the KEK cannot unwrap key_id={dek_id} purpose={}: {problem}",
                purpose.as_str()
            ),
            Refusal::LocalEpochExhausted {
                dek_id,
                purpose,
                path,
            } => write!(
                f,
                "active {} key_id={dek_id} is at local_epoch=0xffff in {}",
                purpose.as_str(),
                path.display()
            ),
            Refusal::UnsupportedFilesystem { dir, detail } => {
                write!(f, "fsync probe in {} failed: {detail}", dir.display())
            }
            Refusal::NodeIdCollision { first, second } => write!(
                f,
                "full_node_id=0x{first:016x} and full_node_id=0x{second:016x} share node_id16=0x{:04x}",
                node_id16(*first)
            ),
            Refusal::LocalEpochRollback {
                dek_id,
                full_node_id,
                phase,
                problem,
            } => {
                let when = match phase {
                    Phase::PreBump => "before the start-up bump",
                    Phase::PostReplay => "after Raft replay",
                };
                match problem {
                    RollbackProblem::NoRow => write!(
                        f,
                        "no registry row for full_node_id=0x{full_node_id:x} dek_id={dek_id} but \
                         storage_envelope_active=true ({when})"
                    ),
                    RollbackProblem::ForeignRow { owner } => write!(
                        f,
                        "the registry row for node_id16=0x{:04x} dek_id={dek_id} belongs to \
                         full_node_id=0x{owner:x}, not 0x{full_node_id:x} ({when})",
                        node_id16(*full_node_id)
                    ),
                    RollbackProblem::Behind {
                        sidecar_epoch,
                        last_seen,
                    } => write!(
                        f,
                        "sidecar local_epoch={sidecar_epoch} {} registry last_seen_local_epoch=\
                         {last_seen} (full_node_id=0x{full_node_id:x} dek_id={dek_id}, {when})",
                        if *phase == Phase::PreBump { "<" } else { "<=" }
                    ),
                }
            }
            Refusal::EnvelopeCutoverDivergence {
                snapshot,
                sidecar,
                read,
            } => {
                write!(
                    f,
                    "restored snapshot cutover={snapshot}, sidecar raft_envelope_cutover_index=\
                     {sidecar}"
                )?;
                read.as_ref()
                    .map_or(Ok(()), |r| write!(f, " (snapshot {r})"))
            }
            Refusal::SidecarBehindRaftLog {
                sidecar_applied_index,
                engine_applied_index,
                entry_index,
                opcode,
            } => write!(
                f,
                "sidecar raft_applied_index={sidecar_applied_index} < engine applied \
                 index={engine_applied_index}, and entry {entry_index} (opcode 0x{opcode:02x}) \
                 lies in between"
            ),
        }
    }
}

/// A failure that is not a refusal: the diagnosis itself could not run.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Sidecar(#[from] sidecar::SidecarError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    #[error("cannot stat the sidecar {}: {detail}", path.display())]
    Stat { path: PathBuf, detail: String },
    #[error("fsync probe in {}: {detail}", dir.display())]
    Probe { dir: PathBuf, detail: String },
}

/// Runs the guards in order and returns the refusals (empty: the node may
/// start); with `first_only`, stops at the first, as Go does (so later
/// guards, such as the filesystem probe, do not run). A guard that cannot
/// run for lack of input is skipped, except where Go treats the missing
/// thing as absent (no registry = no rows).
pub fn diagnose(
    input: &StartupInput<'_>,
    registry: Option<&dyn RegistryLookup>,
    first_only: bool,
) -> Result<Vec<Refusal>, StartupError> {
    let mut ctx = Guarded {
        input,
        registry,
        present: sidecar_present(input.sidecar_path)?,
        sidecar: None,
    };
    let mut out = Vec::new();
    // 0 runs before the sidecar is parsed for the others (startup.go).
    envelope_cutover_divergence(&ctx, &mut out)?;
    if first_only && !out.is_empty() {
        return Ok(out);
    }
    ctx.sidecar = ctx.parse_sidecar()?;
    for step in GUARDS {
        for guard in step {
            guard(&ctx, &mut out)?;
        }
        if first_only && !out.is_empty() {
            break;
        }
    }
    Ok(out)
}

/// What every guard looks at.
struct Guarded<'i, 'r> {
    input: &'i StartupInput<'i>,
    registry: Option<&'r dyn RegistryLookup>,
    /// Whether a sidecar exists at the configured path.
    present: bool,
    /// The sidecar, parsed only when it matters (startup.go:156-171):
    /// encryption on, a KEK configured and the file present.
    sidecar: Option<Sidecar>,
}

impl Guarded<'_, '_> {
    fn parse_sidecar(&self) -> Result<Option<Sidecar>, StartupError> {
        let input = self.input;
        Ok(match input.sidecar_path {
            Some(p) if self.present && input.encryption_enabled && input.kek.is_some() => {
                sidecar::read(p)?
            }
            _ => None,
        })
    }

    /// The sidecar, once a storage key is active (guards 6 and 7).
    fn storage_active(&self) -> Option<&Sidecar> {
        self.sidecar.as_ref().filter(|s| s.active_storage != 0)
    }
}

/// One guard: pushes its refusal, if any.
type Guard = fn(&Guarded<'_, '_>, &mut Vec<Refusal>) -> Result<(), StartupError>;

/// Guards 1 to 8 in Go's order, in steps: with `first_only`, the run stops
/// after the first step that refused (guards 1 and 2 are one step, as Go
/// checks both before returning).
const GUARDS: [&[Guard]; 7] = [
    &[sidecar_present_without_flag, kek_required_with_flag],
    &[kek_mismatch],
    &[local_epoch_exhausted],
    &[filesystem_probe],
    &[node_id_collision],
    &[local_epoch_rollback],
    &[sidecar_behind_raft_log],
];

/// Whether a sidecar exists at `path`. Unknown is not absent: that would
/// turn the guards off.
fn sidecar_present(path: Option<&Path>) -> Result<bool, StartupError> {
    let Some(p) = path else {
        return Ok(false);
    };
    match std::fs::metadata(p) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StartupError::Stat {
            path: p.to_path_buf(),
            detail: e.to_string(),
        }),
    }
}

/// Guard 0: a restored snapshot's Raft cutover differs from the sidecar's
/// (read whatever the KEK). As main_encryption_startup_guard.go:236-281:
/// the sidecar is read first, then the snapshot (given as an index, or
/// read from `snapshot_path`); no snapshot, or a cutover of 0, passes.
fn envelope_cutover_divergence(
    ctx: &Guarded<'_, '_>,
    out: &mut Vec<Refusal>,
) -> Result<(), StartupError> {
    let input = ctx.input;
    let (true, Some(p)) = (input.encryption_enabled, input.sidecar_path) else {
        return Ok(());
    };
    if input.snapshot_cutover_index.is_none() && input.snapshot_path.is_none() {
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
            _ => return Ok(()), // no snapshot to restore
        },
    };
    if snapshot != 0 && snapshot != ours {
        out.push(Refusal::EnvelopeCutoverDivergence {
            snapshot,
            sidecar: ours,
            read,
        });
    }
    Ok(())
}

/// Guard 1: a sidecar, but encryption is off.
fn sidecar_present_without_flag(
    ctx: &Guarded<'_, '_>,
    out: &mut Vec<Refusal>,
) -> Result<(), StartupError> {
    let input = ctx.input;
    if let Some(p) = input
        .sidecar_path
        .filter(|_| ctx.present && !input.encryption_enabled)
    {
        out.push(Refusal::SidecarPresentWithoutFlag {
            path: p.to_path_buf(),
        });
    }
    Ok(())
}

/// Guard 2: encryption on, no KEK.
fn kek_required_with_flag(
    ctx: &Guarded<'_, '_>,
    out: &mut Vec<Refusal>,
) -> Result<(), StartupError> {
    if ctx.input.encryption_enabled && ctx.input.kek.is_none() {
        out.push(Refusal::KekRequiredWithFlag);
    }
    Ok(())
}

/// Guard 3: in ascending ids, the first key that does not unwrap.
fn kek_mismatch(ctx: &Guarded<'_, '_>, out: &mut Vec<Refusal>) -> Result<(), StartupError> {
    if let (true, Some(sc), Some(kek)) = (ctx.input.encryption_enabled, &ctx.sidecar, ctx.input.kek)
    {
        let failed = sc
            .keys
            .iter()
            .filter(|(_, key)| !key.wrapped.is_empty())
            .find_map(|(&id, key)| kek.unwrap(&key.wrapped).err().map(|e| (id, key.purpose, e)));
        if let Some((dek_id, purpose, problem)) = failed {
            out.push(Refusal::KekMismatch {
                dek_id,
                purpose,
                problem: problem.to_string(),
            });
        }
    }
    Ok(())
}

/// Guard 4: an active key whose local epoch is used up.
fn local_epoch_exhausted(
    ctx: &Guarded<'_, '_>,
    out: &mut Vec<Refusal>,
) -> Result<(), StartupError> {
    let input = ctx.input;
    if let (true, Some(sc), Some(p)) = (input.encryption_enabled, &ctx.sidecar, input.sidecar_path)
    {
        for purpose in [Purpose::Storage, Purpose::Raft] {
            let id = sc.active(purpose);
            if sc
                .keys
                .get(&id)
                .is_some_and(|k| k.local_epoch == LOCAL_EPOCH_MAX)
            {
                out.push(Refusal::LocalEpochExhausted {
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
fn filesystem_probe(ctx: &Guarded<'_, '_>, out: &mut Vec<Refusal>) -> Result<(), StartupError> {
    if let (true, Some(p)) = (ctx.input.encryption_enabled, ctx.input.sidecar_path) {
        if let Some(refusal) = probe_filesystem(p)? {
            out.push(refusal);
        }
    }
    Ok(())
}

/// Guard 6: two members share a node_id16 (once a storage key is active).
fn node_id_collision(ctx: &Guarded<'_, '_>, out: &mut Vec<Refusal>) -> Result<(), StartupError> {
    if ctx.storage_active().is_some() {
        if let Some(&(first, second)) = find_node_id_collisions(ctx.input.members).first() {
            out.push(Refusal::NodeIdCollision { first, second });
        }
    }
    Ok(())
}

/// Guard 7: this node's epoch went back (once a storage key is active).
fn local_epoch_rollback(ctx: &Guarded<'_, '_>, out: &mut Vec<Refusal>) -> Result<(), StartupError> {
    let input = ctx.input;
    if let (Some(sc), Some(full)) = (ctx.storage_active(), input.full_node_id) {
        let phase = input.phase.unwrap_or(Phase::PreBump);
        if let Some(refusal) = rollback(sc, full, phase, ctx.registry)? {
            out.push(refusal);
        }
    }
    Ok(())
}

/// Guard 8: the sidecar is behind an encryption entry the engine applied
/// (Go only warns when the sidecar never recorded an index).
fn sidecar_behind_raft_log(
    ctx: &Guarded<'_, '_>,
    out: &mut Vec<Refusal>,
) -> Result<(), StartupError> {
    let Some(sc) = ctx.sidecar.as_ref().filter(|s| s.raft_applied_index != 0) else {
        return Ok(());
    };
    let engine = match ctx.input.engine_applied_index {
        Some(i) => Some(i),
        None => match ctx.registry {
            Some(r) => r.applied_index()?,
            None => None,
        },
    };
    if let Some(engine) = engine.filter(|&e| sc.raft_applied_index < e) {
        let hit = ctx.input.log.iter().find(|&&(index, opcode)| {
            index > sc.raft_applied_index && index <= engine && SIDECAR_OPCODES.contains(&opcode)
        });
        if let Some(&(entry_index, opcode)) = hit {
            out.push(Refusal::SidecarBehindRaftLog {
                sidecar_applied_index: sc.raft_applied_index,
                engine_applied_index: engine,
                entry_index,
                opcode,
            });
        }
    }
    Ok(())
}

/// Guard 7 (main_encryption_startup_guard.go, as main.go runs it).
fn rollback(
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
fn probe_filesystem(sidecar_path: &Path) -> Result<Option<Refusal>, StartupError> {
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

impl RegistryLookup for crate::view::Registry {
    fn row(&self, dek_id: u32, node_id16: u16) -> Result<Option<RegistryRow>, RegistryError> {
        self.get(dek_id, node_id16)
    }
    fn applied_index(&self) -> Result<Option<u64>, RegistryError> {
        crate::view::Registry::applied_index(self)
    }
}
