"""Bootstrap and rotation with a file KEK (SPEC §5): the KEK file rules,
wrapping interop with pyca/cryptography, keystore, sidecar, every halt,
restart and crash convergence."""

import base64
import json
import os
import pickle
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import encryption_applier as ea
from encryption_applier._native import test_support

from helpers import NODE, OTHER, WrapOracle, aesgcm_unwrap, aesgcm_wrap, crash_applying, dump_raw, fingerprint

# ------------------------------------------------------------------ KEK files


def test_generate_writes_owner_only_32_bytes_and_refuses_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    kek = ea.FileKek.generate(path)
    info = path.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_size == 32
    assert kek.path == path
    with pytest.raises(ea.KEKFileError) as err:
        ea.FileKek.generate(path)
    assert err.value.reason == "exists"
    assert ea.FileKek(path).unwrap(kek.wrap(b"\x01" * 32)) == b"\x01" * 32


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_kek_of_wrong_size_is_refused(tmp_path: Path, size: int) -> None:
    path = tmp_path / "kek"
    path.write_bytes(b"\x00" * size)
    path.chmod(0o600)
    with pytest.raises(ea.KEKFileError, match="32 bytes") as err:
        ea.FileKek(path)
    assert err.value.reason == "wrong_size" and err.value.path == str(path)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o601, 0o620, 0o777])
def test_kek_with_group_or_other_bits_is_insecure(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "kek"
    path.write_bytes(os.urandom(32))
    path.chmod(mode)
    with pytest.raises(ea.InsecureKEKFileError) as err:
        ea.FileKek(path)
    assert isinstance(err.value, ea.KEKFileError)
    assert err.value.mode == mode and err.value.reason == "insecure_mode"
    assert f"0o{mode:03o}" in str(err.value)


def test_kek_owned_by_another_user_is_insecure(tmp_path: Path) -> None:
    # As root, give a well-formed KEK away; as anyone else, a root-owned
    # regular file is already another user's.
    if os.geteuid() == 0:
        path = tmp_path / "kek"
        path.write_bytes(os.urandom(32))
        path.chmod(0o600)
        os.chown(path, 65534, -1)
    else:
        path = Path("/etc/passwd")
    with pytest.raises(ea.InsecureKEKFileError) as err:
        ea.FileKek(path)
    assert err.value.reason == "foreign_owner" and err.value.mode is None
    assert f"uid {path.stat().st_uid}" in str(err.value) and f"uid {os.geteuid()}" in str(err.value)


def test_kek_must_be_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(ea.KEKFileError) as err:
        ea.FileKek(tmp_path)
    assert err.value.reason == "not_regular"
    with pytest.raises(ea.KEKFileError) as err:
        ea.FileKek("/dev/zero")
    assert err.value.reason == "not_regular"
    with pytest.raises(ea.KEKFileError) as err:
        ea.FileKek(tmp_path / "missing")
    assert err.value.reason == "io"


def test_kek_fifo_fails_fast_instead_of_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    # In a child with a timeout, so a regression hangs the child, not the suite.
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, encryption_applier as ea; ea.FileKek(sys.argv[1])", str(fifo)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0 and "KEKFileError" in proc.stderr and "not a regular file" in proc.stderr


def test_kek_through_a_symlink_is_checked_on_its_target(tmp_path: Path, kek_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(kek_path)
    assert ea.FileKek(link).unwrap(ea.FileKek(kek_path).wrap(b"\x05" * 32)) == b"\x05" * 32
    kek_path.chmod(0o644)
    with pytest.raises(ea.InsecureKEKFileError):
        ea.FileKek(link)


def test_wrap_layout_and_interop_with_pyca_cryptography(kek_path: Path) -> None:
    kek = ea.FileKek(kek_path)
    kek_bytes = kek_path.read_bytes()
    dek = os.urandom(32)
    wrapped = kek.wrap(dek)
    assert len(wrapped) == 60
    assert wrapped[12:44] != dek
    assert aesgcm_unwrap(kek_bytes, wrapped) == dek  # ours -> theirs
    theirs = aesgcm_wrap(kek_bytes, dek)
    assert kek.unwrap(theirs) == dek  # theirs -> ours
    assert kek.wrap(dek)[:12] != wrapped[:12]  # a fresh nonce each time


def test_unwrap_failures(kek_path: Path, tmp_path: Path) -> None:
    kek = ea.FileKek(kek_path)
    wrapped = kek.wrap(b"\x09" * 32)
    for bad in (b"", wrapped[:59], wrapped + b"\x00"):
        with pytest.raises(ea.KEKUnwrapError) as err:
            kek.unwrap(bad)
        assert err.value.reason == "length"
    for index in (0, 11, 12, 43, 44, 59):
        tampered = bytearray(wrapped)
        tampered[index] ^= 0x80
        with pytest.raises(ea.KEKUnwrapError) as err:
            kek.unwrap(bytes(tampered))
        assert err.value.reason == "tag"
    with pytest.raises(ea.KEKUnwrapError):
        ea.FileKek.generate(tmp_path / "other").unwrap(wrapped)
    with pytest.raises(ValueError, match="32 bytes"):
        kek.wrap(b"\x00" * 16)


def test_kek_repr_shows_path_and_cannot_be_pickled(kek_path: Path) -> None:
    kek = ea.FileKek(kek_path)
    assert repr(kek) == f"FileKek({str(kek_path)!r})".replace("'", '"')
    with pytest.raises(TypeError):
        pickle.dumps(kek)


# ------------------------------------------------------------------ bootstrap


def test_bootstrap_installs_keys_sidecar_and_rows(registry_dir: Path, cluster: WrapOracle) -> None:
    boot = cluster.bootstrap()
    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path)) as applier:
        assert applier.sidecar is None and len(applier.keystore) == 0
        assert applier.apply(boot.to_entry()) == "bootstrapped"
        keystore = applier.keystore
        assert keystore.ids() == [1, 2] and list(keystore) == [1, 2] and len(keystore) == 2
        assert 1 in keystore and 3 not in keystore and "x" not in keystore
        assert keystore.fingerprint(1) == fingerprint(cluster.deks[1])
        assert keystore.fingerprint(2) == fingerprint(cluster.deks[2])
        with pytest.raises(KeyError):
            keystore.fingerprint(3)
        assert applier.registry.rows() == [ea.RegistryRow(1, 1, NODE, 1, 1), ea.RegistryRow(2, 1, NODE, 1, 1)]
        sidecar = applier.sidecar
        assert sidecar == ea.read_sidecar(registry_dir / "keys.json")
        assert applier.sidecar_path == registry_dir.resolve() / "keys.json"
    assert sidecar is not None
    assert (sidecar.version, sidecar.active, sidecar.active_storage, sidecar.active_raft) == (
        2,
        {"storage": 1, "raft": 2},
        1,
        2,
    )
    assert sidecar.keys[1].purpose is ea.Purpose.STORAGE and sidecar.keys[2].purpose is ea.Purpose.RAFT
    assert sidecar.keys[1].wrapped == boot.wrapped_storage and sidecar.keys[1].local_epoch == 0
    created = sidecar.keys[1].created
    assert time.strftime("%Y-%m-%dT", time.gmtime()) in created or created.endswith("Z")
    # The file itself, read with the json module: elastickv's field names.
    path = registry_dir / "keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["version"] == 2 and doc["active"] == {"storage": 1, "raft": 2}
    assert list(doc) == [
        "version",
        "raft_applied_index",
        "storage_envelope_active",
        "storage_envelope_cutover_index",
        "raft_envelope_cutover_index",
        "active",
        "keys",
    ]
    assert doc["keys"]["1"]["purpose"] == "storage" and doc["keys"]["2"]["purpose"] == "raft"
    assert base64.b64decode(doc["keys"]["2"]["wrapped"], validate=True) == boot.wrapped_raft
    assert doc["keys"]["1"]["local_epoch"] == 0


def test_exact_replay_is_accepted_and_changes_nothing(registry_dir: Path, cluster: WrapOracle) -> None:
    boot = cluster.bootstrap()
    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path)) as applier:
        applier.apply_bootstrap(boot)
        before_file = (registry_dir / "keys.json").read_bytes()
        before_raw = applier.registry.rows()
        assert applier.apply_bootstrap(boot) == "unchanged"
        assert (registry_dir / "keys.json").read_bytes() == before_file
        assert applier.registry.rows() == before_raw


def test_second_bootstrap_halts(registry_dir: Path, cluster: WrapOracle) -> None:
    first = cluster.bootstrap()
    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path)) as applier:
        applier.apply_bootstrap(first)
        before = (registry_dir / "keys.json").read_bytes()
        for other in (
            cluster.bootstrap(3, 4),
            cluster.bootstrap(2, 1),
            # Same ids, other wrapped bytes (same DEKs under a new nonce).
            ea.Bootstrap(1, cluster.wrapped(1), 2, first.wrapped_raft, first.batch_registry),
        ):
            with pytest.raises(ea.AlreadyBootstrappedError, match="use rotation") as err:
                applier.apply_bootstrap(other)
            assert (err.value.active_storage, err.value.active_raft) == (1, 2)
            assert (err.value.storage_dek_id, err.value.raft_dek_id) == (other.storage_dek_id, other.raft_dek_id)
        assert (registry_dir / "keys.json").read_bytes() == before
        assert applier.keystore.ids() == [1, 2]


@pytest.mark.parametrize(
    ("storage", "raft", "rows", "reason", "dek_id"),
    [
        (3, 3, [], "same_ids", 3),
        (0, 2, [], "reserved_key_id", 0),
        (1, 0, [], "reserved_key_id", 0),
        (1, 2, [ea.Registration(1, NODE, 1), ea.Registration(7, NODE, 1)], "foreign_batch_row", 7),
    ],
)
def test_bootstrap_payload_rejections_write_nothing(
    registry_dir: Path, kek_path: Path, storage: int, raft: int, rows: list[ea.Registration], reason: str, dek_id: int
) -> None:
    kek = ea.FileKek(kek_path)
    boot = ea.Bootstrap(storage, kek.wrap(b"\x01" * 32), raft, kek.wrap(b"\x02" * 32), rows)
    with ea.Applier(registry_dir, kek=kek) as applier:
        with pytest.raises(ea.PayloadRejectedError) as err:
            applier.apply_bootstrap(boot)
        assert err.value.reason == reason and err.value.dek_id == dek_id
        assert applier.sidecar is None and len(applier.keystore) == 0
    assert dump_raw(registry_dir) == []


def test_bootstrap_that_does_not_unwrap_writes_nothing(registry_dir: Path, cluster: WrapOracle, tmp_path: Path) -> None:
    wrong = ea.FileKek.generate(tmp_path / "wrong")
    boot = cluster.bootstrap()
    with ea.Applier(registry_dir, kek=wrong) as applier:
        with pytest.raises(ea.KEKUnwrapError) as err:
            applier.apply_bootstrap(boot)
        assert (err.value.dek_id, err.value.purpose, err.value.reason) == (1, "storage", "tag")
        short = ea.Bootstrap(1, wrong.wrap(b"\x01" * 32), 2, b"\x00" * 59, [])
        with pytest.raises(ea.KEKUnwrapError) as err:
            applier.apply_bootstrap(short)
        assert (err.value.dek_id, err.value.purpose, err.value.reason) == (2, "raft", "length")
        assert applier.sidecar is None and len(applier.keystore) == 0
    assert dump_raw(registry_dir) == []
    assert not (registry_dir / "keys.json").exists()


def test_bootstrap_rows_are_all_or_none(registry_dir: Path, cluster: WrapOracle) -> None:
    rows = [ea.Registration(1, NODE, 1), ea.Registration(2, NODE, 1), ea.Registration(1, 0xFFFF_0001, 1)]
    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path)) as applier:
        with pytest.raises(ea.NodeIDCollisionError):
            applier.apply_bootstrap(cluster.bootstrap(rows=rows))
        assert applier.sidecar is None and len(applier.keystore) == 0
    assert dump_raw(registry_dir) == []
    # A batch may name one row twice: the second sees the first.
    rows = [ea.Registration(1, NODE, 1), ea.Registration(1, NODE, 3), ea.Registration(2, OTHER, 1)]
    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path)) as applier:
        assert applier.apply_bootstrap(cluster.bootstrap(rows=rows)) == "bootstrapped"
        assert applier.registry.rows() == [ea.RegistryRow(1, 1, NODE, 1, 3), ea.RegistryRow(2, 2, OTHER, 1, 1)]


# ------------------------------------------------------------------ rotation


def test_rotation_before_bootstrap_halts(registry_dir: Path, cluster: WrapOracle) -> None:
    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path)) as applier:
        with pytest.raises(ea.NotBootstrappedError) as err:
            applier.apply_rotation(cluster.rotation(3, ea.Purpose.STORAGE))
        assert err.value.dek_id == 3
    assert dump_raw(registry_dir) == []


def test_rotation_moves_only_its_purpose_and_keeps_old_keys(registry_dir: Path, cluster: WrapOracle) -> None:
    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path)) as applier:
        applier.apply_bootstrap(cluster.bootstrap())
        rot = cluster.rotation(3, ea.Purpose.STORAGE, epoch=2)
        assert applier.apply(rot.to_entry()) == "rotated"
        sidecar = applier.sidecar
        assert sidecar is not None and sidecar.active == {"storage": 3, "raft": 2}
        assert sorted(sidecar.keys) == [1, 2, 3] and sidecar.keys[3].purpose is ea.Purpose.STORAGE
        assert applier.keystore.ids() == [1, 2, 3]
        assert applier.keystore.fingerprint(3) == fingerprint(cluster.deks[3])
        assert applier.registry.get(3, 0x0001) == ea.RegistryRow(3, 1, NODE, 2, 2)
        assert applier.apply_rotation(rot) == "unchanged"
        raft_rot = cluster.rotation(4, ea.Purpose.RAFT, epoch=5)
        assert applier.apply_rotation(raft_rot) == "rotated"
        assert applier.sidecar.active == {"storage": 3, "raft": 4}  # type: ignore[union-attr]


def test_rotation_rejections(registry_dir: Path, cluster: WrapOracle) -> None:
    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path)) as applier:
        applier.apply_bootstrap(cluster.bootstrap())
        before_sidecar = (registry_dir / "keys.json").read_bytes()
        before_rows = applier.registry.rows()
        mismatch = ea.Rotation(3, ea.Purpose.STORAGE, cluster.wrapped(3), ea.Registration(2, NODE, 2))
        with pytest.raises(ea.PayloadRejectedError) as err:
            applier.apply_rotation(mismatch)
        assert err.value.reason == "proposer_dek_mismatch" and err.value.dek_id == 3
        zero = ea.Rotation(0, ea.Purpose.STORAGE, cluster.wrapped(3), ea.Registration(0, NODE, 2))
        with pytest.raises(ea.PayloadRejectedError) as err:
            applier.apply_rotation(zero)
        assert err.value.reason == "reserved_key_id"
        with pytest.raises(ea.PayloadRejectedError) as err:
            applier.apply_rotation(cluster.rotation(2, ea.Purpose.STORAGE))  # 2 is the raft key
        assert err.value.reason == "purpose_mismatch"
        conflicting = ea.Rotation(
            1, ea.Purpose.STORAGE, aesgcm_wrap(cluster.kek_bytes, b"\xee" * 32), ea.Registration(1, NODE, 2)
        )
        with pytest.raises(ea.KeyConflictError) as conflict:
            applier.apply_rotation(conflicting)
        assert conflict.value.dek_id == 1
        with pytest.raises(ea.KEKUnwrapError):
            applier.apply_rotation(ea.Rotation(5, ea.Purpose.RAFT, b"\x00" * 60, ea.Registration(5, NODE, 2)))
        with pytest.raises(ea.MalformedPayloadError):
            applier.apply_rotation(
                ea.Rotation(5, ea.Purpose.RAFT, cluster.wrapped(5), ea.Registration(5, NODE, 2), sub_tag=0x03)
            )
        # A rotation whose proposer registration halts writes nothing either.
        with pytest.raises(ea.NodeIDCollisionError):
            applier.apply_rotation(cluster.rotation(1, ea.Purpose.STORAGE, full=0xFFFF_0001))
        assert (registry_dir / "keys.json").read_bytes() == before_sidecar
        assert applier.registry.rows() == before_rows
        assert applier.keystore.ids() == [1, 2]


# ------------------------------------------------------------------ restart, sidecar


def test_restart_loads_keys_from_the_sidecar(registry_dir: Path, cluster: WrapOracle, tmp_path: Path) -> None:
    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path)) as applier:
        applier.apply_bootstrap(cluster.bootstrap())
        applier.apply_rotation(cluster.rotation(3, ea.Purpose.RAFT))
    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path)) as applier:
        assert applier.keystore.ids() == [1, 2, 3]
        assert [applier.keystore.fingerprint(i) for i in (1, 2, 3)] == [fingerprint(cluster.deks[i]) for i in (1, 2, 3)]
        assert applier.apply_rotation(cluster.rotation(4, ea.Purpose.STORAGE, epoch=3)) == "rotated"
    # The wrong KEK cannot open the sidecar's keys: refused at construction.
    with pytest.raises(ea.KEKUnwrapError):
        ea.Applier(registry_dir, kek=ea.FileKek.generate(tmp_path / "wrong"))
    # Without a KEK the registry still opens; bootstrap/rotation halt.
    with ea.Applier(registry_dir) as applier:
        assert applier.keystore is None and applier.sidecar is None
        with pytest.raises(ea.KEKNotConfiguredError):
            applier.apply_rotation(cluster.rotation(5, ea.Purpose.STORAGE))


# Each invalid sidecar, and the SidecarError code it must raise.
INVALID_SIDECARS = {
    b"{": "not_json",
    b"[]": "not_an_object",
    b'{"version": 3, "active": {"storage": 0, "raft": 0}, "keys": {}}': "unsupported_version",
    b'{"version": 0, "active": {"storage": 0, "raft": 0}, "keys": {}}': "unsupported_version",
    b'{"version": 1}': "bad_value",
}


@pytest.mark.parametrize("content", list(INVALID_SIDECARS))
def test_invalid_sidecar_is_refused_at_construction(registry_dir: Path, kek_path: Path, content: bytes) -> None:
    code = INVALID_SIDECARS[content]
    ea.Applier(registry_dir).close()
    (registry_dir / "keys.json").write_bytes(content)
    with pytest.raises(ea.SidecarError) as err:
        ea.Applier(registry_dir, kek=ea.FileKek(kek_path))
    assert err.value.path == str(registry_dir.resolve() / "keys.json")
    assert err.value.code == code and err.value.reason in str(err.value)
    with pytest.raises(ea.SidecarError) as again:
        ea.read_sidecar(registry_dir / "keys.json")
    assert again.value.code == code


def test_custom_sidecar_path_and_stale_tmp(tmp_path: Path, cluster: WrapOracle) -> None:
    sidecar_path = tmp_path / "elsewhere" / "sidecar.json"
    sidecar_path.parent.mkdir()
    stale = sidecar_path.with_name("sidecar.json.tmp")
    stale.write_text("{ torn")
    stale.chmod(0o644)
    with ea.Applier(tmp_path / "reg", kek=ea.FileKek(cluster.kek_path), sidecar=sidecar_path) as applier:
        assert applier.sidecar_path == sidecar_path
        applier.apply_bootstrap(cluster.bootstrap())
    assert not stale.exists()
    assert stat.S_IMODE(sidecar_path.stat().st_mode) == 0o600
    assert ea.read_sidecar(sidecar_path).active == {"storage": 1, "raft": 2}  # type: ignore[union-attr]
    assert not (tmp_path / "reg" / "keys.json").exists()
    assert ea.read_sidecar(tmp_path / "none.json") is None
    with pytest.raises(ValueError, match="kek"):
        ea.Applier(tmp_path / "reg2", sidecar=sidecar_path)


def test_relative_sidecar_path_is_resolved_once_at_open(
    tmp_path: Path, cluster: WrapOracle, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    with ea.Applier(tmp_path / "reg", kek=ea.FileKek(cluster.kek_path), sidecar="keys.json") as applier:
        assert applier.sidecar_path == tmp_path / "a" / "keys.json"
        monkeypatch.chdir(tmp_path / "b")
        applier.apply_bootstrap(cluster.bootstrap())
        assert applier.sidecar_path == tmp_path / "a" / "keys.json"
        # The sidecar it wrote is the one it checks: a second, different
        # bootstrap still halts after the chdir.
        with pytest.raises(ea.AlreadyBootstrappedError):
            applier.apply_bootstrap(cluster.bootstrap(storage=3, raft=4))
    assert (tmp_path / "a" / "keys.json").exists()
    assert not (tmp_path / "b" / "keys.json").exists()


def test_sidecar_that_is_not_a_small_regular_file_is_refused(
    tmp_path: Path, cluster: WrapOracle, registry_dir: Path
) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.json"
    with huge.open("wb") as f:  # sparse: costs no disk
        f.truncate(ea.MAX_SIDECAR_BYTES + 1)
    zero = tmp_path / "zero.json"
    zero.symlink_to("/dev/zero")
    code = """if True:
        import sys, encryption_applier as ea
        kek, reg, path = sys.argv[1:]
        for attempt in (lambda: ea.read_sidecar(path), lambda: ea.Applier(reg, kek=ea.FileKek(kek), sidecar=path)):
            try:
                attempt()
            except ea.SidecarError as err:
                assert err.path == path, err.path
                print(err)
            else:
                raise SystemExit("accepted")
    """
    for path, words in ((fifo, "not a regular file"), (zero, "not a regular file"), (huge, "bytes or more")):
        # In a child with a timeout, so a FIFO that blocks hangs the child, not the suite.
        proc = subprocess.run(
            [sys.executable, "-c", code, str(cluster.kek_path), str(registry_dir), str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.count(words) == 2, proc.stdout


def test_no_key_bytes_in_messages_reprs_or_sidecar(registry_dir: Path, cluster: WrapOracle) -> None:
    kek = ea.FileKek(cluster.kek_path)
    secrets = [cluster.kek_bytes, *cluster.deks.values()]
    texts: list[str] = [repr(kek)]
    with ea.Applier(registry_dir, kek=kek) as applier:
        applier.apply_bootstrap(cluster.bootstrap())
        texts += [repr(applier), repr(applier.keystore), repr(applier.sidecar), applier.sidecar.to_json()]  # type: ignore[union-attr]
        texts += [repr(k) for k in applier.sidecar.keys.values()]  # type: ignore[union-attr]
        for bad in (
            lambda: applier.apply_bootstrap(cluster.bootstrap(3, 4)),
            lambda: applier.apply_rotation(
                ea.Rotation(
                    1, ea.Purpose.STORAGE, aesgcm_wrap(cluster.kek_bytes, b"\xee" * 32), ea.Registration(1, NODE, 2)
                )
            ),
            lambda: applier.apply_rotation(ea.Rotation(5, 1, b"\x00" * 60, ea.Registration(5, NODE, 2))),
            lambda: kek.unwrap(b"\x00" * 60),
        ):
            with pytest.raises(ea.EncryptionError) as err:
                bad()
            texts += [str(err.value), repr(err.value), repr(vars(err.value))]
    blob = "\n".join(texts)
    for secret in secrets:
        assert secret.hex() not in blob
        assert secret.hex().upper() not in blob
        assert base64.b64encode(secret).decode() not in blob
        assert repr(secret) not in blob
        assert str(list(secret)) not in blob


# ------------------------------------------------------------------ crash convergence

FAULT_POINTS = [
    "after_unwrap",
    "after_keystore_install",
    "before_registry_commit",
    "after_registry_rows",
    "after_sidecar_write",
]


def state_of(directory: Path, kek_path: Path) -> dict:  # type: ignore[type-arg]
    """Sidecar (less creation times), keystore fingerprints and registry rows
    as seen by a freshly opened applier."""
    with ea.Applier(directory, kek=ea.FileKek(kek_path)) as applier:
        sidecar = applier.sidecar
        assert sidecar is not None
        doc = json.loads(sidecar.to_json())
        for key in doc["keys"].values():
            key.pop("created")
        return {
            "sidecar": doc,
            "fingerprints": {i: applier.keystore.fingerprint(i) for i in applier.keystore.ids()},  # type: ignore[union-attr]
            "rows": [(r.key, r.value) for r in applier.registry.rows()],
        }


def expected_rows(which: str, cluster: WrapOracle, tmp_path: Path) -> list[tuple[bytes, bytes]]:
    """The rows once the crashed entry's rows are committed."""
    boot, rot = entries(cluster)
    scratch = tmp_path / f"rows-{which}"
    with ea.Applier(scratch, kek=ea.FileKek(cluster.kek_path)) as applier:
        applier.apply_bootstrap(boot)
        if which == "rotation":
            applier.apply_rotation(rot)
        return [(r.key, r.value) for r in applier.registry.rows()]


def entries(cluster: WrapOracle) -> tuple[ea.Bootstrap, ea.Rotation]:
    return cluster.bootstrap(), cluster.rotation(3, ea.Purpose.STORAGE, epoch=2)


@pytest.mark.parametrize("point", FAULT_POINTS)
@pytest.mark.parametrize("which", ["bootstrap", "rotation"])
def test_crash_at_each_step_then_replay_converges(tmp_path: Path, cluster: WrapOracle, point: str, which: str) -> None:
    boot, rot = entries(cluster)
    reference = tmp_path / "reference"
    with ea.Applier(reference, kek=ea.FileKek(cluster.kek_path)) as applier:
        applier.apply_bootstrap(boot)
        applier.apply_rotation(rot)
    expected = state_of(reference, cluster.kek_path)

    directory = tmp_path / "crashed"
    if which == "rotation":
        with ea.Applier(directory, kek=ea.FileKek(cluster.kek_path)) as applier:
            applier.apply_bootstrap(boot)
    crash_applying(directory, cluster.kek_path, point, (boot if which == "bootstrap" else rot).to_entry())
    # The order: rows, then keys.json, then the index. A crash after the
    # rows leaves rows keys.json does not need yet; after keys.json, every
    # row it needs is there.
    if point == "after_sidecar_write":
        assert (directory / "keys.json").exists()
    if point in ("after_registry_rows", "after_sidecar_write"):
        with ea.Registry(directory) as view:
            assert [(r.key, r.value) for r in view.rows()] == expected_rows(which, cluster, tmp_path)
    # A restarted applier replays the log from the entry that crashed (the
    # ones before it were applied and acknowledged).
    with ea.Applier(directory, kek=ea.FileKek(cluster.kek_path)) as applier:
        if which == "bootstrap":
            assert applier.apply_bootstrap(boot) in {"bootstrapped", "unchanged"}
        assert applier.apply_rotation(rot) in {"rotated", "unchanged"}
        # Replaying the newest entry once more is a no-op.
        assert applier.apply_rotation(rot) == "unchanged"
    assert state_of(directory, cluster.kek_path) == expected
    # The crash never left a torn sidecar behind.
    json.loads((directory / "keys.json").read_text())


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_a_raised_fault_leaves_a_state_that_replays(registry_dir: Path, cluster: WrapOracle, point: str) -> None:
    boot, _ = entries(cluster)
    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path)) as applier:
        test_support.set_fault(applier, point)
        with pytest.raises(ea.StorageError, match=point):
            applier.apply_bootstrap(boot)
        test_support.set_fault(applier, None)
        # The same applier (no restart) converges too.
        assert applier.apply_bootstrap(boot) in {"bootstrapped", "unchanged"}
        assert applier.keystore.ids() == [1, 2]
        assert len(applier.registry) == 2


def test_symlink_swapped_during_loads_never_yields_the_insecure_file(tmp_path: Path) -> None:
    """A thread keeps swapping a symlink between an owner-only KEK and a
    world-readable one while loads run: each load sees one file through one
    descriptor, so it either loads the good key or refuses the bad file —
    it never returns the bad file's bytes."""
    import threading

    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_bytes(b"\x11" * 32)
    good.chmod(0o600)
    bad.write_bytes(b"\x22" * 32)
    bad.chmod(0o644)
    link, staging = tmp_path / "kek", tmp_path / "kek.new"
    link.symlink_to(good)
    probe = aesgcm_wrap(b"\x11" * 32, b"\x33" * 32)
    stop = threading.Event()

    def swap() -> None:
        targets = [bad, good]
        n = 0
        while not stop.is_set():
            staging.unlink(missing_ok=True)
            staging.symlink_to(targets[n % 2])
            os.replace(staging, link)
            n += 1

    swapper = threading.Thread(target=swap)
    swapper.start()
    loaded = refused = 0
    try:
        for _ in range(3000):
            try:
                kek = ea.FileKek(link)
            except ea.InsecureKEKFileError:
                refused += 1
            except ea.KEKFileError as err:
                assert err.reason == "io"  # the link was mid-replace
            else:
                assert kek.unwrap(probe) == b"\x33" * 32  # the good key, always
                loaded += 1
    finally:
        stop.set()
        swapper.join()
    assert loaded > 0 and refused > 0, (loaded, refused)
