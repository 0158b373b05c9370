"""A KEK written in Python (Stage 9 readiness): the `Kek` interface drives
bootstrap, rotation, both envelope cutovers and the start-up guards; each
distinct wrapped key is unwrapped once per applier; a KEK that fails, or
answers wrongly, halts with nothing written and the key id named; an
interrupt goes through as it was raised."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

import encryption_applier as ea
from encryption_applier._native import test_support

from helpers import NODE, deks, dump_raw, fingerprint

MAGIC = b"KMS1"


class KmsKek:
    """A KMS-shaped KEK in pure Python: AES-256-GCM (pyca/cryptography) with
    the KMS key's name as associated data, as a KMS binds its encryption
    context, and a layout of its own (``KMS1 ‖ nonce ‖ ciphertext ‖ tag``,
    64 bytes, not the file KEK's 60). Counts its calls; `fail` makes the
    next unwraps raise it, `answer` replaces what they return."""

    def __init__(self, key: bytes | None = None, name: str = "test-key") -> None:
        self.name = name
        self.identity = f"kms:{name}"
        self._aead = AESGCM(key or os.urandom(32))
        self.unwraps = 0
        self.wraps = 0
        self.fail: BaseException | None = None
        self.answer: object = None

    def wrap(self, dek: bytes) -> bytes:
        self.wraps += 1
        nonce = os.urandom(12)
        return MAGIC + nonce + self._aead.encrypt(nonce, dek, self.name.encode())

    def unwrap(self, wrapped: bytes) -> bytes:
        self.unwraps += 1
        if self.fail is not None:
            raise self.fail
        if self.answer is not None:
            return self.answer  # type: ignore[return-value]
        if not wrapped.startswith(MAGIC):
            raise ValueError("not a KMS1 blob")
        return self._aead.decrypt(wrapped[4:16], wrapped[16:], self.name.encode())


DEKS = deks()


def bootstrap(kek: KmsKek, storage: int = 1, raft: int = 2) -> ea.Bootstrap:
    rows = [ea.Registration(storage, NODE, 1), ea.Registration(raft, NODE, 1)]
    return ea.Bootstrap(storage, kek.wrap(DEKS[storage]), raft, kek.wrap(DEKS[raft]), rows)


def rotation(kek: KmsKek, dek_id: int, purpose: ea.Purpose = ea.Purpose.STORAGE, epoch: int = 2) -> ea.Rotation:
    return ea.Rotation(dek_id, purpose, kek.wrap(DEKS[dek_id]), ea.Registration(dek_id, NODE, epoch))


def cutover(layer: int, dek_id: int, epoch: int) -> ea.Rotation:
    purpose = ea.Purpose.STORAGE if layer == ea.ENABLE_STORAGE_ENVELOPE else ea.Purpose.RAFT
    return ea.Rotation(dek_id, purpose, b"", ea.Registration(dek_id, NODE, epoch), sub_tag=layer)


def state(registry: Path) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
    """Everything an apply could write: the raw LMDB rows and keys.json."""
    sidecar = registry / "keys.json"
    return dump_raw(registry), sidecar.read_bytes() if sidecar.exists() else None


@pytest.fixture
def kek() -> KmsKek:
    return KmsKek()


@pytest.fixture
def booted(registry_dir: Path, kek: KmsKek) -> Path:
    with ea.Applier(registry_dir, kek=kek) as a:
        a.apply_bootstrap(bootstrap(kek), index=1)
    kek.unwraps = 0
    return registry_dir


# ------------------------------------------------------------ the interface


def test_both_keks_are_keks_and_name_themselves(kek_path: Path, kek: KmsKek) -> None:
    file_kek = ea.FileKek(kek_path)
    assert isinstance(file_kek, ea.Kek) and isinstance(kek, ea.Kek)
    assert file_kek.identity == f"file:{kek_path}"
    assert not isinstance(object(), ea.Kek)


def test_a_python_kek_drives_bootstrap_rotation_and_both_cutovers(registry_dir: Path, kek: KmsKek) -> None:
    told: list[tuple[int, int]] = []
    with ea.Applier(registry_dir, kek=kek, on_raft_cutover=lambda *a: told.append(a)) as a:
        assert a.kek is kek
        assert a.apply_bootstrap(bootstrap(kek), index=1) == "bootstrapped"
        assert kek.unwraps == 2
        assert a.apply_rotation(rotation(kek, 3), index=2) == "rotated"
        assert kek.unwraps == 3
        assert a.apply_rotation(cutover(ea.ENABLE_STORAGE_ENVELOPE, 3, 3), index=3) == "enabled"
        assert a.apply_rotation(cutover(ea.ENABLE_RAFT_ENVELOPE, 2, 2), index=4) == "enabled"
        assert told == [(4, 2)]
        assert a.apply_rotation(rotation(kek, 4, ea.Purpose.RAFT), index=5) == "rotated"
        assert told == [(4, 2), (4, 4)], "a raft rotation past the cutover tells the host"
        assert kek.unwraps == 4, "cutovers unwrap nothing, each rotation its own key"
        assert {i: a.keystore.fingerprint(i) for i in a.keystore} == {  # type: ignore[union-attr]
            i: fingerprint(DEKS[i]) for i in (1, 2, 3, 4)
        }
        sidecar = a.sidecar
        assert sidecar is not None
        assert sidecar.active == {"storage": 3, "raft": 4}
        assert sidecar.storage_envelope_active and sidecar.raft_envelope_cutover_index == 4
        assert all(k.wrapped.startswith(MAGIC) and len(k.wrapped) == 64 for k in sidecar.keys.values())
    # The envelopes the keys open are those of the DEKs the KEK wrapped.
    with ea.Applier(registry_dir, kek=kek) as a:
        assert kek.unwraps == 8, "reopening unwraps the four keys of keys.json once each"
        assert a.apply_rotation(rotation(kek, 5), index=6) == "rotated"
        assert kek.unwraps == 9


def test_each_wrapped_key_is_unwrapped_once_per_applier(registry_dir: Path, kek: KmsKek) -> None:
    with ea.Applier(registry_dir, kek=kek) as a:
        a.apply_bootstrap(boot := bootstrap(kek))
        assert kek.unwraps == 2
        assert a.apply_bootstrap(boot) == "unchanged"
        rotations = [rotation(kek, i) for i in (3, 4, 5)]
        for n, r in enumerate(rotations, start=1):
            a.apply_rotation(r)
            assert kek.unwraps == 2 + n
        assert a.apply_rotation(rotations[-1]) == "unchanged"
        for r in rotations:  # earlier keys made active again, from the cache
            a.apply_rotation(r)
        assert kek.unwraps == 5, "keys keys.json holds are not asked for again"
    for reopened in range(1, 3):
        with ea.Applier(registry_dir, kek=kek):
            assert kek.unwraps == 5 + 5 * reopened


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(3, 5), st.none() | st.integers(0, 3)), max_size=12))
def test_unwraps_are_the_wrapped_keys_the_sidecar_does_not_hold(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[int, int | None]]
) -> None:
    """Model: an entry costs an unwrap exactly when its wrapped bytes are
    not those keys.json holds for some key (the cache keeps those alone).
    A step rotates to a fresh wrap of a key, or replays an earlier one."""
    kek = KmsKek()
    registry = tmp_path_factory.mktemp("prop")
    sent: dict[int, list[ea.Rotation]] = {}
    with ea.Applier(registry, kek=kek) as a:
        a.apply_bootstrap(bootstrap(kek))
        held: dict[int, bytes] = {}  # id -> the wrapped bytes keys.json holds for it
        expected = 2
        for dek_id, earlier in steps:
            before = sent.setdefault(dek_id, [])
            r = before[earlier % len(before)] if earlier is not None and before else rotation(kek, dek_id, epoch=1)
            before.append(r)
            expected += r.wrapped not in held.values()
            a.apply_rotation(r)
            held[dek_id] = r.wrapped
            assert kek.unwraps == expected


def test_a_kek_that_waits_does_not_hold_the_interpreter(booted: Path, kek: KmsKek) -> None:
    """The KEK runs on the applying thread with the GIL taken for the call
    only: other threads run meanwhile, and one that waits for the applier
    waits without the GIL (no deadlock)."""
    slow = KmsKek.__new__(KmsKek)
    slow.__dict__.update(kek.__dict__)
    inner = kek.unwrap

    def unwrap(wrapped: bytes) -> bytes:
        time.sleep(0.3)
        return inner(wrapped)

    slow.unwrap = unwrap  # type: ignore[method-assign]
    with ea.Applier(booted, kek=slow) as a:
        worker = threading.Thread(target=a.apply_rotation, args=(rotation(kek, 3),))
        worker.start()
        time.sleep(0.05)
        seen: list[int | None] = []
        waiter = threading.Thread(target=lambda: seen.append(a.applied_index))
        waiter.start()
        ticks = 0
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:
            ticks += 1
        waiter.join(timeout=30)
        worker.join(timeout=30)
        assert not worker.is_alive() and not waiter.is_alive()
        assert seen == [1] and ticks > 0
        assert 3 in a.keystore  # type: ignore[operator]


# ------------------------------------------------------------ failures


@pytest.mark.parametrize("when", ["bootstrap", "rotation"])
def test_a_kek_that_raises_halts_with_its_exception_as_cause_and_writes_nothing(
    registry_dir: Path, kek: KmsKek, when: str
) -> None:
    with ea.Applier(registry_dir, kek=kek) as a:
        if when == "rotation":
            a.apply_bootstrap(bootstrap(kek), index=1)
        before = state(registry_dir)
        kek.fail = RuntimeError("KMS unavailable")
        entry = bootstrap(kek, 5, 6) if when == "bootstrap" else rotation(kek, 3)
        with pytest.raises(ea.KEKUnwrapError) as err:
            a.apply(entry, index=2)
        assert err.value.reason == "kek_failed"
        assert err.value.dek_id == (5 if when == "bootstrap" else 3) and err.value.purpose == "storage"
        assert f"dek_id={err.value.dek_id}" in str(err.value) and "kms:test-key" in str(err.value)
        assert "KMS unavailable" in str(err.value)
        assert err.value.__cause__ is kek.fail
        assert state(registry_dir) == before
        assert a.applied_index == (1 if when == "rotation" else None)
        # The KEK back, the same entry applies: nothing of the failure stayed.
        kek.fail = None
        assert a.apply(entry, index=2) in ("bootstrapped", "rotated")


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_in_the_kek_goes_through_as_it_is_and_writes_nothing(
    booted: Path, kek: KmsKek, raised: type[BaseException]
) -> None:
    with ea.Applier(booted, kek=kek) as a:
        before = state(booted)
        kek.fail = raised()
        with pytest.raises(raised) as err:
            a.apply_rotation(rotation(kek, 3), index=2)
        assert err.value is kek.fail
        with pytest.raises(raised):
            a.apply_many([rotation(kek, 3)], first_index=2)
        assert not hasattr(kek.fail, "position"), "the host's exception is not decorated"
        assert state(booted) == before and a.applied_index == 1
        kek.fail = None
        assert a.apply_rotation(rotation(kek, 3), index=2) == "rotated"


@pytest.mark.parametrize(
    ("answer", "reason", "words"),
    [
        (b"\x01" * 16, "dek_length", "returned a 16-byte key; a DEK is 32 bytes"),
        (b"\x01" * 33, "dek_length", "returned a 33-byte key"),
        (bytearray(32), None, None),  # bytes-like answers are fine
        ("x" * 32, "kek_failed", "its unwrap() answer must be bytes, bytearray or memoryview, not str"),
    ],
)
def test_an_answer_that_is_not_a_32_byte_key_halts_naming_the_key(
    booted: Path, kek: KmsKek, answer: object, reason: str | None, words: str | None
) -> None:
    with ea.Applier(booted, kek=kek) as a:
        before = state(booted)
        kek.answer = answer
        if reason is None:
            a.apply_rotation(rotation(kek, 3), index=2)
            assert a.keystore.fingerprint(3) == fingerprint(bytes(32))  # type: ignore[union-attr]
            return
        with pytest.raises(ea.KEKUnwrapError) as err:
            a.apply_rotation(rotation(kek, 3), index=2)
        assert err.value.reason == reason and err.value.dek_id == 3
        assert words is not None and words in str(err.value) and "dek_id=3" in str(err.value)
        if reason == "kek_failed":
            assert isinstance(err.value.__cause__, TypeError)
        assert state(booted) == before


def test_reopening_with_a_kek_that_fails_raises_and_writes_nothing(booted: Path, kek: KmsKek) -> None:
    before = state(booted)
    kek.fail = ConnectionError("KMS endpoint unreachable")
    with pytest.raises(ea.KEKUnwrapError) as err:
        ea.Applier(booted, kek=kek)
    assert err.value.dek_id == 1 and isinstance(err.value.__cause__, ConnectionError)
    assert state(booted) == before
    other = KmsKek(name="other-key")
    with pytest.raises(ea.KEKUnwrapError) as err:
        ea.Applier(booted, kek=other)
    assert "kms:other-key" in str(err.value) and "InvalidTag" in str(err.value)
    assert state(booted) == before


def test_a_kek_that_uses_its_applier_halts_instead_of_hanging(booted: Path, kek: KmsKek) -> None:
    holder: list[ea.Applier] = []
    inner = kek.unwrap

    class Meddling(KmsKek):
        def unwrap(self, wrapped: bytes) -> bytes:
            if holder:
                holder[0].sidecar  # noqa: B018 - the applier is busy with the apply that asked
            return inner(wrapped)

    meddling = Meddling.__new__(Meddling)
    meddling.__dict__.update(kek.__dict__)
    with ea.Applier(booted, kek=meddling) as a:
        holder.append(a)
        before = state(booted)
        with pytest.raises(ea.KEKUnwrapError) as err:
            a.apply_rotation(rotation(kek, 3), index=2)
        assert isinstance(err.value.__cause__, RuntimeError) and "busy" in str(err.value.__cause__)
        assert state(booted) == before and not a.closed


@pytest.mark.parametrize(
    ("kek", "error", "words"),
    [
        (3, TypeError, "int has no callable wrap()"),
        (type("NoUnwrap", (), {"wrap": lambda s, d: d, "identity": "x"})(), TypeError, "no callable unwrap()"),
        (type("NoName", (), {"wrap": print, "unwrap": print})(), TypeError, "has no identity"),
        (type("IntName", (), {"wrap": print, "unwrap": print, "identity": 7})(), TypeError, "must be a str"),
        (type("Empty", (), {"wrap": print, "unwrap": print, "identity": ""})(), ValueError, "identity is empty"),
    ],
)
def test_an_object_that_is_not_a_kek_is_refused_up_front(
    registry_dir: Path, kek: object, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        ea.Applier(registry_dir, kek=kek)  # type: ignore[arg-type]
    with pytest.raises(error):
        ea.diagnose_startup(encryption_enabled=True, kek=kek)  # type: ignore[arg-type]
    assert not (registry_dir / "keys.json").exists()


def test_an_identity_that_raises_raises(registry_dir: Path) -> None:
    class Broken:
        def wrap(self, dek: bytes) -> bytes:
            return dek

        def unwrap(self, wrapped: bytes) -> bytes:
            return wrapped

        @property
        def identity(self) -> str:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ea.Applier(registry_dir, kek=Broken())


# ------------------------------------------------------------ start-up


def test_diagnose_startup_with_a_python_kek(booted: Path, kek: KmsKek) -> None:
    sidecar = booted / "keys.json"
    with ea.Registry(booted) as registry:
        assert ea.diagnose_startup(encryption_enabled=True, kek=kek, sidecar_path=sidecar, registry=registry) == []
    assert kek.unwraps == 2, "the guard opens every key (no cache at start-up)"
    # Another KMS key: the refusal Go calls ErrKEKMismatch, the first key named.
    [refusal] = ea.diagnose_startup(encryption_enabled=True, kek=KmsKek(name="other"), sidecar_path=sidecar)
    assert isinstance(refusal, ea.KEKMismatchError) and refusal.sentinel == "ErrKEKMismatch"
    assert refusal.dek_id == 1 and refusal.purpose == "storage" and "kms:other" in refusal.problem
    # A KEK that raises: a refusal too, its exception the cause.
    kek.fail = RuntimeError("KMS unavailable")
    [refusal] = ea.diagnose_startup(encryption_enabled=True, kek=kek, sidecar_path=sidecar)
    assert isinstance(refusal, ea.KEKMismatchError) and refusal.__cause__ is kek.fail
    assert "KMS unavailable" in refusal.problem and "key_id=1" in str(refusal)
    with pytest.raises(ea.KEKMismatchError):
        ea.check_startup(encryption_enabled=True, kek=kek, sidecar_path=sidecar)
    # An answer of the wrong length is a mismatch naming the key.
    kek.fail, kek.answer = None, b"short"
    [refusal] = ea.diagnose_startup(encryption_enabled=True, kek=kek, sidecar_path=sidecar)
    assert refusal.dek_id == 1 and "5-byte key" in refusal.problem
    assert state(booted)[1] == sidecar.read_bytes()


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_in_the_startup_check_goes_through(booted: Path, kek: KmsKek, raised: type[BaseException]) -> None:
    kek.fail = raised()
    for check in (ea.diagnose_startup, ea.check_startup):
        with pytest.raises(raised) as err:
            check(encryption_enabled=True, kek=kek, sidecar_path=booted / "keys.json")
        assert err.value is kek.fail


# ------------------------------------------------------------ wrap


def test_wrap_and_unwrap_through_the_core_interface(kek: KmsKek, kek_path: Path) -> None:
    dek = DEKS[1]
    for k in (kek, ea.FileKek(kek_path)):
        wrapped = test_support.kek_wrap(k, dek)
        assert k.unwrap(wrapped) == dek
        assert test_support.kek_unwrap(k, wrapped, 9) == dek
    kek.fail = OSError("KMS down")
    with pytest.raises(ea.KEKUnwrapError, match="dek_id=9") as err:
        test_support.kek_unwrap(kek, wrapped, 9)
    assert err.value.__cause__ is kek.fail


def test_a_wrap_that_fails_is_a_clear_error(kek: KmsKek) -> None:
    def refuse(dek: bytes) -> bytes:
        raise PermissionError("kms:Encrypt denied")

    kek.wrap = refuse  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="the KEK kms:test-key failed to wrap a DEK: PermissionError") as err:
        test_support.kek_wrap(kek, DEKS[1])
    assert isinstance(err.value.__cause__, PermissionError)
    kek.wrap = lambda dek: None  # type: ignore[assignment,method-assign,return-value]
    with pytest.raises(RuntimeError, match="its wrap\\(\\) answer must be bytes"):
        test_support.kek_wrap(kek, DEKS[1])

    def interrupt(dek: bytes) -> bytes:
        raise KeyboardInterrupt

    kek.wrap = interrupt  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        test_support.kek_wrap(kek, DEKS[1])
