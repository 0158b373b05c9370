//! The `keys.json` sidecar (SPEC §5): which DEKs exist, wrapped under the
//! KEK, and which are active. Same JSON fields as elastickv's.
//!
//! Reading is strict (an invalid sidecar is an error, never "no keys").
//! Writing is crash-durable: a fresh temporary file, fsync, rename over
//! `keys.json`, fsync of the directory. The rename is the commit point, so
//! a crash leaves either the old file or the new one, never a torn one.
//!
//! - `mod.rs`: the types, [`read`], [`write_durable`];
//! - `json.rs`: the strict v1/v2 parser and Go's exact v2 writer;
//! - `problem.rs`: [`SidecarProblem`] (stable codes) and [`SidecarError`];
//! - `epochs.rs`: [`bump_local_epoch`] and [`prepare_epochs`] at start-up;
//! - `rfc3339.rs`: the `created` timestamps.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};

use crate::fsutil::{open_for_reading, replace_private_durable, Follow};
use crate::wire::Purpose;

mod epochs;
mod json;
mod problem;
mod rfc3339;

pub use epochs::{bump_local_epoch, pinned_epochs, prepare_epochs, EpochError, LOCAL_EPOCH_MAX};
pub use problem::{SidecarError, SidecarProblem};
pub use rfc3339::{is_rfc3339, parse_rfc3339, rfc3339_from_unix, rfc3339_now, Timestamp};

/// The version written: 2, with `storage_envelope_cutover_index` (as Go
/// HEAD). Versions 1 and 2 are read; a version-1 file becomes version 2 on
/// its next write, as in Go.
pub const SIDECAR_VERSION: u64 = 2;
pub const SIDECAR_READABLE_VERSIONS: std::ops::RangeInclusive<u64> = 1..=2;
pub const SIDECAR_FILE: &str = "keys.json";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarKey {
    pub purpose: Purpose,
    /// `nonce ‖ ciphertext ‖ tag` under the KEK (not secret).
    pub wrapped: Vec<u8>,
    /// RFC 3339 UTC, kept as written.
    pub created: String,
    pub local_epoch: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sidecar {
    /// The version read (1 or 2); what is written is always
    /// [`SIDECAR_VERSION`].
    pub version: u64,
    pub raft_applied_index: u64,
    pub storage_envelope_active: bool,
    /// The Raft index of the storage cutover (0 before it, or when it was
    /// applied without an index).
    pub storage_envelope_cutover_index: u64,
    pub raft_envelope_cutover_index: u64,
    /// 0 = none.
    pub active_storage: u32,
    pub active_raft: u32,
    pub keys: BTreeMap<u32, SidecarKey>,
    /// Top-level fields this version does not know, written back unchanged.
    pub extra: Map<String, Value>,
}

impl Default for Sidecar {
    fn default() -> Self {
        Sidecar {
            version: SIDECAR_VERSION,
            raft_applied_index: 0,
            storage_envelope_active: false,
            storage_envelope_cutover_index: 0,
            raft_envelope_cutover_index: 0,
            active_storage: 0,
            active_raft: 0,
            keys: BTreeMap::new(),
            extra: Map::new(),
        }
    }
}

impl Sidecar {
    /// Whether a bootstrap has installed active keys.
    pub fn is_bootstrapped(&self) -> bool {
        self.active_storage != 0 || self.active_raft != 0
    }

    /// The Raft index at which the Raft layer was cut over to envelopes,
    /// or `None` before the cutover. On disk 0 means "not cut over" (a
    /// Raft cutover always has an index: [`crate::rules::check_cutover`]
    /// refuses one without), and this is the one place that reads it so.
    // shape: cutover accessor
    pub fn raft_cutover_index(&self) -> Option<u64> {
        Some(self.raft_envelope_cutover_index).filter(|&index| index != 0)
    }

    pub fn active(&self, purpose: Purpose) -> u32 {
        match purpose {
            Purpose::Storage => self.active_storage,
            Purpose::Raft => self.active_raft,
        }
    }

    /// Records that the entry at `index` was applied: the stored index
    /// only moves up, and an entry without one (or index 0) leaves it
    /// (elastickv applier.go, advanceRaftAppliedIndex).
    pub fn advance_raft_applied_index(&mut self, index: Option<u64>) {
        if let Some(index) = index.filter(|&i| i > self.raft_applied_index) {
            self.raft_applied_index = index;
        }
    }

    pub fn set_active(&mut self, purpose: Purpose, dek_id: u32) {
        match purpose {
            Purpose::Storage => self.active_storage = dek_id,
            Purpose::Raft => self.active_raft = dek_id,
        }
    }
}

/// The largest sidecar read: about 60 000 keys, far beyond any cluster's
/// key history, and small enough that a hostile file costs little memory.
pub const MAX_SIDECAR_BYTES: u64 = 16 << 20;

/// Reads and validates the sidecar at `path`; `None` when there is none.
/// The file is opened once and checked on that descriptor: `O_NONBLOCK` so
/// a FIFO cannot block the open, a regular file only, and at most
/// [`MAX_SIDECAR_BYTES`] read, so `/dev/zero` or a huge file is refused
/// instead of filling memory.
pub fn read(path: &Path) -> Result<Option<Sidecar>, SidecarError> {
    let Some(bytes) = read_bytes(path)? else {
        return Ok(None);
    };
    Sidecar::parse(&bytes)
        .map(Some)
        .map_err(|problem| SidecarError::new(path, problem))
}

/// The sidecar's bytes, with [`read`]'s checks on the file (not parsed).
pub fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>, SidecarError> {
    let (file, meta) = match open_for_reading(path, Follow::Symlinks) {
        Ok(opened) => opened,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(SidecarError::new(
                path,
                SidecarProblem::CannotOpen(e.to_string()),
            ))
        }
    };
    if !meta.file_type().is_file() {
        return Err(SidecarError::new(path, SidecarProblem::NotRegularFile));
    }
    let too_big = |size: u64| SidecarError::new(path, SidecarProblem::TooLarge { size });
    if meta.len() > MAX_SIDECAR_BYTES {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    (&file)
        .take(MAX_SIDECAR_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| SidecarError::new(path, SidecarProblem::CannotRead(e.to_string())))?;
    if bytes.len() as u64 > MAX_SIDECAR_BYTES {
        // It grew between fstat and read.
        return Err(too_big(bytes.len() as u64));
    }
    Ok(Some(bytes))
}

/// Replaces the sidecar at `path` with `sidecar`, crash-durably, mode 0600.
pub fn write_durable(path: &Path, sidecar: &Sidecar) -> Result<(), SidecarError> {
    write_durable_or_renamed(path, sidecar).map_err(|failure| match failure {
        WriteFailure::Invalid(e) => e,
        WriteFailure::NotWritten(e) => {
            SidecarError::new(path, SidecarProblem::NotWritten(e.to_string()))
        }
        WriteFailure::NotDurable(e) => {
            SidecarError::new(path, SidecarProblem::NotDurable(e.to_string()))
        }
    })
}

/// How a durable sidecar write failed.
#[derive(Debug)]
pub enum WriteFailure {
    /// The document could not be serialised: nothing was written.
    Invalid(SidecarError),
    /// A file-system fault before the rename: nothing changed on disk.
    NotWritten(crate::fsutil::WriteError),
    /// A fault after the rename: the new file is in place, not durable yet.
    NotDurable(crate::fsutil::WriteError),
}

/// [`write_durable`], telling the three kinds of failure apart.
pub fn write_durable_or_renamed(path: &Path, sidecar: &Sidecar) -> Result<(), WriteFailure> {
    // Serialised first: a failure here leaves nothing behind.
    let json = sidecar
        .to_json()
        .map_err(|problem| WriteFailure::Invalid(SidecarError::new(path, problem)))?;
    replace_private_durable(path, &json).map_err(|e| {
        if e.renamed {
            WriteFailure::NotDurable(e)
        } else {
            WriteFailure::NotWritten(e)
        }
    })
}

/// The sidecar an apply starts from: `current` (or an empty one) at the
/// version written. An apply that reaches the sidecar writes it whenever
/// this differs from `current`, so a version-1 file becomes version 2 even
/// when no field changes, as Go's `WriteSidecar` does on every branch
/// (sidecar.go:240-249).
pub fn next_version(current: Option<&Sidecar>) -> Sidecar {
    let mut next = current.cloned().unwrap_or_default();
    next.version = SIDECAR_VERSION;
    next
}

#[cfg(test)]
mod tests;
