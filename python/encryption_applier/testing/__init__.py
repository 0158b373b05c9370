"""Helpers for writing tests of systems that use encryption-applier.

- `encryption_applier.testing.model`: a plain-Python reference model of
  the registration, bootstrap, rotation and cutover rules, to compare an
  applier with.
- `encryption_applier.testing.strategies`: hypothesis strategies for
  payloads, entries, valid streams and streams with a planted halt (needs
  ``pip install 'encryption-applier[testing]'``).
- The pytest plugin (loaded automatically when the package is installed):
  fixtures ``ea_registry_path``, ``ea_applier``, ``ea_kek`` and
  ``ea_keyed_applier``.
- `assert_registries_equal`, `assert_registry_matches_model` and
  `temporary_kek`, below.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .. import _native
from .._rows import diff_lines, diff_summary, row_line
from .model import Halt, KeyedModel, RegistryModel, expect, registration_payload

__all__ = [
    "Halt",
    "KeyedModel",
    "RegistryModel",
    "assert_registries_equal",
    "assert_registry_matches_model",
    "expect",
    "registration_payload",
    "temporary_kek",
]

#: How many differing rows an assertion message shows before it cuts off.
MAX_SHOWN = 20

RegistryLike = _native.Registry | _native.Applier | str | os.PathLike[str]


@contextlib.contextmanager
def _view(registry: RegistryLike) -> Iterator[_native.Registry]:
    """A Registry for what the caller passed, closed afterwards if opened here."""
    if isinstance(registry, _native.Registry):
        yield registry
    elif isinstance(registry, _native.Applier):
        with registry.registry as view:
            yield view
    else:
        with _native.Registry(registry) as view:
            yield view


def _name(registry: RegistryLike) -> str:
    if isinstance(registry, _native.Registry | _native.Applier):
        return str(registry.path)
    return os.fspath(registry)


def assert_registries_equal(a: RegistryLike, b: RegistryLike) -> None:
    """Asserts that two registries hold byte-identical rows.

    ``a`` and ``b`` may each be a ``Registry``, an ``Applier`` (its committed
    rows: call ``flush()`` first in group-commit mode) or a registry
    directory. On a difference, raises ``AssertionError``
    whose message lists the differing rows as ``diff`` does (``<`` as in
    ``a``, ``>`` as in ``b``; at most ``MAX_SHOWN`` of them)."""
    __tracebackhide__ = True  # pytest shows the caller's line, not this one
    with _view(a) as left, _view(b) as right:
        if left.digest() == right.digest():
            return
        diff = left.diff(right)
    lines = diff_lines(diff)
    shown = "\n".join(lines[:MAX_SHOWN])
    more = f"\n... and {len(lines) - MAX_SHOWN} more" if len(lines) > MAX_SHOWN else ""
    raise AssertionError(
        f"registries differ: {diff_summary(diff, 'a', 'b')}\n  a = {_name(a)}\n  b = {_name(b)}\n{shown}{more}"
    )


def assert_registry_matches_model(registry: RegistryLike, model: RegistryModel) -> None:
    """Asserts that a registry holds exactly the rows of a reference model,
    and shows the differing rows if it does not."""
    __tracebackhide__ = True
    with _view(registry) as view:
        rows = [
            (r.dek_id, r.node_id16, r.full_node_id, r.first_seen_local_epoch, r.last_seen_local_epoch)
            for r in view.rows()
        ]
    expected = model.sorted_rows()
    if rows == expected:
        return
    have, want = set(rows), set(expected)
    lines = [f"< {row_line(_native.RegistryRow(*r))}" for r in sorted(have - want)]
    lines += [f"> {row_line(_native.RegistryRow(*r))}" for r in sorted(want - have)]
    shown = "\n".join(lines[:MAX_SHOWN])
    more = f"\n... and {len(lines) - MAX_SHOWN} more" if len(lines) > MAX_SHOWN else ""
    raise AssertionError(
        f"registry {_name(registry)} differs from the model ('<' registry only, '>' model only):\n{shown}{more}"
    )


@contextlib.contextmanager
def temporary_kek() -> Iterator[_native.FileKek]:
    """A freshly generated KEK in a private temporary directory (mode 0700,
    file 0600), for a test's cluster. On exit the key file is overwritten
    with zeros and the directory removed, so no key outlives the test."""
    directory = Path(tempfile.mkdtemp(prefix="ea-kek-"))
    try:
        yield _native.FileKek.generate(directory / "kek")
    finally:
        try:
            _wipe(directory / "kek")
        finally:
            # Removed even if the wipe failed; that failure is then raised.
            shutil.rmtree(directory, ignore_errors=True)


def _wipe(path: Path) -> None:
    """Overwrites a key file with zeros, durably. A file the test removed
    itself is fine; any other failure is raised, not ignored."""
    try:
        with open(path, "r+b") as f:
            f.write(b"\0" * os.fstat(f.fileno()).st_size)
            f.flush()
            os.fsync(f.fileno())
    except FileNotFoundError:
        pass
