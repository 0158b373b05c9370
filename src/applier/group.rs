//! Write-behind group commit (opt-in): registrations are decided one by
//! one, exactly as without it, against the committed rows plus the rows
//! staged since the last commit, and staged in memory; one LMDB
//! transaction then commits the staged rows with the applied index every
//! `max_entries` entries, when the oldest staged entry is `max_delay` old
//! (a timer calls [`Applier::flush_if_due`]), on [`Applier::flush`], on
//! close, before a bootstrap or rotation, and before a halt is raised. A
//! Raft host's log is already durable, so it does not need an fsync per
//! entry: it needs rows and index committed together, and to know up to
//! where that happened ([`Applier::durable_index`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{is_map_full, Applier, MAX_GROWTHS};
use crate::error::ApplyError;
use crate::registry::RegistryRow;
use crate::rules::{decide, Decision, Outcome};
use crate::store::{Aftermath, Snapshot};
use crate::wire::Registration;

/// When staged entries are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommit {
    /// Commit once this many entries are staged (at least 1).
    pub max_entries: usize,
    /// Commit once the oldest staged entry is this old (by the timer).
    pub max_delay: Duration,
}

/// What was applied but not yet committed.
#[derive(Debug, Default)]
pub(super) struct Pending {
    rows: BTreeMap<(u32, u16), RegistryRow>,
    /// The highest index staged.
    index: Option<u64>,
    entries: usize,
    since: Option<Instant>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

impl Applier {
    /// Stages one registration (group mode). Its outcome is final; its
    /// rows and index reach the disk with the next commit.
    pub(super) fn stage_grouped(
        &mut self,
        reg: &Registration,
        index: Option<u64>,
        group: GroupCommit,
    ) -> Result<Outcome, ApplyError> {
        let key = (reg.dek_id, reg.node_id16());
        let existing = match self.pending.rows.get(&key) {
            Some(row) => Some(*row),
            None => Snapshot::begin(Arc::clone(&self.env))?.get_row(key.0, key.1)?,
        };
        let decision = match decide(existing.as_ref(), reg) {
            Ok(decision) => decision,
            Err(halt) => {
                // The registry at a halt is the one-by-one registry up to
                // the entry before it.
                self.flush()?;
                return Err(halt);
            }
        };
        let outcome = match decision {
            Decision::Write(value, outcome) => {
                self.pending.rows.insert(key, value.row(key.0, key.1));
                outcome
            }
            Decision::Unchanged => Outcome::Unchanged,
        };
        self.pending.entries += 1;
        self.pending.since.get_or_insert_with(Instant::now);
        if index.is_some() {
            self.pending.index = index;
            self.applied_index = index;
        }
        if self.pending.entries >= group.max_entries {
            self.flush()?;
        }
        Ok(outcome)
    }

    /// Commits what is staged, rows and applied index in one transaction.
    /// On failure nothing staged is kept: the applied index falls back to
    /// the durable one, from which the host replays (the error's
    /// `replay_from`), and until it has replayed up to the highest index
    /// lost, an entry past that index is refused.
    pub fn flush(&mut self) -> Result<(), ApplyError> {
        if self.pipe.is_some() {
            let result = self.drain();
            return self.stamped(result);
        }
        let result = self.flush_staged();
        self.stamped(result)
    }

    fn flush_staged(&mut self) -> Result<(), ApplyError> {
        self.take_failure()?;
        if self.pending.is_empty() {
            return Ok(());
        }
        // From here the staged entries are either committed or gone, and
        // every exit below leaves the in-memory indexes saying which.
        let pending = std::mem::take(&mut self.pending);
        match self.commit_pending(&pending) {
            Ok(()) => {
                if pending.index.is_some() {
                    self.durable_index = pending.index;
                }
                Ok(())
            }
            Err(mut e) => {
                self.applied_index = self.durable_index;
                if let Some(lost) = pending.index {
                    self.lost_through = Some(self.lost_through.map_or(lost, |l| l.max(lost)));
                }
                if let ApplyError::Storage(s) = &mut e {
                    s.aftermath.push(Aftermath::StagedNotCommitted {
                        entries: pending.entries,
                        through_index: pending.index,
                    });
                }
                Err(e)
            }
        }
    }

    /// One transaction with every staged row and the highest staged index,
    /// growing the map when it is full.
    fn commit_pending(&mut self, pending: &Pending) -> Result<(), ApplyError> {
        let mut growths = 0;
        loop {
            let result = (|| -> Result<(), ApplyError> {
                let env = Arc::clone(&self.env);
                let mut txn = env.begin_write()?;
                txn.put_rows_in_key_order(pending.rows.values())?;
                if let Some(index) = pending.index {
                    txn.put_applied_index(index)?;
                }
                txn.commit()?;
                Ok(())
            })();
            match result {
                Err(e) if is_map_full(&e) && growths < MAX_GROWTHS => {
                    self.env.grow()?;
                    growths += 1;
                }
                other => return other,
            }
        }
    }

    /// Flushes if the oldest staged entry is older than the group's delay
    /// (what the timer calls). A failure is kept and raised by the next
    /// call of the host (apply, flush or close), which must learn that the
    /// applied index fell back to the durable one.
    pub fn flush_if_due(&mut self) {
        let due = match (self.group, self.pending.since) {
            (Some(group), Some(since)) => since.elapsed() >= group.max_delay,
            _ => false,
        };
        if due {
            if let Err(e) = self.flush() {
                // Stamped with the replay index already: nothing commits
                // before the host's next call raises it.
                self.failed = Some(e);
            }
        }
    }

    /// Raises a timer commit's failure, once.
    pub(super) fn take_failure(&mut self) -> Result<(), ApplyError> {
        match self.failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The highest Raft index whose entry is committed (with `sync=True`,
    /// on disk). Without group commit it is the applied index.
    pub fn durable_index(&self) -> Option<u64> {
        self.pipeline_durable().unwrap_or(self.durable_index)
    }

    /// How many applied entries wait for a commit.
    pub fn staged(&self) -> usize {
        self.pipeline_staged().unwrap_or(self.pending.entries)
    }

    pub fn group_commit(&self) -> Option<GroupCommit> {
        self.group
    }
}
