"""The ``encryption-applier`` command line: inspect, digest, diff, verify,
export and apply against a registry directory, plus elastickv's node-id
probe, startup guards, status views, snapshot headers and sidecar resync,
and making entries (encode, decode) and KEKs (kek generate).

One module per command, each with its ``add_<cmd>`` (the arguments) beside
its ``cmd_<cmd>`` (the run); ``_common`` holds what they share (exit
codes, argument types, the KEK options, reading entries, progress).

Exit status: 0 success; 1 a halt (``apply``), or the checked condition
failing (``verify`` found damage, ``doctor`` a refusal, ``probe-node-id`` a
refused join, ``diff`` a difference, as diff(1), ``status`` another node's
row at this node's prefix, ``snapshot-header`` a snapshot Go refuses,
``resync-sidecar`` a halt, ``decode`` a malformed entry); 2 an error: bad arguments, unreadable or
malformed input, or a registry, sidecar, KEK or snapshot that cannot be
used as asked (missing, damaged, a corrupt row), always one
line on stderr and never a traceback; 130 interrupted (``apply`` says how
far it got and how to go on). Standard output closed early ends a
listing (``inspect | head``, ``export``) quietly, with 0: the reader has
what it wanted. Any other command whose output or error stream closes
early exits 141 (a shell's SIGPIPE status), never 0: its exit status is
its answer (``doctor`` refusing, ``apply`` halting), which a closed pipe
must not turn into success."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from .. import _native as ea
from ..exceptions import EncryptionError
from ._common import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    LISTINGS,
    ArgumentsError,
    Parser,
    UsageError,
)
from .apply import add_apply
from .decode import add_decode
from .diff import add_diff
from .digest import add_digest
from .doctor import add_doctor
from .encode import add_encode
from .export import add_export
from .inspect import add_inspect
from .kek import add_kek
from .probe_node_id import add_probe_node_id
from .resync_sidecar import add_resync_sidecar
from .snapshot_header import add_snapshot_header
from .status import add_status
from .verify import add_verify

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="encryption-applier",
        description="Inspect and apply to an encryption writer registry (an LMDB directory).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {ea.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Each command's arguments are defined by the add_<name> beside its
    # cmd_<name>; this order is the order --help lists them in.
    add_inspect(sub)
    add_digest(sub)
    add_diff(sub)
    add_verify(sub)
    add_probe_node_id(sub)
    add_doctor(sub)
    add_snapshot_header(sub)
    add_status(sub)
    add_export(sub)
    add_apply(sub)
    add_resync_sidecar(sub)
    add_encode(sub)
    add_decode(sub)
    add_kek(sub)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the command line; returns the exit status (see the module doc).
    Results go to ``out``, halts and errors to ``err`` (default: the
    process's standard output and error)."""
    out = out or sys.stdout
    err = err or sys.stderr
    args: argparse.Namespace | None = None
    try:
        args = build_parser().parse_args(argv)
        code: int = args.run(args, out, err)
        out.flush()
    except SystemExit as done:  # --help and --version
        return done.code if isinstance(done.code, int) else EXIT_OK
    except ArgumentsError as error:
        print(error, file=err)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away. Point both streams at /dev/null so that the
        # interpreter's final flush does not complain again, and end
        # quietly: with 0 for a listing (`inspect | head` has what it
        # wanted), else 141, since the status is the command's answer.
        for stream in (out, err):
            if stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, stream.fileno())
                    os.close(devnull)
        listing = args is not None and args.command in LISTINGS
        return EXIT_OK if listing else EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return EXIT_INTERRUPTED
    except EncryptionError as error:
        # A halt of `apply` is reported (exit 1) by cmd_apply itself; here
        # an exception is a registry, sidecar or KEK that cannot be used
        # as asked, e.g. a corrupt row met by inspect or diff.
        print(f"error: {type(error).__name__}: {error}", file=err)
        return EXIT_USAGE
    except (UsageError, TypeError, ValueError, OverflowError) as error:
        # TypeError/ValueError/OverflowError: an argument the native layer
        # refused (e.g. what --kek-factory returned is not a KEK).
        print(f"error: {error}", file=err)
        return EXIT_USAGE
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        print(f"error: {where}{error.strerror or error}", file=err)
        return EXIT_USAGE
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
