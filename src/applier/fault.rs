//! Fault injection for crash-recovery tests: stop a bootstrap or rotation
//! at a chosen step, by failing as a storage fault would or by aborting
//! the process as a crash would. Armed only through [`set_fault`], which
//! the crate exposes under `applier::testing`, never as a method of the
//! applier.

use super::Applier;
use crate::error::ApplyError;
use crate::store::StorageError;

/// The points of a bootstrap or rotation where a test can stop it, to
/// prove that replaying the entry after a crash there converges.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    AfterUnwrap,
    AfterKeystoreInstall,
    AfterSidecarWrite,
    BeforeRegistryCommit,
    /// A cutover's proposer row is committed, the sidecar not yet written.
    AfterRegistryRows,
}

impl FaultPoint {
    pub fn from_name(name: &str) -> Option<FaultPoint> {
        match name {
            "after_unwrap" => Some(FaultPoint::AfterUnwrap),
            "after_keystore_install" => Some(FaultPoint::AfterKeystoreInstall),
            "after_sidecar_write" => Some(FaultPoint::AfterSidecarWrite),
            "before_registry_commit" => Some(FaultPoint::BeforeRegistryCommit),
            "after_registry_rows" => Some(FaultPoint::AfterRegistryRows),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FaultPoint::AfterUnwrap => "after_unwrap",
            FaultPoint::AfterKeystoreInstall => "after_keystore_install",
            FaultPoint::AfterSidecarWrite => "after_sidecar_write",
            FaultPoint::BeforeRegistryCommit => "before_registry_commit",
            FaultPoint::AfterRegistryRows => "after_registry_rows",
        }
    }
}

/// What an armed fault does: fail the apply as a storage fault would, or
/// abort the process on the spot, as a crash would.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    Fail,
    Abort,
}

/// Arms (or, with `None`, disarms) a fault on `applier` for the next
/// bootstrap or rotation.
pub fn set_fault(applier: &mut Applier, fault: Option<(FaultPoint, FaultAction)>) {
    applier.fault = fault;
}

impl Applier {
    pub(super) fn fault_at(&self, point: FaultPoint) -> Result<(), ApplyError> {
        match self.fault {
            Some((armed, action)) if armed == point => match action {
                FaultAction::Abort => std::process::abort(),
                FaultAction::Fail => Err(ApplyError::Storage(StorageError::new(
                    "an injected test fault",
                    self.env.path().to_path_buf(),
                    format!("stopped at {}", point.name()),
                    None,
                ))),
            },
            _ => Ok(()),
        }
    }
}

/// Drops what group commit staged and has not committed, as the death of
/// the process would (a kill loses exactly that: committed transactions
/// are in the page cache or on disk), so that closing the applier then
/// commits nothing. The applied index falls back to the durable one.
/// Refused for a pipelined applier, whose committer thread may be
/// writing a group at that moment (test in a child process instead).
pub fn discard_staged(applier: &mut Applier) -> Result<usize, &'static str> {
    if applier.pipe.is_some() {
        return Err(
            "a pipelined applier cannot drop its staged entries in process: kill a child process",
        );
    }
    let dropped = applier.staged();
    applier.pending = Default::default();
    applier.applied_index = applier.durable_index;
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{ApplierOptions, GroupCommit};
    use super::*;
    use crate::test_support::{fresh_path, reg};
    use crate::wire::Entry;

    #[test]
    fn discarding_staged_entries_leaves_the_committed_ones() {
        let dir = fresh_path("discard");
        let options = ApplierOptions {
            group_commit: Some(GroupCommit {
                max_entries: 100,
                max_delay: Duration::from_secs(3600),
            }),
            ..ApplierOptions::default()
        };
        let mut a = Applier::open_with(&dir, options.clone()).expect("open");
        a.apply_entry_at(&Entry::Registration(reg(1, 5, 1)), Some(1))
            .expect("staged");
        a.flush().expect("committed");
        for n in 2..5u64 {
            a.apply_entry_at(&Entry::Registration(reg(1, n, 1)), Some(n))
                .expect("staged");
        }
        assert_eq!((a.applied_index(), a.durable_index()), (Some(4), Some(1)));
        assert_eq!(discard_staged(&mut a), Ok(3));
        assert_eq!((a.applied_index(), a.staged()), (Some(1), 0));
        drop(a); // its final flush has nothing to commit
        let a = Applier::open_with(&dir, options).expect("reopen");
        assert_eq!(a.applied_index(), Some(1));
        assert_eq!(
            a.registry().expect("view").rows(None).expect("rows").len(),
            1
        );

        let pipelined = ApplierOptions {
            pipeline: Some(4),
            ..ApplierOptions::default()
        };
        let mut p = Applier::open_with(&fresh_path("discard-pipe"), pipelined).expect("open");
        assert!(discard_staged(&mut p).is_err());
    }
}
