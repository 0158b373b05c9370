"""Helpers shared by the test modules, imported by name (`from helpers
import run_python, WrapOracle`): child interpreters, the independent oracles
(py-lmdb for raw rows, pyca AES-GCM for wraps, the fingerprint), a
cluster's DEKs, crashes at a fault point, and keys.json edits. The
fixtures are in conftest.py."""

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import encryption_applier as ea

#: The repository's root (tests/ sits under it).
REPO = Path(__file__).resolve().parent.parent


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh interpreter (a separate process, so it has its
    own LMDB environment and locks) and fails the test if it fails."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def run_user_tests(project: Path, source: str, passed: int) -> str:
    """Runs `source` as a user's test file in a project of its own, outside
    this repository (no conftest of ours), and checks all `passed` pass."""
    (project / "test_user.py").write_text(textwrap.dedent(source))
    # Its own ini file, so that pytest does not take this repository's
    # (the project sits under the suite's base temporary directory, inside
    # the repository), and its own base temporary directory.
    (project / "pytest.ini").write_text("[pytest]\n")
    command = ["-q", "-s", "-p", "no:cacheprovider", f"--basetemp={project / 'basetemp'}", "test_user.py"]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *command],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{passed} passed" in proc.stdout
    return proc.stdout


def interactive(code: str, *args: str) -> subprocess.Popen[str]:
    """Starts `code` in a fresh interpreter with line-buffered text pipes on
    stdin and stdout, for tests that drive another process step by step."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def plant_raw(directory: Path, key: bytes, value: bytes) -> None:
    """Writes one raw key/value into the registry's LMDB environment with an
    independent LMDB client (py-lmdb), bypassing every rule of the applier."""
    run_python(
        """
        import sys, lmdb
        env = lmdb.open(sys.argv[1], map_size=1 << 30, subdir=True)
        with env.begin(write=True) as txn:
            txn.put(bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3]))
        env.close()
        """,
        str(directory),
        key.hex(),
        value.hex(),
    )


def dump_raw(directory: Path) -> list[tuple[bytes, bytes]]:
    """Every key/value pair in the environment, read by py-lmdb in another
    process: a byte-level picture independent of the code under test."""
    proc = run_python(
        """
        import sys, lmdb
        env = lmdb.open(sys.argv[1], map_size=1 << 30, subdir=True, readonly=True, lock=True)
        with env.begin() as txn:
            for k, v in txn.cursor():
                print(k.hex(), v.hex())
        env.close()
        """,
        str(directory),
    )
    return [tuple(bytes.fromhex(h) for h in line.split()) for line in proc.stdout.splitlines()]  # type: ignore[misc]


def aesgcm_wrap(kek_bytes: bytes, dek: bytes, nonce: bytes | None = None) -> bytes:
    """SPEC §5 wrapping with pyca/cryptography, an independent AES-GCM."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12) if nonce is None else nonce
    return nonce + AESGCM(kek_bytes).encrypt(nonce, dek, None)


def aesgcm_unwrap(kek_bytes: bytes, wrapped: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(kek_bytes).decrypt(wrapped[:12], wrapped[12:], None)


def fingerprint(dek: bytes) -> str:
    """The documented keystore fingerprint, computed independently."""
    import hashlib

    return hashlib.sha256(dek).hexdigest()[:16]


# ------------------------------------------------------------ a cluster

NODE = 0xABCD_0001
OTHER = 0x1234_0002


def deks() -> dict[int, bytes]:
    return {i: bytes([i]) * 32 for i in range(1, 8)}


class WrapOracle:
    """Wraps DEKs with an independent AES-GCM under the test's KEK."""

    def __init__(self, kek_path: Path) -> None:
        self.kek_path = kek_path
        self.kek_bytes = kek_path.read_bytes()
        self.deks = deks()

    def wrapped(self, dek_id: int) -> bytes:
        return aesgcm_wrap(self.kek_bytes, self.deks[dek_id])

    def bootstrap(self, storage: int = 1, raft: int = 2, rows: list[ea.Registration] | None = None) -> ea.Bootstrap:
        rows = [ea.Registration(storage, NODE, 1), ea.Registration(raft, NODE, 1)] if rows is None else rows
        return ea.Bootstrap(storage, self.wrapped(storage), raft, self.wrapped(raft), rows)

    def wrapped_bytes(self, registry: Path, dek_id: int) -> bytes:
        """The wrapped key the sidecar holds for `dek_id` (a wrap is
        randomised, so it is read back rather than recomputed)."""
        sidecar = ea.read_sidecar(registry / "keys.json")
        assert sidecar is not None
        wrapped = sidecar.keys[dek_id].wrapped
        assert aesgcm_unwrap(self.kek_bytes, wrapped) == self.deks[dek_id]
        return wrapped

    def rotation(self, dek_id: int, purpose: ea.Purpose, epoch: int = 2, full: int = NODE) -> ea.Rotation:
        return ea.Rotation(dek_id, purpose, self.wrapped(dek_id), ea.Registration(dek_id, full, epoch))


def crash_applying(directory: Path, kek_path: Path, point: str, entry: bytes, index: int | None = None) -> None:
    """Applies `entry` in a child process that aborts (a real crash, no
    cleanup) at fault `point`, and checks it did die there."""
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, encryption_applier as ea\n"
            "from encryption_applier._native import test_support\n"
            "a = ea.Applier(sys.argv[1], kek=ea.FileKek(sys.argv[2]))\n"
            "test_support.set_fault(a, sys.argv[3], 'abort')\n"
            "index = int(sys.argv[5]) if sys.argv[5] else None\n"
            "a.apply(bytes.fromhex(sys.argv[4]), index=index)\n"
            "print('not reached')\n",
            str(directory),
            str(kek_path),
            point,
            entry.hex(),
            "" if index is None else str(index),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode < 0 and "not reached" not in child.stdout, child


def sidecar_json(registry: Path) -> dict[str, Any]:
    """The registry's keys.json, read with the json module."""
    return json.loads((registry / "keys.json").read_bytes())  # type: ignore[no-any-return]


def write_sidecar_json(registry: Path, doc: dict[str, Any]) -> None:
    (registry / "keys.json").write_text(json.dumps(doc, indent=2))


def edit_sidecar(registry: Path, **changes: object) -> None:
    """Sets top-level fields of keys.json; `epoch_<id>=n` sets a key's local_epoch."""
    doc = sidecar_json(registry)
    for name, value in changes.items():
        if name.startswith("epoch_"):
            doc["keys"][name.removeprefix("epoch_")]["local_epoch"] = value
        else:
            doc[name] = value
    write_sidecar_json(registry, doc)


def assert_waits_without_the_gil(handle: Any, call: Callable[[], object], what: str, hold: float = 1.0) -> None:
    """`call` on another thread while `handle`'s lock is held for `hold`
    seconds (`test_support.hold_lock`): it must wait for the lock, and this
    thread must keep running Python meanwhile (it could not if the waiter
    held the GIL)."""
    import threading
    import time

    from encryption_applier._native import test_support

    holder = threading.Thread(target=test_support.hold_lock, args=(handle, hold))
    holder.start()
    time.sleep(0.1)  # the holder has the lock (it takes it at once)
    span: list[float] = []

    def waiter() -> None:
        span.append(time.monotonic())
        call()
        span.append(time.monotonic())

    thread = threading.Thread(target=waiter)
    thread.start()
    ticks = []
    while thread.is_alive():
        ticks.append(time.monotonic())
        time.sleep(0.01)
    thread.join()
    holder.join()
    start, end = span
    assert end - start > 0.3 * hold, f"{what}: the call did not wait for the lock"
    during = [t for t in ticks if start + 0.05 < t < end - 0.3 * hold]
    assert len(during) >= 5, f"{what}: the interpreter stalled while it waited ({len(during)} ticks)"
