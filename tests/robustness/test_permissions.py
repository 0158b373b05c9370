"""Files and directories the package creates are owner-only whatever the
umask, and a registry directory where another user could swap LMDB's files
is refused (SECURITY.md, "Registry directory")."""

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import encryption_applier as ea


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.mark.parametrize("mask", [0o000, 0o002, 0o022, 0o077, 0o277])
def test_everything_created_is_owner_only_whatever_the_umask(tmp_path: Path, kek_path: Path, mask: int) -> None:
    registry = tmp_path / "parent" / "registry"
    with umask(mask):
        with ea.Applier(registry, kek=ea.FileKek(kek_path)) as applier:
            applier.apply(ea.Registration(1, 1, 1))
        kek = ea.FileKek.generate(tmp_path / "new.kek")
        with ea.Applier(registry, kek=kek) as applier:
            pass
    assert mode(registry) == 0o700
    assert mode(registry.parent) == 0o755  # a parent it made: not writable by others
    for name in ("data.mdb", "lock.mdb", "writer.lock"):
        assert mode(registry / name) == 0o600, name
    assert mode(tmp_path / "new.kek") == 0o600
    # and it reopens: the owner can still write what it created
    with ea.Applier(registry) as applier:
        assert applier.apply(ea.Registration(1, 1, 2)) == "advanced"


@pytest.mark.parametrize("bits", [0o020, 0o002, 0o022, 0o777])
@pytest.mark.parametrize("opener", [ea.Applier, ea.Registry, ea.verify])
def test_a_directory_of_ours_that_others_can_write_is_tightened(registry_dir: Path, bits: int, opener: Any) -> None:
    """A registry an older version made under umask 002 or 000 is not
    refused: its owner takes group/other write away on the next open. (A
    directory of root's that a user opens is refused instead; that case
    needs two users and is covered by the Rust test `directory_verdicts`.)"""
    with ea.Applier(registry_dir) as applier:
        applier.apply(ea.Registration(1, 1, 1))
    registry_dir.chmod(0o700 | bits)
    handle = opener(registry_dir)
    if hasattr(handle, "close"):
        handle.close()
    assert mode(registry_dir) == (0o700 | bits) & ~0o022
    with ea.Registry(registry_dir) as view:
        assert len(view) == 1


@pytest.mark.parametrize("name", ["data.mdb", "lock.mdb", "writer.lock"])
def test_lmdb_and_lock_files_are_never_followed_through_a_symlink(
    registry_dir: Path, tmp_path: Path, name: str
) -> None:
    with ea.Applier(registry_dir) as applier:
        applier.apply(ea.Registration(1, 1, 1))
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (registry_dir / name).unlink()
    (registry_dir / name).symlink_to(victim)
    openers = (ea.Applier, ea.Registry) if name != "writer.lock" else (ea.Applier,)
    for opener in openers:
        with pytest.raises(ea.RegistryOpenError, match=f"{name} is a symbolic link"):
            opener(registry_dir)
    assert victim.read_bytes() == b"precious"


def test_a_directory_of_another_user_is_refused(registry_dir: Path) -> None:
    """LMDB writes lock.mdb even to read, so a directory's owner could
    redirect that write: only this user's or root's directories open."""
    with ea.Applier(registry_dir) as applier:
        applier.apply(ea.Registration(1, 1, 1))
    if os.geteuid() != 0:
        # Without root no directory can be given away; the refusal is
        # covered by the root run (CI runs as root) and `directory_verdicts`.
        with ea.Registry(registry_dir) as view:
            assert len(view) == 1
        return
    os.chown(registry_dir, 65534, 65534)
    for opener in (ea.Applier, ea.Registry, ea.verify):
        with pytest.raises(ea.RegistryOpenError, match="belongs to uid 65534") as err:
            opener(registry_dir)
        assert "Run as uid 65534" in str(err.value)


def test_a_lock_file_of_another_user_is_refused(registry_dir: Path) -> None:
    ea.Applier(registry_dir).close()
    lock = registry_dir / "writer.lock"
    if os.geteuid() == 0:
        os.chown(lock, 65534, 65534)
        with pytest.raises(ea.RegistryOpenError, match="writer.lock belongs to uid 65534"):
            ea.Applier(registry_dir)
    else:
        # A non-root user cannot give a file away; a lock left 0644 by an
        # older version is tightened instead.
        lock.chmod(0o644)
        ea.Applier(registry_dir).close()
        assert mode(lock) == 0o600
