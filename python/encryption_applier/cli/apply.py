"""``apply``: a file of hex-encoded entries applied in order, in chunks of
one durable commit each."""

from __future__ import annotations

import argparse
import contextlib
import signal
import typing
from collections import Counter
from pathlib import Path
from typing import TextIO

from .. import _native as ea
from ..exceptions import (
    AlreadyBootstrappedError,
    EncryptionApplyError,
    EncryptionError,
    LocalEpochRollbackError,
    StorageError,
)
from ._common import (
    EXIT_HALT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    STDIN,
    Parser,
    Progress,
    UsageError,
    add_kek_options,
    add_progress_option,
    count_arg,
    index_arg,
    load_kek,
    node_from_args,
    plural,
    read_entries,
    uint64_arg,
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
    node = p.add_mutually_exclusive_group()
    node.add_argument(
        "--full-node-id",
        type=uint64_arg,
        metavar="N",
        help="the node this registry is (needs --kek): keys.json then records the node's own local epochs as "
        "its elastickv node's does (each key's local_epoch at least the node's last_seen under it), so "
        "that `doctor --full-node-id N` does not refuse the epochs (give doctor --log for the entries "
        "after the last key change)",
    )
    node.add_argument("--raft-id", metavar="S", help="the same, by the node's Raft id (the full id is derived)")
    add_progress_option(p, "entries")
    p.add_argument("--progress-threshold", type=count_arg, default=1000, help=argparse.SUPPRESS)
    p.set_defaults(run=cmd_apply)


class _Interrupts:
    """Ctrl-C during apply: the first stops at the end of the chunk being
    committed (so the count of committed entries is exact), a second one
    at once. Outside the main thread, Python's own handling stays."""

    def __init__(self) -> None:
        self.requested = False
        self.previous: typing.Any = None

    def __enter__(self) -> _Interrupts:
        def handler(signum: int, frame: object) -> None:
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True

        with contextlib.suppress(ValueError):  # not the main thread
            self.previous = signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


class _Before:
    """The registry's state before this run, for the hints of a halt. A
    registry or sidecar that cannot be read is the Applier's to report
    (or, with --recreate-uncommitted, to create afresh): here it counts as
    holding nothing."""

    def __init__(self, directory: Path, sidecar: Path) -> None:
        self.applied_index: int | None = None
        self.rows = 0
        self.bootstrapped = False
        with contextlib.suppress(EncryptionError):
            if (directory / "data.mdb").exists():
                with ea.Registry(directory) as registry:
                    self.applied_index = registry.applied_index
                    self.rows = len(registry)
            found = ea.read_sidecar(sidecar) if sidecar.is_file() else None
            self.bootstrapped = found is not None and bool(found.active_storage)


def _replay_hint(halt: Exception, before: _Before, first_index: int | None) -> str | None:
    """Why a halt that a replay causes (an epoch seen again lower, a second
    bootstrap) is most likely one, and what to do: only when this run gave
    no indexes and the registry held something before it."""
    if first_index or not isinstance(halt, LocalEpochRollbackError | AlreadyBootstrappedError):
        return None
    if not (before.rows or before.bootstrapped):
        return None  # a new registry: the halt is in the file itself
    if not before.applied_index:
        return (
            "hint: this registry has no applied index (it was built without --first-index), so an entry it "
            "already holds is applied again when a log is replayed, and this one halts; if the file replays "
            "applied entries, apply only the ones after them, or build the registry with --first-index N "
            "(the Raft index of the first entry) so that a replay skips what is applied"
        )
    return (
        f"hint: this registry's applied index is {before.applied_index}, but the file was applied without "
        "--first-index, so entries it already holds were applied again; if the file replays them, run the "
        "same command with --first-index N (the Raft index of the file's first entry): applied entries are "
        "then skipped"
    )


def cmd_apply(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    directory = Path(args.directory)
    _check_apply_target(directory, args.sidecar)
    node = node_from_args(args)
    entries = read_entries(args.file)
    label = "<stdin>" if args.file == STDIN else args.file
    if args.first_index is not None and entries and args.first_index + len(entries) - 1 >= 1 << 64:
        raise UsageError(
            f"--first-index {args.first_index} with {len(entries)} entries runs past the largest Raft index "
            f"(2**64 - 1); nothing was applied"
        )
    kek = load_kek(args)
    if kek is None and args.sidecar is not None:
        raise UsageError("--sidecar needs --kek or --kek-factory: without a KEK the applier keeps no keys")
    if node is not None and kek is None:
        given = "--full-node-id" if args.raft_id is None else "--raft-id"
        raise UsageError(f"{given} needs --kek or --kek-factory: the node's epochs are recorded in keys.json")
    before = _Before(directory, Path(args.sidecar) if args.sidecar else directory / "keys.json")
    outcomes: Counter[str] = Counter()
    progress = Progress(
        len(entries), enabled=args.progress or (err.isatty() and len(entries) >= args.progress_threshold), stream=err
    )
    with (
        ea.Applier(
            args.directory, kek=kek, sidecar=args.sidecar, recreate_uncommitted=args.recreate_uncommitted
        ) as applier,
        _Interrupts() as interrupts,
    ):
        start = 0
        try:
            for start in range(0, len(entries), CHUNK):
                if interrupts.requested:
                    progress.close()
                    if node is not None:
                        applier.record_own_epochs(node)
                    _report_interrupt(args, err, entries, start, applier.applied_index)
                    return EXIT_INTERRUPTED
                chunk = entries[start : start + CHUNK]
                # Raft index 0 means "no index" (as apply_many's first_index=0).
                first = None if not args.first_index else args.first_index + start
                try:
                    outcomes.update(applier.apply_many([entry for _, entry in chunk], first_index=first))
                except EncryptionApplyError as halt:
                    progress.close()
                    if node is not None:
                        applier.record_own_epochs(node)
                    _report_halt(halt, args, err, label, chunk, start, before)
                    return EXIT_HALT
                progress.update(start + len(chunk))
        except KeyboardInterrupt:
            # A second Ctrl-C, at once: the chunk from `start` may or may
            # not be committed. With indexes the registry says how far.
            progress.close()
            if node is not None:
                applier.record_own_epochs(node)
            applied = applier.applied_index
            done = start
            if args.first_index and applied is not None and applied >= args.first_index:
                done = min(len(entries), applied - args.first_index + 1)
            _report_interrupt(args, err, entries, done, applied)
            if not args.first_index and done < len(entries):
                last = entries[min(len(entries), start + CHUNK) - 1][0]
                print(f"(stopped at once: lines {entries[start][0]}-{last} may be committed too)", file=err)
            return EXIT_INTERRUPTED
        finally:
            progress.close()
        raised = applier.record_own_epochs(node) if node is not None else {}
    summary = ", ".join(f"{name} {count}" for name, count in sorted(outcomes.items()))
    print(
        f"applied {plural(len(entries), 'entry', 'entries')} to {args.directory}" + (f": {summary}" if summary else ""),
        file=out,
    )
    for dek_id, (was, now) in raised.items():
        print(f"keys.json: local_epoch of key {dek_id} {was} -> {now} (node 0x{node:016x}'s own row)", file=out)
    return EXIT_OK


def _report_interrupt(
    args: argparse.Namespace, err: TextIO, entries: list[tuple[int, bytes]], done: int, applied: int | None
) -> None:
    """What Ctrl-C left: how many entries are committed, the applied index,
    and how to go on."""
    last = f" (through line {entries[done - 1][0]})" if done else ""
    committed = f"interrupted: {done} of {plural(len(entries), 'entry', 'entries')} committed{last}"
    if args.first_index:
        print(
            f"{committed}; applied index {applied}; run the same command again to resume: the committed "
            "entries are skipped",
            file=err,
        )
    else:
        after = f"the entries after line {entries[done - 1][0]}" if done else "the whole file"
        print(
            f"{committed}; no applied index is recorded without --first-index, so rerunning the same command "
            f"would apply them again: to resume, apply {after}",
            file=err,
        )


def _report_halt(
    halt: EncryptionApplyError,
    args: argparse.Namespace,
    err: TextIO,
    label: str,
    chunk: list[tuple[int, bytes]],
    start: int,
    before: _Before,
) -> None:
    """The halt's line, its exception, what stays applied, and how to go on."""
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
        return
    number = chunk[halt.position][0]
    print(f"{label}:{number}: HALT {type(halt).__name__}: {halt}", file=err)
    done = start + halt.position
    before_line = f"{done} {'entry' if done == 1 else 'entries'} before line {number} " + (
        "was" if done == 1 else "were"
    )
    # A storage fault is replayed, not a stop: say how
    # (exactly-once needs the indexes).
    again = "run the same command again" + (
        "" if args.first_index else " with --first-index, so applied entries are skipped,"
    )
    if isinstance(halt, StorageError) and halt.applied:
        what = f"line {number} took effect in keys.json but is not recorded as applied; {again} to complete it."
    elif isinstance(halt, StorageError):
        what = f"nothing of line {number} was written; {again} to replay it."
    else:
        what = f"nothing of line {number} was written."
    print(f"{before_line} applied; {what}", file=err)
    hint = _replay_hint(halt, before, args.first_index)
    if hint:
        print(hint, file=err)
