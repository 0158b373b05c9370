//! The pipeline's unit tests: groups in key order, the row cache through
//! its refills, the committer through map growth.

use super::super::ApplierOptions;
use super::*;
use crate::test_support::{fresh_path, reg};
use crate::wire::Entry;

#[test]
fn a_full_cache_is_refilled_with_every_row_not_yet_committed() {
    // A cache of 12 rows for 41 keys and groups of 4: it fills and is
    // refilled over and over while rows are staged and in flight. Each
    // step advances a key, then replays the entry of the step
    // before ("unchanged" only if its row, likely still staged or in
    // flight, was kept through the refills).
    let dir = fresh_path("pipeline-cache");
    let options = ApplierOptions {
        pipeline: Some(4),
        ..ApplierOptions::default()
    };
    let mut a = Applier::open_with(&dir, options).expect("open");
    a.pipe.as_mut().expect("pipelined").cache = RowCache::with_capacity(12);
    let mut one = Applier::open(&fresh_path("pipeline-cache-one")).expect("open");
    one.set_durable(false).expect("relaxed");
    let entry = |step: u64| Entry::Registration(reg(1, step % 41, 1 + step as u16));
    let mut index = 0;
    for step in 0..300u64 {
        for e in [Some(entry(step)), step.checked_sub(1).map(entry)]
            .into_iter()
            .flatten()
        {
            index += 1;
            let got = a.apply_entry_at(&e, Some(index)).expect("staged");
            assert_eq!(
                got,
                one.apply_entry_at(&e, None).expect("one"),
                "entry {index}"
            );
            assert!(a.pipe.as_ref().expect("pipelined").cache.len() <= 12);
        }
    }
    a.flush().expect("drained");
    let counters = a.pipeline_counters().expect("pipelined");
    assert!(
        counters.cache_hits > 100 && counters.store_lookups > 100,
        "{counters:?}"
    );
    assert_eq!(
        a.registry().expect("view").rows(None).expect("rows"),
        one.registry().expect("view").rows(None).expect("rows")
    );
}

#[test]
fn a_group_goes_in_key_order_with_the_latest_row_of_each_key() {
    let rows: Vec<RegistryRow> = [(2, 5, 1), (1, 9, 1), (2, 5, 2), (1, 3, 1), (2, 5, 3)]
        .iter()
        .map(|&(dek, node, epoch)| crate::test_support::row_of(&reg(dek, node, epoch), 1, epoch))
        .collect();
    let (mut order, mut sorted) = (Vec::new(), Vec::new());
    in_key_order(&rows, &mut order, &mut sorted);
    let got: Vec<(u32, u16, u16)> = sorted
        .iter()
        .map(|r| (r.dek_id, r.node_id16, r.last_seen_local_epoch))
        .collect();
    assert_eq!(got, [(1, 3, 1), (1, 9, 1), (2, 5, 3)]);
}

#[test]
fn staged_then_committed_by_the_committer_even_through_map_growth() {
    let dir = fresh_path("pipeline");
    let options = ApplierOptions {
        pipeline: Some(16),
        map_size: 64 * 1024,
        ..ApplierOptions::default()
    };
    let mut a = Applier::open_with(&dir, options).expect("open");
    let mut one = Applier::open(&fresh_path("pipeline-one")).expect("open");
    for n in 0..3000u64 {
        let entry = Entry::Registration(reg(1, n % 1500, 1 + (n / 1500) as u16));
        let got = a.apply_entry_at(&entry, Some(n + 1)).expect("staged");
        assert_eq!(got, one.apply_entry_at(&entry, None).expect("one"));
        assert!(
            a.staged() <= 32,
            "at most one group staged and one in flight"
        );
    }
    a.flush().expect("drained");
    assert_eq!(a.durable_index(), Some(3000));
    let counters = a.pipeline_counters().expect("pipelined");
    assert!(counters.snapshots <= counters.commits + 2, "{counters:?}");
    assert_eq!(
        a.registry().expect("view").rows(None).expect("rows"),
        one.registry().expect("view").rows(None).expect("rows")
    );
    assert!(a.env.map_size() > 64 * 1024, "the committer grew the map");
}
