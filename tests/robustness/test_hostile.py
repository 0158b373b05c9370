"""Hostile input: fuzzed and mutated entries of every opcode, length
prefixes that claim gigabytes, and wrong Python types everywhere. Only the
documented exceptions, never a crash, never a write on failure.

`HYPOTHESIS_PROFILE=long bash scripts/test.sh -k fuzz` runs the fuzzers
with 100 000 examples each; CI runs the shorter default profile."""

import pickle
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import encryption_applier as ea

from helpers import aesgcm_wrap

OUTCOMES = {"inserted", "advanced", "unchanged", "bootstrapped", "rotated", "skipped"}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A bootstrapped, rotated registry with a KEK, shared by the fuzzers."""
    root = tmp_path_factory.mktemp("fuzz")
    kek = ea.FileKek.generate(root / "kek")
    kek_bytes = (root / "kek").read_bytes()
    applier = ea.Applier(root / "registry", kek=kek)
    boot = ea.Bootstrap(
        1,
        aesgcm_wrap(kek_bytes, b"\x01" * 32),
        2,
        aesgcm_wrap(kek_bytes, b"\x02" * 32),
        [ea.Registration(1, 0xA0001, 3), ea.Registration(2, 0xA0001, 3)],
    )
    rot = ea.Rotation(3, ea.Purpose.STORAGE, aesgcm_wrap(kek_bytes, b"\x03" * 32), ea.Registration(3, 0xA0001, 4))
    applier.apply(boot)
    applier.apply(rot)
    samples = [
        boot.to_entry(),
        rot.to_entry(),
        ea.Registration(1, 0xA0001, 3).to_entry(),
        ea.Registration(3, 0xB0002, 9).to_entry(),
        b"\x06" + ea.Registration(1, 1, 1).encode(),
        b"\x07" + rot.encode(),
    ]
    yield {"applier": applier, "root": root, "samples": samples}
    applier.close()


def state(applier: ea.Applier, root: Path) -> tuple[str, bytes, list[int], int | None]:
    keystore = applier.keystore
    assert keystore is not None
    return (
        applier.registry.digest(),
        (root / "registry" / "keys.json").read_bytes(),
        keystore.ids(),
        applier.applied_index,
    )


def mutate(data: st.DataObject, entry: bytes) -> bytes:
    out = bytearray(entry)
    for _ in range(data.draw(st.integers(1, 6), label="mutations")):
        kind = data.draw(st.sampled_from(["flip", "set", "cut", "insert", "splice-length"]))
        if not out:
            out.append(data.draw(st.integers(0, 255)))
            continue
        at = data.draw(st.integers(0, len(out) - 1))
        if kind == "flip":
            out[at] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set":
            out[at] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del out[at:]
        elif kind == "insert":
            out[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        else:  # overwrite four bytes with a huge or small u32 (length prefixes, counts)
            out[at : at + 4] = struct.pack(
                ">I", data.draw(st.sampled_from([0, 1, 59, 60, 61, 16384, 16385, 2**31, 2**32 - 1]))
            )
    return bytes(out)


def check_apply(applier: ea.Applier, root: Path, entry: bytes, index: int | None = None) -> None:
    before = state(applier, root)
    try:
        outcome = applier.apply(entry, index=index) if index is not None else applier.apply(entry)
    except ea.EncryptionApplyError:
        assert state(applier, root) == before, "a halted apply wrote something"
    else:
        assert outcome in OUTCOMES


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], deadline=None)
@given(data=st.binary(max_size=120))
def test_fuzz_apply_arbitrary_bytes(keyed: dict[str, Any], data: bytes) -> None:
    check_apply(keyed["applier"], keyed["root"], data)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], deadline=None)
@given(data=st.data())
def test_fuzz_apply_mutated_entries_of_every_opcode(keyed: dict[str, Any], data: st.DataObject) -> None:
    sample = data.draw(st.sampled_from(keyed["samples"]), label="sample")
    check_apply(keyed["applier"], keyed["root"], mutate(data, sample))


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], deadline=None)
@given(data=st.data())
def test_fuzz_apply_many_with_mutated_entries(keyed: dict[str, Any], data: st.DataObject) -> None:
    applier, root = keyed["applier"], keyed["root"]
    batch = [mutate(data, data.draw(st.sampled_from(keyed["samples"]))) for _ in range(data.draw(st.integers(1, 6)))]
    before = state(applier, root)
    try:
        outcomes = applier.apply_many(batch)
    except ea.EncryptionApplyError as err:
        assert 0 <= err.position < len(batch) and len(err.outcomes) == err.position
        if err.position == 0:
            assert state(applier, root) == before
    else:
        assert len(outcomes) == len(batch) and set(outcomes) <= OUTCOMES


def test_fuzz_without_a_kek(tmp_path: Path) -> None:
    @settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        sample = data.draw(
            st.sampled_from(
                [
                    ea.Registration(1, 2, 3).to_entry(),
                    ea.Bootstrap(1, b"", 2, b"").to_entry(),
                    ea.Rotation(1, 1, b"", ea.Registration(1, 2, 3)).to_entry(),
                ]
            )
        )
        entry = mutate(data, sample)
        before = applier.registry.digest()
        try:
            assert applier.apply(entry) in OUTCOMES
        except ea.EncryptionApplyError:
            assert applier.registry.digest() == before

    with ea.Applier(tmp_path / "registry") as applier:
        run()


HOSTILE = r"""
import struct, encryption_applier as ea
from pathlib import Path

def hwm():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

head = bytes.fromhex("01 00000001")
payloads = [
    b"\x04" + head + struct.pack(">I", 0xFFFFFFF0) + b"x" * 16,                      # wrapped claims 4 GB
    b"\x04" + head + b"\x00" * 4 + b"\x00\x00\x00\x02" + struct.pack(">I", 0xFFFFFFFF),  # raft wrapped too
    b"\x04" + head + b"\x00" * 8 + b"\x00" * 4 + struct.pack(">I", 16384),            # full batch, no rows
    b"\x04" + head + b"\x00" * 8 + b"\x00" * 4 + struct.pack(">I", 0xFFFFFFFF),       # 4 billion rows
    b"\x05\x01\x01" + b"\x00\x00\x00\x03" + b"\x01" + struct.pack(">I", 0xFFFFFFFF),  # rotation wrapped 4 GB
]
import sys
applier = ea.Applier(sys.argv[1])
for p in payloads:          # warm up: first calls allocate caches
    try: applier.apply(p)
    except ea.MalformedPayloadError: pass
base = hwm()
for _ in range(3000):
    for p in payloads:
        try:
            applier.apply(p)
        except ea.MalformedPayloadError:
            pass
        try:
            ea.decode_entry(p)
        except ea.MalformedPayloadError:
            pass
print(hwm() - base)
"""


def test_length_claims_of_gigabytes_allocate_nothing_large(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", HOSTILE, str(tmp_path / "registry")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    grown_kb = int(proc.stdout.strip())
    assert grown_kb < 8 * 1024, f"peak RSS grew by {grown_kb} kB"


BAD_VALUES = [None, "1", 1.5, -1, 2**64, 2**200, [], b"\x01", True]


def calls(tmp_path: Path) -> list[tuple[str, Any, int]]:
    """(name, callable taking one substituted value, position) for every
    argument of the public surface."""
    reg = ea.Registration(1, 2, 3)
    applier = ea.Applier(tmp_path / "registry")
    applier.apply(reg)
    view = applier.registry
    kek = ea.FileKek.generate(tmp_path / "kek")
    out: list[tuple[str, Any, int]] = []

    def add(name: str, fn: Any, arity: int, good: list[Any]) -> None:
        for position in range(arity):

            def call(value: Any, fn: Any = fn, position: int = position, good: list[Any] = good) -> Any:
                args = list(good)
                args[position] = value
                return fn(*args)

            out.append((name, call, position))

    add("Registration", ea.Registration, 3, [1, 2, 3])
    add("Bootstrap", ea.Bootstrap, 5, [1, b"", 2, b"", []])
    add("Rotation", ea.Rotation, 5, [1, 1, b"", reg, 1])
    add("RegistryRow", ea.RegistryRow, 5, [1, 1, 1, 1, 1])
    add("registry_key", ea.registry_key, 2, [1, 1])
    add("encode_registry_value", ea.encode_registry_value, 3, [1, 1, 1])
    add("decode_registry_key", ea.decode_registry_key, 1, [ea.registry_key(1, 1)])
    add("decode_registry_value", ea.decode_registry_value, 1, [b"\x00" * 12])
    add("decode_entry", ea.decode_entry, 1, [reg.to_entry()])
    add("Registration.decode", ea.Registration.decode, 1, [reg.encode()])
    add("is_encryption_opcode", ea.is_encryption_opcode, 1, [3])
    add("Applier.apply", applier.apply, 1, [reg])
    add("Applier.apply_registration", applier.apply_registration, 1, [reg])
    add("Applier.apply_bootstrap", applier.apply_bootstrap, 1, [ea.Bootstrap(1, b"", 2, b"")])
    add("Applier.apply_rotation", applier.apply_rotation, 1, [ea.Rotation(1, 1, b"", ea.Registration(1, 2, 3))])
    add("Applier.apply(index=)", lambda i: applier.apply(reg, index=i), 1, [10])
    add("Applier.apply_many", applier.apply_many, 2, [[reg], None])
    add("Applier.apply_many([x])", lambda x: applier.apply_many([x]), 1, [reg])
    add("Registry.get", view.get, 2, [1, 2])
    add("Registry.rows", view.rows, 1, [None])
    add("Registry.columns", view.columns, 1, [None])
    add("Registry.diff", view.diff, 1, [view])
    add("Registry.head", view.head, 2, [1, None])
    add("FileKek.wrap", kek.wrap, 1, [b"\x00" * 32])
    add("FileKek.unwrap", kek.unwrap, 1, [kek.wrap(b"\x00" * 32)])
    add("FileKek", ea.FileKek, 1, [tmp_path / "kek"])
    add("read_sidecar", ea.read_sidecar, 1, [tmp_path / "none.json"])
    add("Registry", ea.Registry, 1, [tmp_path / "registry"])
    add("Applier(kek=)", lambda k: ea.Applier(tmp_path / "other", kek=k), 1, [None])
    add("Applier(sync=)", lambda v: ea.Applier(tmp_path / "other2", sync=v), 1, [True])
    add("Applier(map_size=)", lambda v: ea.Applier(tmp_path / "other3", map_size=v), 1, [None])
    return out


def test_wrong_types_and_ranges_raise_python_errors_never_crash(tmp_path: Path) -> None:
    allowed = (TypeError, ValueError, OverflowError, KeyError, ea.EncryptionError, OSError)
    failures = []
    for name, call, position in calls(tmp_path):
        for value in BAD_VALUES:
            try:
                call(value)
            except allowed:
                continue
            except BaseException as err:  # noqa: BLE001 - collected and reported
                failures.append(f"{name} arg {position} = {value!r}: {type(err).__name__}: {err}")
    assert not failures, "\n".join(failures)


def test_integers_never_wrap(tmp_path: Path) -> None:
    with ea.Applier(tmp_path / "registry") as applier:
        for bad in (-1, 2**32, 2**64, 2**100):
            with pytest.raises(OverflowError):
                applier.apply_registration(ea.Registration(bad, 1, 1))
            with pytest.raises(OverflowError):
                applier.registry.get(bad, 1)
        with pytest.raises(OverflowError):
            applier.apply(ea.Registration(1, 1, 1), index=2**64)
        assert len(applier.registry) == 0


def test_nothing_with_key_material_pickles(tmp_path: Path) -> None:
    kek = ea.FileKek.generate(tmp_path / "kek")
    with ea.Applier(tmp_path / "registry", kek=kek) as applier:
        applier.apply(ea.Bootstrap(1, kek.wrap(b"\x01" * 32), 2, kek.wrap(b"\x02" * 32)))
        for obj in (kek, applier, applier.keystore, applier.registry):
            with pytest.raises(TypeError):
                pickle.dumps(obj)
        sidecar = applier.sidecar
        try:
            blob = pickle.dumps(sidecar)
        except TypeError:
            blob = b""
        assert b"\x01" * 32 not in blob and b"\x02" * 32 not in blob
