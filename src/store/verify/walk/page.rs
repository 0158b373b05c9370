//! One tree page, checked on its bytes in three steps: the header against
//! the page's place in the tree, every node of the node table (bounds, key
//! order, a leaf's value), then the key range each child of a branch
//! inherits.

use std::cmp::Ordering;

use super::{Counts, Place, Tree, Walker};
use crate::store::verify::format::{
    u16_at, u64_at, F_BIGDATA, F_DUPDATA, F_SUBDATA, NODE_HEADER, PAGE_HEADER, P_BRANCH, P_LEAF,
};
use crate::store::verify::report::{damage, DamageKind};

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
}

impl Walker<'_> {
    /// Checks one tree page; returns its node count when it passed. In
    /// three steps, each of which reports the first problem it finds and
    /// stops the page there: the header against the page's place, then
    /// every node in the node table; the key range of each child of a
    /// branch is [`Walker::push_children`]'s.
    pub(super) fn check_page(
        &mut self,
        at: &Place,
        buf: &[u8],
        counts: &mut Counts,
    ) -> Option<usize> {
        let shape = self.check_header(at, buf, counts)?;
        self.check_nodes(at, buf, &shape, counts)
            .then_some(shape.keys)
    }

    /// Child `i` of a branch that passed [`Walker::check_page`] holds keys
    /// from key `i` (the parent's low bound for `i = 0`) up to, not
    /// including, key `i + 1` (the parent's high bound for the last): each
    /// key is kept once, as the high bound of one child and the low bound
    /// of the next. Pushed last child first, so the first is visited first.
    pub(super) fn push_children(&mut self, at: &Place, buf: &[u8], keys: usize) {
        let mut high = at.high;
        for i in (0..keys).rev() {
            let node = usize::from(u16_at(buf, PAGE_HEADER + 2 * i));
            let lo = u64::from(u16_at(buf, node));
            let hi = u64::from(u16_at(buf, node + 2));
            let flags = u64::from(u16_at(buf, node + 4));
            let size = usize::from(u16_at(buf, node + 6));
            let low = if i == 0 {
                at.low
            } else {
                self.keep_key(&buf[node + NODE_HEADER..node + NODE_HEADER + size])
            };
            self.stack.push(Place {
                page: lo | (hi << 16) | (flags << 32),
                level: at.level + 1,
                low,
                high,
                ..*at
            });
            high = low;
        }
    }

    /// The page header: its number, its kind (branch or leaf) against its
    /// level, its free-space bounds and its node count. Counts the page.
    fn check_header(&mut self, at: &Place, buf: &[u8], counts: &mut Counts) -> Option<PageShape> {
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
    /// order, a leaf's value read (and checked); then no two nodes
    /// overlapping. False when a problem was reported.
    fn check_nodes(
        &mut self,
        at: &Place,
        buf: &[u8],
        shape: &PageShape,
        counts: &mut Counts,
    ) -> bool {
        let mut spans = std::mem::take(&mut self.spans);
        spans.clear();
        let ok = self.check_each_node(at, buf, shape, counts, &mut spans)
            && self.check_overlap(at, &mut spans);
        self.spans = spans;
        ok
    }

    fn check_each_node(
        &mut self,
        at: &Place,
        buf: &[u8],
        shape: &PageShape,
        counts: &mut Counts,
        spans: &mut Vec<(usize, usize)>,
    ) -> bool {
        let mut previous: Option<&[u8]> = None;
        for i in 0..shape.keys {
            let Some(node) = self.node_extent(at.page, buf, shape, i) else {
                return false;
            };
            spans.push((node.at, node.end));
            let key = &buf[node.key_start..node.key_end];
            if !self.check_key_order(at, shape.is_leaf, i, key, previous) {
                return false;
            }
            if shape.is_leaf || i > 0 {
                previous = Some(key);
            }
            if shape.is_leaf && !self.check_leaf_value(at, buf, &node, key, counts) {
                return false;
            }
        }
        true
    }

    fn check_overlap(&mut self, at: &Place, spans: &mut [(usize, usize)]) -> bool {
        spans.sort_unstable();
        if let Some(w) = spans.windows(2).find(|w| w[0].1 > w[1].0) {
            self.report(damage(
                Some(at.page),
                DamageKind::NodeBounds,
                format!("nodes at offsets {} and {} overlap", w[0].0, w[1].0),
            ));
            return false;
        }
        true
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
        at: &Place,
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
            let above_low = self
                .bound(low)
                .is_none_or(|l| Self::compare(tree, l, key) != Ordering::Greater);
            let below_high = self
                .bound(high)
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
        at: &Place,
        buf: &[u8],
        node: &NodeExtent,
        key: &[u8],
        counts: &mut Counts,
    ) -> bool {
        if node.node_flags & F_BIGDATA == 0 {
            self.check_value(at, key, &buf[node.key_end..node.end]);
            return true;
        }
        let first = u64_at(buf, node.key_end);
        let Some(len) = self.overflow(at.tree, at.page, first, node.data_size(), counts) else {
            return false;
        };
        let value = std::mem::take(&mut self.value);
        self.check_value(at, key, &value[..len]);
        self.value = value;
        true
    }

    fn check_value(&mut self, at: &Place, key: &[u8], value: &[u8]) {
        match at.tree {
            Tree::Free => self.free_list(at.page, key, value),
            Tree::Main if self.options.rows => self.check_row(at.page, key, value),
            Tree::Main => {}
        }
    }
}
