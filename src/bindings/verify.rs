//! `verify()`, `PageDamage` and `VerifyReport`: the structural check of a
//! registry's `data.mdb` as Python objects (core in `crate::store`), also
//! behind `Registry.verify()`.

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::handle::run_detached;
use crate::store::verify::{Damage, VerifyReport, WalkOptions};
use crate::store::verify_path;

/// One problem found in `data.mdb`: an item of `VerifyReport.problems`.
#[pyclass(module = "encryption_applier", name = "PageDamage", frozen, eq)]
#[derive(PartialEq)]
pub struct PyPageDamage(Damage);

#[pymethods]
impl PyPageDamage {
    /// The page where it was found, or None when it is not one page's.
    #[getter]
    fn page(&self) -> Option<u64> {
        self.0.page
    }
    /// A stable code: "truncated", "meta", "db_flags", "page_number",
    /// "page_header", "node_bounds", "key_order", "tree_shape", "counts",
    /// "free_list", "row" or "io".
    #[getter]
    fn problem(&self) -> &'static str {
        self.0.kind.code()
    }
    /// What is wrong, in words.
    #[getter]
    fn detail(&self) -> &str {
        &self.0.detail
    }
    fn __str__(&self) -> String {
        self.0.to_string()
    }
    fn __repr__(&self) -> String {
        format!(
            "PageDamage(page={}, problem={:?}, detail={:?})",
            self.0.page.map_or("None".to_owned(), |p| p.to_string()),
            self.0.kind.code(),
            self.0.detail
        )
    }
}

/// What `verify()` found: the snapshot walked, the main database's shape,
/// and every problem (empty when the registry is sound).
///
/// Returned by `verify()` and `Registry.verify()`; truthy when `ok`.
#[pyclass(module = "encryption_applier", name = "VerifyReport", frozen, get_all)]
pub struct PyVerifyReport {
    /// The registry directory.
    path: PathBuf,
    /// The LMDB transaction id of the snapshot walked.
    txnid: u64,
    /// LMDB's page size in bytes, from the meta page.
    page_size: u32,
    /// Whole pages in data.mdb.
    file_pages: u64,
    /// The last page LMDB has allocated.
    last_page: u64,
    /// The depth of the main database's B-tree (0 when it is empty).
    depth: u16,
    /// Entries in the main database as its record says: the registry rows,
    /// plus one for the applied index once it is set.
    entries: u64,
    /// Branch (interior) pages of the main database.
    branch_pages: u64,
    /// Leaf pages of the main database.
    leaf_pages: u64,
    /// Overflow pages of the main database (values too large for a leaf).
    overflow_pages: u64,
    /// Pages on LMDB's free lists.
    free_pages: u64,
    /// Every `PageDamage` found, in the order found (at most
    /// `max_problems`); empty when the registry is sound.
    problems: Vec<Py<PyPageDamage>>,
    /// What is wrong but harmless (`ok` stays True): the meta page LMDB
    /// does not use, e.g. the one a failed meta write left half written,
    /// which the next commit overwrites.
    warnings: Vec<Py<PyPageDamage>>,
}

impl PyVerifyReport {
    pub(super) fn new(py: Python<'_>, path: PathBuf, report: VerifyReport) -> PyResult<Self> {
        Ok(PyVerifyReport {
            path,
            txnid: report.txnid,
            page_size: report.page_size,
            file_pages: report.file_pages,
            last_page: report.last_page,
            depth: report.depth,
            entries: report.entries,
            branch_pages: report.branch_pages,
            leaf_pages: report.leaf_pages,
            overflow_pages: report.overflow_pages,
            free_pages: report.free_pages,
            problems: report
                .problems
                .into_iter()
                .map(|d| Py::new(py, PyPageDamage(d)))
                .collect::<PyResult<_>>()?,
            warnings: report
                .warnings
                .into_iter()
                .map(|d| Py::new(py, PyPageDamage(d)))
                .collect::<PyResult<_>>()?,
        })
    }
}

#[pymethods]
impl PyVerifyReport {
    /// True when no problem was found.
    #[getter]
    fn ok(&self) -> bool {
        self.problems.is_empty()
    }
    fn __bool__(&self) -> bool {
        self.problems.is_empty()
    }
    fn __repr__(&self) -> String {
        format!(
            "<VerifyReport path={:?} txnid={} entries={} pages={}/{} problems={}{}>",
            self.path.display().to_string(),
            self.txnid,
            self.entries,
            self.file_pages,
            self.last_page + 1,
            self.problems.len(),
            if self.warnings.is_empty() {
                String::new()
            } else {
                format!(" warnings={}", self.warnings.len())
            }
        )
    }
}

pub(super) fn options(rows: bool, max_problems: usize) -> PyResult<WalkOptions> {
    if max_problems == 0 {
        return Err(PyValueError::new_err("max_problems must be at least 1"));
    }
    Ok(WalkOptions { max_problems, rows })
}

/// Checks the registry at `path` page by page without opening it for use,
/// so it also works on a registry too damaged to open. Never raises for
/// damage: it is in the report.
///
/// ```pycon
/// >>> import tempfile
/// >>> with tempfile.TemporaryDirectory() as d:
/// ...     with ea.Applier(d) as a:
/// ...         _ = a.apply(ea.Registration(1, 0xABCD0001, 1))
/// ...     report = ea.verify(d)
/// ...     report.ok, report.entries, report.problems
/// (True, 1, [])
///
/// ```
#[pyfunction]
#[pyo3(signature = (path, *, rows=true, max_problems=100))]
pub(super) fn verify(
    py: Python<'_>,
    path: PathBuf,
    rows: bool,
    max_problems: usize,
) -> PyResult<PyVerifyReport> {
    let options = options(rows, max_problems)?;
    let report = run_detached(py, || Ok(verify_path(&path, options)?))?;
    let path = path.canonicalize().unwrap_or(path);
    PyVerifyReport::new(py, path, report)
}
