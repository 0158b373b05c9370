"""The suite's hypothesis profiles and its fixtures. The helpers the test
modules import by name (run_python, plant_raw, aesgcm_wrap, Cluster, ...)
are in helpers.py beside this file."""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import encryption_applier as ea

from helpers import Cluster

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
def cluster(kek_path: Path) -> Cluster:
    return Cluster(kek_path)


@pytest.fixture
def booted(registry_dir: Path, cluster: Cluster) -> Path:
    """A registry bootstrapped (keys 1 and 2, NODE's rows at epoch 1) at index 1."""
    with ea.Applier(registry_dir, kek=ea.FileKek(cluster.kek_path)) as applier:
        applier.apply_bootstrap(cluster.bootstrap(), index=1)
    return registry_dir
