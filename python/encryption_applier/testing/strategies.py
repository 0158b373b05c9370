"""Hypothesis strategies for encryption entries and streams of them.

Needs hypothesis (``pip install 'encryption-applier[testing]'``). The
streams are built against the reference model
(`encryption_applier.testing.model.RegistryModel`), so each one
carries what the registry must hold after it.

```python
from hypothesis import given
import encryption_applier as ea
from encryption_applier.testing import assert_registry_matches_model
from encryption_applier.testing.strategies import streams_with_halt

@given(stream=streams_with_halt())
def test_a_halt_keeps_what_came_before(tmp_path_factory, stream):
    with ea.Applier(tmp_path_factory.mktemp("r")) as applier:
        try:
            applier.apply_many(stream.entries)
        except stream.exception as halt:
            assert halt.position == stream.position
        else:
            raise AssertionError("the planted entry did not halt")
        assert_registry_matches_model(applier, stream.model)
```
"""

from __future__ import annotations

from dataclasses import dataclass

try:
    from hypothesis import strategies as st
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "encryption_applier.testing.strategies needs hypothesis: pip install 'encryption-applier[testing]'"
    ) from err

from .. import _native
from .. import exceptions as _exceptions
from .model import Halt, RegistryModel

__all__ = [
    "PlantedHalt",
    "Stream",
    "bootstraps",
    "dek_ids",
    "entries",
    "epochs",
    "full_node_ids",
    "payloads",
    "registrations",
    "rotations",
    "streams_with_halt",
    "valid_streams",
]

U16, U32, U64 = 0xFFFF, 0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF


def dek_ids(max_id: int = U32) -> st.SearchStrategy[int]:
    """DEK ids from 1 (0 is reserved) to ``max_id``, small ones often."""
    return st.one_of(st.integers(1, min(4, max_id)), st.integers(1, max_id))


def full_node_ids() -> st.SearchStrategy[int]:
    """64-bit node ids, with shared low 16 bits (``node_id16``) often, so
    that collisions are reachable."""
    return st.one_of(
        st.integers(0, U64),
        st.builds(lambda high, low: high << 16 | low, st.integers(0, (1 << 48) - 1), st.integers(0, 3)),
    )


def epochs() -> st.SearchStrategy[int]:
    """Local epochs (16-bit), small ones often so that equal and lower
    epochs (unchanged, rollback) happen."""
    return st.one_of(st.integers(0, 6), st.integers(0, U16))


def registrations(
    dek_ids: st.SearchStrategy[int] | None = None,
    full_node_ids: st.SearchStrategy[int] | None = None,
    epochs: st.SearchStrategy[int] | None = None,
) -> st.SearchStrategy[_native.Registration]:
    """``Registration`` payloads (SPEC §2)."""
    return st.builds(
        _native.Registration,
        dek_ids if dek_ids is not None else _dek_ids(),
        full_node_ids if full_node_ids is not None else _full_node_ids(),
        epochs if epochs is not None else _epochs(),
    )


_dek_ids, _full_node_ids, _epochs = dek_ids, full_node_ids, epochs


def _wrapped() -> st.SearchStrategy[bytes]:
    # A wrap is nonce ‖ ciphertext ‖ tag: 60 bytes for a 32-byte DEK. These
    # do not unwrap under any KEK; use a real KEK to make ones that do.
    return st.binary(min_size=60, max_size=60)


def bootstraps() -> st.SearchStrategy[_native.Bootstrap]:
    """Well-formed ``Bootstrap`` payloads (SPEC §2) whose wrapped keys are
    random bytes: they decode; an applier halts on them (at the unwrap with
    a KEK, with ``KEKNotConfiguredError`` without one)."""
    return st.integers(1, U32 - 1).flatmap(
        lambda storage: st.builds(
            _native.Bootstrap,
            st.just(storage),
            _wrapped(),
            st.just(storage + 1),
            _wrapped(),
            st.lists(registrations(dek_ids=st.sampled_from([storage, storage + 1])), max_size=4),
        )
    )


def rotations() -> st.SearchStrategy[_native.Rotation]:
    """Well-formed rotate-DEK ``Rotation`` payloads (sub-tag 0x01) with
    random wrapped bytes (they decode, and halt when applied)."""
    return _dek_ids().flatmap(
        lambda dek: st.builds(
            _native.Rotation,
            st.just(dek),
            st.sampled_from([_native.Purpose.STORAGE, _native.Purpose.RAFT]),
            _wrapped(),
            registrations(dek_ids=st.just(dek)),
        )
    )


def payloads() -> st.SearchStrategy[_native.Registration | _native.Bootstrap | _native.Rotation]:
    """Any well-formed encryption payload object."""
    return st.one_of(registrations(), bootstraps(), rotations())


def entries() -> st.SearchStrategy[bytes]:
    """Encoded entries (opcode ‖ payload) of any kind, as ``Applier.apply``
    takes them."""
    return payloads().map(lambda p: p.to_entry())


@dataclass(frozen=True)
class Stream:
    """A stream of registration entries that applies without a halt, from
    an empty registry. ``model`` is the registry after it and ``outcomes``
    what each entry returns."""

    registrations: list[_native.Registration]
    outcomes: list[str]
    model: RegistryModel

    @property
    def entries(self) -> list[bytes]:
        return [r.to_entry() for r in self.registrations]


@dataclass(frozen=True)
class PlantedHalt:
    """A stream whose entry at ``position`` halts (a collision or a
    rollback, as ``halt`` says), followed by more entries that must not be
    applied. ``model`` is the registry after the entries before
    ``position``: what the registry must hold after the halt."""

    registrations: list[_native.Registration]
    position: int
    halt: Halt
    model: RegistryModel

    @property
    def entries(self) -> list[bytes]:
        return [r.to_entry() for r in self.registrations]

    @property
    def exception(self) -> type[_exceptions.EncryptionApplyError]:
        """The exception class the applier raises at ``position``."""
        cls: type[_exceptions.EncryptionApplyError] = getattr(_exceptions, self.halt.name)
        return cls


@st.composite
def valid_streams(draw: st.DrawFn, min_size: int = 0, max_size: int = 40) -> Stream:
    """Streams of registrations that apply without a halt. Each drawn
    registration that would halt is turned into one that does not (a
    colliding node takes the stored node's id, a rollback repeats the last
    epoch), so inserted, unchanged and advanced are all likely."""
    model = RegistryModel()
    regs: list[_native.Registration] = []
    outcomes: list[str] = []
    # A few nodes and DEKs, so that rows are revisited.
    nodes = draw(st.lists(full_node_ids(), min_size=1, max_size=6))
    deks = draw(st.lists(dek_ids(), min_size=1, max_size=4))
    for _ in range(draw(st.integers(min_size, max_size))):
        dek, full, epoch = draw(st.sampled_from(deks)), draw(st.sampled_from(nodes)), draw(epochs())
        row = model.rows.get((dek, full & 0xFFFF))
        if row is not None:
            full = row[0]  # a different full id here would collide
            epoch = max(epoch, row[2])  # a lower epoch would roll back
        outcome = model.apply_registration(dek, full, epoch)
        if isinstance(outcome, Halt):  # pragma: no cover - ruled out above
            raise AssertionError(f"valid_streams made a halting entry: {outcome}")
        regs.append(_native.Registration(dek, full, epoch))
        outcomes.append(outcome)
    return Stream(regs, outcomes, model)


@st.composite
def streams_with_halt(draw: st.DrawFn, max_prefix: int = 30, max_suffix: int = 5) -> PlantedHalt:
    """A valid stream, then one entry that halts (``NodeIDCollisionError``
    or ``LocalEpochRollbackError``, at ``position``), then up to
    ``max_suffix`` arbitrary entries that the applier must not reach."""
    prefix = draw(valid_streams(min_size=1, max_size=max_prefix))
    model = prefix.model
    (dek, node16), (full, _first, last) = draw(st.sampled_from(sorted(model.rows.items())))
    kinds = ["collision"] + (["rollback"] if last > 0 else [])
    if draw(st.sampled_from(kinds)) == "collision":
        other = draw(st.integers(0, (1 << 48) - 1).filter(lambda high: high << 16 | node16 != full))
        planted = _native.Registration(dek, other << 16 | node16, draw(epochs()))
    else:
        planted = _native.Registration(dek, full, draw(st.integers(0, last - 1)))
    trial = RegistryModel(dict(model.rows))
    halt = trial.apply_registration(planted.dek_id, planted.full_node_id, planted.local_epoch)
    if not isinstance(halt, Halt):  # pragma: no cover - ruled out above
        raise AssertionError(f"streams_with_halt planted an entry that applies: {halt}")
    suffix = draw(st.lists(registrations(), max_size=max_suffix))
    return PlantedHalt([*prefix.registrations, planted, *suffix], len(prefix.registrations), halt, model)
