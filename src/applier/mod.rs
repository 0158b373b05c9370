//! Applying encryption entries to the writer registry (SPEC §4, §5).
//!
//! The rules are pure functions in [`crate::rules`]; the [`Applier`] feeds
//! them the stored state and wraps each entry in one write transaction of
//! the store. Any error drops the transaction (an abort), so a halted entry
//! leaves the registry byte-for-byte as it was.
//!
//! - `mod.rs`: opening, dispatch, the Raft applied index, map growth;
//! - `keys.rs`: bootstrap and rotation, and the crash order every keyed
//!   entry commits in (registry rows, then keys.json, then the index);
//! - `cutover.rs`: envelope cutovers (sub-tags 0x04/0x05, SPEC §7) and the
//!   host's `on_raft_cutover` hook;
//! - `keyring.rs`: the KEK, keystore and sidecar an applier holds;
//! - `batch.rs`: `apply_many` over runs of registrations;
//! - `group.rs`: write-behind group commit (`group_commit=`);
//! - `pipeline/`: pipelined write-behind (`pipelined=True`), a committer
//!   thread that the caller never waits for;
//! - `row_cache.rs`: the pipelined caller's cache of the newest row of
//!   each key, bounded;
//! - `resync.rs`: a follower's resync of keys.json from the Raft log;
//! - `fault.rs`: the crash-test hook, reachable only through [`testing`];
//! - `tests.rs`: the applier's unit tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{ApplierOpenError, ApplyError};
use crate::kek::{KekBackend, SharedKek};
use crate::keystore::Keystore;
use crate::rules::{decide, Decision, Outcome};
use crate::sidecar::{self, Sidecar};
use crate::sidecar::{SidecarError, SidecarProblem};
use crate::store::{
    open_env_sized, open_error, recreate_if_uncommitted, OpenMode, RegistryEnv, StorageError,
    WriteTxn, WriterLock, DEFAULT_MAP_SIZE,
};
use crate::view::Registry;
use crate::wire::{Entry, Registration};

mod batch;
mod cutover;
mod fault;
mod group;
mod keyring;
mod keys;
mod pipeline;
mod resync;
mod row_cache;
#[cfg(test)]
mod tests;

pub use batch::{BatchHalt, Indexes};
pub use cutover::RaftCutoverHook;
pub use fault::{FaultAction, FaultPoint};
pub use group::GroupCommit;
use keyring::Keyring;
pub use pipeline::{DurableWait, PipelineCounters, Waited, DEFAULT_PIPELINE_ENTRIES};
pub use resync::{EpochRaise, Replayed, ResyncError, ResyncLog, SidecarResync};

/// Entry points for tests of crash recovery. Not part of the applier's
/// API: a production host never arms a fault.
#[doc(hidden)]
pub mod testing {
    pub use super::fault::{discard_staged, set_fault};
    pub use super::fault::{FaultAction, FaultPoint};
}

/// The one writer of a registry directory.
#[derive(Debug)]
pub struct Applier {
    env: Arc<RegistryEnv>,
    _lock: WriterLock,
    keyring: Option<Keyring>,
    fault: Option<(FaultPoint, FaultAction)>,
    /// The highest Raft index applied. This applier is the only writer, so
    /// it is the one on disk, or (group commit) the highest staged.
    applied_index: Option<u64>,
    /// The highest Raft index committed with its rows.
    durable_index: Option<u64>,
    /// Write-behind group commit, when opted in.
    group: Option<GroupCommit>,
    pending: group::Pending,
    /// Pipelined write-behind, when opted in.
    pipe: Option<pipeline::Pipeline>,
    /// A timer commit that failed, raised by the next call.
    failed: Option<ApplyError>,
    /// The highest Raft index of staged entries a failed commit lost. Until
    /// the host has applied up to it again, an entry past it is refused:
    /// committing it would record an applied index over rows never written.
    lost_through: Option<u64>,
    /// Told when a dropped applier's final commit fails.
    drop_report: Option<DropReport>,
    /// `apply_many`'s working memory, reused from call to call.
    run_buffers: batch::RunBuffers,
}

/// Where a dropped [`Applier`] reports a final commit that failed (the
/// error carries `replay_from`). Without one it is written to stderr: a
/// lost entry is never silent.
pub struct DropReport(pub Box<dyn FnOnce(ApplyError) + Send>);

impl std::fmt::Debug for DropReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DropReport")
    }
}

impl Drop for Applier {
    fn drop(&mut self) {
        // `close()` flushes first and raises a failure; a dropped applier
        // reports it the way an unclosed file does, to whoever asked.
        if self.pipe.is_some() && self.env.check_process("").is_err() {
            return; // a forked child: the pipeline is the parent's
        }
        if let Err(e) = self.flush() {
            match self.drop_report.take() {
                Some(report) => (report.0)(e),
                None => eprintln!(
                    "encryption-applier: an Applier of {} was dropped and its final commit \
                     failed: {e}",
                    self.env.path().display()
                ),
            }
        }
    }
}

/// How to open an [`Applier`].
#[derive(Debug, Clone)]
pub struct ApplierOptions {
    /// Needed for bootstrap and rotation; without it they halt. Any
    /// [`KekBackend`]: the file KEK, a KMS, a host's own.
    pub kek: Option<SharedKek>,
    /// The sidecar path; `keys.json` in the registry directory by default.
    pub sidecar: Option<PathBuf>,
    /// `true`: every commit survives power loss. `false`: see
    /// [`RegistryEnv::set_durable`].
    pub durable: bool,
    /// The map size to start from when the environment is new to this
    /// process. The map doubles by itself whenever it fills up.
    pub map_size: usize,
    /// Told of the Raft envelope cutover (needs `kek`).
    pub on_raft_cutover: Option<RaftCutoverHook>,
    /// Write-behind group commit (see `group.rs`); `None`: every apply commits.
    pub group_commit: Option<GroupCommit>,
    /// Pipelined write-behind (see `pipeline.rs`) with at most this many
    /// entries per group; takes precedence over `group_commit`.
    pub pipeline: Option<usize>,
    /// This node's pinned local epochs (see `sidecar::prepare_epochs`),
    /// recorded on storage and Raft keys it rotates to.
    pub local_epoch: u16,
    pub raft_local_epoch: u16,
    /// Re-create a registry whose creation no commit ever completed
    /// ([`crate::store::verify::never_committed`]) instead of refusing it.
    pub recreate_uncommitted: bool,
}

impl Default for ApplierOptions {
    fn default() -> Self {
        ApplierOptions {
            kek: None,
            sidecar: None,
            durable: true,
            map_size: DEFAULT_MAP_SIZE,
            on_raft_cutover: None,
            group_commit: None,
            pipeline: None,
            local_epoch: 0,
            raft_local_epoch: 0,
            recreate_uncommitted: false,
        }
    }
}

/// Whether an error is LMDB's "map full": the entry can be retried after
/// the map grows, since nothing of it was committed.
fn is_map_full(error: &ApplyError) -> bool {
    matches!(error, ApplyError::Storage(s) if s.is_map_full())
}

/// Enough doublings to reach any map size a 64-bit address space allows.
const MAX_GROWTHS: usize = 48;

/// Raft index 0 means "no index" (elastickv applier.go:876-902): an entry
/// given index 0 is applied as one given none. It is never recorded as the
/// applied index and never skipped.
pub const NO_RAFT_INDEX: u64 = 0;

/// `index` as the applier understands it: `None` for no index or index 0.
pub fn raft_index(index: Option<u64>) -> Option<u64> {
    index.filter(|&i| i != NO_RAFT_INDEX)
}

impl Applier {
    /// Opens the registry at `path`, creating the directory and the LMDB
    /// environment when missing, and takes the directory's writer lock.
    /// Without a KEK, bootstrap and rotation entries halt.
    pub fn open(path: &Path) -> Result<Applier, ApplierOpenError> {
        Applier::open_with(path, ApplierOptions::default())
    }

    pub fn open_with(path: &Path, options: ApplierOptions) -> Result<Applier, ApplierOpenError> {
        if options.recreate_uncommitted && path.is_dir() {
            // Under the writer lock, so no other writer is opening it meanwhile.
            let _lock = WriterLock::acquire(path)?;
            recreate_if_uncommitted(path)?;
        }
        let mut applier = Applier::open_plain(path, options.map_size)?;
        applier.group = options.group_commit.map(|g| GroupCommit {
            max_entries: g.max_entries.max(1),
            ..g
        });
        applier
            .set_durable(options.durable)
            .map_err(ApplyError::from)?;
        if let Some(max_entries) = options.pipeline {
            applier.group = None;
            let pipe = pipeline::Pipeline::start(
                Arc::clone(&applier.env),
                applier.durable_index,
                max_entries,
            )
            .map_err(|e| {
                ApplyError::Storage(StorageError::new(
                    "starting the committer thread",
                    applier.env.path().to_path_buf(),
                    e.to_string(),
                    e.raw_os_error(),
                ))
            })?;
            applier.pipe = Some(pipe);
        }
        if let Some(kek) = options.kek {
            // Resolved once, here: a relative path must not follow the
            // process's working directory, or a chdir would start a second
            // sidecar and let a second bootstrap through.
            let sidecar_path = match options.sidecar {
                Some(p) => std::path::absolute(&p).map_err(|e| {
                    SidecarError::new(&p, SidecarProblem::CannotResolvePath(e.to_string()))
                })?,
                None => applier.env.path().join(sidecar::SIDECAR_FILE),
            };
            applier.keyring = Some(Keyring::open(
                kek,
                sidecar_path,
                options.on_raft_cutover,
                (options.local_epoch, options.raft_local_epoch),
            )?);
        }
        Ok(applier)
    }

    fn open_plain(path: &Path, map_size: usize) -> Result<Applier, ApplierOpenError> {
        let env = open_env_sized(path, OpenMode::Create, map_size)?;
        if env.is_read_only() {
            return Err(open_error(
                path,
                "the registry is open read-only in this process (the directory was not \
                 writable when a Registry view opened it)",
            )
            .into());
        }
        let lock = WriterLock::acquire(env.path())?;
        let applied_index = env.read_applied_index().map_err(ApplyError::from)?;
        env.set_durable(true).map_err(ApplyError::from)?;
        Ok(Applier {
            env,
            _lock: lock,
            keyring: None,
            fault: None,
            applied_index,
            durable_index: applied_index,
            group: None,
            pending: group::Pending::default(),
            pipe: None,
            failed: None,
            lost_through: None,
            drop_report: None,
            run_buffers: batch::RunBuffers::default(),
        })
    }

    /// Opens the registry with a KEK. The sidecar defaults to `keys.json`
    /// in the registry directory; every key an existing sidecar lists is
    /// opened now, so a restarted applier carries on where it stopped.
    pub fn open_with_kek(
        path: &Path,
        kek: SharedKek,
        sidecar_path: Option<&Path>,
    ) -> Result<Applier, ApplierOpenError> {
        Applier::open_with(
            path,
            ApplierOptions {
                kek: Some(kek),
                sidecar: sidecar_path.map(Path::to_path_buf),
                ..ApplierOptions::default()
            },
        )
    }

    pub fn path(&self) -> &Path {
        self.env.path()
    }

    pub fn has_kek(&self) -> bool {
        self.keyring.is_some()
    }

    pub fn kek(&self) -> Option<&dyn KekBackend> {
        self.keyring.as_ref().map(|c| &*c.kek)
    }

    pub fn keystore(&self) -> Option<&Keystore> {
        self.keyring.as_ref().map(|c| &c.keystore)
    }

    pub fn sidecar_path(&self) -> Option<&Path> {
        self.keyring.as_ref().map(|c| c.sidecar_path.as_path())
    }

    /// The sidecar as it is on disk now (`None` without a KEK or a file).
    pub fn sidecar(&self) -> Result<Option<Sidecar>, SidecarError> {
        match &self.keyring {
            Some(c) => sidecar::read(&c.sidecar_path),
            None => Ok(None),
        }
    }

    /// `sync=True` (the default) or `False`; see [`RegistryEnv::set_durable`].
    pub fn set_durable(&mut self, durable: bool) -> Result<(), StorageError> {
        self.env.set_durable(durable)
    }

    /// The highest Raft index applied through this registry, if any.
    pub fn applied_index(&self) -> Option<u64> {
        self.applied_index
    }

    /// Whether the entry at `index` was applied already (and so would be skipped).
    pub fn is_applied(&self, index: Option<u64>) -> bool {
        matches!((raft_index(index), self.applied_index), (Some(i), Some(done)) if i <= done)
    }

    /// Records `index` in `txn` and commits when there is anything to
    /// commit; the applied index moves only once the commit returned.
    /// With nothing to commit, dropping `txn` aborts it.
    fn finish(
        &mut self,
        mut txn: WriteTxn<'_>,
        wrote: bool,
        index: Option<u64>,
    ) -> Result<(), ApplyError> {
        if let Some(index) = index {
            txn.put_applied_index(index)?;
        }
        if wrote || index.is_some() {
            txn.commit()?;
            if index.is_some() {
                self.applied_index = index;
                self.durable_index = index;
                self.note_durable(index);
            }
        }
        Ok(())
    }

    pub fn apply_registration(&mut self, reg: &Registration) -> Result<Outcome, ApplyError> {
        self.apply_entry_at(&Entry::Registration(*reg), None)
    }

    fn apply_registration_at(
        &mut self,
        reg: &Registration,
        index: Option<u64>,
    ) -> Result<Outcome, ApplyError> {
        let env = Arc::clone(&self.env);
        let mut txn = env.begin_write()?;
        let outcome = stage_registration(&mut txn, reg)?;
        self.finish(txn, outcome.is_some(), index)?;
        Ok(outcome.unwrap_or(Outcome::Unchanged))
    }

    pub fn apply_entry(&mut self, entry: &Entry) -> Result<Outcome, ApplyError> {
        self.apply_entry_at(entry, None)
    }

    /// Where a dropped applier reports a final commit that failed.
    pub fn set_drop_report(&mut self, report: DropReport) {
        self.drop_report = Some(report);
    }

    /// A storage fault leaving the applier, stamped with the index the
    /// host replays from; a caught-up replay ends the refusal of entries
    /// past a lost group.
    fn stamped<T>(&mut self, result: Result<T, ApplyError>) -> Result<T, ApplyError> {
        self.clear_lost_if_caught_up();
        result.map_err(|e| self.stamp(e))
    }

    fn stamp(&self, mut error: ApplyError) -> ApplyError {
        if let ApplyError::Storage(s) = &mut error {
            s.replay_from = self.replay_from();
        }
        error
    }

    /// Where the host replays from after a storage fault: the entry after
    /// the durable index (`None`: the log's first entry).
    pub fn replay_from(&self) -> Option<u64> {
        self.durable_index.map(|d| d.saturating_add(1))
    }

    fn clear_lost_if_caught_up(&mut self) {
        if let (Some(applied), Some(lost)) = (self.applied_index, self.lost_through) {
            if applied >= lost {
                self.lost_through = None;
            }
        }
    }

    /// Refuses the entry at `index` while staged entries up to a higher
    /// index, lost by a failed commit, have not been applied again.
    fn check_not_past_lost(&self, index: Option<u64>) -> Result<(), ApplyError> {
        match (self.lost_through, index) {
            (Some(lost), Some(i)) if i > lost => Err(self.lost_error(i, lost)),
            _ => Ok(()),
        }
    }

    fn lost_error(&self, index: u64, lost: u64) -> ApplyError {
        let from = self
            .replay_from()
            .map_or("the log's first entry".to_owned(), |i| format!("index {i}"));
        ApplyError::Storage(StorageError::new(
            "applying past entries a failed commit lost",
            self.env.path().to_path_buf(),
            format!(
                "the entry at Raft index {index} comes after staged entries up to index {lost} \
                 that a failed commit did not write; nothing was applied: replay from {from} first"
            ),
            None,
        ))
    }

    /// Applies `entry` as the Raft log entry at `index` (when given): an
    /// index at or below the applied index is skipped unexamined, and the
    /// index is recorded in the same transaction as the entry's rows.
    pub fn apply_entry_at(
        &mut self,
        entry: &Entry,
        index: Option<u64>,
    ) -> Result<Outcome, ApplyError> {
        let result = self.apply_entry_unstamped(entry, index);
        self.stamped(result)
    }

    fn apply_entry_unstamped(
        &mut self,
        entry: &Entry,
        index: Option<u64>,
    ) -> Result<Outcome, ApplyError> {
        self.take_failure()?;
        let index = raft_index(index);
        if self.is_applied(index) {
            return Ok(Outcome::Skipped);
        }
        self.check_not_past_lost(index)?;
        if self.pipe.is_some() {
            match entry {
                Entry::Registration(reg) => {
                    if let Some(outcome) =
                        self.stage_pipelined(reg, index, pipeline::Wait::Allowed)?
                    {
                        return Ok(outcome);
                    }
                }
                // Keyed entries keep their crash order: everything staged
                // is committed first, then they commit on this thread.
                _ => self.drain()?,
            }
        }
        if let Some(group) = self.group {
            match entry {
                Entry::Registration(reg) => return self.stage_grouped(reg, index, group),
                // Sidecar and keystore changes are not staged: commit what
                // is, then apply these one by one.
                _ => self.flush()?,
            }
        }
        let mut growths = 0;
        loop {
            let result = match entry {
                Entry::Registration(reg) => self.apply_registration_at(reg, index),
                Entry::Bootstrap(b) => self.apply_bootstrap_at(b, index),
                Entry::Rotation(r) => self.apply_rotation_at(r, index),
            };
            // A full map aborted the transaction: nothing of the entry was
            // committed (and every step is idempotent), so grow and retry.
            match result {
                Err(e) if is_map_full(&e) && growths < MAX_GROWTHS => {
                    self.env.grow()?;
                    growths += 1;
                }
                other => return other,
            }
        }
    }

    /// Decodes `opcode ‖ payload` and applies it.
    pub fn apply(&mut self, entry: &[u8]) -> Result<Outcome, ApplyError> {
        self.apply_at(entry, None)
    }

    /// Like [`Applier::apply_entry_at`] for bytes; a skipped index is not
    /// even decoded.
    pub fn apply_at(&mut self, entry: &[u8], index: Option<u64>) -> Result<Outcome, ApplyError> {
        if let Err(e) = self.take_failure() {
            return self.stamped(Err(e));
        }
        if self.is_applied(index) {
            return Ok(Outcome::Skipped);
        }
        self.apply_entry_at(&Entry::decode(entry)?, index)
    }

    /// A read-only view of the registry as committed now, sharing this
    /// applier's environment.
    pub fn registry(&self) -> Result<Registry, StorageError> {
        Registry::pinned(Arc::clone(&self.env))
    }
}

/// A registry read and, when the rules call for it, a write inside `txn`.
/// Returns the outcome when it wrote.
fn stage_registration(
    txn: &mut WriteTxn<'_>,
    reg: &Registration,
) -> Result<Option<Outcome>, ApplyError> {
    let existing = txn.get_row(reg.dek_id, reg.node_id16())?;
    match decide(existing.as_ref(), reg)? {
        Decision::Unchanged => Ok(None),
        Decision::Write(value, outcome) => {
            txn.put_row(&value.row(reg.dek_id, reg.node_id16()))?;
            Ok(Some(outcome))
        }
    }
}
