"""Faults: a map that fills up, directories that cannot be used, another
writer, and a reader in another process while the map grows."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import encryption_applier as ea

from helpers import interactive


def test_a_tiny_map_grows_and_nothing_acknowledged_is_lost(registry_dir: Path) -> None:
    acknowledged: list[ea.Registration] = []
    with ea.Applier(registry_dir, map_size=64 * 1024) as applier:
        for start in range(0, 60_000, 5_000):
            batch = [ea.Registration(1 + n // 65536, n, 1) for n in range(start, start + 5_000)]
            assert applier.apply_many(batch, first_index=start + 1) == ["inserted"] * 5_000
            acknowledged += batch
        for n in range(300):
            assert applier.apply_registration(ea.Registration(9, n, 1), index=100_000 + n) == "inserted"
            acknowledged.append(ea.Registration(9, n, 1))
    with ea.Registry(registry_dir) as registry:
        assert len(registry) == len(acknowledged)
        assert registry.applied_index == 100_299
        rows = {(r.dek_id, r.node_id16): r for r in registry}
        for reg in acknowledged:
            assert rows[(reg.dek_id, reg.node_id16)].last_seen_local_epoch == 1


def test_map_full_with_a_view_open_halts_with_the_fix_then_recovers(registry_dir: Path) -> None:
    with ea.Applier(registry_dir, map_size=64 * 1024) as applier:
        applier.apply_registration(ea.Registration(1, 1, 1))
        view = applier.registry
        many = [ea.Registration(2, n, 1) for n in range(20_000)]
        with pytest.raises(ea.StorageError, match="close them") as info:
            applier.apply_many(many)
        assert info.value.position == 0 and info.value.outcomes == []
        assert len(applier.registry) == 1  # nothing of the batch was written
        view.close()
        assert applier.apply_many(many) == ["inserted"] * 20_000
        assert len(applier.registry) == 20_001


def test_a_reader_in_another_process_follows_the_map_as_it_grows(registry_dir: Path) -> None:
    with ea.Applier(registry_dir, map_size=64 * 1024) as applier:
        applier.apply_registration(ea.Registration(1, 1, 1))
        reader = interactive(
            """
            import sys, encryption_applier as ea
            view = ea.Registry(sys.argv[1])
            for line in sys.stdin:
                view.refresh()
                print(len(view), flush=True)
            """,
            str(registry_dir),
        )
        assert reader.stdin and reader.stdout
        for round_ in range(1, 4):
            applier.apply_many([ea.Registration(1 + round_, n, 1) for n in range(20_000)])
            reader.stdin.write("go\n")
            reader.stdin.flush()
            assert reader.stdout.readline().strip() == str(1 + 20_000 * round_)
        reader.stdin.close()
        assert reader.wait(timeout=60) == 0, reader.stderr.read() if reader.stderr else ""


def test_not_lmdb_missing_and_non_directories(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "data.mdb").write_bytes(os.urandom(64 * 1024))
    for make in (lambda: ea.Applier(garbage), lambda: ea.Registry(garbage)):
        with pytest.raises(ea.RegistryOpenError, match="not an LMDB environment|LMDB"):
            make()
    with pytest.raises(ea.RegistryOpenError, match="no such directory"):
        ea.Registry(tmp_path / "missing")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ea.RegistryOpenError, match="not a directory"):
        ea.Applier(tmp_path / "file")
    with pytest.raises(ea.RegistryOpenError, match="not a directory"):
        ea.Registry(tmp_path / "file")


def test_second_writer_process_is_refused_with_a_clear_error(registry_dir: Path) -> None:
    with ea.Applier(registry_dir):
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, encryption_applier as ea\n"
                "try:\n"
                "    ea.Applier(sys.argv[1])\n"
                "except ea.RegistryOpenError as e:\n"
                "    print(type(e).__mro__[1].__name__, e.reason)\n",
                str(registry_dir),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.stdout.startswith("EncryptionError another Applier"), proc.stdout + proc.stderr


def run_unprivileged(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs `code` without the power to ignore file permissions: as root
    (which CI is) the child drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
    with setpriv, so a 0555 directory is read-only to it too."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to test permissions as root"
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    return subprocess.run([*prefix, sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)


def test_read_only_directory(tmp_path: Path) -> None:
    directory = tmp_path / "registry"
    with ea.Applier(directory) as applier:
        applier.apply_registration(ea.Registration(1, 1, 1))
    for p in directory.iterdir():
        p.chmod(0o444)
    directory.chmod(0o555)
    proc = run_unprivileged(
        "import sys, encryption_applier as ea\n"
        "try:\n"
        "    ea.Applier(sys.argv[1])\n"
        "except ea.RegistryOpenError as e:\n"
        "    print('applier refused:', e.reason)\n"
        "try:\n"
        "    print('view rows:', len(ea.Registry(sys.argv[1])))\n"
        "except ea.RegistryOpenError as e:\n"
        "    print('view refused:', e.reason)\n",
        str(directory),
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "applier refused:" in proc.stdout
    assert "view rows: 1" in proc.stdout or "view refused:" in proc.stdout
    directory.chmod(0o755)
    for p in directory.iterdir():
        p.chmod(0o644)


def test_directory_that_cannot_be_created(tmp_path: Path) -> None:
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o555)
    proc = run_unprivileged(
        "import sys, encryption_applier as ea\n"
        "try:\n"
        "    ea.Applier(sys.argv[1])\n"
        "except ea.RegistryOpenError as e:\n"
        "    print('refused:', e.reason)\n",
        str(parent / "registry"),
    )
    parent.chmod(0o755)
    assert proc.stdout.startswith("refused: cannot create the directory"), proc.stdout + proc.stderr
