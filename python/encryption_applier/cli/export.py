"""``export``: the rows as CSV or JSON (SPEC §5's column names, node ids
as fixed-width hex strings), streamed."""

from __future__ import annotations

import argparse
from typing import TextIO

from .. import _native as ea
from .._rows import ROW_FIELDS
from ._common import (
    EXIT_OK,
    PROGRESS_ROWS,
    STDIN,
    Parser,
    Progress,
    add_progress_option,
    dek_id_arg,
    open_owner_only,
    progress_wanted,
    row_batches,
)

#: One row of the JSON list, as ``json.dump(rows, indent=2)`` writes it.
JSON_ROW = (
    "  {{\n"
    + ",\n".join(
        f'    "{name}": {value}' for name, value in zip(ROW_FIELDS, ("{}", '"{}"', '"{}"', "{}", "{}"), strict=True)
    )
    + "\n  }}"
)


def add_export(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "export",
        help="write the rows as CSV or JSON",
        description="Write the rows as CSV or JSON, in key order, with SPEC §5's column names (node ids as "
        "fixed-width hex strings).",
    )
    p.add_argument("directory", help="registry directory")
    p.add_argument("--format", choices=("csv", "json"), required=True)
    p.add_argument("--output", "-o", metavar="FILE", help="file to write (default, or '-': standard output)")
    p.add_argument("--dek-id", type=dek_id_arg, metavar="ID", help="only the rows of this DEK")
    add_progress_option(p, "rows")
    p.set_defaults(run=cmd_export)


def cmd_export(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with ea.Registry(args.directory) as registry:
        total, batches = row_batches(registry, args.dek_id)
    to_file = args.output not in (None, STDIN)
    target = open_owner_only(args.output, append=False) if to_file else out
    progress = Progress(
        total,
        enabled=args.progress or (progress_wanted(args, err) and total >= PROGRESS_ROWS),
        stream=err,
        unit="rows",
    )
    done = 0
    try:
        if args.format == "csv":
            target.write(",".join(ROW_FIELDS) + "\n")
            row = "{},{},{},{},{}\n".format
        else:
            target.write("[\n" if total else "[]\n")
            row = JSON_ROW.format
        for batch in batches:
            if args.format == "csv":
                target.write("".join(row(*r) for r in batch))
            else:
                last = done + len(batch) == total
                target.write(",\n".join(row(*r) for r in batch) + ("\n]\n" if last else ",\n"))
            done += len(batch)
            progress.update(done)
    finally:
        progress.close()
        if to_file:
            target.close()
    return EXIT_OK
