"""pandas export and notebook display for ``Registry`` and ``RegistryDiff``,
and the notebook display of the status views (``SidecarStateReport``,
``ResyncSidecarResponse``).

These live in Python because pandas and HTML do; the rows come from the
native ``Registry.columns()`` scan, so no Python object is built per row.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from ._native import _hex_ids
from ._rows import VALUE_FIELDS, diff_sides, hex_id

if TYPE_CHECKING:  # pragma: no cover
    from ._native import Registry, RegistryDiff, RegistryRow, ResyncSidecarResponse, SidecarStateReport

#: Column name -> numpy dtype of ``Registry.to_pandas()``.
COLUMN_DTYPES: dict[str, str] = {
    "dek_id": "uint32",
    "node_id16": "uint16",
    "full_node_id": "uint64",
    "first_seen_local_epoch": "uint16",
    "last_seen_local_epoch": "uint16",
}

INSTALL_HINT = "pip install 'encryption-applier[notebook]'"

#: Rows and DEKs a notebook summary shows before it cuts off.
HTML_ROWS = 10
HTML_DEKS = 10


def _pandas() -> Any:
    try:
        import pandas  # type: ignore[import-untyped,unused-ignore]
    except ImportError as err:
        raise ImportError(f"to_pandas() needs pandas, which is not installed: {INSTALL_HINT}") from err
    return pandas


def registry_to_pandas(registry: Registry, dek_id: int | None = None) -> Any:
    """One DataFrame row per registry row, in key order, with typed columns
    and ``full_node_id_hex``, the 64-bit id as fixed-width hex (how node ids
    are read; the uint64 column stays for arithmetic)."""
    pandas = _pandas()
    import numpy

    columns = registry.columns(dek_id)
    frame = pandas.DataFrame({name: numpy.array(columns[name], dtype=dtype) for name, dtype in COLUMN_DTYPES.items()})
    frame.insert(3, "full_node_id_hex", _hex_ids(columns["full_node_id"], 16))
    return frame


def _row_cells(row: RegistryRow) -> str:
    return (
        f"<td>{row.dek_id}</td><td><code>{hex_id(row.node_id16, 4)}</code></td>"
        f"<td><code>{hex_id(row.full_node_id, 16)}</code></td>"
        f"<td>{row.first_seen_local_epoch}</td><td>{row.last_seen_local_epoch}</td>"
    )


ROW_HEADER = (
    "<tr><th>dek_id</th><th>node_id16</th><th>full_node_id</th><th>first_seen_local_epoch</th>"
    "<th>last_seen_local_epoch</th></tr>"
)


def registry_html(registry: Registry) -> str:
    """A notebook summary: path, row and DEK counts, digest, per-DEK epochs
    (the first ``HTML_DEKS`` DEKs) and the first ``HTML_ROWS`` rows."""
    stats = registry.stats()
    rows = sum(s["rows"] for s in stats.values())
    head = (
        f"<p><strong>Registry</strong> <code>{html.escape(str(registry.path))}</code>: "
        f"{rows} row{'s' if rows != 1 else ''} under {len(stats)} DEK{'s' if len(stats) != 1 else ''}"
        f"<br><small>digest <code>{registry.digest()}</code></small></p>"
    )
    if not stats:
        return head
    shown = list(stats.items())[:HTML_DEKS]
    cells = "".join(
        f"<tr><td>{dek}</td><td>{s['rows']}</td><td>{s['min_first_seen']}–{s['max_first_seen']}</td>"
        f"<td>{s['min_last_seen']}–{s['max_last_seen']}</td></tr>"
        for dek, s in shown
    )
    if len(stats) > HTML_DEKS:
        cells += f"<tr><td colspan=4>… {len(stats) - HTML_DEKS} more DEKs (<code>stats()</code> has them all)</td></tr>"
    per_dek = (
        "<table><thead><tr><th>dek_id</th><th>rows</th><th>first seen epochs</th>"
        "<th>last seen epochs</th></tr></thead><tbody>" + cells + "</tbody></table>"
    )
    first = registry.head(HTML_ROWS)
    body = "".join(f"<tr>{_row_cells(r)}</tr>" for r in first)
    if rows > len(first):
        body += f"<tr><td colspan=5>… {rows - len(first)} more rows (<code>to_pandas()</code> has them all)</td></tr>"
    preview = f"<p>First rows:</p><table><thead>{ROW_HEADER}</thead><tbody>{body}</tbody></table>"
    return head + per_dek + preview


def _diff_records(diff: RegistryDiff) -> list[dict[str, Any]]:
    """One record per differing key, in key order."""
    records: list[dict[str, Any]] = []
    for status, mine, theirs in diff_sides(diff):
        key_row = mine if mine is not None else theirs
        assert key_row is not None  # one side always exists
        record: dict[str, Any] = {
            "dek_id": key_row.dek_id,
            "node_id16": key_row.node_id16,
            "status": status,
        }
        differing = []
        for name in VALUE_FIELDS:
            a = getattr(mine, name) if mine is not None else None
            b = getattr(theirs, name) if theirs is not None else None
            record[f"{name}_self"], record[f"{name}_other"] = a, b
            if a != b and status == "changed":
                differing.append(name)
        record["differing"] = ", ".join(differing)
        records.append(record)
    return records


def diff_to_pandas(diff: RegistryDiff) -> Any:
    """``RegistryDiff.to_pandas()``: nullable unsigned columns, so a side
    without the row shows ``<NA>``, and the full node ids in hex too."""
    pandas = _pandas()
    records = _diff_records(diff)
    dtypes = {"dek_id": "UInt32", "node_id16": "UInt16"}
    for name in VALUE_FIELDS:
        dtype = "UInt64" if name == "full_node_id" else "UInt16"
        dtypes[f"{name}_self"] = dtypes[f"{name}_other"] = dtype
    columns = ["dek_id", "node_id16", "status", *(f"{n}_{s}" for n in VALUE_FIELDS for s in ("self", "other"))]
    frame = pandas.DataFrame.from_records(records, columns=[*columns, "differing"]).astype(dtypes)
    # The ids as inspect and export show them, next to the numbers.
    for position, side in ((5, "self"), (6, "other")):
        hex_ids = [None if v is None else hex_id(v, 16) for v in (r[f"full_node_id_{side}"] for r in records)]
        frame.insert(position, f"full_node_id_hex_{side}", pandas.array(hex_ids, dtype="string"))
    return frame


#: How a differing cell is marked in the HTML table.
MARK = ' style="background:#fde2e1;font-weight:bold"'


def diff_html(diff: RegistryDiff) -> str:
    """A notebook table of the differences, differing cells marked."""
    records = _diff_records(diff)
    summary = (
        f"<p><strong>RegistryDiff</strong>: {len(diff.only_in_self)} only in self, "
        f"{len(diff.only_in_other)} only in other, {len(diff.changed)} changed</p>"
    )
    if not records:
        return "<p><strong>RegistryDiff</strong>: identical</p>"

    def cell(name: str, value: int | None, differs: bool) -> str:
        text = "—" if value is None else (hex_id(value, 16) if name == "full_node_id" else str(value))
        return f"<td{MARK if differs else ''}>{text}</td>"

    head = "<tr><th>dek_id</th><th>node_id16</th><th>status</th>" + "".join(
        f"<th>{n} (self)</th><th>{n} (other)</th>" for n in VALUE_FIELDS
    )
    body = ""
    for r in records[: HTML_ROWS * 10]:
        differing = r["differing"].split(", ")
        body += f"<tr><td>{r['dek_id']}</td><td><code>{hex_id(r['node_id16'], 4)}</code></td><td>{r['status']}</td>"
        for name in VALUE_FIELDS:
            for side in ("self", "other"):
                body += cell(name, r[f"{name}_{side}"], name in differing)
        body += "</tr>"
    if len(records) > HTML_ROWS * 10:
        more = len(records) - HTML_ROWS * 10
        body += f"<tr><td colspan=9>… {more} more (<code>to_pandas()</code> has them all)</td></tr>"
    return f"{summary}<table><thead>{head}</tr></thead><tbody>{body}</tbody></table>"


def status_html(message: SidecarStateReport | ResyncSidecarResponse) -> str:
    """A notebook view of a status message: Go's fields (what elastickv's
    server answers), then the package's extras, apart."""
    name = type(message).__name__

    def cell(key: str, value: object) -> str:
        if key == "wrapped_deks_by_id":
            assert isinstance(value, dict)
            return ", ".join(f"{dek}: {len(w)} bytes" for dek, w in value.items()) or "none"
        if key == "writer_registry_for_caller":
            assert isinstance(value, dict)
            return ", ".join(f"{dek}: {epoch}" for dek, epoch in value.items()) or "empty"
        return str(value).lower() if isinstance(value, bool) else str(value)

    # In Go's field order (the proto's field numbers).
    rows = "".join(
        f"<tr><td><code>{key}</code></td><td>{html.escape(cell(key, value))}</td></tr>"
        for key, value in message.to_dict(extras=False).items()
    )
    out = f"<p><strong>{name}</strong> (Go's fields)</p><table><tbody>{rows}</tbody></table>"
    extras = message.extras
    if extras is None:
        return out + "<p><small>no extras (read from Go's JSON)</small></p>"
    caller = hex_id(extras.caller_full_node_id, 16) if extras.caller_full_node_id else "none given"
    out += (
        "<p><strong>extras</strong> (this package; not in Go's message): "
        f"sidecar <code>{html.escape(extras.sidecar)}</code> (version {extras.sidecar_version}, "
        f"raft_applied_index {extras.sidecar_raft_applied_index}), "
        f"storage_envelope_cutover_index {extras.storage_envelope_cutover_index}"
    )
    if extras.storage_envelope_active is not None:
        out += (
            f", storage_envelope_active {str(extras.storage_envelope_active).lower()}, "
            f"raft_envelope_cutover_index {extras.raft_envelope_cutover_index}"
        )
    registry = f"<code>{html.escape(extras.registry)}</code>" if extras.registry else "none read"
    out += f"; caller {caller}, registry {registry}</p>"
    active = {message.active_storage_id: "storage", message.active_raft_id: "raft"}
    keys = "".join(
        f"<tr><td>{dek}</td><td>{k.purpose.name.lower()}</td><td>{'active' if active.get(dek) else ''}</td>"
        f"<td>{k.local_epoch}</td><td>{html.escape(k.created)}</td></tr>"
        for dek, k in extras.keys.items()
    )
    if keys:
        out += (
            "<table><thead><tr><th>dek_id</th><th>purpose</th><th></th><th>local_epoch</th><th>created</th>"
            f"</tr></thead><tbody>{keys}</tbody></table>"
        )
    return out
