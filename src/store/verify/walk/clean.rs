//! A healthy leaf of the main tree cleared in one pass over its node
//! table, without reporting, allocating or sorting: [`clean_leaf`] says
//! yes only when every check of `page.rs` would pass the page, so that a
//! page it does not clear (damaged, or merely unusual: a value on an
//! overflow run) goes through `page.rs`, which finds and words the
//! problem exactly as before.
//!
//! Why a yes here is a pass there, check by check (`page.rs` order):
//! - the header: the same tests, with the kind fixed to a leaf (the page
//!   was met at the leaf level, so a branch is refused there too);
//! - each node's extent: the same tests, those of its offset made over
//!   the whole pointer table at once (the least offset at or above
//!   `upper`, the greatest with room for a node header, none odd), and only
//!   flags 0 accepted (`page.rs` also accepts `F_BIGDATA`, whose overflow
//!   run it claims);
//! - key order: each key above the one before (for keys of one length
//!   and 8 to 32 bytes, compared as four big-endian words); the first at or
//!   above the low bound and the last below the high bound, so that all
//!   are within both, which is what `page.rs` asks of each;
//! - overlap: nodes ending at or before the start of the node before them
//!   (LMDB's layout when a page is filled in key order) are disjoint;
//!   otherwise a bitmap of the page's bytes, where a byte claimed twice is
//!   an overlap, as two spans overlapping after sorting are.

use crate::store::verify::format::{u16_at, u64_at, NODE_HEADER, PAGE_HEADER, P_LEAF};

/// Whether `a < b` byte-wise (the main tree's order), eight bytes at a
/// time: whole words while equal, then the last eight bytes of the
/// shorter length, whose part already compared is equal.
#[inline(always)]
fn less(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().min(b.len());
    if n < 8 {
        return a < b;
    }
    let mut i = 0;
    while i + 8 < n {
        let (x, y) = (word(a, i), word(b, i));
        if x != y {
            return x < y;
        }
        i += 8;
    }
    let (x, y) = (word(a, n - 8), word(b, n - 8));
    if x != y {
        return x < y;
    }
    a.len() < b.len()
}

/// The big-endian word at `at` of `s`.
#[inline(always)]
fn word(s: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(s[at..at + 8].try_into().unwrap_or([0; 8]))
}

/// The keys of [`WORDS`] bytes: between two of one length, the byte order
/// is the order of their [`words`].
const WORDS: std::ops::RangeInclusive<usize> = 8..=32;

/// A key of [`WORDS`] bytes as its big-endian words at 0, 8, 16 and its
/// last eight bytes, each offset held to the last: two keys of one length
/// compare as these arrays do, since a word that overlaps the one before
/// differs only where that one ended equal.
#[inline(always)]
fn words(key: &[u8]) -> [u64; 4] {
    let last = key.len() - 8;
    [
        word(key, 0),
        word(key, 8.min(last)),
        word(key, 16.min(last)),
        word(key, last),
    ]
}

/// Whether the key of words `a` is below the key, of the same length, of
/// words `b`.
#[inline(always)]
fn words_less(a: &[u64; 4], b: &[u64; 4]) -> bool {
    if a[0] != b[0] {
        return a[0] < b[0];
    }
    if a[1] != b[1] {
        return a[1] < b[1];
    }
    if a[2] != b[2] {
        return a[2] < b[2];
    }
    a[3] < b[3]
}

/// A node's header at `at` (within `buf`): its value size (the two size
/// halves), flags and key size.
#[inline(always)]
fn node_header(buf: &[u8], at: usize) -> (usize, u16, usize) {
    let h: [u8; NODE_HEADER] = buf[at..at + NODE_HEADER].try_into().unwrap_or([0xff; 8]);
    let half = |i: usize| u16::from_ne_bytes([h[i], h[i + 1]]);
    (
        usize::from(half(0)) | usize::from(half(2)) << 16,
        half(4),
        usize::from(half(6)),
    )
}

/// Node `i` of a page [`clean_leaf`] cleared: its key and inline value.
pub(super) fn node(buf: &[u8], i: usize) -> (&[u8], &[u8]) {
    let at = usize::from(u16_at(buf, PAGE_HEADER + 2 * i));
    let (size, _, key_size) = node_header(buf, at);
    let key_end = at + NODE_HEADER + key_size;
    (
        &buf[at + NODE_HEADER..key_end],
        &buf[key_end..key_end + size],
    )
}

/// The node count of `buf`, page `page` (all of it) met at the leaf level
/// of the main tree between `low` and `high`, when every check of
/// `page.rs` passes it with nothing to claim; None otherwise (damage, or a
/// page `page.rs` must look at).
pub(super) fn clean_leaf(
    buf: &[u8],
    page: u64,
    low: Option<&[u8]>,
    high: Option<&[u8]>,
) -> Option<usize> {
    let ps = buf.len();
    if ps < PAGE_HEADER {
        return None;
    }
    let lower = usize::from(u16_at(buf, 12));
    let upper = usize::from(u16_at(buf, 14));
    if u64_at(buf, 0) != page
        || u16_at(buf, 10) != P_LEAF
        || lower < PAGE_HEADER
        || lower > upper
        || upper > ps
        || !(lower - PAGE_HEADER).is_multiple_of(2)
        || !upper.is_multiple_of(2)
        || lower == PAGE_HEADER
    {
        return None;
    }
    let keys = (lower - PAGE_HEADER) / 2;
    let pointers = &buf[PAGE_HEADER..lower];
    // Every node in the node area, at an even offset, with room for its
    // header: three reductions over the pointers, before any node is read.
    let (mut least, mut most, mut bits) = (u16::MAX, 0u16, 0u16);
    for pointer in pointers.chunks_exact(2) {
        let at = u16::from_ne_bytes([pointer[0], pointer[1]]);
        least = least.min(at);
        most = most.max(at);
        bits |= at;
    }
    if usize::from(least) < upper || usize::from(most) + NODE_HEADER > ps || bits & 1 != 0 {
        return None;
    }
    let mut previous: &[u8] = &[];
    let mut previous_words = [0u64; 4];
    let mut previous_at = ps;
    let mut in_order = true;
    for (i, pointer) in pointers.chunks_exact(2).enumerate() {
        let at = usize::from(u16::from_ne_bytes([pointer[0], pointer[1]]));
        let (size, flags, key_size) = node_header(buf, at);
        let key_end = at + NODE_HEADER + key_size;
        let end = key_end + size;
        if flags != 0 || end > ps {
            return None;
        }
        let key = &buf[at + NODE_HEADER..key_end];
        let fits = WORDS.contains(&key.len());
        let key_words = if fits { words(key) } else { [0; 4] };
        let ordered = if i == 0 {
            low.is_none_or(|low| !less(key, low))
        } else if fits && key.len() == previous.len() {
            words_less(&previous_words, &key_words)
        } else {
            less(previous, key)
        };
        if !ordered {
            return None;
        }
        in_order &= end <= previous_at;
        previous = key;
        previous_words = key_words;
        previous_at = at;
    }
    if high.is_some_and(|high| !less(previous, high)) {
        return None;
    }
    (in_order || disjoint(buf, keys)).then_some(keys)
}

/// Whether the nodes of a page whose extents are all within it claim no
/// byte twice.
fn disjoint(buf: &[u8], keys: usize) -> bool {
    let mut claimed = [0u64; 0x8000 / 64];
    let Some(claimed) = claimed.get_mut(..buf.len().div_ceil(64)) else {
        return false;
    };
    for i in 0..keys {
        let at = usize::from(u16_at(buf, PAGE_HEADER + 2 * i));
        let (size, _, key_size) = node_header(buf, at);
        let end = at + NODE_HEADER + key_size + size;
        let mut byte = at;
        while byte < end {
            let (word, bit) = (byte / 64, byte % 64);
            let n = (64 - bit).min(end - byte);
            let mask = if n == 64 {
                u64::MAX
            } else {
                ((1u64 << n) - 1) << bit
            };
            if claimed[word] & mask != 0 {
                return false;
            }
            claimed[word] |= mask;
            byte += n;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::less;

    #[test]
    fn less_is_the_byte_order_of_slices() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..100_000 {
            let len_a = (next() % 30) as usize;
            let len_b = (next() % 30) as usize;
            // Mostly a shared prefix, as registry keys have.
            let a: Vec<u8> = (0..len_a).map(|_| (next() % 3) as u8).collect();
            let b: Vec<u8> = (0..len_b).map(|_| (next() % 3) as u8).collect();
            assert_eq!(less(&a, &b), a < b, "{a:?} {b:?}");
        }
    }
}
