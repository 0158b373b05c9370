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
//! 8. a sidecar behind the Raft log over an encryption entry (audit.go),
//!    failing closed: with no log to inspect the gap, or a log that does
//!    not reach over all of it, the node does not start either.
//!
//! `mod.rs` holds the inputs, `diagnose` and the order; `guards.rs` one
//! function per guard; `refusal.rs` the refusals, their Go names and
//! messages.

use std::path::{Path, PathBuf};

use crate::kek::{KekBackend, KekFailure};
use crate::raftlog::LogSlice;
use crate::registry::RegistryRow;
use crate::sidecar::{self, Sidecar};
use crate::snapshot;
use crate::store::RegistryError;

mod guards;
mod refusal;

use guards::{
    envelope_cutover_divergence, filesystem_probe, kek_mismatch, kek_required_with_flag,
    local_epoch_exhausted, local_epoch_rollback, node_id_collision, sidecar_behind_raft_log,
    sidecar_present_without_flag,
};
pub use refusal::{Refusal, RollbackProblem};

/// The Go error each guard stands for, by guard number (0 to 8).
pub const GUARD_SENTINELS: [&str; 9] = [
    "ErrEnvelopeCutoverDivergence",
    "ErrSidecarPresentWithoutFlag",
    "ErrKEKRequiredWithFlag",
    "ErrKEKMismatch",
    "ErrLocalEpochExhausted",
    "ErrUnsupportedFilesystem",
    "ErrNodeIDCollision",
    "ErrLocalEpochRollback",
    "ErrSidecarBehindRaftLog",
];

/// A guard that did not run, and why (the input it lacks, or the state in
/// which Go does not check it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The guard's number (see the module documentation).
    pub guard: u8,
    pub reason: &'static str,
}

impl Skipped {
    /// The Go error the guard stands for.
    pub fn sentinel(&self) -> &'static str {
        GUARD_SENTINELS[usize::from(self.guard)]
    }
}

/// What a diagnosis found: the refusals, in Go's order, and the guards
/// that did not run, with why.
#[derive(Debug, Default)]
pub struct Diagnosis {
    pub refusals: Vec<Refusal>,
    pub skipped: Vec<Skipped>,
}

impl Diagnosis {
    fn skip(&mut self, guard: u8, reason: &'static str) {
        self.skipped.push(Skipped { guard, reason });
    }
}

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
    pub kek: Option<&'a dyn KekBackend>,
    pub sidecar_path: Option<&'a Path>,
    /// This node's full id (guard 7 needs it).
    pub full_node_id: Option<u64>,
    /// The full ids of the group's members (guard 6).
    pub members: &'a [u64],
    /// The Raft log the host can scan (guard 8); `None`: no log at all, so
    /// a gap between the sidecar and the engine cannot be inspected.
    pub log: Option<LogSlice<'a>>,
    /// The engine's applied index (guard 8); the registry's by default.
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
    /// The KEK stopped the check (an interrupt), not an answer on a key.
    #[error("the KEK {} was interrupted: {}", .0.kek, .0.message)]
    KekInterrupted(KekFailure),
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
    Ok(diagnose_all(input, registry, first_only)?.refusals)
}

/// [`diagnose`], with the guards that did not run and why.
pub fn diagnose_all(
    input: &StartupInput<'_>,
    registry: Option<&dyn RegistryLookup>,
    first_only: bool,
) -> Result<Diagnosis, StartupError> {
    let mut ctx = Guarded {
        input,
        registry,
        present: sidecar_present(input.sidecar_path)?,
        sidecar: None,
    };
    let mut out = Diagnosis::default();
    // 0 runs before the sidecar is parsed for the others (startup.go).
    envelope_cutover_divergence(&ctx, &mut out)?;
    if first_only && !out.refusals.is_empty() {
        return Ok(out);
    }
    ctx.sidecar = ctx.parse_sidecar()?;
    for step in GUARDS {
        for guard in step {
            guard(&ctx, &mut out)?;
        }
        if first_only && !out.refusals.is_empty() {
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

    /// Why the guards that need the parsed sidecar cannot look at it, if
    /// they cannot.
    fn no_sidecar(&self) -> Option<&'static str> {
        let input = self.input;
        if !input.encryption_enabled {
            Some("encryption is off")
        } else if input.kek.is_none() {
            Some("no KEK (the sidecar is read only with one)")
        } else if input.sidecar_path.is_none() {
            Some("no sidecar path was given")
        } else if self.sidecar.is_none() {
            Some("no sidecar (not bootstrapped)")
        } else {
            None
        }
    }

    /// Why guards 6 and 7 do not run, if they do not: Go runs them only
    /// once a storage key is active.
    fn no_storage_key(&self) -> Option<&'static str> {
        self.no_sidecar().or_else(|| {
            self.storage_active()
                .is_none()
                .then_some("no active storage key (Go checks only once one is active)")
        })
    }
}

/// One guard: pushes its refusal, if any.
type Guard = fn(&Guarded<'_, '_>, &mut Diagnosis) -> Result<(), StartupError>;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn skipped(input: &StartupInput<'_>) -> Vec<(u8, &'static str, &'static str)> {
        diagnose_all(input, None, false)
            .unwrap()
            .skipped
            .iter()
            .map(|s| (s.guard, s.sentinel(), s.reason))
            .collect()
    }

    #[test]
    fn every_guard_that_reads_the_sidecar_is_skipped_with_encryption_off() {
        let input = StartupInput::default();
        let off = "encryption is off";
        assert_eq!(
            skipped(&input),
            vec![
                (0, "ErrEnvelopeCutoverDivergence", off),
                (3, "ErrKEKMismatch", off),
                (4, "ErrLocalEpochExhausted", off),
                (5, "ErrUnsupportedFilesystem", off),
                (6, "ErrNodeIDCollision", off),
                (7, "ErrLocalEpochRollback", off),
                (8, "ErrSidecarBehindRaftLog", off),
            ]
        );
        assert!(diagnose(&input, None, false).unwrap().is_empty());
    }

    #[test]
    fn without_a_kek_the_guard_refuses_and_the_sidecar_guards_say_why_they_did_not_run() {
        let input = StartupInput {
            encryption_enabled: true,
            ..StartupInput::default()
        };
        let found = diagnose_all(&input, None, false).unwrap();
        assert_eq!(found.refusals.len(), 1);
        assert_eq!(found.refusals[0].sentinel(), Some("ErrKEKRequiredWithFlag"));
        let no_kek = "no KEK (the sidecar is read only with one)";
        assert_eq!(
            skipped(&input),
            vec![
                (
                    0,
                    "ErrEnvelopeCutoverDivergence",
                    "no sidecar path was given"
                ),
                (3, "ErrKEKMismatch", no_kek),
                (4, "ErrLocalEpochExhausted", no_kek),
                (5, "ErrUnsupportedFilesystem", "no sidecar path was given"),
                (6, "ErrNodeIDCollision", no_kek),
                (7, "ErrLocalEpochRollback", no_kek),
                (8, "ErrSidecarBehindRaftLog", no_kek),
            ]
        );
        // Every skip names a guard whose Go error is the one its refusal carries.
        assert_eq!(GUARD_SENTINELS[2], found.refusals[0].name());
    }
}
