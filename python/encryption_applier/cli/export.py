"""``export``: the rows as CSV or JSON."""

from __future__ import annotations

import argparse
import csv
import json
from typing import TextIO

from .. import _native as ea
from .._rows import ROW_FIELDS, row_dict
from ._common import (
    EXIT_OK,
    STDIN,
    Parser,
    dek_id_arg,
)


def add_export(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser("export", help="write the rows as CSV or JSON", description="Write the rows as CSV or JSON.")
    p.add_argument("directory", help="registry directory")
    p.add_argument("--format", choices=("csv", "json"), required=True)
    p.add_argument("--output", "-o", metavar="FILE", help="file to write (default, or '-': standard output)")
    p.add_argument("--dek-id", type=dek_id_arg, metavar="ID", help="only the rows of this DEK")
    p.set_defaults(run=cmd_export)


def cmd_export(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with ea.Registry(args.directory) as registry:
        rows = [row_dict(r) for r in registry.rows(args.dek_id)]
    to_file = args.output not in (None, STDIN)
    target = open(args.output, "w", newline="") if to_file else out  # noqa: SIM115
    try:
        if args.format == "csv":
            writer = csv.DictWriter(target, fieldnames=ROW_FIELDS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        else:
            json.dump(rows, target, indent=2)
            target.write("\n")
    finally:
        if to_file:
            target.close()
    return EXIT_OK
