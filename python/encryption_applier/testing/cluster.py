"""`Cluster`: N replicas of an encrypted elastickv group, driven from one
Raft-like log, for integration tests.

The harness orchestrates and compares; every rule is the package's (the
applier, ``derive_node_id``, ``Registry.check_join``, ``prepare_epochs``,
``registration_decision``, ``audit_nonces``, all in Rust). What it models
of Raft is only what a replica sees: one log with indexes from 1, applied
in order by each replica that is up, connected and not halted."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .. import _native
from ..exceptions import EncryptionApplyError
from .agree import ReplicaState, raise_disagreements, sidecar_fields
from .envelopes import EnvelopeWriter

__all__ = ["Cluster", "ClusterHalt", "NonceAudit", "Replica"]

Layer = Literal["storage", "raft"]
_PURPOSES = {"storage": _native.Purpose.STORAGE, "raft": _native.Purpose.RAFT}
_CUTOVER_TAGS = {"storage": _native.ENABLE_STORAGE_ENVELOPE, "raft": _native.ENABLE_RAFT_ENVELOPE}


@dataclass(frozen=True)
class ClusterHalt:
    """A replica stopped applying: which (``replica``, its ``raft_id``), at
    which Raft ``index``, and the ``exception`` the applier raised."""

    replica: int
    raft_id: str
    index: int
    exception: EncryptionApplyError

    def __str__(self) -> str:
        return f"replica {self.replica} ({self.raft_id}) halted at index {self.index}: {self.exception!r}"


@dataclass
class Replica:
    """One member. ``fed`` is the highest log index handed to its applier
    (the host's position in the log); ``halt`` the halt that stopped it, if
    any; ``envelopes`` what it wrote, in order, for the nonce audit;
    ``outcomes`` what its applier returned for each log index it applied
    (a replay after a crash overwrites the index's outcome)."""

    number: int
    raft_id: str
    full_node_id: int
    path: Path
    driver: Any = None
    connected: bool = True
    fed: int = 0
    halt: ClusterHalt | None = None
    writer: EnvelopeWriter | None = None
    envelopes: list[_native.Envelope] = field(default_factory=list)
    outcomes: dict[int, str] = field(default_factory=dict)

    @property
    def up(self) -> bool:
        """Running (not crashed or stopped)."""
        return self.driver is not None

    @property
    def sidecar_path(self) -> Path:
        """Its ``keys.json``, in its registry directory."""
        return self.path / "keys.json"

    @property
    def pid(self) -> int | None:
        """The child process's id (``mode="process"``), else None."""
        return None if self.driver is None else self.driver.pid


@dataclass(frozen=True)
class NonceAudit:
    """What `Cluster.audit_nonces` found: how many ``envelopes`` it read;
    ``findings``, each replica's own audit as ``(replica, NonceFinding)``
    (the finding's ``positions`` index that replica's envelopes); and
    ``across``, each nonce used under one key by several replicas, as the
    ``(replica, position)`` of every envelope concerned and the finding."""

    envelopes: int
    findings: list[tuple[int, _native.NonceFinding]]
    across: list[tuple[list[tuple[int, int]], _native.NonceFinding]] = field(default_factory=list)

    @property
    def errors(self) -> list[tuple[int, _native.NonceFinding]]:
        """The findings of severity "error" (reuse, foreign prefix, epoch
        ahead, zero count), each replica's; a reuse across replicas is
        listed under the first replica concerned."""
        mine = [(r, f) for r, f in self.findings if f.severity == "error"]
        return mine + [(where[0][0], f) for where, f in self.across]

    @property
    def warnings(self) -> list[tuple[int, _native.NonceFinding]]:
        """The findings of severity "warning" (a prefix no registry row
        covers yet)."""
        return [(r, f) for r, f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        """No error, and at least one envelope audited."""
        return self.envelopes > 0 and not self.errors

    def lines(self, raft_ids: list[str]) -> list[str]:
        """The errors, one line each, naming the replicas."""
        out = [f"replica {r} ({raft_ids[r]}): {f}" for r, f in self.findings if f.severity == "error"]
        for where, f in self.across:
            places = ", ".join(f"replica {r} ({raft_ids[r]}) envelope {p}" for r, p in where)
            out.append(f"reuse across replicas, {places}: key_id={f.key_id} {f.nonce!r}: {f.detail}")
        return out


class Cluster:
    """N replicas, each with its own registry directory, ``keys.json`` and
    keystore, applying one Raft-like log.

    ``kek``: a ``FileKek`` (or, in process, any ``Kek``); None generates one
    (``temporary_kek``), wiped at `close`. ``group_commit``: the appliers'
    write-behind group size (None: every apply commits). ``mode``:
    ``"inprocess"`` (the default, fast: a crash drops what group commit
    staged and closes the applier without flushing it, as a kill would) or
    ``"process"`` (each replica a child process driven over a pipe; a crash
    is a real SIGKILL; every child is killed and reaped at `close`).
    ``root``: where the replicas' directories go (None: a private temporary
    directory, removed at `close`). ``raft_ids``: the members' Raft ids
    (default ``n1`` … ``nN``); each full node id is ``derive_node_id`` of it.
    ``sync``: the appliers' fsync per commit (``sync=False`` is faster and
    loses nothing to a crash of the process, only to a power loss).

    Use it as a context manager, or the ``ea_cluster`` fixture."""

    def __init__(
        self,
        n: int = 3,
        *,
        kek: _native.FileKek | Any | None = None,
        group_commit: int | None = None,
        mode: Literal["inprocess", "process"] = "inprocess",
        root: str | os.PathLike[str] | None = None,
        raft_ids: Sequence[str] | None = None,
        sync: bool = True,
    ) -> None:
        if mode not in ("inprocess", "process"):
            raise ValueError(f"mode must be 'inprocess' or 'process', not {mode!r}")
        if n < 1:
            raise ValueError(f"a cluster needs a replica at least, got n={n}")
        ids = list(raft_ids) if raft_ids is not None else [f"n{i + 1}" for i in range(n)]
        if len(ids) != n:
            raise ValueError(f"{len(ids)} raft_ids for n={n} replicas")
        self.mode = mode
        self.group_commit = group_commit
        self.sync = sync
        self.log: list[bytes] = []
        self.halts: list[ClusterHalt] = []
        self.replicas: list[Replica] = []
        self._exit = contextlib.ExitStack()
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="ea-cluster-")) if root is None else Path(root)
        self.closed = False
        try:
            if kek is None:
                from . import temporary_kek

                kek = self._exit.enter_context(temporary_kek())
            self.kek = kek
            fulls = [_native.derive_node_id(r) for r in ids]
            clashes = _native.find_node_id_collisions(fulls)
            if clashes:
                raise ValueError(f"raft ids {ids} share a node_id16: {clashes}")
            for raft_id, full in zip(ids, fulls, strict=True):
                self._add(raft_id, full)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ members

    def _add(self, raft_id: str, full: int) -> Replica:
        path = self.root / raft_id
        if path.exists():
            raise ValueError(f"{path} already exists: a replica starts from an empty registry")
        replica = Replica(len(self.replicas), raft_id, full, path)
        self.replicas.append(replica)
        self._start(replica)
        return replica

    def _start(self, replica: Replica, *, bump: bool = True) -> None:
        from ._replica import ChildReplica, InProcessReplica

        kind = ChildReplica if self.mode == "process" else InProcessReplica
        replica.driver = kind(replica.path, self.kek, self.group_commit, self.sync, bump)
        storage_epoch, raft_epoch = replica.driver.epochs
        replica.writer = EnvelopeWriter(replica.full_node_id, storage_epoch=storage_epoch, raft_epoch=raft_epoch)
        replica.fed = replica.driver.durable_index() or 0
        replica.halt = None

    def __getitem__(self, i: int) -> Replica:
        return self.replicas[i]

    def __len__(self) -> int:
        return len(self.replicas)

    def __iter__(self) -> Iterator[Replica]:
        return iter(self.replicas)

    @property
    def leader(self) -> Replica:
        """The first replica that is up, connected and not halted (the one
        that proposes and answers the pre-join check)."""
        for r in self.replicas:
            if r.up and r.connected and r.halt is None:
                return r
        raise RuntimeError("no replica is up, connected and not halted")

    # ------------------------------------------------------------ the log

    def propose(self, entry: bytes | _native.Registration | _native.Bootstrap | _native.Rotation) -> int:
        """Appends ``entry`` (bytes or a payload) to the log and applies it on
        every replica that is up, connected and not halted; returns its
        Raft index. A replica that halts stops there (its halt is in
        `halts` and ``replica.halt``); the others go on."""
        data = entry if isinstance(entry, bytes) else entry.to_entry()
        self.log.append(bytes(data))
        for replica in self.replicas:
            self._feed(replica)
        return len(self.log)

    def _feed(self, replica: Replica) -> None:
        if not (replica.up and replica.connected) or replica.halt is not None:
            return
        while replica.fed < len(self.log):
            index = replica.fed + 1
            try:
                replica.outcomes[index] = replica.driver.apply(self.log[index - 1], index)
            except EncryptionApplyError as err:
                replica.halt = ClusterHalt(replica.number, replica.raft_id, index, err)
                self.halts.append(replica.halt)
                return
            replica.fed = index

    # ------------------------------------------------------------ faults

    def crash(self, i: int) -> None:
        """Kills replica ``i``: what it had not committed is lost (group
        commit's staged entries), what it committed stays."""
        replica = self._up(i)
        replica.driver.crash()
        replica.driver = None

    def stop(self, i: int) -> None:
        """Shuts replica ``i`` down cleanly (its applier flushes and closes)."""
        replica = self._up(i)
        try:
            replica.driver.close()
        finally:
            replica.driver = None

    def restart(self, i: int, *, register: bool = True, bump_epochs: bool = True) -> list[_native.Registration]:
        """Starts replica ``i`` again as a node starts: its local epochs bumped
        and pinned (``prepare_epochs``; ``bump_epochs=False`` skips that, the
        bug the nonce audit must catch), its applier opened, the log
        replayed from ``durable_index + 1``, then (``register``, when it is
        connected and did not halt) the writer registrations elastickv
        proposes at start (``registration_decision``) proposed. Returns
        them."""
        replica = self.replicas[i]
        if replica.up:
            raise RuntimeError(f"replica {i} ({replica.raft_id}) is running: crash() or stop() it first")
        self._start(replica, bump=bump_epochs)
        self._feed(replica)
        if not register or not replica.connected or replica.halt is not None:
            return []
        return self._register(replica)

    def _register(self, replica: Replica) -> list[_native.Registration]:
        if not replica.sidecar_path.exists():
            return []
        replica.driver.flush()
        assert replica.writer is not None
        with _native.Registry(replica.path) as view:
            decision = _native.registration_decision(
                sidecar_path=replica.sidecar_path,
                registry=view,
                full_node_id=replica.full_node_id,
                local_epoch=replica.writer.storage_epoch,
                raft_local_epoch=replica.writer.raft_epoch,
            )
        if decision.action != "register":
            return []
        for registration in decision.entries:
            self.propose(registration)
        return list(decision.entries)

    def bump_epoch(self, i: int) -> list[_native.Registration]:
        """A clean restart of replica ``i``: stopped, its epochs bumped, and
        its re-registration proposed, as elastickv does at each start.
        Returns the registrations proposed."""
        self.stop(i)
        return self.restart(i)

    def partition(self, i: int) -> None:
        """Cuts replica ``i`` off: it misses what is proposed until `heal`."""
        self.replicas[i].connected = False

    def heal(self, i: int) -> None:
        """Reconnects replica ``i``; it catches up on what it missed."""
        replica = self.replicas[i]
        replica.connected = True
        self._feed(replica)

    def _up(self, i: int) -> Replica:
        replica = self.replicas[i]
        if not replica.up:
            raise RuntimeError(f"replica {i} ({replica.raft_id}) is not running")
        return replica

    # ------------------------------------------------------------ keys

    def _sidecar(self) -> _native.Sidecar:
        leader = self.leader
        sidecar = _native.read_sidecar(leader.sidecar_path)
        if sidecar is None:
            raise RuntimeError("the cluster is not bootstrapped: bootstrap() first")
        return sidecar

    def wrap(self, dek: bytes, nonce: bytes | None = None) -> bytes:
        """``dek`` wrapped under the cluster's KEK (with ``nonce``: a
        reproducible wrap, ``FileKek`` only)."""
        if nonce is None:
            wrapped: bytes = self.kek.wrap(dek)
            return wrapped
        if not isinstance(self.kek, _native.FileKek):
            raise TypeError("a chosen wrap nonce needs a FileKek")
        return _native.test_support.wrap_with_nonce(self.kek, dek, nonce)

    def bootstrap(self, storage_dek_id: int = 1, raft_dek_id: int = 2) -> int:
        """Proposes the bootstrap: two fresh DEKs and a row under each for
        every member at epoch 0 (``Bootstrap.for_cluster``). Returns its index."""
        entry = _native.Bootstrap.for_cluster(
            storage_dek_id,
            self.wrap(os.urandom(32)),
            raft_dek_id,
            self.wrap(os.urandom(32)),
            writers=[(r.full_node_id, 0) for r in self.replicas],
        )
        return self.propose(entry)

    def _proposer(self, by: int | None, purpose: str, dek_id: int) -> _native.Registration:
        replica = self.leader if by is None else self.replicas[by]
        assert replica.writer is not None
        epoch = replica.writer.storage_epoch if purpose == "storage" else replica.writer.raft_epoch
        return _native.Registration(dek_id, replica.full_node_id, epoch)

    def rotate(self, purpose: Layer, *, by: int | None = None, dek: bytes | None = None) -> int:
        """Proposes a rotation of ``purpose`` to a new DEK (the next free id),
        its proposer ``by`` (default the leader) registered at its pinned
        epoch for the purpose. Returns the new DEK id."""
        dek_id = max(self._sidecar().keys) + 1
        wrapped = self.wrap(os.urandom(32) if dek is None else dek)
        self.propose(_native.Rotation(dek_id, _PURPOSES[purpose], wrapped, self._proposer(by, purpose, dek_id)))
        return dek_id

    def cutover(self, layer: Layer, *, by: int | None = None) -> int:
        """Proposes the envelope cutover of ``layer`` for its active DEK
        (sub-tag 0x04 or 0x05). Returns its index."""
        dek_id = self._sidecar().active[layer]
        entry = _native.Rotation(
            dek_id, _PURPOSES[layer], b"", self._proposer(by, layer, dek_id), sub_tag=_CUTOVER_TAGS[layer]
        )
        return self.propose(entry)

    def join(self, raft_id: str) -> Replica:
        """A new member: its full node id is ``derive_node_id(raft_id)``; the
        leader's pre-join check (``Registry.check_join``) raises
        ``WriterUint16CollisionError`` when another node holds its 16-bit
        prefix, as elastickv refuses the join. Otherwise its registrations
        are proposed, and it starts from an empty registry and replays the
        whole log."""
        full = _native.derive_node_id(raft_id)
        leader = self.leader
        leader.driver.flush()
        sidecar = _native.read_sidecar(leader.sidecar_path)
        if sidecar is None:
            # Before a bootstrap there is no row to check against: the
            # members' ids are all there is.
            clashes = _native.find_node_id_collisions([*(r.full_node_id for r in self.replicas), full])
            if clashes:
                raise ValueError(f"{raft_id} (0x{full:016x}) shares its node_id16 with a member: {clashes}")
            registrations: list[_native.Registration] = []
        else:
            with _native.Registry(leader.path) as view:
                registrations = view.check_join(full, sidecar.active_storage, sidecar.active_raft)
        for registration in registrations:
            self.propose(registration)
        replica = self._add(raft_id, full)
        self._feed(replica)
        return replica

    # ------------------------------------------------------------ envelopes

    def write_storage(
        self, i: int, user_key: bytes, value: bytes, *, commit_ts: int, expire_at: int = 0
    ) -> _native.Envelope:
        """Replica ``i`` encrypts a storage value under its active storage DEK,
        with the next nonce of its storage nonce factory."""
        return self._seal(i, "storage", value, user_key=user_key, commit_ts=commit_ts, expire_at=expire_at)

    def write_raft(self, i: int, entry: bytes) -> _native.Envelope:
        """Replica ``i`` encrypts a Raft entry under its active Raft DEK."""
        return self._seal(i, "raft", entry)

    def _seal(self, i: int, purpose: str, data: bytes, **aad: Any) -> _native.Envelope:
        replica = self._up(i)
        sidecar = _native.read_sidecar(replica.sidecar_path)
        if sidecar is None or not sidecar.active[purpose]:
            raise RuntimeError(f"replica {i} has no active {purpose} key")
        assert replica.writer is not None
        nonce = replica.writer.next_nonce(purpose)
        envelope = _native.Envelope.decode(replica.driver.seal(purpose, sidecar.active[purpose], nonce, data, **aad))
        replica.envelopes.append(envelope)
        return envelope

    def audit_nonces(self) -> NonceAudit:
        """Audits every replica's envelopes with ``audit_nonces`` (its own
        sidecar and registry), and all of them together for a nonce used
        twice under one key across replicas."""
        findings: list[tuple[int, _native.NonceFinding]] = []
        everything: list[tuple[int, int, _native.Envelope]] = []
        for replica in self.replicas:
            if not replica.envelopes:
                continue
            everything += [(replica.number, p, e) for p, e in enumerate(replica.envelopes)]
            with _native.Registry(replica.path) as view:
                found = _native.audit_nonces(
                    replica.envelopes,
                    full_node_id=replica.full_node_id,
                    sidecar=_native.read_sidecar(replica.sidecar_path),
                    registry=view,
                )
            findings += [(replica.number, f) for f in found]
        across: list[tuple[list[tuple[int, int]], _native.NonceFinding]] = []
        if everything:
            # Each replica's audit sees its own envelopes; a nonce two
            # replicas used under one key shows only when all are audited
            # together (its other findings there would be foreign prefixes
            # of every node but one: only reuses are kept).
            for f in _native.audit_nonces([e for _, _, e in everything], full_node_id=0):
                where = [everything[p][:2] for p in f.positions]
                if f.problem == "reuse" and len({r for r, _ in where}) > 1:
                    across.append((where, f))
        return NonceAudit(len(everything), findings, across)

    def assert_nonces_unique(self) -> NonceAudit:
        """`audit_nonces`, raising ``AssertionError`` on any error finding, or
        when no envelope was written (an audit of nothing proves nothing)."""
        __tracebackhide__ = True
        audit = self.audit_nonces()
        if audit.envelopes == 0:
            raise AssertionError("no envelope was written: the nonce audit would prove nothing")
        if audit.errors:
            lines = audit.lines([r.raft_id for r in self.replicas])
            raise AssertionError("nonce audit failed:\n" + "\n".join(f"  {line}" for line in lines))
        return audit

    # ------------------------------------------------------------ agreement

    def caught_up(self) -> list[Replica]:
        """The replicas that are up, connected, not halted and have applied
        the whole log."""
        return [r for r in self.replicas if r.up and r.connected and r.halt is None and r.fed == len(self.log)]

    def state(self, i: int) -> ReplicaState:
        """What `assert_agree` compares of replica ``i`` (flush it first)."""
        replica = self.replicas[i]
        with _native.Registry(replica.path) as view:
            applied = view.applied_index
        keystore = replica.driver.keystore() if replica.up else None
        sidecar = sidecar_fields(_native.read_sidecar(replica.sidecar_path))
        return ReplicaState(f"replica {i} ({replica.raft_id})", replica.path, applied, sidecar, keystore)

    def assert_agree(self) -> list[int]:
        """Asserts that the caught-up replicas agree (each is flushed first,
        then compared with the first): rows, applied index, the
        cluster-wide sidecar fields, keystore ids and fingerprints. The
        message names each replica that differs and what. Returns the
        replicas compared."""
        __tracebackhide__ = True
        replicas = self.caught_up()
        for r in replicas:
            r.driver.flush()
        raise_disagreements([(r.path, self.state(r.number)) for r in replicas])
        return [r.number for r in replicas]

    # ------------------------------------------------------------ teardown

    def close(self) -> None:
        """Stops every replica (in process mode every child is killed if it
        does not exit, and reaped), wipes a generated KEK, and removes the
        temporary root. Idempotent."""
        if self.closed:
            return
        self.closed = True
        errors: list[BaseException] = []
        for replica in self.replicas:
            if replica.driver is None:
                continue
            try:
                replica.driver.close()
            except BaseException as err:  # keep going: every child must be reaped
                errors.append(err)
                with contextlib.suppress(Exception):
                    replica.driver.crash()
            replica.driver = None
        try:
            self._exit.close()
        finally:
            if self._own_root:
                shutil.rmtree(self.root, ignore_errors=True)
        if errors:
            raise errors[0]

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        states = ", ".join(
            f"{r.raft_id}:{'halted' if r.halt else 'up' if r.up else 'down'}{'' if r.connected else '/cut'}@{r.fed}"
            for r in self.replicas
        )
        return f"<Cluster {self.mode} log={len(self.log)} [{states}]>"
