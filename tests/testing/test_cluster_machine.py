"""ClusterMachine (the state machine users subclass) and the promise that
no documented pattern leaves a directory behind."""

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis.stateful import rule

import encryption_applier as ea
from encryption_applier.testing import Cluster, ClusterMachine, temporary_kek, temporary_registry
from encryption_applier.testing.strategies import valid_streams

from helpers import run_user_tests

TestClusterMachine = ClusterMachine.TestCase


class GroupCommitCluster(ClusterMachine):
    group_commit = 4


TestGroupCommitCluster = GroupCommitCluster.TestCase


class ProcessCluster(ClusterMachine):
    mode = "process"


ProcessCluster.TestCase.settings = settings(ProcessCluster.TestCase.settings, max_examples=3)
TestProcessCluster = pytest.mark.slow(ProcessCluster.TestCase)


def test_subclasses_start_from_the_quick_defaults() -> None:
    for machine in (ClusterMachine, GroupCommitCluster):
        assert machine.TestCase.settings.max_examples == 10
        assert machine.TestCase.settings.stateful_step_count == 15


def test_the_machine_can_fail() -> None:
    class Colliding(ClusterMachine):
        @rule()
        def collide(self) -> None:
            # Another node under a member's node_id16: every replica halts.
            member = self.cluster[0].full_node_id
            self.cluster.propose(ea.Registration(1, member ^ (1 << 40), 0))

    with pytest.raises(AssertionError, match="halted at index"):
        Colliding.TestCase("runTest").runTest()


def test_the_default_machine_runs_clean() -> None:
    # (How long its defaults take is a figure, not a test: about a second.)
    ClusterMachine.TestCase("runTest").runTest()


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary directory of this test's own for `tempfile` (other
    processes on the machine use the shared one meanwhile)."""
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    monkeypatch.setenv("TMPDIR", str(private))
    return private


def test_no_documented_pattern_leaves_a_directory(private_tmp: Path) -> None:
    ClusterMachine.TestCase("runTest").runTest()

    @settings(max_examples=20)
    @given(stream=valid_streams(max_size=5))
    def per_example(stream) -> None:  # type: ignore[no-untyped-def]
        with temporary_kek() as kek, temporary_registry() as path, ea.Applier(path, kek=kek) as applier:
            applier.apply_many(stream.entries)

    per_example()
    with Cluster(2, mode="inprocess") as c:
        c.bootstrap()
        assert c.root.parent == private_tmp
    with Cluster(2, mode="process") as c:
        c.bootstrap()
    assert os.listdir(private_tmp) == []


USER_CLUSTER_TEST = """
import os, tempfile
import encryption_applier as ea
from encryption_applier.testing import ClusterMachine

TestMachine = ClusterMachine.TestCase


def test_the_fixture(ea_cluster):
    ea_cluster.bootstrap()
    ea_cluster.crash(1)
    ea_cluster.propose(ea.Registration(1, ea_cluster[0].full_node_id, 1))
    ea_cluster.restart(1)
    assert ea_cluster.assert_agree() == [0, 1, 2]
    print("ROOT", ea_cluster.root)
"""


@pytest.mark.slow
def test_a_users_project_gets_the_fixture_and_the_machine(tmp_path: Path, private_tmp: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    stdout = run_user_tests(project, USER_CLUSTER_TEST, passed=2)
    root = Path(next(line for line in stdout.splitlines() if "ROOT " in line).split("ROOT ", 1)[1].strip())
    assert not root.exists() and root.parent == private_tmp
    assert os.listdir(private_tmp) == []  # (the child's TMPDIR)
