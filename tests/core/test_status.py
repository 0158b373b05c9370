"""The status views: `sidecar_state()` (elastickv's GetSidecarState) and
`resync_sidecar_response()` (the leader side of ResyncSidecar).

- every case of `golden/go/status.json` (Go's answers, re-derived from the
  Go source by scripts/go_vectors/status.py) against the package's, errors
  included;
- hypothesis: random sidecars, registries and callers against a plain-Python
  oracle, and the dict/JSON round trips of both messages;
- what a reader of the JSON refuses, the registry fence, the GIL.
"""

import base64
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import encryption_applier as ea

from helpers import REPO, assert_waits_without_the_gil, plant_raw

GOLDEN = json.loads((Path(__file__).parent / "golden" / "go" / "status.json").read_text())
CASES = {c["name"]: c for c in GOLDEN["cases"]}

U64 = 2**64 - 1


def test_golden_file_is_the_scripts_output(tmp_path: Path) -> None:
    assert GOLDEN["elastickv_commit"] == "d9a031d0"
    assert GOLDEN["generated_by"] == "scripts/go_vectors/status.py"
    assert len(CASES) == len(GOLDEN["cases"]) >= 20
    out = tmp_path / "status.json"
    script = REPO / GOLDEN["generated_by"]
    subprocess.run([sys.executable, script, "--output", out], check=True, capture_output=True, timeout=60)
    assert out.read_text() == (Path(__file__).parent / "golden" / "go" / "status.json").read_text()
    assert not re.search(r"^\s*(import|from)\s+encryption_applier", script.read_text(), re.M)


def registrations(rows: list[dict[str, int]]) -> list[ea.Registration]:
    """The registrations that leave exactly these rows (first, then last)."""
    out = []
    for r in rows:
        out.append(ea.Registration(r["dek_id"], r["full_node_id"], r["first"]))
        if r["last"] != r["first"]:
            out.append(ea.Registration(r["dek_id"], r["full_node_id"], r["last"]))
    return out


def set_up(tmp: Path, case: dict[str, Any]) -> tuple[Path | None, Path]:
    """The case's registry directory (None: no registry) and sidecar path."""
    registry = None
    if case["registry"] is not None:
        registry = tmp / "reg"
        with ea.Applier(registry) as applier:
            applier.apply_many(registrations(case["registry"]["rows"]))
        for raw in case["registry"]["raw"]:
            plant_raw(registry, ea.registry_key(raw["dek_id"], raw["node_id16"]), bytes.fromhex(raw["value_hex"]))
    sidecar = (registry or tmp) / "keys.json"
    source = case["sidecar"]
    if "doc" in source:
        sidecar.write_text(json.dumps(source["doc"], indent=2))
    elif "text" in source:
        sidecar.write_text(source["text"])
    return registry, sidecar


# Go's sidecar error (statusFromSidecarErr's branch, and the sentinel it
# wraps) -> this package's SidecarError.code.
SIDECAR_CODES = {
    ("sidecar_missing", None): "not_bootstrapped",
    ("sidecar_version", "ErrSidecarVersion"): "unsupported_version",
    ("sidecar_invalid", "json.SyntaxError"): "not_json",
    ("sidecar_invalid", "ErrSidecarActiveKeyMissing"): "active_not_a_key",
    ("sidecar_invalid", "ErrSidecarActivePurposeMismatch"): "active_wrong_purpose",
    ("sidecar_invalid", "ErrSidecarPurpose"): "bad_value",
    ("sidecar_invalid", "ErrSidecarReservedKeyID"): "reserved_key_id",
    ("sidecar_invalid", "ErrSidecarKeyIDFormat"): "bad_key_id",
}


def check_error(go: dict[str, Any], raised: BaseException, sidecar: Path) -> None:
    branch = go["branch"]
    if branch == "caller_zero":
        assert go["code"] == "InvalidArgument"
        assert type(raised) is ValueError and "caller_full_node_id must be non-zero" in str(raised)
    elif branch.startswith("sidecar_"):
        assert isinstance(raised, ea.SidecarError), raised
        assert raised.code == SIDECAR_CODES[(branch, go.get("sentinel"))]
        assert raised.path == str(sidecar)
    elif branch == "foreign_row":
        assert go["code"] == "Internal"
        assert isinstance(raised, ea.ForeignRegistryRowError), raised
        candidates = [{k: c[k] for k in raised.fields} for c in go["candidates"]]
        assert raised.fields in candidates
        # Where Go's map walk picks any, this package reports the lowest key.
        assert raised.dek_id == min(c["dek_id"] for c in candidates)
        text = str(raised)
        for part in (
            f"dek_id={raised.dek_id}",
            f"node_id16=0x{raised.node_id16:04x}",
            f"0x{raised.row_full_node_id:x}",
            f"0x{raised.caller_full_node_id:x}",
        ):
            assert part in text
    elif branch == "row_malformed":
        assert isinstance(raised, ea.RegistryCorruptionError), raised
        assert raised.problem == "value_length"
        assert (raised.dek_id, raised.node_id16) in [(c["dek_id"], c["node_id16"]) for c in go["candidates"]]
    else:  # pragma: no cover - a branch the script added without a test
        raise AssertionError(f"unknown Go error branch {branch}")


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("rpc", ["get_sidecar_state", "resync_sidecar"])
def test_each_view_answers_as_go(tmp_path: Path, name: str, rpc: str) -> None:
    case = CASES[name]
    registry, sidecar = set_up(tmp_path, case)
    expected = case[rpc]
    try:
        if rpc == "get_sidecar_state":
            got: Any = ea.sidecar_state(
                registry,
                sidecar_path=sidecar,
                full_node_id=case["full_node_id"],
                latest_applied_index=case["latest_applied_index"],
            )
        else:
            got = ea.resync_sidecar_response(
                registry,
                sidecar_path=sidecar,
                caller_full_node_id=case["caller_full_node_id"],
                latest_applied_index=case["latest_applied_index"],
            )
    except (ea.EncryptionError, ValueError) as raised:
        assert "error" in expected, f"Go answers {expected}, the package raised {raised!r}"
        check_error(expected["error"], raised, sidecar)
        return
    assert "response" in expected, f"Go answers {expected}, the package {got!r}"
    # Go's message exactly, in the proto3 JSON mapping...
    assert json.loads(got.to_json(extras=False)) == expected["response"]
    # ...and as Python values.
    as_dict = got.to_dict(extras=False)
    assert as_dict["wrapped_deks_by_id"] == {
        int(k): base64.b64decode(v) for k, v in expected["response"]["wrapped_deks_by_id"].items()
    }
    assert list(as_dict) == list(expected["response"])  # the proto's field order


def test_the_default_sidecar_is_keys_json_of_the_registry(tmp_path: Path) -> None:
    registry, sidecar = set_up(tmp_path, CASES["projects_the_callers_rows"])
    assert registry is not None
    me = CASES["projects_the_callers_rows"]["full_node_id"]
    by_dir = ea.sidecar_state(registry, full_node_id=me)
    with ea.Registry(registry) as view:
        by_view = ea.sidecar_state(view, full_node_id=me)
    assert by_dir == by_view
    assert by_dir.writer_registry_for_caller == {10: 3, 11: 7}
    assert by_dir.extras is not None and by_dir.extras.sidecar == str(registry / "keys.json")
    with pytest.raises(ValueError, match="sidecar_path"):
        ea.sidecar_state(full_node_id=me)
    with pytest.raises(TypeError):
        ea.sidecar_state(3)  # type: ignore[arg-type]


def test_extras_carry_what_go_leaves_out(tmp_path: Path) -> None:
    registry, sidecar = set_up(tmp_path, CASES["rotated_keys_all_shipped"])
    peer = CASES["rotated_keys_all_shipped"]["full_node_id"]
    state = ea.sidecar_state(registry, full_node_id=peer, latest_applied_index=7)
    x = state.extras
    assert x is not None
    assert {k: (v.purpose, v.local_epoch) for k, v in x.keys.items()} == {
        1: (ea.Purpose.STORAGE, 0),
        2: (ea.Purpose.RAFT, 0),
        3: (ea.Purpose.STORAGE, 4),
        4: (ea.Purpose.RAFT, 5),
        5: (ea.Purpose.STORAGE, 6),
    }
    assert x.keys[5].wrapped == state.wrapped_deks_by_id[5]
    assert (x.storage_envelope_cutover_index, x.sidecar_raft_applied_index, x.sidecar_version) == (90, 120, 2)
    # A state report has the envelope flags among Go's fields, not in extras.
    assert x.storage_envelope_active is None and x.raft_envelope_cutover_index is None
    assert (state.storage_envelope_active, state.raft_envelope_cutover_index) == (True, 100)
    assert state.latest_applied_index == 7
    assert x.caller_full_node_id == peer and x.registry is not None
    resync = ea.resync_sidecar_response(registry, caller_full_node_id=peer)
    assert resync.extras is not None
    assert (resync.extras.storage_envelope_active, resync.extras.raft_envelope_cutover_index) == (True, 100)
    assert resync.leader_latest_applied_index == 120
    assert not hasattr(resync, "storage_envelope_active")
    # to_dict: Go's fields under their proto names, the extras apart.
    d = resync.to_dict()
    assert set(d) == {
        "wrapped_deks_by_id",
        "active_storage_id",
        "active_raft_id",
        "leader_latest_applied_index",
        "writer_registry_for_caller",
        "extras",
    }
    assert d["extras"]["keys"][4] == {"purpose": "raft", "created": "2025-01-02T03:04:05Z", "local_epoch": 5}
    assert d["extras"] == resync.extras.to_dict()
    # Without a caller nothing is read from the registry.
    bare = ea.sidecar_state(registry)
    assert bare.writer_registry_for_caller == {} and bare.extras is not None and bare.extras.registry is None


def test_repr_and_html(tmp_path: Path) -> None:
    registry, _ = set_up(tmp_path, CASES["projects_the_callers_rows"])
    me = CASES["projects_the_callers_rows"]["full_node_id"]
    state = ea.sidecar_state(registry, full_node_id=me)
    assert repr(state) == (
        "SidecarStateReport(wrapped_deks_by_id={10: <7 bytes>, 11: <4 bytes>, 12: <12 bytes>}, "
        "active_storage_id=10, active_raft_id=11, storage_envelope_active=False, raft_envelope_cutover_index=0, "
        "latest_applied_index=1, writer_registry_for_caller={10: 3, 11: 7})"
    )
    html = state._repr_html_()
    assert "SidecarStateReport" in html and "extras" in html and "<code>writer_registry_for_caller</code>" in html
    assert html.index("wrapped_deks_by_id") < html.index("active_storage_id")  # Go's field order
    resync = ea.resync_sidecar_response(registry, caller_full_node_id=me)
    assert repr(resync).startswith("ResyncSidecarResponse(wrapped_deks_by_id={10: <7 bytes>")
    assert "storage_envelope_active false" in resync._repr_html_()
    bare = ea.ResyncSidecarResponse.from_dict(resync.to_dict(extras=False))
    assert "no extras" in bare._repr_html_()
    assert resync.extras is not None and repr(resync.extras).startswith("StatusExtras(keys=[10, 11, 12]")


# ---- hypothesis: the views against a plain-Python oracle

ME = 0xCAFE_BABE_0000_1234


@st.composite
def sidecars(draw: st.DrawFn) -> dict[str, Any]:
    empty = draw(st.integers(0, 7)) == 0
    ids = [] if empty else draw(st.lists(st.integers(1, 2**32 - 1), min_size=1, max_size=6, unique=True))
    keys = {
        i: {
            "purpose": draw(st.sampled_from(["storage", "raft"])),
            "wrapped": base64.b64encode(draw(st.binary(max_size=64))).decode(),
            "created": "2025-01-02T03:04:05.123456789Z",
            "local_epoch": draw(st.integers(0, 0xFFFF)),
        }
        for i in ids
    }
    storage = draw(st.sampled_from([0] + [i for i, k in keys.items() if k["purpose"] == "storage"]))
    raft = draw(st.sampled_from([0] + [i for i, k in keys.items() if k["purpose"] == "raft"]))
    index = st.integers(0, U64)
    return {
        "version": draw(st.sampled_from([1, 2])),
        "raft_applied_index": draw(index),
        "storage_envelope_active": draw(st.booleans()),
        "storage_envelope_cutover_index": draw(index),
        "raft_envelope_cutover_index": draw(index),
        "active": {"storage": storage, "raft": raft},
        "keys": {str(i): k for i, k in keys.items()},
    }


@st.composite
def registries(draw: st.DrawFn, doc: dict[str, Any], caller: int) -> list[dict[str, int]] | None:
    """Rows under the sidecar's keys and others, for the caller, for a node
    with the caller's prefix and for other prefixes."""
    if draw(st.booleans()) and draw(st.booleans()):
        return None
    prefix = caller & 0xFFFF
    deks = [int(i) for i in doc["keys"]] + draw(st.lists(st.integers(1, 2**32 - 1), max_size=2))
    rival = (0xBAD << 48) | prefix
    other = 0x5555_0000_0000_0000 | ((prefix + 1) & 0xFFFF)
    # Mostly the caller's own rows; now and then another node's at its prefix.
    first_writer = st.sampled_from([caller] * 5 + [other, None, rival])
    second_writer = st.sampled_from([other, None, None])
    rows: dict[tuple[int, int], dict[str, int]] = {}
    for dek in deks:
        for full in (draw(first_writer), draw(second_writer)):
            if not full:
                continue
            first = draw(st.integers(0, 0xFFFF))
            last = draw(st.integers(first, 0xFFFF))
            rows.setdefault((dek, full & 0xFFFF), {"dek_id": dek, "full_node_id": full, "first": first, "last": last})
    return list(rows.values())


class Foreign(Exception):
    pass


def oracle(
    doc: dict[str, Any], rows: list[dict[str, int]] | None, caller: int, latest: int | None, resync: bool
) -> dict[str, Any]:
    """Go's message (proto JSON), written plainly from the proto and the
    GetSidecarState / ResyncSidecar description; Foreign(dek_id) for a row
    of another node at the caller's prefix (lowest dek_id)."""
    keys = {int(i): k for i, k in doc["keys"].items()}
    projection = {}
    if rows is not None and caller != 0:
        at = {(r["dek_id"], r["full_node_id"] & 0xFFFF): r for r in rows}
        for dek in sorted(keys):
            r = at.get((dek, caller & 0xFFFF))
            if r is None:
                continue
            if r["full_node_id"] != caller:
                raise Foreign(dek)
            projection[str(dek)] = r["last"]
    wrapped = {str(i): keys[i]["wrapped"] for i in sorted(keys)}
    index = str(doc["raft_applied_index"] if latest is None else latest)
    head = {"wrapped_deks_by_id": wrapped, "active_storage_id": doc["active"]["storage"]}
    head["active_raft_id"] = doc["active"]["raft"]
    if resync:
        return {**head, "leader_latest_applied_index": index, "writer_registry_for_caller": projection}
    return {
        **head,
        "storage_envelope_active": doc["storage_envelope_active"],
        "raft_envelope_cutover_index": str(doc["raft_envelope_cutover_index"]),
        "latest_applied_index": index,
        "writer_registry_for_caller": projection,
    }


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, Any], list[dict[str, int]] | None, int, int | None]:
    doc = draw(sidecars())
    caller = draw(st.sampled_from([ME, U64, 1, 0]) | st.integers(0, U64))
    rows = draw(registries(doc, caller))
    latest = draw(st.none() | st.integers(0, U64))
    return doc, rows, caller, latest


@given(scenarios())
def test_views_match_the_oracle(scenario: tuple[dict[str, Any], list[dict[str, int]] | None, int, int | None]) -> None:
    doc, rows, caller, latest = scenario
    with tempfile.TemporaryDirectory() as tmp:
        registry = None
        if rows is not None:
            registry = Path(tmp) / "reg"
            with ea.Applier(registry) as applier:
                applier.apply_many(registrations(rows))
        sidecar = Path(tmp) / "keys.json"
        sidecar.write_text(json.dumps(doc))
        for resync in (False, True):
            try:
                expected: Any = oracle(doc, rows, caller, latest, resync)
            except Foreign as foreign:
                expected = foreign
            try:
                if resync:
                    got: Any = ea.resync_sidecar_response(
                        registry, sidecar_path=sidecar, caller_full_node_id=caller, latest_applied_index=latest
                    )
                else:
                    got = ea.sidecar_state(
                        registry, sidecar_path=sidecar, full_node_id=caller, latest_applied_index=latest
                    )
            except ea.ForeignRegistryRowError as raised:
                event("a foreign row")
                assert isinstance(expected, Foreign), raised
                assert raised.dek_id == expected.args[0] and raised.caller_full_node_id == caller
                assert raised.node_id16 == caller & 0xFFFF and raised.row_full_node_id != caller
                continue
            except ValueError:
                assert resync and caller == 0
                continue
            assert not (resync and caller == 0)
            assert not isinstance(expected, Foreign), got
            assert json.loads(got.to_json(extras=False)) == expected
            event(f"{len(got.writer_registry_for_caller)} projected")
            # Round trips, with and without the extras.
            cls = type(got)
            assert cls.from_dict(got.to_dict()) == got
            assert cls.from_json(got.to_json()) == got
            bare = cls.from_json(got.to_json(extras=False))
            assert bare.extras is None and bare.to_dict() == got.to_dict(extras=False)
            assert got.extras is not None
            assert {i: (k.local_epoch, k.purpose.name.lower()) for i, k in got.extras.keys.items()} == {
                int(i): (k["local_epoch"], k["purpose"]) for i, k in doc["keys"].items()
            }
            # Read whatever the version says (as Go's json.Unmarshal does).
            assert got.extras.storage_envelope_cutover_index == doc["storage_envelope_cutover_index"]
            assert got.extras.sidecar_version == doc["version"]


# ---- the readers of the two messages


@st.composite
def go_messages(draw: st.DrawFn, resync: bool) -> dict[str, Any]:
    """A message as a Go server could build it (the bare fields, as Python values)."""
    ids = draw(st.lists(st.integers(1, 2**32 - 1), max_size=5, unique=True))
    wrapped = {i: draw(st.binary(max_size=70)) for i in ids}
    active = [draw(st.sampled_from([0, *ids])) for _ in range(2)]
    projected = draw(st.lists(st.sampled_from(ids), unique=True)) if ids else []
    message: dict[str, Any] = {
        "wrapped_deks_by_id": wrapped,
        "active_storage_id": active[0],
        "active_raft_id": active[1],
    }
    index = draw(st.integers(0, U64))
    if resync:
        message["leader_latest_applied_index"] = index
    else:
        message["storage_envelope_active"] = draw(st.booleans())
        message["raft_envelope_cutover_index"] = draw(st.integers(0, U64))
        message["latest_applied_index"] = index
    message["writer_registry_for_caller"] = {i: draw(st.integers(0, 0xFFFF)) for i in projected}
    return message


@given(st.booleans().flatmap(lambda r: st.tuples(st.just(r), go_messages(r))))
def test_go_messages_round_trip_through_dict_and_json(drawn: tuple[bool, dict[str, Any]]) -> None:
    resync, message = drawn
    cls: Any = ea.ResyncSidecarResponse if resync else ea.SidecarStateReport
    parsed = cls.from_dict(message)
    assert parsed.extras is None
    assert parsed.to_dict() == message
    assert cls.from_json(parsed.to_json()) == parsed
    # protojson's own spelling: lowerCamelCase names, zero fields left out.
    camel = {
        "".join(w.capitalize() if n else w for n, w in enumerate(k.split("_"))): v
        for k, v in json.loads(parsed.to_json()).items()
        if v not in ("0", 0, False, {})
    }
    assert cls.from_json(json.dumps(camel)) == parsed


BASE = {"wrapped_deks_by_id": {1: b"w", 2: b"x"}, "active_storage_id": 1, "active_raft_id": 2}
KEY = {"created": "2025-01-02T03:04:05Z", "local_epoch": 1}
EXTRAS = {
    "keys": {1: {"purpose": "storage", **KEY}, 2: {"purpose": "raft", **KEY}},
    "storage_envelope_cutover_index": 0,
    "storage_envelope_active": False,
    "raft_envelope_cutover_index": 0,
    "sidecar_raft_applied_index": 0,
    "sidecar_version": 2,
    "caller_full_node_id": 5,
    "sidecar": "/x/keys.json",
    "registry": None,
}


def without(d: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in names}


def test_extras_read_back() -> None:
    resync = ea.ResyncSidecarResponse.from_dict({**BASE, "extras": EXTRAS})
    assert resync.extras is not None and resync.extras.keys[2].wrapped == b"x"
    assert resync.to_dict()["extras"] == EXTRAS


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"writer_registry_for_caller": {1: 0x10000}}, "above 0xFFFF"),
        ({"writer_registry_for_caller": {3: 1}}, "not in wrapped_deks_by_id"),
        ({"active_raft_id": 3}, "not in wrapped_deks_by_id"),
        ({"wrapped_deks_by_id": {0: b""}}, "reserved"),
        ({"active_storage_id": -1}, "0..=4294967295"),
        ({"active_storage_id": 2**32}, "0..=4294967295"),
        ({"leader_latest_applied_index": 2**64}, "0..=18446744073709551615"),
        ({"leader_latest_applied_index": True}, "integer"),
        ({"surprise": 1}, "unknown field"),
        ({"extras": {**EXTRAS, "keys": {}}}, "exactly the keys"),
        ({"extras": {**EXTRAS, "keys": {1: EXTRAS["keys"][1], 2: {"purpose": "storage", **KEY}}}}, "active raft"),
        ({"extras": {**EXTRAS, "keys": {1: {**EXTRAS["keys"][1], "created": "yesterday"}}}}, "RFC 3339"),
        ({"extras": without(EXTRAS, "storage_envelope_active", "raft_envelope_cutover_index")}, "envelope flags"),
        ({"extras": without(EXTRAS, "sidecar")}, "extras.sidecar: missing"),
        ({"extras": {**EXTRAS, "more": 1}}, "extras.more: unknown field"),
    ],
)
def test_from_dict_refuses_what_no_leader_sends(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ea.ResyncSidecarResponse.from_dict({**BASE, **change})


def test_from_dict_and_from_json_refuse_other_types() -> None:
    with pytest.raises(TypeError):
        ea.ResyncSidecarResponse.from_dict([("wrapped_deks_by_id", {})])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ea.ResyncSidecarResponse.from_dict({**BASE, "active_raft_id": 2.0})
    with pytest.raises(ValueError, match="not valid JSON"):
        ea.ResyncSidecarResponse.from_json("{")
    deep: dict[str, Any] = {}
    for _ in range(10):
        deep = {"extras": deep}
    with pytest.raises(ValueError):
        ea.SidecarStateReport.from_dict(deep)


def test_a_resync_response_is_not_a_state_report() -> None:
    resync = ea.ResyncSidecarResponse.from_dict(BASE)
    with pytest.raises(ValueError, match="unknown field"):
        ea.SidecarStateReport.from_json(resync.to_json())


# ---- the registry read


def test_the_rows_are_read_after_the_sidecar_from_a_fresh_snapshot(tmp_path: Path) -> None:
    registry, sidecar = set_up(tmp_path, CASES["projects_the_callers_rows"])
    me = CASES["projects_the_callers_rows"]["full_node_id"]
    view = ea.Registry(registry)
    with ea.Applier(registry) as applier:
        applier.apply_registration(ea.Registration(12, me, 9))  # after the view was pinned
    assert ea.sidecar_state(view, full_node_id=me).writer_registry_for_caller == {10: 3, 11: 7, 12: 9}
    assert view.get(12, me & 0xFFFF) is None  # the view itself did not move
    view.close()
    with pytest.raises(ValueError, match="closed"):
        ea.sidecar_state(view, full_node_id=me)


@pytest.mark.slow
def test_waiting_for_a_views_lock_releases_the_gil(tmp_path: Path) -> None:
    registry, _ = set_up(tmp_path, CASES["projects_the_callers_rows"])
    me = CASES["projects_the_callers_rows"]["full_node_id"]
    with ea.Registry(registry) as view:
        assert_waits_without_the_gil(
            view, lambda: ea.resync_sidecar_response(view, caller_full_node_id=me), "resync_sidecar_response"
        )
