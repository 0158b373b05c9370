"""``verify``: data.mdb checked page by page, without opening the registry."""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from .. import _native as ea
from ._common import (
    EXIT_DAMAGED,
    EXIT_OK,
    Parser,
    positive_arg,
)


def add_verify(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "verify",
        help="check data.mdb page by page",
        description="Check every page of data.mdb (bounds, types, key order, counts, free lists) and, "
        "unless --pages-only, decode every row, without opening the registry for use: it works on a "
        "registry too damaged to open. Exit 0 when sound, 1 when damage was found, 2 when it cannot look.",
    )
    p.add_argument("directory", help="registry directory")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--pages-only", action="store_true", help="check the pages, not the rows")
    p.add_argument(
        "--max-problems", type=positive_arg, default=100, metavar="N", help="stop after N problems (default 100)"
    )
    p.set_defaults(run=cmd_verify)


def cmd_verify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    report = ea.verify(args.directory, rows=not args.pages_only, max_problems=args.max_problems)
    if args.json:
        doc = {
            "path": str(report.path),
            "ok": report.ok,
            **{
                name: getattr(report, name)
                for name in (
                    "txnid",
                    "page_size",
                    "file_pages",
                    "last_page",
                    "depth",
                    "entries",
                    "branch_pages",
                    "leaf_pages",
                    "overflow_pages",
                    "free_pages",
                )
            },
            **{
                name: [{"page": d.page, "problem": d.problem, "detail": d.detail} for d in getattr(report, name)]
                for name in ("problems", "warnings")
            },
        }
        print(json.dumps(doc, indent=2), file=out)
    else:
        print(
            f"{report.path}: txnid {report.txnid}, {report.entries} entries, depth {report.depth}, "
            f"{report.branch_pages} branch + {report.leaf_pages} leaf + {report.overflow_pages} overflow pages, "
            f"{report.free_pages} free, {report.file_pages} pages of {report.page_size} bytes in the file",
            file=out,
        )
        found = [("DAMAGE", "", d) for d in report.problems]
        found += [("WARNING", " (harmless: LMDB does not use it)", d) for d in report.warnings]
        for label, note, d in found:
            where = f"page {d.page}" if d.page is not None else "file"
            print(f"{label} {d.problem} at {where}{note}: {d.detail}", file=out)
        print("ok" if report.ok else f"{len(report.problems)} problem(s) found", file=out)
    return EXIT_OK if report.ok else EXIT_DAMAGED
