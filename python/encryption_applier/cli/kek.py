"""``kek generate``: a new KEK file, made by the package's native code
(random key, created 0600 whatever the umask, never over an existing
file, the file and its directory fsynced)."""

from __future__ import annotations

import argparse
from typing import TextIO

from .. import _native as ea
from ._common import EXIT_OK, Parser


def add_kek(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser("kek", help="make a KEK file", description="Make a KEK file (see `kek generate --help`).")
    actions = p.add_subparsers(dest="kek_command", required=True, metavar="ACTION")
    g = actions.add_parser(
        "generate",
        help="write a new random KEK to PATH",
        description="Write a new random 32-byte KEK (AES-256) to PATH: created with mode 0600 whatever the "
        "umask, refused when PATH exists (a file, a directory or a symlink: an existing KEK is never "
        "overwritten), and made durable (the file and its directory fsynced) before the command returns. "
        "Exit 0 when written, 2 otherwise (nothing is left behind).",
    )
    g.add_argument("path", metavar="PATH", help="where to write the KEK (must not exist)")
    g.set_defaults(run=cmd_kek_generate)


def cmd_kek_generate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    kek = ea.FileKek.generate(args.path)
    print(f"wrote a new KEK to {kek.path} (mode 0600)", file=out)
    return EXIT_OK
