"""Griffe extension for the API reference: the native module's docstrings
taken from the runtime objects.

``encryption_applier._native`` is compiled (pyo3). Its docstrings are the
Rust ``///`` comments, reachable only at runtime; its signatures and types
are in ``_native.pyi`` (checked against the runtime by mypy.stubtest).
Griffe reads the stub statically; this extension then imports
``encryption_applier._native`` and sets each stub object's docstring from
the runtime object, so docstrings are written once, in Rust, and never
copied into the stub (a stub docstring stays only where the runtime object
has none). It also shows a pyo3 class's ``__new__`` signature as its
constructor's, and gives module constants their runtime values.

Forcing Griffe to inspect the whole package instead would lose the stub's
types and import ``encryption_applier.__main__``, which runs the CLI.
"""

from __future__ import annotations

import importlib
import inspect
import types
from typing import Any

try:
    import griffe
except ImportError:  # tests/tools/test_doctests.py reads _runtime_doc without the docs extra
    griffe = None

NATIVE = "encryption_applier._native"

# Runtime objects whose ``__doc__`` documents the object itself. Anything
# else (an int constant, an enum member) would only give its type's docstring.
_DOCUMENTED = (
    type,
    types.BuiltinFunctionType,
    types.BuiltinMethodType,
    types.FunctionType,
    types.MethodType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
    types.WrapperDescriptorType,
    property,
    classmethod,
    staticmethod,
)


def _runtime_doc(owner: Any, name: str) -> str | None:
    try:
        value = inspect.getattr_static(owner, name)
    except AttributeError:
        return None
    if isinstance(value, (classmethod, staticmethod)):
        value = value.__func__
    if not isinstance(value, _DOCUMENTED):
        return None
    doc = getattr(value, "__doc__", None)
    if not isinstance(doc, str) or not doc.strip():
        return None
    if not isinstance(value, type) and doc == type(value).__doc__:
        return None
    return inspect.cleandoc(doc)


def _constructor_as_init(cls: griffe.Class) -> None:
    """A pyo3 class is constructed by ``__new__``; the renderer shows a
    class's call signature from ``__init__``. Give it one with the same
    parameters (``cls`` is skipped like ``self``)."""
    new = cls.members.get("__new__")
    if new is None or "__init__" in cls.members or not new.is_function:
        return
    init = griffe.Function(
        "__init__",
        lineno=new.lineno,
        endlineno=new.endlineno,
        parameters=new.parameters,
        returns=None,
    )
    cls.set_member("__init__", init)


# (A plain class without griffe: only `_runtime_doc` is of use then.)
class RuntimeDocstrings(griffe.Extension if griffe is not None else object):
    """Replace the docstrings of ``encryption_applier._native``'s stub objects
    with those of the runtime objects."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != NATIVE.split(".")[0] or "_native" not in pkg.members:
            return
        runtime = importlib.import_module(NATIVE)
        self._loader = loader
        self._walk(pkg["_native"], runtime)

    def _walk(self, obj: griffe.Module | griffe.Class, runtime: Any) -> None:
        for name, member in obj.members.items():
            if member.is_alias:
                continue
            doc = _runtime_doc(runtime, name)
            if doc is not None:
                self._set_doc(member, doc)
            if obj.is_module and member.is_attribute:
                value = getattr(runtime, name, None)
                if isinstance(value, (int, bytes, str)):
                    # Griffe's inspection of the compiled module gave it the
                    # docstring of its type (int, str): not about the constant.
                    member.docstring = None
                    if member.value is None:
                        member.value = repr(value)
            if member.is_class:
                child = inspect.getattr_static(runtime, name, None)
                if isinstance(child, type):
                    self._walk(member, child)
                _constructor_as_init(member)

    def _set_doc(self, obj: griffe.Object, doc: str) -> None:
        obj.docstring = griffe.Docstring(
            doc,
            parent=obj,
            parser=self._loader.docstring_parser,
            parser_options=self._loader.docstring_options,
        )
