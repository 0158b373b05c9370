"""fork(): LMDB handles cannot cross it. A child that inherited an Applier
or a Registry view gets a clear error from them (never touching the
parent's transactions), opens its own handles, and the parent carries on."""

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import encryption_applier as ea
from encryption_applier._native import test_support

from helpers import run_python


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
    return wait_for(pid)


def wait_for(pid: int, limit: float = 60) -> int:
    """The child's exit code; a child still running after `limit` seconds
    is hung: it is killed and the test fails."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("the forked child hung")


def expect_storage_error(use: Callable[[], object]) -> None:
    try:
        use()
    except ea.StorageError as err:
        assert "fork" in str(err), err
    else:
        raise AssertionError("an inherited handle was used after fork")


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


@pytest.mark.slow
def test_fork_while_another_thread_is_inside_the_applier(registry_dir: Path) -> None:
    """The thread holding the applier's lock is not copied into the child,
    so the lock would stay taken forever there: every call of the child on
    the inherited handles must fail at once instead of waiting for it."""
    applier = ea.Applier(registry_dir)
    applier.apply(ea.Registration(1, 1, 1))
    view = applier.registry
    holder = threading.Thread(target=test_support.hold_lock, args=(applier, 3.0))
    holder.start()
    time.sleep(0.2)  # the holder has the lock

    def child() -> None:
        for use in (
            lambda: applier.apply(ea.Registration(1, 2, 1)),
            lambda: applier.applied_index,
            lambda: applier.sidecar_path,
            lambda: view.rows(),
        ):
            expect_storage_error(use)
        assert not applier.closed and "closed" not in repr(applier)
        applier.close()
        view.close()
        assert applier.closed
        try:
            applier.apply(ea.Registration(1, 2, 1))
        except ValueError as err:
            assert "closed" in str(err)
        else:
            raise AssertionError("a closed handle applied")

    try:
        assert in_child(child) == 0
    finally:
        holder.join()
    # The child's close() closed nothing of the parent's.
    assert applier.apply(ea.Registration(1, 2, 1)) == "inserted"
    view.close()
    applier.close()


def test_a_forked_child_does_not_keep_the_writer_lock(registry_dir: Path) -> None:
    applier = ea.Applier(registry_dir)
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child waits until told to exit
        os.close(to_child_w)
        os.close(from_child_r)
        # fork() has returned here, so the fork handlers have run.
        os.write(from_child_w, b"r")
        os.read(to_child_r, 1)
        os._exit(0)
    os.close(to_child_r)
    os.close(from_child_w)
    try:
        assert os.read(from_child_r, 1) == b"r"
        assert not any("writer.lock" in link for link in open_files(pid))
        # While the child lives, the parent closes and reopens its writer,
        # and another process can take the lock once the parent lets go.
        applier.close()
        with ea.Applier(registry_dir) as again:
            assert again.apply(ea.Registration(1, 1, 1)) == "inserted"
        run_python(
            """
            import sys, encryption_applier as ea
            with ea.Applier(sys.argv[1]) as applier:
                assert applier.apply(ea.Registration(1, 2, 1)) == "inserted"
            """,
            str(registry_dir),
        )
    finally:
        os.close(to_child_w)
        assert wait_for(pid) == 0


def open_files(pid: int) -> list[str]:
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):  # closed meanwhile
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return links
