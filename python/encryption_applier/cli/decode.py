"""``decode``: a file of entries (or one entry's bytes) shown as text or
JSON, each payload by its SPEC §2 fields. The JSON is what ``encode json``
reads back, so ``decode --json`` then ``encode json`` gives the same
bytes."""

from __future__ import annotations

import argparse
import json
import typing
from typing import TextIO

from .. import _native as ea
from ..exceptions import MalformedPayloadError
from ._common import EXIT_DAMAGED, EXIT_OK, STDIN, Parser, UsageError, hex_problem, read_entries

_Payload = ea.Registration | ea.Bootstrap | ea.Rotation

#: A rotation's sub-tag by name, as the JSON and the text give it.
SUB_TAGS = {
    ea.ROTATE_DEK: "rotate-dek",
    ea.ENABLE_STORAGE_ENVELOPE: "enable-storage-envelope",
    ea.ENABLE_RAFT_ENVELOPE: "enable-raft-envelope",
}


def registration_doc(r: ea.Registration) -> dict[str, typing.Any]:
    return {"dek_id": r.dek_id, "full_node_id": f"0x{r.full_node_id:016x}", "local_epoch": r.local_epoch}


def payload_doc(payload: _Payload) -> dict[str, typing.Any]:
    """The payload's SPEC §2 fields as JSON (node ids as fixed-width hex
    strings, wrapped DEKs as hex), with its ``type``."""
    if isinstance(payload, ea.Registration):
        return {"type": "registration", **registration_doc(payload)}
    if isinstance(payload, ea.Bootstrap):
        return {
            "type": "bootstrap",
            "storage_dek_id": payload.storage_dek_id,
            "wrapped_storage": payload.wrapped_storage.hex(),
            "raft_dek_id": payload.raft_dek_id,
            "wrapped_raft": payload.wrapped_raft.hex(),
            "batch_registry": [registration_doc(r) for r in payload.batch_registry],
        }
    return {
        "type": "rotation",
        "sub_tag": SUB_TAGS.get(payload.sub_tag, payload.sub_tag),
        "dek_id": payload.dek_id,
        "purpose": payload.purpose.name.lower(),
        "wrapped": payload.wrapped.hex(),
        "proposer_registration": registration_doc(payload.proposer_registration),
    }


def _registration_text(r: ea.Registration) -> str:
    return f"dek_id={r.dek_id} full_node_id=0x{r.full_node_id:016x} local_epoch={r.local_epoch}"


def describe(entry: bytes) -> str:
    """One line for an entry: its type and fields (MalformedPayloadError
    for bytes that are an encryption opcode but do not decode)."""
    if not entry or not ea.is_encryption_opcode(entry[0]):
        opcode = f"opcode 0x{entry[0]:02x}" if entry else "empty"
        return f"not an encryption entry ({opcode}, {len(entry)} byte{'' if len(entry) == 1 else 's'})"
    payload = ea.decode_entry(entry)
    if isinstance(payload, ea.Registration):
        return "registration " + _registration_text(payload)
    if isinstance(payload, ea.Bootstrap):
        rows = "; ".join(_registration_text(r) for r in payload.batch_registry)
        return (
            f"bootstrap storage_dek_id={payload.storage_dek_id} ({len(payload.wrapped_storage)}-byte wrap) "
            f"raft_dek_id={payload.raft_dek_id} ({len(payload.wrapped_raft)}-byte wrap), "
            f"{len(payload.batch_registry)} row{'' if len(payload.batch_registry) == 1 else 's'}"
            + (f": {rows}" if rows else "")
        )
    return (
        f"rotation {SUB_TAGS.get(payload.sub_tag, payload.sub_tag)} dek_id={payload.dek_id} "
        f"purpose={payload.purpose.name.lower()} ({len(payload.wrapped)}-byte wrap), proposer "
        + _registration_text(payload.proposer_registration)
    )


def entry_doc(entry: bytes) -> dict[str, typing.Any]:
    """An entry as JSON: its payload's fields, or, for one that is not an
    encryption entry, its bytes (``"type": "other"``)."""
    if not entry or not ea.is_encryption_opcode(entry[0]):
        return {"type": "other", "entry": entry.hex()}
    return payload_doc(ea.decode_entry(entry))


def add_decode(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "decode",
        help="show a file of entries, or one entry's bytes, as text or JSON",
        description="Decode each entry of FILE (apply's format: one hex entry per line, '#' comments) or of "
        "--hex, and print its type and SPEC §2 fields, one line per entry (with --json, a JSON list that "
        "`encode json` reads back). Exit 0 when every entry decodes, 1 when one is malformed (it is shown "
        "as such), 2 on an error.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("file", nargs="?", help="file of hex-encoded entries ('-': standard input)")
    what.add_argument("--hex", metavar="HEX", help="one entry's bytes in hex (opcode first)")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per entry")
    p.set_defaults(run=cmd_decode)


def cmd_decode(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.hex is not None:
        text = "".join(args.hex.split())
        try:
            entries = [(1, bytes.fromhex(text))]
        except ValueError:
            raise UsageError(f"--hex: not a hex-encoded entry ({hex_problem(args.hex)})") from None
    else:
        entries = read_entries(args.file, outcome="nothing was decoded")
    label = "--hex" if args.hex is not None else ("<stdin>" if args.file == STDIN else args.file)
    docs: list[dict[str, typing.Any]] = []
    lines: list[str] = []
    malformed = 0
    for number, entry in entries:
        try:
            if args.json:
                docs.append({"line": number, **entry_doc(entry)})
            else:
                lines.append(f"{label}:{number}: {describe(entry)}")
        except MalformedPayloadError as error:
            malformed += 1
            if args.json:
                docs.append({"line": number, "type": "malformed", "entry": entry.hex(), "error": str(error)})
            else:
                lines.append(f"{label}:{number}: MALFORMED {error}")
    if args.json:
        print(json.dumps(docs, indent=2), file=out)
    else:
        for line in lines:
            print(line, file=out)
    return EXIT_DAMAGED if malformed else EXIT_OK
