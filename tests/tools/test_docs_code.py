"""Every fenced ``python`` block of the README and the documentation pages
(``docs/``, ``docs/guide/``, ``docs/api/``) runs.

Each page's blocks run in order, in one namespace, in a fresh temporary
directory (the working directory, and ``tempfile``'s directory), as a reader
pasting them one after another would: a block that needs a KEK file or
entries makes them in an earlier block. A failure names the page and the
line in it (the code is compiled under the page's path, at its own lines).

A block that cannot run carries the marker ``<!-- not-run: REASON -->`` on
the line before its fence. The marked blocks are listed here, in
``NOT_RUN``, and a test checks the list is exactly the marked set, so a new
exclusion is reviewed. ``NOT_RUN_PAGES`` are pages none of whose blocks run.

Shell blocks are not run: those of the guide are synopses of the command
line (``DIR``, ``KEK``, ``[--json]``) or of the test command itself; the
command line has its own tests (``tests/tools/test_cli.py``).
"""

from __future__ import annotations

import linecache
import os
import re
import tempfile
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Pages whose python blocks are not run at all, with why.
NOT_RUN_PAGES = {
    # A verbatim copy of the specification (checked byte for byte by the
    # docs stage), so it cannot carry markers; its one block is the
    # normative sketch of the Python surface, with `Bootstrap(...)`.
    "docs/spec.md": "the specification's surface sketch, a verbatim copy of SPEC.md",
}

# Every block marked <!-- not-run: REASON -->: (page, REASON).
NOT_RUN = {
    ("docs/guide/kek.md", "needs boto3 and an AWS KMS key"),
    ("docs/guide/elastickv.md", "needs a snapshot written by an elastickv node"),
    ("docs/guide/elastickv.md", "needs envelopes and a snapshot written by elastickv nodes"),
}

MARKER = re.compile(r"^\s*<!--\s*not-run:\s*(?P<reason>.+?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository root
    line: int  # the line of the first code line, 1-based
    code: str
    not_run: str | None  # the marker's reason


def pages(root: Path = ROOT) -> list[str]:
    """The README, the guide pages and the API reference's pages, relative to ``root``."""
    found = [root / "README.md"]
    for sub in ("docs", "docs/guide", "docs/api"):
        found += sorted((root / sub).glob("*.md"))
    return [p.relative_to(root).as_posix() for p in found]


def blocks(path: Path, name: str) -> Iterator[Block]:
    """The fenced ``python`` blocks of one Markdown page."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent, info = m["fence"], len(m["indent"]), m["info"].lower()
        start = i + 1
        end = start
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        if info in ("python", "py"):
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = MARKER.match(before)
            code = "\n".join(line[indent:] for line in lines[start:end]) + "\n"
            yield Block(name, start + 1, code, marker["reason"] if marker else None)
        i = end + 1


class BlockFailed(AssertionError):
    pass


def run_page(root: Path, name: str, workdir: Path) -> int:
    """Run the page's blocks in order in ``workdir``; raises BlockFailed
    naming page:line. Returns how many blocks ran."""

    namespace: dict[str, object] = {"__name__": "__docs__"}
    ran = 0
    old_cwd, old_tempdir = Path.cwd(), tempfile.tempdir
    os.chdir(workdir)
    tempfile.tempdir = str(workdir)
    try:
        for block in blocks(root / name, name):
            if block.not_run is not None:
                continue
            # Padded so that the code sits at its own lines of the page.
            source = "\n" * (block.line - 1) + block.code
            filename = str(root / name)
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            try:
                exec(compile(source, filename, "exec"), namespace)
            except BaseException as exc:
                line = block.line
                if isinstance(exc, SyntaxError) and exc.filename == filename and exc.lineno:
                    line = exc.lineno
                for frame in traceback.extract_tb(exc.__traceback__):
                    if frame.filename == filename and frame.lineno:
                        line = frame.lineno
                detail = "".join(traceback.format_exception(exc))
                raise BlockFailed(
                    f"{name}:{line}: the python block at line {block.line} raised {type(exc).__name__}: {exc}\n{detail}"
                ) from None
            ran += 1
    finally:
        os.chdir(old_cwd)
        tempfile.tempdir = old_tempdir
    return ran


@pytest.mark.parametrize("name", [p for p in pages() if p not in NOT_RUN_PAGES])
def test_page_blocks_run(name: str, tmp_path: Path) -> None:
    run_page(ROOT, name, tmp_path)


def test_the_marked_blocks_are_the_listed_ones() -> None:
    marked = {(b.page, b.not_run) for name in pages() for b in blocks(ROOT / name, name) if b.not_run is not None}
    assert marked == NOT_RUN
    assert set(NOT_RUN_PAGES) <= set(pages())


def test_pages_have_python_blocks_that_run() -> None:
    # The walk finds blocks at all (a broken fence pattern would pass every page).
    counts = {name: sum(b.not_run is None for b in blocks(ROOT / name, name)) for name in pages()}
    assert counts["README.md"] >= 1
    assert counts["docs/tour.md"] >= 1
    assert sum(counts.values()) >= 15, counts


def test_the_readme_tour_runs_twice_in_one_directory(tmp_path: Path) -> None:
    run_page(ROOT, "README.md", tmp_path)
    run_page(ROOT, "README.md", tmp_path)
    assert list(tmp_path.iterdir()) == []  # and cleans up after itself


# The runner itself: a broken block fails, naming page:line.


def _plant(tmp_path: Path, text: str) -> tuple[Path, str]:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "page.md").write_text(text, encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    return root, str(work)


def test_a_broken_block_fails_naming_its_line(tmp_path: Path) -> None:
    root, work = _plant(
        tmp_path,
        "# A page\n\n```python\nx = 1\n```\n\nText.\n\n```python\ny = x + 1\nassert y == 3, 'wrong'\n```\n",
    )
    with pytest.raises(BlockFailed, match=r"^page\.md:11: the python block at line 10 raised AssertionError: wrong"):
        run_page(root, "page.md", Path(work))


def test_a_name_from_no_earlier_block_fails(tmp_path: Path) -> None:
    root, work = _plant(tmp_path, "```python\nprint(kek)\n```\n")
    with pytest.raises(BlockFailed, match=r"^page\.md:2: .*NameError"):
        run_page(root, "page.md", Path(work))


def test_a_syntax_error_fails_naming_its_line(tmp_path: Path) -> None:
    root, work = _plant(tmp_path, "text\n\n```python\nok = 1\ndef (:\n```\n")
    with pytest.raises(BlockFailed, match=r"^page\.md:5: .*SyntaxError"):
        run_page(root, "page.md", Path(work))


def test_a_marked_block_is_skipped_and_others_run_in_the_work_directory(tmp_path: Path) -> None:
    root, work = _plant(
        tmp_path,
        "<!-- not-run: planted -->\n```python\nraise SystemExit(1)\n```\n\n"
        "```py\nimport pathlib, tempfile\npathlib.Path('made').write_text('x')\n"
        "assert tempfile.gettempdir() == str(pathlib.Path.cwd())\n```\n\n"
        "```sh\nexit 1\n```\n",
    )
    assert run_page(root, "page.md", Path(work)) == 1
    assert (Path(work) / "made").read_text() == "x"
    assert [(b.line, b.not_run) for b in blocks(root / "page.md", "page.md")] == [(3, "planted"), (7, None)]
