"""Pipelined write-behind (issue 21): a committer thread commits each group
while the next is staged. One-by-one semantics, the loss window (at most
K staged and one group in flight), wait_durable, a failed commit raised by
the next call with the replay rule, keyed entries and halts draining the
pipeline, fork, and staged lookups without a read transaction per entry.
Behaviour only: nothing here is timed."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import encryption_applier as ea
from encryption_applier._native import test_support
from encryption_applier.testing import RegistryModel

from fsfault import traced
from helpers import WrapOracle

A, B = 0xABCD_0001, 0x1234_0002


def regs(n: int, keys: int = 50) -> list[ea.Registration]:
    return [ea.Registration(1 + i % 3, 0x10000 + i % keys, 1 + i // keys) for i in range(n)]


def test_group_commit_true_is_refused_naming_the_mode(tmp_path: Path) -> None:
    for flag in (True, False):
        with pytest.raises(TypeError, match="pipelined=True"):
            ea.Applier(tmp_path / "r", group_commit=flag)
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_pipelined_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no timer"):
        ea.Applier(tmp_path / "r", pipelined=True, group_commit_ms=5)
    with pytest.raises(ValueError, match="at least 1"):
        ea.Applier(tmp_path / "r", pipelined=True, group_commit=0)
    with ea.Applier(tmp_path / "r", pipelined=True) as a:
        a.apply(ea.Registration(1, A, 1), index=1)
        assert a.wait_durable(1, timeout=30)
    with ea.Applier(tmp_path / "r") as a:  # the default stays an fsync per apply
        assert test_support.pipeline_counters(a) is None
        a.apply(ea.Registration(1, A, 2), index=2)
        assert a.durable_index == 2 and a.wait_durable(2, timeout=0)


def test_every_entry_is_committed_and_wait_durable_says_when(tmp_path: Path) -> None:
    stream = regs(3000)
    model = RegistryModel()
    with ea.Applier(tmp_path / "r", pipelined=True, group_commit=64) as a:
        for index, reg in enumerate(stream, start=1):
            expected = model.apply_registration(reg.dek_id, reg.full_node_id, reg.local_epoch)
            assert a.apply(reg, index=index) == expected
            # The loss window: at most K staged plus one group of K in flight.
            assert a.staged <= 2 * 64
            assert a.applied_index == index
            assert (a.durable_index or 0) <= index
        assert a.wait_durable(len(stream), timeout=60)
        assert a.durable_index == a.applied_index == len(stream) and a.staged == 0
        rows = a.registry.rows()
    assert [(r.dek_id, r.full_node_id, r.first_seen_local_epoch, r.last_seen_local_epoch) for r in rows] == [
        (d, f, first, last) for (d, _n16), (f, first, last) in sorted(model.rows.items())
    ]


def test_wait_durable_times_out_for_an_index_not_applied(tmp_path: Path) -> None:
    with ea.Applier(tmp_path / "r", pipelined=True) as a:
        a.apply(ea.Registration(1, A, 1), index=5)
        assert a.wait_durable(5, timeout=30)
        assert a.wait_durable(6, timeout=0.05) is False
        with pytest.raises(ValueError, match="duration"):
            a.wait_durable(5, timeout=-1)


def test_wait_durable_waits_for_another_thread(tmp_path: Path) -> None:
    with ea.Applier(tmp_path / "r", pipelined=True, group_commit=8) as a:
        seen: list[bool] = []
        waiter = threading.Thread(target=lambda: seen.append(a.wait_durable(200, timeout=60)))
        waiter.start()
        for index, reg in enumerate(regs(200), start=1):
            a.apply(reg, index=index)
        waiter.join(60)
        assert seen == [True] and a.durable_index == 200


def test_classic_group_commit_wait_durable_commits_what_holds_the_index(tmp_path: Path) -> None:
    with ea.Applier(tmp_path / "r", group_commit=100, group_commit_ms=60_000) as a:
        a.apply(ea.Registration(1, A, 1), index=1)
        assert a.durable_index is None
        assert a.wait_durable(1)
        assert a.durable_index == 1 and a.staged == 0
        assert a.wait_durable(2, timeout=0) is False


def test_a_halt_commits_the_entries_before_it(tmp_path: Path) -> None:
    with ea.Applier(tmp_path / "r", pipelined=True, group_commit=100) as a:
        a.apply(ea.Registration(1, A, 3), index=1)
        a.apply(ea.Registration(1, B, 1), index=2)
        with pytest.raises(ea.LocalEpochRollbackError):
            a.apply(ea.Registration(1, A, 2), index=3)
        assert (a.durable_index, a.applied_index, a.staged) == (2, 2, 0)
        assert len(a.registry) == 2


def test_keyed_entries_and_batches_drain_the_pipeline_first(tmp_path: Path, cluster: WrapOracle) -> None:
    with ea.Applier(tmp_path / "r", kek=ea.FileKek(cluster.kek_path), pipelined=True, group_commit=100) as a:
        a.apply(ea.Registration(9, A, 1), index=1)
        assert a.apply_bootstrap(cluster.bootstrap(), index=2) == "bootstrapped"
        assert (a.durable_index, a.staged) == (2, 0)
        assert a.sidecar is not None and a.sidecar.raft_applied_index == 2
        a.apply(ea.Registration(9, B, 1), index=3)
        assert a.apply_many([ea.Registration(9, A, 2)], first_index=4) == ["advanced"]
        assert (a.durable_index, a.staged) == (4, 0) and len(a.registry) == 4
        # Staged lookups after the direct commits see them.
        assert a.apply(ea.Registration(9, A, 2), index=5) == "unchanged"
        assert a.apply(ea.Registration(9, A, 3), index=6) == "advanced"
    with ea.Registry(tmp_path / "r") as view:
        assert view.applied_index == 6 and view.get(9, A & 0xFFFF).last_seen_local_epoch == 3  # type: ignore[union-attr]


def test_staged_lookups_begin_no_read_transaction_per_entry(tmp_path: Path) -> None:
    n = 2000
    with ea.Applier(tmp_path / "r", pipelined=True, group_commit=64) as a:
        for index, reg in enumerate(regs(n, keys=1000), start=1):
            a.apply(reg, index=index)
        assert a.wait_durable(n, timeout=60)
        counters = test_support.pipeline_counters(a)
    assert counters is not None
    assert counters["lookups"] == n and counters["store_lookups"] > n // 2
    assert counters["store_lookups"] + counters["cache_hits"] == n
    # At most one snapshot renewal per commit (plus the first begin), never one per entry.
    assert counters["snapshots"] <= counters["commits"] + 1
    assert counters["commits"] < n


def test_each_key_is_read_from_the_store_once_then_from_the_row_cache(tmp_path: Path) -> None:
    n, keys = 3000, 50
    with ea.Applier(tmp_path / "r", pipelined=True, group_commit=64) as a:
        for index, reg in enumerate(regs(n, keys=keys), start=1):
            a.apply(reg, index=index)
        assert a.wait_durable(n, timeout=60)
        counters = test_support.pipeline_counters(a)
        # A drain (before a batch, a keyed entry, flush) empties the cache:
        # the batch's own commit is read back from the store.
        assert a.apply_many([ea.Registration(1, 0x10000, 100)], first_index=n + 1) == ["advanced"]
        assert a.apply(ea.Registration(1, 0x10000, 100), index=n + 2) == "unchanged"
        after = test_support.pipeline_counters(a)
    assert counters is not None and after is not None
    distinct = len({(r.dek_id, r.node_id16) for r in regs(n, keys=keys)})
    assert (counters["store_lookups"], counters["cache_hits"]) == (distinct, n - distinct)
    assert after["store_lookups"] == distinct + 1


def test_the_caller_seldom_finds_the_committer_holding_the_state_lock(tmp_path: Path) -> None:
    """The committer is woken just as the caller stages the next entries,
    and takes the state lock for a moment to take the group: a plain
    try-lock met it about once per commit (354 of 362 commits, measured),
    and every miss made the call give the GIL up, for a reader thread to
    keep 5 ms. A short spin gets the lock instead; a miss is left only for
    a committer preempted while it holds the lock."""
    n = 100_000
    entries = [r.to_entry() for r in regs(n)]
    with ea.Applier(tmp_path / "r", pipelined=True, group_commit=256) as a:
        for index, entry in enumerate(entries, start=1):
            a.apply(entry, index=index)
        assert a.wait_durable(n, timeout=120)
        counters = test_support.pipeline_counters(a)
    assert counters is not None and counters["commits"] >= 20, counters
    assert counters["lock_busy"] <= max(3, counters["commits"] // 10), counters


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 2), st.sampled_from([A, B]), st.integers(0, 4)), max_size=30),
    st.integers(1, 6),
)
def test_pipelined_equals_one_by_one(rows: list[tuple[int, int, int]], k: int) -> None:
    with (
        tempfile.TemporaryDirectory() as root,
        ea.Applier(Path(root) / "p", pipelined=True, group_commit=k) as piped,
        ea.Applier(Path(root) / "o") as one,
    ):
        for index, row in enumerate(rows, start=1):
            results: list[Any] = []
            for applier in (piped, one):
                try:
                    results.append(applier.apply(ea.Registration(*row), index=index))
                except ea.EncryptionApplyError as err:
                    results.append(type(err).__name__)
            assert results[0] == results[1]
            if not results[0].islower():  # a halt: the registry as after the entry before
                assert piped.registry.rows() == one.registry.rows()
                assert piped.durable_index == piped.applied_index == one.applied_index
        piped.flush()
        assert piped.registry.rows() == one.registry.rows()
        assert piped.durable_index == one.applied_index


# A host under the fsfault shim: the n-th data fsync fails on the committer.
FAULTED_HOST = """
import json, sys, encryption_applier as ea
directory, k = sys.argv[1], int(sys.argv[2])
regs = [ea.Registration(1 + i % 3, 0x10000 + i % 40, 1 + i // 40) for i in range(400)]
out = {}
a = ea.Applier(directory, pipelined=True, group_commit=k)
nxt, raised, outcomes = 1, None, {}
while nxt <= len(regs):
    try:
        outcomes[nxt] = a.apply(regs[nxt - 1], index=nxt)
        nxt += 1
    except ea.StorageError as e:
        raised = {"at": nxt, "replay_from": e.replay_from, "msg": str(e), "durable": a.durable_index,
                  "applied": a.applied_index}
        # Entries past the lost ones are refused until they are replayed.
        try:
            a.apply(regs[nxt - 1], index=nxt)
            raised["refused_past"] = False
        except ea.StorageError:
            raised["refused_past"] = True
        nxt = e.replay_from or 1
out["raised"] = raised
out["outcomes"] = [outcomes[i] for i in range(1, len(regs) + 1)]
out["durable_before_close"] = a.wait_durable(len(regs), timeout=60)
a.close()
with ea.Registry(directory) as v:
    out["applied"] = v.applied_index
    out["rows"] = [(r.dek_id, r.full_node_id, r.first_seen_local_epoch, r.last_seen_local_epoch) for r in v.rows()]
print(json.dumps(out))
"""


@pytest.mark.parametrize("k", [4, 64])
def test_a_failed_commit_on_the_committer_is_raised_by_the_next_call(tmp_path: Path, k: int) -> None:
    directory = tmp_path / "r"
    ea.Applier(directory).close()
    # A few commits in: the committer's data fsync fails once.
    r = traced(FAULTED_HOST, str(directory), str(k), under=tmp_path, fail="filesync:5:EIO", match="data.mdb")
    assert r.proc.returncode == 0, r.proc.stderr[-3000:]
    out = json.loads(r.proc.stdout.strip().splitlines()[-1])
    raised = out["raised"]
    assert raised is not None, "no commit failed"
    assert "were not committed" in raised["msg"] and "staged" in raised["msg"]
    assert raised["applied"] == raised["durable"]  # applied falls back to durable
    assert raised["replay_from"] == (raised["durable"] or 0) + 1
    assert raised["refused_past"] is True
    model = RegistryModel()
    expected = [
        model.apply_registration(reg.dek_id, reg.full_node_id, reg.local_epoch)
        for reg in [ea.Registration(1 + i % 3, 0x10000 + i % 40, 1 + i // 40) for i in range(400)]
    ]
    # Each replayed entry is decided against the registry the failed commit
    # left, not against rows it lost (which the row cache must drop).
    assert out["outcomes"] == expected
    assert out["applied"] == 400 and out["durable_before_close"] is True
    assert [tuple(r) for r in out["rows"]] == [
        (d, f, first, last) for (d, _n16), (f, first, last) in sorted(model.rows.items())
    ]


# A host whose committer fails (the n-th data fsync) while nothing is
# applied: then an index the failed group held is delivered again.
REDELIVERED_HOST = """
import json, sys, time, encryption_applier as ea
from encryption_applier._native import test_support
a = ea.Applier(sys.argv[1], pipelined=True, group_commit=4)
for i in range(1, 5):  # one group: the committer takes it and fails
    a.apply(ea.Registration(1, 0x10000 + i, 1), index=i)
deadline = time.monotonic() + 30
while test_support.pipeline_counters(a)["failure_pending"] == 0 and time.monotonic() < deadline:
    time.sleep(0.01)
durable = a.durable_index
try:
    outcome = a.apply(ea.Registration(1, 0x10000 + 4, 1), index=4)
except ea.StorageError as e:
    outcome = ["StorageError", e.replay_from]
print(json.dumps({"durable": durable, "again": outcome, "applied": a.applied_index}))
"""


def test_an_index_a_failed_group_lost_is_not_answered_skipped(tmp_path: Path) -> None:
    """The committer's failure moves the applied index back before any
    call answers "skipped" for an index the failed group held (it used to,
    until a call took the failure on its way to staging a new index)."""
    directory = tmp_path / "r"
    ea.Applier(directory).close()
    r = traced(REDELIVERED_HOST, str(directory), under=tmp_path, fail="filesync:1:EIO", match="data.mdb")
    assert r.proc.returncode == 0, r.proc.stderr[-3000:]
    out = json.loads(r.proc.stdout.strip().splitlines()[-1])
    assert out["durable"] is None, out
    assert out["again"] == ["StorageError", None], out  # None: replay from the start (nothing was durable)
    assert out["applied"] == out["durable"], out


def test_a_forked_child_does_not_use_the_parents_committer(tmp_path: Path) -> None:
    a = ea.Applier(tmp_path / "r", pipelined=True, group_commit=16)
    for index, reg in enumerate(regs(100), start=1):
        a.apply(reg, index=index)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            for use in (
                lambda: a.apply(ea.Registration(2, 0x7777_7777, 1), index=101),
                lambda: a.wait_durable(100, timeout=1),
                lambda: a.flush(),
            ):
                try:
                    use()
                except ea.StorageError as err:
                    assert "fork" in str(err)
                else:
                    raise AssertionError("an inherited pipelined applier was used after fork")
            a.close()  # only marks it closed here
            del a
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent carries on.
    assert a.apply(ea.Registration(2, 0x7777_7777, 1), index=101) == "inserted"
    assert a.wait_durable(101, timeout=60)
    a.close()
