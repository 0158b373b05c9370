"""pytest fixtures for tests that drive encryption-applier.

Loaded automatically (the ``pytest11`` entry point) wherever the package is
installed; every fixture is function-scoped and named ``ea_*`` so it does
not shadow a project's own: ``ea_registry_path``, ``ea_applier``,
``ea_kek``, ``ea_keyed_applier`` and ``ea_cluster``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .. import _native
from . import Cluster, temporary_kek


@pytest.fixture
def ea_registry_path(tmp_path: Path) -> Path:
    """A path for a registry directory that does not exist yet (the
    applier creates it, owner-only)."""
    return tmp_path / "registry"


@pytest.fixture
def ea_applier(ea_registry_path: Path) -> Iterator[_native.Applier]:
    """An ``Applier`` on a fresh registry without a KEK (registrations
    only), closed after the test."""
    with _native.Applier(ea_registry_path) as applier:
        yield applier


@pytest.fixture
def ea_kek() -> Iterator[_native.FileKek]:
    """A freshly generated KEK in a private temporary directory, wiped and
    removed after the test (see ``temporary_kek``)."""
    with temporary_kek() as kek:
        yield kek


@pytest.fixture
def ea_keyed_applier(ea_registry_path: Path, ea_kek: _native.FileKek) -> Iterator[_native.Applier]:
    """An ``Applier`` with ``ea_kek``, so it applies bootstraps and
    rotations; its sidecar is ``keys.json`` in the registry directory."""
    with _native.Applier(ea_registry_path, kek=ea_kek) as applier:
        yield applier


@pytest.fixture
def ea_cluster(ea_kek: _native.FileKek) -> Iterator[Cluster]:
    """A `Cluster` of three replicas with ``ea_kek``, in process, not
    bootstrapped yet (``ea_cluster.bootstrap()``), in a temporary directory
    of its own; closed and removed after the test, passed or failed. For
    other settings build one yourself:
    ``with Cluster(5, kek=ea_kek, group_commit=8, mode="process") as c:``."""
    with Cluster(3, kek=ea_kek) as cluster:
        yield cluster
