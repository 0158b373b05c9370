//! The read-only `Registry` view: one pinned snapshot of a registry, with
//! the reads and summaries (stats, digest, columns) built on a scan; the
//! summaries themselves are [`summary`].

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use crate::error::{ApplierOpenError, ApplyError};
use crate::nodeid::{check_join, WriterUint16Collision};
use crate::registry::{dek_prefix, RegistryRow, REGISTRY_PREFIX};
use crate::store::verify::{VerifyReport, WalkOptions};
use crate::store::{open_env, OpenMode, RegistryEnv, RegistryError, Snapshot, StorageError};
use crate::wire::{node_id16, Registration};

pub mod summary;

pub use summary::{diff, Columns, DekStats, Digest, RegistryDiff, Stats};

/// A read-only view of a registry, pinned to one consistent snapshot
/// (taken when it opens, moved by [`Registry::refresh`]). Another process,
/// or this one's applier, may be writing meanwhile; the view sees none of
/// it until refreshed. A pinned snapshot keeps LMDB from reusing the pages
/// it references, so views are meant to be refreshed or dropped.
#[derive(Debug)]
pub struct Registry {
    snapshot: Snapshot,
}

impl Registry {
    pub fn open(path: &Path) -> Result<Registry, ApplierOpenError> {
        let env = open_env(path, OpenMode::Existing)?;
        Ok(Registry::pinned(env).map_err(ApplyError::from)?)
    }

    /// A view of `env` as committed now.
    pub fn pinned(env: Arc<RegistryEnv>) -> Result<Registry, StorageError> {
        Ok(Registry {
            snapshot: Snapshot::begin(env)?,
        })
    }

    /// Another view of the same registry, as committed now; this one stays
    /// on its snapshot.
    pub fn fresh(&self) -> Result<Registry, StorageError> {
        Registry::pinned(Arc::clone(self.snapshot.env()))
    }

    /// Walks every page of the registry's newest committed state (not only
    /// this view's snapshot) and, with `options.rows`, decodes every row.
    pub fn verify(&self, options: WalkOptions) -> Result<VerifyReport, StorageError> {
        self.snapshot.env().verify(options)
    }

    /// elastickv's pre-join check against this snapshot: the rows a node
    /// with `full_node_id` must register before it joins (storage DEK, then
    /// Raft DEK unless 0), or the collision that forbids the join.
    pub fn check_join(
        &self,
        full_node_id: u64,
        storage_dek_id: u32,
        raft_dek_id: u32,
    ) -> Result<Result<Vec<Registration>, WriterUint16Collision>, RegistryError> {
        // Before bootstrap there is nothing to register (as Go).
        if storage_dek_id == 0 {
            return Ok(Ok(Vec::new()));
        }
        let mut deks = Vec::with_capacity(2);
        for dek_id in [storage_dek_id, raft_dek_id] {
            if dek_id == 0 {
                continue;
            }
            let row = self.get(dek_id, node_id16(full_node_id))?;
            deks.push((dek_id, row.map(|r| r.full_node_id)));
        }
        Ok(check_join(full_node_id, &deks))
    }

    pub fn path(&self) -> &Path {
        self.snapshot.env().path()
    }

    /// The highest Raft index applied, as of this view's snapshot.
    pub fn applied_index(&self) -> Result<Option<u64>, RegistryError> {
        self.snapshot.applied_index()
    }

    /// Moves the view to the newest committed state.
    pub fn refresh(&mut self) -> Result<(), RegistryError> {
        Ok(self.snapshot.refresh()?)
    }

    pub fn get(&self, dek_id: u32, node_id16: u16) -> Result<Option<RegistryRow>, RegistryError> {
        self.snapshot.get_row(dek_id, node_id16)
    }

    /// Calls `f` on every row (or those of one DEK) in key order.
    pub fn scan(
        &self,
        dek_id: Option<u32>,
        mut f: impl FnMut(RegistryRow),
    ) -> Result<(), RegistryError> {
        self.scan_until(dek_id, |row| {
            f(row);
            ControlFlow::Continue(())
        })
    }

    /// [`Self::scan`], stopping early when `f` returns `Break`.
    fn scan_until(
        &self,
        dek_id: Option<u32>,
        f: impl FnMut(RegistryRow) -> ControlFlow<()>,
    ) -> Result<(), RegistryError> {
        match dek_id {
            Some(id) => self.snapshot.scan(&dek_prefix(id), f),
            None => self.snapshot.scan(REGISTRY_PREFIX, f),
        }
    }

    /// The first `n` rows in key order (or of one DEK), reading no further.
    pub fn head(&self, n: usize, dek_id: Option<u32>) -> Result<Vec<RegistryRow>, RegistryError> {
        let mut rows = Vec::with_capacity(n.min(1024));
        if n > 0 {
            self.scan_until(dek_id, |row| {
                rows.push(row);
                if rows.len() >= n {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })?;
        }
        Ok(rows)
    }

    /// Every row in key order, or those of one DEK.
    pub fn rows(&self, dek_id: Option<u32>) -> Result<Vec<RegistryRow>, RegistryError> {
        let mut rows = Vec::new();
        self.scan(dek_id, |row| rows.push(row))?;
        Ok(rows)
    }

    /// The number of rows, from LMDB's entry count (no scan): constant
    /// time on any size. A corrupt row counts; reading it raises.
    pub fn len(&self) -> Result<usize, RegistryError> {
        self.snapshot.count_rows()
    }

    pub fn is_empty(&self) -> Result<bool, RegistryError> {
        Ok(self.len()? == 0)
    }

    /// The distinct DEK ids that have at least one row, ascending.
    pub fn dek_ids(&self) -> Result<Vec<u32>, RegistryError> {
        Ok(self
            .stats()?
            .per_dek
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    pub fn stats(&self) -> Result<Stats, RegistryError> {
        let mut stats = Stats::default();
        self.scan(None, |row| stats.add(&row))?;
        Ok(stats)
    }

    /// SHA-256 hex of `key ‖ value` over every row in key order.
    pub fn digest(&self) -> Result<String, RegistryError> {
        let mut digest = Digest::default();
        self.scan(None, |row| digest.add(&row))?;
        Ok(digest.hex())
    }

    pub fn columns(&self, dek_id: Option<u32>) -> Result<Columns, RegistryError> {
        let mut columns = Columns::default();
        self.scan(dek_id, |row| columns.push(&row))?;
        Ok(columns)
    }
}

/// The start-up guards read this node's row and the applied index here.
impl crate::startup::RegistryLookup for Registry {
    fn row(&self, dek_id: u32, node_id16: u16) -> Result<Option<RegistryRow>, RegistryError> {
        self.get(dek_id, node_id16)
    }
    fn applied_index(&self) -> Result<Option<u64>, RegistryError> {
        Registry::applied_index(self)
    }
}
