//! The page walker: every page reachable from the meta LMDB uses, in the
//! main tree and the free-page tree, checked on the bytes of the file
//! (step 2 of [`super`]). The walk itself, page claims, free lists and
//! the order of the problems are here; one page's checks are `page.rs`,
//! the one-pass clearing of a healthy leaf `clean.rs`, the sequential
//! reads `chunks.rs`.
//!
//! Each tree is walked in two passes, so that its leaves (99% of the
//! pages) are read in large sequential reads rather than one `pread` per
//! page in tree order:
//!
//! 1. depth first from the root, reading and checking every page above
//!    the leaf level (branch pages, about 1% of a registry), claiming
//!    every page the tree reaches, and noting each leaf-level page with
//!    its place (the key range its parent gives it) and its position, its
//!    index in the depth-first order;
//! 2. the noted leaves of the main tree in file order, out of chunks of
//!    256 KiB read sequentially, ahead of the checks (`chunks.rs`); those
//!    of the free-page tree, whose free lists claim pages, in depth-first
//!    order.
//!
//! Every page gets the checks, and a problem the message, of a walk that
//! reads each page as it goes down (a healthy leaf is cleared by one pass
//! that implies them all); each problem carries the position of its page,
//! and the report keeps the `max_problems` first in depth-first order, as
//! that walk finds them. What differs is the order of claims: when two
//! references reach one page (damage), the one refused as the second can
//! be the other; and a report that stops at `max_problems` can count pages
//! such a walk would not have reached.
//!
//! Memory: a bit per page of the file, 32 bytes per leaf (its page,
//! position and bounds), the branch pages' keys, and the chunk buffers; no
//! allocation per page or node.

use std::cmp::Ordering;
use std::fs::File;

mod chunks;
mod clean;
mod page;

use super::format::{
    read_at, u16_at, u32_at, u64_at, DbRecord, Meta, NUM_METAS, PAGE_HEADER, P_INVALID, P_OVERFLOW,
};
use super::report::{damage, Damage, DamageKind, VerifyReport, WalkOptions};
use crate::registry::{decode_row, REGISTRY_PREFIX};
use crate::store::txn::APPLIED_INDEX_KEY;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tree {
    Main,
    Free,
}

#[derive(Default)]
struct Counts {
    branch: u64,
    leaf: u64,
    overflow: u64,
    entries: u64,
}

/// A key bound from a parent page, compared as the tree compares keys: a
/// key kept in [`Walker::keys`] (its offset in the high 48 bits, its
/// length in the low 16), or [`Bound::OPEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bound(u64);

impl Bound {
    const OPEN: Bound = Bound(u64::MAX);
}

/// A page to check and where it sits: its tree, level (the root is 1) in
/// a tree of `depth` levels, and the key range its parent gives it.
#[derive(Debug, Clone, Copy)]
struct Place {
    tree: Tree,
    page: u64,
    level: u16,
    depth: u16,
    low: Bound,
    high: Bound,
}

/// A leaf-level page met in the first pass, checked in the second.
#[derive(Debug, Clone, Copy)]
struct Leaf {
    page: u64,
    /// Its index in the depth-first order of the walk.
    pos: u64,
    low: Bound,
    high: Bound,
}

struct Walker<'f> {
    file: &'f File,
    page_size: usize,
    file_pages: u64,
    last_page: u64,
    txnid: u64,
    /// One bit per page of the file: reached already (by a tree, an
    /// overflow run or a free list). Sized by the file, not by the meta's
    /// last page, which damage can make huge.
    seen: Vec<u64>,
    /// Free-listed pages past the end of the file (LMDB frees pages it
    /// never wrote); only free lists can reach there.
    seen_past_end: std::collections::HashSet<u64>,
    options: WalkOptions,
    /// Each with the position of the page where it was found.
    problems: Vec<(u64, Damage)>,
    /// The position of the page being checked, and of the next page met.
    pos: u64,
    next_pos: u64,
    /// Once `max_problems` problems are kept, the position of the last:
    /// a leaf after it cannot change the report and is not checked.
    cutoff: u64,
    free_pages: u64,
    /// One page: a branch page, or a leaf read alone.
    buf: Vec<u8>,
    /// A value read from an overflow run.
    value: Vec<u8>,
    /// The nodes of one page, for the overlap check.
    spans: Vec<(usize, usize)>,
    /// The keys of branch pages, which bound their children.
    keys: Vec<u8>,
    /// The pages still to visit in the first pass.
    stack: Vec<Place>,
    /// The leaf-level pages the first pass met.
    leaves: Vec<Leaf>,
}

impl<'f> Walker<'f> {
    fn new(file: &'f File, meta: &Meta, file_pages: u64, options: WalkOptions) -> Self {
        Walker {
            file,
            page_size: meta.page_size as usize,
            file_pages,
            last_page: meta.last_page,
            txnid: meta.txnid,
            // Sized by what can be in use: pages past the file's end are
            // refused, and past the last page too (a sparse file can be
            // huge).
            seen: vec![
                0;
                usize::try_from(file_pages.min(meta.last_page + 1) / 64 + 1).unwrap_or(0)
            ],
            seen_past_end: std::collections::HashSet::new(),
            options: WalkOptions {
                max_problems: options.max_problems.max(1),
                ..options
            },
            problems: Vec::new(),
            pos: 0,
            next_pos: 0,
            cutoff: u64::MAX,
            free_pages: 0,
            buf: Vec::with_capacity(meta.page_size as usize),
            value: Vec::new(),
            spans: Vec::new(),
            keys: Vec::new(),
            stack: Vec::new(),
            leaves: Vec::new(),
        }
    }
}

impl Walker<'_> {
    fn full(&self) -> bool {
        self.problems.len() >= self.options.max_problems
    }

    /// Keeps a problem of the page at `self.pos`, and of all problems the
    /// `max_problems` first in depth-first order (the first found of a
    /// page before its later ones).
    fn report(&mut self, d: Damage) {
        let max = self.options.max_problems;
        self.problems.push((self.pos, d));
        if self.problems.len() > max {
            self.problems.sort_by_key(|(pos, _)| *pos);
            self.problems.truncate(max);
        }
        if self.problems.len() >= max {
            self.cutoff = self.problems.iter().map(|(pos, _)| *pos).max().unwrap_or(0);
        }
    }

    /// Keeps `key` as the bound of the children of a branch page.
    fn keep_key(&mut self, key: &[u8]) -> Bound {
        let at = self.keys.len() as u64;
        self.keys.extend_from_slice(key);
        Bound(at << 16 | key.len() as u64)
    }

    fn bound(&self, bound: Bound) -> Option<&[u8]> {
        (bound != Bound::OPEN).then(|| {
            let at = (bound.0 >> 16) as usize;
            &self.keys[at..at + (bound.0 & 0xffff) as usize]
        })
    }

    /// Marks `count` pages from `first` as reached; false (with the damage
    /// reported) when one is out of range or reached before.
    fn claim(&mut self, first: u64, count: u64, in_file: bool, what: &str) -> bool {
        let Some(end) = first.checked_add(count) else {
            self.report(damage(
                Some(first),
                DamageKind::PageNumber,
                format!("{what}: page run overflows"),
            ));
            return false;
        };
        if first < NUM_METAS || end - 1 > self.last_page {
            self.report(damage(
                Some(first),
                DamageKind::PageNumber,
                format!(
                    "{what}: pages {first}..{end} are outside the database's pages 2..={}",
                    self.last_page
                ),
            ));
            return false;
        }
        if in_file && end > self.file_pages {
            self.report(damage(
                Some(first),
                DamageKind::Truncated,
                format!(
                    "{what}: the file holds {} pages, so page {} is missing (truncated file)",
                    self.file_pages,
                    end - 1
                ),
            ));
            return false;
        }
        for page in first..end {
            let fresh = if page / 64 < self.seen.len() as u64 {
                let (word, bit) = ((page / 64) as usize, 1u64 << (page % 64));
                let fresh = self.seen[word] & bit == 0;
                self.seen[word] |= bit;
                fresh
            } else {
                self.seen_past_end.insert(page)
            };
            if !fresh {
                self.report(damage(
                    Some(page),
                    DamageKind::PageNumber,
                    format!(
                        "{what}: page {page} is reached twice (a cycle or a page in two places)"
                    ),
                ));
                return false;
            }
        }
        true
    }

    /// Reads one page into `buf` (a buffer of the walker's, taken out and
    /// given back by the caller).
    fn read_page(&self, page: u64, buf: &mut Vec<u8>) -> Result<(), Damage> {
        buf.resize(self.page_size, 0);
        read_at(self.file, buf, page * self.page_size as u64, Some(page))
    }

    fn compare(tree: Tree, a: &[u8], b: &[u8]) -> Ordering {
        match tree {
            Tree::Main => a.cmp(b),
            // MDB_INTEGERKEY: native-endian size_t keys (lengths are
            // checked to be 8 before any comparison).
            Tree::Free => u64_at(a, 0).cmp(&u64_at(b, 0)),
        }
    }

    /// Claims the overflow run of a value starting at `page` and, when the
    /// value is to be checked, reads it into `self.value`; returns its
    /// length there (0 when not read).
    fn overflow(
        &mut self,
        tree: Tree,
        leaf: u64,
        page: u64,
        size: u64,
        counts: &mut Counts,
    ) -> Option<usize> {
        let ps = self.page_size as u64;
        let needed = (PAGE_HEADER as u64 - 1 + size) / ps + 1;
        if page < NUM_METAS || page > self.last_page || page >= self.file_pages {
            self.report(damage(
                Some(leaf),
                DamageKind::PageNumber,
                format!("a value's overflow page {page} is outside the file's pages"),
            ));
            return None;
        }
        let mut header = [0u8; PAGE_HEADER];
        if let Err(d) = read_at(self.file, &mut header, page * ps, Some(page)) {
            self.report(d);
            return None;
        }
        let flags = u16_at(&header, 10);
        let pages = u64::from(u32_at(&header, 12));
        if u64_at(&header, 0) != page || flags != P_OVERFLOW || pages < needed {
            self.report(damage(
                Some(page),
                DamageKind::PageHeader,
                format!(
                    "not the overflow run of a {size}-byte value (number {}, flags 0x{flags:04x}, \
                     {pages} pages for {needed} needed)",
                    u64_at(&header, 0)
                ),
            ));
            return None;
        }
        if !self.claim(page, pages, true, "overflow run") {
            return None;
        }
        counts.overflow += pages;
        if tree == Tree::Main && !self.options.rows {
            return Some(0);
        }
        let size = usize::try_from(size).ok()?;
        let mut value = std::mem::take(&mut self.value);
        value.resize(size, 0);
        let read = read_at(
            self.file,
            &mut value,
            page * ps + PAGE_HEADER as u64,
            Some(page),
        );
        self.value = value;
        match read {
            Ok(()) => Some(size),
            Err(d) => {
                self.report(d);
                None
            }
        }
    }

    /// The first pass over a tree from `root`: every page above the leaf
    /// level read and checked, depth first, each page claimed and given
    /// its position; the leaf-level pages noted in `self.leaves`.
    fn descend(&mut self, root: Place, counts: &mut Counts) {
        self.stack.clear();
        self.stack.push(root);
        let mut buf = std::mem::take(&mut self.buf);
        while let Some(at) = self.stack.pop() {
            if self.full() {
                break;
            }
            self.pos = self.next_pos;
            self.next_pos += 1;
            if !self.claim(at.page, 1, true, "tree page") {
                continue;
            }
            if at.level == at.depth {
                self.leaves.push(Leaf {
                    page: at.page,
                    pos: self.pos,
                    low: at.low,
                    high: at.high,
                });
                continue;
            }
            if let Err(d) = self.read_page(at.page, &mut buf) {
                self.report(d);
                continue;
            }
            if let Some(keys) = self.check_page(&at, &buf, counts) {
                self.push_children(&at, &buf, keys);
            }
        }
        self.stack.clear();
        self.buf = buf;
    }

    /// The second pass: the leaves the first one met, each checked as in
    /// its place. The main tree's in file order out of large reads; the
    /// free-page tree's (a handful) in depth-first order, one read each,
    /// since its free lists claim pages as they are met.
    fn check_leaves(&mut self, tree: Tree, depth: u16, counts: &mut Counts) {
        let mut leaves = std::mem::take(&mut self.leaves);
        let mut buf = std::mem::take(&mut self.buf);
        let place = |leaf: &Leaf| Place {
            tree,
            page: leaf.page,
            level: depth,
            depth,
            low: leaf.low,
            high: leaf.high,
        };
        if tree == Tree::Main {
            in_page_order(&mut leaves);
            let pages = chunks::Pages {
                file: self.file,
                page_size: self.page_size,
                file_pages: self.file_pages,
                n: leaves.len(),
                page: |i: usize| leaves[i].page,
            };
            pages.each(|i, bytes| {
                let leaf = &leaves[i];
                if leaf.pos > self.cutoff {
                    return;
                }
                self.pos = leaf.pos;
                match bytes {
                    Some(bytes) => self.check_leaf(&place(leaf), bytes, counts),
                    // A chunk that could not be read whole: the page's own
                    // read says which page is missing or unreadable.
                    None => self.check_alone(&place(leaf), &mut buf, counts),
                }
            });
        } else {
            for leaf in &leaves {
                if leaf.pos <= self.cutoff {
                    self.pos = leaf.pos;
                    self.check_alone(&place(leaf), &mut buf, counts);
                }
            }
        }
        leaves.clear();
        self.leaves = leaves;
        self.buf = buf;
    }

    /// One leaf read on its own into `buf`.
    fn check_alone(&mut self, at: &Place, buf: &mut Vec<u8>, counts: &mut Counts) {
        match self.read_page(at.page, buf) {
            Ok(()) => self.check_leaf(at, buf, counts),
            Err(d) => self.report(d),
        }
    }

    /// One leaf: cleared in one pass when it is a healthy main-tree leaf
    /// of inline values (`clean.rs`), else through every check of
    /// `page.rs`, which finds and words the problem.
    fn check_leaf(&mut self, at: &Place, buf: &[u8], counts: &mut Counts) {
        if at.tree == Tree::Main {
            let (low, high) = (self.bound(at.low), self.bound(at.high));
            if let Some(keys) = clean::clean_leaf(buf, at.page, low, high) {
                counts.leaf += 1;
                counts.entries += keys as u64;
                if self.options.rows {
                    for i in 0..keys {
                        let (key, value) = clean::node(buf, i);
                        self.check_row(at.page, key, value);
                    }
                }
                return;
            }
        }
        self.check_page(at, buf, counts);
    }

    /// A free-list record: a count, then that many page numbers.
    fn free_list(&mut self, leaf: u64, key: &[u8], value: &[u8]) {
        let malformed = |detail: String| damage(Some(leaf), DamageKind::FreeList, detail);
        // Keyed by the transaction that freed the pages: one that has
        // committed, so at most this snapshot's.
        let freed_by = u64_at(key, 0);
        if freed_by == 0 || freed_by > self.txnid {
            return self.report(malformed(format!(
                "a free list of transaction {freed_by}, in a snapshot of transaction {}",
                self.txnid
            )));
        }
        if value.len() < 8 || !value.len().is_multiple_of(8) {
            return self.report(malformed(format!(
                "a free list of {} bytes, not a whole number of page numbers",
                value.len()
            )));
        }
        let count = u64_at(value, 0);
        // LMDB reads only the count; a record may have room to spare
        // (mdb_freelist_save reserves before it fills).
        let used = count.checked_add(1).and_then(|n| n.checked_mul(8));
        if used.is_none_or(|used| used > value.len() as u64) {
            return self.report(malformed(format!(
                "a free list claims {count} pages in {} bytes",
                value.len()
            )));
        }
        let mut previous = u64::MAX;
        for at in (8..8 + 8 * count as usize).step_by(8) {
            let page = u64_at(value, at);
            // LMDB merges free lists and finds runs of free pages assuming
            // each list is strictly descending; an unsorted one could make
            // it hand out a page that is in use.
            if page >= previous {
                return self.report(malformed(format!(
                    "a free list is not in descending order (page {page} after {previous})"
                )));
            }
            previous = page;
            // A free page past the end of the file is normal: LMDB frees
            // pages it never wrote.
            if !self.claim(page, 1, false, "free list") {
                return;
            }
            self.free_pages += 1;
        }
    }

    fn check_row(&mut self, leaf: u64, key: &[u8], value: &[u8]) {
        let problem = if key == APPLIED_INDEX_KEY {
            (value.len() != 8).then(|| format!("the applied index is {} bytes, not 8", value.len()))
        } else if key.starts_with(REGISTRY_PREFIX) {
            decode_row(key, value).err().map(|e| e.to_string())
        } else {
            Some(format!(
                "a key outside the registry's layout ({} bytes)",
                key.len()
            ))
        };
        if let Some(detail) = problem {
            self.report(damage(Some(leaf), DamageKind::Row, detail));
        }
    }

    fn tree(&mut self, tree: Tree, db: &DbRecord) -> Counts {
        let mut counts = Counts::default();
        let name = match tree {
            Tree::Main => "main",
            Tree::Free => "free-page",
        };
        self.pos = self.next_pos;
        if db.root == P_INVALID {
            if db.depth != 0 || db.entries != 0 {
                self.report(damage(
                    None,
                    DamageKind::Counts,
                    format!(
                        "the {name} database has no root but claims {} entries",
                        db.entries
                    ),
                ));
            }
            return counts;
        }
        if db.depth == 0 {
            self.report(damage(
                None,
                DamageKind::Meta,
                format!("the {name} database has a root but depth 0"),
            ));
            return counts;
        }
        let root = Place {
            tree,
            page: db.root,
            level: 1,
            depth: db.depth,
            low: Bound::OPEN,
            high: Bound::OPEN,
        };
        self.descend(root, &mut counts);
        self.check_leaves(tree, db.depth, &mut counts);
        self.pos = self.next_pos;
        if self.problems.is_empty() {
            let found = (counts.branch, counts.leaf, counts.overflow, counts.entries);
            let claimed = (
                db.branch_pages,
                db.leaf_pages,
                db.overflow_pages,
                db.entries,
            );
            if found != claimed {
                self.report(damage(
                    None,
                    DamageKind::Counts,
                    format!(
                        "the {name} database has (branch, leaf, overflow pages, entries) = \
                         {found:?}, the meta says {claimed:?}"
                    ),
                ));
            }
        }
        counts
    }
}

/// Puts `leaves` (distinct pages, each claimed once) in page order: through
/// a table indexed by page rather than a sort, which costs a good part of
/// the reads, when the pages are dense enough for the table to be small
/// (a damaged tree can point far into a sparse file).
fn in_page_order(leaves: &mut Vec<Leaf>) {
    let end = leaves.iter().map(|leaf| leaf.page + 1).max().unwrap_or(0);
    let dense = end <= 16 * leaves.len() as u64 + 4096;
    let (true, Ok(end), Ok(_)) = (dense, usize::try_from(end), u32::try_from(leaves.len())) else {
        return leaves.sort_unstable_by_key(|leaf| leaf.page);
    };
    let mut slot = vec![u32::MAX; end];
    for (i, leaf) in leaves.iter().enumerate() {
        slot[leaf.page as usize] = i as u32;
    }
    let ordered: Vec<Leaf> = slot
        .iter()
        .filter(|&&i| i != u32::MAX)
        .map(|&i| leaves[i as usize])
        .collect();
    *leaves = ordered;
}

/// Walks the snapshot of `meta` in `file`. The caller pins that snapshot
/// (a read transaction at `meta.txnid`), so LMDB reuses none of its pages
/// during the walk.
pub fn walk(file: &File, meta: &Meta, options: WalkOptions) -> VerifyReport {
    let page_size = meta.page_size as usize;
    // Without the file's size every page would look missing: say so
    // instead of reporting a truncation.
    let file_len = match file.metadata() {
        Ok(m) => m.len(),
        Err(e) => {
            return VerifyReport {
                txnid: meta.txnid,
                page_size: meta.page_size,
                last_page: meta.last_page,
                problems: vec![damage(
                    None,
                    DamageKind::Io,
                    format!("cannot stat data.mdb: {e}"),
                )],
                ..VerifyReport::default()
            }
        }
    };
    let file_pages = file_len / page_size as u64;
    let mut walker = Walker::new(file, meta, file_pages, options);
    let main = walker.tree(Tree::Main, &meta.main);
    if !walker.full() {
        let free = walker.tree(Tree::Free, &meta.free);
        // Every page LMDB has allocated is a meta, in a tree, or free (its
        // own audit, mdb_audit); a last page damaged upwards fails this.
        let accounted = NUM_METAS
            + [&main, &free]
                .iter()
                .map(|c| c.branch + c.leaf + c.overflow)
                .sum::<u64>()
            + walker.free_pages;
        if walker.problems.is_empty() && accounted != meta.last_page + 1 {
            walker.report(damage(
                Some(meta.slot),
                DamageKind::Counts,
                format!(
                    "{accounted} pages are metas, in a tree or free, but the meta's last page is \
                     {} ({} pages)",
                    meta.last_page,
                    meta.last_page + 1
                ),
            ));
        }
    }
    let mut problems = walker.problems;
    problems.sort_by_key(|(pos, _)| *pos);
    VerifyReport {
        txnid: meta.txnid,
        page_size: meta.page_size,
        file_pages,
        last_page: meta.last_page,
        depth: meta.main.depth,
        entries: main.entries,
        branch_pages: main.branch,
        leaf_pages: main.leaf,
        overflow_pages: main.overflow,
        free_pages: walker.free_pages,
        problems: problems.into_iter().map(|(_, d)| d).collect(),
        warnings: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
