"""One replica of a `Cluster`: its applier, opened as a node starts, in this
process (`InProcessReplica`) or in a child process driven over a pipe
(`ChildReplica`, whose child runs `serve` below: ``python -m
encryption_applier.testing._replica``).

Both have the same methods, so the cluster does not know which it drives.
A crash in this process drops the entries group commit staged and did not
commit, and closes the applier without flushing them
(``_native.test_support.crash``): exactly what the death of the process
loses, since a committed transaction survives a kill. In a child process
a crash is a real SIGKILL."""

from __future__ import annotations

import json
import os
import pickle
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from .. import _native
from .._native import test_support
from ..exceptions import EncryptionApplyError
from .agree import keystore_fingerprints


def _start(path: Path, kek: Any, group_commit: int | None, sync: bool) -> tuple[_native.Applier, tuple[int, int]]:
    """What a node does at start, in Go's order: bump and pin the local
    epochs in keys.json (``prepare_epochs``), then open the applier with
    them."""
    epochs = _native.prepare_epochs(path / "keys.json")
    applier = _native.Applier(
        path, kek=kek, local_epoch=epochs[0], raft_local_epoch=epochs[1], group_commit=group_commit, sync=sync
    )
    return applier, epochs


def _start_unbumped(
    path: Path, kek: Any, group_commit: int | None, sync: bool
) -> tuple[_native.Applier, tuple[int, int]]:
    """A start that skips the bump (the bug the nonce audit exists for)."""
    epochs = _native.pinned_epochs(path / "keys.json", bumped=True) if (path / "keys.json").exists() else (0, 0)
    applier = _native.Applier(
        path, kek=kek, local_epoch=epochs[0], raft_local_epoch=epochs[1], group_commit=group_commit, sync=sync
    )
    return applier, epochs


class InProcessReplica:
    """A replica whose applier lives in this process."""

    pid: int | None = None

    def __init__(self, path: Path, kek: Any, group_commit: int | None, sync: bool, bump: bool = True) -> None:
        start = _start if bump else _start_unbumped
        self.applier, self.epochs = start(path, kek, group_commit, sync)

    def apply(self, entry: bytes, index: int) -> str:
        return self.applier.apply(entry, index=index)

    def flush(self) -> None:
        self.applier.flush()

    def durable_index(self) -> int | None:
        return self.applier.durable_index

    def keystore(self) -> dict[int, str] | None:
        return keystore_fingerprints(self.applier.keystore)

    def seal(self, purpose: str, key_id: int, nonce: _native.Nonce, data: bytes, **aad: Any) -> bytes:
        keystore = self.applier.keystore
        if keystore is None:
            raise ValueError("this replica has no KEK")
        if purpose == "storage":
            env = test_support.seal_storage(
                keystore, key_id, nonce, data, aad["user_key"], aad["commit_ts"], aad.get("expire_at", 0)
            )
        else:
            env = test_support.seal_raft(keystore, key_id, nonce, data)
        return env.encode()

    def close(self) -> None:
        self.applier.close()

    def crash(self) -> None:
        test_support.crash(self.applier)


#: How long a child replica may take to answer one request.
REPLY_SECONDS = 120.0


class ChildReplica:
    """A replica whose applier lives in a child process; every call is one
    JSON line each way over the child's stdin and stdout."""

    def __init__(self, path: Path, kek: Any, group_commit: int | None, sync: bool, bump: bool = True) -> None:
        if not isinstance(kek, _native.FileKek):
            raise TypeError(f"mode='process' needs a FileKek (the child loads it from its path), not {kek!r}")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "encryption_applier.testing._replica"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.pid: int | None = self.proc.pid
        try:
            reply = self._call(
                "open", path=str(path), kek=str(kek.path), group_commit=group_commit, sync=sync, bump=bump
            )
        except BaseException:
            self.kill()
            raise
        self.epochs = (reply["epochs"][0], reply["epochs"][1])

    def _call(self, op: str, timeout: float = REPLY_SECONDS, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        # One reply line per request, so nothing waits in the reader's
        # buffer: the pipe itself says whether the reply came. A child that
        # hangs is killed, not waited for forever.
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.kill()
            raise RuntimeError(f"replica process {self.pid} gave no reply to {op!r} in {timeout:g} s (killed)")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"replica process {self.pid} died during {op!r} (exit {self.proc.wait()})")
        reply: dict[str, Any] = json.loads(line)
        if "raise" in reply:
            raise pickle.loads(bytes.fromhex(reply["raise"]))
        return reply

    def apply(self, entry: bytes, index: int) -> str:
        outcome: str = self._call("apply", entry=entry.hex(), index=index)["outcome"]
        return outcome

    def flush(self) -> None:
        self._call("flush")

    def durable_index(self) -> int | None:
        index: int | None = self._call("durable_index")["index"]
        return index

    def keystore(self) -> dict[int, str] | None:
        keys = self._call("keystore")["keys"]
        return None if keys is None else {int(i): fp for i, fp in keys.items()}

    def seal(self, purpose: str, key_id: int, nonce: _native.Nonce, data: bytes, **aad: Any) -> bytes:
        if "user_key" in aad:
            aad["user_key"] = aad["user_key"].hex()
        reply = self._call("seal", purpose=purpose, key_id=key_id, nonce=nonce.to_bytes().hex(), data=data.hex(), **aad)
        return bytes.fromhex(reply["envelope"])

    def close(self) -> None:
        try:
            self._call("close", timeout=30)
            self.proc.wait(timeout=30)
        finally:
            self.kill()

    def crash(self) -> None:
        """SIGKILL, and reap the child."""
        self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def serve() -> None:
    """The child's loop: one request per stdin line, one reply per stdout
    line. Exceptions travel pickled (the package's exceptions pickle with
    their fields)."""
    replica: InProcessReplica | None = None
    out = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        try:
            if op == "open":
                replica = InProcessReplica(
                    Path(request["path"]),
                    _native.FileKek(request["kek"]),
                    request["group_commit"],
                    request["sync"],
                    request["bump"],
                )
                reply: dict[str, Any] = {"epochs": list(replica.epochs)}
            else:
                assert replica is not None
                if op == "apply":
                    reply = {"outcome": replica.apply(bytes.fromhex(request["entry"]), request["index"])}
                elif op == "flush":
                    replica.flush()
                    reply = {}
                elif op == "durable_index":
                    reply = {"index": replica.durable_index()}
                elif op == "keystore":
                    keys = replica.keystore()
                    reply = {"keys": None if keys is None else {str(i): fp for i, fp in keys.items()}}
                elif op == "seal":
                    if "user_key" in request:
                        request["user_key"] = bytes.fromhex(request["user_key"])
                    nonce = _native.Nonce.from_bytes(bytes.fromhex(request.pop("nonce")))
                    envelope = replica.seal(
                        request.pop("purpose"),
                        request.pop("key_id"),
                        nonce,
                        bytes.fromhex(request.pop("data")),
                        **request,
                    )
                    reply = {"envelope": envelope.hex()}
                elif op == "close":
                    replica.close()
                    out.write("{}\n")
                    out.flush()
                    return
                else:
                    raise ValueError(f"unknown request {op!r}")
        except Exception as err:  # sent back to the parent, raised there
            try:
                blob = pickle.dumps(err)
            except Exception:
                blob = pickle.dumps(RuntimeError(f"{type(err).__name__}: {err}"))
            reply = {"raise": blob.hex(), "halt": isinstance(err, EncryptionApplyError)}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    serve()
