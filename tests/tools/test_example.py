"""The README's demo (examples/apply_stream.py) runs and shows what it claims."""

import subprocess
import sys
import tempfile
from pathlib import Path

from helpers import REPO

EXAMPLE = REPO / "examples" / "apply_stream.py"


def test_demo_applies_the_stream_and_shows_each_halt() -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.count("-> inserted") == 3
    assert out.count("-> advanced") == 2
    assert out.count("\n    -> unchanged") == 1
    assert "HALT LocalEpochRollbackError" in out
    assert "HALT NodeIDCollisionError" in out
    assert "HALT KEKNotConfiguredError" in out
    assert "3 rows, DEKs [1]:" in out
    assert "bootstrap -> bootstrapped" in out
    assert "replay    -> unchanged" in out
    assert "rotation  -> rotated" in out
    assert "Sidecar(active={'storage': 3, 'raft': 2}, keys=[1, 2, 3]" in out


def test_demo_names_no_directory_it_removes(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("registries: in temporary directories, removed when the demo ends\n")
    assert tempfile.gettempdir() not in proc.stdout
    # Given a directory, it keeps the registries there, and says so.
    keep = tmp_path / "demo"
    proc = subprocess.run([sys.executable, str(EXAMPLE), str(keep)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"registries: in {keep} (kept)\n")
    assert (keep / "registry" / "data.mdb").is_file() and (keep / "keyed" / "registry" / "keys.json").is_file()
