"""Threads sharing one Applier: many appliers and readers at once, every
entry applied exactly once, no deadlock, readers see consistent snapshots."""

import threading
import time
from pathlib import Path

import pytest

import encryption_applier as ea
from encryption_applier.testing.model import RegistryModel

from helpers import assert_waits_without_the_gil

THREADS = 8
PER_THREAD = 250


@pytest.mark.slow
def test_many_writer_and_reader_threads_on_one_applier(tmp_path: Path, kek_path: Path) -> None:
    kek = ea.FileKek(kek_path)
    directory = tmp_path / "registry"
    errors: list[BaseException] = []
    outcomes: dict[int, list[str]] = {}
    done = threading.Event()
    snapshots_checked = 0

    with ea.Applier(directory, kek=kek) as applier:
        applier.apply(ea.Bootstrap(1, kek.wrap(b"\x01" * 32), 2, kek.wrap(b"\x02" * 32)))

        def writer(thread: int) -> None:
            try:
                mine = []
                for i in range(PER_THREAD):
                    # Disjoint rows per thread; epochs advance every 50 entries.
                    reg = ea.Registration(1 + thread % 2, (thread << 16) | (100 + thread * 1000 + i % 50), 1 + i // 50)
                    if i % 25 == 0:
                        mine += applier.apply_many([reg])
                    else:
                        mine.append(applier.apply(reg))
                outcomes[thread] = mine
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)

        def reader() -> None:
            nonlocal snapshots_checked
            try:
                own = ea.Registry(directory)
                while not done.is_set():
                    view = applier.registry
                    rows = view.rows()
                    # One snapshot: every read of it agrees.
                    assert len(view) == len(rows) == len(list(view))
                    assert rows == sorted(rows)
                    assert view.digest() == view.digest()
                    own.refresh()
                    assert len(own) >= 0
                    keystore = applier.keystore
                    assert keystore is not None and keystore.ids() == [1, 2]
                    snapshots_checked += 1
                own.close()
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)

        writers = [threading.Thread(target=writer, args=(t,)) for t in range(THREADS)]
        readers = [threading.Thread(target=reader) for _ in range(3)]
        for t in readers + writers:
            t.start()
        deadline = time.monotonic() + 120
        for t in writers:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        done.set()
        for t in readers:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in writers + readers), "a thread is stuck (deadlock?)"
        assert not errors, errors
        assert snapshots_checked > 0

        # Serial application of the same per-thread streams gives the same rows.
        model = RegistryModel()
        for thread in range(THREADS):
            expected = []
            for i in range(PER_THREAD):
                expected.append(
                    model.apply_registration(
                        1 + thread % 2, (thread << 16) | (100 + thread * 1000 + i % 50), 1 + i // 50
                    )
                )
            assert outcomes[thread] == expected
        assert [(r.key, r.value) for r in applier.registry.rows()] == model.raw_items()


def test_close_while_other_threads_apply(tmp_path: Path) -> None:
    applier = ea.Applier(tmp_path / "registry")
    results: list[str] = []
    stop = threading.Event()

    def worker(thread: int) -> None:
        n = 0
        while not stop.is_set():
            try:
                results.append(
                    applier.apply(ea.Registration(1, (thread << 16) | (thread * 1000 + n % 1000), 1 + n // 1000))
                )
            except ValueError:  # closed: the documented error, not a crash
                return
            n += 1

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    applier.close()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert results and set(results) <= {"inserted", "advanced"}
    with ea.Registry(tmp_path / "registry") as registry:
        # Every apply that returned committed, and none that raised did.
        assert len(registry) == results.count("inserted")


# Every call that waits for the applier's lock must release the GIL first,
# or one thread waiting on another's fsync freezes the whole interpreter.
GETTERS = {
    "applied_index": lambda a: a.applied_index,
    "closed": lambda a: a.closed,
    "repr": repr,
    "sidecar_path": lambda a: a.sidecar_path,
    "sidecar": lambda a: a.sidecar,
    "registry": lambda a: a.registry.close(),
    "keystore.ids": lambda a: a.keystore.ids(),
    "keystore.len": lambda a: len(a.keystore),
    "keystore.contains": lambda a: 1 in a.keystore,
    "keystore.repr": lambda a: repr(a.keystore),
    "apply": lambda a: a.apply(ea.Registration(9, 0xABCD0001, 1)),
}


@pytest.mark.slow
@pytest.mark.parametrize("getter", list(GETTERS))
def test_waiting_for_the_applier_lock_releases_the_gil(tmp_path: Path, kek_path: Path, getter: str) -> None:
    with ea.Applier(tmp_path / "reg", kek=ea.FileKek(kek_path)) as applier:
        assert_waits_without_the_gil(applier, lambda: GETTERS[getter](applier), getter)
