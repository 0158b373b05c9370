"""``diff``: where two registries differ, as diff(1) shows it."""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from .. import _native as ea
from .._rows import diff_lines, diff_summary, row_dict
from ._common import (
    EXIT_DIFFERENT,
    EXIT_OK,
    Parser,
)


def add_diff(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "diff",
        help="show where two registries differ",
        description="Compare two registries row by row, in key order: '< row' as it is in A, '> row' as it is "
        "in B (a changed row shows both). Exit 0 when identical, 1 when they differ, 2 on an error.",
    )
    p.add_argument("a", metavar="A", help="registry directory")
    p.add_argument("b", metavar="B", help="registry directory")
    p.add_argument("--json", action="store_true", help="print the differences as JSON")
    p.set_defaults(run=cmd_diff)


def cmd_diff(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with ea.Registry(args.a) as a, ea.Registry(args.b) as b:
        diff = a.diff(b)
        digests = (a.digest(), b.digest())
    if args.json:
        doc = {
            "a": args.a,
            "b": args.b,
            "identical": not diff,
            "only_in_a": [row_dict(r) for r in diff.only_in_self],
            "only_in_b": [row_dict(r) for r in diff.only_in_other],
            "changed": [{"a": row_dict(x), "b": row_dict(y)} for x, y in diff.changed],
        }
        print(json.dumps(doc, indent=2), file=out)
        return EXIT_DIFFERENT if diff else EXIT_OK
    for line in diff_lines(diff):
        print(line, file=out)
    if not diff:
        print(f"identical: digest {digests[0]}", file=out)
        return EXIT_OK
    print(f"differ: {diff_summary(diff)}", file=out)
    return EXIT_DIFFERENT
