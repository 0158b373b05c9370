"""Go's verdicts for the start-up audit of a sidecar behind the Raft log,
re-derived from elastickv's source at d9a031d0, written to
tests/core/golden/go/startup_gap.json.

No Go toolchain can be had where this package is built, so this script
follows Go's code path by hand instead of running it; each step names the
Go file and lines it stands for (paths in bootjp/elastickv). It does not
import encryption_applier: the test compares the package with this file.

Inputs of a case: the sidecar's raft_applied_index (s), the engine's
applied index (e) and the log the node holds, as a contiguous run of FSM
payload opcodes from index `first` (None: no scanner at all; an opcode of
None: an entry without an FSM payload, such as a configuration change).

Run: python scripts/go_vectors/startup_gap.py
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

COMMIT = "d9a031d0"
OUT = Path(__file__).resolve().parents[2] / "tests/core/golden/go/startup_gap.json"

# internal/encryption/fsmwire/wire.go: OpBootstrap = 0x04, OpEncryptionMax = 0x07.
OP_BOOTSTRAP, OP_ENCRYPTION_MAX = 0x04, 0x07


def is_encryption_relevant(opcode: int | None) -> bool:
    # internal/encryption/audit.go:57-59 (IsEncryptionRelevantOpcode), and
    # internal/raftengine/etcd/encryption_scanner.go:125-135: an entry
    # without a payload is not relevant.
    return opcode is not None and OP_BOOTSTRAP <= opcode <= OP_ENCRYPTION_MAX


class ScannerError(Exception):
    pass


def memory_storage_entries(first: int, opcodes: list[int | None], lo: int, hi: int) -> list[tuple[int, int | None]]:
    """etcd raft's MemoryStorage.Entries(lo, hi) over a storage whose dummy
    entry (the snapshot point) is at first - 1 and whose entries are first..:
    lo at or below the dummy is ErrCompacted; hi past lastIndex + 1 is a
    panic (Go's process dies); only the dummy is ErrUnavailable."""
    offset = first - 1
    last = offset + len(opcodes)
    if lo <= offset:
        raise ScannerError("ErrCompacted")
    if hi > last + 1:
        raise ScannerError("panic: entries' hi is out of bound lastindex")
    if not opcodes:
        raise ScannerError("ErrUnavailable")
    return [(i, opcodes[i - first]) for i in range(lo, hi)]


def scan(first: int, opcodes: list[int | None], start_exclusive: int, end_inclusive: int) -> bool:
    # encryption_scanner.go:57-105 (HasEncryptionRelevantEntryInRange): one
    # Entries() call covers these small ranges (64 MiB cap, :21).
    if start_exclusive >= end_inclusive:
        return False
    batch = memory_storage_entries(first, opcodes, start_exclusive + 1, end_inclusive + 1)
    return any(is_encryption_relevant(op) for _, op in batch)


def go_verdict(s: int, e: int, log: tuple[int, list[int | None]] | None) -> str:
    # main_encryption_startup_guard.go:181-186: a sidecar that never recorded
    # an index only logs a warning.
    if s == 0:
        return "warn-skip"
    # audit.go:113-136 (GuardSidecarBehindRaftLog)
    if s >= e:
        return "ok"
    if log is None:
        return "ErrSidecarBehindRaftLog"  # nil scanner: fail closed (:118-125)
    try:
        hit = scan(log[0], log[1], s, e)
    except ScannerError as err:
        return f"scanner-error: {err}"  # wrapped, NOT ErrSidecarBehindRaftLog (:126-131)
    return "ErrSidecarBehindRaftLog" if hit else "ok"


def cases() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    logs: list[tuple[int, list[int | None]] | None] = [None]
    shapes: list[list[int | None]] = [[], [None], [0x00, 0x03], [0x03, 0x05, None], [0x00, 0x00, 0x04, 0x00, 0x06]]
    for first, shape in itertools.product(range(1, 6), shapes):
        logs.append((first, list(shape)))
    for s, e, log in itertools.product(range(0, 5), range(0, 7), logs):
        out.append(
            {
                "sidecar_raft_applied_index": s,
                "engine_applied_index": e,
                "log_first_index": None if log is None else log[0],
                "log_opcodes": None if log is None else log[1],
                "go": go_verdict(s, e, log),
            }
        )
    return out


def main() -> None:
    doc = {
        "elastickv_commit": COMMIT,
        "generated_by": "scripts/go_vectors/startup_gap.py",
        "go_sources": [
            "internal/encryption/audit.go:57-59,113-136",
            "internal/raftengine/etcd/encryption_scanner.go:57-135",
            "main_encryption_startup_guard.go:150-195",
            "go.etcd.io/raft/v3 storage.go MemoryStorage.Entries",
        ],
        "cases": cases(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # One case a line, so a change to Go's verdicts reads as a short diff.
    head = {k: v for k, v in doc.items() if k != "cases"}
    lines = ",\n".join("  " + json.dumps(case, sort_keys=True) for case in doc["cases"])
    OUT.write_text(json.dumps(head, indent=1)[:-2] + ',\n "cases": [\n' + lines + "\n ]\n}\n")
    print(f"wrote {len(doc['cases'])} cases to {OUT}")


if __name__ == "__main__":
    main()
