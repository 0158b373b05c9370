"""Every notebook under notebooks/ runs top to bottom in a clean kernel
(its cells assert what they show), and none is committed with outputs.

``explore_registry.ipynb`` is run once, with one cell added before its
last (the clean-up) that writes out what its plots drew (the bars, the
heat map's array, the timeline's points), the log it applied and a copy of
two replicas' ``data.mdb``. The tests then recompute each plot's arrays
from those rows (read by py-lmdb) and from the log (through the plain
Python reference model), not from the notebook's own code, and parse the
HTML of its rich views (the applier, the registry, the halts, the diff,
the start-up diagnosis) table by table."""

import json
import struct
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

import encryption_applier as ea
from encryption_applier.testing.model import Halt, RegistryModel

from helpers import REPO, dump_raw

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
EXPLORE = REPO / "notebooks" / "explore_registry.ipynb"

# Added before explore_registry's clean-up cell: what the plots drew, as data.
DUMP = """
import json as _json
from pathlib import Path as _Path

_out = _Path({out!r})


def _bars(ax):
    return [
        {{"label": c.get_label(), "x": [float(p.get_x()) for p in c], "heights": [float(p.get_height()) for p in c]}}
        for c in ax.containers
    ]


_epochs = fig_epochs.axes[0]
_keys = fig_keys.axes[0]
_diff = fig_diff.axes[0]
_data = {{
    "attempts": [[i, e.hex(), o] for i, e, o in attempts],
    "outcomes": _bars(fig_outcomes.axes[0]),
    "epochs": {{
        "image": _epochs.images[0].get_array().filled(-1).tolist(),
        "yticks": [t.get_text() for t in _epochs.get_yticklabels()],
        "xticks": [t.get_text() for t in _epochs.get_xticklabels()],
    }},
    "keys": {{
        "points": {{c.get_label(): c.get_offsets().tolist() for c in _keys.collections}},
        "cutovers": sorted(float(line.get_xdata()[0]) for line in _keys.lines if line.get_linestyle() == "--"),
    }},
    "diff": {{"bars": _bars(_diff), "xticks": [t.get_text() for t in _diff.get_xticklabels()]}},
}}
_out.joinpath("plots.json").write_text(_json.dumps(_data, default=float))
applier.flush()
for _name in ("replica-1", "replica-3"):
    (_out / _name).mkdir()
    (_out / _name / "data.mdb").write_bytes((root / _name / "data.mdb").read_bytes())
"""


def execute(path: Path, workdir: Path, out: Path | None = None) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        f"{path.name} is committed with outputs; clear them"
    )
    if out is not None:
        at = next(i for i, c in enumerate(notebook.cells) if "cleanup" in c.metadata.get("tags", []))
        notebook.cells.insert(at, nbformat.v4.new_code_cell(DUMP.format(out=str(out))))
    NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    ).execute()
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    return notebook


@pytest.fixture(scope="module")
def explored(tmp_path_factory: pytest.TempPathFactory) -> tuple[nbformat.NotebookNode, Path]:
    out = tmp_path_factory.mktemp("explore-out")
    return execute(EXPLORE, tmp_path_factory.mktemp("explore-run"), out), out


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS and EXPLORE in NOTEBOOKS


def test_every_notebook_runs_clean(explored: tuple[nbformat.NotebookNode, Path], tmp_path: Path) -> None:
    # explore_registry.ipynb ran once for the module (the fixture); any
    # other notebook in notebooks/ runs here.
    notebook, _ = explored
    assert any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    for path in NOTEBOOKS:
        if path != EXPLORE:
            (workdir := tmp_path / path.stem).mkdir()
            execute(path, workdir)


def test_explore_registry_runs_clean(explored: tuple[nbformat.NotebookNode, Path]) -> None:
    notebook, out = explored
    assert (out / "plots.json").exists()
    # The notebook cleaned up after itself (its last cell asserts it too).
    assert not any(o.get("output_type") == "error" for c in notebook.cells for o in c.get("outputs", []))


# ---------------------------------------------------------------- the rows and the log, independently

ROW = struct.Struct(">QHH")


def raw_rows(directory: Path) -> dict[tuple[int, int], tuple[int, int, int]]:
    """(dek_id, node_id16) -> (full_node_id, first, last), read by py-lmdb
    and decoded here by SPEC §3's layout."""
    rows = {}
    for key, value in dump_raw(directory):
        if not key.startswith(ea.REGISTRY_PREFIX):
            continue
        rest = key[len(ea.REGISTRY_PREFIX) :]
        assert len(rest) == 7 and rest[4:5] == b"|"
        dek, node16 = struct.unpack(">I", rest[:4])[0], struct.unpack(">H", rest[5:])[0]
        rows[(dek, node16)] = ROW.unpack(value)
    return rows


def plots(out: Path) -> dict[str, Any]:
    return json.loads((out / "plots.json").read_text())  # type: ignore[no-any-return]


def model_outcomes(attempts: list[list[Any]]) -> list[tuple[int, str]]:
    """Each attempted entry's outcome by the reference model: a
    registration by the four cases (a halt leaves the model as it was), a
    bootstrap's batch, a rotation's proposer and a fresh cutover's proposer
    (applier/cutover.rs) as rows."""
    model = RegistryModel()
    outcomes = []
    for index, entry_hex, _ in attempts:
        entry = bytes.fromhex(entry_hex)
        if entry[0] == ea.OP_REGISTRATION:
            version, dek, full, epoch = struct.unpack(">BIQH", entry[1:])
            assert version == 1
            got = model.apply_registration(dek, full, epoch)
            outcomes.append((index, "halted" if isinstance(got, Halt) else got))
            continue
        payload = ea.decode_entry(entry)
        if isinstance(payload, ea.Bootstrap):
            for r in payload.batch_registry:
                model.apply_registration(r.dek_id, r.full_node_id, r.local_epoch)
            outcomes.append((index, "bootstrapped"))
        else:
            assert isinstance(payload, ea.Rotation)
            p = payload.proposer_registration
            model.apply_registration(p.dek_id, p.full_node_id, p.local_epoch)
            outcomes.append((index, "rotated" if payload.sub_tag == ea.ROTATE_DEK else "enabled"))
    return outcomes


def test_outcome_bars_are_the_models_outcomes_per_bin(explored: tuple[nbformat.NotebookNode, Path]) -> None:
    data = plots(explored[1])
    outcomes = model_outcomes(data["attempts"])
    # The notebook recorded what the applier answered: the model agrees.
    assert [(i, o) for i, _, o in data["attempts"]] == outcomes
    bins = (len(outcomes) + 249) // 250
    bars = {b["label"]: b for b in data["outcomes"]}
    assert list(bars) == ["inserted", "advanced", "unchanged", "halted"]
    for kind, bar in bars.items():
        expected = [0] * bins
        for index, outcome in outcomes:
            if outcome == kind:
                expected[(index - 1) // 250] += 1
        assert bar["heights"] == expected, kind
        assert bar["x"] == [1 + 250 * b for b in range(bins)]
    assert sum(bars["halted"]["heights"]) > 0 and sum(bars["unchanged"]["heights"]) > 0


def test_heat_map_is_the_rows_last_seen_epochs(explored: tuple[nbformat.NotebookNode, Path]) -> None:
    data, rows = plots(explored[1]), raw_rows(explored[1] / "replica-1")
    assert len(rows) > 2000  # a registry of realistic size
    deks = sorted({d for d, _ in rows})
    nodes = sorted({n for _, n in rows})
    expected = [[rows[(d, n)][2] if (d, n) in rows else -1 for n in nodes] for d in deks]
    assert data["epochs"]["image"] == expected
    assert data["epochs"]["yticks"] == [str(d) for d in deks]
    assert data["epochs"]["xticks"] == [f"0x{n:04x}" for n in nodes[::25]]


def test_key_timeline_is_the_logs_key_entries(explored: tuple[nbformat.NotebookNode, Path]) -> None:
    data = plots(explored[1])
    installed: dict[str, list[list[float]]] = {"storage": [], "raft": []}
    cutovers = []
    for index, entry_hex, outcome in data["attempts"]:
        entry = bytes.fromhex(entry_hex)
        if entry[0] == ea.OP_BOOTSTRAP:  # [ver][storage id u32][len u32]...[raft id u32][len u32]...
            storage = struct.unpack(">I", entry[2:6])[0]
            length = struct.unpack(">I", entry[6:10])[0]
            raft = struct.unpack(">I", entry[10 + length : 14 + length])[0]
            installed["storage"].append([index, storage])
            installed["raft"].append([index, raft])
        elif entry[0] == ea.OP_ROTATION:  # [ver][sub_tag][dek_id u32][purpose]...
            sub_tag, dek, purpose = entry[2], struct.unpack(">I", entry[3:7])[0], entry[7]
            if sub_tag == ea.ROTATE_DEK:
                installed["storage" if purpose == 1 else "raft"].append([index, dek])
            else:
                cutovers.append(float(index))
            assert outcome in ("rotated", "enabled")
    points = data["keys"]["points"]
    assert points["storage key installed"] == installed["storage"]
    assert points["raft key installed"] == installed["raft"]
    assert len(installed["storage"]) > 10 and len(installed["raft"]) == 2
    assert data["keys"]["cutovers"] == sorted(cutovers) and len(cutovers) == 2


def test_diff_bars_are_what_the_lagging_replica_lacks(explored: tuple[nbformat.NotebookNode, Path]) -> None:
    data, out = plots(explored[1]), explored[1]
    first, lagging = raw_rows(out / "replica-1"), raw_rows(out / "replica-3")
    assert not set(lagging) - set(first)  # it only lacks
    missing = Counter(d for key, d in ((k, k[0]) for k in first) if key not in lagging)
    changed = Counter(k[0] for k in first if k in lagging and first[k] != lagging[k])
    deks = sorted(set(missing) | set(changed))
    assert data["diff"]["xticks"] == [str(d) for d in deks]
    bars = {b["label"]: b["heights"] for b in data["diff"]["bars"]}
    assert bars == {"only in self": [missing[d] for d in deks], "changed": [changed[d] for d in deks]}
    assert sum(missing.values()) > 0 and sum(changed.values()) > 0


# ---------------------------------------------------------------- the HTML views


class Tables(HTMLParser):
    """Every table of an HTML fragment: (header cells, body rows), a row's
    cells as text; and the text of every ``<p>``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: list[tuple[list[str], list[list[str]]]] = []
        self.paragraphs: list[str] = []
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._in_head = False
        self._para: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append(([], []))
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "p":
            self._para = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "thead":
            self._in_head = False
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            head, body = self.tables[-1]
            (head.extend if self._in_head else body.append)(self._row)  # type: ignore[operator]
            self._row = None
        elif tag == "p" and self._para is not None:
            self.paragraphs.append("".join(self._para).strip())
            self._para = None

    def handle_data(self, data: str) -> None:
        for part in (self._cell, self._para):
            if part is not None:
                part.append(data)


def html_of(notebook: nbformat.NotebookNode, tag: str) -> list[str]:
    cell = next(c for c in notebook.cells if tag in c.metadata.get("tags", []))
    return [o["data"]["text/html"] for o in cell.outputs if "text/html" in o.get("data", {})]


KEYS_HEADER = ["dek_id", "purpose", "active", "local_epoch", "created"]


def test_the_applier_view(explored: tuple[nbformat.NotebookNode, Path]) -> None:
    (page,) = html_of(explored[0], "applier-view")
    parsed = Tables(page)
    fields, sidecar, keys = parsed.tables
    assert dict(fields[1]) == {  # type: ignore[arg-type]
        "mode": "sync=False",
        "applied_index": "1",
        "durable_index": "1",
        "staged": "0",
        "kek": dict(fields[1])["kek"],  # type: ignore[arg-type]
        "registry": "400 rows under 2 DEKs",
    }
    assert dict(fields[1])["kek"].startswith("FileKek(")  # type: ignore[arg-type]
    assert dict(sidecar[1])["raft_applied_index"] == "1"  # type: ignore[arg-type]
    assert keys[0] == KEYS_HEADER
    assert [row[:4] for row in keys[1]] == [["1", "storage", "active storage", "0"], ["2", "raft", "active raft", "0"]]


def test_the_registry_view(explored: tuple[nbformat.NotebookNode, Path]) -> None:
    notebook, out = explored
    (page,) = html_of(notebook, "registry-view")
    rows, data = raw_rows(out / "replica-1"), plots(out)
    parsed = Tables(page)
    deks = sorted({d for d, _ in rows})
    assert parsed.paragraphs[0].startswith("Registry ")
    assert f"{len(rows)} rows under {len(deks)} DEKs, applied_index {data['attempts'][-1][0]}" in parsed.paragraphs[0]
    fields, keys, per_dek, preview = parsed.tables
    key_entries = [o for _, _, o in data["attempts"] if o in ("bootstrapped", "rotated")]
    assert keys[0] == KEYS_HEADER and len(keys[1]) == len(key_entries) + 1  # the bootstrap brings two
    assert sum(1 for row in keys[1] if row[2].startswith("active")) == 2
    assert per_dek[0] == ["dek_id", "rows", "first_seen_local_epoch (min–max)", "last_seen_local_epoch (min–max)"]
    for row, dek in zip(per_dek[1], deks[:10], strict=False):
        mine = [v for (d, _), v in rows.items() if d == dek]
        firsts, lasts = [v[1] for v in mine], [v[2] for v in mine]
        assert row == [str(dek), str(len(mine)), f"{min(firsts)}–{max(firsts)}", f"{min(lasts)}–{max(lasts)}"]
    assert per_dek[1][-1][0] == f"… {len(deks) - 10} more DEKs (stats() has them all)"
    assert preview[0] == ["dek_id", "node_id16", "full_node_id", "first_seen_local_epoch", "last_seen_local_epoch"]
    first = sorted(rows.items())[:10]
    assert preview[1][:10] == [
        [str(d), f"0x{n:04x}", f"0x{full:016x}", str(a), str(b)] for (d, n), (full, a, b) in first
    ]
    assert preview[1][10] == [f"… {len(rows) - 10} more rows (to_pandas() has them all)"]


def test_the_halt_views(explored: tuple[nbformat.NotebookNode, Path]) -> None:
    rollback, collision = html_of(explored[0], "halt-views")
    for page, name in ((rollback, "LocalEpochRollbackError"), (collision, "NodeIDCollisionError")):
        parsed = Tables(page)
        assert parsed.paragraphs[0] == f"{name} (halt: the entry was not applied and nothing of it was written)"
    fields = dict(Tables(rollback).tables[0][1])  # type: ignore[arg-type]
    assert list(fields) == ["dek_id", "full_node_id", "last_seen", "incoming"]
    assert int(fields["incoming"]) == int(fields["last_seen"]) - 1
    assert len(fields["full_node_id"]) == 18 and fields["full_node_id"].startswith("0x")
    fields = dict(Tables(collision).tables[0][1])  # type: ignore[arg-type]
    assert list(fields) == ["dek_id", "node_id16", "existing_full_node_id", "incoming_full_node_id"]
    assert fields["incoming_full_node_id"].startswith("0x0000ee00") and fields["node_id16"].startswith("0x")


def test_the_diff_view(explored: tuple[nbformat.NotebookNode, Path]) -> None:
    notebook, out = explored
    (page,) = html_of(notebook, "diff-view")
    first, lagging = raw_rows(out / "replica-1"), raw_rows(out / "replica-3")
    missing = sorted(k for k in first if k not in lagging)
    changed = sorted(k for k in first if k in lagging and first[k] != lagging[k])
    parsed = Tables(page)
    assert parsed.paragraphs[0] == f"RegistryDiff: {len(missing)} only in self, 0 only in other, {len(changed)} changed"
    ((head, body),) = parsed.tables
    fields = ("full_node_id", "first_seen_local_epoch", "last_seen_local_epoch")
    assert head == ["dek_id", "node_id16", "status"] + [f"{f} ({s})" for f in fields for s in ("self", "other")]
    differing = sorted([(k, "only in self") for k in missing] + [(k, "changed") for k in changed])
    shown = body[:100]
    assert [(int(r[0]), int(r[1], 16)) for r in shown] == [k for k, _ in differing[:100]]
    assert [r[2] for r in shown] == [s for _, s in differing[:100]]
    assert body[100] == [f"… {len(differing) - 100} more (to_pandas() has them all)"]


def test_the_startup_diagnosis_view(explored: tuple[nbformat.NotebookNode, Path]) -> None:
    (page,) = html_of(explored[0], "diagnosis-view")
    parsed = Tables(page)
    assert parsed.paragraphs[0] == "StartupDiagnosis: 1 refusal (the node must not start)"
    (head, body), *skipped = parsed.tables
    assert head == ["#", "refusal", "sentinel", "message", "meaning", "fields"]
    # Then the guards that did not run (the notebook gives no snapshot, so
    # guard 0 is one of them), each with its reason.
    ((skip_head, skip_body),) = skipped
    assert skip_head == ["guard", "sentinel", "why"]
    assert ["0", "ErrEnvelopeCutoverDivergence"] in [row[:2] for row in skip_body]
    assert all(len(row) == 3 and row[1].startswith("Err") and row[2] for row in skip_body)
    ((number, refusal, sentinel, message, meaning, fields),) = body
    assert (number, refusal, sentinel) == ("0", "StartupLocalEpochRollbackError", "ErrLocalEpochRollback")
    assert message.startswith("ErrLocalEpochRollback: sidecar local_epoch=0 < registry last_seen_local_epoch=")
    assert "problem='behind'" in fields and "sidecar_epoch=0" in fields and meaning
