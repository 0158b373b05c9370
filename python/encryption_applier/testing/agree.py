"""Comparing replicas: rows, applied indexes, the cluster-wide fields of
their sidecars and their keystores, with a message that names the replica
and what differs.

One comparison serves `assert_registries_equal` (rows only, two
registries), `assert_replicas_agree` (any number, sidecars too) and
`Cluster.assert_agree`. Nothing here decides a rule: the rows are the
registries' own (`Registry.digest`/`diff`, in Rust), the sidecar fields
what `read_sidecar` parsed."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import _native
from .._rows import diff_lines, diff_summary

#: How many differing rows an assertion message shows before it cuts off.
MAX_SHOWN = 20

RegistryLike = _native.Registry | _native.Applier | str | os.PathLike[str]

#: The sidecar fields every replica that applied the same log must share
#: (documentation: what is compared is every field keys.json holds, as the
#: Rust writer writes it, but the per-node ones below).
CLUSTER_WIDE_FIELDS = (
    "version",
    "raft_applied_index",
    "storage_envelope_active",
    "storage_envelope_cutover_index",
    "raft_envelope_cutover_index",
    "active",
    "keys",
)

#: A key's fields that differ from node to node and are not compared: its
#: ``created`` (the wall clock of the replica that installed it) and its
#: ``local_epoch`` (each node's own epoch, SPEC §7).
PER_NODE_KEY_FIELDS = ("created", "local_epoch")


@dataclass(frozen=True)
class ReplicaState:
    """What is compared of one replica. ``sidecar`` holds the
    cluster-wide fields only (None: no keys.json, or not compared);
    ``keystore`` maps each loaded DEK id to its fingerprint (None: no
    keystore to compare, e.g. a registry directory)."""

    name: str
    path: Path
    applied_index: int | None
    sidecar: dict[str, object] | None
    keystore: dict[int, str] | None


def sidecar_fields(sidecar: _native.Sidecar | None) -> dict[str, object] | None:
    """The cluster-wide fields of a parsed sidecar: the document the Rust
    writer makes of it (`Sidecar.to_json`), each key without its
    `PER_NODE_KEY_FIELDS`. Taken from the writer, not listed here, so that
    a field keys.json gains is compared without a change here."""
    if sidecar is None:
        return None
    doc: dict[str, object] = json.loads(sidecar.to_json())
    keys = doc.get("keys")
    if isinstance(keys, dict):
        doc["keys"] = {
            int(i): {f: v for f, v in key.items() if f not in PER_NODE_KEY_FIELDS}
            for i, key in sorted(keys.items(), key=lambda item: int(item[0]))
        }
    return doc


def keystore_fingerprints(keystore: _native.Keystore | None) -> dict[int, str] | None:
    """Each loaded DEK id and its fingerprint (never the key bytes)."""
    if keystore is None:
        return None
    return {i: keystore.fingerprint(i) for i in keystore.ids()}


@contextlib.contextmanager
def view_of(registry: RegistryLike) -> Iterator[_native.Registry]:
    """A Registry for what the caller passed, closed afterwards if opened here."""
    if isinstance(registry, _native.Registry):
        yield registry
    elif isinstance(registry, _native.Applier):
        with registry.registry as view:
            yield view
    else:
        with _native.Registry(registry) as view:
            yield view


def name_of(registry: RegistryLike) -> str:
    if isinstance(registry, _native.Registry | _native.Applier):
        return str(registry.path)
    return os.fspath(registry)


def state_of(registry: RegistryLike, name: str, *, sidecars: bool = True) -> ReplicaState:
    """The state of one replica given as a ``Registry``, an ``Applier`` (its
    committed rows, its own sidecar and keystore) or a registry directory
    (its ``keys.json``)."""
    keystore = None
    if isinstance(registry, _native.Applier):
        path = registry.path
        sidecar_path = registry.sidecar_path
        keystore = keystore_fingerprints(registry.keystore)
    else:
        path = registry.path if isinstance(registry, _native.Registry) else Path(registry)
        sidecar_path = path / "keys.json"
    with view_of(registry) as view:
        applied = view.applied_index
    sidecar = sidecar_fields(_native.read_sidecar(sidecar_path)) if sidecars and sidecar_path is not None else None
    return ReplicaState(name, Path(path), applied, sidecar, keystore)


def _cut(lines: list[str]) -> list[str]:
    more = [f"... and {len(lines) - MAX_SHOWN} more"] if len(lines) > MAX_SHOWN else []
    return lines[:MAX_SHOWN] + more


def row_differences(left: RegistryLike, right: RegistryLike, left_name: str, right_name: str) -> list[str]:
    """The rows two registries disagree on: a summary line (how many rows
    are only in each, how many changed), then the rows as ``diff`` shows
    them (``<`` as in ``left``, ``>`` as in ``right``, at most
    ``MAX_SHOWN``); empty when they hold the same bytes."""
    with view_of(left) as a, view_of(right) as b:
        if a.digest() == b.digest():
            return []
        diff = a.diff(b)
    return [diff_summary(diff, left_name, right_name), *_cut(diff_lines(diff))]


def _field_differences(what: str, mine: Mapping[Any, object], theirs: Mapping[Any, object]) -> list[str]:
    lines = []
    for key in sorted(set(mine) | set(theirs), key=str):
        a, b = mine.get(key, "<absent>"), theirs.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            lines += _field_differences(f"{what}[{key}]", a, b)  # e.g. sidecar[keys][3]
        elif a != b:
            lines.append(f"{what}[{key}]: {a!r} != {b!r}")
    return lines


def disagreements(
    replicas: Sequence[tuple[RegistryLike, ReplicaState]], *, rows_only: bool = False
) -> list[tuple[str, list[str]]]:
    """Compares every replica with the first: for each that differs, its
    name and the lines saying what (rows, applied index, sidecar fields,
    keystore). ``rows_only`` compares the rows alone."""
    if len(replicas) < 2:
        return []
    (ref, ref_state), out = replicas[0], []
    for other, state in replicas[1:]:
        rows = row_differences(ref, other, ref_state.name, state.name)
        lines = [f"rows differ: {rows[0]}", *rows[1:]] if rows else []
        if not rows_only:
            if state.applied_index != ref_state.applied_index:
                lines.append(f"applied_index: {ref_state.applied_index} != {state.applied_index}")
            if (ref_state.sidecar is None) != (state.sidecar is None):
                have = ref_state.name if state.sidecar is None else state.name
                lines.append(f"sidecar: only {have} has keys.json")
            elif ref_state.sidecar is not None and state.sidecar is not None:
                lines += _field_differences("sidecar", ref_state.sidecar, state.sidecar)
            if ref_state.keystore is not None and state.keystore is not None:
                lines += _field_differences("keystore", ref_state.keystore, state.keystore)
        if lines:
            out.append((state.name, lines))
    return out


def raise_disagreements(
    replicas: Sequence[tuple[RegistryLike, ReplicaState]], *, rows_only: bool = False, header: str | None = None
) -> None:
    """``AssertionError`` listing, replica by replica, what differs from
    the first replica; nothing when all agree."""
    __tracebackhide__ = True
    found = disagreements(replicas, rows_only=rows_only)
    if not found:
        return
    ref = replicas[0][1]
    lines = [header or f"replicas disagree with {ref.name} ({ref.path}):"]
    for name, what in found:
        path = next(s.path for _, s in replicas if s.name == name)
        lines.append(f"  {name} ({path}):")
        lines += [f"    {line}" for line in what]
    raise AssertionError("\n".join(lines))


def assert_replicas_agree(*registries_or_paths: RegistryLike, sidecars: bool = True) -> None:
    """Asserts that replicas agree: the same rows (byte for byte), the same
    applied index, and, with ``sidecars``, the same cluster-wide sidecar
    fields (``CLUSTER_WIDE_FIELDS``: not ``created``, not the per-node
    ``local_epoch``s) and, for appliers, the same keystore (ids and
    fingerprints).

    Each argument is a ``Registry``, an ``Applier`` (its committed rows:
    call ``flush()`` first in group-commit mode) or a registry directory
    (its sidecar is ``keys.json`` in it). The first is the reference; the
    ``AssertionError`` names every replica that differs from it, with the
    differing rows (as ``diff`` shows them) and fields."""
    __tracebackhide__ = True
    if len(registries_or_paths) < 2:
        raise ValueError(f"assert_replicas_agree needs two replicas or more, got {len(registries_or_paths)}")
    replicas = [(r, state_of(r, f"replica {i}", sidecars=sidecars)) for i, r in enumerate(registries_or_paths)]
    raise_disagreements(replicas)
