//! Reading snapshot files without trusting them: each is opened once with
//! `O_NONBLOCK` (a FIFO cannot block), must be a regular file, and is read
//! through [`Source`], a positioned reader with one small window, so a huge
//! file is streamed (for a CRC) or skipped over, never held in memory.
//! Also CRC-32C (Castagnoli), the checksum of `.fsm`, `.snap` and WAL files.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::problem::{SnapshotError, SnapshotProblem};
use crate::fsutil::{open_for_reading, Follow};

/// Bytes read at a time.
const WINDOW: usize = 64 << 10;

/// An open snapshot file: its size (fixed at open, as Go's `Stat`) and a
/// read window.
pub(crate) struct Source {
    file: File,
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    window: Vec<u8>,
    window_at: u64,
}

/// How an absent file is reported.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    /// As any other open failure.
    CannotOpen,
    /// As Go's `ErrFSMSnapshotNotFound` (a token names the file).
    FsmNotFound,
}

impl Source {
    /// Opens `path`: a regular file, or an error naming it.
    pub(crate) fn open(path: &Path, missing: Missing) -> Result<Source, SnapshotError> {
        let err = |problem| SnapshotError::new(path, problem);
        let (file, meta) = open_for_reading(path, Follow::Symlinks).map_err(|e| {
            if e.kind() == ErrorKind::NotFound && missing == Missing::FsmNotFound {
                err(SnapshotProblem::FsmNotFound)
            } else {
                err(SnapshotProblem::CannotOpen {
                    detail: e.to_string(),
                })
            }
        })?;
        if meta.is_dir() {
            return Err(err(SnapshotProblem::IsDirectory));
        }
        if !meta.file_type().is_file() {
            return Err(err(SnapshotProblem::NotRegularFile));
        }
        Ok(Source {
            file,
            path: path.to_path_buf(),
            size: meta.len(),
            window: Vec::new(),
            window_at: 0,
        })
    }

    pub(crate) fn error(&self, problem: SnapshotProblem) -> SnapshotError {
        SnapshotError::new(&self.path, problem)
    }

    fn shrank(&self) -> SnapshotError {
        self.error(SnapshotProblem::CannotRead {
            detail: "the file shrank while it was read".to_string(),
        })
    }

    /// The byte at `at` (`at < size`).
    pub(crate) fn byte(&mut self, at: u64) -> Result<u8, SnapshotError> {
        let in_window = at >= self.window_at && at - self.window_at < self.window.len() as u64;
        if !in_window {
            self.fill(at)?;
        }
        Ok(self.window[(at - self.window_at) as usize])
    }

    fn fill(&mut self, at: u64) -> Result<(), SnapshotError> {
        let want = (self.size.saturating_sub(at)).min(WINDOW as u64) as usize;
        self.window.resize(want, 0);
        let mut got = 0;
        while got < want {
            match self.file.read_at(&mut self.window[got..], at + got as u64) {
                Ok(0) => {
                    self.window.clear();
                    return Err(self.shrank());
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.window.clear();
                    return Err(self.error(SnapshotProblem::CannotRead {
                        detail: e.to_string(),
                    }));
                }
            }
        }
        self.window_at = at;
        if want == 0 {
            return Err(self.shrank());
        }
        Ok(())
    }

    /// Calls `each` with the bytes of `[at, at + len)`, in order, a window
    /// at a time (`at + len <= size`).
    pub(crate) fn stream(
        &mut self,
        at: u64,
        len: u64,
        mut each: impl FnMut(&[u8]),
    ) -> Result<(), SnapshotError> {
        let mut pos = at;
        let end = at + len;
        while pos < end {
            self.byte(pos)?; // brings pos into the window
            let start = (pos - self.window_at) as usize;
            let take = ((end - pos) as usize).min(self.window.len() - start);
            each(&self.window[start..start + take]);
            pos += take as u64;
        }
        Ok(())
    }

    /// The bytes of `[at, at + len)`, for the few small reads (headers,
    /// footers); `len` is bounded by the caller.
    pub(crate) fn bytes(&mut self, at: u64, len: u64) -> Result<Vec<u8>, SnapshotError> {
        let mut out = Vec::with_capacity(len as usize);
        self.stream(at, len, |chunk| out.extend_from_slice(chunk))?;
        Ok(out)
    }

    /// CRC-32C of `[at, at + len)`, continuing from `crc`.
    pub(crate) fn crc32c(&mut self, crc: u32, at: u64, len: u64) -> Result<u32, SnapshotError> {
        let mut crc = crc;
        self.stream(at, len, |chunk| crc = crc32c_update(crc, chunk))?;
        Ok(crc)
    }
}

/// The reflected Castagnoli polynomial (Go's `crc32.Castagnoli`).
const CASTAGNOLI: u32 = 0x82f6_3b78;

/// Slicing-by-8 tables.
static TABLES: [[u32; 256]; 8] = tables();

const fn tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ CASTAGNOLI
            } else {
                crc >> 1
            };
            bit += 1;
        }
        t[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

/// Go's `crc32.Update(crc, crc32.MakeTable(crc32.Castagnoli), data)`.
pub fn crc32c_update(crc: u32, data: &[u8]) -> u32 {
    let mut crc = !crc;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = crc ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        crc = TABLES[7][(lo & 0xff) as usize]
            ^ TABLES[6][((lo >> 8) & 0xff) as usize]
            ^ TABLES[5][((lo >> 16) & 0xff) as usize]
            ^ TABLES[4][(lo >> 24) as usize]
            ^ TABLES[3][c[4] as usize]
            ^ TABLES[2][c[5] as usize]
            ^ TABLES[1][c[6] as usize]
            ^ TABLES[0][c[7] as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ TABLES[0][((crc ^ u32::from(b)) & 0xff) as usize];
    }
    !crc
}
