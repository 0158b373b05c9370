//! The refusals of the start-up guards: one variant per Go sentinel (and
//! one of the package's own), what each means and its message.

use std::fmt;
use std::path::PathBuf;

use super::Phase;
use crate::kek::UnwrapError;
use crate::snapshot;
use crate::wire::{node_id16, Purpose};

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
        problem: UnwrapError,
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
    /// The sidecar is behind the engine and the gap holds an entry that
    /// writes the sidecar (`entry: Some((index, opcode))`), or the host gave
    /// no log to look (`entry: None`; Go: no scanner, fail closed).
    SidecarBehindRaftLog {
        sidecar_applied_index: u64,
        engine_applied_index: u64,
        entry: Option<(u64, u8)>,
    },
    /// The sidecar is behind the engine and the log given does not reach
    /// over the whole gap, so the gap cannot be proven harmless. Package
    /// only: Go's scanner fails with raft's own error here (a compacted or
    /// unavailable range), which has no encryption sentinel.
    RaftLogGapUncovered {
        sidecar_applied_index: u64,
        engine_applied_index: u64,
        /// First and last index of the log given; `None` when it was empty.
        log_range: Option<(u64, u64)>,
    },
}

impl Refusal {
    /// The name of the Go error this refusal stands for; `None` for the
    /// package's own refusal that Go has no sentinel for.
    pub fn sentinel(&self) -> Option<&'static str> {
        Some(match self {
            Refusal::SidecarPresentWithoutFlag { .. } => "ErrSidecarPresentWithoutFlag",
            Refusal::KekRequiredWithFlag => "ErrKEKRequiredWithFlag",
            Refusal::KekMismatch { .. } => "ErrKEKMismatch",
            Refusal::LocalEpochExhausted { .. } => "ErrLocalEpochExhausted",
            Refusal::UnsupportedFilesystem { .. } => "ErrUnsupportedFilesystem",
            Refusal::NodeIdCollision { .. } => "ErrNodeIDCollision",
            Refusal::LocalEpochRollback { .. } => "ErrLocalEpochRollback",
            Refusal::EnvelopeCutoverDivergence { .. } => "ErrEnvelopeCutoverDivergence",
            Refusal::SidecarBehindRaftLog { .. } => "ErrSidecarBehindRaftLog",
            Refusal::RaftLogGapUncovered { .. } => return None,
        })
    }

    /// The name a message starts with: the Go sentinel, or for the one
    /// refusal without one, its own name.
    pub fn name(&self) -> &'static str {
        self.sentinel().unwrap_or("RaftLogGapUncovered")
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
                "the sidecar is behind the Raft log over an encryption entry, or over a gap no log \
                 was given to inspect (resync the sidecar past it before starting)"
            }
            Refusal::RaftLogGapUncovered { .. } => {
                "the sidecar is behind the engine and the Raft log given does not reach over the \
                 whole gap, so it cannot be shown that no encryption entry was missed (give the \
                 log from the sidecar's index on, or resync the sidecar)"
            }
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.name())?;
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
                entry,
            } => {
                write!(
                    f,
                    "sidecar raft_applied_index={sidecar_applied_index} < engine applied \
                     index={engine_applied_index}, and "
                )?;
                match entry {
                    Some((index, opcode)) => write!(
                        f,
                        "entry {index} (opcode 0x{opcode:02x}) lies in between"
                    ),
                    None => f.write_str("no Raft log was given to inspect the entries in between"),
                }
            }
            Refusal::RaftLogGapUncovered {
                sidecar_applied_index,
                engine_applied_index,
                log_range,
            } => {
                let gap = format!(
                    "sidecar raft_applied_index={sidecar_applied_index} < engine applied \
                     index={engine_applied_index}, so entries {}..={engine_applied_index} must be \
                     inspected",
                    sidecar_applied_index.saturating_add(1)
                );
                match log_range {
                    Some((first, last)) => {
                        write!(f, "{gap}, but the log given holds entries {first}..={last} only")
                    }
                    None => write!(f, "{gap}, but the log given is empty"),
                }
            }
        }
    }
}
