//! The walker's fast path against its checks: a leaf `clean.rs` clears is
//! one `page.rs` passes with the same counts (over the healthy leaves of a
//! registry, leaves laid out in another order, and thousands of damaged
//! ones); and the problems a walk reports are the first in depth-first
//! order, whatever order the leaves are read in.

use super::*;
use crate::applier::Applier;
use crate::store::verify::format::{open_data_file, read_header, NODE_HEADER};
use crate::store::verify_path;
use crate::test_support::{fresh_path, ScratchPath};
use crate::wire::Registration;
use std::os::unix::fs::FileExt;

/// A registry of `rows` rows over many commits (leaves copied on write
/// all over the file), and its newest meta.
fn registry(tag: &str, rows: u32) -> (ScratchPath, Meta) {
    let dir = fresh_path(tag);
    let mut applier = Applier::open(&dir).expect("open");
    applier.set_durable(false).expect("nosync");
    for i in 0..rows {
        let reg = Registration {
            dek_id: 1 + i % 7,
            full_node_id: u64::from(i) << 16 | u64::from(i & 0xffff),
            local_epoch: 1,
        };
        applier.apply_registration(&reg).expect("apply");
    }
    drop(applier);
    let file = open_data_file(&dir.join("data.mdb")).expect("open");
    let meta = read_header(&file).expect("header");
    (dir, meta)
}

/// A walker over `file` that has made the first pass of the main tree:
/// its leaves, with their places, are in `walker.leaves`.
fn first_pass<'f>(file: &'f File, meta: &Meta, options: WalkOptions) -> Walker<'f> {
    let pages = file.metadata().expect("stat").len() / u64::from(meta.page_size);
    let mut walker = Walker::new(file, meta, pages, options);
    let root = Place {
        tree: Tree::Main,
        page: meta.main.root,
        level: 1,
        depth: meta.main.depth,
        low: Bound::OPEN,
        high: Bound::OPEN,
    };
    walker.descend(root, &mut Counts::default());
    assert!(walker.problems.is_empty());
    walker
}

fn read(file: &File, page: u64, ps: usize) -> Vec<u8> {
    let mut buf = vec![0u8; ps];
    file.read_exact_at(&mut buf, page * ps as u64)
        .expect("read");
    buf
}

/// What `page.rs` makes of `buf` as leaf `leaf`: its problems and counts.
fn exact(walker: &mut Walker<'_>, leaf: &Leaf, depth: u16, buf: &[u8]) -> (usize, Counts) {
    walker.problems.clear();
    walker.cutoff = u64::MAX;
    let mut counts = Counts::default();
    let at = Place {
        tree: Tree::Main,
        page: leaf.page,
        level: depth,
        depth,
        low: leaf.low,
        high: leaf.high,
    };
    walker.check_page(&at, buf, &mut counts);
    (walker.problems.len(), counts)
}

fn clean(walker: &Walker<'_>, leaf: &Leaf, buf: &[u8]) -> Option<usize> {
    clean::clean_leaf(
        buf,
        leaf.page,
        walker.bound(leaf.low),
        walker.bound(leaf.high),
    )
}

/// `buf` with its nodes moved so that they lie in the opposite order of
/// their keys (the node area repacked from `upper` up), pointers updated.
fn reversed_layout(buf: &[u8]) -> Vec<u8> {
    let lower = usize::from(u16_at(buf, 12));
    let upper = usize::from(u16_at(buf, 14));
    let keys = (lower - PAGE_HEADER) / 2;
    let mut out = buf.to_vec();
    let mut at = upper;
    for i in 0..keys {
        let from = usize::from(u16_at(buf, PAGE_HEADER + 2 * i));
        let size = usize::from(u16_at(buf, from)) | usize::from(u16_at(buf, from + 2)) << 16;
        let len = (8 + usize::from(u16_at(buf, from + 6)) + size).next_multiple_of(2);
        out[at..at + len].copy_from_slice(&buf[from..from + len]);
        out[PAGE_HEADER + 2 * i..PAGE_HEADER + 2 * i + 2]
            .copy_from_slice(&(at as u16).to_ne_bytes());
        at += len;
    }
    out
}

#[test]
fn what_the_fast_path_clears_the_checks_pass() {
    let (dir, meta) = registry("walk-clean", 3000);
    let file = open_data_file(&dir.join("data.mdb")).expect("open");
    let options = WalkOptions {
        max_problems: 1,
        rows: false,
    };
    let mut walker = first_pass(&file, &meta, options);
    let leaves = std::mem::take(&mut walker.leaves);
    assert!(leaves.len() > 10, "{} leaves", leaves.len());
    let ps = meta.page_size as usize;
    let depth = meta.main.depth;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut cleared, mut refused) = (0, 0);
    for leaf in &leaves {
        let healthy = read(&file, leaf.page, ps);
        // Every healthy leaf LMDB wrote takes the fast path, laid out as
        // LMDB lays it out and the other way round.
        for buf in [healthy.clone(), reversed_layout(&healthy)] {
            let keys = clean(&walker, leaf, &buf).expect("a healthy leaf is cleared");
            let (problems, counts) = exact(&mut walker, leaf, depth, &buf);
            assert_eq!((problems, counts.leaf, counts.entries), (0, 1, keys as u64));
        }
        for _ in 0..200 {
            let mut buf = if next() % 2 == 0 {
                healthy.clone()
            } else {
                reversed_layout(&healthy)
            };
            for _ in 0..1 + next() % 3 {
                // Mostly the header, the pointers and the first nodes.
                let at = if next() % 4 < 3 {
                    (next() % 96) as usize
                } else {
                    let upper = usize::from(u16_at(&buf, 14)).min(ps - 1);
                    upper + (next() as usize) % (ps - upper)
                };
                buf[at] = match next() % 4 {
                    0 => buf[at] ^ (1 << (next() % 8)),
                    1 => buf[at].wrapping_add(1),
                    2 => buf[at].wrapping_sub(1),
                    _ => next() as u8,
                };
            }
            match clean(&walker, leaf, &buf) {
                Some(keys) => {
                    cleared += 1;
                    let (problems, counts) = exact(&mut walker, leaf, depth, &buf);
                    assert_eq!(
                        (problems, counts.leaf, counts.entries),
                        (0, 1, keys as u64),
                        "page {}: cleared, but {:?}",
                        leaf.page,
                        walker.problems
                    );
                }
                None => refused += 1,
            }
        }
    }
    // Both sides were exercised: damage the checks let pass (a changed
    // value byte) and damage they refuse.
    assert!(
        cleared > 100 && refused > 100,
        "{cleared} cleared, {refused} refused"
    );
}

#[test]
fn nodes_that_overlap_or_lie_at_odd_offsets_are_not_cleared() {
    let (dir, meta) = registry("walk-overlap", 500);
    let file = open_data_file(&dir.join("data.mdb")).expect("open");
    let options = WalkOptions {
        max_problems: 1,
        rows: false,
    };
    let mut walker = first_pass(&file, &meta, options);
    let leaves = std::mem::take(&mut walker.leaves);
    let leaf = leaves[0];
    let depth = meta.main.depth;
    let healthy = read(&file, leaf.page, meta.page_size as usize);
    for buf in [healthy.clone(), reversed_layout(&healthy)] {
        // Node 1's value made longer, so that it runs into its neighbour
        // in either layout while staying within the page.
        let at = usize::from(u16_at(&buf, PAGE_HEADER + 2));
        let mut damaged = buf.clone();
        let size = u16_at(&buf, at) + 8;
        damaged[at..at + 2].copy_from_slice(&size.to_ne_bytes());
        assert_eq!(clean(&walker, &leaf, &damaged), None);
        exact(&mut walker, &leaf, depth, &damaged);
        assert_eq!(walker.problems.len(), 1);
        assert_eq!(walker.problems[0].1.kind, DamageKind::NodeBounds);
        // The lowest node moved intact one byte down, to an odd offset, in
        // free space made for it (LMDB asserts nodes are 2-byte aligned).
        let lower = usize::from(u16_at(&buf, 12));
        let upper = usize::from(u16_at(&buf, 14));
        assert!(upper - lower >= 2, "the leaf has free space");
        let keys = (lower - PAGE_HEADER) / 2;
        let lowest = (0..keys)
            .find(|&i| usize::from(u16_at(&buf, PAGE_HEADER + 2 * i)) == upper)
            .expect("a node at upper");
        let len =
            NODE_HEADER + usize::from(u16_at(&buf, upper + 6)) + usize::from(u16_at(&buf, upper));
        let mut odd = buf.clone();
        odd.copy_within(upper..upper + len, upper - 1);
        let slot = PAGE_HEADER + 2 * lowest;
        odd[slot..slot + 2].copy_from_slice(&(upper as u16 - 1).to_ne_bytes());
        odd[14..16].copy_from_slice(&(upper as u16 - 2).to_ne_bytes());
        assert_eq!(clean(&walker, &leaf, &odd), None);
        exact(&mut walker, &leaf, depth, &odd);
        assert_eq!(walker.problems.len(), 1);
        assert_eq!(walker.problems[0].1.kind, DamageKind::NodeBounds);
    }
}

#[test]
fn the_first_problems_in_depth_first_order_are_reported_whatever_the_file_order() {
    let (dir, meta) = registry("walk-order", 3000);
    let path = dir.join("data.mdb");
    let file = open_data_file(&path).expect("open");
    let options = WalkOptions {
        max_problems: 1,
        rows: false,
    };
    let leaves = first_pass(&file, &meta, options).leaves;
    drop(file);
    // Two leaves that file order and depth-first order put the other way
    // round: the first in depth-first order lies later in the file.
    let (first, second) = leaves
        .iter()
        .flat_map(|a| leaves.iter().map(move |b| (a, b)))
        .find(|(a, b)| a.pos < b.pos && a.page > b.page)
        .expect("copy-on-write scatters leaves");
    let ps = u64::from(meta.page_size);
    let writer = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    for leaf in [first, second] {
        writer
            .write_all_at(&vec![0u8; ps as usize], leaf.page * ps)
            .expect("zero");
    }
    let report = verify_path(&dir, options).expect("verify");
    let pages: Vec<_> = report.problems.iter().map(|d| d.page).collect();
    assert_eq!(pages, [Some(first.page)], "{:?}", report.problems);
    let all = WalkOptions {
        max_problems: 100,
        rows: false,
    };
    let report = verify_path(&dir, all).expect("verify");
    let pages: Vec<_> = report.problems.iter().map(|d| d.page).collect();
    assert_eq!(
        pages,
        [Some(first.page), Some(second.page)],
        "{:?}",
        report.problems
    );
}

#[test]
fn keys_equal_or_outside_the_parents_bounds_are_not_cleared() {
    let (dir, meta) = registry("walk-bounds", 3000);
    let file = open_data_file(&dir.join("data.mdb")).expect("open");
    let options = WalkOptions {
        max_problems: 1,
        rows: false,
    };
    let mut walker = first_pass(&file, &meta, options);
    let leaves = std::mem::take(&mut walker.leaves);
    let depth = meta.main.depth;
    // A leaf with both bounds: neither the first nor the last.
    let leaf = *leaves
        .iter()
        .find(|l| l.low != Bound::OPEN && l.high != Bound::OPEN)
        .expect("a middle leaf");
    let healthy = read(&file, leaf.page, meta.page_size as usize);
    let keys = (usize::from(u16_at(&healthy, 12)) - PAGE_HEADER) / 2;
    let key_at = |buf: &[u8], i: usize| {
        let at = usize::from(u16_at(buf, PAGE_HEADER + 2 * i));
        (at + NODE_HEADER, usize::from(u16_at(buf, at + 6)))
    };
    let set_key = |buf: &mut Vec<u8>, i: usize, fill: &dyn Fn(usize) -> u8| {
        let (at, len) = key_at(buf, i);
        for j in 0..len {
            buf[at + j] = fill(j);
        }
    };
    let (at0, len0) = key_at(&healthy, 0);
    let key0 = healthy[at0..at0 + len0].to_vec();
    type Damage<'a> = Box<dyn Fn(&mut Vec<u8>) + 'a>;
    let cases: [(&str, Damage<'_>); 3] = [
        (
            "a key equal to the one before",
            Box::new(|b| set_key(b, 1, &|j| key0[j])),
        ),
        (
            "a first key below the low bound",
            Box::new(|b| set_key(b, 0, &|_| 0)),
        ),
        (
            "a last key at or above the high bound",
            Box::new(|b| set_key(b, keys - 1, &|_| 0xff)),
        ),
    ];
    for (name, damage) in cases {
        for layout in [healthy.clone(), reversed_layout(&healthy)] {
            let mut buf = layout;
            damage(&mut buf);
            assert_eq!(clean(&walker, &leaf, &buf), None, "{name}");
            exact(&mut walker, &leaf, depth, &buf);
            assert_eq!(walker.problems.len(), 1, "{name}");
            assert_eq!(walker.problems[0].1.kind, DamageKind::KeyOrder, "{name}");
        }
    }
}
