//! `RegistryRow`, the read-only `Registry` view and `RegistryDiff`: the
//! writer registry of SPEC §3 as Python objects (§6; core in `crate::view`
//! and `crate::registry`), with the pandas and HTML exports handed to
//! `encryption_applier._frames`.

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use super::convert::{replace_fields, U16, U32, U64};
use super::errors::CoreError;
use super::handle::{run_detached, Handle};
use super::payloads::PyRegistration;
use super::py_imports::{ARRAY, DIFF_HTML, DIFF_TO_PANDAS, REGISTRY_HTML, REGISTRY_TO_PANDAS};
use super::sidecar::sidecar_summary;
use super::verify::PyVerifyReport;
use crate::registry::{self as codec, RegistryRow};
use crate::store::RegistryError;
use crate::view::Registry;

/// One writer-registry row: key fields and stored value.
///
/// Rows compare, hash and sort like their registry keys (by `dek_id`,
/// then `node_id16`). `Registry` returns them; build one from its five
/// fields to compare (`ValueError` for a row the registry could never
/// hold: `full_node_id` not ending in `node_id16`, or first > last).
///
/// ```pycon
/// >>> row = ea.RegistryRow(1, 0x0001, 0xABCD0001, 1, 2)
/// >>> row.key == ea.registry_key(1, 0x0001), ea.decode_registry_value(row.value)
/// (True, (2882338817, 1, 2))
///
/// ```
#[pyclass(
    module = "encryption_applier",
    name = "RegistryRow",
    frozen,
    eq,
    hash,
    ord
)]
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd)]
pub struct PyRegistryRow(pub(super) RegistryRow);

#[pymethods]
impl PyRegistryRow {
    /// Builds a row (e.g. to compare with `Registry.rows()`). Refuses a row
    /// the registry could never hold: a full_node_id that does not end in
    /// node_id16, or first > last.
    #[new]
    #[pyo3(signature = (dek_id, node_id16, full_node_id, first_seen_local_epoch, last_seen_local_epoch))]
    fn new(
        dek_id: U32,
        node_id16: U16,
        full_node_id: U64,
        first_seen_local_epoch: U16,
        last_seen_local_epoch: U16,
    ) -> PyResult<Self> {
        let (dek_id, node_id16) = (dek_id.value(), node_id16.value());
        let row = RegistryRow {
            dek_id,
            node_id16,
            full_node_id: full_node_id.value(),
            first_seen_local_epoch: first_seen_local_epoch.value(),
            last_seen_local_epoch: last_seen_local_epoch.value(),
        };
        codec::decode_row(
            &codec::registry_key(dek_id, node_id16),
            &codec::encode_registry_value(&row.value()),
        )
        .map(PyRegistryRow)
        .map_err(|c| PyValueError::new_err(format!("not a valid registry row: {c}")))
    }

    #[classattr]
    fn __match_args__() -> (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ) {
        (
            "dek_id",
            "node_id16",
            "full_node_id",
            "first_seen_local_epoch",
            "last_seen_local_epoch",
        )
    }

    /// The id (u32) of the DEK the writer is registered under.
    #[getter]
    fn dek_id(&self) -> u32 {
        self.0.dek_id
    }
    /// `full_node_id & 0xFFFF`: the writer's nonce prefix under this DEK.
    #[getter]
    fn node_id16(&self) -> u16 {
        self.0.node_id16
    }
    /// The writer's full 64-bit node id.
    #[getter]
    fn full_node_id(&self) -> u64 {
        self.0.full_node_id
    }
    /// The local epoch (u16) of the writer's first registration under this DEK.
    #[getter]
    fn first_seen_local_epoch(&self) -> u16 {
        self.0.first_seen_local_epoch
    }
    /// The highest local epoch (u16) registered so far; never below
    /// `first_seen_local_epoch`.
    #[getter]
    fn last_seen_local_epoch(&self) -> u16 {
        self.0.last_seen_local_epoch
    }
    /// `copy.replace(self, **changes)` (Python 3.13; callable directly on
    /// any version): a new RegistryRow with the given fields changed, checked
    /// as the constructor checks them. An unknown field is a `TypeError`.
    #[pyo3(signature = (**changes))]
    fn __replace__<'py>(
        slf: &Bound<'py, Self>,
        changes: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        replace_fields(slf.as_any(), changes)
    }

    /// The 27-byte registry key of this row.
    #[getter]
    fn key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &codec::registry_key(self.0.dek_id, self.0.node_id16))
    }
    /// The 12-byte stored value of this row.
    #[getter]
    fn value<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &codec::encode_registry_value(&self.0.value()))
    }

    fn __repr__(&self) -> String {
        let r = &self.0;
        format!(
            "RegistryRow(dek_id={}, node_id16=0x{:04x}, full_node_id=0x{:x}, \
             first_seen_local_epoch={}, last_seen_local_epoch={})",
            r.dek_id,
            r.node_id16,
            r.full_node_id,
            r.first_seen_local_epoch,
            r.last_seen_local_epoch
        )
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let r = &slf.get().0;
        (
            slf.get_type(),
            (
                r.dek_id,
                r.node_id16,
                r.full_node_id,
                r.first_seen_local_epoch,
                r.last_seen_local_epoch,
            ),
        )
            .into_pyobject(slf.py())
    }
}

/// A read-only view of a registry directory, pinned to one consistent
/// snapshot: the state when it was opened or last `refresh()`ed. Another
/// process may be applying meanwhile.
///
/// `Registry(path)` opens an existing registry directory without a lock
/// (`RegistryOpenError` if there is none; `DamagedRegistryError` if
/// `data.mdb` fails the page check); `Applier.registry` gives one too.
/// Use it in a `with` block, or call `close()`.
///
/// ```pycon
/// >>> import tempfile
/// >>> with tempfile.TemporaryDirectory() as d:
/// ...     with ea.Applier(d) as a:
/// ...         _ = a.apply_many([ea.Registration(1, 0xABCD0001, 1), ea.Registration(2, 0xABCD0001, 1)])
/// ...     with ea.Registry(d) as r:
/// ...         len(r), r.dek_ids(), (2, 0x0001) in r, r.get(1, 0x0001)
/// (2, [1, 2], True, RegistryRow(dek_id=1, node_id16=0x0001, full_node_id=0xabcd0001, first_seen_local_epoch=1, last_seen_local_epoch=1))
///
/// ```
#[pyclass(module = "encryption_applier", name = "Registry", frozen)]
pub struct PyRegistry {
    inner: Handle<Registry>,
    path: PathBuf,
}

impl PyRegistry {
    pub(super) fn from_registry(registry: Registry) -> Self {
        let path = registry.path().to_path_buf();
        PyRegistry {
            inner: Handle::new(registry, "Registry", &path),
            path,
        }
    }

    /// Runs `f` on the view without the GIL, holding the view's lock (a
    /// pinned LMDB snapshot serves one thread at a time).
    fn read<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Registry) -> Result<T, RegistryError> + Send,
    ) -> PyResult<T> {
        self.inner.with(py, |registry| Ok(f(registry)?))
    }

    /// Runs `f` on the view (as [`Self::read`]) for other binding modules.
    pub(super) fn with_view<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&Registry) -> Result<T, CoreError> + Send,
    ) -> PyResult<T> {
        self.inner.with(py, |registry| f(registry))
    }

    fn rows_vec(&self, py: Python<'_>, dek_id: Option<u32>) -> PyResult<Vec<PyRegistryRow>> {
        let rows = self.read(py, |r| r.rows(dek_id))?;
        Ok(rows.into_iter().map(PyRegistryRow).collect())
    }
}

/// One `get()` in this many of a thread gives the GIL up (and takes it
/// back), so that a thread waiting for the GIL (an applier back from its
/// committer) gets it within that many reads.
const GET_YIELD: u32 = 16;

thread_local! {
    static GETS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether this `get()` is the one in [`GET_YIELD`] that releases the GIL.
fn courtesy_yield() -> bool {
    GETS.with(|n| {
        let next = (n.get() + 1) % GET_YIELD;
        n.set(next);
        next == 0
    })
}

/// Integer types whose in-memory bytes are exactly their value in native
/// byte order, with no padding: what `array.array` stores.
trait PlainInt: Copy {}
impl PlainInt for u16 {}
impl PlainInt for u32 {}
impl PlainInt for u64 {}

/// An `array.array(typecode)` holding `values`, copied once as bytes.
fn array_of<'py, T: PlainInt>(
    py: Python<'py>,
    typecode: &str,
    values: &[T],
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: `T` is a primitive unsigned integer (PlainInt is implemented
    // for u16/u32/u64 only): no padding, every byte initialised, and u8 has
    // alignment 1, so viewing the slice as bytes is sound.
    let bytes = unsafe {
        std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
    };
    ARRAY.get(py)?.call1((typecode, PyBytes::new(py, bytes)))
}

#[pymethods]
impl PyRegistry {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let registry = run_detached(py, || Ok(Registry::open(&path)?))?;
        Ok(PyRegistry::from_registry(registry))
    }

    /// The registry directory (resolved to an absolute path).
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// True once `close()` has run; a closed view raises `ValueError` when
    /// read.
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        self.inner.is_closed(py)
    }

    /// The highest Raft index applied, as of this view's snapshot (None if never).
    #[getter]
    fn applied_index(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        self.read(py, |r| r.applied_index())
    }

    /// Checks every page of the registry's newest committed state (not only
    /// this view's snapshot) and, with `rows`, decodes every row. Damage is
    /// in the report, not raised.
    #[pyo3(signature = (*, rows=true, max_problems=100))]
    fn verify(&self, py: Python<'_>, rows: bool, max_problems: usize) -> PyResult<PyVerifyReport> {
        let options = super::verify::options(rows, max_problems)?;
        let report = self.read(py, |r| Ok(r.verify(options)?))?;
        PyVerifyReport::new(py, self.path.clone(), report)
    }

    /// elastickv's pre-join check (against this view's snapshot): the
    /// registrations a node with `full_node_id` must have applied before it
    /// joins (at epoch 0; storage DEK, then the Raft DEK unless 0); raises
    /// WriterUint16CollisionError when another node holds its 16-bit prefix.
    #[pyo3(signature = (full_node_id, storage_dek_id, raft_dek_id=U32::ZERO))]
    #[pyo3(text_signature = "($self, full_node_id, storage_dek_id, raft_dek_id=0)")]
    fn check_join(
        &self,
        py: Python<'_>,
        full_node_id: U64,
        storage_dek_id: U32,
        raft_dek_id: U32,
    ) -> PyResult<Vec<PyRegistration>> {
        let (full, storage, raft) = (
            full_node_id.value(),
            storage_dek_id.value(),
            raft_dek_id.value(),
        );
        let needed = self
            .inner
            .with(py, |r| Ok(r.check_join(full, storage, raft)??))?;
        Ok(needed.into_iter().map(PyRegistration).collect())
    }

    /// Moves the view to the newest committed state.
    fn refresh(&self, py: Python<'_>) -> PyResult<()> {
        self.read(py, Registry::refresh)
    }

    /// The row at `(dek_id, node_id16)` in this snapshot, or `None`.
    ///
    /// A stored row that does not decode raises `RegistryCorruptionError`.
    fn get(&self, py: Python<'_>, dek_id: U32, node_id16: U16) -> PyResult<Option<PyRegistryRow>> {
        let (dek_id, node_id16) = (dek_id.value(), node_id16.value());
        // A read of the pinned snapshot waits for nothing but the view's
        // lock: tried with the GIL held, so an uncontended get() does not
        // give the GIL up and win it back; a view busy on another thread
        // goes the waiting way, without it. Every `GET_YIELD`-th call of a
        // thread goes that way too (`courtesy_yield`): a reader looping on
        // get() would otherwise keep the GIL for a whole switch interval
        // (5 ms) each time the writer waited for its committer.
        let now = if courtesy_yield() {
            None
        } else {
            self.inner
                .try_now(|r| Some(r.get(dek_id, node_id16).map_err(CoreError::from)))
        };
        let row = match now {
            Some(row) => row.map_err(|e| e.into_py(py))?,
            None => self.read(py, |r| r.get(dek_id, node_id16))?,
        };
        Ok(row.map(PyRegistryRow))
    }

    /// Every row of the snapshot in key order (by `dek_id`, then
    /// `node_id16`), or only the rows of `dek_id`.
    ///
    /// A stored row that does not decode raises `RegistryCorruptionError`.
    #[pyo3(signature = (dek_id=None))]
    fn rows(&self, py: Python<'_>, dek_id: Option<U32>) -> PyResult<Vec<PyRegistryRow>> {
        self.rows_vec(py, dek_id.map(|d| d.value()))
    }

    /// The distinct DEK ids that have at least one row, ascending.
    fn dek_ids(&self, py: Python<'_>) -> PyResult<Vec<u32>> {
        self.read(py, |r| r.dek_ids())
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.read(py, |r| r.len())
    }

    /// The first `n` rows in key order (of one DEK if `dek_id` is given),
    /// reading no further: a quick look at a large registry.
    #[pyo3(signature = (n=10, dek_id=None))]
    fn head(&self, py: Python<'_>, n: usize, dek_id: Option<U32>) -> PyResult<Vec<PyRegistryRow>> {
        let dek_id = dek_id.map(|d| d.value());
        let rows = self.read(py, |r| r.head(n, dek_id))?;
        Ok(rows.into_iter().map(PyRegistryRow).collect())
    }

    /// Iterates over every row of the snapshot, in key order.
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let rows = self.rows_vec(py, None)?;
        Ok(rows.into_pyobject(py)?.try_iter()?.into_any())
    }

    /// `(dek_id, node_id16) in registry`.
    fn __contains__(&self, py: Python<'_>, key: (U32, U16)) -> PyResult<bool> {
        Ok(self.get(py, key.0, key.1)?.is_some())
    }

    /// Per-DEK row counts and epoch ranges, named after SPEC §3's fields:
    /// `{dek_id: {"rows", "min_first_seen_local_epoch",
    /// "max_first_seen_local_epoch", "min_last_seen_local_epoch",
    /// "max_last_seen_local_epoch"}}`.
    ///
    /// ```pycon
    /// >>> import tempfile
    /// >>> with tempfile.TemporaryDirectory() as d:
    /// ...     with ea.Applier(d) as a:
    /// ...         _ = a.apply_many([ea.Registration(1, 0xABCD0001, 2), ea.Registration(1, 0x2, 5),
    /// ...                           ea.Registration(1, 0x2, 7)])
    /// ...     with ea.Registry(d) as r:
    /// ...         r.stats()
    /// {1: {'rows': 2, 'min_first_seen_local_epoch': 2, 'max_first_seen_local_epoch': 5, 'min_last_seen_local_epoch': 2, 'max_last_seen_local_epoch': 7}}
    ///
    /// ```
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.read(py, |r| r.stats())?;
        let out = PyDict::new(py);
        for (dek_id, s) in stats.per_dek {
            let entry = PyDict::new(py);
            entry.set_item("rows", s.rows)?;
            entry.set_item("min_first_seen_local_epoch", s.min_first_seen_local_epoch)?;
            entry.set_item("max_first_seen_local_epoch", s.max_first_seen_local_epoch)?;
            entry.set_item("min_last_seen_local_epoch", s.min_last_seen_local_epoch)?;
            entry.set_item("max_last_seen_local_epoch", s.max_last_seen_local_epoch)?;
            out.set_item(dek_id, entry)?;
        }
        Ok(out)
    }

    /// SHA-256 hex of `key ‖ value` over every row in key order: equal
    /// digests mean byte-identical registries.
    fn digest(&self, py: Python<'_>) -> PyResult<String> {
        self.read(py, |r| r.digest())
    }

    /// Where this registry and `other` disagree, row by row.
    fn diff(&self, py: Python<'_>, other: PyRef<'_, PyRegistry>) -> PyResult<PyRegistryDiff> {
        // One view at a time: `other` may be this very view.
        let left = self.read(py, |r| r.rows(None))?;
        let right = other.read(py, |r| r.rows(None))?;
        Ok(PyRegistryDiff(crate::view::diff(&left, &right)))
    }

    /// The rows as five `array.array` columns (no object per row):
    /// `dek_id` ('I'), `node_id16` ('H'), `full_node_id` ('Q'),
    /// `first_seen_local_epoch` ('H'), `last_seen_local_epoch` ('H').
    #[pyo3(signature = (dek_id=None))]
    fn columns<'py>(&self, py: Python<'py>, dek_id: Option<U32>) -> PyResult<Bound<'py, PyDict>> {
        let dek_id = dek_id.map(|d| d.value());
        let c = self.read(py, |r| r.columns(dek_id))?;
        let out = PyDict::new(py);
        out.set_item("dek_id", array_of(py, "I", &c.dek_id)?)?;
        out.set_item("node_id16", array_of(py, "H", &c.node_id16)?)?;
        out.set_item("full_node_id", array_of(py, "Q", &c.full_node_id)?)?;
        out.set_item(
            "first_seen_local_epoch",
            array_of(py, "H", &c.first_seen_local_epoch)?,
        )?;
        out.set_item(
            "last_seen_local_epoch",
            array_of(py, "H", &c.last_seen_local_epoch)?,
        )?;
        Ok(out)
    }

    /// A pandas DataFrame, one row per registry row in key order, indexed
    /// by the registry key: a `MultiIndex` of `dek_id` (uint32) and
    /// `node_id16`; columns `full_node_id`, `first_seen_local_epoch` and
    /// `last_seen_local_epoch` (uint16). Node ids are shown one way only,
    /// as the command line, `export` and SPEC §6's messages show them:
    /// fixed-width hex strings (`"0x0001"`, `"0x00000000abcd0001"`, pandas'
    /// `string` dtype), never as decimals, which say nothing of the
    /// 16-bit prefix and which a 64-bit id loses when a tool reads it as a
    /// float. So `frame.loc[(1, "0x0001")]` is a row; `int(text, 16)` is
    /// the number, and `columns()` gives every field as numbers. Needs the
    /// `notebook` extra: `pip install encryption-applier[notebook]`.
    #[pyo3(signature = (dek_id=None))]
    fn to_pandas<'py>(
        slf: &Bound<'py, Self>,
        dek_id: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        REGISTRY_TO_PANDAS.get(slf.py())?.call1((slf, dek_id))
    }

    /// Releases this view's snapshot and its handle on the environment.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.inner.close(py)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        // None, not False: the exception (if any) propagates, and a type
        // checker knows a `with` block never swallows one.
        self.close(py)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let path = self.path.display().to_string();
        let summary = self.read(py, |r| {
            Ok((r.stats()?, r.head(REPR_ROWS, None)?, r.applied_index()?))
        });
        match summary {
            Ok((stats, head, applied)) => {
                let rows: u64 = stats.per_dek.iter().map(|(_, s)| s.rows).sum();
                let deks: Vec<u32> = stats.per_dek.iter().map(|(d, _)| *d).collect();
                let applied = applied.map_or("None".to_owned(), |i| i.to_string());
                // The sidecar where an applier keeps it by default.
                let sidecar = py.detach(|| {
                    match crate::sidecar::read(&self.path.join(crate::sidecar::SIDECAR_FILE)) {
                        Ok(Some(s)) => sidecar_summary(&s),
                        Ok(None) => "None".to_owned(),
                        Err(e) => format!("<keys.json unreadable: {}>", e.code()),
                    }
                });
                let mut out = format!(
                    "<Registry path={path:?} rows={rows} dek_ids={} applied_index={applied} \
                     sidecar={sidecar}",
                    preview_ids(&deks)
                );
                if !head.is_empty() {
                    out.push_str(&repr_table(&head, rows));
                }
                out.push('>');
                out
            }
            Err(_) if self.closed(py) => format!("<Registry path={path:?} closed>"),
            Err(e) => format!("<Registry path={path:?} unreadable: {e}>"),
        }
    }

    fn _repr_html_<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        REGISTRY_HTML.get(slf.py())?.call1((slf,))
    }
}

/// Rows and DEK ids a `Registry` repr shows before it cuts off.
const REPR_ROWS: usize = 5;
const REPR_DEK_IDS: usize = 8;

/// `[1, 2, 3]`, or the first few ids and how many more.
fn preview_ids(ids: &[u32]) -> String {
    let shown: Vec<String> = ids.iter().take(REPR_DEK_IDS).map(u32::to_string).collect();
    if ids.len() > REPR_DEK_IDS {
        format!(
            "[{}, ... {} more]",
            shown.join(", "),
            ids.len() - REPR_DEK_IDS
        )
    } else {
        format!("[{}]", shown.join(", "))
    }
}

/// The first rows as an indented table (node ids in hex, as the command
/// line shows them), and how many rows follow.
fn repr_table(head: &[RegistryRow], total: u64) -> String {
    let mut out = String::from(
        "\n  dek_id  node_id16        full_node_id  first_seen_local_epoch  last_seen_local_epoch",
    );
    for r in head {
        out.push_str(&format!(
            "\n  {:>6}  {:>9}  0x{:016x}  {:>22}  {:>21}",
            r.dek_id,
            format!("0x{:04x}", r.node_id16),
            r.full_node_id,
            r.first_seen_local_epoch,
            r.last_seen_local_epoch
        ));
    }
    let more = total.saturating_sub(head.len() as u64);
    if more > 0 {
        out.push_str(&format!(
            "\n  ... {more} more row{}",
            if more == 1 { "" } else { "s" }
        ));
    }
    out
}

/// Where two registries disagree (`Registry.diff`).
#[pyclass(module = "encryption_applier", name = "RegistryDiff", frozen)]
pub struct PyRegistryDiff(crate::view::RegistryDiff);

#[pymethods]
impl PyRegistryDiff {
    /// Rows whose key is only in the registry `diff` was called on.
    #[getter]
    fn only_in_self(&self) -> Vec<PyRegistryRow> {
        self.0
            .only_left
            .iter()
            .copied()
            .map(PyRegistryRow)
            .collect()
    }
    /// Rows whose key is only in the other registry.
    #[getter]
    fn only_in_other(&self) -> Vec<PyRegistryRow> {
        self.0
            .only_right
            .iter()
            .copied()
            .map(PyRegistryRow)
            .collect()
    }
    /// `(self_row, other_row)` pairs with the same key and different values.
    #[getter]
    fn changed(&self) -> Vec<(PyRegistryRow, PyRegistryRow)> {
        self.0
            .changed
            .iter()
            .map(|(l, r)| (PyRegistryRow(*l), PyRegistryRow(*r)))
            .collect()
    }
    fn __bool__(&self) -> bool {
        !self.0.is_empty()
    }
    fn __len__(&self) -> usize {
        self.0.only_left.len() + self.0.only_right.len() + self.0.changed.len()
    }
    /// A pandas DataFrame, one row per differing key, indexed as
    /// `Registry.to_pandas()` (`dek_id`, `node_id16` in hex): `status`
    /// ("only in self", "only in other" or "changed"), each value field for
    /// both sides (`<field>_self`, `<field>_other`; `<NA>` where a side has
    /// no row; `full_node_id` in hex, the epochs as nullable `UInt16`) and
    /// `differing`, the fields a changed row differs in.
    fn to_pandas<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        DIFF_TO_PANDAS.get(slf.py())?.call1((slf,))
    }

    fn _repr_html_<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        DIFF_HTML.get(slf.py())?.call1((slf,))
    }

    fn __repr__(&self) -> String {
        format!(
            "<RegistryDiff only_in_self={} only_in_other={} changed={}>",
            self.0.only_left.len(),
            self.0.only_right.len(),
            self.0.changed.len()
        )
    }
}
