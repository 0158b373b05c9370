"""The value types the package's Python layer declares (the exceptions are
in `encryption_applier.exceptions`): `Aftermath`, an item of
`StorageError.aftermath`, and `StartupDiagnosis`, what `diagnose_startup`
returns. Both are re-exported by the package."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterable

    from ._native import SkippedGuard
    from .exceptions import StartupRefusedError

__all__ = ["Aftermath", "StartupDiagnosis"]

#: What an `Aftermath` reports.
AftermathKind = Literal["environment_unusable", "staged_not_committed", "rows_kept", "backup_kept"]


@dataclass(frozen=True)
class Aftermath:
    """What else a storage fault left behind, learnt after the fault itself:
    one item of `StorageError.aftermath` (each also adds a clause to the
    error's message). ``kind`` says which, and sets these fields (the
    others are None):

    - ``"environment_unusable"``: LMDB then marked the environment
      unusable (a failed meta-page write): close every handle of the path
      and open it again.
    - ``"staged_not_committed"``: group commit lost the ``entries`` staged
      entries this commit carried; ``through_index`` is the highest Raft
      index among them, None when they were applied without indexes (then
      nothing records which entries they were: see the durability guide).
    - ``"rows_kept"``: the ``rows`` registry rows an entry committed before
      its keys.json write failed could not be taken back (``undo`` says
      why); a replay of the entry writes the same rows.
    - ``"backup_kept"``: a resync's backup of keys.json at ``path`` could
      not be removed after the resync failed (``undo`` says why).
    """

    kind: AftermathKind
    entries: int | None = None
    through_index: int | None = None
    rows: int | None = None
    path: str | None = None
    undo: str | None = None


class StartupDiagnosis(list["StartupRefusedError"]):
    """What `diagnose_startup` returns: a list of the refusals of
    elastickv's startup guards, in Go's order (empty: the node may start),
    as before; `skipped`, the guards that did not run and why (the input
    they lack, or the state in which Go does not check them, as the core
    decides); `ok`; and a notebook view (``_repr_html_``: a table of the
    refusals, one row each, with the Go sentinel, the meaning and the
    fields, then the skipped guards)."""

    skipped: tuple[SkippedGuard, ...]
    """The guards that did not run, in Go's order, each with its reason."""

    def __init__(self, refusals: Iterable[StartupRefusedError] = (), skipped: Iterable[SkippedGuard] = (), /) -> None:
        super().__init__(refusals)
        self.skipped = tuple(skipped)

    @property
    def refusals(self) -> list[StartupRefusedError]:
        """The refusals, as a plain list (the diagnosis itself is that list)."""
        return list(self)

    @property
    def ok(self) -> bool:
        """True when no guard refused: the node may start."""
        return not self

    def __repr__(self) -> str:
        return f"StartupDiagnosis({list.__repr__(self)})"

    def _repr_html_(self) -> str:
        from ._frames import diagnosis_html

        return diagnosis_html(self)
