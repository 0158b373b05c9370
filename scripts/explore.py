"""The power-loss and fault explorer at a larger size than the test
command's: runs tests/robustness/test_power_loss.py and
test_resync_power_loss.py with more states per model and trace, and
prints the figures the durability guide quotes (states checked per
workload and model, how many opened, were refused, re-created, lost
returned applies in sync=False mode, and violations; sweep runs).

    .venv/bin/python scripts/explore.py [--budget N] [--seed S]

Needs the extension built (scripts/test.sh or scripts/setup.sh does it).
A budget of 400 takes a few minutes on two cores.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=400, help="states per model per trace (test command: 40)")
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args()
    report = Path(tempfile.mkstemp(prefix="ea-explore-", suffix=".jsonl")[1])
    env = {
        **os.environ,
        "EA_EXPLORE_BUDGET": str(args.budget),
        "EA_EXPLORE_SEED": str(args.seed),
        "EA_EXPLORE_REPORT": str(report),
    }
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/robustness/test_power_loss.py",
            "tests/robustness/test_resync_power_loss.py",
        ],
        cwd=ROOT,
        env=env,
    )
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    report.unlink()
    states: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    sweeps = []
    for row in rows:
        if "model" in row:
            for key in ("checked", "opened", "refused", "uncommitted", "lost", "violations"):
                states[(row["test"], row["model"])][key] += row[key]
        else:
            sweeps.append(row)
    today = datetime.date.today().isoformat()
    print(f"\npower-loss states ({today}, budget {args.budget} per model per trace, seed {args.seed}):\n")
    columns = ("checked", "opened", "refused", "uncommitted", "lost", "violations")
    widths = (6, 6, 7, 10, 5, 10)

    def line(name: str, model: str, values: tuple[object, ...]) -> str:
        cells = " ".join(f"{v!s:>{w}}" for v, w in zip(values, widths, strict=True))
        return f"{name:<58} {model:<10} {cells}"

    print(line("workload", "model", ("states", "opened", "refused", "re-created", "lost", "violations")))
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (test, model), c in sorted(states.items()):
        print(line(test.removeprefix("test_"), model, tuple(c[k] for k in columns)))
        for key, value in c.items():
            totals[model][key] += value
    for model, c in totals.items():
        print(line("all", model, tuple(c[k] for k in columns)))
    print("\nfault sweep (each mutating call failed once):")
    for row in sweeps:
        print(f"  {row['sweep']:<8} {row['errno']:<7} {row['runs']} runs")
    print(f"\npytest exit status {ran.returncode}")
    return ran.returncode


if __name__ == "__main__":
    sys.exit(main())
