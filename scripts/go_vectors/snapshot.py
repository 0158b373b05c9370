"""Go's answers for elastickv snapshot files, re-derived from the Go source.

No Go toolchain is available here, so this script does not run Go: it
re-derives what Go returns by following Go's algorithm step by step, as read
at elastickv d9a031d0 and at the versions of its dependencies in its go.mod
(etcd server v3.7.0, raft v3.7.0, protobuf-go v1.36.11). Each step names the
Go file and line it follows. It is standalone Python 3.11 (it does not import
encryption_applier) and writes

    tests/core/golden/go/snapshot.json

the cases of ``tests/core/test_snapshot.py``: each case is a tree of files
and one question (``read``: ``read_snapshot_header(path)``; ``newest``: the
snapshot Go restores from a data directory), with Go's answer. Run it from
the repository root::

    python scripts/go_vectors/snapshot.py           # rewrite the golden file
    python scripts/go_vectors/snapshot.py --check   # exit 1 if it would change

The tests also use its functions (``read_path``, ``newest``, the encoders)
as the oracle for their hypothesis properties.

Go files are cited as:
  kv/snapshot.go, fsm_snapshot_file.go, wal_store.go, main_encryption_startup_guard.go
      elastickv d9a031d0 (the last three under internal/raftengine/etcd/, the guard at the root)
  snapshotter.go, wal.go, decoder.go, util.go, read_dir.go
      etcd v3.7.0 (server/etcdserver/api/snap/, server/storage/wal/, client/pkg/fileutil/)
  protowire/wire.go, impl/decode.go, impl/codec_gen.go, impl/codec_field.go
      protobuf-go v1.36.11 (encoding/protowire/, internal/impl/)
  fmt/scan.go
      the Go standard library's fmt scanner (Sscanf)
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ELASTICKV_COMMIT = "d9a031d0"
GENERATED_BY = "scripts/go_vectors/snapshot.py"
OUT = Path("tests/core/golden/go/snapshot.json")

# --------------------------------------------------------------------------
# CRC-32C (Go's hash/crc32 with crc32.Castagnoli)


def _table() -> list[int]:
    out = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        out.append(c)
    return out


_CRC = _table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """crc32.Update(crc, crc32.MakeTable(crc32.Castagnoli), data)."""
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c = (c >> 8) ^ _CRC[(c ^ b) & 0xFF]
    return c ^ 0xFFFFFFFF


# --------------------------------------------------------------------------
# Refusals: the problem codes of the package, with their structured details.


class Refused(Exception):
    """Go refuses (or cannot read) the file at ``path``."""

    def __init__(self, code: str, path: str, index: int | None = None, **details: Any) -> None:
        super().__init__(code, path)
        self.code = code
        self.path = path
        self.index = index
        self.details = details

    def at_index(self, index: int) -> Refused:
        if self.index is None:
            self.index = index
        return self

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "path": self.path, "index": self.index, "details": self.details}


# --------------------------------------------------------------------------
# kv.ReadSnapshotHeader (kv/snapshot.go:187-284)

MAGIC_V1 = b"EKVTHLC1"  # kv/snapshot.go:18
MAGIC_V2 = b"EKVTHLC2"  # kv/snapshot.go:27
MAGIC_PREFIX = b"EKVTHLC"  # kv/snapshot.go:43
V2_MIN_PAYLOAD = 16  # kv/snapshot.go:30
V2_MAX_PAYLOAD = 1024  # kv/snapshot.go:39


def read_snapshot_header(payload: bytes, path: str) -> dict[str, Any]:
    """What ReadSnapshotHeader returns for the payload stream ``payload``."""
    legacy = {"kind": "legacy", "version": None, "header_length": 0, "ceiling_ms": 0, "raft_envelope_cutover_index": 0}
    # :197-206 Peek(8): a shorter stream is headerless legacy.
    if len(payload) < 8:
        return legacy
    peeked = payload[:8]
    # :209-210 the v2 magic first.
    if peeked == MAGIC_V2:
        # :259 Discard(8); :263-266 ReadFull of the 2-byte length prefix.
        if len(payload) < 10:
            raise Refused("truncated_header", path, version=2, needed=10, available=len(payload))
        plen = struct.unpack(">H", payload[8:10])[0]
        # :267-270 the length must be 16..1024.
        if plen < V2_MIN_PAYLOAD or plen > V2_MAX_PAYLOAD:
            raise Refused("invalid_length", path, length=plen)
        # :276-280 ReadFull of plen bytes.
        if len(payload) < 10 + plen:
            raise Refused("truncated_header", path, version=2, needed=10 + plen, available=len(payload))
        body = payload[10 : 10 + plen]
        # :281-283 ceiling, cutover; the rest is skipped.
        return {
            "kind": "v2",
            "version": 2,
            "header_length": 10 + plen,
            "ceiling_ms": struct.unpack(">Q", body[0:8])[0],
            "raft_envelope_cutover_index": struct.unpack(">Q", body[8:16])[0],
        }
    # :211-212, 248-255 v1: ReadFull of magic + ceiling.
    if peeked == MAGIC_V1:
        if len(payload) < 16:
            raise Refused("truncated_header", path, version=1, needed=16, available=len(payload))
        return {
            "kind": "v1",
            "version": 1,
            "header_length": 16,
            "ceiling_ms": struct.unpack(">Q", payload[8:16])[0],
            "raft_envelope_cutover_index": 0,
        }
    # :213-214, 240-246 EKVTHLC with another version byte.
    if peeked[:7] == MAGIC_PREFIX:
        raise Refused("unknown_magic", path, version_byte=peeked[7])
    # :215-218 anything else: headerless legacy.
    return legacy


# --------------------------------------------------------------------------
# protobuf-go's proto.Unmarshal, for the few messages involved.


class WireError(Exception):
    def __init__(self, offset: int, detail: str) -> None:
        super().__init__(offset, detail)
        self.offset = offset
        self.detail = detail


MAX_VALID_NUMBER = (1 << 29) - 1  # protowire/wire.go:27
MAX_INT32 = (1 << 31) - 1
RECURSION_LIMIT = 10000  # protowire/wire.go:28


def consume_varint(b: bytes, i: int, end: int) -> tuple[int, int]:
    """protowire.ConsumeVarint (wire.go:267-367): (value, next offset)."""
    start = i
    v = 0
    for k in range(10):
        if i >= end:
            raise WireError(start, "truncated varint")
        c = b[i]
        i += 1
        if k == 9:
            # wire.go:359-366 the tenth byte may only be 0 or 1.
            if c > 1:
                raise WireError(start, "varint overflows 64 bits")
            return v | (c << 63), i
        v |= (c & 0x7F) << (7 * k)
        if c < 0x80:
            return v, i
    raise AssertionError("unreachable")


def consume_bytes(b: bytes, i: int, end: int) -> tuple[int, int, int]:
    """protowire.ConsumeBytes (wire.go:460-469): (start, length, next)."""
    at = i
    n, i = consume_varint(b, i, end)
    if n > end - i:
        raise WireError(at, "length runs past the end")
    return i, n, i + n


def consume_fixed(b: bytes, i: int, end: int, n: int) -> int:
    """protowire.ConsumeFixed32/64 (wire.go:412-446)."""
    if end - i < n:
        raise WireError(i, "truncated fixed-width value")
    return i + n


def consume_field_value(num: int, typ: int, b: bytes, i: int, end: int) -> int:
    """protowire.ConsumeFieldValue (wire.go:112-159), the offset after the
    value. Go recurses into groups with depth-1 from DefaultRecursionLimit
    and refuses a group at depth < 0; this keeps the same count with a list
    of the open groups' numbers (the group at nesting level k has depth
    10000 - (k - 1))."""
    if typ == 0:
        return consume_varint(b, i, end)[1]
    if typ == 1:
        return consume_fixed(b, i, end, 8)
    if typ == 2:
        return consume_bytes(b, i, end)[2]
    if typ == 5:
        return consume_fixed(b, i, end, 4)
    if typ != 3:
        # wire.go:154-157 end group outside a group, reserved types 6 and 7.
        raise WireError(i, "reserved wire type")
    open_groups = [num]
    while open_groups:
        at = i
        v, i = consume_varint(b, i, end)  # wire.go:136 ConsumeTag
        num2 = v >> 3
        # wire.go:168-177 with DecodeTag (wire.go:525-531).
        if num2 > MAX_INT32 or num2 < 1:
            raise WireError(at, "invalid field number")
        typ2 = v & 7
        if typ2 == 4:
            # wire.go:141-146
            if num2 != open_groups[-1]:
                raise WireError(at, "mismatched end group")
            open_groups.pop()
        elif typ2 == 3:
            # wire.go:131-133 at the nested call, depth - 1.
            if RECURSION_LIMIT - len(open_groups) < 0:
                raise WireError(at, "groups nested too deep")
            open_groups.append(num2)
        elif typ2 in (0, 1, 2, 5):
            i = consume_field_value(num2, typ2, b, i, end)
        else:
            raise WireError(at, "reserved wire type")
    return i


Handler = Callable[[bytes, int, int], int]


def unmarshal(b: bytes, start: int, end: int, known: dict[tuple[int, int], Handler]) -> None:
    """impl.unmarshalPointerEager (decode.go:124-244) with no enclosing
    group: each (field number, wire type) in ``known`` is consumed by its
    handler; a known number with another wire type is unknown (the
    ``consume*`` functions return errUnknown, codec_gen.go), and every
    unknown field is skipped by ConsumeFieldValue (decode.go:213-227)."""
    i = start
    while i < end:
        at = i
        tag, i = consume_varint(b, i, end)  # decode.go:139-152
        num = tag >> 3
        if num < 1 or num > MAX_VALID_NUMBER:  # decode.go:154-158
            raise WireError(at, "invalid field number")
        typ = tag & 7
        if typ == 4:  # decode.go:161-166, groupTag == 0
            raise WireError(at, "end group outside a group")
        handler = known.get((num, typ))
        i = handler(b, i, end) if handler is not None else consume_field_value(num, typ, b, i, end)


def conf_state(b: bytes, start: int, end: int) -> None:
    """raftpb.ConfState (raft raftpb/raft.proto:127-145): four repeated
    uint64, packed (codec_gen.go:2816-2854) or not, and a bool."""

    def packed(b: bytes, i: int, end: int) -> int:
        s, n, nxt = consume_bytes(b, i, end)
        j = s
        while j < s + n:
            j = consume_varint(b, j, s + n)[1]
        return nxt

    def scalar(b: bytes, i: int, end: int) -> int:
        return consume_varint(b, i, end)[1]

    known: dict[tuple[int, int], Handler] = {(n, 2): packed for n in range(1, 5)}
    known.update({(n, 0): scalar for n in range(1, 6)})
    unmarshal(b, start, end, known)


@dataclass
class TermIndex:
    term: int = 0
    index: int = 0


def snapshot_metadata(b: bytes, start: int, end: int, into: TermIndex) -> None:
    """raftpb.SnapshotMetadata (raft.proto:19-23), merged into ``into``
    (a message field seen twice is merged, codec_field.go:175-193)."""

    def cs(b: bytes, i: int, end: int) -> int:
        s, n, nxt = consume_bytes(b, i, end)
        conf_state(b, s, s + n)
        return nxt

    def index(b: bytes, i: int, end: int) -> int:
        into.index, nxt = consume_varint(b, i, end)
        return nxt

    def term(b: bytes, i: int, end: int) -> int:
        into.term, nxt = consume_varint(b, i, end)
        return nxt

    unmarshal(b, start, end, {(1, 2): cs, (2, 0): index, (3, 0): term})


# --------------------------------------------------------------------------
# The .fsm file (fsm_snapshot_file.go)

FSM_SNAP_DIR = "fsm-snap"  # fsm_snapshot_file.go:25
TOKEN_SIZE = 17  # fsm_snapshot_file.go:29
TOKEN_MAGIC = b"EKVT"  # fsm_snapshot_file.go:57
MAX_HEADER = 8 + 2 + V2_MAX_PAYLOAD


class Tree:
    """The files of a case: relative path -> bytes, and directories."""

    def __init__(self, files: dict[str, bytes], dirs: set[str]) -> None:
        self.files = files
        self.dirs = set(dirs)
        for p in [*files, *dirs]:
            parts = p.split("/")
            for k in range(1, len(parts)):
                self.dirs.add("/".join(parts[:k]))

    def read(self, path: str, missing: str = "cannot_open") -> bytes:
        if path in self.dirs:
            raise Refused("is_directory", path)
        if path not in self.files:
            raise Refused(missing, path)
        return self.files[path]

    def listdir(self, path: str) -> list[str]:
        if path not in self.dirs and path != "":
            raise Refused("cannot_list", path)
        prefix = path + "/" if path else ""
        names = {p[len(prefix) :].split("/")[0] for p in [*self.files, *self.dirs] if p.startswith(prefix)}
        return sorted(n for n in names if n)


def join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def read_fsm(tree: Tree, path: str, token_crc: int | None) -> tuple[int, dict[str, Any]]:
    """verifyFSMSnapshotFileWithToken (fsm_snapshot_file.go:362-400), then
    openFSMSnapshotPayloadReader (:451-490) and the header: (payload size, header)."""
    # :365-368 os.Open; a missing file is ErrFSMSnapshotNotFound (:492-498)
    # when a token names it.
    data = tree.read(path, "fsm_not_found" if token_crc is not None else "cannot_open")
    # :375-378 at least the footer.
    if len(data) < 4:
        raise Refused("fsm_too_small", path, size=len(data))
    # :380-394 the CRC of the payload against the footer.
    payload, footer = data[:-4], struct.unpack(">I", data[-4:])[0]
    computed = crc32c(payload)
    if computed != footer:
        raise Refused("fsm_crc_mismatch", path, footer=footer, computed=computed)
    # :395-398 the token's CRC.
    if token_crc is not None and computed != token_crc:
        raise Refused("fsm_token_crc_mismatch", path, footer=footer, token=token_crc)
    # :486-489 the payload is the file less its footer.
    return len(payload), read_snapshot_header(payload, path)


# --------------------------------------------------------------------------
# The .snap file (snapshotter.go:158-197) and what elastickv keeps in it.


def snap_read(data: bytes, path: str) -> tuple[TermIndex, int, int]:
    """snap.Read: the Raft snapshot's metadata and its data's range."""
    # snapshotter.go:166-168
    if len(data) == 0:
        raise Refused("snap_empty", path)
    crc: int | None = None
    rng: tuple[int, int] | None = None

    def crc_field(b: bytes, i: int, end: int) -> int:
        nonlocal crc
        v, nxt = consume_varint(b, i, end)
        crc = v & 0xFFFFFFFF  # codec_gen.go:1459 uint32(v)
        return nxt

    def data_field(b: bytes, i: int, end: int) -> int:
        nonlocal rng
        s, n, nxt = consume_bytes(b, i, end)
        rng = (s, n)  # codec_gen.go:5418: the last one is kept
        return nxt

    # snapshotter.go:171-175 proto.Unmarshal of snappb.Snapshot
    # (snap.proto: crc uint32 = 1, data bytes = 2).
    try:
        unmarshal(data, 0, len(data), {(1, 0): crc_field, (2, 2): data_field})
    except WireError as e:
        raise Refused("snap_undecodable", path, message="snappb.Snapshot", offset=e.offset) from None
    start, n = rng or (0, 0)
    # snapshotter.go:177-180
    if n == 0 or (crc or 0) == 0:
        raise Refused("snap_empty", path)
    # snapshotter.go:182-190
    computed = crc32c(data[start : start + n])
    if computed != crc:
        raise Refused("snap_crc_mismatch", path, stored=crc, computed=computed)
    # snapshotter.go:192-196 proto.Unmarshal of raftpb.Snapshot
    # (raft.proto:25-28: data bytes = 1, metadata = 2).
    meta = TermIndex()
    inner = (start, 0)

    def inner_data(b: bytes, i: int, end: int) -> int:
        nonlocal inner
        s, m, nxt = consume_bytes(b, i, end)
        inner = (s, m)
        return nxt

    def metadata(b: bytes, i: int, end: int) -> int:
        s, m, nxt = consume_bytes(b, i, end)
        snapshot_metadata(b, s, s + m, meta)
        return nxt

    try:
        unmarshal(data, start, start + n, {(1, 2): inner_data, (2, 2): metadata})
    except WireError as e:
        raise Refused("snap_undecodable", path, message="raftpb.Snapshot", offset=e.offset) from None
    return meta, inner[0], inner[1]


def data_dir_of(snap_path: str) -> str:
    """The data directory of a .snap: the parent of its snap/."""
    parts = snap_path.split("/")
    return "/".join(parts[:-2])


def resolve(tree: Tree, path: str, meta: TermIndex, start: int, n: int, data_dir: str) -> dict[str, Any]:
    """OpenNewestFSMSnapshotPayload from the loaded snapshot on
    (fsm_snapshot_file.go:416-434), then the header (guard :270-281)."""
    out: dict[str, Any] = {
        "path": path,
        "payload_path": path,
        "format": "snap-empty",
        "term": meta.term,
        "index": meta.index,
        "token_index": None,
        "payload_size": n,
        "kind": "none",
        "version": None,
        "header_length": 0,
        "ceiling_ms": 0,
        "raft_envelope_cutover_index": 0,
    }
    # :416-418 no data: no payload.
    if n == 0:
        return out
    data = tree.files[path][start : start + n]
    # :419-421 and :97-102: not a 17-byte EKVT token, the payload itself.
    if not (len(data) == TOKEN_SIZE and data[:4] == TOKEN_MAGIC):
        try:
            header = read_snapshot_header(data, path)
        except Refused as e:
            raise e.at_index(meta.index) from None
        out.update(header, format="snap-inline")
        return out
    # :422-425, 118-135 decodeSnapshotToken: the version must be 1.
    if data[4] != 1:
        raise Refused("token_invalid", path, version=data[4]).at_index(meta.index)
    token_index = struct.unpack(">Q", data[5:13])[0]
    token_crc = struct.unpack(">I", data[13:17])[0]
    # :426 fsmSnapPath (:138-140).
    fsm_path = join(data_dir, FSM_SNAP_DIR, f"{token_index:016x}.fsm")
    try:
        size, header = read_fsm(tree, fsm_path, token_crc)
    except Refused as e:
        raise e.at_index(meta.index) from None
    out.update(header, format="snap-token", payload_path=fsm_path, token_index=token_index, payload_size=size)
    return out


def read_path(tree: Tree, path: str) -> dict[str, Any]:
    """The package's read_snapshot_header(path): a name ending in .snap is
    an etcd snapshot file, any other an .fsm file."""
    if path in tree.dirs:
        raise Refused("is_directory", path)
    if path.endswith(".snap"):
        data = tree.read(path)
        meta, start, n = snap_read(data, path)
        return resolve(tree, path, meta, start, n, data_dir_of(path))
    size, header = read_fsm(tree, path, None)
    return {
        "path": path,
        "payload_path": path,
        "format": "fsm",
        "term": None,
        "index": None,
        "token_index": None,
        "payload_size": size,
        **header,
    }


# --------------------------------------------------------------------------
# fmt.Sscanf(name, "%016x-%016x.wal", &seq, &index) (util.go:102-108)

_SPACE = [(0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A)]
_SPACE += [(0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000)]


def _is_space(r: int) -> bool:
    """fmt/scan.go isSpace (the unicode.White_Space ranges)."""
    return r < 1 << 16 and any(lo <= r <= hi for lo, hi in _SPACE)


def _runes(b: bytes) -> list[int]:
    """The runes fmt's readRune decodes: invalid UTF-8 is U+FFFD, one byte."""
    out, i = [], 0
    while i < len(b):
        c = b[i]
        width = 1 if c < 0x80 else 2 if 0xC0 <= c <= 0xDF else 3 if 0xE0 <= c <= 0xEF else 4 if 0xF0 <= c <= 0xF7 else 0
        try:
            text = b[i : i + width].decode("utf-8") if width else ""
        except UnicodeDecodeError:
            text = ""
        if width and len(text) == 1:
            out.append(ord(text))
            i += width
        else:
            out.append(0xFFFD)
            i += 1
    return out


def scan_wal_name(name: bytes) -> tuple[int, int] | None:
    """fmt.Sscanf with "%016x-%016x.wal" (doScanf, advance, scanUint,
    scanNumber of fmt/scan.go): None when it reports an error."""
    r = _runes(name)
    pos = 0

    def hex16() -> int | None:
        nonlocal pos
        # doScanf: SkipSpace before the verb (newlines fail: nlIsSpace false).
        while pos < len(r):
            if r[pos] == 0x0A:
                return None
            if not _is_space(r[pos]):
                break
            pos += 1
        # scanUint: notEOF, then scanNumber with hexadecimalDigits, width 16.
        digits = ""
        while len(digits) < 16 and pos < len(r) and chr(r[pos]) in "0123456789aAbBcCdDeEfF":
            digits += chr(r[pos])
            pos += 1
        return int(digits, 16) if digits else None

    def literal(text: str) -> bool:
        # advance: each format rune must be the next input rune.
        nonlocal pos
        for ch in text:
            if pos >= len(r) or r[pos] != ord(ch):
                return False
            pos += 1
        return True

    seq = hex16()
    if seq is None or not literal("-"):
        return None
    index = hex16()
    if index is None or not literal(".wal"):
        return None
    return seq, index


def is_wal_name(name: str) -> bool:
    """parseWALName (util.go:102-108)."""
    b = name.encode("utf-8", "surrogateescape")
    return b.endswith(b".wal") and scan_wal_name(b) is not None


# --------------------------------------------------------------------------
# wal.ValidSnapshotEntries (wal.go:598-658) and its decoder (decoder.go)

STATE_TYPE, CRC_TYPE, SNAPSHOT_TYPE = 3, 4, 5  # wal.go:38-44


def _has_zero_sector(file_off: int, data: bytes) -> bool:
    """isTornEntry (decoder.go:170-203) for the last file."""
    cur = 0
    while cur < len(data):
        n = min(512 - (file_off % 512), len(data) - cur)
        if all(x == 0 for x in data[cur : cur + n]):
            return True
        file_off += n
        cur += n
    return False


class _End(Exception):
    """io.EOF or io.ErrUnexpectedEOF: the scan ends without error."""


def valid_snapshot_entries(tree: Tree, wal_dir: str) -> list[TermIndex]:
    # util.go:72-100 readWALNames: sorted names (read_dir.go:42), WAL names only.
    names = [n for n in tree.listdir(wal_dir) if is_wal_name(n)]
    if not names:
        raise Refused("wal_no_files", wal_dir)
    # wal.go:611 openWALFiles(names, 0): every file, in order.
    files = [(join(wal_dir, n), tree.read(join(wal_dir, n))) for n in names]
    snaps: list[TermIndex] = []
    commit = 0
    crc = 0
    current, off = 0, 0

    def decode() -> tuple[int, int, int, bytes]:
        """decodeRecord (decoder.go:88-155): (frame offset, type, crc, data)."""
        nonlocal current, off, crc
        while True:
            if current >= len(files):
                raise _End()
            path, data = files[current]
            # decoder.go:94-106 readInt64: EOF or a zero frame, next file.
            left = len(data) - off
            if left == 0:
                current, off = current + 1, 0
                continue
            if left < 8:
                raise _End()  # ErrUnexpectedEOF
            frame = struct.unpack("<q", data[off : off + 8])[0]
            if frame == 0:
                current, off = current + 1, 0
                continue
            break
        # decoder.go:157-168 decodeFrameSize.
        rec_bytes = frame & ~(0xFF << 56) & ((1 << 64) - 1)
        pad_bytes = ((frame & ((1 << 64) - 1)) >> 56) & 0x7 if frame < 0 else 0
        # decoder.go:109-114 max entry size, then ReadFull (:116-123).
        if rec_bytes > len(data) - off - pad_bytes or rec_bytes + pad_bytes > left - 8:
            raise _End()
        at = off
        start = off + 8
        body = data[start : start + rec_bytes + pad_bytes]
        last = current == len(files) - 1
        kind, rcrc, rdata = 0, 0, (start, 0)

        def f_type(b: bytes, i: int, end: int) -> int:
            nonlocal kind
            kind, nxt = consume_varint(b, i, end)
            return nxt

        def f_crc(b: bytes, i: int, end: int) -> int:
            nonlocal rcrc
            v, nxt = consume_varint(b, i, end)
            rcrc = v & 0xFFFFFFFF
            return nxt

        def f_data(b: bytes, i: int, end: int) -> int:
            nonlocal rdata
            s, n, nxt = consume_bytes(b, i, end)
            rdata = (s, n)
            return nxt

        # decoder.go:125-130 proto.Unmarshal of walpb.Record
        # (record.proto: type int64 = 1, crc uint32 = 2, data bytes = 3).
        try:
            unmarshal(data, start, start + rec_bytes, {(1, 0): f_type, (2, 0): f_crc, (3, 2): f_data})
        except WireError:
            if last and _has_zero_sector(start, body):
                raise _End() from None
            raise Refused("wal_undecodable", path, offset=at) from None
        payload = data[rdata[0] : rdata[0] + rdata[1]]
        # decoder.go:132-151 every record but a CRC record extends the CRC.
        if kind != CRC_TYPE:
            crc = crc32c(payload, crc)
            if rcrc != crc:
                if last and _has_zero_sector(start, body):
                    raise _End()
                raise Refused("wal_crc_mismatch", path, offset=at, stored=rcrc, computed=crc)
        # decoder.go:153
        off += 8 + rec_bytes + pad_bytes
        return at, kind, rcrc, payload

    while True:
        try:
            at, kind, rcrc, payload = decode()
        except _End:
            break
        path = files[current][0]
        if kind == SNAPSHOT_TYPE:
            # wal.go:626-629 walpb.Snapshot (index = 1, term = 2, conf_state = 3);
            # MustUnmarshalMessage panics in Go on bad bytes.
            snap = TermIndex()

            def s_index(b: bytes, i: int, end: int, snap: TermIndex = snap) -> int:
                snap.index, nxt = consume_varint(b, i, end)
                return nxt

            def s_term(b: bytes, i: int, end: int, snap: TermIndex = snap) -> int:
                snap.term, nxt = consume_varint(b, i, end)
                return nxt

            def s_cs(b: bytes, i: int, end: int) -> int:
                s, n, nxt = consume_bytes(b, i, end)
                conf_state(b, s, s + n)
                return nxt

            try:
                unmarshal(payload, 0, len(payload), {(1, 0): s_index, (2, 0): s_term, (3, 2): s_cs})
            except WireError:
                raise Refused("wal_undecodable", path, offset=at) from None
            snaps.append(snap)
        elif kind == STATE_TYPE:
            # wal.go:630-631 raftpb.HardState (term = 1, vote = 2, commit = 3), replacing the last.
            state = {"commit": 0}

            def h_commit(b: bytes, i: int, end: int, state: dict[str, int] = state) -> int:
                state["commit"], nxt = consume_varint(b, i, end)
                return nxt

            def h_skip(b: bytes, i: int, end: int) -> int:
                return consume_varint(b, i, end)[1]

            try:
                unmarshal(payload, 0, len(payload), {(1, 0): h_skip, (2, 0): h_skip, (3, 0): h_commit})
            except WireError:
                raise Refused("wal_undecodable", path, offset=at) from None
            commit = state["commit"]
        elif kind == CRC_TYPE:
            # wal.go:632-639
            if crc != 0 and rcrc != crc:
                raise Refused("wal_crc_mismatch", path, offset=at, stored=rcrc, computed=crc)
            crc = rcrc
    # wal.go:648-656 only snapshots at or below the commit index.
    return [s for s in snaps if s.index <= commit]


# --------------------------------------------------------------------------
# The newest snapshot of a data directory (fsm_snapshot_file.go:406-435)


def newest(tree: Tree, data_dir: str) -> dict[str, Any]:
    """{"none": reason} or {"chosen": header}, as OpenNewestFSMSnapshotPayload."""
    wal_dir = join(data_dir, "wal")
    # fsm_snapshot_file.go:407-410 wal.Exist (util.go:29-36).
    try:
        wal_names = tree.listdir(wal_dir)
    except Refused:
        wal_names = []
    if not any(n.endswith(".wal") for n in wal_names):
        return {"none": "no_wal"}
    # wal_store.go:331-335 loadPersistedSnapshot.
    vouched = valid_snapshot_entries(tree, wal_dir)
    snap_dir = join(data_dir, "snap")
    # snapshotter.go:200-222 snapNames: db.tmp* removed by etcd, *.snap
    # kept, newest first by the names' byte order.
    names = [n for n in tree.listdir(snap_dir) if not n.startswith("db.tmp") and n.endswith(".snap")]
    names.sort(key=lambda n: n.encode("utf-8", "surrogateescape"), reverse=True)
    # snapshotter.go:114-140 LoadNewestAvailable / loadMatching.
    for name in names:
        path = join(snap_dir, name)
        try:
            meta, start, n = snap_read(tree.read(path), path)
        except Refused:
            continue  # loadSnap: renamed *.broken by etcd, passed over
        if any(v.term == meta.term and v.index == meta.index for v in reversed(vouched)):
            return {"chosen": resolve(tree, path, meta, start, n, data_dir)}
    # wal_store.go:340-341 ErrNoSnapshot: an empty snapshot.
    return {"none": "none_vouched"}


# --------------------------------------------------------------------------
# Encoders, for building cases (and the tests' files).


def varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(num: int, typ: int) -> bytes:
    return varint(num << 3 | typ)


def f_varint(num: int, v: int) -> bytes:
    return tag(num, 0) + varint(v)


def f_bytes(num: int, data: bytes) -> bytes:
    return tag(num, 2) + varint(len(data)) + data


def header_v1(ceiling: int) -> bytes:
    return MAGIC_V1 + struct.pack(">Q", ceiling)


def header_v2(ceiling: int, cutover: int, trailing: bytes = b"", length: int | None = None) -> bytes:
    body = struct.pack(">QQ", ceiling, cutover) + trailing
    return MAGIC_V2 + struct.pack(">H", len(body) if length is None else length) + body


def fsm_file(payload: bytes, footer: int | None = None) -> bytes:
    return payload + struct.pack(">I", crc32c(payload) if footer is None else footer)


def token(index: int, crc: int, version: int = 1) -> bytes:
    return TOKEN_MAGIC + bytes([version]) + struct.pack(">QI", index, crc)


def raft_snapshot(data: bytes | None, term: int, index: int, voters: tuple[int, ...] = (1,)) -> bytes:
    """raftpb.Snapshot as Go marshals it: data, then metadata."""
    cs = b"".join(f_varint(1, v) for v in voters)
    meta = f_bytes(1, cs) + f_varint(2, index) + f_varint(3, term)
    return (f_bytes(1, data) if data is not None else b"") + f_bytes(2, meta)


def snap_file(inner: bytes, crc: int | None = None) -> bytes:
    """snappb.Snapshot: crc, then data."""
    return f_varint(1, crc32c(inner) if crc is None else crc) + f_bytes(2, inner)


def snap_name(term: int, index: int) -> str:
    return f"{term:016x}-{index:016x}.snap"  # snapshotter.go:80


def wal_record(kind: int, data: bytes, crc: int) -> bytes:
    return f_varint(1, kind) + f_varint(2, crc) + f_bytes(3, data)


def wal_frame(record: bytes, pad_to: int = 8) -> bytes:
    """encoder.go's framing: padding to 8 bytes, flagged in the top byte."""
    pad = (pad_to - len(record) % pad_to) % pad_to
    length = len(record) | ((0x80 | pad) << 56 if pad else 0)
    return struct.pack("<Q", length) + record + b"\0" * pad


@dataclass
class Wal:
    """Builds one WAL file's records with the running CRC."""

    crc: int = 0
    out: bytearray = field(default_factory=bytearray)

    def record(self, kind: int, data: bytes) -> Wal:
        if kind == CRC_TYPE:
            rec = wal_record(kind, b"", self.crc)
        else:
            self.crc = crc32c(data, self.crc)
            rec = wal_record(kind, data, self.crc)
        self.out += wal_frame(rec)
        return self

    def snapshot(self, term: int, index: int) -> Wal:
        return self.record(SNAPSHOT_TYPE, f_varint(1, index) + f_varint(2, term))

    def state(self, commit: int, term: int = 1) -> Wal:
        return self.record(STATE_TYPE, f_varint(1, term) + f_varint(3, commit))

    def bytes(self) -> bytes:
        return bytes(self.out)


def wal_file(vouched: list[tuple[int, int]], commit: int) -> bytes:
    """A WAL that records each (term, index) snapshot and commits ``commit``."""
    w = Wal().record(CRC_TYPE, b"").record(1, b"metadata").snapshot(0, 0)
    for term, index in vouched:
        w.snapshot(term, index)
    return w.state(commit).bytes()


WAL_NAME = "0000000000000000-0000000000000000.wal"


def data_dir_files(
    snaps: dict[str, bytes], vouched: list[tuple[int, int]], commit: int, fsm: dict[str, bytes] | None = None
) -> dict[str, bytes]:
    files = {f"wal/{WAL_NAME}": wal_file(vouched, commit)}
    files.update({f"snap/{n}": b for n, b in snaps.items()})
    files.update({f"fsm-snap/{n}": b for n, b in (fsm or {}).items()})
    return files


def token_snapshot(term: int, index: int, payload: bytes) -> tuple[bytes, dict[str, bytes]]:
    """A token .snap and the .fsm it names."""
    fsm = fsm_file(payload)
    snap = snap_file(raft_snapshot(token(index, crc32c(payload)), term, index))
    return snap, {f"{index:016x}.fsm": fsm}


# --------------------------------------------------------------------------
# The cases


def answer(tree: Tree, op: str, path: str) -> dict[str, Any]:
    try:
        if op == "read":
            return {"ok": read_path(tree, path)}
        return newest(tree, path)
    except Refused as e:
        return {"error": e.as_json()}


def cases() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def case(name: str, op: str, path: str, files: dict[str, bytes], dirs: tuple[str, ...] = ()) -> None:
        tree = Tree(files, set(dirs))
        out.append(
            {
                "name": name,
                "op": op,
                "path": path,
                "files": {p: b.hex() for p, b in sorted(files.items())},
                "dirs": sorted(dirs),
                "expect": answer(tree, op, path),
            }
        )

    # The header, through an .fsm file read by itself.
    payloads = {
        "legacy_empty": b"",
        "legacy_short": b"EKVTHLC",
        "legacy_bytes": b"some pebble snapshot bytes",
        "legacy_prefix_of_v1": b"EKVTHL\x001234567890",
        "v1": header_v1(1_700_000_000_123) + b"rest",
        "v1_exact": header_v1(7),
        "v1_truncated": header_v1(7)[:12],
        "v1_magic_only": MAGIC_V1,
        "v2": header_v2(1_700_000_000_123, 40) + b"pebble",
        "v2_cutover_zero": header_v2(5, 0),
        "v2_trailing": header_v2(9, 77, trailing=b"\x01\x02\x03") + b"rest",
        "v2_max_trailing": header_v2(9, 2**64 - 1, trailing=b"\xee" * (1024 - 16)),
        "v2_length_15": header_v2(9, 1, length=15),
        "v2_length_0": MAGIC_V2 + b"\x00\x00",
        "v2_length_1025": header_v2(9, 1, trailing=b"\0" * 1009),
        "v2_length_ffff": MAGIC_V2 + b"\xff\xff" + b"\0" * 64,
        "v2_no_length": MAGIC_V2,
        "v2_half_length": MAGIC_V2 + b"\x00",
        "v2_truncated_body": header_v2(9, 1)[:20],
        "v2_truncated_trailing": header_v2(9, 1, trailing=b"x" * 10)[:30],
        "unknown_v3": b"EKVTHLC3" + b"\0" * 16,
        "unknown_v0": b"EKVTHLC\x00" + b"\0" * 16,
        "unknown_ff": b"EKVTHLC\xff",
    }
    for name, payload in payloads.items():
        case(f"fsm_{name}", "read", "x.fsm", {"x.fsm": fsm_file(payload)})
    case("fsm_bad_footer", "read", "x.fsm", {"x.fsm": fsm_file(header_v2(1, 2), footer=0xDEADBEEF)})
    case("fsm_flipped_byte", "read", "x.fsm", {"x.fsm": b"EKVTHLC2\x00\x11" + fsm_file(header_v2(1, 2))[10:]})
    for size in range(4):
        case(f"fsm_too_small_{size}", "read", "x.fsm", {"x.fsm": b"\0" * size})
    case("fsm_only_footer", "read", "0000000000000064.fsm", {"0000000000000064.fsm": fsm_file(b"")})

    # .snap files with the payload inline, a token, or nothing.
    for name, payload in [("legacy", b"old pebble"), ("v1", header_v1(3)), ("v2", header_v2(3, 12))]:
        files = {"d/snap/" + snap_name(2, 100): snap_file(raft_snapshot(payload, 2, 100))}
        case(f"snap_inline_{name}", "read", "d/snap/" + snap_name(2, 100), files)
    files = {"d/snap/" + snap_name(2, 100): snap_file(raft_snapshot(header_v2(3, 12)[:14], 2, 100))}
    case("snap_inline_truncated_header", "read", "d/snap/" + snap_name(2, 100), files)
    files = {"d/snap/" + snap_name(2, 100): snap_file(raft_snapshot(b"EKVTHLC9xx", 2, 100))}
    case("snap_inline_unknown_magic", "read", "d/snap/" + snap_name(2, 100), files)
    for name, data in [("no_data", None), ("empty_data", b"")]:
        files = {"d/snap/" + snap_name(2, 100): snap_file(raft_snapshot(data, 2, 100))}
        case(f"snap_{name}", "read", "d/snap/" + snap_name(2, 100), files)

    snap, fsm = token_snapshot(3, 200, header_v2(11, 150) + b"pebble")
    tok = {"d/snap/" + snap_name(3, 200): snap} | {"d/fsm-snap/" + n: b for n, b in fsm.items()}
    case("snap_token_v2", "read", "d/snap/" + snap_name(3, 200), tok)
    case("snap_token_missing_fsm", "read", "d/snap/" + snap_name(3, 200), {"d/snap/" + snap_name(3, 200): snap})
    bad_fsm = dict(tok)
    bad_fsm["d/fsm-snap/00000000000000c8.fsm"] = fsm_file(header_v2(11, 999))  # valid footer, another CRC
    case("snap_token_crc_differs", "read", "d/snap/" + snap_name(3, 200), bad_fsm)
    corrupt = dict(tok)
    corrupt["d/fsm-snap/00000000000000c8.fsm"] = fsm_file(header_v2(11, 150) + b"pebble", footer=1)
    case("snap_token_fsm_corrupt", "read", "d/snap/" + snap_name(3, 200), corrupt)
    small = dict(tok)
    small["d/fsm-snap/00000000000000c8.fsm"] = b"\x01\x02"
    case("snap_token_fsm_too_small", "read", "d/snap/" + snap_name(3, 200), small)
    payload = b"EKVTHLC7" + b"\0" * 20
    t2 = {
        "d/snap/" + snap_name(3, 200): snap_file(raft_snapshot(token(200, crc32c(payload)), 3, 200)),
        "d/fsm-snap/00000000000000c8.fsm": fsm_file(payload),
    }
    case("snap_token_fsm_unknown_magic", "read", "d/snap/" + snap_name(3, 200), t2)
    t3 = {"d/snap/" + snap_name(3, 200): snap_file(raft_snapshot(token(200, 0, version=2), 3, 200))}
    case("snap_token_version_2", "read", "d/snap/" + snap_name(3, 200), t3)
    # 17 bytes of EKVT that are no token: Go still decodes them as one.
    t4 = {"d/snap/" + snap_name(3, 200): snap_file(raft_snapshot(b"EKVTHLC1" + b"\0" * 9, 3, 200))}
    case("snap_17_bytes_of_v1", "read", "d/snap/" + snap_name(3, 200), t4)
    # 16 or 18 bytes starting EKVT: not a token, an inline payload.
    t5 = {"d/snap/" + snap_name(3, 200): snap_file(raft_snapshot(b"EKVT\x01" + b"\0" * 13, 3, 200))}
    case("snap_18_bytes_ekvt", "read", "d/snap/" + snap_name(3, 200), t5)
    # The token's index names the file, whatever the metadata says.
    payload = header_v1(5)
    t6 = {
        "d/snap/" + snap_name(3, 200): snap_file(raft_snapshot(token(7, crc32c(payload)), 3, 200)),
        "d/fsm-snap/0000000000000007.fsm": fsm_file(payload),
    }
    case("snap_token_index_differs", "read", "d/snap/" + snap_name(3, 200), t6)

    # Bad .snap bytes.
    inner = raft_snapshot(header_v2(1, 5), 2, 100)
    bad = {
        "empty_file": b"",
        "crc_zero": snap_file(inner, crc=0),
        "crc_mismatch": snap_file(inner, crc=12345),
        "crc_wrong_wire_type": tag(1, 2) + varint(1) + b"\x05" + f_bytes(2, inner),
        "truncated": snap_file(inner)[:-3],
        "truncated_varint": b"\x08\xff\xff",
        "field_zero": b"\x00\x01" + snap_file(inner),
        "wire_type_6": snap_file(inner) + b"\x0e",
        "wire_type_7": snap_file(inner) + b"\x0f",
        "end_group": snap_file(inner) + b"\x0c",
        "varint_11_bytes": b"\x08" + b"\xff" * 10 + b"\x01" + f_bytes(2, inner),
        "varint_10th_byte_2": b"\x08" + b"\xff" * 9 + b"\x02" + f_bytes(2, inner),
        "field_number_2_29": tag((1 << 29), 0) + b"\x00" + snap_file(inner),
        "inner_undecodable": snap_file(b"\x0a\x05abc"),
        "inner_bad_meta": snap_file(f_bytes(1, b"xx") + f_bytes(2, b"\x10")),
        "inner_bad_conf_state": snap_file(f_bytes(2, f_bytes(1, f_bytes(1, b"\xff")) + f_varint(2, 9))),
    }
    for name, data in bad.items():
        case(f"snap_{name}", "read", "d/snap/" + snap_name(2, 100), {"d/snap/" + snap_name(2, 100): data})

    # Wire details Go accepts.
    accepted = {
        # an unknown varint, fixed32, fixed64 and a group before the fields
        "unknown_fields": f_varint(9, 1)
        + tag(10, 5)
        + b"abcd"
        + tag(11, 1)
        + b"abcdefgh"
        + tag(12, 3)
        + f_varint(1, 5)
        + tag(12, 4)
        + snap_file(inner),
        # a second data field wins (last one kept); crc written after data
        "data_twice": f_bytes(2, b"old") + f_bytes(2, inner) + f_varint(1, crc32c(inner)),
        # a crc seen twice: the last one is kept
        "crc_twice": f_varint(1, 7) + snap_file(inner),
        # a crc varint over 32 bits: uint32(v)
        "crc_wide": f_varint(1, crc32c(inner) | (5 << 32)) + f_bytes(2, inner),
        # denormalised varints: 0x88 0x00 is tag 1/varint
        "denormalised_tag": b"\x88\x00" + varint(crc32c(inner)) + f_bytes(2, inner),
        # a 10-byte varint whose last byte is 1
        "varint_10_bytes": b"\x48" + b"\xff" * 9 + b"\x01" + snap_file(inner),
        # a field number just below 2^29
        "field_number_max": tag((1 << 29) - 1, 0) + b"\x00" + snap_file(inner),
        # a group holding field numbers past 2^29 (allowed inside groups)
        "group_big_numbers": tag(13, 3) + tag(1 << 30, 0) + b"\x00" + tag(13, 4) + snap_file(inner),
    }
    for name, data in accepted.items():
        case(f"snap_wire_{name}", "read", "d/snap/" + snap_name(2, 100), {"d/snap/" + snap_name(2, 100): data})
    deep_ok = tag(13, 3) * 10001 + tag(13, 4) * 10001
    deep_bad = tag(13, 3) * 10002 + tag(13, 4) * 10002
    for name, group in [("groups_10001_deep", deep_ok), ("groups_10002_deep", deep_bad)]:
        data = group + snap_file(inner)
        case(f"snap_wire_{name}", "read", "d/snap/" + snap_name(2, 100), {"d/snap/" + snap_name(2, 100): data})
    # metadata in two messages, merged; conf state packed; auto_leave; unknowns
    meta1 = f_bytes(1, f_bytes(1, varint(1) + varint(2)) + f_varint(5, 1)) + f_varint(2, 99)
    meta2 = f_varint(3, 4) + f_varint(7, 1)
    inner2 = f_bytes(1, header_v2(8, 70)) + f_bytes(2, meta1) + f_bytes(2, meta2) + f_bytes(1, header_v2(8, 71))
    case("snap_wire_metadata_merged", "read", "d/snap/x.snap", {"d/snap/x.snap": snap_file(inner2)})
    # a metadata index of the wrong wire type is unknown: index stays 0
    inner3 = f_bytes(1, header_v1(1)) + f_bytes(2, tag(2, 5) + b"abcd" + f_varint(3, 6))
    case("snap_wire_index_wrong_type", "read", "d/snap/x.snap", {"d/snap/x.snap": snap_file(inner3)})

    # A .snap given outside snap/: fsm-snap/ is looked up beside its parent.
    snap, fsm = token_snapshot(1, 9, header_v2(1, 9))
    case(
        "snap_token_beside",
        "read",
        "a/b/x.snap",
        {"a/b/x.snap": snap, "a/fsm-snap/0000000000000009.fsm": fsm_file(header_v2(1, 9))},
    )
    case("directory_given", "read", "d", {"d/x": b""})

    # The newest snapshot of a data directory.
    s1, f1 = token_snapshot(2, 100, header_v2(1, 50))
    s2, f2 = token_snapshot(2, 200, header_v2(1, 150))
    s3, f3 = token_snapshot(3, 300, header_v2(1, 250))
    base = {snap_name(2, 100): s1, snap_name(2, 200): s2, snap_name(3, 300): s3}
    fsms = f1 | f2 | f3
    case("dir_no_wal", "newest", "d", {f"d/snap/{n}": b for n, b in base.items()})
    case("dir_wal_without_wal_files", "newest", "d", {"d/wal/notes.txt": b"x", "d/snap/" + snap_name(2, 100): s1})
    case("dir_wal_bad_names", "newest", "d", {"d/wal/x.wal": b"", "d/snap/" + snap_name(2, 100): s1})
    case(
        "dir_all_vouched", "newest", "d", prefixed("d", data_dir_files(base, [(2, 100), (2, 200), (3, 300)], 300, fsms))
    )
    case(
        "dir_newest_not_committed",
        "newest",
        "d",
        prefixed("d", data_dir_files(base, [(2, 100), (2, 200), (3, 300)], 299, fsms)),
    )
    case("dir_newest_not_in_wal", "newest", "d", prefixed("d", data_dir_files(base, [(2, 100), (2, 200)], 500, fsms)))
    case(
        "dir_term_differs",
        "newest",
        "d",
        prefixed("d", data_dir_files(base, [(2, 100), (2, 200), (2, 300)], 500, fsms)),
    )
    case("dir_none_vouched", "newest", "d", prefixed("d", data_dir_files(base, [(9, 9)], 500, fsms)))
    broken = dict(base)
    broken[snap_name(3, 300)] = s3[:-1]
    case(
        "dir_newest_broken",
        "newest",
        "d",
        prefixed("d", data_dir_files(broken, [(2, 100), (2, 200), (3, 300)], 500, fsms)),
    )
    case("dir_no_snaps", "newest", "d", prefixed("d", data_dir_files({}, [(2, 100)], 500)), dirs=("d/snap",))
    case("dir_no_snap_dir", "newest", "d", {f"d/wal/{WAL_NAME}": wal_file([(2, 100)], 500)})
    # Names: only *.snap; byte order decides, not the numbers in them.
    named = {
        snap_name(2, 100): s1,
        snap_name(3, 300) + ".tmp": s3,
        snap_name(3, 300) + ".broken": s3,
        "db.tmp.snap": s3,
        "db": b"bolt",
        "zzz.snap": s2,
    }
    case("dir_names", "newest", "d", prefixed("d", data_dir_files(named, [(2, 100), (2, 200), (3, 300)], 500, fsms)))
    # Upper-case hex sorts before lower-case: (2, 199) is chosen over (2, 200).
    s199, f199 = token_snapshot(2, 199, header_v2(1, 149))
    upper = {snap_name(2, 199): s199, snap_name(2, 200).upper().replace(".SNAP", ".snap"): s2}
    upper_dir = data_dir_files(upper, [(2, 199), (2, 200)], 500, fsms | f199)
    case("dir_upper_case_hex_sorts_first", "newest", "d", prefixed("d", upper_dir))
    case(
        "dir_snap_directory_skipped",
        "newest",
        "d",
        prefixed("d", data_dir_files({snap_name(2, 100): s1}, [(2, 100), (3, 300)], 500, fsms)),
        dirs=("d/snap/" + snap_name(3, 300),),
    )
    # The chosen snapshot's payload problems are Go's refusals.
    missing = {k: v for k, v in fsms.items() if not k.startswith("000000000000012c")}
    case("dir_chosen_fsm_missing", "newest", "d", prefixed("d", data_dir_files(base, [(3, 300)], 500, missing)))
    empty = {snap_name(4, 400): snap_file(raft_snapshot(b"", 4, 400))} | base
    case("dir_chosen_empty_data", "newest", "d", prefixed("d", data_dir_files(empty, [(3, 300), (4, 400)], 500, fsms)))

    # WAL details.
    def wal_case(name: str, wal_files: dict[str, bytes]) -> None:
        files = {f"d/wal/{n}": b for n, b in wal_files.items()}
        files |= {"d/snap/" + snap_name(2, 100): s1, "d/snap/" + snap_name(2, 200): s2}
        files |= {f"d/fsm-snap/{n}": b for n, b in fsms.items()}
        case(f"wal_{name}", "newest", "d", files)

    second_name = "0000000000000001-0000000000000096.wal"
    good = wal_file([(2, 100), (2, 200)], 500)
    first = Wal().record(CRC_TYPE, b"").snapshot(2, 100).snapshot(2, 200).state(150)
    wal_case(
        "two_files", {WAL_NAME: first.bytes(), second_name: Wal(crc=first.crc).record(CRC_TYPE, b"").state(500).bytes()}
    )
    wal_case(
        "later_state_lowers_commit", {WAL_NAME: Wal().snapshot(2, 100).snapshot(2, 200).state(500).state(100).bytes()}
    )
    w = Wal().snapshot(2, 100).snapshot(2, 200).state(500)
    wal_case(
        "later_file_lowers_commit",
        {WAL_NAME: w.bytes(), second_name: Wal(crc=w.crc).record(CRC_TYPE, b"").state(100).bytes()},
    )
    wal_case(
        "chain_broken_across_files", {WAL_NAME: w.bytes(), second_name: Wal().record(CRC_TYPE, b"").state(100).bytes()}
    )
    wal_case(
        "chain_reseeded_wrongly",
        {WAL_NAME: w.bytes(), second_name: Wal(crc=5).record(CRC_TYPE, b"").state(100).bytes()},
    )
    wal_case("preallocated_zeros", {WAL_NAME: good + b"\0" * 4096})
    w = Wal().snapshot(2, 100).state(150)
    cut = w.bytes() + Wal(crc=w.crc).snapshot(2, 200).state(500).bytes()[:-5]
    wal_case("torn_tail", {WAL_NAME: cut})
    w = Wal().snapshot(2, 100).state(150)
    tail = wal_frame(wal_record(SNAPSHOT_TYPE, b"\0" * 600, 1))
    wal_case("torn_zero_sector", {WAL_NAME: w.bytes() + tail})
    wal_case("zero_sector_not_last_file", {WAL_NAME: w.bytes() + tail, second_name: Wal().state(500).bytes()})
    bad_crc = w.bytes() + wal_frame(wal_record(SNAPSHOT_TYPE, f_varint(1, 200) + f_varint(2, 2), 0xABCDEF01))
    wal_case("crc_mismatch_not_torn", {WAL_NAME: bad_crc})
    wal_case("crc_mismatch_in_earlier_file", {WAL_NAME: bad_crc, second_name: Wal().state(500).bytes()})
    w = Wal().snapshot(2, 100).state(150)
    w.out += wal_frame(wal_record(CRC_TYPE, b"", 0x1234))
    wal_case("crc_record_mismatch", {WAL_NAME: w.bytes()})
    undecodable = Wal().snapshot(2, 100).state(150).bytes() + wal_frame(b"\x0e\x01\x02")
    wal_case("record_undecodable", {WAL_NAME: undecodable})
    w = Wal().snapshot(2, 100)
    w.crc = crc32c(b"\x08\xff", w.crc)
    w.out += wal_frame(wal_record(STATE_TYPE, b"\x08\xff", w.crc))
    wal_case("state_undecodable", {WAL_NAME: w.bytes()})
    wal_case("frame_past_end", {WAL_NAME: good + struct.pack("<Q", 1 << 40) + b"abc"})
    wal_case("short_frame", {WAL_NAME: good + b"\x01\x02\x03"})
    w = Wal().snapshot(2, 200).state(100)
    later = Wal(crc=w.crc).record(CRC_TYPE, b"").state(500).bytes()
    wal_case(
        "names_sorted",
        {"0000000000000002-0000000000000000.wal": later, "0000000000000001-0000000000000000.wal": w.bytes()},
    )
    odd = ["00000000000000001-0.wal", "1-2.wal.wal", "A-B.wal", "g-1.wal", "1-.wal", "-1.wal", "1-2.wal"]
    odd += [" 1- 2.wal", "1\n-2.wal", "1 -2.wal", "\u00a01-2.wal", "\u30001-2.wal", "\u00851-2.wal", "1-2.WAL"]
    for name in odd:
        wal_case(f"name_{name.encode().hex()}", {name: good})
    return out


def prefixed(prefix: str, files: dict[str, bytes]) -> dict[str, bytes]:
    return {f"{prefix}/{p}": b for p, b in files.items()}


def document() -> str:
    doc = {
        "elastickv_commit": ELASTICKV_COMMIT,
        "generated_by": GENERATED_BY,
        "note": "Re-derived from the Go source (no Go toolchain available): see the script's docstring.",
        "cases": cases(),
    }
    return json.dumps(doc, indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the golden file would change")
    args = parser.parse_args(argv)
    text = document()
    if args.check:
        same = OUT.exists() and OUT.read_text() == text
        print(f"{OUT}: {'up to date' if same else 'would change'}")
        return 0 if same else 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT}: {len(json.loads(text)['cases'])} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
