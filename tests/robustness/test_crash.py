"""SIGKILL at random moments while a child applies, and readers killed
while holding snapshots: nothing acknowledged is lost, the registry is
always the model after some prefix, and replay converges."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import encryption_applier as ea
from encryption_applier.testing.model import KeyedModel, RegistryModel

from helpers import aesgcm_wrap, fingerprint

KILLS = int(os.environ.get("EA_KILLS", "60"))

CHILD = """
import sys, encryption_applier as ea
directory, stream_path, kek_path = sys.argv[1], sys.argv[2], sys.argv[3]
entries = open(stream_path).read().split()
kek = ea.FileKek(kek_path) if kek_path != "-" else None
applier = ea.Applier(directory, kek=kek)
start = applier.applied_index or 0   # a restarted replica resumes after what it applied
print("open", start, flush=True)
for index in range(start + 1, len(entries) + 1):
    applier.apply(bytes.fromhex(entries[index - 1]), index=index)
    print(index, flush=True)   # acknowledged: apply returned
print("done", flush=True)
"""


# Group commit: what the child acknowledges is its durable index.
CHILD_GROUPED = """
import sys, encryption_applier as ea
directory, stream_path, kek_path = sys.argv[1], sys.argv[2], sys.argv[3]
entries = open(stream_path).read().split()
applier = ea.Applier(directory, group_commit=16, group_commit_ms=5)
start = applier.applied_index or 0
print("open", start, flush=True)
for index in range(start + 1, len(entries) + 1):
    applier.apply(bytes.fromhex(entries[index - 1]), index=index)
    durable = applier.durable_index
    if durable:
        print(durable, flush=True)   # acknowledged: known durable
applier.close()
print("done", flush=True)
"""


def run_and_kill(
    directory: Path, stream: Path, kek: Path | None, rng: random.Random, code: str = CHILD
) -> tuple[int, bool]:
    """Starts the child, waits until it is applying, kills it with SIGKILL
    after a random delay, and returns the highest acknowledged index and
    whether the child got to the end of the stream first."""
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(directory), str(stream), str(kek) if kek else "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    opened = child.stdout.readline()
    assert opened.startswith("open"), opened + (child.stderr.read() if child.stderr else "")
    time.sleep(rng.uniform(0.002, 0.12))
    child.send_signal(signal.SIGKILL)
    out, err = child.communicate(timeout=30)
    lines = out.split()
    assert "Traceback" not in err, err
    acknowledged = [int(x) for x in lines if x.isdigit()]
    return (max(acknowledged) if acknowledged else 0), "done" in lines


def write_stream(path: Path, entries: list[bytes]) -> Path:
    path.write_text("\n".join(e.hex() for e in entries) + "\n")
    return path


def registration_stream(n: int) -> list[tuple[int, int, int]]:
    """A valid stream: 150 nodes under 3 DEKs, restarting in turn."""
    epochs: dict[int, int] = {}
    out = []
    for i in range(n):
        node = (i * 37) % 150
        epochs[node] = epochs.get(node, 0) + (1 if i % 3 else 0)
        out.append((1 + node % 3, (0xA0 << 32) | node, epochs[node]))
    return out


class Prefixes:
    """The model after the first p entries, for any p, from checkpoints
    (copying the whole model after every entry would not fit)."""

    def __init__(
        self,
        start: Any,
        step: Callable[[Any, Any], None],
        copy: Callable[[Any], Any],
        items: list[Any],
        every: int = 100,
    ) -> None:
        self.step, self.copy, self.items, self.every = step, copy, items, every
        self.checkpoints = [copy(start)]
        model = copy(start)
        for i, item in enumerate(items, start=1):
            step(model, item)
            if i % every == 0:
                self.checkpoints.append(copy(model))
        self.final = model

    def __getitem__(self, p: int) -> Any:
        model = self.copy(self.checkpoints[p // self.every])
        for item in self.items[(p // self.every) * self.every : p]:
            self.step(model, item)
        return model


def apply_registration_step(model: RegistryModel, reg: tuple[int, int, int]) -> None:
    assert model.apply_registration(*reg) in {"inserted", "advanced", "unchanged"}


@pytest.mark.slow
def test_sigkill_during_registration_streams(tmp_path: Path) -> None:
    rng = random.Random(1234)
    regs = registration_stream(100_000)
    stream = write_stream(tmp_path / "stream.hex", [ea.Registration(*r).to_entry() for r in regs])
    models = Prefixes(RegistryModel(), apply_registration_step, lambda m: RegistryModel(dict(m.rows)), regs)
    directory = tmp_path / "registry"
    kills = 0
    while kills < KILLS:
        acknowledged, finished = run_and_kill(directory, stream, None, rng)
        if finished:
            break
        kills += 1
        with ea.Registry(directory) as registry:
            applied = registry.applied_index or 0
            # Every acknowledged entry is there, and the registry is exactly
            # the model after the prefix it says it applied.
            assert applied >= acknowledged, (applied, acknowledged)
            assert [(r.key, r.value) for r in registry] == models[applied].raw_items()
    assert kills >= min(KILLS, 50)
    # A final run replays the whole stream from the start and converges.
    with ea.Applier(directory) as applier:
        outcomes = applier.apply_many([ea.Registration(*r).to_entry() for r in regs], first_index=1)
        assert "skipped" in outcomes
        assert [(r.key, r.value) for r in applier.registry.rows()] == models.final.raw_items()


@pytest.mark.slow
def test_sigkill_with_group_commit(tmp_path: Path) -> None:
    """Write-behind group commit: after any kill the registry is the model
    after the prefix it says it applied, no index acknowledged durable is
    lost, and a replay from applied_index + 1 converges."""
    rng = random.Random(4321)
    regs = registration_stream(40_000)
    stream = write_stream(tmp_path / "stream.hex", [ea.Registration(*r).to_entry() for r in regs])
    models = Prefixes(RegistryModel(), apply_registration_step, lambda m: RegistryModel(dict(m.rows)), regs)
    directory = tmp_path / "registry"
    kills = 0
    while kills < max(10, KILLS // 3):
        acknowledged, finished = run_and_kill(directory, stream, None, rng, CHILD_GROUPED)
        if finished:
            break
        kills += 1
        with ea.Registry(directory) as registry:
            applied = registry.applied_index or 0
            assert applied >= acknowledged, (applied, acknowledged)
            assert [(r.key, r.value) for r in registry] == models[applied].raw_items()
    assert kills >= 5
    with ea.Applier(directory, group_commit=64) as applier:
        start = applier.applied_index or 0
        for index in range(start + 1, len(regs) + 1):
            applier.apply(ea.Registration(*regs[index - 1]), index=index)
    with ea.Registry(directory) as registry:
        assert registry.applied_index == len(regs)
        assert [(r.key, r.value) for r in registry] == models.final.raw_items()


def keyed_stream(kek_bytes: bytes) -> tuple[list[bytes], dict[bytes, bytes], list[int]]:
    """A bootstrap, then registrations, with a rotation every 150 entries."""
    deks: dict[bytes, bytes] = {}

    def wrapped(seed: int) -> bytes:
        dek = bytes([seed]) * 32
        blob = aesgcm_wrap(kek_bytes, dek)
        deks[blob] = dek
        return blob

    nodes = [(0xB0 << 32) | n for n in range(1, 21)]
    entries = [
        ea.Bootstrap(1, wrapped(1), 2, wrapped(2), [ea.Registration(d, n, 1) for n in nodes for d in (1, 2)]).to_entry()
    ]
    keyed_positions = [1]
    storage, epoch = 1, 1
    for i in range(1, 12000):
        if i % 150 == 0:
            storage = 2 + i // 150
            epoch += 1
            entries.append(
                ea.Rotation(
                    storage, ea.Purpose.STORAGE, wrapped(storage), ea.Registration(storage, nodes[0], epoch)
                ).to_entry()
            )
            keyed_positions.append(len(entries))
        else:
            node = nodes[i % len(nodes)]
            entries.append(ea.Registration(storage, node, epoch).to_entry())
    return entries, deks, keyed_positions


def copy_keyed(m: KeyedModel) -> KeyedModel:
    return KeyedModel(
        deks=m.deks,
        registry=RegistryModel(dict(m.registry.rows)),
        active=dict(m.active),
        keys=dict(m.keys),
        keystore=dict(m.keystore),
    )


def keyed_step(model: KeyedModel, entry: bytes) -> None:
    payload = ea.decode_entry(entry)
    if isinstance(payload, ea.Bootstrap):
        result = model.bootstrap(
            payload.storage_dek_id,
            payload.wrapped_storage,
            payload.raft_dek_id,
            payload.wrapped_raft,
            [(r.dek_id, r.full_node_id, r.local_epoch) for r in payload.batch_registry],
        )
    elif isinstance(payload, ea.Rotation):
        p = payload.proposer_registration
        result = model.rotation(
            payload.dek_id, payload.purpose.name.lower(), payload.wrapped, (p.dek_id, p.full_node_id, p.local_epoch)
        )
    else:
        result = model.registry.apply_registration(payload.dek_id, payload.full_node_id, payload.local_epoch)
    assert isinstance(result, str), result


def sidecar_state(sidecar: ea.Sidecar) -> tuple[dict[str, int], dict[int, tuple[str, bytes]]]:
    return sidecar.active, {i: (k.purpose.name.lower(), k.wrapped) for i, k in sidecar.keys.items()}


@pytest.mark.slow
def test_sigkill_during_keyed_streams(tmp_path: Path, kek_path: Path) -> None:
    rng = random.Random(99)
    entries, deks, keyed_positions = keyed_stream(kek_path.read_bytes())
    models = Prefixes(KeyedModel(deks=deks), keyed_step, copy_keyed, entries)
    stream = write_stream(tmp_path / "stream.hex", entries)
    directory = tmp_path / "registry"
    kills = 0
    while kills < max(10, KILLS // 3):
        acknowledged, finished = run_and_kill(directory, stream, kek_path, rng)
        if finished:
            break
        kills += 1
        sidecar_path = directory / "keys.json"
        if acknowledged >= 1:
            # Once the bootstrap was acknowledged keys.json exists, whole.
            json.loads(sidecar_path.read_text())
        with ea.Registry(directory) as registry:
            applied = registry.applied_index or 0
            assert applied >= acknowledged
            rows = [(r.key, r.value) for r in registry]
        sidecar = ea.read_sidecar(sidecar_path)
        # A keyed entry commits its rows, then writes the sidecar, then
        # records its index: registry and sidecar are the model's after
        # `applied` entries, or one keyed entry ahead, and the sidecar is
        # never ahead of the rows.
        candidates = [models[applied]]
        if applied + 1 in keyed_positions:
            candidates.append(models[applied + 1])
        assert rows in [m.registry.raw_items() for m in candidates]
        states = [((m.active, m.keys) if m.bootstrapped() else None) for m in candidates]
        state = sidecar_state(sidecar) if sidecar else None
        assert state in states
        if state != states[0]:
            assert rows == candidates[-1].registry.raw_items()
    with ea.Applier(directory, kek=ea.FileKek(kek_path)) as applier:
        applier.apply_many(entries, first_index=1)
        final = models.final
        assert [(r.key, r.value) for r in applier.registry.rows()] == final.registry.raw_items()
        assert sidecar_state(applier.sidecar) == (final.active, final.keys)  # type: ignore[arg-type]
        keystore = applier.keystore
        assert keystore is not None
        assert {i: keystore.fingerprint(i) for i in keystore} == {i: fingerprint(d) for i, d in final.keystore.items()}


READER = """
import sys, time, encryption_applier as ea
view = ea.Registry(sys.argv[1])
print(len(view), flush=True)
time.sleep(60)
"""


@pytest.mark.slow
def test_killed_readers_do_not_pin_pages_or_block(tmp_path: Path) -> None:
    directory = tmp_path / "registry"
    with ea.Applier(directory) as applier:
        applier.apply_many([ea.Registration(1, n, 1) for n in range(1, 101)])
        readers = [
            subprocess.Popen([sys.executable, "-c", READER, str(directory)], stdout=subprocess.PIPE, text=True)
            for _ in range(8)
        ]
        for reader in readers:
            assert reader.stdout is not None and reader.stdout.readline().strip() == "100"
        for reader in readers:
            reader.kill()
            reader.wait(timeout=30)
        time.sleep(1.1)  # the writer clears stale slots at most once a second
        size_before = (directory / "data.mdb").stat().st_size
        # 2 000 commits rewriting the same pages: with the dead readers'
        # snapshots still pinned, every commit would need fresh pages.
        for epoch in range(2, 2002):
            applier.apply_registration(ea.Registration(1, 1 + epoch % 100, epoch // 100 + 2), index=epoch)
        grown = (directory / "data.mdb").stat().st_size - size_before
        assert grown < 1 << 20, f"data.mdb grew by {grown} bytes"
    # A new process opens at once (stale slots do not block it).
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, encryption_applier as ea; print(len(ea.Registry(sys.argv[1])))",
            str(directory),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.stdout.strip() == "100"


@pytest.mark.slow
def test_many_killed_readers_do_not_exhaust_the_reader_table(tmp_path: Path) -> None:
    directory = tmp_path / "registry"
    with ea.Applier(directory) as applier:
        applier.apply_registration(ea.Registration(1, 1, 1))
    batch = 40
    for _ in range(3):
        readers = [
            subprocess.Popen([sys.executable, "-c", READER, str(directory)], stdout=subprocess.PIPE, text=True)
            for _ in range(batch)
        ]
        for reader in readers:
            assert reader.stdout is not None and reader.stdout.readline().strip() == "1"
            reader.kill()
        for reader in readers:
            reader.wait(timeout=30)
    # Each open clears the dead slots first, so a fresh view still opens.
    with ea.Registry(directory) as view:
        assert len(view) == 1


@pytest.mark.parametrize("seed", [5, 6])
def test_replay_after_kill_without_indexes_halts_only_where_the_rules_say(tmp_path: Path, seed: int) -> None:
    """Without Raft indexes a replay is only safe from the last applied
    entry: replaying an older registration after a newer one is a rollback
    and halts (the documented reason to pass indexes)."""
    directory = tmp_path / "registry"
    with ea.Applier(directory) as applier:
        applier.apply_registration(ea.Registration(1, 1, 1))
        applier.apply_registration(ea.Registration(1, 1, 2))
        assert applier.apply_registration(ea.Registration(1, 1, 2)) == "unchanged"
        with pytest.raises(ea.LocalEpochRollbackError):
            applier.apply_registration(ea.Registration(1, 1, 1))
