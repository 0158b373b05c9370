"""scripts/doc_commands.py: the release stage runs the install page's
marked command blocks, so they must be there, and the script must refuse
a missing or ambiguous marker instead of running nothing."""

import subprocess
import sys
from pathlib import Path

from helpers import REPO

SCRIPT = REPO / "scripts" / "doc_commands.py"


def commands(name: str, page: Path | None = None) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, str(SCRIPT), name] + ([str(page)] if page else [])
    return subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=60)


def test_the_install_page_gives_the_manylinux2014_build_and_both_extras() -> None:
    build = commands("build")
    assert build.returncode == 0, build.stderr
    assert "maturin build --release --zig --compatibility manylinux2014 --out dist" in build.stdout
    for extra in ("notebook", "testing"):
        install = commands(f"install-{extra}")
        assert install.returncode == 0, install.stderr
        assert f'pip install "$wheel[{extra}]"' in install.stdout
        assert "ls -t dist/" in install.stdout and "manylinux2014_" in install.stdout
        assert "```" not in install.stdout


def test_a_missing_or_repeated_marker_is_refused(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- release-stage: a -->\n```sh\necho 1\n```\n<!-- release-stage: a -->\n```sh\necho 2\n```\n")
    twice = commands("a", page)
    assert twice.returncode == 2 and "has 2 blocks marked release-stage: a" in twice.stderr and not twice.stdout
    missing = commands("b", page)
    assert missing.returncode == 2 and "has 0 blocks" in missing.stderr
    page.write_text("<!-- release-stage: c -->\ntext\n```sh\necho 3\n```\n")
    assert "is not followed by a ```sh block" in commands("c", page).stderr
    page.write_text("<!-- release-stage: d -->\n```sh\necho 4\n")
    assert "is never closed" in commands("d", page).stderr
