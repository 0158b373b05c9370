"""Local epochs (SPEC §7, parity study N2): what a rotated key records,
and how a node moves its epochs at start so no nonce can come again."""

from pathlib import Path

import pytest

import encryption_applier as ea

from helpers import NODE, OTHER, WrapOracle, sidecar_json, write_sidecar_json


def test_a_rotated_key_records_the_pinned_epoch_of_its_purpose(booted: Path, cluster: WrapOracle) -> None:
    assert {k["local_epoch"] for k in sidecar_json(booted)["keys"].values()} == {0}  # bootstrap keys
    with ea.Applier(booted, kek=ea.FileKek(cluster.kek_path), local_epoch=7, raft_local_epoch=9) as applier:
        applier.apply_rotation(cluster.rotation(3, ea.Purpose.STORAGE, epoch=7), index=2)
        applier.apply_rotation(cluster.rotation(4, ea.Purpose.RAFT, epoch=9), index=3)
        keys = applier.sidecar.keys  # type: ignore[union-attr]
    assert (keys[3].local_epoch, keys[4].local_epoch, keys[1].local_epoch) == (7, 9, 0)
    with pytest.raises(OverflowError):
        ea.Applier(booted, kek=ea.FileKek(cluster.kek_path), local_epoch=0x10000)


def test_reinstalling_a_key_with_another_wrap_replaces_wrapped_and_created(booted: Path, cluster: WrapOracle) -> None:
    with ea.Applier(booted, kek=ea.FileKek(cluster.kek_path)) as applier:
        first = cluster.rotation(3, ea.Purpose.STORAGE, epoch=2)
        applier.apply_rotation(first, index=2)
    doc = sidecar_json(booted)
    doc["keys"]["3"]["created"] = "2020-01-01T00:00:00Z"
    write_sidecar_json(booted, doc)
    with ea.Applier(booted, kek=ea.FileKek(cluster.kek_path), local_epoch=5) as applier:
        # an exact replay keeps created, and records the epoch pinned now
        applier.apply_rotation(first, index=3)
        key = applier.sidecar.keys[3]  # type: ignore[union-attr]
        assert (key.created, key.wrapped, key.local_epoch) == ("2020-01-01T00:00:00Z", first.wrapped, 5)
        # the same DEK wrapped again (a new nonce): wrapped and created replaced
        again = cluster.rotation(3, ea.Purpose.STORAGE, epoch=3)
        assert again.wrapped != first.wrapped
        applier.apply_rotation(again, index=4)
        key = applier.sidecar.keys[3]  # type: ignore[union-attr]
        assert key.wrapped == again.wrapped and key.created != "2020-01-01T00:00:00Z"
        # other key bytes under the id are still a conflict
        other = ea.Rotation(3, ea.Purpose.STORAGE, cluster.wrapped(5), ea.Registration(3, NODE, 4))
        with pytest.raises(ea.KeyConflictError):
            applier.apply_rotation(other, index=5)


def test_bump_local_epoch(booted: Path, tmp_path: Path) -> None:
    path = booted / "keys.json"
    assert ea.bump_local_epoch(path, 1) == 1
    assert ea.bump_local_epoch(path, 1) == 2
    assert sidecar_json(booted)["keys"]["1"]["local_epoch"] == 2  # durable
    assert sidecar_json(booted)["keys"]["2"]["local_epoch"] == 0
    with pytest.raises(ValueError, match="reserved"):
        ea.bump_local_epoch(path, 0)
    with pytest.raises(ea.SidecarError, match="no key dek_id=9") as err:
        ea.bump_local_epoch(path, 9)
    assert err.value.code == "no_such_key"
    with pytest.raises(ea.SidecarError, match="not bootstrapped") as err:
        ea.bump_local_epoch(tmp_path / "none.json", 1)
    assert err.value.code == "not_bootstrapped"
    doc = sidecar_json(booted)
    doc["keys"]["2"]["local_epoch"] = 0xFFFF
    write_sidecar_json(booted, doc)
    before = path.read_bytes()
    with pytest.raises(ea.LocalEpochExhaustedError) as err:
        ea.bump_local_epoch(path, 2)
    assert (err.value.dek_id, err.value.path, err.value.sentinel) == (2, str(path), "ErrLocalEpochExhausted")
    assert isinstance(err.value, ea.StartupRefusedError) and not isinstance(err.value, ea.EncryptionApplyError)
    assert path.read_bytes() == before


def test_prepare_epochs(booted: Path, cluster: WrapOracle, tmp_path: Path) -> None:
    path = booted / "keys.json"
    assert ea.prepare_epochs(tmp_path / "none.json") == (0, 0)
    assert ea.prepare_epochs(path) == (1, 0)  # the Raft layer is not cut over
    assert ea.prepare_epochs(path) == (2, 0)
    with ea.Applier(booted, kek=ea.FileKek(cluster.kek_path)) as applier:
        cutover = ea.Rotation(2, ea.Purpose.RAFT, b"", ea.Registration(2, NODE, 1), sub_tag=ea.ENABLE_RAFT_ENVELOPE)
        assert applier.apply_rotation(cutover, index=2) == "enabled"
    assert ea.prepare_epochs(path) == (3, 1)
    keys = sidecar_json(booted)["keys"]
    assert (keys["1"]["local_epoch"], keys["2"]["local_epoch"]) == (3, 1)
    # the Raft epoch does not depend on a storage key (as Go)
    write_sidecar_json(booted, sidecar_json(booted) | {"active": {"storage": 0, "raft": 2}})
    assert ea.prepare_epochs(path) == (0, 2)
    # a refusal writes nothing: cut over, but no active Raft key
    write_sidecar_json(booted, sidecar_json(booted) | {"active": {"storage": 1, "raft": 0}})
    before = path.read_bytes()
    with pytest.raises(ea.SidecarError, match="no active Raft key") as err:
        ea.prepare_epochs(path)
    assert err.value.code == "raft_cut_over_without_raft_key"
    assert path.read_bytes() == before


def test_record_own_epochs_raises_each_key_to_the_nodes_own_row(booted: Path, cluster: WrapOracle) -> None:
    # booted: keys 1 and 2 at local epoch 0, NODE's rows under both at epoch 1.
    kek = ea.FileKek(cluster.kek_path)
    with ea.Applier(booted, kek=kek) as applier:
        assert applier.record_own_epochs(NODE) == {1: (0, 1), 2: (0, 1)}
        before = (booted / "keys.json").read_bytes()
        assert applier.record_own_epochs(NODE) == {}  # nothing moves: keys.json is not rewritten
        assert (booted / "keys.json").read_bytes() == before
        applier.apply_registration(ea.Registration(1, NODE, 3))
        applier.apply_registration(ea.Registration(2, OTHER, 9))  # another node's row: not this node's epoch
        assert applier.record_own_epochs(NODE) == {1: (1, 3)}
        assert applier.record_own_epochs(0x7777_0009) == {}  # a node without rows
        # A row at this node's prefix that is another node's: the collision.
        with pytest.raises(ea.NodeIDCollisionError):
            applier.record_own_epochs((0x9999 << 16) | (NODE & 0xFFFF))
        with pytest.raises(ValueError, match="non-zero"):
            applier.record_own_epochs(0)
    sidecar = ea.read_sidecar(booted / "keys.json")
    assert sidecar is not None
    assert {i: k.local_epoch for i, k in sidecar.keys.items()} == {1: 3, 2: 1}
    with ea.Applier(booted) as applier, pytest.raises(ea.KEKNotConfiguredError):
        applier.record_own_epochs(NODE)
