//! The walk's large reads: pages asked for in ascending order, served out
//! of chunks of up to [`CHUNK_BYTES`] read sequentially, positional
//! (`pread`) and never through a map, so a file cut short or a disk error
//! meanwhile is an error return, never a signal.
//!
//! When there are many chunks to read, a second thread reads the next
//! ones while the caller checks the pages of the one in hand (three
//! buffers go round between them), so the copy out of the page cache and
//! the checks overlap; if that thread cannot be started, the same chunks
//! are read in turn on the caller's thread. A smaller file is read on the
//! caller's thread: starting the thread and handing it each buffer cost
//! more there than the copy they hide. The buffers are kept for the next
//! walk in the process ([`POOL`], at most three, 768 KiB), so a walk does
//! not fault their pages in afresh.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

/// The size of one read: large enough that the kernel's per-call cost
/// vanishes, small enough to stay in the CPU's cache while its pages are
/// checked.
pub(super) const CHUNK_BYTES: usize = 256 << 10;

/// Buffers going round between the reading thread and the checking one.
const BUFFERS: usize = 3;

/// From this many chunks (8 MiB) on, a second thread reads ahead.
const THREAD_FROM: usize = 32;

/// Chunk buffers a finished walk gave back, for the next one.
static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A buffer from the pool (or a new, empty one: `read` sizes it).
fn pooled() -> Vec<u8> {
    crate::fsutil::lock(&POOL).pop().unwrap_or_default()
}

/// Keeps `buf` for the next walk, up to [`BUFFERS`] of them.
fn give_to_pool(buf: Vec<u8>) {
    let mut pool = crate::fsutil::lock(&POOL);
    if pool.len() < BUFFERS && buf.capacity() <= CHUNK_BYTES {
        pool.push(buf);
    }
}

/// One read: pages `first..first + count` in `buf`, unless `ok` is false
/// (the read failed or came short).
struct Chunk {
    first: u64,
    count: u64,
    buf: Vec<u8>,
    ok: bool,
}

/// The pages `page(0)`, …, `page(n - 1)` of `file` (ascending), in chunks.
pub(super) struct Pages<'a, P> {
    pub file: &'a File,
    pub page_size: usize,
    pub file_pages: u64,
    pub n: usize,
    pub page: P,
}

impl<P: Fn(usize) -> u64 + Sync> Pages<'_, P> {
    fn per_chunk(&self) -> u64 {
        (CHUNK_BYTES / self.page_size).max(1) as u64
    }

    /// The chunks to read, in order: each from the first page not yet
    /// covered, as long as a chunk, the file and the last page allow.
    fn plan(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let last = if self.n == 0 {
            0
        } else {
            (self.page)(self.n - 1)
        };
        let per_chunk = self.per_chunk();
        let mut end = 0;
        (0..self.n).filter_map(move |i| {
            let first = (self.page)(i);
            if i > 0 && first < end {
                return None;
            }
            let count = per_chunk
                .min(self.file_pages.saturating_sub(first))
                .min(last.saturating_sub(first) + 1);
            end = first + count;
            Some((first, count))
        })
    }

    fn read(&self, first: u64, count: u64, mut buf: Vec<u8>) -> Chunk {
        let len = count as usize * self.page_size;
        buf.resize(len.max(buf.len()), 0);
        let ok = count > 0
            && self
                .file
                .read_exact_at(&mut buf[..len], first * self.page_size as u64)
                .is_ok();
        Chunk {
            first,
            count,
            buf,
            ok,
        }
    }

    /// Calls `visit(i, bytes)` for each page `page(i)` in turn, with its
    /// bytes, or None when the chunk holding it could not be read whole
    /// (the file changed, or the disk failed): the caller then reads the
    /// page alone, which says what is wrong with it.
    pub(super) fn each(&self, mut visit: impl FnMut(usize, Option<&[u8]>)) {
        let chunks = self.plan().count();
        if chunks >= THREAD_FROM {
            let done = std::thread::scope(|scope| {
                let (full_tx, full_rx) = sync_channel::<Chunk>(BUFFERS);
                let (free_tx, free_rx) = sync_channel::<Vec<u8>>(BUFFERS);
                let reader = std::thread::Builder::new()
                    .name("ea-verify-read".into())
                    .spawn_scoped(scope, move || {
                        self.read_ahead(&free_rx, &full_tx);
                        free_rx
                    });
                let Ok(reader) = reader else {
                    return false;
                };
                for _ in 0..BUFFERS {
                    // The reader holds the other ends until it is done.
                    let _ = free_tx.send(pooled());
                }
                self.serve(
                    || full_rx.recv().ok(),
                    |buf| drop(free_tx.send(buf)),
                    &mut visit,
                );
                // Dropping the channels ends the reader, should it wait.
                drop((full_rx, free_tx));
                // The buffers it did not take go back to the pool.
                if let Ok(free_rx) = reader.join() {
                    while let Ok(buf) = free_rx.try_recv() {
                        give_to_pool(buf);
                    }
                }
                true
            });
            if done {
                return;
            }
        }
        let mut plan = self.plan();
        let spare = std::cell::Cell::new(pooled());
        self.serve(
            || {
                plan.next()
                    .map(|(first, count)| self.read(first, count, spare.take()))
            },
            |buf| spare.set(buf),
            &mut visit,
        );
        give_to_pool(spare.take());
    }

    /// The reading thread: the planned chunks, each into a buffer the
    /// checking thread has given back.
    fn read_ahead(&self, free: &Receiver<Vec<u8>>, full: &SyncSender<Chunk>) {
        for (first, count) in self.plan() {
            let Ok(buf) = free.recv() else { return };
            if full.send(self.read(first, count, buf)).is_err() {
                return;
            }
        }
    }

    /// Hands each page to `visit` out of the chunks `next` yields (in plan
    /// order), giving each chunk's buffer back once its pages are done.
    fn serve(
        &self,
        mut next: impl FnMut() -> Option<Chunk>,
        mut give_back: impl FnMut(Vec<u8>),
        visit: &mut impl FnMut(usize, Option<&[u8]>),
    ) {
        let mut chunk: Option<Chunk> = None;
        for i in 0..self.n {
            let page = (self.page)(i);
            let held = chunk
                .as_ref()
                .is_some_and(|c| page >= c.first && page < c.first + c.count);
            if !held {
                if let Some(done) = chunk.take() {
                    give_back(done.buf);
                }
                chunk = next().filter(|c| c.first == page);
            }
            let bytes = chunk.as_ref().filter(|c| c.ok).map(|c| {
                let at = (page - c.first) as usize * self.page_size;
                &c.buf[at..at + self.page_size]
            });
            visit(i, bytes);
        }
        if let Some(done) = chunk {
            give_back(done.buf);
        }
    }
}
