"""`ClusterMachine`: a hypothesis state machine over a `Cluster`, to
subclass (needs hypothesis: ``pip install 'encryption-applier[testing]'``).

Each example builds a bootstrapped cluster in a temporary directory, runs
a random sequence of crashes, restarts, clean restarts (epoch bumps),
partitions, heals, rotations, cutovers, joins and envelope writes, checks
after every step that the caught-up replicas agree and that nothing
halted, and at the end audits the nonces of every envelope written; the
directory is removed after each example.

```python
from encryption_applier.testing import ClusterMachine

class MyCluster(ClusterMachine):
    group_commit = 8              # the settings of the cluster each example builds

TestMyCluster = MyCluster.TestCase
```
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

try:
    from hypothesis import HealthCheck, settings
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("ClusterMachine needs hypothesis: pip install 'encryption-applier[testing]'") from err

from .cluster import Cluster

__all__ = ["ClusterMachine"]

_replicas = st.integers(0, 7)
_layers = st.sampled_from(["storage", "raft"])


class ClusterMachine(RuleBasedStateMachine):
    """Random operations on a bootstrapped `Cluster`, agreement checked after
    each. Class attributes set the cluster each example builds (``n``,
    ``group_commit``, ``mode``, ``sync``, ``max_members``); ``allow_halts``
    (False) makes any halt fail the example. Override `make_cluster` to
    build it otherwise, and add rules of your own (``self.cluster`` is the
    cluster). Defaults keep an example to a fraction of a second: 10
    examples of up to 15 steps (``ClusterMachine.TestCase.settings``)."""

    n: ClassVar[int] = 3
    group_commit: ClassVar[int | None] = None
    mode: ClassVar[Literal["inprocess", "process"]] = "inprocess"
    #: The appliers' fsync: off by default here, for speed; a kill loses
    #: nothing committed either way (only power loss would).
    sync: ClassVar[bool] = False
    max_members: ClassVar[int] = 5
    allow_halts: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.cluster = self.make_cluster()
        self.joined = 0
        try:
            self.cluster.bootstrap()
        except BaseException:
            self.cluster.close()
            raise

    @initialize(storage=st.booleans(), raft=st.booleans())
    def cut_over(self, storage: bool, raft: bool) -> None:
        """Most examples start with a layer or two cut over, so that
        envelopes are written from the first steps."""
        if storage:
            self.cluster.cutover("storage")
        if raft:
            self.cluster.cutover("raft")

    def make_cluster(self) -> Cluster:
        """The cluster of one example (closed by `teardown`)."""
        return Cluster(self.n, group_commit=self.group_commit, mode=self.mode, sync=self.sync)

    def _pick(self, i: int, *, up: bool | None = None) -> int | None:
        members = [r.number for r in self.cluster if up is None or r.up == up]
        return members[i % len(members)] if members else None

    def _can_propose(self) -> bool:
        return any(r.up and r.connected and r.halt is None for r in self.cluster)

    @rule(i=_replicas)
    def crash(self, i: int) -> None:
        """A replica is killed (what group commit staged is lost)."""
        if (j := self._pick(i, up=True)) is not None:
            self.cluster.crash(j)

    @rule(i=_replicas)
    def restart(self, i: int) -> None:
        """A stopped replica starts again: epochs bumped, log replayed,
        re-registration proposed."""
        if (j := self._pick(i, up=False)) is not None:
            self.cluster.restart(j)

    @precondition(_can_propose)
    @rule(i=_replicas)
    def bump_epoch(self, i: int) -> None:
        """A clean restart of a running replica."""
        if (j := self._pick(i, up=True)) is not None and self.cluster[j].connected:
            self.cluster.bump_epoch(j)

    @rule(i=_replicas)
    def partition(self, i: int) -> None:
        """A replica is cut off (one always stays connected)."""
        j = self._pick(i)
        assert j is not None
        if sum(r.connected for r in self.cluster) > 1:  # someone must stay to propose
            self.cluster.partition(j)

    @rule(i=_replicas)
    def heal(self, i: int) -> None:
        """A replica is reconnected and catches up."""
        j = self._pick(i)
        assert j is not None
        self.cluster.heal(j)

    @precondition(_can_propose)
    @rule(purpose=_layers)
    def rotate(self, purpose: Literal["storage", "raft"]) -> None:
        """The leader rotates a purpose to a new DEK."""
        self.cluster.rotate(purpose)

    @precondition(_can_propose)
    @rule(layer=_layers)
    def cutover(self, layer: Literal["storage", "raft"]) -> None:
        """The envelope cutover of a layer (again: already-active)."""
        self.cluster.cutover(layer)

    @precondition(lambda self: self._can_propose() and len(self.cluster) < self.max_members)
    @rule()
    def join(self) -> None:
        """A new member joins (up to ``max_members``)."""
        self.joined += 1
        self.cluster.join(f"joiner-{self.joined}")

    @rule(i=_replicas, data=st.binary(max_size=16), purpose=_layers)
    def write(self, i: int, data: bytes, purpose: str) -> None:
        """A running replica encrypts a value (storage, once the storage
        layer is cut over) or an entry (Raft, once cut over)."""
        j = self._pick(i, up=True)
        if j is None:
            return
        state = self.cluster.state(j).sidecar
        if state is None:
            return
        if purpose == "storage" and state["storage_envelope_active"]:
            self.cluster.write_storage(j, b"key-%d" % len(data), data, commit_ts=len(self.cluster.log))
        elif purpose == "raft" and state["raft_envelope_cutover_index"]:
            self.cluster.write_raft(j, data)

    @invariant()
    def replicas_agree(self) -> None:
        """After every step: the caught-up replicas agree."""
        self.cluster.assert_agree()

    @invariant()
    def nothing_halted(self) -> None:
        """After every step: no replica halted (unless ``allow_halts``)."""
        if not self.allow_halts and self.cluster.halts:
            raise AssertionError("\n".join(str(h) for h in self.cluster.halts))

    def teardown(self) -> None:
        """The nonce audit of every envelope written, then the cluster closed."""
        try:
            audit = self.cluster.audit_nonces()
            if audit.errors:
                raise AssertionError("\n".join(f"replica {r}: {f}" for r, f in audit.errors))
        finally:
            self.cluster.close()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Every subclass's TestCase starts from these defaults (hypothesis
        # gives each class a TestCase of its own); ``@settings(...)`` on
        # the subclass, or assigning ``TestCase.settings``, overrides them.
        super().__init_subclass__(**kwargs)
        cls.TestCase.settings = default_settings()


def default_settings() -> settings:
    """The settings `ClusterMachine` and its subclasses run with unless told
    otherwise: 10 examples of up to 15 steps, no deadline."""
    return settings(max_examples=10, stateful_step_count=15, deadline=None, suppress_health_check=list(HealthCheck))


ClusterMachine.TestCase.settings = default_settings()
