//! The protobuf wire format as Go's `proto.Unmarshal` (protobuf-go
//! v1.36.11, which etcd v3.7.0 and raft v3.7.0 use) reads it, over a range
//! of a [`Source`] file, and the few messages the snapshot files hold.
//!
//! The rules followed (protobuf-go file:line at v1.36.11):
//! - a varint is at most 10 bytes, the tenth at most 1
//!   (encoding/protowire/wire.go:267-367); denormalised varints are fine;
//! - a field number is 1 to 2^29-1 in a message (internal/impl/decode.go:154-158),
//!   1 to 2^31-1 inside a skipped group (wire.go:168-177, 525-531);
//! - an end-group tag outside a group fails (decode.go:161-166);
//! - a known field with another wire type is an unknown field, skipped, not
//!   an error (codec_gen.go `consume*`: `errUnknown`; decode.go:213-227);
//! - unknown fields are skipped by `ConsumeFieldValue` (wire.go:112-159),
//!   wire types 6 and 7 fail, groups nest at most 10001 deep;
//! - a scalar or bytes field seen twice keeps the last value; a message
//!   field seen twice is merged (codec_field.go:175-193).

use super::source::Source;
use super::SnapshotError;

/// A decoding failure: the file could not be read, or its bytes are not
/// what `proto.Unmarshal` accepts (at `offset`).
#[derive(Debug)]
pub(crate) enum Fault {
    Io(SnapshotError),
    Wire { offset: u64, detail: &'static str },
}

impl From<SnapshotError> for Fault {
    fn from(e: SnapshotError) -> Self {
        Fault::Io(e)
    }
}

pub(crate) const VARINT: u8 = 0;
const FIXED64: u8 = 1;
pub(crate) const BYTES: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// protowire.MaxValidNumber.
const MAX_FIELD: u64 = (1 << 29) - 1;
/// protowire.DefaultRecursionLimit.
const RECURSION_LIMIT: usize = 10_000;

/// One field's tag.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tag {
    pub(crate) num: u64,
    pub(crate) wire: u8,
}

/// A message being decoded: the bytes `[pos, end)` of `src`.
pub(crate) struct Msg<'s> {
    src: &'s mut Source,
    pos: u64,
    end: u64,
}

impl<'s> Msg<'s> {
    pub(crate) fn new(src: &'s mut Source, start: u64, end: u64) -> Msg<'s> {
        Msg {
            src,
            pos: start,
            end,
        }
    }

    /// The same source, for a nested range once this message is done with it.
    pub(crate) fn src(&mut self) -> &mut Source {
        self.src
    }

    fn fail(&self, at: u64, detail: &'static str) -> Fault {
        Fault::Wire { offset: at, detail }
    }

    /// `protowire.ConsumeVarint`.
    pub(crate) fn varint(&mut self) -> Result<u64, Fault> {
        let start = self.pos;
        let mut value: u64 = 0;
        for i in 0..10u32 {
            if self.pos >= self.end {
                return Err(self.fail(start, "truncated varint"));
            }
            let b = self.src.byte(self.pos)?;
            self.pos += 1;
            if i == 9 {
                if b > 1 {
                    return Err(self.fail(start, "varint overflows 64 bits"));
                }
                return Ok(value | (u64::from(b) << 63));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(value);
            }
        }
        unreachable!("the tenth byte returns")
    }

    /// The next field's tag, `None` at the end of the message
    /// (`unmarshalPointerEager`'s loop head, with no enclosing group).
    pub(crate) fn tag(&mut self) -> Result<Option<Tag>, Fault> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let at = self.pos;
        let v = self.varint()?;
        let num = v >> 3;
        if !(1..=MAX_FIELD).contains(&num) {
            return Err(self.fail(at, "invalid field number"));
        }
        let wire = (v & 7) as u8;
        if wire == END_GROUP {
            return Err(self.fail(at, "end group outside a group"));
        }
        Ok(Some(Tag { num, wire }))
    }

    /// A length-delimited value (`protowire.ConsumeBytes`): its range.
    pub(crate) fn bytes(&mut self) -> Result<(u64, u64), Fault> {
        let at = self.pos;
        let len = self.varint()?;
        if len > self.end - self.pos {
            return Err(self.fail(at, "length runs past the end"));
        }
        let start = self.pos;
        self.pos += len;
        Ok((start, len))
    }

    fn fixed(&mut self, n: u64) -> Result<(), Fault> {
        if self.end - self.pos < n {
            return Err(self.fail(self.pos, "truncated fixed-width value"));
        }
        self.pos += n;
        Ok(())
    }

    /// Skips an unknown field's value (`protowire.ConsumeFieldValue`).
    pub(crate) fn skip(&mut self, tag: Tag) -> Result<(), Fault> {
        match tag.wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.fixed(8),
            BYTES => self.bytes().map(drop),
            FIXED32 => self.fixed(4),
            START_GROUP => self.skip_group(tag.num),
            _ => Err(self.fail(self.pos, "reserved wire type")),
        }
    }

    /// A group's fields up to its end-group tag; nested groups iteratively.
    fn skip_group(&mut self, num: u64) -> Result<(), Fault> {
        let mut open = vec![num];
        while let Some(&inner) = open.last() {
            let at = self.pos;
            let v = self.varint()?;
            // protowire.DecodeTag then ConsumeTag's check.
            let num2 = v >> 3;
            if !(1..=i32::MAX as u64).contains(&num2) {
                return Err(self.fail(at, "invalid field number"));
            }
            match (v & 7) as u8 {
                END_GROUP if num2 == inner => {
                    open.pop();
                }
                END_GROUP => return Err(self.fail(at, "mismatched end group")),
                START_GROUP => {
                    // The group at nesting level k runs with depth
                    // RECURSION_LIMIT - (k - 1), refused below 0.
                    if open.len() + 1 > RECURSION_LIMIT + 1 {
                        return Err(self.fail(at, "groups nested too deep"));
                    }
                    open.push(num2);
                }
                VARINT => self.varint().map(drop)?,
                FIXED64 => self.fixed(8)?,
                BYTES => self.bytes().map(drop)?,
                FIXED32 => self.fixed(4)?,
                _ => return Err(self.fail(at, "reserved wire type")),
            }
        }
        Ok(())
    }

    /// A packed run of varints: every one must decode.
    fn packed_varints(&mut self, start: u64, len: u64) -> Result<(), Fault> {
        let mut inner = Msg::new(self.src, start, start + len);
        while inner.pos < inner.end {
            inner.varint()?;
        }
        Ok(())
    }
}

/// `raftpb.ConfState` (raft v3.7.0 raftpb/raft.proto:127-145): four
/// repeated uint64 fields, packed or not, and a bool; checked, not kept.
pub(crate) fn conf_state(src: &mut Source, start: u64, len: u64) -> Result<(), Fault> {
    let mut m = Msg::new(src, start, start + len);
    while let Some(tag) = m.tag()? {
        match (tag.num, tag.wire) {
            (1..=4, BYTES) => {
                let (s, l) = m.bytes()?;
                m.packed_varints(s, l)?;
            }
            (1..=5, VARINT) => {
                m.varint()?;
            }
            _ => m.skip(tag)?,
        }
    }
    Ok(())
}

/// A Raft snapshot's `(term, index)`, from the metadata message(s).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TermIndex {
    pub(crate) term: u64,
    pub(crate) index: u64,
}

/// `raftpb.SnapshotMetadata` (raft.proto:19-23) merged into `into`.
pub(crate) fn snapshot_metadata(
    src: &mut Source,
    start: u64,
    len: u64,
    into: &mut TermIndex,
) -> Result<(), Fault> {
    let mut m = Msg::new(src, start, start + len);
    while let Some(tag) = m.tag()? {
        match (tag.num, tag.wire) {
            (1, BYTES) => {
                let (s, l) = m.bytes()?;
                conf_state(m.src(), s, l)?;
            }
            (2, VARINT) => into.index = m.varint()?,
            (3, VARINT) => into.term = m.varint()?,
            _ => m.skip(tag)?,
        }
    }
    Ok(())
}

/// `walpb.Snapshot` (etcd server/storage/wal/walpb/record.proto:15-20).
pub(crate) fn wal_snapshot(src: &mut Source, start: u64, len: u64) -> Result<TermIndex, Fault> {
    let mut out = TermIndex::default();
    let mut m = Msg::new(src, start, start + len);
    while let Some(tag) = m.tag()? {
        match (tag.num, tag.wire) {
            (1, VARINT) => out.index = m.varint()?,
            (2, VARINT) => out.term = m.varint()?,
            (3, BYTES) => {
                let (s, l) = m.bytes()?;
                conf_state(m.src(), s, l)?;
            }
            _ => m.skip(tag)?,
        }
    }
    Ok(out)
}

/// `raftpb.HardState` (raft.proto:101-105): its commit index.
pub(crate) fn hard_state_commit(src: &mut Source, start: u64, len: u64) -> Result<u64, Fault> {
    let mut commit = 0;
    let mut m = Msg::new(src, start, start + len);
    while let Some(tag) = m.tag()? {
        match (tag.num, tag.wire) {
            (1..=2, VARINT) => {
                m.varint()?;
            }
            (3, VARINT) => commit = m.varint()?,
            _ => m.skip(tag)?,
        }
    }
    Ok(commit)
}
