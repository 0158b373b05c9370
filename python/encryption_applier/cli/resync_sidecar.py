"""``resync-sidecar``: a lagging keys.json brought up to the registry from
the Raft log."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TextIO

from .. import _native as ea
from ..exceptions import EncryptionApplyError, RaftLogGapUncoveredError
from ._common import (
    EXIT_HALT,
    EXIT_OK,
    Parser,
    UsageError,
    index_arg,
    read_entries,
    uint64_arg,
)


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
    p.add_argument("--log-first-index", type=index_arg, metavar="N", help="Raft index of the first entry of --log")
    node = p.add_mutually_exclusive_group(required=True)
    node.add_argument("--full-node-id", type=uint64_arg, metavar="N", help="this node's 64-bit id")
    node.add_argument("--raft-id", metavar="S", help="this node's Raft id (the full id is derived)")
    p.add_argument("--through-index", type=index_arg, metavar="N", help="stop at this index (default: the registry's)")
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
