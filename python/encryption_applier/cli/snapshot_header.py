"""``snapshot-header``: an elastickv snapshot's header and Raft cutover, as Go
reads them."""

from __future__ import annotations

import argparse
import json
import typing
from pathlib import Path
from typing import TextIO

from .. import _native as ea
from ..exceptions import SnapshotError
from ._common import (
    EXIT_DAMAGED,
    EXIT_OK,
    Parser,
)


def add_snapshot_header(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "snapshot-header",
        help="read an elastickv snapshot's header and Raft cutover as Go reads it",
        description="Read an elastickv FSM snapshot as Go reads it, every CRC Go checks checked: a .snap file "
        "(its payload inline, or the fsm-snap/ file its token names), an .fsm file, or a Raft group's data "
        "directory (wal/, snap/, fsm-snap/), whose newest snapshot is chosen as Go chooses it. Exit 0 when it "
        "reads (or the directory has no snapshot to restore), 1 when Go refuses the snapshot, 2 when it "
        "cannot be read.",
    )
    p.add_argument("path", metavar="PATH", help="a .snap or .fsm file, or a data directory")
    p.add_argument("--json", action="store_true", help="print what was read as JSON")
    p.set_defaults(run=cmd_snapshot_header)


def _snapshot_doc(h: ea.SnapshotHeader) -> dict[str, typing.Any]:
    names = ("format", "term", "index", "token_index", "payload_size", "kind", "version", "header_length")
    doc: dict[str, typing.Any] = {"path": str(h.path), "payload_path": str(h.payload_path)}
    doc |= {name: getattr(h, name) for name in names}
    return doc | {"ceiling_ms": h.ceiling_ms, "raft_envelope_cutover_index": h.raft_envelope_cutover_index}


def cmd_snapshot_header(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    path = Path(args.path)
    try:
        chosen = ea.newest_snapshot(path) if path.is_dir() else path
        header = ea.read_snapshot_header(chosen) if chosen is not None else None
    except SnapshotError as error:
        if not error.refused:
            raise
        if args.json:
            fields = {name: getattr(error, name) for name in ("path", "code", "reason", "index", "details")}
            print(json.dumps({"refused": fields}, indent=2), file=out)
        else:
            print(f"REFUSED ({error.code}): {error}", file=out)
        return EXIT_DAMAGED
    if args.json:
        print(json.dumps({"snapshot": _snapshot_doc(header) if header else None}, indent=2), file=out)
        return EXIT_OK
    if header is None:
        print(
            f"{path}: no snapshot for Go to restore (no .wal file in {path / 'wal'}, or no .snap file in "
            f"{path / 'snap'} that is readable and recorded in the WAL's committed snapshots)",
            file=out,
        )
        return EXIT_OK
    raft = f" (term {header.term}, index {header.index})" if header.index is not None else ""
    print(f"snapshot: {header.path}{raft}", file=out)
    print(f"payload:  {header.payload_path} ({header.format}, {header.payload_size} bytes)", file=out)
    if header.kind == "none":
        print("header:   none (the snapshot has no payload: Go restores nothing from it)", file=out)
    else:
        print(f"header:   {header.kind} ({header.header_length} bytes), ceiling {header.ceiling_ms} ms", file=out)
    print(f"raft_envelope_cutover_index: {header.raft_envelope_cutover_index}", file=out)
    return EXIT_OK
