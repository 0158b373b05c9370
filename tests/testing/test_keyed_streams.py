"""keyed_streams: keyed entries that apply under a real KEK (valid), or
halt at a known position (planted). What each entry must do is the
plain-Python model's word; the applier, and a whole cluster, are checked
against it."""

from collections import Counter

import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

import encryption_applier as ea
from encryption_applier.testing import Cluster, KeyedModel, assert_registry_matches_model, temporary_registry
from encryption_applier.testing.strategies import HALT_KINDS, KeyedStream, keyed_streams

from helpers import fingerprint


@pytest.fixture(scope="module")
def kek(tmp_path_factory: pytest.TempPathFactory) -> ea.FileKek:
    return ea.FileKek.generate(tmp_path_factory.mktemp("kek") / "kek")


def assert_applier_is_the_model(applier: ea.Applier, model: KeyedModel) -> None:
    assert_registry_matches_model(applier, model.registry)
    sidecar, keystore = applier.sidecar, applier.keystore
    assert sidecar is not None and keystore is not None
    assert sidecar.active == model.active
    assert {i: (k.purpose.name.lower(), k.wrapped) for i, k in sidecar.keys.items()} == model.keys
    assert (
        sidecar.storage_envelope_active,
        sidecar.storage_envelope_cutover_index,
        sidecar.raft_envelope_cutover_index,
    ) == (model.storage_envelope_active, model.storage_cutover_index, model.raft_cutover_index)
    assert {i: keystore.fingerprint(i) for i in keystore.ids()} == {
        i: fingerprint(d) for i, d in model.keystore.items()
    }


def test_valid_streams_apply_as_the_model_says(kek: ea.FileKek) -> None:
    seen: Counter[str] = Counter()

    @settings(max_examples=40)
    @given(stream=keyed_streams(kek))
    def check(stream: KeyedStream) -> None:
        assert stream.position is None and stream.halt is None
        with temporary_registry() as path, ea.Applier(path, kek=kek, sync=False) as applier:
            assert applier.apply_many(stream.entries, first_index=stream.first_index) == stream.outcomes
            assert_applier_is_the_model(applier, stream.model)
        seen.update(stream.outcomes)
        seen.update(type(p).__name__ for p in stream.payloads)

    check()
    for outcome in ["bootstrapped", "rotated", "enabled", "already-active", "stale-dek", "inserted", "advanced"]:
        assert seen[outcome], (outcome, seen)
    assert seen["Bootstrap"] and seen["Rotation"] and seen["Registration"]


def test_a_planted_halt_halts_at_its_position(kek: ea.FileKek) -> None:
    seen: Counter[str] = Counter()

    # Derandomized: the check below that every kind of halt was reached is
    # about the strategy's reach, so it must not depend on the run's seed.
    @settings(max_examples=60, derandomize=True, database=None)
    @given(stream=keyed_streams(kek, valid=False))
    def check(stream: KeyedStream) -> None:
        assert stream.position is not None and stream.halt is not None
        with temporary_registry() as path, ea.Applier(path, kek=kek, sync=False) as applier:
            with pytest.raises(stream.exception) as caught:
                applier.apply_many(stream.entries, first_index=stream.first_index)
            assert caught.value.position == stream.position
            for name, value in stream.halt.attrs.items():
                assert getattr(caught.value, name) == value
            assert applier.applied_index == stream.position  # indexes from 1: the prefix
            assert_applier_is_the_model(applier, stream.model)
        seen[stream.halt.name] += 1

    check()
    assert sum(seen.values()) >= 10, seen


HALT_EXCEPTIONS = {
    "collision": "NodeIDCollisionError",
    "rollback": "LocalEpochRollbackError",
    "unwrap": "KEKUnwrapError",
    "already-bootstrapped": "AlreadyBootstrappedError",
    "purpose": "PayloadRejectedError",
}


def test_the_halt_kinds_are_these() -> None:
    assert set(HALT_EXCEPTIONS) == set(HALT_KINDS)


@pytest.mark.parametrize(("kind", "name"), HALT_EXCEPTIONS.items())
def test_every_kind_of_halt_is_planted_where_asked(kek: ea.FileKek, kind: str, name: str) -> None:
    @settings(max_examples=8)
    @given(stream=keyed_streams(kek, valid=False, halt=kind))
    def check(stream: KeyedStream) -> None:
        assert stream.halt is not None and stream.halt.name == name
        with temporary_registry() as path, ea.Applier(path, kek=kek, sync=False) as applier:
            with pytest.raises(getattr(ea, name)) as caught:
                applier.apply_many(stream.entries, first_index=stream.first_index)
            assert caught.value.position == stream.position

    check()


@pytest.mark.parametrize(
    ("valid", "halt", "message"),
    [(True, "rollback", "give valid=False"), (False, "typo", "'typo' is not one of collision, rollback")],
)
def test_halt_needs_valid_false_and_a_known_kind(kek: ea.FileKek, valid: bool, halt: str, message: str) -> None:
    @settings(max_examples=1)
    @given(stream=keyed_streams(kek, valid=valid, halt=halt))
    def draw(stream: KeyedStream) -> None:
        raise AssertionError("drew a stream")

    with pytest.raises(ValueError, match=message):
        draw()


def test_an_example_replays_byte_for_byte(kek: ea.FileKek) -> None:
    def run() -> list[list[bytes]]:
        drawn: list[list[bytes]] = []

        @seed(20261207)
        @settings(max_examples=5, database=None, derandomize=True)
        @given(stream=keyed_streams(kek))
        def collect(stream: KeyedStream) -> None:
            drawn.append(stream.entries)

        collect()
        return drawn

    runs = [run(), run()]
    assert runs[0] == runs[1] and len(runs[0]) == 5


def test_a_kek_of_ones_own_makes_streams_too(kek: ea.FileKek) -> None:
    class Forwarding:
        def wrap(self, dek: bytes) -> bytes:
            return kek.wrap(dek)

        def unwrap(self, wrapped: bytes) -> bytes:
            return kek.unwrap(wrapped)

        def identity(self) -> str:
            return "forwarding"

    @settings(max_examples=5)
    @given(stream=keyed_streams(Forwarding(), max_size=5))
    def check(stream: KeyedStream) -> None:
        with temporary_registry() as path, ea.Applier(path, kek=kek, sync=False) as applier:
            assert applier.apply_many(stream.entries, first_index=1) == stream.outcomes

    check()


def test_a_cluster_applies_a_valid_stream_and_agrees(kek: ea.FileKek) -> None:
    @settings(max_examples=10)
    @given(stream=keyed_streams(kek, max_size=12), crash=st.integers(0, 11), group=st.sampled_from([None, 3]))
    def check(stream: KeyedStream, crash: int, group: int | None) -> None:
        with Cluster(3, kek=kek, group_commit=group, sync=False) as c:
            for i, entry in enumerate(stream.entries):
                if i == crash % len(stream.entries):
                    c.crash(1)
                c.propose(entry)
            c.restart(1, register=False)
            assert not c.halts
            assert c.assert_agree() == [0, 1, 2]
            for r in c:
                # Replica 1 replayed what its crash lost: the same outcomes.
                assert [r.outcomes[i] for i in stream.indexes] == stream.outcomes
                assert_registry_matches_model(r.path, stream.model.registry)

    check()
