"""How rows and differences are shown to people: by the command line
(inspect, export, diff) and by ``testing.assert_registries_equal``, so that
both print the same thing."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ._native import RegistryDiff, RegistryRow


def row_dict(row: RegistryRow) -> dict[str, int | str]:
    """A row with its node ids as fixed-width hex strings (a 64-bit id as a
    JSON number would be rounded by jq and JavaScript, which read numbers
    as doubles) and the rest as ints."""
    return {
        "dek_id": row.dek_id,
        "node_id16": f"0x{row.node_id16:04x}",
        "full_node_id": f"0x{row.full_node_id:016x}",
        "first_seen_local_epoch": row.first_seen_local_epoch,
        "last_seen_local_epoch": row.last_seen_local_epoch,
    }


def row_line(row: RegistryRow) -> str:
    """``dek_id=1 node_id16=0x0001 ...`` on one line."""
    return " ".join(f"{name}={value}" for name, value in row_dict(row).items())


def diff_lines(diff: RegistryDiff) -> list[str]:
    """diff(1)'s markers, in key order: ``< row`` as it is on the left,
    ``> row`` as it is on the right; a changed row shows both sides."""
    changes: list[tuple[tuple[int, int], str]] = []
    changes += [((r.dek_id, r.node_id16), f"< {row_line(r)}") for r in diff.only_in_self]
    changes += [((r.dek_id, r.node_id16), f"> {row_line(r)}") for r in diff.only_in_other]
    changes += [((x.dek_id, x.node_id16), f"< {row_line(x)}\n> {row_line(y)}") for x, y in diff.changed]
    return [text for _, text in sorted(changes, key=lambda c: c[0])]


def diff_summary(diff: RegistryDiff, left: str = "A", right: str = "B") -> str:
    return (
        f"{len(diff.only_in_self)} row(s) only in {left}, {len(diff.only_in_other)} only in {right}, "
        f"{len(diff.changed)} changed"
    )
