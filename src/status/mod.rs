//! elastickv's read-only admin views of a node's encryption state
//! (adapter/encryption_admin.go at d9a031d0): `GetSidecarState`'s
//! [`SidecarStateReport`] (422-460) and the leader side of `ResyncSidecar`,
//! its [`ResyncSidecarResponse`] (486-516), each with the writer-registry
//! projection for one caller (`writerRegistryForCaller`, 518-549).
//!
//! Both carry exactly Go's fields (proto/encryption_admin.proto:78-86,
//! 155-169) and, apart, [`Extras`]: what this package knows that Go's
//! messages do not carry (each key's purpose, epoch and creation time, the
//! cutover indexes a message leaves out, where the state was read from).
//!
//! - `mod.rs`: the messages, how they are built from a sidecar and a
//!   registry ([`sidecar_state`], [`resync_sidecar`]), [`StatusError`],
//!   and what a reader of a message refuses (`check`);
//! - `json.rs`: their proto3 JSON (proto field names, the extras under
//!   `"extras"`) and its strict reader, which also reads a Go server's
//!   (lowerCamelCase names, zero fields left out).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::ApplierOpenError;
use crate::registry::RegistryCorruption;
use crate::sidecar::{self, Sidecar, SidecarError, SidecarKey, SidecarProblem};
use crate::startup::RegistryLookup;
use crate::store::{RegistryError, StorageError};
use crate::view::Registry;
use crate::wire::{node_id16, Purpose};

mod json;

pub use json::MessageError;

/// `GetSidecarState`'s answer (encryption_admin.go:451-459): Go's seven
/// fields, then [`Extras`] (`None` in a report read from Go's JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarStateReport {
    /// Every key of the sidecar, by id (`wrappedDEKMap`, 567-581).
    pub wrapped_deks_by_id: BTreeMap<u32, Vec<u8>>,
    pub active_storage_id: u32,
    pub active_raft_id: u32,
    pub storage_envelope_active: bool,
    pub raft_envelope_cutover_index: u64,
    /// The host's index when it gave one, else the sidecar's
    /// `raft_applied_index` (`appliedIndex`, 551-556).
    pub latest_applied_index: u64,
    /// `dek_id → last_seen_local_epoch` of the caller's rows (518-549).
    pub writer_registry_for_caller: BTreeMap<u32, u32>,
    pub extras: Option<Extras>,
}

/// `ResyncSidecar`'s answer on the leader (encryption_admin.go:509-515):
/// Go's five fields, then [`Extras`]. It has no envelope flags: those are
/// in its extras.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResyncSidecarResponse {
    pub wrapped_deks_by_id: BTreeMap<u32, Vec<u8>>,
    pub active_storage_id: u32,
    pub active_raft_id: u32,
    pub leader_latest_applied_index: u64,
    pub writer_registry_for_caller: BTreeMap<u32, u32>,
    pub extras: Option<Extras>,
}

/// What the sidecar and the read say beyond Go's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extras {
    /// Every key of the sidecar: purpose, `created`, `local_epoch` (and
    /// the wrapped bytes, the same as in Go's map). Same ids as
    /// `wrapped_deks_by_id`.
    pub keys: BTreeMap<u32, SidecarKey>,
    pub storage_envelope_cutover_index: u64,
    /// The envelope flags, in a resync response only (a state report has
    /// them among Go's fields).
    pub envelope: Option<EnvelopeFlags>,
    /// The sidecar's own `raft_applied_index` (Go's index unless the host
    /// gave its own).
    pub sidecar_raft_applied_index: u64,
    /// The version of the file read (1 or 2).
    pub sidecar_version: u64,
    /// The node whose rows were projected; 0 when none was given (then
    /// the projection is empty, as in Go).
    pub caller_full_node_id: u64,
    /// The sidecar file read.
    pub sidecar: String,
    /// The registry directory the projection was read from; `None` when
    /// none was read (no registry, or no caller).
    pub registry: Option<String>,
}

/// The flags `GetSidecarState` reports and `ResyncSidecar` leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeFlags {
    pub storage_envelope_active: bool,
    pub raft_envelope_cutover_index: u64,
}

/// Where the projection is read from.
#[derive(Clone, Copy)]
pub enum RegistrySource<'a> {
    /// No registry: the projection is empty (Go without a writer
    /// registry wired, encryption_admin.go:520-522).
    None,
    /// An open view; the projection is read from a fresh snapshot of it,
    /// taken after the sidecar was read (the view itself does not move).
    View(&'a Registry),
    /// A registry directory, opened after the sidecar was read.
    Dir(&'a Path),
}

/// Why a view could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// `ResyncSidecar` with caller id 0 (Go: InvalidArgument, 491-494).
    #[error("caller_full_node_id must be non-zero: a resync response is for one node")]
    ZeroCaller,
    /// No sidecar (Go: FailedPrecondition "sidecar file is missing"), or
    /// one that cannot be read or is invalid (`statusFromSidecarErr`, 600-608).
    #[error(transparent)]
    Sidecar(#[from] SidecarError),
    /// The registry directory could not be opened.
    #[error(transparent)]
    Open(#[from] ApplierOpenError),
    /// A row could not be read or does not decode (Go: Internal, 527-540).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The row at the caller's `node_id16` under a key belongs to another
    /// node (Go: Internal "writer registry node-id collision", 541-545).
    #[error(
        "writer registry node-id collision for dek_id={dek_id} node_id16=0x{node_id16:04x}: \
         row full_node_id=0x{row_full_node_id:x}, caller_full_node_id=0x{caller_full_node_id:x} \
         (the row at the caller's 16-bit prefix is another node's)"
    )]
    ForeignRow {
        dek_id: u32,
        node_id16: u16,
        row_full_node_id: u64,
        caller_full_node_id: u64,
    },
}

impl From<StorageError> for StatusError {
    fn from(e: StorageError) -> Self {
        StatusError::Registry(RegistryError::Storage(e))
    }
}

impl From<RegistryCorruption> for StatusError {
    fn from(e: RegistryCorruption) -> Self {
        StatusError::Registry(RegistryError::Corruption(e))
    }
}

/// The checks of a read message, none of which a server's message fails:
/// - no key id 0 (reserved, SPEC §5);
/// - an active id other than 0 is a key of `wrapped_deks_by_id`;
/// - `writer_registry_for_caller` only names those keys, and its values
///   are at most 0xFFFF (the proto says the decode site must check it,
///   encryption_admin.proto:85, 164-165);
/// - with extras: they describe exactly the same keys, the active ids have
///   their purpose, and the envelope flags are there in a resync response
///   only.
fn check(
    message: &'static str,
    wrapped: &BTreeMap<u32, Vec<u8>>,
    active: [u32; 2],
    projection: &BTreeMap<u32, u32>,
    extras: Option<&Extras>,
    resync: bool,
) -> Result<(), MessageError> {
    let err = |field: &str, problem: String| MessageError {
        message,
        field: field.to_owned(),
        problem,
    };
    if wrapped.contains_key(&0) {
        return Err(err("wrapped_deks_by_id", "key id 0 is reserved".into()));
    }
    for (field, id) in ["active_storage_id", "active_raft_id"]
        .into_iter()
        .zip(active)
    {
        if id != 0 && !wrapped.contains_key(&id) {
            return Err(err(field, format!("{id} is not in wrapped_deks_by_id")));
        }
    }
    for (id, epoch) in projection {
        if !wrapped.contains_key(id) {
            return Err(err(
                "writer_registry_for_caller",
                format!("dek_id={id} is not in wrapped_deks_by_id"),
            ));
        }
        if *epoch > u32::from(u16::MAX) {
            return Err(err(
                "writer_registry_for_caller",
                format!("dek_id={id}: local epoch {epoch} is above 0xFFFF"),
            ));
        }
    }
    let Some(x) = extras else {
        return Ok(());
    };
    if !x.keys.keys().eq(wrapped.keys()) {
        return Err(err(
            "extras.keys",
            "must describe exactly the keys of wrapped_deks_by_id".into(),
        ));
    }
    for ((id, key), wrap) in x.keys.iter().zip(wrapped.values()) {
        if &key.wrapped != wrap {
            return Err(err(
                "extras.keys",
                format!("dek_id={id}: wrapped bytes differ from wrapped_deks_by_id"),
            ));
        }
    }
    for (purpose, id) in [Purpose::Storage, Purpose::Raft].into_iter().zip(active) {
        if let Some(key) = x.keys.get(&id).filter(|k| k.purpose != purpose) {
            return Err(err(
                &format!("extras.keys.{id}.purpose"),
                format!(
                    "is {}, but dek_id={id} is the active {} key",
                    key.purpose.as_str(),
                    purpose.as_str()
                ),
            ));
        }
    }
    if x.envelope.is_some() != resync {
        return Err(err(
            "extras",
            "storage_envelope_active and raft_envelope_cutover_index are extras of a resync \
             response only"
                .into(),
        ));
    }
    Ok(())
}

/// The projection for `caller` (encryption_admin.go:518-549): for each key
/// of the sidecar, ascending, the `last_seen_local_epoch` of the row at
/// `(dek_id, node_id16(caller))`; a key without one is left out. Empty
/// without a registry or with caller 0. A row of another node is an
/// error. (Go walks a map, so which of several such rows it reports is
/// chance; this reports the lowest `dek_id`.)
pub fn projection(
    sidecar: &Sidecar,
    registry: Option<&dyn RegistryLookup>,
    caller: u64,
) -> Result<BTreeMap<u32, u32>, StatusError> {
    let mut out = BTreeMap::new();
    let Some(registry) = registry.filter(|_| caller != 0) else {
        return Ok(out);
    };
    let prefix = node_id16(caller);
    for &dek_id in sidecar.keys.keys() {
        let Some(row) = registry.row(dek_id, prefix)? else {
            continue;
        };
        if row.full_node_id != caller {
            return Err(StatusError::ForeignRow {
                dek_id,
                node_id16: prefix,
                row_full_node_id: row.full_node_id,
                caller_full_node_id: caller,
            });
        }
        out.insert(dek_id, u32::from(row.last_seen_local_epoch));
    }
    Ok(out)
}

/// The state report of `sidecar` (encryption_admin.go:451-459), given its
/// projection and the host's applied index, if any.
pub fn state_report(
    sidecar: &Sidecar,
    projection: BTreeMap<u32, u32>,
    latest_applied_index: Option<u64>,
    read: Read<'_>,
) -> SidecarStateReport {
    SidecarStateReport {
        wrapped_deks_by_id: wrapped_deks(sidecar),
        active_storage_id: sidecar.active_storage,
        active_raft_id: sidecar.active_raft,
        storage_envelope_active: sidecar.storage_envelope_active,
        raft_envelope_cutover_index: sidecar.raft_envelope_cutover_index,
        latest_applied_index: latest_applied_index.unwrap_or(sidecar.raft_applied_index),
        writer_registry_for_caller: projection,
        extras: Some(extras(sidecar, None, read)),
    }
}

/// The resync response of `sidecar` (encryption_admin.go:509-515).
pub fn resync_response(
    sidecar: &Sidecar,
    projection: BTreeMap<u32, u32>,
    latest_applied_index: Option<u64>,
    read: Read<'_>,
) -> ResyncSidecarResponse {
    let flags = EnvelopeFlags {
        storage_envelope_active: sidecar.storage_envelope_active,
        raft_envelope_cutover_index: sidecar.raft_envelope_cutover_index,
    };
    ResyncSidecarResponse {
        wrapped_deks_by_id: wrapped_deks(sidecar),
        active_storage_id: sidecar.active_storage,
        active_raft_id: sidecar.active_raft,
        leader_latest_applied_index: latest_applied_index.unwrap_or(sidecar.raft_applied_index),
        writer_registry_for_caller: projection,
        extras: Some(extras(sidecar, Some(flags), read)),
    }
}

/// What was read, for the extras.
#[derive(Debug, Clone, Copy)]
pub struct Read<'a> {
    pub sidecar: &'a Path,
    pub registry: Option<&'a Path>,
    pub caller_full_node_id: u64,
}

/// `wrappedDEKMap` (encryption_admin.go:567-581): every key, retired or
/// not (HEAD has no retirement), by id.
fn wrapped_deks(sidecar: &Sidecar) -> BTreeMap<u32, Vec<u8>> {
    sidecar
        .keys
        .iter()
        .map(|(id, key)| (*id, key.wrapped.clone()))
        .collect()
}

fn extras(sidecar: &Sidecar, envelope: Option<EnvelopeFlags>, read: Read<'_>) -> Extras {
    Extras {
        keys: sidecar.keys.clone(),
        storage_envelope_cutover_index: sidecar.storage_envelope_cutover_index,
        envelope,
        sidecar_raft_applied_index: sidecar.raft_applied_index,
        sidecar_version: sidecar.version,
        caller_full_node_id: read.caller_full_node_id,
        sidecar: read.sidecar.display().to_string(),
        registry: read.registry.map(|p| p.display().to_string()),
    }
}

/// The sidecar at `path`; none is [`SidecarProblem::NotBootstrapped`] (Go:
/// FailedPrecondition "sidecar file is missing", 602-603).
fn read_sidecar(path: &Path) -> Result<Sidecar, StatusError> {
    sidecar::read(path)?
        .ok_or_else(|| SidecarError::new(path, SidecarProblem::NotBootstrapped).into())
}

/// What [`read_state`] read.
struct ReadState {
    sidecar: Sidecar,
    rows: BTreeMap<u32, u32>,
    /// The registry the rows came from, if any was read.
    registry: Option<PathBuf>,
}

/// Reads the sidecar, then (only when `caller` is not 0) the projection
/// from a registry snapshot taken after it: a bootstrap or rotation
/// commits its rows before it writes keys.json, so every key read has its
/// rows (Go fences again after reading the sidecar for the same reason,
/// 435-444 and 502-504).
fn read_state(
    sidecar_path: &Path,
    registry: RegistrySource<'_>,
    caller: u64,
) -> Result<ReadState, StatusError> {
    let sidecar = read_sidecar(sidecar_path)?;
    let view = match registry {
        _ if caller == 0 => None,
        RegistrySource::None => None,
        RegistrySource::View(view) => Some(view.fresh()?),
        RegistrySource::Dir(dir) => Some(Registry::open(dir)?),
    };
    let Some(view) = view else {
        return Ok(ReadState {
            sidecar,
            rows: BTreeMap::new(),
            registry: None,
        });
    };
    let rows = projection(&sidecar, Some(&view as &dyn RegistryLookup), caller)?;
    Ok(ReadState {
        sidecar,
        rows,
        registry: Some(view.path().to_path_buf()),
    })
}

/// `GetSidecarState` for a node whose full id is `full_node_id` (0: no
/// projection, as in Go): the sidecar at `sidecar_path`, the projection
/// from `registry`, and `latest_applied_index` if the host has the
/// engine's (Go's `latestAppliedIndex` hook), else the sidecar's.
pub fn sidecar_state(
    sidecar_path: &Path,
    registry: RegistrySource<'_>,
    full_node_id: u64,
    latest_applied_index: Option<u64>,
) -> Result<SidecarStateReport, StatusError> {
    let state = read_state(sidecar_path, registry, full_node_id)?;
    let read = Read {
        sidecar: sidecar_path,
        registry: state.registry.as_deref(),
        caller_full_node_id: full_node_id,
    };
    Ok(state_report(
        &state.sidecar,
        state.rows,
        latest_applied_index,
        read,
    ))
}

/// The leader's `ResyncSidecar` response for `caller_full_node_id`, which
/// must not be 0 (checked first, as Go, 490-494).
pub fn resync_sidecar(
    sidecar_path: &Path,
    registry: RegistrySource<'_>,
    caller_full_node_id: u64,
    latest_applied_index: Option<u64>,
) -> Result<ResyncSidecarResponse, StatusError> {
    if caller_full_node_id == 0 {
        return Err(StatusError::ZeroCaller);
    }
    let state = read_state(sidecar_path, registry, caller_full_node_id)?;
    let read = Read {
        sidecar: sidecar_path,
        registry: state.registry.as_deref(),
        caller_full_node_id,
    };
    Ok(resync_response(
        &state.sidecar,
        state.rows,
        latest_applied_index,
        read,
    ))
}

#[cfg(test)]
mod tests;
