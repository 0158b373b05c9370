"""A plain-Python model of the writer registry and the four-case rule
(SPEC §4). It is the oracle the tests compare the Rust applier with, so it
is written from the SPEC table, independently of the code under test."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

PREFIX = b"!encryption|writers|"


@dataclass(frozen=True)
class Halt:
    """What the model expects instead of an outcome: the exception class
    name and the attributes it must carry."""

    name: str
    attrs: dict[str, int]


@dataclass
class RegistryModel:
    # (dek_id, node_id16) -> (full_node_id, first_seen, last_seen)
    rows: dict[tuple[int, int], tuple[int, int, int]] = field(default_factory=dict)

    def apply_registration(self, dek_id: int, full_node_id: int, epoch: int) -> str | Halt:
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
