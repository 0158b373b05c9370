"""pandas export and notebook display for ``Registry``.

These live in Python because pandas and HTML do; the rows come from the
native ``Registry.columns()`` scan, so no Python object is built per row.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ._native import Registry

#: Column name -> numpy dtype of ``Registry.to_pandas()``.
COLUMN_DTYPES: dict[str, str] = {
    "dek_id": "uint32",
    "node_id16": "uint16",
    "full_node_id": "uint64",
    "first_seen_local_epoch": "uint16",
    "last_seen_local_epoch": "uint16",
}

INSTALL_HINT = "pip install 'encryption-applier[notebook]'"


def _pandas() -> Any:
    try:
        import pandas  # type: ignore[import-untyped,unused-ignore]
    except ImportError as err:
        raise ImportError(f"Registry.to_pandas() needs pandas, which is not installed: {INSTALL_HINT}") from err
    return pandas


def registry_to_pandas(registry: Registry, dek_id: int | None = None) -> Any:
    """One DataFrame row per registry row, in key order, with typed columns."""
    pandas = _pandas()
    import numpy

    columns = registry.columns(dek_id)
    return pandas.DataFrame({name: numpy.array(columns[name], dtype=dtype) for name, dtype in COLUMN_DTYPES.items()})


def registry_html(registry: Registry) -> str:
    """A notebook summary: path, row and DEK counts, digest, per-DEK epochs."""
    stats = registry.stats()
    rows = sum(s["rows"] for s in stats.values())
    head = (
        f"<p><strong>Registry</strong> <code>{html.escape(str(registry.path))}</code>: "
        f"{rows} row{'s' if rows != 1 else ''} under {len(stats)} DEK{'s' if len(stats) != 1 else ''}"
        f"<br><small>digest <code>{registry.digest()}</code></small></p>"
    )
    if not stats:
        return head
    cells = "".join(
        f"<tr><td>{dek}</td><td>{s['rows']}</td><td>{s['min_first_seen']}–{s['max_first_seen']}</td>"
        f"<td>{s['min_last_seen']}–{s['max_last_seen']}</td></tr>"
        for dek, s in stats.items()
    )
    return (
        head + "<table><thead><tr><th>dek_id</th><th>rows</th><th>first seen epochs</th>"
        "<th>last seen epochs</th></tr></thead><tbody>" + cells + "</tbody></table>"
    )
