"""`resync_sidecar` under the power-loss and fault explorer, like every
other writer of keys.json: a registry applied through a keyed stream whose
keys.json was put back to the bootstrap's is resynced under the fsfault
shim, cleanly and with each of its mutating calls failed in turn; every
crash state of every trace, under the three file-system models, must
open, hold either the old keys.json or the resynced one (with the old kept
beside it), leave the registry untouched, and converge when the resync is
run again."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from test_power_loss import BUDGET, SEED, deks_of, keyed_stream, record  # this folder, on pytest's path

import encryption_applier as ea

from explorer import IGNORED, MODELS, Run, crash_states, materialise
from fsfault import traced
from helpers import NODE, WrapOracle

pytestmark = pytest.mark.slow

# The host, as the resync guide tells it to behave: run the resync; on a
# StorageError run it again (reopening when the applier is closed).
HOST = """
import json, sys, encryption_applier as ea
cfg = json.loads(sys.argv[1])
entries = [bytes.fromhex(e) for e in cfg["entries"]]
kek = ea.FileKek(cfg["kek"])
def opened():
    for attempt in range(4):
        try:
            return ea.Applier(cfg["dir"], kek=kek)
        except (ea.RegistryOpenError, ea.StorageError):  # a fault at open: try again
            mark("fault-open", 0)
            if attempt == 3:
                raise
applier = opened()
for attempt in range(8):
    try:
        report = applier.resync_sidecar(entries, log_first_index=1, full_node_id=cfg["full"])
        mark("resynced", int(report.written))
        break
    except ea.StorageError as e:
        mark("fault", e.code or 0)
        if applier.closed:
            applier = opened()
else:
    raise SystemExit("the resync never succeeded")
applier.close()
print("done")
"""

CHECKER = """
import json, sys
job = json.load(open(sys.argv[1]))
import encryption_applier as ea
kek = ea.FileKek(job["kek"])
entries = [bytes.fromhex(e) for e in job["entries"]]
def seen(s):
    if s is None:
        return None
    return {
        "active": [s.active_storage, s.active_raft],
        "keys": {str(k): [v.purpose.name.lower(), v.wrapped.hex(), v.local_epoch] for k, v in s.keys.items()},
        "flags": [s.storage_envelope_active, s.storage_envelope_cutover_index, s.raft_envelope_cutover_index],
        "raft_applied_index": s.raft_applied_index,
    }
for state in job["states"]:
    out = {"name": state["name"]}
    try:
        with ea.Applier(state["dir"], kek=kek) as a:
            out["applied"] = a.applied_index
            out["rows"] = [[r.dek_id, r.full_node_id, r.first_seen_local_epoch, r.last_seen_local_epoch]
                           for r in a.registry.rows()]
            out["sidecar"] = seen(a.sidecar)
            backup = state["dir"] + "/keys.json.before-resync-1"
            try:
                out["backup"] = open(backup, "rb").read().hex()
            except FileNotFoundError:
                out["backup"] = None
            a.resync_sidecar(entries, log_first_index=1, full_node_id=job["full"])
            out["final"] = seen(a.sidecar)
        with ea.Registry(state["dir"]) as registry:
            refusals = ea.diagnose_startup(encryption_enabled=True, kek=kek, sidecar_path=state["dir"] + "/keys.json",
                                           registry=registry, full_node_id=job["full"], log=entries, log_first_index=1)
        out["refusals"] = [type(r).__name__ for r in refusals]
    except ea.EncryptionError as e:
        out["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out), flush=True)
"""


def lagging_registry(base: Path, cluster: WrapOracle, payloads: list[Any]) -> tuple[list[bytes], bytes]:
    """base/registry applied through the keyed stream, its keys.json put
    back to the bootstrap's and every file made durable."""
    directory = base / "registry"
    entries = [p.to_entry() for p in payloads]
    with ea.Applier(directory, kek=ea.FileKek(cluster.kek_path)) as applier:
        for index, entry in enumerate(entries, start=1):
            applier.apply(entry, index=index)
            if index == 1:
                old = (directory / "keys.json").read_bytes()
    (directory / "keys.json").write_bytes(old)
    for path in (directory / "keys.json", directory / "data.mdb", directory, base):
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    return entries, old


def traced_resync(base: Path, cluster: WrapOracle, entries: list[bytes], fail: str | None = None) -> Run:
    directory = base / "registry"
    before = {str(p): p.read_bytes() for p in directory.glob("*") if p.is_file() and p.name not in IGNORED}
    cfg = {"dir": str(directory), "entries": [e.hex() for e in entries], "kek": str(cluster.kek_path), "full": NODE}
    trace = traced(HOST, json.dumps(cfg), under=base.resolve(), fail=fail)
    assert trace.proc.returncode == 0 and trace.proc.stdout.strip().endswith("done"), trace.proc.stderr[-3000:]
    return Run(trace, before, {str(base.resolve()), str(directory.resolve())})


def expected(cluster: WrapOracle, payloads: list[Any]) -> dict[str, Any]:
    """keys.json after the resync, from an independent model: the keyed
    stream's final keys and flags, the gap's end as its index, and each
    key's local epoch raised to NODE's own last_seen."""
    from encryption_applier.testing.model import KeyedModel

    model = KeyedModel(deks_of(cluster, payloads))
    for index, p in enumerate(payloads, start=1):
        if isinstance(p, ea.Registration):
            model.registry.apply_registration(p.dek_id, p.full_node_id, p.local_epoch)
        elif isinstance(p, ea.Bootstrap):
            rows = [(r.dek_id, r.full_node_id, r.local_epoch) for r in p.batch_registry]
            model.bootstrap(p.storage_dek_id, p.wrapped_storage, p.raft_dek_id, p.wrapped_raft, rows)
        else:
            prop = p.proposer_registration
            purpose = "storage" if p.purpose == ea.Purpose.STORAGE else "raft"
            args = (p.dek_id, purpose, p.wrapped, (prop.dek_id, prop.full_node_id, prop.local_epoch))
            if p.sub_tag == ea.ROTATE_DEK:
                model.rotation(*args)
            else:
                layer = "storage" if p.sub_tag == ea.ENABLE_STORAGE_ENVELOPE else "raft"
                model.cutover(layer, *args, index)
    own = {row[0]: row[4] for row in model.registry.sorted_rows() if row[2] == NODE}
    return {
        "active": [model.active["storage"], model.active["raft"]],
        "keys": {
            str(k): [purpose, wrapped.hex(), own.get(k, 0)] for k, (purpose, wrapped) in sorted(model.keys.items())
        },
        "flags": [model.storage_envelope_active, model.storage_cutover_index, model.raft_cutover_index],
        "raft_applied_index": len(payloads),
    }


def check(
    states: list[Any], entries: list[bytes], cluster: WrapOracle, old: bytes, new: dict[str, Any], base: Path
) -> tuple[list[str], int]:
    """The problems of `states`, and how many of them opened."""
    scratch = Path(tempfile.mkdtemp(prefix="ea-resync-explore-"))
    try:
        jobs = materialise(states, base, scratch)
        job = scratch / "job.json"
        job.write_text(
            json.dumps(
                {"kek": str(cluster.kek_path), "entries": [e.hex() for e in entries], "full": NODE, "states": jobs}
            )
        )
        proc = subprocess.run([sys.executable, "-c", CHECKER, str(job)], capture_output=True, text=True, timeout=600)
        docs = [json.loads(line) for line in proc.stdout.splitlines()]
        problems = [] if proc.returncode == 0 and len(docs) == len(states) else [f"checker died: {proc.stderr[-2000:]}"]
        with ea.Applier(base / "registry", kek=ea.FileKek(cluster.kek_path)) as a:
            rows = [
                [r.dek_id, r.full_node_id, r.first_seen_local_epoch, r.last_seen_local_epoch] for r in a.registry.rows()
            ]
            applied = a.applied_index
        old_doc = json.loads(old)
        old_seen = {
            "active": [old_doc["active"]["storage"], old_doc["active"]["raft"]],
            "raft_applied_index": old_doc["raft_applied_index"],
        }
        for doc in docs:
            name = doc["name"]
            if "error" in doc:
                problems.append(f"{name}: {doc['error']}")
                continue
            if doc["rows"] != rows or doc["applied"] != applied:
                problems.append(f"{name}: the registry changed")
            s = doc["sidecar"]
            is_old = s is not None and {k: s[k] for k in old_seen} == old_seen and len(s["keys"]) == 2
            if not (is_old or s == new):
                problems.append(f"{name}: keys.json is neither the old one nor the resynced one: {s}")
            if s == new and doc["backup"] != old.hex():
                problems.append(f"{name}: keys.json is resynced but the old one is not kept")
            if doc["final"] != new:
                problems.append(f"{name}: a second resync did not converge: {doc['final']}")
            if doc["refusals"]:
                problems.append(f"{name}: start-up refuses after the resync: {doc['refusals']}")
        return problems, sum("error" not in doc for doc in docs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_resync_under_power_loss_and_faults(tmp_path: Path, cluster: WrapOracle) -> None:
    base = tmp_path / "clean"
    payloads = keyed_stream(cluster)
    entries, old = lagging_registry(base, cluster, payloads)
    pristine = tmp_path / "pristine"
    shutil.copytree(base, pristine)
    new = expected(cluster, payloads)
    clean = traced_resync(base, cluster, entries)
    assert clean.trace.marks("resynced") == [["1"]]
    mutating = [c for c in clean.trace.calls if c.kind not in ("mark", "open")]
    assert any(c.kind == "rename" for c in mutating) and any(c.kind == "sync" for c in mutating)
    runs = [("", clean, base)]
    for n in range(1, len(mutating) + 1):
        where = tmp_path / f"f{n}"
        shutil.copytree(pristine, where)
        runs.append((f"[any:{n}] ", traced_resync(where, cluster, entries, fail=f"any:{n}:EIO"), where))
    problems: list[str] = []
    checked = dict.fromkeys(MODELS, 0)
    for label, r, where in runs:
        for model in MODELS:
            rng = random.Random(f"{SEED}:resync:{label}:{model}")
            states = crash_states(r, model, rng, BUDGET, label)
            found, opened = check(states, entries, cluster, old, new, where)
            checked[model] += len(states)
            problems += found
            # Every state must open: one that did not is a problem too.
            record(
                {
                    "model": model,
                    "checked": len(states),
                    "opened": opened,
                    "refused": 0,
                    "uncommitted": 0,
                    "lost": 0,
                    "violations": len(found),
                }
            )
    assert min(checked.values()) >= BUDGET
    assert not problems, "\n".join(problems[:20])
