"""``inspect``: the registry rows as a table."""

from __future__ import annotations

import argparse
from typing import TextIO

from .. import _native as ea
from .._rows import row_dict
from ._common import (
    EXIT_OK,
    Parser,
    dek_id_arg,
)


def add_inspect(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "inspect", help="print the registry rows as a table", description="Print the rows as a table, in key order."
    )
    p.add_argument("directory", help="registry directory")
    p.add_argument("--dek-id", type=dek_id_arg, metavar="ID", help="only the rows of this DEK")
    p.set_defaults(run=cmd_inspect)


def cmd_inspect(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with ea.Registry(args.directory) as registry:
        rows = registry.rows(args.dek_id)
        header = ("dek_id", "node_id16", "full_node_id", "first_seen", "last_seen")
        table = [tuple(str(v) for v in row_dict(r).values()) for r in rows]
        widths = [max([len(h)] + [len(t[i]) for t in table]) for i, h in enumerate(header)]
        print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)), file=out)
        for line in table:
            print("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)), file=out)
        scope = f" under dek_id {args.dek_id}" if args.dek_id is not None else ""
        print(f"{len(rows)} row{'s' if len(rows) != 1 else ''}{scope}; DEKs {registry.dek_ids()}", file=out)
    return EXIT_OK
