"""pandas export and notebook display for ``Registry`` and ``RegistryDiff``,
and the notebook display of the ``Applier``, the sidecar, the status views
(``SidecarStateReport``, ``ResyncSidecarResponse``), ``diagnose_startup``'s
``StartupDiagnosis`` and the package's errors. Column names are SPEC §3's
and keys.json's everywhere.

These live in Python because pandas and HTML do; the rows come from the
native ``Registry.columns()`` scan, so no Python object is built per row.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from ._native import _hex_ids
from ._rows import ROW_FIELDS, VALUE_FIELDS, diff_sides, hex_id

if TYPE_CHECKING:  # pragma: no cover
    from ._native import (
        Applier,
        Registry,
        RegistryDiff,
        RegistryRow,
        ResyncSidecarResponse,
        Sidecar,
        SidecarKey,
        SidecarStateReport,
    )
    from .exceptions import EncryptionError
    from .results import StartupDiagnosis

#: The numeric columns of ``Registry.to_pandas()`` and their numpy dtypes.
EPOCH_DTYPES: dict[str, str] = {
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


def _key_index(pandas: Any, dek_ids: Any, node_ids16: Any) -> Any:
    """The registry key as a frame's index: ``(dek_id, node_id16)``, from
    the two key columns (buffers of uint32 and uint16) in key order.

    Built from its levels and codes, as ``MultiIndex.from_arrays`` would
    build it (each level the sorted distinct values; ``node_id16`` as
    fixed-width hex in pandas' ``string`` dtype), without a string per row
    nor a hash of them: a node_id16 level has at most 65,536 values, so
    only those are formatted. Rows in key order make the ``dek_id`` codes
    a running count of where the DEK changes; rows out of order would give
    a level with repeats, which ``MultiIndex`` refuses."""
    import numpy

    deks = numpy.asarray(dek_ids, dtype=numpy.uint32)
    nodes = numpy.asarray(node_ids16, dtype=numpy.uint16)
    starts = numpy.ones(len(deks), dtype=bool)
    numpy.not_equal(deks[1:], deks[:-1], out=starts[1:])
    dek_codes = numpy.cumsum(starts) - 1
    present = numpy.zeros(1 << 16, dtype=bool)
    present[nodes] = True
    node_values = numpy.flatnonzero(present).astype(numpy.uint16)
    node_codes = (numpy.cumsum(present) - 1)[nodes]
    node_level = pandas.Index(pandas.array(_hex_ids(node_values.data, 4), dtype="string"))
    return pandas.MultiIndex(
        levels=[pandas.Index(deks[starts], dtype="uint32"), node_level],
        codes=[dek_codes, node_codes],
        names=["dek_id", "node_id16"],
    )


def registry_to_pandas(registry: Registry, dek_id: int | None = None) -> Any:
    """One DataFrame row per registry row, indexed by the registry key."""
    pandas = _pandas()
    import numpy

    columns = registry.columns(dek_id)
    index = _key_index(pandas, columns["dek_id"], columns["node_id16"])
    data: dict[str, Any] = {"full_node_id": pandas.array(_hex_ids(columns["full_node_id"], 16), dtype="string")}
    for name, dtype in EPOCH_DTYPES.items():
        data[name] = numpy.array(columns[name], dtype=dtype)
    # Every array here is new and the frame's alone: no copy.
    return pandas.DataFrame(data, index=index, copy=False)


def _row_cells(row: RegistryRow) -> str:
    return (
        f"<td>{row.dek_id}</td><td><code>{hex_id(row.node_id16, 4)}</code></td>"
        f"<td><code>{hex_id(row.full_node_id, 16)}</code></td>"
        f"<td>{row.first_seen_local_epoch}</td><td>{row.last_seen_local_epoch}</td>"
    )


ROW_HEADER = "<tr>" + "".join(f"<th>{name}</th>" for name in ROW_FIELDS) + "</tr>"


def _index_text(index: int | None) -> str:
    return "None" if index is None else str(index)


def _kv_table(rows: list[tuple[str, str]]) -> str:
    """A two-column table of already-escaped values, names in ``<code>``."""
    body = "".join(f"<tr><th><code>{name}</code></th><td>{value}</td></tr>" for name, value in rows)
    return f"<table><tbody>{body}</tbody></table>"


def sidecar_html(sidecar: Sidecar | None, path: object) -> str:
    """keys.json in a notebook: its fields (keys.json's names), then its
    keys, the active one of each purpose marked."""
    where = html.escape(str(path))
    if sidecar is None:
        return f"<p>sidecar <code>{where}</code>: none yet</p>"
    fields = [
        ("version", str(sidecar.version)),
        ("raft_applied_index", str(sidecar.raft_applied_index)),
        ("active.storage", str(sidecar.active_storage)),
        ("active.raft", str(sidecar.active_raft)),
        ("storage_envelope_active", str(sidecar.storage_envelope_active).lower()),
        ("storage_envelope_cutover_index", str(sidecar.storage_envelope_cutover_index)),
        ("raft_envelope_cutover_index", str(sidecar.raft_envelope_cutover_index)),
    ]
    active = {sidecar.active_storage: "storage", sidecar.active_raft: "raft"}
    return (
        f"<p>sidecar <code>{where}</code>:</p>"
        + _kv_table(fields)
        + _keys_table(sidecar.keys, {k: f"active {v}" for k, v in active.items() if k})
    )


def _keys_table(keys: dict[int, SidecarKey], marks: dict[int, str]) -> str:
    if not keys:
        return ""
    body = "".join(
        f"<tr><td>{dek}</td><td>{k.purpose.name.lower()}</td><td>{marks.get(dek, '')}</td>"
        f"<td>{k.local_epoch}</td><td>{html.escape(k.created)}</td></tr>"
        for dek, k in keys.items()
    )
    return (
        "<table><thead><tr><th>dek_id</th><th>purpose</th><th>active</th><th>local_epoch</th><th>created</th>"
        f"</tr></thead><tbody>{body}</tbody></table>"
    )


def _default_sidecar(directory: object) -> tuple[Sidecar | None, str | None, object]:
    """keys.json where an applier keeps it by default: the sidecar (None
    when there is none), or the code of why it cannot be read."""
    from pathlib import Path

    from . import read_sidecar
    from .exceptions import SidecarError

    path = Path(str(directory)) / "keys.json"
    try:
        return read_sidecar(path), None, path
    except SidecarError as err:
        return None, err.code, path


def registry_html(registry: Registry) -> str:
    """A notebook summary: path, row and DEK counts, applied index, digest,
    the sidecar of the directory, per-DEK epochs (the first ``HTML_DEKS``
    DEKs) and the first ``HTML_ROWS`` rows."""
    stats = registry.stats()
    rows = sum(s["rows"] for s in stats.values())
    head = (
        f"<p><strong>Registry</strong> <code>{html.escape(str(registry.path))}</code>: "
        f"{rows} row{'s' if rows != 1 else ''} under {len(stats)} DEK{'s' if len(stats) != 1 else ''}, "
        f"<code>applied_index</code> {_index_text(registry.applied_index)}"
        f"<br><small>digest <code>{registry.digest()}</code></small></p>"
    )
    sidecar, problem, path = _default_sidecar(registry.path)
    if problem is not None:
        head += f"<p>sidecar <code>{html.escape(str(path))}</code>: unreadable (<code>{problem}</code>)</p>"
    elif sidecar is not None:
        head += sidecar_html(sidecar, path)
    if not stats:
        return head
    shown = list(stats.items())[:HTML_DEKS]
    # stats() names its ranges after the fields: min_<field>, max_<field>.
    cells = "".join(
        f"<tr><td>{dek}</td><td>{s['rows']}</td>"
        + "".join(f"<td>{s[f'min_{field}']}–{s[f'max_{field}']}</td>" for field in EPOCH_DTYPES)
        + "</tr>"
        for dek, s in shown
    )
    if len(stats) > HTML_DEKS:
        cells += f"<tr><td colspan=4>… {len(stats) - HTML_DEKS} more DEKs (<code>stats()</code> has them all)</td></tr>"
    per_dek = (
        "<table><thead><tr><th>dek_id</th><th>rows</th>"
        + "".join(f"<th>{field} (min–max)</th>" for field in EPOCH_DTYPES)
        + "</tr></thead><tbody>"
        + cells
        + "</tbody></table>"
    )
    first = registry.head(HTML_ROWS)
    body = "".join(f"<tr>{_row_cells(r)}</tr>" for r in first)
    if rows > len(first):
        body += f"<tr><td colspan=5>… {rows - len(first)} more rows (<code>to_pandas()</code> has them all)</td></tr>"
    preview = f"<p>First rows:</p><table><thead>{ROW_HEADER}</thead><tbody>{body}</tbody></table>"
    return head + per_dek + preview


def applier_html(applier: Applier) -> str:
    """An applier in a notebook: path, mode, indexes, KEK, its sidecar and
    its registry's size."""
    name = "<p><strong>Applier</strong> <code>" + html.escape(str(applier.path)) + "</code>"
    if applier.closed:
        return name + " (closed)</p>"
    fields = [
        ("mode", f"<code>{html.escape(applier.mode)}</code>"),
        ("applied_index", _index_text(applier.applied_index)),
        ("durable_index", _index_text(applier.durable_index)),
        ("staged", str(applier.staged)),
        ("kek", html.escape(repr(applier.kek)) if applier.kek is not None else "None (no bootstrap or rotation)"),
    ]
    with applier.registry as registry:
        stats = registry.stats()
    rows = sum(s["rows"] for s in stats.values())
    fields.append(("registry", f"{rows} row{'s' if rows != 1 else ''} under {len(stats)} DEKs"))
    out = name + "</p>" + _kv_table(fields)
    if applier.sidecar_path is not None:
        out += sidecar_html(applier.sidecar, applier.sidecar_path)
    return out


def _field_text(name: str, value: object) -> str:
    """A field of an error, ids in hex as everywhere else."""
    if isinstance(value, int) and not isinstance(value, bool):
        if name == "node_id16":
            return hex_id(value, 4)
        if name.endswith("full_node_id"):
            return hex_id(value, 16)
    return repr(value)


def _fields_cell(error: EncryptionError) -> str:
    return "<br>".join(
        f"<code>{name}={html.escape(_field_text(name, value))}</code>"
        for name, value in error.fields.items()
        if name not in ("sentinel", "meaning")
    )


def error_html(error: EncryptionError) -> str:
    """An error shown in a notebook (a halt displayed, not raised): its
    class, whether it is a halt, its message and its fields."""
    from .exceptions import EncryptionApplyError, StartupRefusedError

    kind = (
        "halt: the entry was not applied and nothing of it was written"
        if isinstance(error, EncryptionApplyError)
        else "start-up refusal"
        if isinstance(error, StartupRefusedError)
        else "error"
    )
    rows = [(name, html.escape(_field_text(name, value))) for name, value in error.fields.items()]
    if isinstance(error, EncryptionApplyError) and error.position is not None:
        rows.append(("position", str(error.position)))
    notes = getattr(error, "__notes__", [])
    out = (
        f'<div class="encryption-error"><p><strong>{type(error).__name__}</strong> ({kind})</p>'
        f"<pre>{html.escape(str(error))}</pre>"
    )
    if rows:
        out += _kv_table(rows)
    out += "".join(f"<p><small>{html.escape(note)}</small></p>" for note in notes)
    return out + "</div>"


def diagnosis_html(diagnosis: StartupDiagnosis) -> str:
    """``diagnose_startup``'s refusals as a table, in Go's order, then the
    guards that did not run and why."""
    skipped = ""
    if diagnosis.skipped:
        rows = "".join(
            f"<tr><td>{s.guard}</td><td><code>{html.escape(s.sentinel)}</code></td><td>{html.escape(s.reason)}</td></tr>"
            for s in diagnosis.skipped
        )
        skipped = (
            "<p>guards not run</p><table><thead><tr><th>guard</th><th>sentinel</th><th>why</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
    if not diagnosis:
        return "<p><strong>StartupDiagnosis</strong>: no refusal, the node may start</p>" + skipped
    body = "".join(
        f"<tr><td>{i}</td><td>{type(r).__name__}</td><td><code>{html.escape(str(r.sentinel))}</code></td>"
        f"<td>{html.escape(str(r))}</td><td>{html.escape(r.meaning or '')}</td><td>{_fields_cell(r)}</td></tr>"
        for i, r in enumerate(diagnosis)
    )
    count = len(diagnosis)
    return (
        f"<p><strong>StartupDiagnosis</strong>: {count} refusal{'s' if count != 1 else ''} "
        "(the node must not start)</p>"
        "<table><thead><tr><th>#</th><th>refusal</th><th>sentinel</th><th>message</th><th>meaning</th>"
        f"<th>fields</th></tr></thead><tbody>{body}</tbody></table>" + skipped
    )


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
    """``RegistryDiff.to_pandas()``: indexed by the registry key, nullable
    columns, so a side without the row shows ``<NA>``."""
    pandas = _pandas()
    records = _diff_records(diff)
    index = _key_index(pandas, [r["dek_id"] for r in records], [r["node_id16"] for r in records])
    data: dict[str, Any] = {"status": pandas.array([r["status"] for r in records], dtype="string")}
    for name in VALUE_FIELDS:
        for side in ("self", "other"):
            values = [r[f"{name}_{side}"] for r in records]
            if name == "full_node_id":
                data[f"{name}_{side}"] = pandas.array(
                    [None if v is None else hex_id(v, 16) for v in values], dtype="string"
                )
            else:
                data[f"{name}_{side}"] = pandas.array(values, dtype="UInt16")
    data["differing"] = pandas.array([r["differing"] for r in records], dtype="string")
    return pandas.DataFrame(data, index=index)


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
    active = {message.active_storage_id: "active", message.active_raft_id: "active"}
    return out + _keys_table(extras.keys, active)
