//! The no-disk floor of `apply_many` for the benchmark (bench/run.py): its
//! own algorithm in raw Rust with nothing else (no decoding, no checks, no
//! Python): per batch, the keys packed, sorted and deduplicated, one
//! cursor pass reading them, the four-case "rule" reduced to keeping the
//! first-seen epoch, one cursor pass writing the changed rows, one commit
//! (durable, as the package's sync=True). Run on tmpfs, it is what the
//! package could reach if everything but LMDB cost nothing.
//!
//! Usage: batch_floor DIR NODES DEKS ROUNDS BATCH  (prints one JSON object)

use std::path::Path;
use std::time::Instant;

use encryption_applier::registry::{encode_registry_value, registry_key, RegistryValue};
use lmdb::{Cursor, Environment, Transaction, WriteFlags};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        return Err("usage: batch_floor DIR NODES DEKS ROUNDS BATCH".into());
    }
    let dir = Path::new(&args[1]);
    let (nodes, deks, rounds, batch): (u64, u64, u64, usize) = (
        args[2].parse()?,
        args[3].parse()?,
        args[4].parse()?,
        args[5].parse()?,
    );
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
    let pack = |dek: u32, n16: u16| (u64::from(dek) << 16) | u64::from(n16);
    let mut keys: Vec<u64> = Vec::with_capacity(batch);
    let mut rows: Vec<Option<RegistryValue>> = Vec::with_capacity(batch);
    let mut dirty: Vec<bool> = Vec::with_capacity(batch);
    let started = Instant::now();
    for chunk in entries.chunks(batch) {
        keys.clear();
        keys.extend(chunk.iter().map(|&(d, f, _)| pack(d, (f & 0xFFFF) as u16)));
        keys.sort_unstable();
        keys.dedup();
        let mut txn = env.begin_rw_txn()?;
        rows.clear();
        {
            let cursor = txn.open_ro_cursor(db)?;
            for &k in &keys {
                let key = registry_key((k >> 16) as u32, k as u16);
                // MDB_SET_KEY, as the package's read pass: the fastest
                // positioned read (faster than a get or the safe API's
                // iter_from), so the floor is not flattering.
                let found = match cursor.get(Some(&key), None, lmdb_sys::MDB_SET_KEY) {
                    Ok((_, v)) => Some(v),
                    Err(lmdb::Error::NotFound) => None,
                    Err(e) => return Err(e.into()),
                };
                rows.push(match found {
                    Some(v) => Some(RegistryValue {
                        full_node_id: u64::from_be_bytes(v[..8].try_into()?),
                        first_seen_local_epoch: u16::from_be_bytes([v[8], v[9]]),
                        last_seen_local_epoch: u16::from_be_bytes([v[10], v[11]]),
                    }),
                    None => None,
                });
            }
        }
        dirty.clear();
        dirty.resize(keys.len(), false);
        for &(dek, full, epoch) in chunk {
            let i = keys
                .binary_search(&pack(dek, (full & 0xFFFF) as u16))
                .map_err(|_| "key not found")?;
            let first = rows[i].as_ref().map_or(epoch, |r| r.first_seen_local_epoch);
            rows[i] = Some(RegistryValue {
                full_node_id: full,
                first_seen_local_epoch: first,
                last_seen_local_epoch: epoch,
            });
            dirty[i] = true;
        }
        {
            let mut cursor = txn.open_rw_cursor(db)?;
            for (i, &k) in keys.iter().enumerate() {
                if let (true, Some(row)) = (dirty[i], &rows[i]) {
                    let key = registry_key((k >> 16) as u32, k as u16);
                    cursor.put(&key, &encode_registry_value(row), WriteFlags::empty())?;
                }
            }
        }
        txn.commit()?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{{\"entries\": {}, \"batch\": {batch}, \"ns_per_entry\": {:.1}}}",
        entries.len(),
        secs * 1e9 / entries.len() as f64
    );
    Ok(())
}
