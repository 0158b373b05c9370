"""Helpers for writing tests of systems that use encryption-applier.

- `encryption_applier.testing.model`: a plain-Python reference model of
  the registration, bootstrap, rotation and cutover rules, to compare an
  applier with.
- `encryption_applier.testing.strategies`: hypothesis strategies for
  payloads, entries, valid streams and streams with a planted halt, keyed
  streams that apply under a KEK (needs
  ``pip install 'encryption-applier[testing]'``).
- `Cluster`: N replicas applying one Raft-like log, with crashes,
  restarts, partitions, joins, rotations, cutovers, envelopes and their
  nonce audit; `ClusterMachine`, a hypothesis state machine over it.
- The pytest plugin (loaded automatically when the package is installed):
  fixtures ``ea_registry_path``, ``ea_applier``, ``ea_kek``,
  ``ea_keyed_applier`` and ``ea_cluster``.
- `assert_registries_equal`, `assert_replicas_agree`,
  `assert_registry_matches_model`, `temporary_kek` and
  `temporary_registry`, below.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .. import _native
from .._rows import row_line
from .agree import (
    CLUSTER_WIDE_FIELDS,
    MAX_SHOWN,
    RegistryLike,
    assert_replicas_agree,
    name_of,
    row_differences,
    view_of,
)
from .cluster import Cluster, ClusterHalt, NonceAudit, Replica
from .envelopes import EnvelopeWriter
from .model import Halt, KeyedModel, RegistryModel, expect, registration_payload

__all__ = [
    "CLUSTER_WIDE_FIELDS",
    "Cluster",
    "ClusterHalt",
    "ClusterMachine",
    "EnvelopeWriter",
    "Halt",
    "KeyedModel",
    "NonceAudit",
    "RegistryModel",
    "Replica",
    "assert_registries_equal",
    "assert_registry_matches_model",
    "assert_replicas_agree",
    "expect",
    "registration_payload",
    "temporary_kek",
    "temporary_registry",
]


if TYPE_CHECKING:  # type checkers see the class; at run time it is imported on use
    from .machine import ClusterMachine


def __getattr__(name: str) -> object:
    # ClusterMachine needs hypothesis (the testing extra): imported on use,
    # so that the rest of this module works without it.
    if name == "ClusterMachine":
        from .machine import ClusterMachine

        return ClusterMachine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def assert_registries_equal(a: RegistryLike, b: RegistryLike) -> None:
    """Asserts that two registries hold byte-identical rows.

    ``a`` and ``b`` may each be a ``Registry``, an ``Applier`` (its committed
    rows: call ``flush()`` first in group-commit mode) or a registry
    directory. On a difference, raises ``AssertionError``
    whose message lists the differing rows as ``diff`` does (``<`` as in
    ``a``, ``>`` as in ``b``; at most ``MAX_SHOWN`` of them). The rows
    alone: `assert_replicas_agree` compares sidecars and indexes too,
    with the same row comparison."""
    __tracebackhide__ = True  # pytest shows the caller's line, not this one
    rows = row_differences(a, b, "a", "b")
    if rows:
        summary, *shown = rows
        lines = "\n".join(shown)
        raise AssertionError(f"registries differ: {summary}\n  a = {name_of(a)}\n  b = {name_of(b)}\n{lines}")


def assert_registry_matches_model(registry: RegistryLike, model: RegistryModel) -> None:
    """Asserts that a registry holds exactly the rows of a reference model,
    and shows the differing rows if it does not."""
    __tracebackhide__ = True
    with view_of(registry) as view:
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
        f"registry {name_of(registry)} differs from the model ('<' registry only, '>' model only):\n{shown}{more}"
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


@contextlib.contextmanager
def temporary_registry(name: str = "registry") -> Iterator[Path]:
    """A path for a registry directory that does not exist yet, in a private
    temporary directory (mode 0700) removed with everything in it on exit:
    one per hypothesis example, where a function-scoped fixture cannot be.

    ```python
    @given(stream=valid_streams())
    def test_it(stream):
        with temporary_registry() as path, ea.Applier(path) as applier:
            applier.apply_many(stream.entries)
    ```
    """
    directory = Path(tempfile.mkdtemp(prefix="ea-registry-"))
    try:
        yield directory / name
    finally:
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
