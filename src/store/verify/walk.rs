//! The page walker: every page reachable from the meta LMDB uses, in the
//! main tree and the free-page tree, checked on the bytes of the file
//! (step 2 of [`super`]).

use std::cmp::Ordering;
use std::fs::File;

use super::format::{
    read_at, u16_at, u32_at, u64_at, DbRecord, Meta, F_BIGDATA, F_DUPDATA, F_SUBDATA, NODE_HEADER,
    NUM_METAS, PAGE_HEADER, P_BRANCH, P_INVALID, P_LEAF, P_OVERFLOW,
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

/// A page header that passed [`Walker::check_header`].
struct PageShape {
    is_leaf: bool,
    /// Nodes in the node table.
    keys: usize,
    /// Where the node area starts.
    upper: usize,
}

/// Where one node lies on its page, as [`Walker::node_extent`] found it.
struct NodeExtent {
    /// The node's offset, and the end of its key and inline value.
    at: usize,
    end: usize,
    key_start: usize,
    key_end: usize,
    /// The node header's two size halves and flags: a leaf's value size,
    /// or a branch's child page number.
    lo: u64,
    hi: u64,
    node_flags: u16,
}

impl NodeExtent {
    fn data_size(&self) -> u64 {
        self.lo | (self.hi << 16)
    }

    fn child(&self) -> u64 {
        self.lo | (self.hi << 16) | (u64::from(self.node_flags) << 32)
    }
}

/// Child `i` of a branch holds keys from key `i` (the parent's low bound
/// for `i = 0`) up to, not including, key `i + 1` (the parent's high bound
/// for the last).
fn child_bounds(
    buf: &[u8],
    children: &[u64],
    low: &Bound,
    high: &Bound,
) -> Vec<(u64, Bound, Bound)> {
    let key_of = |i: usize| -> Vec<u8> {
        let at = usize::from(u16_at(buf, PAGE_HEADER + 2 * i));
        let size = usize::from(u16_at(buf, at + 6));
        buf[at + NODE_HEADER..at + NODE_HEADER + size].to_vec()
    };
    (0..children.len())
        .map(|i| {
            let child_low = if i == 0 { low.clone() } else { Some(key_of(i)) };
            let child_high = if i + 1 < children.len() {
                Some(key_of(i + 1))
            } else {
                high.clone()
            };
            (children[i], child_low, child_high)
        })
        .collect()
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

    /// Checks one tree page; returns its children with their key bounds.
    /// In three steps, each of which reports the first problem it finds
    /// and stops the page there: the header against the page's place, then
    /// every node in the node table, then the key range of each child.
    fn check_page(
        &mut self,
        at: &Place<'_>,
        buf: &[u8],
        counts: &mut Counts,
    ) -> Vec<(u64, Bound, Bound)> {
        let Some(shape) = self.check_header(at, buf, counts) else {
            return Vec::new();
        };
        let Some(children) = self.check_nodes(at, buf, &shape, counts) else {
            return Vec::new();
        };
        if shape.is_leaf {
            return Vec::new();
        }
        child_bounds(buf, &children, at.low, at.high)
    }

    /// The page header: its number, its kind (branch or leaf) against its
    /// level, its free-space bounds and its node count. Counts the page.
    fn check_header(
        &mut self,
        at: &Place<'_>,
        buf: &[u8],
        counts: &mut Counts,
    ) -> Option<PageShape> {
        let Place {
            page, level, depth, ..
        } = *at;
        let ps = self.page_size;
        let number = u64_at(buf, 0);
        let flags = u16_at(buf, 10);
        let lower = usize::from(u16_at(buf, 12));
        let upper = usize::from(u16_at(buf, 14));
        let bad = |kind, detail: String| damage(Some(page), kind, detail);
        if number != page {
            self.report(bad(
                DamageKind::PageHeader,
                format!("the page says it is page {number}"),
            ));
            return None;
        }
        let is_leaf = match flags {
            P_LEAF => true,
            P_BRANCH => false,
            _ => {
                self.report(bad(
                    DamageKind::PageHeader,
                    format!("flags 0x{flags:04x}: neither a branch nor a leaf page"),
                ));
                return None;
            }
        };
        if is_leaf != (level == depth) {
            self.report(bad(
                DamageKind::TreeShape,
                format!(
                    "a {} at level {level} of a tree of depth {depth}",
                    if is_leaf { "leaf" } else { "branch" }
                ),
            ));
            return None;
        }
        if lower < PAGE_HEADER
            || lower > upper
            || upper > ps
            || !(lower - PAGE_HEADER).is_multiple_of(2)
            || !upper.is_multiple_of(2)
        {
            self.report(bad(
                DamageKind::PageHeader,
                format!("free-space bounds {lower}..{upper} do not fit a {ps}-byte page"),
            ));
            return None;
        }
        let keys = (lower - PAGE_HEADER) / 2;
        // LMDB asserts that a branch has two children (mdb_rebalance, for
        // every tree; the free tree has one only in the middle of a
        // rebalance, never in a commit).
        let min_keys = if is_leaf { 1 } else { 2 };
        if keys < min_keys {
            self.report(bad(
                DamageKind::TreeShape,
                format!("{keys} nodes; a page of this kind has at least {min_keys}"),
            ));
            return None;
        }
        if is_leaf {
            counts.leaf += 1;
            counts.entries += keys as u64;
        } else {
            counts.branch += 1;
        }
        Some(PageShape {
            is_leaf,
            keys,
            upper,
        })
    }

    /// Every node of the page's node table: within the page, keys in
    /// order, a leaf's value read (and checked) and a branch's child
    /// collected; then no two nodes overlapping. Returns the children.
    fn check_nodes(
        &mut self,
        at: &Place<'_>,
        buf: &[u8],
        shape: &PageShape,
        counts: &mut Counts,
    ) -> Option<Vec<u64>> {
        let mut spans: Vec<(usize, usize)> = Vec::with_capacity(shape.keys);
        let mut children = Vec::new();
        let mut previous: Option<&[u8]> = None;
        for i in 0..shape.keys {
            let node = self.node_extent(at.page, buf, shape, i)?;
            spans.push((node.at, node.end));
            let key = &buf[node.key_start..node.key_end];
            if !self.check_key_order(at, shape.is_leaf, i, key, previous) {
                return None;
            }
            if shape.is_leaf || i > 0 {
                previous = Some(key);
            }
            if shape.is_leaf {
                if !self.check_leaf_value(at, buf, &node, key, counts) {
                    return None;
                }
            } else {
                children.push(node.child());
            }
        }
        spans.sort_unstable();
        if let Some(w) = spans.windows(2).find(|w| w[0].1 > w[1].0) {
            self.report(damage(
                Some(at.page),
                DamageKind::NodeBounds,
                format!("nodes at offsets {} and {} overlap", w[0].0, w[1].0),
            ));
            return None;
        }
        Some(children)
    }

    /// Node `i`'s header, key and (in a leaf) inline value: all within the
    /// page, at an aligned offset, with flags a registry's nodes have.
    fn node_extent(
        &mut self,
        page: u64,
        buf: &[u8],
        shape: &PageShape,
        i: usize,
    ) -> Option<NodeExtent> {
        let ps = self.page_size;
        let upper = shape.upper;
        let bad = |detail: String| damage(Some(page), DamageKind::NodeBounds, detail);
        let at = usize::from(u16_at(buf, PAGE_HEADER + 2 * i));
        // Nodes are 2-byte aligned: LMDB asserts it when it moves one.
        if at < upper || at + NODE_HEADER > ps || !at.is_multiple_of(2) {
            self.report(bad(format!(
                "node {i} at offset {at} is outside the node area {upper}..{ps}"
            )));
            return None;
        }
        let lo = u64::from(u16_at(buf, at));
        let hi = u64::from(u16_at(buf, at + 2));
        let node_flags = u16_at(buf, at + 4);
        let key_size = usize::from(u16_at(buf, at + 6));
        let key_start = at + NODE_HEADER;
        let key_end = key_start + key_size;
        if key_end > ps {
            self.report(bad(format!(
                "node {i}: its {key_size}-byte key runs past the page"
            )));
            return None;
        }
        let data_size = lo | (hi << 16);
        let end = if shape.is_leaf {
            if node_flags & (F_SUBDATA | F_DUPDATA) != 0 || node_flags & !F_BIGDATA != 0 {
                self.report(bad(format!(
                    "node {i}: flags 0x{node_flags:04x} (sub-databases and duplicates are not \
                     part of a registry)"
                )));
                return None;
            }
            let inline = if node_flags & F_BIGDATA != 0 {
                8
            } else {
                data_size
            };
            let end = key_end as u64 + inline;
            if end > ps as u64 {
                self.report(bad(format!(
                    "node {i}: its {data_size}-byte value runs past the page"
                )));
                return None;
            }
            end as usize
        } else {
            key_end
        };
        Some(NodeExtent {
            at,
            end,
            key_start,
            key_end,
            lo,
            hi,
            node_flags,
        })
    }

    /// Keys: in order, within the parent's bounds. A branch's first key is
    /// not used by LMDB (its child's low bound is the parent's). False when
    /// a problem was reported.
    fn check_key_order(
        &mut self,
        at: &Place<'_>,
        is_leaf: bool,
        i: usize,
        key: &[u8],
        previous: Option<&[u8]>,
    ) -> bool {
        let Place {
            tree, low, high, ..
        } = *at;
        let bad = |kind, detail: String| damage(Some(at.page), kind, detail);
        let ordered = !is_leaf && i == 0 || {
            if tree == Tree::Free && key.len() != 8 {
                self.report(bad(
                    DamageKind::FreeList,
                    format!("node {i}: a free-list key of {} bytes, not 8", key.len()),
                ));
                return false;
            }
            let after_previous =
                previous.is_none_or(|p| Self::compare(tree, p, key) == Ordering::Less);
            let above_low = low
                .as_deref()
                .is_none_or(|l| Self::compare(tree, l, key) != Ordering::Greater);
            let below_high = high
                .as_deref()
                .is_none_or(|h| Self::compare(tree, key, h) == Ordering::Less);
            after_previous && above_low && below_high
        };
        if !ordered {
            self.report(bad(
                DamageKind::KeyOrder,
                format!("node {i}: its key is out of order"),
            ));
        }
        ordered
    }

    /// A leaf node's value, inline or on an overflow run, checked as a
    /// free list or (in a full verify) as a row. False when the overflow
    /// run was bad (reported).
    fn check_leaf_value(
        &mut self,
        at: &Place<'_>,
        buf: &[u8],
        node: &NodeExtent,
        key: &[u8],
        counts: &mut Counts,
    ) -> bool {
        let value = if node.node_flags & F_BIGDATA != 0 {
            let first = u64_at(buf, node.key_end);
            match self.overflow(at.tree, at.page, first, node.data_size(), counts) {
                Some(v) => v,
                None => return false,
            }
        } else {
            buf[node.key_end..node.end].to_vec()
        };
        match at.tree {
            Tree::Free => self.free_list(at.page, key, &value),
            Tree::Main if self.options.rows => self.check_row(at.page, key, &value),
            Tree::Main => {}
        }
        true
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
