"""elastickv's startup guards (SPEC §7, parity study N3): every refusal in
Go's order, with its Go error's name."""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import encryption_applier as ea

from fsfault import traced_ok
from helpers import NODE, WrapOracle, edit_sidecar


def sentinels(refusals: list[ea.StartupRefusedError]) -> list[str]:
    return [r.sentinel for r in refusals]


def test_a_healthy_node_may_start(booted: Path, cluster: WrapOracle) -> None:
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


def test_an_exhausted_active_key(booted: Path, cluster: WrapOracle) -> None:
    kek = ea.FileKek(cluster.kek_path)
    edit_sidecar(booted, epoch_2=0xFFFF)
    (refusal,) = ea.diagnose_startup(encryption_enabled=True, kek=kek, sidecar_path=booted / "keys.json")
    assert isinstance(refusal, ea.LocalEpochExhaustedError) and (refusal.dek_id, refusal.purpose) == (2, "raft")
    edit_sidecar(booted, epoch_1=0xFFFF)  # storage is checked first, and only one is reported
    (refusal,) = ea.diagnose_startup(encryption_enabled=True, kek=kek, sidecar_path=booted / "keys.json")
    assert (refusal.dek_id, refusal.purpose) == (1, "storage")


def test_the_filesystem_probe_needs_the_directory(tmp_path: Path, cluster: WrapOracle) -> None:
    with pytest.raises(OSError, match="fsync probe"):
        ea.diagnose_startup(
            encryption_enabled=True, kek=ea.FileKek(cluster.kek_path), sidecar_path=tmp_path / "missing" / "keys.json"
        )


def test_member_collisions_only_once_a_storage_key_is_active(booted: Path, cluster: WrapOracle, tmp_path: Path) -> None:
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


def test_local_epoch_rollback(booted: Path, cluster: WrapOracle) -> None:
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


def test_envelope_cutover_divergence(booted: Path, cluster: WrapOracle) -> None:
    kek = ea.FileKek(cluster.kek_path)
    args = {"encryption_enabled": True, "kek": kek, "sidecar_path": booted / "keys.json"}
    assert ea.diagnose_startup(**args, snapshot_cutover_index=0) == []  # type: ignore[arg-type]
    (refusal,) = ea.diagnose_startup(**args, snapshot_cutover_index=7)  # type: ignore[arg-type]
    assert isinstance(refusal, ea.EnvelopeCutoverDivergenceError)
    assert (refusal.snapshot_cutover_index, refusal.sidecar_cutover_index) == (7, 0)
    edit_sidecar(booted, raft_envelope_cutover_index=7)
    assert ea.diagnose_startup(**args, snapshot_cutover_index=7) == []  # type: ignore[arg-type]


def test_sidecar_behind_the_raft_log(booted: Path, cluster: WrapOracle) -> None:
    kek = ea.FileKek(cluster.kek_path)
    args = {"encryption_enabled": True, "kek": kek, "sidecar_path": booted / "keys.json"}
    registration = ea.Registration(1, NODE, 3).to_entry()
    rotation = cluster.rotation(3, ea.Purpose.STORAGE).to_entry()
    # raft_applied_index is 1 (the bootstrap); the engine is at 5; entries 1 to 6
    log = [b"\x04", registration, b"", rotation, registration, rotation]
    (refusal,) = ea.diagnose_startup(**args, engine_applied_index=5, log=log, log_first_index=1)  # type: ignore[arg-type]
    assert isinstance(refusal, ea.SidecarBehindRaftLogError)
    assert (refusal.sidecar_applied_index, refusal.engine_applied_index, refusal.entry_index, refusal.opcode) == (
        1,
        5,
        4,
        ea.OP_ROTATION,
    )
    assert "entry 4 (opcode 0x05) lies in between" in str(refusal)
    # Only registrations and an empty entry in the gap (entries 2 to 3): fine.
    assert ea.diagnose_startup(**args, engine_applied_index=3, log=log, log_first_index=1) == []  # type: ignore[arg-type]
    # The registry's applied index stands in for the engine's when none is given.
    with ea.Registry(booted) as registry:
        assert ea.diagnose_startup(**args, registry=registry, log=log, log_first_index=1) == []  # type: ignore[arg-type]
    with ea.Applier(booted) as applier:
        applier.apply_registration(ea.Registration(1, NODE, 1), index=5)  # the sidecar stays at 1
    with ea.Registry(booted) as registry:
        (refusal,) = ea.diagnose_startup(**args, registry=registry, log=log, log_first_index=1)  # type: ignore[arg-type]
        assert (refusal.engine_applied_index, refusal.entry_index) == (5, 4)
    # a sidecar that never recorded an index is skipped (Go only warns)
    edit_sidecar(booted, raft_applied_index=0)
    assert ea.diagnose_startup(**args, engine_applied_index=5, log=log, log_first_index=1) == []  # type: ignore[arg-type]


def test_a_gap_nobody_can_inspect_is_refused(booted: Path, cluster: WrapOracle) -> None:
    """The guard fails closed: no log at all is Go's guard without a
    scanner (ErrSidecarBehindRaftLog); a log that misses part of the gap is
    the package's own refusal (Go's scanner fails on the range there)."""
    kek = ea.FileKek(cluster.kek_path)
    args = {"encryption_enabled": True, "kek": kek, "sidecar_path": booted / "keys.json"}
    edit_sidecar(booted, raft_applied_index=5)
    (refusal,) = ea.diagnose_startup(**args, engine_applied_index=10)  # type: ignore[arg-type]
    assert isinstance(refusal, ea.SidecarBehindRaftLogError)
    assert (refusal.entry_index, refusal.opcode, refusal.sentinel) == (None, None, "ErrSidecarBehindRaftLog")
    assert "no Raft log was given" in str(refusal)
    (refusal,) = ea.diagnose_startup(**args, engine_applied_index=10, log=[], log_first_index=6)  # type: ignore[arg-type]
    assert isinstance(refusal, ea.RaftLogGapUncoveredError)
    assert (refusal.log_first_index, refusal.log_last_index, refusal.sentinel) == (None, None, None)
    assert str(refusal).startswith("RaftLogGapUncovered: ") and "entries 6..=10" in str(refusal)
    filler = [b"\x00"] * 10
    for first, count in ((7, 4), (6, 4), (2, 3)):  # starts late, ends early, wholly before
        (refusal,) = ea.diagnose_startup(  # type: ignore[arg-type]
            **args, engine_applied_index=10, log=filler[:count], log_first_index=first
        )
        assert isinstance(refusal, ea.RaftLogGapUncoveredError), (first, count)
        assert (refusal.log_first_index, refusal.log_last_index) == (first, first + count - 1)
        assert f"holds entries {first}..={first + count - 1} only" in str(refusal)
    # exactly the gap, or more on both sides: covered, and nothing in it
    assert ea.diagnose_startup(**args, engine_applied_index=10, log=filler[:5], log_first_index=6) == []  # type: ignore[arg-type]
    assert ea.diagnose_startup(**args, engine_applied_index=10, log=filler, log_first_index=3) == []  # type: ignore[arg-type]
    # no gap: nothing to inspect, whatever the log
    assert ea.diagnose_startup(**args, engine_applied_index=5) == []  # type: ignore[arg-type]
    with pytest.raises(ea.RaftLogGapUncoveredError):
        ea.check_startup(**args, engine_applied_index=10, log=[], log_first_index=6)  # type: ignore[arg-type]


def gap_oracle(
    sidecar: int, engine: int, first: int | None, opcodes: list[int | None] | None
) -> tuple[str, int | None] | None:
    """Guard 8 as audit.go and main_encryption_startup_guard.go state it, on
    plain values: (refusal kind, entry index) or None."""
    if sidecar == 0 or sidecar >= engine:
        return None  # Go only warns at 0; no gap otherwise
    if opcodes is None or first is None:
        return ("behind", None)  # no scanner: fail closed
    last = first + len(opcodes) - 1
    if not opcodes or first > sidecar + 1 or last < engine:
        return ("uncovered", None)
    for index, opcode in enumerate(opcodes, start=first):
        if sidecar < index <= engine and opcode is not None and 0x04 <= opcode <= 0x07:
            return ("behind", index)
    return None


@st.composite
def gaps(draw: st.DrawFn) -> tuple[int, int, tuple[int, list[int | None]] | None]:
    """A sidecar index, an engine index and a log whose ends fall near the
    gap's ends (where coverage is decided), or no log."""
    sidecar = draw(st.integers(0, 12))
    engine = max(0, sidecar + draw(st.integers(-2, 6)))
    if not draw(st.integers(0, 5)):
        return sidecar, engine, None
    first = max(1, sidecar + draw(st.integers(-2, 3)))
    last = engine + draw(st.integers(-2, 2))
    length = max(0, last - first + 1) if draw(st.integers(0, 5)) else draw(st.integers(0, 3))
    # Mostly entries that do not write the sidecar, so the first one that
    # does falls anywhere in the gap, its ends included.
    opcode = st.none() | st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x08, 0x09]) | st.integers(0x04, 0x07)
    opcodes = draw(st.lists(opcode, min_size=length, max_size=length))
    return sidecar, engine, (first, opcodes)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=gaps())
def test_the_gap_guard_matches_its_model(
    booted: Path, cluster: WrapOracle, case: tuple[int, int, tuple[int, list[int | None]] | None]
) -> None:
    sidecar, engine, log = case
    edit_sidecar(booted, raft_applied_index=sidecar)
    first, opcodes = log if log is not None else (None, None)
    entries = None if opcodes is None else [b"" if op is None else bytes([op, 1, 2]) for op in opcodes]
    refusals = ea.diagnose_startup(
        encryption_enabled=True,
        kek=ea.FileKek(cluster.kek_path),
        sidecar_path=booted / "keys.json",
        engine_applied_index=engine,
        log=entries,
        log_first_index=first,
    )
    got: tuple[str, int | None] | None = None
    if refusals:
        (refusal,) = refusals
        if isinstance(refusal, ea.RaftLogGapUncoveredError):
            got = ("uncovered", None)
        else:
            assert isinstance(refusal, ea.SidecarBehindRaftLogError)
            got = ("behind", refusal.entry_index)
    assert got == gap_oracle(sidecar, engine, first, opcodes)


def test_the_log_argument_is_checked(booted: Path, cluster: WrapOracle) -> None:
    args = {"encryption_enabled": True, "kek": ea.FileKek(cluster.kek_path), "sidecar_path": booted / "keys.json"}
    with pytest.raises(ValueError, match="log needs log_first_index"):
        ea.diagnose_startup(**args, log=[b"\x04"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="log_first_index is given but log is not"):
        ea.diagnose_startup(**args, log_first_index=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be 1 or more"):
        ea.diagnose_startup(**args, log=[], log_first_index=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="runs past the largest Raft index"):
        ea.diagnose_startup(**args, log=[b"", b""], log_first_index=2**64 - 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"log\[1\] is a tuple.*pairs"):
        ea.diagnose_startup(**args, log=[b"", (2, b"\x04")], log_first_index=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"log\[0\] must be bytes.*not str"):
        ea.diagnose_startup(**args, log=["04"], log_first_index=1)  # type: ignore[arg-type]


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


def test_doctor_cli(booted: Path, cluster: WrapOracle, tmp_path: Path) -> None:
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
    assert "\nREFUSED ErrKEKMismatch: the KEK cannot unwrap key_id=1 purpose=storage: " in done.stdout
    # The guard is named once on its line.
    (line,) = [x for x in done.stdout.splitlines() if "ErrKEKMismatch" in x]
    assert line.count("KEKMismatch") == 1, line
    assert "REFUSED ErrNodeIDCollision" in done.stdout
    done = doctor("--encryption-disabled")
    assert done.returncode == 1 and "ErrSidecarPresentWithoutFlag" in done.stdout


def test_doctor_reads_the_log(booted: Path, cluster: WrapOracle, tmp_path: Path) -> None:
    import subprocess
    import sys

    def doctor(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "encryption_applier", "doctor", str(booted), "--kek", str(cluster.kek_path), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    edit_sidecar(booted, epoch_1=1, raft_applied_index=1)
    with ea.Applier(booted) as applier:  # the engine (the registry) moves on to 4; the sidecar stays at 1
        applier.apply_registration(ea.Registration(1, NODE, 1), index=4)
    log = tmp_path / "log.hex"
    rotation = cluster.rotation(3, ea.Purpose.STORAGE).to_entry()
    log.write_text(f"# entries 2 to 4\n00\n{ea.Registration(1, NODE, 1).to_entry().hex()}\n{rotation.hex()}\n")
    done = doctor("--log", str(log), "--log-first-index", "2")
    assert done.returncode == 1, done
    assert "log " + str(log) + " (entries 2..4)" in done.stdout
    assert "\nREFUSED ErrSidecarBehindRaftLog: " in done.stdout
    assert "entry 4 (opcode 0x05)" in done.stdout
    done = doctor()  # no log: nothing can be shown about entries 2 to 4
    assert done.returncode == 1 and "no Raft log was given" in done.stdout, done
    hint = "    hint: give --log FILE --log-first-index 2 (the Raft log's entries 2..4) to have them inspected\n"
    assert hint in done.stdout, done.stdout
    done = doctor("--log", str(log), "--log-first-index", "3")  # misses entry 2
    assert done.returncode == 1, done
    assert "\nREFUSED RaftLogGapUncoveredError (package-only, no Go sentinel): " in done.stdout
    log.write_text("00\n00\n00\n")
    done = doctor("--log", str(log), "--log-first-index", "2")
    assert done.returncode == 0 and "ok: no startup guard refuses" in done.stdout, done
    assert "skipped guard 8" not in done.stdout
    edit_sidecar(booted, raft_applied_index=0)  # as Go, only a note
    done = doctor()
    skip = (
        "skipped guard 8 ErrSidecarBehindRaftLog: the sidecar never recorded a Raft index (raft_applied_index=0, "
        "a sidecar of an older binary): Go only warns; resync-sidecar or a rotation records one"
    )
    assert done.returncode == 0 and skip in done.stdout.splitlines(), done
    edit_sidecar(booted, raft_applied_index=1)
    for args, message in (
        (("--log", str(log)), "--log needs --log-first-index"),
        (("--log-first-index", "2"), "--log-first-index needs --log"),
        (("--log", str(log), "--log-first-index", "0"), "must be 1 or more"),
        (("--log", str(tmp_path / "missing"), "--log-first-index", "2"), "cannot read"),
    ):
        done = doctor(*args)
        assert done.returncode == 2 and message in done.stderr, (args, done)
    log.write_text("00\nzz\n")
    done = doctor("--log", str(log), "--log-first-index", "2")
    assert done.returncode == 2, done
    assert ":2: not a hex-encoded entry" in done.stderr and "nothing was checked" in done.stderr


def test_a_filesystem_whose_fsync_fails_is_refused(booted: Path, cluster: WrapOracle) -> None:
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


def skips(diagnosis: ea.StartupDiagnosis) -> list[tuple[int, str, str]]:
    return [(s.guard, s.sentinel, s.reason) for s in diagnosis.skipped]


NOT_BOOTSTRAPPED = "no sidecar (not bootstrapped)"
NO_KEY = "no active storage key (Go checks only once one is active)"
# Guard 8 compares with the engine's applied index: not a pass without it.
NO_ENGINE = "the engine's applied index was not given"


@pytest.mark.parametrize(
    ("state", "given", "expected"),
    [
        # Encryption off: every guard that reads the sidecar is skipped for that.
        (
            "booted",
            {"encryption_enabled": False},
            [
                (0, "ErrEnvelopeCutoverDivergence", "encryption is off"),
                (3, "ErrKEKMismatch", "encryption is off"),
                (4, "ErrLocalEpochExhausted", "encryption is off"),
                (5, "ErrUnsupportedFilesystem", "encryption is off"),
                (6, "ErrNodeIDCollision", "encryption is off"),
                (7, "ErrLocalEpochRollback", "encryption is off"),
                (8, "ErrSidecarBehindRaftLog", "encryption is off"),
            ],
        ),
        # No KEK: Go does not parse the sidecar.
        (
            "booted",
            {"kek": None},
            [
                (0, "ErrEnvelopeCutoverDivergence", "no restored snapshot was given"),
                (3, "ErrKEKMismatch", "no KEK (the sidecar is read only with one)"),
                (4, "ErrLocalEpochExhausted", "no KEK (the sidecar is read only with one)"),
                (6, "ErrNodeIDCollision", "no KEK (the sidecar is read only with one)"),
                (7, "ErrLocalEpochRollback", "no KEK (the sidecar is read only with one)"),
                (8, "ErrSidecarBehindRaftLog", "no KEK (the sidecar is read only with one)"),
            ],
        ),
        (
            "empty",
            {},
            [
                (0, "ErrEnvelopeCutoverDivergence", "no restored snapshot was given"),
                (3, "ErrKEKMismatch", NOT_BOOTSTRAPPED),
                (4, "ErrLocalEpochExhausted", NOT_BOOTSTRAPPED),
                (6, "ErrNodeIDCollision", NOT_BOOTSTRAPPED),
                (7, "ErrLocalEpochRollback", NOT_BOOTSTRAPPED),
                (8, "ErrSidecarBehindRaftLog", NOT_BOOTSTRAPPED),
            ],
        ),
        (
            "inactive",
            {"full_node_id": NODE, "members": [NODE]},
            [
                (0, "ErrEnvelopeCutoverDivergence", "no restored snapshot was given"),
                (6, "ErrNodeIDCollision", NO_KEY),
                (7, "ErrLocalEpochRollback", NO_KEY),
                (8, "ErrSidecarBehindRaftLog", NO_ENGINE),
            ],
        ),
        # Everything given: nothing is skipped.
        (
            "booted",
            {"full_node_id": NODE, "members": [NODE], "snapshot_cutover_index": 0, "engine_applied_index": 0},
            [],
        ),
        # The node and the members are inputs: without them, 6 and 7 say so.
        (
            "booted",
            {"snapshot_cutover_index": 0},
            [
                (6, "ErrNodeIDCollision", "no members were given"),
                (7, "ErrLocalEpochRollback", "this node's full id was not given"),
                (8, "ErrSidecarBehindRaftLog", NO_ENGINE),
            ],
        ),
        # A sidecar that never recorded an index: Go only warns (guard 8).
        (
            "unindexed",
            {"full_node_id": NODE, "members": [NODE], "snapshot_cutover_index": 0},
            [
                (
                    8,
                    "ErrSidecarBehindRaftLog",
                    "the sidecar never recorded a Raft index (raft_applied_index=0, a sidecar of an older binary): "
                    "Go only warns; resync-sidecar or a rotation records one",
                )
            ],
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_the_diagnosis_says_which_guards_were_skipped_and_why(
    booted: Path, cluster: WrapOracle, tmp_path: Path, state: str, given: dict[str, object], expected: list[object]
) -> None:
    directory = booted
    if state == "empty":
        directory = tmp_path / "empty"
        directory.mkdir()
    elif state == "inactive":
        edit_sidecar(booted, active={"storage": 0, "raft": 0})
    elif state == "unindexed":
        edit_sidecar(booted, raft_applied_index=0)
    edit_sidecar(booted, epoch_1=1)
    inputs: dict[str, object] = {
        "encryption_enabled": True,
        "kek": ea.FileKek(cluster.kek_path),
        "sidecar_path": directory / "keys.json",
    } | given
    diagnosis = ea.diagnose_startup(**inputs)  # type: ignore[arg-type]
    assert skips(diagnosis) == expected
    # Still the list of refusals it always was.
    assert diagnosis.refusals == list(diagnosis) and isinstance(diagnosis, list)
    assert diagnosis.ok == (not diagnosis)
    assert all(str(s) == f"guard {s.guard} ({s.sentinel}) skipped: {s.reason}" for s in diagnosis.skipped)


def test_without_a_sidecar_path_the_guards_say_so(cluster: WrapOracle) -> None:
    diagnosis = ea.diagnose_startup(encryption_enabled=True, kek=ea.FileKek(cluster.kek_path))
    reasons = {s.guard: s.reason for s in diagnosis.skipped}
    assert set(reasons) == {0, 3, 4, 5, 6, 7, 8}, reasons
    assert {reasons[g] for g in (3, 4, 5, 6, 7, 8)} == {"no sidecar path was given"}, reasons
