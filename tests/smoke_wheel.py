"""Smoke test of an installed wheel, run from outside the source tree by
scripts/test.sh (its release stage): the package, its stub, py.typed and
the console script must all have made it into the wheel. The wheel is
installed with its [testing] extra from the package index by the ranges
it declares (not the development lock), as a user gets it: those
dependencies must satisfy the declared ranges, the strategies must run and
the pytest plugin must load from its entry point."""

import os
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement  # a dependency of pytest

import encryption_applier as ea

package = Path(ea.__file__).parent
site = Path(sysconfig.get_paths()["purelib"])
assert package.is_relative_to(site), f"imported from {package}, not from the installed wheel in {site}"
for name in ("py.typed", "_native.pyi", "__init__.py", "exceptions.py", "cli/__init__.py", "_frames.py", "__main__.py"):
    assert (package / name).is_file(), f"{name} is missing from the wheel"
assert any(p.name.startswith("_native") and p.suffix == ".so" for p in package.iterdir())
for name in ("__init__.py", "model.py", "strategies.py", "pytest_plugin.py"):
    assert (package / "testing" / name).is_file(), f"testing/{name} is missing from the wheel"
# The pytest plugin is registered, and the testing module imports without
# hypothesis or pytest (blocked in a child: they are installed here).
plugins = {e.name: e.value for e in metadata.entry_points(group="pytest11")}
assert plugins.get("encryption_applier") == "encryption_applier.testing.pytest_plugin", plugins
dist = metadata.distribution("encryption-applier")
assert dist.metadata["License-Expression"] == "Apache-2.0"
assert any(f.name == "LICENSE" for f in dist.files or []), "LICENSE is missing from the wheel"
subprocess.run(
    [
        sys.executable,
        "-c",
        "import sys\n"
        "sys.modules['hypothesis'] = sys.modules['pytest'] = None  # importing either now fails\n"
        "import encryption_applier.testing\n",
    ],
    check=True,
)
import encryption_applier.testing  # noqa: E402

# The [testing] extra as declared in the wheel, and what got installed for it.
testing = [
    r
    for r in map(Requirement, dist.requires or [])
    if r.marker is not None and r.marker.evaluate({"extra": "testing"}) and not r.marker.evaluate({"extra": ""})
]
assert sorted(r.name for r in testing) == ["hypothesis", "pytest"], testing
for requirement in testing:
    installed = metadata.version(requirement.name)
    assert requirement.specifier.contains(installed, prereleases=True), (
        f"{requirement.name} {installed} is outside the declared {requirement}"
    )

with encryption_applier.testing.temporary_kek() as temporary:
    assert temporary.path.is_file()
assert not temporary.path.exists()

with tempfile.TemporaryDirectory() as tmp:
    directory = Path(tmp) / "registry"
    with ea.Applier(directory) as applier:
        assert applier.apply(ea.Registration(1, 0xABCD0001, 1).to_entry()) == "inserted"
        try:
            applier.apply(ea.Registration(1, 0xABCD0001, 0))
        except ea.LocalEpochRollbackError:
            pass
        else:
            raise AssertionError("rollback did not halt")
    kek = ea.FileKek.generate(Path(tmp) / "kek")
    assert kek.unwrap(kek.wrap(b"\x07" * 32)) == b"\x07" * 32
    # The cluster harness: its child replicas run the installed package.
    with encryption_applier.testing.Cluster(2, kek=kek, mode="process", root=Path(tmp) / "cluster") as cluster:
        cluster.bootstrap()
        cluster.crash(1)
        cluster.restart(1)
        assert cluster.assert_agree() == [0, 1] and not cluster.halts
    script = Path(sys.executable).parent / "encryption-applier"
    out = subprocess.run([str(script), "digest", str(directory)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ea.Registry(directory).digest()
    out = subprocess.run(
        [sys.executable, "-m", "encryption_applier", "--version"], capture_output=True, text=True, check=True
    )
    assert ea.__version__ in out.stdout

# A user's test file: the documented strategies example, valid streams
# against the model, and the plugin's fixtures (loaded by the entry point:
# the project has no conftest).
USER_TESTS = """
    from hypothesis import given, settings
    import encryption_applier as ea
    from encryption_applier.testing import assert_registry_matches_model
    from encryption_applier.testing.strategies import streams_with_halt, valid_streams

    @settings(max_examples=25, deadline=None)
    @given(stream=streams_with_halt())
    def test_a_halt_keeps_what_came_before(tmp_path_factory, stream):
        with ea.Applier(tmp_path_factory.mktemp("r")) as applier:
            try:
                applier.apply_many(stream.entries)
            except stream.exception as halt:
                assert halt.position == stream.position
            else:
                raise AssertionError("the planted entry did not halt")
            assert_registry_matches_model(applier, stream.model)

    @settings(max_examples=25, deadline=None)
    @given(stream=valid_streams(max_size=10))
    def test_valid_streams_apply_as_the_model_says(tmp_path_factory, stream):
        with ea.Applier(tmp_path_factory.mktemp("r")) as applier:
            assert applier.apply_many(stream.entries) == stream.outcomes
            assert_registry_matches_model(applier, stream.model)

    def test_the_plugin_applier(ea_applier):
        assert ea_applier.apply(ea.Registration(1, 0xABCD0001, 1)) == "inserted"

    def test_the_plugin_keyed_applier(ea_keyed_applier, ea_kek, ea_registry_path):
        boot = ea.Bootstrap(1, ea_kek.wrap(b"s" * 32), 2, ea_kek.wrap(b"r" * 32), [])
        assert ea_keyed_applier.apply_bootstrap(boot) == "bootstrapped"
        assert ea.read_sidecar(ea_registry_path / "keys.json").active == {"storage": 1, "raft": 2}
"""
with tempfile.TemporaryDirectory() as tmp:
    (Path(tmp) / "pytest.ini").write_text("[pytest]\n")
    (Path(tmp) / "test_user.py").write_text(textwrap.dedent(USER_TESTS))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0 and "4 passed" in run.stdout, run.stdout + run.stderr

extra = ", ".join(f"{r.name} {metadata.version(r.name)}" for r in testing)
print(
    f"wheel smoke test passed: encryption_applier {ea.__version__} from {package} "
    f"(cwd {os.getcwd()}; [testing]: {extra})"
)
