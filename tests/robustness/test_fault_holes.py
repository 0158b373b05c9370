"""Nothing acknowledged is lost (issue 18): one test per hole found by the
fault and power-loss study, each failing with its fix reverted. The
file-system faults come from the project's LD_PRELOAD shim (fsfault)."""

import gc
import json
import sys
from pathlib import Path
from typing import Any

import pytest

import encryption_applier as ea
from encryption_applier.testing import RegistryModel, assert_registry_matches_model

from fsfault import traced, traced_ok
from helpers import NODE, WrapOracle

A = 0xABCD_0001


def reg(i: int) -> ea.Registration:
    """Entry i of a stream of distinct nodes (each insert is a new row)."""
    return ea.Registration(1 + i % 3, (0xA0 << 32) | i, 1)


def model_of(indexes: range) -> RegistryModel:
    model = RegistryModel()
    for i in indexes:
        r = reg(i)
        model.apply_registration(r.dek_id, r.full_node_id, r.local_epoch)
    return model


# ------------------------------------------- 1. group commit, map full


def staged_past_a_full_map(path: Path) -> tuple[ea.Applier, ea.Registry]:
    """An applier with 10 entries durable and 4,990 staged that cannot be
    committed: the map is 64 KiB and a view open in this process keeps it
    from growing."""
    applier = ea.Applier(path, map_size=1 << 16, group_commit=100_000, group_commit_ms=600_000)
    for i in range(1, 11):
        applier.apply(reg(i), index=i)
    applier.flush()
    view = ea.Registry(path)
    for i in range(11, 5001):
        assert applier.apply(reg(i), index=i) == "inserted"
    return applier, view


def test_a_group_lost_to_a_full_map_falls_back_and_refuses_what_follows(tmp_path: Path) -> None:
    path = tmp_path / "r"
    applier, view = staged_past_a_full_map(path)
    with pytest.raises(ea.StorageError) as lost:
        applier.flush()
    assert lost.value.replay_from == 11 and not lost.value.applied
    assert lost.value.aftermath == (ea.Aftermath("staged_not_committed", entries=4990, through_index=5000),)
    assert "4990 staged entries (Raft indexes up to 5000) were not committed" in str(lost.value)
    # In memory as on disk: nothing of the group is applied or staged.
    assert (applier.applied_index, applier.durable_index, applier.staged) == (10, 10, 0)
    # The entry after the lost ones would record index 5001 over rows never
    # written: refused, with the same replay point.
    with pytest.raises(ea.StorageError) as past:
        applier.apply(reg(5001), index=5001)
    assert past.value.replay_from == 11 and "replay from index 11" in str(past.value)
    assert applier.applied_index == 10
    # The documented replay converges.
    view.close()
    for i in range(11, 5002):
        assert applier.apply(reg(i), index=i) == "inserted"
    applier.close()
    with ea.Registry(path) as registry:
        assert registry.applied_index == 5001
        assert_registry_matches_model(registry, model_of(range(1, 5002)))


def test_a_batch_after_a_lost_group_names_the_replay_point(tmp_path: Path) -> None:
    applier, view = staged_past_a_full_map(tmp_path / "r")
    with pytest.raises(ea.StorageError) as lost:
        applier.apply_many([reg(5001).to_entry()], first_index=5001)
    assert lost.value.position == 0 and lost.value.replay_from == 11
    # A batch that replays the lost entries and goes on is applied whole
    # once the view is gone; one that starts past them is refused.
    with pytest.raises(ea.StorageError) as past:
        applier.apply_many([reg(5001).to_entry()], first_index=5001)
    assert past.value.position == 0 and past.value.outcomes == []
    view.close()
    outcomes = applier.apply_many([reg(i).to_entry() for i in range(11, 5002)], first_index=11)
    assert outcomes == ["inserted"] * 4991
    assert applier.durable_index == 5001
    applier.close()


def test_a_timer_commit_lost_to_a_full_map_is_raised_with_the_replay_point(tmp_path: Path) -> None:
    import time

    path = tmp_path / "r"
    applier = ea.Applier(path, map_size=1 << 16, group_commit=100_000, group_commit_ms=20)
    applier.apply(reg(1), index=1)
    applier.flush()
    view = ea.Registry(path)
    # The timer commits what is staged every ~20 ms until the rows no
    # longer fit; its failure is raised by the next apply.
    raised = None
    for i in range(2, 100_000):
        try:
            applier.apply(reg(i), index=i)
        except ea.StorageError as e:
            raised = e
            break
        if i % 500 == 0:
            time.sleep(0.05)
    assert raised is not None and "were not committed" in str(raised)
    durable = applier.durable_index
    assert durable is not None and raised.replay_from == durable + 1
    assert (applier.applied_index, applier.staged) == (durable, 0)
    view.close()
    applier.close()


# ------------------------------------------- 7. a dropped applier


def test_a_dropped_applier_whose_final_commit_fails_warns_and_reports(tmp_path: Path) -> None:
    applier, view = staged_past_a_full_map(tmp_path / "r")
    seen: list[Any] = []
    hook = sys.unraisablehook
    sys.unraisablehook = seen.append
    try:
        with pytest.warns(ResourceWarning, match="unclosed Applier .* final commit failed"):
            del applier
            gc.collect()
    finally:
        sys.unraisablehook = hook
    errors = [u.exc_value for u in seen if isinstance(u.exc_value, ea.StorageError)]
    assert len(errors) == 1, seen
    assert errors[0].replay_from == 11 and "4990 staged entries" in str(errors[0])
    view.close()
    with ea.Registry(tmp_path / "r") as registry:
        assert registry.applied_index == 10 and len(registry) == 10


@pytest.mark.slow
def test_an_applier_dropped_on_the_timer_thread_reports_its_failed_final_commit(tmp_path: Path) -> None:
    """The timer holds the applier while it commits; when the Python object
    goes meanwhile, the applier is dropped on the timer's thread (no GIL,
    no Python frame): its failed final commit is still reported, a
    ResourceWarning and the StorageError to sys.unraisablehook, from there."""
    import threading
    import time

    from encryption_applier._native import test_support

    path = tmp_path / "r"
    applier = ea.Applier(path, map_size=1 << 16, group_commit=100_000, group_commit_ms=20)
    for i in range(1, 11):
        applier.apply(reg(i), index=i)
    applier.flush()
    view = ea.Registry(path)  # keeps the 64 KiB map from growing
    # The timer's next tick holds the applier for 2 s before committing.
    assert test_support.hold_timer(applier, 2.0)
    for i in range(11, 5001):
        assert applier.apply(reg(i), index=i) == "inserted"
    seen: list[tuple[Any, int]] = []
    hook = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append((u, threading.get_native_id()))
    try:
        with pytest.warns(ResourceWarning, match="unclosed Applier .* final commit failed"):
            del applier
            gc.collect()
            assert not seen  # the timer holds the last reference: not dropped yet
            deadline = time.monotonic() + 20
            while not seen and time.monotonic() < deadline:
                time.sleep(0.02)
    finally:
        sys.unraisablehook = hook
    errors = [(u.exc_value, tid) for u, tid in seen if isinstance(u.exc_value, ea.StorageError)]
    assert len(errors) == 1, seen
    error, thread = errors[0]
    assert thread != threading.get_native_id()  # reported from the timer's thread
    assert error.replay_from == 11 and "4990 staged entries" in str(error)
    assert error.aftermath == (ea.Aftermath("staged_not_committed", entries=4990, through_index=5000),)
    view.close()
    with ea.Registry(path) as registry:
        assert registry.applied_index == 10 and len(registry) == 10


# ------------------------------------------- 9. Raft index 0


def test_index_0_is_no_index(tmp_path: Path) -> None:
    with ea.Applier(tmp_path / "r") as applier:
        assert applier.apply(ea.Registration(1, A, 1), index=0) == "inserted"
        assert applier.applied_index is None
        assert applier.apply(ea.Registration(1, A, 1), index=3) == "unchanged"
        # Go: a registration at index 0 after index 3 is applied, not skipped.
        assert applier.apply(ea.Registration(2, A, 1), index=0) == "inserted"
        assert applier.apply_registration(ea.Registration(2, A, 2), index=0) == "advanced"
        assert applier.applied_index == 3
        # apply_many(first_index=0) is no indexes.
        assert applier.apply_many([ea.Registration(3, A, 1).to_entry()], first_index=0) == ["inserted"]
        assert applier.applied_index == 3
        # indexes= holding 0 is refused before anything is applied.
        with pytest.raises(ValueError, match=r"indexes\[0\]=0"):
            applier.apply_many([ea.Registration(4, A, 1), ea.Registration(5, A, 1)], indexes=[0, 9])
        assert 4 not in applier.registry.dek_ids() and applier.applied_index == 3
    with ea.Registry(tmp_path / "r") as registry:
        assert registry.applied_index == 3


def test_a_raft_cutover_at_index_0_halts_even_after_index_10(registry_dir: Path, cluster: WrapOracle) -> None:
    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path)) as applier:
        applier.apply_bootstrap(cluster.bootstrap(), index=10)
        cutover = ea.Rotation(2, ea.Purpose.RAFT, b"", ea.Registration(2, NODE, 2), sub_tag=ea.ENABLE_RAFT_ENVELOPE)
        with pytest.raises(ea.PayloadRejectedError) as halt:
            applier.apply_rotation(cutover, index=0)
        assert halt.value.reason == "cutover_without_index"
        assert applier.sidecar is not None and applier.sidecar.raft_envelope_cutover_index == 0


def test_cli_first_index_0_applies_without_indexes(tmp_path: Path) -> None:
    from encryption_applier.cli import main

    entries = tmp_path / "entries.txt"
    entries.write_text("\n".join(ea.Registration(1, 0x10000 + i, 1).to_entry().hex() for i in range(3)) + "\n")
    import io

    out, err = io.StringIO(), io.StringIO()
    assert main(["apply", str(tmp_path / "r"), str(entries), "--first-index", "0"], out, err) == 0, err.getvalue()
    with ea.Registry(tmp_path / "r") as registry:
        assert len(registry) == 3 and registry.applied_index is None


# ------------------------------------------- 10. version-1 keys.json


def test_a_version_1_sidecar_is_rewritten_as_version_2_by_an_apply_that_changes_nothing(
    registry_dir: Path, cluster: WrapOracle
) -> None:
    kek = ea.FileKek(cluster.kek_path)
    with ea.Applier(registry_dir, kek=kek) as applier:
        applier.apply_bootstrap(cluster.bootstrap())
    path = registry_dir / "keys.json"
    doc = json.loads(path.read_bytes())
    doc["version"] = 1
    del doc["storage_envelope_cutover_index"]
    path.write_text(json.dumps(doc, indent=2))
    with ea.Applier(registry_dir, kek=kek) as applier:
        assert json.loads(path.read_bytes())["version"] == 1  # opening writes back the same bytes
        # An exact bootstrap replay changes no field, as a stale cutover would not.
        bootstrap = ea.Bootstrap(1, cluster.wrapped_bytes(registry_dir, 1), 2, cluster.wrapped_bytes(registry_dir, 2))
        assert applier.apply_bootstrap(bootstrap) == "unchanged"
    after = json.loads(path.read_bytes())
    assert after["version"] == 2 and after["storage_envelope_cutover_index"] == 0
    assert {k: v for k, v in after.items() if k not in ("version", "storage_envelope_cutover_index")} == {
        k: v for k, v in doc.items() if k != "version"
    }


# ------------------------------------------- 2, 5. keys.json past its rename

CHILD_KEYED = """
import os, sys, encryption_applier as ea
directory, kek_path, entry_hex, index = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
applier = ea.Applier(directory, kek=ea.FileKek(kek_path))
os.environ["EA_FS_FAIL"] = "dirsync:1:EIO"     # the directory fsync of the next keys.json write
try:
    applier.apply(bytes.fromhex(entry_hex), index=index)
    print("applied")
except ea.StorageError as e:
    print("raised", e.applied, e.replay_from, applier.applied_index, e.operation)
del os.environ["EA_FS_FAIL"]
mark("retry")
print("retry", applier.apply(bytes.fromhex(entry_hex), index=index), applier.applied_index)
applier.close()
"""


def keyed(directory: Path, cluster: WrapOracle, entry: bytes, index: int) -> Any:
    run = traced_ok(
        CHILD_KEYED, str(directory), str(cluster.kek_path), entry.hex(), str(index), under=directory.parent.resolve()
    )
    return run


def retry_rewrites_keys_json(run: Any) -> None:
    """After the failure, the retry renames keys.json into place again and
    fsyncs its directory before the registry records the index: a failed
    directory fsync may have dropped the first rename for good."""
    calls = run.calls
    retry = next(i for i, c in enumerate(calls) if c.kind == "mark" and c.path == "retry")
    after = calls[retry:]
    renames = [i for i, c in enumerate(after) if c.kind == "rename" and c.target.endswith("keys.json")]
    assert renames, "the retry did not write keys.json again"
    syncs = [i for i, c in enumerate(after) if c.kind == "sync" and c.is_dir and not c.failed and i > renames[0]]
    commits = [i for i, c in enumerate(after) if c.kind == "write" and c.dsync]  # the meta page of a commit
    assert syncs and commits and syncs[0] < commits[-1]


def test_a_bootstrap_whose_directory_fsync_fails_is_completed_by_the_retry(
    registry_dir: Path, cluster: WrapOracle
) -> None:
    ea.Applier(registry_dir).close()
    run = keyed(registry_dir, cluster, cluster.bootstrap().to_entry(), 1)
    first, retry = run.proc.stdout.splitlines()
    assert first == "raised True None None making keys.json durable", first
    # Its rows were committed before keys.json: the retry finds them.
    assert retry == "retry unchanged 1", retry
    retry_rewrites_keys_json(run)
    with ea.Registry(registry_dir) as registry:
        assert registry.applied_index == 1 and len(registry) == 2


def test_a_cutover_whose_directory_fsync_fails_keeps_its_row_and_is_completed(
    booted: Path, cluster: WrapOracle
) -> None:
    cutover = ea.Rotation(1, ea.Purpose.STORAGE, b"", ea.Registration(1, A, 2), sub_tag=ea.ENABLE_STORAGE_ENVELOPE)
    run = keyed(booted, cluster, cutover.to_entry(), 5)
    first, retry = run.proc.stdout.splitlines()
    assert first == "raised True 2 1 making keys.json durable", first
    assert retry == "retry already-active 5", retry
    retry_rewrites_keys_json(run)
    with ea.Registry(booted) as registry:
        # The flipped layer is live, so its proposer row (NODE advanced
        # from the bootstrap's epoch 1 to 2) must be there.
        assert NODE == A and registry.get(1, A & 0xFFFF) == ea.RegistryRow(1, A & 0xFFFF, A, 1, 2)
        assert registry.applied_index == 5
    sidecar = ea.read_sidecar(booted / "keys.json")
    assert sidecar is not None and sidecar.storage_envelope_active and sidecar.storage_envelope_cutover_index == 5


def test_opening_makes_a_renamed_keys_json_durable(booted: Path, cluster: WrapOracle) -> None:
    """A process that died between the rename and the directory fsync
    leaves keys.json in place but not durable: the next open renames it
    again (same bytes) and fsyncs the directory."""
    before = (booted / "keys.json").read_bytes()
    run = traced_ok(
        "import sys, encryption_applier as ea\nea.Applier(sys.argv[1], kek=ea.FileKek(sys.argv[2])).close()\n",
        str(booted),
        str(cluster.kek_path),
        under=booted.resolve(),
    )
    kinds = [(c.kind, c.path.rsplit("/", 1)[-1]) for c in run.calls if not c.failed]
    rename = kinds.index(("rename", "keys.json.tmp"))
    assert ("sync", booted.name) in kinds[rename:]
    assert (booted / "keys.json").read_bytes() == before


# ------------------------------------------- 6. creating a registry


def test_creating_a_registry_fsyncs_the_directories_before_acknowledging(tmp_path: Path) -> None:
    base = tmp_path.resolve()
    target = base / "parent" / "registry"
    run = traced_ok(
        "import sys, encryption_applier as ea\n"
        "with ea.Applier(sys.argv[1]) as a:\n"
        "    a.apply(ea.Registration(1, 0xABCD0001, 1), index=1)\n"
        "    mark('ack', 1)\n",
        str(target),
        under=base,
    )
    calls = run.calls
    ack = next(i for i, c in enumerate(calls) if c.kind == "mark" and c.path == "ack")

    def synced_after(kind: str, path: Path, directory: Path) -> bool:
        made = next(i for i, c in enumerate(calls) if c.kind == kind and c.path == str(path))
        return any(c.kind == "sync" and c.is_dir and c.path == str(directory) and not c.failed for c in calls[made:ack])

    assert synced_after("mkdir", base / "parent", base)
    assert synced_after("mkdir", target, base / "parent")
    assert synced_after("create", target / "data.mdb", target)


# ------------------------------------------- 3. a failed meta-page write

CHILD_META = """
import os, sys, encryption_applier as ea
directory = sys.argv[1]
applier = ea.Applier(directory)
for i in range(1, 6):
    applier.apply(ea.Registration(1, 0xA0000 + i, 1), index=i)
view = ea.Registry(directory)
os.environ["EA_FS_FAIL"] = "dsync_write:1:EIO"   # the O_DSYNC meta-page write of the next commit
os.environ["EA_FS_FAIL_MATCH"] = "data.mdb"
try:   # a commit that grows the file: its new root is past the old last page
    applier.apply_many([ea.Registration(2, 0xB0000 + i, 1) for i in range(400)], first_index=6)
except ea.StorageError as e:
    print("raised", e.replay_from, "unusable" in str(e), [a.kind for a in e.aftermath])
applier.close()
try:
    ea.Applier(directory)
except ea.RegistryOpenError as e:
    print("refused", "still hold it" in str(e) and "every Registry view" in str(e))
view.close()
"""


def test_a_failed_meta_write_reopens_at_the_last_good_commit(tmp_path: Path) -> None:
    directory = tmp_path.resolve() / "r"
    run = traced_ok(CHILD_META, str(directory), under=directory)
    assert run.proc.stdout.splitlines() == ["raised 6 True ['environment_unusable']", "refused True"]
    failed = [c for c in run.calls if c.kind == "write" and c.failed]
    assert len(failed) == 1 and failed[0].dsync
    # What LMDB left: one meta half new (its db records) and half old (its
    # txnid), never picked. The registry opens at the last good commit.
    report = ea.verify(directory)
    assert report.ok and report.warnings, report
    assert [w.problem for w in report.warnings] == ["meta"], report.warnings
    import io

    from encryption_applier.cli import main

    out, err = io.StringIO(), io.StringIO()
    assert main(["verify", str(directory)], out, err) == 0, err.getvalue()
    assert "WARNING meta at page 0 (harmless: LMDB does not use it)" in out.getvalue(), out.getvalue()
    with ea.Applier(directory) as applier:
        assert applier.applied_index == 5 and len(applier.registry) == 5
        assert applier.apply(ea.Registration(1, 0xA0006, 1), index=6) == "inserted"
    assert not ea.verify(directory).warnings  # the next commits overwrote it


# ------------------------------------------- 4. sync=False after a failed fsync

CHILD_RELAXED = """
import os, sys, encryption_applier as ea
applier = ea.Applier(sys.argv[1], sync=False)
for i in range(1, 4):
    applier.apply(ea.Registration(1, 0xA0000 + i, 1), index=i)
os.environ["EA_FS_FAIL_MATCH"] = "data.mdb"
os.environ["EA_FS_FAIL"] = "sync:1:EIO"          # the data fsync of the next commit
try:
    applier.apply(ea.Registration(1, 0xA0004, 1), index=4)
except ea.StorageError as e:
    print("raised", e.replay_from)
del os.environ["EA_FS_FAIL"]
for i in (4, 5, 6):
    mark("commit", i)
    print(applier.apply(ea.Registration(1, 0xA0000 + i, 1), index=i))
applier.close()
"""


def test_relaxed_mode_writes_the_meta_durably_after_a_failed_commit(tmp_path: Path) -> None:
    directory = tmp_path.resolve() / "r"
    run = traced_ok(CHILD_RELAXED, str(directory), under=directory)
    assert run.proc.stdout.split() == ["raised", "4", "inserted", "inserted", "inserted"]
    meta_writes: dict[int, list[bool]] = {}
    current = None
    for call in run.calls:
        if call.kind == "mark":
            current = int(call.fields[0])
        elif current and call.kind == "write" and not call.failed and call.offset < 2 * 4096:
            meta_writes.setdefault(current, []).append(call.dsync)
    # The commit after the failure: its meta through the O_DSYNC descriptor;
    # the ones after it relaxed again.
    assert meta_writes == {4: [True], 5: [False], 6: [False]}, meta_writes


# ------------------------------------------- 8. a creation no commit completed


def initial_metas(tmp_path: Path) -> bytes:
    """data.mdb as LMDB creates it: two meta pages of transaction 0."""
    fresh = tmp_path / "fresh"
    ea.Applier(fresh).close()
    data = (fresh / "data.mdb").read_bytes()
    assert len(data) == 2 * 4096
    return data


@pytest.mark.parametrize(
    "state",
    ["second meta blank", "first meta blank", "only the first page", "all zero", "half a page"],
)
def test_a_creation_cut_short_is_reported_and_recreated_only_on_request(tmp_path: Path, state: str) -> None:
    metas = initial_metas(tmp_path)
    content = {
        "second meta blank": metas[:4096] + bytes(4096),
        "first meta blank": bytes(4096) + metas[4096:],
        "only the first page": metas[:4096],
        "all zero": bytes(8192),
        "half a page": bytes(2048),
    }[state]
    directory = tmp_path / "r"
    directory.mkdir(mode=0o700)
    (directory / "data.mdb").write_bytes(content)
    for opener in (lambda: ea.Applier(directory), lambda: ea.Registry(directory)):
        with pytest.raises(ea.UncommittedRegistryError, match="no committed transaction"):
            opener()
    assert (directory / "data.mdb").read_bytes() == content  # refused, untouched
    with ea.Applier(directory, recreate_uncommitted=True) as applier:
        assert applier.applied_index is None and len(applier.registry) == 0
        assert applier.apply(ea.Registration(1, A, 1), index=1) == "inserted"
    with ea.Registry(directory) as registry:
        assert registry.applied_index == 1 and len(registry) == 1


def test_a_creation_with_both_initial_metas_opens_as_an_empty_registry(tmp_path: Path) -> None:
    directory = tmp_path / "r"
    directory.mkdir(mode=0o700)
    (directory / "data.mdb").write_bytes(initial_metas(tmp_path))
    with ea.Registry(directory) as registry:  # as LMDB itself opens it
        assert len(registry) == 0 and registry.applied_index is None


@pytest.mark.parametrize("damage", ["meta of the commit zeroed", "truncated to the metas"])
def test_damage_to_a_registry_that_committed_is_never_taken_for_an_uncommitted_one(tmp_path: Path, damage: str) -> None:
    directory = tmp_path / "r"
    with ea.Applier(directory) as applier:
        applier.apply(ea.Registration(1, A, 1), index=1)  # transaction 1: meta page 1
    path = directory / "data.mdb"
    data = path.read_bytes()
    damaged = data[:4096] + bytes(4096) + data[8192:] if damage == "meta of the commit zeroed" else data[:8192]
    path.write_bytes(damaged)
    for recreate in (False, True):
        with pytest.raises(ea.RegistryOpenError) as refused:
            ea.Applier(directory, recreate_uncommitted=recreate)
        assert not isinstance(refused.value, ea.UncommittedRegistryError), refused.value
    assert path.read_bytes() == damaged


# ------------------------------------------- what the fixes cost a strict apply


def test_a_strict_apply_makes_one_data_fsync_and_one_dsync_meta_write_and_no_directory_fsync(tmp_path: Path) -> None:
    """Directory fsyncs belong to creation and keys.json writes, never to a
    registration: per strict entry, the page writes, one fdatasync and
    the O_DSYNC meta write, as before the fixes."""
    directory = tmp_path.resolve() / "r"
    ea.Applier(directory).close()
    run = traced_ok(
        "import sys, encryption_applier as ea\n"
        "with ea.Applier(sys.argv[1]) as a:\n"
        "    for i in range(1, 21):\n"
        "        mark('entry', i)\n"
        "        a.apply(ea.Registration(1, 0xA0000 + i, 1), index=i)\n"
        "    mark('entry', 0)\n",
        str(directory),
        under=directory,
    )
    per_entry: dict[int, list[str]] = {}
    current = None
    for call in run.calls:
        if call.kind == "mark":
            current = int(call.fields[0]) or None
        elif current is not None:
            kind = (
                "dirsync"
                if call.kind == "sync" and call.is_dir
                else "dsync"
                if call.kind == "write" and call.dsync
                else call.kind
            )
            per_entry.setdefault(current, []).append(kind)
    assert sorted(per_entry) == list(range(1, 21))
    for entry, kinds in per_entry.items():
        assert kinds.count("sync") == 1 and kinds.count("dsync") == 1, (entry, kinds)
        assert "dirsync" not in kinds and "rename" not in kinds and "create" not in kinds, (entry, kinds)


def test_the_cli_says_how_to_recover_from_a_storage_fault(tmp_path: Path) -> None:
    directory = tmp_path.resolve() / "r"
    ea.Applier(directory).close()
    entries = tmp_path / "entries.hex"
    entries.write_text("".join(reg(i).to_entry().hex() + "\n" for i in range(1, 6)))
    cli = "import sys\nfrom encryption_applier.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    args = ["apply", str(directory), str(entries), "--first-index", "1"]
    failed = traced(cli, *args, under=directory, fail="filesync:1:EIO", match="data.mdb")
    assert failed.proc.returncode == 1, failed.proc.stderr
    assert "HALT StorageError" in failed.proc.stderr
    assert "nothing of line 1 was written; run the same command again to replay it." in failed.proc.stderr
    again = traced_ok(cli, *args, under=directory)
    assert "applied 5 entries" in again.proc.stdout
    with ea.Registry(directory) as registry:
        assert registry.applied_index == 5
        assert_registry_matches_model(registry, model_of(range(1, 6)))
