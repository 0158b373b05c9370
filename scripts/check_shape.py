"""The shape rules of the Rust sources, checked by `scripts/test.sh lint`.

Plain Python (3.11+, no dependencies). Run from anywhere:

    python scripts/check_shape.py [--root DIR]

It prints one `path:line: rule: message` per violation and exits 1 when
there is any (0 when there is none, 2 on a usage error). The rules, over
every `.rs` file under `src/` and `examples/` (tests included):

1. **ffi** - the `lmdb_sys` crate is named only in `src/store/ffi.rs`, the
   one file of small safe functions over the raw LMDB calls (heed's
   `mdb/lmdb_ffi.rs`). Any use of the name elsewhere in code (`lmdb_sys::x`,
   `use lmdb_sys`, `lmdb_sys as ffi`) is a violation, except in the
   benchmark floors listed in `FLOORS` (`examples/`), which measure LMDB
   with nothing in between and so call it as raw as the package does.
2. **length** - no file is longer than 700 lines. It is reported at line
   701, the first line past the limit.
3. **message** - an error's message is never edited after it was made:
   no assignment of `format!(...)` to a `.reason`, `.detail` or `.message`
   field (`=` or `+=`), and no `.push_str(...)`/`.insert_str(...)` on one.
   A cause found later is a field of its own, not more text.
4. **cutover** - "cut over or not" is asked through one named accessor,
   not by comparing a cutover index with 0: `cutover_index != 0`,
   `== 0`, `> 0` (and the same with 0 on the left, `0 <`) on any name
   ending in `cutover_index` is a violation, except inside the accessor
   itself. An accessor is allowed when all of these hold:
   - it is in `src/sidecar.rs` or under `src/sidecar/`;
   - it is a `fn` named `raft_cutover_index`, `storage_cutover_index` or
     `is_<anything>cut_over` (e.g. `is_raft_cut_over`);
   - the comment `// shape: cutover accessor` is in the run of doc
     comments, comments and attributes directly above its `fn` line (no
     blank line between).

Comments and string, char and byte literals are blanked before rules 1, 3
and 4 look at the code, so a doc comment that mentions `lmdb_sys::` or a
message that says "cutover_index != 0" is not a violation. Line numbers
are those of the original file.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

MAX_LINES = 700
FFI_FILE = "src/store/ffi.rs"
ACCESSOR_MARK = "// shape: cutover accessor"
ACCESSOR_NAME = re.compile(r"^(?:raft_cutover_index|storage_cutover_index|is_\w*cut_over)$")

FFI_USE = re.compile(r"\blmdb_sys\b")
# Benchmark floors: raw LMDB on purpose (a floor with a slower read than
# the package's would flatter it).
FLOORS = {"examples/batch_floor.rs"}
# `x.reason = format!(`, `x.detail += &format!(`; not `x.detail == format!(`.
MESSAGE_FORMAT = re.compile(r"\.\s*(reason|detail|message)\s*(?:\+=|=(?!=))\s*&?\s*format\s*!")
MESSAGE_EDIT = re.compile(r"\.\s*(reason|detail|message)\s*\.\s*(push_str|insert_str)\s*\(")
CUTOVER_TEST = re.compile(
    r"\b(\w*cutover_index)(?:\(\))?\s*(!=|==|>)\s*0(?![\w.])"  # x.raft_envelope_cutover_index != 0
    r"|(?<![\w.])0\s*(!=|==|<)\s*(?:[\w.]+\.)?(\w*cutover_index)\b"  # 0 != x.cutover_index
)
FN_DEF = re.compile(r"\bfn\s+(\w+)")
RAW_STRING = re.compile(r'b?r(#*)"')


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.message}"


def blank_literals(text: str) -> str:
    """`text` with every comment and string/char/byte literal replaced by
    spaces (newlines kept), so offsets and line numbers stay those of the
    original. Handles nested block comments, escapes, raw strings
    (`r#"..."#`, `br"..."`) and tells char literals from lifetimes."""
    out = list(text)
    n = len(text)
    i = 0

    def blank(start: int, end: int) -> None:
        for k in range(start, min(end, n)):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            end = text.find("\n", i)
            end = n if end < 0 else end
            blank(i, end)
            i = end
        elif c == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif (m := RAW_STRING.match(text, i)) and (i == 0 or not _ident(text[i - 1])):
            close = '"' + m.group(1)
            end = text.find(close, m.end())
            end = n if end < 0 else end + len(close)
            blank(i, end)
            i = end
        elif c == '"' or (c == "b" and nxt == '"' and (i == 0 or not _ident(text[i - 1]))):
            j = i + (2 if c == "b" else 1)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(i, j + 1)
            i = j + 1
        elif c == "'" or (c == "b" and nxt == "'" and (i == 0 or not _ident(text[i - 1]))):
            j = i + (2 if c == "b" else 1)
            if j < n and text[j] == "\\":
                end = text.find("'", j + 2)
                end = n if end < 0 else end + 1
                blank(i, end)
                i = end
            elif j + 1 < n and text[j + 1] == "'":
                blank(i, j + 2)
                i = j + 2
            else:  # a lifetime or a label: 'a, 'static
                i = j
        else:
            i += 1
    return "".join(out)


def _ident(char: str) -> bool:
    return char.isalnum() or char == "_"


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def functions(code: str) -> list[tuple[str, int, int, int]]:
    """(name, offset of `fn`, body start, body end) of every fn with a
    body, from the blanked code; nested fns are listed too."""
    found = []
    for m in FN_DEF.finditer(code):
        j = m.end()
        depth = 0  # parentheses and brackets of the signature
        while j < len(code):
            ch = code[j]
            if ch in "([":
                depth += 1
            elif ch in ")]":
                depth -= 1
            elif ch == ";" and depth == 0:
                j = -1  # a declaration without a body (trait item, extern)
                break
            elif ch == "{" and depth == 0:
                break
            j += 1
        if j < 0 or j >= len(code):
            continue
        start, level, k = j, 0, j
        while k < len(code):
            if code[k] == "{":
                level += 1
            elif code[k] == "}":
                level -= 1
                if level == 0:
                    break
            k += 1
        found.append((m.group(1), m.start(), start, k))
    return found


def enclosing_fn(fns: list[tuple[str, int, int, int]], offset: int) -> tuple[str, int] | None:
    """Name and `fn` offset of the innermost fn whose body holds `offset`."""
    best = None
    for name, at, start, end in fns:
        if start <= offset <= end and (best is None or start > best[2]):
            best = (name, at, start)
    return (best[0], best[1]) if best else None


def marked_accessor(lines: list[str], fn_line: int) -> bool:
    """Whether the comment/attribute lines directly above line `fn_line`
    (1-based) hold the accessor mark."""
    k = fn_line - 2
    while k >= 0:
        stripped = lines[k].strip()
        if stripped == ACCESSOR_MARK:
            return True
        if not (stripped.startswith("//") or stripped.startswith("#[")):
            return False
        k -= 1
    return False


def check_file(path: Path, rel: str) -> list[Problem]:
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    count = len(lines) - (1 if text.endswith("\n") else 0)
    problems = []
    if count > MAX_LINES:
        problems.append(Problem(rel, MAX_LINES + 1, "length", f"{count} lines, over the limit of {MAX_LINES}"))
    code = blank_literals(text)
    if rel != FFI_FILE and rel not in FLOORS:
        for m in FFI_USE.finditer(code):
            problems.append(
                Problem(rel, line_of(code, m.start()), "ffi", f"lmdb_sys used outside {FFI_FILE} (add a safe fn there)")
            )
    for m in MESSAGE_FORMAT.finditer(code):
        problems.append(
            Problem(
                rel,
                line_of(code, m.start()),
                "message",
                f"format!(...) assigned to .{m.group(1)}: an error's message is edited (give the cause its own field)",
            )
        )
    for m in MESSAGE_EDIT.finditer(code):
        problems.append(
            Problem(
                rel,
                line_of(code, m.start()),
                "message",
                f".{m.group(1)}.{m.group(2)}(...): an error's message is edited (give the cause its own field)",
            )
        )
    in_sidecar = rel == "src/sidecar.rs" or rel.startswith("src/sidecar/")
    fns = functions(code) if in_sidecar else []
    for m in CUTOVER_TEST.finditer(code):
        if in_sidecar:
            inside = enclosing_fn(fns, m.start())
            if inside and ACCESSOR_NAME.match(inside[0]) and marked_accessor(lines, line_of(code, inside[1])):
                continue
        test = " ".join(m.group(0).split())
        problems.append(
            Problem(
                rel,
                line_of(code, m.start()),
                "cutover",
                f"`{test}` tests the cut-over sentinel directly (use the sidecar's accessor, e.g. is_raft_cut_over())",
            )
        )
    return sorted(problems, key=lambda p: (p.line, p.rule))


def check_tree(root: Path) -> list[Problem]:
    problems: list[Problem] = []
    for top in ("src", "examples"):
        base = root / top
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.rs")):
            problems += check_file(path, path.relative_to(root).as_posix())
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="the repository root (default: this script's repository)",
    )
    args = parser.parse_args(argv)
    if not (args.root / "src").is_dir():
        print(f"check_shape: {args.root}: no src/ directory", file=sys.stderr)
        return 2
    problems = check_tree(args.root)
    for problem in problems:
        print(problem)
    if problems:
        rules = sorted({p.rule for p in problems})
        print(f"check_shape: {len(problems)} problem(s) ({', '.join(rules)}); rules: check_shape.py's docstring")
        return 1
    print("check_shape: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
