"""``digest``: SHA-256 over every row in key order."""

from __future__ import annotations

import argparse
from typing import TextIO

from .. import _native as ea
from ._common import (
    EXIT_OK,
    Parser,
)


def add_digest(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "digest",
        help="print the registry digest",
        description="Print SHA-256 (hex) over key ‖ value of every row in key order; "
        "equal digests mean identical registries.",
    )
    p.add_argument("directory", help="registry directory")
    p.set_defaults(run=cmd_digest)


def cmd_digest(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with ea.Registry(args.directory) as registry:
        print(registry.digest(), file=out)
    return EXIT_OK
