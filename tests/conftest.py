"""The suite's hypothesis profiles and its fixtures. The helpers the test
modules import by name (run_python, plant_raw, aesgcm_wrap, WrapOracle, ...)
are in helpers.py beside this file."""

import contextlib
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import encryption_applier as ea

from helpers import REPO, WrapOracle

#: The suite's own base temporary directory, inside the repository (and
#: ignored by git): one `run-<pid>` per run. Left alone, pytest would put
#: it under the user's shared /tmp/pytest-of-<user>, and its retention
#: count would prune other projects' runs there.
BASETEMP = REPO / ".pytest-tmp"


@pytest.hookimpl(tryfirst=True)  # before pytest's tmpdir plugin reads --basetemp
def pytest_configure(config: pytest.Config) -> None:
    if config.option.basetemp is not None:
        return
    # Runs that ended before (their pid gone: passed, failed or killed)
    # make way; a concurrent run keeps its own.
    for old in BASETEMP.glob("run-*") if BASETEMP.is_dir() else []:
        pid = old.name.removeprefix("run-")
        if not pid.isdigit() or not Path(f"/proc/{pid}").exists():
            shutil.rmtree(old, ignore_errors=True)
    BASETEMP.mkdir(mode=0o700, exist_ok=True)
    config.option.basetemp = str(BASETEMP / f"run-{os.getpid()}")
    config.stash[_OWN_BASETEMP] = True


_OWN_BASETEMP = pytest.StashKey[bool]()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A passing run leaves nothing behind: its base temporary directory
    goes (a failing one keeps it, for a look, until the next run)."""
    if exitstatus == 0 and session.config.stash.get(_OWN_BASETEMP, False):
        shutil.rmtree(session.config.option.basetemp, ignore_errors=True)
        with contextlib.suppress(OSError):  # only if no other run is using it
            BASETEMP.rmdir()


# "dev" for a quick local run, "ci" (chosen automatically when CI is set)
# for more examples, "long" for a fuzzing session by hand:
#   HYPOTHESIS_PROFILE=long bash scripts/test.sh -k fuzz
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "ci",
    max_examples=250,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long",
    max_examples=100_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture
def registry_dir(tmp_path: Path) -> Path:
    """A directory path for a registry that does not exist yet."""
    return tmp_path / "registry"


@pytest.fixture
def kek_path(tmp_path: Path) -> Path:
    """A fresh KEK file, made by FileKek.generate."""
    import encryption_applier as ea

    path = tmp_path / "kek.bin"
    ea.FileKek.generate(path)
    return path


@pytest.fixture
def cluster(kek_path: Path) -> WrapOracle:
    return WrapOracle(kek_path)


@pytest.fixture
def booted(registry_dir: Path, cluster: WrapOracle) -> Path:
    """A registry bootstrapped (keys 1 and 2, NODE's rows at epoch 1) at index 1."""
    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path)) as applier:
        applier.apply_bootstrap(cluster.bootstrap(), index=1)
    return registry_dir
