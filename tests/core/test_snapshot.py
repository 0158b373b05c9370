"""elastickv's FSM snapshots read as Go reads them: `read_snapshot_header`,
`newest_snapshot` and start-up guard 0 reading the snapshot itself.

The expected answers are Go's, re-derived from the Go source by
`scripts/go_vectors/snapshot.py` (no Go toolchain here): its golden file
`golden/go/snapshot.json` is compared case by case, and its functions are
the oracle of the hypothesis properties (random headers, truncations,
trailing bytes, bad magic and CRCs, directories of several snapshots)."""

import importlib.util
import json
import os
import struct
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import encryption_applier as ea

from helpers import REPO

_spec = importlib.util.spec_from_file_location("go_snapshot", REPO / "scripts" / "go_vectors" / "snapshot.py")
assert _spec is not None and _spec.loader is not None
go = importlib.util.module_from_spec(_spec)
sys.modules["go_snapshot"] = go
_spec.loader.exec_module(go)

GOLDEN = Path(__file__).resolve().parent / "golden" / "go" / "snapshot.json"
DOC = json.loads(GOLDEN.read_text())


def materialize(root: Path, files: dict[str, bytes], dirs: list[str] | tuple[str, ...] = ()) -> None:
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def rel(root: Path, path: Any) -> str:
    return Path(path).relative_to(root).as_posix()


def header_dict(root: Path, h: ea.SnapshotHeader) -> dict[str, Any]:
    return {
        "path": rel(root, h.path),
        "payload_path": rel(root, h.payload_path),
        "format": h.format,
        "term": h.term,
        "index": h.index,
        "token_index": h.token_index,
        "payload_size": h.payload_size,
        "kind": h.kind,
        "version": h.version,
        "header_length": h.header_length,
        "ceiling_ms": h.ceiling_ms,
        "raft_envelope_cutover_index": h.raft_envelope_cutover_index,
    }


def error_dict(root: Path, e: ea.SnapshotError) -> dict[str, Any]:
    return {"code": e.code, "path": rel(root, e.path), "index": e.index, "details": e.details}


def package_answer(root: Path, op: str, path: str) -> dict[str, Any]:
    """The package's answer in the golden file's shape (a `none` reason is
    not visible from Python: `newest_snapshot` returns None)."""
    try:
        if op == "read":
            return {"ok": header_dict(root, ea.read_snapshot_header(root / path))}
        chosen = ea.newest_snapshot(root / path)
        if chosen is None:
            return {"none": None}
        return {"chosen": header_dict(root, ea.read_snapshot_header(chosen))}
    except ea.SnapshotError as e:
        return {"error": error_dict(root, e)}


def go_answer(expect: dict[str, Any]) -> dict[str, Any]:
    return {"none": None} if "none" in expect else expect


def test_the_golden_file_is_what_the_script_writes() -> None:
    assert DOC["elastickv_commit"] == "d9a031d0"
    assert DOC["generated_by"] == "scripts/go_vectors/snapshot.py"
    assert GOLDEN.read_text() == go.document(), "rerun scripts/go_vectors/snapshot.py"


@pytest.mark.parametrize("case", DOC["cases"], ids=[c["name"] for c in DOC["cases"]])
def test_go_golden(tmp_path: Path, case: dict[str, Any]) -> None:
    files = {p: bytes.fromhex(h) for p, h in case["files"].items()}
    materialize(tmp_path, files, case["dirs"])
    assert package_answer(tmp_path, case["op"], case["path"]) == go_answer(case["expect"])


# --------------------------------------------------------------------------
# Properties against the script's Go-following functions.


def oracle_read(files: dict[str, bytes], path: str, dirs: tuple[str, ...] = ()) -> dict[str, Any]:
    return go.answer(go.Tree(files, set(dirs)), "read", path)


def check_read(tmp: Path, files: dict[str, bytes], path: str) -> None:
    materialize(tmp, files)
    assert package_answer(tmp, "read", path) == oracle_read(files, path)


u64 = st.integers(0, 2**64 - 1)

# A payload: a header of any kind (well formed or not) and trailing bytes.
headers = st.one_of(
    st.builds(go.header_v1, u64),
    st.builds(go.header_v2, u64, u64, st.binary(max_size=40)),
    st.builds(
        lambda c, k, n, t: go.header_v2(c, k, trailing=t, length=n), u64, u64, st.integers(0, 0xFFFF), st.binary()
    ),
    st.builds(lambda b, rest: b"EKVTHLC" + bytes([b]) + rest, st.integers(0, 255), st.binary(max_size=30)),
    st.binary(max_size=40),
)
payloads = st.builds(
    lambda h, tail, cut: (h + tail)[:cut],
    headers,
    st.binary(max_size=20),
    st.one_of(st.none(), st.integers(0, 40)),  # None: not cut short
)


@given(payload=payloads)
def test_fsm_file_headers_as_go(tmp_path_factory: pytest.TempPathFactory, payload: bytes) -> None:
    tmp = tmp_path_factory.mktemp("fsm")
    check_read(tmp, {"s.fsm": go.fsm_file(payload)}, "s.fsm")


@given(payload=payloads, flip=st.integers(0, 2**16), cut=st.integers(0, 6))
def test_fsm_file_damage_as_go(tmp_path_factory: pytest.TempPathFactory, payload: bytes, flip: int, cut: int) -> None:
    """A flipped bit anywhere, or a file cut short: Go's CRC and size checks."""
    data = bytearray(go.fsm_file(payload))
    if flip < len(data) * 8:
        data[flip // 8] ^= 1 << (flip % 8)
    data = data[: max(0, len(data) - cut)] if cut else data
    tmp = tmp_path_factory.mktemp("fsm")
    check_read(tmp, {"s.fsm": bytes(data)}, "s.fsm")


@given(
    payload=payloads,
    term=u64,
    index=u64,
    as_token=st.booleans(),
    token_index=st.one_of(st.none(), u64),
    damage=st.one_of(st.none(), st.integers(0, 2**12)),
)
def test_snap_files_as_go(
    tmp_path_factory: pytest.TempPathFactory,
    payload: bytes,
    term: int,
    index: int,
    as_token: bool,
    token_index: int | None,
    damage: int | None,
) -> None:
    """A .snap holding the payload or a token naming an .fsm file, maybe
    with a flipped bit (etcd's CRC, protobuf decoding, the token)."""
    files: dict[str, bytes] = {}
    if as_token:
        named = index if token_index is None else token_index
        data = go.token(named, go.crc32c(payload))
        files[f"d/fsm-snap/{named:016x}.fsm"] = go.fsm_file(payload)
    else:
        data = payload
    snap = bytearray(go.snap_file(go.raft_snapshot(data, term, index)))
    if damage is not None and damage < len(snap) * 8:
        snap[damage // 8] ^= 1 << (damage % 8)
    files["d/snap/x.snap"] = bytes(snap)
    check_read(tmp_path_factory.mktemp("snap"), files, "d/snap/x.snap")


# A directory of several snapshots: names, WAL records, commit index.
snapshot_ids = st.tuples(st.integers(0, 4), st.integers(0, 12))


@st.composite
def data_dirs(draw: st.DrawFn) -> tuple[dict[str, bytes], tuple[str, ...]]:
    ids = draw(st.lists(snapshot_ids, min_size=1, max_size=5, unique=True))
    files: dict[str, bytes] = {}
    dirs: list[str] = []
    for term, index in ids:
        canonical = go.snap_name(term, index)
        names = [canonical] * 5 + [canonical.upper().replace(".SNAP", ".snap"), f"{index}.snap"]
        names += [canonical + ".tmp", canonical + ".broken", "db.tmp" + canonical]
        name = draw(st.sampled_from(names))
        if f"d/snap/{name}" in files or f"d/snap/{name}" in dirs:
            continue  # two ids can share a short name ("0.snap"): one entry per name
        payload = go.header_v2(term, draw(st.integers(0, 50)))
        kind = draw(st.sampled_from(["token"] * 4 + ["inline", "empty", "broken", "dir", "no_fsm"]))
        if kind == "dir":
            dirs.append(f"d/snap/{name}")
            continue
        if kind in ("token", "no_fsm"):
            snap = go.snap_file(go.raft_snapshot(go.token(index, go.crc32c(payload)), term, index))
            if kind == "token":
                files[f"d/fsm-snap/{index:016x}.fsm"] = go.fsm_file(payload)
        else:
            snap = go.snap_file(go.raft_snapshot(b"" if kind == "empty" else payload, term, index))
        files[f"d/snap/{name}"] = snap[:-2] if kind == "broken" else snap
    vouched = draw(st.lists(st.one_of(st.sampled_from(ids), snapshot_ids), min_size=1, max_size=6))
    wal = draw(st.sampled_from(["wal"] * 4 + ["empty", "none"]))
    if wal == "wal":
        commit = draw(st.one_of(st.just(12), st.integers(0, 14)))  # 12: every index committed
        files[f"d/wal/{go.WAL_NAME}"] = go.wal_file(vouched, commit)
    elif wal == "empty":
        dirs.append("d/wal")
    if not any(p.startswith("d/snap/") for p in files) and draw(st.booleans()):
        dirs.append("d/snap")
    return files, tuple(dirs)


@given(tree=data_dirs())
def test_newest_snapshot_as_go(
    tmp_path_factory: pytest.TempPathFactory, tree: tuple[dict[str, bytes], tuple[str, ...]]
) -> None:
    files, dirs = tree
    tmp = tmp_path_factory.mktemp("dir")
    materialize(tmp, files, dirs)
    expect = go_answer(go.answer(go.Tree(files, set(dirs)), "newest", "d"))
    assert package_answer(tmp, "newest", "d") == expect


@given(names=st.lists(st.text(alphabet="0123456789abcdefABCDEFgx- .\u00a0\n\t", max_size=40), max_size=4))
def test_wal_file_names_as_go_sscanf(tmp_path_factory: pytest.TempPathFactory, names: list[str]) -> None:
    """Which names in wal/ are WAL files: Go's fmt.Sscanf("%016x-%016x.wal")."""
    good = go.wal_file([(2, 100)], 500)
    snap, fsm = go.token_snapshot(2, 100, go.header_v2(1, 9))
    files = {f"d/wal/{n}.wal": good for n in names if "/" not in n and n not in (".", "..")}
    files |= {"d/snap/" + go.snap_name(2, 100): snap} | {f"d/fsm-snap/{n}": b for n, b in fsm.items()}
    tmp = tmp_path_factory.mktemp("wal")
    materialize(tmp, files)
    assert package_answer(tmp, "newest", "d") == go_answer(go.answer(go.Tree(files, set()), "newest", "d"))


# --------------------------------------------------------------------------
# The file system: FIFOs, huge files, truncation.


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "x.fsm"
    os.mkfifo(fifo)
    snap_fifo = tmp_path / "d" / "snap" / "x.snap"
    snap_fifo.parent.mkdir(parents=True)
    os.mkfifo(snap_fifo)
    done: list[BaseException | None] = []

    def read() -> None:
        for path in (fifo, snap_fifo):
            try:
                ea.read_snapshot_header(path)
            except ea.SnapshotError as e:
                done.append(e)
            else:
                done.append(None)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "reading a FIFO blocked"
    assert [getattr(e, "code", None) for e in done] == ["not_regular_file", "not_regular_file"]
    assert all(e is not None and not e.refused for e in done)


def test_a_huge_sparse_file_is_streamed_not_loaded(tmp_path: Path) -> None:
    """A 3 GiB sparse .fsm: the CRC streams through it (Go checks every
    byte) without holding it; the header is read from its first bytes."""
    import resource

    path = tmp_path / "big.fsm"
    size = 3 << 30
    with path.open("wb") as f:
        f.write(go.header_v2(1, 42))
        f.truncate(size)
    # The CRC Go computes over a zero-filled tail, here only to expect the
    # mismatch: the footer (the last 4 zero bytes) is not the CRC.
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ea.SnapshotError) as info:
        ea.read_snapshot_header(path)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert info.value.code == "fsm_crc_mismatch" and info.value.refused
    assert info.value.details["footer"] == 0
    assert after - before < 64 << 10  # KiB: far below the file's size


def test_truncation_is_a_clear_error(tmp_path: Path) -> None:
    payload = go.header_v2(5, 77) + b"pebble"
    snap = go.snap_file(go.raft_snapshot(payload, 3, 9))
    path = tmp_path / "d" / "snap" / "x.snap"
    path.parent.mkdir(parents=True)
    path.write_bytes(snap[:-4])
    with pytest.raises(ea.SnapshotError, match=r"x\.snap: cannot decode snappb\.Snapshot") as info:
        ea.read_snapshot_header(path)
    assert (info.value.code, info.value.refused, info.value.path) == ("snap_undecodable", True, str(path))
    fsm = tmp_path / "t.fsm"
    fsm.write_bytes(go.fsm_file(go.header_v2(5, 77)[:20]))
    with pytest.raises(ea.SnapshotError, match="truncated v2 snapshot header: needs 26 bytes") as info:
        ea.read_snapshot_header(fsm)
    assert info.value.details == {"version": 2, "needed": 26, "available": 20}


def test_missing_and_unreadable_paths(tmp_path: Path) -> None:
    with pytest.raises(ea.SnapshotError) as info:
        ea.read_snapshot_header(tmp_path / "absent.fsm")
    assert (info.value.code, info.value.refused) == ("cannot_open", False)
    with pytest.raises(ea.SnapshotError) as info:
        ea.read_snapshot_header(tmp_path)
    assert info.value.code == "is_directory"
    assert ea.newest_snapshot(tmp_path / "absent") is None  # no wal/: Go restores nothing


def test_the_header_class(tmp_path: Path) -> None:
    snap, fsm = go.token_snapshot(3, 200, go.header_v2(1_700_000_000_000, 150, trailing=b"xy"))
    materialize(tmp_path, {"d/snap/" + go.snap_name(3, 200): snap} | {f"d/fsm-snap/{n}": b for n, b in fsm.items()})
    h = ea.read_snapshot_header(tmp_path / "d" / "snap" / go.snap_name(3, 200))
    assert (h.format, h.kind, h.version, h.header_length) == ("snap-token", "v2", 2, 28)
    assert (h.term, h.index, h.token_index, h.raft_envelope_cutover_index) == (3, 200, 200, 150)
    assert h.payload_path == tmp_path / "d" / "fsm-snap" / "00000000000000c8.fsm"
    assert h == ea.read_snapshot_header(h.path) and h != ea.read_snapshot_header(h.payload_path)
    assert repr(h).startswith("SnapshotHeader(path=") and "raft_envelope_cutover_index=150" in repr(h)
    with pytest.raises(AttributeError):
        h.index = 1  # type: ignore[misc]
    assert ea.read_snapshot_header(h.payload_path).format == "fsm"


def test_snapshot_error_pickles_with_its_fields(tmp_path: Path) -> None:
    import pickle

    (tmp_path / "x.fsm").write_bytes(b"\x01\x02")
    with pytest.raises(ea.SnapshotError) as info:
        ea.read_snapshot_header(tmp_path / "x.fsm")
    again = pickle.loads(pickle.dumps(info.value))
    assert isinstance(again, ea.SnapshotError) and isinstance(again, ea.EncryptionError)
    assert again.fields == info.value.fields
    assert again.fields["details"] == {"size": 2}


# --------------------------------------------------------------------------
# Guard 0 reading the snapshot itself.


def token_dir(root: Path, cutover: int, term: int = 3, index: int = 200) -> Path:
    """A data directory whose newest snapshot carries ``cutover``."""
    files = go.data_dir_files({}, [(term, index)], index + 10)
    snap, fsm = go.token_snapshot(term, index, go.header_v2(1, cutover))
    files["snap/" + go.snap_name(term, index)] = snap
    files |= {f"fsm-snap/{n}": b for n, b in fsm.items()}
    materialize(root, files)
    return root


def test_guard_0_reads_the_snapshot(booted: Path, tmp_path: Path) -> None:
    from helpers import edit_sidecar

    sidecar = booted / "keys.json"
    data = token_dir(tmp_path / "group", cutover=7)
    snap = data / "snap" / go.snap_name(3, 200)
    args: dict[str, Any] = {"encryption_enabled": True, "sidecar_path": sidecar}
    for given_path in (data, snap, data / "fsm-snap" / "00000000000000c8.fsm"):
        refusals = ea.diagnose_startup(**args, snapshot_path=given_path)
        assert [type(r) for r in refusals][:1] == [ea.EnvelopeCutoverDivergenceError]
        r = refusals[0]
        assert (r.snapshot_cutover_index, r.sidecar_cutover_index) == (7, 0)
        read = ea.read_snapshot_header(snap if given_path == data else given_path)
        assert (r.snapshot_path, r.snapshot_index) == (str(read.path), read.index)
        assert "cutover=7" in str(r) and f"snapshot {read.path}" in str(r)
    with pytest.raises(ea.EnvelopeCutoverDivergenceError, match=r"index=200\)"):
        ea.check_startup(**args, snapshot_path=data)
    edit_sidecar(booted, raft_envelope_cutover_index=7)
    sentinels = [r.sentinel for r in ea.diagnose_startup(**args, snapshot_path=data)]
    assert "ErrEnvelopeCutoverDivergence" not in sentinels and sentinels  # the KEK guard still refuses


def test_guard_0_without_a_snapshot_passes(booted: Path, tmp_path: Path) -> None:
    args: dict[str, Any] = {"encryption_enabled": True, "sidecar_path": booted / "keys.json"}
    empty = tmp_path / "group"
    empty.mkdir()
    v1 = token_dir(tmp_path / "v1", cutover=0)
    without = [r.sentinel for r in ea.diagnose_startup(**args)]
    assert without == ["ErrKEKRequiredWithFlag"]
    for path in (empty, v1):
        assert [r.sentinel for r in ea.diagnose_startup(**args, snapshot_path=path)] == without
    # Encryption off, or no sidecar path: Go does not look (main_encryption_startup_guard.go:245-247).
    broken = tmp_path / "broken.fsm"
    broken.write_bytes(b"\x00")
    ea.diagnose_startup(encryption_enabled=False, snapshot_path=broken)
    ea.diagnose_startup(encryption_enabled=True, snapshot_path=broken)


def test_guard_0_refused_snapshot_raises(booted: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.fsm"
    broken.write_bytes(go.fsm_file(b"EKVTHLC9" + b"\0" * 16))
    with pytest.raises(ea.SnapshotError) as info:
        ea.check_startup(encryption_enabled=True, sidecar_path=booted / "keys.json", snapshot_path=broken)
    assert (info.value.code, info.value.refused) == ("unknown_magic", True)


def test_index_and_path_together_are_refused(booted: Path, tmp_path: Path) -> None:
    for fn in (ea.diagnose_startup, ea.check_startup):
        with pytest.raises(ValueError, match="not both"):
            fn(encryption_enabled=True, snapshot_cutover_index=3, snapshot_path=tmp_path)


def test_struct_layouts_are_big_endian() -> None:
    """The pinned bytes of a v2 header (kv/snapshot.go:143-147)."""
    assert go.header_v2(0x0102030405060708, 0x1112131415161718) == (
        b"EKVTHLC2\x00\x10" + struct.pack(">QQ", 0x0102030405060708, 0x1112131415161718)
    )
    assert go.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value


# --------------------------------------------------------------------------
# The command line: snapshot-header, doctor --snapshot.


def run_cli(*args: object) -> tuple[int, str, str]:
    import io

    from encryption_applier import cli

    out, err = io.StringIO(), io.StringIO()
    code = cli.main([str(a) for a in args], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_snapshot_header_cli(tmp_path: Path) -> None:
    data = token_dir(tmp_path / "group", cutover=7)
    snap = data / "snap" / go.snap_name(3, 200)
    for path in (data, snap):
        code, out, err = run_cli("snapshot-header", path)
        assert (code, err) == (0, "")
        assert out.splitlines()[0] == f"snapshot: {snap} (term 3, index 200)"
        assert out.splitlines()[-1] == "raft_envelope_cutover_index: 7"
    code, out, _ = run_cli("snapshot-header", data, "--json")
    assert code == 0 and json.loads(out)["snapshot"] == {
        **header_dict(Path("/"), ea.read_snapshot_header(snap)),
        "path": str(snap),
        "payload_path": str(data / "fsm-snap" / "00000000000000c8.fsm"),
    }
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, _ = run_cli("snapshot-header", empty)
    assert code == 0 and "no snapshot for Go to restore" in out
    assert run_cli("snapshot-header", empty, "--json")[:2] == (0, '{\n  "snapshot": null\n}\n')
    # Go refuses: exit 1, the refusal on standard output, naming the index.
    (data / "fsm-snap" / "00000000000000c8.fsm").write_bytes(go.fsm_file(go.header_v2(1, 8)))
    code, out, err = run_cli("snapshot-header", data)
    assert (code, err) == (1, "")
    assert out.startswith("REFUSED (fsm_token_crc_mismatch): ") and "snapshot index=200" in out
    code, out, _ = run_cli("snapshot-header", data, "--json")
    refused = json.loads(out)["refused"]
    assert code == 1 and (refused["code"], refused["index"]) == ("fsm_token_crc_mismatch", 200)
    # Cannot look: exit 2, one line on stderr.
    code, out, err = run_cli("snapshot-header", tmp_path / "absent.fsm")
    assert (code, out) == (2, "") and err.startswith("error: SnapshotError: ") and err.count("\n") == 1


def test_snapshot_header_cli_exit_status(tmp_path: Path) -> None:
    import subprocess

    bad = tmp_path / "bad.fsm"
    bad.write_bytes(go.fsm_file(b"EKVTHLC2\x00\x05"))
    done = subprocess.run(
        [sys.executable, "-m", "encryption_applier", "snapshot-header", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and done.stdout.startswith("REFUSED (invalid_length)"), done


def test_doctor_reads_the_snapshot(booted: Path, cluster: Any, tmp_path: Path) -> None:
    from helpers import edit_sidecar

    edit_sidecar(booted, epoch_1=1)
    data = token_dir(tmp_path / "group", cutover=7)
    kek = cluster.kek_path
    code, out, _ = run_cli("doctor", booted, "--kek", kek, "--snapshot", data)
    assert code == 1 and f", snapshot {data}" in out.splitlines()[0]
    assert "REFUSED ErrEnvelopeCutoverDivergence: " in out
    assert f"snapshot {data / 'snap' / go.snap_name(3, 200)} index=200" in out
    edit_sidecar(booted, raft_envelope_cutover_index=7)
    code, out, _ = run_cli("doctor", booted, "--kek", kek, "--snapshot", data)
    assert code == 0 and "\nok: no startup guard refuses\n" in out, out
    # A snapshot Go refuses is a refusal (exit 1); one that cannot be read an error (2).
    (data / "fsm-snap" / "00000000000000c8.fsm").write_bytes(b"\x00")
    code, out, _ = run_cli("doctor", booted, "--kek", kek, "--snapshot", data)
    assert code == 1 and "REFUSED snapshot (SnapshotError fsm_too_small)" in out
    code, out, err = run_cli("doctor", booted, "--kek", kek, "--snapshot", tmp_path / "absent.fsm")
    assert code == 2 and "cannot open" in err and err.startswith("error: SnapshotError:")
    code, _, err = run_cli("doctor", booted, "--snapshot", data, "--snapshot-cutover-index", "3")
    assert code == 2 and "not both" in err
