"""How rows and differences are shown to people: by the command line
(inspect, export, diff), the notebook display and pandas frames
(``_frames``) and ``testing.assert_registries_equal``, so that all of them
show the same thing."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ._native import RegistryDiff, RegistryRow


#: A row's fields, in the order they are shown.
ROW_FIELDS = ("dek_id", "node_id16", "full_node_id", "first_seen_local_epoch", "last_seen_local_epoch")
#: The fields a row's value holds (the rest are its key).
VALUE_FIELDS = ROW_FIELDS[2:]


def hex_id(value: int, digits: int) -> str:
    """A node id as fixed-width hex: 16 digits for a full id, 4 for node_id16."""
    return f"0x{value:0{digits}x}"


def row_dict(row: RegistryRow) -> dict[str, int | str]:
    """A row with its node ids as fixed-width hex strings (a 64-bit id as a
    JSON number would be rounded by jq and JavaScript, which read numbers
    as doubles) and the rest as ints."""
    return {
        "dek_id": row.dek_id,
        "node_id16": hex_id(row.node_id16, 4),
        "full_node_id": hex_id(row.full_node_id, 16),
        "first_seen_local_epoch": row.first_seen_local_epoch,
        "last_seen_local_epoch": row.last_seen_local_epoch,
    }


def row_line(row: RegistryRow) -> str:
    """``dek_id=1 node_id16=0x0001 ...`` on one line."""
    return " ".join(f"{name}={value}" for name, value in row_dict(row).items())


def diff_sides(diff: RegistryDiff) -> list[tuple[str, RegistryRow | None, RegistryRow | None]]:
    """``(status, left row, right row)`` per differing key, in key order;
    status is "only in self", "only in other" or "changed"."""
    sides: list[tuple[str, RegistryRow | None, RegistryRow | None]] = []
    sides += [("only in self", row, None) for row in diff.only_in_self]
    sides += [("only in other", None, row) for row in diff.only_in_other]
    sides += [("changed", a, b) for a, b in diff.changed]

    def key(side: tuple[str, RegistryRow | None, RegistryRow | None]) -> tuple[int, int]:
        row = side[1] if side[1] is not None else side[2]
        assert row is not None  # one side always exists
        return (row.dek_id, row.node_id16)

    return sorted(sides, key=key)


def diff_lines(diff: RegistryDiff) -> list[str]:
    """diff(1)'s markers, in key order: ``< row`` as it is on the left,
    ``> row`` as it is on the right; a changed row shows both sides."""
    lines = []
    for _, left, right in diff_sides(diff):
        if left is not None:
            lines.append(f"< {row_line(left)}")
        if right is not None:
            lines.append(f"> {row_line(right)}")
    return lines


def diff_summary(diff: RegistryDiff, left: str = "A", right: str = "B") -> str:
    return (
        f"{len(diff.only_in_self)} row(s) only in {left}, {len(diff.only_in_other)} only in {right}, "
        f"{len(diff.changed)} changed"
    )
