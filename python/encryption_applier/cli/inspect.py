"""``inspect``: the registry rows as a table, streamed (the first rows
are out before the last are read into lines), with a footer that counts
the rows and DEKs."""

from __future__ import annotations

import argparse
from typing import TextIO

from .. import _native as ea
from .._rows import ROW_FIELDS
from ._common import (
    EXIT_OK,
    PROGRESS_ROWS,
    Parser,
    Progress,
    add_progress_option,
    dek_id_arg,
    progress_wanted,
    row_batches,
)

#: DEK ids the footer names before it elides the rest ("1, 2, 3, … 1000").
FOOTER_DEKS = 5


def add_inspect(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "inspect",
        help="print the registry rows as a table",
        description="Print the rows as a table, in key order, with SPEC §5's column names, then a line "
        "with the number of rows and of DEKs (the first DEK ids and the last).",
    )
    p.add_argument("directory", help="registry directory")
    p.add_argument("--dek-id", type=dek_id_arg, metavar="ID", help="only the rows of this DEK")
    add_progress_option(p, "rows")
    p.set_defaults(run=cmd_inspect)


def dek_list(ids: list[int]) -> str:
    """``2 DEKs: 1, 2``; past ``FOOTER_DEKS`` ids, the first three and the
    last: ``1,000 DEKs: 1, 2, 3, … 1000``."""
    shown = ", ".join(map(str, ids)) if len(ids) <= FOOTER_DEKS else f"{ids[0]}, {ids[1]}, {ids[2]}, … {ids[-1]}"
    count = f"{len(ids):,} DEK{'' if len(ids) == 1 else 's'}"
    return f"{count}: {shown}" if ids else "no DEKs"


def cmd_inspect(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with ea.Registry(args.directory) as registry:
        total, batches = row_batches(registry, args.dek_id)
        dek_ids = registry.dek_ids() if args.dek_id is not None else None
    # Widths fit the largest value any row can hold, so that the table
    # can be written before the last row is seen.
    widths = [max(len(h), w) for h, w in zip(ROW_FIELDS, (10, 6, 18, 5, 5), strict=True)]
    line = "  ".join(f"{{:>{w}}}" for w in widths).format
    progress = Progress(
        total,
        enabled=args.progress or (progress_wanted(args, err) and total >= PROGRESS_ROWS),
        stream=err,
        unit="rows",
    )
    print(line(*ROW_FIELDS), file=out)
    seen: list[int] = []
    done = 0
    try:
        for batch in batches:
            out.write("".join(line(*row) + "\n" for row in batch))
            if dek_ids is None:  # rows come in key order: a DEK's rows are together
                for dek in dict.fromkeys(row[0] for row in batch):
                    if not seen or seen[-1] != dek:
                        seen.append(dek)
            done += len(batch)
            progress.update(done)
    finally:
        progress.close()
    scope = f" under dek_id {args.dek_id}" if args.dek_id is not None else ""
    deks = dek_list(seen) if dek_ids is None else f"the registry has {dek_list(dek_ids)}"
    print(f"{total:,} row{'' if total == 1 else 's'}{scope}; {deks}", file=out)
    return EXIT_OK
