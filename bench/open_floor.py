"""The open check against its floor (issue 21), each target a ratio
measured in one process.

Every open of a registry walks the pages of data.mdb before LMDB may read
them (docs/guide/robustness.md). The floor of that walk is reading the
file once, sequentially, in the same process: 128 KiB and 1 MiB reads
into one buffer, page cache warm, the faster of the two. Each round is a
fresh interpreter (no environment, no verdict of an earlier open) that
measures, on a registry at rest (built, then left unwritten for a few
seconds, as a replica's registry is between restarts):

1. the floor: best of 5 whole-file reads at each read size;
2. the first open: `Registry(path)`, once (the process has never opened
   the path);
3. a reopen of the unchanged file after closing it: best of 5;
4. `verify(path, rows=False)`, the same walk asked for explicitly: best
   of 3;
5. the peer: py-lmdb's open and first read transaction (when installed).

Targets: first open within 3x the floor at 10^6 rows; a reopen about a
millisecond. Printed as median [min-max] over the rounds; `bench/run.py`
runs it as its "Open check" part, and it runs alone too:

    python bench/open_floor.py [--rows 100000 1000000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import encryption_applier as ea

HERE = Path(__file__).resolve().parent
READ_SIZES = (128 << 10, 1 << 20)
# How long a registry is left unwritten before it is measured.
AT_REST_SECONDS = 3.0


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def build(path: Path, rows: int) -> None:
    """`rows` registrations, 65 536 nodes per DEK, in batches of 100 000."""
    regs = [ea.Registration(1 + i // 65536, (i % 65536) | ((1 + i // 65536) << 16), 1) for i in range(rows)]
    with ea.Applier(path, sync=False) as applier:
        for start in range(0, rows, 100_000):
            applier.apply_many(regs[start : start + 100_000])


def read_once(data: Path, size: int, buf: bytearray) -> int:
    """One sequential pass over the file in reads of `size` bytes."""
    view = memoryview(buf)[:size]
    total = 0
    with open(data, "rb", buffering=0) as f:
        while n := f.readinto(view):
            total += n
    return total


def child(path_text: str) -> None:
    """One round, in a fresh interpreter: prints the figures as JSON (ms)."""
    path = Path(path_text)
    data = path / "data.mdb"
    buf = bytearray(max(READ_SIZES))
    out: dict[str, Any] = {"file_mb": data.stat().st_size / 1e6}
    for size in READ_SIZES:
        out[f"read {size >> 10} KiB"] = min(timed(lambda s=size: read_once(data, s, buf)) for _ in range(5)) * 1e3
    out["floor"] = min(out[f"read {size >> 10} KiB"] for size in READ_SIZES)

    view: Any = None

    def open_view() -> None:
        nonlocal view
        view = ea.Registry(path)

    out["first open"] = timed(open_view) * 1e3
    out["rows"] = len(view)
    view.close()
    reopens = []
    for _ in range(5):
        reopens.append(timed(open_view) * 1e3)
        view.close()
    out["reopen"] = min(reopens)
    out["verify(rows=False)"] = min(timed(lambda: ea.verify(path, rows=False)) for _ in range(3)) * 1e3
    try:
        import lmdb
    except ImportError:
        pass
    else:

        def py_lmdb() -> None:
            env = lmdb.open(str(path), readonly=True, lock=True, map_size=1 << 32)
            env.begin().abort()
            env.close()

        out["py-lmdb open+begin"] = min(timed(py_lmdb) for _ in range(5)) * 1e3
    print(json.dumps(out))


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure(root: Path, sizes: list[int], rounds: int) -> dict[str, Any]:
    """Builds a registry of each size under `root`, lets them rest, and
    runs `rounds` fresh-process rounds on each (sizes interleaved)."""
    paths = {}
    for rows in sizes:
        paths[rows] = root / f"open-{rows}"
        build(paths[rows], rows)
    time.sleep(AT_REST_SECONDS)
    runs: dict[int, list[dict[str, float]]] = {rows: [] for rows in sizes}
    for _ in range(rounds):
        for rows in sizes:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", str(paths[rows])], capture_output=True, text=True, check=True
            )
            runs[rows].append(json.loads(proc.stdout))
    out: dict[str, Any] = {"rounds": rounds, "method": __doc__.split("\n\n")[1].replace("\n", " ")}
    for rows, results in runs.items():
        row: dict[str, Any] = {"rows": results[0]["rows"], "file_mb": results[0]["file_mb"]}
        for name in results[0]:
            if name not in ("rows", "file_mb"):
                row[f"{name} (ms)"] = spread([r[name] for r in results])
        row["first open / floor"] = spread([r["first open"] / r["floor"] for r in results])
        row["verify(rows=False) / floor"] = spread([r["verify(rows=False)"] / r["floor"] for r in results])
        if "py-lmdb open+begin" in results[0]:
            row["reopen / py-lmdb open"] = spread([r["reopen"] / r["py-lmdb open+begin"] for r in results])
        out[str(rows)] = row
    return out


def report(results: dict[str, Any]) -> list[str]:
    lines = [f"Open check against its floor (page cache warm; median [min-max] of {results['rounds']} processes)"]
    for row in results.values():
        if not isinstance(row, dict) or "rows" not in row:
            continue
        lines.append(f"  {row['rows']} rows, data.mdb {row['file_mb']:.1f} MB")
        for name, s in row.items():
            if isinstance(s, dict):
                unit = "" if "/" in name else " ms"
                lines.append(f"    {name:<34} {s['median']:9.3f}{unit}   [{s['min']:.3f}-{s['max']:.3f}]")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--output", default=str(HERE / "open_results.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    with tempfile.TemporaryDirectory(prefix="ea-bench-open-", dir=os.environ.get("BENCH_DIR")) as tmp:
        results = measure(Path(tmp), args.rows, args.rounds)
    results["date"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    results["package"] = ea.__version__
    lines = report(results)
    print("\n".join(lines))
    results["table"] = lines
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
