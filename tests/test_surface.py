"""The public surface: `__all__`, the `.pyi` stub and the runtime module
agree, so a name added to one and not the others fails here."""

import ast
import inspect
from pathlib import Path

import encryption_applier as ea
from encryption_applier import _native

STUB = Path(ea.__file__).with_name("_native.pyi")
# Type aliases that exist only for typing.
STUB_ONLY = {"_BytesLike", "_Outcome", "_Payload", "_FaultPoint", "__all__"}


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


def test_all_is_exactly_the_native_public_names() -> None:
    native = {n for n in dir(_native) if not n.startswith("_")} | {"__version__"}
    assert set(ea.__all__) == native
    for name in ea.__all__:
        assert getattr(ea, name) is getattr(_native, name)


def test_stub_declares_every_runtime_name_and_nothing_else() -> None:
    stub = top_level_names(stub_tree()) - STUB_ONLY
    runtime = {n for n in dir(_native) if not n.startswith("_")} | {"__version__"}
    assert stub == runtime


def test_stub_classes_declare_every_public_member() -> None:
    for node in stub_tree().body:
        if not isinstance(node, ast.ClassDef) or node.name == "Purpose":
            continue
        runtime_cls = getattr(_native, node.name)
        declared = {
            n.name if isinstance(n, ast.FunctionDef) else n.target.id  # type: ignore[union-attr]
            for n in node.body
            if isinstance(n, ast.FunctionDef) or (isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name))
        }
        if issubclass(runtime_cls, BaseException):
            continue  # exception fields are set per instance; checked in test_applier
        public = {
            n
            for n, _ in inspect.getmembers(runtime_cls)
            if not n.startswith("_") or n in {"__enter__", "__exit__", "__len__", "__iter__", "__contains__"}
        }
        assert public <= declared, (node.name, public - declared)


def test_py_typed_marker_ships() -> None:
    assert STUB.with_name("py.typed").exists()
