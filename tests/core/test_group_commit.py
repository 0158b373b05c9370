"""Write-behind group commit (issue 12): one-by-one semantics, rows and
index committed together, durable_index, the timer, and flushing before a
halt, a bootstrap, a batch and close."""

import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import encryption_applier as ea
from encryption_applier.testing import RegistryModel, assert_registry_matches_model
from encryption_applier.testing.strategies import PlantedHalt, streams_with_halt

from helpers import WrapOracle

A, B = 0xABCD_0001, 0x1234_0002


def test_staging_commits_every_k_entries_and_on_flush(tmp_path: Path) -> None:
    with ea.Applier(tmp_path / "r", group_commit=4, group_commit_ms=60_000) as applier:
        for index in (1, 2, 3):
            assert applier.apply(ea.Registration(1, 0x1_0010 + index, 1), index=index) == "inserted"
        assert (applier.applied_index, applier.durable_index, applier.staged) == (3, None, 3)
        assert len(applier.registry) == 0  # views see what is committed
        assert applier.apply(ea.Registration(1, A, 1), index=4) == "inserted"
        assert (applier.applied_index, applier.durable_index, applier.staged) == (4, 4, 0)
        assert len(applier.registry) == 4
        applier.apply(ea.Registration(1, A, 2), index=5)
        assert applier.apply(ea.Registration(1, A, 2), index=5) == "skipped"  # staged counts as applied
        applier.flush()
        assert (applier.durable_index, applier.staged) == (5, 0)
        assert applier.registry.get(1, A & 0xFFFF).last_seen_local_epoch == 2  # type: ignore[union-attr]


def test_a_quiet_host_is_durable_within_the_delay(tmp_path: Path) -> None:
    with ea.Applier(tmp_path / "r", group_commit=1000, group_commit_ms=20) as applier:
        applier.apply(ea.Registration(1, A, 1), index=7)
        deadline = time.monotonic() + 10
        while applier.durable_index != 7 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert applier.durable_index == 7 and applier.staged == 0


def test_close_commits_what_is_staged(tmp_path: Path) -> None:
    with ea.Applier(tmp_path / "r", group_commit=100, group_commit_ms=60_000) as applier:
        applier.apply(ea.Registration(1, A, 1), index=1)
        applier.apply(ea.Registration(1, B, 1), index=2)
    with ea.Registry(tmp_path / "r") as view:
        assert len(view) == 2 and view.applied_index == 2


def test_a_halt_commits_the_entries_before_it(tmp_path: Path) -> None:
    with ea.Applier(tmp_path / "r", group_commit=100, group_commit_ms=60_000) as applier:
        applier.apply(ea.Registration(1, A, 3), index=1)
        applier.apply(ea.Registration(1, B, 1), index=2)
        with pytest.raises(ea.LocalEpochRollbackError):
            applier.apply(ea.Registration(1, A, 2), index=3)
        assert (applier.durable_index, applier.applied_index, applier.staged) == (2, 2, 0)
        assert len(applier.registry) == 2


def test_bootstrap_and_batches_commit_what_is_staged_first(tmp_path: Path, cluster: WrapOracle) -> None:
    with ea.Applier(tmp_path / "r", kek=ea.FileKek(cluster.kek_path), group_commit=100, group_commit_ms=60_000) as a:
        a.apply(ea.Registration(9, A, 1), index=1)
        assert a.apply_bootstrap(cluster.bootstrap(), index=2) == "bootstrapped"
        assert (a.durable_index, a.staged) == (2, 0)
        a.apply(ea.Registration(9, B, 1), index=3)
        assert a.apply_many([ea.Registration(9, A, 2)], first_index=4) == ["advanced"]
        assert (a.durable_index, a.staged) == (4, 0) and len(a.registry) == 4


def test_group_commit_arguments(tmp_path: Path) -> None:
    for kwargs, words in (
        ({"group_commit": 0}, "at least 1"),
        ({"group_commit_ms": 5}, "needs group_commit"),
        ({"group_commit": 4, "group_commit_ms": 0}, "positive"),
        ({"group_commit": 4, "group_commit_ms": -1}, "positive"),
    ):
        with pytest.raises(ValueError, match=words):
            ea.Applier(tmp_path / "r", **kwargs)  # type: ignore[arg-type]


@settings(max_examples=40)
@given(
    st.lists(st.tuples(st.integers(1, 2), st.sampled_from([A, B]), st.integers(0, 4)), max_size=30),
    st.integers(1, 8),
)
def test_group_commit_equals_one_by_one(rows: list[tuple[int, int, int]], k: int) -> None:
    """Outcomes, halts and (at every halt and at the end) the committed
    registry equal one-by-one apply."""
    import tempfile

    with (
        tempfile.TemporaryDirectory() as root,
        ea.Applier(Path(root) / "g", group_commit=k, group_commit_ms=60_000) as grouped,
        ea.Applier(Path(root) / "o") as one,
    ):
        for index, row in enumerate(rows, start=1):
            results: list[Any] = []
            for applier in (grouped, one):
                try:
                    results.append(applier.apply(ea.Registration(*row), index=index))
                except ea.EncryptionApplyError as err:
                    results.append(type(err).__name__)
            assert results[0] == results[1]
            if not results[0].islower():  # a halt: both registries as after the entry before
                assert grouped.registry.rows() == one.registry.rows()
                assert grouped.durable_index == grouped.applied_index == one.applied_index
        grouped.flush()
        assert grouped.registry.rows() == one.registry.rows()
        assert grouped.durable_index == one.applied_index


@settings(max_examples=40)
@given(planted=streams_with_halt(), k=st.integers(1, 8))
def test_group_commit_against_the_model(tmp_path_factory: pytest.TempPathFactory, planted: PlantedHalt, k: int) -> None:
    """The reference model is the oracle here too, not only one-by-one
    apply: each outcome before the planted halt is the model's, the halt is
    raised at its entry, and the committed registry is the model's then."""
    replay = RegistryModel()
    expected = [
        replay.apply_registration(r.dek_id, r.full_node_id, r.local_epoch)
        for r in planted.registrations[: planted.position]
    ]
    directory = tmp_path_factory.mktemp("group") / "r"
    with ea.Applier(directory, group_commit=k, group_commit_ms=60_000, sync=False) as applier:
        for index, (registration, outcome) in enumerate(zip(planted.registrations, expected, strict=False), start=1):
            assert applier.apply(registration, index=index) == outcome
        with pytest.raises(planted.exception):
            applier.apply(planted.registrations[planted.position], index=planted.position + 1)
        assert applier.durable_index == applier.applied_index == planted.position
        assert_registry_matches_model(applier, planted.model)


@pytest.mark.parametrize(
    "mode", [{"group_commit": 4}, {"pipelined": True, "group_commit": 4}], ids=["group", "pipelined"]
)
def test_a_registration_without_an_index_is_refused_by_the_write_behind_modes(
    tmp_path: Path, mode: dict[str, Any], cluster: WrapOracle
) -> None:
    """Staged without its Raft index, a lost group could not be replayed
    exactly: refused, nothing applied; keyed entries and batches commit
    before they return, so they need none."""
    with ea.Applier(tmp_path / "r", kek=ea.FileKek(cluster.kek_path), **mode) as applier:
        assert applier.apply(ea.Registration(9, A, 1), index=1) == "inserted"
        for call in (
            lambda: applier.apply(ea.Registration(9, B, 1)),
            lambda: applier.apply(ea.Registration(9, B, 1).to_entry(), index=0),
            lambda: applier.apply_registration(ea.Registration(9, B, 1)),
        ):
            with pytest.raises(ValueError, match=r"^index= is needed with group commit: .* nothing was applied"):
                call()
            assert (applier.applied_index, applier.staged) == (1, 1)
        assert applier.apply_bootstrap(cluster.bootstrap()) == "bootstrapped"
        assert applier.apply_many([ea.Registration(9, B, 1)]) == ["inserted"]
        assert applier.staged == 0 and applier.registry.get(9, B & 0xFFFF) is not None
    # The default mode and sync=False take registrations without indexes.
    for kwargs in ({}, {"sync": False}):
        with ea.Applier(tmp_path / f"plain-{len(kwargs)}", **kwargs) as plain:
            assert plain.apply(ea.Registration(9, A, 1)) == "inserted"
