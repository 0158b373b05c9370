//! `apply_many`: group commit. Each run of registrations is one write
//! transaction and one durable commit, with every registry key read once
//! and written once; bootstraps and rotations between runs go through the
//! one-by-one path. The result equals applying the entries one by one.

use std::sync::Arc;

use super::{is_map_full, Applier, MAX_GROWTHS};
use crate::error::ApplyError;
use crate::registry::{pack_key, RegistryRow};
use crate::rules::{decide, Decision, Outcome};
use crate::store::RegistryError;
use crate::wire::{Entry, MalformedPayload};

/// Why `apply_many` stopped: the entry at `position` halted (or, for a
/// storage fault on commit, the first entry whose transaction was lost).
/// Everything before `position` is committed; nothing from it on is.
#[derive(Debug)]
pub struct BatchHalt {
    pub position: usize,
    pub error: Box<ApplyError>,
    /// The outcomes of the entries before `position`.
    pub outcomes: Vec<Outcome>,
}

type Entries = [Result<Entry, MalformedPayload>];

/// A run's working memory, kept by the applier between calls: a 10k-entry
/// run's buffers are large enough for the allocator to hand them back to
/// the kernel when freed, and to fault them in again on the next call.
#[derive(Default)]
pub(super) struct RunBuffers {
    /// The distinct keys the run touches, packed and sorted.
    keys: Vec<u64>,
    /// Each key's row as read (or the error reading it), then as the run's
    /// rules left it.
    rows: Vec<Result<Option<RegistryRow>, RegistryError>>,
    /// Whether the rules changed the row at the same position.
    dirty: Vec<bool>,
}

impl std::fmt::Debug for RunBuffers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RunBuffers({} keys)", self.keys.capacity())
    }
}

/// Where the rules stopped in a run.
struct RunEnd {
    /// The first entry not applied by the run.
    position: usize,
    /// The highest Raft index the run applied.
    last_index: Option<u64>,
    /// The entry that halted, if one did.
    halt: Option<(usize, ApplyError)>,
}

/// The Raft index of each entry of a batch.
#[derive(Debug, Clone, Copy)]
pub enum Indexes<'a> {
    /// No indexes: nothing is skipped and no applied index is stored.
    None,
    /// Consecutive: entry `i` is `first + i`.
    From(u64),
    /// One per entry, strictly increasing (a log whose encryption entries
    /// are scattered among others).
    Each(&'a [u64]),
}

impl Indexes<'_> {
    /// The Raft index of entry `position`. `From(0)` is no indexes (0 is
    /// "no index", so consecutive indexes cannot start there), and a 0 in
    /// `Each` is no index for that entry (the Python layer refuses it).
    pub fn at(self, position: usize) -> Option<u64> {
        match self {
            Indexes::None | Indexes::From(super::NO_RAFT_INDEX) => None,
            Indexes::From(first) => Some(first.saturating_add(position as u64)),
            Indexes::Each(all) => super::raft_index(all.get(position).copied()),
        }
    }
}

impl Applier {
    /// Applies `entries` in order with group commit. Semantics equal
    /// applying the entries one by one: when entry `k` halts, entries
    /// before `k` are committed and nothing of `k` or later is written.
    /// With indexes, an entry at or below the applied index is skipped and
    /// the highest index applied is stored with the rows.
    pub fn apply_many(
        &mut self,
        entries: &Entries,
        indexes: Indexes<'_>,
    ) -> Result<Vec<Outcome>, BatchHalt> {
        let result = self.apply_many_unstamped(entries, indexes);
        self.clear_lost_if_caught_up();
        result.map_err(|halt| BatchHalt {
            error: Box::new(self.stamp(*halt.error)),
            ..halt
        })
    }

    fn apply_many_unstamped(
        &mut self,
        entries: &Entries,
        indexes: Indexes<'_>,
    ) -> Result<Vec<Outcome>, BatchHalt> {
        // Staged entries (group commit) come first: the runs below read and
        // commit the registry directly. Their loss is no entry of this
        // batch's: position 0, and the error's `replay_from` is before it.
        if let Err(error) = self.flush() {
            return Err(BatchHalt {
                position: 0,
                error: Box::new(error),
                outcomes: Vec::new(),
            });
        }
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut start = 0;
        loop {
            // After a lost group, entries past its highest index wait until
            // the ones before them in this batch have replayed up to it.
            let stop = self.lost_through.and_then(|lost| {
                (start..entries.len()).find(|&p| {
                    let index = indexes.at(p);
                    !self.is_applied(index) && index.is_some_and(|i| i > lost)
                })
            });
            let end = stop.unwrap_or(entries.len());
            outcomes = self.apply_span(&entries[..end], start, indexes, outcomes)?;
            self.clear_lost_if_caught_up();
            match (stop, self.lost_through) {
                (None, _) => return Ok(outcomes),
                (Some(position), Some(lost)) => {
                    let index = indexes.at(position).unwrap_or(lost);
                    return Err(BatchHalt {
                        position,
                        error: Box::new(self.lost_error(index, lost)),
                        outcomes,
                    });
                }
                (Some(position), None) => start = position,
            }
        }
    }

    /// Applies `entries[start..]`, appending to `outcomes`.
    fn apply_span(
        &mut self,
        entries: &Entries,
        start: usize,
        indexes: Indexes<'_>,
        mut outcomes: Vec<Outcome>,
    ) -> Result<Vec<Outcome>, BatchHalt> {
        let mut position = start;
        let mut growths = 0;
        while position < entries.len() {
            position = match self.apply_run(entries, position, indexes, &mut outcomes) {
                Ok(next) => next,
                // The run's transaction was lost to a full map: grow it and
                // apply the run again from its start.
                Err(halt)
                    if halt.position == position
                        && is_map_full(&halt.error)
                        && growths < MAX_GROWTHS =>
                {
                    if let Err(e) = self.env.grow() {
                        return Err(BatchHalt {
                            position,
                            error: Box::new(e.into()),
                            outcomes: halt.outcomes,
                        });
                    }
                    growths += 1;
                    outcomes = halt.outcomes;
                    continue;
                }
                Err(halt) => return Err(halt),
            };
            let Some(entry) = entries.get(position) else {
                break;
            };
            // A bootstrap or rotation: its own transaction and sidecar write.
            let result = match entry {
                Ok(entry) => self.apply_entry_at(entry, indexes.at(position)),
                Err(malformed) => Err(ApplyError::Malformed(malformed.clone())),
            };
            match result {
                Ok(outcome) => outcomes.push(outcome),
                Err(error) => {
                    return Err(BatchHalt {
                        position,
                        error: Box::new(error),
                        outcomes,
                    })
                }
            }
            position += 1;
        }
        Ok(outcomes)
    }

    /// Applies registrations (and skips applied indexes) from `start` in
    /// one transaction, up to the end or the first bootstrap/rotation, whose
    /// position it returns.
    ///
    /// Each key the run touches is read once and written once, both in key
    /// order (LMDB then stays on the same leaf page for neighbouring keys),
    /// and the four-case rules run in entry order over those rows in
    /// memory. Reads all see the state before the run plus the run's own
    /// earlier writes, and a read that failed is only reported by the first
    /// entry that needs that row: exactly what one-by-one apply would see.
    fn apply_run(
        &mut self,
        entries: &Entries,
        start: usize,
        indexes: Indexes<'_>,
        outcomes: &mut Vec<Outcome>,
    ) -> Result<usize, BatchHalt> {
        let lost = |error: ApplyError, outcomes: &mut Vec<Outcome>| {
            outcomes.truncate(start);
            BatchHalt {
                position: start,
                error: Box::new(error),
                outcomes: std::mem::take(outcomes),
            }
        };
        // 1. The run's extent and the distinct keys it touches.
        let mut buffers = std::mem::take(&mut self.run_buffers);
        let end = self.run_extent(entries, start, indexes, &mut buffers.keys);
        let result = self.apply_run_in(entries, start, end, indexes, outcomes, &mut buffers);
        self.run_buffers = buffers;
        result.map_err(|error| lost(error, outcomes))?
    }

    /// Steps 2 to 4 of [`Applier::apply_run`] over the keys in `buffers`.
    /// An error is the run's transaction lost; a halt inside the run is
    /// the inner result, after the entries before it are committed.
    fn apply_run_in(
        &mut self,
        entries: &Entries,
        start: usize,
        end: usize,
        indexes: Indexes<'_>,
        outcomes: &mut Vec<Outcome>,
        buffers: &mut RunBuffers,
    ) -> Result<Result<usize, BatchHalt>, ApplyError> {
        let env = Arc::clone(&self.env);
        let mut txn = env.begin_write()?;
        // 2. Read every key once, in key order.
        txn.get_rows_in_key_order(&buffers.keys, &mut buffers.rows)?;
        buffers.dirty.clear();
        buffers.dirty.resize(buffers.keys.len(), false);
        // 3. The rules, in entry order, over the rows in memory.
        let run = self.decide_run(entries, start, end, indexes, buffers, outcomes);

        // 4. Write what changed, in key order, and commit with the index.
        let dirty = buffers
            .rows
            .iter()
            .zip(&buffers.dirty)
            .filter(|(_, &dirty)| dirty)
            .filter_map(|(row, _)| match row {
                Ok(Some(row)) => Some(row),
                _ => None,
            });
        let wrote = txn.put_rows_in_key_order(dirty)?;
        self.finish(txn, wrote, run.last_index)?;
        Ok(match run.halt {
            Some((position, error)) => Err(BatchHalt {
                position,
                error: Box::new(error),
                outcomes: std::mem::take(outcomes),
            }),
            None => Ok(run.position),
        })
    }

    /// Where the run from `start` ends (the first bootstrap, rotation or
    /// malformed entry not yet applied, or the end); `keys` gets the
    /// sorted, distinct packed keys of its registrations.
    fn run_extent(
        &self,
        entries: &Entries,
        start: usize,
        indexes: Indexes<'_>,
        keys: &mut Vec<u64>,
    ) -> usize {
        keys.clear();
        let mut end = start;
        while let Some(entry) = entries.get(end) {
            if !self.is_applied(indexes.at(end)) {
                match entry {
                    Ok(Entry::Registration(reg)) => {
                        keys.push(pack_key(reg.dek_id, reg.node_id16()))
                    }
                    _ => break,
                }
            }
            end += 1;
        }
        keys.sort_unstable();
        keys.dedup();
        end
    }

    /// Runs the four-case rules over `entries[start..end]` against the
    /// rows in `buffers`, pushing each entry's outcome and marking the rows
    /// it changed. Stops at the first halt; a malformed entry right after
    /// the run halts there too.
    fn decide_run(
        &self,
        entries: &Entries,
        start: usize,
        end: usize,
        indexes: Indexes<'_>,
        buffers: &mut RunBuffers,
        outcomes: &mut Vec<Outcome>,
    ) -> RunEnd {
        let mut run = RunEnd {
            position: start,
            last_index: None,
            halt: None,
        };
        while run.position < end {
            let index = indexes.at(run.position);
            if self.is_applied(index) {
                outcomes.push(Outcome::Skipped);
                run.position += 1;
                continue;
            }
            let Some(Ok(Entry::Registration(reg))) = entries.get(run.position) else {
                break;
            };
            let (dek_id, node_id16) = (reg.dek_id, reg.node_id16());
            let Some(i) = buffers
                .keys
                .binary_search(&pack_key(dek_id, node_id16))
                .ok()
            else {
                break;
            };
            let (Some(row), Some(dirty)) = (buffers.rows.get_mut(i), buffers.dirty.get_mut(i))
            else {
                break;
            };
            let current = match &*row {
                Ok(row) => row.as_ref(),
                Err(e) => {
                    run.halt = Some((run.position, ApplyError::from(e.clone())));
                    return run;
                }
            };
            match decide(current, reg) {
                Ok(Decision::Unchanged) => outcomes.push(Outcome::Unchanged),
                Ok(Decision::Write(value, outcome)) => {
                    *row = Ok(Some(value.row(dek_id, node_id16)));
                    *dirty = true;
                    outcomes.push(outcome);
                }
                Err(e) => {
                    run.halt = Some((run.position, e));
                    return run;
                }
            }
            if index.is_some() {
                run.last_index = index;
            }
            run.position += 1;
        }
        if run.position == end && !self.is_applied(indexes.at(end)) {
            if let Some(Err(malformed)) = entries.get(end) {
                run.halt = Some((end, ApplyError::Malformed(malformed.clone())));
            }
        }
        run
    }
}
