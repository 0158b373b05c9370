"""The stubs type a user's code as it runs: ``mypy --strict`` on a file that
returns from inside ``with ea.Registry(...)`` / ``with ea.Applier(...)``
(their ``__exit__`` is ``-> None``, so the ``with`` never swallows an
exception and the function always returns), and on the code blocks of the
README and the guide pages (see test_docs_code.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_docs_code import NOT_RUN_PAGES, ROOT, blocks, pages

import encryption_applier as ea

WITH_RETURNS = """\
import encryption_applier as ea


def rows(path: str) -> int:
    with ea.Registry(path) as r:
        return len(r)


def outcome(path: str) -> str:
    with ea.Applier(path) as a:
        return a.apply(ea.Registration(1, 0xABCD0001, 1))
"""

# The docs show appliers opened with a KEK, whose `keystore`/`sidecar` are
# set, and a status report with extras; mypy cannot know, and the pages do
# not spell `assert a.keystore is not None` each time.
DOCS_DISABLED = ["union-attr"]


def mypy(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--cache-dir", str(cwd / ".mypy"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_exit_returns_none_at_run_time(tmp_path: Path) -> None:
    applier = ea.Applier(tmp_path / "r")
    assert applier.__exit__(None, None, None) is None
    assert applier.closed
    registry = ea.Registry(tmp_path / "r")
    assert registry.__exit__(None, None, None) is None
    assert registry.closed


def test_exit_does_not_swallow_the_exception(tmp_path: Path) -> None:
    with pytest.raises(KeyError), ea.Applier(tmp_path / "r") as a:
        raise KeyError("from inside")
    assert a.closed


def test_mypy_strict_accepts_a_return_from_inside_with(tmp_path: Path) -> None:
    (tmp_path / "user_code.py").write_text(WITH_RETURNS)
    result = mypy("user_code.py", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_mypy_strict_finds_a_planted_error(tmp_path: Path) -> None:
    # The check above can fail: a with block that does not return is reported.
    (tmp_path / "user_code.py").write_text(WITH_RETURNS.replace("return len(r)", "len(r)"))
    result = mypy("user_code.py", cwd=tmp_path)
    assert result.returncode == 1
    assert "user_code.py:4: error: Missing return statement" in result.stdout


def test_mypy_strict_on_the_docs_code(tmp_path: Path) -> None:
    # Each page's blocks as one module, at the page's own line numbers.
    names = {}
    for name in pages():
        if name in NOT_RUN_PAGES:
            continue
        run = [b for b in blocks(ROOT / name, name) if b.not_run is None]
        if not run:
            continue
        lines: list[str] = []
        for block in run:
            lines += [""] * (block.line - 1 - len(lines))
            lines += block.code.splitlines()
        module = name.replace("/", "__").replace(".", "_").replace("-", "_") + ".py"
        (tmp_path / module).write_text("\n".join(lines) + "\n")
        names[module] = name
    assert len(names) >= 5
    disabled = [f"--disable-error-code={code}" for code in DOCS_DISABLED]
    result = mypy(*disabled, *sorted(names), cwd=tmp_path)
    report = result.stdout
    for module, name in names.items():
        report = report.replace(module, name)
    assert result.returncode == 0, report + result.stderr
