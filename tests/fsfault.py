"""The project's file-system call recorder and fault injector
(`tests/fsfault/fsfault.c`, loaded with LD_PRELOAD into a child process),
and the parsed trace it writes.

`traced(code, *args, under=…, fail=…)` runs `code` in a fresh interpreter
with the shim loaded: every mutating call on a path under `under` is
recorded (with `reads=True`, every positional read too), and
`fail="kind:n:errno"` makes the n-th matching call fail without reaching
the kernel (see the C file for the kinds). The child may
write its own marker lines (`ack 7`, `mark text`) to the log through
`mark()`, so a trace says what the workload had acknowledged at each call.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SOURCE = Path(__file__).parent / "fsfault" / "fsfault.c"

_built: Path | None = None


def shim() -> Path:
    """The shim, compiled once per test run with the C compiler that builds LMDB."""
    global _built
    if _built is not None and _built.exists():
        return _built
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "a C compiler is needed (it builds LMDB too)"
    where = tempfile.mkdtemp(prefix="ea-fsfault-")
    # Removed when the test run ends: a passing run leaves nothing in /tmp.
    atexit.register(shutil.rmtree, where, ignore_errors=True)
    out = Path(where) / "fsfault.so"
    subprocess.run(
        [compiler, "-O1", "-Wall", "-Werror", "-shared", "-fPIC", "-o", str(out), str(SOURCE), "-ldl", "-lpthread"],
        check=True,
    )
    _built = out
    return out


# What a child writes to mark its progress in the trace (same log, same
# order as the calls): `mark("ack", 7)` after apply returned for index 7.
MARKER = """
import os as _os
def mark(*words):
    fd = _os.open(_os.environ["EA_FS_LOG"], _os.O_WRONLY | _os.O_APPEND)
    _os.write(fd, ("0\\t" + "\\t".join(str(w) for w in words) + "\\n").encode())
    _os.close(fd)
"""


@dataclass
class Call:
    """One recorded call, or a marker written by the workload."""

    seq: int
    kind: str
    result: int
    errno: int
    path: str = ""
    fields: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.result < 0

    # write
    @property
    def offset(self) -> int:
        return int(self.fields[0])

    @property
    def dsync(self) -> bool:
        return self.fields[1] == "1"

    @property
    def data(self) -> bytes:
        return bytes.fromhex(self.fields[2])

    # sync
    @property
    def is_dir(self) -> bool:
        return self.fields[0] == "1"

    # rename
    @property
    def target(self) -> str:
        return self.fields[0]

    # open
    @property
    def flags(self) -> int:
        return int(self.fields[0], 16)

    # read (offset as for a write)
    @property
    def count(self) -> int:
        return int(self.fields[1])


def parse(log: Path) -> list[Call]:
    calls = []
    for line in log.read_text().splitlines():
        parts = line.split("\t")
        if parts[0] == "0":  # a marker: 0, word, words...
            calls.append(Call(0, "mark", 0, 0, parts[1], parts[2:]))
            continue
        seq, kind, result, err = int(parts[0]), parts[1], int(parts[2]), int(parts[3])
        calls.append(Call(seq, kind, result, err, parts[4] if len(parts) > 4 else "", parts[5:]))
    return calls


@dataclass
class Traced:
    proc: subprocess.CompletedProcess[str]
    calls: list[Call]

    def of(self, kind: str, containing: str = "") -> list[Call]:
        return [c for c in self.calls if c.kind == kind and containing in c.path]

    def marks(self, word: str) -> list[list[str]]:
        return [c.fields for c in self.calls if c.kind == "mark" and c.path == word]


def traced(
    code: str,
    *args: str,
    under: Path,
    fail: str | None = None,
    match: str | None = None,
    repeat: bool = False,
    reads: bool = False,
    timeout: float = 120,
) -> Traced:
    """Runs `code` (with `mark` defined) in a fresh interpreter under the
    shim; with `reads`, positional reads are recorded (and can fail) too."""
    log = Path(tempfile.mkstemp(prefix="ea-fstrace-", suffix=".log")[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("EA_FS_")}
    env.update({"LD_PRELOAD": str(shim()), "EA_FS_UNDER": str(under), "EA_FS_LOG": str(log)})
    if fail:
        env["EA_FS_FAIL"] = fail
    if match:
        env["EA_FS_FAIL_MATCH"] = match
    if repeat:
        env["EA_FS_FAIL_REPEAT"] = "1"
    if reads:
        env["EA_FS_READS"] = "1"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", MARKER + code, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Traced(proc, parse(log))
    finally:
        log.unlink(missing_ok=True)


def traced_ok(code: str, *args: str, under: Path, **faults: object) -> Traced:
    """`traced`, which must exit 0 (its stderr is the failure message)."""
    run = traced(code, *args, under=under, **faults)  # type: ignore[arg-type]
    assert run.proc.returncode == 0, run.proc.stderr
    return run
