"""elastickv's start-up writer registration decision
(main_encryption_registration.go:185-375, 411-510): compared with Go's
decision re-derived by `scripts/go_vectors/registration.py` (the golden file
`golden/go/registration.json`), and, for inputs hypothesis varies, with the
plain-Python model `go_model` below."""

import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import encryption_applier as ea

from helpers import NODE, REPO, WrapOracle, edit_sidecar

GOLDEN = Path(__file__).resolve().parent / "golden" / "go" / "registration.json"
SCRIPT = REPO / "scripts" / "go_vectors" / "registration.py"
CASES: list[dict[str, Any]] = json.loads(GOLDEN.read_text())["cases"]


def build(tmp: Path, case: dict[str, Any]) -> tuple[Path, Path]:
    """The case's sidecar file (absent when None) and a registry holding its
    rows, made through the applier (first, then last, seen epochs)."""
    sidecar = tmp / "sidecar" / "keys.json"
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    if case["sidecar"] is not None:
        sidecar.write_text(json.dumps(case["sidecar"]))
    registry = tmp / "registry"
    with ea.Applier(registry) as applier:  # no KEK: it keeps no sidecar
        for row in case["rows"]:
            for epoch in dict.fromkeys((row["first_seen_local_epoch"], row["last_seen_local_epoch"])):
                applier.apply_registration(ea.Registration(row["dek_id"], row["full_node_id"], epoch))
    return sidecar, registry


def decide(tmp: Path, case: dict[str, Any], with_registry: bool = True) -> ea.RegistrationDecision:
    return decide_built(*build(tmp, case), case, with_registry)


def decide_built(
    sidecar: Path, registry_dir: Path, case: dict[str, Any], with_registry: bool = True
) -> ea.RegistrationDecision:
    with ea.Registry(registry_dir) as registry:
        return ea.registration_decision(
            sidecar_path=sidecar,
            registry=registry if with_registry else None,
            full_node_id=case["full_node_id"],
            local_epoch=case["local_epoch"],
            raft_local_epoch=case["raft_local_epoch"],
            encryption_enabled=case["encryption_enabled"],
        )


def action_of(go: dict[str, Any]) -> str:
    if go["error"] is not None:
        return "refuse"
    if go["proposes"]:
        return "register"
    return "already-registered" if go["storage"] == "already-registered" else "skip"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("go_vectors_registration", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_golden_file_is_what_the_script_derives() -> None:
    doc = json.loads(GOLDEN.read_text())
    assert (doc["elastickv_commit"], doc["generated_by"]) == ("d9a031d0", "scripts/go_vectors/registration.py")
    script = load_script()
    assert "encryption_applier" not in SCRIPT.read_text().split('"""', 2)[2]  # standalone: no import of us
    inputs = [{k: v for k, v in c.items() if k != "go"} for c in doc["cases"]]
    assert inputs == script.CASES
    assert [c["go"] for c in doc["cases"]] == [script.go_decision(c) for c in script.CASES]
    # every verdict and refusal of Go is covered
    verdicts = {(c["go"]["raft"], c["go"]["storage"]) for c in CASES}
    assert {v for pair in verdicts for v in pair} == {"skip", "register", "already-registered", "refuse", "not-reached"}
    assert {c["go"]["error"]["check"] for c in CASES if c["go"]["error"]} == {"raft", "storage"}


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_decision_is_gos(case: dict[str, Any], tmp_path: Path) -> None:
    go = case["go"]
    sidecar, registry_dir = build(tmp_path, case)

    def state() -> tuple[bytes | None, str]:
        with ea.Registry(registry_dir) as registry:
            return (sidecar.read_bytes() if sidecar.exists() else None, registry.digest())

    before = state()
    d = decide_built(sidecar, registry_dir, case)
    assert d.action == action_of(go), d
    assert (d.raft.verdict, d.storage.verdict) == (go["raft"], go["storage"]), d.reason
    assert {c.purpose: c.skip_reason for c in (d.raft, d.storage) if c.verdict == "skip"} == go["skips"]
    # the entries, byte for byte, from the wire codec, in Go's order
    assert [e.to_entry().hex() for e in d.entries] == [p["entry"] for p in go["proposes"]]
    assert [e["entry"] for e in d.to_dict()["entries"]] == [p["entry"] for p in go["proposes"]]
    assert [(e.dek_id, e.full_node_id, e.local_epoch) for e in d.entries] == [
        (p["dek_id"], p["full_node_id"], p["local_epoch"]) for p in go["proposes"]
    ]
    for p in go["proposes"]:
        check = d.storage if p["purpose"] == "storage" else d.raft
        assert check.entry is not None and check.entry.to_entry().hex() == p["entry"]
    error = go["error"]
    if error is None:
        assert d.refusal is None
    else:
        refusal = d.refusal
        assert refusal is not None and refusal.purpose == error["check"]
        assert (refusal.sentinel, refusal.dek_id, refusal.full_node_id) == (
            error["sentinel"],
            error["dek_id"],
            error["full_node_id"],
        )
        assert (refusal.local_epoch, refusal.last_seen) == (error["local_epoch"], error["last_seen"])
        # the message names the ids involved, as Go's does
        for text in (
            f"local_epoch={error['local_epoch']}",
            f"last_seen={error['last_seen']}",
            f"dek_id={error['dek_id']}",
            f"full_node_id=0x{error['full_node_id']:016x}",
            f"node_id16=0x{error['full_node_id'] & 0xFFFF:04x}",
        ):
            assert text in d.reason and text in refusal.reason, (text, d.reason)
        assert d.entries == []
    # the decision writes nothing
    assert state() == before
    json.dumps(d.to_dict())  # plain values


def test_without_a_registry_there_are_no_rows(tmp_path: Path) -> None:
    (case,) = [c for c in CASES if c["name"] == "storage_behind_refused"]
    assert decide(tmp_path / "a", case).action == "refuse"
    d = decide(tmp_path / "b", case, with_registry=False)
    assert (d.action, d.storage.last_seen, d.storage.row) == ("register", 0, None)


def test_a_foreign_row_is_named(tmp_path: Path) -> None:
    (case,) = [c for c in CASES if c["name"] == "storage_foreign_row_below"]
    d = decide(tmp_path, case)
    owner = case["rows"][0]["full_node_id"]
    assert d.action == "register" and d.storage.foreign_owner == owner and d.storage.row is not None
    assert d.storage.row.full_node_id == owner and f"0x{owner:016x}" in d.storage.reason
    assert d.raft.foreign_owner is None


def test_the_objects(tmp_path: Path) -> None:
    (case,) = [c for c in CASES if c["name"] == "raft_and_storage_register"]
    d = decide(tmp_path, case)
    assert repr(d).startswith("<RegistrationDecision register full_node_id=0x") and "Registration(dek_id=1" in repr(d)
    assert repr(d.raft).startswith("<RegistrationCheck raft register dek_id=2")
    assert str(d) == d.reason and d == decide(tmp_path / "again", case)
    as_dict = d.to_dict()
    assert as_dict["action"] == "register" and [c["purpose"] for c in as_dict["checks"]] == ["raft", "storage"]
    assert as_dict["checks"][1] == d.storage.to_dict() and d.storage.to_dict()["row"]["last_seen_local_epoch"] == 3
    assert d.full_node_id == case["full_node_id"]


def test_bad_inputs_raise(tmp_path: Path) -> None:
    bad = tmp_path / "keys.json"
    bad.write_text("{not json")
    args: dict[str, Any] = {"registry": None, "full_node_id": NODE, "local_epoch": 1}
    with pytest.raises(ea.SidecarError) as raised:
        ea.registration_decision(sidecar_path=bad, **args)
    assert raised.value.code == "not_json"
    # encryption off: Go does not read the sidecar
    off = ea.registration_decision(sidecar_path=bad, encryption_enabled=False, **args)
    assert off.action == "skip" and off.storage.skip_reason == "encryption_disabled"
    with pytest.raises(OverflowError):
        ea.registration_decision(sidecar_path=bad, registry=None, full_node_id=NODE, local_epoch=0x10000)
    with pytest.raises(OverflowError):
        ea.registration_decision(sidecar_path=bad, registry=None, full_node_id=-1, local_epoch=1)
    with pytest.raises(TypeError, match="registry"):
        ea.registration_decision(sidecar_path=bad, full_node_id=NODE, local_epoch=1)  # type: ignore[call-arg]


def test_pinned_epochs_are_what_prepare_epochs_pins(booted: Path) -> None:
    path = booted / "keys.json"
    assert ea.pinned_epochs(booted / "missing.json") == (0, 0)
    edit_sidecar(booted, epoch_1=4, epoch_2=6)
    before = path.read_bytes()
    assert ea.pinned_epochs(path) == (5, 0)  # the Raft layer is not cut over
    edit_sidecar(booted, raft_envelope_cutover_index=9)
    before = path.read_bytes()
    assert (ea.pinned_epochs(path), ea.pinned_epochs(path, bumped=True)) == ((5, 7), (4, 6))
    assert path.read_bytes() == before
    assert ea.prepare_epochs(path) == (5, 7) == ea.pinned_epochs(path, bumped=True)
    edit_sidecar(booted, epoch_2=0xFFFF)
    with pytest.raises(ea.LocalEpochExhaustedError) as raised:
        ea.pinned_epochs(path)
    assert raised.value.dek_id == 2
    assert ea.pinned_epochs(path, bumped=True) == (5, 0xFFFF)


# --- hypothesis, against a plain model of Go's decision -------------------

ME = 0x08B3_7B07_B558_D4C0


def go_model(
    enabled: bool, sidecar: dict[str, Any] | None, rows: dict[int, tuple[int, int]], epoch: int, raft_epoch: int
) -> tuple[str, str, list[tuple[int, int]], str | None]:
    """(raft verdict, storage verdict, [(dek_id, epoch)] proposed, refused
    purpose); `rows` maps a DEK id to (owner, last_seen) of the row under
    this node's node_id16."""

    def seen(dek: int) -> int:
        return rows[dek][1] if dek in rows else 0

    raft, storage, proposed = "skip", "skip", []
    if enabled and sidecar and sidecar["raft_envelope_cutover_index"] and sidecar["active"]["raft"]:
        dek = sidecar["active"]["raft"]
        if raft_epoch <= seen(dek):
            return "refuse", "not-reached", [], "raft"
        raft = "register"
    if enabled and sidecar and sidecar["storage_envelope_active"] and sidecar["active"]["storage"]:
        dek = sidecar["active"]["storage"]
        if epoch < seen(dek):
            return ("not-reached" if raft == "register" else raft), "refuse", [], "storage"
        storage = "already-registered" if epoch == seen(dek) else "register"
        if storage == "register":
            proposed.append((dek, epoch))
    if raft == "register":
        proposed.append((sidecar["active"]["raft"], raft_epoch))  # type: ignore[index]
    return raft, storage, proposed, None


epochs = st.one_of(st.integers(0, 5), st.just(0xFFFF))
sidecars = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {
            "storage": st.sampled_from([0, 1]),
            "raft": st.sampled_from([0, 2]),
            "envelope": st.booleans(),
            "cutover": st.sampled_from([0, 7]),
        }
    ),
)
owners = st.sampled_from(["mine", "foreign"])
row_sets = st.dictionaries(st.sampled_from([1, 2]), st.tuples(owners, epochs), max_size=2)


def sidecar_file(spec: dict[str, Any]) -> dict[str, Any]:
    keys = {
        str(dek): {"purpose": purpose, "wrapped": "AAAA", "created": "2026-05-16T17:53:00Z", "local_epoch": 1}
        for dek, purpose in ((spec["storage"], "storage"), (spec["raft"], "raft"))
        if dek
    }
    return {
        "version": 2,
        "raft_applied_index": 0,
        "storage_envelope_active": spec["envelope"],
        "storage_envelope_cutover_index": 0,
        "raft_envelope_cutover_index": spec["cutover"],
        "active": {"storage": spec["storage"], "raft": spec["raft"]},
        "keys": keys,
    }


@given(
    enabled=st.booleans(),
    spec=sidecars,
    rows=row_sets,
    epoch=epochs,
    raft_epoch=epochs,
    upper=st.integers(1, (1 << 48) - 1),
)
def test_the_decision_matches_the_model(
    enabled: bool,
    spec: dict[str, Any] | None,
    rows: dict[int, tuple[str, int]],
    epoch: int,
    raft_epoch: int,
    upper: int,
) -> None:
    full = ME
    foreign = full ^ (upper << 16)  # the same node_id16, another node
    owned = {dek: (full if who == "mine" else foreign, last) for dek, (who, last) in rows.items()}
    sidecar = None if spec is None else sidecar_file(spec)
    with tempfile.TemporaryDirectory() as tmp:
        case = {
            "encryption_enabled": enabled,
            "sidecar": sidecar,
            "rows": [row_doc(dek, owner, last) for dek, (owner, last) in owned.items()],
            "full_node_id": full,
            "local_epoch": epoch,
            "raft_local_epoch": raft_epoch,
        }
        d = decide(Path(tmp), case)
    raft, storage, proposed, refused = go_model(enabled, sidecar, owned, epoch, raft_epoch)
    assert (d.raft.verdict, d.storage.verdict) == (raft, storage), d.reason
    assert [(e.dek_id, e.local_epoch) for e in d.entries] == proposed
    assert all(e.full_node_id == full for e in d.entries)
    assert (d.refusal.purpose if d.refusal else None) == refused
    for check in (d.raft, d.storage):
        if check.dek_id in owned and check.verdict not in ("skip", "not-reached"):
            owner, last = owned[check.dek_id]
            assert check.last_seen == last
            assert check.foreign_owner == (None if owner == full else owner)


def row_doc(dek: int, owner: int, last: int) -> dict[str, int]:
    return {"dek_id": dek, "full_node_id": owner, "first_seen_local_epoch": 0, "last_seen_local_epoch": last}


# --- the command line -------------------------------------------------------


def doctor(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "encryption_applier", "doctor", str(directory), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_doctor_prints_the_decision(booted: Path, cluster: WrapOracle) -> None:
    enable = ea.Rotation(1, ea.Purpose.STORAGE, b"", ea.Registration(1, NODE, 1), sub_tag=ea.ENABLE_STORAGE_ENVELOPE)
    with ea.Applier(booted, kek=ea.FileKek(cluster.kek_path)) as applier:
        applier.apply_rotation(enable, index=2)
    edit_sidecar(booted, epoch_1=1)  # the rows are at epoch 1
    base = ("--kek", str(cluster.kek_path), "--full-node-id", hex(NODE))
    entry = ea.Registration(1, NODE, 2).to_entry().hex()
    done = doctor(booted, *base)
    assert done.returncode == 0, done
    assert "registration: epochs storage=2 raft=0 (pinned from the sidecar, pre-bump)" in done.stdout
    assert (
        f"registration: register dek_id=1 full_node_id=0x{NODE:016x} epoch=2 "
        f"(storage key, registry last_seen_local_epoch=1, entry {entry})" in done.stdout
    )
    done = doctor(booted, *base, "--local-epoch", "1")
    assert done.returncode == 0 and "registration: already registered dek_id=1" in done.stdout, done
    done = doctor(booted, *base, "--local-epoch", "0")
    assert done.returncode == 1, done
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("registration: REFUSED")]
    assert "local_epoch=0 is behind registry last_seen=1 for dek_id=1" in line and f"0x{NODE:016x}" in line
    # no id: nothing to decide; a guard's refusal comes first
    assert "registration:" not in doctor(booted, "--kek", str(cluster.kek_path)).stdout
    done = doctor(booted, *base, "--phase", "post-replay")  # sidecar 1 <= row 1
    assert done.returncode == 1 and "registration: not reached (a startup guard refuses first)" in done.stdout
    done = doctor(booted, *base, "--local-epoch", "65536")
    assert done.returncode == 2 and "out of range for a local epoch" in done.stderr


def test_doctor_notes_a_foreign_row(booted: Path, cluster: WrapOracle) -> None:
    foreign = NODE ^ (0x77 << 32)
    with ea.Applier(booted, kek=ea.FileKek(cluster.kek_path)) as applier:
        applier.apply_rotation(cluster.rotation(3, ea.Purpose.RAFT, epoch=1, full=foreign), index=2)
        cut = ea.Rotation(3, ea.Purpose.RAFT, b"", ea.Registration(3, foreign, 1), sub_tag=ea.ENABLE_RAFT_ENVELOPE)
        applier.apply_rotation(cut, index=3)
    edit_sidecar(booted, epoch_1=1, epoch_3=1)
    done = doctor(booted, "--kek", str(cluster.kek_path), "--full-node-id", hex(NODE))
    assert done.returncode == 0, done
    assert "registration: epochs storage=2 raft=2" in done.stdout
    assert f"registration: register dek_id=3 full_node_id=0x{NODE:016x} epoch=2 (raft key" in done.stdout
    assert (
        f"    note: the raft row under node_id16=0x{NODE & 0xFFFF:04x} belongs to full_node_id=0x{foreign:016x}: "
        "applying the registration halts every replica (NodeIDCollisionError)" in done.stdout
    )
