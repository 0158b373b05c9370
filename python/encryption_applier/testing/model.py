"""A plain-Python reference model of the writer registry: the four-case
rule (SPEC §4), bootstrap and rotation (SPEC §5) and the envelope cutovers
(SPEC §7).

It is an oracle for tests: written from the SPEC, independently of the Rust
applier, and never used by the package itself. The package's own test
suite compares the applier with it; so can yours."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

PREFIX = b"!encryption|writers|"


@dataclass(frozen=True)
class Halt:
    """What the model expects instead of an outcome: the exception class
    name and the attributes it must carry."""

    name: str
    attrs: dict[str, int | str]


def expect(expected: str | Halt, call: Callable[[], str]) -> None:
    """Runs ``call`` (an apply) and checks it did what the model says: the
    same outcome string, or the same halt class with the same fields.
    Raises ``AssertionError`` otherwise."""
    __tracebackhide__ = True
    if not isinstance(expected, Halt):
        got = call()
        if got != expected:
            raise AssertionError(f"the model says {expected!r}, the applier returned {got!r}")
        return
    try:
        got = call()
    except Exception as err:
        if type(err).__name__ != expected.name:
            raise AssertionError(f"the model says {expected.name}, the applier raised {err!r}") from err
        for name, value in expected.attrs.items():
            if getattr(err, name) != value:
                raise AssertionError(
                    f"{expected.name}.{name}: the model says {value!r}, the applier's is {getattr(err, name)!r}"
                ) from err
    else:
        raise AssertionError(f"the model says {expected.name}, the applier returned {got!r}")


@dataclass
class RegistryModel:
    """The writer registry and the four-case rule: ``apply_registration``
    returns the outcome the applier must return, or the ``Halt`` it must
    raise (and then changes nothing)."""

    # (dek_id, node_id16) -> (full_node_id, first_seen, last_seen)
    rows: dict[tuple[int, int], tuple[int, int, int]] = field(default_factory=dict)

    def apply_registration(self, dek_id: int, full_node_id: int, epoch: int) -> str | Halt:
        """Applies one registration: "inserted", "unchanged" or "advanced",
        or the ``Halt`` (and no change) for a collision or a rollback."""
        node16 = full_node_id & 0xFFFF
        row = self.rows.get((dek_id, node16))
        if row is None:
            self.rows[(dek_id, node16)] = (full_node_id, epoch, epoch)
            return "inserted"
        stored_full, first, last = row
        if stored_full != full_node_id:
            return Halt(
                "NodeIDCollisionError",
                {
                    "dek_id": dek_id,
                    "node_id16": node16,
                    "existing_full_node_id": stored_full,
                    "incoming_full_node_id": full_node_id,
                },
            )
        if epoch == last:
            return "unchanged"
        if epoch < last:
            return Halt(
                "LocalEpochRollbackError",
                {"dek_id": dek_id, "full_node_id": full_node_id, "last_seen": last, "incoming": epoch},
            )
        self.rows[(dek_id, node16)] = (full_node_id, first, epoch)
        return "advanced"

    def sorted_rows(self) -> list[tuple[int, int, int, int, int]]:
        """Rows as (dek_id, node_id16, full, first, last) in registry key order
        (big-endian keys sort like (dek_id, node_id16) tuples)."""
        return [(d, n, *v) for (d, n), v in sorted(self.rows.items())]

    def raw_items(self) -> list[tuple[bytes, bytes]]:
        """The exact LMDB key/value bytes the registry must hold (SPEC §3)."""
        return [
            (PREFIX + struct.pack(">I", d) + b"|" + struct.pack(">H", n), struct.pack(">QHH", full, first, last))
            for d, n, full, first, last in self.sorted_rows()
        ]


def registration_payload(dek_id: int, full_node_id: int, epoch: int) -> bytes:
    """SPEC §2 registration payload, built with struct as an independent encoder."""
    return struct.pack(">BIQH", 1, dek_id, full_node_id, epoch)


@dataclass
class KeyedModel:
    """SPEC §5 on top of the registry model: the sidecar's active ids and
    keys, and the keystore. `deks` maps a wrapped blob the test made to the
    DEK inside it; any other blob does not unwrap. The checks run in the
    order SPEC §5 gives (payload rules, bootstrap state, unwrap, keystore,
    registry rows), and nothing changes unless all pass."""

    deks: dict[bytes, bytes]
    registry: RegistryModel = field(default_factory=RegistryModel)
    active: dict[str, int] = field(default_factory=lambda: {"storage": 0, "raft": 0})
    keys: dict[int, tuple[str, bytes]] = field(default_factory=dict)  # id -> (purpose, wrapped)
    keystore: dict[int, bytes] = field(default_factory=dict)
    # SPEC §7: the envelope cutovers recorded in the sidecar.
    storage_envelope_active: bool = False
    storage_cutover_index: int = 0
    raft_cutover_index: int = 0

    def bootstrapped(self) -> bool:
        """Whether a bootstrap has set an active DEK."""
        return self.active["storage"] != 0 or self.active["raft"] != 0

    def _purpose_clash(self, dek_id: int, purpose: str) -> Halt | None:
        if dek_id in self.keys and self.keys[dek_id][0] != purpose:
            return Halt("PayloadRejectedError", {"reason": "purpose_mismatch", "dek_id": dek_id})
        return None

    def _open(self, dek_id: int, purpose: str, wrapped: bytes) -> bytes | Halt:
        if len(wrapped) != 60:
            return Halt("KEKUnwrapError", {"dek_id": dek_id, "purpose": purpose, "reason": "length"})
        if wrapped not in self.deks:
            return Halt("KEKUnwrapError", {"dek_id": dek_id, "purpose": purpose, "reason": "tag"})
        dek = self.deks[wrapped]
        if dek_id in self.keystore and self.keystore[dek_id] != dek:
            return Halt("KeyConflictError", {"dek_id": dek_id})
        return dek

    def _rows(self, rows: list[tuple[int, int, int]]) -> tuple[RegistryModel, bool] | Halt:
        trial = RegistryModel(dict(self.registry.rows))
        wrote = False
        for dek_id, full, epoch in rows:
            result = trial.apply_registration(dek_id, full, epoch)
            if isinstance(result, Halt):
                return result
            wrote |= result != "unchanged"
        return trial, wrote

    def _commit(
        self,
        opened: list[tuple[int, str, bytes, bytes]],
        active: dict[str, int],
        rows: tuple[RegistryModel, bool],
        rewrap: bool = False,
    ) -> bool:
        """`rewrap`: a rotation records the wrap it carries (SPEC §7: the
        same DEK wrapped again replaces the stored wrap); a bootstrap keeps
        the first one."""
        before = (dict(self.active), dict(self.keys), dict(self.keystore))
        for dek_id, purpose, wrapped, dek in opened:
            self.keystore.setdefault(dek_id, dek)
            if rewrap:
                self.keys[dek_id] = (purpose, wrapped)
            else:
                self.keys.setdefault(dek_id, (purpose, wrapped))
        self.active.update(active)
        self.registry, wrote = rows
        return wrote or before != (self.active, self.keys, self.keystore)

    def bootstrap(self, storage: int, ws: bytes, raft: int, wr: bytes, batch: list[tuple[int, int, int]]) -> str | Halt:
        """A bootstrap of DEKs ``storage`` and ``raft`` (wrapped as ``ws``,
        ``wr``) with registration rows ``(dek_id, full_node_id, epoch)``."""
        for dek_id in (storage, raft):
            if dek_id == 0:
                return Halt("PayloadRejectedError", {"reason": "reserved_key_id", "dek_id": 0})
        if storage == raft:
            return Halt("PayloadRejectedError", {"reason": "same_ids", "dek_id": storage})
        for row in batch:
            if row[0] not in (storage, raft):
                return Halt("PayloadRejectedError", {"reason": "foreign_batch_row", "dek_id": row[0]})
        if self.bootstrapped():
            exact = (
                self.active == {"storage": storage, "raft": raft}
                and self.keys.get(storage, (None, None))[1] == ws
                and self.keys.get(raft, (None, None))[1] == wr
            )
            if not exact:
                return Halt(
                    "AlreadyBootstrappedError",
                    {"active_storage": self.active["storage"], "active_raft": self.active["raft"]},
                )
        for dek_id, purpose in ((storage, "storage"), (raft, "raft")):
            if clash := self._purpose_clash(dek_id, purpose):
                return clash
        opened = []
        for dek_id, purpose, wrapped in ((storage, "storage", ws), (raft, "raft", wr)):
            dek = self._open(dek_id, purpose, wrapped)
            if isinstance(dek, Halt):
                return dek
            opened.append((dek_id, purpose, wrapped, dek))
        rows = self._rows(batch)
        if isinstance(rows, Halt):
            return rows
        changed = self._commit(opened, {"storage": storage, "raft": raft}, rows)
        return "bootstrapped" if changed else "unchanged"

    def rotation(self, dek_id: int, purpose: str, wrapped: bytes, proposer: tuple[int, int, int]) -> str | Halt:
        """A rotate-DEK entry (sub-tag 0x01) for ``purpose`` ("storage" or
        "raft") with its proposer's registration ``(dek_id, full, epoch)``."""
        if dek_id == 0:
            return Halt("PayloadRejectedError", {"reason": "reserved_key_id", "dek_id": 0})
        if proposer[0] != dek_id:
            return Halt("PayloadRejectedError", {"reason": "proposer_dek_mismatch", "dek_id": dek_id})
        if not self.bootstrapped():
            return Halt("NotBootstrappedError", {"dek_id": dek_id})
        if clash := self._purpose_clash(dek_id, purpose):
            return clash
        dek = self._open(dek_id, purpose, wrapped)
        if isinstance(dek, Halt):
            return dek
        rows = self._rows([proposer])
        if isinstance(rows, Halt):
            return rows
        changed = self._commit([(dek_id, purpose, wrapped, dek)], {purpose: dek_id}, rows, rewrap=True)
        return "rotated" if changed else "unchanged"

    def cutover(
        self, layer: str, dek_id: int, purpose: str, wrapped: bytes, proposer: tuple[int, int, int], index: int | None
    ) -> str | Halt:
        """SPEC §7 / parity N1: enable-storage-envelope (layer "storage")
        or enable-raft-envelope (layer "raft"): payload checks, then Go's
        three branches (storage tests stale first, Raft already-active
        first); only a fresh cutover applies its proposer row."""

        def reject(reason: str, dek: int) -> Halt:
            return Halt("PayloadRejectedError", {"reason": reason, "dek_id": dek})

        if layer == "raft" and not index:
            return reject("cutover_without_index", dek_id)
        if purpose != layer:
            return reject("cutover_purpose", dek_id)
        if wrapped:
            return reject("cutover_wrapped", dek_id)
        if proposer[0] != dek_id:  # (id 0 is not refused: it is simply stale)
            return reject("proposer_dek_mismatch", dek_id)
        if not self.bootstrapped():
            return Halt("NotBootstrappedError", {"dek_id": dek_id})
        if layer == "raft":
            if self.raft_cutover_index:
                return "already-active"
            if dek_id != self.active["raft"]:
                return "stale-dek"
        else:
            if dek_id != self.active["storage"]:
                return "stale-dek"
            if self.storage_envelope_active:
                return "already-active"
        rows = self._rows([proposer])
        if isinstance(rows, Halt):
            return rows
        self.registry = rows[0]
        if layer == "raft":
            self.raft_cutover_index = index or 0
        else:
            self.storage_envelope_active = True
            self.storage_cutover_index = index or 0
        return "enabled"
