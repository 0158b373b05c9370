"""The ``>>>`` examples in the docstrings of the public names run.

The text is the runtime ``__doc__`` of each name in ``ea.__all__`` and of
its members: for the native classes and functions, the Rust ``///``
comments pyo3 compiles in; for the exceptions and ``Kek``, the Python
docstrings. The API reference shows the same text (docs/_ext sets each
stub object's docstring from the runtime object), so the examples there
are the ones run here. Each runs with ``ea`` imported, in an empty working
directory and with ``tempfile`` pointed into it, and must leave nothing
behind.
"""

from __future__ import annotations

import ast
import doctest
import importlib.util
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import encryption_applier as ea
from encryption_applier import exceptions

ROOT = Path(__file__).resolve().parents[2]

# The API reference's own reader of runtime docstrings (the Griffe
# extension of mkdocs.yml), so that the text run here is the text shown.
_spec = importlib.util.spec_from_file_location("runtime_docstrings", ROOT / "docs/_ext/runtime_docstrings.py")
assert _spec is not None and _spec.loader is not None
_extension = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_extension)
_runtime_doc = _extension._runtime_doc


# The main names of the package: each carries at least one example.
MUST_HAVE_EXAMPLES = {
    "Applier",
    "Registry",
    "RegistryRow",
    "Registration",
    "Bootstrap",
    "Rotation",
    "decode_entry",
    "registry_key",
    "decode_registry_key",
    "encode_registry_value",
    "decode_registry_value",
    "derive_node_id",
    "node_id16",
    "find_node_id_collisions",
    "is_encryption_opcode",
    "diagnose_startup",
    "check_startup",
    "FileKek",
    "Kek",
    "verify",
    "read_sidecar",
    "EncryptionApplyError",
}

OPTIONS = doctest.ELLIPSIS


def docstrings() -> Iterator[tuple[str, str]]:
    """(qualified name, docstring) of every public name and its members."""
    for name in ea.__all__:
        doc = _runtime_doc(ea, name)
        if doc is not None:
            yield name, doc
        obj = getattr(ea, name)
        if isinstance(obj, type):
            for member in vars(obj):
                if member.startswith("_") and member != "__init__":
                    continue
                doc = _runtime_doc(obj, member)
                if doc is not None:
                    yield f"{name}.{member}", doc


def examples() -> dict[str, doctest.DocTest]:
    parser = doctest.DocTestParser()
    found = {}
    for name, doc in docstrings():
        test = parser.get_doctest(doc, {"ea": ea}, name, f"<docstring of {name}>", 0)
        if test.examples:
            found[name] = test
    return found


EXAMPLES = examples()


def run_doctest(test: doctest.DocTest, workdir: Path) -> str:
    """Run one docstring's examples in ``workdir``; the runner's report of
    the failures ("" when all passed)."""
    out: list[str] = []
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    old_cwd, old_tempdir = Path.cwd(), tempfile.tempdir
    os.chdir(workdir)
    tempfile.tempdir = str(workdir)
    try:
        runner.run(test, out=out.append, clear_globs=True)
    finally:
        os.chdir(old_cwd)
        tempfile.tempdir = old_tempdir
    return "".join(out) if runner.failures else ""


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_docstring_examples_run(name: str, tmp_path: Path) -> None:
    test = EXAMPLES[name]
    test.globs = {"ea": ea}
    failures = run_doctest(test, tmp_path)
    assert failures == "", failures
    assert list(tmp_path.iterdir()) == [], "the example left files behind"


def test_the_main_names_have_examples() -> None:
    with_examples = {name.split(".")[0] for name in EXAMPLES}
    assert MUST_HAVE_EXAMPLES - with_examples == set()
    assert set(ea.__all__) >= MUST_HAVE_EXAMPLES


def test_a_wrong_example_fails(tmp_path: Path) -> None:
    doc = ">>> ea.registry_key(1, 2)\nb'not the key'\n"
    test = doctest.DocTestParser().get_doctest(doc, {"ea": ea}, "planted", "<planted>", 0)
    report = run_doctest(test, tmp_path)
    assert "Failed example:" in report
    assert "b'not the key'" in report


def test_an_example_that_raises_fails(tmp_path: Path) -> None:
    doc = ">>> ea.decode_entry(b'')\nRegistration(dek_id=1, full_node_id=0x1, local_epoch=1)\n"
    test = doctest.DocTestParser().get_doctest(doc, {"ea": ea}, "planted", "<planted>", 0)
    assert "MalformedPayloadError" in run_doctest(test, tmp_path)


# Each page of the API reference (but its index and the testing toolkit's,
# documented as a module) shows at least one example: in the docstring of
# an object it documents, or in a python block of its own.
API_PAGES_WITHOUT_EXAMPLES = {"docs/api/index.md", "docs/api/testing.md"}


def test_each_api_page_has_an_example() -> None:
    root = ROOT
    missing = []
    for page in sorted((root / "docs/api").glob("*.md")):
        name = page.relative_to(root).as_posix()
        if name in API_PAGES_WITHOUT_EXAMPLES:
            continue
        text = page.read_text(encoding="utf-8")
        shown = {m.split(".")[-1] for m in re.findall(r"^::: encryption_applier\.([\w.]+)", text, re.M)}
        if not (shown & {n.split(".")[0] for n in EXAMPLES}) and "```python" not in text:
            missing.append(name)
    assert missing == []


def test_every_exception_field_has_a_type_and_a_sentence() -> None:
    # A class-level annotation with a docstring under it, in the class that
    # adds the field: what the API reference shows for each field.
    tree = ast.parse(Path(exceptions.__file__).read_text(encoding="utf-8"))
    documented: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            body = node.body
            documented[node.name] = {
                stmt.target.id
                for stmt, after in zip(body, body[1:], strict=False)
                if isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
                and after.value.value.strip()
            }
    missing = []
    for name in exceptions.__all__:
        cls = getattr(exceptions, name)
        base_fields = set(exceptions._field_names(cls.__mro__[1])) if cls.__mro__[1] is not Exception else set()
        own = set(exceptions._field_names(cls)) - base_fields
        if name == "EncryptionApplyError":
            own |= {"position", "outcomes"}
        missing += [f"{name}.{field}" for field in sorted(own - documented.get(name, set()))]
    assert missing == []
