"""Exploring registries: snapshots and refresh, stats, digest, diff,
columns, pandas and notebook display."""

import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import encryption_applier as ea
from encryption_applier.testing.model import RegistryModel

from helpers import dump_raw, interactive, run_python

A, B, C = 0xA_0001, 0xB_0002, 0xC_0003


def fill(directory: Path, regs: list[tuple[int, int, int]]) -> None:
    with ea.Applier(directory) as applier:
        for reg in regs:
            applier.apply_registration(ea.Registration(*reg))


STREAM = [(1, A, 1), (1, B, 2), (1, A, 4), (2, C, 3), (7, A, 9), (7, B, 1), (7, B, 5)]


def test_digest_is_sha256_of_keys_and_values_in_key_order(registry_dir: Path) -> None:
    fill(registry_dir, STREAM)
    raw = dump_raw(registry_dir)
    expected = hashlib.sha256(b"".join(k + v for k, v in raw if k.startswith(ea.REGISTRY_PREFIX))).hexdigest()
    with ea.Registry(registry_dir) as registry:
        assert registry.digest() == expected
    with ea.Applier(registry_dir) as applier:
        applier.apply_registration(ea.Registration(7, B, 6))
        assert applier.registry.digest() != expected


def test_empty_registry_digest_is_sha256_of_nothing(registry_dir: Path) -> None:
    ea.Applier(registry_dir).close()
    assert ea.Registry(registry_dir).digest() == hashlib.sha256(b"").hexdigest()


def model_of(stream: list[tuple[int, int, int]]) -> RegistryModel:
    model = RegistryModel()
    for reg in stream:
        model.apply_registration(*reg)
    return model


def test_stats_per_dek(registry_dir: Path) -> None:
    fill(registry_dir, STREAM)
    with ea.Registry(registry_dir) as registry:
        stats = registry.stats()
    rows = model_of(STREAM).sorted_rows()  # (dek, node16, full, first, last)
    assert list(stats) == sorted({r[0] for r in rows}) == [1, 2, 7]
    for dek_id, s in stats.items():
        mine = [r for r in rows if r[0] == dek_id]
        assert s == {
            "rows": len(mine),
            "min_first_seen_local_epoch": min(r[3] for r in mine),
            "max_first_seen_local_epoch": max(r[3] for r in mine),
            "min_last_seen_local_epoch": min(r[4] for r in mine),
            "max_last_seen_local_epoch": max(r[4] for r in mine),
        }


def test_diff_between_replicas(tmp_path: Path) -> None:
    fill(tmp_path / "left", [(1, A, 1), (1, B, 2), (2, C, 3)])
    fill(tmp_path / "right", [(1, B, 3), (2, C, 3), (3, A, 1)])
    left, right = ea.Registry(tmp_path / "left"), ea.Registry(tmp_path / "right")
    d = left.diff(right)
    assert d and len(d) == 3
    assert d.only_in_self == [ea.RegistryRow(1, 1, A, 1, 1)]
    assert d.only_in_other == [ea.RegistryRow(3, 1, A, 1, 1)]
    assert d.changed == [(ea.RegistryRow(1, 2, B, 2, 2), ea.RegistryRow(1, 2, B, 3, 3))]
    assert "only_in_self=1" in repr(d)
    assert not left.diff(left)
    back = right.diff(left)
    assert back.only_in_self == d.only_in_other and back.changed == [(b, a) for a, b in d.changed]


def test_columns_are_arrays_matching_the_model(registry_dir: Path) -> None:
    fill(registry_dir, STREAM)
    with ea.Registry(registry_dir) as registry:
        columns = registry.columns()
        only_7 = registry.columns(7)
    assert {name: col.typecode for name, col in columns.items()} == {
        "dek_id": "I",
        "node_id16": "H",
        "full_node_id": "Q",
        "first_seen_local_epoch": "H",
        "last_seen_local_epoch": "H",
    }
    expected = list(zip(*model_of(STREAM).sorted_rows(), strict=True))
    for i, name in enumerate(
        ["dek_id", "node_id16", "full_node_id", "first_seen_local_epoch", "last_seen_local_epoch"]
    ):
        assert list(columns[name]) == list(expected[i])
    assert list(only_7["dek_id"]) == [7, 7]


def test_to_pandas_is_indexed_by_the_key_with_ids_in_hex(registry_dir: Path) -> None:
    import pandas

    stream = STREAM + [(9, 0xFFFF_FFFF_FFFF_FFFF, 65535)]
    fill(registry_dir, stream)
    with ea.Registry(registry_dir) as registry:
        frame = registry.to_pandas()
        only_1 = registry.to_pandas(dek_id=1)
    assert isinstance(frame, pandas.DataFrame)
    assert isinstance(frame.index, pandas.MultiIndex) and list(frame.index.names) == ["dek_id", "node_id16"]
    assert str(frame.index.levels[0].dtype) == "uint32" and str(frame.index.levels[1].dtype) == "string"
    assert dict(frame.dtypes.astype(str)) == {
        "full_node_id": "string",
        "first_seen_local_epoch": "uint16",
        "last_seen_local_epoch": "uint16",
    }
    # The model's rows, ids written out by hand as the CLI shows them.
    expected = [
        ((dek, f"0x{node16:04x}"), (f"0x{full:016x}", first, last))
        for dek, node16, full, first, last in model_of(stream).sorted_rows()
    ]
    rows = zip(frame.index, frame.itertuples(index=False), strict=True)
    got = [((int(d), n), (f, int(a), int(b))) for (d, n), (f, a, b) in rows]
    assert got == expected
    assert frame.loc[(9, "0xffff"), "full_node_id"] == "0xffffffffffffffff"
    assert frame.loc[(1, "0x0001"), "last_seen_local_epoch"] == 4
    assert list(only_1.index.get_level_values("dek_id")) == [1, 1]


def plain_frame(rows: list[tuple[int, int, int, int, int]]) -> Any:
    """The frame ``to_pandas`` must give, built the obvious way from the
    model's rows: a format per id and ``MultiIndex.from_arrays``."""
    import numpy
    import pandas

    index = pandas.MultiIndex.from_arrays(
        [
            numpy.array([r[0] for r in rows], dtype="uint32"),
            pandas.array([f"0x{r[1]:04x}" for r in rows], dtype="string"),
        ],
        names=["dek_id", "node_id16"],
    )
    return pandas.DataFrame(
        {
            "full_node_id": pandas.array([f"0x{r[2]:016x}" for r in rows], dtype="string"),
            "first_seen_local_epoch": numpy.array([r[3] for r in rows], dtype="uint16"),
            "last_seen_local_epoch": numpy.array([r[4] for r in rows], dtype="uint16"),
        },
        index=index,
    )


def assert_same_frame(got: Any, expected: Any) -> None:
    """Equal values, dtypes, index levels and codes (what ``from_arrays``
    builds), array types included."""
    import numpy
    import pandas

    pandas.testing.assert_frame_equal(got, expected, check_exact=True)
    assert got.index.names == expected.index.names
    for mine, theirs in zip(got.index.levels, expected.index.levels, strict=True):
        pandas.testing.assert_index_equal(mine, theirs, exact=True)
    for mine, theirs in zip(got.index.codes, expected.index.codes, strict=True):
        assert mine.dtype == theirs.dtype and numpy.array_equal(mine, theirs)
    for name in expected.columns:
        assert type(got[name].array) is type(expected[name].array)


def fill_rows(directory: Path, rows: dict[tuple[int, int], tuple[int, int, int]]) -> list[tuple[int, ...]]:
    """Writes ``{(dek_id, node_id16): (high bits, first, last)}`` as two
    registrations a row; returns the rows as the model holds them."""
    model = RegistryModel()
    regs = []
    for (dek, node16), (high, first, last) in rows.items():
        for epoch in (first, last):
            regs.append(ea.Registration(dek, high << 16 | node16, epoch))
            model.apply_registration(dek, high << 16 | node16, epoch)
    with ea.Applier(directory, sync=False) as applier:
        applier.apply_many(regs)
    return list(model.sorted_rows())


_deks = st.one_of(st.sampled_from([1, 2, 7, 0xFFFF_FFFF]), st.integers(1, 2**32 - 1))
_values = st.tuples(st.integers(0, 2**48 - 1), st.integers(0, 65535), st.integers(0, 65535)).map(
    lambda v: (v[0], min(v[1], v[2]), max(v[1], v[2]))
)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.dictionaries(st.tuples(_deks, st.integers(0, 0xFFFF)), _values, max_size=50),
    other=st.dictionaries(st.tuples(_deks, st.integers(0, 0xFFFF)), _values, max_size=20),
)
def test_to_pandas_is_the_frame_built_the_plain_way(
    rows: dict[tuple[int, int], tuple[int, int, int]], other: dict[tuple[int, int], tuple[int, int, int]]
) -> None:
    """The index is built from levels and codes, not from a string per
    row: it must be exactly what ``from_arrays`` makes of the model's rows
    (levels, codes and their dtypes), for the whole registry, one DEK, and
    the keys of a diff."""
    with tempfile.TemporaryDirectory() as tmp:
        expected = fill_rows(Path(tmp) / "a", rows)
        fill_rows(Path(tmp) / "b", {**rows, **other})
        with ea.Registry(Path(tmp) / "a") as registry, ea.Registry(Path(tmp) / "b") as second:
            assert_same_frame(registry.to_pandas(), plain_frame(expected))
            dek = expected[0][0] if expected else 1
            assert_same_frame(registry.to_pandas(dek_id=dek), plain_frame([r for r in expected if r[0] == dek]))
            diff = registry.diff(second)
            diff_frame = diff.to_pandas()
    changed = {(a.dek_id, a.node_id16) for a, _ in diff.changed}
    only_b = {(r.dek_id, r.node_id16) for r in diff.only_in_other}
    assert not diff.only_in_self
    keys = sorted(changed | only_b)
    assert list(diff_frame.index) == [(d, f"0x{n:04x}") for d, n in keys]
    assert_same_frame(diff_frame[[]], plain_frame([(d, n, 0, 0, 0) for d, n in keys])[[]])


def test_to_pandas_with_every_node_id16(registry_dir: Path) -> None:
    """65,536 node_id16 values under one DEK (a level whose codes need 32
    bits) and a few under a second: the same frame as the plain build."""
    rows = {(5, n): (n * 7919 % 2**40, n % 9, n % 9 + 1) for n in range(1 << 16)}
    rows.update({(9, n): (3, 2, 2) for n in (0, 1, 0xFFFF)})
    expected = fill_rows(registry_dir, rows)
    with ea.Registry(registry_dir) as registry:
        frame = registry.to_pandas()
    assert_same_frame(frame, plain_frame(expected))
    assert str(frame.index.codes[1].dtype) == "int32" and len(frame.index.levels[1]) == 1 << 16


def test_to_pandas_without_pandas_says_how_to_install(registry_dir: Path) -> None:
    fill(registry_dir, STREAM)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['pandas'] = None\n"
            "import encryption_applier as ea\n"
            "try:\n"
            "    ea.Registry(sys.argv[1]).to_pandas()\n"
            "except ImportError as e:\n"
            "    print(e)\n",
            str(registry_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "pip install 'encryption-applier[notebook]'" in proc.stdout


def test_repr_and_html_summarise(registry_dir: Path) -> None:
    fill(registry_dir, STREAM)
    with ea.Registry(registry_dir) as registry:
        text = repr(registry)
        page = registry._repr_html_()
        digest = registry.digest()
        rows = registry.rows()
    assert str(registry_dir.resolve()) in text and "rows=5" in text and "dek_ids=[1, 2, 7]" in text
    assert "applied_index=None sidecar=None" in text
    assert str(registry_dir.resolve()) in page and "5 rows under 3 DEKs" in page and digest in page
    assert "<code>applied_index</code> None" in page
    # The per-DEK table (header + one per DEK) and the row preview (header + 5 rows).
    assert page.count("<tr>") == 4 + 6
    for row in rows:
        assert f"<code>0x{row.full_node_id:016x}</code>" in page
    assert "more rows" not in page
    assert "closed" in repr(registry)


def test_repr_previews_rows_and_cuts_long_registries(registry_dir: Path) -> None:
    with ea.Applier(registry_dir, sync=False) as applier:
        applier.apply_many([ea.Registration(d, 0xAB00_0000 + n, n).to_entry() for d in range(1, 13) for n in range(3)])
    with ea.Registry(registry_dir) as registry:
        text = repr(registry)
        page = registry._repr_html_()
    lines = text.splitlines()
    assert lines[0] == (
        f'<Registry path="{registry_dir.resolve()}" rows=36 dek_ids=[1, 2, 3, 4, 5, 6, 7, 8, ... 4 more] '
        "applied_index=None sidecar=None"
    )
    assert lines[1].split() == [
        "dek_id",
        "node_id16",
        "full_node_id",
        "first_seen_local_epoch",
        "last_seen_local_epoch",
    ]
    # In key order (dek_id, node_id16): DEK 1's three nodes, then DEK 2's first two.
    assert lines[2:7] == [
        "       1     0x0000  0x00000000ab000000                       0                      0",
        "       1     0x0001  0x00000000ab000001                       1                      1",
        "       1     0x0002  0x00000000ab000002                       2                      2",
        "       2     0x0000  0x00000000ab000000                       0                      0",
        "       2     0x0001  0x00000000ab000001                       1                      1",
    ]
    assert lines[7:] == ["  ... 31 more rows>"]
    # HTML: 10 DEKs of 12, 10 rows of 36.
    assert "… 2 more DEKs" in page and "… 26 more rows" in page


def test_head_reads_the_first_rows(registry_dir: Path) -> None:
    fill(registry_dir, STREAM)
    # The model, not rows(), says what the first rows are.
    expected = [ea.RegistryRow(*row) for row in model_of(STREAM).sorted_rows()]
    assert len(expected) == 5
    with ea.Registry(registry_dir) as registry:
        assert registry.head() == expected
        assert registry.head(2) == expected[:2]
        assert registry.head(0) == []
        assert registry.head(100, dek_id=7) == [r for r in expected if r.dek_id == 7]
        with pytest.raises(OverflowError):
            registry.head(-1)


def test_diff_to_pandas_and_html_mark_the_differing_fields(tmp_path: Path) -> None:
    import pandas

    a, b = tmp_path / "a", tmp_path / "b"
    fill(a, [(1, 0xABCD_0001, 1), (2, 0x5, 1)])
    fill(b, [(1, 0xABCD_0001, 1), (1, 0xABCD_0001, 3), (3, 0x6, 2)])
    with ea.Registry(a) as left, ea.Registry(b) as right:
        diff = left.diff(right)
    frame = diff.to_pandas()
    assert list(frame.status) == ["changed", "only in self", "only in other"]
    assert list(frame.index) == [(1, "0x0001"), (2, "0x0005"), (3, "0x0006")]
    changed = frame.iloc[0]
    assert (changed.last_seen_local_epoch_self, changed.last_seen_local_epoch_other) == (1, 3)
    assert changed.full_node_id_self == changed.full_node_id_other == "0x00000000abcd0001"
    assert changed.differing == "last_seen_local_epoch"
    assert frame.iloc[1].full_node_id_other is pandas.NA and frame.iloc[1].full_node_id_self == f"0x{5:016x}"
    assert frame.iloc[2].full_node_id_self is pandas.NA and frame.iloc[2].full_node_id_other == f"0x{6:016x}"
    assert (
        str(frame.dtypes["full_node_id_self"]) == "string"
        and str(frame.dtypes["first_seen_local_epoch_self"]) == "UInt16"
    )
    assert list(frame.columns) == [
        "status",
        "full_node_id_self",
        "full_node_id_other",
        "first_seen_local_epoch_self",
        "first_seen_local_epoch_other",
        "last_seen_local_epoch_self",
        "last_seen_local_epoch_other",
        "differing",
    ]
    page = diff._repr_html_()
    assert "1 only in self, 1 only in other, 1 changed" in page
    marked = 'style="background:#fde2e1;font-weight:bold"'
    # Exactly the two last_seen cells of the changed row are marked.
    assert page.count(marked) == 2 and f"<td {marked}>1</td><td {marked}>3</td>" in page
    with ea.Registry(a) as left:
        same = left.diff(left)
    assert "identical" in same._repr_html_() and len(same.to_pandas()) == 0


def test_view_is_a_snapshot_until_refresh(registry_dir: Path) -> None:
    fill(registry_dir, [(1, A, 1)])
    view = ea.Registry(registry_dir)
    with ea.Applier(registry_dir) as applier:
        applier.apply_registration(ea.Registration(1, B, 1))
        applier.apply_registration(ea.Registration(1, A, 2))
        assert len(applier.registry) == 2  # a fresh view sees the commits
        assert view.rows() == [ea.RegistryRow(1, 1, A, 1, 1)]  # the pinned one does not
        assert len(view) == 1 and view.get(1, 2) is None
        view.refresh()
        assert view.rows() == [ea.RegistryRow(1, 1, A, 1, 2), ea.RegistryRow(1, 2, B, 1, 1)]


def test_snapshot_while_another_process_applies(registry_dir: Path) -> None:
    """A writer process applies in steps; this process's view stays on its
    snapshot (every read agrees with every other) until refresh()."""
    fill(registry_dir, [(1, A, 1)])
    writer = interactive(
        """
        import sys, encryption_applier as ea
        a = ea.Applier(sys.argv[1])
        for line in sys.stdin:
            n = int(line)
            a.apply_registration(ea.Registration(1, 0x10000 + n, 1))
            print('done', n, flush=True)
        """,
        str(registry_dir),
    )
    assert writer.stdin is not None and writer.stdout is not None
    view = ea.Registry(registry_dir)
    digest = view.digest()
    for n in range(2, 12):
        writer.stdin.write(f"{n}\n")
        writer.stdin.flush()
        assert writer.stdout.readline().split() == ["done", str(n)]
        assert view.digest() == digest and len(view) == 1
    view.refresh()
    assert len(view) == 11
    assert len(ea.Registry(registry_dir)) == 11
    writer.stdin.close()
    assert writer.wait(timeout=60) == 0


def test_refresh_on_a_closed_view_is_refused(registry_dir: Path) -> None:
    fill(registry_dir, [(1, A, 1)])
    view = ea.Registry(registry_dir)
    view.close()
    with pytest.raises(ValueError, match="closed"):
        view.refresh()


def test_many_views_at_once(registry_dir: Path) -> None:
    fill(registry_dir, [(1, A, 1)])
    views = [ea.Registry(registry_dir) for _ in range(300)]
    assert all(len(v) == 1 for v in views)
    for v in views:
        v.close()
    proc = run_python("import sys, encryption_applier as ea; print(len(ea.Registry(sys.argv[1])))", str(registry_dir))
    assert proc.stdout.strip() == "1"


def test_hex_ids_match_the_rows_formatting() -> None:
    """The frames' hex column is built in one native loop; it must read as
    ids are written everywhere else: 0x and fixed-width lower-case hex."""
    import array

    from encryption_applier._native import _hex_ids

    ids = array.array("Q", [0, 1, 0xABCD0001, 0x8000_0000_0000_0000, 2**64 - 1])
    assert _hex_ids(ids, 16) == [
        "0x0000000000000000",
        "0x0000000000000001",
        "0x00000000abcd0001",
        "0x8000000000000000",
        "0xffffffffffffffff",
    ]
    assert _hex_ids(array.array("Q", [0, 0xBEEF, 0xFFFF]), 4) == ["0x0000", "0xbeef", "0xffff"]
    assert _hex_ids(array.array("Q"), 16) == []
    # 16- and 32-bit buffers are read as they are (not widened first), numpy
    # arrays and memoryviews too, strided ones included.
    import numpy

    assert _hex_ids(array.array("H", [0, 0xBEEF, 0xFFFF]), 4) == ["0x0000", "0xbeef", "0xffff"]
    assert _hex_ids(array.array("H", [0xBEEF]), 16) == ["0x000000000000beef"]
    assert _hex_ids(array.array("I", [0xFFFF, 0xFFFF_FFFF]), 16) == ["0x000000000000ffff", "0x00000000ffffffff"]
    assert _hex_ids(numpy.array([1, 0xABCD], dtype=numpy.uint16), 4) == ["0x0001", "0xabcd"]
    assert _hex_ids(memoryview(numpy.array([2**64 - 1], dtype=numpy.uint64)), 16) == ["0xffffffffffffffff"]
    assert _hex_ids(numpy.arange(6, dtype=numpy.uint16)[::2], 4) == ["0x0000", "0x0002", "0x0004"]
    assert _hex_ids(numpy.array([], dtype=numpy.uint16), 4) == []
    with pytest.raises(ValueError, match="0x10000 does not fit 4 hex digits"):
        _hex_ids(array.array("I", [1, 0x10000]), 4)
    for wrong in (array.array("h", [1]), array.array("d", [1.0]), array.array("B", [1]), b"\x00\x01"):
        with pytest.raises(TypeError, match="unsigned 16-, 32- or 64-bit integers"):
            _hex_ids(wrong, 4)
    with pytest.raises(ValueError, match="does not fit 4 hex digits"):
        _hex_ids(array.array("Q", [0x10000]), 4)
    with pytest.raises(ValueError, match="digits must be 4"):
        _hex_ids(ids, 8)


def test_to_pandas_of_an_empty_registry(registry_dir: Path) -> None:
    ea.Applier(registry_dir).close()
    with ea.Registry(registry_dir) as view:
        frame = view.to_pandas()
    assert len(frame) == 0 and list(frame.index.names) == ["dek_id", "node_id16"] and "full_node_id" in frame.columns
