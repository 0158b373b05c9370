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

import copy
import struct
from dataclasses import dataclass, field
from typing import Any

try:
    from hypothesis import assume
    from hypothesis import strategies as st
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "encryption_applier.testing.strategies needs hypothesis: pip install 'encryption-applier[testing]'"
    ) from err

from .. import _native
from .. import exceptions as _exceptions
from .model import Halt, KeyedModel, RegistryModel

__all__ = [
    "HALT_KINDS",
    "KeyedStream",
    "PlantedHalt",
    "Stream",
    "bootstraps",
    "dek_ids",
    "entries",
    "epochs",
    "full_node_ids",
    "keyed_streams",
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


# ------------------------------------------------------------ keyed streams

_PURPOSE = {"storage": _native.Purpose.STORAGE, "raft": _native.Purpose.RAFT}
_CUTOVER = {"storage": _native.ENABLE_STORAGE_ENVELOPE, "raft": _native.ENABLE_RAFT_ENVELOPE}


@dataclass(frozen=True)
class KeyedStream:
    """A stream of encryption entries under a KEK: a bootstrap, then
    registrations, rotations and rewraps (real wraps of drawn DEKs) and
    both envelope cutovers, applied at Raft indexes
    ``first_index``, ``first_index + 1``, ...

    ``outcomes`` are what the model says each entry returns up to
    ``position``; ``model`` (a `KeyedModel`) is the state after them.
    ``position`` is None for a valid stream (no entry halts: outcomes such
    as ``"stale-dek"``, ``"already-active"`` and ``"unchanged"`` are
    applies), or the index in ``entries`` of the planted entry that halts,
    with ``halt`` what the model expects of it; the entries after it must
    never be reached. ``nodes`` are the writers' full node ids."""

    entries: list[bytes]
    outcomes: list[str]
    model: KeyedModel
    nodes: list[int]
    position: int | None = None
    halt: Halt | None = None
    first_index: int = 1
    payloads: list[Any] = field(default_factory=list, repr=False)

    @property
    def indexes(self) -> list[int]:
        """The Raft index of each entry."""
        return list(range(self.first_index, self.first_index + len(self.entries)))

    @property
    def exception(self) -> type[_exceptions.EncryptionApplyError]:
        """The exception class the applier raises at ``position``."""
        if self.halt is None:
            raise ValueError("a valid stream has no halt")
        cls: type[_exceptions.EncryptionApplyError] = getattr(_exceptions, self.halt.name)
        return cls


class _Builder:
    """Draws a keyed stream step by step, asking the model (never a copy
    of the rules) what each entry does."""

    def __init__(self, draw: st.DrawFn, kek: Any, nodes: list[int]) -> None:
        self.draw, self.kek, self.nodes = draw, kek, nodes
        self.model = KeyedModel(deks={})
        self.entries: list[bytes] = []
        self.payloads: list[Any] = []
        self.outcomes: list[str] = []
        self.wraps = 0
        self.bootstrap: _native.Bootstrap | None = None

    def wrap(self, dek: bytes) -> bytes:
        # The nonce is drawn, so an example replays byte for byte; a counter
        # in its last 4 bytes keeps every wrap's nonce distinct under the KEK.
        self.wraps += 1
        nonce = self.draw(st.binary(min_size=8, max_size=8)) + struct.pack(">I", self.wraps)
        if isinstance(self.kek, _native.FileKek):
            wrapped = _native.test_support.wrap_with_nonce(self.kek, dek, nonce)
        else:  # a KEK of the user's own: its nonce is its own business
            wrapped = bytes(self.kek.wrap(dek))
        self.model.deks[wrapped] = dek
        return wrapped

    def dek(self) -> bytes:
        return self.draw(st.binary(min_size=32, max_size=32))

    def row(self, dek_id: int) -> tuple[int, int, int]:
        return (dek_id, self.draw(st.sampled_from(self.nodes)), self.draw(st.integers(0, 6)))

    def index(self) -> int:
        return len(self.entries) + 1

    def trial(self, payload: Any) -> str | Halt:
        """What the model says ``payload`` does at the next index; the model
        changes only if it applies."""
        m = self.model
        if isinstance(payload, _native.Registration):
            return m.registry.apply_registration(payload.dek_id, payload.full_node_id, payload.local_epoch)
        if isinstance(payload, _native.Bootstrap):
            batch = [(r.dek_id, r.full_node_id, r.local_epoch) for r in payload.batch_registry]
            return m.bootstrap(
                payload.storage_dek_id, payload.wrapped_storage, payload.raft_dek_id, payload.wrapped_raft, batch
            )
        proposer = payload.proposer_registration
        row = (proposer.dek_id, proposer.full_node_id, proposer.local_epoch)
        purpose = payload.purpose.name.lower()
        if payload.sub_tag == _native.ROTATE_DEK:
            return m.rotation(payload.dek_id, purpose, payload.wrapped, row)
        layer = "storage" if payload.sub_tag == _native.ENABLE_STORAGE_ENVELOPE else "raft"
        return m.cutover(layer, payload.dek_id, purpose, payload.wrapped, row, self.index())

    def add(self, payload: Any, outcome: str) -> None:
        self.payloads.append(payload)
        self.entries.append(payload.to_entry())
        self.outcomes.append(outcome)

    def first(self) -> None:
        storage = self.draw(st.integers(1, 4))
        raft = self.draw(st.sampled_from([i for i in range(1, 6) if i != storage]))
        batch = [
            _native.Registration(self.draw(st.sampled_from([storage, raft])), node, self.draw(st.integers(0, 3)))
            for node in self.nodes
        ]
        boot = _native.Bootstrap(storage, self.wrap(self.dek()), raft, self.wrap(self.dek()), batch)
        outcome = self.trial(boot)
        assert isinstance(outcome, str), outcome  # a fresh bootstrap of distinct ids applies
        self.bootstrap = boot
        self.add(boot, outcome)

    def candidate(self) -> Any:
        m, kind = (
            self.model,
            self.draw(st.sampled_from(["registration"] * 3 + ["rotate"] * 2 + ["cutover"] * 2 + ["rewrap"])),
        )
        if kind == "registration":
            return _native.Registration(*self.row(self.draw(st.sampled_from(sorted(m.keys)))))
        if kind == "rotate":
            purpose = self.draw(st.sampled_from(["storage", "raft"]))
            dek_id = max(m.keys) + 1
            return _native.Rotation(
                dek_id, _PURPOSE[purpose], self.wrap(self.dek()), _native.Registration(*self.row(dek_id))
            )
        if kind == "rewrap":  # an existing key wrapped again: its wrap is replaced
            dek_id = self.draw(st.sampled_from(sorted(m.keys)))
            purpose, _ = m.keys[dek_id]
            wrapped = self.wrap(m.keystore[dek_id])
            return _native.Rotation(dek_id, _PURPOSE[purpose], wrapped, _native.Registration(*self.row(dek_id)))
        # An envelope cutover, of the active key or of a stale one.
        layer = self.draw(st.sampled_from(["storage", "raft"]))
        stale = [i for i, (p, _) in sorted(m.keys.items()) if p == layer and i != m.active[layer]]
        dek_id = self.draw(st.sampled_from([m.active[layer]] * max(1, len(stale)) + stale))
        return _native.Rotation(
            dek_id, _PURPOSE[layer], b"", _native.Registration(*self.row(dek_id)), sub_tag=_CUTOVER[layer]
        )

    def planted(self, kind: str | None = None) -> tuple[Any, Halt]:
        """An entry the model says halts here (of ``kind``, or a drawn kind)."""
        m = self.model
        rows = sorted(m.registry.rows.items())
        can_roll_back = any(last > 0 for _, (_, _, last) in rows)
        if kind is None:
            kinds = ["collision", "unwrap", "already-bootstrapped", "purpose"]
            kind = self.draw(st.sampled_from(kinds + ["rollback", "rollback"] if can_roll_back else kinds))
        elif kind == "rollback" and not can_roll_back:
            assume(False)  # no row above epoch 0 to roll back: another example
        if kind in ("collision", "rollback"):
            candidates = [r for r in rows if kind == "collision" or r[1][2] > 0]
            (dek, node16), (full, _first, last) = self.draw(st.sampled_from(candidates))
            if kind == "collision":
                high = self.draw(st.integers(0, (1 << 48) - 1).filter(lambda h: h << 16 | node16 != full))
                payload: Any = _native.Registration(dek, high << 16 | node16, self.draw(st.integers(0, 6)))
            else:
                payload = _native.Registration(dek, full, self.draw(st.integers(0, last - 1)))
        elif kind == "unwrap":  # 60 bytes that are no wrap under this KEK
            dek_id = max(m.keys) + 1
            wrapped = self.draw(st.binary(min_size=60, max_size=60).filter(lambda w: w not in m.deks))
            payload = _native.Rotation(
                dek_id, _native.Purpose.STORAGE, wrapped, _native.Registration(*self.row(dek_id))
            )
        elif kind == "already-bootstrapped":
            assert self.bootstrap is not None
            b = self.bootstrap
            payload = _native.Bootstrap(b.storage_dek_id, self.wrap(self.dek()), b.raft_dek_id, b.wrapped_raft, [])
        else:  # a key id rotated to the other purpose
            dek_id = self.draw(st.sampled_from(sorted(m.keys)))
            other = "raft" if m.keys[dek_id][0] == "storage" else "storage"
            payload = _native.Rotation(
                dek_id, _PURPOSE[other], self.wrap(self.dek()), _native.Registration(*self.row(dek_id))
            )
        halt = self.trial(payload)
        if not isinstance(halt, Halt):  # pragma: no cover - each kind above halts
            raise AssertionError(f"keyed_streams planted an entry that applies ({kind}): {halt}")
        return payload, halt


#: The kinds of halt `keyed_streams(valid=False, halt=...)` plants: a node id
#: collision, an epoch rollback, a wrap the KEK does not open, a second
#: bootstrap, a key id rotated to the other purpose.
HALT_KINDS = ("collision", "rollback", "unwrap", "already-bootstrapped", "purpose")


@st.composite
def keyed_streams(
    draw: st.DrawFn,
    kek: Any,
    *,
    valid: bool = True,
    nodes: list[int] | None = None,
    min_size: int = 1,
    max_size: int = 20,
    max_suffix: int = 3,
    halt: str | None = None,
) -> KeyedStream:
    """Streams of keyed entries that apply under ``kek`` (a ``FileKek``, or
    any ``Kek``): a bootstrap of two drawn DEKs with a row per node, then
    registrations at drawn epochs, rotations of either purpose to new DEKs,
    rewraps of existing keys and both envelope cutovers (of the active key,
    or of a stale one), every wrap made by ``kek``
    under a nonce hypothesis draws (with a ``FileKek``), so that an example
    replays byte for byte.

    ``valid=True``: no entry halts (each candidate the model says would
    halt is left out; ``"unchanged"``, ``"stale-dek"`` and
    ``"already-active"`` are applies). ``valid=False``: a valid prefix,
    then at ``position`` an entry that halts (a collision, a rollback, a
    wrap the KEK does not open, a second bootstrap, a key id given the
    other purpose), then up to ``max_suffix`` more entries. What halts and
    what each entry returns is the plain-Python model's word
    (`KeyedModel`), not a rule re-written here. ``nodes``: the writers'
    full node ids (default: one to four drawn, with distinct
    ``node_id16``s). ``halt`` (with ``valid=False``): plant that kind of
    halt, one of `HALT_KINDS` (default: a drawn kind)."""
    if halt is not None and (valid or halt not in HALT_KINDS):
        raise ValueError(
            f"halt={halt!r}: give valid=False and one of {', '.join(HALT_KINDS)}"
            if halt in HALT_KINDS
            else f"halt={halt!r} is not one of {', '.join(HALT_KINDS)}"
        )
    if nodes is None:
        nodes = draw(st.lists(full_node_ids(), min_size=1, max_size=4, unique_by=lambda n: n & U16))
    b = _Builder(draw, kek, list(nodes))
    b.first()
    target = draw(st.integers(max(min_size, 1), max(max_size, 1)))
    attempts = 0
    while len(b.entries) < target and attempts < 4 * max_size:
        attempts += 1
        payload = b.candidate()
        before = copy.deepcopy(b.model)
        outcome = b.trial(payload)
        if isinstance(outcome, Halt):
            b.model = before  # (the model changes nothing on a halt; kept safe)
            continue
        b.add(payload, outcome)
    if valid:
        return KeyedStream(b.entries, b.outcomes, b.model, b.nodes, payloads=b.payloads)
    model = copy.deepcopy(b.model)
    payload, planted = b.planted(halt)
    position = len(b.entries)
    suffix = draw(st.lists(registrations(), max_size=max_suffix))
    entries = [*b.entries, payload.to_entry(), *(r.to_entry() for r in suffix)]
    return KeyedStream(entries, b.outcomes, model, b.nodes, position, planted, payloads=[*b.payloads, payload, *suffix])
