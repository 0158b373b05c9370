"""Node ids before joining (SPEC §7, parity study N4): elastickv's id
derivation, 16-bit collisions, the pre-join check and the admin's
bootstrap builder. The FNV-1a oracle here is written from its definition."""

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import encryption_applier as ea

from helpers import NODE, WrapOracle


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def test_derive_node_id_pinned() -> None:
    assert ea.derive_node_id("a") == 0xAF63DC4C8601EC8C
    assert ea.derive_node_id("n1") == 0x08B37B07B558D4C0
    assert ea.derive_node_id("") == 0


@given(st.text())
def test_derive_node_id_is_fnv1a_of_utf8(raft_id: str) -> None:
    if not raft_id:
        assert ea.derive_node_id(raft_id) == 0
    else:
        assert ea.derive_node_id(raft_id) == (fnv1a64(raft_id.encode()) or 1)


def test_node_id16_and_collisions() -> None:
    assert ea.node_id16(0xABCD_1234) == 0x1234
    with pytest.raises(OverflowError):
        ea.node_id16(-1)
    a, b, c = 0x1_0007, 0x2_0007, 0x3_0008
    assert ea.find_node_id_collisions([a, 0, a, c, b, b, 0x4_0007]) == [(a, b), (a, 0x4_0007)]
    assert ea.find_node_id_collisions([]) == []


def test_check_join(registry_dir: Path, cluster: WrapOracle) -> None:
    joiner = 0x7777_0009
    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path)) as applier:
        applier.apply_bootstrap(cluster.bootstrap(), index=1)
        view = applier.registry
        assert view.check_join(joiner, 1, 2) == [ea.Registration(1, joiner, 0), ea.Registration(2, joiner, 0)]
        assert view.check_join(joiner, 1) == [ea.Registration(1, joiner, 0)]
        assert view.check_join(NODE, 1, 2) == []  # already registered under both
        assert view.check_join(joiner, 0, 2) == []  # not bootstrapped: nothing to check (as Go)
        with pytest.raises(ea.WriterUint16CollisionError) as err:
            view.check_join((0x9999 << 16) | (NODE & 0xFFFF), 1, 2)
        e = err.value
        assert (e.dek_id, e.node_id16, e.existing_full_node_id) == (1, NODE & 0xFFFF, NODE)
        assert isinstance(e, ea.StartupRefusedError) and e.sentinel == "ErrWriterUint16Collision"
        # after registering what the check asked for, the join is clean
        for row in view.check_join(joiner, 1, 2):
            applier.apply_registration(row)
        assert applier.registry.check_join(joiner, 1, 2) == []


def test_bootstrap_for_cluster() -> None:
    boot = ea.Bootstrap.for_cluster(1, b"s" * 60, 2, b"r" * 60, [(0xA_0001, 3), (0xB_0002, 0)])
    assert list(boot.batch_registry) == [
        ea.Registration(1, 0xA_0001, 3),
        ea.Registration(2, 0xA_0001, 3),
        ea.Registration(1, 0xB_0002, 0),
        ea.Registration(2, 0xB_0002, 0),
    ]
    assert ea.Bootstrap.decode(boot.encode()) == boot
    bad = [
        ((0, b"s", 2, b"r", [(1, 0)]), "non-zero"),
        ((1, b"s", 1, b"r", [(1, 0)]), "must differ"),
        ((1, b"", 2, b"r", [(1, 0)]), "wrapped_storage is 0 bytes"),
        ((1, b"s", 2, b"r" * 4097, [(1, 0)]), "wrapped_raft is 4097 bytes"),
        ((1, b"s", 2, b"r", []), "at least one"),
        ((1, b"s", 2, b"r", [(0, 0)]), "non-zero"),
        ((1, b"s", 2, b"r", [(5, 0), (5, 1)]), "repeats"),
        ((1, b"s", 2, b"r", [(0x1_0005, 0), (0x2_0005, 1)]), "share node_id16=0x0005"),
        ((1, b"s", 2, b"r", [(i + 1, 0) for i in range(8193)]), "over the 16384-row bound"),
    ]
    for args, words in bad:
        with pytest.raises(ValueError, match=words):
            ea.Bootstrap.for_cluster(*args)  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        ea.Bootstrap.for_cluster(1, b"s", 2, b"r", [(1, 0x10000)])


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "encryption_applier", *args], capture_output=True, text=True, timeout=60
    )


def test_probe_node_id_cli(registry_dir: Path, cluster: WrapOracle) -> None:
    done = cli("probe-node-id", "--raft-id", "n1")
    assert done.returncode == 0
    assert done.stdout == (
        f"full_node_id: 0x08b37b07b558d4c0 ({0x08B37B07B558D4C0})\nnode_id:      0xd4c0 ({0xD4C0})\n"
    )
    assert cli("probe-node-id", "--full-node-id", "0x10").stdout.startswith("full_node_id: 0x0000000000000010 (16)")
    assert cli("probe-node-id", "--full-node-id", "nope").returncode == 2
    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path)) as applier:
        applier.apply_bootstrap(cluster.bootstrap(), index=1)
    done = cli("probe-node-id", "--full-node-id", str(0x7777_0009), "--registry", str(registry_dir))
    assert done.returncode == 0 and "join: ok after registering Registration(" in done.stdout, done
    colliding = (0x9999 << 16) | (NODE & 0xFFFF)
    done = cli("probe-node-id", "--full-node-id", hex(colliding), "--registry", str(registry_dir))
    assert done.returncode == 1 and "join: REFUSED" in done.stdout and done.stderr == ""
