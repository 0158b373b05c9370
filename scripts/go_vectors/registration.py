"""Go's start-up writer registration decision, re-derived for a fixed set of
inputs: writes ``tests/core/golden/go/registration.json``.

No Go toolchain is available here, so this script does not run elastickv:
it re-derives Go's output from the source, following the algorithm of
elastickv at d9a031d0 step by step (each step names its Go file:line
below). It is standalone on purpose and must not import
``encryption_applier``: it is the oracle the package is compared with
(``tests/core/test_registration.py``).

The decision, as Go makes it at start (main_encryption_registration.go,
abbreviated ``reg.go``):

1. setupDistributionAndRegistration (reg.go:126-161) first runs
   validateRaftRegistrationStartupEpoch (reg.go:185-211) and returns its
   error; then installProcessStartRegistrationGate (reg.go:377-391), whose
   error is also returned, so the Raft watcher (reg.go:144) is never
   installed after a storage refusal.
2. The Raft check: skipped without a raft envelope runtime, i.e. with
   encryption off (reg.go:186; the runtime is built only with a cipher,
   main_encryption_write_wiring.go:230-273). The sidecar is read
   (reg.go:348-360): no file, a zero ``raft_envelope_cutover_index`` or a
   zero ``active.raft`` is out of scope. Otherwise ``last_seen`` of the row
   at (active.raft, node_id16) is read, 0 without a row, whoever owns it
   (registryLastSeen, reg.go:525-538), and ``raft_epoch <= last_seen`` is
   ``ErrLocalEpochRollback`` (reg.go:205-209).
3. Past it, the Raft watcher's first tick (reg.go:240, 253-305) proposes
   (active.raft, full, raft_epoch): the gate is not yet marked
   (reg.go:314), the wrap is installed at start for a cut-over sidecar
   (main_raft_envelope_wiring.go:69-81, 177-186), no row of this node sits
   at exactly raft_epoch since raft_epoch > last_seen
   (registrationCommittedAtEpoch, reg.go:557-573), and ``raft_epoch >=
   last_seen`` holds (reg.go:362-369).
4. The storage check (buildProcessStartRegistrationGate, reg.go:411-507):
   skipped with encryption off (reg.go:423), when the storage envelope is
   not active (reg.go:426; the state cache is primed from the sidecar,
   main_encryption_write_wiring.go:345, applier.go:247-254, and is empty
   without one), or without an active storage key (reg.go:429-431).
   Otherwise with ``last_seen`` as in step 2 (reg.go:441): ``epoch ==
   last_seen`` is already registered (reg.go:456-470), ``epoch <
   last_seen`` a plain error (reg.go:471-474, wrapped at reg.go:387), and
   ``epoch > last_seen`` proposes (active.storage, full, epoch)
   (reg.go:477-501).
5. The proposed entry is ``0x03 ‖ EncodeRegistration`` (reg.go:577-584;
   fsmwire/wire.go:266-276: version 0x01, dek_id u32, full_node_id u64,
   local_epoch u16, big-endian). The storage goroutine starts
   (reg.go:498) before the Raft watcher (reg.go:144, 226).

Run from the repository root: ``python3 scripts/go_vectors/registration.py``.
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

ELASTICKV_COMMIT = "d9a031d0"
OUT = Path(__file__).resolve().parents[2] / "tests" / "core" / "golden" / "go" / "registration.json"

# derive_node_id("n1") (etcd/peers.go:46-57), and an id that shares its
# low 16 bits (the registry key's node_id16, write_path_startup.go:124-126).
ME = 0x08B37B07B558D4C0
FOREIGN = ME ^ (0x5A5A << 32)
ELSEWHERE = ME ^ 0x0001  # another node_id16: never looked at

# errors.go:295
ERR_LOCAL_EPOCH_ROLLBACK = (
    "encryption: sidecar local_epoch for the active storage DEK is at or below the local writer-registry's "
    "last_seen_local_epoch, which would replay the GCM nonce prefix under the same DEK; refusing to start "
    "(verify the sidecar was not restored from an old backup; run `encryption resync-sidecar` if appropriate, "
    "or rotate the affected DEK — see §9.1 + §5.2 of the 6D design doc)"
)


def go_hex(n: int) -> str:
    """Go's %#x of an unsigned integer."""
    return hex(n)


def sidecar_doc(
    *,
    storage: int = 1,
    raft: int = 2,
    envelope: bool = True,
    raft_cutover: int = 0,
    storage_epoch: int = 3,
    raft_epoch: int = 3,
) -> dict[str, Any]:
    """A version-2 keys.json (sidecar.go:36-44) with the given state."""
    keys: dict[str, Any] = {}
    for dek_id, purpose, epoch in ((storage, "storage", storage_epoch), (raft, "raft", raft_epoch)):
        if dek_id:
            keys[str(dek_id)] = {
                "purpose": purpose,
                "wrapped": base64.b64encode(bytes([dek_id & 0xFF]) * 60).decode(),
                "created": "2026-05-16T17:53:00Z",
                "local_epoch": epoch,
            }
    return {
        "version": 2,
        "raft_applied_index": 40,
        "storage_envelope_active": envelope,
        "storage_envelope_cutover_index": 30 if envelope else 0,
        "raft_envelope_cutover_index": raft_cutover,
        "active": {"storage": storage, "raft": raft},
        "keys": keys,
    }


def row(dek_id: int, full: int, first: int, last: int) -> dict[str, int]:
    return {"dek_id": dek_id, "full_node_id": full, "first_seen_local_epoch": first, "last_seen_local_epoch": last}


def last_seen(rows: list[dict[str, int]], dek_id: int, full: int) -> int:
    """registryLastSeen (reg.go:525-538): the row at (dek_id, node_id16),
    its owner not compared; 0 without a row."""
    for r in rows:
        if r["dek_id"] == dek_id and r["full_node_id"] & 0xFFFF == full & 0xFFFF:
            return r["last_seen_local_epoch"]
    return 0


def entry(purpose: str, dek_id: int, full: int, epoch: int) -> dict[str, Any]:
    """registrationEntry (reg.go:577-584)."""
    raw = bytes([0x03]) + struct.pack(">BIQH", 0x01, dek_id, full, epoch)
    return {"purpose": purpose, "dek_id": dek_id, "full_node_id": full, "local_epoch": epoch, "entry": raw.hex()}


def go_decision(case: dict[str, Any]) -> dict[str, Any]:
    enabled, sc, rows = case["encryption_enabled"], case["sidecar"], case["rows"]
    full, epoch, raft_epoch = case["full_node_id"], case["local_epoch"], case["raft_local_epoch"]
    # Each skip is labelled by the branch that returns (the package's
    # skip_reason names the same branches).
    out: dict[str, Any] = {"raft": None, "storage": None, "skips": {}, "proposes": [], "error": None}
    raft_entry = None

    # Step 2: validateRaftRegistrationStartupEpoch (reg.go:185-211).
    if not enabled:
        out["raft"], out["skips"]["raft"] = "skip", "encryption_disabled"  # reg.go:186, no runtime
    elif sc is None:
        out["raft"], out["skips"]["raft"] = "skip", "no_sidecar"  # reg.go:351-352
    elif sc["raft_envelope_cutover_index"] == 0:
        out["raft"], out["skips"]["raft"] = "skip", "raft_not_cut_over"  # reg.go:356
    elif sc["active"]["raft"] == 0:
        out["raft"], out["skips"]["raft"] = "skip", "no_active_raft_key"  # reg.go:356
    else:
        dek = sc["active"]["raft"]
        seen = last_seen(rows, dek, full)  # reg.go:201
        if raft_epoch <= seen:  # reg.go:205
            out["raft"] = "refuse"
            out["storage"] = "not-reached"  # reg.go:137-139 returns first
            out["error"] = {
                "check": "raft",
                "sentinel": "ErrLocalEpochRollback",
                "dek_id": dek,
                "full_node_id": full,
                "local_epoch": raft_epoch,
                "last_seen": seen,
                # reg.go:206-208, errors.Wrapf: "<message>: <cause>"
                "go_message": "encryption: raft writer registration: local_epoch "
                f"{raft_epoch} is not ahead of registry last_seen {seen} for dek_id {dek} node {go_hex(full)}: "
                + ERR_LOCAL_EPOCH_ROLLBACK,
            }
        else:
            out["raft"] = "register"  # step 3, reg.go:293
            raft_entry = entry("raft", dek, full, raft_epoch)

    # Step 4: buildProcessStartRegistrationGate (reg.go:411-507).
    if out["error"] is None:
        if not enabled:
            out["storage"], out["skips"]["storage"] = "skip", "encryption_disabled"  # reg.go:423
        elif sc is None:
            # reg.go:426: the cache was never primed, so the envelope reads inactive
            out["storage"], out["skips"]["storage"] = "skip", "no_sidecar"
        elif not sc["storage_envelope_active"]:
            out["storage"], out["skips"]["storage"] = "skip", "storage_envelope_inactive"  # reg.go:426
        elif sc["active"]["storage"] == 0:
            out["storage"], out["skips"]["storage"] = "skip", "not_bootstrapped"  # reg.go:429-431
        else:
            dek = sc["active"]["storage"]
            seen = last_seen(rows, dek, full)  # reg.go:441
            if epoch == seen:  # reg.go:456
                out["storage"] = "already-registered"
            elif epoch < seen:  # reg.go:471
                out["storage"] = "refuse"
                out["error"] = {
                    "check": "storage",
                    "sentinel": None,  # errors.Errorf: no sentinel in the chain
                    "dek_id": dek,
                    "full_node_id": full,
                    "local_epoch": epoch,
                    "last_seen": seen,
                    # reg.go:472-474, wrapped at reg.go:387
                    "go_message": "process-start writer registration intent: encryption: writer registration: "
                    f"local_epoch {epoch} is behind registry last_seen {seen} for dek_id {dek} node {go_hex(full)} "
                    "(stale sidecar past the §9.1 rollback guard)",
                }
            else:
                out["storage"] = "register"  # reg.go:477-501
                out["proposes"].append(entry("storage", dek, full, epoch))

    # A storage refusal returns before the Raft watcher is installed
    # (reg.go:140-144); otherwise it proposes after the storage goroutine.
    if out["error"] is None and raft_entry is not None:
        out["proposes"].append(raft_entry)
    if out["error"] is not None and out["error"]["check"] == "storage" and out["raft"] == "register":
        out["raft"] = "not-reached"  # its check passed; its watcher never starts
    return out


def case(
    name: str,
    *,
    sidecar: dict[str, Any] | None,
    rows: list[dict[str, int]] | None = None,
    epoch: int = 4,
    raft_epoch: int = 0,
    enabled: bool = True,
    full: int = ME,
) -> dict[str, Any]:
    return {
        "name": name,
        "encryption_enabled": enabled,
        "sidecar": sidecar,
        "rows": rows or [],
        "full_node_id": full,
        "local_epoch": epoch,
        "raft_local_epoch": raft_epoch,
    }


CUT = 20  # a Raft cutover index

CASES = [
    # Out of scope.
    case("encryption_off", sidecar=sidecar_doc(raft_cutover=CUT), rows=[row(1, ME, 0, 9)], enabled=False, raft_epoch=1),
    case("no_sidecar", sidecar=None, epoch=0),
    case("phase0_storage_envelope_inactive", sidecar=sidecar_doc(envelope=False), epoch=4),
    case("not_bootstrapped", sidecar=sidecar_doc(storage=0, raft=0), epoch=0),
    # The storage key: > register, == already, < refuse.
    case("storage_first_registration_no_row", sidecar=sidecar_doc(), epoch=1),
    case("storage_advance", sidecar=sidecar_doc(), rows=[row(1, ME, 0, 3)], epoch=4),
    case("storage_already_registered", sidecar=sidecar_doc(), rows=[row(1, ME, 0, 4)], epoch=4),
    case("storage_behind_refused", sidecar=sidecar_doc(), rows=[row(1, ME, 1, 5)], epoch=4),
    case("storage_epoch0_no_row_counts_as_registered", sidecar=sidecar_doc(), epoch=0),
    case("storage_other_rows_do_not_count", sidecar=sidecar_doc(), rows=[row(1, ELSEWHERE, 0, 9), row(7, ME, 0, 9)]),
    # A foreign row under this node_id16: only its last_seen is compared.
    case("storage_foreign_row_below", sidecar=sidecar_doc(), rows=[row(1, FOREIGN, 0, 2)], epoch=4),
    case("storage_foreign_row_equal", sidecar=sidecar_doc(), rows=[row(1, FOREIGN, 0, 4)], epoch=4),
    case("storage_foreign_row_above", sidecar=sidecar_doc(), rows=[row(1, FOREIGN, 0, 9)], epoch=4),
    # The Raft key, once the Raft layer is cut over: strictly above, first.
    case("raft_and_storage_register", sidecar=sidecar_doc(raft_cutover=CUT), rows=[row(1, ME, 0, 3)], raft_epoch=1),
    case(
        "raft_advance_storage_already",
        sidecar=sidecar_doc(raft_cutover=CUT),
        rows=[row(1, ME, 0, 4), row(2, ME, 0, 5)],
        epoch=4,
        raft_epoch=6,
    ),
    case(
        "raft_equal_refused_storage_not_reached",
        sidecar=sidecar_doc(raft_cutover=CUT),
        rows=[row(1, ME, 0, 3), row(2, ME, 0, 6)],
        epoch=4,
        raft_epoch=6,
    ),
    case("raft_behind_refused", sidecar=sidecar_doc(raft_cutover=CUT), rows=[row(2, ME, 0, 7)], raft_epoch=6),
    case("raft_epoch0_without_row_refused", sidecar=sidecar_doc(raft_cutover=CUT), raft_epoch=0),
    case("raft_foreign_row_below", sidecar=sidecar_doc(raft_cutover=CUT), rows=[row(2, FOREIGN, 0, 2)], raft_epoch=5),
    case(
        "raft_foreign_row_equal_refused",
        sidecar=sidecar_doc(raft_cutover=CUT),
        rows=[row(2, FOREIGN, 0, 5)],
        raft_epoch=5,
    ),
    case("raft_cut_over_storage_phase0", sidecar=sidecar_doc(envelope=False, raft_cutover=CUT), epoch=2, raft_epoch=3),
    case(
        "storage_refused_raft_never_proposed",
        sidecar=sidecar_doc(raft_cutover=CUT),
        rows=[row(1, ME, 0, 8)],
        epoch=4,
        raft_epoch=1,
    ),
    case("raft_cut_over_without_raft_key", sidecar=sidecar_doc(raft=0, raft_cutover=CUT), epoch=4, raft_epoch=1),
    # Extremes of every field.
    case(
        "extreme_ids_and_epochs",
        sidecar=sidecar_doc(storage=0xFFFF_FFFF, raft=0xFFFF_FFFE, raft_cutover=0xFFFF_FFFF_FFFF_FFFF),
        rows=[row(0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF, 0, 0xFFFE)],
        full=0xFFFF_FFFF_FFFF_FFFF,
        epoch=0xFFFF,
        raft_epoch=0xFFFF,
    ),
]


def main() -> None:
    cases = []
    for c in CASES:
        cases.append({**c, "go": go_decision(c)})
    doc = {
        "elastickv_commit": ELASTICKV_COMMIT,
        "generated_by": "scripts/go_vectors/registration.py",
        "what": "the start-up writer registration decision, main_encryption_registration.go:185-375, 411-510",
        "cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
