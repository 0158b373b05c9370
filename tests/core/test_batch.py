"""Group commit (apply_many), the Raft applied index, durability modes and
GIL release."""

import itertools
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import encryption_applier as ea
from encryption_applier.testing import assert_registry_matches_model
from encryption_applier.testing.model import Halt, RegistryModel
from encryption_applier.testing.strategies import PlantedHalt, streams_with_halt

from helpers import dump_raw, plant_raw

A, B = 0xABCD_0001, 0x1234_0002

registrations = st.builds(
    ea.Registration,
    dek_id=st.sampled_from([1, 2]),
    full_node_id=st.sampled_from([0x1_0001, 0x2_0001, 0x1_0002]),
    local_epoch=st.integers(0, 5),
)


@settings(max_examples=60, deadline=None)
@given(stream=st.lists(registrations, max_size=40), as_bytes=st.booleans())
def test_apply_many_equals_one_by_one(
    tmp_path_factory: pytest.TempPathFactory, stream: list[ea.Registration], as_bytes: bool
) -> None:
    root = tmp_path_factory.mktemp("batch")
    model = RegistryModel()
    expected: list[str] = []
    halt: tuple[int, Halt] | None = None
    for position, reg in enumerate(stream):
        result = model.apply_registration(reg.dek_id, reg.full_node_id, reg.local_epoch)
        if isinstance(result, Halt):
            halt = (position, result)
            break
        expected.append(result)
    entries = [r.to_entry() for r in stream] if as_bytes else stream
    with ea.Applier(root / "many") as applier:
        if halt is None:
            assert applier.apply_many(entries) == expected
        else:
            with pytest.raises(ea.EncryptionApplyError) as info:
                applier.apply_many(entries)
            assert type(info.value).__name__ == halt[1].name
            assert info.value.position == halt[0]
            assert info.value.outcomes == expected
            for name, value in halt[1].attrs.items():
                assert getattr(info.value, name) == value
        assert [(r.key, r.value) for r in applier.registry.rows()] == model.raw_items()


def test_halt_in_the_middle_keeps_the_prefix_and_nothing_after(registry_dir: Path) -> None:
    entries = [
        ea.Registration(1, A, 1),
        ea.Registration(1, B, 1).to_entry(),
        ea.Registration(1, A, 3),
        ea.Registration(1, 0xFFFF_0001, 1),  # collides with A: position 3
        ea.Registration(2, A, 1),
    ]
    with ea.Applier(registry_dir) as applier:
        with pytest.raises(ea.NodeIDCollisionError) as info:
            applier.apply_many(entries, first_index=100)
        assert info.value.position == 3
        assert info.value.outcomes == ["inserted", "inserted", "advanced"]
        assert applier.registry.rows() == [ea.RegistryRow(1, 1, A, 1, 3), ea.RegistryRow(1, 2, B, 1, 1)]
        assert applier.applied_index == 102  # the last committed entry's index
        # The host fixes the cause and resumes from the halted index.
        assert applier.apply_many(entries[4:], first_index=104) == ["inserted"]
        assert applier.applied_index == 104


def test_malformed_entry_in_a_batch_halts_at_its_position(registry_dir: Path) -> None:
    with ea.Applier(registry_dir) as applier:
        with pytest.raises(ea.MalformedPayloadError) as info:
            applier.apply_many([ea.Registration(1, A, 1).to_entry(), b"\x06\x01", ea.Registration(1, B, 1).to_entry()])
        assert info.value.position == 1 and info.value.reason == "reserved_opcode"
        assert len(applier.registry) == 1


def test_wrong_types_are_refused_before_anything_is_applied(registry_dir: Path) -> None:
    with ea.Applier(registry_dir) as applier:
        with pytest.raises(TypeError, match=r"entries\[1\]"):
            applier.apply_many([ea.Registration(1, A, 1), "0301", ea.Registration(1, B, 1)])
        with pytest.raises(TypeError):
            applier.apply_many(ea.Registration(1, A, 1).to_entry())  # one entry, not a batch
        with pytest.raises(OverflowError):
            applier.apply_many([ea.Registration(1, A, 1)] * 2, first_index=2**64 - 1)
        with pytest.raises(OverflowError):
            applier.apply(ea.Registration(1, A, 1), index=-1)
        assert len(applier.registry) == 0
        assert applier.apply_many([]) == []
        assert applier.apply_many(iter([ea.Registration(1, A, 1)])) == ["inserted"]


class LyingLength:
    """An iterable whose __len__ (only a hint) claims far more than it yields."""

    def __init__(self, items: list[Any], length: int) -> None:
        self.items, self.length = items, length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Any:
        return iter(self.items)


class OwnIter(list[Any]):
    """A list subclass whose own __iter__ yields something else."""

    def __iter__(self) -> Any:
        return iter([ea.Registration(2, B, 1)])


def test_apply_many_trusts_neither_len_nor_a_list_subclass_storage(registry_dir: Path) -> None:
    with ea.Applier(registry_dir, sync=False) as applier:
        # A __len__ of 2**62 or 2**40 used to panic (capacity overflow) or
        # abort the process reserving room for that many entries.
        for length in (2**62, 2**40):
            assert applier.apply_many(LyingLength([], length)) == []
        assert applier.apply_many(LyingLength([ea.Registration(1, A, 1)], 2**40)) == ["inserted"]
        # A list subclass is iterated as it says, not read from its storage.
        assert applier.apply_many(OwnIter([ea.Registration(3, A, 1)])) == ["inserted"]
        assert [r.dek_id for r in applier.registry.rows()] == [1, 2]


def test_applied_index_makes_replay_exactly_once(registry_dir: Path) -> None:
    log = [ea.Registration(1, A, e).to_entry() for e in (1, 2, 3)] + [ea.Registration(2, B, 1).to_entry()]
    with ea.Applier(registry_dir) as applier:
        assert applier.applied_index is None and applier.registry.applied_index is None
        assert applier.apply(log[0], index=1) == "inserted"
        assert applier.apply(log[1], index=2) == "advanced"
    # After a restart the host replays the whole log: what was applied is
    # skipped (not re-checked: it would be a rollback now), the rest applies.
    with ea.Applier(registry_dir) as applier:
        assert applier.applied_index == 2
        assert applier.apply_many(log, first_index=1) == ["skipped", "skipped", "advanced", "inserted"]
        assert applier.apply_many(log, first_index=1) == ["skipped"] * 4
        assert applier.apply(b"not even an entry", index=3) == "skipped"
        assert applier.registry.applied_index == 4
    # The index lives outside the registry prefix: rows and digest ignore it.
    keys = [k for k, _ in dump_raw(registry_dir)]
    assert b"!encryption|applied_index" in keys
    with ea.Registry(registry_dir) as registry:
        assert len(registry) == 2 and registry.applied_index == 4


def test_index_without_changes_is_still_recorded_and_halts_record_nothing(registry_dir: Path) -> None:
    with ea.Applier(registry_dir) as applier:
        applier.apply_registration(ea.Registration(1, A, 5), index=7)
        assert applier.apply_registration(ea.Registration(1, A, 5), index=8) == "unchanged"
        assert applier.applied_index == 8
        with pytest.raises(ea.LocalEpochRollbackError):
            applier.apply_registration(ea.Registration(1, A, 4), index=9)
        assert applier.applied_index == 8
        assert applier.apply_registration(ea.Registration(1, A, 6)) == "advanced"  # no index: none recorded
        assert applier.applied_index == 8


def test_corrupt_applied_index_is_corruption(registry_dir: Path) -> None:
    ea.Applier(registry_dir).close()
    plant_raw(registry_dir, b"!encryption|applied_index", b"\x00" * 7)
    with pytest.raises(ea.RegistryCorruptionError) as info:
        ea.Applier(registry_dir)
    assert info.value.problem == "applied_index_length"
    with ea.Registry(registry_dir) as registry, pytest.raises(ea.RegistryCorruptionError):
        registry.applied_index  # noqa: B018


def test_bootstrap_and_rotation_in_a_batch_with_indexes(registry_dir: Path, kek_path: Path) -> None:
    kek = ea.FileKek(kek_path)
    entries = [
        ea.Registration(1, A, 1).to_entry(),
        ea.Bootstrap(1, kek.wrap(b"\x01" * 32), 2, kek.wrap(b"\x02" * 32), [ea.Registration(2, A, 1)]).to_entry(),
        ea.Registration(1, B, 1).to_entry(),
        ea.Rotation(3, ea.Purpose.STORAGE, kek.wrap(b"\x03" * 32), ea.Registration(3, A, 2)).to_entry(),
        ea.Registration(3, B, 1).to_entry(),
    ]
    with ea.Applier(registry_dir, kek=kek) as applier:
        assert applier.apply_many(entries, first_index=50) == [
            "inserted",
            "bootstrapped",
            "inserted",
            "rotated",
            "inserted",
        ]
        assert applier.applied_index == 54
        assert applier.sidecar.raft_applied_index == 53  # type: ignore[union-attr]
        assert len(applier.registry) == 5
        assert applier.apply_many(entries, first_index=50) == ["skipped"] * 5


def test_durable_and_fast_modes_both_keep_acknowledged_rows_across_a_crash(tmp_path: Path) -> None:
    for sync in (True, False):
        directory = tmp_path / f"sync-{sync}"
        # The child applies, then dies without closing anything.
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                "import os, sys, encryption_applier as ea\n"
                f"a = ea.Applier(sys.argv[1], sync={sync})\n"
                "a.apply_many([ea.Registration(1, 0x10000 + n, 1) for n in range(500)], first_index=1)\n"
                "os._exit(0)\n",
                str(directory),
            ],
            timeout=60,
        )
        assert child.returncode == 0
        with ea.Registry(directory) as registry:
            assert len(registry) == 500 and registry.applied_index == 500


def test_other_threads_run_while_a_large_batch_commits(registry_dir: Path) -> None:
    entries = [ea.Registration(1 + n % 50, 0x10000 + n // 50, 1).to_entry() for n in range(100_000)]
    ticks = 0
    stop = threading.Event()

    def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.0005)

    with ea.Applier(registry_dir) as applier:
        thread = threading.Thread(target=ticker)
        thread.start()
        time.sleep(0.01)
        before = ticks
        started = time.perf_counter()
        outcomes = applier.apply_many(entries)
        elapsed = time.perf_counter() - started
        during = ticks - before
        stop.set()
        thread.join()
    assert outcomes.count("inserted") == 100_000
    # The ticker wakes every ~0.5 ms; holding the GIL for the whole call
    # would leave it at most a tick or two.
    assert during >= max(5, int(elapsed / 0.0005 * 0.2)), (during, elapsed)


def test_sync_flag_accepts_only_bools(registry_dir: Path) -> None:
    with pytest.raises(TypeError):
        ea.Applier(registry_dir, sync="no")  # type: ignore[arg-type]
    with ea.Applier(registry_dir, sync=False) as applier:
        assert applier.apply(ea.Registration(1, A, 1)) == "inserted"
    assert os.path.exists(registry_dir / "data.mdb")


def test_a_corrupt_row_halts_only_the_entry_that_reads_it(registry_dir: Path) -> None:
    ea.Applier(registry_dir).close()
    plant_raw(registry_dir, ea.registry_key(5, 0x0001), b"\x00" * 11)
    with ea.Applier(registry_dir) as applier:
        # The rollback at position 2 comes first, although the batch reads
        # the corrupt row (for position 3) too.
        with pytest.raises(ea.LocalEpochRollbackError) as rollback:
            applier.apply_many(
                [
                    ea.Registration(1, A, 2),
                    ea.Registration(1, B, 1),
                    ea.Registration(1, A, 1),
                    ea.Registration(5, 0x1, 1),
                ]
            )
        assert rollback.value.position == 2
        with pytest.raises(ea.RegistryCorruptionError) as corrupt:
            applier.apply_many([ea.Registration(2, A, 1), ea.Registration(5, 0x1, 1), ea.Registration(2, B, 1)])
        assert corrupt.value.position == 1 and corrupt.value.outcomes == ["inserted"]
        view = applier.registry
        assert view.get(2, 0x0001) is not None and view.get(2, 0x0002) is None
        assert view.get(1, 0x0001) == ea.RegistryRow(1, 1, A, 2, 2)


# ------------------------------------------------------------- scattered indexes


def test_apply_many_with_scattered_indexes(tmp_path: Path) -> None:
    entries = [ea.Registration(1, A, 1), ea.Registration(1, B, 1), ea.Registration(1, A, 2), ea.Registration(2, A, 1)]
    with ea.Applier(tmp_path / "r") as applier:
        assert applier.apply_many(entries, indexes=[3, 7, 8, 20]) == ["inserted", "inserted", "advanced", "inserted"]
        assert applier.applied_index == 20
        assert applier.apply_many(entries, indexes=[3, 7, 8, 20]) == ["skipped"] * 4
        more = [ea.Registration(1, A, 2), ea.Registration(2, A, 1), ea.Registration(2, B, 5)]
        assert applier.apply_many(more, indexes=[8, 20, 25]) == ["skipped", "skipped", "inserted"]
        assert applier.applied_index == 25
        # a halt in the middle: the entries before it and their indexes stay
        halting = [ea.Registration(3, A, 1), ea.Registration(1, A, 1), ea.Registration(3, B, 1)]
        with pytest.raises(ea.LocalEpochRollbackError) as err:
            applier.apply_many(halting, indexes=[30, 31, 40])
        assert (err.value.position, err.value.outcomes) == (1, ["inserted"])
        assert applier.applied_index == 30


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"indexes": [1, 2]}, "2 indexes for 3 entries"),
        ({"indexes": [1, 3, 3]}, "increase strictly"),
        ({"indexes": [5, 4, 6]}, "indexes\\[1\\]=4 follows indexes\\[0\\]=5"),
        ({"indexes": [1, 2, 3], "first_index": 1}, "not both"),
    ],
)
def test_apply_many_index_arguments_are_checked_before_anything(
    tmp_path: Path, kwargs: dict[str, Any], words: str
) -> None:
    with ea.Applier(tmp_path / "r") as applier:
        with pytest.raises(ValueError, match=words):
            applier.apply_many([ea.Registration(1, A, 1)] * 3, **kwargs)
        assert len(applier.registry) == 0 and applier.applied_index is None


@settings(max_examples=40)
@given(
    st.lists(st.tuples(st.integers(1, 2), st.sampled_from([A, B]), st.integers(0, 3)), max_size=12),
    st.data(),
)
def test_apply_many_with_indexes_equals_one_by_one(rows: list[tuple[int, int, int]], data: st.DataObject) -> None:
    indexes = sorted(data.draw(st.sets(st.integers(1, 200), min_size=len(rows), max_size=len(rows))))
    entries = [ea.Registration(*r) for r in rows]
    with (
        tempfile.TemporaryDirectory() as root,
        ea.Applier(Path(root) / "many") as many,
        ea.Applier(Path(root) / "one") as one,
    ):
        try:
            got: Any = many.apply_many(entries, indexes=indexes)
        except ea.EncryptionApplyError as err:
            got = (type(err).__name__, err.position, err.outcomes)
        expected: list[str] = []
        want: Any = expected
        for position, (entry, index) in enumerate(zip(entries, indexes, strict=True)):
            try:
                expected.append(one.apply(entry, index=index))
            except ea.EncryptionApplyError as err:
                want = (type(err).__name__, position, expected)
                break
        assert got == want
        assert many.registry.rows() == one.registry.rows()
        assert many.applied_index == one.applied_index


@given(planted=streams_with_halt(), gaps=st.lists(st.integers(1, 1000), min_size=60, max_size=60))
def test_apply_many_with_indexes_against_the_model(
    tmp_path_factory: pytest.TempPathFactory, planted: PlantedHalt, gaps: list[int]
) -> None:
    """Scattered Raft indexes, checked against the reference model: the
    outcomes before the planted halt, the halt's position, the committed
    rows and applied index after it."""
    entries = planted.entries
    indexes = list(itertools.accumulate(gaps[: len(entries)]))
    replay = RegistryModel()
    expected = [replay.apply_registration(r.dek_id, r.full_node_id, r.local_epoch) for r in planted.registrations]
    with ea.Applier(tmp_path_factory.mktemp("batch") / "r", sync=False) as applier:
        with pytest.raises(planted.exception) as caught:
            applier.apply_many(entries, indexes=indexes)
        assert caught.value.position == planted.position
        assert caught.value.outcomes == expected[: planted.position]
        assert applier.applied_index == indexes[planted.position - 1]
        assert_registry_matches_model(applier, planted.model)
