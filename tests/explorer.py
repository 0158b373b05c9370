"""The power-loss and fault explorer: crash states built from recorded
file-system calls, checked against an independent model.

A workload (a stream of entries and how the host applies them) runs in a
child process under the fsfault shim, which records every mutating call
under the registry's base directory and can fail any one of them. The
workload marks what it had acknowledged (`ack`) as it goes. From such a
trace, `crash_states` rebuilds what the disk may hold if power is lost
after any call, under three models of a file system:

- ``strict``: POSIX as written. A file's data is durable once it is
  fsynced (or written through ``O_DSYNC``); a name operation (create,
  rename, unlink, mkdir) only once its directory is fsynced.
- ``ext4``: ext4 with ``data=ordered``: any successful fsync also commits
  every earlier name operation (the journal is one).
- ``fsyncgate``: strict, and a failed fsync loses the writes (or, for a
  directory, the name operations) pending on it for good: the page cache
  still shows them, the disk never gets them.

At each crash point, writes not yet durable are kept, dropped or torn (at
512 or 4096 bytes) and pending name operations kept or undone, in a few
systematic variants (everything lost, everything kept, data pages kept but
meta pages lost, names undone) and random ones.

`check_states` opens every state in a child process, the way a restarted
host does, and compares it with the model: it opens or is refused with an
`EncryptionError` (never a signal or a hang); refused only when nothing
acknowledged could be recovered; rows equal the model at its applied
index; the applied index is at least what was acknowledged durable;
registry and keys.json agree; a replay from the applied index converges
to the model's final state.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import encryption_applier as ea
from encryption_applier.testing.model import Halt, KeyedModel

from fsfault import Call, Traced, traced

MODELS = ("strict", "ext4", "fsyncgate")
PAGE = 4096
IGNORED = ("lock.mdb", "writer.lock")  # LMDB and the package rebuild them at open


# ---------------------------------------------------------------- workloads


@dataclass
class Workload:
    """A stream of entries (entry i has Raft index i + 1) and how the host
    applies them: ``strict`` (one by one, sync=True), ``relaxed`` (one by
    one, sync=False), ``group`` (group commit of ``group`` entries),
    ``pipelined`` (pipelined write-behind, at most ``group`` per group),
    ``many`` (apply_many in batches of ``batch``)."""

    name: str
    # The stream as the test built it: the model reads these objects, the
    # applier their encoded bytes (never the package's decoder).
    payloads: list[Any]
    mode: str = "strict"
    kek: Path | None = None
    group: int = 8
    batch: int = 10
    map_size: int | None = None
    # The host opens a Registry view at this index (and closes it when a
    # commit fails): a map that cannot grow.
    view_at: int | None = None
    # The registry directory does not exist before the workload (creation).
    create: bool = False
    # Filled by `models`: the model after each prefix, 0..len(entries).
    prefix_models: list[dict[str, Any]] = field(default_factory=list)

    @property
    def entries(self) -> list[bytes]:
        return [p.to_entry() for p in self.payloads]

    def config(self, directory: Path) -> dict[str, Any]:
        return {
            "dir": str(directory),
            "entries": [e.hex() for e in self.entries],
            "mode": self.mode,
            "kek": str(self.kek) if self.kek else None,
            "group": self.group,
            "batch": self.batch,
            "map_size": self.map_size,
            "view_at": self.view_at,
        }


def project(model: KeyedModel, raft_applied: int) -> dict[str, Any]:
    """What the registry and keys.json must hold at one prefix."""
    return {
        "rows": [list(r) for r in model.registry.sorted_rows()],
        "sidecar": None
        if not model.bootstrapped()
        else {
            "active": [model.active["storage"], model.active["raft"]],
            "keys": sorted([k, p] for k, (p, _) in model.keys.items()),
            "storage_envelope_active": model.storage_envelope_active,
            "storage_envelope_cutover_index": model.storage_cutover_index,
            "raft_envelope_cutover_index": model.raft_cutover_index,
            "raft_applied_index": raft_applied,
        },
    }


def models(workload: Workload, deks: dict[bytes, bytes]) -> None:
    """The independent model after every prefix of the workload's stream."""
    model = KeyedModel(deks)
    raft_applied = 0
    out = [project(model, 0)]
    for index, payload in enumerate(workload.payloads, start=1):
        if isinstance(payload, ea.Registration):
            result: Any = model.registry.apply_registration(payload.dek_id, payload.full_node_id, payload.local_epoch)
        elif isinstance(payload, ea.Bootstrap):
            rows = [(r.dek_id, r.full_node_id, r.local_epoch) for r in payload.batch_registry]
            result = model.bootstrap(
                payload.storage_dek_id, payload.wrapped_storage, payload.raft_dek_id, payload.wrapped_raft, rows
            )
            raft_applied = index
        else:
            assert isinstance(payload, ea.Rotation)
            proposer = payload.proposer_registration
            prop = (proposer.dek_id, proposer.full_node_id, proposer.local_epoch)
            purpose = "storage" if payload.purpose == ea.Purpose.STORAGE else "raft"
            if payload.sub_tag == ea.ROTATE_DEK:
                result = model.rotation(payload.dek_id, purpose, payload.wrapped, prop)
            else:
                layer = "storage" if payload.sub_tag == ea.ENABLE_STORAGE_ENVELOPE else "raft"
                result = model.cutover(layer, payload.dek_id, purpose, payload.wrapped, prop, index)
            raft_applied = index
        assert not isinstance(result, Halt), (workload.name, index, result)
        out.append(project(model, raft_applied))
    workload.prefix_models = out


# The host, as the durability guide tells it to behave: apply in log
# order from `applied_index + 1`; after a StorageError, replay from its
# `replay_from` (the log's first entry when None), closing any view that
# keeps the map from growing; when LMDB has marked the environment
# unusable (MDB_PANIC), close the Applier and open it again.
HOST = """
import json, sys, encryption_applier as ea
cfg = json.loads(sys.argv[1])
entries = [bytes.fromhex(e) for e in cfg["entries"]]
MDB_PANIC = -30795
def opened():
    for attempt in range(4):
        try:
            return open_once()
        except ea.RegistryOpenError as e:   # a fault at open: a restarted host tries again
            mark("fault-open", 0, 0)
            if attempt == 3:
                raise
def open_once():
    kw = {}
    if cfg["kek"]:
        kw["kek"] = ea.FileKek(cfg["kek"])
    if cfg["mode"] == "relaxed":
        kw["sync"] = False
    if cfg["mode"] == "group":
        kw.update(group_commit=cfg["group"], group_commit_ms=600000)
    if cfg["mode"] == "pipelined":
        kw.update(pipelined=True, group_commit=cfg["group"])
    if cfg["map_size"]:
        kw["map_size"] = cfg["map_size"]
    return ea.Applier(cfg["dir"], **kw)
def durable(a):
    return a.durable_index or 0
def ack(a):
    if cfg["mode"] == "pipelined" and (a.applied_index or 0) % 5 == 0:
        # What a Raft host compacts its log by: wait_durable's True must
        # survive any power loss after it.
        if a.wait_durable(a.applied_index, timeout=60):
            mark("ack", a.applied_index)
    if cfg["mode"] != "relaxed":
        mark("ack", durable(a))
    else:
        mark("returned", a.applied_index or 0)
applier = opened()
view = None
nxt = (applier.applied_index or 0) + 1
faults = 0
while True:
    try:
        while nxt <= len(entries):
            if cfg["view_at"] and nxt == cfg["view_at"] and view is None and faults == 0:
                view = ea.Registry(cfg["dir"])
            if cfg["mode"] == "many":
                stop = min(len(entries), nxt + cfg["batch"] - 1)
                applier.apply_many(entries[nxt - 1 : stop], first_index=nxt)
                nxt = stop + 1
            else:
                applier.apply(entries[nxt - 1], index=nxt)
                nxt += 1
            ack(applier)
        applier.close()
        mark("ack", len(entries) if cfg["mode"] != "relaxed" else 0)
        break
    except ea.StorageError as e:
        faults += 1
        if faults > 8:
            raise
        mark("fault", e.replay_from or 0, e.code or 0)
        if view is not None:
            view.close()
            view = None
        if e.code == MDB_PANIC or applier.closed:
            try:
                applier.close()
            except ea.EncryptionError:
                pass
            applier = opened()
            nxt = (applier.applied_index or 0) + 1
        else:
            nxt = e.replay_from or 1
print("done")
"""


@dataclass
class Run:
    """One traced run, with what was on disk (and durable) before it."""

    trace: Traced
    before_files: dict[str, bytes]
    before_dirs: set[str]


def run(workload: Workload, base: Path, fail: str | None = None, match: str | None = None) -> Run:
    """Runs the workload in `base/registry` (created beforehand, and made
    durable, unless the workload creates it) under the shim."""
    base = base.resolve()
    directory = base / "registry"
    if not workload.create and not directory.exists():
        ea.Applier(directory).close()
        for name in ("data.mdb",):
            fd = os.open(directory / name, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
    before_files = (
        {str(p): p.read_bytes() for p in directory.glob("*") if p.is_file() and p.name not in IGNORED}
        if directory.exists()
        else {}
    )
    before_dirs = {str(base)} | ({str(directory)} if directory.exists() else set())
    trace = traced(HOST, json.dumps(workload.config(directory)), under=base, fail=fail, match=match)
    return Run(trace, before_files, before_dirs)


# ---------------------------------------------------------------- the file-system model


@dataclass
class Inode:
    durable: bytearray
    visible: bytearray
    pending: list[tuple[int, bytes]] = field(default_factory=list)  # (offset, data) or (-1 - size, b"") truncate


@dataclass
class NameOp:
    directory: str
    kind: str  # "link" (create), "rename", "unlink", "mkdir"
    path: str
    target: str = ""
    inode: int = -1


def _apply(content: bytearray, offset: int, data: bytes) -> None:
    if offset < 0:  # a truncate to -1 - offset
        size = -1 - offset
        del content[size:]
        content.extend(bytes(max(0, size - len(content))))
        return
    if len(content) < offset:
        content.extend(bytes(offset - len(content)))
    content[offset : offset + len(data)] = data


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0]


class Disk:
    """What the process saw and what the disk holds, call by call."""

    def __init__(self, model: str, files: dict[str, bytes], dirs: set[str]) -> None:
        self.model = model
        self.inodes: list[Inode] = []
        self.names: dict[str, int] = {}  # visible
        self.durable_names: dict[str, int] = {}
        self.dirs = set(dirs)
        self.durable_dirs = set(dirs)
        self.pending_names: list[NameOp] = []
        for path, data in files.items():
            self.names[path] = self.durable_names[path] = self._inode(bytearray(data))

    def _inode(self, data: bytearray) -> int:
        self.inodes.append(Inode(bytearray(data), bytearray(data)))
        return len(self.inodes) - 1

    def _commit_names(self, directory: str | None) -> None:
        keep = []
        for op in self.pending_names:
            if directory is None or op.directory == directory:
                self._apply_name(op, self.durable_names, self.durable_dirs)
            else:
                keep.append(op)
        self.pending_names = keep

    @staticmethod
    def _apply_name(op: NameOp, names: dict[str, int], dirs: set[str]) -> None:
        if op.kind == "link":
            names[op.path] = op.inode
        elif op.kind == "unlink":
            names.pop(op.path, None)
        elif op.kind == "rename":
            inode = names.pop(op.path, op.inode)
            names[op.target] = inode if inode >= 0 else op.inode
        elif op.kind == "mkdir":
            dirs.add(op.path)

    def step(self, call: Call) -> None:
        if call.kind == "mark" or call.failed and call.kind != "sync":
            return
        name = call.path.rsplit("/", 1)[-1]
        if call.kind == "create":
            self.names[call.path] = self._inode(bytearray())
            self.pending_names.append(NameOp(_parent(call.path), "link", call.path, inode=self.names[call.path]))
        elif call.kind == "mkdir":
            self.dirs.add(call.path)
            self.pending_names.append(NameOp(_parent(call.path), "mkdir", call.path))
        elif call.kind == "unlink":
            self.names.pop(call.path, None)
            self.pending_names.append(NameOp(_parent(call.path), "unlink", call.path))
        elif call.kind == "rename":
            inode = self.names.pop(call.path)
            self.names[call.target] = inode
            self.pending_names.append(NameOp(_parent(call.target), "rename", call.path, call.target, inode))
        elif call.kind in ("write", "truncate"):
            if name in IGNORED or call.path not in self.names:
                return
            node = self.inodes[self.names[call.path]]
            offset, data = (call.offset, call.data) if call.kind == "write" else (-1 - int(call.fields[0]), b"")
            _apply(node.visible, offset, data)
            if call.kind == "write" and call.dsync:
                _apply(node.durable, offset, data)
            else:
                node.pending.append((offset, data))
        elif call.kind == "sync":
            is_dir = call.is_dir
            if call.failed:
                if self.model == "fsyncgate":
                    if is_dir:
                        self.pending_names = [op for op in self.pending_names if op.directory != call.path]
                    elif call.path in self.names:
                        self.inodes[self.names[call.path]].pending.clear()
                return
            if is_dir:
                self._commit_names(None if self.model == "ext4" else call.path)
            elif call.path in self.names:
                node = self.inodes[self.names[call.path]]
                for offset, data in node.pending:
                    _apply(node.durable, offset, data)
                node.pending.clear()
                if self.model == "ext4":
                    self._commit_names(None)

    def state(self, rng: random.Random, variant: str) -> tuple[dict[str, bytes], set[str]]:
        """One disk the power loss may leave now: names and contents."""
        names = dict(self.durable_names)
        dirs = set(self.durable_dirs)
        undo = variant == "names-undone"
        for op in self.pending_names:
            keep = {"none": False, "names-undone": False, "random": rng.random() < 0.5}.get(variant, True)
            if keep and not undo:
                self._apply_name(op, names, dirs)
        files = {}
        for path, inode in names.items():
            # A directory the trace knows of must be on the disk for its
            # files to be; those above the workload's base always are.
            if path.rsplit("/", 1)[-1] in IGNORED or not all(d in dirs for d in _ancestors(path) if d in self.dirs):
                continue
            node = self.inodes[inode]
            content = bytearray(node.durable)
            pending = node.pending
            for i, (offset, data) in enumerate(pending):
                last = i == len(pending) - 1
                meta = 0 <= offset < 2 * PAGE and path.endswith("data.mdb")
                if variant == "none":
                    continue
                if variant == "data-not-meta" and meta:
                    continue
                if variant == "random" and rng.random() < 0.5:
                    continue
                if variant in ("torn", "random") and last and len(data) > 512 and rng.random() < 0.7:
                    unit = rng.choice((512, PAGE))
                    cut = rng.randrange(0, len(data), unit) if len(data) > unit else 0
                    data = data[:cut]
                _apply(content, offset, data)
            files[path] = bytes(content)
        return files, dirs


def _ancestors(path: str) -> Iterator[str]:
    parts = path.split("/")
    for i in range(2, len(parts)):
        yield "/".join(parts[:i])


VARIANTS = ("none", "all", "data-not-meta", "names-undone", "torn", "random")
# After a failed call: how many of the calls that follow are always
# examined, and how.
FOCUS = 12
FOCUS_VARIANTS = ("data-not-meta", "names-undone", "random")


@dataclass
class State:
    name: str
    model: str
    point: int
    variant: str
    acked: int  # the durable index acknowledged before the crash
    returned: int  # the highest index whose apply returned (relaxed mode)
    files: dict[str, bytes]
    dirs: set[str]


def crash_states(run: Run, model: str, rng: random.Random, budget: int, label: str = "") -> list[State]:
    """Up to `budget` crash states of `model` from one run's trace."""
    calls = run.trace.calls
    disk = Disk(model, run.before_files, run.before_dirs)
    points: list[tuple[int, int, int]] = []
    snapshots: list[Disk] = []
    acked = returned = 0
    mutating = [i for i, c in enumerate(calls) if c.kind not in ("mark", "open")]
    # The calls right after a failed one are where fault handling lives
    # (a retried commit, a rewritten sidecar): always examined, with the
    # adversarial variants, whatever the sample.
    focus: set[int] = set()
    for n, i in enumerate(mutating):
        # (Removing a stale temporary file that is not there fails with
        # ENOENT on every sidecar write: not a fault.)
        if calls[i].failed and calls[i].errno != 2:
            focus.update(mutating[n : n + FOCUS])
    rest = [i for i in mutating if i not in focus]
    sampled = rest if len(rest) * 2 <= budget else rng.sample(rest, max(1, budget // 3))
    chosen = focus | set(sampled)
    states = []
    focused = []
    for i, call in enumerate(calls):
        if call.kind == "mark":
            if call.path == "ack":
                acked = max(acked, int(call.fields[0]))
            elif call.path == "returned":
                returned = max(returned, int(call.fields[0]))
            continue
        disk.step(call)
        if i in chosen:
            points.append((i, acked, returned))
            snapshots.append(_copy(disk))
    per_point = max(1, budget // max(1, len(points)))
    for (i, acked_then, returned_then), snap in zip(points, snapshots, strict=True):
        if i in focus:
            variants = list(FOCUS_VARIANTS)
        elif per_point >= len(VARIANTS):
            variants = list(VARIANTS)
        else:
            variants = rng.sample(VARIANTS, per_point)
        for variant in variants:
            files, dirs = snap.state(rng, variant)
            state = State(f"{label}{model}@{i}:{variant}", model, i, variant, acked_then, returned_then, files, dirs)
            (focused if i in focus else states).append(state)
    rng.shuffle(states)
    return focused + states[: max(0, budget - len(focused))]


def _copy(disk: Disk) -> Disk:
    new = Disk.__new__(Disk)
    new.model = disk.model
    new.inodes = [Inode(bytearray(n.durable), bytearray(n.visible), list(n.pending)) for n in disk.inodes]
    new.names = dict(disk.names)
    new.durable_names = dict(disk.durable_names)
    new.dirs = set(disk.dirs)
    new.durable_dirs = set(disk.durable_dirs)
    new.pending_names = list(disk.pending_names)
    return new


# ---------------------------------------------------------------- checking


def observe(applier: ea.Applier) -> dict[str, Any]:
    """What the registry and keys.json hold, as `project` states it for the
    model (the checker child and the tests both read states this way)."""
    s = applier.sidecar if applier.kek is not None else None
    sidecar = None
    if s is not None and (s.active_storage or s.active_raft):
        sidecar = {
            "active": [s.active_storage, s.active_raft],
            "keys": sorted([k, v.purpose.name.lower()] for k, v in s.keys.items()),
            "storage_envelope_active": s.storage_envelope_active,
            "storage_envelope_cutover_index": s.storage_envelope_cutover_index,
            "raft_envelope_cutover_index": s.raft_envelope_cutover_index,
            "raft_applied_index": s.raft_applied_index,
        }
    rows = [
        [r.dek_id, r.node_id16, r.full_node_id, r.first_seen_local_epoch, r.last_seen_local_epoch]
        for r in applier.registry.rows()
    ]
    return {"rows": rows, "sidecar": sidecar}


CHECKER = """
import json, sys
job = json.load(open(sys.argv[1]))
sys.path.insert(0, job["tests"])
import encryption_applier as ea
from explorer import observe
entries = [bytes.fromhex(e) for e in job["entries"]]
kek = ea.FileKek(job["kek"]) if job["kek"] else None
for state in job["states"]:
    print(json.dumps({"start": state["name"]}), flush=True)
    out = {"name": state["name"]}
    kw = {"kek": kek} if kek else {}
    try:
        try:
            a = ea.Applier(state["dir"], **kw)
        except ea.UncommittedRegistryError as e:
            out["uncommitted"] = str(e)
            a = ea.Applier(state["dir"], recreate_uncommitted=True, **kw)
    except ea.EncryptionError as e:
        out["refused"] = f"{type(e).__name__}: {e}"
        print(json.dumps(out), flush=True)
        continue
    try:
        out["applied"] = a.applied_index or 0
        seen = observe(a)
        out["rows"], out["sidecar"] = seen["rows"], seen["sidecar"]
        if out["applied"] < len(entries):
            a.apply_many(entries[out["applied"]:], first_index=out["applied"] + 1)
        final = observe(a)
        out["final_rows"], out["final_sidecar"] = final["rows"], final["sidecar"]
    except ea.EncryptionError as e:
        out["replay_failed"] = f"{type(e).__name__}: {e}"
    finally:
        a.close()
    print(json.dumps(out), flush=True)
print(json.dumps({"end": True}), flush=True)
"""


@dataclass
class Verdict:
    checked: int = 0
    opened: int = 0
    refused: int = 0
    uncommitted: int = 0
    lost: int = 0  # relaxed mode: states that lost returned applies (allowed)
    violations: list[str] = field(default_factory=list)


def materialise(states: list[State], base: Path, scratch: Path) -> list[dict[str, str]]:
    """Writes each state under `scratch/s<n>` (the files and directories it
    holds below `base`, owner-only) and returns `{"name", "dir"}` jobs, the
    registry directory of each, for a checker child."""
    root = str(base.resolve())
    jobs = []
    for n, state in enumerate(states):
        where = scratch / f"s{n}"
        where.mkdir(parents=True)
        for d in sorted(state.dirs):
            if d.startswith(root + "/"):
                (where / d[len(root) + 1 :]).mkdir(parents=True, exist_ok=True, mode=0o700)
        for path, data in state.files.items():
            target = where / path[len(root) + 1 :]
            if target.parent.is_dir():
                target.write_bytes(data)
                target.chmod(0o600)
        jobs.append({"name": state.name, "dir": str(where / "registry")})
    return jobs


def check_states(workload: Workload, states: list[State], base: Path, scratch: Path) -> Verdict:
    """Materialises every state under `scratch` and checks it in one child."""
    verdict = Verdict()
    if not states:
        return verdict
    jobs = materialise(states, base, scratch)
    job_file = scratch / "job.json"
    job_file.write_text(
        json.dumps(
            {
                "entries": [e.hex() for e in workload.entries],
                "kek": str(workload.kek) if workload.kek else None,
                "states": jobs,
                "tests": str(Path(__file__).resolve().parent),
            }
        )
    )
    proc = subprocess.run([sys.executable, "-c", CHECKER, str(job_file)], capture_output=True, text=True, timeout=600)
    results = {}
    started = None
    for line in proc.stdout.splitlines():
        doc = json.loads(line)
        if "start" in doc:
            started = doc["start"]
        elif "name" in doc:
            results[doc["name"]] = doc
    if proc.returncode != 0 or len(results) != len(states):
        verdict.violations.append(
            f"the checker died (status {proc.returncode}) at state {started}: {proc.stderr[-2000:]}"
        )
    by_name = {s.name: s for s in states}
    for name, doc in results.items():
        verdict.checked += 1
        problem = judge(workload, by_name[name], doc, verdict)
        if problem:
            verdict.violations.append(f"{workload.name} {name}: {problem}")
    return verdict


def judge(workload: Workload, state: State, doc: dict[str, Any], verdict: Verdict) -> str | None:
    final = workload.prefix_models[-1]
    relaxed = workload.mode == "relaxed"
    if "refused" in doc:
        verdict.refused += 1
        if relaxed and state.returned == 0:
            return None
        if not relaxed and state.acked == 0:
            return None
        return f"refused with index {state.acked or state.returned} acknowledged: {doc['refused']}"
    verdict.opened += 1
    if "uncommitted" in doc:
        verdict.uncommitted += 1
        if state.acked or (relaxed and state.returned):
            return f"called uncommitted with index {state.acked or state.returned} acknowledged"
    if "replay_failed" in doc:
        return f"the replay from {doc['applied']} failed: {doc['replay_failed']}"
    applied = doc["applied"]
    if applied > len(workload.entries):
        return f"applied index {applied} is past the stream"
    if not relaxed and applied < state.acked:
        return f"applied index {applied} is below the acknowledged {state.acked}"
    if relaxed and applied < state.returned:
        verdict.lost += 1
    here = workload.prefix_models[applied]
    after = workload.prefix_models[min(applied + 1, len(workload.entries))]
    # The entry in flight may have committed its proposer row (a cutover)
    # or written keys.json (bootstrap, rotation, cutover) ahead of the
    # index; never the other way round.
    if doc["rows"] not in (here["rows"], after["rows"]):
        return f"rows differ from the model at applied index {applied}"
    if doc["sidecar"] not in (here["sidecar"], after["sidecar"]):
        return f"keys.json {doc['sidecar']} is neither the model's at {applied} nor at {applied + 1}"
    if doc["sidecar"] != here["sidecar"] and doc["rows"] != after["rows"]:
        return f"keys.json is ahead at {applied + 1} but the registry lacks that entry's rows"
    if doc["final_rows"] != final["rows"] or doc["final_sidecar"] != final["sidecar"]:
        return f"the replay from {applied} did not converge to the model"
    return None


def explore(
    workload: Workload,
    trace: Run,
    base: Path,
    budget: int,
    seed: int,
    label: str = "",
) -> dict[str, Verdict]:
    """Every model's states of one trace, checked."""
    out = {}
    for model in MODELS:
        rng = random.Random(f"{seed}:{workload.name}:{label}:{model}")
        states = crash_states(trace, model, rng, budget, label)
        scratch = Path(tempfile.mkdtemp(prefix="ea-explore-"))
        try:
            out[model] = check_states(workload, states, base, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return out


def merge(into: dict[str, Verdict], more: dict[str, Verdict]) -> None:
    for model, v in more.items():
        total = into.setdefault(model, Verdict())
        total.checked += v.checked
        total.opened += v.opened
        total.refused += v.refused
        total.uncommitted += v.uncommitted
        total.lost += v.lost
        total.violations += v.violations


os.environ.setdefault("EA_EXPLORER", "1")
