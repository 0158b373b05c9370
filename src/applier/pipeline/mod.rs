//! Pipelined write-behind (`pipelined=True`): group commit that the disk
//! does not gate. Registrations are decided one by one on the caller's
//! thread, exactly as without it, against the newest row of their key:
//! from the caller's row cache (`row_cache.rs`: every row it read or
//! decided, which includes every row staged or in flight), else from the
//! store (one reused read snapshot, renewed at most once per commit, not
//! one read transaction per entry). Staging appends the row to the group;
//! the committer puts each group in key order, off the caller's thread.
//! A committer thread of its own begins and commits each group's LMDB
//! write transaction (write transactions belong to the thread that began
//! them): it takes whatever is staged the moment the previous commit
//! returned, so groups grow with the fsync latency and the caller never
//! waits for it, except when `max_entries` are staged while a group is
//! still in flight (backpressure, the memory bound).
//!
//! The loss window: at most `max_entries` entries staged and one group (of
//! at most `max_entries`) in flight. A failed commit loses the group in
//! flight and everything staged after it: the host's next call raises the
//! `StorageError` (with the count and the highest index lost), the applied
//! index falls back to the durable one, and entries past the lost ones are
//! refused until the host has replayed them (the replay rule).
//!
//! Keyed entries, batches, resyncs and close first drain the pipeline
//! ([`Applier::flush`]) and then commit on the caller's thread, as before,
//! so the crash order of a keyed entry is unchanged. Map growth needs no
//! transaction open in the process: the committer drops the caller's
//! snapshot (under the state lock, so none is begun meanwhile) and grows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::row_cache::RowCache;
use super::{Applier, MAX_GROWTHS};
use crate::error::ApplyError;
use crate::fsutil::lock;
use crate::registry::RegistryRow;
use crate::rules::{decide, Decision, Outcome};
use crate::store::{Aftermath, RegistryEnv, Snapshot, StorageError};
use crate::wire::Registration;

/// The group size the Python layer uses when `pipelined=True` comes alone.
///
/// The caller stays ungated only while `K` entries take longer to stage
/// (about 0.15 µs each) than one commit takes (two flushes, 0.3–1.4 ms on
/// the disks measured): at 1024 the disk sets the pace once a commit
/// takes more than about 0.15 ms, at 8192 once it takes more than 1.2 ms. The loss window
/// (2K entries) stays a few milliseconds of replay from the Raft log.
pub const DEFAULT_PIPELINE_ENTRIES: usize = 8192;

/// Rows and the highest index of a run of entries. `rows` are in the
/// order they were decided (a key may come more than once; the later row
/// wins): the committer sorts them.
#[derive(Debug, Default)]
struct Group {
    rows: Vec<RegistryRow>,
    index: Option<u64>,
    entries: usize,
}

/// A commit of the committer that failed, until the caller's next call.
#[derive(Debug)]
struct Failure {
    error: StorageError,
    entries: usize,
    through_index: Option<u64>,
}

/// What the caller's thread and the committer share.
#[derive(Debug, Default)]
struct State {
    staged: Group,
    in_flight: Option<Arc<Group>>,
    durable: Option<u64>,
    /// Commits finished (or failed); a snapshot older than this misses rows.
    generation: u64,
    failed: Option<Failure>,
    /// The caller's reused read snapshot, and the generation it was taken at.
    snapshot: Option<(Snapshot, u64)>,
    committer_idle: bool,
    shutdown: bool,
    counters: PipelineCounters,
}

/// Debug counts of the caller's side (`_native.test_support`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PipelineCounters {
    /// Registrations staged or decided.
    pub lookups: u64,
    /// Lookups that reached the store (missed the row cache, which holds
    /// every staged and in-flight row).
    pub store_lookups: u64,
    /// Lookups answered by the row cache.
    pub cache_hits: u64,
    /// Read transactions begun or renewed for them.
    pub snapshots: u64,
    /// Groups committed.
    pub commits: u64,
    /// Entries in the groups committed.
    pub committed_entries: u64,
    /// Time the committer spent committing them (sorting, writing,
    /// syncing), in microseconds: per entry, the floor of the pipelined
    /// rate when the caller is faster than the disk.
    pub commit_micros: u64,
    /// 1 while a failure the committer recorded waits for a call to take
    /// it, else 0.
    pub failure_pending: u64,
    /// Calls that must not wait and found the state lock still held by the
    /// committer after the bounded spin ([`LOCK_SPIN`]): each one gives the
    /// GIL up in the binding.
    pub lock_busy: u64,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Caller -> committer: something is staged (or shut down).
    work: Condvar,
    /// Committer -> callers and waiters: a commit finished or failed.
    done: Condvar,
    env: Arc<RegistryEnv>,
    /// [`PipelineCounters::lock_busy`], counted without the lock.
    lock_busy: AtomicU64,
}

/// The pipeline an [`Applier`] in pipelined mode owns.
#[derive(Debug)]
pub(super) struct Pipeline {
    shared: Arc<Shared>,
    committer: Option<JoinHandle<()>>,
    max_entries: usize,
    /// The caller's side only: no lock.
    cache: RowCache,
}

/// What [`Pipeline::stage`] did.
enum Staged {
    Done(Outcome, Option<u64>),
    /// It would have to wait and must not; nothing was changed.
    WouldWait,
    /// A commit failed: the caller absorbs it.
    Failed,
    /// The entry halts (nothing was staged).
    Halt(ApplyError),
}

/// Whether the caller may wait (without the GIL) or must not (the GIL held).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    Allowed,
    Never,
}

/// What [`DurableWait::wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    Durable,
    NotYet,
    /// A commit failed: the applier's next call raises it.
    Failed,
}

/// Waits for the committer of a pipelined applier without holding the
/// applier (other threads keep applying meanwhile).
#[derive(Debug, Clone)]
pub struct DurableWait(Arc<Shared>);

impl DurableWait {
    /// Waits until `index` is durable, a commit fails, or `timeout` passes.
    pub fn wait(&self, index: u64, timeout: Option<Duration>) -> Waited {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = lock(&self.0.state);
        loop {
            if st.failed.is_some() {
                return Waited::Failed;
            }
            if st.durable.is_some_and(|d| d >= index) {
                return Waited::Durable;
            }
            let wait_for = match deadline {
                None => Duration::from_secs(3600),
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return Waited::NotYet,
                },
            };
            st = self
                .0
                .done
                .wait_timeout(st, wait_for)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Pipeline {
    pub(super) fn start(
        env: Arc<RegistryEnv>,
        durable: Option<u64>,
        max_entries: usize,
    ) -> std::io::Result<Pipeline> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                durable,
                ..State::default()
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            env,
            lock_busy: AtomicU64::new(0),
        });
        let theirs = Arc::clone(&shared);
        let committer = std::thread::Builder::new()
            .name("ea-committer".into())
            .spawn(move || commit_loop(&theirs))?;
        let max_entries = max_entries.max(1);
        Ok(Pipeline {
            shared,
            committer: Some(committer),
            max_entries,
            cache: RowCache::for_group(max_entries),
        })
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if self.shared.env.check_process("").is_err() {
            // A forked child: the committer thread is the parent's and does
            // not exist here, and its lock may be held forever.
            std::mem::forget(self.committer.take());
            std::mem::forget(Arc::clone(&self.shared));
            return;
        }
        lock(&self.shared.state).shutdown = true;
        self.shared.work.notify_all();
        if let Some(thread) = self.committer.take() {
            let _ = thread.join();
        }
    }
}

/// The committer: commits each staged group in its own write transaction.
fn commit_loop(shared: &Shared) {
    let (mut order, mut sorted) = (Vec::new(), Vec::new());
    let mut st = lock(&shared.state);
    loop {
        while st.staged.entries == 0 || st.failed.is_some() {
            if st.shutdown {
                return;
            }
            st.committer_idle = true;
            st = shared.work.wait(st).unwrap_or_else(|p| p.into_inner());
            st.committer_idle = false;
        }
        let group = Arc::new(std::mem::take(&mut st.staged));
        st.in_flight = Some(Arc::clone(&group));
        drop(st);
        let started = Instant::now();
        in_key_order(&group.rows, &mut order, &mut sorted);
        let result = commit_group(shared, &sorted, group.index);
        let took = started.elapsed();
        st = lock(&shared.state);
        match result {
            Ok(()) => {
                if group.index.is_some() {
                    st.durable = group.index;
                }
                st.counters.commits += 1;
                st.counters.committed_entries += group.entries as u64;
                st.counters.commit_micros += took.as_micros() as u64;
            }
            Err(error) => {
                st.failed = Some(Failure {
                    error,
                    entries: group.entries,
                    through_index: group.index,
                });
            }
        }
        st.generation += 1;
        st.in_flight = None;
        shared.done.notify_all();
    }
}

/// `rows` (in the order decided) into `sorted`: in key order, the last
/// row of each key only. Sorts (key, position) pairs, which is cheaper
/// than a stable sort of the rows.
fn in_key_order(
    rows: &[RegistryRow],
    order: &mut Vec<(u64, usize)>,
    sorted: &mut Vec<RegistryRow>,
) {
    order.clear();
    order.extend(rows.iter().enumerate().map(|(i, r)| (r.packed_key(), i)));
    order.sort_unstable();
    sorted.clear();
    for (n, &(key, position)) in order.iter().enumerate() {
        // Of the positions of one key, the last is the latest row.
        if order.get(n + 1).is_none_or(|&(next, _)| next != key) {
            sorted.push(rows[position]);
        }
    }
}

/// One write transaction with the group's rows and index, growing the map
/// when it is full.
fn commit_group(
    shared: &Shared,
    rows: &[RegistryRow],
    index: Option<u64>,
) -> Result<(), StorageError> {
    let env = &shared.env;
    let mut growths = 0;
    loop {
        let result = (|| {
            let mut txn = env.begin_write()?;
            txn.put_rows_in_key_order(rows)?;
            if let Some(index) = index {
                txn.put_applied_index(index)?;
            }
            txn.commit()
        })();
        match result {
            Err(e) if e.is_map_full() && growths < MAX_GROWTHS => {
                // No transaction of this process may be open: the caller's
                // snapshot goes, and none is begun while the lock is held.
                let mut st = lock(&shared.state);
                st.snapshot = None;
                env.grow()?;
                drop(st);
                growths += 1;
            }
            other => return other,
        }
    }
}

/// How long a call that must not wait retries the state lock before it
/// gives up (and the binding gives the GIL up to wait for it).
///
/// The committer holds the lock only to take a group and to record a
/// commit, well under a microsecond, and it is woken at exactly the moment
/// the caller is staging the next entries: a plain try-lock met it about
/// once per commit. Each miss costs the caller the GIL, and a thread of
/// Python code that takes it meanwhile keeps it for the interpreter's
/// switch interval (5 ms), the time of ~40 000 staged entries. A spin this
/// short is not a wait: the holder never needs the GIL, and a holder that
/// was preempted or is growing the map is given up on.
const LOCK_SPIN: Duration = Duration::from_micros(20);

/// The state lock, or `None` when it is busy and the caller must not wait.
fn state_lock(shared: &Shared, wait: Wait) -> Option<MutexGuard<'_, State>> {
    let try_once = || match shared.state.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    };
    match wait {
        Wait::Allowed => Some(lock(&shared.state)),
        Wait::Never => try_once().or_else(|| {
            let started = Instant::now();
            while started.elapsed() < LOCK_SPIN {
                for _ in 0..32 {
                    std::hint::spin_loop();
                }
                if let Some(guard) = try_once() {
                    return Some(guard);
                }
            }
            shared.lock_busy.fetch_add(1, Ordering::Relaxed);
            None
        }),
    }
}

impl Pipeline {
    /// Decides `reg` against the newest row of its key and stages what it
    /// writes; the caller's indexes are left to [`Applier::stage_pipelined`].
    fn stage(
        &mut self,
        reg: &Registration,
        index: Option<u64>,
        wait: Wait,
    ) -> Result<Staged, ApplyError> {
        let shared = &*self.shared;
        let Some(mut st) = state_lock(shared, wait) else {
            return Ok(Staged::WouldWait);
        };
        loop {
            if st.failed.is_some() {
                return Ok(Staged::Failed);
            }
            if st.staged.entries < self.max_entries {
                break;
            }
            // Backpressure: a full group waits for the one in flight.
            if wait == Wait::Never {
                return Ok(Staged::WouldWait);
            }
            if st.committer_idle {
                shared.work.notify_one();
            }
            st = shared.done.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        let key = crate::registry::pack_key(reg.dek_id, reg.node_id16());
        let cached = self.cache.get(key);
        let existing = match cached {
            Some(row) => {
                st.counters.cache_hits += 1;
                Some(row)
            }
            None => {
                // Not staged nor in flight (the cache holds those): the
                // store has the newest row, in a snapshot taken after the
                // last commit.
                let generation = st.generation;
                let fresh = matches!(&st.snapshot, Some((_, g)) if *g == generation);
                if !fresh {
                    // Beginning or renewing takes the environment's gate.
                    if wait == Wait::Never {
                        return Ok(Staged::WouldWait);
                    }
                    let renewed = match st.snapshot.take() {
                        Some((mut snap, _)) => snap.refresh().map(|()| snap),
                        None => Snapshot::begin(Arc::clone(&shared.env)),
                    }?;
                    st.snapshot = Some((renewed, generation));
                    st.counters.snapshots += 1;
                }
                st.counters.store_lookups += 1;
                match &st.snapshot {
                    Some((snap, _)) => snap.get_row(reg.dek_id, reg.node_id16())?,
                    None => None,
                }
            }
        };
        st.counters.lookups += 1;
        let decision = match decide(existing.as_ref(), reg) {
            Ok(decision) => decision,
            Err(halt) => return Ok(Staged::Halt(halt)),
        };
        let outcome = match decision {
            Decision::Write(value, outcome) => {
                let row = value.row(reg.dek_id, reg.node_id16());
                st.staged.rows.push(row);
                remember(&mut self.cache, &st, key, row, cached.is_some());
                outcome
            }
            Decision::Unchanged => {
                if let (None, Some(row)) = (cached, existing) {
                    remember(&mut self.cache, &st, key, row, false);
                }
                Outcome::Unchanged
            }
        };
        st.staged.entries += 1;
        if index.is_some() {
            st.staged.index = index;
        }
        if st.committer_idle {
            shared.work.notify_one();
        }
        Ok(Staged::Done(outcome, st.durable))
    }
}

/// Puts `row` in the cache; a key it lacks first empties a full cache,
/// keeping every row not yet committed (in flight, then staged).
fn remember(cache: &mut RowCache, st: &State, key: u64, row: RegistryRow, cached: bool) {
    if !cached && cache.is_full() {
        let in_flight = st.in_flight.iter().flat_map(|g| g.rows.iter());
        cache.refill(in_flight.chain(st.staged.rows.iter()));
    }
    cache.insert(key, row);
}

impl Applier {
    fn pipeline(&self) -> Option<&Pipeline> {
        self.pipe.as_ref()
    }

    /// Stages one registration (pipelined mode). `Ok(None)`: it would have
    /// to wait and `wait` is [`Wait::Never`]; nothing was changed.
    pub(super) fn stage_pipelined(
        &mut self,
        reg: &Registration,
        index: Option<u64>,
        wait: Wait,
    ) -> Result<Option<Outcome>, ApplyError> {
        self.env.check_process("staging an entry")?;
        let Some(pipe) = self.pipe.as_mut() else {
            return Ok(None);
        };
        match pipe.stage(reg, index, wait)? {
            Staged::Done(outcome, durable) => {
                self.durable_index = durable;
                if index.is_some() {
                    self.applied_index = index;
                }
                Ok(Some(outcome))
            }
            Staged::WouldWait => Ok(None),
            // Taking the failure drops the staged snapshot, which takes the
            // environment's gate: not on the path that must never wait.
            Staged::Failed if wait == Wait::Never => Ok(None),
            Staged::Failed => {
                let shared = Arc::clone(&pipe.shared);
                let Some(mut st) = state_lock(&shared, wait) else {
                    return Ok(None);
                };
                Err(self.absorb_failure(&mut st))
            }
            Staged::Halt(halt) => {
                if wait == Wait::Never {
                    return Ok(None);
                }
                // The registry at a halt is the one-by-one registry up to
                // the entry before it.
                self.drain()?;
                Err(halt)
            }
        }
    }

    /// Takes a committer's failure: what was staged after the lost group is
    /// lost too, the applied index falls back to the durable one, and
    /// entries past the highest lost index are refused until replayed.
    fn absorb_failure(&mut self, st: &mut State) -> ApplyError {
        let Some(failure) = st.failed.take() else {
            return ApplyError::Storage(StorageError::new(
                "committing a group",
                self.env.path().to_path_buf(),
                "no failure was recorded",
                None,
            ));
        };
        let staged = std::mem::take(&mut st.staged);
        let entries = failure.entries + staged.entries;
        let through_index = staged.index.max(failure.through_index);
        st.snapshot = None;
        // It holds rows the failed commit lost.
        if let Some(pipe) = self.pipe.as_mut() {
            pipe.cache.clear();
        }
        self.durable_index = st.durable;
        self.applied_index = self.durable_index;
        if let Some(lost) = through_index {
            self.lost_through = Some(self.lost_through.map_or(lost, |l| l.max(lost)));
        }
        let mut error = failure.error;
        error.aftermath.push(Aftermath::StagedNotCommitted {
            entries,
            through_index,
        });
        ApplyError::Storage(error)
    }

    /// Waits until everything staged is committed (or a commit failed, which
    /// is raised), and drops the caller's snapshot and row cache: what
    /// follows commits on this thread, and may need to grow the map.
    pub(super) fn drain(&mut self) -> Result<(), ApplyError> {
        let Some(pipe) = self.pipe.as_ref() else {
            return Ok(());
        };
        self.env.check_process("committing staged entries")?;
        let shared = Arc::clone(&pipe.shared);
        let mut st = lock(&shared.state);
        loop {
            if st.failed.is_some() {
                return Err(self.absorb_failure(&mut st));
            }
            if st.staged.entries == 0 && st.in_flight.is_none() {
                break;
            }
            if st.committer_idle {
                shared.work.notify_one();
            }
            st = shared.done.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        self.durable_index = st.durable;
        st.snapshot = None;
        drop(st);
        // What follows may write rows on this thread, which the cache would
        // not see.
        if let Some(pipe) = self.pipe.as_mut() {
            pipe.cache.clear();
        }
        Ok(())
    }

    /// A handle to wait for durability without holding this applier
    /// (pipelined mode only).
    pub fn durable_wait(&self) -> Option<DurableWait> {
        self.pipeline().map(|p| DurableWait(Arc::clone(&p.shared)))
    }

    /// The durable index, as the committer has made it so far.
    pub(super) fn pipeline_durable(&self) -> Option<Option<u64>> {
        self.pipeline().map(|p| lock(&p.shared.state).durable)
    }

    /// Entries applied and not yet committed: staged plus in flight.
    pub(super) fn pipeline_staged(&self) -> Option<usize> {
        self.pipeline().map(|p| {
            let st = lock(&p.shared.state);
            st.staged.entries + st.in_flight.as_ref().map_or(0, |g| g.entries)
        })
    }

    /// The entries per group (pipelined mode), or `None`.
    pub fn pipelined(&self) -> Option<usize> {
        self.pipeline().map(|p| p.max_entries)
    }

    /// Debug counts of the pipeline (tests).
    pub fn pipeline_counters(&self) -> Option<PipelineCounters> {
        self.pipeline().map(|p| {
            let st = lock(&p.shared.state);
            PipelineCounters {
                failure_pending: u64::from(st.failed.is_some()),
                lock_busy: p.shared.lock_busy.load(Ordering::Relaxed),
                ..st.counters
            }
        })
    }

    /// Applies a registration without waiting for any lock or commit (the
    /// caller holds the GIL): `None` when it would have to wait, and
    /// nothing was changed; the caller then goes the waiting way.
    pub fn try_apply_registration_now(
        &mut self,
        reg: &Registration,
        index: Option<u64>,
    ) -> Option<Result<Outcome, ApplyError>> {
        let pipe = self.pipe.as_ref()?;
        // A failure the committer recorded first moves the applied index
        // back (taking it may wait: the waiting way), so that an entry the
        // failed group lost is not answered "skipped".
        if state_lock(&pipe.shared, Wait::Never)?.failed.is_some() {
            return None;
        }
        let index = super::raft_index(index);
        if self.is_applied(index) {
            return Some(Ok(Outcome::Skipped));
        }
        if let Err(e) = self.check_not_past_lost(index) {
            return Some(self.stamped(Err(e)));
        }
        match self.stage_pipelined(reg, index, Wait::Never) {
            Ok(None) => None,
            Ok(Some(outcome)) => Some(self.stamped(Ok(outcome))),
            Err(e) => Some(self.stamped(Err(e))),
        }
    }
}

impl Applier {
    /// Takes a failure the committer recorded and no call has taken yet,
    /// as this call's error: the applied index falls back to the durable
    /// one first, so an entry the failed group lost is never answered
    /// "skipped" (nor counted applied) in between. Not pipelined, or no
    /// failure: `Ok`.
    pub fn take_pipeline_failure(&mut self) -> Result<(), ApplyError> {
        let Some(pipe) = self.pipe.as_ref() else {
            return Ok(());
        };
        let shared = Arc::clone(&pipe.shared);
        let mut st = lock(&shared.state);
        if st.failed.is_none() {
            return Ok(());
        }
        let error = self.absorb_failure(&mut st);
        drop(st);
        self.stamped(Err(error))
    }

    /// A commit on the caller's thread (a keyed entry, a batch, after a
    /// drain) made `index` durable: the committer's count follows.
    pub(super) fn note_durable(&mut self, index: Option<u64>) {
        if let (Some(pipe), Some(_)) = (self.pipe.as_ref(), index) {
            lock(&pipe.shared.state).durable = index;
        }
    }
}

#[cfg(test)]
mod tests;
