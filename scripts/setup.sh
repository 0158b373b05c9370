# Sourced by scripts/demo.sh and scripts/test.sh: creates .venv under the
# repo (if missing), installs maturin and the test dependencies into it, and
# builds the extension from source into it. Needs only Rust, Python >= 3.11
# and pip on the machine.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

# Always build the LMDB copy bundled with lmdb-rkv-sys, never a system one.
export LIBLMDB_NO_PKG_CONFIG=1

python_bin=${PYTHON:-python3}
if ! "$python_bin" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: $python_bin is $("$python_bin" -V 2>&1); Python >= 3.11 is needed (set PYTHON=...)" >&2
    exit 1
fi

venv="$repo_root/.venv"
if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating $venv"
    "$python_bin" -m venv "$venv"
fi
export VIRTUAL_ENV="$venv"
export PATH="$venv/bin:$PATH"

echo "==> installing maturin into .venv"
python -m pip install --quiet --disable-pip-version-check "maturin>=1.9,<2"

echo "==> building the extension from source (maturin develop) with test extras"
maturin develop --quiet --extras test
