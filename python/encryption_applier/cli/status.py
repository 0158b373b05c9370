"""``status``: elastickv's GetSidecarState report, or a leader's
ResyncSidecar response."""

from __future__ import annotations

import argparse
import json
import typing
from pathlib import Path
from typing import TextIO

from .. import _native as ea
from ..exceptions import ForeignRegistryRowError
from ._common import (
    EXIT_DAMAGED,
    EXIT_OK,
    Parser,
    UsageError,
    index_arg,
    uint64_arg,
)


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
    node.add_argument(
        "--full-node-id", type=uint64_arg, metavar="N", help="this node's 64-bit id: its rows are projected"
    )
    node.add_argument("--raft-id", metavar="S", help="this node's Raft id (the full id is derived as elastickv does)")
    node.add_argument(
        "--resync-for", type=uint64_arg, metavar="N", help="print the leader's ResyncSidecar response for caller N"
    )
    p.add_argument(
        "--latest-applied-index",
        type=index_arg,
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
