"""Prints the shell commands of one fenced block of a documentation page, the
block right after the marker ``<!-- release-stage: NAME -->``, so that the
test command runs the commands the page gives a user (not a copy of them).

Usage: python scripts/doc_commands.py NAME [PAGE]   (PAGE: docs/index.md)

Refuses (exit 2, one line on stderr) a name with no marker or more than one,
and a marker not followed by a ```sh fence.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

MARKER = re.compile(r"^<!-- release-stage: ([\w-]+) -->\s*$")


def block(text: str, name: str, page: str) -> str:
    lines = text.splitlines()
    found = [i for i, line in enumerate(lines) if (m := MARKER.match(line)) and m.group(1) == name]
    if len(found) != 1:
        raise SystemExit(f"error: {page} has {len(found)} blocks marked release-stage: {name} (needs exactly one)")
    start = found[0] + 1
    if start >= len(lines) or lines[start].strip() != "```sh":
        raise SystemExit(f"error: the release-stage: {name} marker of {page} is not followed by a ```sh block")
    for end in range(start + 1, len(lines)):
        if lines[end].strip() == "```":
            return "\n".join(lines[start + 1 : end]) + "\n"
    raise SystemExit(f"error: the release-stage: {name} block of {page} is never closed")


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    page = argv[1] if len(argv) == 2 else "docs/index.md"
    try:
        sys.stdout.write(block(Path(page).read_text(encoding="utf-8"), argv[0], page))
    except SystemExit as refused:
        print(refused, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
