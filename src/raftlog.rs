//! A run of the Raft log as a host hands it over: contiguous, with its
//! first index given, so that "this log covers that range" can be proven
//! rather than assumed (the start-up guard against a sidecar behind the
//! log needs exactly that; audit.go, encryption_scanner.go).

use crate::wire::SIDECAR_OPCODES;

/// A contiguous run of the Raft log: the entry at index `first_index + i`
/// has the opcode `opcodes[i]`, `None` for an entry without an FSM payload
/// (a configuration change, a leader's empty entry). Every entry is there,
/// not only the encryption ones, so whether it covers a range is a fact,
/// not a guess.
#[derive(Debug, Clone, Copy)]
pub struct LogSlice<'a> {
    pub first_index: u64,
    pub opcodes: &'a [Option<u8>],
}

impl LogSlice<'_> {
    /// The index of the last entry; `None` for an empty slice.
    pub fn last_index(&self) -> Option<u64> {
        let len = u64::try_from(self.opcodes.len()).ok()?;
        len.checked_sub(1)?.checked_add(self.first_index)
    }

    /// Whether every index of `(after, through]` is in the slice (an empty
    /// range is always covered).
    pub fn covers(&self, after: u64, through: u64) -> bool {
        after >= through
            || (self.first_index <= after.saturating_add(1)
                && self.last_index().is_some_and(|last| last >= through))
    }

    /// The first entry of `(after, through]` that writes the sidecar, as
    /// `(index, opcode)` (audit.go: opcodes 0x04 to 0x07; a registration,
    /// 0x03, does not write it).
    pub fn first_sidecar_entry(&self, after: u64, through: u64) -> Option<(u64, u8)> {
        (self.first_index..)
            .zip(self.opcodes)
            .skip_while(|&(index, _)| index <= after)
            .take_while(|&(index, _)| index <= through)
            .find_map(|(index, op)| {
                op.filter(|op| SIDECAR_OPCODES.contains(op))
                    .map(|op| (index, op))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::LogSlice;

    #[test]
    fn a_slice_covers_a_gap_only_when_it_holds_every_index_of_it() {
        let ops = [None, Some(0x03), Some(0x05), None];
        let log = LogSlice {
            first_index: 6,
            opcodes: &ops,
        }; // entries 6..=9
        assert_eq!(log.last_index(), Some(9));
        assert!(log.covers(5, 9) && log.covers(7, 8) && log.covers(9, 9) && log.covers(20, 3));
        assert!(!log.covers(4, 9), "entry 5 is missing");
        assert!(!log.covers(5, 10), "entry 10 is missing");
        let empty = LogSlice {
            first_index: 6,
            opcodes: &[],
        };
        assert_eq!(empty.last_index(), None);
        assert!(!empty.covers(5, 6) && empty.covers(6, 6));
    }

    #[test]
    fn only_entries_inside_the_gap_that_write_the_sidecar_count() {
        let ops = [Some(0x04), Some(0x03), None, Some(0x07), Some(0x05)];
        let log = LogSlice {
            first_index: 1,
            opcodes: &ops,
        }; // 1:0x04 2:0x03 3:- 4:0x07 5:0x05
        assert_eq!(log.first_sidecar_entry(1, 5), Some((4, 0x07)));
        assert_eq!(log.first_sidecar_entry(0, 5), Some((1, 0x04)));
        assert_eq!(
            log.first_sidecar_entry(1, 3),
            None,
            "0x03 does not write it"
        );
        assert_eq!(log.first_sidecar_entry(4, 5), Some((5, 0x05)));
        assert_eq!(log.first_sidecar_entry(5, 5), None);
    }

    #[test]
    fn a_slice_that_would_end_past_the_largest_index_has_no_last() {
        let ops = [None, None];
        let log = LogSlice {
            first_index: u64::MAX,
            opcodes: &ops,
        };
        assert_eq!(log.last_index(), None);
    }
}
