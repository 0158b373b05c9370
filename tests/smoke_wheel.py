"""Smoke test of an installed wheel, run from outside the source tree by
scripts/test.sh: the package, its stub, py.typed and the console script
must all have made it into the wheel."""

import os
import subprocess
import sys
import sysconfig
import tempfile
from importlib import metadata
from pathlib import Path

import encryption_applier as ea

package = Path(ea.__file__).parent
site = Path(sysconfig.get_paths()["purelib"])
assert package.is_relative_to(site), f"imported from {package}, not from the installed wheel in {site}"
for name in ("py.typed", "_native.pyi", "__init__.py", "exceptions.py", "cli.py", "_frames.py", "__main__.py"):
    assert (package / name).is_file(), f"{name} is missing from the wheel"
assert any(p.name.startswith("_native") and p.suffix == ".so" for p in package.iterdir())
for name in ("__init__.py", "model.py", "strategies.py", "pytest_plugin.py"):
    assert (package / "testing" / name).is_file(), f"testing/{name} is missing from the wheel"
# The pytest plugin is registered, and the testing module imports without
# hypothesis or pytest (the wheel is installed with no dependencies).
plugins = {e.name: e.value for e in metadata.entry_points(group="pytest11")}
assert plugins.get("encryption_applier") == "encryption_applier.testing.pytest_plugin", plugins
dist = metadata.distribution("encryption-applier")
assert dist.metadata["License-Expression"] == "Apache-2.0"
assert any(f.name == "LICENSE" for f in dist.files or []), "LICENSE is missing from the wheel"
import encryption_applier.testing  # noqa: E402

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
    script = Path(sys.executable).parent / "encryption-applier"
    out = subprocess.run([str(script), "digest", str(directory)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ea.Registry(directory).digest()
    out = subprocess.run(
        [sys.executable, "-m", "encryption_applier", "--version"], capture_output=True, text=True, check=True
    )
    assert ea.__version__ in out.stdout

print(f"wheel smoke test passed: encryption_applier {ea.__version__} from {package} (cwd {os.getcwd()})")
