"""``doctor``: elastickv's startup guards and start-up registration decision
against a data directory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from .. import _native as ea
from ..exceptions import SidecarBehindRaftLogError, SnapshotError
from ._common import (
    EXIT_DAMAGED,
    EXIT_OK,
    Parser,
    UsageError,
    add_kek_options,
    index_arg,
    kek_label,
    load_kek,
    node_from_args,
    read_entries,
    uint64_arg,
    uint_arg,
)


def add_doctor(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "doctor",
        help="run elastickv's startup guards against a data directory",
        description="Run elastickv's startup guards (in Go's order) and print every refusal with its Go error "
        "name and what it means; with the node's id, then print Go's start-up writer registration decision "
        "(the 0x03 entries it would propose). Exit 0 when the node may start, 1 when a guard or the "
        "registration decision refuses (or Go refuses the --snapshot).",
    )
    p.add_argument("directory", help="registry directory")
    add_kek_options(p, "")
    p.add_argument("--sidecar", help="sidecar path (default: keys.json in the directory)")
    p.add_argument("--encryption-disabled", action="store_true", help="the node runs with encryption off")
    node = p.add_mutually_exclusive_group()
    node.add_argument("--full-node-id", type=uint64_arg, metavar="N", help="this node's 64-bit id")
    node.add_argument("--raft-id", metavar="S", help="this node's Raft id (the full id is derived)")
    p.add_argument("--member", type=uint64_arg, action="append", default=[], metavar="N", help="a member's full id")
    p.add_argument("--phase", choices=("pre-bump", "post-replay"), default="pre-bump")
    p.add_argument("--engine-applied-index", type=index_arg, metavar="N", help="the engine's applied index")
    p.add_argument(
        "--snapshot-cutover-index", type=index_arg, metavar="N", help="cutover index of the restored snapshot"
    )
    p.add_argument(
        "--log",
        metavar="FILE",
        help="the Raft log the node would replay, in apply's format (one hex entry per line, every entry, "
        "consecutive indexes; write 00 for an entry without an FSM payload); without it, a sidecar behind "
        "the engine is refused, as Go refuses without a scanner",
    )
    p.add_argument("--log-first-index", type=index_arg, metavar="N", help="Raft index of the first entry of --log")
    p.add_argument(
        "--snapshot",
        metavar="PATH",
        help="read the restored snapshot's cutover from PATH: a .snap or .fsm file, or the Raft group's data "
        "directory (wal/, snap/, fsm-snap/), whose newest snapshot is chosen as Go chooses it",
    )
    _add_registration_options(p)
    p.set_defaults(run=cmd_doctor)


def _add_registration_options(p: Parser) -> None:
    p.add_argument(
        "--local-epoch",
        type=uint_arg(16, "a local epoch"),
        metavar="N",
        help="the storage epoch this start pinned, for the registration decision (default: from the sidecar)",
    )
    p.add_argument(
        "--raft-local-epoch",
        type=uint_arg(16, "a local epoch"),
        metavar="N",
        help="the Raft epoch this start pinned (default: from the sidecar)",
    )


def _doctor_registration(
    args: argparse.Namespace, sidecar: Path, full: int | None, refused: bool
) -> tuple[list[str], bool]:
    """doctor's lines for elastickv's start-up writer registration decision
    (``registration_decision``), made before anything is printed. Without
    the node's full id there is nothing to decide; after a guard's refusal
    Go never gets there. The epochs are the ones this start pins: given,
    or read from the sidecar (``pinned_epochs``; ``--phase post-replay``
    means the sidecar is already bumped). Returns the lines, and whether
    Go refuses to start."""
    if full is None:
        return [], False
    if refused:
        return ["registration: not reached (a startup guard refuses first)"], False
    pinned = (0, 0)
    if args.local_epoch is None or args.raft_local_epoch is None:
        pinned = ea.pinned_epochs(sidecar, bumped=args.phase == "post-replay")
    epochs = (
        pinned[0] if args.local_epoch is None else args.local_epoch,
        pinned[1] if args.raft_local_epoch is None else args.raft_local_epoch,
    )
    given = [n for n, v in (("storage", args.local_epoch), ("raft", args.raft_local_epoch)) if v is not None]
    source = "given" if len(given) == 2 else f"pinned from the sidecar, {args.phase}"
    if len(given) == 1:
        source += f"; {given[0]} given"
    registry = ea.Registry(args.directory) if (Path(args.directory) / "data.mdb").exists() else None
    try:
        decision = ea.registration_decision(
            sidecar_path=sidecar,
            registry=registry,
            full_node_id=full,
            local_epoch=epochs[0],
            raft_local_epoch=epochs[1],
            encryption_enabled=not args.encryption_disabled,
        )
    finally:
        if registry is not None:
            registry.close()
    lines = [f"registration: epochs storage={epochs[0]} raft={epochs[1]} ({source})"]
    checks = (decision.storage, decision.raft)
    if decision.action == "refuse" and decision.refusal is not None:
        lines.append(f"registration: REFUSED {decision.refusal.reason}")
    elif decision.action == "register":
        for c in checks:
            if c.entry is not None:
                lines.append(
                    f"registration: register dek_id={c.dek_id} full_node_id=0x{c.full_node_id:016x} "
                    f"epoch={c.local_epoch} ({c.purpose} key, registry last_seen_local_epoch={c.last_seen}, "
                    f"entry {c.entry.to_entry().hex()})"
                )
    elif decision.action == "already-registered":
        c = decision.storage
        lines.append(
            f"registration: already registered dek_id={c.dek_id} full_node_id=0x{c.full_node_id:016x} "
            f"epoch={c.local_epoch} (storage key, registry last_seen_local_epoch={c.last_seen})"
        )
    else:
        lines.append(f"registration: nothing to register ({decision.reason})")
    for c in checks:
        if c.foreign_owner is not None and c.verdict in ("register", "already-registered"):
            effect = (
                "applying the registration halts every replica (NodeIDCollisionError)"
                if c.verdict == "register"
                else "Go takes it for this node's registration"
            )
            lines.append(
                f"    note: the {c.purpose} row under node_id16=0x{c.node_id16:04x} belongs to "
                f"full_node_id=0x{c.foreign_owner:016x}: {effect}"
            )
    return lines, decision.action == "refuse"


def _doctor_log(args: argparse.Namespace) -> list[bytes] | None:
    """--log's entries, checked against --log-first-index."""
    if (args.log is None) != (args.log_first_index is None):
        given, missing = ("--log", "--log-first-index") if args.log is not None else ("--log-first-index", "--log")
        raise UsageError(f"{given} needs {missing}: the log and the Raft index of its first entry go together")
    if args.log is None:
        return None
    # (0 is refused by diagnose_startup itself: the rule lives in the core.)
    return [entry for _, entry in read_entries(args.log, outcome="nothing was checked")]


#: Where a guard was skipped for an input the command line did not get:
#: the flags that give it.
_FLAGS_FOR = {
    0: "--snapshot or --snapshot-cutover-index",
    6: "--member",
    7: "--full-node-id or --raft-id",
    8: "--engine-applied-index",
}


def _refusal_line(refusal: Exception) -> str:
    """``REFUSED <name>: <message>``, the guard named once: its Go
    sentinel (or, for the package's own refusal, its class), and the
    message without the name it starts with."""
    sentinel: str | None = getattr(refusal, "sentinel", None)
    name = sentinel or f"{type(refusal).__name__} (package-only, no Go sentinel)"
    text = str(refusal)
    head, sep, rest = text.partition(": ")
    if sep and head.isidentifier():
        text = rest
    return f"REFUSED {name}: {text}"


def _skipped_line(skipped: ea.SkippedGuard) -> str:
    """``skipped guard N <sentinel>: <why>``, with the flags that give a
    missing input."""
    flags = _FLAGS_FOR.get(skipped.guard) if "given" in skipped.reason else None
    hint = f" (give {flags})" if flags else ""
    return f"skipped guard {skipped.guard} {skipped.sentinel}: {skipped.reason}{hint}"


def cmd_doctor(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if not Path(args.directory).exists():
        raise UsageError(f"{args.directory}: no such directory")
    if not Path(args.directory).is_dir():
        raise UsageError(f"{args.directory}: not a directory")
    log = _doctor_log(args)
    sidecar = Path(args.sidecar) if args.sidecar else Path(args.directory) / "keys.json"
    full = node_from_args(args)
    kek = load_kek(args)
    registry = ea.Registry(args.directory) if (Path(args.directory) / "data.mdb").exists() else None
    skipped: list[ea.SkippedGuard] = []
    try:
        diagnosis = ea.diagnose_startup(
            encryption_enabled=not args.encryption_disabled,
            kek=kek,
            sidecar_path=sidecar,
            registry=registry,
            full_node_id=full,
            members=args.member,
            engine_applied_index=args.engine_applied_index,
            snapshot_cutover_index=args.snapshot_cutover_index,
            snapshot_path=args.snapshot,
            phase=args.phase,
            log=log,
            log_first_index=args.log_first_index,
        )
        refusals: list[Exception] = list(diagnosis)
        skipped = list(diagnosis.skipped)
    except SnapshotError as error:
        if not error.refused:
            raise
        refusals = [error]  # Go does not start on a snapshot it refuses
    finally:
        if registry is not None:
            registry.close()
    registration, registration_refused = _doctor_registration(args, sidecar, full, bool(refusals))
    node = f"0x{full:016x}" if full is not None else "not given"
    print(
        f"checked {args.directory}: encryption {'off' if args.encryption_disabled else 'on'}, "
        f"KEK {kek_label(args, kek)}, sidecar {sidecar}{'' if sidecar.exists() else ' (absent)'}, "
        f"node {node}, {len(args.member)} members, phase {args.phase}, "
        + (
            f"log {args.log} (entries {args.log_first_index}..{args.log_first_index + len(log) - 1})"
            if log
            else (f"log {args.log} (empty)" if log is not None else "no log")
        )
        + (f", snapshot {args.snapshot}" if args.snapshot else ""),
        file=out,
    )
    for refusal in refusals:
        if isinstance(refusal, SnapshotError):
            print(f"REFUSED snapshot ({type(refusal).__name__} {refusal.code}): {refusal}", file=out)
            print("    Go does not start on a snapshot it cannot read (restore a good snapshot)", file=out)
            continue
        print(_refusal_line(refusal), file=out)
        print(f"    {getattr(refusal, 'meaning', '')}", file=out)
        if isinstance(refusal, SidecarBehindRaftLogError) and refusal.entry_index is None:
            first, last = refusal.sidecar_applied_index + 1, refusal.engine_applied_index
            print(
                f"    hint: give --log FILE --log-first-index {first} (the Raft log's entries {first}..{last}) "
                "to have them inspected",
                file=out,
            )
    if not refusals:
        print("ok: no startup guard refuses", file=out)
    for guard in skipped:
        print(_skipped_line(guard), file=out)
    for line in registration:
        print(line, file=out)
    return EXIT_OK if not refusals and not registration_refused else EXIT_DAMAGED
