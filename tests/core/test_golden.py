"""Golden files: the bytes this package writes, pinned before a reshaping
of the code so that the reshaping provably changes none of them.

- `wire.json`: the SPEC §2 payloads and log entries of a fixed set of
  registrations, bootstraps and rotations (cutovers included);
- `registry_dump.json`: every raw LMDB key/value (SPEC §3) after a fixed
  log is applied, read by py-lmdb, an independent client;
- `sidecar_written.json`: keys.json as the Applier writes it after the same
  log, with the two randomised fields (`created`, and nothing else) masked;
- `sidecar_v1_upgraded.json`, `sidecar_v2_rewritten.json`: a fixed v1 and
  a fixed v2 file read and written back (`Sidecar.to_json`), byte for byte.

A golden file changes only on purpose: `EA_WRITE_GOLDEN=1 pytest
tests/core/test_golden.py` rewrites them, and the diff is then reviewed.
"""

import base64
import json
import os
import re
from pathlib import Path

import pytest

import encryption_applier as ea

from helpers import NODE, OTHER, aesgcm_wrap, deks, dump_raw

GOLDEN = Path(__file__).resolve().parent / "golden"
KEK_BYTES = bytes(range(32))


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("EA_WRITE_GOLDEN") == "1":
        path.write_text(actual)
    assert path.read_text() == actual, f"{name} differs from what the code writes now"


def wrapped(dek_id: int) -> bytes:
    """A deterministic wrap: a fixed nonce per key, so the bytes are stable."""
    return aesgcm_wrap(KEK_BYTES, deks()[dek_id], nonce=bytes([dek_id]) * 12)


def payloads() -> list[tuple[str, ea.Registration | ea.Bootstrap | ea.Rotation]]:
    return [
        ("registration", ea.Registration(1, NODE, 1)),
        ("registration_max", ea.Registration(0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF, 0xFFFF)),
        (
            "bootstrap",
            ea.Bootstrap(1, wrapped(1), 2, wrapped(2), [ea.Registration(1, NODE, 1), ea.Registration(2, NODE, 1)]),
        ),
        ("bootstrap_empty_batch", ea.Bootstrap(1, wrapped(1), 2, wrapped(2), [])),
        ("rotation_storage", ea.Rotation(3, ea.Purpose.STORAGE, wrapped(3), ea.Registration(3, OTHER, 2))),
        ("rotation_raft", ea.Rotation(4, ea.Purpose.RAFT, wrapped(4), ea.Registration(4, NODE, 3))),
        (
            "enable_storage",
            ea.Rotation(3, ea.Purpose.STORAGE, b"", ea.Registration(3, NODE, 2), sub_tag=ea.ENABLE_STORAGE_ENVELOPE),
        ),
        (
            "enable_raft",
            ea.Rotation(4, ea.Purpose.RAFT, b"", ea.Registration(4, NODE, 3), sub_tag=ea.ENABLE_RAFT_ENVELOPE),
        ),
    ]


def test_wire_bytes_are_golden() -> None:
    doc = {name: {"payload": p.encode().hex(), "entry": p.to_entry().hex()} for name, p in payloads()}
    for name, p in payloads():
        assert ea.decode_entry(bytes.fromhex(doc[name]["entry"])) == p
    check_golden("wire.json", json.dumps(doc, indent=2) + "\n")


def apply_fixed_log(directory: Path, kek_path: Path) -> None:
    log = [
        ea.Bootstrap(1, wrapped(1), 2, wrapped(2), [ea.Registration(1, NODE, 1), ea.Registration(2, NODE, 1)]),
        ea.Registration(1, OTHER, 1),
        ea.Registration(2, OTHER, 1),
        ea.Registration(1, NODE, 2),
        ea.Rotation(3, ea.Purpose.STORAGE, wrapped(3), ea.Registration(3, OTHER, 2)),
        ea.Registration(3, NODE, 2),
        ea.Rotation(3, ea.Purpose.STORAGE, b"", ea.Registration(3, NODE, 2), sub_tag=ea.ENABLE_STORAGE_ENVELOPE),
        ea.Rotation(4, ea.Purpose.RAFT, wrapped(4), ea.Registration(4, NODE, 3)),
        ea.Rotation(4, ea.Purpose.RAFT, b"", ea.Registration(4, NODE, 3), sub_tag=ea.ENABLE_RAFT_ENVELOPE),
    ]
    with ea.Applier(directory, kek=ea.FileKek(kek_path)) as applier:
        outcomes = applier.apply_many([p.to_entry() for p in log], first_index=1)
    assert len(outcomes) == len(log)


@pytest.fixture
def fixed_kek(tmp_path: Path) -> Path:
    path = tmp_path / "kek.bin"
    path.write_bytes(KEK_BYTES)
    path.chmod(0o600)
    return path


def test_registry_bytes_are_golden(registry_dir: Path, fixed_kek: Path) -> None:
    apply_fixed_log(registry_dir, fixed_kek)
    rows = [{"key": k.hex(), "value": v.hex()} for k, v in dump_raw(registry_dir)]
    check_golden("registry_dump.json", json.dumps(rows, indent=2) + "\n")


def test_written_sidecar_is_golden(registry_dir: Path, fixed_kek: Path) -> None:
    apply_fixed_log(registry_dir, fixed_kek)
    text = (registry_dir / "keys.json").read_text()
    masked, count = re.subn(r'"created": "[^"]*"', '"created": "<masked>"', text)
    assert count == 4
    check_golden("sidecar_written.json", masked)


V1 = {
    "version": 1,
    "active": {"storage": 1, "raft": 2},
    "keys": {
        "1": {"purpose": "storage", "wrapped": "", "created": "2025-01-02T03:04:05Z", "local_epoch": 1},
        "2": {"purpose": "raft", "wrapped": "", "created": "2025-01-02T03:04:06.5Z", "local_epoch": 3},
    },
    "raft_applied_index": 17,
    "storage_envelope_active": False,
    "raft_envelope_cutover_index": 0,
}


def sidecar_doc(version: int) -> dict[str, object]:
    doc = json.loads(json.dumps(V1))
    for key_id, key in doc["keys"].items():
        key["wrapped"] = base64.b64encode(wrapped(int(key_id))).decode()
    doc["version"] = version
    if version == 2:
        doc["storage_envelope_active"] = True
        doc["storage_envelope_cutover_index"] = 9
        doc["raft_envelope_cutover_index"] = 12
    return doc  # type: ignore[no-any-return]


@pytest.mark.parametrize(("version", "name"), [(1, "sidecar_v1_upgraded.json"), (2, "sidecar_v2_rewritten.json")])
def test_sidecar_round_trip_is_golden(tmp_path: Path, version: int, name: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(sidecar_doc(version), indent=1))
    found = ea.read_sidecar(path)
    assert found is not None and found.version == version
    check_golden(name, found.to_json())
