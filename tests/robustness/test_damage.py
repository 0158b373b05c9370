"""A damaged or foreign data.mdb never crashes the interpreter and never
reads as partial data: every open walks the file first (pages, nodes, key
order, counts, free lists) and refuses with DamagedRegistryError, and
`verify()` reports every problem. The damage here is planted with an
independent reading of LMDB's page layout (struct, not the package)."""

import os
import shutil
import struct
import textwrap
from pathlib import Path

import pytest

import encryption_applier as ea

from helpers import run_python

PAGE_HEADER = 16
META = PAGE_HEADER  # the meta record follows the page header
MAIN_DB = META + 72  # the main database's record in the meta
ROWS = 3000

# Opens the registry every way a user would, in a child process so that a
# signal (SIGBUS, SIGSEGV, SIGABRT) fails the test instead of killing it.
PROBE = textwrap.dedent(
    """
    import sys, encryption_applier as ea
    path = sys.argv[1]
    for name, opener in (("Applier", ea.Applier), ("Registry", ea.Registry)):
        try:
            handle = opener(path)
        except ea.DamagedRegistryError as err:
            print(name, "refused", err.problem, err.page, flush=True)
            continue
        with handle:
            view = handle if name == "Registry" else handle.registry
            print(name, "opened", len(view), view.digest(), flush=True)
    report = ea.verify(path)
    print("verify", report.ok, *sorted({d.problem for d in report.problems}), flush=True)
    """
)


def probe(path: Path) -> list[str]:
    return run_python(PROBE, str(path), timeout=120).stdout.splitlines()


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("damage") / "healthy"
    with ea.Applier(path, sync=False) as applier:
        for start in range(0, ROWS, 100):  # many commits: a free-page tree
            applier.apply_many([ea.Registration(1 + i // 1000, i + 1, 1) for i in range(start, start + 100)])
    return path


@pytest.fixture
def copy(healthy: Path, tmp_path: Path) -> Path:
    target = tmp_path / "registry"
    shutil.copytree(healthy, target, ignore=shutil.ignore_patterns("lock.mdb", "writer.lock"))
    target.chmod(0o700)
    return target


def read_meta(path: Path) -> dict[str, int]:
    """The newest meta, as LMDB picks it."""
    data = (path / "data.mdb").read_bytes()
    psize = struct.unpack_from("=I", data, META + 24)[0]
    metas = []
    for slot in (0, 1):
        base = slot * psize
        (root,) = struct.unpack_from("=Q", data, base + MAIN_DB + 40)
        (depth,) = struct.unpack_from("=H", data, base + MAIN_DB + 6)
        (txnid,) = struct.unpack_from("=Q", data, base + META + 128)
        metas.append({"slot": slot, "psize": psize, "root": root, "depth": depth, "txnid": txnid})
    return max(metas, key=lambda m: (m["txnid"], -m["slot"]))


def first_leaf(path: Path) -> int:
    meta = read_meta(path)
    data = (path / "data.mdb").read_bytes()
    page = meta["root"]
    for _ in range(meta["depth"] - 1):  # follow node 0 of each branch
        base = page * meta["psize"]
        (ptr,) = struct.unpack_from("=H", data, base + PAGE_HEADER)
        lo, hi, flags = struct.unpack_from("=HHH", data, base + ptr)
        page = lo | hi << 16 | flags << 32
    return page


def patch(path: Path, offset: int, data: bytes) -> None:
    with open(path / "data.mdb", "r+b") as f:
        f.seek(offset)
        f.write(data)


def assert_refused(lines: list[str], problem: str) -> None:
    assert lines[0].startswith(f"Applier refused {problem}"), lines
    assert lines[1].startswith(f"Registry refused {problem}"), lines
    assert lines[2].startswith("verify False") and problem in lines[2].split(), lines


def test_the_healthy_copy_opens_whole(copy: Path) -> None:
    lines = probe(copy)
    assert lines[0].startswith(f"Applier opened {ROWS} ") and lines[1].startswith(f"Registry opened {ROWS} "), lines
    assert lines[2] == "verify True"
    report = ea.verify(copy)
    assert report.entries == ROWS and report.depth == 2 and report.free_pages > 0, report


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_a_truncated_file_is_refused_not_read_in_part(copy: Path, keep: float) -> None:
    data = copy / "data.mdb"
    psize = read_meta(copy)["psize"]
    pages = int(data.stat().st_size * keep) // psize
    os.truncate(data, pages * psize)
    assert_refused(probe(copy), "truncated")


def test_a_file_cut_inside_the_meta_pages_is_refused(copy: Path) -> None:
    os.truncate(copy / "data.mdb", 5000)
    lines = probe(copy)
    assert lines[0].startswith("Applier refused truncated"), lines


def test_a_zeroed_leaf_page_is_refused(copy: Path) -> None:
    meta = read_meta(copy)
    leaf = first_leaf(copy)
    patch(copy, leaf * meta["psize"], bytes(meta["psize"]))
    lines = probe(copy)
    assert_refused(lines, "page_header")
    assert lines[0].split()[3] == str(leaf)


def test_a_huge_value_size_in_a_leaf_node_is_refused(copy: Path) -> None:
    meta = read_meta(copy)
    base = first_leaf(copy) * meta["psize"]
    (ptr,) = struct.unpack_from("=H", (copy / "data.mdb").read_bytes(), base + PAGE_HEADER)
    patch(copy, base + ptr, struct.pack("=HH", 0xFFFF, 0xFFFF))
    assert_refused(probe(copy), "node_bounds")


def test_an_odd_node_offset_is_refused(copy: Path) -> None:
    """LMDB asserts nodes are 2-byte aligned when it moves one: a node
    moved intact to an odd offset (free space made for it) is refused."""
    meta = read_meta(copy)
    base = first_leaf(copy) * meta["psize"]
    data = (copy / "data.mdb").read_bytes()
    lower, upper = struct.unpack_from("=HH", data, base + 12)
    assert upper - lower >= 2, "the leaf has free space"
    ptrs = struct.unpack_from(f"={(lower - PAGE_HEADER) // 2}H", data, base + PAGE_HEADER)
    j = min(range(len(ptrs)), key=lambda i: ptrs[i])
    assert ptrs[j] == upper
    lo, hi, _flags, ksize = struct.unpack_from("=HHHH", data, base + upper)
    node = data[base + upper : base + upper + 8 + ksize + (lo | hi << 16)]
    patch(copy, base + upper - 1, node)
    patch(copy, base + PAGE_HEADER + 2 * j, struct.pack("=H", upper - 1))
    patch(copy, base + 14, struct.pack("=H", upper - 2))
    lines = probe(copy)
    assert_refused(lines, "node_bounds")


def test_a_free_list_out_of_order_is_refused(copy: Path) -> None:
    """LMDB finds runs of free pages assuming each list descends; an
    unsorted one could hand out a page in use."""
    data = (copy / "data.mdb").read_bytes()
    meta = read_meta(copy)
    base = meta["slot"] * meta["psize"]
    (free_root,) = struct.unpack_from("=Q", data, base + META + 24 + 40)
    (free_depth,) = struct.unpack_from("=H", data, base + META + 24 + 6)
    assert free_depth == 1, "the fixture's free-page tree is one leaf"
    leaf = free_root * meta["psize"]
    (ptr,) = struct.unpack_from("=H", data, leaf + PAGE_HEADER)
    _lo, _hi, flags, ksize = struct.unpack_from("=HHHH", data, leaf + ptr)
    assert flags == 0, "an inline free list"
    ids = leaf + ptr + 8 + ksize
    count, first, second = struct.unpack_from("=QQQ", data, ids)
    assert count >= 2 and first > second
    patch(copy, ids + 8, struct.pack("=QQ", second, first))
    assert_refused(probe(copy), "free_list")


def test_branch_pointing_twice_at_one_child_is_refused(copy: Path) -> None:
    meta = read_meta(copy)
    data = (copy / "data.mdb").read_bytes()
    base = meta["root"] * meta["psize"]
    ptr0, ptr1 = struct.unpack_from("=HH", data, base + PAGE_HEADER)
    patch(copy, base + ptr1, data[base + ptr0 : base + ptr0 + 6])  # child 1 := child 0
    assert_refused(probe(copy), "page_number")


@pytest.mark.parametrize(("flag", "name"), [(0x04, "MDB_DUPSORT"), (0x02, "MDB_REVERSEKEY"), (0x08, "MDB_INTEGERKEY")])
def test_foreign_database_flags_are_refused_by_name(copy: Path, flag: int, name: str) -> None:
    psize = read_meta(copy)["psize"]
    for slot in (0, 1):
        patch(copy, slot * psize + MAIN_DB + 4, struct.pack("=H", flag))
    assert_refused(probe(copy), "db_flags")
    with pytest.raises(ea.DamagedRegistryError, match=name) as err:
        ea.Registry(copy)
    assert err.value.problem == "db_flags" and isinstance(err.value, ea.RegistryOpenError)


def test_verify_reports_every_problem_and_a_corrupt_row(copy: Path) -> None:
    meta = read_meta(copy)
    base = first_leaf(copy) * meta["psize"]
    data = (copy / "data.mdb").read_bytes()
    (ptr,) = struct.unpack_from("=H", data, base + PAGE_HEADER)
    lo, hi, _flags, ksize = struct.unpack_from("=HHHH", data, base + ptr)
    value_at = base + ptr + 8 + ksize
    # Epochs out of order (first_seen > last_seen): a row the rules never write.
    patch(copy, value_at + 8, struct.pack(">HH", 9, 1))
    report = ea.verify(copy)
    assert not report.ok and [d.problem for d in report.problems] == ["row"], report.problems
    assert report.problems[0].page == first_leaf(copy)
    assert ea.verify(copy, rows=False).ok
    # Row damage is not structural: the registry opens, and the row raises when read.
    with ea.Registry(copy) as view, pytest.raises(ea.RegistryCorruptionError):
        view.rows()


def test_random_damage_never_crashes_and_never_reads_short(healthy: Path, tmp_path: Path) -> None:
    """Seeded random damage to copies of the registry, all opened in one
    child: any signal fails the test with the case that caused it."""
    code = """
    import os, random, shutil, struct, sys
    import encryption_applier as ea
    healthy, scratch, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(20261130)
    size = os.path.getsize(os.path.join(healthy, "data.mdb"))
    psize = 4096
    outcomes = {}
    for case in range(200):
        path = os.path.join(scratch, f"case{case}")
        shutil.copytree(healthy, path, ignore=shutil.ignore_patterns("lock.mdb", "writer.lock"))
        os.chmod(path, 0o700)
        with open(os.path.join(path, "data.mdb"), "r+b") as f:
            for _ in range(rng.randint(1, 4)):
                page = rng.randrange(size // psize)
                # mostly headers, node pointers and the first nodes
                offset = page * psize + (rng.randrange(96) if rng.random() < 0.7 else rng.randrange(psize))
                f.seek(offset)
                f.write(bytes([rng.randrange(256)]) if rng.random() < 0.6 else os.urandom(rng.randint(2, 8)))
        print("case", case, flush=True)
        try:
            with ea.Registry(path) as view:
                n = len(view)
                listed = view.rows()
                # Whole, or (a meta whose txnid was damaged downwards) the
                # previous commit, also whole: never a part.
                assert n == len(listed) and n in (rows, rows - 100), (n, len(listed))
                view.digest()
                view.verify()
            with ea.Applier(path) as applier:
                applier.apply(ea.Registration(9, 0x1234, 1))
            kind = "opened"
        except ea.DamagedRegistryError as err:
            kind = "refused:" + err.problem
        except ea.RegistryCorruptionError:
            kind = "corrupt row"
        except ea.EncryptionError as err:
            kind = type(err).__name__
        outcomes[kind] = outcomes.get(kind, 0) + 1
        shutil.rmtree(path)
    print(sorted(outcomes.items()))
    """
    proc = run_python(code, str(healthy), str(tmp_path), str(ROWS), timeout=600)
    summary = proc.stdout.splitlines()[-1]
    print(summary)
    assert "refused:" in summary, summary  # the damage was real, and caught
