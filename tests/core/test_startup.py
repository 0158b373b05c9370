"""elastickv's startup guards (SPEC §7, parity study N3): every refusal in
Go's order, with its Go error's name."""

import os
from pathlib import Path

import pytest

import encryption_applier as ea

from fsfault import traced_ok
from helpers import NODE, Cluster, edit_sidecar


def sentinels(refusals: list[ea.StartupRefusedError]) -> list[str]:
    return [r.sentinel for r in refusals]


def test_a_healthy_node_may_start(booted: Path, cluster: Cluster) -> None:
    kek = ea.FileKek(cluster.kek_path)
    edit_sidecar(booted, epoch_1=1)  # the bootstrap rows are at epoch 1
    with ea.Registry(booted) as registry:
        assert (
            ea.diagnose_startup(
                encryption_enabled=True,
                kek=kek,
                sidecar_path=booted / "keys.json",
                registry=registry,
                full_node_id=NODE,
                members=[NODE, 0x2222_0002],
            )
            == []
        )
    assert ea.diagnose_startup(encryption_enabled=False) == []
    # the filesystem probe leaves nothing behind
    assert not [p for p in os.listdir(booted) if p.startswith(".encryption-probe")]


def test_sidecar_without_the_flag_and_flag_without_kek(booted: Path) -> None:
    (refusal,) = ea.diagnose_startup(encryption_enabled=False, sidecar_path=booted / "keys.json")
    assert isinstance(refusal, ea.SidecarPresentWithoutFlagError) and refusal.path == str(booted / "keys.json")
    assert refusal.sentinel == "ErrSidecarPresentWithoutFlag" and "cleartext" in (refusal.meaning or "")
    (refusal,) = ea.diagnose_startup(encryption_enabled=True, sidecar_path=booted / "keys.json")
    assert isinstance(refusal, ea.KEKRequiredWithFlagError)
    with pytest.raises(ea.KEKRequiredWithFlagError):
        ea.check_startup(encryption_enabled=True)


def test_a_kek_that_does_not_open_the_sidecar(booted: Path, tmp_path: Path) -> None:
    other = ea.FileKek.generate(tmp_path / "other.kek")
    (refusal,) = ea.diagnose_startup(encryption_enabled=True, kek=other, sidecar_path=booted / "keys.json")
    assert isinstance(refusal, ea.KEKMismatchError)
    assert (refusal.dek_id, refusal.purpose) == (1, "storage")  # ascending ids: the first that fails


def test_an_exhausted_active_key(booted: Path, cluster: Cluster) -> None:
    kek = ea.FileKek(cluster.kek_path)
    edit_sidecar(booted, epoch_2=0xFFFF)
    (refusal,) = ea.diagnose_startup(encryption_enabled=True, kek=kek, sidecar_path=booted / "keys.json")
    assert isinstance(refusal, ea.LocalEpochExhaustedError) and (refusal.dek_id, refusal.purpose) == (2, "raft")
    edit_sidecar(booted, epoch_1=0xFFFF)  # storage is checked first, and only one is reported
    (refusal,) = ea.diagnose_startup(encryption_enabled=True, kek=kek, sidecar_path=booted / "keys.json")
    assert (refusal.dek_id, refusal.purpose) == (1, "storage")


def test_the_filesystem_probe_needs_the_directory(tmp_path: Path, cluster: Cluster) -> None:
    with pytest.raises(OSError, match="fsync probe"):
        ea.diagnose_startup(
            encryption_enabled=True, kek=ea.FileKek(cluster.kek_path), sidecar_path=tmp_path / "missing" / "keys.json"
        )


def test_member_collisions_only_once_a_storage_key_is_active(booted: Path, cluster: Cluster, tmp_path: Path) -> None:
    kek = ea.FileKek(cluster.kek_path)
    members = [NODE, 0, NODE, (0x9999 << 16) | (NODE & 0xFFFF)]
    (refusal,) = ea.diagnose_startup(
        encryption_enabled=True, kek=kek, sidecar_path=booted / "keys.json", members=members
    )
    assert isinstance(refusal, ea.StartupNodeIDCollisionError)
    assert (refusal.first_full_node_id, refusal.second_full_node_id) == (NODE, members[3])
    # before bootstrap (no sidecar) the guard does not run
    assert (
        ea.diagnose_startup(encryption_enabled=True, kek=kek, sidecar_path=tmp_path / "keys.json", members=members)
        == []
    )


def test_local_epoch_rollback(booted: Path, cluster: Cluster) -> None:
    kek = ea.FileKek(cluster.kek_path)
    sidecar = booted / "keys.json"

    def check(phase: str, full: int = NODE) -> list[ea.StartupRefusedError]:
        with ea.Registry(booted) as registry:
            return ea.diagnose_startup(  # type: ignore[no-any-return]
                encryption_enabled=True,
                kek=kek,
                sidecar_path=sidecar,
                registry=registry,
                full_node_id=full,
                phase=phase,  # type: ignore[arg-type]
            )

    # The bootstrap row is at epoch 1 and the sidecar's storage key at 0.
    (refusal,) = check("pre-bump")
    assert isinstance(refusal, ea.StartupLocalEpochRollbackError)
    assert (refusal.problem, refusal.sidecar_epoch, refusal.last_seen, refusal.phase) == ("behind", 0, 1, "pre-bump")
    edit_sidecar(booted, epoch_1=1)
    assert check("pre-bump") == []  # equal is fine before the bump...
    (refusal,) = check("post-replay")  # ...but not after replay
    assert (refusal.problem, refusal.phase) == ("behind", "post-replay")
    edit_sidecar(booted, epoch_1=2)
    assert check("post-replay") == []
    # another node's row at this node's prefix
    (refusal,) = check("pre-bump", full=(0x9999 << 16) | (NODE & 0xFFFF))
    assert (refusal.problem, refusal.owner_full_node_id) == ("foreign_row", NODE)
    # no row: fine until the storage layer is cut over
    assert check("pre-bump", full=0x4444_0004) == []
    edit_sidecar(booted, storage_envelope_active=True)
    (refusal,) = check("pre-bump", full=0x4444_0004)
    assert refusal.problem == "no_row"
    with pytest.raises(ValueError, match="phase"):
        check("later")


def test_envelope_cutover_divergence(booted: Path, cluster: Cluster) -> None:
    kek = ea.FileKek(cluster.kek_path)
    args = {"encryption_enabled": True, "kek": kek, "sidecar_path": booted / "keys.json"}
    assert ea.diagnose_startup(**args, snapshot_cutover_index=0) == []  # type: ignore[arg-type]
    (refusal,) = ea.diagnose_startup(**args, snapshot_cutover_index=7)  # type: ignore[arg-type]
    assert isinstance(refusal, ea.EnvelopeCutoverDivergenceError)
    assert (refusal.snapshot_cutover_index, refusal.sidecar_cutover_index) == (7, 0)
    edit_sidecar(booted, raft_envelope_cutover_index=7)
    assert ea.diagnose_startup(**args, snapshot_cutover_index=7) == []  # type: ignore[arg-type]


def test_sidecar_behind_the_raft_log(booted: Path, cluster: Cluster) -> None:
    kek = ea.FileKek(cluster.kek_path)
    args = {"encryption_enabled": True, "kek": kek, "sidecar_path": booted / "keys.json"}
    registration = ea.Registration(1, NODE, 3).to_entry()
    rotation = cluster.rotation(3, ea.Purpose.STORAGE).to_entry()
    # raft_applied_index is 1 (the bootstrap); the engine is at 5
    log = [(1, b"\x04"), (2, registration), (3, b""), (4, rotation), (6, rotation)]
    (refusal,) = ea.diagnose_startup(**args, engine_applied_index=5, log=log)  # type: ignore[arg-type]
    assert isinstance(refusal, ea.SidecarBehindRaftLogError)
    assert (refusal.sidecar_applied_index, refusal.engine_applied_index, refusal.entry_index, refusal.opcode) == (
        1,
        5,
        4,
        ea.OP_ROTATION,
    )
    # only registrations in the gap: fine; the engine's index from the registry by default
    assert ea.diagnose_startup(**args, engine_applied_index=5, log=log[:3]) == []  # type: ignore[arg-type]
    # The registry's applied index stands in for the engine's when none is given.
    with ea.Registry(booted) as registry:
        assert ea.diagnose_startup(**args, registry=registry, log=log) == []  # type: ignore[arg-type]
    with ea.Applier(booted) as applier:
        applier.apply_registration(ea.Registration(1, NODE, 1), index=5)  # the sidecar stays at 1
    with ea.Registry(booted) as registry:
        (refusal,) = ea.diagnose_startup(**args, registry=registry, log=log)  # type: ignore[arg-type]
        assert (refusal.engine_applied_index, refusal.entry_index) == (5, 4)
    # a sidecar that never recorded an index is skipped (Go only warns)
    edit_sidecar(booted, raft_applied_index=0)
    assert ea.diagnose_startup(**args, engine_applied_index=5, log=log) == []  # type: ignore[arg-type]


def test_every_refusal_in_gos_order_and_check_raises_the_first(booted: Path, tmp_path: Path) -> None:
    other = ea.FileKek.generate(tmp_path / "other.kek")
    edit_sidecar(booted, epoch_1=0xFFFF)
    members = [NODE, (0x9999 << 16) | (NODE & 0xFFFF)]
    refusals = ea.diagnose_startup(
        encryption_enabled=True,
        kek=other,
        sidecar_path=booted / "keys.json",
        members=members,
        full_node_id=0x4444_0004,
        snapshot_cutover_index=3,
    )
    assert sentinels(refusals) == [
        "ErrEnvelopeCutoverDivergence",  # main.go runs it before the KEK is loaded
        "ErrKEKMismatch",
        "ErrLocalEpochExhausted",
        "ErrNodeIDCollision",
    ]
    with pytest.raises(ea.KEKMismatchError):
        ea.check_startup(encryption_enabled=True, kek=other, sidecar_path=booted / "keys.json", members=members)


def test_check_startup_stops_at_the_first_refusal_as_go(tmp_path: Path) -> None:
    # No KEK, and a sidecar directory that does not exist: Go refuses for the
    # KEK and never probes the directory (which would be an OSError).
    missing = tmp_path / "missing" / "keys.json"
    with pytest.raises(ea.KEKRequiredWithFlagError):
        ea.check_startup(encryption_enabled=True, sidecar_path=missing)
    with pytest.raises(OSError, match="fsync probe"):
        ea.diagnose_startup(encryption_enabled=True, sidecar_path=missing)


def test_divergence_reads_the_sidecar_without_a_kek(booted: Path) -> None:
    edit_sidecar(booted, raft_envelope_cutover_index=7)
    refusals = ea.diagnose_startup(encryption_enabled=True, sidecar_path=booted / "keys.json", snapshot_cutover_index=7)
    assert sentinels(refusals) == ["ErrKEKRequiredWithFlag"]  # no false divergence


def test_doctor_cli(booted: Path, cluster: Cluster, tmp_path: Path) -> None:
    import subprocess
    import sys

    def doctor(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "encryption_applier", "doctor", str(booted), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    edit_sidecar(booted, epoch_1=1)
    done = doctor("--kek", str(cluster.kek_path), "--full-node-id", hex(NODE))
    assert done.returncode == 0 and "\nok: no startup guard refuses\n" in done.stdout, done
    other = ea.FileKek.generate(tmp_path / "other.kek")
    done = doctor("--kek", str(other.path), "--member", hex(NODE), "--member", hex((0x9999 << 16) | (NODE & 0xFFFF)))
    assert done.returncode == 1, done
    assert "REFUSED ErrKEKMismatch (KEKMismatchError)" in done.stdout
    assert "REFUSED ErrNodeIDCollision" in done.stdout
    done = doctor("--encryption-disabled")
    assert done.returncode == 1 and "ErrSidecarPresentWithoutFlag" in done.stdout


def test_a_filesystem_whose_fsync_fails_is_refused(booted: Path, cluster: Cluster) -> None:
    """The filesystems the guard exists for (NFS and FUSE mounts that cannot
    make writes durable), without needing one: the fsfault shim fails every
    fsync of a file, or of a directory, under the sidecar's directory."""
    child = """
import sys, encryption_applier as ea
refusals = ea.diagnose_startup(
    encryption_enabled=True, kek=ea.FileKek(sys.argv[2]), sidecar_path=sys.argv[1] + "/keys.json"
)
for r in refusals:
    print(type(r).__name__, r.sentinel, r.path, "|", r.detail, "|", r)
"""
    for kind, failing in (("filesync", "fsync of a file"), ("dirsync", "fsync of the directory")):
        run = traced_ok(
            child,
            str(booted),
            str(cluster.kek_path),
            under=booted.resolve(),
            fail=f"{kind}:1:EIO",
            repeat=True,
        )
        (line,) = run.proc.stdout.splitlines()
        assert line.startswith(f"UnsupportedFilesystemError ErrUnsupportedFilesystem {booted.resolve()} |"), line
        assert f"| {failing}: Input/output error" in line, line
    # The probe cleaned up after itself, and without the shim the guard passes.
    assert not list(booted.glob(".encryption-probe-*"))
    assert (
        ea.diagnose_startup(
            encryption_enabled=True, kek=ea.FileKek(cluster.kek_path), sidecar_path=booted / "keys.json"
        )
        == []
    )
