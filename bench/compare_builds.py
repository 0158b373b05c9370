"""Paired comparison of two builds of the package on the per-entry cost
of the strict path: one-by-one `apply(entry, index=i)` with sync=True
(an fdatasync and an O_DSYNC meta write per entry), and, where both
builds have the KEK path, nothing else.

    python bench/compare_builds.py PYTHON_A PYTHON_B [--rounds 31] [--entries 300]

Each interpreter must have a build of `encryption_applier` installed. The
two run alternately, one slice each per round (the order flipped every
round), each slice in a fresh registry in the same directory, so a slow
stretch of the disk hits both; the result is the median of the per-round
ratios B/A with its interquartile range. Used to show what the issue-18
fixes cost a strict entry (docs/guide/performance.md).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from pathlib import Path

SLICE = """
import sys, time, encryption_applier as ea
directory, n = sys.argv[1], int(sys.argv[2])
entries = [ea.Registration(1 + i % 3, (0xA0 << 32) | (i % 97), 1 + i // 97).to_entry() for i in range(n)]
with ea.Applier(directory) as applier:
    applier.apply(entries[0], index=1)   # creation and the first commit are not timed
    start = time.perf_counter()
    for i in range(1, n):
        applier.apply(entries[i], index=i + 1)
    elapsed = time.perf_counter() - start
print(elapsed / (n - 1) * 1e6)
"""


def one_slice(python: str, root: Path, name: str, entries: int) -> float:
    out = subprocess.run([python, "-c", SLICE, str(root / name), str(entries)], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    return float(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--entries", type=int, default=300)
    parser.add_argument("--dir", default=None, help="where the registries go (default: a temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        a_times, b_times, ratios = [], [], []
        for r in range(args.rounds):
            order = [("a", args.a), ("b", args.b)] if r % 2 == 0 else [("b", args.b), ("a", args.a)]
            got = {key: one_slice(python, root, f"{key}{r}", args.entries) for key, python in order}
            a_times.append(got["a"])
            b_times.append(got["b"])
            ratios.append(got["b"] / got["a"])
    q = statistics.quantiles(ratios, n=4)
    print(f"A: median {statistics.median(a_times):.1f} µs per strict entry ({args.a})")
    print(f"B: median {statistics.median(b_times):.1f} µs per strict entry ({args.b})")
    print(
        f"B/A: median {statistics.median(ratios):.3f}, interquartile {q[0]:.3f}-{q[2]:.3f} "
        f"over {args.rounds} paired rounds"
    )


if __name__ == "__main__":
    main()
