"""The public surface: `__all__`, the `.pyi` stub and the runtime module
agree, so a name added to one and not the others fails here."""

import ast
import inspect
import re
from pathlib import Path

import encryption_applier as ea
from encryption_applier import _native, exceptions, kek, results

from helpers import REPO

STUB = Path(ea.__file__).with_name("_native.pyi")
# Type aliases that exist only for typing.
STUB_ONLY = {"_BytesLike", "_DamageProblem", "_Outcome", "_Payload", "_TestSupport", "__all__"}
# Native names that the package does not re-export.
NATIVE_ONLY = {"test_support"}


def stub_tree() -> ast.Module:
    return ast.parse(STUB.read_text())


def top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def test_all_is_exactly_the_native_and_exception_public_names() -> None:
    native = {n for n in dir(_native) if not n.startswith("_")} - NATIVE_ONLY | {"__version__"}
    python = [exceptions, kek, results]
    assert all(native.isdisjoint(module.__all__) for module in python)
    assert set(ea.__all__) == native.union(*(module.__all__ for module in python))
    assert len(ea.__all__) == len(set(ea.__all__))
    for name in ea.__all__:
        home = next((module for module in python if name in module.__all__), _native)
        assert getattr(ea, name) is getattr(home, name)


def test_exceptions_are_declared_in_python_and_every_one_is_exported() -> None:
    declared = {name for name, obj in vars(exceptions).items() if isinstance(obj, type) and issubclass(obj, Exception)}
    assert declared == set(exceptions.__all__)
    assert not {n for n in dir(_native) if n.endswith("Error")}


def test_stub_declares_every_runtime_name_and_nothing_else() -> None:
    stub = top_level_names(stub_tree()) - STUB_ONLY
    # Public names, and the package's private helpers (one underscore).
    runtime = {n for n in dir(_native) if not n.startswith("__")} - {"__all__"} | {"__version__"}
    assert stub == runtime


def test_stub_classes_declare_every_public_member() -> None:
    for node in stub_tree().body:
        if not isinstance(node, ast.ClassDef) or node.name == "Purpose" or node.name.startswith("_"):
            continue
        runtime_cls = getattr(_native, node.name)
        declared = {
            n.name if isinstance(n, ast.FunctionDef) else n.target.id  # type: ignore[union-attr]
            for n in node.body
            if isinstance(n, ast.FunctionDef) or (isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name))
        }
        public = {
            n
            for n, _ in inspect.getmembers(runtime_cls)
            if not n.startswith("_") or n in {"__enter__", "__exit__", "__len__", "__iter__", "__contains__"}
        }
        assert public <= declared, (node.name, public - declared)


def test_py_typed_marker_ships() -> None:
    assert STUB.with_name("py.typed").exists()


def test_every_exception_the_bindings_raise_is_declared() -> None:
    # The Rust side names each class once, in py_imports.rs's
    # `exception_classes! { ... }` list, and looks it up by that name; a
    # typo would surface only when that error is raised, so check the names.
    source = (REPO / "src" / "bindings" / "py_imports.rs").read_text()
    listed = re.search(r"exception_classes! \{(.*?)\}", source, re.S)
    assert listed is not None
    raised = set(re.findall(r"^\s*(\w+),", listed.group(1), re.M))
    assert len(raised) >= 15
    assert raised <= set(exceptions.__all__), raised - set(exceptions.__all__)


def _undocumented(obj: object) -> bool:
    doc = getattr(obj, "__doc__", None)
    return not (doc or "").strip()


def test_every_public_name_and_member_has_its_own_docstring() -> None:
    # The API reference (docs/api/) is generated from these docstrings.
    import encryption_applier.testing as testing

    missing = []
    for module, names in ((ea, ea.__all__), (testing, testing.__all__)):
        for name in names:
            obj = getattr(module, name)
            if not callable(obj):
                continue  # constants: documented on their API page
            if _undocumented(obj):
                missing.append(name)
            if not inspect.isclass(obj) or issubclass(obj, BaseException):
                continue
            for member, value in list(vars(obj).items()):
                if member.startswith("_") or isinstance(value, obj):
                    continue  # enum members carry the class doc
                if not (callable(value) or inspect.isdatadescriptor(value) or isinstance(value, classmethod)):
                    continue  # a dataclass field's default
                own = getattr(value, "__doc__", None)
                if _undocumented(value) or own == type(value).__doc__:
                    missing.append(f"{name}.{member}")
    assert missing == []
