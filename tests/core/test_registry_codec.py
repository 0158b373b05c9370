"""The registry key/value codec (SPEC §3), against pinned bytes and struct."""

import pickle
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

import encryption_applier as ea

u16 = st.integers(0, 2**16 - 1)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)


def test_key_pinned_bytes() -> None:
    key = ea.registry_key(0x01020304, 0x0506)
    assert key == b"!encryption|writers|\x01\x02\x03\x04|\x05\x06"
    assert len(key) == 27
    assert ea.decode_registry_key(key) == (0x01020304, 0x0506)


def test_value_pinned_bytes() -> None:
    value = ea.encode_registry_value(0x0102030405060708, 0x090A, 0x0B0C)
    assert value == bytes(range(1, 13))
    assert ea.decode_registry_value(value) == (0x0102030405060708, 0x090A, 0x0B0C)


@given(u32, u16)
def test_key_round_trip_and_layout(dek_id: int, node16: int) -> None:
    key = ea.registry_key(dek_id, node16)
    assert key == b"!encryption|writers|" + struct.pack(">I", dek_id) + b"|" + struct.pack(">H", node16)
    assert ea.decode_registry_key(key) == (dek_id, node16)


@given(u32, u16, u32, u16)
def test_key_order_is_dek_then_node(d1: int, n1: int, d2: int, n2: int) -> None:
    assert (ea.registry_key(d1, n1) < ea.registry_key(d2, n2)) == ((d1, n1) < (d2, n2))


@given(u64, u16, u16)
def test_value_round_trip(full: int, first: int, last: int) -> None:
    value = ea.encode_registry_value(full, first, last)
    assert value == struct.pack(">QHH", full, first, last)
    assert ea.decode_registry_value(value) == (full, first, last)


@pytest.mark.parametrize("length", [0, 1, 11, 13, 24])
def test_value_of_wrong_length_is_corruption(length: int) -> None:
    with pytest.raises(ea.RegistryCorruptionError) as info:
        ea.decode_registry_value(b"\x00" * length)
    assert info.value.problem == "value_length"
    assert info.value.value == b"\x00" * length


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (b"", "key_length"),
        (ea.registry_key(1, 2)[:-1], "key_length"),
        (ea.registry_key(1, 2) + b"\x00", "key_length"),
        (b"!encryption|writers|\x00\x00\x00\x01/\x00\x02", "key_layout"),
        (b"?encryption|writers|\x00\x00\x00\x01|\x00\x02", "key_layout"),
    ],
)
def test_malformed_keys_are_corruption(key: bytes, problem: str) -> None:
    with pytest.raises(ea.RegistryCorruptionError) as info:
        ea.decode_registry_key(key)
    assert info.value.problem == problem
    assert info.value.key == key


def test_registry_row_fields_bytes_and_order() -> None:
    row = ea.RegistryRow(7, 0x0001, 0xABCD0001, 2, 5)
    assert (row.dek_id, row.node_id16, row.full_node_id) == (7, 1, 0xABCD0001)
    assert (row.first_seen_local_epoch, row.last_seen_local_epoch) == (2, 5)
    assert row.key == ea.registry_key(7, 1)
    assert row.value == ea.encode_registry_value(0xABCD0001, 2, 5)
    assert row == ea.RegistryRow(7, 1, 0xABCD0001, 2, 5)
    assert hash(row) == hash(ea.RegistryRow(7, 1, 0xABCD0001, 2, 5))
    assert pickle.loads(pickle.dumps(row)) == row
    assert sorted([ea.RegistryRow(2, 0, 0, 0, 0), ea.RegistryRow(1, 0xFFFF, 0xFFFF, 0, 0)])[0].dek_id == 1
    assert "full_node_id=0xabcd0001" in repr(row)
    with pytest.raises(AttributeError):
        row.dek_id = 3  # type: ignore[misc]


def test_registry_row_refuses_rows_the_registry_cannot_hold() -> None:
    with pytest.raises(ValueError, match="node_id16"):
        ea.RegistryRow(7, 0x0002, 0xABCD0001, 1, 1)
    with pytest.raises(ValueError, match="first_seen"):
        ea.RegistryRow(7, 0x0001, 0xABCD0001, 5, 4)
