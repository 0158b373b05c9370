"""``probe-node-id``: a node's 64-bit id and 16-bit prefix, and whether it may join."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from .. import _native as ea
from ..exceptions import WriterUint16CollisionError
from ._common import (
    EXIT_DAMAGED,
    EXIT_OK,
    Parser,
    UsageError,
    dek_id_arg,
    uint64_arg,
)


def add_probe_node_id(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "probe-node-id",
        help="show a node's 64-bit id and 16-bit prefix, and whether it may join",
        description="Print full_node_id and node_id as elastickv-admin does. With --registry, also run "
        "elastickv's pre-join check against the active DEKs (from the sidecar, or --storage-dek-id/"
        "--raft-dek-id): exit 1 when another node holds the prefix.",
    )
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--full-node-id", type=uint64_arg, metavar="N", help="the 64-bit id (decimal or 0x-hex)")
    who.add_argument("--raft-id", metavar="S", help="the Raft id; the full id is derived as elastickv does")
    p.add_argument("--registry", metavar="DIR", help="registry directory to check the join against")
    p.add_argument("--sidecar", metavar="PATH", help="sidecar with the active DEKs (default DIR/keys.json)")
    p.add_argument(
        "--storage-dek-id", type=dek_id_arg, metavar="ID", help="active storage DEK (instead of the sidecar's)"
    )
    p.add_argument("--raft-dek-id", type=dek_id_arg, metavar="ID", help="active Raft DEK (with --storage-dek-id)")
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
