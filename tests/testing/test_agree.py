"""assert_replicas_agree: rows, applied indexes, the cluster-wide sidecar
fields and keystores, for any number of replicas; assert_registries_equal
is its rows-only comparison."""

import base64
import json
from pathlib import Path

import pytest

import encryption_applier as ea
from encryption_applier.testing import CLUSTER_WIDE_FIELDS, assert_registries_equal, assert_replicas_agree
from encryption_applier.testing.agree import PER_NODE_KEY_FIELDS

from helpers import NODE, OTHER, WrapOracle


def replicas(tmp_path: Path, oracle: WrapOracle, n: int = 3) -> list[Path]:
    """`n` registries that applied one bootstrap (the same bytes) at index 1."""
    boot = oracle.bootstrap()
    paths = [tmp_path / f"r{i}" for i in range(n)]
    for path in paths:
        with ea.Applier(path, kek=ea.FileKek(oracle.kek_path)) as applier:
            applier.apply(boot.to_entry(), index=1)
    return paths


def test_replicas_that_applied_the_same_log_agree(tmp_path: Path, cluster: WrapOracle) -> None:
    paths = replicas(tmp_path, cluster)
    assert_replicas_agree(*paths)
    kek = ea.FileKek(cluster.kek_path)
    with ea.Applier(paths[0], kek=kek) as a, ea.Registry(paths[1]) as b:
        assert_replicas_agree(a, b, str(paths[2]))
    # Per-node fields are not compared: a local epoch bumped on one replica.
    ea.bump_local_epoch(paths[2] / "keys.json", 1)
    assert_replicas_agree(*paths)
    # The documented list is what keys.json holds at its top level (read
    # from the file itself), and the per-node fields are a key's.
    on_disk = json.loads((paths[0] / "keys.json").read_text())
    assert tuple(on_disk) == CLUSTER_WIDE_FIELDS
    assert all(set(PER_NODE_KEY_FIELDS) <= set(key) for key in on_disk["keys"].values())


def test_differing_rows_name_the_replica_and_the_rows(tmp_path: Path, cluster: WrapOracle) -> None:
    paths = replicas(tmp_path, cluster)
    with ea.Applier(paths[2]) as a:
        a.apply(ea.Registration(1, NODE, 4))  # no index: only the row differs
    with pytest.raises(AssertionError) as caught:
        assert_replicas_agree(*paths)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"replicas disagree with replica 0 ({paths[0]}):"
    row = "dek_id=1 node_id16=0x0001 full_node_id=0x00000000abcd0001 first_seen_local_epoch=1 last_seen_local_epoch="
    assert lines[1:] == [
        f"  replica 2 ({paths[2]}):",
        "    rows differ: 0 row(s) only in replica 0, 0 only in replica 2, 1 changed",
        f"    < {row}1",
        f"    > {row}4",
    ]


def test_differing_indexes_and_sidecar_fields_are_named(tmp_path: Path, cluster: WrapOracle) -> None:
    paths = replicas(tmp_path, cluster)
    kek = ea.FileKek(cluster.kek_path)
    with ea.Applier(paths[1], kek=kek) as a:
        a.apply(cluster.rotation(3, ea.Purpose.STORAGE, epoch=1).to_entry(), index=2)
    with pytest.raises(AssertionError) as caught:
        assert_replicas_agree(*paths)
    message = str(caught.value)
    assert f"replica 1 ({paths[1]}):" in message and "replica 2" not in message
    assert "applied_index: 1 != 2" in message
    assert "sidecar[active][storage]: 1 != 3" in message and "sidecar[active][raft]" not in message
    assert "sidecar[raft_applied_index]: 1 != 2" in message
    # The key as keys.json holds it (Go's base64 wrap), less its per-node fields.
    wrapped = base64.b64encode(cluster.wrapped_bytes(paths[1], 3)).decode()
    (line,) = [x for x in message.splitlines() if "sidecar[keys][3]" in x]
    assert line.strip().startswith("sidecar[keys][3]: '<absent>' != {") and wrapped in line and "'storage'" in line
    assert "created" not in line and "local_epoch" not in line
    assert "sidecar[keys][1]" not in message
    # Without sidecars, the rows and index still differ (the proposer row).
    with pytest.raises(AssertionError, match="applied_index") as caught:
        assert_replicas_agree(*paths, sidecars=False)
    assert "sidecar" not in str(caught.value)


def test_only_one_replica_with_a_sidecar_is_a_difference(tmp_path: Path, cluster: WrapOracle) -> None:
    (keyed,) = replicas(tmp_path, cluster, n=1)
    a, b = tmp_path / "a", tmp_path / "b"
    for path in (a, b):
        with ea.Applier(path) as applier:
            applier.apply(ea.Registration(1, OTHER, 1), index=1)
    assert_replicas_agree(a, b)
    (b / "keys.json").write_bytes((keyed / "keys.json").read_bytes())
    with pytest.raises(AssertionError, match="sidecar: only replica 1 has keys.json"):
        assert_replicas_agree(a, b)
    assert_replicas_agree(a, b, sidecars=False)


def test_keystores_of_appliers_are_compared(tmp_path: Path, cluster: WrapOracle) -> None:
    paths = replicas(tmp_path, cluster, n=2)
    kek = ea.FileKek(cluster.kek_path)
    with ea.Applier(paths[0], kek=kek) as a, ea.Applier(paths[1], kek=kek) as b:
        assert_replicas_agree(a, b)
    # Same sidecar, same rows, another DEK behind id 1 in one keystore: a
    # keyed applier of another KEK could not open it, so compare the
    # fingerprints the keystores report, the only view of key bytes.
    from encryption_applier.testing.agree import ReplicaState, disagreements

    state = ReplicaState("x", paths[0], 1, None, {1: "aaaa", 2: "bbbb"})
    other = ReplicaState("y", paths[1], 1, None, {1: "aaaa", 2: "cccc"})
    assert disagreements([(paths[0], state), (paths[1], other)]) == [("y", ["keystore[2]: 'bbbb' != 'cccc'"])]


def test_one_replica_is_not_a_comparison(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="two replicas or more"):
        assert_replicas_agree(tmp_path)


def test_assert_registries_equal_compares_rows_only(tmp_path: Path, cluster: WrapOracle) -> None:
    paths = replicas(tmp_path, cluster, n=2)
    kek = ea.FileKek(cluster.kek_path)
    with ea.Applier(paths[1], kek=kek) as a:
        a.apply(cluster.rotation(3, ea.Purpose.STORAGE, epoch=1, full=OTHER).to_entry(), index=2)
    with pytest.raises(AssertionError) as caught:
        assert_registries_equal(paths[0], paths[1])
    assert str(caught.value).splitlines()[0] == "registries differ: 0 row(s) only in a, 1 only in b, 0 changed"
