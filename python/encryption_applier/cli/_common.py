"""What every command of the command line shares: the exit codes, the
one-line errors, the argument types, the KEK options, reading a file of
entries and the progress bar on stderr."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import typing
from typing import TextIO

from .. import _native as ea
from ..exceptions import EncryptionError
from ..kek import Kek

EXIT_OK = 0
EXIT_HALT = 1
EXIT_USAGE = 2
# verify found damage, doctor a refusal, probe-node-id a refused join,
# status a foreign row.
EXIT_DAMAGED = 1
# diff: the registries differ (diff(1)'s convention).
EXIT_DIFFERENT = 1
EXIT_INTERRUPTED = 130
# An output or error stream closed early under a command whose exit
# status is its answer (128 + SIGPIPE, as a shell reports it).
EXIT_BROKEN_PIPE = 141
#: Commands that only list: a reader that leaves early has what it wanted.
LISTINGS = frozenset({"inspect", "export"})

#: The name for standard input in FILE arguments and in messages.
STDIN = "-"


class UsageError(Exception):
    """Bad input the user can fix: printed as one line, exit 2."""


class ArgumentsError(Exception):
    """argparse's complaint, already a whole line: printed as it is, exit 2."""


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (exit 2) instead of a usage
    block, raised so that ``main`` prints them to its own ``err``."""

    def error(self, message: str) -> typing.NoReturn:
        raise ArgumentsError(f"{self.prog}: error: {message} (see {self.prog} --help)")


def uint_arg(bits: int, name: str = "an integer", least: int = 0) -> typing.Callable[[str], int]:
    """An argparse type: a decimal or 0x-hex integer in [least, 2**bits)."""

    def parse(text: str) -> int:
        try:
            value = int(text[2:], 16) if text[:2].lower() == "0x" else int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a decimal or 0x-hex integer") from None
        if not least <= value < 1 << bits:
            raise argparse.ArgumentTypeError(f"{text} is out of range for {name} ({least} to {(1 << bits) - 1})")
        return value

    parse.__name__ = name  # argparse names the type in its messages
    return parse


dek_id_arg = uint_arg(32, "a DEK id")
uint64_arg = uint_arg(64, "a 64-bit unsigned integer")
index_arg = uint_arg(64, "a Raft index")
count_arg = uint_arg(31, "a count")
positive_arg = uint_arg(31, "a positive count", least=1)


def add_kek_options(p: Parser, what: str) -> None:
    """``--kek FILE`` or ``--kek-factory MODULE:CALLABLE``, not both."""
    kek = p.add_mutually_exclusive_group()
    kek.add_argument("--kek", metavar="FILE", help=f"KEK file{what}")
    kek.add_argument(
        "--kek-factory",
        metavar="MODULE:CALLABLE",
        help="a KEK of your own instead of a file (a KMS): imports MODULE (from sys.path, PYTHONPATH included), "
        "calls CALLABLE() and uses the KEK it returns (see encryption_applier.Kek)",
    )


def load_kek(args: argparse.Namespace) -> ea.FileKek | Kek | None:
    """The KEK ``--kek`` or ``--kek-factory`` names, if any. A factory that
    cannot be imported or called is a usage error; what it returns is
    checked where the KEK is used (a ``TypeError`` there is exit 2 too)."""
    if args.kek:
        return ea.FileKek(args.kek)
    if not args.kek_factory:
        return None
    spec = args.kek_factory
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise UsageError(f"--kek-factory {spec}: expected MODULE:CALLABLE, e.g. mykms:make_kek")
    try:
        factory: object = importlib.import_module(module_name)
    except ImportError as error:
        raise UsageError(f"--kek-factory {spec}: cannot import {module_name}: {error}") from None
    for part in name.split("."):
        if not hasattr(factory, part):
            raise UsageError(f"--kek-factory {spec}: {module_name} has no {name}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise UsageError(f"--kek-factory {spec}: {name} is not callable")
    try:
        kek: Kek = factory()
    except EncryptionError:
        raise  # e.g. a KEKFileError: reported as the package's own errors are
    except Exception as error:
        raise UsageError(f"--kek-factory {spec}: {name}() raised {type(error).__name__}: {error}") from None
    return kek


def kek_label(args: argparse.Namespace, kek: ea.FileKek | Kek | None) -> str:
    """How the KEK is named in output: the file as given, or the KEK's identity."""
    if args.kek:
        return str(args.kek)
    return "none" if kek is None else str(kek.identity)


def add_progress_option(p: Parser, what: str) -> None:
    """``--progress``: draw the bar on stderr even when it is not a terminal."""
    p.add_argument(
        "--progress",
        action="store_true",
        help=f"show progress ({what} done) on stderr even when it is not a terminal (by default only a "
        "terminal gets it, never a pipe or a file)",
    )


def progress_wanted(args: typing.Any, err: TextIO) -> bool:
    """Whether to draw progress: ``--progress``, or stderr is a terminal."""
    return bool(getattr(args, "progress", False)) or err.isatty()


class Progress:
    """A one-line progress bar on stderr: for a terminal, or when asked
    (``--progress``). ``unit`` names what is counted."""

    def __init__(self, total: int, enabled: bool, stream: TextIO, unit: str = "entries") -> None:
        self.total, self.enabled = total, enabled and total > 0
        self.stream = stream
        self.unit = unit
        self.last = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.1 and done != self.total):
            return
        self.last = now
        width = 30
        filled = width * done // self.total
        self.stream.write(f"\r[{'#' * filled}{' ' * (width - filled)}] {done}/{self.total} {self.unit}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.enabled = False
            self.stream.write("\r" + " " * (45 + 2 * len(str(self.total)) + len(self.unit)) + "\r")
            self.stream.flush()


#: Rows formatted and written at a time by inspect and export: the
#: output starts at once (``inspect | head`` returns promptly) and the
#: progress bar moves once per batch.
ROW_BATCH = 4096
#: Rows from which inspect and export draw progress on a terminal.
PROGRESS_ROWS = 100_000


def row_batches(
    registry: ea.Registry, dek_id: int | None
) -> tuple[int, typing.Iterator[list[tuple[int, str, str, int, int]]]]:
    """The rows (of one DEK, or all) in key order as ``(dek_id, node_id16,
    full_node_id, first_seen_local_epoch, last_seen_local_epoch)`` with the
    node ids as fixed-width hex, in batches of ``ROW_BATCH``, and how many
    there are. Read as columns (one pass over the registry, no row
    objects), formatted batch by batch as they are written."""
    columns = registry.columns(dek_id)
    names = ("dek_id", "node_id16", "full_node_id", "first_seen_local_epoch", "last_seen_local_epoch")
    deks, n16s, fulls, firsts, lasts = (columns[name] for name in names)
    total = len(deks)

    def batches() -> typing.Iterator[list[tuple[int, str, str, int, int]]]:
        for start in range(0, total, ROW_BATCH):
            end = start + ROW_BATCH
            # The node ids as every view shows them: the native formatter
            # `to_pandas` uses (`_rows.hex_id`'s form, a batch at a time).
            yield list(
                zip(
                    deks[start:end],
                    ea._hex_ids(n16s[start:end], 4),
                    ea._hex_ids(fulls[start:end], 16),
                    firsts[start:end],
                    lasts[start:end],
                    strict=True,
                )
            )

    return total, batches()


def node_from_args(args: argparse.Namespace) -> int | None:
    """The node ``--full-node-id`` or ``--raft-id`` names (None: neither
    given). An empty ``--raft-id`` (an unset shell variable) and id 0 are
    refused, not read as "not given": a guard would silently be skipped."""
    if args.raft_id is not None and not args.raft_id:
        raise UsageError("--raft-id is empty")
    node: int | None = args.full_node_id if args.raft_id is None else ea.derive_node_id(args.raft_id)
    if node == 0:
        raise UsageError("--full-node-id 0 is no node's id")
    return node


def open_owner_only(path: str, *, append: bool) -> TextIO:
    """``path`` opened for writing text, created 0600 whatever the umask
    (files the package creates are owner-only); appended to or truncated."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC) | os.O_CLOEXEC
    return os.fdopen(os.open(path, flags, 0o600), "a" if append else "w", newline="")


def plural(count: int, one: str, many: str | None = None) -> str:
    """``1 entry``, ``2 entries``: the count with its noun."""
    return f"{count} {one if count == 1 else (many or one + 's')}"


def read_entries(name: str, *, outcome: str = "nothing was applied") -> list[tuple[int, bytes]]:
    """(line number, entry bytes) for each non-blank, non-comment line of
    the file ``name`` (``-``: standard input). The whole input is read and
    checked before anything is done with it; ``outcome`` ends each error
    (what was not done)."""
    label = "<stdin>" if name == STDIN else name
    try:
        if name == STDIN:
            if sys.stdin is None:
                raise UsageError(f"standard input is closed; {outcome}")
            # Bytes, decoded strictly below, whatever the locale says.
            stream = getattr(sys.stdin, "buffer", None)
            raw = stream.read() if stream is not None else sys.stdin.read().encode()
        else:
            with open(name, "rb") as f:
                raw = f.read()
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UsageError(f"{label}: not a text file of hex entries ({err.reason}); {outcome}") from None
    except OSError as err:
        raise UsageError(f"{label}: cannot read: {err.strerror or err}; {outcome}") from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.split("#", 1)[0].strip()
        if not stripped:
            continue
        try:
            entries.append((number, bytes.fromhex(stripped)))
        except ValueError:
            raise UsageError(
                f"{label}:{number}: not a hex-encoded entry ({hex_problem(stripped)}); {outcome}"
            ) from None
    return entries


def hex_problem(text: str) -> str:
    """What makes ``text`` not hex, in the user's terms."""
    digits = "".join(text.split())
    for column, char in enumerate(text, start=1):
        if not (char.isspace() or char in "0123456789abcdefABCDEF"):
            if char in "xX" and text[column - 2 : column - 1] == "0":
                return f"a '0x' prefix at column {column - 1}: write the bytes only"
            return f"{char!r} at column {column} is not a hex digit"
    if len(digits) % 2:
        return f"an odd number of hex digits ({len(digits)}): each byte is two"
    return "spaces inside a byte"
