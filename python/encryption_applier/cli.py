"""The ``encryption-applier`` command line: inspect, digest, diff, verify,
export and apply against a registry directory, plus elastickv's node-id
probe, startup guards, status views, snapshot headers and sidecar resync.

Exit status: 0 success; 1 a halt (``apply``), or the checked condition
failing (``verify`` found damage, ``doctor`` a refusal, ``probe-node-id`` a
refused join, ``diff`` a difference, as diff(1), ``status`` another node's
row at this node's prefix, ``snapshot-header`` a snapshot Go refuses,
``resync-sidecar`` a halt); 2 an error: bad arguments, unreadable or
malformed input, or a registry, sidecar, KEK or snapshot that cannot be
used as asked (missing, damaged, a corrupt row), always one
line on stderr and never a traceback; 130 interrupted; 141 standard output
closed early (``inspect | head``), which is what a process killed by
SIGPIPE reports."""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import json
import os
import sys
import time
import typing
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from . import _native as ea
from ._rows import ROW_FIELDS, diff_lines, diff_summary, row_dict
from .exceptions import (
    EncryptionApplyError,
    EncryptionError,
    ForeignRegistryRowError,
    RaftLogGapUncoveredError,
    SnapshotError,
    StorageError,
    WriterUint16CollisionError,
)
from .kek import Kek

EXIT_OK = 0
EXIT_HALT = 1
EXIT_USAGE = 2
# verify found damage, doctor a refusal, probe-node-id a refused join,
# status a foreign row.
EXIT_DAMAGED = 1
# diff: the registries differ (diff(1)'s convention).
EXIT_DIFFERENT = 1
EXIT_INTERRUPTED = 130
# 128 + SIGPIPE: what `inspect | head` reports for a process killed by it.
EXIT_BROKEN_PIPE = 141

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


def _uint(bits: int, name: str = "an integer", least: int = 0) -> typing.Callable[[str], int]:
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


_dek_id = _uint(32, "a DEK id")
_uint64 = _uint(64, "a 64-bit unsigned integer")
_index = _uint(64, "a Raft index")
_count = _uint(31, "a count")
_positive = _uint(31, "a positive count", least=1)


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


def add_inspect(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "inspect", help="print the registry rows as a table", description="Print the rows as a table, in key order."
    )
    p.add_argument("directory", help="registry directory")
    p.add_argument("--dek-id", type=_dek_id, metavar="ID", help="only the rows of this DEK")
    p.set_defaults(run=cmd_inspect)


def cmd_inspect(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with ea.Registry(args.directory) as registry:
        rows = registry.rows(args.dek_id)
        header = ("dek_id", "node_id16", "full_node_id", "first_seen", "last_seen")
        table = [tuple(str(v) for v in row_dict(r).values()) for r in rows]
        widths = [max([len(h)] + [len(t[i]) for t in table]) for i, h in enumerate(header)]
        print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)), file=out)
        for line in table:
            print("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)), file=out)
        scope = f" under dek_id {args.dek_id}" if args.dek_id is not None else ""
        print(f"{len(rows)} row{'s' if len(rows) != 1 else ''}{scope}; DEKs {registry.dek_ids()}", file=out)
    return EXIT_OK


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
        "--max-problems", type=_positive, default=100, metavar="N", help="stop after N problems (default 100)"
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


def add_probe_node_id(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "probe-node-id",
        help="show a node's 64-bit id and 16-bit prefix, and whether it may join",
        description="Print full_node_id and node_id as elastickv-admin does. With --registry, also run "
        "elastickv's pre-join check against the active DEKs (from the sidecar, or --storage-dek-id/"
        "--raft-dek-id): exit 1 when another node holds the prefix.",
    )
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--full-node-id", type=_uint64, metavar="N", help="the 64-bit id (decimal or 0x-hex)")
    who.add_argument("--raft-id", metavar="S", help="the Raft id; the full id is derived as elastickv does")
    p.add_argument("--registry", metavar="DIR", help="registry directory to check the join against")
    p.add_argument("--sidecar", metavar="PATH", help="sidecar with the active DEKs (default DIR/keys.json)")
    p.add_argument("--storage-dek-id", type=_dek_id, metavar="ID", help="active storage DEK (instead of the sidecar's)")
    p.add_argument("--raft-dek-id", type=_dek_id, metavar="ID", help="active Raft DEK (with --storage-dek-id)")
    p.set_defaults(run=cmd_probe_node_id)


def cmd_probe_node_id(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.registry is None:
        given = [
            o
            for o, v in (
                ("--sidecar", args.sidecar),
                ("--storage-dek-id", args.storage_dek_id),
                ("--raft-dek-id", args.raft_dek_id),
            )
            if v is not None
        ]
        if given:
            raise UsageError(f"{', '.join(given)} need(s) --registry: they only serve the join check")
    if args.raft_dek_id is not None and args.storage_dek_id is None:
        raise UsageError("--raft-dek-id needs --storage-dek-id (or neither: the sidecar's active DEKs are used)")
    if args.storage_dek_id is not None and args.sidecar is not None:
        raise UsageError("give either --sidecar or --storage-dek-id/--raft-dek-id, not both")
    if args.raft_id is not None and not args.raft_id:
        raise UsageError("--raft-id is empty")
    full = args.full_node_id if args.full_node_id is not None else ea.derive_node_id(str(args.raft_id))
    masked = ea.node_id16(full)
    # Everything that can fail runs before anything is printed, so that an
    # error leaves standard output empty.
    join: str | None = None
    code = EXIT_OK
    if args.registry is not None:
        storage, raft = args.storage_dek_id, args.raft_dek_id
        if args.sidecar is not None and not Path(args.sidecar).exists():
            # Only the default keys.json may be absent (not bootstrapped):
            # a path the user named that is missing is a mistake, not a state.
            raise UsageError(f"--sidecar {args.sidecar}: no such file")
        if storage is None:
            sidecar = ea.read_sidecar(args.sidecar or Path(args.registry) / "keys.json")
            storage, raft = (sidecar.active_storage, sidecar.active_raft) if sidecar else (0, 0)
        if storage == 0:
            join = "join: nothing to check (no active storage DEK: not bootstrapped)"
        else:
            with ea.Registry(args.registry) as registry:
                try:
                    needed = registry.check_join(full, storage, raft or 0)
                except WriterUint16CollisionError as collision:
                    join, code = f"join: REFUSED: {collision}", EXIT_DAMAGED
                else:
                    join = (
                        "join: ok after registering " + ", ".join(repr(r) for r in needed)
                        if needed
                        else "join: ok (already registered)"
                    )
    # elastickv-admin's layout: "%#016x (%d)" and "%#04x (%d)".
    print(f"full_node_id: 0x{full:016x} ({full})", file=out)
    print(f"node_id:      0x{masked:04x} ({masked})", file=out)
    if join is not None:
        print(join, file=out)
    return code


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
    node.add_argument("--full-node-id", type=_uint64, metavar="N", help="this node's 64-bit id")
    node.add_argument("--raft-id", metavar="S", help="this node's Raft id (the full id is derived)")
    p.add_argument("--member", type=_uint64, action="append", default=[], metavar="N", help="a member's full id")
    p.add_argument("--phase", choices=("pre-bump", "post-replay"), default="pre-bump")
    p.add_argument("--engine-applied-index", type=_index, metavar="N", help="the engine's applied index")
    p.add_argument("--snapshot-cutover-index", type=_index, metavar="N", help="cutover index of the restored snapshot")
    p.add_argument(
        "--log",
        metavar="FILE",
        help="the Raft log the node would replay, in apply's format (one hex entry per line, every entry, "
        "consecutive indexes; write 00 for an entry without an FSM payload); without it, a sidecar behind "
        "the engine is refused, as Go refuses without a scanner",
    )
    p.add_argument("--log-first-index", type=_index, metavar="N", help="Raft index of the first entry of --log")
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
        type=_uint(16, "a local epoch"),
        metavar="N",
        help="the storage epoch this start pinned, for the registration decision (default: from the sidecar)",
    )
    p.add_argument(
        "--raft-local-epoch",
        type=_uint(16, "a local epoch"),
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
                    f"epoch={c.local_epoch} ({c.purpose} key, registry last_seen={c.last_seen}, "
                    f"entry {c.entry.to_entry().hex()})"
                )
    elif decision.action == "already-registered":
        c = decision.storage
        lines.append(
            f"registration: already registered dek_id={c.dek_id} full_node_id=0x{c.full_node_id:016x} "
            f"epoch={c.local_epoch} (storage key, registry last_seen={c.last_seen})"
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


def _never_recorded_an_index(args: argparse.Namespace, sidecar: Path) -> bool:
    """Whether the audit of a sidecar behind the log was skipped because
    the (bootstrapped) sidecar has no Raft index yet."""
    if args.encryption_disabled or not sidecar.is_file():
        return False
    found = ea.read_sidecar(sidecar)
    return found is not None and bool(found.active_storage) and found.raft_applied_index == 0


def cmd_doctor(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if not Path(args.directory).exists():
        raise UsageError(f"{args.directory}: no such directory")
    if not Path(args.directory).is_dir():
        raise UsageError(f"{args.directory}: not a directory")
    log = _doctor_log(args)
    sidecar = Path(args.sidecar) if args.sidecar else Path(args.directory) / "keys.json"
    full = (
        args.full_node_id
        if args.full_node_id is not None
        else (ea.derive_node_id(args.raft_id) if args.raft_id else None)
    )
    kek = load_kek(args)
    registry = ea.Registry(args.directory) if (Path(args.directory) / "data.mdb").exists() else None
    try:
        refusals = ea.diagnose_startup(
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
    except SnapshotError as error:
        if not error.refused:
            raise
        refusals = [error]  # Go does not start on a snapshot it refuses
    finally:
        if registry is not None:
            registry.close()
    registration, registration_refused = _doctor_registration(args, sidecar, full, bool(refusals))
    node = f"0x{full:016x}" if full is not None else "not given (guard 7 skipped)"
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
        name = refusal.sentinel or "package-only, no Go sentinel"
        print(f"REFUSED {name} ({type(refusal).__name__}): {refusal}", file=out)
        print(f"    {refusal.meaning}", file=out)
    if not refusals:
        print("ok: no startup guard refuses", file=out)
    if _never_recorded_an_index(args, sidecar):
        # Go logs a warning and skips the audit (main_encryption_startup_guard.go:181).
        print(
            "note: the sidecar never recorded a Raft index (raft_applied_index=0, a sidecar of an older "
            "binary): the audit of a sidecar behind the log is skipped, as Go only warns; resync-sidecar "
            "or a rotation records one",
            file=out,
        )
    for line in registration:
        print(line, file=out)
    return EXIT_OK if not refusals and not registration_refused else EXIT_DAMAGED


def add_status(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "status",
        help="print elastickv's GetSidecarState report (or a leader's ResyncSidecar response)",
        description="Print the sidecar as elastickv's GetSidecarState reports it (the first lines are "
        "elastickv-admin's 'encryption status' block), with this node's writer-registry projection "
        "(--full-node-id or --raft-id), then the extras this package knows. --resync-for N prints instead "
        "the ResyncSidecar response a leader with this data directory sends node N. Exit 0 ok, 1 when "
        "another node's row holds the node's 16-bit prefix (Go answers Internal), 2 on an error.",
    )
    p.add_argument("directory", help="data directory: the registry (if it has data.mdb) and keys.json")
    p.add_argument("--sidecar", metavar="PATH", help="sidecar path (default: keys.json in the directory)")
    node = p.add_mutually_exclusive_group()
    node.add_argument("--full-node-id", type=_uint64, metavar="N", help="this node's 64-bit id: its rows are projected")
    node.add_argument("--raft-id", metavar="S", help="this node's Raft id (the full id is derived as elastickv does)")
    node.add_argument(
        "--resync-for", type=_uint64, metavar="N", help="print the leader's ResyncSidecar response for caller N"
    )
    p.add_argument(
        "--latest-applied-index",
        type=_index,
        metavar="N",
        help="the engine's applied index, as Go's latestAppliedIndex hook gives it (default: the sidecar's)",
    )
    p.add_argument("--json", action="store_true", help="print the message as proto3 JSON (proto field names)")
    p.add_argument("--no-extras", action="store_true", help="leave out the extras: exactly Go's message")
    p.set_defaults(run=cmd_status)


def _go_list(ids: typing.Iterable[int]) -> str:
    """Go's %v of a []uint32: ``[1 2 3]``."""
    return "[" + " ".join(str(i) for i in ids) + "]"


def _go_map(items: dict[int, int]) -> str:
    """Go's %v of a map[uint32]uint32 (fmt sorts the keys): ``map[1:3 2:7]``."""
    return "map[" + " ".join(f"{k}:{v}" for k, v in sorted(items.items())) + "]"


def _status_lines(message: ea.SidecarStateReport | ea.ResyncSidecarResponse, extras: bool) -> list[str]:
    """The message as elastickv-admin's status block
    (cmd/elastickv-admin/encryption.go:266-296), the projection, then the extras."""
    field = "  {:<29}{}".format
    fields = message.to_dict(extras=False)
    resync = isinstance(message, ea.ResyncSidecarResponse)
    lines = ["resync_sidecar_response:" if resync else "sidecar_state:"]
    for name, value in fields.items():
        if name in ("wrapped_deks_by_id", "writer_registry_for_caller"):
            continue
        lines.append(field(name + ":", str(value).lower() if isinstance(value, bool) else value))
    lines.append(field("wrapped_dek_ids:", _go_list(fields["wrapped_deks_by_id"])))
    lines.append(field("writer_registry_for_caller:", _go_map(fields["writer_registry_for_caller"])))
    x = message.extras
    if not extras or x is None:
        return lines
    rpc = "ResyncSidecar" if resync else "GetSidecarState"
    lines.append(f"extras (this package; not in Go's {rpc} answer):")
    field = "  {:<33}{}".format
    lines.append(field("sidecar:", f"{x.sidecar} (version {x.sidecar_version})"))
    lines.append(field("sidecar_raft_applied_index:", x.sidecar_raft_applied_index))
    if x.storage_envelope_active is not None:
        lines.append(field("storage_envelope_active:", str(x.storage_envelope_active).lower()))
        lines.append(field("raft_envelope_cutover_index:", x.raft_envelope_cutover_index))
    lines.append(field("storage_envelope_cutover_index:", x.storage_envelope_cutover_index))
    caller = x.caller_full_node_id
    who = f"0x{caller:016x} (node_id16 0x{caller & 0xFFFF:04x})" if caller else "none given (no projection)"
    lines.append(field("caller_full_node_id:", who))
    lines.append(field("registry:", x.registry or "none read"))
    if x.keys:
        active = {message.active_storage_id, message.active_raft_id} - {0}
        lines.append("  keys:")
        lines.append("    dek_id  purpose  active  local_epoch  created                         wrapped")
        for dek, k in x.keys.items():
            lines.append(
                f"    {dek:>6}  {k.purpose.name.lower():<7}  {'yes' if dek in active else '':<6}  {k.local_epoch:>11}  "
                f"{k.created:<30}  {len(k.wrapped)} bytes"
            )
    return lines


def cmd_status(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    directory = Path(args.directory)
    if not directory.is_dir():
        raise UsageError(f"{args.directory}: {'not a directory' if directory.exists() else 'no such directory'}")
    if args.raft_id is not None and not args.raft_id:
        raise UsageError("--raft-id is empty")
    if args.sidecar is not None and not Path(args.sidecar).exists():
        # Only the default keys.json may be absent (not bootstrapped).
        raise UsageError(f"--sidecar {args.sidecar}: no such file")
    sidecar = Path(args.sidecar) if args.sidecar else directory / "keys.json"
    # Without data.mdb there is no registry (as doctor): the projection is
    # empty, as Go's without a writer registry.
    registry = directory if (directory / "data.mdb").exists() else None
    message: ea.SidecarStateReport | ea.ResyncSidecarResponse
    try:
        if args.resync_for is not None:
            message = ea.resync_sidecar_response(
                registry,
                sidecar_path=sidecar,
                caller_full_node_id=args.resync_for,
                latest_applied_index=args.latest_applied_index,
            )
        else:
            full = args.full_node_id if args.raft_id is None else ea.derive_node_id(args.raft_id)
            message = ea.sidecar_state(
                registry, sidecar_path=sidecar, full_node_id=full, latest_applied_index=args.latest_applied_index
            )
    except ForeignRegistryRowError as found:
        if args.json:
            doc = {"error": {"type": type(found).__name__, "message": str(found)}}
            doc["error"].update({k: str(v) if k.endswith("full_node_id") else v for k, v in found.fields.items()})
            print(json.dumps(doc, indent=2), file=out)
        else:
            print(f"FOREIGN ROW ({type(found).__name__}): {found}", file=out)
            print(
                "    elastickv answers this with an Internal error and no state: another node's row holds this "
                "node's 16-bit prefix under a key, so their nonces would share it",
                file=out,
            )
        return EXIT_DAMAGED
    if args.json:
        print(message.to_json(extras=not args.no_extras), file=out)
    else:
        print("\n".join(_status_lines(message, extras=not args.no_extras)), file=out)
    return EXIT_OK


def add_snapshot_header(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "snapshot-header",
        help="read an elastickv snapshot's header and Raft cutover as Go reads it",
        description="Read an elastickv FSM snapshot as Go reads it, every CRC Go checks checked: a .snap file "
        "(its payload inline, or the fsm-snap/ file its token names), an .fsm file, or a Raft group's data "
        "directory (wal/, snap/, fsm-snap/), whose newest snapshot is chosen as Go chooses it. Exit 0 when it "
        "reads (or the directory has no snapshot to restore), 1 when Go refuses the snapshot, 2 when it "
        "cannot be read.",
    )
    p.add_argument("path", metavar="PATH", help="a .snap or .fsm file, or a data directory")
    p.add_argument("--json", action="store_true", help="print what was read as JSON")
    p.set_defaults(run=cmd_snapshot_header)


def _snapshot_doc(h: ea.SnapshotHeader) -> dict[str, typing.Any]:
    names = ("format", "term", "index", "token_index", "payload_size", "kind", "version", "header_length")
    doc: dict[str, typing.Any] = {"path": str(h.path), "payload_path": str(h.payload_path)}
    doc |= {name: getattr(h, name) for name in names}
    return doc | {"ceiling_ms": h.ceiling_ms, "raft_envelope_cutover_index": h.raft_envelope_cutover_index}


def cmd_snapshot_header(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    path = Path(args.path)
    try:
        chosen = ea.newest_snapshot(path) if path.is_dir() else path
        header = ea.read_snapshot_header(chosen) if chosen is not None else None
    except SnapshotError as error:
        if not error.refused:
            raise
        if args.json:
            fields = {name: getattr(error, name) for name in ("path", "code", "reason", "index", "details")}
            print(json.dumps({"refused": fields}, indent=2), file=out)
        else:
            print(f"REFUSED ({error.code}): {error}", file=out)
        return EXIT_DAMAGED
    if args.json:
        print(json.dumps({"snapshot": _snapshot_doc(header) if header else None}, indent=2), file=out)
        return EXIT_OK
    if header is None:
        print(
            f"{path}: no snapshot for Go to restore (no .wal file in {path / 'wal'}, or no .snap file in "
            f"{path / 'snap'} that is readable and recorded in the WAL's committed snapshots)",
            file=out,
        )
        return EXIT_OK
    raft = f" (term {header.term}, index {header.index})" if header.index is not None else ""
    print(f"snapshot: {header.path}{raft}", file=out)
    print(f"payload:  {header.payload_path} ({header.format}, {header.payload_size} bytes)", file=out)
    if header.kind == "none":
        print("header:   none (the snapshot has no payload: Go restores nothing from it)", file=out)
    else:
        print(f"header:   {header.kind} ({header.header_length} bytes), ceiling {header.ceiling_ms} ms", file=out)
    print(f"raft_envelope_cutover_index: {header.raft_envelope_cutover_index}", file=out)
    return EXIT_OK


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


def add_export(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser("export", help="write the rows as CSV or JSON", description="Write the rows as CSV or JSON.")
    p.add_argument("directory", help="registry directory")
    p.add_argument("--format", choices=("csv", "json"), required=True)
    p.add_argument("--output", "-o", metavar="FILE", help="file to write (default, or '-': standard output)")
    p.add_argument("--dek-id", type=_dek_id, metavar="ID", help="only the rows of this DEK")
    p.set_defaults(run=cmd_export)


def cmd_export(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with ea.Registry(args.directory) as registry:
        rows = [row_dict(r) for r in registry.rows(args.dek_id)]
    to_file = args.output not in (None, STDIN)
    target = open(args.output, "w", newline="") if to_file else out  # noqa: SIM115
    try:
        if args.format == "csv":
            writer = csv.DictWriter(target, fieldnames=ROW_FIELDS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        else:
            json.dump(rows, target, indent=2)
            target.write("\n")
    finally:
        if to_file:
            target.close()
    return EXIT_OK


class Progress:
    """A one-line progress bar on stderr, drawn only for a terminal."""

    def __init__(self, total: int, enabled: bool, stream: TextIO) -> None:
        self.total, self.enabled = total, enabled and total > 0
        self.stream = stream
        self.last = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.1 and done != self.total):
            return
        self.last = now
        width = 30
        filled = width * done // self.total
        self.stream.write(f"\r[{'#' * filled}{' ' * (width - filled)}] {done}/{self.total} entries")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 60 + "\r")
            self.stream.flush()


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
                f"{label}:{number}: not a hex-encoded entry ({_hex_problem(stripped)}); {outcome}"
            ) from None
    return entries


def _hex_problem(text: str) -> str:
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
        type=_index,
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
    p.add_argument("--progress-threshold", type=_count, default=1000, help=argparse.SUPPRESS)
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


def add_resync_sidecar(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "resync-sidecar",
        help="bring a lagging keys.json up to the registry from the Raft log",
        description="Replay the bootstrap, rotation and cutover entries of the Raft log that keys.json is "
        "behind on (after its raft_applied_index, up to the registry's applied index) with the checks apply "
        "makes, and write keys.json only: never the registry. Each key's local_epoch is raised to this "
        "node's own registry row. The old keys.json is kept as keys.json.before-resync-INDEX. Exit 0 when "
        "done (or nothing to do), 1 when an entry halts or the log does not cover the gap (nothing written).",
    )
    p.add_argument("directory", help="registry directory")
    p.add_argument("--kek", required=True, help="KEK file")
    p.add_argument("--sidecar", help="sidecar path (default: keys.json in the directory)")
    p.add_argument(
        "--log",
        required=True,
        metavar="FILE",
        help="the Raft log in apply's format (one hex entry per line, every entry, consecutive indexes; "
        "00 for an entry without an FSM payload); '-': standard input",
    )
    p.add_argument("--log-first-index", type=_index, metavar="N", help="Raft index of the first entry of --log")
    node = p.add_mutually_exclusive_group(required=True)
    node.add_argument("--full-node-id", type=_uint64, metavar="N", help="this node's 64-bit id")
    node.add_argument("--raft-id", metavar="S", help="this node's Raft id (the full id is derived)")
    p.add_argument("--through-index", type=_index, metavar="N", help="stop at this index (default: the registry's)")
    p.add_argument("--dry-run", action="store_true", help="show the change and write nothing")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=cmd_resync_sidecar)


def cmd_resync_sidecar(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if not (Path(args.directory) / "data.mdb").is_file():
        raise UsageError(f"{args.directory}: not a registry (no data.mdb)")
    if args.log_first_index is None:
        raise UsageError("--log needs --log-first-index: the Raft index of its first entry")
    entries = [entry for _, entry in read_entries(args.log, outcome="nothing was written")]
    full = args.full_node_id if args.full_node_id is not None else ea.derive_node_id(args.raft_id)
    with ea.Applier(args.directory, kek=ea.FileKek(args.kek), sidecar=args.sidecar) as applier:
        try:
            report = applier.resync_sidecar(
                entries,
                log_first_index=args.log_first_index,
                full_node_id=full,
                through_index=args.through_index,
                dry_run=args.dry_run,
            )
        except (EncryptionApplyError, RaftLogGapUncoveredError) as stop:
            word = "REFUSED" if isinstance(stop, RaftLogGapUncoveredError) else "HALT"
            print(f"{word} {type(stop).__name__}: {stop}", file=err)
            return EXIT_HALT
    if args.json:
        json.dump(report.to_dict(), out, indent=2)
        out.write("\n")
        return EXIT_OK
    first = report.sidecar_applied_index + 1
    print(
        f"resync {report.sidecar_path}: entries {first}..{report.through_index} after the sidecar's "
        f"raft_applied_index={report.sidecar_applied_index}",
        file=out,
    )
    for index, entry, outcome in report.replayed:
        print(f"  index {index}: {entry}: {outcome}", file=out)
    if report.passed_over:
        print(
            f"  {report.passed_over} other entries passed over (registrations, entries without a payload, "
            "other FSM entries)",
            file=out,
        )
    for dek_id, (before, after) in report.epochs.items():
        print(f"  local_epoch of key {dek_id}: {before} -> {after} (this node's registry row)", file=out)
    if report.left_for_apply:
        a, b = report.left_for_apply
        print(f"  entries {a}..{b} are past the registry's applied index: apply replays them", file=out)
    if report.dry_run:
        verdict = "dry run: keys.json would change" if report.changed else "dry run: nothing would change"
        print(f"{verdict}; nothing was written", file=out)
    elif report.written:
        kept = f" (the old one kept as {report.backup})" if report.backup else ""
        print(f"written: {report.sidecar_path}{kept}", file=out)
    else:
        print("nothing to do: keys.json already holds the gap", file=out)
    return EXIT_OK


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
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the command line; returns the exit status (see the module doc).
    Results go to ``out``, halts and errors to ``err`` (default: the
    process's standard output and error)."""
    out = out or sys.stdout
    err = err or sys.stderr
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
        # The reader went away (`inspect | head`). Point stdout at /dev/null
        # so that the interpreter's final flush does not complain again.
        if out is sys.stdout:
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
        return EXIT_BROKEN_PIPE
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
