"""The python blocks of docs/guide/testing.md's "Testing a whole cluster"
section, run as they are written, in an empty working directory."""

import os
import re
import tempfile
from pathlib import Path

import pytest

from helpers import REPO


def section_blocks() -> list[str]:
    page = (REPO / "docs" / "guide" / "testing.md").read_text()
    section = page.split("## Testing a whole cluster", 1)[1]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_its_two_examples() -> None:
    blocks = section_blocks()
    assert len(blocks) == 2 and "Cluster(3" in blocks[0] and "class MyCluster(ClusterMachine)" in blocks[1]


def test_the_cluster_walkthrough_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    exec(compile(section_blocks()[0], "testing.md", "exec"), {"__name__": "guide"})
    out = capsys.readouterr().out
    assert "refused: " in out and "envelopes, no nonce reused" in out
    assert int(out.split(" envelopes")[0].split()[-1]) == 5
    assert os.listdir(tmp_path) == []  # the cluster removed its root


def test_the_machine_subclass_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    scope: dict[str, object] = {"__name__": "guide"}
    exec(compile(section_blocks()[1], "testing.md", "exec"), scope)
    case = scope["TestMyCluster"]
    case("runTest").runTest()  # type: ignore[operator]
    assert os.listdir(tmp_path) == []
