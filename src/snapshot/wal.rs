//! Which snapshots etcd's WAL vouches for: `wal.ValidSnapshotEntries`
//! (etcd v3.7.0 server/storage/wal/wal.go:598-658), the list elastickv's
//! `loadPersistedSnapshot` filters `.snap` files by (wal_store.go:331-345).
//!
//! - `Exist`: the directory lists a name ending in `.wal` (util.go:29-36);
//! - the WAL files are the names `fmt.Sscanf` reads as `%016x-%016x.wal`,
//!   in byte order (util.go:72-108, fileutil.ReadDir); none is an error;
//! - records are framed by a little-endian int64: the low 56 bits the
//!   record's length, the top bit set when the low 3 bits of the top byte
//!   count padding bytes (decoder.go:88-168); a zero frame or the end of a
//!   file moves to the next file;
//! - each record is a `walpb.Record` {type int64 = 1, crc uint32 = 2, data
//!   bytes = 3}; but for CRC records (type 4), `crc` must equal the running
//!   CRC-32C of every record's data (decoder.go:132-151); a CRC record
//!   re-seeds it, and must match it unless it is 0 (wal.go:632-639);
//! - a short read, or a bad record whose sector-aligned chunks include one
//!   of all zeros in the last file (a torn write, decoder.go:170-203), ends
//!   the scan without error; any other bad record is an error;
//! - snapshot records (type 5) are `walpb.Snapshot`s, state records (type
//!   3) `raftpb.HardState`s; only snapshots at or below the last state's
//!   commit index count (wal.go:648-656).

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::problem::{SnapshotError, SnapshotProblem};
use super::source::{Missing, Source};
use super::wire::{self, Fault, Msg, TermIndex, BYTES, VARINT};

/// The record types (wal.go:38-44).
const STATE_TYPE: u64 = 3;
const CRC_TYPE: u64 = 4;
const SNAPSHOT_TYPE: u64 = 5;
/// minSectorSize and frameSizeBytes (decoder.go:33-36).
const SECTOR: u64 = 512;
const FRAME: u64 = 8;

/// `wal.Exist`: some name in `dir` ends in `.wal`; an unreadable directory
/// is no WAL.
pub(crate) fn exists(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| e.file_name().as_bytes().ends_with(b".wal"))
    })
}

/// The names in `dir`, sorted by bytes (`fileutil.ReadDir`).
pub(crate) fn sorted_names(dir: &Path) -> Result<Vec<OsString>, SnapshotError> {
    let list_error = |e: std::io::Error| {
        SnapshotError::new(
            dir,
            SnapshotProblem::CannotList {
                detail: e.to_string(),
            },
        )
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(list_error)? {
        names.push(entry.map_err(list_error)?.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// The Unicode white space `fmt`'s scanner skips (fmt/scan.go `space`).
fn is_space(c: char) -> bool {
    matches!(c as u32,
        0x09..=0x0d | 0x20 | 0x85 | 0xa0 | 0x1680 | 0x2000..=0x200a | 0x2028..=0x2029
        | 0x202f | 0x205f | 0x3000)
}

/// The rune at `s[i..]` as Go's scanner decodes it: invalid UTF-8 is one
/// byte of U+FFFD.
fn rune_at(s: &[u8], i: usize) -> (char, usize) {
    let width = match s[i] {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 0,
    };
    match s.get(i..i + width).map(std::str::from_utf8) {
        Some(Ok(text)) => text.chars().next().map_or(('\u{fffd}', 1), |c| (c, width)),
        _ => ('\u{fffd}', 1),
    }
}

/// One `%016x` of `fmt.Sscanf`: spaces skipped (a newline fails), then one
/// to sixteen hex digits.
fn scan_hex16(s: &[u8], i: &mut usize) -> Option<u64> {
    while *i < s.len() {
        let (c, w) = rune_at(s, *i);
        if c == '\n' {
            return None;
        }
        if !is_space(c) {
            break;
        }
        *i += w;
    }
    let mut value = 0u64;
    let mut digits = 0;
    while digits < 16 && *i < s.len() {
        let Some(d) = char::from(s[*i]).to_digit(16).filter(|_| s[*i] < 0x80) else {
            break;
        };
        value = value << 4 | u64::from(d);
        digits += 1;
        *i += 1;
    }
    (digits > 0).then_some(value)
}

/// `parseWALName` (util.go:102-108): the name ends in `.wal` and
/// `fmt.Sscanf(name, "%016x-%016x.wal", &seq, &index)` succeeds (what
/// follows the format is ignored).
pub(crate) fn is_wal_name(name: &[u8]) -> bool {
    if !name.ends_with(b".wal") {
        return false;
    }
    let mut i = 0;
    let literal = |i: &mut usize, lit: &[u8]| -> bool {
        let ok = name.len() >= *i + lit.len() && &name[*i..*i + lit.len()] == lit;
        *i += lit.len();
        ok
    };
    scan_hex16(name, &mut i).is_some()
        && literal(&mut i, b"-")
        && scan_hex16(name, &mut i).is_some()
        && literal(&mut i, b".wal")
}

/// One decoded record.
struct Record {
    /// Where its frame starts in its file.
    at: u64,
    kind: u64,
    crc: u32,
    data: (u64, u64),
}

/// How a record read ended, when it did not yield a record.
enum Stop {
    /// io.EOF or io.ErrUnexpectedEOF: the scan is over, no error.
    End,
    Error(SnapshotError),
}

impl From<SnapshotError> for Stop {
    fn from(e: SnapshotError) -> Self {
        Stop::Error(e)
    }
}

/// etcd's WAL decoder over the opened files.
struct Decoder {
    files: Vec<Source>,
    current: usize,
    /// lastValidOff: where the next frame starts in the current file.
    offset: u64,
    crc: u32,
}

impl Decoder {
    fn next(&mut self) -> Result<Record, Stop> {
        loop {
            let Some(src) = self.files.get_mut(self.current) else {
                return Err(Stop::End);
            };
            let left = src.size - self.offset;
            if left == 0 {
                self.current += 1;
                self.offset = 0;
                continue;
            }
            if left < FRAME {
                return Err(Stop::End);
            }
            let raw = src.bytes(self.offset, FRAME)?;
            let mut frame = [0u8; 8];
            frame.copy_from_slice(&raw);
            let frame = i64::from_le_bytes(frame);
            if frame == 0 {
                self.current += 1;
                self.offset = 0;
                continue;
            }
            let rec_bytes = (frame as u64) & !(0xffu64 << 56);
            let pad_bytes = if frame < 0 {
                ((frame as u64) >> 56) & 0x7
            } else {
                0
            };
            // decoder.go:109-114, then io.ReadFull of record and padding (:116-123).
            if rec_bytes > src.size - self.offset - pad_bytes
                || rec_bytes + pad_bytes > left - FRAME
            {
                return Err(Stop::End);
            }
            return self.record(rec_bytes, pad_bytes);
        }
    }

    fn record(&mut self, rec_bytes: u64, pad_bytes: u64) -> Result<Record, Stop> {
        let last = self.current + 1 == self.files.len();
        let at = self.offset;
        let start = at + FRAME;
        let src = &mut self.files[self.current];
        let decoded = decode_record(src, at, rec_bytes);
        let torn = |src: &mut Source| -> Result<bool, SnapshotError> {
            Ok(last && has_zero_sector(src, start, rec_bytes + pad_bytes)?)
        };
        let record = match decoded {
            Ok(r) => r,
            Err(Fault::Io(e)) => return Err(Stop::Error(e)),
            Err(Fault::Wire { detail, .. }) => {
                if torn(src)? {
                    return Err(Stop::End);
                }
                return Err(Stop::Error(
                    src.error(SnapshotProblem::WalUndecodable { offset: at, detail }),
                ));
            }
        };
        if record.kind != CRC_TYPE {
            let (s, l) = record.data;
            self.crc = src.crc32c(self.crc, s, l)?;
            if record.crc != self.crc {
                if torn(src)? {
                    return Err(Stop::End);
                }
                return Err(Stop::Error(src.error(SnapshotProblem::WalCrcMismatch {
                    offset: at,
                    stored: record.crc,
                    computed: self.crc,
                })));
            }
        }
        self.offset += FRAME + rec_bytes + pad_bytes;
        Ok(record)
    }
}

/// `walpb.Record` in `[start, start + len)`.
fn decode_record(src: &mut Source, at: u64, len: u64) -> Result<Record, Fault> {
    let start = at + FRAME;
    let mut m = Msg::new(src, start, start + len);
    let mut out = Record {
        at,
        kind: 0,
        crc: 0,
        data: (start, 0),
    };
    while let Some(tag) = m.tag()? {
        match (tag.num, tag.wire) {
            (1, VARINT) => out.kind = m.varint()?,
            (2, VARINT) => out.crc = m.varint()? as u32,
            (3, BYTES) => out.data = m.bytes()?,
            _ => m.skip(tag)?,
        }
    }
    Ok(out)
}

/// `isTornEntry`'s test: some chunk of `[start, start + len)`, cut at the
/// file's 512-byte sector boundaries, is all zeros.
fn has_zero_sector(src: &mut Source, start: u64, len: u64) -> Result<bool, SnapshotError> {
    let end = start + len;
    let mut pos = start;
    while pos < end {
        let chunk_end = ((pos / SECTOR + 1) * SECTOR).min(end);
        let mut zero = true;
        src.stream(pos, chunk_end - pos, |b| zero &= b.iter().all(|&x| x == 0))?;
        if zero {
            return Ok(true);
        }
        pos = chunk_end;
    }
    Ok(false)
}

/// `wal.ValidSnapshotEntries(dir)`: the `(term, index)` of every snapshot
/// record at or below the committed index, in log order.
pub(crate) fn valid_snapshot_entries(dir: &Path) -> Result<Vec<TermIndex>, SnapshotError> {
    let names: Vec<OsString> = sorted_names(dir)?
        .into_iter()
        .filter(|n| is_wal_name(n.as_bytes()))
        .collect();
    if names.is_empty() {
        return Err(SnapshotError::new(dir, SnapshotProblem::WalNoFiles));
    }
    let files = names
        .iter()
        .map(|n| Source::open(&dir.join(n), Missing::CannotOpen))
        .collect::<Result<Vec<_>, _>>()?;
    let mut decoder = Decoder {
        files,
        current: 0,
        offset: 0,
        crc: 0,
    };
    let mut snaps = Vec::new();
    let mut commit = 0;
    loop {
        let record = match decoder.next() {
            Ok(r) => r,
            Err(Stop::End) => break,
            Err(Stop::Error(e)) => return Err(e),
        };
        let (s, l) = record.data;
        let at = record.at;
        let src = &mut decoder.files[decoder.current];
        let bad = |src: &Source, fault: Fault, detail: &'static str| match fault {
            Fault::Io(e) => e,
            Fault::Wire { .. } => src.error(SnapshotProblem::WalUndecodable { offset: at, detail }),
        };
        match record.kind {
            SNAPSHOT_TYPE => snaps.push(
                wire::wal_snapshot(src, s, l)
                    .map_err(|f| bad(src, f, "a snapshot record's walpb.Snapshot"))?,
            ),
            STATE_TYPE => {
                commit = wire::hard_state_commit(src, s, l)
                    .map_err(|f| bad(src, f, "a state record's raftpb.HardState"))?;
            }
            CRC_TYPE => {
                if decoder.crc != 0 && record.crc != decoder.crc {
                    return Err(src.error(SnapshotProblem::WalCrcMismatch {
                        offset: at,
                        stored: record.crc,
                        computed: decoder.crc,
                    }));
                }
                decoder.crc = record.crc;
            }
            _ => {}
        }
    }
    snaps.retain(|s| s.index <= commit);
    Ok(snaps)
}
