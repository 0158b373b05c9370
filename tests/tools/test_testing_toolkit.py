"""encryption_applier.testing: the strategies, the assertions, the KEK
helper and the pytest plugin, used as an integration-test writer would."""

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import encryption_applier as ea
from encryption_applier.testing import (
    RegistryModel,
    assert_registries_equal,
    assert_registry_matches_model,
    expect,
    temporary_kek,
)
from encryption_applier.testing.strategies import (
    PlantedHalt,
    Stream,
    entries,
    payloads,
    streams_with_halt,
    valid_streams,
)

from helpers import REPO, run_user_tests


@given(payload=payloads())
def test_payloads_encode_and_decode_to_themselves(payload: ea.Registration | ea.Bootstrap | ea.Rotation) -> None:
    assert ea.decode_entry(payload.to_entry()) == payload


@given(entry=entries())
def test_entries_are_encryption_entries(entry: bytes) -> None:
    assert ea.is_encryption_opcode(entry[0])


@given(stream=valid_streams())
def test_valid_streams_apply_without_a_halt(tmp_path_factory: pytest.TempPathFactory, stream: Stream) -> None:
    with ea.Applier(tmp_path_factory.mktemp("reg") / "r", sync=False) as applier:
        assert applier.apply_many(stream.entries) == stream.outcomes
        assert_registry_matches_model(applier, stream.model)


@given(stream=valid_streams(min_size=30, max_size=30))
def test_a_stream_carries_what_the_model_says_of_it(stream: Stream) -> None:
    # Replaying the registrations through a fresh model gives the stream's
    # outcomes and final rows: what it carries is what the model says.
    replay = RegistryModel()
    outcomes = [replay.apply_registration(r.dek_id, r.full_node_id, r.local_epoch) for r in stream.registrations]
    assert len(stream.registrations) == 30
    assert outcomes == stream.outcomes
    assert replay.sorted_rows() == stream.model.sorted_rows()


def test_valid_streams_do_reach_unchanged_and_advanced() -> None:
    seen: set[str] = set()

    @given(stream=valid_streams(min_size=5))
    def collect(stream: Stream) -> None:
        seen.update(stream.outcomes)

    collect()
    assert seen == {"inserted", "unchanged", "advanced"}


@given(planted=streams_with_halt())
def test_a_planted_halt_halts_there_and_keeps_the_prefix(
    tmp_path_factory: pytest.TempPathFactory, planted: PlantedHalt
) -> None:
    with ea.Applier(tmp_path_factory.mktemp("reg") / "r", sync=False) as applier:
        with pytest.raises(planted.exception) as caught:
            applier.apply_many(planted.entries)
        assert caught.value.position == planted.position
        for name, value in planted.halt.attrs.items():
            assert getattr(caught.value, name) == value
        assert_registry_matches_model(applier, planted.model)
        # One by one, the model's expectation holds at the planted entry.
        expect(planted.halt, lambda: applier.apply(planted.entries[planted.position]))


def test_planted_halts_cover_both_kinds() -> None:
    seen: set[str] = set()

    @given(planted=streams_with_halt())
    def collect(planted: PlantedHalt) -> None:
        seen.add(planted.halt.name)

    collect()
    assert seen == {"NodeIDCollisionError", "LocalEpochRollbackError"}


def test_assert_registries_equal_shows_the_differing_rows(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    with ea.Applier(a) as x, ea.Applier(b) as y:
        for applier in (x, y):
            applier.apply(ea.Registration(1, 0xABCD_0001, 1).to_entry())
        assert_registries_equal(x, y)
        assert_registries_equal(a, b)
        assert_registries_equal(x.registry, str(b))
        y.apply(ea.Registration(1, 0xABCD_0001, 2).to_entry())
        y.apply(ea.Registration(7, 0x2, 3).to_entry())
    with pytest.raises(AssertionError) as caught:
        assert_registries_equal(a, b)
    message = str(caught.value)
    assert message.splitlines() == [
        "registries differ: 0 row(s) only in a, 1 only in b, 1 changed",
        f"  a = {a}",
        f"  b = {b}",
        "< dek_id=1 node_id16=0x0001 full_node_id=0x00000000abcd0001 first_seen_local_epoch=1 last_seen_local_epoch=1",
        "> dek_id=1 node_id16=0x0001 full_node_id=0x00000000abcd0001 first_seen_local_epoch=1 last_seen_local_epoch=2",
        "> dek_id=7 node_id16=0x0002 full_node_id=0x0000000000000002 first_seen_local_epoch=3 last_seen_local_epoch=3",
    ]


def test_assert_registries_equal_cuts_long_differences(tmp_path: Path) -> None:
    with ea.Applier(tmp_path / "a") as x, ea.Applier(tmp_path / "b"):
        x.apply_many([ea.Registration(1, n, 1).to_entry() for n in range(50)])
    with pytest.raises(AssertionError, match=r"50 row\(s\) only in a") as caught:
        assert_registries_equal(tmp_path / "a", tmp_path / "b")
    assert str(caught.value).endswith("... and 30 more")


def test_assert_registry_matches_model(tmp_path: Path) -> None:
    model = RegistryModel()
    with ea.Applier(tmp_path / "r") as applier:
        for reg in [(1, 5, 1), (1, 5, 3), (2, 6, 1)]:
            expect(model.apply_registration(*reg), lambda reg=reg: applier.apply(ea.Registration(*reg).to_entry()))
        assert_registry_matches_model(applier, model)
        model.apply_registration(3, 9, 9)
        with pytest.raises(AssertionError, match="> dek_id=3 node_id16=0x0009"):
            assert_registry_matches_model(applier, model)


def test_expect_fails_on_the_wrong_outcome_or_halt(tmp_path: Path) -> None:
    with ea.Applier(tmp_path / "r") as applier:
        entry = ea.Registration(1, 5, 1).to_entry()
        with pytest.raises(AssertionError, match="the model says 'unchanged'"):
            expect("unchanged", lambda: applier.apply(entry))
        rollback = RegistryModel({(1, 5): (5, 1, 4)}).apply_registration(1, 5, 2)
        with pytest.raises(AssertionError, match="returned 'unchanged'"):
            expect(rollback, lambda: applier.apply(entry))


def test_temporary_kek_is_private_and_wiped(tmp_path: Path) -> None:
    with temporary_kek() as kek:
        path = kek.path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        # A second name for the same inode shows what is left of the key.
        os.link(path, tmp_path / "peek")
        assert (tmp_path / "peek").read_bytes() != bytes(32)
        assert kek.unwrap(kek.wrap(b"k" * 32)) == b"k" * 32
    assert not path.parent.exists()
    assert (tmp_path / "peek").read_bytes() == bytes(32)
    # A test may remove the key itself; the directory still goes.
    with temporary_kek() as kek:
        kek.path.unlink()
    assert not kek.path.parent.exists()


PLUGIN_TEST = """
import encryption_applier as ea


def test_applier(ea_registry_path, ea_applier):
    assert ea_applier.path == ea_registry_path
    assert ea_applier.apply(ea.Registration(1, 2, 3).to_entry()) == "inserted"


def test_keyed_applier(ea_registry_path, ea_kek, ea_keyed_applier):
    assert ea_keyed_applier.path == ea_registry_path
    boot = ea.Bootstrap(1, ea_kek.wrap(b"s" * 32), 2, ea_kek.wrap(b"r" * 32), [])
    assert ea_keyed_applier.apply_bootstrap(boot) == "bootstrapped"
    assert ea.read_sidecar(ea_registry_path / "keys.json").active == {"storage": 1, "raft": 2}
    print("KEK", ea_kek.path)
"""


def test_the_pytest_plugin_loads_from_the_entry_point(tmp_path: Path) -> None:
    stdout = run_user_tests(tmp_path, PLUGIN_TEST, passed=2)
    kek_path = Path(next(line for line in stdout.splitlines() if "KEK " in line).split("KEK ", 1)[1].strip())
    assert not kek_path.exists() and not kek_path.parent.exists()


def test_strategies_compose_with_user_strategies() -> None:
    @given(stream=valid_streams(max_size=5), extra=st.integers(0, 3))
    def check(stream: Stream, extra: int) -> None:
        assert len(stream.entries) == len(stream.outcomes) <= 5

    check()


def test_the_documented_example_test_passes(tmp_path: Path) -> None:
    # docs/guide/testing.md's example, run as a user's own test file.
    page = (REPO / "docs" / "guide" / "testing.md").read_text()
    example = page.split("```python\n", 1)[1].split("```", 1)[0]
    run_user_tests(tmp_path, example, passed=2)
