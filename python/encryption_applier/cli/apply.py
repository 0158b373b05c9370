"""``apply``: a file of hex-encoded entries applied in order, in chunks of
one durable commit each."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import TextIO

from .. import _native as ea
from ..exceptions import EncryptionApplyError, StorageError
from ._common import (
    EXIT_HALT,
    EXIT_OK,
    STDIN,
    Parser,
    Progress,
    UsageError,
    add_kek_options,
    count_arg,
    index_arg,
    load_kek,
    read_entries,
)

#: Entries per group commit: one durable commit per chunk, and the
#: progress bar moves once per chunk.
CHUNK = 1000


#: The files of a registry directory; any other directory with files in it
#: is not one, and apply will not write into it.
REGISTRY_FILES = {"data.mdb", "lock.mdb", "writer.lock", "keys.json"}


def _check_apply_target(directory: Path, sidecar: str | None) -> None:
    """apply creates a missing registry, but only where a typo cannot put
    one somewhere unexpected: the parent must exist, and an existing
    directory must be a registry or empty."""
    if directory.exists():
        if not directory.is_dir():
            raise UsageError(f"{directory}: not a directory")
        if not (directory / "data.mdb").exists():
            others = sorted(p.name for p in directory.iterdir() if p.name not in REGISTRY_FILES)
            if others:
                raise UsageError(
                    f"{directory}: not a registry (no data.mdb) and not empty ({', '.join(others[:3])}"
                    f"{', ...' if len(others) > 3 else ''}); give a registry or a new directory"
                )
    elif not directory.parent.is_dir():
        raise UsageError(
            f"{directory}: its parent {directory.parent} does not exist (apply creates the last part only)"
        )
    if sidecar is not None and not Path(sidecar).parent.is_dir():
        raise UsageError(f"--sidecar {sidecar}: its directory does not exist")


def add_apply(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "apply",
        help="apply a file of hex-encoded entries",
        description=(
            "Apply FILE, one hex-encoded entry (opcode ‖ payload) per line ('#' starts a comment), in order, "
            f"with one durable commit per {CHUNK} entries. On a halt, print the line, the exception and its "
            "message and exit 1: every earlier line stays applied."
        ),
    )
    p.add_argument("directory", help="registry directory (created if missing)")
    p.add_argument("file", help="file of hex-encoded entries ('-': standard input)")
    add_kek_options(p, ", needed for bootstrap and rotation entries")
    p.add_argument("--sidecar", help="sidecar path (default: keys.json in the registry directory)")
    p.add_argument(
        "--first-index",
        type=index_arg,
        metavar="N",
        help="Raft index of the first entry (the next ones follow): entries already applied are skipped, "
        "so replaying a whole log after a crash applies each entry exactly once (0 means no indexes)",
    )
    p.add_argument(
        "--recreate-uncommitted",
        action="store_true",
        help="create the registry afresh if its data.mdb holds no committed transaction (a creation cut "
        "short by a power loss); without it such a registry is an error. A registry that ever committed "
        "is never touched",
    )
    p.add_argument("--progress-threshold", type=count_arg, default=1000, help=argparse.SUPPRESS)
    p.set_defaults(run=cmd_apply)


def cmd_apply(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    # (--sidecar without --kek is refused by the Applier itself, before it
    # opens anything: that rule lives in the core.)
    _check_apply_target(Path(args.directory), args.sidecar)
    entries = read_entries(args.file)
    label = "<stdin>" if args.file == STDIN else args.file
    if args.first_index is not None and entries and args.first_index + len(entries) - 1 >= 1 << 64:
        raise UsageError(
            f"--first-index {args.first_index} with {len(entries)} entries runs past the largest Raft index "
            f"(2**64 - 1); nothing was applied"
        )
    kek = load_kek(args)
    outcomes: Counter[str] = Counter()
    progress = Progress(len(entries), enabled=err.isatty() and len(entries) >= args.progress_threshold, stream=err)
    with ea.Applier(
        args.directory, kek=kek, sidecar=args.sidecar, recreate_uncommitted=args.recreate_uncommitted
    ) as applier:
        try:
            for start in range(0, len(entries), CHUNK):
                chunk = entries[start : start + CHUNK]
                # Raft index 0 means "no index" (as apply_many's first_index=0).
                first = None if not args.first_index else args.first_index + start
                try:
                    outcomes.update(applier.apply_many([entry for _, entry in chunk], first_index=first))
                except EncryptionApplyError as halt:
                    progress.close()
                    if halt.position is None:
                        # Not tied to one entry (an internal error): say what
                        # is known, not a line that may be wrong.
                        lines = f"{chunk[0][0]}-{chunk[-1][0]}"
                        print(f"{label}:{lines}: HALT {type(halt).__name__}: {halt}", file=err)
                        print(
                            f"{start} entries before line {chunk[0][0]} were applied; lines {lines} may be "
                            "partly applied (the registry's applied index says how far).",
                            file=err,
                        )
                        return EXIT_HALT
                    outcomes.update(halt.outcomes or [])
                    number = chunk[halt.position][0]
                    print(f"{label}:{number}: HALT {type(halt).__name__}: {halt}", file=err)
                    done = start + halt.position
                    before = f"{done} {'entry' if done == 1 else 'entries'} before line {number} " + (
                        "was" if done == 1 else "were"
                    )
                    # A storage fault is replayed, not a stop: say how
                    # (exactly-once needs the indexes).
                    again = "run the same command again" + (
                        "" if args.first_index else " with --first-index, so applied entries are skipped,"
                    )
                    if isinstance(halt, StorageError) and halt.applied:
                        what = (
                            f"line {number} took effect in keys.json but is not recorded as applied; "
                            f"{again} to complete it."
                        )
                    elif isinstance(halt, StorageError):
                        what = f"nothing of line {number} was written; {again} to replay it."
                    else:
                        what = f"nothing of line {number} was written."
                    print(f"{before} applied; {what}", file=err)
                    return EXIT_HALT
                progress.update(start + len(chunk))
        finally:
            progress.close()
    summary = ", ".join(f"{name} {count}" for name, count in sorted(outcomes.items()))
    print(f"applied {len(entries)} entries to {args.directory}" + (f": {summary}" if summary else ""), file=out)
    return EXIT_OK
