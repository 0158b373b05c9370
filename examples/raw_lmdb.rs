//! The physical limit for the benchmark (bench/run.py): one LMDB get and
//! one put per entry, in one write transaction, with no rules at all, over
//! the same keys and values the benchmark's workload produces.
//!
//! Usage: raw_lmdb DIR NODES DEKS ROUNDS  (prints one JSON object)

use std::path::Path;
use std::time::Instant;

use encryption_applier::registry::{encode_registry_value, registry_key, RegistryValue};
use lmdb::{Environment, Transaction, WriteFlags};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        return Err("usage: raw_lmdb DIR NODES DEKS ROUNDS".into());
    }
    let dir = Path::new(&args[1]);
    let (nodes, deks, rounds): (u64, u64, u64) =
        (args[2].parse()?, args[3].parse()?, args[4].parse()?);
    std::fs::create_dir_all(dir)?;
    let env = Environment::new().set_map_size(1 << 30).open(dir)?;
    let db = env.open_db(None)?;
    // The workload of bench/run.py: round r registers every node at epoch r+1.
    let entries: Vec<(u32, u64, u16)> = (0..rounds)
        .flat_map(|round| {
            (0..nodes).map(move |node| {
                let dek = (1 + node % deks) as u32;
                let full = (node << 16) | (node & 0xFFFF);
                (dek, full, (round + 1) as u16)
            })
        })
        .collect();
    let started = Instant::now();
    let mut txn = env.begin_rw_txn()?;
    let mut found = 0u64;
    for (dek, full, epoch) in &entries {
        let key = registry_key(*dek, (*full & 0xFFFF) as u16);
        let first = match txn.get(db, &key) {
            Ok(value) => {
                found += 1;
                u16::from_be_bytes([value[8], value[9]])
            }
            Err(lmdb::Error::NotFound) => *epoch,
            Err(e) => return Err(e.into()),
        };
        let value = encode_registry_value(&RegistryValue {
            full_node_id: *full,
            first_seen_local_epoch: first,
            last_seen_local_epoch: *epoch,
        });
        txn.put(db, &key, &value, WriteFlags::empty())?;
    }
    let loop_secs = started.elapsed().as_secs_f64();
    txn.commit()?;
    let total_secs = started.elapsed().as_secs_f64();
    println!(
        "{{\"entries\": {}, \"found\": {found}, \"loop_ns_per_entry\": {:.1}, \"with_commit_ns_per_entry\": {:.1}}}",
        entries.len(),
        loop_secs * 1e9 / entries.len() as f64,
        total_secs * 1e9 / entries.len() as f64
    );
    Ok(())
}
