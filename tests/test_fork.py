"""fork(): LMDB handles cannot cross it. A child that inherited an Applier
or a Registry view gets a clear error from them (never touching the
parent's transactions), opens its own handles, and the parent carries on."""

import os
from pathlib import Path

import encryption_applier as ea


def in_child(fn) -> int:  # type: ignore[no-untyped-def]
    """Runs fn() in a forked child; returns its exit status (0 = passed)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            fn()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_handles_inherited_through_fork(registry_dir: Path) -> None:
    applier = ea.Applier(registry_dir)
    applier.apply(ea.Registration(1, 1, 1))
    view = ea.Registry(registry_dir)

    def child() -> None:
        for use in (lambda: applier.apply(ea.Registration(1, 2, 1)), lambda: view.rows(), lambda: view.refresh()):
            try:
                use()
            except ea.StorageError as err:
                assert "fork" in str(err)
            else:
                raise AssertionError("an inherited handle was used after fork")
        # Its own view works; a second writer is refused (the parent holds it).
        with ea.Registry(registry_dir) as own:
            assert len(own) == 1
        try:
            ea.Applier(registry_dir)
        except ea.RegistryOpenError:
            pass
        else:
            raise AssertionError("two writers after fork")

    assert in_child(child) == 0
    # The parent's snapshot and applier are untouched by the child.
    assert view.rows() == [ea.RegistryRow(1, 1, 1, 1, 1)]
    assert applier.apply(ea.Registration(1, 2, 1)) == "inserted"
    view.refresh()
    assert len(view) == 2
    view.close()
    applier.close()
