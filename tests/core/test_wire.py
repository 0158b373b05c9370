"""The wire codec (SPEC §2): pinned bytes, an independent struct-based
encoder as the reference, and fail-closed decoding of arbitrary bytes."""

import contextlib
import pickle
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

import encryption_applier as ea

u16 = st.integers(0, 2**16 - 1)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
wrapped_bytes = st.binary(max_size=80)

registrations = st.builds(ea.Registration, dek_id=u32, full_node_id=u64, local_epoch=u16)
bootstraps = st.builds(
    ea.Bootstrap,
    storage_dek_id=u32,
    wrapped_storage=wrapped_bytes,
    raft_dek_id=u32,
    wrapped_raft=wrapped_bytes,
    batch_registry=st.lists(registrations, max_size=20),
)
rotations = st.builds(
    ea.Rotation,
    dek_id=u32,
    purpose=st.sampled_from([ea.Purpose.STORAGE, ea.Purpose.RAFT]),
    wrapped=wrapped_bytes,
    proposer_registration=registrations,
)


def ref_registration_body(r: ea.Registration) -> bytes:
    return struct.pack(">IQH", r.dek_id, r.full_node_id, r.local_epoch)


def ref_encode(payload: ea.Registration | ea.Bootstrap | ea.Rotation) -> bytes:
    """SPEC §2 layouts, written out with struct: the reference encoder."""
    if isinstance(payload, ea.Registration):
        return b"\x01" + ref_registration_body(payload)
    if isinstance(payload, ea.Bootstrap):
        out = b"\x01" + struct.pack(">II", payload.storage_dek_id, len(payload.wrapped_storage))
        out += payload.wrapped_storage
        out += struct.pack(">II", payload.raft_dek_id, len(payload.wrapped_raft)) + payload.wrapped_raft
        out += struct.pack(">I", len(payload.batch_registry))
        return out + b"".join(ref_registration_body(r) for r in payload.batch_registry)
    out = struct.pack(">BBIBI", 1, payload.sub_tag, payload.dek_id, int(payload.purpose), len(payload.wrapped))
    return out + payload.wrapped + ref_registration_body(payload.proposer_registration)


OPCODES = {ea.Registration: 0x03, ea.Bootstrap: 0x04, ea.Rotation: 0x05}


# ---------------------------------------------------------------- pinned bytes


def test_registration_pinned_example_from_spec() -> None:
    reg = ea.Registration(dek_id=0x01020304, full_node_id=0x05060708090A0B0C, local_epoch=0x0D0E)
    pinned = bytes.fromhex("010102030405060708090a0b0c0d0e")
    assert reg.encode() == pinned
    assert ea.Registration.decode(pinned) == reg
    assert reg.to_entry() == b"\x03" + pinned
    assert reg.node_id16 == 0x0B0C


def test_bootstrap_pinned_example_from_spec() -> None:
    boot = ea.Bootstrap(1, b"", 2, b"", [])
    pinned = bytes.fromhex("010000000100000000000000020000000000000000")
    assert boot.encode() == pinned
    assert ea.Bootstrap.decode(pinned) == boot
    assert boot.to_entry() == b"\x04" + pinned
    assert ea.Bootstrap(1, b"", 2, b"") == boot  # batch_registry defaults to empty


def test_constants_match_spec() -> None:
    assert (ea.OP_REGISTRATION, ea.OP_BOOTSTRAP, ea.OP_ROTATION) == (0x03, 0x04, 0x05)
    assert ea.WIRE_VERSION == 0x01
    assert ea.ROTATE_DEK == 0x01
    assert ea.MAX_BOOTSTRAP_BATCH == 16384
    assert ea.Purpose.STORAGE == 1 and ea.Purpose.RAFT == 2
    assert ea.REGISTRY_PREFIX == b"!encryption|writers|"


# ---------------------------------------------------------------- round trips


@given(st.one_of(registrations, bootstraps, rotations))
def test_encode_matches_reference_and_round_trips(payload: ea.Registration | ea.Bootstrap | ea.Rotation) -> None:
    cls = type(payload)
    encoded = payload.encode()
    assert encoded == ref_encode(payload)
    assert cls.decode(encoded) == payload
    assert cls.decode(bytearray(encoded)) == payload
    assert cls.decode(memoryview(encoded)) == payload
    entry = payload.to_entry()
    assert entry == bytes([OPCODES[cls]]) + encoded
    assert ea.decode_entry(entry) == payload
    assert hash(cls.decode(encoded)) == hash(payload)
    assert pickle.loads(pickle.dumps(payload)) == payload


@given(st.one_of(registrations, bootstraps, rotations))
def test_payloads_are_immutable(payload: object) -> None:
    with pytest.raises(AttributeError):
        payload.dek_id = 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        payload.new_field = 1  # type: ignore[attr-defined]


# ---------------------------------------------------------------- fail closed

DECODERS = [ea.Registration.decode, ea.Bootstrap.decode, ea.Rotation.decode, ea.decode_entry]


@pytest.mark.parametrize("decode", DECODERS, ids=lambda d: d.__qualname__)
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_malformed(decode, data: bytes) -> None:  # type: ignore[no-untyped-def]
    try:
        result = decode(data)
    except ea.MalformedPayloadError as err:
        assert isinstance(err, ea.EncryptionApplyError)
        assert err.payload_kind in {"entry", "registration", "bootstrap", "rotation"}
        assert isinstance(err.reason, str) and err.reason
    else:
        # Whatever decodes must re-encode to exactly the same bytes: there is
        # one encoding per payload, so nothing was skipped or normalised.
        if decode is ea.decode_entry:
            assert result.to_entry() == data
        else:
            assert result.encode() == data


@given(payload=st.one_of(registrations, bootstraps, rotations), data=st.data())
def test_mutated_valid_payloads_never_crash(payload, data) -> None:  # type: ignore[no-untyped-def]
    encoded = bytearray(payload.to_entry())
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip" and encoded:
            i = data.draw(st.integers(0, len(encoded) - 1))
            encoded[i] = data.draw(st.integers(0, 255))
        elif op == "cut" and encoded:
            del encoded[data.draw(st.integers(0, len(encoded) - 1)) :]
        else:
            encoded.insert(data.draw(st.integers(0, len(encoded))), data.draw(st.integers(0, 255)))
    with contextlib.suppress(ea.MalformedPayloadError):
        ea.decode_entry(bytes(encoded)).to_entry()


def sample_bootstrap() -> ea.Bootstrap:
    return ea.Bootstrap(
        7,
        b"\xaa" * 5,
        8,
        b"\xbb" * 3,
        [ea.Registration(7, 0x10001, 1), ea.Registration(8, 0x20002, 2)],
    )


def test_every_truncation_of_a_bootstrap_is_malformed() -> None:
    encoded = sample_bootstrap().encode()
    for cut in range(len(encoded)):
        with pytest.raises(ea.MalformedPayloadError) as info:
            ea.Bootstrap.decode(encoded[:cut])
        assert info.value.reason in {"truncated", "length_overrun"}, cut
        assert info.value.payload_kind == "bootstrap"


def test_trailing_bytes_are_malformed() -> None:
    for payload in [ea.Registration(1, 2, 3), sample_bootstrap(), ea.Rotation(1, 1, b"k", ea.Registration(1, 2, 3))]:
        with pytest.raises(ea.MalformedPayloadError) as info:
            type(payload).decode(payload.encode() + b"\x00")
        assert info.value.reason == "trailing_bytes"
        assert info.value.offset == len(payload.encode())


def test_wrong_version_is_malformed() -> None:
    for payload in [ea.Registration(1, 2, 3), sample_bootstrap(), ea.Rotation(1, 1, b"k", ea.Registration(1, 2, 3))]:
        for version in (0x00, 0x02, 0xFF):
            with pytest.raises(ea.MalformedPayloadError, match="version") as info:
                type(payload).decode(bytes([version]) + payload.encode()[1:])
            assert info.value.reason == "wrong_version"


def batch_header(count: int) -> bytes:
    return bytes.fromhex("0100000001000000000000000200000000") + struct.pack(">I", count)


def test_batch_cap_is_enforced_before_reading_rows() -> None:
    row = struct.pack(">IQH", 1, 5, 1)
    at_cap = batch_header(16384) + row * 16384
    assert len(ea.Bootstrap.decode(at_cap).batch_registry) == 16384
    over = batch_header(16385) + row * 16385
    with pytest.raises(ea.MalformedPayloadError, match="16385") as info:
        ea.Bootstrap.decode(over)
    assert info.value.reason == "batch_too_large"
    # A count claiming 4 billion rows with none present: refused by the cap.
    with pytest.raises(ea.MalformedPayloadError) as info:
        ea.Bootstrap.decode(batch_header(2**32 - 1))
    assert info.value.reason == "batch_too_large"


def test_length_prefix_overrun_is_malformed() -> None:
    with pytest.raises(ea.MalformedPayloadError) as info:
        ea.Bootstrap.decode(bytes.fromhex("0100000001ffffffff") + b"\x00" * 64)
    assert info.value.reason == "length_overrun"
    assert info.value.offset == 5
    rotation = ea.Rotation(1, 2, b"abc", ea.Registration(1, 2, 3)).encode()
    bad = rotation[:7] + struct.pack(">I", 1000) + rotation[11:]
    with pytest.raises(ea.MalformedPayloadError) as info:
        ea.Rotation.decode(bad)
    assert info.value.reason == "length_overrun"


@pytest.mark.parametrize("sub_tag", [0x00, 0x02, 0x03, 0x06, 0x07, 0xFF])
def test_rotation_sub_tags_other_than_the_three_known_are_malformed(sub_tag: int) -> None:
    rotation = ea.Rotation(1, ea.Purpose.STORAGE, b"k", ea.Registration(1, 2, 3), sub_tag=sub_tag)
    assert rotation.encode()[1] == sub_tag  # such bytes can be built on purpose...
    with pytest.raises(ea.MalformedPayloadError) as info:  # ...and never decode
        ea.Rotation.decode(rotation.encode())
    expected = "reserved_sub_tag" if 0x02 <= sub_tag <= 0x03 else "unknown_sub_tag"
    assert info.value.reason == expected
    # The message names the reserved ones and lists the three known.
    message = str(info.value)
    assert "0x01 (rotate-dek), 0x04 (enable-storage-envelope) and 0x05 (enable-raft-envelope)" in message
    name = {0x02: "(rewrap-deks) is reserved for elastickv's Stage 9", 0x03: "(retire-dek) is reserved"}
    assert name.get(sub_tag, f"unknown rotation sub_tag 0x{sub_tag:02x}") in message


@pytest.mark.parametrize("purpose", [0, 3, 0x80, 0xFF])
def test_unknown_purpose_is_malformed(purpose: int) -> None:
    encoded = bytearray(ea.Rotation(1, 1, b"k", ea.Registration(1, 2, 3)).encode())
    encoded[6] = purpose
    with pytest.raises(ea.MalformedPayloadError) as info:
        ea.Rotation.decode(bytes(encoded))
    assert info.value.reason == "unknown_purpose"
    with pytest.raises(ValueError):
        ea.Rotation(1, purpose, b"k", ea.Registration(1, 2, 3))


@pytest.mark.parametrize("opcode", range(256))
def test_entry_opcodes(opcode: int) -> None:
    payload = ea.Registration(1, 2, 3).encode()
    assert ea.is_encryption_opcode(opcode) == (0x03 <= opcode <= 0x07)
    if opcode == 0x03:
        assert ea.decode_entry(bytes([opcode]) + payload) == ea.Registration(1, 2, 3)
        return
    with pytest.raises(ea.MalformedPayloadError) as info:
        ea.decode_entry(bytes([opcode]) + payload)
    if opcode in (0x06, 0x07):
        assert info.value.reason == "reserved_opcode"
    elif opcode not in (0x04, 0x05):
        assert info.value.reason == "not_encryption_opcode"


def test_empty_entry_is_malformed() -> None:
    with pytest.raises(ea.MalformedPayloadError) as info:
        ea.decode_entry(b"")
    assert info.value.reason == "empty_entry"


# ---------------------------------------------------------------- Python surface


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"dek_id": -1}, OverflowError),
        ({"dek_id": 2**32}, OverflowError),
        ({"full_node_id": 2**64}, OverflowError),
        ({"full_node_id": -1}, OverflowError),
        ({"local_epoch": 2**16}, OverflowError),
        ({"local_epoch": 10**400}, OverflowError),
        ({"dek_id": 1.0}, TypeError),
        ({"dek_id": "1"}, TypeError),
        ({"dek_id": None}, TypeError),
        ({"local_epoch": True}, TypeError),
    ],
)
def test_out_of_range_or_wrong_type_never_wraps(kwargs: dict, error: type[Exception]) -> None:  # type: ignore[type-arg]
    args = {"dek_id": 1, "full_node_id": 2, "local_epoch": 3} | kwargs
    with pytest.raises(error):
        ea.Registration(**args)


def test_range_edges_are_accepted() -> None:
    reg = ea.Registration(2**32 - 1, 2**64 - 1, 2**16 - 1)
    assert ea.Registration.decode(reg.encode()) == reg
    assert reg.encode() == b"\x01" + b"\xff" * 14


def test_wrapped_fields_want_bytes_not_str_or_ints() -> None:
    for bad in ["abc", 5, [1, 2]]:
        with pytest.raises(TypeError):
            ea.Bootstrap(1, bad, 2, b"")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            ea.Rotation(1, 1, bad, ea.Registration(1, 2, 3))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"batch_registry\[1\]"):
        ea.Bootstrap(1, b"", 2, b"", [ea.Registration(1, 2, 3), (1, 2, 3)])  # type: ignore[list-item]


def test_reprs_are_readable_and_hide_wrapped_key_bytes() -> None:
    reg = ea.Registration(dek_id=7, full_node_id=0xABCD0001, local_epoch=5)
    assert repr(reg) == "Registration(dek_id=7, full_node_id=0xabcd0001, local_epoch=5)"
    assert eval(repr(reg), {"Registration": ea.Registration}) == reg
    secret = b"\x13\x37" * 30
    boot = ea.Bootstrap(1, secret, 2, secret, [reg])
    rot = ea.Rotation(3, ea.Purpose.RAFT, secret, reg)
    for text in (repr(boot), repr(rot)):
        assert "60 bytes" in text
        assert secret.hex() not in text and "1337" not in text
    assert "Purpose.RAFT" in repr(rot)
    assert rot.purpose is ea.Purpose.RAFT


def test_equality_and_hash_follow_fields() -> None:
    assert ea.Registration(1, 2, 3) == ea.Registration(1, 2, 3)
    assert ea.Registration(1, 2, 3) != ea.Registration(1, 2, 4)
    assert len({ea.Registration(1, 2, 3), ea.Registration(1, 2, 3), ea.Registration(3, 2, 1)}) == 2
    assert ea.Registration(1, 2, 3) != (1, 2, 3)
    assert sample_bootstrap() == sample_bootstrap()
    assert sample_bootstrap().batch_registry == (ea.Registration(7, 0x10001, 1), ea.Registration(8, 0x20002, 2))


def test_pattern_matching_on_payloads() -> None:
    match ea.decode_entry(ea.Registration(9, 0x20001, 4).to_entry()):
        case ea.Registration(dek_id, full_node_id, local_epoch):
            assert (dek_id, full_node_id, local_epoch) == (9, 0x20001, 4)
        case _:
            pytest.fail("no match")
