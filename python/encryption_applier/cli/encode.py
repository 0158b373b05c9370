"""``encode``: an entry's wire bytes (SPEC §2) from flags or JSON, written
as a line of apply's format (hex, then a ``#`` comment saying what it is).
The DEKs of bootstrap and rotation entries are new random keys wrapped by
the KEK (its native ``wrap``, or a ``--kek-factory`` KEK's own); the
payload rules are the native payload classes'."""

from __future__ import annotations

import argparse
import json
import os
import sys
import typing
from pathlib import Path
from typing import TextIO

from .. import _native as ea
from ..kek import Kek
from ._common import (
    EXIT_OK,
    STDIN,
    Parser,
    UsageError,
    add_kek_options,
    dek_id_arg,
    load_kek,
    open_owner_only,
    uint64_arg,
    uint_arg,
)
from .decode import SUB_TAGS, describe

_Payload = ea.Registration | ea.Bootstrap | ea.Rotation
_epoch = uint_arg(16, "a local epoch")
#: Bytes in a DEK (AES-256).
DEK_LEN = 32


def _writer(text: str) -> tuple[int, int]:
    """An argparse type: ``FULL_NODE_ID[:LOCAL_EPOCH]`` (epoch 0 if left out)."""
    full, _, epoch = text.partition(":")
    return uint64_arg(full), _epoch(epoch) if epoch else 0


_writer.__name__ = "a FULL_NODE_ID[:LOCAL_EPOCH]"


def add_encode(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "encode",
        help="build an entry's bytes (registration, bootstrap, rotation, or JSON) for apply",
        description="Build an entry (opcode ‖ payload, SPEC §2) and print it as a line of apply's format: the "
        "hex, then '# ' and what it is. With -o FILE the line is appended to FILE, so that a run of encode "
        "commands makes a file apply reads. Bootstrap and rotation entries carry new random DEKs wrapped by "
        "the KEK (--kek or --kek-factory).",
    )
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")

    def common(q: Parser) -> None:
        q.add_argument("-o", "--output", metavar="FILE", help="append the line to FILE (default: standard output)")
        q.set_defaults(run=cmd_encode)

    r = kinds.add_parser("registration", help="a writer registration (opcode 0x03)")
    r.add_argument("--dek-id", type=dek_id_arg, required=True, metavar="ID")
    r.add_argument("--full-node-id", type=uint64_arg, required=True, metavar="N")
    r.add_argument("--local-epoch", type=_epoch, required=True, metavar="N")
    common(r)

    b = kinds.add_parser(
        "bootstrap",
        help="the first storage and Raft DEKs (opcode 0x04)",
        description="A bootstrap: new storage and Raft DEKs wrapped by the KEK, and for each --writer a "
        "storage row then a Raft row (elastickv's admin bootstrap batch, Bootstrap.for_cluster, with its "
        "rules: distinct non-zero ids, distinct writers and 16-bit prefixes).",
    )
    b.add_argument("--storage-dek-id", type=dek_id_arg, required=True, metavar="ID")
    b.add_argument("--raft-dek-id", type=dek_id_arg, required=True, metavar="ID")
    b.add_argument(
        "--writer",
        type=_writer,
        action="append",
        required=True,
        metavar="FULL[:EPOCH]",
        help="a writer registered under both keys (at least one; repeat for each; epoch 0 if left out)",
    )
    add_kek_options(b, " to wrap the new DEKs with")
    common(b)

    t = kinds.add_parser(
        "rotation",
        help="a new active DEK for one purpose (opcode 0x05, rotate-dek)",
        description="A rotate-dek: a new DEK wrapped by the KEK becomes the active key of its purpose; the "
        "proposer's registration under it travels with it.",
    )
    t.add_argument("--dek-id", type=dek_id_arg, required=True, metavar="ID", help="the new key's id")
    t.add_argument("--purpose", choices=("storage", "raft"), required=True)
    t.add_argument(
        "--proposer",
        type=_writer,
        required=True,
        metavar="FULL[:EPOCH]",
        help="the proposing node and its local epoch (registered under the new key)",
    )
    add_kek_options(t, " to wrap the new DEK with")
    common(t)

    j = kinds.add_parser(
        "json",
        help="entries from JSON (the objects `decode --json` prints)",
        description="Entries from a JSON object or list of objects, as `decode --json` prints them: "
        '{"type": "registration", "dek_id": 1, "full_node_id": "0xabcd0001", "local_epoch": 1}, '
        '"bootstrap" (storage_dek_id, raft_dek_id, batch_registry, and wrapped_storage/wrapped_raft in '
        'hex, or left out for new DEKs wrapped by the KEK), "rotation" (dek_id, purpose, '
        'proposer_registration, sub_tag, wrapped) and "other" (entry: any bytes, in hex). Ids are '
        'integers or "0x" hex strings; other keys ("line") are ignored.',
    )
    j.add_argument("file", metavar="FILE", help="the JSON ('-': standard input)")
    add_kek_options(j, " to wrap new DEKs with")
    common(j)


def _new_wrapped(kek: ea.FileKek | Kek | None, what: str) -> bytes:
    """A new random DEK, wrapped by the KEK."""
    if kek is None:
        raise UsageError(f"{what} needs --kek or --kek-factory: its new DEK is wrapped by the KEK")
    wrapped = kek.wrap(os.urandom(DEK_LEN))
    if not isinstance(wrapped, bytes):
        raise UsageError(f"the KEK's wrap() returned {type(wrapped).__name__}, not bytes")
    return wrapped


def _from_flags(args: argparse.Namespace, kek: ea.FileKek | Kek | None) -> list[bytes]:
    if args.kind == "registration":
        return [ea.Registration(args.dek_id, args.full_node_id, args.local_epoch).to_entry()]
    if args.kind == "bootstrap":
        wrapped = (_new_wrapped(kek, "a bootstrap"), _new_wrapped(kek, "a bootstrap"))
        # elastickv's admin rules for a bootstrap (ids, wraps, writers), natively.
        boot = ea.Bootstrap.for_cluster(args.storage_dek_id, wrapped[0], args.raft_dek_id, wrapped[1], args.writer)
        return [boot.to_entry()]
    purpose = ea.Purpose.STORAGE if args.purpose == "storage" else ea.Purpose.RAFT
    full, epoch = args.proposer
    rotation = ea.Rotation(
        args.dek_id, purpose, _new_wrapped(kek, "a rotation"), ea.Registration(args.dek_id, full, epoch)
    )
    return [rotation.to_entry()]


def _int(doc: dict[str, typing.Any], key: str, where: str) -> int:
    if key not in doc:
        raise UsageError(f"{where}: no {key!r}")
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise UsageError(f"{where}: {key!r} must be an integer or a '0x' hex string, not {value!r}")
    if isinstance(value, str):
        try:
            return int(value, 16) if value[:2].lower() == "0x" else int(value, 10)
        except ValueError:
            raise UsageError(f"{where}: {key!r} is {value!r}, not a decimal or 0x-hex integer") from None
    return value


def _bytes(doc: dict[str, typing.Any], key: str, where: str) -> bytes | None:
    value = doc.get(key)
    if value is None:
        return None
    try:
        return bytes.fromhex(value)
    except (TypeError, ValueError):
        raise UsageError(f"{where}: {key!r} must be hex bytes") from None


def _registration(doc: typing.Any, where: str) -> ea.Registration:
    if not isinstance(doc, dict):
        raise UsageError(f"{where}: a registration must be an object")
    return ea.Registration(
        _int(doc, "dek_id", where), _int(doc, "full_node_id", where), _int(doc, "local_epoch", where)
    )


def _from_doc(doc: typing.Any, where: str, kek: ea.FileKek | Kek | None) -> bytes:
    if not isinstance(doc, dict):
        raise UsageError(f"{where}: each entry must be a JSON object")
    kind = doc.get("type")
    if kind == "registration":
        return _registration(doc, where).to_entry()
    if kind == "bootstrap":
        rows = doc.get("batch_registry", [])
        if not isinstance(rows, list):
            raise UsageError(f"{where}: 'batch_registry' must be a list")
        # A wrap left out is made; an empty one ("") is kept, as decode
        # printed it, so the round trip gives the same bytes.
        storage = _bytes(doc, "wrapped_storage", where)
        raft = _bytes(doc, "wrapped_raft", where)
        return ea.Bootstrap(
            _int(doc, "storage_dek_id", where),
            storage if storage is not None else _new_wrapped(kek, f"{where}: a bootstrap"),
            _int(doc, "raft_dek_id", where),
            raft if raft is not None else _new_wrapped(kek, f"{where}: a bootstrap"),
            [_registration(r, f"{where}, batch_registry[{i}]") for i, r in enumerate(rows)],
        ).to_entry()
    if kind == "rotation":
        given = doc.get("purpose")
        purpose = (
            {"storage": ea.Purpose.STORAGE, "raft": ea.Purpose.RAFT}.get(given) if isinstance(given, str) else None
        )
        if purpose is None:
            raise UsageError(f'{where}: \'purpose\' must be "storage" or "raft"')
        names = {name: tag for tag, name in SUB_TAGS.items()}
        sub_tag = doc.get("sub_tag")
        if sub_tag is None:  # left out: a rotate-dek
            tag = ea.ROTATE_DEK
        elif isinstance(sub_tag, str) and sub_tag in names:
            tag = names[sub_tag]
        else:
            tag = _int(doc, "sub_tag", where)
        wrapped = _bytes(doc, "wrapped", where)
        if wrapped is None:
            wrapped = _new_wrapped(kek, f"{where}: a rotation") if tag == ea.ROTATE_DEK else b""
        proposer = _registration(doc.get("proposer_registration"), f"{where}, proposer_registration")
        return ea.Rotation(_int(doc, "dek_id", where), purpose, wrapped, proposer, sub_tag=tag).to_entry()
    if kind == "other":
        entry = _bytes(doc, "entry", where)
        if entry is None:
            raise UsageError(f"{where}: an \"other\" entry needs 'entry' (hex bytes)")
        return entry
    raise UsageError(f'{where}: \'type\' must be "registration", "bootstrap", "rotation" or "other", not {kind!r}')


def _from_json(args: argparse.Namespace, kek: ea.FileKek | Kek | None) -> list[bytes]:
    label = "<stdin>" if args.file == STDIN else args.file
    try:
        text = sys.stdin.read() if args.file == STDIN else Path(args.file).read_text()
        doc = json.loads(text)
    except OSError as error:
        raise UsageError(f"{label}: cannot read: {error.strerror or error}; nothing was encoded") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"{label}: not JSON ({error}); nothing was encoded") from None
    docs = doc if isinstance(doc, list) else [doc]
    return [_from_doc(d, f"{label}: entry {i}", kek) for i, d in enumerate(docs)]


def cmd_encode(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    kek = load_kek(args) if hasattr(args, "kek") else None
    entries = _from_json(args, kek) if args.kind == "json" else _from_flags(args, kek)
    # Each line is checked by decoding it back (SPEC §2's fail-closed decoder).
    text = "".join(f"{e.hex()}  # {describe(e)}\n" for e in entries)
    if args.output in (None, STDIN):
        out.write(text)
    else:
        with open_owner_only(args.output, append=True) as f:
            f.write(text)
        print(f"appended {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} to {args.output}", file=err)
    return EXIT_OK
