#!/usr/bin/env python3
"""Go's answers to GetSidecarState and ResyncSidecar (elastickv d9a031d0),
for fixed inputs: writes tests/core/golden/go/status.json.

No Go toolchain is available here, so this script re-derives Go's output
from the Go source as read at d9a031d0, step by step, each step commented
with its Go file:line (paths from the root of bootjp/elastickv). It is
standalone: it does not import encryption_applier, whose output
tests/core/test_status.py compares with every case.

Each case gives the inputs of one server:

- ``sidecar``: ``{"doc": {...}}`` (keys.json as a JSON object),
  ``{"text": "..."}`` (raw bytes of keys.json) or ``{"absent": true}``;
- ``registry``: None (no writer registry wired) or ``{"rows": [...],
  "raw": [...]}``: rows ``{dek_id, full_node_id, first, last}`` as the
  applier writes them, and raw values ``{dek_id, node_id16, value_hex}``
  (a stored value Go's decoder refuses);
- ``full_node_id``: the server's own id (WithEncryptionAdminFullNodeID;
  0: unset), the caller of GetSidecarState's projection;
- ``caller_full_node_id``: ResyncSidecarRequest.caller_full_node_id;
- ``latest_applied_index``: the value of the WithEncryptionAdminLatestAppliedIndex
  hook, or None when no hook is wired.

The server is the leader (both leader views nil or leading: requireRegistryLeader
passes, encryption_admin.go:1970-1972, 1987-1990), and its sidecar path is
set. Each answer is ``{"response": <proto3 JSON, proto field names, every
field emitted>}`` or ``{"error": {"code", "message", "branch", ...}}``, where
``message`` has ``{sidecar}`` for the sidecar's path. Go walks a map to
build the projection (encryption_admin.go:524), so when several keys fail
any of them may be reported: ``candidates`` lists every one.

Run: python3 scripts/go_vectors/status.py   (rewrites the golden file;
``--output PATH`` writes elsewhere, as the test that checks the committed
file is this script's output does)
"""

from __future__ import annotations

import argparse
import base64
import json
import struct
from pathlib import Path
from typing import Any

ELASTICKV_COMMIT = "d9a031d0"
OUT = Path(__file__).resolve().parents[2] / "tests" / "core" / "golden" / "go" / "status.json"

CREATED = "2025-01-02T03:04:05Z"
ME = 0xCAFE_BABE_0000_1234  # the Go tests' callerFullNodeID (adapter/encryption_admin_test.go:164)
RIVAL = 0x0BAD_F00D_0000_1234  # another node with ME's low 16 bits
PEER = 0x1111_2222_0000_0002


def key(purpose: str, wrapped: bytes, epoch: int = 0) -> dict[str, Any]:
    return {"purpose": purpose, "wrapped": base64.b64encode(wrapped).decode(), "created": CREATED, "local_epoch": epoch}


def sidecar_doc(
    keys: dict[int, dict[str, Any]],
    storage: int,
    raft: int,
    *,
    version: int = 2,
    applied: int = 0,
    storage_active: bool = False,
    storage_cutover: int = 0,
    raft_cutover: int = 0,
) -> dict[str, Any]:
    doc: dict[str, Any] = {"version": version, "raft_applied_index": applied, "storage_envelope_active": storage_active}
    if version >= 2:
        doc["storage_envelope_cutover_index"] = storage_cutover
    doc["raft_envelope_cutover_index"] = raft_cutover
    doc["active"] = {"storage": storage, "raft": raft}
    doc["keys"] = {str(k): v for k, v in keys.items()}
    return doc


def row(dek_id: int, full: int, first: int, last: int) -> dict[str, int]:
    return {"dek_id": dek_id, "full_node_id": full, "first": first, "last": last}


BOOTED = sidecar_doc({10: key("storage", b"storage", 3), 11: key("raft", b"raft", 7)}, 10, 11, applied=42)
ROTATED = sidecar_doc(
    {
        1: key("storage", b"\x01" * 60),
        2: key("raft", b"\x02" * 60),
        3: key("storage", b"\x03" * 60, 4),
        4: key("raft", b"\x04" * 60, 5),
        5: key("storage", b"\x05" * 60, 6),
    },
    5,
    4,
    applied=120,
    storage_active=True,
    storage_cutover=90,
    raft_cutover=100,
)


def cases() -> list[dict[str, Any]]:
    both = {"rows": [row(10, ME, 1, 3), row(11, ME, 2, 7)], "raw": []}
    c = [
        # Go's own test, ProjectsLocalWriterRegistry (encryption_admin_test.go:162-191),
        # with valid `created` fields: key 12 has no row and is left out.
        dict(
            name="projects_the_callers_rows",
            sidecar={
                "doc": sidecar_doc(
                    {10: key("storage", b"storage"), 11: key("raft", b"raft"), 12: key("storage", b"unregistered")},
                    10,
                    11,
                    applied=1,
                )
            },
            registry={"rows": [row(10, ME, 3, 3), row(11, ME, 7, 7)], "raw": []},
            full_node_id=ME,
            caller_full_node_id=ME,
            latest_applied_index=None,
        ),
        # Rows of other prefixes and of a key the sidecar does not have are
        # never looked at.
        dict(
            name="other_prefixes_and_unknown_keys_are_ignored",
            sidecar={"doc": BOOTED},
            registry={"rows": [*both["rows"], row(10, PEER, 0, 9), row(99, ME, 5, 5), row(11, PEER, 1, 1)], "raw": []},
            full_node_id=ME,
            caller_full_node_id=ME,
            latest_applied_index=None,
        ),
        # Every key of the sidecar is shipped, the retired-by-rotation ones
        # too (HEAD has no retirement, applier.go:1366).
        dict(
            name="rotated_keys_all_shipped",
            sidecar={"doc": ROTATED},
            registry={
                "rows": [row(1, PEER, 0, 0), row(3, PEER, 4, 4), row(5, PEER, 6, 6), row(4, PEER, 2, 5)],
                "raw": [],
            },
            full_node_id=PEER,
            caller_full_node_id=PEER,
            latest_applied_index=None,
        ),
        # A resync for another node than the server's own.
        dict(
            name="resync_for_another_caller",
            sidecar={"doc": ROTATED},
            registry={"rows": [row(3, PEER, 4, 4), row(5, ME, 0, 2), row(4, ME, 1, 1)], "raw": []},
            full_node_id=PEER,
            caller_full_node_id=ME,
            latest_applied_index=None,
        ),
        dict(
            name="no_registry_wired",
            sidecar={"doc": BOOTED},
            registry=None,
            full_node_id=ME,
            caller_full_node_id=ME,
            latest_applied_index=None,
        ),
        dict(
            name="server_id_unset_and_caller_zero",
            sidecar={"doc": BOOTED},
            registry=both,
            full_node_id=0,
            caller_full_node_id=0,
            latest_applied_index=None,
        ),
        # The hook's value replaces the sidecar's, 0 included
        # (encryption_admin_test.go:434-454).
        dict(
            name="hook_overrides_the_index",
            sidecar={"doc": BOOTED},
            registry=both,
            full_node_id=ME,
            caller_full_node_id=ME,
            latest_applied_index=9999,
        ),
        dict(
            name="hook_returning_zero",
            sidecar={"doc": BOOTED},
            registry=both,
            full_node_id=ME,
            caller_full_node_id=ME,
            latest_applied_index=0,
        ),
        dict(
            name="not_bootstrapped_sidecar",
            sidecar={"doc": sidecar_doc({}, 0, 0)},
            registry={"rows": [row(1, ME, 1, 1)], "raw": []},
            full_node_id=ME,
            caller_full_node_id=ME,
            latest_applied_index=None,
        ),
        dict(
            name="version_1_sidecar",
            sidecar={"doc": sidecar_doc({7: key("storage", b"v1")}, 7, 0, version=1, applied=5, storage_active=True)},
            registry={"rows": [row(7, ME, 0, 0)], "raw": []},
            full_node_id=ME,
            caller_full_node_id=ME,
            latest_applied_index=None,
        ),
        dict(
            name="largest_values",
            sidecar={
                "doc": sidecar_doc(
                    {0xFFFF_FFFF: key("storage", b"\xff" * 60, 0xFFFF), 1: key("raft", b"", 0)},
                    0xFFFF_FFFF,
                    1,
                    applied=2**64 - 1,
                    storage_active=True,
                    storage_cutover=2**64 - 2,
                    raft_cutover=2**64 - 1,
                )
            },
            registry={"rows": [row(0xFFFF_FFFF, 2**64 - 1, 0, 0xFFFF), row(1, 2**64 - 1, 0xFFFE, 0xFFFE)], "raw": []},
            full_node_id=2**64 - 1,
            caller_full_node_id=2**64 - 1,
            latest_applied_index=None,
        ),
        # ---- errors
        dict(
            name="foreign_row_under_the_callers_prefix",
            sidecar={"doc": BOOTED},
            registry={"rows": [row(10, ME, 1, 3), row(11, RIVAL, 0, 4)], "raw": []},
            full_node_id=ME,
            caller_full_node_id=ME,
            latest_applied_index=None,
        ),
        dict(
            name="foreign_rows_under_two_keys",
            sidecar={"doc": ROTATED},
            registry={"rows": [row(1, RIVAL, 0, 0), row(4, ME, 0, 0), row(5, RIVAL, 6, 6)], "raw": []},
            full_node_id=ME,
            caller_full_node_id=ME,
            latest_applied_index=None,
        ),
        # A foreign row is only looked for with a caller: no error without one.
        dict(
            name="foreign_row_without_caller",
            sidecar={"doc": BOOTED},
            registry={"rows": [row(11, RIVAL, 0, 4)], "raw": []},
            full_node_id=0,
            caller_full_node_id=0,
            latest_applied_index=None,
        ),
        dict(
            name="stored_value_of_11_bytes",
            sidecar={"doc": BOOTED},
            registry={
                "rows": [row(11, ME, 2, 7)],
                "raw": [{"dek_id": 10, "node_id16": ME & 0xFFFF, "value_hex": "00" * 11}],
            },
            full_node_id=ME,
            caller_full_node_id=ME,
            latest_applied_index=None,
        ),
        dict(
            name="sidecar_missing",
            sidecar={"absent": True},
            registry=both,
            full_node_id=ME,
            caller_full_node_id=ME,
            latest_applied_index=None,
        ),
        # Resync checks the caller before it reads the sidecar.
        dict(
            name="sidecar_missing_and_caller_zero",
            sidecar={"absent": True},
            registry=both,
            full_node_id=0,
            caller_full_node_id=0,
            latest_applied_index=None,
        ),
        dict(
            name="sidecar_version_3",
            sidecar={"doc": {**BOOTED, "version": 3}},
            registry=both,
            full_node_id=ME,
            caller_full_node_id=ME,
            latest_applied_index=None,
        ),
        dict(
            name="sidecar_not_json",
            sidecar={"text": "{"},
            registry=both,
            full_node_id=ME,
            caller_full_node_id=ME,
            latest_applied_index=None,
        ),
        dict(
            name="sidecar_active_key_missing",
            sidecar={"doc": {**BOOTED, "active": {"storage": 5, "raft": 11}}},
            registry=both,
            full_node_id=ME,
            caller_full_node_id=ME,
            latest_applied_index=None,
        ),
        dict(
            name="sidecar_active_wrong_purpose",
            sidecar={"doc": {**BOOTED, "active": {"storage": 10, "raft": 10}}},
            registry=both,
            full_node_id=ME,
            caller_full_node_id=ME,
            latest_applied_index=None,
        ),
        dict(
            name="sidecar_unknown_purpose",
            sidecar={"doc": {**BOOTED, "keys": {**BOOTED["keys"], "12": {**key("storage", b"x"), "purpose": "other"}}}},
            registry=both,
            full_node_id=ME,
            caller_full_node_id=ME,
            latest_applied_index=None,
        ),
        dict(
            name="sidecar_key_id_zero",
            sidecar={"doc": {**BOOTED, "keys": {**BOOTED["keys"], "0": key("storage", b"x")}}},
            registry=both,
            full_node_id=ME,
            caller_full_node_id=ME,
            latest_applied_index=None,
        ),
        dict(
            name="sidecar_key_id_not_decimal",
            sidecar={"doc": {**BOOTED, "keys": {**BOOTED["keys"], "x1": key("storage", b"x")}}},
            registry=both,
            full_node_id=ME,
            caller_full_node_id=ME,
            latest_applied_index=None,
        ),
    ]
    return c


# ---- Go's algorithm


class GoError(Exception):
    """A gRPC status error: code, message, which Go branch made it."""

    def __init__(self, code: str, message: str, branch: str, **extra: Any) -> None:
        super().__init__(message)
        self.doc = {"code": code, "message": message, "branch": branch, **extra}


def go_quote(text: str) -> str:
    # %q of an ASCII path with no quote or backslash: the text in quotes.
    assert text.isascii() and '"' not in text and "\\" not in text
    return f'"{text}"'


PATH = go_quote("{sidecar}")


def read_sidecar(sidecar: dict[str, Any]) -> dict[str, Any]:
    """encryption.ReadSidecar (internal/encryption/sidecar.go:144-162),
    then statusFromSidecarErr (adapter/encryption_admin.go:600-608)."""
    if sidecar.get("absent"):
        # os.ReadFile fails with fs.ErrNotExist (sidecar.go:145-148), which
        # statusFromSidecarErr maps to FailedPrecondition (602-603).
        raise GoError("FailedPrecondition", "encryption: sidecar file is missing", "sidecar_missing")
    if "text" in sidecar:
        # json.Unmarshal (sidecar.go:150-152). The only raw text used here
        # is "{", whose error is encoding/json's "unexpected end of JSON input".
        assert sidecar["text"] == "{"
        inner = f"encryption: parse sidecar {PATH}: unexpected end of JSON input"
        raise GoError("Internal", f"encryption: read sidecar: {inner}", "sidecar_invalid", sentinel="json.SyntaxError")
    doc = sidecar["doc"]
    version = doc["version"]
    # sidecar.go:153-157: 1..2 readable, else ErrSidecarVersion, which
    # statusFromSidecarErr maps to FailedPrecondition (604-605).
    if not 1 <= version <= 2:
        inner = f"got version {version}, want 1..2 (path={PATH}): encryption: unsupported sidecar version"
        raise GoError("FailedPrecondition", f"encryption: {inner}", "sidecar_version", sentinel="ErrSidecarVersion")

    # validateSidecar (sidecar.go:168-188): every key (validateSidecarKey,
    # 207-221), then active.storage, then active.raft (requireActiveKey,
    # 190-205). Any failure is wrapped "encryption: validate sidecar %q"
    # (sidecar.go:158-160) and mapped to Internal (encryption_admin.go:606-607).
    def invalid(detail: str, sentinel: str) -> GoError:
        inner = f"encryption: validate sidecar {PATH}: {detail}"
        return GoError("Internal", f"encryption: read sidecar: {inner}", "sidecar_invalid", sentinel=sentinel)

    keys = doc["keys"]
    # (Go walks the keys map; each case has at most one bad key.)
    for id_text, k in keys.items():
        if not id_text.isdigit():  # strconv.ParseUint(s, 10, 32), 208-211 (syntax errors only here)
            raise invalid(
                f"{json.dumps(id_text)}: strconv.ParseUint: parsing {json.dumps(id_text)}: invalid syntax: "
                "encryption: sidecar key_id is not a decimal uint32",
                "ErrSidecarKeyIDFormat",
            )
        if int(id_text) == 0:  # 212-214
            raise invalid(
                f"found key_id {id_text} in keys map: encryption: sidecar key_id 0 is reserved",
                "ErrSidecarReservedKeyID",
            )
        if k["purpose"] not in ("storage", "raft"):  # 215-219
            raise invalid(
                f"key_id={id_text} purpose={json.dumps(k['purpose'])}: encryption: unsupported sidecar key purpose",
                "ErrSidecarPurpose",
            )
    for purpose in ("storage", "raft"):
        active = doc["active"][purpose]
        if active == 0:  # ReservedKeyID: not bootstrapped for this purpose, 191-193
            continue
        k = keys.get(str(active))
        if k is None:  # 195-199
            raise invalid(
                f"active.{purpose}={active} not present in keys map: "
                "encryption: sidecar active key_id has no entry in keys map",
                "ErrSidecarActiveKeyMissing",
            )
        if k["purpose"] != purpose:  # 200-203
            raise invalid(
                f"active.{purpose}={active} but keys[{json.dumps(str(active))}].purpose={json.dumps(k['purpose'])}: "
                "encryption: sidecar active key_id references a key with mismatched purpose",
                "ErrSidecarActivePurposeMismatch",
            )
    # The struct Go holds (sidecar.go:66-111); a v1 file has no
    # storage_envelope_cutover_index, which stays 0.
    return {
        "raft_applied_index": doc["raft_applied_index"],
        "storage_envelope_active": doc["storage_envelope_active"],
        "raft_envelope_cutover_index": doc["raft_envelope_cutover_index"],
        "active": doc["active"],
        "keys": {i: base64.b64decode(k["wrapped"]) for i, k in keys.items()},
    }


def wrapped_dek_map(sc: dict[str, Any]) -> dict[int, bytes]:
    """wrappedDEKMap (encryption_admin.go:567-581): every key of the
    sidecar, by its id parsed as uint32 (validated already)."""
    return {int(i): w for i, w in sc["keys"].items()}


def registry_store(registry: dict[str, Any] | None) -> dict[tuple[int, int], bytes] | None:
    """The WriterRegistryStore's rows (internal/encryption/applier.go:30-43)
    keyed by (dek_id, node_id16), values as stored (registry.go:124-130:
    full_node_id u64 ‖ first u16 ‖ last u16, big-endian)."""
    if registry is None:
        return None
    rows = {
        (r["dek_id"], r["full_node_id"] & 0xFFFF): struct.pack(">QHH", r["full_node_id"], r["first"], r["last"])
        for r in registry["rows"]
    }
    for raw in registry["raw"]:
        rows[(raw["dek_id"], raw["node_id16"])] = bytes.fromhex(raw["value_hex"])
    return rows


def writer_registry_for_caller(
    sc: dict[str, Any], store: dict[tuple[int, int], bytes] | None, caller: int
) -> dict[int, int]:
    """writerRegistryForCaller (encryption_admin.go:518-549)."""
    out: dict[int, int] = {}
    if store is None or caller == 0:  # 520-522
        return out
    node_id16 = caller & 0xFFFF  # NodeID16, internal/encryption/write_path_startup.go:124-126
    failures = []
    # 524: a map walk, in no fixed order: every key that fails could be
    # the one reported, so all are collected.
    for dek_id in sorted(wrapped_dek_map(sc)):
        raw = store.get((dek_id, node_id16))  # GetRegistryRow, 525-531
        if raw is None:  # 532-534
            continue
        if len(raw) != 12:  # DecodeRegistryValue, registry.go:138-148; 535-540
            failures.append(
                {
                    "branch": "row_malformed",
                    "dek_id": dek_id,
                    "node_id16": node_id16,
                    "message": f"encryption: decode writer registry for dek_id={dek_id} caller_full_node_id={caller}: "
                    f"got {len(raw)} bytes, want 12: encryption: writer registry value is malformed",
                }
            )
            continue
        full, _first, last = struct.unpack(">QHH", raw)
        if full != caller:  # 541-545; %#04x of a uint16 is 0x and 4 digits
            failures.append(
                {
                    "branch": "foreign_row",
                    "dek_id": dek_id,
                    "node_id16": node_id16,
                    "row_full_node_id": full,
                    "caller_full_node_id": caller,
                    "message": f"encryption: writer registry node-id collision for dek_id={dek_id} "
                    f"node_id16=0x{node_id16:04x} (row full_node_id={full}, caller_full_node_id={caller})",
                }
            )
            continue
        out[dek_id] = last  # uint32(row.LastSeenLocalEpoch), 546
    if failures:
        branches = {f["branch"] for f in failures}
        branch = branches.pop() if len(branches) == 1 else "mixed"
        raise GoError(
            "Internal",
            failures[0]["message"] if len(failures) == 1 else "(one of the candidates)",
            branch,
            candidates=failures,
        )
    return out


def applied_index(hook: int | None, sidecar_value: int) -> int:
    """appliedIndex (encryption_admin.go:551-556)."""
    return sidecar_value if hook is None else hook


def proto_json(fields: list[tuple[str, str, Any]]) -> dict[str, Any]:
    """The proto3 JSON mapping with proto names and unpopulated fields
    emitted: uint64 as a decimal string, bytes as standard base64, map
    keys as decimal strings (in the proto's field order)."""
    out: dict[str, Any] = {}
    for name, kind, value in fields:
        if kind == "uint64":
            out[name] = str(value)
        elif kind == "bytes_map":
            out[name] = {str(k): base64.b64encode(v).decode() for k, v in sorted(value.items())}
        elif kind == "uint32_map":
            out[name] = {str(k): v for k, v in sorted(value.items())}
        else:
            out[name] = value
    return out


def get_sidecar_state(case: dict[str, Any]) -> dict[str, Any]:
    """GetSidecarState (encryption_admin.go:422-461) on the leader."""
    # 423-425: the sidecar path is configured. 426: canProjectWriterRegistryForCaller
    # (463-474): false without a registry or with fullNodeID 0, else true on
    # the leader; the second fence (440) answers the same.
    store = registry_store(case["registry"])
    project = store is not None and case["full_node_id"] != 0
    sc = read_sidecar(case["sidecar"])  # 430-433
    projection = writer_registry_for_caller(sc, store, case["full_node_id"]) if project else {}  # 434, 445-450
    return proto_json(  # 451-459, in the proto's field order (proto/encryption_admin.proto:78-86)
        [
            ("wrapped_deks_by_id", "bytes_map", wrapped_dek_map(sc)),
            ("active_storage_id", "uint32", sc["active"]["storage"]),
            ("active_raft_id", "uint32", sc["active"]["raft"]),
            ("storage_envelope_active", "bool", sc["storage_envelope_active"]),
            ("raft_envelope_cutover_index", "uint64", sc["raft_envelope_cutover_index"]),
            ("latest_applied_index", "uint64", applied_index(case["latest_applied_index"], sc["raft_applied_index"])),
            ("writer_registry_for_caller", "uint32_map", projection),
        ]
    )


def resync_sidecar(case: dict[str, Any]) -> dict[str, Any]:
    """ResyncSidecar (encryption_admin.go:486-516) on the leader."""
    caller = case["caller_full_node_id"]  # 490
    if caller == 0:  # 491-494, before the sidecar is read
        raise GoError("InvalidArgument", "encryption: caller_full_node_id must be non-zero", "caller_zero")
    sc = read_sidecar(case["sidecar"])  # 498-501
    projection = writer_registry_for_caller(sc, registry_store(case["registry"]), caller)  # 505-508
    return proto_json(  # 509-515 (proto/encryption_admin.proto:155-169)
        [
            ("wrapped_deks_by_id", "bytes_map", wrapped_dek_map(sc)),
            ("active_storage_id", "uint32", sc["active"]["storage"]),
            ("active_raft_id", "uint32", sc["active"]["raft"]),
            (
                "leader_latest_applied_index",
                "uint64",
                applied_index(case["latest_applied_index"], sc["raft_applied_index"]),
            ),
            ("writer_registry_for_caller", "uint32_map", projection),
        ]
    )


def answer(rpc: Any, case: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"response": rpc(case)}
    except GoError as err:
        return {"error": err.doc}


def main() -> None:
    parser = argparse.ArgumentParser(description="Write Go's GetSidecarState / ResyncSidecar answers.")
    parser.add_argument("--output", type=Path, default=OUT, help=f"where to write (default {OUT})")
    target = parser.parse_args().output
    out = []
    for case in cases():
        out.append(
            {
                **case,
                "get_sidecar_state": answer(get_sidecar_state, case),
                "resync_sidecar": answer(resync_sidecar, case),
            }
        )
    doc = {
        "elastickv_commit": ELASTICKV_COMMIT,
        "generated_by": "scripts/go_vectors/status.py",
        "note": "Go's GetSidecarState and ResyncSidecar answers, re-derived from the Go source (no Go "
        "toolchain available); see the script's docstring for the format.",
        "cases": out,
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {len(out)} cases to {target}")


if __name__ == "__main__":
    main()
