"""The page walk every open makes, by what it does rather than how long it
takes (speed is bench/'s, never a test's): it reads data.mdb in large
sequential reads, a reopen of the unchanged file in the same process skips
it, every change to the file makes the next open walk again, and a read
error during it is an open error, never a signal. The reads are those the
project's shim records (tests/fsfault.py, `reads=True`)."""

import struct
import time
from pathlib import Path

import pytest

import encryption_applier as ea

from fsfault import Call, traced, traced_ok

ROWS = 200_000
LARGE = 128 << 10
# The package keeps a verdict only for a file unwritten for 2 s
# (src/store/verify/verdicts.rs, AT_REST); the registries rest longer.
AT_REST = 2.5


def build(path: Path, rows: int) -> Path:
    regs = [ea.Registration(1 + i // 65536, (i % 65536) | ((1 + i // 65536) << 16), 1) for i in range(rows)]
    with ea.Applier(path, sync=False) as applier:
        for start in range(0, rows, 100_000):
            applier.apply_many(regs[start : start + 100_000])
    return path


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("walk").resolve() / "big", ROWS)


def reads_of(calls: list[Call], directory: Path) -> list[Call]:
    return [c for c in calls if c.kind == "read" and c.path == str(directory / "data.mdb")]


def test_the_open_walk_reads_data_mdb_in_large_sequential_reads(big: Path) -> None:
    run = traced_ok(
        "import sys, encryption_applier as ea\nea.Registry(sys.argv[1]).close()\n", str(big), under=big, reads=True
    )
    reads = reads_of(run.calls, big)
    report = ea.verify(big, rows=False)
    assert report.ok and report.leaf_pages > 2000, report
    large = [c for c in reads if c.count >= LARGE and not c.failed]
    # Every leaf page lies in a large read, but for the last chunk's, which
    # the end of the leaves can cut short.
    leaf_bytes = report.leaf_pages * report.page_size
    assert sum(c.result for c in large) >= leaf_bytes - 2 * LARGE, (len(large), leaf_bytes)
    offsets = [c.offset for c in large]
    assert offsets == sorted(set(offsets)), "the large reads go forward through the file"
    # Nothing near one read per page: the large reads, one per branch page
    # (read as the tree is descended), and the meta pages' few.
    size = (big / "data.mdb").stat().st_size
    assert len(reads) <= size // LARGE + 1 + report.branch_pages + 20, (len(reads), report.branch_pages)


def first_leaf(path: Path) -> tuple[int, int]:
    """The main tree's leftmost leaf and the page size, read with struct
    (the layout as test_damage.py reads it)."""
    data = (path / "data.mdb").read_bytes()
    psize = struct.unpack_from("=I", data, 16 + 24)[0]
    metas = []
    for slot in (0, 1):
        base = slot * psize + 16
        metas.append((struct.unpack_from("=Q", data, base + 128)[0], -slot, base))
    _txnid, _slot, meta = max(metas)
    (root,) = struct.unpack_from("=Q", data, meta + 72 + 40)
    (depth,) = struct.unpack_from("=H", data, meta + 72 + 6)
    page = root
    for _ in range(depth - 1):  # node 0 of each branch: its first child
        base = page * psize
        (ptr,) = struct.unpack_from("=H", data, base + 16)
        lo, hi, flags = struct.unpack_from("=HHH", data, base + ptr)
        page = lo | hi << 16 | flags << 32
    return page, psize


REOPEN_CHILD = """
import os, shutil, sys, encryption_applier as ea
leaf = int(sys.argv[1])
paths = dict(arg.split("=", 1) for arg in sys.argv[2:])

def opened(name, phase):
    mark(phase, name)
    try:
        ea.Registry(paths[name]).close()
        print(name, phase, "opened", flush=True)
    except ea.DamagedRegistryError as err:
        print(name, phase, "refused", err.problem, flush=True)
    mark("done", name)

for name, path in paths.items():
    opened(name, "first")
    opened(name, "again")
    data = os.path.join(path, "data.mdb")
    if name == "touch":
        os.utime(data)
    elif name == "append":
        with open(data, "ab") as f:
            f.write(bytes(4096))
    elif name == "commit":
        with ea.Applier(path) as applier:
            applier.apply(ea.Registration(99, 0x10005, 1))
    elif name == "replace":
        shutil.copy2(data, data + ".copy")
        os.replace(data + ".copy", data)
    elif name == "damage":
        fd = os.open(data, os.O_WRONLY)
        os.pwrite(fd, bytes(4096), leaf * 4096)
        os.close(fd)
    opened(name, "changed")
"""


def read_in(calls: list[Call], directory: Path, phase: str) -> int:
    """Bytes read from `directory`'s data.mdb between its `phase` mark and
    the next `done` mark."""
    start = next(
        i for i, c in enumerate(calls) if c.kind == "mark" and c.path == phase and c.fields == [directory.name]
    )
    end = next(i for i, c in enumerate(calls) if i > start and c.kind == "mark" and c.path == "done")
    return sum(max(c.result, 0) for c in reads_of(calls[start:end], directory))


def test_a_reopen_of_the_unchanged_file_skips_the_walk_and_every_change_walks_again(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    changed = ["touch", "append", "commit", "replace", "damage"]
    for name in changed:
        build(root / name, 20_000)
    leaf, psize = first_leaf(root / "damage")
    assert psize == 4096
    time.sleep(AT_REST)
    # Written just now: its verdict is not kept, so each open walks.
    build(root / "young", 20_000)
    names = [*changed, "young"]
    run = traced_ok(REOPEN_CHILD, str(leaf), *(f"{n}={root / n}" for n in names), under=root, reads=True)
    outcome = {tuple(line.split()[:2]): line.split(maxsplit=2)[2] for line in run.proc.stdout.splitlines()}
    size = (root / "touch" / "data.mdb").stat().st_size
    walked = {(name, phase): read_in(run.calls, root / name, phase) > size // 2 for name, phase in outcome}
    for name in changed:
        assert walked[name, "first"], f"{name}: the first open walks"
        assert not walked[name, "again"], f"{name}: a reopen of the unchanged file does not"
        assert walked[name, "changed"], f"{name}: an open after the change walks again"
        expected = "refused page_header" if name == "damage" else "opened"
        assert outcome[name, "changed"] == expected, (name, outcome)
    assert walked["young", "first"] and walked["young", "again"], "a file written just now is walked every time"
    # A cached open still reads the meta pages (and LMDB its header).
    assert 0 < read_in(run.calls, root / "touch", "again") < 4 * psize


EIO_CHILD = """
import sys, encryption_applier as ea
try:
    ea.Registry(sys.argv[1]).close()
    print("opened")
except ea.DamagedRegistryError as err:
    print("refused", err.problem, err.page)
"""


def test_a_read_error_during_the_walk_refuses_the_open_without_a_signal(big: Path) -> None:
    # Which read of data.mdb is the walk's first large one.
    clean = traced_ok(EIO_CHILD, str(big), under=big, reads=True)
    reads = [c for c in clean.calls if c.kind == "read" and "data.mdb" in c.path]
    first_large = next(i for i, c in enumerate(reads, start=1) if c.count >= LARGE)
    assert clean.proc.stdout.split() == ["opened"]
    # That read and every one after fail with EIO: the chunk, then each
    # page of it read alone to say which one.
    run = traced(
        EIO_CHILD, str(big), under=big, reads=True, fail=f"read:{first_large}:EIO", match="data.mdb", repeat=True
    )
    assert run.proc.returncode == 0, (run.proc.returncode, run.proc.stderr)
    words = run.proc.stdout.split()
    assert words[:2] == ["refused", "io"], run.proc.stdout
    failed = [c for c in reads_of(run.calls, big) if c.failed]
    assert failed and failed[0].count >= LARGE and any(c.count == 4096 for c in failed)


FAULTS_CHILD = """
import resource, sys, encryption_applier as ea
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
ea.Registry(sys.argv[1]).close()
before = faults()
ea.Registry(sys.argv[2]).close()
print(faults() - before)
"""


@pytest.mark.parametrize("rows", [100_000, ROWS])
def test_a_later_walk_reuses_the_read_buffers(tmp_path: Path, rows: int) -> None:
    """The walk's read buffers (up to three of 256 KiB) are kept for the
    next walk in the process: a first open of a second registry faults in
    a few pages of its own, not the buffers' 192 again (it faulted 277 at
    10^5 rows before). 10^5 rows are read on the caller's thread, 2*10^5
    (over 8 MiB) with the read-ahead thread."""
    a, b = build(tmp_path / "a", rows), build(tmp_path / "b", rows)
    time.sleep(AT_REST)
    run = traced_ok(FAULTS_CHILD, str(a), str(b), under=tmp_path.resolve())
    faults = int(run.proc.stdout.split()[-1])
    assert faults < 150, f"{faults} minor page faults for the second registry's open"
