"""encryption_applier.testing.Cluster: replicas on one log, crashes (in
process and as real SIGKILLs), replay, halts, partitions, joins,
rotations, cutovers and epoch bumps. The rows each step must leave are the
plain-Python model's (testing.model), not the harness's own word."""

from pathlib import Path

import pytest

import encryption_applier as ea
from encryption_applier.testing import Cluster, RegistryModel, assert_registry_matches_model, temporary_kek

MODES = ["inprocess", pytest.param("process", marks=pytest.mark.slow)]


def booted_model(cluster: Cluster) -> RegistryModel:
    """The rows a bootstrap of `cluster` leaves: each member under keys 1
    and 2 at epoch 0."""
    model = RegistryModel()
    for r in cluster:
        for dek in (1, 2):
            assert model.apply_registration(dek, r.full_node_id, 0) == "inserted"
    return model


def gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


def test_the_fixture_gives_three_replicas_of_their_own(ea_cluster: Cluster) -> None:
    assert len(ea_cluster) == 3 and [r.raft_id for r in ea_cluster] == ["n1", "n2", "n3"]
    assert [r.full_node_id for r in ea_cluster] == [ea.derive_node_id(f"n{i}") for i in (1, 2, 3)]
    assert len({r.path for r in ea_cluster}) == 3 and all(r.path.parent == ea_cluster.root for r in ea_cluster)
    assert ea_cluster.bootstrap() == 1
    model = booted_model(ea_cluster)
    for r in ea_cluster:
        assert_registry_matches_model(r.path, model)
        sidecar = ea.read_sidecar(r.sidecar_path)
        assert sidecar is not None and sidecar.active == {"storage": 1, "raft": 2}
    assert ea_cluster.assert_agree() == [0, 1, 2]


@pytest.mark.parametrize("mode", MODES)
def test_a_crash_loses_what_was_staged_and_the_restart_replays_it(tmp_path: Path, mode: str) -> None:
    with Cluster(3, group_commit=100, mode=mode, root=tmp_path) as c:
        c.bootstrap()
        model = booted_model(c)
        node = c[0].full_node_id
        for epoch in (1, 2, 3):
            c.propose(ea.Registration(1, node, epoch))
        pid = c[1].pid
        c.crash(1)
        if mode == "process":
            assert pid is not None and gone(pid)
        # Killed: only the bootstrap (a keyed entry commits at once) is there.
        with ea.Registry(c[1].path) as view:
            assert view.applied_index == 1
        assert_registry_matches_model(c[1].path, model)
        for epoch in (1, 2, 3):
            assert model.apply_registration(1, node, epoch) == "advanced"
        c.propose(ea.Registration(1, node, 4))
        assert model.apply_registration(1, node, 4) == "advanced"
        assert c.restart(1, register=False) == []
        # Replayed from durable_index + 1 = 2: applied again, not skipped.
        assert [c[1].outcomes[i] for i in (2, 3, 4, 5)] == ["advanced"] * 4
        assert c.assert_agree() == [0, 1, 2]
        for r in c:
            assert_registry_matches_model(r.path, model)


def test_a_crash_without_group_commit_loses_nothing(tmp_path: Path) -> None:
    with Cluster(2, root=tmp_path) as c:
        c.bootstrap()
        c.propose(ea.Registration(1, c[0].full_node_id, 5))
        c[0].outcomes.clear()
        c.crash(0)
        with ea.Registry(c[0].path) as view:
            assert view.applied_index == 2
        c.restart(0, register=False)
        assert c[0].fed == 2 and c[0].outcomes == {}  # nothing to replay
        c.assert_agree()


@pytest.mark.slow
def test_every_child_is_killed_and_reaped_at_teardown(tmp_path: Path) -> None:
    pids = []
    with pytest.raises(RuntimeError, match="the test failed"), Cluster(3, mode="process", root=tmp_path) as c:
        c.bootstrap()
        pids = [r.pid for r in c]
        assert all(p is not None and not gone(p) for p in pids)
        raise RuntimeError("the test failed")
    assert len(pids) == 3 and all(p is not None and gone(p) for p in pids)
    assert all(r.pid is None for r in c)


@pytest.mark.slow
def test_a_child_that_hangs_is_killed_not_waited_for(tmp_path: Path) -> None:
    import os
    import signal

    from encryption_applier.testing import _replica

    with temporary_kek() as kek:
        child = _replica.ChildReplica(tmp_path / "r", kek, None, True)
        pid = child.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # alive, and answering nothing
        with pytest.raises(RuntimeError, match=f"replica process {pid} gave no reply to 'flush' in 0.5 s"):
            child._call("flush", timeout=0.5)
        assert gone(pid)


@pytest.mark.slow
def test_process_mode_refuses_a_kek_it_cannot_hand_to_a_child(tmp_path: Path) -> None:
    class PyKek:
        def wrap(self, dek: bytes) -> bytes:
            return dek

        def unwrap(self, wrapped: bytes) -> bytes:
            return wrapped

        def identity(self) -> str:
            return "py"

    with pytest.raises(TypeError, match="needs a FileKek"):
        Cluster(1, kek=PyKek(), mode="process", root=tmp_path)


def test_a_halting_replica_stops_and_the_others_go_on(tmp_path: Path) -> None:
    with Cluster(3, root=tmp_path) as c:
        c.bootstrap()
        # Replica 2 diverged, behind the log's back: it holds a row the
        # others do not. An entry that collides with it halts replica 2 only.
        intruder = 0x1234_0000_0000_0000 | ea.node_id16(0xBEEF)
        c[2].driver.applier.apply(ea.Registration(7, intruder, 1))
        planted = ea.Registration(7, 0xBEEF, 1)
        expected = RegistryModel({(7, 0xBEEF): (intruder, 1, 1)}).apply_registration(7, 0xBEEF, 1)
        index = c.propose(planted)
        assert len(c.halts) == 1
        halt = c.halts[0]
        assert (halt.replica, halt.raft_id, halt.index) == (2, "n3", index)
        assert isinstance(halt.exception, ea.NodeIDCollisionError)
        assert not isinstance(expected, str)
        for name, value in expected.attrs.items():
            assert getattr(halt.exception, name) == value
        later = c.propose(ea.Registration(1, c[0].full_node_id, 1))
        assert c[2].fed == index - 1 and c[0].fed == c[1].fed == later
        assert later not in c[2].outcomes
        assert c.assert_agree() == [0, 1]


def test_an_entry_that_halts_everywhere_is_recorded_per_replica(tmp_path: Path) -> None:
    with Cluster(3, root=tmp_path) as c:
        c.bootstrap()
        node = c[1].full_node_id
        c.propose(ea.Registration(1, node, 3))
        index = c.propose(ea.Registration(1, node, 2))  # a rollback
        assert [(h.replica, h.index, type(h.exception)) for h in c.halts] == [
            (i, index, ea.LocalEpochRollbackError) for i in range(3)
        ]
        assert c.caught_up() == [] and c.assert_agree() == []
        # A restart replays the log and halts at the same entry again.
        c.stop(0)
        c.restart(0)
        assert c[0].halt is not None and c[0].halt.index == index and len(c.halts) == 4


def test_a_partitioned_replica_misses_a_suffix_and_catches_up(tmp_path: Path) -> None:
    with Cluster(3, root=tmp_path, group_commit=2) as c:
        c.bootstrap()
        c.partition(2)
        for epoch in (1, 2, 3):
            c.propose(ea.Registration(1, c[0].full_node_id, epoch))
        assert c[2].fed == 1 and c.assert_agree() == [0, 1]
        c.heal(2)
        assert c[2].fed == 4 and c.assert_agree() == [0, 1, 2]


def colliding_raft_id(node16: int) -> str:
    """A raft id whose derived node id shares `node16`."""
    for i in range(1_000_000):
        if ea.node_id16(ea.derive_node_id(f"x{i}")) == node16:
            return f"x{i}"
    raise AssertionError("none found")  # pragma: no cover


def test_join_derives_the_node_id_and_is_refused_on_a_collision(tmp_path: Path) -> None:
    with Cluster(3, root=tmp_path) as c:
        c.bootstrap()
        raft_id = colliding_raft_id(ea.node_id16(c[1].full_node_id))
        log = len(c.log)
        with pytest.raises(ea.WriterUint16CollisionError) as caught:
            c.join(raft_id)
        assert caught.value.existing_full_node_id == c[1].full_node_id
        assert caught.value.incoming_full_node_id == ea.derive_node_id(raft_id)
        assert len(c) == 3 and len(c.log) == log and not (tmp_path / raft_id).exists()
        joiner = c.join("n4")
        assert joiner.full_node_id == ea.derive_node_id("n4") and joiner.number == 3
        # The pre-join registrations (epoch 0, storage key then Raft key) went through the log.
        assert [ea.decode_entry(e) for e in c.log[log:]] == [
            ea.Registration(1, joiner.full_node_id, 0),
            ea.Registration(2, joiner.full_node_id, 0),
        ]
        assert joiner.fed == len(c.log)
        assert c.assert_agree() == [0, 1, 2, 3]


def test_rotations_cutovers_and_epoch_bumps(tmp_path: Path) -> None:
    with Cluster(3, root=tmp_path) as c:
        c.bootstrap()
        storage = c.rotate("storage")
        raft = c.rotate("raft", by=1)
        assert (storage, raft) == (3, 4)
        c.cutover("storage")
        cut = c.cutover("raft")
        c.assert_agree()
        sidecar = ea.read_sidecar(c[2].sidecar_path)
        assert sidecar is not None
        assert sidecar.active == {"storage": 3, "raft": 4}
        assert sidecar.storage_envelope_active and sidecar.raft_envelope_cutover_index == cut
        with ea.Registry(c[0].path) as view:
            proposer = view.get(4, ea.node_id16(c[1].full_node_id))
        assert proposer is not None and proposer.full_node_id == c[1].full_node_id
        # A clean restart bumps the node's epochs and proposes its re-registration.
        proposed = c.bump_epoch(1)
        node = c[1].full_node_id
        assert proposed == [ea.Registration(3, node, 1), ea.Registration(4, node, 1)]
        assert c[1].writer is not None and (c[1].writer.storage_epoch, c[1].writer.raft_epoch) == (1, 1)
        with ea.Registry(c[0].path) as view:
            row = view.get(3, ea.node_id16(node))
        assert row is not None and row.last_seen_local_epoch == 1
        assert c.bump_epoch(1) == [ea.Registration(3, node, 2), ea.Registration(4, node, 2)]
        c.assert_agree()
        assert not c.halts


def test_assert_agree_names_the_replica_and_what_differs(tmp_path: Path) -> None:
    with Cluster(3, root=tmp_path) as c:
        c.bootstrap()
        c[1].driver.applier.apply(ea.Registration(9, 0x77, 1))  # behind the harness's back
        with pytest.raises(AssertionError) as caught:
            c.assert_agree()
        message = str(caught.value)
        assert "replica 1 (n2)" in message and "replica 2" not in message
        assert "rows differ: 0 row(s) only in replica 0 (n1), 1 only in replica 1 (n2), 0 changed" in message
        assert "> dek_id=9 node_id16=0x0077 full_node_id=0x0000000000000077" in message


def test_its_own_root_and_kek_go_at_close() -> None:
    with Cluster(2) as c:  # its own temporary root, and a generated KEK
        c.bootstrap()
        root, kek = c.root, c.kek.path
        assert root.is_dir() and kek.exists()
    assert not root.exists() and not kek.exists() and not kek.parent.exists()
    c.close()  # again: nothing to do


def test_a_join_before_the_bootstrap_refuses_a_shared_prefix(tmp_path: Path) -> None:
    with Cluster(2, root=tmp_path) as c:
        with pytest.raises(ValueError, match="shares its node_id16 with a member"):
            c.join(colliding_raft_id(ea.node_id16(c[0].full_node_id)))
        joiner = c.join("n3")
        assert c.log == [] and joiner.number == 2
        c.bootstrap()  # the joiner is a member: a row of its own under each key
        with ea.Registry(c[0].path) as view:
            assert view.get(1, ea.node_id16(joiner.full_node_id)) is not None
        assert c.assert_agree() == [0, 1, 2]
