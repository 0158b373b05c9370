"""A follower's resync of keys.json from the Raft log
(`Applier.resync_sidecar`, the CLI's `resync-sidecar`): the gap's keyed
entries replayed with apply's checks, keys.json only, epochs from this
node's own rows, all or nothing, the old file kept."""

import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import encryption_applier as ea
from encryption_applier.testing.model import Halt, KeyedModel

from helpers import NODE, WrapOracle

FOREIGN = (0x9999 << 16) | (NODE & 0xFFFF)  # another node at NODE's prefix
PURPOSE = {"storage": ea.Purpose.STORAGE, "raft": ea.Purpose.RAFT}


@dataclass
class Lagging:
    """A registry applied through index 9 whose keys.json was put back to
    what it was after index 1 (a restored backup)."""

    directory: Path
    log: list[bytes]  # every entry of indexes 1..9
    old: bytes  # keys.json after index 1
    full: ea.Sidecar  # keys.json after index 9, as apply wrote it


def cluster_log(cluster: WrapOracle) -> list[bytes]:
    reg = ea.Registration
    return [
        cluster.bootstrap().to_entry(),  # 1: keys 1 (storage), 2 (raft); NODE's rows at 1
        reg(1, NODE, 2).to_entry(),  # 2: NODE's row under key 1 at epoch 2
        b"\x00not an encryption entry",  # 3: another FSM entry
        cluster.rotation(3, ea.Purpose.STORAGE, epoch=2).to_entry(),  # 4
        b"",  # 5: an entry without an FSM payload
        ea.Rotation(3, ea.Purpose.STORAGE, b"", reg(3, NODE, 2), sub_tag=ea.ENABLE_STORAGE_ENVELOPE).to_entry(),  # 6
        cluster.rotation(4, ea.Purpose.RAFT, epoch=1).to_entry(),  # 7
        ea.Rotation(4, ea.Purpose.RAFT, b"", reg(4, NODE, 1), sub_tag=ea.ENABLE_RAFT_ENVELOPE).to_entry(),  # 8
        reg(3, NODE, 5).to_entry(),  # 9: NODE's row under key 3 at epoch 5
    ]


@pytest.fixture
def lagging(registry_dir: Path, cluster: WrapOracle) -> Lagging:
    log = cluster_log(cluster)
    old = b""
    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path)) as applier:
        for index, entry in enumerate(log, start=1):
            if entry[:1] and 0x03 <= entry[0] <= 0x07:
                applier.apply(entry, index=index)
            if index == 1:
                old = (registry_dir / "keys.json").read_bytes()
        full = applier.sidecar
    assert full is not None
    (registry_dir / "keys.json").write_bytes(old)
    return Lagging(registry_dir, log, old, full)


def resync(lagging: Lagging, cluster: WrapOracle, **kwargs: object) -> ea.SidecarResync:
    args: dict[str, object] = {"log": lagging.log, "log_first_index": 1, "full_node_id": NODE}
    args.update(kwargs)
    with ea.Applier(lagging.directory, kek=ea.FileKek(cluster.kek_path)) as applier:
        return applier.resync_sidecar(**args)  # type: ignore[arg-type]


def keys_json(lagging: Lagging) -> bytes:
    return (lagging.directory / "keys.json").read_bytes()


def test_a_dry_run_shows_the_change_and_writes_nothing(lagging: Lagging, cluster: WrapOracle) -> None:
    report = resync(lagging, cluster, dry_run=True)
    assert (report.dry_run, report.written, report.changed, report.backup) == (True, False, True, None)
    assert (report.sidecar_applied_index, report.through_index) == (1, 9)
    assert report.replayed == [
        (4, "rotate-dek", "rotated"),
        (6, "enable-storage-envelope", "enabled"),
        (7, "rotate-dek", "rotated"),
        (8, "enable-raft-envelope", "enabled"),
    ]
    assert report.passed_over == 4  # 2 and 9 (registrations), 3 (another entry), 5 (empty)
    assert report.left_for_apply is None
    assert keys_json(lagging) == lagging.old
    assert report.before is not None and report.before.raft_applied_index == 1
    assert "dry run" in repr(report) and "4 replayed" in repr(report)


def test_resync_brings_keys_json_to_what_apply_wrote(lagging: Lagging, cluster: WrapOracle) -> None:
    report = resync(lagging, cluster)
    after, full = report.after, lagging.full
    assert (report.written, report.changed) == (True, True)
    # What apply decided, entry by entry...
    assert (after.active_storage, after.active_raft) == (full.active_storage, full.active_raft) == (3, 4)
    assert after.storage_envelope_active and after.storage_envelope_cutover_index == 6
    assert after.raft_envelope_cutover_index == full.raft_envelope_cutover_index == 8
    assert {i: (k.purpose, k.wrapped) for i, k in after.keys.items()} == {
        i: (k.purpose, k.wrapped) for i, k in full.keys.items()
    }
    # ...the index of the whole gap, and each key's epoch from NODE's own rows
    # (apply's pinned epoch here was 0; NODE's rows: key 1 at 2, key 2 at 1,
    # key 3 at 5, key 4 at 1).
    assert after.raft_applied_index == 9 and full.raft_applied_index == 8
    assert report.epochs == {1: (0, 2), 2: (0, 1), 3: (0, 5), 4: (0, 1)}
    assert {i: k.local_epoch for i, k in after.keys.items()} == {1: 2, 2: 1, 3: 5, 4: 1}
    assert keys_json(lagging).decode() == after.to_json()
    # The old file is kept, owner-only.
    assert report.backup == lagging.directory / "keys.json.before-resync-1"
    assert report.backup.read_bytes() == lagging.old
    assert stat.S_IMODE(os.stat(report.backup).st_mode) == 0o600
    # The node may start now, and the next start's checks pass.
    with ea.Registry(lagging.directory) as registry:
        assert (
            ea.diagnose_startup(
                encryption_enabled=True,
                kek=ea.FileKek(cluster.kek_path),
                sidecar_path=lagging.directory / "keys.json",
                registry=registry,
                full_node_id=NODE,
                log=lagging.log,
                log_first_index=1,
            )
            == []
        )
    # A second resync has nothing to do.
    again = resync(lagging, cluster)
    assert (again.replayed, again.changed, again.written, again.epochs) == ([], False, False, {})


def test_the_applier_carries_on_after_a_resync(lagging: Lagging, cluster: WrapOracle) -> None:
    with ea.Applier(lagging.directory, kek=ea.FileKek(cluster.kek_path)) as applier:
        applier.resync_sidecar(lagging.log, log_first_index=1, full_node_id=NODE)
        assert applier.keystore is not None and sorted(applier.keystore.ids()) == [1, 2, 3, 4]
        assert applier.apply(cluster.rotation(5, ea.Purpose.STORAGE).to_entry(), index=10) == "rotated"
        assert applier.sidecar is not None and applier.sidecar.active_storage == 5


def test_entries_past_the_registry_are_left_for_apply(lagging: Lagging, cluster: WrapOracle) -> None:
    longer = [*lagging.log, cluster.rotation(5, ea.Purpose.STORAGE).to_entry()]
    report = resync(lagging, cluster, log=longer, dry_run=True)
    assert report.left_for_apply == (10, 10) and report.through_index == 9
    assert 5 not in report.after.keys
    # A lower through_index stops earlier; one past the registry is refused.
    early = resync(lagging, cluster, through_index=6, dry_run=True)
    assert [r[0] for r in early.replayed] == [4, 6] and early.after.raft_applied_index == 6
    with pytest.raises(ValueError, match=r"through_index=10 is past the registry's applied index \(9\)"):
        resync(lagging, cluster, log=longer, through_index=10)


@pytest.mark.parametrize(
    ("first", "count", "held"),
    [(3, 7, "holds entries 3..=9 only"), (1, 5, "holds entries 1..=5 only"), (2, 0, "is empty")],
)
def test_a_log_short_of_the_gap_does_nothing(
    lagging: Lagging, cluster: WrapOracle, first: int, count: int, held: str
) -> None:
    with pytest.raises(ea.RaftLogGapUncoveredError) as info:
        resync(lagging, cluster, log=lagging.log[first - 1 : first - 1 + count], log_first_index=first)
    assert held in str(info.value) and "gap 2..=9" in str(info.value)
    assert (info.value.sidecar_applied_index, info.value.engine_applied_index) == (1, 9)
    assert keys_json(lagging) == lagging.old
    assert not list(lagging.directory.glob("keys.json.before-resync-*"))


def bad_entries(cluster: WrapOracle) -> list[tuple[int, bytes, type[ea.EncryptionApplyError], str]]:
    reg = ea.Registration(3, NODE, 2)
    return [
        (
            4,
            bytes([ea.OP_ROTATION]) + ea.Rotation(3, ea.Purpose.STORAGE, b"k", reg, sub_tag=0x02).encode(),
            ea.MalformedPayloadError,
            "(rewrap-deks) is reserved",
        ),
        (4, b"\x06\x01", ea.MalformedPayloadError, "0x06"),
        (4, ea.Rotation(3, ea.Purpose.STORAGE, b"\x00" * 60, reg).to_entry(), ea.KEKUnwrapError, "dek_id=3"),
        (
            4,
            ea.Rotation(1, ea.Purpose.RAFT, cluster.wrapped(1), ea.Registration(1, NODE, 2)).to_entry(),
            ea.PayloadRejectedError,
            "dek_id=1 is already a storage key",
        ),
    ]


@pytest.mark.parametrize("case", range(4))
def test_a_halt_in_the_gap_writes_nothing(lagging: Lagging, cluster: WrapOracle, case: int) -> None:
    index, entry, error, named = bad_entries(cluster)[case]
    log = list(lagging.log)
    log[index - 1] = entry
    with pytest.raises(error) as info:
        resync(lagging, cluster, log=log)
    assert str(info.value).startswith(f"resync halted at the entry at Raft index {index} (log position {index - 1})")
    assert named in str(info.value) and info.value.position == index - 1
    assert keys_json(lagging) == lagging.old
    assert not list(lagging.directory.glob("keys.json.before-resync-*"))


def test_another_nodes_row_at_this_prefix_is_a_collision(lagging: Lagging, cluster: WrapOracle) -> None:
    with pytest.raises(ea.NodeIDCollisionError) as info:
        resync(lagging, cluster, full_node_id=FOREIGN)
    assert (info.value.dek_id, info.value.existing_full_node_id, info.value.incoming_full_node_id) == (
        1,
        NODE,
        FOREIGN,
    )
    assert keys_json(lagging) == lagging.old


def test_a_lost_keys_json_is_rebuilt_from_the_whole_log(lagging: Lagging, cluster: WrapOracle) -> None:
    (lagging.directory / "keys.json").unlink()
    with pytest.raises(ea.RaftLogGapUncoveredError):
        resync(lagging, cluster, log=lagging.log[1:], log_first_index=2)
    report = resync(lagging, cluster)
    assert report.before is None and report.backup is None and report.written
    assert [r[:2] for r in report.replayed][0] == (1, "bootstrap")
    assert report.after.active_storage == 3 and report.after.raft_applied_index == 9


def test_arguments_are_checked(lagging: Lagging, cluster: WrapOracle) -> None:
    with pytest.raises(ValueError, match="log_first_index must be 1 or more"):
        resync(lagging, cluster, log_first_index=0)
    with pytest.raises(ValueError, match="full_node_id must be"):
        resync(lagging, cluster, full_node_id=0)
    with ea.Applier(lagging.directory) as applier, pytest.raises(ea.KEKNotConfiguredError):
        applier.resync_sidecar(lagging.log, log_first_index=1, full_node_id=NODE)


def test_a_backup_already_there_is_never_overwritten(lagging: Lagging, cluster: WrapOracle) -> None:
    taken = lagging.directory / "keys.json.before-resync-1"
    taken.write_bytes(b"someone else's file")
    report = resync(lagging, cluster)
    assert report.backup == lagging.directory / "keys.json.before-resync-1.1"
    assert taken.read_bytes() == b"someone else's file" and report.backup.read_bytes() == lagging.old


def test_the_cli(lagging: Lagging, cluster: WrapOracle, tmp_path: Path) -> None:
    log = tmp_path / "log.hex"
    log.write_text("".join(f"{entry.hex() or '00'}\n" for entry in lagging.log))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "encryption_applier", "resync-sidecar", str(lagging.directory), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    common = ("--kek", str(cluster.kek_path), "--log", str(log), "--log-first-index", "1")
    done = cli(*common, "--full-node-id", hex(NODE), "--dry-run")
    assert done.returncode == 0, done
    assert (
        "dry run: keys.json would change" in done.stdout and "index 6: enable-storage-envelope: enabled" in done.stdout
    )
    assert "local_epoch of key 3: 0 -> 5" in done.stdout
    assert keys_json(lagging) == lagging.old
    done = cli(*common, "--full-node-id", hex(NODE), "--json")
    assert done.returncode == 0, done
    import json

    doc = json.loads(done.stdout)
    assert doc["written"] and doc["backup"].endswith("keys.json.before-resync-1")
    assert json.loads(doc["after"])["active"] == {"storage": 3, "raft": 4}
    done = cli(*common, "--full-node-id", hex(FOREIGN))
    assert done.returncode == 1 and "NodeIDCollisionError" in done.stderr, done
    done = cli("--kek", str(cluster.kek_path), "--log", str(log), "--full-node-id", hex(NODE))
    assert done.returncode == 2 and "--log-first-index" in done.stderr, done


@st.composite
def keyed_streams(draw: st.DrawFn) -> list[tuple[str, tuple[object, ...]]]:
    """A bootstrap, then a mix of rotations (new keys and old ones),
    cutovers of either layer (fresh, already active or stale) and
    registrations of this node and another, as steps for the model."""
    steps: list[tuple[str, tuple[object, ...]]] = [("bootstrap", ())]
    for _ in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(["rotation", "rotation", "cutover", "registration", "registration"]))
        if kind == "rotation":
            steps.append((kind, (draw(st.integers(1, 6)), draw(st.sampled_from(["storage", "raft"])))))
        elif kind == "cutover":
            steps.append((kind, (draw(st.sampled_from(["storage", "raft"])), draw(st.booleans()))))
        else:
            steps.append(
                (kind, (draw(st.integers(1, 6)), draw(st.sampled_from([NODE, 0x7777_0009])), draw(st.integers(0, 9))))
            )
    return steps


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=keyed_streams(), data=st.data())
def test_resync_from_any_point_matches_the_model(
    tmp_path_factory: pytest.TempPathFactory,
    cluster: WrapOracle,
    steps: list[tuple[str, tuple[object, ...]]],
    data: st.DataObject,
) -> None:
    """Whatever point keys.json is put back to, the resync leaves it as the
    independent model says the whole stream does: its keys, actives and
    cutovers, the stream's end as its index, each key's local epoch at this
    node's own row (0 without one)."""
    directory = tmp_path_factory.mktemp("resync-prop") / "registry"
    wraps: dict[int, bytes] = {}

    def wrapped(dek_id: int) -> bytes:
        return wraps.setdefault(dek_id, cluster.wrapped(dek_id))

    model = KeyedModel({wrapped(i): cluster.deks[i] for i in range(1, 7)})
    log: list[bytes] = []
    saved: list[bytes] = []
    with ea.Applier(directory, kek=ea.FileKek(cluster.kek_path)) as applier:
        for kind, args in steps:
            index = len(log) + 1
            if kind == "bootstrap":
                rows = [(1, NODE, 1), (2, NODE, 1)]
                result = model.bootstrap(1, wrapped(1), 2, wrapped(2), rows)
                entry = ea.Bootstrap(1, wrapped(1), 2, wrapped(2), [ea.Registration(*r) for r in rows]).to_entry()
            elif kind == "rotation":
                dek_id, purpose = args
                assert isinstance(dek_id, int) and isinstance(purpose, str)
                proposer = (dek_id, NODE, 2)
                result = model.rotation(dek_id, purpose, wrapped(dek_id), proposer)
                entry = ea.Rotation(dek_id, PURPOSE[purpose], wrapped(dek_id), ea.Registration(*proposer)).to_entry()
            elif kind == "cutover":
                layer, stale = args
                assert isinstance(layer, str)
                dek_id = model.active[layer] if not stale else 6
                proposer = (dek_id, NODE, 3)
                result = model.cutover(layer, dek_id, layer, b"", proposer, index)
                sub_tag = ea.ENABLE_RAFT_ENVELOPE if layer == "raft" else ea.ENABLE_STORAGE_ENVELOPE
                entry = ea.Rotation(dek_id, PURPOSE[layer], b"", ea.Registration(*proposer), sub_tag=sub_tag).to_entry()
            else:
                dek_id, full, epoch = args
                result = model.registry.apply_registration(dek_id, full, epoch)  # type: ignore[arg-type]
                entry = ea.Registration(dek_id, full, epoch).to_entry()  # type: ignore[arg-type]
            if isinstance(result, Halt):
                continue  # the stream holds only entries that apply
            assert applier.apply(entry, index=index) != "skipped"
            log.append(entry)
            saved.append((directory / "keys.json").read_bytes())
    point = data.draw(st.integers(0, len(saved) - 1), label="keys.json as after entry")
    (directory / "keys.json").write_bytes(saved[point])
    with ea.Applier(directory, kek=ea.FileKek(cluster.kek_path)) as applier:
        report = applier.resync_sidecar(log, log_first_index=1, full_node_id=NODE)
        after = applier.sidecar
    assert after is not None and report.through_index == len(log)
    own = {row[0]: row[4] for row in model.registry.sorted_rows() if row[2] == NODE}
    assert (after.active_storage, after.active_raft) == (model.active["storage"], model.active["raft"])
    assert {i: (k.purpose.name.lower(), k.wrapped) for i, k in after.keys.items()} == dict(model.keys)
    assert (after.storage_envelope_active, after.storage_envelope_cutover_index, after.raft_envelope_cutover_index) == (
        model.storage_envelope_active,
        model.storage_cutover_index,
        model.raft_cutover_index,
    )
    assert after.raft_applied_index == len(log)
    assert {i: k.local_epoch for i, k in after.keys.items()} == {i: own.get(i, 0) for i in model.keys}


RESYNC_CHILD = """
import sys, encryption_applier as ea
log = [bytes.fromhex(h) for h in sys.argv[3].split(",")]
with ea.Applier(sys.argv[1], kek=ea.FileKek(sys.argv[2])) as applier:
    try:
        applier.resync_sidecar(log, log_first_index=1, full_node_id=int(sys.argv[4]))
        print("resynced")
    except ea.StorageError as e:
        print("StorageError", e.applied, e)
"""


def test_a_resync_that_cannot_replace_keys_json_takes_its_backup_back(lagging: Lagging, cluster: WrapOracle) -> None:
    """The backup is made durable first; when keys.json's own rename then
    fails, nothing of the resync stays: the new backup is removed again."""
    from fsfault import traced_ok

    base = lagging.directory.resolve()
    args = (str(base), str(cluster.kek_path), ",".join(e.hex() or "00" for e in lagging.log), str(NODE))
    # Rename 1 is the open making keys.json durable, rename 2 puts the
    # backup in place, rename 3 would put the new keys.json.
    run = traced_ok(RESYNC_CHILD, *args, under=base, fail="rename:3:EIO")
    renames = [c.fields[0] if c.fields else "" for c in run.of("rename")]
    assert any("before-resync" in r for r in renames), renames  # the backup was made
    assert run.proc.stdout.startswith("StorageError False"), run.proc.stdout
    assert "keys.json is unchanged" in run.proc.stdout
    assert keys_json(lagging) == lagging.old
    assert not list(lagging.directory.glob("keys.json.before-resync-*"))
    assert [c.path for c in run.of("unlink") if "before-resync" in c.path], "the backup was not removed"
    # A later resync that works keeps its backup.
    assert traced_ok(RESYNC_CHILD, *args, under=base).proc.stdout.strip() == "resynced"
    assert (lagging.directory / "keys.json.before-resync-1").read_bytes() == lagging.old
