//! The reopen cache: a process remembers the clean walks it made, keyed on
//! what identifies the bytes walked, so that opening the same unchanged
//! file again skips the walk (the meta pages are still read and checked
//! against LMDB's view at every open).
//!
//! The key is the file as `fstat` shows it — device, inode, size, and
//! modification and change times in nanoseconds — with the transaction id
//! of the snapshot walked. What this trusts: that the file's bytes do not
//! change while all of that stays the same. The kernel sets the change
//! time (`ctime`) to the current time on every write, truncation,
//! `utime` or rename of the inode, and nobody can set it back short of
//! changing the system clock; a new file at a reused inode number gets a
//! new ctime too. Two holes remain, and both are closed here:
//!
//! - timestamps are coarse (a clock tick, or a second on some file
//!   systems), so a write in the same tick as the last one can leave them
//!   as they were: a verdict is kept only for a file whose times are both
//!   at least [`AT_REST`] old when it is looked at, so any later write
//!   gets a later time;
//! - the file can change during the walk: it is looked at again after the
//!   walk, and a verdict is kept only if nothing moved.
//!
//! What it does not defend against (and the first open in a new process,
//! or `verify()`, which always walks, does): changes that bypass the
//! kernel's timestamps — a device or filesystem that returns other bytes
//! for the same file (media errors, corruption below the file system),
//! writes to the block device itself, writes through a shared writable
//! map to pages already dirty (which LMDB never makes here: the package
//! does not open with `MDB_WRITEMAP`, and another program's legitimate
//! commit changes the transaction id anyway), or the system clock set back.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::report::VerifyReport;
use crate::fsutil::lock;

/// How long a file must have been left unwritten for its verdict to be
/// kept: more than a timestamp tick (a nanosecond to a second on the file
/// systems LMDB is used on) plus the lag of the kernel's coarse clock.
pub(super) const AT_REST: Duration = Duration::from_secs(2);

/// Verdicts kept per process (the oldest goes first).
const KEPT: usize = 64;

/// A file as `fstat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileState {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl FileState {
    pub(super) fn of(file: &File) -> std::io::Result<FileState> {
        let m = file.metadata()?;
        let ns = |secs: i64, nsec: i64| i128::from(secs) * 1_000_000_000 + i128::from(nsec);
        Ok(FileState {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        })
    }

    /// Whether both times are at least [`AT_REST`] before `now`.
    fn at_rest(&self, now: SystemTime) -> bool {
        let Ok(now) = now.duration_since(UNIX_EPOCH) else {
            return false;
        };
        let limit = now.as_nanos() as i128 - AT_REST.as_nanos() as i128;
        self.mtime_ns <= limit && self.ctime_ns <= limit
    }
}

struct Verdict {
    state: FileState,
    txnid: u64,
    report: VerifyReport,
}

static VERDICTS: Mutex<Vec<Verdict>> = Mutex::new(Vec::new());

/// The report of a clean walk of snapshot `txnid` of the file in `state`,
/// if this process made one.
pub(super) fn known(state: &FileState, txnid: u64) -> Option<VerifyReport> {
    lock(&VERDICTS)
        .iter()
        .find(|v| v.state == *state && v.txnid == txnid)
        .map(|v| v.report.clone())
}

/// Keeps the verdict of a walk of snapshot `txnid` that found nothing,
/// between an `fstat` showing `before` (taken after `now`) and one showing
/// `after`: only when both show the same file, at rest at `now`. Replaces
/// any verdict on the same inode.
pub(super) fn remember(
    before: &FileState,
    after: &FileState,
    now: SystemTime,
    txnid: u64,
    report: &VerifyReport,
) {
    if !report.is_ok() || before != after || !before.at_rest(now) {
        return;
    }
    let mut verdicts = lock(&VERDICTS);
    verdicts.retain(|v| (v.state.dev, v.state.ino) != (before.dev, before.ino));
    if verdicts.len() >= KEPT {
        verdicts.remove(0);
    }
    verdicts.push(Verdict {
        state: *before,
        txnid,
        report: report.clone(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(ino: u64) -> FileState {
        FileState {
            dev: 0x801,
            ino,
            size: 8 * 4096,
            mtime_ns: 1_700_000_000_000_000_000,
            ctime_ns: 1_700_000_000_500_000_000,
        }
    }

    fn clean() -> VerifyReport {
        VerifyReport {
            txnid: 7,
            ..VerifyReport::default()
        }
    }

    /// Far enough past the times of `state` for the file to be at rest.
    fn later() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_100)
    }

    #[test]
    fn a_verdict_holds_only_for_the_same_file_state_and_snapshot() {
        let kept = state(9_000_001);
        remember(&kept, &kept, later(), 7, &clean());
        assert_eq!(known(&kept, 7), Some(clean()));
        // Each part of the key, changed alone, misses.
        type Change = fn(&mut FileState);
        let changes: [(&str, Change); 5] = [
            ("device", |s| s.dev += 1),
            ("inode", |s| s.ino += 1),
            ("size", |s| s.size += 4096),
            ("mtime", |s| s.mtime_ns += 1),
            ("ctime", |s| s.ctime_ns += 1),
        ];
        for (name, change) in changes {
            let mut other = kept;
            change(&mut other);
            assert_eq!(known(&other, 7), None, "{name}");
        }
        assert_eq!(known(&kept, 8), None, "transaction id");
    }

    #[test]
    fn no_verdict_is_kept_from_a_damaged_walk_a_moving_file_or_a_fresh_write() {
        let kept = state(9_000_002);
        let damaged = VerifyReport {
            problems: vec![crate::store::verify::damage(
                Some(3),
                crate::store::verify::DamageKind::PageHeader,
                "x",
            )],
            ..clean()
        };
        remember(&kept, &kept, later(), 7, &damaged);
        assert_eq!(known(&kept, 7), None, "a walk that found damage");
        let mut moved = kept;
        moved.size += 4096;
        remember(&kept, &moved, later(), 7, &clean());
        assert_eq!(known(&kept, 7), None, "a file that changed during the walk");
        let fresh = UNIX_EPOCH + Duration::from_nanos(kept.ctime_ns as u64) + AT_REST
            - Duration::from_nanos(1);
        remember(&kept, &kept, fresh, 7, &clean());
        assert_eq!(
            known(&kept, 7),
            None,
            "a file written less than AT_REST ago"
        );
        remember(&kept, &kept, fresh + Duration::from_nanos(1), 7, &clean());
        assert_eq!(known(&kept, 7), Some(clean()), "at rest");
    }

    #[test]
    fn a_newer_verdict_on_an_inode_replaces_the_older() {
        let old = state(9_000_003);
        remember(&old, &old, later(), 7, &clean());
        let mut new = old;
        new.ctime_ns += 1_000_000_000;
        remember(&new, &new, later(), 8, &clean());
        assert_eq!(known(&old, 7), None);
        assert_eq!(known(&new, 8), Some(clean()));
    }
}
