//! `SnapshotHeader`, `read_snapshot_header()` and `newest_snapshot()`:
//! elastickv's FSM snapshots read as Go reads them (core in
//! `crate::snapshot`), for start-up guard 0.

use std::path::PathBuf;

use pyo3::prelude::*;

use super::handle::run_detached;
use crate::snapshot::{self, HeaderKind, SnapshotHeader};

/// What `read_snapshot_header()` read from a snapshot (it has no
/// constructor): where the FSM payload is, its header, and the Raft
/// envelope cutover it carries.
#[pyclass(module = "encryption_applier", name = "SnapshotHeader", frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct PySnapshotHeader(SnapshotHeader);

#[pymethods]
impl PySnapshotHeader {
    /// The file read: the `.snap` file, or an `.fsm` file read by itself.
    #[getter]
    fn path(&self) -> PathBuf {
        self.0.path.clone()
    }
    /// The file holding the FSM payload: the `.fsm` file a snapshot token
    /// names (`fsm-snap/{index:016x}.fsm` beside `snap/`), or `path`.
    #[getter]
    fn payload_path(&self) -> PathBuf {
        self.0.payload_path.clone()
    }
    /// Where the payload is: `"fsm"` (an `.fsm` file read by itself),
    /// `"snap-token"` (a `.snap` naming an `.fsm` file), `"snap-inline"` (a
    /// `.snap` holding the payload, from before `.fsm` files) or
    /// `"snap-empty"` (a `.snap` with no data: Go restores and checks
    /// nothing).
    #[getter]
    fn format(&self) -> &'static str {
        self.0.format.as_str()
    }
    /// The Raft snapshot's term (None for an `.fsm` file read by itself).
    #[getter]
    fn term(&self) -> Option<u64> {
        self.0.term
    }
    /// The Raft snapshot's index (None for an `.fsm` file read by itself).
    #[getter]
    fn index(&self) -> Option<u64> {
        self.0.index
    }
    /// The index the snapshot token names the `.fsm` file by (None without
    /// a token).
    #[getter]
    fn token_index(&self) -> Option<u64> {
        self.0.token_index
    }
    /// The payload's size in bytes (an `.fsm` file less its 4-byte footer).
    #[getter]
    fn payload_size(&self) -> u64 {
        self.0.payload_size
    }
    /// The payload's header: `"legacy"` (none: a payload from before the
    /// HLC header), `"v1"` (`EKVTHLC1`), `"v2"` (`EKVTHLC2`), or `"none"`
    /// when there is no payload.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.0.header.map(|h| h.kind) {
            None => "none",
            Some(HeaderKind::Legacy) => "legacy",
            Some(HeaderKind::V1) => "v1",
            Some(HeaderKind::V2 { .. }) => "v2",
        }
    }
    /// The header's version, 1 or 2; None for a legacy payload or none.
    #[getter]
    fn version(&self) -> Option<u8> {
        self.0.header.and_then(|h| h.version())
    }
    /// The bytes the header takes at the start of the payload (0, 16, or
    /// 10 plus a v2 header's length prefix, trailing bytes included).
    #[getter]
    fn header_length(&self) -> u64 {
        self.0.header.map_or(0, |h| h.length())
    }
    /// The HLC ceiling in Unix milliseconds (0 without a header).
    #[getter]
    fn ceiling_ms(&self) -> u64 {
        self.0.header.map_or(0, |h| h.ceiling_ms)
    }
    /// The Raft envelope cutover index the snapshot carries: a v2 header's;
    /// 0 for v1, legacy and no payload (0 means none, as Go: guard 0 then
    /// has nothing to compare).
    #[getter]
    fn raft_envelope_cutover_index(&self) -> u64 {
        self.0.raft_envelope_cutover_index()
    }

    fn __repr__(&self) -> String {
        let opt = |v: Option<u64>| v.map_or("None".to_string(), |v| v.to_string());
        format!(
            "SnapshotHeader(path={:?}, format={:?}, term={}, index={}, kind={:?}, \
             raft_envelope_cutover_index={}, payload_path={:?}, payload_size={})",
            self.0.path.display().to_string(),
            self.format(),
            opt(self.0.term),
            opt(self.0.index),
            self.kind(),
            self.raft_envelope_cutover_index(),
            self.0.payload_path.display().to_string(),
            self.0.payload_size,
        )
    }
}

/// Reads an elastickv snapshot file as Go reads it, every CRC Go checks
/// checked: a name ending in `.snap` is an etcd snapshot file (its data an
/// FSM payload, or a token naming `../fsm-snap/{index:016x}.fsm`), any
/// other name an `.fsm` file (payload and CRC-32C footer). A FIFO is
/// refused, a huge file streamed, never held in memory. Raises
/// `SnapshotError` (`.refused` when Go refuses the bytes).
#[pyfunction]
pub(super) fn read_snapshot_header(py: Python<'_>, path: PathBuf) -> PyResult<PySnapshotHeader> {
    run_detached(py, || Ok(snapshot::read_snapshot_header(&path)?)).map(PySnapshotHeader)
}

/// The `.snap` file Go restores from a Raft group's data directory (the
/// one holding `wal/`, `snap/` and `fsm-snap/`): the newest by name that
/// etcd reads and the WAL's committed snapshot records vouch for; None
/// when Go restores none (no `.wal` file in `wal/`, or no such `.snap`).
/// Raises `SnapshotError` where Go fails (a corrupt WAL, no `snap/`).
#[pyfunction]
pub(super) fn newest_snapshot(py: Python<'_>, directory: PathBuf) -> PyResult<Option<PathBuf>> {
    run_detached(py, || Ok(snapshot::newest_snapshot(&directory)?)).map(Result::ok)
}
