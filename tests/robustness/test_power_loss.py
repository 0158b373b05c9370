"""The power-loss and fault explorer (tests/explorer.py) over every mode:
crash states from recorded traces under three file-system models, and a
sweep failing each mutating call in turn. CI-sized here; `scripts/
explore.py` runs it larger and prints the figures the durability guide
quotes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import encryption_applier as ea

from explorer import MODELS, Run, Verdict, Workload, explore, merge, models, observe, run
from fsfault import Call
from helpers import NODE, OTHER, WrapOracle

# Every test here runs workloads in child processes under the fsfault
# shim and checks their crash states in another child: the slow loop.
pytestmark = pytest.mark.slow

# States per model per trace; EA_EXPLORE_BUDGET makes the run larger.
BUDGET = int(os.environ.get("EA_EXPLORE_BUDGET", "40"))
SEED = int(os.environ.get("EA_EXPLORE_SEED", "18"))


def registrations(n: int, nodes: int = 17) -> list[ea.Registration]:
    """Inserts, advances and idempotent replays over a few DEKs."""
    epochs: dict[int, int] = {}
    out = []
    for i in range(n):
        node = i % nodes
        epochs[node] = epochs.get(node, 0) + (1 if i % 4 else 0)
        out.append(ea.Registration(1 + node % 3, (0xA0 << 32) | node, max(1, epochs[node])))
    return out


def keyed_stream(cluster: WrapOracle) -> list[Any]:
    """Bootstrap, registrations, a storage rotation, both cutovers, a Raft
    rotation past the cutover."""
    storage_on = ea.Rotation(
        3, ea.Purpose.STORAGE, b"", ea.Registration(3, NODE, 3), sub_tag=ea.ENABLE_STORAGE_ENVELOPE
    )
    raft_on = ea.Rotation(2, ea.Purpose.RAFT, b"", ea.Registration(2, NODE, 2), sub_tag=ea.ENABLE_RAFT_ENVELOPE)
    return [
        cluster.bootstrap(),
        ea.Registration(1, OTHER, 1),
        ea.Registration(2, OTHER, 1),
        cluster.rotation(3, ea.Purpose.STORAGE, epoch=2),
        ea.Registration(3, OTHER, 1),
        storage_on,
        raft_on,
        cluster.rotation(4, ea.Purpose.RAFT, epoch=3),
        ea.Registration(4, OTHER, 2),
    ]


def deks_of(cluster: WrapOracle, payloads: list[Any]) -> dict[bytes, bytes]:
    """wrapped -> DEK for every key a stream installs (the model's KEK)."""
    out = {}
    for payload in payloads:
        pairs = []
        if isinstance(payload, ea.Bootstrap):
            pairs = [(payload.storage_dek_id, payload.wrapped_storage), (payload.raft_dek_id, payload.wrapped_raft)]
        elif isinstance(payload, ea.Rotation) and payload.wrapped:
            pairs = [(payload.dek_id, payload.wrapped)]
        for dek_id, wrapped in pairs:
            out[wrapped] = cluster.deks[dek_id]
    return out


def workload(name: str, payloads: list[Any], cluster: WrapOracle | None = None, **how: object) -> Workload:
    w = Workload(name, payloads, kek=cluster.kek_path if cluster else None, **how)  # type: ignore[arg-type]
    models(w, deks_of(cluster, payloads) if cluster else {})
    return w


def assert_clean(run_: Run) -> None:
    proc = run_.trace.proc
    assert proc.returncode == 0 and proc.stdout.strip().endswith("done"), proc.stderr[-3000:]


def assert_final(w: Workload, base: Path) -> None:
    """The registry and keys.json after a run are the model's final state."""
    kw = {"kek": ea.FileKek(w.kek)} if w.kek else {}
    with ea.Applier(base / "registry", **kw) as applier:  # type: ignore[arg-type]
        assert applier.applied_index == len(w.entries)
        assert observe(applier) == w.prefix_models[-1]


def report(verdicts: dict[str, Verdict]) -> str:
    return "; ".join(
        f"{m}: {v.checked} states, {v.opened} opened, {v.refused} refused, {len(v.violations)} violations"
        for m, v in verdicts.items()
    )


def explore_runs(w: Workload, runs: list[tuple[str, Run, Path]]) -> dict[str, Verdict]:
    total: dict[str, Verdict] = {}
    for label, r, base in runs:
        merge(total, explore(w, r, base, BUDGET, SEED, label))
    return total


def record(what: dict[str, object]) -> None:
    """Appends the figures of one test to $EA_EXPLORE_REPORT (scripts/explore.py)."""
    path = os.environ.get("EA_EXPLORE_REPORT")
    if path:
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").split("::")[-1].split(" ")[0]
        with open(path, "a") as f:
            f.write(json.dumps({"test": test, **what}) + "\n")


def assert_no_violation(verdicts: dict[str, Verdict], at_least: int) -> None:
    for model, v in verdicts.items():
        record(
            {
                "model": model,
                "checked": v.checked,
                "opened": v.opened,
                "refused": v.refused,
                "uncommitted": v.uncommitted,
                "lost": v.lost,
                "violations": len(v.violations),
            }
        )
    problems = [p for v in verdicts.values() for p in v.violations]
    assert not problems, "\n".join(problems[:20]) + f"\n({len(problems)} violations; {report(verdicts)})"
    for model in MODELS:
        assert verdicts[model].checked >= at_least, report(verdicts)


def assert_calls(r: Run, *needed: tuple[str, str]) -> None:
    """The trace holds the call kinds this workload must make, so a shim
    that misses one fails here instead of finding nothing wrong."""

    def shape(c: Call) -> tuple[str, str]:
        if c.kind == "write" and c.dsync or c.kind == "open" and c.flags & os.O_DSYNC:
            return (c.kind, "dsync")
        return (c.kind, "dir" if c.kind == "sync" and c.is_dir else "")

    seen = {shape(c) for c in r.trace.calls}
    for need in needed:
        assert need in seen, (need, sorted(seen))


# The O_DSYNC descriptor LMDB writes strict meta pages through, the page
# writes, the meta writes through it, the data fsyncs.
STRICT_CALLS = (("open", "dsync"), ("write", ""), ("write", "dsync"), ("sync", ""))
SIDECAR_CALLS = (("rename", ""), ("sync", "dir"))


@pytest.mark.parametrize("mode", ["strict", "many", "group", "pipelined", "relaxed"])
def test_power_loss_keeps_what_each_mode_promises(tmp_path: Path, mode: str) -> None:
    w = workload(mode, registrations(36), mode=mode, group=8, batch=10)
    base = tmp_path / "run"
    r = run(w, base)
    assert_clean(r)
    assert_final(w, base)
    assert_calls(r, *(STRICT_CALLS if mode != "relaxed" else (("write", ""), ("sync", ""))))
    verdicts = explore_runs(w, [("", r, base)])
    assert_no_violation(verdicts, at_least=min(BUDGET, 30))


def test_power_loss_during_creation(tmp_path: Path) -> None:
    w = workload("create", registrations(6), create=True)
    base = tmp_path / "run"
    base.mkdir()
    r = run(w, base)
    assert_clean(r)
    assert_calls(r, ("mkdir", ""), ("create", ""), ("sync", "dir"), *STRICT_CALLS)
    verdicts = explore_runs(w, [("", r, base)])
    assert_no_violation(verdicts, at_least=min(BUDGET, 30))


@pytest.mark.parametrize("mode", ["strict", "group", "pipelined"])
def test_power_loss_with_keys(tmp_path: Path, cluster: WrapOracle, mode: str) -> None:
    entries = keyed_stream(cluster)
    w = workload(f"keyed-{mode}", entries, cluster, mode=mode, group=4)
    base = tmp_path / "run"
    r = run(w, base)
    assert_clean(r)
    assert_calls(r, *STRICT_CALLS, *SIDECAR_CALLS)
    verdicts = explore_runs(w, [("", r, base)])
    assert_no_violation(verdicts, at_least=min(BUDGET, 30))


def faulted_runs(w: Workload, tmp_path: Path, faults: list[str]) -> list[tuple[str, Run, Path]]:
    out = []
    for n, fault in enumerate(faults):
        base = tmp_path / f"f{n}"
        r = run(w, base, fail=fault)
        assert_clean(r)
        assert_final(w, base)
        out.append((f"[{fault}] ", r, base))
    return out


def test_power_loss_after_failed_fsyncs_of_keys_json(tmp_path: Path, cluster: WrapOracle) -> None:
    """Fixes 2 and 5: the directory fsync of a keys.json write fails, the
    host replays as told, and then the power goes: keys.json must still
    reflect every keyed entry the registry counts as applied."""
    w = workload("keyed-dirsync", keyed_stream(cluster), cluster)
    clean = run(w, tmp_path / "clean")
    dirsyncs = [c for c in clean.trace.calls if c.kind == "sync" and c.is_dir]
    assert len(dirsyncs) >= 4
    runs = faulted_runs(w, tmp_path, [f"dirsync:{n}:EIO" for n in range(1, len(dirsyncs) + 1)])
    verdicts = explore_runs(w, runs)
    assert_no_violation(verdicts, at_least=min(BUDGET, 30))


def test_power_loss_after_a_failed_fsync_with_sync_false(tmp_path: Path) -> None:
    """Fix 4 (fsyncgate): a data fsync fails in relaxed mode, the host
    replays, more commits follow, then the power goes."""
    w = workload("relaxed-fsyncgate", registrations(30), mode="relaxed")
    runs = faulted_runs(w, tmp_path, [f"filesync:{n}:EIO" for n in (4, 9, 15)])
    verdicts = explore_runs(w, runs)
    assert_no_violation(verdicts, at_least=min(BUDGET, 30))


def test_a_failed_meta_write_then_power_loss(tmp_path: Path) -> None:
    """Fix 3: an O_DSYNC meta write fails (LMDB marks the environment
    unusable), the host reopens and replays, then the power goes."""
    w = workload("meta-write", registrations(24), batch=6, mode="many")
    runs = faulted_runs(w, tmp_path, [f"dsync_write:{n}:EIO" for n in (2, 3)])
    verdicts = explore_runs(w, runs)
    assert_no_violation(verdicts, at_least=min(BUDGET, 30))


@pytest.mark.parametrize("mode", ["group", "pipelined"])
def test_group_commit_lost_to_a_full_map_then_power_loss(tmp_path: Path, mode: str) -> None:
    """Fix 1: a group cannot commit (64 KiB map, a view open), the host
    closes the view and replays from replay_from, then the power goes.
    Pipelined, the committer meets the full map and the next call raises."""
    w = workload(f"{mode}-mapfull", registrations(1200, nodes=1200), mode=mode, group=100, map_size=1 << 16, view_at=40)
    base = tmp_path / "run"
    r = run(w, base)
    assert_clean(r)
    assert [c.fields for c in r.trace.calls if c.kind == "mark" and c.path == "fault"], "no commit failed"
    assert_final(w, base)
    verdicts = explore_runs(w, [("", r, base)])
    assert_no_violation(verdicts, at_least=min(BUDGET, 30))


# ---------------------------------------------------------------- the fault sweep


@pytest.mark.parametrize("errno", ["EIO", "ENOSPC"])
@pytest.mark.parametrize("mode", ["strict", "many", "group", "pipelined", "relaxed", "keyed"])
def test_every_mutating_call_failing_once(tmp_path: Path, cluster: WrapOracle, mode: str, errno: str) -> None:
    """Each mutating call of a small workload fails once; the host does
    what the docs tell it, and the registry ends as the model says."""
    if mode == "keyed":
        w = workload("sweep-keyed", keyed_stream(cluster)[:6], cluster)
    else:
        w = workload(f"sweep-{mode}", registrations(8), mode=mode, group=3, batch=3)
    clean = run(w, tmp_path / "clean")
    assert_clean(clean)
    calls = [c for c in clean.trace.calls if c.kind not in ("mark", "open")]
    assert len(calls) >= 8
    missed = 0
    for n in range(1, len(calls) + 1):
        base = tmp_path / f"n{n}"
        r = run(w, base, fail=f"any:{n}:{errno}")
        failed = [c for c in r.trace.calls if c.failed]
        assert_clean(r)
        assert_final(w, base)
        if not failed and mode == "pipelined":
            # The committer's groups follow the timing (a group is what was
            # staged while the previous one committed), so a run may make
            # fewer calls than the clean one did; it must still end right.
            missed += 1
            continue
        assert failed, f"call {n} ({calls[n - 1].kind} {calls[n - 1].path}) was not failed"
    assert missed * 2 <= len(calls), f"{missed} of {len(calls)} runs failed no call"
    record({"sweep": mode, "errno": errno, "runs": len(calls), "missed": missed})
