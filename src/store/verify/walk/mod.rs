//! The page walker: every page reachable from the meta LMDB uses, in the
//! main tree and the free-page tree, checked on the bytes of the file
//! (step 2 of [`super`]). The walk itself, page claims and free lists are
//! here; one page's checks are `page.rs`.

use std::cmp::Ordering;
use std::fs::File;

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
    problems: Vec<Damage>,
    free_pages: u64,
    buf: Vec<u8>,
}

/// A key bound from a parent page, compared as the tree compares keys;
/// None is open.
type Bound = Option<Vec<u8>>;

/// A page to check and where it sits: its tree, level (the root is 1) in
/// a tree of `depth` levels, and the key range its parent gives it.
#[derive(Clone, Copy)]
struct Place<'b> {
    tree: Tree,
    page: u64,
    level: u16,
    depth: u16,
    low: &'b Bound,
    high: &'b Bound,
}

impl Walker<'_> {
    fn full(&self) -> bool {
        self.problems.len() >= self.options.max_problems
    }

    fn report(&mut self, d: Damage) {
        if !self.full() {
            self.problems.push(d);
        }
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

    fn read_page(&mut self, page: u64) -> Result<Vec<u8>, Damage> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(self.page_size, 0);
        let result = read_at(
            self.file,
            &mut buf,
            page * self.page_size as u64,
            Some(page),
        );
        match result {
            Ok(()) => Ok(buf),
            Err(d) => {
                self.buf = buf;
                Err(d)
            }
        }
    }

    fn compare(tree: Tree, a: &[u8], b: &[u8]) -> Ordering {
        match tree {
            Tree::Main => a.cmp(b),
            // MDB_INTEGERKEY: native-endian size_t keys (lengths are
            // checked to be 8 before any comparison).
            Tree::Free => u64_at(a, 0).cmp(&u64_at(b, 0)),
        }
    }

    /// Reads a value stored on an overflow run starting at `page`.
    fn overflow(
        &mut self,
        tree: Tree,
        leaf: u64,
        page: u64,
        size: u64,
        counts: &mut Counts,
    ) -> Option<Vec<u8>> {
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
            return Some(Vec::new());
        }
        let mut value = vec![0u8; usize::try_from(size).ok()?];
        if let Err(d) = read_at(
            self.file,
            &mut value,
            page * ps + PAGE_HEADER as u64,
            Some(page),
        ) {
            self.report(d);
            return None;
        }
        Some(value)
    }

    fn visit(&mut self, at: Place<'_>, counts: &mut Counts) {
        if self.full() || !self.claim(at.page, 1, true, "tree page") {
            return;
        }
        let buf = match self.read_page(at.page) {
            Ok(buf) => buf,
            Err(d) => return self.report(d),
        };
        let children = self.check_page(&at, &buf, counts);
        self.buf = buf;
        for (child, low, high) in children {
            let below = Place {
                page: child,
                level: at.level + 1,
                low: &low,
                high: &high,
                ..at
            };
            self.visit(below, counts);
        }
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
            low: &None,
            high: &None,
        };
        self.visit(root, &mut counts);
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
    let mut walker = Walker {
        file,
        page_size,
        file_pages,
        last_page: meta.last_page,
        txnid: meta.txnid,
        // Sized by what can be in use: pages past the file's end are
        // refused, and past the last page too (a sparse file can be huge).
        seen: vec![0; usize::try_from(file_pages.min(meta.last_page + 1) / 64 + 1).unwrap_or(0)],
        seen_past_end: std::collections::HashSet::new(),
        options: WalkOptions {
            max_problems: options.max_problems.max(1),
            ..options
        },
        problems: Vec::new(),
        free_pages: 0,
        buf: Vec::with_capacity(page_size),
    };
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
        problems: walker.problems,
        warnings: Vec::new(),
    }
}
