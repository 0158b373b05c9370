"""Benchmark encryption-applier against what a user would write instead.

Run it with `bash bench/run.sh` (release builds, a separate venv). It
measures, in one run on one machine, with the same entries and the same
durability setting on both sides:

1. this package: apply_registration / apply one by one, apply_many in
   batches of 1 000 and 10 000;
2. the alternative: the same four-case rules in plain Python over the
   `lmdb` package (py-lmdb), one transaction per entry and one per batch;
3. the physical limit: a raw Rust loop of LMDB get+put in one transaction
   (examples/raw_lmdb.rs), and the disk's fdatasync rate;
4. scanning ~10^6 rows into Python: rows(), columns(), and a py-lmdb
   cursor-and-unpack loop, each in its own process for peak RSS;
5. growth: per-apply time with 10^3, 10^5 and 10^6 rows already stored;
6. the open check against its floor, reading data.mdb once sequentially,
   at 10^5 and 10^6 rows (bench/open_floor.py); 7. group commit;
8. pipelined write-behind against a py-lmdb and a SQLite write-behind
   given the same loss window (`--pipelined` runs only that section);
   apply_many against its no-disk floor (examples/batch_floor.rs, with
   --batch-floor) and to_pandas against py-lmdb + numpy building the same
   frame in the scans, in --scan-rounds paired rounds (`--scan` runs only
   the scan section).

It prints a table and writes bench/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb
import open_floor

import encryption_applier as ea

PREFIX = b"!encryption|writers|"
HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------- workload


def workload(nodes: int, deks: int, rounds: int) -> list[ea.Registration]:
    """Round r registers every node at local epoch r + 1 (round 0 inserts,
    later rounds advance); the same stream as examples/raw_lmdb.rs."""
    return [
        ea.Registration(1 + node % deks, (node << 16) | (node & 0xFFFF), round_ + 1)
        for round_ in range(rounds)
        for node in range(nodes)
    ]


# ---------------------------------------------------------------- the alternative


class PyHalt(Exception):
    pass


def py_apply(txn: lmdb.Transaction, entry: bytes) -> str:
    """SPEC §2 decoding and §4 rules, as a user would write them over py-lmdb."""
    if len(entry) != 16 or entry[0] != 0x03 or entry[1] != 0x01:
        raise PyHalt("malformed")
    dek_id, full, epoch = struct.unpack_from(">IQH", entry, 2)
    key = PREFIX + struct.pack(">I", dek_id) + b"|" + struct.pack(">H", full & 0xFFFF)
    value = txn.get(key)
    if value is None:
        txn.put(key, struct.pack(">QHH", full, epoch, epoch))
        return "inserted"
    if len(value) != 12:
        raise PyHalt("corrupt")
    stored, first, last = struct.unpack(">QHH", value)
    if stored != full:
        raise PyHalt("collision")
    if epoch == last:
        return "unchanged"
    if epoch < last:
        raise PyHalt("rollback")
    txn.put(key, struct.pack(">QHH", full, first, epoch))
    return "advanced"


def py_env(path: Path, sync: bool) -> lmdb.Environment:
    # sync=False here is the package's sync=False: MDB_NOMETASYNC.
    return lmdb.open(str(path), map_size=1 << 32, metasync=sync, sync=True)


# ---------------------------------------------------------------- helpers


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def fresh(root: Path, name: str) -> Path:
    path = root / name
    shutil.rmtree(path, ignore_errors=True)
    return path


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def fsync_rate(root: Path, n: int = 500) -> float:
    path = root / "fsync-probe"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        started = time.perf_counter()
        for i in range(n):
            os.pwrite(fd, bytes([i % 256]) * 512, 0)
            os.fdatasync(fd)
        return n / (time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()


# ---------------------------------------------------------------- 1-3 throughput


def throughput(
    root: Path, regs: list[ea.Registration], per_entry: int, raw_bin: str, nodes: int, deks: int, rounds: int
) -> dict[str, Any]:
    entries = [r.to_entry() for r in regs]
    few, few_regs = entries[:per_entry], regs[:per_entry]
    out: dict[str, Any] = {"entries": len(entries), "per_entry_entries": per_entry, "modes": {}}
    for sync in (True, False):
        mode: dict[str, float] = {}

        def ours_one(items: list[Any], by: str) -> float:
            with ea.Applier(fresh(root, "ours"), sync=sync) as applier:
                call = applier.apply_registration if by == "object" else applier.apply
                return timed(lambda: [call(x) for x in items])

        mode["ours apply_registration, one by one"] = ours_one(few_regs, "object") / per_entry
        mode["ours apply(bytes), one by one"] = ours_one(few, "bytes") / per_entry
        for size in (1000, 10000):
            with ea.Applier(fresh(root, "ours"), sync=sync) as applier:
                batches = chunks(entries, size)
                mode[f"ours apply_many, batches of {size}"] = timed(
                    lambda: [applier.apply_many(b) for b in batches]
                ) / len(entries)

        env = py_env(fresh(root, "py"), sync)

        def py_one() -> None:
            for entry in few:
                with env.begin(write=True) as txn:
                    py_apply(txn, entry)

        mode["plain Python + py-lmdb, txn per entry"] = timed(py_one) / per_entry
        env.close()
        for size in (1000, 10000):
            env = py_env(fresh(root, "py"), sync)
            batches = chunks(entries, size)

            def py_batches() -> None:
                for batch in batches:
                    with env.begin(write=True) as txn:
                        for entry in batch:
                            py_apply(txn, entry)

            mode[f"plain Python + py-lmdb, txn per {size}"] = timed(py_batches) / len(entries)
            env.close()
        out["modes"]["sync=True" if sync else "sync=False"] = {k: v * 1e6 for k, v in mode.items()}  # µs/entry

    raw = subprocess.run(
        [raw_bin, str(fresh(root, "raw")), str(nodes), str(deks), str(rounds)],
        capture_output=True,
        text=True,
        check=True,
    )
    out["raw"] = json.loads(raw.stdout)
    out["fsync_per_second"] = fsync_rate(root)
    return out


def apply_many_floor(
    floor_bin: str, regs: list[ea.Registration], nodes: int, deks: int, rounds: int, repeats: int
) -> dict[str, Any]:
    """`apply_many` against its no-disk floor (examples/batch_floor.rs: its
    own algorithm in raw Rust, nothing else) on tmpfs, paired: each round
    runs both, at the same durability (a durable commit per batch)."""
    shm = Path("/dev/shm")
    where = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    entries = [r.to_entry() for r in regs]
    out: dict[str, Any] = {"filesystem": "tmpfs (/dev/shm)" if where else "the scratch directory (no tmpfs)"}
    for size in (1000, 10000):
        batches = chunks(entries, size)
        ours, floor = [], []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory(prefix="ea-floor-", dir=where) as tmp:
                with ea.Applier(Path(tmp) / "ours") as applier:
                    ours.append(timed(lambda: [applier.apply_many(b) for b in batches]) / len(entries) * 1e6)
                raw = subprocess.run(
                    [floor_bin, str(Path(tmp) / "floor"), str(nodes), str(deks), str(rounds), str(size)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                floor.append(json.loads(raw.stdout)["ns_per_entry"] / 1000)
        ratios = sorted(o / f for o, f in zip(ours, floor, strict=True))
        out[f"batch {size}"] = {
            "package_us": statistics.median(ours),
            "floor_us": statistics.median(floor),
            "ratio_median": statistics.median(ratios),
            "ratio_range": [ratios[0], ratios[-1]],
        }
    return out


# ---------------------------------------------------------------- 4 scans


def build_scan_registry(path: Path, deks: int) -> int:
    regs = [ea.Registration(dek, n16 | (dek << 16), 1) for dek in range(1, deks + 1) for n16 in range(65536)]
    with ea.Applier(path, sync=False) as applier:
        for batch in chunks(regs, 100_000):
            applier.apply_many(batch)
    return len(regs)


def peak_rss_kb() -> int:
    """The process's peak resident set. VmHWM starts afresh at exec, unlike
    ru_maxrss, which Linux carries over from the parent that forked us."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def py_lmdb_columns(path: str) -> list[list[int]]:
    """The five columns through py-lmdb's cursor, one Python loop."""
    env = lmdb.open(path, map_size=1 << 32, readonly=True, lock=True)
    columns: list[list[int]] = [[], [], [], [], []]
    dek_ids, node_ids, fulls, firsts, lasts = columns
    unpack_key, unpack_value = struct.Struct(">20xIxH").unpack, struct.Struct(">QHH").unpack
    with env.begin() as txn:
        cursor = txn.cursor()
        if cursor.set_range(PREFIX):
            for key, value in cursor:
                if not key.startswith(PREFIX):
                    break
                dek_id, node16 = unpack_key(key)
                full, first, last = unpack_value(value)
                dek_ids.append(dek_id)
                node_ids.append(node16)
                fulls.append(full)
                firsts.append(first)
                lasts.append(last)
    return columns


def scan_child(mode: str, path: str) -> None:
    """Runs in its own process: one scan, its time and the peak RSS."""
    if "pandas" in mode or "frame" in mode:
        import numpy  # noqa: F401 - imported before the clock starts, for both
        import pandas  # noqa: F401
    baseline = peak_rss_kb()
    started = time.perf_counter()
    if mode == "rows":
        with ea.Registry(path) as registry:
            result: Any = registry.rows()
        count = len(result)
    elif mode == "columns":
        with ea.Registry(path) as registry:
            result = registry.columns()
        count = len(result["dek_id"])
    elif mode == "to_pandas":
        with ea.Registry(path) as registry:
            result = registry.to_pandas()
        count = len(result)
    elif mode == "py-lmdb frame":
        # The same DataFrame built the plain way: py-lmdb's cursor, numpy
        # columns of the same dtypes, the ids as hex strings (a format per
        # row: faster here than numpy byte arithmetic turned into str) and
        # the (dek_id, node_id16) index.
        import numpy
        import pandas

        dek, node16, full, first, last = py_lmdb_columns(path)
        index = pandas.MultiIndex.from_arrays(
            [numpy.array(dek, dtype="uint32"), pandas.array([f"0x{v:04x}" for v in node16], dtype="string")],
            names=["dek_id", "node_id16"],
        )
        result = pandas.DataFrame(
            {
                "full_node_id": pandas.array([f"0x{v:016x}" for v in full], dtype="string"),
                "first_seen_local_epoch": numpy.array(first, dtype="uint16"),
                "last_seen_local_epoch": numpy.array(last, dtype="uint16"),
            },
            index=index,
        )
        count = len(result)
    else:
        result = py_lmdb_columns(path)
        count = len(result[0])
    seconds = time.perf_counter() - started
    peak = peak_rss_kb()
    print(
        json.dumps({"seconds": seconds, "rows": count, "peak_rss_mb": peak / 1024, "baseline_rss_mb": baseline / 1024})
    )


def scan_once(mode: str, path: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--scan-child", mode, str(path)], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def scans(path: Path, rounds: int = 5) -> dict[str, Any]:
    """Each scan in its own process; to_pandas and the py-lmdb frame in
    `rounds` paired rounds (the order flipped every round, so a slow
    stretch of a shared machine hits both), each mode's median round kept
    as its figure and the ratio taken per round."""
    out = {mode: scan_once(mode, path) for mode in ("rows", "columns", "py-lmdb")}
    runs: dict[str, list[dict[str, Any]]] = {"to_pandas": [], "py-lmdb frame": []}
    for r in range(rounds):
        order = ("to_pandas", "py-lmdb frame") if r % 2 == 0 else ("py-lmdb frame", "to_pandas")
        for mode in order:
            runs[mode].append(scan_once(mode, path))
    for mode, results in runs.items():
        out[mode] = sorted(results, key=lambda m: m["seconds"])[len(results) // 2]
    ratios = [p["seconds"] / f["seconds"] for f, p in zip(runs["to_pandas"], runs["py-lmdb frame"], strict=True)]
    out["to_pandas rounds"] = {
        "rounds": rounds,
        "to_pandas_s": [m["seconds"] for m in runs["to_pandas"]],
        "py_lmdb_frame_s": [m["seconds"] for m in runs["py-lmdb frame"]],
        "ratio_median": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
    }
    return out


def report_scan(s: dict[str, Any]) -> list[str]:
    lines = [f"Scan of {s['py-lmdb']['rows']} rows into Python (own process each)"]
    for mode in ("rows", "columns", "py-lmdb"):
        m = s[mode]
        ratio = s["py-lmdb"]["seconds"] / m["seconds"]
        lines.append(
            f"    {mode:<10} {m['seconds']:8.3f} s   {ratio:5.2f}x vs py-lmdb loop   peak RSS {m['peak_rss_mb']:.0f} MB"
        )
    frame, plain, paired = s["to_pandas"], s["py-lmdb frame"], s["to_pandas rounds"]
    low, high = paired["ratio_range"]
    lines.append(
        f"    to_pandas  {frame['seconds']:8.3f} s   {paired['ratio_median']:5.2f}x vs py-lmdb + numpy "
        f"building the same frame ({plain['seconds']:.3f} s); {paired['rounds']} paired rounds, "
        f"ratio [{low:.2f}-{high:.2f}], medians shown   peak RSS {frame['peak_rss_mb']:.0f} MB"
    )
    return lines


# ---------------------------------------------------------------- 5 growth


def growth(root: Path, big: Path, sizes: list[int], probes: int) -> dict[str, Any]:
    out = {}
    rng = random.Random(7)
    for size in sizes:
        if size >= 1_000_000:
            path = big
        else:
            path = fresh(root, f"growth-{size}")
            with ea.Applier(path, sync=False) as applier:
                regs = [ea.Registration(1 + i // 65536, (i % 65536) | ((1 + i // 65536) << 16), 1) for i in range(size)]
                for batch in chunks(regs, 100_000):
                    applier.apply_many(batch)
        with ea.Registry(path) as registry:
            stored = len(registry)
        keys = [
            (1 + i // 65536, (i % 65536) | ((1 + i // 65536) << 16))
            for i in rng.sample(range(stored), min(probes, stored))
        ]
        row: dict[str, float] = {"rows": stored}
        for sync in (True, False):
            with ea.Applier(path, sync=sync) as applier:
                epoch = 2 if sync else 3
                row[f"apply one by one, sync={sync} (µs)"] = (
                    timed(lambda: [applier.apply(ea.Registration(d, f, epoch)) for d, f in keys]) / len(keys) * 1e6
                )
        with ea.Applier(path, sync=True) as applier:
            batch = [ea.Registration(d, f, 4) for d, f in keys]
            row["apply_many per entry, sync=True (µs)"] = timed(lambda: applier.apply_many(batch)) / len(keys) * 1e6
        out[str(size)] = row
    return out


# ---------------------------------------------------------------- 7 group commit


def group_commit(root: Path, n: int) -> dict[str, Any]:
    """One-by-one apply(index=) as a Raft host calls it, per entry: each
    apply committing (today's default) against write-behind group commit
    (K=64), at both sync settings; and SQLite in WAL mode, one upsert and
    commit per entry, at synchronous=FULL and NORMAL (what a Python user
    might pick instead). Matched durability: sync=True ~ FULL, sync=False ~
    NORMAL (neither loses anything on a process crash)."""
    import sqlite3

    regs = [ea.Registration(1 + i % 4, 0x10000 + (i % 4096), 1 + i // 4096) for i in range(n)]
    out: dict[str, Any] = {"entries": n}
    for sync in (True, False):
        for label, kwargs in (("one commit per apply", {}), ("group_commit=64", {"group_commit": 64})):
            path = fresh(root, f"gc-{sync}-{bool(kwargs)}")
            with ea.Applier(path, sync=sync, **kwargs) as applier:  # type: ignore[arg-type]

                def run(a: ea.Applier = applier) -> None:
                    for index, reg in enumerate(regs, start=1):
                        a.apply(reg, index=index)
                    a.flush()

                out[f"{label}, sync={sync} (µs)"] = timed(run) / n * 1e6
    for mode in ("FULL", "NORMAL"):
        directory = fresh(root, f"sqlite-{mode}")
        directory.mkdir()
        db = sqlite3.connect(directory / "db.sqlite", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={mode}")
        db.execute("CREATE TABLE r (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")

        def run_sqlite(conn: sqlite3.Connection = db) -> None:
            for reg in regs:
                key = ea.registry_key(reg.dek_id, reg.node_id16)
                conn.execute("BEGIN")
                row = conn.execute("SELECT v FROM r WHERE k = ?", (key,)).fetchone()
                value = ea.encode_registry_value(reg.full_node_id, reg.local_epoch, reg.local_epoch)
                if row is None or row[0] != value:
                    conn.execute("INSERT OR REPLACE INTO r VALUES (?, ?)", (key, value))
                conn.execute("COMMIT")

        out[f"SQLite WAL {mode}, commit per entry (µs)"] = timed(run_sqlite) / n * 1e6
        db.close()
    return out


# ---------------------------------------------------------------- 8 pipelined write-behind


class PyWriteBehind:
    """The 20-line py-lmdb write-behind a Raft host would write: one Python
    call per entry, a write transaction per `k` entries (committed, and so
    fsynced, every `k`), the same four-case rules."""

    def __init__(self, env: lmdb.Environment, k: int) -> None:
        self.env, self.k, self.txn, self.n = env, k, None, 0

    def apply(self, entry: bytes, index: int) -> str:
        if self.txn is None:
            self.txn = self.env.begin(write=True)
        out = py_apply(self.txn, entry)
        self.txn.put(b"!encryption|applied_index", struct.pack(">Q", index))
        self.n += 1
        if self.n % self.k == 0:
            self.flush()
        return out

    def flush(self) -> None:
        if self.txn is not None:
            self.txn.commit()
            self.txn = None


class SqliteWriteBehind:
    """SQLite in WAL mode, synchronous=NORMAL, a transaction per `k` entries
    (one Python call per entry): NORMAL loses the newest transactions on
    power loss, never on a process crash."""

    def __init__(self, path: Path, k: int) -> None:
        import sqlite3

        path.mkdir()
        self.db = sqlite3.connect(path / "db.sqlite", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE r (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
        self.k, self.n, self.open = k, 0, False

    def apply(self, entry: bytes, index: int) -> str:
        if not self.open:
            self.db.execute("BEGIN")
            self.open = True
        dek_id, full, epoch = struct.unpack_from(">IQH", entry, 2)
        key = PREFIX + struct.pack(">I", dek_id) + b"|" + struct.pack(">H", full & 0xFFFF)
        row = self.db.execute("SELECT v FROM r WHERE k = ?", (key,)).fetchone()
        value = struct.pack(">QHH", full, epoch, epoch) if row is None else row[0][:10] + struct.pack(">H", epoch)
        if row is None or row[0] != value:
            self.db.execute("INSERT OR REPLACE INTO r VALUES (?, ?)", (key, value))
        self.n += 1
        if self.n % self.k == 0:
            self.flush()
        return "ok"

    def flush(self) -> None:
        if self.open:
            self.db.execute("COMMIT")
            self.open = False


# (entries, entries of the reader rows), by --quick.
PIPELINED_SIZES = {False: (200_000, 2_000_000), True: (2_000, 20_000)}


def pipelined(root: Path, n: int, reader_n: int, *, k: int, rounds: int, small_k: int = 1024) -> dict[str, Any]:
    """One-by-one apply(index=) at sync=True, as a Raft host calls it:
    `pipelined=True, group_commit=K` (the default K) against the
    write-behind peers given the same loss window. Ours can lose at most K
    staged entries plus one group of at most K in flight, so the peers
    commit every 2K entries (and, for reference, every K). The same at a
    small K (1024), where a slow disk sets our pace: there a group cannot
    hold more than K, so ours commits twice as often as the peer with the
    same window. Each round runs every contender once, in a shuffled
    order, on a fresh directory; the table gives the median and the range
    of µs per entry, and of the per-round ratios.

    Also what a `get()` reader thread costs the writer: a reader that
    never sleeps and one that reads about 1000 times a second (a host's
    status reader), against the floor of the GIL itself, a pure-Python
    writer loop with the same never-sleeping reader. These rows run
    `reader_n` entries, so that each run spans a hundred or more of the
    interpreter's 5 ms switch intervals: over a few intervals the share of
    the GIL each thread gets depends on where the switches fall."""
    import statistics
    import threading

    from encryption_applier._native import test_support

    def stream(count: int) -> tuple[list[ea.Registration], list[bytes]]:
        regs = [ea.Registration(1 + i % 4, 0x10000 + (i % 4096), 1 + i // 4096) for i in range(count)]
        return regs, [r.to_entry() for r in regs]

    regs, entries = stream(n)
    reader_regs, reader_entries = stream(reader_n)
    times: dict[str, list[float]] = {}
    committer: dict[int, list[tuple[float, float]]] = {}  # K -> (µs per entry committing, entries per group)
    reads: dict[str, list[float]] = {}

    def reader_threads(path: Path, readers: int, paced: bool, stop: threading.Event, label: str) -> Callable[[], None]:
        counts = [0] * readers

        def read(slot: int) -> None:
            with ea.Registry(path) as view:
                while not stop.is_set():
                    view.get(1, 0x0001)
                    counts[slot] += 1
                    if paced:
                        time.sleep(0.001)

        threads = [threading.Thread(target=read, args=(i,)) for i in range(readers)]
        for t in threads:
            t.start()
        started = time.perf_counter()

        def done() -> None:
            stop.set()
            for t in threads:
                t.join()
            if readers:
                reads.setdefault(label, []).append(sum(counts) / (time.perf_counter() - started))

        return done

    def ours(group: int, readers: int = 0, paced: bool = False, label: str = "", long: bool = False) -> float:
        rs, es = (reader_regs, reader_entries) if long else (regs, entries)
        count = len(es)
        path = fresh(root, "pipe")
        with ea.Applier(path, pipelined=True, group_commit=group) as a:
            a.apply(rs[0], index=1)
            a.wait_durable(1)
            stop = threading.Event()
            done = reader_threads(path, readers, paced, stop, label)
            started = time.perf_counter()
            for index in range(2, count + 1):
                a.apply(es[index - 1], index=index)
            a.wait_durable(count)
            took = time.perf_counter() - started
            done()
            c = test_support.pipeline_counters(a)
            if not readers and not long and c and c.get("commit_micros") and c["commits"]:
                committer.setdefault(group, []).append(
                    (c["commit_micros"] / c["committed_entries"], c["committed_entries"] / c["commits"])
                )
        return took / (count - 1)

    def python_writer(readers: int) -> float:
        """The GIL's floor: a writer loop of plain Python that never gives
        the GIL up (each entry decoded and staged in a dict, about the
        cost of one of our calls), with the same reader."""
        path = fresh(root, "pyfloor")
        ea.Applier(path).close()
        staged: dict[tuple[int, int], tuple[int, int]] = {}
        unpack = struct.Struct(">IQH").unpack_from
        stop = threading.Event()
        done = reader_threads(path, readers, False, stop, "python")
        started = time.perf_counter()
        for index in range(2, reader_n + 1):
            dek_id, full, epoch = unpack(reader_entries[index - 1], 2)
            staged[(dek_id, full & 0xFFFF)] = (epoch, index)
        took = time.perf_counter() - started
        done()
        return took / (reader_n - 1)

    def peer(make: Callable[[], Any]) -> float:
        w = make()
        started = time.perf_counter()
        for index, entry in enumerate(entries, start=1):
            w.apply(entry, index)
        w.flush()
        return (time.perf_counter() - started) / n

    def py_peer(size: int) -> float:
        env = py_env(fresh(root, "pywb"), True)
        try:
            return peer(lambda: PyWriteBehind(env, size))
        finally:
            env.close()

    def sqlite_peer(size: int) -> float:
        return peer(lambda: SqliteWriteBehind(fresh(root, "sqlitewb"), size))

    def classic() -> float:
        with ea.Applier(fresh(root, "gc"), group_commit=64) as a:
            started = time.perf_counter()
            for index, entry in enumerate(entries, start=1):
                a.apply(entry, index=index)
            a.flush()
            return (time.perf_counter() - started) / n

    ref, small = f"ours pipelined=True, group_commit={k}", f"ours pipelined=True, group_commit={small_k}"
    peer_ref, peer_small = f"py-lmdb write-behind, txn per {2 * k}", f"py-lmdb write-behind, txn per {2 * small_k}"
    alone = f"ours pipelined K={k}, {reader_n} entries, alone"
    one_reader, paced_reader = "ours pipelined, one get() reader thread", "ours pipelined, one paced get() reader"
    py_alone, py_reader = "pure-Python writer loop (GIL floor)", "pure-Python writer loop, one get() reader"
    contenders: dict[str, Callable[[], float]] = {
        ref: lambda: ours(k),
        peer_ref: lambda: py_peer(2 * k),
        f"py-lmdb write-behind, txn per {k}": lambda: py_peer(k),
        f"SQLite WAL NORMAL, txn per {2 * k}": lambda: sqlite_peer(2 * k),
        f"SQLite WAL NORMAL, txn per {k}": lambda: sqlite_peer(k),
        small: lambda: ours(small_k),
        peer_small: lambda: py_peer(2 * small_k),
        "ours group_commit=64 (fsync-gated, before)": classic,
        alone: lambda: ours(k, long=True),
        one_reader: lambda: ours(k, 1, label="busy", long=True),
        paced_reader: lambda: ours(k, 1, paced=True, label="paced", long=True),
        py_alone: lambda: python_writer(0),
        py_reader: lambda: python_writer(1),
    }
    rng = random.Random(21)
    for _ in range(rounds):
        order = list(contenders)
        rng.shuffle(order)
        for name in order:
            times.setdefault(name, []).append(contenders[name]() * 1e6)
    out: dict[str, Any] = {
        "entries": n,
        "reader_entries": reader_n,
        "k": k,
        "small_k": small_k,
        "rounds": rounds,
        "fsync_per_second": fsync_rate(root),
        "rows": {},
    }

    def ratios(row: str, base: str) -> dict[str, float]:
        r = sorted(t / b for t, b in zip(times[row], times[base], strict=True))
        return {"median": statistics.median(r), "min": r[0], "max": r[-1]}

    for name, us in times.items():
        r = ratios(name, ref)
        out["rows"][name] = {
            "us_median": statistics.median(us),
            "us_min": min(us),
            "us_max": max(us),
            "ratio_vs_ours_median": r["median"],
            "ratio_vs_ours_min": r["min"],
            "ratio_vs_ours_max": r["max"],
        }
    out["targets"] = {
        f"py-lmdb write-behind ÷ ours, window 2K = {2 * k}": ratios(peer_ref, ref),
        f"SQLite WAL NORMAL ÷ ours, window 2K = {2 * k}": ratios(f"SQLite WAL NORMAL, txn per {2 * k}", ref),
        f"py-lmdb write-behind ÷ ours, window 2K = {2 * small_k}": ratios(peer_small, small),
    }
    # What one reader thread costs each writer: its time per entry with the
    # reader over its time alone, per round.
    out["reader_cost"] = {
        "ours, never-sleeping reader": ratios(one_reader, alone),
        "ours, paced reader (get + 1 ms sleep)": ratios(paced_reader, alone),
        "pure-Python writer, never-sleeping reader (the GIL floor)": ratios(py_reader, py_alone),
    }
    out["reader_gets_per_second"] = {label: statistics.median(v) for label, v in reads.items()}
    out["committer"] = {
        str(group): {
            "commit_us_per_entry": statistics.median(c for c, _ in runs),
            "entries_per_group": statistics.median(g for _, g in runs),
        }
        for group, runs in committer.items()
    }
    return out


def report_pipelined(p: dict[str, Any]) -> list[str]:
    lines = [
        f"Pipelined write-behind, one-by-one apply(index=), sync=True: {p['entries']} entries "
        f"({p['reader_entries']} in the reader rows), K={p['k']}, {p['rounds']} rounds; µs per entry "
        f"median [min-max]; ratio = row ÷ ours per round (fdatasync {1e6 / p['fsync_per_second']:.0f} µs)"
    ]
    for name, r in p["rows"].items():
        lines.append(
            f"    {name:<46} {r['us_median']:7.2f} [{r['us_min']:.2f}-{r['us_max']:.2f}]   "
            f"{r['ratio_vs_ours_median']:5.2f}x [{r['ratio_vs_ours_min']:.2f}-{r['ratio_vs_ours_max']:.2f}]"
        )
    lines.append("  targets (peer ÷ ours, per round):")
    for name, r in p["targets"].items():
        lines.append(f"    {name:<58} {r['median']:5.2f}x [{r['min']:.2f}-{r['max']:.2f}]")
    for group, c in p["committer"].items():
        lines.append(
            f"  committer (K={group}, no reader): {c['commit_us_per_entry']:.3f} µs per entry committing "
            f"(sort, write, sync), {c['entries_per_group']:.0f} entries per group"
        )
    lines.append("  what one reader thread costs the writer (time with it ÷ time alone, per round):")
    for name, r in p["reader_cost"].items():
        lines.append(f"    {name:<58} {r['median']:5.2f}x [{r['min']:.2f}-{r['max']:.2f}]")
    gets = ", ".join(f"{k} {v:,.0f}" for k, v in p["reader_gets_per_second"].items())
    lines.append(f"  reader get()s per second: {gets}")
    return lines


# ---------------------------------------------------------------- 6 open check

# The open check against its floor, each round in a fresh process:
# bench/open_floor.py (it also runs alone).


# ---------------------------------------------------------------- report


def report(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    t = results["throughput"]
    raw_ns = t["raw"]["loop_ns_per_entry"]
    lines.append(
        f"Throughput: {t['entries']} registrations ({t['per_entry_entries']} for one-by-one rows); µs per entry"
    )
    for mode, rows in t["modes"].items():
        lines.append(f"  {mode}")
        base_one = rows["plain Python + py-lmdb, txn per entry"]
        for name, us in rows.items():
            if "one by one" in name:
                ratio = base_one / us
                ref = "vs py txn-per-entry"
            elif "apply_many" in name:
                size = name.rsplit(" ", 1)[1]
                ratio = rows[f"plain Python + py-lmdb, txn per {size}"] / us
                ref = f"vs py txn per {size}; {us * 1000 / raw_ns:.2f}x raw Rust"
            else:
                ratio, ref = 1.0, "baseline"
            lines.append(f"    {name:<44} {us:10.3f}   {ratio:5.2f}x faster ({ref})")
    lines.append(
        f"  raw Rust get+put in one txn: {raw_ns / 1000:.3f} µs/entry "
        f"({t['raw']['with_commit_ns_per_entry'] / 1000:.3f} with commit)"
    )
    lines.append(f"  disk fdatasync rate: {t['fsync_per_second']:.0f}/s ({1e6 / t['fsync_per_second']:.0f} µs each)")
    if "apply_many_floor" in results:
        f = results["apply_many_floor"]
        lines.append(f"apply_many against its no-disk floor (examples/batch_floor.rs), on {f['filesystem']}")
        for size, row in f.items():
            if size == "filesystem":
                continue
            low, high = row["ratio_range"]
            lines.append(
                f"    {size:<12} {row['package_us']:.3f} µs/entry, floor {row['floor_us']:.3f}: "
                f"{row['ratio_median']:.2f}x the floor [{low:.2f}-{high:.2f}]"
            )
    lines.extend(report_scan(results["scan"]))
    g = results["group_commit"]
    lines.append(f"One-by-one apply(index=), {g['entries']} entries; µs per entry")
    for name, us in g.items():
        if name.endswith("(µs)"):
            lines.append(f"    {name:<44} {us:8.2f}")
    lines.extend(report_pipelined(results["pipelined"]))
    lines.extend(open_floor.report(results["open_check"]))
    lines.append("Growth: per-apply time by rows already stored")
    for row in results["growth"].values():
        cells = "   ".join(f"{k}: {v:.2f}" for k, v in row.items() if k != "rows")
        lines.append(f"    {row['rows']:>9} rows   {cells}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", help="path of the built raw_lmdb example")
    parser.add_argument("--batch-floor", help="path of the built batch_floor example (apply_many's no-disk floor)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--scan-child", nargs=2, metavar=("MODE", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--output", default=str(HERE / "results.json"))
    parser.add_argument(
        "--pipelined", action="store_true", help="only the pipelined write-behind section (printed, not written)"
    )
    parser.add_argument("--rounds", type=int, default=7, help="rounds of the pipelined section")
    parser.add_argument("--scan", action="store_true", help="only the scan section, 2^20 rows (printed, not written)")
    parser.add_argument("--scan-rounds", type=int, default=5, help="paired rounds of to_pandas in the scan section")
    parser.add_argument(
        "--k", type=int, default=8192, help="group_commit=K of the pipelined section (the package's default)"
    )
    args = parser.parse_args()
    if args.scan_child:
        scan_child(*args.scan_child)
        return
    if args.pipelined:
        with tempfile.TemporaryDirectory(prefix="ea-bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
            p = pipelined(Path(tmp), *PIPELINED_SIZES[args.quick], k=args.k, rounds=args.rounds)
        print("\n".join(report_pipelined(p)))
        print(json.dumps(p))
        return
    if args.scan:
        with tempfile.TemporaryDirectory(prefix="ea-bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
            big = Path(tmp) / "scan"
            build_scan_registry(big, 2 if args.quick else 16)
            s = scans(big, args.scan_rounds)
        print("\n".join(report_scan(s)))
        print(json.dumps(s))
        return
    nodes, deks, rounds = (2000, 10, 5) if args.quick else (20_000, 10, 5)
    scan_deks = 2 if args.quick else 16
    sizes = [1_000, 10_000, 65_536 * scan_deks] if args.quick else [1_000, 100_000, 65_536 * scan_deks]
    with tempfile.TemporaryDirectory(prefix="ea-bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
        root = Path(tmp)
        results: dict[str, Any] = {
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                "package": ea.__version__,
                "quick": args.quick,
            }
        }
        regs = workload(nodes, deks, rounds)
        results["throughput"] = throughput(root, regs, 2000 if not args.quick else 500, args.raw, nodes, deks, rounds)
        if args.batch_floor:
            results["apply_many_floor"] = apply_many_floor(
                args.batch_floor, regs, nodes, deks, rounds, repeats=3 if args.quick else 11
            )
        big = root / "scan"
        results["scan_rows_built"] = build_scan_registry(big, scan_deks)
        results["scan"] = scans(big, args.scan_rounds)
        results["open_check"] = open_floor.measure(
            root, [10_000, 100_000] if args.quick else [100_000, 1_000_000], 3 if args.quick else 7
        )
        results["group_commit"] = group_commit(root, 2000 if args.quick else 20_000)
        results["pipelined"] = pipelined(root, *PIPELINED_SIZES[args.quick], k=args.k, rounds=args.rounds)
        results["growth"] = growth(root, big, sizes, probes=2000 if not args.quick else 300)
    lines = report(results)
    print("\n".join(lines))
    results["table"] = lines
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
